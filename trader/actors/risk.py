"""Risk gate actor (first cut): the only path from an ``OrderIntent`` to an ``OrderRequest``.

Pre-trade checks on every intent: trading state, whole lots, lots per trade, positions per underlying and in total.
Daily loss (realized + unrealized, net of charges, from the portfolio's snapshots) at or beyond the limit moves the
state to REDUCING_ONLY: entries are refused, exits still pass. HALTED (the kill-switch command) refuses
everything. An intent counts as an exit only if it reduces a position the gate has seen filled — the strategy's
own label is not trusted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from trader.actors.base import Actor
from trader.bus import EventBus
from trader.events import (
    Command,
    CommandKind,
    Fill,
    OrderIntent,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    PositionSnapshot,
    RiskEvent,
    RiskLevel,
    TradingState,
)
from trader.ids import is_valid_tag
from trader.logging import get_logger
from trader.market.instruments import freeze_quantity

log = get_logger("trader.risk")


@dataclass(frozen=True, slots=True)
class RiskLimits:
    initial_capital: int  # paise
    max_daily_loss_pct: float
    max_lots_per_trade: int
    max_positions_per_symbol: int
    max_total_positions: int


class RiskGateActor(Actor):
    name = "risk"

    def __init__(self, bus: EventBus, limits: RiskLimits) -> None:
        super().__init__(bus, conflate_ticks=True)
        self.limits = limits
        self.state = TradingState.ACTIVE
        self.level = RiskLevel.LOW
        self._positions: dict[int, int] = {}  # instrument token → signed units filled
        self._underlying_of: dict[int, str] = {}
        self._pending: dict[str, OrderIntent] = {}  # approved, not yet terminal
        self._seen_intents: set[str] = set()
        self._loss_breached = False
        self._stopping = False
        self._session_day = 0
        self._day_pnl_base = 0
        self.approved = 0
        self.rejected = 0
        self.day_pnl = 0

    def subscriptions(self) -> Iterable[type]:
        return (OrderIntent, Fill, OrderUpdate, PositionSnapshot, Command)

    @property
    def daily_loss_limit(self) -> int:
        return round(self.limits.initial_capital * self.limits.max_daily_loss_pct)

    async def handle(self, event: Any) -> None:
        kind = type(event)
        if kind is OrderIntent:
            self._on_intent(event)
        elif kind is Fill:
            token = event.contract.instrument_token
            self._positions[token] = self._positions.get(token, 0) + event.side.sign * event.quantity
            self._underlying_of[token] = event.contract.underlying
        elif kind is OrderUpdate:
            if event.status.is_terminal:
                self._pending.pop(event.intent_id, None)
        elif kind is PositionSnapshot:
            self._on_snapshot(event)
        elif kind is Command:
            self._on_command(event)

    # -- intents ------------------------------------------------------------------------------------------
    def _on_intent(self, intent: OrderIntent) -> None:
        if intent.intent_id in self._seen_intents:
            log.warning("duplicate_intent_ignored", intent_id=intent.intent_id)
            return
        reason = self.check(intent)
        # Marked as seen only once decided: if deciding crashed, the redelivered intent gets its decision.
        self._seen_intents.add(intent.intent_id)
        if reason:
            self.rejected += 1
            log.info("intent_rejected", intent_id=intent.intent_id, reason=reason,
                     tradingsymbol=intent.contract.tradingsymbol, side=intent.side.value,
                     quantity=intent.quantity, state=self.state.value)
            self.bus.publish(OrderUpdate(ts_ns=intent.ts_ns, intent_id=intent.intent_id, order_id="",
                                         status=OrderStatus.REJECTED, reason=f"risk: {reason}"))
            return
        self.approved += 1
        self._pending[intent.intent_id] = intent
        self._underlying_of[intent.contract.instrument_token] = intent.contract.underlying
        log.info("intent_approved", intent_id=intent.intent_id, tag=intent.intent_id,
                 tradingsymbol=intent.contract.tradingsymbol, side=intent.side.value, quantity=intent.quantity)
        self.bus.publish(OrderRequest(ts_ns=intent.ts_ns, intent=intent, tag=intent.intent_id))

    def is_reducing(self, intent: OrderIntent) -> bool:
        """True if the intent only shrinks a filled position, even if every exit already in flight fills too."""
        token = intent.contract.instrument_token
        position = self._positions.get(token, 0)
        if position == 0 or intent.side.sign * position > 0:
            return False
        exiting = sum(p.quantity for p in self._pending.values()
                      if p.contract.instrument_token == token and p.side.sign * position < 0)
        return intent.quantity <= abs(position) - exiting

    def check(self, intent: OrderIntent) -> str:
        """An empty string approves; anything else is the reason for refusing, written for a human."""
        if not is_valid_tag(intent.intent_id):
            return f"intent id {intent.intent_id!r} cannot serve as a broker tag (1-20 letters and digits)"
        lot = intent.contract.lot_size
        if intent.quantity <= 0 or intent.quantity % lot:
            return f"quantity {intent.quantity} is not a whole number of lots (lot size {lot})"
        if self.state is TradingState.HALTED:
            return "trading is HALTED (kill switch): no orders until resume"
        if self.is_reducing(intent):
            return ""  # exits are never refused for limits
        if self._stopping:
            return "the daemon is shutting down: new entries are refused"
        if self.state is not TradingState.ACTIVE:
            return f"trading state is {self.state.value}: new entries are refused"
        freeze = freeze_quantity(intent.contract.underlying)
        if intent.quantity > freeze:
            return (f"quantity {intent.quantity} exceeds the exchange freeze quantity {freeze} for "
                    f"{intent.contract.underlying} (order slicing is not supported yet)")
        lots = intent.quantity // lot
        if lots > self.limits.max_lots_per_trade:
            return f"{lots} lots exceeds max_lots_per_trade={self.limits.max_lots_per_trade}"
        open_tokens = self._open_tokens()
        token = intent.contract.instrument_token
        if token not in open_tokens:
            same_symbol = sum(1 for t in open_tokens if self._underlying_of.get(t) == intent.contract.underlying)
            if same_symbol >= self.limits.max_positions_per_symbol:
                return (f"{same_symbol} open positions in {intent.contract.underlying} reaches "
                        f"max_positions_per_symbol={self.limits.max_positions_per_symbol}")
            if len(open_tokens) >= self.limits.max_total_positions:
                return (f"{len(open_tokens)} open positions reaches "
                        f"max_total_positions={self.limits.max_total_positions}")
        return ""

    def _open_tokens(self) -> set[int]:
        tokens = {t for t, q in self._positions.items() if q != 0}
        tokens.update(p.contract.instrument_token for p in self._pending.values())
        return tokens

    # -- limits and state ---------------------------------------------------------------------------------
    def _on_snapshot(self, snapshot: PositionSnapshot) -> None:
        if snapshot.session_day != self._session_day:
            if self._session_day and self._loss_breached:
                self._loss_breached = False  # the daily limit applies per session
                if self.state is TradingState.REDUCING_ONLY:
                    self._set_state(TradingState.ACTIVE, snapshot.ts_ns, "new session", "daily_reset")
            self._session_day = snapshot.session_day
            self._day_pnl_base = 0
        self.day_pnl = snapshot.day_pnl - self._day_pnl_base
        limit = self.daily_loss_limit
        used = -self.day_pnl / limit if limit > 0 else 0.0
        level = (RiskLevel.CRITICAL if used >= 1 else RiskLevel.HIGH if used >= 0.75
                 else RiskLevel.MEDIUM if used >= 0.5 else RiskLevel.LOW)
        if level is not self.level:
            self.level = level
            self._announce(snapshot.ts_ns, f"daily loss uses {used:.0%} of the limit", "daily_loss")
        if used >= 1 and not self._loss_breached:
            self._loss_breached = True
            if self.state is TradingState.ACTIVE:
                self._set_state(TradingState.REDUCING_ONLY, snapshot.ts_ns,
                                f"daily loss {-self.day_pnl / 100:.2f} reached the limit {limit / 100:.2f}",
                                "max_daily_loss")

    def _on_command(self, command: Command) -> None:
        if command.kind is CommandKind.STOP_ENTRIES:
            # Intents the strategy produced before it saw this command are still queued behind it; refusing
            # them here means no entry is sent once shutdown has begun.
            self._stopping = True
        elif command.kind is CommandKind.HALT:
            self._set_state(TradingState.HALTED, command.ts_ns, command.reason or "halt command", "command")
        elif command.kind is CommandKind.RESUME:
            target = TradingState.REDUCING_ONLY if self._loss_breached else TradingState.ACTIVE
            self._set_state(target, command.ts_ns, command.reason or "resume command", "command")
        elif command.kind is CommandKind.RESET_DAILY:
            # The loss so far stops counting: the limit applies afresh from here.
            self._day_pnl_base += self.day_pnl
            self.day_pnl = 0
            self._loss_breached = False
            if self.state is TradingState.REDUCING_ONLY:
                self._set_state(TradingState.ACTIVE, command.ts_ns, "daily metrics reset", "command")

    def _set_state(self, state: TradingState, ts_ns: int, reason: str, limit: str) -> None:
        if state is self.state:
            return
        self.state = state
        self._announce(ts_ns, reason, limit)

    def _announce(self, ts_ns: int, reason: str, limit: str) -> None:
        log.warning("risk_state", state=self.state.value, level=self.level.value, reason=reason, limit=limit,
                    event_ts_ns=ts_ns)
        self.bus.publish(RiskEvent(ts_ns=ts_ns, state=self.state, level=self.level, reason=reason, limit=limit))
