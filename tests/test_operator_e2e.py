"""The operator's whole control surface against a real daemon: `trader run` in paper mode as a subprocess (a free
port, its own data dir), driven by every `trader <command>` of the CLI, checking what each one did.

The built-in market runs at 60x from a fixed session (25 Nov 2026 09:25 IST), and the strategy is tuned to signal
often (5 s bars) so semi-live approvals arrive within seconds. Auto-execution is off: phase 2 of the seed, on paper.
Every wait is on a condition read back through the CLI itself, never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from trader.cli import main

TOKEN = "e2e-control-token-0123456789"
START = "2026-11-25T09:25"  # a Wednesday session (24 Nov 2026 is a holiday); the clock runs from here
WAIT_S = 90.0  # generous: a loaded 2-core machine runs the market slower than 60x


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    lines: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    ready: threading.Event = field(default_factory=threading.Event)

    def read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            self.lines.append(line)
            if line.get("event") == "control_api_listening":
                self.url = str(line["url"])
                self.ready.set()
        self.ready.set()  # ended without listening: the test fails on the missing URL, with the log


def daemon_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRADER_")}
    env.update({
        "TRADER_DATA_DIR": str(data_dir),
        "TRADER_CONTROL__PORT": "0",
        "TRADER_CONTROL__TOKEN": TOKEN,
        "TRADER_CONTROL__APPROVAL_EXPIRY_SECONDS": "900",  # 15 s of wall time at 60x
        "TRADER_STRATEGY__BAR_SECONDS": "5",
        "TRADER_STRATEGY__FAST": "2",
        "TRADER_STRATEGY__SLOW": "4",
        "TRADER_STRATEGY__CONFIRM_BARS": "1",
        "TRADER_STRATEGY__CONFIDENCE_CUTOFF": "0",
        "TRADER_RISK__INITIAL_CAPITAL": "1000000",
        "TRADER_RISK__MAX_POSITIONS_PER_SYMBOL": "50",
        "TRADER_RISK__MAX_TOTAL_POSITIONS": "100",
        "TRADER_HEARTBEAT_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


@contextlib.contextmanager
def running_daemon(tmp_path: Path, **extra: str) -> Iterator[Daemon]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trader", "run", "--speed", "60", "--start", START, "--no-auto-execution"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon_env(data_dir, **extra))
    daemon = Daemon(proc, data_dir)
    reader = threading.Thread(target=daemon.read, daemon=True)
    reader.start()
    try:
        assert daemon.ready.wait(WAIT_S) and daemon.url, f"no control_api_listening line: {daemon.lines[-5:]}"
        yield daemon
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()


def cli(daemon: Daemon, *args: str) -> tuple[int, Any]:
    """`trader <args> --url <daemon> --json`, in process: (exit code, the JSON document it printed)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = main([*args, "--url", daemon.url, "--json"])
        except SystemExit as exc:  # argparse's usage errors, as the shell would see them
            code = int(exc.code or 0)
    text = out.getvalue().strip()
    return code, orjson.loads(text) if text else None


def ok(daemon: Daemon, *args: str) -> Any:
    code, doc = cli(daemon, *args)
    assert code == 0, (args, doc)
    return doc


def wait_for(what: str, probe: Callable[[], Any], timeout_s: float = WAIT_S) -> Any:
    """Poll ``probe`` (a CLI read) until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)  # a poll interval, not a synchronisation: the condition is what ends the wait
    raise AssertionError(f"timed out waiting for {what}")


def open_positions(daemon: Daemon) -> list[dict[str, Any]]:
    return [p for p in ok(daemon, "positions")["positions"] if p["quantity"] != 0]


def order_by_id(daemon: Daemon, intent_id: str) -> dict[str, Any] | None:
    return next((o for o in ok(daemon, "orders")["orders"] if o["intent_id"] == intent_id), None)


def next_pending(daemon: Daemon, seen: set[str]) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        return next((a for a in ok(daemon, "signals")["pending"] if a["intent_id"] not in seen), None)
    approval: dict[str, Any] = wait_for("a pending semi-live signal", probe)
    seen.add(approval["intent_id"])
    return approval


@pytest.fixture(autouse=True)
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADER_CONTROL__TOKEN", TOKEN)  # what the CLI in this process reads


def test_every_operator_command_against_a_paper_daemon(tmp_path: Path) -> None:
    with running_daemon(tmp_path) as daemon:
        status = ok(daemon, "status")
        assert (status["mode"], status["auto_execution"], status["trading_state"]) == ("paper", False, "ACTIVE")

        # A manual order the way a trader says it: resolved first (nothing placed), then placed and filled.
        preview = ok(daemon, "order", "BUY", "NIFTY", "ATM", "CE", "--lots", "1", "--dry-run")
        symbol = preview["resolved"]["tradingsymbol"]
        assert symbol.startswith("NIFTY") and symbol.endswith("CE")
        assert open_positions(daemon) == []
        placed = ok(daemon, "order", "BUY", "NIFTY", "ATM", "CE", "--lots", "1")
        manual_id = placed["order"]["intent_id"]
        held = wait_for("the manual position", lambda: [p for p in open_positions(daemon) if p["quantity"] > 0])
        assert held[0]["lots"] == 1
        filled = wait_for("the manual order's fill", lambda: (o := order_by_id(daemon, manual_id))
                          and o["status"] == "COMPLETE" and o)
        assert filled["strategy"] == "manual" and filled["fills"]

        # A resting LIMIT order far below the market, cancelled by its id.
        resting = ok(daemon, "order", "BUY", "NIFTY", "ATM", "PE", "--lots", "1", "--limit", "0.05")
        resting_id = resting["order"]["intent_id"]
        wait_for("the limit order to rest", lambda: (o := order_by_id(daemon, resting_id)) and o["status"] == "OPEN")
        ok(daemon, "cancel", resting_id)
        wait_for("the cancel", lambda: (o := order_by_id(daemon, resting_id)) and o["status"] == "CANCELLED")

        # Semi-live: a pending signal approved becomes an order. The strategy holds one position at a time, so each
        # approved entry is flattened before the next signal can come.
        seen: set[str] = set()
        approve_then_flatten(daemon, next_pending(daemon, seen)["intent_id"])

        # HALT refuses the next approval and a manual order, naming the check; RESUME lets the next one through.
        assert ok(daemon, "halt", "--reason", "e2e test")["trading_state"] == "HALTED"
        code, refused = cli(daemon, "approve", next_pending(daemon, seen)["intent_id"])
        assert code == 1 and refused["error"]["check"] == "state", refused
        code, refused = cli(daemon, "order", "BUY", "NIFTY", "ATM", "CE", "--lots", "1")
        assert code == 1 and refused["error"]["check"] == "state", refused
        assert ok(daemon, "resume")["trading_state"] == "ACTIVE"
        approve_then_flatten(daemon, next_pending(daemon, seen)["intent_id"])

        # Reject one; leave one unanswered until it expires.
        rejected_id = next_pending(daemon, seen)["intent_id"]
        assert ok(daemon, "reject", rejected_id, "--reason", "not today")["approval"]["status"] == "REJECTED"
        unanswered = next_pending(daemon, seen)["intent_id"]
        wait_for("the unanswered signal to expire",
                 lambda: any(a["intent_id"] == unanswered and a["status"] == "EXPIRED"
                             for a in ok(daemon, "signals")["decided"]))

        # Nothing open: a flatten says so (and is no error); the books and the report answer.
        nothing = ok(daemon, "flatten")
        assert nothing["exits"] == 0 and "nothing to flatten" in nothing["detail"], nothing
        risk = ok(daemon, "risk")
        assert "daily_pnl_inr" in risk and risk["limits"]
        report = ok(daemon, "report")
        assert "net_pnl_inr" in report

        # Usage errors are 2, a wrong token 1, a daemon that is not there 3.
        assert cli(daemon, "order", "BUY", "--lots", "1")[0] == 2
        wrong = write(tmp_path, "wrong-token-0123456789")
        assert main(["status", "--url", daemon.url, "--token-file", str(wrong)]) == 1
        assert main(["status", "--url", f"http://127.0.0.1:{closed_port()}"]) == 3
        # The installed command, as an operator types it (no --json: the human table).
        shown = subprocess.run([sys.executable, "-m", "trader", "status", "--url", daemon.url],
                               capture_output=True, text=True, env={**os.environ, "TRADER_CONTROL__TOKEN": TOKEN},
                               timeout=60, check=False)
        assert shown.returncode == 0 and "paper" in shown.stdout and TOKEN not in shown.stdout + shown.stderr
    assert not any(TOKEN in str(line) for line in daemon.lines), "the token reached the log"


def test_reset_daily_clears_a_breached_day(tmp_path: Path) -> None:
    # A daily loss limit of 0.01 % of 10 lakh (100 rupees): one lot's spread and charges breach it.
    with running_daemon(tmp_path, TRADER_RISK__MAX_DAILY_LOSS_PCT="0.0001") as daemon:
        ok(daemon, "order", "BUY", "NIFTY", "ATM", "CE", "--lots", "1")
        wait_for("the day to breach", lambda: ok(daemon, "status")["trading_state"] == "REDUCING_ONLY")
        code, refused = cli(daemon, "order", "BUY", "NIFTY", "ATM", "CE", "--lots", "1")
        assert code == 1 and refused["error"]["check"], refused
        assert ok(daemon, "reset-daily")["trading_state"] == "ACTIVE"
        ok(daemon, "flatten")
        wait_for("flat", lambda: open_positions(daemon) == [])


def approve_then_flatten(daemon: Daemon, intent_id: str) -> None:
    answer = ok(daemon, "approve", intent_id)
    assert answer["approval"]["status"] == "APPROVED", answer
    wait_for("the approved entry's fill", lambda: (o := order_by_id(daemon, intent_id)) and o["status"] == "COMPLETE")
    assert open_positions(daemon)
    flat = ok(daemon, "flatten")
    # At 60x with 5 s bars the strategy may be exiting on its own right now: the flatten then waits for that order
    # (selling the same lot twice could leave a short) and says so, or finds it already done.
    assert flat["exits"] >= 1 or "wait for the daemon's working orders" in flat["detail"] \
        or "nothing to flatten" in flat["detail"], flat
    wait_for("flat", lambda: open_positions(daemon) == [])


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "token"
    path.write_text(text)
    path.chmod(0o600)
    return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
