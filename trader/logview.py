"""The daemon's JSON log events as one human line each: the one formatter, used by ``trader tail`` and by the
daemon's own console when ``log_format`` is human (``auto`` on a terminal).

A line reads ``HH:MM:SS LEVEL event  key fields  other=fields``: the wall time of the line in IST (with its date on
the first line and whenever the IST date changes, or on every line with ``dates``), the level (coloured: debug dim,
warning yellow, error and critical red bold), the event name, then what matters for that event — an order's side,
quantity, symbol and price; a fill's price and slippage; a risk change's state, level and reason; the heartbeat's
counters, equity and day P&L; the summary's trades and P&L — and the event's other fields as ``key=value`` (dimmed).
Money fields (``*_inr``) show as rupees with Indian digit grouping (``₹1,00,860.70``), ``*_ns`` instants as IST
times. Domain events whose market time (``event_ts_ns``) is not the wall time (the built-in market, a backtest) end
with ``(market HH:MM:SS)``. A traceback (``exception``) follows on indented lines.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any, TypeGuard

import orjson

from trader.market.calendar import IST, utc_ns
from trader.money import MoneyError, format_inr, group_indian, to_paise

NS_PER_SECOND = 1_000_000_000
_MARKET_TIME_APART_NS = 60 * NS_PER_SECOND  # a market clock this far from the wall clock is worth showing

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_LEVEL_LABEL = {"debug": "DEBUG", "info": "INFO", "warning": "WARN", "error": "ERROR", "critical": "CRIT"}

DIM, BOLD, YELLOW, RED, GREEN, RED_BOLD = "2", "1", "33", "31", "32", "1;31"
_LEVEL_STYLE = {"debug": DIM, "info": "", "warning": YELLOW, "error": RED_BOLD, "critical": RED_BOLD}

# Fields every line has, shown in the line's own layout (or not at all).
_NOISE = frozenset({"event", "level", "ts", "ts_ns", "logger_name", "event_ts_ns", "exception"})
_EVENT_WIDTH = 22

# Characters a terminal acts on rather than shows: C0 and C1 controls (ESC, CSI, BEL, CR, LF, NUL…), the line and
# paragraph separators, and the bidirectional overrides. Log content (a broker's reason, an exception's message, a
# raw line) is untrusted: shown as ``\x1b`` text, it cannot clear the screen, retitle the window or forge a line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

Paint = Callable[[str, str], str]
# What a describer gives: the event's key text, the fields it used, and whether the other fields follow.
Described = tuple[str, set[str], bool]


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(text: str) -> str:
    """``text`` with the characters a terminal would act on written out as escapes (``\\x1b``)."""
    return _CONTROL.sub(_escaped, text) if _CONTROL.search(text) else text


def _safe_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event with its keys and text values made safe (nested values are JSON-quoted, then made safe, when
    shown); the traceback is kept as it is: its lines are made safe one by one."""
    return {(safe_text(key) if isinstance(key, str) else key):
            (safe_text(value) if isinstance(value, str) and key != "exception" else value)
            for key, value in event.items()}


def color_wanted(stream: Any, flag: bool | None = None) -> bool:
    """Colour on a terminal unless ``NO_COLOR`` is set (https://no-color.org); ``flag`` (--color/--no-color) wins."""
    if flag is not None:
        return flag
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (ValueError, OSError):  # a closed stream
        return False


def event_time_ns(event: Mapping[str, Any]) -> int | None:
    """The line's wall time in ns UTC: ``ts_ns``, else the ISO ``ts``; ``None`` if it has neither."""
    ts_ns = event.get("ts_ns")
    if isinstance(ts_ns, int) and not isinstance(ts_ns, bool):
        return ts_ns if _ist(ts_ns) is not None else None
    ts = event.get("ts")
    if isinstance(ts, str):
        try:
            moment = datetime.fromisoformat(ts)
        except ValueError:
            return None
        try:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            found = utc_ns(moment)
        except (ValueError, OverflowError):
            return None
        return found if _ist(found) is not None else None  # year 1 or 9999 far from IST: not a time it can show
    return None


def parse_line(raw: str | bytes) -> dict[str, Any] | None:
    """One log line → its event, or ``None`` when it is not one (not JSON, not an object, no ``event`` name, no
    time)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("event"), str) or event_time_ns(obj) is None:
        return None
    return obj


def level_of(event: Mapping[str, Any]) -> str:
    level = str(event.get("level", "info")).lower()
    return {"warn": "warning", "exception": "error", "fatal": "critical"}.get(level, level)


def _ist(ts_ns: int) -> datetime | None:
    """``ts_ns`` as an IST datetime; None for an instant a datetime cannot hold (a corrupt line's year 10000)."""
    try:
        return datetime.fromtimestamp(ts_ns // NS_PER_SECOND, tz=IST)
    except (OverflowError, OSError, ValueError):
        return None


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def money_text(value: Any) -> str:
    """A rupee amount from the log (``*_inr``) → ``₹1,00,860.70``; anything else as it is."""
    if _is_number(value):
        try:
            return format_inr(to_paise(value))
        except MoneyError:  # nan, inf, absurd: show what the line says
            pass
    return str(value)


def value_text(key: str, value: Any) -> str:
    """One field's value for people: money in rupees, ns instants as IST, units after bps and ms."""
    if key.endswith("_inr"):
        return money_text(value)
    if key.endswith("_ns") and isinstance(value, int) and not isinstance(value, bool) and value > 10**17:
        moment = _ist(value)
        return moment.strftime("%Y-%m-%d %H:%M:%S") if moment is not None else str(value)
    if key.endswith("_bps") and _is_number(value):
        return f"{value:g} bps"
    if key.endswith("_ms") and _is_number(value):
        return f"{value:g} ms"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if value == "" or any(c.isspace() or c in "=\"'" for c in value):
            return _json(value)
        return value
    if value is None:
        return "null"
    if isinstance(value, dict | list | tuple):
        return safe_text(_json(value))
    return safe_text(str(value))


def _json(value: Any) -> str:
    """``value`` as JSON text; what orjson refuses (a lone surrogate, an integer past 64 bits) by the slower stdlib."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        pass
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except RecursionError:  # orjson reads 1,024 levels; neither encoder writes that many
        return f"<{type(value).__name__} nested too deep to show>"
    except (TypeError, ValueError):  # keys json cannot write either
        return repr(value)


def _fields(event: Mapping[str, Any], skip: set[str]) -> str:
    return " ".join(f"{key}={value_text(str(key), value)}" for key, value in event.items()
                    if key not in skip and key not in _NOISE and value != "")  # an empty text says nothing


def _has(event: Mapping[str, Any], key: str) -> bool:
    return event.get(key) not in (None, "")


def _order(event: Mapping[str, Any], used: set[str]) -> str:
    """``BUY 65 NIFTY26D0126000PE``: whichever of side, quantity and symbol the event has."""
    keys = [k for k in ("side", "quantity", "tradingsymbol") if _has(event, k)]
    used.update(keys)
    return " ".join(str(event[k]) for k in keys)


def _pnl(event: Mapping[str, Any], key: str, paint: Paint) -> str:
    value = event.get(key)
    text = money_text(value)
    if _is_number(value) and value != 0:
        return paint(text, GREEN if value > 0 else RED)
    return text


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _reason(event: Mapping[str, Any], used: set[str], key: str = "reason") -> str:
    used.add(key)
    return f"— {event[key]}" if _has(event, key) else ""


def _intent(event: Mapping[str, Any], paint: Paint) -> Described:
    used = {"order_type", "expected_price_inr", "limit_price_inr", "purpose"}
    price = f"@ {money_text(event['expected_price_inr'])}" if _has(event, "expected_price_inr") else ""
    limit = f"limit {money_text(event['limit_price_inr'])}" if _has(event, "limit_price_inr") else ""
    return _join(_order(event, used), str(event.get("order_type", "")), price, limit,
                 str(event.get("purpose", "")), _reason(event, used)), used, True


def _intent_approved(event: Mapping[str, Any], paint: Paint) -> Described:
    used: set[str] = set()
    return _order(event, used), used, True


def _intent_rejected(event: Mapping[str, Any], paint: Paint) -> Described:
    used = {"check"}
    by = f"refused by {event['check']}" if _has(event, "check") else "refused"
    return _join(_order(event, used), by, _reason(event, used)), used, True


def _order_placed(event: Mapping[str, Any], paint: Paint) -> Described:
    used = {"order_type", "order_id", "price_inr", "limit_price_inr", "trigger_price_inr", "attempt"}
    prices = [f"{word} {money_text(event[key])}" for key, word in
              (("price_inr", "@"), ("limit_price_inr", "limit"), ("trigger_price_inr", "trigger"))
              if _has(event, key)]
    attempt = event.get("attempt")
    again = f"attempt {attempt}" if isinstance(attempt, int) and attempt > 1 else ""
    order_id = f"order {event['order_id']}" if _has(event, "order_id") else ""
    return _join(_order(event, used), str(event.get("order_type", "")), *prices, order_id, again), used, True


def _order_update(event: Mapping[str, Any], paint: Paint) -> Described:
    used = {"status", "filled", "pending", "average_price_inr", "order_id"}
    filled, pending = event.get("filled"), event.get("pending")
    done = f"{filled}/{filled + pending}" if isinstance(filled, int) and isinstance(pending, int) else ""
    average = event.get("average_price_inr")
    price = f"avg {money_text(average)}" if _is_number(average) and average else ""
    order_id = f"order {event['order_id']}" if _has(event, "order_id") else ""
    return _join(str(event.get("status", "")), done, price, order_id, _reason(event, used)), used, True


def _order_rejected(event: Mapping[str, Any], paint: Paint) -> Described:
    used: set[str] = set()
    return _join(_order(event, used), _reason(event, used)), used, True


def _fill(event: Mapping[str, Any], paint: Paint) -> Described:
    used = {"price_inr", "expected_price_inr", "slippage_inr", "slippage_bps", "charges_inr"}
    price = f"@ {money_text(event['price_inr'])}" if _has(event, "price_inr") else ""
    detail = []
    if _has(event, "expected_price_inr"):
        detail.append(f"expected {money_text(event['expected_price_inr'])}")
    if _has(event, "slippage_inr") or _has(event, "slippage_bps"):
        slip = money_text(event.get("slippage_inr", ""))
        bps = event.get("slippage_bps")
        slip = _join(slip, f"= {bps:g} bps" if _is_number(bps) else "")
        slipped = event.get("slippage_inr", bps)
        worse = _is_number(slipped) and slipped > 0  # positive slippage = a worse price than expected
        detail.append(paint(f"slippage {slip}", YELLOW if worse else ""))
    charges = f"charges {money_text(event['charges_inr'])}" if _has(event, "charges_inr") else ""
    bracket = f"({', '.join(detail)})" if detail else ""
    return _join(_order(event, used), price, bracket, charges), used, True


def _trade_closed(event: Mapping[str, Any], paint: Paint) -> Described:
    used = {"tradingsymbol", "net_inr", "gross_inr", "charges_inr"}
    parts = [f"gross {money_text(event['gross_inr'])}"] if _has(event, "gross_inr") else []
    if _has(event, "charges_inr"):
        parts.append(f"charges {money_text(event['charges_inr'])}")
    return _join(str(event.get("tradingsymbol", "")), f"net {_pnl(event, 'net_inr', paint)}",
                 f"({', '.join(parts)})" if parts else ""), used, True


def _signal(event: Mapping[str, Any], paint: Paint) -> Described:
    used = {"direction", "underlying", "confidence"}
    confidence = f"confidence {event['confidence']:g}" if _is_number(event.get("confidence")) else ""
    return _join(str(event.get("direction", "")), str(event.get("underlying", "")), confidence,
                 _reason(event, used)), used, True


def _risk_state(event: Mapping[str, Any], paint: Paint) -> Described:
    used = {"state", "risk_level", "limit"}
    limit = f"limit {event['limit']}" if _has(event, "limit") else ""
    return _join(f"state {event.get('state', '?')}", f"level {event.get('risk_level', '?')}", limit,
                 _reason(event, used)), used, True


def _command(event: Mapping[str, Any], paint: Paint) -> Described:
    used = {"kind", "source", "target"}
    source = f"from {event['source']}" if _has(event, "source") else ""
    target = str(event["target"]) if _has(event, "target") else ""
    return _join(str(event.get("kind", "")), target, source, _reason(event, used)), used, True


def _control_request(event: Mapping[str, Any], paint: Paint) -> Described:
    used = {"method", "path", "status", "ms"}
    status = event.get("status")
    shown = paint(str(status), YELLOW if isinstance(status, int) and status >= 400 else "")
    took = f"({value_text('ms', event['ms'])})" if _has(event, "ms") else ""
    return _join(str(event.get("method", "")), str(event.get("path", "")), "→", shown, took), used, True


_HEARTBEAT_COUNTS = {"ticks_in": "ticks", "signals": "signals", "intents": "intents", "orders": "orders",
                     "fills": "fills", "open_orders": "open orders"}
# Counters that are news only when they are not zero.
_HEARTBEAT_TROUBLE = ("ticks_invalid", "ticks_stale", "conflated", "risk_rejected", "order_rejected", "order_retries",
                      "actor_restarts", "dead_letters")


def _heartbeat(event: Mapping[str, Any], paint: Paint) -> Described:
    state = "/".join(str(event[k]) for k in ("state", "risk_level") if _has(event, k))
    money = _join(f"equity {money_text(event['equity_inr'])}" if _has(event, "equity_inr") else "",
                  f"day {_pnl(event, 'day_pnl_inr', paint)}" if _has(event, "day_pnl_inr") else "")
    counts = " ".join(f"{word} {_count(event[k])}" for k, word in _HEARTBEAT_COUNTS.items() if k in event)
    trouble = " ".join(f"{k} {_count(event[k])}" for k in _HEARTBEAT_TROUBLE if event.get(k))
    lag = f"lag {value_text('lag_ms', event['lag_ms'])}" if _has(event, "lag_ms") else ""
    market = ""
    sim_time = event.get("sim_time")
    if isinstance(sim_time, str):
        try:
            market = f"(market {datetime.fromisoformat(sim_time).astimezone(IST):%H:%M:%S})"
        except ValueError:
            market = f"(market {sim_time})"
    return _join(state, money, "·", counts, paint(trouble, YELLOW) if trouble else "", lag, market), set(), False


def _count(value: Any) -> str:
    return group_indian(value) if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _summary(event: Mapping[str, Any], paint: Paint) -> Described:
    trades = f"trades {event.get('trades', 0)}"
    if _has(event, "wins") or _has(event, "losses"):
        rate = event.get("win_rate")
        won = f", {rate:.0%}" if _is_number(rate) else ""
        trades += f" ({event.get('wins', 0)} won, {event.get('losses', 0)} lost{won})"
    pnl = []
    for key, word in (("gross_pnl_inr", "gross"), ("charges_inr", "charges")):
        if _has(event, key):
            pnl.append(f"{word} {money_text(event[key])}")
    net = _join(f"net {_pnl(event, 'net_pnl_inr', paint)}", f"({', '.join(pnl)})" if pnl else "")
    factor = f"profit factor {event['profit_factor']:g}" if _is_number(event.get("profit_factor")) else ""
    drawdown = ""
    if _has(event, "max_drawdown_inr"):
        share = event.get("max_drawdown_pct")
        drawdown = _join(f"max drawdown {money_text(event['max_drawdown_inr'])}",
                         f"({share:.2%})" if _is_number(share) else "")
    slip = (f"avg slippage {event['average_slippage_bps']:g} bps"
            if _is_number(event.get("average_slippage_bps")) else "")
    tail = _join(f"fills {event['fills']}" if "fills" in event else "",
                 f"open {event['open_positions']}" if "open_positions" in event else "",
                 f"state {event['state']}" if _has(event, "state") else "")
    return _join(trades, net, factor, drawdown, slip, tail), set(), False


_DESCRIBE: dict[str, Callable[[Mapping[str, Any], Paint], Described]] = {
    "intent": _intent,
    "intent_approved": _intent_approved,
    "intent_rejected": _intent_rejected,
    "order_placed": _order_placed,
    "order_update": _order_update,
    "order_rejected": _order_rejected,
    "fill": _fill,
    "trade_closed": _trade_closed,
    "signal": _signal,
    "risk_state": _risk_state,
    "risk_state_restored": _risk_state,
    "command": _command,
    "control_command": _command,
    "control_request": _control_request,
    "heartbeat": _heartbeat,
    "summary": _summary,
}


class LineFormatter:
    """Event dicts → human lines. Keeps the IST date of the last line, to show the date when it changes."""

    def __init__(self, *, color: bool = False, dates: bool = False) -> None:
        self.color = color
        self.dates = dates
        self._last_date: date | None = None

    def paint(self, text: str, style: str) -> str:
        return f"\x1b[{style}m{text}\x1b[0m" if self.color and style and text else text

    def format(self, event: Mapping[str, Any]) -> str:
        """One event (as logged: ``event``, ``level``, ``ts``/``ts_ns`` and its fields) → one line (plus indented
        traceback lines if it carries an ``exception``). Never raises on odd values: they are shown as text. Control
        characters in the content are shown as escapes (``safe_text``): the only escapes written are the colours."""
        try:
            return self._format(_safe_event(event))
        except Exception:  # the daemon's console calls this inside every log call: it must never raise
            try:
                return safe_text(" ".join(f"{key}={value!r}" for key, value in event.items()))
            except Exception:
                return f"{safe_text(str(event.get('event', '?')))} (a log event that cannot be shown)"

    def _format(self, event: Mapping[str, Any]) -> str:
        level = level_of(event)
        name = str(event.get("event", "?"))
        ts_ns = event_time_ns(event)
        when = self._when(ts_ns)
        label = self.paint(_LEVEL_LABEL.get(level, level.upper()[:5]).ljust(5), _LEVEL_STYLE.get(level, ""))
        describe = _DESCRIBE.get(name)
        body, used, rest = "", set[str](), True
        if describe is not None:
            try:
                body, used, rest = describe(event, self.paint)
            except (TypeError, ValueError, KeyError, AttributeError, OverflowError):  # an odd field: plain
                body, used, rest = "", set[str](), True
        others = _fields(event, used) if rest else ""
        after = _join(body, self.paint(others, DIM), self._market(event, ts_ns))
        title = self.paint(name.ljust(_EVENT_WIDTH) if after else name, BOLD if level != "debug" else DIM)
        line = _join(when, label, title, after)
        exception = event.get("exception")
        if isinstance(exception, str) and exception:
            line += "".join(f"\n    {safe_text(row)}" for row in exception.rstrip().splitlines())
        return line

    def _when(self, ts_ns: int | None) -> str:
        moment = None if ts_ns is None else _ist(ts_ns)
        if moment is None:
            return "--:--:--"
        day = moment.date()
        show_date = self.dates or day != self._last_date
        self._last_date = day
        return moment.strftime("%Y-%m-%d %H:%M:%S" if show_date else "%H:%M:%S")

    def _market(self, event: Mapping[str, Any], ts_ns: int | None) -> str:
        market_ns = event.get("event_ts_ns")
        if not isinstance(market_ns, int) or isinstance(market_ns, bool) or ts_ns is None:
            return ""
        if abs(market_ns - ts_ns) < _MARKET_TIME_APART_NS:
            return ""
        market, wall = _ist(market_ns), _ist(ts_ns)
        if market is None or wall is None:
            return self.paint(f"(market {market_ns})", DIM)
        shown = market.strftime("%H:%M:%S" if market.date() == wall.date() else "%Y-%m-%d %H:%M:%S")
        return self.paint(f"(market {shown})", DIM)


def format_raw(line: str, *, color: bool) -> str:
    """A line that is not a log event, shown as it is (dimmed), its control characters as escapes."""
    line = safe_text(line)
    return f"\x1b[{DIM}m{line}\x1b[0m" if color and line else line


# -- the filters of `trader tail` ---------------------------------------------------------------------------------
