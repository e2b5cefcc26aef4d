"""Semi-live approvals: the pending book of entries that wait for an operator (pure, synchronous, no I/O).

With auto-execution off, an ENTRY intent a strategy emits is not sent: it waits here as PENDING until the operator
approves it (it then goes to the risk gate re-priced at the current quote), rejects it, or it expires unanswered
``expiry_ns`` of event time after it was made. Every decision is final: an approval is decided once. The strategy
actor (``trader/actors/strategy.py``) does the bus and the journal around this book; the control service reads it.

A pending entry is found by its intent id or by the id of the signal it came from (``find``).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass

from trader.clock import NS_PER_SECOND
from trader.events import ApprovalStatus, OrderIntent, Side, Tick
from trader.market.calendar import ist_text
from trader.money import format_inr

DECIDED_KEPT = 200  # decided approvals kept for the operator's view (the journal keeps them all)


@dataclass(frozen=True, slots=True)
class Approval:
    """One semi-live entry. ``intent`` is the strategy's intent; once APPROVED, the re-priced intent that was sent."""

    intent: OrderIntent
    status: ApprovalStatus
    created_ns: int
    expires_ns: int
    decided_ns: int = 0
    by: str = ""
    reason: str = ""

    @property
    def intent_id(self) -> str:
        return self.intent.intent_id

    @property
    def signal_id(self) -> str:
        return self.intent.signal_id

    @property
    def pending(self) -> bool:
        return self.status is ApprovalStatus.PENDING

    def describe(self) -> str:
        intent = self.intent
        return (f"{intent.intent_id} ({intent.side.value} {intent.quantity} {intent.contract.tradingsymbol} at "
                f"{format_inr(intent.expected_price)})")


class ApprovalError(Exception):
    """An approve or reject that cannot be done; the message says why in words an operator can act on."""


class UnknownApproval(ApprovalError):
    pass


class AlreadyDecided(ApprovalError):
    """``just_expired``: it was still pending but its time had come; this call expired it (publish that)."""

    def __init__(self, approval: Approval, *, just_expired: bool = False) -> None:
        self.approval = approval
        self.just_expired = just_expired
        when = ist_text(approval.decided_ns) if approval.decided_ns else "earlier"
        by = f" by {approval.by}" if approval.by else ""
        super().__init__(f"{approval.intent_id} is already {approval.status.value} (at {when}{by}"
                         f"{': ' + approval.reason if approval.reason else ''}): a decision is final")


class NoQuote(ApprovalError):
    pass


def quote_price(side: Side, quote: Tick | None) -> int:
    """The price an order would meet now: a BUY the ask, a SELL the bid, else the last traded price (0: none).
    The one rule for an operator's price: a re-priced approval, a manual order (``control/resolve.py``), the seed
    API's orders (``api/broker.py``)."""
    if quote is None:
        return 0
    touch = quote.ask if side is Side.BUY else quote.bid
    return touch if touch > 0 else max(quote.last_price, 0)


def _round_to_tick(price: int, tick: int) -> int:
    return max(tick, (price + tick // 2) // tick * tick)


def quote_age_problem(quote: Tick | None, now_ns: int, max_age_ns: int | None) -> str:
    """Why ``quote`` is too old to price an order at ``now_ns`` (event time), or "" when it is fresh enough (or no
    age limit is set). A silent feed must not price an order on the last price it happened to leave behind."""
    if quote is None or max_age_ns is None or now_ns - quote.ts_ns <= max_age_ns:
        return ""
    return (f"its last quote is {(now_ns - quote.ts_ns) / NS_PER_SECOND:,.0f} s old, over "
            f"control.max_quote_age_seconds ({max_age_ns / NS_PER_SECOND:g} s): the feed may be silent "
            "(`trader status` shows its age)")


def reprice(intent: OrderIntent, quote: Tick | None, now_ns: int, *,
            max_quote_age_ns: int | None = None) -> OrderIntent:
    """The intent at the current quote, stamped ``now_ns``: ``expected_price`` becomes the quote's price; a limit
    and a trigger price move by the same amount (rounded to the contract's tick); ``stop_loss_price`` keeps its
    distance (never below one tick). Raises ``NoQuote`` when the contract has no usable quote."""
    stale = quote_age_problem(quote, now_ns, max_quote_age_ns)
    if stale:
        raise NoQuote(f"{intent.contract.tradingsymbol} cannot be priced now: {stale}; it stays pending, try again "
                      "once its price is streaming")
    price = quote_price(intent.side, quote)
    if price <= 0:
        raise NoQuote(f"no quote for {intent.contract.tradingsymbol} yet: it cannot be priced now; it stays pending, "
                      "try again once its price is streaming")
    shift = price - intent.expected_price
    tick = intent.contract.tick_size
    return dataclasses.replace(
        intent, ts_ns=now_ns, expected_price=price,
        limit_price=_round_to_tick(intent.limit_price + shift, tick) if intent.limit_price else 0,
        trigger_price=_round_to_tick(intent.trigger_price + shift, tick) if intent.trigger_price else 0,
        stop_loss_price=max(intent.stop_loss_price + shift, tick) if intent.stop_loss_price else 0)


class ApprovalBook:
    """The pending entries and the decided ones (the last ``DECIDED_KEPT``). Time is always passed in."""

    def __init__(self, expiry_ns: int, *, decided_kept: int = DECIDED_KEPT,
                 max_quote_age_ns: int | None = None) -> None:
        if expiry_ns <= 0:
            raise ValueError(f"approval expiry must be positive, got {expiry_ns} ns")
        self.expiry_ns = expiry_ns
        self.max_quote_age_ns = max_quote_age_ns
        self._pending: dict[str, Approval] = {}  # intent id → approval, in arrival order
        self._decided: deque[Approval] = deque(maxlen=decided_kept)
        self._decided_by_id: dict[str, Approval] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, intent: OrderIntent, now_ns: int) -> Approval:
        if intent.intent_id in self._pending or intent.intent_id in self._decided_by_id:
            raise ValueError(f"intent {intent.intent_id} is already in the approval book")
        approval = Approval(intent=intent, status=ApprovalStatus.PENDING, created_ns=now_ns,
                            expires_ns=now_ns + self.expiry_ns)
        self._pending[intent.intent_id] = approval
        return approval

    # -- views --------------------------------------------------------------------------------------------
    def pending(self) -> list[Approval]:
        """Oldest first."""
        return list(self._pending.values())

    def decided(self) -> list[Approval]:
        """Newest first."""
        return list(reversed(self._decided))

    def find(self, ref: str) -> Approval | None:
        """By intent id, else by signal id (a pending one before a decided one; the newest of each)."""
        ref = ref.strip()
        if not ref:
            return None
        found = self._pending.get(ref) or self._decided_by_id.get(ref)
        if found is not None:
            return found
        for approval in reversed(self._pending.values()):
            if approval.signal_id == ref:
                return approval
        return next((a for a in reversed(self._decided) if a.signal_id == ref), None)

    # -- decisions ----------------------------------------------------------------------------------------
    def approve(self, ref: str, now_ns: int, quote: Tick | None, *, by: str = "") -> Approval:
        """APPROVED, with the intent re-priced at ``quote`` (see ``reprice``). Raises ``UnknownApproval``,
        ``AlreadyDecided`` (one whose expiry has come is expired by this call: ``just_expired``), or ``NoQuote``
        (it stays pending)."""
        approval = self._open(ref, now_ns)
        intent = reprice(approval.intent, quote, now_ns, max_quote_age_ns=self.max_quote_age_ns)
        return self._decide(approval, ApprovalStatus.APPROVED, now_ns, by=by,
                            reason=f"approved at {format_inr(intent.expected_price)}", intent=intent)

    def reject(self, ref: str, now_ns: int, *, by: str = "", reason: str = "") -> Approval:
        approval = self._open(ref, now_ns)
        return self._decide(approval, ApprovalStatus.REJECTED, now_ns, by=by, reason=reason or "rejected")

    def expire_due(self, now_ns: int) -> list[Approval]:
        """Every pending approval whose expiry has come by ``now_ns`` (event time) becomes EXPIRED."""
        due = [a for a in self._pending.values() if now_ns >= a.expires_ns]
        return [self._expire(a, now_ns) for a in due]

    def expire_all(self, now_ns: int, reason: str) -> list[Approval]:
        """Every pending approval ends EXPIRED (entries stopped: the daemon is shutting down)."""
        return [self._decide(a, ApprovalStatus.EXPIRED, now_ns, reason=reason) for a in list(self._pending.values())]

    def _expire(self, approval: Approval, now_ns: int) -> Approval:
        seconds = self.expiry_ns / 1_000_000_000
        return self._decide(approval, ApprovalStatus.EXPIRED, now_ns,
                            reason=f"not approved within {seconds:g} s (at {ist_text(approval.expires_ns)})")

    def _open(self, ref: str, now_ns: int) -> Approval:
        approval = self.find(ref)
        if approval is None:
            raise UnknownApproval(f"no pending signal or intent {ref.strip()!r}: the pending ones are listed by "
                                  "`trader signals`")
        if approval.pending and now_ns >= approval.expires_ns:
            raise AlreadyDecided(self._expire(approval, now_ns), just_expired=True)
        if not approval.pending:
            raise AlreadyDecided(approval)
        return approval

    def _decide(self, approval: Approval, status: ApprovalStatus, now_ns: int, *, by: str = "", reason: str = "",
                intent: OrderIntent | None = None) -> Approval:
        decided = dataclasses.replace(approval, status=status, decided_ns=now_ns, by=by, reason=reason,
                                      intent=intent or approval.intent)
        del self._pending[approval.intent_id]
        if len(self._decided) == self._decided.maxlen:
            oldest = self._decided[0]
            self._decided_by_id.pop(oldest.intent_id, None)
        self._decided.append(decided)
        self._decided_by_id[decided.intent_id] = decided
        return decided
