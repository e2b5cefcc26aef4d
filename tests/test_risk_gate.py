"""RiskGateActor (first cut): pre-trade checks, daily-loss state machine, commands, risk levels."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.actors.risk import RiskGateActor, RiskLimits
from trader.bus import EventBus
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
    PositionSnapshot,
    RiskEvent,
    RiskLevel,
    Side,
    TradingState,
)
from trader.market.instruments import OptionContract

NIFTY_CE = OptionContract.parse("NIFTY2611325000CE", instrument_token=101)
NIFTY_PE = OptionContract.parse("NIFTY2611325000PE", instrument_token=102)
NIFTY_CE2 = OptionContract.parse("NIFTY2611325100CE", instrument_token=103)
BANK_CE = OptionContract.parse("BANKNIFTY26JAN56000CE", instrument_token=201)
BANK_PE = OptionContract.parse("BANKNIFTY26JAN56000PE", instrument_token=202)

CAPITAL = 10_000_000  # ₹1 lakh in paise
LIMITS = RiskLimits(initial_capital=CAPITAL, max_daily_loss_pct=0.02, max_lots_per_trade=2,
                    max_positions_per_symbol=2, max_total_positions=3)
LIMIT = 200_000  # 2 % of the capital, paise
DAY1 = 739_628
DAY2 = DAY1 + 1
T0 = 1_768_200_000 * 1_000_000_000

_ids = itertools.count(1)


pytestmark = pytest.mark.usefixtures("quiet_logs")


class Gate:
    """A risk gate on its own bus, with everything it publishes collected."""

    def __init__(self, limits: RiskLimits = LIMITS) -> None:
        self.bus = EventBus()
        self.out: list[object] = []
        self.bus.tap(self.out.append)
        self.actor = RiskGateActor(self.bus, limits)
        self._fills = itertools.count(1)

    async def intent(self, contract: OptionContract, side: Side, quantity: int, *, intent_id: str | None = None,
                     purpose: IntentPurpose = IntentPurpose.ENTRY) -> OrderIntent:
        intent = OrderIntent(ts_ns=T0, intent_id=intent_id or f"I{next(_ids)}", strategy_id="test",
                             contract=contract, side=side, quantity=quantity, order_type=OrderType.MARKET,
                             purpose=purpose, expected_price=10_000)
        await self.actor.handle(intent)
        return intent

    def outcome(self, intent: OrderIntent) -> OrderRequest | OrderUpdate | None:
        found = [e for e in self.out
                 if (type(e) is OrderRequest and e.intent.intent_id == intent.intent_id)
                 or (type(e) is OrderUpdate and e.intent_id == intent.intent_id and e.status is OrderStatus.REJECTED)]
        assert len(found) <= 1, found
        return found[0] if found else None

    def approved(self, intent: OrderIntent) -> bool:
        return type(self.outcome(intent)) is OrderRequest

    def refusal(self, intent: OrderIntent) -> str:
        result = self.outcome(intent)
        assert type(result) is OrderUpdate, f"expected a refusal, got {result!r}"
        assert result.order_id == ""
        assert result.status is OrderStatus.REJECTED
        assert result.reason.startswith("risk: ")
        return result.reason

    async def fill(self, contract: OptionContract, side: Side, quantity: int, intent_id: str = "") -> None:
        n = next(self._fills)
        await self.actor.handle(Fill(ts_ns=T0, fill_id=f"F{n}", intent_id=intent_id or f"X{n}", order_id=f"O{n}",
                                     contract=contract, side=side, quantity=quantity, price=10_000,
                                     expected_price=10_000, charges=0))

    async def entry_filled(self, contract: OptionContract, side: Side, quantity: int) -> OrderIntent:
        intent = await self.intent(contract, side, quantity)
        assert self.approved(intent)
        await self.fill(contract, side, quantity, intent.intent_id)
        await self.update(intent, OrderStatus.COMPLETE)
        return intent

    async def update(self, intent: OrderIntent, status: OrderStatus) -> None:
        await self.actor.handle(OrderUpdate(ts_ns=T0, intent_id=intent.intent_id, order_id="O", status=status))

    async def snapshot(self, day_pnl: int, session_day: int = DAY1) -> None:
        await self.actor.handle(PositionSnapshot(ts_ns=T0, positions=(), realized=0, unrealized=day_pnl, charges=0,
                                                 equity=CAPITAL + day_pnl, day_pnl=day_pnl,
                                                 session_day=session_day))

    async def command(self, kind: CommandKind) -> None:
        await self.actor.handle(Command(ts_ns=T0, kind=kind))

    def risk_events(self) -> list[RiskEvent]:
        return [e for e in self.out if type(e) is RiskEvent]


# -- pre-trade checks -----------------------------------------------------------------------------------------------

async def test_a_valid_entry_becomes_an_order_request_tagged_with_the_intent_id() -> None:
    g = Gate()
    intent = await g.intent(NIFTY_CE, Side.BUY, 130)
    requests = [e for e in g.out if type(e) is OrderRequest]
    assert len(requests) == 1
    assert requests[0].intent is intent
    assert requests[0].tag == intent.intent_id
    assert not [e for e in g.out if type(e) is OrderUpdate]
    assert (g.actor.approved, g.actor.rejected) == (1, 0)


@pytest.mark.parametrize("quantity", [64, 66, 100, 0, -65])
async def test_a_quantity_that_is_not_whole_lots_is_refused(quantity: int) -> None:
    g = Gate()
    intent = await g.intent(NIFTY_CE, Side.BUY, quantity)
    reason = g.refusal(intent)
    assert "not a whole number of lots" in reason
    assert "65" in reason
    assert (g.actor.approved, g.actor.rejected) == (0, 1)


async def test_more_lots_than_max_lots_per_trade_is_refused() -> None:
    g = Gate()
    assert g.approved(await g.intent(BANK_CE, Side.BUY, 2 * 30))
    reason = g.refusal(await g.intent(BANK_PE, Side.BUY, 3 * 30))
    assert "3 lots" in reason
    assert "max_lots_per_trade=2" in reason


async def test_positions_per_underlying_at_the_limit_refuse_a_new_one() -> None:
    g = Gate()
    await g.entry_filled(NIFTY_CE, Side.BUY, 65)
    await g.entry_filled(NIFTY_PE, Side.BUY, 65)
    reason = g.refusal(await g.intent(NIFTY_CE2, Side.BUY, 65))
    assert "NIFTY" in reason
    assert "max_positions_per_symbol=2" in reason
    assert g.approved(await g.intent(NIFTY_CE, Side.BUY, 65))  # adding to an open position is not a new one
    assert g.approved(await g.intent(BANK_CE, Side.BUY, 30))  # another underlying


async def test_total_positions_at_the_limit_count_pending_approved_entries() -> None:
    g = Gate()
    pending = [await g.intent(c, Side.BUY, c.lot_size) for c in (NIFTY_CE, NIFTY_PE, BANK_CE)]
    assert all(g.approved(i) for i in pending)  # none filled yet
    blocked = await g.intent(BANK_PE, Side.BUY, 30)
    reason = g.refusal(blocked)
    assert "max_total_positions=3" in reason

    await g.update(pending[2], OrderStatus.CANCELLED)  # a terminal update frees the slot
    assert g.approved(await g.intent(BANK_PE, Side.BUY, 30))
    assert g.refusal(await g.intent(BANK_CE, Side.BUY, 30))


async def test_a_closed_position_no_longer_counts() -> None:
    g = Gate()
    for c in (NIFTY_CE, NIFTY_PE, BANK_CE):
        await g.entry_filled(c, Side.BUY, c.lot_size)
    assert "max_total_positions" in g.refusal(await g.intent(BANK_PE, Side.BUY, 30))
    await g.fill(BANK_CE, Side.SELL, 30)
    assert g.approved(await g.intent(BANK_PE, Side.BUY, 30))


async def test_entries_are_refused_unless_trading_is_active() -> None:
    g = Gate()
    await g.command(CommandKind.HALT)
    assert g.actor.state is TradingState.HALTED
    assert "HALTED" in g.refusal(await g.intent(NIFTY_CE, Side.BUY, 65))
    await g.command(CommandKind.RESUME)
    assert g.approved(await g.intent(NIFTY_CE, Side.BUY, 65))


async def test_a_duplicate_intent_id_is_ignored() -> None:
    g = Gate()
    first = await g.intent(NIFTY_CE, Side.BUY, 65, intent_id="DUP")
    await g.intent(NIFTY_CE, Side.BUY, 65, intent_id="DUP")
    assert len([e for e in g.out if type(e) is OrderRequest]) == 1
    assert g.approved(first)
    refused = await g.intent(NIFTY_CE, Side.BUY, 64, intent_id="BAD")
    await g.intent(NIFTY_CE, Side.BUY, 65, intent_id="BAD")  # a valid retry under a used id is still a duplicate
    g.refusal(refused)
    assert len(g.out) == 2
    assert (g.actor.approved, g.actor.rejected) == (1, 1)


# -- daily loss -----------------------------------------------------------------------------------------------------

async def test_the_daily_loss_limit_moves_to_reducing_only_and_refuses_entries_but_not_exits() -> None:
    g = Gate()
    await g.entry_filled(NIFTY_CE, Side.BUY, 130)
    await g.entry_filled(BANK_CE, Side.SELL, 60)
    await g.snapshot(-LIMIT + 1, DAY1)
    assert g.actor.state is TradingState.ACTIVE
    await g.snapshot(-LIMIT, DAY1)
    assert g.actor.state is TradingState.REDUCING_ONLY
    breach = [e for e in g.risk_events() if e.state is TradingState.REDUCING_ONLY]
    assert len(breach) == 1
    assert breach[0].limit == "max_daily_loss"
    assert breach[0].level is RiskLevel.CRITICAL
    assert breach[0].reason

    assert "REDUCING_ONLY" in g.refusal(await g.intent(NIFTY_PE, Side.BUY, 65))  # a new entry
    assert "REDUCING_ONLY" in g.refusal(await g.intent(NIFTY_CE, Side.BUY, 65))  # adding to a long
    assert "REDUCING_ONLY" in g.refusal(await g.intent(BANK_CE, Side.SELL, 30))  # adding to a short
    exit_long = await g.intent(NIFTY_CE, Side.SELL, 65, purpose=IntentPurpose.EXIT)
    assert g.approved(exit_long)
    exit_short = await g.intent(BANK_CE, Side.BUY, 60, purpose=IntentPurpose.EXIT)
    assert g.approved(exit_short)


async def test_an_exit_that_would_flip_or_exceed_the_position_is_an_entry_in_reducing_only() -> None:
    g = Gate()
    await g.entry_filled(NIFTY_CE, Side.BUY, 65)
    await g.snapshot(-LIMIT)
    flip = await g.intent(NIFTY_CE, Side.SELL, 130, purpose=IntentPurpose.EXIT)
    assert "REDUCING_ONLY" in g.refusal(flip)
    unheld = await g.intent(NIFTY_PE, Side.SELL, 65, purpose=IntentPurpose.EXIT)  # no position to reduce
    assert "REDUCING_ONLY" in g.refusal(unheld)
    assert g.approved(await g.intent(NIFTY_CE, Side.SELL, 65, purpose=IntentPurpose.EXIT))


async def test_exits_already_in_flight_count_against_the_position() -> None:
    g = Gate()
    await g.entry_filled(NIFTY_CE, Side.BUY, 130)
    await g.snapshot(-LIMIT)
    first = await g.intent(NIFTY_CE, Side.SELL, 65, purpose=IntentPurpose.EXIT)
    assert g.approved(first)
    assert g.refusal(await g.intent(NIFTY_CE, Side.SELL, 130, purpose=IntentPurpose.EXIT))  # only 65 left
    assert g.approved(await g.intent(NIFTY_CE, Side.SELL, 65, purpose=IntentPurpose.EXIT))
    assert g.refusal(await g.intent(NIFTY_CE, Side.SELL, 65, purpose=IntentPurpose.EXIT))  # nothing left


async def test_an_order_that_adds_to_the_filled_position_is_never_an_exit() -> None:
    """A pending order that overshoots the position must not turn an order in the other direction into an "exit".

    Long 1 lot filled; a 2-lot SELL (a flip: an entry) was approved while ACTIVE and is still open. After the breach,
    a 1-lot BUY reduces nothing that is filled: if the SELL is rejected or cancelled the position becomes 2 lots long.
    """
    g = Gate()
    await g.entry_filled(NIFTY_CE, Side.BUY, 65)
    flip = await g.intent(NIFTY_CE, Side.SELL, 130)
    assert g.approved(flip)
    await g.snapshot(-LIMIT)
    assert g.actor.state is TradingState.REDUCING_ONLY
    buy = await g.intent(NIFTY_CE, Side.BUY, 65, purpose=IntentPurpose.EXIT)
    assert not g.approved(buy), "a BUY on a filled long position was approved in REDUCING_ONLY"


async def test_a_new_session_day_resets_the_breach() -> None:
    g = Gate()
    await g.snapshot(-LIMIT - 5_000, DAY1)
    assert g.actor.state is TradingState.REDUCING_ONLY
    await g.snapshot(-LIMIT - 6_000, DAY1)  # the same day: still breached
    assert g.actor.state is TradingState.REDUCING_ONLY
    assert g.refusal(await g.intent(NIFTY_CE, Side.BUY, 65))

    await g.snapshot(0, DAY2)
    assert g.actor.state is TradingState.ACTIVE
    assert g.actor.level is RiskLevel.LOW
    assert g.risk_events()[-1].state is TradingState.ACTIVE
    assert g.approved(await g.intent(NIFTY_CE, Side.BUY, 65))


async def test_halt_resume_and_reset_daily_commands() -> None:
    g = Gate()
    await g.command(CommandKind.HALT)
    assert g.actor.state is TradingState.HALTED
    assert g.risk_events()[-1].state is TradingState.HALTED
    assert g.risk_events()[-1].limit == "command"

    await g.snapshot(-LIMIT)  # a breach while halted stays halted ...
    assert g.actor.state is TradingState.HALTED
    await g.command(CommandKind.RESUME)  # ... and resuming remembers the breach
    assert g.actor.state is TradingState.REDUCING_ONLY
    assert g.risk_events()[-1].state is TradingState.REDUCING_ONLY
    assert g.refusal(await g.intent(NIFTY_CE, Side.BUY, 65))

    await g.command(CommandKind.RESET_DAILY)
    assert g.actor.state is TradingState.ACTIVE
    assert g.risk_events()[-1].state is TradingState.ACTIVE
    assert g.approved(await g.intent(NIFTY_CE, Side.BUY, 65))

    await g.command(CommandKind.HALT)
    await g.command(CommandKind.RESET_DAILY)  # reset does not lift a halt
    assert g.actor.state is TradingState.HALTED
    await g.command(CommandKind.RESUME)
    assert g.actor.state is TradingState.ACTIVE
    events = len(g.risk_events())
    await g.command(CommandKind.RESUME)  # no change, no event
    assert len(g.risk_events()) == events


async def test_risk_level_changes_at_50_75_and_100_percent_of_the_daily_limit() -> None:
    g = Gate()
    steps = [
        (-(LIMIT // 2) + 1, RiskLevel.LOW),
        (-(LIMIT // 2), RiskLevel.MEDIUM),
        (-(LIMIT * 3 // 4) + 1, RiskLevel.MEDIUM),
        (-(LIMIT * 3 // 4), RiskLevel.HIGH),
        (-LIMIT + 1, RiskLevel.HIGH),
        (-LIMIT, RiskLevel.CRITICAL),
    ]
    announced: list[RiskLevel] = []
    for day_pnl, level in steps:
        before = len(g.risk_events())
        await g.snapshot(day_pnl)
        assert g.actor.level is level, day_pnl
        new = g.risk_events()[before:]
        if new:
            announced.append(new[0].level)
            assert new[0].limit == "daily_loss"
    assert announced == [RiskLevel.MEDIUM, RiskLevel.HIGH, RiskLevel.CRITICAL]
    assert g.actor.state is TradingState.REDUCING_ONLY
    before = len(g.risk_events())
    await g.snapshot(-10_000)  # recovering lowers the level (the breach stays for the day)
    assert [e.level for e in g.risk_events()[before:]] == [RiskLevel.LOW]
    assert g.actor.state is TradingState.REDUCING_ONLY


# -- property: no entry after a breach ------------------------------------------------------------------------------

PROP_CONTRACTS = (NIFTY_CE, BANK_CE)
PROP_LIMITS = RiskLimits(initial_capital=CAPITAL, max_daily_loss_pct=0.02, max_lots_per_trade=3,
                         max_positions_per_symbol=2, max_total_positions=3)

_INTENT = st.tuples(st.just("intent"), st.integers(0, 1), st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 2))
_FILL = st.tuples(st.just("fill"), st.integers(0, 9), st.booleans(), st.booleans())
_CANCEL = st.tuples(st.just("cancel"), st.integers(0, 9),
                    st.sampled_from([OrderStatus.CANCELLED, OrderStatus.REJECTED]), st.just(0))
_SNAPSHOT = st.tuples(st.just("snapshot"),
                      st.sampled_from([0, -100_000, -199_999, -200_000, -250_000]) | st.integers(-300_000, 50_000),
                      st.booleans(), st.just(0))
_COMMAND = st.tuples(st.just("command"),
                     st.sampled_from([CommandKind.RESET_DAILY, CommandKind.HALT, CommandKind.RESUME]),
                     st.just(0), st.just(0))
# Weighted towards intents and fills so that positions, in-flight orders and breaches meet often.
_BY_KIND = {"intent": _INTENT, "fill": _FILL, "snapshot": _SNAPSHOT, "cancel": _CANCEL, "command": _COMMAND}
_OPS = st.sampled_from(["intent"] * 4 + ["fill"] * 3 + ["snapshot"] * 2 + ["cancel", "command"]).flatmap(
    _BY_KIND.__getitem__)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(ops=st.lists(_OPS, min_size=20, max_size=60))
def test_no_entry_is_approved_after_a_breach_until_a_new_session_or_reset(ops) -> None:
    asyncio.run(_no_entry_after_breach(ops))


async def _no_entry_after_breach(ops) -> None:
    g = Gate(PROP_LIMITS)
    limit = g.actor.daily_loss_limit
    positions = {c.instrument_token: 0 for c in PROP_CONTRACTS}  # what the gate has seen filled
    pending: dict[str, list] = {}  # approved, not terminal: intent id → [intent, unfilled quantity]
    breached = False
    session = DAY1
    last_day_pnl = 0
    base = 0  # RESET_DAILY makes the loss so far stop counting; a new session starts from zero
    for op in ops:
        kind = op[0]
        if kind == "intent":
            _, idx, side, lots = op
            contract = PROP_CONTRACTS[idx]
            token = contract.instrument_token
            held = positions[token]
            exiting = sum(i.quantity for i, _ in pending.values()
                          if i.contract.instrument_token == token and i.side.sign * held < 0)
            qty = lots * contract.lot_size
            reduces = held != 0 and side.sign * held < 0 and qty + exiting <= abs(held)
            intent = await g.intent(contract, side, qty)
            if g.approved(intent):
                pending[intent.intent_id] = [intent, qty]
                if breached:
                    assert reduces, (f"entry approved after a breach: {side} {qty} with {held} filled and "
                                     f"{exiting} already exiting")
        elif kind == "fill" and pending:
            _, k, full, complete = op
            intent_id = sorted(pending)[k % len(pending)]
            intent, unfilled = pending[intent_id]
            qty = unfilled if full else min(unfilled, intent.contract.lot_size)
            await g.fill(intent.contract, intent.side, qty, intent_id)
            positions[intent.contract.instrument_token] += intent.side.sign * qty
            pending[intent_id][1] -= qty
            if pending[intent_id][1] == 0 and complete:
                await g.update(intent, OrderStatus.COMPLETE)
                del pending[intent_id]
        elif kind == "cancel" and pending:
            _, k, status, _ = op
            intent_id = sorted(pending)[k % len(pending)]
            await g.update(pending.pop(intent_id)[0], status)
        elif kind == "snapshot":
            _, day_pnl, new_session, _ = op
            if new_session:
                session += 1
                breached = False
                base = 0
            await g.snapshot(day_pnl, session)
            last_day_pnl = day_pnl
            breached = breached or day_pnl - base <= -limit
        elif kind == "command":
            await g.command(op[1])
            if op[1] is CommandKind.RESET_DAILY:
                breached = False
                base = last_day_pnl
        if breached:
            assert g.actor.state is not TradingState.ACTIVE


async def test_reset_daily_rebases_the_loss_so_the_same_snapshot_does_not_breach_again() -> None:
    g = Gate()
    await g.snapshot(-LIMIT)
    assert g.actor.state is TradingState.REDUCING_ONLY
    await g.command(CommandKind.RESET_DAILY)
    await g.snapshot(-LIMIT)  # the same loss as before the reset: it no longer counts
    assert g.actor.state is TradingState.ACTIVE
    await g.snapshot(-2 * LIMIT)  # a full limit more, counted from the reset
    assert g.actor.state is TradingState.REDUCING_ONLY


async def test_halt_refuses_exits_too() -> None:
    g = Gate()
    entry = await g.intent(NIFTY_CE, Side.BUY, 65)
    await g.fill(NIFTY_CE, Side.BUY, 65, entry.intent_id)
    await g.update(entry, OrderStatus.COMPLETE)
    await g.command(CommandKind.HALT)
    assert "HALTED" in g.refusal(await g.intent(NIFTY_CE, Side.SELL, 65))
    await g.command(CommandKind.RESUME)
    assert g.approved(await g.intent(NIFTY_CE, Side.SELL, 65))


async def test_after_stop_entries_no_entry_is_approved_but_exits_are() -> None:
    g = Gate()
    entry = await g.intent(NIFTY_CE, Side.BUY, 65)
    await g.fill(NIFTY_CE, Side.BUY, 65, entry.intent_id)
    await g.update(entry, OrderStatus.COMPLETE)
    await g.command(CommandKind.STOP_ENTRIES)
    assert "shutting down" in g.refusal(await g.intent(BANK_CE, Side.BUY, 30))
    assert g.approved(await g.intent(NIFTY_CE, Side.SELL, 65))


async def test_quantity_above_the_freeze_limit_is_refused() -> None:
    g = Gate(RiskLimits(initial_capital=CAPITAL, max_daily_loss_pct=0.02, max_lots_per_trade=100,
                        max_positions_per_symbol=3, max_total_positions=10))
    assert "freeze quantity 1800" in g.refusal(await g.intent(NIFTY_CE, Side.BUY, 28 * 65))
    assert g.approved(await g.intent(NIFTY_CE, Side.BUY, 27 * 65))
