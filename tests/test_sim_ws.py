"""The simulator's WebSocket half, integrated: ticks and order postbacks as our client and the official one see them.

The market moves only through ``sim.advance`` (one synthetic tick interval at a time), and heartbeats are slowed
down, so every binary frame the simulator sends is one tick batch: a test waits until the client has received as
many frames as the simulator sent, then compares what was decoded with what the book says at that moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sys
from collections.abc import AsyncIterator, Callable
from datetime import date
from typing import Any
from urllib.parse import parse_qs, urlparse

import aiohttp
import pytest

from trader.adapters.kite.ticker import KiteTicker
from trader.events import Tick
from trader.market.calendar import MarketCalendar
from trader.market.instruments import OptionType
from trader.sim import ExchangeSimulator

from helpers import FIXTURES, atm, wait_for

pytestmark = pytest.mark.usefixtures("quiet_logs")

SESSION_DAY = date(2026, 12, 2)  # a Wednesday
T0 = MarketCalendar().session_bounds(SESSION_DAY)[0]
POSTBACK_FIXTURE = FIXTURES / "postback.json"
POSTBACK_KEYS = {
    "user_id", "app_id", "checksum", "placed_by", "order_id", "exchange_order_id", "parent_order_id", "status",
    "status_message", "status_message_raw", "order_timestamp", "exchange_update_timestamp", "exchange_timestamp",
    "variety", "exchange", "tradingsymbol", "instrument_token", "order_type", "transaction_type", "validity",
    "product", "quantity", "disclosed_quantity", "price", "trigger_price", "average_price", "filled_quantity",
    "pending_quantity", "unfilled_quantity", "cancelled_quantity", "market_protection", "meta", "tag", "guid"}


@pytest.fixture
async def sim() -> AsyncIterator[ExchangeSimulator]:
    simulator = ExchangeSimulator(start_ns=T0, ws_heartbeat_s=60.0)  # no heartbeats: every frame is a batch
    await simulator.start()
    yield simulator
    await simulator.stop()


async def access_token(sim: ExchangeSimulator, http: aiohttp.ClientSession) -> str:
    """Kite's login flow against the simulator: the redirect's request_token, exchanged with its checksum."""
    async with http.get(f"{sim.base_url}/connect/login", params={"api_key": sim.api_key, "v": "3"},
                        allow_redirects=False) as answer:
        assert answer.status == 302
        request_token = parse_qs(urlparse(answer.headers["Location"]).query)["request_token"][0]
    checksum = hashlib.sha256((sim.api_key + request_token + sim.api_secret).encode()).hexdigest()
    async with http.post(f"{sim.base_url}/session/token", headers={"X-Kite-Version": "3"},
                         data={"api_key": sim.api_key, "request_token": request_token, "checksum": checksum}) as answer:
        body = await answer.json()
    token: str = body["data"]["access_token"]
    return token




async def test_our_client_gets_the_books_ticks_and_postbacks_for_a_rest_order(sim: ExchangeSimulator) -> None:
    index = sim.market.index.instrument_token
    option = atm(sim)
    orders: list[dict[str, Any]] = []
    received: list[Tick] = []
    async with aiohttp.ClientSession() as http:
        token = await access_token(sim, http)
        client = KiteTicker(sim.api_key, token, [index, option.instrument_token], clock=sim.clock, root=sim.ws_url,
                            mode="full", on_order=orders.append, silence_timeout_s=30)

        async def consume() -> None:
            async for batch in client.stream():
                received.extend(batch)

        task = asyncio.create_task(consume())
        try:
            subscribed = {index: "full", option.instrument_token: "full"}
            await wait_for(lambda: sim.ticker.subscriptions() == [subscribed])
            seen: set[int] = set()
            for _ in range(5):
                await sim.advance(1)
                await wait_for(lambda: client.frames == sim.ticker.frames_sent)
                latest = {t.instrument_token: t for t in received}
                for tok, tick in latest.items():
                    book = sim.book_tick(tok)
                    assert book is not None
                    assert tick.last_price == sim.last_price(tok) == book.last_price
                    if tok == option.instrument_token:
                        assert (tick.bid, tick.bid_qty, tick.ask, tick.ask_qty, tick.volume) == \
                               (book.bid, book.bid_qty, book.ask, book.ask_qty, book.volume)
                seen |= set(latest)
                received.clear()
            assert seen == {index, option.instrument_token}

            # An order placed over REST reaches the client as postbacks, ending COMPLETE.
            headers = {"X-Kite-Version": "3", "Authorization": f"token {sim.api_key}:{token}"}
            form = {"exchange": option.exchange, "tradingsymbol": option.tradingsymbol, "transaction_type": "BUY",
                    "quantity": str(2 * option.lot_size), "product": "NRML", "order_type": "MARKET",
                    "market_protection": "-1", "tag": "wstest"}
            async with http.post(f"{sim.base_url}/orders/regular", data=form, headers=headers) as answer:
                order_id = (await answer.json())["data"]["order_id"]
            await sim.advance(3)
            await wait_for(lambda: any(o["status"] == "COMPLETE" for o in orders))
        finally:
            await client.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    mine = [o for o in orders if o["order_id"] == order_id]
    assert [o["status"] for o in mine][:3] == ["PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING"]
    assert mine[-1]["status"] == "COMPLETE"
    booked = sim.orders[order_id]
    final = mine[-1]
    assert final["filled_quantity"] == booked.filled == 2 * option.lot_size
    assert final["average_price"] == booked.average_price > 0
    assert (final["pending_quantity"], final["unfilled_quantity"], final["cancelled_quantity"]) == (0, 0, 0)
    assert final["tag"] == "wstest" and final["instrument_token"] == option.instrument_token
    assert final["checksum"] == hashlib.sha256(
        (order_id + final["order_timestamp"] + sim.api_secret).encode()).hexdigest()
    assert POSTBACK_KEYS <= set(final) and final["meta"] == {}
    if POSTBACK_FIXTURE.exists():
        assert set(json.loads(POSTBACK_FIXTURE.read_text())) <= set(final)
    assert len({o["guid"] for o in mine}) == len(mine)  # each postback is its own event


async def test_ws_refuses_unknown_tokens_and_drops_on_demand(sim: ExchangeSimulator) -> None:
    index = sim.market.index.instrument_token
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{sim.ws_url}?api_key={sim.api_key}&access_token=nope")
        assert refused.value.status == 403
        token = await access_token(sim, http)
        client = KiteTicker(sim.api_key, token, [index], clock=sim.clock, root=sim.ws_url, mode="ltp",
                            silence_timeout_s=30, initial_backoff_s=0.05)

        async def consume() -> None:
            async for _ in client.stream():
                pass

        task = asyncio.create_task(consume())
        try:

            def resubscribed(times: int) -> Callable[[], bool]:  # the old connection gone, the new one subscribed
                return lambda: (client.subscriptions_sent == times and sim.ticker.clients == 1
                                and sim.ticker.subscriptions() == [{index: "ltp"}])

            await wait_for(resubscribed(1))
            await sim.drop_websockets()
            await wait_for(resubscribed(2))
            assert client.reconnects == 1
            sim.ws_drop_every_s = 2  # simulated seconds
            await sim.advance(3)
            await wait_for(resubscribed(3))
            assert client.reconnects == 2
        finally:
            await client.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


OFFICIAL_CLIENT = r"""
import json, os, sys, threading
from kiteconnect import KiteTicker

api_key, access_token, root = sys.argv[1:4]
ltp_token, quote_token, full_token = (int(v) for v in sys.argv[4:7])
threading.Timer(20, lambda: os._exit(3)).start()  # never outlive the test
seen = set()
kws = KiteTicker(api_key, access_token, root=root)

def on_connect(ws, response):
    ws.subscribe([ltp_token, quote_token, full_token])
    ws.set_mode(ws.MODE_LTP, [ltp_token])
    ws.set_mode(ws.MODE_QUOTE, [quote_token])
    ws.set_mode(ws.MODE_FULL, [full_token])
    print("CONNECTED", flush=True)

def on_ticks(ws, ticks):
    print(json.dumps(ticks, default=str), flush=True)  # one line per frame
    seen.update(t["mode"] for t in ticks)
    if seen >= {"ltp", "quote", "full"}:
        print("DONE", flush=True)
        os._exit(0)

kws.on_connect = on_connect
kws.on_ticks = on_ticks
kws.connect()
"""


async def test_official_twisted_ticker_gets_all_three_modes_with_the_books_values(sim: ExchangeSimulator) -> None:
    index = sim.market.index.instrument_token
    quote_option, full_option = atm(sim, OptionType.CE), atm(sim, OptionType.PE)
    async with aiohttp.ClientSession() as http:
        token = await access_token(sim, http)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", OFFICIAL_CLIENT, sim.api_key, token, sim.ws_url, str(index),
        str(quote_option.instrument_token), str(full_option.instrument_token),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    lines: list[str] = []

    async def read() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            lines.append(raw.decode().strip())

    reader = asyncio.create_task(read())
    try:
        expected = {index: "ltp", quote_option.instrument_token: "quote", full_option.instrument_token: "full"}
        await wait_for(lambda: "CONNECTED" in lines and sim.ticker.subscriptions() == [expected], within_s=15)
        modes_seen: set[str] = set()
        for _ in range(10):
            await sim.advance(1)
            frames = sim.ticker.frames_sent
            await wait_for(lambda: sum(1 for line in lines if line.startswith("[")) == frames)
            frame = json.loads(next(line for line in reversed(lines) if line.startswith("[")))
            stats = sim.day_stats(expected)
            for tick in frame:
                tok = tick["instrument_token"]
                assert tick["mode"] == expected[tok]
                assert round(tick["last_price"] * 100) == sim.last_price(tok)
                book = sim.book_tick(tok)
                assert book is not None
                if tick["mode"] != "ltp":
                    day = stats[tok]
                    assert [round(tick["ohlc"][k] * 100) for k in ("open", "high", "low", "close")] == \
                           [day.open, day.high, day.low, day.close]
                    assert tick["volume_traded"] == book.volume
                if tick["mode"] == "full":
                    assert len(tick["depth"]["buy"]) == len(tick["depth"]["sell"]) == 5
                    best_bid, best_ask = tick["depth"]["buy"][0], tick["depth"]["sell"][0]
                    assert (round(best_bid["price"] * 100), best_bid["quantity"]) == (book.bid, book.bid_qty)
                    assert (round(best_ask["price"] * 100), best_ask["quantity"]) == (book.ask, book.ask_qty)
                assert tick["tradable"] is (tok != index)
                modes_seen.add(tick["mode"])
            if "DONE" in lines:
                break
        assert modes_seen == {"ltp", "quote", "full"}
        assert "DONE" in lines
        assert await asyncio.wait_for(proc.wait(), 5) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
