"""Is the daemon healthy? One answer for ``GET /healthz``, the systemd watchdog, the metrics and the alerts.

``evaluate`` is the pure core: it judges a ``HealthInputs`` snapshot against ``HealthSettings`` and returns a
``HealthReport`` of named checks. ``HealthProbe`` reads the snapshot off a running ``App``.

The checks:
- ``gate``: the start-up reconciliation gate has passed (nothing trades before it) and the daemon is not stopping;
- ``loop``: the event loop's latest wake-up was at most ``max_loop_lag_seconds`` late, and the loop monitor woke
  within ``max_loop_stall_seconds`` (a wedged loop stops waking: a probe in another thread sees that);
- ``feed``: during market hours, the last valid tick is at most ``max_feed_age_seconds`` old (before the first
  tick: ``feed_grace_seconds`` after the gate); outside market hours a silent feed is normal;
- ``broker``: the broker is reachable and the access token is accepted.

The watchdog judges only ``loop`` and ``feed`` (``WATCHDOG_CHECKS``): a restart cures a wedged loop or a dead feed
connection, but not an unreachable broker or an expired token, which only stop entries. Nor does it cure a feed that
is stale *because* of them, or because its connection is down and the feed is reconnecting by itself (a network
outage): ``watchdog_evaluate`` does not hold such a stale feed against the process (``/healthz`` still fails it). A
restart there would meet the same network or token, fail its start-up, and after systemd's start limit leave the
service dead, with open positions unmanaged, once the network is back.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trader.clock import NS_PER_SECOND
from trader.service_settings import HealthSettings

if TYPE_CHECKING:
    from trader.app import App

BROKER_PROBLEMS = ("broker_unreachable", "token_expired")
WATCHDOG_CHECKS = ("loop", "feed")
FEED_RECONNECTING = "reconnecting"  # the live feed's FeedStatus while its connection is down and it retries


@dataclass(frozen=True, slots=True)
class HealthInputs:
    ready: bool  # the reconciliation gate passed
    stopping: bool
    loop_lag_s: float  # the loop monitor's latest sample
    loop_silent_s: float  # seconds since the loop monitor last woke
    feed_age_s: float | None  # wall seconds since the last valid tick; None: no tick yet
    since_ready_s: float  # wall seconds since the gate passed (0 before)
    market_open: bool  # event time is inside the F&O session
    venue_problems: tuple[str, ...] = ()
    feed_connection: str = ""  # the live feed's last FeedStatus (connected, reconnecting, silent); "" without one


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class HealthReport:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failing(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.ok)

    def only(self, names: Iterable[str]) -> HealthReport:
        wanted = set(names)
        return HealthReport(tuple(check for check in self.checks if check.name in wanted))

    def summary(self) -> str:
        """One line: ``ok`` or the failing checks' details joined (systemd STATUS=, alerts)."""
        failing = self.failing
        return "ok" if not failing else "; ".join(f"{c.name}: {c.detail}" for c in failing)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in self.checks},
                "failing": [c.name for c in self.failing]}


def evaluate(inputs: HealthInputs, settings: HealthSettings) -> HealthReport:
    return HealthReport((_gate(inputs), _loop(inputs, settings), _feed(inputs, settings), _broker(inputs)))


def watchdog_evaluate(inputs: HealthInputs, settings: HealthSettings) -> HealthReport:
    """The watchdog's view: ``loop`` and ``feed``, except that a stale feed whose cause a restart cannot cure (the
    broker unreachable or the token refused, or the feed's connection down and reconnecting by itself) passes, saying
    why. A feed that is connected and yet silent still fails: a new process opens a new connection."""
    report = evaluate(inputs, settings).only(WATCHDOG_CHECKS)
    return HealthReport(tuple(_excused(check, inputs) for check in report.checks))


def _excused(check: Check, inputs: HealthInputs) -> Check:
    if check.name != "feed" or check.ok:
        return check
    broker = [p for p in inputs.venue_problems if p in BROKER_PROBLEMS]
    if broker:
        why = ", ".join(broker)
    elif inputs.feed_connection == FEED_RECONNECTING:
        why = "its connection is down and it is reconnecting"
    else:
        return check
    return Check("feed", True, f"{check.detail}; not a restart's to cure ({why})")


def _gate(inputs: HealthInputs) -> Check:
    if inputs.stopping:
        return Check("gate", False, "the daemon is stopping")
    if not inputs.ready:
        return Check("gate", False, "the start-up reconciliation has not passed yet")
    return Check("gate", True, "reconciliation passed")


def _loop(inputs: HealthInputs, settings: HealthSettings) -> Check:
    if inputs.loop_silent_s > settings.max_loop_stall_seconds:
        return Check("loop", False, f"the event loop has not woken for {inputs.loop_silent_s:.1f} s "
                                    f"(limit {settings.max_loop_stall_seconds:g} s)")
    if inputs.loop_lag_s > settings.max_loop_lag_seconds:
        return Check("loop", False, f"the event loop woke {inputs.loop_lag_s * 1000:.0f} ms late "
                                    f"(limit {settings.max_loop_lag_seconds * 1000:.0f} ms)")
    return Check("loop", True, f"lag {inputs.loop_lag_s * 1000:.0f} ms")


def _feed(inputs: HealthInputs, settings: HealthSettings) -> Check:
    age = inputs.feed_age_s
    shown = "no tick yet" if age is None else f"last tick {age:.1f} s ago"
    if not inputs.market_open:
        return Check("feed", True, f"market closed ({shown})")
    if age is None:
        if inputs.since_ready_s <= settings.feed_grace_seconds:
            return Check("feed", True, f"waiting for the first tick ({inputs.since_ready_s:.0f} s of "
                                       f"{settings.feed_grace_seconds:g} s)")
        return Check("feed", False, f"no tick in {inputs.since_ready_s:.0f} s of market hours "
                                    f"(limit {settings.feed_grace_seconds:g} s)")
    if age > settings.max_feed_age_seconds:
        return Check("feed", False, f"{shown} during market hours (limit {settings.max_feed_age_seconds:g} s)")
    return Check("feed", True, shown)


def _broker(inputs: HealthInputs) -> Check:
    problems = [p for p in inputs.venue_problems if p in BROKER_PROBLEMS]
    if problems:
        return Check("broker", False, ", ".join(problems))
    return Check("broker", True, "reachable")


class HealthProbe:
    """Reads a ``HealthInputs`` off the running App (on its loop, or from another thread: plain field reads)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.settings = app.settings.health

    def feed_age_s(self, now_wall_ns: int | None = None) -> float | None:
        last = max((feed.last_tick_wall_ns for feed in self.app.feeds), default=0)
        if not last:
            return None
        now = time.time_ns() if now_wall_ns is None else now_wall_ns
        return max(now - last, 0) / NS_PER_SECOND

    def inputs(self, now_wall_ns: int | None = None) -> HealthInputs:
        app = self.app
        now = time.time_ns() if now_wall_ns is None else now_wall_ns
        monitor = app.loop_monitor
        ready_ns = app.ready_wall_ns
        return HealthInputs(
            ready=ready_ns > 0,
            stopping=app.stopping,
            loop_lag_s=monitor.lag_ms / 1000,
            loop_silent_s=max(time.monotonic() - monitor.last_wake, 0.0),
            feed_age_s=self.feed_age_s(now),
            since_ready_s=max(now - ready_ns, 0) / NS_PER_SECOND if ready_ns else 0.0,
            market_open=app.calendar.is_open(app.clock.now_ns()),
            venue_problems=tuple(app.risk.venue_problems),
            feed_connection=app.feed_status,
        )

    def report(self, now_wall_ns: int | None = None) -> HealthReport:
        return evaluate(self.inputs(now_wall_ns), self.settings)

    def watchdog_report(self, now_wall_ns: int | None = None) -> HealthReport:
        return watchdog_evaluate(self.inputs(now_wall_ns), self.settings)
