"""The risk manager as a library: a pure, synchronous core (the risk gate actor wraps it and does the I/O).

    from trader.risk import RiskConfig, RiskManager, RiskLevel, OrderSide
    rm = RiskManager(RiskConfig(initial_capital=100000.0, max_daily_loss_pct=0.02))
    ok, reason = rm.check_can_place_order(contract, quantity, OrderSide.BUY, price)
"""

from trader.events import RiskLevel, TradingState
from trader.events import Side as OrderSide
from trader.risk.config import RiskConfig
from trader.risk.core import RiskManager
from trader.risk.results import RiskDecision, RiskMetrics

__all__ = ["OrderSide", "RiskConfig", "RiskDecision", "RiskLevel", "RiskManager", "RiskMetrics", "TradingState"]
