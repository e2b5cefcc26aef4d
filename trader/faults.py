"""Crash points for the kill -9 harness (``bench/crash.py``): the daemon kills itself at a named step.

``TRADER_CRASH_POINT=<name>[:<n>]`` makes the process SIGKILL itself the n-th time (default the first) it passes
the point named. Without the variable a crash point is one dictionary look-up. The names:
- ``intent_written``: the intent is committed to the journal, its order not yet sent;
- ``order_sent``: the broker accepted the order, the reply not yet journaled;
- ``fill_received``: a fill reached the execution actor, not yet journaled.
"""

from __future__ import annotations

import os
import signal

POINTS = ("intent_written", "order_sent", "fill_received")
_ENV = "TRADER_CRASH_POINT"
_passes: dict[str, int] = {}


def _target() -> tuple[str, int] | None:
    raw = os.environ.get(_ENV, "")
    if not raw:
        return None
    name, _, count = raw.partition(":")
    if name not in POINTS or (count and not count.isdigit()):
        raise ValueError(f"{_ENV}={raw!r}: use one of {', '.join(POINTS)}, optionally with ':<n>'")
    return name, int(count) if count else 1


def crash_point(name: str) -> None:
    target = _target()
    if target is None or target[0] != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] >= target[1]:
        os.kill(os.getpid(), signal.SIGKILL)
