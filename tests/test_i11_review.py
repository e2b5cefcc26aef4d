"""Review of issue #11 phase 1: each test pins a defect found in review (it failed before its fix)."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_replay import OPEN_NS, SPOT_TOKEN, day_dir, replay

from trader.adapters.replay.checks import ReplayDataError
from trader.adapters.replay.schema import RowError, parse_ts
from trader.logging import configure_logging


@pytest.fixture(autouse=True)
def quiet_logs() -> None:
    configure_logging("WARNING", io.StringIO())


# --- replay: event times out of any plausible range ------------------------------------------------------------


@pytest.mark.parametrize("value", [
    "1795751100",  # epoch seconds, not ns: 1970-01-01 + 1.8 s
    "1795751100000",  # epoch milliseconds
    "1795751100000000",  # epoch microseconds
    1795751100,
    "-5",
    "1969-12-31T23:59:59+00:00",
    "0001-01-01T00:00:00+00:00",
    "9999-12-31T23:59:59+05:30",
])
def test_an_event_time_outside_2000_2100_is_refused_not_read_as_1970(value: str | int) -> None:
    with pytest.raises(RowError) as error:
        parse_ts(value)
    assert error.value.field == "ts" and "between 2000-01-01 and 2100-01-01" in error.value.message


def test_plausible_event_times_still_parse() -> None:
    assert parse_ts("2026-11-27T09:15:00+05:30") == OPEN_NS
    assert parse_ts(str(OPEN_NS)) == OPEN_NS
    assert parse_ts(OPEN_NS) == OPEN_NS


async def test_a_parquet_integer_time_in_seconds_is_refused_on_the_fast_path(tmp_path: Path) -> None:
    data = day_dir(tmp_path)
    seconds = [OPEN_NS // 1_000_000_000 + i for i in range(3)]
    pq.write_table(pa.table({"ts": pa.array(seconds, type=pa.int64()),
                             "instrument_token": pa.array([SPOT_TOKEN] * 3, type=pa.int64()),
                             "last_price": pa.array([26_000.0, 26_001.0, 26_002.0])}), data / "ticks.parquet")
    with pytest.raises(ReplayDataError) as error:
        await replay(data)
    assert str(error.value).startswith(f"{data / 'ticks.parquet'} row 1, field 'ts': ")
    assert "seconds" in str(error.value)
