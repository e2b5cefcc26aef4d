"""EventBus and Inbox semantics: routing, non-blocking publish, tick conflation, ordering, idleness, memory bound."""

from __future__ import annotations

import asyncio
import inspect
import random
from dataclasses import dataclass
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import trader.bus
from trader.actors.base import Actor
from trader.bus import _COMPACT_THRESHOLD, EventBus, Inbox
from trader.events import (
    Command,
    CommandKind,
    Fill,
    IntentPurpose,
    OrderIntent,
    OrderRequest,
    OrderStatus,
    OrderType,
    OrderUpdate,
    RiskEvent,
    RiskLevel,
    Side,
    Tick,
    TradingState,
)
from trader.market.instruments import OptionContract

CONTRACT = OptionContract.parse("NIFTY2611325000CE", instrument_token=101)


def tick(token: int, seq: int, price: int = 10_000) -> Tick:
    return Tick(ts_ns=seq, instrument_token=token, last_price=price, tick_id=seq)


def non_tick(seq: int) -> object:
    """One of the never-dropped kinds, chosen by ``seq`` so every kind shows up."""
    kind = seq % 5
    if kind == 0:
        intent = OrderIntent(ts_ns=seq, intent_id=f"I{seq}", strategy_id="s", contract=CONTRACT, side=Side.BUY,
                             quantity=65, order_type=OrderType.MARKET, purpose=IntentPurpose.ENTRY,
                             expected_price=10_000)
        return OrderRequest(ts_ns=seq, intent=intent, tag=f"I{seq}")
    if kind == 1:
        return OrderUpdate(ts_ns=seq, intent_id=f"I{seq}", order_id=f"O{seq}", status=OrderStatus.OPEN)
    if kind == 2:
        return Fill(ts_ns=seq, fill_id=f"F{seq}", intent_id=f"I{seq}", order_id=f"O{seq}", contract=CONTRACT,
                    side=Side.BUY, quantity=65, price=10_000, expected_price=10_000, charges=0)
    if kind == 3:
        return RiskEvent(ts_ns=seq, state=TradingState.ACTIVE, level=RiskLevel.LOW, reason=f"r{seq}")
    return Command(ts_ns=seq, kind=CommandKind.HALT, reason=f"c{seq}")


NON_TICK_TYPES = (OrderRequest, OrderUpdate, Fill, RiskEvent, Command)


def subscribe_all(bus: EventBus, inbox: Inbox) -> None:
    bus.subscribe(Tick, inbox)
    for event_type in NON_TICK_TYPES:
        bus.subscribe(event_type, inbox)


def drain(inbox: Inbox) -> list[object]:
    out = []
    while (event := inbox.get_nowait()) is not None:
        out.append(event)
        inbox.task_done()
    return out


# -- routing ------------------------------------------------------------------------------------------------------

def test_publish_routes_by_exact_type_to_every_subscriber() -> None:
    bus = EventBus()
    ticks_a, ticks_b, fills, both = Inbox("a"), Inbox("b"), Inbox("fills"), Inbox("both")
    bus.subscribe(Tick, ticks_a)
    bus.subscribe(Tick, ticks_b)
    bus.subscribe(Fill, fills)
    bus.subscribe(Tick, both)
    bus.subscribe(Fill, both)
    seen: list[object] = []
    bus.tap(seen.append)

    t = tick(1, 1)
    f = non_tick(2)
    bus.publish(t)
    bus.publish(f)

    assert drain(ticks_a) == [t]
    assert drain(ticks_b) == [t]
    assert drain(fills) == [f]
    assert drain(both) == [t, f]
    assert seen == [t, f]
    assert bus.published == 2


def test_routing_is_by_exact_type_not_isinstance() -> None:
    @dataclass(frozen=True)
    class SpecialTick(Tick):
        pass

    bus = EventBus()
    inbox = Inbox("ticks")
    bus.subscribe(Tick, inbox)
    bus.publish(SpecialTick(ts_ns=1, instrument_token=1, last_price=1))
    bus.publish(non_tick(1))  # an OrderUpdate: nobody subscribed
    assert len(inbox) == 0
    assert inbox.get_nowait() is None


def test_subscribing_the_same_inbox_twice_to_a_type_raises() -> None:
    bus = EventBus()
    inbox = Inbox("x")
    bus.subscribe(Tick, inbox)
    bus.subscribe(Fill, inbox)  # another type is fine
    with pytest.raises(ValueError, match="already subscribes"):
        bus.subscribe(Tick, inbox)
    bus.publish(tick(1, 1))
    assert len(inbox) == 1  # still delivered once
    assert bus.inboxes == (inbox,)


# -- publish never blocks -----------------------------------------------------------------------------------------

async def test_publish_is_synchronous_and_never_waits_for_a_slow_consumer() -> None:
    assert not inspect.iscoroutinefunction(EventBus.publish)
    bus = EventBus()
    slow = Inbox("slow")  # nobody ever reads it
    bus.subscribe(OrderUpdate, slow)
    other_task_ran = False

    async def other() -> None:
        nonlocal other_task_ran
        other_task_ran = True

    task = asyncio.create_task(other())
    events = [non_tick(5 * i + 1) for i in range(20_000)]
    for event in events:
        bus.publish(event)
    # The publisher never yielded to the loop while publishing 20 000 events into an unread inbox.
    assert not other_task_ran
    assert len(slow) == 20_000
    await task
    assert drain(slow) == events


async def test_publish_wakes_a_waiting_reader() -> None:
    bus = EventBus()
    inbox = Inbox("r")
    bus.subscribe(Command, inbox)
    reader = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert not reader.done()
    cmd = non_tick(4)
    bus.publish(cmd)
    assert await asyncio.wait_for(reader, 1) is cmd


# -- conflation ---------------------------------------------------------------------------------------------------

def test_conflating_inbox_keeps_only_the_newest_pending_tick_per_instrument() -> None:
    bus = EventBus()
    inbox = Inbox("strategy", conflate_ticks=True)
    subscribe_all(bus, inbox)
    a1, a2, a3, b1, a4 = tick(1, 1), tick(1, 2), tick(1, 3), tick(2, 4), tick(1, 5)
    for t in (a1, a2, a3, b1, a4):
        bus.publish(t)
    assert inbox.conflated == 3
    assert bus.conflated == 3
    # b1 is never conflated with instrument 1's ticks; a4 is delivered where it was published (after b1).
    assert drain(inbox) == [b1, a4]
    assert inbox.delivered == 2
    assert inbox.idle


def test_conflation_only_applies_to_pending_ticks() -> None:
    inbox = Inbox("x", conflate_ticks=True)
    a1, a2 = tick(1, 1), tick(1, 2)
    inbox.put(a1)
    assert inbox.get_nowait() is a1  # handed out: not pending any more
    inbox.put(a2)
    assert inbox.conflated == 0
    assert inbox.get_nowait() is a2
    inbox.task_done()
    inbox.task_done()
    assert inbox.idle


def test_non_conflating_inbox_gets_every_tick_in_order() -> None:
    bus = EventBus()
    inbox = Inbox("recorder", conflate_ticks=False)
    bus.subscribe(Tick, inbox)
    ticks = [tick(i % 3, i) for i in range(1_000)]
    for t in ticks:
        bus.publish(t)
    assert drain(inbox) == ticks
    assert inbox.conflated == 0
    assert bus.conflated == 0


def test_non_tick_events_survive_thousands_of_ticks_in_a_conflating_inbox() -> None:
    rng = random.Random(1234)
    bus = EventBus()
    inbox = Inbox("strategy", conflate_ticks=True)
    subscribe_all(bus, inbox)
    published: list[object] = []
    for seq in range(20_000):
        event = non_tick(seq) if rng.random() < 0.1 else tick(rng.randrange(4), seq)
        published.append(event)
        bus.publish(event)

    delivered = drain(inbox)
    sent_non_ticks = [e for e in published if type(e) is not Tick]
    assert [e for e in delivered if type(e) is not Tick] == sent_non_ticks
    last_tick = {}
    for e in published:
        if type(e) is Tick:
            last_tick[e.instrument_token] = e
    delivered_ticks = [e for e in delivered if type(e) is Tick]
    for t in last_tick.values():
        assert t in delivered_ticks
    sent_ticks = len(published) - len(sent_non_ticks)
    assert inbox.conflated == sent_ticks - len(delivered_ticks)
    # Every delivered tick comes out in publish order relative to everything else.
    index = {id(e): i for i, e in enumerate(published)}
    positions = [index[id(e)] for e in delivered]
    assert positions == sorted(positions)


_OP = st.one_of(
    st.tuples(st.just("tick"), st.integers(0, 3)),
    st.tuples(st.just("event"), st.just(0)),
    st.tuples(st.just("read"), st.integers(0, 4)),
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(ops=st.lists(_OP, max_size=120), threshold=st.sampled_from([3, 8, 50_000]))
def test_conflation_matches_the_reference_model(ops: list[tuple[str, int]], threshold: int) -> None:
    """Ticks and non-tick events interleaved with reads, compared to the specification as a model.

    Model: a FIFO where publishing a tick removes that instrument's still-pending tick (if any) and appends the new
    one. So non-tick events come out complete and in order, each instrument's last tick is delivered, and a
    delivered tick keeps its place relative to the events around it. A small compaction threshold exercises the
    memory-bound path too.
    """
    with mock.patch.object(trader.bus, "_COMPACT_THRESHOLD", threshold):
        bus = EventBus()
        inbox = Inbox("strategy", conflate_ticks=True)
        subscribe_all(bus, inbox)
        model: list[object] = []
        model_conflated = 0
        delivered: list[object] = []
        expected: list[object] = []
        published: list[object] = []
        for seq, (op, arg) in enumerate(ops):
            if op == "read":
                for _ in range(arg):
                    event = inbox.get_nowait()
                    if model:
                        expected.append(model.pop(0))
                        assert event is expected[-1]
                        delivered.append(event)
                        inbox.task_done()
                    else:
                        assert event is None
                continue
            event = tick(arg, seq) if op == "tick" else non_tick(seq)
            if op == "tick":
                stale = [e for e in model if type(e) is Tick and e.instrument_token == arg]
                if stale:
                    model.remove(stale[0])
                    model_conflated += 1
            model.append(event)
            published.append(event)
            bus.publish(event)
        rest = drain(inbox)
        assert rest == model
        delivered += rest

        assert inbox.conflated == model_conflated
        assert inbox.idle
        non_ticks = [e for e in published if type(e) is not Tick]
        assert [e for e in delivered if type(e) is not Tick] == non_ticks
        last_tick = {e.instrument_token: e for e in published if type(e) is Tick}
        assert all(any(d is t for d in delivered) for t in last_tick.values())
        order = [next(i for i, p in enumerate(published) if p is d) for d in delivered]
        assert order == sorted(order)


# -- memory bound -------------------------------------------------------------------------------------------------

def test_compaction_bounds_an_unread_conflating_inbox() -> None:
    inbox = Inbox("lagging", conflate_ticks=True)
    n = 3 * _COMPACT_THRESHOLD + 777
    markers = []
    max_len = 0
    for seq in range(n):
        inbox.put(tick(seq % 2, seq))
        if seq % 10_007 == 0:
            marker = non_tick(seq)
            markers.append(marker)
            inbox.put(marker)
        max_len = max(max_len, len(inbox))
    # Three compaction cycles: after every put the deque holds at most the threshold (+ the item just added).
    assert max_len <= _COMPACT_THRESHOLD + 1, f"inbox grew to {max_len} items (threshold {_COMPACT_THRESHOLD})"
    delivered = drain(inbox)
    # Compaction never drops a non-tick event nor the live tick of an instrument.
    assert [e for e in delivered if type(e) is not Tick] == markers
    assert [e for e in delivered if type(e) is Tick] == [tick((n - 2) % 2, n - 2), tick((n - 1) % 2, n - 1)]
    assert inbox.conflated == n - 2
    assert inbox.idle


def test_compaction_with_a_slow_reader_loses_nothing_that_must_be_delivered() -> None:
    inbox = Inbox("lagging", conflate_ticks=True)
    n = 2 * _COMPACT_THRESHOLD + 5_000
    published: list[object] = []
    delivered: list[object] = []
    max_len = 0
    for seq in range(n):
        event = non_tick(seq) if seq % 4_999 == 0 else tick(seq % 2, seq)
        published.append(event)
        inbox.put(event)
        max_len = max(max_len, len(inbox))
        if seq % 997 == 0:  # the reader takes one event now and then
            taken = inbox.get_nowait()
            assert taken is not None
            delivered.append(taken)
            inbox.task_done()
    delivered += drain(inbox)
    assert max_len < 2 * _COMPACT_THRESHOLD  # without compaction it would reach ~n
    assert [e for e in delivered if type(e) is not Tick] == [e for e in published if type(e) is not Tick]
    assert delivered[-2:] == [e for e in published if type(e) is Tick][-2:]
    index = {id(e): i for i, e in enumerate(published)}
    positions = [index[id(e)] for e in delivered]
    assert positions == sorted(positions)
    assert len(delivered) + inbox.conflated == n
    assert inbox.idle


# -- push_front ---------------------------------------------------------------------------------------------------

def test_push_front_redelivers_before_everything_else() -> None:
    inbox = Inbox("x")
    e1, e2 = non_tick(1), non_tick(2)
    inbox.put(e1)
    inbox.put(e2)
    assert inbox.get_nowait() is e1
    inbox.task_done()  # the failed delivery is finished ...
    inbox.push_front(e1)  # ... and handed back
    assert not inbox.idle
    assert drain(inbox) == [e1, e2]
    assert inbox.idle


def test_push_front_of_a_tick_in_a_conflating_inbox() -> None:
    inbox = Inbox("x", conflate_ticks=True)
    t1, other = tick(1, 1), non_tick(2)
    inbox.put(t1)
    inbox.put(other)
    assert inbox.get_nowait() is t1
    inbox.task_done()
    inbox.push_front(t1)  # no newer tick for instrument 1: redelivered first
    assert drain(inbox) == [t1, other]

    t2, t3 = tick(1, 3), tick(1, 4)
    inbox.put(t2)
    assert inbox.get_nowait() is t2
    inbox.put(t3)
    inbox.task_done()
    inbox.push_front(t2)  # a newer tick is already queued: the stale one is not redelivered
    assert drain(inbox) == [t3]
    assert inbox.idle


async def test_push_front_wakes_a_waiting_reader() -> None:
    inbox = Inbox("x")
    e = non_tick(1)
    reader = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.push_front(e)
    assert await asyncio.wait_for(reader, 1) is e


# -- wait_idle ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Hop:
    ts_ns: int
    stage: int


class Relay(Actor):
    """Handles ``Hop(stage)`` slowly and republishes ``Hop(stage + 1)`` until ``last``."""

    def __init__(self, bus: EventBus, name: str, last: int) -> None:
        self.handled: list[int] = []
        self.last = last
        super().__init__(bus, conflate_ticks=False, name=name)

    def subscriptions(self) -> tuple[type, ...]:
        return (Hop,)

    async def handle(self, event: Hop) -> None:
        await asyncio.sleep(0.005)
        self.handled.append(event.stage)
        if event.stage < self.last:
            self.bus.publish(Hop(event.ts_ns, event.stage + 1))


class Sink(Actor):
    def __init__(self, bus: EventBus, name: str, types: tuple[type, ...], delay: float = 0.005) -> None:
        self.types = types
        self.delay = delay
        self.handled: list[object] = []
        super().__init__(bus, conflate_ticks=False, name=name)

    def subscriptions(self) -> tuple[type, ...]:
        return self.types

    async def handle(self, event: object) -> None:
        await asyncio.sleep(self.delay)  # the event is taken, not yet handled
        self.handled.append(event)
        if type(event) is Command:
            self.bus.publish(RiskEvent(ts_ns=event.ts_ns, state=TradingState.HALTED, level=RiskLevel.LOW,
                                       reason="cascade"))


class GatedSink(Sink):
    """Takes an event, then handles it only once ``gate`` opens."""

    def __init__(self, bus: EventBus, name: str, types: tuple[type, ...]) -> None:
        self.gate = asyncio.Event()
        self.inside = asyncio.Event()
        super().__init__(bus, name, types)

    async def handle(self, event: object) -> None:
        self.inside.set()
        await self.gate.wait()
        self.handled.append(event)


async def test_wait_idle_waits_until_events_are_handled_not_merely_taken() -> None:
    bus = EventBus()
    sink = GatedSink(bus, "sink", (OrderUpdate,))
    task = asyncio.create_task(sink.run())
    try:
        events = [non_tick(5 * i + 1) for i in range(5)]
        for e in events:
            bus.publish(e)
        await asyncio.wait_for(sink.inside.wait(), 5)  # the sink has taken the first event and is inside handle
        idle = asyncio.create_task(bus.wait_idle())
        for _ in range(3):
            await asyncio.sleep(0)
        assert not idle.done() and sink.handled == []  # taken, not handled: not idle
        sink.gate.set()
        await asyncio.wait_for(idle, 5)
        assert sink.handled == events
        assert all(inbox.idle for inbox in bus.inboxes)
    finally:
        task.cancel()


async def test_wait_idle_includes_events_published_while_waiting() -> None:
    bus = EventBus()
    first = Sink(bus, "commands", (Command,), delay=0.005)  # republishes a RiskEvent ...
    second = Sink(bus, "risk", (RiskEvent,), delay=0.05)  # ... which a slower actor handles
    tasks = [asyncio.create_task(a.run()) for a in (first, second)]
    try:
        bus.publish(Command(ts_ns=1, kind=CommandKind.HALT))  # only "commands" is busy when waiting starts
        await asyncio.wait_for(bus.wait_idle(), 2)
        assert len(first.handled) == 1
        [cascaded] = second.handled
        assert isinstance(cascaded, RiskEvent) and cascaded.reason == "cascade"
    finally:
        for task in tasks:
            task.cancel()


async def test_wait_idle_waits_for_an_actor_that_republishes_to_itself() -> None:
    bus = EventBus()
    relay = Relay(bus, "relay", last=6)
    task = asyncio.create_task(relay.run())
    try:
        bus.publish(Hop(1, 1))
        await asyncio.wait_for(bus.wait_idle(), 2)
        assert relay.handled == [1, 2, 3, 4, 5, 6]
    finally:
        task.cancel()


async def test_wait_idle_returns_at_once_when_nothing_is_pending() -> None:
    bus = EventBus()
    Sink(bus, "idle", (Fill,))
    await asyncio.wait_for(bus.wait_idle(), 0.5)
