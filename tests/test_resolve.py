"""The manual-order resolver: every way to name a contract, every refusal, tick sizes, lots, and expiry-day close.

The instrument list is built here the way the day's Kite dump fills it (NIFTY weeklies and a monthly on NFO, SENSEX
on BFO, the indices), and the clock is fixed: Mon 30 Nov 2026 10:00 IST unless a test moves it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import date, time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from trader.control.requests import ManualOrder
from trader.control.resolve import resolve_order
from trader.control.resolved import OrderSpecError, ResolvedOrder
from trader.events import IntentPurpose, OrderType, Side, Tick
from trader.market.calendar import MarketCalendar, ist_ns
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import FALLBACK_UNDERLYINGS, IndexInstrument, OptionContract, OptionType
from trader.strategies.adopted import MANUAL_STRATEGY_ID

CALENDAR = MarketCalendar()
NOW = ist_ns(date(2026, 11, 30), time(10, 0))  # Monday; NIFTY's weekly expires Tuesday 1 Dec, SENSEX's Thursday 3 Dec
NIFTY_SPOT = 2_601_235  # 26,012.35
SENSEX_SPOT = 8_504_010  # 85,040.10
NIFTY_TOKEN, SENSEX_TOKEN = 256265, 265
NIFTY, SENSEX = FALLBACK_UNDERLYINGS["NIFTY"], FALLBACK_UNDERLYINGS["SENSEX"]
NIFTY_WEEKLY = date(2026, 12, 1)
NIFTY_STRIKES = range(25_800, 26_201, 50)  # 9 strikes: 4 below ATM 26,000 and 4 above
NOT_STREAMING = "NIFTY26D0126200PE"  # listed, but the feed sends nothing for it
BID, ASK, LAST = 12_000, 12_010, 12_005


def build_master() -> tuple[InstrumentMaster, dict[int, Tick]]:
    master = InstrumentMaster()
    master.add_index(IndexInstrument(exchange="NSE", tradingsymbol="NIFTY 50", name="NIFTY 50",
                                     instrument_token=NIFTY_TOKEN, tick_size=5))
    master.add_index(IndexInstrument(exchange="BSE", tradingsymbol="SENSEX", name="SENSEX",
                                     instrument_token=SENSEX_TOKEN, tick_size=0))
    token = iter(range(1_000, 10_000))

    def listing(spec: Any, expiry: date, strikes: Iterable[int], *, monthly: bool = False) -> None:
        for strike in strikes:
            for option_type in OptionType:
                master.add(OptionContract.build(spec, expiry, strike * 100, option_type, monthly=monthly,
                                                instrument_token=next(token), calendar=CALENDAR))

    listing(NIFTY, date(2026, 11, 23), range(25_900, 26_101, 50))  # last week's, still in a stale dump
    listing(NIFTY, NIFTY_WEEKLY, NIFTY_STRIKES)
    listing(NIFTY, date(2026, 12, 8), range(25_900, 26_101, 100))
    listing(NIFTY, date(2026, 12, 29), range(25_500, 26_501, 100), monthly=True)
    listing(SENSEX, date(2026, 12, 3), range(84_700, 85_301, 100))
    quotes = {NIFTY_TOKEN: Tick(ts_ns=NOW, instrument_token=NIFTY_TOKEN, last_price=NIFTY_SPOT),
              SENSEX_TOKEN: Tick(ts_ns=NOW, instrument_token=SENSEX_TOKEN, last_price=SENSEX_SPOT)}
    for expiry in (NIFTY_WEEKLY, date(2026, 11, 23), date(2026, 12, 8), date(2026, 12, 29)):
        for contract in master.option_chain("NIFTY", expiry):
            if contract.tradingsymbol != NOT_STREAMING:
                quotes[contract.instrument_token] = Tick(ts_ns=NOW, instrument_token=contract.instrument_token,
                                                         last_price=LAST, bid=BID, ask=ASK)
    for contract in master.option_chain("SENSEX", date(2026, 12, 3)):
        quotes[contract.instrument_token] = Tick(ts_ns=NOW, instrument_token=contract.instrument_token,
                                                 last_price=LAST, bid=BID, ask=ASK)
    return master, quotes


MASTER, QUOTES = build_master()


def order(instrument: str | None = None, **fields: Any) -> ManualOrder:
    body: dict[str, Any] = {"side": "BUY", "lots": 1, **fields}
    if instrument is not None:
        body["instrument"] = instrument
    return ManualOrder.model_validate(body)


def resolve(instrument: str | None = None, *, now_ns: int = NOW, master: InstrumentMaster = MASTER,
            quotes: dict[int, Tick] | None = None, **fields: Any) -> ResolvedOrder:
    return resolve_order(order(instrument, **fields), master, QUOTES if quotes is None else quotes, now_ns,
                         calendar=CALENDAR)


def refusal(instrument: str | None = None, **kwargs: Any) -> OrderSpecError:
    with pytest.raises(OrderSpecError) as caught:
        resolve(instrument, **kwargs)
    error = caught.value
    assert str(error) == (f"{error.field}: {error.message}" if error.field else error.message)
    return error


# --- the spoken forms ------------------------------------------------------------------------------------------


def test_atm_plus_two_put_as_a_trader_says_it() -> None:
    resolved = resolve("NIFTY ATM+2 PE")
    assert resolved.contract == MASTER.contract("NIFTY26D0126100PE")
    assert resolved.how == ("NIFTY ATM+2 PE → NIFTY26D0126100PE: spot 26,012.35, ATM strike 26,000, 2 strikes up, "
                            "expiry 2026-12-01 (nearest), 1 lot = 65 units")
    assert (resolved.quantity, resolved.lots, resolved.side, resolved.order_type) == (65, 1, Side.BUY,
                                                                                      OrderType.MARKET)
    assert (resolved.spot, resolved.expected_price) == (NIFTY_SPOT, ASK)
    assert (resolved.limit_price, resolved.trigger_price, resolved.market_protection) == (0, 0, -1.0)
    assert resolved.expiry_defaulted


@pytest.mark.parametrize(("instrument", "symbol", "walk"), [
    ("NIFTY ATM CE", "NIFTY26D0126000CE", ""),
    ("NIFTY ATM PE", "NIFTY26D0126000PE", ""),
    ("NIFTY ATM+0 CE", "NIFTY26D0126000CE", ""),
    ("NIFTY ATM-1 CE", "NIFTY26D0125950CE", "1 strike down, "),
    ("NIFTY ATM+1 CE", "NIFTY26D0126050CE", "1 strike up, "),
    ("NIFTY ATM-4 PE", "NIFTY26D0125800PE", "4 strikes down, "),
    ("NIFTY ATM+4 CE", "NIFTY26D0126200CE", "4 strikes up, "),
    # ITM / OTM follow the option type: a call is in the money below the spot, a put above it.
    ("NIFTY ITM1 CE", "NIFTY26D0125950CE", "1 strike in the money (down, for a call), "),
    ("NIFTY ITM2 PE", "NIFTY26D0126100PE", "2 strikes in the money (up, for a put), "),
    ("NIFTY OTM2 CE", "NIFTY26D0126100CE", "2 strikes out of the money (up, for a call), "),
    ("NIFTY OTM1 PE", "NIFTY26D0125950PE", "1 strike out of the money (down, for a put), "),
])
def test_atm_walks_and_moneyness(instrument: str, symbol: str, walk: str) -> None:
    resolved = resolve(instrument)
    assert resolved.contract.tradingsymbol == symbol
    assert resolved.how == (f"{instrument} → {symbol}: spot 26,012.35, ATM strike 26,000, {walk}"
                            "expiry 2026-12-01 (nearest), 1 lot = 65 units")


@pytest.mark.parametrize("instrument", [
    "nifty atm+2 pe", "  NIFTY   ATM + 2   PE ", "NIFTY ATM +2 PE", "NSE:NIFTY50-INDEX ATM+2 PE",
    "nse:nifty 50 ATM+2 PE",
])
def test_spoken_forms_are_case_and_space_insensitive_and_take_every_underlying_alias(instrument: str) -> None:
    assert resolve(instrument).contract.tradingsymbol == "NIFTY26D0126100PE"


def test_a_spot_halfway_between_two_strikes_takes_the_lower_as_atm() -> None:
    quotes = {**QUOTES, NIFTY_TOKEN: Tick(ts_ns=NOW, instrument_token=NIFTY_TOKEN, last_price=2_602_500)}
    assert resolve("NIFTY ATM CE", quotes=quotes).contract.strike == 2_600_000
    quotes[NIFTY_TOKEN] = Tick(ts_ns=NOW, instrument_token=NIFTY_TOKEN, last_price=2_602_505)
    assert resolve("NIFTY ATM CE", quotes=quotes).contract.strike == 2_605_000


def test_a_strike_in_rupees() -> None:
    resolved = resolve("NIFTY 26050 PE")
    assert resolved.contract.tradingsymbol == "NIFTY26D0126050PE"
    assert resolved.how == ("NIFTY 26050 PE → NIFTY26D0126050PE: strike 26,050, expiry 2026-12-01 (nearest), "
                            "spot 26,012.35, 1 lot = 65 units")
    assert resolve("NIFTY 26050.00 PE").contract.tradingsymbol == "NIFTY26D0126050PE"


def test_a_strike_far_from_the_money_needs_no_spot() -> None:
    quotes = {k: v for k, v in QUOTES.items() if k != NIFTY_TOKEN}
    resolved = resolve("NIFTY 25800 CE", quotes=quotes)
    assert resolved.spot == 0
    assert "spot not streaming" in resolved.how


def test_an_explicit_expiry_picks_that_chain() -> None:
    resolved = resolve("NIFTY ATM CE", expiry="2026-12-08")
    assert resolved.contract.tradingsymbol == "NIFTY26D0826000CE"
    assert not resolved.expiry_defaulted
    assert "expiry 2026-12-08 (given)" in resolved.how
    monthly = resolve("NIFTY ATM+3 PE", expiry="2026-12-29")
    assert monthly.contract.tradingsymbol == "NIFTY26DEC26300PE"  # 100-point strikes in that chain


# --- the other two ways to name a contract ---------------------------------------------------------------------


@pytest.mark.parametrize("instrument", ["NIFTY26D0126000CE", "NFO:NIFTY26D0126000CE", "nfo:nifty26d0126000ce",
                                        " NIFTY26D0126000CE "])
def test_a_listed_tradingsymbol(instrument: str) -> None:
    resolved = resolve(instrument)
    assert resolved.contract == MASTER.contract("NIFTY26D0126000CE")
    assert not resolved.expiry_defaulted
    assert resolved.how.endswith(": listed NFO contract, strike 26,000 CE, expiry 2026-12-01, spot 26,012.35, "
                                 "1 lot = 65 units")


def test_a_monthly_tradingsymbol_and_an_agreeing_expiry() -> None:
    resolved = resolve("NIFTY26DEC26000CE", expiry="2026-12-29")
    assert resolved.contract.expiry == date(2026, 12, 29)


def test_underlying_strike_and_option_type_fields() -> None:
    resolved = resolve(underlying="NSE:NIFTY50-INDEX", strike=25950, option_type="pe")
    assert resolved.contract.tradingsymbol == "NIFTY26D0125950PE"
    assert resolved.how == ("NIFTY 25,950 PE (underlying, strike, option_type) → NIFTY26D0125950PE: expiry "
                            "2026-12-01 (nearest), spot 26,012.35, 1 lot = 65 units")


# --- SENSEX on BSE (BFO) ---------------------------------------------------------------------------------------


def test_sensex_on_bfo() -> None:
    resolved = resolve("SENSEX ATM+1 CE", lots=2)
    assert resolved.contract.tradingsymbol == "SENSEX26D0385100CE"
    assert resolved.contract.exchange == "BFO"
    assert (resolved.quantity, resolved.lots, resolved.spot) == (40, 2, SENSEX_SPOT)
    assert resolved.how == ("SENSEX ATM+1 CE → SENSEX26D0385100CE: spot 85,040.10, ATM strike 85,000, 1 strike up, "
                            "expiry 2026-12-03 (nearest), 2 lots = 40 units")
    assert resolve("BFO:SENSEX26D0385000PE").contract.exchange == "BFO"
    assert resolve("BSE:SENSEX OTM1 PE").contract.strike == 8_490_000
    assert resolve(underlying="sensex", strike=85200, option_type="CE", lots=None, quantity=60).lots == 3


def test_sensex_under_the_nfo_prefix_is_refused() -> None:
    error = refusal("NFO:SENSEX26D0385000CE")
    assert error.field == "instrument"
    assert "SENSEX options trade on BFO, not NFO" in error.message


# --- expiry and the F&O close ----------------------------------------------------------------------------------


def test_on_expiry_day_the_weekly_is_nearest_until_the_close_at_1540() -> None:
    before = ist_ns(NIFTY_WEEKLY, time(15, 39, 59))
    resolved = resolve("NIFTY ATM CE", now_ns=before)
    assert resolved.contract.expiry == NIFTY_WEEKLY
    assert "expiry 2026-12-01 (nearest, expires today at 15:40 IST)" in resolved.how
    at_close = ist_ns(NIFTY_WEEKLY, time(15, 40))
    assert resolve("NIFTY ATM CE", now_ns=at_close).contract.expiry == date(2026, 12, 8)
    assert "expires today at 15:40 IST" in resolve("NIFTY26D0126000CE", now_ns=before).how


def test_a_contract_past_its_close_is_expired() -> None:
    error = refusal("NIFTY26D0126000CE", now_ns=ist_ns(NIFTY_WEEKLY, time(15, 40)))
    assert error.field == "instrument"
    assert error.message == ("NIFTY26D0126000CE has expired (trading in it ended 2026-12-01 at 15:40 IST): name a "
                             "current contract, e.g. 'NIFTY 26000 CE' (nearest expiry) or 'NIFTY ATM CE'")
    stale = refusal("NIFTY26N2326000CE")  # last week's, still in the list
    assert "has expired (trading in it ended 2026-11-23 at 15:40 IST)" in stale.message


def test_an_explicit_expiry_that_has_closed_or_is_not_listed() -> None:
    error = refusal("NIFTY ATM CE", expiry="2026-11-23")
    assert (error.field, error.message) == (
        "expiry", "the NIFTY 2026-11-23 expiry has closed (at 15:40 IST on 2026-11-23); listed expiries still "
                  "trading: 2026-12-01, 2026-12-08, 2026-12-29")
    error = refusal("NIFTY ATM CE", expiry="2026-12-02")
    assert (error.field, error.message) == (
        "expiry", "NIFTY has no expiry on 2026-12-02 (Wednesday) in today's instrument list; the next listed: "
                  "2026-12-01, 2026-12-08, 2026-12-29")
    error = refusal("NIFTY ATM CE", expiry="2026-12-01", now_ns=ist_ns(NIFTY_WEEKLY, time(16, 0)))
    assert error.message.startswith("the NIFTY 2026-12-01 expiry has closed (at 15:40 IST on 2026-12-01)")


def test_the_close_follows_the_calendars_session_hours() -> None:
    # Before 3 Aug 2026 the F&O market closed at 15:30 (NSE/FAOP/74467).
    expiry = date(2026, 7, 28)
    master = InstrumentMaster()
    master.add_index(IndexInstrument(exchange="NSE", tradingsymbol="NIFTY 50", name="NIFTY 50",
                                     instrument_token=NIFTY_TOKEN, tick_size=5))
    for day in (expiry, date(2026, 8, 4)):
        master.add(OptionContract.build(NIFTY, day, 2_600_000, OptionType.CE, monthly=day == expiry,
                                        instrument_token=day.day, calendar=CALENDAR))
    quotes = {**QUOTES, 28: Tick(ts_ns=NOW, instrument_token=28, last_price=LAST),
              4: Tick(ts_ns=NOW, instrument_token=4, last_price=LAST)}
    before = resolve("NIFTY ATM CE", master=master, quotes=quotes, now_ns=ist_ns(expiry, time(15, 29, 59)))
    assert before.contract.expiry == expiry
    assert "expires today at 15:30 IST" in before.how
    after = resolve("NIFTY ATM CE", master=master, quotes=quotes, now_ns=ist_ns(expiry, time(15, 30)))
    assert after.contract.expiry == date(2026, 8, 4)


def test_every_listed_expiry_closed_or_none_listed() -> None:
    error = refusal("NIFTY ATM CE", now_ns=ist_ns(date(2027, 1, 4), time(10, 0)))
    assert (error.field, error.message) == (
        "expiry", "every listed NIFTY expiry has closed (the last, 2026-12-29, at 15:40 IST on 2026-12-29): "
                  "today's instrument list is out of date")
    error = refusal("BANKNIFTY ATM CE")
    assert (error.field, error.message) == (
        "instrument", "no BANKNIFTY options are in today's instrument list (has the day's instrument dump been "
                      "loaded?)")
    assert refusal(underlying="BANKNIFTY", strike=52000, option_type="CE", expiry="2026-12-29").field == "expiry"


def test_a_tradingsymbol_with_another_expiry_is_ambiguous() -> None:
    error = refusal("NIFTY26D0126000CE", expiry="2026-12-08")
    assert (error.field, error.message) == (
        "expiry", "NIFTY26D0126000CE expires 2026-12-01, not 2026-12-08: leave expiry out or make the two agree")


# --- symbols that are not listed -------------------------------------------------------------------------------


def test_a_well_formed_symbol_that_is_not_listed() -> None:
    expired = refusal("NIFTY25D0226000CE")
    assert (expired.field, expired.message) == (
        "instrument", "NIFTY25D0226000CE is not in today's instrument list: it expired 2025-12-02; name a current "
                      "contract, e.g. 'NIFTY 26000 CE' (nearest expiry) or 'NIFTY ATM CE'")
    strike = refusal("NIFTY26D0126010PE")
    assert strike.message == ("NIFTY26D0126010PE is not in today's instrument list: strike 26,010 is not listed for "
                              "NIFTY 2026-12-01 PE (nearest listed: 26,000, 26,050); try 'NIFTY ATM PE' or a "
                              "listed strike")
    expiry = refusal("NIFTY26D1526000CE")
    assert expiry.message == ("NIFTY26D1526000CE is not in today's instrument list: no NIFTY expiry 2026-12-15 is "
                              "listed (listed: 2026-12-01, 2026-12-08, 2026-12-29); try 'NIFTY 26000 CE' (nearest "
                              "expiry) or 'NIFTY ATM CE' with one of those expiries")
    # Kite lists the weekly of the monthly date under the monthly symbol only.
    form = refusal("NIFTY26D2926000CE")
    assert form.message == ("NIFTY26D2926000CE is not how today's instrument list writes that contract: it is "
                            "NFO:NIFTY26DEC26000CE")


@pytest.mark.parametrize(("instrument", "words"), [
    ("NIFTY", "'NIFTY' names an underlying but no contract: add a strike and CE or PE, e.g. 'NIFTY ATM CE'"),
    ("NSE:NIFTY50-INDEX", "names an underlying but no contract"),
    ("NIFTY26X0126000CE", "invalid option tradingsymbol 'NIFTY26X0126000CE'"),
    ("HELLO", "does not start with a known underlying"),
    ("NIFTY26DECFUT", "a futures symbol, not an option"),
    ("NIFTY CE", "'NIFTY CE' is not an instrument: say the underlying, the strike and CE or PE"),
    ("NIFTY ATM XE", "'NIFTY ATM XE' must end in CE or PE (got 'XE')"),
    ("NIFTY ATM CALL", "must end in CE or PE (got 'CALL')"),
    ("NIFTYX ATM CE", "'NIFTYX' is not an underlying: use NIFTY, BANKNIFTY, FINNIFTY, MIDCPNIFTY, NIFTYNXT50, SENSEX"),
    ("NIFTY ATM+ CE", "'ATM+' in 'NIFTY ATM+ CE' is not a strike: use ATM, ATM+N, ATM-N, ITMn, OTMn"),
    ("NIFTY ATM*2 CE", "is not a strike"),
    ("NIFTY ATM2 CE", "is not a strike"),
    ("NIFTY ITM CE", "ITM needs a number of strikes from 1 (ITM1 = one strike in the money); ATM for the"),
    ("NIFTY OTM0 PE", "OTM needs a number of strikes from 1 (OTM1 = one strike out of the money)"),
    ("NIFTY 26,000 CE", "is not a strike"),
    ("NIFTY 26010 CE", "strike 26,010 is not listed for NIFTY 2026-12-01 CE (nearest listed: 26,000, 26,050)"),
    ("NIFTY 1 CE", "strike 1 is not listed for NIFTY 2026-12-01 CE (nearest listed: 25,800)"),
    ("NIFTY 99999 CE", "(nearest listed: 26,200)"),
    ("NIFTY ATM+5 CE", "ATM+5 runs off the listed chain: NIFTY 2026-12-01 CE lists 4 strikes above ATM 26,000 and "
                       "4 below (spot 26,012.35)"),
    ("NIFTY ATM-5 PE", "ATM-5 runs off the listed chain: NIFTY 2026-12-01 PE lists 4 strikes above"),
    ("NIFTY ITM5 CE", "ITM5 runs off the listed chain"),
    ("NIFTY OTM5 PE", "OTM5 runs off the listed chain"),
])
def test_instruments_that_cannot_be_resolved(instrument: str, words: str) -> None:
    error = refusal(instrument)
    assert error.field == "instrument"
    assert words in error.message


def test_runs_off_a_short_chain_says_how_many_strikes_each_side() -> None:
    error = refusal("NIFTY ATM+2 CE", expiry="2026-12-08")  # 25,900 / 26,000 / 26,100
    assert error.message == ("ATM+2 runs off the listed chain: NIFTY 2026-12-08 CE lists 1 strike above ATM 26,000 "
                             "and 1 below (spot 26,012.35)")


def test_structured_strikes_must_be_listed_exactly() -> None:
    error = refusal(underlying="NIFTY", strike=26010, option_type="CE")
    assert (error.field, error.message) == (
        "strike", "strike 26,010 is not listed for NIFTY 2026-12-01 CE (nearest listed: 26,000, 26,050)")
    error = refusal(underlying="NIFTY", strike=26000.004, option_type="CE")  # never rounded into 26,000
    assert error.message == ("strike 26000.004 is not listed for NIFTY 2026-12-01 CE (nearest listed: 26,000, "
                             "26,050)")
    error = refusal(underlying="NIFTI", strike=26000, option_type="CE")
    assert error.field == "underlying"
    assert error.message.startswith("'NIFTI' is not an underlying")


# --- quotes ----------------------------------------------------------------------------------------------------


def test_expected_price_buy_ask_sell_bid_else_last() -> None:
    assert resolve("NIFTY ATM CE").expected_price == ASK
    assert resolve("NIFTY ATM CE", side="SELL").expected_price == BID
    token = MASTER.contract("NIFTY26D0126000CE").instrument_token  # type: ignore[union-attr]
    quotes = {**QUOTES, token: Tick(ts_ns=NOW, instrument_token=token, last_price=LAST)}  # an LTP-mode tick
    assert resolve("NIFTY ATM CE", quotes=quotes).expected_price == LAST
    assert resolve("NIFTY ATM CE", side="SELL", quotes=quotes).expected_price == LAST
    quotes[token] = Tick(ts_ns=NOW, instrument_token=token, last_price=0)
    error = refusal("NIFTY ATM CE", quotes=quotes)
    assert (error.field, error.message) == (
        "instrument", "NFO:NIFTY26D0126000CE is not streaming a price yet (no bid, ask or last price): wait for a "
                      "trade or pick another strike")


def test_a_contract_that_is_not_streaming() -> None:
    token = MASTER.contract(NOT_STREAMING).instrument_token  # type: ignore[union-attr]
    for how in ("NIFTY ATM+4 PE", NOT_STREAMING, "NIFTY 26200 PE"):
        error = refusal(how)
        assert (error.field, error.message) == (
            "instrument", f"NFO:{NOT_STREAMING} (token {token}) is not streaming: there is no quote to price the "
                          "order against; pick a strike the feed streams, or wait for its first tick")
    assert refusal(underlying="NIFTY", strike=26200, option_type="PE").field == "underlying"


def test_atm_needs_the_index_price() -> None:
    quotes = {k: v for k, v in QUOTES.items() if k != NIFTY_TOKEN}
    error = refusal("NIFTY ATM CE", quotes=quotes)
    assert (error.field, error.message) == (
        "instrument", "NIFTY ATM CE needs the NIFTY index's price, but NSE:NIFTY 50 (token 256265) is not streaming: "
                      "give a strike instead, e.g. 'NIFTY 26000 CE', or wait for the feed")
    master = InstrumentMaster()
    for contract in MASTER.option_chain("NIFTY", NIFTY_WEEKLY):
        master.add(contract)
    error = refusal("NIFTY OTM1 CE", master=master)
    assert error.message == ("NIFTY OTM1 CE needs the NIFTY index's price, but NSE:NIFTY 50 is not in today's "
                             "instrument list: give a strike instead, e.g. 'NIFTY 26000 CE'")


# --- quantity and lots -----------------------------------------------------------------------------------------


def test_lots_and_quantity() -> None:
    assert (resolve("NIFTY ATM CE", lots=3).quantity, resolve("NIFTY ATM CE", lots=3).lots) == (195, 3)
    by_units = resolve("NIFTY ATM CE", lots=None, quantity=130)
    assert (by_units.quantity, by_units.lots) == (130, 2)
    assert by_units.how.endswith(", 130 units = 2 lots of 65")


@pytest.mark.parametrize(("units", "choices"), [
    (100, "use 65 (1 lot) or 130 (2 lots)"),
    (30, "use 65 (1 lot)"),
    (66, "use 65 (1 lot) or 130 (2 lots)"),
    (1_000, "use 975 (15 lots) or 1,040 (16 lots)"),
])
def test_units_must_be_a_whole_number_of_lots(units: int, choices: str) -> None:
    error = refusal("NIFTY ATM CE", lots=None, quantity=units)
    assert (error.field, error.message) == (
        "quantity", f"{units:,} units is not a whole number of lots: a NIFTY26D0126000CE lot is 65 units; "
                    f"{choices}, or give lots instead")


def test_the_contracts_own_lot_size_counts() -> None:
    # Old expiries keep the lot they were listed with (fact sheet §2.1): the dump's value, not the fallback 65.
    master = InstrumentMaster()
    master.merge(MASTER)
    old = dataclasses.replace(OptionContract.build(NIFTY, date(2027, 3, 30), 2_600_000, OptionType.CE, monthly=True,
                                                   instrument_token=77, calendar=CALENDAR), lot_size=75)
    master.add(old)
    quotes = {**QUOTES, 77: Tick(ts_ns=NOW, instrument_token=77, last_price=LAST)}
    resolved = resolve("NIFTY 26000 CE", expiry="2027-03-30", lots=2, master=master, quotes=quotes)
    assert (resolved.quantity, resolved.lots) == (150, 2)
    error = refusal("NIFTY 26000 CE", expiry="2027-03-30", lots=None, quantity=130, master=master, quotes=quotes)
    assert "lot is 75 units; use 75 (1 lot) or 150 (2 lots)" in error.message


# --- prices on the tick ----------------------------------------------------------------------------------------


def test_limit_and_stop_prices_in_paise() -> None:
    limit = resolve("NIFTY ATM CE", order_type="LIMIT", price=120.05)
    assert (limit.order_type, limit.limit_price, limit.trigger_price) == (OrderType.LIMIT, 12_005, 0)
    stop = resolve("NIFTY ATM CE", side="SELL", order_type="SL", price=99.5, trigger_price=100)
    assert (stop.limit_price, stop.trigger_price) == (9_950, 10_000)
    stop_market = resolve("NIFTY ATM CE", order_type="SL-M", trigger_price=130.1, market_protection=3)
    assert (stop_market.limit_price, stop_market.trigger_price, stop_market.market_protection) == (0, 13_010, 3.0)


@pytest.mark.parametrize(("price", "nearest"), [
    (100.12, "100.10 or 100.15"),
    (100.123, "100.10 or 100.15"),
    (100.049, "100.00 or 100.05"),
    (100.051, "100.05 or 100.10"),
    (0.03, "0.05"),
    (0.001, "0.05"),
])
def test_prices_off_the_tick_name_the_nearest_valid_ones(price: float, nearest: str) -> None:
    error = refusal("NIFTY ATM CE", order_type="LIMIT", price=price)
    assert (error.field, error.message) == (
        "price", f"{price!r} is not on the tick of NIFTY26D0126000CE (₹0.05): nearest valid prices {nearest}")
    error = refusal("NIFTY ATM CE", order_type="SL-M", trigger_price=price)
    assert error.field == "trigger_price"


def test_the_contracts_own_tick_size_counts() -> None:
    master = InstrumentMaster()
    master.merge(MASTER)
    coarse = dataclasses.replace(OptionContract.build(NIFTY, date(2027, 3, 30), 2_600_000, OptionType.PE,
                                                      monthly=True, instrument_token=78, calendar=CALENDAR),
                                 tick_size=10)
    master.add(coarse)
    quotes = {**QUOTES, 78: Tick(ts_ns=NOW, instrument_token=78, last_price=LAST)}
    error = refusal(coarse.tradingsymbol, order_type="LIMIT", price=100.05, master=master, quotes=quotes)
    assert error.message.endswith("(₹0.10): nearest valid prices 100.00 or 100.10")
    assert resolve(coarse.tradingsymbol, order_type="LIMIT", price=100.1, master=master,
                   quotes=quotes).limit_price == 10_010


# --- what the service builds from it ---------------------------------------------------------------------------


def test_intent_and_answer() -> None:
    resolved = resolve("NIFTY ATM+2 PE", side="SELL", lots=2, order_type="LIMIT", price=119.95)
    intent = resolved.intent(ts_ns=NOW, intent_id="M7", purpose=IntentPurpose.EXIT, reason="operator")
    assert (intent.strategy_id, intent.intent_id, intent.contract, intent.side, intent.quantity) == (
        MANUAL_STRATEGY_ID, "M7", resolved.contract, Side.SELL, 130)
    assert (intent.order_type, intent.purpose, intent.expected_price, intent.limit_price, intent.trigger_price) == (
        OrderType.LIMIT, IntentPurpose.EXIT, BID, 11_995, 0)
    assert (intent.ts_ns, intent.reason) == (NOW, "operator")
    assert resolved.as_dict() == {
        "tradingsymbol": "NIFTY26D0126100PE", "exchange": "NFO", "underlying": "NIFTY", "expiry": "2026-12-01",
        "expiry_defaulted": True, "strike_inr": 26100.0, "option_type": "PE",
        "instrument_token": resolved.contract.instrument_token, "side": "SELL", "lots": 2, "lot_size": 65,
        "quantity": 130, "order_type": "LIMIT", "expected_price_inr": 120.0, "limit_price_inr": 119.95,
        "trigger_price_inr": None, "market_protection": None, "spot_inr": 26012.35, "how": resolved.how,
    }
    assert resolve("NIFTY ATM CE").as_dict()["market_protection"] == -1.0


# --- properties ------------------------------------------------------------------------------------------------

WORDS = st.sampled_from(["NIFTY", "SENSEX", "BANKNIFTY", "NSE:NIFTY50-INDEX", "NFO:", "BFO:", "ATM", "ATM+", "ATM-",
                         "ITM", "OTM", "CE", "PE", "26000", "+", "-", "NIFTY26D0126000CE", "26D01", "DEC", " ", "0"])
TEXT = st.lists(WORDS | st.text(max_size=6) | st.integers(-5, 99_999).map(str), min_size=1, max_size=6).map(
    lambda parts: " ".join(parts) if len(parts) % 2 else "".join(parts))


@settings(max_examples=500, deadline=None)
@given(TEXT, st.sampled_from(["BUY", "SELL"]), st.integers(0, 3))
def test_any_instrument_text_resolves_or_raises_order_spec_error(text: str, side: str, hours: int) -> None:
    try:
        manual = order(text, side=side)
    except ValidationError:
        return  # empty after stripping, too long, control characters: the request model's 400
    now = ist_ns(NIFTY_WEEKLY, time(12 + hours, 40))
    try:
        resolved = resolve_order(manual, MASTER, QUOTES, now, calendar=CALENDAR)
    except OrderSpecError as error:
        assert error.field == "instrument" and error.message
        return
    assert MASTER.contract(resolved.contract.tradingsymbol) == resolved.contract
    assert resolved.quantity == resolved.contract.lot_size


@settings(max_examples=200, deadline=None)
@given(st.integers(2_570_000, 2_640_000), st.integers(-6, 6), st.sampled_from(list(OptionType)))
def test_atm_plus_n_is_n_listed_strikes_from_the_strike_nearest_spot(spot: int, steps: int,
                                                                     option_type: OptionType) -> None:
    quotes = {**QUOTES, NIFTY_TOKEN: Tick(ts_ns=NOW, instrument_token=NIFTY_TOKEN, last_price=spot)}
    strikes = [s * 100 for s in NIFTY_STRIKES]
    atm = min(strikes, key=lambda s: (abs(s - spot), s))
    wanted = strikes.index(atm) + steps
    text = f"NIFTY ATM{steps:+d} {option_type.value}"
    if not 0 <= wanted < len(strikes):
        assert "runs off the listed chain" in refusal(text, quotes=quotes).message
        return
    if (strikes[wanted], option_type) == (2_620_000, OptionType.PE):
        assert "is not streaming" in refusal(text, quotes=quotes).message
        return
    resolved = resolve(text, quotes=quotes)
    assert (resolved.contract.strike, resolved.contract.option_type) == (strikes[wanted], option_type)
    money = "ITM" if (steps < 0) == (option_type is OptionType.CE) else "OTM"
    if steps:
        assert resolve(f"NIFTY {money}{abs(steps)} {option_type.value}", quotes=quotes).contract == resolved.contract


def test_a_quote_older_than_the_limit_is_refused_never_priced_on() -> None:
    limit = 30 * 1_000_000_000

    def at(now_ns: int, instrument: str) -> ResolvedOrder:
        return resolve_order(order(instrument), MASTER, QUOTES, now_ns, calendar=CALENDAR, max_quote_age_ns=limit)

    assert at(NOW + limit, "NIFTY26D0126000CE").expected_price == ASK  # exactly at the limit: still fresh
    with pytest.raises(OrderSpecError) as stale:
        at(NOW + limit + 1_000_000_000, "NIFTY26D0126000CE")  # the feed has been silent for 31 s
    assert stale.value.field == "instrument"
    assert "last quote is 31 s old" in stale.value.message and "max_quote_age_seconds" in stale.value.message
    with pytest.raises(OrderSpecError) as stale_spot:  # ATM needs the index's price, which is as old
        at(NOW + limit + 1_000_000_000, "NIFTY ATM CE")
    assert "index's price" in stale_spot.value.message and "31 s old" in stale_spot.value.message
