"""The terminal summary of ``trader report RUN``: key figures, the go-live checklist (✓ / ✗), the best and worst
trades and the charges by kind, as rich tables.

Every value from the run goes into a ``Text`` (never into markup), so a reason like ``[stop]`` prints as written.
Colours only mark pass/fail and P&L sign; with ``--no-color``, ``NO_COLOR`` or a non-terminal stdout rich prints
plain text (and the ✓ / ✗ marks say the same as the colours).
"""

from __future__ import annotations

import os

from rich import box
from rich.console import Console, JustifyMethod
from rich.table import Table
from rich.text import Text

from trader.report.summary import (
    CHARGE_LABELS,
    RunView,
    check_figure,
    check_status,
    inr,
    ist_time,
    sharpe_note,
    summary_rows,
)
from trader.runs.model import TradeRow

TOP_TRADES = 5
PIPE_WIDTH = 200  # not a terminal and no COLUMNS: wide lines rather than wrapped cells (as the operator commands)
PASS_MARK = "✓"
FAIL_MARK = "✗"
SKIP_MARK = "–"


def make_console(*, no_color: bool = False) -> Console:
    """stdout, without colour when asked (``--no-color``; rich itself honours ``NO_COLOR`` and non-terminals)."""
    out = Console(highlight=False, no_color=no_color or None)
    if not out.is_terminal and not os.environ.get("COLUMNS"):
        out.width = PIPE_WIDTH
    return out


def _signed(paise: int) -> Text:
    return Text(inr(paise), style="green" if paise > 0 else "red" if paise < 0 else "")


def _trade_rows(table: Table, trades: list[TradeRow]) -> None:
    for t in trades:
        table.add_row(Text(t.tradingsymbol), Text(t.direction), str(t.quantity), ist_time(t.entry_ns),
                      ist_time(t.exit_ns), _signed(t.net), Text(t.exit_reason))


def print_summary(v: RunView, console: Console) -> None:
    """Print the run's summary to ``console``."""
    run = v.run
    m = run.manifest
    console.print(Text(f"Run {m.run_id}", style="bold"),
                  Text(f"— {m.mode}, {ist_time(m.started_ns)} → {ist_time(m.ended_ns)} IST"))
    if m.data.modelled_options:
        console.print(Text(f"! option prices are modelled from the index: {m.data.model_note}", style="bold yellow"))
    if not run.complete:
        console.print(Text("! run did not stop cleanly: tables rebuilt from the event log", style="bold red"))

    figures = Table(title="Summary", box=box.SIMPLE, show_header=False, title_justify="left")
    figures.add_column("figure")
    figures.add_column("value", justify="right")
    for label, value in summary_rows(v):
        figures.add_row(label, Text(value))
    console.print(figures)
    console.print(Text(f"Sharpe and Sortino: {sharpe_note(v)}", style="dim"))

    checks = Table(title="Go-live checklist", box=box.SIMPLE, title_justify="left")
    for column in ("", "requirement", "figure", "result", "detail"):
        checks.add_column(column)
    for item in v.checklist.items:
        status = check_status(item)
        mark, style = {"pass": (PASS_MARK, "green"), "fail": (FAIL_MARK, "red")}.get(status, (SKIP_MARK, "dim"))
        checks.add_row(Text(mark, style=style), item.requirement, check_figure(item), Text(status, style=style),
                       Text(item.detail))
    console.print(checks)
    verdict = v.verdict
    console.print(Text(verdict, style="bold green" if verdict.startswith("PASS") else "bold red"))

    if run.trades:
        ranked = sorted(run.trades, key=lambda t: t.net)
        best = [t for t in reversed(ranked) if t.net > 0][:TOP_TRADES]
        worst = [t for t in ranked if t.net <= 0][:TOP_TRADES]
        table = Table(title=f"Best and worst trades (of {len(run.trades)}; net of charges)", box=box.SIMPLE,
                      title_justify="left")
        columns: tuple[tuple[str, JustifyMethod], ...] = (
            ("contract", "left"), ("direction", "left"), ("qty", "right"), ("entry (IST)", "left"),
            ("exit (IST)", "left"), ("net", "right"), ("exit reason", "left"))
        for column, justify in columns:
            table.add_column(column, justify=justify)
        _trade_rows(table, best)
        if best and worst:
            table.add_section()
        _trade_rows(table, worst)
        console.print(table)
    else:
        console.print(Text("no trades", style="dim"))

    charges = v.metrics.charges
    kinds = Table(title="Charges by kind", box=box.SIMPLE, show_header=False, title_justify="left")
    kinds.add_column("kind")
    kinds.add_column("amount", justify="right")
    for kind, paise in charges.as_dict().items():
        kinds.add_row(CHARGE_LABELS[kind], inr(paise))
    kinds.add_row("total recorded", inr(charges.recorded))
    if charges.unattributed:
        kinds.add_row("unattributed", inr(charges.unattributed))
    console.print(kinds)
