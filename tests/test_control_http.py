"""The control API over real HTTP, against an in-process paper daemon on the built-in market: auth, the error
answers, the shape of every read, halt/resume/reset-daily and a manual order through the risk gate, the token file,
and the server's own guards (port in use, non-loopback address)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import pytest

from trader.actors.ledger import OrderRecord
from trader.actors.risk import FLATTEN_STRATEGY_ID
from trader.app import App
from trader.config import ConfigError, load_settings
from trader.control.http import ControlServer
from trader.control.runtime import ControlRuntime
from trader.control.service import ControlService
from trader.control.token import TOKEN_FILE_NAME
from trader.events import (
    ApprovalStatus,
    ApprovalUpdate,
    Direction,
    IntentPurpose,
    OrderIntent,
    OrderType,
    Side,
    Signal,
    TradingState,
)
from trader.service_settings import ControlSettings

from helpers import captured_logs, wait_for

pytestmark = pytest.mark.usefixtures("clean_env")  # no TRADER_KITE__* from the shell turns on the Kite market

# Fri 20 Nov 2026 10:00 IST: inside the entry window (09:20-15:00) of a normal session. At 5x a test's few real
# seconds stay well inside it.
START = "2026-11-20T10:00:00"
ORDER = {"side": "BUY", "instrument": "NIFTY ATM CE", "lots": 1}


@dataclass
class Daemon:
    app: App
    http: aiohttp.ClientSession
    url: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def call(self, method: str, path: str, body: Any = None, *, data: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, json=body, data=data,
                                     headers=self.auth if headers is None else headers) as response:
            assert response.content_type == "application/json"
            return response.status, await response.json()

    async def get(self, path: str) -> Any:
        status, answer = await self.call("GET", path)
        assert status == 200, answer
        return answer


def paper_settings(data_dir: Path, *, semi_live: bool = False, **control: Any) -> Any:
    if semi_live:
        # Semi-live on a fast market with a twitchy strategy: an entry waits for approval every second or so, and
        # an unanswered one expires after about a real second.
        sim = {"start": START, "speed": 100, "seed": 11}
        strategy = {"confidence_cutoff": 0, "bar_seconds": 5, "fast": 2, "slow": 4, "confirm_bars": 1}
        control = {"approval_expiry_seconds": 120, **control}
    else:
        sim = {"start": START, "speed": 5, "seed": 11}
        strategy = {"confidence_cutoff": 100}  # no strategy entry interferes: the only orders are the test's
    return load_settings({
        "mode": "paper", "data_dir": str(data_dir), "heartbeat_seconds": 0.5, "auto_execution": not semi_live,
        "sim": sim, "strategy": strategy,
        # ₹20 a day on ₹10 lakh: the charges of one round trip breach it, while one lot fits the risk per trade.
        "risk": {"initial_capital": 1_000_000, "max_daily_loss_pct": 0.00002 if not semi_live else 0.02},
        "control": {"order_wait_seconds": 3, **control},
    })


@contextlib.asynccontextmanager
async def running(data_dir: Path, *, semi_live: bool = False, **control: Any) -> AsyncIterator[Daemon]:
    app = App(paper_settings(data_dir, semi_live=semi_live, **control))
    task = asyncio.create_task(app.run(install_signal_handlers=False))
    try:
        await wait_for(lambda: bool(app.control_url) or task.done(), within_s=30)
        if task.done():
            task.result()  # the start failed: raise its error
        await wait_for(lambda: bool(app.strategy.context.quotes), within_s=30)  # the resolver needs quotes
        token = control.get("token") or (data_dir / TOKEN_FILE_NAME).read_text().strip()
        async with aiohttp.ClientSession() as http:
            yield Daemon(app, http, app.control_url, token)
    finally:
        app.request_stop("test over")
        await asyncio.wait_for(task, 30)


async def test_every_route_but_healthz_needs_the_token(tmp_path: Path) -> None:
    with captured_logs() as lines:
        async with running(tmp_path) as daemon:
            status, answer = await daemon.call("GET", "/healthz", headers={})
            assert status == 200 and answer["ok"] is True  # tests/test_healthz.py has the rest
            for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"},
                            {"Authorization": daemon.token}, {"Authorization": f"Basic {daemon.token}"},
                            {"Authorization": f"Bearer {daemon.token}x"}):
                for method, path in (("GET", "/status"), ("POST", "/halt"), ("GET", "/nowhere")):
                    async with daemon.http.request(method, daemon.url + path, headers=headers) as response:
                        assert response.status == 401, (headers, path)
                        assert response.headers["WWW-Authenticate"].startswith("Bearer")
                        answer = await response.json()
                        assert answer["error"]["code"] == "unauthorized"
                        assert str(tmp_path / TOKEN_FILE_NAME) in answer["error"]["message"]  # where to find it
                        assert daemon.token not in await response.text()
            assert daemon.app.risk.state is TradingState.ACTIVE  # the refused halt did nothing
            status, answer = await daemon.call("GET", "/status")
            assert status == 200 and answer["mode"] == "paper"
            url = daemon.url
    # The server stopped with the daemon.
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http, http.get(url + "/healthz"):
            pass
    [listening] = [line for line in lines if line["event"] == "control_api_listening"]
    assert listening["url"] == url and listening["token_file"] == str(tmp_path / TOKEN_FILE_NAME)
    requests = [line for line in lines if line["event"] == "control_request"]
    # One line per request: 15 refused, 1 answered (the /healthz line is at debug level, not captured at INFO).
    assert len(requests) == 5 * 3 + 1
    assert {line["status"] for line in requests} == {200, 401}
    assert all(set(line) >= {"method", "path", "status", "ms"} for line in requests)
    text = "\n".join(str(line) for line in lines)
    assert daemon.token not in text and "Bearer" not in text and "authorization" not in text.lower()
    stopped = [line["event"] for line in lines]
    assert stopped.index("control_api_stopped") < stopped.index("summary")  # the server stops first


async def test_bad_requests_get_json_errors_naming_the_problem(tmp_path: Path) -> None:
    async with running(tmp_path, max_body_bytes=2048) as daemon:
        status, answer = await daemon.call("POST", "/halt", data=b'{"reason": "' + b"x" * 4096 + b'"}')
        assert status == 413 and answer["error"]["code"] == "too_large"
        assert "2048" in answer["error"]["message"]
        status, answer = await daemon.call("POST", "/orders", data=b'{"side": "BUY",')
        assert status == 400 and answer["error"]["code"] == "bad_request" and "JSON" in answer["error"]["message"]
        status, answer = await daemon.call("POST", "/orders", data=b'["BUY"]')
        assert status == 400 and "object" in answer["error"]["message"]
        status, answer = await daemon.call("POST", "/orders", {**ORDER, "lots": 0})
        assert status == 400 and answer["error"]["field"] == "lots"
        status, answer = await daemon.call("POST", "/orders", {**ORDER, "colour": "red"})
        assert status == 400 and answer["error"]["field"] == "colour"
        status, answer = await daemon.call("POST", "/orders", {"side": "BUY", "instrument": "NIFTY ATM+99 CE",
                                                               "lots": 1})
        assert status == 400 and answer["error"]["field"] == "instrument"  # the resolver's refusal
        status, answer = await daemon.call("POST", "/halt", {"reason": 5})
        assert status == 400 and answer["error"]["field"] == "reason"
        status, answer = await daemon.call("POST", "/resume", {"now": True})
        assert status == 400 and answer["error"]["field"] == "now"
        status, answer = await daemon.call("POST", "/flatten", {"underlying": "GOLD"})
        assert status == 400 and answer["error"]["field"] == "underlying"
        status, answer = await daemon.call("GET", "/nowhere")
        assert status == 404 and answer["error"]["code"] == "not_found" and "/status" in answer["error"]["message"]
        status, answer = await daemon.call("DELETE", "/status")
        assert status == 405 and "GET" in answer["error"]["message"]
        status, answer = await daemon.call("GET", "/halt")
        assert status == 405
        for path in ("/signals/S0NOSUCH/approve", "/signals/S0NOSUCH/reject"):
            status, answer = await daemon.call("POST", path)
            assert status == 404 and answer["error"]["code"] == "not_found" and "S0NOSUCH" in answer["error"]["message"]
        status, answer = await daemon.call("POST", "/signals/bad%20id!/approve")
        assert status == 400 and answer["error"]["field"] == "ref"
        assert daemon.app.risk.state is TradingState.ACTIVE and not daemon.app.ledger.orders  # nothing acted


STATUS_KEYS = {"mode", "auto_execution", "trading_state", "state_reason", "risk_level", "broker_reachable",
               "venue_problems", "feed_age_s", "loop_lag_ms", "session_time", "event_ts_ns", "uptime_s",
               "pending_approvals", "open_positions", "equity_inr", "day_pnl_inr", "counts", "version"}
POSITION_KEYS = {"tradingsymbol", "underlying", "expiry", "strike_inr", "option_type", "quantity", "lots",
                 "average_price_inr", "last_price_inr", "realized_inr", "unrealized_inr", "held_by"}
ORDER_KEYS = {"intent_id", "tag", "order_id", "strategy", "tradingsymbol", "side", "quantity", "order_type",
              "purpose", "status", "reason", "check", "filled_quantity", "average_price_inr", "expected_price_inr",
              "slippage_bps", "fills", "time"}
FILL_KEYS = {"fill_id", "quantity", "price_inr", "charges_inr", "slippage_bps", "time"}
SIGNAL_KEYS = {"signal_id", "strategy", "underlying", "direction", "confidence", "reason", "time", "intent_id"}
APPROVAL_KEYS = {"intent_id", "signal_id", "strategy", "tradingsymbol", "side", "quantity", "lots",
                 "expected_price_inr", "status", "expires", "expires_in_s", "by", "reason"}
LIMIT_NAMES = {"daily_loss", "weekly_loss", "monthly_loss", "drawdown", "positions_per_symbol", "total_positions",
               "lots_per_trade", "margin_utilisation", "orders_per_second"}


async def test_reads_answer_in_the_documented_shape_and_a_manual_order_fills(tmp_path: Path) -> None:
    async with running(tmp_path) as daemon:
        app = daemon.app
        status = await daemon.get("/status")
        assert set(status) >= STATUS_KEYS
        assert status["trading_state"] == "ACTIVE" and status["broker_reachable"] is True
        assert status["feed_age_s"] is not None and 0 <= status["feed_age_s"] < 30
        assert status["counts"]["ticks_in"] > 0 and status["open_positions"] == 0
        assert status["equity_inr"] == 1_000_000.0

        dry_status, dry = await daemon.call("POST", "/orders", {**ORDER, "dry_run": True})
        assert dry_status == 200 and dry["order"] is None and dry["resolved"]["lots"] == 1
        assert not app.ledger.orders  # nothing was placed
        placed_status, placed = await daemon.call("POST", "/orders", ORDER)
        assert placed_status == 200, placed
        assert placed["decided"] is True and placed["order"]["strategy"] == "manual"
        assert placed["order"]["purpose"] == "ENTRY" and placed["order"]["intent_id"].startswith("M")
        symbol = placed["resolved"]["tradingsymbol"]
        assert placed["order"]["tradingsymbol"] == symbol
        intent_id = placed["order"]["intent_id"]
        await wait_for(lambda: app.portfolio.fills >= 1)

        positions = await daemon.get("/positions")
        [position] = positions["positions"]
        assert set(position) >= POSITION_KEYS and position["tradingsymbol"] == symbol
        assert position["quantity"] == placed["resolved"]["quantity"] and position["lots"] == 1
        assert positions["charges_inr"] > 0

        orders = (await daemon.get("/orders"))["orders"]
        [order] = orders
        assert set(order) >= ORDER_KEYS and order["intent_id"] == intent_id and order["tag"] == intent_id
        assert order["status"] == "COMPLETE" and order["order_id"] and order["filled_quantity"] == position["quantity"]
        [fill] = order["fills"]
        assert set(fill) >= FILL_KEYS and isinstance(order["slippage_bps"], float)

        # Selling what the book holds is an exit.
        sold_status, sold = await daemon.call("POST", "/orders", {**ORDER, "side": "SELL", "instrument": symbol})
        assert sold_status == 200 and sold["order"]["purpose"] == "EXIT"
        await wait_for(lambda: app.portfolio.fills >= 2)
        assert (await daemon.get("/positions"))["positions"] == []
        assert [o["intent_id"] for o in (await daemon.get("/orders"))["orders"]][1] == intent_id  # newest first

        # Signals and approvals as the ledger sees them on the bus.
        now = app.clock.now_ns()
        app.bus.publish(Signal(ts_ns=now, signal_id="S1TEST", strategy_id="ema_crossover_enhanced",
                               underlying="NIFTY", direction=Direction.BULLISH, confidence=61.0, reason="test"))
        record = app.ledger.order(intent_id)
        assert record is not None
        held = OrderIntent(ts_ns=now, intent_id="E1TEST", strategy_id="ema_crossover_enhanced",
                           contract=record.intent.contract, side=Side.BUY, quantity=65,
                           order_type=OrderType.MARKET, purpose=IntentPurpose.ENTRY,
                           expected_price=4_000, signal_id="S1TEST")
        app.bus.publish(ApprovalUpdate(ts_ns=now, intent=held, status=ApprovalStatus.PENDING,
                                       expires_ns=now + 60 * 10**9))
        await wait_for(lambda: bool(app.ledger.pending))
        signals = await daemon.get("/signals")
        [signal] = signals["signals"]
        assert set(signal) >= SIGNAL_KEYS and signal["intent_id"] == "E1TEST"
        [pending] = signals["pending"]
        assert set(pending) >= APPROVAL_KEYS and pending["status"] == "PENDING" and 0 < pending["expires_in_s"] <= 60
        assert signals["decided"] == [] and (await daemon.get("/status"))["pending_approvals"] == 1

        risk = await daemon.get("/risk")
        assert set(risk["limits"]) == LIMIT_NAMES
        assert all(set(limit) == {"limit", "used", "used_pct", "unit"} for limit in risk["limits"].values())
        assert risk["limits"]["daily_loss"]["unit"] == "INR" and risk["limits"]["daily_loss"]["limit"] == 20.0
        assert risk["limits"]["lots_per_trade"]["used"] == 1
        assert {"equity_inr", "daily_pnl_inr", "drawdown_inr", "margin_used_inr", "exposure_inr"} <= set(risk)
        assert "equity" not in risk and risk["concentration"] == {}

        report = await daemon.get("/report")
        assert {"trades", "net_pnl_inr", "charges_inr", "win_rate", "max_drawdown_inr", "fills",
                "equity_curve"} <= set(report)
        assert report["fills"] == 2 and report["trades"] == 1
        assert all(isinstance(t, str) and isinstance(e, float) for t, e in report["equity_curve"])


async def test_halt_resume_and_reset_daily_change_what_the_risk_gate_allows(tmp_path: Path) -> None:
    async with running(tmp_path) as daemon:
        app = daemon.app
        status, halted = await daemon.call("POST", "/halt", {"reason": "operator test"})
        assert status == 200 and halted["trading_state"] == "HALTED"
        assert app.risk.state is TradingState.HALTED and app.risk.manager.state_reason == "operator test"
        status, refused = await daemon.call("POST", "/orders", ORDER)
        assert status == 409 and refused["error"]["code"] == "refused" and refused["error"]["check"] == "state"
        assert "HALTED" in refused["error"]["message"] and refused["order"]["status"] == "REJECTED"
        assert (await daemon.get("/status"))["state_reason"] == "operator test"

        status, resumed = await daemon.call("POST", "/resume")
        assert status == 200 and resumed["trading_state"] == "ACTIVE" and app.risk.state.value == "ACTIVE"
        # A round trip's charges breach the ₹20 daily limit: REDUCING_ONLY refuses the next entry.
        status, bought = await daemon.call("POST", "/orders", ORDER)
        assert status == 200, bought
        symbol = bought["resolved"]["tradingsymbol"]
        await wait_for(lambda: app.portfolio.fills >= 1)
        status, sold = await daemon.call("POST", "/orders", {**ORDER, "side": "SELL", "instrument": symbol})
        assert status == 200, sold
        await wait_for(lambda: app.portfolio.fills >= 2 and app.risk.manager.book.charges > 0
                       and not app.risk.manager.open_positions())
        assert app.risk.state.value == "REDUCING_ONLY"
        status, refused = await daemon.call("POST", "/orders", ORDER)
        assert status == 409 and refused["error"]["check"] in {"state", "level"}
        assert "daily" in (await daemon.get("/risk"))["breached_limits"]

        status, reset = await daemon.call("POST", "/reset-daily")
        assert status == 200 and reset["trading_state"] == "ACTIVE" and reset["risk_level"] == "LOW"
        assert (await daemon.get("/risk"))["breached_limits"] == []
        status, again = await daemon.call("POST", "/orders", ORDER)
        assert status == 200 and again["order"]["status"] != "REJECTED"


def test_the_token_file_is_made_once_owner_only_and_reused(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from trader.control.token import load_token  # noqa: PLC0415

    settings = paper_settings(tmp_path)
    with captured_logs() as lines:
        token, path = load_token(settings)
    assert path == tmp_path / TOKEN_FILE_NAME and path.read_text().strip() == token and len(token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    printed = capsys.readouterr().err
    assert token in printed and str(path) in printed  # printed once, with where it is
    [created] = [line for line in lines if line["event"] == "control_token_created"]
    assert created["path"] == str(path) and token not in str(lines)
    with captured_logs() as lines:
        assert load_token(settings) == (token, path)  # reused, not printed again
    assert capsys.readouterr().err == "" and not lines

    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_token(settings)
    path.write_text("  \n")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="empty"):
        load_token(settings)
    path.write_text("short")
    with pytest.raises(ConfigError, match="delete it"):
        load_token(settings)

    configured = paper_settings(tmp_path / "other", token="a-configured-token-1234")
    assert load_token(configured) == ("a-configured-token-1234", None)
    assert not (tmp_path / "other").exists()  # no file made when the settings give the token


async def test_a_token_file_that_cannot_be_used_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / TOKEN_FILE_NAME
    path.write_text("x" * 43)
    os.chmod(path, 0o640)
    app = App(paper_settings(tmp_path))
    with pytest.raises(ConfigError, match=f"chmod 600 {path}"):
        await app.run(install_signal_handlers=False)
    assert app.control_url == "" and app.journal is None  # closed again


async def test_a_configured_token_works_and_the_file_is_reused_across_restarts(tmp_path: Path) -> None:
    async with running(tmp_path / "a", token="configured-token-0123456789") as daemon:
        assert (await daemon.get("/status"))["mode"] == "paper"
        assert not (tmp_path / "a" / TOKEN_FILE_NAME).exists()
    async with running(tmp_path / "b") as first:
        token = first.token
    async with running(tmp_path / "b") as second:
        assert second.token == token
        assert (await second.get("/status"))["mode"] == "paper"


async def test_the_server_refuses_a_taken_port_and_a_non_loopback_address(tmp_path: Path) -> None:
    async with running(tmp_path / "a") as daemon:
        port = int(daemon.url.rsplit(":", 1)[1])
        # A second daemon on the same port fails to start, naming the setting.
        app = App(paper_settings(tmp_path / "b", port=port))
        with pytest.raises(ConfigError, match=r"control\.port") as caught:
            await app.run(install_signal_handlers=False)
        assert "TRADER_CONTROL__PORT" in str(caught.value)
        # The config refuses a non-loopback host without allow_remote, and so does the server on its own.
        with pytest.raises(ConfigError, match="allow_remote"):
            paper_settings(tmp_path / "c", host="0.0.0.0")
        service = ControlService(daemon.app)
        unchecked = ControlSettings.model_construct(**{**ControlSettings().model_dump(), "host": "0.0.0.0",
                                                       "port": 0})
        server = ControlServer(service, unchecked, "t" * 32)
        with pytest.raises(ConfigError, match="allow_remote"):
            await server.start()
        assert server.url == ""


def test_no_control_api_in_backtest_or_when_disabled(tmp_path: Path) -> None:
    backtest = App(load_settings({"mode": "backtest", "sim": {"days": 1, "start": START}}))
    assert ControlRuntime.for_app(backtest) is None
    disabled = App(paper_settings(tmp_path, enabled=False))
    try:
        assert ControlRuntime.for_app(disabled) is None
    finally:
        assert disabled.journal is not None
        disabled.journal.close()
    assert not (tmp_path / TOKEN_FILE_NAME).exists()


async def test_an_act_not_answered_in_time_is_answered_202_or_503_and_done_later(tmp_path: Path) -> None:
    async with running(tmp_path, order_wait_seconds=0.3) as daemon:
        app = daemon.app
        await app.supervisor.stop(["risk"])  # the gate stalls: the intent waits in its inbox
        status, answer = await daemon.call("POST", "/orders", ORDER)
        assert status == 202 and answer["decided"] is False and answer["order"]["status"] == "NEW"
        intent_id = answer["order"]["intent_id"]
        assert "had not decided" in answer["message"]
        status, answer = await daemon.call("POST", "/halt")
        assert status == 503 and answer["error"]["code"] == "unavailable" and "risk gate" in answer["error"]["message"]
        app.supervisor.start(app.risk)  # back: it decides the waiting intent, then applies the halt
        await wait_for(lambda: app.portfolio.fills >= 1 and app.risk.state is TradingState.HALTED)
        [order] = (await daemon.get("/orders"))["orders"]
        assert order["intent_id"] == intent_id and order["status"] == "COMPLETE"


async def test_cancel_and_flatten(tmp_path: Path) -> None:
    async with running(tmp_path) as daemon:
        app = daemon.app
        status, answer = await daemon.call("POST", "/orders/NOSUCH1/cancel")
        assert status == 404 and answer["error"]["code"] == "not_found" and "NOSUCH1" in answer["error"]["message"]
        # A limit far below the market rests at the broker until cancelled.
        status, resting = await daemon.call("POST", "/orders", {**ORDER, "order_type": "LIMIT", "price": 1.0})
        assert status == 200, resting
        intent_id = resting["order"]["intent_id"]
        await wait_for(lambda: (record := app.ledger.order(intent_id)) is not None and record.status == "OPEN")
        status, cancelled = await daemon.call("POST", f"/orders/{intent_id}/cancel")
        assert status == 200 and cancelled["ok"] is True and intent_id in cancelled["detail"]
        await wait_for(lambda: (record := app.ledger.order(intent_id)) is not None and record.status == "CANCELLED")
        status, answer = await daemon.call("POST", f"/orders/{intent_id}/cancel")
        assert status == 404  # it is not open any more

        status, answer = await daemon.call("POST", "/flatten", {"underlying": "BANKNIFTY"})
        assert status == 409 and "no open position in BANKNIFTY" in answer["error"]["message"]
        status, bought = await daemon.call("POST", "/orders", ORDER)
        assert status == 200, bought
        await wait_for(lambda: bool(app.portfolio.book.open_positions()))
        status, flat = await daemon.call("POST", "/flatten", {"underlying": "nifty"})
        assert status == 200 and flat["exits"] == 1 and bought["resolved"]["tradingsymbol"] in flat["detail"]
        await wait_for(lambda: not app.portfolio.book.open_positions())
        assert (await daemon.get("/positions"))["positions"] == []
        exits = [o for o in (await daemon.get("/orders"))["orders"] if o["strategy"] == "risk-flatten"]
        assert len(exits) == 1 and exits[0]["status"] == "COMPLETE" and exits[0]["purpose"] == "EXIT"
        status, flat = await daemon.call("POST", "/flatten")  # nothing left: fine, nothing to do
        assert status == 200 and flat["exits"] == 0


async def test_concurrent_flattens_over_a_resting_manual_exit_leave_the_account_flat_and_count_truthfully(
        tmp_path: Path) -> None:
    """Fault injection: a manual SELL LIMIT 999 resting on the position kept every flatten from closing it, while
    each answer said an exit was issued; overlapping requests also counted each other's exits."""
    async with running(tmp_path) as daemon:
        app = daemon.app

        def flatten_orders() -> list[OrderRecord]:
            return [o for o in app.ledger.orders.values() if o.intent.strategy_id == FLATTEN_STRATEGY_ID]

        status, bought = await daemon.call("POST", "/orders", ORDER)
        assert status == 200, bought
        symbol = bought["resolved"]["tradingsymbol"]
        await wait_for(lambda: bool(app.portfolio.book.open_positions()))
        status, resting = await daemon.call("POST", "/orders", {"side": "SELL", "instrument": symbol, "lots": 1,
                                                                "order_type": "LIMIT", "price": 999.0})
        assert status == 200 and resting["order"]["purpose"] == "EXIT", resting
        intent_id = resting["order"]["intent_id"]
        await wait_for(lambda: (record := app.ledger.order(intent_id)) is not None and record.status == "OPEN")
        answers = await asyncio.gather(*(daemon.call("POST", "/flatten") for _ in range(3)))
        assert [status for status, _ in answers] == [200, 200, 200], answers
        # None could be sent at once (the resting exit covered the position): each says so, none claims an exit.
        assert [answer["exits"] for _, answer in answers] == [0, 0, 0], answers
        assert "1 working order(s) of the daemon's being cancelled" in answers[0][1]["detail"]
        await wait_for(lambda: not app.portfolio.book.open_positions()
                       and all(o.status == "COMPLETE" for o in flatten_orders()))
        assert [o.status for o in flatten_orders()] == ["COMPLETE"]  # one exit in all, and it filled
        record = app.ledger.order(intent_id)
        assert record is not None and record.status == "CANCELLED"
        assert await app.broker.positions() == {}  # flat at the broker too: nothing sold short

        # Without a working order in the way, overlapping flattens issue one exit, and the counts add up to it.
        status, reset = await daemon.call("POST", "/reset-daily")  # the round trip's charges breached the tiny limit
        assert status == 200 and reset["trading_state"] == "ACTIVE", reset
        status, bought = await daemon.call("POST", "/orders", {**ORDER, "instrument": symbol})
        assert status == 200, bought
        await wait_for(lambda: bool(app.portfolio.book.open_positions()))
        await wait_for(lambda: not app.execution.open_orders)
        answers = await asyncio.gather(*(daemon.call("POST", "/flatten") for _ in range(3)))
        assert [status for status, _ in answers] == [200, 200, 200], answers
        assert sum(answer["exits"] for _, answer in answers) == 1, answers
        await wait_for(lambda: not app.portfolio.book.open_positions()
                       and all(o.status == "COMPLETE" for o in flatten_orders()))
        assert len(flatten_orders()) == 2 and await app.broker.positions() == {}


async def test_semi_live_approve_reject_expire_and_a_halt_refuses_the_approval(tmp_path: Path) -> None:
    async with running(tmp_path, semi_live=True) as daemon:
        app = daemon.app
        answered: set[str] = set()

        async def next_pending() -> dict[str, Any]:
            await wait_for(lambda: any(i not in answered for i in app.ledger.pending), within_s=30)
            pending = (await daemon.get("/signals"))["pending"]
            fresh: list[dict[str, Any]] = [p for p in pending if p["intent_id"] not in answered]
            assert fresh, pending
            answered.add(fresh[0]["intent_id"])
            return fresh[0]

        first = await next_pending()
        assert set(first) >= APPROVAL_KEYS and first["status"] == "PENDING" and first["signal_id"]
        status, rejected = await daemon.call("POST", f"/signals/{first['signal_id']}/reject", {"reason": "not now"})
        assert status == 200 and rejected["approval"]["status"] == "REJECTED"
        assert rejected["approval"]["by"] == "operator" and rejected["approval"]["reason"] == "not now"
        status, again = await daemon.call("POST", f"/signals/{first['intent_id']}/approve")
        assert status == 409 and "already rejected" in again["error"]["message"]

        second = await next_pending()
        await wait_for(lambda: second["intent_id"] in app.ledger.decided, within_s=30)  # nobody answered
        status, late = await daemon.call("POST", f"/signals/{second['intent_id']}/approve")
        assert status == 409 and late["approval"]["status"] == "EXPIRED"

        third = await next_pending()
        status, _ = await daemon.call("POST", "/halt", {"reason": "lunch"})
        assert status == 200
        status, refused = await daemon.call("POST", f"/signals/{third['intent_id']}/approve")
        assert status == 409 and refused["error"]["check"] == "state" and "HALTED" in refused["error"]["message"]
        assert refused["approval"]["status"] == "APPROVED" and refused["order"]["status"] == "REJECTED"
        status, _ = await daemon.call("POST", "/resume")
        assert status == 200

        fourth = await next_pending()
        status, approved = await daemon.call("POST", f"/signals/{fourth['intent_id']}/approve")
        assert status == 200, approved
        assert approved["decided"] is True and approved["approval"]["status"] == "APPROVED"
        assert approved["order"]["intent_id"] == fourth["intent_id"] and approved["order"]["tag"]
        await wait_for(lambda: bool(app.ledger.orders[fourth["intent_id"]].fills))  # it filled
        decided = {a["intent_id"]: a["status"] for a in (await daemon.get("/signals"))["decided"]}
        assert {decided[p["intent_id"]] for p in (first, second, third, fourth)} == {"REJECTED", "EXPIRED",
                                                                                    "APPROVED"}


async def test_live_mode_needs_confirm_and_says_what_it_would_place(tmp_path: Path) -> None:
    from trader.control.requests import ManualOrder  # noqa: PLC0415
    from trader.control.service import Refused  # noqa: PLC0415

    async with running(tmp_path) as daemon:
        service = ControlService(daemon.app)
        service.settings = daemon.app.settings.model_copy(update={"mode": "live"})  # the same check a live daemon runs
        with pytest.raises(Refused) as refused:
            await service.place_order(ManualOrder.model_validate(ORDER))
        body = refused.value.body()
        symbol = body["resolved"]["tradingsymbol"]
        assert body["error"]["field"] == "confirm" and symbol in body["error"]["message"]
        assert "confirm=true" in body["error"]["message"] and not daemon.app.ledger.orders  # nothing sent
        placed = await service.place_order(ManualOrder.model_validate({**ORDER, "confirm": True}))
        assert placed["decided"] is True and placed["order"]["tradingsymbol"] == symbol


async def test_once_a_stop_is_requested_no_manual_order_or_approval_starts(tmp_path: Path) -> None:
    from trader.control.requests import ManualOrder  # noqa: PLC0415
    from trader.control.service import Unavailable  # noqa: PLC0415

    async with running(tmp_path) as daemon:
        service = ControlService(daemon.app)
        daemon.app.request_stop("test: a signal arrived")
        with pytest.raises(Unavailable) as refused:
            await service.place_order(ManualOrder.model_validate(ORDER))
        assert "stopping" in refused.value.message and not daemon.app.ledger.orders  # nothing sent


async def test_a_token_that_is_not_text_is_a_401_not_a_server_error() -> None:
    # Bytes that are not UTF-8 in the Authorization header (a mangled paste, a probe) are a wrong token like any other.
    names = ("status", "positions", "orders", "signals", "risk", "report")
    reads: dict[str, Callable[[], dict[str, object]]] = {name: (lambda: {}) for name in names}
    server = ControlServer(cast(ControlService, SimpleNamespace(**reads)), ControlSettings(port=0), "t" * 32)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n")
        await writer.drain()
        answer = await reader.read()
        writer.close()
    finally:
        await server.stop()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401") and b"application/json" in head, head
    assert b'"unauthorized"' in body


async def test_a_retried_manual_order_with_the_same_request_id_is_answered_not_placed_again(tmp_path: Path) -> None:
    async with running(tmp_path) as daemon:
        body = {**ORDER, "request_id": "retry-1"}
        first_status, first = await daemon.call("POST", "/orders", body)
        again = await asyncio.gather(daemon.call("POST", "/orders", body),
                                   daemon.call("POST", "/orders", body))
        assert first_status == 200 and first["order"]["intent_id"]
        for status, answer in again:
            assert status == 200 and answer["repeat"] is True
            assert answer["order"]["intent_id"] == first["order"]["intent_id"]
        manual = [o for o in daemon.app.ledger.orders.values() if o.intent.strategy_id == "manual"]
        assert len(manual) == 1  # one order for three requests
        status, other = await daemon.call("POST", "/orders", {**ORDER, "request_id": "retry-2"})
        assert status == 200 and other["order"]["intent_id"] != first["order"]["intent_id"]
        status, bad = await daemon.call("POST", "/orders", {**ORDER, "request_id": "no spaces please"})
        assert status == 400 and bad["error"]["field"] == "request_id"
