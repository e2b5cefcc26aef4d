"""Ledger actor: the operator's read model of what the daemon decided and did, and the futures the control service
waits on.

It subscribes to signals, approvals, intents, order requests, order updates, fills and command results (never to
ticks) and keeps, in memory and bounded:

* today's orders by intent id (the intent, its tag, the broker's order id, status, reason, the risk check that
  refused it, its fills and their slippage), newest last; past ``max_orders`` the oldest finished ones go;
* the recent signals (at most ``max_signals``), each linked to the intent it led to;
* the semi-live approvals: every pending one, and the latest ``max_decided`` decided or expired ones;
* the latest ``max_results`` command results by command id.

``intent_outcome(intent_id, timeout_s)`` resolves with the intent's record at the first decision on it (an
``OrderRequest``: the risk gate approved it; or any ``OrderUpdate`` before that: refused, with the check);
``command_result(command_id, timeout_s)`` with the ``CommandResult`` of that command. Both give None on timeout.
Everything here runs on the daemon's event loop: the control service reads the records directly.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trader.actors.base import Actor
from trader.bus import EventBus
from trader.clock import NS_PER_SECOND
from trader.events import (
    ApprovalStatus,
    ApprovalUpdate,
    CommandResult,
    Fill,
    OrderIntent,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    Signal,
)
from trader.market.calendar import ist_text
from trader.money import to_rupees

if TYPE_CHECKING:
    from trader.store.orders import JournaledIntent

# Ledger-only statuses of an order before the broker knows it.
NEW = "NEW"  # the intent is on the bus; the risk gate has not decided
APPROVED = "APPROVED"  # the risk gate sent it to execution; no update from the broker yet

MAX_ORDERS = 2_000
MAX_SIGNALS = 500
MAX_DECIDED = 200
MAX_RESULTS = 256


@dataclass(slots=True)
class OrderRecord:
    intent: OrderIntent
    status: str = NEW
    tag: str = ""
    order_id: str = ""
    reason: str = ""
    check: str = ""
    filled_quantity: int = 0
    average_price: int = 0  # paise, as the broker reported it (fills give the exact figure when there are any)
    fills: list[Fill] = field(default_factory=list)
    updated_ns: int = 0

    @property
    def decided(self) -> bool:
        return self.status != NEW

    @property
    def terminal(self) -> bool:
        return self.status in _TERMINAL

    @property
    def refused(self) -> bool:
        """Ended before it reached execution: the risk gate (or an approval) refused it."""
        return self.status == OrderStatus.REJECTED.value and not self.tag

    def filled(self) -> tuple[int, int]:
        """(units filled, average fill price in paise) from the fills, else from the broker's last update."""
        units = sum(f.quantity for f in self.fills)
        if not units:
            return self.filled_quantity, self.average_price
        return units, round(sum(f.quantity * f.price for f in self.fills) / units)

    def slippage_bps(self) -> float | None:
        """Average slippage over the fills, weighted by units (positive: worse than expected); None unfilled."""
        units = sum(f.quantity for f in self.fills)
        if not units:
            return None
        return round(sum(f.slippage_bps * f.quantity for f in self.fills) / units, 2)

    def as_dict(self) -> dict[str, Any]:
        intent = self.intent
        units, average = self.filled()
        return {
            "intent_id": intent.intent_id,
            "tag": self.tag,
            "order_id": self.order_id,
            "strategy": intent.strategy_id,
            "tradingsymbol": intent.contract.tradingsymbol,
            "side": intent.side.value,
            "quantity": intent.quantity,
            "order_type": intent.order_type.value,
            "purpose": intent.purpose.value,
            "status": self.status,
            "reason": self.reason,
            "check": self.check,
            "filled_quantity": units,
            "average_price_inr": to_rupees(average) if units else None,
            "expected_price_inr": to_rupees(intent.expected_price),
            "limit_price_inr": to_rupees(intent.limit_price) if intent.limit_price else None,
            "trigger_price_inr": to_rupees(intent.trigger_price) if intent.trigger_price else None,
            "slippage_bps": self.slippage_bps(),
            "fills": [
                {"fill_id": f.fill_id, "quantity": f.quantity, "price_inr": to_rupees(f.price),
                 "charges_inr": to_rupees(f.charges), "slippage_bps": round(f.slippage_bps, 2),
                 "time": ist_text(f.ts_ns)}
                for f in self.fills
            ],
            "time": ist_text(intent.ts_ns),
            "time_ns": intent.ts_ns,
        }


_TERMINAL = frozenset(s.value for s in OrderStatus if s.is_terminal)


@dataclass(slots=True)
class SignalRecord:
    signal: Signal
    intent_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        signal = self.signal
        return {
            "signal_id": signal.signal_id,
            "strategy": signal.strategy_id,
            "underlying": signal.underlying,
            "direction": signal.direction.value,
            "confidence": signal.confidence,
            "reason": signal.reason,
            "time": ist_text(signal.ts_ns),
            "time_ns": signal.ts_ns,
            "intent_id": self.intent_id,
        }


def approval_dict(update: ApprovalUpdate, now_ns: int) -> dict[str, Any]:
    """One approval as the API shows it; ``expires_in_s`` is event time left (0 once past, None once decided)."""
    intent = update.intent
    lot_size = intent.contract.lot_size
    pending = update.status is ApprovalStatus.PENDING
    return {
        "intent_id": intent.intent_id,
        "signal_id": intent.signal_id,
        "strategy": intent.strategy_id,
        "tradingsymbol": intent.contract.tradingsymbol,
        "side": intent.side.value,
        "quantity": intent.quantity,
        "lots": intent.quantity // lot_size if lot_size > 0 else None,
        "expected_price_inr": to_rupees(intent.expected_price),
        "status": update.status.value,
        "expires": ist_text(update.expires_ns) if update.expires_ns else "",
        "expires_in_s": round(max(update.expires_ns - now_ns, 0) / NS_PER_SECOND, 1) if pending else None,
        "by": update.by,
        "reason": update.reason or intent.reason,
        "time": ist_text(update.ts_ns),
    }


class LedgerActor(Actor):
    name = "ledger"

    def __init__(self, bus: EventBus, *, max_orders: int = MAX_ORDERS, max_signals: int = MAX_SIGNALS,
                 max_decided: int = MAX_DECIDED, max_results: int = MAX_RESULTS) -> None:
        super().__init__(bus)
        self.max_orders = max_orders
        self.max_decided = max_decided
        self.max_results = max_results
        self.orders: OrderedDict[str, OrderRecord] = OrderedDict()  # by intent id, oldest first
        self._by_order_id: dict[str, str] = {}  # broker order id → intent id
        self.signals: OrderedDict[str, SignalRecord] = OrderedDict()  # by signal id, oldest first
        self._max_signals = max_signals
        self.pending: OrderedDict[str, ApprovalUpdate] = OrderedDict()  # by intent id
        self.decided: OrderedDict[str, ApprovalUpdate] = OrderedDict()  # by intent id, oldest first
        self.results: OrderedDict[str, CommandResult] = OrderedDict()
        self._outcome_waiters: dict[str, list[asyncio.Future[OrderRecord]]] = {}
        self._result_waiters: dict[str, list[asyncio.Future[CommandResult]]] = {}

    def subscriptions(self) -> Iterable[type]:
        return (Signal, ApprovalUpdate, OrderIntent, OrderRequest, OrderUpdate, Fill, CommandResult)

    async def handle(self, event: Any) -> None:
        kind = type(event)
        if kind is OrderIntent:
            self._on_intent(event)
        elif kind is OrderRequest:
            record = self.orders.get(event.intent.intent_id)
            if record is not None:
                record.tag = event.tag
                if record.status == NEW:
                    record.status = APPROVED
                record.updated_ns = event.ts_ns
                self._decided(record)
        elif kind is OrderUpdate:
            self._on_update(event)
        elif kind is Fill:
            record = self.orders.get(event.intent_id)
            if record is not None and all(f.fill_id != event.fill_id for f in record.fills):
                record.fills.append(event)
                record.updated_ns = event.ts_ns
        elif kind is Signal:
            self.signals[event.signal_id] = SignalRecord(event)
            while len(self.signals) > self._max_signals:
                self.signals.popitem(last=False)
        elif kind is ApprovalUpdate:
            self._on_approval(event)
        elif kind is CommandResult:
            self.results[event.command_id] = event
            while len(self.results) > self.max_results:
                self.results.popitem(last=False)
            for waiter in self._result_waiters.pop(event.command_id, []):
                if not waiter.done():
                    waiter.set_result(event)

    def restore(self, intents: Iterable[JournaledIntent], fills: Iterable[Fill]) -> None:
        """Before start: the orders an earlier run of the day sent (the journal's), with their fills, so that
        `trader orders` still lists them after a restart; those still working go on with the updates the bus
        brings, like any other."""
        by_intent: dict[str, list[Fill]] = {}
        for fill in fills:
            by_intent.setdefault(fill.intent_id, []).append(fill)
        for journaled in intents:
            request = journaled.request
            intent_id = request.intent.intent_id
            if intent_id in self.orders:
                continue
            status = journaled.terminal_status or (OrderStatus.OPEN.value if journaled.order_id else APPROVED)
            self.orders[intent_id] = OrderRecord(intent=request.intent, status=status, tag=request.tag,
                                                 order_id=journaled.order_id, reason=journaled.reason,
                                                 fills=by_intent.get(intent_id, []), updated_ns=request.ts_ns)
            if journaled.order_id:
                self._by_order_id[journaled.order_id] = intent_id
        self._trim_orders()

    def _on_intent(self, intent: OrderIntent) -> None:
        if intent.intent_id in self.orders:
            return  # a redelivery
        self.orders[intent.intent_id] = OrderRecord(intent=intent, updated_ns=intent.ts_ns)
        self._link_signal(intent)
        self._trim_orders()

    def _on_update(self, update: OrderUpdate) -> None:
        record = self.orders.get(update.intent_id)
        if record is None:
            return  # an intent this run never saw (adopted at a restart, or held for approval and never sent)
        if record.terminal:
            return
        record.status = update.status.value
        record.updated_ns = update.ts_ns
        if update.order_id:
            record.order_id = update.order_id
            self._by_order_id[update.order_id] = update.intent_id
        if update.reason:
            record.reason = update.reason
        if update.check:
            record.check = update.check
        if update.filled_quantity:
            record.filled_quantity = update.filled_quantity
        if update.average_price:
            record.average_price = update.average_price
        self._decided(record)

    def _on_approval(self, update: ApprovalUpdate) -> None:
        intent_id = update.intent.intent_id
        self._link_signal(update.intent)
        if update.status is ApprovalStatus.PENDING:
            if intent_id not in self.decided:
                self.pending[intent_id] = update
            return
        self.pending.pop(intent_id, None)
        self.decided.pop(intent_id, None)
        self.decided[intent_id] = update
        while len(self.decided) > self.max_decided:
            self.decided.popitem(last=False)

    def _link_signal(self, intent: OrderIntent) -> None:
        if intent.signal_id:
            record = self.signals.get(intent.signal_id)
            if record is not None and not record.intent_id:
                record.intent_id = intent.intent_id

    def _decided(self, record: OrderRecord) -> None:
        for waiter in self._outcome_waiters.pop(record.intent.intent_id, []):
            if not waiter.done():
                waiter.set_result(record)

    def _trim_orders(self) -> None:
        """Past ``max_orders``, forget the oldest finished orders (never one still working or being waited on)."""
        excess = len(self.orders) - self.max_orders
        if excess <= 0:
            return
        for intent_id in [i for i, r in self.orders.items() if r.terminal and i not in self._outcome_waiters]:
            record = self.orders.pop(intent_id)
            if record.order_id:
                self._by_order_id.pop(record.order_id, None)
            excess -= 1
            if excess <= 0:
                return

    # -- queries ----------------------------------------------------------------------------------------------
    def order(self, ref: str) -> OrderRecord | None:
        """An order by intent id (= its tag) or by the broker's order id."""
        record = self.orders.get(ref)
        if record is None and ref in self._by_order_id:
            record = self.orders.get(self._by_order_id[ref])
        return record

    def approval(self, ref: str) -> ApprovalUpdate | None:
        """The latest state of a semi-live approval, by intent id or by its signal's id."""
        found = self.pending.get(ref) or self.decided.get(ref)
        if found is not None:
            return found
        for update in [*self.pending.values(), *reversed(self.decided.values())]:
            if update.intent.signal_id == ref:
                return update
        return None

    def recent_orders(self) -> list[OrderRecord]:
        """Newest first."""
        return list(reversed(self.orders.values()))

    def recent_signals(self) -> list[SignalRecord]:
        """Newest first."""
        return list(reversed(self.signals.values()))

    # -- futures ----------------------------------------------------------------------------------------------
    async def intent_outcome(self, intent_id: str, timeout_s: float) -> OrderRecord | None:
        """The intent's record once the risk gate decided on it (or anything later happened to it); None if that
        did not happen within ``timeout_s`` seconds."""
        record = self.orders.get(intent_id)
        if record is not None and record.decided:
            return record
        waiter: asyncio.Future[OrderRecord] = asyncio.get_running_loop().create_future()
        self._outcome_waiters.setdefault(intent_id, []).append(waiter)
        try:
            return await asyncio.wait_for(waiter, timeout_s)
        except TimeoutError:
            return None
        finally:
            self._forget(self._outcome_waiters, intent_id, waiter)

    async def command_result(self, command_id: str, timeout_s: float) -> CommandResult | None:
        """The ``CommandResult`` of ``command_id``; None if none came within ``timeout_s`` seconds."""
        known = self.results.get(command_id)
        if known is not None:
            return known
        waiter: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        self._result_waiters.setdefault(command_id, []).append(waiter)
        try:
            return await asyncio.wait_for(waiter, timeout_s)
        except TimeoutError:
            return None
        finally:
            self._forget(self._result_waiters, command_id, waiter)

    @staticmethod
    def _forget(waiters: dict[str, list[Any]], key: str, waiter: asyncio.Future[Any]) -> None:
        listed = waiters.get(key)
        if listed is not None and waiter in listed:
            listed.remove(waiter)
            if not listed:
                del waiters[key]
        if not waiter.done():
            waiter.cancel()
