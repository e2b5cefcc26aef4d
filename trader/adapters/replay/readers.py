"""Tick-file readers: rows as ``(where, {column: cell})`` in file order, read in bounded batches.

CSV via the ``csv`` module (``where`` is the line number, the header being line 1); Parquet via ``pyarrow`` in record
batches (``where`` is the 1-based data row). A file with no instrument column belongs to the instrument its name
gives (``<token or tradingsymbol>[_<YYYY-MM-DD>].<ext>``: one file per instrument per day).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pyarrow as pa
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


def read_parquet(path: Path, *, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[Row]:
    parquet = pq.ParquetFile(path)
    names = [name for name in parquet.schema_arrow.names if name in schema.KNOWN_COLUMNS]
    if schema.TS not in names:
        raise ReplayDataError(str(path), "schema", schema.TS, "missing column (the file must have ts)")
    ts_type = parquet.schema_arrow.field(schema.TS).type
    if pa.types.is_timestamp(ts_type) and ts_type.tz is None:
        raise ReplayDataError(str(path), "schema", schema.TS,
                              f"{ts_type} has no time zone: store it as timestamp with tz (UTC or Asia/Kolkata)")
    row = 0
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=names):
        values: list[list[Cell]] = []
        for name in names:
            column = batch.column(name)
            if pa.types.is_timestamp(column.type):  # instants: exact ns since the epoch, whatever the unit
                column = column.cast(pa.timestamp("ns", tz=column.type.tz)).cast(pa.int64())
            elif pa.types.is_dictionary(column.type):
                column = column.dictionary_decode()
            values.append(column.to_pylist())
        for cells in zip(*values, strict=True):
            row += 1
            yield f"row {row}", dict(zip(names, cells, strict=True))
