"""The broker side inside the facade's loop: the daemon's ``ExecutionActor`` on a private bus, and what it answers.

An order from ``BrokerExecution.place_option_order`` becomes an ``OrderIntent`` and an ``OrderRequest`` (tag = the
intent id) published on the hub's bus; the execution actor places it exactly once (rate limit, retries, look-up by
tag after an ambiguous failure), and the broker's ``OrderUpdate``/``Fill`` events answer it. For Kite, whose updates
normally arrive on the ticker, the desk reads the broker's order book (``Broker.resync``) while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass, field

from trader.actors.execution import ExecutionActor
from trader.adapters.ports import Broker
from trader.api.feed import Hub
from trader.clock import LiveClock
from trader.events import Fill, OrderIntent, OrderRequest, OrderStatus, OrderType, OrderUpdate, Side
from trader.ids import IdFactory
from trader.market.instruments import OptionContract
from trader.money import format_inr, to_rupees


@dataclass(frozen=True, slots=True)
class OrderResponse:
    """What became of one order. ``status``: PENDING (no answer yet), OPEN, TRIGGER PENDING, COMPLETE, CANCELLED or
    REJECTED; ``message`` says why in words; prices in rupees. Reads like a dict too: ``response['order_id']``."""

    order_id: str  # the broker's; "" when the order never reached the broker
    status: str
    message: str
    tag: str  # our idempotency key at the broker (= the intent id)
    tradingsymbol: str
    side: str
    quantity: int
    order_type: str
    filled_quantity: int = 0
    average_price: float = 0.0
    expected_price: float = 0.0
    charges: float = 0.0

    @property
    def ok(self) -> bool:
        """The broker has the order (open or filled); False when it was refused, cancelled or is not known yet."""
        return bool(self.order_id) and self.status not in (OrderStatus.REJECTED, OrderStatus.CANCELLED)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}

    def __getitem__(self, key: str) -> object:
        return self.as_dict()[key]


@dataclass(frozen=True, slots=True)
class Position:
    """A net position at the broker: ``quantity`` signed units (> 0 long); prices in rupees; ``contract`` None only
    when the instrument is not one this API lists."""

    tradingsymbol: str
    exchange: str
    quantity: int
    average_price: float
    last_price: float
    unrealized_pnl: float
    contract: OptionContract | None = None

    @property
    def closing_side(self) -> Side:
        """The side of the order that closes it."""
        return Side.SELL if self.quantity > 0 else Side.BUY


@dataclass(slots=True)
class _Tracked:
    intent: OrderIntent
    update: OrderUpdate | None = None
    fills: list[Fill] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class OrderDesk:
    """The execution actor on ``hub``; ``place`` publishes a request and waits for the broker's answer."""

    def __init__(self, hub: Hub, broker: Broker, *, max_orders_per_second: int = 8,
                 resync_every_s: float | None = None) -> None:
        if hub.has_desk:
            raise ValueError("this market already has a broker on it: use that one")
        hub.has_desk = True
        self.hub = hub
        self.broker = broker
        self.execution = ExecutionActor(hub.bus, broker, hub.clock, max_orders_per_second=max_orders_per_second,
                                        conflate_ticks=True)
        self.ids = IdFactory(LiveClock().now_ns())  # wall time: two desks started on one simulated instant differ
        self.resync_every_s = resync_every_s
        self._orders: dict[str, _Tracked] = {}
        hub.bus.tap(self._observe)

    def start(self) -> None:
        self.hub.supervisor.start(self.execution)
        self.hub.start_heartbeats()

    async def close(self) -> None:
        """Let placements under way finish, then end every request this desk was handed (as the daemon does)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.execution.settle(), timeout=5)
        await self.execution.close(budget_s=2.0)
        await self.hub.supervisor.stop([self.execution.name])
        self.hub.has_desk = False

    def next_id(self) -> str:
        return self.ids.next("API")

    def _observe(self, event: object) -> None:
        kind = type(event)
        if kind is OrderUpdate:
            assert isinstance(event, OrderUpdate)
            tracked = self._orders.get(event.intent_id)
            if tracked is not None:
                tracked.update = event
                tracked.changed.set()
        elif kind is Fill:
            assert isinstance(event, Fill)
            tracked = self._orders.get(event.intent_id)
            if tracked is not None:
                tracked.fills.append(event)
                tracked.changed.set()

    async def place(self, intent: OrderIntent, wait_s: float) -> OrderResponse:
        """Send ``intent``; a MARKET order is waited for until it ends (filled, refused), any other until the
        broker has it; at most ``wait_s`` seconds, after which the answer says PENDING/OPEN as it stands."""
        tracked = self._orders[intent.intent_id] = _Tracked(intent)
        self.hub.bus.publish(OrderRequest(ts_ns=self.hub.clock.now_ns(), intent=intent, tag=intent.intent_id))
        wait_for_end = intent.order_type is OrderType.MARKET
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while not _answered(tracked, wait_for_end):
            left = deadline - loop.time()
            if left <= 0:
                break
            tracked.changed.clear()
            pause = left if self.resync_every_s is None else min(left, self.resync_every_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tracked.changed.wait(), timeout=pause)
            if self.resync_every_s is not None and not _answered(tracked, wait_for_end):
                with contextlib.suppress(Exception):  # the next round asks again; the answer says what is known
                    await self.broker.resync()
        return response(tracked, waited_s=wait_s)

    def tracked(self, ref: str) -> _Tracked | None:
        """An order placed through this desk, by intent id (= tag) or broker order id."""
        found = self._orders.get(ref)
        if found is not None:
            return found
        return next((t for t in self._orders.values() if t.update is not None and t.update.order_id == ref), None)


def _answered(tracked: _Tracked, wait_for_end: bool) -> bool:
    update = tracked.update
    if update is None:
        return False
    if update.status.is_terminal:
        return True
    return not wait_for_end and bool(update.order_id)


def response(tracked: _Tracked, *, waited_s: float = 0.0) -> OrderResponse:
    intent, update = tracked.intent, tracked.update
    status = update.status.value if update is not None else OrderStatus.PENDING.value
    filled = update.filled_quantity if update is not None else 0
    average = update.average_price if update is not None else 0
    order_id = update.order_id if update is not None else ""
    charges = sum(f.charges for f in tracked.fills)
    contract = intent.contract
    if update is None:
        message = (f"no answer from the broker within {waited_s:g}s; the order may still be placed: look it up by "
                   f"its tag {intent.intent_id}")
    elif update.status is OrderStatus.COMPLETE:
        slippage = (average - intent.expected_price) * intent.side.sign
        message = (f"{intent.side.value} {filled} {contract.tradingsymbol} filled at {format_inr(average)} "
                   f"(expected {format_inr(intent.expected_price)}, slippage {format_inr(slippage)} a unit, "
                   f"charges {format_inr(charges)})")
    elif update.status is OrderStatus.REJECTED:
        message = f"rejected: {update.reason or 'the broker gave no reason'}"
    elif update.status is OrderStatus.CANCELLED:
        message = f"cancelled after {filled} of {intent.quantity} filled: {update.reason or 'no reason given'}"
    else:
        message = (f"{update.status.value} at the broker: {filled} of {intent.quantity} filled so far"
                   + (f" ({update.reason})" if update.reason else ""))
    return OrderResponse(order_id=order_id, status=status, message=message, tag=intent.intent_id,
                         tradingsymbol=contract.tradingsymbol, side=intent.side.value, quantity=intent.quantity,
                         order_type=intent.order_type.value, filled_quantity=filled, average_price=to_rupees(average),
                         expected_price=to_rupees(intent.expected_price), charges=to_rupees(charges))
