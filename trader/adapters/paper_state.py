"""The paper broker's book as a state document, and back: orders (with the requests they serve), trades, positions,
cash and the order counter. Saved in the journal after every change, so paper mode survives a restart the way a
real account does, and is reconciled against like one. A malformed document is refused with the field named.
"""

from __future__ import annotations

from collections.abc import Mapping

from trader.adapters.paper import PaperBroker, _PaperOrder
from trader.adapters.ports import BrokerTrade
from trader.book import PositionBook
from trader.events import OrderRequest, OrderStatus, OrderType, Side
from trader.risk.persistence import position_from_state, position_state
from trader.store.codec import intent_from_dict, intent_to_dict, mapping, typed

STATE_NAME = "paper_broker"
STATE_VERSION = 1
_WHERE = "paper broker state"


def paper_state(broker: PaperBroker) -> dict[str, object]:
    return {
        "version": STATE_VERSION,
        "capital": broker._capital,
        "next_order": broker._next_order,
        "orders": [_order_state(o) for o in broker._orders.values()],
        "trades": [{"trade_id": t.trade_id, "order_id": t.order_id, "instrument_token": t.instrument_token,
                    "tradingsymbol": t.tradingsymbol, "side": t.side.value, "quantity": t.quantity, "price": t.price}
                   for t in broker._trades],
        "realized": broker._book.realized,
        "charges": broker._book.charges,
        "positions": [position_state(p) for p in broker._book.positions.values()],
    }


def _order_state(order: _PaperOrder) -> dict[str, object]:
    return {
        "order_id": order.order_id, "tag": order.request.tag, "intent": intent_to_dict(order.request.intent),
        "status": order.status.value, "active_at_ns": order.active_at_ns, "order_type": order.order_type.value,
        "limit_price": order.limit_price, "filled": order.filled, "fill_value": order.fill_value,
        "fills": order.fills, "triggered": order.triggered, "expires_at_ns": order.expires_at_ns,
    }


def restore_paper(broker: PaperBroker, state: Mapping[str, object]) -> None:
    """Fill a fresh paper broker from ``paper_state`` output; raises ValueError naming a malformed field."""
    version = typed(state, "version", int, _WHERE)
    if version != STATE_VERSION:
        raise ValueError(f"{_WHERE}: version {version} is not supported (expected {STATE_VERSION})")
    orders = []
    for raw in typed(state, "orders", list, _WHERE):
        data = mapping(raw, f"{_WHERE}: orders[]")
        where = f"{_WHERE}: order {data.get('order_id')!r}"
        intent = intent_from_dict(data.get("intent"), f"{where}.intent")
        orders.append(_PaperOrder(
            order_id=typed(data, "order_id", str, where),
            request=OrderRequest(ts_ns=intent.ts_ns, intent=intent, tag=typed(data, "tag", str, where)),
            status=OrderStatus(typed(data, "status", str, where)),
            active_at_ns=typed(data, "active_at_ns", int, where),
            order_type=OrderType(typed(data, "order_type", str, where)),
            limit_price=typed(data, "limit_price", int, where), filled=typed(data, "filled", int, where),
            fill_value=typed(data, "fill_value", int, where), fills=typed(data, "fills", int, where),
            triggered=typed(data, "triggered", bool, where), expires_at_ns=typed(data, "expires_at_ns", int, where)))
    trades = []
    for raw in typed(state, "trades", list, _WHERE):
        data = mapping(raw, f"{_WHERE}: trades[]")
        trades.append(BrokerTrade(
            trade_id=typed(data, "trade_id", str, _WHERE), order_id=typed(data, "order_id", str, _WHERE),
            instrument_token=typed(data, "instrument_token", int, _WHERE),
            tradingsymbol=typed(data, "tradingsymbol", str, _WHERE), side=Side(typed(data, "side", str, _WHERE)),
            quantity=typed(data, "quantity", int, _WHERE), price=typed(data, "price", int, _WHERE)))
    book = PositionBook()
    book.realized = typed(state, "realized", int, _WHERE)
    book.charges = typed(state, "charges", int, _WHERE)
    for raw in typed(state, "positions", list, _WHERE):
        position = position_from_state(mapping(raw, f"{_WHERE}: positions[]"))
        book.positions[position.contract.instrument_token] = position
    broker._capital = typed(state, "capital", int, _WHERE)
    broker._next_order = typed(state, "next_order", int, _WHERE)
    broker._book = book
    broker._trades = trades
    broker._orders = {o.order_id: o for o in orders}
    broker._by_tag = {}
    broker._working = {}
    for order in orders:
        broker._by_tag.setdefault(order.request.tag, []).append(order.order_id)
        if not order.status.is_terminal:
            broker._working.setdefault(order.request.intent.contract.instrument_token, []).append(order)
