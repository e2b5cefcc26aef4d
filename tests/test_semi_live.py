"""Semi-live on the bus: with auto-execution off an entry waits for the operator; APPROVE sends it through the risk
gate at the current price, REJECT and expiry end it unsent; every outcome is journaled, and a restart never sends a
stale one. The actors run on a real EventBus with the paper broker."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import pytest

from trader.actors.base import Supervisor
from trader.actors.execution import ExecutionActor
from trader.actors.risk import RiskGateActor
from trader.actors.strategy import StrategyActor
from trader.adapters.paper import PaperBroker
from trader.app import App
from trader.approvals import Approval
from trader.bus import EventBus
from trader.clock import NS_PER_SECOND, SimClock
from trader.config import load_settings
from trader.events import (
    ApprovalStatus,
    ApprovalUpdate,
    Command,
    CommandKind,
    CommandResult,
    Fill,
    Heartbeat,
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
from trader.gate import STALE_APPROVAL_REASON, expire_stale_approvals
from trader.ids import IdFactory
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import OptionContract
from trader.risk import RiskConfig, RiskManager
from trader.store.journal import Journal
from trader.store.orders import OrderJournal
from trader.strategies.base import Holding, RestoredPosition, StrategyContext

from helpers import T0, captured_logs

CE = OptionContract.parse("NIFTY26NOV26000CE", instrument_token=101)  # expires Mon 23 Nov 2026, after T0
LOT = CE.lot_size
E = TypeVar("E")


class Scripted:
    """A strategy that emits what the test queues, on the next tick, stamped with that tick's time."""

    strategy_id = "scripted"

    def __init__(self) -> None:
        self.queue: list[OrderIntent] = []
        self.fills: list[Fill] = []
        self.updates: list[OrderUpdate] = []
        self._pending: set[str] = set()

    def on_tick(self, tick: Tick, ctx: StrategyContext) -> Sequence[Signal | OrderIntent]:
        out, self.queue = [dataclasses.replace(i, ts_ns=tick.ts_ns) for i in self.queue], []
        self._pending.update(i.intent_id for i in out)
        return out

    def on_fill(self, fill: Fill) -> None:
        self.fills.append(fill)

    def on_order_update(self, update: OrderUpdate) -> None:
        self.updates.append(update)
        if update.status.is_terminal:
            self._pending.discard(update.intent_id)

    def snapshot_state(self) -> dict[str, object]:
        return {"version": 1, "strategy_id": self.strategy_id}

    def restore_state(self, state: Mapping[str, object] | None,
                      held: Sequence[RestoredPosition]) -> list[RestoredPosition]:
        return list(held)

    def holdings(self) -> list[Holding]:
        return []

    def pending_intents(self) -> list[str]:
        return sorted(self._pending)


def intent(intent_id: str, *, purpose: IntentPurpose = IntentPurpose.ENTRY, side: Side = Side.BUY,
           expected: int = 4_000, signal_id: str = "") -> OrderIntent:
    return OrderIntent(ts_ns=0, intent_id=intent_id, strategy_id="scripted", contract=CE, side=side, quantity=LOT,
                       order_type=OrderType.MARKET, purpose=purpose, expected_price=expected,
                       signal_id=signal_id or f"S{intent_id}")


class Rig:
    """Strategy host (auto-execution off), risk gate and execution on one bus, the paper broker behind them."""

    def __init__(self, path: Path, *, expiry_s: float = 60.0) -> None:
        self.clock = SimClock(T0)
        self.bus = EventBus()
        self.events: list[object] = []
        self.bus.tap(self.events.append)
        self.broker = PaperBroker(self.clock)
        ids = IdFactory(T0)
        self.journal = OrderJournal(Journal(path))
        self.strategy = Scripted()
        self.risk = RiskGateActor(self.bus, RiskManager(RiskConfig(), now_ns=self.clock.now_ns), self.clock, ids,
                                  broker=self.broker)
        self.execution = ExecutionActor(self.bus, self.broker, self.clock, journal=self.journal)
        self.host = StrategyActor(self.bus, [self.strategy], StrategyContext(InstrumentMaster(), ids),
                                  auto_execution=False, approval_expiry_s=expiry_s, journal=self.journal)
        self.supervisor = Supervisor()

    async def __aenter__(self) -> Rig:
        for actor in (self.risk, self.execution, self.host):
            self.supervisor.start(actor)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.supervisor.stop()
        self.journal.journal.close()

    async def tick(self, bid: int, ask: int, *, after_s: float = 1.0) -> None:
        self.clock.jump_to(self.clock.now_ns() + int(after_s * NS_PER_SECOND))
        self.bus.publish(Tick(ts_ns=self.clock.now_ns(), instrument_token=CE.instrument_token, last_price=bid,
                              bid=bid, bid_qty=10 * LOT, ask=ask, ask_qty=10 * LOT))
        await self.bus.wait_idle()

    async def heartbeat(self, *, after_s: float) -> None:
        self.clock.jump_to(self.clock.now_ns() + int(after_s * NS_PER_SECOND))
        self.bus.publish(Heartbeat(ts_ns=self.clock.now_ns()))
        await self.bus.wait_idle()

    async def command(self, kind: CommandKind, target: str = "", command_id: str = "", reason: str = "") -> None:
        self.bus.publish(Command(ts_ns=self.clock.now_ns(), kind=kind, source="cli", reason=reason, target=target,
                                 command_id=command_id))
        await self.bus.wait_idle()

    async def pending(self, *intents: OrderIntent, bid: int = 3_990, ask: int = 4_000) -> None:
        self.strategy.queue.extend(intents)
        await self.tick(bid, ask)

    def of(self, kind: type[E], where: Callable[[E], bool] = lambda _: True) -> list[E]:
        return [e for e in self.events if type(e) is kind and where(e)]

    def result(self, command_id: str) -> CommandResult:
        [result] = self.of(CommandResult, lambda r: r.command_id == command_id)  # exactly one answer
        return result

    def approvals(self, intent_id: str) -> list[ApprovalStatus]:
        return [u.status for u in self.of(ApprovalUpdate, lambda u: u.intent.intent_id == intent_id)]

    def terminal(self, intent_id: str) -> list[OrderUpdate]:
        return self.of(OrderUpdate, lambda u: u.intent_id == intent_id and u.status.is_terminal)


pytestmark = pytest.mark.usefixtures("quiet_logs")


async def test_an_approved_entry_goes_to_the_gate_at_the_current_price_and_fills(tmp_path: Path) -> None:
    async with Rig(tmp_path / "paper.sqlite3") as rig:
        await rig.pending(intent("E1"))
        [held] = rig.of(ApprovalUpdate)
        assert held.status is ApprovalStatus.PENDING and held.expires_ns == T0 + 61 * NS_PER_SECOND
        assert rig.of(OrderIntent) == [] and rig.of(OrderRequest) == []  # nothing reaches the gate yet
        assert rig.strategy.pending_intents() == ["E1"]  # the strategy waits on it
        await rig.tick(4_190, 4_200, after_s=5)  # the market moved while the operator looked
        await rig.command(CommandKind.APPROVE, "E1", "c1")
        assert rig.result("c1").ok and "E1" in rig.result("c1").detail
        assert rig.approvals("E1") == [ApprovalStatus.PENDING, ApprovalStatus.APPROVED]
        [request] = rig.of(OrderRequest)
        assert request.intent.intent_id == "E1" and request.intent.expected_price == 4_200
        assert request.intent.ts_ns == T0 + 6 * NS_PER_SECOND  # stamped when approved
        await rig.tick(4_190, 4_200)  # the paper order is active after its latency: it fills on this quote
        [fill] = rig.of(Fill)
        assert fill.intent_id == "E1" and fill.expected_price == 4_200
        assert rig.strategy.fills == [fill]  # the strategy gets the fill of its own intent
        assert rig.journal.approvals() == [("E1", ApprovalStatus.APPROVED, "approved at ₹42.00")]
        assert rig.host.approvals.pending() == [] and [a.intent_id for a in rig.host.approvals.decided()] == ["E1"]


async def test_a_rejected_entry_ends_unsent_and_its_strategy_stops_waiting(tmp_path: Path) -> None:
    async with Rig(tmp_path / "paper.sqlite3") as rig:
        await rig.pending(intent("E1", signal_id="SIG1"))
        await rig.command(CommandKind.REJECT, "SIG1", "r1", reason="not this one")  # by its signal id
        assert rig.result("r1").ok
        assert rig.approvals("E1") == [ApprovalStatus.PENDING, ApprovalStatus.REJECTED]
        [end] = rig.terminal("E1")
        assert end.status is OrderStatus.REJECTED and end.order_id == ""
        assert end.reason == "semi-live: rejected by cli: not this one"
        assert rig.strategy.pending_intents() == [] and rig.of(OrderRequest) == []
        assert rig.journal.approvals() == [("E1", ApprovalStatus.REJECTED, "not this one")]


async def test_unanswered_entries_expire_on_ticks_and_heartbeats_of_event_time(tmp_path: Path) -> None:
    async with Rig(tmp_path / "paper.sqlite3") as rig:
        await rig.pending(intent("E1"))  # made at T0 + 1 s: expires at T0 + 61 s
        await rig.tick(3_990, 4_000, after_s=59)
        assert rig.approvals("E1") == [ApprovalStatus.PENDING]
        await rig.tick(3_990, 4_000, after_s=1)
        assert rig.approvals("E1") == [ApprovalStatus.PENDING, ApprovalStatus.EXPIRED]
        [end] = rig.terminal("E1")
        assert end.reason.startswith("semi-live: expired: not approved within 60 s")
        await rig.pending(intent("E2"))
        await rig.heartbeat(after_s=60)  # no tick at all: the heartbeat's event time expires it
        assert rig.approvals("E2") == [ApprovalStatus.PENDING, ApprovalStatus.EXPIRED]
        await rig.command(CommandKind.APPROVE, "E2", "late")
        assert not rig.result("late").ok and "already EXPIRED" in rig.result("late").detail
        assert rig.of(OrderRequest) == [] and rig.strategy.pending_intents() == []
        assert [status for _, status, _ in rig.journal.approvals()] == [ApprovalStatus.EXPIRED] * 2


async def test_a_halted_gate_refuses_an_approved_entry_and_resume_lets_the_next_one_through(
        tmp_path: Path) -> None:
    async with Rig(tmp_path / "paper.sqlite3") as rig:
        await rig.pending(intent("E1"), intent("E2"))
        await rig.command(CommandKind.HALT, command_id="h1", reason="lunch")
        assert rig.result("h1").ok and rig.result("h1").detail.startswith("trading is HALTED (lunch)")
        await rig.command(CommandKind.APPROVE, "E1", "a1")
        assert rig.result("a1").ok  # the operator's approval stands; the gate decides
        [refused] = rig.terminal("E1")
        assert refused.status is OrderStatus.REJECTED and refused.check == "state"
        assert refused.reason.startswith("risk: trading is HALTED (lunch)")
        await rig.command(CommandKind.RESUME, command_id="r1")
        assert rig.result("r1").detail.startswith("trading is ACTIVE")
        await rig.command(CommandKind.APPROVE, "E2", "a2")
        assert [r.intent.intent_id for r in rig.of(OrderRequest)] == ["E2"]


async def test_unknown_double_and_unpriceable_approvals_are_answered_not_sent(tmp_path: Path) -> None:
    async with Rig(tmp_path / "paper.sqlite3") as rig:
        await rig.command(CommandKind.APPROVE, "NOSUCH", "u1")
        assert not rig.result("u1").ok and "no pending signal or intent 'NOSUCH'" in rig.result("u1").detail
        await rig.pending(intent("E1"))
        await rig.command(CommandKind.APPROVE, "E1", "a1")
        await rig.command(CommandKind.APPROVE, "E1", "a2")
        await rig.command(CommandKind.REJECT, "E1", "a3")
        assert rig.result("a1").ok
        assert not rig.result("a2").ok and "already APPROVED" in rig.result("a2").detail
        assert not rig.result("a3").ok
        assert len(rig.of(OrderRequest)) == 1
        # A contract with no quote yet cannot be priced: it stays pending, the operator may try again.
        other = OptionContract.parse("NIFTY26NOV26100CE", instrument_token=202)
        rig.strategy.queue.append(dataclasses.replace(intent("E3"), contract=other))
        await rig.tick(3_990, 4_000)
        await rig.command(CommandKind.APPROVE, "E3", "q1")
        assert not rig.result("q1").ok and "no quote for NIFTY26NOV26100CE" in rig.result("q1").detail
        assert rig.approvals("E3") == [ApprovalStatus.PENDING]
        await rig.command(CommandKind.APPROVE, "E3")  # no command id: no answer at all
        assert len(rig.of(CommandResult)) == 5


async def test_exits_never_wait_and_stop_entries_expires_what_is_pending(tmp_path: Path) -> None:
    async with Rig(tmp_path / "paper.sqlite3") as rig:
        await rig.pending(intent("E1"), intent("X1", purpose=IntentPurpose.EXIT, side=Side.SELL))
        assert rig.approvals("X1") == [] and [i.intent_id for i in rig.of(OrderIntent)] == ["X1"]
        await rig.command(CommandKind.STOP_ENTRIES, reason="shutting down")
        assert rig.approvals("E1") == [ApprovalStatus.PENDING, ApprovalStatus.EXPIRED]
        [end] = rig.terminal("E1")
        assert "entries stopped (shutting down)" in end.reason


async def test_a_restart_expires_the_pending_rows_of_the_earlier_run(tmp_path: Path) -> None:
    path = tmp_path / "paper.sqlite3"
    async with Rig(path) as rig:
        await rig.pending(intent("E1"), intent("E2"))
        await rig.command(CommandKind.REJECT, "E2")
    orders = OrderJournal(Journal(path))
    try:
        assert [(i, s) for i, s, _ in orders.approvals()] == [("E1", ApprovalStatus.PENDING),
                                                              ("E2", ApprovalStatus.REJECTED)]
        with captured_logs() as lines:
            assert expire_stale_approvals(orders, T0 + 3_600 * NS_PER_SECOND) == ["E1"]
        assert orders.approvals() == [("E1", ApprovalStatus.EXPIRED, STALE_APPROVAL_REASON),
                                      ("E2", ApprovalStatus.REJECTED, "rejected by the operator")]
        [line] = [line for line in lines if line["event"] == "approval_expired"]
        assert line["intent_id"] == "E1" and line["reason"] == STALE_APPROVAL_REASON
        # A late write of the old run's decision never revives or changes a decided row.
        stale = orders.approvals()
        expired = Approval(intent=dataclasses.replace(intent("E1"), ts_ns=T0), status=ApprovalStatus.APPROVED,
                           created_ns=T0, expires_ns=T0 + 60 * NS_PER_SECOND)
        orders.record_approval(expired)
        assert orders.approvals() == stale
        assert expire_stale_approvals(orders, T0 + 7_200 * NS_PER_SECOND) == []
    finally:
        orders.journal.close()


@pytest.mark.usefixtures("clean_env")
async def test_the_app_expires_stale_approvals_at_start_and_takes_the_expiry_from_settings(tmp_path: Path) -> None:
    path = tmp_path / "paper.sqlite3"
    orders = OrderJournal(Journal(path))
    orders.record_approval(Approval(intent=dataclasses.replace(intent("E1"), ts_ns=T0),
                                    status=ApprovalStatus.PENDING, created_ns=T0,
                                    expires_ns=T0 + 60 * NS_PER_SECOND))
    orders.journal.close()
    settings = load_settings({"mode": "paper", "data_dir": str(tmp_path), "auto_execution": False,
                              "control": {"approval_expiry_seconds": 30}})
    app = App(settings)
    try:
        assert app.strategy.approvals.expiry_ns == 30 * NS_PER_SECOND
        with captured_logs() as lines:
            await app._pass_gate()
        assert app.orders is not None
        assert app.orders.approvals() == [("E1", ApprovalStatus.EXPIRED, STALE_APPROVAL_REASON)]
        assert any(line["event"] == "approval_expired" and line["intent_id"] == "E1" for line in lines)
    finally:
        await app._close_resources()
