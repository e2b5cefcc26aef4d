"""A run's figures as the report shows them: ``RunData`` in, the metrics and checklist (computed by
``trader.report.metrics`` / ``checklist``, never here) plus the text forms both renderers share (HTML and terminal).

Money is shown in rupees with Indian grouping (``trader.money.format_inr``), times in IST, undefined figures as "—"
and an infinite profit factor as "∞" (docs/metrics-definitions.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from trader.market.calendar import IST
from trader.money import format_inr
from trader.report.checklist import CheckItem, Checklist, evaluate_run
from trader.report.metrics import RunMetrics, run_metrics
from trader.runs.model import FillRow, RunData

NS_PER_SECOND = 1_000_000_000
UNDEFINED = "—"
CHARGE_LABELS: dict[str, str] = {
    "brokerage": "brokerage",
    "stt": "STT",
    "exchange_txn": "exchange transaction",
    "sebi_fee": "SEBI fee",
    "stamp_duty": "stamp duty",
    "gst": "GST",
}
"""The kinds of ``ChargesByKind`` (in its order) and how the report names them."""
SHARPE_NOTE = "daily returns (IST trading days), annualised ×√252 (252 trading days a year), risk-free rate {rf}"
NOT_EVALUATED = "not evaluated"


@dataclass(frozen=True, slots=True)
class RunView:
    """Everything a renderer needs: the run as recorded, its metrics and the go-live checklist."""

    run: RunData
    metrics: RunMetrics
    checklist: Checklist

    @property
    def evaluated(self) -> tuple[CheckItem, ...]:
        return tuple(item for item in self.checklist.items if item.passed is not None)

    @property
    def caveats(self) -> tuple[str, ...]:
        """Why the run's figures are no go-live evidence whatever they are: modelled option prices, an unclean stop."""
        run = self.run
        out = []
        if run.manifest.data.modelled_options:
            out.append("option prices are modelled from the index, not observed")
        if not run.complete or run.manifest.status != "complete":
            out.append(f"the run did not stop cleanly (status {run.manifest.status})")
        return tuple(out)

    @property
    def verdict(self) -> str:
        """One line: how many evaluated items pass, and what was not evaluated. PASS only when every evaluated item
        passes on a run that stopped cleanly on observed prices (``caveats``)."""
        evaluated = self.evaluated
        passed = sum(1 for item in evaluated if item.passed)
        skipped = [item.name for item in self.checklist.items if item.passed is None]
        text = f"{passed} of {len(evaluated)} evaluated items pass"
        if skipped:
            text += f"; {NOT_EVALUATED}: {', '.join(skipped)} (needs `trader compare` with a backtest)"
        caveats = self.caveats
        if caveats:
            text += f"; but {' and '.join(caveats)}"
        return ("PASS: " if evaluated and passed == len(evaluated) and not caveats else "FAIL: ") + text


def time_ordered_fills(run: RunData) -> list[FillRow]:
    """The fills in time order (stable: fills of the same instant keep the run's order)."""
    return sorted(run.fills, key=lambda f: f.ts_ns)


def view(run: RunData, *, risk_free_annual: float = 0.0) -> RunView:
    """The run's metrics (``run_metrics`` on what it recorded) and checklist (``evaluate_run``).

    The exposure span is the manifest's [start, end] when the run stopped (``ended_ns`` > 0), else the first and last
    moment seen; the final equity sample is the account at the end (``RunData.final_equity``)."""
    manifest = run.manifest
    equity = sorted(run.equity, key=lambda e: e.ts_ns)
    ended = manifest.ended_ns > manifest.started_ns
    metrics = run_metrics(
        net_pnls=[t.net for t in run.trades],
        equity_curve=[(e.ts_ns, e.equity) for e in equity],
        fills=[f.record() for f in time_ordered_fills(run)],
        initial_capital=manifest.initial_capital,
        final_equity=(equity[-1].ts_ns, equity[-1].equity) if equity else None,
        start_ns=manifest.started_ns if ended else None,
        end_ns=manifest.ended_ns if ended else None,
        risk_free_annual=risk_free_annual,
    )
    return RunView(run=run, metrics=metrics, checklist=evaluate_run(metrics))


# --- text forms ------------------------------------------------------------------------------------------------


def ist_datetime(ts_ns: int) -> datetime:
    """ns UTC → naive IST wall-clock time (what the charts' x axes show)."""
    return datetime.fromtimestamp(ts_ns // NS_PER_SECOND, tz=IST).replace(tzinfo=None)


def ist_time(ts_ns: int) -> str:
    return ist_datetime(ts_ns).strftime("%Y-%m-%d %H:%M:%S") if ts_ns else UNDEFINED


def duration_text(ns: int) -> str:
    """``2d 03:04:05`` / ``03:04:05``: a span of time to the second."""
    seconds = max(ns, 0) // NS_PER_SECOND
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


def inr(paise: int | float | None) -> str:
    """Paise → ``₹1,23,456.78``; a float (an average) is rounded to the paisa for display only."""
    if paise is None:
        return UNDEFINED
    return format_inr(round(paise))


def ratio(value: float | None, digits: int = 2) -> str:
    if value is None:
        return UNDEFINED
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.{digits}f}"


def pct(value: float | None, digits: int = 2) -> str:
    """A fraction as a percentage: 0.1234 → ``12.34 %``."""
    return UNDEFINED if value is None else f"{value * 100:.{digits}f} %"


def bps(value: float | None) -> str:
    return UNDEFINED if value is None else f"{value:.1f}"


def summary_rows(v: RunView) -> list[tuple[str, str]]:
    """The key figures, label → text, in the order both renderers show them."""
    m = v.metrics
    t = m.trades
    dd = m.drawdown
    final = v.run.final_equity
    rows = [
        ("initial capital", inr(v.run.manifest.initial_capital)),
        ("final equity", inr(final[1]) if final else UNDEFINED),
        ("net P&L (closed trades, after charges)", inr(t.net_pnl)),
        ("trades (round trips)", f"{t.trades} ({t.wins} won, {t.losses} lost, {t.breakevens} breakeven)"),
        ("win rate", pct(t.win_rate, 1)),
        ("profit factor", ratio(t.profit_factor)),
        ("average win / average loss", f"{inr(t.average_win)} / {inr(t.average_loss)}"),
        ("expectancy per trade", inr(t.expectancy)),
        ("largest win / largest loss", f"{inr(t.largest_win)} / {inr(t.largest_loss)}"),
        ("Sharpe", ratio(m.sharpe)),
        ("Sortino", ratio(m.sortino)),
        ("trading days", str(len(m.days))),
        ("max drawdown", f"{inr(dd.max_drawdown)} ({pct(dd.max_drawdown_pct)})"),
        ("max drawdown duration",
         (duration_text(dd.duration_ns) + ("" if dd.recovered else " (not recovered)")) if dd.peak_ns is not None
         else UNDEFINED),
        ("longest time under water", duration_text(dd.longest_ns)),
        ("slippage (fills, mean / median / p90 / worst bps)",
         f"{m.slippage.overall.fills} fills, {bps(m.slippage.overall.mean_bps)} / {bps(m.slippage.overall.median_bps)}"
         f" / {bps(m.slippage.overall.p90_bps)} / {bps(m.slippage.overall.worst_bps)}"),
        ("slippage cost", inr(m.slippage.overall.cost_paise)),
        ("charges (recorded)", inr(m.charges.recorded)),
        ("time in market", pct(m.exposure.time_in_market, 1)),
        ("max / average open premium", f"{inr(m.exposure.max_open_premium)} / {inr(m.exposure.average_open_premium)}"),
        ("max positions open at once", str(m.exposure.max_open_positions)),
    ]
    return rows


def sharpe_note(v: RunView) -> str:
    return SHARPE_NOTE.format(rf=f"{v.metrics.risk_free_annual:.2%}")


def check_figure(item: CheckItem) -> str:
    """The figure an item was judged on, in the item's own unit."""
    if item.figure is None:
        return UNDEFINED
    if item.name == "trades":
        return str(int(item.figure))
    if item.name == "drawdown":
        return pct(item.figure)
    if item.name == "pnl_vs_backtest":
        return f"₹{item.figure:,.2f}"
    return ratio(item.figure)


def check_status(item: CheckItem) -> str:
    return NOT_EVALUATED if item.passed is None else ("pass" if item.passed else "fail")
