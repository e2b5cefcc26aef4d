"""The bus side of the operator's commands: CANCEL in the execution actor, HALT/RESUME/RESET_DAILY/FLATTEN answers
(and flatten by underlying) in the risk gate, and manual orders' fills taken by the adopted-position keeper."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import pytest
from test_risk_gate import CE, LOT, PE, Gate
from test_strategy import RALLY, at, entered_driver
from test_strategy_state import Host, held, saved_doc

from trader.actors.base import Supervisor
from trader.actors.cancels import find_open_order
from trader.actors.execution import ExecutionActor
from trader.actors.risk import FLATTEN_SOURCE, FLATTEN_STRATEGY_ID, RiskGateActor
from trader.adapters.paper import PaperBroker
from trader.adapters.ports import BrokerUnavailable, OrderRejected
from trader.bus import EventBus
from trader.clock import NS_PER_SECOND, SimClock
from trader.events import (
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
    Tick,
    TradingState,
)
from trader.ids import IdFactory
from trader.market.instruments import OptionContract, OptionType
from trader.risk import RiskConfig, RiskManager
from trader.strategies.adopted import ADOPTED_STRATEGY_ID, MANUAL_STRATEGY_ID
from trader.strategies.ema_crossover import STRATEGY_NAME

from helpers import T0, FakeBroker, captured_logs, wait_for

pytestmark = pytest.mark.usefixtures("quiet_logs")
E = TypeVar("E")
BANK = OptionContract.parse("BANKNIFTY26NOV52000CE", instrument_token=103)


# -- CANCEL (execution actor) ------------------------------------------------------------------------------------
class Desk:
    """Risk gate and execution on one bus with the paper broker; intents are published as a manual order would."""

    def __init__(self, config: RiskConfig | None = None) -> None:
        self.clock = SimClock(T0)
        self.bus = EventBus()
        self.events: list[object] = []
        self.bus.tap(self.events.append)
        self.broker = PaperBroker(self.clock)
        self.ids = IdFactory(T0)
        self.supervisor = Supervisor()
        self.risk = RiskGateActor(self.bus, RiskManager(config or RiskConfig(), now_ns=self.clock.now_ns),
                                  self.clock, self.ids, broker=self.broker)
        self.execution = ExecutionActor(self.bus, self.broker, self.clock)

    async def __aenter__(self) -> Desk:
        self.supervisor.start(self.risk)
        self.supervisor.start(self.execution)
        await self.tick(3_990, 4_000)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.supervisor.stop()

    async def tick(self, bid: int, ask: int) -> None:
        self.clock.jump_to(self.clock.now_ns() + NS_PER_SECOND)
        self.bus.publish(Tick(ts_ns=self.clock.now_ns(), instrument_token=CE.instrument_token, last_price=bid,
                              bid=bid, bid_qty=10 * LOT, ask=ask, ask_qty=10 * LOT))
        await self.bus.wait_idle()

    async def limit_buy(self, price: int) -> OrderIntent:
        intent = OrderIntent(ts_ns=self.clock.now_ns(), intent_id=self.ids.next("M"), strategy_id=MANUAL_STRATEGY_ID,
                             contract=CE, side=Side.BUY, quantity=LOT, order_type=OrderType.LIMIT,
                             purpose=IntentPurpose.ENTRY, expected_price=4_000, limit_price=price)
        self.bus.publish(intent)
        await self.bus.wait_idle()
        return intent

    async def order(self, side: Side, *, limit: int = 0, purpose: IntentPurpose = IntentPurpose.ENTRY) -> OrderIntent:
        """A manual order of one lot of CE: MARKET, or LIMIT at ``limit`` paise."""
        intent = OrderIntent(ts_ns=self.clock.now_ns(), intent_id=self.ids.next("M"), strategy_id=MANUAL_STRATEGY_ID,
                             contract=CE, side=side, quantity=LOT,
                             order_type=OrderType.LIMIT if limit else OrderType.MARKET, purpose=purpose,
                             expected_price=4_000, limit_price=limit)
        self.bus.publish(intent)
        await self.bus.wait_idle()
        return intent

    async def command(self, kind: CommandKind, target: str = "", command_id: str = "") -> CommandResult:
        self.bus.publish(Command(ts_ns=self.clock.now_ns(), kind=kind, target=target, command_id=command_id))
        await self.bus.wait_idle()
        [result] = self.of(CommandResult, lambda r: r.command_id == command_id)
        return result

    async def held(self) -> tuple[int, int]:
        """(units of CE in the risk gate's book, units of CE the broker holds)."""
        broker = (await self.broker.positions()).get(CE.instrument_token, 0)
        return self.risk.manager.book.quantity(CE.instrument_token), broker

    def flatten_exits(self) -> list[OrderIntent]:
        return self.of(OrderIntent, lambda i: i.strategy_id == FLATTEN_STRATEGY_ID)

    def of(self, kind: type[E], where: Callable[[E], bool] = lambda _: True) -> list[E]:
        return [e for e in self.events if type(e) is kind and where(e)]

    def statuses(self, intent: OrderIntent) -> list[OrderStatus]:
        return [u.status for u in self.of(OrderUpdate, lambda u: u.intent_id == intent.intent_id)]


async def test_an_open_paper_limit_order_is_cancelled_by_intent_id_or_order_id() -> None:
    async with Desk() as desk:
        first = await desk.limit_buy(3_000)  # far below the ask: it rests
        second = await desk.limit_buy(3_100)
        await desk.tick(3_990, 4_000)
        assert desk.statuses(first) == [OrderStatus.OPEN] and desk.statuses(second) == [OrderStatus.OPEN]
        assert desk.execution.open_orders == 2
        result = await desk.command(CommandKind.CANCEL, first.intent_id, "c1")
        [order_id] = {u.order_id for u in desk.of(OrderUpdate, lambda u: u.intent_id == first.intent_id)}
        assert result.ok and order_id in result.detail and first.intent_id in result.detail
        assert desk.statuses(first) == [OrderStatus.OPEN, OrderStatus.CANCELLED]
        second_id = desk.of(OrderUpdate, lambda u: u.intent_id == second.intent_id)[0].order_id
        assert (await desk.command(CommandKind.CANCEL, second_id, "c2")).ok  # by the broker's order id
        assert desk.statuses(second)[-1] is OrderStatus.CANCELLED and desk.execution.open_orders == 0
        again = await desk.command(CommandKind.CANCEL, first.intent_id, "c3")
        assert not again.ok and again.detail.startswith(f"no open order {first.intent_id}")
        unknown = await desk.command(CommandKind.CANCEL, "NOSUCH", "c4")
        assert not unknown.ok and "no open order NOSUCH" in unknown.detail
        assert desk.of(CommandResult, lambda r: r.command_id == "") == []


async def test_a_flatten_cancels_open_entry_orders_so_none_fills_later() -> None:
    async with Desk() as desk:
        resting = await desk.limit_buy(3_000)  # an entry far below the ask: it rests
        await desk.tick(3_990, 4_000)
        assert desk.statuses(resting) == [OrderStatus.OPEN]
        other = await desk.command(CommandKind.FLATTEN, "BANKNIFTY", "f0")  # another underlying: left alone
        assert not other.ok and desk.statuses(resting) == [OrderStatus.OPEN]
        await desk.command(CommandKind.FLATTEN, "", "f1")
        await desk.tick(3_990, 4_000)
        assert desk.statuses(resting) == [OrderStatus.OPEN, OrderStatus.CANCELLED]
        assert desk.execution.open_orders == 0
        await desk.tick(2_000, 2_900)  # the market falls through the old limit: nothing fills
        assert desk.of(Fill) == []


@pytest.mark.parametrize("halted", [False, True], ids=["active", "halted"])
async def test_a_flatten_cancels_our_resting_exit_first_then_exits_so_the_account_is_flat(halted: bool) -> None:
    """Fault injection: a manual SELL LIMIT 999 resting on the position made the flatten's own exit a "naked short"
    (ACTIVE) or a refused order (HALTED), while the answer said "1 exit order(s) issued": the position stayed."""
    async with Desk() as desk:
        await desk.order(Side.BUY)
        await desk.tick(3_990, 4_000)
        assert await desk.held() == (LOT, LOT)
        resting = await desk.order(Side.SELL, limit=99_900, purpose=IntentPurpose.EXIT)  # far above: it rests
        await desk.tick(3_990, 4_000)
        assert desk.statuses(resting) == [OrderStatus.OPEN]
        if halted:
            assert (await desk.command(CommandKind.HALT, command_id="h1")).ok
        with captured_logs("WARNING") as lines:
            result = await desk.command(CommandKind.FLATTEN, "", "f1")
            await desk.tick(3_990, 4_000)  # the flatten's exit, issued once the resting order ended, fills
        assert result.ok and result.count == 0  # nothing could be sent at once: the resting exit covered it all
        assert result.detail == (f"0 exit order(s) issued for every open position; 1 position(s) wait for the "
                                 f"daemon's working orders on them to end, then get their exit: {CE.tradingsymbol} "
                                 f"{LOT}; 1 working order(s) of the daemon's being cancelled")
        assert desk.statuses(resting) == [OrderStatus.OPEN, OrderStatus.CANCELLED]
        [exit_] = desk.flatten_exits()
        assert (exit_.side, exit_.quantity) == (Side.SELL, LOT)
        assert desk.statuses(exit_)[-1] is OrderStatus.COMPLETE
        assert await desk.held() == (0, 0)
        events = [line["event"] for line in lines]
        assert events.index("flatten_waits_for_working_orders") < events.index("flatten_exit_issued")
        assert desk.risk.state is (TradingState.HALTED if halted else TradingState.ACTIVE)
        await desk.tick(100_000, 100_100)  # the market goes through the old limit: nothing left to fill
        assert await desk.held() == (0, 0) and desk.execution.open_orders == 0


async def test_a_flatten_with_a_resting_entry_and_a_resting_exit_leaves_the_account_flat_for_good() -> None:
    async with Desk() as desk:
        await desk.order(Side.BUY)
        await desk.tick(3_990, 4_000)
        entry = await desk.order(Side.BUY, limit=3_000)
        exit_ = await desk.order(Side.SELL, limit=99_900, purpose=IntentPurpose.EXIT)
        await desk.tick(3_990, 4_000)
        assert desk.statuses(entry) == [OrderStatus.OPEN] and desk.statuses(exit_) == [OrderStatus.OPEN]
        result = await desk.command(CommandKind.FLATTEN, "NIFTY", "f1")
        assert result.ok and result.count == 0 and "2 working order(s) of the daemon's being cancelled" in result.detail
        await desk.tick(3_990, 4_000)
        assert desk.statuses(entry)[-1] is OrderStatus.CANCELLED and desk.statuses(exit_)[-1] is OrderStatus.CANCELLED
        [flatten] = desk.flatten_exits()
        assert desk.statuses(flatten)[-1] is OrderStatus.COMPLETE
        fills = len(desk.of(Fill))
        await desk.tick(100_000, 100_100)  # above the old exit's limit ...
        await desk.tick(2_000, 2_900)  # ... and below the old entry's: neither is there to fill
        assert len(desk.of(Fill)) == fills and await desk.held() == (0, 0)
        assert desk.execution.open_orders == 0


async def test_an_entry_approved_just_before_the_flatten_is_cancelled_too() -> None:
    """The gate approves it before it handles the FLATTEN; the execution actor, had it acted on the operator's
    command, would have seen the FLATTEN before the order and left the order to rest (and fill) after it."""
    async with Desk() as desk:
        await desk.order(Side.BUY)
        await desk.tick(3_990, 4_000)
        entry = OrderIntent(ts_ns=desk.clock.now_ns(), intent_id=desk.ids.next("M"), strategy_id=MANUAL_STRATEGY_ID,
                            contract=CE, side=Side.BUY, quantity=LOT, order_type=OrderType.LIMIT,
                            purpose=IntentPurpose.ENTRY, expected_price=4_000, limit_price=3_000)
        desk.bus.publish(entry)  # both on the bus before either actor looks
        desk.bus.publish(Command(ts_ns=desk.clock.now_ns(), kind=CommandKind.FLATTEN, command_id="f1"))
        await desk.bus.wait_idle()
        [result] = desk.of(CommandResult)
        assert result.ok and result.count == 0 and "1 working order(s) of the daemon's being cancelled" in result.detail
        await desk.tick(3_990, 4_000)
        await desk.tick(3_990, 4_000)
        assert desk.statuses(entry)[-1] is OrderStatus.CANCELLED
        await desk.tick(2_000, 2_900)  # through the entry's limit: it is gone, nothing reopens
        assert await desk.held() == (0, 0) and desk.execution.open_orders == 0


async def test_a_flatten_of_an_underlying_with_only_a_working_entry_cancels_it_and_says_so() -> None:
    async with Desk() as desk:
        entry = await desk.order(Side.BUY, limit=3_000)
        await desk.tick(3_990, 4_000)
        result = await desk.command(CommandKind.FLATTEN, "NIFTY", "f1")
        assert result.ok and result.count == 0
        assert result.detail == "no open NIFTY position; 1 working order(s) of the daemon's being cancelled"
        await desk.tick(3_990, 4_000)
        assert desk.statuses(entry)[-1] is OrderStatus.CANCELLED and desk.flatten_exits() == []
        nothing = await desk.command(CommandKind.FLATTEN, "NIFTY", "f2")
        assert not nothing.ok and nothing.detail == "no open position in NIFTY: nothing to flatten"


async def test_an_entry_that_fills_before_the_flattens_cancel_gets_its_exit_when_it_ends() -> None:
    """The cancel comes too late (the broker filled the entry first): the gate, waiting for it, exits what it
    opened."""
    async with Desk() as desk:
        entry = await desk.order(Side.BUY, limit=3_000)
        await desk.tick(3_990, 4_000)
        desk.broker.cancel_order = refuse_cancel  # type: ignore[method-assign]
        result = await desk.command(CommandKind.FLATTEN, "", "f1")
        assert result.ok and "1 working order(s) of the daemon's being cancelled" in result.detail
        await desk.tick(2_990, 3_000)  # the entry fills: a position the flatten did not see
        assert desk.statuses(entry)[-1] is OrderStatus.COMPLETE
        await desk.tick(2_990, 3_000)  # its exit, issued when the entry ended, fills
        [flatten] = desk.flatten_exits()
        assert (flatten.side, flatten.quantity) == (Side.SELL, LOT)
        assert await desk.held() == (0, 0)


async def refuse_cancel(order_id: str) -> None:
    raise OrderRejected(f"order {order_id} could not be cancelled")


async def test_a_resting_exit_that_fills_instead_of_cancelling_needs_no_flatten_exit() -> None:
    async with Desk() as desk:
        await desk.order(Side.BUY)
        await desk.tick(3_990, 4_000)
        resting = await desk.order(Side.SELL, limit=5_000, purpose=IntentPurpose.EXIT)
        await desk.tick(3_990, 4_000)
        desk.broker.cancel_order = refuse_cancel  # type: ignore[method-assign]
        with captured_logs("WARNING") as lines:
            result = await desk.command(CommandKind.FLATTEN, "", "f1")
            await desk.tick(5_000, 5_010)  # the resting exit fills at its limit
        assert result.ok and result.count == 0
        assert desk.statuses(resting)[-1] is OrderStatus.COMPLETE
        assert desk.flatten_exits() == [] and await desk.held() == (0, 0)
        assert "flatten_done_without_exit" in [line["event"] for line in lines]


async def test_a_flatten_cancel_the_broker_does_not_answer_is_tried_again_and_the_exit_follows() -> None:
    async with Desk() as desk:
        await desk.order(Side.BUY)
        await desk.tick(3_990, 4_000)
        resting = await desk.order(Side.SELL, limit=99_900, purpose=IntentPurpose.EXIT)
        await desk.tick(3_990, 4_000)
        cancel = desk.broker.cancel_order
        calls: list[str] = []

        async def silent_once(order_id: str) -> None:
            calls.append(order_id)
            if len(calls) == 1:
                raise BrokerUnavailable("timed out")
            await cancel(order_id)

        desk.broker.cancel_order = silent_once  # type: ignore[method-assign]
        result = await desk.command(CommandKind.FLATTEN, "", "f1")
        assert result.ok and desk.statuses(resting) == [OrderStatus.OPEN] and desk.flatten_exits() == []
        await desk.tick(3_990, 4_000)  # a second later: the cancel is tried again, then the exit goes
        await desk.tick(3_990, 4_000)
        assert len(calls) == 2 and desk.statuses(resting)[-1] is OrderStatus.CANCELLED
        [flatten] = desk.flatten_exits()
        assert desk.statuses(flatten)[-1] is OrderStatus.COMPLETE and await desk.held() == (0, 0)


async def test_concurrent_flattens_issue_one_exit_never_a_short_and_count_truthfully() -> None:
    async with Desk() as desk:
        await desk.order(Side.BUY)
        await desk.tick(3_990, 4_000)
        for command_id in ("f1", "f2", "f3"):  # all on the bus before the gate handles the first
            desk.bus.publish(Command(ts_ns=desk.clock.now_ns(), kind=CommandKind.FLATTEN, command_id=command_id))
        await desk.bus.wait_idle()
        results = sorted(desk.of(CommandResult), key=lambda r: r.command_id)
        assert all(r.ok for r in results)
        assert [r.count for r in results] == [1, 0, 0]
        assert all("1 position(s) wait for the daemon's working orders" in r.detail for r in results[1:])
        await desk.tick(3_990, 4_000)
        await desk.tick(3_990, 4_000)
        [flatten] = desk.flatten_exits()  # one exit in all: the later flattens saw the first one working
        assert desk.statuses(flatten) == [OrderStatus.OPEN, OrderStatus.COMPLETE]
        assert await desk.held() == (0, 0)
        assert desk.of(OrderUpdate, lambda u: u.status is OrderStatus.REJECTED) == []


async def test_a_breach_flatten_cancels_a_resting_entry_too() -> None:
    async with Desk(RiskConfig(flatten_on_breach=True)) as desk:
        await desk.order(Side.BUY)
        await desk.tick(3_990, 4_000)
        entry = await desk.order(Side.BUY, limit=500)
        await desk.tick(3_990, 4_000)
        assert desk.statuses(entry) == [OrderStatus.OPEN]
        await desk.tick(800, 810)  # 65 × ₹32 = ₹2,080 lost: beyond the 2 % daily limit of ₹2,000
        assert desk.risk.state is TradingState.REDUCING_ONLY
        await desk.tick(800, 810)
        assert desk.statuses(entry)[-1] is OrderStatus.CANCELLED
        [flatten] = desk.flatten_exits()
        assert desk.statuses(flatten)[-1] is OrderStatus.COMPLETE
        await desk.tick(300, 310)  # through the old entry's limit: nothing fills, nothing reopens
        assert await desk.held() == (0, 0)
        assert [c.source for c in desk.of(Command)] == ["risk"]  # one flatten, through the same path


class SlowBroker(FakeBroker):
    """Its place call waits until the test lets it answer."""

    def __init__(self, clock: SimClock) -> None:
        super().__init__(clock)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def place_order(self, request: OrderRequest) -> str:
        self.entered.set()
        await self.release.wait()
        return await super().place_order(request)


async def test_an_order_still_being_placed_cannot_be_cancelled_yet_and_says_so() -> None:
    clock = SimClock(T0)
    bus = EventBus()
    results: list[CommandResult] = []
    bus.tap(lambda e: results.append(e) if type(e) is CommandResult else None)
    broker = SlowBroker(clock)
    actor = ExecutionActor(bus, broker, clock)
    supervisor = Supervisor()
    supervisor.start(actor)
    try:
        intent = OrderIntent(ts_ns=T0, intent_id="M1", strategy_id=MANUAL_STRATEGY_ID, contract=CE, side=Side.BUY,
                             quantity=LOT, order_type=OrderType.MARKET, purpose=IntentPurpose.ENTRY,
                             expected_price=4_000)
        bus.publish(OrderRequest(ts_ns=T0, intent=intent, tag="M1"))
        await asyncio.wait_for(broker.entered.wait(), 5)
        bus.publish(Command(ts_ns=T0, kind=CommandKind.CANCEL, target="M1", command_id="c1"))
        await wait_for(lambda: len(results) == 1)
        assert not results[0].ok
        assert results[0].detail == ("order M1 is still being placed, not yet at the broker: try again in a second")
        broker.release.set()
        await bus.wait_idle()
        bus.publish(Command(ts_ns=T0, kind=CommandKind.CANCEL, target="M1", command_id="c2"))
        await bus.wait_idle()
        assert results[1].ok and broker.cancelled == ["ORD1"]
    finally:
        await supervisor.stop()


async def test_a_flatten_cancels_an_entry_that_was_still_being_placed_once_the_broker_has_it() -> None:
    clock = SimClock(T0)
    bus = EventBus()
    broker = SlowBroker(clock)
    actor = ExecutionActor(bus, broker, clock)
    supervisor = Supervisor()
    supervisor.start(actor)
    try:
        intent = OrderIntent(ts_ns=T0, intent_id="E1", strategy_id="scripted", contract=CE, side=Side.BUY,
                             quantity=LOT, order_type=OrderType.LIMIT, purpose=IntentPurpose.ENTRY,
                             expected_price=4_000, limit_price=3_000)
        bus.publish(OrderRequest(ts_ns=T0, intent=intent, tag="E1"))
        await asyncio.wait_for(broker.entered.wait(), 5)
        # The risk gate's FLATTEN (it publishes one for every flatten it carries out): no order id to cancel yet.
        bus.publish(Command(ts_ns=T0, kind=CommandKind.FLATTEN, source=FLATTEN_SOURCE))
        await wait_for(lambda: not actor.inbox)
        broker.release.set()
        await bus.wait_idle()
        bus.publish(Heartbeat(ts_ns=T0))  # the next event the actor handles
        await bus.wait_idle()
        assert broker.cancelled == ["ORD1"]  # a resting entry would otherwise fill after the flatten
    finally:
        await supervisor.stop()


def test_the_cancel_target_is_an_order_id_or_an_intent_id() -> None:
    open_orders = {"O1": "M1", "O2": "I2"}
    assert find_open_order("O1", open_orders, ()) == ("O1", "M1", "")
    assert find_open_order("I2", open_orders, ()) == ("O2", "I2", "")
    assert "still being placed" in find_open_order("M9", open_orders, {"M9"})[2]
    assert "not known at the broker yet" in find_open_order("M8", open_orders, (), {"M8"})[2]
    assert find_open_order("", open_orders, ())[2].startswith("no order named")


# -- risk gate: answers, flatten by underlying ------------------------------------------------------------------
async def answered(g: Gate, kind: CommandKind, target: str = "", reason: str = "") -> CommandResult:
    command_id = f"cmd{len(g.of(CommandResult))}"
    await g.actor.handle(Command(ts_ns=g.clock.now_ns(), kind=kind, source="cli", reason=reason, target=target,
                                 command_id=command_id))
    [result] = [r for r in g.of(CommandResult) if r.command_id == command_id]
    assert result.kind is kind
    return result


def flattens(g: Gate) -> list[OrderIntent]:
    return [i for i in g.of(OrderIntent) if i.strategy_id == FLATTEN_STRATEGY_ID]


async def test_flatten_of_one_underlying_leaves_the_other_and_says_what_it_did() -> None:
    g = Gate()
    for contract in (CE, BANK):
        await g.fill(await g.intent(contract, Side.BUY, contract.lot_size))
    result = await answered(g, CommandKind.FLATTEN, "nifty")
    assert result.ok and result.detail == (f"1 exit order(s) issued for every open NIFTY position: "
                                           f"SELL {LOT} {CE.tradingsymbol}")
    assert [(i.contract, i.side, i.quantity) for i in flattens(g)] == [(CE, Side.SELL, LOT)]
    missing = await answered(g, CommandKind.FLATTEN, "SENSEX")
    assert not missing.ok
    assert missing.detail == "no open position in SENSEX: nothing to flatten (open positions are in BANKNIFTY, NIFTY)"
    unknown = await answered(g, CommandKind.FLATTEN, "DOGE")
    assert not unknown.ok and "unknown underlying 'DOGE'" in unknown.detail
    assert len(flattens(g)) == 1  # neither issued anything
    everything = await answered(g, CommandKind.FLATTEN)
    # The NIFTY exit issued above has not ended yet: a second one now could sell short; it waits instead.
    assert everything.ok and everything.count == 1 and everything.detail == (
        f"1 exit order(s) issued for every open position: SELL {BANK.lot_size} {BANK.tradingsymbol}; 1 position(s) "
        f"wait for the daemon's working orders on them to end, then get their exit: {CE.tradingsymbol} {LOT}")
    assert len(flattens(g)) == 2


async def test_flatten_reports_the_hand_placed_position_it_leaves_alone() -> None:
    g = Gate()
    await g.fill(await g.intent(CE, Side.BUY, LOT))
    hand = Fill(ts_ns=T0, fill_id="HANDH9TT9", intent_id="", order_id="H9", contract=PE, side=Side.BUY,
                quantity=LOT, price=3_000, expected_price=3_000, charges=0)
    g.actor.seen_fills([hand])
    g.manager.on_fill(PE, Side.BUY, LOT, 3_000, 0, T0)
    result = await answered(g, CommandKind.FLATTEN)
    assert result.ok and result.detail.startswith("1 exit order(s) issued")
    assert result.detail.endswith(f"left alone (placed outside the daemon, never closed by it): "
                                  f"{PE.tradingsymbol} {LOT}")
    nothing = await answered(Gate(), CommandKind.FLATTEN)
    assert nothing.ok and nothing.detail == "no open position: nothing to flatten"


async def test_halt_resume_and_reset_daily_answer_with_the_new_state() -> None:
    g = Gate(RiskConfig(max_daily_loss_pct=0.02))
    halted = await answered(g, CommandKind.HALT, reason="checking the feed")
    assert halted.ok and halted.detail == "trading is HALTED (checking the feed); risk level LOW"
    resumed = await answered(g, CommandKind.RESUME)
    assert resumed.ok and resumed.detail == "trading is ACTIVE; risk level LOW"
    again = await answered(g, CommandKind.RESUME)
    assert again.ok and again.detail.startswith("was not halted: trading is ACTIVE")
    entry = await g.intent(CE, Side.BUY, LOT, price=4_000)
    await g.fill(entry)
    await g.tick(CE, 500)  # beyond the day's limit
    assert g.state() is TradingState.REDUCING_ONLY
    reset = await answered(g, CommandKind.RESET_DAILY)
    assert reset.ok and g.state() is TradingState.ACTIVE
    assert reset.detail.startswith("daily loss window re-based at the current equity; trading is ACTIVE")
    before = len(g.of(CommandResult))
    await g.actor.handle(Command(ts_ns=g.clock.now_ns(), kind=CommandKind.HALT))  # no id: no answer
    assert len(g.of(CommandResult)) == before and g.state() is TradingState.HALTED


async def test_resume_is_refused_while_the_kill_switch_file_still_exists(tmp_path: Path) -> None:
    switch = tmp_path / "STOP"
    g = Gate(RiskConfig(kill_switch_file=switch))
    switch.touch()
    await g.tick(CE, 4_000)
    assert g.state() is TradingState.HALTED
    refused = await answered(g, CommandKind.RESUME)
    # Answering "ACTIVE" would be a lie: the next look at the file, a second later, halts again.
    assert not refused.ok and str(switch) in refused.detail and g.state() is TradingState.HALTED
    switch.unlink()
    resumed = await answered(g, CommandKind.RESUME)
    assert resumed.ok and g.state() is TradingState.ACTIVE


# -- manual orders: fills go to the strategies first, the rest to the keeper ------------------------------------
def manual(host: Host, contract: OptionContract, side: Side, quantity: int, price: int, n: int) -> tuple[
        OrderIntent, Fill]:
    intent = OrderIntent(ts_ns=at(10, 40), intent_id=f"M{n}", strategy_id=MANUAL_STRATEGY_ID, contract=contract,
                         side=side, quantity=quantity, order_type=OrderType.MARKET, purpose=IntentPurpose.ENTRY,
                         expected_price=price)
    fill = Fill(ts_ns=at(10, 40), fill_id=f"OM{n}F{quantity}", intent_id=intent.intent_id, order_id=f"OM{n}",
                contract=contract, side=side, quantity=quantity, price=price, expected_price=price, charges=0)
    return intent, fill


async def test_a_manual_buy_no_strategy_takes_is_kept_with_a_stop_and_the_time_exit() -> None:
    host = Host()
    call = host.driver.contracts[(26_000, OptionType.CE)]
    intent, fill = manual(host, call, Side.BUY, 65, 10_000, 1)
    await host.actor.handle(intent)  # the bus delivers the manual intent to the host too
    with captured_logs("WARNING") as lines:
        await host.actor.handle(fill)
    assert host.actor.keeper in host.actor.strategies
    [holding] = host.actor.holdings()
    assert (holding.strategy_id, holding.quantity, holding.average_price, holding.stop_price) == (
        ADOPTED_STRATEGY_ID, 65, 10_000, 7_000)
    [adopted] = [line for line in lines if line["event"] == "position_adopted"]
    assert adopted["owner"] == "manual" and adopted["fill_id"] == fill.fill_id
    assert host.docs["strategy:adopted"]["positions"]  # on disk: a restart finds it with its stop
    assert call.instrument_token in host.driver.ctx.held  # its ticks reach the keeper
    _more, second = manual(host, call, Side.BUY, 65, 14_000, 2)
    await host.actor.handle(_more)
    await host.actor.handle(second)
    [holding] = host.actor.holdings()
    assert (holding.quantity, holding.average_price, holding.stop_price) == (130, 12_000, 8_400)
    published: list[object] = []
    host.bus.tap(published.append)
    await host.option(call, at(10, 41), 8_400)  # the bid falls through the stop: the keeper exits all of it
    [exit_intent] = [e for e in published if isinstance(e, OrderIntent)]
    assert (exit_intent.strategy_id, exit_intent.side, exit_intent.quantity, exit_intent.purpose) == (
        ADOPTED_STRATEGY_ID, Side.SELL, 130, IntentPurpose.EXIT)


async def test_a_manual_sell_of_what_a_strategy_holds_reduces_the_strategy_not_the_keeper() -> None:
    driver, entry = entered_driver()
    host = Host()
    host.actor.restore({STRATEGY_NAME: saved_doc(driver)}, [held(entry.contract)])
    intent, fill = manual(host, entry.contract, Side.SELL, 65, 10_500, 1)
    await host.actor.handle(intent)
    await host.actor.handle(fill)
    assert host.actor.holdings() == [] and host.actor.keeper not in host.actor.strategies
    # A fill of an intent the host never saw as manual (another's) is not given to the keeper.
    stray = Fill(ts_ns=at(10, 42), fill_id="X1F65", intent_id="X1", order_id="X1",
                 contract=entry.contract, side=Side.BUY, quantity=65, price=10_000, expected_price=10_000, charges=0)
    await host.actor.handle(stray)
    assert host.actor.keeper.holdings() == []


async def test_a_manual_sell_reduces_one_holding_when_a_strategy_and_the_keeper_hold_the_same_contract() -> None:
    host = Host()
    _driver, entry = entered_driver()
    contract = entry.contract
    bought, bought_fill = manual(host, contract, Side.BUY, 65, 10_000, 1)
    await host.actor.handle(bought)
    await host.actor.handle(bought_fill)  # the strategy is flat: the keeper takes the manual lot
    host.driver.run_path(at(9, 30), RALLY)  # then the strategy enters the same contract on its own
    [own] = host.driver.intents()
    assert own.contract == contract
    await host.actor.handle(Fill(ts_ns=own.ts_ns, fill_id="OE1F65", intent_id=own.intent_id, order_id="OE1",
                                 contract=contract, side=Side.BUY, quantity=65, price=10_000,
                                 expected_price=10_000, charges=0))
    await host.actor.handle(OrderUpdate(ts_ns=own.ts_ns, intent_id=own.intent_id, order_id="OE1",
                                        status=OrderStatus.COMPLETE, filled_quantity=65, average_price=10_000))
    assert sorted((h.strategy_id, h.quantity) for h in host.actor.holdings()) == [
        (ADOPTED_STRATEGY_ID, 65), (STRATEGY_NAME, 65)]
    sold, sold_fill = manual(host, contract, Side.SELL, 65, 10_000, 2)
    await host.actor.handle(sold)
    await host.actor.handle(sold_fill)
    # The account still holds 65: one holding (with its stop and time exit) must still manage them, never none.
    assert sum(h.quantity for h in host.actor.holdings()) == 65
    assert [(h.strategy_id, h.quantity) for h in host.actor.holdings()] == [(ADOPTED_STRATEGY_ID, 65)]


async def test_a_manual_buy_of_the_contract_a_strategy_is_entering_is_not_taken_for_its_entry() -> None:
    """The strategy's own entry on the contract waits (for an approval, or the broker): an operator's manual buy of the
    same contract then is the keeper's, not the strategy's entry, and the strategy's holding stays its own size."""
    host = Host()
    host.driver.run_path(at(9, 30), RALLY)
    [own] = host.driver.intents()  # sent, not filled
    bought, bought_fill = manual(host, own.contract, Side.BUY, 65, 10_000, 1)
    await host.actor.handle(bought)
    await host.actor.handle(bought_fill)
    held = sorted((h.strategy_id, h.quantity) for h in host.actor.holdings())
    assert held == [(ADOPTED_STRATEGY_ID, 65), (STRATEGY_NAME, 0)]  # the strategy still waits for its own entry


async def test_a_restart_knows_the_manual_orders_still_working() -> None:
    host = Host()
    host.actor.restore({}, [], manual_intent_ids=["M7"])
    put = host.driver.contracts[(25_900, OptionType.PE)]
    _intent, fill = manual(host, put, Side.BUY, 65, 8_000, 7)
    await host.actor.handle(fill)
    assert [(h.strategy_id, h.quantity) for h in host.actor.holdings()] == [(ADOPTED_STRATEGY_ID, 65)]


async def test_a_manual_sell_is_taken_once_when_a_strategy_and_the_keeper_hold_the_same_contract() -> None:
    # The keeper took an earlier manual buy of the contract, then the strategy entered the same one: 130 held, by two.
    driver, entry = entered_driver()
    host = Host()
    host.actor.restore({STRATEGY_NAME: saved_doc(driver)},
                       [held(entry.contract), held(entry.contract, strategy_id=MANUAL_STRATEGY_ID)])
    assert sorted((h.strategy_id, h.quantity) for h in host.actor.holdings()) == [
        (ADOPTED_STRATEGY_ID, 65), (STRATEGY_NAME, 65)]
    intent, fill = manual(host, entry.contract, Side.SELL, 65, 10_500, 1)
    await host.actor.handle(intent)
    await host.actor.handle(fill)
    # One lot was sold, so one lot is still held by someone who keeps a stop on it (not both reduced: an unmanaged lot).
    assert sum(h.quantity for h in host.actor.holdings()) == 65
