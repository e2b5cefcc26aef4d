"""The run recorder in a running App: a backtest's run folder against what crossed the bus, a paper run, secrets kept
out of run.json, a record that cannot be written never stopping trading, and a ``kill -9`` mid-run."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from trader.actors.run_recorder import EQUITY_SAMPLE_NS, RunRecorder, _public, public_settings
from trader.app import App, RunResult
from trader.bus import EventBus
from trader.config import load_settings
from trader.events import Direction, Fill, OrderIntent, OrderUpdate, Signal, Tick
from trader.logging import configure_logging
from trader.runs.model import EVENTS, FILLS, MANIFEST, SUMMARY, DataSource, RunData, RunManifest
from trader.runs.store import find_run, load_run

START = "2026-11-20T09:00:00"  # Fri 20 Nov 2026, a normal session (as tests/test_e2e.py)
SIM = {"days": 1, "start": START, "seed": 7, "chain_interval_ms": 5_000}
SECRETS = {"kite": {"api_key": "APIKEY-value-77", "api_secret": "KITE-SECRET-1234567",
                    "access_token": "ACCESS-TOKEN-987654"},
           "control": {"token": "CONTROL-token-0123456789abcdef"},
           "alerts": {"webhook_url": "https://hooks.example.com/services/HOOKPATH-SECRET-555",
                      "webhook_secret": "HOOK-SECRET-42"}}
SECRET_TEXTS = ("APIKEY-value-77", "KITE-SECRET-1234567", "ACCESS-TOKEN-987654", "CONTROL-token-0123456789abcdef",
                "HOOKPATH-SECRET-555", "HOOK-SECRET-42")


@dataclass
class Day:
    app: App
    result: RunResult
    events: list[Any]
    run: RunData


def run_app(settings_data: dict[str, Any]) -> tuple[App, RunResult, list[Any]]:
    configure_logging("WARNING", io.StringIO())
    app = App(load_settings(settings_data))
    events: list[Any] = []
    kept = (Signal, OrderIntent, OrderUpdate, Fill)
    app.bus.tap(lambda e: events.append(e) if isinstance(e, kept) else None)
    result = asyncio.run(app.run(install_signal_handlers=False))
    return app, result, events


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Day:
    data_dir = tmp_path_factory.mktemp("backtest")
    app, result, events = run_app({"mode": "backtest", "data_dir": str(data_dir), "sim": SIM, **SECRETS})
    assert app.run_dir is not None
    return Day(app, result, events, load_run(app.run_dir))


def of(events: list[Any], kind: type) -> list[Any]:
    return [e for e in events if type(e) is kind]


def test_the_backtest_writes_a_complete_run_folder_under_data_dir(day: Day) -> None:
    assert day.app.run_dir is not None
    assert day.app.run_dir.parent == day.app.settings.data_dir / "runs"
    assert find_run("latest", day.app.settings.runs_dir) == day.app.run_dir
    assert day.run.complete and day.run.bad_lines == 0
    manifest = day.run.manifest
    assert manifest.status == "complete" and manifest.mode == "backtest" and manifest.stop_reason == "end of data"
    assert manifest.run_id == day.app.run_dir.name and manifest.run_id.startswith("20261120-0915")
    assert manifest.started_ns < manifest.ended_ns and manifest.wall_started_ns <= manifest.wall_ended_ns
    assert manifest.initial_capital == day.app.portfolio.initial_capital
    assert manifest.venue == "synthetic" and manifest.data.kind == "synthetic"
    assert [(s.strategy_id, s.name) for s in manifest.strategies] == [("ema_crossover_enhanced",
                                                                        "ema_crossover_enhanced")]
    assert manifest.strategies[0].params == {"fast": 9, "slow": 21, "bar_seconds": 60, "confirm_bars": 3}
    assert manifest.underlyings == ("NIFTY",)
    assert manifest.settings["sim"]["seed"] == 7 and manifest.code_version.startswith("0.")
    assert "paper" in manifest.fill_model


def test_its_fills_are_the_fills_on_the_bus(day: Day) -> None:
    on_bus = of(day.events, Fill)
    assert len(on_bus) >= 4
    intents = {i.intent_id: i for i in of(day.events, OrderIntent)}
    assert [(f.fill_id, f.intent_id, f.order_id, f.contract.instrument_token, f.contract.tradingsymbol, f.side,
             f.quantity, f.price, f.expected_price, f.charges, f.ts_ns, f.purpose.value,
             intents[f.intent_id].strategy_id, intents[f.intent_id].order_type.value) for f in on_bus] == [
        (f.fill_id, f.intent_id, f.order_id, f.instrument_token, f.tradingsymbol, f.side, f.quantity, f.price,
         f.expected_price, f.charges, f.ts_ns, f.purpose, f.strategy_id, f.order_type) for f in day.run.fills]


def test_its_signals_and_orders_are_those_on_the_bus_with_their_final_status(day: Day) -> None:
    assert [s.signal_id for s in of(day.events, Signal)] == [s.signal_id for s in day.run.signals]
    final: dict[str, OrderUpdate] = {}
    for update in of(day.events, OrderUpdate):
        if update.intent_id not in final or not final[update.intent_id].status.is_terminal:
            final[update.intent_id] = update
    assert [i.intent_id for i in of(day.events, OrderIntent)] == [o.intent_id for o in day.run.orders]
    for row in day.run.orders:
        update = final[row.intent_id]
        assert (row.status, row.order_id, row.filled_quantity, row.check) == (
            update.status.value, update.order_id, update.filled_quantity, update.check)
        assert update.status.is_terminal


def test_its_trades_and_summary_agree_with_the_portfolio(day: Day) -> None:
    portfolio = day.app.portfolio
    assert len(day.run.trades) == day.result.summary.trades == len(portfolio.trade_pnls) >= 2
    assert [t.net for t in day.run.trades] == portfolio.trade_pnls
    assert sum(t.net for t in day.run.trades) == sum(portfolio.trade_pnls)
    assert all(t.signal_id and t.exit_reason for t in day.run.trades)
    assert day.app.run_dir is not None
    summary = json.loads((day.app.run_dir / SUMMARY).read_text())
    assert summary["trades"] == summary["metrics"]["trades"]["trades"] == day.result.summary.trades
    assert summary["net_pnl"] == day.result.summary.net_pnl
    assert summary["metrics"]["trades"]["wins"] == day.result.summary.wins


def test_its_equity_ends_at_the_final_equity_and_is_sampled_once_a_minute(day: Day) -> None:
    equity = day.run.equity
    assert equity[-1].equity == day.app.portfolio.equity
    assert equity[-1].ts_ns == day.run.manifest.ended_ns
    assert equity[-1].realized == day.app.portfolio.realized and equity[-1].charges == day.app.portfolio.charges
    gaps = [b.ts_ns - a.ts_ns for a, b in itertools.pairwise(equity[:-1])]  # the last row: the final state
    assert gaps and min(gaps) >= EQUITY_SAMPLE_NS
    assert len(equity) > 100  # a session of ~6 hours, one row a minute while the account moves


def test_secrets_never_reach_run_json(day: Day) -> None:
    assert day.app.run_dir is not None
    text = (day.app.run_dir / MANIFEST).read_text()
    for secret in SECRET_TEXTS:
        assert secret not in text
    settings = json.loads(text)["settings"]
    assert "api_secret" not in settings["kite"] and "access_token" not in settings["kite"]
    assert "api_key" not in settings["kite"] and "token" not in settings["control"]
    assert settings["alerts"]["webhook_url"] == "https://hooks.example.com/**********"
    assert "webhook_secret" not in settings["alerts"] and "telegram_bot_token" not in settings["alerts"]
    assert settings["mode"] == "backtest" and settings["sim"]["chain_interval_ms"] == 5_000


def test_public_settings_drops_every_secret_field() -> None:
    settings = load_settings({"mode": "backtest", "sim": SIM, **SECRETS})
    dumped = json.dumps(public_settings(settings))
    for secret in SECRET_TEXTS:
        assert secret not in dumped
    masked_paths = ("https://hooks.example.com/**********", "wss://socket.fyers.in/**********")  # URLs keep their host
    for url in masked_paths:
        dumped = dumped.replace(url, "")
    assert "**********" not in dumped
    assert public_settings(settings)["kite_token_poll_seconds"] == 5.0  # a number named "token" is no secret


def test_a_plugins_secret_that_is_not_text_is_left_out_too() -> None:
    """review2: a strategy's own table (``[strategy.<name>]``, plain data) kept a list or a table under a secret name:
    ``tokens = ["..."]`` or ``credentials = {user, pin}`` reached run.json."""
    params = {"mine": {"tokens": ["TOK-LIST-SECRET"], "credentials": {"user": "u", "pin": "PIN-SECRET-9"},
                       "api_key_id": 77, "lots": 2, "token_refresh_seconds": 5.0}}
    dumped = _public(None, {"strategy": {"params": params}})
    text = json.dumps(dumped)
    assert "TOK-LIST-SECRET" not in text and "PIN-SECRET-9" not in text
    assert dumped["strategy"]["params"]["mine"]["lots"] == 2
    assert dumped["strategy"]["params"]["mine"]["token_refresh_seconds"] == 5.0  # a number named so is kept


def test_the_recorder_never_sees_a_tick(day: Day) -> None:
    recorder = day.app.run_recorder
    assert recorder is not None and Tick not in tuple(recorder.subscriptions())
    assert recorder.rows >= len(day.run.fills) + len(day.run.orders) + len(day.run.signals)


def test_runs_can_be_turned_off(tmp_path: Path) -> None:
    settings = load_settings({"mode": "backtest", "data_dir": str(tmp_path), "sim": SIM, "runs": {"enabled": False}})
    app = App(settings)
    assert app.run_recorder is None and app.run_dir is None


LATE = {**SIM, "start": "2026-11-20T15:00:00"}  # the last minutes of the session: a short run


def test_a_run_folder_that_cannot_be_written_never_stops_trading(tmp_path: Path) -> None:
    blocker = tmp_path / "runs-is-a-file"
    blocker.write_text("not a directory")
    stream = io.StringIO()
    configure_logging("WARNING", stream)
    app = App(load_settings({"mode": "backtest", "data_dir": str(tmp_path), "sim": LATE,
                             "runs": {"dir": str(blocker)}}))
    result = asyncio.run(app.run(install_signal_handlers=False))
    assert app.run_dir is None
    assert result.counters["ticks_in"] > 100 and result.counters["actor_restarts"] == 0
    assert stream.getvalue().count("run_record_failed") == 1


class _FullDisk:
    def write(self, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    def flush(self) -> None: ...

    def close(self) -> None: ...


def _signal(n: int) -> Signal:
    return Signal(ts_ns=n, signal_id=f"S{n}", strategy_id="ema", underlying="NIFTY", direction=Direction.BULLISH,
                  confidence=0.5, reason="test")


def test_a_recorder_whose_disk_fails_mid_run_keeps_handling_events(tmp_path: Path) -> None:
    async def scenario() -> None:
        recorder = RunRecorder(EventBus(), tmp_path, flush_seconds=0.05)
        manifest = RunManifest(run_id="20261120-091500-backtest-abcdef", mode="backtest", status="running",
                               initial_capital=1, started_ns=1)
        assert recorder.begin(manifest) == tmp_path / manifest.run_id
        writer = recorder.writer
        assert writer is not None
        writer._handle.close()
        writer._handle = _FullDisk()
        for n in range(3):
            await recorder.handle(_signal(n))  # never raises
        deadline = time.monotonic() + 5
        while writer.failed is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await recorder.handle(_signal(9))
        assert await recorder.finish(ended_ns=2, wall_ended_ns=2, final=None) is None
        assert writer.dropped == 4

    stream = io.StringIO()
    configure_logging("WARNING", stream)
    asyncio.run(scenario())
    assert stream.getvalue().count("run_record_failed") == 1


def test_a_paper_run_writes_its_folder_too(tmp_path: Path) -> None:
    app, _result, events = run_app({"mode": "paper", "data_dir": str(tmp_path), "sim": {**LATE, "speed": 0}})
    assert app.run_dir is not None and app.run_dir.parent == tmp_path / "runs"
    run = load_run(app.run_dir)
    assert run.complete and run.manifest.mode == "paper" and "-paper-" in run.manifest.run_id
    assert len(run.fills) == len(of(events, Fill))
    assert run.equity[-1].equity == app.portfolio.equity


# --- kill -9 mid-run --------------------------------------------------------------------------------------------


def _fill_lines(events_file: Path) -> int:
    try:
        return events_file.read_bytes().count(b'"kind":"fill"')
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("mode", ["backtest", "paper"])
def test_kill_9_mid_run_leaves_a_readable_run_missing_at_most_the_last_batch(tmp_path: Path, day: Day,
                                                                             mode: str) -> None:
    data_dir = tmp_path / "data"
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRADER_")}
    env.update({"TRADER_MODE": mode, "TRADER_SIM__SPEED": "0", "TRADER_DATA_DIR": str(data_dir),
                "TRADER_SIM__DAYS": "1", "TRADER_SIM__START": START, "TRADER_SIM__SEED": "7",
                "TRADER_SIM__CHAIN_INTERVAL_MS": "5000",
                "TRADER_CONTROL__PORT": "0", "TRADER_LOG_LEVEL": "WARNING"})
    with open(tmp_path / "daemon.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "trader", "run"], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        events_file: Path | None = None
        while events_file is None or _fill_lines(events_file) < 2:
            assert process.poll() is None, (tmp_path / "daemon.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "no fill recorded in time"
            folders = list((data_dir / "runs").glob("*")) if (data_dir / "runs").is_dir() else []
            events_file = folders[0] / EVENTS if folders else None
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    run_dir = events_file.parent
    run = load_run(run_dir)
    assert not run.complete and run.manifest.status == "running" and run.bad_lines <= 1
    assert run.manifest.mode == mode
    assert not (run_dir / FILLS).exists() and not list(run_dir.glob("*.parquet"))
    # The same seed and settings as the fixture's backtest (paper at speed 0 trades the same way on a fresh
    # data_dir): what the killed run kept is a prefix of that run.
    full = [(f.ts_ns, f.tradingsymbol, f.side, f.quantity, f.price, f.charges) for f in day.run.fills]
    kept = [(f.ts_ns, f.tradingsymbol, f.side, f.quantity, f.price, f.charges) for f in run.fills]
    assert 2 <= len(kept) < len(full) and kept == full[:len(kept)]
    assert [s.ts_ns for s in run.signals] == [s.ts_ns for s in day.run.signals][:len(run.signals)]
    assert run.equity and run.equity == day.run.equity[:len(run.equity)]


def test_a_replay_names_its_tick_files_and_a_caller_can_say_what_the_data_was(tmp_path: Path) -> None:
    from test_replay import day_dir, make_ticks, write_parquet  # noqa: PLC0415

    from trader.adapters.replay.sources import ReplayConfig  # noqa: PLC0415

    configure_logging("WARNING", io.StringIO())
    data = day_dir(tmp_path)
    write_parquet(data / "ticks.parquet", make_ticks(seconds=120))
    settings = load_settings({"mode": "backtest", "sim": {"days": 1}, "data_dir": str(tmp_path / "state")})
    app = App(settings, replay=ReplayConfig(data=data))
    asyncio.run(app.run(install_signal_handlers=False))
    assert app.run_dir is not None
    manifest = load_run(app.run_dir).manifest
    assert manifest.venue == "replay"
    assert manifest.data == DataSource("ticks", path=str(data), instruments=str(data / "instruments.csv"))
    told = DataSource("candles", path=str(data / "bars.csv"), modelled_options=True, model_note="iv 13 %",
                      bar_path="O-H-L-C")
    assert App(settings, replay=ReplayConfig(data=data), data_source=told).data_source == told
