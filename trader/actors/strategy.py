"""Strategy actor: hosts the strategy plugins, feeds them events, publishes their signals and intents.

Semi-live (auto-execution off): an ENTRY intent a strategy emits is not sent; it waits in the approval book
(``trader/approvals.py``, ``self.approvals``) as PENDING until an APPROVE command sends it to the risk gate re-priced at
the current quote, a REJECT command ends it, or it expires ``approval_expiry_s`` of event time later (checked on every
tick and heartbeat); STOP_ENTRIES expires all of them. Each outcome is an ``ApprovalUpdate``, journaled and logged; an
entry that ends unsent also gets its terminal ``OrderUpdate`` so the strategy stops waiting. Exits never wait.

Manual orders (strategy ``manual``): their fills are offered to the strategies first, like any fill of an intent no
strategy owns (a manual sell of what a strategy holds reduces its holding); what is left opens or adds to a position
that the adopted-position keeper takes, with its policy's stop and time exit, as it would after a restart.

Across restarts: ``restore`` (called by the app before the actor starts) hands each strategy its saved document and
the positions the broker says it holds, and gives every position no strategy claims to the adopted-position keeper.
While running, each strategy's document is saved through ``save_state`` after every fill and order update it sees
and before any intent it emits is published (so a pending entry or exit is on disk before the order can exist);
never per tick, and an unchanged document is not written again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from trader.actors.base import Actor
from trader.approvals import AlreadyDecided, Approval, ApprovalBook, ApprovalError
from trader.bus import EventBus
from trader.clock import NS_PER_SECOND
from trader.events import (
    JOURNAL_PROBLEM,
    ApprovalStatus,
    ApprovalUpdate,
    Command,
    CommandKind,
    CommandResult,
    Fill,
    Heartbeat,
    IntentPurpose,
    OrderIntent,
    OrderStatus,
    OrderUpdate,
    Signal,
    Tick,
    VenueStatus,
)
from trader.logging import get_logger
from trader.market.calendar import ist_text
from trader.market.instruments import OptionContract
from trader.money import to_rupees
from trader.store.journal import JournalWriteError
from trader.store.orders import OrderJournal
from trader.strategies.adopted import MANUAL_STRATEGY_ID, AdoptedPositionKeeper
from trader.strategies.base import Holding, RestoredPosition, Strategy, StrategyContext
from trader.strategies.state import state_name

log = get_logger("trader.strategy")

# ``save_state(name, document)``: persist one strategy's document under ``name`` ("strategy:<strategy_id>"), e.g.
# ``lambda name, doc: journal.save_state(name, doc, clock.now_ns())``. It may raise: entries stop (exits still go).
SaveState = Callable[[str, dict[str, object]], None]


class StrategyActor(Actor):
    name = "strategy"

    def __init__(self, bus: EventBus, strategies: Sequence[Strategy], context: StrategyContext,
                 *, auto_execution: bool = True, conflate_ticks: bool = True, save_state: SaveState | None = None,
                 keeper: AdoptedPositionKeeper | None = None, approval_expiry_s: float = 60.0,
                 max_quote_age_s: float | None = None,
                 journal: OrderJournal | None = None) -> None:
        super().__init__(bus, conflate_ticks=conflate_ticks)
        self.strategies: list[Strategy] = list(strategies)
        self.context = context
        self.auto_execution = auto_execution
        self.save_state = save_state
        # Semi-live: the entries waiting for an operator (read by the control service: pending(), decided()).
        self.approvals = ApprovalBook(round(approval_expiry_s * NS_PER_SECOND), max_quote_age_ns=None
                                      if max_quote_age_s is None else round(max_quote_age_s * NS_PER_SECOND))
        self.journal = journal  # approvals are journaled here (None: a backtest)
        self._journal_failed = False
        self._event_ns = 0  # the latest event time seen (ticks, heartbeats, commands)
        self._manual_intents: set[str] = set()
        # Positions no strategy claims after a restart; it joins ``strategies`` once it holds something.
        self.keeper = keeper or AdoptedPositionKeeper()
        self.signals = 0
        self.intents = 0
        self.last_tick_ts_ns = 0
        self.restored_positions = 0  # non-zero positions managed after restore (by strategies and the keeper)
        self.adopted_positions = 0  # of which the keeper took
        self.duplicate_fills = 0
        self._saved: dict[str, dict[str, object]] = {}  # the last document written, per strategy id
        self._intent_owner: dict[str, Strategy] = {}
        self._fill_ids: set[str] = set()
        self._save_failed = False
        self._failed: set[str] = set()  # strategies that raised (logged once each)

    def subscriptions(self) -> Iterable[type]:
        # Heartbeats move event time when no tick comes (approvals expire); intents name the manual orders.
        return (Tick, Fill, OrderUpdate, Command, Heartbeat, OrderIntent)

    async def handle(self, event: Any) -> None:
        kind = type(event)
        if kind is Tick:
            self.context.quotes[event.instrument_token] = event
            self.last_tick_ts_ns = event.ts_ns
            if self.approvals:
                self._expire_due(event.ts_ns)
            for strategy in self.strategies:
                try:
                    outputs = strategy.on_tick(event, self.context)
                except Exception:  # one strategy's bug must not keep the tick from the others (their exits)
                    self._strategy_failed(strategy, "on_tick")
                    continue
                if outputs:
                    self._emit(strategy, outputs)
        elif kind is Fill:
            self._on_fill(event)
        elif kind is OrderUpdate:
            for strategy in self.strategies:
                try:
                    strategy.on_order_update(event)
                except Exception:
                    self._strategy_failed(strategy, "on_order_update")
            self._after_change()
        elif kind is Heartbeat:
            if self.approvals:
                self._expire_due(event.ts_ns)
            # Memory that changes on ticks alone (an opening range) reaches the journal at least once a heartbeat;
            # an unchanged document is not written again.
            self._after_change()
        elif kind is OrderIntent:
            if event.strategy_id == MANUAL_STRATEGY_ID:
                self._manual_intents.add(event.intent_id)
        elif kind is Command:
            self._on_command(event)

    def _strategy_failed(self, strategy: Strategy, call: str) -> None:
        """A strategy raised: the others still get the event (a crash of this actor would redeliver it to the ones
        before and withhold it from the ones after); entries stop everywhere, exits still go."""
        self.context.entries_allowed = False
        if strategy.strategy_id not in self._failed:
            self._failed.add(strategy.strategy_id)
            log.exception("strategy_failed", strategy=strategy.strategy_id, call=call,
                          effect="entries stop for every strategy; exits still go; fix or remove the strategy and "
                                 "restart the daemon")

    def _on_fill(self, fill: Fill) -> None:
        if fill.fill_id in self._fill_ids:
            self.duplicate_fills += 1  # a redelivery, or a fill the restored positions already include
            log.info("fill_already_booked", fill_id=fill.fill_id, intent_id=fill.intent_id, actor=self.name)
            return
        self._fill_ids.add(fill.fill_id)
        owner = self._intent_owner.get(fill.intent_id)
        if owner is None and fill.intent_id in self._manual_intents:
            self._on_manual_fill(fill)
        else:
            # A fill of a strategy's own intent is its alone; others (a flatten, an order from before the restart)
            # go to everyone, and each strategy decides whether it concerns what it holds.
            for strategy in (owner,) if owner is not None else self.strategies:
                strategy.on_fill(fill)
        self._after_change()

    def _on_manual_fill(self, fill: Fill) -> None:
        """Offered first to the strategies it reduces (a manual sell of what one holds); the keeper takes the rest,
        so a position opened by hand through the daemon has a stop and a time exit, as after a restart.

        Each strategy is offered only what the ones before it left: two holders of the contract (the keeper's earlier
        manual buy, then a strategy's entry) must not both book one manual sell, or a lot stays held with no stop."""
        rest = fill.quantity
        for strategy in list(self.strategies):
            if rest <= 0:
                return
            before = self._held_quantity(fill.contract, strategy)
            if before == 0 or (before > 0) == (fill.side.sign > 0):
                # Only a fill that reduces what a strategy holds is its: a manual buy while a strategy waits for its
                # own entry on the same contract (an approval pending) is not that entry, and it is not added to a
                # holding the strategy sized itself.
                continue
            strategy.on_fill(fill if rest == fill.quantity else dataclasses.replace(fill, quantity=rest))
            taken = (self._held_quantity(fill.contract, strategy) - before) * fill.side.sign
            rest -= min(max(taken, 0), rest)
        if rest <= 0:
            return
        keeper = self.keeper
        keeper.adopt_fill(fill, rest)
        if keeper not in self.strategies and keeper.holdings():
            self.strategies.append(keeper)

    @staticmethod
    def _held_quantity(contract: OptionContract, strategy: Strategy) -> int:
        return sum(h.quantity for h in strategy.holdings()
                   if (h.contract.exchange, h.contract.tradingsymbol) == (contract.exchange, contract.tradingsymbol))

    # -- commands and semi-live approvals ------------------------------------------------------------------
    def _on_command(self, command: Command) -> None:
        now = self._event_ns = max(self._event_ns, command.ts_ns)
        if command.kind is CommandKind.STOP_ENTRIES:
            self.context.entries_allowed = False
            log.info("entries_stopped", reason=command.reason)
            for approval in self.approvals.expire_all(now, f"entries stopped ({command.reason or command.source})"):
                self._ended(approval)
        elif command.kind is CommandKind.APPROVE:
            self._approve(command, now)
        elif command.kind is CommandKind.REJECT:
            self._expire_due(now)
            try:
                approval = self.approvals.reject(command.target, now, by=command.source,
                                                 reason=command.reason or "rejected by the operator")
            except ApprovalError as exc:
                self._refused(command, exc)
                return
            self._ended(approval)
            self._answer(command, True, f"rejected {approval.describe()}")

    def _approve(self, command: Command, now: int) -> None:
        self._expire_due(now)
        found = self.approvals.find(command.target)
        if found is not None and found.pending and not self.context.entries_allowed:
            self._answer(command, False, f"entries are stopped (the daemon is stopping, or the strategy state cannot "
                                         f"be saved): {found.intent_id} is not sent")
            return
        token = found.intent.contract.instrument_token if found is not None else 0
        quote = self.context.quote(token) if token else None
        try:
            approval = self.approvals.approve(command.target, now, quote, by=command.source)
        except ApprovalError as exc:
            self._refused(command, exc)
            return
        intent = approval.intent
        self._journal(approval)
        log.info("approval_approved", **self._fields(approval))
        self.bus.publish(ApprovalUpdate(ts_ns=now, intent=intent, status=ApprovalStatus.APPROVED,
                                        expires_ns=approval.expires_ns, by=approval.by, reason=approval.reason))
        self._send(intent)
        self._answer(command, True, f"approved {approval.describe()}: sent to the risk gate")

    def _refused(self, command: Command, exc: ApprovalError) -> None:
        if isinstance(exc, AlreadyDecided) and exc.just_expired:
            self._ended(exc.approval)
        log.info("approval_command_refused", kind=command.kind.value, target=command.target, source=command.source,
                 detail=str(exc))
        self._answer(command, False, str(exc))

    def _answer(self, command: Command, ok: bool, detail: str) -> None:
        if command.command_id:
            self.bus.publish(CommandResult(ts_ns=self._event_ns, command_id=command.command_id, kind=command.kind,
                                           ok=ok, detail=detail))

    def _expire_due(self, now_ns: int) -> None:
        self._event_ns = max(self._event_ns, now_ns)
        for approval in self.approvals.expire_due(now_ns):
            self._ended(approval)

    def _hold(self, intent: OrderIntent) -> None:
        """Semi-live: the entry waits for the operator."""
        approval = self.approvals.add(intent, intent.ts_ns)
        self._journal(approval)
        log.info("approval_pending", **self._fields(approval))
        self.bus.publish(ApprovalUpdate(ts_ns=intent.ts_ns, intent=intent, status=ApprovalStatus.PENDING,
                                        expires_ns=approval.expires_ns))

    def _ended(self, approval: Approval) -> None:
        """REJECTED or EXPIRED: said on the bus, and the intent ends unsent, so its strategy stops waiting."""
        self._journal(approval)
        log.info("approval_rejected" if approval.status is ApprovalStatus.REJECTED else "approval_expired",
                 **self._fields(approval))
        intent = approval.intent
        self.bus.publish(ApprovalUpdate(ts_ns=approval.decided_ns, intent=intent, status=approval.status,
                                        expires_ns=approval.expires_ns, by=approval.by, reason=approval.reason))
        how = f"rejected by {approval.by}" if approval.status is ApprovalStatus.REJECTED else "expired"
        self.bus.publish(OrderUpdate(ts_ns=approval.decided_ns, intent_id=intent.intent_id, order_id="",
                                     status=OrderStatus.REJECTED, reason=f"semi-live: {how}: {approval.reason}"))

    @staticmethod
    def _fields(approval: Approval) -> dict[str, object]:
        intent = approval.intent
        return {"intent_id": intent.intent_id, "signal_id": intent.signal_id, "strategy": intent.strategy_id,
                "tradingsymbol": intent.contract.tradingsymbol, "side": intent.side.value,
                "quantity": intent.quantity, "expected_price_inr": to_rupees(intent.expected_price),
                "status": approval.status.value, "expires": ist_text(approval.expires_ns), "by": approval.by,
                "reason": approval.reason, "event_ts_ns": approval.decided_ns or approval.created_ns}

    def _journal(self, approval: Approval) -> None:
        if self.journal is None:
            return
        try:
            self.journal.record_approval(approval)
        except JournalWriteError as exc:
            if not self._journal_failed:
                self._journal_failed = True
                log.error("journal_write_failed", what="approval", journal=self.journal.path, error=str(exc),
                          fix="free disk space or make the data dir writable, then restart the daemon")
                self.bus.publish(VenueStatus(ts_ns=self._event_ns, ok=False, problem=JOURNAL_PROBLEM,
                                             detail=str(exc)))

    def _after_change(self) -> None:
        for strategy in self.strategies:
            self._save(strategy)
        self._refresh_held()

    # -- state across restarts ----------------------------------------------------------------------------
    def state_names(self) -> dict[str, str]:
        """The journal name of each strategy's document (the keeper's included), by strategy id."""
        ids = [s.strategy_id for s in self.strategies if s is not self.keeper] + [self.keeper.strategy_id]
        return {strategy_id: state_name(strategy_id) for strategy_id in ids}

    def restore(self, saved: Mapping[str, Mapping[str, object] | None], positions: Sequence[RestoredPosition],
                *, open_intent_ids: Collection[str] | None = None, booked_fill_ids: Iterable[str] = (),
                manual_intent_ids: Iterable[str] = ()) -> None:
        """Give the strategies back their memory and the positions the broker holds; call once, before start.

        ``saved``: each strategy's saved document by strategy id (None or absent: none); ``positions``: the
        positions reconciliation found that are ours (not the hand-placed ones). A position goes to the strategy
        whose id it carries; the rest (owner unknown, a strategy not configured any more, or refused by its
        strategy) go to the adopted-position keeper. A document that cannot be used is refused with one error
        line; that strategy starts flat and its positions go to the keeper.
        ``open_intent_ids``: intents whose orders are still working at the broker. When given, an intent a saved
        document waits on that is not among them ended while the daemon was down: the strategy is told so (a
        terminal update), and the restored position stands for what it filled. When None, saved pending intents
        stay pending until their terminal ``OrderUpdate`` arrives on the bus.
        ``booked_fill_ids``: fills the restored positions already include; if they are published again they are
        not counted twice. ``manual_intent_ids``: manual orders still working at the broker (their later fills go
        the way of a manual order's, see ``_on_manual_fill``).
        """
        self._fill_ids.update(booked_fill_ids)
        self._manual_intents.update(manual_intent_ids)
        keeper = self.keeper
        by_owner: dict[str, list[RestoredPosition]] = {}
        for position in positions:
            if position.quantity != 0:
                by_owner.setdefault(position.strategy_id, []).append(position)
        unclaimed: list[RestoredPosition] = []
        for strategy in [s for s in self.strategies if s is not keeper]:
            held = by_owner.pop(strategy.strategy_id, [])
            try:
                unclaimed.extend(strategy.restore_state(saved.get(strategy.strategy_id), held))
            except Exception as exc:  # ValueError: a bad document; anything else: a plugin's bug, the same remedy
                self._refuse(strategy, exc, "the strategy starts flat; its positions go to the adopted keeper")
                strategy.restore_state(None, [])
                unclaimed.extend(held)
        for rest in by_owner.values():  # owner unknown (""), the keeper's own, or a strategy not configured
            unclaimed.extend(rest)
        try:
            keeper.restore_state(saved.get(keeper.strategy_id), unclaimed)
        except ValueError as exc:
            self._refuse(keeper, exc, "the positions are adopted afresh")
            keeper.restore_state(None, unclaimed)
        if keeper.holdings() and keeper not in self.strategies:
            self.strategies.append(keeper)
        self._end_lost_intents(open_intent_ids)
        holdings = self.holdings()
        for holding in holdings:
            if holding.quantity:
                log.info("strategy_position_restored", strategy=holding.strategy_id,
                         tradingsymbol=holding.contract.tradingsymbol, quantity=holding.quantity,
                         average_inr=to_rupees(holding.average_price), stop_inr=to_rupees(holding.stop_price),
                         target_inr=to_rupees(holding.target_price),
                         time_exit=ist_text(holding.time_exit_ns) if holding.time_exit_ns else "",
                         pending_intent=holding.pending_intent)
        self.restored_positions = sum(1 for h in holdings if h.quantity)
        self.adopted_positions = sum(1 for h in keeper.holdings() if h.quantity)
        for strategy in self.strategies:
            self._save(strategy)
        if keeper not in self.strategies:
            self._save(keeper)
        self._refresh_held()

    def _refuse(self, strategy: Strategy, exc: Exception, effect: str) -> None:
        log.error("strategy_state_refused", strategy=strategy.strategy_id, state=state_name(strategy.strategy_id),
                  error=str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}", effect=effect)

    def _end_lost_intents(self, open_intent_ids: Collection[str] | None) -> None:
        for strategy in self.strategies:
            for intent_id in strategy.pending_intents():
                self._intent_owner[intent_id] = strategy
                if open_intent_ids is not None and intent_id not in open_intent_ids:
                    log.info("strategy_intent_ended_while_down", strategy=strategy.strategy_id, intent_id=intent_id)
                    strategy.on_order_update(OrderUpdate(ts_ns=0, intent_id=intent_id, order_id="",
                                                         status=OrderStatus.CANCELLED,
                                                         reason="ended while the daemon was down"))

    def holdings(self) -> list[Holding]:
        """What every strategy (and the keeper, once it holds something) manages now."""
        return [holding for strategy in self.strategies for holding in strategy.holdings()]

    @property
    def open_positions(self) -> int:
        return sum(1 for holding in self.holdings() if holding.quantity)

    def _refresh_held(self) -> None:
        held = self.context.held
        held.clear()
        for holding in self.holdings():
            if holding.contract.instrument_token:
                held[holding.contract.instrument_token] = holding.contract

    def _save(self, strategy: Strategy) -> bool:
        """Write the strategy's document if it changed; False if it could not be written (entries stop)."""
        if self.save_state is None:
            return True
        document = strategy.snapshot_state()
        if self._saved.get(strategy.strategy_id) == document:
            return True
        try:
            self.save_state(state_name(strategy.strategy_id), document)
        except Exception as exc:  # any failure to persist: never trade on memory that a restart would lose
            if not self._save_failed:
                log.error("strategy_state_save_failed", strategy=strategy.strategy_id, error=str(exc),
                          effect="entries stop; exits still go")
            self._save_failed = True
            self.context.entries_allowed = False
            return False
        self._saved[strategy.strategy_id] = document
        return True

    def _emit(self, strategy: Strategy, outputs: Sequence[Signal | OrderIntent]) -> None:
        saved = True
        if any(type(item) is OrderIntent for item in outputs):
            saved = self._save(strategy)  # the pending order is on disk before the order can exist
        for item in outputs:
            if type(item) is Signal:
                self.signals += 1
                log.info("signal", signal_id=item.signal_id, strategy=item.strategy_id, tick_id=item.tick_id,
                         underlying=item.underlying, direction=item.direction.value,
                         confidence=item.confidence, reason=item.reason, event_ts_ns=item.ts_ns)
                self.bus.publish(item)
            elif type(item) is OrderIntent:
                self._intent_owner[item.intent_id] = strategy
                if item.purpose is IntentPurpose.ENTRY and not saved:
                    # No journal: the intent still ends in one terminal state, so the strategy does not wait for a
                    # fill that will never come.
                    refusal = "the strategy state cannot be saved: entries are stopped"
                    log.info("intent_not_sent", intent_id=item.intent_id, reason=refusal,
                             tradingsymbol=item.contract.tradingsymbol)
                    self.bus.publish(OrderUpdate(ts_ns=item.ts_ns, intent_id=item.intent_id, order_id="",
                                                 status=OrderStatus.REJECTED, reason=refusal))
                elif item.purpose is IntentPurpose.ENTRY and not self.auto_execution:
                    self._hold(item)  # semi-live: an operator approves it, or it ends unsent
                else:
                    self._send(item)

    def _send(self, intent: OrderIntent) -> None:
        self.intents += 1
        log.info("intent", intent_id=intent.intent_id, signal_id=intent.signal_id, strategy=intent.strategy_id,
                 tradingsymbol=intent.contract.tradingsymbol, side=intent.side.value, quantity=intent.quantity,
                 order_type=intent.order_type.value, purpose=intent.purpose.value,
                 expected_price_inr=to_rupees(intent.expected_price), reason=intent.reason, event_ts_ns=intent.ts_ns)
        self.bus.publish(intent)
