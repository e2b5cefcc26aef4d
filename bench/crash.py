"""Crash harness: ``trader sim`` and the daemon in live mode as real processes; the daemon is killed with SIGKILL again
and again, restarted on the same data dir, and the simulator's own book is checked after every restart and at the end.

Run as ``.venv/bin/python bench/crash.py [--kills N] [--seed S] [--faults/--no-faults] [--quick] [--json]``
(``make crash``; ``tests/test_crash.py`` runs it with about 10 kills through ``run(Options(...))``).

One run:

* ``trader sim --port 0 --start 2026-11-20T09:20 --speed 120`` (Fri 20 Nov 2026 IST; with ``--faults`` also 5xx,
  accepted-then-lost placements, 429s and WebSocket drops), and the daemon as ``python -m trader run --auto-execution``
  with ``TRADER_MODE=live``, its Kite roots on the simulator, a fresh data dir, and strategy settings that trade
  often (10 s bars, no confidence cutoff); the risk limits stay at their defaults.
* Each cycle plans one kill (seeded ``random.Random(seed)``), starts the daemon, waits until it is ready (the
  ``trading_ready`` log line once the start-up reconciliation gate exists, ``daemon_started`` before), checks, and
  then kills it: at a random moment after ready; right after its k-th ``intent_approved`` / ``order_placed`` /
  ``fill`` / ``order_update`` log line; during start-up; or, once the daemon has crash points
  (``TRADER_CRASH_POINT=<name>[:<n>]``), by letting it SIGKILL itself at ``intent_written``, ``order_sent`` or
  ``fill_received``. After the last kill the daemon starts once more, is checked, stopped with SIGTERM, and the
  final state is checked.
* The checks, against the simulator's book read with the official ``kiteconnect`` client (``orders()``,
  ``trades()``, ``positions()``) and the daemon's SQLite journal opened read-only:

  - duplicate orders: no tag, and no journaled intent, has more than one order at the simulator;
  - lost intents: every journaled intent has exactly one terminal state (an intent still open must have its order
    open at the simulator; one whose order ended gets that end, and only that one, within a grace period after the
    restart); intents written before a kill are followed into the next run;
  - position mismatches: the positions in the daemon's ``reconciliation_passed`` line equal the simulator's (its
    trades up to some moment between the kill and the line);
  - limit breaches: no entry order above ``max_lots_per_trade`` lots, never more than ``max_positions_per_symbol``
    open positions, never a net short option, and no entry order on a day after a loss limit was reached.

  A check the daemon cannot support yet (no ``intents`` table, no ``reconciliation_passed`` line) is reported as
  "not available", never as passed.

Standard output: one line per figure (``label: count``; the two restart timings in the bench format
``figure | baseline first start → ready | ratio``, see ``bench/benchlib.py``), and with ``--json`` one JSON object
last. Progress, every finding with its log evidence, and the work dir go to standard error. Exit code 0 when every
invariant count is 0 and every check was available, 1 when a count is not 0, 2 when a check was not available or the
run could not go on (the daemon never became ready).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlparse

import crash_venue  # bench/ is not a package: its scripts import each other by module name
from benchlib import number
from kiteconnect import KiteConnect

ROOT = Path(__file__).resolve().parent.parent
TRADER_SOURCE = ROOT / "trader"
API_KEY = "sim_api_key"  # the simulator's documented local-use defaults
API_SECRET = "sim_api_secret"
SIM_START = "2026-11-20T09:20"  # Fri 20 Nov 2026, IST: a fixed session, never today's date
IST = timezone(timedelta(hours=5, minutes=30))
CRASH_POINTS = ("intent_written", "order_sent", "fill_received")
KILL_EVENTS = ("intent_approved", "order_placed", "fill", "order_update")
TERMINAL = frozenset({"COMPLETE", "CANCELLED", "REJECTED"})
# Risk limits at their defaults (trader/risk/config.py); the harness never changes them.
MAX_LOTS_PER_TRADE = 1
MAX_POSITIONS_PER_SYMBOL = 3
INVARIANTS = ("duplicate orders", "lost intents", "position mismatches", "limit breaches")

T = TypeVar("T")


def note(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def source_mentions(text: str) -> bool:
    """Whether the daemon's source knows ``text`` (a log event or an environment variable): how the harness tells
    whether the reconciliation gate and the crash points exist yet."""
    return any(text in path.read_text(encoding="utf-8") for path in TRADER_SOURCE.rglob("*.py"))


@dataclass(slots=True)
class Options:
    kills: int = 200
    seed: int = 1
    faults: bool = True
    speed: float = 120.0
    lost_answer: str = "drop"  # accepted-then-lost placements: the connection drops ("drop") or answers late
    work_dir: Path | None = None  # default: a fresh temporary dir, removed after a clean run
    keep: bool = False
    ready_timeout_s: float = 120.0  # a loaded 2-core machine; the daemon usually starts in a few seconds
    max_uptime_s: float = 3.0  # random kills land up to this long after ready
    event_wait_s: float = 20.0  # a kill planned after a log line falls back to a plain kill after this long
    settle_s: float = 15.0  # grace for the daemon to settle intents from before a kill once it is ready
    max_start_failures: int = 5  # consecutive starts that never become ready before the run gives up
    tail: int = 60
    venue: crash_venue.Venue = "kite"  # the wire the daemon trades through (the book is read through Kite's face)


# -- processes -----------------------------------------------------------------------------------------------------
class Process:
    """A child process whose standard output (JSON log lines; standard error merged) is read by a thread: every line
    is kept parsed, written to ``log_path``, and the last ``tail`` lines are kept for failure messages."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path, tail: int) -> None:
        self.name = name
        self.log_path = log_path
        self.started = time.monotonic()
        self.lines: list[dict[str, Any]] = []
        self.tail: deque[str] = deque(maxlen=tail)
        self.exited = False
        self.on_line: Callable[[dict[str, Any]], None] | None = None
        self._cond = threading.Condition()
        self._log = log_path.open("ab")
        self.popen = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(env),
                                      cwd=ROOT, start_new_session=True)
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            self._log.write(raw)
            text = raw.decode("utf-8", errors="replace").rstrip("\n")
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            line: dict[str, Any] = parsed if isinstance(parsed, dict) else {"event": "<text>", "text": text}
            line["harness_at"] = time.monotonic()
            hook = self.on_line
            if hook is not None:
                hook(line)
            with self._cond:
                self.lines.append(line)
                self.tail.append(text)
                self._cond.notify_all()
        self._log.close()
        with self._cond:
            self.exited = True
            self._cond.notify_all()

    def wait_for(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        """Until ``condition()`` holds (checked at every line and at exit) or ``timeout_s`` passes."""
        with self._cond:
            return self._cond.wait_for(condition, timeout_s)

    def first(self, *events: str) -> dict[str, Any] | None:
        return next((line for line in self.lines if line.get("event") in events), None)

    def count(self, event: str) -> int:
        return sum(1 for line in self.lines if line.get("event") == event)

    def wait_exit(self, timeout_s: float) -> bool:
        return self.wait_for(lambda: self.exited, timeout_s)

    def kill(self) -> None:
        """SIGKILL (if still running), then reap it and let the reader finish."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait()
        self._reader.join(10)

    def stop(self, timeout_s: float) -> int:
        """SIGTERM, wait up to ``timeout_s``, else SIGKILL; the exit code."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                note(f"{self.name} did not stop within {timeout_s:g} s of SIGTERM: SIGKILL")
        self.kill()
        return self.popen.returncode


# -- the simulator's book ------------------------------------------------------------------------------------------
def retry(what: str, call: Callable[[], T], attempts: int = 30) -> T:
    """The fault knobs answer the harness's reads with 5xx and 429 too: try again (a short backoff)."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:  # kiteconnect's exceptions, requests' connection errors
            if attempt == attempts - 1:
                raise RuntimeError(f"{what}: still failing after {attempts} attempts: {exc!r}") from exc
            time.sleep(min(0.02 * 2 ** attempt, 0.5))  # a retry's backoff, not a wait for a condition
    raise AssertionError("unreachable")


def login(rest_url: str) -> str:
    """The simulator's login flow as Kite's: the login redirect gives a request token, the session exchange (with the
    checksum, done by ``KiteConnect.generate_session``) the access token."""
    parsed = urlparse(rest_url)
    connection = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=30)
    try:
        connection.request("GET", f"/connect/login?api_key={API_KEY}&v=3")
        location = connection.getresponse().getheader("Location") or ""
    finally:
        connection.close()
    request_token = parse_qs(urlparse(location).query)["request_token"][0]
    session = KiteConnect(API_KEY, root=rest_url).generate_session(request_token, api_secret=API_SECRET)
    return str(session["access_token"])


@dataclass(slots=True)
class Book:
    orders: list[dict[str, Any]]
    trades: list[dict[str, Any]]  # in the simulator's order (trade ids are sequential)
    positions: dict[str, int]  # the simulator's /portfolio/positions, net, non-zero only

    def by_tag(self) -> dict[str, list[dict[str, Any]]]:
        out: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        for order in self.orders:
            if order.get("tag"):
                out[str(order["tag"])].append(order)
        return out


def read_book(kite: Any) -> Book:
    orders = retry("orders()", kite.orders)
    trades = retry("trades()", kite.trades)
    positions = retry("positions()", kite.positions)
    net = {str(p["tradingsymbol"]): int(p["quantity"]) for p in positions["net"] if int(p["quantity"])}
    return Book([dict(o) for o in orders], sorted((dict(t) for t in trades), key=lambda t: str(t["trade_id"])), net)


def positions_after(trades: Sequence[Mapping[str, Any]]) -> Iterator[dict[str, int]]:
    """Net positions (non-zero only) before the first trade, then after each one."""
    held: dict[str, int] = {}
    yield {}
    for trade in trades:
        symbol, quantity = str(trade["tradingsymbol"]), int(trade["quantity"])
        held[symbol] = held.get(symbol, 0) + (quantity if trade["transaction_type"] == "BUY" else -quantity)
        yield {s: q for s, q in held.items() if q}


def as_ist(value: Any) -> datetime | None:
    """An order timestamp as kiteconnect gives it (a naive IST datetime, or the text) → naive IST datetime."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, str) and value:
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value).replace(tzinfo=None)
    return None


def ist_from_ns(ts_ns: int) -> datetime:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC).astimezone(IST).replace(tzinfo=None)


# -- the daemon's journal ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class JournalIntent:
    intent_id: str
    tag: str
    purpose: str
    status: str  # written | sent | terminal
    terminal_status: str
    order_id: str
    terminal_events: frozenset[str]  # distinct terminal statuses among its order_events


def read_journal(path: Path) -> dict[str, JournalIntent] | str:
    """The ``intents`` table (and each intent's terminal order events) of a copy of the journal (the running daemon
    holds its file locked for itself); a reason when there is none to read."""
    if not path.exists():
        return f"no journal at {path}"
    for attempt in range(50):
        with tempfile.TemporaryDirectory(prefix="crash-journal-") as scratch:
            try:
                found = _read_copy(path, Path(scratch))
            except (sqlite3.DatabaseError, OSError) as exc:  # copied mid-write: copy and read again
                if attempt == 49:
                    return f"cannot read {path.name}: {exc}"
                time.sleep(0.05)
                continue
        return found
    raise AssertionError("unreachable")


def _read_copy(path: Path, scratch: Path) -> dict[str, JournalIntent] | str:
    copy = scratch / path.name
    shutil.copyfile(path, copy)
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        shutil.copyfile(wal, scratch / wal.name)
    connection = sqlite3.connect(copy, timeout=5)
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "intents" not in tables:
            return f"no intents table in {path.name} (tables: {', '.join(sorted(tables)) or 'none'})"
        terminal: defaultdict[str, set[str]] = defaultdict(set)
        if "order_events" in tables:
            for intent_id, status in connection.execute("SELECT intent_id, status FROM order_events"):
                if status in TERMINAL:
                    terminal[str(intent_id)].add(str(status))
        rows = connection.execute("SELECT intent_id, tag, purpose, status, terminal_status, order_id "
                                  "FROM intents").fetchall()
    finally:
        connection.close()
    return {str(r[0]): JournalIntent(str(r[0]), str(r[1] or ""), str(r[2] or ""), str(r[3] or ""),
                                     str(r[4] or ""), str(r[5] or ""), frozenset(terminal[str(r[0])]))
            for r in rows}


# -- findings ------------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Finding:
    kind: str  # one of INVARIANTS, or an extra
    key: str  # counted once per key
    message: str
    evidence: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Report:
    options: Options
    work_dir: Path
    kills: Counter[str] = field(default_factory=Counter)
    first_ready_ms: float = 0.0
    restart_ready_ms: list[float] = field(default_factory=list)
    findings: dict[tuple[str, str], Finding] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # invariant → why it could not be checked
    start_failures: list[str] = field(default_factory=list)
    crash_points_missed: int = 0
    halted_starts: list[str] = field(default_factory=list)
    daemon_errors: Counter[str] = field(default_factory=Counter)
    orders: int = 0
    trades: int = 0
    intents: int = 0
    final_positions: dict[str, int] = field(default_factory=dict)
    aborted: str = ""
    position_checks: int = 0  # reconciliation_passed lines compared with the simulator's book
    followed_intents: int = 0  # intents unsettled at a kill that were followed into the next run
    leftover_pids: list[int] = field(default_factory=list)  # processes still running after the run (must be none)
    gate: bool = False
    crash_point_support: bool = False

    def add(self, finding: Finding) -> None:
        self.findings.setdefault((finding.kind, finding.key), finding)

    def count(self, kind: str) -> int | None:
        """The invariant's count, None when it could not be checked."""
        found = sum(1 for k, _ in self.findings if k == kind)
        return None if kind in self.unavailable and not found else found

    @property
    def exit_code(self) -> int:
        counts = [self.count(kind) for kind in INVARIANTS]
        if any(c for c in counts):
            return 1
        if self.aborted or any(c is None for c in counts):
            return 2
        return 0

    def figures(self) -> list[str]:
        lines = [f"kills: {sum(self.kills.values())}"]
        for kind in INVARIANTS:
            count = self.count(kind)
            lines.append(f"{kind}: {count}" if count is not None else
                         f"{kind}: not available ({self.unavailable[kind]})")
        extras = Counter(kind for kind, _ in self.findings if kind not in INVARIANTS)
        lines += [f"{kind}: {count}" for kind, count in sorted(extras.items())]
        lines += [f"start-up failures: {len(self.start_failures)}", f"started HALTED: {len(self.halted_starts)}",
                  f"crash points not reached: {self.crash_points_missed}"]
        for q, label in ((50, "p50"), (99, "p99")):
            value = percentile(self.restart_ready_ms, q)
            if value and self.first_ready_ms:
                lines.append(f"restart → ready {label}: {_number(value)} ms | baseline first start → ready "
                             f"{_number(self.first_ready_ms)} ms | {_number(value / self.first_ready_ms)}x")
            else:
                lines.append(f"restart → ready {label}: not available (no restart became ready)")
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "kills": dict(self.kills), "kills_total": sum(self.kills.values()),
            "counts": {kind: self.count(kind) for kind in INVARIANTS},
            "unavailable": self.unavailable,
            "restart_ready_ms": {"p50": percentile(self.restart_ready_ms, 50),
                                 "p99": percentile(self.restart_ready_ms, 99), "n": len(self.restart_ready_ms),
                                 "first_start": self.first_ready_ms},
            "findings": [{"kind": f.kind, "key": f.key, "message": f.message, "evidence": f.evidence[:12]}
                         for f in self.findings.values()],
            "start_failures": len(self.start_failures), "crash_points_missed": self.crash_points_missed,
            "halted_starts": self.halted_starts, "daemon_errors": dict(self.daemon_errors),
            "orders": self.orders, "trades": self.trades, "intents": self.intents,
            "position_checks": self.position_checks, "followed_intents": self.followed_intents,
            "final_positions": self.final_positions, "aborted": self.aborted, "gate": self.gate,
            "crash_point_support": self.crash_point_support, "seed": self.options.seed,
            "faults": self.options.faults, "venue": self.options.venue, "work_dir": str(self.work_dir),
        }


def percentile(values: Sequence[float], q: int) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _number(value: float) -> str:
    return number(value)


# -- the run -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Plan:
    kind: str  # random | event | startup | crash_point
    delay_s: float = 0.0
    event: str = ""
    nth: int = 1
    crash_point: str = ""


class Harness:
    def __init__(self, options: Options, work_dir: Path) -> None:
        self.o = options
        self.work_dir = work_dir
        self.data_dir = work_dir / "data"
        self.rng = random.Random(options.seed)
        self.report = Report(options, work_dir, gate=source_mentions('"reconciliation_passed"'),
                             crash_point_support=source_mentions("TRADER_CRASH_POINT"))
        # Ready: `trading_ready` once the daemon logs it; before, `daemon_started` and (with the gate) its verdict.
        self.ready_groups: list[tuple[str, ...]] = [("trading_ready",)] if source_mentions('"trading_ready"') else \
            [("daemon_started",)] + ([("reconciliation_passed", "reconciliation_failed_halted")]
                                     if self.report.gate else [])
        self.sim: Process | None = None
        self.daemon: Process | None = None
        self.kite: Any = None
        self.rest_url = ""
        self.ws_url = ""
        self.listening: dict[str, Any] = {}
        self.daemon_token = ""
        self.incarnations = 0
        self.exit_flags: dict[str, bool] = {}  # tag → exit, from every run's intent_approved lines
        self.breaches: list[tuple[datetime, str]] = []  # when a loss limit was reached (simulated IST), and which
        self.lot_sizes: dict[str, int] = {}
        self.pending: dict[str, JournalIntent] = {}  # intents unsettled when the daemon died: followed up after start
        self.trades_at_kill = 0
        self.orders_seen: dict[str, dict[str, Any]] = {}  # /orders lists only today's: every order ever read

    def book(self) -> Book:
        """The simulator's book now, with the orders of earlier simulated days (Kite's /orders lists only today's)
        kept from earlier reads."""
        book = read_book(self.kite)
        for order in book.orders:
            self.orders_seen[str(order["order_id"])] = order
        book.orders = list(self.orders_seen.values())
        return book

    # -- set-up and tear-down --------------------------------------------------------------------------------------
    def start_sim(self) -> None:
        argv = [sys.executable, "-m", "trader", "sim", "--port", "0", "--start", SIM_START,
                "--speed", f"{self.o.speed:g}", "--seed", str(self.o.seed), *crash_venue.sim_argv(self.o.venue)]
        if self.o.faults:
            argv += ["--error-rate", "0.05", "--timeout-after-accept", "0.1", "--timeout-mode", self.o.lost_answer,
                     "--timeout-delay", "3", "--rate-limit-rate", "0.03", "--ws-drop-every", "600"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADER_")}
        self.sim = Process("sim", argv, {**env, "PYTHONUNBUFFERED": "1"}, self.work_dir / "sim.log", self.o.tail)
        sim = self.sim
        event = crash_venue.listening_event(self.o.venue)
        if not sim.wait_for(lambda: sim.exited or sim.first(event) is not None, 120):
            raise RuntimeError(f"trader sim did not report {event} within 120 s")
        listening = sim.first(event)
        if listening is None:
            raise RuntimeError(f"trader sim exited {sim.popen.poll()}:\n" + "\n".join(sim.tail))
        self.listening = listening
        self.rest_url, self.ws_url = crash_venue.kite_urls(self.o.venue, listening)
        self.daemon_token = login(self.rest_url) if self.o.venue == "kite" else \
            crash_venue.fyers_login(str(listening["api_root"]))
        self.kite = KiteConnect(API_KEY, root=self.rest_url, timeout=10)
        self.kite.set_access_token(login(self.rest_url))
        note(f"crash: trader sim ({self.o.venue} face) at {self.rest_url} (ws {self.ws_url}), faults "
             f"{'on (' + self.o.lost_answer + ')' if self.o.faults else 'off'}; work dir {self.work_dir}")

    def close(self) -> None:
        for process in (self.daemon, self.sim):
            if process is not None:
                process.stop(15)
                if process.popen.poll() is None:
                    self.report.leftover_pids.append(process.pid)

    def daemon_env(self, crash_point: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADER_")}
        env.update({
            "PYTHONUNBUFFERED": "1",  # every log line is in the pipe before the daemon acts on it
            "TRADER_MODE": "live", "TRADER_LIVE_CONFIRM": "yes", "TRADER_DATA_DIR": str(self.data_dir),
            **crash_venue.daemon_env(self.o.venue, self.listening, self.daemon_token),
            "TRADER_CONTROL__PORT": "0",  # a free port: never the fixed 8780 (a developer's daemon may hold it)
            # Short bars and no cutoff: the strategy enters and exits every few simulated minutes.
            "TRADER_STRATEGY__BAR_SECONDS": "10", "TRADER_STRATEGY__CONFIDENCE_CUTOFF": "0",
            "TRADER_STRATEGY__FIRST_ENTRY_TIME": "09:15:00",
        })
        if crash_point:
            env["TRADER_CRASH_POINT"] = crash_point
        return env

    def spawn(self, plan: Plan) -> Process:
        if self.daemon is not None:
            self.daemon.kill()  # never two daemons on one data dir
        self.incarnations += 1
        crash_point = f"{plan.crash_point}:{plan.nth}" if plan.kind == "crash_point" else ""
        self.daemon = Process(f"daemon-{self.incarnations}",
                              [sys.executable, "-m", "trader", "run", "--auto-execution"],
                              self.daemon_env(crash_point), self.work_dir / f"daemon-{self.incarnations:03d}.log",
                              self.o.tail)
        return self.daemon

    # -- planning ----------------------------------------------------------------------------------------------------
    def plan(self) -> Plan:
        kinds = ["random", "event", "startup"] + (["crash_point"] * 2 if self.report.crash_point_support else [])
        weights = [3, 3, 1] + ([2, 2] if self.report.crash_point_support else [])
        kind = self.rng.choices(kinds, weights)[0]
        if kind == "random":
            return Plan("random", delay_s=self.rng.uniform(0.0, self.o.max_uptime_s))
        if kind == "event":
            return Plan("event", event=self.rng.choice(KILL_EVENTS), nth=self.rng.randint(1, 3))
        if kind == "startup":
            typical = statistics.median(self.report.restart_ready_ms or [self.report.first_ready_ms or 2000.0])
            return Plan("startup", delay_s=self.rng.uniform(0.0, typical / 1000))
        return Plan("crash_point", crash_point=self.rng.choice(CRASH_POINTS), nth=self.rng.randint(1, 2))

    # -- one cycle ---------------------------------------------------------------------------------------------------
    def wait_ready(self, daemon: Process, timeout_s: float) -> dict[str, Any] | None:
        daemon.wait_for(lambda: daemon.exited or self.ready_line(daemon) is not None, timeout_s)
        return self.ready_line(daemon)

    def ready_line(self, daemon: Process) -> dict[str, Any] | None:
        """The line that made the daemon ready (the last of the lines it needs), None until it is."""
        found = [daemon.first(*group) for group in self.ready_groups]
        if any(line is None for line in found):
            return None
        return max((line for line in found if line is not None), key=lambda line: float(line["harness_at"]))

    def start_until_ready(self, plan: Plan) -> tuple[Process, dict[str, Any] | None]:
        """Start the daemon; on a start that dies or hangs before ready (not a kill of ours), record it and start
        again, up to ``max_start_failures`` times in a row."""
        for _ in range(self.o.max_start_failures):
            daemon = self.spawn(plan)
            if plan.kind == "startup":
                return daemon, None
            ready = self.wait_ready(daemon, self.o.ready_timeout_s)
            if ready is not None:
                return daemon, ready
            if daemon.exited and daemon.popen.wait() == -signal.SIGKILL and plan.kind == "crash_point":
                return daemon, None  # it reached its crash point during start-up (the reconciliation's own work)
            daemon.kill()
            why = (f"exited {daemon.popen.returncode} before ready" if daemon.exited or daemon.popen.returncode
                   else f"not ready within {self.o.ready_timeout_s:g} s")
            self.report.start_failures.append(f"{daemon.name}: {why}")
            note(f"crash: {daemon.name} {why}; last lines:\n  " + "\n  ".join(list(daemon.tail)[-8:]))
            self.collect(daemon)
        raise RuntimeError(f"the daemon failed to become ready {self.o.max_start_failures} times in a row "
                           f"(see {self.work_dir})")

    def cycle(self, plan: Plan) -> None:
        daemon, ready = self.start_until_ready(plan)
        if plan.kind == "startup":
            daemon.wait_for(lambda: daemon.exited or self.ready_line(daemon) is not None, plan.delay_s)
            daemon.kill()
            self.after_kill(daemon, "startup")
            return
        if ready is not None:
            self.on_ready(daemon, ready)
            self.check_after_restart(daemon, ready)
        if plan.kind == "crash_point":
            if daemon.wait_exit(self.o.event_wait_s):
                daemon.kill()  # reap it
                died = daemon.popen.returncode
                self.after_kill(daemon, f"crash_point:{plan.crash_point}" if died == -signal.SIGKILL
                                else f"exited_{died}")
                return
            self.report.crash_points_missed += 1
            note(f"crash: {daemon.name} did not reach {plan.crash_point}:{plan.nth} within "
                 f"{self.o.event_wait_s:g} s: killed instead")
            daemon.kill()
            self.after_kill(daemon, "crash_point_not_reached")
            return
        if plan.kind == "event":
            seen = [0]

            def hook(line: dict[str, Any]) -> None:
                if line.get("event") == plan.event:
                    seen[0] += 1
                    if seen[0] == plan.nth:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(daemon.pid, signal.SIGKILL)

            daemon.on_line = hook
            if not daemon.wait_exit(self.o.event_wait_s):
                daemon.kill()
                self.after_kill(daemon, "event_timeout")
                return
            daemon.kill()
            self.after_kill(daemon, f"after:{plan.event}")
            return
        daemon.wait_exit(plan.delay_s)
        daemon.kill()
        self.after_kill(daemon, "random")

    def on_ready(self, daemon: Process, ready: dict[str, Any]) -> None:
        elapsed = (float(ready["harness_at"]) - daemon.started) * 1000
        if not self.report.first_ready_ms:
            self.report.first_ready_ms = elapsed
        else:
            self.report.restart_ready_ms.append(elapsed)
        halted = daemon.first("reconciliation_failed_halted")
        if halted is not None or ready.get("state") == "HALTED":
            halted = halted or ready
            self.report.halted_starts.append(f"{daemon.name}: {halted.get('reason', '')}")

    def after_kill(self, daemon: Process, how: str) -> None:
        self.report.kills[how] += 1
        self.collect(daemon)
        if daemon.popen.returncode != -signal.SIGKILL:
            self.report.add(Finding("daemon exits on its own", daemon.name,
                                    f"{daemon.name} exited {daemon.popen.returncode} before it was killed",
                                    [f"{daemon.name}: {line}" for line in list(daemon.tail)[-8:]]))
        book = self.book()
        self.trades_at_kill = len(book.trades)
        journal = read_journal(self.data_dir / "live.sqlite3")
        if isinstance(journal, dict):
            self.pending.update({i: intent for i, intent in journal.items() if not self.settled(intent, book)})
        total = sum(self.report.kills.values())
        if total % 10 == 0 or total <= 3:
            note(f"crash: {total} kills ({dict(self.report.kills)}), {len(book.orders)} orders, "
                 f"{len(book.trades)} trades at the simulator")

    def collect(self, daemon: Process) -> None:
        """What the harness learns from a finished run's log: exit flags by tag, loss-limit breaches, error lines."""
        for line in daemon.lines:
            event = line.get("event")
            if event == "intent_approved":
                self.exit_flags[str(line.get("tag"))] = bool(line.get("exit"))
            elif event == "risk_state" and "limit reached" in str(line.get("reason", "")):
                self.breaches.append((ist_from_ns(int(line.get("event_ts_ns") or 0)), str(line.get("limit"))))
            if line.get("level") in ("error", "critical"):
                self.report.daemon_errors[str(event)] += 1

    # -- checks ------------------------------------------------------------------------------------------------------
    @staticmethod
    def settled(intent: JournalIntent, book: Book) -> bool:
        """One terminal state that agrees with the simulator, or still open with its order open there."""
        orders = book.by_tag().get(intent.tag, [])
        if intent.status == "terminal":
            if not orders:
                return intent.terminal_status in ("REJECTED", "CANCELLED")  # never sent, and says so
            return str(orders[0]["status"]) == intent.terminal_status
        return len(orders) == 1 and str(orders[0]["status"]) not in TERMINAL

    def check_after_restart(self, daemon: Process, ready: dict[str, Any]) -> None:
        self.check_positions(daemon)
        self.follow_pending(daemon)
        self.check_book(self.book())

    def check_positions(self, daemon: Process) -> None:
        if not self.report.gate:
            self.report.unavailable["position mismatches"] = "the daemon logs no reconciliation_passed line yet"
            return
        passed = daemon.first("reconciliation_passed")
        if passed is None:
            return  # started HALTED: counted in halted_starts
        theirs = {str(s): int(q) for s, q in dict(passed.get("positions") or {}).items() if int(q)}
        self.report.position_checks += 1
        book = self.book()
        moments = list(positions_after(book.trades))
        if theirs in moments[min(self.trades_at_kill, len(moments) - 1):]:
            return
        self.report.add(Finding("position mismatches", f"{daemon.name}",
                                f"{daemon.name}: reconciliation_passed positions {theirs} match no moment of the "
                                f"simulator's book since the kill (trades {self.trades_at_kill}..{len(book.trades)};"
                                f" now {book.positions})", [json.dumps(_public(passed))]))

    def follow_pending(self, daemon: Process) -> None:
        """Intents unsettled when the daemon died must settle once it is back: wait (on the journal and the
        simulator's book) up to ``settle_s`` for each to have one terminal state or an open order."""
        if not self.pending:
            return
        self.report.followed_intents += len(self.pending)
        path = self.data_dir / "live.sqlite3"
        deadline = time.monotonic() + self.o.settle_s
        while True:
            journal = read_journal(path)
            if not isinstance(journal, dict):
                return
            book = self.book()
            for intent_id in list(self.pending):
                now = journal.get(intent_id)
                if now is not None and self.settled(now, book):
                    del self.pending[intent_id]
            if not self.pending or daemon.exited or time.monotonic() > deadline:
                break
            daemon.wait_for(lambda: daemon.exited, 0.2)  # a new line or exit wakes it; re-read after a moment
        if daemon.exited:
            return  # killed meanwhile: the next run must settle them
        for intent_id, before in self.pending.items():
            now = journal.get(intent_id, before)
            orders = book.by_tag().get(now.tag, [])
            self.report.add(Finding(
                "lost intents", intent_id,
                f"{intent_id}: journal status {now.status!r} terminal {now.terminal_status!r} order {now.order_id!r}"
                f" {self.o.settle_s:g} s after {daemon.name} was ready; the simulator has "
                f"{[(o['order_id'], o['status']) for o in orders]}", self.evidence(intent_id)))
        self.pending.clear()

    def check_book(self, book: Book, journal: dict[str, JournalIntent] | str | None = None) -> None:
        report = self.report
        report.orders, report.trades = len(book.orders), len(book.trades)
        journal = journal if journal is not None else read_journal(self.data_dir / "live.sqlite3")
        by_tag = book.by_tag()
        journal_tags = {i.tag for i in journal.values()} if isinstance(journal, dict) else set()
        # Duplicates: by tag, and by intent (its tag and the order id the journal holds).
        for tag, orders in by_tag.items():
            for extra in sorted(orders, key=lambda o: str(o["order_id"]))[1:]:
                report.add(Finding("duplicate orders", str(extra["order_id"]),
                                   f"tag {tag} has {len(orders)} orders at the simulator: "
                                   f"{[(o['order_id'], o['status']) for o in orders]}", self.evidence(tag)))
            if isinstance(journal, dict):
                # Write-ahead: the journal (read after the book) holds the intent of every order at the broker.
                if tag not in journal_tags:
                    report.add(Finding("lost intents", tag,
                                       f"order {orders[0]['order_id']} ({orders[0]['status']}) under tag {tag} at the "
                                       f"simulator, but no intent with that tag in the journal", self.evidence(tag)))
            elif tag not in self.exit_flags:
                self.collect_running()
                if tag not in self.exit_flags:
                    report.add(Finding("orders without an intent", tag,
                                       f"order {orders[0]['order_id']} tag {tag}: no intent the daemon approved",
                                       self.evidence(tag)))
        if isinstance(journal, dict):
            report.intents = len(journal)
            by_id = {str(o["order_id"]): o for o in book.orders}
            for intent in journal.values():
                linked = {str(o["order_id"]) for o in by_tag.get(intent.tag, [])}
                if intent.order_id and intent.order_id in by_id:
                    linked.add(intent.order_id)
                if len(linked) > 1:
                    for extra_id in sorted(linked)[1:]:
                        report.add(Finding("duplicate orders", extra_id,
                                           f"intent {intent.intent_id} has orders {sorted(linked)}",
                                           self.evidence(intent.intent_id)))
                if len(intent.terminal_events) > 1:
                    report.add(Finding("lost intents", intent.intent_id,
                                       f"intent {intent.intent_id} has {len(intent.terminal_events)} terminal states "
                                       f"{sorted(intent.terminal_events)}", self.evidence(intent.intent_id)))
        else:
            report.unavailable["lost intents"] = journal
        self.check_limits(book, journal if isinstance(journal, dict) else {})

    def collect_running(self) -> None:
        if self.daemon is not None:
            for line in list(self.daemon.lines):
                if line.get("event") == "intent_approved":
                    self.exit_flags[str(line.get("tag"))] = bool(line.get("exit"))

    def is_exit(self, tag: str, journal: Mapping[str, JournalIntent]) -> bool | None:
        for intent in journal.values():
            if intent.tag == tag and intent.purpose:
                return intent.purpose == "EXIT"
        return self.exit_flags.get(tag)

    def lot_size(self, symbol: str) -> int:
        if symbol not in self.lot_sizes:
            for instrument in retry("instruments()", lambda: self.kite.instruments("NFO")):
                self.lot_sizes[str(instrument["tradingsymbol"])] = int(instrument["lot_size"])
        return self.lot_sizes.get(symbol, 0)

    def check_limits(self, book: Book, journal: Mapping[str, JournalIntent]) -> None:
        report = self.report
        for order in book.orders:
            tag, symbol = str(order.get("tag") or ""), str(order["tradingsymbol"])
            if self.is_exit(tag, journal) is not False:
                continue  # exits may carry a whole position; unknown tags are reported above
            lot = self.lot_size(symbol)
            if lot and int(order["quantity"]) > MAX_LOTS_PER_TRADE * lot:
                report.add(Finding("limit breaches", f"lots:{order['order_id']}",
                                   f"entry order {order['order_id']} ({tag}) for {order['quantity']} {symbol}: "
                                   f"more than {MAX_LOTS_PER_TRADE} lot(s) of {lot}", self.evidence(tag)))
            placed = as_ist(order.get("order_timestamp"))
            for when, limit in self.breaches:
                if placed is not None and placed.date() == when.date() and placed > when:
                    report.add(Finding("limit breaches", f"breached-day:{order['order_id']}",
                                       f"entry order {order['order_id']} ({tag}) at {placed} on a day whose {limit} "
                                       f"was reached at {when}", self.evidence(tag)))
                    break
        # Open positions after every trade: never more than the limit, never net short (short options are off).
        over = False
        for index, held in enumerate(positions_after(book.trades)):
            if len(held) > MAX_POSITIONS_PER_SYMBOL and not over:
                report.add(Finding("limit breaches", f"positions:{index}",
                                   f"{len(held)} open positions after trade {index} (limit "
                                   f"{MAX_POSITIONS_PER_SYMBOL}): {held}"))
            over = len(held) > MAX_POSITIONS_PER_SYMBOL
            for symbol, quantity in held.items():
                if quantity < 0:
                    trade = book.trades[index - 1]
                    report.add(Finding("limit breaches", f"short:{symbol}",
                                       f"net short {quantity} {symbol} after trade {trade['trade_id']} (order "
                                       f"{trade['order_id']})", self.evidence(str(trade["order_id"]))))

    def evidence(self, needle: str, limit: int = 12) -> list[str]:
        """The daemon log lines (all runs) that mention ``needle``, each prefixed with its run."""
        out: list[str] = []
        for path in sorted(self.work_dir.glob("daemon-*.log")):
            with contextlib.suppress(OSError):
                for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
                    if needle in text:
                        out.append(f"{path.stem}: {text}")
        return out[-limit:]

    # -- the end -----------------------------------------------------------------------------------------------------
    def finish(self) -> None:
        """Start once more, check, stop with SIGTERM, and check the final state."""
        daemon, ready = self.start_until_ready(Plan("final"))
        if ready is not None:
            self.on_ready(daemon, ready)
            self.check_after_restart(daemon, ready)
        code = daemon.stop(30)
        self.collect(daemon)
        if code != 0:
            note(f"crash: the last run exited {code} after SIGTERM; last lines:\n  " + "\n  ".join(daemon.tail))
        book = self.book()
        journal = read_journal(self.data_dir / "live.sqlite3")
        if isinstance(journal, dict):
            for intent in journal.values():
                if not self.settled(intent, book):
                    orders = [(o["order_id"], o["status"]) for o in book.by_tag().get(intent.tag, [])]
                    self.report.add(Finding(
                        "lost intents", intent.intent_id,
                        f"{intent.intent_id} at the end: journal status {intent.status!r} terminal "
                        f"{intent.terminal_status!r}; the simulator has {orders}",
                        self.evidence(intent.intent_id)))
        self.check_book(book, journal)
        self.report.final_positions = book.positions
        summary = daemon.first("summary")
        if summary is not None and int(summary.get("open_positions", 0)) != len(book.positions):
            self.report.add(Finding(
                "unmanaged positions at the end", "summary",
                f"the last run's summary says open_positions={summary.get('open_positions')} while the simulator "
                f"holds {book.positions}", [json.dumps(_public(summary))]))
        if not isinstance(journal, dict):
            self.vanished_from_logs(book)

    def vanished_from_logs(self, book: Book) -> None:
        """Without a journal to read: intents the daemon approved (its logs say) that never reached the simulator
        and were never reported as rejected or cancelled — forgotten by a kill."""
        by_tag = book.by_tag()
        for path in sorted(self.work_dir.glob("daemon-*.log")):
            approved: dict[str, str] = {}
            ended: set[str] = set()
            for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    line = json.loads(text)
                    if not isinstance(line, dict):
                        continue
                    if line.get("event") == "intent_approved":
                        approved[str(line.get("tag"))] = text
                    elif line.get("event") in ("order_rejected", "order_cancelled_unfilled",
                                               "order_state_unknown_at_shutdown"):
                        ended.add(str(line.get("tag", "")))
            for tag, text in approved.items():
                if tag not in by_tag and tag not in ended:
                    self.report.add(Finding("intents forgotten by a kill (from the logs)", tag,
                                            f"{path.stem} approved {tag}; no order at the simulator and no end "
                                            f"logged for it", [f"{path.stem}: {text}"]))

    def run(self) -> Report:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.start_sim()
            for _ in range(self.o.kills):
                self.cycle(self.plan())
            self.finish()
        except RuntimeError as exc:
            self.report.aborted = str(exc)
            note(f"crash: aborted: {exc}")
        finally:
            self.close()
        return self.report


def _public(line: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in line.items() if k != "harness_at"}


def run(options: Options) -> Report:
    """One harness run; every process it started is stopped before it returns (or raises)."""
    work_dir = options.work_dir or Path(tempfile.mkdtemp(prefix="trader-crash-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    report = Harness(options, work_dir).run()
    if report.exit_code == 0 and options.work_dir is None and not options.keep:
        shutil.rmtree(work_dir, ignore_errors=True)
    return report


def describe(report: Report) -> None:
    """Every finding with its evidence, and the context, on standard error."""
    for finding in report.findings.values():
        note(f"FINDING [{finding.kind}] {finding.message}")
        for line in finding.evidence:
            note(f"    {line}")
    for failure in report.start_failures:
        note(f"start-up failure: {failure}")
    for halted in report.halted_starts:
        note(f"started HALTED: {halted}")
    if report.daemon_errors:
        note(f"daemon error lines by event: {dict(report.daemon_errors.most_common())}")
    note(f"crash points missed: {report.crash_points_missed}; gate in the daemon: {report.gate}; crash points in "
         f"the daemon: {report.crash_point_support}; orders {report.orders}, trades {report.trades}, journaled "
         f"intents {report.intents}, position checks {report.position_checks}, intents followed across a kill "
         f"{report.followed_intents}; final positions at the simulator {report.final_positions}")
    if report.aborted:
        note(f"ABORTED: {report.aborted}")
    if report.exit_code and report.work_dir.exists():
        note(f"logs kept in {report.work_dir}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--kills", type=int, default=None, help="SIGKILLs in the run (default 200; --quick: 6)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--faults", action=argparse.BooleanOptionalAction, default=True,
                        help="the simulator's fault knobs: 5xx, accepted-then-lost, 429, WebSocket drops (default on)")
    parser.add_argument("--lost-answer", choices=("drop", "delay"), default="drop")
    parser.add_argument("--speed", type=float, default=120.0, help="the simulator's speed (default 120)")
    parser.add_argument("--quick", action="store_true", help="a handful of kills (CI)")
    parser.add_argument("--venue", choices=crash_venue.VENUES, default="kite",
                        help="the wire face the daemon trades through (default kite)")
    parser.add_argument("--json", action="store_true", help="one JSON object as the last line")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep the logs and data dir here")
    args = parser.parse_args(argv)
    kills = args.kills if args.kills is not None else (6 if args.quick else 200)
    report = run(Options(kills=kills, seed=args.seed, faults=args.faults, lost_answer=args.lost_answer,
                         speed=args.speed, work_dir=args.work_dir, venue=args.venue))
    describe(report)
    for line in report.figures():
        print(line, flush=True)
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, default=str), flush=True)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
