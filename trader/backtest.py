"""``trader backtest``: one bounded run on the simulated clock — your tick or candle files (``trader/adapters/replay``)
or the built-in market for ``sim.days`` sessions — with an optional progress bar, ending in a summary.

``run_backtest`` is the whole command without the argument parsing: the CLI, a sweep and the tests call it. The run
is in backtest mode (unpaced ``SimClock``; paper and live are refused here). Bad data or configuration raises
``ConfigError`` whose lines name the file, the row and the field (the CLI prints them and exits 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from trader.app import App, RunResult
from trader.config import ConfigError, Settings
from trader.logging import get_logger
from trader.market.calendar import MarketCalendar, ist_date
from trader.money import rupee_text
from trader.runs.model import DataSource

if TYPE_CHECKING:
    from trader.adapters.replay.sources import ReplayConfig

log = get_logger("trader.backtest")

PROGRESS_HZ = 10  # the bar is redrawn at most this often, from counters the run keeps anyway
MAX_SHARE_INVERSE = 100  # ... and waits at least 100 × a redraw's cost between redraws (≤ ~1 % of the wall time)


@dataclass(frozen=True, slots=True)
class BacktestOutcome:
    result: RunResult
    run_dir: Path | None  # the run folder (trader/runs), None when [runs] enabled = false
    data_source: DataSource
    ticks: int  # ticks the feeds passed on
    wall_seconds: float
    # The account as the portfolio kept it (paise; ns): what trader.report.metrics.run_metrics takes (a sweep ranks
    # on it without reading the run folder back).
    initial_capital: int = 0
    trade_pnls: tuple[int, ...] = ()
    equity_curve: tuple[tuple[int, int], ...] = ()
    final_equity: tuple[int, int] | None = None

    @property
    def ticks_per_second(self) -> float:
        return self.ticks / self.wall_seconds if self.wall_seconds > 0 else 0.0


def want_progress(requested: bool, stream: TextIO) -> bool:
    """The bar only on a terminal (a pipe, a file or CI get none) and only when not turned off (--no-progress)."""
    try:
        return requested and stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream
        return False


def run_backtest(settings: Settings, replay: ReplayConfig | None, *, progress: bool,
                 progress_stream: TextIO | None = None) -> BacktestOutcome:
    """Run one backtest to its end (the data's, or ``sim.days`` sessions of the built-in market).

    ``progress``: draw the bar on ``progress_stream`` (stderr by default) — the caller decides whether it is a
    terminal (``want_progress``)."""
    run = backtest(settings, replay, progress=progress, progress_stream=progress_stream)
    try:
        import uvloop  # noqa: PLC0415 - Linux only (see pyproject markers), as for trader run
    except ImportError:
        return asyncio.run(run)
    return uvloop.run(run)


async def backtest(settings: Settings, replay: ReplayConfig | None, *, progress: bool,
                   progress_stream: TextIO | None = None) -> BacktestOutcome:
    """``run_backtest`` inside a running event loop."""
    if settings.mode != "backtest":
        raise ConfigError([f"mode {settings.mode!r}: a backtest runs in backtest mode (--mode backtest)"])
    app = App(settings, replay=replay)  # it tells what the data is: ticks, candles, index-only (options modelled)
    source = app.data_source
    log.info("backtest_data", kind=source.kind, path=source.path, instruments=source.instruments,
             modelled_options=source.modelled_options, model_note=source.model_note, bar_path=source.bar_path)
    bar = _Progress(app, settings, replay, progress_stream or sys.stderr) if progress else None
    started = time.perf_counter()
    watcher = asyncio.create_task(bar.run()) if bar is not None else None
    try:
        result = await app.run(install_signal_handlers=False)
    finally:
        if watcher is not None and bar is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            bar.finish()
    wall = time.perf_counter() - started
    portfolio = app.portfolio
    return BacktestOutcome(result=result, run_dir=app.run_dir, data_source=source,
                           ticks=result.counters.get("ticks_in", 0), wall_seconds=wall,
                           initial_capital=portfolio.initial_capital, trade_pnls=tuple(portfolio.trade_pnls),
                           equity_curve=tuple(portfolio.equity_curve),
                           final_equity=(app.clock.now_ns(), portfolio.equity))


def summary_text(outcome: BacktestOutcome) -> str:
    """What ``trader backtest`` prints at the end (stdout)."""
    s = outcome.result.summary
    source = outcome.data_source
    lines = [
        f"backtest summary ({source.kind}{', options modelled' if source.modelled_options else ''})",
        f"  data           {source.path or 'built-in market'}",
    ]
    if source.model_note:
        lines.append(f"  model          {source.model_note}")
    if source.bar_path:
        lines.append(f"  bars           {source.bar_path}")
    pf = "n/a" if s.profit_factor is None else f"{s.profit_factor:.2f}"
    lines += [
        f"  ticks          {outcome.ticks:,} in {outcome.wall_seconds:.1f} s ({outcome.ticks_per_second:,.0f}/s)",
        f"  trades         {s.trades} (won {s.wins}, lost {s.losses}, win rate {s.win_rate:.1%}, "
        f"profit factor {pf})",
        f"  net P&L        ₹{rupee_text(s.net_pnl)} (gross ₹{rupee_text(s.gross_pnl)}, "
        f"charges ₹{rupee_text(s.charges)})",
        f"  max drawdown   ₹{rupee_text(s.max_drawdown)} ({s.max_drawdown_pct:.2%})",
        f"  fills          {s.fills}, open positions at the end {s.open_positions}",
        f"  run folder     {outcome.run_dir if outcome.run_dir is not None else '(not recorded)'}",
    ]
    return "\n".join(lines)


def trading_days(calendar: MarketCalendar, first: date, last: date) -> list[date]:
    days = []
    day = first
    while day <= last:
        if calendar.is_trading_day(day):
            days.append(day)
        day = date.fromordinal(day.toordinal() + 1)
    return days


class _Progress:
    """Days done/total, ticks/s and ETA, redrawn ``PROGRESS_HZ`` times a second at most by a task of its own: the
    replay's hot path is untouched (the bar reads the feeds' tick counters and the clock)."""

    def __init__(self, app: App, settings: Settings, replay: ReplayConfig | None, stream: TextIO) -> None:
        from rich.console import Console  # noqa: PLC0415 - only on a terminal
        from rich.progress import BarColumn, Progress, TextColumn  # noqa: PLC0415

        self._app = app
        self._days = self._planned_days(app, settings, replay)
        self._progress = Progress(TextColumn("backtest"), BarColumn(), TextColumn("{task.fields[status]}"),
                                  console=Console(file=stream), auto_refresh=False, transient=False,
                                  redirect_stdout=False, redirect_stderr=False)
        self._task = self._progress.add_task("backtest", total=max(len(self._days), 1), status="starting")
        self._started = time.perf_counter()
        self._progress.start()

    @staticmethod
    def _planned_days(app: App, settings: Settings, replay: ReplayConfig | None) -> list[date]:
        calendar = app.calendar
        start = ist_date(app.clock.now_ns())
        if replay is None:
            found: list[date] = []
            day = start
            while len(found) < settings.sim.days:
                if calendar.is_trading_day(day):
                    found.append(day)
                day = date.fromordinal(day.toordinal() + 1)
            return found
        first = max(start, replay.from_date) if replay.from_date else start
        last = replay.to_date
        if last is None and app.replay is not None:
            last = app.replay.last_day()
        return trading_days(calendar, first, last or first)

    def _fraction(self) -> tuple[int, float]:
        """(days done, share of the run done) from the event time."""
        now = self._app.clock.now_ns()
        today = ist_date(now)
        done = sum(1 for day in self._days if day < today)
        share = float(done)
        if today in self._days:
            open_ns, close_ns = self._app.calendar.session_bounds(today)
            share += min(max((now - open_ns) / max(close_ns - open_ns, 1), 0.0), 1.0)
        return done, share

    def _status(self) -> dict[str, Any]:
        elapsed = time.perf_counter() - self._started
        ticks = sum(feed.ticks_in for feed in self._app.feeds)
        done, share = self._fraction()
        total = max(len(self._days), 1)
        rate = ticks / elapsed if elapsed > 0 else 0.0
        eta = "--:--"
        if share > 0.01:
            remaining = max(elapsed * (total - share) / share, 0.0)
            eta = f"{int(remaining // 60):02d}:{int(remaining % 60):02d}"
        status = f"days {done}/{total}  {rate:,.0f} ticks/s  ETA {eta}"
        return {"completed": share, "status": status}

    async def run(self) -> None:
        """Redraw at most ``PROGRESS_HZ`` times a second, and less on a slow machine: the pause is at least 100 × the
        last redraw's cost, so the bar takes at most ~1 % of the run's time."""
        while True:
            started = time.perf_counter()
            self.update()
            cost = time.perf_counter() - started
            await asyncio.sleep(max(1 / PROGRESS_HZ, MAX_SHARE_INVERSE * cost))

    def update(self) -> None:
        fields = self._status()
        self._progress.update(self._task, completed=fields["completed"], status=fields["status"])
        self._progress.refresh()

    def finish(self) -> None:
        elapsed = time.perf_counter() - self._started
        ticks = sum(feed.ticks_in for feed in self._app.feeds)
        total = max(len(self._days), 1)
        self._progress.update(self._task, completed=total,
                              status=f"days {len(self._days)}/{total}  {ticks / max(elapsed, 1e-9):,.0f} ticks/s  "
                                     f"done in {elapsed:.1f} s")
        self._progress.refresh()
        self._progress.stop()
