"""One outbox per destination: alerts wait here, off the trading path, until a sender task delivers them.

``put`` is synchronous and O(1) amortised (an actor's ``handle`` calls it): it deduplicates by (kind, subject) within
``dedup_seconds``, changes of state aside (``Alert.is_transition``: one per change, never swallowed) (a repeat only
bumps a counter that the next alert of that key carries; at most ``MAX_DEDUP_KEYS`` keys are remembered, the oldest
forgotten first), and holds at most ``queue_size`` alerts (past it the oldest of the lowest severity waiting is
dropped and counted). An alert storm (thousands a second, each with its own subject) costs each ``put`` the same few
dict and deque operations, and bounded memory.

The sender task takes alerts in order: a token bucket allows ``rate_per_minute`` (bursts of a few), each request is
bounded by ``timeout_seconds``, and a failed delivery is retried with exponential backoff from ``retry_base_seconds``
(doubling, capped, with jitter from a seeded ``random.Random``) up to ``max_attempts``; a destination's own
``retry_after`` (Telegram's 429) is honoured instead, up to ``MAX_RETRY_AFTER_S``. Nothing here raises into the
daemon: a destination that fails in any way is logged (never with its URL) and retried or given up.

``close(deadline_s)`` stops taking alerts, delivers what it can before the deadline, then gives up and logs what was
left. The clock and the sleep are injectable, so the limits and the backoff are tested without real waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from trader.alerts.rules import Alert
from trader.logging import get_logger
from trader.service_settings import AlertSettings

log = get_logger("trader.alerts")

MAX_BACKOFF_S = 300.0
MAX_RETRY_AFTER_S = 300.0  # a longer Retry-After would hold every later alert of the destination
MAX_DEDUP_KEYS = 10_000  # (kind, subject) keys remembered for dedup and repeat counts, per destination


class Outcome(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # a transient failure: 5xx, 429, a timeout, a broken connection
    GIVE_UP = "give_up"  # the destination refused it for good (4xx): retrying cannot help


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    detail: str = ""  # for the log: a status and the destination's own words; never a URL
    retry_after_s: float | None = None


DELIVERED = SendResult(Outcome.DELIVERED)


class Destination(Protocol):
    name: str

    async def send(self, alert: Alert, repeats: int) -> SendResult:
        """Deliver one alert (``repeats``: how many equal alerts were suppressed since the last one sent); never
        raises for a failure of the destination (returns RETRY or GIVE_UP)."""
        ...


@dataclass(slots=True)
class Entry:
    alert: Alert
    repeats: int = 0
    attempts: int = 0
    seq: int = 0  # the order of arrival, across the severities


@dataclass(slots=True)
class OutboxStats:
    accepted: int = 0
    delivered: int = 0
    deduplicated: int = 0
    dropped_full: int = 0  # pushed out by a full queue
    failed: int = 0  # given up: max_attempts, a 4xx, or the close deadline
    retries: int = 0
    attempts: int = 0  # requests made
    dropped_kinds: Counter[str] = field(default_factory=Counter)


class TokenBucket:
    """``rate_per_minute`` tokens a minute, at most ``burst`` saved up; ``wait_s`` says how long until one is due."""

    def __init__(self, rate_per_minute: float, burst: float, now: float) -> None:
        self.per_s = rate_per_minute / 60.0
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + max(now - self.updated, 0.0) * self.per_s)
        self.updated = now

    def wait_s(self, now: float) -> float:
        self._refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.per_s

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1.0


async def _real_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


class Outbox:
    def __init__(self, destination: Destination, settings: AlertSettings, *, seed: int = 0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = _real_sleep, burst: float | None = None) -> None:
        self.destination = destination
        self.name = destination.name
        self.settings = settings
        self._clock = clock
        self._sleep = sleep
        self._random = random.Random(seed)
        self._bucket = TokenBucket(settings.rate_per_minute,
                                   burst if burst is not None else max(1.0, min(5.0, settings.rate_per_minute / 4)),
                                   clock())
        # One queue per severity rank (a drop takes the oldest of the lowest at once); the sender takes the oldest
        # of the three heads.
        self._queues: tuple[deque[Entry], ...] = tuple(deque() for _ in range(3))
        self._seq = 0
        # key → when last accepted, oldest first (an accepted key moves to the end), so the expired ones are at the
        # front; the repeat counts likewise, for as long as a key's next alert may still come.
        self._last_accepted: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._repeats: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._deadline: float | None = None
        self.stats = OutboxStats()
        self.sending: Entry | None = None

    # -- the synchronous side (the actor's handle) ------------------------------------------------------------------
    def put(self, alert: Alert) -> bool:
        """Queue an alert; False when it was only counted (a repeat inside the dedup window, or the outbox closed)."""
        if self._closing:
            self.stats.dropped_kinds[alert.kind] += 1
            return False
        now = self._clock()
        key = alert.key
        self._forget_old_keys(now)
        last = self._last_accepted.get(key)
        if last is not None and now - last < self.settings.dedup_seconds and not alert.is_transition:
            self._repeats[key] = self._repeats.get(key, 0) + 1
            if len(self._repeats) > MAX_DEDUP_KEYS:
                self._repeats.popitem(last=False)
            self.stats.deduplicated += 1
            return False
        self._last_accepted[key] = now
        self._last_accepted.move_to_end(key)
        if len(self._last_accepted) > MAX_DEDUP_KEYS:
            self._last_accepted.popitem(last=False)
        self._seq += 1
        self._queues[alert.severity.rank].append(Entry(alert, repeats=self._repeats.pop(key, 0), seq=self._seq))
        self.stats.accepted += 1
        if self._waiting_count() > self.settings.queue_size:
            self._drop_one()
        self._wake.set()
        return True

    def _forget_old_keys(self, now: float) -> None:
        """Drop the keys whose window has passed: they are at the front (O(1) per key forgotten)."""
        window = self.settings.dedup_seconds
        keys = self._last_accepted
        while keys and now - keys[next(iter(keys))] >= window:
            keys.popitem(last=False)

    def _waiting_count(self) -> int:
        return sum(len(queue) for queue in self._queues)

    def _next_entry(self) -> Entry | None:
        """The oldest waiting alert (across the severities), taken off its queue."""
        heads = [queue for queue in self._queues if queue]
        if not heads:
            return None
        return min(heads, key=lambda queue: queue[0].seq).popleft()

    def _drop_one(self) -> None:
        victim = next(queue for queue in self._queues if queue).popleft()
        self.stats.dropped_full += 1
        self.stats.dropped_kinds[victim.alert.kind] += 1
        if self.stats.dropped_full == 1 or self.stats.dropped_full % 100 == 0:
            log.warning("alert_queue_full", destination=self.name, dropped=self.stats.dropped_full,
                        kind=victim.alert.kind, severity=victim.alert.severity.value,
                        queue_size=self.settings.queue_size)

    @property
    def pending(self) -> int:
        return self._waiting_count() + (1 if self.sending is not None else 0)

    @property
    def remembered_keys(self) -> int:
        """(kind, subject) keys held for dedup (at most ``MAX_DEDUP_KEYS``)."""
        return len(self._last_accepted)

    def _entries(self) -> list[Entry]:
        return sorted((entry for queue in self._queues for entry in queue), key=lambda entry: entry.seq)

    def waiting(self) -> list[Alert]:
        return [entry.alert for entry in self._entries()]

    # -- the sender task ------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"alerts:{self.name}")

    def _remaining(self) -> float:
        if self._deadline is None:
            return float("inf")
        return self._deadline - self._clock()

    async def _run(self) -> None:
        while True:
            if not self._waiting_count():
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            wait = self._bucket.wait_s(self._clock())
            if wait > 0:
                if wait >= self._remaining():
                    return  # the close deadline comes first
                await self._sleep(wait)
                continue
            entry = self._next_entry()
            assert entry is not None
            self.sending = entry
            await self._deliver(entry)  # cancelled by close: ``sending`` stays, and close counts it unsent
            self.sending = None
            if self._remaining() <= 0:
                return

    async def _deliver(self, entry: Entry) -> None:
        """Try one alert until it is delivered, given up, or the close deadline passes."""
        settings = self.settings
        while True:
            remaining = self._remaining()
            if remaining <= 0:
                self._give_up(entry, "the stop deadline passed")
                return
            self._bucket.take(self._clock())
            entry.attempts += 1
            self.stats.attempts += 1
            result = await self._attempt(entry, min(settings.timeout_seconds, remaining))
            if result.outcome is Outcome.DELIVERED:
                self.stats.delivered += 1
                log.info("alert_sent", destination=self.name, kind=entry.alert.kind, attempts=entry.attempts,
                         repeats=entry.repeats)
                return
            if result.outcome is Outcome.GIVE_UP:
                self._give_up(entry, result.detail)
                return
            if entry.attempts >= settings.max_attempts:
                self._give_up(entry, f"{entry.attempts} attempts, last: {result.detail}")
                return
            delay = self.backoff_s(entry.attempts, result.retry_after_s)
            self.stats.retries += 1
            log.warning("alert_retry", destination=self.name, kind=entry.alert.kind, attempt=entry.attempts,
                        retry_in_s=round(delay, 2), detail=result.detail)
            if delay >= self._remaining():
                self._give_up(entry, f"the stop deadline comes before the next try ({result.detail})")
                return
            await self._sleep(delay)

    def backoff_s(self, attempts: int, retry_after_s: float | None) -> float:
        """The wait before the next try: the destination's ``retry_after`` when it gave one, else
        ``retry_base_seconds`` doubled per failed attempt (capped), plus up to 25 % jitter."""
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), MAX_RETRY_AFTER_S)
        base = min(self.settings.retry_base_seconds * 2.0 ** (attempts - 1), MAX_BACKOFF_S)
        return base * (1.0 + 0.25 * self._random.random())

    async def _attempt(self, entry: Entry, timeout_s: float) -> SendResult:
        try:
            async with asyncio.timeout(timeout_s):
                return await self.destination.send(entry.alert, entry.repeats)
        except TimeoutError:
            return SendResult(Outcome.RETRY, f"no answer within {timeout_s:.1f} s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a destination bug must not reach the daemon; its message may hold a URL
            return SendResult(Outcome.RETRY, f"{type(exc).__name__}")

    def _give_up(self, entry: Entry, why: str) -> None:
        self.stats.failed += 1
        self.stats.dropped_kinds[entry.alert.kind] += 1
        log.error("alert_dropped", destination=self.name, kind=entry.alert.kind, subject=entry.alert.subject,
                  attempts=entry.attempts, why=why)

    # -- stopping ---------------------------------------------------------------------------------------------------
    async def close(self, deadline_s: float) -> None:
        """Deliver what can be delivered within ``deadline_s`` seconds, then give up the rest (logged)."""
        self._closing = True
        self._deadline = self._clock() + deadline_s
        self._wake.set()
        task = self._task
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=max(deadline_s, 0.0) + 0.05)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            except Exception as exc:
                log.error("alert_sender_failed", destination=self.name, error=type(exc).__name__)
        left = ([self.sending] if self.sending is not None else []) + self._entries()
        self.sending = None
        for queue in self._queues:
            queue.clear()
        for entry in left:
            self.stats.failed += 1
            self.stats.dropped_kinds[entry.alert.kind] += 1
        if left:
            log.warning("alerts_unsent_at_stop", destination=self.name, count=len(left),
                        kinds=sorted({entry.alert.kind for entry in left}), deadline_s=deadline_s)
        log.info("alert_outbox_closed", destination=self.name, delivered=self.stats.delivered,
                 failed=self.stats.failed, deduplicated=self.stats.deduplicated, dropped_full=self.stats.dropped_full)

