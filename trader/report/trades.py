"""Round trips (flat → flat on one contract) from a run's fills, booked by the same ``PositionBook`` the portfolio
uses, so a run folder's trades agree to the paisa with the portfolio's trade P&Ls (``PortfolioActor.trade_pnls``).

Pure: no clock, no I/O. A fill that flips a position closes one trade and opens the next at the same price; its
charges are split as the book splits them (pro rata of the quantity). Positions still open at the end are no trade.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from trader.book import PositionBook
from trader.market.instruments import OptionContract, OptionType
from trader.runs.model import FillRow, OrderRow, TradeRow

_NO_DATE = date(2000, 1, 1)


def _contract(fill: FillRow) -> OptionContract:
    """The book keys positions by instrument token only; the rest is a placeholder that passes the checks."""
    exchange = fill.exchange if fill.exchange in ("NFO", "BFO") else "NFO"
    return OptionContract(exchange=exchange, tradingsymbol=fill.tradingsymbol, underlying="", expiry=_NO_DATE,
                          strike=1, option_type=OptionType.CE, lot_size=1, tick_size=1,
                          instrument_token=fill.instrument_token)


@dataclass(slots=True)
class _Open:
    strategy_id: str
    entry_intent_id: str
    entry_ns: int
    direction: str
    max_quantity: int = 0
    in_value: int = 0  # Σ qty × price of the fills that opened or added
    in_quantity: int = 0
    out_value: int = 0  # Σ qty × price of the fills that reduced or closed
    out_quantity: int = 0


def _vwap(value: int, quantity: int) -> int:
    return round(value / quantity) if quantity else 0


def round_trips(fills: Iterable[FillRow], orders: Sequence[OrderRow] = ()) -> list[TradeRow]:
    """The closed round trips of ``fills`` (in the order given: the order they were booked), in closing order.

    ``orders`` supplies each trade's signal (the entry intent's) and exit reason (the closing intent's); a fill whose
    intent is not among them (a manual or adopted position) leaves those "". A repeated ``fill_id`` is booked once,
    as the portfolio does."""
    by_intent = {order.intent_id: order for order in orders}
    book = PositionBook()
    open_trades: dict[int, _Open] = {}
    seen: set[str] = set()
    trades: list[TradeRow] = []
    for fill in fills:
        if fill.fill_id in seen:
            continue
        seen.add(fill.fill_id)
        token = fill.instrument_token
        before = book.quantity(token)
        closed = book.apply(_contract(fill), fill.side, fill.quantity, fill.price, fill.charges)
        after = book.quantity(token)
        sign = fill.side.sign
        reducing = min(fill.quantity, abs(before)) if before and (before > 0) != (sign > 0) else 0
        current = open_trades.get(token)
        if current is not None and reducing:
            current.out_value += reducing * fill.price
            current.out_quantity += reducing
        if closed is not None and current is not None:
            entry = by_intent.get(current.entry_intent_id)
            exit_order = by_intent.get(fill.intent_id)
            trades.append(TradeRow(
                strategy_id=current.strategy_id, signal_id=entry.signal_id if entry is not None else "",
                instrument_token=token, tradingsymbol=fill.tradingsymbol, direction=current.direction,
                quantity=current.max_quantity, entry_ns=current.entry_ns, exit_ns=fill.ts_ns,
                entry_price=_vwap(current.in_value, current.in_quantity),
                exit_price=_vwap(current.out_value, current.out_quantity),
                gross=closed.gross, charges=closed.charges, net=closed.net,
                exit_reason=exit_order.reason if exit_order is not None else "",
                entry_intent_id=current.entry_intent_id, exit_intent_id=fill.intent_id))
            del open_trades[token]
            current = None
        opening = fill.quantity - reducing
        if opening and after:
            if current is None:
                current = open_trades[token] = _Open(strategy_id=fill.strategy_id, entry_intent_id=fill.intent_id,
                                                     entry_ns=fill.ts_ns, direction="long" if after > 0 else "short")
            current.in_value += opening * fill.price
            current.in_quantity += opening
        if current is not None:
            current.max_quantity = max(current.max_quantity, abs(after))
    return trades
