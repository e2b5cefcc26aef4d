"""``trader backtest``: the command as a subprocess on a small generated Parquet day, its exit codes, the summary, and
the progress bar (drawn only on a terminal)."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
from datetime import date, time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trader.adapters.replay.sources import ReplayConfig
from trader.backtest import backtest, summary_text, want_progress
from trader.cli import EXIT_CONFIG, build_parser, load, main
from trader.config import ConfigError, load_settings
from trader.logging import configure_logging
from trader.market.calendar import ist_ns

DAY = date(2026, 11, 27)  # a Friday, a trading day
OPEN_NS = ist_ns(DAY, time(9, 15))
SPOT_TOKEN = 256265
OPTIONS = ((12_345_602, "NIFTY26DEC26000CE", 26_000, "CE"), (12_345_858, "NIFTY26DEC26000PE", 26_000, "PE"))
KITE_HEADER = ("instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,"
               "instrument_type,segment,exchange")


@pytest.fixture(autouse=True)
def quiet_logs() -> None:
    configure_logging("WARNING", io.StringIO())


def day_dir(tmp_path: Path, seconds: int = 200) -> Path:
    """instruments.csv + ticks.parquet: the index and two options each second, seeded."""
    data = tmp_path / "data"
    data.mkdir()
    rows = [KITE_HEADER] + [f"{t},{t >> 8},{s},NIFTY,0,2026-12-29,{k},0.05,75,{kind},NFO-OPT,NFO"
                            for t, s, k, kind in OPTIONS]
    (data / "instruments.csv").write_text("\n".join(rows) + "\n")
    rng = random.Random(5)
    ts: list[int] = []
    token: list[int] = []
    last: list[float] = []
    bid: list[float | None] = []
    ask: list[float | None] = []
    spot, premium = 26_000.0, {t: 120.0 for t, _, _, _ in OPTIONS}

    def row(at: int, instrument: int, price: float, best_bid: float | None, best_ask: float | None) -> None:
        ts.append(at)
        token.append(instrument)
        last.append(price)
        bid.append(best_bid)
        ask.append(best_ask)

    for second in range(seconds):
        now = OPEN_NS + second * 1_000_000_000
        spot += rng.choice((-1.0, 0.0, 1.0))
        row(now, SPOT_TOKEN, spot, None, None)
        for t, _, _, _ in OPTIONS:
            premium[t] = max(premium[t] + rng.choice((-0.05, 0.0, 0.05)), 1.0)
            row(now, t, round(premium[t], 2), round(premium[t] - 0.05, 2), round(premium[t] + 0.05, 2))
    table = pa.table({"ts": pa.array(ts, pa.int64()).cast(pa.timestamp("ns", tz="Asia/Kolkata")),
                      "instrument_token": pa.array(token, pa.int64()), "last_price": pa.array(last, pa.float64()),
                      "bid": pa.array(bid, pa.float64()), "ask": pa.array(ask, pa.float64())})
    pq.write_table(table, data / "ticks.parquet")
    return data


def trader(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("TRADER_MODE", None)
    return subprocess.run([sys.executable, "-m", "trader", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_trader_backtest_on_a_parquet_day_exits_0_with_a_summary_and_no_bar_off_a_terminal(tmp_path: Path) -> None:
    data = day_dir(tmp_path)
    done = trader("backtest", "--data", str(data), "--log-level", "WARNING", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "backtest summary (ticks)" in done.stdout
    assert "  ticks          600 in " in done.stdout  # 200 seconds × (index + 2 options)
    assert f"  data           {data}" in done.stdout
    assert "trades         0" in done.stdout
    # stderr is a pipe here: no progress bar (nor its escape codes)
    assert "ticks/s" not in done.stderr and "\x1b[" not in done.stderr and "━" not in done.stderr


def test_bad_data_and_bad_flags_exit_2_naming_file_row_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = day_dir(tmp_path, seconds=5)
    table = pq.read_table(data / "ticks.parquet")
    tokens = table.column("instrument_token").to_pylist()
    tokens[7] = 999  # data row 8: a token not in the instrument master
    table = table.set_column(1, "instrument_token", pa.array(tokens, pa.int64()))
    pq.write_table(table, data / "ticks.parquet")
    monkeypatch.chdir(tmp_path)
    assert main(["backtest", "--data", str(data), "--mode", "paper", "--iv", "9"]) == EXIT_CONFIG
    assert "--mode paper: trader backtest runs in backtest mode only" in capsys.readouterr().err
    assert main(["backtest", "--data", str(data), "--iv", "9"]) == EXIT_CONFIG
    assert capsys.readouterr().err.strip() == "config error: --iv 9.0: a volatility between 0.01 and 3 (0.13 = 13 %)"
    done = trader("backtest", "--data", str(data), "--no-progress", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"replay error: {data / 'ticks.parquet'} row 8, field 'instrument_token': instrument token 999 is not in "
        "the instrument master")
    assert "backtest summary" not in done.stdout


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_is_wanted_on_a_terminal_only_and_never_with_no_progress() -> None:
    assert want_progress(True, _Terminal())
    assert not want_progress(False, _Terminal())
    assert not want_progress(True, io.StringIO())
    closed = io.StringIO()
    closed.close()
    assert not want_progress(True, closed)


async def test_the_bar_shows_days_ticks_per_second_and_eta_and_ends_complete(tmp_path: Path) -> None:
    data = day_dir(tmp_path, seconds=60)
    settings = load_settings({"mode": "backtest", "sim": {"days": 1}, "data_dir": str(tmp_path / "state")})
    screen = _Terminal()
    outcome = await backtest(settings, ReplayConfig(data=data), progress=True, progress_stream=screen)
    text = screen.getvalue()
    assert "days 1/1" in text and "ticks/s" in text and "done in" in text
    assert outcome.ticks == 180 and outcome.result.counters["ticks_in"] == 180
    assert outcome.data_source.kind == "ticks" and not outcome.data_source.modelled_options
    assert outcome.run_dir is None or outcome.run_dir.is_dir()
    quiet = await backtest(settings, ReplayConfig(data=data), progress=False, progress_stream=screen)
    assert screen.getvalue() == text  # progress=False draws nothing
    assert quiet.ticks == 180
    assert "  ticks          180 in " in summary_text(quiet)


async def test_a_backtest_refuses_paper_and_live_modes(tmp_path: Path) -> None:
    settings = load_settings({"mode": "paper", "data_dir": str(tmp_path / "state")})
    with pytest.raises(ConfigError, match="a backtest runs in backtest mode"):
        await backtest(settings, None, progress=False)


def test_backtest_flags_force_backtest_mode_and_one_built_in_session_by_default() -> None:
    parse = build_parser().parse_args
    settings = load(parse(["backtest"]))
    assert settings.mode == "backtest" and settings.sim.days == 1
    assert load(parse(["backtest", "--days", "3", "--seed", "9"])).sim.days == 3
    with pytest.raises(ConfigError, match="--mode live: trader backtest runs in backtest mode only"):
        load(parse(["backtest", "--mode", "live"]))


async def test_the_built_in_market_backtests_its_days_without_data(tmp_path: Path) -> None:
    settings = load_settings({"mode": "backtest", "data_dir": str(tmp_path / "state"),
                              "sim": {"days": 1, "start": "2026-11-20T09:00:00", "tick_interval_ms": 20_000,
                                      "chain_interval_ms": 60_000}})
    screen = _Terminal()
    outcome = await backtest(settings, None, progress=True, progress_stream=screen)
    assert outcome.data_source.kind == "synthetic" and not outcome.data_source.modelled_options
    assert outcome.ticks == outcome.result.counters["ticks_in"] > 1_000
    assert "days 1/1" in screen.getvalue()
    assert "backtest summary (synthetic)" in summary_text(outcome)


async def test_a_replay_stopped_by_bad_data_leaves_a_failed_run_saying_why(tmp_path: Path) -> None:
    """review2: such a run was marked "failed" with stop_reason "end of data": the run folder did not say why."""
    from trader.runs.store import find_run, load_run  # noqa: PLC0415

    data = tmp_path / "NIFTY 50.csv"
    data.write_text("ts,last_price\n2026-11-27T09:15:00+05:30,26000.5\n2026-11-27T09:15:01+05:30,26001\n"
                    "2026-11-27T09:15:02+05:30,-3\n")
    settings = load_settings({"mode": "backtest", "sim": {"days": 1}, "data_dir": str(tmp_path / "state")})
    with pytest.raises(ConfigError, match="last_price"):
        await backtest(settings, ReplayConfig(data=data), progress=False)
    manifest = load_run(find_run("latest", settings.runs_dir)).manifest
    assert manifest.status == "failed"
    assert "NIFTY 50.csv line 4" in manifest.stop_reason and "last_price" in manifest.stop_reason
