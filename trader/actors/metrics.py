"""Metrics actor: the counts behind ``GET /metrics`` (the scrape itself is trader/control/metrics.py).

``MetricsActor`` subscribes to the few events a trade makes (signals, intents, approvals, order requests, order
updates, fills; never ticks, so it costs nothing per tick) and keeps plain counters and two histograms in memory:
signals by strategy, intents by strategy, intents approved and refused by the risk check that refused them, broker
rejects, fills by side and purpose, slippage in basis points and the tick → order latency. ``handle`` is synchronous
bookkeeping only (dict increments, a bisect), bounded in memory; every label takes values from a bounded set
(strategy ids, risk check names, sides, purposes), never an order id or a tradingsymbol.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from trader.actors.base import Actor
from trader.actors.risk import FLATTEN_STRATEGY_ID
from trader.bus import EventBus
from trader.clock import NS_PER_SECOND, Clock, SimClock
from trader.events import (
    ApprovalStatus,
    ApprovalUpdate,
    Fill,
    IntentPurpose,
    OrderIntent,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    Side,
    Signal,
)
from trader.strategies.adopted import MANUAL_STRATEGY_ID

# Signed: negative is a fill better than expected. Strategies expect a few bps; an alert fires at 50 by default.
SLIPPAGE_BUCKETS_BPS: tuple[float, ...] = (-100, -50, -25, -10, -5, -2, 0, 2, 5, 10, 25, 50, 100, 250)
LATENCY_BUCKETS_S: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
MAX_LABEL_VALUES = 32  # per label: anything past this many distinct values is counted under "other"
MAX_TRACKED = 10_000  # intents awaiting the broker's acknowledgement / fill ids remembered against repeats
OTHER = "other"
# Where an intent came from, for the latency of intents that no tick started (``trader_request_to_order_seconds``).
ORIGIN_MANUAL = "manual"
ORIGIN_APPROVED = "approved"
ORIGIN_FLATTEN = "flatten"

TICK_TO_ORDER_HELP = (
    "Seconds from the tick that led a strategy to an order to the broker's acknowledgement of that order: from the "
    "intent's event time (strategies stamp it with the tick's, which is the tick's arrival on the daemon's clock) to "
    "the event time of the first order update that carries the broker's order id (the paper broker's at hand-over; "
    "Kite's first order postback). Live: wall seconds. Paced simulation: event seconds divided by the speed, so wall "
    "seconds too. Unpaced backtests record nothing (their clock is not tied to the wall). Intents sent automatically "
    "by strategies only: manual, approved and flatten orders are in trader_request_to_order_seconds.")
REQUEST_TO_ORDER_HELP = (
    "Seconds from an operator's request (manual order, semi-live approval) or the risk gate's flatten to the broker's "
    "acknowledgement of the order (first order update with the broker's order id); same clock rules as "
    "trader_tick_to_order_seconds.")


class Histogram:
    """Cumulative-ready bucket counts, a sum and a count: plain numbers, no locks (one event loop writes)."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(float(b) for b in bounds)
        if list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError("histogram bounds must be strictly increasing")
        self.counts = [0] * (len(self.bounds) + 1)  # the last is +Inf
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le: a value equal to a bound belongs to that bucket
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        running = 0
        out: list[tuple[str, float]] = []
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == math.inf else repr(bound), float(running)))  # as prometheus_client
        return out


class BoundedLabels:
    """Counts by one label value; past ``MAX_LABEL_VALUES`` distinct values, new ones count under "other"."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, value: str, n: int = 1) -> None:
        counts = self.counts
        if value not in counts and len(counts) >= MAX_LABEL_VALUES:
            value = OTHER
        counts[value] = counts.get(value, 0) + n

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def latency_scale(clock: Clock) -> float | None:
    """Wall seconds per event nanosecond on ``clock``; None when event time is not tied to the wall (unpaced)."""
    if isinstance(clock, SimClock):
        return 1 / (clock.speed * NS_PER_SECOND) if clock.paced else None
    return 1 / NS_PER_SECOND


class MetricsActor(Actor):
    """Counts what trading does, for ``/metrics``; its handler only does arithmetic (see the module docstring)."""

    name = "metrics"

    def __init__(self, bus: EventBus, *, scale: float | None) -> None:
        super().__init__(bus, conflate_ticks=False)
        self.scale = scale  # wall seconds per event ns (``latency_scale``); None: latencies are not recorded
        self.signals = BoundedLabels()  # by strategy
        self.intents = BoundedLabels()  # by strategy
        self.approved = 0  # the risk gate approved (an OrderRequest)
        self.refused = BoundedLabels()  # by risk check
        self.not_sent = 0  # ended before the risk gate: semi-live rejected/expired, strategy state unsaved
        self.broker_rejects = 0  # REJECTED after the risk gate approved: the broker refused it, or it was not placed
        self.acknowledged = 0  # intents whose order the broker acknowledged (first update with an order id)
        self.fills: dict[tuple[str, str], int] = {(s.value, p.value): 0 for s in Side for p in IntentPurpose}
        self.filled_units: dict[str, int] = {s.value: 0 for s in Side}
        self.slippage = {s.value: Histogram(SLIPPAGE_BUCKETS_BPS) for s in Side}
        self.slippage_paise = 0  # Σ per-unit slippage × quantity: what slippage cost (negative: fills beat it)
        self.tick_to_order = Histogram(LATENCY_BUCKETS_S)
        self.request_to_order = {o: Histogram(LATENCY_BUCKETS_S)
                                 for o in (ORIGIN_MANUAL, ORIGIN_APPROVED, ORIGIN_FLATTEN)}
        self._approved_ids: OrderedDict[str, None] = OrderedDict()  # semi-live intents the operator approved
        self._awaiting: OrderedDict[str, tuple[int, str]] = OrderedDict()  # intent id → (start ns, origin)
        self._seen_fills: OrderedDict[str, None] = OrderedDict()

    def subscriptions(self) -> Iterable[type]:
        return (Signal, OrderIntent, ApprovalUpdate, OrderRequest, OrderUpdate, Fill)

    async def handle(self, event: Any) -> None:
        self.record(event)

    def record(self, event: object) -> None:
        """The whole handler: synchronous, O(1) per event (bounded dicts)."""
        if isinstance(event, OrderUpdate):
            self._on_update(event)
        elif isinstance(event, Fill):
            self._on_fill(event)
        elif isinstance(event, OrderRequest):
            self._on_request(event)
        elif isinstance(event, Signal):
            self.signals.add(event.strategy_id)
        elif isinstance(event, OrderIntent):
            self.intents.add(event.strategy_id)
        elif isinstance(event, ApprovalUpdate) and event.status is ApprovalStatus.APPROVED:
            _remember(self._approved_ids, event.intent.intent_id, None)

    def _on_request(self, request: OrderRequest) -> None:
        self.approved += 1
        intent = request.intent
        if intent.strategy_id == MANUAL_STRATEGY_ID:
            origin = ORIGIN_MANUAL
        elif intent.strategy_id == FLATTEN_STRATEGY_ID:
            origin = ORIGIN_FLATTEN
        elif intent.intent_id in self._approved_ids:
            del self._approved_ids[intent.intent_id]
            origin = ORIGIN_APPROVED  # re-priced at the approval: its ts_ns is the approval's time
        else:
            origin = ""  # a strategy's own: its ts_ns is the tick's
        _remember(self._awaiting, intent.intent_id, (intent.ts_ns, origin))

    def _on_update(self, update: OrderUpdate) -> None:
        awaited = self._awaiting.pop(update.intent_id, None) if update.order_id or update.status.is_terminal \
            else None
        if update.status is OrderStatus.REJECTED:
            if update.check:
                self.refused.add(update.check)
            elif awaited is not None or update.order_id:
                self.broker_rejects += 1
            else:
                self.not_sent += 1
        if awaited is None or not update.order_id:
            return
        self.acknowledged += 1
        started_ns, origin = awaited
        if self.scale is None or update.ts_ns < started_ns:
            return
        seconds = (update.ts_ns - started_ns) * self.scale
        (self.request_to_order[origin] if origin else self.tick_to_order).observe(seconds)

    def _on_fill(self, fill: Fill) -> None:
        if fill.fill_id in self._seen_fills:
            return  # a repeat (redelivery, a resync after a reconnect): the portfolio ignores it too
        _remember(self._seen_fills, fill.fill_id, None)
        side = fill.side.value
        self.fills[side, fill.purpose.value] += 1
        self.filled_units[side] += fill.quantity
        if fill.expected_price > 0:
            self.slippage[side].observe(fill.slippage_bps)
            self.slippage_paise += fill.slippage_paise * fill.quantity


def _remember(table: OrderedDict[str, Any], key: str, value: Any) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > MAX_TRACKED:
        table.popitem(last=False)
