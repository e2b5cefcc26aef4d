"""The tick recorder: every tick a paper or live run receives, and the day's instrument master, to Parquet.

Off the hot path: ``handle`` appends the (immutable) tick to a list — no conversion, no I/O — and hands a full batch
(``batch_rows`` ticks, or ``batch_seconds`` of wall time since its first tick, checked on every tick and heartbeat,
or the IST day's end) to the single writer thread (``trader/adapters/replay/tick_writer.py``) through a bounded queue.
When the queue is full the batch is dropped, counted and logged as an error: the event loop never waits for the
disk and trading never stops for the recorder. A dropped batch is a hole in the recording that a replay's gap check
reports (``replay_done gaps=``). ``close`` (at shutdown) writes the last batch and compacts each day written.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from datetime import time as wall_time
from datetime import timedelta
from pathlib import Path
from typing import Any

from trader.actors.base import Actor
from trader.adapters.replay.recording import Instrument
from trader.adapters.replay.tick_writer import Batch, TickWriter
from trader.bus import EventBus
from trader.events import Heartbeat, Tick
from trader.logging import get_logger
from trader.market.calendar import ist_date, ist_ns
from trader.market.instrument_master import InstrumentMaster

log = get_logger("trader.recorder")

NS_PER_SECOND = 1_000_000_000


class TickRecorder(Actor):
    name = "recorder"

    def __init__(self, bus: EventBus, instruments: InstrumentMaster, root: Path, *, batch_rows: int = 20_000,
                 batch_seconds: float = 5.0, max_batches: int = 8,
                 monotonic_ns: Callable[[], int] = time.monotonic_ns) -> None:
        super().__init__(bus, conflate_ticks=False)  # every tick, never only the newest
        self.instruments = instruments
        self.writer = TickWriter(root, max_batches=max_batches)
        self.batch_rows = batch_rows
        self._max_age_ns = int(batch_seconds * NS_PER_SECOND)
        self._monotonic_ns = monotonic_ns
        self._rows: list[Tick] = []
        self._first_wall_ns = 0
        self._day_start = 0
        self._day_end = 0
        self._day = ist_date(0)
        self._instrument_count = -1
        self.ticks_recorded = 0  # handed to the writer
        self.batches_dropped = 0
        self.ticks_dropped = 0
        self._closed = False

    def subscriptions(self) -> Iterable[type]:
        return (Tick, Heartbeat)

    async def on_start(self) -> None:
        self.writer.start()  # compacts what a killed run left, then waits for batches

    async def handle(self, event: Any) -> None:
        if type(event) is Tick:
            self.record(event)
        elif type(event) is Heartbeat:
            if self._day_end and event.ts_ns >= self._day_end:  # midnight IST passed without a tick
                self._roll(event.ts_ns)
                self.writer.offer(Batch(self._day, []))  # the finished day is compacted now, not at the next tick
            elif self._rows and self._monotonic_ns() - self._first_wall_ns >= self._max_age_ns:
                self.flush()  # a quiet feed: the last ticks still reach the disk within a heartbeat

    def _roll(self, ts_ns: int) -> None:
        self.flush()
        day = ist_date(ts_ns)
        self._day = day
        self._day_start = ist_ns(day, wall_time(0))
        self._day_end = ist_ns(day + timedelta(days=1), wall_time(0))

    def record(self, tick: Tick) -> None:
        """The hot path: a comparison, an append, and a batch handed over when full or old."""
        if not self._day_start <= tick.ts_ns < self._day_end:
            self._roll(tick.ts_ns)
        rows = self._rows
        if not rows:
            self._first_wall_ns = self._monotonic_ns()
        rows.append(tick)
        if len(rows) >= self.batch_rows or self._monotonic_ns() - self._first_wall_ns >= self._max_age_ns:
            self.flush()

    def _batch(self) -> Batch | None:
        if not self._rows:
            return None
        registered = self.instruments.registered()
        snapshot: tuple[Instrument, ...] | None = None
        if len(registered) != self._instrument_count:  # the master only grows: a new count is a new listing
            self._instrument_count = len(registered)
            snapshot = tuple(registered)
        batch = Batch(self._day, self._rows, snapshot)
        self._rows = []
        return batch

    def flush(self) -> None:
        """Hand the pending ticks to the writer, never waiting: a full queue drops them (counted, logged)."""
        batch = self._batch()
        if batch is None:
            return
        if self.writer.offer(batch):
            self.ticks_recorded += len(batch.ticks)
            return
        if batch.instruments is not None:
            self._instrument_count = -1  # the new listing goes with the next batch instead
        self.batches_dropped += 1
        self.ticks_dropped += len(batch.ticks)
        log.error("recorder_batch_dropped", ticks=len(batch.ticks), batches_dropped=self.batches_dropped,
                  ticks_dropped=self.ticks_dropped, queue=self.writer.max_batches,
                  why="the disk writer is behind: trading goes on, the recording has a hole here (a replay of "
                      "this day reports it as a gap)",
                  fix="faster disk, or larger recorder.batch_rows / recorder.max_batches")

    async def close(self, timeout_s: float = 5.0) -> None:
        """Write the last batch (waiting for room in the queue), compact the days written, stop the writer."""
        if self._closed:
            return
        self._closed = True
        final = self._batch()
        finished = await asyncio.to_thread(self.writer.close, final, timeout_s)
        if final is not None:
            self.ticks_recorded += len(final.ticks)
        writer = self.writer
        log.info("recorder_stopped", ticks=self.ticks_recorded, parts=writer.parts_written, rows=writer.rows_written,
                 batches_dropped=self.batches_dropped, ticks_dropped=self.ticks_dropped, errors=writer.errors,
                 files=[str(path) for path in writer.compacted[-3:]], finished=finished)
        if not finished:
            log.error("recorder_stop_timeout", timeout_s=timeout_s,
                      why="compaction was still running: the parts are safe and the next start compacts them")
