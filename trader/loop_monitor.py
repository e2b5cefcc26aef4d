"""Event-loop lag: how late a periodic sleep wakes up.

A task sleeps ``interval_s`` again and again; whatever it wakes later than asked is time the loop spent running
something else without yielding (a slow handler, a blocking call, a garbage-collection pause). ``lag_ms`` is the
last sample and ``max_lag_ms`` the worst of the last ``window`` samples (about ``window × interval_s`` seconds).
``last_wake`` is the ``time.monotonic()`` of the last wake-up: a watchdog in another thread reads it to tell a
stuck loop (the samples stop) from a merely slow one (issue #10). Reading the fields is safe from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

from trader.logging import get_logger

log = get_logger("trader.loop")

DEFAULT_INTERVAL_S = 0.25
DEFAULT_WINDOW = 240  # a minute of samples at the default interval
WARN_LAG_S = 1.0  # a wake-up this late is logged (at most once a minute)
_WARN_EVERY_S = 60.0


class LoopMonitor:
    def __init__(self, *, interval_s: float = DEFAULT_INTERVAL_S, window: int = DEFAULT_WINDOW,
                 warn_lag_s: float = WARN_LAG_S) -> None:
        if interval_s <= 0 or window < 1:
            raise ValueError("interval_s must be positive and window at least 1")
        self.interval_s = interval_s
        self.warn_lag_s = warn_lag_s
        self._samples: deque[float] = deque(maxlen=window)  # seconds late, newest last
        self.samples = 0
        self.last_wake = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._warned_at = -_WARN_EVERY_S

    @property
    def lag_ms(self) -> float:
        """The last sample's lag in milliseconds (0.0 before the first)."""
        return round(self._samples[-1] * 1000, 1) if self._samples else 0.0

    @property
    def max_lag_ms(self) -> float:
        """The worst lag in the window, in milliseconds."""
        return round(max(self._samples, default=0.0) * 1000, 1)

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="loop-monitor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def record(self, late_s: float) -> None:
        """One sample: the wake-up came ``late_s`` seconds after it was due."""
        late_s = max(late_s, 0.0)
        self._samples.append(late_s)
        self.samples += 1
        self.last_wake = time.monotonic()
        if late_s >= self.warn_lag_s and self.last_wake - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = self.last_wake
            log.warning("event_loop_lag", lag_ms=round(late_s * 1000, 1), max_lag_ms=self.max_lag_ms,
                        why="something ran on the event loop without yielding; ticks and orders waited")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.record(loop.time() - due)
