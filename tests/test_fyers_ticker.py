"""Our Fyers data-socket client (trader/adapters/fyers/ticker.py) against the simulator's HSM face
(trader/sim/fyers/data_socket.py) on 127.0.0.1, and /symbol-token through the sim's route."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import date
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from websockets.asyncio.server import ServerConnection, serve

from trader.adapters.fyers import hsm
from trader.adapters.fyers.hsm_topics import INDEX_MAP
from trader.adapters.fyers.ticker import FyersDataSocket, SymbolTokenError, fetch_fy_tokens, fetch_index_map
from trader.adapters.ports import VenueMarket
from trader.clock import ExchangeClock, SimClock
from trader.events import FeedStatus, Tick, VenueStatus
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import OptionContract, OptionType
from trader.sim.encode import DayStats
from trader.sim.fyers.data_routes import index_map_handler, symbol_token_handler
from trader.sim.fyers.data_socket import HsmServer

from helpers import T0, wait_for

pytestmark = pytest.mark.usefixtures("quiet_logs")

INDEX, OPTION = 101000000026000, 101125120335001
LISTING = {INDEX: ("NSE:NIFTY50-INDEX", str(INDEX)), OPTION: ("NSE:NIFTY26D0326000CE", str(OPTION))}
SEC = 1_000_000_000


def jwt(hsm_key: str) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(obj)).decode().rstrip("=")
    return f"{part({'alg': 'HS256'})}.{part({'hsm_key': hsm_key, 'exp': 4102444800})}.sig"


GOOD, DEAD = jwt("good-key"), jwt("dead-key")


@contextlib.asynccontextmanager
async def sim(**options: Any) -> AsyncIterator[tuple[HsmServer, str]]:
    server = HsmServer(lambda key: key == "good-key", LISTING.get, index_map=INDEX_MAP, **options)
    url = await server.start("127.0.0.1", 0)
    try:
        yield server, url
    finally:
        await server.stop()


class Collector:
    def __init__(self, client: FyersDataSocket) -> None:
        self.client = client
        self.ticks: list[Tick] = []
        self.events: list[object] = []
        client.attach(self.events.append)
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for batch in self.client.stream():
            self.ticks.extend(batch)

    async def close(self) -> None:
        await self.client.close()
        await asyncio.wait_for(self.task, timeout=5)


def client(url: str, token: str = GOOD, **options: Any) -> FyersDataSocket:
    return FyersDataSocket(token, [INDEX, OPTION], clock=SimClock(T0), symbols={INDEX: "NSE:NIFTY50-INDEX"}, url=url,
                           initial_backoff_s=0.01, max_backoff_s=0.05, **options)


OPTION_TICK = Tick(ts_ns=T0, instrument_token=OPTION, last_price=12345, volume=1000, oi=5000, bid=12340, bid_qty=75,
                   ask=12350, ask_qty=150, exchange_ts_ns=T0)
INDEX_TICK = Tick(ts_ns=T0, instrument_token=INDEX, last_price=2612355, exchange_ts_ns=T0)
BOTH = {"sf|nse_fo|35001", "if|nse_cm|Nifty 50"}


def same(got: Tick, sent: Tick) -> bool:
    return got == dataclasses.replace(sent, ts_ns=got.ts_ns, tick_id=got.tick_id)


async def test_subscribes_and_decodes_ticks_exactly_then_updates() -> None:
    async with sim() as (server, url):
        c = Collector(client(url))
        await wait_for(lambda: server.subscriptions() == [BOTH])
        day = {OPTION: DayStats(open=12000, close=11000)}
        await server.publish_ticks([OPTION_TICK, INDEX_TICK], day)
        await wait_for(lambda: len(c.ticks) == 2)
        assert same(c.ticks[0], OPTION_TICK) and same(c.ticks[1], INDEX_TICK)
        moved = dataclasses.replace(OPTION_TICK, last_price=12400, bid=12395, ask=12405, volume=1075,
                                    exchange_ts_ns=T0 + SEC)
        await server.publish_ticks([OPTION_TICK], day)  # unchanged: nothing to report
        await server.publish_ticks([moved], day)
        await wait_for(lambda: len(c.ticks) == 3)
        assert same(c.ticks[2], moved) and [t.tick_id for t in c.ticks] == [1, 2, 3]
        assert (c.client.malformed, c.client.invalid) == (0, 0)
        assert isinstance(c.events[0], FeedStatus) and c.events[0].status == "connected"
        await c.close()


async def test_depth_gives_bid_and_ask_and_acks_follow_the_cadence() -> None:
    async with sim(ack_every=2) as (server, url):
        c = Collector(client(url, depth=True))
        await wait_for(lambda: server.subscriptions() == [BOTH | {"dp|nse_fo|35001"}])
        for step in range(4):
            await server.publish_ticks([dataclasses.replace(OPTION_TICK, last_price=12345 + 5 * step,
                                                            bid=12340 + 5 * step)])
        await wait_for(lambda: server.acks() == [[2, 4]])
        assert c.client.acks_sent == 2
        assert c.ticks[-1].bid == 12355 and c.ticks[-1].last_price == 12360 and c.ticks[-1].ask_qty == 150
        await c.close()


async def test_reconnects_and_resubscribes_after_a_dropped_connection() -> None:
    async with sim() as (server, url):
        c = Collector(client(url))
        await wait_for(lambda: server.subscriptions() == [BOTH])
        await server.publish_ticks([OPTION_TICK])
        await wait_for(lambda: len(c.ticks) == 1)
        await server.drop_connections()
        await wait_for(lambda: c.client.reconnects == 1 and server.subscriptions() == [BOTH])
        await server.publish_ticks([INDEX_TICK])
        await wait_for(lambda: len(c.ticks) == 2)
        assert same(c.ticks[1], INDEX_TICK)
        statuses = [e.status for e in c.events if isinstance(e, FeedStatus)]
        assert statuses == ["connected", "reconnecting", "connected"]
        await c.close()


async def test_a_refused_token_is_reported_once_and_a_new_one_connects() -> None:
    rejected: list[tuple[str, str]] = []
    async with sim() as (server, url):
        c = Collector(client(url, DEAD, on_token_rejected=lambda t, why: rejected.append((t, why))))
        await wait_for(lambda: c.client.waiting_for_token)
        assert [t for t, _ in rejected] == [DEAD] and "refused" in rejected[0][1]
        assert server.refused_auths == 1 and c.client.reconnects == 0
        c.client.set_access_token(GOOD)
        await wait_for(lambda: server.subscriptions() == [BOTH])
        await server.publish_ticks([OPTION_TICK])
        await wait_for(lambda: len(c.ticks) == 1)
        assert len(rejected) == 1
        await c.close()


async def test_a_garbled_frame_or_record_reconnects_for_fresh_snapshots_never_a_stale_price() -> None:
    # Review of #12: a garbled update was skipped and the topic kept its last price, so a later volume-only update
    # published 100.00 as current although the lost update had moved it to 120.00. Now anything unreadable ends the
    # connection; the next one starts from fresh snapshots.
    snapshot = hsm.Snapshot(1, "sf|nse_fo|35001", (10000,), 1, 2, "NSE", "35001", "NSE:X")
    garbles: list[Callable[[bytes], bytes]] = [
        lambda good: good[:-3],  # a truncated frame
        lambda good: hsm.encode_response(hsm.DataFeed(2, (hsm.Update(9, (1,)),))),  # an update for no snapshot
    ]
    connections: list[int] = []

    async def handler(connection: ServerConnection) -> None:
        connections.append(1)
        await connection.recv()
        await connection.send(hsm.encode_response(hsm.AuthResponse(True)))
        await connection.recv()  # mode
        await connection.recv()  # subscribe
        n = len(connections)
        if n <= len(garbles):  # a snapshot at 100.00, then something unreadable (that moved it to 120.00)
            good = hsm.encode_response(hsm.DataFeed(1, (snapshot,)))
            await connection.send(good)
            await connection.send(garbles[n - 1](hsm.encode_response(hsm.DataFeed(2, (
                hsm.Update(1, (12000,)),)))))
        else:
            await connection.send(hsm.encode_response(hsm.DataFeed(1, (dataclasses.replace(snapshot, values=(
                12000,)),))))
        await connection.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1] if server.sockets else 0
        c = Collector(client(f"ws://127.0.0.1:{port}"))
        await wait_for(lambda: len(c.ticks) == 3)
        assert [t.last_price for t in c.ticks] == [10000, 10000, 12000]  # each from a snapshot, none stale
        assert c.client.malformed == 2 and c.client.reconnects == 2 and len(connections) == 3
        await c.close()


async def test_tokens_need_a_symbol_unless_they_are_options() -> None:
    t: VenueMarket = FyersDataSocket(GOOD, [INDEX, OPTION, 121125120400011], clock=SimClock(T0), url="ws://unused")
    assert isinstance(t, FyersDataSocket)
    assert t.topics() == {"sf|nse_fo|35001": OPTION, "sf|bse_fo|00011": 121125120400011}
    assert t.unsubscribable == [INDEX]
    with pytest.raises(ValueError, match="5000"):
        FyersDataSocket(GOOD, range(1, 5002), clock=SimClock(T0))


async def test_symbol_tokens_through_the_sims_route() -> None:
    app = web.Application()
    fy_tokens = {symbol: fy for symbol, fy in LISTING.values()}
    app.router.add_post("/data/symbol-token", symbol_token_handler(fy_tokens.get, lambda h: h == GOOD))
    app.router.add_get("/index_hsm_mapping.json", index_map_handler(INDEX_MAP))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    root = f"http://127.0.0.1:{port}/data"
    try:
        async with aiohttp.ClientSession() as session:
            valid, invalid = await fetch_fy_tokens(session, root, GOOD, ["NSE:NIFTY50-INDEX", "NSE:NOPE"])
            assert valid == {"NSE:NIFTY50-INDEX": str(INDEX)} and invalid == ["NSE:NOPE"]
            with pytest.raises(SymbolTokenError, match="Could not authenticate"):
                await fetch_fy_tokens(session, root, DEAD, ["NSE:NIFTY50-INDEX"])
            assert await fetch_index_map(session, f"http://127.0.0.1:{port}/index_hsm_mapping.json") == INDEX_MAP
            with pytest.raises(SymbolTokenError, match="HTTP 405 with no JSON"):
                await fetch_index_map(session, f"http://127.0.0.1:{port}/data/symbol-token")
    finally:
        await runner.cleanup()


async def test_a_silent_connection_is_reported_and_replaced_but_ping_answers_keep_it_alive() -> None:
    async with sim() as (_server, url):
        quiet = Collector(client(url, silence_timeout_s=0.2, ping_interval_s=60))
        await wait_for(lambda: quiet.client.silences >= 1 and quiet.client.reconnects >= 1)
        assert "silent" in [e.status for e in quiet.events if isinstance(e, FeedStatus)]
        await quiet.close()
        pinged = Collector(client(url, silence_timeout_s=0.5, ping_interval_s=0.05))
        await wait_for(lambda: pinged.client.heartbeats >= 15)  # the sim answers each ping: 0.75 s, no silence
        assert (pinged.client.silences, pinged.client.reconnects) == (0, 0)
        await pinged.close()


async def test_a_venue_down_past_the_bound_is_reported_and_its_return_too() -> None:
    server = HsmServer(lambda key: key == "good-key", LISTING.get)
    url = await server.start("127.0.0.1", 0)
    await server.stop()  # nobody listens on the port now
    c = Collector(client(url, unreachable_after_s=0.2))
    await wait_for(lambda: c.client.unreachable)
    port = int(url.rsplit(":", 1)[1])
    await server.start("127.0.0.1", port)
    try:
        await wait_for(lambda: not c.client.unreachable and server.subscriptions() == [BOTH])
        venue = [(e.ok, e.problem) for e in c.events if isinstance(e, VenueStatus)]
        assert venue == [(False, "broker_unreachable"), (True, "broker_unreachable")]
        await c.close()
    finally:
        await server.stop()


async def test_ticks_follow_the_exchange_clock_and_contracts_come_from_the_master() -> None:
    contract = OptionContract(exchange="NFO", tradingsymbol="NIFTY26D0326000CE", underlying="NIFTY",
                              expiry=date(2026, 12, 3), strike=2_600_000, option_type=OptionType.CE, lot_size=75,
                              tick_size=5, instrument_token=OPTION)
    master = InstrumentMaster()
    master.add(contract)
    clock = ExchangeClock()
    async with sim() as (server, url):
        t = FyersDataSocket(GOOD, [OPTION], clock=clock, url=url, initial_backoff_s=0.01)
        await t.start(master)
        assert t._symbols == {OPTION: "NSE:NIFTY26D0326000CE"}
        c = Collector(t)
        await wait_for(lambda: server.subscriptions() == [{"sf|nse_fo|35001"}])
        await server.publish_ticks([OPTION_TICK])  # stamped T0 (Nov 2026): the exchange's clock, not the machine's
        await wait_for(lambda: len(c.ticks) == 1)
        assert abs(c.ticks[0].ts_ns - T0) < 60 * SEC and c.ticks[0].exchange_ts_ns == T0
        await c.close()
