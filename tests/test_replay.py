"""The replay provider: tick files (CSV, Parquet) → checked ticks in event-time order, behind the MarketData port.

Every fixture is generated here (a few instruments, a few hundred rows, seeded); nothing is read from outside the
repository.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trader.adapters.replay.checks import FileChecker, GapCounter, InstrumentInfo, InstrumentResolver, ReplayDataError
from trader.adapters.replay.convert import (
    ConvertError,
    CsvLayout,
    convert_csv,
    convert_kite_ticks,
    kite_tick_lines,
)
from trader.adapters.replay.market import ReplayMarket
from trader.adapters.replay.schema import Cell, RowError, parse_ts
from trader.adapters.replay.sources import ReplayConfig, ReplaySetupError, load_master
from trader.app import App
from trader.cli import EXIT_CONFIG, main
from trader.clock import SimClock
from trader.config import ConfigError, load_settings
from trader.events import Tick
from trader.logging import configure_logging
from trader.market.calendar import IST, MarketCalendar, ist_ns
from trader.market.instrument_master import InstrumentMaster
from trader.money import rupee_text

CALENDAR = MarketCalendar()
DAY = date(2026, 11, 27)  # a Friday, a trading day
OPEN_NS = ist_ns(DAY, datetime(2026, 1, 1, 9, 15).time())
SPOT_TOKEN = 256265
KITE_HEADER = ("instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,"
               "instrument_type,segment,exchange")
# (token, tradingsymbol, strike rupees, type)
OPTIONS = (
    (12_345_602, "NIFTY26DEC26000CE", 26_000, "CE"),
    (12_345_858, "NIFTY26DEC26000PE", 26_000, "PE"),
    (12_346_114, "NIFTY26DEC26100CE", 26_100, "CE"),
    (12_346_370, "NIFTY26DEC25900PE", 25_900, "PE"),
)
SYMBOL = {SPOT_TOKEN: "NIFTY 50", **{token: symbol for token, symbol, _, _ in OPTIONS}}
COLUMNS = ("ts", "tradingsymbol", "last_price", "bid", "bid_qty", "ask", "ask_qty", "volume", "oi")


@pytest.fixture(autouse=True)
def quiet_logs() -> None:
    """Logs to a buffer: a test that ran the CLI (logging to a captured stdout, closed since) leaves no trap."""
    configure_logging("WARNING", io.StringIO())


def dump_text(*, lot: int = 75) -> str:
    rows = [KITE_HEADER]
    for token, symbol, strike, kind in OPTIONS:
        rows.append(f"{token},{token >> 8},{symbol},NIFTY,0,2026-12-29,{strike},0.05,{lot},{kind},NFO-OPT,NFO")
    rows.append("5720578,22346,NIFTY26DECFUT,NIFTY,0,2026-12-29,0,0.1,75,FUT,NFO-FUT,NFO")  # skipped: not an option
    return "\n".join(rows) + "\n"


def make_ticks(seconds: int = 100, seed: int = 11) -> list[Tick]:
    """One index tick and one tick per option each second: 5 × ``seconds`` rows, prices on the 5-paise grid."""
    rng = random.Random(seed)
    spot = 2_600_000
    premiums = {token: 12_000 + 500 * i for i, (token, _, _, _) in enumerate(OPTIONS)}
    volumes = dict.fromkeys(premiums, 0)
    ticks = []
    for second in range(seconds):
        ts = OPEN_NS + second * 1_000_000_000 + rng.randrange(0, 1_000_000_000, 1_000)  # µs: CSV's ISO text keeps it
        spot += 5 * rng.randint(-4, 4)
        ticks.append(Tick(ts_ns=ts, instrument_token=SPOT_TOKEN, last_price=spot, exchange_ts_ns=ts))
        for token, premium in list(premiums.items()):
            price = premiums[token] = max(premium + 5 * rng.randint(-3, 3), 100)
            volumes[token] += 75 * rng.randint(0, 5)
            half = 5 * rng.randint(1, 3)
            ticks.append(Tick(ts_ns=ts, instrument_token=token, last_price=price, volume=volumes[token],
                              oi=75 * rng.randint(1_000, 2_000), bid=price - half, bid_qty=75 * rng.randint(1, 20),
                              ask=price + half, ask_qty=75 * rng.randint(1, 20), exchange_ts_ns=ts))
    return ticks


def iso(ts_ns: int) -> str:
    seconds, ns = divmod(ts_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=ns // 1_000).astimezone(IST).isoformat()


def csv_row(tick: Tick, *, symbol: bool = True) -> list[str]:
    quote = [rupee_text(tick.bid) if tick.bid else "", str(tick.bid_qty or ""),
             rupee_text(tick.ask) if tick.ask else "", str(tick.ask_qty or ""), str(tick.volume), str(tick.oi)]
    head = [iso(tick.ts_ns), SYMBOL[tick.instrument_token]] if symbol else [iso(tick.ts_ns)]
    return [*head, rupee_text(tick.last_price), *quote]


def write_csv(path: Path, ticks: Sequence[Tick], *, per_instrument: bool = False) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        header = [c for c in COLUMNS if not (per_instrument and c == "tradingsymbol")]
        writer.writerow(header)
        for tick in ticks:
            writer.writerow(csv_row(tick, symbol=not per_instrument))


def write_parquet(path: Path, ticks: Sequence[Tick], *, ts_as_int: bool = False) -> None:
    ts_type = pa.int64() if ts_as_int else pa.timestamp("ns", tz="Asia/Kolkata")
    table = pa.table({
        "ts": pa.array([t.ts_ns for t in ticks], type=pa.int64()).cast(ts_type),
        "instrument_token": pa.array([t.instrument_token for t in ticks], type=pa.int64()),
        "last_price": pa.array([t.last_price / 100 for t in ticks], type=pa.float64()),
        "bid": pa.array([t.bid / 100 if t.bid else None for t in ticks], type=pa.float64()),
        "ask": pa.array([t.ask / 100 if t.ask else None for t in ticks], type=pa.float64()),
        "bid_qty": pa.array([t.bid_qty for t in ticks], type=pa.int64()),
        "ask_qty": pa.array([t.ask_qty for t in ticks], type=pa.int64()),
        "volume": pa.array([t.volume for t in ticks], type=pa.int64()),
        "oi": pa.array([t.oi for t in ticks], type=pa.int64()),
    })
    pq.write_table(table, path, row_group_size=128)  # several row groups: the reader's batches cross them


def day_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "instruments.csv").write_text(dump_text())
    return data


async def replay(data: Path, **config: object) -> tuple[list[list[Tick]], ReplayMarket, InstrumentMaster]:
    clock = SimClock(OPEN_NS - 3_600_000_000_000)
    market = ReplayMarket(clock, CALENDAR, ReplayConfig(data=data, **config))  # type: ignore[arg-type]
    master = InstrumentMaster()
    await market.start(master)
    batches = [batch async for batch in market.stream()]
    if market.failure is not None:
        raise market.failure
    assert clock.now_ns() == batches[-1][0].ts_ns
    return batches, market, master


def bare(ticks: Sequence[Tick]) -> list[Tick]:
    return [Tick(ts_ns=t.ts_ns, instrument_token=t.instrument_token, last_price=t.last_price, volume=t.volume,
                 oi=t.oi, bid=t.bid, bid_qty=t.bid_qty, ask=t.ask, ask_qty=t.ask_qty, exchange_ts_ns=t.exchange_ts_ns)
            for t in ticks]


def flat(batches: Sequence[Sequence[Tick]]) -> list[Tick]:
    return [tick for batch in batches for tick in batch]


# --- round trips -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["csv", "parquet", "parquet-int-ns"])
async def test_each_format_round_trips_into_the_same_ticks(tmp_path: Path, layout: str) -> None:
    data = day_dir(tmp_path)
    ticks = make_ticks()
    if layout == "csv":
        write_csv(data / "ticks.csv", ticks)
    else:
        write_parquet(data / "ticks.parquet", ticks, ts_as_int=layout == "parquet-int-ns")
    batches, market, master = await replay(data)
    assert bare(flat(batches)) == ticks
    assert [t.tick_id for t in flat(batches)] == list(range(1, len(ticks) + 1))
    assert all(len({t.ts_ns for t in batch}) == 1 for batch in batches)
    assert len(batches) == 100 and market.ticks_read == 500
    # The day's master: the dump's lot and tick size; the index added from the fallback table (the NFO dump has none).
    contract = master.contract("NIFTY26DEC26000CE")
    assert contract is not None and contract.lot_size == 75 and contract.expiry == date(2026, 12, 29)
    index = master.index_for("NIFTY")
    assert index is not None and index.instrument_token == SPOT_TOKEN
    assert market.gaps.count == 0


async def test_one_file_per_instrument_merges_in_event_time_order(tmp_path: Path) -> None:
    data = day_dir(tmp_path)
    ticks = make_ticks()
    for token, symbol in SYMBOL.items():
        name = f"{token}_2026-11-27.csv" if token == SPOT_TOKEN else f"{symbol}_2026-11-27.csv"
        write_csv(data / name, [t for t in ticks if t.instrument_token == token], per_instrument=True)
    batches, market, _ = await replay(data)
    assert len(market.files) == 5
    got = bare(flat(batches))
    assert sorted(got, key=lambda t: (t.ts_ns, t.instrument_token)) == sorted(
        ticks, key=lambda t: (t.ts_ns, t.instrument_token))
    assert [t.ts_ns for t in got] == sorted(t.ts_ns for t in ticks)
    # Equal times keep the files' name order: per batch, tokens in the order of the sorted file names.
    file_order = [int(p.name.split("_")[0]) if p.name[0].isdigit() else
                  next(k for k, v in SYMBOL.items() if v == p.name.split("_")[0]) for p in market.files]
    assert all([t.instrument_token for t in batch] == file_order for batch in batches)


async def test_files_of_mixed_formats_and_days_merge_and_select_by_date(tmp_path: Path) -> None:
    data = day_dir(tmp_path)
    first = make_ticks(seconds=40, seed=1)
    next_day = [Tick(ts_ns=t.ts_ns + 3 * 86_400 * 1_000_000_000, instrument_token=t.instrument_token,
                     last_price=t.last_price, volume=t.volume, oi=t.oi, bid=t.bid, bid_qty=t.bid_qty, ask=t.ask,
                     ask_qty=t.ask_qty, exchange_ts_ns=t.ts_ns + 3 * 86_400 * 1_000_000_000)
                for t in make_ticks(seconds=40, seed=2)]  # Monday 30 Nov
    write_parquet(data / "b-monday.parquet", next_day)
    write_csv(data / "a-friday.csv", first)
    batches, _, _ = await replay(data)
    assert bare(flat(batches)) == first + next_day
    only_monday, _, _ = await replay(data, from_date=date(2026, 11, 30))
    assert bare(flat(only_monday)) == next_day
    only_friday, _, _ = await replay(data, to_date=DAY)
    assert bare(flat(only_friday)) == first


# --- malformed rows: the exact error -------------------------------------------------------------------------


def broken(tmp_path: Path, line: int, column: str, value: str) -> Path:
    """The CSV fixture with one cell replaced; ``line`` counts the header as line 1."""
    data = day_dir(tmp_path)
    path = data / "ticks.csv"
    write_csv(path, make_ticks(seconds=10))
    rows = list(csv.reader(path.open(newline="")))
    rows[line - 1][rows[0].index(column)] = value
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return data


# Line 7 is the 6th data row: the second second's index tick; line 8 its first option (NIFTY26DEC26000CE).
@pytest.mark.parametrize(
    ("line", "column", "value", "message"),
    [
        (7, "ts", "2026-11-27T09:14:59+05:30", "line 7, field 'ts': 2026-11-27T09:14:59+05:30 is earlier than "
                                               "2026-11-27T09:15:00.474354+05:30 at line 6: rows must be sorted by "
                                               "time"),
        (7, "ts", "2026-11-27T09:15:01", "line 7, field 'ts': '2026-11-27T09:15:01' has no zone: add +05:30 (IST) "
                                         "or Z (UTC)"),
        (7, "ts", "27/11/2026 09:15", "line 7, field 'ts': '27/11/2026 09:15' is not an ISO-8601 time "
                                      "(e.g. 2026-11-27T09:15:00+05:30)"),
        (8, "tradingsymbol", "NIFTY26DEC99000CE", "line 8, field 'tradingsymbol': 'NIFTY26DEC99000CE' is not in "
                                                  "the instrument master"),
        (8, "last_price", "0", "line 8, field 'last_price': 0.00 is not a positive price"),
        (8, "last_price", "-12.50", "line 8, field 'last_price': -12.50 is not a positive price"),
        (8, "last_price", "", "line 8, field 'last_price': is empty (a price in rupees is required)"),
        (8, "last_price", "abc", "line 8, field 'last_price': 'abc' is not a price in rupees"),
        (8, "bid", "-1", "line 8, field 'bid': -1.00 is negative"),
        (8, "bid", "500", "line 8, field 'bid': crossed book: bid 500.00 is above ask "),
        (8, "last_price", "120.03", "line 8, field 'last_price': 120.03 is not a multiple of NIFTY26DEC26000CE's "
                                    "tick size 0.05"),
        (8, "ask", "130.12", "line 8, field 'ask': 130.12 is not a multiple of NIFTY26DEC26000CE's tick size 0.05"),
        (8, "volume", "1.5", "line 8, field 'volume': '1.5' is not a whole number"),
        (8, "oi", "-75", "line 8, field 'oi': '-75' is negative"),
        (8, "tradingsymbol", "", "line 8, field 'instrument_token': is empty and so is tradingsymbol: one of them "
                                 "names the instrument"),
    ],
)
async def test_a_malformed_row_names_file_row_and_field(tmp_path: Path, line: int, column: str, value: str,
                                                        message: str) -> None:
    data = broken(tmp_path, line, column, value)
    with pytest.raises(ReplayDataError) as error:
        await replay(data)
    assert str(error.value).startswith(f"{data / 'ticks.csv'} {message}")
    assert error.value.file == str(data / "ticks.csv") and error.value.field == (
        "instrument_token" if column == "tradingsymbol" and not value else column)


async def test_an_unknown_token_in_parquet_names_its_row(tmp_path: Path) -> None:
    data = day_dir(tmp_path)
    ticks = make_ticks(seconds=100)
    ticks[301] = Tick(ts_ns=ticks[301].ts_ns, instrument_token=999, last_price=10_000)
    write_parquet(data / "ticks.parquet", ticks)
    with pytest.raises(ReplayDataError) as error:
        await replay(data)
    assert str(error.value) == (f"{data / 'ticks.parquet'} row 302, field 'instrument_token': instrument token 999 "
                                "is not in the instrument master")


async def test_a_parquet_time_without_zone_is_refused(tmp_path: Path) -> None:
    data = day_dir(tmp_path)
    pq.write_table(pa.table({"ts": pa.array([OPEN_NS], type=pa.timestamp("ns")), "instrument_token": [SPOT_TOKEN],
                             "last_price": [26_000.0]}), data / "ticks.parquet")
    with pytest.raises(ReplayDataError) as error:
        await replay(data)
    assert str(error.value) == (f"{data / 'ticks.parquet'} schema, field 'ts': timestamp[ns] has no time zone: "
                                "store it as timestamp with tz (UTC or Asia/Kolkata)")


async def test_a_per_instrument_file_with_an_unknown_name(tmp_path: Path) -> None:
    data = day_dir(tmp_path)
    write_csv(data / "BANKNIFTY26DEC60000CE_2026-11-27.csv", make_ticks(seconds=1)[1:2], per_instrument=True)
    with pytest.raises(ReplayDataError) as error:
        await replay(data)
    assert str(error.value) == (f"{data / 'BANKNIFTY26DEC60000CE_2026-11-27.csv'} file name, field 'tradingsymbol': "
                                "no instrument column, and the name 'BANKNIFTY26DEC60000CE' is not in the "
                                "instrument master")


async def test_setup_errors_say_what_is_missing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReplaySetupError, match=r"no tick files \(\*\.csv, \*\.parquet\) or candle files"):
        ReplayMarket(SimClock(OPEN_NS), CALENDAR, ReplayConfig(data=empty))
    write_csv(empty / "ticks.csv", make_ticks(seconds=1))
    market = ReplayMarket(SimClock(OPEN_NS), CALENDAR, ReplayConfig(data=empty))
    with pytest.raises(ReplaySetupError, match="no instrument dump: give the Kite instrument CSV"):
        await market.start(InstrumentMaster())
    bad_dump = tmp_path / "dump.csv"
    bad_dump.write_text(dump_text().replace(",0.05,75,CE", ",0.05,x,CE", 1))
    with pytest.raises(ReplaySetupError) as error:
        load_master([bad_dump])
    assert str(error.value) == f"{bad_dump}: Kite instrument dump line 2: column 'lot_size': 'x' is not an integer"


# --- gaps -------------------------------------------------------------------------------------------------------


async def test_gaps_during_market_hours_are_counted_not_fatal(tmp_path: Path) -> None:
    data = day_dir(tmp_path)
    ticks = make_ticks(seconds=30)
    spot = [t for t in ticks if t.instrument_token == SPOT_TOKEN]
    late = [Tick(ts_ns=t.ts_ns + 180 * 1_000_000_000, instrument_token=SPOT_TOKEN, last_price=t.last_price,
                 exchange_ts_ns=t.ts_ns + 180 * 1_000_000_000) for t in spot[:3]]  # 3 minutes later: one gap
    write_csv(data / "ticks.csv", spot + late)
    batches, market, _ = await replay(data, gap_ns=60 * 1_000_000_000, model_options=False)
    assert len(flat(batches)) == 33
    assert market.gaps.count == 1
    gap = market.gaps.examples[0]
    assert (gap.instrument_token, gap.from_ns, gap.to_ns) == (SPOT_TOKEN, spot[-1].ts_ns, late[0].ts_ns)


def test_gap_counter_ignores_nights_closed_days_and_short_silences() -> None:
    counter = GapCounter(lambda day: CALENDAR.session_bounds(day) if CALENDAR.is_trading_day(day) else None,
                         gap_ns=60 * 1_000_000_000)
    close_ns = CALENDAR.session_bounds(DAY)[1]
    minute = 60 * 1_000_000_000
    for ts in (OPEN_NS, OPEN_NS + minute, OPEN_NS + 3 * minute, close_ns - minute, close_ns + 10 * minute,
               ist_ns(date(2026, 11, 30), datetime(2026, 1, 1, 9, 15).time())):
        counter.observe(Tick(ts_ns=ts, instrument_token=1, last_price=100))
    # 09:16 → 09:18 is a gap; 09:18 → 15:29 is one too (the same session); after the close and overnight are not.
    assert counter.count == 2


# --- pure pieces ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T09:15:00+05:30", OPEN_NS),
        ("2026-11-27T03:45:00Z", OPEN_NS),
        ("2026-11-27 09:15:00.123456789+05:30", OPEN_NS + 123_456_789),
        ("2026-11-27T09:15:00.5+05:30", OPEN_NS + 500_000_000),
        (str(OPEN_NS), OPEN_NS),
    ],
)
def test_timestamps_parse_exactly(text: str, expected: int) -> None:
    assert parse_ts(text) == expected


def test_resolver_accepts_the_exchange_prefix_and_any_case() -> None:
    info = InstrumentInfo(7, 5, "NIFTY26DEC26000CE")
    resolver = InstrumentResolver({7: info}, {"NIFTY26DEC26000CE": info})
    assert resolver.symbol("nfo:nifty26dec26000ce") is info
    assert resolver.token("7") is info
    with pytest.raises(RowError, match="'0' is not an instrument token"):
        resolver.token("0")


def test_fixture_day_is_a_trading_day() -> None:
    assert CALENDAR.is_trading_day(DAY) and CALENDAR.is_trading_day(date(2026, 11, 30))
    assert datetime.fromtimestamp(OPEN_NS // 1_000_000_000, tz=IST).isoformat() == "2026-11-27T09:15:00+05:30"


async def test_the_documented_example_replays(tmp_path: Path) -> None:
    text = (Path(__file__).parent.parent / "docs" / "data.md").read_text()
    example = text.split("```csv\n", 1)[1].split("```", 1)[0]
    data = day_dir(tmp_path)
    (data / "example.csv").write_text(example)
    batches, _, _ = await replay(data)
    ticks = flat(batches)
    assert [len(batch) for batch in batches] == [3, 1]
    assert ticks[1] == Tick(ts_ns=OPEN_NS + 474_354_000, instrument_token=12_345_602, last_price=12_005, volume=225,
                            oi=97_500, bid=11_995, bid_qty=900, ask=12_015, ask_qty=1_275,
                            exchange_ts_ns=OPEN_NS + 474_354_000, tick_id=2)
    assert ticks[0].instrument_token == SPOT_TOKEN and ticks[0].last_price == 2_600_465 and ticks[0].bid == 0


# --- the whole daemon on a replay --------------------------------------------------------------------------------


async def test_a_backtest_app_fed_by_the_replay_sees_the_ticks_it_read(tmp_path: Path) -> None:
    configure_logging("WARNING", io.StringIO())
    data = day_dir(tmp_path)
    ticks = make_ticks(seconds=300)
    write_parquet(data / "ticks.parquet", ticks)
    settings = load_settings({"mode": "backtest", "sim": {"days": 1}, "data_dir": str(tmp_path / "state")})
    app = App(settings, replay=ReplayConfig(data=data))
    seen: list[Tick] = []
    app.bus.tap(lambda event: seen.append(event) if type(event) is Tick else None)
    result = await app.run(install_signal_handlers=False)
    assert bare(seen) == ticks
    assert result.counters["ticks_in"] == len(ticks) and result.counters["ticks_invalid"] == 0
    assert app.replay is not None and app.replay.ticks_read == len(ticks)
    contract = app.instruments.contract("NIFTY26DEC25900PE")
    assert contract is not None and contract.lot_size == 75
    assert app.clock.now_ns() >= ticks[-1].ts_ns


def test_tick_files_replay_in_backtest_mode_only(tmp_path: Path) -> None:
    data = day_dir(tmp_path)
    write_csv(data / "ticks.csv", make_ticks(seconds=1))
    settings = load_settings({"mode": "paper", "data_dir": str(tmp_path / "state")})
    with pytest.raises(ConfigError, match="replay in backtest mode only"):
        App(settings, replay=ReplayConfig(data=data))


async def test_bad_data_stops_the_backtest_with_the_error(tmp_path: Path) -> None:
    configure_logging("WARNING", io.StringIO())
    data = broken(tmp_path, 40, "bid", "500")
    settings = load_settings({"mode": "backtest", "sim": {"days": 1}, "data_dir": str(tmp_path / "state")})
    app = App(settings, replay=ReplayConfig(data=data))
    seen: list[Tick] = []
    app.bus.tap(lambda event: seen.append(event) if type(event) is Tick else None)
    with pytest.raises(ConfigError) as error:
        await app.run(install_signal_handlers=False)
    assert str(error.value).startswith(f"replay error: {data / 'ticks.csv'} line 40, field 'bid': crossed book: "
                                       "bid 500.00 is above ask ")
    assert len(seen) == 35  # the rows before the bad one's timestamp, once each: the feed is not replayed again
    assert app.replay is not None and [t.tick_id for t in seen] == list(range(1, 36))


def test_trader_run_data_replays_a_day_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")  # the daemon's own data dir (./data) apart from the tick files
    data = day_dir(tmp_path)
    write_csv(data / "ticks.csv", make_ticks(seconds=120))
    assert main(["run", "--data", str(data), "--log-format", "json", "--log-level", "INFO"]) == 0
    out = capsys.readouterr().out
    assert '"event":"replay_done"' in out and '"ticks":600' in out
    assert '"count_ticks_in":600' in out
    monday_only = main(["run", "--data", str(data), "--from", "2026-11-30", "--log-format", "json"])
    assert monday_only == EXIT_CONFIG and capsys.readouterr().err.strip() == (
        "replay error: no tick of the data falls on the days selected (from 2026-11-30); the data's ticks are from "
        "2026-11-27 to 2026-11-27 (IST)")  # an empty backtest would read as "no trades"
    (data / "ticks.csv").write_text((data / "ticks.csv").read_text().replace("+05:30", "", 1))
    assert main(["run", "--data", str(data)]) == EXIT_CONFIG
    assert capsys.readouterr().err.strip() == (f"replay error: {data / 'ticks.csv'} line 2, field 'ts': "
                                               f"'{iso(make_ticks(seconds=1)[0].ts_ns)[:-6]}' has no zone: add "
                                               "+05:30 (IST) or Z (UTC)")
    assert main(["run", "--data", str(tmp_path / "nowhere")]) == EXIT_CONFIG
    assert capsys.readouterr().err.strip() == f"replay error: {tmp_path / 'nowhere'}: no such file or directory"


# --- Parquet: the column-wise path and the row path agree --------------------------------------------------------


def parquet_with(path: Path, ticks: Sequence[Tick], **columns: pa.Array) -> None:
    write_parquet(path, ticks)
    table = pq.read_table(path)
    for name, values in columns.items():
        table = table.set_column(table.schema.get_field_index(name), name, values)
    pq.write_table(table, path, row_group_size=128)


@pytest.mark.parametrize(
    ("row", "change", "message"),
    [
        (150, {"ts": OPEN_NS - 1_000_000_000}, "row 150, field 'ts': 2026-11-27T09:14:59+05:30 is earlier than "
                         "2026-11-27T09:15:29.051977+05:30 at row 149: rows must be sorted by time"),
        (129, {"ts": OPEN_NS - 1_000_000_000}, "row 129, field 'ts': 2026-11-27T09:14:59+05:30 is earlier than "
                         "2026-11-27T09:15:25.738943+05:30 at row 128: rows must be sorted by time"),  # batch edge
        (200, {"last_price": 120.03}, "row 200, field 'last_price': 120.03 is not a multiple of NIFTY26DEC25900PE's "
                                      "tick size 0.05"),
        (150, {"ts": 0}, "row 150, field 'ts': 0 is not between 2000-01-01 and 2100-01-01 UTC"),
        (200, {"last_price": float("nan")}, "row 200, field 'last_price': nan is not a price in rupees"),
        (200, {"last_price": -1.0}, "row 200, field 'last_price': -1.00 is not a positive price"),
        (200, {"last_price": None}, "row 200, field 'last_price': is empty (a price in rupees is required)"),
        (200, {"bid": 999.0}, "row 200, field 'bid': crossed book: bid 999.00 is above ask "),
        (200, {"oi": -1}, "row 200, field 'oi': -1 is negative"),
        (200, {"instrument_token": 7}, "row 200, field 'instrument_token': instrument token 7 is not in the "
                                       "instrument master"),
    ],
)
async def test_parquet_errors_are_the_row_paths(tmp_path: Path, row: int, change: dict[str, object],
                                                message: str) -> None:
    data = day_dir(tmp_path)
    ticks = make_ticks(seconds=60)
    table = pq.read_table(_written(data / "ticks.parquet", ticks))
    columns = {}
    for name, value in change.items():
        original = table.column(name)
        values = (original.cast(pa.int64()) if name == "ts" else original).to_pylist()
        values[row - 1] = value
        columns[name] = pa.array(values, type=pa.int64() if name in ("ts", "oi", "instrument_token") else None)
    if "ts" in columns:
        columns["ts"] = columns["ts"].cast(pa.timestamp("ns", tz="UTC"))
    parquet_with(data / "ticks.parquet", ticks, **columns)
    with pytest.raises(ReplayDataError) as error:
        await replay(data, batch_rows=64)
    assert str(error.value).startswith(f"{data / 'ticks.parquet'} {message}")


def _written(path: Path, ticks: Sequence[Tick]) -> Path:
    write_parquet(path, ticks)
    return path


@pytest.mark.parametrize("kind", ["decimal", "text", "int-rupees", "symbols", "float32-qty"])
async def test_parquet_column_types_the_fast_path_leaves_to_rows_give_the_same_ticks(tmp_path: Path,
                                                                                   kind: str) -> None:
    data = day_dir(tmp_path)
    ticks = make_ticks(seconds=50)
    if kind == "int-rupees":  # whole rupees as integers
        ticks = [Tick(ts_ns=t.ts_ns, instrument_token=t.instrument_token, last_price=t.last_price // 100 * 100,
                      exchange_ts_ns=t.ts_ns) for t in ticks]
    prices = [t.last_price for t in ticks]
    column: dict[str, pa.Array] = {}
    if kind == "decimal":
        column["last_price"] = pa.array([rupee_text(p) for p in prices]).cast(pa.decimal128(12, 2))
    elif kind == "text":
        column["last_price"] = pa.array([rupee_text(p) for p in prices])
    elif kind == "int-rupees":
        column["last_price"] = pa.array([p // 100 for p in prices], type=pa.int64())
    elif kind == "float32-qty":
        column["volume"] = pa.array([float(t.volume) for t in ticks], type=pa.float32())
    parquet_with(data / "ticks.parquet", ticks, **column)
    if kind == "symbols":
        table = pq.read_table(data / "ticks.parquet")
        table = table.drop_columns(["instrument_token"]).append_column(
            "tradingsymbol", pa.array([SYMBOL[t.instrument_token] for t in ticks]).dictionary_encode())
        pq.write_table(table, data / "ticks.parquet")
    batches, _, _ = await replay(data, batch_rows=64)
    assert bare(flat(batches)) == ticks


async def test_a_clean_parquet_file_is_decoded_column_wise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = day_dir(tmp_path)
    ticks = make_ticks(seconds=60)
    write_parquet(data / "ticks.parquet", ticks)
    row_path_calls = 0
    row_path = FileChecker.tick

    def counted(self: FileChecker, where: str, row: Mapping[str, Cell]) -> Tick:
        nonlocal row_path_calls
        row_path_calls += 1
        return row_path(self, where, row)

    monkeypatch.setattr(FileChecker, "tick", counted)
    batches, _, _ = await replay(data, batch_rows=64)
    assert bare(flat(batches)) == ticks and row_path_calls == 0
    parquet_with(data / "ticks.parquet", ticks, bid=pa.array(
        [999.0 if i == 71 else (t.bid / 100 or None) for i, t in enumerate(ticks)]))
    with pytest.raises(ReplayDataError, match="row 72, field 'bid': crossed book"):
        await replay(data, batch_rows=64)
    assert row_path_calls == 8  # only the bad batch (rows 65-128) went row by row: 65-71 passed, 72 raised


# --- converters ----------------------------------------------------------------------------------------------------


async def test_a_vendor_csv_with_naive_date_and_time_columns_converts(tmp_path: Path) -> None:
    data = day_dir(tmp_path)
    ticks = [t for t in make_ticks(seconds=30) if t.instrument_token != SPOT_TOKEN]
    ticks = [Tick(ts_ns=t.ts_ns - t.ts_ns % 1_000_000_000, instrument_token=t.instrument_token,
                  last_price=t.last_price, volume=t.volume, oi=t.oi, bid=t.bid, bid_qty=t.bid_qty, ask=t.ask,
                  ask_qty=t.ask_qty, exchange_ts_ns=t.ts_ns - t.ts_ns % 1_000_000_000) for t in ticks]
    vendor = tmp_path / "vendor.csv"
    with vendor.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Ticker", "Date", "Time", "LTP", "BuyPrice", "BuyQty", "SellPrice", "SellQty", "Volume",
                         "OpenInterest"])
        for t in ticks:
            moment = datetime.fromtimestamp(t.ts_ns // 1_000_000_000, tz=IST)
            writer.writerow([SYMBOL[t.instrument_token], moment.strftime("%d/%m/%Y"), moment.strftime("%H:%M:%S"),
                             rupee_text(t.last_price), rupee_text(t.bid), t.bid_qty, rupee_text(t.ask), t.ask_qty,
                             t.volume, t.oi])
    layout = CsvLayout(columns={"tradingsymbol": "Ticker", "last_price": "LTP", "bid": "BuyPrice",
                                "bid_qty": "BuyQty", "ask": "SellPrice", "ask_qty": "SellQty", "volume": "Volume",
                                "oi": "OpenInterest"},
                       date_column="Date", time_column="Time", time_format="%d/%m/%Y %H:%M:%S")
    assert convert_csv(vendor, data / "ticks.csv", layout) == len(ticks)
    batches, _, _ = await replay(data)
    assert bare(flat(batches)) == ticks
    with pytest.raises(ConvertError, match=r"vendor.csv line 1: missing column\(s\) Strike"):
        convert_csv(vendor, tmp_path / "out.csv", CsvLayout(columns={"last_price": "Strike"}, time_column="Time"))
    bad = CsvLayout(columns=layout.columns, date_column="Date", time_column="Time", time_format="%Y-%m-%d %H:%M")
    with pytest.raises(ConvertError, match=r"vendor.csv line 2: '27/11/2026 09:15:00' does not read as a time "
                                           r"\(%Y-%m-%d %H:%M\)"):
        convert_csv(vendor, tmp_path / "out.csv", bad)


async def test_kite_websocket_ticks_as_json_lines_convert(tmp_path: Path) -> None:
    data = day_dir(tmp_path)
    ticks = [t for t in make_ticks(seconds=20) if t.instrument_token != SPOT_TOKEN]
    lines = []
    for t in ticks:
        stamp = datetime.fromtimestamp(t.ts_ns // 1_000_000_000, tz=IST).replace(tzinfo=None)
        lines.append({"instrument_token": t.instrument_token, "last_price": t.last_price / 100,
                      "volume_traded": t.volume, "oi": t.oi, "exchange_timestamp": stamp,
                      "depth": {"buy": [{"price": t.bid / 100, "quantity": t.bid_qty, "orders": 3},
                                        {"price": 0.0, "quantity": 0, "orders": 0}],
                                "sell": [{"price": t.ask / 100, "quantity": t.ask_qty, "orders": 2}]}})
    lines.append({"instrument_token": SPOT_TOKEN, "last_price": 26_010.35, "exchange_timestamp": lines[-1][
        "exchange_timestamp"], "depth": {"buy": [{"price": 0.0, "quantity": 0}], "sell": []}})
    source = tmp_path / "kite.jsonl"
    source.write_text(kite_tick_lines(lines))
    assert convert_kite_ticks(source, data / "ticks.csv") == len(lines)
    batches, _, _ = await replay(data)
    got = bare(flat(batches))
    whole = [Tick(ts_ns=t.ts_ns - t.ts_ns % 1_000_000_000, instrument_token=t.instrument_token,
                  last_price=t.last_price, volume=t.volume, oi=t.oi, bid=t.bid, bid_qty=t.bid_qty, ask=t.ask,
                  ask_qty=t.ask_qty, exchange_ts_ns=t.ts_ns - t.ts_ns % 1_000_000_000) for t in ticks]
    assert got[:-1] == whole
    assert (got[-1].instrument_token, got[-1].last_price, got[-1].bid, got[-1].ask) == (SPOT_TOKEN, 2_601_035, 0, 0)
    source.write_text('{"instrument_token": 1}\n')
    with pytest.raises(ConvertError, match=r"kite.jsonl line 1: not a Kite tick \(KeyError: 'timestamp'\)"):
        convert_kite_ticks(source, tmp_path / "out.csv")


async def test_index_values_are_not_held_to_a_tick_grid(tmp_path: Path) -> None:
    data = day_dir(tmp_path)
    ticks = make_ticks(seconds=3)
    ticks[0] = Tick(ts_ns=ticks[0].ts_ns, instrument_token=SPOT_TOKEN, last_price=2_600_013,
                    exchange_ts_ns=ticks[0].ts_ns)
    write_csv(data / "ticks.csv", ticks)
    batches, _, _ = await replay(data)
    assert bare(flat(batches)) == ticks
