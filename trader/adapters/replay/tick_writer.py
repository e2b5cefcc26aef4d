"""The tick recorder's writer thread: batches from the event loop, through a bounded queue, to the day folders'
Parquet parts (``recording.py`` holds the files: layout, atomic writes, the instrument dump, compaction, recovery).
The caller never waits for the disk; a full disk is logged and counted, never raised into trading."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa

from trader.adapters.replay.recording import (
    DUMP_NAME,
    DayFolder,
    Instrument,
    compact,
    dump_conflicts,
    recover,
    ticks_table,
    write_dump,
    write_parquet_atomically,
)
from trader.events import Tick
from trader.logging import get_logger

log = get_logger("trader.recorder")


@dataclass(frozen=True, slots=True)
class Batch:
    """Ticks of one IST day, in arrival order; ``instruments``: the master when it changed since the last batch."""

    day: date
    ticks: list[Tick]
    instruments: tuple[Instrument, ...] | None = None


_STOP = object()


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


class TickWriter:
    """Writes batches to Parquet parts on one background thread; the caller never waits (``offer``).

    Memory is bounded by ``max_batches`` queued batches; ``offer`` refuses a batch when the queue is full (the
    caller counts it as dropped). Write errors (a full disk) are logged and counted, never raised into trading.
    """

    def __init__(self, root: Path, *, max_batches: int = 8) -> None:
        self.root = root
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_batches)
        self._thread: threading.Thread | None = None
        self._folders: dict[date, DayFolder] = {}
        self._instruments: dict[int, Instrument] = {}
        self._symbols: dict[int, str] = {}
        self.parts_written = 0
        self.rows_written = 0
        self.errors = 0
        self.ticks_already_recorded = 0  # re-sent past ticks of a day the files already hold (not written again)
        self._warned_resent = False
        self.last_error = ""
        self.compacted: list[Path] = []

    @property
    def max_batches(self) -> int:
        return self._queue.maxsize

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tick-writer", daemon=True)
            self._thread.start()

    def offer(self, batch: Batch) -> bool:
        """Queue ``batch`` for writing; False (and nothing queued) when the queue is full."""
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            return False
        return True

    def close(self, final: Batch | None = None, timeout_s: float | None = None) -> bool:
        """Write ``final`` (waiting for room), compact every day written, stop the thread. Blocking: call it from a
        worker thread (``asyncio.to_thread``). False if the thread was still busy after ``timeout_s``."""
        if self._thread is None:
            self.start()
        assert self._thread is not None
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            if final is not None and final.ticks:
                self._queue.put(final, timeout=_left(deadline))
            self._queue.put(_STOP, timeout=_left(deadline))
        except queue.Full:
            return False  # the writer is stuck (a hung disk): its thread is a daemon, the parts on disk are whole
        self._thread.join(_left(deadline))
        return not self._thread.is_alive()

    def _run(self) -> None:
        self.compacted.extend(recover(self.root))
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            assert isinstance(item, Batch)
            try:
                self.write(item)
            except Exception as exc:  # the writer thread must outlive any one batch
                self.errors += 1
                self.last_error = str(exc)
                log.error("recorder_write_failed", day=item.day.isoformat(), ticks=len(item.ticks), error=repr(exc),
                          fix="free disk space or make the data dir writable; trading goes on, these ticks are lost")
            self._queue.task_done()
        for day in list(self._folders):
            self._finish(day)
        self._queue.task_done()

    def wait_written(self) -> None:
        """Block until every batch queued so far is written (tests, benchmarks; never the event loop)."""
        self._queue.join()

    def write(self, batch: Batch) -> Path | None:
        """One batch → one part file of its day (the writer thread's work; tests call it directly). A batch without
        ticks only says the day rolled: the earlier days are compacted, nothing is written."""
        if batch.instruments is not None:
            self._instruments.update((i.instrument_token, i) for i in batch.instruments if i.instrument_token)
            self._symbols = {token: i.tradingsymbol for token, i in self._instruments.items()}
        for day in [d for d in self._folders if d != batch.day]:
            self._finish(day)  # the day rolled: the earlier day is complete
        if not batch.ticks:
            return None
        folder = self._folders.get(batch.day)
        if folder is None or (batch.instruments is not None and dump_conflicts(folder.dump, batch.instruments)):
            if folder is not None:  # a contract listed later clashes with an earlier run's: go on elsewhere
                self._finish(batch.day)
            folder = self._folders[batch.day] = self._choose_folder(batch.day)
            folder.dump = write_dump(folder.path / DUMP_NAME, folder.dump, self._instruments.values())
        elif batch.instruments is not None:
            folder.dump = write_dump(folder.path / DUMP_NAME, folder.dump, self._instruments.values())
        ticks = folder.unseen(batch.ticks)
        if len(ticks) < len(batch.ticks):
            self.ticks_already_recorded += len(batch.ticks) - len(ticks)
            if not self._warned_resent:
                self._warned_resent = True
                log.warning("recorder_ticks_already_recorded", folder=str(folder.path),
                            why="the feed sent times this day's files already hold (the built-in market restarted "
                                "its session): they are not recorded twice")
        if not ticks:
            return None
        path = folder.path / f"part-{folder.next_part:06d}.parquet"
        write_parquet_atomically(path, ticks_table(ticks, self._symbols))
        folder.next_part += 1
        self.parts_written += 1
        self.rows_written += len(ticks)
        return path

    def _choose_folder(self, day: date) -> DayFolder:
        """The day's folder, or ``<day>-N`` when an earlier run of the day listed instruments under other tokens."""
        suffix = 1
        while True:
            path = self.root / (day.isoformat() if suffix == 1 else f"{day.isoformat()}-{suffix}")
            suffix += 1
            folder = DayFolder.open(path)
            problems = dump_conflicts(folder.dump, self._instruments.values())
            if not problems:
                return folder
            log.warning("recorder_day_taken", folder=str(path), problems=problems[:3],
                        why="an earlier run of this day recorded other instruments under these tokens (the built-in "
                            "market lists its contracts afresh after a restart): this run records next to it")

    def _finish(self, day: date) -> None:
        folder = self._folders.pop(day)
        try:
            target = compact(folder.path)
        except (OSError, ValueError, pa.ArrowException) as exc:
            self.errors += 1
            self.last_error = str(exc)
            log.error("recorder_compaction_failed", folder=str(folder.path), error=str(exc),
                      fix="the parts stay readable by the replay; the next start tries again")
            return
        if target is not None:
            self.compacted.append(target)
            log.info("recorder_day_compacted", folder=str(folder.path), file=target.name)
