"""What is worth telling the operator: events in, ``Alert``s out. Pure and synchronous (no I/O, no clock read).

``AlertRules.classify(event)`` turns one bus event into an ``Alert`` or None; it keeps the little state it needs
(the last risk level and trading state it saw, the orders it saw approved) so a change is told once. The watchers
``FeedWatch`` and ``SessionWatch`` are fed by the alert runtime's periodic check; the ``started``, ``stopped``,
``crash_restart`` and ``eod_summary`` builders are called by the runtime at those moments.

Kinds (``KINDS``) and what they mean are listed in docs/alerts.md. ``subject`` narrows the kind for deduplication:
the outbox sends one alert per (kind, subject) in its dedup window and counts the repeats.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING

from trader.events import (
    ApprovalStatus,
    ApprovalUpdate,
    Fill,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    RiskEvent,
    RiskLevel,
    TradingState,
    VenueStatus,
)
from trader.market.calendar import ist_date, ist_text
from trader.money import format_inr, to_rupees

if TYPE_CHECKING:
    from trader.market.calendar import MarketCalendar

FieldValue = str | int | float | bool | None

# The risk manager's reason for a halt begins with this; the start-up gate's halts then name "reconciliation".
_HALT_PREFIX = "halted: "
_RECONCILIATION = "reconciliation"
_BREACH_MARK = "limit reached"
MAX_REMEMBERED_ORDERS = 1_000


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}

KINDS = ("started", "stopped", "crash_restart", "reconciliation_mismatch", "risk_level", "limit_breach", "halted",
         "resumed", "feed_silent", "feed_back", "token_expired", "venue", "broker_reject", "slippage",
         "approval_pending", "eod_summary")

# Changes of state: the rules send one per change, so the outbox never deduplicates them (only rate-limits them).
# Deduplicated, "unreachable → cleared → unreachable" within the window would leave "cleared" as the last word.
TRANSITIONS = frozenset({"risk_level", "halted", "resumed", "feed_silent", "feed_back", "token_expired", "venue"})


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str
    severity: Severity
    subject: str
    text: str
    ts_ns: int
    fields: Mapping[str, FieldValue] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.subject

    @property
    def is_transition(self) -> bool:
        return self.kind in TRANSITIONS

    @property
    def title(self) -> str:
        return f"{self.severity.value.upper()} {self.kind.replace('_', ' ')}"


_LEVEL_SEVERITY = {RiskLevel.LOW: Severity.INFO, RiskLevel.MEDIUM: Severity.INFO, RiskLevel.HIGH: Severity.WARNING,
                   RiskLevel.CRITICAL: Severity.CRITICAL}


class AlertRules:
    """Bus event → Alert. ``slippage_alert_bps``: a fill at least this many basis points worse than expected, and
    worse by at least ``slippage_alert_min_paise`` in all (one tick on a ₹5 option is 100 bps and ₹3 on a lot)."""

    def __init__(self, *, slippage_alert_bps: float, slippage_alert_min_paise: int = 0,
                 level: RiskLevel = RiskLevel.LOW, state: TradingState = TradingState.ACTIVE) -> None:
        self.slippage_alert_bps = slippage_alert_bps
        self.slippage_alert_min_paise = slippage_alert_min_paise
        self.level = level
        self.state = state
        # Orders approved by the risk gate: intent id → "BUY 65 NIFTY…CE", for the words of a broker reject.
        self._orders: OrderedDict[str, str] = OrderedDict()

    def classify(self, event: object) -> Alert | None:
        kind = type(event)
        if kind is RiskEvent:
            assert isinstance(event, RiskEvent)
            return self._risk(event)
        if kind is OrderRequest:
            assert isinstance(event, OrderRequest)
            intent = event.intent
            self._orders[intent.intent_id] = (f"{intent.side.value} {intent.quantity} "
                                              f"{intent.contract.tradingsymbol}")
            while len(self._orders) > MAX_REMEMBERED_ORDERS:
                self._orders.popitem(last=False)
            return None
        if kind is OrderUpdate:
            assert isinstance(event, OrderUpdate)
            return self._update(event)
        if kind is Fill:
            assert isinstance(event, Fill)
            return self._fill(event)
        if kind is VenueStatus:
            assert isinstance(event, VenueStatus)
            return self._venue(event)
        if kind is ApprovalUpdate:
            assert isinstance(event, ApprovalUpdate)
            return self._approval(event)
        return None

    # -- risk ---------------------------------------------------------------------------------------------------
    def _risk(self, event: RiskEvent) -> Alert | None:
        previous_state, previous_level = self.state, self.level
        self.state, self.level = event.state, event.level
        fields: dict[str, FieldValue] = {"state": event.state.value, "level": event.level.value,
                                         "previous_state": previous_state.value,
                                         "previous_level": previous_level.value, "limit": event.limit,
                                         "reason": event.reason}
        reason = event.reason
        if event.state is TradingState.HALTED and event.limit == "halt":
            why = reason.removeprefix(_HALT_PREFIX)
            if why.startswith(_RECONCILIATION):
                return Alert("reconciliation_mismatch", Severity.CRITICAL, "reconciliation",
                             f"Started HALTED: the journal and the broker disagree ({why}). Nothing is placed "
                             "until you check the broker's books and /resume.", event.ts_ns, fields)
            return Alert("halted", Severity.CRITICAL, "trading", f"Trading HALTED: {why}. No new orders until "
                         "/resume (open positions stay; /flatten closes them).", event.ts_ns, fields)
        if previous_state is TradingState.HALTED and event.state is not TradingState.HALTED:
            return Alert("resumed", Severity.INFO, "trading", f"Trading resumed: now {event.state.value} "
                         f"({reason}).", event.ts_ns, fields)
        if _BREACH_MARK in reason:
            return Alert("limit_breach", Severity.CRITICAL, event.limit or "limit",
                         f"Risk limit breached: {reason}. Trading is {event.state.value}.", event.ts_ns, fields)
        if event.level is not previous_level:
            direction = "up" if _level_rank(event.level) > _level_rank(previous_level) else "down"
            return Alert("risk_level", _LEVEL_SEVERITY[event.level], event.level.value,
                         f"Risk level {direction}: {previous_level.value} → {event.level.value} ({reason}).",
                         event.ts_ns, fields)
        if event.state is not previous_state:
            return Alert("risk_level", Severity.WARNING, event.state.value,
                         f"Trading is now {event.state.value} (was {previous_state.value}): {reason}.",
                         event.ts_ns, fields)
        return None

    # -- orders -------------------------------------------------------------------------------------------------
    def _update(self, update: OrderUpdate) -> Alert | None:
        if update.status is not OrderStatus.REJECTED or update.check:
            if update.status.is_terminal:
                self._orders.pop(update.intent_id, None)
            return None  # the risk gate's own refusals name their check: they are decisions, not news
        order = self._orders.pop(update.intent_id, update.intent_id)
        reason = update.reason or "no reason given"
        return Alert("broker_reject", Severity.WARNING, reason[:80],
                     f"The broker rejected {order}: {reason}", update.ts_ns,
                     {"intent_id": update.intent_id, "order_id": update.order_id, "reason": reason})

    def _fill(self, fill: Fill) -> Alert | None:
        bps = fill.slippage_bps
        if bps < self.slippage_alert_bps or fill.slippage_paise * fill.quantity < self.slippage_alert_min_paise:
            return None
        symbol = fill.contract.tradingsymbol
        return Alert("slippage", Severity.WARNING, symbol,
                     f"Slippage {bps:.0f} bps on {fill.side.value} {fill.quantity} {symbol}: filled at "
                     f"{format_inr(fill.price)}, expected {format_inr(fill.expected_price)} (alert at "
                     f"{self.slippage_alert_bps:g} bps).", fill.ts_ns,
                     {"intent_id": fill.intent_id, "fill_id": fill.fill_id, "tradingsymbol": symbol,
                      "slippage_bps": round(bps, 2), "price_inr": to_rupees(fill.price),
                      "expected_price_inr": to_rupees(fill.expected_price), "quantity": fill.quantity})

    def _venue(self, status: VenueStatus) -> Alert | None:
        fields: dict[str, FieldValue] = {"ok": status.ok, "problem": status.problem, "detail": status.detail}
        # A recovery has its own subject: deduplicated with the problem's (same kind and subject), "entries resume"
        # sent a minute after "entries stop" would be swallowed, leaving the operator with the stop as last word.
        if status.problem == "token_expired":
            if status.ok:
                return Alert("token_expired", Severity.INFO, "token accepted", "The Kite access token is accepted "
                             "again: entries resume.", status.ts_ns, fields)
            return Alert("token_expired", Severity.CRITICAL, "token", f"The Kite access token was refused: new "
                         f"entries stop. Run `trader login` ({status.detail}).", status.ts_ns, fields)
        if not status.problem:
            return None
        if status.ok:
            return Alert("venue", Severity.INFO, f"{status.problem} cleared", f"Venue problem cleared: "
                         f"{status.problem}.", status.ts_ns, fields)
        return Alert("venue", Severity.CRITICAL if status.problem != "broker_unreachable" else Severity.WARNING,
                     status.problem, f"New entries stop: {status.problem.replace('_', ' ')} ({status.detail}).",
                     status.ts_ns, fields)

    def _approval(self, update: ApprovalUpdate) -> Alert | None:
        if update.status is not ApprovalStatus.PENDING:
            return None
        intent = update.intent
        return Alert("approval_pending", Severity.INFO, intent.intent_id,
                     f"Signal waiting for approval: {intent.side.value} {intent.quantity} "
                     f"{intent.contract.tradingsymbol} at about {format_inr(intent.expected_price)} "
                     f"({intent.reason or intent.strategy_id}); expires {ist_text(update.expires_ns)[11:19]} IST. "
                     f"/approve {intent.intent_id} or /reject {intent.intent_id}",
                     update.ts_ns, {"intent_id": intent.intent_id, "signal_id": intent.signal_id,
                                    "tradingsymbol": intent.contract.tradingsymbol})


def _level_rank(level: RiskLevel) -> int:
    return list(RiskLevel).index(level)


# -- the runtime's moments ---------------------------------------------------------------------------------------
def started(ts_ns: int, *, mode: str, state: TradingState, reason: str, level: RiskLevel, positions: int,
            auto_execution: bool) -> Alert:
    text = (f"Trader started ({mode}, {'auto' if auto_execution else 'semi-live: entries wait for /approve'}): "
            f"trading {state.value}{f' ({reason})' if reason else ''}, risk level {level.value}, "
            f"{positions} open position{'s' if positions != 1 else ''}.")
    severity = Severity.INFO if state is TradingState.ACTIVE else Severity.WARNING
    return Alert("started", severity, mode, text, ts_ns,
                 {"mode": mode, "state": state.value, "level": level.value, "positions": positions})


def crash_restart(ts_ns: int, *, previous_start: str) -> Alert:
    return Alert("crash_restart", Severity.CRITICAL, "restart",
                 f"Restarted after a crash: the run started {previous_start} did not stop cleanly. The start-up "
                 "reconciliation checked the books against the broker.", ts_ns, {"previous_start": previous_start})


def stopped(ts_ns: int, *, reason: str, day_pnl: int, positions: int) -> Alert:
    return Alert("stopped", Severity.WARNING, "stop",
                 f"Trader stopping ({reason}): day P&L {format_inr(day_pnl)}, {positions} open "
                 f"position{'s' if positions != 1 else ''} (the next start takes them over).", ts_ns,
                 {"reason": reason, "day_pnl_inr": to_rupees(day_pnl), "positions": positions})


@dataclass(frozen=True, slots=True)
class DayFigures:
    day: date
    day_pnl: int  # paise: realized + unrealized − charges since the session open
    fills: int
    charges: int  # paise, of the day's fills
    equity: int
    positions: int


def eod_summary(ts_ns: int, figures: DayFigures) -> Alert:
    return Alert("eod_summary", Severity.INFO, figures.day.isoformat(),
                 f"End of day {figures.day.isoformat()}: P&L {format_inr(figures.day_pnl)}, {figures.fills} "
                 f"fill{'s' if figures.fills != 1 else ''}, charges {format_inr(figures.charges)}, equity "
                 f"{format_inr(figures.equity)}, {figures.positions} open position"
                 f"{'s' if figures.positions != 1 else ''}.", ts_ns,
                 {"day": figures.day.isoformat(), "day_pnl_inr": to_rupees(figures.day_pnl), "fills": figures.fills,
                  "charges_inr": to_rupees(figures.charges), "equity_inr": to_rupees(figures.equity),
                  "positions": figures.positions})


class FeedWatch:
    """Feed silence during market hours, told once per silence, and once more when ticks come back.

    ``observe`` takes what the health probe says (market open by event time, the feed's age in wall seconds, None
    before the first tick, and the seconds since the gate passed) and returns the alert to send, if any."""

    def __init__(self, silent_after_s: float) -> None:
        self.silent_after_s = silent_after_s
        self.silent = False

    def observe(self, ts_ns: int, *, market_open: bool, feed_age_s: float | None, since_ready_s: float) -> Alert | None:
        age = since_ready_s if feed_age_s is None else feed_age_s
        if self.silent:
            if feed_age_s is not None and feed_age_s < self.silent_after_s:
                self.silent = False
                return Alert("feed_back", Severity.INFO, "feed", f"Market data is back (last tick "
                             f"{feed_age_s:.0f} s ago).", ts_ns, {"feed_age_s": round(feed_age_s, 1)})
            return None
        if market_open and age >= self.silent_after_s:
            self.silent = True
            seen = "no tick since the start" if feed_age_s is None else f"no tick for {feed_age_s:.0f} s"
            return Alert("feed_silent", Severity.CRITICAL, "feed",
                         f"Market data silent during market hours: {seen} (alert after {self.silent_after_s:g} s). "
                         "Strategies see no prices; the systemd watchdog restarts a dead feed.", ts_ns,
                         {"feed_age_s": None if feed_age_s is None else round(feed_age_s, 1)})
        return None


class SessionWatch:
    """Tells when a session the daemon ran through has closed (by event time): once per session day.

    ``observe(now_ns)`` returns the day whose close has just been passed, if the daemon saw that session open."""

    def __init__(self, calendar: MarketCalendar) -> None:
        self.calendar = calendar
        self._seen: date | None = None  # the session day observed while it was open
        self._told: set[date] = set()

    def observe(self, now_ns: int) -> date | None:
        seen = self._seen
        if seen is not None and now_ns >= self.calendar.session_bounds(seen)[1]:
            self._seen = None  # the clock may have jumped into the next session: that one is seen next time
            self._told.add(seen)
            return seen
        day = ist_date(now_ns)
        if day not in self._told and self.calendar.is_open(now_ns):
            self._seen = day
        return None
