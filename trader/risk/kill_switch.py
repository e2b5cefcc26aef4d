"""The kill-switch file: if it exists, the daemon halts — a stop that works even when the control API does not.

`touch /path/to/KILL` halts trading within a second of event time (the risk gate looks on every tick, and on
every heartbeat when no tick comes); removing the file does not resume (a human says
`resume`), so a flapping file system cannot switch trading back on.
"""

from __future__ import annotations

from pathlib import Path

_CHECK_EVERY_NS = 1_000_000_000


class KillSwitchFile:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._next_check_ns = 0

    def tripped(self, ts_ns: int) -> bool:
        """True if the file exists; looks at the file system at most once a second of event time."""
        if self.path is None or ts_ns < self._next_check_ns:
            return False
        self._next_check_ns = ts_ns + _CHECK_EVERY_NS
        return self.path.exists()
