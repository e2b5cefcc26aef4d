"""Risk gate actor: the only path from an ``OrderIntent`` to an ``OrderRequest``.

The decisions are the pure ``RiskManager``'s (``trader/risk/core.py``); this actor does the I/O around it: it asks
the broker what an entry would block and what is free, watches the kill-switch file, applies operator commands,
publishes every state and level change as a ``RiskEvent``, carries out a flatten, and saves the manager's state to
the journal so a breached day stays breached across a restart.

A flatten (the operator's FLATTEN command, or a loss breach with ``flatten_on_breach``) goes one way: the gate
publishes a FLATTEN command of its own (``source=FLATTEN_SOURCE``), on which the execution actor cancels our working
orders on what is flattened (entries and exits; after every order this gate approved before, since the bus delivers
in order), and it sends the exit of each position at once only where none of our orders is working on that contract;
elsewhere the exit follows when the last of them has ended (its terminal update passes this gate), for what is still
held then. An exit is never sent while our own orders could still sell the same units: it could leave a short.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from trader.actors.base import Actor
from trader.adapters.ports import Broker
from trader.book import BookPosition
from trader.bus import EventBus
from trader.clock import Clock
from trader.events import (
    JOURNAL_PROBLEM,
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
    RiskLevel,
    Side,
    Tick,
    TradingState,
    VenueStatus,
)
from trader.ids import IdFactory, is_own_id
from trader.logging import get_logger
from trader.market.instruments import resolve_underlying
from trader.reconcile import OUTSIDE_FILL_PREFIXES, outside_fill_id
from trader.risk.core import RiskManager
from trader.risk.kill_switch import KillSwitchFile
from trader.risk.results import RiskDecision
from trader.store.journal import Journal, JournalWriteError

log = get_logger("trader.risk")

CONFIRM_TIMEOUT_S = 3.0  # the broker's position and trade books before an exit: an exit must not wait long

STATE_NAME = "risk"
FLATTEN_STRATEGY_ID = "risk-flatten"
FLATTEN_SOURCE = "risk"  # the FLATTEN command this gate publishes for the execution actor (and ignores itself)


class RiskGateActor(Actor):
    name = "risk"

    def __init__(self, bus: EventBus, manager: RiskManager, clock: Clock, ids: IdFactory, *,
                 broker: Broker | None = None, journal: Journal | None = None,
                 conflate_ticks: bool = True) -> None:
        super().__init__(bus, conflate_ticks=conflate_ticks)
        self.manager = manager
        self.clock = clock
        self.ids = ids
        self.broker = broker
        self.journal = journal
        self.kill_switch = KillSwitchFile(manager.config.kill_switch_file)
        self._seen_intents: set[str] = set()
        self._seen_fills: set[str] = set()
        self._outside: dict[int, int] = {}  # token → signed units placed outside the daemon (by hand)
        self.journal_failed = False
        self._flatten_intents: dict[str, int] = {}  # flatten exits issued and not ended: intent id → token
        self._flatten_waiting: dict[int, str] = {}  # token → why: its exit follows when our orders on it have ended
        self._stopping = False
        self._venue_problems: dict[str, str] = {}  # problem → detail, while the venue cannot take entries
        self.approved = 0
        self.rejected = 0

    def subscriptions(self) -> Iterable[type]:
        # Heartbeats: the kill-switch file is looked at even when no tick comes (a dead feed, a closed market).
        return (OrderIntent, Fill, OrderUpdate, Tick, Command, VenueStatus, Heartbeat)

    @property
    def state(self) -> TradingState:
        return self.manager.state

    @property
    def level(self) -> RiskLevel:
        return self.manager.level

    @property
    def venue_problems(self) -> dict[str, str]:
        """Why entries wait on the venue (problem → detail), empty when they do not."""
        return dict(self._venue_problems)

    async def on_start(self) -> None:
        # The positions were reconciled with the broker by the start-up gate (trader/gate.py) before this ran.
        self._publish_changes()  # a state restored from the journal is announced once at start

    async def handle(self, event: Any) -> None:
        kind = type(event)
        if kind is Tick:
            self._check_kill_switch(event.ts_ns)
            self.manager.mark(event.instrument_token, event.last_price, event.ts_ns)
        elif kind is Heartbeat:
            self._check_kill_switch(event.ts_ns)
        elif kind is OrderIntent:
            await self._on_intent(event)
        elif kind is Fill:
            if event.fill_id in self._seen_fills:  # a redelivery (after a crash in this handler) or a repeat
                log.warning("duplicate_fill_ignored", fill_id=event.fill_id, actor=self.name)
            else:
                self._seen_fills.add(event.fill_id)
                self.manager.on_fill(event.contract, event.side, event.quantity, event.price, event.charges,
                                     event.ts_ns, intent_id=event.intent_id)
                self._save(event.ts_ns)
        elif kind is OrderUpdate:
            if event.status.is_terminal:
                self.manager.on_order_done(event.intent_id)
                self._flatten_intents.pop(event.intent_id, None)
                if self._flatten_waiting:
                    self._flatten_when_done()
        elif kind is Command:
            self._on_command(event)
        elif kind is VenueStatus:
            self._on_venue(event)
        self._publish_changes()
        if self.manager.flatten_requested():
            _, detail, _ = self._flatten(self.clock.now_ns(), "loss limit breached with flatten_on_breach=true")
            log.warning("flatten_on_breach", detail=detail)

    def _check_kill_switch(self, ts_ns: int) -> None:
        if self.kill_switch.tripped(ts_ns) and self.manager.state is not TradingState.HALTED:
            self.manager.halt(f"kill-switch file {self.kill_switch.path} exists", ts_ns)

    # -- intents ------------------------------------------------------------------------------------------
    async def _on_intent(self, intent: OrderIntent) -> None:
        if intent.intent_id in self._seen_intents:
            log.warning("duplicate_intent_ignored", intent_id=intent.intent_id)
            return
        unconfirmed = await self._confirm_position(intent)
        decision = (RiskDecision(False, unconfirmed, True, "position_unconfirmed") if unconfirmed
                    else await self._decide(intent))
        # Marked as seen only once decided: if deciding crashed, the redelivered intent gets its decision.
        self._seen_intents.add(intent.intent_id)
        if not decision.approved:
            self.rejected += 1
            log.info("intent_rejected", intent_id=intent.intent_id, reason=decision.reason, check=decision.check,
                     tradingsymbol=intent.contract.tradingsymbol, side=intent.side.value,
                     quantity=intent.quantity, state=self.manager.state.value)
            self.bus.publish(OrderUpdate(ts_ns=intent.ts_ns, intent_id=intent.intent_id, order_id="",
                                         status=OrderStatus.REJECTED, reason=f"risk: {decision.reason}",
                                         check=decision.check))
            return
        self.approved += 1
        self.manager.note_approved(intent)
        self.manager.note_order_sent(intent.ts_ns)
        log.info("intent_approved", intent_id=intent.intent_id, tag=intent.intent_id, exit=decision.is_exit,
                 tradingsymbol=intent.contract.tradingsymbol, side=intent.side.value, quantity=intent.quantity)
        self.bus.publish(OrderRequest(ts_ns=intent.ts_ns, intent=intent, tag=intent.intent_id))

    async def _confirm_position(self, intent: OrderIntent) -> str:
        """Before an order that would reduce a position, ask the broker whether it still holds it.

        A position closed outside the daemon (sold by hand in the broker's app, squared off by the broker) would
        otherwise be "exited" again from our own book: a naked short. When the broker holds less, the trades that
        explain it (orders without our tag on that contract, in today's trade book) are booked as fills every actor
        books, with the ids the start-up gate gives them, so nothing is booked twice; the intent is then decided
        against the truth (refused if it would go short). Without such a trade the difference is the broker's
        position report lagging one of our own fills, and nothing is changed."""
        token = self.manager.keyed(intent.contract).instrument_token
        held = self.manager.book.quantity(token)
        if self.broker is None or held == 0 or intent.side.sign * held > 0 or self.manager.has_pending(token):
            return ""
        try:
            async with asyncio.timeout(CONFIRM_TIMEOUT_S):
                broker_held = (await self.broker.positions()).get(token, 0)
                if broker_held == held or (broker_held * held > 0 and abs(broker_held) > abs(held)):
                    return ""  # agrees, or holds more (a fill of ours not yet reported): nothing was closed outside
                book = await self.broker.book()
        except Exception as exc:
            # Unconfirmed, the exit waits: sent on our book alone it could sell what a hand already sold (a naked
            # short, unbounded loss); held back, the strategy sends it again shortly (a delayed stop, bounded).
            log.warning("position_confirm_failed", intent_id=intent.intent_id, error=repr(exc))
            return (f"the broker's position in {intent.contract.tradingsymbol} could not be confirmed ({exc!r}); "
                    "an exit is not sent on the daemon's book alone, in case it was closed by hand: retried shortly")
        outside = {o.order_id: o for o in book.orders if not is_own_id(o.tag)}
        position = self.manager.book.positions[token]
        fills = [Fill(ts_ns=intent.ts_ns, fill_id=outside_fill_id(t, orphan=False), intent_id="", order_id=t.order_id,
                      contract=position.contract, side=t.side, quantity=t.quantity, price=t.price,
                      expected_price=t.price, charges=0)
                 for t in book.trades if t.instrument_token == token and t.order_id in outside
                 and outside_fill_id(t, orphan=False) not in self._seen_fills]
        log.error("position_changed_outside", tradingsymbol=intent.contract.tradingsymbol, book_quantity=held,
                  broker_quantity=broker_held, intent_id=intent.intent_id, outside_trades=len(fills),
                  action="the outside trades are booked; the exit is decided against them" if fills else
                  "no outside trade explains it (the broker's report may lag a fill): the book stands")
        for fill in fills:
            self._seen_fills.add(fill.fill_id)
            self._note_outside(fill)
            self.manager.on_fill(fill.contract, fill.side, fill.quantity, fill.price, 0, fill.ts_ns)
            self.bus.publish(fill)  # the portfolio, the strategy and the journal book it too; this gate already has
        if fills:
            self._save(intent.ts_ns)
        return ""

    async def _decide(self, intent: OrderIntent) -> RiskDecision:
        # The book decides what is an exit, never the intent's label (a mislabelled entry must wait too).
        if self._venue_problems and not self.manager.reduces(intent):
            return self._venue_refusal()
        flatten = intent.intent_id in self._flatten_intents
        token = self.manager.keyed(intent.contract).instrument_token
        if flatten and self.manager.has_pending(token):
            # An order of ours on it was approved since this exit was issued (a strategy's stop, say): sent now,
            # the two together could sell more than is held. The exit follows when that order has ended.
            self._wait(token, intent.reason, "an order of the daemon's was approved before this exit")
            return RiskDecision(False, "the flatten's exit waits for the daemon's working orders on "
                                f"{intent.contract.tradingsymbol} to end, then follows for what is still held",
                                True, "flatten")
        if not flatten and self._flattening(token) and not self.manager.reduces(intent):
            return RiskDecision(False, f"{intent.contract.tradingsymbol} is being flattened: only an order that "
                                "reduces the position goes until the flatten's exit has ended", False, "flatten")
        if self._stopping and not flatten:
            decision = self.manager.check(intent, intent.ts_ns)
            if not decision.is_exit:
                return RiskDecision(False, "the daemon is shutting down: new entries are refused", False, "stopping")
            return decision
        margin_required = margin_available = margin_used = None
        if self.broker is not None and not flatten:
            try:
                margin_required = await self.broker.order_margin(intent)
                view = await self.broker.margins()
                margin_available, margin_used = view.available, view.used
            except Exception as exc:  # the manager's model stands in; the log says the broker could not answer
                log.warning("margin_unavailable", intent_id=intent.intent_id, error=repr(exc))
        return self.manager.check(intent, intent.ts_ns, margin_required=margin_required,
                                  margin_available=margin_available, margin_used=margin_used,
                                  stop_loss_price=intent.stop_loss_price or None, flatten=flatten)

    # -- venue health -------------------------------------------------------------------------------------
    def _on_venue(self, status: VenueStatus) -> None:
        """Entries wait while the venue has a problem; exits still go. Separate from the manager's state, so the
        venue coming back never clears an operator's or the kill switch's HALT."""
        had = bool(self._venue_problems)
        if not status.ok:
            self._venue_problems[status.problem] = status.detail
        elif status.problem:
            self._venue_problems.pop(status.problem, None)
        else:
            self._venue_problems.clear()
        if self._venue_problems and not had:
            log.warning("venue_entries_refused", problems=sorted(self._venue_problems), detail=status.detail)
        elif had and not self._venue_problems:
            log.warning("venue_entries_allowed", cleared=status.problem, state=self.manager.state.value)

    def _venue_refusal(self) -> RiskDecision:
        problems = "; ".join(f"{problem}: {detail}" if detail else problem
                             for problem, detail in sorted(self._venue_problems.items()))
        return RiskDecision(False, f"entries are refused while the venue has a problem ({problems})", False, "venue")

    # -- commands -----------------------------------------------------------------------------------------
    def _on_command(self, command: Command) -> None:
        """Apply an operator's (or the daemon's) command; one with a ``command_id`` is answered with exactly one
        ``CommandResult`` (the new state and why; for a flatten, the exits issued and what was left alone)."""
        ts = command.ts_ns
        if command.kind is CommandKind.FLATTEN and command.source == FLATTEN_SOURCE:
            return  # this gate's own, published by _flatten for the execution actor
        log.warning("command", kind=command.kind.value, source=command.source, reason=command.reason,
                    target=command.target, command_id=command.command_id)
        ok, detail, count = True, "", 0
        if command.kind is CommandKind.STOP_ENTRIES:
            # Intents the strategy produced before it saw this command are still queued behind it; refusing
            # them here means no entry is sent once shutdown has begun.
            self._stopping = True
        elif command.kind is CommandKind.HALT:
            self.manager.halt(command.reason or f"halt command from {command.source}", ts)
            detail = self._state_text()
        elif command.kind is CommandKind.RESUME:
            was_halted = self.manager.state is TradingState.HALTED
            switch = self.kill_switch.path
            if was_halted and switch is not None and switch.exists():
                # Resuming now would be undone at the next look at the file, a second later.
                ok, detail = False, (f"the kill-switch file {switch} still exists: remove it, then resume; "
                                     f"{self._state_text()}")
            else:
                self.manager.resume(ts)
                detail = self._state_text() if was_halted else f"was not halted: {self._state_text()}"
        elif command.kind is CommandKind.RESET_DAILY:
            self.manager.reset_daily(ts)
            detail = f"daily loss window re-based at the current equity; {self._state_text()}"
        elif command.kind is CommandKind.FLATTEN:
            ok, detail, count = self._flatten(ts, command.reason or f"flatten command from {command.source}",
                                              underlying=command.target)
        else:
            return  # another actor's command (cancel, approve, reject): nothing to change or save here
        self._save(ts)
        if command.command_id and command.kind is not CommandKind.STOP_ENTRIES:
            self._publish_changes()  # the RiskEvent of the change goes out before the answer that reports it
            self.bus.publish(CommandResult(ts_ns=ts, command_id=command.command_id, kind=command.kind, ok=ok,
                                           detail=detail, count=count))

    def _state_text(self) -> str:
        manager = self.manager
        reason = manager.state_reason
        return (f"trading is {manager.state.value}" + (f" ({reason})" if reason else "")
                + f"; risk level {manager.level.value}")

    def _flatten(self, ts_ns: int, reason: str, *, underlying: str = "") -> tuple[bool, str, int]:
        """Exit every open position (of ``underlying`` only, when named) at market (with market protection), even
        while HALTED, once none of our orders is working on it; our working orders there are cancelled (by the
        execution actor, on the FLATTEN command published here). The part of a position placed outside the daemon
        (by hand) is left alone: the daemon never closes that on its own. Returns (ok, what it did, exits issued
        now); not ok for an unknown underlying, or a named one with neither a position nor a working order."""
        name = ""
        if underlying.strip():
            try:
                name = resolve_underlying(underlying).name
            except ValueError as exc:
                return False, str(exc), 0
        # Published first and always: execution may know orders this gate does not (parked at a restart).
        self.bus.publish(Command(ts_ns=ts_ns, kind=CommandKind.FLATTEN, source=FLATTEN_SOURCE, reason=reason,
                                 target=name))
        positions = [p for p in self.manager.open_positions() if not name or p.contract.underlying == name]
        working = self.manager.working_orders(name)
        cancelling = [intent_id for intent_id in working if intent_id not in self._flatten_intents]
        if not positions and not cancelling:
            if not name:
                return True, "no open position: nothing to flatten", 0
            held = sorted({p.contract.underlying for p in self.manager.open_positions()})
            return False, (f"no open position in {name}: nothing to flatten (open positions are in "
                           f"{', '.join(held)})" if held else f"no open position in {name}: nothing to flatten"), 0
        log.warning("flatten", reason=reason, positions=len(positions), working_orders=len(cancelling),
                    underlying=name)
        exits: list[str] = []
        waits: list[str] = []
        left: list[str] = []
        for position in positions:
            contract = position.contract
            quantity, outside = self._own_part(position)
            if outside:
                left.append(f"{contract.tradingsymbol} {outside}")
            if not quantity:
                log.warning("flatten_leaves_outside_position", tradingsymbol=contract.tradingsymbol,
                            quantity=position.quantity, why="placed outside the daemon: never closed by it")
            elif self._busy(contract.instrument_token):
                self._wait(contract.instrument_token, reason, "the daemon's working orders on it are being cancelled")
                waits.append(f"{contract.tradingsymbol} {position.quantity}")
            else:
                exits.append(self._exit(position, quantity, reason, ts_ns))
        held_tokens = {p.contract.instrument_token for p in positions}
        for intent_id in cancelling:  # an entry that fills before its cancel gets its exit when it ends
            if working[intent_id] not in held_tokens:
                self._wait(working[intent_id], reason, "an entry of the daemon's is working on it")
        scope = f"every open {name} position" if name else "every open position"
        detail = (f"{len(exits)} exit order(s) issued for {scope}" + (f": {', '.join(exits)}" if exits else "")
                  if positions else f"no open {name + ' ' if name else ''}position")
        if waits:
            detail += (f"; {len(waits)} position(s) wait for the daemon's working orders on them to end, then get "
                       f"their exit: {', '.join(waits)}")
        if cancelling:
            detail += f"; {len(cancelling)} working order(s) of the daemon's being cancelled"
        if left:
            detail += f"; left alone (placed outside the daemon, never closed by it): {', '.join(left)}"
        return True, detail, len(exits)

    def _own_part(self, position: BookPosition) -> tuple[int, int]:
        """(units of ``position`` the daemon may exit, signed units placed outside it that stay)."""
        ours = position.quantity - self._outside.get(position.contract.instrument_token, 0)
        if ours * position.quantity <= 0:
            return 0, position.quantity
        quantity = min(abs(ours), abs(position.quantity))
        return quantity, position.quantity - position.quantity // abs(position.quantity) * quantity

    def _busy(self, token: int) -> bool:
        """True while an order of ours on this contract is working (approved and not ended, or a flatten's exit
        issued and not yet decided)."""
        return self.manager.has_pending(token) or token in self._flatten_intents.values()

    def _flattening(self, token: int) -> bool:
        return token in self._flatten_waiting or token in self._flatten_intents.values()

    def _wait(self, token: int, reason: str, why: str) -> None:
        self._flatten_waiting[token] = reason
        position = self.manager.book.positions.get(token)
        log.warning("flatten_waits_for_working_orders", instrument_token=token, why=why,
                    tradingsymbol=position.contract.tradingsymbol if position else "",
                    quantity=position.quantity if position else 0,
                    working_orders=sorted(i for i, t in self.manager.working_orders().items() if t == token))

    def _flatten_when_done(self) -> None:
        """After a terminal update: each contract a flatten waits on whose orders have all ended gets its exit, for
        what is still held (nothing when a resting exit of ours filled instead of being cancelled)."""
        for token in [t for t in self._flatten_waiting if not self._busy(t)]:
            reason = self._flatten_waiting.pop(token)
            position = self.manager.book.positions.get(token)
            quantity, _ = self._own_part(position) if position is not None and position.quantity else (0, 0)
            if position is None or not quantity:
                log.warning("flatten_done_without_exit", instrument_token=token,
                            tradingsymbol=position.contract.tradingsymbol if position else "",
                            quantity=position.quantity if position else 0,
                            why="nothing of the daemon's is held any more once its working orders ended")
                continue
            self._exit(position, quantity, reason, self.clock.now_ns())

    def _exit(self, position: BookPosition, quantity: int, reason: str, ts_ns: int) -> str:
        """Issue the flatten's exit of ``quantity`` units of ``position``; it comes back through this gate like any
        intent, marked as a flatten. Returns it in words."""
        intent = OrderIntent(
            ts_ns=ts_ns, intent_id=self.ids.next("F"), strategy_id=FLATTEN_STRATEGY_ID,
            contract=position.contract, side=Side.SELL if position.quantity > 0 else Side.BUY,
            quantity=quantity, order_type=OrderType.MARKET, purpose=IntentPurpose.EXIT,
            expected_price=position.last_price, market_protection=-1.0, reason=f"flatten: {reason}")
        self._flatten_intents[intent.intent_id] = position.contract.instrument_token
        log.warning("flatten_exit_issued", intent_id=intent.intent_id, tradingsymbol=position.contract.tradingsymbol,
                    side=intent.side.value, quantity=quantity, held=position.quantity)
        self.bus.publish(intent)
        return f"{intent.side.value} {quantity} {position.contract.tradingsymbol}"

    # -- announcements and persistence --------------------------------------------------------------------
    def _publish_changes(self) -> None:
        events = self.manager.drain_events()
        for event in events:
            log.warning("risk_state", state=event.state.value, risk_level=event.level.value, reason=event.reason,
                        limit=event.limit, event_ts_ns=event.ts_ns)
            self.bus.publish(event)
        if events:
            self._save(events[-1].ts_ns)

    def seen_fills(self, fills: Iterable[Fill]) -> None:
        """Before start: fills already in the restored book, never to be booked again; those of orders placed
        outside the daemon are remembered, so that a flatten leaves them alone."""
        for fill in fills:
            self._seen_fills.add(fill.fill_id)
            self._note_outside(fill)

    def _note_outside(self, fill: Fill) -> None:
        if fill.fill_id.startswith(OUTSIDE_FILL_PREFIXES):
            token = fill.contract.instrument_token
            self._outside[token] = self._outside.get(token, 0) + fill.side.sign * fill.quantity

    def _save(self, ts_ns: int) -> None:
        if self.journal is None:
            return
        try:
            self.journal.save_state(STATE_NAME, self.manager.to_state(), ts_ns)
        except JournalWriteError as exc:
            # Never raise here: a crash would deliver the event again. Halt entries instead, once, and say why.
            if not self.journal_failed:
                self.journal_failed = True
                log.error("journal_write_failed", what="risk state", journal=str(self.journal.path),
                          error=str(exc), fix="free disk space or make the data dir writable, then restart")
                # Entries stop while it lasts; exits and stops still go (a HALT would refuse a stop-loss too).
                self._on_venue(VenueStatus(ts_ns=ts_ns, ok=False, problem=JOURNAL_PROBLEM,
                                           detail=str(exc)))
