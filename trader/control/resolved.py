"""What resolving a manual order answers: ``ResolvedOrder`` (one listed contract, quantity and prices, with its
``OrderIntent`` and its JSON view) or ``OrderSpecError`` (which request field to fix, and why). The resolving itself
is ``trader/control/resolve.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trader.events import IntentPurpose, OrderIntent, OrderType, Side
from trader.market.instruments import OptionContract
from trader.money import to_rupees
from trader.strategies.adopted import MANUAL_STRATEGY_ID


class OrderSpecError(ValueError):
    """The order cannot be resolved to one listed contract and price: ``field`` names the request field to fix,
    ``message`` says why and what would work; ``str()`` is ``"field: message"``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class ResolvedOrder:
    """A manual order made exact. Prices are paise; ``limit_price`` / ``trigger_price`` are 0 where the order type
    has none; ``spot`` is the index's last price (0 when it is not streaming, possible only for a named contract);
    ``how`` says in one sentence how the instrument was found."""

    contract: OptionContract
    side: Side
    quantity: int  # units, a whole number of lots
    lots: int
    order_type: OrderType
    expected_price: int  # the quote the order is judged against: BUY ask, SELL bid, else the last price
    limit_price: int
    trigger_price: int
    market_protection: float
    spot: int
    expiry_defaulted: bool  # True when the request gave no expiry and the nearest open one was taken
    how: str

    def intent(self, *, ts_ns: int, intent_id: str, purpose: IntentPurpose, reason: str = "") -> OrderIntent:
        """The ``OrderIntent`` of this order, for the ``manual`` strategy (the caller knows the purpose: EXIT when it
        reduces the risk book's position, else ENTRY)."""
        return OrderIntent(
            ts_ns=ts_ns, intent_id=intent_id, strategy_id=MANUAL_STRATEGY_ID, contract=self.contract,
            side=self.side, quantity=self.quantity, order_type=self.order_type, purpose=purpose,
            expected_price=self.expected_price, limit_price=self.limit_price, trigger_price=self.trigger_price,
            market_protection=self.market_protection, reason=reason,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, money in rupees (``*_inr``), for the ``resolved`` part of a ``POST /orders`` answer."""
        contract = self.contract
        return {
            "tradingsymbol": contract.tradingsymbol,
            "exchange": contract.exchange,
            "underlying": contract.underlying,
            "expiry": contract.expiry.isoformat(),
            "expiry_defaulted": self.expiry_defaulted,
            "strike_inr": to_rupees(contract.strike),
            "option_type": contract.option_type.value,
            "instrument_token": contract.instrument_token,
            "side": self.side.value,
            "lots": self.lots,
            "lot_size": contract.lot_size,
            "quantity": self.quantity,
            "order_type": self.order_type.value,
            "expected_price_inr": to_rupees(self.expected_price),
            "limit_price_inr": to_rupees(self.limit_price) if self.limit_price else None,
            "trigger_price_inr": to_rupees(self.trigger_price) if self.trigger_price else None,
            "market_protection": (self.market_protection
                                  if self.order_type in (OrderType.MARKET, OrderType.SL_M) else None),
            "spot_inr": to_rupees(self.spot) if self.spot else None,
            "how": self.how,
        }
