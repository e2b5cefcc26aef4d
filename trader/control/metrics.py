"""The Prometheus view of the daemon: ``GET /metrics`` of the control API.

``AppCollector`` is a ``prometheus_client`` collector that, at scrape time, reads the metrics actor's counts
(trader/actors/metrics.py) and the App's own figures: the feed and bus counters (ticks in, invalid, stale,
conflated), the execution counters, the loop lag and feed age and each health check (``app.health``, the one judge of
health), the portfolio's P&L, equity and charges, the risk manager's drawdown and margin, the risk level and trading
state (one 0/1 gauge per value), open positions, pending approvals, open orders, actor restarts, dead letters and the
deepest inbox.

Each App has its own ``CollectorRegistry`` (``app_registry``), never the process-wide one, so tests and the Python
facade can run several Apps in one process. Money is rupees (floats) at this edge, in metrics named ``*_inr``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from trader.actors.metrics import REQUEST_TO_ORDER_HELP, TICK_TO_ORDER_HELP, Histogram
from trader.clock import NS_PER_SECOND
from trader.events import RiskLevel, TradingState
from trader.money import to_rupees

if TYPE_CHECKING:
    from trader.app import App

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
