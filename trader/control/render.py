"""Human output of the operator commands: rich tables and panels on stdout.

Money arrives in rupees (``*_inr``) and is shown as ``₹1,234.50`` (``Rs`` where stdout cannot encode ``₹``); times
arrive as ISO text or ns and are shown in IST. Colours say state, level, side and P&L sign; rich drops them (and the
terminal width) when stdout is not a terminal or NO_COLOR is set. Every value from the daemon goes into a ``Text``,
never into markup, so a reason like ``[fast 9 / slow 21]`` prints as written. A field the answer lacks shows as
``-``: the CLI never fails on an answer with more or fewer fields than it knows.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from trader.control.client import Answer
from trader.market.calendar import IST
from trader.money import MoneyError, format_inr, to_paise

MISSING = "-"
_PIPE_WIDTH = 200  # not a terminal and no COLUMNS: wide lines rather than wrapped cells, for grep and less -S
_SPARK = "▁▂▃▄▅▆▇█"

STATE_STYLE = {"ACTIVE": "green", "REDUCING_ONLY": "yellow", "HALTED": "bold red"}
LEVEL_STYLE = {"LOW": "green", "MEDIUM": "yellow", "HIGH": "red", "CRITICAL": "bold red"}
STATUS_STYLE = {"COMPLETE": "green", "OPEN": "cyan", "TRIGGER PENDING": "cyan", "PENDING": "yellow",
                "CANCELLED": "dim", "REJECTED": "red", "APPROVED": "green", "EXPIRED": "dim"}
SIDE_STYLE = {"BUY": "green", "SELL": "red", "BULLISH": "green", "BEARISH": "red"}


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """rich would exit 1 (our "refused"): the caller (commands.run) ends quietly with the command's code."""
        self.quiet = True
        raise BrokenPipeError


def console() -> Console:
    out = _Console(highlight=False)
    if not out.is_terminal and not os.environ.get("COLUMNS"):
        out.width = _PIPE_WIDTH
    return out


class View:
    """Formatting for one console (its encoding decides ``₹`` or ``Rs``)."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.unicode = out.encoding.lower().startswith("utf")

    # -- values -----------------------------------------------------------------------------------------------------
    def money(self, value: Any, *, pnl: bool = False) -> Text:
        if value is None or value == "":
            return Text(MISSING)
        try:
            paise = to_paise(value)
        except MoneyError:
            return Text(str(value))
        text = format_inr(paise)
        if pnl and paise > 0:
            text = "+" + text
        if not self.unicode:
            text = text.replace("₹", "Rs ")
        style = ("green" if paise > 0 else "red" if paise < 0 else "") if pnl else ""
        return Text(text, style=style)

    @staticmethod
    def styled(value: Any, styles: Mapping[str, str]) -> Text:
        if value is None or value == "":
            return Text(MISSING)
        text = str(value)
        return Text(text, style=styles.get(text.upper(), ""))

    @staticmethod
    def plain(value: Any) -> Text:
        if value is None or value == "":
            return Text(MISSING)
        if isinstance(value, bool):
            return Text("yes" if value else "no")
        if isinstance(value, float):
            return Text(f"{value:,.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value):,}")
        if isinstance(value, int):
            return Text(f"{value:,}")
        return Text(str(value))

    @staticmethod
    def percent(share: Any, digits: int = 1) -> Text:
        """A fraction (0.25) as ``25.0%``."""
        if not isinstance(share, int | float) or isinstance(share, bool):
            return Text(MISSING if share is None else str(share))
        return Text(f"{share * 100:.{digits}f}%")

    @staticmethod
    def time(value: Any, *, date: bool = False) -> Text:
        if value is None or value == "":
            return Text(MISSING)
        moment: datetime | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            moment = datetime.fromtimestamp(value / 1e9, tz=IST)
        elif isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                return Text(value)
            moment = moment.replace(tzinfo=IST) if moment.tzinfo is None else moment.astimezone(IST)
        if moment is None:
            return Text(str(value))
        return Text(moment.strftime("%d %b %Y %H:%M:%S IST" if date else "%H:%M:%S"))

    def spark(self, values: list[float]) -> Text:
        if not self.unicode or len(values) < 2:
            return Text("")
        low, high = min(values), max(values)
        span = high - low
        if not math.isfinite(span):  # an answer no daemon gives (±1e308): no sparkline rather than a traceback
            return Text("")
        marks = [_SPARK[0 if span == 0 else round((v - low) / span * (len(_SPARK) - 1))] for v in values[-60:]]
        return Text("".join(marks), style="cyan")

    # -- layout -----------------------------------------------------------------------------------------------------
    @staticmethod
    def grid(rows: Iterable[tuple[str, RenderableType]]) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        for label, value in rows:
            table.add_row(Text(label), value)
        return table

    @staticmethod
    def table(title: str, columns: Iterable[tuple[str, str]]) -> Table:
        """``columns``: (header, "l" | "r" | "w"): left, right (numbers), or left and wrapping (free text). Only
        free text wraps: a narrow terminal squeezes the reason, not the ids and symbols."""
        table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0),
                      pad_edge=False)
        for name, kind in columns:
            table.add_column(name, justify="right" if kind == "r" else "left", no_wrap=kind != "w")
        return table

    def line(self, *parts: str | Text) -> None:
        self.out.print(Text.assemble(*parts))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _join(*parts: Any) -> str:
    return "; ".join(str(part) for part in parts if part not in (None, ""))


def _duration(seconds: Any) -> Text:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return Text(MISSING)
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return Text(f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s")


# -- reads ------------------------------------------------------------------------------------------------------------
def _status(view: View, doc: dict[str, Any], _: int) -> None:
    state = view.styled(doc.get("trading_state"), STATE_STYLE)
    if doc.get("state_reason"):
        state.append(f" ({doc['state_reason']})")
    broker = doc.get("broker_reachable")
    broker_text = Text("reachable", style="green") if broker is True else (
        Text("NOT reachable", style="bold red") if broker is False else Text(MISSING))
    problems = _dict(doc.get("venue_problems"))
    for problem, detail in problems.items():
        broker_text.append(f"\n{problem}: {detail}", style="yellow")
    feed_age = doc.get("feed_age_s")
    feed = Text("no tick yet", style="yellow") if feed_age is None else (
        Text(f"{feed_age:.1f} s") if isinstance(feed_age, int | float) else view.plain(feed_age))
    auto = doc.get("auto_execution")
    auto_text = Text("on" if auto else "off (semi-live: entries wait for `trader approve`)") if isinstance(
        auto, bool) else Text(MISSING)
    rows: list[tuple[str, RenderableType]] = [
        ("mode", view.plain(doc.get("mode"))),
        ("auto-execution", auto_text),
        ("trading", state),
        ("risk level", view.styled(doc.get("risk_level"), LEVEL_STYLE)),
        ("broker", broker_text),
        ("feed age", feed),
        ("loop lag", Text(MISSING) if doc.get("loop_lag_ms") is None else Text(f"{doc['loop_lag_ms']} ms")),
        ("session time", view.time(doc.get("session_time"), date=True)),
        ("uptime", _duration(doc.get("uptime_s"))),
        ("open positions", view.plain(doc.get("open_positions"))),
        ("pending approvals", view.plain(doc.get("pending_approvals"))),
        ("equity", view.money(doc.get("equity_inr"))),
        ("day P&L", view.money(doc.get("day_pnl_inr"), pnl=True)),
    ]
    counts = _dict(doc.get("counts"))
    body: list[RenderableType] = [view.grid(rows)]
    if counts:
        counts_text = Text("  ".join(f"{name} {value}" for name, value in counts.items()), style="dim")
        body.append(Text(""))
        body.append(counts_text)
    title = f"trader {doc.get('version') or ''}".strip()
    view.out.print(Panel(Group(*body), title=title, title_align="left", expand=False))


def _positions(view: View, doc: dict[str, Any], _: int) -> None:
    rows = _list(doc.get("positions"))
    if rows:
        table = view.table("Positions", [("symbol", "l"), ("held by", "l"), ("qty", "r"), ("lots", "r"),
                                         ("avg", "r"), ("last", "r"), ("unrealized", "r"), ("realized", "r")])
        for row in map(_dict, rows):
            table.add_row(view.plain(row.get("tradingsymbol")), view.plain(row.get("held_by")),
                          view.plain(row.get("quantity")), view.plain(row.get("lots")),
                          view.money(row.get("average_price_inr")), view.money(row.get("last_price_inr")),
                          view.money(row.get("unrealized_inr"), pnl=True),
                          view.money(row.get("realized_inr"), pnl=True))
        view.out.print(table)
    else:
        view.line("no open positions")
    view.out.print(view.grid([
        ("realized", view.money(doc.get("realized_inr"), pnl=True)),
        ("unrealized", view.money(doc.get("unrealized_inr"), pnl=True)),
        ("charges", view.money(doc.get("charges_inr"))),
        ("equity", view.money(doc.get("equity_inr"))),
        ("day P&L", view.money(doc.get("day_pnl_inr"), pnl=True)),
    ]))


def _order_row(view: View, table: Table, row: dict[str, Any]) -> None:
    filled = f"{row.get('filled_quantity', 0) or 0}/{row.get('quantity', MISSING)}"
    table.add_row(view.time(row.get("time")), view.plain(row.get("intent_id")), view.plain(row.get("order_id")),
                  view.plain(row.get("tradingsymbol")), view.styled(row.get("side"), SIDE_STYLE),
                  view.plain(row.get("order_type")), view.styled(row.get("status"), STATUS_STYLE), Text(filled),
                  view.money(row.get("average_price_inr")), view.money(row.get("expected_price_inr")),
                  view.plain(row.get("slippage_bps")), Text(_join(row.get("strategy"), row.get("purpose"))))


def _order_reason(row: dict[str, Any]) -> str:
    return _join(row.get("reason"), f"risk check {row['check']}" if row.get("check") else "")


# Only the last column wraps: ids and symbols are what the operator types next (cancel, approve); the reasons, free
# text of any length, go under the table.
ORDER_COLUMNS = [("time", "l"), ("intent", "l"), ("order id", "l"), ("symbol", "l"), ("side", "l"), ("type", "l"),
                 ("status", "l"), ("filled", "r"), ("avg", "r"), ("expected", "r"), ("slip bps", "r"),
                 ("strategy", "w")]


def _orders(view: View, doc: dict[str, Any], _: int) -> None:
    rows = [_dict(row) for row in _list(doc.get("orders"))]
    if not rows:
        view.line("no orders today")
        return
    table = view.table("Orders (newest first)", ORDER_COLUMNS)
    for row in rows:
        _order_row(view, table, row)
    view.out.print(table)
    for row in rows:
        if _order_reason(row):
            view.line(Text(f"{row.get('intent_id') or MISSING}: ", style="bold"),
                      view.styled(row.get("status"), STATUS_STYLE), f" - {_order_reason(row)}")


APPROVAL_COLUMNS = [("id", "l"), ("signal", "l"), ("strategy", "w"), ("symbol", "l"), ("side", "l"),
                    ("lots", "r"), ("qty", "r"), ("expected", "r"), ("status", "l"), ("expires in", "r"),
                    ("by", "l"), ("reason", "w")]


def _approval_row(view: View, table: Table, row: dict[str, Any]) -> None:
    expires = row.get("expires_in_s")
    expires_text = Text(f"{float(expires):.0f} s") if isinstance(expires, int | float) and row.get(
        "status", "PENDING") == "PENDING" else Text(MISSING)
    table.add_row(view.plain(row.get("intent_id")), view.plain(row.get("signal_id")), view.plain(row.get("strategy")),
                  view.plain(row.get("tradingsymbol")), view.styled(row.get("side"), SIDE_STYLE),
                  view.plain(row.get("lots")), view.plain(row.get("quantity")),
                  view.money(row.get("expected_price_inr")), view.styled(row.get("status"), STATUS_STYLE),
                  expires_text, view.plain(row.get("by")), view.plain(row.get("reason")))


def _signals(view: View, doc: dict[str, Any], _: int) -> None:
    signals = _list(doc.get("signals"))
    if signals:
        table = view.table("Signals", [("time", "l"), ("signal", "l"), ("strategy", "w"), ("underlying", "l"),
                                       ("direction", "l"), ("confidence", "r"), ("intent", "l"), ("reason", "w")])
        for row in map(_dict, signals):
            table.add_row(view.time(row.get("time")), view.plain(row.get("signal_id")),
                          view.plain(row.get("strategy")), view.plain(row.get("underlying")),
                          view.styled(row.get("direction"), SIDE_STYLE), view.plain(row.get("confidence")),
                          view.plain(row.get("intent_id")), view.plain(row.get("reason")))
        view.out.print(table)
    else:
        view.line("no signals yet")
    pending = _list(doc.get("pending"))
    if pending:
        table = view.table("Waiting for approval", APPROVAL_COLUMNS)
        for row in map(_dict, pending):
            _approval_row(view, table, row)
        view.out.print(table)
        view.line(Text("approve with `trader approve ID`, reject with `trader reject ID [--reason ...]`",
                       style="dim"))
    else:
        view.line("nothing waiting for approval")
    decided = _list(doc.get("decided"))
    if decided:
        table = view.table("Decided", APPROVAL_COLUMNS)
        for row in map(_dict, decided):
            _approval_row(view, table, row)
        view.out.print(table)


RISK_MONEY = [("equity", "equity_inr", False), ("daily P&L", "daily_pnl_inr", True),
              ("weekly P&L", "weekly_pnl_inr", True), ("monthly P&L", "monthly_pnl_inr", True),
              ("drawdown", "drawdown_inr", False), ("margin used", "margin_used_inr", False),
              ("margin available", "margin_available_inr", False), ("exposure", "exposure_inr", False)]
_MONEY_UNITS = ("inr", "rupees", "rs", "₹")


def _limit_value(view: View, value: Any, unit: str) -> Text:
    if unit.lower() in _MONEY_UNITS:
        return view.money(value)
    text = view.plain(value)
    if unit and value is not None:
        text.append(f" {unit}")
    return text


def _used_share(limit: dict[str, Any]) -> float | None:
    used, cap = limit.get("used"), limit.get("limit")
    if isinstance(used, int | float) and isinstance(cap, int | float) and cap:
        return float(used) / float(cap)
    share = limit.get("used_pct")
    return float(share) if isinstance(share, int | float) else None


def _risk(view: View, doc: dict[str, Any], _: int) -> None:
    rows: list[tuple[str, RenderableType]] = [
        ("trading", view.styled(doc.get("trading_state"), STATE_STYLE)),
        ("risk level", view.styled(doc.get("risk_level"), LEVEL_STYLE)),
    ]
    rows += [(label, view.money(doc.get(key), pnl=pnl)) for label, key, pnl in RISK_MONEY]
    drawdown_pct, utilisation = doc.get("drawdown_pct"), doc.get("margin_utilisation")
    rows += [("drawdown share", view.percent(drawdown_pct, 2)),
             ("margin utilisation", view.percent(utilisation)),
             ("margin source", view.plain(doc.get("margin_source"))),
             ("open positions", view.plain(doc.get("open_positions"))),
             ("orders last second", view.plain(doc.get("orders_last_second")))]
    breached = _list(doc.get("breached_limits"))
    if breached:
        rows.append(("breached", Text(", ".join(map(str, breached)), style="bold red")))
    view.out.print(Panel(view.grid(rows), title="Risk", title_align="left", expand=False))
    limits = _dict(doc.get("limits"))
    if limits:
        table = view.table("Limits", [("limit", "l"), ("allowed", "r"), ("used", "r"), ("used %", "r")])
        for name, raw in limits.items():
            limit = _dict(raw)
            unit = str(limit.get("unit") or "")
            share = _used_share(limit)
            used_text = view.percent(share) if share is not None else Text(MISSING)
            if share is not None:
                used_text.stylize("red" if share >= 0.8 else "yellow" if share >= 0.5 else "green")
            table.add_row(Text(str(name)), _limit_value(view, limit.get("limit"), unit),
                          _limit_value(view, limit.get("used"), unit), used_text)
        view.out.print(table)
    concentration = _dict(doc.get("concentration"))
    if concentration:
        table = view.table("Concentration", [("underlying", "l"), ("share of exposure", "r")])
        for underlying, share in concentration.items():
            table.add_row(Text(str(underlying)), view.percent(share))
        view.out.print(table)


REPORT_MONEY = [("gross P&L", "gross_pnl_inr", True), ("charges", "charges_inr", False),
                ("net P&L", "net_pnl_inr", True), ("max drawdown", "max_drawdown_inr", False)]


def _report(view: View, doc: dict[str, Any], _: int) -> None:
    rows: list[tuple[str, RenderableType]] = [
        ("trades", view.plain(doc.get("trades"))),
        ("wins / losses", Text(f"{doc.get('wins', MISSING)} / {doc.get('losses', MISSING)}")),
        ("win rate", view.percent(doc.get("win_rate"))),
        ("profit factor", view.plain(doc.get("profit_factor")) if doc.get("profit_factor") is not None
         else Text("- (no losing trade)" if doc.get("trades") else MISSING)),
    ]
    rows += [(label, view.money(doc.get(key), pnl=pnl)) for label, key, pnl in REPORT_MONEY]
    rows += [("max drawdown share", view.percent(doc.get("max_drawdown_pct"), 2)),
             ("open positions", view.plain(doc.get("open_positions"))),
             ("fills", view.plain(doc.get("fills"))),
             ("average slippage", Text(MISSING) if doc.get("average_slippage_bps") is None
              else Text(f"{doc['average_slippage_bps']} bps"))]
    curve = [point for point in _list(doc.get("equity_curve")) if isinstance(point, list) and len(point) == 2]
    equities = [float(p[1]) for p in curve if isinstance(p[1], int | float) and not isinstance(p[1], bool)]
    if curve and equities:
        first, last = curve[0], curve[-1]
        equity_line = Text.assemble(view.money(equities[0]), " at ", view.time(first[0]), " -> ",
                                    view.money(equities[-1]), " at ", view.time(last[0]),
                                    f" ({len(curve)} points; low ", view.money(min(equities)), ", high ",
                                    view.money(max(equities)), ")")
        rows.append(("equity", equity_line))
        spark = view.spark(equities)
        if spark.plain:
            rows.append(("", spark))
    view.out.print(Panel(view.grid(rows), title="Performance", title_align="left", expand=False))


# -- acts -------------------------------------------------------------------------------------------------------------
def _order_line(view: View, order: dict[str, Any]) -> Text:
    text = Text.assemble("order ", view.plain(order.get("intent_id")), " ",
                         view.styled(order.get("side"), SIDE_STYLE), " ", view.plain(order.get("quantity")), " ",
                         view.plain(order.get("tradingsymbol")), " ", view.plain(order.get("order_type")), ": ",
                         view.styled(order.get("status"), STATUS_STYLE))
    if order.get("order_id"):
        text.append(f" (broker order {order['order_id']})")
    if order.get("filled_quantity"):
        text.append_text(Text.assemble(f", filled {order['filled_quantity']} at ",
                                       view.money(order.get("average_price_inr"))))
    elif order.get("expected_price_inr") is not None:
        text.append_text(Text.assemble(", expected ", view.money(order.get("expected_price_inr"))))
    reason = _order_reason(order)
    if reason:
        text.append(f": {reason}")
    return text


def _placed(view: View, doc: dict[str, Any], status: int) -> None:
    resolved = _dict(doc.get("resolved"))
    if resolved:
        rows: list[tuple[str, RenderableType]] = []
        for key, value in resolved.items():
            if key.endswith("_inr"):
                rows.append((key.removesuffix("_inr"), view.money(value)))
            else:
                rows.append((key, view.plain(value)))
        view.out.print(Panel(view.grid(rows), title="Resolved", title_align="left", expand=False))
    order = _dict(doc.get("order"))
    if order:
        view.line(_order_line(view, order))
    else:
        view.line(Text("no order placed (dry run)" if resolved else "no order placed", style="yellow"))
    if status == 202:
        view.line(Text("the risk gate has not decided yet: follow it with `trader orders`", style="yellow"))
    if doc.get("message"):
        view.line(str(doc["message"]))


def _detail(view: View, doc: dict[str, Any], _: int) -> None:
    parts: list[str | Text] = []
    if "trading_state" in doc:
        parts += ["trading state ", view.styled(doc.get("trading_state"), STATE_STYLE)]
    if "risk_level" in doc:
        parts += [", risk level ", view.styled(doc.get("risk_level"), LEVEL_STYLE)]
    if "exits" in doc:
        parts += [f"{doc['exits']} exit order{'' if doc['exits'] == 1 else 's'} sent"]
    if doc.get("detail"):
        parts += [": " if parts else "", str(doc["detail"])]
    if not parts:
        parts = ["done"]
    view.line(*parts)


def _approval(view: View, doc: dict[str, Any], _: int) -> None:
    approval = _dict(doc.get("approval"))
    view.line(Text.assemble("approval ", view.plain(approval.get("intent_id")), " (",
                            view.plain(approval.get("tradingsymbol")), "): ",
                            view.styled(approval.get("status"), STATUS_STYLE),
                            f" - {approval['reason']}" if approval.get("reason") else ""))
    order = _dict(doc.get("order"))
    if order:
        view.line(_order_line(view, order))


RENDERERS: dict[str, Callable[[View, dict[str, Any], int], None]] = {
    "status": _status, "positions": _positions, "orders": _orders, "signals": _signals, "risk": _risk,
    "report": _report, "order": _placed, "cancel": _detail, "halt": _detail, "resume": _detail,
    "reset-daily": _detail, "flatten": _detail, "approve": _approval, "reject": _approval,
}


def show(command: str, answer: Answer, out: Console | None = None) -> None:
    """Print ``answer`` for ``command`` in human form."""
    view = View(out or console())
    RENDERERS[command](view, answer.document, answer.status)
