"""The ports every venue adapter implements: market data in, orders out, and a live venue's whole connection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from trader.events import OrderIntent, OrderRequest, OrderStatus, Side, Tick
from trader.market.instrument_master import InstrumentMaster

if TYPE_CHECKING:
    from trader.clock import Clock
    from trader.market.calendar import MarketCalendar
    from trader.market.instruments import UnderlyingSpec


class MarketData(Protocol):
    async def start(self, instruments: InstrumentMaster) -> None:
        """Connect and register every instrument it will send ticks for."""
        ...

    def stream(self) -> AsyncIterator[list[Tick]]:
        """Batches of ticks in event-time order; ends when the source has no more data."""
        ...

    async def close(self) -> None: ...


class BrokerError(Exception):
    """Base class: every broker failure the execution actor must decide on."""


class OrderRejected(BrokerError):
    """The broker refused the order; it does not exist. Terminal."""


class SessionExpired(OrderRejected):
    """The broker refused the access token: the request was not acted on. For an order this is final (re-placing
    it later is a new decision); for a cancel it is not: the order still rests, and the cancel is tried again once
    `trader login` stored a new token."""


class BrokerUnavailable(BrokerError):
    """Timeout, 5xx, dropped connection: the order may or may not exist. Look the tag up before any re-send."""


class RateLimited(BrokerError):
    """HTTP 429: the order was not accepted; it may be sent again later."""


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    order_id: str
    tag: str
    status: OrderStatus
    quantity: int
    filled_quantity: int
    average_price: int
    instrument_token: int = 0
    tradingsymbol: str = ""
    side: Side | None = None
    status_message: str = ""


@dataclass(frozen=True, slots=True)
class BrokerTrade:
    """One execution in the broker's trade book (Kite ``/trades``)."""

    trade_id: str
    order_id: str
    instrument_token: int
    tradingsymbol: str
    side: Side
    quantity: int
    price: int  # paise


@dataclass(frozen=True, slots=True)
class BrokerPosition:
    """One row of the broker's net positions: ``overnight_quantity`` is what the day started with."""

    instrument_token: int
    tradingsymbol: str
    quantity: int
    overnight_quantity: int = 0
    average_price: int = 0


@dataclass(frozen=True, slots=True)
class BrokerBook:
    """Everything the broker says about today at one moment: the truth a restart reconciles against."""

    orders: tuple[BrokerOrder, ...]
    trades: tuple[BrokerTrade, ...]
    positions: tuple[BrokerPosition, ...]


@dataclass(frozen=True, slots=True)
class MarginView:
    """Funds as the broker sees them, in paise."""

    available: int  # free for new orders
    used: int  # blocked by positions and open orders


class Broker(Protocol):
    def attach(self, publish: Callable[[object], None]) -> None:
        """Where the broker sends ``OrderUpdate`` and ``Fill`` events."""
        ...

    @property
    def wants_ticks(self) -> bool:
        """True for simulated brokers that fill against market data fed through ``on_tick``."""
        ...

    def on_tick(self, tick: Tick) -> None: ...

    async def place_order(self, request: OrderRequest) -> str:
        """Returns the broker order id; raises a ``BrokerError`` subclass."""
        ...

    async def cancel_order(self, order_id: str) -> None: ...

    async def find_order_by_tag(self, tag: str) -> BrokerOrder | None: ...

    async def open_orders(self) -> list[BrokerOrder]: ...

    async def margins(self) -> MarginView: ...

    async def resync(self) -> None:
        """Re-read the broker's order book and publish the updates and fills that were missed (a lost reply, a
        postback sent while the order channel was reconnecting). Already-seen progress is never published twice."""
        ...

    async def positions(self) -> dict[int, int]:
        """Net quantity per instrument token as the broker holds it: the truth on a restart."""
        ...

    async def book(self) -> BrokerBook:
        """Today's orders, trades and positions, as the broker holds them (the reconciliation gate's input)."""
        ...

    def adopt(self, request: OrderRequest, order_id: str, filled: int, filled_value: int) -> None:
        """Manage an order placed before a restart: later reports of it are tied to ``request``; ``filled`` units
        (worth ``filled_value`` paise) are already booked and are never reported again."""
        ...

    async def order_margin(self, intent: OrderIntent) -> int:
        """Paise the order would block (0 when it only reduces a position)."""
        ...


class VenueMarket(MarketData, Protocol):
    """A live venue's market-data socket: also takes the instruments a restart found held (their ticks must flow for
    the stops that guard them), and publishes ``FeedStatus`` and ``Command`` events of its own (through ``attach``)."""

    def attach(self, publish: Callable[[object], None]) -> None: ...

    def add_tokens(self, tokens: Iterable[int]) -> None: ...


class Venue(Protocol):
    """A live broker's whole connection (Kite, Fyers): REST client, broker, market data, the access-token watch.

    The App builds one from the settings (``builders.build_venue``) when it runs on a venue's market (live mode, or
    paper mode with that venue's credentials) and never looks inside: the actors cannot tell the venues apart.
    """

    name: str  # "kite" | "fyers": logs, the run folder's data source

    def build_broker(self, clock: Clock) -> Broker:
        """The venue's order-placing broker (live mode only; paper mode keeps the simulated PaperBroker)."""
        ...

    async def connect_market(self, *, underlyings: Sequence[UnderlyingSpec], instruments: InstrumentMaster,
                             clock: Clock, calendar: MarketCalendar, publish: Callable[[object], None],
                             broker: Broker) -> VenueMarket:
        """Load the day's instrument master, register the chains around spot in ``instruments`` (setting the
        exchange clock from the venue's quote timestamps), watch the access token (a refused token publishes the
        stop-entries command until a new one is stored) and return the subscribed market-data socket. Order updates
        that arrive on a venue socket go to ``broker`` when it is this venue's broker.

        Raises ``VenueUnreachableError`` (the venue did not answer) or ``VenueSetupError`` (it answered, but the
        symbols cannot be traded: no such underlying, no chain)."""
        ...

    def describe(self) -> dict[str, str]:
        """What the start-up log says about the connection (roots and URLs, never a secret)."""
        ...

    async def close(self) -> None:
        """Close the sockets, the token watch and the REST session (idempotent)."""
        ...


class VenueSetupError(RuntimeError):
    """The venue answered, but the market cannot be set up (unknown underlying, no chain, a bad instrument master)."""


class VenueUnreachableError(VenueSetupError):
    """The venue did not answer at start-up (after its retries)."""
