"""The replay's column-wise decoding (Parquet batches → int64 columns → checked rows) agrees exactly with the row path
(``schema`` parsers, ``to_paise``), on seeded random data; and decoding imports no pandas (RSS: ~60 MB for nothing).
"""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trader.adapters.replay import readers
from trader.adapters.replay.checks import FileChecker, InstrumentInfo, InstrumentResolver, ReplayDataError
from trader.events import Tick
from trader.money import to_paise

SEED = 20_261_130
N = 2_000


def row_paise(column: pa.Array) -> list[int]:
    """What the row path makes of each cell: ``to_paise`` of the Python value, an empty cell 0."""
    return [0 if value is None else to_paise(value) for value in column.to_pylist()]


def random_rupees(rng: random.Random, scale: int) -> list[Decimal | None]:
    values: list[Decimal | None] = []
    for _ in range(N):
        if rng.random() < 0.05:
            values.append(None)
            continue
        unscaled = rng.randrange(-10 ** 12, 10 ** 12)
        if rng.random() < 0.2:  # the halves: where rounding half to even is decided
            unscaled = unscaled // 10 * 10 + 5
        values.append(Decimal(unscaled).scaleb(-scale))
    return values


@pytest.mark.parametrize("scale", [0, 1, 2, 3, 4, 6, 9])
def test_decimal_rupees_decode_to_the_row_paths_paise(scale: int) -> None:
    rng = random.Random(SEED + scale)
    column = pa.array(random_rupees(rng, scale), type=pa.decimal128(18, scale))
    fast = readers._paise(column, len(column))
    assert fast is not None and fast.tolist() == row_paise(column)


def test_decimal_slices_and_out_of_range_values() -> None:
    rng = random.Random(SEED)
    column = pa.array(random_rupees(rng, 4), type=pa.decimal128(30, 4))
    part = column.slice(17, 400)  # an offset into the buffers
    fast = readers._paise(part, len(part))
    assert fast is not None and fast.tolist() == row_paise(part)
    huge = pa.array([Decimal("1.25"), Decimal("10") ** 20], type=pa.decimal128(30, 2))
    assert readers._paise(huge, 2) is None  # past 63 bits or a plausible amount: the row path names it


@pytest.mark.parametrize("kind", ["float64", "float32", "int64", "int32"])
def test_float_and_integer_rupees_decode_to_the_row_paths_paise(kind: str) -> None:
    rng = random.Random(SEED)
    if kind.startswith("float"):
        values: list[float | int | None] = [None if rng.random() < 0.05 else
                                            rng.randrange(0, 10 ** 9) / rng.choice((1, 20, 100, 1000, 3))
                                            for _ in range(N)]
        values += [0.125, 0.135, 2.675, 1.005, -0.005, 1e14 + 0.5]  # binary-inexact halves
    else:
        values = [None if rng.random() < 0.05 else rng.randrange(-10 ** 6, 10 ** 6) for _ in range(N)]
    column = pa.array(values, type=getattr(pa, kind)())
    fast = readers._paise(column, len(column))
    assert fast is not None and fast.tolist() == row_paise(column)
    part = column.slice(5, 300)
    fast_part = readers._paise(part, len(part))
    assert fast_part is not None and fast_part.tolist() == row_paise(part)


def test_values_the_row_path_must_judge_are_left_to_it() -> None:
    for column in (pa.array([1.0, float("nan")]), pa.array([1.0, float("inf")]), pa.array([1.0, 1e16]),
                   pa.array(["120.05", "1.00"]), pa.array([1, 2], type=pa.uint64())):
        assert readers._paise(column, len(column)) is None, column
    assert readers._paise(pa.array([1.0, None]), 2, nullable=False) is None
    assert readers._ints(pa.array([1, None]), 2, nullable=False) is None
    ints = readers._ints(pa.array([3, None, -2], type=pa.int16()), 3)
    assert ints is not None and ints.tolist() == [3, 0, -2]


def random_batch(rng: random.Random, rows: int) -> dict[str, pa.Array]:
    tokens = [256_265, 11, 22, 33]
    ts = sorted(rng.randrange(10 ** 18, 10 ** 18 + 10 ** 12) for _ in range(rows))
    token = [rng.choice(tokens) for _ in range(rows)]
    last = [5 * rng.randrange(1, 100_000) for _ in range(rows)]
    half = [5 * rng.randrange(0, 4) for _ in range(rows)]
    return {
        "ts": pa.array(ts, type=pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
        "instrument_token": pa.array(token, type=pa.int64()),
        "last_price": pa.array([p / 100 for p in last]),
        "bid": pa.array([(p - h) / 100 if h and rng.random() < 0.9 else None for p, h in zip(last, half)]),
        "ask": pa.array([(p + h) / 100 if h else None for p, h in zip(last, half)]),
        "bid_qty": pa.array([rng.randrange(0, 5_000) for _ in range(rows)]),
        "ask_qty": pa.array([rng.choice((None, rng.randrange(0, 5_000))) for _ in range(rows)], type=pa.int64()),
        "volume": pa.array([rng.randrange(0, 10 ** 9) for _ in range(rows)]),
        "oi": pa.array([rng.randrange(0, 10 ** 7) for _ in range(rows)]),
    }


def checker() -> FileChecker:
    infos = [InstrumentInfo(256_265, 0, "NIFTY 50"), *(InstrumentInfo(t, 5, f"OPT{t}") for t in (11, 22, 33))]
    return FileChecker("ticks.parquet", InstrumentResolver({i.instrument_token: i for i in infos},
                                                           {i.label: i for i in infos}))


def as_fields(tick: Tick) -> tuple[int, ...]:
    return (tick.ts_ns, tick.instrument_token, tick.last_price, tick.volume, tick.oi, tick.bid, tick.bid_qty,
            tick.ask, tick.ask_qty)


def test_column_wise_checks_accept_exactly_the_row_paths_rows(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    path = tmp_path / "ticks.parquet"
    pq.write_table(pa.table(random_batch(rng, 3_000)), path, row_group_size=700)
    fast_checker, row_checker = checker(), checker()
    fast_rows: list[tuple[int, ...]] = []
    row_rows: list[tuple[int, ...]] = []
    for batch in readers.read_parquet_batches(path, batch_rows=512):
        assert batch.fast is not None
        decoded = fast_checker.fast_ticks(batch.fast, f"row {batch.first_row + len(batch.fast.ts) - 1}")
        assert decoded is not None
        fast_rows += decoded
        row_rows += [as_fields(row_checker.tick(where, row)) for where, row in batch.rows()]
    assert fast_rows == row_rows and len(fast_rows) == 3_000


@pytest.mark.parametrize(("column", "bad", "field"), [
    ("last_price", 0.0, "last_price"), ("last_price", 1.02, "last_price"), ("bid", -0.05, "bid"),
    ("bid", 999_999.0, "bid"), ("oi", -1, "oi"), ("instrument_token", 44, "instrument_token"), ("ts", 0, "ts"),
])
def test_a_row_the_column_wise_checks_refuse_is_named_by_the_row_path(column: str, bad: object, field: str) -> None:
    rng = random.Random(SEED)
    columns = random_batch(rng, 300)
    row = 137
    values = columns[column].cast(pa.int64()).to_pylist() if column == "ts" else columns[column].to_pylist()
    if column == "bid":  # a quoted ask on that row, so the crossed book is one
        asks = columns["ask"].to_pylist()
        asks[row] = asks[row] or 1.0
        columns["ask"] = pa.array(asks)
    values[row] = bad
    array = pa.array(values, type=columns[column].type if column != "ts" else pa.int64())
    columns[column] = array.cast(pa.timestamp("ns", tz="UTC")) if column == "ts" else array
    table = pa.table(columns)
    decoded = {name: table.column(name).combine_chunks() for name in table.column_names}
    decoded["ts"] = decoded["ts"].cast(pa.int64())  # as read_parquet_batches hands it over
    fast = readers._fast_columns(decoded, 300)
    assert fast is not None
    assert checker().fast_ticks(fast, "row 300") is None
    row_checker = checker()
    with pytest.raises(ReplayDataError) as error:
        for where, cells in readers.ParquetBatch(1, fast, decoded).rows():
            row_checker.tick(where, cells)
    assert error.value.where == f"row {row + 1}" and error.value.field == field


def test_decoding_a_parquet_day_imports_no_pandas(tmp_path: Path) -> None:
    """``pa.scalar`` (e.g. ``fill_null(0)``) imports pandas when installed: 60 MB of RSS a backtest does not need."""
    rng = random.Random(SEED)
    path = tmp_path / "ticks.parquet"
    pq.write_table(pa.table(random_batch(rng, 500)), path)
    code = ("import sys; from pathlib import Path; from trader.adapters.replay import readers\n"
            f"batches = list(readers.read_parquet_batches(Path({str(path)!r}), batch_rows=128))\n"
            "assert all(b.fast is not None for b in batches)\n"
            "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"


def test_uint64_sized_tokens_are_left_to_the_row_path() -> None:
    assert readers._ints(pa.array(np.array([1, 2], dtype=np.uint64)), 2) is None


@pytest.mark.parametrize("scale", [19, 20])
def test_decimal_with_a_scale_past_18_digits_decodes_or_defers_without_overflow(scale: int) -> None:
    # decimal128(38, 19) of sub-rupee prices: the unscaled integers fit 63 bits, 10**scale does not (review2)
    column = pa.array([Decimal("0.015"), Decimal("0.025"), Decimal("0.03"), None], type=pa.decimal128(38, scale))
    fast = readers._paise(column, len(column))
    assert fast is None or fast.tolist() == row_paise(column)


@pytest.mark.parametrize("ts", ["9999-12-31T23:59:59+05:30", "99999999999999999999999", 2**63])
def test_a_time_past_int64_nanoseconds_is_a_row_error(ts: object) -> None:
    """review2: the row path took times no int64 holds (the column-wise path cannot even decode them), and the
    replay then failed far from the row, in a date conversion or a table write."""
    with pytest.raises(ReplayDataError) as error:
        checker().tick("line 2", {"ts": ts, "instrument_token": 256_265, "last_price": "26000.5"})  # type: ignore[dict-item]
    assert error.value.field == "ts" and "is not between 2000-01-01 and 2100-01-01 UTC" in str(error.value)


def test_a_csv_that_is_not_utf8_names_the_file_and_line(tmp_path: Path) -> None:
    """review2: a Latin-1 byte in a tick CSV ended the replay with "'utf-8' codec can't decode byte 0xff in position
    110", naming neither the file nor the line."""
    path = tmp_path / "ticks.csv"
    path.write_bytes(b"ts,instrument_token,last_price\n2026-11-27T09:15:00+05:30,256265,26000.5\n"
                     b"2026-11-27T09:15:01+05:30,256265,26001\xff\n")
    with pytest.raises(ReplayDataError) as error:
        list(readers.read_csv(path))
    assert error.value.file == str(path) and error.value.where == "line 3" and "UTF-8" in str(error.value)
    path.write_bytes(b"ts,last_pr\xefce\n")
    with pytest.raises(ReplayDataError) as error:
        readers.columns(path)
    assert error.value.file == str(path) and error.value.where == "line 1"


@pytest.mark.parametrize("value", [date(2026, 11, 27), b"2026-11-27T09:15:00+05:30", [1]])
def test_a_time_cell_of_another_type_is_a_row_error(value: object) -> None:
    """review2: a Parquet ts column of dates (date32) or bytes hit ``assert isinstance(value, str)``: a traceback."""
    with pytest.raises(ReplayDataError) as error:
        checker().tick("row 1", {"ts": value, "instrument_token": 256_265, "last_price": 26000.5})  # type: ignore[dict-item]
    assert error.value.field == "ts"
