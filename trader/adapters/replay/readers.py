"""Tick-file readers: rows as ``(where, {column: cell})`` in file order, read in bounded batches.

CSV via the ``csv`` module (``where`` is the line number, the header being line 1); Parquet via ``pyarrow`` in record
batches (``where`` is the 1-based data row). A file with no instrument column belongs to the instrument its name
gives (``<token or tradingsymbol>[_<YYYY-MM-DD>].<ext>``: one file per instrument per day).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trader.adapters.replay import schema
from trader.adapters.replay.checks import ReplayDataError
from trader.adapters.replay.schema import Cell

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
TICK_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES
DEFAULT_BATCH_ROWS = 65_536
_DATE_SUFFIX = re.compile(r"_(?:[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{8})$")

Row = tuple[str, Mapping[str, Cell]]


def is_tick_file(path: Path) -> bool:
    return path.suffix.lower() in TICK_SUFFIXES


def instrument_from_name(path: Path) -> str:
    """``NIFTY25DEC26000CE_2026-11-27.csv`` → ``NIFTY25DEC26000CE``; ``12345678.parquet`` → ``12345678``."""
    return _DATE_SUFFIX.sub("", path.stem)


def columns(path: Path) -> list[str]:
    """The file's column names (CSV header, Parquet schema)."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return list(pq.ParquetFile(path).schema_arrow.names)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle), [])
    return [name.strip() for name in header]


def read_rows(path: Path, *, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[Row]:
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return read_parquet(path, batch_rows=batch_rows)
    return read_csv(path)


def read_csv(path: Path) -> Iterator[Row]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        if schema.TS not in header:
            raise ReplayDataError(str(path), "line 1", schema.TS, "missing column (the header must name ts)")
        for values in reader:
            if not values:
                continue
            if len(values) > len(header):
                raise ReplayDataError(str(path), f"line {reader.line_num}", header[-1],
                                      f"{len(values)} values for {len(header)} columns")
            yield f"line {reader.line_num}", dict(zip(header, values, strict=False))


@dataclass(frozen=True, slots=True)
class FastColumns:
    """One Parquet batch already decoded to Python ints (prices in paise), for ``FileChecker.fast_ticks``."""

    ts: list[int]
    token: list[int] | None
    symbol: list[str] | None
    last: list[int]
    bid: list[int]
    ask: list[int]
    bid_qty: list[int]
    ask_qty: list[int]
    volume: list[int]
    oi: list[int]


@dataclass(frozen=True, slots=True)
class ParquetBatch:
    """``fast`` when the batch's columns decode column-wise; ``rows()`` always works (and names a bad row)."""

    first_row: int
    fast: FastColumns | None
    _columns: dict[str, pa.Array]

    def rows(self) -> Iterator[Row]:
        values = [column.to_pylist() for column in self._columns.values()]
        names = list(self._columns)
        for offset, cells in enumerate(zip(*values, strict=True)):
            yield f"row {self.first_row + offset}", dict(zip(names, cells, strict=True))


def read_parquet(path: Path, *, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[Row]:
    for batch in read_parquet_batches(path, batch_rows=batch_rows):
        yield from batch.rows()


def read_parquet_batches(path: Path, *, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[ParquetBatch]:
    parquet = pq.ParquetFile(path)
    names = [name for name in parquet.schema_arrow.names if name in schema.KNOWN_COLUMNS]
    if schema.TS not in names:
        raise ReplayDataError(str(path), "schema", schema.TS, "missing column (the file must have ts)")
    ts_type = parquet.schema_arrow.field(schema.TS).type
    if pa.types.is_timestamp(ts_type) and ts_type.tz is None:
        raise ReplayDataError(str(path), "schema", schema.TS,
                              f"{ts_type} has no time zone: store it as timestamp with tz (UTC or Asia/Kolkata)")
    first_row = 1
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=names):
        columns: dict[str, pa.Array] = {}
        for name in names:
            column = batch.column(name)
            if pa.types.is_timestamp(column.type):  # instants: exact ns since the epoch, whatever the unit
                column = column.cast(pa.timestamp("ns", tz=column.type.tz)).cast(pa.int64())
            elif pa.types.is_dictionary(column.type):
                column = column.dictionary_decode()
            columns[name] = column
        yield ParquetBatch(first_row, _fast_columns(columns, batch.num_rows), columns)
        first_row += batch.num_rows


def _ints(column: pa.Array | None, length: int, *, nullable: bool = True) -> list[int] | None:
    if column is None:
        return [0] * length
    if not pa.types.is_integer(column.type) or (column.null_count and not nullable):
        return None
    return list(column.fill_null(0).to_pylist())


def _paise(column: pa.Array | None, length: int, *, nullable: bool = True) -> list[int] | None:
    """Rupees → paise as ``to_paise`` does it: ``round(x * 100)`` half to even for floats, ``x * 100`` for ints."""
    if column is None:
        return [0] * length
    if column.null_count and not nullable:
        return None
    if pa.types.is_integer(column.type):
        if pc.any(pc.greater_equal(pc.abs(column.cast(pa.float64(), safe=False)), 1e15)).as_py():
            return None  # × 100 would wrap in int64 or is garbage anyway: the row path names the row
        return list(pc.multiply(column.cast(pa.int64()), 100).fill_null(0).to_pylist())
    if not pa.types.is_floating(column.type):
        return None  # decimals, text: the row path converts them exactly
    values = column.cast(pa.float64())
    if not pc.all(pc.or_kleene(pc.is_finite(values), pc.is_null(values))).as_py():
        return None
    if pc.any(pc.greater_equal(pc.abs(values), 1e15)).as_py():
        return None  # implausible amounts: the row path names them
    scaled = pc.round(pc.multiply(values, 100.0), ndigits=0, round_mode="half_to_even")
    return list(scaled.cast(pa.int64()).fill_null(0).to_pylist())


def _fast_columns(columns: Mapping[str, pa.Array], length: int) -> FastColumns | None:
    ts = _ints(columns.get(schema.TS), length, nullable=False)
    token_column = columns.get(schema.INSTRUMENT_TOKEN)
    symbol_column = columns.get(schema.TRADINGSYMBOL)
    token = symbol = None
    if token_column is not None:
        token = _ints(token_column, length, nullable=False)
        if token is None:
            return None
    elif symbol_column is not None:
        if not pa.types.is_string(symbol_column.type) or symbol_column.null_count:
            return None
        symbol = list(symbol_column.to_pylist())
    last = _paise(columns.get(schema.LAST_PRICE), length, nullable=False)
    bid = _paise(columns.get(schema.BID), length)
    ask = _paise(columns.get(schema.ASK), length)
    quantities = [_ints(columns.get(name), length) for name in schema.QUANTITY_FIELDS]
    if ts is None or last is None or bid is None or ask is None or None in quantities:
        return None
    if schema.LAST_PRICE not in columns:
        return None
    bid_qty, ask_qty, volume, oi = (q for q in quantities if q is not None)
    return FastColumns(ts, token, symbol, last, bid, ask, bid_qty, ask_qty, volume, oi)
