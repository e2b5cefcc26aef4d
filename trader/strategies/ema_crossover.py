"""``ema_crossover_enhanced``: EMA fast/slow crossover on the underlying, traded with ATM options.

Bars of ``bar_seconds`` are built from the underlying's ticks. When the fast EMA crosses the slow EMA the strategy
arms a signal in that direction for ``confirm_bars`` bars and scores it on every bar close while it stays armed:

confidence (0–100) = gap (0–40) + slope (0–30) + momentum/volume (0–30), each a clamp(x / full, 0, 1) × weight of a
quantity measured in units of the recent bar-to-bar move (the mean absolute change of the last ``slow`` closes),
so the score means the same thing in a calm and a busy market (the unit is floored at 1 bp of the price, so a
dead-flat market cannot make a tiny move look decisive):
- gap: |fast − slow| — how decisively the averages have separated (full marks at 1 unit);
- slope: the slow EMA's slope over the last 3 bars in the signal's direction (full marks at 0.3 units per bar);
- momentum: the move of the close over the last 5 bars in the signal's direction (full marks at √5 units, i.e. a
  one-sigma-like run); when the feed carries volume (futures, options) 10 of these 30 points come from the last
  bar's volume against the average of the last ``slow`` bars instead. Index ticks carry no volume, so for an index
  momentum takes all 30 points.
A scored signal at or above the cutoff is published with an entry intent (bullish → buy the ATM CE, bearish → the
ATM PE, in whole lots); one that never reaches the cutoff is published once, when its window closes, for the log.

The strike is the one nearest the money whose premium at risk to the stop (lots × lot size × ask × stop_loss_pct)
fits the risk budget, walking out of the money up to ``max_strikes_otm`` strikes; no fitting strike, no entry.
Exits: the opposite crossover, a stop-loss and a target on the option premium, and a time exit before the intraday
square-off. Long options only, one position at a time.

State across restarts: ``snapshot_state`` / ``restore_state``, in the document ``ema_state.py`` describes.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

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
from trader.market.calendar import IST, ist_text
from trader.market.instruments import OptionContract, OptionType
from trader.money import format_inr, to_rupees
from trader.store.codec import contract_to_dict
from trader.strategies.base import RestoredPosition, StrategyContext
from trader.strategies.ema_state import STATE_VERSION, Phase, read_state
from trader.strategies.long_option import LongOptionPosition

if TYPE_CHECKING:
    from trader.config import StrategySettings
    from trader.market.instruments import UnderlyingSpec

STRATEGY_NAME = "ema_crossover_enhanced"
_NS = 1_000_000_000

log = get_logger("trader.strategy")


@dataclass(frozen=True, slots=True)
class EmaCrossoverParams:
    underlying: str = "NIFTY"
    fast: int = 9
    slow: int = 21
    bar_seconds: int = 60
    confirm_bars: int = 3
    confidence_cutoff: float = 50.0
    lots: int = 1
    stop_loss_pct: float = 0.30
    target_pct: float = 0.60
    market_protection: float = -1.0
    # Paise of premium the stop may lose on one entry (the risk manager's max_risk_per_trade); None = no budget.
    max_premium_at_risk: int | None = None
    max_strikes_otm: int = 10
    first_entry_time: time = time(9, 20)
    last_entry_time: time = time(15, 0)
    exit_time: time = time(15, 10)

    def __post_init__(self) -> None:
        if not 1 <= self.fast < self.slow:
            raise ValueError(f"EMA periods need 1 <= fast < slow, got fast={self.fast} slow={self.slow}")
        if self.bar_seconds <= 0 or self.confirm_bars <= 0 or self.lots <= 0:
            raise ValueError("bar_seconds, confirm_bars and lots must be positive")
        if not 0 <= self.confidence_cutoff <= 100:
            raise ValueError(f"confidence_cutoff must be within 0..100, got {self.confidence_cutoff}")
        if not (0 < self.stop_loss_pct < 1 and self.target_pct > 0):
            raise ValueError("stop_loss_pct must be in (0, 1) and target_pct > 0 (fractions of the premium)")
        if not self.first_entry_time <= self.last_entry_time <= self.exit_time:
            raise ValueError("need first_entry_time <= last_entry_time <= exit_time")


class EmaCrossoverSettings(BaseModel):
    """The EMA crossover's own parameters (its ``Params``): ``[strategy.ema_crossover_enhanced]``, over the same
    fields in ``[strategy]`` that older configs set (both work; the table wins)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    fast: int = Field(9, ge=1, le=500, description="fast EMA period, in bars")
    slow: int = Field(21, ge=2, le=1_000, description="slow EMA period, in bars")
    bar_seconds: int = Field(60, ge=1, le=3_600)
    confirm_bars: int = Field(3, ge=1, le=100, description="bars a crossover stays armed waiting for the cutoff")

    @model_validator(mode="after")
    def _ordering(self) -> EmaCrossoverSettings:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be smaller than slow ({self.slow})")
        return self


@dataclass(slots=True)
class _Armed:
    direction: Direction
    bars_left: int
    best_confidence: float
    best_reason: str


def _clamp01(x: float) -> float:
    return 0.0 if x <= 0 else 1.0 if x >= 1 else x


class EmaCrossoverEnhanced(LongOptionPosition):
    name: ClassVar[str] = STRATEGY_NAME
    Params: ClassVar[type[EmaCrossoverSettings]] = EmaCrossoverSettings

    @classmethod
    def from_config(cls, strategy_id: str, underlying: UnderlyingSpec, common: StrategySettings,
                    params: EmaCrossoverSettings, *, max_premium_at_risk: int | None = None) -> EmaCrossoverEnhanced:
        """The plugin-shaped constructor (docs/strategies.md), plus the risk budget the strike choice fits into."""
        return cls(EmaCrossoverParams(
            underlying=underlying.name, fast=params.fast, slow=params.slow, bar_seconds=params.bar_seconds,
            confirm_bars=params.confirm_bars, confidence_cutoff=common.confidence_cutoff, lots=common.lots,
            stop_loss_pct=common.stop_loss_pct, target_pct=common.target_pct,
            market_protection=common.market_protection, max_premium_at_risk=max_premium_at_risk,
            max_strikes_otm=common.max_strikes_otm, first_entry_time=common.first_entry_time,
            last_entry_time=common.last_entry_time, exit_time=common.exit_time), strategy_id=strategy_id)

    def __init__(self, params: EmaCrossoverParams | None = None, strategy_id: str = STRATEGY_NAME) -> None:
        self.params = params or EmaCrossoverParams()
        self.strategy_id = strategy_id
        self._alpha_fast = 2 / (self.params.fast + 1)
        self._alpha_slow = 2 / (self.params.slow + 1)
        self._day_end_ns = 0
        self._day = date.min
        self._first_entry_ns = self._last_entry_ns = self._exit_ns = 0
        self._reset_day_state()
        self._init_position()

    # -- day bookkeeping ----------------------------------------------------------------------------------
    def _reset_day_state(self) -> None:
        self._bar_start_ns = -1
        self._bar_close = 0.0
        self._bar_volume = 0
        self._last_cum_volume = -1
        self._closes: deque[float] = deque(maxlen=self.params.slow + 1)
        self._volumes: deque[int] = deque(maxlen=self.params.slow)
        self._fast_ema: float | None = None
        self._slow_ema: float | None = None
        self._slow_history: deque[float] = deque(maxlen=4)
        self._bars = 0
        self._armed: _Armed | None = None

    def _roll_day(self, ts_ns: int) -> None:
        day = datetime.fromtimestamp(ts_ns / _NS, tz=IST).date()
        self._day = day

        def at(t: time) -> int:
            return int(datetime.combine(day, t, tzinfo=IST).timestamp()) * _NS

        self._first_entry_ns = at(self.params.first_entry_time)
        self._last_entry_ns = at(self.params.last_entry_time)
        self._exit_ns = at(self.params.exit_time)
        self._day_end_ns = int(datetime.combine(day + timedelta(days=1), time(0), tzinfo=IST).timestamp()) * _NS
        self._reset_day_state()

    # -- events -------------------------------------------------------------------------------------------
    def on_tick(self, tick: Tick, ctx: StrategyContext) -> Sequence[Signal | OrderIntent]:
        if tick.ts_ns >= self._day_end_ns:
            self._roll_day(tick.ts_ns)
        out: list[Signal | OrderIntent] = []
        index = ctx.instruments.index_for(self.params.underlying)
        if index is not None and tick.instrument_token == index.instrument_token:
            self._on_underlying(tick, ctx, out)
        if self._phase is Phase.OPEN and self._contract is not None:
            self._check_exits(tick, ctx, out)
        return out

    @property
    def _market_protection(self) -> float:
        return self.params.market_protection

    def _set_levels(self) -> None:
        """Stop and target from the average cost. For a whole-paise mark, ``mark <= floor(x)`` is ``mark <= x``."""
        entry = self._cost / self._held
        self._stop_price = math.floor(entry * (1 - self.params.stop_loss_pct))
        self._target_price = math.ceil(entry * (1 + self.params.target_pct))

    # -- state across restarts ----------------------------------------------------------------------------
    def snapshot_state(self) -> dict[str, object]:
        return {
            "version": STATE_VERSION, "strategy_id": self.strategy_id, "phase": self._phase.value,
            "contract": contract_to_dict(self._contract) if self._contract is not None else None,
            "quantity": self._held, "cost": self._cost, "stop_price": self._stop_price,
            "target_price": self._target_price, "time_exit_ns": self._time_exit_ns, "opened_ns": self._opened_ns,
            "pending_intent": self._pending_intent, "exit_reason": self._exit_reason,
            "retry_exit_at_ns": self._retry_exit_at_ns,
        }

    def restore_state(self, state: Mapping[str, object] | None,
                      held: Sequence[RestoredPosition]) -> list[RestoredPosition]:
        """Take back the saved position if the broker still holds it; the broker's quantity and price win.

        With a document: the position on the document's contract is taken (stop and target kept; computed from the
        broker's average if the entry had not filled yet); positions on other contracts are returned. Without one
        (first run with the journal, or the document lost): the first long position is taken, with stop and target
        from the parameters and the broker's average price. Short positions are never taken (long options only).
        An order the document waits on stays pending: its terminal update ends it, as before the restart.
        """
        saved = read_state(state, self.strategy_id) if state is not None else None  # validate before changing anything
        taken = self._position_to_take(saved, held)
        self._restore_position(saved, taken)
        return [p for p in held if p is not taken]

    # -- signal generation --------------------------------------------------------------------------------
    def _on_underlying(self, tick: Tick, ctx: StrategyContext, out: list[Signal | OrderIntent]) -> None:
        bar_ns = self.params.bar_seconds * _NS
        bar_start = tick.ts_ns - tick.ts_ns % bar_ns
        if self._bar_start_ns < 0:
            self._bar_start_ns = bar_start
            ready_ns = bar_start + self.params.slow * bar_ns
            log.info("strategy_warming_up", strategy=self.strategy_id, underlying=self.params.underlying,
                     bars_needed=self.params.slow, bar_seconds=self.params.bar_seconds,
                     ready_at=ist_text(ready_ns), event_ts_ns=tick.ts_ns)
        elif bar_start != self._bar_start_ns:
            self._close_bar(tick, ctx, out)
            self._bar_start_ns = bar_start
            self._bar_volume = 0
        self._bar_close = to_rupees(tick.last_price)
        if tick.volume > 0:
            if self._last_cum_volume >= 0:
                self._bar_volume += max(tick.volume - self._last_cum_volume, 0)
            self._last_cum_volume = tick.volume

    def _close_bar(self, tick: Tick, ctx: StrategyContext, out: list[Signal | OrderIntent]) -> None:
        close = self._bar_close
        self._closes.append(close)
        self._volumes.append(self._bar_volume)
        self._bars += 1
        previous_gap = None if self._fast_ema is None or self._slow_ema is None else self._fast_ema - self._slow_ema
        if self._fast_ema is None or self._slow_ema is None:
            self._fast_ema = self._slow_ema = close
        else:
            self._fast_ema += self._alpha_fast * (close - self._fast_ema)
            self._slow_ema += self._alpha_slow * (close - self._slow_ema)
        self._slow_history.append(self._slow_ema)
        if self._bars < self.params.slow or previous_gap is None:
            return  # the slow EMA is not warmed up yet
        if self._bars == self.params.slow:
            log.info("strategy_ready", strategy=self.strategy_id, underlying=self.params.underlying,
                     bars=self._bars, event_ts_ns=tick.ts_ns)
        gap = self._fast_ema - self._slow_ema
        if previous_gap <= 0 < gap or previous_gap >= 0 > gap:
            direction = Direction.BULLISH if gap > 0 else Direction.BEARISH
            if self._armed is not None and self._armed.direction is not direction:
                self._publish_unconfirmed(tick, ctx, out)
            self._armed = _Armed(direction, self.params.confirm_bars, -1.0, "")
            if self._phase is Phase.OPEN and self._contract is not None and self._held_direction() is not direction:
                self._exit(tick, ctx, out, "opposite_signal")
        armed = self._armed
        if armed is None:
            return
        confidence, reason = self.confidence(armed.direction)
        if confidence > armed.best_confidence:
            armed.best_confidence, armed.best_reason = confidence, reason
        armed.bars_left -= 1
        if confidence >= self.params.confidence_cutoff and self._phase is Phase.FLAT:
            self._armed = None
            signal = self._signal(tick, ctx, armed.direction, confidence, reason)
            intent, not_traded = self._entry(tick, ctx, signal)
            if intent is None:
                signal = dataclasses.replace(signal, reason=f"{reason} (not traded: {not_traded})")
            out.append(signal)
            if intent is not None:
                out.append(intent)
        elif armed.bars_left <= 0:
            self._publish_unconfirmed(tick, ctx, out)

    def _publish_unconfirmed(self, tick: Tick, ctx: StrategyContext, out: list[Signal | OrderIntent]) -> None:
        armed = self._armed
        self._armed = None
        if armed is not None and armed.best_confidence >= 0:
            out.append(self._signal(tick, ctx, armed.direction, armed.best_confidence,
                                    armed.best_reason + " (not acted on)"))

    def confidence(self, direction: Direction) -> tuple[float, str]:
        """Score the current bar for ``direction``; see the module docstring for the components."""
        closes = self._closes
        fast, slow = self._fast_ema, self._slow_ema
        if fast is None or slow is None or len(closes) < 2:
            return 0.0, "not enough bars"
        sign = 1.0 if direction is Direction.BULLISH else -1.0
        moves = [abs(b - a) for a, b in zip(list(closes)[:-1], list(closes)[1:], strict=True)]
        # Floor the unit at 1 bp of price: in a dead-flat market any tick would otherwise look decisive.
        unit = max(sum(moves) / len(moves), closes[-1] * 1e-4, 1e-9)
        gap_units = sign * (fast - slow) / unit
        history = self._slow_history
        slope_units = sign * (history[-1] - history[0]) / max(len(history) - 1, 1) / unit
        lookback = min(5, len(closes) - 1)
        momentum_units = sign * (closes[-1] - closes[-1 - lookback]) / (unit * math.sqrt(lookback))
        gap_score = 40 * _clamp01(gap_units)
        slope_score = 30 * _clamp01(slope_units / 0.3)
        volumes = [v for v in self._volumes if v > 0]
        if len(volumes) >= 2 and self._volumes[-1] > 0:
            average = sum(volumes[:-1]) / (len(volumes) - 1)
            volume_score = 10 * _clamp01(self._volumes[-1] / average - 1)
            momentum_score = 20 * _clamp01(momentum_units)
        else:
            volume_score = 0.0
            momentum_score = 30 * _clamp01(momentum_units)
        total = round(gap_score + slope_score + momentum_score + volume_score, 1)
        reason = (f"gap={gap_score:.1f}/40 slope={slope_score:.1f}/30 "
                  f"momentum={momentum_score:.1f} volume={volume_score:.1f}")
        return total, reason

    def _signal(self, tick: Tick, ctx: StrategyContext, direction: Direction, confidence: float,
                reason: str) -> Signal:
        return Signal(ts_ns=tick.ts_ns, signal_id=ctx.ids.next("S"), strategy_id=self.strategy_id,
                      underlying=self.params.underlying, direction=direction, confidence=confidence,
                      reason=reason, tick_id=tick.tick_id)

    # -- orders -------------------------------------------------------------------------------------------
    def _entry(self, tick: Tick, ctx: StrategyContext, signal: Signal) -> tuple[OrderIntent | None, str]:
        """The entry intent for a confirmed signal, or None and why not (the signal's log line says it)."""
        if not ctx.entries_allowed:
            return None, "entries are stopped"
        if not self._first_entry_ns <= tick.ts_ns < self._last_entry_ns:
            return None, "outside the entry window"
        expiries = [e for e in ctx.instruments.expiries(self.params.underlying) if e >= self._day]
        if not expiries:
            return None, "no listed expiry"
        option_type = OptionType.CE if signal.direction is Direction.BULLISH else OptionType.PE
        picked = self._pick_strike(ctx, expiries[0], tick.last_price, option_type)
        if picked is None:
            budget = self.params.max_premium_at_risk
            return None, (f"no quoted strike within {self.params.max_strikes_otm} of the money fits the risk budget "
                          f"of {format_inr(budget)}" if budget is not None else "no quoted strike")
        contract, quote = picked
        intent = OrderIntent(
            ts_ns=tick.ts_ns, intent_id=ctx.ids.next("I"), strategy_id=self.strategy_id, contract=contract,
            side=Side.BUY, quantity=self.params.lots * contract.lot_size, order_type=OrderType.MARKET,
            purpose=IntentPurpose.ENTRY, expected_price=quote.ask,
            stop_loss_price=round(quote.ask * (1 - self.params.stop_loss_pct)),
            market_protection=self.params.market_protection, signal_id=signal.signal_id,
            reason=f"{signal.direction.value} confidence {signal.confidence}",
        )
        self._phase = Phase.ENTERING
        self._contract = contract
        self._pending_intent = intent.intent_id
        return intent, ""

    def _pick_strike(self, ctx: StrategyContext, expiry: date, spot: int,
                     option_type: OptionType) -> tuple[OptionContract, Tick] | None:
        """The strike nearest the money whose premium at risk to the stop fits the risk budget.

        Walks out of the money one strike at a time (cheaper premium) up to ``max_strikes_otm``; never enters blind:
        a strike without a two-sided quote is skipped, since neither the risk check nor slippage can be measured.
        """
        chain = [c for c in ctx.instruments.option_chain(self.params.underlying, expiry)
                 if c.option_type is option_type]
        # Out of the money: calls above spot, puts below; nearest first.
        sign = 1 if option_type is OptionType.CE else -1
        chain.sort(key=lambda c: (abs(c.strike - spot), c.strike))
        atm = chain[0].strike if chain else 0
        candidates = [c for c in chain if c.strike == atm or sign * (c.strike - atm) > 0]
        budget = self.params.max_premium_at_risk
        for contract in candidates[: self.params.max_strikes_otm + 1]:
            quote = ctx.quote(contract.instrument_token)
            if quote is None or quote.ask <= 0 or quote.bid <= 0:
                continue
            at_risk = self.params.lots * contract.lot_size * quote.ask * self.params.stop_loss_pct
            if budget is None or at_risk <= budget:
                return contract, quote
        return None

    def _held_direction(self) -> Direction | None:
        if self._contract is None:
            return None
        return Direction.BULLISH if self._contract.option_type is OptionType.CE else Direction.BEARISH
