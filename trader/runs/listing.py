"""``trader runs``: the run folders under ``data_dir/runs``, oldest first, one line each."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from trader.money import to_rupees
from trader.runs.codec import RunFormatError
from trader.runs.model import SUMMARY
from trader.runs.store import list_runs, load_run, read_manifest


@dataclass(frozen=True, slots=True)
class RunLine:
    run_id: str
    mode: str
    status: str  # complete, failed, or "running?" (still running, or it crashed: no clean stop)
    strategies: str
    trades: int | None
    net_pnl: int | None  # paise: final equity − initial capital


def run_line(run_dir: Path) -> RunLine:
    """One run's line; an unreadable run says why in ``status``."""
    try:
        manifest = read_manifest(run_dir)
    except RunFormatError as exc:
        return RunLine(run_dir.name, "?", f"unreadable: {exc}", "", None, None)
    strategies = ",".join(s.strategy_id for s in manifest.strategies)
    if manifest.status != "running":
        try:
            summary = json.loads((run_dir / SUMMARY).read_text())
            return RunLine(manifest.run_id, manifest.mode, manifest.status, strategies, int(summary["trades"]),
                           None if summary["net_pnl"] is None else int(summary["net_pnl"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no usable summary: count from the rows
    try:
        run = load_run(run_dir)
    except RunFormatError as exc:
        return RunLine(manifest.run_id, manifest.mode, f"unreadable: {exc}", strategies, None, None)
    final = run.final_equity
    status = manifest.status if manifest.status != "running" else "running?"
    return RunLine(manifest.run_id, manifest.mode, status, strategies, len(run.trades),
                   final[1] - manifest.initial_capital if final is not None else None)


def format_lines(lines: list[RunLine]) -> list[str]:
    header = ("RUN", "MODE", "STATUS", "STRATEGIES", "TRADES", "NET P&L (INR)")
    rows = [header] + [(line.run_id, line.mode, line.status, line.strategies,
                        "-" if line.trades is None else str(line.trades),
                        "-" if line.net_pnl is None else f"{to_rupees(line.net_pnl):,.2f}") for line in lines]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    out = []
    for row in rows:
        cells = [cell.ljust(widths[i]) if i < 4 else cell.rjust(widths[i]) for i, cell in enumerate(row)]
        out.append("  ".join(cells).rstrip())
    return out


def list_lines(runs_dir: Path) -> list[str]:
    """What ``trader runs`` prints."""
    runs = list_runs(runs_dir)
    if not runs:
        return [f"no runs in {runs_dir} yet: every backtest, paper and live run writes one there"]
    return format_lines([run_line(run) for run in runs])
