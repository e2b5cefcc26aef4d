"""Bus benchmark, run by ``make bench`` as ``.venv/bin/python bench/bus.py [--quick] [--json] [--verbose] [--profile]``.

One run measures, on one event loop (uvloop if importable, as ``trader.cli`` does):

(a) baseline: a bare asyncio pipeline, five coroutines joined by four bounded ``asyncio.Queue``s, carrying a fixed
    list of ``Tick``s pre-generated from the synthetic market (outside every timing); each stage does trivial work.
(b) the real thing: ``trader.app.App`` in backtest mode (unpaced ``SimClock``, synthetic market, all five actors on the
    real bus); events/s = ``ticks_in`` ÷ wall time. This includes the synthetic market's own cost of generating the
    ticks (a Black-Scholes price per option tick), which the baseline does not pay.
(b') the same ``App`` with its feed replaying the pre-generated ticks (the identical stream, batch by batch), so the
    number is bus + actors only, comparable with (a).
(c) tick → intent and tick → order latency at a paced 5,000 ticks/s through the real bus and the five real actors
    (feed, strategy, risk gate, execution on the paper broker, portfolio), wired as ``trader.app.App`` wires them: the
    risk gate holds a ``RiskManager`` on the default ``RiskConfig`` with ₹10 lakh of capital, and asks the paper
    broker for margins. A bench strategy plugin emits an ``OrderIntent`` (alternately buy and sell one lot of the ATM
    call) on every Kth tick: K = 1,000 is 5 intents/s, inside the gate's 8 orders/s (Kite allows 10), so the gate
    approves nearly all of them; the run fails unless it approves most. The tick's publish time is stamped by a bus
    tap, the intent's when the strategy publishes it, the order's when the execution actor calls the broker's
    ``place_order``; all with ``time.perf_counter_ns``. Event time runs from 10:00 IST of the recorded day, inside
    the risk gate's entry window.
(c') baseline for (c): the pipeline of (a), paced the same way, where the second coroutine turns every Kth tick into
    an "intent" that the third turns into a "request" and the fourth takes as the "order".

Each figure and its baseline are measured alternately, so a change in the machine's load hits both alike: (a) and
(b') take turns (two each in a full run) and the best of each counts; (c) and (c') take turns of 5 paced seconds on
successive slices of the recording (each turn starts afresh at 10:00 IST event time, its first 10 % not counted) and
their samples are pooled. ``--quick`` runs the last 20 minutes of the day, one turn of each, 2 paced seconds.

Standard output is one line per figure, each with the baseline measured in this run and the ratio (see
``bench/benchlib.py``); progress and context go to standard error, the detail tables too with ``--verbose``.
Logging is configured at WARNING into an in-memory stream so log I/O does not distort the timings.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import dataclasses
import gc
import importlib.metadata
import io
import math
import platform
import pstats
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from datetime import time as wall_time
from pathlib import Path
from typing import Any, TypeVar

from benchlib import Figure, emit, note

from trader.actors.base import Supervisor
from trader.actors.execution import ExecutionActor
from trader.actors.feed import FeedActor
from trader.actors.portfolio import PortfolioActor
from trader.actors.risk import RiskGateActor
from trader.actors.strategy import StrategyActor
from trader.adapters.paper import PaperBroker, PaperBrokerConfig
from trader.adapters.paper_state import paper_state
from trader.app import App
from trader.bus import EventBus
from trader.clock import NS_PER_SECOND, SimClock
from trader.config import Settings, load_settings
from trader.events import (
    Fill,
    IntentPurpose,
    OrderIntent,
    OrderRequest,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    Tick,
)
from trader.ids import IdFactory
from trader.logging import configure_logging
from trader.market.calendar import IST, MarketCalendar
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import IndexInstrument, OptionContract, OptionType
from trader.risk.config import RiskConfig
from trader.risk.core import RiskManager
from trader.store.journal import Journal
from trader.store.orders import OrderJournal
from trader.strategies.base import Holding, RestoredPosition, StrategyContext

try:
    import uvloop as _uvloop
except ImportError:  # not on Linux: the default loop, as trader.cli does
    _uvloop = None  # type: ignore[assignment]

T = TypeVar("T")

FULL_START = "2026-11-20T09:00"  # Fri 20 Nov 2026, a normal session: the whole day, ~1.14 M ticks
QUICK_START = "2026-11-20T15:10"  # the same day from 15:10: the last 20 minutes, ~77 k ticks
BASELINE_QUEUE_SIZE = 1_000
BASELINE_LABEL = "bare 5-coroutine pipeline"
LATENCY_RATE = 5_000  # ticks/s
# The bench strategy emits one intent per K ticks: 5 intents/s at K = 1,000, below the risk gate's default
# max_orders_per_second (8; Kite allows 10), so the gate approves them; --every-kth 50 (100 intents/s) makes
# it refuse most, and the run fails (see check_approvals).
LATENCY_EVERY_KTH = 1_000
LATENCY_SECONDS = 30.0
LATENCY_SECONDS_QUICK = 2.0
LATENCY_TURN_SECONDS = 5.0  # (c) and (c') take turns of this many paced seconds
THROUGHPUT_REPEAT = 2  # (a) and (b') take this many turns in a full run; the best of each counts
LATENCY_EVENT_START = wall_time(10, 0)  # IST: event time of the paced run, inside no_entry_before..no_entry_after
LATENCY_CAPITAL_RUPEES = 1_000_000.0  # one lot of an ATM NIFTY option fits max_risk_per_trade_pct (1 %) of it
MIN_APPROVED_SHARE = 0.5  # the run fails unless the risk gate approves more than this share of the intents
WARMUP_FRACTION = 0.1  # latency samples from the first 10 % of the paced run are not counted
_MIN_SLEEP_S = 0.001


def backtest_settings(start: str) -> Settings:
    return load_settings({"mode": "backtest",
                          "sim": {"days": 1, "start": start, "seed": 7, "chain_interval_ms": 1000}})


# -- pre-generated ticks ----------------------------------------------------------------------------------------
@dataclass(slots=True)
class Recording:
    """The synthetic market's output, batch by batch, with the instruments first seen in each batch."""

    batches: list[list[Tick]] = field(default_factory=list)
    listed: list[list[OptionContract | IndexInstrument]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ticks(self) -> int:
        return sum(len(b) for b in self.batches)

    def flat(self) -> list[Tick]:
        return [tick for batch in self.batches for tick in batch]


async def record_market(settings: Settings) -> Recording:
    """Step the synthetic market of a throwaway App built from ``settings`` (so it is configured exactly as in (b))."""
    app = App(settings)
    market = app.feeds[0].market
    instruments = app.instruments
    rec = Recording()
    seen: set[int] = set()
    t0 = time.perf_counter()
    await market.start(instruments)
    async for batch in market.stream():
        new: list[OptionContract | IndexInstrument] = []
        for tick in batch:
            if tick.instrument_token not in seen:
                seen.add(tick.instrument_token)
                instrument = instruments.by_token(tick.instrument_token)
                if instrument is not None:
                    new.append(instrument)
        rec.batches.append(batch)
        rec.listed.append(new)
    rec.seconds = time.perf_counter() - t0
    await market.close()
    return rec


class ReplayMarket:
    """``MarketData`` port over a recording: registers instruments when they were listed, moves the clock like the
    synthetic market (``sleep_until`` per batch, which yields to the loop), and yields the same batches."""

    def __init__(self, recording: Recording, clock: SimClock) -> None:
        self._recording = recording
        self._clock = clock
        self._instruments: InstrumentMaster | None = None
        self._closed = False

    async def start(self, instruments: InstrumentMaster) -> None:
        self._instruments = instruments

    async def close(self) -> None:
        self._closed = True

    async def stream(self) -> AsyncIterator[list[Tick]]:
        instruments = self._instruments
        assert instruments is not None, "start() first"
        for batch, listed in zip(self._recording.batches, self._recording.listed, strict=True):
            if self._closed:
                return
            for instrument in listed:
                if isinstance(instrument, OptionContract):
                    instruments.add(instrument)
                else:
                    instruments.add_index(instrument)
            await self._clock.sleep_until(batch[0].ts_ns)
            yield batch


# -- (a) baseline -----------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Throughput:
    name: str
    events: int
    seconds: float
    published: int = 0
    deliveries: int = 0
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


async def run_baseline(ticks: list[Tick], queue_size: int = BASELINE_QUEUE_SIZE) -> Throughput:
    queues: list[asyncio.Queue[Tick | None]] = [asyncio.Queue(queue_size) for _ in range(4)]

    async def source(out: asyncio.Queue[Tick | None]) -> int:
        for tick in ticks:
            await out.put(tick)
        await out.put(None)
        return len(ticks)

    async def stage(inbox: asyncio.Queue[Tick | None], out: asyncio.Queue[Tick | None]) -> int:
        checksum = 0
        while True:
            tick = await inbox.get()
            if tick is None:
                await out.put(None)
                return checksum
            checksum += tick.last_price  # trivial work, then forward
            await out.put(tick)

    async def sink(inbox: asyncio.Queue[Tick | None]) -> int:
        count = 0
        while (tick := await inbox.get()) is not None:
            count += tick.instrument_token > 0
        return count

    t0 = time.perf_counter()
    results = await asyncio.gather(source(queues[0]), stage(queues[0], queues[1]), stage(queues[1], queues[2]),
                                   stage(queues[2], queues[3]), sink(queues[3]))
    seconds = time.perf_counter() - t0
    assert results[-1] == len(ticks), f"baseline lost events: {results[-1]} != {len(ticks)}"
    return Throughput("baseline", len(ticks), seconds, published=4 * len(ticks), deliveries=4 * len(ticks))


def best(current: Throughput | None, new: Throughput) -> Throughput:
    return new if current is None or new.per_second > current.per_second else current


# -- (b) the real App ---------------------------------------------------------------------------------------------
async def run_app(settings: Settings, recording: Recording | None = None) -> Throughput:
    """The App as built for backtest; with ``recording`` its feed replays it instead of running the market."""
    app = App(settings)
    if recording is not None:
        clock = app.clock
        assert isinstance(clock, SimClock), "backtest mode runs on a SimClock"
        app.feeds = [FeedActor(app.bus, ReplayMarket(recording, clock), app.instruments, clock,
                               lossless=True, name="feed")]
    t0 = time.perf_counter()
    result = await app.run(install_signal_handlers=False)
    seconds = time.perf_counter() - t0
    deliveries = sum(inbox.delivered for inbox in app.bus.inboxes)
    return Throughput("replay" if recording else "app", result.counters["ticks_in"], seconds,
                      published=app.bus.published, deliveries=deliveries, counters=dict(result.counters))


# -- (c) latency --------------------------------------------------------------------------------------------------
class PacedReplay:
    """``MarketData`` port that sends a tick list at ``rate`` ticks/s of wall time, in whatever batch is due when the
    loop wakes it (about every millisecond: ~5 ticks a batch at 5,000/s)."""

    def __init__(self, ticks: list[Tick], rate: float) -> None:
        self._ticks = ticks
        self._rate = rate
        self._closed = False
        self.batches = 0
        self.sleeps = 0
        self.seconds = 0.0

    async def start(self, instruments: InstrumentMaster) -> None:
        pass

    async def close(self) -> None:
        self._closed = True

    async def stream(self) -> AsyncIterator[list[Tick]]:
        ticks = self._ticks
        n = len(ticks)
        ns_per_tick = NS_PER_SECOND / self._rate
        sent = 0
        start = time.perf_counter_ns()
        while sent < n and not self._closed:
            now = time.perf_counter_ns()
            due = min(n, int((now - start) / ns_per_tick) + 1)
            if due > sent:
                batch = ticks[sent:due]
                sent = due
                self.batches += 1
                yield batch
            else:
                # Event-loop timers have millisecond resolution (libuv, epoll): a shorter sleep returns at once and
                # would turn the feed into a busy loop; so wake at most once a millisecond, like a socket that
                # delivers a frame of ticks.
                self.sleeps += 1
                await asyncio.sleep(max((start + sent * ns_per_tick - now) / NS_PER_SECOND, _MIN_SLEEP_S))
        self.seconds = (time.perf_counter_ns() - start) / NS_PER_SECOND


def paced_ticks(source: list[Tick], count: int, rate: float) -> list[Tick]:
    """The first ``count`` ticks of ``source`` re-timed for the paced run: event time from 10:00 IST of the recorded
    day, one tick every 1/``rate`` s (so event time keeps pace with the wall), ids renumbered 1, 2, … so that every
    Kth tick is sampled."""
    if len(source) < count:
        raise SystemExit(f"bench/bus.py: the paced run needs {count:,} ticks, the recording has {len(source):,}")
    day = datetime.fromtimestamp(source[0].ts_ns / NS_PER_SECOND, tz=IST).date()
    t0_ns = int(datetime.combine(day, LATENCY_EVENT_START, tzinfo=IST).timestamp()) * NS_PER_SECOND
    step_ns = round(NS_PER_SECOND / rate)
    return [dataclasses.replace(t, ts_ns=t0_ns + i * step_ns, exchange_ts_ns=t0_ns + i * step_ns, tick_id=i + 1)
            for i, t in enumerate(source[:count])]


@dataclass(slots=True)
class Stamps:
    """``perf_counter_ns`` moments of one paced run, keyed by the id of the sampled (every Kth) tick."""

    published: dict[int, int] = field(default_factory=dict)  # the tick went into the inboxes (the first queue)
    intent: dict[int, int] = field(default_factory=dict)  # the intent it caused was published (put into a queue)
    order: dict[int, int] = field(default_factory=dict)  # that intent's order reached the broker (the 4th stage)

    def latencies_ns(self, warm_ticks: float) -> dict[str, list[int]]:
        counted = {tick_id: sent for tick_id, sent in self.published.items() if tick_id > warm_ticks}
        return {"tick→intent": [self.intent[t] - sent for t, sent in counted.items() if t in self.intent],
                "tick→order": [self.order[t] - sent for t, sent in counted.items() if t in self.order]}


@dataclass(slots=True)
class Latency:
    """One paced run, or the sum of several (``add``): counts, and the latency samples after each run's warm-up."""

    name: str
    rate: float
    every_kth: int
    runs: int = 1
    ticks: int = 0
    seconds: float = 0.0
    batches: int = 0
    sleeps: int = 0
    sampled_ticks: int = 0
    intents: int = 0
    approved: int = 0
    refused: int = 0
    orders: int = 0
    fills: int = 0
    conflated: int = 0
    refusals: dict[str, int] = field(default_factory=dict)  # risk gate's reason → how many intents it refused
    samples_ns: dict[str, list[int]] = field(default_factory=dict)  # "tick→intent"/"tick→order" → latencies

    def add(self, other: Latency) -> None:
        for name in ("runs", "ticks", "seconds", "batches", "sleeps", "sampled_ticks", "intents", "approved",
                     "refused", "orders", "fills", "conflated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason, count in other.refusals.items():
            self.refusals[reason] = self.refusals.get(reason, 0) + count
        for path, values in other.samples_ns.items():
            self.samples_ns.setdefault(path, []).extend(values)

    @property
    def stats_us(self) -> dict[str, dict[str, float]]:
        return {path: percentiles_us(values) for path, values in self.samples_ns.items()}

    def as_dict(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "samples_ns"}
        return {**fields, "stats_us": self.stats_us, "warmup_fraction": WARMUP_FRACTION}


def percentiles_us(values_ns: list[int]) -> dict[str, float]:
    if not values_ns:
        return {"n": 0}
    ordered = sorted(values_ns)

    def rank(q: float) -> float:
        return ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)] / 1_000

    return {"n": len(ordered), "p50": rank(50), "p90": rank(90), "p99": rank(99), "max": ordered[-1] / 1_000}


def empty_latency(name: str, rate: float, k: int) -> Latency:
    return Latency(name=name, rate=rate, every_kth=k, runs=0, samples_ns={"tick→intent": [], "tick→order": []})


@dataclass(frozen=True, slots=True)
class _Marker:
    """The baseline's stand-in for an intent (``kind="intent"``) and for the order request it becomes."""

    kind: str
    tick_id: int


async def run_latency_baseline(ticks: list[Tick], rate: float, k: int,
                               queue_size: int = BASELINE_QUEUE_SIZE) -> Latency:
    """(c'): the pipeline of (a) fed at the paced rate; its 2nd coroutine ("strategy") follows every Kth tick with an
    intent, the 3rd ("risk gate") turns it into a request, the 4th ("execution") takes it as the order."""
    stamps = Stamps()
    market = PacedReplay(ticks, rate)
    queues: list[asyncio.Queue[Tick | _Marker | None]] = [asyncio.Queue(queue_size) for _ in range(4)]

    async def feed(out: asyncio.Queue[Tick | _Marker | None]) -> None:
        async for batch in market.stream():
            for tick in batch:
                await out.put(tick)
                if tick.tick_id % k == 0:
                    stamps.published[tick.tick_id] = time.perf_counter_ns()
        await out.put(None)

    async def strategy(inbox: asyncio.Queue[Tick | _Marker | None], out: asyncio.Queue[Tick | _Marker | None]) -> None:
        while (item := await inbox.get()) is not None:
            await out.put(item)
            if isinstance(item, Tick) and item.tick_id % k == 0:
                await out.put(_Marker("intent", item.tick_id))
                stamps.intent[item.tick_id] = time.perf_counter_ns()
        await out.put(None)

    async def risk(inbox: asyncio.Queue[Tick | _Marker | None], out: asyncio.Queue[Tick | _Marker | None]) -> None:
        while (item := await inbox.get()) is not None:
            await out.put(_Marker("request", item.tick_id) if isinstance(item, _Marker) else item)
        await out.put(None)

    async def execution(inbox: asyncio.Queue[Tick | _Marker | None],
                        out: asyncio.Queue[Tick | _Marker | None]) -> None:
        while (item := await inbox.get()) is not None:
            if isinstance(item, _Marker):
                stamps.order[item.tick_id] = time.perf_counter_ns()
            else:
                await out.put(item)
        await out.put(None)

    async def portfolio(inbox: asyncio.Queue[Tick | _Marker | None]) -> int:
        count = 0
        while await inbox.get() is not None:
            count += 1
        return count

    *_, received = await asyncio.gather(feed(queues[0]), strategy(queues[0], queues[1]), risk(queues[1], queues[2]),
                                        execution(queues[2], queues[3]), portfolio(queues[3]))
    assert received == len(ticks), f"paced baseline lost ticks: {received} != {len(ticks)}"
    return Latency(name="baseline", rate=rate, every_kth=k, ticks=received, seconds=market.seconds,
                   batches=market.batches, sleeps=market.sleeps, sampled_ticks=len(stamps.published),
                   intents=len(stamps.intent), orders=len(stamps.order),
                   samples_ns=stamps.latencies_ns(len(ticks) * WARMUP_FRACTION))


class IntentEveryKth:
    """A ``Strategy`` plugin for the bench: an intent for every Kth tick (by ``tick_id``), alternately buying (entry)
    and selling (exit) one lot of one contract at market. ``origin`` gets each intent's tick id."""

    def __init__(self, k: int, contract: OptionContract, origin: dict[str, int]) -> None:
        self.strategy_id = "bench_every_kth"
        self._k = k
        self._contract = contract
        self._origin = origin
        self._count = 0

    def on_tick(self, tick: Tick, ctx: StrategyContext) -> Sequence[OrderIntent]:
        if tick.tick_id % self._k:
            return ()
        self._count += 1
        side = Side.BUY if self._count % 2 else Side.SELL
        contract = self._contract
        quote = ctx.quote(contract.instrument_token)
        intent = OrderIntent(
            ts_ns=tick.ts_ns, intent_id=ctx.ids.next("BEN"), strategy_id=self.strategy_id, contract=contract,
            side=side, quantity=contract.lot_size, order_type=OrderType.MARKET,
            purpose=IntentPurpose.ENTRY if side is Side.BUY else IntentPurpose.EXIT,
            expected_price=quote.last_price if quote is not None else contract.tick_size, reason="bench")
        self._origin[intent.intent_id] = tick.tick_id
        return (intent,)

    def on_fill(self, fill: Fill) -> None:
        pass

    def on_order_update(self, update: OrderUpdate) -> None:
        pass

    def snapshot_state(self) -> dict[str, object]:
        return {"version": 1, "strategy_id": self.strategy_id}

    def restore_state(self, state: Mapping[str, object] | None,
                      held: Sequence[RestoredPosition]) -> list[RestoredPosition]:
        return list(held)  # holds nothing across runs

    def holdings(self) -> list[Holding]:
        return []

    def pending_intents(self) -> list[str]:
        return []


class StampingBroker(PaperBroker):
    """The paper broker, noting when each order reaches it (by tag, which is the intent id)."""

    def __init__(self, clock: SimClock, config: PaperBrokerConfig, calendar: MarketCalendar, *,
                 capital: int) -> None:
        super().__init__(clock, config, calendar, capital=capital)
        self.placed_ns: dict[str, int] = {}

    async def place_order(self, request: OrderRequest) -> str:
        self.placed_ns.setdefault(request.tag, time.perf_counter_ns())
        return await super().place_order(request)


def pick_contract(ticks: list[Tick], instruments: InstrumentMaster) -> OptionContract:
    """The ATM call at the first index tick of the list."""
    spot = next(t.last_price for t in ticks if isinstance(instruments.by_token(t.instrument_token), IndexInstrument))
    option = next(c for t in ticks if isinstance(c := instruments.by_token(t.instrument_token), OptionContract))
    atm = instruments.nearest_strike(option.underlying, option.expiry, spot, OptionType.CE)
    assert atm is not None
    return atm


def latency_risk_config(settings: Settings) -> RiskConfig:
    """The configured (default) limits with ₹10 lakh of capital: one lot of an ATM NIFTY option at ~₹150 puts
    ~₹3,000 at risk to the default 30 % stop, inside 1 % of capital; ₹1 lakh, the default, would refuse it."""
    return RiskConfig.model_validate({**settings.risk.model_dump(), "initial_capital": LATENCY_CAPITAL_RUPEES})


async def run_latency(ticks: list[Tick], instruments: InstrumentMaster, settings: Settings, rate: float,
                      k: int, journal_dir: Path | None = None,
                      attach: Callable[[EventBus], None] | None = None) -> Latency:
    """(c): the five real actors on the real bus, wired as ``App`` wires them for a paced paper run; with
    ``journal_dir``, with the journal as in paper mode (intents written before sending, updates, fills, the risk
    and strategy states, the paper broker's book); ``attach`` may put more consumers on the bus (bench/alerts.py)."""
    contract = pick_contract(ticks, instruments)
    stamps = Stamps()
    origin: dict[str, int] = {}  # intent id → its tick's id
    refusals: collections.Counter[str] = collections.Counter()

    def tap(event: object) -> None:  # called by EventBus.publish right after the inbox puts
        now = time.perf_counter_ns()
        if type(event) is Tick:
            if event.tick_id % k == 0:
                stamps.published[event.tick_id] = now
        elif type(event) is OrderIntent:
            tick_id = origin.get(event.intent_id)
            if tick_id is not None:
                stamps.intent[tick_id] = now
        elif type(event) is OrderUpdate and event.status is OrderStatus.REJECTED and event.reason.startswith("risk:"):
            refusals[event.reason] += 1

    clock = SimClock(ticks[0].ts_ns, speed=1.0)  # paced: the actors see live-like time; ticks may conflate
    calendar = settings.market_calendar()  # as App builds it for the built-in market
    config = latency_risk_config(settings)
    end = datetime.fromtimestamp(ticks[-1].ts_ns / NS_PER_SECOND, tz=IST).time()
    if end > config.no_entry_after:
        raise SystemExit(f"bench/bus.py: the paced run would end at {end:%H:%M} IST, after no_entry_after "
                         f"{config.no_entry_after:%H:%M}: give fewer --latency-seconds")
    manager = RiskManager(config, calendar=calendar, now_ns=clock.now_ns)
    ids = IdFactory(time.time_ns())
    bus = EventBus()
    if attach is not None:
        attach(bus)
    broker = StampingBroker(clock, PaperBrokerConfig(latency_ms=settings.paper.latency_ms,
                                                     slippage_ticks=settings.paper.slippage_ticks),
                            calendar, capital=manager.capital)
    journal = Journal(journal_dir / "paper.sqlite3") if journal_dir is not None else None
    portfolio = PortfolioActor(bus, manager.capital)
    risk = RiskGateActor(bus, manager, clock, ids, broker=broker, journal=journal)
    execution = ExecutionActor(bus, broker, clock, max_orders_per_second=config.max_orders_per_second,
                               journal=OrderJournal(journal) if journal is not None else None)
    strategy = StrategyActor(bus, [IntentEveryKth(k, contract, origin)], StrategyContext(instruments, ids),
                             auto_execution=True,
                             save_state=(lambda name, doc: journal.save_state(name, doc, clock.now_ns()))
                             if journal is not None else None)
    if journal is not None:
        broker.persist_with(lambda: journal.save_state("paper_broker", paper_state(broker), clock.now_ns()))
    market = PacedReplay(ticks, rate)
    feed = FeedActor(bus, market, instruments, clock, lossless=False, name="feed")
    bus.tap(tap)
    supervisor = Supervisor()
    for actor in (portfolio, risk, execution, strategy):
        supervisor.start(actor)
    supervisor.start(feed)
    await supervisor.task("feed")

    async def settle() -> None:
        await bus.wait_idle()
        await execution.settle()
        await bus.wait_idle()

    try:
        await asyncio.wait_for(settle(), timeout=30)
    finally:
        await execution.close()
        await supervisor.stop()
        if journal is not None:
            journal.close()

    for intent_id, tick_id in origin.items():
        placed = broker.placed_ns.get(intent_id)
        if placed is not None:
            stamps.order[tick_id] = placed
    return Latency(
        name="bus + 5 actors" + (" + journal" if journal is not None else ""), rate=rate, every_kth=k,
        ticks=feed.ticks_in, seconds=market.seconds,
        batches=market.batches, sleeps=market.sleeps, sampled_ticks=len(stamps.published), intents=strategy.intents,
        approved=risk.approved, refused=risk.rejected, orders=execution.orders_placed, fills=portfolio.fills,
        conflated=bus.conflated, refusals=dict(refusals), samples_ns=stamps.latencies_ns(len(ticks) * WARMUP_FRACTION))


# -- driver ---------------------------------------------------------------------------------------------------------
def loop_name() -> str:
    loop = asyncio.get_running_loop()
    if _uvloop is not None and type(loop).__module__.startswith("uvloop"):
        return f"uvloop {importlib.metadata.version('uvloop')}"
    return f"asyncio {type(loop).__name__}"


async def profiled(label: str, make: Callable[[], Awaitable[T]], top: int = 10) -> T:
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        result = await make()
    finally:
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    note(f"\n--- cProfile of {label}: top {top} by tottime (profiling slows everything ~2-3x) ---")
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    note("\n".join(line for line in lines[start:] if line.strip()))
    return result


def recording_instruments(recording: Recording) -> InstrumentMaster:
    instruments = InstrumentMaster()
    for listed in recording.listed:
        for instrument in listed:
            if isinstance(instrument, OptionContract):
                instruments.add(instrument)
            else:
                instruments.add_index(instrument)
    return instruments


def check_approvals(latency: Latency) -> None:
    """A latency run in which the risk gate refuses most intents measures nothing: fail it, naming the reasons."""
    if latency.intents and latency.approved > MIN_APPROVED_SHARE * latency.intents:
        return
    reasons = "; ".join(f"{count}x {reason}" for reason, count in
                        sorted(latency.refusals.items(), key=lambda item: -item[1])[:3])
    raise SystemExit(f"bench/bus.py: the risk gate approved {latency.approved} of {latency.intents} intents in the "
                     f"latency run (needs more than {MIN_APPROVED_SHARE:.0%}): {reasons or 'no intents'}")


def figures(baseline: Throughput, real: Throughput, replay: Throughput, latency: Latency,
            latency_baseline: Latency) -> list[Figure]:
    rows = [
        Figure("bus + 5 actors, synthetic market (App backtest)", real.per_second, "ev/s", BASELINE_LABEL,
               baseline.per_second),
        Figure("bus + 5 actors, replayed ticks (App backtest)", replay.per_second, "ev/s", BASELINE_LABEL,
               baseline.per_second),
    ]
    for path in ("tick→intent", "tick→order"):
        ours, base = latency.stats_us[path], latency_baseline.stats_us[path]
        if not ours.get("n") or not base.get("n"):
            raise SystemExit(f"bench/bus.py: no {path} samples (bus + 5 actors: {int(ours.get('n', 0))}, baseline: "
                             f"{int(base.get('n', 0))}); run longer (--latency-seconds) or with a smaller --every-kth")
        for q in ("p50", "p99"):
            rows.append(Figure(f"{path} {q} at a paced {latency.rate:,.0f} ticks/s", ours[q], "µs",
                               f"{BASELINE_LABEL} paced alike", base[q]))
    return rows


def journal_figures(with_journal: Latency, without: Latency) -> list[Figure]:
    """What the journal costs on the order path: the same paced run with it on against off, in the same run."""
    ours, base = with_journal.stats_us["tick→order"], without.stats_us["tick→order"]
    if not ours.get("n") or not base.get("n"):
        raise SystemExit("bench/bus.py: no tick→order samples with the journal on; run longer (--latency-seconds)")
    return [Figure(f"tick→order {q} with the journal on", ours[q], "µs", "the same run, journal off", base[q])
            for q in ("p50", "p99")]


def detail_report(recording: Recording, baseline: Throughput, real: Throughput, replay: Throughput,
                  latency: Latency, latency_baseline: Latency) -> None:
    """The --verbose tables (standard error)."""
    rows = [
        ("(a) baseline: 5 coroutines, 4 asyncio.Queue", baseline),
        ("(b) App backtest: synthetic market + bus + 5 actors", real),
        ("(b') App backtest: replayed ticks, bus + 5 actors", replay),
    ]
    note()
    note(f"{'throughput':<54}{'events':>11}{'wall s':>9}{'events/s':>12}{'÷ (a)':>8}")
    for label, row in rows:
        note(f"{label:<54}{row.events:>11,}{row.seconds:>9.2f}{row.per_second:>12,.0f}"
             f"{row.per_second / baseline.per_second:>8.3f}")
    note(f"  (a) queues hold {BASELINE_QUEUE_SIZE} events; events = ticks through all 5 stages")
    for label, row in rows[1:]:
        note(f"  {label[:4]} bus.published {row.published:,}, deliveries to inboxes {row.deliveries:,} "
             f"({row.deliveries / max(row.events, 1):.2f} per tick); signals {row.counters.get('signals', 0)}, "
             f"intents {row.counters.get('intents', 0)}, fills {row.counters.get('fills', 0)}, "
             f"conflated {row.counters.get('conflated', 0)}")
    same = real.counters == replay.counters
    note(f"  (b) and (b') counters {'identical' if same else 'DIFFER'} (same seed, same tick stream; "
         "bus.published also counts the App's heartbeats, one per 5 s of wall time)")
    market_share = real.seconds - replay.seconds
    note(f"  synthetic market generation ≈ {max(market_share, 0):.2f} s of (b)'s {real.seconds:.2f} s "
         f"(untimed generation took {recording.seconds:.2f} s)")
    for run in (latency, latency_baseline):
        note()
        note(f"{run.name}: {run.ticks:,} ticks paced at {run.rate:,.0f}/s in {run.runs} run(s), {run.seconds:.2f} s, "
             f"{run.batches:,} batches ({run.sleeps:,} feed sleeps); {run.sampled_ticks:,} sampled ticks "
             f"(every {run.every_kth:,}th), the first {WARMUP_FRACTION:.0%} of each run not counted")
        note(f"{'µs':<44}{'n':>7}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}")
        for label, s in run.stats_us.items():
            if s.get("n"):
                note(f"{label:<44}{int(s['n']):>7}{s['p50']:>9.1f}{s['p90']:>9.1f}{s['p99']:>9.1f}{s['max']:>9.1f}")
            else:
                note(f"{label:<44}{0:>7}")
    for reason, count in latency.refusals.items():
        note(f"  refused {count}x: {reason}")


def results_json(loop: str, start: str, recording: Recording, baseline: Throughput, real: Throughput,
                 replay: Throughput, latency: Latency, latency_baseline: Latency) -> dict[str, Any]:
    def throughput(row: Throughput) -> dict[str, Any]:
        return {"events": row.events, "seconds": round(row.seconds, 4), "events_per_s": round(row.per_second, 1),
                "published": row.published, "deliveries": row.deliveries}

    return {
        "loop": loop,
        "python": platform.python_version(),
        "sim_start": start,
        "events": baseline.events,
        "generation": {"ticks": recording.ticks, "seconds": round(recording.seconds, 4),
                       "ticks_per_s": round(recording.ticks / recording.seconds, 1)},
        "baseline": {**throughput(baseline), "queue_size": BASELINE_QUEUE_SIZE},
        "app": {**throughput(real), "counters": real.counters},
        "app_replay": {**throughput(replay), "counters": replay.counters},
        "ratio_app_to_baseline": round(real.per_second / baseline.per_second, 4),
        "ratio_replay_to_baseline": round(replay.per_second / baseline.per_second, 4),
        "latency": latency.as_dict(),
        "latency_baseline": latency_baseline.as_dict(),
    }


async def bench(args: argparse.Namespace) -> tuple[list[Figure], dict[str, Any]]:
    start = QUICK_START if args.quick else FULL_START
    settings = backtest_settings(start)
    latency_seconds = args.latency_seconds or (LATENCY_SECONDS_QUICK if args.quick else LATENCY_SECONDS)
    k = args.every_kth
    loop = loop_name()
    note(f"bench/bus.py — {'quick' if args.quick else 'full'} run; loop: {loop}; "
         f"Python {platform.python_version()} on {platform.machine()}")

    recording = await record_market(settings)
    ticks = recording.flat()
    # Keep the recording out of the collector's scans so it does not tax the timed runs below.
    gc.collect()
    gc.freeze()
    note(f"pre-generated {len(ticks):,} ticks in {len(recording.batches):,} batches from the synthetic market "
         f"(sim start {start}) in {recording.seconds:.2f} s = {len(ticks) / recording.seconds:,.0f} ticks/s "
         "(market alone, untimed below)")

    # A figure and its baseline are measured alternately, so that a change in the machine's load hits both alike:
    # (a) and (b') in turns, the best of each counting (the least disturbed); (c) and (c') in turns of a few seconds,
    # their samples pooled.
    repeat = args.repeat or (1 if args.quick else THROUGHPUT_REPEAT)
    baseline: Throughput | None = None
    replay: Throughput | None = None
    for turn in range(1, repeat + 1):
        gc.collect()
        baseline = best(baseline, await run_baseline(ticks))
        note(f"(a) baseline, turn {turn}/{repeat}: best {baseline.per_second:,.0f} events/s")
        gc.collect()
        replay = best(replay, await run_app(settings, recording))
        note(f"(b') App on replayed ticks, turn {turn}/{repeat}: best {replay.per_second:,.0f} events/s")
    assert baseline is not None and replay is not None
    gc.collect()
    real = await run_app(settings)
    note(f"(b) App on the synthetic market: {real.per_second:,.0f} events/s")

    turn_seconds = min(LATENCY_TURN_SECONDS, latency_seconds)
    turns = max(1, round(latency_seconds / turn_seconds))
    per_turn = round(LATENCY_RATE * turn_seconds)
    instruments = recording_instruments(recording)
    latency = empty_latency("bus + 5 actors", LATENCY_RATE, k)
    latency_baseline = empty_latency("baseline", LATENCY_RATE, k)
    latency_journal = empty_latency("bus + 5 actors + journal", LATENCY_RATE, k)
    for turn in range(turns):  # each turn paces the next slice of the recording, from 10:00 IST event time
        paced = paced_ticks(ticks[turn * per_turn:(turn + 1) * per_turn], per_turn, LATENCY_RATE)
        gc.collect()
        latency_baseline.add(await run_latency_baseline(paced, LATENCY_RATE, k))
        gc.collect()
        latency.add(await run_latency(paced, instruments, settings, LATENCY_RATE, k))
        gc.collect()
        with tempfile.TemporaryDirectory(prefix="bench-journal-") as journal_dir:
            latency_journal.add(await run_latency(paced, instruments, settings, LATENCY_RATE, k, Path(journal_dir)))
        note(f"(c) and (c') paced at {LATENCY_RATE:,}/s, turn {turn + 1}/{turns}: {latency.ticks:,} ticks in "
             f"{latency.seconds:.1f} s so far")
    note(f"(c) paced bus + 5 actors: {latency.ticks:,} ticks in {latency.seconds:.2f} s, one intent per "
         f"{k:,} ticks: {latency.intents:,} intents, risk gate approved {latency.approved:,} and refused "
         f"{latency.refused:,}; {latency.orders:,} orders placed, {latency.fills:,} fills, "
         f"{latency.conflated:,} ticks conflated")
    if args.verbose:
        detail_report(recording, baseline, real, replay, latency, latency_baseline)
    check_approvals(latency)
    rows = figures(baseline, real, replay, latency, latency_baseline)
    rows += journal_figures(latency_journal, latency)
    results = results_json(loop, start, recording, baseline, real, replay, latency, latency_baseline)
    if args.profile:
        await profiled("(b) App backtest, synthetic market", lambda: run_app(settings))
        await profiled("(b') App backtest, replayed ticks", lambda: run_app(settings, recording))
    return rows, results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true",
                        help=f"the last 20 minutes of the day, {LATENCY_SECONDS_QUICK:g} s of paced latency (seconds)")
    parser.add_argument("--json", action="store_true", help="then print the results as one JSON object (last line)")
    parser.add_argument("--verbose", action="store_true", help="detail tables on standard error")
    parser.add_argument("--profile", action="store_true", help="then cProfile (b) and (b'): top 10 by tottime")
    parser.add_argument("--repeat", type=int, default=0, metavar="N",
                        help=f"turns of (a) and (b'), best counts (default {THROUGHPUT_REPEAT}, --quick 1)")
    parser.add_argument("--every-kth", type=int, default=LATENCY_EVERY_KTH, metavar="K",
                        help=f"(c): one intent per K ticks (default {LATENCY_EVERY_KTH})")
    parser.add_argument("--latency-seconds", type=float, default=0.0, metavar="S",
                        help=f"(c): paced seconds (default {LATENCY_SECONDS:g}, --quick {LATENCY_SECONDS_QUICK:g})")
    args = parser.parse_args(argv)
    if args.every_kth < 1:
        parser.error("--every-kth must be at least 1")
    if args.repeat < 0 or args.latency_seconds < 0:
        parser.error("--repeat and --latency-seconds must not be negative")
    configure_logging("WARNING", io.StringIO())
    coro = bench(args)
    rows, results = _uvloop.run(coro) if _uvloop is not None else asyncio.run(coro)
    emit(rows, results if args.json else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
