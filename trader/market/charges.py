"""Zerodha charges on index-option orders, in exact integer paise.

Rates come from the fact sheet (docs/reference/india-fno-facts.md) §3 (compiled 24 Nov 2026) and are kept as
``Fraction``s so nothing is lost
to binary floating point; each component is computed per order (or per fill) and rounded half-up to the
paisa. Contract notes round STT and stamp duty to the rupee on the day's aggregate, so a day's total here
can differ from the note by a rupee or two.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from types import MappingProxyType

from trader.events import Side

_PER_CRORE = Fraction(1, 10**7)  # ₹1 per crore (10^7 rupees) of premium


@dataclass(frozen=True, slots=True)
class ChargeRates:
    """Rates in force from ``effective_from`` until the next row's date; fractions of premium turnover."""

    effective_from: date
    brokerage_per_order: int  # paise, flat per executed order
    stt_on_sale: Fraction  # sell side only
    exchange_txn: Mapping[str, Fraction]  # by venue ("NSE"/"BSE"), both sides, IPFT included
    sebi_fee: Fraction  # both sides
    stamp_duty_on_buy: Fraction  # buy side only
    gst: Fraction  # on brokerage + exchange transaction charge + SEBI fee


def _rates(effective_from: date, stt_on_sale: Fraction) -> ChargeRates:
    return ChargeRates(
        effective_from=effective_from,
        brokerage_per_order=20_00,  # ₹20 flat per executed order for options [V]
        stt_on_sale=stt_on_sale,
        # NSE ₹3,503/cr + ₹50/cr IPFT = 0.03553 % (re-split to 3,552 + 1 on 1 Mar 2026, same total) [V];
        # BSE ₹3,250/cr for SENSEX/BANKEX options [V/S]. Both from 1 Oct 2024.
        exchange_txn=MappingProxyType({"NSE": 3_553 * _PER_CRORE, "BSE": 3_250 * _PER_CRORE}),
        sebi_fee=10 * _PER_CRORE,  # ₹10/crore [V]
        stamp_duty_on_buy=Fraction(3, 100_000),  # 0.003 % [V]
        gst=Fraction(18, 100),  # [V]
    )


# The table starts on 1 Oct 2024, when SEBI's circular of 1 Jul 2024 made exchange fees flat: before
# that, exchanges charged volume slabs, so there is no single rate to apply (STT was then 0.0625 %).
CHARGE_RATES: tuple[ChargeRates, ...] = (
    _rates(date(2024, 10, 1), stt_on_sale=Fraction(1, 1_000)),  # STT 0.10 %
    _rates(date(2026, 4, 1), stt_on_sale=Fraction(15, 10_000)),  # STT 0.15 % from 1 Apr 2026
)

_VENUES: Mapping[str, str] = MappingProxyType({"NFO": "NSE", "NSE": "NSE", "BFO": "BSE", "BSE": "BSE"})


@dataclass(frozen=True, slots=True)
class ChargeBreakdown:
    """Charges of one order or fill, each in paise."""

    brokerage: int
    stt: int
    exchange_txn: int
    sebi_fee: int
    stamp_duty: int
    gst: int

    @property
    def total(self) -> int:
        return self.brokerage + self.stt + self.exchange_txn + self.sebi_fee + self.stamp_duty + self.gst


def option_charges(*, exchange: str, side: str | Side, quantity: int, price: int, trade_date: date,
                   include_brokerage: bool = True) -> ChargeBreakdown:
    """Zerodha's charges for buying or selling ``quantity`` option units at ``price`` paise.

    ``exchange`` is the F&O or the cash exchange (``NFO``/``NSE`` or ``BFO``/``BSE``). Zerodha charges
    brokerage once per executed order, so pass ``include_brokerage=False`` for the second and later
    fills of one order.
    """
    venue = _VENUES.get(exchange)
    if venue is None:
        raise ValueError(f"unknown exchange {exchange!r}; expected one of {', '.join(_VENUES)}")
    if side not in (Side.BUY, Side.SELL):
        raise ValueError(f"side must be BUY or SELL, got {side!r}")
    if quantity <= 0:
        raise ValueError(f"quantity must be positive, got {quantity}")
    if price < 0:
        raise ValueError(f"price must not be negative, got {price} paise")
    rates = _rates_on(trade_date)
    premium = quantity * price
    brokerage = rates.brokerage_per_order if include_brokerage else 0
    exchange_txn = _round_half_up(premium * rates.exchange_txn[venue])
    sebi_fee = _round_half_up(premium * rates.sebi_fee)
    return ChargeBreakdown(
        brokerage=brokerage,
        stt=_round_half_up(premium * rates.stt_on_sale) if side == Side.SELL else 0,
        exchange_txn=exchange_txn,
        sebi_fee=sebi_fee,
        stamp_duty=_round_half_up(premium * rates.stamp_duty_on_buy) if side == Side.BUY else 0,
        gst=_round_half_up((brokerage + exchange_txn + sebi_fee) * rates.gst),
    )


def _rates_on(trade_date: date) -> ChargeRates:
    in_force = [rates for rates in CHARGE_RATES if rates.effective_from <= trade_date]
    if not in_force:
        raise ValueError(
            f"no charge rates for {trade_date.isoformat()}; the table starts on "
            f"{CHARGE_RATES[0].effective_from.isoformat()}"
        )
    return in_force[-1]


def _round_half_up(paise: Fraction) -> int:
    return (paise.numerator * 2 + paise.denominator) // (paise.denominator * 2)
