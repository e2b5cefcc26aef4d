"""Performance metrics of a run: pure, synchronous functions, integer paise in, documented floats out.

Every definition, formula and edge case is written down in ``docs/metrics-definitions.md``; the short version:

* trades are round trips, judged by their **net** P&L (after charges): a win is net > 0, a loss net < 0, a
  breakeven (net == 0) is neither but counts in the number of trades;
* daily returns come from the equity curve sampled by **IST trading day** (the last sample of each day that has
  one), Sharpe and Sortino are annualised by ``sqrt(252)``, the risk-free rate is 0 unless given (annual, simple);
* "undefined" is ``None`` (never NaN), except a profit factor with gains and no loss, which is ``math.inf``.

Nothing here reads a clock, a file or the network: the report and ``trader compare`` feed it what a run recorded.
What is measured per fill (slippage, charges by kind, exposure) is in ``fill_metrics.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from datetime import date

from trader.events import OrderType, Side
from trader.market.calendar import ist_date
from trader.report.fill_metrics import (
    ChargesByKind,
    Exposure,
    FillRecord,
    SlippageReport,
    charges_by_kind,
    exposure,
    mean,
    slippage_report,
)

TRADING_DAYS_PER_YEAR = 252
_NS_PER_SECOND = 1_000_000_000

# --- trades ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TradeStats:
    """Round-trip statistics on net P&L (paise). Averages are floats of paise; see the module docstring."""

    trades: int
    wins: int
    losses: int
    breakevens: int
    win_rate: float | None  # wins / trades; None without trades
    gross_profit: int  # Σ net of the wins
    gross_loss: int  # -Σ net of the losses (≥ 0)
    net_pnl: int  # Σ net of every trade
    profit_factor: float | None  # gross_profit / gross_loss; inf if no loss but a profit; None if both are 0
    average_win: float | None  # gross_profit / wins; None without wins
    average_loss: float | None  # gross_loss / losses (a positive number); None without losses
    payoff_ratio: float | None  # average_win / average_loss; None unless both exist
    expectancy: float | None  # net_pnl / trades (= P(win)·avg win − P(loss)·avg loss); None without trades
    largest_win: int  # 0 without wins
    largest_loss: int  # as a positive amount; 0 without losses


def trade_stats(net_pnls: Iterable[int]) -> TradeStats:
    """Statistics of round trips given their net P&L in paise (``ClosedTrade.net``, ``PortfolioActor.trade_pnls``)."""
    pnls = list(net_pnls)
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]
    gross_profit = sum(wins)
    gross_loss = -sum(losses)
    if gross_loss:
        profit_factor: float | None = gross_profit / gross_loss
    else:
        profit_factor = math.inf if gross_profit else None
    average_win = gross_profit / len(wins) if wins else None
    average_loss = gross_loss / len(losses) if losses else None
    return TradeStats(
        trades=len(pnls),
        wins=len(wins),
        losses=len(losses),
        breakevens=len(pnls) - len(wins) - len(losses),
        win_rate=len(wins) / len(pnls) if pnls else None,
        gross_profit=gross_profit,
        gross_loss=gross_loss,
        net_pnl=sum(pnls),
        profit_factor=profit_factor,
        average_win=average_win,
        average_loss=average_loss,
        payoff_ratio=average_win / average_loss if average_win is not None and average_loss else None,
        expectancy=sum(pnls) / len(pnls) if pnls else None,
        largest_win=max(wins, default=0),
        largest_loss=-min(losses, default=0),
    )


# --- equity curve: daily returns, Sharpe, Sortino --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DailyEquity:
    day: date  # IST calendar date
    equity: int  # paise: the last sample of that day
    pnl: int  # paise: equity − the previous day's close (or the starting equity for the first day)
    ret: float | None  # pnl / previous close; None when the previous close was ≤ 0


def daily_equity(curve: Sequence[tuple[int, int]], initial_capital: int | None = None) -> list[DailyEquity]:
    """The equity curve ``[(ts_ns, equity paise), ...]`` (time order) reduced to one close per IST trading day.

    A day is a trading day when the curve has a sample on it; days without samples (weekends, holidays, days the
    trader did not run) are simply absent, so returns are per trading day, not per calendar day. The first day's
    return is measured from ``initial_capital`` if given, else from the curve's first sample."""
    if not curve:
        return []
    closes: dict[date, int] = {}
    previous_ts: int | None = None
    for ts_ns, equity in curve:
        if previous_ts is not None and ts_ns < previous_ts:
            raise ValueError(f"equity curve out of time order at ts_ns={ts_ns} (after {previous_ts})")
        previous_ts = ts_ns
        closes[ist_date(ts_ns)] = equity  # insertion order = time order; the last sample of a day wins
    previous = initial_capital if initial_capital is not None else curve[0][1]
    days: list[DailyEquity] = []
    for day, equity in closes.items():
        days.append(DailyEquity(day=day, equity=equity, pnl=equity - previous,
                                ret=(equity - previous) / previous if previous > 0 else None))
        previous = equity
    return days


def daily_returns(curve: Sequence[tuple[int, int]], initial_capital: int | None = None) -> list[float]:
    """Simple daily returns ``E_d / E_{d-1} − 1`` (see ``daily_equity``); days whose base was ≤ 0 are dropped."""
    return [d.ret for d in daily_equity(curve, initial_capital) if d.ret is not None]


def sharpe_ratio(returns: Sequence[float], risk_free_annual: float = 0.0,
                 periods_per_year: int = TRADING_DAYS_PER_YEAR) -> float | None:
    """``mean(r − rf) / stdev(r) × sqrt(252)``, stdev the sample one (n − 1).

    ``rf`` per day is ``risk_free_annual / 252`` (simple). ``None`` with fewer than two returns or when the
    returns do not vary (stdev 0): a ratio over zero risk is not a number we report."""
    if len(returns) < 2:
        return None
    rf = risk_free_annual / periods_per_year
    excess = [r - rf for r in returns]
    average = mean(excess)
    variance = math.fsum((x - average) ** 2 for x in excess) / (len(excess) - 1)
    if variance <= 0.0:
        return None
    return average / math.sqrt(variance) * math.sqrt(periods_per_year)


def sortino_ratio(returns: Sequence[float], risk_free_annual: float = 0.0,
                  periods_per_year: int = TRADING_DAYS_PER_YEAR) -> float | None:
    """``mean(r − rf) / DD × sqrt(252)`` with the downside deviation ``DD = sqrt(Σ min(0, r − rf)² / n)`` over
    all n returns (target = rf). ``None`` with fewer than two returns or when no day fell below the target
    (DD = 0)."""
    if len(returns) < 2:
        return None
    rf = risk_free_annual / periods_per_year
    excess = [r - rf for r in returns]
    downside = math.fsum(min(0.0, x) ** 2 for x in excess) / len(excess)
    if downside <= 0.0:
        return None
    return mean(excess) / math.sqrt(downside) * math.sqrt(periods_per_year)


# --- drawdown --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Drawdown:
    """The deepest fall of equity from a running peak (paise), and how long it lasted.

    ``max_drawdown`` and ``max_drawdown_pct`` are each maximised on their own (the deepest fall in paise and the
    deepest relative to its peak can be different episodes). The times describe the episode of ``max_drawdown``:
    ``peak_ns`` (the last sample at the peak before the fall), ``trough_ns``, and ``recovery_ns``, the first
    sample back at or above the peak (``None``: not recovered by the end of the curve). ``duration_ns`` is
    recovery − peak, or end of curve − peak while still open. ``longest_ns`` is the longest time spent below a
    previous peak by any episode (open ones counted to the end of the curve)."""

    max_drawdown: int
    max_drawdown_pct: float  # a fraction: 0.1 = 10 %
    peak_ns: int | None
    trough_ns: int | None
    recovery_ns: int | None
    duration_ns: int
    longest_ns: int

    @property
    def recovered(self) -> bool:
        return self.peak_ns is None or self.recovery_ns is not None


def drawdown(curve: Sequence[tuple[int, int]], initial_capital: int | None = None) -> Drawdown:
    """Drawdown of the curve ``[(ts_ns, equity paise), ...]``; ``initial_capital`` is a peak before the first
    sample (at the first sample's time) when given. Percentages are of the running peak; a peak ≤ 0 gives 0 %."""
    if not curve:
        return Drawdown(0, 0.0, None, None, None, 0, 0)
    first_ts = curve[0][0]
    peak = curve[0][1] if initial_capital is None else max(initial_capital, curve[0][1])
    peak_ts = first_ts
    best = 0
    best_pct = 0.0
    best_episode: tuple[int, int, int | None] | None = None  # peak_ns, trough_ns, recovery_ns
    episode_trough: tuple[int, int] | None = None  # (depth, ts) of the current episode's deepest point
    longest = 0
    for ts_ns, equity in curve:
        if equity >= peak:
            if episode_trough is not None:  # an episode ends: back at (or above) the peak
                longest = max(longest, ts_ns - peak_ts)
                if best_episode is not None and best_episode[0] == peak_ts and best_episode[2] is None:
                    best_episode = (best_episode[0], best_episode[1], ts_ns)
                episode_trough = None
            peak, peak_ts = equity, ts_ns
            continue
        depth = peak - equity
        if episode_trough is None or depth > episode_trough[0]:
            episode_trough = (depth, ts_ns)
        if depth > best:
            best = depth
            best_episode = (peak_ts, ts_ns, None)
        if peak > 0:
            best_pct = max(best_pct, depth / peak)
    end_ns = curve[-1][0]
    if episode_trough is not None:
        longest = max(longest, end_ns - peak_ts)
    if best_episode is None:
        return Drawdown(0, 0.0, None, None, None, 0, longest)
    peak_ns, trough_ns, recovery_ns = best_episode
    duration = (recovery_ns if recovery_ns is not None else end_ns) - peak_ns
    return Drawdown(best, best_pct, peak_ns, trough_ns, recovery_ns, duration, longest)


# --- everything at once ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunMetrics:
    """Every metric of one run, as ``run_metrics`` computes it from what the run recorded."""

    trades: TradeStats
    days: tuple[DailyEquity, ...]
    sharpe: float | None
    sortino: float | None
    risk_free_annual: float
    drawdown: Drawdown
    slippage: SlippageReport
    charges: ChargesByKind
    exposure: Exposure


def run_metrics(*, net_pnls: Iterable[int], equity_curve: Sequence[tuple[int, int]], fills: Sequence[FillRecord],
                initial_capital: int, final_equity: tuple[int, int] | None = None, start_ns: int | None = None,
                end_ns: int | None = None, risk_free_annual: float = 0.0) -> RunMetrics:
    """All metrics of a run: round-trip net P&Ls (paise), the equity curve, the fills in time order, the starting
    capital. The exposure span defaults to the first and last moment seen in the curve and the fills.

    ``final_equity`` ``(ts_ns, equity)``, the account at the end of the run, is appended to the curve when it is not
    already its last sample: ``PortfolioActor`` samples equity at most once a minute, so a curve can miss the last
    fills of a day, and the day's close (hence its return) would be stale without it."""
    if final_equity is not None and (not equity_curve or (final_equity[0] >= equity_curve[-1][0]
                                                          and final_equity != tuple(equity_curve[-1]))):
        equity_curve = [*equity_curve, final_equity]
    moments = [ts for ts, _ in equity_curve] + [f.ts_ns for f in fills]
    start = start_ns if start_ns is not None else min(moments, default=0)
    end = end_ns if end_ns is not None else max(moments, default=0)
    days = daily_equity(equity_curve, initial_capital)
    returns = [d.ret for d in days if d.ret is not None]
    return RunMetrics(
        trades=trade_stats(net_pnls),
        days=tuple(days),
        sharpe=sharpe_ratio(returns, risk_free_annual),
        sortino=sortino_ratio(returns, risk_free_annual),
        risk_free_annual=risk_free_annual,
        drawdown=drawdown(equity_curve, initial_capital),
        slippage=slippage_report(fills),
        charges=charges_by_kind(fills),
        exposure=exposure(fills, start, end),
    )


def jsonable(value: object) -> object:
    """A metrics dataclass (or anything inside one) as plain JSON data: dataclasses → dicts, dates → ISO text,
    mapping keys → text, ``inf`` → ``"inf"`` (strict JSON has no infinity). Money stays in integer paise."""
    if isinstance(value, float):
        return value if math.isfinite(value) else ("inf" if value > 0 else "-inf" if value < 0 else None)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Side | OrderType):
        return value.value
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
