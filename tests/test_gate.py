"""The start-up reconciliation gate: the journal (our intents) against the broker's books (orders, trades,
positions). Each case is a restart after a crash at one step, or a book the journal cannot explain."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from trader.actors.execution import ExecutionActor
from trader.actors.portfolio import PortfolioActor
from trader.actors.risk import RiskGateActor
from trader.adapters.ports import BrokerOrder, BrokerTrade
from trader.bus import EventBus
from trader.clock import NS_PER_SECOND, SimClock
from trader.events import (
    Fill,
    IntentPurpose,
    OrderIntent,
    OrderRequest,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    TradingState,
    VenueStatus,
)
from trader.gate import GateResult, restore_from_gate, run_gate
from trader.ids import IdFactory
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import OptionContract
from trader.risk.config import RiskConfig
from trader.risk.core import RiskManager
from trader.store.journal import SCHEMA_VERSION, Journal, JournalError
from trader.store.orders import OrderJournal

from helpers import T0, FakeBroker

CE = OptionContract.parse("NIFTY26DEC26000CE", instrument_token=101)
PE = OptionContract.parse("NIFTY26DEC26000PE", instrument_token=102)
LOT = CE.lot_size


async def no_sleep(_seconds: float) -> None:
    return None


def request(tag: str, side: Side = Side.BUY, quantity: int = LOT, contract: OptionContract = CE,
            purpose: IntentPurpose = IntentPurpose.ENTRY) -> OrderRequest:
    intent = OrderIntent(ts_ns=T0, intent_id=tag, strategy_id="ema", contract=contract, side=side, quantity=quantity,
                         order_type=OrderType.MARKET, purpose=purpose, expected_price=10_000)
    return OrderRequest(ts_ns=T0, intent=intent, tag=tag)


def fill(req: OrderRequest, order_id: str, quantity: int, price: int, cumulative: int) -> Fill:
    intent = req.intent
    return Fill(ts_ns=T0, fill_id=f"{order_id}F{cumulative}", intent_id=intent.intent_id, order_id=order_id,
                contract=intent.contract, side=intent.side, quantity=quantity, price=price,
                expected_price=intent.expected_price, charges=2_000, purpose=intent.purpose)


def order(req: OrderRequest, order_id: str, status: OrderStatus, filled: int, average: int) -> BrokerOrder:
    return BrokerOrder(order_id=order_id, tag=req.tag, status=status, quantity=req.intent.quantity,
                       filled_quantity=filled, average_price=average,
                       instrument_token=req.intent.contract.instrument_token,
                       tradingsymbol=req.intent.contract.tradingsymbol, side=req.intent.side)


@pytest.fixture
def journal(tmp_path: Path) -> OrderJournal:
    return OrderJournal(Journal(tmp_path / "live.sqlite3"))


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker(SimClock(T0))


async def gate(broker: FakeBroker, journal: OrderJournal) -> object:
    return await run_gate(broker, journal, InstrumentMaster(), T0, sleep=no_sleep)


async def test_killed_after_the_intent_was_written_it_ends_not_sent_and_is_never_resent(
        broker: FakeBroker, journal: OrderJournal) -> None:
    req = request("E1")
    assert journal.record_intent(req, T0)
    result = await run_gate(broker, journal, InstrumentMaster(), T0, sleep=no_sleep)
    assert result.halt_reason == ""
    assert result.adopted == [] and broker.orders == []
    assert journal.open_intents() == []
    assert journal.terminal_status("E1") is OrderStatus.REJECTED


async def test_killed_after_sending_the_order_is_adopted_and_its_fills_booked_once(
        broker: FakeBroker, journal: OrderJournal) -> None:
    req = request("E2", quantity=2 * LOT)
    journal.record_intent(req, T0)  # the kill came before the reply was journaled
    broker.orders.append(order(req, "O2", OrderStatus.OPEN, LOT, 10_500))
    broker.trades.append(BrokerTrade("T1", "O2", CE.instrument_token, CE.tradingsymbol, Side.BUY, LOT, 10_500))
    broker.held = {CE.instrument_token: LOT}
    result = await run_gate(broker, journal, InstrumentMaster(), T0, sleep=no_sleep)
    assert result.halt_reason == ""
    assert [(r.tag, order_id, filled, value) for r, order_id, filled, value in result.adopted] == \
        [("E2", "O2", LOT, LOT * 10_500)]
    assert [(f.fill_id, f.quantity, f.price) for f in journal.fills()] == [(f"O2F{LOT}", LOT, 10_500)]
    assert [(p.contract, p.quantity, p.strategy_id) for p in result.positions] == [(CE, LOT, "ema")]
    again = await run_gate(broker, journal, InstrumentMaster(), T0, sleep=no_sleep)  # a second restart
    assert len(journal.fills()) == 1 and again.halt_reason == ""


async def test_killed_between_fill_and_journal_write_books_the_fill_exactly_once(
        broker: FakeBroker, journal: OrderJournal) -> None:
    req = request("E3")
    journal.record_intent(req, T0)
    journal.record_sent("E3", "O3", T0)
    broker.orders.append(order(req, "O3", OrderStatus.COMPLETE, LOT, 10_000))
    broker.held = {CE.instrument_token: LOT}
    result = await run_gate(broker, journal, InstrumentMaster(), T0, sleep=no_sleep)
    assert result.halt_reason == "" and result.adopted == []
    assert journal.terminal_status("E3") is OrderStatus.COMPLETE
    assert [f.fill_id for f in result.fills] == [f"O3F{LOT}"]
    assert not journal.record_fill(fill(req, "O3", LOT, 10_000, LOT))  # the postback arriving late is a no-op
    assert len(journal.fills()) == 1


async def test_a_sent_order_the_broker_does_not_have_halts(broker: FakeBroker, journal: OrderJournal) -> None:
    req = request("E4")
    journal.record_intent(req, T0)
    journal.record_sent("E4", "O4", T0)
    result = await run_gate(broker, journal, InstrumentMaster(), T0, sleep=no_sleep)
    assert "order O4 (tag E4) was sent today" in result.halt_reason


async def test_two_orders_under_one_tag_halt(broker: FakeBroker, journal: OrderJournal) -> None:
    req = request("E5")
    journal.record_intent(req, T0)
    broker.orders += [order(req, "O5", OrderStatus.OPEN, 0, 0), order(req, "O6", OrderStatus.OPEN, 0, 0)]
    result = await run_gate(broker, journal, InstrumentMaster(), T0, sleep=no_sleep)
    assert "2 broker orders carry our tag E5" in result.halt_reason


async def test_journal_fills_the_broker_does_not_report_halt(broker: FakeBroker, journal: OrderJournal) -> None:
    """A forged or invented fill: the broker's order has nothing filled."""
    req = request("E6")
    journal.record_intent(req, T0)
    journal.record_sent("E6", "O6", T0)
    journal.record_fill(fill(req, "O6", LOT, 100, LOT))
    broker.orders.append(order(req, "O6", OrderStatus.OPEN, 0, 0))
    result = await run_gate(broker, journal, InstrumentMaster(), T0, sleep=no_sleep)
    assert "the broker reports 0" in result.halt_reason


async def test_a_position_closed_by_hand_is_reported_not_sold_again(broker: FakeBroker,
                                                                    journal: OrderJournal) -> None:
    """Ours bought 1 lot; the trader sold it in the broker's app: the books agree once the outside sale counts."""
    req = request("E7")
    journal.record_intent(req, T0)
    journal.record_sent("E7", "O7", T0)
    journal.record_fill(fill(req, "O7", LOT, 10_000, LOT))
    journal.record_update(OrderUpdate(T0, "E7", "O7", OrderStatus.COMPLETE, LOT, 0, 10_000))
    broker.orders.append(order(req, "O7", OrderStatus.COMPLETE, LOT, 10_000))
    hand = BrokerOrder(order_id="H1", tag="", status=OrderStatus.COMPLETE, quantity=LOT, filled_quantity=LOT,
                       average_price=9_000, instrument_token=CE.instrument_token, tradingsymbol=CE.tradingsymbol,
                       side=Side.SELL)
    broker.orders.append(hand)
    broker.trades += [BrokerTrade("T7", "O7", CE.instrument_token, CE.tradingsymbol, Side.BUY, LOT, 10_000),
                      BrokerTrade("T8", "H1", CE.instrument_token, CE.tradingsymbol, Side.SELL, LOT, 9_000)]
    broker.held = {}
    master = InstrumentMaster()
    master.add(CE)
    result = await run_gate(broker, journal, master, T0, sleep=no_sleep)
    assert result.halt_reason == ""
    assert result.outside_tokens == {CE.instrument_token}
    outside = [f for f in result.fills if f.intent_id == ""]
    assert [(f.side, f.quantity, f.price) for f in outside] == [(Side.SELL, LOT, 9_000)]
    net = sum(f.side.sign * f.quantity for f in result.fills)
    assert net == 0  # the books hold nothing: an exit now would be a naked short


async def test_a_position_no_trade_explains_halts(broker: FakeBroker, journal: OrderJournal) -> None:
    broker.held = {PE.instrument_token: LOT}
    result = await run_gate(broker, journal, InstrumentMaster(), T0, sleep=no_sleep)
    assert f"the broker holds {LOT} units" in result.halt_reason


async def test_an_unreachable_broker_halts_with_what_was_unreachable(broker: FakeBroker,
                                                                      journal: OrderJournal) -> None:
    broker.book_down = True
    result = await run_gate(broker, journal, InstrumentMaster(), T0, sleep=no_sleep, attempts=3)
    assert result.halt_reason.startswith("reconciliation: the broker's order, trade and position books could not "
                                         "be read after 3 tries")


# -- the journal file itself ------------------------------------------------------------------------------------
def test_a_version_1_journal_is_migrated_and_keeps_its_state(tmp_path: Path) -> None:
    path = tmp_path / "paper.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE state (name TEXT PRIMARY KEY, document BLOB NOT NULL, updated_ns INTEGER NOT NULL)")
    db.execute("INSERT INTO state VALUES ('risk', '{\"halted\": true}', 5)")
    db.commit()
    db.close()
    journal = Journal(path)
    assert journal.schema_version == SCHEMA_VERSION
    assert journal.load_state("risk") == {"halted": True}
    assert OrderJournal(journal).open_intents() == []


def test_a_journal_from_a_newer_version_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "live.sqlite3"
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(JournalError, match=r"newer trader .* upgrade trader, or move the file aside"):
        Journal(path)


def test_a_corrupt_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "live.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError, match=f"{path}.*move it aside"):
        Journal(path)


async def test_a_full_disk_halts_entries_and_the_order_is_never_sent(tmp_path: Path) -> None:
    """SQLite's own limit stands in for a full disk (root ignores a read-only directory): the write-ahead fails, so
    the order is not sent, its intent ends with the reason, and a HALT naming the file goes on the bus."""
    raw = Journal(tmp_path / "live.sqlite3")
    pages = raw._db.execute("PRAGMA page_count").fetchone()[0]
    raw._db.execute(f"PRAGMA max_page_count = {pages}")
    clock = SimClock(T0, speed=0)
    bus = EventBus()
    published: list[object] = []
    bus.tap(published.append)
    fake = FakeBroker(clock)
    actor = ExecutionActor(bus, fake, clock, journal=OrderJournal(raw))
    big = request("E9")
    big = OrderRequest(ts_ns=T0, intent=dataclasses.replace(big.intent, reason="x" * 20_000), tag="E9")
    await actor.handle(big)
    await actor.settle()
    assert fake.orders == []
    [update] = [e for e in published if isinstance(e, OrderUpdate)]
    assert update.status is OrderStatus.REJECTED and "journal" in update.reason
    [stop] = [e for e in published if isinstance(e, VenueStatus)]
    assert not stop.ok and stop.problem == "journal_unwritable" and str(raw.path) in stop.detail
    assert actor.journal_failed
    exit_ = request("X9", side=Side.SELL, purpose=IntentPurpose.EXIT)
    await actor.handle(exit_)  # an exit still goes: it only takes risk off
    await actor.settle()
    assert [o.tag for o in fake.orders] == ["X9"]


class Actors:
    """The actors a restart restores, not running: the gate hands them their state before they start."""

    def __init__(self, broker: FakeBroker, clock: SimClock) -> None:
        self.bus = EventBus()
        self.portfolio = PortfolioActor(self.bus, 10_000_000)
        self.manager = RiskManager(RiskConfig(), now_ns=clock.now_ns)
        self.risk = RiskGateActor(self.bus, self.manager, clock, IdFactory(T0), broker=broker)
        self.execution = ExecutionActor(self.bus, broker, clock)

    def restore(self, result: GateResult, broker: FakeBroker, *, replay: bool = False) -> None:
        restore_from_gate(result, self.portfolio, self.risk, self.execution, broker=broker, now_ns=T0,
                          replay_windows=replay)


async def test_a_restart_restores_books_open_orders_with_their_timers_and_the_rate_window(
        broker: FakeBroker, journal: OrderJournal) -> None:
    clock = SimClock(T0, speed=0)
    held = request("E10", quantity=LOT)
    journal.record_intent(held, T0)
    journal.record_sent("E10", "O10", T0)
    journal.record_fill(fill(held, "O10", LOT, 10_000, LOT))
    journal.record_update(OrderUpdate(T0, "E10", "O10", OrderStatus.COMPLETE, LOT, 0, 10_000))
    working = OrderRequest(ts_ns=T0 - NS_PER_SECOND // 2, intent=dataclasses.replace(
        request("X11", side=Side.SELL, purpose=IntentPurpose.EXIT).intent, ts_ns=T0 - NS_PER_SECOND // 2), tag="X11")
    journal.record_intent(working, T0)
    journal.record_sent("X11", "O11", T0)
    broker.orders += [order(held, "O10", OrderStatus.COMPLETE, LOT, 10_000),
                      order(working, "O11", OrderStatus.OPEN, 0, 0)]
    broker.held = {CE.instrument_token: LOT}
    result = await run_gate(broker, journal, InstrumentMaster(), T0, sleep=no_sleep)
    actors = Actors(broker, clock)
    actors.restore(result, broker)
    assert actors.portfolio.position(CE.instrument_token) == LOT
    assert actors.portfolio.book.positions[CE.instrument_token].average_price == 10_000
    assert actors.manager.book.quantity(CE.instrument_token) == LOT
    assert actors.manager.book.charges == 2_000
    assert actors.execution.open_orders == 1
    assert broker.adopted == [("X11", "O11", 0, 0)]
    # the re-price timer counts from when the order was sent, not from the restart
    assert actors.execution._cancel_at["O11"] == working.ts_ns + int(30 * NS_PER_SECOND)
    # both intents were sent within the last second: they still count against the order rate
    assert actors.execution.limiter.used(T0) == 2
    assert actors.manager.has_pending(CE.instrument_token)  # the working exit holds its place
    assert actors.manager.state is TradingState.ACTIVE


async def test_a_halt_from_an_earlier_start_is_cleared_only_when_the_books_agree(
        broker: FakeBroker, journal: OrderJournal) -> None:
    clock = SimClock(T0, speed=0)
    broker.book_down = True
    actors = Actors(broker, clock)
    actors.restore(await run_gate(broker, journal, InstrumentMaster(), T0, sleep=no_sleep, attempts=2), broker)
    assert actors.manager.state is TradingState.HALTED
    saved = actors.manager.to_state()
    broker.book_down = False
    again = Actors(broker, clock)
    again.manager = RiskManager.from_state(RiskConfig(), saved, now_ns=clock.now_ns)
    again.risk.manager = again.manager
    again.restore(await run_gate(broker, journal, InstrumentMaster(), T0, sleep=no_sleep), broker)
    assert again.manager.state is TradingState.ACTIVE
    operator = RiskManager(RiskConfig(), now_ns=clock.now_ns)
    operator.halt("operator says stop", T0)
    third = Actors(broker, clock)
    third.manager = third.risk.manager = operator
    third.restore(await run_gate(broker, journal, InstrumentMaster(), T0, sleep=no_sleep), broker)
    assert operator.state is TradingState.HALTED  # the gate never lifts a halt it did not set


def filled_yesterday(journal: OrderJournal, tag: str, order_id: str) -> None:
    """One lot bought yesterday at ₹100, all of it journaled."""
    yesterday = T0 - 86_400 * NS_PER_SECOND
    req = OrderRequest(ts_ns=yesterday, intent=dataclasses.replace(request(tag).intent, ts_ns=yesterday), tag=tag)
    journal.record_intent(req, yesterday)
    journal.record_sent(tag, order_id, yesterday)
    journal.record_fill(dataclasses.replace(fill(req, order_id, LOT, 10_000, LOT), ts_ns=yesterday))
    journal.record_update(OrderUpdate(yesterday, tag, order_id, OrderStatus.COMPLETE, LOT, 0, 10_000))


async def test_a_position_the_broker_closed_before_today_is_closed_in_the_books_not_halted(
        broker: FakeBroker, journal: OrderJournal) -> None:
    """Bought yesterday, squared off (or expired) while the daemon was away: today's books show nothing of it."""
    filled_yesterday(journal, "E12", "O12")
    result = await run_gate(broker, journal, InstrumentMaster(), T0, sleep=no_sleep)
    assert result.halt_reason == ""
    assert result.positions == []
    assert sum(f.side.sign * f.quantity for f in result.fills) == 0
    [closing] = [f for f in result.fills if f.fill_id.startswith("CLOSED")]
    assert (closing.side, closing.quantity, closing.price) == (Side.SELL, LOT, 10_000)


async def test_a_lost_risk_state_cannot_reset_a_day_the_fills_say_was_a_loss(broker: FakeBroker,
                                                                              journal: OrderJournal) -> None:
    """Fault injection item 7: deleting the state (or its -wal) on a breached day started ACTIVE and traded on."""
    clock = SimClock(T0, speed=0)
    buy, sell = request("E20"), request("X21", side=Side.SELL, purpose=IntentPurpose.EXIT)
    for req, order_id, price in ((buy, "O20", 10_000), (sell, "O21", 6_000)):  # ₹40 × 65 = ₹2,600 lost
        journal.record_intent(req, T0)
        journal.record_sent(req.tag, order_id, T0)
        journal.record_fill(fill(req, order_id, LOT, price, LOT))
        journal.record_update(OrderUpdate(T0, req.tag, order_id, OrderStatus.COMPLETE, LOT, 0, price))
        broker.orders.append(order(req, order_id, OrderStatus.COMPLETE, LOT, price))
    actors = Actors(broker, clock)
    actors.restore(await run_gate(broker, journal, InstrumentMaster(), T0, sleep=no_sleep), broker, replay=True)
    assert actors.manager.state is TradingState.REDUCING_ONLY  # the daily limit (2 % of ₹1 lakh) is breached
    assert actors.portfolio.summary().trades == 1


async def test_a_lost_journal_hands_our_own_positions_to_the_keeper_and_only_counts_hand_placed_ones(
        broker: FakeBroker, journal: OrderJournal) -> None:
    ours = request("E0ABCDEF00000001")  # the shape of our ids; the journal that knew it is gone
    hand = BrokerOrder(order_id="H2", tag="", status=OrderStatus.COMPLETE, quantity=LOT, filled_quantity=LOT,
                       average_price=5_000, instrument_token=PE.instrument_token, tradingsymbol=PE.tradingsymbol,
                       side=Side.BUY)
    broker.orders += [order(ours, "O30", OrderStatus.COMPLETE, LOT, 10_000), hand]
    broker.trades += [BrokerTrade("T30", "O30", CE.instrument_token, CE.tradingsymbol, Side.BUY, LOT, 10_000),
                      BrokerTrade("T31", "H2", PE.instrument_token, PE.tradingsymbol, Side.BUY, LOT, 5_000)]
    broker.held = {CE.instrument_token: LOT, PE.instrument_token: LOT}
    master = InstrumentMaster()
    master.add(CE)
    master.add(PE)
    result = await run_gate(broker, journal, master, T0, sleep=no_sleep)
    assert result.halt_reason == ""
    assert [(p.contract, p.quantity, p.strategy_id) for p in result.positions] == [(CE, LOT, "")]
    assert sorted(f.contract.instrument_token for f in result.fills) == [CE.instrument_token, PE.instrument_token]


def hand_order(order_id: str, contract: OptionContract, side: Side, price: int, tag: str = "") -> BrokerOrder:
    return BrokerOrder(order_id=order_id, tag=tag, status=OrderStatus.COMPLETE, quantity=LOT, filled_quantity=LOT,
                       average_price=price, instrument_token=contract.instrument_token,
                       tradingsymbol=contract.tradingsymbol, side=side)


def trade(order_id: str, contract: OptionContract, side: Side, price: int, trade_id: str = "") -> BrokerTrade:
    return BrokerTrade(trade_id or f"T{order_id}", order_id, contract.instrument_token, contract.tradingsymbol, side,
                       LOT, price)


def both() -> InstrumentMaster:
    master = InstrumentMaster()
    master.add(CE)
    master.add(PE)
    return master


async def test_a_strategy_gets_back_only_what_the_broker_still_holds(broker: FakeBroker,
                                                                     journal: OrderJournal) -> None:
    """Review finding 2: we held 130, the trader sold 65 by hand; the strategy must manage 65, not try to sell 130."""
    req = request("E40", quantity=2 * LOT)
    journal.record_intent(req, T0)
    journal.record_sent("E40", "O40", T0)
    journal.record_fill(fill(req, "O40", 2 * LOT, 10_000, 2 * LOT))
    journal.record_update(OrderUpdate(T0, "E40", "O40", OrderStatus.COMPLETE, 2 * LOT, 0, 10_000))
    broker.orders += [order(req, "O40", OrderStatus.COMPLETE, 2 * LOT, 10_000),
                      hand_order("H40", CE, Side.SELL, 12_000)]
    broker.trades += [trade("H40", CE, Side.SELL, 12_000)]
    broker.held = {CE.instrument_token: LOT}
    result = await run_gate(broker, journal, both(), T0, sleep=no_sleep)
    assert result.halt_reason == ""
    assert [(p.quantity, p.strategy_id) for p in result.positions] == [(LOT, "ema")]
    assert sum(f.side.sign * f.quantity for f in result.fills) == LOT  # the books hold what the broker holds
    again = await run_gate(broker, journal, both(), T0, sleep=no_sleep)  # the hand fill was journaled once
    assert len(again.fills) == len(result.fills) and again.halt_reason == ""


async def test_a_lost_journal_file_still_counts_todays_closed_round_trips(broker: FakeBroker,
                                                                          journal: OrderJournal) -> None:
    """Review finding 5a: with the file gone, today's round trips net to zero; their loss must still count."""
    own_buy, own_sell = "E0ABCDEF00000041", "X0ABCDEF00000042"
    broker.orders += [hand_order("O41", CE, Side.BUY, 10_000, tag=own_buy),
                      hand_order("O42", CE, Side.SELL, 6_000, tag=own_sell)]
    broker.trades += [trade("O41", CE, Side.BUY, 10_000), trade("O42", CE, Side.SELL, 6_000)]
    result = await run_gate(broker, journal, both(), T0, sleep=no_sleep)
    assert result.halt_reason == ""
    actors = Actors(broker, SimClock(T0, speed=0))
    actors.restore(result, broker, replay=True)
    assert actors.manager.book.realized == -LOT * 4_000
    assert actors.manager.state is TradingState.REDUCING_ONLY


async def test_a_hand_position_carried_from_yesterday_is_counted_not_a_halt(broker: FakeBroker,
                                                                            journal: OrderJournal) -> None:
    broker.positions_detail = {PE.instrument_token: (LOT, LOT, 5_000)}
    result = await run_gate(broker, journal, both(), T0, sleep=no_sleep)
    assert result.halt_reason == ""
    assert result.positions == []  # counted in the books, never managed
    [carry] = [f for f in result.fills if f.fill_id.startswith("CARRY")]
    assert (carry.side, carry.quantity, carry.price) == (Side.BUY, LOT, 5_000)


async def test_without_evidence_a_vanished_position_halts(broker: FakeBroker, journal: OrderJournal) -> None:
    """Review finding 6: a carried NRML position missing from /positions is not assumed closed."""
    filled_yesterday(journal, "E43", "O43")
    result = await run_gate(broker, journal, both(), T0, sleep=no_sleep, intraday=False)
    assert "the broker holds 0 units" in result.halt_reason


async def test_a_halt_the_gate_did_not_set_is_never_lifted_nor_overwritten(broker: FakeBroker,
                                                                           journal: OrderJournal) -> None:
    """Review finding 4: kill switch halts, a restart cannot read the book, the next one can: still halted."""
    clock = SimClock(T0, speed=0)
    actors = Actors(broker, clock)
    actors.manager.halt("kill-switch file /tmp/stop exists", T0)
    broker.book_down = True
    actors.restore(await run_gate(broker, journal, InstrumentMaster(), T0, sleep=no_sleep, attempts=1), broker)
    assert actors.manager.state_reason.startswith("kill-switch")
    broker.book_down = False
    actors.restore(await run_gate(broker, journal, InstrumentMaster(), T0, sleep=no_sleep), broker)
    assert actors.manager.state is TradingState.HALTED
    disagree = Actors(broker, clock)
    broker.held = {PE.instrument_token: LOT}
    disagree.restore(await run_gate(broker, journal, InstrumentMaster(), T0, sleep=no_sleep), broker)
    broker.held = {}
    disagree.restore(await run_gate(broker, journal, InstrumentMaster(), T0, sleep=no_sleep), broker)
    assert disagree.manager.state is TradingState.HALTED  # a disagreement waits for an operator


async def test_an_unreadable_book_keeps_open_intents_pending_and_never_sends_them_late(
        broker: FakeBroker, journal: OrderJournal) -> None:
    """Review finding 7: the intents stay open, are looked up by tag later, and are never re-sent."""
    clock = SimClock(T0, speed=0)
    req = request("E44")
    journal.record_intent(req, T0)
    broker.book_down = True
    result = await run_gate(broker, journal, InstrumentMaster(), T0, sleep=no_sleep, attempts=1)
    actors = Actors(broker, clock)
    actors.restore(result, broker)
    assert journal.open_intents() != []  # nothing was decided on a guess
    assert actors.execution.unresolved == 1
    assert broker.adopted == [("E44", "", 0, 0)]
    clock.jump_to(T0 + 10 * NS_PER_SECOND)
    await actors.execution._reconcile()  # the broker answers: the tag is absent
    assert broker.orders == []  # a stale intent is never sent late
    assert actors.execution.unresolved == 0
