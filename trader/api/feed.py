"""What runs inside the facade's loop: a private bus with the daemon's own actors on it.

``Hub`` is one bus with its supervisor and helper tasks. ``MarketFeed`` puts the daemon's ``FeedActor`` on a market
source — the built-in ``SyntheticMarket`` (paper) or the ``KiteTicker`` after the same start-up provisioning as the
daemon (zerodha) — and keeps the latest tick of every instrument and the connection's ``FeedStatus``. The broker side
(``desk.py``) puts the daemon's ``ExecutionActor`` on a hub. Nothing here is a second implementation: the facade
only reads what the actors publish.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from trader.actors.base import Supervisor
from trader.actors.feed import FeedActor
from trader.adapters.kite.provision import RetryPolicy, provision_market
from trader.adapters.kite.rest import KiteRestClient
from trader.adapters.kite.ticker import KiteTicker
from trader.adapters.synthetic import SyntheticConfig, SyntheticMarket
from trader.bus import EventBus
from trader.clock import Clock, ExchangeClock, SimClock
from trader.events import FeedEnded, FeedStatus, Heartbeat, Tick
from trader.market.calendar import MarketCalendar
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import OptionContract, UnderlyingSpec

HEARTBEAT_S = 1.0  # drives the execution actor's timers (re-price of resting orders, look-ups of parked ones)


class Hub:
    """One private bus, its supervisor and helper tasks; ``close`` stops them all."""

    def __init__(self, clock: Clock, calendar: MarketCalendar) -> None:
        self.clock = clock
        self.calendar = calendar
        self.bus = EventBus()
        self.instruments = InstrumentMaster()
        self.supervisor = Supervisor()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._heartbeats: asyncio.Task[None] | None = None
        self.has_desk = False  # one order desk (execution actor) per bus

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def start_heartbeats(self) -> None:
        if self._heartbeats is None:
            self._heartbeats = self.spawn(self._beat(), "api-heartbeat")

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            self.bus.publish(Heartbeat(ts_ns=self.clock.now_ns()))

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.supervisor.stop()


class MarketFeed:
    """The daemon's feed actor(s) on a hub, and what they published last: a tick per instrument, the feed status."""

    def __init__(self, hub: Hub, specs: list[UnderlyingSpec], *, rate: float, venue: str) -> None:
        self.hub = hub
        self.specs = specs
        self.rate = rate  # the risk-free rate for implied volatility and Greeks (annual, continuous)
        self.venue = venue  # for messages: "the built-in paper market", "Kite at https://..."
        self.quotes: dict[int, Tick] = {}
        self.status = ""  # the last FeedStatus of a live connection ("connected", "reconnecting", "silent")
        self.status_detail = ""
        self.ended = False
        self.feeds: list[FeedActor] = []
        self.ticker: KiteTicker | None = None
        self._changed = asyncio.Event()
        hub.bus.tap(self._observe)

    @property
    def clock(self) -> Clock:
        return self.hub.clock

    @property
    def instruments(self) -> InstrumentMaster:
        return self.hub.instruments

    def _observe(self, event: object) -> None:
        kind = type(event)
        if kind is Tick:
            assert isinstance(event, Tick)
            self.quotes[event.instrument_token] = event
        elif kind is FeedStatus:
            assert isinstance(event, FeedStatus)
            self.status, self.status_detail = event.status, event.detail
        elif kind is FeedEnded:
            self.ended = True
        else:
            return
        self._changed.set()

    def start(self) -> None:
        for feed in self.feeds:
            self.hub.supervisor.start(feed)

    async def close(self) -> None:
        """Stop the feed actors and close their sources (the ticker's connection)."""
        await self.hub.supervisor.stop([feed.name for feed in self.feeds])
        for feed in self.feeds:
            await feed.market.close()
        self.ended = True

    @property
    def running(self) -> bool:
        """The feed actors are running (a live connection may still be reconnecting: see ``connected``)."""
        if not self.feeds or self.ended:
            return False
        try:
            return all(not self.hub.supervisor.task(feed.name).done() for feed in self.feeds)
        except KeyError:  # not started, or stopped
            return False

    @property
    def connected(self) -> bool:
        if not self.running:
            return False
        return self.ticker is None or self.status == "connected"

    def missing(self) -> list[str]:
        """What has no quote yet: each underlying's index, and at least one of its options."""
        by_token = self.instruments.by_token
        quoted = {c.underlying for token in self.quotes if isinstance(c := by_token(token), OptionContract)}
        problems = []
        for spec in self.specs:
            if spec.spot_token not in self.quotes:
                problems.append(f"{spec.spot_exchange}:{spec.spot_symbol}")
            if spec.name not in quoted:
                problems.append(f"{spec.name} options")
        return problems

    async def wait_ready(self, timeout_s: float) -> None:
        """Until every underlying has an index quote and option quotes; a clear error otherwise."""
        try:
            async with asyncio.timeout(timeout_s):
                while self.missing():
                    if self.feeds and not self.running:
                        raise ConnectionError(f"the market data from {self.venue} stopped before the first "
                                              f"quotes of {', '.join(self.missing())}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            status = f" (feed status: {self.status}, {self.status_detail})" if self.status else ""
            raise TimeoutError(f"no quotes for {', '.join(self.missing())} from {self.venue} within "
                               f"{timeout_s:g}s{status}") from None


def built_in_market(hub: Hub, specs: list[UnderlyingSpec], configs: list[SyntheticConfig]) -> MarketFeed:
    """The paper market: one ``SyntheticMarket`` per underlying on the hub's ``SimClock``, each behind a feed actor.
    Started outside a session, its clock jumps to the next session open (as the daemon's does)."""
    clock = hub.clock
    assert isinstance(clock, SimClock)
    feed = MarketFeed(hub, specs, rate=configs[0].rate, venue="the built-in paper market")
    for spec, config in zip(specs, configs, strict=True):
        market = SyntheticMarket(clock, hub.calendar, spec, config)
        name = "feed" if len(specs) == 1 else f"feed-{spec.name}"
        feed.feeds.append(FeedActor(hub.bus, market, hub.instruments, clock, lossless=False, name=name))
    return feed


async def kite_market(hub: Hub, client: KiteRestClient, ws_root: str, specs: list[UnderlyingSpec], *,
                      strikes_each_side: int, rate: float, retry: RetryPolicy | None = None) -> MarketFeed:
    """Kite market data as the daemon takes it: the day's instrument dump and index quotes (``provision_market``),
    then the ticker in full mode on the index and the nearest expiry's strikes around spot."""
    clock = hub.clock
    assert isinstance(clock, ExchangeClock)
    tokens = await provision_market(client, specs, hub.instruments, clock, strikes_each_side=strikes_each_side,
                                    retry=retry)
    ticker = KiteTicker(client.api_key, client.access_token or "", tokens, clock=clock, root=ws_root, mode="full",
                        calendar=hub.calendar)
    ticker.attach(hub.bus.publish)
    feed = MarketFeed(hub, specs, rate=rate, venue=f"Kite at {ws_root}")
    feed.ticker = ticker
    feed.feeds.append(FeedActor(hub.bus, ticker, hub.instruments, clock, lossless=False))
    return feed
