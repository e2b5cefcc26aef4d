"""The exchange simulator: Kite Connect v3 REST on aiohttp plus the Kite WebSocket, backed by the synthetic market and
the paper broker.

One simulated account. The ``SyntheticMarket`` produces index and option-chain ticks on the simulator's own
``SimClock``; every tick is fed to a ``PaperBroker``, whose fill rules (MARKET / LIMIT / SL / SL-M, partial fills,
DAY expiry) decide what trades. The simulator adds what Kite adds on top: the REST routes, the login flow, the
order-entry rules of ``india-fno-facts.md`` (tick, lot, freeze quantity, market protection, LPP band, 10 order
requests per calendar second, tag length) and Kite's JSON shapes for orders, history, trades, positions and funds.

Time: with ``speed == 0`` (the default, for tests) the market moves only when ``advance(seconds)`` is awaited, so a
test is deterministic; with ``speed > 0`` a background task runs the market at ``speed`` × real time. By default the
clock starts at the open of the session the wall clock is in or waiting for, so the market is open from the start;
``follow_wall=True`` instead runs the clock on the wall clock (speed 1, never jumping over nights), so the market opens
and closes with the real NSE calendar and hours.

WebSocket half: a ``TickerServer`` starts next to the REST server (``ws_url``). It accepts the simulator's api_key
with any access token the REST login issued and not yet invalidated. Every tick batch the market produces is
published in each client's modes with per-token day statistics: the day's open/high/low from the session's ticks,
and as "previous close" the last price of the previous simulated session (the first session's close is its first
price, since there is no earlier one). Every change of an order's status or filled quantity (the paper broker follows
each fill with a status update) is published as an order postback text message shaped like Kite's
(``kite-protocol.md`` §3.2). ``advance`` awaits the publishing, so a test sees the messages deterministically.
Fault knobs: ``await drop_websockets()`` and ``ws_drop_every_s`` (simulated seconds between forced drops; 0 = off).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import random
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from trader.adapters.paper import PaperBroker, PaperBrokerConfig
from trader.adapters.ports import OrderRejected
from trader.adapters.synthetic import SyntheticConfig, SyntheticMarket
from trader.clock import NS_PER_SECOND, SimClock
from trader.events import (
    Fill,
    IntentPurpose,
    OrderIntent,
    OrderRequest,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    Tick,
)
from trader.logging import get_logger
from trader.market.calendar import MarketCalendar, ist_date
from trader.market.charges import option_charges
from trader.market.instruments import FALLBACK_UNDERLYINGS, InstrumentMaster, OptionContract
from trader.sim.encode import DayStats
from trader.sim.ticker import TickerServer
from trader.sim.wire import (
    Faults,
    KiteError,
    failure,
    input_error,
    kite_clock_time,
    kite_time,
    order_error,
    rate_limited,
    rupees,
    success,
    to_int,
    to_paise,
    token_error,
)

_log = get_logger("trader.sim")

ORDERS_PER_SECOND = 10  # india-fno-facts.md §5.2
MAX_TAG_LENGTH = 20
MAX_MODIFICATIONS = 25
LPP_PCT = 40  # india-fno-facts.md §2.3: ±40 % of the reference for premiums above ₹50 ...
LPP_ABSOLUTE_PAISE = 2_000  # ... else ±₹20
LPP_PCT_THRESHOLD_PAISE = 5_000
_USER_ID = "SIM001"
_PRODUCTS = frozenset({"NRML", "MIS"})
_ORDER_TYPES = {t.value: t for t in OrderType}
_SIDES = {s.value: s for s in Side}
_PUBLIC = frozenset({("GET", "/connect/login"), ("POST", "/session/token")})
_CSV_COLUMNS = ("instrument_token", "exchange_token", "tradingsymbol", "name", "last_price", "expiry", "strike",
                "tick_size", "lot_size", "instrument_type", "segment", "exchange")


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
        return round(self.fill_value / self.filled / 100, 2) if self.filled else 0.0

    @property
    def is_final(self) -> bool:
        return self.status in ("COMPLETE", "CANCELLED", "REJECTED")

    def as_kite(self) -> dict[str, Any]:
        pending = 0 if self.is_final else self.quantity - self.filled
        return {
            "placed_by": _USER_ID, "account_id": _USER_ID, "order_id": self.order_id,
            "exchange_order_id": self.exchange_order_id, "parent_order_id": None, "status": self.status,
            "status_message": self.status_message, "status_message_raw": self.status_message,
            "order_timestamp": kite_time(self.placed_ns), "exchange_update_timestamp": kite_time(self.updated_ns),
            "exchange_timestamp": kite_time(self.placed_ns), "variety": self.variety,
            "modified": self.modifications > 0, "exchange": self.contract.exchange,
            "tradingsymbol": self.contract.tradingsymbol, "instrument_token": self.contract.instrument_token,
            "order_type": self.order_type.value, "transaction_type": self.side.value, "validity": self.validity,
            "validity_ttl": 0, "product": self.product, "quantity": self.quantity, "disclosed_quantity": 0,
            "price": rupees(self.price), "trigger_price": rupees(self.trigger_price),
            "average_price": self.average_price, "filled_quantity": self.filled, "pending_quantity": pending,
            "cancelled_quantity": self.cancelled, "market_protection": self.market_protection, "meta": {},
            "tag": self.tag, "tags": [self.tag] if self.tag else [], "guid": f"{self.order_id}-{len(self.history)}",
        }


@dataclass(slots=True)
class _Quote:
    tick: Tick
    open: int
    high: int
    low: int
    close: int  # previous session's last price (the first session: its open)
    session_day: int


class _WallFollowingClock(SimClock):
    """A paced clock anchored at the wall clock that never jumps: nights and weekends pass in real time."""

    def jump_to(self, ts_ns: int) -> None:
        return


class ExchangeSimulator:
    """Kite Connect v3 REST (aiohttp) and the Kite WebSocket for one simulated account."""

    def __init__(self, api_key: str = "sim_api_key", api_secret: str = "sim_api_secret", *, seed: int = 7,
                 speed: float = 0.0, start_ns: int | None = None, redirect_url: str = "http://127.0.0.1/callback",
                 faults: Faults | None = None, underlying: str = "NIFTY", capital_rupees: int = 1_000_000,
                 synthetic: SyntheticConfig | None = None,
                 wall_ns: Callable[[], int] = time.time_ns, follow_wall: bool = False,
                 ws_heartbeat_s: float = 1.0) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.redirect_url = redirect_url
        self.faults = faults or Faults()
        self.calendar = MarketCalendar()
        wall = wall_ns()
        self._follow_wall = follow_wall
        if follow_wall:
            self.clock: SimClock = _WallFollowingClock(wall, 1.0)
        else:
            self.clock = SimClock(start_ns if start_ns is not None else self.calendar.next_session_open(wall), speed)
        self.spec = FALLBACK_UNDERLYINGS[underlying]
        self.instruments = InstrumentMaster()
        config = synthetic or SyntheticConfig(seed=seed)
        self.market = SyntheticMarket(self.clock, self.calendar, self.spec, config)
        self._step_ns = config.tick_interval_ms * 1_000_000
        self.broker = PaperBroker(self.clock, PaperBrokerConfig(latency_ms=0, slippage_ticks=0), self.calendar,
                                  capital=capital_rupees * 100)
        self.broker.attach(self._on_broker_event)
        self._capital = capital_rupees * 100
        self._rng = random.Random(seed)
        self._wall_ns = wall_ns
        self._request_tokens: set[str] = set()
        self._access_tokens: set[str] = set()
        self.orders: dict[str, SimOrder] = {}
        self._by_paper: dict[str, SimOrder] = {}
        self.trades: list[dict[str, Any]] = []
        self._quotes: dict[int, _Quote] = {}
        self._order_window = (0, 0)  # (calendar second, order requests in it)
        self._order_seq = 0
        self._trade_seq = 0
        self._stream: AsyncIterator[list[Tick]] | None = None
        self._last_tick_ns = 0
        self._pump: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self.base_url = ""
        self.ticker = TickerServer(self._ws_authorized, heartbeat_s=ws_heartbeat_s)
        self._ws_url = ""
        self._outbox: deque[dict[str, Any]] = deque()
        self._outbox_ready = asyncio.Event()
        self._publish_lock = asyncio.Lock()
        self._postbacks: asyncio.Task[None] | None = None
        self._postback_seq = 0
        self._app_id = int(hashlib.sha256(api_key.encode()).hexdigest()[:4], 16)
        self.ws_drop_every_s = 0.0  # fault knob: drop every WebSocket connection this often (simulated seconds)
        self._last_ws_drop_ns = 0
        self.app = web.Application(middlewares=[self._middleware])
        self._routes()

    # -- lifecycle -----------------------------------------------------------------------------------------
    @property
    def ws_url(self) -> str:
        """The WebSocket root (``ws://host:port``) to give ``KiteTicker(..., root=...)``; empty before ``start``."""
        return self._ws_url

    async def start(self, host: str = "127.0.0.1", port: int = 0, ws_port: int = 0) -> str:
        """Start the market, the WebSocket (on ``ws_port``, 0 = any free port) and the REST server; return the REST
        base URL."""
        await self.market.start(self.instruments)
        self._stream = self.market.stream()
        if not self._follow_wall or self.calendar.is_open(self.clock.now_ns()):
            self._on_batch(await anext(self._stream))  # the session opens: quotes exist from the start
        self._ws_url = await self.ticker.start(host, ws_port)
        self._last_ws_drop_ns = self.clock.now_ns()
        self._postbacks = asyncio.create_task(self._run_postbacks(), name="sim-postbacks")
        if self.clock.paced:
            self._pump = asyncio.create_task(self._run_market(), name="sim-market")
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        bound_port = sockets[0].getsockname()[1] if sockets else port
        self.base_url = f"http://{host}:{bound_port}"
        _log.info("sim_started", url=self.base_url, ws_url=self._ws_url, api_key=self.api_key,
                  speed=self.clock.speed, sim_time=kite_time(self.clock.now_ns()))
        return self.base_url

    async def stop(self) -> None:
        self._stopping.set()
        for task in (self._pump, self._postbacks):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.ticker.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.market.close()

    async def advance(self, seconds: float) -> None:
        """Unpaced clock only: run the market ``seconds`` of simulated time forward, feeding every tick to the
        matching engine. Time lands exactly on ``now + seconds`` (possibly after the session close)."""
        if self.clock.paced:
            raise RuntimeError("advance() drives an unpaced simulator (speed=0); a paced one runs by itself")
        assert self._stream is not None, "start() the simulator first"
        target = self.clock.now_ns() + round(seconds * NS_PER_SECOND)
        while True:
            next_ns = self._last_tick_ns + self._step_ns
            if not self.calendar.is_open(next_ns):
                next_ns = self.calendar.next_session_open(next_ns)  # the market opens the next session itself
            if next_ns > target:
                break
            await self._take_batch(await anext(self._stream))
        self.clock.jump_to(target)
        await self._flush_postbacks()

    async def _run_market(self) -> None:
        assert self._stream is not None
        async for batch in self._stream:
            await self._take_batch(batch)

    async def _take_batch(self, batch: list[Tick]) -> None:
        """Book the batch (quotes, matching), then publish its ticks and the postbacks it caused."""
        self._on_batch(batch)
        if self.ws_drop_every_s > 0 and batch:
            now = batch[-1].ts_ns
            if now - self._last_ws_drop_ns >= self.ws_drop_every_s * NS_PER_SECOND:
                self._last_ws_drop_ns = now
                await self.drop_websockets()
        if self.ticker.clients:
            await self.ticker.publish_ticks(batch, self.day_stats(t.instrument_token for t in batch))
        await self._flush_postbacks()

    async def drop_websockets(self) -> None:
        """Fault knob: close every WebSocket connection now, as a network blip would (clients reconnect)."""
        _log.info("sim_ws_drop", clients=self.ticker.clients)
        await self.ticker.drop_connections()

    def _ws_authorized(self, api_key: str, access_token: str) -> bool:
        return api_key == self.api_key and access_token in self._access_tokens

    def day_stats(self, tokens: Iterable[int]) -> dict[int, DayStats]:
        """What the WebSocket's quote/full packets carry besides the tick, per token (paise; same values as the REST
        ``/quote`` answer: average price = last price, last quantity = one lot, total buy/sell = best bid/ask size)."""
        out: dict[int, DayStats] = {}
        for token in tokens:
            quote = self._quotes.get(token)
            if quote is None:
                continue
            tick = quote.tick
            instrument = self.instruments.by_token(token)
            tradeable = isinstance(instrument, OptionContract)
            out[token] = DayStats(
                open=quote.open, high=quote.high, low=quote.low, close=quote.close,
                average_price=tick.last_price if tradeable else 0,
                last_quantity=instrument.lot_size if isinstance(instrument, OptionContract) else 0,
                total_buy_quantity=tick.bid_qty, total_sell_quantity=tick.ask_qty,
                last_trade_ts=tick.ts_ns // NS_PER_SECOND)
        return out

    # -- order postbacks over the WebSocket ----------------------------------------------------------------
    def postback(self, kite: Mapping[str, Any]) -> dict[str, Any]:
        """Kite's postback payload (``postback.json``) for an order as ``SimOrder.as_kite()`` shows it."""
        self._postback_seq += 1
        quantity, filled = int(kite["quantity"]), int(kite["filled_quantity"])
        checksum = hashlib.sha256(
            (kite["order_id"] + kite["order_timestamp"] + self.api_secret).encode()).hexdigest()
        return {**kite, "user_id": _USER_ID, "app_id": self._app_id, "checksum": checksum,
                "unfilled_quantity": quantity - filled, "cancelled_quantity": kite["cancelled_quantity"],
                "market_protection": kite["market_protection"], "meta": {},
                "guid": f"{self._app_id}X{self._postback_seq:010d}"}

    def _queue_postback(self, kite: Mapping[str, Any]) -> None:
        self._outbox.append(self.postback(kite))
        self._outbox_ready.set()

    async def _flush_postbacks(self) -> None:
        async with self._publish_lock:  # one publisher at a time: messages leave in the order they were queued
            while self._outbox:
                await self.ticker.publish_order(self._outbox.popleft())

    async def _run_postbacks(self) -> None:
        """Publishes what REST handlers queue (placement, modification, cancellation) without waiting for a tick."""
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            await self._flush_postbacks()

    def _on_batch(self, batch: list[Tick]) -> None:
        for tick in batch:
            self._last_tick_ns = max(self._last_tick_ns, tick.ts_ns)
            day = ist_date(tick.ts_ns).toordinal()
            quote = self._quotes.get(tick.instrument_token)
            price = tick.last_price
            if quote is None:
                self._quotes[tick.instrument_token] = _Quote(tick, price, price, price, price, day)
            elif quote.session_day != day:
                close = quote.tick.last_price
                self._quotes[tick.instrument_token] = _Quote(tick, price, price, price, close, day)
            else:
                quote.tick = tick
                quote.high = max(quote.high, price)
                quote.low = min(quote.low, price)
            self.broker.on_tick(tick)

    # -- what the book says (used by handlers and by tests) ------------------------------------------------
    def last_price(self, token: int) -> int:
        quote = self._quotes.get(token)
        return quote.tick.last_price if quote else 0

    def book_tick(self, token: int) -> Tick | None:
        """The latest tick the book holds for ``token`` (its best bid/ask, volume, OI), if any."""
        quote = self._quotes.get(token)
        return quote.tick if quote else None

    def contract(self, exchange: str, tradingsymbol: str) -> OptionContract | None:
        contract = self.instruments.contract(tradingsymbol)
        if contract is None or contract.exchange != exchange:
            return None
        return contract

    def listed_contracts(self) -> list[OptionContract]:
        today = ist_date(self.clock.now_ns())
        return [c for expiry in self.instruments.expiries(self.spec.name) if expiry >= today
                for c in self.instruments.option_chain(self.spec.name, expiry)]

    def positions_view(self) -> dict[str, list[dict[str, Any]]]:
        rows: dict[int, dict[str, Any]] = {}
        for trade in self.trades:
            token = trade["instrument_token"]
            row = rows.setdefault(token, {"trade": trade, "bq": 0, "bv": 0, "sq": 0, "sv": 0})
            value = round(trade["average_price"] * 100) * trade["quantity"]
            if trade["transaction_type"] == "BUY":
                row["bq"] += trade["quantity"]
                row["bv"] += value
            else:
                row["sq"] += trade["quantity"]
                row["sv"] += value
        out = []
        for token, row in rows.items():
            first = row["trade"]
            bq, bv, sq, sv = row["bq"], row["bv"], row["sq"], row["sv"]
            quantity = bq - sq
            last = self.last_price(token)
            pnl = sv - bv + quantity * last
            buy_price = round(bv / bq / 100, 2) if bq else 0.0
            sell_price = round(sv / sq / 100, 2) if sq else 0.0
            quote = self._quotes.get(token)
            out.append({
                "tradingsymbol": first["tradingsymbol"], "exchange": first["exchange"], "instrument_token": token,
                "product": first["product"], "quantity": quantity, "overnight_quantity": 0, "multiplier": 1,
                "average_price": buy_price if quantity > 0 else sell_price if quantity < 0 else 0,
                "close_price": rupees(quote.close) if quote else 0, "last_price": rupees(last),
                "value": rupees(sv - bv), "pnl": rupees(pnl), "m2m": rupees(pnl), "unrealised": rupees(pnl),
                "realised": 0, "buy_quantity": bq, "buy_price": buy_price, "buy_value": rupees(bv),
                "buy_m2m": rupees(bv), "sell_quantity": sq, "sell_price": sell_price, "sell_value": rupees(sv),
                "sell_m2m": rupees(sv), "day_buy_quantity": bq, "day_buy_price": buy_price,
                "day_buy_value": rupees(bv), "day_sell_quantity": sq, "day_sell_price": sell_price,
                "day_sell_value": rupees(sv),
            })
        return {"net": out, "day": [dict(r) for r in out]}

    # -- broker events -------------------------------------------------------------------------------------
    def _on_broker_event(self, event: object) -> None:
        if isinstance(event, Fill):
            order = self._by_paper.get(event.order_id)
            if order is None:
                return
            order.filled += event.quantity
            order.fill_value += event.quantity * event.price
            self._trade_seq += 1
            self.trades.append({
                "trade_id": f"{self._trade_seq:08d}", "order_id": order.order_id,
                "exchange_order_id": order.exchange_order_id, "exchange": order.contract.exchange,
                "tradingsymbol": order.contract.tradingsymbol, "instrument_token": order.contract.instrument_token,
                "product": order.product, "average_price": rupees(event.price), "quantity": event.quantity,
                "transaction_type": order.side.value, "fill_timestamp": kite_time(event.ts_ns),
                "order_timestamp": kite_clock_time(order.placed_ns), "exchange_timestamp": kite_time(event.ts_ns),
            })
        elif isinstance(event, OrderUpdate):
            order = self._by_paper.get(event.order_id)
            if order is None or order.paper_id != event.order_id or order.is_final:
                return  # placed a moment ago (handled by the caller) or superseded by a modification
            if event.status is OrderStatus.CANCELLED:
                order.cancelled = order.quantity - order.filled
                self._set_status(order, "CANCELLED", event.ts_ns, event.reason or None)
            elif event.status is OrderStatus.COMPLETE:
                self._set_status(order, "COMPLETE", event.ts_ns)
            else:
                self._set_status(order, event.status.value, event.ts_ns)

    def _set_status(self, order: SimOrder, status: str, ts_ns: int, message: str | None = None) -> None:
        order.status = status
        order.updated_ns = ts_ns
        if message is not None:
            order.status_message = message
        entry = order.as_kite()
        order.history.append(entry)
        if order.order_id in self.orders:  # a placement's first states are published once it is on the book
            self._queue_postback(entry)

    # -- HTTP plumbing -------------------------------------------------------------------------------------
    def _routes(self) -> None:
        r = self.app.router
        r.add_get("/connect/login", self._login)
        r.add_post("/session/token", self._session_token)
        r.add_delete("/session/token", self._logout)
        r.add_get("/user/profile", self._profile)
        r.add_get("/user/margins", self._margins)
        r.add_get("/user/margins/{segment}", self._margins)
        r.add_post("/margins/orders", self._order_margins)
        r.add_get("/orders", self._orders)
        r.add_get("/orders/{order_id}", self._order_history)
        r.add_get("/orders/{order_id}/trades", self._order_trades)
        r.add_post("/orders/{variety}", self._place)
        r.add_put("/orders/{variety}/{order_id}", self._modify)
        r.add_delete("/orders/{variety}/{order_id}", self._cancel)
        r.add_get("/trades", self._trades)
        r.add_get("/portfolio/positions", self._positions)
        r.add_get("/quote", self._quote)
        r.add_get("/quote/ltp", self._ltp)
        r.add_get("/instruments", self._instruments_dump)
        r.add_get("/instruments/{exchange}", self._instruments_dump)

    @web.middleware
    async def _middleware(self, request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        faults = self.faults
        if faults.latency_ms:
            await self._pause(faults.latency_ms / 1000)
        try:
            public = (request.method, request.path) in _PUBLIC
            if not public:
                self._authorise(request)
                if faults.rate_limit_rate and self._rng.random() < faults.rate_limit_rate:
                    raise rate_limited()
                if faults.error_rate and self._rng.random() < faults.error_rate:
                    raise self._rng.choice([
                        KiteError(500, "GeneralException", "Simulated internal server error."),
                        KiteError(502, "DataException", "Simulated OMS response error."),
                        KiteError(503, "NetworkException", "Simulated OMS unavailability."),
                    ])
            return await handler(request)
        except KiteError as error:
            return failure(error)
        except web.HTTPNotFound:
            return failure(KiteError(404, "GeneralException", f"Route not found: {request.method} {request.path}"))
        except web.HTTPMethodNotAllowed:
            return failure(KiteError(405, "GeneralException", f"Method not allowed: {request.method}"))

    def _authorise(self, request: web.Request) -> None:
        if request.headers.get("X-Kite-Version") != "3":
            raise token_error("Missing or unsupported `X-Kite-Version` header (expected 3).")
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        api_key, _, access_token = credentials.partition(":")
        if scheme != "token" or api_key != self.api_key or access_token not in self._access_tokens:
            raise token_error()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # -- auth ----------------------------------------------------------------------------------------------
    async def _login(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("api_key") != self.api_key:
            raise input_error("Invalid `api_key`.")
        request_token = secrets.token_hex(16)
        self._request_tokens.add(request_token)
        separator = "&" if "?" in self.redirect_url else "?"
        extra = request.query.get("redirect_params")
        location = (f"{self.redirect_url}{separator}request_token={request_token}"
                    f"&action=login&type=login&status=success")
        if extra:
            location += f"&{extra}"
        raise web.HTTPFound(location)

    async def _session_token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        api_key, request_token = str(form.get("api_key", "")), str(form.get("request_token", ""))
        if api_key != self.api_key:
            raise token_error("Invalid `api_key`.")
        expected = hashlib.sha256((api_key + request_token + self.api_secret).encode()).hexdigest()
        if form.get("checksum") != expected:
            raise token_error("Invalid `checksum`.")
        if request_token not in self._request_tokens:
            raise token_error("Token is invalid or has expired.")
        self._request_tokens.discard(request_token)  # single use
        access_token = secrets.token_hex(16)
        self._access_tokens.add(access_token)
        return success({**self._user(), "api_key": api_key, "access_token": access_token,
                        "public_token": secrets.token_hex(8), "enctoken": "", "refresh_token": "", "silo": "",
                        "login_time": kite_time(self.clock.now_ns())})

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("access_token", "")
        if request.query.get("api_key") != self.api_key or token not in self._access_tokens:
            raise token_error()
        self._access_tokens.discard(token)
        return success(True)

    @staticmethod
    def _user() -> dict[str, Any]:
        return {"user_id": _USER_ID, "user_type": "individual", "email": "sim@example.invalid",
                "user_name": "Kite Simulator", "user_shortname": "Simulator", "broker": "ZERODHA",
                "exchanges": ["NSE", "NFO", "BSE", "BFO"], "products": sorted(_PRODUCTS),
                "order_types": list(_ORDER_TYPES), "avatar_url": None, "meta": {"demat_consent": "physical"}}

    async def _profile(self, request: web.Request) -> web.StreamResponse:
        return success(self._user())

    # -- funds ---------------------------------------------------------------------------------------------
    async def _margins(self, request: web.Request) -> web.StreamResponse:
        view = await self.broker.margins()
        available: dict[str, float] = {
            "adhoc_margin": 0, "cash": rupees(self._capital), "opening_balance": rupees(self._capital),
            "live_balance": rupees(view.available), "collateral": 0, "intraday_payin": 0}
        utilised: dict[str, float] = {
            "debits": rupees(view.used), "exposure": 0, "m2m_realised": 0, "m2m_unrealised": 0,
            "option_premium": rupees(view.used), "payout": 0, "span": 0, "holding_sales": 0, "turnover": 0,
            "liquid_collateral": 0, "stock_collateral": 0, "delivery": 0}
        equity = {"enabled": True, "net": rupees(view.available), "available": available, "utilised": utilised}
        commodity = {"enabled": False, "net": 0, "available": dict.fromkeys(available, 0),
                     "utilised": dict.fromkeys(utilised, 0)}
        segments = {"equity": equity, "commodity": commodity}
        segment = request.match_info.get("segment")
        if segment is None:
            return success(segments)
        if segment not in segments:
            raise input_error(f"Invalid segment `{segment}`; use equity or commodity.")
        return success(segments[segment])

    async def _order_margins(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            raise input_error("The request body must be a JSON array of orders.") from None
        if not isinstance(body, list):
            raise input_error("The request body must be a JSON array of orders.")
        today = ist_date(self.clock.now_ns())
        out = []
        for item in body:
            if not isinstance(item, Mapping):
                raise input_error("Each order must be a JSON object.")
            fields = {k: None if v is None else str(v) for k, v in item.items()}
            contract = self._contract_or_error(fields)
            side = self._side(fields)
            quantity = to_int("quantity", fields.get("quantity"))
            price = to_paise("price", fields.get("price")) or self.last_price(contract.instrument_token)
            intent = self._intent(contract, side, quantity, OrderType.LIMIT, price=price, trigger=0, protection=-1.0,
                                  intent_id="margin")
            total = await self.broker.order_margin(intent)
            c = option_charges(exchange=contract.exchange, side=side, quantity=max(quantity, 1), price=price,
                               trade_date=today)
            out.append({
                "type": "equity", "tradingsymbol": contract.tradingsymbol, "exchange": contract.exchange,
                "span": 0 if side is Side.BUY else rupees(total), "exposure": 0,
                "option_premium": rupees(total) if side is Side.BUY else 0, "additional": 0, "bo": 0, "cash": 0,
                "var": 0, "pnl": {"realised": 0, "unrealised": 0}, "leverage": 1,
                "charges": {"transaction_tax": rupees(c.stt), "transaction_tax_type": "stt",
                            "exchange_turnover_charge": rupees(c.exchange_txn),
                            "sebi_turnover_charge": rupees(c.sebi_fee), "brokerage": rupees(c.brokerage),
                            "stamp_duty": rupees(c.stamp_duty),
                            "gst": {"igst": rupees(c.gst), "cgst": 0, "sgst": 0, "total": rupees(c.gst)},
                            "total": rupees(c.total)},
                "total": rupees(total),
            })
        return success(out)

    # -- orders --------------------------------------------------------------------------------------------
    def _count_order_request(self) -> None:
        """10 order requests (place, modify, cancel) per calendar second of the server's wall clock."""
        second = self._wall_ns() // NS_PER_SECOND
        current, count = self._order_window
        count = count + 1 if second == current else 1
        self._order_window = (second, count)
        if count > ORDERS_PER_SECOND:
            raise rate_limited()

    def _contract_or_error(self, fields: Mapping[str, str | None]) -> OptionContract:
        exchange, symbol = fields.get("exchange") or "", fields.get("tradingsymbol") or ""
        contract = self.contract(exchange, symbol)
        if contract is None or contract.expiry < ist_date(self.clock.now_ns()):
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
        return OrderIntent(ts_ns=self.clock.now_ns(), intent_id=intent_id, strategy_id="kite-sim", contract=contract,
                           side=side, quantity=quantity, order_type=order_type, purpose=IntentPurpose.ENTRY,
                           expected_price=price or self.last_price(contract.instrument_token),
                           limit_price=price if order_type in (OrderType.LIMIT, OrderType.SL) else 0,
                           trigger_price=trigger, market_protection=protection)

    def _check_order(self, contract: OptionContract, order_type: OrderType, quantity: int, *, price: int,
                     trigger: int, protection_text: str | None) -> float:
        """Kite's and the exchange's order-entry rules; returns the market protection to use."""
        if not self.calendar.is_open(self.clock.now_ns()):
            raise input_error("Markets are closed right now. Use GTT for placing long standing orders instead.")
        lot = contract.lot_size
        if quantity <= 0 or quantity % lot:
            raise input_error(f"Quantity should be a multiple of the lot size {lot} for {contract.tradingsymbol}.")
        freeze = self.spec.freeze_quantity
        if quantity > freeze:
            raise input_error(f"Quantity {quantity} exceeds the freeze limit of {freeze} for "
                              f"{contract.tradingsymbol}. Split the order or use autoslice.")
        tick = contract.tick_size
        for name, value, needed in (("price", price, order_type in (OrderType.LIMIT, OrderType.SL)),
                                    ("trigger_price", trigger, order_type in (OrderType.SL, OrderType.SL_M))):
            if needed and value <= 0:
                raise input_error(f"`{name}` is required for {order_type.value} orders.")
            if value % tick:
                raise input_error(f"Tick size for this script is {tick / 100:.2f}. Kindly enter the {name} in the "
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
            reference = self.last_price(contract.instrument_token)
            if reference > 0:
                band = reference * LPP_PCT // 100 if reference > LPP_PCT_THRESHOLD_PAISE else LPP_ABSOLUTE_PAISE
                low, high = max(reference - band, tick), reference + band
                if not low <= price <= high:
                    raise order_error(
                        f"Your order price {price / 100:.2f} is outside the exchange's price band (LPP) "
                        f"{low / 100:.2f} - {high / 100:.2f} for {contract.tradingsymbol}. Try placing an order "
                        "within the circuit limits.")
        return protection

    async def _check_margin(self, intent: OrderIntent) -> None:
        price = intent.limit_price or self._protected_price(intent)
        required = await self.broker.order_margin(dataclasses.replace(intent, limit_price=price))
        available = (await self.broker.margins()).available - self._open_order_margin()
        if required > available:
            raise KiteError(400, "MarginException",
                            f"Insufficient funds. Required margin is {required / 100:.2f} but available margin is "
                            f"{available / 100:.2f}. Check the orderbook for open orders.")

    def _protected_price(self, intent: OrderIntent) -> int:
        last = self.last_price(intent.contract.instrument_token)
        pct = 3.0 if intent.market_protection == -1 else intent.market_protection
        return round(last * (1 + pct / 100)) if intent.side is Side.BUY else last

    def _open_order_margin(self) -> int:
        """Premium blocked by open buy orders (the paper broker counts only positions)."""
        return sum((o.quantity - o.filled) * (o.price or o.trigger_price or self.last_price(
            o.contract.instrument_token)) for o in self.orders.values() if not o.is_final and o.side is Side.BUY)

    async def _place(self, request: web.Request) -> web.StreamResponse:
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
        order_type = _ORDER_TYPES.get(form.get("order_type", ""))
        if order_type is None:
            raise input_error(f"Invalid `order_type`: {form.get('order_type')!r}.")
        product = form.get("product", "")
        if product not in _PRODUCTS:
            raise input_error(f"Invalid `product` {product!r} for F&O; use NRML or MIS.")
        validity = form.get("validity") or "DAY"
        if validity != "DAY":
            raise input_error(f"Validity `{validity}` is not supported by the simulator; use DAY.")
        quantity = to_int("quantity", form.get("quantity"))
        price = to_paise("price", form.get("price")) if order_type in (OrderType.LIMIT, OrderType.SL) else 0
        trigger = to_paise("trigger_price", form.get("trigger_price")) \
            if order_type in (OrderType.SL, OrderType.SL_M) else 0
        protection = self._check_order(contract, order_type, quantity, price=price, trigger=trigger,
                                       protection_text=form.get("market_protection"))
        self._order_seq += 1
        order_id = str(260_000_000_000_000 + self._order_seq)
        intent = self._intent(contract, side, quantity, order_type, price=price, trigger=trigger, protection=protection,
                              intent_id=order_id)
        await self._check_margin(intent)
        now = self.clock.now_ns()
        order = SimOrder(order_id=order_id, exchange_order_id=str(1_300_000_000_000_000 + self._order_seq),
                         variety=variety, contract=contract, side=side, order_type=order_type, product=product,
                         validity=validity, quantity=quantity, price=price, trigger_price=trigger,
                         market_protection=protection, tag=tag, placed_ns=now, updated_ns=now)
        for status in ("PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING"):
            self._set_status(order, status, now)
        await self._submit(order, intent)
        self.orders[order_id] = order
        for entry in order.history:
            self._queue_postback(entry)
        _log.info("sim_order_placed", order_id=order_id, tag=tag, symbol=contract.tradingsymbol, side=side.value,
                  quantity=quantity, order_type=order_type.value)
        await self._maybe_time_out(request)
        return success({"order_id": order_id})

    async def _submit(self, order: SimOrder, intent: OrderIntent) -> None:
        try:
            paper_id = await self.broker.place_order(OrderRequest(ts_ns=self.clock.now_ns(), intent=intent,
                                                                  tag=order.tag or order.order_id))
        except OrderRejected as exc:
            raise input_error(str(exc)) from None
        order.paper_id = paper_id
        self._by_paper[paper_id] = order
        self._set_status(order, "TRIGGER PENDING" if intent.order_type in (OrderType.SL, OrderType.SL_M)
                         else "OPEN", self.clock.now_ns())

    async def _maybe_time_out(self, request: web.Request) -> None:
        faults = self.faults
        if not faults.timeout_after_accept or self._rng.random() >= faults.timeout_after_accept:
            return
        if faults.timeout_mode == "drop" and request.transport is not None:
            request.transport.close()
            return
        await self._pause(faults.timeout_delay_s)

    def _order_or_error(self, order_id: str) -> SimOrder:
        order = self.orders.get(order_id)
        if order is None:
            raise order_error("Couldn't find that `order_id`.")
        return order

    async def _modify(self, request: web.Request) -> web.StreamResponse:
        self._count_order_request()
        order = self._order_or_error(request.match_info["order_id"])
        if order.is_final:
            raise order_error(f"Order cannot be modified as it is {order.status}.")
        if order.modifications >= MAX_MODIFICATIONS:
            raise order_error("Maximum allowed order modifications exceeded.")
        form = {k: str(v) for k, v in (await request.post()).items()}
        order_type = _ORDER_TYPES.get(form.get("order_type") or order.order_type.value)
        if order_type is None:
            raise input_error(f"Invalid `order_type`: {form.get('order_type')!r}.")
        quantity = to_int("quantity", form["quantity"]) if form.get("quantity") else order.quantity
        price = (to_paise("price", form["price"]) if form.get("price") else order.price) \
            if order_type in (OrderType.LIMIT, OrderType.SL) else 0
        trigger = (to_paise("trigger_price", form["trigger_price"]) if form.get("trigger_price")
                   else order.trigger_price) if order_type in (OrderType.SL, OrderType.SL_M) else 0
        protection_text = form.get("market_protection") or (str(order.market_protection)
                                                            if order.market_protection else None)
        protection = self._check_order(order.contract, order_type, quantity, price=price, trigger=trigger,
                                       protection_text=protection_text)
        if quantity <= order.filled:
            raise input_error(f"Quantity {quantity} must exceed the {order.filled} already filled.")
        now = self.clock.now_ns()
        for status in ("MODIFY VALIDATION PENDING", "MODIFY PENDING"):
            self._set_status(order, status, now)
        old_paper = order.paper_id
        order.paper_id = ""  # the paper order's cancellation below is the modification, not the order's end
        await self.broker.cancel_order(old_paper)
        order.order_type, order.quantity, order.price, order.trigger_price = order_type, quantity, price, trigger
        order.market_protection = protection
        order.modifications += 1
        self._set_status(order, "MODIFIED", now)
        intent = self._intent(order.contract, order.side, quantity - order.filled, order_type, price=price,
                              trigger=trigger, protection=protection, intent_id=order.order_id)
        await self._submit(order, intent)
        return success({"order_id": order.order_id})

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        self._count_order_request()
        order = self._order_or_error(request.match_info["order_id"])
        if order.is_final:
            raise order_error(f"Order cannot be cancelled as it is {order.status}.")
        self._set_status(order, "CANCEL PENDING", self.clock.now_ns())
        await self.broker.cancel_order(order.paper_id)  # the paper broker's CANCELLED update ends the order
        return success({"order_id": order.order_id})

    async def _orders(self, request: web.Request) -> web.StreamResponse:
        today = ist_date(self.clock.now_ns())
        return success([o.as_kite() for o in self.orders.values() if ist_date(o.placed_ns) == today
                        or not o.is_final])

    async def _order_history(self, request: web.Request) -> web.StreamResponse:
        return success(self._order_or_error(request.match_info["order_id"]).history)

    async def _trades(self, request: web.Request) -> web.StreamResponse:
        return success(self.trades)

    async def _order_trades(self, request: web.Request) -> web.StreamResponse:
        order = self._order_or_error(request.match_info["order_id"])
        return success([t for t in self.trades if t["order_id"] == order.order_id])

    async def _positions(self, request: web.Request) -> web.StreamResponse:
        return success(self.positions_view())

    # -- market data ---------------------------------------------------------------------------------------
    def _resolve(self, key: str) -> tuple[int, int] | None:
        """(token, lot size) of ``EXCHANGE:SYMBOL`` if it has a quote; None otherwise."""
        exchange, _, symbol = key.partition(":")
        index = self.market.index
        if (exchange, symbol) == (index.exchange, index.tradingsymbol):
            token, lot = index.instrument_token, 0
        else:
            contract = self.contract(exchange, symbol)
            if contract is None:
                return None
            token, lot = contract.instrument_token, contract.lot_size
        return (token, lot) if token in self._quotes else None

    async def _ltp(self, request: web.Request) -> web.StreamResponse:
        out = {}
        for key in request.query.getall("i", []):
            resolved = self._resolve(key)
            if resolved is not None:
                out[key] = {"instrument_token": resolved[0], "last_price": rupees(self.last_price(resolved[0]))}
        return success(out)

    async def _quote(self, request: web.Request) -> web.StreamResponse:
        out = {}
        for key in request.query.getall("i", []):
            resolved = self._resolve(key)
            if resolved is None:
                continue
            token, lot = resolved
            q = self._quotes[token]
            t = q.tick
            band = t.last_price * LPP_PCT // 100 if t.last_price > LPP_PCT_THRESHOLD_PAISE else LPP_ABSOLUTE_PAISE
            empty = {"price": 0, "quantity": 0, "orders": 0}
            buy = [{"price": rupees(t.bid), "quantity": t.bid_qty, "orders": max(1, t.bid_qty // lot) if lot else 0}]
            sell = [{"price": rupees(t.ask), "quantity": t.ask_qty, "orders": max(1, t.ask_qty // lot) if lot else 0}]
            out[key] = {
                "instrument_token": token, "timestamp": kite_time(t.ts_ns), "last_trade_time": kite_time(t.ts_ns),
                "last_price": rupees(t.last_price), "last_quantity": lot, "buy_quantity": t.bid_qty,
                "sell_quantity": t.ask_qty, "volume": t.volume, "average_price": rupees(t.last_price), "oi": t.oi,
                "oi_day_high": 0, "oi_day_low": 0, "net_change": rupees(t.last_price - q.close),
                "lower_circuit_limit": rupees(max(t.last_price - band, 5)) if lot else 0,
                "upper_circuit_limit": rupees(t.last_price + band) if lot else 0,
                "ohlc": {"open": rupees(q.open), "high": rupees(q.high), "low": rupees(q.low),
                         "close": rupees(q.close)},
                "depth": {"buy": (buy if lot else [empty]) + [dict(empty) for _ in range(4)],
                          "sell": (sell if lot else [empty]) + [dict(empty) for _ in range(4)]},
            }
        return success(out)

    async def _instruments_dump(self, request: web.Request) -> web.StreamResponse:
        exchange = request.match_info.get("exchange")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(_CSV_COLUMNS)
        index = self.market.index
        if exchange in (None, index.exchange):
            writer.writerow([index.instrument_token, index.instrument_token >> 8, index.tradingsymbol, index.name,
                             rupees(self.last_price(index.instrument_token)), "", 0.0, 0.0, 0, "EQ", "INDICES",
                             index.exchange])
        for c in self.listed_contracts():
            if exchange in (None, c.exchange):
                writer.writerow([c.instrument_token, c.instrument_token >> 8, c.tradingsymbol, c.underlying,
                                 rupees(self.last_price(c.instrument_token)), c.expiry.isoformat(),
                                 rupees(c.strike), rupees(c.tick_size), c.lot_size, c.option_type.value,
                                 f"{c.exchange}-OPT", c.exchange])
        return web.Response(body=buffer.getvalue().encode(), content_type="text/csv")

