"""The events that travel on the bus: nothing but data.

Every event is a small frozen, slotted dataclass with ``ts_ns`` (event time from the Clock, integer nanoseconds UTC)
and, where it flows from another event, the id of its cause, so one order can be traced tick → signal → intent →
order → fill in the logs. Prices and money are integer paise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trader.market.instruments import OptionContract


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    SL = "SL"
    SL_M = "SL-M"


class OrderStatus(StrEnum):
    """Kite's wire strings for the states we act on; PENDING is ours (sent, not yet acknowledged)."""

    PENDING = "PENDING"
    OPEN = "OPEN"
    TRIGGER_PENDING = "TRIGGER PENDING"
    COMPLETE = "COMPLETE"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_STATUSES


_TERMINAL_STATUSES = frozenset({OrderStatus.COMPLETE, OrderStatus.CANCELLED, OrderStatus.REJECTED})


class Direction(StrEnum):
    BULLISH = "BULLISH"
    BEARISH = "BEARISH"


class IntentPurpose(StrEnum):
    ENTRY = "ENTRY"
    EXIT = "EXIT"


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING_ONLY = "REDUCING_ONLY"  # exits allowed, entries refused
    HALTED = "HALTED"  # nothing but an explicit flatten


class RiskLevel(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class CommandKind(StrEnum):
    HALT = "halt"
    RESUME = "resume"
    FLATTEN = "flatten"
    RESET_DAILY = "reset-daily"
    STOP_ENTRIES = "stop-entries"  # graceful shutdown: no new intents from strategies
    CANCEL = "cancel"  # target: the order id or the intent id of an open order (the execution actor cancels it)
    APPROVE = "approve"  # target: a pending semi-live intent's id (or its signal's id); the strategy actor sends it
    REJECT = "reject"  # target: as APPROVE; the pending intent ends unsent


class ApprovalStatus(StrEnum):
    """A semi-live entry's life: PENDING until the operator approves or rejects it, or it expires unanswered."""

    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


@dataclass(frozen=True, slots=True)
class Tick:
    ts_ns: int
    instrument_token: int
    last_price: int
    volume: int = 0
    oi: int = 0
    bid: int = 0
    bid_qty: int = 0
    ask: int = 0
    ask_qty: int = 0
    exchange_ts_ns: int = 0
    tick_id: int = 0


@dataclass(frozen=True, slots=True)
class Signal:
    ts_ns: int
    signal_id: str
    strategy_id: str
    underlying: str
    direction: Direction
    confidence: float
    reason: str
    tick_id: int = 0


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """What a strategy (or a human) wants. Only the risk gate turns an intent into an order."""

    ts_ns: int
    intent_id: str
    strategy_id: str
    contract: OptionContract
    side: Side
    quantity: int
    order_type: OrderType
    purpose: IntentPurpose
    expected_price: int  # paise: the price the decision was based on; slippage is measured against it
    limit_price: int = 0
    trigger_price: int = 0
    market_protection: float = -1.0  # Kite: -1 = automatic, else a percentage in (0, 100]
    stop_loss_price: int = 0  # paise; bounds the premium at risk for the risk check (0 = the default stop)
    signal_id: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An approved intent on its way to execution. ``tag`` is the broker-side idempotency key."""

    ts_ns: int
    intent: OrderIntent
    tag: str


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """A state change of the order that serves one intent.

    ``order_id`` is empty when the intent never reached the broker (refused by the risk gate, or never accepted).
    Exactly one terminal update (COMPLETE, CANCELLED, REJECTED) ends every intent.
    """

    ts_ns: int
    intent_id: str
    order_id: str
    status: OrderStatus
    filled_quantity: int = 0
    pending_quantity: int = 0
    average_price: int = 0
    reason: str = ""
    check: str = ""  # the risk check that refused the intent, when the risk gate did (``RiskDecision.check``)


@dataclass(frozen=True, slots=True)
class Fill:
    ts_ns: int
    fill_id: str
    intent_id: str
    order_id: str
    contract: OptionContract
    side: Side
    quantity: int
    price: int
    expected_price: int
    charges: int
    purpose: IntentPurpose = IntentPurpose.ENTRY

    @property
    def slippage_paise(self) -> int:
        """Per unit; positive means the fill was worse than expected."""
        return (self.price - self.expected_price) * self.side.sign

    @property
    def slippage_bps(self) -> float:
        if self.expected_price <= 0:
            return 0.0
        return self.slippage_paise * 10_000 / self.expected_price


@dataclass(frozen=True, slots=True)
class RiskEvent:
    ts_ns: int
    state: TradingState
    level: RiskLevel
    reason: str
    limit: str = ""


@dataclass(frozen=True, slots=True)
class PositionView:
    contract: OptionContract
    quantity: int  # signed units: >0 long, <0 short
    average_price: int
    last_price: int
    realized: int
    unrealized: int


@dataclass(frozen=True, slots=True)
class PositionSnapshot:
    """The portfolio's view, published on every fill and at most once a second of event time otherwise."""

    ts_ns: int
    positions: tuple[PositionView, ...]
    realized: int
    unrealized: int
    charges: int
    equity: int
    day_pnl: int  # realized + unrealized − charges since the session open
    session_day: int = 0  # IST date ordinal of the session day_pnl belongs to

    def open_positions(self) -> tuple[PositionView, ...]:
        return tuple(p for p in self.positions if p.quantity != 0)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    ts_ns: int
    counters: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Command:
    """An operator's (or the daemon's own) instruction. ``target`` narrows it: FLATTEN an underlying ("" = all
    positions), CANCEL an order id or intent id, APPROVE/REJECT a pending intent id or its signal id."""

    ts_ns: int
    kind: CommandKind
    source: str = "operator"
    reason: str = ""
    target: str = ""
    command_id: str = ""  # set by whoever waits for the ``CommandResult``


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What the actor that carried out a ``Command`` (with a ``command_id``) did: ``ok`` False means it could not
    (unknown target, nothing to do, refused) and ``detail`` says why in words an operator can act on. ``count`` is
    how many things the command did, for programs (FLATTEN: the exit orders issued at once; those that wait for
    working orders to end first are in ``detail``), so nobody has to parse ``detail``."""

    ts_ns: int
    command_id: str
    kind: CommandKind
    ok: bool
    detail: str = ""
    count: int = 0


@dataclass(frozen=True, slots=True)
class ApprovalUpdate:
    """A semi-live entry changed state. ``intent`` is the strategy's intent (re-priced at the current quote when
    APPROVED: that is the intent sent to the risk gate); ``expires_ns`` is event time; ``by`` names who decided
    (the command's source; "" for an expiry)."""

    ts_ns: int
    intent: OrderIntent
    status: ApprovalStatus
    expires_ns: int
    by: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """Health of a live market-data connection: connected, reconnecting, or silent (nothing received in time)."""

    ts_ns: int
    status: str
    detail: str = ""


# The venue problem of a journal that can no longer be written: entries stop, exits still go.
JOURNAL_PROBLEM = "journal_unwritable"


@dataclass(frozen=True, slots=True)
class VenueStatus:
    """Whether the venue can be traded with: ``ok=False`` names a ``problem`` ("token_expired",
    "broker_unreachable") that stops new entries until the same problem is reported ``ok=True`` (``problem == ""``
    with ``ok=True`` clears every problem). ``detail`` says what happened and what fixes it."""

    ts_ns: int
    ok: bool
    problem: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class FeedEnded:
    """The market-data source has no more data (end of a replay or a bounded simulation)."""

    ts_ns: int
    reason: str = ""


Event = (
    Tick
    | Signal
    | OrderIntent
    | OrderRequest
    | OrderUpdate
    | Fill
    | RiskEvent
    | PositionSnapshot
    | Heartbeat
    | Command
    | FeedStatus
    | FeedEnded
    | VenueStatus
    | ApprovalUpdate
    | CommandResult
)
