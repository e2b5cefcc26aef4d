"""Report metrics and the go-live checklist against hand-computed values (the arithmetic is in the comments)."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import date, time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trader.actors.portfolio import PortfolioActor
from trader.bus import EventBus
from trader.events import Fill, IntentPurpose, OrderType, Side
from trader.market.calendar import ist_ns
from trader.market.charges import option_charges
from trader.market.instruments import OptionContract, OptionType
from trader.report.checklist import PnlComparison, evaluate, evaluate_run
from trader.report.fill_metrics import (
    CHARGE_KINDS,
    FillRecord,
    charges_by_kind,
    exposure,
    fill_charge_breakdowns,
    percentile,
    slippage_report,
)
from trader.report.metrics import (
    Drawdown,
    daily_equity,
    daily_returns,
    drawdown,
    jsonable,
    run_metrics,
    sharpe_ratio,
    sortino_ratio,
    trade_stats,
)

S = 1_000_000_000  # ns per second
MON = date(2026, 11, 23)  # a Monday; the charge rates of 1 Apr 2026 (STT 0.15 %) are in force
TUE = date(2026, 11, 24)
FRI = date(2026, 11, 27)


def at(day: date, hh: int, mm: int, ss: int = 0) -> int:
    return ist_ns(day, time(hh, mm, ss))


# --- trade statistics --------------------------------------------------------------------------------------------


def test_trade_stats_mixed() -> None:
    # net P&L: +₹300, −₹100, +₹200, −₹50, ₹0
    stats = trade_stats([300_00, -100_00, 200_00, -50_00, 0])
    assert (stats.trades, stats.wins, stats.losses, stats.breakevens) == (5, 2, 2, 1)
    assert stats.win_rate == pytest.approx(0.4)  # 2 wins / 5 trades (the breakeven counts as a trade)
    assert stats.gross_profit == 500_00  # 300 + 200
    assert stats.gross_loss == 150_00  # 100 + 50
    assert stats.net_pnl == 350_00  # 500 − 150
    assert stats.profit_factor == pytest.approx(10 / 3)  # 50 000 / 15 000
    assert stats.average_win == pytest.approx(250_00)  # 50 000 / 2
    assert stats.average_loss == pytest.approx(75_00)  # 15 000 / 2
    assert stats.payoff_ratio == pytest.approx(10 / 3)  # 25 000 / 7 500
    # expectancy = 35 000 / 5 = 7 000 = 0.4 × 25 000 − 0.4 × 7 500
    assert stats.expectancy == pytest.approx(70_00)
    assert (stats.largest_win, stats.largest_loss) == (300_00, 100_00)


def test_trade_stats_no_trades() -> None:
    stats = trade_stats([])
    assert (stats.trades, stats.gross_profit, stats.gross_loss, stats.net_pnl) == (0, 0, 0, 0)
    assert stats.win_rate is None and stats.profit_factor is None and stats.expectancy is None
    assert stats.average_win is None and stats.average_loss is None and stats.payoff_ratio is None
    assert (stats.largest_win, stats.largest_loss) == (0, 0)


def test_trade_stats_all_wins_have_an_infinite_profit_factor() -> None:
    stats = trade_stats([100, 200])
    assert stats.profit_factor == math.inf  # 300 / 0 with a profit
    assert stats.win_rate == 1.0
    assert stats.average_win == pytest.approx(150)  # 300 / 2
    assert stats.average_loss is None and stats.payoff_ratio is None
    assert stats.expectancy == pytest.approx(150)


def test_trade_stats_all_losses() -> None:
    stats = trade_stats([-100, -300])
    assert stats.profit_factor == 0.0  # 0 / 400
    assert stats.win_rate == 0.0
    assert stats.average_loss == pytest.approx(200)  # 400 / 2
    assert stats.average_win is None
    assert stats.expectancy == pytest.approx(-200)  # −400 / 2
    assert stats.largest_loss == 300


def test_trade_stats_only_breakevens() -> None:
    stats = trade_stats([0, 0])
    assert stats.profit_factor is None  # 0 / 0
    assert (stats.win_rate, stats.breakevens, stats.expectancy) == (0.0, 2, 0.0)


@given(st.lists(st.integers(min_value=-10**9, max_value=10**9), max_size=60))
def test_trade_stats_consistent_with_sums(pnls: list[int]) -> None:
    stats = trade_stats(pnls)
    assert stats.wins + stats.losses + stats.breakevens == stats.trades == len(pnls)
    assert stats.gross_profit - stats.gross_loss == stats.net_pnl == sum(pnls)
    assert stats.gross_profit >= 0 and stats.gross_loss >= 0
    if stats.gross_loss:
        assert stats.profit_factor is not None
        assert stats.profit_factor * stats.gross_loss == pytest.approx(stats.gross_profit)
        assert (stats.profit_factor > 1) == (stats.net_pnl > 0)
    elif stats.gross_profit:
        assert stats.profit_factor == math.inf
    else:
        assert stats.profit_factor is None
    if pnls:
        assert stats.expectancy is not None and stats.win_rate is not None
        assert stats.expectancy == pytest.approx(sum(pnls) / len(pnls))
        loss_rate = stats.losses / stats.trades
        assert stats.expectancy == pytest.approx(stats.win_rate * (stats.average_win or 0)
                                                 - loss_rate * (stats.average_loss or 0), abs=1e-6)


# --- daily returns, Sharpe, Sortino ----------------------------------------------------------------------------

CAPITAL = 1_000_000  # ₹10,000
CURVE = [
    (at(MON, 9, 15), 1_000_000),
    (at(MON, 12, 0), 1_050_000),
    (at(MON, 15, 30), 1_020_000),  # Monday's close: +20 000 on 1 000 000 = +2 %
    (at(TUE, 10, 0), 1_000_000),
    (at(TUE, 15, 29), 1_071_000),  # Tuesday's close: +51 000 on 1 020 000 = +5 %
    (at(FRI, 15, 0), 1_017_450),  # Friday (Wed/Thu not traded): −53 550 on 1 071 000 = −5 %
]


def test_daily_equity_takes_the_last_sample_of_each_ist_day() -> None:
    days = daily_equity(CURVE, CAPITAL)
    assert [(d.day, d.equity, d.pnl) for d in days] == [
        (MON, 1_020_000, 20_000), (TUE, 1_071_000, 51_000), (FRI, 1_017_450, -53_550)]
    assert daily_returns(CURVE, CAPITAL) == pytest.approx([0.02, 0.05, -0.05])


def test_daily_equity_without_capital_starts_from_the_first_sample() -> None:
    curve = [(at(MON, 9, 15), 2_000), (at(MON, 15, 0), 2_100), (at(TUE, 15, 0), 2_079)]
    # Monday: 2 100 / 2 000 − 1 = 5 %; Tuesday: 2 079 / 2 100 − 1 = −1 %
    assert daily_returns(curve) == pytest.approx([0.05, -0.01])


def test_days_are_ist_days_not_utc_days() -> None:
    # 23:59:59 IST Monday is 18:29:59 UTC; one second later it is Tuesday in India (same UTC date).
    late_monday = at(MON, 23, 59, 59)
    curve = [(late_monday, 1_000), (late_monday + S, 1_010)]
    assert [d.day for d in daily_equity(curve)] == [MON, TUE]


def test_daily_equity_refuses_an_unsorted_curve() -> None:
    with pytest.raises(ValueError, match="time order"):
        daily_equity([(at(TUE, 10, 0), 1), (at(MON, 10, 0), 1)])


def test_sharpe_and_sortino_hand_computed() -> None:
    r = [0.02, 0.05, -0.05]
    # mean = 0.02 / 3 = 1/150 = 0.0066667
    # sample variance = (0.013333² + 0.043333² + 0.056667²) / 2 = 0.0052667 / 2 = 0.0026333 → sd 0.0513160
    # Sharpe = 0.0066667 / 0.0513160 × √252 (15.874508) = 0.1299140 × 15.874508 = 2.062320
    assert sharpe_ratio(r) == pytest.approx(2.062320, abs=1e-6)
    # downside deviation = √((0 + 0 + 0.05²) / 3) = √0.00083333 = 0.0288675
    # Sortino = 0.0066667 / 0.0288675 × 15.874508 = 0.2309401 × 15.874508 = 3.666061
    assert sortino_ratio(r) == pytest.approx(3.666061, abs=1e-6)
    # risk-free 2.52 % a year = 0.0001 a day: mean excess 0.0065667; Sharpe = 0.0065667 / 0.0513160 × 15.874508
    assert sharpe_ratio(r, risk_free_annual=0.0252) == pytest.approx(2.031385, abs=1e-6)
    assert sharpe_ratio(daily_returns(CURVE, CAPITAL)) == pytest.approx(2.062320, abs=1e-6)


def test_ratio_edge_cases() -> None:
    assert sharpe_ratio([]) is None and sortino_ratio([]) is None
    assert sharpe_ratio([0.01]) is None and sortino_ratio([0.01]) is None  # one day: no spread to measure
    assert sharpe_ratio([0.0, 0.0, 0.0]) is None  # flat equity: stdev 0
    assert sortino_ratio([0.01, 0.02]) is None  # no day below the target
    # two days, +1 % and −1 %: mean 0 → both 0.0
    assert sharpe_ratio([0.01, -0.01]) == 0.0 and sortino_ratio([0.01, -0.01]) == 0.0


# --- drawdown --------------------------------------------------------------------------------------------------

T0 = at(MON, 9, 15)


def curve_of(*equities: int) -> list[tuple[int, int]]:
    return [(T0 + i * 60 * S, e) for i, e in enumerate(equities)]  # one sample a minute


def test_drawdown_episode_and_recovery() -> None:
    # t:   0    1    2   3   4    5    6    7
    curve = curve_of(100, 120, 90, 60, 110, 120, 130, 117)
    dd = drawdown(curve)
    assert dd.max_drawdown == 60  # peak 120 (t1) → trough 60 (t3)
    assert dd.max_drawdown_pct == pytest.approx(0.5)  # 60 / 120
    assert (dd.peak_ns, dd.trough_ns, dd.recovery_ns) == (curve[1][0], curve[3][0], curve[5][0])  # back to 120 at t5
    assert dd.duration_ns == 4 * 60 * S  # t1 → t5
    assert dd.recovered
    assert dd.longest_ns == 4 * 60 * S  # the open episode 130 → 117 lasts t6 → t7 = 1 minute only


def test_drawdown_with_capital_above_the_first_sample_stays_open() -> None:
    curve = curve_of(100, 120, 90, 60, 110, 120, 130, 117)
    dd = drawdown(curve, initial_capital=150)
    assert dd.max_drawdown == 90  # 150 → 60
    assert dd.max_drawdown_pct == pytest.approx(0.6)  # 90 / 150
    assert (dd.peak_ns, dd.trough_ns, dd.recovery_ns) == (curve[0][0], curve[3][0], None)
    assert not dd.recovered
    assert dd.duration_ns == dd.longest_ns == 7 * 60 * S  # still open: t0 → end of curve (t7)


def test_drawdown_amount_and_percent_are_maximised_separately() -> None:
    # 1 000 → 500 is −500 (50 %); 10 000 → 9 000 is −1 000 (10 %)
    curve = curve_of(1_000, 500, 10_000, 9_000)
    dd = drawdown(curve)
    assert dd.max_drawdown == 1_000 and dd.max_drawdown_pct == pytest.approx(0.5)
    assert (dd.peak_ns, dd.trough_ns, dd.recovery_ns) == (curve[2][0], curve[3][0], None)
    assert dd.duration_ns == 60 * S
    # the longest time under water is the first episode (t0 → recovered at t2: 2 minutes), not the deepest one
    assert dd.longest_ns == 2 * 60 * S


def test_drawdown_flat_empty_and_rising() -> None:
    assert drawdown([]) == Drawdown(0, 0.0, None, None, None, 0, 0)
    assert drawdown(curve_of(100, 100, 100)) == Drawdown(0, 0.0, None, None, None, 0, 0)
    assert drawdown(curve_of(100, 101, 105)) == Drawdown(0, 0.0, None, None, None, 0, 0)
    one = drawdown(curve_of(100))
    assert one.max_drawdown == 0 and one.recovered


def brute_force_max_drawdown(equities: list[int]) -> int:
    return max((max(equities[: j + 1]) - equities[j] for j in range(len(equities))), default=0)


@given(st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=50))
def test_drawdown_properties(equities: list[int]) -> None:
    dd = drawdown(curve_of(*equities))
    assert dd.max_drawdown >= 0
    assert 0.0 <= dd.max_drawdown_pct < 1.0  # positive equity never falls 100 %
    assert dd.max_drawdown == brute_force_max_drawdown(equities)
    peaks = [max(equities[: j + 1]) for j in range(len(equities))]
    assert dd.max_drawdown_pct == pytest.approx(max((p - e) / p for p, e in zip(peaks, equities, strict=True)))
    assert 0 <= dd.duration_ns <= dd.longest_ns
    if dd.max_drawdown:
        assert dd.peak_ns is not None and dd.trough_ns is not None and dd.peak_ns < dd.trough_ns
        if dd.recovery_ns is not None:
            assert dd.trough_ns < dd.recovery_ns


# --- slippage --------------------------------------------------------------------------------------------------


def record(ts_ns: int, side: Side, quantity: int, price: int, expected: int, order_type: OrderType,
           order_id: str = "O1", token: int = 1, charges: int = 0) -> FillRecord:
    return FillRecord(ts_ns=ts_ns, order_id=order_id, instrument_token=token, exchange="NFO", side=side,
                      quantity=quantity, price=price, expected_price=expected, charges=charges,
                      order_type=order_type.value)


SLIPPED = [
    # BUY 75 @ ₹100.50 against ₹100.00: +50 paise = 50 × 10 000 / 10 000 = +50 bps
    record(at(MON, 9, 20), Side.BUY, 75, 100_50, 100_00, OrderType.MARKET),
    # SELL 75 @ ₹198 against ₹200: (19 800 − 20 000) × −1 = +200 paise = 200 × 10 000 / 20 000 = +100 bps
    record(at(MON, 9, 45), Side.SELL, 75, 198_00, 200_00, OrderType.MARKET),
    # BUY 150 @ ₹49.95 against ₹50: −5 paise = −5 × 10 000 / 5 000 = −10 bps (a better fill)
    record(at(MON, 10, 5), Side.BUY, 150, 49_95, 50_00, OrderType.LIMIT),
    # no expected price: no bps, no cost
    record(at(MON, 10, 30), Side.BUY, 75, 10_00, 0, OrderType.MARKET),
    # SELL 75 @ ₹79.60 against ₹80: +40 paise = 40 × 10 000 / 8 000 = +50 bps
    record(at(MON, 14, 10), Side.SELL, 75, 79_60, 80_00, OrderType.SL_M),
]


def test_slippage_distribution() -> None:
    report = slippage_report(SLIPPED)
    overall = report.overall
    assert overall.fills == 4  # the fill without an expected price is left out
    assert overall.mean_bps == pytest.approx(47.5)  # (50 + 100 − 10 + 50) / 4
    assert overall.median_bps == pytest.approx(50)  # sorted −10, 50, 50, 100: position 1.5 → 50
    assert overall.p90_bps == pytest.approx(85)  # position 3 × 0.9 = 2.7 → 50 + 0.7 × (100 − 50)
    assert overall.worst_bps == pytest.approx(100)
    assert overall.cost_paise == 21_000  # 50×75 + 200×75 − 5×150 + 40×75 = 3 750 + 15 000 − 750 + 3 000
    assert list(report.by_order_type) == ["LIMIT", "MARKET", "SL-M"]
    market = report.by_order_type["MARKET"]
    assert market.fills == 2
    assert market.mean_bps == pytest.approx(75) and market.median_bps == pytest.approx(75)
    assert market.p90_bps == pytest.approx(95)  # 50 + 0.9 × 50
    assert report.by_order_type["LIMIT"].mean_bps == pytest.approx(-10)
    assert report.by_order_type["SL-M"].p90_bps == pytest.approx(50)
    assert list(report.by_ist_hour) == [9, 10, 14]
    assert report.by_ist_hour[9].mean_bps == pytest.approx(75)
    assert report.by_ist_hour[10].fills == 1 and report.by_ist_hour[10].mean_bps == pytest.approx(-10)


def test_slippage_without_fills() -> None:
    report = slippage_report([])
    assert report.overall.fills == 0 and report.overall.mean_bps is None and report.overall.p90_bps is None
    assert report.by_order_type == {} and report.by_ist_hour == {}


def test_percentile_edges() -> None:
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.0) == 1.0 and percentile([1.0, 5.0], 1.0) == 5.0
    with pytest.raises(ValueError):
        percentile([], 0.5)
    with pytest.raises(ValueError):
        percentile([1.0], 1.5)


def test_fill_record_from_a_fill_measures_slippage_as_the_fill_does() -> None:
    contract = OptionContract(exchange="NFO", tradingsymbol="NIFTY26D0124000CE", underlying="NIFTY",
                              expiry=date(2026, 12, 1), strike=24_000_00, option_type=OptionType.CE, lot_size=75,
                              tick_size=5, instrument_token=4242)
    fill = Fill(ts_ns=at(MON, 9, 30), fill_id="F1", intent_id="I1", order_id="O9", contract=contract,
                side=Side.SELL, quantity=75, price=119_40, expected_price=120_00, charges=3_000,
                purpose=IntentPurpose.EXIT)
    rec = FillRecord.from_fill(fill, OrderType.LIMIT)
    assert (rec.order_id, rec.instrument_token, rec.exchange, rec.order_type) == ("O9", 4242, "NFO", "LIMIT")
    assert rec.slippage_paise == fill.slippage_paise == 60  # (11 940 − 12 000) × −1
    assert rec.slippage_bps == pytest.approx(fill.slippage_bps) == pytest.approx(50)  # 60 × 10 000 / 12 000


# --- charges by kind -------------------------------------------------------------------------------------------


def test_charges_by_kind_brokerage_once_per_order() -> None:
    # The fact sheet's NIFTY lot (buy 65 @ ₹100, sell 65 @ ₹110, NSE, after 1 Apr 2026), the buy filled in two parts.
    # Buy 40 @ ₹100 (order B1, first fill): premium ₹4 000 = 400 000 paise
    #   brokerage 2 000; exchange 400 000 × 0.0003553 = 142.12 → 142; SEBI 400 000 × 10⁻⁶ = 0.4 → 0;
    #   stamp 400 000 × 0.00003 = 12; GST 18 % × (2 000 + 142 + 0) = 385.56 → 386           total 2 540
    # Buy 25 @ ₹100 (order B1, second fill): premium 250 000 paise
    #   brokerage 0; exchange 88.825 → 89; SEBI 0.25 → 0; stamp 7.5 → 8 (half up); GST 18 % × 89 = 16.02 → 16
    #                                                                                          total   113
    # Sell 65 @ ₹110 (order S1): premium 715 000 paise
    #   brokerage 2 000; STT 0.15 % = 1 072.5 → 1 073; exchange 254.04 → 254; SEBI 0.715 → 1;
    #   GST 18 % × (2 000 + 254 + 1) = 405.9 → 406                                           total 3 734
    fills = [
        record(at(MON, 9, 30), Side.BUY, 40, 100_00, 100_00, OrderType.MARKET, order_id="B1", charges=2_540),
        record(at(MON, 9, 30, 1), Side.BUY, 25, 100_00, 100_00, OrderType.MARKET, order_id="B1", charges=113),
        record(at(MON, 11, 0), Side.SELL, 65, 110_00, 110_00, OrderType.MARKET, order_id="S1", charges=3_734),
    ]
    assert [b.total for b in fill_charge_breakdowns(fills)] == [2_540, 113, 3_734]
    charges = charges_by_kind(fills)
    assert charges.as_dict() == {"brokerage": 4_000, "stt": 1_073, "exchange_txn": 142 + 89 + 254, "sebi_fee": 1,
                                 "stamp_duty": 12 + 8, "gst": 386 + 16 + 406}
    assert list(charges.as_dict()) == list(CHARGE_KINDS)
    assert charges.total == charges.recorded == 6_387  # 2 540 + 113 + 3 734
    assert charges.unattributed == 0


def test_charges_the_run_recorded_differently_are_shown_as_unattributed() -> None:
    fills = [record(at(MON, 11, 0), Side.SELL, 65, 110_00, 110_00, OrderType.MARKET, order_id="S1", charges=3_750)]
    charges = charges_by_kind(fills)
    assert charges.total == 3_734 and charges.unattributed == 16  # 3 750 booked − 3 734 by the table


def test_charges_without_fills() -> None:
    charges = charges_by_kind([])
    assert charges.total == charges.recorded == charges.unattributed == 0


# --- exposure --------------------------------------------------------------------------------------------------


def test_exposure_time_and_premium() -> None:
    start, end = T0, T0 + 100 * S
    fills = [
        record(T0 + 10 * S, Side.BUY, 75, 100_00, 100_00, OrderType.MARKET, token=1),  # open 750 000
        record(T0 + 30 * S, Side.BUY, 50, 200_00, 200_00, OrderType.MARKET, token=2),  # open 750 000 + 1 000 000
        record(T0 + 50 * S, Side.SELL, 75, 110_00, 110_00, OrderType.MARKET, token=1),  # token 1 closed: 1 000 000
        record(T0 + 70 * S, Side.SELL, 25, 190_00, 190_00, OrderType.MARKET, token=2),  # half of token 2: 500 000
    ]
    exp = exposure(fills, start, end)
    assert exp.time_in_market == pytest.approx(0.9)  # open from t10 to the end (t100): 90 of 100 s
    assert exp.max_open_premium == 1_750_000
    assert exp.max_open_positions == 2
    # Σ premium × seconds = 750 000×20 + 1 750 000×20 + 1 000 000×20 + 500 000×30 = 85 000 000 → / 100 s
    assert exp.average_open_premium == pytest.approx(850_000)


def test_exposure_flat_between_trades_and_a_flip() -> None:
    start, end = T0, T0 + 100 * S
    fills = [
        record(T0, Side.BUY, 10, 100_00, 100_00, OrderType.MARKET),  # long 10: cost 100 000
        record(T0 + 20 * S, Side.SELL, 10, 120_00, 120_00, OrderType.MARKET),  # flat
        record(T0 + 60 * S, Side.BUY, 10, 100_00, 100_00, OrderType.MARKET),  # long 10 again
        record(T0 + 80 * S, Side.SELL, 30, 120_00, 120_00, OrderType.MARKET),  # flips to short 20: |−20 × 12 000|
    ]
    exp = exposure(fills, start, end)
    assert exp.time_in_market == pytest.approx(0.6)  # t0→t20 and t60→t100: 20 + 40 of 100 s
    assert exp.max_open_premium == 240_000
    # 100 000×20 + 100 000×20 + 240 000×20 = 2 000 000 + 2 000 000 + 4 800 000 = 8 800 000 → / 100 s = 88 000
    assert exp.average_open_premium == pytest.approx(88_000)


def test_exposure_edges() -> None:
    none = exposure([], T0, T0 + 10 * S)
    assert (none.time_in_market, none.max_open_premium, none.average_open_premium) == (0.0, 0, 0.0)
    assert exposure([], T0, T0).time_in_market is None
    free = exposure([record(T0 + 5 * S, Side.BUY, 10, 0, 0, OrderType.MARKET)], T0, T0 + 10 * S)
    assert (free.time_in_market, free.max_open_premium, free.max_open_positions) == (0.5, 0, 1)  # open, no premium
    with pytest.raises(ValueError, match="time order"):
        exposure([record(T0 + 5 * S, Side.BUY, 1, 1, 1, OrderType.MARKET),
                  record(T0 + 1 * S, Side.SELL, 1, 1, 1, OrderType.MARKET)], T0, T0 + 10 * S)
    with pytest.raises(ValueError, match="time order"):  # before the span, still out of order
        exposure([record(T0 - 1 * S, Side.BUY, 1, 1, 1, OrderType.MARKET),
                  record(T0 - 5 * S, Side.SELL, 1, 1, 1, OrderType.MARKET)], T0, T0 + 10 * S)


# --- the go-live checklist -------------------------------------------------------------------------------------

SIXTY_FORTY = trade_stats([1_000] * 60 + [-500] * 40)  # 100 trades; PF = 60 000 / 20 000 = 3.0


def dd_pct(pct: float) -> Drawdown:
    return Drawdown(round(pct * 1_000_000), pct, None, None, None, 0, 0)


def test_checklist_passes() -> None:
    result = evaluate(SIXTY_FORTY, dd_pct(0.05), 1.2, PnlComparison(live_net=9_000_00, backtest_net=10_000_00))
    assert [(i.name, i.passed) for i in result.items] == [
        ("trades", True), ("drawdown", True), ("sharpe", True), ("profit_factor", True), ("pnl_vs_backtest", True)]
    assert [i.figure for i in result.items] == [100.0, 0.05, 1.2, pytest.approx(3.0), -1_000.0]  # gap in rupees
    assert result.passed


def test_checklist_thresholds_are_strict_where_the_seed_says_so() -> None:
    stats = trade_stats([1_500] * 50 + [-1_000] * 49)  # 99 trades; PF = 75 000 / 49 000 = 1.53
    result = evaluate(stats, dd_pct(0.10), 1.0, PnlComparison(live_net=6_999, backtest_net=10_000))
    by_name = {i.name: i for i in result.items}
    assert by_name["trades"].passed is False  # 99 < 100
    assert by_name["drawdown"].passed is False  # 10 % is not < 10 %
    assert by_name["sharpe"].passed is False  # 1.0 is not > 1.0
    assert by_name["profit_factor"].passed is True  # 1.53 > 1.5
    assert by_name["pnl_vs_backtest"].passed is False  # gap 3 001 > 30 % × 10 000
    assert not result.passed
    exactly = evaluate(trade_stats([1_500] * 60 + [-1_000] * 60), dd_pct(0.0), 2.0)  # PF 90 000 / 60 000 = 1.5
    assert {i.name: i.passed for i in exactly.items}["profit_factor"] is False


def test_checklist_undefined_figures_fail_and_no_comparison_is_not_evaluated() -> None:
    result = evaluate(trade_stats([]), drawdown([]), None)
    by_name = {i.name: i for i in result.items}
    assert by_name["sharpe"].passed is False and by_name["sharpe"].figure is None
    assert by_name["profit_factor"].passed is False and "undefined" in by_name["profit_factor"].detail
    assert by_name["pnl_vs_backtest"].passed is None
    assert not result.passed
    all_wins = evaluate(trade_stats([100] * 100), dd_pct(0.0), 3.0, PnlComparison(100 * 100, 100 * 100))
    assert all_wins.passed  # PF ∞ passes
    assert "∞" in {i.name: i for i in all_wins.items}["profit_factor"].detail


# --- a run through the portfolio actor --------------------------------------------------------------------------


@pytest.mark.usefixtures("quiet_logs")
def test_run_metrics_agree_with_the_portfolio_that_booked_the_fills() -> None:
    ce = OptionContract.parse("NIFTY2611325000CE", instrument_token=101)
    capital = 1_000_000_00  # ₹10 lakh
    portfolio = PortfolioActor(EventBus(), capital)
    # (day, hh, mm, side, quantity, price, expected): three round trips on two days, one a loss
    plan = [(MON, 9, 30, Side.BUY, 65, 100_00, 99_50), (MON, 10, 0, Side.SELL, 65, 110_00, 110_50),
            (MON, 11, 0, Side.BUY, 65, 120_00, 120_00), (MON, 13, 0, Side.SELL, 65, 90_00, 91_00),
            (TUE, 9, 45, Side.BUY, 130, 80_00, 79_00), (TUE, 14, 0, Side.SELL, 130, 100_00, 100_00)]
    fills = []
    for n, (day, hh, mm, side, qty, price, expected) in enumerate(plan):
        charges = option_charges(exchange="NFO", side=side, quantity=qty, price=price, trade_date=day).total
        fills.append(Fill(ts_ns=at(day, hh, mm), fill_id=f"F{n}", intent_id=f"I{n}", order_id=f"O{n}",
                          contract=ce, side=side, quantity=qty, price=price, expected_price=expected,
                          charges=charges))
    for f in fills:
        asyncio.run(portfolio.handle(f))
    metrics = run_metrics(net_pnls=portfolio.trade_pnls, equity_curve=portfolio.equity_curve,
                          fills=[FillRecord.from_fill(f) for f in fills], initial_capital=capital)
    summary = portfolio.summary()
    assert metrics.trades.trades == summary.trades == 3
    assert metrics.trades.win_rate == pytest.approx(summary.win_rate)
    assert metrics.trades.profit_factor == pytest.approx(summary.profit_factor)
    assert metrics.trades.net_pnl == summary.net_pnl  # everything closed: Σ round trips = the account's net
    assert metrics.charges.recorded == metrics.charges.total == summary.charges
    assert metrics.drawdown.max_drawdown == summary.max_drawdown
    assert metrics.drawdown.max_drawdown_pct == pytest.approx(summary.max_drawdown_pct)
    assert [d.day for d in metrics.days] == [MON, TUE]
    assert metrics.days[-1].equity == capital + summary.net_pnl
    assert sum(d.pnl for d in metrics.days) == summary.net_pnl
    # Monday: +₹586.12 − ₹2,011.96 = −₹1,425.84 on ₹10,00,000; Tuesday: +₹2,523.15 on ₹9,98,574.16
    assert [d.pnl for d in metrics.days] == [-1_425_84, 2_523_15]
    returns = [-1_425_84 / 1_000_000_00, 2_523_15 / 998_574_16]
    assert [d.ret for d in metrics.days] == pytest.approx(returns)
    assert metrics.sharpe == pytest.approx(sharpe_ratio(returns))
    assert metrics.sortino == pytest.approx(sortino_ratio(returns))
    # exposure over the first to the last fill: in the market 9:30–10:00, 11:00–13:00, Tue 9:45–14:00 (all of it)
    in_market = (30 + 120 + 255) * 60 * S
    assert metrics.exposure.time_in_market == pytest.approx(in_market / (fills[-1].ts_ns - fills[0].ts_ns))
    # on this run (3 trades, one loss) the checklist fails on the number of trades, and says so
    checks = {i.name: i for i in evaluate_run(metrics).items}
    assert checks["trades"].passed is False and checks["trades"].figure == 3.0
    # peak ₹10,00,586.12 after Monday's first trade; trough ₹9,98,545.87 right after Tuesday's entry, whose charges
    # (130 @ ₹80: brokerage 2 000 + exchange 370 + SEBI 1 + stamp 31 + GST 427 = 2 829 paise) are booked at the fill:
    # 998 574.16 − 28.29; drawdown ₹2,040.25 = 204 025 / 100 058 612 = 0.204 %
    assert checks["drawdown"].passed is True
    assert metrics.drawdown.max_drawdown == 1_000_586_12 - (998_574_16 - 28_29) == 2_040_25
    assert checks["drawdown"].figure == pytest.approx(2_040_25 / 1_000_586_12)
    # the whole thing as strict JSON (the run folder's summary): ∞ and dates become text, money stays paise
    data = json.loads(json.dumps(jsonable(metrics), allow_nan=False))
    assert data["trades"]["net_pnl"] == summary.net_pnl
    assert data["days"][0]["day"] == "2026-11-23"
    assert data["slippage"]["by_ist_hour"]["9"]["fills"] == 2
    assert jsonable(trade_stats([5]))["profit_factor"] == "inf"  # type: ignore[index]


@given(st.lists(st.floats(min_value=-0.2, max_value=0.2), min_size=2, max_size=30),
       st.floats(min_value=0.01, max_value=100))
def test_sharpe_and_sortino_do_not_depend_on_the_scale_of_returns(returns: list[float], k: float) -> None:
    sharpe, scaled = sharpe_ratio(returns), sharpe_ratio([k * r for r in returns])
    if sharpe is not None and scaled is not None and abs(sharpe) > 1e-6:
        assert scaled == pytest.approx(sharpe, rel=1e-6)
    sortino, scaled = sortino_ratio(returns), sortino_ratio([k * r for r in returns])
    if sortino is not None and scaled is not None and abs(sortino) > 1e-6:
        assert scaled == pytest.approx(sortino, rel=1e-6)


@given(st.lists(st.tuples(st.integers(0, 100), st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 200),
                          st.integers(0, 50_000), st.integers(1, 3)), max_size=30))
def test_exposure_properties(rows: list[tuple[int, Side, int, int, int]]) -> None:
    fills = [record(T0 + t * S, side, qty, price, price, OrderType.MARKET, token=token)
             for t, side, qty, price, token in sorted(rows, key=lambda r: r[0])]
    exp = exposure(fills, T0, T0 + 100 * S)
    assert exp.time_in_market is not None and 0.0 <= exp.time_in_market <= 1.0
    assert exp.average_open_premium is not None and 0.0 <= exp.average_open_premium <= exp.max_open_premium
    assert 0 <= exp.max_open_positions <= 3


@pytest.mark.usefixtures("quiet_logs")
def test_final_equity_completes_a_curve_sampled_once_a_minute() -> None:
    ce = OptionContract.parse("NIFTY2611325000CE", instrument_token=101)
    capital = 1_000_000_00
    portfolio = PortfolioActor(EventBus(), capital)
    t = at(MON, 10, 0)
    for n, (side, price, dt) in enumerate([(Side.BUY, 100_00, 0), (Side.SELL, 150_00, 10)]):
        asyncio.run(portfolio.handle(Fill(ts_ns=t + dt * S, fill_id=f"F{n}", intent_id=f"I{n}", order_id=f"O{n}",
                                          contract=ce, side=side, quantity=65, price=price, expected_price=price,
                                          charges=0)))
    assert portfolio.equity_curve == [(t, capital)]  # the sell, 10 s later, is not sampled
    without = run_metrics(net_pnls=portfolio.trade_pnls, equity_curve=portfolio.equity_curve, fills=[],
                          initial_capital=capital)
    assert without.days[-1].pnl == 0  # stale
    final = (t + 10 * S, portfolio.equity)
    metrics = run_metrics(net_pnls=portfolio.trade_pnls, equity_curve=portfolio.equity_curve, fills=[],
                          initial_capital=capital, final_equity=final)
    assert metrics.days[-1].pnl == 65 * (150_00 - 100_00) == 3_250_00
    again = run_metrics(net_pnls=[], equity_curve=[(t, capital), final], fills=[], initial_capital=capital,
                        final_equity=final)
    assert len(again.days) == 1 and again.days[0].equity == final[1]


def test_checklist_drawdown_without_an_equity_curve_is_undefined_not_a_pass() -> None:
    """A run folder with trades but no equity sample (a crash before the first, a broken table) has a drawdown of 0
    only because nothing was measured: "max drawdown < 10 %" must fail as undefined, not pass on 0.00 %."""
    metrics = run_metrics(net_pnls=[1_000] * 100, equity_curve=[], fills=[], initial_capital=1_000_000_00)
    item = {i.name: i for i in evaluate_run(metrics).items}["drawdown"]
    assert item.passed is False and item.figure is None and "no equity curve" in item.detail
    measured = run_metrics(net_pnls=[1_000], equity_curve=[(ist_ns(MON, time(10, 0)), 1_000_000_00)], fills=[],
                           initial_capital=1_000_000_00)
    assert {i.name: i for i in evaluate_run(measured).items}["drawdown"].passed is True
