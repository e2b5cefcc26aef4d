"""The daemon in live mode against the exchange simulator: a real venue's wire protocol both ways, on 127.0.0.1 —
Kite's, and Fyers' (REST, the HSM data socket, the order socket) on the same exchange core.

Every order request must end either as exactly one order on the simulator's book under its tag, or, never sent, with
exactly one terminal update (REJECTED or CANCELLED, with a reason) in the daemon; also at shutdown, and while a share
of the requests fail with 5xx and a share of placements are accepted and then lose their answer.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pytest

from trader.adapters.paper import PaperBroker
from trader.app import App
from trader.config import load_settings
from trader.events import Fill, OrderRequest, OrderStatus, OrderUpdate, Tick
from trader.market.calendar import IST
from trader.sim import ExchangeSimulator, Faults
from trader.sim.fyers import FyersFace

from helpers import fyers_sim_settings
from helpers import sim_access_token as access_token

pytestmark = pytest.mark.usefixtures("quiet_logs")

OPEN = int(datetime(2026, 11, 20, 9, 15, tzinfo=IST).timestamp()) * 1_000_000_000  # Fri; expiry Mon 23 Nov


async def run_live_session(tmp_path: Path, faults: Faults, wall_seconds: float, venue: str = "kite",
                           ) -> tuple[App, ExchangeSimulator, list[object]]:
    # The simulator counts Kite's 10 order requests per calendar second on its own wall clock, which must therefore
    # run (the default): frozen, the whole session is one second and every order request after the tenth gets a 429.
    sim = ExchangeSimulator(start_ns=OPEN, speed=120.0, faults=Faults())
    base = await sim.start()
    face = FyersFace(sim) if venue == "fyers" else None  # the same core, Fyers' wire
    try:
        if face is not None:
            await face.start()
            wire = await fyers_sim_settings(face)
        else:
            wire = {"kite": {"api_key": "sim_api_key", "access_token": await access_token(base)},
                    "kite_api_root": base, "kite_ws_root": sim.ws_url, "kite_timeout_seconds": 2.0}
        settings = load_settings({
            "mode": "live", "live_confirm": "yes", "auto_execution": True, "data_dir": str(tmp_path), **wire,
            # Short bars and no cutoff: a few simulated minutes give several entries and exits.
            "strategy": {"bar_seconds": 10, "confidence_cutoff": 0, "first_entry_time": "09:15:00"},
            "risk": {"no_entry_before": "09:15:00", "max_daily_loss_pct": 0.5},
        })
        app = App(settings)
        events: list[object] = []
        first_tick: list[Tick] = []
        loop = asyncio.get_running_loop()

        def record(event: object) -> None:
            if type(event) in (OrderRequest, OrderUpdate, Fill):
                events.append(event)
            elif type(event) is Tick and not first_tick:
                # The daemon is up (instruments loaded, actors running, ticks flowing): start-up itself fails
                # loudly on a broker that keeps failing, so the faults begin now, and the session runs from here.
                first_tick.append(event)
                sim.faults = faults
                loop.call_later(wall_seconds, app.request_stop, "test over")

        app.bus.tap(record)
        async with asyncio.timeout(wall_seconds + 60):  # a daemon that never starts fails the test, not the run
            await app.run(install_signal_handlers=False)
        return app, sim, events
    finally:
        if face is not None:
            await face.stop()
        await sim.stop()


def orders_by_tag(sim: ExchangeSimulator) -> Counter[str]:
    return Counter(order.tag for order in sim.orders.values() if order.tag)


def never_sent(requests: Sequence[OrderRequest], events: Sequence[object], sim: ExchangeSimulator) -> dict[str, str]:
    """Assert the invariant for every request; return the tags of those that ended unsent, with their reasons.

    Each request ends either as exactly one order under its tag on the simulator's book (and no "never sent"
    update), or with no order there and exactly one terminal update without an order id, REJECTED or CANCELLED,
    with a reason. No order on the book lacks a request, and no intent gets two terminal updates.
    """
    by_tag = orders_by_tag(sim)
    terminal: defaultdict[str, list[OrderUpdate]] = defaultdict(list)
    for event in events:
        if type(event) is OrderUpdate and event.status.is_terminal:
            terminal[event.intent_id].append(event)
    problems: list[str] = []
    unsent: dict[str, str] = {}
    for request in requests:
        tag, ends = request.tag, terminal[request.intent.intent_id]
        orders = by_tag.get(tag, 0)
        if len(ends) > 1:
            problems.append(f"{tag}: {len(ends)} terminal updates {ends}")
        if orders == 1:
            if any(not end.order_id for end in ends):
                problems.append(f"{tag}: on the book, yet reported as never placed: {ends}")
        elif orders > 1:
            problems.append(f"{tag}: {orders} orders on the book")
        elif len(ends) != 1 or ends[0].order_id or not ends[0].reason or \
                ends[0].status not in (OrderStatus.REJECTED, OrderStatus.CANCELLED):
            problems.append(f"{tag}: no order on the book and no single terminal reason for it: {ends}")
        else:
            unsent[tag] = ends[0].reason
    if orphans := set(by_tag) - {r.tag for r in requests}:
        problems.append(f"orders on the book with no request: {sorted(orphans)}")
    assert not problems, "\n".join(problems)
    return unsent


@pytest.mark.parametrize("venue", ["kite", "fyers"])
async def test_live_mode_trades_through_the_venue_wire_with_one_order_per_intent(tmp_path: Path, venue: str) -> None:
    app, sim, events = await run_live_session(tmp_path, Faults(), wall_seconds=12, venue=venue)
    assert app.venue is not None and app.venue.name == venue
    requests = [e for e in events if type(e) is OrderRequest]
    fills = [e for e in events if type(e) is Fill]
    assert requests, "the strategy never traded"
    assert fills, "no order update (Kite postback, Fyers order socket) became a fill"
    # No fault was injected, and the daemon keeps within the order rate: every request reaches the book.
    assert never_sent(requests, events, sim) == {}
    # Fills from postbacks match the simulator's own trades.
    assert sum(f.quantity for f in fills) == sum(int(t["quantity"]) for t in sim.trades)


@pytest.mark.parametrize(("venue", "lost_answer"), [("kite", "drop"), ("kite", "delay"), ("fyers", "drop"),
                                                    ("fyers", "delay")])
async def test_one_order_per_intent_under_5xx_and_accepted_then_lost_answers(tmp_path: Path, venue: str,
                                                                            lost_answer: str) -> None:
    # "drop": the connection dies after the order was accepted; "delay": the answer comes after the client's
    # 2 s timeout. Either way the order exists and the daemon must find it by its tag instead of sending it again.
    faults = Faults(error_rate=0.2, timeout_after_accept=0.3, timeout_mode=lost_answer,  # type: ignore[arg-type]
                    timeout_delay_s=3.0)
    app, sim, events = await run_live_session(tmp_path, faults, wall_seconds=15, venue=venue)
    requests = [e for e in events if type(e) is OrderRequest]
    assert requests, "the strategy never traded"
    never_sent(requests, events, sim)
    terminal = Counter(u.intent_id for u in events if type(u) is OrderUpdate and u.status.is_terminal)
    assert all(count == 1 for count in terminal.values()), terminal
    # The faults really were in the way: some placements failed or lost their answer and were resolved by tag.
    assert app.execution.retries + app.execution.recovered_by_tag + app.execution.unresolved > 0


async def test_paper_mode_on_fyers_market_data_fills_in_paper_and_sends_nothing(tmp_path: Path) -> None:
    # Fyers credentials in paper mode: the index and chain stream from Fyers' data socket, fills stay simulated.
    sim = ExchangeSimulator(start_ns=OPEN, speed=120.0, faults=Faults())
    await sim.start()
    face = FyersFace(sim)
    try:
        await face.start()
        settings = load_settings({
            "mode": "paper", "data_dir": str(tmp_path), **await fyers_sim_settings(face),
            "strategy": {"bar_seconds": 10, "confidence_cutoff": 0, "first_entry_time": "09:15:00"},
            "risk": {"no_entry_before": "09:15:00", "max_daily_loss_pct": 0.5}, "recorder": {"enabled": False},
        })
        app = App(settings)
        assert app.venue is not None and app.venue.name == "fyers" and isinstance(app.broker, PaperBroker)
        fills: list[Fill] = []
        ticks: list[Tick] = []

        def record(event: object) -> None:
            if type(event) is Fill:
                fills.append(event)
                app.request_stop("a paper fill on Fyers data")
            elif type(event) is Tick:
                ticks.append(event)

        app.bus.tap(record)
        async with asyncio.timeout(90):
            await app.run(install_signal_handlers=False)
        assert fills, "the strategy never traded on Fyers' market data"
        assert fills[0].contract.instrument_token in {t.instrument_token for t in ticks}  # priced on Fyers ticks
        assert sim.orders == {}  # nothing reached the exchange: paper fills only
    finally:
        await face.stop()
        await sim.stop()
