"""Tick recorder benchmark, run by ``make bench`` as ``.venv/bin/python bench/recorder.py [--quick] [--json]``.

Three figures, each beside a baseline measured in the same run on the same ticks:

* the writer thread's work: ticks → atomic Parquet part files (``TickWriter.write``: columns from the ticks, the
  table, zstd, fsync, rename), against pyarrow writing the same rows from a ready-made table (the encoding alone);
* compaction of a day's parts into one file, against pyarrow reading those parts (the decoding alone);
* the recorder actor's per-tick cost on the event loop (``TickRecorder.record``, batches handed to a queue nobody
  drains, so no disk time is counted), against a bare ``list.append`` of the tick.

The ticks: one index and 42 options, prices on the 5-paise grid, seeded.
"""

from __future__ import annotations

import argparse
import io
import random
import tempfile
import time
from collections.abc import Callable
from datetime import date
from datetime import time as wall_time
from pathlib import Path

import pyarrow.parquet as pq
from benchlib import Figure, emit, note

from trader.actors.tick_recorder import TickRecorder
from trader.adapters.replay.recording import compact, ticks_table
from trader.adapters.replay.tick_writer import Batch, TickWriter
from trader.bus import EventBus
from trader.events import Tick
from trader.logging import configure_logging
from trader.market.calendar import ist_ns
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import FALLBACK_UNDERLYINGS, IndexInstrument, OptionContract, OptionType

DAY = date(2026, 11, 27)
SPEC = FALLBACK_UNDERLYINGS["NIFTY"]


def master() -> InstrumentMaster:
    instruments = InstrumentMaster()
    instruments.add_index(IndexInstrument(exchange=SPEC.spot_exchange, tradingsymbol=SPEC.spot_symbol,
                                          name=SPEC.name, instrument_token=SPEC.spot_token,
                                          tick_size=SPEC.tick_size_paise))
    for i in range(21):
        strike = 25_000 + 100 * i
        for kind in OptionType:
            instruments.add(OptionContract(exchange="NFO", tradingsymbol=f"NIFTY26DEC{strike}{kind.value}",
                                           underlying="NIFTY", expiry=date(2026, 12, 29), strike=strike * 100,
                                           option_type=kind, lot_size=75, tick_size=5,
                                           instrument_token=(1_000 + 2 * i + (kind is OptionType.PE)) << 8 | 2))
    return instruments


def make_ticks(count: int, instruments: InstrumentMaster) -> list[Tick]:
    rng = random.Random(5)
    tokens = [i.instrument_token for i in instruments.registered()]
    start = ist_ns(DAY, wall_time(9, 15))
    ticks = []
    for n in range(count):
        token = tokens[n % len(tokens)]
        last = 5 * rng.randrange(100, 100_000)
        ticks.append(Tick(start + n * 25_000_000, token, last, 75 * n, 75 * rng.randrange(1_000, 5_000), last - 5,
                          75 * rng.randrange(1, 40), last + 5, 75 * rng.randrange(1, 40), start + n * 25_000_000, n))
    return ticks


def best(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smaller run (a few seconds)")
    parser.add_argument("--ticks", type=int, help="ticks per pass (default 400,000, quick 40,000)")
    parser.add_argument("--batch", type=int, default=20_000, help="ticks per part file (recorder.batch_rows)")
    parser.add_argument("--repeat", type=int, help="passes; the best counts (default 3, quick 2)")
    parser.add_argument("--json", action="store_true", help="one JSON object after the figure lines")
    args = parser.parse_args(argv)
    configure_logging("ERROR", io.StringIO())
    count = args.ticks or (40_000 if args.quick else 400_000)
    repeat = args.repeat or (2 if args.quick else 3)
    instruments = master()
    listing = tuple(instruments.registered())
    symbols = {i.instrument_token: i.tradingsymbol for i in listing}
    ticks = make_ticks(count, instruments)
    batches = [ticks[i:i + args.batch] for i in range(0, count, args.batch)]
    note(f"{count:,} ticks of {len(listing)} instruments, {len(batches)} parts of {args.batch:,}, best of {repeat}")

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        runs = iter(range(1_000))

        def write_parts() -> None:
            writer = TickWriter(root / f"run{next(runs)}")
            for n, batch in enumerate(batches):
                writer.write(Batch(DAY, batch, listing if n == 0 else None))

        tables = [ticks_table(batch, symbols) for batch in batches]

        def write_tables() -> None:
            folder = root / f"plain{next(runs)}"
            folder.mkdir()
            for n, table in enumerate(tables):
                pq.write_table(table, folder / f"{n}.parquet", compression="zstd")

        parts_s = best(repeat, write_parts)
        plain_s = best(repeat, write_tables)

        folders = []
        for _ in range(repeat):
            write_parts()
            folders.append(root / f"run{next(runs) - 1}" / DAY.isoformat())
        parts = [sorted(folder.glob("part-*.parquet")) for folder in folders]
        read_s = best(1, lambda: [pq.read_table(path) for path in parts[0]])
        pending = iter(folders)
        compact_s = best(repeat, lambda: compact(next(pending)))

    def record_all() -> None:
        actor = TickRecorder(EventBus(), instruments, Path(tempfile.gettempdir()) / "never-written",
                             batch_rows=args.batch, max_batches=len(batches) + 1)
        for tick in ticks:
            actor.record(tick)

    def append_all() -> None:
        rows: list[Tick] = []
        for tick in ticks:
            rows.append(tick)

    record_s = best(repeat, record_all)
    append_s = best(repeat, append_all)
    figures = [
        Figure("tick recorder, ticks to atomic Parquet parts (writer thread)", count / parts_s, "ticks/s",
               "pyarrow write_table of the same rows", count / plain_s),
        Figure("tick recorder, compaction of the parts into the day's file", count / compact_s, "ticks/s",
               "pyarrow read_table of the parts", count / read_s),
        Figure("tick recorder, TickRecorder.record on the event loop", record_s / count * 1e9, "ns/tick",
               "list.append of the tick", append_s / count * 1e9),
    ]
    emit(figures, {"ticks": count, "batch": args.batch, "repeat": repeat} if args.json else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
