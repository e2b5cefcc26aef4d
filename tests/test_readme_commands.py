"""Every shell command in the README works as written, or is listed here with the reason it cannot run offline.

The README's ```sh blocks are parsed into commands (continuation lines joined, comments dropped). Each command must
appear in exactly one of the tables below: a new command in the README fails this test until it is exercised or its
reason is written down. Commands run from the repository root, with the daemon's data dir pointed at a temporary
folder so they neither read nor leave state in the checkout.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# Commands that start the daemon and run until stopped: started, watched until it trades or at least reports, then
# stopped with SIGINT (Ctrl-C) as a user would.
LONG_RUNNING = {
    ".venv/bin/trader run --mode paper --symbols NSE:NIFTY50-INDEX --strategies ema_crossover_enhanced "
    "--capital 100000 --max-daily-loss 0.02 --confidence-cutoff 50.0 --auto-execution --speed 600",
    "TRADER_MODE=paper .venv/bin/trader run --speed 600",
    "make run",
    "make run | jq -c 'select(.event != \"heartbeat\")'",
}
# Commands that finish by themselves with exit code 0.
FINISHING = {
    ".venv/bin/trader run --mode backtest --days 1 --start 2026-11-20T09:00",
    ".venv/bin/trader check-config --config configs/paper.toml",
    ".venv/bin/python -m trader check-config",
    ".venv/bin/trader run --mode backtest --days 1 --start 2026-11-20T09:00 | .venv/bin/trader tail --orders",
}
# Commands this suite cannot run, and why (each is covered elsewhere where it can be).
_OWN = "the user's own strategy, data or run ids"
_OPERATOR = "needs a running daemon: tests/test_operator_e2e.py drives every operator command against one"
NOT_HERE = {
    "make test": "it is this very suite",
    ".venv/bin/trader status": _OPERATOR,
    ".venv/bin/trader positions": _OPERATOR,
    ".venv/bin/trader order BUY NIFTY ATM CE --lots 1 --dry-run": _OPERATOR,
    ".venv/bin/trader order BUY NIFTY ATM+2 PE --lots 1": _OPERATOR,
    ".venv/bin/trader approve IX3J37ZZ00000013": _OPERATOR,
    "export TRADER_KITE__API_KEY=... TRADER_KITE__API_SECRET=...": "placeholders for the user's own credentials",
    ".venv/bin/trader login": "asks a human for the request token (tests/test_login.py drives the same code)",
    "TRADER_MODE=live TRADER_LIVE_CONFIRM=yes .venv/bin/trader run --symbols NSE:NIFTY50-INDEX":
        "real money at Kite (the same path runs against the simulator in tests/test_live_e2e.py)",
    ".venv/bin/trader sim --port 8765 --speed 120":
        "a fixed port (tests/test_live_2027.py runs `trader sim --port 0 --start ...` the same way)",
    "export TRADER_KITE__API_KEY=sim_api_key TRADER_KITE__API_SECRET=sim_api_secret "
    "TRADER_KITE_API_ROOT=http://127.0.0.1:8765 TRADER_KITE_WS_ROOT=ws://127.0.0.1:8766":
        "environment for the rehearsal above",
    "TRADER_MODE=live TRADER_LIVE_CONFIRM=yes .venv/bin/trader run --auto-execution":
        "the rehearsal against the simulator (tests/test_live_e2e.py, tests/test_live_2027.py)",
    "export TRADER_VENUE=fyers TRADER_FYERS__APP_ID=XB12345-100 TRADER_FYERS__SECRET_KEY=...":
        "placeholders for the user's own Fyers app",
    "TRADER_MODE=live TRADER_LIVE_CONFIRM=yes .venv/bin/trader run":
        "real money at Fyers (the same path runs against `trader sim --venue fyers` in tests/test_live_e2e.py, "
        "tests/test_live_control_e2e.py and tests/test_crash.py)",
    ".venv/bin/trader tail --follow /var/log/trader/trader.log --risk --since 10m":
        "a log file of the user's (tests/test_tail.py follows a file another writer appends to, truncates, rotates)",
    "journalctl -u trader -o cat | .venv/bin/trader tail --since 09:15 --level WARNING":
        "needs systemd's journal of an installed service (tests/test_tail.py reads stdin with each filter)",
    # The reality check: the user's own strategy package, data files and run ids stand in these lines.
    ".venv/bin/trader new-strategy my_breakout --dir ~/strategies && .venv/bin/pip install -e "
    "~/strategies/my_breakout": _OWN + " (tests/test_strategy_registry.py writes, installs and runs a skeleton)",
    ".venv/bin/trader backtest --data ~/ticks --from 2026-11-23 --to 2026-11-27 --instruments "
    "~/ticks/instruments.csv --strategies my_breakout": _OWN + " (tests/test_backtest_cmd.py runs trader backtest)",
    ".venv/bin/trader sweep --data ~/ticks --from 2026-11-23 --to 2026-11-27 --strategies my_breakout --grid "
    "strategy.my_breakout.trigger_pct=0.001,0.002,0.004": _OWN + " (tests/test_sweep.py runs trader sweep)",
    ".venv/bin/trader run --strategies my_breakout": _OWN + " (the daemon runs above with a built-in strategy)",
    ".venv/bin/trader backtest --data data/ticks/paper/2026-11-30 --strategies my_breakout":
        _OWN + " (tests/test_parity.py backtests a recorded paper day)",
    ".venv/bin/trader runs": "lists the data dir's run folders (tests/test_runs.py runs it on made ones)",
    ".venv/bin/trader compare <backtest run> <paper run>": _OWN + " (tests/test_parity.py runs trader compare)",
    ".venv/bin/trader report <run>": _OWN + " (tests/test_parity.py and tests/test_report_html.py run it)",
}


def readme_commands() -> list[str]:
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), re.DOTALL):
        joined = re.sub(r"\\\n\s*", "", block)
        for line in joined.splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and not command.startswith("#"):
                commands.append(re.sub(r"\s+", " ", command))
    return commands


def test_every_readme_command_is_exercised_or_explained() -> None:
    commands = readme_commands()
    known = LONG_RUNNING | FINISHING | set(NOT_HERE)
    assert [c for c in commands if c not in known] == [], "a README command this test does not know"
    assert sorted(known - set(commands)) == [], "a command this test knows is gone from the README"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADER_")}
    clean.update({"TRADER_DATA_DIR": str(tmp_path / "data"), "TRADER_HEARTBEAT_SECONDS": "0.5",
                  "PYTHONUNBUFFERED": "1", "TRADER_CONTROL__PORT": "0"})  # a free port: never the fixed 8780
    return clean


def _shell(command: str, env: dict[str, str], *, stderr: Path) -> subprocess.Popen[str]:
    # A new session, so Ctrl-C can be sent to the whole pipeline (make, the daemon, jq) as a terminal would.
    with stderr.open("w") as sink:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(["bash", "-c", command], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=sink,
                                text=True, start_new_session=True)


def _lines(process: subprocess.Popen[str], into: list[str]) -> Iterator[None]:
    assert process.stdout is not None
    for raw in process.stdout:
        into.append(raw)
        yield None


@pytest.mark.parametrize("command", sorted(LONG_RUNNING))
def test_long_running_command_starts_reports_and_stops_on_ctrl_c(command: str, env: dict[str, str],
                                                                 tmp_path: Path) -> None:
    if "jq" in command:
        assert shutil.which("jq"), "the README pipes `make run` into jq: install jq (apt install jq)"
    errors = tmp_path / "stderr.txt"
    process = _shell(command, env, stderr=errors)
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        for _ in _lines(process, lines):
            if any('"heartbeat"' in line for line in lines) or any('"strategy_warming_up"' in line for line in lines):
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        # Generous: a loaded 2-core machine, and `make run` may have to check its install first.
        if "jq" in command:
            # jq holds its output back from a pipe: watch the daemon's own first heartbeat in its journal instead.
            journal = Path(env["TRADER_DATA_DIR"]) / "paper.sqlite3"
            deadline = time.monotonic() + 120
            while not _heartbeat_saved(journal):
                assert time.monotonic() < deadline, f"no heartbeat within 120 s; stderr: {errors.read_text()[-2000:]}"
                time.sleep(0.1)  # polling another process's file: there is nothing to wait on
        else:
            assert seen.wait(120), f"no heartbeat within 120 s; stderr: {errors.read_text()[-2000:]}"
        os.killpg(process.pid, signal.SIGINT)
        process.wait(30)
        reader.join(10)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # make and bash report a Ctrl-C as 130 or death by SIGINT; the daemon itself must have stopped cleanly (below).
    assert process.returncode in (0, 130, -signal.SIGINT), errors.read_text()
    events = [json.loads(line) for line in lines]  # stdout is nothing but JSON lines
    if "jq" not in command:
        names = [e["event"] for e in events]
        assert "daemon_started" in names and names[-1] == "summary", names[-5:]
    assert "Traceback" not in errors.read_text()
    assert "parse error" not in errors.read_text()  # jq saw nothing but JSON (make echoes no command to stdout)


def _heartbeat_saved(journal: Path) -> bool:
    """The running daemon keeps its journal locked for itself: read a copy of the file and its WAL."""
    if not journal.exists():
        return False
    with tempfile.TemporaryDirectory() as scratch:
        try:
            for name in (journal.name, journal.name + "-wal"):
                if (journal.parent / name).exists():
                    shutil.copyfile(journal.parent / name, Path(scratch) / name)
            db = sqlite3.connect(Path(scratch) / journal.name)
            try:
                return db.execute("SELECT 1 FROM state WHERE name = 'paper_market'").fetchone() is not None
            finally:
                db.close()
        except (sqlite3.Error, OSError):  # the daemon is still creating it, or copied mid-write
            return False


@pytest.mark.parametrize("command", sorted(FINISHING))
def test_finishing_command_exits_zero(command: str, env: dict[str, str], tmp_path: Path) -> None:
    errors = tmp_path / "stderr.txt"
    process = _shell(command, env, stderr=errors)
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, errors.read_text()[-2000:]
    if "check-config" in command:
        assert json.loads(out)["mode"] == "paper"
    elif "trader tail --orders" in command:  # human lines, order events only (the day trades)
        lines = out.splitlines()
        human = re.compile(r"(\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d \w+ +(intent|order_|fill|trade_closed)")
        assert lines and all(human.match(line) for line in lines), lines[:5]
        assert any(" fill " in line and "₹" in line for line in lines)
    else:
        events = [json.loads(line) for line in out.splitlines()]
        assert events[-1]["event"] == "summary"


@pytest.mark.parametrize(("reader", "lines_read"), [("head -3", 3), ("true", 0)])
def test_a_reader_that_goes_away_stops_the_daemon_quietly(reader: str, lines_read: int, env: dict[str, str],
                                                          tmp_path: Path) -> None:
    """`trader run | head -3` (or a reader gone before the first line): the daemon's next write hits a closed pipe;
    it stops gracefully, exit 0, no traceback — also when that happens while it is still starting up."""
    errors = tmp_path / "stderr.txt"
    command = (f"{shlex.quote(sys.executable)} -m trader run --speed 600 --start 2026-11-20T10:00 | {reader}; "
               "exit ${PIPESTATUS[0]}")
    process = _shell(command, env, stderr=errors)
    out, _ = process.communicate(timeout=120)  # a daemon that kept running would fail here
    assert process.returncode == 0, errors.read_text()[-2000:]
    assert len(out.splitlines()) == lines_read
    # Nothing on stderr but the control API's token, printed once when the daemon made it: no traceback.
    assert [line for line in errors.read_text().splitlines() if not line.startswith("control API token")] == []
