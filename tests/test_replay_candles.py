"""Kite historical candles replayed as bars (the documented intrabar path), their checks, and index-only history
whose options are modelled from the index with the built-in chain model.

Fixtures are generated here, except tests/fixtures/kite/historical_oi.json (Kite's mock response, MIT; see the
README there).
"""

from __future__ import annotations

import io
import json
import math
import re
import shutil
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pytest

from trader.adapters.replay.candles import BAR_PATH, Candle, intrabar_path, offsets, parse_candle
from trader.adapters.replay.checks import ReplayDataError
from trader.adapters.replay.market import ReplayMarket
from trader.adapters.replay.modelled import DEFAULT_IV, DEFAULT_RATE
from trader.adapters.replay.sources import ReplayConfig, ReplaySetupError, first_tick_ns
from trader.adapters.synthetic import years_to
from trader.app import App
from trader.backtest import backtest
from trader.clock import SimClock
from trader.config import ConfigError, load_settings
from trader.events import Fill, IntentPurpose, Side, Tick
from trader.logging import configure_logging
from trader.market.calendar import IST, MarketCalendar, ist_ns
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import FALLBACK_UNDERLYINGS, OptionContract, OptionType
from trader.market.pricing import OptionKind, black_scholes_price
from trader.runs.model import DataSource
from trader.runs.store import load_run

FIXTURES = Path(__file__).parent / "fixtures" / "kite"
CALENDAR = MarketCalendar()
DAY = date(2026, 11, 27)  # a Friday, a trading day
SPOT_TOKEN = 256265
S = 1_000_000_000
KITE_HEADER = ("instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,"
               "instrument_type,segment,exchange")


@pytest.fixture(autouse=True)
def quiet_logs() -> None:
    configure_logging("WARNING", io.StringIO())


def at(hour: int, minute: int, second: int = 0, day: date = DAY) -> int:
    return ist_ns(day, time(hour, minute, second))


def kite_ts(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / S, tz=IST).strftime("%Y-%m-%dT%H:%M:%S%z")  # 2026-11-27T09:15:00+0530


def write_candles(path: Path, rows: Sequence[Sequence[Any]], *, envelope: bool = True) -> Path:
    body: Any = {"status": "success", "data": {"candles": list(rows)}} if envelope else list(rows)
    path.write_text(json.dumps(body))
    return path


async def replay(data: Path, **config: Any) -> tuple[list[Tick], ReplayMarket, InstrumentMaster]:
    clock = SimClock(at(8, 0))
    market = ReplayMarket(clock, CALENDAR, ReplayConfig(data=data, **config))
    master = InstrumentMaster()
    await market.start(master)
    ticks = [tick async for batch in market.stream() for tick in batch]
    if market.failure is not None:
        raise market.failure
    return ticks, market, master


# --- the intrabar path -----------------------------------------------------------------------------------------


async def test_candles_of_each_direction_follow_the_documented_path(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    up = [kite_ts(at(9, 15)), 26000.5, 26040, 25990.25, 26030, 1001, 500]  # close >= open: O H L C
    down = [kite_ts(at(9, 16)), 26030, 26050, 25980, 25990, 400, 520]  # close < open: O L H C
    flat = [kite_ts(at(9, 17)), 25990, 25995, 25985, 25990, 3, 520]  # close == open counts as up
    write_candles(data / "NIFTY 50_2026-11-27.json", [up, down, flat])
    ticks, market, _ = await replay(data, model_options=False)
    assert [t.last_price for t in ticks] == [2_600_050, 2_604_000, 2_599_025, 2_603_000,
                                             2_603_000, 2_598_000, 2_605_000, 2_599_000,
                                             2_599_000, 2_599_500, 2_598_500, 2_599_000]
    starts = (at(9, 15), at(9, 16), at(9, 17))
    assert [t.ts_ns for t in ticks] == [start + offset for start in starts for offset in (0, 15 * S, 30 * S, 59 * S)]
    assert all(t.instrument_token == SPOT_TOKEN for t in ticks)
    # volume in quarters (remainder on the close), cumulative over the day; OI on every tick
    assert [t.volume for t in ticks] == [250, 500, 750, 1001, 1101, 1201, 1301, 1401, 1401, 1401, 1401, 1404]
    assert [t.oi for t in ticks] == [500] * 4 + [520] * 8
    assert market.has_candles and not market.gaps.count
    source = market.data_source(_base(data))
    assert source.kind == "candles" and source.bar_path == BAR_PATH and not source.modelled_options


def _base(data: Path) -> DataSource:
    return DataSource("ticks", path=str(data))


def test_the_path_and_the_offsets_are_pure() -> None:
    up = Candle(0, open=100, high=130, low=90, close=120, volume=0, oi=0)
    down = Candle(0, open=100, high=130, low=90, close=95, volume=0, oi=0)
    assert intrabar_path(up) == (100, 130, 90, 120)
    assert intrabar_path(down) == (100, 90, 130, 95)
    assert offsets(60 * S) == (0, 15 * S, 30 * S, 59 * S)
    assert offsets(300 * S) == (0, 75 * S, 150 * S, 299 * S)


async def test_day_candles_spread_over_the_session(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    midnight = ist_ns(DAY, time(0, 0))
    write_candles(data / "256265.json", [[kite_ts(midnight), 26000, 26100, 25900, 25950, 8, 0]])
    ticks, _, _ = await replay(data, model_options=False)
    assert [t.last_price for t in ticks] == [2_600_000, 2_590_000, 2_610_000, 2_595_000]
    open_ns, close_ns = CALENDAR.session_bounds(DAY)  # the day's F&O session (09:15 to its close that day)
    span = close_ns - open_ns
    assert [t.ts_ns for t in ticks] == [open_ns, open_ns + span // 4, open_ns + span // 2, close_ns - S]
    assert [t.volume for t in ticks] == [2, 4, 6, 8]


async def test_kites_own_historical_response_replays(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(FIXTURES / "historical_oi.json", data / "256265_2019-12-04.json")
    ticks, _, _ = await replay(data, model_options=False)
    assert len(ticks) == 24
    first = ticks[:4]  # [09:15, 12009.9, 12019.35, 12001.25, 12001.5, 163275, 13667775]: a down candle
    assert [t.last_price for t in first] == [1_200_990, 1_200_125, 1_201_935, 1_200_150]
    assert first[0].ts_ns == ist_ns(date(2019, 12, 4), time(9, 15))
    assert first[-1].volume == 163275 and {t.oi for t in first} == {13667775}
    assert ticks[-1].volume == 163275 + 105750 + 48450 + 52875 + 52200 + 65325


# --- what is refused --------------------------------------------------------------------------------------------

GOOD = [kite_ts(at(9, 15)), 26000, 26040, 25990, 26030, 100, 0]


@pytest.mark.parametrize(("row", "field", "words"), [
    ([GOOD[0], 26000, 25980, 25990, 25985, 1, 0], "high", "25980.00 is below the low 25990.00"),
    ([GOOD[0], 26050, 26040, 25990, 26030, 1, 0], "open", "26050.00 is outside the candle's range"),
    ([GOOD[0], 26000, 26040, 25990, 25900, 1, 0], "close", "25900.00 is outside the candle's range"),
    ([GOOD[0], 0, 26040, 0, 26030, 1, 0], "open", "0.00 is not a positive price"),
    ([GOOD[0], 26000, 26040, -5, 26030, 1, 0], "low", "-5.00 is not a positive price"),
    ([GOOD[0], "x", 26040, 25990, 26030, 1, 0], "open", "'x' is not a price in rupees"),
    (["2026-11-27T09:16:00", 26000, 26040, 25990, 26030, 1, 0], "ts", "has no zone"),
    (["yesterday", 26000, 26040, 25990, 26030, 1, 0], "ts", "is not an ISO-8601 time"),
    ([1234, 26000, 26040, 25990, 26030, 1, 0], "ts", "1234 is not a time"),
    ([GOOD[0], 26000, 26040, 25990, 26030, -1, 0], "volume", "is negative"),
    ([GOOD[0], 26000, 26040, 25990, 26030], "candles", "is not a candle"),
    ([kite_ts(at(9, 14)), 26000, 26040, 25990, 26030, 1, 0], "ts", "is not after the candle before"),
])
async def test_a_malformed_candle_names_file_candle_and_field(tmp_path: Path, row: list[Any], field: str,
                                                                words: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    path = write_candles(data / "NIFTY 50.json", [GOOD, row])
    with pytest.raises(ReplayDataError) as error:
        await replay(data, model_options=False)
    assert str(error.value).startswith(f"{path} candle 2, field {field!r}: ")
    assert words in str(error.value)


async def test_an_option_candle_off_its_tick_grid_and_a_file_that_is_not_candles(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "instruments.csv").write_text(dump_text([26000]))
    symbol = chain_contracts([26000])[0].tradingsymbol
    path = write_candles(data / f"{symbol}.json", [[GOOD[0], 120.02, 121, 119, 120, 75, 0]])
    with pytest.raises(ReplayDataError, match=rf"^{path} candle 1, field 'open': 120.02 is not a multiple of "):
        await replay(data)
    path.write_text('{"status": "success", "data": {"rows": []}}')
    with pytest.raises(ReplayDataError, match=rf"^{path} file, field 'candles': no candle list"):
        await replay(data)
    path.write_text('{"data": [')
    with pytest.raises(ReplayDataError, match=rf"^{path} line 1, field 'candles': not JSON"):
        await replay(data)


def test_parse_candle_reads_kites_offset_without_a_colon_exactly() -> None:
    candle = parse_candle(["2019-12-04T09:15:00+0530", 12009.9, 12019.35, 12001.25, 12001.5, 163275, 13667775])
    assert candle.ts_ns == ist_ns(date(2019, 12, 4), time(9, 15))
    assert (candle.open, candle.high, candle.low, candle.close) == (1_200_990, 1_201_935, 1_200_125, 1_200_150)


# --- index-only history: options modelled from the index ------------------------------------------------------

NIFTY = FALLBACK_UNDERLYINGS["NIFTY"]
EXPIRY = CALENDAR.next_expiry("NIFTY", at(9, 15))


def chain_contracts(strikes: Sequence[int]) -> list[OptionContract]:
    monthly = EXPIRY == CALENDAR.monthly_expiry("NIFTY", EXPIRY.year, EXPIRY.month)
    out = []
    for i, strike in enumerate(strikes):
        for j, kind in enumerate((OptionType.CE, OptionType.PE)):
            token = (5_000 + 2 * i + j) << 8 | 2
            out.append(OptionContract.build(NIFTY, EXPIRY, strike * 100, kind, monthly=monthly,
                                            instrument_token=token, calendar=CALENDAR))
    return out


def dump_text(strikes: Sequence[int], lot: int = 65) -> str:
    rows = [KITE_HEADER]
    for c in chain_contracts(strikes):
        rows.append(f"{c.instrument_token},{c.instrument_token >> 8},{c.tradingsymbol},NIFTY,0,{c.expiry},"
                    f"{c.strike // 100},0.05,{lot},{c.option_type.value},NFO-OPT,NFO")
    return "\n".join(rows) + "\n"


def breakout_day() -> list[list[Any]]:
    """Minute candles of NIFTY 50: a quiet 15-minute range around 26,000, then a steady climb to ~26,260 by noon."""
    rows: list[list[Any]] = []
    level = 26000.0
    for minute in range(0, 6 * 60 + 15):
        ts = at(9, 15) + minute * 60 * S
        if minute < 15:
            o, c = (26000.0, 26010.0) if minute % 2 else (26010.0, 26000.0)
        elif minute < 165:
            o, c = level, level + 1.75
        else:
            o, c = level, level + (0.5 if minute % 2 else -0.5)
        level = c
        high, low = max(o, c) + 2, min(o, c) - 2
        rows.append([kite_ts(ts), round(o, 2), round(high, 2), round(low, 2), round(c, 2), 1000, 0])
    return rows


def modelled_fair(contract: OptionContract, spot_paise: int, ts_ns: int) -> float:
    """The option's fair value in paise, straight from trader.market.pricing at the flat IV (not through the model)."""
    kind = OptionKind.CALL if contract.option_type is OptionType.CE else OptionKind.PUT
    _, close = CALENDAR.session_bounds(contract.expiry)
    return 100 * black_scholes_price(kind, spot_paise / 100, contract.strike / 100, years_to(close, ts_ns),
                                     DEFAULT_RATE, DEFAULT_IV)


@pytest.mark.parametrize("with_dump", [True, False])
async def test_an_index_only_day_trades_the_orb_on_modelled_option_prices(tmp_path: Path, with_dump: bool) -> None:
    data = tmp_path / "data"
    data.mkdir()
    if with_dump:
        (data / "instruments.csv").write_text(dump_text(range(25500, 26551, 50)))
    write_candles(data / "NIFTY 50_2026-11-27.json", breakout_day())
    settings = load_settings({
        "mode": "backtest", "strategies": ["opening_range_breakout"], "sim": {"days": 1},
        "risk": {"max_risk_per_trade_pct": 0.03}, "paper": {"slippage_ticks": 0},
        "data_dir": str(tmp_path / "state"),
    })
    seen: list[Tick] = []
    fills: list[Fill] = []
    outcome_app: list[App] = []

    original = App.__init__

    def keep(self: App, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.bus.tap(lambda e: seen.append(e) if type(e) is Tick else fills.append(e) if type(e) is Fill else None)
        outcome_app.append(self)

    mp = pytest.MonkeyPatch()
    mp.setattr(App, "__init__", keep)
    try:
        outcome = await backtest(settings, ReplayConfig(data=data), progress=False)
    finally:
        mp.undo()
    source = outcome.data_source
    assert source.kind == "index_only" and source.modelled_options
    assert f"IV {DEFAULT_IV:.1%} flat" in source.model_note and "spread" in source.model_note
    assert ("chain from the instrument dump" if with_dump else "derived") in source.model_note
    assert outcome_app[0].data_source == source
    # The run folder says so too, and `trader run --data` (an App given no data source) labels the data the same way.
    assert outcome.run_dir is not None and load_run(outcome.run_dir).manifest.data == source
    assert App(settings, replay=ReplayConfig(data=data)).data_source == source
    entries = [f for f in fills if f.purpose is IntentPurpose.ENTRY]
    assert entries, "the breakout is traded"
    assert entries[0].contract.option_type is OptionType.CE  # the break is upwards
    assert sum(f.quantity for f in entries) == sum(f.quantity for f in fills if f.purpose is IntentPurpose.EXIT)
    spot_at: dict[int, int] = {}
    last_quote: dict[int, Tick] = {}
    by_ts: dict[tuple[int, int], Tick] = {}
    for tick in seen:
        if tick.instrument_token == SPOT_TOKEN:
            spot_at[tick.ts_ns] = tick.last_price
        else:
            by_ts[tick.instrument_token, tick.ts_ns] = tick
    for fill in fills:
        quotes = [t for (token, ts), t in by_ts.items() if token == fill.contract.instrument_token and ts <= fill.ts_ns]
        quote = max(quotes, key=lambda t: t.ts_ns)
        last_quote[fill.contract.instrument_token] = quote
        # the fill is at the modelled touch (paper broker, no slippage) ...
        assert fill.price == (quote.ask if fill.side is Side.BUY else quote.bid)
        # ... and the modelled quote is Black-Scholes on the index at that moment, at the flat IV, on the tick grid
        fair = modelled_fair(fill.contract, spot_at[quote.ts_ns], quote.ts_ns)
        assert abs(quote.last_price - fair) <= 2.5 + 1e-6, (quote, fair)
        assert quote.bid < quote.last_price < quote.ask and quote.last_price % 5 == 0
    if with_dump:
        tokens = {c.instrument_token for c in chain_contracts(range(25500, 26551, 50))}
        assert {f.contract.instrument_token for f in fills} <= tokens  # the dump's contracts, its lot
        assert all(f.quantity % 65 == 0 for f in fills)
    assert not math.isnan(outcome.result.summary.win_rate)


async def test_option_rows_in_the_data_are_replayed_not_modelled(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "instruments.csv").write_text(dump_text([26000]))
    write_candles(data / "NIFTY 50.json", breakout_day()[:3])
    write_candles(data / f"{chain_contracts([26000])[0].tradingsymbol}.json", [[GOOD[0], 120, 121, 119, 120.5, 75, 0]])
    ticks, market, _ = await replay(data)
    assert market.model is None and len(ticks) == 16


async def test_index_only_without_a_dump_needs_only_the_index_options_need_the_dump(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_candles(data / "NIFTY 50.json", breakout_day()[:2])
    ticks, market, master = await replay(data)
    assert market.model is not None and market.model.derive
    options = [t for t in ticks if t.instrument_token != SPOT_TOKEN]
    assert options and {master.by_token(t.instrument_token).expiry for t in options} == {EXPIRY}  # type: ignore[union-attr]
    write_candles(data / "NIFTY26DEC26000CE.json", [[GOOD[0], 120, 121, 119, 120.5, 75, 0]])
    with pytest.raises(ValueError, match="no instrument dump"):
        await replay(data)
    settings = load_settings({"mode": "backtest", "sim": {"days": 1}, "data_dir": str(tmp_path / "state")})
    with pytest.raises(ConfigError, match="replay error: no instrument dump"):
        await backtest(settings, ReplayConfig(data=data), progress=False)


async def test_index_only_with_a_dump_of_another_period_stops_with_an_error(tmp_path: Path) -> None:
    """review2: the dump's NIFTY expiries all ended before the data's day: no option was ever modelled, and the
    backtest ran to a "complete" end with no trade and no word of why."""
    data = tmp_path / "data"
    data.mkdir()
    stale = dump_text(range(25900, 26101, 50)).replace(f",{EXPIRY},", ",2026-10-27,")
    assert ",2026-10-27," in stale
    (data / "instruments.csv").write_text(stale)
    write_candles(data / "NIFTY 50_2026-11-27.json", breakout_day()[:3])
    with pytest.raises(ValueError, match=r"NIFTY.*2026-10-27.*2026-11-27"):
        await replay(data)
    settings = load_settings({"mode": "backtest", "sim": {"days": 1}, "data_dir": str(tmp_path / "state")})
    with pytest.raises(ConfigError, match=r"replay error:.*instrument dump"):
        await backtest(settings, ReplayConfig(data=data), progress=False)


@pytest.mark.parametrize(("raw", "field"), [
    (b'\xff\xfe[["2026-11-27T09:15:00+0530", 1, 2, 1, 2, 0]]', "candles"),  # not UTF-8 (a UTF-16 export)
    (b"[" * 100_000 + b"]" * 100_000, "candles"),  # nested past the parser's recursion limit
    (b'[["99999999999999999999999", 1, 2, 1, 2, 0]]', "ts"),  # past int64 nanoseconds
    (b'[["9999-12-31T23:59:59+0530", 1, 2, 1, 2, 0]]', "ts"),
])
async def test_a_hostile_candle_file_names_the_file(tmp_path: Path, raw: bytes, field: str) -> None:
    """review2: these raised a bare UnicodeDecodeError / RecursionError / "year 3170843 is out of range" that named
    no file (the last two: nanoseconds past int64, which no table can hold)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "NIFTY 50.json").write_bytes(raw)
    with pytest.raises(ReplayDataError) as error:
        await replay(data)
    assert error.value.file.endswith("NIFTY 50.json") and error.value.field == field


@pytest.mark.parametrize("damage", ["truncated", "seconds_past_2262"])
async def test_an_unreadable_parquet_file_is_named_in_the_error(tmp_path: Path, damage: str) -> None:
    """review2: "Parquet magic bytes not found in footer" or "Casting from timestamp[s] ... out of bounds" ended the
    replay without saying which of the files it was."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    data = tmp_path / "data"
    data.mkdir()
    times = [datetime(2026, 11, 27, 3, 45, tzinfo=UTC), datetime(3000, 1, 1, tzinfo=UTC)]
    path = data / "NIFTY 50.parquet"
    pq.write_table(pa.table({"ts": pa.array(times, type=pa.timestamp("s", tz="UTC")), "last_price": [26000.5, 1.0]}),
                   path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    with pytest.raises((ReplayDataError, ReplaySetupError)) as error:  # a file that cannot be opened: setup
        await replay(data)
    assert str(error.value).startswith(str(path))
    if damage == "truncated":
        with pytest.raises(ReplaySetupError, match=f"^{re.escape(str(path))}: cannot be read"):
            first_tick_ns(ReplayConfig(data=data))  # where trader backtest starts its clock
