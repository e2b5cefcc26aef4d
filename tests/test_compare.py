"""``trader compare``: two runs of the same day, matched and explained, the P&L gap attributed (hand-computed)."""

from __future__ import annotations

import dataclasses
import math
import sys
import types
from datetime import date, time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from trader.cli import build_parser
from trader.cli import main as cli_main
from trader.events import Side
from trader.market.calendar import ist_ns
from trader.report.compare import compare_runs, match_nearest, relative_change
from trader.report.compare_html import render_html, write_compare_html
from trader.report.compare_model import DEFAULT_TOLERANCE_NS, Degradation
from trader.report.compare_terminal import show_and_write
from trader.report.compare_text import (
    coverage_notes,
)
from trader.runs.model import (
    DataSource,
    EquityRow,
    FillRow,
    OrderRow,
    RunData,
    RunManifest,
    SignalRow,
    TradeRow,
)

S = 1_000_000_000
MON = date(2026, 11, 23)
CAPITAL = 5_00_000_00  # ₹5,00,000
LOT = 75


def at(hh: int, mm: int, ss: int = 0) -> int:
    return ist_ns(MON, time(hh, mm, ss))


class RunBuilder:
    """Rows of one constructed run; ``round_trip`` writes the signal's entry and exit orders, fills and trade."""

    def __init__(self, run_id: str, mode: str) -> None:
        self.run_id = run_id
        self.mode = mode
        self.signals: list[SignalRow] = []
        self.orders: list[OrderRow] = []
        self.fills: list[FillRow] = []
        self.trades: list[TradeRow] = []
        self._n = 0

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{self.run_id}-{prefix}{self._n}"

    def signal(self, ts: int, direction: str, reason: str = "crossover") -> str:
        signal_id = self._id("S")
        self.signals.append(SignalRow(ts_ns=ts, signal_id=signal_id, strategy_id="ema1", underlying="NIFTY",
                                      direction=direction, confidence=80.0, reason=reason))
        return signal_id

    def order(self, signal_id: str, ts: int, symbol: str, side: Side, expected: int, *, purpose: str = "ENTRY",
              status: str = "COMPLETE", filled: int = LOT, average: int = 0, check: str = "",
              status_reason: str = "") -> OrderRow:
        intent_id = self._id("I")
        row = OrderRow(ts_ns=ts, intent_id=intent_id, strategy_id="ema1", signal_id=signal_id, purpose=purpose,
                       instrument_token=hash(symbol) % 100_000, tradingsymbol=symbol, exchange="NFO", side=side,
                       quantity=LOT, order_type="MARKET", expected_price=expected, limit_price=0, stop_loss_price=0,
                       reason="entry" if purpose == "ENTRY" else "time_exit",
                       order_id="" if check else self._id("O"), status=status, status_ts_ns=ts, filled_quantity=filled,
                       average_price=average, check=check, status_reason=status_reason)
        self.orders.append(row)
        return row

    def fill(self, order: OrderRow, price: int, charges: int) -> None:
        self.fills.append(FillRow(ts_ns=order.ts_ns, fill_id=self._id("F"), intent_id=order.intent_id,
                                  order_id=order.order_id, strategy_id="ema1", purpose=order.purpose,
                                  instrument_token=order.instrument_token, tradingsymbol=order.tradingsymbol,
                                  exchange="NFO", side=order.side, quantity=LOT, price=price,
                                  expected_price=order.expected_price, charges=charges, order_type="MARKET"))

    def round_trip(self, signal_id: str, symbol: str, entry: tuple[int, int, int], exit_: tuple[int, int, int],
                   charges: int) -> TradeRow:
        """entry/exit: (ts, expected price, fill price); a long trade of one lot; charges split entry/exit."""
        entry_order = self.order(signal_id, entry[0], symbol, Side.BUY, entry[1], average=entry[2])
        exit_order = self.order(signal_id, exit_[0], symbol, Side.SELL, exit_[1], purpose="EXIT", average=exit_[2])
        self.fill(entry_order, entry[2], charges // 2)
        self.fill(exit_order, exit_[2], charges - charges // 2)
        gross = (exit_[2] - entry[2]) * LOT
        trade = TradeRow(strategy_id="ema1", signal_id=signal_id, instrument_token=entry_order.instrument_token,
                         tradingsymbol=symbol, direction="long", quantity=LOT, entry_ns=entry[0], exit_ns=exit_[0],
                         entry_price=entry[2], exit_price=exit_[2], gross=gross, charges=charges,
                         net=gross - charges, exit_reason="time_exit", entry_intent_id=entry_order.intent_id,
                         exit_intent_id=exit_order.intent_id)
        self.trades.append(trade)
        return trade

    def build(self) -> RunData:
        equity = []
        total = 0
        for trade in sorted(self.trades, key=lambda t: t.exit_ns):
            total += trade.net
            equity.append(EquityRow(ts_ns=trade.exit_ns, equity=CAPITAL + total, realized=total, unrealized=0,
                                    charges=0, day_pnl=total))
        manifest = RunManifest(run_id=self.run_id, mode=self.mode,  # type: ignore[arg-type]
                               status="complete", initial_capital=CAPITAL, started_ns=at(9, 15), ended_ns=at(15, 30),
                               data=DataSource("ticks"))
        return RunData(manifest=manifest, signals=tuple(self.signals), orders=tuple(self.orders),
                       fills=tuple(sorted(self.fills, key=lambda f: f.ts_ns)), equity=tuple(equity),
                       trades=tuple(self.trades), complete=True)


CE = "NIFTY26DEC24000CE"
PE = "NIFTY26DEC23800PE"
CE2 = "NIFTY26DEC24100CE"


def constructed_pair() -> tuple[RunData, RunData]:
    """A = the backtest, B = the paper run of the same day:

    1. matched: A buys CE at 09:30:00 at ₹100.00 (expected ₹100.00), sells 10:00:00 at ₹120.00, charges ₹50;
       B buys at 09:30:02, expected ₹100.05 (the price moved in 2 s), filled ₹100.15 (2 ticks of slippage), sells
       10:00:01 at ₹120.00, charges ₹60.
    2. missed in B: both signal BEARISH at 11:00; A buys PE ₹80 → ₹70 (a loss, charges ₹40); B's risk gate refuses.
    3. extra in B: both signal BULLISH at 13:00; A's strategy does not trade it, B buys CE2 ₹90 → ₹95 (charges ₹45).
    4. late by 10 min: A signals BEARISH at 14:00 and trades PE ₹60 → ₹62 (charges ₹30); B signals at 14:10 and
       trades PE ₹61 → ₹62 (charges ₹30).
    """
    a = RunBuilder("A", "backtest")
    b = RunBuilder("B", "paper")
    s = a.signal(at(9, 30), "BULLISH")
    a.round_trip(s, CE, (at(9, 30), 100_00, 100_00), (at(10, 0), 120_00, 120_00), 50_00)
    s = b.signal(at(9, 30, 2), "BULLISH")
    b.round_trip(s, CE, (at(9, 30, 2), 100_05, 100_15), (at(10, 0, 1), 120_00, 120_00), 60_00)

    s = a.signal(at(11, 0), "BEARISH")
    a.round_trip(s, PE, (at(11, 0), 80_00, 80_00), (at(11, 30), 70_00, 70_00), 40_00)
    s = b.signal(at(11, 0), "BEARISH")
    b.order(s, at(11, 0), PE, Side.BUY, 80_00, status="REJECTED", filled=0, check="max_premium_at_risk",
            status_reason="premium at risk ₹6,000 > ₹5,000")

    a.signal(at(13, 0), "BULLISH", reason="crossover (not traded: <script>alert(1)</script> outside the window)")
    s = b.signal(at(13, 0, 1), "BULLISH")
    b.round_trip(s, CE2, (at(13, 0, 1), 90_00, 90_00), (at(13, 20), 95_00, 95_00), 45_00)

    s = a.signal(at(14, 0), "BEARISH")
    a.round_trip(s, PE, (at(14, 0), 60_00, 60_00), (at(14, 15), 62_00, 62_00), 30_00)
    s = b.signal(at(14, 10), "BEARISH")
    b.round_trip(s, PE, (at(14, 10), 61_00, 61_00), (at(14, 15), 62_00, 62_00), 30_00)
    return a.build(), b.build()


# --- the constructed pair ------------------------------------------------------------------------------------------


def test_nets_of_the_constructed_runs() -> None:
    a, b = constructed_pair()
    # A: (120−100)×75 − 50 = 1,450; (70−80)×75 − 40 = −790; (62−60)×75 − 30 = 120  → ₹780
    assert [t.net for t in a.trades] == [145_000, -79_000, 12_000]
    # B: (120−100.15)×75 − 60 = 1,428.75; (95−90)×75 − 45 = 330; (62−61)×75 − 30 = 45  → ₹1,803.75
    assert [t.net for t in b.trades] == [142_875, 33_000, 4_500]


def test_matched_trade_differences() -> None:
    comparison = compare_runs(*constructed_pair())
    assert len(comparison.trades) == 1
    m = comparison.trades[0]
    assert (m.reference.tradingsymbol, m.candidate.tradingsymbol) == (CE, CE)
    assert (m.entry_diff_s, m.exit_diff_s) == (2.0, 1.0)
    assert m.entry_price_diff == 15  # ₹100.15 − ₹100.00
    assert m.entry_price_diff_bps == pytest.approx(15.0)  # 15 / 10 000 × 10 000
    assert (m.exit_price_diff, m.exit_price_diff_bps) == (0, 0.0)
    assert m.net_diff == 142_875 - 145_000 == -2_125
    assert m.slippage == -750  # B's 2 ticks (10 paise) × 75 worse than expected; A had none
    assert m.charges == -1_000  # ₹60 − ₹50
    assert m.latency_price == -375  # the expected price moved 5 paise in 2 s: × 75
    assert m.slippage + m.charges + m.latency_price == m.net_diff


def test_attribution_sums_exactly_to_the_gap() -> None:
    att = compare_runs(*constructed_pair()).attribution
    assert att.gap == 180_375 - 78_000 == 102_375
    assert att.slippage == -750
    assert att.charges == -1_000
    assert att.latency_price == -375
    assert att.missed == 79_000 - 12_000  # the refused loser (−₹790) and the late winner (₹120), negated
    assert att.extra == 33_000 + 4_500
    assert att.residual == 0
    assert sum(v for _, v in att.parts()) == att.gap
    assert att.missed_by_category == {"risk_refusal": 79_000, "missing_signal": -12_000}
    assert att.extra_by_category == {"not_traded": 33_000, "extra_signal": 4_500}


def test_unmatched_trades_and_why() -> None:
    comparison = compare_runs(*constructed_pair())
    rows = [(u.run, u.category, u.what, u.net) for u in comparison.unmatched_trades]
    assert rows == [
        ("reference", "risk_refusal", f"{PE} long ×75", -79_000),
        ("candidate", "not_traded", f"{CE2} long ×75", 33_000),
        ("reference", "missing_signal", f"{PE} long ×75", 12_000),
        ("candidate", "extra_signal", f"{PE} long ×75", 4_500),
    ]
    refused, not_traded, missing, extra = comparison.unmatched_trades
    assert "max_premium_at_risk" in refused.detail and "₹6,000 > ₹5,000" in refused.detail
    assert "not traded: <script>" in not_traded.detail and not_traded.detail.startswith("in run A: signal A-S")
    assert refused.detail.startswith("in run B: risk check")
    assert "in run B is +600 s away" in missing.detail  # B's signal of that kind came 10 min later
    assert "-600 s" in extra.detail


def test_signals_matched_and_late_one_unmatched() -> None:
    comparison = compare_runs(*constructed_pair())
    assert [s.offset_s for s in comparison.signals] == [2.0, 0.0, 1.0]
    assert [(u.run, u.category, u.ts_ns) for u in comparison.unmatched_signals] == [
        ("reference", "missing_signal", at(14, 0)), ("candidate", "extra_signal", at(14, 10))]
    # with a tolerance of 10 minutes the late signal matches, and so do its trades (the gap is then latency)
    wide = compare_runs(*constructed_pair(), tolerance_ns=600 * S)
    assert not wide.unmatched_signals
    assert len(wide.trades) == 2
    late = wide.trades[1]
    assert (late.entry_diff_s, late.net_diff, late.latency_price) == (600.0, -7_500, -7_500)
    assert wide.attribution.residual == 0 and wide.attribution.gap == 102_375


def test_degradation_and_checklist() -> None:
    comparison = compare_runs(*constructed_pair())
    deg = {d.name: d for d in comparison.degradation}
    assert deg["win rate"].reference == pytest.approx(2 / 3) and deg["win rate"].candidate == 1.0
    assert deg["win rate"].change == pytest.approx(0.5)  # (1 − 2/3) / (2/3)
    assert deg["profit factor"].reference == pytest.approx(157_000 / 79_000)
    assert deg["profit factor"].candidate == math.inf and deg["profit factor"].change is None  # no loss in B
    assert deg["Sharpe"].reference is None and deg["Sharpe"].change is None  # one trading day: no Sharpe
    assert deg["Sharpe"].band == "undefined"
    assert deg["net P&L"].change == pytest.approx(102_375 / 78_000)
    assert deg["net P&L"].band == "better than expected"
    item = next(i for i in comparison.checklist.items if i.name == "pnl_vs_backtest")
    assert item.passed is False and item.figure == pytest.approx(1_023.75)


def test_reference_b_swaps_the_roles() -> None:
    a, b = constructed_pair()
    comparison = compare_runs(a, b, reference="b")
    assert (comparison.reference.label, comparison.reference.run_id) == ("B", "B")
    assert comparison.candidate.label == "A"
    assert comparison.attribution.gap == -102_375
    assert comparison.attribution.slippage == 750 and comparison.attribution.charges == 1_000
    assert comparison.attribution.residual == 0
    assert sum(v for _, v in comparison.attribution.parts()) == -102_375


def test_identical_runs_have_no_gap() -> None:
    a, _ = constructed_pair()
    twin = dataclasses.replace(a, manifest=dataclasses.replace(a.manifest, run_id="A2", mode="paper"))
    comparison = compare_runs(a, twin)
    assert len(comparison.trades) == len(a.trades) and not comparison.unmatched_trades
    assert len(comparison.signals) == len(a.signals) and not comparison.unmatched_signals
    att = comparison.attribution
    assert (att.gap, att.slippage, att.charges, att.latency_price, att.missed, att.extra, att.residual) == (0,) * 7
    assert all(m.net_diff == 0 and m.entry_diff_s == 0 for m in comparison.trades)
    assert {d.name: d.change for d in comparison.degradation} == {
        "win rate": 0.0, "profit factor": 0.0, "Sharpe": None, "net P&L": 0.0}


# --- the parts -----------------------------------------------------------------------------------------------------


def test_relative_change_undefined_cases() -> None:
    assert relative_change(None, 1.0) is None
    assert relative_change(1.0, None) is None
    assert relative_change(0.0, 1.0) is None
    assert relative_change(math.inf, 2.0) is None
    assert relative_change(2.0, math.inf) is None
    assert relative_change(-100.0, -150.0) == pytest.approx(-0.5)  # a loss 50 % deeper
    assert relative_change(2.0, 1.2) == pytest.approx(-0.4)
    assert Degradation("x", 2.0, 1.2, -0.4).band == "within the expected 30–50 %"
    assert Degradation("x", 2.0, 1.5, -0.25).band == "better than expected"
    assert Degradation("x", 2.0, 0.8, -0.6).band == "worse than expected"


def test_match_nearest_greedy_one_to_one() -> None:
    ref = [("k", 100), ("k", 110), ("j", 100)]
    cand = [("k", 108), ("k", 99), ("j", 200), ("k", 300)]
    pairs, ref_only, cand_only = match_nearest(ref, cand, lambda x: x[0], lambda x: x[1], 20)
    # ("k",100) takes 99 (nearest), ("k",110) takes 108; "j" at 200 is beyond the tolerance
    assert pairs == [(("k", 100), ("k", 99)), (("k", 110), ("k", 108))]
    assert ref_only == [("j", 100)]
    assert cand_only == [("j", 200), ("k", 300)]
    assert DEFAULT_TOLERANCE_NS == 300 * S


def test_broker_reject_and_not_filled_explained() -> None:
    a = RunBuilder("A", "backtest")
    b = RunBuilder("B", "live")
    for hh, status, filled, words in ((10, "REJECTED", 0, "margin exceeds"), (11, "OPEN", 0, ""),
                                      (12, "CANCELLED", 0, "")):
        s = a.signal(at(hh, 0), "BULLISH")
        a.round_trip(s, CE, (at(hh, 0), 100_00, 100_00), (at(hh, 10), 101_00, 101_00), 20_00)
        s = b.signal(at(hh, 0), "BULLISH")
        b.order(s, at(hh, 0), CE, Side.BUY, 100_00, status=status, filled=filled, status_reason=words)
    comparison = compare_runs(a.build(), b.build())
    assert [(u.category, u.net) for u in comparison.unmatched_trades] == [
        ("broker_reject", 5_500), ("not_filled", 5_500), ("broker_reject", 5_500)]
    assert "REJECTED: margin exceeds" in comparison.unmatched_trades[0].detail
    assert comparison.attribution.missed == -16_500 and comparison.attribution.residual == 0


def test_latency_when_the_matched_signal_traded_another_contract() -> None:
    a = RunBuilder("A", "backtest")
    b = RunBuilder("B", "paper")
    s = a.signal(at(10, 0), "BULLISH")
    a.round_trip(s, CE, (at(10, 0), 100_00, 100_00), (at(10, 10), 101_00, 101_00), 20_00)
    s = b.signal(at(10, 0, 3), "BULLISH")
    b.round_trip(s, CE2, (at(10, 0, 3), 50_00, 50_00), (at(10, 10), 51_00, 51_00), 20_00)
    comparison = compare_runs(a.build(), b.build())
    assert [u.category for u in comparison.unmatched_trades] == ["latency", "latency"]
    assert CE2 in comparison.unmatched_trades[0].detail


class _Tables(HTMLParser):
    """Collects the tables' cell texts, the script tags and the ids."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.tables = 0
        self.scripts = 0
        self.svgs = 0
        self._in_cell = False
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables += 1
        elif tag == "script":
            self.scripts += 1
        elif tag == "svg":
            self.svgs += 1
        elif tag in ("td", "th"):
            self._in_cell = True
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._in_cell:
            self.cells.append("".join(self._text).strip())
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self._text.append(data)


def test_html_page_has_the_tables_numbers_and_escapes_run_text(tmp_path: Path) -> None:
    comparison = compare_runs(*constructed_pair())
    path = write_compare_html(comparison, tmp_path / "out")
    assert path.parent == tmp_path / "out" and path.name == "compare-B-vs-A.html"
    page = path.read_text(encoding="utf-8")
    parsed = _Tables()
    parsed.feed(page)
    assert parsed.scripts == 0  # the <script> in a signal's reason stays text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert parsed.tables >= 6 and parsed.svgs == 1
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched
    cells = parsed.cells
    # the attribution (₹): gap, then each part
    gap = cells.index("P&L gap (candidate − reference)")
    assert cells[gap + 1] == "+₹1,023.75"
    for name, value in (("slippage", "-₹7.50"), ("charges", "-₹10.00"), ("latency and price", "-₹3.75"),
                        ("missed trades", "+₹670.00"), ("extra trades", "+₹375.00"), ("residual", "₹0.00")):
        assert cells[cells.index(name, gap) + 1] == value
    # the matched trade's differences
    assert "+2 s" in cells and "+15 p (+15.0 bps)" in cells and "-₹21.25" in cells
    # the degradation rows
    win = cells.index("win rate")
    assert cells[win + 1: win + 5] == ["66.7%", "100.0%", "+50.0%", "better than expected"]
    pf = cells.index("profit factor")
    assert cells[pf + 1: pf + 5] == ["1.99", "∞", "—", "undefined"]
    # the unmatched trades and their reasons
    assert "risk_refusal" in cells and "not_traded" in cells and "missing_signal" in cells
    assert any("max_premium_at_risk" in c for c in cells)
    assert any(c.startswith("A only") for c in cells) and any(c.startswith("B only") for c in cells)


def test_html_without_trades_says_so() -> None:
    empty = RunBuilder("E", "backtest").build()
    page = render_html(compare_runs(empty, empty))
    assert "No closed trades in either run" in page and "no trade found in both runs" in page
    parsed = _Tables()
    parsed.feed(page)
    assert parsed.svgs == 0 and parsed.tables >= 6


def test_terminal_output_and_page_from_two_runs(tmp_path: Path) -> None:
    console = Console(record=True, width=220, color_system=None)
    a, b = constructed_pair()
    path = show_and_write(a, b, out_dir=tmp_path, tolerance_s=300, console=console)
    text = console.export_text()
    assert path.is_file() and f"HTML: {path}" in text
    assert "Reality check: B B (paper) vs reference A A (backtest)" in text
    for figure in ("+₹1,023.75", "-₹7.50", "-₹10.00", "-₹3.75", "+₹670.00", "+₹375.00", "+50.0%",
                   "+15 p (+15.0 bps)", "risk_refusal", "premium at risk ₹6,000 > ₹5,000", "<script>alert(1)</script>",
                   "FAIL  live net P&L ≈ backtest net P&L"):
        assert figure in text, figure
    with pytest.raises(ValueError, match="tolerance"):
        show_and_write(a, b, out_dir=tmp_path, tolerance_s=-1, console=console)


def test_compare_command_line() -> None:
    args = build_parser().parse_args(["compare", "20261123-091500-backtest-abc123", "runs/x", "--tolerance-s", "60",
                                      "--reference", "b", "--out", "reports"])
    assert (args.command, args.run_a, args.run_b) == ("compare", "20261123-091500-backtest-abc123", "runs/x")
    assert (args.tolerance_s, args.reference, args.out) == (60.0, "b", Path("reports"))
    defaults = build_parser().parse_args(["compare", "a", "b"])
    assert (defaults.tolerance_s, defaults.reference, defaults.out, defaults.runs_dir) == (300.0, "a", None, None)


_trade_spec = st.tuples(st.sampled_from([CE, PE, CE2]), st.integers(0, 40), st.integers(1, 30),
                        st.integers(50_00, 150_00), st.integers(-20_00, 20_00), st.integers(0, 60_00),
                        st.integers(0, 20))


def _random_run(run_id: str, specs: list[tuple[str, int, int, int, int, int, int]]) -> RunData:
    run = RunBuilder(run_id, "paper")
    for symbol, start_min, hold_min, price, move, charges, slip in specs:
        entry_ts = at(9, 20) + start_min * 5 * 60 * S
        s = run.signal(entry_ts, "BULLISH" if symbol.endswith("CE") else "BEARISH")
        run.round_trip(s, symbol, (entry_ts, price, price + slip), (entry_ts + hold_min * 60 * S, price + move,
                                                                     price + move), charges)
    return run.build()


@given(st.lists(_trade_spec, max_size=6), st.lists(_trade_spec, max_size=6), st.integers(0, 900))
def test_every_trade_counted_once_and_the_parts_sum_to_the_gap(
        specs_a: list[tuple[str, int, int, int, int, int, int]],
        specs_b: list[tuple[str, int, int, int, int, int, int]], tolerance_s: int) -> None:
    a, b = _random_run("A", specs_a), _random_run("B", specs_b)
    comparison = compare_runs(a, b, tolerance_ns=tolerance_s * S)
    att = comparison.attribution
    assert att.residual == 0
    assert att.slippage + att.charges + att.latency_price + att.missed + att.extra == att.gap
    assert att.gap == sum(t.net for t in b.trades) - sum(t.net for t in a.trades)
    unmatched = comparison.unmatched_trades
    assert len(comparison.trades) + sum(u.run == "reference" for u in unmatched) == len(a.trades)
    assert len(comparison.trades) + sum(u.run == "candidate" for u in unmatched) == len(b.trades)
    assert sum(att.missed_by_category.values()) == att.missed and sum(att.extra_by_category.values()) == att.extra
    assert all(abs(m.entry_diff_s) <= tolerance_s for m in comparison.trades)


def test_partial_fill_noted_and_open_position_outside_the_comparison() -> None:
    a, b = constructed_pair()
    entry = b.orders[0]
    assert entry.purpose == "ENTRY" and entry.tradingsymbol == CE
    b = dataclasses.replace(b, orders=(dataclasses.replace(entry, filled_quantity=50), *b.orders[1:]),
                            equity=(*b.equity, EquityRow(ts_ns=at(15, 29), equity=b.equity[-1].equity + 12_345,
                                                         realized=0, unrealized=12_345, charges=0, day_pnl=0)))
    comparison = compare_runs(a, b)
    assert comparison.trades[0].note == "B: entry filled 50/75"
    assert comparison.reference.equity_change == 78_000 and comparison.reference.outside_round_trips == 0
    assert comparison.candidate.equity_change == 180_375 + 12_345
    assert comparison.candidate.outside_round_trips == 12_345
    (note,) = coverage_notes(comparison)
    assert note.startswith("run B (B): the equity changed by ₹1,927.20 but its round trips net ₹1,803.75; +₹123.45")
    page = render_html(comparison)
    assert "B: entry filled 50/75" in page and "+₹123.45 is outside the comparison" in page
    assert comparison.attribution.residual == 0  # the gap is on round trips; the open position is only noted


def test_match_nearest_tie_goes_to_the_earlier_and_used_ones_are_skipped() -> None:
    ref = [("k", 100), ("k", 101)]
    cand = [("k", 110), ("k", 90)]
    pairs, ref_only, cand_only = match_nearest(ref, cand, lambda x: x[0], lambda x: x[1], 10)
    assert pairs == [(("k", 100), ("k", 90)), (("k", 101), ("k", 110))]  # 90 and 110 tie for 100: the earlier
    assert ref_only == [] and cand_only == []


def test_compare_command_reads_both_runs_and_writes_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The handler around the run store (part RUNS): ``find_run(name, runs_dir)`` then ``load_run(path)``."""
    a, b = constructed_pair()
    folders = {"A": tmp_path / "runs" / "A", "B": tmp_path / "runs" / "B"}
    for folder in folders.values():
        folder.mkdir(parents=True)
    seen: list[tuple[str, Path]] = []

    def find_run(name: str, runs_dir: Path) -> Path:
        seen.append((name, runs_dir))
        if name not in folders:
            raise ValueError(f"no run {name!r} in {runs_dir}")
        return folders[name]

    store = types.ModuleType("trader.runs.store")
    store.find_run = find_run  # type: ignore[attr-defined]
    store.load_run = lambda path: a if path == folders["A"] else b  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "trader.runs.store", store)
    assert cli_main(["compare", "A", "B", "--runs-dir", str(tmp_path / "runs")]) == 0
    assert seen == [("A", tmp_path / "runs"), ("B", tmp_path / "runs")]
    page = folders["B"] / "compare-B-vs-A.html"  # next to the run judged, by default
    assert page.is_file() and "+₹1,023.75" in page.read_text(encoding="utf-8")
    assert "Reality check" in capsys.readouterr().out
    assert cli_main(["compare", "A", "B", "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "o"),
                     "--reference", "b", "--tolerance-s", "600"]) == 0
    assert (tmp_path / "o" / "compare-A-vs-B.html").is_file()
    assert cli_main(["compare", "A", "nope", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "compare: no run 'nope'" in capsys.readouterr().err
    assert cli_main(["compare", "A", "B", "--runs-dir", str(tmp_path), "--tolerance-s", "-5"]) == 2


# --- review (issue #11) --------------------------------------------------------------------------------------------


def test_modelled_option_prices_are_flagged_in_the_comparison(tmp_path: Path) -> None:
    """A backtest on index-only history has modelled option prices: the reality check of a paper run against it is
    against a model, and both the terminal and the page must say so (as the run's own report does)."""
    a, b = constructed_pair()
    note = "Black-76 at a flat 14 % IV <b>"
    a = dataclasses.replace(a, manifest=dataclasses.replace(
        a.manifest, data=DataSource("index_only", modelled_options=True, model_note=note)))
    console = Console(record=True, width=400, color_system=None)
    path = show_and_write(a, b, out_dir=tmp_path, console=console)
    expected = f"run A (A): option prices are modelled from the index: {note}"
    assert expected in console.export_text()
    page = path.read_text(encoding="utf-8")
    assert expected.replace("<b>", "&lt;b&gt;") in page and note not in page
    plain = render_html(compare_runs(*constructed_pair()))
    assert "modelled" not in plain


@pytest.mark.parametrize("tolerance", ["inf", "nan"])
def test_a_tolerance_that_is_not_a_number_of_seconds_is_refused(tolerance: str, tmp_path: Path) -> None:
    """--tolerance-s inf ended in an OverflowError traceback (not the exit 2 of a bad argument)."""
    a, b = constructed_pair()
    with pytest.raises(ValueError, match="tolerance"):
        show_and_write(a, b, out_dir=tmp_path, tolerance_s=float(tolerance), console=Console(file=sys.stderr))


def test_terminal_prints_run_text_as_written_never_as_markup(tmp_path: Path) -> None:
    """The strategy id and the contract of a trade in one run only went to rich as markup: "[/bold]" in either
    crashed `trader compare`, "[red]x" lost its brackets."""
    a, b = constructed_pair()
    missed = dataclasses.replace(a.trades[1], strategy_id="ema[/bold]", tradingsymbol="[red]NIFTYPE")
    a = dataclasses.replace(a, trades=(a.trades[0], missed, *a.trades[2:]))
    console = Console(record=True, width=400, color_system=None)
    show_and_write(a, b, out_dir=tmp_path, console=console)
    text = console.export_text()
    assert "ema[/bold]" in text and "[red]NIFTYPE long ×75" in text
