"""Feed actor: only plausible ticks reach the bus; the end of the data is announced."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from trader.actors.feed import FeedActor
from trader.bus import EventBus
from trader.clock import SimClock
from trader.events import FeedEnded, Tick
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import IndexInstrument

from helpers import T0

TOKEN = 256265


class ListMarket:
    def __init__(self, batches: list[list[Tick]]) -> None:
        self.batches = batches
        self.started = 0

    async def start(self, instruments: InstrumentMaster) -> None:
        self.started += 1
        instruments.add_index(IndexInstrument(exchange="NSE", tradingsymbol="NIFTY 50", name="NIFTY",
                                              instrument_token=TOKEN, tick_size=5))

    async def stream(self) -> AsyncIterator[list[Tick]]:
        for batch in self.batches:
            yield batch

    async def close(self) -> None:
        return None


def tick(ts: int, price: int = 2_600_000, token: int = TOKEN, **book: int) -> Tick:
    return Tick(ts_ns=ts, instrument_token=token, last_price=price, **book)


async def run_feed(batches: list[list[Tick]]) -> tuple[FeedActor, list[object]]:
    bus = EventBus()
    published: list[object] = []
    bus.tap(published.append)
    feed = FeedActor(bus, ListMarket(batches), InstrumentMaster(), SimClock(T0), lossless=True)
    await feed.run()
    return feed, published


async def test_only_plausible_ticks_are_published_then_the_end_is_announced() -> None:
    good = [tick(T0), tick(T0 + 1), tick(T0 + 2, bid=2_599_995, bid_qty=65, ask=2_600_005, ask_qty=65)]
    bad = [
        tick(0),  # no timestamp
        tick(T0 + 1 - 10),  # older than the instrument's last tick
        tick(T0 + 3, price=0),
        tick(T0 + 3, price=-5),
        tick(T0 + 3, bid=2_600_010, bid_qty=65, ask=2_600_000, ask_qty=65),  # crossed
        tick(T0 + 3, bid=-5),
        tick(T0 + 3, token=999),  # unknown instrument
    ]
    feed, published = await run_feed([good[:2], [bad[0], bad[1], good[2], *bad[2:]]])
    ticks = [e for e in published if isinstance(e, Tick)]
    assert ticks == good
    assert (feed.ticks_in, feed.invalid) == (3, len(bad))
    assert isinstance(published[-1], FeedEnded)


async def test_a_restarted_feed_does_not_start_the_market_twice() -> None:
    bus = EventBus()
    market = ListMarket([[tick(T0)]])
    feed = FeedActor(bus, market, InstrumentMaster(), SimClock(T0))
    await feed.on_start()
    await feed.run()
    assert market.started == 1


class WatchedMarket(ListMarket):
    """Notes the feed's ``last_tick_wall_ns`` after the feed handled each batch."""

    def __init__(self, batches: list[list[Tick]]) -> None:
        super().__init__(batches)
        self.feed: FeedActor | None = None
        self.seen: list[int] = []

    async def stream(self) -> AsyncIterator[list[Tick]]:
        for batch in self.batches:
            yield batch
            assert self.feed is not None
            self.seen.append(self.feed.last_tick_wall_ns)


async def test_the_wall_time_of_the_last_valid_tick_is_kept_for_the_feed_age() -> None:
    before = time.time_ns()
    market = WatchedMarket([[tick(0)], [tick(T0)], [tick(0)]])
    feed = market.feed = FeedActor(EventBus(), market, InstrumentMaster(), SimClock(T0))
    await feed.run()
    nothing, passed, invalid_only = market.seen
    assert nothing == 0  # no valid tick yet: no age to tell
    assert before <= passed <= time.time_ns()
    assert invalid_only == passed  # a batch with nothing valid does not make the feed look fresh
