"""Fyers' symbol master CSV → OptionContracts: the documented column order, identity (token = Fytoken, ticker without
its exchange prefix), lot/tick/strike/expiry, and bad rows counted and named (never guessed)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from trader.adapters.fyers.symbols import parse_symbol_master
from trader.market.instruments import OptionType

FYERS_FIXTURES = Path(__file__).parent / "fixtures" / "fyers"
NSE = (FYERS_FIXTURES / "NSE_FO.csv").read_text()
BSE = (FYERS_FIXTURES / "BSE_FO.csv").read_text()


def test_nse_options_of_the_wanted_underlyings() -> None:
    result = parse_symbol_master(NSE, "NFO", {"NIFTY"})
    result.check()
    assert (result.contracts, result.skipped, result.bad) == (6, 3, {})  # the future, BANKNIFTY, RELIANCE skipped
    master = result.instruments
    assert master.expiries("NIFTY") == [date(2026, 12, 8), date(2026, 12, 29)]
    weekly = master.contract("NIFTY26D0826050PE")
    assert weekly is not None
    assert (weekly.exchange, weekly.strike, weekly.option_type, weekly.lot_size, weekly.tick_size) == \
        ("NFO", 2_605_000, OptionType.PE, 65, 5)
    assert weekly.instrument_token == 101126120842840 and master.by_token(101126120842840) == weekly
    assert master.contract("NIFTY26DEC26000CE") is not None
    assert result.index_tokens == {"NIFTY": 101000000026000}


def test_bse_file() -> None:
    result = parse_symbol_master(BSE, "BFO", {"SENSEX"})
    [contract] = [c for c in result.instruments.option_chain("SENSEX", date(2026, 12, 3)) if c.option_type == "CE"]
    assert (contract.exchange, contract.tradingsymbol, contract.lot_size) == ("BFO", "SENSEX26D0385000CE", 20)
    assert contract.instrument_token == 12112612031184010


def test_bad_rows_are_counted_and_named() -> None:
    good = NSE.splitlines()[0].split(",")
    bad = [
        good[:12],  # truncated
        [*good[:3], "lots", *good[4:]],  # lot size not a number
        [*good[:9], "BSE:NIFTY26D0826000CE", *good[10:]],  # wrong prefix for NFO
        [*good[:15], "26000.03", *good[16:]],  # a strike off the tick
        [*good[:8], "soon", *good[9:]],  # expiry not epoch
        ["1211" + good[0][4:], *good[1:]],  # a BSE token in the NSE file
    ]
    bad[0][13:] = []
    text = "\n".join(",".join(cells) for cells in [good, *bad]) + "\n"
    result = parse_symbol_master(text, "NFO", {"NIFTY"})
    assert result.contracts == 1
    assert sorted(result.bad) == [2, 3, 4, 5, 6, 7]  # a truncated row cannot be judged: counted as bad
    assert "12 columns" in result.bad[2]
    assert "lot size" in result.bad[3] and "prefix" not in result.bad[3]
    assert "NSE:" in result.bad[4] and "tick" in result.bad[5] and "expiry" in result.bad[6]
    assert "Fytoken" in result.bad[7]
    with pytest.raises(ValueError, match="6 of 7 option rows are malformed"):
        result.check()


def test_a_file_without_the_underlying_is_refused() -> None:
    with pytest.raises(ValueError, match="no option rows"):
        parse_symbol_master(NSE, "NFO", {"FINNIFTY"}).check()
