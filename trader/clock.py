"""The Clock port. Nothing else in ``trader`` reads the time; tests inject a SimClock."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from trader.logging import get_logger

log = get_logger("trader.clock")

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


# How far an exchange timestamp may lie from the exchange clock's time before it is refused (the default of the
# `exchange_time_tolerance_seconds` setting). The real exchange agrees with wall time to within a second.
DEFAULT_EXCHANGE_TOLERANCE_NS = 600 * NS_PER_SECOND
# A jump beyond the tolerance is followed only when this many consecutive observations agree on it (a simulator
# running N× faster than real time after a reconnect); a single corrupt stamp never moves the clock.
EXCHANGE_JUMP_CONFIRMATIONS = 3


FIRST_STAMP_BOUND_NS = 3_653 * 86_400 * NS_PER_SECOND  # ten years from wall time either way (recorded data)


class ExchangeClock(LiveClock):
    """Wall time, set to the exchange's clock by its first timestamp and moved forward whenever it runs ahead.

    Against the real exchange the two agree to within a second. Against the simulator, whose session may run on
    another day, at another hour and N× faster, event time follows the simulated session, so a rehearsal works at
    any hour. After the first timestamp it never goes backwards.

    After the first timestamp, a stamp more than ``tolerance_ns`` away from the clock's time is refused: one packet
    stamped 2106 must not move the clock there. One further ahead than that is followed only once
    ``EXCHANGE_JUMP_CONFIRMATIONS`` consecutive stamps agree on it (each within the tolerance of the one before),
    which a lone corrupt packet never achieves but a simulator that ran ahead during a reconnect does.
    """

    def __init__(self, tolerance_ns: int = DEFAULT_EXCHANGE_TOLERANCE_NS) -> None:
        if tolerance_ns <= 0:
            raise ValueError(f"tolerance_ns must be positive, got {tolerance_ns}")
        self.tolerance_ns = tolerance_ns
        self._offset_ns = 0
        self._synced = False
        self._jump_ahead_ns = 0  # the offset a pending jump would set
        self._jump_seen = 0
        self.refused = 0
        self.jumps = 0

    def problem(self, exchange_ts_ns: int) -> str:
        """Why ``exchange_ts_ns`` cannot be trusted now: "" if it can, else "stale" (too far behind the clock) or
        "future" (too far ahead of it, or not a time at all). Before the first timestamp anything positive is fine."""
        if exchange_ts_ns <= 0:
            return "future"
        if not self._synced:
            return ""
        delta = exchange_ts_ns - self.now_ns()
        if delta > self.tolerance_ns:
            return "future"
        if delta < -self.tolerance_ns:
            return "stale"
        return ""

    def observe(self, exchange_ts_ns: int) -> bool:
        """Take an exchange timestamp into account; True if it moved the clock."""
        if exchange_ts_ns <= 0:
            return False
        ahead = exchange_ts_ns - time.time_ns()
        if not self._synced:
            if abs(ahead) > FIRST_STAMP_BOUND_NS:
                # Nothing to compare the first stamp with but wall time: one corrupt first packet (2106) must not
                # set the clock for the run. The bound is wide, so a rehearsal on another simulated day still works.
                self.refused += 1
                return False
            self._offset_ns = ahead
            self._synced = True
            return True
        delta = ahead - self._offset_ns
        if delta > self.tolerance_ns:
            return self._confirm_jump(ahead)
        self._jump_seen = 0
        if delta < -self.tolerance_ns:
            self.refused += 1
            return False
        if delta > 0:
            self._offset_ns = ahead
            return True
        return False

    def _confirm_jump(self, ahead: int) -> bool:
        if self._jump_seen and abs(ahead - self._jump_ahead_ns) <= self.tolerance_ns:
            self._jump_seen += 1
        else:
            self._jump_seen = 1
        self._jump_ahead_ns = ahead
        if self._jump_seen < EXCHANGE_JUMP_CONFIRMATIONS:
            self.refused += 1
            return False
        self._jump_seen = 0
        log.warning("exchange_clock_jumped", by_seconds=(ahead - self._offset_ns) // NS_PER_SECOND,
                    confirmations=EXCHANGE_JUMP_CONFIRMATIONS,
                    detail="consecutive exchange timestamps agree on a time beyond the tolerance (a simulator running "
                           "faster than real time); the real exchange never does this")
        self._offset_ns = ahead
        self.jumps += 1
        return True

    def now_ns(self) -> int:
        return time.time_ns() + self._offset_ns
