"""The reality check in the terminal: rich tables of the degradation, the P&L gap's parts, the matched trades and
what is in one run only (the HTML page, ``trader.report.compare_html``, has the same figures and the P&L curves)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from trader.report.compare import compare_runs
from trader.report.compare_html import write_compare_html
from trader.report.compare_model import CATEGORY_TEXT, DEFAULT_TOLERANCE_NS, NS_PER_SECOND, Comparison, Unmatched
from trader.report.compare_text import (
    bps_text,
    coverage_notes,
    metric_rows,
    model_notes,
    rupees,
    seconds_text,
    signed_rupees,
    time_text,
)
from trader.runs.model import RunData


def _money(paise: int) -> Text:
    style = "green" if paise > 0 else "red" if paise < 0 else ""
    return Text(signed_rupees(paise), style=style)


def _table(title: str, *columns: str, right: tuple[int, ...] = ()) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", title_style="bold")
    for index, column in enumerate(columns):
        table.add_column(column, justify="right" if index in right else "left")
    return table


def _unmatched(c: Comparison, title: str, items: tuple[Unmatched, ...], *, with_net: bool) -> Table:
    columns = ("run", "time", "strategy", "what", *(("net",) if with_net else ()), "category", "why")
    table = _table(title, *columns, right=(4,) if with_net else ())
    for u in items:
        side = c.reference if u.run == "reference" else c.candidate
        cells: list[str | Text] = [f"{side.label} only", time_text(u.ts_ns), Text(u.strategy_id), Text(u.what)]
        if with_net:
            cells.append(_money(u.net))
        cells += [u.category, Text(u.detail)]
        table.add_row(*cells)
    return table


def render(c: Comparison, console: Console) -> None:
    """Print the comparison (run-derived text is passed as ``Text``, never parsed as rich markup)."""
    ref, cand = c.reference, c.candidate
    console.print(Text(f"Reality check: {cand.label} {cand.run_id} ({cand.mode}) vs reference {ref.label} "
                       f"{ref.run_id} ({ref.mode}); matched within ±{c.tolerance_ns / NS_PER_SECOND:.0f} s",
                       style="bold"))
    for note in model_notes(c):
        console.print(Text(note, style="bold yellow"))
    for side in (ref, cand):
        if not side.complete:
            console.print(Text(f"run {side.label} ({side.run_id}) did not stop cleanly: rebuilt from events.jsonl",
                               style="yellow"))
    for note in coverage_notes(c):
        console.print(Text(note, style="yellow"))

    summary = _table("Degradation (change = (candidate − reference) / |reference|; the seed expects −30 to −50 %)",
                     "figure", f"ref {ref.label}", f"cand {cand.label}", "change", "band", right=(1, 2, 3))
    for row in metric_rows(c):
        summary.add_row(*(Text(cell) for cell in row))
    console.print(summary)

    att = c.attribution
    parts = _table("P&L gap attribution", "part", "₹", right=(1,))
    parts.add_row(Text("gap (candidate − reference)", style="bold"), _money(att.gap))
    for name, value in att.parts():
        parts.add_row(name, _money(value))
    for label, by_category in (("missed", att.missed_by_category), ("extra", att.extra_by_category)):
        for category, value in sorted(by_category.items()):
            parts.add_row(Text(f"  {label}: {CATEGORY_TEXT.get(category, category)}", style="dim"), _money(value))
    console.print(parts)

    matched = _table(f"Matched trades ({len(c.trades)})", "contract", "dir", "entry ref/cand", "Δ entry",
                     "Δ entry price", "Δ exit", "Δ exit price", "Δ net", "slippage", "charges", "latency+price", "note",
                     right=(3, 4, 5, 6, 7, 8, 9, 10))
    for m in c.trades:
        matched.add_row(Text(m.reference.tradingsymbol), Text(m.reference.direction),
                        f"{time_text(m.reference.entry_ns)}/{time_text(m.candidate.entry_ns)}",
                        seconds_text(m.entry_diff_s),
                        f"{m.entry_price_diff:+d} p ({bps_text(m.entry_price_diff_bps)} bps)",
                        seconds_text(m.exit_diff_s),
                        f"{m.exit_price_diff:+d} p ({bps_text(m.exit_price_diff_bps)} bps)",
                        _money(m.net_diff), _money(m.slippage), _money(m.charges), _money(m.latency_price),
                        Text(m.note))
    console.print(matched)
    console.print(_unmatched(c, f"Trades in one run only ({len(c.unmatched_trades)})", c.unmatched_trades,
                             with_net=True))
    console.print(_unmatched(c, f"Signals in one run only ({len(c.unmatched_signals)})", c.unmatched_signals,
                             with_net=False))
    verdicts = []
    for item in c.checklist.items:
        mark = "—" if item.passed is None else "pass" if item.passed else "FAIL"
        verdicts.append(Text(f"{mark:>4}  {item.requirement}: {item.detail}",
                             style="" if item.passed is None else "green" if item.passed else "red"))
    console.print(Text(f"Go-live checklist of {cand.label}:", style="bold"))
    for verdict in verdicts:
        console.print(verdict)
    console.print(Text(f"net P&L: reference {rupees(ref.net_pnl)}, candidate {rupees(cand.net_pnl)}"))


def show_and_write(a: RunData, b: RunData, *, out_dir: Path, tolerance_s: float = DEFAULT_TOLERANCE_NS / NS_PER_SECOND,
                   reference: Literal["a", "b"] = "a", console: Console | None = None) -> Path:
    """``trader compare`` on two runs already read: print the comparison and write its HTML page into ``out_dir``;
    returns the page's path."""
    if not math.isfinite(tolerance_s) or tolerance_s < 0:
        raise ValueError(f"--tolerance-s must be a number of seconds ≥ 0, got {tolerance_s}")
    comparison = compare_runs(a, b, tolerance_ns=round(tolerance_s * NS_PER_SECOND), reference=reference)
    out = console if console is not None else Console()
    render(comparison, out)
    path = write_compare_html(comparison, out_dir)
    out.print(Text(f"HTML: {path}"))
    return path
