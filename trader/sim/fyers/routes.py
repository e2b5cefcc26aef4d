"""The Fyers face's trading and data routes: ``/api/v3/orders/sync`` (POST place, PATCH modify, DELETE cancel, JSON
bodies as the SDK sends them), the order book (``/orders``, ``?id=`` filter), ``/tradebook``, ``/positions``,
``/funds``, ``/multiorder/margin`` and ``/data/quotes``. Order entry is the core's (``trader.sim.order_entry``); this
face parses Fyers' fields and answers in Fyers' shapes."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from trader import money
from trader.events import OrderType
from trader.market.calendar import ist_date
from trader.market.instruments import OptionContract
from trader.sim.fyers.views import fund_rows, order_row, position_rows, positions_overall, trade_rows
from trader.sim.fyers.wire import (
    FO_EXCHANGE,
    INDEX_SYMBOLS,
    MAX_TAG_LENGTH,
    ORDER_TYPES,
    PRODUCTS,
    SIDES,
    TYPE_CODES,
    FyersError,
    description,
    fy_token,
    index_fy_token,
    invalid_input,
    ok,
    rupees,
)

if TYPE_CHECKING:
    from trader.sim.exchange import ExchangeSimulator

_TAG = re.compile(rf"^[A-Za-z0-9]{{1,{MAX_TAG_LENGTH}}}$")
MAX_QUOTE_SYMBOLS = 50


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise invalid_input("The request body must be a JSON object.") from None
    if not isinstance(body, dict):
        raise invalid_input("The request body must be a JSON object.")
    return body


def _int(body: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or value is None:
        raise invalid_input(f"Invalid `{name}`: {value!r}.")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    raise invalid_input(f"Invalid `{name}`: {value!r} is not a whole number.")


def _paise(body: Mapping[str, Any], name: str, default: int = 0) -> int:
    value = body.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise invalid_input(f"Invalid `{name}`: {value!r}.")
    try:
        return money.to_paise(str(value))
    except money.MoneyError:
        raise invalid_input(f"Invalid `{name}`: {value!r} is not a number.") from None


class FyersRoutes:
    def __init__(self, sim: ExchangeSimulator) -> None:
        self.sim = sim
        self.entry = sim.entry

    def _contract(self, symbol: object) -> OptionContract:
        text = symbol if isinstance(symbol, str) else ""
        prefix, _, tradingsymbol = text.partition(":")
        exchange = FO_EXCHANGE.get(prefix, "")
        contract = self.sim.contract(exchange, tradingsymbol) if exchange else None
        if contract is None or contract.expiry < ist_date(self.sim.clock.now_ns()):
            raise FyersError(400, -300, f"Invalid symbol: {text!r} is not listed on the simulated exchange.")
        return contract

    async def place(self, request: web.Request) -> web.StreamResponse:
        self.entry.count_order_request()
        body = await json_body(request)
        contract = self._contract(body.get("symbol"))
        side = SIDES.get(_int(body, "side"))
        if side is None:
            raise invalid_input(f"Invalid `side`: {body.get('side')!r}; use 1 (buy) or -1 (sell).")
        order_type = ORDER_TYPES.get(_int(body, "type"))
        if order_type is None:
            raise invalid_input(f"Invalid `type`: {body.get('type')!r}; use 1 limit, 2 market, 3 SL-M, 4 SL-L.")
        product = PRODUCTS.get(str(body.get("productType")))
        if product is None:
            raise invalid_input(f"Invalid `productType` {body.get('productType')!r} for F&O; use INTRADAY or MARGIN.")
        validity = str(body.get("validity") or "DAY")
        if validity != "DAY":
            raise invalid_input(f"Validity `{validity}` is not supported by the simulator; use DAY.")
        if body.get("offlineOrder") in (True, "true", "True"):
            raise invalid_input("After-market (offline) orders are not supported by the simulator.")
        tag = body.get("orderTag") or None
        if tag is not None and (not isinstance(tag, str) or not _TAG.match(tag)):
            raise invalid_input(f"Invalid `orderTag` {tag!r}: 1-{MAX_TAG_LENGTH} letters and digits.")
        price = _paise(body, "limitPrice") if order_type in (OrderType.LIMIT, OrderType.SL) else 0
        trigger = _paise(body, "stopPrice") if order_type in (OrderType.SL, OrderType.SL_M) else 0
        protection = body.get("marketProtection")
        order = await self.entry.place(contract, side, order_type, _int(body, "qty"), product=product, price=price,
                                       trigger=trigger, protection_text="-1" if protection in (None, "")
                                       else str(protection), tag=tag, validity=validity)
        await self.entry.after_accept(request)
        return ok({"id": order.order_id}, code=1101,
                  message=f"Order Submitted Successfully. Your Order Ref. No.{order.order_id}")

    async def modify(self, request: web.Request) -> web.StreamResponse:
        self.entry.count_order_request()
        body = await json_body(request)
        order = self.entry.order(str(body.get("id", "")))
        order_type = ORDER_TYPES.get(_int(body, "type", default=TYPE_CODES[order.order_type]))
        if order_type is None:
            raise invalid_input(f"Invalid `type`: {body.get('type')!r}; use 1 limit, 2 market, 3 SL-M, 4 SL-L.")
        quantity = _int(body, "qty", default=order.quantity)
        price = _paise(body, "limitPrice", order.price) if order_type in (OrderType.LIMIT, OrderType.SL) else 0
        trigger = _paise(body, "stopPrice", order.trigger_price) \
            if order_type in (OrderType.SL, OrderType.SL_M) else 0
        await self.entry.modify(order, order_type, quantity, price=price, trigger=trigger,
                                protection_text=str(order.market_protection or -1))
        return ok({"id": order.order_id}, code=1102, message="Successfully modified order")

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        self.entry.count_order_request()
        body = await json_body(request)
        order = self.entry.order(str(body.get("id", "")))
        await self.entry.cancel(order)
        return ok({"id": order.order_id}, code=1103, message="Successfully cancelled order")

    async def margin(self, request: web.Request) -> web.StreamResponse:
        """``POST /multiorder/margin`` ``{"data": [order, ...]}`` → ``data``: ``margin_total`` (what the orders need,
        the core's margin rule), ``margin_avail`` (available funds), ``margin_new_order`` (the same as the total)."""
        orders = (await json_body(request)).get("data")
        if not isinstance(orders, list) or not orders or not all(isinstance(o, dict) for o in orders):
            raise invalid_input("`data` must be a non-empty list of orders.")
        total = 0
        for item in orders:
            contract = self._contract(item.get("symbol"))
            side = SIDES.get(_int(item, "side"))
            if side is None:
                raise invalid_input(f"Invalid `side`: {item.get('side')!r}; use 1 (buy) or -1 (sell).")
            price = _paise(item, "limitPrice") or self.sim.last_price(contract.instrument_token)
            intent = self.entry.intent(contract, side, _int(item, "qty"), OrderType.LIMIT, price=price, trigger=0,
                                       protection=-1.0, intent_id="margin")
            total += await self.sim.broker.order_margin(intent)
        available = (await self.sim.broker.margins()).available
        return ok({"data": {"margin_avail": rupees(available), "margin_total": rupees(total),
                            "margin_new_order": rupees(total)}})

    async def orders(self, request: web.Request) -> web.StreamResponse:
        today = ist_date(self.sim.clock.now_ns())
        wanted = request.query.get("id")
        rows = [order_row(self.sim, o, n) for n, o in enumerate(self.sim.orders.values(), 1)
                if (ist_date(o.placed_ns) == today or not o.is_final) and wanted in (None, o.order_id)]
        return ok({"orderBook": rows})

    async def tradebook(self, request: web.Request) -> web.StreamResponse:
        return ok({"tradeBook": trade_rows(self.sim)})

    async def positions(self, request: web.Request) -> web.StreamResponse:
        rows = position_rows(self.sim)
        return ok({"netPositions": rows, "overall": positions_overall(rows)})

    async def funds(self, request: web.Request) -> web.StreamResponse:
        return ok({"fund_limit": await fund_rows(self.sim)})

    async def quotes(self, request: web.Request) -> web.StreamResponse:
        symbols = [s for s in request.query.get("symbols", "").split(",") if s]
        if not symbols or len(symbols) > MAX_QUOTE_SYMBOLS:
            raise invalid_input(f"Give 1-{MAX_QUOTE_SYMBOLS} comma-separated symbols in `symbols`.")
        return ok({"d": [self._quote(symbol) for symbol in symbols]})

    def _quote(self, symbol: str) -> dict[str, Any]:
        index = self.sim.market.index
        index_symbol = INDEX_SYMBOLS.get(self.sim.spec.name, ("", ""))[0]
        if symbol == index_symbol:
            token, token_text, short, detail = index.instrument_token, index_fy_token(index), index.name, index.name
        else:
            try:
                contract = self._contract(symbol)
            except FyersError:
                return {"n": symbol, "s": "error", "v": {"errmsg": "invalid symbol", "symbol": symbol}}
            token, token_text = contract.instrument_token, fy_token(contract)
            short, detail = contract.tradingsymbol, description(contract)
        quote = self.sim.quotes.get(token)
        if quote is None:
            return {"n": symbol, "s": "error", "v": {"errmsg": "no quote yet", "symbol": symbol}}
        tick = quote.tick
        change = tick.last_price - quote.close
        exchange = symbol.partition(":")[0]
        return {"n": symbol, "s": "ok", "v": {
            "ch": rupees(change), "chp": round(change * 100 / quote.close, 2) if quote.close else 0.0,
            "lp": rupees(tick.last_price), "spread": rupees(tick.ask - tick.bid) if tick.ask and tick.bid else 0.0,
            "ask": rupees(tick.ask), "bid": rupees(tick.bid), "open_price": rupees(quote.open),
            "high_price": rupees(quote.high), "low_price": rupees(quote.low),
            "prev_close_price": rupees(quote.close), "volume": tick.volume, "short_name": short,
            "exchange": exchange, "description": f"{exchange}:{detail}", "original_name": symbol,
            "symbol": symbol, "fyToken": token_text, "tt": str(tick.ts_ns // 1_000_000_000),
            "atp": rupees(tick.last_price), "oi": tick.oi}}


def add_routes(router: web.UrlDispatcher, sim: ExchangeSimulator) -> None:
    fyers = FyersRoutes(sim)
    router.add_post("/api/v3/orders/sync", fyers.place)
    router.add_patch("/api/v3/orders/sync", fyers.modify)
    router.add_delete("/api/v3/orders/sync", fyers.cancel)
    router.add_post("/api/v3/multiorder/margin", fyers.margin)
    router.add_get("/api/v3/orders", fyers.orders)
    router.add_get("/api/v3/tradebook", fyers.tradebook)
    router.add_get("/api/v3/positions", fyers.positions)
    router.add_get("/api/v3/funds", fyers.funds)
    router.add_get("/data/quotes", fyers.quotes)
