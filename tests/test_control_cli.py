"""The operator CLI (``trader status|order|halt|...``) against a fake control API.

The fake daemon is aiohttp on 127.0.0.1 (a free port) in a background thread: it answers canned documents in the
shapes of docs (the lead's design, "HTTP API") and records every request (method, path, body, Authorization).
The CLI is synchronous and runs in the test's thread through ``trader.cli.main``. Every command is checked for the
request it sends, its human and ``--json`` output, its exit code, and that the token never appears in what it prints.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from rich.console import Console

from trader.cli import main
from trader.control import render
from trader.control.client import EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE, Answer, ControlClient, Unreachable

TOKEN = "tok-" + "s3cret" * 6  # what the fake daemon accepts
OTHER_TOKEN = "tok-" + "wr0ng" * 6

# -- canned answers, in the design's shapes ------------------------------------------------------------------------
ORDER = {"intent_id": "M000001", "tag": "M000001", "order_id": "250101000001", "strategy": "manual",
         "tradingsymbol": "NIFTY26N2626000CE", "side": "BUY", "quantity": 75, "order_type": "MARKET",
         "purpose": "ENTRY", "status": "COMPLETE", "reason": "", "check": "", "filled_quantity": 75,
         "average_price_inr": 245.05, "expected_price_inr": 244.5, "slippage_bps": 22.49,
         "fills": [{"fill_id": "F1", "quantity": 75, "price_inr": 245.05, "charges_inr": 41.2,
                    "slippage_bps": 22.49, "time": "2026-11-20T09:20:01+05:30"}],
         "time": "2026-11-20T09:20:00+05:30"}
REFUSED_ORDER = {**ORDER, "intent_id": "S000007", "tag": "S000007", "order_id": "", "strategy": "ema_crossover",
                 "side": "SELL", "status": "REJECTED", "reason": "daily loss limit reached",
                 "check": "daily_loss", "filled_quantity": 0, "average_price_inr": None, "slippage_bps": None,
                 "fills": [], "time": "2026-11-20T03:55:00+00:00"}  # a UTC time: shown as 09:25:00 IST
APPROVAL = {"intent_id": "S000009", "signal_id": "SIG000004", "strategy": "ema_crossover",
            "tradingsymbol": "NIFTY26N2626100PE", "side": "BUY", "quantity": 75, "lots": 1,
            "expected_price_inr": 180.25, "status": "PENDING", "expires": "2026-11-20T10:16:00+05:30",
            "expires_in_s": 42.4, "by": "", "reason": ""}

STATUS = {"mode": "paper", "auto_execution": False, "trading_state": "REDUCING_ONLY",
          "state_reason": "daily loss [2%] reached", "risk_level": "HIGH", "broker_reachable": True,
          "venue_problems": {"feed": "stale for 12 s"}, "feed_age_s": 0.42, "loop_lag_ms": 3,
          "session_time": "2026-11-20T10:15:00+05:30", "event_ts_ns": 1_795_152_300_000_000_000,
          "uptime_s": 3725, "pending_approvals": 1, "open_positions": 2, "equity_inr": 101234.5,
          "day_pnl_inr": -1234.5, "counts": {"ticks_in": 12000, "signals": 4}, "version": "0.1.0"}
POSITIONS = {"positions": [{"tradingsymbol": "NIFTY26N2626000CE", "underlying": "NIFTY", "expiry": "2026-11-24",
                            "strike_inr": 26000.0, "option_type": "CE", "quantity": 75, "lots": 1,
                            "average_price_inr": 245.05, "last_price_inr": 250.0, "realized_inr": 0.0,
                            "unrealized_inr": 371.25, "held_by": "manual"}],
             "realized_inr": -1605.75, "unrealized_inr": 371.25, "charges_inr": 82.4, "equity_inr": 101234.5,
             "day_pnl_inr": -1234.5}
ORDERS = {"orders": [ORDER, REFUSED_ORDER]}
SIGNALS = {"signals": [{"signal_id": "SIG000004", "strategy": "ema_crossover", "underlying": "NIFTY",
                        "direction": "BEARISH", "confidence": 71.5, "reason": "ema [9/21] crossed down",
                        "time": "2026-11-20T10:15:00+05:30", "intent_id": "S000009"}],
           "pending": [APPROVAL],
           "decided": [{**APPROVAL, "intent_id": "S000008", "signal_id": "SIG000003", "status": "EXPIRED",
                        "expires_in_s": 0, "reason": "unanswered for 60 s"}]}
RISK = {"ts_ns": 1_795_152_300_000_000_000, "equity_inr": 101234.5, "daily_pnl_inr": -1234.5,
        "weekly_pnl_inr": 2500.0, "monthly_pnl_inr": 4100.0, "drawdown_inr": 1500.0, "drawdown_pct": 0.0146,
        "margin_used_inr": 18375.0, "margin_available_inr": 82859.5, "margin_utilisation": 0.18,
        "margin_source": "broker", "exposure_inr": 18750.0, "open_positions": 2, "risk_level": "HIGH",
        "trading_state": "REDUCING_ONLY", "limits_used": {"daily_loss": 0.62}, "breached_limits": ["daily_loss"],
        "orders_last_second": 0,
        "limits": {"daily_loss": {"limit": 2000.0, "used": 1234.5, "used_pct": 61.7, "unit": "INR"},
                   "lots_per_trade": {"limit": 2, "used": 1, "used_pct": 50.0, "unit": "lots"}},
        "concentration": {"NIFTY": 0.75, "BANKNIFTY": 0.25}}
REPORT = {"trades": 4, "wins": 3, "losses": 1, "win_rate": 0.75, "profit_factor": 2.5, "gross_pnl_inr": 1800.0,
          "charges_inr": 164.8, "net_pnl_inr": 1635.2, "max_drawdown_inr": 900.0, "max_drawdown_pct": 0.009,
          "open_positions": 1, "fills": 8, "average_slippage_bps": 11.2,
          "equity_curve": [["2026-11-20T09:15:00+05:30", 100000.0], ["2026-11-20T10:00:00+05:30", 99100.0],
                           ["2026-11-20T10:15:00+05:30", 101635.2]]}
PLACED = {"order": ORDER, "resolved": {"tradingsymbol": "NIFTY26N2626000CE", "how": "ATM of spot 26012.35",
                                       "strike_inr": 26000.0, "expiry": "2026-11-24", "lots": 1, "quantity": 75,
                                       "spot_inr": 26012.35},
          "message": "BUY 1 lot NIFTY26N2626000CE: filled"}
CANCELLED = {"ok": True, "detail": "cancel sent for 250101000001"}
HALTED = {"trading_state": "HALTED", "detail": "halted: lunch"}
RESUMED = {"trading_state": "ACTIVE", "risk_level": "LOW", "detail": "trading resumed"}
RESET = {"trading_state": "ACTIVE", "risk_level": "MEDIUM", "detail": "daily limits cleared"}
FLATTENED = {"detail": "2 exits for NIFTY; 1 outside position left alone", "exits": 2}
APPROVED = {"approval": {**APPROVAL, "status": "APPROVED", "by": "operator"},
            "order": {**ORDER, "intent_id": "S000009", "status": "OPEN", "filled_quantity": 0}}
REJECTED = {"approval": {**APPROVAL, "status": "REJECTED", "by": "operator", "reason": "too late in the day"}}


def error(code: str, message: str, **extra: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


# -- the fake daemon -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Seen:
    method: str
    path: str  # as sent, still percent-encoded
    body: Any  # parsed JSON, or None for an empty body
    authorization: str | None


class FakeDaemon:
    """A control API in a background thread: canned answers by (method, path), every request recorded."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.answers: dict[tuple[str, str], tuple[int, bytes, str]] = {}
        self.seen: list[Seen] = []
        self.held: set[tuple[str, str]] = set()  # answered only when the daemon stops
        self.arrived = threading.Condition()
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, method: str, path: str, status: int, document: Any) -> None:
        self.answers[(method, path)] = (status, orjson.dumps(document), "application/json")

    def answer_raw(self, method: str, path: str, status: int, body: bytes, content_type: str) -> None:
        self.answers[(method, path)] = (status, body, content_type)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        with self.arrived:
            self.seen.append(Seen(request.method, request.raw_path, orjson.loads(raw) if raw else None,
                                  request.headers.get("Authorization")))
            self.arrived.notify_all()
        if (request.method, request.raw_path) in self.held:
            assert self._stop is not None
            await self._stop.wait()
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response(error("unauthorized", "missing or wrong token"), status=401)
        status, body, content_type = self.answers.get(
            (request.method, request.raw_path), (404, orjson.dumps(error("not_found", "no such route")),
                                             "application/json"))
        headers = {"Location": "/status"} if 300 <= status < 400 else {}
        return web.Response(status=status, body=body, content_type=content_type, headers=headers)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.port = runner.addresses[0][1]
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def wait_for_requests(self, count: int) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.seen) >= count, 10), self.seen

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10), "the fake daemon did not start"

    def stop(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive()


@pytest.fixture
def daemon() -> Iterator[FakeDaemon]:
    fake = FakeDaemon()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def env(clean_env: pytest.MonkeyPatch, daemon: FakeDaemon, tmp_path: Path) -> pytest.MonkeyPatch:
    """Settings that point the CLI at the fake daemon, as a daemon's own settings would (port and token)."""
    clean_env.setenv("TRADER_DATA_DIR", str(tmp_path / "data"))
    clean_env.setenv("TRADER_CONTROL__PORT", str(daemon.port))
    clean_env.setenv("TRADER_CONTROL__TOKEN", TOKEN)
    for name in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        clean_env.delenv(name, raising=False)
    return clean_env


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``trader ARGV``; (exit code, stdout, stderr). Whatever it prints never holds a token."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    for secret in (TOKEN, OTHER_TOKEN):
        assert secret not in out and secret not in err
    return code, out, err


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    assert exc.value.code == EXIT_USAGE
    return capsys.readouterr().err


def closed_port() -> socket.socket:
    """A socket bound to a free port that never listens: connecting to it is refused, and nothing can take the
    port while the test holds it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


# -- every command: request, human output, --json ----------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]
    method: str
    path: str
    body: Any
    answer: dict[str, Any]
    shows: tuple[str, ...]  # in the human output (pipe: no colour, wide lines)


CASES = [
    Case(("status",), "GET", "/status", None, STATUS,
         ("trader 0.1.0", "paper", "off (semi-live", "REDUCING_ONLY (daily loss [2%] reached)", "HIGH",
          "reachable", "feed: stale for 12 s", "0.4 s", "3 ms", "20 Nov 2026 10:15:00 IST", "1h 02m 05s",
          "₹1,01,234.50", "-₹1,234.50", "ticks_in 12000")),
    Case(("positions",), "GET", "/positions", None, POSITIONS,
         ("NIFTY26N2626000CE", "manual", "₹245.05", "₹250.00", "+₹371.25", "-₹1,605.75", "₹82.40")),
    Case(("orders",), "GET", "/orders", None, ORDERS,
         ("M000001", "250101000001", "COMPLETE", "75/75", "₹245.05", "₹244.50", "22.49", "09:20:00",
          "S000007: REJECTED - daily loss limit reached; risk check daily_loss", "09:25:00")),
    Case(("signals",), "GET", "/signals", None, SIGNALS,
         ("SIG000004", "BEARISH", "71.5", "ema [9/21] crossed down", "Waiting for approval", "S000009",
          "₹180.25", "42 s", "trader approve ID", "S000008", "EXPIRED", "unanswered for 60 s")),
    Case(("risk",), "GET", "/risk", None, RISK,
         ("REDUCING_ONLY", "HIGH", "-₹1,234.50", "+₹2,500.00", "+₹4,100.00", "₹1,500.00", "1.46%", "18.0%",
          "broker", "breached", "daily_loss", "₹2,000.00", "₹1,234.50", "61.7%", "2 lots", "50.0%", "NIFTY",
          "75.0%", "25.0%")),
    Case(("report",), "GET", "/report", None, REPORT,
         ("4", "3 / 1", "75.0%", "2.5", "+₹1,800.00", "₹164.80", "+₹1,635.20", "₹900.00", "0.90%",
          "11.2 bps", "₹1,00,000.00 at 09:15:00 -> ₹1,01,635.20 at 10:15:00 (3 points; low ₹99,100.00")),
    Case(("order", "buy", "NIFTY", "ATM", "CE", "--lots", "1"), "POST", "/orders",
         {"side": "BUY", "instrument": "NIFTY ATM CE", "lots": 1}, PLACED,
         ("Resolved", "ATM of spot 26012.35", "strike", "₹26,000.00", "spot", "₹26,012.35", "2026-11-24",
          "order M000001 BUY 75 NIFTY26N2626000CE MARKET: COMPLETE (broker order 250101000001), filled 75 at "
          "₹245.05", "BUY 1 lot NIFTY26N2626000CE: filled")),
    Case(("order", "SELL", "NIFTY", "ATM+2", "PE", "--quantity", "150", "--expiry", "2026-11-24", "--type", "sl",
          "--price", "120.5", "--trigger", "121", "--protection", "-1", "--confirm", "--reason", "hedge"),
         "POST", "/orders",
         {"side": "SELL", "instrument": "NIFTY ATM+2 PE", "quantity": 150, "expiry": "2026-11-24",
          "order_type": "SL", "price": 120.5, "trigger_price": 121.0, "market_protection": -1.0,
          "reason": "hedge", "confirm": True}, PLACED, ("COMPLETE",)),
    Case(("order", "BUY", "NIFTY26N2626000CE", "--lots", "2", "--limit", "245.05", "--dry-run"), "POST", "/orders",
         {"side": "BUY", "instrument": "NIFTY26N2626000CE", "lots": 2, "order_type": "LIMIT", "price": 245.05,
          "dry_run": True}, {"order": None, "resolved": PLACED["resolved"], "message": "dry run"},
         ("Resolved", "no order placed (dry run)")),
    Case(("cancel", "250101000001"), "POST", "/orders/250101000001/cancel", None, CANCELLED,
         ("cancel sent for 250101000001",)),
    Case(("cancel", "M/1 x"), "POST", "/orders/M%2F1%20x/cancel", None, CANCELLED, ("cancel sent",)),
    Case(("approve", "S000009"), "POST", "/signals/S000009/approve", None, APPROVED,
         ("approval S000009 (NIFTY26N2626100PE): APPROVED", "order S000009 BUY 75", "OPEN", "expected ₹244.50")),
    Case(("reject", "SIG000004", "--reason", "too late in the day"), "POST", "/signals/SIG000004/reject",
         {"reason": "too late in the day"}, REJECTED, ("REJECTED - too late in the day",)),
    Case(("reject", "S000009"), "POST", "/signals/S000009/reject", None, REJECTED, ("REJECTED",)),
    Case(("flatten",), "POST", "/flatten", None, FLATTENED, ("2 exit orders sent: 2 exits for NIFTY",)),
    Case(("flatten", "nifty"), "POST", "/flatten", {"underlying": "NIFTY"}, FLATTENED, ("2 exit orders sent",)),
    Case(("halt",), "POST", "/halt", None, HALTED, ("trading state HALTED: halted: lunch",)),
    Case(("halt", "--reason", "lunch"), "POST", "/halt", {"reason": "lunch"}, HALTED, ("HALTED",)),
    Case(("resume",), "POST", "/resume", None, RESUMED, ("trading state ACTIVE, risk level LOW: trading resumed",)),
    Case(("reset-daily",), "POST", "/reset-daily", None, RESET,
         ("trading state ACTIVE, risk level MEDIUM: daily limits cleared",)),
]


@pytest.mark.parametrize("case", CASES, ids=[" ".join(c.argv) for c in CASES])
def test_each_command_sends_its_request_and_shows_the_answer(
        case: Case, daemon: FakeDaemon, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.answer(case.method, case.path, 200, case.answer)

    code, out, err = cli(capsys, *case.argv)

    assert (code, err) == (0, "")
    assert daemon.seen == [Seen(case.method, case.path, case.body, f"Bearer {TOKEN}")]
    assert "\x1b[" not in out  # a pipe: no colour codes
    for expected in case.shows:
        assert expected in out, f"{expected!r} not in:\n{out}"

    code, out, err = cli(capsys, *case.argv, "--json")

    assert (code, err) == (0, "")
    assert orjson.loads(out) == case.answer  # the API's document, one, as is
    assert daemon.seen[-1] == daemon.seen[0]


def test_human_output_survives_answers_with_missing_or_extra_fields(
        daemon: FakeDaemon, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A daemon of another version: fields the CLI expects are absent, others it does not know are there."""
    sparse: dict[str, dict[str, Any]] = {
        "/status": {"mode": "live", "new_field": [1, 2], "feed_age_s": "n/a"},
        "/positions": {"positions": [{"quantity": 1}]},
        "/orders": {"orders": [{"intent_id": "X1"}]}, "/signals": {"pending": [{"intent_id": "X2"}]},
        "/risk": {"limits": {"odd": "nonsense"}, "concentration": {"NIFTY": "n/a"}},
        "/report": {"equity_curve": [["t", "x"], [1]]},
    }
    for path, document in sparse.items():
        daemon.answer("GET", path, 200, document)
        code, out, err = cli(capsys, path.strip("/"))
        assert (code, err) == (0, ""), path
        assert out.strip(), path
    for command, document in (("halt", {}), ("approve", {}), ("order", {})):
        daemon.answer("POST", "/halt" if command == "halt" else "/orders" if command == "order"
                      else "/signals/X/approve", 200, document)
        argv = {"halt": ["halt"], "approve": ["approve", "X"], "order": ["order", "BUY", "X", "--lots", "1"]}
        code, out, err = cli(capsys, *argv[command])
        assert (code, err) == (0, ""), command
        assert out.strip(), command


def test_order_still_pending_at_the_gate_is_202_and_exit_0(
        daemon: FakeDaemon, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.answer("POST", "/orders", 202, {**PLACED, "order": {**ORDER, "status": "PENDING", "order_id": ""}})

    code, out, _ = cli(capsys, "order", "BUY", "NIFTY", "ATM", "CE", "--lots", "1")

    assert code == 0
    assert "PENDING" in out
    assert "the risk gate has not decided yet: follow it with `trader orders`" in out


# -- errors the daemon answers ---------------------------------------------------------------------------------------
ERRORS = [
    pytest.param(("order", "BUY", "NIFTY", "ATM", "CE", "--quantity", "100"), "POST", "/orders", 400,
                 error("bad_request", "must be a multiple of the lot size 75: 75 or 150", field="quantity"),
                 EXIT_USAGE, "bad request: quantity: must be a multiple of the lot size 75: 75 or 150", id="400"),
    pytest.param(("order", "BUY", "NIFTY", "ATM", "CE", "--lots", "1"), "POST", "/orders", 400,
                 error("bad_request", "instrument: NIFTY ATM CE needs the NIFTY index's price", field="instrument"),
                 EXIT_USAGE, "bad request: instrument: NIFTY ATM CE needs the NIFTY index's price",
                 id="400-field-named-once"),
    pytest.param(("halt", "--reason", "x" * 10), "POST", "/halt", 413,
                 error("too_large", "the body is larger than 16384 bytes"), EXIT_USAGE,
                 "request too large: the body is larger than 16384 bytes", id="413"),
    pytest.param(("order", "BUY", "NIFTY", "ATM", "CE", "--lots", "5"), "POST", "/orders", 409,
                 error("refused", "5 lots exceed max_lots_per_trade 2", check="max_lots_per_trade"), EXIT_REFUSED,
                 "refused: 5 lots exceed max_lots_per_trade 2 (risk check: max_lots_per_trade)", id="409-check"),
    pytest.param(("approve", "S000009"), "POST", "/signals/S000009/approve", 409,
                 error("refused", "S000009 expired at 10:16:00"), EXIT_REFUSED,
                 "refused: S000009 expired at 10:16:00", id="409-expired"),
    pytest.param(("cancel", "X9"), "POST", "/orders/X9/cancel", 404, error("not_found", "no open order X9"),
                 EXIT_REFUSED, "not found: no open order X9", id="404"),
    pytest.param(("flatten", "FINNIFTY"), "POST", "/flatten", 409,
                 error("refused", "no open position in FINNIFTY"), EXIT_REFUSED,
                 "refused: no open position in FINNIFTY", id="409-flatten"),
    pytest.param(("status",), "GET", "/status", 500, error("internal", "ledger failed: KeyError"), EXIT_REFUSED,
                 "the daemon failed (500 internal): ledger failed: KeyError", id="500"),
    pytest.param(("risk",), "GET", "/risk", 503, error("unavailable", "starting: the gate has not passed yet"),
                 EXIT_REFUSED, "the daemon is not ready: starting: the gate has not passed yet", id="503"),
]


@pytest.mark.parametrize(("argv", "method", "path", "status", "document", "exit_code", "message"), ERRORS)
def test_errors_from_the_daemon_map_to_exit_codes_and_messages(
        argv: tuple[str, ...], method: str, path: str, status: int, document: dict[str, Any], exit_code: int,
        message: str, daemon: FakeDaemon, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.answer(method, path, status, document)

    code, out, err = cli(capsys, *argv)

    assert code == exit_code
    assert out == ""
    assert err == f"trader {argv[0]}: {message}\n"

    code, out, err = cli(capsys, *argv, "--json")

    assert code == exit_code
    assert orjson.loads(out) == document  # scripts get the server's error document
    assert message in err


def test_an_answer_that_is_not_the_apis_json_is_a_failure(
        daemon: FakeDaemon, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.answer_raw("GET", "/status", 200, b"<html>hello</html>", "text/html")
    daemon.answer_raw("GET", "/orders", 500, b"500 Internal Server Error", "text/plain")
    daemon.answer("GET", "/positions", 200, [1, 2])

    code, _, err = cli(capsys, "status")
    assert code == EXIT_REFUSED
    assert f"GET {daemon.url}/status answered 200 with something that is not the control API's JSON" in err
    code, _, err = cli(capsys, "orders")
    assert (code, err) == (EXIT_REFUSED, "trader orders: the daemon failed (500) on GET /orders\n")
    code, _, err = cli(capsys, "positions")
    assert code == EXIT_REFUSED
    assert "not the control API's JSON" in err


def test_a_redirect_is_not_followed_so_the_token_goes_nowhere_else(
        daemon: FakeDaemon, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.answer("GET", "/positions", 302, {})
    daemon.answer("GET", "/status", 200, STATUS)

    code, _, err = cli(capsys, "positions")

    assert code == EXIT_REFUSED
    assert "answered a redirect (302)" in err
    assert [seen.path for seen in daemon.seen] == ["/positions"]


# -- the token: every source, refusals, never printed ---------------------------------------------------------------
def test_token_from_the_environment(daemon: FakeDaemon, env: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    daemon.answer("GET", "/status", 200, STATUS)
    assert cli(capsys, "status")[0] == 0
    assert daemon.seen[-1].authorization == f"Bearer {TOKEN}"

    env.setenv("TRADER_CONTROL__TOKEN", OTHER_TOKEN)
    code, out, err = cli(capsys, "status")

    assert (code, out) == (EXIT_REFUSED, "")
    assert daemon.seen[-1].authorization == f"Bearer {OTHER_TOKEN}"
    assert "the token was refused: the CLI read it from the environment variable TRADER_CONTROL__TOKEN" in err


def test_token_from_the_config_file(daemon: FakeDaemon, env: pytest.MonkeyPatch, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    env.delenv("TRADER_CONTROL__TOKEN")
    env.delenv("TRADER_CONTROL__PORT")
    config = tmp_path / "daemon.toml"
    config.write_text(f'[control]\nport = {daemon.port}\ntoken = "{TOKEN}"\n')
    daemon.answer("POST", "/resume", 200, RESUMED)

    assert cli(capsys, "resume", "--config", str(config))[0] == 0
    assert daemon.seen[-1].authorization == f"Bearer {TOKEN}"

    config.write_text(f'[control]\nport = {daemon.port}\ntoken = "{OTHER_TOKEN}"\n')
    code, _, err = cli(capsys, "resume", "--config", str(config))

    assert code == EXIT_REFUSED
    assert f"the token was refused: the CLI read it from control.token in {config}" in err


def test_token_from_the_daemons_file_in_the_data_dir(daemon: FakeDaemon, env: pytest.MonkeyPatch, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    env.delenv("TRADER_CONTROL__TOKEN")
    token_file = tmp_path / "data" / "control_token"
    token_file.parent.mkdir()
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    daemon.answer("GET", "/orders", 200, ORDERS)

    assert cli(capsys, "orders")[0] == 0
    assert daemon.seen[-1].authorization == f"Bearer {TOKEN}"

    token_file.write_text(OTHER_TOKEN)
    code, _, err = cli(capsys, "orders")

    assert code == EXIT_REFUSED
    assert f"the token was refused: the CLI read it from the file {token_file}" in err


def test_token_file_flag_wins_over_the_settings(daemon: FakeDaemon, env: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    env.setenv("TRADER_CONTROL__TOKEN", OTHER_TOKEN)
    given = tmp_path / "token"
    given.write_text(f"  {TOKEN}\n")
    daemon.answer("GET", "/risk", 200, RISK)

    assert cli(capsys, "risk", "--token-file", str(given))[0] == 0
    assert daemon.seen[-1].authorization == f"Bearer {TOKEN}"

    given.write_text(OTHER_TOKEN)
    code, _, err = cli(capsys, "risk", "--token-file", str(given))
    assert code == EXIT_REFUSED
    assert f"the token was refused: the CLI read it from --token-file {given}" in err

    for problem, content in (("no such file", None), ("the file is empty", " \n")):
        missing = tmp_path / "absent"
        if content is not None:
            missing.write_text(content)
        code, _, err = cli(capsys, "risk", "--token-file", str(missing))
        assert (code, err) == (EXIT_USAGE, f"trader risk: --token-file {missing}: {problem}\n")
    assert len(daemon.seen) == 2


def test_no_token_anywhere_sends_none_and_says_where_it_looked(
        daemon: FakeDaemon, env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env.delenv("TRADER_CONTROL__TOKEN")

    code, out, err = cli(capsys, "status")

    assert (code, out) == (EXIT_REFUSED, "")
    assert daemon.seen[-1].authorization is None
    assert "the daemon wants a token and the CLI found none" in err
    assert f"{tmp_path / 'data' / 'control_token'} does not exist" in err
    assert "--token-file" in err


def test_the_token_in_a_message_from_the_daemon_is_masked(
        daemon: FakeDaemon, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.answer("POST", "/halt", 409, error("refused", f"echoing Bearer {TOKEN} back"))

    code, _, err = cli(capsys, "halt")  # ``cli`` fails if the token is printed

    assert code == EXIT_REFUSED
    assert "echoing Bearer *** back" in err


def test_a_token_echoed_anywhere_in_an_answer_is_never_printed(
        daemon: FakeDaemon, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Something else listening on the port (or a daemon gone wrong) puts the token it was sent into its answers.
    daemon.answer("GET", "/status", 200, {**STATUS, "state_reason": f"token {TOKEN}", TOKEN: "as a key",
                                          "counts": {"echo": [f"Bearer {TOKEN}"]}})
    daemon.answer("POST", "/halt", 409, {**error("refused", "no"), "order": {"reason": TOKEN}})
    daemon.answer("POST", "/resume", 401, {**error("unauthorized", f"not {TOKEN}"), "echo": TOKEN})
    for argv in (("status",), ("status", "--json"), ("halt",), ("halt", "--json"), ("resume", "--json")):
        code, out, err = cli(capsys, *argv)  # ``cli`` fails if the token is printed
        assert code == (0 if argv[0] == "status" else EXIT_REFUSED), (argv, out, err)
    code, out, _ = cli(capsys, "status", "--json")
    assert orjson.loads(out)["state_reason"] == "token ***"


def test_a_report_with_absurd_numbers_prints_without_a_traceback(
        daemon: FakeDaemon, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    curve = [["2026-11-20T09:15:00+05:30", 1.0], ["2026-11-20T09:16:00+05:30", 1e308],
             ["2026-11-20T09:17:00+05:30", -1e308]]
    daemon.answer("GET", "/report", 200, {**REPORT, "equity_curve": curve})
    code, out, err = cli(capsys, "report")
    assert (code, err) == (0, "") and "Performance" in out


# -- unreachable, usage --------------------------------------------------------------------------------------------
def test_a_closed_port_is_exit_3_with_the_url_and_how_to_start_the_daemon(
        env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with closed_port() as sock:
        port = sock.getsockname()[1]
        env.setenv("TRADER_CONTROL__PORT", str(port))
        code, out, err = cli(capsys, "status")
        assert (code, out) == (EXIT_UNREACHABLE, "")
        assert err == (f"trader status: cannot reach the daemon at http://127.0.0.1:{port}/status: connection "
                       "refused; is the daemon running? start it with `make run` / `trader run`, or pass --url\n")

        code, out, err = cli(capsys, "halt", "--url", f"http://127.0.0.1:{port}/", "--json")
        assert code == EXIT_UNREACHABLE
        assert orjson.loads(out)["error"]["code"] == "unreachable"
        assert f"http://127.0.0.1:{port}/halt" in err


def test_a_daemon_that_never_answers_times_out_as_unreachable() -> None:
    with socket.socket() as listener:  # accepts connections in the kernel, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        client = ControlClient(url, TOKEN, token_source="test", timeout_s=0.2)
        with pytest.raises(Unreachable) as read:
            client.get("/status")
        assert read.value.exit_code == EXIT_UNREACHABLE
        assert read.value.message.startswith(f"no answer from {url}/status within 0.2 s (is the daemon running?")
        with pytest.raises(Unreachable) as act:
            client.post("/flatten", {"underlying": "NIFTY"})
        assert "the daemon may still carry the request out: look with `trader status`" in act.value.message
        assert TOKEN not in read.value.message + act.value.message


def test_an_http_proxy_in_the_environment_is_not_used(
        daemon: FakeDaemon, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with closed_port() as proxy:
        for name in ("http_proxy", "HTTP_PROXY", "all_proxy"):
            env.setenv(name, f"http://127.0.0.1:{proxy.getsockname()[1]}")
        env.delenv("no_proxy", raising=False)
        env.delenv("NO_PROXY", raising=False)
        daemon.answer("GET", "/status", 200, STATUS)
        assert cli(capsys, "status")[0] == 0


def test_usage_errors_are_exit_2_and_send_nothing(
        daemon: FakeDaemon, env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "one of the arguments --lots --quantity is required" in usage_error(capsys, "order", "BUY", "NIFTY")
    assert "invalid choice" in usage_error(capsys, "order", "HOLD", "NIFTY", "--lots", "1")
    assert "argument --type: invalid choice" in usage_error(
        capsys, "order", "BUY", "NIFTY", "ATM", "CE", "--lots", "1", "--type", "STOP")
    assert "must be 1 or more" in usage_error(capsys, "order", "BUY", "NIFTY", "--lots", "0")
    assert "not a finite number" in usage_error(capsys, "order", "BUY", "NIFTY", "--lots", "1", "--price", "nan")
    assert "the following arguments are required: ID" in usage_error(capsys, "cancel")
    assert "unrecognized arguments: extra" in usage_error(capsys, "status", "extra")

    code, _, err = cli(capsys, "order", "BUY", "NIFTY", "ATM", "CE", "--lots", "1", "--type", "SL", "--limit", "5")
    assert (code, err) == (EXIT_USAGE, "trader order: --limit P is short for --type LIMIT --price P: give one of "
                                       "them\n")
    code, _, err = cli(capsys, "status", "--url", "ftp://127.0.0.1:1")
    assert (code, err) == (EXIT_USAGE, "trader status: --url 'ftp://127.0.0.1:1': give the daemon's base URL, e.g. "
                                       "http://127.0.0.1:8780\n")
    code, _, err = cli(capsys, "status", "--config", str(tmp_path / "missing.toml"))
    assert code == EXIT_USAGE
    assert "missing.toml does not exist" in err
    env.setenv("TRADER_CONTROL__PORT", "0")
    code, out, err = cli(capsys, "status", "--json")
    assert code == EXIT_USAGE
    assert "control.port is 0 (any free port)" in err
    assert orjson.loads(out)["error"]["code"] == "usage"
    assert daemon.seen == []


def test_url_and_token_file_together_need_no_settings(
        daemon: FakeDaemon, env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env.setenv("TRADER_MODE", "not-a-mode")  # settings that cannot load
    given = tmp_path / "token"
    given.write_text(TOKEN)
    daemon.answer("GET", "/status", 200, STATUS)

    assert cli(capsys, "status", "--url", daemon.url, "--token-file", str(given))[0] == 0
    code, _, err = cli(capsys, "status")
    assert code == EXIT_USAGE
    assert "config error: mode" in err


# -- terminals, colours, encodings ---------------------------------------------------------------------------------
def test_colours_on_a_terminal_none_with_no_color(
        daemon: FakeDaemon, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.answer("GET", "/status", 200, STATUS)
    env.setenv("FORCE_COLOR", "1")  # as a terminal would be

    _, coloured, _ = cli(capsys, "status")
    assert "\x1b[31m-₹1,234.50" in coloured  # a loss in red
    assert "\x1b[33mREDUCING_ONLY" in coloured

    env.setenv("NO_COLOR", "1")
    _, plain, _ = cli(capsys, "status")
    assert "\x1b[31m" not in plain and "\x1b[33m" not in plain
    assert "-₹1,234.50" in plain and "REDUCING_ONLY" in plain


def test_a_stdout_that_cannot_encode_the_rupee_sign_gets_rs() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    render.show("positions", Answer(200, POSITIONS), Console(file=stream, width=200))
    stream.flush()
    text = raw.getvalue().decode("ascii")
    assert "Rs 245.05" in text and "+Rs 371.25" in text and "-Rs 1,605.75" in text


def test_the_installed_command_through_a_pipe(daemon: FakeDaemon, env: pytest.MonkeyPatch) -> None:
    daemon.answer("GET", "/positions", 200, POSITIONS)
    env.setenv("NO_COLOR", "1")
    trader = Path(sys.executable).with_name("trader")

    done = subprocess.run([str(trader), "positions"], capture_output=True, text=True, env=dict(os.environ),
                          timeout=60, check=False)

    assert (done.returncode, done.stderr) == (0, "")
    assert "NIFTY26N2626000CE" in done.stdout and "+₹371.25" in done.stdout
    assert "\x1b[" not in done.stdout
    assert daemon.seen[-1] == Seen("GET", "/positions", None, f"Bearer {TOKEN}")


def test_a_reader_that_left_the_pipe_is_no_error(daemon: FakeDaemon, env: pytest.MonkeyPatch) -> None:
    """`trader orders | head`: the reader is gone before the CLI writes."""
    daemon.answer("GET", "/orders", 200, ORDERS)
    trader = Path(sys.executable).with_name("trader")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([str(trader), "orders"], stdout=write_end, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ), timeout=60, check=False)
    finally:
        os.close(write_end)

    assert (done.returncode, done.stderr) == (0, "")
    assert [seen.path for seen in daemon.seen] == ["/orders"]


@pytest.mark.parametrize(("argv", "warns"), [(("flatten",), True), (("status",), False)])
def test_ctrl_c_while_waiting_says_whether_the_act_may_still_happen(
        argv: tuple[str, ...], warns: bool, daemon: FakeDaemon, env: pytest.MonkeyPatch) -> None:
    daemon.held = {("POST", "/flatten"), ("GET", "/status")}
    trader = Path(sys.executable).with_name("trader")
    with subprocess.Popen([str(trader), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=dict(os.environ)) as proc:
        daemon.wait_for_requests(1)  # the CLI is now waiting for the answer
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)

    assert (proc.returncode, out) == (130, "")
    assert err.startswith(f"trader {argv[0]}: interrupted")
    assert ("the daemon may still carry it out" in err) is warns
    assert "Traceback" not in err


def test_plain_http_to_another_machine_warns_that_the_token_crosses_in_clear_text(
        env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from trader.control.commands import _check_url  # noqa: PLC0415

    assert _check_url("http://127.0.0.1:8780/") == "http://127.0.0.1:8780"
    assert _check_url("https://trader.example:443") == "https://trader.example:443"
    assert capsys.readouterr().err == ""  # loopback, or TLS: nothing to say
    assert _check_url("http://192.0.2.7:8780") == "http://192.0.2.7:8780"
    assert "clear text" in capsys.readouterr().err
