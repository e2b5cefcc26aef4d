"""Actor base class and the supervisor that restarts a failed actor with backoff.

An actor owns one inbox and one ``run()`` coroutine; it talks to the rest of the system only through the bus.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from trader.bus import EventBus, Inbox
from trader.logging import get_logger

log = get_logger("trader.supervisor")

# A handler that fails on the same event this many times lets it go (logged in full as a dead letter) rather than
# crash-looping on it forever; handlers are written so that a second delivery is harmless.
MAX_DELIVERIES = 2
_HEALTHY_RUN_S = 60.0
_STOP_WAIT_S = 2.0


class Actor:
    """Subclasses set ``name``, list ``subscriptions()`` and implement ``handle``; sources override ``run``."""

    name = "actor"

    def __init__(self, bus: EventBus, *, conflate_ticks: bool = True, name: str | None = None) -> None:
        if name is not None:
            self.name = name
        self.bus = bus
        self.inbox = Inbox(self.name, conflate_ticks=conflate_ticks)
        self._current: object | None = None
        self._deliveries: dict[int, int] = {}
        self.dead_letters = 0
        for event_type in self.subscriptions():
            bus.subscribe(event_type, self.inbox)

    def subscriptions(self) -> Iterable[type]:
        return ()

    async def handle(self, event: Any) -> None:
        raise NotImplementedError

    async def on_start(self) -> None:
        """Called before the first event and after each restart."""

    async def on_stop(self) -> None:
        """Called once at shutdown, after the inbox has drained."""

    async def run(self) -> None:
        await self.on_start()
        inbox = self.inbox
        get_nowait = inbox.get_nowait
        while True:
            # A pending event is taken without the ``get()`` coroutine (which would not suspend either): one hop less
            # per event on the hot path; only an empty inbox waits.
            event = get_nowait()
            if event is None:
                event = await inbox.get()
            self._current = event
            await self.handle(event)
            self._current = None
            if self._deliveries:
                self._deliveries.pop(id(event), None)
            inbox.task_done()

    def recover_after_crash(self) -> None:
        """Put the event whose handling failed back at the head of the inbox, or give it up as a dead letter."""
        event, self._current = self._current, None
        if event is None:
            return
        key = id(event)
        attempts = self._deliveries.get(key, 0) + 1
        self.inbox.task_done()  # the failed delivery is finished either way
        if attempts < MAX_DELIVERIES:
            if self.inbox.push_front(event):
                self._deliveries[key] = attempts
            return  # a tick superseded by a newer one is simply not redelivered
        self._deliveries.pop(key, None)
        self.dead_letters += 1
        log.error("dead_letter", actor=self.name, event_type=type(event).__name__, event_repr=repr(event))


class Supervisor:
    """Runs actors as tasks; an actor that raises is logged with its traceback and restarted with backoff."""

    def __init__(self, *, initial_backoff_s: float = 0.05, max_backoff_s: float = 5.0) -> None:
        self._initial_backoff = initial_backoff_s
        self._max_backoff = max_backoff_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.restarts: dict[str, int] = {}

    def start(self, actor: Actor) -> None:
        if actor.name in self._tasks:
            raise ValueError(f"an actor named {actor.name!r} is already running")
        self.restarts[actor.name] = 0
        self._tasks[actor.name] = asyncio.create_task(self._keep_alive(actor), name=f"actor:{actor.name}")

    async def _keep_alive(self, actor: Actor) -> None:
        backoff = self._initial_backoff
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await actor.run()
                return  # a source that ran out of data ends normally
            except asyncio.CancelledError:
                raise
            except Exception:
                if loop.time() - started > _HEALTHY_RUN_S:
                    backoff = self._initial_backoff  # it had recovered: a new failure starts the backoff again
                self.restarts[actor.name] += 1
                log.exception("actor_crashed", actor=actor.name, restarts=self.restarts[actor.name],
                              backoff_s=backoff)
                actor.recover_after_crash()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    def task(self, name: str) -> asyncio.Task[None]:
        return self._tasks[name]

    async def stop(self, names: Iterable[str] | None = None) -> None:
        chosen = list(self._tasks) if names is None else [n for n in names if n in self._tasks]
        tasks = [self._tasks.pop(name) for name in chosen]
        for _ in range(3):
            pending = [task for task in tasks if not task.done()]
            if not pending:
                break
            for task in pending:
                task.cancel()
            # A task can miss a cancellation (a library swallowing it); ask again rather than wait forever.
            await asyncio.wait(pending, timeout=_STOP_WAIT_S)
        for task in tasks:
            if not task.done():
                log.error("actor_did_not_stop", task=task.get_name())
            elif not task.cancelled() and task.exception() is not None:
                log.error("actor_stopped_with_error", task=task.get_name(), error=repr(task.exception()))
