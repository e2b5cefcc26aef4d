"""``FyersBroker``: the daemon's ``Broker`` port over ``FyersRestClient``; rupee floats become paise here.

As ``KiteBroker``: the shared ``OrderTracker`` turns reports into events (fills first, then the status); a report
for an order id the tracker has not seen, under one of our tags, is booked only once the broker's own order book
confirms it (an id, tag, symbol and side that match), and then as that record says; an order the book does not
confirm is logged ``postback_unconfirmed`` and nothing is booked. Every failure leaves as a ``BrokerError``; a
failure of an order write that is not a documented refusal is ``BrokerUnavailable`` (look the tag up).

Market orders: Fyers takes MARKET (type 2) and SL-M (type 3) orders as they are (the v3 order API has no
market-protection field; Fyers' OMS applies the exchange's protection itself), so nothing is converted here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from trader.adapters.fyers.errors import FyersSessionExpired, to_broker_error
from trader.adapters.fyers.orders import (
    ORDER_TYPE_CODES,
    SIDE_CODES,
    integer,
    order_id_of,
    side_of,
    socket_order_row,
    to_report,
)
from trader.adapters.fyers.rest import FyersRestClient
from trader.adapters.order_tracker import OrderTracker, PostbackError
from trader.adapters.ports import (
    BrokerBook,
    BrokerOrder,
    BrokerPosition,
    BrokerTrade,
    BrokerUnavailable,
    MarginView,
    OrderRejected,
)
from trader.adapters.report_booking import ReportBooking
from trader.events import IntentPurpose, OrderIntent, OrderRequest, OrderStatus, OrderType
from trader.ids import fyers_order_tag, tag_from_fyers
from trader.logging import get_logger
from trader.money import MoneyError, to_paise_or_zero, to_rupees

log = get_logger("trader.fyers.broker")

EXCHANGE_PREFIX: Mapping[str, str] = {"NFO": "NSE:", "BFO": "BSE:"}


def fyers_symbol(exchange: str, tradingsymbol: str) -> str:
    """Our contract's name as Fyers' ticker: ``NFO`` + ``NIFTY26D0326000CE`` → ``NSE:NIFTY26D0326000CE``."""
    return EXCHANGE_PREFIX.get(exchange, f"{exchange}:") + tradingsymbol


def bare_symbol(symbol: object) -> str:
    text = str(symbol or "")
    return text.split(":", 1)[1] if ":" in text else text


def _paise(value: object, field: str) -> int:
    try:
        return to_paise_or_zero(value)  # type: ignore[arg-type]
    except (MoneyError, TypeError) as exc:
        raise BrokerUnavailable(f"{field} {value!r} in a Fyers reply is not an amount: {exc}") from None


def _token(row: Mapping[str, Any]) -> int:
    value = str(row.get("fyToken") or "")
    if not value.isdigit():
        raise BrokerUnavailable(f"a Fyers row without a numeric fyToken: {dict(row)!r}")
    return int(value)


def _stamp(row: Mapping[str, Any]) -> str:
    """``orderDateTime`` (``dd-Mon-yyyy HH:MM:SS``) as a sortable text ("" when absent or unreadable)."""
    text = str(row.get("orderDateTime") or "")
    try:
        return datetime.strptime(text, "%d-%b-%Y %H:%M:%S").isoformat()
    except ValueError:
        return ""


def broker_order(row: Mapping[str, Any]) -> BrokerOrder:
    try:
        report = to_report(row)
        side = side_of(row)
    except PostbackError as exc:
        raise BrokerUnavailable(f"an order-book row the daemon cannot read ({exc}): {dict(row)!r}") from None
    return BrokerOrder(order_id=report["order_id"], tag=report["tag"], status=OrderStatus(report["status"]),
                       quantity=integer(row, "qty"), filled_quantity=report["filled_quantity"],
                       average_price=_paise(report["average_price"], "tradedPrice"),
                       instrument_token=_token(row), tradingsymbol=bare_symbol(row.get("symbol")), side=side,
                       status_message=report["status_message"])


def broker_trade(row: Mapping[str, Any]) -> BrokerTrade:
    try:
        side, quantity, order_id = side_of(row), integer(row, "tradedQty"), order_id_of(row, "orderNumber")
    except PostbackError as exc:
        raise BrokerUnavailable(f"a trade-book row the daemon cannot read ({exc}): {dict(row)!r}") from None
    price = _paise(row.get("tradePrice"), "tradePrice")
    if quantity <= 0 or price <= 0:
        raise BrokerUnavailable(f"a trade-book row the daemon cannot read: {dict(row)!r}")
    trade_id = row.get("tradeNumber")
    if isinstance(trade_id, int) and not isinstance(trade_id, bool):
        trade_id = str(trade_id)
    if not isinstance(trade_id, str) or not trade_id.strip():
        # the fill's identity in reconciliation: a made-up one ("") would make two trades of one order one
        raise BrokerUnavailable(f"a trade-book row without a tradeNumber: {dict(row)!r}")
    return BrokerTrade(trade_id=trade_id.strip(), order_id=order_id, instrument_token=_token(row),
                       tradingsymbol=bare_symbol(row.get("symbol")), side=side, quantity=quantity, price=price)


class FyersBroker(ReportBooking):
    """The ``Broker`` port over ``FyersRestClient`` (product ``INTRADAY`` or ``MARGIN``, validity ``DAY``)."""

    def __init__(self, client: FyersRestClient, *, product: str = "INTRADAY", validity: str = "DAY",
                 tracker: OrderTracker | None = None) -> None:
        if product not in ("INTRADAY", "MARGIN"):
            raise ValueError(f"product must be INTRADAY or MARGIN, got {product!r}")
        self.client = client
        self.product = product
        self.validity = validity
        self.dropped = 0  # reports dropped as unreadable
        self._init_booking(tracker)

    def order_body(self, request: OrderRequest) -> dict[str, Any]:
        intent = request.intent
        return {
            "symbol": fyers_symbol(intent.contract.exchange, intent.contract.tradingsymbol),
            "qty": intent.quantity,
            "type": ORDER_TYPE_CODES[intent.order_type],
            "side": SIDE_CODES[intent.side],
            "productType": self.product,
            "limitPrice": to_rupees(intent.limit_price) if intent.order_type in (OrderType.LIMIT, OrderType.SL)
            else 0,
            "stopPrice": to_rupees(intent.trigger_price) if intent.order_type in (OrderType.SL, OrderType.SL_M)
            else 0,
            "validity": self.validity,
            "disclosedQty": 0,
            "offlineOrder": False,
            "orderTag": fyers_order_tag(request.tag),
        }

    # -- reports -----------------------------------------------------------------------------------------------
    def on_order_message(self, message: Mapping[str, Any]) -> None:
        """An order-socket message ``{"s": "ok", "orders": {...}}``: publish what it adds."""
        orders = message.get("orders")
        if not isinstance(orders, dict):
            self.dropped += 1
            log.error("order_message_malformed", message=str(message)[:200])
            return
        self.on_report(socket_order_row(orders))

    def on_report(self, row: Mapping[str, Any]) -> None:
        """An order-book-shaped row from the socket: its report is booked, held for confirmation, or dropped."""
        if self.tracker is None:
            return
        try:
            report = to_report(row)
        except PostbackError as exc:
            self.dropped += 1
            log.error("postback_rejected", problem=str(exc), order_id=str(row.get("id", "")))
            return
        self._on_report(report)

    async def _lookup(self, order_id: str, tag: str) -> tuple[Mapping[str, Any] | None, str]:
        """The order's row in the broker's own order book (Fyers has no single-order history in the v3 SDK)."""
        try:
            rows = await self.client.orders()
        except Exception as exc:
            raise to_broker_error(exc) from exc
        record = next((r for r in rows if str(r.get("id") or "") == order_id), None)
        if record is None:
            return None, "the broker's order book has no such order id"
        problem = self._mismatch(record, tag)
        return (None if problem else to_report(record)), problem

    def _mismatch(self, record: Mapping[str, Any], tag: str) -> str:
        try:
            report, side = to_report(record), side_of(record)
        except PostbackError as exc:
            return f"the broker's record is unreadable ({exc})"
        if report["tag"] != tag:
            return f"the broker's order carries tag {report['tag']!r}, not {tag!r}"
        intent = self.tracker.intent_for(tag) if self.tracker is not None else None
        if intent is not None and (bare_symbol(record.get("symbol")) != intent.contract.tradingsymbol
                                   or side is not intent.side):
            return (f"the broker's order is {side.value} {record.get('symbol')}, not our {intent.side.value} "
                    f"{intent.contract.tradingsymbol}")
        return ""

    # -- the port ------------------------------------------------------------------------------------------------
    async def place_order(self, request: OrderRequest) -> str:
        if self.tracker is not None:
            self.tracker.expect(request.intent, request.tag)
        try:
            order_id = await self.client.place_order(self.order_body(request))
        except Exception as exc:
            raise to_broker_error(exc, write=True) from exc
        if self.tracker is not None:
            self.tracker.placed(request.tag, order_id)
        return order_id

    async def cancel_order(self, order_id: str) -> None:
        try:
            await self.client.cancel_order(order_id)
        except Exception as exc:
            raise to_broker_error(exc, write=True) from exc

    async def _read(self, call: Callable[[], Any]) -> Any:
        try:
            return await call()
        except Exception as exc:
            raise to_broker_error(exc) from exc

    async def resync(self) -> None:
        """Feed today's order book through the tracker: it publishes only what the socket did not already report.
        A row under our tag for another contract or side is logged (error) and not booked by the tracker."""
        if self.tracker is None:
            return
        for row in await self._read(self.client.orders):
            try:
                self._book(to_report(row), confirmed=True)
            except PostbackError as exc:
                log.error("order_book_row_unreadable", problem=str(exc), row=str(row)[:200])

    async def find_order_by_tag(self, tag: str) -> BrokerOrder | None:
        rows = await self._read(self.client.orders)
        matches = [(_stamp(row), i, row) for i, row in enumerate(rows) if tag_from_fyers(row.get("orderTag")) == tag]
        if not matches:
            return None
        try:
            reports = [to_report(row) for _, _, row in matches]
        except PostbackError as exc:
            raise BrokerUnavailable(f"an order-book row under tag {tag} the daemon cannot read ({exc})") from None
        self._refuse_contradicting_rows(tag, reports)  # raises: never adopted, never a re-send (see there)
        found = broker_order(max(matches, key=lambda m: (m[0], m[1]))[2])
        if self.tracker is not None:
            self.tracker.placed(tag, found.order_id)
        return found

    async def open_orders(self) -> list[BrokerOrder]:
        return [o for o in map(broker_order, await self._read(self.client.orders)) if not o.status.is_terminal]

    async def margins(self) -> MarginView:
        """``/funds``: ``available`` = the "Available Balance" row (id 10), ``used`` = "Utilized Amount" (id 2),
        equity amounts."""
        rows = {row.get("id"): row for row in await self._read(self.client.funds)}
        if 10 not in rows:
            raise BrokerUnavailable("no 'Available Balance' (id 10) in the /funds reply")
        used = rows.get(2, {}).get("equityAmount")
        return MarginView(available=_paise(rows[10].get("equityAmount"), "equityAmount"),
                          used=_paise(used, "equityAmount"))

    async def positions(self) -> dict[int, int]:
        book = await self.book_positions()
        return {p.instrument_token: p.quantity for p in book if p.quantity}

    async def book_positions(self) -> list[BrokerPosition]:
        """``/positions`` ``netPositions``, summed over products per fyToken."""
        rows: dict[int, BrokerPosition] = {}
        for row in await self._read(self.client.positions):
            token = _token(row)
            try:
                quantity = integer(row, "netQty")
                overnight = integer(row, "cfBuyQty", 0) - integer(row, "cfSellQty", 0)
            except PostbackError as exc:
                raise BrokerUnavailable(f"a /positions row the daemon cannot read ({exc})") from None
            known = rows.get(token)
            rows[token] = BrokerPosition(instrument_token=token, tradingsymbol=bare_symbol(row.get("symbol")),
                                         quantity=quantity + (known.quantity if known else 0),
                                         overnight_quantity=overnight + (known.overnight_quantity if known else 0),
                                         average_price=_paise(row.get("netAvg"), "netAvg"))
        return list(rows.values())

    async def book(self) -> BrokerBook:
        orders = [broker_order(row) for row in await self._read(self.client.orders)]
        trades = [broker_trade(row) for row in await self._read(self.client.trades)]
        return BrokerBook(orders=tuple(orders), trades=tuple(trades), positions=tuple(await self.book_positions()))

    async def order_margin(self, intent: OrderIntent) -> int:
        """``POST /multiorder/margin`` ``margin_total`` in paise; an EXIT only reduces a position, so 0 unasked.
        The price sent is the limit price, else the expected price (a premium needs one to be valued)."""
        if intent.purpose is IntentPurpose.EXIT:
            return 0
        order = {
            "symbol": fyers_symbol(intent.contract.exchange, intent.contract.tradingsymbol),
            "qty": intent.quantity, "side": SIDE_CODES[intent.side], "type": ORDER_TYPE_CODES[intent.order_type],
            "productType": self.product, "limitPrice": to_rupees(intent.limit_price or intent.expected_price),
            "stopPrice": to_rupees(intent.trigger_price), "stopLoss": 0, "takeProfit": 0,
        }
        data = await self._read(lambda: self.client.order_margin([order]))
        return _paise(data["margin_total"], "margin_total")

    def adopt(self, request: OrderRequest, order_id: str, filled: int, filled_value: int) -> None:
        if self.tracker is not None:
            self.tracker.adopt(request.intent, request.tag, order_id, filled, filled_value)


__all__ = ["FyersBroker", "FyersSessionExpired", "OrderRejected", "broker_order", "broker_trade", "fyers_symbol"]
