"""``GET /metrics``: the metrics actor's bookkeeping (plain calls, no event loop), then an in-process paper daemon
scraped over real HTTP with its token and parsed with prometheus_client's own parser (promtool runs on a scrape in
tests/test_metrics_promtool.py): the counters equal the App's own, a refused intent shows under its check, the slippage
and latency histograms got their observations, the gauges equal the portfolio's and the risk gate's figures; and the
Grafana dashboard in configs/ only asks for metrics a real scrape has."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from trader.actors.metrics import (
    MAX_LABEL_VALUES,
    MAX_TRACKED,
    OTHER,
    Histogram,
    MetricsActor,
    latency_scale,
)
from trader.actors.risk import FLATTEN_STRATEGY_ID
from trader.api.system import LiveOptionsTradingSystem
from trader.app import App
from trader.bus import EventBus
from trader.clock import LiveClock, SimClock
from trader.config import load_settings
from trader.control.token import TOKEN_FILE_NAME
from trader.events import (
    ApprovalStatus,
    ApprovalUpdate,
    Direction,
    Fill,
    IntentPurpose,
    OrderIntent,
    OrderRequest,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    Signal,
    Tick,
)
from trader.market.instruments import OptionContract, OptionType
from trader.money import to_rupees

from helpers import captured_logs, wait_for

pytestmark = pytest.mark.usefixtures("clean_env")  # no TRADER_KITE__* from the shell turns on the Kite market

DASHBOARD = Path(__file__).resolve().parent.parent / "configs" / "grafana-dashboard.json"
CONTRACT = OptionContract(exchange="NFO", tradingsymbol="NIFTY26NOV26000CE", underlying="NIFTY",
                          expiry=date(2026, 11, 24), strike=2_600_000, option_type=OptionType.CE, lot_size=65,
                          tick_size=5, instrument_token=1)
T = 1_795_151_700 * 1_000_000_000  # Fri 20 Nov 2026 10:05 IST
MS = 1_000_000
# Fri 20 Nov 2026 10:00 IST: inside the entry window of a normal session.
START = "2026-11-20T10:00:00"
ORDER = {"side": "BUY", "instrument": "NIFTY ATM CE", "lots": 1}


def intent(intent_id: str, strategy: str = "ema", ts_ns: int = T, side: Side = Side.BUY) -> OrderIntent:
    return OrderIntent(ts_ns=ts_ns, intent_id=intent_id, strategy_id=strategy, contract=CONTRACT, side=side,
                       quantity=65, order_type=OrderType.MARKET, purpose=IntentPurpose.ENTRY, expected_price=10_000)


def request(item: OrderIntent) -> OrderRequest:
    return OrderRequest(ts_ns=item.ts_ns, intent=item, tag=item.intent_id)


def update(intent_id: str, status: OrderStatus, *, ts_ns: int = T, order_id: str = "", check: str = "") -> OrderUpdate:
    return OrderUpdate(ts_ns=ts_ns, intent_id=intent_id, order_id=order_id, status=status, check=check)


def fill(fill_id: str, side: Side, price: int, expected: int = 10_000, quantity: int = 65) -> Fill:
    return Fill(ts_ns=T, fill_id=fill_id, intent_id="I1", order_id="O1", contract=CONTRACT, side=side,
                quantity=quantity, price=price, expected_price=expected, charges=2_000,
                purpose=IntentPurpose.ENTRY if side is Side.BUY else IntentPurpose.EXIT)


def actor(scale: float | None = 1e-9) -> MetricsActor:
    return MetricsActor(EventBus(), scale=scale)


# -- bookkeeping, without an event loop ----------------------------------------------------------------------------

def test_the_actor_never_subscribes_to_ticks_so_it_costs_nothing_per_tick() -> None:
    assert Tick not in set(actor().subscriptions())


def test_tick_to_order_runs_from_the_intents_event_time_to_the_first_update_with_the_brokers_order_id() -> None:
    metrics = actor()
    item = intent("I1")
    metrics.record(item)
    metrics.record(request(item))
    metrics.record(update("I1", OrderStatus.OPEN, ts_ns=T + 5 * MS, order_id="O1"))
    metrics.record(update("I1", OrderStatus.COMPLETE, ts_ns=T + 900 * MS, order_id="O1"))  # not a second sample
    assert metrics.tick_to_order.count == 1 and metrics.tick_to_order.total == pytest.approx(0.005)
    assert metrics.tick_to_order.cumulative()[:3] == [("0.001", 0.0), ("0.0025", 0.0), ("0.005", 1.0)]
    assert metrics.approved == 1 and metrics.acknowledged == 1 and metrics.intents.counts == {"ema": 1}
    assert all(h.count == 0 for h in metrics.request_to_order.values())


def test_manual_approved_and_flatten_orders_are_timed_from_their_request_not_as_tick_to_order() -> None:
    metrics = actor()
    manual, flatten, approved = intent("M1", "manual"), intent("F1", FLATTEN_STRATEGY_ID), intent("A1", "ema")
    metrics.record(ApprovalUpdate(ts_ns=T, intent=approved, status=ApprovalStatus.APPROVED, expires_ns=T + 10**9))
    for item in (manual, flatten, approved):
        metrics.record(request(item))
        metrics.record(update(item.intent_id, OrderStatus.OPEN, ts_ns=T + 20 * MS, order_id="O" + item.intent_id))
    assert {origin: h.count for origin, h in metrics.request_to_order.items()} == {
        "manual": 1, "flatten": 1, "approved": 1}
    assert metrics.request_to_order["manual"].total == pytest.approx(0.02)
    assert metrics.tick_to_order.count == 0


def test_an_unpaced_clock_records_no_latency_and_a_paced_one_is_scaled_to_wall_seconds() -> None:
    assert latency_scale(SimClock(T)) is None
    assert latency_scale(SimClock(T, speed=5)) == pytest.approx(1 / 5e9)
    assert latency_scale(LiveClock()) == pytest.approx(1e-9)
    unpaced = actor(scale=None)
    item = intent("I1")
    unpaced.record(request(item))
    unpaced.record(update("I1", OrderStatus.OPEN, ts_ns=T + 5 * MS, order_id="O1"))
    assert unpaced.tick_to_order.count == 0 and unpaced.acknowledged == 1
    paced = actor(scale=latency_scale(SimClock(T, speed=5)))
    paced.record(request(item))
    paced.record(update("I1", OrderStatus.OPEN, ts_ns=T + 50 * MS, order_id="O1"))  # 50 ms of event time at 5x
    assert paced.tick_to_order.total == pytest.approx(0.01)


def test_refusals_count_by_check_broker_rejects_and_unsent_intents_apart() -> None:
    metrics = actor()
    metrics.record(update("R1", OrderStatus.REJECTED, check="lots"))
    metrics.record(update("R2", OrderStatus.REJECTED, check="lots"))
    metrics.record(update("R3", OrderStatus.REJECTED, check="margin_buffer"))
    placed_never = intent("B1")
    metrics.record(request(placed_never))
    metrics.record(update("B1", OrderStatus.REJECTED))  # the execution actor gave up: no order id
    exchange = intent("B2")
    metrics.record(request(exchange))
    metrics.record(update("B2", OrderStatus.REJECTED, order_id="O2"))  # the broker's own rejection
    metrics.record(update("B3", OrderStatus.REJECTED, order_id="O3"))  # an order adopted at a restart
    metrics.record(update("S1", OrderStatus.REJECTED))  # a semi-live entry that expired unanswered
    assert metrics.refused.counts == {"lots": 2, "margin_buffer": 1}
    assert metrics.broker_rejects == 3 and metrics.not_sent == 1 and metrics.approved == 2


def test_fills_and_signed_slippage_by_side_and_a_repeated_fill_counts_once() -> None:
    metrics = actor()
    metrics.record(fill("F1", Side.BUY, 10_100))  # paid 1 % more: +100 bps, worse
    metrics.record(fill("F1", Side.BUY, 10_100))  # the same execution again
    metrics.record(fill("F2", Side.SELL, 9_950))  # got 0.5 % less: +50 bps, worse
    metrics.record(fill("F3", Side.SELL, 10_020))  # got more: −20 bps, better
    assert metrics.fills == {("BUY", "ENTRY"): 1, ("BUY", "EXIT"): 0, ("SELL", "ENTRY"): 0, ("SELL", "EXIT"): 2}
    assert metrics.filled_units == {"BUY": 65, "SELL": 130}
    buy, sell = metrics.slippage["BUY"], metrics.slippage["SELL"]
    assert buy.count == 1 and buy.total == pytest.approx(100.0)
    assert sell.count == 2 and sell.total == pytest.approx(30.0)
    assert dict(sell.cumulative())["-25.0"] == 0 and dict(sell.cumulative())["-10.0"] == 1
    assert dict(sell.cumulative())["50.0"] == 2  # a value on a bound belongs to that bucket (le)
    assert metrics.slippage_paise == 100 * 65 + 50 * 65 - 20 * 65


def test_signals_by_strategy_and_label_values_stay_bounded() -> None:
    metrics = actor()
    for n in range(MAX_LABEL_VALUES + 5):
        metrics.record(Signal(ts_ns=T, signal_id=f"S{n}", strategy_id=f"s{n}", underlying="NIFTY",
                              direction=Direction.BULLISH, confidence=70.0, reason="test"))
    metrics.record(update("R1", OrderStatus.REJECTED, check="a-check-name-never-seen-before"))
    assert len(metrics.signals.counts) == MAX_LABEL_VALUES + 1 and metrics.signals.counts[OTHER] == 5
    assert metrics.signals.total == MAX_LABEL_VALUES + 5


def test_the_waiting_tables_are_bounded() -> None:
    metrics = actor()
    for n in range(MAX_TRACKED + 10):
        metrics.record(request(intent(f"I{n}")))
        metrics.record(fill(f"F{n}", Side.BUY, 10_000))
    assert len(metrics._awaiting) == MAX_TRACKED and len(metrics._seen_fills) == MAX_TRACKED


def test_histogram_bounds_must_increase() -> None:
    with pytest.raises(ValueError, match="increasing"):
        Histogram((1, 1, 2))
    histogram = Histogram((0, 1))
    for value in (-1.0, 0.0, 0.5, 7.0):
        histogram.observe(value)
    assert histogram.cumulative() == [("0.0", 2.0), ("1.0", 3.0), ("+Inf", 4.0)]


# -- a paper daemon scraped over HTTP ------------------------------------------------------------------------------

def settings(data_dir: Path, *, twitchy: bool = False) -> Any:
    if twitchy:
        # A fast market and a strategy that enters every second or so: orders a strategy sent by itself.
        sim = {"start": START, "speed": 100, "seed": 11}
        strategy = {"confidence_cutoff": 0, "bar_seconds": 5, "fast": 2, "slow": 4, "confirm_bars": 1}
    else:
        sim = {"start": START, "speed": 5, "seed": 11}
        strategy = {"confidence_cutoff": 100}  # no strategy entry: the only orders are the test's
    return load_settings({
        "mode": "paper", "data_dir": str(data_dir), "heartbeat_seconds": 0.5, "auto_execution": True,
        "sim": sim, "strategy": strategy, "risk": {"initial_capital": 1_000_000},
        "control": {"order_wait_seconds": 5},
    })


class Scraper:
    def __init__(self, app: App, http: aiohttp.ClientSession, token: str) -> None:
        self.app = app
        self.http = http
        self.token = token

    async def get(self, path: str, token: str | None = None, body: Any = None,
                  method: str = "GET") -> tuple[int, dict[str, str], str]:
        headers = {} if token == "" else {"Authorization": f"Bearer {self.token if token is None else token}"}
        async with self.http.request(method, self.app.control_url + path, headers=headers, json=body) as response:
            return response.status, dict(response.headers), await response.text()

    async def metrics(self) -> dict[str, Any]:
        """Sample name + sorted labels → value, and the families by name, from one scrape."""
        status, headers, text = await self.get("/metrics")
        assert status == 200, text
        assert headers["Content-Type"] == CONTENT_TYPE_LATEST
        samples: dict[str, Any] = {}
        families = {}
        for family in text_string_to_metric_families(text):
            families[family.name] = family
            for sample in family.samples:
                samples[sample.name + _labels(sample.labels)] = sample.value
        return {"samples": samples, "families": families}


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""


@contextlib.asynccontextmanager
async def running(data_dir: Path, *, twitchy: bool = False) -> AsyncIterator[Scraper]:
    app = App(settings(data_dir, twitchy=twitchy))
    task = asyncio.create_task(app.run(install_signal_handlers=False))
    try:
        await wait_for(lambda: bool(app.control_url) or task.done(), within_s=30)
        if task.done():
            task.result()
        await wait_for(lambda: bool(app.strategy.context.quotes), within_s=30)
        token = (data_dir / TOKEN_FILE_NAME).read_text().strip()
        async with aiohttp.ClientSession() as http:
            yield Scraper(app, http, token)
    finally:
        app.request_stop("test over")
        await asyncio.wait_for(task, 30)


async def test_a_scrape_after_paper_fills_equals_the_apps_own_figures(tmp_path: Path) -> None:
    async with running(tmp_path) as daemon:
        app = daemon.app
        with captured_logs() as logs:
            assert (await daemon.get("/metrics", token=""))[0] == 401
            assert (await daemon.get("/metrics", token="not-the-token"))[0] == 401
            assert (await daemon.get("/metrics"))[0] == 200
        # A scrape every few seconds is not worth an info line; a refused one is.
        scrapes = [line["status"] for line in logs if line["event"] == "control_request"]
        assert scrapes == [401, 401]

        status, _, text = await daemon.get("/orders", body={**ORDER, "lots": 50}, method="POST")
        assert status == 409 and json.loads(text)["error"]["check"] == "lots"
        status, _, text = await daemon.get("/orders", body=ORDER, method="POST")
        assert status == 200, text
        await wait_for(lambda: app.portfolio.fills >= 1, within_s=10)
        status, _, text = await daemon.get("/flatten", body={}, method="POST")
        assert status == 200 and json.loads(text)["exits"] == 1, text
        await wait_for(lambda: app.portfolio.fills >= 2 and not app.portfolio.book.open_positions(), within_s=10)
        await wait_for(lambda: app.metrics.inbox.idle and app.execution.open_orders == 0)

        before = app.counters()
        scrape = await daemon.metrics()
        after = app.counters()
        got = scrape["samples"]

        # Counters: the App's own, exactly (ticks keep coming: between the reads before and after the scrape).
        assert before["ticks_in"] <= got["trader_ticks_total"] <= after["ticks_in"]
        assert before["ticks_in"] > 0
        stable = {"approved": "trader_intents_approved_total", "orders": "trader_orders_placed_total",
                  "order_rejected": "trader_order_place_failures_total", "order_retries": "trader_order_retries_total",
                  "actor_restarts": "trader_actor_restarts_total", "dead_letters": "trader_dead_letters_total",
                  "open_orders": "trader_open_orders"}
        for name, metric in stable.items():
            assert before[name] == after[name] == got[metric], name
        assert got["trader_intents_approved_total"] == 2  # the manual buy and the flatten's exit
        assert sum(v for k, v in got.items() if k.startswith("trader_intents_refused_total")) == after["risk_rejected"]
        assert got['trader_intents_refused_total{check="lots"}'] == 1
        assert sum(v for k, v in got.items() if k.startswith("trader_fills_total")) == after["fills"] == 2
        assert got['trader_fills_total{purpose="ENTRY",side="BUY"}'] == 1
        assert got['trader_fills_total{purpose="EXIT",side="SELL"}'] == 1
        assert sum(v for k, v in got.items() if k.startswith("trader_signals_total")) == after["signals"]
        assert got['trader_intents_total{strategy="manual"}'] == 2
        assert got[f'trader_intents_total{{strategy="{FLATTEN_STRATEGY_ID}"}}'] == 1
        assert got["trader_broker_rejects_total"] == 0 and got["trader_ticks_conflated_total"] == app.bus.conflated

        # Slippage: one observation per side, where the ledger says it was.
        for side in ("BUY", "SELL"):
            assert got[f'trader_slippage_bps_bucket{{le="+Inf",side="{side}"}}'] == 1
        buy = next(r for r in app.ledger.recent_orders() if r.intent.side is Side.BUY and r.fills)
        [buy_fill] = buy.fills
        assert got['trader_slippage_bps_mean{side="BUY"}'] == pytest.approx(buy_fill.slippage_bps)
        # Latency: both orders were acknowledged by the paper broker, timed from their requests.
        assert got['trader_request_to_order_seconds_count{origin="manual"}'] == 1
        assert got['trader_request_to_order_seconds_count{origin="flatten"}'] == 1
        assert 0 <= got['trader_request_to_order_seconds_sum{origin="manual"}'] < 5
        assert got["trader_tick_to_order_seconds_count"] == 0

        # Gauges: the portfolio's and the risk gate's figures, in rupees (flat now, so they do not move).
        portfolio = app.portfolio
        assert got["trader_equity_inr"] == to_rupees(portfolio.equity)
        assert got["trader_realized_pnl_inr"] == to_rupees(portfolio.realized)
        assert got["trader_charges_inr"] == to_rupees(portfolio.charges) > 0
        assert got["trader_day_pnl_inr"] == to_rupees(portfolio.day_pnl)
        assert got["trader_unrealized_pnl_inr"] == 0 and got["trader_open_positions"] == 0
        risk = app.risk.manager.metrics(app.clock.now_ns())
        assert got["trader_drawdown_inr"] == to_rupees(risk.drawdown)
        assert got["trader_margin_utilisation_ratio"] == risk.margin_utilisation
        states = {k: v for k, v in got.items() if k.startswith("trader_trading_state")}
        assert states == {f'trader_trading_state{{state="{s}"}}': float(s == app.risk.state.value)
                          for s in ("ACTIVE", "REDUCING_ONLY", "HALTED")}
        assert got[f'trader_risk_level{{level="{app.risk.level.value}"}}'] == 1
        assert sum(v for k, v in got.items() if k.startswith("trader_risk_level")) == 1
        report = app.health.report()
        for check in report.checks:
            assert got[f'trader_health_check_ok{{check="{check.name}"}}'] == float(check.ok)
        assert got["trader_ready"] == 1 and got["trader_pending_approvals"] == 0
        assert 0 <= got["trader_feed_age_seconds"] < 30 and got["trader_loop_lag_seconds"] >= 0

        # No unbounded label: no order id, intent id or tradingsymbol anywhere in the scrape.
        text = (await daemon.get("/metrics"))[2]
        assert buy.intent.contract.tradingsymbol not in text and buy.intent.intent_id not in text
        assert buy.order_id and buy.order_id not in text

        dashboard_names = set(re.findall(r"\btrader_[a-z0-9_]+", json.dumps(_exprs(json.loads(DASHBOARD.read_text())))))
        scraped = _names(scrape["families"])
        assert dashboard_names and dashboard_names <= scraped, sorted(dashboard_names - scraped)


async def test_orders_a_strategy_sends_by_itself_are_timed_tick_to_order(tmp_path: Path) -> None:
    async with running(tmp_path, twitchy=True) as daemon:
        app = daemon.app
        await wait_for(lambda: app.metrics.tick_to_order.count >= 1, within_s=60)
        got = (await daemon.metrics())["samples"]
        count = got["trader_tick_to_order_seconds_count"]
        assert count >= 1 and got['trader_tick_to_order_seconds_bucket{le="+Inf"}'] == count
        assert 0 <= got["trader_tick_to_order_seconds_sum"] / count < 5  # wall seconds on this machine
        assert sum(v for k, v in got.items() if k.startswith("trader_signals_total")) >= 1
        assert got['trader_intents_total{strategy="ema_crossover_enhanced"}'] >= 1


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["definition"])
    return exprs


def _names(families: dict[str, Any]) -> set[str]:
    names = set()
    for family in families.values():
        names.add(family.name)
        if family.type == "counter":  # a labelled counter with no sample yet still names its series so
            names.add(family.name + "_total")
        # Otherwise only what the scrape really has: a histogram with negative buckets has no _count or _sum series.
        names.update(sample.name for sample in family.samples)
    return names


def test_the_dashboard_is_a_grafana_dashboard_on_a_prometheus_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(t["expr"] and t["datasource"] == panel["datasource"] for t in panel["targets"])
    exprs = _exprs(dashboard)
    assert all(e.count("(") == e.count(")") for e in exprs)
    titles = " ".join(p["title"] for p in panels).lower()
    for subject in ("p&l", "equity", "drawdown", "fills", "slippage", "latency", "loop", "feed", "risk level",
                    "trading state"):
        assert subject in titles, subject


def test_each_app_has_its_own_registry_and_the_global_one_stays_empty_of_ours(tmp_path: Path) -> None:
    one, two = App(settings(tmp_path / "a")), App(settings(tmp_path / "b"))
    assert one.metrics_registry is not two.metrics_registry
    for app in (one, two):
        families = {f.name for f in text_string_to_metric_families(generate_latest(app.metrics_registry).decode())}
        assert {"trader_ticks", "trader_equity_inr", "trader_tick_to_order_seconds"} <= families
        assert "trader_feed_age_seconds" not in families  # no tick yet: absent, not a made-up number
    assert not any(name.startswith("trader_") for name in REGISTRY._names_to_collectors)


def test_the_python_facade_reads_the_same_metrics(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    system = LiveOptionsTradingSystem(trading_mode="paper", data_dir=str(tmp_path), start=START, speed=5, seed=11)
    with pytest.raises(RuntimeError, match="not running"):
        system.metrics()
    system.start()
    try:
        families = {f.name: f for f in text_string_to_metric_families(system.metrics())}
        [ready] = families["trader_ready"].samples
        assert ready.value == 1 and "trader_tick_to_order_seconds" in families
    finally:
        system.stop()
