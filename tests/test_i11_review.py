"""Review of issue #11 phase 1: each test pins a defect found in review (it failed before its fix)."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel, ConfigDict
from test_replay import CALENDAR, DAY, OPEN_NS, SPOT_TOKEN, SYMBOL, day_dir, make_ticks, replay, write_csv

from trader.adapters.replay.checks import ReplayDataError
from trader.adapters.replay.market import ReplayMarket
from trader.adapters.replay.schema import RowError, parse_ts
from trader.adapters.replay.sources import ReplayConfig
from trader.clock import SimClock
from trader.events import Tick
from trader.logging import configure_logging
from trader.market.instrument_master import InstrumentMaster


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


# --- replay: many files (one per instrument per day) must not all be open at once ------------------------------


def _open_files() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


async def test_a_file_is_opened_only_when_the_replay_reaches_its_first_time(tmp_path: Path) -> None:
    """A week or a month of one-file-per-instrument-per-day data: the merge held every file open (and, for Parquet, a
    decoded batch of each) from the first tick, so memory and descriptors grew with the number of files, not days."""
    data = day_dir(tmp_path)
    day_ns = 86_400 * 1_000_000_000
    base = make_ticks(seconds=2)
    days = 40
    for day in range(days):
        for token, symbol in SYMBOL.items():
            rows = [Tick(ts_ns=t.ts_ns + day * day_ns, instrument_token=token, last_price=t.last_price,
                         volume=t.volume, oi=t.oi, bid=t.bid, bid_qty=t.bid_qty, ask=t.ask, ask_qty=t.ask_qty,
                         exchange_ts_ns=t.ts_ns + day * day_ns) for t in base if t.instrument_token == token]
            name = f"{token if token == SPOT_TOKEN else symbol}_{DAY + timedelta(days=day)}.csv"
            write_csv(data / name, rows, per_instrument=True)
    clock = SimClock(OPEN_NS - 3_600_000_000_000)
    market = ReplayMarket(clock, CALENDAR, ReplayConfig(data=data))
    await market.start(InstrumentMaster())
    before = _open_files()
    most = 0
    total = 0
    async for batch in market.stream():
        most = max(most, _open_files() - before)
        total += len(batch)
    assert market.failure is None and total == days * len(base)
    assert most <= 2 * len(SYMBOL), f"{most} files open at once for {days * len(SYMBOL)} files"


async def test_the_same_ticks_in_two_files_are_refused_not_replayed_twice(tmp_path: Path) -> None:
    """A CSV and its Parquet conversion side by side in the data directory: every tick reached the strategies twice
    (the ORB's confirm_ticks counted each break tick twice)."""
    from test_replay import write_parquet  # noqa: PLC0415

    data = day_dir(tmp_path)
    ticks = make_ticks(seconds=5)
    write_csv(data / "2026-11-27.csv", ticks)
    write_parquet(data / "2026-11-27.parquet", ticks)
    with pytest.raises(ReplayDataError) as error:
        await replay(data)
    message = str(error.value)
    assert message.startswith(f"{data / '2026-11-27.parquet'} data row 1, field 'ts': ")
    assert f"also in {data / '2026-11-27.csv'}" in message and "the same data twice" in message


async def test_ticks_of_different_instruments_at_one_time_in_two_files_still_merge(tmp_path: Path) -> None:
    data = day_dir(tmp_path)
    ticks = make_ticks(seconds=5)
    write_csv(data / "a.csv", [t for t in ticks if t.instrument_token == SPOT_TOKEN])
    write_csv(data / "b.csv", [t for t in ticks if t.instrument_token != SPOT_TOKEN])
    batches, _, _ = await replay(data)
    assert sum(len(b) for b in batches) == len(ticks)


# --- trader new-strategy: names that would break the environment ------------------------------------------------


@pytest.mark.parametrize("name", ["pydantic", "pyarrow", "structlog"])
def test_new_strategy_refuses_the_name_of_an_installed_package(tmp_path: Path, name: str) -> None:
    """``pip install .`` of a package whose top-level module is ``pydantic`` writes into site-packages/pydantic."""
    from trader.strategies.skeleton import SkeletonError, write_skeleton  # noqa: PLC0415

    with pytest.raises(SkeletonError, match="already importable"):
        write_skeleton(name, tmp_path)
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("name", ["my__breakout", "my_breakout_"])
def test_new_strategy_refuses_a_name_the_environment_variables_cannot_spell(tmp_path: Path, name: str) -> None:
    """TRADER_STRATEGY__MY__BREAKOUT__RANGE_MINUTES splits on every '__': [strategy.my.breakout] range_minutes."""
    from trader.strategies.skeleton import SkeletonError, write_skeleton  # noqa: PLC0415

    with pytest.raises(SkeletonError, match="lower-case letters"):
        write_skeleton(name, tmp_path)


# --- replay: an unreadable file is named ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "content"), [
    ("2026-11-27.parquet", b"not parquet at all"),
    ("2026-11-27.csv", "ts,last_price\n".encode("utf-16")),
])
async def test_an_unreadable_tick_file_is_named_in_the_error(tmp_path: Path, name: str, content: bytes) -> None:
    """Among hundreds of files, "Parquet magic bytes not found in footer" alone does not say which one is broken."""
    data = day_dir(tmp_path)
    write_csv(data / "2026-11-26.csv", make_ticks(seconds=2))
    (data / name).write_bytes(content)
    # (named with the line where it is a CSV's text that is not UTF-8: review2)
    with pytest.raises(ValueError, match=r"^" + str(data / name).replace(".", r"\.") + "(: cannot be read| line )"):
        await replay(data)


async def test_a_file_that_breaks_midway_is_named_in_the_error(tmp_path: Path) -> None:
    data = day_dir(tmp_path)
    write_csv(data / "2026-11-27.csv", make_ticks(seconds=3))
    with (data / "2026-11-27.csv").open("ab") as handle:
        handle.write("2026-11-27T10:00:00+05:30,NIFTY 50,26000.00,,,,,0,0,\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"2026-11-27\.csv( line 17, field 'text': not UTF-8|: cannot be read)"):
        await replay(data)


@pytest.mark.parametrize("value", [b"2026-11-27T09:15:00+05:30", {"ts": 1}, [1], DAY])
def test_a_time_of_another_type_is_a_row_error_not_an_assertion(value: object) -> None:
    """A Parquet ``ts`` column of binary, struct, list or date32 type: the row path crashed with AssertionError."""
    with pytest.raises(RowError) as error:
        parse_ts(value)  # type: ignore[arg-type]
    assert error.value.field == "ts" and "is not a time" in error.value.message


async def test_a_parquet_binary_time_column_names_the_file_and_row(tmp_path: Path) -> None:
    data = day_dir(tmp_path)
    pq.write_table(pa.table({"ts": pa.array([b"2026-11-27T12:00:00+05:30"] * 2, type=pa.binary()),
                             "instrument_token": pa.array([SPOT_TOKEN] * 2, type=pa.int64()),
                             "last_price": pa.array([26_000.0, 26_001.0])}), data / "ticks.parquet")
    with pytest.raises(ReplayDataError) as error:
        await replay(data)
    assert str(error.value).startswith(f"{data / 'ticks.parquet'} row 1, field 'ts': ")


async def test_any_failure_while_reading_ends_the_replay_as_an_error_not_as_the_end_of_the_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anything but OSError/ValueError escaped ``stream``: the feed actor crashed, was restarted, its second
    ``stream`` yielded nothing, and the backtest ended as if the data were complete (exit 0, half the days)."""
    data = day_dir(tmp_path)
    write_csv(data / "ticks.csv", make_ticks(seconds=5))

    def broken(self: ReplayMarket, path: Path, checker: object) -> object:
        yield []
        raise TypeError("a reader bug")

    monkeypatch.setattr(ReplayMarket, "_checked", broken)
    market = ReplayMarket(SimClock(OPEN_NS - 3_600_000_000_000), CALENDAR, ReplayConfig(data=data))
    await market.start(InstrumentMaster())
    assert [batch async for batch in market.stream()] == []
    assert isinstance(market.failure, TypeError) and "a reader bug" in market.error


# --- strategies: one instance per name ------------------------------------------------------------------------------


@pytest.mark.parametrize("names", [
    ["opening_range_breakout", "trader.strategies.orb:OpeningRangeBreakout"],
    ["opening_range_breakout", "opening_range_breakout"],
    ["ema_crossover_enhanced", "ema_crossover_enhanced"],
])
def test_two_entries_that_are_the_same_strategy_are_refused(names: list[str]) -> None:
    """Both were built with the same strategy id: two entries per break (double the risk), one state document
    overwritten by the other, and on restart the position went to one while the other believed it held it too."""
    from trader.config import ConfigError, load_settings  # noqa: PLC0415

    with pytest.raises(ConfigError) as error:
        load_settings({"strategies": names})
    assert any("the same strategy" in line and names[1] in line for line in error.value.lines), error.value.lines


def test_new_strategy_where_a_file_has_the_name_is_refused_with_a_message(tmp_path: Path) -> None:
    """A file (not a directory) at <dir>/<name>: NotADirectoryError escaped as a traceback."""
    from trader.cli import EXIT_CONFIG, main  # noqa: PLC0415

    (tmp_path / "my_breakout").write_text("notes\n")
    assert main(["new-strategy", "my_breakout", "--dir", str(tmp_path)]) == EXIT_CONFIG
    assert (tmp_path / "my_breakout").read_text() == "notes\n"


def test_an_iso_time_with_a_comma_before_its_fraction_keeps_its_nanoseconds() -> None:
    """ISO-8601 allows ',' as the decimal sign (datetime takes it): the nanoseconds past the microsecond were lost."""
    assert parse_ts("2026-11-27T09:15:00,123456789+05:30") == OPEN_NS + 123_456_789
    assert parse_ts("2026-11-27T09:15:00.123456789+05:30") == OPEN_NS + 123_456_789


# --- the strategy host: one failing strategy must not take the others down ----------------------------------------


class _Recording:
    """A strategy that only counts what it is handed."""

    def __init__(self, strategy_id: str, fail: bool = False) -> None:
        self.strategy_id = strategy_id
        self.fail = fail
        self.ticks: list[int] = []
        self.updates: list[str] = []

    def on_tick(self, tick: Tick, ctx: object) -> list[object]:
        if self.fail:
            raise ZeroDivisionError("a plugin bug")
        self.ticks.append(tick.tick_id)
        return []

    def on_fill(self, fill: object) -> None:
        pass

    def on_order_update(self, update: object) -> None:
        if self.fail:
            raise KeyError("a plugin bug")
        self.updates.append(update.intent_id)  # type: ignore[attr-defined]

    def snapshot_state(self) -> dict[str, object]:
        return {}

    def restore_state(self, state: object, held: list[object]) -> list[object]:
        return held

    def holdings(self) -> list[object]:
        return []

    def pending_intents(self) -> list[str]:
        return []


async def test_a_strategy_that_raises_does_not_stop_the_others_from_seeing_ticks_and_updates() -> None:
    """The exception crashed the host actor: the tick was redelivered (the strategies before the failing one saw it
    again: an ORB counted one break tick as several confirmations) and the ones after it (the adopted keeper's stops
    and time exits among them) never saw a tick at all."""
    from trader.actors.strategy import StrategyActor  # noqa: PLC0415
    from trader.bus import EventBus  # noqa: PLC0415
    from trader.events import OrderStatus, OrderUpdate  # noqa: PLC0415
    from trader.ids import IdFactory  # noqa: PLC0415
    from trader.strategies.base import StrategyContext  # noqa: PLC0415

    before, broken, after = _Recording("before"), _Recording("broken", fail=True), _Recording("after")
    context = StrategyContext(InstrumentMaster(), IdFactory(OPEN_NS))
    actor = StrategyActor(EventBus(), [before, broken, after], context)  # type: ignore[list-item]
    for tick_id in (1, 2):
        await actor.handle(Tick(ts_ns=OPEN_NS + tick_id, instrument_token=SPOT_TOKEN, last_price=2_600_000,
                                tick_id=tick_id))
    await actor.handle(OrderUpdate(ts_ns=OPEN_NS + 3, intent_id="I1", order_id="O1", status=OrderStatus.COMPLETE))
    assert before.ticks == [1, 2] and after.ticks == [1, 2]
    assert before.updates == ["I1"] and after.updates == ["I1"]
    assert context.entries_allowed is False  # a strategy in an unknown state: no new entries anywhere


class _ExplodingParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Exploding(_Recording):
    """A plugin whose constructor raises (a bad computation on its parameters)."""

    name: ClassVar[str] = "exploding"
    Params: ClassVar[type[BaseModel]] = _ExplodingParams

    def __init__(self, strategy_id: str, underlying: object, common: object, params: object) -> None:
        raise RuntimeError("cannot start")


def test_a_plugin_whose_constructor_raises_is_a_config_error_naming_it() -> None:
    """The exception escaped App() as a traceback instead of the one-line config error every other problem gets."""
    from trader.builders import build_strategy  # noqa: PLC0415
    from trader.config import ConfigError, load_settings  # noqa: PLC0415
    from trader.market.instruments import resolve_underlying  # noqa: PLC0415

    settings = load_settings({"strategies": ["test_i11_review:_Exploding"]})
    with pytest.raises(ConfigError) as error:
        build_strategy("test_i11_review:_Exploding", settings, resolve_underlying(settings.symbols[0]))
    assert error.value.lines == ["config error: strategies: building 'test_i11_review:_Exploding' failed: "
                                 "RuntimeError: cannot start"]


class _BadRestore(_Recording):
    restored_with: list[object]

    def restore_state(self, state: object, held: list[object]) -> list[object]:
        self.restored_with = [*getattr(self, "restored_with", []), state]
        if state is not None:
            raise KeyError("range_high")  # an older document shape the plugin did not expect
        return held


def test_a_plugin_restore_that_raises_hands_its_positions_to_the_keeper() -> None:
    """Only ValueError was caught: a KeyError stopped the daemon from starting, with the broker's positions
    unmanaged (no stop, no time exit) until someone fixed the plugin."""
    from trader.actors.strategy import StrategyActor  # noqa: PLC0415
    from trader.bus import EventBus  # noqa: PLC0415
    from trader.ids import IdFactory  # noqa: PLC0415
    from trader.strategies.base import StrategyContext  # noqa: PLC0415

    strategy = _BadRestore("bad")
    context = StrategyContext(InstrumentMaster(), IdFactory(OPEN_NS))
    actor = StrategyActor(EventBus(), [strategy], context)  # type: ignore[list-item]
    actor.restore({"bad": {"version": 1}}, [])
    assert strategy.restored_with == [{"version": 1}, None]  # refused, then started flat (positions: the keeper)


# --- opening_range_breakout: a restart that missed the end of the range window ------------------------------------


def test_an_orb_restarted_after_its_range_window_ended_does_not_trade_a_partial_range() -> None:
    """Down from 09:20 to 09:40: the saved range held only 09:15-09:20 (26,000-26,040), was completed from it, and a
    move to 26,050 — inside the true range, which the daemon never saw — was traded as a breakout."""
    from test_orb import Driver, intents, saved  # noqa: PLC0415
    from test_strategy import at  # noqa: PLC0415

    driver = Driver()
    for second in range(300):  # 09:15-09:20 only
        driver.index(at(9, 15) + second * 10**9, 26_000.0 + (second % 2) * 40)
    doc = saved(driver)
    after = Driver()
    after.strategy.restore_state(doc, [])
    assert intents(after.ticks(at(9, 40), [26_050.0] * 5)) == []
    assert after.strategy.opening_range is None
    assert saved(after)["range_usable"] == 0  # and it stays so across a further restart


async def test_a_misnamed_per_instrument_file_of_a_later_day_fails_before_the_first_tick(tmp_path: Path) -> None:
    """Files are opened lazily (by their first time), but what the names say is checked up front: a week-long
    backtest must not stop on its fourth day for a file name it could have refused at the start."""
    data = day_dir(tmp_path)
    ticks = make_ticks(seconds=2)
    write_csv(data / "a.csv", ticks)
    later = [Tick(ts_ns=t.ts_ns + 3 * 86_400 * 1_000_000_000, instrument_token=SPOT_TOKEN, last_price=t.last_price,
                  exchange_ts_ns=t.ts_ns) for t in ticks if t.instrument_token == SPOT_TOKEN]
    write_csv(data / "BANKNIFTY26DEC60000CE_2026-11-30.csv", later, per_instrument=True)
    market = ReplayMarket(SimClock(OPEN_NS - 3_600_000_000_000), CALENDAR, ReplayConfig(data=data))
    await market.start(InstrumentMaster())
    assert [batch async for batch in market.stream()] == []
    assert "BANKNIFTY26DEC60000CE_2026-11-30.csv file name" in market.error


# --- replay: a date selection that selects nothing ----------------------------------------------------------------


async def test_a_date_selection_that_holds_no_tick_is_an_error_not_an_empty_backtest(tmp_path: Path) -> None:
    """--from after the data's last day replayed nothing and the run ended normally (exit 0): a trader read "no
    trades" as the strategy's verdict on a week it never saw."""
    from datetime import date  # noqa: PLC0415

    data = day_dir(tmp_path)
    write_csv(data / "ticks.csv", make_ticks(seconds=3))
    market = ReplayMarket(SimClock(OPEN_NS - 3_600_000_000_000), CALENDAR,
                          ReplayConfig(data=data, from_date=date(2026, 12, 1)))
    await market.start(InstrumentMaster())
    assert [batch async for batch in market.stream()] == []
    assert market.error == ("no tick of the data falls on the days selected (from 2026-12-01); the data's ticks "
                            "are from 2026-11-27 to 2026-11-27 (IST)")


def test_from_after_to_is_refused() -> None:
    from datetime import date  # noqa: PLC0415

    from trader.adapters.replay.sources import ReplaySetupError  # noqa: PLC0415

    with pytest.raises(ReplaySetupError, match="--from 2026-11-30 is after --to 2026-11-27"):
        ReplayMarket(SimClock(OPEN_NS), CALENDAR, ReplayConfig(data=Path("/nonexistent"),
                                                               from_date=date(2026, 11, 30), to_date=DAY))


# --- strategies: one entry-point name from two installed distributions -------------------------------------------


def test_an_entry_point_name_installed_by_two_distributions_is_refused_not_picked_silently(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """"The first one wins" picked whichever distribution came first on sys.path: an old copy of a strategy could run
    instead of the one the trader just installed, with nothing said."""
    import sys  # noqa: PLC0415

    from test_strategy_registry import PLUGIN_SOURCE, write_dist  # noqa: PLC0415

    from trader.strategies import registry  # noqa: PLC0415

    for dist, module in (("plug_old", "plug_dup_old"), ("plug_new", "plug_dup_new")):
        (tmp_path / f"{module}.py").write_text(PLUGIN_SOURCE)
        write_dist(tmp_path, dist, {"fake_plug": f"{module}:FakePlug"})
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(registry.StrategyLoadError) as error:
            registry.resolve("fake_plug")
    finally:
        for module in ("plug_dup_old", "plug_dup_new"):
            sys.modules.pop(module, None)
    message = str(error.value)
    assert "installed by more than one distribution" in message
    assert "plug_old 1.0" in message and "plug_new 1.0" in message


# --- replay: integer rupee prices out of any plausible range ------------------------------------------------------


@pytest.mark.parametrize("rupees", [184_467_440_737_095_517, 10**15])
async def test_an_implausible_integer_price_in_parquet_is_refused_not_wrapped(tmp_path: Path, rupees: int) -> None:
    """× 100 in int64 wrapped silently: ₹184,467,440,737,095,517 became 84 paise; the row path took any integer."""
    data = day_dir(tmp_path)
    pq.write_table(pa.table({"ts": pa.array([OPEN_NS, OPEN_NS + 1], type=pa.int64()),
                             "instrument_token": pa.array([SPOT_TOKEN] * 2, type=pa.int64()),
                             "last_price": pa.array([26_000, rupees], type=pa.int64())}), data / "ticks.parquet")
    with pytest.raises(ReplayDataError) as error:
        await replay(data)
    assert str(error.value).startswith(f"{data / 'ticks.parquet'} row 2, field 'last_price': ")
    assert "not a plausible price" in str(error.value)
