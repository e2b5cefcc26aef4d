"""One Kite order as the simulator's book keeps it (prices in paise), and its Kite JSON shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trader.events import OrderType, Side
from trader.market.instruments import OptionContract
from trader.money import to_rupees
from trader.sim.wire import USER_ID, kite_time


@dataclass(slots=True)
class SimOrder:
    """One Kite order as the simulator's book keeps it (prices in paise)."""

    order_id: str
    exchange_order_id: str
    variety: str
    contract: OptionContract
    side: Side
    order_type: OrderType
    product: str
    validity: str
    quantity: int
    price: int
    trigger_price: int
    market_protection: float
    tag: str | None
    placed_ns: int
    status: str = "PUT ORDER REQ RECEIVED"
    status_message: str | None = None
    updated_ns: int = 0
    filled: int = 0
    fill_value: int = 0
    cancelled: int = 0
    modifications: int = 0
    paper_id: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def average_price(self) -> float:
        return round(to_rupees(self.fill_value) / self.filled, 2) if self.filled else 0.0

    @property
    def is_final(self) -> bool:
        return self.status in ("COMPLETE", "CANCELLED", "REJECTED")

    def as_kite(self) -> dict[str, Any]:
        pending = 0 if self.is_final else self.quantity - self.filled
        return {
            "placed_by": USER_ID, "account_id": USER_ID, "order_id": self.order_id,
            "exchange_order_id": self.exchange_order_id, "parent_order_id": None, "status": self.status,
            "status_message": self.status_message, "status_message_raw": self.status_message,
            "order_timestamp": kite_time(self.placed_ns), "exchange_update_timestamp": kite_time(self.updated_ns),
            "exchange_timestamp": kite_time(self.placed_ns), "variety": self.variety,
            "modified": self.modifications > 0, "exchange": self.contract.exchange,
            "tradingsymbol": self.contract.tradingsymbol, "instrument_token": self.contract.instrument_token,
            "order_type": self.order_type.value, "transaction_type": self.side.value, "validity": self.validity,
            "validity_ttl": 0, "product": self.product, "quantity": self.quantity, "disclosed_quantity": 0,
            "price": to_rupees(self.price), "trigger_price": to_rupees(self.trigger_price),
            "average_price": self.average_price, "filled_quantity": self.filled, "pending_quantity": pending,
            "cancelled_quantity": self.cancelled, "market_protection": self.market_protection, "meta": {},
            "tag": self.tag, "tags": [self.tag] if self.tag else [], "guid": f"{self.order_id}-{len(self.history)}",
        }
