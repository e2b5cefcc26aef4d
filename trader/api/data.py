"""The seed's market-data API: ``create_data_provider`` and ``RealTimeDataManager``.

    provider = create_data_provider('paper')            # the built-in market (seeded, NSE hours, Black-Scholes chain)
    manager = RealTimeDataManager(provider)
    manager.start()
    price = manager.get_underlying_price('NSE:NIFTY50-INDEX')   # rupees
    chain = manager.get_option_chain('NSE:NIFTY50-INDEX')       # chain.contracts: live bid/ask/last, IV, Greeks

'zerodha' takes Kite market data exactly as the daemon does (instrument dump, index quote, ticker in full mode);
``api_root``/``ws_root`` (default: ``TRADER_KITE_API_ROOT``/``TRADER_KITE_WS_ROOT``, else Kite's) point it at
another Kite-compatible server such as ``trader sim``. Defaults not given come from the project's settings
(``TRADER_SIM__SEED``, ``TRADER_SIM__START``, ...). 'historical' waits for the replay provider (issue #11).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from trader import builders
from trader.adapters.kite.provision import RetryPolicy
from trader.api import checks
from trader.api.chain import OptionChain, build_chain
from trader.api.feed import Hub, MarketFeed, built_in_market, kite_market
from trader.api.kite import KiteLogin
from trader.api.loop import RUNNER
from trader.clock import NS_PER_SECOND, ExchangeClock, LiveClock, SimClock
from trader.market.instruments import UnderlyingSpec
from trader.money import to_rupees

DATA_PROVIDERS = ("paper", "zerodha", "historical")
DEFAULT_RATE = 0.065  # annual risk-free rate for implied volatility on Kite data (the built-in market's own rate)
HISTORICAL_WAITS = ("the 'historical' data provider (replaying recorded ticks or bars) waits for issue #11 (the replay "
                    "provider) and is not available yet; use create_data_provider('paper') for the built-in market or "
                    "create_data_provider('zerodha', api_key=..., ...) for Kite")


class PaperDataProvider:
    """The built-in market: a seeded index path in NSE session hours with its weekly option chain; no credentials.
    Started outside a session, its clock jumps to the next session open."""

    name = "paper"

    def __init__(self, *, seed: int | None = None, speed: float | None = None, start: datetime | str | None = None,
                 strikes_each_side: int | None = None) -> None:
        if speed is not None and not (isinstance(speed, int | float) and speed > 0):
            raise ValueError(f"speed must be above 0 (× real time; 60 = a minute a second), got {speed!r}")
        sim = checks.given(seed=seed, speed=speed, start=start, strikes_each_side=strikes_each_side)
        self.settings = checks.settings({"sim": sim} if sim else {})

    def connect(self) -> bool:
        """Nothing to connect to: the built-in market runs inside this process. True."""
        return True

    def set_access_token(self, access_token: str) -> None:
        """The built-in market needs no access token; accepted (so code written for 'zerodha' runs) and unused."""
        if not isinstance(access_token, str):
            raise TypeError(f"access_token must be a string, got {type(access_token).__name__}")

    def close(self) -> None:
        """Nothing to release: each data manager owns its market."""

    async def open_market(self, specs: list[UnderlyingSpec], timeout_s: float) -> MarketFeed:
        settings = self.settings
        clock = SimClock(builders.start_ns(settings, LiveClock().now_ns()), speed=settings.sim.speed)
        hub = Hub(clock, settings.market_calendar())
        return built_in_market(hub, specs, [builders.synthetic_config(settings, spec) for spec in specs])


class KiteDataProvider:
    """Kite Connect market data: the day's instrument dump and the ticker (full mode), as the daemon takes them."""

    name = "zerodha"

    def __init__(self, *, api_key: str, api_secret: str = "", access_token: str = "", api_root: str | None = None,
                 ws_root: str | None = None, strikes_each_side: int | None = None, rate: float = DEFAULT_RATE,
                 timeout_s: float | None = None) -> None:
        if not (isinstance(rate, int | float) and -0.5 < rate < 1):
            raise ValueError(f"rate must be an annual rate as a fraction (0.065 = 6.5 %), got {rate!r}")
        self.settings = checks.settings(checks.given(
            kite_api_root=api_root, kite_ws_root=ws_root, kite_timeout_seconds=timeout_s,
            sim=checks.given(strikes_each_side=strikes_each_side) or None))
        self.login = KiteLogin(self, self.settings, api_key=api_key, api_secret=api_secret,
                               access_token=access_token)
        self.login.on_token.append(self._new_token)
        self.rate = float(rate)
        self._feeds: list[MarketFeed] = []

    @property
    def api_root(self) -> str:
        return self.settings.kite_api_root

    @property
    def ws_root(self) -> str:
        return self.settings.kite_ws_root

    def connect(self) -> str:
        """Prepare the REST client; returns the login URL where the day's login starts (Kite has no headless
        login): log in there, then ``generate_session(request_token)`` or ``set_access_token(token)``."""
        return self.login.connect()

    def generate_session(self, request_token: str) -> str:
        """Exchange the login's ``request_token`` (needs ``api_secret``); the access token is set and returned."""
        return self.login.generate_session(request_token)

    def set_access_token(self, access_token: str) -> None:
        """Use the day's access token; once connected it is checked with Kite (a refused token raises
        ``PermissionError`` naming the fix)."""
        self.login.set_access_token(access_token)

    def _new_token(self, token: str) -> None:
        for feed in self._feeds:
            if feed.ticker is not None:
                feed.ticker.set_access_token(token)

    def close(self) -> None:
        """Close the REST client and release the event loop."""
        self.login.close()
        RUNNER.release(self)

    async def open_market(self, specs: list[UnderlyingSpec], timeout_s: float) -> MarketFeed:
        client = self.login.ready_client()
        settings = self.settings
        clock = ExchangeClock(tolerance_ns=int(settings.exchange_time_tolerance_seconds * NS_PER_SECOND))
        hub = Hub(clock, settings.market_calendar())
        try:
            feed = await kite_market(hub, client, self.ws_root, specs, rate=self.rate,
                                     strikes_each_side=settings.sim.strikes_each_side,
                                     retry=RetryPolicy(total_s=timeout_s / 2))
        except BaseException:
            await hub.close()
            raise
        self._feeds.append(feed)
        return feed

    def forget(self, feed: MarketFeed) -> None:
        if feed in self._feeds:
            self._feeds.remove(feed)


DataProvider = PaperDataProvider | KiteDataProvider


def create_data_provider(name: str, **options: Any) -> DataProvider:
    """'paper' (options: seed, speed, start, strikes_each_side), 'zerodha' (api_key, api_secret, access_token,
    api_root, ws_root, strikes_each_side, rate, timeout_s) or 'historical' (not yet: issue #11)."""
    chosen = checks.choice("data provider", name, DATA_PROVIDERS)
    if chosen == "historical":
        raise NotImplementedError(HISTORICAL_WAITS)
    cls: type[DataProvider] = PaperDataProvider if chosen == "paper" else KiteDataProvider
    checks.check_options("create_data_provider", chosen, cls, options)
    if chosen == "zerodha" and "api_key" not in options:
        raise TypeError("create_data_provider('zerodha') needs api_key=... (and api_secret=... to log in)")
    return cls(**options)


class RealTimeDataManager:
    """Live prices of the underlyings ``symbols`` (default: the settings' symbols, NSE:NIFTY50-INDEX) and their
    nearest expiry's option chain, from ``provider``. ``start()`` returns once the first quotes are in."""

    def __init__(self, provider: DataProvider, symbols: list[str] | str | None = None, *,
                 start_timeout_s: float = 60.0) -> None:
        if not isinstance(provider, PaperDataProvider | KiteDataProvider):
            raise TypeError("RealTimeDataManager needs a provider from create_data_provider('paper' | 'zerodha', "
                            f"...), got {type(provider).__name__}")
        if not (isinstance(start_timeout_s, int | float) and start_timeout_s > 0):
            raise ValueError(f"start_timeout_s must be a positive number of seconds, got {start_timeout_s!r}")
        self.provider = provider
        self.specs = checks.symbols(symbols if symbols is not None else provider.settings.symbols)
        self.start_timeout_s = float(start_timeout_s)
        self._feed: MarketFeed | None = None

    # -- life cycle ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the market data and wait for the first quotes (at most ``start_timeout_s``). Called again on a
        manager that lost its connection, it starts afresh."""
        if self._feed is not None:
            if self.is_connected():
                return
            self.stop()
        if isinstance(self.provider, KiteDataProvider):
            self.provider.connect()
        RUNNER.acquire(self)
        try:
            self._feed = RUNNER.run(self._open(), self.start_timeout_s + 5, what="starting the market data")
        except BaseException:
            RUNNER.release(self)
            raise

    async def _open(self) -> MarketFeed:
        feed = await self.provider.open_market(self.specs, self.start_timeout_s)
        try:
            feed.start()
            await feed.wait_ready(self.start_timeout_s)
        except BaseException:
            await feed.close()
            await feed.hub.close()
            raise
        return feed

    def stop(self) -> None:
        """Stop the market data (its connection, its tasks); ``start()`` starts it again."""
        feed, self._feed = self._feed, None
        if feed is not None:
            if isinstance(self.provider, KiteDataProvider):
                self.provider.forget(feed)
            if RUNNER.running:
                RUNNER.run(self._close(feed), 15, what="stopping the market data")
        RUNNER.release(self)

    close = stop

    @staticmethod
    async def _close(feed: MarketFeed) -> None:
        await feed.close()
        await feed.hub.close()

    def __enter__(self) -> RealTimeDataManager:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- reads -------------------------------------------------------------------------------------------------
    def is_connected(self) -> bool:
        """True while the market data runs (and, for Kite, its WebSocket is connected)."""
        feed = self._feed
        return feed is not None and RUNNER.running and RUNNER.call(lambda: feed.connected)

    def get_underlying_price(self, symbol: str) -> float:
        """The index's last price in rupees, e.g. ``get_underlying_price('NSE:NIFTY50-INDEX')``."""
        spec, feed = self._subscribed(symbol)
        tick = RUNNER.call(lambda: feed.quotes.get(spec.spot_token))
        if tick is None:
            raise LookupError(f"no {spec.spot_exchange}:{spec.spot_symbol} quote yet from {feed.venue}")
        return to_rupees(tick.last_price)

    def get_option_chain(self, symbol: str) -> OptionChain | None:
        """The nearest expiry's chain of ``symbol``'s index options with live quotes (None before any quote)."""
        spec, feed = self._subscribed(symbol)
        return RUNNER.call(lambda: build_chain(spec, feed.instruments, feed.quotes, feed.hub.calendar,
                                               feed.clock.now_ns(), feed.rate))

    def market_time_ns(self) -> int:
        """The market's event time (the built-in market's simulated clock; Kite's exchange time)."""
        feed = self._running()
        return RUNNER.call(feed.clock.now_ns)

    def _running(self) -> MarketFeed:
        feed = self._feed
        if feed is None or not RUNNER.running:
            raise RuntimeError("the data manager is not running: call start() first")
        return feed

    def _subscribed(self, symbol: str) -> tuple[UnderlyingSpec, MarketFeed]:
        spec = checks.underlying(symbol)
        feed = self._running()
        if spec not in self.specs:
            raise ValueError(f"{symbol!r} ({spec.name}) is not among this manager's symbols "
                             f"({', '.join(s.name for s in self.specs)}): create it with "
                             f"RealTimeDataManager(provider, symbols=[...])")
        return spec, feed

    @property
    def feed(self) -> MarketFeed | None:
        """The running feed (for the paper broker that fills against this manager's quotes)."""
        return self._feed
