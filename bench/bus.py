"""Bus benchmark, run by ``make bench`` as ``.venv/bin/python bench/bus.py [--quick] [--json] [--profile]``.

One run measures, on one event loop (uvloop if importable, as ``trader.cli`` does):

(a) baseline: a bare asyncio pipeline, five coroutines joined by four bounded ``asyncio.Queue``s, carrying a fixed
    list of ``Tick``s pre-generated from the synthetic market (outside every timing); each stage does trivial work.
(b) the real thing: ``trader.app.App`` in backtest mode (unpaced ``SimClock``, synthetic market, all five actors on the
    real bus); events/s = ``ticks_in`` ÷ wall time. This includes the synthetic market's own cost of generating the
    ticks (a Black-Scholes price per option tick), which the baseline does not pay.
(b') the same ``App`` with its feed replaying the pre-generated ticks (the identical stream, batch by batch), so the
    number is bus + actors only, comparable with (a).
(c) tick → intent latency at a paced 5,000 ticks/s through the real bus and all five actor kinds (feed, strategy,
    risk gate, execution on the paper broker, portfolio), with a bench strategy plugin that emits an ``OrderIntent``
    for every Kth tick. The tick's publish time is stamped by a bus tap; a probe actor stamps the moment it takes the
    intent (and the risk gate's ``OrderRequest``) from its inbox, all with ``time.perf_counter_ns``.

Logging is configured at WARNING into an in-memory stream so log I/O does not distort the timings.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import gc
import importlib.metadata
import io
import json
import math
import platform
import pstats
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from trader.actors.base import Actor, Supervisor
from trader.actors.execution import ExecutionActor
from trader.actors.feed import FeedActor
from trader.actors.portfolio import PortfolioActor
from trader.actors.risk import RiskGateActor, RiskLimits
from trader.actors.strategy import StrategyActor
from trader.adapters.paper import PaperBroker, PaperBrokerConfig
from trader.app import App
from trader.bus import EventBus
from trader.clock import NS_PER_SECOND, SimClock
from trader.config import Settings, load_settings
from trader.events import Fill, IntentPurpose, OrderIntent, OrderRequest, OrderType, OrderUpdate, Side, Tick
from trader.ids import IdFactory
from trader.logging import configure_logging
from trader.market.instruments import IndexInstrument, InstrumentMaster, OptionContract, OptionType
from trader.strategies.base import StrategyContext

try:
    import uvloop as _uvloop
except ImportError:  # not on Linux: the default loop, as trader.cli does
    _uvloop = None  # type: ignore[assignment]

T = TypeVar("T")

FULL_START = "2026-11-20T09:00"  # Fri 20 Nov 2026, a normal session: the whole day, ~1.14 M ticks
QUICK_START = "2026-11-20T14:30"  # the same day from 14:30: the last hour, ~0.18 M ticks
BASELINE_QUEUE_SIZE = 1_000
LATENCY_RATE = 5_000  # ticks/s
# The bench strategy emits one intent per K ticks. Every intent becomes an order and a fill on the paper broker, so K
# sets the order flow competing with the ticks: K=50 is 100 orders/s at 5,000 ticks/s (already 12x Kite's limit);
# K=10 (500 orders/s) fills ~5 orders on each tick of the traded contract and that burst shows in the tick tail.
LATENCY_EVERY_KTH = 50
LATENCY_SECONDS = 5.0
LATENCY_SECONDS_QUICK = 1.0
WARMUP_FRACTION = 0.1
_MIN_SLEEP_S = 0.001  # latency samples from the first 10 % of the paced run are not counted


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


# -- (b) the real App ---------------------------------------------------------------------------------------------
async def run_app(settings: Settings, recording: Recording | None = None) -> Throughput:
    """The App as built for backtest; with ``recording`` its feed replays it instead of running the market."""
    app = App(settings)
    if recording is not None:
        app.feeds = [FeedActor(app.bus, ReplayMarket(recording, app.clock), app.instruments, app.clock,
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


class IntentEveryKth:
    """A ``Strategy`` plugin for the bench: an intent for every Kth tick (by ``tick_id``), alternately buying and
    selling one lot of one contract. The intent's origin (its tick's id and publish time) goes into ``origin``."""

    def __init__(self, k: int, contract: OptionContract, published: dict[int, int],
                 origin: dict[str, tuple[int, int]]) -> None:
        self.strategy_id = "bench_every_kth"
        self._k = k
        self._contract = contract
        self._published = published
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
        self._origin[intent.intent_id] = (tick.tick_id, self._published[tick.tick_id])
        return (intent,)

    def on_fill(self, fill: Fill) -> None:
        pass

    def on_order_update(self, update: OrderUpdate) -> None:
        pass


class Probe(Actor):
    """A plain subscriber: stamps when it takes an intent / an approved order request from its inbox."""

    name = "bench-probe"

    def __init__(self, bus: EventBus) -> None:
        self.intent_ns: dict[str, int] = {}
        self.request_ns: dict[str, int] = {}
        super().__init__(bus, conflate_ticks=False)

    def subscriptions(self) -> Iterable[type]:
        return (OrderIntent, OrderRequest)

    async def handle(self, event: Any) -> None:
        now = time.perf_counter_ns()
        if type(event) is OrderIntent:
            self.intent_ns[event.intent_id] = now
        else:
            self.request_ns[event.intent.intent_id] = now


@dataclass(slots=True)
class Latency:
    rate: float
    ticks: int
    seconds: float
    batches: int
    sleeps: int
    every_kth: int
    sampled_ticks: int
    intents: int
    approved: int
    fills: int
    conflated: int
    stats_us: dict[str, dict[str, float]]


def percentiles_us(values_ns: list[int]) -> dict[str, float]:
    if not values_ns:
        return {"n": 0}
    ordered = sorted(values_ns)

    def rank(q: float) -> float:
        return ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)] / 1_000

    return {"n": len(ordered), "p50": rank(50), "p90": rank(90), "p99": rank(99), "max": ordered[-1] / 1_000}


def pick_contract(ticks: list[Tick], instruments: InstrumentMaster) -> OptionContract:
    """The ATM call at the first index tick of the list."""
    spot = next(t.last_price for t in ticks if isinstance(instruments.by_token(t.instrument_token), IndexInstrument))
    option = next(c for t in ticks if isinstance(c := instruments.by_token(t.instrument_token), OptionContract))
    atm = instruments.nearest_strike(option.underlying, option.expiry, spot, OptionType.CE)
    assert atm is not None
    return atm


async def run_latency(source: list[Tick], instruments: InstrumentMaster, seconds: float,
                      rate: float = LATENCY_RATE, k: int = LATENCY_EVERY_KTH) -> Latency:
    count = round(rate * seconds)
    assert len(source) >= count, f"need {count} ticks, have {len(source)}"
    t0_ns = source[0].ts_ns
    step_ns = round(NS_PER_SECOND / rate)
    # Event time follows the pacing (tick i at t0 + i/rate), ids are renumbered so every Kth tick is sampled.
    ticks = [dataclasses.replace(t, ts_ns=t0_ns + i * step_ns, exchange_ts_ns=t0_ns + i * step_ns, tick_id=i + 1)
             for i, t in enumerate(source[:count])]
    contract = pick_contract(ticks, instruments)

    published: dict[int, int] = {}  # sampled tick id → perf_counter_ns when published on the bus
    intent_published: dict[str, int] = {}  # intent id → perf_counter_ns when the bus put it into the inboxes
    origin: dict[str, tuple[int, int]] = {}  # intent id → (its tick's id, the tick's publish time)

    def tap(event: object) -> None:  # called by EventBus.publish right after the inbox puts
        now = time.perf_counter_ns()
        kind = type(event)
        if kind is Tick:
            if event.tick_id % k == 0:  # type: ignore[attr-defined]
                published[event.tick_id] = now  # type: ignore[attr-defined]
        elif kind is OrderIntent:
            intent_published[event.intent_id] = now  # type: ignore[attr-defined]

    clock = SimClock(t0_ns, speed=1.0)  # paced: the actors see live-like time; ticks may conflate
    bus = EventBus()
    bus.tap(tap)
    capital = 10**12  # paise: the risk gate must never run out of room during the bench
    portfolio = PortfolioActor(bus, capital)
    risk = RiskGateActor(bus, RiskLimits(initial_capital=capital, max_daily_loss_pct=0.99, max_lots_per_trade=1,
                                         max_positions_per_symbol=10**6, max_total_positions=10**6))
    broker = PaperBroker(clock, PaperBrokerConfig(latency_ms=0, slippage_ticks=1))
    execution = ExecutionActor(bus, broker, clock, max_orders_per_second=10**6)
    strategy = StrategyActor(bus, [IntentEveryKth(k, contract, published, origin)],
                             StrategyContext(instruments, IdFactory(time.time_ns())), auto_execution=True,
                             conflate_ticks=True)
    probe = Probe(bus)
    market = PacedReplay(ticks, rate)
    feed = FeedActor(bus, market, instruments, clock, lossless=False, name="feed")
    supervisor = Supervisor()
    for actor in (portfolio, risk, execution, strategy, probe):
        supervisor.start(actor)
    supervisor.start(feed)
    await supervisor.task("feed")
    try:
        await asyncio.wait_for(bus.wait_idle(), timeout=10)
    finally:
        await supervisor.stop()

    warm = count * WARMUP_FRACTION
    counted = {intent_id: sent for intent_id, (tick_id, sent) in origin.items() if tick_id > warm}
    to_intent_bus = [intent_published[i] - sent for i, sent in counted.items() if i in intent_published]
    to_intent_probe = [probe.intent_ns[i] - sent for i, sent in counted.items() if i in probe.intent_ns]
    to_request_probe = [probe.request_ns[i] - sent for i, sent in counted.items() if i in probe.request_ns]
    return Latency(
        rate=rate, ticks=feed.ticks_in, seconds=market.seconds, batches=market.batches, sleeps=market.sleeps,
        every_kth=k, sampled_ticks=len(published), intents=strategy.intents, approved=risk.approved,
        fills=portfolio.fills, conflated=bus.conflated,
        stats_us={"tick→intent published": percentiles_us(to_intent_bus),
                  "tick→intent taken by a subscriber": percentiles_us(to_intent_probe),
                  "tick→OrderRequest taken (via risk gate)": percentiles_us(to_request_probe)})


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
    print(f"\n--- cProfile of {label}: top {top} by tottime (profiling slows everything ~2-3x) ---")
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    print("\n".join(line for line in lines[start:] if line.strip()))
    return result


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    start = QUICK_START if args.quick else FULL_START
    settings = backtest_settings(start)
    latency_seconds = args.latency_seconds or (LATENCY_SECONDS_QUICK if args.quick else LATENCY_SECONDS)
    loop = loop_name()
    print(f"bench/bus.py — {'quick' if args.quick else 'full'} run; loop: {loop}; "
          f"Python {platform.python_version()} on {platform.machine()}", flush=True)

    recording = await record_market(settings)
    ticks = recording.flat()
    # Keep the recording out of the collector's scans so it does not tax the timed runs below.
    gc.collect()
    gc.freeze()
    print(f"pre-generated {len(ticks):,} ticks in {len(recording.batches):,} batches from the synthetic market "
          f"(sim start {start}) in {recording.seconds:.2f} s = {len(ticks) / recording.seconds:,.0f} ticks/s "
          "(market alone, untimed below)", flush=True)

    baseline = await run_baseline(ticks)
    print(f"(a) baseline done: {baseline.per_second:,.0f} events/s", flush=True)
    real = await run_app(settings)
    print(f"(b) App done: {real.per_second:,.0f} events/s", flush=True)
    replay = await run_app(settings, recording)
    print(f"(b') App on replayed ticks done: {replay.per_second:,.0f} events/s", flush=True)
    latency = await run_latency(ticks, recording_instruments(recording), latency_seconds, k=args.every_kth)
    print("(c) latency done", flush=True)

    results = report(loop, start, recording, baseline, real, replay, latency)
    if args.profile:
        await profiled("(b) App backtest, synthetic market", lambda: run_app(settings))
        await profiled("(b') App backtest, replayed ticks", lambda: run_app(settings, recording))
    return results


def recording_instruments(recording: Recording) -> InstrumentMaster:
    instruments = InstrumentMaster()
    for listed in recording.listed:
        for instrument in listed:
            if isinstance(instrument, OptionContract):
                instruments.add(instrument)
            else:
                instruments.add_index(instrument)
    return instruments


def report(loop: str, start: str, recording: Recording, baseline: Throughput, real: Throughput,
           replay: Throughput, latency: Latency) -> dict[str, Any]:
    rows = [
        ("(a) baseline: 5 coroutines, 4 asyncio.Queue", baseline),
        ("(b) App backtest: synthetic market + bus + 5 actors", real),
        ("(b') App backtest: replayed ticks, bus + 5 actors", replay),
    ]
    print()
    print(f"{'throughput':<54}{'events':>11}{'wall s':>9}{'events/s':>12}{'÷ (a)':>8}")
    for label, row in rows:
        print(f"{label:<54}{row.events:>11,}{row.seconds:>9.2f}{row.per_second:>12,.0f}"
              f"{row.per_second / baseline.per_second:>8.3f}")
    print(f"  (a) queues hold {BASELINE_QUEUE_SIZE} events; events = ticks through all 5 stages")
    for label, row in rows[1:]:
        print(f"  {label[:4]} bus.published {row.published:,}, deliveries to inboxes {row.deliveries:,} "
              f"({row.deliveries / max(row.events, 1):.2f} per tick); signals {row.counters.get('signals', 0)}, "
              f"intents {row.counters.get('intents', 0)}, fills {row.counters.get('fills', 0)}, "
              f"conflated {row.counters.get('conflated', 0)}")
    same = real.counters == replay.counters
    print(f"  (b) and (b') counters {'identical' if same else 'DIFFER'} (same seed, same tick stream; "
          "bus.published also counts the App's heartbeats, one per 5 s of wall time)")
    market_share = real.seconds - replay.seconds
    print(f"  synthetic market generation ≈ {max(market_share, 0):.2f} s of (b)'s {real.seconds:.2f} s "
          f"(untimed generation took {recording.seconds:.2f} s)")

    print()
    print(f"latency at a paced {latency.rate:,.0f} ticks/s for {latency.seconds:.2f} s: {latency.ticks:,} ticks in "
          f"{latency.batches:,} batches ({latency.sleeps:,} feed sleeps); intent every {latency.every_kth}th tick → "
          f"{latency.intents:,} intents, {latency.approved:,} approved, {latency.fills:,} fills, "
          f"{latency.conflated:,} ticks conflated; first {WARMUP_FRACTION:.0%} not counted")
    print(f"{'µs':<44}{'n':>7}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}")
    for label, s in latency.stats_us.items():
        if s.get("n"):
            print(f"{label:<44}{int(s['n']):>7}{s['p50']:>9.1f}{s['p90']:>9.1f}{s['p99']:>9.1f}{s['max']:>9.1f}")
        else:
            print(f"{label:<44}{0:>7}")

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
        "latency": {**dataclasses.asdict(latency), "warmup_fraction": WARMUP_FRACTION},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="the last hour of the day, 1 s of paced latency")
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON object")
    parser.add_argument("--profile", action="store_true", help="then cProfile (b) and (b'): top 10 by tottime")
    parser.add_argument("--every-kth", type=int, default=LATENCY_EVERY_KTH, metavar="K",
                        help=f"(c): one intent per K ticks (default {LATENCY_EVERY_KTH})")
    parser.add_argument("--latency-seconds", type=float, default=0.0, metavar="S",
                        help=f"(c): paced seconds (default {LATENCY_SECONDS:g}, --quick {LATENCY_SECONDS_QUICK:g})")
    args = parser.parse_args(argv)
    configure_logging("WARNING", io.StringIO())
    coro = bench(args)
    results = _uvloop.run(coro) if _uvloop is not None else asyncio.run(coro)
    if args.json:
        print(json.dumps(results, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
