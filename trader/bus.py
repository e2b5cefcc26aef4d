"""The one event bus: typed routing of events to actor inboxes.

``publish`` never blocks and never awaits: it appends to each subscriber's inbox. Backpressure is per event kind:
an inbox that subscribed to ticks with ``conflate=True`` keeps only the newest pending tick per instrument (older
ones are skipped when read and counted); every other event is delivered, in publish order, exactly once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from trader.events import Tick

# Stale ticks stay in the deque until the reader skips them; past this many queued items the inbox compacts them
# out so a consumer that lags for a long time cannot grow memory without bound.
_COMPACT_THRESHOLD = 50_000


class Inbox:
    """An actor's queue. Single consumer; any number of publishers on the same event loop."""

    __slots__ = (
        "_compact_at",
        "_conflate_ticks",
        "_idle_waiters",
        "_items",
        "_latest_tick",
        "_reader",
        "_unfinished",
        "conflated",
        "delivered",
        "max_depth",
        "name",
    )

    def __init__(self, name: str, *, conflate_ticks: bool = False) -> None:
        self.name = name
        self._conflate_ticks = conflate_ticks
        self._items: deque[Any] = deque()
        self._latest_tick: dict[int, Tick] = {}
        self._reader: asyncio.Future[None] | None = None
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._unfinished = 0
        self._compact_at = _COMPACT_THRESHOLD
        self.conflated = 0
        self.delivered = 0
        self.max_depth = 0

    def put(self, event: object) -> None:
        if self._conflate_ticks and type(event) is Tick:
            if event.instrument_token in self._latest_tick:
                # The older tick stays queued but is now stale: get() skips it. It was never handed out, so the
                # unfinished count already includes one slot for this instrument.
                self.conflated += 1
            else:
                self._unfinished += 1
            self._latest_tick[event.instrument_token] = event
        else:
            self._unfinished += 1
        items = self._items
        items.append(event)
        depth = len(items)
        if depth > self.max_depth:  # noqa: PLR1730 - cheaper than a max() call on every put
            self.max_depth = depth
        if depth > self._compact_at and self._conflate_ticks:
            self._compact()
            # Double the trigger past what compaction could not remove, so a backlog of live events costs
            # amortised O(1) per put instead of a full scan each time.
            self._compact_at = max(_COMPACT_THRESHOLD, 2 * len(self._items))
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    def _compact(self) -> None:
        latest = self._latest_tick
        self._items = deque(
            e for e in self._items if type(e) is not Tick or latest.get(e.instrument_token) is e
        )

    def get_nowait(self) -> object | None:
        """The next live event, or None when nothing is pending."""
        items = self._items
        while items:
            event: object = items.popleft()
            if self._conflate_ticks and type(event) is Tick:
                token = event.instrument_token
                if self._latest_tick.get(token) is not event:
                    continue  # superseded by a newer tick for the same instrument
                del self._latest_tick[token]
            self.delivered += 1
            return event
        return None

    async def get(self) -> object:
        while True:
            event = self.get_nowait()
            if event is not None:
                return event
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None

    def push_front(self, event: object) -> bool:
        """Re-deliver an event that was handed out but not finished (an actor crashed while handling it).

        Returns False for a tick that a newer tick of the same instrument has superseded meanwhile.
        """
        if self._conflate_ticks and type(event) is Tick:
            if event.instrument_token in self._latest_tick:
                return False
            self._latest_tick[event.instrument_token] = event
        self._unfinished += 1
        self._items.appendleft(event)
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)
        return True

    def hold(self) -> None:
        """Count work the consumer carries on outside its handler as unfinished; release with ``task_done``."""
        self._unfinished += 1

    def task_done(self) -> None:
        self._unfinished -= 1
        if self._unfinished <= 0:
            self._unfinished = 0
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    @property
    def idle(self) -> bool:
        """True when every event put here has been handled (not merely taken)."""
        return self._unfinished == 0

    def __len__(self) -> int:
        return len(self._items)

    async def join(self) -> None:
        if self._unfinished == 0:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._idle_waiters.append(waiter)
        await waiter


class EventBus:
    def __init__(self) -> None:
        self._routes: dict[type, list[Inbox]] = {}
        # Per event type, the subscribers' ``put`` and then the taps, in that order: one loop of bound methods per
        # publish (rebuilt on subscribe and tap, which happen at start-up).
        self._calls: dict[type, tuple[Callable[[object], None], ...]] = {}
        self._inboxes: list[Inbox] = []
        self._taps: list[Callable[[object], None]] = []
        self._taps_only: tuple[Callable[[object], None], ...] = ()
        self.published = 0

    def subscribe(self, event_type: type, inbox: Inbox) -> None:
        subscribers = self._routes.setdefault(event_type, [])
        if inbox in subscribers:
            raise ValueError(f"inbox {inbox.name!r} already subscribes to {event_type.__name__}")
        subscribers.append(inbox)
        if inbox not in self._inboxes:
            self._inboxes.append(inbox)
        self._rebuild()

    def tap(self, observer: Callable[[object], None]) -> None:
        """Call ``observer`` synchronously for every published event (tests, recorders); it must not raise."""
        self._taps.append(observer)
        self._rebuild()

    def _rebuild(self) -> None:
        taps = tuple(self._taps)
        self._taps_only = taps
        self._calls = {kind: (*(inbox.put for inbox in inboxes), *taps) for kind, inboxes in self._routes.items()}

    def publish(self, event: object) -> None:
        self.published += 1
        for call in self._calls.get(type(event), self._taps_only):
            call(event)

    @property
    def inboxes(self) -> tuple[Inbox, ...]:
        return tuple(self._inboxes)

    @property
    def conflated(self) -> int:
        return sum(inbox.conflated for inbox in self._inboxes)

    async def wait_idle(self) -> None:
        """Wait until every inbox has handled everything, including events published while waiting."""
        while True:
            busy = [inbox for inbox in self._inboxes if not inbox.idle]
            if not busy:
                return
            for inbox in busy:
                await inbox.join()
