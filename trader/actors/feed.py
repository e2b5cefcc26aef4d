"""Feed actor: pulls ticks from the market-data port, validates them and publishes them on the bus.

A tick that cannot be right (no timestamp, older than the instrument's last tick, non-positive price, crossed
book, unknown instrument) is counted and logged, never published. When ``lossless`` is set (unpaced simulation)
the feed waits for every actor to finish each batch before it produces the next, so a simulated day gives the
same result however fast the machine is.
"""

from __future__ import annotations

from trader.actors.base import Actor
from trader.adapters.ports import MarketData
from trader.bus import EventBus
from trader.clock import Clock
from trader.events import FeedEnded, Tick
from trader.logging import get_logger
from trader.market.instrument_master import InstrumentMaster

log = get_logger("trader.feed")

_LOG_EVERY_NTH_INVALID = 100


class FeedActor(Actor):
    name = "feed"

    def __init__(self, bus: EventBus, market: MarketData, instruments: InstrumentMaster, clock: Clock,
                 *, lossless: bool = False, name: str = "feed") -> None:
        super().__init__(bus, name=name)
        self.market = market
        self.instruments = instruments
        self.clock = clock
        self.lossless = lossless
        self.ticks_in = 0
        self.invalid = 0
        self.last_tick_ts_ns = 0
        self._last_ts: dict[int, int] = {}  # per instrument: an older tick arriving late is dropped
        self._started = False

    async def on_start(self) -> None:
        if not self._started:
            await self.market.start(self.instruments)
            self._started = True

    async def run(self) -> None:
        await self.on_start()
        publish = self.bus.publish
        async for batch in self.market.stream():
            for tick in batch:
                problem = self.validate(tick)
                if problem:
                    self.invalid += 1
                    if self.invalid % _LOG_EVERY_NTH_INVALID == 1:
                        log.warning("tick_invalid", problem=problem, instrument_token=tick.instrument_token,
                                    invalid_total=self.invalid)
                    continue
                self.ticks_in += 1
                self.last_tick_ts_ns = tick.ts_ns
                self._last_ts[tick.instrument_token] = tick.ts_ns
                publish(tick)
            if self.lossless:
                await self.bus.wait_idle()
        log.info("feed_ended", ticks_in=self.ticks_in, invalid=self.invalid)
        publish(FeedEnded(ts_ns=self.clock.now_ns(), reason="market data source has no more data"))

    def validate(self, tick: Tick) -> str:
        if tick.ts_ns <= 0:
            return f"timestamp {tick.ts_ns} is not a time"
        last = self._last_ts.get(tick.instrument_token, 0)
        if tick.ts_ns < last:
            return f"stale: {tick.ts_ns} is older than the last tick of this instrument ({last})"
        if tick.last_price <= 0:
            return f"last_price {tick.last_price} is not positive"
        if tick.bid < 0 or tick.ask < 0 or tick.bid_qty < 0 or tick.ask_qty < 0:
            return "negative bid/ask price or quantity"
        if tick.bid and tick.ask and tick.bid > tick.ask:
            return f"crossed book: bid {tick.bid} > ask {tick.ask}"
        if self.instruments.by_token(tick.instrument_token) is None:
            return f"unknown instrument token {tick.instrument_token}"
        return ""
