"""The replay market: recorded tick files behind the ``MarketData`` port, on a ``SimClock``.

``start`` registers the day's instruments from a Kite instrument dump CSV (lots, ticks and expiries as they were that
day; the indices of the underlyings found in it are added from the fallback table when the dump has no INDICES rows).
``stream`` merges every tick file in event-time order (a stable merge: equal times keep the file order given, then
the row order) and yields one batch per timestamp, moving the clock to it. Bad rows stop the replay with a
``ReplayDataError`` (file, row, field); gaps during market hours are counted in ``gaps`` for the report. Which files,
which dump and the run's settings: ``sources.py``.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import date
from pathlib import Path

from trader.adapters.replay import candles, readers, schema
from trader.adapters.replay.checks import (
    FileChecker,
    GapCounter,
    InstrumentInfo,
    InstrumentResolver,
    ReplayDataError,
    TickFields,
)
from trader.adapters.replay.modelled import ModelledChain, ModelSettings
from trader.adapters.replay.schema import RowError
from trader.adapters.replay.sources import (
    DUMP_NAMES,
    ReplayConfig,
    ReplaySetupError,
    file_first_ts,
    index_master,
    last_tick_ns,
    load_master,
    named_errors,
    resolver_for,
    tick_files,
)
from trader.clock import SimClock
from trader.events import Tick
from trader.logging import get_logger
from trader.market.calendar import MarketCalendar, ist_date, ist_text
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import IndexInstrument, OptionContract
from trader.runs.model import DataSource

log = get_logger("trader.replay")

_MERGE_CHUNK = 4_096  # rows handed on at a time when several files are merged


def _fields(tick: Tick) -> TickFields:
    return (tick.ts_ns, tick.instrument_token, tick.last_price, tick.volume, tick.oi, tick.bid, tick.bid_qty,
            tick.ask, tick.ask_qty)


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
            if not dumps:  # recorded days (<data_dir>/ticks/<mode>/<day>/instruments.csv): each day's master, merged
                dumps = tuple(sorted(path for path in config.data.rglob("*") if path.name.lower() in DUMP_NAMES))
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
        self._master: InstrumentMaster | None = None
        self.model: ModelledChain | None = None  # index-only data: option quotes modelled from the index
        self.has_candles = any(candles.is_candle_file(path) for path in self._files)

    @property
    def files(self) -> list[Path]:
        return list(self._files)

    def last_day(self) -> date | None:
        """The IST day of the data's last row (or ``to_date`` when earlier); None when the files do not say."""
        last = last_tick_ns(self._config)
        if last is None:
            return self._config.to_date
        day = ist_date(last)
        return min(day, self._config.to_date) if self._config.to_date else day

    def _session_bounds(self, day: date) -> tuple[int, int] | None:
        return self._calendar.session_bounds(day) if self._calendar.is_trading_day(day) else None

    def prepare(self) -> InstrumentMaster:
        """Load the day's instruments and look at the data (idempotent, synchronous): with no option in it, the
        options are modelled from the index (``self.model``). No instrument dump is fine for index-only data."""
        if self._master is not None:
            return self._master
        master = load_master(self._dumps) if self._dumps else index_master()
        self._resolver = resolver_for(master)
        found = self._data_instruments(master)
        if not self._dumps and None in found:
            load_master(self._dumps)  # raises: options (or unknown names) in the data need the day's dump
        model = self._config.model_options
        if model is None:
            model = not any(isinstance(instrument, OptionContract) for instrument in found)
        if model:
            self.model = ModelledChain(master, self._calendar, ModelSettings(iv=self._config.iv),
                                       derive=not any(isinstance(i, OptionContract) for i in master.registered()))
            log.info("replay_index_only", model_note=self.model.settings.note(self.model.derive))
        self._master = master
        return master

    def _data_instruments(self, master: InstrumentMaster) -> set[OptionContract | IndexInstrument | None]:
        """The instruments named by each file's name or first batch of rows (None: a name not in the master)."""
        assert self._resolver is not None
        found: set[OptionContract | IndexInstrument | None] = set()
        for path in self._files:
            try:
                names: list[str] = []
                if candles.is_candle_file(path) or not ({schema.INSTRUMENT_TOKEN, schema.TRADINGSYMBOL}
                                                        & set(readers.columns(path))):
                    names = [readers.instrument_from_name(path)]
                else:
                    for number, (_, row) in enumerate(readers.read_rows(path, batch_rows=4096)):
                        if number >= 4096:
                            break
                        token, symbol = row.get(schema.INSTRUMENT_TOKEN), row.get(schema.TRADINGSYMBOL)
                        names.append(str(token).strip() if token not in (None, "") else str(symbol or ""))
            except (OSError, ValueError):
                continue  # the stream reports an unreadable file with its row
            for name in set(names):
                info = self._resolver.find_token(int(name)) if name.isdigit() else self._resolver.find_symbol(name)
                found.add(master.by_token(info.instrument_token) if info is not None else None)
        return found

    def data_source(self, base: DataSource) -> DataSource:
        """``base`` (kind "ticks") told what the data turned out to be: candles (with the bar path), index-only."""
        self.prepare()
        kind = base.kind
        note = base.model_note
        if self.has_candles:
            kind = "candles"
        if self.model is not None:
            kind = "index_only"
            note = self.model.settings.note(self.model.derive)
        dumps = ",".join(str(path) for path in self._dumps)
        return DataSource(kind, path=str(self._config.data), instruments=dumps, modelled_options=self.model is not None,
                          model_note=note, bar_path=candles.BAR_PATH if self.has_candles else "")

    async def start(self, instruments: InstrumentMaster) -> None:
        master = self.prepare()
        instruments.merge(master)
        if self.model is not None:
            self.model.bind(instruments)

    async def close(self) -> None:
        self._closed = True

    def ticks(self) -> Iterator[Tick]:
        """Every selected tick of every file, merged in event-time order (checked; ``tick_id`` not yet set)."""
        selected = self._selection()
        for chunk in self._chunks():
            for fields in chunk:
                if selected is None or selected(fields[0]):
                    yield Tick(*fields, exchange_ts_ns=fields[0])

    def _chunks(self) -> Iterator[list[TickFields]]:
        """Checked rows of every file in event-time order, a list at a time: one file's decoded batches as they come
        (no merge), several files merged row by row (a stable merge: equal times keep the file order, then the row
        order). The rows before a bad one are handed out before its error is raised."""
        if self._resolver is None:
            raise RuntimeError("ReplayMarket.start() registers the instruments before ticks are read")
        # A merge over every file at once would hold each one open (and a decoded Parquet batch of each) from the
        # first tick: a month of one-file-per-instrument-per-day data is thousands of files. A file is opened only
        # when the merge reaches its first row's time; rows within a file are never earlier than its first row
        # (FileChecker), so the order is the same as merging them all: (time, file order, row order).
        self._fixed = {}
        for order, path in enumerate(self._files):
            with named_errors(path):  # what a file's name says is checked before the first tick, not on its day
                self._fixed[order] = self._fixed_instrument(path)
        if len(self._files) == 1:
            yield from self._named_chunks(self._files[0])
            return
        heap: list[tuple[int, int, int, TickFields | None]] = []
        for order, path in enumerate(self._files):
            first = file_first_ts(path)
            if first is not None:
                heap.append((first, order, 0, None))
        heapq.heapify(heap)
        streams: dict[int, Iterator[tuple[int, int, int, TickFields]]] = {}
        # An instrument's last time and file: the same instrument at the same time in two files is the same data
        # twice (a CSV and its Parquet conversion side by side), which would reach the strategies twice.
        last: dict[int, tuple[int, int]] = {}
        chunk: list[TickFields] = []
        try:
            while heap:
                ts, order, seq, fields = heap[0]
                if fields is None:
                    streams[order] = self._file_rows(order, self._files[order])
                else:
                    token = fields[1]
                    seen = last.get(token)
                    if seen is not None and seen[0] == ts and seen[1] != order:
                        raise ReplayDataError(
                            str(self._files[order]), f"data row {seq}", schema.TS,
                            f"instrument {token} at {ist_text(ts)} is also in {self._files[seen[1]]}: the same data "
                            "twice? (e.g. a CSV and its Parquet conversion in one directory); keep one")
                    last[token] = (ts, order)
                    chunk.append(fields)
                    if len(chunk) >= _MERGE_CHUNK:
                        yield chunk
                        chunk = []
                following = next(streams[order], None)
                if following is None:
                    del streams[order]
                    heapq.heappop(heap)
                else:
                    heapq.heapreplace(heap, following)
        except Exception:
            if chunk:  # the rows before a bad one are handed out before its error
                yield chunk
            raise
        if chunk:
            yield chunk

    def _named_chunks(self, path: Path) -> Iterator[list[TickFields]]:
        with named_errors(path):
            yield from self._checked(0, path)

    def _file_rows(self, order: int, path: Path) -> Iterator[tuple[int, int, int, TickFields]]:
        with named_errors(path):
            seq = 0
            for chunk in self._checked(order, path):
                for fields in chunk:
                    seq += 1
                    yield fields[0], order, seq, fields

    def _skip(self, ts_ns: int) -> None:
        skipped = self._skipped
        self._skipped = (ts_ns, ts_ns) if skipped is None else (min(skipped[0], ts_ns), max(skipped[1], ts_ns))

    def _checked(self, order: int, path: Path) -> Iterator[list[TickFields]]:
        """Checked rows in file order: Parquet a decoded batch at a time (column-wise, or row by row when the batch
        has a row the column-wise checks refuse: the row path then names it), CSV a row at a time. Whatever cannot
        be read (a truncated Parquet file, a time Arrow cannot cast) is a ``ReplayDataError`` naming the file."""
        try:
            yield from self._checked_rows(order, path)
        except ReplayDataError:
            raise
        except (OSError, ValueError) as exc:
            raise ReplayDataError(str(path), "file", "data", f"cannot be read: {exc}") from None

    def _checked_rows(self, order: int, path: Path) -> Iterator[list[TickFields]]:
        assert self._resolver is not None
        checker = FileChecker(str(path), self._resolver,
                              self._fixed[order] if order in self._fixed else self._fixed_instrument(path))
        batch_rows = self._config.batch_rows
        if candles.is_candle_file(path):
            assert checker.fixed is not None
            yield [_fields(tick) for tick in candles.candle_ticks(str(path), candles.load_rows(path), checker.fixed,
                                                                  self._calendar)]
            return
        if path.suffix.lower() in readers.PARQUET_SUFFIXES:
            for batch in readers.read_parquet_batches(path, batch_rows=batch_rows):
                fast = None
                if batch.fast is not None:
                    fast = checker.fast_ticks(batch.fast, f"row {batch.first_row + len(batch.fast.ts) - 1}")
                yield fast if fast is not None else [_fields(checker.tick(where, row)) for where, row in batch.rows()]
            return
        for where, row in readers.read_csv(path):
            yield [_fields(checker.tick(where, row))]

    def _selection(self) -> Callable[[int], bool] | None:
        config = self._config
        return None if config.from_date is None and config.to_date is None else self._selected

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
        names = [] if candles.is_candle_file(path) else readers.columns(path)
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
        selected = self._selection()
        observe = self.gaps.observe
        chunks = self._chunks()
        tick_id = self._tick_id
        model = self.model
        while not self._closed:
            try:
                chunk = next(chunks, None)
            except Exception as exc:  # ReplayDataError, an unreadable file, a corrupt Parquet page, a bug: the run
                # must end as an error; a crash would restart the feed, whose second stream() yields nothing, and
                # the backtest would end as if the data were complete.
                self.failure = exc
                self.error = str(exc) if isinstance(exc, OSError | ValueError) else f"{type(exc).__name__}: {exc}"
                log.error("replay_data_error", error=self.error, ticks=self.ticks_read)
                return
            if chunk is None:
                break
            for ts, token, last, volume, oi, bid, bid_qty, ask, ask_qty in chunk:
                if selected is not None and not selected(ts):
                    self._skip(ts)
                    continue
                if batch and ts != batch_ts:
                    await self._advance(batch_ts)
                    yield batch
                    batch = []
                    if self._closed:
                        break
                tick_id += 1
                tick = Tick(ts, token, last, volume, oi, bid, bid_qty, ask, ask_qty, ts, tick_id)
                batch.append(tick)
                batch_ts = ts
                observe(tick)
                self.ticks_read += 1  # the data's ticks; tick ids also count the modelled quotes
                if model is not None and model.is_index(token):
                    try:
                        quotes = model.quotes(tick)
                    except ValueError as exc:  # ReplayDataError: the dump cannot price this day's options
                        self.failure = exc
                        self.error = str(exc)
                        log.error("replay_data_error", error=self.error, ticks=self.ticks_read)
                        return
                    for quote in quotes:  # index-only data: the modelled chain, at the index tick's time
                        tick_id += 1
                        batch.append(Tick(quote.ts_ns, quote.instrument_token, quote.last_price, 0, 0, quote.bid,
                                          quote.bid_qty, quote.ask, quote.ask_qty, quote.exchange_ts_ns, tick_id))
                self._tick_id = tick_id
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
