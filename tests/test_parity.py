"""The reality check end to end (issue #11, "Done when"): a paper day of the built-in market is recorded (its ticks
and its instruments), backtested from that recording, and compared — through the real CLI commands.

Parity: with the same fill model (the paper broker in both) and nothing conflated (paper on the unpaced clock,
``sim.speed = 0``, delivers every tick as the backtest does), the same ticks give the same signals, the same orders
and the same trades; the comparison finds every trade matched and a gap of exactly zero. A paced paper run on a busy
machine may conflate ticks the backtest then sees, which is what ``trader compare`` exists to show.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from trader import cli
from trader.adapters.replay.sources import ReplayConfig
from trader.app import App
from trader.config import load_settings
from trader.market.calendar import IST
from trader.report.compare import compare_runs
from trader.runs.model import RunData
from trader.runs.store import load_run

START = datetime(2026, 11, 19, 9, 0, tzinfo=IST)  # Thu 19 Nov 2026, a normal session
COMMON: dict[str, Any] = {
    "risk": {"max_risk_per_trade_pct": 0.03},
    "log_level": "WARNING",
    "control": {"port": 0},
}


def signal_keys(run: RunData) -> list[tuple[object, ...]]:
    return [(s.ts_ns, s.strategy_id, s.underlying, s.direction, s.confidence, s.reason) for s in run.signals]


def order_keys(run: RunData) -> list[tuple[object, ...]]:
    return [(o.ts_ns, o.strategy_id, o.tradingsymbol, o.side, o.quantity, o.purpose, o.expected_price, o.status,
             o.filled_quantity, o.average_price) for o in run.orders]


def trade_keys(run: RunData) -> list[tuple[object, ...]]:
    return [(t.strategy_id, t.tradingsymbol, t.direction, t.quantity, t.entry_ns, t.exit_ns, t.entry_price,
             t.exit_price, t.gross, t.charges, t.net, t.exit_reason) for t in run.trades]


@pytest.fixture(scope="module")
def paper_and_backtest(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunData, RunData, Path]:
    root = tmp_path_factory.mktemp("parity")
    sim = {"days": 1, "start": START.isoformat(), "seed": 7, "speed": 0, "chain_interval_ms": 5_000}
    paper = App(load_settings({**COMMON, "mode": "paper", "data_dir": str(root / "paper"), "sim": sim,
                               "recorder": {"max_batches": 1_000}}))
    asyncio.run(paper.run(install_signal_handlers=False))
    assert paper.tick_recorder is not None and paper.tick_recorder.ticks_dropped == 0
    assert paper.run_dir is not None
    day = root / "paper" / "ticks" / "paper" / START.date().isoformat()
    assert (day / "instruments.csv").is_file()
    backtest = App(load_settings({**COMMON, "mode": "backtest", "data_dir": str(root / "backtest"),
                                  "sim": {"days": 1}}), replay=ReplayConfig(data=day))
    asyncio.run(backtest.run(install_signal_handlers=False))
    assert backtest.run_dir is not None
    return load_run(backtest.run_dir), load_run(paper.run_dir), root


def test_the_same_ticks_give_the_same_signals_orders_and_trades(
        paper_and_backtest: tuple[RunData, RunData, Path]) -> None:
    backtest, paper, _ = paper_and_backtest
    assert backtest.complete and paper.complete
    assert (backtest.manifest.mode, paper.manifest.mode) == ("backtest", "paper")
    assert backtest.manifest.data.kind == "ticks" and not backtest.manifest.data.modelled_options
    assert len(paper.signals) >= 2 and len(paper.trades) >= 1  # a day that trades, or parity proves nothing
    assert signal_keys(backtest) == signal_keys(paper)
    assert order_keys(backtest) == order_keys(paper)
    assert trade_keys(backtest) == trade_keys(paper)


def test_the_comparison_matches_every_trade_and_finds_no_gap(paper_and_backtest: tuple[RunData, RunData, Path]) -> None:
    backtest, paper, _ = paper_and_backtest
    comparison = compare_runs(backtest, paper)
    assert len(comparison.trades) == len(paper.trades) and comparison.unmatched_trades == ()
    assert len(comparison.signals) == len(paper.signals) and comparison.unmatched_signals == ()
    assert all((m.entry_diff_s, m.exit_diff_s, m.net_diff) == (0, 0, 0) for m in comparison.trades)
    a = comparison.attribution
    assert (a.gap, a.slippage, a.charges, a.latency_price, a.missed, a.extra, a.residual) == (0,) * 7


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script" and any(name == "src" for name, _ in attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_reality_check_through_the_cli_ends_in_one_html_page(
        paper_and_backtest: tuple[RunData, RunData, Path], capsys: pytest.CaptureFixture[str]) -> None:
    backtest, paper, root = paper_and_backtest
    out = root / "check"
    assert cli.main(["compare", str(root / "backtest" / "runs" / backtest.manifest.run_id),
                     str(root / "paper" / "runs" / paper.manifest.run_id), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert backtest.manifest.run_id in printed and paper.manifest.run_id in printed
    pages = list(out.glob("*.html"))
    assert len(pages) == 1
    parser = _Text()
    parser.feed(pages[0].read_text(encoding="utf-8"))
    text = " ".join(parser.text)
    assert parser.scripts == 0  # nothing fetched: the page opens without a network
    assert paper.trades[0].tradingsymbol in text
    # And each run's own report, by id under its runs directory.
    for name, run in (("backtest", backtest), ("paper", paper)):
        assert cli.main(["report", run.manifest.run_id, "--runs-dir", str(root / name / "runs"),
                         "--out", str(out / name), "--no-color"]) == 0
        assert (out / name / "report.html").is_file()
