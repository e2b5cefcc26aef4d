"""Zerodha option charges in paise against the fact sheet's worked examples (§3)."""

from __future__ import annotations

from datetime import date
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trader.events import Side
from trader.market.charges import CHARGE_RATES, ChargeBreakdown, option_charges

AFTER_APRIL_2026 = date(2026, 4, 1)
BEFORE_APRIL_2026 = date(2026, 3, 31)


def round_trip(exchange: str, quantity: int, buy_price: int, sell_price: int,
               trade_date: date) -> tuple[ChargeBreakdown, ChargeBreakdown]:
    buy = option_charges(exchange=exchange, side="BUY", quantity=quantity, price=buy_price, trade_date=trade_date)
    sell = option_charges(exchange=exchange, side=Side.SELL, quantity=quantity, price=sell_price,
                          trade_date=trade_date)
    return buy, sell


def test_worked_example_nifty_lot_after_april_2026() -> None:
    # Buy 65 @ ₹100, sell 65 @ ₹110 on NSE: the fact sheet's table.
    buy, sell = round_trip("NFO", 65, 100_00, 110_00, AFTER_APRIL_2026)
    assert buy.brokerage + sell.brokerage == 4000
    assert (buy.stt, sell.stt) == (0, 1073)  # 0.15 % × ₹7,150 = ₹10.725, rounded half-up
    assert buy.exchange_txn + sell.exchange_txn == 485
    assert (buy.stamp_duty, sell.stamp_duty) == (20, 0)  # 0.003 % × ₹6,500 = ₹0.195
    assert buy.gst + sell.gst == 808
    assert buy.sebi_fee + sell.sebi_fee == 2  # ₹0.0065 + ₹0.00715, each order rounded up to a paisa
    assert abs(buy.total + sell.total - 6386) <= 2  # ≈ ₹63.86
    assert buy.total + sell.total == 6388


def test_worked_example_before_april_2026_uses_the_old_stt() -> None:
    buy, sell = round_trip("NSE", 65, 100_00, 110_00, BEFORE_APRIL_2026)
    assert sell.stt == 715  # 0.10 % × ₹7,150
    assert abs(buy.total + sell.total - 6028) <= 2  # ≈ ₹60.28


def test_sensex_lot_on_bse() -> None:
    buy, sell = round_trip("BFO", 20, 100_00, 110_00, date(2026, 6, 1))
    assert buy.exchange_txn + sell.exchange_txn == 65 + 72  # 0.0325 % × ₹2,000 and × ₹2,200
    assert buy.sebi_fee + sell.sebi_fee == 0
    assert buy.total + sell.total == 5218  # ≈ ₹52.18


def test_per_order_components() -> None:
    buy = option_charges(exchange="NFO", side="BUY", quantity=65, price=100_00, trade_date=AFTER_APRIL_2026)
    assert buy == ChargeBreakdown(brokerage=2000, stt=0, exchange_txn=231, sebi_fee=1, stamp_duty=20, gst=402)
    assert buy.total == 2654


def test_later_fills_of_one_order_carry_no_brokerage() -> None:
    first = option_charges(exchange="NFO", side="SELL", quantity=65, price=110_00, trade_date=AFTER_APRIL_2026)
    later = option_charges(exchange="NFO", side="SELL", quantity=65, price=110_00, trade_date=AFTER_APRIL_2026,
                           include_brokerage=False)
    assert first.brokerage == 2000
    assert later.brokerage == 0
    assert later.gst == 46  # 18 % × (₹2.54 + ₹0.01)
    assert (later.stt, later.exchange_txn, later.sebi_fee) == (first.stt, first.exchange_txn, first.sebi_fee)


def test_exchange_names_map_to_their_venue() -> None:
    def txn(exchange: str) -> int:
        return option_charges(exchange=exchange, side="BUY", quantity=1000, price=100_00,
                              trade_date=AFTER_APRIL_2026).exchange_txn

    assert txn("NFO") == txn("NSE") == 3553  # 0.03553 % × ₹1 lakh
    assert txn("BFO") == txn("BSE") == 3250  # 0.0325 %


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"exchange": "MCX"}, "unknown exchange 'MCX'"),
        ({"exchange": "nfo"}, "unknown exchange 'nfo'"),
        ({"side": "HOLD"}, "side must be BUY or SELL"),
        ({"quantity": 0}, "quantity must be positive"),
        ({"price": -5}, "price must not be negative"),
        ({"trade_date": date(2024, 9, 30)}, "no charge rates for 2024-09-30"),
    ],
)
def test_invalid_arguments_are_refused(changes: dict[str, object], problem: str) -> None:
    arguments: dict[str, object] = {
        "exchange": "NFO", "side": "BUY", "quantity": 65, "price": 100_00, "trade_date": AFTER_APRIL_2026,
    }
    with pytest.raises(ValueError, match=problem):
        option_charges(**(arguments | changes))  # type: ignore[arg-type]  # invalid on purpose


def test_rates_table_is_effective_dated() -> None:
    starts = [rates.effective_from for rates in CHARGE_RATES]
    assert starts == sorted(starts) == [date(2024, 10, 1), date(2026, 4, 1)]

    def stt_on_sale(trade_date: date) -> int:
        return option_charges(exchange="NFO", side="SELL", quantity=1000, price=100_00,
                              trade_date=trade_date).stt

    assert stt_on_sale(date(2024, 10, 1)) == 100_00  # 0.10 % of ₹1 lakh
    assert stt_on_sale(date(2026, 3, 31)) == 100_00
    assert stt_on_sale(date(2026, 4, 1)) == 150_00  # 0.15 %


@given(
    exchange=st.sampled_from(["NFO", "BFO"]),
    side=st.sampled_from(Side),
    quantity=st.integers(min_value=1, max_value=10_000),
    price=st.integers(min_value=0, max_value=100_000_00),
    trade_date=st.dates(min_value=date(2024, 10, 1), max_value=date(2030, 12, 31)),
)
def test_each_component_is_the_exact_amount_rounded_half_up(exchange: str, side: Side, quantity: int, price: int,
                                                             trade_date: date) -> None:
    charges = option_charges(exchange=exchange, side=side, quantity=quantity, price=price, trade_date=trade_date)
    premium = Fraction(quantity * price)
    stt_rate = Fraction(15, 10_000) if trade_date >= date(2026, 4, 1) else Fraction(1, 1_000)
    txn_rate = Fraction(3553, 10**7) if exchange == "NFO" else Fraction(3250, 10**7)
    exact = {
        "stt": premium * stt_rate if side is Side.SELL else Fraction(0),
        "exchange_txn": premium * txn_rate,
        "sebi_fee": premium * Fraction(10, 10**7),
        "stamp_duty": premium * Fraction(3, 100_000) if side is Side.BUY else Fraction(0),
        "gst": Fraction(18, 100) * (2000 + charges.exchange_txn + charges.sebi_fee),
    }
    for component, amount in exact.items():
        charged = getattr(charges, component)
        assert amount - Fraction(1, 2) < charged <= amount + Fraction(1, 2), component
    assert charges.brokerage == 2000
    assert charges.total == (charges.brokerage + charges.stt + charges.exchange_txn + charges.sebi_fee
                             + charges.stamp_duty + charges.gst)
