"""Feed actor: pulls ticks from the market-data port, validates them and publishes them on the bus.

A tick that cannot be right (no timestamp, older than the instrument's last tick, non-positive price, crossed
book, unknown instrument) is counted and logged, never published. On Kite market data (an ``ExchangeClock``) a tick
whose exchange timestamp lies more than the clock's tolerance (``exchange_time_tolerance_seconds``, 10 minutes by
default) behind the exchange clock is counted as stale, one ahead of it as invalid; neither moves the clock (the
clock refuses such stamps itself, see ``ExchangeClock``). Prices are checked only for being positive: a full-mode
tick carries no circuit band and the instrument dump has none either (only ``/quote`` does, which the feed does not
poll), so a price inside (0, ∞) is accepted. Each kind of problem is logged the first time and then at most once a
minute, with the number of ticks dropped since. When ``lossless`` is set (unpaced simulation)
the feed waits for every actor to finish each batch before it produces the next, so a simulated day gives the
same result however fast the machine is.
"""

from __future__ import annotations

import time

from trader.actors.base import Actor
from trader.adapters.ports import MarketData
from trader.bus import EventBus
from trader.clock import NS_PER_SECOND, Clock, ExchangeClock
from trader.events import FeedEnded, Tick
from trader.logging import get_logger
from trader.market.instrument_master import InstrumentMaster

log = get_logger("trader.feed")

_LOG_INTERVAL_NS = 60 * NS_PER_SECOND  # per kind of problem, after the first line


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
        self.stale = 0  # exchange timestamp too far behind the exchange clock (also not in ``invalid``)
        self._logged: dict[str, tuple[int, int]] = {}  # problem kind -> (event time last logged, dropped since)
        self.last_tick_ts_ns = 0
        self.last_tick_wall_ns = 0  # wall clock when the last valid tick was passed on (the feed's age, for people)
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
            passed = self.ticks_in
            for tick in batch:
                kind, problem = self.check(tick)
                if problem:
                    self._drop(kind, problem, tick)
                    continue
                self.ticks_in += 1
                self.last_tick_ts_ns = tick.ts_ns
                self._last_ts[tick.instrument_token] = tick.ts_ns
                publish(tick)
            if self.ticks_in != passed:
                self.last_tick_wall_ns = time.time_ns()
            if self.lossless:
                await self.bus.wait_idle()
        log.info("feed_ended", ticks_in=self.ticks_in, invalid=self.invalid, stale=self.stale)
        publish(FeedEnded(ts_ns=self.clock.now_ns(), reason="market data source has no more data"))

    def _drop(self, kind: str, problem: str, tick: Tick) -> None:
        if kind == "exchange_time_stale":
            self.stale += 1
        else:
            self.invalid += 1
        now = self.clock.now_ns()
        last, dropped = self._logged.get(kind, (0, 0))
        if last and now - last < _LOG_INTERVAL_NS:
            self._logged[kind] = (last, dropped + 1)
            return
        self._logged[kind] = (now, 0)
        log.warning("tick_stale" if kind == "exchange_time_stale" else "tick_invalid", kind=kind, problem=problem,
                    instrument_token=tick.instrument_token, dropped_since_last_line=dropped,
                    invalid_total=self.invalid, stale_total=self.stale)

    def validate(self, tick: Tick) -> str:
        """Why ``tick`` cannot be right, or "" if it can."""
        return self.check(tick)[1]

    def check(self, tick: Tick) -> tuple[str, str]:
        """(kind, problem) of a tick that cannot be right, or ("", "")."""
        if tick.ts_ns <= 0:
            return "no_timestamp", f"timestamp {tick.ts_ns} is not a time"
        if tick.exchange_ts_ns and isinstance(self.clock, ExchangeClock):
            judged = self.clock.problem(tick.exchange_ts_ns)
            if judged:
                seconds = (tick.exchange_ts_ns - self.clock.now_ns()) // NS_PER_SECOND
                return (f"exchange_time_{judged}",
                        f"exchange timestamp {tick.exchange_ts_ns} is {seconds:+d} s from the exchange clock, beyond "
                        f"the tolerance of {self.clock.tolerance_ns // NS_PER_SECOND} s")
        last = self._last_ts.get(tick.instrument_token, 0)
        if tick.ts_ns < last:
            return "out_of_order", f"stale: {tick.ts_ns} is older than the last tick of this instrument ({last})"
        if tick.last_price <= 0:
            return "price_not_positive", f"last_price {tick.last_price} is not positive"
        if tick.bid < 0 or tick.ask < 0 or tick.bid_qty < 0 or tick.ask_qty < 0:
            return "negative_book", "negative bid/ask price or quantity"
        if tick.bid and tick.ask and tick.bid > tick.ask:
            return "crossed_book", f"crossed book: bid {tick.bid} > ask {tick.ask}"
        if self.instruments.by_token(tick.instrument_token) is None:
            return "unknown_instrument", f"unknown instrument token {tick.instrument_token}"
        return "", ""
