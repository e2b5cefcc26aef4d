"""A broker gone for good (issue #8, fault injection 6): after ``broker_unreachable_halt_seconds`` without a connection
the daemon says so loudly (``broker_unreachable``, error level) and stops entries; it keeps reconnecting, and when the
broker answers again it says so, re-reads its orders and trades (and manages exits) again."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path
from typing import Any

import pytest
from test_kite_ticker import FULL_PACKET, FakeKite, frame, take
from test_live_e2e import OPEN
from websockets.asyncio.server import serve

from trader.adapters.kite.ticker import KiteTicker
from trader.app import App
from trader.clock import SimClock
from trader.config import ConfigError, load_settings
from trader.events import FeedStatus, IntentPurpose, OrderRequest, OrderStatus, OrderUpdate, VenueStatus
from trader.sim import ExchangeSimulator

from helpers import T0, captured_logs, sim_access_token, wait_for

pytestmark = pytest.mark.usefixtures("quiet_logs")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_feed_down_past_the_bound_is_reported_once_and_its_return_too() -> None:
    port = free_port()  # nothing listens here yet: every attempt is refused
    published: list[object] = []
    fake = FakeKite([[frame(FULL_PACKET)]])
    t = KiteTicker("key", "good", [408065], clock=SimClock(T0), root=f"ws://127.0.0.1:{port}",
                   initial_backoff_s=0.01, max_backoff_s=0.05, unreachable_after_s=0.3)
    t.attach(published.append)
    loop = asyncio.get_running_loop()
    with captured_logs() as logs:
        started = loop.time()
        task = asyncio.create_task(take(t, 1))
        await wait_for(lambda: any(isinstance(e, VenueStatus) for e in published))
        reported_after = loop.time() - started
        attempts = t.reconnects
        await wait_for(lambda: t.reconnects >= attempts + 3)  # capped backoff: it keeps trying
        async with serve(fake.handler, "127.0.0.1", port, process_request=fake.check):
            ticks = await asyncio.wait_for(task, timeout=10)
    assert len(ticks) == 1
    assert reported_after >= 0.3
    statuses = [(e.ok, e.problem) for e in published if isinstance(e, VenueStatus)]
    assert statuses == [(False, "broker_unreachable"), (True, "broker_unreachable")]
    down = next(e for e in published if isinstance(e, VenueStatus))
    assert "reconnecting" in down.detail and f"127.0.0.1:{port}" in down.detail
    [loud] = [line for line in logs if line["event"] == "broker_unreachable"]
    assert loud["level"] == "error" and loud["down_for_s"] >= 0.3 and loud["reconnect_attempts"] >= 1
    assert "connect" in loud["last_error"].lower() or "refused" in loud["last_error"].lower()
    assert [line["event"] for line in logs].count("broker_reachable_again") == 1


async def test_short_outages_are_not_reported() -> None:
    fake = FakeKite([[frame(FULL_PACKET), None], [frame(FULL_PACKET), None], [frame(FULL_PACKET)]])
    published: list[object] = []
    async with serve(fake.handler, "127.0.0.1", 0, process_request=fake.check) as server:
        port = server.sockets[0].getsockname()[1] if server.sockets else 0
        t = KiteTicker("key", "good", [408065], clock=SimClock(T0), root=f"ws://127.0.0.1:{port}",
                       initial_backoff_s=0.01, max_backoff_s=0.05, unreachable_after_s=5.0)
        t.attach(published.append)
        await asyncio.wait_for(take(t, 3), timeout=10)
    assert t.reconnects == 2 and not [e for e in published if isinstance(e, VenueStatus)]


def test_the_bound_is_validated(clean_env: pytest.MonkeyPatch) -> None:
    assert load_settings().broker_unreachable_halt_seconds == 60.0
    for bad in (0, -1, float("inf"), float("nan"), 10_000):
        with pytest.raises(ConfigError, match="broker_unreachable_halt_seconds"):
            load_settings({"broker_unreachable_halt_seconds": bad})


async def test_live_daemon_halts_entries_while_the_broker_is_gone_and_trades_again_when_it_returns(
        tmp_path: Path) -> None:
    sim = ExchangeSimulator(start_ns=OPEN, speed=120.0)
    base = await sim.start()
    try:
        token = await sim_access_token(base)
        settings = load_settings({
            "mode": "live", "live_confirm": "yes", "auto_execution": True, "data_dir": str(tmp_path),
            "kite": {"api_key": "sim_api_key", "access_token": token},
            "kite_api_root": base, "kite_ws_root": sim.ws_url, "kite_timeout_seconds": 2.0,
            "broker_unreachable_halt_seconds": 1.0,
            "strategy": {"bar_seconds": 10, "confidence_cutoff": 0, "first_entry_time": "09:15:00"},
            "risk": {"no_entry_before": "09:15:00", "max_daily_loss_pct": 0.5},
        })
        app = App(settings)
        events: list[object] = []
        app.bus.tap(lambda e: events.append(e) if type(e) in (OrderRequest, OrderUpdate, VenueStatus,
                                                               FeedStatus) else None)
        logs: list[dict[str, Any]]
        with captured_logs() as logs:
            run = asyncio.create_task(app.run(install_signal_handlers=False))
            try:
                async with asyncio.timeout(180):
                    await wait_for(lambda: any(type(e) is OrderRequest for e in events), within_s=60)
                    first = next(e for e in events if type(e) is OrderRequest).intent
                    await sim.set_offline(True)
                    await wait_for(lambda: any(type(e) is VenueStatus for e in events), within_s=30)
                    # Entries are refused while the broker is gone, with the reason.
                    app.bus.publish(dataclasses.replace(first, ts_ns=app.clock.now_ns(), intent_id="TESTENTRY1",
                                                        strategy_id="test", purpose=IntentPurpose.ENTRY))
                    await wait_for(lambda: any(type(e) is OrderUpdate and e.intent_id == "TESTENTRY1"
                                               for e in events), within_s=30)
                    back_at = len(events)
                    await sim.set_offline(False)
                    await wait_for(lambda: any(type(e) is VenueStatus and e.ok for e in events[back_at:]),
                                   within_s=60)
                    # Orders flow again: the next request the daemon approves reaches the broker's book.
                    await wait_for(lambda: any(type(e) is OrderRequest and e.tag in {o.tag for o in
                                                                                    sim.orders.values()}
                                               for e in events[back_at:]), within_s=60)
            finally:
                app.request_stop("test over")
                await asyncio.wait_for(run, timeout=30)
    finally:
        await sim.stop()
    statuses = [(e.ok, e.problem) for e in events if type(e) is VenueStatus]
    assert statuses == [(False, "broker_unreachable"), (True, "broker_unreachable")]
    [refused] = [e for e in events if type(e) is OrderUpdate and e.intent_id == "TESTENTRY1"]
    assert refused.status is OrderStatus.REJECTED and "broker_unreachable" in refused.reason
    names = [line["event"] for line in logs]
    assert names.count("broker_unreachable") == 1 and names.count("broker_reachable_again") == 1
    loud = next(line for line in logs if line["event"] == "broker_unreachable")
    assert loud["level"] == "error" and loud["bound_s"] == 1.0
    # Back: the order channel's reconnection made execution re-read the broker's orders.
    assert names.index("broker_reachable_again") < len(names) - 1
    connected_again = [e for e in events[back_at:] if type(e) is FeedStatus and e.status == "connected"]
    assert connected_again
