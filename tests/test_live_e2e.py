"""The daemon in live mode against the exchange simulator: real Kite wire protocol both ways, on 127.0.0.1.

Every intent must end as at most one order on the simulator's book — counted by tag — also while a share of the
requests fail with 5xx and a share of placements are accepted and then lose their answer.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from trader.app import App
from trader.config import load_settings
from trader.events import Fill, OrderRequest, OrderUpdate
from trader.market.calendar import IST
from trader.sim import ExchangeSimulator, Faults

from helpers import sim_access_token as access_token

pytestmark = pytest.mark.usefixtures("quiet_logs")

OPEN = int(datetime(2026, 11, 20, 9, 15, tzinfo=IST).timestamp()) * 1_000_000_000  # Fri; expiry Mon 23 Nov


async def run_live_session(tmp_path: Path, faults: Faults, wall_seconds: float) -> tuple[App, ExchangeSimulator,
                                                                                          list[object]]:
    sim = ExchangeSimulator(start_ns=OPEN, speed=120.0, faults=Faults(), wall_ns=lambda: OPEN)
    base = await sim.start()
    try:
        token = await access_token(base)
        settings = load_settings({
            "mode": "live", "live_confirm": "yes", "auto_execution": True, "data_dir": str(tmp_path),
            "kite": {"api_key": "sim_api_key", "access_token": token},
            "kite_api_root": base, "kite_ws_root": sim.ws_url, "kite_timeout_seconds": 2.0,
            # Short bars and no cutoff: a few simulated minutes give several entries and exits.
            "strategy": {"bar_seconds": 10, "confidence_cutoff": 0, "first_entry_time": "09:15:00"},
            "risk": {"no_entry_before": "09:15:00", "max_daily_loss_pct": 0.5},
        })
        app = App(settings)
        events: list[object] = []
        app.bus.tap(lambda e: events.append(e) if type(e) in (OrderRequest, OrderUpdate, Fill) else None)
        loop = asyncio.get_running_loop()
        # Faults start once the daemon is up: start-up itself fails loudly on a broker that keeps failing.
        loop.call_later(1.0, setattr, sim, "faults", faults)
        loop.call_later(wall_seconds, app.request_stop, "test over")
        await app.run(install_signal_handlers=False)
        return app, sim, events
    finally:
        await sim.stop()


def orders_by_tag(sim: ExchangeSimulator) -> Counter[str]:
    return Counter(order.tag for order in sim.orders.values() if order.tag)


async def test_live_mode_trades_through_the_kite_wire_with_one_order_per_intent(tmp_path: Path) -> None:
    _, sim, events = await run_live_session(tmp_path, Faults(), wall_seconds=12)
    requests = [e for e in events if type(e) is OrderRequest]
    fills = [e for e in events if type(e) is Fill]
    assert requests, "the strategy never traded"
    assert fills, "no postback became a fill"
    by_tag = orders_by_tag(sim)
    assert {r.tag for r in requests} == set(by_tag)
    assert set(by_tag.values()) == {1}
    # Fills from postbacks match the simulator's own trades.
    assert sum(f.quantity for f in fills) == sum(int(t["quantity"]) for t in sim.trades)


@pytest.mark.parametrize("lost_answer", ["drop", "delay"])
async def test_one_order_per_intent_under_5xx_and_accepted_then_lost_answers(tmp_path: Path,
                                                                            lost_answer: str) -> None:
    # "drop": the connection dies after the order was accepted; "delay": the answer comes after the client's
    # 2 s timeout. Either way the order exists and the daemon must find it by its tag instead of sending it again.
    faults = Faults(error_rate=0.2, timeout_after_accept=0.3, timeout_mode=lost_answer,  # type: ignore[arg-type]
                    timeout_delay_s=3.0)
    app, sim, events = await run_live_session(tmp_path, faults, wall_seconds=15)
    requests = [e for e in events if type(e) is OrderRequest]
    assert requests, "the strategy never traded"
    by_tag = orders_by_tag(sim)
    assert all(count == 1 for count in by_tag.values()), by_tag
    assert set(by_tag) <= {r.tag for r in requests}
    terminal = Counter(u.intent_id for u in events if type(u) is OrderUpdate and u.status.is_terminal)
    assert all(count == 1 for count in terminal.values())
    # The faults really were in the way: some placements failed or lost their answer and were resolved by tag.
    assert app.execution.retries + app.execution.recovered_by_tag + app.execution.unresolved > 0
