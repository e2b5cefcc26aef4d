"""The risk gate actor: the I/O around the pure RiskManager (broker margins, kill switch, commands, flatten,
announcements, persistence, reconciliation). The decisions themselves are tested in test_risk_core.py."""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import pytest

from trader.actors.risk import FLATTEN_SOURCE, FLATTEN_STRATEGY_ID, STATE_NAME, RiskGateActor
from trader.adapters.ports import BrokerOrder, BrokerTrade
from trader.bus import EventBus
from trader.clock import SimClock
from trader.events import (
    Command,
    CommandKind,
    Fill,
    Heartbeat,
    IntentPurpose,
    OrderIntent,
    OrderRequest,
    OrderStatus,
    OrderType,
    OrderUpdate,
    RiskEvent,
    Side,
    Tick,
    TradingState,
)
from trader.ids import IdFactory
from trader.market.calendar import IST
from trader.market.instruments import OptionContract
from trader.risk import RiskConfig, RiskManager
from trader.store.journal import Journal

from helpers import FakeBroker

pytestmark = pytest.mark.usefixtures("quiet_logs")

T0 = int(datetime(2026, 11, 20, 10, 0, tzinfo=IST).timestamp()) * 1_000_000_000  # Fri, inside the entry window
CE = OptionContract.parse("NIFTY26NOV26000CE", instrument_token=101)  # expires Mon 23 Nov 2026
PE = OptionContract.parse("NIFTY26NOV26000PE", instrument_token=102)
LOT = CE.lot_size
_ids = itertools.count(1)
E = TypeVar("E")


class Gate:
    def __init__(self, config: RiskConfig | None = None, *, broker: FakeBroker | None = None,
                 journal: Journal | None = None, manager: RiskManager | None = None) -> None:
        self.clock = SimClock(T0)
        self.bus = EventBus()
        self.published: list[object] = []
        self.bus.tap(self.published.append)
        self.broker = broker if broker is not None else FakeBroker(self.clock)
        self.manager = manager or RiskManager(config or RiskConfig(), now_ns=self.clock.now_ns)
        self.actor = RiskGateActor(self.bus, self.manager, self.clock, IdFactory(T0), broker=self.broker,
                                   journal=journal)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.published if type(e) is kind]

    async def intent(self, contract: OptionContract, side: Side, quantity: int, price: int = 4_000) -> OrderIntent:
        intent = OrderIntent(ts_ns=self.clock.now_ns(), intent_id=f"I{next(_ids)}", strategy_id="test",
                             contract=contract, side=side, quantity=quantity, order_type=OrderType.MARKET,
                             purpose=IntentPurpose.ENTRY, expected_price=price)
        await self.actor.handle(intent)
        return intent

    def state(self) -> TradingState:
        """Read through a call: mypy would keep an earlier ``assert actor.state is X`` narrowing across the
        calls that change the state (python/mypy#17537)."""
        return self.actor.state

    def approved(self, intent: OrderIntent) -> bool:
        return any(r.intent.intent_id == intent.intent_id for r in self.of(OrderRequest))

    def refusal(self, intent: OrderIntent) -> str:
        return next((u.reason for u in self.of(OrderUpdate) if u.intent_id == intent.intent_id), "")

    async def fill(self, intent: OrderIntent, price: int | None = None) -> None:
        token = intent.contract.instrument_token  # the broker holds what it filled
        self.broker.held[token] = self.broker.held.get(token, 0) + intent.side.sign * intent.quantity
        await self.actor.handle(Fill(ts_ns=self.clock.now_ns(), fill_id=f"F{next(_ids)}", intent_id=intent.intent_id,
                                     order_id="O", contract=intent.contract, side=intent.side,
                                     quantity=intent.quantity, price=price or intent.expected_price, charges=0,
                                     expected_price=intent.expected_price))
        await self.actor.handle(OrderUpdate(ts_ns=self.clock.now_ns(), intent_id=intent.intent_id, order_id="O",
                                            status=OrderStatus.COMPLETE, filled_quantity=intent.quantity))

    async def tick(self, contract: OptionContract, price: int, after_s: int = 1) -> None:
        self.clock.jump_to(self.clock.now_ns() + after_s * 1_000_000_000)
        await self.actor.handle(Tick(ts_ns=self.clock.now_ns(), instrument_token=contract.instrument_token,
                                     last_price=price, bid=price - 5, bid_qty=650, ask=price + 5, ask_qty=650))

    async def command(self, kind: CommandKind) -> None:
        await self.actor.handle(Command(ts_ns=self.clock.now_ns(), kind=kind, source="test"))


async def test_approval_tags_the_order_and_refusal_ends_the_intent() -> None:
    g = Gate()
    good = await g.intent(CE, Side.BUY, LOT)
    [request] = g.of(OrderRequest)
    assert request.intent is good and request.tag == good.intent_id
    bad = await g.intent(CE, Side.BUY, LOT + 1)
    [update] = g.of(OrderUpdate)
    assert update.intent_id == bad.intent_id and update.status is OrderStatus.REJECTED and update.order_id == ""
    assert update.reason.startswith("risk: ") and "lot" in update.reason
    await g.actor.handle(good)  # the same intent again: ignored, not a second order
    assert len(g.of(OrderRequest)) == 1
    assert (g.actor.approved, g.actor.rejected) == (1, 1)


async def test_the_brokers_margin_figures_decide_and_a_silent_broker_falls_back_to_the_model() -> None:
    tight = Gate()
    tight.broker.available = 5_000_000  # ₹50,000 free: the ₹50,000 buffer leaves no room
    assert "margin" in tight.refusal(await tight.intent(CE, Side.BUY, LOT))
    silent = Gate()
    silent.broker.margins_down = True
    assert silent.approved(await silent.intent(CE, Side.BUY, LOT))


async def test_kill_switch_file_halts_everything_but_a_flatten(tmp_path: Path) -> None:
    kill = tmp_path / "KILL"
    g = Gate(RiskConfig(kill_switch_file=kill))
    entry = await g.intent(CE, Side.BUY, LOT)
    await g.fill(entry)
    await g.tick(CE, 4_100)
    assert g.state() is TradingState.ACTIVE
    kill.touch()
    await g.tick(CE, 4_100)
    assert g.state() is TradingState.HALTED
    assert g.of(RiskEvent)[-1].state is TradingState.HALTED
    assert "HALTED" in g.refusal(await g.intent(PE, Side.BUY, LOT))
    assert "HALTED" in g.refusal(await g.intent(CE, Side.SELL, LOT))  # even an exit, except ...

    await g.command(CommandKind.FLATTEN)  # ... the flatten the operator asks for
    flatten = [i for i in g.of(OrderIntent) if i.strategy_id == FLATTEN_STRATEGY_ID]
    assert [(i.contract, i.side, i.quantity, i.order_type, i.market_protection) for i in flatten] == [
        (CE, Side.SELL, LOT, OrderType.MARKET, -1.0)]
    await g.actor.handle(flatten[0])  # the bus delivers the gate's own intent back to it
    assert g.approved(flatten[0])


async def test_the_kill_switch_halts_on_heartbeats_when_no_tick_comes(tmp_path: Path) -> None:
    # The stop for "when nothing answers": a dead feed (or a closed market) must not keep it from firing.
    kill = tmp_path / "KILL"
    g = Gate(RiskConfig(kill_switch_file=kill))
    kill.touch()
    g.clock.jump_to(g.clock.now_ns() + 5 * 1_000_000_000)
    await g.actor.handle(Heartbeat(ts_ns=g.clock.now_ns()))
    assert g.state() is TradingState.HALTED
    assert "kill-switch" in g.actor.manager.state_reason


async def test_a_breach_with_flatten_on_breach_exits_every_position() -> None:
    g = Gate(RiskConfig(flatten_on_breach=True))
    entry = await g.intent(CE, Side.BUY, LOT, price=4_000)
    await g.fill(entry)
    await g.tick(CE, 500)  # 65 × ₹35 = ₹2,275 lost: beyond the 2 % daily limit of ₹2,000
    assert g.state() is TradingState.REDUCING_ONLY
    [flatten] = [i for i in g.of(OrderIntent) if i.strategy_id == FLATTEN_STRATEGY_ID]
    assert (flatten.side, flatten.quantity) == (Side.SELL, LOT)
    # The same path as the operator's flatten: the execution actor cancels our working orders on this command.
    assert [(c.kind, c.source) for c in g.of(Command)] == [(CommandKind.FLATTEN, FLATTEN_SOURCE)]
    await g.actor.handle(flatten)
    assert g.approved(flatten)
    assert "REDUCING_ONLY" in g.refusal(await g.intent(PE, Side.BUY, LOT))


async def test_a_flatten_exit_waits_for_our_working_orders_and_entries_wait_for_the_flatten() -> None:
    g = Gate()
    await g.fill(await g.intent(CE, Side.BUY, LOT))
    stop = await g.intent(CE, Side.SELL, LOT)  # an exit of ours, approved and still working
    assert g.approved(stop)
    await g.command(CommandKind.FLATTEN)
    assert flatten_intents(g) == []  # sent now, it and the working exit could sell twice what is held
    assert "is being flattened" in g.refusal(await g.intent(CE, Side.BUY, LOT))
    await g.actor.handle(OrderUpdate(ts_ns=g.clock.now_ns(), intent_id=stop.intent_id, order_id="O2",
                                     status=OrderStatus.CANCELLED))  # cancelled by the execution actor
    [flatten] = flatten_intents(g)
    assert (flatten.side, flatten.quantity) == (Side.SELL, LOT)
    late = await g.intent(CE, Side.SELL, LOT)  # another exit approved before the flatten's comes back
    assert g.approved(late)
    await g.actor.handle(flatten)
    assert not g.approved(flatten) and "waits for the daemon's working orders" in g.refusal(flatten)
    [refused] = [u for u in g.of(OrderUpdate) if u.intent_id == flatten.intent_id]
    await g.actor.handle(refused)  # the bus delivers the gate's own refusal back to it
    await g.fill(late)  # the other exit closes the position: no second exit, nothing sold short
    assert g.manager.book.quantity(CE.instrument_token) == 0 and flatten_intents(g) == [flatten]
    assert g.approved(await g.intent(CE, Side.BUY, LOT))  # the flatten is over: entries go again


def flatten_intents(g: Gate) -> list[OrderIntent]:
    return [i for i in g.of(OrderIntent) if i.strategy_id == FLATTEN_STRATEGY_ID]


async def test_after_stop_entries_no_entry_is_approved_but_exits_are() -> None:
    g = Gate()
    entry = await g.intent(CE, Side.BUY, LOT)
    await g.fill(entry)
    await g.command(CommandKind.STOP_ENTRIES)
    assert "shutting down" in g.refusal(await g.intent(PE, Side.BUY, LOT))
    assert g.approved(await g.intent(CE, Side.SELL, LOT))


async def test_a_breached_day_survives_a_restart(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "paper.sqlite3")
    g = Gate(journal=journal)
    entry = await g.intent(CE, Side.BUY, LOT, price=4_000)
    await g.fill(entry)
    g.broker.held = {CE.instrument_token: LOT}
    await g.tick(CE, 500)
    assert g.state() is TradingState.REDUCING_ONLY
    journal.close()

    reopened = Journal(tmp_path / "paper.sqlite3")
    state = reopened.load_state(STATE_NAME)
    assert state is not None
    restarted = Gate(journal=reopened, broker=g.broker,
                     manager=RiskManager.from_state(RiskConfig(), state, now_ns=lambda: T0))
    await restarted.actor.on_start()
    assert restarted.state() is TradingState.REDUCING_ONLY
    assert "REDUCING_ONLY" in restarted.refusal(await restarted.intent(PE, Side.BUY, LOT))
    assert restarted.approved(await restarted.intent(CE, Side.SELL, LOT))  # the restored position can be exited


async def test_an_exit_of_a_position_closed_by_hand_is_refused_not_sold_short() -> None:
    """Fault injection found this 3 times in 3: the trader sells in the broker's app, then the strategy's stop
    fires; the exit must not sell again (the account would be short one uncovered option)."""
    g = Gate()
    entry = await g.intent(CE, Side.BUY, LOT)
    await g.fill(entry)
    g.broker.held = {}  # sold by hand: the broker's books show the order (no tag of ours) and its trade
    g.broker.orders.append(BrokerOrder(order_id="H1", tag="", status=OrderStatus.COMPLETE, quantity=LOT,
                                       filled_quantity=LOT, average_price=3_000,
                                       instrument_token=CE.instrument_token, side=Side.SELL))
    g.broker.trades.append(BrokerTrade("T1", "H1", CE.instrument_token, CE.tradingsymbol, Side.SELL, LOT, 3_000))
    exit_ = await g.intent(CE, Side.SELL, LOT)
    assert not g.approved(exit_)
    assert "net short" in g.refusal(exit_)
    assert g.manager.book.quantity(CE.instrument_token) == 0
    [outside] = [f for f in g.of(Fill) if f.intent_id == ""]
    assert (outside.fill_id, outside.side, outside.quantity, outside.price) == ("HANDH1TT1", Side.SELL, LOT, 3_000)
    g.broker.held = {}
    again = await g.intent(CE, Side.BUY, LOT)
    await g.fill(again)
    assert g.approved(await g.intent(CE, Side.SELL, LOT))  # a real exit still passes


async def test_a_sell_that_opens_a_short_is_refused_unless_allowed() -> None:
    g = Gate()
    refused = await g.intent(CE, Side.SELL, LOT)
    assert "net short" in g.refusal(refused)
    allowed = Gate(RiskConfig(allow_short_options=True))
    assert "net short" not in allowed.refusal(await allowed.intent(CE, Side.SELL, LOT))


async def test_a_position_report_lagging_our_own_fill_changes_nothing() -> None:
    """The broker's /positions may not show a fill yet; with no outside trade to explain it the book stands."""
    g = Gate()
    entry = await g.intent(CE, Side.BUY, LOT)
    await g.fill(entry)
    g.broker.held = {}  # lagging: no trade of anyone else on this contract
    assert g.approved(await g.intent(CE, Side.SELL, LOT))
    assert [f for f in g.of(Fill) if f.intent_id == ""] == []


async def test_a_flatten_leaves_a_hand_placed_position_alone() -> None:
    """Review finding 9: positions placed outside the daemon are counted, never closed by it (not even a flatten)."""
    g = Gate()
    entry = await g.intent(CE, Side.BUY, LOT)
    await g.fill(entry)
    hand = Fill(ts_ns=T0, fill_id="HANDH9TT9", intent_id="", order_id="H9", contract=PE, side=Side.BUY,
                quantity=LOT, price=3_000, expected_price=3_000, charges=0)
    g.actor.seen_fills([hand])
    g.manager.on_fill(PE, Side.BUY, LOT, 3_000, 0, T0)
    await g.command(CommandKind.FLATTEN)
    flattened = [i for i in g.of(OrderIntent) if i.strategy_id == FLATTEN_STRATEGY_ID]
    assert [(i.contract, i.side, i.quantity) for i in flattened] == [(CE, Side.SELL, LOT)]


async def test_an_exit_the_broker_cannot_confirm_waits_rather_than_risk_a_naked_short() -> None:
    """Fault injection, 3 of 8 trials: a hand close, then a failed position read, and the exit sold again."""
    g = Gate()
    entry = await g.intent(CE, Side.BUY, LOT)
    await g.fill(entry)
    g.broker.margins_down = True  # the positions endpoint times out too
    waiting = await g.intent(CE, Side.SELL, LOT)
    assert not g.approved(waiting)
    assert "could not be confirmed" in g.refusal(waiting)
    g.broker.margins_down = False
    assert g.approved(await g.intent(CE, Side.SELL, LOT))  # the strategy's retry goes once the broker answers
