"""Paper mode survives kill -9 the way a real account does: a paper run killed five times in one simulated session,
then stopped cleanly, ends with the positions and P&L the paper broker's own fills say, and one order per intent."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import orjson

from trader.book import PositionBook
from trader.store.journal import Journal
from trader.store.orders import OrderJournal

KILLS = 5


class Daemon:
    def __init__(self, tmp_path: Path, run: int, extra: list[str]) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADER_")}
        env.update({"TRADER_HEARTBEAT_SECONDS": "0.3", "PYTHONUNBUFFERED": "1",
                    "TRADER_DATA_DIR": str(tmp_path / "data"), "TRADER_CONTROL__PORT": "0"})
        command = [sys.executable, "-m", "trader", "run", "--mode", "paper", "--symbols", "NSE:NIFTY50-INDEX",
                   "--strategies", "ema_crossover_enhanced", "--capital", "1000000", "--confidence-cutoff", "50.0",
                   "--auto-execution", "--speed", "600", *extra]
        self.stderr_path = tmp_path / f"stderr-{run}.txt"
        with self.stderr_path.open("w") as stderr:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=tmp_path,
                                            text=True)
        self.lines: queue.Queue[dict[str, object] | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.seen: list[dict[str, object]] = []

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.put(dict(json.loads(raw)))
        self.lines.put(None)

    def until(self, wanted: str, within_s: float) -> bool:
        """Read lines until one with event ``wanted`` (True), the end of output or the time bound (False)."""
        deadline = time.monotonic() + within_s
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                return False
            if line is None:
                return False
            self.seen.append(line)
            if line.get("event") == wanted:
                return True

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        while self.until("summary", 30):
            pass
        return self.process.wait(timeout=30)


def test_paper_killed_five_times_in_one_session_ends_with_the_paper_brokers_positions(tmp_path: Path) -> None:
    daemons: list[Daemon] = []
    try:
        fills_seen = 0
        for run in range(KILLS):
            daemon = Daemon(tmp_path, run, ["--start", "2026-11-20T09:14:30"] if run == 0 else [])
            daemons.append(daemon)
            assert daemon.until("trading_ready", 60), f"run {run} never got ready: {daemon.stderr_path.read_text()}"
            # Kill right after a fill when one comes, else after a while of trading (a random moment).
            if daemon.until("fill", 25):
                fills_seen += 1
            daemon.kill()
        final = Daemon(tmp_path, KILLS, [])
        daemons.append(final)
        assert final.until("trading_ready", 60), final.stderr_path.read_text()
        ready = next(line for line in final.seen if line["event"] == "trading_ready")
        assert ready["state"] != "HALTED", final.seen
        assert final.until("heartbeat", 30)
        assert final.stop() == 0, final.stderr_path.read_text()
    finally:
        for daemon in daemons:
            if daemon.process.poll() is None:
                daemon.process.kill()
                daemon.process.wait(timeout=30)
    assert fills_seen >= 2, "the strategy must trade for the kills to mean anything"
    resumed = [line for d in daemons[1:] for line in d.seen if line["event"] == "paper_market_resumes"]
    assert len(resumed) == KILLS, "every restart goes on with the same simulated session"

    journal = Journal(tmp_path / "data" / "paper.sqlite3")
    orders = OrderJournal(journal)
    ours = PositionBook()
    for fill in orders.fills():
        ours.apply(fill.contract, fill.side, fill.quantity, fill.price, fill.charges)
    paper = journal.load_state("paper_broker")
    assert paper is not None
    broker_positions = {p["contract"]["instrument_token"]: p["quantity"] for p in paper["positions"] if p["quantity"]}
    assert {t: p.quantity for t, p in ours.positions.items() if p.quantity} == broker_positions
    assert (ours.realized, ours.charges) == (paper["realized"], paper["charges"])
    traded = sum(t["quantity"] for t in paper["trades"])
    assert traded == sum(f.quantity for f in orders.fills()) > 0
    per_tag = Counter(order["tag"] for order in paper["orders"])
    assert max(per_tag.values()) == 1, per_tag  # one order per intent, across every kill
    summary = next(line for line in final.seen if line["event"] == "summary")
    assert summary["open_positions"] == len(broker_positions)
    assert orjson.dumps(summary)  # the summary is one JSON object, as every line
