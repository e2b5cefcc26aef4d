"""Strategies by name: the built-ins, installed packages (entry-point group ``trader.strategies``), dotted paths.

A name in ``strategies`` is resolved in this order:

1. a built-in (``BUILTINS`` below);
2. an entry point of the group ``trader.strategies`` that an installed package declares, e.g. in its pyproject.toml::

       [project.entry-points."trader.strategies"]
       my_breakout = "my_pkg.strategy:MyBreakout"

3. a dotted path ``package.module:ClassName`` importable from ``sys.path``.

A strategy class (``docs/strategies.md``) satisfies the ``Strategy`` protocol (trader/strategies/base.py) and exposes
``name: ClassVar[str]`` (lower-case letters, digits and ``_``: it names the ``[strategy.<name>]`` table and the
``TRADER_STRATEGY__<NAME>__<FIELD>`` variables), ``Params: type[BaseModel]`` (``extra="forbid"``, ``frozen=True``)
and a constructor ``(strategy_id, underlying: UnderlyingSpec, common: StrategySettings, params: Params)``.

Nothing here reads a clock or does I/O beyond importing the strategy's module.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from trader.config import Settings, StrategySettings
    from trader.market.instruments import UnderlyingSpec
    from trader.strategies.base import Strategy

ENTRY_POINT_GROUP = "trader.strategies"
# Lower-case words joined by single underscores, at most 64 characters: "__" (or a trailing "_") cannot be spelt in
# TRADER_STRATEGY__<NAME>__<FIELD>, whose "__" splits the name too.
NAME_PATTERN = re.compile(r"(?=[a-z0-9_]{1,64}\Z)[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
NAME_RULE = "lower-case letters and digits, words joined by single underscores, starting with a letter, at most 64"
# What the host actor calls on every strategy (trader/strategies/base.py, ``Strategy``).
PROTOCOL_METHODS = ("on_tick", "on_fill", "on_order_update", "snapshot_state", "restore_state", "holdings",
                    "pending_intents")

# (strategy_id, underlying, common settings, validated params, the risk budget in paise or None) -> a strategy.
Factory = Callable[[str, "UnderlyingSpec", "StrategySettings", BaseModel, "int | None"], "Strategy"]


class StrategyNotFound(ValueError):
    """A name that is no built-in, no installed entry point and no importable ``pkg.mod:Class``."""


class StrategyLoadError(ValueError):
    """The name was found but what it names cannot be used (an import error, not a strategy class, ...)."""


@dataclass(frozen=True, slots=True)
class Resolved:
    """A strategy found by name: where from, its parameter model, and how to build one."""

    requested: str  # the name as given in ``strategies``
    name: str  # the class's ``name``: its ``[strategy.<name>]`` table and its strategy id
    source: str  # "built-in", "entry point (dist 1.0)", "dotted path"
    cls: type[Any]
    params_model: type[BaseModel]
    factory: Factory


def _ema_factory(strategy_id: str, underlying: UnderlyingSpec, common: StrategySettings, params: BaseModel,
                 budget: int | None) -> Strategy:
    from trader.strategies.ema_crossover import EmaCrossoverEnhanced, EmaCrossoverSettings  # noqa: PLC0415

    assert isinstance(params, EmaCrossoverSettings)
    return EmaCrossoverEnhanced.from_config(strategy_id, underlying, common, params, max_premium_at_risk=budget)


def _ema_class() -> type[Any]:
    from trader.strategies.ema_crossover import EmaCrossoverEnhanced  # noqa: PLC0415

    return EmaCrossoverEnhanced


def _plugin_factory(cls: type[Any]) -> Factory:
    def build(strategy_id: str, underlying: UnderlyingSpec, common: StrategySettings, params: BaseModel,
              budget: int | None) -> Strategy:
        del budget  # the plugin constructor takes four arguments (docs/strategies.md)
        strategy: Strategy = cls(strategy_id, underlying, common, params)
        return strategy

    return build


def plugin_shaped(module: str, attr: str) -> tuple[Callable[[], type[Any]], Factory]:
    """A built-in with the plugin constructor ``(strategy_id, underlying, common, params)``, imported on first use:
    ``BUILTINS["orb"] = plugin_shaped("trader.strategies.orb", "OpeningRangeBreakout")``."""

    def load() -> type[Any]:
        cls: type[Any] = getattr(importlib.import_module(module), attr)
        return cls

    def build(strategy_id: str, underlying: UnderlyingSpec, common: StrategySettings, params: BaseModel,
              budget: int | None) -> Strategy:
        return _plugin_factory(load())(strategy_id, underlying, common, params, budget)

    return load, build


# name -> (the class, imported on first use; its factory). The EMA crossover also takes the risk budget (max premium
# at risk per entry) to pick a strike that fits it; the others size with ``common.lots`` and the risk gate refuses
# what does not fit. A built-in in the plugin shape is added with ``plugin_shaped`` (above).
BUILTINS: dict[str, tuple[Callable[[], type[Any]], Factory]] = {
    "ema_crossover_enhanced": (_ema_class, _ema_factory),
    "opening_range_breakout": plugin_shaped("trader.strategies.orb", "OpeningRangeBreakout"),
}


def installed() -> dict[str, importlib.metadata.EntryPoint]:
    """The entry points of the group ``trader.strategies``, by name (a name two distributions install is listed
    once here; ``resolve`` refuses it)."""
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry)
    return found


def available() -> list[str]:
    """The names that resolve without a dotted path: the built-ins, then the installed ones."""
    names = list(BUILTINS)
    names += [name for name in sorted(installed()) if name not in BUILTINS]
    return names


def _unknown(name: str) -> StrategyNotFound:
    plugins = [n for n in sorted(installed()) if n not in BUILTINS]
    return StrategyNotFound(
        f"unknown strategy {name!r}; built-in: {', '.join(BUILTINS)}; installed (entry points "
        f"{ENTRY_POINT_GROUP!r}): {', '.join(plugins) or 'none'}; or give a dotted path package.module:ClassName "
        "importable from sys.path (`trader new-strategy NAME` writes a package to start from)")


def check_class(cls: object, where: str, *, plugin_constructor: bool = True) -> tuple[str, type[BaseModel]]:
    """The class's ``name`` and ``Params`` once it is a usable strategy class; ``StrategyLoadError`` saying what is
    missing otherwise."""
    if not isinstance(cls, type):
        raise StrategyLoadError(f"{where} is {type(cls).__name__} {cls!r}, not a strategy class")
    problems = []
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        problems.append(f"a class attribute name: ClassVar[str] of {NAME_RULE} (got {name!r})")
    params = getattr(cls, "Params", None)
    if not (isinstance(params, type) and issubclass(params, BaseModel)):
        problems.append(f"a class attribute Params: a pydantic BaseModel subclass (got {params!r})")
    else:
        config = params.model_config
        if config.get("extra") != "forbid" or not config.get("frozen"):
            problems.append("Params with model_config = ConfigDict(extra='forbid', frozen=True), so a misspelt "
                            "parameter is an error, not ignored")
    missing = [m for m in PROTOCOL_METHODS if not callable(getattr(cls, m, None))]
    if missing:
        problems.append(f"the Strategy methods {', '.join(missing)} (trader/strategies/base.py)")
    if plugin_constructor:
        try:
            inspect.signature(cls).bind("strategy_id", "underlying", "common", "params")
        except TypeError:
            problems.append("a constructor (strategy_id, underlying, common, params)")
        except ValueError:  # no signature to inspect (a class implemented in C): trust it
            pass
    if problems:
        raise StrategyLoadError(f"{where} ({cls.__module__}.{cls.__qualname__}) is not a usable strategy: it needs "
                                + "; ".join(problems) + " (see docs/strategies.md)")
    assert isinstance(name, str) and isinstance(params, type) and issubclass(params, BaseModel)
    return name, params


def _load_dotted(path: str) -> type[Any]:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr or not all(part.isidentifier() for part in module_name.split(".") + attr.split(".")):
        raise _unknown(path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise StrategyNotFound(f"strategy {path!r}: no module {exc.name!r} on sys.path; install the package "
                                   "(pip install -e PATH) or put its directory on PYTHONPATH") from None
        raise StrategyLoadError(f"strategy {path!r}: importing {module_name} failed: {exc}") from None
    except Exception as exc:
        raise StrategyLoadError(f"strategy {path!r}: importing {module_name} failed: "
                                f"{type(exc).__name__}: {exc}") from None
    found: object = module
    for part in attr.split("."):
        if not hasattr(found, part):
            raise StrategyNotFound(f"strategy {path!r}: module {module_name} has no attribute {attr!r}")
        found = getattr(found, part)
    return found  # type: ignore[return-value]  # checked by check_class


def resolve(name: str) -> Resolved:
    """The strategy a name stands for: built-in, then entry point, then dotted path."""
    name = name.strip()
    if name in BUILTINS:
        load_class, factory = BUILTINS[name]
        cls = load_class()
        cls_name, params = check_class(cls, f"built-in strategy {name!r}",
                                       plugin_constructor=factory is not _ema_factory)
        return Resolved(name, cls_name, "built-in", cls, params, factory)
    entry = installed().get(name)
    if entry is not None:
        same_name = [e for e in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if e.name == name]
        if len({(_dist_text(e), e.value) for e in same_name}) > 1:  # which one runs must not depend on sys.path order
            raise StrategyLoadError(f"strategy {name!r} is installed by more than one distribution: "
                                    + "; ".join(f"{e.value} ({_dist_text(e)})" for e in same_name)
                                    + "; uninstall the ones you do not mean (pip uninstall DIST)")
        dist = getattr(entry, "dist", None)
        source = f"entry point {entry.value}" + (f" ({dist.name} {dist.version})" if dist is not None else "")
        try:
            loaded = entry.load()
        except Exception as exc:
            raise StrategyLoadError(f"strategy {name!r} from {source} failed to load: "
                                    f"{type(exc).__name__}: {exc}") from None
        cls_name, params = check_class(loaded, f"strategy {name!r} from {source}")
        if cls_name != name:  # one name for the entry point, the [strategy.<name>] table and the strategy id
            raise StrategyLoadError(f"strategy {name!r} from {source}: the class's name is {cls_name!r}; give the "
                                    "entry point the class's name")
        return Resolved(name, cls_name, source, loaded, params, _plugin_factory(loaded))
    if ":" in name:
        cls = _load_dotted(name)
        cls_name, params = check_class(cls, f"strategy {name!r}")
        return Resolved(name, cls_name, "dotted path", cls, params, _plugin_factory(cls))
    raise _unknown(name)


def _dist_text(entry: importlib.metadata.EntryPoint) -> str:
    dist = getattr(entry, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"


def _where(name: str, field: str) -> str:
    return f"[strategy.{name}] {field} = ... in the config file or TRADER_STRATEGY__{name.upper()}__{field.upper()}"


def validate_params(resolved: Resolved, raw: Mapping[str, Any]) -> tuple[BaseModel | None, list[str]]:
    """``raw`` (the ``[strategy.<name>]`` table) checked against the strategy's ``Params``: the model, or config-error
    lines naming ``strategy.<name>.<field>`` and the fix."""
    name = resolved.name
    try:
        return resolved.params_model.model_validate(dict(raw)), []
    except ValidationError as exc:
        lines = []
        fields = ", ".join(resolved.params_model.model_fields) or "none"
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            path = f"strategy.{name}.{field}" if field else f"strategy.{name}"
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                lines.append(f"config error: {path}: unknown parameter of strategy {name!r}; it takes: {fields}")
                continue
            shown = error.get("input")
            given = f" (got {shown!r})" if shown is not None and not isinstance(shown, dict) else ""
            fix = _where(name, field) if field else f"the [strategy.{name}] table"
            lines.append(f"config error: {path}: {message}{given}; set it with {fix}")
        return None, lines


def params_for(resolved: Resolved, settings: Settings) -> dict[str, Any]:
    """What a strategy's ``Params`` is built from: its ``[strategy.<name>]`` table; for the EMA crossover the
    ``[strategy]`` fields fast, slow, bar_seconds and confirm_bars first (older configs), the table over them."""
    common = settings.strategy
    raw: dict[str, Any] = {}
    if resolved.name == "ema_crossover_enhanced" and resolved.source == "built-in":
        raw = {"fast": common.fast, "slow": common.slow, "bar_seconds": common.bar_seconds,
               "confirm_bars": common.confirm_bars}
    raw.update(common.params.get(resolved.name, {}))
    return raw


def check_strategies(settings: Settings) -> tuple[dict[str, tuple[Resolved, BaseModel]], list[str]]:
    """Resolve every name in ``strategies`` and validate its parameters; also refuse a ``[strategy.<name>]`` table
    that belongs to no strategy run and to no built-in or installed one (a misspelt name). Returns the resolved
    strategies by requested name, and config-error lines (empty when all is well)."""
    lines: list[str] = []
    done: dict[str, tuple[Resolved, BaseModel]] = {}
    run_names: dict[str, str] = {}  # strategy name -> the entry of ``strategies`` that named it first
    for requested in settings.strategies:
        try:
            resolved = resolve(requested)
        except ValueError as exc:
            lines.append(f"config error: strategies: {exc}")
            continue
        if resolved.name in run_names:  # one id, one state document, one [strategy.<name>] table: one instance
            lines.append(f"config error: strategies: {requested!r} is the same strategy {resolved.name!r} as "
                         f"{run_names[resolved.name]!r}; list it once")
            continue
        run_names[resolved.name] = requested
        params, problems = validate_params(resolved, params_for(resolved, settings))
        lines += problems
        if params is not None:
            done[requested] = (resolved, params)
    for table in settings.strategy.params:
        if table in run_names:
            continue
        try:
            other = resolve(table)
        except ValueError:
            lines.append(f"config error: strategy.{table}: parameters for a strategy that is neither run nor "
                         f"installed; strategies run: {', '.join(settings.strategies)}; known: "
                         f"{', '.join(available())}; check the table's name")
            continue
        lines += validate_params(other, settings.strategy.params[table])[1]
    return done, lines
