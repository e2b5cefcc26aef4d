"""Metrics actor and the Prometheus view of the daemon (``GET /metrics`` of the control API).

Two halves, both off the trading path:

* ``MetricsActor`` subscribes to the few events a trade makes (signals, intents, approvals, order requests, order
  updates, fills; never ticks, so it costs nothing per tick) and keeps plain counters and two histograms in memory:
  signals by strategy, intents by strategy, intents approved and refused by the risk check that refused them, broker
  rejects, fills by side and purpose, slippage in basis points and the tick → order latency. ``handle`` is
  synchronous bookkeeping only (dict increments, a bisect), bounded in memory.
* ``AppCollector`` is a ``prometheus_client`` collector that, at scrape time, reads the actor's counts and the App's
  own figures: the feed and bus counters (ticks in, invalid, stale, conflated), the execution counters, the loop lag
  and feed age and each health check (``app.health``, the one judge of health), the portfolio's P&L, equity and
  charges, the risk manager's drawdown and margin, the risk level and trading state (one 0/1 gauge per value), open
  positions, pending approvals, open orders, actor restarts, dead letters and the deepest inbox.

Each App has its own ``CollectorRegistry`` (``app_registry``), never the process-wide one, so tests and the Python
facade can run several Apps in one process. Money is rupees (floats) at this edge, in metrics named ``*_inr``;
every label takes values from a bounded set (strategy ids, risk check names, sides, purposes, health check names,
enum values), never an order id or a tradingsymbol.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from trader.actors.base import Actor
from trader.actors.risk import FLATTEN_STRATEGY_ID
from trader.bus import EventBus
from trader.clock import Clock, SimClock
from trader.events import (
    ApprovalStatus,
    ApprovalUpdate,
    Fill,
    IntentPurpose,
    OrderIntent,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    RiskLevel,
    Side,
    Signal,
    TradingState,
)
from trader.money import to_rupees
from trader.strategies.adopted import MANUAL_STRATEGY_ID

if TYPE_CHECKING:
    from trader.app import App

NS_PER_SECOND = 1_000_000_000
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


# -- the scrape ---------------------------------------------------------------------------------------------------

def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _labelled(family: CounterMetricFamily | GaugeMetricFamily, values: Iterable[tuple[Sequence[str], float]]
              ) -> CounterMetricFamily | GaugeMetricFamily:
    for labels, value in values:
        family.add_metric(list(labels), value)
    return family


def _histogram(name: str, documentation: str, labels: Sequence[str],
               histograms: Iterable[tuple[Sequence[str], Histogram]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=list(labels))
    for values, histogram in histograms:
        family.add_metric(list(values), histogram.cumulative(), histogram.total)
    return family


class AppCollector(Collector):
    """Reads the App's figures at scrape time (on the event loop, from the control API's handler)."""

    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        yield from self._flow()
        yield from self._trading()
        yield from self._money()
        yield from self._health()
        yield from self._internals()

    def _flow(self) -> Iterator[Metric]:
        app = self.app
        feeds = app.feeds
        yield _counter("trader_ticks", "Valid ticks the feeds passed on to the bus.", sum(f.ticks_in for f in feeds))
        yield _counter("trader_ticks_invalid", "Ticks dropped as impossible (no timestamp, out of order, "
                       "non-positive price, crossed book, unknown instrument).", sum(f.invalid for f in feeds))
        yield _counter("trader_ticks_stale", "Ticks dropped because their exchange timestamp was too far behind the "
                       "exchange clock.", sum(f.stale for f in feeds))
        yield _counter("trader_ticks_conflated", "Ticks an actor that fell behind skipped because a newer tick of "
                       "the same instrument was already queued (bus conflation).", app.bus.conflated)
        execution = app.execution
        yield _counter("trader_orders_placed", "Orders the broker accepted (place call answered with an order id, "
                       "or found by its tag after an unclear answer).", execution.orders_placed)
        yield _counter("trader_order_place_failures", "Approved orders that were never placed: the broker refused "
                       "the placement, or the retries ran out.", execution.orders_rejected)
        yield _counter("trader_order_retries", "Order placements retried after a rate limit or an unclear answer.",
                       execution.retries)
        yield _gauge("trader_open_orders", "Orders working at the broker.", execution.open_orders)

    def _trading(self) -> Iterator[Metric]:
        actor = self.app.metrics
        yield _labelled(CounterMetricFamily("trader_signals", "Signals the strategies emitted.", labels=["strategy"]),
                        (([k], v) for k, v in sorted(actor.signals.counts.items())))
        yield _labelled(CounterMetricFamily("trader_intents", "Order intents sent to the risk gate, by strategy "
                                            "(manual = the operator's orders, risk-flatten = the gate's exits).",
                                            labels=["strategy"]),
                        (([k], v) for k, v in sorted(actor.intents.counts.items())))
        yield _counter("trader_intents_approved", "Intents the risk gate approved and sent on as orders.",
                       actor.approved)
        yield _labelled(CounterMetricFamily("trader_intents_refused", "Intents the risk gate refused, by the check "
                                            "that refused them.", labels=["check"]),
                        (([k], v) for k, v in sorted(actor.refused.counts.items())))
        yield _counter("trader_intents_not_sent", "Intents that ended before the risk gate: a semi-live entry "
                       "rejected or expired, or entries stopped because strategy state could not be saved.",
                       actor.not_sent)
        yield _counter("trader_broker_rejects", "Approved orders that ended REJECTED: refused by the broker or the "
                       "exchange, or never placed.", actor.broker_rejects)
        yield _labelled(CounterMetricFamily("trader_fills", "Fills (executions) booked, by side and purpose.",
                                            labels=["side", "purpose"]),
                        (([side, purpose], v) for (side, purpose), v in sorted(actor.fills.items())))
        yield _labelled(CounterMetricFamily("trader_filled_units", "Units (contracts × lot size) filled, by side.",
                                            labels=["side"]),
                        (([side], v) for side, v in sorted(actor.filled_units.items())))
        yield _histogram("trader_slippage_bps", "Slippage of each fill against the price its intent expected, in "
                         "basis points; positive = worse than expected (paid more on a buy, got less on a sell).",
                         ["side"], (([side], h) for side, h in sorted(actor.slippage.items())))
        # A histogram with negative buckets has no _sum (OpenMetrics), so the mean and the cost come separately.
        yield _labelled(GaugeMetricFamily("trader_slippage_bps_mean", "Mean slippage per fill this run, basis "
                                          "points, by side (positive = worse than expected).", labels=["side"]),
                        (([side], h.total / h.count) for side, h in sorted(actor.slippage.items()) if h.count))
        yield _gauge("trader_slippage_cost_inr", "What slippage cost this run: Σ (fill price − expected) × units, "
                     "signed by side, rupees (negative = fills were better than expected).",
                     to_rupees(actor.slippage_paise))
        yield _histogram("trader_tick_to_order_seconds", TICK_TO_ORDER_HELP, [], [([], actor.tick_to_order)])
        yield _histogram("trader_request_to_order_seconds", REQUEST_TO_ORDER_HELP, ["origin"],
                         (([o], h) for o, h in sorted(actor.request_to_order.items())))

    def _money(self) -> Iterator[Metric]:
        app = self.app
        portfolio = app.portfolio
        manager = app.risk.manager
        risk = manager.metrics(app.clock.now_ns())
        yield _gauge("trader_day_pnl_inr", "P&L since the IST session day began (realized + unrealized − charges), "
                     "rupees.", to_rupees(portfolio.day_pnl))
        yield _gauge("trader_realized_pnl_inr", "Realized P&L of this account's book, rupees (before charges).",
                     to_rupees(portfolio.realized))
        yield _gauge("trader_unrealized_pnl_inr", "Unrealized P&L of open positions at the last marks, rupees.",
                     to_rupees(portfolio.unrealized))
        yield _gauge("trader_charges_inr", "Brokerage, taxes and fees paid, rupees.", to_rupees(portfolio.charges))
        yield _gauge("trader_equity_inr", "Equity: initial capital + realized − charges + unrealized, rupees.",
                     to_rupees(portfolio.equity))
        yield _gauge("trader_drawdown_inr", "Drawdown from the peak equity as the risk gate sees it, rupees.",
                     to_rupees(risk.drawdown))
        yield _gauge("trader_drawdown_ratio", "Drawdown as a fraction of the peak equity.", risk.drawdown_pct)
        yield _gauge("trader_max_drawdown_inr", "The worst drawdown of this run (portfolio), rupees.",
                     to_rupees(portfolio.max_drawdown))
        yield _gauge("trader_margin_utilisation_ratio", "Margin used ÷ (used + available), 0..1 (the broker's "
                     "figures when known, else the model's).", risk.margin_utilisation)
        yield _gauge("trader_margin_used_inr", "Margin used, rupees.", to_rupees(risk.margin_used))
        yield _gauge("trader_exposure_inr", "Σ |quantity| × mark of open positions plus pending approved entries, "
                     "rupees.", to_rupees(risk.exposure))
        limits = GaugeMetricFamily("trader_risk_limit_used_ratio", "Share of each loss limit used (1 = breached).",
                                   labels=["limit"])
        for name, share in sorted(risk.limits_used.items()):
            if math.isfinite(share):
                limits.add_metric([name], share)
        yield limits
        level = app.risk.level
        yield _labelled(GaugeMetricFamily("trader_risk_level", "1 for the current risk level, 0 for the others.",
                                          labels=["level"]),
                        (([v.value], float(v is level)) for v in RiskLevel))
        state = app.risk.state
        yield _labelled(GaugeMetricFamily("trader_trading_state", "1 for the current trading state, 0 for the "
                                          "others.", labels=["state"]),
                        (([v.value], float(v is state)) for v in TradingState))
        yield _gauge("trader_open_positions", "Open positions in the portfolio.",
                     len(portfolio.book.open_positions()))
        yield _gauge("trader_pending_approvals", "Semi-live entries waiting for the operator.",
                     len(app.ledger.pending))

    def _health(self) -> Iterator[Metric]:
        app = self.app
        monitor = app.loop_monitor
        yield _gauge("trader_loop_lag_seconds", "How late the event loop's last periodic wake-up was.",
                     monitor.lag_ms / 1000)
        yield _gauge("trader_loop_lag_max_seconds", "The worst event-loop lag in the last minute.",
                     monitor.max_lag_ms / 1000)
        age = app.health.feed_age_s()
        if age is not None:  # absent before the first tick
            yield _gauge("trader_feed_age_seconds", "Wall seconds since the feed last passed on a valid tick.", age)
        report = app.health.report()
        yield _gauge("trader_healthy", "1 when every health check passes (as GET /healthz answers).",
                     float(report.ok))
        yield _labelled(GaugeMetricFamily("trader_health_check_ok", "1 when the health check passes, 0 when it "
                                          "fails (gate, loop, feed, broker; see docs/operations.md).",
                                          labels=["check"]),
                        (([c.name], float(c.ok)) for c in report.checks))
        yield _gauge("trader_ready", "1 once the start-up reconciliation gate has passed.",
                     float(app.ready_wall_ns > 0))

    def _internals(self) -> Iterator[Metric]:
        app = self.app
        counters = app.counters()
        yield _counter("trader_actor_restarts", "Actor crashes the supervisor restarted.", counters["actor_restarts"])
        yield _counter("trader_dead_letters", "Events given up after failing their handler twice.",
                       counters["dead_letters"])
        yield _gauge("trader_bus_max_queue", "Events waiting in the deepest actor inbox.", counters["max_queue"])
        yield _gauge("trader_start_time_seconds", "Wall time the daemon started, Unix seconds.",
                     app.wall_started_ns / NS_PER_SECOND)


def app_registry(app: App) -> CollectorRegistry:
    """The App's own registry: its collector only (no process or platform collectors, no global state)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AppCollector(app))
    return registry
