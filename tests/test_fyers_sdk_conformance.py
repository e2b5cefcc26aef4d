"""The OFFICIAL Fyers SDK (``fyers-apiv3``: ``fyersModel.SessionModel`` and ``FyersModel``, and
``FyersWebsocket.order_ws.FyersOrderSocket``) run UNCHANGED against the simulator's Fyers face on 127.0.0.1.

Only the SDK's hard-coded URLs are redirected, by setting attributes (configuration, not code):
``fyersModel.Config.API`` and ``Config.DATA_API`` (REST) and the order socket's URL attribute
(``FyersOrderSocket.__url``, name-mangled ``_FyersOrderSocket__url``, set after construction and before
``connect``). Everything else is the SDK's own code: it
logs in with the auth code and ``appIdHash``, places and cancels orders, reads the order book, trade book, positions,
funds, profile and quotes, and receives order, trade and position updates on the order socket.

The SDK is synchronous (requests, websocket-client threads): its calls run in worker threads while the simulator
serves on the test's event loop; socket messages are collected under a ``threading.Condition`` and waited on, never
slept for. The SDK writes log files, so the test runs in ``tmp_path`` and passes it as ``log_path``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import AsyncIterator, Callable
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from fyers_apiv3 import fyersModel  # type: ignore[import-untyped]
from fyers_apiv3.FyersWebsocket import order_ws  # type: ignore[import-untyped]

from trader.market.calendar import MarketCalendar
from trader.sim import ExchangeSimulator
from trader.sim.fyers import FyersFace

from helpers import atm

pytestmark = pytest.mark.usefixtures("quiet_logs")

T0 = MarketCalendar().session_bounds(date(2026, 12, 2))[0]  # a Wednesday session's open
WAIT_S = 15.0


def stepping_wall() -> Callable[[], int]:
    """The simulator's wall clock, one second further on each read: the order-rate limit never trips by accident."""
    seconds = itertools.count(1_800_000_000)
    return lambda: next(seconds) * 1_000_000_000


def on_tick(paise: float) -> float:
    return round(paise / 5) * 5 / 100


class Inbox:
    """What the order socket's callbacks received, per callback, under one condition."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.messages: dict[str, list[Any]] = {"orders": [], "trades": [], "positions": [], "general": [],
                                               "error": [], "close": []}

    def callback(self, kind: str) -> Callable[[Any], None]:
        def receive(message: Any) -> None:
            with self.condition:
                self.messages[kind].append(message)
                self.condition.notify_all()
        return receive

    async def wait(self, predicate: Callable[[dict[str, list[Any]]], bool]) -> None:
        def block() -> bool:
            with self.condition:
                return self.condition.wait_for(lambda: predicate(self.messages), WAIT_S)
        assert await asyncio.to_thread(block), f"timed out; received {self.messages}"


@pytest.fixture
async def face(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FyersFace]:
    monkeypatch.chdir(tmp_path)  # the SDK writes its log files into the working directory unless told otherwise
    sim = ExchangeSimulator(start_ns=T0, wall_ns=stepping_wall())
    await sim.start()
    fyers_face = FyersFace(sim)
    await fyers_face.start()
    urls = fyers_face.urls()
    monkeypatch.setattr(fyersModel.Config, "API", urls["API_ROOT"])
    monkeypatch.setattr(fyersModel.Config, "DATA_API", urls["DATA_ROOT"])
    monkeypatch.setattr(order_ws.FyersOrderSocket, "_instance", None)  # the SDK keeps one instance per process
    yield fyers_face
    await fyers_face.stop()
    await sim.stop()
    for logger in list(logging.Logger.manager.loggerDict.values()):  # the SDK's file handlers into tmp_path
        for handler in list(getattr(logger, "handlers", [])):
            if isinstance(handler, logging.FileHandler) and handler.baseFilename.startswith(str(tmp_path)):
                handler.close()
                logger.removeHandler(handler)  # type: ignore[union-attr]


async def sdk_login(face: FyersFace) -> str:
    session = fyersModel.SessionModel(client_id=face.app_id, secret_key=face.secret_key,
                                      redirect_uri=face.redirect_uri, response_type="code",
                                      grant_type="authorization_code", state="sim")
    url = session.generate_authcode()
    assert url.startswith(face.urls()["API_ROOT"] + "/generate-authcode?")
    answer = await asyncio.to_thread(requests.get, url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302
    auth_code = parse_qs(urlparse(answer.headers["Location"]).query)["auth_code"][0]
    session.set_token(auth_code)
    reply = await asyncio.to_thread(session.generate_token)
    assert reply["s"] == "ok", reply
    token = reply["access_token"]
    assert isinstance(token, str) and token
    return token


async def test_sdk_logs_in_trades_and_reads_every_book(face: FyersFace, tmp_path: Path) -> None:
    sim = face.sim
    token = await sdk_login(face)
    fyers = fyersModel.FyersModel(client_id=face.app_id, token=token, is_async=False, log_path=str(tmp_path))
    contract = atm(sim)
    symbol = f"NSE:{contract.tradingsymbol}"

    profile = await asyncio.to_thread(fyers.get_profile)
    assert profile["s"] == "ok" and profile["data"]["fy_id"] == "SIM001"
    placed = await asyncio.to_thread(fyers.place_order, {
        "symbol": symbol, "qty": contract.lot_size, "type": 2, "side": 1, "productType": "INTRADAY",
        "limitPrice": 0, "stopPrice": 0, "validity": "DAY", "disclosedQty": 0, "offlineOrder": False,
        "orderTag": "sdk1"})
    assert placed["s"] == "ok" and placed["code"] == 1101, placed
    market_id = placed["id"]
    assert sim.orders[market_id].tag == "sdk1"
    await sim.advance(3)

    low = on_tick(sim.last_price(contract.instrument_token) * 0.7)
    resting = await asyncio.to_thread(fyers.place_order, {
        "symbol": symbol, "qty": contract.lot_size, "type": 1, "side": 1, "productType": "MARGIN",
        "limitPrice": low, "stopPrice": 0, "validity": "DAY", "disclosedQty": 0, "offlineOrder": False,
        "orderTag": "sdk2"})
    assert resting["s"] == "ok", resting
    modified = await asyncio.to_thread(fyers.modify_order, {"id": resting["id"], "type": 1,
                                                            "limitPrice": round(low - 0.05, 2)})
    assert modified["s"] == "ok" and modified["code"] == 1102, modified
    cancelled = await asyncio.to_thread(fyers.cancel_order, {"id": resting["id"]})
    assert cancelled["s"] == "ok" and cancelled["id"] == resting["id"], cancelled
    await sim.advance(1)
    refused = await asyncio.to_thread(fyers.cancel_order, {"id": resting["id"]})
    assert refused["s"] == "error" and refused["code"] == -99

    book = await asyncio.to_thread(fyers.orderbook)
    statuses = {row["id"]: (row["status"], row["orderTag"]) for row in book["orderBook"]}
    assert statuses == {market_id: (2, "1:sdk1"), resting["id"]: (1, "1:sdk2")}
    one = await asyncio.to_thread(fyers.orderbook, {"id": market_id})
    assert [row["id"] for row in one["orderBook"]] == [market_id]
    filtered = await asyncio.to_thread(fyers.get_orders, {"id": resting["id"]})
    assert [row["id"] for row in filtered["orderBook"]] == [resting["id"]]

    fill = sim.trades[0]
    trades = await asyncio.to_thread(fyers.tradebook)
    assert [(t["orderNumber"], t["tradedQty"], t["tradePrice"]) for t in trades["tradeBook"]] == [
        (market_id, contract.lot_size, fill["average_price"])]
    positions = await asyncio.to_thread(fyers.positions)
    [position] = positions["netPositions"]
    assert (position["symbol"], position["netQty"], position["productType"]) == (symbol, contract.lot_size,
                                                                                 "INTRADAY")
    funds = await asyncio.to_thread(fyers.funds)
    available = next(row for row in funds["fund_limit"] if row["title"] == "Available Balance")
    assert available["equityAmount"] == (await sim.broker.margins()).available / 100
    quotes = await asyncio.to_thread(fyers.quotes, {"symbols": f"{symbol},NSE:NIFTY50-INDEX"})
    assert [q["n"] for q in quotes["d"]] == [symbol, "NSE:NIFTY50-INDEX"]
    assert quotes["d"][0]["v"]["lp"] == sim.last_price(contract.instrument_token) / 100

    stranger = fyersModel.FyersModel(client_id=face.app_id, token="not-a-token", log_path=str(tmp_path))
    denied = await asyncio.to_thread(stranger.orderbook)
    assert denied["s"] == "error" and denied["code"] == -16


async def test_sdk_order_socket_receives_order_trade_and_position_updates(face: FyersFace, tmp_path: Path) -> None:
    sim = face.sim
    token = await sdk_login(face)
    fyers = fyersModel.FyersModel(client_id=face.app_id, token=token, log_path=str(tmp_path))
    inbox = Inbox()
    threads_before = set(threading.enumerate())
    socket = order_ws.FyersOrderSocket(
        access_token=f"{face.app_id}:{token}", write_to_file=False, log_path=str(tmp_path),
        on_trades=inbox.callback("trades"), on_positions=inbox.callback("positions"),
        on_orders=inbox.callback("orders"), on_general=inbox.callback("general"), on_error=inbox.callback("error"),
        on_close=inbox.callback("close"), reconnect=False)
    socket._FyersOrderSocket__url = face.urls()["ORDER_WS_URL"]  # the URL only: configuration
    await asyncio.to_thread(socket.connect)
    assert socket.is_connected()
    socket.keep_running()
    await asyncio.to_thread(socket.subscribe, "OnOrders,OnTrades,OnPositions")
    await inbox.wait(lambda m: any(g.get("code") == 1605 for g in m["general"]))
    assert face.order_socket.subscriptions() == [{"orders", "trades", "positions"}]

    contract = atm(sim)
    placed = await asyncio.to_thread(fyers.place_order, {
        "symbol": f"NSE:{contract.tradingsymbol}", "qty": contract.lot_size, "type": 2, "side": -1,
        "productType": "MARGIN", "limitPrice": 0, "stopPrice": 0, "validity": "DAY", "disclosedQty": 0,
        "offlineOrder": False, "orderTag": "ws1"})
    order_id = placed["id"]
    await sim.advance(3)
    await inbox.wait(lambda m: any(o["orders"].get("status") == 2 for o in m["orders"]) and bool(m["trades"])
                     and bool(m["positions"]))

    updates = [o["orders"] for o in inbox.messages["orders"]]
    assert all(u["id"] == order_id and u["orderTag"] == "1:ws1" for u in updates)
    assert updates[0]["status"] == 6 and updates[-1]["status"] == 2  # pending (on the book) ... traded
    assert updates[-1]["filledQty"] == contract.lot_size and updates[-1]["side"] == -1
    [trade] = [t["trades"] for t in inbox.messages["trades"]]
    assert (trade["orderNumber"], trade["tradedQty"], trade["side"]) == (order_id, contract.lot_size, -1)
    assert trade["tradePrice"] == sim.trades[0]["average_price"]
    position = inbox.messages["positions"][-1]["positions"]
    assert (position["netQty"], position["productType"]) == (-contract.lot_size, "MARGIN")
    assert inbox.messages["error"] == []

    await asyncio.to_thread(socket.close_connection)
    await inbox.wait(lambda m: bool(m["close"]))
    leaked = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()
              and not t.name.startswith("asyncio_")]  # the event loop's own executor (asyncio.to_thread) stays
    assert leaked == []  # the SDK's socket, ping and keep-running threads have all ended
