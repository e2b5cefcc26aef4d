"""The comparison as text, shared by the terminal (compare_terminal.py) and the HTML page (compare_html.py): money,
ratios, times and the rows and notes both show."""

from __future__ import annotations

import math
from datetime import datetime

from trader.market.calendar import IST
from trader.money import format_inr
from trader.report.compare_model import NS_PER_SECOND, Comparison


def rupees(paise: int) -> str:
    """Signed rupees with Indian grouping: ``-123456`` → ``"-₹1,234.56"``, ``0`` → ``"₹0.00"``."""
    return format_inr(paise)


def signed_rupees(paise: int) -> str:
    return ("+" if paise > 0 else "") + format_inr(paise)


def ratio_text(value: float | None, *, percent: bool = False) -> str:
    """A metric for display: ``—`` when undefined, ``∞`` for an infinite profit factor."""
    if value is None:
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.1%}" if percent else f"{value:.2f}"


def change_text(change: float | None) -> str:
    return "—" if change is None else f"{change:+.1%}"


def time_text(ts_ns: int) -> str:
    """IST wall clock to the second (``09:30:02``); the date is in the run's header."""
    return datetime.fromtimestamp(ts_ns // NS_PER_SECOND, tz=IST).strftime("%H:%M:%S")


def seconds_text(seconds: float) -> str:
    return f"{seconds:+.0f} s"


def bps_text(bps: float | None) -> str:
    return "—" if bps is None else f"{bps:+.1f}"


def metric_rows(comparison: Comparison) -> list[tuple[str, str, str, str, str]]:
    """(figure, reference, candidate, change, band) for the summary table: the degradation first, then the costs."""
    ref, cand = comparison.reference.metrics, comparison.candidate.metrics
    rows = [("trades", str(ref.trades.trades), str(cand.trades.trades), "", "")]
    for d in comparison.degradation:
        if d.name == "net P&L":
            shown = (rupees(comparison.reference.net_pnl), rupees(comparison.candidate.net_pnl))
        else:
            shown = (ratio_text(d.reference, percent=d.name == "win rate"),
                     ratio_text(d.candidate, percent=d.name == "win rate"))
        rows.append((d.name, *shown, change_text(d.change), d.band))
    rows.append(("slippage cost", rupees(ref.slippage.overall.cost_paise), rupees(cand.slippage.overall.cost_paise),
                 "", ""))
    rows.append(("charges", rupees(ref.charges.recorded), rupees(cand.charges.recorded), "", ""))
    ref_eq, cand_eq = (rupees(s.equity_change) if s.equity_change is not None else "—"
                       for s in (comparison.reference, comparison.candidate))
    rows.append(("equity change", ref_eq, cand_eq, "", ""))
    rows.append(("max drawdown", f"{ref.drawdown.max_drawdown_pct:.2%}", f"{cand.drawdown.max_drawdown_pct:.2%}",
                 "", ""))
    return rows


def model_notes(comparison: Comparison) -> list[str]:
    """A line for each run whose option prices were modelled from the index, not observed (as its report's banner):
    a comparison against such a run is against a model."""
    return [f"run {side.label} ({side.run_id}): option prices are modelled from the index: {side.model_note}"
            for side in (comparison.reference, comparison.candidate) if side.modelled_options]


def coverage_notes(comparison: Comparison) -> list[str]:
    """A line for each run whose equity moved by more or less than its round trips' net (open at the end)."""
    notes = []
    for side in (comparison.reference, comparison.candidate):
        outside = side.outside_round_trips
        if outside:
            notes.append(f"run {side.label} ({side.run_id}): the equity changed by {rupees(side.equity_change or 0)} "
                         f"but its round trips net {rupees(side.net_pnl)}; {signed_rupees(outside)} is outside the "
                         "comparison (positions open at the end, or equity sampled before the last fills)")
    return notes
