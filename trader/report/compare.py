"""The reality check: two runs of the same period side by side (``trader compare RUN_A RUN_B``), pure and synchronous.

Typically A is the backtest of a day and B the paper or live run of the same day; A is the **reference** (the run the
other is judged against) unless ``reference="b"``. Everything here works on ``trader.runs.model.RunData`` only (no
file, clock or network) and reuses the report's metrics (``trader.report.metrics.run_metrics``) and the go-live
checklist (``trader.report.checklist.evaluate_run``) so a figure never means two things.

The rules (``docs/metrics-definitions.md``, "Comparing two runs"):

* **Trades** match on (strategy id, tradingsymbol, direction) and the nearest entry time within ``tolerance_ns``
  (default 5 minutes of event time): the reference's trades are taken in entry-time order and each takes the
  still-unmatched candidate trade of the same key whose entry is nearest (ties: the earlier one), one to one.
* **Signals** match the same way on (strategy id, underlying, direction) and the nearest signal time.
* A trade found in one run only is **explained** from the other run's own records: its signal had no counterpart
  there (``missing_signal`` / ``extra_signal``, with the offset of the nearest signal of the same key), the
  counterpart signal was not traded by the strategy (``not_traded``), its entry was refused by the risk gate
  (``risk_refusal``), rejected or cancelled by the broker (``broker_reject``), never filled (``not_filled``), or it
  was traded but later than the tolerance or on another contract (``latency``); ``other`` when the trade has no
  signal (a manual or adopted position).
* The **P&L gap** (candidate net − reference net, Σ round-trip net P&L in paise) is split exactly into slippage,
  charges, latency and price (the rest of the matched trades' difference), missed trades and extra trades; the
  residual is what is left, 0 by construction (it is computed, not assumed, and tested).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from trader.events import IntentPurpose, OrderStatus
from trader.report.checklist import PnlComparison, evaluate_run
from trader.report.compare_model import (
    DEFAULT_TOLERANCE_NS,
    NS_PER_SECOND,
    Attribution,
    Category,
    Comparison,
    Degradation,
    RunSide,
    SignalMatch,
    TradeMatch,
    Unmatched,
    Which,
)
from trader.report.fill_metrics import slippage_stats
from trader.report.metrics import RunMetrics, run_metrics
from trader.runs.model import FillRow, OrderRow, RunData, SignalRow, TradeRow

# --- the run's metrics -------------------------------------------------------------------------------------------


def metrics_of(run: RunData) -> RunMetrics:
    """``run_metrics`` on what a run folder holds: round-trip nets, the equity curve (+ the final equity), fills."""
    fills = sorted(run.fills, key=lambda f: f.ts_ns)
    return run_metrics(net_pnls=[t.net for t in run.trades], equity_curve=[(e.ts_ns, e.equity) for e in run.equity],
                       fills=[f.record() for f in fills], initial_capital=run.manifest.initial_capital,
                       final_equity=run.final_equity)


def _side(label: str, run: RunData) -> RunSide:
    metrics = metrics_of(run)
    return RunSide(label=label, run_id=run.manifest.run_id, mode=run.manifest.mode, complete=run.complete,
                   metrics=metrics, net_pnl=metrics.trades.net_pnl, started_ns=run.manifest.started_ns,
                   trades=run.trades,
                   equity_change=None if run.final_equity is None else
                   run.final_equity[1] - run.manifest.initial_capital,
                   modelled_options=run.manifest.data.modelled_options, model_note=run.manifest.data.model_note)


# --- matching ----------------------------------------------------------------------------------------------------

T = TypeVar("T")


def match_nearest(reference: Sequence[T], candidate: Sequence[T], key: Callable[[T], Hashable],
                  ts: Callable[[T], int], tolerance_ns: int) -> tuple[list[tuple[T, T]], list[T], list[T]]:
    """Greedy one-to-one matching: the reference's items in time order each take the unmatched candidate item of the
    same key nearest in time, within ``tolerance_ns`` (inclusive; ties go to the earlier candidate). Returns the
    pairs (in the reference's time order), the reference's unmatched items and the candidate's (each in time order)."""
    pool: dict[Hashable, list[int]] = defaultdict(list)  # candidate indexes by key, in time order
    for index in sorted(range(len(candidate)), key=lambda i: ts(candidate[i])):
        pool[key(candidate[index])].append(index)
    times = {k: [ts(candidate[i]) for i in indexes] for k, indexes in pool.items()}
    used: set[int] = set()
    pairs: list[tuple[T, T]] = []
    ref_only: list[T] = []
    for item in sorted(reference, key=ts):
        at_ns = ts(item)
        indexes = pool.get(key(item), [])
        stamps = times.get(key(item), [])
        start = bisect_left(stamps, at_ns)
        left = start - 1  # the nearest unused earlier one (strictly before at_ns)
        while left >= 0 and (indexes[left] in used) and at_ns - stamps[left] <= tolerance_ns:
            left -= 1
        right = start  # the nearest unused one at or after at_ns
        while right < len(indexes) and (indexes[right] in used) and stamps[right] - at_ns <= tolerance_ns:
            right += 1
        options = []
        if left >= 0 and indexes[left] not in used and at_ns - stamps[left] <= tolerance_ns:
            options.append((at_ns - stamps[left], 0, indexes[left]))
        if right < len(indexes) and indexes[right] not in used and stamps[right] - at_ns <= tolerance_ns:
            options.append((stamps[right] - at_ns, 1, indexes[right]))
        if not options:
            ref_only.append(item)
            continue
        best = min(options)[2]  # the nearer; on a tie the earlier (left)
        used.add(best)
        pairs.append((item, candidate[best]))
    cand_only = sorted((c for i, c in enumerate(candidate) if i not in used), key=ts)
    return pairs, ref_only, cand_only


def _trade_key(trade: TradeRow) -> tuple[str, str, str]:
    return trade.strategy_id, trade.tradingsymbol, trade.direction


def _signal_key(signal: SignalRow) -> tuple[str, str, str]:
    return signal.strategy_id, signal.underlying, signal.direction


def trade_fills(run: RunData) -> dict[int, list[FillRow]]:
    """The fills of each trade (by index in ``run.trades``): same strategy and contract, inside [entry, exit]; a fill
    on the boundary of two trades (a flip) goes to the first."""
    by_contract: dict[tuple[str, int], list[FillRow]] = defaultdict(list)
    for fill in sorted(run.fills, key=lambda f: f.ts_ns):
        by_contract[(fill.strategy_id, fill.instrument_token)].append(fill)
    stamps = {k: [f.ts_ns for f in fills] for k, fills in by_contract.items()}
    taken: set[str] = set()
    result: dict[int, list[FillRow]] = {}
    for index in sorted(range(len(run.trades)), key=lambda i: run.trades[i].entry_ns):
        trade = run.trades[index]
        contract = (trade.strategy_id, trade.instrument_token)
        fills, times = by_contract.get(contract, []), stamps.get(contract, [])
        window = fills[bisect_left(times, trade.entry_ns):bisect_right(times, trade.exit_ns)]
        mine = [f for f in window if f.fill_id not in taken]
        taken.update(f.fill_id for f in mine)
        result[index] = mine
    return result


def _bps(diff: int, base: int) -> float | None:
    return diff * 10_000 / base if base > 0 else None


def partial_fills(orders: Mapping[str, OrderRow], trade: TradeRow) -> str:
    """The trade's entry and exit orders (``orders`` by intent id) that filled only in part, as text ("" if none)."""
    notes = []
    for what, intent_id in (("entry", trade.entry_intent_id), ("exit", trade.exit_intent_id)):
        order = orders.get(intent_id)
        if order is not None and 0 < order.filled_quantity < order.quantity:
            notes.append(f"{what} filled {order.filled_quantity}/{order.quantity}")
    return ", ".join(notes)


def _trade_match(ref: TradeRow, cand: TradeRow, ref_slip: int, cand_slip: int, note: str = "") -> TradeMatch:
    net_diff = cand.net - ref.net
    slippage = -(cand_slip - ref_slip)
    charges = -(cand.charges - ref.charges)
    entry_diff = cand.entry_price - ref.entry_price
    exit_diff = cand.exit_price - ref.exit_price
    return TradeMatch(reference=ref, candidate=cand,
                      entry_diff_s=(cand.entry_ns - ref.entry_ns) / NS_PER_SECOND,
                      exit_diff_s=(cand.exit_ns - ref.exit_ns) / NS_PER_SECOND,
                      entry_price_diff=entry_diff, entry_price_diff_bps=_bps(entry_diff, ref.entry_price),
                      exit_price_diff=exit_diff, exit_price_diff_bps=_bps(exit_diff, ref.exit_price),
                      quantity_diff=cand.quantity - ref.quantity, net_diff=net_diff, slippage=slippage,
                      charges=charges, latency_price=net_diff - slippage - charges, note=note)


# --- explaining what is in one run only --------------------------------------------------------------------------


def _seconds(ns: int) -> str:
    return f"{ns / NS_PER_SECOND:+.0f} s"


def _trade_what(trade: TradeRow) -> str:
    return f"{trade.tradingsymbol} {trade.direction} ×{trade.quantity}"


def _signal_what(signal: SignalRow) -> str:
    return f"{signal.underlying} {signal.direction}"


@dataclass(frozen=True, slots=True)
class _Records:
    """One run's rows indexed for the explanations (built once per comparison)."""

    label: str
    signals: Mapping[str, SignalRow]  # by signal id
    signal_times: Mapping[tuple[str, str, str], list[int]]  # by signal key, sorted
    entries: Mapping[str, list[OrderRow]]  # ENTRY orders by signal id, in the run's order
    trades: Mapping[str, list[TradeRow]]  # trades by signal id, by entry time

    @classmethod
    def of(cls, label: str, run: RunData) -> _Records:
        times: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        for signal in run.signals:
            times[_signal_key(signal)].append(signal.ts_ns)
        entries: dict[str, list[OrderRow]] = defaultdict(list)
        for order in run.orders:
            if order.purpose == IntentPurpose.ENTRY.value:
                entries[order.signal_id].append(order)
        trades: dict[str, list[TradeRow]] = defaultdict(list)
        for trade in sorted(run.trades, key=lambda t: t.entry_ns):
            if trade.signal_id:
                trades[trade.signal_id].append(trade)
        return cls(label=label, signals={s.signal_id: s for s in run.signals},
                   signal_times={k: sorted(v) for k, v in times.items()}, entries=dict(entries), trades=dict(trades))

    def nearest_offset(self, signal: SignalRow) -> str:
        stamps = self.signal_times.get(_signal_key(signal), [])
        if not stamps:
            return f"run {self.label} has no signal of that strategy, underlying and direction"
        at = bisect_left(stamps, signal.ts_ns)
        near = [stamps[i] for i in (at - 1, at) if 0 <= i < len(stamps)]
        nearest = min(near, key=lambda t: (abs(t - signal.ts_ns), t))
        return f"the nearest signal of that kind in run {self.label} is {_seconds(nearest - signal.ts_ns)} away"


def _why_not_traded(signal: SignalRow, other: _Records, tolerance_ns: int) -> tuple[Category, str]:
    """Why the other run has no matching trade although it had the matching ``signal``."""
    entries = other.entries.get(signal.signal_id, [])
    if not entries:
        reason = signal.reason
        return "not_traded", f"signal {signal.signal_id} had no order: {reason}" if reason else \
            f"signal {signal.signal_id} had no order"
    refused = [o for o in entries if o.check]
    if refused and not any(o.filled_quantity for o in entries):
        order = refused[0]
        return "risk_refusal", f"risk check {order.check}: {order.status_reason}".rstrip(": ")
    traded = other.trades.get(signal.signal_id, [])
    if traded:
        trade = traded[0]
        return "latency", (f"traded {trade.tradingsymbol} {trade.direction}, entry "
                           f"{_seconds(trade.entry_ns - signal.ts_ns)} after the signal (tolerance "
                           f"{tolerance_ns / NS_PER_SECOND:.0f} s)")
    filled = [o for o in entries if o.filled_quantity]
    if filled:  # filled but no round trip (still open at the end of the run)
        order = filled[0]
        return "not_filled", (f"order {order.order_id or order.intent_id} filled {order.filled_quantity}/"
                              f"{order.quantity} but no closed round trip")
    order = entries[-1]
    if order.status in (OrderStatus.REJECTED.value, OrderStatus.CANCELLED.value):
        words = f": {order.status_reason}" if order.status_reason else ""
        return "broker_reject", f"order {order.order_id or order.intent_id} {order.status}{words}"
    status = order.status or "never sent"
    return "not_filled", f"order {order.order_id or order.intent_id} {status}, filled 0/{order.quantity}"


def _explain_trade(trade: TradeRow, run: Which, *, own: _Records, other: _Records,
                   signal_pairs: Mapping[str, SignalRow], tolerance_ns: int) -> Unmatched:
    own_signal = own.signals.get(trade.signal_id) if trade.signal_id else None
    if own_signal is None:
        category: Category = "other"
        detail = "no signal recorded for this trade (manual or adopted position)"
    else:
        counterpart = signal_pairs.get(own_signal.signal_id)
        if counterpart is None:
            category = "missing_signal" if run == "reference" else "extra_signal"
            detail = f"signal {own_signal.signal_id}: {other.nearest_offset(own_signal)}"
        else:
            category, why = _why_not_traded(counterpart, other, tolerance_ns)
            detail = f"in run {other.label}: {why}"
    return Unmatched(run=run, kind="trade", category=category, strategy_id=trade.strategy_id, ts_ns=trade.entry_ns,
                     what=_trade_what(trade), net=trade.net, detail=detail)


def _explain_signal(signal: SignalRow, run: Which, other: _Records) -> Unmatched:
    return Unmatched(run=run, kind="signal", category="missing_signal" if run == "reference" else "extra_signal",
                     strategy_id=signal.strategy_id, ts_ns=signal.ts_ns, what=_signal_what(signal), net=0,
                     detail=f"{signal.signal_id} ({signal.reason}): {other.nearest_offset(signal)}")


# --- degradation -------------------------------------------------------------------------------------------------


def relative_change(reference: float | None, candidate: float | None) -> float | None:
    """``(candidate − reference) / |reference|``; ``None`` when either is undefined or infinite or reference is 0."""
    if reference is None or candidate is None or reference == 0:
        return None
    if not (math.isfinite(reference) and math.isfinite(candidate)):
        return None
    return (candidate - reference) / abs(reference)


def _degradation(name: str, reference: float | None, candidate: float | None) -> Degradation:
    return Degradation(name, reference, candidate, relative_change(reference, candidate))


# --- everything --------------------------------------------------------------------------------------------------


def compare_runs(a: RunData, b: RunData, *, tolerance_ns: int = DEFAULT_TOLERANCE_NS,
                 reference: Literal["a", "b"] = "a") -> Comparison:
    """Compare run ``b`` with run ``a`` (``reference="a"``, the default: A is the backtest), or ``a`` with ``b``."""
    if tolerance_ns < 0:
        raise ValueError(f"tolerance must be ≥ 0, got {tolerance_ns} ns")
    ref_run, cand_run = (a, b) if reference == "a" else (b, a)
    ref_side = _side("A" if reference == "a" else "B", ref_run)
    cand_side = _side("B" if reference == "a" else "A", cand_run)

    signal_pairs, ref_signals_only, cand_signals_only = match_nearest(
        ref_run.signals, cand_run.signals, _signal_key, lambda s: s.ts_ns, tolerance_ns)
    ref_to_cand = {r.signal_id: c for r, c in signal_pairs}
    cand_to_ref = {c.signal_id: r for r, c in signal_pairs}

    ref_index = {id(t): i for i, t in enumerate(ref_run.trades)}
    cand_index = {id(t): i for i, t in enumerate(cand_run.trades)}
    ref_fills = trade_fills(ref_run)
    cand_fills = trade_fills(cand_run)

    def slip(fills: Mapping[int, list[FillRow]], index: int) -> int:
        return slippage_stats([f.record() for f in fills.get(index, [])]).cost_paise

    trade_pairs, ref_trades_only, cand_trades_only = match_nearest(
        ref_run.trades, cand_run.trades, _trade_key, lambda t: t.entry_ns, tolerance_ns)
    ref_orders = {o.intent_id: o for o in ref_run.orders}
    cand_orders = {o.intent_id: o for o in cand_run.orders}

    def note(r: TradeRow, c: TradeRow) -> str:
        parts = [f"{side.label}: {text}" for side, text in ((ref_side, partial_fills(ref_orders, r)),
                                                             (cand_side, partial_fills(cand_orders, c))) if text]
        return "; ".join(parts)

    matches = [_trade_match(r, c, slip(ref_fills, ref_index[id(r)]), slip(cand_fills, cand_index[id(c)]), note(r, c))
               for r, c in trade_pairs]

    ref_records, cand_records = _Records.of(ref_side.label, ref_run), _Records.of(cand_side.label, cand_run)
    unmatched_trades = sorted(
        [_explain_trade(t, "reference", own=ref_records, other=cand_records, signal_pairs=ref_to_cand,
                        tolerance_ns=tolerance_ns) for t in ref_trades_only]
        + [_explain_trade(t, "candidate", own=cand_records, other=ref_records, signal_pairs=cand_to_ref,
                          tolerance_ns=tolerance_ns) for t in cand_trades_only],
        key=lambda u: (u.ts_ns, u.run))
    unmatched_signals = sorted(
        [_explain_signal(s, "reference", cand_records) for s in ref_signals_only]
        + [_explain_signal(s, "candidate", ref_records) for s in cand_signals_only],
        key=lambda u: (u.ts_ns, u.run))

    missed_by: dict[str, int] = defaultdict(int)
    extra_by: dict[str, int] = defaultdict(int)
    for item in unmatched_trades:
        if item.run == "reference":
            missed_by[item.category] -= item.net
        else:
            extra_by[item.category] += item.net
    gap = cand_side.net_pnl - ref_side.net_pnl
    slippage = sum(m.slippage for m in matches)
    charges = sum(m.charges for m in matches)
    latency_price = sum(m.latency_price for m in matches)
    missed = -sum(t.net for t in ref_trades_only)
    extra = sum(t.net for t in cand_trades_only)
    attribution = Attribution(gap=gap, slippage=slippage, charges=charges, latency_price=latency_price,
                              missed=missed, extra=extra,
                              residual=gap - (slippage + charges + latency_price + missed + extra),
                              missed_by_category=dict(missed_by), extra_by_category=dict(extra_by))

    rt, ct = ref_side.metrics.trades, cand_side.metrics.trades
    degradation = (
        _degradation("win rate", rt.win_rate, ct.win_rate),
        _degradation("profit factor", rt.profit_factor, ct.profit_factor),
        _degradation("Sharpe", ref_side.metrics.sharpe, cand_side.metrics.sharpe),
        _degradation("net P&L", float(rt.net_pnl), float(ct.net_pnl)),
    )
    checklist = evaluate_run(cand_side.metrics, PnlComparison(live_net=cand_side.net_pnl,
                                                              backtest_net=ref_side.net_pnl))
    return Comparison(reference=ref_side, candidate=cand_side, tolerance_ns=tolerance_ns, trades=tuple(matches),
                      signals=tuple(SignalMatch(r, c, (c.ts_ns - r.ts_ns) / NS_PER_SECOND) for r, c in signal_pairs),
                      unmatched_trades=tuple(unmatched_trades), unmatched_signals=tuple(unmatched_signals),
                      degradation=degradation, attribution=attribution, checklist=checklist)
