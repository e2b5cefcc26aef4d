"""What the risk core answers: a decision per intent and a snapshot of the risk picture."""

from __future__ import annotations

from dataclasses import dataclass

from trader.events import RiskLevel, TradingState
from trader.money import to_rupees


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
