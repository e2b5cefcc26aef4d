"""The simulator's WebSocket, with our ticker client and a raw client on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from trader.adapters.kite.decoder import decode_frame
from trader.adapters.kite.ticker import KiteTicker
from trader.clock import SimClock
from trader.events import Tick
from trader.sim.ticker import TickerServer

from helpers import wait_for

pytestmark = pytest.mark.usefixtures("quiet_logs")

T = 1_795_151_700 * 1_000_000_000
OPTION = 1_000_000 << 8 | 2
INDEX = 256_265


def ticks() -> list[Tick]:
    return [Tick(ts_ns=T, instrument_token=INDEX, last_price=2_600_050, exchange_ts_ns=T),
            Tick(ts_ns=T, instrument_token=OPTION, last_price=10_005, volume=650, bid=10_000, bid_qty=650,
                 ask=10_010, ask_qty=130, exchange_ts_ns=T)]


@contextlib.asynccontextmanager
async def server(**kwargs: float) -> AsyncIterator[tuple[TickerServer, str]]:
    sim = TickerServer(lambda key, token: (key, token) == ("key", "good"), **kwargs)
    url = await sim.start()
    try:
        yield sim, url
    finally:
        await sim.stop()



async def test_modes_are_per_token_and_idempotent_and_quote_is_the_default() -> None:
    async with server() as (sim, url), connect(f"{url}?api_key=key&access_token=good") as ws:
        await ws.send(orjson.dumps({"a": "subscribe", "v": [INDEX, OPTION]}).decode())
        await ws.send(orjson.dumps({"a": "subscribe", "v": [OPTION]}).decode())  # again: harmless
        await ws.send(orjson.dumps({"a": "mode", "v": ["full", [OPTION]]}).decode())
        await wait_for(lambda: sim.subscriptions() == [{INDEX: "quote", OPTION: "full"}])
        await sim.publish_ticks(ticks())
        frame = await ws.recv()
        assert isinstance(frame, bytes)
        decoded = decode_frame(frame, received_ns=T).ticks
        assert [(t.instrument_token, t.last_price) for t in decoded] == [(INDEX, 2_600_050), (OPTION, 10_005)]
        assert decoded[1].bid == 10_000 and decoded[1].ask_qty == 130  # full mode carries depth
        await ws.send(orjson.dumps({"a": "unsubscribe", "v": [INDEX]}).decode())
        await ws.send(orjson.dumps({"a": "mode", "v": ["ltp", [OPTION]]}).decode())
        await wait_for(lambda: sim.subscriptions() == [{OPTION: "ltp"}])
        await sim.publish_ticks(ticks())
        frame = await ws.recv()
        assert len(frame) == 2 + 2 + 8  # one ltp packet
        await ws.send("garbage")
        error = orjson.loads(await ws.recv())
        assert error["type"] == "error"


async def test_heartbeats_when_idle_and_orders_as_text() -> None:
    async with server(heartbeat_s=0.05) as (sim, url), connect(f"{url}?api_key=key&access_token=good") as ws:
        assert await asyncio.wait_for(ws.recv(), timeout=2) == b"\x00"
        await sim.publish_order({"order_id": "1", "status": "COMPLETE"})
        while (message := await asyncio.wait_for(ws.recv(), timeout=2)) == b"\x00":
            pass
        assert orjson.loads(message) == {"type": "order", "data": {"order_id": "1", "status": "COMPLETE"}}


async def test_bad_credentials_get_403() -> None:
    async with server() as (_, url):
        with pytest.raises(InvalidStatus) as caught:
            async with connect(f"{url}?api_key=key&access_token=bad"):
                pass
        assert caught.value.response.status_code == 403


async def test_our_client_survives_a_simulated_drop_and_resubscribes() -> None:
    async with server(heartbeat_s=0.1) as (sim, url):
        client = KiteTicker("key", "good", [OPTION], clock=SimClock(T), root=url, mode="full",
                            initial_backoff_s=0.01, max_backoff_s=0.05)
        received: list[Tick] = []

        async def consume() -> None:
            async for batch in client.stream():
                received.extend(batch)

        task = asyncio.create_task(consume())
        try:
            await wait_for(lambda: sim.subscriptions() == [{OPTION: "full"}])
            await sim.publish_ticks(ticks())
            await wait_for(lambda: len(received) == 1)
            await sim.drop_connections()
            # The old connection must be gone and the new one subscribed before the next tick is worth sending.
            await wait_for(lambda: client.reconnects == 1 and sim.clients == 1
                           and sim.subscriptions() == [{OPTION: "full"}] and client.subscriptions_sent == 2)
            await sim.publish_ticks(ticks())
            await wait_for(lambda: len(received) == 2)
        finally:
            await client.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert [t.instrument_token for t in received] == [OPTION, OPTION]  # the index was never subscribed
