"""Alerts in a running paper daemon (in-process, the built-in market), against a local fake Bot API and a webhook
sink: started / halted / stopped arrive, the run marker tells a crash from a clean stop, Telegram commands act from
the configured chat only, /approve places a pending semi-live entry, and a webhook that never answers delays no
order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import date, time
from pathlib import Path
from time import time_ns
from typing import Any

import pytest

from trader.alerts.runtime import RUN_STATE, AlertRuntime
from trader.app import App
from trader.config import load_settings
from trader.control.requests import ManualOrder
from trader.control.service import ControlService
from trader.events import IntentPurpose, OrderIntent, OrderRequest, OrderType, Side, TradingState
from trader.market.calendar import ist_ns
from trader.market.instruments import OptionContract
from trader.store.journal import Journal
from trader.store.orders import OrderJournal

from alerts_fakes import BOT_TOKEN, CHAT_ID, STRANGER_CHAT_ID, black_hole, fake_bot_api, webhook_sink
from helpers import captured_logs, wait_for

pytestmark = pytest.mark.usefixtures("clean_env")

START = "2026-11-20T10:00:00"  # Fri 20 Nov 2026 10:00 IST, inside the entry window
ORDER = {"side": "BUY", "instrument": "NIFTY ATM CE", "lots": 1}


def settings(data_dir: Path, alerts: dict[str, Any], *, semi_live: bool = False, start: str = START,
             speed: float = 5) -> Any:
    if semi_live:  # a twitchy strategy on a fast market: an entry waits for approval every second or so
        sim = {"start": start, "speed": 100, "seed": 11}
        strategy = {"confidence_cutoff": 0, "bar_seconds": 5, "fast": 2, "slow": 4, "confirm_bars": 1}
    else:
        sim = {"start": start, "speed": speed, "seed": 11}
        strategy = {"confidence_cutoff": 100}  # no strategy entry: the only orders are the test's
    return load_settings({
        "mode": "paper", "data_dir": str(data_dir), "heartbeat_seconds": 0.5, "auto_execution": not semi_live,
        "sim": sim, "strategy": strategy, "risk": {"initial_capital": 1_000_000},
        "control": {"order_wait_seconds": 5, "approval_expiry_seconds": 3_000},
        "alerts": {"retry_base_seconds": 0.05, "timeout_seconds": 5, **alerts},
    })


def telegram(url: str) -> dict[str, Any]:
    return {"telegram_bot_token": BOT_TOKEN, "telegram_chat_id": CHAT_ID, "telegram_api_root": url}


@contextlib.asynccontextmanager
async def running(app: App) -> AsyncIterator[App]:
    task = asyncio.create_task(app.run(install_signal_handlers=False))
    try:
        await wait_for(lambda: app.ready_wall_ns > 0 or task.done(), within_s=30)
        if task.done():
            task.result()
        yield app
    finally:
        app.request_stop("test over")
        await asyncio.wait_for(task, 30)


def kinds(bodies: list[dict[str, Any]]) -> list[str]:
    return [str(b["kind"]) for b in bodies]


def test_no_alerts_without_a_destination_or_in_a_backtest(tmp_path: Path) -> None:
    assert AlertRuntime.build(App(settings(tmp_path / "a", {}))) is None
    backtest = load_settings({"mode": "backtest", "sim": {"days": 1, "start": START},
                              "alerts": {"webhook_url": "http://127.0.0.1:9/x"}})
    assert AlertRuntime.build(App(backtest)) is None


async def test_started_halted_stopped_and_the_crash_marker(tmp_path: Path) -> None:
    async with fake_bot_api() as bot, webhook_sink() as sink:
        alerts = {**telegram(bot.url), "webhook_url": sink.url, "webhook_secret": "hook-secret"}
        async with running(App(settings(tmp_path, alerts))) as app:
            await wait_for(lambda: "started" in kinds(sink.bodies()), within_s=10)
            await wait_for(lambda: any("started" in t for t in bot.texts()), within_s=10)
            assert kinds(sink.bodies())[0] == "started"  # no crash before the first run
            started = sink.bodies()[0]
            assert started["fields"]["mode"] == "paper" and started["fields"]["state"] == "ACTIVE"
            await ControlService(app).halt("a test halt")
            await wait_for(lambda: "halted" in kinds(sink.bodies()), within_s=10)
            [halted] = [b for b in sink.bodies() if b["kind"] == "halted"]
            assert halted["severity"] == "critical" and "a test halt" in halted["text"]
            await wait_for(lambda: any("Trading HALTED: a test halt" in t for t in bot.texts()), within_s=10)
        # The stop flushed "stopped" before run() returned.
        assert kinds(sink.bodies())[-1] == "stopped" and "test over" in sink.bodies()[-1]["text"]
        assert any("stopping (test over)" in t for t in bot.texts())
        journal = Journal(tmp_path / "paper.sqlite3")
        marker = journal.load_state(RUN_STATE)
        assert marker is not None and marker["status"] == "stopped"
        # A run that never reached its clean stop (the process was killed) leaves "running" behind.
        journal.save_state(RUN_STATE, {**marker, "status": "running"}, 0)
        journal.close()
        sink.received.clear()
        async with running(App(settings(tmp_path, alerts))):
            await wait_for(lambda: "started" in kinds(sink.bodies()), within_s=10)
            assert kinds(sink.bodies())[:2] == ["crash_restart", "started"]
            assert "HALTED" in sink.bodies()[1]["text"]  # the operator's halt outlives the restart


async def test_telegram_commands_from_the_configured_chat_only(tmp_path: Path) -> None:
    async with fake_bot_api() as bot:
        with captured_logs() as logs:
            async with running(App(settings(tmp_path, telegram(bot.url)))) as app:
                assert app.alerts is not None
                await wait_for(lambda: app.alerts is not None and app.alerts.commands is not None, within_s=10)
                commands = app.alerts.commands
                assert commands is not None
                bot.command("/halt", chat_id=STRANGER_CHAT_ID, user_id=13)
                await wait_for(lambda: commands.refused == 1, within_s=10)
                assert app.risk.state is TradingState.ACTIVE
                bot.command("/halt lunch")
                await wait_for(lambda: app.risk.state is TradingState.HALTED, within_s=10)
                await wait_for(lambda: any(t.startswith("HALTED.") for t in bot.texts()), within_s=10)
                bot.command("/status")
                await wait_for(lambda: any(t.startswith("paper · trading HALTED") for t in bot.texts()), within_s=10)
                assert "halted from Telegram: lunch" in app.risk.manager.state_reason
                assert all(m["chat_id"] == CHAT_ID for m in bot.sent)
        [refused] = [line for line in logs if line["event"] == "telegram_command_refused"]
        assert (refused["chat_id"], refused["user_id"]) == (STRANGER_CHAT_ID, 13)
        sources = [line["source"] for line in logs if line["event"] == "control_command"]
        assert sources == ["telegram"]


async def test_approve_from_telegram_places_a_pending_semi_live_entry(tmp_path: Path) -> None:
    async with fake_bot_api() as bot:
        async with running(App(settings(tmp_path, telegram(bot.url), semi_live=True))) as app:
            await wait_for(lambda: bool(app.ledger.pending), within_s=60)
            intent_id = next(iter(app.ledger.pending))
            await wait_for(lambda: any(f"/approve {intent_id}" in t for t in bot.texts()), within_s=10)
            bot.command(f"/approve {intent_id}")
            await wait_for(lambda: any("was approved by the risk gate" in t for t in bot.texts()), within_s=15)
            record = app.ledger.order(intent_id)
            assert record is not None and record.tag == intent_id  # the risk gate sent it to execution
            await wait_for(lambda: any(f.intent_id == intent_id for r in app.ledger.orders.values()
                                       for f in r.fills), within_s=15)


async def test_a_webhook_that_never_answers_delays_no_order(tmp_path: Path) -> None:
    async with black_hole() as url:
        with captured_logs() as logs:
            async with running(App(settings(tmp_path, {"webhook_url": url, "timeout_seconds": 30}))) as app:
                assert app.alerts is not None
                [outbox] = app.alerts.outboxes
                await wait_for(lambda: outbox.sending is not None, within_s=10)  # "started" is stuck in the hole
                service = ControlService(app)
                await wait_for(lambda: bool(app.strategy.context.quotes), within_s=30)
                for n in range(4):
                    side = "BUY" if n % 2 == 0 else "SELL"
                    answer = await service.place_order(ManualOrder.model_validate({**ORDER, "side": side}))
                    assert answer["decided"] is True, answer  # the risk gate decided within order_wait_seconds
                    await wait_for(lambda n=n: app.portfolio.fills >= n + 1, within_s=15)  # type: ignore[misc]
                assert outbox.sending is not None and outbox.stats.delivered == 0  # still stuck, all along
        assert app.counters()["orders"] == 4
        [unsent] = [line for line in logs if line["event"] == "alerts_unsent_at_stop"]
        assert unsent["count"] >= 2  # "started" (in the hole) and "stopped" were given up at the stop deadline
        assert "stopped" in unsent["kinds"]


async def test_a_reconciliation_mismatch_starts_halted_and_says_so(tmp_path: Path) -> None:
    # The journal says an order was sent this morning; the paper broker has never heard of it.
    sent_ns = ist_ns(date(2026, 11, 20), time(9, 30))
    intent = OrderIntent(ts_ns=sent_ns, intent_id="E4", strategy_id="ema_crossover_enhanced",
                         contract=OptionContract.parse("NIFTY26DEC26000CE", instrument_token=101), side=Side.BUY,
                         quantity=65, order_type=OrderType.MARKET, purpose=IntentPurpose.ENTRY,
                         expected_price=10_000)
    journal = OrderJournal(Journal(tmp_path / "paper.sqlite3"))
    journal.record_intent(OrderRequest(ts_ns=sent_ns, intent=intent, tag="E4"), sent_ns)
    journal.record_sent("E4", "O4", sent_ns)
    journal.journal.close()
    async with webhook_sink() as sink:
        async with running(App(settings(tmp_path, {"webhook_url": sink.url}))) as app:
            assert app.risk.state is TradingState.HALTED
            await wait_for(lambda: "reconciliation_mismatch" in kinds(sink.bodies()), within_s=10)
            bodies = {b["kind"]: b for b in sink.bodies()}
            assert bodies["started"]["severity"] == "warning" and "HALTED" in bodies["started"]["text"]
            mismatch = bodies["reconciliation_mismatch"]
            assert mismatch["severity"] == "critical" and "order O4 (tag E4)" in mismatch["text"]
            assert "halted" not in bodies  # told once, as the mismatch it is


async def test_feed_silence_as_the_health_probe_sees_it_is_told_once_and_its_return(tmp_path: Path) -> None:
    async with webhook_sink() as sink:
        async with running(App(settings(tmp_path, {"webhook_url": sink.url, "feed_silent_seconds": 60}))) as app:
            runtime = app.alerts
            assert runtime is not None
            await wait_for(lambda: app.health.feed_age_s() is not None, within_s=10)
            later = time_ns() + 120 * 1_000_000_000  # the wall time at which the probe sees the feed 2 minutes old
            runtime.check(later)
            runtime.check(later)
            await wait_for(lambda: "feed_silent" in kinds(sink.bodies()), within_s=10)
            [silent] = [b for b in sink.bodies() if b["kind"] == "feed_silent"]
            assert silent["severity"] == "critical" and "no tick for 12" in silent["text"]
            runtime.check()
            await wait_for(lambda: "feed_back" in kinds(sink.bodies()), within_s=10)
        assert kinds(sink.bodies()).count("feed_silent") == 1


async def test_the_end_of_day_summary_at_the_close_by_event_time(tmp_path: Path) -> None:
    async with webhook_sink() as sink:
        # 90 s of event time before the close (15:40 in Nov 2026) at 100x: the session ends a second into the run.
        config = settings(tmp_path, {"webhook_url": sink.url}, start="2026-11-20T15:38:30", speed=100)
        async with running(App(config)):
            await wait_for(lambda: "eod_summary" in kinds(sink.bodies()), within_s=30)
            [eod] = [b for b in sink.bodies() if b["kind"] == "eod_summary"]
            assert eod["subject"] == "2026-11-20" and eod["fields"]["fills"] == 0
            assert "End of day 2026-11-20: P&L ₹0.00" in eod["text"]
