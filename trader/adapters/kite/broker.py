"""``KiteBroker``: the daemon's ``Broker`` port over the Kite REST client; rupee floats become paise here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trader.adapters.kite.errors import KiteSessionExpired, to_broker_error
from trader.adapters.kite.orders import OrderTracker
from trader.adapters.kite.rest import KiteRestClient
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
from trader.events import IntentPurpose, OrderIntent, OrderRequest, OrderStatus, OrderType, Side
from trader.money import rupee_text, to_paise_or_zero, to_rupees

_STATUS_MAP: Mapping[str, OrderStatus] = {
    "OPEN": OrderStatus.OPEN,
    "TRIGGER PENDING": OrderStatus.TRIGGER_PENDING,
    "COMPLETE": OrderStatus.COMPLETE,
    "CANCELLED": OrderStatus.CANCELLED,
    "REJECTED": OrderStatus.REJECTED,
    # On the exchange book, being changed: still working.
    "MODIFY VALIDATION PENDING": OrderStatus.OPEN,
    "MODIFY PENDING": OrderStatus.OPEN,
    "MODIFIED": OrderStatus.OPEN,
    "CANCEL PENDING": OrderStatus.OPEN,
}


def order_status(kite_status: str | None) -> OrderStatus:
    """Kite's status string as ours; pre-exchange and unknown interim states are PENDING (never terminal)."""
    return _STATUS_MAP.get(kite_status or "", OrderStatus.PENDING)


def _protection(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _side(value: object) -> Side | None:
    return Side(value) if value in ("BUY", "SELL") else None


def _broker_order(order: Mapping[str, Any]) -> BrokerOrder:
    return BrokerOrder(
        order_id=str(order.get("order_id", "")),
        tag=str(order.get("tag") or ""),
        status=order_status(order.get("status")),
        quantity=int(order.get("quantity") or 0),
        filled_quantity=int(order.get("filled_quantity") or 0),
        average_price=to_paise_or_zero(order.get("average_price")),
        instrument_token=int(order.get("instrument_token") or 0),
        tradingsymbol=str(order.get("tradingsymbol") or ""),
        side=_side(order.get("transaction_type")),
        status_message=str(order.get("status_message") or ""),
    )


def _broker_trade(trade: Mapping[str, Any]) -> BrokerTrade:
    side = _side(trade.get("transaction_type"))
    quantity = int(trade.get("quantity") or trade.get("filled") or 0)
    price = to_paise_or_zero(trade.get("average_price"))
    if side is None or quantity <= 0 or price <= 0 or not trade.get("order_id"):
        raise BrokerUnavailable(f"a /trades row the daemon cannot read: {dict(trade)!r}")
    if not str(trade.get("trade_id") or "").strip():  # the fill's identity: "" would make two trades one
        raise BrokerUnavailable(f"a /trades row without a trade_id: {dict(trade)!r}")
    return BrokerTrade(trade_id=str(trade["trade_id"]).strip(), order_id=str(trade["order_id"]),
                       instrument_token=int(trade.get("instrument_token") or 0),
                       tradingsymbol=str(trade.get("tradingsymbol") or ""), side=side, quantity=quantity, price=price)


def _has_tag(order: Mapping[str, Any], tag: str) -> bool:
    tags = order.get("tags") or ()
    return order.get("tag") == tag or (isinstance(tags, list) and tag in tags)


class KiteBroker(ReportBooking):
    """The ``Broker`` port over ``KiteRestClient``. Every failure leaves as a ``BrokerError`` (see ``classify``).

    Conversions (rupee floats → paise, ``round(x * 100)``) happen here. ``margins()`` reads the equity segment:
    ``available`` = ``net`` (Kite's usable figure for pre-trade checks; ``available.live_balance`` if ``net`` is
    absent), ``used`` = ``utilised.debits``. Order updates arrive from the ticker, not from here.

    A postback for an order id the tracker has not seen (even under one of our tags) is booked only once the broker's
    own order history confirms it, and then as that record says; the confirmation runs in a task, so the ticker
    is never held up. An order id the broker does not know, or whose record does not match our order, is logged as
    ``postback_unconfirmed`` and nothing is booked.
    """

    def __init__(self, client: KiteRestClient, *, product: str = "MIS", variety: str = "regular",
                 validity: str = "DAY", tracker: OrderTracker | None = None) -> None:
        self.client = client
        self.product = product
        self.variety = variety
        self.validity = validity
        self._init_booking(tracker)

    def order_params(self, request: OrderRequest) -> dict[str, Any]:
        intent = request.intent
        params: dict[str, Any] = {
            "exchange": intent.contract.exchange,
            "tradingsymbol": intent.contract.tradingsymbol,
            "transaction_type": intent.side.value,
            "quantity": intent.quantity,
            "product": self.product,
            "order_type": intent.order_type.value,
            "validity": self.validity,
            "tag": request.tag,
        }
        if intent.order_type in (OrderType.LIMIT, OrderType.SL):
            params["price"] = rupee_text(intent.limit_price)
        if intent.order_type in (OrderType.SL, OrderType.SL_M):
            params["trigger_price"] = rupee_text(intent.trigger_price)
        if intent.order_type in (OrderType.MARKET, OrderType.SL_M):
            params["market_protection"] = _protection(intent.market_protection)
        return params

    async def resync(self) -> None:
        """Feed today's order book through the tracker: it publishes only what postbacks did not already report."""
        if self.tracker is None:
            return
        for row in await self._orders():
            self._book(row, confirmed=True)  # the broker's own book; a row contradicting our order is not booked

    def on_postback(self, data: dict[str, Any]) -> None:
        """An order message from the ticker: publish what it adds (fills first, then the status)."""
        self._on_report(data)

    async def _lookup(self, order_id: str, tag: str) -> tuple[Mapping[str, Any] | None, str]:
        """The order's history: its last state, as the report to book, and whether it is ours."""
        try:
            history = await self.client.order_history(order_id)
        except Exception as exc:
            error = to_broker_error(exc)
            if isinstance(error, OrderRejected) and not isinstance(error, KiteSessionExpired):
                return None, "the broker does not know this order id"
            raise error from exc
        record = history[-1] if history and isinstance(history[-1], dict) else {}
        return {**record, "order_id": order_id, "tag": tag}, self._mismatch(record, order_id, tag)

    def _mismatch(self, record: Mapping[str, Any], order_id: str, tag: str) -> str:
        """Why the broker's record does not confirm the postback ("" when it does)."""
        if not record:
            return "the broker has no history for this order id"
        if str(record.get("order_id") or order_id) != order_id:
            return f"the broker answered for order {record.get('order_id')}"
        if not _has_tag(record, tag):
            return f"the broker's order carries tag {record.get('tag')!r}, not {tag!r}"
        intent = self.tracker.intent_for(tag) if self.tracker is not None else None
        if intent is not None and (record.get("tradingsymbol") != intent.contract.tradingsymbol
                                   or record.get("transaction_type") != intent.side.value):
            return (f"the broker's order is {record.get('transaction_type')} {record.get('tradingsymbol')}, not our "
                    f"{intent.side.value} {intent.contract.tradingsymbol}")
        return ""

    async def place_order(self, request: OrderRequest) -> str:
        if self.tracker is not None:
            self.tracker.expect(request.intent, request.tag)  # before sending: a postback may beat the reply
        try:
            order_id = await self.client.place_order(self.variety, **self.order_params(request))
        except Exception as exc:
            raise to_broker_error(exc) from exc
        if self.tracker is not None:
            self.tracker.placed(request.tag, order_id)  # our own reply: its postbacks are booked at once
        return order_id

    async def cancel_order(self, order_id: str) -> None:
        try:
            await self.client.cancel_order(self.variety, order_id)
        except Exception as exc:
            raise to_broker_error(exc) from exc

    async def _orders(self) -> list[dict[str, Any]]:
        try:
            return await self.client.orders()
        except Exception as exc:
            raise to_broker_error(exc) from exc

    async def find_order_by_tag(self, tag: str) -> BrokerOrder | None:
        """The newest of today's orders carrying ``tag`` (by ``order_timestamp``, then position in the list)."""
        matches = [(str(o.get("order_timestamp") or ""), i, o) for i, o in enumerate(await self._orders())
                   if _has_tag(o, tag)]
        if not matches:
            return None
        self._refuse_contradicting_rows(tag, [o for _, _, o in matches])  # raises: never adopted nor re-sent
        found = _broker_order(max(matches, key=lambda m: (m[0], m[1]))[2])
        if self.tracker is not None:
            self.tracker.placed(tag, found.order_id)  # the broker's own book names it
        return found

    async def open_orders(self) -> list[BrokerOrder]:
        views = [_broker_order(o) for o in await self._orders()]
        return [v for v in views if not v.status.is_terminal]

    async def margins(self) -> MarginView:
        try:
            equity = await self.client.margins("equity")
        except Exception as exc:
            raise to_broker_error(exc) from exc
        available = equity.get("net")
        if available is None:
            available = (equity.get("available") or {}).get("live_balance")
        used = (equity.get("utilised") or {}).get("debits")
        return MarginView(available=to_paise_or_zero(available), used=to_paise_or_zero(used))

    async def positions(self) -> dict[int, int]:
        """Net quantity per token from ``positions.net``, summed over products; flat instruments left out."""
        try:
            data = await self.client.positions()
        except Exception as exc:
            raise to_broker_error(exc) from exc
        held: dict[int, int] = {}
        for row in data.get("net") or ():
            token = int(row["instrument_token"])
            held[token] = held.get(token, 0) + int(row.get("quantity") or 0)
        return {token: qty for token, qty in held.items() if qty}

    async def order_margin(self, intent: OrderIntent) -> int:
        """``POST /margins/orders`` ``total`` in paise; an EXIT intent only reduces a position, so 0 without asking.

        The price sent is the limit price, else the expected price (Kite needs one to value a premium)."""
        if intent.purpose is IntentPurpose.EXIT:
            return 0
        order: dict[str, Any] = {
            "exchange": intent.contract.exchange,
            "tradingsymbol": intent.contract.tradingsymbol,
            "transaction_type": intent.side.value,
            "variety": self.variety,
            "product": self.product,
            "order_type": intent.order_type.value,
            "quantity": intent.quantity,
            "price": to_rupees(intent.limit_price or intent.expected_price),
            "trigger_price": to_rupees(intent.trigger_price),
        }
        try:
            data = await self.client.order_margins([order])
        except Exception as exc:
            raise to_broker_error(exc) from exc
        if not data:
            raise BrokerUnavailable("empty /margins/orders response")
        return to_paise_or_zero(data[0].get("total"))

    async def book(self) -> BrokerBook:
        """``/orders``, ``/trades`` and ``/portfolio/positions`` (net, summed over products) read once each."""
        try:
            orders = await self.client.orders()
            trades = await self.client.trades()
            positions = await self.client.positions()
        except Exception as exc:
            raise to_broker_error(exc) from exc
        rows: dict[int, BrokerPosition] = {}
        for row in positions.get("net") or ():
            token = int(row["instrument_token"])
            known = rows.get(token)
            quantity = int(row.get("quantity") or 0) + (known.quantity if known else 0)
            overnight = int(row.get("overnight_quantity") or 0) + (known.overnight_quantity if known else 0)
            rows[token] = BrokerPosition(instrument_token=token, tradingsymbol=str(row.get("tradingsymbol") or ""),
                                         quantity=quantity, overnight_quantity=overnight,
                                         average_price=to_paise_or_zero(row.get("average_price")))
        return BrokerBook(orders=tuple(_broker_order(o) for o in orders),
                          trades=tuple(_broker_trade(t) for t in trades), positions=tuple(rows.values()))

    def adopt(self, request: OrderRequest, order_id: str, filled: int, filled_value: int) -> None:
        if self.tracker is not None:
            self.tracker.adopt(request.intent, request.tag, order_id, filled, filled_value)
