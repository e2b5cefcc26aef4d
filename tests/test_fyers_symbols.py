"""Fyers' symbol master CSV → OptionContracts: the documented column order, identity (token = Fytoken, ticker without
its exchange prefix), lot/tick/strike/expiry, and bad rows counted and named (never guessed)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from fyers_stub import Reply, error, fyers_stub, ok

from trader.adapters.fyers.provision import provision_market
from trader.adapters.fyers.symbols import MAX_LOT, parse_symbol_master, ticker_strike
from trader.adapters.kite.provision import BrokerUnreachableError, RetryPolicy
from trader.clock import NS_PER_SECOND, SimClock
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import OptionType, underlying_spec

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


# --- provisioning: the master, spot from /quotes, the chain around spot --------------------------------------------

DEC_1_0920_IST_NS = 1_796_097_000 * NS_PER_SECOND  # 2026-12-01 03:50 UTC


async def _no_wait(_seconds: float) -> None:
    return None


async def test_provision_registers_the_chain_around_spot() -> None:
    async with fyers_stub(clock=SimClock(DEC_1_0920_IST_NS)) as (stub, client):
        stub.script("GET", "/sym/NSE_FO.csv", Reply("busy", status=503, raw=True), Reply(NSE, raw=True))
        stub.script("GET", "/data/quotes", Reply(ok(d=[
            {"n": "NSE:NIFTY50-INDEX", "s": "ok", "v": {"lp": 26010.4, "tt": "1796097000"}}])))
        master = InstrumentMaster()
        root = client.api_root.removesuffix("/api/v3") + "/sym"
        tokens = await provision_market(client, [underlying_spec("NIFTY")], master, SimClock(DEC_1_0920_IST_NS),
                                        symbols_root=root, strikes_each_side=1,
                                        retry=RetryPolicy(total_s=5, sleep=_no_wait))
        assert tokens[0] == 101000000026000  # the index, by its Fytoken
        chain = {master.by_token(t).tradingsymbol for t in tokens[1:]}  # type: ignore[union-attr]
        assert chain == {"NIFTY26D0826000CE", "NIFTY26D0826000PE", "NIFTY26D0826050CE", "NIFTY26D0826050PE"}
        index = master.index_for("NIFTY")
        assert index is not None and index.instrument_token == 101000000026000
        assert stub.calls("GET", "/data/quotes") and stub.requests[-1][2] == {"symbols": "NSE:NIFTY50-INDEX"}


async def test_provision_stops_on_a_refused_token() -> None:
    async with fyers_stub(clock=SimClock(DEC_1_0920_IST_NS)) as (stub, client):
        stub.script("GET", "/sym/NSE_FO.csv", Reply(NSE, raw=True))
        stub.script("GET", "/data/quotes", Reply(error(-8, "Your token has expired"), status=401))
        root = client.api_root.removesuffix("/api/v3") + "/sym"
        with pytest.raises(BrokerUnreachableError, match="trader login --venue fyers"):
            await provision_market(client, [underlying_spec("NIFTY")], InstrumentMaster(),
                                   SimClock(DEC_1_0920_IST_NS), symbols_root=root, strikes_each_side=1,
                                   retry=RetryPolicy(total_s=5, sleep=_no_wait))


GOOD = NSE.splitlines()[0].split(",")  # NIFTY 08 Dec 26 26000 CE, lot 65, Fytoken 101126120842810
OTHERS = NSE.splitlines()[1:]


def _text(*rows: list[str]) -> str:
    return "\n".join([*(",".join(cells) for cells in rows), *OTHERS]) + "\n"


def _variant(token: str = GOOD[0], ticker: str = GOOD[9], **columns: str) -> list[str]:
    cells = list(GOOD)
    cells[0], cells[9] = token, ticker
    for index, value in columns.items():
        cells[int(index.removeprefix("c"))] = value
    return cells


def test_a_ticker_or_fytoken_repeated_with_different_contents_refuses_every_such_row() -> None:
    wrong_lot = _variant(c3="75")  # the same ticker and Fytoken, another lot, listed first
    result = parse_symbol_master(_text(wrong_lot, GOOD), "NFO", {"NIFTY"})
    assert result.instruments.contract("NIFTY26D0826000CE") is None  # neither lot is guessed
    assert result.instruments.by_token(int(GOOD[0])) is None
    assert sorted(result.bad) == [1, 2] and "appears on lines 1, 2" in result.bad[1]
    other_strike = _variant(ticker="NSE:NIFTY26D0829900CE", c15="29900.0")  # GOOD's Fytoken, another strike
    result = parse_symbol_master(_text(other_strike, GOOD), "NFO", {"NIFTY"})
    assert result.instruments.by_token(int(GOOD[0])) is None  # never another strike's price feed
    assert result.instruments.contract("NIFTY26D0829900CE") is None
    assert result.instruments.contract("NIFTY26D0826000CE") is None
    assert sorted(result.bad) == [1, 2] and all("Fytoken 101126120842810" in p for p in result.bad.values())
    result = parse_symbol_master(_text(GOOD, GOOD), "NFO", {"NIFTY"})  # an identical repeat collapses
    assert result.bad == {} and result.contracts == 6
    contract = result.instruments.contract("NIFTY26D0826000CE")
    assert contract is not None and contract.lot_size == 65


def test_the_ticker_must_agree_with_strike_option_type_and_expiry() -> None:
    cases = {
        "strike": _variant(c15="26050.0"),
        "option type": _variant(c16="PE"),
        "expiry": _variant(c8=str(1796724000 + 86400)),  # 09 Dec, the ticker says 08 Dec
    }
    for name, row in cases.items():
        result = parse_symbol_master(_text(row), "NFO", {"NIFTY"})
        assert list(result.bad) == [1], name
        assert "does not end in" in result.bad[1] if name != "expiry" else "expiry 2026-12-09" in result.bad[1]
        assert result.instruments.contract("NIFTY26D0826000CE") is None, name
    monthly = _variant(token="101126122935099", ticker="NSE:NIFTY26DEC26500CE", c15="26500.0", c8="1798538400")
    result = parse_symbol_master(_text(monthly), "NFO", {"NIFTY"})
    assert result.bad == {} and result.instruments.contract("NIFTY26DEC26500CE") is not None
    assert (ticker_strike(2_600_000), ticker_strike(101_250), ticker_strike(101_205)) == ("26000", "1012.5", "1012.05")


def test_integers_are_ascii_digits_within_bounds() -> None:
    for lot, problem in (("9" * 30, "bound"), (str(MAX_LOT + 1), "bound"), ("６５", "not a positive integer")):
        result = parse_symbol_master(_text(_variant(c3=lot)), "NFO", {"NIFTY"})
        assert list(result.bad) == [1] and "lot size" in result.bad[1] and problem in result.bad[1], lot
    result = parse_symbol_master(_text(_variant(token="1011" + "9" * 30)), "NFO", {"NIFTY"})
    assert list(result.bad) == [1] and "Fytoken" in result.bad[1]
