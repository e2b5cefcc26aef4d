"""The exchange simulator: Kite Connect v3 REST on aiohttp plus the Kite WebSocket, backed by the synthetic market and
the paper broker.

One simulated account. The ``SyntheticMarket`` produces index and option-chain ticks on the simulator's own
``SimClock``; every tick is fed to a ``PaperBroker``, whose fill rules (MARKET / LIMIT / SL / SL-M, partial fills,
DAY expiry) decide what trades. The simulator adds what Kite adds on top: the REST routes, the login flow, the
order-entry rules of ``docs/reference/india-fno-facts.md`` (tick, lot, freeze quantity, market protection, LPP band,
10 order
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
(``docs/reference/kite-protocol.md`` §3.2). ``advance`` awaits the publishing, so a test sees the messages
deterministically.
Fault knobs: ``await drop_websockets()`` and ``ws_drop_every_s`` (simulated seconds between forced drops; 0 = off);
``await expire_tokens()`` (every access token dies, as at Kite's daily expiry: REST answers 403 TokenException, the
WebSocket refuses its handshake with 403; a new login works); ``await set_offline(True/False)`` (the broker is gone:
the WebSocket stops listening and REST answers 503 until it comes back on the same ports).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from trader.adapters.paper import PaperBroker, PaperBrokerConfig
from trader.adapters.synthetic import SyntheticConfig, SyntheticMarket
from trader.clock import NS_PER_SECOND, SimClock
from trader.events import (
    Fill,
    OrderStatus,
    OrderUpdate,
    Tick,
)
from trader.logging import get_logger
from trader.market.calendar import MarketCalendar, ist_date
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import FALLBACK_UNDERLYINGS, OptionContract
from trader.money import to_paise, to_rupees
from trader.sim.auth import AuthRoutes
from trader.sim.encode import DayStats
from trader.sim.kite_http import kite_app
from trader.sim.market_data import MarketDataRoutes
from trader.sim.order_entry import OrderEntry
from trader.sim.orders import OrderRoutes
from trader.sim.portfolio import PortfolioRoutes
from trader.sim.sim_order import SimOrder
from trader.sim.ticker import TickerServer
from trader.sim.wire import (
    USER_ID,
    Faults,
    kite_clock_time,
    kite_time,
)

_log = get_logger("trader.sim")

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
                                  capital=to_paise(capital_rupees))
        self.broker.attach(self._on_broker_event)
        self.capital_paise = to_paise(capital_rupees)
        self.rng = random.Random(seed)
        self.wall_ns = wall_ns
        self.orders: dict[str, SimOrder] = {}
        self.by_paper_id: dict[str, SimOrder] = {}
        self.trades: list[dict[str, Any]] = []
        self.quotes: dict[int, _Quote] = {}
        self.order_seq = 0
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
        self.offline = False  # fault knob, see set_offline
        self.token_refusals: Counter[str] = Counter()  # "METHOD /path" answered 403 for a bad access token
        self.ws_token_refusals = 0  # WebSocket handshakes refused for a bad access token
        # Other wire faces (trader.sim.fyers) follow the core through these hooks: every order state change once the
        # order is on the book, every trade (the order, Kite's trade row), and every tick batch after it is booked.
        self.order_listeners: list[Callable[[SimOrder], None]] = []
        self.trade_listeners: list[Callable[[SimOrder, Mapping[str, Any]], None]] = []
        self.batch_listeners: list[Callable[[list[Tick]], Awaitable[None]]] = []
        # ... and the socket fault knobs: "drop" (drop_websockets), "offline" / "online" (set_offline)
        self.socket_listeners: list[Callable[[str], Awaitable[None]]] = []
        self.entry = OrderEntry(self)
        self.auth = AuthRoutes(self)
        self.portfolio = PortfolioRoutes(self)
        self.order_routes = OrderRoutes(self)
        self.market_data = MarketDataRoutes(self)
        self.app = kite_app(self)

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
        for listener in self.batch_listeners:
            await listener(batch)
        await self._flush_postbacks()

    async def drop_websockets(self) -> None:
        """Fault knob: close every WebSocket connection now, as a network blip would (clients reconnect)."""
        _log.info("sim_ws_drop", clients=self.ticker.clients)
        await self.ticker.drop_connections()
        for listener in self.socket_listeners:
            await listener("drop")

    async def expire_tokens(self, *, drop_websockets: bool = True) -> None:
        """Fault knob: every access token issued so far dies, as at Kite's daily expiry (about 06:00 IST). REST
        answers 403 TokenException and the WebSocket handshake is refused with 403; connections open now are dropped
        (``drop_websockets=False`` keeps them). A new login issues a token that works."""
        expired = self.auth.expire_access_tokens()
        _log.info("sim_tokens_expired", tokens=expired)
        if drop_websockets:
            await self.drop_websockets()

    async def set_offline(self, offline: bool) -> None:
        """Fault knob: the broker is gone (``True``: the WebSocket server stops, so connections drop and new ones are
        refused, and every REST request is answered 503 NetworkException) or back (``False``: the WebSocket listens
        again on the same port)."""
        if offline == self.offline:
            return
        self.offline = offline
        _log.info("sim_offline" if offline else "sim_online", ws_url=self._ws_url)
        if offline:
            await self.ticker.stop()
        else:
            host, _, port = self._ws_url.removeprefix("ws://").rpartition(":")
            await self.ticker.start(host, int(port))
        for listener in self.socket_listeners:
            await listener("offline" if offline else "online")

    def _ws_authorized(self, api_key: str, access_token: str) -> bool:
        if api_key == self.api_key and access_token in self.auth.access_tokens:
            return True
        self.ws_token_refusals += 1
        return False

    def day_stats(self, tokens: Iterable[int]) -> dict[int, DayStats]:
        """What the WebSocket's quote/full packets carry besides the tick, per token (paise; same values as the REST
        ``/quote`` answer: average price = last price, last quantity = one lot, total buy/sell = best bid/ask size)."""
        out: dict[int, DayStats] = {}
        for token in tokens:
            quote = self.quotes.get(token)
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
        return {**kite, "user_id": USER_ID, "app_id": self._app_id, "checksum": checksum,
                "unfilled_quantity": quantity - filled, "cancelled_quantity": kite["cancelled_quantity"],
                "market_protection": kite["market_protection"], "meta": {},
                "guid": f"{self._app_id}X{self._postback_seq:010d}"}

    def queue_postback(self, kite: Mapping[str, Any]) -> None:
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
            quote = self.quotes.get(tick.instrument_token)
            price = tick.last_price
            if quote is None:
                self.quotes[tick.instrument_token] = _Quote(tick, price, price, price, price, day)
            elif quote.session_day != day:
                close = quote.tick.last_price
                self.quotes[tick.instrument_token] = _Quote(tick, price, price, price, close, day)
            else:
                quote.tick = tick
                quote.high = max(quote.high, price)
                quote.low = min(quote.low, price)
            self.broker.on_tick(tick)

    # -- what the book says (used by handlers and by tests) ------------------------------------------------
    def last_price(self, token: int) -> int:
        quote = self.quotes.get(token)
        return quote.tick.last_price if quote else 0

    def book_tick(self, token: int) -> Tick | None:
        """The latest tick the book holds for ``token`` (its best bid/ask, volume, OI), if any."""
        quote = self.quotes.get(token)
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


    # -- broker events -------------------------------------------------------------------------------------
    def _on_broker_event(self, event: object) -> None:
        if isinstance(event, Fill):
            order = self.by_paper_id.get(event.order_id)
            if order is None:
                return
            order.filled += event.quantity
            order.fill_value += event.quantity * event.price
            self._trade_seq += 1
            self.trades.append({
                "trade_id": f"{self._trade_seq:08d}", "order_id": order.order_id,
                "exchange_order_id": order.exchange_order_id, "exchange": order.contract.exchange,
                "tradingsymbol": order.contract.tradingsymbol, "instrument_token": order.contract.instrument_token,
                "product": order.product, "average_price": to_rupees(event.price), "quantity": event.quantity,
                "transaction_type": order.side.value, "fill_timestamp": kite_time(event.ts_ns),
                "order_timestamp": kite_clock_time(order.placed_ns), "exchange_timestamp": kite_time(event.ts_ns),
            })
            for trade_listener in self.trade_listeners:
                trade_listener(order, self.trades[-1])
        elif isinstance(event, OrderUpdate):
            order = self.by_paper_id.get(event.order_id)
            if order is None or order.paper_id != event.order_id or order.is_final:
                return  # placed a moment ago (handled by the caller) or superseded by a modification
            if event.status is OrderStatus.CANCELLED:
                order.cancelled = order.quantity - order.filled
                self.set_status(order, "CANCELLED", event.ts_ns, event.reason or None)
            elif event.status is OrderStatus.COMPLETE:
                self.set_status(order, "COMPLETE", event.ts_ns)
            else:
                self.set_status(order, event.status.value, event.ts_ns)

    def set_status(self, order: SimOrder, status: str, ts_ns: int, message: str | None = None) -> None:
        order.status = status
        order.updated_ns = ts_ns
        if message is not None:
            order.status_message = message
        entry = order.as_kite()
        order.history.append(entry)
        if order.order_id in self.orders:  # a placement's first states are published once it is on the book
            self.queue_postback(entry)
            for listener in self.order_listeners:
                listener(order)

    def book_order(self, order: SimOrder) -> None:
        """A placed order goes on the book: its states so far are published (Kite postbacks, the other faces)."""
        self.orders[order.order_id] = order
        for entry in order.history:
            self.queue_postback(entry)
        for listener in self.order_listeners:
            listener(order)

    async def pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
