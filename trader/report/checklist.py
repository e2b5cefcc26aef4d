"""The seed's go-live checklist ("Success criteria" of the user's seed roadmap), evaluated on a run's metrics.

Before scaling up the seed asks for: 100+ trades, live P&L ≈ backtest P&L (after costs), drawdown < 10 %, Sharpe
> 1.0, profit factor > 1.5. Each item says pass or fail and the figure it was judged on; an item whose figure is
undefined (no Sharpe with fewer than two trading days, no profit factor without trades) fails and says why. The
P&L comparison is evaluated only when a backtest figure is given (``trader compare``); otherwise it is listed as
not evaluated (``passed is None``) and the checklist cannot pass as a whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trader.money import to_rupees
from trader.report.metrics import Drawdown, RunMetrics, TradeStats

MIN_TRADES = 100
MAX_DRAWDOWN_PCT = 0.10
MIN_SHARPE = 1.0
MIN_PROFIT_FACTOR = 1.5
PNL_TOLERANCE = 0.30
"""Live net P&L may fall short of (or exceed) the backtest's by at most 30 % of |backtest net| to count as "≈": the
seed expects a 30–50 % degradation, so a gap beyond the lower end of that range is worse than the best expected."""


@dataclass(frozen=True, slots=True)
class CheckItem:
    name: str
    requirement: str  # as the seed states it, e.g. "profit factor > 1.5"
    figure: float | None  # the value judged (trades, a fraction, a ratio, or rupees for the P&L gap)
    passed: bool | None  # None: not evaluated (no comparison given)
    detail: str


@dataclass(frozen=True, slots=True)
class Checklist:
    items: tuple[CheckItem, ...]

    @property
    def passed(self) -> bool:
        """Every item evaluated and passed."""
        return all(item.passed is True for item in self.items)


@dataclass(frozen=True, slots=True)
class PnlComparison:
    """Net P&L (after charges, paise) of the live or paper run and of the backtest of the same period."""

    live_net: int
    backtest_net: int


def _fmt(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.2f}"


def evaluate(stats: TradeStats, dd: Drawdown, sharpe: float | None, comparison: PnlComparison | None = None,
             *, pnl_tolerance: float = PNL_TOLERANCE, has_equity: bool = True) -> Checklist:
    """``has_equity=False``: the run recorded no equity sample, so its drawdown (0) was not measured: that item fails
    as undefined."""
    items = [
        CheckItem("trades", f"{MIN_TRADES}+ trades", float(stats.trades), stats.trades >= MIN_TRADES,
                  f"{stats.trades} closed trades"),
        CheckItem("drawdown", f"max drawdown < {MAX_DRAWDOWN_PCT:.0%}", dd.max_drawdown_pct,
                  dd.max_drawdown_pct < MAX_DRAWDOWN_PCT,
                  f"max drawdown {dd.max_drawdown_pct:.2%} (₹{to_rupees(dd.max_drawdown):,.2f})")
        if has_equity else
        CheckItem("drawdown", f"max drawdown < {MAX_DRAWDOWN_PCT:.0%}", None, False,
                  "max drawdown undefined (no equity curve recorded)"),
    ]
    if sharpe is None:
        items.append(CheckItem("sharpe", f"Sharpe > {MIN_SHARPE}", None, False,
                               "Sharpe undefined (fewer than two trading days, or returns that never vary)"))
    else:
        items.append(CheckItem("sharpe", f"Sharpe > {MIN_SHARPE}", sharpe, sharpe > MIN_SHARPE,
                               f"Sharpe {sharpe:.2f} (daily returns, ×√252)"))
    pf = stats.profit_factor
    if pf is None:
        items.append(CheckItem("profit_factor", f"profit factor > {MIN_PROFIT_FACTOR}", None, False,
                               "profit factor undefined (no winning or losing trade)"))
    else:
        items.append(CheckItem("profit_factor", f"profit factor > {MIN_PROFIT_FACTOR}", pf, pf > MIN_PROFIT_FACTOR,
                               f"profit factor {_fmt(pf)}"))
    requirement = f"live net P&L ≈ backtest net P&L (within {pnl_tolerance:.0%})"
    if comparison is None:
        items.append(CheckItem("pnl_vs_backtest", requirement, None, None, "not evaluated: no backtest to compare"))
    else:
        gap = comparison.live_net - comparison.backtest_net
        allowed = pnl_tolerance * abs(comparison.backtest_net)
        items.append(CheckItem(
            "pnl_vs_backtest", requirement, to_rupees(gap), abs(gap) <= allowed,
            f"live ₹{to_rupees(comparison.live_net):,.2f} vs backtest ₹{to_rupees(comparison.backtest_net):,.2f}: "
            f"gap ₹{to_rupees(gap):,.2f}, allowed ±₹{allowed / 100:,.2f}"))
    return Checklist(tuple(items))


def evaluate_run(metrics: RunMetrics, comparison: PnlComparison | None = None, *,
                 pnl_tolerance: float = PNL_TOLERANCE) -> Checklist:
    """The checklist on everything ``run_metrics`` computed."""
    return evaluate(metrics.trades, metrics.drawdown, metrics.sharpe, comparison, pnl_tolerance=pnl_tolerance,
                    has_equity=bool(metrics.days))
