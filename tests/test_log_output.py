"""The log output when its reader goes away: never a traceback, never a deadlock, and the daemon is told once."""

from __future__ import annotations

import asyncio
import os

import structlog

from trader.logging import ClosedOutputGuard, configure_logging, get_logger, on_output_closed


def broken_pipe() -> tuple[int, int]:
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: the next write raises BrokenPipeError
    return read_end, write_end


def test_a_closed_reader_before_the_callback_is_registered_fires_it_at_registration() -> None:
    _, write_end = broken_pipe()
    saved = structlog.get_config()
    with os.fdopen(write_end, "w") as stream:
        configure_logging("INFO", stream)
        try:
            get_logger("t").info("start_up_line")  # hits the closed pipe during start-up: no loop, no callback yet
            calls: list[str] = []
            on_output_closed(lambda: calls.append("stop"))
            assert calls == ["stop"]
            get_logger("t").info("later_line")  # the fd now points at /dev/null: no error, no second call
            assert calls == ["stop"]
        finally:
            structlog.configure(**saved)


async def test_a_closed_reader_inside_the_loop_calls_back_once_outside_the_logger() -> None:
    _, write_end = broken_pipe()
    saved = structlog.get_config()
    with os.fdopen(write_end, "w") as stream:
        configure_logging("INFO", stream)
        try:
            called = asyncio.Event()
            calls: list[int] = []

            def stop() -> None:
                calls.append(1)
                get_logger("t").info("stop_requested")  # logging from the callback must not deadlock the logger
                called.set()

            on_output_closed(stop)
            for _ in range(3):
                get_logger("t").info("tick")
            await asyncio.wait_for(called.wait(), 5)
            get_logger("t").info("after")
            await asyncio.sleep(0)  # a second call would have been scheduled by now
            assert calls == [1]
        finally:
            structlog.configure(**saved)


def test_the_guard_passes_writes_through_while_the_reader_is_there() -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as raw, os.fdopen(read_end, "rb") as reader:
        guard = ClosedOutputGuard(raw)
        assert guard.write(b"{}\n") == 3
        guard.flush()
        assert reader.read(3) == b"{}\n"
        assert not guard.closed_output


def test_a_stream_closed_under_the_logger_is_treated_as_a_gone_reader() -> None:
    # What the CI run of #11 hit: a test's captured stdout, closed after that test, still held by the log set-up; the
    # next daemon's actor logged, the write raised ValueError, its crash handler logged and raised again, and the
    # actor's inbox never drained. A log call must not raise, and the daemon is told once that its output is gone.
    read_end, write_end = os.pipe()
    os.close(read_end)
    raw = os.fdopen(write_end, "wb")
    guard = ClosedOutputGuard(raw)
    calls: list[str] = []
    guard.on_closed = lambda: calls.append("stop")
    raw.close()
    assert guard.write(b"{}\n") == 3  # no ValueError
    guard.flush()
    assert guard.closed_output
    assert guard.write(b"more\n") == 5


def test_logging_through_a_closed_stream_does_not_raise() -> None:
    saved = structlog.get_config()
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w")
    try:
        configure_logging("INFO", stream)
        stream.close()
        get_logger("t").warning("command", kind="stop_entries")
        get_logger("t").exception("actor_crashed")
    finally:
        structlog.configure(**saved)
        os.close(read_end)
