"""``opening_range_breakout``: the index's opening range, broken and confirmed, traded with the ATM option.

The day's opening range is the high and low of the index over the first ``range_minutes`` after the session open
(``session_open``, 09:15 IST: the F&O session open of the shipped calendar's ``session_hours``; a strategy gets no
calendar, so the time is a parameter). The range is built from event time only: the IST day of each index tick. If
the first index tick of the day comes after the range window has ended (a daemon started late), the day has no
range and no trade; a restart mid-day keeps the range it had saved (``snapshot_state``), unless the daemon was down
when the range window ended (then the range is incomplete: no trade that day). A range wider than
``max_range_pct`` of its midpoint is refused for the day (an absurd range: a gap, bad data).

A break: ``confirm_ticks`` consecutive index ticks above the range high (bullish → buy the ATM CE of the nearest
expiry) or below the range low (bearish → the ATM PE), inside the entry window (``first_entry_time`` ≤ t <
``last_entry_time``) and while flat. Each direction is signalled at most once a day (traded or not).

confidence (0–100) = 100 × clamp(0.5 + excess / width, 0, 1): ``excess`` is how far beyond the broken side the
index is at the confirming tick, ``width`` the range's width (floored at one index tick), so a bare break scores
just over 50 and a break by half the range's width or more scores 100. Below ``confidence_cutoff`` the signal is
published with "not traded".

Stop and target on the option premium. The stop is the premium at which the index would be back at the range's
other side: ``risk = |delta| × distance`` (distance = the index's move from the confirming tick back to the other
side), ``stop = entry premium − risk``, floored at one tick of the option. ``delta`` comes from the option's quote:
the implied volatility of its mid price (Black-Scholes, zero rate, expiry at 15:30 IST), then its delta; if the
quote carries no usable volatility, the ATM approximation ``|delta| = 0.5`` is used. The risk per unit is fixed at
the signal; when the entry fills, stop = average fill − risk and target = average fill + ``target_r`` × risk.
Exits: the stop (bid at or below), the target (bid at or above), and everything by ``exit_time``. Long options
only, one position at a time.

State across restarts: ``snapshot_state`` / ``restore_state``, in the document ``orb_state.py`` describes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date, time
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trader.config import StrategySettings
from trader.events import (
    Direction,
    IntentPurpose,
    OrderIntent,
    OrderType,
    Side,
    Signal,
    Tick,
)
from trader.logging import get_logger
from trader.market.calendar import ist_date, ist_ns, ist_text
from trader.market.instruments import OptionContract, OptionType, UnderlyingSpec
from trader.market.pricing import OptionKind, PricingError, greeks, implied_volatility
from trader.money import format_inr, to_rupees
from trader.store.codec import contract_to_dict
from trader.strategies.base import RestoredPosition, StrategyContext
from trader.strategies.long_option import LongOptionPosition, SavedPosition
from trader.strategies.orb_state import STATE_VERSION, Phase, Saved, read_state

STRATEGY_NAME = "opening_range_breakout"
_NS = 1_000_000_000
_YEAR_NS = 365 * 86_400 * _NS
_EXPIRY_TIME = time(15, 30)
ATM_DELTA = 0.5  # the fallback when a quote gives no usable volatility
_MIN_DELTA = 0.05  # a delta below this (a quote gone wild) would put the stop absurdly close to the entry

log = get_logger("trader.strategy")


class OrbParams(BaseModel):
    """The parameters of ``[strategy.opening_range_breakout]``; the common ones come from ``[strategy]``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    range_minutes: int = Field(15, ge=1, le=180, description="minutes after the session open that make the range")
    confirm_ticks: int = Field(3, ge=1, le=1_000, description="consecutive index ticks beyond the range that "
                               "confirm a break")
    target_r: float = Field(2.0, gt=0, le=20, description="the target as a multiple of the risk to the stop")
    max_range_pct: float = Field(0.02, gt=0, le=0.2, description="a range wider than this fraction of its midpoint "
                                 "is not traded that day")
    session_open: time = Field(time(9, 15), description="the F&O session open (IST), where the range starts")

    @model_validator(mode="after")
    def _inside_the_day(self) -> OrbParams:
        if self.session_open.hour * 60 + self.session_open.minute + self.range_minutes >= 24 * 60:
            raise ValueError("session_open + range_minutes must end before midnight")
        return self


def _clamp01(x: float) -> float:
    return 0.0 if x <= 0 else 1.0 if x >= 1 else x


def option_delta(contract: OptionContract, quote: Tick, spot: int, ts_ns: int) -> float:
    """|delta| of ``contract`` from its quote (implied volatility of the mid), or ``ATM_DELTA`` if it gives none."""
    mid = (quote.bid + quote.ask) / 2 if quote.bid > 0 and quote.ask > 0 else quote.last_price
    years = (ist_ns(contract.expiry, _EXPIRY_TIME) - ts_ns) / _YEAR_NS
    if mid <= 0 or spot <= 0 or years <= 0:
        return ATM_DELTA
    kind = OptionKind.CALL if contract.option_type is OptionType.CE else OptionKind.PUT
    try:
        vol = implied_volatility(kind, mid / 100, spot / 100, contract.strike / 100, years, 0.0)
        delta = abs(greeks(kind, spot / 100, contract.strike / 100, years, 0.0, vol).delta)
    except (PricingError, ValueError, ArithmeticError):
        return ATM_DELTA
    if not math.isfinite(delta) or delta < _MIN_DELTA:
        return ATM_DELTA
    return min(delta, 1.0)


def premium_risk(delta: float, distance: int, premium: int, tick_size: int) -> int:
    """Premium paise from the entry to the stop: ``delta × distance``, whole ticks, leaving the stop at least one
    tick above zero (``stop = premium − risk >= tick_size``) and risking at least one tick."""
    risk = math.ceil(delta * distance / tick_size) * tick_size
    most = max(premium - tick_size, tick_size)
    return max(min(risk, most), tick_size)


class OpeningRangeBreakout(LongOptionPosition):
    name: ClassVar[str] = STRATEGY_NAME
    Params: ClassVar[type[OrbParams]] = OrbParams

    def __init__(self, strategy_id: str, underlying: UnderlyingSpec, common: StrategySettings,
                 params: OrbParams | None = None) -> None:
        self.strategy_id = strategy_id
        self.underlying = underlying
        self.common = common
        self.params = params or OrbParams()
        self._day: date | None = None
        self._day_end_ns = 0
        self._range_start_ns = self._range_end_ns = 0
        self._first_entry_ns = self._last_entry_ns = self._exit_ns = 0
        self._reset_day()
        self._init_position()
        self._risk_per_unit = 0  # premium per unit from the entry to the stop, fixed at the signal

    # -- day bookkeeping ----------------------------------------------------------------------------------
    def _reset_day(self) -> None:
        self._high = self._low = 0
        self._range_complete = False
        self._range_usable = False
        self._up_done = self._down_done = False
        self._beyond = 0  # consecutive ticks beyond the range: > 0 above the high, < 0 below the low
        # Restored with the range still being built: if the next index tick is past the window, the window's end
        # was missed while the daemon was down, and the range's true extremes are unknown.
        self._resumed_mid_range = False

    def _set_day(self, day: date) -> None:
        self._day = day
        self._range_start_ns = ist_ns(day, self.params.session_open)
        self._range_end_ns = self._range_start_ns + self.params.range_minutes * 60 * _NS
        self._first_entry_ns = ist_ns(day, self.common.first_entry_time)
        self._last_entry_ns = ist_ns(day, self.common.last_entry_time)
        self._exit_ns = ist_ns(day, self.common.exit_time)
        self._day_end_ns = ist_ns(day, time(0)) + 86_400 * _NS

    @property
    def opening_range(self) -> tuple[int, int] | None:
        """(low, high) in paise once the range is complete and usable, else None."""
        return (self._low, self._high) if self._range_complete and self._range_usable else None

    # -- events -------------------------------------------------------------------------------------------
    def on_tick(self, tick: Tick, ctx: StrategyContext) -> Sequence[Signal | OrderIntent]:
        if tick.ts_ns >= self._day_end_ns:
            self._set_day(ist_date(tick.ts_ns))
            self._reset_day()
        out: list[Signal | OrderIntent] = []
        index = ctx.instruments.index_for(self.underlying.name)  # the day's master wins over the fallback table
        if tick.instrument_token == (index.instrument_token if index is not None else self.underlying.spot_token):
            self._on_index(tick, ctx, out)
        if self._phase is Phase.OPEN and self._contract is not None:
            self._check_exits(tick, ctx, out)
        return out

    def _clear_position(self) -> None:
        super()._clear_position()
        self._risk_per_unit = 0

    @property
    def _market_protection(self) -> float:
        return self.common.market_protection

    def _restored(self, saved: SavedPosition | None) -> None:
        self._risk_per_unit = saved.risk_per_unit if isinstance(saved, Saved) else 0  # the stop's distance stands

    def _time_exit_at(self) -> int:
        return self._time_exit_ns or self._exit_ns or self._day_end_ns

    def _set_levels(self) -> None:
        """Stop and target from the average cost and the risk fixed at the signal (whole paise, stop >= 1 tick)."""
        assert self._contract is not None
        tick_size = self._contract.tick_size
        entry = self._cost // self._held
        if self._risk_per_unit <= 0:  # no risk known (a position taken over without a document)
            self._risk_per_unit = max(entry - math.floor(entry * (1 - self.common.stop_loss_pct)), tick_size)
        self._stop_price = max(entry - self._risk_per_unit, tick_size)
        self._target_price = entry + math.ceil(self.params.target_r * self._risk_per_unit)

    # -- state across restarts ----------------------------------------------------------------------------
    def snapshot_state(self) -> dict[str, object]:
        return {
            "version": STATE_VERSION, "strategy_id": self.strategy_id,
            "day": self._day.isoformat() if self._day is not None else "",
            "range_high": self._high, "range_low": self._low, "range_complete": int(self._range_complete),
            "range_usable": int(self._range_usable), "up_done": int(self._up_done),
            "down_done": int(self._down_done), "phase": self._phase.value,
            "contract": contract_to_dict(self._contract) if self._contract is not None else None,
            "quantity": self._held, "cost": self._cost, "risk_per_unit": self._risk_per_unit,
            "stop_price": self._stop_price, "target_price": self._target_price, "time_exit_ns": self._time_exit_ns,
            "opened_ns": self._opened_ns, "pending_intent": self._pending_intent, "exit_reason": self._exit_reason,
            "retry_exit_at_ns": self._retry_exit_at_ns,
        }

    def restore_state(self, state: Mapping[str, object] | None,
                      held: Sequence[RestoredPosition]) -> list[RestoredPosition]:
        """Take back the saved day (its range, the directions taken) and the saved position if the broker still
        holds it; the broker's quantity and price win. Without a document the first long position is taken, with
        its stop from ``stop_loss_pct`` and the target ``target_r`` times that risk. Short positions are never
        taken. A saved day other than the next tick's is dropped when that tick arrives."""
        saved = read_state(state, self.strategy_id) if state is not None else None  # validate before changing
        taken = self._position_to_take(saved, held)
        self._day, self._day_end_ns = None, 0
        self._reset_day()
        if saved is not None and saved.day is not None:
            self._set_day(saved.day)
            self._high, self._low = saved.range_high, saved.range_low
            self._range_complete, self._range_usable = saved.range_complete, saved.range_usable
            self._up_done, self._down_done = saved.up_done, saved.down_done
            self._resumed_mid_range = saved.range_high > 0 and not saved.range_complete
        self._restore_position(saved, taken)
        return [p for p in held if p is not taken]

    # -- the range and its breaks -------------------------------------------------------------------------
    def _on_index(self, tick: Tick, ctx: StrategyContext, out: list[Signal | OrderIntent]) -> None:
        price = tick.last_price
        if price <= 0 or tick.ts_ns < self._range_start_ns:
            return
        if self._resumed_mid_range:
            self._resumed_mid_range = False
            if tick.ts_ns >= self._range_end_ns:
                self._range_complete, self._range_usable = True, False
                log.warning("opening_range_incomplete", strategy=self.strategy_id, underlying=self.underlying.name,
                            why="the daemon was down when the range window ended; its extremes are unknown, no "
                                "trade today", range_ended_at=ist_text(self._range_end_ns), event_ts_ns=tick.ts_ns)
        if tick.ts_ns < self._range_end_ns:
            if self._high == 0:
                self._high = self._low = price
                self._range_usable = True
                log.info("opening_range_started", strategy=self.strategy_id, underlying=self.underlying.name,
                         ends_at=ist_text(self._range_end_ns), event_ts_ns=tick.ts_ns)
            else:
                self._high, self._low = max(self._high, price), min(self._low, price)
            return
        if not self._range_complete:
            self._complete_range(tick)
        if not self._range_usable or tick.ts_ns >= self._last_entry_ns:
            return
        if price > self._high:
            self._beyond = self._beyond + 1 if self._beyond > 0 else 1
        elif price < self._low:
            self._beyond = self._beyond - 1 if self._beyond < 0 else -1
        else:
            self._beyond = 0
        if abs(self._beyond) < self.params.confirm_ticks or tick.ts_ns < self._first_entry_ns:
            return
        if self._phase is not Phase.FLAT:
            return
        direction = Direction.BULLISH if self._beyond > 0 else Direction.BEARISH
        if (self._up_done if direction is Direction.BULLISH else self._down_done):
            return
        if direction is Direction.BULLISH:
            self._up_done = True
        else:
            self._down_done = True
        self._break(tick, ctx, out, direction)

    def _complete_range(self, tick: Tick) -> None:
        self._range_complete = True
        if self._high == 0:
            log.warning("opening_range_missed", strategy=self.strategy_id, underlying=self.underlying.name,
                        why="the first index tick of the day came after the range window; no trade today",
                        range_ended_at=ist_text(self._range_end_ns), event_ts_ns=tick.ts_ns)
            return
        middle = (self._high + self._low) / 2
        width_pct = (self._high - self._low) / middle
        if width_pct > self.params.max_range_pct:
            self._range_usable = False
            log.warning("opening_range_refused", strategy=self.strategy_id, underlying=self.underlying.name,
                        high_inr=to_rupees(self._high), low_inr=to_rupees(self._low),
                        width_pct=round(width_pct * 100, 3),
                        max_range_pct=self.params.max_range_pct * 100, event_ts_ns=tick.ts_ns)
            return
        log.info("opening_range", strategy=self.strategy_id, underlying=self.underlying.name,
                 high_inr=to_rupees(self._high), low_inr=to_rupees(self._low), width_pct=round(width_pct * 100, 3),
                 event_ts_ns=tick.ts_ns)

    def confidence(self, direction: Direction, price: int) -> tuple[float, str]:
        """Score a confirmed break at index ``price``; see the module docstring."""
        width = max(self._high - self._low, self.underlying.tick_size_paise)
        excess = price - self._high if direction is Direction.BULLISH else self._low - price
        score = round(100 * _clamp01(0.5 + excess / width), 1)
        return score, f"break of {format_inr(excess)} beyond a range {format_inr(width)} wide"

    def _break(self, tick: Tick, ctx: StrategyContext, out: list[Signal | OrderIntent],
               direction: Direction) -> None:
        confidence, reason = self.confidence(direction, tick.last_price)
        signal = Signal(ts_ns=tick.ts_ns, signal_id=ctx.ids.next("S"), strategy_id=self.strategy_id,
                        underlying=self.underlying.name, direction=direction, confidence=confidence,
                        reason=reason, tick_id=tick.tick_id)
        intent, not_traded = self._entry(tick, ctx, signal)
        if intent is None:
            signal = Signal(ts_ns=signal.ts_ns, signal_id=signal.signal_id, strategy_id=signal.strategy_id,
                            underlying=signal.underlying, direction=direction, confidence=confidence,
                            reason=f"{reason} (not traded: {not_traded})", tick_id=signal.tick_id)
        out.append(signal)
        if intent is not None:
            out.append(intent)

    # -- orders -------------------------------------------------------------------------------------------
    def _entry(self, tick: Tick, ctx: StrategyContext, signal: Signal) -> tuple[OrderIntent | None, str]:
        if signal.confidence < self.common.confidence_cutoff:
            return None, f"confidence below the cutoff {self.common.confidence_cutoff}"
        if not ctx.entries_allowed:
            return None, "entries are stopped"
        day = self._day or ist_date(tick.ts_ns)
        expiries = [e for e in ctx.instruments.expiries(self.underlying.name) if e >= day]
        if not expiries:
            return None, "no listed expiry"
        option_type = OptionType.CE if signal.direction is Direction.BULLISH else OptionType.PE
        contract = ctx.instruments.nearest_strike(self.underlying.name, expiries[0], tick.last_price, option_type)
        if contract is None:
            return None, "no listed strike"
        quote = ctx.quote(contract.instrument_token)
        if quote is None or quote.ask <= 0 or quote.bid <= 0:
            return None, f"no two-sided quote for {contract.tradingsymbol}"
        other_side = self._low if signal.direction is Direction.BULLISH else self._high
        distance = abs(tick.last_price - other_side)
        delta = option_delta(contract, quote, tick.last_price, tick.ts_ns)
        risk = premium_risk(delta, distance, quote.ask, contract.tick_size)
        lots = self.common.lots
        if ctx.risk_budget > 0:  # as many lots as the risk gate's budget allows, at most [strategy] lots
            lots = min(lots, ctx.risk_budget // (risk * contract.lot_size))
            if lots <= 0:
                return None, (f"one lot risks {format_inr(risk * contract.lot_size)} to the stop, more than the risk "
                              f"budget {format_inr(ctx.risk_budget)} per trade (risk.max_risk_per_trade_pct)")
        intent = OrderIntent(
            ts_ns=tick.ts_ns, intent_id=ctx.ids.next("I"), strategy_id=self.strategy_id, contract=contract,
            side=Side.BUY, quantity=lots * contract.lot_size, order_type=OrderType.MARKET,
            purpose=IntentPurpose.ENTRY, expected_price=quote.ask, stop_loss_price=quote.ask - risk,
            market_protection=self.common.market_protection, signal_id=signal.signal_id,
            reason=(f"{signal.direction.value} break, confidence {signal.confidence}; stop at the range's other side "
                    f"{format_inr(other_side)} = premium -{format_inr(risk)} (delta {delta:.2f})"),
        )
        self._phase = Phase.ENTERING
        self._contract = contract
        self._risk_per_unit = risk
        self._pending_intent = intent.intent_id
        return intent, ""
