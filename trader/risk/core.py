"""The risk core: pure and synchronous. No asyncio, no I/O, no wall clock.

Time always comes in as ``ts_ns`` (integer ns UTC) and money is integer paise. The risk gate actor wraps this core
and does the I/O (bus, logs, broker margin calls, the kill-switch file, persistence); the seed's library API
(``check_can_place_order`` & co.) takes rupee floats and converts them at the edge with ``round(x * 100)``.

What it decides:

* every intent, in this order: trading state, broker tag, whole lots, then — unless the intent reduces a filled
  position, which nothing but HALTED refuses — instrument tradable, trading window, lots per trade, freeze quantity,
  positions per underlying and in total, order value, risk per trade, margin buffer and utilisation, order rate and
  the day's price band;
* loss limits on realized + unrealized P&L net of charges in IST calendar windows (day, ISO week, month) and the
  drawdown from peak equity. A breach moves ACTIVE → REDUCING_ONLY until the breached window rolls over;
* the risk level from the largest share of any limit used.

State and level changes are queued as ``RiskEvent``s (``drain_events``); nothing is published or logged here.

Margin: the actor passes the broker's figures (Kite's order-margin and funds calls in live mode). Any figure not
given is *modelled* from the position book by ``modelled_order_margin``/``modelled_account_margin``: premium for
buys (paid up front) and a flat share of the strike notional for shorts (india-fno-facts.md §4).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TypeVar

from trader.book import BookPosition, PositionBook
from trader.clock import NS_PER_SECOND, LiveClock
from trader.events import IntentPurpose, OrderIntent, OrderType, RiskEvent, RiskLevel, Side, TradingState
from trader.ids import is_valid_tag
from trader.market.calendar import IST, MarketCalendar, ist_date
from trader.market.instruments import InstrumentMaster, OptionContract, OptionType, freeze_quantity
from trader.money import format_inr, to_paise, to_rupees
from trader.ratelimit import RateLimiter
from trader.risk.config import RiskConfig

# SPAN + exposure on a short index option is roughly 12 % of the notional (india-fno-facts.md §4); a model, not the
# exchange's number: live mode passes Kite's order-margin figure instead.
SHORT_OPTION_MARGIN_PCT = 12
LEVEL_HYSTERESIS = 0.05  # share of a limit
_LEVEL_RANK = {RiskLevel.LOW: 0, RiskLevel.MEDIUM: 1, RiskLevel.HIGH: 2, RiskLevel.CRITICAL: 3}

DAILY, WEEKLY, MONTHLY, DRAWDOWN = "daily", "weekly", "monthly", "drawdown"
LIMIT_NAMES = (DAILY, WEEKLY, MONTHLY, DRAWDOWN)

_STATE_VERSION = 1
_ONE_DAY = timedelta(days=1)


# -- money and time helpers ------------------------------------------------------------------------------------------

def _pct(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def _ist_day_start_ns(day: date) -> int:
    # IST has no daylight saving and a whole-minute offset, so its midnight is a whole second.
    return int(datetime.combine(day, time(0), tzinfo=IST).timestamp()) * NS_PER_SECOND


def _ist_wall_time(ts_ns: int) -> datetime:
    return datetime.fromtimestamp(ts_ns // NS_PER_SECOND, tz=IST)


def _day_key(day: date) -> tuple[int, ...]:
    return (day.toordinal(),)


def _iso_week_key(day: date) -> tuple[int, ...]:
    iso = day.isocalendar()
    return (iso.year, iso.week)


def _month_key(day: date) -> tuple[int, ...]:
    return (day.year, day.month)


def as_side(side: Side | str) -> Side:
    """``Side.BUY``/``Side.SELL`` or the strings "BUY"/"SELL" (any case)."""
    if isinstance(side, Side):
        return side
    try:
        return Side(str(side).strip().upper())
    except ValueError:
        raise ValueError(f"side must be BUY or SELL, got {side!r}") from None


# -- the margin model (paper mode and the library API) -------------------------------------------------------------

def short_option_margin(strike: int, quantity: int) -> int:
    """Modelled SPAN + exposure for ``quantity`` short units at ``strike`` (paise)."""
    return quantity * strike * SHORT_OPTION_MARGIN_PCT // 100


def modelled_account_margin(book: PositionBook, capital: int) -> tuple[int, int]:
    """(used, available) paise: longs block their premium, shorts an estimate of SPAN + exposure."""
    open_positions = book.open_positions()
    open_cost = sum(p.cost for p in open_positions)
    cash = capital + book.realized - book.charges - open_cost
    short_margin = sum(short_option_margin(p.contract.strike, -p.quantity) for p in open_positions if p.quantity < 0)
    long_premium = sum(p.cost for p in open_positions if p.quantity > 0)
    return long_premium + short_margin, cash - short_margin


def modelled_order_margin(book: PositionBook, contract: OptionContract, side: Side, quantity: int, price: int) -> int:
    """Paise the order would block; 0 for the part that only reduces a held position."""
    held = book.quantity(contract.instrument_token)
    opening = quantity if held * side.sign >= 0 else max(quantity - abs(held), 0)
    if opening == 0:
        return 0
    if side is Side.BUY:
        return opening * price
    return short_option_margin(contract.strike, opening)


# -- results -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RiskDecision:
    """The answer for one intent.

    ``check`` names the check that refused ("" when approved): state, level, tag, quantity, tradable, window, lots,
    freeze, symbol_positions, total_positions, price, order_value, risk_per_trade, margin_buffer,
    margin_utilisation, order_rate, price_band.
    """

    approved: bool
    reason: str
    is_exit: bool
    check: str = ""


@dataclass(frozen=True, slots=True)
class RiskMetrics:
    """A snapshot of the risk picture. Money in paise; ``as_dict`` gives rupees for people."""

    ts_ns: int
    equity: int
    daily_pnl: int  # realized + unrealized − charges since the window start
    weekly_pnl: int
    monthly_pnl: int
    drawdown: int  # from the peak equity
    drawdown_pct: float
    margin_used: int
    margin_available: int
    margin_utilisation: float  # used / (used + available), 0..1
    margin_source: str  # "broker" (the last figures the actor passed) or "model"
    exposure: int  # Σ |qty| × mark of open positions + pending approved entries at their price
    open_positions: int
    risk_level: RiskLevel
    trading_state: TradingState
    limits_used: dict[str, float]  # share of each limit used: daily, weekly, monthly, drawdown
    breached_limits: tuple[str, ...]
    orders_last_second: int

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-able values; money in rupees (floats), shares as fractions, ``ts_ns`` as is."""
        return {
            "ts_ns": self.ts_ns,
            "equity": to_rupees(self.equity),
            "daily_pnl": to_rupees(self.daily_pnl),
            "weekly_pnl": to_rupees(self.weekly_pnl),
            "monthly_pnl": to_rupees(self.monthly_pnl),
            "drawdown": to_rupees(self.drawdown),
            "drawdown_pct": self.drawdown_pct,
            "margin_used": to_rupees(self.margin_used),
            "margin_available": to_rupees(self.margin_available),
            "margin_utilisation": self.margin_utilisation,
            "margin_source": self.margin_source,
            "exposure": to_rupees(self.exposure),
            "open_positions": self.open_positions,
            "risk_level": self.risk_level.value,
            "trading_state": self.trading_state.value,
            "limits_used": dict(self.limits_used),
            "breached_limits": list(self.breached_limits),
            "orders_last_second": self.orders_last_second,
        }


# -- internal records ----------------------------------------------------------------------------------------------

@dataclass(slots=True)
class _LossWindow:
    name: str  # DAILY / WEEKLY / MONTHLY
    limit_field: str  # the RiskConfig field that sets the limit
    fraction: float
    limit: int  # paise
    key_of: Callable[[date], tuple[int, ...]]
    clears: str  # when a breach of this window clears, for reason strings
    key: tuple[int, ...] = ()  # () sorts before every real key: the first event opens the window
    base: int = 0  # equity at the window start


@dataclass(frozen=True, slots=True)
class _Breach:
    limit: str  # the RiskConfig field
    ts_ns: int
    reason: str


@dataclass(slots=True)
class _Pending:
    """An approved intent not yet done; it holds a position slot (and, as an entry, exposure) meanwhile."""

    token: int
    underlying: str
    side: Side
    remaining: int
    price: int
    reduces: bool  # it was an exit when approved


@dataclass(frozen=True, slots=True)
class _Order:
    """One entry intent being checked, with everything the checks need."""

    contract: OptionContract  # with a non-zero instrument token (see RiskManager._keyed)
    side: Side
    quantity: int
    price: int
    local: datetime  # IST wall time of the intent
    ts_ns: int
    stop_loss_price: int | None
    margin_required: int | None
    margin_available: int | None
    margin_used: int | None
    price_band: tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class _Margins:
    required: int
    available: int
    used: int
    modelled: bool


_T = TypeVar("_T")


# -- the manager ---------------------------------------------------------------------------------------------------

class RiskManager:
    """Pre-trade checks, loss limits, risk levels and trading state; see the module docstring.

    ``now_ns`` serves only the seed's library API when no ``ts_ns`` is passed; the paise API always takes the time
    as an argument. ``calendar`` adds a trading-day check to the trading window; ``instruments`` makes "listed in
    the instrument master" part of "tradable".
    """

    def __init__(self, config: RiskConfig, *, calendar: MarketCalendar | None = None,
                 instruments: InstrumentMaster | None = None, now_ns: Callable[[], int] | None = None) -> None:
        self.config = config
        self._calendar = calendar
        self._instruments = instruments
        self._now_ns = now_ns if now_ns is not None else LiveClock().now_ns
        self.capital = to_paise(config.initial_capital)
        self.risk_per_trade_limit = round(self.capital * config.max_risk_per_trade_pct)
        self.max_order_value = to_paise(config.max_order_value)
        self.min_margin_buffer = to_paise(config.min_margin_buffer)
        self.book = PositionBook()
        self._windows = (
            self._window(DAILY, "max_daily_loss_pct", config.max_daily_loss_pct, _day_key,
                         "the next IST day or reset_daily"),
            self._window(WEEKLY, "max_weekly_loss_pct", config.max_weekly_loss_pct, _iso_week_key,
                         "the next ISO week (Monday IST)"),
            self._window(MONTHLY, "max_monthly_loss_pct", config.max_monthly_loss_pct, _month_key,
                         "the next calendar month (IST)"),
        )
        self._peak = self.capital
        self._day: date | None = None
        self._next_day_ns = 0  # start of the IST day after ``_day``: earlier events need no roll-over check
        self._day_started_ns = 0
        self._last_reset_ns = 0
        self._halted = False
        self._halt_reason = ""
        self._breaches: dict[str, _Breach] = {}
        self._level = RiskLevel.LOW
        self._level_reason = "no limit used"
        self._published_state = TradingState.ACTIVE
        self._published_breaches: frozenset[str] = frozenset()
        self._events: list[RiskEvent] = []
        self._flatten_pending = False
        self._pending: dict[str, _Pending] = {}
        self._order_rate = RateLimiter(config.max_orders_per_second)
        self._local_tokens: dict[str, int] = {}
        self._library_intents = 0
        self._broker_margin: tuple[int, int] | None = None  # (used, available) last passed by the actor

    def _window(self, name: str, limit_field: str, fraction: float, key_of: Callable[[date], tuple[int, ...]],
                clears: str) -> _LossWindow:
        # A limit of at least one paisa, so that a tiny capital cannot divide by zero.
        limit = max(1, round(self.capital * fraction))
        return _LossWindow(name, limit_field, fraction, limit, key_of, clears, base=self.capital)

    # -- the seed's library API (rupees) -------------------------------------------------------------------------
    def check_can_place_order(self, contract: OptionContract, quantity: int, side: Side | str, price: float, *,
                              stop_loss_price: float | None = None, ts_ns: int | None = None) -> tuple[bool, str]:
        """(approved, reason) for an order of ``quantity`` units at ``price`` rupees. Nothing is recorded."""
        ts = self._ts(ts_ns)
        self._library_intents += 1
        paise = to_paise(price)
        # The purpose is required by OrderIntent but never read: the core decides "exit" from the book alone.
        intent = OrderIntent(ts_ns=ts, intent_id=f"LIB{self._library_intents}", strategy_id="library",
                             contract=contract, side=as_side(side), quantity=quantity, order_type=OrderType.LIMIT,
                             purpose=IntentPurpose.ENTRY, expected_price=paise, limit_price=paise)
        stop = None if stop_loss_price is None else to_paise(stop_loss_price)
        decision = self.check(intent, ts, stop_loss_price=stop)
        return decision.approved, decision.reason

    def record_trade(self, contract: OptionContract, quantity: int, side: Side | str, price: float, *,
                     charges: float = 0.0, ts_ns: int | None = None) -> None:
        """Book an executed trade: ``quantity`` units at ``price`` rupees; it also counts as one order sent."""
        ts = self._ts(ts_ns)
        self.note_order_sent(ts)
        self.on_fill(contract, as_side(side), quantity, to_paise(price), to_paise(charges), ts)

    def update_market_price(self, contract: OptionContract, price: float, *, ts_ns: int | None = None) -> bool:
        """Mark an open position at ``price`` rupees; True if its unrealized P&L changed."""
        return self.mark(self._keyed(contract).instrument_token, to_paise(price), self._ts(ts_ns))

    def get_risk_metrics(self, *, ts_ns: int | None = None) -> RiskMetrics:
        return self.metrics(self._ts(ts_ns))

    def reset_daily_metrics(self, *, ts_ns: int | None = None) -> None:
        self.reset_daily(self._ts(ts_ns))

    def _ts(self, ts_ns: int | None) -> int:
        return self._now_ns() if ts_ns is None else ts_ns

    # -- the paise API (the risk gate actor) ---------------------------------------------------------------------
    @property
    def state(self) -> TradingState:
        if self._halted:
            return TradingState.HALTED
        return TradingState.REDUCING_ONLY if self._breaches else TradingState.ACTIVE

    @property
    def level(self) -> RiskLevel:
        return self._level

    @property
    def equity(self) -> int:
        book = self.book
        return self.capital + book.realized - book.charges + book.unrealized

    def check(self, intent: OrderIntent, ts_ns: int, *, margin_required: int | None = None,
              margin_available: int | None = None, margin_used: int | None = None,
              price_band: tuple[int, int] | None = None, stop_loss_price: int | None = None,
              flatten: bool = False) -> RiskDecision:
        """Decide one intent. Nothing is recorded: call ``note_approved`` when the approved intent is sent.

        ``margin_*`` are the broker's figures in paise (each one not given is modelled); ``price_band`` is the
        day's (low, high) in paise; ``stop_loss_price`` (paise) bounds the premium at risk. ``flatten=True`` lets
        an exit through even when HALTED (the operator's flatten command) — only an intent that really reduces a
        filled position, so the flag cannot open anything.
        """
        self._advance(ts_ns)
        if margin_available is not None:
            self._broker_margin = (margin_used or 0, margin_available)
        contract = self._keyed(intent.contract)
        is_exit = self._reduces_filled_position(contract.instrument_token, intent.side, intent.quantity)

        state = self.state
        if state is TradingState.HALTED and not (flatten and is_exit):
            return _refuse("state", f"trading is HALTED ({self._halt_reason}): no orders until resume (a flatten "
                           "command can still close positions)", is_exit)
        if not is_exit and state is TradingState.REDUCING_ONLY:
            return _refuse("state", f"trading state is REDUCING_ONLY ({self._breach_summary()}): only exits that "
                           "reduce a filled position are allowed", is_exit)
        if not is_exit and self._level is RiskLevel.CRITICAL:
            return _refuse("level", f"risk level is CRITICAL — {self._level_reason}: new entries are refused until "
                           f"the limit use falls below critical_at={self.config.critical_at:g}", is_exit)
        if not is_valid_tag(intent.intent_id):
            return _refuse("tag", f"intent id {intent.intent_id!r} cannot serve as a broker tag "
                           "(1-20 letters and digits)", is_exit)
        quantity_problem = _whole_lots_problem(contract, intent.quantity)
        if quantity_problem:
            return _refuse("quantity", quantity_problem, is_exit)
        if is_exit:
            # Exits are never refused for limits: refusing one would only keep the risk on.
            return RiskDecision(True, f"approved: exit of {intent.quantity} units reduces the filled position",
                                True)

        order = _Order(contract=contract, side=intent.side, quantity=intent.quantity,
                       price=intent.limit_price or intent.expected_price, local=_ist_wall_time(ts_ns), ts_ns=ts_ns,
                       stop_loss_price=stop_loss_price, margin_required=margin_required,
                       margin_available=margin_available, margin_used=margin_used, price_band=price_band)
        for check_id, entry_check in _ENTRY_CHECKS:
            reason = entry_check(self, order)
            if reason:
                return _refuse(check_id, reason, is_exit)
        return RiskDecision(True, "approved", False)

    def note_approved(self, intent: OrderIntent) -> None:
        """An approved intent is on its way: until ``on_order_done`` it holds a position slot (and exposure)."""
        contract = self._keyed(intent.contract)
        token = contract.instrument_token
        self._pending[intent.intent_id] = _Pending(
            token=token, underlying=contract.underlying, side=intent.side, remaining=intent.quantity,
            price=intent.limit_price or intent.expected_price,
            reduces=self._reduces_filled_position(token, intent.side, intent.quantity),
        )

    def on_order_done(self, intent_id: str) -> None:
        """The intent's order reached a terminal state (or was never sent)."""
        self._pending.pop(intent_id, None)

    def note_order_sent(self, ts_ns: int) -> None:
        """Count one order request (place, modify or cancel) towards the per-second rate limit."""
        self._order_rate.record(ts_ns)

    def on_fill(self, contract: OptionContract, side: Side, quantity: int,  # noqa: PLR0917 (the fill's fields, in order)
                price_paise: int, charges_paise: int, ts_ns: int, *, intent_id: str = "") -> None:
        """Book one execution; with ``intent_id`` the pending intent shrinks by the filled quantity."""
        self._advance(ts_ns)
        self.book.apply(self._keyed(contract), side, quantity, price_paise, charges_paise)
        pending = self._pending.get(intent_id)
        if pending is not None:
            pending.remaining -= quantity
            if pending.remaining <= 0:
                del self._pending[intent_id]
        self._sync(ts_ns)

    def mark(self, instrument_token: int, price_paise: int, ts_ns: int) -> bool:
        """A new price for an open position; True if its unrealized P&L changed."""
        self._advance(ts_ns)
        changed = self.book.mark(instrument_token, price_paise)
        if changed:
            self._sync(ts_ns)
        return changed

    def halt(self, reason: str, ts_ns: int) -> None:
        """The kill switch: HALTED refuses every order until ``resume`` (except flatten exits)."""
        self._advance(ts_ns)
        self._halted = True
        self._halt_reason = reason or "halted"
        self._sync(ts_ns, f"halted: {self._halt_reason}", "halt")

    def resume(self, ts_ns: int) -> None:
        """Leave HALTED: back to ACTIVE, or to REDUCING_ONLY while a loss limit is still breached."""
        self._advance(ts_ns)
        if not self._halted:
            return
        self._halted = False
        self._halt_reason = ""
        detail = f"; still breached: {self._breach_summary()}" if self._breaches else ""
        self._sync(ts_ns, f"resumed by the operator{detail}", "resume")

    def reset_daily(self, ts_ns: int) -> None:
        """Re-base the day window at the current equity (the loss so far stops counting) and clear a daily breach."""
        self._advance(ts_ns)
        self._windows[0].base = self.equity
        self._breaches.pop(DAILY, None)
        self._last_reset_ns = ts_ns
        self._sync(ts_ns, "daily metrics reset: the daily loss limit starts afresh", "reset_daily")

    def reset_drawdown(self, ts_ns: int) -> None:
        """Re-base the peak at the current equity and clear a drawdown breach (it has no window to roll over)."""
        self._advance(ts_ns)
        self._peak = self.equity
        self._breaches.pop(DRAWDOWN, None)
        self._sync(ts_ns, "drawdown reset: the peak equity is re-based at the current equity", "reset_drawdown")

    def drain_events(self) -> list[RiskEvent]:
        """The state and level changes since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def flatten_requested(self) -> bool:
        """True once after a breach when ``flatten_on_breach`` is set: the caller then exits every open position."""
        requested, self._flatten_pending = self._flatten_pending, False
        return requested

    def open_positions(self) -> list[BookPosition]:
        return self.book.open_positions()

    def metrics(self, ts_ns: int) -> RiskMetrics:
        self._advance(ts_ns)
        equity = self.equity
        shares = self._limit_shares(equity)
        if self._broker_margin is not None:
            used, available = self._broker_margin
            source = "broker"
        else:
            used, available = modelled_account_margin(self.book, self.capital)
            source = "model"
        capacity = used + available
        exposure = sum(abs(p.quantity) * p.last_price for p in self.book.open_positions())
        exposure += sum(p.remaining * p.price for p in self._pending.values() if not p.reduces)
        drawdown = self._peak - equity
        daily, weekly, monthly = (equity - window.base for window in self._windows)
        return RiskMetrics(
            ts_ns=ts_ns, equity=equity, daily_pnl=daily, weekly_pnl=weekly, monthly_pnl=monthly,
            drawdown=drawdown, drawdown_pct=drawdown / self._peak if self._peak > 0 else 0.0,
            margin_used=used, margin_available=available,
            margin_utilisation=min(max(used / capacity, 0.0), 1.0) if capacity > 0 else (1.0 if used else 0.0),
            margin_source=source, exposure=exposure, open_positions=len(self.book.open_positions()),
            risk_level=self._level, trading_state=self.state, limits_used=shares,
            breached_limits=tuple(self._breaches), orders_last_second=self._orders_in_second(ts_ns),
        )

    # -- persistence ---------------------------------------------------------------------------------------------
    def to_state(self) -> dict[str, object]:
        """Everything a restart needs, as JSON-able data (paise, ns, ISO dates). Pending intents are not kept:
        the daemon reconciles open orders with the broker on start."""
        return {
            "version": _STATE_VERSION,
            "initial_capital": self.capital,
            "day": self._day.isoformat() if self._day is not None else None,
            "day_started_ns": self._day_started_ns,
            "last_reset_ns": self._last_reset_ns,
            "windows": {w.name: {"key": list(w.key), "base": w.base} for w in self._windows},
            "peak_equity": self._peak,
            "state": self.state.value,  # derived from halted + breaches; written for people reading the file
            "level": self._level.value,
            "level_reason": self._level_reason,
            "halted": self._halted,
            "halt_reason": self._halt_reason,
            "breaches": [{"window": name, "limit": b.limit, "ts_ns": b.ts_ns, "reason": b.reason}
                         for name, b in self._breaches.items()],
            "flatten_pending": self._flatten_pending,
            "realized": self.book.realized,
            "charges": self.book.charges,
            "positions": [_position_state(p) for p in self.book.open_positions()],
        }

    @classmethod
    def from_state(cls, config: RiskConfig, state: Mapping[str, object], *,
                   calendar: MarketCalendar | None = None, instruments: InstrumentMaster | None = None,
                   now_ns: Callable[[], int] | None = None) -> RiskManager:
        """Rebuild a manager from ``to_state`` output. Raises ValueError on a malformed or foreign state.

        If ``initial_capital`` changed since the state was written, the equity baselines move by the difference,
        so the P&L in each window is kept rather than turned into a spurious gain or loss.
        """
        version = _field(state, "version", int)
        if version != _STATE_VERSION:
            raise ValueError(f"risk state version {version} is not supported (expected {_STATE_VERSION})")
        manager = cls(config, calendar=calendar, instruments=instruments, now_ns=now_ns)
        shift = manager.capital - _field(state, "initial_capital", int)
        book = manager.book
        book.realized = _field(state, "realized", int)
        book.charges = _field(state, "charges", int)
        for raw in _field(state, "positions", list):
            position = _position_from_state(_mapping(raw, "positions[]"))
            book.positions[position.contract.instrument_token] = position
            if position.contract.instrument_token < 0:
                manager._local_tokens[_symbol_key(position.contract)] = position.contract.instrument_token
        day = state.get("day")
        if day is not None:
            if not isinstance(day, str):
                raise ValueError(f"risk state: 'day' must be an ISO date or null, got {day!r}")
            manager._day = date.fromisoformat(day)
            manager._next_day_ns = _ist_day_start_ns(manager._day + _ONE_DAY)
        manager._day_started_ns = _field(state, "day_started_ns", int)
        manager._last_reset_ns = _field(state, "last_reset_ns", int)
        windows = _field(state, "windows", dict)
        for window in manager._windows:
            saved = _mapping(windows.get(window.name), f"windows.{window.name}")
            window.key = tuple(_int(part, f"windows.{window.name}.key") for part in _field(saved, "key", list))
            window.base = _field(saved, "base", int) + shift
        manager._peak = _field(state, "peak_equity", int) + shift
        manager._halted = _field(state, "halted", bool)
        manager._halt_reason = _field(state, "halt_reason", str)
        for raw in _field(state, "breaches", list):
            breach = _mapping(raw, "breaches[]")
            manager._breaches[_field(breach, "window", str)] = _Breach(
                limit=_field(breach, "limit", str), ts_ns=_field(breach, "ts_ns", int),
                reason=_field(breach, "reason", str))
        manager._level = RiskLevel(_field(state, "level", str))
        manager._level_reason = _field(state, "level_reason", str)
        manager._flatten_pending = _field(state, "flatten_pending", bool)
        # A restart is not a change: no event.
        manager._published_state, manager._published_breaches = manager.state, frozenset(manager._breaches)
        return manager

    # -- internals -------------------------------------------------------------------------------------------------
    def _keyed(self, contract: OptionContract) -> OptionContract:
        """The contract with a non-zero instrument token, so that the book never merges two contracts.

        Contracts parsed from a symbol carry token 0; they get the instrument master's token if it lists them,
        else a negative local token (never a real Kite token) that stays the same for the same symbol.
        """
        if contract.instrument_token:
            return contract
        key = _symbol_key(contract)
        token = self._local_tokens.get(key)
        if token is None:
            listed = self._instruments.contract(key) if self._instruments is not None else None
            if listed is not None and listed.instrument_token:
                token = listed.instrument_token
            else:
                token = min([0, *self._local_tokens.values()]) - 1
            self._local_tokens[key] = token
        return dataclasses.replace(contract, instrument_token=token)

    def _reduces_filled_position(self, token: int, side: Side, quantity: int) -> bool:
        """True if the order only shrinks the filled position, even when every exit already in flight fills too.

        The intent's own purpose label is never trusted: a strategy bug must not turn an entry into an "exit".
        """
        held = self.book.quantity(token)
        if quantity <= 0 or held == 0 or side.sign * held > 0:
            return False
        exiting = sum(p.remaining for p in self._pending.values() if p.token == token and p.side is side)
        return quantity <= abs(held) - exiting

    def _advance(self, ts_ns: int) -> None:
        """Open the loss windows at the first event, and roll them over at the first event of a new IST day."""
        if ts_ns < self._next_day_ns:
            return  # the hot path: same IST day (an event from an earlier day never rolls anything back)
        day = ist_date(ts_ns)
        self._next_day_ns = _ist_day_start_ns(day + _ONE_DAY)
        if self._day is not None and day <= self._day:
            return
        first_event = self._day is None
        self._day = day
        self._day_started_ns = ts_ns
        equity = self.equity
        cleared = []
        for window in self._windows:
            key = window.key_of(day)
            if key > window.key:
                window.key, window.base = key, equity
                if self._breaches.pop(window.name, None) is not None:
                    cleared.append(window.name)
        if not first_event:
            detail = f": the {' and '.join(cleared)} loss limit breach is cleared" if cleared else ""
            self._sync(ts_ns, f"new IST day {day.isoformat()}{detail}", "roll_over")

    def _limit_shares(self, equity: int) -> dict[str, float]:
        shares = {w.name: max(0, w.base - equity) / w.limit for w in self._windows}
        drawdown_fraction = (self._peak - equity) / self._peak if self._peak > 0 else 1.0
        shares[DRAWDOWN] = max(0.0, drawdown_fraction) / self.config.max_drawdown_pct
        return shares

    def _usage(self, name: str, equity: int, share: float) -> str:
        """How much of one limit is used, for people."""
        if name == DRAWDOWN:
            drawdown = self._peak - equity
            return (f"drawdown {format_inr(drawdown)} from the peak {format_inr(self._peak)} is {share:.0%} of "
                    f"max_drawdown_pct={self.config.max_drawdown_pct:g}")
        window = next(w for w in self._windows if w.name == name)
        loss = max(0, window.base - equity)
        return (f"{name} loss {format_inr(loss)} is {share:.0%} of the {format_inr(window.limit)} limit "
                f"({window.limit_field}={window.fraction:g} of capital {format_inr(self.capital)})")

    def _clears(self, name: str) -> str:
        if name == DRAWDOWN:
            return "reset_drawdown"
        return next(w.clears for w in self._windows if w.name == name)

    def _limit_field(self, name: str) -> str:
        if name == DRAWDOWN:
            return "max_drawdown_pct"
        return next(w.limit_field for w in self._windows if w.name == name)

    def _sync(self, ts_ns: int, reason: str = "", limit: str = "") -> None:
        """Re-evaluate limits after anything that moved equity or state; queue a RiskEvent on a change."""
        equity = self.equity
        self._peak = max(self._peak, equity)
        shares = self._limit_shares(equity)
        for name in LIMIT_NAMES:
            if shares[name] >= 1 and name not in self._breaches:
                breach_reason = (f"{self._usage(name, equity, shares[name])}: limit reached, new entries refused "
                                 f"until {self._clears(name)}")
                self._breaches[name] = _Breach(self._limit_field(name), ts_ns, breach_reason)
                reason, limit = breach_reason, self._limit_field(name)
                if self.config.flatten_on_breach:
                    self._flatten_pending = True
        worst = max(LIMIT_NAMES, key=shares.__getitem__)
        self._level_reason = self._usage(worst, equity, shares[worst])
        level = self._level_for(shares[worst])
        state = self.state
        breached = frozenset(self._breaches)
        # A limit hit (or cleared) is news even when state and level stay, e.g. a weekly breach on top of a daily one.
        if level is self._level and state is self._published_state and breached == self._published_breaches:
            return
        if not reason:
            reason, limit = self._level_reason, self._limit_field(worst)
        self._level, self._published_state, self._published_breaches = level, state, breached
        self._events.append(RiskEvent(ts_ns=ts_ns, state=state, level=level, reason=reason, limit=limit))

    def _level_for(self, share: float) -> RiskLevel:
        """Rises at once; falls only when the share is ``LEVEL_HYSTERESIS`` below the threshold, so P&L wobbling
        around a threshold does not flood the bus, the log and the journal with level changes."""
        rising = self._raw_level(share)
        if _LEVEL_RANK[rising] >= _LEVEL_RANK[self._level]:
            return rising
        falling = self._raw_level(share + LEVEL_HYSTERESIS)
        return falling if _LEVEL_RANK[falling] < _LEVEL_RANK[self._level] else self._level

    def _raw_level(self, share: float) -> RiskLevel:
        config = self.config
        if share >= config.critical_at:
            return RiskLevel.CRITICAL
        if share >= config.high_at:
            return RiskLevel.HIGH
        if share >= config.medium_at:
            return RiskLevel.MEDIUM
        return RiskLevel.LOW

    def _breach_summary(self) -> str:
        return "; ".join(b.reason for b in self._breaches.values())

    def _orders_in_second(self, ts_ns: int) -> int:
        return self._order_rate.used(ts_ns)

    def _occupied_tokens(self) -> dict[int, str]:
        """Instrument token → underlying of every open position and every pending approved intent."""
        occupied = {p.contract.instrument_token: p.contract.underlying for p in self.book.open_positions()}
        occupied.update((p.token, p.underlying) for p in self._pending.values())
        return occupied

    def _margins(self, order: _Order) -> _Margins:
        modelled = order.margin_required is None or order.margin_available is None
        used, available = (modelled_account_margin(self.book, self.capital) if modelled else (0, 0))
        required = order.margin_required
        if required is None:
            required = modelled_order_margin(self.book, order.contract, order.side, order.quantity, order.price)
        if order.margin_available is not None:
            available = order.margin_available
            used = order.margin_used if order.margin_used is not None else 0
        return _Margins(required=required, available=available, used=used, modelled=modelled)

    # -- the entry checks, in order (each returns "" to pass, else the reason) --------------------------------
    def _check_tradable(self, order: _Order) -> str:
        contract, today = order.contract, order.local.date()
        if contract.expiry < today:
            return (f"{contract.tradingsymbol} expired on {contract.expiry.isoformat()} (today is "
                    f"{today.isoformat()} IST): it is not tradable")
        if self._instruments is None:
            return ""
        listed = self._instruments.contract(_symbol_key(contract))
        if listed is None:
            return (f"{contract.exchange}:{contract.tradingsymbol} is not in the instrument master (today's "
                    "instrument dump): it is not tradable")
        if listed.lot_size != contract.lot_size:
            return (f"{contract.tradingsymbol} has lot size {contract.lot_size} but the instrument master says "
                    f"{listed.lot_size}: build the contract from the instrument dump")
        return ""

    def _check_window(self, order: _Order) -> str:
        config, local = self.config, order.local
        if self._calendar is not None:
            try:
                trading_day = self._calendar.is_trading_day(local.date())
            except ValueError as exc:
                return f"cannot tell whether {local.date().isoformat()} is a trading day: {exc}"
            if not trading_day:
                return f"{local:%A %Y-%m-%d} is not an NSE/BSE trading day: no new entries"
        now = local.time()
        if now < config.no_entry_before or now > config.no_entry_after:
            return (f"new entries are allowed only {config.no_entry_before:%H:%M}-{config.no_entry_after:%H:%M} "
                    f"IST (no_entry_before/no_entry_after); it is {now:%H:%M:%S} IST")
        return ""

    def _check_lots(self, order: _Order) -> str:
        lot, most = order.contract.lot_size, self.config.max_lots_per_trade
        lots = order.quantity // lot
        if lots > most:
            return (f"{lots} lots exceeds max_lots_per_trade={most}: order at most {most} lot(s) "
                    f"({most * lot} units) of {order.contract.tradingsymbol}")
        return ""

    def _check_freeze(self, order: _Order) -> str:
        contract = order.contract
        freeze = freeze_quantity(contract.underlying)
        if order.quantity > freeze:
            lots = freeze // contract.lot_size
            return (f"quantity {order.quantity} exceeds the {contract.underlying} freeze quantity of {freeze} units "
                    f"per order: at most {lots} lots ({lots * contract.lot_size} units) per order")
        return ""

    def _check_symbol_positions(self, order: _Order) -> str:
        occupied = self._occupied_tokens()
        underlying, most = order.contract.underlying, self.config.max_positions_per_symbol
        if order.contract.instrument_token in occupied:
            return ""  # adding to a position (or to a pending order) opens no new one
        count = sum(1 for name in occupied.values() if name == underlying)
        if count >= most:
            return (f"{count} {underlying} positions are open or pending, max_positions_per_symbol={most}: "
                    "close one before opening another")
        return ""

    def _check_total_positions(self, order: _Order) -> str:
        occupied = self._occupied_tokens()
        most = self.config.max_total_positions
        if order.contract.instrument_token not in occupied and len(occupied) >= most:
            return (f"{len(occupied)} positions are open or pending, max_total_positions={most}: "
                    "close one before opening another")
        return ""

    def _check_price(self, order: _Order) -> str:
        if order.price <= 0:
            return (f"no price to check the order against (got {format_inr(order.price)}): give a limit price or "
                    "the expected price")
        return ""

    def _check_order_value(self, order: _Order) -> str:
        value = order.quantity * order.price
        if value > self.max_order_value:
            lot = order.contract.lot_size
            lots = self.max_order_value // (lot * order.price)
            fix = f"at most {lots} lot(s) at this price" if lots else "not even one lot fits at this price"
            return (f"order value {format_inr(value)} ({order.quantity} × {format_inr(order.price)}) exceeds "
                    f"max_order_value {format_inr(self.max_order_value)}: {fix}")
        return ""

    def _check_risk_per_trade(self, order: _Order) -> str:
        """Premium at risk to the stop: a long loses down to the stop, a short up to it; no stop → the default."""
        stop, price, quantity = order.stop_loss_price, order.price, order.quantity
        if stop is None:
            fraction = self.config.default_stop_loss_pct
            per_unit = price * fraction
            how = f"default stop {_pct(fraction)} of the premium, as no stop-loss was given"
        else:
            wrong_side = stop >= price if order.side is Side.BUY else stop <= price
            if stop <= 0 or wrong_side:
                where = "below" if order.side is Side.BUY else "above"
                return (f"stop-loss {format_inr(stop)} must be {where} the {order.side.value} price "
                        f"{format_inr(price)} (and positive)")
            per_unit = abs(price - stop)
            how = f"to the stop-loss {format_inr(stop)}"
        at_risk = round(quantity * per_unit)
        limit = self.risk_per_trade_limit
        if at_risk <= limit:
            return ""
        lot = order.contract.lot_size
        lots = int(limit // (per_unit * lot)) if per_unit > 0 else 0
        fix = (f"at most {lots} lot(s) with this stop" if lots
               else "not even one lot fits: give a closer stop-loss or choose a cheaper strike")
        return (f"premium at risk {format_inr(at_risk)} ({how}) exceeds max_risk_per_trade_pct="
                f"{self.config.max_risk_per_trade_pct:g} of capital = {format_inr(limit)}: {fix}")

    def _check_margin_buffer(self, order: _Order) -> str:
        margins = self._margins(order)
        left = margins.available - margins.required
        if left < self.min_margin_buffer:
            source = " (modelled: premium for buys, an estimate for sells)" if margins.modelled else ""
            return (f"margin left after the order {format_inr(left)} would be below min_margin_buffer "
                    f"{format_inr(self.min_margin_buffer)} (available {format_inr(margins.available)}, "
                    f"this order needs {format_inr(margins.required)}){source}")
        return ""

    def _check_margin_utilisation(self, order: _Order) -> str:
        margins = self._margins(order)
        capacity = margins.used + margins.available
        after = (margins.used + margins.required) / capacity if capacity > 0 else 1.0
        most = self.config.max_margin_utilisation_pct
        if after > most:
            return (f"margin utilisation after the order would be {after:.1%}, above max_margin_utilisation_pct="
                    f"{most:g} (used {format_inr(margins.used)} + this order {format_inr(margins.required)} of "
                    f"{format_inr(capacity)})")
        return ""

    def _check_order_rate(self, order: _Order) -> str:
        sent, most = self._orders_in_second(order.ts_ns), self.config.max_orders_per_second
        if sent >= most:
            return (f"{sent} orders sent in the last second, max_orders_per_second={most} (Kite allows 10/s): "
                    "retry in the next second")
        return ""

    def _check_price_band(self, order: _Order) -> str:
        if order.price_band is None:
            return ""
        low, high = order.price_band
        if not low <= order.price <= high:
            return (f"price {format_inr(order.price)} is outside the day's price band "
                    f"{format_inr(low)}-{format_inr(high)}: the exchange would reject it")
        return ""


_ENTRY_CHECKS: tuple[tuple[str, Callable[[RiskManager, _Order], str]], ...] = (
    ("tradable", RiskManager._check_tradable),
    ("window", RiskManager._check_window),
    ("lots", RiskManager._check_lots),
    ("freeze", RiskManager._check_freeze),
    ("symbol_positions", RiskManager._check_symbol_positions),
    ("total_positions", RiskManager._check_total_positions),
    ("price", RiskManager._check_price),
    ("order_value", RiskManager._check_order_value),
    ("risk_per_trade", RiskManager._check_risk_per_trade),
    ("margin_buffer", RiskManager._check_margin_buffer),
    ("margin_utilisation", RiskManager._check_margin_utilisation),
    ("order_rate", RiskManager._check_order_rate),
    ("price_band", RiskManager._check_price_band),
)


def _refuse(check: str, reason: str, is_exit: bool) -> RiskDecision:
    return RiskDecision(False, reason, is_exit, check)


def _whole_lots_problem(contract: OptionContract, quantity: int) -> str:
    lot = contract.lot_size
    if quantity <= 0:
        return f"quantity {quantity} must be a positive whole number of lots (lot size {lot})"
    if quantity % lot:
        below = quantity // lot * lot
        options = f"{below} or {below + lot}" if below else f"{lot}"
        return (f"quantity {quantity} is not a whole number of lots (lot size {lot} for "
                f"{contract.tradingsymbol}): use {options}")
    return ""


def _symbol_key(contract: OptionContract) -> str:
    return f"{contract.exchange}:{contract.tradingsymbol}"


# -- state (de)serialisation -----------------------------------------------------------------------------------------

def _position_state(position: BookPosition) -> dict[str, object]:
    contract = position.contract
    return {
        "contract": {
            "exchange": contract.exchange, "tradingsymbol": contract.tradingsymbol,
            "underlying": contract.underlying, "expiry": contract.expiry.isoformat(), "strike": contract.strike,
            "option_type": contract.option_type.value, "lot_size": contract.lot_size,
            "tick_size": contract.tick_size, "instrument_token": contract.instrument_token,
        },
        "quantity": position.quantity, "cost": position.cost, "realized": position.realized,
        "last_price": position.last_price, "trade_realized": position.trade_realized,
        "trade_charges": position.trade_charges,
    }


def _position_from_state(data: Mapping[str, object]) -> BookPosition:
    raw = _mapping(data.get("contract"), "positions[].contract")
    contract = OptionContract(
        exchange=_field(raw, "exchange", str), tradingsymbol=_field(raw, "tradingsymbol", str),
        underlying=_field(raw, "underlying", str), expiry=date.fromisoformat(_field(raw, "expiry", str)),
        strike=_field(raw, "strike", int), option_type=OptionType(_field(raw, "option_type", str)),
        lot_size=_field(raw, "lot_size", int), tick_size=_field(raw, "tick_size", int),
        instrument_token=_field(raw, "instrument_token", int),
    )
    return BookPosition(contract, quantity=_field(data, "quantity", int), cost=_field(data, "cost", int),
                        realized=_field(data, "realized", int), last_price=_field(data, "last_price", int),
                        trade_realized=_field(data, "trade_realized", int),
                        trade_charges=_field(data, "trade_charges", int))


def _field(data: Mapping[str, object], key: str, kind: type[_T]) -> _T:
    value = data.get(key)
    # bool is an int subclass: a flag must not pass for a number, nor a number for a flag.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"risk state: {key!r} must be {kind.__name__}, got {value!r}")
    return value


def _int(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"risk state: {where} must be int, got {value!r}")
    return value


def _mapping(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise ValueError(f"risk state: {where} must be an object, got {value!r}")
    return value
