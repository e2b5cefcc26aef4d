"""ExecutionActor: orders reach the broker exactly once and within the per-second order rate.

A scripted fake broker decides, attempt by attempt, what happens to each ``place_order`` call: accepted, rejected,
rate limited (429), timed out before the broker saw the order, or timed out after it had accepted it.
"""

from __future__ import annotations

import asyncio
import io
import itertools
from collections import Counter, deque
from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.actors.execution import ExecutionActor, RetryPolicy
from trader.actors.risk import FLATTEN_SOURCE
from trader.adapters.paper import PaperBroker
from trader.adapters.ports import BrokerOrder, BrokerUnavailable, OrderRejected, RateLimited
from trader.bus import EventBus
from trader.clock import NS_PER_SECOND, Clock, SimClock
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
    Side,
    Tick,
)
from trader.logging import configure_logging
from trader.market.instruments import OptionContract

import helpers
from helpers import wait_for

IST = ZoneInfo("Asia/Kolkata")
T0 = int(datetime(2025, 12, 1, 10, 0, tzinfo=IST).timestamp()) * NS_PER_SECOND  # a whole second
TOKEN = 123
CONTRACT = OptionContract.parse("NIFTY25DEC24000CE", instrument_token=TOKEN)
RETRY = RetryPolicy()  # 4 attempts, 0.5 s backoff, reconcile every 5 s

ACCEPT = "accept"
REJECT = "reject"
LIMITED = "429"
TIMEOUT_BEFORE = "timeout-before-accept"
TIMEOUT_AFTER = "timeout-after-accept"
MODES = (ACCEPT, REJECT, LIMITED, TIMEOUT_BEFORE, TIMEOUT_AFTER)

_ids = itertools.count(1)


pytestmark = pytest.mark.usefixtures("quiet_logs")


class FakeBroker(helpers.FakeBroker):
    """Implements the Broker port; ``plan[tag]`` scripts the outcome of each place attempt for that tag."""

    def __init__(self, clock: Clock, *, wants_ticks: bool = False) -> None:
        super().__init__(clock, wants_ticks=wants_ticks, available=10**12)
        self.plan: dict[str, deque[str]] = {}
        self.lookup_plan: deque[bool] = deque()  # True = this look-up fails; empty = look-ups work
        self.lookup_down = False
        self.place_calls: list[tuple[int, str]] = []  # (clock time, tag) of every place_order call
        self.lookups: list[str] = []

    async def place_order(self, request: OrderRequest) -> str:
        tag = request.tag
        self.place_calls.append((self.clock.now_ns(), tag))
        steps = self.plan.get(tag)
        mode = steps.popleft() if steps else ACCEPT
        if mode == REJECT:
            raise OrderRejected("insufficient funds")
        if mode == LIMITED:
            raise RateLimited("429 too many requests")
        if mode == TIMEOUT_BEFORE:
            raise BrokerUnavailable("read timeout")
        order_id = f"ORD{len(self.orders) + 1}"
        self.orders.append(BrokerOrder(order_id=order_id, tag=tag, status=OrderStatus.OPEN,
                                       quantity=request.intent.quantity, filled_quantity=0, average_price=0))
        if mode == TIMEOUT_AFTER:
            raise BrokerUnavailable("502 bad gateway")
        return order_id

    async def cancel_order(self, order_id: str) -> None:
        raise OrderRejected("not supported by the fake")

    async def find_order_by_tag(self, tag: str) -> BrokerOrder | None:
        self.lookups.append(tag)
        fail = self.lookup_plan.popleft() if self.lookup_plan else False
        if fail or self.lookup_down:
            raise BrokerUnavailable("order book timed out")
        matching = [o for o in self.orders if o.tag == tag]
        return matching[-1] if matching else None

    # -- test helpers
    def calls_for(self, tag: str) -> int:
        return sum(1 for _, t in self.place_calls if t == tag)


class Harness:
    def __init__(self, *, max_orders_per_second: int = 8, wants_ticks: bool = False) -> None:
        self.clock = SimClock(T0, speed=0)
        self.bus = EventBus()
        self.published: list[object] = []
        self.bus.tap(self.published.append)
        self.broker = FakeBroker(self.clock, wants_ticks=wants_ticks)
        self.actor = ExecutionActor(self.bus, self.broker, self.clock, max_orders_per_second=max_orders_per_second,
                                    retry=RETRY)

    async def handle(self, event: object) -> None:
        """Deliver one event and wait for any order placement it started."""
        await self.actor.handle(event)
        await self.actor.settle()

    def request(self, *plan: str) -> OrderRequest:
        n = next(_ids)
        intent = OrderIntent(
            ts_ns=self.clock.now_ns(), intent_id=f"intent-{n}", strategy_id="test", contract=CONTRACT,
            side=Side.BUY, quantity=CONTRACT.lot_size, order_type=OrderType.MARKET, purpose=IntentPurpose.ENTRY,
            expected_price=10_000,
        )
        request = OrderRequest(ts_ns=self.clock.now_ns(), intent=intent, tag=f"tag{n}")
        if plan:
            self.broker.plan[request.tag] = deque(plan)
        return request

    def updates(self, request: OrderRequest | None = None) -> list[OrderUpdate]:
        return [e for e in self.published if isinstance(e, OrderUpdate)
                and (request is None or e.intent_id == request.intent.intent_id)]

    async def poke(self) -> None:
        """Deliver some unrelated event, as the live system constantly does."""
        await self.handle(OrderUpdate(ts_ns=self.clock.now_ns(), intent_id="other", order_id="X1",
                                            status=OrderStatus.COMPLETE, filled_quantity=65, average_price=100))


def capture_logs() -> io.StringIO:
    stream = io.StringIO()
    configure_logging("INFO", stream)
    return stream


def log_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


# -- the simple paths ----------------------------------------------------------------------------------------


async def test_normal_placement_publishes_nothing_and_logs_the_order() -> None:
    h = Harness()
    assert h.broker.publish == h.bus.publish  # broker events go straight onto the bus
    request = h.request()
    stream = capture_logs()
    try:
        await h.handle(request)
    finally:
        configure_logging("ERROR", io.StringIO())
    [order] = h.broker.orders_for(request.tag)
    assert h.published == []
    assert h.broker.calls_for(request.tag) == 1
    assert (h.actor.orders_placed, h.actor.orders_rejected, h.actor.retries) == (1, 0, 0)
    assert h.actor.open_orders == 1
    placed = [line for line in log_lines(stream) if line.get("event") == "order_placed"]
    assert len(placed) == 1
    assert placed[0]["intent_id"] == request.intent.intent_id
    assert placed[0]["tag"] == request.tag
    assert placed[0]["order_id"] == order.order_id


async def test_order_updates_track_open_orders_until_terminal() -> None:
    h = Harness()
    request = h.request()
    await h.handle(request)
    [order] = h.broker.orders_for(request.tag)
    assert h.actor.open_orders == 1
    await h.handle(OrderUpdate(ts_ns=T0, intent_id=request.intent.intent_id, order_id=order.order_id,
                                     status=OrderStatus.COMPLETE, filled_quantity=65, average_price=10_005))
    assert h.actor.open_orders == 0


async def test_rejection_publishes_exactly_one_terminal_update_with_the_reason() -> None:
    h = Harness()
    request = h.request(REJECT)
    await h.handle(request)
    assert h.broker.orders_for(request.tag) == []
    assert h.broker.calls_for(request.tag) == 1  # a rejection is final: never retried
    [update] = h.updates()
    assert update.status is OrderStatus.REJECTED
    assert update.order_id == ""
    assert update.intent_id == request.intent.intent_id
    assert "insufficient funds" in update.reason
    assert h.published == [update]
    assert (h.actor.orders_placed, h.actor.orders_rejected, h.actor.open_orders) == (0, 1, 0)


async def test_rate_limited_then_accepted_places_one_order() -> None:
    h = Harness()
    request = h.request(LIMITED, ACCEPT)
    await h.handle(request)
    assert len(h.broker.orders_for(request.tag)) == 1
    assert h.broker.calls_for(request.tag) == 2
    assert h.broker.lookups == []  # a 429 is unambiguous: no look-up needed
    assert h.updates() == []
    assert (h.actor.orders_placed, h.actor.retries) == (1, 1)
    first, second = (ts for ts, _ in h.broker.place_calls)
    assert second - first >= int(RETRY.backoff_s * NS_PER_SECOND)  # it paused before sending again


async def test_rate_limited_on_every_attempt_is_rejected_once() -> None:
    h = Harness()
    request = h.request(*[LIMITED] * RETRY.max_attempts)
    await h.handle(request)
    assert h.broker.orders_for(request.tag) == []
    assert h.broker.calls_for(request.tag) == RETRY.max_attempts
    [update] = h.updates()
    assert (update.status, update.order_id) == (OrderStatus.REJECTED, "")
    assert "rate limited" in update.reason


async def test_timeout_after_accept_adopts_the_existing_order_and_never_sends_again() -> None:
    h = Harness()
    request = h.request(TIMEOUT_AFTER, ACCEPT, ACCEPT)
    await h.handle(request)
    [order] = h.broker.orders_for(request.tag)
    assert h.broker.calls_for(request.tag) == 1
    assert h.broker.lookups == [request.tag]
    assert h.updates() == []
    assert h.actor.orders_placed == 1
    assert h.actor.open_orders == 1
    await h.handle(OrderUpdate(ts_ns=T0, intent_id=request.intent.intent_id, order_id=order.order_id,
                                     status=OrderStatus.COMPLETE, filled_quantity=65, average_price=10_005))
    assert h.actor.open_orders == 0  # the adopted order is tracked under its broker id


async def test_timeout_before_accept_is_looked_up_then_sent_again_once() -> None:
    h = Harness()
    request = h.request(TIMEOUT_BEFORE, ACCEPT)
    await h.handle(request)
    assert len(h.broker.orders_for(request.tag)) == 1
    assert h.broker.calls_for(request.tag) == 2
    assert h.broker.lookups == [request.tag]  # looked up before re-sending
    assert h.updates() == []
    assert (h.actor.orders_placed, h.actor.retries, h.actor.unresolved) == (1, 1, 0)


async def test_timeout_with_a_flaky_lookup_still_adopts() -> None:
    h = Harness()
    h.broker.lookup_plan.extend([True, True])  # two failed look-ups, then the order book answers
    request = h.request(TIMEOUT_AFTER, ACCEPT)
    await h.handle(request)
    assert len(h.broker.orders_for(request.tag)) == 1
    assert h.broker.calls_for(request.tag) == 1
    assert h.actor.unresolved == 0


# -- parked orders -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("first", "accepted"), [(TIMEOUT_AFTER, True), (TIMEOUT_BEFORE, False)])
async def test_unanswerable_lookup_parks_the_order_then_reconciles_it(first: str, accepted: bool) -> None:
    h = Harness()
    h.broker.lookup_down = True
    request = h.request(first, ACCEPT)
    await h.handle(request)
    assert h.actor.unresolved == 1
    assert h.broker.calls_for(request.tag) == 1  # never re-sent blindly
    assert len(h.broker.orders_for(request.tag)) == (1 if accepted else 0)
    assert h.updates() == []  # neither placed nor rejected: unknown
    parked_at = h.clock.now_ns()
    lookups = len(h.broker.lookups)

    # Other events keep arriving before the reconcile interval: no look-up, no re-send.
    h.clock.jump_to(parked_at + int(RETRY.reconcile_every_s * NS_PER_SECOND) - 1)
    await h.poke()
    assert len(h.broker.lookups) == lookups
    assert (h.actor.unresolved, h.broker.calls_for(request.tag)) == (1, 1)

    # The same request delivered again while parked is not sent either.
    await h.handle(request)
    assert h.broker.calls_for(request.tag) == 1

    # Past the interval, the order book is still down: still parked, still not re-sent.
    h.clock.jump_to(parked_at + int(RETRY.reconcile_every_s * NS_PER_SECOND))
    await h.poke()
    assert len(h.broker.lookups) == lookups + 1
    assert (h.actor.unresolved, h.broker.calls_for(request.tag)) == (1, 1)

    # The broker answers again; the next event after the interval reconciles.
    h.broker.lookup_down = False
    await h.poke()
    assert h.actor.unresolved == 1  # the failed reconcile restarted the interval
    h.clock.jump_to(h.clock.now_ns() + int(RETRY.reconcile_every_s * NS_PER_SECOND) + 1)
    await h.poke()
    assert h.actor.unresolved == 0
    assert len(h.broker.orders_for(request.tag)) == 1
    assert h.broker.calls_for(request.tag) == (1 if accepted else 2)
    assert h.actor.orders_placed == 1
    assert h.updates(request) == []

    # Nothing more happens later.
    h.clock.jump_to(h.clock.now_ns() + 60 * NS_PER_SECOND)
    await h.poke()
    await h.handle(request)
    assert len(h.broker.orders_for(request.tag)) == 1
    assert h.broker.calls_for(request.tag) == (1 if accepted else 2)


async def test_a_parked_order_a_flatten_caught_is_never_sent_again_once_found_absent() -> None:
    h = Harness()
    h.broker.lookup_down = True
    request = h.request(TIMEOUT_BEFORE, ACCEPT)
    await h.handle(request)
    assert h.actor.unresolved == 1
    await h.handle(Command(ts_ns=h.clock.now_ns(), kind=CommandKind.FLATTEN, source=FLATTEN_SOURCE))
    h.broker.lookup_down = False
    h.clock.jump_to(h.clock.now_ns() + int(RETRY.reconcile_every_s * NS_PER_SECOND) + 1)
    await h.poke()
    # Absent at the broker: before the flatten it would be sent again now; after it, that would reopen a position.
    assert h.actor.unresolved == 0 and h.broker.calls_for(request.tag) == 1
    [update] = h.updates(request)
    assert update.status is OrderStatus.REJECTED and "a flatten cancelled it" in update.reason


# -- duplicates ----------------------------------------------------------------------------------------------


async def test_the_same_request_delivered_twice_is_placed_once() -> None:
    h = Harness()
    request = h.request()
    await h.handle(request)
    await h.handle(request)
    assert h.broker.calls_for(request.tag) == 1
    assert len(h.broker.orders_for(request.tag)) == 1
    assert h.published == []


async def test_duplicate_through_the_bus_with_run_is_placed_once() -> None:
    h = Harness()
    request = h.request(LIMITED, ACCEPT)
    task = asyncio.create_task(h.actor.run())
    try:
        h.bus.publish(request)
        h.bus.publish(request)
        h.bus.publish(OrderRequest(ts_ns=request.ts_ns, intent=request.intent, tag=request.tag))  # an equal copy
        await asyncio.wait_for(h.bus.wait_idle(), timeout=5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(h.broker.orders_for(request.tag)) == 1
    assert h.broker.calls_for(request.tag) == 2  # one 429, one accepted
    assert h.updates() == []


async def test_a_rejected_request_delivered_again_is_not_sent_again() -> None:
    h = Harness()
    request = h.request(REJECT, ACCEPT)
    await h.handle(request)
    await h.handle(request)
    assert h.broker.calls_for(request.tag) == 1
    assert h.broker.orders_for(request.tag) == []
    assert len([u for u in h.updates(request) if u.status.is_terminal]) == 1


# -- order rate ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "count", "start_offset_ns"), [
    (3, 10, 0),
    (3, 10, 700_000_000),  # starting late in a second: that second still allows only 3
    (8, 20, 999_999_999),
    (1, 4, 0),
])
async def test_calendar_second_limiter_allows_at_most_n_orders_per_second(
        limit: int, count: int, start_offset_ns: int) -> None:
    h = Harness(max_orders_per_second=limit)
    h.clock.jump_to(T0 + start_offset_ns)
    requests = [h.request() for _ in range(count)]
    task = asyncio.create_task(h.actor.run())
    try:
        for request in requests:
            h.bus.publish(request)
        await asyncio.wait_for(h.bus.wait_idle(), timeout=5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(h.broker.orders) == count
    per_second = Counter(ts // NS_PER_SECOND for ts, _ in h.broker.place_calls)
    assert max(per_second.values()) <= limit
    # ... and it lets N through in every second it uses (it does not throttle harder than the rule).
    seconds = sorted(per_second)
    assert seconds == list(range(seconds[0], seconds[0] + len(seconds)))
    assert [per_second[s] for s in seconds[:-1]] == [limit] * (len(seconds) - 1)
    assert seconds[0] == (T0 + start_offset_ns) // NS_PER_SECOND
    assert h.actor.limiter.waits > 0 or count <= limit


async def test_limiter_counts_retries_too() -> None:
    h = Harness(max_orders_per_second=2)
    requests = [h.request(LIMITED, ACCEPT) for _ in range(3)]
    for request in requests:
        await h.handle(request)
    per_second = Counter(ts // NS_PER_SECOND for ts, _ in h.broker.place_calls)
    assert len(h.broker.place_calls) == 6
    assert max(per_second.values()) <= 2
    assert len(h.broker.orders) == 3


# -- with the paper broker -----------------------------------------------------------------------------------


async def test_ticks_reach_a_simulated_broker_and_fills_are_measured() -> None:
    clock = SimClock(T0, speed=0)
    bus = EventBus()
    published: list[object] = []
    bus.tap(published.append)
    broker = PaperBroker(clock)
    actor = ExecutionActor(bus, broker, clock, conflate_ticks=False)
    assert Tick in set(actor.subscriptions())
    intent = OrderIntent(ts_ns=T0, intent_id="intent-paper", strategy_id="test", contract=CONTRACT, side=Side.BUY,
                         quantity=CONTRACT.lot_size, order_type=OrderType.MARKET, purpose=IntentPurpose.ENTRY,
                         expected_price=10_000)
    task = asyncio.create_task(actor.run())
    try:
        bus.publish(OrderRequest(ts_ns=T0, intent=intent, tag="tag-paper"))
        await asyncio.wait_for(bus.wait_idle(), timeout=5)
        assert actor.open_orders == 1
        clock.jump_to(T0 + NS_PER_SECOND)
        bus.publish(Tick(ts_ns=T0 + NS_PER_SECOND, instrument_token=TOKEN, last_price=10_000, bid=9_990,
                         bid_qty=650, ask=10_010, ask_qty=650))
        await asyncio.wait_for(bus.wait_idle(), timeout=5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    fills = [e for e in published if isinstance(e, Fill)]
    assert [(f.price, f.quantity) for f in fills] == [(10_015, 65)]
    assert actor.open_orders == 0
    assert (actor.slippage.fills, actor.slippage.units, actor.slippage.paise_total) == (1, 65, 15 * 65)
    assert actor.slippage.average_bps == pytest.approx(15.0)
    terminal = [e for e in published if isinstance(e, OrderUpdate) and e.status.is_terminal]
    assert [u.status for u in terminal] == [OrderStatus.COMPLETE]


async def test_simulated_broker_rejection_becomes_one_rejected_update() -> None:
    clock = SimClock(T0, speed=0)
    bus = EventBus()
    published: list[object] = []
    bus.tap(published.append)
    actor = ExecutionActor(bus, PaperBroker(clock), clock)
    intent = OrderIntent(ts_ns=T0, intent_id="intent-bad", strategy_id="test", contract=CONTRACT, side=Side.BUY,
                         quantity=100, order_type=OrderType.MARKET, purpose=IntentPurpose.ENTRY,
                         expected_price=10_000)
    await actor.handle(OrderRequest(ts_ns=T0, intent=intent, tag="tag-bad"))
    await actor.settle()
    [update] = published
    assert isinstance(update, OrderUpdate)
    assert (update.status, update.order_id, update.intent_id) == (OrderStatus.REJECTED, "", "intent-bad")
    assert "lot size" in update.reason


# -- property: exactly once under any failure sequence -------------------------------------------------------

_PLAN = st.lists(st.sampled_from(MODES), min_size=1, max_size=RETRY.max_attempts + 2)


def _check_outcomes(h: Harness, requests: Iterable[OrderRequest]) -> None:
    for request in requests:
        orders = h.broker.orders_for(request.tag)
        terminal = [u for u in h.updates(request) if u.status.is_terminal]
        assert len(orders) <= 1
        assert len(terminal) <= 1
        if terminal:
            assert terminal[0].status is OrderStatus.REJECTED and terminal[0].order_id == ""
            assert orders == []
        else:
            assert len(orders) == 1  # every request ends either placed or rejected


@settings(max_examples=200, deadline=None, derandomize=True)
@given(plans=st.lists(_PLAN, min_size=1, max_size=4))
def test_any_failure_sequence_places_at_most_one_order(plans: list[list[str]]) -> None:
    async def scenario() -> None:
        h = Harness()
        requests = [h.request(*plan) for plan in plans]
        for request in requests:
            await h.handle(request)
            await h.handle(request)  # a redelivery never adds anything
        assert h.actor.unresolved == 0  # look-ups work here, so nothing stays unknown
        _check_outcomes(h, requests)

    asyncio.run(scenario())


@settings(max_examples=200, deadline=None, derandomize=True)
@given(plans=st.lists(_PLAN, min_size=1, max_size=3),
       lookup_failures=st.lists(st.booleans(), max_size=3 * RETRY.max_attempts))
def test_any_failure_sequence_with_flaky_lookups_places_at_most_one_order(
        plans: list[list[str]], lookup_failures: list[bool]) -> None:
    async def scenario() -> None:
        h = Harness()
        h.broker.lookup_plan.extend(lookup_failures)
        requests = [h.request(*plan) for plan in plans]
        for request in requests:
            await h.handle(request)
        for _ in range(20):  # the look-up plan runs out, so every parked order resolves eventually
            if not h.actor.unresolved:
                break
            h.clock.jump_to(h.clock.now_ns() + int(RETRY.reconcile_every_s * NS_PER_SECOND))
            await h.poke()
        assert h.actor.unresolved == 0
        _check_outcomes(h, requests)

    asyncio.run(scenario())


# -- failures outside the broker's vocabulary, and orders that rest -------------------------------------------


class CrashingBroker(FakeBroker):
    """Raises an exception that is not a BrokerError, after (or before) accepting the order."""

    def __init__(self, clock: SimClock, *, accept_first: bool) -> None:
        super().__init__(clock)
        self.accept_first = accept_first

    async def place_order(self, request: OrderRequest) -> str:
        if self.accept_first:
            await super().place_order(request)
        raise ConnectionResetError("connection reset by peer")


@pytest.mark.parametrize("accept_first", [True, False])
async def test_an_unexpected_exception_is_treated_as_ambiguous_never_lost(accept_first: bool) -> None:
    h = Harness()
    h.broker = CrashingBroker(h.clock, accept_first=accept_first)
    h.actor = ExecutionActor(h.bus, h.broker, h.clock, retry=RETRY)
    request = h.request()
    await h.handle(request)  # must not raise: the actor would crash and the intent be forgotten
    orders = h.broker.orders_for(request.tag)
    if accept_first:
        assert len(orders) == 1 and h.actor.open_orders == 1  # found by its tag and adopted
        assert h.updates(request) == []
    else:
        # Not at the broker: re-sent (and crashing again) until the attempts run out, then one terminal update.
        assert orders == []
        [update] = h.updates(request)
        assert update.status is OrderStatus.REJECTED and "unexpected error" in update.reason


class CancellingBroker(FakeBroker):
    def __init__(self, clock: SimClock) -> None:
        super().__init__(clock)
        self.cancelled: list[str] = []

    async def cancel_order(self, order_id: str) -> None:
        self.cancelled.append(order_id)
        assert self.publish is not None
        self.publish(OrderUpdate(ts_ns=self.clock.now_ns(), intent_id="?", order_id=order_id,
                                 status=OrderStatus.CANCELLED))


async def test_a_market_order_left_resting_by_market_protection_is_cancelled_for_repricing() -> None:
    h = Harness()
    h.broker = CancellingBroker(h.clock)
    h.actor = ExecutionActor(h.bus, h.broker, h.clock, retry=RETRY)
    request = h.request()
    await h.handle(request)
    [order] = h.broker.orders_for(request.tag)
    h.clock.jump_to(T0 + int((RETRY.reprice_after_s - 1) * NS_PER_SECOND))
    await h.poke()
    assert h.broker.cancelled == []
    h.clock.jump_to(T0 + int((RETRY.reprice_after_s + 1) * NS_PER_SECOND))
    await h.poke()
    assert h.broker.cancelled == [order.order_id]
    await h.poke()
    assert h.broker.cancelled == [order.order_id]  # once


async def test_a_filled_market_order_is_not_cancelled() -> None:
    h = Harness()
    h.broker = CancellingBroker(h.clock)
    h.actor = ExecutionActor(h.bus, h.broker, h.clock, retry=RETRY)
    request = h.request()
    await h.handle(request)
    [order] = h.broker.orders_for(request.tag)
    await h.handle(OrderUpdate(ts_ns=h.clock.now_ns(), intent_id=request.intent.intent_id,
                                     order_id=order.order_id, status=OrderStatus.COMPLETE, filled_quantity=65))
    h.clock.jump_to(T0 + int((RETRY.reprice_after_s + 1) * NS_PER_SECOND))
    await h.poke()
    assert h.broker.cancelled == []


async def test_one_orders_retries_do_not_hold_up_another() -> None:
    """An entry backing off after 429s must not delay an exit queued behind it."""
    h = Harness()
    entry = h.request(LIMITED, LIMITED, LIMITED, ACCEPT)
    exit_request = h.request()
    await h.actor.handle(entry)
    await h.actor.handle(exit_request)
    await asyncio.sleep(0)  # let both placement tasks run to their first await
    assert len(h.broker.orders_for(exit_request.tag)) == 1
    assert h.broker.orders_for(entry.tag) == []  # still backing off
    await h.actor.settle()
    assert len(h.broker.orders_for(entry.tag)) == 1


async def test_the_inbox_counts_as_busy_until_placements_finish() -> None:
    h = Harness()
    task = asyncio.create_task(h.actor.run())
    try:
        h.bus.publish(h.request(LIMITED, ACCEPT))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert not h.actor.inbox.idle  # the order is still being placed
        await asyncio.wait_for(h.bus.wait_idle(), timeout=5)
        assert h.actor.orders_placed == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class ResyncingBroker(FakeBroker):
    def __init__(self, clock: SimClock) -> None:
        super().__init__(clock)
        self.resyncs = 0

    async def resync(self) -> None:
        self.resyncs += 1


async def test_an_order_recovered_by_tag_and_a_reconnected_order_channel_trigger_a_resync() -> None:
    """Progress of an order whose reply was lost (or sent while the channel was down) is read back, not lost."""
    from trader.events import FeedStatus  # noqa: PLC0415

    h = Harness()
    h.broker = ResyncingBroker(h.clock)
    h.actor = ExecutionActor(h.bus, h.broker, h.clock, retry=RETRY)
    await h.handle(h.request(TIMEOUT_AFTER))
    assert h.actor.recovered_by_tag == 1
    await h.poke()
    assert h.broker.resyncs == 1
    await h.handle(FeedStatus(ts_ns=h.clock.now_ns(), status="connected"))
    assert h.broker.resyncs == 2


async def test_heartbeats_drive_the_reconcile_timer_without_any_order_traffic() -> None:
    from trader.events import Heartbeat  # noqa: PLC0415

    h = Harness()
    h.broker.lookup_down = True
    request = h.request(TIMEOUT_BEFORE)
    await h.handle(request)
    assert h.actor.unresolved == 1
    h.broker.lookup_down = False
    h.clock.jump_to(h.clock.now_ns() + int((RETRY.reconcile_every_s + 1) * NS_PER_SECOND))
    await h.handle(Heartbeat(ts_ns=h.clock.now_ns()))
    assert h.actor.unresolved == 0 and len(h.broker.orders_for(request.tag)) == 1


# -- shutdown: no request vanishes ---------------------------------------------------------------------------
# Every request ends either as one order on the broker's book under its tag, or with one terminal update that says
# why it was never sent; at shutdown too, when placements are stopped, look-ups are due and requests are queued.


class StallingBroker(FakeBroker):
    """``place_order`` never answers (a stalled connection), after the broker accepted the order or before."""

    def __init__(self, clock: SimClock, *, accept_first: bool) -> None:
        super().__init__(clock)
        self.accept_first = accept_first
        self.called = asyncio.Event()

    async def place_order(self, request: OrderRequest) -> str:
        if self.accept_first:
            await super().place_order(request)
        else:
            self.place_calls.append((self.clock.now_ns(), request.tag))
        self.called.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.mark.parametrize("accepted", [True, False])
async def test_a_placement_stopped_at_shutdown_ends_on_the_book_or_with_one_terminal_update(accepted: bool) -> None:
    h = Harness()
    h.broker = StallingBroker(h.clock, accept_first=accepted)
    h.actor = ExecutionActor(h.bus, h.broker, h.clock, retry=RETRY)
    request = h.request()
    await h.actor.handle(request)
    await asyncio.wait_for(h.broker.called.wait(), timeout=5)
    await h.actor.close()
    assert h.actor.placements == set()
    assert h.actor.unresolved == 0
    assert h.broker.calls_for(request.tag) == 1  # never sent again while stopping
    assert h.broker.lookups == [request.tag]
    _check_outcomes(h, [request])
    if accepted:
        assert (h.actor.recovered_by_tag, h.actor.open_orders) == (1, 1)
        assert h.updates(request) == []
    else:
        [update] = h.updates(request)
        assert "stopp" in update.reason


async def test_an_order_parked_at_shutdown_is_looked_up_once_more_and_ends() -> None:
    h = Harness()
    h.broker.lookup_down = True
    accepted = h.request(TIMEOUT_AFTER)
    absent = h.request(TIMEOUT_BEFORE)
    await h.handle(accepted)
    await h.handle(absent)
    assert h.actor.unresolved == 2
    h.broker.lookup_down = False  # the broker answers again, before the reconcile interval is over
    await h.actor.close()
    assert h.actor.unresolved == 0
    assert (h.broker.calls_for(accepted.tag), h.broker.calls_for(absent.tag)) == (1, 1)  # nothing re-sent
    _check_outcomes(h, [accepted, absent])
    assert h.updates(accepted) == []
    [update] = h.updates(absent)
    assert update.status is OrderStatus.REJECTED and "stopp" in update.reason


async def test_requests_still_queued_at_shutdown_are_never_sent_and_end_with_one_terminal_update() -> None:
    h = Harness()
    placed = h.request()
    await h.handle(placed)
    queued = [h.request(), h.request()]
    for request in queued:
        h.bus.publish(request)  # in the inbox; the actor stops before it gets to them
    await h.actor.close()
    assert h.actor.inbox.idle
    late = h.request()
    await h.handle(late)  # reaches the actor after it closed: refused at once
    await h.handle(placed)  # a redelivery of a placed request is still a duplicate, not a refusal
    assert [tag for _, tag in h.broker.place_calls] == [placed.tag]
    _check_outcomes(h, [placed, *queued, late])
    for request in [*queued, late]:
        [update] = h.updates(request)
        assert (update.status, update.order_id) == (OrderStatus.REJECTED, "")
        assert "stopp" in update.reason
    assert h.updates(placed) == []


async def test_an_order_the_broker_cannot_answer_for_at_shutdown_is_reported_unknown_never_rejected() -> None:
    h = Harness()
    h.broker.lookup_down = True
    request = h.request(TIMEOUT_BEFORE)
    await h.handle(request)
    stream = capture_logs()
    try:
        await h.actor.close()
    finally:
        configure_logging("ERROR", io.StringIO())
    assert h.updates(request) == []  # it may exist at the broker: calling it rejected could be a lie
    assert h.actor.unresolved == 1
    assert h.broker.calls_for(request.tag) == 1
    unknown = [line for line in log_lines(stream) if line.get("event") == "order_state_unknown_at_shutdown"]
    assert [line["tag"] for line in unknown] == [request.tag]


async def test_a_request_still_waiting_for_a_rate_slot_at_shutdown_is_rejected_at_once_never_looked_up() -> None:
    h = Harness()
    clock = helpers.ManualClock(T0)  # time stands still: the second request waits for its slot until the close
    h.broker = FakeBroker(clock)
    h.actor = ExecutionActor(h.bus, h.broker, clock, max_orders_per_second=1, retry=RETRY)
    first, second = h.request(), h.request()
    await h.actor.handle(first)
    await h.actor.handle(second)
    await wait_for(lambda: h.broker.calls_for(first.tag) == 1 and h.actor.limiter.waits == 1)
    await h.actor.close()
    assert h.broker.calls_for(second.tag) == 0
    assert h.broker.lookups == []  # certainly never sent: nothing to look up
    assert h.actor.unresolved == 0
    _check_outcomes(h, [first, second])
    [update] = h.updates(second)
    assert (update.status, update.order_id) == (OrderStatus.REJECTED, "")
    assert "stopped before it was sent" in update.reason
    assert h.updates(first) == []


class StalledLookupBroker(FakeBroker):
    async def find_order_by_tag(self, tag: str) -> BrokerOrder | None:
        self.lookups.append(tag)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_closing_is_bounded_when_the_order_book_never_answers() -> None:
    h = Harness()
    h.broker = StalledLookupBroker(h.clock)
    h.actor = ExecutionActor(h.bus, h.broker, h.clock, retry=RETRY)
    request = h.request(TIMEOUT_BEFORE)
    await h.actor.handle(request)
    await wait_for(lambda: bool(h.broker.lookups))
    await asyncio.wait_for(h.actor.close(budget_s=0.05), timeout=5)
    assert h.actor.placements == set()
    assert h.actor.unresolved == 1  # still unknown, and said so
    assert h.updates(request) == []


async def test_a_parked_order_that_reports_in_is_resolved_so_shutdown_raises_no_false_alarm() -> None:
    """Fault injection item 11: an order parked as unknown whose fills then arrive was still called
    ``order_state_unknown_at_shutdown``; its own update proves it is on the broker's book."""
    h = Harness()
    h.broker.lookup_down = True
    request = h.request(TIMEOUT_AFTER, ACCEPT)
    await h.handle(request)
    assert h.actor.unresolved == 1
    [order] = h.broker.orders_for(request.tag)
    await h.handle(OrderUpdate(ts_ns=h.clock.now_ns(), intent_id=request.intent.intent_id, order_id=order.order_id,
                               status=OrderStatus.COMPLETE, filled_quantity=request.intent.quantity,
                               average_price=10_000))
    assert h.actor.unresolved == 0
    assert h.actor.orders_placed == 1
    stream = capture_logs()
    try:
        await h.actor.close(budget_s=1.0)
    finally:
        configure_logging("ERROR", io.StringIO())
    assert [line for line in log_lines(stream) if line.get("event") == "order_state_unknown_at_shutdown"] == []
    assert h.broker.calls_for(request.tag) == 1
