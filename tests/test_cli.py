"""The command line as a user runs it: configuration precedence and errors, check-config, SIGTERM."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from trader.cli import main
from trader.config import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG = REPO / "configs" / "paper.toml"

# ``main`` configures logging onto the test's captured stdout, which pytest closes afterwards: restore the set-up,
# or a later module that logs without configuring first writes to a closed file.
pytestmark = pytest.mark.usefixtures("quiet_logs")


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trader.toml"
    path.write_text(text)
    return path


def test_defaults_are_paper_mode_with_the_seed_risk_config(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.mode == "paper"
    assert settings.effective_auto_execution is True
    assert settings.risk.initial_capital == 100_000
    assert settings.risk.max_daily_loss_pct == 0.02
    assert settings.risk.min_margin_buffer == 50_000
    assert settings.symbols == ["NSE:NIFTY50-INDEX"]


def test_precedence_cli_over_env_over_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = write_toml(tmp_path, """
mode = "backtest"
[risk]
initial_capital = 200000
max_daily_loss_pct = 0.03
max_lots_per_trade = 2
[strategy]
confidence_cutoff = 40
[sim]
days = 1
""")
    from_file = load_settings(config_file=config)
    assert (from_file.mode, from_file.risk.initial_capital, from_file.risk.max_lots_per_trade) == (
        "backtest", 200_000, 2)

    clean_env.setenv("TRADER_MODE", "paper")
    clean_env.setenv("TRADER_RISK__INITIAL_CAPITAL", "300000")
    clean_env.setenv("TRADER_STRATEGY__CONFIDENCE_CUTOFF", "45")
    from_env = load_settings(config_file=config)
    assert from_env.mode == "paper"
    assert from_env.risk.initial_capital == 300_000
    assert from_env.risk.max_daily_loss_pct == 0.03  # file value survives where env is silent
    assert from_env.strategy.confidence_cutoff == 45

    from_cli = load_settings({"risk": {"initial_capital": 400_000}, "strategy": {"confidence_cutoff": 60}},
                             config_file=config)
    assert from_cli.risk.initial_capital == 400_000
    assert from_cli.risk.max_lots_per_trade == 2  # nested sections merge across sources
    assert from_cli.strategy.confidence_cutoff == 60


def test_comma_separated_lists_from_env(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TRADER_SYMBOLS", "NSE:NIFTY50-INDEX, BSE:SENSEX-INDEX")
    assert load_settings().symbols == ["NSE:NIFTY50-INDEX", "BSE:SENSEX-INDEX"]


def test_bad_values_name_the_field_and_the_fix(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TRADER_RISK__MAX_DAILY_LOSS_PCT", "2")
    with pytest.raises(ConfigError) as caught:
        load_settings({"mode": "papr", "strategy": {"confidence_cutoff": 150}, "symbols": "NSE:FOO-INDEX"})
    lines = caught.value.lines
    assert len(lines) == 4
    text = "\n".join(lines)
    assert "risk.max_daily_loss_pct" in text and "write 0.02 for 2%" in text
    assert "TRADER_RISK__MAX_DAILY_LOSS_PCT or" in text or "--max-daily-loss or TRADER_RISK__MAX_DAILY_LOSS_PCT" in text
    assert "mode:" in text and "'papr'" in text and "--mode" in text
    assert "strategy.confidence_cutoff" in text and "--confidence-cutoff" in text
    assert "symbols" in text and "NSE:NIFTY50-INDEX" in text


def test_unknown_setting_and_missing_file_are_errors(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"risk\.max_dialy_loss: unknown setting"):
        load_settings(config_file=write_toml(tmp_path, "[risk]\nmax_dialy_loss = 0.02\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_file=tmp_path / "missing.toml")


def test_cli_exits_2_with_one_line_per_problem(clean_env: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--capital", "-5", "--max-daily-loss", "5", "--speed", "-1"])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3
    assert all(line.startswith("config error: ") for line in lines)
    assert any("--capital" in line for line in lines)


def test_live_mode_needs_explicit_confirmation(clean_env: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--mode", "live"]) == 2
    err = capsys.readouterr().err
    assert "TRADER_LIVE_CONFIRM=yes" in err and "TRADER_KITE__API_KEY" in err


def test_check_config_masks_secrets(clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    clean_env.setenv("TRADER_KITE__API_KEY", "kitekey")
    clean_env.setenv("TRADER_KITE__API_SECRET", "s3cr3t-value")
    clean_env.setenv("TRADER_KITE__ACCESS_TOKEN", "tok-value-123")
    assert main(["check-config", "--config", str(EXAMPLE_CONFIG), "--capital", "250000"]) == 0
    out = capsys.readouterr().out
    assert "s3cr3t-value" not in out and "tok-value-123" not in out
    data = json.loads(out)
    assert data["kite"]["api_secret"] == "**********"
    assert data["risk"]["initial_capital"] == 250_000


def test_the_example_config_is_valid(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings(config_file=EXAMPLE_CONFIG)
    assert settings.mode == "paper"


def test_sigterm_stops_the_daemon_gracefully(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADER_")}
    env.update({"TRADER_HEARTBEAT_SECONDS": "0.3", "PYTHONUNBUFFERED": "1",
                "TRADER_CONTROL__PORT": "0"})  # a free port: never the fixed 8780
    # 09:14:30 IST on a trading day at 600x: the session opens within a fraction of a real second.
    command = [sys.executable, "-m", "trader", "run", "--mode", "paper", "--symbols", "NSE:NIFTY50-INDEX",
               "--strategies", "ema_crossover_enhanced", "--capital", "100000", "--max-daily-loss", "0.02",
               "--confidence-cutoff", "50.0", "--auto-execution", "--speed", "600",
               "--start", "2026-11-20T09:14:30"]
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("w") as stderr:  # a file, not a pipe: a chatty stderr can never block the daemon
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=tmp_path, text=True)
    # A thread reads stdout, so that waiting for a line can time out instead of blocking forever.
    received: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            received.put(raw)
        received.put(None)

    reader = threading.Thread(target=pump, name="daemon-stdout", daemon=True)
    reader.start()
    lines: list[dict[str, object]] = []

    def next_line(deadline: float) -> dict[str, object] | None:
        try:
            raw = received.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            pytest.fail(f"no output from the daemon in time; stderr: {stderr_path.read_text()[-2000:]}")
        return None if raw is None else dict(json.loads(raw))  # every line is one JSON object

    try:
        # The condition, not a time: a heartbeat that counted ticks (the daemon is up and the market flows).
        deadline = time.monotonic() + 60
        while not any(line["event"] == "heartbeat" and int(str(line["ticks_in"])) > 0 for line in lines):
            line = next_line(deadline)
            assert line is not None, f"the daemon exited early; stderr: {stderr_path.read_text()[-2000:]}"
            lines.append(line)
        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        while (line := next_line(sent + 10)) is not None:
            lines.append(line)
        assert process.wait(timeout=10) == 0, stderr_path.read_text()
        assert time.monotonic() - sent < 10
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    events = [line["event"] for line in lines]
    # Started at 09:14:30, before the open: the first screen says the clock jumped, and to where.
    assert events[:2] == ["market_closed_jump", "daemon_started"]
    assert lines[0]["to_time"] == "2026-11-20T09:15:00+05:30"
    assert str(lines[1]["session_time"]).startswith("2026-11-20T09:1")  # at 600x the clock runs on meanwhile
    assert "strategy_warming_up" in events
    assert "stop_requested" in events and events[-1] == "summary"
    summary = lines[-1]
    for key in ("trades", "win_rate", "profit_factor", "net_pnl_inr", "max_drawdown_inr"):
        assert key in summary


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"sim": {"chain_interval_ms": 100}}, "chain_interval_ms (100) must be >= tick_interval_ms"),
    ({"sim": {"start": "2024-11-20T09:00"}}, "start in 2025 or later"),
    ({"strategy": {"exit_time": "15:30"}}, "before Zerodha's intraday auto square-off"),
    ({"strategy": {"lots": 3}}, "strategy.lots (3) exceeds risk.max_lots_per_trade (1)"),
    ({"mode": "backtest"}, "backtest mode needs a bounded run"),
    ({"shutdown_timeout_seconds": 30}, "shutdown_timeout_seconds"),
])
def test_settings_that_would_fail_later_are_refused_up_front(
        clean_env: pytest.MonkeyPatch, overrides: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(overrides)
    assert len(caught.value.lines) == 1
    assert expected in caught.value.lines[0]
