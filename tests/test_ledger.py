"""The ledger actor on a real event bus: orders by intent with fills and slippage, signals linked to their intents,
approvals, bounded memory, and the futures the control service waits on."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from trader.actors.base import Supervisor
from trader.actors.ledger import APPROVED, NEW, LedgerActor
from trader.actors.risk import FLATTEN_STRATEGY_ID
from trader.bus import EventBus
from trader.events import (
    ApprovalStatus,
    ApprovalUpdate,
    CommandKind,
    CommandResult,
    Direction,
    Fill,
    IntentPurpose,
    OrderIntent,
    OrderRequest,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    Signal,
    Tick,
)
from trader.market.calendar import IST
from trader.market.instruments import OptionContract
from trader.store.journal import Journal
from trader.store.orders import OrderJournal

T0 = int(datetime(2026, 11, 20, 10, 0, tzinfo=IST).timestamp()) * 1_000_000_000
CE = OptionContract.parse("NIFTY26NOV26000CE", instrument_token=101)
LOT = CE.lot_size


def intent(intent_id: str, *, signal_id: str = "", strategy_id: str = "ema", side: Side = Side.BUY,
           expected: int = 10_000) -> OrderIntent:
    return OrderIntent(ts_ns=T0, intent_id=intent_id, strategy_id=strategy_id, contract=CE, side=side,
                       quantity=2 * LOT, order_type=OrderType.MARKET, purpose=IntentPurpose.ENTRY,
                       expected_price=expected, signal_id=signal_id)


def fill(fill_id: str, intent_id: str, quantity: int, price: int, expected: int = 10_000) -> Fill:
    return Fill(ts_ns=T0 + 1, fill_id=fill_id, intent_id=intent_id, order_id="O1", contract=CE, side=Side.BUY,
                quantity=quantity, price=price, expected_price=expected, charges=2_000)


class Running:
    def __init__(self, ledger: LedgerActor, bus: EventBus) -> None:
        self.ledger = ledger
        self.bus = bus

    async def publish(self, *events: object) -> None:
        for event in events:
            self.bus.publish(event)
        await self.bus.wait_idle()


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    bus = EventBus()
    ledger = LedgerActor(bus, max_orders=3, max_signals=2, max_decided=2, max_results=2)
    supervisor = Supervisor()
    supervisor.start(ledger)
    yield Running(ledger, bus)
    await supervisor.stop()


async def test_an_order_gathers_its_request_updates_and_fills_with_slippage(running: Running) -> None:
    await running.publish(intent("I1"))
    record = running.ledger.order("I1")
    assert record is not None and record.status == NEW and not record.decided
    await running.publish(OrderRequest(ts_ns=T0, intent=intent("I1"), tag="I1"))
    assert record.status == APPROVED and record.tag == "I1"
    await running.publish(OrderUpdate(ts_ns=T0, intent_id="I1", order_id="O1", status=OrderStatus.OPEN),
                          fill("F1", "I1", LOT, 10_100), fill("F1", "I1", LOT, 10_100),  # a repeat is kept once
                          fill("F2", "I1", LOT, 10_300),
                          OrderUpdate(ts_ns=T0, intent_id="I1", order_id="O1", status=OrderStatus.COMPLETE,
                                      filled_quantity=2 * LOT, average_price=10_200))
    assert running.ledger.order("O1") is record  # by the broker's order id too
    shown = record.as_dict()
    assert shown["status"] == "COMPLETE" and shown["order_id"] == "O1" and shown["tag"] == "I1"
    assert shown["filled_quantity"] == 2 * LOT and shown["average_price_inr"] == 102.0
    assert shown["expected_price_inr"] == 100.0
    assert shown["slippage_bps"] == 200.0  # 1 % and 3 % worse, equal units
    assert [f["fill_id"] for f in shown["fills"]] == ["F1", "F2"]
    assert shown["fills"][1]["slippage_bps"] == 300.0 and shown["fills"][0]["charges_inr"] == 20.0
    assert shown["time"] == "2026-11-20T10:00:00+05:30"
    # A late update after the terminal one changes nothing.
    await running.publish(OrderUpdate(ts_ns=T0, intent_id="I1", order_id="O1", status=OrderStatus.CANCELLED))
    assert record.status == "COMPLETE"


async def test_a_refusal_keeps_the_check_and_an_unknown_intents_update_is_ignored(running: Running) -> None:
    await running.publish(intent("I2"),
                           OrderUpdate(ts_ns=T0, intent_id="I2", order_id="", status=OrderStatus.REJECTED,
                                       reason="risk: trading is HALTED", check="state"),
                           OrderUpdate(ts_ns=T0, intent_id="ZZ", order_id="", status=OrderStatus.REJECTED))
    record = running.ledger.order("I2")
    assert record is not None and record.refused and record.check == "state"
    assert record.as_dict()["slippage_bps"] is None and record.as_dict()["average_price_inr"] is None
    assert running.ledger.order("ZZ") is None


async def test_intent_outcome_resolves_at_the_first_decision(running: Running) -> None:
    ledger = running.ledger
    await running.publish(intent("I3"), intent("I4"))
    approved = asyncio.create_task(ledger.intent_outcome("I3", 5))
    refused = asyncio.create_task(ledger.intent_outcome("I4", 5))
    await asyncio.sleep(0)  # both waiters are registered before the decisions arrive
    running.bus.publish(OrderRequest(ts_ns=T0, intent=intent("I3"), tag="I3"))
    running.bus.publish(OrderUpdate(ts_ns=T0, intent_id="I4", order_id="", status=OrderStatus.REJECTED,
                                    reason="risk: lots", check="lots"))
    got = await approved
    assert got is not None and got.status == APPROVED
    got = await refused
    assert got is not None and got.refused and got.check == "lots"
    # Already decided: answered at once. Never decided: None after the timeout, and no waiter is left behind.
    assert await ledger.intent_outcome("I3", 0.01) is ledger.order("I3")
    await running.publish(intent("I5"))
    assert await ledger.intent_outcome("I5", 0.01) is None
    assert not ledger._outcome_waiters


async def test_command_result_waits_for_its_id(running: Running) -> None:
    ledger = running.ledger
    waiting = asyncio.create_task(ledger.command_result("C1", 5))
    await asyncio.sleep(0)
    running.bus.publish(CommandResult(ts_ns=T0, command_id="C0", kind=CommandKind.HALT, ok=True))
    running.bus.publish(CommandResult(ts_ns=T0, command_id="C1", kind=CommandKind.RESUME, ok=False,
                                      detail="not halted"))
    result = await waiting
    assert result is not None and result.command_id == "C1" and not result.ok and result.detail == "not halted"
    assert await ledger.command_result("C0", 0.01) is not None  # a result that came first is kept
    assert await ledger.command_result("C9", 0.01) is None
    assert not ledger._result_waiters
    await running.publish(*(CommandResult(ts_ns=T0, command_id=f"D{i}", kind=CommandKind.HALT, ok=True)
                            for i in range(5)))
    assert list(ledger.results) == ["D3", "D4"]  # bounded


async def test_signals_link_to_their_intents_and_approvals_move_from_pending_to_decided(running: Running) -> None:
    ledger = running.ledger
    signal = Signal(ts_ns=T0, signal_id="S1", strategy_id="ema", underlying="NIFTY", direction=Direction.BULLISH,
                    confidence=72.5, reason="fast above slow")
    held = intent("I6", signal_id="S1")
    await running.publish(signal, ApprovalUpdate(ts_ns=T0, intent=held, status=ApprovalStatus.PENDING,
                                                 expires_ns=T0 + 60 * 10**9))
    [shown] = [s.as_dict() for s in ledger.recent_signals()]
    assert shown["intent_id"] == "I6" and shown["confidence"] == 72.5 and shown["direction"] == "BULLISH"
    assert ledger.approval("I6") is ledger.approval("S1") is not None  # by intent id or by signal id
    assert list(ledger.pending) == ["I6"]
    await running.publish(ApprovalUpdate(ts_ns=T0 + 5, intent=held, status=ApprovalStatus.APPROVED,
                                         expires_ns=T0 + 60 * 10**9, by="operator"),
                          held)
    assert not ledger.pending and ledger.decided["I6"].status is ApprovalStatus.APPROVED
    assert ledger.order("I6") is not None  # the approved intent itself is an order now
    # A PENDING that arrives after the decision (a redelivery) does not bring it back.
    await running.publish(ApprovalUpdate(ts_ns=T0, intent=held, status=ApprovalStatus.PENDING, expires_ns=T0))
    assert not ledger.pending


async def test_memory_stays_bounded_and_working_orders_are_kept(running: Running) -> None:
    ledger = running.ledger
    await running.publish(intent("W1"))  # never finishes: never dropped
    for n in range(6):
        await running.publish(intent(f"T{n}"),
                              OrderUpdate(ts_ns=T0, intent_id=f"T{n}", order_id=f"B{n}",
                                          status=OrderStatus.CANCELLED))
    assert "W1" in ledger.orders and len(ledger.orders) == 3
    assert [r.intent.intent_id for r in ledger.recent_orders()] == ["T5", "T4", "W1"]
    assert ledger.order("B0") is None  # its order-id index went with it
    for n in range(4):
        await running.publish(Signal(ts_ns=T0, signal_id=f"S{n}", strategy_id="ema", underlying="NIFTY",
                                     direction=Direction.BEARISH, confidence=50.0, reason=""))
    assert [s.signal.signal_id for s in ledger.recent_signals()] == ["S3", "S2"]
    for n in range(3):
        await running.publish(ApprovalUpdate(ts_ns=T0, intent=intent(f"A{n}"), status=ApprovalStatus.EXPIRED,
                                             expires_ns=T0))
    assert list(ledger.decided) == ["A1", "A2"]


async def test_flatten_intents_are_listed_and_ticks_never_reach_it(running: Running) -> None:
    ledger = running.ledger
    await running.publish(intent("F1", strategy_id=FLATTEN_STRATEGY_ID, side=Side.SELL),
                          Tick(ts_ns=T0, instrument_token=101, last_price=100))
    assert [r.intent.strategy_id for r in ledger.orders.values()] == [FLATTEN_STRATEGY_ID]
    assert ledger.inbox.delivered == 1  # the tick was never delivered


async def test_a_restart_lists_the_days_journaled_orders_and_follows_the_working_ones(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "live.sqlite3")
    orders = OrderJournal(journal)
    yesterday = dataclasses.replace(intent("I0"), ts_ns=T0 - 86_400 * 1_000_000_000)
    for request in (OrderRequest(ts_ns=T0, intent=yesterday, tag="I0"), *(
            OrderRequest(ts_ns=T0, intent=intent(i), tag=i) for i in ("I1", "I2", "I3", "I4"))):
        orders.record_intent(request, T0)
    orders.record_sent("I1", "O1", T0)
    orders.record_fill(fill("F1", "I1", 2 * LOT, 10_100))
    orders.record_update(OrderUpdate(ts_ns=T0, intent_id="I1", order_id="O1", status=OrderStatus.COMPLETE,
                                     filled_quantity=2 * LOT, average_price=10_100))
    orders.record_sent("I2", "O2", T0)  # still working at the broker
    orders.record_update(OrderUpdate(ts_ns=T0, intent_id="I3", order_id="O3", status=OrderStatus.REJECTED,
                                     reason="broker: outside the price band"))
    # I4: written, never answered (the gate parks it until the broker says).
    day_start = int(datetime(2026, 11, 20, tzinfo=IST).timestamp()) * 1_000_000_000
    journaled = orders.intents_since(day_start)
    journal.close()

    bus = EventBus()
    running = Running(LedgerActor(bus), bus)
    running.ledger.restore(journaled, [fill("F1", "I1", 2 * LOT, 10_100), fill("FX", "OUTSIDE", LOT, 9_000)])
    shown = {o.intent.intent_id: o.as_dict() for o in running.ledger.recent_orders()}
    assert list(shown) == ["I4", "I3", "I2", "I1"]  # today's only, newest first
    assert (shown["I1"]["status"], shown["I1"]["order_id"], shown["I1"]["filled_quantity"]) == ("COMPLETE", "O1",
                                                                                             2 * LOT)
    assert [f["fill_id"] for f in shown["I1"]["fills"]] == ["F1"]
    assert (shown["I2"]["status"], shown["I2"]["order_id"]) == ("OPEN", "O2")
    assert (shown["I3"]["status"], shown["I3"]["reason"]) == ("REJECTED", "broker: outside the price band")
    rejected = running.ledger.order("I3")
    assert rejected is not None and not rejected.refused  # the broker's refusal, not the risk gate's
    assert shown["I4"]["status"] == APPROVED
    # The working order's later updates reach it, as for any order of this run.
    supervisor = Supervisor()
    supervisor.start(running.ledger)
    try:
        await running.publish(OrderUpdate(ts_ns=T0 + 5, intent_id="I2", order_id="O2",
                                          status=OrderStatus.CANCELLED))
    finally:
        await supervisor.stop()
    working = running.ledger.order("O2")
    assert working is not None and working.status == "CANCELLED"
