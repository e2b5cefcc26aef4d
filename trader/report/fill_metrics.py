"""Per-fill metrics of a run (pure, integer paise in): slippage in bps by order type and IST hour, charges by kind,
exposure. Definitions in ``docs/metrics-definitions.md``; ``metrics.run_metrics`` puts them with the trade and
equity metrics."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from trader.events import Fill, OrderType, Side
from trader.market.calendar import IST, ist_date
from trader.market.charges import ChargeBreakdown, option_charges

_NS_PER_SECOND = 1_000_000_000

CHARGE_KINDS: tuple[str, ...] = tuple(f.name for f in fields(ChargeBreakdown))
"""brokerage, stt, exchange_txn, sebi_fee, stamp_duty, gst — the order of ``ChargeBreakdown``."""


# --- inputs ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FillRecord:
    """One execution as a run folder keeps it: what slippage, charges and exposure need, nothing more.

    ``charges`` is the total the run booked for the fill (paise); ``order_type`` is the intent's (``MARKET``,
    ``LIMIT``, ``SL``, ``SL-M``), which a ``Fill`` itself does not carry."""

    ts_ns: int
    order_id: str
    instrument_token: int
    exchange: str
    side: Side
    quantity: int
    price: int
    expected_price: int
    charges: int
    order_type: str = OrderType.MARKET.value

    @classmethod
    def from_fill(cls, fill: Fill, order_type: OrderType | str = OrderType.MARKET) -> FillRecord:
        return cls(ts_ns=fill.ts_ns, order_id=fill.order_id, instrument_token=fill.contract.instrument_token,
                   exchange=fill.contract.exchange, side=fill.side, quantity=fill.quantity, price=fill.price,
                   expected_price=fill.expected_price, charges=fill.charges, order_type=str(order_type))

    @property
    def slippage_paise(self) -> int:
        """Per unit; positive means the fill was worse than expected (as ``Fill.slippage_paise``)."""
        return (self.price - self.expected_price) * self.side.sign

    @property
    def slippage_bps(self) -> float | None:
        """``slippage_paise / expected_price × 10 000``; ``None`` when there was no expected price (≤ 0)."""
        if self.expected_price <= 0:
            return None
        return self.slippage_paise * 10_000 / self.expected_price


# --- slippage --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlippageStats:
    """Per-fill slippage in bps (positive = worse than expected), each fill counted once whatever its size."""

    fills: int
    mean_bps: float | None
    median_bps: float | None
    p90_bps: float | None  # linear interpolation between closest ranks (numpy's default "linear")
    worst_bps: float | None
    cost_paise: int  # Σ slippage_paise × quantity: what slippage cost in money (negative = it paid)


@dataclass(frozen=True, slots=True)
class SlippageReport:
    overall: SlippageStats
    by_order_type: Mapping[str, SlippageStats]
    by_ist_hour: Mapping[int, SlippageStats]  # hour of the fill's IST wall clock, 0–23


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean, summed exactly (``math.fsum``); ``values`` must not be empty."""
    return math.fsum(values) / len(values)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0 ≤ q ≤ 1) with linear interpolation: position ``(n − 1)·q`` in the sorted values."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def slippage_stats(fills: Sequence[FillRecord]) -> SlippageStats:
    """Statistics of the fills that had an expected price (the others are left out of bps, not of the cost)."""
    bps = [b for b in (f.slippage_bps for f in fills) if b is not None]
    cost = sum(f.slippage_paise * f.quantity for f in fills if f.expected_price > 0)
    if not bps:
        return SlippageStats(0, None, None, None, None, cost)
    return SlippageStats(fills=len(bps), mean_bps=mean(bps), median_bps=percentile(bps, 0.5),
                         p90_bps=percentile(bps, 0.9), worst_bps=max(bps), cost_paise=cost)


def ist_hour(ts_ns: int) -> int:
    return datetime.fromtimestamp(ts_ns // _NS_PER_SECOND, tz=IST).hour


def slippage_report(fills: Sequence[FillRecord]) -> SlippageReport:
    by_type: dict[str, list[FillRecord]] = defaultdict(list)
    by_hour: dict[int, list[FillRecord]] = defaultdict(list)
    for fill in fills:
        by_type[fill.order_type].append(fill)
        by_hour[ist_hour(fill.ts_ns)].append(fill)
    return SlippageReport(
        overall=slippage_stats(fills),
        by_order_type={k: slippage_stats(v) for k, v in sorted(by_type.items())},
        by_ist_hour={k: slippage_stats(v) for k, v in sorted(by_hour.items())},
    )


# --- charges ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChargesByKind:
    """Charges of a run by kind (paise), recomputed fill by fill with the rate table of each fill's IST date.

    ``recorded`` is what the run booked (Σ ``FillRecord.charges``); ``unattributed`` = recorded − Σ kinds, 0 when
    the run's charges came from the same table (paper, backtest), the broker's own rounding otherwise (live)."""

    brokerage: int
    stt: int
    exchange_txn: int
    sebi_fee: int
    stamp_duty: int
    gst: int
    recorded: int

    @property
    def total(self) -> int:
        return self.brokerage + self.stt + self.exchange_txn + self.sebi_fee + self.stamp_duty + self.gst

    @property
    def unattributed(self) -> int:
        return self.recorded - self.total

    def as_dict(self) -> dict[str, int]:
        return {kind: int(getattr(self, kind)) for kind in CHARGE_KINDS}


def fill_charge_breakdowns(fills: Sequence[FillRecord]) -> list[ChargeBreakdown]:
    """Each fill's charges by kind, as ``trader.market.charges.option_charges`` computes them: brokerage on the
    first fill (in the given order) of each ``order_id`` only, as Zerodha charges it once per executed order."""
    seen_orders: set[str] = set()
    breakdowns = []
    for fill in fills:
        first = fill.order_id not in seen_orders
        seen_orders.add(fill.order_id)
        breakdowns.append(option_charges(exchange=fill.exchange, side=fill.side, quantity=fill.quantity,
                                         price=fill.price, trade_date=ist_date(fill.ts_ns), include_brokerage=first))
    return breakdowns


def sum_breakdowns(breakdowns: Iterable[ChargeBreakdown]) -> ChargeBreakdown:
    totals = dict.fromkeys(CHARGE_KINDS, 0)
    for breakdown in breakdowns:
        for kind in CHARGE_KINDS:
            totals[kind] += getattr(breakdown, kind)
    return ChargeBreakdown(**totals)


def charges_by_kind(fills: Sequence[FillRecord]) -> ChargesByKind:
    total = sum_breakdowns(fill_charge_breakdowns(fills))
    return ChargesByKind(brokerage=total.brokerage, stt=total.stt, exchange_txn=total.exchange_txn,
                         sebi_fee=total.sebi_fee, stamp_duty=total.stamp_duty, gst=total.gst,
                         recorded=sum(f.charges for f in fills))


# --- exposure --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Exposure:
    """How much of the run the account was in the market, and with how much premium (at cost, paise).

    ``open_premium`` at a moment is Σ over open positions of |cost basis| (what was paid for longs, received for
    shorts), changing only at fills. ``time_in_market`` = time with any open position / (end − start);
    ``average_open_premium`` is time-weighted over [start, end]. A position still open at the end counts to
    ``end_ns``."""

    time_in_market: float | None  # fraction 0–1; None when end ≤ start
    max_open_premium: int
    average_open_premium: float | None
    max_open_positions: int


def exposure(fills: Sequence[FillRecord], start_ns: int, end_ns: int) -> Exposure:
    """Exposure over [start_ns, end_ns] (e.g. the run's first and last event) from fills in time order."""
    quantity: dict[int, int] = {}
    cost: dict[int, int] = {}
    in_market_ns = 0
    premium_ns = 0
    max_premium = 0
    max_positions = 0
    open_premium = 0
    open_positions = 0
    last_ns = start_ns
    previous_fill_ns: int | None = None
    for fill in fills:
        if previous_fill_ns is not None and fill.ts_ns < previous_fill_ns:
            raise ValueError(f"fills out of time order at ts_ns={fill.ts_ns} (after {previous_fill_ns})")
        previous_fill_ns = fill.ts_ns
        ts = min(max(fill.ts_ns, start_ns), end_ns)  # a fill outside the span counts at its edge
        if open_positions:  # (a position bought at a price of 0 is in the market with no premium)
            in_market_ns += ts - last_ns
        premium_ns += open_premium * (ts - last_ns)
        last_ns = ts
        token = fill.instrument_token
        held = quantity.get(token, 0)
        signed = fill.side.sign * fill.quantity
        basis = cost.get(token, 0)
        if held and (held > 0) != (signed > 0):  # reducing (maybe flipping): remove a proportional share of cost
            closing = min(abs(signed), abs(held))
            basis -= basis if closing == abs(held) else basis * closing // abs(held)
            held += (1 if signed > 0 else -1) * closing
            rest = abs(signed) - closing
            if rest:
                held += (1 if signed > 0 else -1) * rest
                basis += (1 if signed > 0 else -1) * rest * fill.price
        else:
            held += signed
            basis += signed * fill.price
        quantity[token] = held
        cost[token] = basis
        open_premium = sum(abs(c) for t, c in cost.items() if quantity[t])
        max_premium = max(max_premium, open_premium)
        open_positions = sum(1 for q in quantity.values() if q)
        max_positions = max(max_positions, open_positions)
    if end_ns > last_ns:
        if open_positions:
            in_market_ns += end_ns - last_ns
        premium_ns += open_premium * (end_ns - last_ns)
    span = end_ns - start_ns
    if span <= 0:
        return Exposure(None, max_premium, None, max_positions)
    return Exposure(time_in_market=in_market_ns / span, max_open_premium=max_premium,
                    average_open_premium=premium_ns / span, max_open_positions=max_positions)
