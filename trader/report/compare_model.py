"""What ``trader compare`` finds, as data: the two runs' sides, matched trades and signals, what is in one run only
and why, the degradation of each metric and the attribution of the P&L gap (``compare.py`` computes it; the text,
terminal and HTML views show it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from trader.report.checklist import Checklist
from trader.report.metrics import RunMetrics
from trader.runs.model import SignalRow, TradeRow

NS_PER_SECOND = 1_000_000_000
DEFAULT_TOLERANCE_NS = 5 * 60 * NS_PER_SECOND
EXPECTED_DEGRADATION = (0.30, 0.50)
"""The seed's "Expected reality check": live results 30–50 % worse than the backtest's."""

Category = Literal["risk_refusal", "broker_reject", "not_filled", "not_traded", "latency", "missing_signal",
                   "extra_signal", "other"]
CATEGORIES: tuple[Category, ...] = ("risk_refusal", "broker_reject", "not_filled", "not_traded", "latency",
                                    "missing_signal", "extra_signal", "other")
CATEGORY_TEXT: Mapping[str, str] = {
    "risk_refusal": "refused by the risk gate",
    "broker_reject": "rejected or cancelled by the broker",
    "not_filled": "order not filled",
    "not_traded": "signal not traded by the strategy",
    "latency": "traded later than the tolerance or on another contract",
    "missing_signal": "no such signal in the other run",
    "extra_signal": "no such signal in the reference run",
    "other": "no signal behind the trade (manual or adopted)",
}

Which = Literal["reference", "candidate"]


# --- results -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunSide:
    """One of the two runs: its label as given on the command line ("A" or "B"), identity and metrics."""

    label: str
    run_id: str
    mode: str
    complete: bool
    metrics: RunMetrics
    net_pnl: int  # Σ round-trip net P&L (paise) = metrics.trades.net_pnl
    started_ns: int
    trades: tuple[TradeRow, ...]
    equity_change: int | None  # final equity − initial capital (paise); None without an equity curve
    modelled_options: bool = False  # option prices computed from the index (DataSource.modelled_options)
    model_note: str = ""

    @property
    def outside_round_trips(self) -> int | None:
        """equity change − round-trip net: positions still open at the end (or an equity curve sampled before the
        last fills); 0 when the comparison covers everything the account did."""
        return None if self.equity_change is None else self.equity_change - self.net_pnl


@dataclass(frozen=True, slots=True)
class TradeMatch:
    """A trade found in both runs; every difference is candidate − reference."""

    reference: TradeRow
    candidate: TradeRow
    entry_diff_s: float
    exit_diff_s: float
    entry_price_diff: int  # paise per unit
    entry_price_diff_bps: float | None  # / reference entry price × 10 000; None if that price ≤ 0
    exit_price_diff: int
    exit_price_diff_bps: float | None
    quantity_diff: int
    net_diff: int  # paise = slippage + charges + latency_price
    slippage: int  # −(candidate slippage cost − reference slippage cost): what slippage moved the net by
    charges: int  # −(candidate charges − reference charges)
    latency_price: int  # the rest: entry/exit at other times or prices, other quantity
    note: str = ""  # partial fills of either side's entry or exit orders


@dataclass(frozen=True, slots=True)
class SignalMatch:
    reference: SignalRow
    candidate: SignalRow
    offset_s: float  # candidate − reference


@dataclass(frozen=True, slots=True)
class Unmatched:
    """A trade or a signal of one run with no counterpart in the other, and why (from the runs' own records)."""

    run: Which  # the run that has it
    kind: Literal["trade", "signal"]
    category: Category
    strategy_id: str
    ts_ns: int  # trade entry or signal time
    what: str  # "NIFTY26DEC24000CE long ×75" or "NIFTY BULLISH"
    net: int  # the trade's net P&L (paise); 0 for a signal
    detail: str


@dataclass(frozen=True, slots=True)
class Degradation:
    """A metric of both runs and the candidate's relative change ``(candidate − reference) / |reference|``."""

    name: str
    reference: float | None
    candidate: float | None
    change: float | None  # None when either is undefined or infinite, or the reference is 0

    @property
    def band(self) -> str:
        """Where the change falls against the seed's expected 30–50 % degradation."""
        if self.change is None:
            return "undefined"
        low, high = EXPECTED_DEGRADATION
        if self.change > -low:
            return "better than expected"
        if self.change >= -high:
            return "within the expected 30–50 %"
        return "worse than expected"


@dataclass(frozen=True, slots=True)
class Attribution:
    """The P&L gap (candidate net − reference net, paise) split into parts that sum to it exactly."""

    gap: int
    slippage: int
    charges: int
    latency_price: int
    missed: int  # −Σ net of the reference's trades the candidate did not make
    extra: int  # Σ net of the candidate's trades the reference did not make
    residual: int  # gap − Σ parts (0 unless a trade was counted twice or not at all)
    missed_by_category: Mapping[str, int] = field(default_factory=dict)
    extra_by_category: Mapping[str, int] = field(default_factory=dict)

    def parts(self) -> list[tuple[str, int]]:
        return [("slippage", self.slippage), ("charges", self.charges), ("latency and price", self.latency_price),
                ("missed trades", self.missed), ("extra trades", self.extra), ("residual", self.residual)]


@dataclass(frozen=True, slots=True)
class Comparison:
    reference: RunSide
    candidate: RunSide
    tolerance_ns: int
    trades: tuple[TradeMatch, ...]
    signals: tuple[SignalMatch, ...]
    unmatched_trades: tuple[Unmatched, ...]
    unmatched_signals: tuple[Unmatched, ...]
    degradation: tuple[Degradation, ...]
    attribution: Attribution
    checklist: Checklist  # the candidate's go-live checklist, "live ≈ backtest" judged against the reference
