"""The Kite ticker client against a WebSocket server started by the test on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import struct
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, TypedDict, Unpack

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from trader.adapters.kite.ticker import KiteTicker, Mode
from trader.clock import SimClock
from trader.events import FeedStatus, Tick
from trader.market.calendar import IST, MarketCalendar

from helpers import FIXTURES, T0, wait_for

pytestmark = pytest.mark.usefixtures("quiet_logs")

FULL_PACKET = base64.b64decode((FIXTURES / "ticker_full.packet").read_text())  # base64 of one packet


def frame(*packets: bytes) -> bytes:
    return struct.pack(">H", len(packets)) + b"".join(struct.pack(">H", len(p)) + p for p in packets)


class FakeKite:
    """Accepts the client, records its messages, and plays a script of frames per connection."""

    def __init__(self, scripts: list[list[bytes | str | float | None]]) -> None:
        self.scripts = scripts
        self.connections = 0
        self.received: list[list[dict[str, object]]] = []
        self.queries: list[str] = []

    def check(self, connection: ServerConnection, request: Request) -> Response | None:
        self.queries.append(request.path)
        if "access_token=good" not in request.path:
            return Response(403, "Forbidden", Headers(), b"")
        return None

    async def handler(self, connection: ServerConnection) -> None:
        index = self.connections
        self.connections += 1
        messages: list[dict[str, object]] = []
        self.received.append(messages)
        for _ in range(2):  # subscribe, then mode
            messages.append(orjson.loads(await connection.recv()))
        for step in self.scripts[min(index, len(self.scripts) - 1)]:
            if step is None:
                return  # close: the client must reconnect
            if isinstance(step, float):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(connection.wait_closed(), timeout=step)
            else:
                await connection.send(step)
        await connection.wait_closed()


@contextlib.asynccontextmanager
async def running(fake: FakeKite) -> AsyncIterator[str]:
    async with serve(fake.handler, "127.0.0.1", 0, process_request=fake.check) as server:
        port = server.sockets[0].getsockname()[1] if server.sockets else 0
        yield f"ws://127.0.0.1:{port}"


class TickerOptions(TypedDict, total=False):
    mode: Mode
    on_order: Callable[[dict[str, Any]], None]
    silence_timeout_s: float


def ticker(root: str, token: str = "good", **options: Unpack[TickerOptions]) -> KiteTicker:
    return KiteTicker("key", token, [408065], clock=SimClock(T0), root=root, initial_backoff_s=0.01,
                      max_backoff_s=0.05, **options)


async def take(t: KiteTicker, n: int) -> list[Tick]:
    got: list[Tick] = []
    async for batch in t.stream():
        got.extend(batch)
        if len(got) >= n:
            break
    await t.close()
    return got


async def test_subscribes_decodes_and_survives_heartbeats_text_and_malformed_frames() -> None:
    orders: list[dict[str, object]] = []
    fake = FakeKite([[b"\x00", '{"type":"order","data":{"order_id":"1","tag":"X1","status":"COMPLETE"}}',
                      '{"type":"error","data":"bad token list"}', "not json", '{"type":"instruments_meta"}',
                      frame(FULL_PACKET[:100]), frame(FULL_PACKET, FULL_PACKET)]])
    async with running(fake) as root:
        t = ticker(root, on_order=orders.append)
        ticks = await asyncio.wait_for(take(t, 2), timeout=10)
    assert fake.received[0] == [{"a": "subscribe", "v": [408065]}, {"a": "mode", "v": ["full", [408065]]}]
    assert "api_key=key" in fake.queries[0] and "access_token=good" in fake.queries[0]
    assert len(ticks) == 2 and ticks[0].instrument_token == ticks[1].instrument_token
    assert ticks[0].last_price > 0 and ticks[0].bid > 0 and ticks[0].ask >= ticks[0].bid
    assert [t.tick_id for t in ticks] == [1, 2]
    assert orders == [{"order_id": "1", "tag": "X1", "status": "COMPLETE"}]
    assert (t.heartbeats, t.malformed) == (1, 1)


async def test_reconnects_with_backoff_and_resubscribes_in_the_same_mode() -> None:
    fake = FakeKite([[frame(FULL_PACKET), None], [frame(FULL_PACKET)]])
    statuses: list[FeedStatus] = []
    async with running(fake) as root:
        t = ticker(root, mode="quote")
        t.attach(lambda e: statuses.append(e) if isinstance(e, FeedStatus) else None)
        ticks = await asyncio.wait_for(take(t, 2), timeout=10)
    assert len(ticks) == 2 and fake.connections == 2
    assert fake.received[1] == fake.received[0] == [{"a": "subscribe", "v": [408065]},
                                                    {"a": "mode", "v": ["quote", [408065]]}]
    assert [s.status for s in statuses] == ["connected", "reconnecting", "connected"]
    assert t.reconnects == 1


async def test_a_silent_connection_is_reported_and_replaced() -> None:
    fake = FakeKite([[0.5], [frame(FULL_PACKET)]])  # the first connection says nothing at all
    statuses: list[FeedStatus] = []
    async with running(fake) as root:
        t = ticker(root, silence_timeout_s=0.2)
        t.attach(lambda e: statuses.append(e) if isinstance(e, FeedStatus) else None)
        await asyncio.wait_for(take(t, 1), timeout=10)
    assert "silent" in [s.status for s in statuses]
    assert t.silences >= 1 and fake.connections >= 2


async def test_bad_credentials_are_refused_and_retried_not_fatal() -> None:
    fake = FakeKite([[frame(FULL_PACKET)]])
    async with running(fake) as root:
        t = ticker(root, token="expired")
        task = asyncio.create_task(take(t, 1))
        await wait_for(lambda: t.reconnects >= 2)  # refused, backed off and tried again, twice
        assert not task.done() and fake.connections == 0
        await t.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_token_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="at least one"):
        KiteTicker("k", "t", [], clock=SimClock(T0))
    with pytest.raises(ValueError, match="3000"):
        KiteTicker("k", "t", range(3001), clock=SimClock(T0))


def test_exchange_clock_follows_an_exchange_running_ahead_and_never_goes_back() -> None:
    from trader.clock import ExchangeClock  # noqa: PLC0415

    clock = ExchangeClock()
    wall = clock.now_ns()
    assert not clock.observe(0)
    past = wall - 4 * 86_400 * 1_000_000_000  # a simulator's session four days ago: the first stamp sets the clock
    assert clock.observe(past)
    assert past <= clock.now_ns() < past + 60 * 1_000_000_000
    assert not clock.observe(past - 1_000_000_000)  # after that, never backwards
    ahead = clock.now_ns() + 3_600 * 1_000_000_000  # the session jumps an hour (N× speed): followed once confirmed
    assert [clock.observe(ahead) for _ in range(3)] == [False, False, True]
    assert clock.now_ns() >= ahead


async def test_ticks_are_stamped_in_exchange_time_when_it_runs_ahead() -> None:
    from trader.clock import ExchangeClock  # noqa: PLC0415

    fake = FakeKite([[frame(FULL_PACKET)]])
    async with running(fake) as root:
        t = KiteTicker("key", "good", [408065], clock=ExchangeClock(), root=root, initial_backoff_s=0.01)
        [tick] = await asyncio.wait_for(take(t, 1), timeout=10)
    # The fixture's exchange timestamp (years ago) set the event time: the tick is stamped in exchange time.
    assert abs(tick.ts_ns - tick.exchange_ts_ns) < 60 * 1_000_000_000


def test_the_access_token_is_redacted_from_logged_errors() -> None:
    from trader.adapters.kite.ticker import _redacted  # noqa: PLC0415

    text = repr(ValueError("bad uri ws://x?api_key=key&access_token=s3cr3tTOKEN'"))
    assert "s3cr3tTOKEN" not in _redacted(text) and "access_token=***" in _redacted(text)


async def test_the_silence_check_runs_in_a_year_without_holiday_data() -> None:
    # Tue 5 Jan 2027 10:05 IST: the shipped calendar has no 2027 holidays. The check used to raise there, which ended
    # the feed; now the market counts as open on a weekday, so a silent connection is still noticed.
    clock = SimClock(int(datetime(2027, 1, 5, 10, 5, tzinfo=IST).timestamp()) * 1_000_000_000)
    fake = FakeKite([[0.5], [frame(FULL_PACKET)]])
    statuses: list[FeedStatus] = []
    async with running(fake) as root:
        calendar = MarketCalendar(warn_clock=clock.now_ns)
        t = KiteTicker("key", "good", [408065], clock=clock, root=root, calendar=calendar, silence_timeout_s=0.2,
                       initial_backoff_s=0.01, max_backoff_s=0.05)
        t.attach(lambda e: statuses.append(e) if isinstance(e, FeedStatus) else None)
        await asyncio.wait_for(take(t, 1), timeout=10)
    assert "silent" in [s.status for s in statuses]
