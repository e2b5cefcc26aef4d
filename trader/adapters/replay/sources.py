"""What a replay reads: its settings (``ReplayConfig``), the tick and candle files under a path (without the parts a
compaction already holds), the time of their first and last rows, and the instrument master of the period (the
Kite dump, with the indices added from the fallback table). ``market.ReplayMarket`` streams them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa

from trader.adapters.replay import candles, readers, recording, schema
from trader.adapters.replay.checks import (
    DEFAULT_GAP_NS,
    InstrumentInfo,
    InstrumentResolver,
    ReplayDataError,
)
from trader.adapters.replay.modelled import DEFAULT_IV
from trader.adapters.replay.schema import RowError
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import FALLBACK_UNDERLYINGS, IndexInstrument, OptionContract

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
    iv: float = DEFAULT_IV  # index-only data: the flat implied volatility its options are priced at (modelled.py)
    model_options: bool | None = None  # None: model them when the data has no option; False: never; True: always

    def __post_init__(self) -> None:
        if not 0.01 <= self.iv <= 3.0:  # also refuses nan
            raise ReplaySetupError(f"--iv {self.iv}: a volatility between 0.01 and 3 (0.13 = 13 %)")


def is_data_file(path: Path) -> bool:
    return readers.is_tick_file(path) or candles.is_candle_file(path)


def tick_files(data: Path) -> list[Path]:
    """The tick files under ``data`` (itself when it is a file), in name order; the instrument dump excluded."""
    if data.is_file():
        return [data]
    if not data.is_dir():
        raise ReplaySetupError(f"{data}: no such file or directory")
    files = sorted(path for path in data.rglob("*") if path.is_file() and is_data_file(path)
                   and path.name.lower() not in DUMP_NAMES)
    superseded = recording.superseded_parts(files)  # a recorder killed mid-compaction: the parts are in its file
    files = [path for path in files if path not in superseded]
    if not files:
        raise ReplaySetupError(f"{data}: no tick files (*.csv, *.parquet) or candle files (*.json) found")
    return files


def file_first_ts(path: Path) -> int | None:
    """The time of the file's first row (None for a file without rows); the file is closed again."""
    with named_errors(path):
        if candles.is_candle_file(path):
            return candles.first_ts(path)
        rows = readers.read_rows(path, batch_rows=1, only=(schema.TS,))
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
def named_errors(path: Path) -> Iterator[None]:
    """A file that cannot be read (not Parquet, not UTF-8, an I/O or Arrow error) is named in the error."""
    try:
        yield
    except (ReplayDataError, ReplaySetupError):
        raise
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ReplaySetupError(f"{path}: cannot be read: {type(exc).__name__}: {exc}") from None


def first_tick_ns(config: ReplayConfig) -> int:
    """The earliest time in the first rows of the tick files (where a replay's clock starts)."""
    first = [ts for ts in (file_first_ts(path) for path in tick_files(config.data)) if ts is not None]
    if not first:
        raise ReplaySetupError(f"{config.data}: the tick files hold no rows")
    return min(first)


def last_tick_ns(config: ReplayConfig) -> int | None:
    """The latest time among the files' last rows (where a replay ends; for the progress bar), None if unknown.
    Cheap: a Parquet file's last row group's ``ts``, a CSV's last line."""
    last: list[int] = []
    for path in tick_files(config.data):
        try:
            ts = candles.last_ts(path) if candles.is_candle_file(path) else readers.last_ts(path)
        except (OSError, ValueError, RowError):
            continue
        if ts is not None:
            last.append(ts)
    return max(last) if last else None


def index_master() -> InstrumentMaster:
    """No instrument dump: the fallback table's indices only (index-only data; the options are modelled)."""
    master = InstrumentMaster()
    for spec in FALLBACK_UNDERLYINGS.values():
        master.add_index(IndexInstrument(exchange=spec.spot_exchange, tradingsymbol=spec.spot_symbol, name=spec.name,
                                         instrument_token=spec.spot_token, tick_size=spec.tick_size_paise))
    return master


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
