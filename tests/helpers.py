"""Helpers shared by the test modules (imported as ``helpers``: pytest puts ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from trader.adapters.ports import Broker, BrokerOrder, MarginView, OrderRejected
from trader.clock import Clock, SimClock
from trader.events import OrderIntent, OrderRequest, OrderStatus, OrderUpdate, Side, Tick
from trader.market.instruments import OptionContract, OptionType
from trader.risk.margin import short_option_margin
from trader.sim import ExchangeSimulator

# Real Kite sample data copied into the repo with its licence note (tests/fixtures/kite/README.md).
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "kite"

# Fri 20 Nov 2026 10:05 IST: a whole second inside a regular session.
T0 = 1_795_151_700 * 1_000_000_000


async def wait_for(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    """Poll state that lives in another task or process (a server's, a client's); fail after ``within_s``."""
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110 - no event to wait on: the state belongs to the code under test
            await asyncio.sleep(0.01)


def atm(sim: ExchangeSimulator, option_type: OptionType = OptionType.CE) -> OptionContract:
    """The simulator's nearest-expiry NIFTY option at the strike nearest spot."""
    expiry = sim.instruments.expiries("NIFTY")[0]
    contract = sim.instruments.nearest_strike("NIFTY", expiry, round(sim.market.spot * 100), option_type)
    assert contract is not None
    return contract


class FakeBroker:
    """The whole ``Broker`` port in memory, for tests that need a broker but not a venue.

    Orders are accepted and rest OPEN (nothing fills them); a cancel ends an open order and publishes the update at
    once, so a ``resync`` never finds missed progress. Funds (``available``, ``used``) and positions (``held``) are what
    the test sets; ``margins_down`` makes the funds and position calls fail like a timed-out endpoint. Subclasses
    script the failures of one call by overriding it.
    """

    def __init__(self, clock: Clock, *, wants_ticks: bool = False, available: int = 10_000_000) -> None:
        self.clock = clock
        self._wants_ticks = wants_ticks
        self.publish: Callable[[object], None] | None = None
        self.orders: list[BrokerOrder] = []
        self.ticks: list[Tick] = []
        self.cancelled: list[str] = []
        self.available = available  # paise free for new orders
        self.used = 0  # paise blocked
        self.held: dict[int, int] = {}  # instrument token -> net quantity
        self.margins_down = False
        self.resyncs = 0

    # -- Broker port
    def attach(self, publish: Callable[[object], None]) -> None:
        self.publish = publish

    @property
    def wants_ticks(self) -> bool:
        return self._wants_ticks

    def on_tick(self, tick: Tick) -> None:
        self.ticks.append(tick)

    async def place_order(self, request: OrderRequest) -> str:
        order_id = f"ORD{len(self.orders) + 1}"
        self.orders.append(BrokerOrder(order_id=order_id, tag=request.tag, status=OrderStatus.OPEN,
                                       quantity=request.intent.quantity, filled_quantity=0, average_price=0))
        return order_id

    async def cancel_order(self, order_id: str) -> None:
        index = next((i for i, o in enumerate(self.orders) if o.order_id == order_id), None)
        if index is None or self.orders[index].status.is_terminal:
            raise OrderRejected(f"order {order_id} is not open")
        order = self.orders[index] = dataclasses.replace(self.orders[index], status=OrderStatus.CANCELLED)
        self.cancelled.append(order_id)
        if self.publish is not None:
            self.publish(OrderUpdate(ts_ns=self.clock.now_ns(), intent_id=order.tag, order_id=order_id,
                                     status=OrderStatus.CANCELLED, filled_quantity=order.filled_quantity))

    async def find_order_by_tag(self, tag: str) -> BrokerOrder | None:
        matching = [o for o in self.orders if o.tag == tag]
        return matching[-1] if matching else None

    async def open_orders(self) -> list[BrokerOrder]:
        return [o for o in self.orders if not o.status.is_terminal]

    async def margins(self) -> MarginView:
        self._fail_if_down()
        return MarginView(available=self.available, used=self.used)

    async def resync(self) -> None:
        self.resyncs += 1  # every update was published as it happened: nothing to read back

    async def positions(self) -> dict[int, int]:
        self._fail_if_down()
        return dict(self.held)

    async def order_margin(self, intent: OrderIntent) -> int:
        """A buy blocks its premium, a short sale a modelled SPAN + exposure; the part that reduces ``held``, 0."""
        self._fail_if_down()
        held = self.held.get(intent.contract.instrument_token, 0)
        opening = intent.quantity if held * intent.side.sign >= 0 else max(intent.quantity - abs(held), 0)
        if intent.side is Side.BUY:
            return opening * (intent.limit_price or intent.expected_price)
        return short_option_margin(intent.contract.strike, opening)

    # -- test helpers
    def orders_for(self, tag: str) -> list[BrokerOrder]:
        return [o for o in self.orders if o.tag == tag]

    def _fail_if_down(self) -> None:
        if self.margins_down:
            raise ConnectionError("margins endpoint timed out")


if TYPE_CHECKING:
    _: Broker = FakeBroker(SimClock(T0))  # mypy proves the fake still implements the whole port
