"""``RiskConfig``: the limits of the risk manager, in the units a human types (rupees, fractions, IST wall times).

The manager converts money to integer paise once, at construction. Every fraction is validated in (0, 1): a value
between 1 and 100 is almost always a percentage typed by mistake (2 for 2 %), so the error says how to write it.
"""

from __future__ import annotations

from datetime import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

# The largest amount of rupees any setting may name (₹1,000 crore): beyond it a value is a typo, not a plan.
MAX_RUPEES = 10_000_000_000.0
# Lots in one order: the exchange's quantity freeze allows at most 50 (SENSEX; NIFTY 27) at today's lot sizes
# (docs/reference/india-fno-facts.md §2.3), so 100 already leaves room for a change of lot size.
MAX_LOTS_PER_ORDER = 100

# Every field that is a share of something; validated by ``require_fraction``.
FRACTION_FIELDS = (
    "max_daily_loss_pct",
    "max_weekly_loss_pct",
    "max_monthly_loss_pct",
    "max_drawdown_pct",
    "max_risk_per_trade_pct",
    "max_margin_utilisation_pct",
    "default_stop_loss_pct",
    "medium_at",
    "high_at",
    "critical_at",
)


def require_fraction(name: str, value: float) -> float:
    """``value`` if it lies strictly between 0 and 1; else a ValueError naming ``name`` (with a hint for 1..100)."""
    if not 0 < value < 1:
        hint = (f" — it looks like a percentage: write {value / 100:g} for {value:g}%"
                if 1 <= value <= 100 else "")
        raise ValueError(f"{name} must be a fraction between 0 and 1 (0.02 means 2%), got {value:g}{hint}")
    return value


class RiskConfig(BaseModel):
    """Risk limits. Money in rupees; ``*_pct`` and the level thresholds are fractions (0.02 = 2 %)."""

    # inf and nan are never a limit: they passed every bound and crashed later (OverflowError).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    initial_capital: float = Field(100_000.0, gt=0, le=MAX_RUPEES,
                                   description="rupees; loss limits and risk per trade are shares")
    max_daily_loss_pct: float = 0.02
    max_weekly_loss_pct: float = 0.05
    max_monthly_loss_pct: float = 0.10
    max_drawdown_pct: float = Field(0.15, description="share of the peak equity")
    max_risk_per_trade_pct: float = 0.01
    max_positions_per_symbol: int = Field(3, ge=1, le=100, description="open or pending positions per underlying")
    max_total_positions: int = Field(10, ge=1, le=500)
    max_lots_per_trade: int = Field(1, ge=1, le=MAX_LOTS_PER_ORDER)
    min_margin_buffer: float = Field(50_000.0, ge=0, le=MAX_RUPEES,
                                     description="rupees that must stay free after an order")
    max_margin_utilisation_pct: float = 0.80
    # Kite allows 10 orders/s per account for an unregistered retail algo (docs/reference/india-fno-facts.md §5.2);
    # stay below it.
    max_orders_per_second: int = Field(8, ge=1, le=10)
    max_order_value: float = Field(500_000.0, gt=0, le=MAX_RUPEES, description="rupees: quantity × price of one order")
    no_entry_before: time = Field(time(9, 20), description="IST: no new entries before this time")
    no_entry_after: time = Field(time(15, 0), description="IST: no new entries after this time")
    flatten_on_breach: bool = False
    allow_short_options: bool = Field(False, description="a sell may leave the account net short an option (naked "
                                                         "short: unlimited risk); off, such a sell is refused")
    default_stop_loss_pct: float = Field(0.30, description="premium at risk when an entry carries no stop-loss")
    kill_switch_file: Path | None = Field(None, description="the daemon halts while this file exists (the actor looks)")
    # Risk level from the largest share of any loss limit used: LOW below medium_at, then MEDIUM, HIGH, CRITICAL.
    medium_at: float = 0.5
    high_at: float = 0.75
    critical_at: float = 0.9

    @field_validator(*FRACTION_FIELDS)
    @classmethod
    def _is_fraction(cls, value: float, info: ValidationInfo) -> float:
        return require_fraction(str(info.field_name), value)

    @model_validator(mode="after")
    def _consistent(self) -> RiskConfig:
        if not self.medium_at < self.high_at < self.critical_at:
            raise ValueError(f"level thresholds must increase: medium_at ({self.medium_at:g}) < high_at "
                             f"({self.high_at:g}) < critical_at ({self.critical_at:g})")
        if not self.no_entry_before < self.no_entry_after:
            raise ValueError(f"no_entry_before ({self.no_entry_before:%H:%M}) must be earlier than no_entry_after "
                             f"({self.no_entry_after:%H:%M}) (IST)")
        return self
