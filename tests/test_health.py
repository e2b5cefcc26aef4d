"""trader/health.py: ``evaluate``'s checks at their boundaries (a value at the limit passes, just above fails), the
report's views (ok, failing, only, summary, as_dict), and ``HealthProbe`` reading a (fake) App."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any, cast

import pytest

from trader.app import App
from trader.clock import SimClock
from trader.config import load_settings
from trader.health import WATCHDOG_CHECKS, HealthInputs, HealthProbe, HealthReport, evaluate, watchdog_evaluate
from trader.loop_monitor import LoopMonitor
from trader.service_settings import HealthSettings

from helpers import T0

NS = 1_000_000_000
LIMITS = HealthSettings(max_loop_lag_seconds=2.0, max_loop_stall_seconds=10.0, max_feed_age_seconds=30.0,
                        feed_grace_seconds=120.0)
HEALTHY = HealthInputs(ready=True, stopping=False, loop_lag_s=0.003, loop_silent_s=0.2, feed_age_s=1.5,
                       since_ready_s=600.0, market_open=True)
JUST_OVER = 1e-9


def check(inputs: HealthInputs, name: str) -> tuple[bool, str]:
    [found] = [c for c in evaluate(inputs, LIMITS).checks if c.name == name]
    return found.ok, found.detail


def with_(**changes: Any) -> HealthInputs:
    return dataclasses.replace(HEALTHY, **changes)


def test_all_checks_pass_when_healthy() -> None:
    report = evaluate(HEALTHY, LIMITS)
    assert [c.name for c in report.checks] == ["gate", "loop", "feed", "broker"]
    assert report.ok and report.failing == () and report.summary() == "ok"


def test_gate() -> None:
    assert check(with_(ready=False), "gate") == (False, "the start-up reconciliation has not passed yet")
    assert check(with_(stopping=True), "gate") == (False, "the daemon is stopping")
    assert check(with_(ready=False, stopping=True), "gate")[1] == "the daemon is stopping"
    assert check(HEALTHY, "gate") == (True, "reconciliation passed")


@pytest.mark.parametrize(("lag", "silent", "ok", "says"), [
    (2.0, 0.2, True, "lag 2000 ms"),  # at the lag limit
    (2.0 + JUST_OVER, 0.2, False, "woke 2000 ms late (limit 2000 ms)"),
    (0.0, 10.0, True, "lag 0 ms"),  # at the stall limit
    (0.0, 10.0 + 0.05, False, "has not woken for 10.1 s (limit 10 s)"),
    (5.0, 11.0, False, "has not woken for 11.0 s"),  # a wedged loop is told as a stall, not as lag
])
def test_loop(lag: float, silent: float, ok: bool, says: str) -> None:
    passed, detail = check(with_(loop_lag_s=lag, loop_silent_s=silent), "loop")
    assert passed is ok and says in detail


@pytest.mark.parametrize(("open_", "age", "since_ready", "ok", "says"), [
    (True, 30.0, 600.0, True, "last tick 30.0 s ago"),  # at the age limit
    (True, 30.0 + 1e-6, 600.0, False, "last tick 30.0 s ago during market hours (limit 30 s)"),
    (True, None, 120.0, True, "waiting for the first tick (120 s of 120 s)"),  # at the grace limit
    (True, None, 120.0 + 1e-6, False, "no tick in 120 s of market hours (limit 120 s)"),
    (True, None, 0.0, True, "waiting for the first tick"),
    (False, 5_000.0, 600.0, True, "market closed (last tick 5000.0 s ago)"),  # a closed market is silent
    (False, None, 99_999.0, True, "market closed (no tick yet)"),
])
def test_feed(open_: bool, age: float | None, since_ready: float, ok: bool, says: str) -> None:
    passed, detail = check(with_(market_open=open_, feed_age_s=age, since_ready_s=since_ready), "feed")
    assert passed is ok and says in detail


def test_broker() -> None:
    assert check(with_(venue_problems=("journal_unwritable",)), "broker") == (True, "reachable")  # not the broker's
    assert check(with_(venue_problems=("token_expired",)), "broker") == (False, "token_expired")
    assert check(with_(venue_problems=("broker_unreachable", "journal_unwritable", "token_expired")), "broker") == (
        False, "broker_unreachable, token_expired")


def test_report_views() -> None:
    report = evaluate(with_(venue_problems=("token_expired",), feed_age_s=31.0), LIMITS)
    assert not report.ok and [c.name for c in report.failing] == ["feed", "broker"]
    assert report.summary() == "feed: last tick 31.0 s ago during market hours (limit 30 s); broker: token_expired"
    document = report.as_dict()
    assert document["ok"] is False and document["failing"] == ["feed", "broker"]
    assert document["checks"]["gate"] == {"ok": True, "detail": "reconciliation passed"}
    watchdog = report.only(WATCHDOG_CHECKS)
    assert [c.name for c in watchdog.checks] == ["loop", "feed"] and not watchdog.ok
    # The watchdog ignores the broker: a restart does not bring back a broker or renew a token.
    assert evaluate(with_(venue_problems=("broker_unreachable",), ready=False), LIMITS).only(WATCHDOG_CHECKS).ok
    assert HealthReport(()).ok


@pytest.mark.parametrize(("changes", "withheld"), [
    ({}, True),  # connected (or a feed without a status) and silent: a new process opens a new connection
    ({"feed_connection": "connected"}, True),
    ({"feed_connection": "silent"}, True),
    ({"feed_connection": "reconnecting"}, False),  # a network outage: the feed reconnects by itself
    ({"venue_problems": ("token_expired",)}, False),  # Kite refuses the token: only `trader login` cures it
    ({"venue_problems": ("broker_unreachable",)}, False),
    ({"venue_problems": ("journal_unwritable",)}, True),
])
def test_the_watchdog_spares_a_stale_feed_a_restart_cannot_cure(changes: dict[str, Any], withheld: bool) -> None:
    stale = with_(feed_age_s=300.0, **changes)
    assert not evaluate(stale, LIMITS).only(["feed"]).ok  # /healthz still says the feed is stale
    view = watchdog_evaluate(stale, LIMITS)
    assert [c.name for c in view.checks] == list(WATCHDOG_CHECKS)
    assert view.ok is not withheld, view.summary()
    if not withheld:
        assert "not a restart's to cure" in view.checks[1].detail
    assert not watchdog_evaluate(dataclasses.replace(stale, loop_silent_s=11.0), LIMITS).ok  # a wedged loop: never


def test_probe_reads_the_app() -> None:
    settings = load_settings({"mode": "paper"})
    wall = 1_800_000_000 * NS
    app: Any = SimpleNamespace(
        settings=SimpleNamespace(health=LIMITS), feeds=[SimpleNamespace(last_tick_wall_ns=0)],
        loop_monitor=LoopMonitor(), ready_wall_ns=0, stopping=False, calendar=settings.market_calendar(),
        feed_status="",
        clock=SimClock(T0), risk=SimpleNamespace(venue_problems={"broker_unreachable": "timed out"}))
    probe = HealthProbe(cast(App, app))
    inputs = probe.inputs(wall)
    assert (inputs.ready, inputs.feed_age_s, inputs.since_ready_s, inputs.market_open) == (False, None, 0.0, True)
    assert inputs.venue_problems == ("broker_unreachable",)
    app.ready_wall_ns = wall - 200 * NS
    app.feeds = [SimpleNamespace(last_tick_wall_ns=wall - 45 * NS), SimpleNamespace(last_tick_wall_ns=wall - 3 * NS)]
    inputs = probe.inputs(wall)
    assert (inputs.ready, inputs.feed_age_s, inputs.since_ready_s) == (True, 3.0, 200.0)  # the freshest feed counts
    assert [c.name for c in probe.report(wall).failing] == ["broker"]
    assert probe.watchdog_report(wall).ok
    app.feeds = [SimpleNamespace(last_tick_wall_ns=wall - 45 * NS)]
    app.risk.venue_problems = {}
    assert not probe.watchdog_report(wall).ok  # stale in market hours
    app.feed_status = "reconnecting"
    assert probe.inputs(wall).feed_connection == "reconnecting" and probe.watchdog_report(wall).ok
    app.feeds = [SimpleNamespace(last_tick_wall_ns=wall - 3 * NS)]
    app.clock = SimClock(T0 + 10 * 3600 * NS)  # 20:05 IST
    assert not probe.inputs(wall).market_open
