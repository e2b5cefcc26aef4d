"""The simulator's order routes: place, modify, cancel, the order book, history and trades, and order margins, with
the order-entry rules Kite and the exchange apply (tick, lot, freeze quantity, market protection, the LPP band, 10
order requests per second, tag length, funds)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiohttp import web

from trader.adapters.ports import OrderRejected
from trader.clock import NS_PER_SECOND
from trader.events import IntentPurpose, OrderIntent, OrderRequest, OrderType, Side
from trader.logging import get_logger
from trader.market.calendar import ist_date
from trader.market.charges import option_charges
from trader.market.instruments import OptionContract
from trader.money import rupee_text, to_rupees
from trader.sim.sim_order import SimOrder
from trader.sim.wire import (
    LPP_ABSOLUTE_PAISE,
    LPP_PCT,
    LPP_PCT_THRESHOLD_PAISE,
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

_log = get_logger("trader.sim")

if TYPE_CHECKING:
    from trader.sim.exchange import ExchangeSimulator

ORDERS_PER_SECOND = 10  # Kite: 10 order requests (place, modify, cancel) per second per account
MAX_TAG_LENGTH = 20
MAX_MODIFICATIONS = 25
_SIDES = {s.value: s for s in Side}


class OrderRoutes:
    def __init__(self, sim: ExchangeSimulator) -> None:
        self.sim = sim
        self._order_window = (0, 0)  # (calendar second of the server's wall clock, order requests in it)

    def _count_order_request(self) -> None:
        """10 order requests (place, modify, cancel) per calendar second of the server's wall clock."""
        second = self.sim.wall_ns() // NS_PER_SECOND
        current, count = self._order_window
        count = count + 1 if second == current else 1
        self._order_window = (second, count)
        if count > ORDERS_PER_SECOND:
            raise rate_limited()

    def _contract_or_error(self, fields: Mapping[str, str | None]) -> OptionContract:
        exchange, symbol = fields.get("exchange") or "", fields.get("tradingsymbol") or ""
        contract = self.sim.contract(exchange, symbol)
        if contract is None or contract.expiry < ist_date(self.sim.clock.now_ns()):
            raise input_error(f"Instrument not found: {exchange}:{symbol} is not listed on the simulated exchange.")
        return contract

    @staticmethod
    def _side(fields: Mapping[str, str | None]) -> Side:
        side = _SIDES.get(fields.get("transaction_type") or "")
        if side is None:
            raise input_error(f"Invalid `transaction_type`: {fields.get('transaction_type')!r}.")
        return side

    def _intent(self, contract: OptionContract, side: Side, quantity: int, order_type: OrderType, *, price: int,
                trigger: int, protection: float, intent_id: str) -> OrderIntent:
        return OrderIntent(ts_ns=self.sim.clock.now_ns(), intent_id=intent_id, strategy_id="kite-sim",
                           contract=contract, side=side, quantity=quantity, order_type=order_type,
                           purpose=IntentPurpose.ENTRY,
                           expected_price=price or self.sim.last_price(contract.instrument_token),
                           limit_price=price if order_type in (OrderType.LIMIT, OrderType.SL) else 0,
                           trigger_price=trigger, market_protection=protection)

    def _check_order(self, contract: OptionContract, order_type: OrderType, quantity: int, *, price: int,
                     trigger: int, protection_text: str | None) -> float:
        """Kite's and the exchange's order-entry rules; returns the market protection to use."""
        if not self.sim.calendar.is_open(self.sim.clock.now_ns()):
            raise input_error("Markets are closed right now. Use GTT for placing long standing orders instead.")
        lot = contract.lot_size
        if quantity <= 0 or quantity % lot:
            raise input_error(f"Quantity should be a multiple of the lot size {lot} for {contract.tradingsymbol}.")
        freeze = self.sim.spec.freeze_quantity
        if quantity > freeze:
            raise input_error(f"Quantity {quantity} exceeds the freeze limit of {freeze} for "
                              f"{contract.tradingsymbol}. Split the order or use autoslice.")
        tick = contract.tick_size
        for name, value, needed in (("price", price, order_type in (OrderType.LIMIT, OrderType.SL)),
                                    ("trigger_price", trigger, order_type in (OrderType.SL, OrderType.SL_M))):
            if needed and value <= 0:
                raise input_error(f"`{name}` is required for {order_type.value} orders.")
            if value % tick:
                raise input_error(f"Tick size for this script is {rupee_text(tick)}. Kindly enter the {name} in the "
                                  "multiple of tick size for this script.")
        protection = 0.0
        if order_type in (OrderType.MARKET, OrderType.SL_M):
            try:
                protection = float(protection_text) if protection_text not in (None, "") else 0.0
            except ValueError:
                raise input_error(f"Invalid `market_protection`: {protection_text!r}.") from None
            if not (protection == -1 or 0 < protection <= 100):
                raise input_error(f"{order_type.value} orders need `market_protection`: -1 (automatic) or a "
                                  "percentage in (0, 100]; orders without market protection are not allowed.")
        if order_type in (OrderType.LIMIT, OrderType.SL):
            reference = self.sim.last_price(contract.instrument_token)
            if reference > 0:
                band = reference * LPP_PCT // 100 if reference > LPP_PCT_THRESHOLD_PAISE else LPP_ABSOLUTE_PAISE
                low, high = max(reference - band, tick), reference + band
                if not low <= price <= high:
                    raise order_error(
                        f"Your order price {rupee_text(price)} is outside the exchange's price band (LPP) "
                        f"{rupee_text(low)} - {rupee_text(high)} for {contract.tradingsymbol}. Try placing an order "
                        "within the circuit limits.")
        return protection

    async def _check_margin(self, intent: OrderIntent) -> None:
        price = intent.limit_price or self._protected_price(intent)
        required = await self.sim.broker.order_margin(dataclasses.replace(intent, limit_price=price))
        available = (await self.sim.broker.margins()).available - self._open_order_margin()
        if required > available:
            raise KiteError(400, "MarginException",
                            f"Insufficient funds. Required margin is {rupee_text(required)} but available margin is "
                            f"{rupee_text(available)}. Check the orderbook for open orders.")

    def _protected_price(self, intent: OrderIntent) -> int:
        last = self.sim.last_price(intent.contract.instrument_token)
        pct = 3.0 if intent.market_protection == -1 else intent.market_protection
        return round(last * (1 + pct / 100)) if intent.side is Side.BUY else last

    def _open_order_margin(self) -> int:
        """Premium blocked by open buy orders (the paper broker counts only positions)."""
        return sum((o.quantity - o.filled) * (o.price or o.trigger_price or self.sim.last_price(
            o.contract.instrument_token)) for o in self.sim.orders.values() if not o.is_final and o.side is Side.BUY)

    async def place(self, request: web.Request) -> web.StreamResponse:
        self._count_order_request()
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
        protection = self._check_order(contract, order_type, quantity, price=price, trigger=trigger,
                                       protection_text=form.get("market_protection"))
        self.sim.order_seq += 1
        order_id = str(260_000_000_000_000 + self.sim.order_seq)
        intent = self._intent(contract, side, quantity, order_type, price=price, trigger=trigger, protection=protection,
                              intent_id=order_id)
        await self._check_margin(intent)
        now = self.sim.clock.now_ns()
        order = SimOrder(order_id=order_id, exchange_order_id=str(1_300_000_000_000_000 + self.sim.order_seq),
                         variety=variety, contract=contract, side=side, order_type=order_type, product=product,
                         validity=validity, quantity=quantity, price=price, trigger_price=trigger,
                         market_protection=protection, tag=tag, placed_ns=now, updated_ns=now)
        for status in ("PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING"):
            self.sim.set_status(order, status, now)
        await self._submit(order, intent)
        self.sim.orders[order_id] = order
        for entry in order.history:
            self.sim.queue_postback(entry)
        _log.info("sim_order_placed", order_id=order_id, tag=tag, symbol=contract.tradingsymbol, side=side.value,
                  quantity=quantity, order_type=order_type.value)
        await self._maybe_time_out(request)
        return success({"order_id": order_id})

    async def _submit(self, order: SimOrder, intent: OrderIntent) -> None:
        try:
            paper_id = await self.sim.broker.place_order(OrderRequest(ts_ns=self.sim.clock.now_ns(), intent=intent,
                                                                  tag=order.tag or order.order_id))
        except OrderRejected as exc:
            raise input_error(str(exc)) from None
        order.paper_id = paper_id
        self.sim.by_paper_id[paper_id] = order
        self.sim.set_status(order, "TRIGGER PENDING" if intent.order_type in (OrderType.SL, OrderType.SL_M)
                         else "OPEN", self.sim.clock.now_ns())

    async def _maybe_time_out(self, request: web.Request) -> None:
        faults = self.sim.faults
        if not faults.timeout_after_accept or self.sim.rng.random() >= faults.timeout_after_accept:
            return
        if faults.timeout_mode == "drop" and request.transport is not None:
            request.transport.close()
            return
        await self.sim.pause(faults.timeout_delay_s)

    def _order_or_error(self, order_id: str) -> SimOrder:
        order = self.sim.orders.get(order_id)
        if order is None:
            raise order_error("Couldn't find that `order_id`.")
        return order

    async def modify(self, request: web.Request) -> web.StreamResponse:
        self._count_order_request()
        order = self._order_or_error(request.match_info["order_id"])
        if order.is_final:
            raise order_error(f"Order cannot be modified as it is {order.status}.")
        if order.modifications >= MAX_MODIFICATIONS:
            raise order_error("Maximum allowed order modifications exceeded.")
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
        protection = self._check_order(order.contract, order_type, quantity, price=price, trigger=trigger,
                                       protection_text=protection_text)
        if quantity <= order.filled:
            raise input_error(f"Quantity {quantity} must exceed the {order.filled} already filled.")
        now = self.sim.clock.now_ns()
        for status in ("MODIFY VALIDATION PENDING", "MODIFY PENDING"):
            self.sim.set_status(order, status, now)
        old_paper = order.paper_id
        order.paper_id = ""  # the paper order's cancellation below is the modification, not the order's end
        await self.sim.broker.cancel_order(old_paper)
        order.order_type, order.quantity, order.price, order.trigger_price = order_type, quantity, price, trigger
        order.market_protection = protection
        order.modifications += 1
        self.sim.set_status(order, "MODIFIED", now)
        intent = self._intent(order.contract, order.side, quantity - order.filled, order_type, price=price,
                              trigger=trigger, protection=protection, intent_id=order.order_id)
        await self._submit(order, intent)
        return success({"order_id": order.order_id})

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        self._count_order_request()
        order = self._order_or_error(request.match_info["order_id"])
        if order.is_final:
            raise order_error(f"Order cannot be cancelled as it is {order.status}.")
        self.sim.set_status(order, "CANCEL PENDING", self.sim.clock.now_ns())
        await self.sim.broker.cancel_order(order.paper_id)  # the paper broker's CANCELLED update ends the order
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
            intent = self._intent(contract, side, quantity, OrderType.LIMIT, price=price, trigger=0, protection=-1.0,
                                  intent_id="margin")
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
