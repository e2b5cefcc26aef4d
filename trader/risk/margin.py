"""The margin model, used where the broker gives no figure (paper mode and the seed's library API).

Longs block their premium (paid up front); shorts block roughly SPAN + exposure, modelled as a flat share of the strike
notional (NSE's SPAN for index options is around 12 % of the notional). A model, not the exchange's number: live mode
passes Kite's order-margin and funds figures instead.
"""

from __future__ import annotations

from trader.book import PositionBook
from trader.events import Side
from trader.market.instruments import OptionContract

SHORT_OPTION_MARGIN_PCT = 12


def short_option_margin(strike: int, quantity: int) -> int:
    """Modelled SPAN + exposure for ``quantity`` short units at ``strike`` (paise)."""
    return quantity * strike * SHORT_OPTION_MARGIN_PCT // 100


def modelled_account_margin(book: PositionBook, capital: int) -> tuple[int, int]:
    """(used, available) paise: longs block their premium, shorts an estimate of SPAN + exposure."""
    open_positions = book.open_positions()
    open_cost = sum(p.cost for p in open_positions)
    cash = capital + book.realized - book.charges - open_cost
    short_margin = sum(short_option_margin(p.contract.strike, -p.quantity) for p in open_positions if p.quantity < 0)
    long_premium = sum(p.cost for p in open_positions if p.quantity > 0)
    return long_premium + short_margin, cash - short_margin


def modelled_order_margin(book: PositionBook, contract: OptionContract, side: Side, quantity: int, price: int) -> int:
    """Paise the order would block; 0 for the part that only reduces a held position."""
    held = book.quantity(contract.instrument_token)
    opening = quantity if held * side.sign >= 0 else max(quantity - abs(held), 0)
    if opening == 0:
        return 0
    if side is Side.BUY:
        return opening * price
    return short_option_margin(contract.strike, opening)
