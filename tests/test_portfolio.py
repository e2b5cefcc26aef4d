"""PortfolioActor: positions, average price, exact realized P&L in paise, charges, equity, trades, snapshots."""

from __future__ import annotations

import itertools
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.actors.portfolio import PortfolioActor
from trader.bus import EventBus
from trader.events import Fill, IntentPurpose, PositionSnapshot, PositionView, Side, Tick
from trader.market.charges import option_charges
from trader.market.instruments import OptionContract

IST = ZoneInfo("Asia/Kolkata")
NS = 1_000_000_000
CAPITAL = 50_000_000  # ₹5 lakh in paise
NIFTY_CE = OptionContract.parse("NIFTY2611325000CE", instrument_token=101)
NIFTY_PE = OptionContract.parse("NIFTY2611325000PE", instrument_token=102)
BANK_CE = OptionContract.parse("BANKNIFTY26JAN56000CE", instrument_token=201)
CONTRACTS = (NIFTY_CE, NIFTY_PE, BANK_CE)


def at(day: int, hh: int, mm: int = 0, ss: int = 0, ns: int = 0) -> int:
    """Event time on 2026-01-<day> in IST, as integer ns UTC."""
    return int(datetime(2026, 1, day, hh, mm, ss, tzinfo=IST).timestamp()) * NS + ns


T0 = at(12, 10)
_fill_ids = itertools.count(1)


def fill(contract: OptionContract, side: Side, qty: int, price: int, *, ts: int = T0, charges: int = 0,
         fill_id: str | None = None) -> Fill:
    fid = fill_id or f"F{next(_fill_ids)}"
    return Fill(ts_ns=ts, fill_id=fid, intent_id=f"I{fid}", order_id=f"O{fid}", contract=contract, side=side,
                quantity=qty, price=price, expected_price=price, charges=charges,
                purpose=IntentPurpose.ENTRY)


def tick(contract: OptionContract, price: int, ts: int) -> Tick:
    return Tick(ts_ns=ts, instrument_token=contract.instrument_token, last_price=price)


def make() -> tuple[PortfolioActor, list[PositionSnapshot]]:
    bus = EventBus()
    snapshots: list[PositionSnapshot] = []
    bus.tap(lambda e: snapshots.append(e) if type(e) is PositionSnapshot else None)
    return PortfolioActor(bus, CAPITAL), snapshots


def view(snapshot: PositionSnapshot, contract: OptionContract) -> PositionView:
    return next(p for p in snapshot.positions if p.contract.instrument_token == contract.instrument_token)


pytestmark = pytest.mark.usefixtures("quiet_logs")


# -- average price and realized P&L -------------------------------------------------------------------------------

def test_average_price_and_realized_pnl_on_partial_and_full_close() -> None:
    p, _ = make()
    p.apply_fill(fill(NIFTY_CE, Side.BUY, 65, 10_000))
    p.apply_fill(fill(NIFTY_CE, Side.BUY, 65, 10_200))
    snap = p.snapshot(T0)
    assert view(snap, NIFTY_CE).quantity == 130
    assert view(snap, NIFTY_CE).average_price == 10_100
    assert p.realized == 0

    p.apply_fill(fill(NIFTY_CE, Side.SELL, 65, 10_500))  # partial close
    assert p.position(101) == 65
    assert p.realized == 65 * (10_500 - 10_100)
    assert view(p.snapshot(T0), NIFTY_CE).average_price == 10_100  # unchanged by a reduction
    assert view(p.snapshot(T0), NIFTY_CE).realized == 26_000

    p.apply_fill(fill(NIFTY_CE, Side.SELL, 65, 9_900))  # full close at a loss
    assert p.position(101) == 0
    assert p.realized == 26_000 + 65 * (9_900 - 10_100)
    assert view(p.snapshot(T0), NIFTY_CE).average_price == 0
    assert p.unrealized == 0


def test_short_positions_realize_with_the_opposite_sign() -> None:
    p, _ = make()
    p.apply_fill(fill(BANK_CE, Side.SELL, 60, 20_000))
    assert p.position(201) == -60
    assert view(p.snapshot(T0), BANK_CE).average_price == 20_000
    p.apply_fill(fill(BANK_CE, Side.BUY, 30, 19_000))
    assert p.realized == 30 * 1_000
    assert p.position(201) == -30
    p.apply_fill(fill(BANK_CE, Side.BUY, 30, 21_000))
    assert p.realized == 30 * 1_000 - 30 * 1_000
    assert p.position(201) == 0


def test_positions_in_different_instruments_are_independent() -> None:
    p, _ = make()
    p.apply_fill(fill(NIFTY_CE, Side.BUY, 65, 10_000))
    p.apply_fill(fill(NIFTY_PE, Side.SELL, 65, 8_000))
    p.apply_fill(fill(NIFTY_CE, Side.SELL, 65, 10_100))
    assert p.position(101) == 0
    assert p.position(102) == -65
    assert p.realized == 65 * 100


_FILL = st.tuples(st.integers(0, 2), st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 400),
                  st.integers(1, 100_000).map(lambda x: x * 5), st.integers(0, 5_000))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(fills=st.lists(_FILL, max_size=40), closing_prices=st.lists(st.integers(1, 100_000), min_size=3, max_size=3))
def test_realized_pnl_is_exact_over_any_sequence_that_ends_flat(fills: list[tuple[int, Side, int, int, int]],
                                                                closing_prices: list[int]) -> None:
    p, _ = make()
    buys = sells = charges = 0
    net: dict[int, int] = {}
    seq: list[tuple[OptionContract, Side, int, int, int]] = []
    for idx, side, qty, price, fee in fills:
        contract = CONTRACTS[idx]
        seq.append((contract, side, qty, price, fee))
        net[idx] = net.get(idx, 0) + side.sign * qty
    for idx, qty in net.items():  # flatten whatever is left, at an arbitrary price
        if qty:
            side = Side.SELL if qty > 0 else Side.BUY
            seq.append((CONTRACTS[idx], side, abs(qty), closing_prices[idx] * 5, 0))
    for contract, side, qty, price, fee in seq:
        p.apply_fill(fill(contract, side, qty, price, charges=fee))
        if side is Side.BUY:
            buys += qty * price
        else:
            sells += qty * price
        charges += fee

    assert all(p.position(c.instrument_token) == 0 for c in CONTRACTS)
    assert p.realized == sells - buys
    assert isinstance(p.realized, int)
    assert p.unrealized == 0
    assert p.charges == charges
    assert p.equity == CAPITAL + sells - buys - charges
    assert sum(p.trade_pnls) == sells - buys - charges


# -- charges, unrealized, equity ----------------------------------------------------------------------------------

def test_charges_accumulate_from_fills() -> None:
    p, _ = make()
    trade_day = date(2026, 1, 12)
    legs = [(Side.BUY, 130, 10_000), (Side.SELL, 65, 10_400), (Side.SELL, 65, 10_450)]
    expected = 0
    for side, qty, price in legs:
        c = option_charges(exchange="NFO", side=side, quantity=qty, price=price, trade_date=trade_day).total
        assert c > 0
        expected += c
        p.apply_fill(fill(NIFTY_CE, side, qty, price, charges=c))
        assert p.charges == expected
    assert p.snapshot(T0).charges == expected
    assert p.realized == 65 * 400 + 65 * 450
    assert p.equity == CAPITAL + p.realized - expected
    assert p.summary().net_pnl == p.realized - expected


async def test_unrealized_follows_ticks_and_equity_adds_up() -> None:
    p, snaps = make()
    await p.handle(fill(NIFTY_CE, Side.BUY, 65, 10_000, ts=T0, charges=500))
    await p.handle(fill(BANK_CE, Side.SELL, 30, 20_000, ts=T0, charges=700))
    assert p.unrealized == 0
    await p.handle(tick(NIFTY_CE, 10_500, T0 + 2 * NS))
    await p.handle(tick(BANK_CE, 19_000, T0 + 2 * NS + 1))
    await p.handle(tick(NIFTY_PE, 1, T0 + 4 * NS))  # an instrument we do not hold changes nothing
    assert p.unrealized == 65 * 500 + 30 * 1_000
    assert view(p.snapshot(T0), NIFTY_CE).unrealized == 65 * 500
    assert view(p.snapshot(T0), BANK_CE).unrealized == 30 * 1_000
    assert view(p.snapshot(T0), BANK_CE).last_price == 19_000
    assert p.equity == CAPITAL + 0 - 1_200 + 62_500

    await p.handle(fill(NIFTY_CE, Side.SELL, 65, 10_600, ts=T0 + 5 * NS, charges=600))
    assert p.realized == 65 * 600
    assert p.unrealized == 30 * 1_000
    for s in snaps:
        assert s.equity == CAPITAL + s.realized - s.charges + s.unrealized
        assert s.unrealized == sum(v.unrealized for v in s.positions)
    assert snaps[-1].equity == CAPITAL + 39_000 - 1_800 + 30_000


async def test_a_duplicate_fill_id_is_ignored() -> None:
    p, _ = make()
    f = fill(NIFTY_CE, Side.BUY, 65, 10_000, charges=1_000, fill_id="DUP1")
    await p.handle(f)
    await p.handle(f)
    p.apply_fill(fill(NIFTY_CE, Side.BUY, 65, 12_000, charges=1_000, fill_id="DUP1"))  # same id, other data
    assert p.position(101) == 65
    assert p.charges == 1_000
    assert p.fills == 1
    assert view(p.snapshot(T0), NIFTY_CE).average_price == 10_000


# -- trades and summary ---------------------------------------------------------------------------------------------

async def test_round_trip_trades_and_summary() -> None:
    p, snaps = make()
    ts = itertools.count(T0, NS)
    legs = [
        (NIFTY_CE, Side.BUY, 65, 10_000), (NIFTY_CE, Side.SELL, 65, 10_400),  # +26 000 gross
        (NIFTY_CE, Side.BUY, 65, 10_000), (NIFTY_CE, Side.SELL, 65, 9_800),  # −13 000 gross
        (BANK_CE, Side.BUY, 30, 20_000), (BANK_CE, Side.SELL, 30, 21_000),  # +30 000 gross
    ]
    for contract, side, qty, price in legs:
        await p.handle(fill(contract, side, qty, price, ts=next(ts), charges=2_000))
    assert p.trade_pnls == [22_000, -17_000, 26_000]
    s = p.summary()
    assert (s.trades, s.wins, s.losses) == (3, 2, 1)
    assert s.win_rate == pytest.approx(2 / 3)
    assert s.profit_factor == pytest.approx(48_000 / 17_000)
    assert s.gross_pnl == 43_000
    assert s.charges == 12_000
    assert s.net_pnl == 31_000 == sum(p.trade_pnls)
    assert s.fills == 6
    assert s.open_positions == 0

    # Max drawdown over the published snapshots' equity (the peak starts at the capital).
    assert len(snaps) == 6
    peak, worst, worst_peak = CAPITAL, 0, CAPITAL
    for snap in snaps:
        peak = max(peak, snap.equity)
        if peak - snap.equity > worst:
            worst, worst_peak = peak - snap.equity, peak
    assert worst == 19_000  # from the CAPITAL + 22 000 peak down to CAPITAL + 3 000
    assert s.max_drawdown == worst
    assert s.max_drawdown_pct == pytest.approx(worst / worst_peak)


def test_summary_without_losses_has_no_profit_factor() -> None:
    p, _ = make()
    p.apply_fill(fill(NIFTY_CE, Side.BUY, 65, 10_000))
    p.apply_fill(fill(NIFTY_CE, Side.SELL, 65, 10_100))
    s = p.summary()
    assert s.profit_factor is None
    assert s.win_rate == 1.0
    assert p.trade_pnls == [6_500]


def test_scaling_out_is_one_round_trip() -> None:
    p, _ = make()
    p.apply_fill(fill(NIFTY_CE, Side.BUY, 130, 10_000, charges=100))
    p.apply_fill(fill(NIFTY_CE, Side.SELL, 65, 10_200, charges=100))
    assert p.trade_pnls == []
    p.apply_fill(fill(NIFTY_CE, Side.SELL, 65, 10_300, charges=100))
    assert p.trade_pnls == [65 * 200 + 65 * 300 - 300]


def test_a_fill_that_flips_the_position_closes_one_round_trip_and_opens_the_next() -> None:
    p, _ = make()
    p.apply_fill(fill(NIFTY_CE, Side.BUY, 65, 10_000))
    p.apply_fill(fill(NIFTY_CE, Side.SELL, 130, 10_400))  # closes the long, opens a short
    assert p.position(101) == -65
    assert p.realized == 65 * 400
    assert p.trade_pnls == [65 * 400], "the long round trip ended when the position crossed zero"
    p.apply_fill(fill(NIFTY_CE, Side.BUY, 65, 10_200))
    assert p.trade_pnls == [65 * 400, 65 * 200]
    assert p.summary().trades == 2


# -- day P&L and snapshots ------------------------------------------------------------------------------------------

async def test_day_pnl_is_rebased_when_the_ist_date_changes() -> None:
    p, snaps = make()
    day1 = date(2026, 1, 12).toordinal()
    day2 = date(2026, 1, 13).toordinal()
    # 23:00 IST on the 12th and 00:30 IST on the 13th are the same UTC date (17:30 and 19:00 UTC on the 12th).
    await p.handle(fill(NIFTY_CE, Side.BUY, 65, 10_000, ts=at(12, 23), charges=1_000))
    assert snaps[-1].session_day == day1
    assert snaps[-1].day_pnl == -1_000
    await p.handle(tick(NIFTY_CE, 10_500, at(12, 23, 30)))
    assert snaps[-1].day_pnl == 65 * 500 - 1_000
    assert snaps[-1].session_day == day1

    await p.handle(tick(NIFTY_CE, 10_500, at(13, 0, 30)))
    assert snaps[-1].session_day == day2
    assert snaps[-1].day_pnl == 0
    assert snaps[-1].equity == CAPITAL + 65 * 500 - 1_000

    # 05:00 and 06:00 IST on the 13th straddle UTC midnight: still the same IST session, no rebase.
    await p.handle(tick(NIFTY_CE, 10_600, at(13, 5)))
    await p.handle(tick(NIFTY_CE, 10_700, at(13, 6)))
    assert snaps[-1].session_day == day2
    assert snaps[-1].day_pnl == 65 * 200
    assert p.day_pnl == 65 * 200

    await p.handle(fill(NIFTY_CE, Side.SELL, 65, 10_800, ts=at(13, 10), charges=1_500))
    assert snaps[-1].day_pnl == 65 * 300 - 1_500
    assert snaps[-1].realized == 65 * 800


async def test_a_restart_keeps_the_days_pnl_from_the_saved_day_start() -> None:
    # The morning: bought at 100, sold at 90 (a ₹650 loss plus charges), then bought again at 100.
    morning = [fill(NIFTY_CE, Side.BUY, 65, 10_000, ts=at(12, 10), charges=1_000),
               fill(NIFTY_CE, Side.SELL, 65, 9_000, ts=at(12, 11), charges=1_000),
               fill(NIFTY_PE, Side.BUY, 65, 10_000, ts=at(12, 12), charges=1_000)]
    before, _ = make()
    await before.handle(tick(NIFTY_CE, 10_000, at(12, 9, 30)))  # the day starts at the capital
    for f in morning:
        await before.handle(f)
    await before.handle(tick(NIFTY_PE, 10_400, at(12, 13)))
    assert before.day_pnl == -65_000 - 3_000 + 65 * 400

    # Restarted the same day: the journal's fills, and the day start the risk manager saved.
    after, snaps = make()
    after.restore(morning, day_start=(date(2026, 1, 12), CAPITAL))
    await after.handle(tick(NIFTY_PE, 10_400, at(12, 14)))
    assert after.day_pnl == before.day_pnl and snaps[-1].day_pnl == before.day_pnl
    assert snaps[-1].session_day == date(2026, 1, 12).toordinal()
    # The next day starts from the equity at its first tick, as without a restart.
    await after.handle(tick(NIFTY_PE, 10_400, at(13, 9, 15)))
    assert after.day_pnl == 0


async def test_a_snapshot_is_published_on_every_fill() -> None:
    p, snaps = make()
    for i in range(5):
        await p.handle(fill(NIFTY_CE, Side.BUY, 65, 10_000 + i, ts=T0 + i))  # 1 ns apart: no throttling
    assert len(snaps) == 5
    assert [s.ts_ns for s in snaps] == [T0 + i for i in range(5)]
    assert view(snaps[-1], NIFTY_CE).quantity == 325


async def test_tick_driven_snapshots_are_throttled_to_one_per_second_of_event_time() -> None:
    p, snaps = make()
    await p.handle(fill(NIFTY_CE, Side.BUY, 65, 10_000, ts=T0))
    assert len(snaps) == 1
    step = NS // 10
    last_ts = T0
    for i in range(1, 301):  # 30 s of ticks, ten a second, every one moving the price
        last_ts = T0 + i * step
        await p.handle(tick(NIFTY_CE, 10_000 + i * 5, last_ts))
    tick_snaps = snaps[1:]
    gaps = [b.ts_ns - a.ts_ns for a, b in itertools.pairwise(snaps)]
    assert all(g >= NS for g in gaps), "more than one snapshot in a second of event time"
    assert 29 <= len(tick_snaps) <= 30
    assert tick_snaps[0].ts_ns == T0 + NS  # the first tick a full second after the fill's snapshot
    assert tick_snaps[-1].ts_ns == last_ts
    assert tick_snaps[-1].unrealized == 65 * 300 * 5

    # A fill is published at once, even a moment after a tick-driven snapshot.
    await p.handle(fill(NIFTY_CE, Side.SELL, 65, 11_000, ts=last_ts + 1))
    assert snaps[-1].ts_ns == last_ts + 1
    assert snaps[-1].realized == 65 * 1_000
