"""Venue-neutral order entry for the exchange simulator: the rules the broker's OMS and the exchange apply (tick, lot,
freeze quantity, market protection, the LPP band, 10 order requests per second, funds), then submit, modify and
cancel against the one matching engine (the paper broker). Both wire faces (Kite: ``trader.sim.orders``, Fyers:
``trader.sim.fyers``) parse their own request shapes, call these, and translate ``EntryError`` into their envelopes.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal

from aiohttp import web

from trader.adapters.ports import OrderRejected
from trader.clock import NS_PER_SECOND
from trader.events import IntentPurpose, OrderIntent, OrderRequest, OrderType, Side
from trader.logging import get_logger
from trader.market.calendar import ist_date
from trader.market.instruments import OptionContract
from trader.money import rupee_text
from trader.sim.sim_order import SimOrder
from trader.sim.wire import LPP_ABSOLUTE_PAISE, LPP_PCT, LPP_PCT_THRESHOLD_PAISE

if TYPE_CHECKING:
    from trader.sim.exchange import ExchangeSimulator

_log = get_logger("trader.sim")

ORDERS_PER_SECOND = 10  # 10 order requests (place, modify, cancel) per second per account (Kite; Fyers alike)
MAX_MODIFICATIONS = 25

EntryKind = Literal["input", "order", "margin", "rate_limit", "not_found"]


class EntryError(Exception):
    """An order request the simulated broker refuses; each wire face turns ``kind`` into its own error shape.

    ``input``: a bad field (nothing happened); ``order``: the order cannot be placed/changed in its state or band;
    ``margin``: insufficient funds; ``rate_limit``: too many order requests this second; ``not_found``: no such order.
    """

    def __init__(self, kind: EntryKind, message: str) -> None:
        super().__init__(message)
        self.kind: EntryKind = kind
        self.message = message


class OrderEntry:
    """Order entry on the simulator's one account (shared by the Kite and Fyers faces)."""

    def __init__(self, sim: ExchangeSimulator) -> None:
        self.sim = sim
        self._order_window = (0, 0)  # (calendar second of the server's wall clock, order requests in it)

    def count_order_request(self) -> None:
        """10 order requests (place, modify, cancel) per calendar second of the server's wall clock."""
        second = self.sim.wall_ns() // NS_PER_SECOND
        current, count = self._order_window
        count = count + 1 if second == current else 1
        self._order_window = (second, count)
        if count > ORDERS_PER_SECOND:
            raise EntryError("rate_limit", "Too many requests")

    def listed(self, exchange: str, tradingsymbol: str) -> OptionContract:
        contract = self.sim.contract(exchange, tradingsymbol)
        if contract is None or contract.expiry < ist_date(self.sim.clock.now_ns()):
            raise EntryError("input", f"Instrument not found: {exchange}:{tradingsymbol} is not listed on the "
                                      "simulated exchange.")
        return contract

    def order(self, order_id: str) -> SimOrder:
        order = self.sim.orders.get(order_id)
        if order is None:
            raise EntryError("not_found", "Couldn't find that `order_id`.")
        return order

    def intent(self, contract: OptionContract, side: Side, quantity: int, order_type: OrderType, *, price: int,
               trigger: int, protection: float, intent_id: str) -> OrderIntent:
        return OrderIntent(ts_ns=self.sim.clock.now_ns(), intent_id=intent_id, strategy_id="exchange-sim",
                           contract=contract, side=side, quantity=quantity, order_type=order_type,
                           purpose=IntentPurpose.ENTRY,
                           expected_price=price or self.sim.last_price(contract.instrument_token),
                           limit_price=price if order_type in (OrderType.LIMIT, OrderType.SL) else 0,
                           trigger_price=trigger, market_protection=protection)

    def check(self, contract: OptionContract, order_type: OrderType, quantity: int, *, price: int, trigger: int,
              protection_text: str | None) -> float:
        """The broker's and the exchange's order-entry rules; returns the market protection to use."""
        if not self.sim.calendar.is_open(self.sim.clock.now_ns()):
            raise EntryError("input", "Markets are closed right now. Use GTT for placing long standing orders "
                                      "instead.")
        lot = contract.lot_size
        if quantity <= 0 or quantity % lot:
            raise EntryError("input", f"Quantity should be a multiple of the lot size {lot} for "
                                      f"{contract.tradingsymbol}.")
        freeze = self.sim.spec.freeze_quantity
        if quantity > freeze:
            raise EntryError("input", f"Quantity {quantity} exceeds the freeze limit of {freeze} for "
                                      f"{contract.tradingsymbol}. Split the order or use autoslice.")
        tick = contract.tick_size
        for name, value, needed in (("price", price, order_type in (OrderType.LIMIT, OrderType.SL)),
                                    ("trigger_price", trigger, order_type in (OrderType.SL, OrderType.SL_M))):
            if needed and value <= 0:
                raise EntryError("input", f"`{name}` is required for {order_type.value} orders.")
            if value % tick:
                raise EntryError("input", f"Tick size for this script is {rupee_text(tick)}. Kindly enter the {name} "
                                          "in the multiple of tick size for this script.")
        protection = 0.0
        if order_type in (OrderType.MARKET, OrderType.SL_M):
            try:
                protection = float(protection_text) if protection_text not in (None, "") else 0.0
            except ValueError:
                raise EntryError("input", f"Invalid `market_protection`: {protection_text!r}.") from None
            if not (protection == -1 or 0 < protection <= 100):
                raise EntryError("input", f"{order_type.value} orders need `market_protection`: -1 (automatic) or a "
                                          "percentage in (0, 100]; orders without market protection are not allowed.")
        if order_type in (OrderType.LIMIT, OrderType.SL):
            reference = self.sim.last_price(contract.instrument_token)
            if reference > 0:
                band = reference * LPP_PCT // 100 if reference > LPP_PCT_THRESHOLD_PAISE else LPP_ABSOLUTE_PAISE
                low, high = max(reference - band, tick), reference + band
                if not low <= price <= high:
                    raise EntryError(
                        "order", f"Your order price {rupee_text(price)} is outside the exchange's price band (LPP) "
                                 f"{rupee_text(low)} - {rupee_text(high)} for {contract.tradingsymbol}. Try placing "
                                 "an order within the circuit limits.")
        return protection

    async def check_margin(self, intent: OrderIntent) -> None:
        price = intent.limit_price or self._protected_price(intent)
        required = await self.sim.broker.order_margin(dataclasses.replace(intent, limit_price=price))
        available = (await self.sim.broker.margins()).available - self._open_order_margin()
        if required > available:
            raise EntryError("margin", f"Insufficient funds. Required margin is {rupee_text(required)} but available "
                                       f"margin is {rupee_text(available)}. Check the orderbook for open orders.")

    def _protected_price(self, intent: OrderIntent) -> int:
        last = self.sim.last_price(intent.contract.instrument_token)
        pct = 3.0 if intent.market_protection == -1 else intent.market_protection
        return round(last * (1 + pct / 100)) if intent.side is Side.BUY else last

    def _open_order_margin(self) -> int:
        """Premium blocked by open buy orders (the paper broker counts only positions)."""
        return sum((o.quantity - o.filled) * (o.price or o.trigger_price or self.sim.last_price(
            o.contract.instrument_token)) for o in self.sim.orders.values() if not o.is_final and o.side is Side.BUY)

    async def place(self, contract: OptionContract, side: Side, order_type: OrderType, quantity: int, *,
                    product: str, price: int, trigger: int, protection_text: str | None, tag: str | None,
                    variety: str = "regular", validity: str = "DAY") -> SimOrder:
        """Check, book and submit a new order; the caller has counted the request and checked its venue's fields."""
        protection = self.check(contract, order_type, quantity, price=price, trigger=trigger,
                                protection_text=protection_text)
        self.sim.order_seq += 1
        order_id = str(260_000_000_000_000 + self.sim.order_seq)
        intent = self.intent(contract, side, quantity, order_type, price=price, trigger=trigger, protection=protection,
                             intent_id=order_id)
        await self.check_margin(intent)
        now = self.sim.clock.now_ns()
        order = SimOrder(order_id=order_id, exchange_order_id=str(1_300_000_000_000_000 + self.sim.order_seq),
                         variety=variety, contract=contract, side=side, order_type=order_type, product=product,
                         validity=validity, quantity=quantity, price=price, trigger_price=trigger,
                         market_protection=protection, tag=tag, placed_ns=now, updated_ns=now)
        for status in ("PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING"):
            self.sim.set_status(order, status, now)
        await self.submit(order, intent)
        self.sim.book_order(order)
        _log.info("sim_order_placed", order_id=order_id, tag=tag, symbol=contract.tradingsymbol, side=side.value,
                  quantity=quantity, order_type=order_type.value)
        return order

    async def submit(self, order: SimOrder, intent: OrderIntent) -> None:
        try:
            paper_id = await self.sim.broker.place_order(OrderRequest(ts_ns=self.sim.clock.now_ns(), intent=intent,
                                                                  tag=order.tag or order.order_id))
        except OrderRejected as exc:
            raise EntryError("input", str(exc)) from None
        order.paper_id = paper_id
        self.sim.by_paper_id[paper_id] = order
        self.sim.set_status(order, "TRIGGER PENDING" if intent.order_type in (OrderType.SL, OrderType.SL_M)
                            else "OPEN", self.sim.clock.now_ns())

    async def modify(self, order: SimOrder, order_type: OrderType, quantity: int, *, price: int, trigger: int,
                     protection_text: str | None) -> None:
        """Change an open order (the caller fills in unchanged fields from the order and counts the request)."""
        if order.is_final:
            raise EntryError("order", f"Order cannot be modified as it is {order.status}.")
        if order.modifications >= MAX_MODIFICATIONS:
            raise EntryError("order", "Maximum allowed order modifications exceeded.")
        protection = self.check(order.contract, order_type, quantity, price=price, trigger=trigger,
                                protection_text=protection_text)
        if quantity <= order.filled:
            raise EntryError("input", f"Quantity {quantity} must exceed the {order.filled} already filled.")
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
        intent = self.intent(order.contract, order.side, quantity - order.filled, order_type, price=price,
                             trigger=trigger, protection=protection, intent_id=order.order_id)
        await self.submit(order, intent)

    async def cancel(self, order: SimOrder) -> None:
        if order.is_final:
            raise EntryError("order", f"Order cannot be cancelled as it is {order.status}.")
        self.sim.set_status(order, "CANCEL PENDING", self.sim.clock.now_ns())
        await self.sim.broker.cancel_order(order.paper_id)  # the paper broker's CANCELLED update ends the order

    async def after_accept(self, request: web.Request) -> None:
        """The ``timeout_after_accept`` fault: the order exists, but its answer is held back or never sent."""
        faults = self.sim.faults
        if not faults.timeout_after_accept or self.sim.rng.random() >= faults.timeout_after_accept:
            return
        if faults.timeout_mode == "drop" and request.transport is not None:
            request.transport.close()
            return
        await self.sim.pause(faults.timeout_delay_s)
