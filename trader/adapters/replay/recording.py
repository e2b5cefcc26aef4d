"""Recording the ticks a paper or live run receives, in the replay schema, so a day can be backtested as it traded.

Layout under ``<data_dir>/ticks/<mode>`` (docs/data.md, "Recording"; paper's ticks never mix with live's), one
folder per IST day::

    2026-11-27/
        instruments.csv                 the day's instrument master, in Kite's dump format (replay reads it as is)
        part-000001.parquet ...         one batch each, written atomically (tmp + fsync + rename): a crash loses at
                                        most the batch being written, and never leaves a half-written file
        ticks-000001-000057.parquet     parts 1..57 compacted at the day's roll or at stop (atomically; the parts
                                        are removed after)

A finished file is never rewritten: a restart on the same day adds parts and a new ``ticks-A-B`` file next to the
old one, and the replay merges them by time. Parts a killed run left behind are compacted by the next start
(``recover``); until then they replay as they are. A crash between the compacted file's rename and the removal of
its parts leaves parts that file already holds: ``superseded_parts`` names them (the replay skips them, the next
start deletes them). A built-in market restarted on the same day lists its contracts afresh, under other tokens:
when the day's ``instruments.csv`` disagrees with the running master, that run records into ``<day>-2`` (``-3``…).

The writer runs on its own thread behind a bounded queue (``TickWriter``, in ``tick_writer.py``);
``trader/actors/tick_recorder.py`` feeds it batches from the event loop and never waits for it. Prices are written as
float64 rupees (``paise / 100``), which the replay reads back to the same paise (``round(x * 100)``, exact far beyond
any real price); a zero bid or ask (no quote) is written as null.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trader.adapters.replay import schema
from trader.events import Tick
from trader.logging import get_logger
from trader.market.instruments import IndexInstrument, OptionContract
from trader.money import rupee_text

log = get_logger("trader.recorder")

TICKS_DIR = "ticks"
DUMP_NAME = "instruments.csv"
EXCHANGE_TS = "exchange_ts"  # not in the replay schema (ignored by the reader): the exchange's own time, if any
COMPRESSION = "zstd"
DICTIONARY_COLUMNS = [schema.INSTRUMENT_TOKEN, schema.TRADINGSYMBOL]  # the rest is too varied to gain from one
_PART = re.compile(r"part-([0-9]{6,})\.parquet")
_SEGMENT = re.compile(r"ticks-([0-9]{6,})-([0-9]{6,})\.parquet")
_TIME = pa.timestamp("ns", tz="UTC")

RECORD_SCHEMA = pa.schema([
    pa.field(schema.TS, _TIME, nullable=False),
    pa.field(schema.INSTRUMENT_TOKEN, pa.int64(), nullable=False),
    pa.field(schema.TRADINGSYMBOL, pa.string()),
    pa.field(schema.LAST_PRICE, pa.float64(), nullable=False),
    pa.field(schema.BID, pa.float64()),
    pa.field(schema.BID_QTY, pa.int64()),
    pa.field(schema.ASK, pa.float64()),
    pa.field(schema.ASK_QTY, pa.int64()),
    pa.field(schema.VOLUME, pa.int64()),
    pa.field(schema.OI, pa.int64()),
    pa.field(EXCHANGE_TS, _TIME),
])

KITE_DUMP_COLUMNS = ("instrument_token", "exchange_token", "tradingsymbol", "name", "last_price", "expiry", "strike",
                     "tick_size", "lot_size", "instrument_type", "segment", "exchange")

Instrument = OptionContract | IndexInstrument


# --- the instrument master in Kite's dump format --------------------------------------------------------------


def kite_dump_row(instrument: Instrument) -> list[str]:
    """One row of Kite's instrument dump (``InstrumentMaster.from_kite_csv`` reads it back to an equal instrument)."""
    token = instrument.instrument_token
    if isinstance(instrument, IndexInstrument):
        tick = rupee_text(instrument.tick_size) if instrument.tick_size else "0"
        return [str(token), str(token >> 8), instrument.tradingsymbol, instrument.name, "0", "", "0", tick, "0", "EQ",
                "INDICES", instrument.exchange]
    return [str(token), str(token >> 8), instrument.tradingsymbol, instrument.underlying, "0",
            instrument.expiry.isoformat(), rupee_text(instrument.strike), rupee_text(instrument.tick_size),
            str(instrument.lot_size), instrument.option_type.value, f"{instrument.exchange}-OPT", instrument.exchange]


def read_dump_rows(path: Path) -> dict[int, list[str]]:
    """A dump this module wrote: token → row (in ``KITE_DUMP_COLUMNS`` order); {} when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    reader = csv.DictReader(io.StringIO(text))
    missing = [column for column in KITE_DUMP_COLUMNS if column not in (reader.fieldnames or ())]
    if missing:
        raise ValueError(f"{path}: not a Kite instrument dump (no column {missing[0]!r})")
    rows: dict[int, list[str]] = {}
    for row in reader:
        values = [str(row.get(column) or "") for column in KITE_DUMP_COLUMNS]
        if values[0].strip().isdigit():
            rows[int(values[0])] = values
    return rows


def dump_conflicts(existing: dict[int, list[str]], instruments: Iterable[Instrument]) -> list[str]:
    """Instruments the running master and the day's dump name differently (a token or a symbol taken otherwise)."""
    by_symbol = {row[2]: token for token, row in existing.items()}
    problems = []
    for instrument in instruments:
        token, symbol = instrument.instrument_token, instrument.tradingsymbol
        row = existing.get(token)
        if row is not None and row != kite_dump_row(instrument):
            problems.append(f"token {token} is {row[2]} in the dump, {symbol} now")
        elif row is None and by_symbol.get(symbol, token) != token:
            problems.append(f"{symbol} is token {by_symbol[symbol]} in the dump, {token} now")
    return problems


def write_dump(path: Path, existing: dict[int, list[str]], instruments: Iterable[Instrument]) -> dict[int, list[str]]:
    """The union of the day's dump and ``instruments`` written atomically to ``path``; returns the union."""
    rows = dict(existing)
    for instrument in instruments:
        if instrument.instrument_token:
            rows.setdefault(instrument.instrument_token, kite_dump_row(instrument))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(KITE_DUMP_COLUMNS)
    writer.writerows(rows.values())
    _write_atomically(path, buffer.getvalue().encode())
    return rows


# --- files ----------------------------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened (fsync is best effort)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")  # neither a tick file nor a dump to the replay


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = _tmp(path)
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def write_parquet_atomically(path: Path, table: pa.Table) -> None:
    tmp = _tmp(path)
    pq.write_table(table, tmp, compression=COMPRESSION, use_dictionary=DICTIONARY_COLUMNS)
    with tmp.open("rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def part_number(path: Path) -> int | None:
    match = _PART.fullmatch(path.name)
    return int(match.group(1)) if match else None


def segment_range(path: Path) -> tuple[int, int] | None:
    match = _SEGMENT.fullmatch(path.name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def superseded_parts(paths: Iterable[Path]) -> set[Path]:
    """Parts that a compacted ``ticks-A-B.parquet`` in the same folder already holds (left by a crash between the
    compacted file's rename and the parts' removal): reading them too would replay their ticks twice."""
    paths = list(paths)
    ranges: dict[Path, list[tuple[int, int]]] = {}
    for path in paths:
        span = segment_range(path)
        if span is not None:
            ranges.setdefault(path.parent, []).append(span)
    covered = set()
    for path in paths:
        number = part_number(path)
        if number is not None and any(a <= number <= b for a, b in ranges.get(path.parent, ())):
            covered.add(path)
    return covered


def ticks_table(ticks: Sequence[Tick], symbols: dict[int, str]) -> pa.Table:
    """Ticks as a table in ``RECORD_SCHEMA``, sorted by time (stable: equal times keep their order)."""
    def ints(values: list[int]) -> pa.Array:  # through array('q'): ten times faster than pa.array(list)
        packed = array("q", values)
        return pa.Array.from_buffers(pa.int64(), len(packed), [None, pa.py_buffer(packed)])

    def rupees(paise: pa.Array, *, zero_is_null: bool) -> pa.Array:
        values = pc.divide(paise.cast(pa.float64()), 100.0)
        return pc.if_else(pc.equal(paise, 0), pa.scalar(None, pa.float64()), values) if zero_is_null else values

    tokens = ints([t.instrument_token for t in ticks])
    known = pa.array(list(symbols), type=pa.int64())
    names = pa.array(list(symbols.values()), type=pa.string())
    exchange_ts = ints([t.exchange_ts_ns for t in ticks])
    table = pa.Table.from_arrays([
        ints([t.ts_ns for t in ticks]).cast(_TIME),
        tokens,
        pc.take(names, pc.index_in(tokens, value_set=known)),
        rupees(ints([t.last_price for t in ticks]), zero_is_null=False),
        rupees(ints([t.bid for t in ticks]), zero_is_null=True),
        ints([t.bid_qty for t in ticks]),
        rupees(ints([t.ask for t in ticks]), zero_is_null=True),
        ints([t.ask_qty for t in ticks]),
        ints([t.volume for t in ticks]),
        ints([t.oi for t in ticks]),
        pc.if_else(pc.equal(exchange_ts, 0), pa.scalar(None, pa.int64()), exchange_ts).cast(_TIME),
    ], schema=RECORD_SCHEMA)
    return table if _sorted(table) else table.take(pc.sort_indices(table, [(schema.TS, "ascending")]))


def _ts(table: pa.Table) -> pa.Array:
    return table.column(schema.TS).combine_chunks().cast(pa.int64())


def _sorted(table: pa.Table, after_ns: int | None = None) -> bool:
    ts = _ts(table)
    if len(ts) == 0:
        return True
    if after_ns is not None and ts[0].as_py() < after_ns:
        return False
    return len(ts) < 2 or bool(pc.all(pc.greater_equal(ts.slice(1), ts.slice(0, len(ts) - 1))).as_py())


def _recorded_until(paths: Iterable[Path]) -> tuple[int, frozenset[int]] | None:
    """The latest time the day's tick files hold (each file is sorted: its last row group ends it) and the
    instruments recorded at that time; None for a day with no ticks yet."""
    latest: int | None = None
    tokens: set[int] = set()
    for path in paths:
        parquet = pq.ParquetFile(path)
        if parquet.metadata.num_row_groups == 0:
            continue
        table = parquet.read_row_group(parquet.metadata.num_row_groups - 1,
                                       columns=[schema.TS, schema.INSTRUMENT_TOKEN])
        if not table.num_rows:
            continue
        ts = _ts(table).to_pylist()
        last = max(ts)
        at_last = {token for t, token in zip(ts, table.column(schema.INSTRUMENT_TOKEN).to_pylist(), strict=True)
                   if t == last}
        if latest is None or last > latest:
            latest, tokens = last, at_last
        elif last == latest:
            tokens |= at_last
    return None if latest is None else (latest, frozenset(tokens))


@dataclass(slots=True)
class DayFolder:
    """One day's folder: the next part number, the parts written there that are not compacted yet, and (a restart
    on the same day) what the day already holds: ticks at or before it are not recorded twice."""

    path: Path
    next_part: int
    dump: dict[int, list[str]] = field(default_factory=dict)
    recorded_until: tuple[int, frozenset[int]] | None = None

    @classmethod
    def open(cls, path: Path) -> DayFolder:
        path.mkdir(parents=True, exist_ok=True)
        highest = 0
        files = []
        children = list(path.iterdir())
        stale = superseded_parts(children)
        for child in children:
            number = part_number(child)
            span = segment_range(child)
            highest = max(highest, number or 0, span[1] if span else 0)
            if (number is not None or span is not None) and child not in stale:
                files.append(child)
        try:
            until = _recorded_until(files)
        except (OSError, ValueError, pa.ArrowException):
            until = None  # an unreadable file: the replay names it; recording goes on
        return cls(path, highest + 1, read_dump_rows(path / DUMP_NAME), until)

    def unseen(self, ticks: list[Tick]) -> list[Tick]:
        """``ticks`` less those the day already holds (a restarted built-in market re-sends the session from its
        start; a real feed never sends the past again)."""
        if self.recorded_until is None or not ticks:
            return ticks
        until, tokens = self.recorded_until
        if ticks[0].ts_ns > until:
            self.recorded_until = None  # past it: nothing more to compare
            return ticks
        kept = [t for t in ticks if t.ts_ns > until or (t.ts_ns == until and t.instrument_token not in tokens)]
        if kept and kept[-1].ts_ns > until:
            self.recorded_until = None
        return kept


def compact(folder: Path) -> Path | None:
    """Parts of ``folder`` → one ``ticks-A-B.parquet`` (atomically), then the parts removed; returns the new file.

    Parts are copied one at a time (bounded memory) when their times follow on; parts that overlap in time (never
    from one recorder, which writes in arrival order) are sorted together instead. Parts a compacted file already
    holds, and temporary files of a killed write, are deleted first. A part that cannot be read (never one this
    module wrote: they are whole or absent) raises: the folder's parts stay as they are, and replay as they are.
    """
    for child in folder.iterdir():
        if child.name.startswith(".") and child.name.endswith(".tmp"):
            child.unlink(missing_ok=True)
    children = list(folder.iterdir())
    for stale in superseded_parts(children):
        stale.unlink(missing_ok=True)
    parts = sorted((number, child) for child in children if (number := part_number(child)) is not None
                   and child.exists())
    if not parts:
        return None
    target = folder / f"ticks-{parts[0][0]:06d}-{parts[-1][0]:06d}.parquet"
    tmp = _tmp(target)
    tables_in_order = True
    last_ts: int | None = None
    with pq.ParquetWriter(tmp, RECORD_SCHEMA, compression=COMPRESSION, use_dictionary=DICTIONARY_COLUMNS) as writer:
        for _, part in parts:
            table = pq.read_table(part).cast(RECORD_SCHEMA)
            if not _sorted(table, last_ts):
                tables_in_order = False
                break
            if table.num_rows:
                writer.write_table(table)
                last_ts = _ts(table)[-1].as_py()
    if not tables_in_order:
        whole = pa.concat_tables([pq.read_table(part).cast(RECORD_SCHEMA) for _, part in parts])
        pq.write_table(whole.take(pc.sort_indices(whole, [(schema.TS, "ascending")])), tmp,
                       compression=COMPRESSION, use_dictionary=DICTIONARY_COLUMNS)
    with tmp.open("rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    _fsync_dir(folder)
    for _, part in parts:
        part.unlink(missing_ok=True)
    _fsync_dir(folder)
    return target


def recover(root: Path) -> list[Path]:
    """At start: compact the parts an earlier run left (it was killed); returns the files made."""
    made: list[Path] = []
    if not root.is_dir():
        return made
    for folder in sorted(child for child in root.iterdir() if child.is_dir()):
        if any(part_number(child) is not None or child.name.endswith(".tmp") for child in folder.iterdir()):
            try:
                target = compact(folder)
            except (OSError, ValueError, pa.ArrowException) as exc:
                log.error("recorder_recovery_failed", folder=str(folder), error=str(exc),
                          fix="the parts stay readable by the replay; move the unreadable one away")
                continue
            if target is not None:
                log.info("recorder_recovered", folder=str(folder), file=target.name)
                made.append(target)
    return made


def day_folders(root: Path) -> list[Path]:
    """The day folders under ``root`` (``<data_dir>/ticks``), in name order."""
    return sorted(child for child in root.iterdir() if child.is_dir()) if root.is_dir() else []

