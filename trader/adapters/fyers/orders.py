"""Fyers order reports → the venue-neutral report the shared ``OrderTracker`` reads (``adapters/order_tracker.py``).

Two sources, one shape: REST order-book rows (``GET /orders`` → ``orderBook``) and order-socket messages
(``{"s": "ok", "orders": {...}}``), whose fields carry the socket's own names; ``socket_order_row`` renames them to
the order book's (the correspondence the official SDK's ``map.json`` ``order_mapper`` lists).

Fyers' order statuses (API v3 docs, "Order status"): 1 cancelled, 2 traded (filled), 3 not used, 4 transit (on its
way to the exchange), 5 rejected, 6 pending (working on the exchange), 7 expired. Sides 1 buy / -1 sell; types 1 limit,
2 market, 3 stop (SL-M), 4 stop-limit (SL). ``filledQty`` is cumulative and ``tradedPrice`` the average price of
the filled part, in rupees; ``filledQty`` is required (a report without it is malformed). Any field missing or of the
wrong type is a ``PostbackError``: the report is dropped, never guessed. The report names the order's contract and
side as Kite's do (``exchange``, ``tradingsymbol`` without the ticker's prefix, ``transaction_type``), so the tracker
can refuse a report that contradicts the order it is about.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trader.adapters.order_tracker import PostbackError
from trader.events import OrderStatus, OrderType, Side
from trader.ids import tag_from_fyers

STATUS_CANCELLED, STATUS_TRADED, STATUS_TRANSIT, STATUS_REJECTED, STATUS_PENDING, STATUS_EXPIRED = 1, 2, 4, 5, 6, 7

SIDES: Mapping[int, Side] = {1: Side.BUY, -1: Side.SELL}
SIDE_CODES: Mapping[Side, int] = {Side.BUY: 1, Side.SELL: -1}
ORDER_TYPES: Mapping[int, OrderType] = {1: OrderType.LIMIT, 2: OrderType.MARKET, 3: OrderType.SL_M, 4: OrderType.SL}
ORDER_TYPE_CODES: Mapping[OrderType, int] = {kind: code for code, kind in ORDER_TYPES.items()}

# a Fyers ticker's prefix → our contract's exchange (options: NSE:… is NFO, BSE:… is BFO)
EXCHANGES: Mapping[str, str] = {"NSE": "NFO", "BSE": "BFO"}

# order-socket field → order-book field (fyers_apiv3 map.json "order_mapper")
SOCKET_ORDER_FIELDS: Mapping[str, str] = {
    "id": "id", "id_exchange": "exchOrdId", "qty": "qty", "qty_remaining": "remainingQuantity",
    "qty_filled": "filledQty", "price_limit": "limitPrice", "price_stop": "stopPrice", "price_traded": "tradedPrice",
    "ord_type": "type", "fy_token": "fyToken", "exchange": "exchange", "segment": "segment", "symbol": "symbol",
    "oms_msg": "message", "time_oms": "orderDateTime", "validity": "orderValidity", "product_type": "productType",
    "tran_side": "side", "org_ord_status": "status", "ordertag": "orderTag",
}
# trade-socket field → trade-book field (map.json "trade_mapper")
SOCKET_TRADE_FIELDS: Mapping[str, str] = {
    "id_fill": "tradeNumber", "id": "orderNumber", "qty_traded": "tradedQty", "price_traded": "tradePrice",
    "traded_val": "tradeValue", "product_type": "productType", "id_exchange": "exchangeOrderNo",
    "ord_type": "orderType", "tran_side": "side", "symbol": "symbol", "fill_time": "orderDateTime",
    "fy_token": "fyToken", "ordertag": "orderTag",
}


def socket_order_row(orders: Mapping[str, Any]) -> dict[str, Any]:
    """An order-socket ``orders`` object with the order book's field names (unknown fields dropped)."""
    return {SOCKET_ORDER_FIELDS[key]: value for key, value in orders.items() if key in SOCKET_ORDER_FIELDS}


def socket_trade_row(trades: Mapping[str, Any]) -> dict[str, Any]:
    return {SOCKET_TRADE_FIELDS[key]: value for key, value in trades.items() if key in SOCKET_TRADE_FIELDS}


def integer(row: Mapping[str, Any], field: str, default: int | None = None) -> int:
    value = row.get(field, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise PostbackError(f"{field} is {row.get(field)!r}, not an integer")
    return value


def order_id_of(row: Mapping[str, Any], field: str = "id") -> str:
    value = row.get(field)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise PostbackError(f"{field} is {value!r}, not an order id")
    return value.strip()


def order_status(code: int, order_type: int | None = None, filled: int = 0) -> OrderStatus:
    """Fyers' status as ours: transit and unknown codes are PENDING (never terminal); expired is CANCELLED."""
    if code == STATUS_TRADED:
        return OrderStatus.COMPLETE
    if code in (STATUS_CANCELLED, STATUS_EXPIRED):
        return OrderStatus.CANCELLED
    if code == STATUS_REJECTED:
        return OrderStatus.REJECTED
    if code == STATUS_PENDING:
        stop = order_type in (3, 4) and filled == 0
        return OrderStatus.TRIGGER_PENDING if stop else OrderStatus.OPEN
    return OrderStatus.PENDING


def side_of(row: Mapping[str, Any], field: str = "side") -> Side:
    side = SIDES.get(integer(row, field))
    if side is None:
        raise PostbackError(f"{field} is {row.get(field)!r}, not 1 or -1")
    return side


def to_report(row: Mapping[str, Any]) -> dict[str, Any]:
    """An order-book row (or a renamed socket message) → the tracker's normalised report; ``PostbackError`` if a
    field the report needs is missing or of the wrong type."""
    order_id = order_id_of(row)
    quantity = integer(row, "qty")
    filled = integer(row, "filledQty")  # required: a "traded" report without it would be a COMPLETE of nothing
    if quantity <= 0 or not 0 <= filled <= quantity:
        raise PostbackError(f"filledQty {filled} / qty {quantity} is impossible")
    order_type = integer(row, "type", 0)
    average = row.get("tradedPrice", 0)
    if not isinstance(average, int | float) or isinstance(average, bool):
        raise PostbackError(f"tradedPrice is {average!r}, not a number")
    remaining = row.get("remainingQuantity")
    pending = remaining if isinstance(remaining, int) and not isinstance(remaining, bool) else quantity - filled
    status = order_status(integer(row, "status"), order_type, filled)
    symbol = str(row.get("symbol") or "")
    prefix, _, bare = symbol.rpartition(":")
    report: dict[str, Any] = {
        "order_id": order_id,
        "tag": tag_from_fyers(row.get("orderTag")),
        "status": status.value,
        "filled_quantity": filled,
        "average_price": average if filled else 0,
        "pending_quantity": 0 if status.is_terminal else pending,
        "status_message": str(row.get("message") or ""),
        "tradingsymbol": bare,  # our contract's name: the ticker without its "NSE:"/"BSE:" prefix
    }
    if prefix:
        report["exchange"] = EXCHANGES.get(prefix, prefix)
    if row.get("side") is not None:
        report["transaction_type"] = side_of(row).value
    return report
