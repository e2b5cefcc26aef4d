"""Issue #8, found by fault injection (item 4): implausible exchange timestamps and prices never reach the daemon.

One index packet stamped 2³²−1 seconds (2106) used to move the ExchangeClock there for the rest of the run. Now an
exchange timestamp further than the tolerance from the exchange clock is dropped and counted (stale or invalid),
logged once per kind with rate limiting, and never moves the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve

from trader.actors.feed import FeedActor
from trader.adapters.kite.ticker import KiteTicker
from trader.builders import build_clock
from trader.bus import EventBus
from trader.clock import EXCHANGE_JUMP_CONFIRMATIONS, NS_PER_SECOND, ExchangeClock
from trader.config import load_settings
from trader.events import Tick
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import IndexInstrument
from trader.sim.encode import encode_frame, encode_packet

from helpers import captured_logs, wait_for

pytestmark = pytest.mark.usefixtures("quiet_logs")

INDEX_TOKEN = 256265
MINUTE = 60 * NS_PER_SECOND
YEAR_2106 = (2**32 - 1) * NS_PER_SECOND  # the largest exchange timestamp a packet can carry


def index_packet(exchange_ts_ns: int, price: int = 2_600_000) -> bytes:
    tick = Tick(ts_ns=exchange_ts_ns, instrument_token=INDEX_TOKEN, last_price=price, exchange_ts_ns=exchange_ts_ns)
    return encode_packet(tick, "full", index=True)


def master() -> InstrumentMaster:
    instruments = InstrumentMaster()
    instruments.add_index(IndexInstrument(exchange="NSE", tradingsymbol="NIFTY 50", name="NIFTY",
                                          instrument_token=INDEX_TOKEN, tick_size=5))
    return instruments


@contextlib.asynccontextmanager
async def kite_playing(frames: list[bytes]) -> AsyncIterator[str]:
    """A WebSocket server on 127.0.0.1 that takes the subscription and sends ``frames``, one message each."""

    async def handler(connection: ServerConnection) -> None:
        for _ in range(2):  # subscribe, then mode
            await connection.recv()
        for message in frames:
            await connection.send(message)
        await connection.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1] if server.sockets else 0
        yield f"ws://127.0.0.1:{port}"


async def test_one_index_packet_stamped_2106_neither_moves_the_exchange_clock_nor_reaches_the_bus() -> None:
    clock = ExchangeClock()
    wall = time.time_ns()
    clock.observe(wall)  # provisioning's /quote set the clock (the real exchange: wall time)
    frames = [encode_frame([index_packet(wall)]), encode_frame([index_packet(YEAR_2106)]),
              encode_frame([index_packet(wall + NS_PER_SECOND)])]
    bus = EventBus()
    published: list[Tick] = []
    bus.tap(lambda event: published.append(event) if isinstance(event, Tick) else None)
    async with kite_playing(frames) as root:
        ticker = KiteTicker("key", "token", [INDEX_TOKEN], clock=clock, root=root, initial_backoff_s=0.01)
        feed = FeedActor(bus, ticker, master(), clock)
        task = asyncio.create_task(feed.run())
        try:
            await wait_for(lambda: feed.ticks_in + feed.invalid + feed.stale >= 3)
        finally:
            await ticker.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert clock.now_ns() < time.time_ns() + MINUTE, "the 2106 stamp moved the exchange clock"
    assert [t.exchange_ts_ns // NS_PER_SECOND for t in published] == [wall // NS_PER_SECOND,
                                                                     wall // NS_PER_SECOND + 1]
    assert all(t.ts_ns < time.time_ns() + MINUTE for t in published)
    assert (feed.ticks_in, feed.invalid, feed.stale) == (2, 1, 0)


def test_the_clock_refuses_lone_stamps_beyond_the_tolerance_and_follows_a_confirmed_jump() -> None:
    clock = ExchangeClock(tolerance_ns=10 * MINUTE)
    wall = time.time_ns()
    assert clock.observe(wall - 3 * 86_400 * NS_PER_SECOND)  # a simulator's session three days ago sets the clock
    session = clock.now_ns()
    for _ in range(EXCHANGE_JUMP_CONFIRMATIONS - 1):
        assert not clock.observe(YEAR_2106)  # even repeated, below the confirmation count it is refused
        assert clock.now_ns() < session + MINUTE
    assert not clock.observe(session + 2 * MINUTE - 3_600 * NS_PER_SECOND)  # an hour behind: stale, refused
    assert clock.problem(session - 3_600 * NS_PER_SECOND) == "stale"
    assert clock.problem(YEAR_2106) == "future"
    assert clock.problem(session + MINUTE) == ""
    assert clock.observe(session + MINUTE)  # within the tolerance: followed at once
    # A simulator at 120x that ran 40 minutes ahead during a reconnect: followed once the stamps agree.
    jumped = clock.now_ns() + 40 * MINUTE
    moved = [clock.observe(jumped + i * NS_PER_SECOND) for i in range(EXCHANGE_JUMP_CONFIRMATIONS)]
    assert moved == [False] * (EXCHANGE_JUMP_CONFIRMATIONS - 1) + [True]
    assert clock.now_ns() >= jumped
    assert clock.jumps == 1 and clock.refused == EXCHANGE_JUMP_CONFIRMATIONS * 2 - 1


def test_a_stamp_between_two_refused_ones_restarts_the_confirmation() -> None:
    clock = ExchangeClock(tolerance_ns=10 * MINUTE)
    clock.observe(time.time_ns())
    for _ in range(4):
        assert not clock.observe(YEAR_2106)
        assert not clock.observe(clock.now_ns())  # a good stamp in between: the corrupt ones never add up
    assert clock.now_ns() < time.time_ns() + MINUTE


async def test_stale_and_future_ticks_are_dropped_counted_and_logged_once_per_kind() -> None:
    clock = ExchangeClock(tolerance_ns=10 * MINUTE)
    wall = time.time_ns()
    clock.observe(wall)

    class Market:
        async def start(self, instruments: InstrumentMaster) -> None:
            return None

        async def stream(self) -> AsyncIterator[list[Tick]]:
            now = clock.now_ns()
            yield [Tick(ts_ns=now, instrument_token=INDEX_TOKEN, last_price=2_600_000, exchange_ts_ns=ts)
                   for ts in [wall - 20 * MINUTE] * 5 + [YEAR_2106] * 5 + [wall]]
            yield [Tick(ts_ns=now, instrument_token=INDEX_TOKEN, last_price=price, exchange_ts_ns=wall)
                   for price in (0, -5, 2_600_005)]

        async def close(self) -> None:
            return None

    bus = EventBus()
    published: list[Tick] = []
    bus.tap(lambda event: published.append(event) if isinstance(event, Tick) else None)
    feed = FeedActor(bus, Market(), master(), clock)
    with captured_logs("WARNING") as lines:
        await feed.run()
    assert [t.last_price for t in published] == [2_600_000, 2_600_005]
    assert (feed.ticks_in, feed.stale, feed.invalid) == (2, 5, 5 + 2)
    kinds = [line["kind"] for line in lines if line["event"] in ("tick_stale", "tick_invalid")]
    assert kinds == ["exchange_time_stale", "exchange_time_future", "price_not_positive"]
    assert clock.now_ns() < time.time_ns() + MINUTE


def test_the_tolerance_is_a_setting(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings({"mode": "live", "data_dir": str(tmp_path), "exchange_time_tolerance_seconds": 120,
                              "kite": {"api_key": "k", "access_token": "t"}})
    clock = build_clock(settings, 0)
    assert isinstance(clock, ExchangeClock) and clock.tolerance_ns == 120 * NS_PER_SECOND
    assert ExchangeClock().tolerance_ns == 600 * NS_PER_SECOND


def test_a_first_stamp_far_from_wall_time_is_refused() -> None:
    """Review finding 8: the first stamp had nothing to be compared with; 2106 in the first packet set the clock."""
    clock = ExchangeClock(tolerance_ns=10 * MINUTE)
    assert not clock.observe(YEAR_2106)
    assert clock.now_ns() < time.time_ns() + MINUTE
    assert clock.observe(time.time_ns() - 30 * 86_400 * NS_PER_SECOND)  # a rehearsal a month back still works
