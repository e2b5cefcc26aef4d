"""The simulator's Kite order routes: place, modify, cancel, the order book, history and trades, and order margins.
The order-entry rules (tick, lot, freeze quantity, market protection, the LPP band, 10 order requests per second,
funds) live in the venue-neutral ``trader.sim.order_entry``; this face parses Kite's forms, checks Kite's own fields
(variety, product, validity, tag length) and answers in Kite's shapes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiohttp import web

from trader.events import OrderType, Side
from trader.market.calendar import ist_date
from trader.market.charges import option_charges
from trader.market.instruments import OptionContract
from trader.money import to_rupees
from trader.sim.order_entry import EntryError
from trader.sim.sim_order import SimOrder
from trader.sim.wire import (
    ORDER_TYPES,
    PRODUCTS,
    KiteError,
    form_paise,
    input_error,
    order_error,
    rate_limited,
    success,
    to_int,
)

if TYPE_CHECKING:
    from trader.sim.exchange import ExchangeSimulator

MAX_TAG_LENGTH = 20
_SIDES = {s.value: s for s in Side}


def kite_entry_error(error: EntryError) -> KiteError:
    """The Kite face's answer to a refusal of the shared order entry."""
    if error.kind == "rate_limit":
        return rate_limited()
    if error.kind == "margin":
        return KiteError(400, "MarginException", error.message)
    if error.kind in ("order", "not_found"):
        return order_error(error.message)
    return input_error(error.message)


class OrderRoutes:
    def __init__(self, sim: ExchangeSimulator) -> None:
        self.sim = sim
        self.entry = sim.entry

    def _contract_or_error(self, fields: Mapping[str, str | None]) -> OptionContract:
        return self.entry.listed(fields.get("exchange") or "", fields.get("tradingsymbol") or "")

    @staticmethod
    def _side(fields: Mapping[str, str | None]) -> Side:
        side = _SIDES.get(fields.get("transaction_type") or "")
        if side is None:
            raise input_error(f"Invalid `transaction_type`: {fields.get('transaction_type')!r}.")
        return side

    async def place(self, request: web.Request) -> web.StreamResponse:
        self.entry.count_order_request()
        variety = request.match_info["variety"]
        if variety != "regular":
            raise input_error(f"Variety `{variety}` is not supported by the simulator; use regular.")
        form = {k: str(v) for k, v in (await request.post()).items()}
        tag = form.get("tag") or None
        if tag is not None and len(tag) > MAX_TAG_LENGTH:
            raise input_error(f"Tag length should be less than or equal to {MAX_TAG_LENGTH} characters.")
        contract = self._contract_or_error(form)
        side = self._side(form)
        order_type = ORDER_TYPES.get(form.get("order_type", ""))
        if order_type is None:
            raise input_error(f"Invalid `order_type`: {form.get('order_type')!r}.")
        product = form.get("product", "")
        if product not in PRODUCTS:
            raise input_error(f"Invalid `product` {product!r} for F&O; use NRML or MIS.")
        validity = form.get("validity") or "DAY"
        if validity != "DAY":
            raise input_error(f"Validity `{validity}` is not supported by the simulator; use DAY.")
        quantity = to_int("quantity", form.get("quantity"))
        price = form_paise("price", form.get("price")) if order_type in (OrderType.LIMIT, OrderType.SL) else 0
        trigger = form_paise("trigger_price", form.get("trigger_price")) \
            if order_type in (OrderType.SL, OrderType.SL_M) else 0
        order = await self.entry.place(contract, side, order_type, quantity, product=product, price=price,
                                       trigger=trigger, protection_text=form.get("market_protection"), tag=tag,
                                       variety=variety, validity=validity)
        await self.entry.after_accept(request)
        return success({"order_id": order.order_id})

    def _order_or_error(self, order_id: str) -> SimOrder:
        return self.entry.order(order_id)

    async def modify(self, request: web.Request) -> web.StreamResponse:
        self.entry.count_order_request()
        order = self._order_or_error(request.match_info["order_id"])
        if order.is_final:
            raise order_error(f"Order cannot be modified as it is {order.status}.")
        form = {k: str(v) for k, v in (await request.post()).items()}
        order_type = ORDER_TYPES.get(form.get("order_type") or order.order_type.value)
        if order_type is None:
            raise input_error(f"Invalid `order_type`: {form.get('order_type')!r}.")
        quantity = to_int("quantity", form["quantity"]) if form.get("quantity") else order.quantity
        price = (form_paise("price", form["price"]) if form.get("price") else order.price) \
            if order_type in (OrderType.LIMIT, OrderType.SL) else 0
        trigger = (form_paise("trigger_price", form["trigger_price"]) if form.get("trigger_price")
                   else order.trigger_price) if order_type in (OrderType.SL, OrderType.SL_M) else 0
        protection_text = form.get("market_protection") or (str(order.market_protection)
                                                            if order.market_protection else None)
        await self.entry.modify(order, order_type, quantity, price=price, trigger=trigger,
                                protection_text=protection_text)
        return success({"order_id": order.order_id})

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        self.entry.count_order_request()
        order = self._order_or_error(request.match_info["order_id"])
        await self.entry.cancel(order)
        return success({"order_id": order.order_id})

    async def orders(self, request: web.Request) -> web.StreamResponse:
        today = ist_date(self.sim.clock.now_ns())
        return success([o.as_kite() for o in self.sim.orders.values() if ist_date(o.placed_ns) == today
                        or not o.is_final])

    async def order_history(self, request: web.Request) -> web.StreamResponse:
        return success(self._order_or_error(request.match_info["order_id"]).history)

    async def trades(self, request: web.Request) -> web.StreamResponse:
        return success(self.sim.trades)

    async def order_trades(self, request: web.Request) -> web.StreamResponse:
        order = self._order_or_error(request.match_info["order_id"])
        return success([t for t in self.sim.trades if t["order_id"] == order.order_id])

    async def order_margins(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            raise input_error("The request body must be a JSON array of orders.") from None
        if not isinstance(body, list):
            raise input_error("The request body must be a JSON array of orders.")
        today = ist_date(self.sim.clock.now_ns())
        out = []
        for item in body:
            if not isinstance(item, Mapping):
                raise input_error("Each order must be a JSON object.")
            fields = {k: None if v is None else str(v) for k, v in item.items()}
            contract = self._contract_or_error(fields)
            side = self._side(fields)
            quantity = to_int("quantity", fields.get("quantity"))
            price = form_paise("price", fields.get("price")) or self.sim.last_price(contract.instrument_token)
            intent = self.entry.intent(contract, side, quantity, OrderType.LIMIT, price=price, trigger=0,
                                       protection=-1.0, intent_id="margin")
            total = await self.sim.broker.order_margin(intent)
            c = option_charges(exchange=contract.exchange, side=side, quantity=max(quantity, 1), price=price,
                               trade_date=today)
            out.append({
                "type": "equity", "tradingsymbol": contract.tradingsymbol, "exchange": contract.exchange,
                "span": 0 if side is Side.BUY else to_rupees(total), "exposure": 0,
                "option_premium": to_rupees(total) if side is Side.BUY else 0, "additional": 0, "bo": 0, "cash": 0,
                "var": 0, "pnl": {"realised": 0, "unrealised": 0}, "leverage": 1,
                "charges": {"transaction_tax": to_rupees(c.stt), "transaction_tax_type": "stt",
                            "exchange_turnover_charge": to_rupees(c.exchange_txn),
                            "sebi_turnover_charge": to_rupees(c.sebi_fee), "brokerage": to_rupees(c.brokerage),
                            "stamp_duty": to_rupees(c.stamp_duty),
                            "gst": {"igst": to_rupees(c.gst), "cgst": 0, "sgst": 0, "total": to_rupees(c.gst)},
                            "total": to_rupees(c.total)},
                "total": to_rupees(total),
            })
        return success(out)
