"""The replay market: recorded tick files behind the ``MarketData`` port, on a ``SimClock``.

``start`` registers the day's instruments from a Kite instrument dump CSV (lots, ticks and expiries as they were that
day; the indices of the underlyings found in it are added from the fallback table when the dump has no INDICES rows).
``stream`` merges every tick file in event-time order (a stable merge: equal times keep the file order given, then
the row order) and yields one batch per timestamp, moving the clock to it. Bad rows stop the replay with a
``ReplayDataError`` (file, row, field); gaps during market hours are counted in ``gaps`` for the report.
"""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa

from trader.adapters.replay import readers, schema
from trader.adapters.replay.checks import (
    DEFAULT_GAP_NS,
    FileChecker,
    GapCounter,
    InstrumentInfo,
    InstrumentResolver,
    ReplayDataError,
)
from trader.adapters.replay.schema import RowError
from trader.clock import SimClock
from trader.events import Tick
from trader.logging import get_logger
from trader.market.calendar import MarketCalendar, ist_date, ist_text
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import FALLBACK_UNDERLYINGS, IndexInstrument, OptionContract

log = get_logger("trader.replay")

DUMP_NAMES = ("instruments.csv",)  # in a data directory, the instrument dump (never read as ticks)


class ReplaySetupError(ValueError):
    """The replay cannot start: no tick files, no instrument dump, an unreadable dump; the message says which."""


@dataclass(frozen=True, slots=True)
class ReplayConfig:
    """``data``: a tick file or a directory of them (searched recursively, in name order). ``instruments``: the Kite
    instrument dump CSV(s) of the period; default: ``instruments.csv`` in the data directory. ``from_date`` and
    ``to_date`` (IST, inclusive) select the days replayed."""

    data: Path
    instruments: tuple[Path, ...] = ()
    from_date: date | None = None
    to_date: date | None = None
    gap_ns: int = DEFAULT_GAP_NS
    batch_rows: int = readers.DEFAULT_BATCH_ROWS


def tick_files(data: Path) -> list[Path]:
    """The tick files under ``data`` (itself when it is a file), in name order; the instrument dump excluded."""
    if data.is_file():
        return [data]
    if not data.is_dir():
        raise ReplaySetupError(f"{data}: no such file or directory")
    files = sorted(path for path in data.rglob("*") if path.is_file() and readers.is_tick_file(path)
                   and path.name.lower() not in DUMP_NAMES)
    if not files:
        raise ReplaySetupError(f"{data}: no tick files (*.csv, *.parquet) found")
    return files


def _first_ts(path: Path) -> int | None:
    """The time of the file's first row (None for a file without rows); the file is closed again."""
    with _named(path):
        rows = readers.read_rows(path, batch_rows=1)
        try:
            for where, row in rows:
                try:
                    return schema.parse_ts(row.get(schema.TS))
                except RowError as exc:
                    raise ReplayDataError(str(path), where, exc.field, exc.message) from None
            return None
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()


@contextlib.contextmanager
def _named(path: Path) -> Iterator[None]:
    """A file that cannot be read (not Parquet, not UTF-8, an I/O or Arrow error) is named in the error."""
    try:
        yield
    except (ReplayDataError, ReplaySetupError):
        raise
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ReplaySetupError(f"{path}: cannot be read: {type(exc).__name__}: {exc}") from None


def first_tick_ns(config: ReplayConfig) -> int:
    """The earliest time in the first rows of the tick files (where a replay's clock starts)."""
    first = [ts for ts in (_first_ts(path) for path in tick_files(config.data)) if ts is not None]
    if not first:
        raise ReplaySetupError(f"{config.data}: the tick files hold no rows")
    return min(first)


def load_master(dumps: Sequence[Path]) -> InstrumentMaster:
    """The Kite instrument dump(s) as one master, with each underlying's index added when the dump lacks it."""
    if not dumps:
        raise ReplaySetupError("no instrument dump: give the Kite instrument CSV of the period (instruments.csv)")
    master = InstrumentMaster()
    for dump in dumps:
        try:
            master.merge(InstrumentMaster.from_kite_csv(dump.read_text(encoding="utf-8-sig")))
        except (OSError, ValueError) as exc:
            raise ReplaySetupError(f"{dump}: {exc}") from None
    for spec in FALLBACK_UNDERLYINGS.values():
        if master.expiries(spec.name) and master.index_for(spec.name) is None:
            master.add_index(IndexInstrument(exchange=spec.spot_exchange, tradingsymbol=spec.spot_symbol,
                                             name=spec.name, instrument_token=spec.spot_token,
                                             tick_size=spec.tick_size_paise))
    return master


def resolver_for(master: InstrumentMaster) -> InstrumentResolver:
    by_token: dict[int, InstrumentInfo] = {}
    by_symbol: dict[str, InstrumentInfo] = {}
    for instrument in master.registered():
        # Option prices must sit on the contract's tick grid; an index value is not traded, so it is not checked.
        tick_size = instrument.tick_size if isinstance(instrument, OptionContract) else 0
        info = InstrumentInfo(instrument.instrument_token, tick_size, instrument.tradingsymbol)
        by_token[instrument.instrument_token] = info
        by_symbol[instrument.tradingsymbol] = info
        if isinstance(instrument, OptionContract):
            by_symbol[f"{instrument.exchange}:{instrument.tradingsymbol}"] = info
    return InstrumentResolver(by_token, by_symbol)


class ReplayMarket:
    """Implements the ``MarketData`` port from recorded tick files."""

    def __init__(self, clock: SimClock, calendar: MarketCalendar, config: ReplayConfig) -> None:
        if config.from_date is not None and config.to_date is not None and config.from_date > config.to_date:
            raise ReplaySetupError(f"--from {config.from_date} is after --to {config.to_date}: nothing to replay")
        self._clock = clock
        self._calendar = calendar
        self._config = config
        self._skipped: tuple[int, int] | None = None  # first and last time of the ticks outside --from/--to
        self._files = tick_files(config.data)
        dumps = config.instruments
        if not dumps and config.data.is_dir():
            dumps = tuple(config.data / name for name in DUMP_NAMES if (config.data / name).is_file())
        self._dumps = dumps
        self._resolver: InstrumentResolver | None = None
        self._fixed: dict[int, InstrumentInfo | None] = {}  # by file order: the instrument a file's name gives
        self.gaps = GapCounter(self._session_bounds, config.gap_ns)
        self.ticks_read = 0
        self._tick_id = 0
        self._closed = False
        self._streamed = False
        self.error = ""  # the bad data that ended the replay early, if any
        self.failure: Exception | None = None

    @property
    def files(self) -> list[Path]:
        return list(self._files)

    def _session_bounds(self, day: date) -> tuple[int, int] | None:
        return self._calendar.session_bounds(day) if self._calendar.is_trading_day(day) else None

    async def start(self, instruments: InstrumentMaster) -> None:
        master = load_master(self._dumps)
        instruments.merge(master)
        self._resolver = resolver_for(master)

    async def close(self) -> None:
        self._closed = True

    def ticks(self) -> Iterator[Tick]:
        """Every selected tick of every file, merged in event-time order (checked; ``tick_id`` not yet set)."""
        if self._resolver is None:
            raise RuntimeError("ReplayMarket.start() registers the instruments before ticks are read")
        # A merge over every file at once would hold each one open (and a decoded Parquet batch of each) from the
        # first tick: a month of one-file-per-instrument-per-day data is thousands of files. A file is opened only
        # when the merge reaches its first row's time; rows within a file are never earlier than its first row
        # (FileChecker), so the order is the same as merging them all: (time, file order, row order).
        heap: list[tuple[int, int, int, Tick | None]] = []
        self._fixed = {}
        for order, path in enumerate(self._files):
            with _named(path):  # what a file's name says is checked before the first tick, not on its day
                self._fixed[order] = self._fixed_instrument(path)
            first = _first_ts(path)
            if first is not None:
                heap.append((first, order, 0, None))
        heapq.heapify(heap)
        streams: dict[int, Iterator[tuple[int, int, int, Tick]]] = {}
        # An instrument's last time and file: the same instrument at the same time in two files is the same data
        # twice (a CSV and its Parquet conversion side by side), which would reach the strategies twice.
        last: dict[int, tuple[int, int]] = {}
        while heap:
            ts, order, seq, tick = heap[0]
            if tick is None:
                streams[order] = self._file_ticks(order, self._files[order])
            else:
                seen = last.get(tick.instrument_token)
                if seen is not None and seen[0] == ts and seen[1] != order:
                    raise ReplayDataError(
                        str(self._files[order]), f"data row {seq}", schema.TS,
                        f"instrument {tick.instrument_token} at {ist_text(ts)} is also in {self._files[seen[1]]}: "
                        "the same data twice? (e.g. a CSV and its Parquet conversion in one directory); keep one")
                last[tick.instrument_token] = (ts, order)
                yield tick
            following = next(streams[order], None)
            if following is None:
                del streams[order]
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, following)

    def _file_ticks(self, order: int, path: Path) -> Iterator[tuple[int, int, int, Tick]]:
        assert self._resolver is not None
        with _named(path):
            checker = FileChecker(str(path), self._resolver, self._fixed.get(order))
            selected = self._selected
            seq = 0
            for ticks in self._checked(path, checker):
                for tick in ticks:
                    seq += 1
                    if selected(tick.ts_ns):
                        yield tick.ts_ns, order, seq, tick
                    else:
                        self._skip(tick.ts_ns)

    def _skip(self, ts_ns: int) -> None:
        skipped = self._skipped
        self._skipped = (ts_ns, ts_ns) if skipped is None else (min(skipped[0], ts_ns), max(skipped[1], ts_ns))

    def _checked(self, path: Path, checker: FileChecker) -> Iterator[list[Tick]]:
        """Lists of checked ticks in file order: Parquet a decoded batch at a time, CSV a row at a time."""
        batch_rows = self._config.batch_rows
        if path.suffix.lower() in readers.PARQUET_SUFFIXES:
            for batch in readers.read_parquet_batches(path, batch_rows=batch_rows):
                fast = None
                if batch.fast is not None:
                    fast = checker.fast_ticks(batch.fast, f"row {batch.first_row + len(batch.fast.ts) - 1}")
                yield fast if fast is not None else [checker.tick(where, row) for where, row in batch.rows()]
            return
        for where, row in readers.read_csv(path):
            yield [checker.tick(where, row)]

    def _selected(self, ts_ns: int) -> bool:
        config = self._config
        if config.from_date is None and config.to_date is None:
            return True
        day = ist_date(ts_ns)
        return (config.from_date is None or day >= config.from_date) and (config.to_date is None or
                                                                          day <= config.to_date)

    def _fixed_instrument(self, path: Path) -> InstrumentInfo | None:
        """One file per instrument: with no instrument column, the file's name names the instrument."""
        assert self._resolver is not None
        names = readers.columns(path)
        if schema.INSTRUMENT_TOKEN in names or schema.TRADINGSYMBOL in names:
            return None
        name = readers.instrument_from_name(path)
        try:
            return self._resolver.token(name) if name.isdigit() else self._resolver.symbol(name)
        except RowError as exc:
            message = f"no instrument column, and the name {name!r} is not in the instrument master"
            raise ReplayDataError(str(path), "file name", exc.field, message) from None

    async def stream(self) -> AsyncIterator[list[Tick]]:
        """One pass over the data. Bad data ends it: ``error`` holds the message (file, row, field) for the run to
        report; a second call (a restarted feed) yields nothing, so no tick is ever replayed twice."""
        if self._streamed:
            return
        self._streamed = True
        batch: list[Tick] = []
        batch_ts = 0
        ticks = self.ticks()
        while not self._closed:
            try:
                tick = next(ticks, None)
            except Exception as exc:  # ReplayDataError, an unreadable file, a corrupt Parquet page, a bug: the run
                # must end as an error; a crash would restart the feed, whose second stream() yields nothing, and
                # the backtest would end as if the data were complete.
                self.failure = exc
                self.error = str(exc) if isinstance(exc, OSError | ValueError) else f"{type(exc).__name__}: {exc}"
                log.error("replay_data_error", error=self.error, ticks=self.ticks_read)
                return
            if tick is None:
                break
            if batch and tick.ts_ns != batch_ts:
                await self._advance(batch_ts)
                yield batch
                batch = []
            self._tick_id += 1
            self.ticks_read += 1
            batch_ts = tick.ts_ns
            self.gaps.observe(tick)
            batch.append(Tick(ts_ns=tick.ts_ns, instrument_token=tick.instrument_token, last_price=tick.last_price,
                              volume=tick.volume, oi=tick.oi, bid=tick.bid, bid_qty=tick.bid_qty, ask=tick.ask,
                              ask_qty=tick.ask_qty, exchange_ts_ns=tick.exchange_ts_ns, tick_id=self._tick_id))
        if batch and not self._closed:
            await self._advance(batch_ts)
            yield batch
        if not self._closed and self.ticks_read == 0 and self._skipped is not None:
            # Nothing selected: an empty backtest would read as "no trades", a verdict on days never replayed.
            config = self._config
            chosen = " ".join(f"{word} {day}" for word, day in (("from", config.from_date), ("to", config.to_date))
                              if day is not None)
            self.error = (f"no tick of the data falls on the days selected ({chosen}); the data's ticks are from "
                          f"{ist_date(self._skipped[0])} to {ist_date(self._skipped[1])} (IST)")
            log.error("replay_data_error", error=self.error, ticks=0)
            return
        log.info("replay_done", ticks=self.ticks_read, files=len(self._files), gaps=self.gaps.count,
                 gap_examples=[f"{g.instrument_token} {ist_text(g.from_ns)} → {ist_text(g.to_ns)}"
                               for g in self.gaps.examples[:5]])

    async def _advance(self, ts_ns: int) -> None:
        """Move the clock to the batch's time: paced within a session, at once across a close or a night."""
        now = self._clock.now_ns()
        if ts_ns > now and (not self._calendar.is_open(now) or ist_date(now) != ist_date(ts_ns)):
            self._clock.jump_to(ts_ns)
        await self._clock.sleep_until(ts_ns)
