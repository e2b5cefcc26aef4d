"""Zerodha Kite as a ``Venue``: the REST client, the broker, the instrument dump and chains, the ticker (which also
carries the order postbacks) and the access-token watch, built from the settings and closed together."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from trader.adapters.kite.broker import KiteBroker
from trader.adapters.kite.orders import OrderTracker
from trader.adapters.kite.provision import provision_market
from trader.adapters.kite.rest import KiteRestClient
from trader.adapters.kite.session import TokenWatcher
from trader.adapters.kite.ticker import KiteTicker
from trader.adapters.ports import Broker, VenueMarket
from trader.clock import Clock
from trader.config import Settings
from trader.market.calendar import MarketCalendar
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import UnderlyingSpec


class KiteVenue:
    name = "kite"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = KiteRestClient(settings.kite.api_key, settings.kite_access_token(), root=settings.kite_api_root,
                                     timeout_s=settings.kite_timeout_seconds)
        self.broker: KiteBroker | None = None
        self.token_watcher: TokenWatcher | None = None
        self.ticker: KiteTicker | None = None

    def build_broker(self, clock: Clock) -> Broker:
        self.broker = KiteBroker(self.client, product=self.settings.kite_product, tracker=OrderTracker(clock))
        return self.broker

    async def connect_market(self, *, underlyings: Sequence[UnderlyingSpec], instruments: InstrumentMaster,
                             clock: Clock, calendar: MarketCalendar, publish: Callable[[object], None],
                             broker: Broker) -> VenueMarket:
        settings = self.settings
        tokens = await provision_market(self.client, underlyings, instruments, clock,
                                        strikes_each_side=settings.sim.strikes_each_side)
        # A token Kite refuses stops entries until `trader login` writes a new one: no restart.
        watcher = self.token_watcher = TokenWatcher(self.client, token_file=settings.kite_token_file, clock=clock,
                                                    publish=publish, poll_s=settings.kite_token_poll_seconds)
        ticker = KiteTicker(settings.kite.api_key, settings.kite_access_token(), tokens, clock=clock,
                            root=settings.kite_ws_root, mode="full", calendar=calendar,
                            on_order=broker.on_postback if isinstance(broker, KiteBroker) else None,
                            on_token_rejected=watcher.report_rejected,
                            unreachable_after_s=settings.broker_unreachable_halt_seconds)
        watcher.add_ticker(ticker)
        ticker.attach(publish)
        self.ticker = ticker
        return ticker

    def describe(self) -> dict[str, str]:
        return {"api_root": self.settings.kite_api_root, "ws_root": self.settings.kite_ws_root}

    async def close(self) -> None:
        if self.token_watcher is not None:
            await self.token_watcher.close()
        if self.broker is not None:
            await self.broker.close()
        await self.client.close()
