"""``trader report``: the HTML page (parsed back: the plot data, the tables, no external URL, escaping, banners), the
terminal summary of a hand-made run, the PNG export (kaleido + /usr/bin/chromium, offline) and the CLI handler with
a stand-in run-folder reader."""

from __future__ import annotations

import io
import json
import struct
import sys
import types
from dataclasses import replace
from datetime import date, time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Route, sync_playwright
from rich.console import Console

from trader.cli import build_parser, main
from trader.events import Side
from trader.market.calendar import ist_ns
from trader.report.charts import charts
from trader.report.command import report_command
from trader.report.html import INCOMPLETE_BANNER, MODELLED_BANNER, NO_TRADES, script_json, write_report
from trader.report.png import export_png
from trader.report.summary import view
from trader.report.terminal import print_summary
from trader.runs.model import (
    DataSource,
    EquityRow,
    FillRow,
    RunData,
    RunManifest,
    StrategyRun,
    TradeRow,
)

DAY1 = date(2026, 11, 25)  # a Wednesday
DAY2 = date(2026, 11, 26)
CAPITAL = 10_000_000  # ₹1,00,000 in paise
HOSTILE = "<script>alert('x')</script>"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def at(day: date, hh: int, mm: int) -> int:
    return ist_ns(day, time(hh, mm))


def fill(ts: int, n: int, side: Side, price: int, expected: int, order_type: str, symbol: str = "NIFTY25DEC26000CE",
         quantity: int = 75, charges: int = 4_000) -> FillRow:
    return FillRow(ts_ns=ts, fill_id=f"F{n}", intent_id=f"I{n}", order_id=f"O{n}", strategy_id="ema-1",
                   purpose="entry" if side is Side.BUY else "exit", instrument_token=1001, tradingsymbol=symbol,
                   exchange="NFO", side=side, quantity=quantity, price=price, expected_price=expected,
                   charges=charges, order_type=order_type)


def trade(entry: int, exit_: int, net: int, reason: str, symbol: str = "NIFTY25DEC26000CE") -> TradeRow:
    return TradeRow(strategy_id="ema-1", signal_id="S1", instrument_token=1001, tradingsymbol=symbol,
                    direction="long", quantity=75, entry_ns=entry, exit_ns=exit_, entry_price=10_000,
                    exit_price=10_000 + (net + 8_000) // 75, gross=net + 8_000, charges=8_000, net=net,
                    exit_reason=reason, entry_intent_id="I1", exit_intent_id="I2")


def make_run(*, reason: str = "target", symbol: str = "NIFTY25DEC26000CE", data: DataSource | None = None,
             complete: bool = True, params: dict[str, Any] | None = None) -> RunData:
    """Two IST trading days, three round trips (+₹1,500, −₹500, +₹800 net), six fills (MARKET entries, LIMIT and SL
    exits, in the 09:00, 11:00 and 14:00 hours) and an equity curve closing ₹1,01,000 then ₹1,01,800."""
    manifest = RunManifest(
        run_id="20261125-091500-backtest-abc123", mode="backtest", status="complete" if complete else "running",
        initial_capital=CAPITAL, started_ns=at(DAY1, 9, 15), ended_ns=at(DAY2, 15, 30) if complete else 0,
        venue="replay", fill_model="paper: cross the spread, latency 0 ms",
        strategies=(StrategyRun("ema-1", "ema_crossover_enhanced", params or {"fast": 9, "slow": 21}),),
        underlyings=("NSE:NIFTY50-INDEX",), data=data or DataSource("ticks", path="/data/ticks"),
        code_version="0.1.0")
    fills = (
        fill(at(DAY1, 9, 45), 1, Side.BUY, 10_010, 10_000, "MARKET", symbol),   # +10 bps
        fill(at(DAY1, 11, 5), 2, Side.SELL, 12_000, 12_000, "LIMIT", symbol),   # 0 bps
        fill(at(DAY1, 11, 30), 3, Side.BUY, 20_020, 20_000, "MARKET", symbol),  # +10 bps
        fill(at(DAY1, 14, 0), 4, Side.SELL, 19_300, 19_400, "SL", symbol),      # +51.5 bps
        fill(at(DAY2, 14, 10), 5, Side.BUY, 15_000, 15_015, "MARKET", symbol),  # −9.99 bps
        fill(at(DAY2, 14, 50), 6, Side.SELL, 16_200, 16_200, "LIMIT", symbol),  # 0 bps
    )
    trades = (
        trade(fills[0].ts_ns, fills[1].ts_ns, 150_000, reason, symbol),
        trade(fills[2].ts_ns, fills[3].ts_ns, -50_000, "stop_loss", symbol),
        trade(fills[4].ts_ns, fills[5].ts_ns, 80_000, "time_exit", symbol),
    )
    curve = [(at(DAY1, 9, 30), 10_000_000), (at(DAY1, 11, 10), 10_150_000), (at(DAY1, 14, 5), 10_100_000),
             (at(DAY2, 10, 0), 10_050_000), (at(DAY2, 15, 0), 10_180_000)]
    equity = tuple(EquityRow(ts, eq, realized=eq - CAPITAL, unrealized=0, charges=0, day_pnl=0) for ts, eq in curve)
    return RunData(manifest=manifest, signals=(), orders=(), fills=fills, equity=equity, trades=trades,
                   complete=complete)


def empty_run() -> RunData:
    run = make_run()
    return replace(run, fills=(), trades=(), equity=())


# --- parsing the page back -------------------------------------------------------------------------------------


class Page(HTMLParser):
    """Every element's attributes, the scripts' bodies, the text of each table's cells and the page's text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.ids: dict[str, str] = {}  # element id → its text
        self.text: list[str] = []
        self._script: dict[str, str | None] | None = None
        self._script_body: list[str] = []
        self._table: str | None = None
        self._in_body = False
        self._cell: list[str] | None = None
        self._open_ids: list[tuple[str, str, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.elements.append((tag, a))
        if tag == "script":
            self._script, self._script_body = a, []
        elif tag == "table":
            self._table = a.get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table:
            self.tables[self._table].append([])
        elif tag == "td":
            self._cell = []
        if a.get("id") and tag not in ("script", "table"):
            self._open_ids.append((tag, str(a["id"]), []))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            self.scripts.append((self._script, "".join(self._script_body)))
            self._script = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "td" and self._cell is not None and self._table and self._in_body:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        if self._open_ids and self._open_ids[-1][0] == tag:
            _, ident, parts = self._open_ids.pop()
            self.ids[ident] = "".join(parts)

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script_body.append(data)
            return
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        for _, _, parts in self._open_ids:
            parts.append(data)

    def figures(self) -> dict[str, dict[str, Any]]:
        return {str(a["data-chart"]): json.loads(body) for a, body in self.scripts if a.get("data-chart")}


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunData, Path, Page]:
    run = make_run()
    path = write_report(run, tmp_path_factory.mktemp("report"))
    return run, path, parse(path)


# --- the page --------------------------------------------------------------------------------------------------


def test_page_is_self_contained(report: tuple[RunData, Path, Page]) -> None:
    _, path, page = report
    assert path.name == "report.html"
    for tag, attrs in page.elements:  # nothing is fetched: no script src, no stylesheet, image or frame from afar
        for name in ("src", "href", "data"):
            value = (attrs.get(name) or "").strip().lower()
            assert not value.startswith(("http:", "https:", "//")), (tag, attrs)
        assert not (tag == "script" and attrs.get("src")), attrs
        assert tag not in ("link", "iframe", "img", "object", "embed"), tag
    bundle = [body for attrs, body in page.scripts if not attrs]
    assert any("Plotly" in body and len(body) > 1_000_000 for body in bundle)  # plotly.js inline, whole
    assert path.stat().st_size < 6_000_000


def test_equity_chart_holds_the_recorded_curve(report: tuple[RunData, Path, Page]) -> None:
    run, _, page = report
    figure = page.figures()["chart-equity"]
    equity, drawdown = figure["data"]
    assert equity["y"] == [e.equity / 100 for e in run.equity]
    assert equity["x"] == ["2026-11-25 09:30:00", "2026-11-25 11:10:00", "2026-11-25 14:05:00",
                           "2026-11-26 10:00:00", "2026-11-26 15:00:00"]  # IST wall clock
    assert drawdown["x"] == equity["x"]
    # under the running peak ₹1,01,500: −₹500 (0.4926 %), −₹1,000 (0.9852 %), then a new high
    assert drawdown["y"] == pytest.approx([0.0, 0.0, -50_000 / 10_150_000 * 100, -100_000 / 10_150_000 * 100, 0.0])
    assert figure["layout"]["xaxis"]["matches"] == "x2" or figure["layout"]["xaxis2"].get("matches") == "x"


def test_daily_bars_are_the_metrics_daily_pnl(report: tuple[RunData, Path, Page]) -> None:
    run, _, page = report
    bars = page.figures()["chart-daily_pnl"]["data"][0]
    days = view(run).metrics.days
    assert bars["x"] == [d.day.isoformat() for d in days] == ["2026-11-25", "2026-11-26"]
    assert bars["y"] == [d.pnl / 100 for d in days] == [1_000.0, 800.0]  # closes ₹1,01,000 and ₹1,01,800


def test_charges_and_slippage_charts(report: tuple[RunData, Path, Page]) -> None:
    run, _, page = report
    figures = page.figures()
    metrics = view(run).metrics
    charges = figures["chart-charges"]["data"][0]
    assert charges["x"][:6] == ["brokerage", "STT", "exchange transaction", "SEBI fee", "stamp duty", "GST"]
    assert charges["y"][:6] == [p / 100 for p in metrics.charges.as_dict().values()]
    assert metrics.charges.brokerage == 6 * 2_000  # ₹20 on each of the six orders
    slippage = {trace["name"]: trace for trace in figures["chart-slippage"]["data"]}
    assert slippage["MARKET"]["x"] == pytest.approx([10.0, 10.0, -15 * 10_000 / 15_015])
    assert slippage["LIMIT"]["x"] == [0.0, 0.0]
    assert slippage["SL"]["x"] == pytest.approx([100 * 10_000 / 19_400])
    assert slippage["mean bps"]["x"] == ["09:00", "11:00", "14:00"]
    assert slippage["mean bps"]["y"] == pytest.approx([10.0, 5.0, (100 * 10_000 / 19_400 - 15 * 10_000 / 15_015) / 3])
    exposure = figures["chart-exposure"]["data"]
    assert [t["name"] for t in exposure] == ["NIFTY25DEC26000CE"]
    assert exposure[0]["y"] == [0, 75, 0, 75, 0, 75, 0, 0]  # from the run's start, held to its end
    assert exposure[0]["x"][0] == "2026-11-25 09:15:00" and exposure[0]["x"][-1] == "2026-11-26 15:30:00"
    # the night between the two sessions is cut out of the time axis (14:00 → 14:10 next day, 10 minutes kept)
    assert figures["chart-exposure"]["layout"]["xaxis"]["rangebreaks"] == [
        {"bounds": ["2026-11-25 14:10:00", "2026-11-26 14:00:00"]}]


def test_tables_summary_checklist_trades(report: tuple[RunData, Path, Page]) -> None:
    run, _, page = report
    trades = page.tables["trades"]
    assert len(trades) == len(run.trades)
    assert [row[2] for row in trades] == [t.tradingsymbol for t in run.trades]
    assert [row[11] for row in trades] == ["₹1,500.00", "-₹500.00", "₹800.00"]
    assert [row[12] for row in trades] == ["target", "stop_loss", "time_exit"]
    assert trades[0][5] == "2026-11-25 09:45:00"
    summary = dict((row[0], row[1]) for row in page.tables["summary"])
    assert summary["trades (round trips)"] == "3 (2 won, 1 lost, 0 breakeven)"
    assert summary["win rate"] == "66.7 %"
    assert summary["profit factor"] == "4.60"  # 2,300 / 500
    assert summary["max drawdown"] == "₹1,000.00 (0.99 %)"
    assert summary["max drawdown duration"] == "1d 03:50:00"  # 11:10 day 1 → 15:00 day 2 (recovered)
    checklist = {row[0]: row[2] for row in page.tables["checklist"]}
    assert checklist == {"100+ trades": "fail", "max drawdown < 10%": "pass", "Sharpe > 1.0": "pass",
                         "profit factor > 1.5": "pass",
                         "live net P&L ≈ backtest net P&L (within 30%)": "not evaluated"}
    assert page.ids["verdict"].startswith("FAIL: 3 of 4 evaluated items pass")
    assert "252" in "".join(page.text)  # the annualisation is stated
    provenance = dict((row[0], row[1]) for row in page.tables["provenance"])
    assert provenance["mode"] == "backtest"
    assert provenance["data"] == "ticks /data/ticks"
    assert provenance["option prices"] == "observed"
    assert json.loads(page.tables["strategies"][0][2]) == {"fast": 9, "slow": 21}
    assert "banner-modelled" not in page.ids and "banner-incomplete" not in page.ids


def test_text_from_the_run_is_escaped(tmp_path: Path) -> None:
    symbol = "NIFTY</script><script>alert(2)</script>"
    run = make_run(reason=HOSTILE, symbol=symbol, params={"note": HOSTILE},
                   data=DataSource("ticks", path=f"/data/{HOSTILE}"))
    path = write_report(run, tmp_path / "hostile.html")
    raw = path.read_text(encoding="utf-8")
    page = parse(path)
    # one bundle, one JSON block per chart, the boot script: nothing the run wrote became a script
    assert len(page.scripts) == 1 + len(charts(view(run))) + 1
    assert not any("alert" in body for attrs, body in page.scripts if not attrs.get("data-chart")
                   and len(body) < 10_000)
    assert "<script>alert" not in raw
    assert page.tables["trades"][0][12] == HOSTILE  # shown as written, as text
    assert page.tables["trades"][0][2] == symbol
    assert json.loads(page.tables["strategies"][0][2]) == {"note": HOSTILE}
    assert page.figures()["chart-exposure"]["data"][0]["name"] == symbol  # the JSON reads back whole


def test_script_json_keeps_the_data() -> None:
    text = json.dumps({"a": "</script><!-- & -->"})
    safe = script_json(text)
    assert "<" not in safe and ">" not in safe and "&" not in safe
    assert json.loads(safe) == {"a": "</script><!-- & -->"}


def test_modelled_and_incomplete_banners(tmp_path: Path) -> None:
    data = DataSource("index_only", path="/data/nifty.csv", modelled_options=True,
                      model_note="Black-76 at a flat 14 % IV, expiry from the day's instrument dump")
    page = parse(write_report(make_run(data=data, complete=False), tmp_path))
    assert page.ids["banner-modelled"] == MODELLED_BANNER + data.model_note
    assert page.ids["banner-incomplete"] == INCOMPLETE_BANNER
    provenance = dict((row[0], row[1]) for row in page.tables["provenance"])
    assert provenance["option prices"] == "modelled from the index: " + data.model_note
    assert provenance["ended (IST, event time)"] == "—"


def test_empty_run_still_makes_a_report(tmp_path: Path) -> None:
    path = write_report(empty_run(), tmp_path)
    page = parse(path)
    assert page.ids["no-trades"] == NO_TRADES
    assert "trades" not in page.tables
    figures = page.figures()
    assert set(figures) == {"chart-equity", "chart-daily_pnl", "chart-slippage", "chart-charges", "chart-exposure"}
    assert figures["chart-equity"]["data"][0]["y"] == []
    assert figures["chart-daily_pnl"]["data"][0]["y"] == []
    summary = dict((row[0], row[1]) for row in page.tables["summary"])
    assert summary["trades (round trips)"] == "0 (0 won, 0 lost, 0 breakeven)"
    assert summary["win rate"] == summary["Sharpe"] == summary["profit factor"] == "—"
    checklist = {row[0]: row[2] for row in page.tables["checklist"]}
    assert checklist["100+ trades"] == checklist["Sharpe > 1.0"] == checklist["profit factor > 1.5"] == "fail"


def test_page_renders_in_chromium_with_the_network_cut(report: tuple[RunData, Path, Page]) -> None:
    """The page as a reader opens it: Debian's Chromium, every request that is not the file itself refused; each
    chart is drawn (plotly's SVG inside its div) and no script fails."""
    assert CHROMIUM.exists(), "no /usr/bin/chromium: `make browser` installs Debian's chromium package"
    _, path, page_data = report
    requests: list[str] = []
    problems: list[str] = []

    def refuse(route: Route) -> None:
        requests.append(route.request.url)
        if route.request.url == path.as_uri():
            route.continue_()
        else:
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.route("**/*", refuse)
            tab.on("pageerror", lambda error: problems.append(str(error)))
            tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            tab.goto(path.as_uri())
            for div in page_data.figures():
                tab.wait_for_selector(f"#{div} svg.main-svg", timeout=60_000)
            drawn = tab.evaluate("() => Array.from(document.querySelectorAll('.chart')).map(d => d.data.length)")
        finally:
            browser.close()
    assert problems == []
    assert requests == [path.as_uri()]  # nothing else was even asked for
    assert drawn == [len(f["data"]) for f in page_data.figures().values()]


# --- the terminal ----------------------------------------------------------------------------------------------


def terminal_text(run: RunData) -> str:
    out = io.StringIO()
    print_summary(view(run), Console(file=out, width=200, no_color=True, force_terminal=False, highlight=False))
    return out.getvalue()


def test_terminal_summary_of_a_hand_made_run() -> None:
    text = terminal_text(make_run(reason="[target hit]"))
    assert "\x1b[" not in text  # no colour codes
    lines = [line.strip() for line in text.splitlines()]
    assert any(line.startswith("✗") and "100+ trades" in line and "fail" in line and "3 closed trades" in line
               for line in lines)
    assert any(line.startswith("✓") and "max drawdown < 10%" in line and "0.99 %" in line for line in lines)
    assert any(line.startswith("✓") and "Sharpe > 1.0" in line for line in lines)
    assert any(line.startswith("✓") and "profit factor > 1.5" in line and "4.60" in line for line in lines)
    assert any(line.startswith("–") and "not evaluated" in line for line in lines)
    assert "FAIL: 3 of 4 evaluated items pass" in text
    assert "[target hit]" in text  # a reason is text, not markup
    best_worst = text[text.index("Best and worst trades (of 3"):text.index("Charges by kind")]
    nets = [next(w for w in line.split() if "₹" in w) for line in best_worst.splitlines() if "NIFTY25DEC" in line]
    assert nets == ["₹1,500.00", "₹800.00", "-₹500.00"]  # winners best first, then the losers worst first
    assert "annualised ×√252" in text
    for label in ("brokerage", "STT", "exchange transaction", "SEBI fee", "stamp duty", "GST"):
        assert any(line.startswith(label) for line in lines), label


def test_terminal_summary_of_an_empty_modelled_run() -> None:
    run = replace(empty_run(), manifest=replace(make_run().manifest,
                                                data=DataSource("index_only", modelled_options=True,
                                                                model_note="flat 14 % IV")))
    text = terminal_text(run)
    assert "no trades" in text
    assert "option prices are modelled from the index: flat 14 % IV" in text


# --- PNG export and the command --------------------------------------------------------------------------------


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_report_command_writes_html_and_pngs(tmp_path: Path) -> None:
    assert CHROMIUM.exists(), "no /usr/bin/chromium: `make browser` installs Debian's chromium"
    out = io.StringIO()
    files = report_command(make_run(), tmp_path / "out", png=True,
                           console=Console(file=out, width=200, no_color=True, highlight=False))
    assert files.html == tmp_path / "out" / "report.html" and files.html.is_file()
    assert [p.name for p in files.pngs] == ["equity.png", "daily_pnl.png", "slippage.png", "charges.png",
                                            "exposure.png"]
    assert png_size(files.pngs[0]) == (1200, 560)
    assert all(png_size(p)[0] == 1200 and p.stat().st_size > 10_000 for p in files.pngs)
    assert "FAIL: 3 of 4 evaluated items pass" in out.getvalue()
    assert f"report: {files.html}" in out.getvalue()


def test_png_export_of_an_empty_run(tmp_path: Path) -> None:
    paths = export_png(charts(view(empty_run())), tmp_path)
    assert len(paths) == 5 and all(png_size(p)[0] == 1200 for p in paths)


# --- the CLI handler (the real run-folder reader is another branch's: a stand-in module here) -----------------


def test_cli_report_finds_loads_and_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run()
    folder = tmp_path / "runs" / run.manifest.run_id
    folder.mkdir(parents=True)
    calls: list[tuple[str, object]] = []

    def find_run(name: str, runs_dir: Path) -> Path:
        calls.append(("find", (name, runs_dir)))
        if name != run.manifest.run_id:
            raise FileNotFoundError(f"no run {name!r} in {runs_dir}")
        return folder

    def load_run(path: Path) -> RunData:
        calls.append(("load", path))
        return run

    store = types.ModuleType("trader.runs.store")
    store.find_run = find_run  # type: ignore[attr-defined]
    store.load_run = load_run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "trader.runs.store", store)

    assert main(["report", run.manifest.run_id, "--runs-dir", str(tmp_path / "runs"), "--no-color"]) == 0
    assert calls == [("find", (run.manifest.run_id, tmp_path / "runs")), ("load", folder)]
    assert (folder / "report.html").is_file()  # by default the report goes into the run folder
    captured = capsys.readouterr()
    assert "FAIL: 3 of 4 evaluated items pass" in captured.out and "\x1b[" not in captured.out

    assert main(["report", "nope", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "report: no run 'nope'" in capsys.readouterr().err

    assert main(["report", run.manifest.run_id, "--runs-dir", str(tmp_path / "runs"), "--json"]) == 2
    assert "--json is the running daemon's report" in capsys.readouterr().err

    daemons = build_parser().parse_args(["report", "--json"])  # no RUN: still the operator command (GET /report)
    assert daemons.run is None and daemons.control is not None

    out_dir = tmp_path / "elsewhere"
    assert main(["report", run.manifest.run_id, "--runs-dir", str(tmp_path / "runs"), "--out", str(out_dir)]) == 0
    assert (out_dir / "report.html").is_file()


# --- review (issue #11) ----------------------------------------------------------------------------------------


def _all_evaluated_pass(run: RunData) -> Any:
    from trader.report.checklist import CheckItem, Checklist  # noqa: PLC0415
    from trader.report.summary import RunView  # noqa: PLC0415

    items = (CheckItem("trades", "100+ trades", 120.0, True, "120 closed trades"),
             CheckItem("pnl_vs_backtest", "live ≈ backtest", None, None, "not evaluated"))
    return RunView(run=run, metrics=view(run).metrics, checklist=Checklist(items))


def test_the_verdict_never_says_pass_on_modelled_prices_or_a_run_that_did_not_stop_cleanly() -> None:
    """Every evaluated item passing on a clean run of observed prices is a PASS; the same figures from option prices
    modelled from the index, or from a run rebuilt from its event log (or that ended failed), are not go-live
    evidence: the verdict says FAIL and why."""
    assert _all_evaluated_pass(make_run()).verdict.startswith("PASS: 1 of 1 evaluated items pass")
    modelled = make_run(data=DataSource("index_only", modelled_options=True, model_note="flat 14 % IV"))
    verdict = _all_evaluated_pass(modelled).verdict
    assert verdict.startswith("FAIL: 1 of 1 evaluated items pass") and "option prices are modelled" in verdict
    verdict = _all_evaluated_pass(make_run(complete=False)).verdict
    assert verdict.startswith("FAIL:") and "did not stop cleanly" in verdict
    failed = make_run()
    failed = replace(failed, manifest=replace(failed.manifest, status="failed", stop_reason="crash"))
    verdict = _all_evaluated_pass(failed).verdict
    assert verdict.startswith("FAIL:") and "did not stop cleanly" in verdict


def test_cli_report_out_that_cannot_be_written_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """--out naming an existing file (or a folder that cannot be made) ended in a FileExistsError traceback, exit 1."""
    run = make_run()
    store = types.ModuleType("trader.runs.store")
    store.find_run = lambda name, runs_dir: tmp_path  # type: ignore[attr-defined]
    store.load_run = lambda path: run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "trader.runs.store", store)
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    assert main(["report", "r", "--runs-dir", str(tmp_path), "--out", str(a_file), "--no-color"]) == 2
    assert "report: cannot write the report" in capsys.readouterr().err and a_file.read_text() == "mine"
