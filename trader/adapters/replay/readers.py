"""Tick-file readers: rows as ``(where, {column: cell})`` in file order, read in bounded batches.

CSV via the ``csv`` module (``where`` is the line number, the header being line 1); Parquet via ``pyarrow`` in record
batches (``where`` is the 1-based data row). A file with no instrument column belongs to the instrument its name
gives (``<token or tradingsymbol>[_<YYYY-MM-DD>].<ext>``: one file per instrument per day).
"""

from __future__ import annotations

import codecs
import csv
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

# Arrow's buffers from the C library's allocator rather than mimalloc, which kept ~25 MB more resident over a day of
# decoded batches (peak RSS of a backtest: 199 MB instead of 223). Read by Arrow when it first allocates, so it is set
# before pyarrow is imported; a value the user set is kept.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

import pyarrow as pa
import pyarrow.parquet as pq

from trader.adapters.replay import schema
from trader.adapters.replay.checks import ReplayDataError
from trader.adapters.replay.schema import Cell

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
TICK_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES
DEFAULT_BATCH_ROWS = 8_192  # rows decoded at a time: larger batches cost RSS (65,536: +40 MB) and gain no speed
_DATE_SUFFIX = re.compile(r"_(?:[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{8})$")

Row = tuple[str, Mapping[str, Cell]]


def is_tick_file(path: Path) -> bool:
    return path.suffix.lower() in TICK_SUFFIXES


def instrument_from_name(path: Path) -> str:
    """``NIFTY25DEC26000CE_2026-11-27.csv`` → ``NIFTY25DEC26000CE``; ``12345678.parquet`` → ``12345678``."""
    return _DATE_SUFFIX.sub("", path.stem)


def _not_utf8(path: Path, error: UnicodeDecodeError) -> ReplayDataError:
    """The error naming the line of the first byte that is not UTF-8 (found again in bounded chunks)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line += chunk.count(b"\n", 0, max(exc.start, 0))
                break
            line += chunk.count(b"\n")
    return ReplayDataError(str(path), f"line {line}", "text", f"not UTF-8 ({error.reason}): save the file as UTF-8")


def columns(path: Path) -> list[str]:
    """The file's column names (CSV header, Parquet schema)."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return list(pq.ParquetFile(path).schema_arrow.names)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None
    return [name.strip() for name in header]


def last_ts(path: Path) -> int | None:
    """The ``ts`` of the file's last row (Parquet: the last row group only; CSV: the file's tail only)."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        parquet = pq.ParquetFile(path)
        if parquet.metadata.num_row_groups == 0 or schema.TS not in parquet.schema_arrow.names:
            return None
        column = parquet.read_row_group(parquet.metadata.num_row_groups - 1, columns=[schema.TS]).column(0)
        if len(column) == 0:
            return None
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.timestamp("ns", tz=column.type.tz)).cast(pa.int64())
        return schema.parse_ts(column[len(column) - 1].as_py())
    header = columns(path)
    if schema.TS not in header:
        return None
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(size - 65_536, 0))
        tail = handle.read().decode("utf-8", errors="replace").splitlines()
    lines = [line for line in tail if line.strip()]
    if not lines:
        return None
    values = next(csv.reader([lines[-1]]))
    return schema.parse_ts(dict(zip(header, values, strict=False)).get(schema.TS))


def read_rows(path: Path, *, batch_rows: int = DEFAULT_BATCH_ROWS,
              only: Sequence[str] | None = None) -> Iterator[Row]:
    """``only``: read just these columns of a Parquet file (a CSV row is read whole anyway)."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return read_parquet(path, batch_rows=batch_rows, only=only)
    return read_csv(path)


def read_csv(path: Path) -> Iterator[Row]:
    try:
        yield from _read_csv(path)
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None


def _read_csv(path: Path) -> Iterator[Row]:
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


Int64s = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class FastColumns:
    """One Parquet batch decoded column-wise to int64 arrays (prices in exact paise, absent values 0), for
    ``FileChecker.fast_ticks``; ``symbol`` is the tradingsymbol column when the file names instruments that way."""

    ts: Int64s
    token: Int64s | None
    symbol: list[str] | None
    last: Int64s
    bid: Int64s
    ask: Int64s
    bid_qty: Int64s
    ask_qty: Int64s
    volume: Int64s
    oi: Int64s


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


def read_parquet(path: Path, *, batch_rows: int = DEFAULT_BATCH_ROWS,
                 only: Sequence[str] | None = None) -> Iterator[Row]:
    for batch in read_parquet_batches(path, batch_rows=batch_rows, only=only):
        yield from batch.rows()


def read_parquet_batches(path: Path, *, batch_rows: int = DEFAULT_BATCH_ROWS,
                         only: Sequence[str] | None = None) -> Iterator[ParquetBatch]:
    parquet = pq.ParquetFile(path)
    names = [name for name in parquet.schema_arrow.names
             if name in schema.KNOWN_COLUMNS and (only is None or name in only)]
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


# The column-wise decoding below uses numpy on the Arrow buffers and never a Python scalar in ``pyarrow.compute``:
# ``pa.scalar`` imports pandas when it is installed (about 60 MB of RSS for nothing).


def _raw(column: pa.Array, dtype: type[np.generic]) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_] | None]:
    """The values buffer of a fixed-width column as numpy (whatever sits in null slots), and the null mask."""
    offset = column.offset
    values = np.frombuffer(column.buffers()[1], dtype=dtype, count=offset + len(column))[offset:]
    return values, _nulls(column)


def _nulls(column: pa.Array) -> npt.NDArray[np.bool_] | None:
    """The null mask from the validity bitmap (``BooleanArray.to_numpy`` would import pandas), or None."""
    if not column.null_count:
        return None
    offset = column.offset
    bits = np.unpackbits(np.frombuffer(column.buffers()[0], dtype=np.uint8), bitorder="little")
    return np.asarray(bits[offset:offset + len(column)] == 0, dtype=np.bool_)


def _ints(column: pa.Array | None, length: int, *, nullable: bool = True) -> Int64s | None:
    """An integer column as int64 (absent or null: 0); None when the row path must judge it."""
    if column is None:
        return np.zeros(length, dtype=np.int64)
    if not pa.types.is_integer(column.type) or (column.null_count and not nullable):
        return None
    if pa.types.is_uint64(column.type):
        return None  # values past int64 would wrap: the row path names them
    values, nulls = _raw(column.cast(pa.int64()), np.int64)
    return np.where(nulls, 0, values) if nulls is not None else values.copy()


_MAX_RUPEES = 1e15  # larger amounts go to the row path, which names them (to_paise refuses 1e16 and above)
_PAISE_PER_RUPEE = 100


def _paise(column: pa.Array | None, length: int, *, nullable: bool = True) -> Int64s | None:
    """Rupees → paise exactly as ``to_paise`` does it: ``round(x * 100)`` (half to even) for floats, ``x * 100`` for
    integers, the exact decimal value × 100 rounded half to even for decimals; None leaves the column to the row path
    (text, non-finite or implausible values, nulls where a value is required)."""
    if column is None:
        return np.zeros(length, dtype=np.int64)
    if column.null_count and not nullable:
        return None
    kind = column.type
    if pa.types.is_integer(kind):
        rupees = _ints(column, length)
        if rupees is None or (np.abs(rupees) >= _MAX_RUPEES).any():
            return None
        return rupees * _PAISE_PER_RUPEE
    if pa.types.is_floating(kind):
        values, nulls = _raw(column.cast(pa.float64()), np.float64)
        if nulls is not None:
            values = np.where(nulls, 0.0, values)
        if not np.isfinite(values).all() or (np.abs(values) >= _MAX_RUPEES).any():
            return None
        # x * 100 in IEEE double as Python computes it, then round half to even (np.rint), as round() does.
        return np.rint(values * float(_PAISE_PER_RUPEE)).astype(np.int64)
    if pa.types.is_decimal(kind) and kind.bit_width == 128:
        return _decimal_paise(column)
    return None  # text, decimal256: the row path converts them exactly


def _decimal_paise(column: pa.Array) -> Int64s | None:
    """decimal128(p, s) → paise: the unscaled integer × 10^(2 − s), or ÷ 10^(s − 2) rounded half to even (as
    ``round(Decimal * 100)``). Values whose unscaled integer does not fit 63 bits go to the row path."""
    scale = int(column.type.scale)
    offset = column.offset
    words = np.frombuffer(column.buffers()[1], dtype="<i8", count=2 * (offset + len(column)))[2 * offset:]
    low, high = words[0::2], words[1::2]
    nulls = _nulls(column)
    if nulls is not None:
        low, high = np.where(nulls, 0, low), np.where(nulls, 0, high)
    # A 128-bit two's complement value fits int64 when its high word is the sign extension of its low word.
    if not np.array_equal(high, low >> 63) or bool((low == np.iinfo(np.int64).min).any()):
        return None  # (the last: np.abs would overflow)
    unscaled: Int64s = np.asarray(low, dtype=np.int64)
    if scale <= 2:
        factor = 10 ** (2 - scale)
        if (np.abs(unscaled) >= _MAX_RUPEES * 10 ** scale).any():
            return None
        return np.asarray(unscaled * factor, dtype=np.int64)
    divisor = 10 ** (scale - 2)
    # (past 18 digits of scale no int64 reaches a rupee, and 10 ** scale itself would overflow numpy's int64)
    if divisor > 10 ** 18 or (scale <= 18 and (np.abs(unscaled) // 10 ** scale >= _MAX_RUPEES).any()):
        return None
    quotient: Int64s
    remainder: Int64s
    quotient, remainder = np.divmod(unscaled, divisor)  # floor division, remainder in [0, divisor)
    twice = remainder * 2
    up = (twice > divisor) | ((twice == divisor) & (quotient % 2 == 1))
    return np.asarray(quotient + up.astype(np.int64), dtype=np.int64)


def _fast_columns(columns: Mapping[str, pa.Array], length: int) -> FastColumns | None:
    if schema.LAST_PRICE not in columns:
        return None
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
    if ts is None or last is None or bid is None or ask is None:
        return None
    bid_qty, ask_qty, volume, oi = quantities
    if bid_qty is None or ask_qty is None or volume is None or oi is None:
        return None
    return FastColumns(ts, token, symbol, last, bid, ask, bid_qty, ask_qty, volume, oi)
