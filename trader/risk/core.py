"""The risk core: pure and synchronous. No asyncio, no I/O, no wall clock.

Time always comes in as ``ts_ns`` (integer ns UTC) and money is integer paise. The risk gate actor wraps this core
and does the I/O (bus, logs, broker margin calls, the kill-switch file, persistence); the seed's library API
(``check_can_place_order`` & co., ``seed_api.py``) takes rupee floats and converts them through ``trader.money``.

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
buys (paid up front) and a flat share of the strike notional for shorts (``margin.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import date, timedelta

from trader.book import BookPosition, PositionBook
from trader.clock import LiveClock
from trader.events import OrderIntent, RiskEvent, RiskLevel, Side, TradingState
from trader.ids import is_valid_tag
from trader.market.calendar import MarketCalendar, ist_date
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import OptionContract
from trader.money import format_inr, to_paise
from trader.ratelimit import RateLimiter
from trader.risk.checks import (
    ENTRY_CHECKS,
    EntryChecks,
    EntryOrder,
    Pending,
    naked_short_problem,
    symbol_key,
    whole_lots_problem,
)
from trader.risk.config import RiskConfig
from trader.risk.margin import (
    modelled_account_margin,
)
from trader.risk.persistence import check_state_version, manager_state, restore_manager
from trader.risk.results import RiskDecision, RiskMetrics
from trader.risk.seed_api import SeedApi
from trader.risk.windows import (
    Breach,
    LossWindow,
    day_key,
    iso_week_key,
    ist_day_start_ns,
    ist_wall_time,
    month_key,
)

LEVEL_HYSTERESIS = 0.05  # share of a limit
_LEVEL_RANK = {RiskLevel.LOW: 0, RiskLevel.MEDIUM: 1, RiskLevel.HIGH: 2, RiskLevel.CRITICAL: 3}

DAILY, WEEKLY, MONTHLY, DRAWDOWN = "daily", "weekly", "monthly", "drawdown"
LIMIT_NAMES = (DAILY, WEEKLY, MONTHLY, DRAWDOWN)

_ONE_DAY = timedelta(days=1)


# -- the manager ---------------------------------------------------------------------------------------------------

class RiskManager(SeedApi, EntryChecks):
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
            self._window(DAILY, "max_daily_loss_pct", config.max_daily_loss_pct, day_key,
                         "the next IST day or reset_daily"),
            self._window(WEEKLY, "max_weekly_loss_pct", config.max_weekly_loss_pct, iso_week_key,
                         "the next ISO week (Monday IST)"),
            self._window(MONTHLY, "max_monthly_loss_pct", config.max_monthly_loss_pct, month_key,
                         "the next calendar month (IST)"),
        )
        self._peak = self.capital
        self._day: date | None = None
        self._next_day_ns = 0  # start of the IST day after ``_day``: earlier events need no roll-over check
        self._day_started_ns = 0
        self._last_reset_ns = 0
        self._halted = False
        self._halt_reason = ""
        self._breaches: dict[str, Breach] = {}
        self._level = RiskLevel.LOW
        self._level_reason = "no limit used"
        self._published_state = TradingState.ACTIVE
        self._published_breaches: frozenset[str] = frozenset()
        self._events: list[RiskEvent] = []
        self._flatten_pending = False
        self._pending: dict[str, Pending] = {}
        self._order_rate = RateLimiter(config.max_orders_per_second)
        self._local_tokens: dict[str, int] = {}
        self._library_intents = 0
        self._broker_margin: tuple[int, int] | None = None  # (used, available) last passed by the actor

    def _window(self, name: str, limit_field: str, fraction: float, key_of: Callable[[date], tuple[int, ...]],
                clears: str) -> LossWindow:
        # A limit of at least one paisa, so that a tiny capital cannot divide by zero.
        limit = max(1, round(self.capital * fraction))
        return LossWindow(name, limit_field, fraction, limit, key_of, clears, base=self.capital)

    # -- the paise API (the risk gate actor) ---------------------------------------------------------------------
    @property
    def state(self) -> TradingState:
        if self._halted:
            return TradingState.HALTED
        return TradingState.REDUCING_ONLY if self._breaches else TradingState.ACTIVE

    @property
    def state_reason(self) -> str:
        """Why the state is what it is: the halt reason, the breached limits, or "" when ACTIVE."""
        if self._halted:
            return self._halt_reason
        return self._breach_summary()

    @property
    def level(self) -> RiskLevel:
        return self._level

    @property
    def equity(self) -> int:
        book = self.book
        return self.capital + book.realized - book.charges + book.unrealized

    @property
    def day_start(self) -> tuple[date, int] | None:
        """The IST day the loss windows are on and the equity that day started at (the daily window's base, paise);
        None before the first event. Saved with the state, so a restart keeps it."""
        if self._day is None:
            return None
        return self._day, self._windows[0].base

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
        if not is_exit and intent.side is Side.SELL and not self.config.allow_short_options:
            selling = sum(p.remaining for p in self._pending.values()
                          if p.token == contract.instrument_token and p.side is Side.SELL)
            short = naked_short_problem(self.book.quantity(contract.instrument_token), selling, intent.quantity,
                                        contract.tradingsymbol)
            if short:
                return _refuse("short", short, is_exit)
        if not is_valid_tag(intent.intent_id):
            return _refuse("tag", f"intent id {intent.intent_id!r} cannot serve as a broker tag "
                           "(1-20 letters and digits)", is_exit)
        quantity_problem = whole_lots_problem(contract, intent.quantity)
        if quantity_problem:
            return _refuse("quantity", quantity_problem, is_exit)
        if is_exit:
            # Exits are never refused for limits: refusing one would only keep the risk on.
            return RiskDecision(True, f"approved: exit of {intent.quantity} units reduces the filled position",
                                True)

        order = EntryOrder(contract=contract, side=intent.side, quantity=intent.quantity,
                       price=intent.limit_price or intent.expected_price, local=ist_wall_time(ts_ns), ts_ns=ts_ns,
                       stop_loss_price=stop_loss_price, margin_required=margin_required,
                       margin_available=margin_available, margin_used=margin_used, price_band=price_band)
        for check_id, entry_check in ENTRY_CHECKS:
            reason = entry_check(self, order)
            if reason:
                return _refuse(check_id, reason, is_exit)
        return RiskDecision(True, "approved", False)

    def note_approved(self, intent: OrderIntent, filled: int = 0) -> None:
        """An approved intent is on its way: until ``on_order_done`` it holds a position slot (and exposure).
        ``filled`` units of it are booked already (an order adopted at a restart)."""
        contract = self._keyed(intent.contract)
        token = contract.instrument_token
        self._pending[intent.intent_id] = Pending(
            token=token, underlying=contract.underlying, side=intent.side, remaining=intent.quantity - filled,
            price=intent.limit_price or intent.expected_price,
            reduces=self._reduces_filled_position(token, intent.side, intent.quantity),
        )

    def reduces(self, intent: OrderIntent) -> bool:
        """True if ``intent`` only shrinks a filled position, counting the exits already in flight: what the gate
        treats as an exit, whatever the intent's own purpose label says."""
        contract = self._keyed(intent.contract)
        return self._reduces_filled_position(contract.instrument_token, intent.side, intent.quantity)

    def keyed(self, contract: OptionContract) -> OptionContract:
        """The contract as the book keys it (a non-zero instrument token)."""
        return self._keyed(contract)

    def has_pending(self, instrument_token: int) -> bool:
        """True while an approved order for this contract is not done."""
        return any(p.token == instrument_token for p in self._pending.values())

    def working_orders(self, underlying: str = "") -> dict[str, int]:
        """Intent id → instrument token of each approved order not yet done (of ``underlying`` only, when named)."""
        return {intent_id: p.token for intent_id, p in self._pending.items()
                if not underlying or p.underlying == underlying}

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

    # -- persistence (persistence.py) ------------------------------------------------------------------------------
    def to_state(self) -> dict[str, object]:
        """Everything a restart needs, as JSON-able data (paise, ns, ISO dates). Pending intents are not kept:
        the daemon reconciles open orders with the broker on start."""
        return manager_state(self)

    @classmethod
    def from_state(cls, config: RiskConfig, state: Mapping[str, object], *,
                   calendar: MarketCalendar | None = None, instruments: InstrumentMaster | None = None,
                   now_ns: Callable[[], int] | None = None) -> RiskManager:
        """Rebuild a manager from ``to_state`` output. Raises ValueError on a malformed or foreign state.

        If ``initial_capital`` changed since the state was written, the equity baselines move by the difference,
        so the P&L in each window is kept rather than turned into a spurious gain or loss.
        """
        check_state_version(state)
        manager = cls(config, calendar=calendar, instruments=instruments, now_ns=now_ns)
        restore_manager(manager, state)
        return manager

    # -- internals -------------------------------------------------------------------------------------------------
    def _keyed(self, contract: OptionContract) -> OptionContract:
        """The contract with a non-zero instrument token, so that the book never merges two contracts.

        Contracts parsed from a symbol carry token 0; they get the instrument master's token if it lists them,
        else a negative local token (never a real Kite token) that stays the same for the same symbol.
        """
        if contract.instrument_token:
            return contract
        key = symbol_key(contract)
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
        self._next_day_ns = ist_day_start_ns(day + _ONE_DAY)
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
                self._breaches[name] = Breach(self._limit_field(name), ts_ns, breach_reason)
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

def _refuse(check: str, reason: str, is_exit: bool) -> RiskDecision:
    return RiskDecision(False, reason, is_exit, check)


