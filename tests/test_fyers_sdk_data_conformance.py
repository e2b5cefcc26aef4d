"""The OFFICIAL Fyers SDK's data socket (``fyers_apiv3.FyersWebsocket.data_ws.FyersDataSocket``) against the
simulator's HSM face (trader/sim/fyers/data_socket.py) and its /data/symbol-token and index-map routes: in full mode
(snapshot, then an update: every field the sim sent, as the SDK reports it) and in lite mode (last prices).

The SDK's code runs unchanged. Only its hard-coded addresses are redirected, by setting attributes (configuration):
the socket's URL attribute (``_FyersDataSocket__url``, name-mangled), ``SymbolConversion``'s ``symbols_token_api``
(an instance attribute its ``__init__`` sets, so the test wraps ``__init__`` to set it right after the SDK's own
``__init__`` ran) and ``defines.INDEX_HSM_MAPPING_API``; its class-level index-map cache is emptied so the map is read
from the simulator. The SDK's own threads (socket, message queue, ping) are waited on with timeouts and joined by its
``close_connection``; its ping thread sleeps 10 s between pings, so closing takes up to 10 s.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from trader.adapters.fyers.hsm_topics import INDEX_MAP
from trader.events import Tick
from trader.sim.encode import DayStats
from trader.sim.fyers.data_routes import index_map_handler, symbol_token_handler
from trader.sim.fyers.data_socket import HsmServer

from helpers import T0, wait_for

pytestmark = pytest.mark.usefixtures("quiet_logs")

INDEX, OPTION = 101000000026000, 101125120335001
INDEX_SYMBOL, OPTION_SYMBOL = "NSE:NIFTY50-INDEX", "NSE:NIFTY26D0326000CE"
LISTING = {INDEX: (INDEX_SYMBOL, str(INDEX)), OPTION: (OPTION_SYMBOL, str(OPTION))}
FY_TOKENS = {symbol: fy for symbol, fy in LISTING.values()}


def jwt(hsm_key: str) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(obj)).decode().rstrip("=")
    return f"{part({'alg': 'HS256'})}.{part({'hsm_key': hsm_key, 'exp': 4102444800})}.sig"


class Inbox:
    """What the SDK's callbacks (on its own threads) deliver, and a way to wait for it from the event loop."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.errors: list[Any] = []
        self.opened = 0
        self.cond = threading.Condition()

    def add(self, into: list[Any], item: Any) -> None:
        with self.cond:
            into.append(item)
            self.cond.notify_all()

    def on_open(self) -> None:
        with self.cond:
            self.opened += 1
            self.cond.notify_all()

    async def wait(self, predicate: Callable[[], bool], within_s: float = 10.0) -> None:
        def block() -> bool:
            with self.cond:
                return self.cond.wait_for(predicate, timeout=within_s)
        assert await asyncio.to_thread(block), f"timed out: messages={self.messages} errors={self.errors}"

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self.cond:
            return [m for m in self.messages if m.get("type") == kind]


@contextlib.asynccontextmanager
async def official_sdk_on_the_sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  lite: bool) -> AsyncIterator[tuple[HsmServer, Inbox]]:
    """The SDK connected to the sim's face and subscribed to the index and the option; closed afterwards."""
    data_ws: Any = importlib.import_module("fyers_apiv3.FyersWebsocket.data_ws")
    defines: Any = importlib.import_module("fyers_apiv3.FyersWebsocket.defines")
    token = jwt("sdk-key")
    server = HsmServer(lambda key: key == "sdk-key", LISTING.get, index_map=INDEX_MAP, ack_every=2)
    ws_url = await server.start("127.0.0.1", 0)
    app = web.Application()
    app.router.add_post("/data/symbol-token", symbol_token_handler(FY_TOKENS.get, lambda h: h == token))
    app.router.add_get("/sym_details/index_hsm_mapping.json", index_map_handler(INDEX_MAP))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    http = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    original_init = data_ws.SymbolConversion.__init__

    def redirected_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.symbols_token_api = f"{http}/data/symbol-token"

    monkeypatch.setattr(data_ws.SymbolConversion, "__init__", redirected_init)
    monkeypatch.setattr(data_ws.SymbolConversion, "_index_hsm_mapping_cache", None)
    monkeypatch.setattr(defines, "INDEX_HSM_MAPPING_API", f"{http}/sym_details/index_hsm_mapping.json")
    monkeypatch.setattr(data_ws.FyersDataSocket, "_instance", None)  # the SDK's socket is a singleton

    inbox = Inbox()
    sdk = data_ws.FyersDataSocket(access_token=f"XC1234ABCD-100:{token}", log_path=str(tmp_path), write_to_file=True,
                                  litemode=lite, reconnect=False, on_connect=inbox.on_open,
                                  on_message=lambda m: inbox.add(inbox.messages, m),
                                  on_error=lambda e: inbox.add(inbox.errors, e),
                                  on_close=lambda m: inbox.add(inbox.messages, {"type": "closed", **m}))
    sdk._FyersDataSocket__url = ws_url
    try:
        await asyncio.to_thread(sdk.connect)
        mode = "lit" if lite else "ful"
        await inbox.wait(lambda: inbox.opened == 1 and bool(inbox.of("cn")) and bool(inbox.of(mode)))
        await asyncio.to_thread(sdk.subscribe, [INDEX_SYMBOL, OPTION_SYMBOL], "SymbolUpdate")
        await inbox.wait(lambda: bool(inbox.of("sub")))
        assert server.subscriptions() == [{"if|nse_cm|Nifty 50", "sf|nse_fo|35001"}]
        yield server, inbox
    finally:
        opened = inbox.opened > 0
        await asyncio.to_thread(sdk.close_connection)
        if opened:
            await inbox.wait(lambda: bool(inbox.of("closed")))
        await server.stop()
        await runner.cleanup()
    threads = [sdk.ws_thread, sdk.message_thread, sdk.ping_thread]
    assert not any(t is not None and t.is_alive() for t in threads)


async def test_the_official_sdk_subscribes_and_receives_the_sims_ticks(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    async with official_sdk_on_the_sim(tmp_path, monkeypatch, lite=False) as (server, inbox):
        option = Tick(ts_ns=T0, instrument_token=OPTION, last_price=12345, volume=1000, oi=5000, bid=12340,
                      bid_qty=75, ask=12350, ask_qty=150, exchange_ts_ns=T0)
        index = Tick(ts_ns=T0, instrument_token=INDEX, last_price=2612355, exchange_ts_ns=T0)
        day = {INDEX: DayStats(open=2600000, high=2620000, low=2590000, close=2595000),
               OPTION: DayStats(open=12000, high=13000, low=11000, close=11500, last_quantity=75)}
        await server.publish_ticks([option, index], day)
        await inbox.wait(lambda: len(inbox.of("sf")) == 1 and len(inbox.of("if")) == 1)
        [sf], [idx] = inbox.of("sf"), inbox.of("if")
        seconds = T0 // 1_000_000_000
        assert {k: sf[k] for k in ("symbol", "ltp", "bid_price", "ask_price", "bid_size", "ask_size",
                                   "vol_traded_today", "exch_feed_time", "open_price", "high_price", "low_price",
                                   "prev_close_price", "last_traded_qty")} == {
            "symbol": OPTION_SYMBOL, "ltp": 123.45, "bid_price": 123.4, "ask_price": 123.5, "bid_size": 75,
            "ask_size": 150, "vol_traded_today": 1000, "exch_feed_time": seconds, "open_price": 120.0,
            "high_price": 130.0, "low_price": 110.0, "prev_close_price": 115.0, "last_traded_qty": 75}
        assert {k: idx[k] for k in ("symbol", "ltp", "prev_close_price", "exch_feed_time", "high_price", "low_price",
                                    "open_price")} == {
            "symbol": INDEX_SYMBOL, "ltp": 26123.55, "prev_close_price": 25950.0, "exch_feed_time": seconds,
            "high_price": 26200.0, "low_price": 25900.0, "open_price": 26000.0}

        moved = Tick(ts_ns=T0, instrument_token=OPTION, last_price=12400, volume=1075, oi=5000, bid=12395,
                     bid_qty=75, ask=12405, ask_qty=150, exchange_ts_ns=T0 + 1_000_000_000)
        await server.publish_ticks([moved], day)  # an update (85) on the snapshot: the third datafeed frame
        await inbox.wait(lambda: len(inbox.of("sf")) == 2)
        update = inbox.of("sf")[1]
        assert (update["ltp"], update["bid_price"], update["ask_price"], update["vol_traded_today"],
                update["exch_feed_time"]) == (124.0, 123.95, 124.05, 1075, seconds + 1)
        await wait_for(lambda: server.acks() == [[2]])  # the SDK acknowledges every second frame, as asked
        assert inbox.errors == []


async def test_the_official_sdk_in_lite_mode_receives_last_prices(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    async with official_sdk_on_the_sim(tmp_path, monkeypatch, lite=True) as (server, inbox):
        ticks = [Tick(ts_ns=T0, instrument_token=OPTION, last_price=12345, exchange_ts_ns=T0),
                 Tick(ts_ns=T0, instrument_token=INDEX, last_price=2612355, exchange_ts_ns=T0)]
        await server.publish_ticks(ticks)  # snapshots
        await server.publish_ticks([Tick(ts_ns=T0, instrument_token=OPTION, last_price=12400)])  # a lite record
        await inbox.wait(lambda: len(inbox.of("sf")) == 2 and len(inbox.of("if")) == 1)
        assert inbox.of("sf") == [{"ltp": 123.45, "symbol": OPTION_SYMBOL, "type": "sf"},
                                  {"ltp": 124.0, "symbol": OPTION_SYMBOL, "type": "sf"}]
        assert inbox.of("if") == [{"ltp": 26123.55, "symbol": INDEX_SYMBOL, "type": "if"}]
        await wait_for(lambda: server.acks() == [[2]])
        assert inbox.errors == []
