"""trader/logview.py: one JSON log event → one human line (IST time, level, event, key fields, money as ₹), and the
daemon's console in human format through the same formatter, secrets still redacted."""

from __future__ import annotations

import io
import re
from datetime import date, time
from typing import Any

import orjson
import pytest
import structlog

from trader.logging import configure_logging, get_logger, human_output
from trader.logview import LineFormatter, color_wanted, format_raw, parse_line
from trader.market.calendar import ist_ns
from trader.tail import is_order_event, is_risk_event

T0 = ist_ns(date(2026, 11, 20), time(10, 5))  # Fri 20 Nov 2026 10:05:00 IST = 04:35:00 UTC
S = 1_000_000_000
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def ev(event: str, level: str = "info", ts_ns: int = T0, **fields: Any) -> dict[str, Any]:
    """A log line as the daemon writes it: its fields, then event, level, ts, ts_ns and the logger's name."""
    return {"logger_name": "trader.test", **fields, "event": event, "level": level,
            "ts": "2026-11-20T04:35:00.000000+00:00", "ts_ns": ts_ns}


def line(event: dict[str, Any], **kwargs: Any) -> str:
    return LineFormatter(**kwargs).format(event)


def test_the_time_is_ist_with_the_date_on_the_first_line_and_when_it_changes() -> None:
    formatter = LineFormatter()
    first = formatter.format(ev("daemon_started"))
    assert first.startswith("2026-11-20 10:05:00 INFO  daemon_started")
    assert formatter.format(ev("later", ts_ns=T0 + 3 * S)).startswith("10:05:03 INFO  later")
    # 18:35 UTC is already the next day in India (00:05 IST): the date shows again.
    assert formatter.format(ev("next_day", ts_ns=T0 + 14 * 3600 * S)).startswith("2026-11-21 00:05:00 INFO  next_day")
    assert formatter.format(ev("again", ts_ns=T0 + 14 * 3600 * S + S)).startswith("00:05:01 ")
    dated = LineFormatter(dates=True)
    assert dated.format(ev("a")).startswith("2026-11-20 10:05:00")
    assert dated.format(ev("b", ts_ns=T0 + S)).startswith("2026-11-20 10:05:01")


def test_a_line_with_only_the_iso_time_is_read_as_utc_and_shown_in_ist() -> None:
    event = {"event": "x", "level": "info", "ts": "2026-11-20T04:35:07.5+00:00"}
    assert parse_line(orjson.dumps(event)) == event
    assert line(event).startswith("2026-11-20 10:05:07 INFO  x")
    naive = {"event": "x", "ts": "2026-11-20T04:35:07"}  # no zone: UTC, as the daemon writes ts
    assert line(naive).startswith("2026-11-20 10:05:07")


def test_order_events_show_side_quantity_symbol_price_and_ids() -> None:
    intent = line(ev("intent", intent_id="I1", signal_id="S1", strategy="ema", tradingsymbol="NIFTY26N2026000CE",
                     side="BUY", quantity=65, order_type="MARKET", purpose="ENTRY", expected_price_inr=123.45,
                     reason="BULLISH confidence 80"))
    assert "intent                 BUY 65 NIFTY26N2026000CE MARKET @ ₹123.45 ENTRY — BULLISH confidence 80" in intent
    assert "intent_id=I1 signal_id=S1 strategy=ema" in intent
    placed = line(ev("order_placed", intent_id="I1", tag="I1", order_id="O7", attempt=2,
                     tradingsymbol="NIFTY26N2026000CE", side="SELL", quantity=130, order_type="LIMIT",
                     limit_price_inr=1234.5))
    assert "order_placed           SELL 130 NIFTY26N2026000CE LIMIT limit ₹1,234.50 order O7 attempt 2" in placed
    assert "order_id" not in placed and "attempt=" not in placed  # said once, in the key fields
    update = line(ev("order_update", intent_id="I1", order_id="O7", status="COMPLETE", filled=130, pending=0,
                     average_price_inr=1234.5, reason=""))
    assert "order_update           COMPLETE 130/130 avg ₹1,234.50 order O7 intent_id=I1" in update
    assert "reason" not in update  # an empty text says nothing
    refused = line(ev("intent_rejected", "info", intent_id="I2", reason="order value too high", check="max_order_value",
                      tradingsymbol="NIFTY26N2026000CE", side="BUY", quantity=650, state="ACTIVE"))
    assert "BUY 650 NIFTY26N2026000CE refused by max_order_value — order value too high" in refused
    assert line(ev("order_rejected", "warning", intent_id="I3", tag="I3", reason="broker: margin")).endswith(
        "— broker: margin intent_id=I3 tag=I3")


def test_a_fill_shows_price_expected_slippage_and_charges_in_rupees() -> None:
    fill = line(ev("fill", fill_id="F1", intent_id="I1", order_id="O1", tradingsymbol="NIFTY26D0126000PE", side="BUY",
                   quantity=65, price_inr=23.4, expected_price_inr=23.05, slippage_inr=0.35, slippage_bps=151.84,
                   charges_inr=24.29, event_ts_ns=T0 + 3600 * S))
    assert ("fill                   BUY 65 NIFTY26D0126000PE @ ₹23.40 (expected ₹23.05, slippage ₹0.35 = 151.84 bps) "
            "charges ₹24.29 fill_id=F1 intent_id=I1 order_id=O1 (market 11:05:00)") in fill


def test_risk_state_command_and_trade_closed() -> None:
    risk = line(ev("risk_state", "warning", state="HALTED", risk_level="CRITICAL", reason="day loss ₹2,000.00",
                   limit="max_daily_loss", event_ts_ns=T0))
    assert "WARN  risk_state             state HALTED level CRITICAL limit max_daily_loss — day loss ₹2,000.00" in risk
    assert "(market" not in risk  # the market time is the wall time: not repeated
    command = line(ev("command", "warning", kind="halt", source="cli", reason="lunch", target="", command_id="C1"))
    assert "command                halt from cli — lunch command_id=C1" in command
    closed = line(ev("trade_closed", tradingsymbol="NIFTY26D0126000PE", gross_inr=-913.25, charges_inr=52.55,
                     net_inr=-965.8, intent_id="I3"))
    assert "NIFTY26D0126000PE net -₹965.80 (gross -₹913.25, charges ₹52.55) intent_id=I3" in closed


def test_heartbeat_is_compact_counters_equity_and_day_pnl_with_trouble_only_when_not_zero() -> None:
    beat = ev("heartbeat", ticks_in=1136720, ticks_invalid=0, ticks_stale=0, conflated=0, signals=7, intents=12,
              approved=12, risk_rejected=0, orders=12, order_rejected=0, order_retries=0, open_orders=1, fills=12,
              actor_restarts=0, dead_letters=0, max_queue=0, lag_ms=3, state="ACTIVE", risk_level="LOW",
              equity_inr=10358181.5, day_pnl_inr=-3581.81, sim_time="2026-11-20T14:58:12+05:30")
    assert line(beat).endswith(
        "heartbeat              ACTIVE/LOW equity ₹1,03,58,181.50 day -₹3,581.81 · ticks 11,36,720 signals 7 "
        "intents 12 orders 12 fills 12 open orders 1 lag 3 ms (market 14:58:12)")
    trouble = line({**beat, "actor_restarts": 2, "order_rejected": 1})
    assert "order_rejected 1 actor_restarts 2 lag" in trouble
    colored = line(beat, color=True)
    assert "\x1b[31m-₹3,581.81\x1b[0m" in colored  # a loss in red


def test_summary() -> None:
    summary = line(ev("summary", trades=6, wins=4, losses=2, win_rate=0.6667, profit_factor=4.942,
                      max_drawdown_pct=0.009989, open_positions=0, fills=12, average_slippage_bps=51.53,
                      gross_pnl_inr=3896.75, charges_inr=314.94, net_pnl_inr=358181.81, max_drawdown_inr=1035.21,
                      state="ACTIVE", count_ticks_in=1136720, count_fills=12))
    assert summary.endswith(
        "summary                trades 6 (4 won, 2 lost, 67%) net ₹3,58,181.81 (gross ₹3,896.75, charges ₹314.94) "
        "profit factor 4.942 max drawdown ₹1,035.21 (1.00%) avg slippage 51.53 bps fills 12 open 0 state ACTIVE")
    assert "count_" not in summary


def test_other_events_are_key_value_with_money_ns_instants_and_structures_readable() -> None:
    text = line(ev("daemon_started", mode="paper", symbols=["NSE:NIFTY50-INDEX"], auto_execution=True, speed=0.0,
                   capital_inr=100000.0, expires_ns=T0 + 60 * S, why="two words", empty="", nothing=None,
                   weird=float("nan"), nested={"a": 1}))
    assert text.endswith('daemon_started         mode=paper symbols=["NSE:NIFTY50-INDEX"] auto_execution=true '
                         'speed=0.0 capital_inr=₹1,00,000.00 expires_ns=2026-11-20 10:06:00 why="two words" '
                         'nothing=null weird=nan nested={"a":1}')
    assert "logger_name" not in text and "ts_ns" not in text


def test_odd_field_types_never_break_a_line() -> None:
    odd = line(ev("fill", side=["BUY"], quantity={"x": 1}, price_inr="abc", slippage_bps="x", expected_price_inr=None,
                  charges_inr=True))
    assert odd.startswith("2026-11-20 10:05:00 INFO  fill")
    beat = line(ev("heartbeat", ticks_in="many", sim_time="not a time", day_pnl_inr="?"))
    assert "ticks many" in beat and "(market not a time)" in beat
    assert line(ev("summary", win_rate="x", trades=None)).startswith("2026-11-20 10:05:00 INFO  summary")


def test_levels_are_coloured_only_when_asked() -> None:
    assert "\x1b[" not in line(ev("x", "error"))
    assert line(ev("x", "warning"), color=True).startswith("2026-11-20 10:05:00 \x1b[33mWARN \x1b[0m")
    assert "\x1b[1;31mERROR\x1b[0m" in line(ev("x", "error"), color=True)
    assert "\x1b[1;31mCRIT \x1b[0m" in line(ev("x", "critical"), color=True)
    assert "\x1b[2mDEBUG\x1b[0m" in line(ev("x", "debug"), color=True)
    assert ANSI.sub("", line(ev("x", "info", a=1), color=True)) == line(ev("x", "info", a=1))


def test_color_wanted_on_a_terminal_unless_no_color_or_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert color_wanted(Tty()) and not color_wanted(io.StringIO())
    assert not color_wanted(Tty(), False) and color_wanted(io.StringIO(), True)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not color_wanted(Tty()) and color_wanted(Tty(), True)


def test_a_traceback_follows_indented() -> None:
    text = line(ev("daemon_failed", "error", exception="Traceback (most recent call last):\n  File x\nValueError: y"))
    assert text.splitlines() == ["2026-11-20 10:05:00 ERROR daemon_failed", "    Traceback (most recent call last):",
                                 "      File x", "    ValueError: y"]


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'"text"', b"{}", b'{"event": 5, "ts_ns": 1}',
                                 b'{"event": "x"}', b'{"event": "x", "ts": "yesterday"}', b"{broken"])
def test_what_is_not_a_log_event_parses_to_none(raw: bytes) -> None:
    assert parse_line(raw) is None


def test_filters_by_event_name() -> None:
    for name in ("intent", "intent_approved", "intent_rejected", "order_placed", "order_update", "order_rejected",
                 "fill", "duplicate_fill_ignored", "trade_closed", "approval_pending", "approval_expired",
                 "manual_order", "strategy_intent_ended_while_down"):
        assert is_order_event(name), name
    for name in ("heartbeat", "signal", "risk_state", "daemon_started", "summary", "control_request"):
        assert not is_order_event(name), name
    for name in ("risk_state", "risk_state_restored", "risk_state_refuses_entries", "flatten", "flatten_on_breach",
                 "command", "control_command", "intent_rejected", "reconciliation_failed_halted", "entries_stopped"):
        assert is_risk_event({"event": name}), name
    assert is_risk_event({"event": "something", "reason": "kill-switch file /x exists"})
    for name in ("heartbeat", "fill", "order_placed", "daemon_started", "summary"):
        assert not is_risk_event({"event": name}), name


def test_control_characters_from_outside_never_reach_the_terminal() -> None:
    # An HTTP path or a broker's message is logged as it came: ESC, BEL, CR, C1 CSI must not drive the terminal.
    hostile = "/\x1b]0;pwned\x07\x1b[2K\rFAKE\x9b2J"
    for text in (line(ev("control_request", method="GET", path=hostile, status=404)),
                 line(ev("order_rejected", reason=hostile), color=True),
                 line({**ev("x"), "k\x1b[31m": hostile, "nested": {"a": hostile}, "items": [hostile]}),
                 line(ev("x\x1b[2J", "error", exception=f"Traceback\n  {hostile}"))):
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", ANSI.sub("", text)), repr(text)
        assert "\\x1b" in text or "\\x9b" in text, text
    assert format_raw(f"raw {hostile}", color=False) == "raw /\\x1b]0;pwned\\x07\\x1b[2K\\x0dFAKE\\x9b2J"
    assert line(ev("x", "error", exception="a\nb")).splitlines()[1:] == ["    a", "    b"]  # a traceback's lines


@pytest.mark.parametrize("fields", [{"ts_ns": 9_000_000_000_000_000_000, "at_ns": -9_000_000_000_000_000_000,
                                     "event_ts_ns": -9_000_000_000_000_000_000},
                                    {"sim_time": "0001-01-01T00:00:00+14:00"}])
def test_instants_a_datetime_cannot_hold_never_break_a_line(fields: dict[str, Any]) -> None:
    text = line({**ev("heartbeat"), **fields})
    assert "heartbeat" in text
    for ts in ("9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00"):  # year 10000 / year 0 in IST
        assert parse_line(orjson.dumps({"event": "x", "ts": ts})) is None  # not a log event: shown raw by tail


def test_the_human_console_never_raises_into_the_caller() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

        __repr__ = __str__

    saved = structlog.get_config()
    stream = io.StringIO()
    configure_logging("INFO", stream, "human")
    try:
        get_logger("trader.test").info("odd", when_ns=10**30, what=Unprintable())
        get_logger("trader.test").info("next", a=1)
    finally:
        structlog.configure(**saved)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "odd" in lines[0] and "next" in lines[1], lines


# -- the daemon's console -----------------------------------------------------------------------------------------

def logged(log_format: str, stream: io.StringIO) -> str:
    saved = structlog.get_config()
    configure_logging("INFO", stream, log_format)
    try:
        get_logger("trader.test").warning("login", api_key="abc", access_token="s3cret", instrument_token=256265,
                                          headers={"Authorization": "token x:y"}, capital_inr=250000.0)
    finally:
        structlog.configure(**saved)
    return stream.getvalue()


def test_human_console_lines_are_the_formatters_with_secrets_redacted() -> None:
    text = logged("human", io.StringIO())
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d WARN  login {18}api_key=\*{10} access_token=\*{10} "
                        r'instrument_token=256265 headers=\{"Authorization":"\*{10}"\} capital_inr=₹2,50,000.00\n',
                        text), text
    assert "s3cret" not in text and "abc" not in text and "\x1b[" not in text  # not a terminal: no colour


def test_json_and_auto_off_a_terminal_stay_json_lines() -> None:
    for log_format in ("json", "auto"):
        event = orjson.loads(logged(log_format, io.StringIO()))
        assert event["event"] == "login" and event["access_token"] == "**********"


def test_auto_means_human_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert human_output("auto", Tty()) and not human_output("auto", io.StringIO())
    assert human_output("human", io.StringIO()) and not human_output("json", Tty())
