"""The one rate limiter: at most N in any window, first come first served, on the injected clock."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trader.clock import NS_PER_SECOND, SimClock
from trader.ratelimit import RateLimiter

import helpers

S = NS_PER_SECOND
START = 1_795_151_700 * S


def test_a_burst_of_limit_goes_at_once_then_each_waits_for_the_window() -> None:
    limiter = RateLimiter(3)
    slots: list[int] = []
    for _ in range(7):
        slot = limiter.next_free_ns(START)
        limiter.record(slot)
        slots.append(slot - START)
    assert slots == [0, 0, 0, S, S, S, 2 * S]


def test_per_second_rates() -> None:
    assert (RateLimiter.per_second(10).limit, RateLimiter.per_second(10).window_ns) == (10, S)
    half = RateLimiter.per_second(0.5)
    assert (half.limit, half.window_ns) == (1, 2 * S)
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="rate must be > 0"):
            RateLimiter.per_second(bad)
    with pytest.raises(ValueError, match="at least 1"):
        RateLimiter(0)


def test_used_and_record_for_a_check_that_refuses_instead_of_waiting() -> None:
    limiter = RateLimiter(2)
    limiter.record(START)
    limiter.record(START + S // 2)
    assert limiter.used(START + S // 2) == 2
    assert limiter.used(START + S) == 1  # START left the window (start-exclusive)
    assert limiter.used(START + S + S // 2) == 0
    limiter.record(START - 1)  # out of order: still counted where it belongs
    assert limiter.used(START) == 2


@given(st.integers(1, 12), st.lists(st.integers(0, 3 * S), min_size=1, max_size=60))
def test_no_window_ever_holds_more_than_the_limit(limit: int, arrivals: list[int]) -> None:
    """Whatever the arrival times, the booked slots keep the rule for every window — so for the broker's too."""
    limiter = RateLimiter(limit)
    slots: list[int] = []
    for at in sorted(arrivals):
        slot = limiter.next_free_ns(max(START + at, slots[-1] if slots else 0))  # one after the other, in order
        limiter.record(slot)
        slots.append(slot)
    assert all(slot >= START + at for slot, at in zip(slots, sorted(arrivals), strict=True))
    for i, j in itertools.combinations(range(len(slots)), 2):
        if j - i >= limit:
            assert slots[j] - slots[i] >= S


async def test_acquire_waits_on_the_injected_clock() -> None:
    clock = SimClock(START, speed=0)
    limiter = RateLimiter(2, clock=clock)
    order: list[int] = []

    async def take(i: int) -> None:
        await limiter.acquire()
        order.append(i)

    await asyncio.gather(*(take(i) for i in range(5)))
    assert order == [0, 1, 2, 3, 4]
    assert limiter.waits == 2
    assert clock.now_ns() == START + 2 * S


async def test_acquire_without_a_clock_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError, match="needs a clock"):
        await RateLimiter(1).acquire()


async def test_urgent_waiters_go_before_every_non_urgent_one_still_waiting() -> None:
    """An exit queued behind a burst of entries takes the next free slot, not the one after all of them."""
    clock = helpers.ManualClock(START)
    limiter = RateLimiter(2, clock=clock)
    order: list[str] = []

    async def take(name: str, *, urgent: bool = False) -> None:
        await limiter.acquire(urgent=urgent)
        order.append(name)

    entries = [asyncio.create_task(take(f"entry{i}")) for i in range(6)]
    await helpers.wait_for(lambda: order == ["entry0", "entry1"] and limiter.waits == 1)  # entry2 sleeps for S
    exit_order = asyncio.create_task(take("exit", urgent=True))
    await helpers.wait_for(lambda: limiter.waits == 2)  # the exit is first in line now, sleeping for the same slot
    clock.move_to(START + S)
    await helpers.wait_for(lambda: len(order) == 4)
    assert order[2:] == ["exit", "entry2"]
    clock.move_to(START + 2 * S)
    await helpers.wait_for(lambda: len(order) == 6)
    clock.move_to(START + 3 * S)
    await asyncio.gather(*entries, exit_order)
    assert order[4:] == ["entry3", "entry4", "entry5"]


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    clock = SimClock(START, speed=0)
    limiter = RateLimiter(1, clock=clock)
    await limiter.acquire()
    blocked = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    blocked.cancel()
    await asyncio.gather(blocked, return_exceptions=True)
    await limiter.acquire()  # not stuck behind the cancelled ticket
    assert limiter.used(clock.now_ns()) == 1
