"""``FyersVenue``: the ``Venue`` port for Fyers API v3 — REST client, broker, symbol master and quotes at start-up,
the market-data socket, the order-update socket and the access-token watch. The App never looks inside.

The market-data socket is ``trader.adapters.fyers.ticker.FyersDataSocket`` (the ``VenueMarket`` port), built as
``FyersDataSocket(access_token, tokens, clock=, url=, calendar=, symbols=, on_token_rejected=,
unreachable_after_s=)`` like ``KiteTicker`` (``data_socket_factory`` replaces it in tests). Options find their Fyers
symbols in the instrument master; each index is named by its ticker (``NSE:NIFTY50-INDEX``) in ``symbols``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from trader.adapters.fyers.broker import FyersBroker
from trader.adapters.fyers.order_socket import FyersOrderSocket
from trader.adapters.fyers.provision import provision_market
from trader.adapters.fyers.rest import FyersRestClient
from trader.adapters.fyers.session import token_watcher
from trader.adapters.fyers.symbols import INDEX_TICKERS
from trader.adapters.fyers.ticker import FyersDataSocket
from trader.adapters.kite.provision import RetryPolicy
from trader.adapters.order_tracker import OrderTracker
from trader.adapters.ports import Broker, VenueMarket
from trader.adapters.token_watch import TokenWatcher
from trader.config import Settings
from trader.logging import get_logger
from trader.market.instrument_master import InstrumentMaster

if TYPE_CHECKING:
    from trader.clock import Clock
    from trader.market.calendar import MarketCalendar
    from trader.market.instruments import UnderlyingSpec

log = get_logger("trader.fyers.venue")

DataSocketFactory = Callable[..., VenueMarket]


class FyersVenue:
    name = "fyers"

    def __init__(self, settings: Settings, *, clock: Clock, rest: FyersRestClient | None = None,
                 retry: RetryPolicy | None = None, data_socket_factory: DataSocketFactory | None = None) -> None:
        fyers = settings.fyers
        self.settings = settings
        self.rest = rest or FyersRestClient(fyers.app_id, settings.fyers_access_token() or None,
                                            api_root=fyers.api_root, data_root=fyers.data_root,
                                            timeout_s=fyers.timeout_seconds, clock=clock)
        self.retry = retry
        self._data_socket_factory: DataSocketFactory = data_socket_factory or FyersDataSocket
        self.broker: FyersBroker | None = None
        self.watcher: TokenWatcher | None = None
        self.market: VenueMarket | None = None
        self.order_socket: FyersOrderSocket | None = None
        self._closed = False

    def build_broker(self, clock: Clock) -> Broker:
        if self.broker is None:
            self.broker = FyersBroker(self.rest, product=self.settings.fyers.product, tracker=OrderTracker(clock))
        return self.broker

    async def connect_market(self, *, underlyings: Sequence[UnderlyingSpec], instruments: InstrumentMaster,
                             clock: Clock, calendar: MarketCalendar, publish: Callable[[object], None],
                             broker: Broker) -> VenueMarket:
        settings = self.settings
        tokens = await provision_market(self.rest, underlyings, instruments, clock,
                                        symbols_root=settings.fyers.symbols_root,
                                        strikes_each_side=settings.sim.strikes_each_side, retry=self.retry)
        watcher = self.watcher = token_watcher(self.rest, token_file=settings.fyers_token_file, clock=clock,
                                               publish=publish, poll_s=settings.kite_token_poll_seconds)
        token = self.rest.access_token or ""
        index_symbols = {index.instrument_token: INDEX_TICKERS[spec.name] for spec in underlyings
                         if (index := instruments.index_for(spec.name)) is not None and spec.name in INDEX_TICKERS}
        market = self.market = self._data_socket_factory(
            token, tokens, clock=clock, url=settings.fyers.data_ws_url, calendar=calendar, symbols=index_symbols,
            on_token_rejected=watcher.report_rejected,
            unreachable_after_s=settings.broker_unreachable_halt_seconds)
        watcher.add_ticker(market)  # type: ignore[arg-type]  # the data socket takes a renewed token too
        market.attach(publish)
        if broker is self.broker and self.broker is not None:
            orders = self.order_socket = FyersOrderSocket(
                settings.fyers.app_id, token, url=settings.fyers.order_ws_url, on_order=self.broker.on_order_message,
                on_reconnect=self.broker.resync, on_token_rejected=watcher.report_rejected)
            watcher.add_ticker(orders)
            orders.start()
        log.info("fyers_market_connected", **self.describe(), instruments=len(tokens),
                 order_socket=self.order_socket is not None)
        return market

    def describe(self) -> dict[str, str]:
        fyers = self.settings.fyers
        return {"venue": self.name, "app_id": fyers.app_id, "api_root": fyers.api_root, "data_root": fyers.data_root,
                "data_ws_url": fyers.data_ws_url, "order_ws_url": fyers.order_ws_url,
                "symbols_root": fyers.symbols_root, "product": fyers.product}

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.order_socket is not None:
            await self.order_socket.close()
        if self.market is not None:
            with contextlib.suppress(Exception):
                await self.market.close()
        if self.watcher is not None:
            await self.watcher.close()
        if self.broker is not None:
            await self.broker.close()
        await self.rest.close()
