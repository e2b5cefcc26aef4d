"""Position accounting in exact integer paise, shared by the portfolio and the risk manager.

Cost basis is kept as an exact integer sum; a reduction removes a proportional share of it and a close removes all
of it, so over every round trip realized P&L equals sells minus buys to the paisa.
"""

from __future__ import annotations

from dataclasses import dataclass

from trader.events import Side
from trader.market.instruments import OptionContract


@dataclass(slots=True)
class BookPosition:
    contract: OptionContract
    quantity: int = 0  # signed units
    cost: int = 0  # signed: Σ side × qty × price of the open part
    realized: int = 0
    last_price: int = 0
    trade_realized: int = 0  # since the position last opened
    trade_charges: int = 0

    @property
    def unrealized(self) -> int:
        return self.quantity * self.last_price - self.cost if self.quantity and self.last_price else 0

    @property
    def average_price(self) -> int:
        return round(self.cost / self.quantity) if self.quantity else 0


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    contract: OptionContract
    gross: int
    charges: int

    @property
    def net(self) -> int:
        return self.gross - self.charges


class PositionBook:
    def __init__(self) -> None:
        self.positions: dict[int, BookPosition] = {}
        self.realized = 0
        self.charges = 0

    @property
    def unrealized(self) -> int:
        return sum(p.unrealized for p in self.positions.values())

    def open_positions(self) -> list[BookPosition]:
        return [p for p in self.positions.values() if p.quantity]

    def quantity(self, instrument_token: int) -> int:
        position = self.positions.get(instrument_token)
        return position.quantity if position else 0

    def mark(self, instrument_token: int, price: int) -> bool:
        """Update the mark of an open position; True if its unrealized P&L changed."""
        position = self.positions.get(instrument_token)
        if position is None or not position.quantity or price == position.last_price or price <= 0:
            return False
        position.last_price = price
        return True

    def apply(self, contract: OptionContract, side: Side, quantity: int, price: int,
              charges: int = 0) -> ClosedTrade | None:
        """Book one fill; returns the round trip it closed, if any (a flip closes one and opens the next)."""
        if quantity <= 0 or price < 0:
            raise ValueError(f"a fill needs a positive quantity and a price >= 0, got {quantity} @ {price}")
        token = contract.instrument_token
        pos = self.positions.get(token)
        if pos is None:
            pos = self.positions[token] = BookPosition(contract)
        sign = side.sign
        remaining = quantity
        self.charges += charges
        closed: ClosedTrade | None = None
        if pos.quantity and (pos.quantity > 0) != (sign > 0):
            closing = min(remaining, abs(pos.quantity))
            removed = pos.cost if closing == abs(pos.quantity) else pos.cost * closing // abs(pos.quantity)
            pnl = -sign * closing * price - removed
            pos.realized += pnl
            pos.trade_realized += pnl
            self.realized += pnl
            pos.cost -= removed
            pos.quantity += sign * closing
            remaining -= closing
            # A fill that flips the position closes one round trip and opens another: split its charges.
            closing_charges = charges * closing // quantity
            pos.trade_charges += closing_charges
            if pos.quantity == 0:
                closed = ClosedTrade(contract, pos.trade_realized, pos.trade_charges)
                pos.trade_realized = pos.trade_charges = 0
            pos.trade_charges += charges - closing_charges
        else:
            pos.trade_charges += charges
        if remaining:
            pos.quantity += sign * remaining
            pos.cost += sign * remaining * price
        if pos.quantity:
            pos.last_price = price
        return closed
