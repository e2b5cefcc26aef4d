"""``trader new-strategy NAME``: a small package to start a strategy from, whose tests pass as generated.

The templates beside this file (``*.tmpl``, ``string.Template`` syntax) become::

    <dir>/<name>/pyproject.toml        the entry point trader.strategies: <name> = "<name>.strategy:<Class>"
    <dir>/<name>/README.md
    <dir>/<name>/<name>/__init__.py
    <dir>/<name>/<name>/strategy.py    the strategy class and its Params model
    <dir>/<name>/tests/test_<name>.py  crafted ticks, then one synthetic day through the backtest
"""

from __future__ import annotations

import importlib.util
import keyword
import sys
from importlib import resources
from pathlib import Path
from string import Template

from trader.strategies.registry import BUILTINS, NAME_PATTERN


class SkeletonError(ValueError):
    """The name or the place cannot be used; the message says why and what to do."""


def class_name(name: str) -> str:
    """``my_breakout`` -> ``MyBreakout``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "Strategy"


def check_name(name: str) -> None:
    from trader.config import StrategySettings  # noqa: PLC0415 - the config imports the registry lazily

    if not NAME_PATTERN.fullmatch(name) or keyword.iskeyword(name):
        raise SkeletonError(f"strategy name {name!r}: use lower-case letters, digits and _, starting with a letter, "
                            "no '__' and no trailing '_' (it is the package's name, the [strategy.<name>] table's "
                            "and the TRADER_STRATEGY__<NAME>__<FIELD> variables'), e.g. my_breakout")
    if name in StrategySettings.model_fields:
        raise SkeletonError(f"strategy name {name!r} is a [strategy] setting; choose another name")
    if name in BUILTINS or name == "trader" or name in sys.stdlib_module_names:
        raise SkeletonError(f"strategy name {name!r} is taken (a built-in strategy or a module Python already has); "
                            "choose another name")
    if importlib.util.find_spec(name) is not None:  # installing the package would shadow or overwrite it
        raise SkeletonError(f"strategy name {name!r} is already importable here (an installed package or a module "
                            "on sys.path); choose another name")


def write_skeleton(name: str, parent: Path) -> Path:
    """Write the package for strategy ``name`` under ``parent``; its directory is returned."""
    check_name(name)
    root = parent / name
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise SkeletonError(f"{root} exists and is not empty; choose another --dir or move it aside")
    values = {"name": name, "class_name": class_name(name), "upper_name": name.upper(),
              "dist_name": f"trader-strategy-{name.replace('_', '-')}"}
    templates = resources.files(__name__)

    def render(template: str) -> str:
        return Template(templates.joinpath(template).read_text(encoding="utf-8")).substitute(values)

    files = {
        root / "pyproject.toml": render("pyproject.toml.tmpl"),
        root / "README.md": render("README.md.tmpl"),
        root / name / "__init__.py": f'"""The {name} strategy for trader."""\n',
        root / name / "strategy.py": render("strategy.py.tmpl"),
        root / "tests" / f"test_{name}.py": render("test_strategy.py.tmpl"),
    }
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise SkeletonError(f"cannot write the package under {parent}: {exc}") from None
    return root
