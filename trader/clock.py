"""The Clock port. Nothing else in ``trader`` reads the time; tests inject a SimClock."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

NS_PER_SECOND = 1_000_000_000


class Clock(Protocol):
    def now_ns(self) -> int:
        """Event time, integer nanoseconds UTC."""
        ...

    async def sleep_until(self, ts_ns: int) -> None:
        """Return once event time has reached ``ts_ns``."""
        ...

    @property
    def paced(self) -> bool:
        """False when simulated time runs as fast as the events can be processed."""
        ...


class LiveClock:
    """Wall time."""

    def now_ns(self) -> int:
        return time.time_ns()

    async def sleep_until(self, ts_ns: int) -> None:
        delay = ts_ns - self.now_ns()
        await asyncio.sleep(max(delay, 0) / NS_PER_SECOND)

    @property
    def paced(self) -> bool:
        return True


class SimClock:
    """Simulated time starting at ``start_ns``.

    ``speed > 0`` runs it at ``speed`` × real time (the built-in market at ``--speed 600`` shows a trading day in
    about 40 minutes); ``speed == 0`` runs it unpaced: time only moves when the data source moves it, so a trading
    day replays as fast as the actors can handle it and the run is reproducible.
    """

    def __init__(self, start_ns: int, speed: float = 0.0) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0 (0 = unpaced), got {speed}")
        self._speed = speed
        self._anchor_ns = start_ns
        self._anchor_mono_ns = time.monotonic_ns()

    @property
    def speed(self) -> float:
        return self._speed

    @property
    def paced(self) -> bool:
        return self._speed > 0

    def now_ns(self) -> int:
        if self._speed == 0:
            return self._anchor_ns
        elapsed = time.monotonic_ns() - self._anchor_mono_ns
        return self._anchor_ns + int(elapsed * self._speed)

    def jump_to(self, ts_ns: int) -> None:
        """Move time forward at once (the night between two sessions); never backwards."""
        now = self.now_ns()
        if ts_ns <= now:
            return
        self._anchor_ns = ts_ns
        self._anchor_mono_ns = time.monotonic_ns()

    async def sleep_until(self, ts_ns: int) -> None:
        if self._speed == 0:
            self._anchor_ns = max(self._anchor_ns, ts_ns)
            # Still yield, so that an unpaced loop cannot starve the other actors.
            await asyncio.sleep(0)
            return
        delay_ns = ts_ns - self.now_ns()
        if delay_ns > 0:
            await asyncio.sleep(delay_ns / self._speed / NS_PER_SECOND)
        else:
            await asyncio.sleep(0)


class ExchangeClock(LiveClock):
    """Wall time, set to the exchange's clock by its first timestamp and moved forward whenever it runs ahead.

    Against the real exchange the two agree to within a second. Against the simulator, whose session may run on
    another day, at another hour and N× faster, event time follows the simulated session, so a rehearsal works at
    any hour. After the first timestamp it never goes backwards.
    """

    def __init__(self) -> None:
        self._offset_ns = 0
        self._synced = False

    def observe(self, exchange_ts_ns: int) -> bool:
        """Take an exchange timestamp into account; True if it moved the clock."""
        if exchange_ts_ns <= 0:
            return False
        ahead = exchange_ts_ns - time.time_ns()
        if not self._synced or ahead > self._offset_ns:
            moved = ahead != self._offset_ns
            self._offset_ns = ahead
            self._synced = True
            return moved
        return False

    def now_ns(self) -> int:
        return time.time_ns() + self._offset_ns
