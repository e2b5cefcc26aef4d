"""``trader sweep``: many parameter sets over one period, as independent backtests, ranked by a metric.

Each job is a pure function of its settings and the data (``run_job``): it builds the settings from the base config
plus its overrides, runs one backtest on the SimClock, and returns its metrics. Jobs share nothing but read-only
inputs, so they run on a local process pool (all cores by default) or on a Ray cluster (``--ray ADDRESS``; the data
path, the config file and the output directory must then be reachable at the same paths on every worker: a shared
file system). A grid is parsed and every parameter set is validated before the first job starts: a misspelt
parameter fails the sweep at once with the config error, not an hour later.

Grid syntax (``--grid`` repeated, or a TOML file's ``[grid]`` table): a settings path and a comma-separated list of
values, e.g. ``--grid strategy.ema_crossover_enhanced.fast=5,8,13 --grid risk.max_risk_per_trade_pct=0.01,0.02``.
Values are TOML scalars (``5``, ``0.02``, ``true``, ``"09:30:00"``); every combination is one job. A file may also
list explicit parameter sets as ``[[runs]]`` tables (nested like the config) instead of, or besides, a grid.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METRICS: dict[str, bool] = {  # name -> higher is better
    "net_pnl": True, "sharpe": True, "sortino": True, "profit_factor": True, "win_rate": True, "trades": True,
    "max_drawdown_pct": False,
}
_KEY_PART = "abcdefghijklmnopqrstuvwxyz0123456789_"
REFUSED_PATHS: tuple[str, ...] = ("mode", "live_confirm", "data_dir", "runs.dir", "kite", "kite_api_root",
                                  "kite_ws_root", "control", "alerts")
"""Settings a sweep never varies: every job is a backtest in its own folder (mode and data_dir are the sweep's, the
run folder goes under the job's data_dir), and credentials, the broker's addresses, the control API and the alert
destinations have no effect on a backtest but would be copied into results.csv and results.json."""


class SweepError(ValueError):
    """A grid, a parameter set or a sweep option that cannot be used; the message says which and how to fix it."""


@dataclass(frozen=True, slots=True)
class SweepJob:
    index: int
    overrides: dict[str, Any]  # nested like the settings: the base overrides with this job's parameters merged in
    params: dict[str, Any]  # this job's own parameters, by dotted path (for the results table)
    config_file: str | None = None
    data: str | None = None  # replay: a tick file or directory; None = the built-in market
    instruments: tuple[str, ...] = ()
    from_date: str | None = None  # ISO dates, IST, inclusive
    to_date: str | None = None
    data_dir: str = ""  # this job's own data directory (its run folder goes under it)


@dataclass(frozen=True, slots=True)
class JobResult:
    index: int
    params: dict[str, Any]
    metrics: dict[str, float | int | None] = field(default_factory=dict)
    run_dir: str = ""
    error: str = ""


def parse_value(text: str) -> Any:
    """One TOML scalar (``5``, ``0.02``, ``true``, ``"x"``); bare words that are not TOML are taken as text."""
    try:
        return tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        word = text.strip()
        if not word:
            raise SweepError("an empty value in a grid list; write e.g. fast=5,8,13") from None
        return word


def _check_path(path: str, where: str) -> list[str]:
    parts = path.split(".")
    if not path or any(not part or not set(part) <= set(_KEY_PART) for part in parts):
        raise SweepError(f"{where}: {path!r} is not a settings path; write it like "
                         "strategy.ema_crossover_enhanced.fast or risk.max_risk_per_trade_pct (lower-case, dots "
                         "between names)")
    refuse_path(path, where)
    return parts


def refuse_path(path: str, where: str) -> None:
    """A ``SweepError`` when ``path`` is one of ``REFUSED_PATHS`` or inside one."""
    for refused in REFUSED_PATHS:
        if path == refused or path.startswith(refused + "."):
            raise SweepError(f"{where}: {path} cannot be swept: a sweep only backtests, each job in its own folder "
                             f"under --out, and never takes the mode, credentials, data or run directories, the "
                             f"broker's addresses, the control API or alerts from a grid")


def parse_grid_option(option: str) -> tuple[str, list[Any]]:
    """``path=v1,v2,...`` → (path, values)."""
    path, sep, values = option.partition("=")
    if not sep:
        raise SweepError(f"--grid {option!r}: expected PATH=V1,V2,... e.g. strategy.ema_crossover_enhanced.fast=5,8")
    _check_path(path.strip(), f"--grid {option!r}")
    parsed = [parse_value(v) for v in values.split(",")]
    return path.strip(), parsed


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def load_grid_file(path: Path) -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
    """A TOML file's ``[grid]`` (path → list of values, nested tables allowed) and ``[[runs]]`` (explicit sets)."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SweepError(f"--grid-file {path}: cannot be read ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SweepError(f"--grid-file {path}: not valid TOML ({exc})") from None
    unknown = sorted(set(document) - {"grid", "runs"})
    if unknown:
        raise SweepError(f"--grid-file {path}: unknown table(s) {', '.join(unknown)}; it takes [grid] and [[runs]]")
    grid: dict[str, list[Any]] = {}
    for key, values in _flatten(document.get("grid", {})).items():
        _check_path(key, f"--grid-file {path} [grid]")
        if not isinstance(values, list) or not values:
            raise SweepError(f"--grid-file {path} [grid] {key}: give a non-empty list of values, e.g. {key} = [5, 8]")
        grid[key] = values
    runs = document.get("runs", [])
    if not isinstance(runs, list) or not all(isinstance(run, dict) for run in runs):
        raise SweepError(f"--grid-file {path}: runs must be [[runs]] tables")
    explicit = []
    for number, run in enumerate(runs, 1):
        flat = _flatten(run)
        for key in flat:
            _check_path(key, f"--grid-file {path} [[runs]] #{number}")
        explicit.append(flat)
    return grid, explicit


def expand(grid: Mapping[str, Sequence[Any]], explicit: Iterable[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """Every combination of the grid (in the order given, the last path varying fastest), then the explicit sets;
    duplicates dropped (a repeated parameter set is one job)."""
    sets: list[dict[str, Any]] = []
    if grid:
        paths = list(grid)
        sets += [dict(zip(paths, combo, strict=True)) for combo in itertools.product(*(grid[p] for p in paths))]
    sets += [dict(run) for run in explicit]
    unique: list[dict[str, Any]] = []
    seen: set[str] = set()
    for params in sets:
        key = repr(sorted(params.items()))
        if key not in seen:
            seen.add(key)
            unique.append(params)
    return unique


def merge_params(base: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` (nested overrides) with the dotted ``params`` set inside it; ``base`` is not changed."""
    merged: dict[str, Any] = _deep_copy(base)
    for path, value in params.items():
        parts = path.split(".")
        table = merged
        for part in parts[:-1]:
            inner = table.get(part)
            if not isinstance(inner, dict):
                inner = table[part] = {}
            table = inner
        table[parts[-1]] = value
    return merged


def _deep_copy(table: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in table.items()}


def _sort_key(metric: str, higher_is_better: bool) -> Callable[[JobResult], tuple[int, float]]:
    def key(result: JobResult) -> tuple[int, float]:
        value = result.metrics.get(metric)
        if result.error or value is None or (isinstance(value, float) and math.isnan(value)):
            return (1, 0.0)  # failed or undefined: last
        number = float(value)
        return (0, -number if higher_is_better else number)

    return key


def rank(results: Iterable[JobResult], metric: str) -> list[JobResult]:
    """Best first by ``metric``; failed jobs and undefined values last, ties in job order."""
    if metric not in METRICS:
        raise SweepError(f"--rank-by {metric!r}: choose one of {', '.join(METRICS)}")
    return sorted(sorted(results, key=lambda r: r.index), key=_sort_key(metric, METRICS[metric]))
