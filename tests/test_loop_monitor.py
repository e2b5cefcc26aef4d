"""The event-loop lag monitor: a loop blocked by a synchronous call shows up as lag, and is logged once."""

from __future__ import annotations

import time

import pytest

from trader.loop_monitor import LoopMonitor

from helpers import captured_logs, wait_for


async def test_a_blocked_loop_shows_as_lag_and_is_logged_once() -> None:
    # Only lower bounds on lag are asserted: a loaded 2-core machine may wake an idle loop late, never early. The
    # warning threshold sits above any idle lateness such a machine shows and below the deliberate block.
    monitor = LoopMonitor(interval_s=0.01, window=1_000, warn_lag_s=0.4)
    assert monitor.lag_ms == 0.0 and monitor.max_lag_ms == 0.0
    with captured_logs() as lines:
        monitor.start()
        try:
            await wait_for(lambda: monitor.samples >= 3)
            before = monitor.samples
            for _ in range(2):
                time.sleep(0.6)  # noqa: ASYNC251 - the point: block the loop as a slow handler would
                await wait_for(lambda: monitor.samples > before)
                before = monitor.samples
            woke = monitor.last_wake
            await wait_for(lambda: monitor.samples > before)
            assert monitor.last_wake > woke
        finally:
            await monitor.stop()
    assert monitor.max_lag_ms >= 550
    warnings = [line for line in lines if line["event"] == "event_loop_lag"]
    assert len(warnings) == 1 and warnings[0]["lag_ms"] >= 400  # two blocks, at most one line a minute
    samples = monitor.samples
    await monitor.stop()  # stopping twice is harmless, and no sample comes after the stop
    assert monitor.samples == samples


def test_samples_are_bounded_and_never_negative() -> None:
    monitor = LoopMonitor(interval_s=1.0, window=3)
    for late in (0.5, -0.1, 0.002, 0.001):
        monitor.record(late)
    assert monitor.lag_ms == 1.0 and monitor.max_lag_ms == 2.0  # the 0.5 s sample has left the window
    with pytest.raises(ValueError):
        LoopMonitor(interval_s=0)
