"""The whole daemon in backtest mode (unpaced simulated clock) for one simulated trading day."""

from __future__ import annotations

import asyncio
import io
from collections import Counter, defaultdict
from typing import Any

import pytest

from trader.app import App, RunResult
from trader.config import load_settings
from trader.events import (
    Fill,
    IntentPurpose,
    OrderIntent,
    OrderRequest,
    OrderUpdate,
    RiskEvent,
    Side,
    TradingState,
)
from trader.logging import configure_logging

# Fri 20 Nov 2026: a normal session (09:15-15:40 IST); its weekly expiry is Mon 23 Nov (24 Nov is a holiday).
START = "2026-11-20T09:00:00"


async def run_day(**overrides: Any) -> tuple[App, RunResult, list[object]]:
    configure_logging("WARNING", io.StringIO())
    settings = load_settings({
        "mode": "backtest",
        "sim": {"days": 1, "start": START, "seed": 7, "chain_interval_ms": 5_000, **overrides.pop("sim", {})},
        **overrides,
    })
    app = App(settings)
    events: list[object] = []
    app.bus.tap(lambda e: events.append(e) if type(e) in _KEPT else None)
    result = await app.run(install_signal_handlers=False)
    return app, result, events


_KEPT = {OrderIntent, OrderRequest, OrderUpdate, Fill, RiskEvent}


def of(events: list[object], kind: type) -> list[Any]:
    return [e for e in events if type(e) is kind]


@pytest.fixture(scope="module")
def normal_day() -> tuple[App, RunResult, list[object]]:
    return asyncio.run(run_day())


def test_a_simulated_day_trades(normal_day: tuple[App, RunResult, list[object]]) -> None:
    _app, result, events = normal_day
    assert result.counters["ticks_in"] > 20_000
    assert result.summary.trades >= 2
    assert len(of(events, Fill)) >= 4
    assert result.counters["actor_restarts"] == 0 and result.counters["dead_letters"] == 0
    assert result.summary.open_positions == 0  # the time exit flattened everything before the close


def test_every_intent_ends_in_exactly_one_terminal_state(
        normal_day: tuple[App, RunResult, list[object]]) -> None:
    _, _, events = normal_day
    intents = {i.intent_id for i in of(events, OrderIntent)}
    terminal = Counter(u.intent_id for u in of(events, OrderUpdate) if u.status.is_terminal)
    assert intents
    assert set(terminal) == intents
    assert set(terminal.values()) == {1}
    # ...and no intent became more than one order.
    orders_per_intent: dict[str, set[str]] = defaultdict(set)
    for update in of(events, OrderUpdate):
        if update.order_id:
            orders_per_intent[update.intent_id].add(update.order_id)
    assert all(len(ids) == 1 for ids in orders_per_intent.values())


def test_portfolio_pnl_equals_the_sum_of_fills(normal_day: tuple[App, RunResult, list[object]]) -> None:
    app, result, events = normal_day
    fills = of(events, Fill)
    cash = sum((f.price if f.side is Side.SELL else -f.price) * f.quantity for f in fills)
    charges = sum(f.charges for f in fills)
    assert result.summary.gross_pnl == cash
    assert result.summary.charges == charges
    assert result.summary.net_pnl == cash - charges
    assert app.portfolio.equity == app.portfolio.initial_capital + cash - charges
    assert sum(app.portfolio.trade_pnls) == cash - charges


async def test_the_run_is_reproducible(normal_day: tuple[App, RunResult, list[object]]) -> None:
    _, first, first_events = normal_day
    _, second, second_events = await run_day()
    assert second.summary == first.summary
    assert [(f.contract.tradingsymbol, f.side, f.quantity, f.price) for f in of(second_events, Fill)] == [
        (f.contract.tradingsymbol, f.side, f.quantity, f.price) for f in of(first_events, Fill)]


async def test_daily_loss_halt_stops_new_entries_but_not_exits() -> None:
    # ₹100 daily loss on ₹1 lakh: a round trip's charges alone come close, so the limit is hit early.
    app, result, events = await run_day(risk={"max_daily_loss_pct": 0.001, "initial_capital": 100_000})
    halts = [e for e in events if type(e) is RiskEvent and e.state is TradingState.REDUCING_ONLY]
    assert halts, "the daily loss limit was never reached"
    halt_index = events.index(halts[0])
    after = events[halt_index:]
    approved_entries = [r for r in of(after, OrderRequest) if r.intent.purpose is IntentPurpose.ENTRY]
    assert approved_entries == []
    refused = [u for u in of(after, OrderUpdate) if u.reason.startswith("risk: trading state is REDUCING_ONLY")]
    assert refused, "no entry was attempted after the halt, so the halt was not exercised"
    assert app.risk.state is TradingState.REDUCING_ONLY
    # Exits stayed allowed: the day ends flat.
    assert result.summary.open_positions == 0


async def test_a_breach_with_flatten_on_breach_ends_reducing_only_and_flat() -> None:
    # ₹50 daily loss on ₹1 lakh: the first open position's charges and spread cross it while it is open.
    app, result, events = await run_day(risk={"max_daily_loss_pct": 0.0005, "flatten_on_breach": True})
    breach = next(e for e in events if type(e) is RiskEvent and e.state is TradingState.REDUCING_ONLY)
    flattens = [i for i in of(events, OrderIntent) if i.strategy_id == "risk-flatten"]
    assert flattens, "the breach did not flatten"
    assert all(events.index(i) > events.index(breach) for i in flattens)
    flatten_fills = [f for f in of(events, Fill) if f.intent_id in {i.intent_id for i in flattens}]
    assert sum(f.quantity for f in flatten_fills) == sum(i.quantity for i in flattens)
    assert app.risk.state is TradingState.REDUCING_ONLY
    assert result.summary.open_positions == 0
    after = events[events.index(breach):]
    assert not [r for r in of(after, OrderRequest) if r.intent.purpose is IntentPurpose.ENTRY]
