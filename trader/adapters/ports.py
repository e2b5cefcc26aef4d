"""The two ports every venue adapter implements: market data in, orders out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from trader.events import OrderIntent, OrderRequest, OrderStatus, Side, Tick
from trader.market.instrument_master import InstrumentMaster


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
