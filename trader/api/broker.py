"""The seed's execution API: ``create_broker_api`` and ``BrokerExecution``.

    broker_api = create_broker_api('paper')             # simulated fills on the built-in market
    execution = BrokerExecution(broker_api)
    response = execution.place_option_order(contract, 65, OrderSide.BUY, OrderType.MARKET)
    has_margin = execution.check_margin_before_order(contract, 65, OrderSide.BUY)
    positions = execution.get_positions()

Orders go through the daemon's ``ExecutionActor`` (exactly once under a tag, rate-limited, looked up by tag after an
ambiguous failure) to the ``PaperBroker`` or the ``KiteBroker``. Quantities are units (whole lots); prices rupees.
A broker's refusal comes back in the response (``status='REJECTED'`` and the reason); a caller's mistake (a quantity
that is not whole lots, a price off the tick, an unknown contract) raises ``ValueError``/``TypeError`` before
anything is sent. Orders placed here do not pass the risk gate and are not journaled (the daemon's are): nothing
here refuses a naked short or a breached day; ``LiveOptionsTradingSystem.manual_order`` is the gated path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from trader import builders
from trader.adapters.kite.broker import KiteBroker
from trader.adapters.kite.orders import OrderTracker
from trader.adapters.paper import PaperBroker, PaperBrokerConfig
from trader.api import checks
from trader.api.data import RealTimeDataManager
from trader.api.desk import OrderDesk, OrderResponse, Position
from trader.api.feed import Hub, MarketFeed, built_in_market
from trader.api.kite import KiteLogin
from trader.api.loop import RUNNER
from trader.approvals import quote_price
from trader.clock import Clock, LiveClock, SimClock
from trader.events import IntentPurpose, OrderIntent, OrderType, Side
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import OptionContract
from trader.money import to_paise, to_paise_or_zero, to_rupees

BROKERS = ("paper", "zerodha")
_START_TIMEOUT_S = 60.0


class PaperBrokerApi:
    """The paper broker (the daemon's fill simulator) with a market to fill against: its own built-in market, or
    the quotes of a running ``RealTimeDataManager`` given as ``market=``."""

    name = "paper"

    def __init__(self, *, capital: float | None = None, seed: int | None = None, speed: float | None = None,
                 start: datetime | str | None = None, latency_ms: int | None = None,
                 slippage_ticks: int | None = None, symbols: list[str] | None = None,
                 market: RealTimeDataManager | None = None) -> None:
        if market is not None and not isinstance(market, RealTimeDataManager):
            raise TypeError(f"market must be a RealTimeDataManager, got {type(market).__name__}")
        if speed is not None and not (isinstance(speed, int | float) and speed > 0):
            raise ValueError(f"speed must be above 0 (× real time), got {speed!r}")
        self.settings = checks.settings(checks.given(
            risk=checks.given(initial_capital=capital) or None,
            sim=checks.given(seed=seed, speed=speed, start=start) or None,
            paper=checks.given(latency_ms=latency_ms, slippage_ticks=slippage_ticks) or None))
        self.specs = market.specs if market is not None else checks.symbols(
            symbols if symbols is not None else self.settings.symbols)
        self.market = market
        self._desk: OrderDesk | None = None
        self._feed: MarketFeed | None = None
        self._broker: PaperBroker | None = None
        self._own_feed = False

    @property
    def connected(self) -> bool:
        return self._desk is not None and RUNNER.holds(self)

    def connect(self) -> bool:
        """Start the paper broker and its market (waits for the first quotes); True. Idempotent."""
        if self.connected:
            return True
        feed = None
        if self.market is not None:
            self.market.start()
            feed = self.market.feed
        RUNNER.acquire(self)
        try:
            RUNNER.run(self._open(feed), _START_TIMEOUT_S + 5, what="starting the paper broker")
        except BaseException:
            RUNNER.release(self)
            raise
        return True

    async def _open(self, feed: MarketFeed | None) -> None:
        settings = self.settings
        own = feed is None
        if feed is None:
            clock = SimClock(builders.start_ns(settings, LiveClock().now_ns()), speed=settings.sim.speed)
            hub = Hub(clock, settings.market_calendar())
            feed = built_in_market(hub, self.specs, [builders.synthetic_config(settings, s) for s in self.specs])
        hub = feed.hub
        broker = PaperBroker(hub.clock, PaperBrokerConfig(latency_ms=settings.paper.latency_ms,
                                                          slippage_ticks=settings.paper.slippage_ticks),
                             hub.calendar, capital=to_paise(settings.risk.initial_capital))
        desk = OrderDesk(hub, broker, max_orders_per_second=settings.risk.max_orders_per_second)
        desk.start()
        if own:
            try:
                feed.start()
                await feed.wait_ready(_START_TIMEOUT_S)
            except BaseException:
                await desk.close()
                await feed.close()
                await hub.close()
                raise
        self._desk, self._feed, self._broker, self._own_feed = desk, feed, broker, own

    def set_access_token(self, access_token: str) -> None:
        """The paper broker needs no access token; accepted (so code written for 'zerodha' runs) and unused."""
        if not isinstance(access_token, str):
            raise TypeError(f"access_token must be a string, got {type(access_token).__name__}")

    def close(self) -> None:
        """Stop the paper broker (and its own market); orders still open stay unfilled."""
        desk, feed, own = self._desk, self._feed, self._own_feed
        self._desk = self._feed = self._broker = None
        if desk is not None and RUNNER.running:
            RUNNER.run(_close_paper(desk, feed if own else None), 20, what="stopping the paper broker")
        RUNNER.release(self)

    # -- what BrokerExecution asks (in the loop thread) ---------------------------------------------------------
    def parts(self) -> tuple[OrderDesk, PaperBroker]:
        if self._desk is None or self._broker is None:
            raise RuntimeError("the paper broker is closed: connect() it again")
        return self._desk, self._broker

    def _market(self) -> MarketFeed:
        if self._feed is None:
            raise RuntimeError("the paper broker is closed: connect() it again")
        return self._feed

    @property
    def clock(self) -> Clock:
        return self.parts()[0].hub.clock

    async def resolve(self, value: object) -> OptionContract:
        feed = self._market()
        contract = checks.listed_contract(value, feed.instruments, "the paper market")
        close_ns = feed.hub.calendar.session_bounds(contract.expiry)[1]
        if close_ns <= feed.clock.now_ns():
            raise ValueError(f"{contract.tradingsymbol} expired on {contract.expiry.isoformat()}; take a contract "
                             "from get_option_chain(...).contracts")
        return contract

    async def quote(self, contract: OptionContract, side: Side) -> int:
        return quote_price(side, self._market().quotes.get(contract.instrument_token))

    async def held(self, contract: OptionContract) -> int:
        return (await self.parts()[1].positions()).get(contract.instrument_token, 0)

    async def positions(self) -> list[Position]:
        feed, broker = self._market(), self.parts()[1]
        out = []
        for row in (await broker.book()).positions:
            listed = feed.instruments.by_token(row.instrument_token)
            contract = listed if isinstance(listed, OptionContract) else None
            tick = feed.quotes.get(row.instrument_token)
            last = tick.last_price if tick is not None else row.average_price
            out.append(Position(tradingsymbol=row.tradingsymbol, exchange=contract.exchange if contract else "",
                                quantity=row.quantity, average_price=to_rupees(row.average_price),
                                last_price=to_rupees(last),
                                unrealized_pnl=to_rupees((last - row.average_price) * row.quantity),
                                contract=contract))
        return out


async def _close_paper(desk: OrderDesk, feed: MarketFeed | None) -> None:
    await desk.close()
    if feed is not None:
        await feed.close()
        await feed.hub.close()


class KiteBrokerApi:
    """Zerodha Kite: orders through the daemon's ``KiteBroker`` (REST, tagged); lot sizes from the day's instrument
    dump; the order's progress read back from the broker's order book."""

    name = "zerodha"

    def __init__(self, *, api_key: str, api_secret: str = "", access_token: str = "", api_root: str | None = None,
                 product: str | None = None, timeout_s: float | None = None) -> None:
        self.settings = checks.settings(checks.given(kite_api_root=api_root, kite_timeout_seconds=timeout_s,
                                                     kite_product=product))
        self.login = KiteLogin(self, self.settings, api_key=api_key, api_secret=api_secret,
                               access_token=access_token)
        self._desk: OrderDesk | None = None
        self._dumps: set[str] = set()

    @property
    def api_root(self) -> str:
        return self.settings.kite_api_root

    @property
    def connected(self) -> bool:
        return self._desk is not None and RUNNER.holds(self)

    def connect(self) -> str:
        """Prepare the REST client and the order desk; returns the login URL (see ``KiteDataProvider.connect``)."""
        url = self.login.connect()
        if self._desk is None:
            client = self.login.client
            assert client is not None
            self._desk = RUNNER.run(self._open(client), 10)
        return url

    async def _open(self, client: Any) -> OrderDesk:
        clock = LiveClock()
        hub = Hub(clock, self.settings.market_calendar())
        broker = KiteBroker(client, product=self.settings.kite_product, tracker=OrderTracker(clock))
        desk = OrderDesk(hub, broker, max_orders_per_second=self.settings.risk.max_orders_per_second,
                         resync_every_s=0.5)
        desk.start()
        return desk

    def generate_session(self, request_token: str) -> str:
        return self.login.generate_session(request_token)

    def set_access_token(self, access_token: str) -> None:
        """Use the day's access token, checked with Kite once connected (a refused one raises PermissionError)."""
        self.login.set_access_token(access_token)

    def close(self) -> None:
        desk, self._desk = self._desk, None
        if desk is not None and RUNNER.running:
            RUNNER.run(_close_kite(desk), 20, what="stopping the Kite broker")
        self.login.close()
        RUNNER.release(self)

    # -- what BrokerExecution asks (in the loop thread) ---------------------------------------------------------
    def parts(self) -> tuple[OrderDesk, KiteBroker]:
        self.login.ready_client()
        desk = self._desk
        if desk is None:
            raise RuntimeError("the Kite broker is not connected: call connect() first")
        assert isinstance(desk.broker, KiteBroker)
        return desk, desk.broker

    @property
    def clock(self) -> Clock:
        return self.parts()[0].hub.clock

    @property
    def instruments(self) -> InstrumentMaster:
        return self.parts()[0].hub.instruments

    async def _load_dump(self, exchange: str) -> None:
        if exchange not in self._dumps:
            self.instruments.merge(await self.parts()[1].client.instruments(exchange))
            self._dumps.add(exchange)

    async def resolve(self, value: object) -> OptionContract:
        exchange = value.exchange if isinstance(value, OptionContract) else (
            OptionContract.parse(value).exchange if isinstance(value, str) else "NFO")
        await self._load_dump(exchange)
        return checks.listed_contract(value, self.instruments, f"Kite's {exchange} instrument list")

    async def quote(self, contract: OptionContract, side: Side) -> int:
        key = f"{contract.exchange}:{contract.tradingsymbol}"
        data = (await self.parts()[1].client.quote([key])).get(key) or {}
        depth = data.get("depth") or {}
        book = depth.get("sell" if side is Side.BUY else "buy") or [{}]
        return to_paise_or_zero(book[0].get("price")) or to_paise_or_zero(data.get("last_price"))

    async def held(self, contract: OptionContract) -> int:
        return (await self.parts()[1].positions()).get(contract.instrument_token, 0)

    async def positions(self) -> list[Position]:
        rows = (await self.parts()[1].client.positions()).get("net") or []
        out = []
        for row in rows:
            quantity = int(row.get("quantity") or 0)
            if not quantity:
                continue
            exchange, symbol = str(row.get("exchange") or ""), str(row.get("tradingsymbol") or "")
            if exchange in ("NFO", "BFO"):
                await self._load_dump(exchange)
            average, last = to_paise_or_zero(row.get("average_price")), to_paise_or_zero(row.get("last_price"))
            out.append(Position(tradingsymbol=symbol, exchange=exchange, quantity=quantity,
                                average_price=to_rupees(average), last_price=to_rupees(last),
                                unrealized_pnl=to_rupees((last - average) * quantity),
                                contract=self.instruments.contract(f"{exchange}:{symbol}")))
        return out


async def _close_kite(desk: OrderDesk) -> None:
    await desk.close()
    await desk.hub.close()


BrokerApi = PaperBrokerApi | KiteBrokerApi


def create_broker_api(name: str, **options: Any) -> BrokerApi:
    """'paper' (options: capital, seed, speed, start, latency_ms, slippage_ticks, symbols, market) or 'zerodha'
    (api_key, api_secret, access_token, api_root, product, timeout_s)."""
    chosen = checks.choice("broker", name, BROKERS)
    cls: type[BrokerApi] = PaperBrokerApi if chosen == "paper" else KiteBrokerApi
    checks.check_options("create_broker_api", chosen, cls, options)
    if chosen == "zerodha" and "api_key" not in options:
        raise TypeError("create_broker_api('zerodha') needs api_key=... (and api_secret=... to log in)")
    return cls(**options)


class BrokerExecution:
    """Orders, margin checks and positions on a broker from ``create_broker_api``; a paper broker is connected on
    first use."""

    def __init__(self, broker_api: BrokerApi) -> None:
        if not isinstance(broker_api, PaperBrokerApi | KiteBrokerApi):
            raise TypeError("BrokerExecution needs a broker from create_broker_api('paper' | 'zerodha', ...), got "
                            f"{type(broker_api).__name__}")
        self.broker_api = broker_api

    def _api(self) -> BrokerApi:
        api = self.broker_api
        if not api.connected:
            if isinstance(api, KiteBrokerApi):
                raise RuntimeError("the Kite broker is not connected: call broker_api.connect() and "
                                   "broker_api.set_access_token(token) first")
            api.connect()
        return api

    def place_option_order(self, contract: OptionContract | str, quantity: int,
                           side: Side | str, order_type: OrderType | str = OrderType.MARKET, *,
                           price: float | None = None, trigger_price: float | None = None,
                           market_protection: float = -1.0, wait_s: float = 10.0) -> OrderResponse:
        """Place one order: ``quantity`` units (whole lots); ``price`` (rupees) for LIMIT/SL, ``trigger_price`` for
        SL/SL-M. Waits up to ``wait_s`` for a MARKET order to end (filled or refused), for others until the broker
        has them. The response says what happened; a refusal is not an exception."""
        order_side, kind = checks.side(side), checks.order_type(order_type)
        if isinstance(market_protection, bool) or not isinstance(market_protection, int | float) or not (
                market_protection == -1 or 0 < market_protection <= 100):
            raise ValueError(f"market_protection must be -1 (automatic) or a percentage in (0, 100], "
                             f"got {market_protection!r}")
        if not (isinstance(wait_s, int | float) and 0 <= wait_s <= 300):
            raise ValueError(f"wait_s must be 0-300 seconds, got {wait_s!r}")
        api = self._api()

        async def place() -> OrderResponse:
            intent = await _intent(api, contract, quantity, order_side, kind, price, trigger_price,
                                   float(market_protection))
            return await api.parts()[0].place(intent, float(wait_s))

        return RUNNER.run(place(), wait_s + 60, what="placing the order")

    def check_margin_before_order(self, contract: OptionContract | str, quantity: int, side: Side | str, *,
                                  price: float | None = None) -> bool:
        """True if the broker's free funds cover the margin the order would block (a buy: its premium)."""
        required, available = self.margin_for_order(contract, quantity, side, price=price)
        return required <= available

    def margin_for_order(self, contract: OptionContract | str, quantity: int, side: Side | str, *,
                         price: float | None = None) -> tuple[float, float]:
        """(margin the order would block, funds available), rupees, as the broker computes them."""
        order_side = checks.side(side)
        api = self._api()

        async def ask() -> tuple[int, int]:
            kind = OrderType.MARKET if price is None else OrderType.LIMIT
            intent = await _intent(api, contract, quantity, order_side, kind, price, None, -1.0)
            broker = api.parts()[1]
            required = await broker.order_margin(intent)
            return required, (await broker.margins()).available

        required, available = RUNNER.run(ask(), 60, what="the margin check")
        return to_rupees(required), to_rupees(available)

    def get_positions(self) -> list[Position]:
        """Open net positions at the broker (``position.contract`` and ``position.closing_side`` close one)."""
        api = self._api()
        return RUNNER.run(api.positions(), 60, what="reading the positions")

    def get_order(self, ref: str) -> OrderResponse:
        """The latest state of an order placed here, by tag or broker order id."""
        from trader.api.desk import response  # noqa: PLC0415

        api = self._api()
        tracked = RUNNER.call(lambda: api.parts()[0].tracked(ref))
        if tracked is None:
            raise LookupError(f"no order {ref!r} was placed through this broker")
        return RUNNER.call(lambda: response(tracked))


async def _intent(api: BrokerApi, value: object, quantity: object, side: Side,  # noqa: PLR0917
                  kind: OrderType, price: float | None, trigger: float | None, protection: float) -> OrderIntent:
    """The intent for an order, every argument checked against the listed contract."""
    contract = await api.resolve(value)
    units = checks.quantity(contract, quantity)
    limit = trigger_paise = 0
    if kind in (OrderType.LIMIT, OrderType.SL):
        limit = checks.price("price", price, contract, required_for=f"a {kind.value} order")
    elif price is not None:
        raise ValueError(f"price is for LIMIT and SL orders; a {kind.value} order takes none (use order_type="
                         "OrderType.LIMIT with price=...)")
    if kind in (OrderType.SL, OrderType.SL_M):
        trigger_paise = checks.price("trigger_price", trigger, contract, required_for=f"a {kind.value} order")
    elif trigger is not None:
        raise ValueError(f"trigger_price is for SL and SL-M orders, not {kind.value}")
    expected = limit or await api.quote(contract, side)
    if expected <= 0:
        raise LookupError(f"no quote for {contract.tradingsymbol} yet, so no price to expect: wait for the market, "
                          "or give a LIMIT price")
    held = await api.held(contract)
    reduces = held != 0 and side.sign * held < 0 and units <= abs(held)
    desk = api.parts()[0]
    return OrderIntent(ts_ns=api.clock.now_ns(), intent_id=desk.next_id(), strategy_id="api", contract=contract,
                         side=side, quantity=units, order_type=kind,
                         purpose=IntentPurpose.EXIT if reduces else IntentPurpose.ENTRY, expected_price=expected,
                         limit_price=limit, trigger_price=trigger_paise, market_protection=protection)
