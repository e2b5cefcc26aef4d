"""Fyers' symbol master CSV → OptionContracts: the documented column order, identity (token = Fytoken, ticker without
its exchange prefix), lot/tick/strike/expiry, and bad rows counted and named (never guessed)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from fyers_stub import Reply, error, fyers_stub, ok

from trader.adapters.fyers.provision import provision_market
from trader.adapters.fyers.symbols import parse_symbol_master
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
