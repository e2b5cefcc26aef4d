"""Strategies found by name (built-in, entry point, dotted path), their ``[strategy.<name>]`` parameters, and the
package ``trader new-strategy`` writes, whose own tests must pass as written."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trader import builders
from trader.app import App
from trader.cli import main
from trader.config import ConfigError, load_settings, masked_dump
from trader.events import Signal
from trader.logging import configure_logging
from trader.market.instruments import FALLBACK_UNDERLYINGS
from trader.strategies import registry
from trader.strategies.ema_crossover import EmaCrossoverEnhanced, EmaCrossoverSettings
from trader.strategies.skeleton import class_name, write_skeleton

NIFTY = FALLBACK_UNDERLYINGS["NIFTY"]
BANKNIFTY = FALLBACK_UNDERLYINGS["BANKNIFTY"]
REPO = Path(__file__).resolve().parents[1]

# A minimal plugin: what a trader's own package holds. ``{module}`` makes each test's module name unique, so no
# test sees another's import in sys.modules.
PLUGIN_SOURCE = '''
from typing import ClassVar
from pydantic import BaseModel, ConfigDict, Field

class FakeParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    threshold: int = Field(5, ge=1, le=100)
    label: str = "x"

class FakePlug:
    name: ClassVar[str] = "fake_plug"
    Params: ClassVar[type[FakeParams]] = FakeParams

    def __init__(self, strategy_id, underlying, common, params):
        self.strategy_id, self.underlying, self.common, self.params = strategy_id, underlying, common, params
    def on_tick(self, tick, ctx): return []
    def on_fill(self, fill): pass
    def on_order_update(self, update): pass
    def snapshot_state(self): return {"version": 1, "strategy_id": self.strategy_id}
    def restore_state(self, state, held): return list(held)
    def holdings(self): return []
    def pending_intents(self): return []

class Loose(FakePlug):
    class Params(BaseModel):  # neither extra="forbid" nor frozen: a misspelt parameter would be ignored
        threshold: int = 5

class TwoArguments(FakePlug):
    def __init__(self, params, strategy_id):
        pass

class NoMethods:
    name: ClassVar[str] = "no_methods"
    Params = FakeParams

NOT_A_CLASS = 42
'''


def write_module(where: Path, module: str, source: str = PLUGIN_SOURCE) -> None:
    (where / f"{module}.py").write_text(source)


def write_dist(where: Path, dist: str, entry_points: dict[str, str]) -> None:
    """An installed distribution as importlib.metadata finds it: ``<dist>-1.0.dist-info`` on sys.path."""
    info = where / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n{lines}\n")


@pytest.fixture
def plugin_dir(tmp_path: Path, clean_env: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A directory on sys.path holding a plugin module (``plug_<test>``); the module is forgotten afterwards."""
    module = f"plug_{request.node.name.replace('[', '_').replace(']', '_').replace('-', '_')}"
    write_module(tmp_path, module)
    clean_env.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop(module, None)


def module_of(plugin_dir: Path) -> str:
    return next(p.stem for p in plugin_dir.glob("plug_*.py"))


def lines_of(overrides: dict[str, Any], config_file: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_settings(overrides, config_file)
    return raised.value.lines


# -- built-ins ------------------------------------------------------------------------------------------------------

def test_the_ema_crossover_is_a_built_in_with_its_params_model(clean_env: pytest.MonkeyPatch) -> None:
    resolved = registry.resolve("ema_crossover_enhanced")
    assert (resolved.name, resolved.source, resolved.params_model) == (
        "ema_crossover_enhanced", "built-in", EmaCrossoverSettings)
    assert registry.available()[0] == "ema_crossover_enhanced"
    assert tuple(registry.BUILTINS) == ("ema_crossover_enhanced", "opening_range_breakout")


def test_old_configs_build_the_ema_crossover_unchanged(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "old.toml"
    config.write_text("[strategy]\nfast = 5\nslow = 13\nbar_seconds = 30\nconfirm_bars = 2\nlots = 2\n"
                      "[risk]\nmax_lots_per_trade = 2\n")
    settings = load_settings(None, config)
    (strategy,) = builders.build_strategies(settings, [NIFTY])
    assert isinstance(strategy, EmaCrossoverEnhanced) and strategy.strategy_id == "ema_crossover_enhanced"
    p = strategy.params
    assert (p.fast, p.slow, p.bar_seconds, p.confirm_bars, p.lots, p.underlying) == (5, 13, 30, 2, 2, "NIFTY")
    budget = round(settings.risk.initial_capital * settings.risk.max_risk_per_trade_pct * 100)
    assert p.max_premium_at_risk == budget and p.exit_time == settings.strategy.exit_time
    # Several underlyings: one instance each, the underlying in the id, as before.
    ids = [s.strategy_id for s in builders.build_strategies(settings, [NIFTY, BANKNIFTY])]
    assert ids == ["ema_crossover_enhanced:NIFTY", "ema_crossover_enhanced:BANKNIFTY"]


def test_the_ema_table_overrides_the_old_fields(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "new.toml"
    config.write_text("[strategy]\nfast = 5\n[strategy.ema_crossover_enhanced]\nslow = 30\n")
    clean_env.setenv("TRADER_STRATEGY__EMA_CROSSOVER_ENHANCED__CONFIRM_BARS", "4")
    settings = load_settings(None, config)
    (strategy,) = builders.build_strategies(settings, [NIFTY])
    assert isinstance(strategy, EmaCrossoverEnhanced)
    assert (strategy.params.fast, strategy.params.slow, strategy.params.confirm_bars) == (5, 30, 4)
    assert lines_of({"strategy": {"ema_crossover_enhanced": {"fast": 40}}}) == [
        "config error: strategy.ema_crossover_enhanced: fast (40) must be smaller than slow (21); set it with the "
        "[strategy.ema_crossover_enhanced] table"]


def test_a_plugin_shaped_built_in_is_one_line(plugin_dir: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setitem(registry.BUILTINS, "fake_plug", registry.plugin_shaped(module_of(plugin_dir), "FakePlug"))
    settings = load_settings({"strategies": "ema_crossover_enhanced,fake_plug",
                              "strategy": {"fake_plug": {"threshold": 2}}})
    assert registry.resolve("fake_plug").source == "built-in"
    ema, plug = builders.build_strategies(settings, [NIFTY])
    assert isinstance(ema, EmaCrossoverEnhanced) and plug.params.threshold == 2  # type: ignore[attr-defined]
    assert registry.available()[:3] == ["ema_crossover_enhanced", "opening_range_breakout", "fake_plug"]


# -- entry points ---------------------------------------------------------------------------------------------------

def test_an_installed_entry_point_is_found_by_name_with_its_params(plugin_dir: Path, tmp_path: Path) -> None:
    module = module_of(plugin_dir)
    write_dist(plugin_dir, "fake_dist", {"fake_plug": f"{module}:FakePlug"})
    assert "fake_plug" in registry.available()
    config = tmp_path / "plug.toml"
    config.write_text('strategies = ["fake_plug"]\n[strategy.fake_plug]\nthreshold = 9\n')
    settings = load_settings(None, config)
    resolved = registry.resolve("fake_plug")
    assert resolved.source == f"entry point {module}:FakePlug (fake_dist 1.0)"
    (strategy,) = builders.build_strategies(settings, [NIFTY])
    assert type(strategy).__name__ == "FakePlug" and strategy.strategy_id == "fake_plug"
    assert strategy.params.threshold == 9 and strategy.params.label == "x"  # type: ignore[attr-defined]
    assert strategy.underlying is NIFTY and strategy.common is settings.strategy  # type: ignore[attr-defined]


def test_the_environment_sets_a_plugin_parameter(plugin_dir: Path, clean_env: pytest.MonkeyPatch) -> None:
    write_dist(plugin_dir, "fake_dist", {"fake_plug": f"{module_of(plugin_dir)}:FakePlug"})
    clean_env.setenv("TRADER_STRATEGY__FAKE_PLUG__THRESHOLD", "17")
    settings = load_settings({"strategies": "fake_plug"})
    assert settings.strategy.params == {"fake_plug": {"threshold": "17"}}
    (strategy,) = builders.build_strategies(settings, [NIFTY])
    assert strategy.params.threshold == 17  # type: ignore[attr-defined]
    clean_env.setenv("TRADER_STRATEGY__FAKE_PLUG__THRESHOLD", "500")
    assert lines_of({"strategies": "fake_plug"}) == [
        "config error: strategy.fake_plug.threshold: Input should be less than or equal to 100 (got '500'); set it "
        "with [strategy.fake_plug] threshold = ... in the config file or TRADER_STRATEGY__FAKE_PLUG__THRESHOLD"]


def test_an_entry_point_named_unlike_its_class_is_refused(plugin_dir: Path) -> None:
    write_dist(plugin_dir, "fake_dist", {"other_name": f"{module_of(plugin_dir)}:FakePlug"})
    (line,) = lines_of({"strategies": "other_name"})
    assert line.startswith("config error: strategies: strategy 'other_name' from entry point ")
    assert "the class's name is 'fake_plug'; give the entry point the class's name" in line


def test_an_entry_point_that_fails_to_import_says_so(plugin_dir: Path) -> None:
    write_module(plugin_dir, "plug_broken_import", "import no_such_module_here\n")
    write_dist(plugin_dir, "broken_dist", {"broken": "plug_broken_import:Anything"})
    try:
        (line,) = lines_of({"strategies": "broken"})
    finally:
        sys.modules.pop("plug_broken_import", None)
    assert line.startswith("config error: strategies: strategy 'broken' from entry point plug_broken_import:Anything "
                           "(broken_dist 1.0) failed to load: ModuleNotFoundError: No module named "
                           "'no_such_module_here'")


# -- dotted paths ---------------------------------------------------------------------------------------------------

def test_a_dotted_path_is_imported_and_named_by_its_class(plugin_dir: Path) -> None:
    path = f"{module_of(plugin_dir)}:FakePlug"
    settings = load_settings({"strategies": path, "strategy": {"fake_plug": {"label": "mine"}}})
    assert registry.resolve(path).source == "dotted path"
    strategies = builders.build_strategies(settings, [NIFTY, BANKNIFTY])
    assert [s.strategy_id for s in strategies] == ["fake_plug:NIFTY", "fake_plug:BANKNIFTY"]
    assert strategies[0].params.label == "mine"  # type: ignore[attr-defined]
    assert masked_dump(settings)["strategy"]["params"] == {"fake_plug": {"label": "mine"}}


def test_check_config_masks_a_plugin_parameter_named_like_a_secret(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    hidden = settings.model_copy(update={"strategy": settings.strategy.model_copy(
        update={"params": {"mine": {"api_token": "s3cret", "level": 3}}})})
    assert masked_dump(hidden)["strategy"]["params"] == {"mine": {"api_token": "**********", "level": 3}}


@pytest.mark.parametrize(("attribute", "expected"), [
    ("Loose", "Params with model_config = ConfigDict(extra='forbid', frozen=True)"),
    ("NoMethods", "the Strategy methods on_tick, on_fill, on_order_update, snapshot_state, restore_state, "
                  "holdings, pending_intents"),
    ("NOT_A_CLASS", "is int 42, not a strategy class"),
    ("TwoArguments", "needs a constructor (strategy_id, underlying, common, params)"),
    ("Missing", "has no attribute 'Missing'"),
])
def test_a_dotted_path_to_something_unusable_says_what_is_missing(plugin_dir: Path, attribute: str,
                                                                   expected: str) -> None:
    (line,) = lines_of({"strategies": f"{module_of(plugin_dir)}:{attribute}"})
    assert line.startswith("config error: strategies: ") and expected in line
    assert line.endswith("set it with --strategies or TRADER_STRATEGIES")


def test_a_dotted_path_to_a_missing_module_says_how_to_make_it_importable(clean_env: pytest.MonkeyPatch) -> None:
    (line,) = lines_of({"strategies": "nowhere_pkg.strategy:Mine"})
    assert "no module 'nowhere_pkg' on sys.path; install the package (pip install -e PATH) or put its directory " \
           "on PYTHONPATH" in line


# -- unknown names and bad parameters -------------------------------------------------------------------------------

def test_an_unknown_name_lists_the_built_in_and_installed_strategies(plugin_dir: Path) -> None:
    write_dist(plugin_dir, "fake_dist", {"fake_plug": f"{module_of(plugin_dir)}:FakePlug"})
    (line,) = lines_of({"strategies": "ema_crosover"})
    assert line.startswith("config error: strategies: unknown strategy 'ema_crosover'; built-in: "
                           "ema_crossover_enhanced, opening_range_breakout; installed (entry points "
                           "'trader.strategies'): fake_plug; or give "
                           "a dotted path package.module:ClassName")
    with pytest.raises(ConfigError) as raised:
        builders.build_strategy("nope", load_settings(), NIFTY)
    assert raised.value.lines[0].startswith("config error: strategies: unknown strategy 'nope'")


def test_bad_parameters_name_the_field_and_the_fix(plugin_dir: Path, tmp_path: Path) -> None:
    path = f"{module_of(plugin_dir)}:FakePlug"
    config = tmp_path / "bad.toml"
    config.write_text(f'strategies = ["{path}"]\n[strategy.fake_plug]\nthreshold = "many"\nthresold = 3\n')
    assert lines_of({}, config) == [
        "config error: strategy.fake_plug.threshold: Input should be a valid integer, unable to parse string as an "
        "integer (got 'many'); set it with [strategy.fake_plug] threshold = ... in the config file or "
        "TRADER_STRATEGY__FAKE_PLUG__THRESHOLD",
        "config error: strategy.fake_plug.thresold: unknown parameter of strategy 'fake_plug'; it takes: threshold, "
        "label",
    ]


def test_a_table_for_no_known_strategy_and_a_stray_value_are_errors(clean_env: pytest.MonkeyPatch) -> None:
    (line,) = lines_of({"strategy": {"ema_crossover_enhancd": {"fast": 3}}})
    assert line.startswith("config error: strategy.ema_crossover_enhancd: parameters for a strategy that is neither "
                           "run nor installed")
    assert lines_of({"strategy": {"fastt": 3}}) == [
        "config error: strategy.fastt: unknown setting; check the spelling against configs/paper.toml"]
    # A table for a built-in that is not run is still checked.
    assert lines_of({"strategy": {"ema_crossover_enhanced": {"fast": "x"}}})[0].startswith(
        "config error: strategy.ema_crossover_enhanced.fast: Input should be a valid integer")


# -- the skeleton ---------------------------------------------------------------------------------------------------

def test_the_generated_package_passes_its_own_tests(tmp_path: Path) -> None:
    root = write_skeleton("open_drive", tmp_path)
    assert {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} == {
        "pyproject.toml", "README.md", "open_drive/__init__.py", "open_drive/strategy.py",
        "tests/test_open_drive.py"}
    pyproject = (root / "pyproject.toml").read_text()
    assert '[project.entry-points."trader.strategies"]\nopen_drive = "open_drive.strategy:OpenDrive"' in pyproject
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADER_")}
    env["PYTHONPATH"] = str(root)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=root,
                         env=env, check=False, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout


def test_the_generated_package_is_lint_and_type_clean(tmp_path: Path) -> None:
    root = write_skeleton("open_drive", tmp_path)
    checks = [[sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--line-length", "120",
               "--select", "E,F,W,B,UP,SIM", str(root)],
              # the repo's mypy settings (strict, the pydantic plugin); the trader's own modules are checked elsewhere
              [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"), "--follow-imports",
               "silent", "--cache-dir", os.devnull, str(root / "open_drive"), str(root / "tests")]]
    env = {**os.environ, "MYPYPATH": str(REPO)}  # the editable install's import hook is invisible to mypy
    for command in checks:
        run = subprocess.run(command, cwd=root, env=env, check=False, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr


def test_new_strategy_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new-strategy", "my_breakout", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "--strategies my_breakout.strategy:MyBreakout" in out and class_name("my_breakout") == "MyBreakout"
    assert (tmp_path / "my_breakout" / "my_breakout" / "strategy.py").is_file()
    assert main(["new-strategy", "my_breakout", "--dir", str(tmp_path)]) == 2  # never over a user's files
    assert "exists and is not empty" in capsys.readouterr().err
    for bad in ("My-Strategy", "lots", "ema_crossover_enhanced", "json", "class"):
        assert main(["new-strategy", bad, "--dir", str(tmp_path)]) == 2, bad
        assert capsys.readouterr().err.startswith(f"new-strategy: strategy name {bad!r}")


def test_a_plugin_installed_by_entry_point_trades_a_backtest_day(tmp_path: Path,
                                                                  clean_env: pytest.MonkeyPatch) -> None:
    """The generated package, "installed" (a dist-info with its entry point), found by name in a backtest App."""
    root = write_skeleton("day_plug", tmp_path)
    write_dist(root, "trader_strategy_day_plug", {"day_plug": "day_plug.strategy:DayPlug"})
    clean_env.syspath_prepend(str(root))
    configure_logging("WARNING", io.StringIO())
    try:
        settings = load_settings({
            "mode": "backtest", "strategies": "day_plug",
            "sim": {"days": 1, "start": "2026-11-20T09:00:00", "seed": 7, "tick_interval_ms": 5_000,
                    "chain_interval_ms": 5_000},
            "strategy": {"day_plug": {"trigger_pct": 0.001}}, "risk": {"initial_capital": 1_000_000},
        })
        app = App(settings)
        signals: list[Signal] = []
        app.bus.tap(lambda event: signals.append(event) if isinstance(event, Signal) else None)
        result = asyncio.run(app.run(install_signal_handlers=False))
    finally:
        for module in [m for m in sys.modules if m == "day_plug" or m.startswith("day_plug.")]:
            del sys.modules[module]
    assert registry.resolve("day_plug").source.startswith("entry point day_plug.strategy:DayPlug")
    assert [(s.strategy_id, s.underlying) for s in signals] == [("day_plug", "NIFTY")]
    assert result.counters["actor_restarts"] == 0 and result.counters["dead_letters"] == 0
    assert result.summary.trades >= 1 and result.summary.open_positions == 0
