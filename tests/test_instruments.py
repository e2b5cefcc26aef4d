"""Option contracts, Kite tradingsymbols, underlying resolution and the instrument master."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trader.market.calendar import MarketCalendar
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import (
    FALLBACK_UNDERLYINGS,
    IndexInstrument,
    OptionContract,
    OptionType,
    UnderlyingSpec,
    resolve_underlying,
)

from helpers import FIXTURES

CALENDAR = MarketCalendar()
KITE_HEADER = (
    "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,"
    "instrument_type,segment,exchange"
)

# --- resolve_underlying ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "name"),
    [
        ("NSE:NIFTY50-INDEX", "NIFTY"),
        ("NSE:NIFTYBANK-INDEX", "BANKNIFTY"),
        ("BSE:SENSEX-INDEX", "SENSEX"),
        ("NSE:FINNIFTY-INDEX", "FINNIFTY"),
        ("NSE:MIDCPNIFTY-INDEX", "MIDCPNIFTY"),
        ("NSE:NIFTY 50", "NIFTY"),
        ("NSE:NIFTY BANK", "BANKNIFTY"),
        ("BSE:SENSEX", "SENSEX"),
        ("NIFTY", "NIFTY"),
        ("BANKNIFTY", "BANKNIFTY"),
        ("SENSEX", "SENSEX"),
        ("  nse:nifty50-index ", "NIFTY"),
        ("nse:Nifty Bank", "BANKNIFTY"),
        ("sensex\n", "SENSEX"),
    ],
)
def test_resolve_underlying_accepts_cli_kite_and_bare_forms(symbol: str, name: str) -> None:
    assert resolve_underlying(symbol) is FALLBACK_UNDERLYINGS[name]


@pytest.mark.parametrize(
    "symbol", ["NSE:NIFTYIT-INDEX", "BSE:NIFTY 50", "NSE:SENSEX", "NIFTY50", "", "NFO:NIFTY"]
)
def test_resolve_underlying_rejects_unknown_forms_listing_the_accepted_ones(symbol: str) -> None:
    with pytest.raises(ValueError, match="unknown underlying") as error:
        resolve_underlying(symbol)
    assert "'NSE:NIFTY50-INDEX'" in str(error.value)
    assert "'NSE:NIFTY 50'" in str(error.value)
    assert "'BANKNIFTY'" in str(error.value)


def test_fallback_table_values() -> None:
    nifty = FALLBACK_UNDERLYINGS["NIFTY"]
    assert (nifty.spot_exchange, nifty.spot_symbol, nifty.spot_token, nifty.fo_exchange) == (
        "NSE", "NIFTY 50", 256265, "NFO")
    assert (nifty.lot_size, nifty.strike_step_paise, nifty.freeze_quantity, nifty.weekly) == (
        65, 5000, 1800, True)
    sizes = {name: (spec.lot_size, spec.freeze_quantity) for name, spec in FALLBACK_UNDERLYINGS.items()}
    assert sizes == {
        "NIFTY": (65, 1800), "BANKNIFTY": (30, 600), "FINNIFTY": (60, 1800), "MIDCPNIFTY": (120, 2800),
        "NIFTYNXT50": (25, 600), "SENSEX": (20, 1000),
    }
    sensex = FALLBACK_UNDERLYINGS["SENSEX"]
    assert (sensex.fo_exchange, sensex.spot_token, sensex.weekly) == ("BFO", 265, True)
    assert FALLBACK_UNDERLYINGS["BANKNIFTY"].spot_token == 260105
    assert all(spec.tick_size_paise == 5 for spec in FALLBACK_UNDERLYINGS.values())
    assert all(name == spec.name for name, spec in FALLBACK_UNDERLYINGS.items())


# --- OptionContract.parse ----------------------------------------------------------------------------------


def test_parse_monthly_symbol_takes_the_expiry_from_the_calendar() -> None:
    contract = OptionContract.parse("NIFTY25DEC24000CE")
    assert contract == OptionContract(
        exchange="NFO", tradingsymbol="NIFTY25DEC24000CE", underlying="NIFTY", expiry=date(2025, 12, 30),
        strike=2_400_000, option_type=OptionType.CE, lot_size=65, tick_size=5,
    )
    assert contract.strike_rupees == 24000.0
    assert contract.is_call


def test_parse_monthly_symbol_on_a_holiday_expiry() -> None:
    contract = OptionContract.parse("NFO:BANKNIFTY26NOV52000PE")
    assert contract.expiry == date(2026, 11, 23)  # last Tuesday 24 Nov 2026 is a holiday
    assert (contract.underlying, contract.lot_size, contract.is_call) == ("BANKNIFTY", 30, False)


def test_parse_weekly_symbol() -> None:
    contract = OptionContract.parse("NIFTY2581425000CE")
    assert (contract.underlying, contract.expiry, contract.strike, contract.option_type) == (
        "NIFTY", date(2025, 8, 14), 2_500_000, OptionType.CE)


def test_parse_weekly_symbol_with_a_letter_month() -> None:
    contract = OptionContract.parse("NIFTY20D1713600CE")
    assert (contract.expiry, contract.strike) == (date(2020, 12, 17), 1_360_000)
    assert OptionContract.parse("NIFTY26N2326000PE").expiry == date(2026, 11, 23)
    assert OptionContract.parse("NIFTY26O2025000PE").expiry == date(2026, 10, 20)


def test_parse_bfo_symbol_with_exchange_prefix() -> None:
    contract = OptionContract.parse("BFO:SENSEX2642379100PE")
    assert contract == OptionContract(
        exchange="BFO", tradingsymbol="SENSEX2642379100PE", underlying="SENSEX", expiry=date(2026, 4, 23),
        strike=7_910_000, option_type=OptionType.PE, lot_size=20, tick_size=5,
    )


@pytest.mark.parametrize(
    ("symbol", "underlying", "expiry", "strike_rupees"),
    [
        ("NIFTYNXT5026JAN70000CE", "NIFTYNXT50", date(2026, 1, 27), 70000),
        ("FINNIFTY26MAR25000PE", "FINNIFTY", date(2026, 3, 30), 25000),
        ("MIDCPNIFTY26JUN13000CE", "MIDCPNIFTY", date(2026, 6, 30), 13000),
        ("BANKNIFTY26MAR50000CE", "BANKNIFTY", date(2026, 3, 30), 50000),
        ("NIFTY26MAR22000PE", "NIFTY", date(2026, 3, 30), 22000),
        ("SENSEX26MAR75000CE", "SENSEX", date(2026, 3, 25), 75000),
    ],
)
def test_parse_anchors_on_the_longest_known_name(symbol: str, underlying: str, expiry: date,
                                                 strike_rupees: int) -> None:
    contract = OptionContract.parse(symbol)
    assert (contract.underlying, contract.expiry) == (underlying, expiry)
    assert contract.strike == strike_rupees * 100


def test_parse_normalises_case_and_whitespace_and_takes_overrides() -> None:
    contract = OptionContract.parse(" nfo:nifty25dec24000ce ", lot_size=75, tick_size=10, instrument_token=42)
    assert (contract.tradingsymbol, contract.lot_size, contract.tick_size, contract.instrument_token) == (
        "NIFTY25DEC24000CE", 75, 10, 42)


def test_parse_uses_the_given_calendar_for_monthlies() -> None:
    closed_on_30_dec = MarketCalendar(extra_holidays=[date(2025, 12, 30)])
    assert OptionContract.parse("NIFTY25DEC24000CE", calendar=closed_on_30_dec).expiry == date(2025, 12, 29)
    # A year without holiday data: the weekday rule alone (last Tuesday), until the year's holidays are added.
    assert OptionContract.parse("NIFTY27JAN24000CE").expiry == date(2027, 1, 26)


@pytest.mark.parametrize(
    ("symbol", "problem"),
    [
        ("RELIANCE25DEC1000CE", "known underlying"),
        ("NIFTYIT25DEC40000CE", "known underlying"),
        ("NIFTYDEC24000CE", "2-digit year"),
        ("", "known underlying"),
        ("NIFTY25XYZ24000CE", "month 'XYZ' is not one of JAN/"),
        ("NIFTY25A1424000CE", "expected a month (JAN-DEC) or a weekly month (1-9, O, N, D), got 'A14'"),
        ("NIFTY25024000CE", "got '024'"),
        ("NIFTY2523024000CE", "day 30 does not exist in 2025-02"),
        ("NIFTY25N3124000CE", "day 31 does not exist in 2025-11"),
        ("NIFTY258A24000CE", "2-digit day after weekly month code '8'"),
        ("NIFTY25DEC24000", "does not end in CE or PE"),
        ("NIFTY25DEC24000XE", "does not end in CE or PE"),
        ("NIFTY25DEC24000C", "does not end in CE or PE"),
        ("NIFTY25DEC24A00CE", "strike '24A00' is not a whole number of rupees"),
        ("NIFTY25DEC24000.5CE", "strike '24000.5' is not a whole number of rupees"),
        ("NIFTY25DECCE", "strike '' is not a whole number"),
        ("NIFTY25DEC024000CE", "strike '024000'"),
        ("NIFTY25DECFUT", "futures symbol, not an option"),
        ("BFO:SENSEX26SEPFUT", "futures symbol, not an option"),
        ("BFO:NIFTY25DEC24000CE", "NIFTY options trade on NFO, not BFO"),
        ("NSE:NIFTY25DEC24000CE", "exchange prefix 'NSE' is not NFO or BFO"),
        ("NIFTY24DEC24000CE", "no expiry rule for NIFTY before 2025-01-01"),
    ],
)
def test_parse_rejects_malformed_symbols_with_a_precise_message(symbol: str, problem: str) -> None:
    with pytest.raises(ValueError) as error:
        OptionContract.parse(symbol)
    message = str(error.value)
    assert repr(symbol) in message
    assert problem in message
    assert "'NIFTY25DEC24000CE' (monthly)" in message


# --- OptionContract validation and build -------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"strike": 0}, "strike must be positive"),
        ({"strike": -2_400_000}, "strike must be positive"),
        ({"lot_size": 0}, "lot_size must be positive"),
        ({"tick_size": 0}, "tick_size must be positive"),
        ({"strike": 2_400_003}, "not a multiple of the tick 5"),
        ({"exchange": "NSE"}, "exchange 'NSE' is not NFO or BFO"),
    ],
)
def test_contract_validation(changes: dict[str, object], problem: str) -> None:
    fields: dict[str, object] = {
        "exchange": "NFO", "tradingsymbol": "NIFTY25DEC24000CE", "underlying": "NIFTY",
        "expiry": date(2025, 12, 30), "strike": 2_400_000, "option_type": OptionType.CE, "lot_size": 65,
        "tick_size": 5,
    }
    with pytest.raises(ValueError, match=problem):
        OptionContract(**(fields | changes))  # type: ignore[arg-type]  # invalid on purpose


def test_build_formats_monthly_and_weekly_symbols() -> None:
    nifty = FALLBACK_UNDERLYINGS["NIFTY"]
    monthly = OptionContract.build(nifty, date(2026, 11, 23), 2_600_000, OptionType.PE, monthly=True)
    weekly = OptionContract.build(nifty, date(2026, 11, 17), 2_600_000, OptionType.CE, monthly=False,
                                  instrument_token=7)
    december_weekly = OptionContract.build(nifty, date(2026, 12, 1), 2_605_000, OptionType.CE, monthly=False)
    sensex = OptionContract.build(FALLBACK_UNDERLYINGS["SENSEX"], date(2026, 4, 23), 7_910_000, OptionType.PE,
                                  monthly=False)
    assert monthly.tradingsymbol == "NIFTY26NOV26000PE"
    assert (weekly.tradingsymbol, weekly.instrument_token) == ("NIFTY26N1726000CE", 7)
    assert december_weekly.tradingsymbol == "NIFTY26D0126050CE"
    assert (sensex.tradingsymbol, sensex.exchange, sensex.lot_size) == ("SENSEX2642379100PE", "BFO", 20)


def test_build_rejects_fractional_strikes_and_wrong_monthly_dates() -> None:
    nifty = FALLBACK_UNDERLYINGS["NIFTY"]
    with pytest.raises(ValueError, match="not a whole rupee"):
        OptionContract.build(nifty, date(2026, 11, 17), 2_600_050, OptionType.CE, monthly=False)
    with pytest.raises(ValueError, match=r"not the NIFTY monthly expiry of Nov 2026 \(2026-11-23\)"):
        OptionContract.build(nifty, date(2026, 11, 24), 2_600_000, OptionType.CE, monthly=True)


@st.composite
def contracts(draw: st.DrawFn) -> tuple[UnderlyingSpec, date, int, OptionType, bool]:
    spec = draw(st.sampled_from(list(FALLBACK_UNDERLYINGS.values())))
    strike_paise = draw(st.integers(min_value=1, max_value=200_000 * 100 // spec.strike_step_paise)) * (
        spec.strike_step_paise)
    option_type = draw(st.sampled_from(OptionType))
    monthly = draw(st.booleans())
    if monthly:
        year, month = draw(st.integers(2025, 2026)), draw(st.integers(1, 12))
        expiry = CALENDAR.monthly_expiry(spec.name, year, month)
    else:  # weekly symbols spell out the date, so any date of the century round-trips
        expiry = draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)))
    return spec, expiry, strike_paise, option_type, monthly


@given(contracts(), st.booleans())
def test_build_then_parse_round_trips(contract_fields: tuple[UnderlyingSpec, date, int, OptionType, bool],
                                      with_exchange_prefix: bool) -> None:
    spec, expiry, strike_paise, option_type, monthly = contract_fields
    built = OptionContract.build(spec, expiry, strike_paise, option_type, monthly=monthly)
    symbol = f"{built.exchange}:{built.tradingsymbol}" if with_exchange_prefix else built.tradingsymbol
    assert OptionContract.parse(symbol) == built


# --- InstrumentMaster ---------------------------------------------------------------------------------------


def test_kite_dump_fixture_keeps_index_options_with_the_dumps_own_values() -> None:
    master = InstrumentMaster.from_kite_csv((FIXTURES / "instruments_all.csv").read_text())
    # The fixture (pykiteconnect's mock dump, 2017-18) has 12 BANKNIFTY options, stock options of ADANIPORTS,
    # INDIACEM and INDIANB, and equities; its option rows leave ``name`` empty.
    assert master.expiries("BANKNIFTY") == [date(2017, 11, 30), date(2017, 12, 28), date(2018, 1, 25)]
    chain = master.option_chain("BANKNIFTY", date(2018, 1, 25))
    assert [(c.strike // 100, c.option_type.value) for c in chain] == [
        (23400, "CE"), (23400, "PE"), (23500, "CE"), (23500, "PE"),
        (23600, "CE"), (23600, "PE"), (23700, "CE"), (23700, "PE"),
    ]
    assert master.contract("BANKNIFTY18JAN23500CE") == OptionContract(
        exchange="NFO", tradingsymbol="BANKNIFTY18JAN23500CE", underlying="BANKNIFTY",
        expiry=date(2018, 1, 25), strike=2_350_000, option_type=OptionType.CE, lot_size=40, tick_size=5,
        instrument_token=12073986,
    )
    assert master.by_token(12073986) is master.contract("BANKNIFTY18JAN23500CE")
    assert master.lot_size("BANKNIFTY") == 40  # the dump's lot, not the fallback 30
    assert len(master.option_chain("BANKNIFTY", date(2017, 12, 28))) == 1
    assert len(master.option_chain("BANKNIFTY", date(2017, 11, 30))) == 3
    # Stock options and equities are skipped.
    assert master.by_token(13693186) is None  # ADANIPORTS17DEC490PE
    assert master.contract("INDIACEM17DEC220PE") is None
    assert master.by_token(3813889) is None  # CENTRALBK-BE
    assert master.index_for("BANKNIFTY") is None


def test_kite_nse_dump_fixture_has_no_options() -> None:
    master = InstrumentMaster.from_kite_csv((FIXTURES / "instruments_nse.csv").read_text())
    assert master.expiries("BANKNIFTY") == []
    assert master.by_token(3813889) is None
    assert master.lot_size("NIFTY") == 65  # nothing listed: the fallback table


def test_nearest_strike_selects_at_the_money() -> None:
    master = InstrumentMaster.from_kite_csv((FIXTURES / "instruments_all.csv").read_text())
    expiry = date(2018, 1, 25)
    atm_call = master.nearest_strike("BANKNIFTY", expiry, 2_356_000, OptionType.CE)
    assert atm_call is not None
    assert atm_call.tradingsymbol == "BANKNIFTY18JAN23600CE"
    atm_put = master.nearest_strike("BANKNIFTY", expiry, 2_344_000, OptionType.PE)
    assert atm_put is not None
    assert atm_put.tradingsymbol == "BANKNIFTY18JAN23400PE"
    halfway = master.nearest_strike("BANKNIFTY", expiry, 2_355_000, OptionType.CE)
    assert halfway is not None
    assert halfway.strike == 2_350_000  # a tie goes to the lower strike
    far_below = master.nearest_strike("BANKNIFTY", expiry, 1_000_000, OptionType.PE)
    assert far_below is not None
    assert far_below.strike == 2_340_000
    assert master.nearest_strike("BANKNIFTY", date(2018, 2, 22), 2_355_000, OptionType.CE) is None
    assert master.nearest_strike("NIFTY", expiry, 2_355_000, OptionType.CE) is None


CURRENT_DUMP = "\n".join([
    KITE_HEADER,
    "256265,1001,NIFTY 50,NIFTY 50,0,,0,0.05,0,EQ,INDICES,NSE",
    "265,1,SENSEX,SENSEX,0,,0,0,0,EQ,INDICES,BSE",
    "257801,1,NIFTY FIN SERVICE,NIFTY FIN SERVICE,0,,,,0,EQ,INDICES,NSE",
    "264969,1,INDIA VIX,INDIA VIX,0,,0,0,0,EQ,INDICES,NSE",
    "13874690,54198,NIFTY26DECFUT,NIFTY,0,2026-12-29,0,0.1,65,FUT,NFO-FUT,NFO",
    "10001,1,NIFTY26D0126000CE,NIFTY,0,2026-12-01,26000,0.05,65,CE,NFO-OPT,NFO",
    "10002,2,NIFTY26D0126000PE,NIFTY,0,2026-12-01,26000,0.05,65,PE,NFO-OPT,NFO",
    "10003,3,NIFTY26D0125950PE,NIFTY,0,2026-12-01,25950,0.05,65,PE,NFO-OPT,NFO",
    "10004,4,NIFTY26N2326000CE,NIFTY,0,2026-11-23,26000,0.05,65,CE,NFO-OPT,NFO",
    "10005,5,NIFTY26DEC26000CE,NIFTY,0,2026-12-29,26000,0.05,65,CE,NFO-OPT,NFO",
    "20001,6,SENSEX26N2685000CE,SENSEX,0,2026-11-26,85000,0.05,20,CE,BFO-OPT,BFO",
    "30001,7,RELIANCE26DEC1300CE,RELIANCE,0,2026-12-29,1300,0.05,500,CE,NFO-OPT,NFO",
    "",
])


def test_kite_dump_with_current_rows() -> None:
    master = InstrumentMaster.from_kite_csv(CURRENT_DUMP)
    assert master.expiries("NIFTY") == [date(2026, 11, 23), date(2026, 12, 1), date(2026, 12, 29)]
    assert [c.tradingsymbol for c in master.option_chain("NIFTY", date(2026, 12, 1))] == [
        "NIFTY26D0125950PE", "NIFTY26D0126000CE", "NIFTY26D0126000PE"]
    sensex = master.contract("BFO:SENSEX26N2685000CE")
    assert sensex is not None
    assert (sensex.exchange, sensex.expiry, sensex.strike, sensex.lot_size) == (
        "BFO", date(2026, 11, 26), 8_500_000, 20)
    assert master.contract("NFO:SENSEX26N2685000CE") is None  # wrong exchange prefix
    assert master.by_token(13874690) is None  # futures are skipped
    assert master.by_token(30001) is None  # stock options are skipped
    nifty_index = master.index_for("NIFTY")
    assert nifty_index == IndexInstrument(exchange="NSE", tradingsymbol="NIFTY 50", name="NIFTY 50",
                                          instrument_token=256265, tick_size=5)
    assert master.by_token(256265) is nifty_index
    sensex_index = master.index_for("SENSEX")
    assert sensex_index is not None
    assert (sensex_index.instrument_token, sensex_index.tick_size) == (265, 0)
    fin_index = master.index_for("FINNIFTY")
    assert fin_index is not None
    assert fin_index.tick_size == 0  # empty tick_size column
    vix = master.by_token(264969)  # other indices are kept by token
    assert isinstance(vix, IndexInstrument)
    assert vix.tradingsymbol == "INDIA VIX"
    assert master.lot_size("NIFTY") == 65


def test_kite_dump_parsed_contracts_agree_with_symbol_parsing() -> None:
    master = InstrumentMaster.from_kite_csv(CURRENT_DUMP)
    for expiry in master.expiries("NIFTY"):
        for contract in master.option_chain("NIFTY", expiry):
            parsed = OptionContract.parse(contract.tradingsymbol, instrument_token=contract.instrument_token)
            assert parsed == contract


@pytest.mark.parametrize(
    ("bad_row", "problem"),
    [
        ("x1,1,NIFTY26D0126000CE,NIFTY,0,2026-12-01,26000,0.05,65,CE,NFO-OPT,NFO",
         "column 'instrument_token': 'x1' is not an integer"),
        ("10001,1,NIFTY26D0126000CE,NIFTY,0,01-12-2026,26000,0.05,65,CE,NFO-OPT,NFO",
         "column 'expiry': '01-12-2026' is not a YYYY-MM-DD date"),
        ("10001,1,NIFTY26D0126000CE,NIFTY,0,2026-12-01,26k,0.05,65,CE,NFO-OPT,NFO",
         "column 'strike': '26k' is not a number"),
        ("10001,1,NIFTY26D0126000CE,NIFTY,0,2026-12-01,nan,0.05,65,CE,NFO-OPT,NFO",
         "column 'strike': 'nan' is not a finite number"),
        ("10001,1,NIFTY26D0126000CE,NIFTY,0,2026-12-01,26000,0.05,,CE,NFO-OPT,NFO",
         "column 'lot_size': '' is not an integer"),
        ("10001,1,NIFTY26D0126000CE,NIFTY,0,2026-12-01,0,0.05,65,CE,NFO-OPT,NFO",
         "strike must be positive"),
        ("10001,1,NIFTY26D0126000CE,NIFTY,0,2026-12-01,26000,0.05,65,CE,NFO-OPT",
         "expected 12 columns"),
        ("10001,1,NIFTY26D0126000CE,NIFTY,0,2026-12-01,26000,0.05,65,CE,NFO-OPT,NFO,extra",
         "expected 12 columns"),
        ("abc,1001,NIFTY 50,NIFTY 50,0,,0,0.05,0,EQ,INDICES,NSE",
         "column 'instrument_token': 'abc' is not an integer"),
        ("10002,9,NIFTY26D0126000CE,NIFTY,0,2026-12-01,26000,0.05,65,CE,NFO-OPT,NFO",
         "NIFTY26D0126000CE is already registered"),
    ],
)
def test_kite_dump_malformed_row_names_line_and_column(bad_row: str, problem: str) -> None:
    good_row = "10001,1,NIFTY26D0126000CE,NIFTY,0,2026-12-01,26000,0.05,65,CE,NFO-OPT,NFO"
    text = "\n".join([KITE_HEADER, good_row, bad_row, ""])
    with pytest.raises(ValueError, match="Kite instrument dump line 3") as error:
        InstrumentMaster.from_kite_csv(text)
    assert problem in str(error.value)


def test_kite_dump_without_the_expected_columns_is_refused() -> None:
    with pytest.raises(ValueError, match=r"line 1: missing column.*lot_size"):
        InstrumentMaster.from_kite_csv(KITE_HEADER.replace("lot_size", "lotsize") + "\n")
    with pytest.raises(ValueError, match="line 1: missing column"):
        InstrumentMaster.from_kite_csv("")


def test_master_add_and_lookups() -> None:
    master = InstrumentMaster()
    nifty = FALLBACK_UNDERLYINGS["NIFTY"]
    call = OptionContract.build(nifty, date(2026, 12, 1), 2_600_000, OptionType.CE, monthly=False,
                                instrument_token=11)
    put = OptionContract.build(nifty, date(2026, 12, 1), 2_600_000, OptionType.PE, monthly=False)
    master.add(put)
    master.add(call)
    master.add(call)  # re-adding the same contract is harmless
    assert master.option_chain("NIFTY", date(2026, 12, 1)) == [call, put]
    assert master.by_token(11) is call
    assert master.by_token(0) is None  # token 0 means unknown and is never indexed
    assert master.contract("NIFTY26D0126000PE") is put
    assert master.contract("nfo:nifty26d0126000pe") is put
    assert master.contract("NIFTY26D0126050PE") is None
    with pytest.raises(ValueError, match="already registered"):
        master.add(OptionContract.build(nifty, date(2026, 12, 1), 2_600_000, OptionType.CE, monthly=False,
                                        instrument_token=12))
    with pytest.raises(ValueError, match="instrument token 11 is already registered"):
        master.add_index(IndexInstrument(exchange="NSE", tradingsymbol="NIFTY 50", name="NIFTY 50",
                                         instrument_token=11, tick_size=5))


def test_master_lot_size_prefers_the_nearest_expiry_then_the_fallback() -> None:
    master = InstrumentMaster()
    nifty = FALLBACK_UNDERLYINGS["NIFTY"]
    # A lot revision: the expiring contract still carries the old lot.
    master.add(OptionContract.parse("NIFTY25D2326000CE", lot_size=75))
    master.add(OptionContract.build(nifty, date(2026, 1, 6), 2_600_000, OptionType.CE, monthly=False))
    assert master.lot_size("NIFTY") == 75
    assert master.lot_size("SENSEX") == 20
    with pytest.raises(ValueError, match=r"unknown underlying 'BANKEX'; known underlyings: NIFTY, BANKNIFTY"):
        master.lot_size("BANKEX")
