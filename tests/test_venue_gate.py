"""The risk gate and ``VenueStatus``: entries wait while the venue has a problem, exits still go, and the venue
coming back never lifts an operator's HALT."""

from __future__ import annotations

import itertools
from datetime import datetime

import pytest

from trader.actors.risk import RiskGateActor
from trader.bus import EventBus
from trader.clock import SimClock
from trader.events import (
    Command,
    CommandKind,
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
from trader.ids import IdFactory
from trader.market.calendar import IST
from trader.market.instruments import OptionContract
from trader.risk import RiskConfig, RiskManager

from helpers import FakeBroker

pytestmark = pytest.mark.usefixtures("quiet_logs")

T0 = int(datetime(2026, 11, 20, 10, 0, tzinfo=IST).timestamp()) * 1_000_000_000  # Fri, inside the entry window
CE = OptionContract.parse("NIFTY26NOV26000CE", instrument_token=101)
LOT = CE.lot_size
_ids = itertools.count(1)


class Gate:
    def __init__(self, config: RiskConfig | None = None) -> None:
        self.clock = SimClock(T0)
        self.bus = EventBus()
        self.published: list[object] = []
        self.bus.tap(self.published.append)
        self.manager = RiskManager(config or RiskConfig(), now_ns=self.clock.now_ns)
        self.broker = FakeBroker(self.clock)
        self.actor = RiskGateActor(self.bus, self.manager, self.clock, IdFactory(T0), broker=self.broker)

    async def intent(self, side: Side, purpose: IntentPurpose) -> OrderIntent:
        intent = OrderIntent(ts_ns=self.clock.now_ns(), intent_id=f"V{next(_ids)}", strategy_id="test", contract=CE,
                             side=side, quantity=LOT, order_type=OrderType.MARKET, purpose=purpose,
                             expected_price=4_000)
        await self.actor.handle(intent)
        return intent

    def approved(self, intent: OrderIntent) -> bool:
        return any(type(e) is OrderRequest and e.intent.intent_id == intent.intent_id for e in self.published)

    def refusal(self, intent: OrderIntent) -> str:
        return next((e.reason for e in self.published if type(e) is OrderUpdate and e.intent_id == intent.intent_id
                     and e.status is OrderStatus.REJECTED), "")

    async def venue(self, ok: bool, problem: str, detail: str = "") -> None:
        await self.actor.handle(VenueStatus(ts_ns=self.clock.now_ns(), ok=ok, problem=problem, detail=detail))

    async def fill(self, intent: OrderIntent) -> None:
        held = self.broker.held  # the broker holds what it filled (an exit is confirmed against it)
        held[CE.instrument_token] = held.get(CE.instrument_token, 0) + intent.side.sign * intent.quantity
        await self.actor.handle(Fill(ts_ns=self.clock.now_ns(), fill_id=f"F{next(_ids)}", intent_id=intent.intent_id,
                                     order_id="O", contract=CE, side=intent.side, quantity=intent.quantity,
                                     price=4_000, expected_price=4_000, charges=0))
        await self.actor.handle(OrderUpdate(ts_ns=self.clock.now_ns(), intent_id=intent.intent_id, order_id="O",
                                            status=OrderStatus.COMPLETE, filled_quantity=intent.quantity))


async def test_entries_wait_for_the_venue_exits_still_go_and_entries_resume_when_it_clears() -> None:
    g = Gate()
    held = await g.intent(Side.BUY, IntentPurpose.ENTRY)
    assert g.approved(held)
    await g.fill(held)
    await g.venue(False, "token_expired", "run `trader login`")
    entry = await g.intent(Side.BUY, IntentPurpose.ENTRY)
    assert not g.approved(entry)
    reason = g.refusal(entry)
    assert "token_expired" in reason and "trader login" in reason  # names the problem and the fix
    exit_ = await g.intent(Side.SELL, IntentPurpose.EXIT)
    assert g.approved(exit_)  # the position can still be closed
    await g.fill(exit_)
    # Two problems at once: clearing one leaves entries refused until the other clears too.
    await g.venue(False, "broker_unreachable", "reconnecting")
    await g.venue(True, "token_expired")
    assert "broker_unreachable" in g.refusal(await g.intent(Side.BUY, IntentPurpose.ENTRY))
    await g.venue(True, "broker_unreachable")
    assert g.approved(await g.intent(Side.BUY, IntentPurpose.ENTRY))
    assert g.actor.state is TradingState.ACTIVE


async def test_an_intent_labelled_exit_that_would_not_reduce_the_position_waits_for_the_venue_like_an_entry() -> None:
    # Two manual sells of the whole position sent at once are both labelled EXIT (each saw the book before the
    # other was decided); with shorts allowed, the second would open a short while the venue cannot take entries.
    g = Gate(RiskConfig(allow_short_options=True))
    held = await g.intent(Side.BUY, IntentPurpose.ENTRY)
    await g.fill(held)
    await g.venue(False, "token_expired", "run `trader login`")
    first = await g.intent(Side.SELL, IntentPurpose.EXIT)
    assert g.approved(first)  # the real exit goes
    second = await g.intent(Side.SELL, IntentPurpose.EXIT)
    assert not g.approved(second)
    assert "token_expired" in g.refusal(second)


async def test_the_venue_coming_back_never_lifts_an_operators_halt() -> None:
    g = Gate()
    await g.venue(False, "broker_unreachable", "reconnecting")
    await g.actor.handle(Command(ts_ns=g.clock.now_ns(), kind=CommandKind.HALT, source="test", reason="operator"))
    await g.venue(True, "broker_unreachable")
    entry = await g.intent(Side.BUY, IntentPurpose.ENTRY)
    assert not g.approved(entry) and "venue" not in g.refusal(entry)
    assert g.actor.state is TradingState.HALTED
    # ok=True without a problem clears every venue problem (and still not the HALT).
    await g.venue(False, "token_expired")
    await g.venue(True, "")
    assert g.actor.state is TradingState.HALTED
    await g.actor.handle(Command(ts_ns=g.clock.now_ns(), kind=CommandKind.RESUME, source="test"))
    assert g.approved(await g.intent(Side.BUY, IntentPurpose.ENTRY))


async def test_an_entry_labelled_exit_still_waits_for_the_venue() -> None:
    # The label is the sender's (a strategy, a manual order labelled from a book that did not count the exits in
    # flight); the gate decides what reduces a position from its own book, for the venue check as for the limits.
    g = Gate()
    await g.venue(False, "journal_unwritable", "disk full")
    mislabelled = await g.intent(Side.BUY, IntentPurpose.EXIT)  # nothing is held: this opens a position
    assert not g.approved(mislabelled)
    assert "journal_unwritable" in g.refusal(mislabelled)
