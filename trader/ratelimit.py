"""The one rate limiter: at most ``limit`` events in any window of ``window_ns`` event time, on the injected clock.

Used by the Kite REST client (per endpoint family), the execution actor (order requests) and the risk manager (the
order-rate check, through the pure ``used``/``record`` half, with the time passed in).

Why a sliding window and not a per-calendar-second counter: the broker counts requests per second of *its* clock,
which is never exactly ours. A counter that resets on our second boundaries can send ``limit`` requests at the end of
one of our seconds and ``limit`` more at the start of the next, and the broker may see both bursts inside one of its
seconds. "At most ``limit`` in any window" holds for every window, so also for whichever one the broker counts, while
still letting ``limit`` requests go at once (an exit is never spaced out behind a fixed interval).

Concurrent callers of ``acquire`` are served first come, first served, urgent ones (exits, cancels) first.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
from collections import deque

from trader.clock import NS_PER_SECOND, Clock


class RateLimiter:
    def __init__(self, limit: int, *, window_ns: int = NS_PER_SECOND, clock: Clock | None = None) -> None:
        if limit < 1:
            raise ValueError(f"rate limit must be at least 1 per window, got {limit}")
        if window_ns < 1:
            raise ValueError(f"rate-limit window must be positive, got {window_ns} ns")
        self.limit = limit
        self.window_ns = window_ns
        self._clock = clock
        self._times: deque[int] = deque()  # recorded event times, ascending
        self.waits = 0  # how many times an acquisition had to wait for a slot
        self._queue: list[tuple[int, int]] = []  # waiting tickets: (0 urgent / 1 not, call order)
        self._tickets = itertools.count()
        self._turn_changed = asyncio.Event()

    @classmethod
    def per_second(cls, rate: float, *, clock: Clock | None = None) -> RateLimiter:
        """``rate`` events per second: N per second for a whole N, else one per ``1/rate`` seconds."""
        if not rate > 0:
            raise ValueError(f"rate must be > 0 per second, got {rate}")
        if float(rate).is_integer():
            return cls(int(rate), clock=clock)
        return cls(1, window_ns=round(NS_PER_SECOND / rate), clock=clock)

    # -- the pure half: time passed in --------------------------------------------------------------------------
    def used(self, ts_ns: int) -> int:
        """Events counted in the window that ends at ``ts_ns``: ``(ts_ns - window, ts_ns]`` (a query: nothing is
        forgotten here, so asking about an earlier moment afterwards still counts right)."""
        return bisect.bisect_right(self._times, ts_ns) - bisect.bisect_right(self._times, ts_ns - self.window_ns)

    def record(self, ts_ns: int) -> None:
        """Count one event at ``ts_ns`` whether or not it keeps the rule (it happened: the risk check decides)."""
        if self._times and ts_ns < self._times[-1]:
            bisect.insort(self._times, ts_ns)
        else:
            self._times.append(ts_ns)
        self._forget_before(self._times[-1])

    def next_free_ns(self, now_ns: int) -> int:
        """The earliest time at or after ``now_ns`` at which one more event keeps the rule."""
        times = self._times
        if len(times) >= self.limit and times[-self.limit] > now_ns - self.window_ns:
            return times[-self.limit] + self.window_ns
        return now_ns

    # -- the clocked half ----------------------------------------------------------------------------------------
    async def acquire(self, *, urgent: bool = False) -> None:
        """Wait (on the clock) for a slot and take it.

        Waiters are served in call order, except that ``urgent`` ones (exits, cancels: what takes risk off) go
        before every non-urgent one still waiting. The time recorded is the clock's when the slot is taken, not when
        it was due: a waiter woken late (a busy loop, or an unpaced clock another task moved on) still counts where
        it really went out.
        """
        if self._clock is None:
            raise RuntimeError("RateLimiter.acquire needs a clock: build it with clock=...")
        ticket = (0 if urgent else 1, next(self._tickets))
        heapq.heappush(self._queue, ticket)
        try:
            while True:
                if self._queue[0] != ticket:
                    await self._turn_changed.wait()  # someone ahead took a slot or left
                    continue
                now = self._clock.now_ns()
                at = self.next_free_ns(now)
                if at <= now:
                    self.record(now)
                    return
                self.waits += 1
                await self._clock.sleep_until(at)  # then look again: an urgent waiter may have come first
        finally:
            self._queue.remove(ticket)
            heapq.heapify(self._queue)
            self._turn_changed.set()
            self._turn_changed = asyncio.Event()

    def _forget_before(self, ts_ns: int) -> None:
        # Keep what the window ending at ts_ns can still see, and always the last `limit` (next_free_ns needs them).
        horizon = ts_ns - self.window_ns
        times = self._times
        while len(times) > self.limit and times[0] <= horizon:
            times.popleft()
