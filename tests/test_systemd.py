"""systemd's notify protocol over a real unix datagram socket the test binds: the notifier (path and abstract
addresses, no-op without NOTIFY_SOCKET, a failed or full socket never raises nor blocks), the watchdog (pings only
while the loop runs and the feed is fresh during market hours) and the daemon's READY=1 / STATUS= / STOPPING=1, in
process and as a `trader run` subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest

from trader.app import App
from trader.clock import SimClock
from trader.config import load_settings
from trader.health import Check, HealthProbe, HealthReport
from trader.loop_monitor import LoopMonitor
from trader.market.calendar import ist_date, ist_text
from trader.service_settings import HealthSettings
from trader.store.journal import Journal
from trader.systemd import (
    FEED_RESTART_STATE,
    ServiceNotifier,
    SystemdNotifier,
    Watchdog,
    socket_address,
    watchdog_interval_s,
)

from helpers import DAEMON_WAIT_S, T0, captured_logs, daemon_env, wait_for

NS = 1_000_000_000
T0_DAY = ist_date(T0).toordinal()


class NotifySocket:
    """What systemd binds: an AF_UNIX datagram socket; ``drain()`` returns the datagrams queued so far."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(socket_address(address))
        self.sock.setblocking(False)
        self.received: list[str] = []

    def drain(self) -> list[str]:
        got: list[str] = []
        while True:
            try:
                got.append(self.sock.recv(65536).decode())
            except BlockingIOError:
                break
        self.received.extend(got)
        return got

    def close(self) -> None:
        self.sock.close()
        if not self.address.startswith("@"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    receiver = NotifySocket(str(tmp_path / "notify.sock"))
    yield receiver
    receiver.close()


def pings(datagrams: list[str]) -> int:
    return sum("WATCHDOG=1" in d.splitlines() for d in datagrams)


def more_pings(receiver: NotifySocket, count: int) -> Callable[[], bool]:
    """A condition: ``count`` more WATCHDOG=1 have arrived than so far."""
    baseline = pings(receiver.received)

    def arrived() -> bool:
        receiver.drain()
        return pings(receiver.received) >= baseline + count
    return arrived


# -- the notifier ---------------------------------------------------------------------------------------------------
def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = SystemdNotifier("")
    assert not notifier.enabled
    assert notifier.notify("READY=1") is False and notifier.sent == 0
    notifier.close()


def test_path_and_abstract_sockets_receive_the_fields(tmp_path: Path, notify_socket: NotifySocket) -> None:
    notifier = SystemdNotifier(notify_socket.address)
    assert notifier.notify("READY=1", "STATUS=paper ACTIVE, day P&L ₹0.00") is True
    assert notify_socket.drain() == ["READY=1\nSTATUS=paper ACTIVE, day P&L ₹0.00"]
    notifier.close()
    abstract = NotifySocket(f"@{tmp_path}/abstract")  # '@' is systemd's spelling of a leading NUL byte
    try:
        notifier = SystemdNotifier(abstract.address)
        assert notifier.notify("WATCHDOG=1") and notifier.notify("STOPPING=1")
        assert abstract.drain() == ["WATCHDOG=1", "STOPPING=1"] and notifier.sent == 2
        notifier.close()
    finally:
        abstract.close()


def test_the_environment_names_the_socket_and_is_left_alone(monkeypatch: pytest.MonkeyPatch,
                                                              notify_socket: NotifySocket) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.address)
    notifier = SystemdNotifier()
    assert notifier.notify("READY=1")
    assert notify_socket.drain() == ["READY=1"]
    assert os.environ["NOTIFY_SOCKET"] == notify_socket.address  # not unset: systemd's sd_notify(0, ...) way
    notifier.close()


def test_a_missing_socket_is_logged_once_and_never_raised(tmp_path: Path) -> None:
    notifier = SystemdNotifier(str(tmp_path / "nobody-listens.sock"))
    with captured_logs() as lines:
        assert notifier.notify("READY=1") is False
        assert notifier.notify("WATCHDOG=1") is False
    failed = [line for line in lines if line["event"] == "systemd_notify_failed"]
    assert len(failed) == 1 and failed[0]["sent"] == "READY" and "nobody-listens.sock" in failed[0]["socket"]
    notifier.close()


def test_a_full_socket_does_not_block_the_sender(notify_socket: NotifySocket) -> None:
    # Nobody reads: the receiver's queue fills up (net.unix.max_dgram_qlen). A blocking send would hang here; the
    # notifier's send fails at once with EAGAIN, logged once. The sends run in a thread so a hang fails the test.
    notifier = SystemdNotifier(notify_socket.address)
    outcome: list[int] = []

    def flood() -> None:
        for count in range(1_000_000):
            if not notifier.notify("WATCHDOG=1"):
                outcome.append(count)
                return

    with captured_logs() as lines:
        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        sender.join(timeout=30)
        assert not sender.is_alive(), "the notifier blocked on a full socket"
    assert outcome and outcome[0] > 0  # some went out before the queue was full
    [failed] = [line for line in lines if line["event"] == "systemd_notify_failed"]
    assert "temporarily unavailable" in failed["error"].lower()
    assert len(notify_socket.drain()) == outcome[0]
    notifier.close()


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process_only() -> None:
    pid = os.getpid()
    assert watchdog_interval_s({}, pid) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}, pid) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(pid)}, pid) == 0.5
    assert watchdog_interval_s({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(pid + 1)}, pid) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}, pid) is None
    with captured_logs() as lines:
        assert watchdog_interval_s({"WATCHDOG_USEC": "thirty"}, pid) is None
    assert [line["event"] for line in lines] == ["systemd_watchdog_usec_invalid"]


def test_pings_keep_their_interval_while_the_status_line_goes_more_often(notify_socket: NotifySocket) -> None:
    # WatchdogSec=30: a ping every 15 s; a status line that changes all the time, sent at most every 10 s. Rounds run
    # every 5 s here; a ping is sent when the last is at least 0.75 x 15 s old, so the gap stays 15 s (< 30 s).
    now = [0.0]
    line = ["paper ACTIVE, day P&L ₹0.00"]
    healthy = [True]

    def judge() -> HealthReport:
        return HealthReport((Check("feed", healthy[0], "last tick 45.0 s ago"),))

    watchdog = Watchdog(SystemdNotifier(notify_socket.address), interval_s=15.0, judge=judge,
                        status=lambda: line[0], status_every_s=10.0, monotonic=lambda: now[0])
    sent: list[tuple[float, str]] = []
    with captured_logs() as lines:
        for step in range(13):  # 0 s to 60 s, a round every 5 s
            now[0] = step * 5.0
            line[0] = f"paper ACTIVE, day P&L ₹{step}.00"
            healthy[0] = not 30 <= now[0] <= 40
            watchdog.beat()
            sent.extend((now[0], datagram) for datagram in notify_socket.drain())
    ping_times = [t for t, d in sent if d == "WATCHDOG=1"]
    assert ping_times == [0.0, 15.0, 45.0, 60.0]  # 30-40 s: the feed check fails, no ping (resumes at 45 s)
    status_times = [t for t, d in sent if d.startswith("STATUS=")]
    assert status_times == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]  # at most every 10 s
    assert [line["event"] for line in lines] == ["watchdog_ping_withheld", "watchdog_ping_resumed"]
    assert watchdog.withheld == 3 and watchdog.pings == 4


async def test_a_failing_health_read_sends_no_ping_is_logged_once_and_the_task_goes_on(
        notify_socket: NotifySocket) -> None:
    calls = [0]

    def judge() -> HealthReport:
        calls[0] += 1
        if calls[0] <= 3:
            raise RuntimeError("a bug in a health read")
        return HealthReport(())

    watchdog = Watchdog(SystemdNotifier(notify_socket.address), interval_s=0.02, judge=judge, status=lambda: "x")
    with captured_logs() as lines:
        watchdog.start()
        try:
            await wait_for(more_pings(notify_socket, 2))
        finally:
            await watchdog.stop()
    assert watchdog.failures == 3 and calls[0] >= 5
    assert [line["event"] for line in lines].count("systemd_watchdog_failed") == 1


# -- the watchdog judges the feed -------------------------------------------------------------------------------------
def fake_app(now_ns: int, event_ns: int) -> Any:
    """What HealthProbe reads off an App, set by the test: a fresh feed, the gate passed, the loop monitor idle."""
    settings = load_settings({"mode": "paper"})
    return SimpleNamespace(
        settings=SimpleNamespace(health=HealthSettings()),
        feeds=[SimpleNamespace(last_tick_wall_ns=now_ns)],
        loop_monitor=LoopMonitor(interval_s=0.02),
        ready_wall_ns=now_ns,
        stopping=False,
        calendar=settings.market_calendar(),
        clock=SimClock(event_ns),
        risk=SimpleNamespace(venue_problems={}),
        feed_status="",
    )


async def test_a_stale_feed_in_market_hours_stops_the_pings_and_a_fresh_one_resumes_them(
        notify_socket: NotifySocket) -> None:
    app = fake_app(time.time_ns(), T0)  # T0: Fri 20 Nov 2026 10:05 IST, market open
    probe = HealthProbe(cast(App, app))
    watchdog = Watchdog(SystemdNotifier(notify_socket.address), interval_s=0.02, judge=probe.watchdog_report,
                        status=lambda: "paper ACTIVE", status_every_s=0.02)
    app.loop_monitor.start()
    with captured_logs() as lines:
        watchdog.start()
        try:
            await wait_for(more_pings(notify_socket, 3))
            # The status line once: it did not change.
            assert [d for d in notify_socket.received if d.startswith("STATUS=")] == ["STATUS=paper ACTIVE"]

            # The last tick is 31 s old (limit 30 s): every later round withholds the ping.
            app.feeds[0].last_tick_wall_ns = time.time_ns() - 31 * NS
            notify_socket.drain()  # pings sent while the feed was fresh (this code runs between two rounds)
            withheld = watchdog.withheld
            await wait_for(lambda: watchdog.withheld >= withheld + 10)
            assert pings(notify_socket.drain()) == 0

            # Outside market hours a silent feed is normal: pings go on.
            app.clock = SimClock(T0 + 10 * 3600 * NS)  # 20:05 IST
            await wait_for(more_pings(notify_socket, 2))

            # Back in the session, a fresh tick: pings resume.
            app.clock = SimClock(T0)
            app.feeds[0].last_tick_wall_ns = time.time_ns() - 31 * NS
            notify_socket.drain()
            withheld = watchdog.withheld
            await wait_for(lambda: watchdog.withheld >= withheld + 3)
            app.feeds[0].last_tick_wall_ns = time.time_ns()
            notify_socket.drain()
            await wait_for(more_pings(notify_socket, 2))
        finally:
            await watchdog.stop()
            await app.loop_monitor.stop()
    withheld_lines = [line for line in lines if line["event"] == "watchdog_ping_withheld"]
    # Two outages, one line each (the same failure is repeated at most once a minute), naming the feed check.
    assert len(withheld_lines) == 2
    assert all(line["failing"] == "feed" and "31." in line["detail"] for line in withheld_lines)
    assert sum(line["event"] == "watchdog_ping_resumed" for line in lines) == 2
    stopped = watchdog.pings
    notify_socket.drain()
    assert not watchdog.running and watchdog.pings == stopped


# -- the watchdog lives on the event loop -----------------------------------------------------------------------------
# Fri 20 Nov 2026 10:00 IST, built-in market at 5x: a test's few seconds stay inside the session.
START = "2026-11-20T10:00:00"


def paper_settings(data_dir: Path) -> Any:
    return load_settings({
        "mode": "paper", "data_dir": str(data_dir), "heartbeat_seconds": 0.5,
        "sim": {"start": START, "speed": 5, "seed": 11}, "strategy": {"confidence_cutoff": 100},
        # The watchdog is what is tested: no tick recording and no run folder, whose writing at stop (compaction,
        # tables) took this test past its 30 s stop wait on a loaded machine.
        "recorder": {"enabled": False}, "runs": {"enabled": False},
    })


@pytest.mark.usefixtures("clean_env")
async def test_a_blocked_event_loop_sends_no_pings_and_they_resume_after(
        tmp_path: Path, notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.address)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s
    app = App(paper_settings(tmp_path / "data"))
    task = asyncio.create_task(app.run(install_signal_handlers=False))
    try:
        await wait_for(lambda: "READY=1" in notify_socket.drain() or task.done(), within_s=30)
        assert not task.done()
        await wait_for(more_pings(notify_socket, 3), within_s=10)

        # A callback that blocks the loop for 10 ping intervals, as a synchronous call in a handler would. It reads
        # the socket itself just before and just after: whatever it finds after was sent while the loop was blocked.
        # A pinger on another thread shows that this measurement sees datagrams sent during the block.
        window: dict[str, list[str]] = {}
        control = SystemdNotifier(notify_socket.address)
        blocked = threading.Event()

        def other_thread_pinger() -> None:
            while not blocked.is_set():
                time.sleep(0.01)
            while blocked.is_set():
                control.notify("THREAD=1")
                time.sleep(0.1)

        def wedge() -> None:
            window["before"] = notify_socket.drain()
            blocked.set()
            time.sleep(1.0)
            blocked.clear()
            window["during"] = notify_socket.drain()

        pinger = threading.Thread(target=other_thread_pinger, daemon=True)
        pinger.start()
        pings_before = app.service.watchdog.pings
        asyncio.get_running_loop().call_soon(wedge)
        await wait_for(lambda: "during" in window)
        pinger.join(timeout=5)
        control.close()
        assert "THREAD=1" in window["during"]  # the socket was read and a sender off the loop got through
        assert pings(window["during"]) == 0  # the loop's watchdog did not
        await wait_for(more_pings(notify_socket, 2))  # the loop runs again: pings resume
        assert app.service.watchdog.pings >= pings_before + 2
    finally:
        app.request_stop("test over")
        await asyncio.wait_for(task, 30)
    after_stop = notify_socket.drain()
    assert "STOPPING=1" in after_stop[-1].splitlines()[0]
    assert pings(notify_socket.drain()) == 0  # nothing after the stop


# -- `trader run` under a notify socket -------------------------------------------------------------------------------
@dataclass
class Recorder:
    """Reads the daemon's stdout and the notify socket in one thread. After each datagram it drains the pipe, so
    every log line written before that datagram was sent is already in ``lines`` when the datagram is recorded."""

    proc: subprocess.Popen[bytes]
    receiver: NotifySocket
    lines: list[dict[str, Any]] = field(default_factory=list)
    datagrams: list[tuple[str, int]] = field(default_factory=list)  # (datagram, how many log lines were read)
    _partial: bytes = b""

    def run(self) -> None:
        assert self.proc.stdout is not None
        out = self.proc.stdout.fileno()
        os.set_blocking(out, False)
        sock = self.receiver.sock.fileno()
        open_pipe = True
        while open_pipe or self.proc.poll() is None:
            readable, _, _ = select.select([out, sock] if open_pipe else [sock], [], [], 0.5)
            got: list[str] = []
            if sock in readable:
                got = self.receiver.drain()
            if open_pipe:
                open_pipe = self._read_pipe(out)
            self.datagrams.extend((datagram, len(self.lines)) for datagram in got)
        self.datagrams.extend((datagram, len(self.lines)) for datagram in self.receiver.drain())

    def _read_pipe(self, fd: int) -> bool:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            *complete, self._partial = (self._partial + chunk).split(b"\n")
            for raw in complete:
                with contextlib.suppress(orjson.JSONDecodeError):
                    self.lines.append(orjson.loads(raw))

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in list(self.lines) if line.get("event") == name]

    def index(self, event: str) -> int:
        return next(i for i, line in enumerate(list(self.lines)) if line.get("event") == event)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def healthcheck(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trader", "healthcheck", *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def docker_healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The Dockerfile's HEALTHCHECK command as written, `trader` being this venv's."""
    text = (Path(__file__).resolve().parents[1] / "Dockerfile").read_text()
    found = re.search(r"^HEALTHCHECK [^\n]*(?:\\\n[^\n]*)*?CMD (\[.*\])$", text, re.MULTILINE)
    assert found, "no HEALTHCHECK ... CMD [...] in the Dockerfile"
    command = orjson.loads(found.group(1))
    assert command[0] == "trader"
    return subprocess.run([str(Path(sys.executable).parent / "trader"), *command[1:]], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_trader_run_notifies_ready_after_the_gate_pings_and_notifies_stopping(
        tmp_path: Path, notify_socket: NotifySocket) -> None:
    data_dir = tmp_path / "data"
    port = free_port()  # a fixed port, so `trader healthcheck` finds the daemon from the same settings
    env = daemon_env(data_dir, NOTIFY_SOCKET=notify_socket.address, WATCHDOG_USEC="1000000",
                     TRADER_CONTROL__PORT=str(port))
    with (tmp_path / "stderr.txt").open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "trader", "run", "--speed", "60", "--start",
                                 "2026-11-25T09:25"], stdout=subprocess.PIPE, stderr=stderr, env=env)
    recorder = Recorder(proc, notify_socket)
    reader = threading.Thread(target=recorder.run, daemon=True)
    reader.start()
    try:
        def received() -> list[str]:
            return [datagram for datagram, _ in list(recorder.datagrams)]

        def wait(what: str, condition: Any, within_s: float = DAEMON_WAIT_S) -> None:
            deadline = time.monotonic() + within_s
            while not condition():
                assert proc.poll() is None or what == "exit", f"the daemon ended while waiting for {what}"
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                time.sleep(0.05)  # a poll interval: the condition ends the wait

        wait("READY=1", lambda: any("READY=1" in d.splitlines() for d in received()))
        wait("three pings", lambda: pings(received()) >= 3)
        wait("a STATUS= with the trading state", lambda: any("ACTIVE" in d for d in received()))

        # The daemon's own health check, as Docker's HEALTHCHECK runs it: same settings, no token, no --url.
        checked = docker_healthcheck(env)
        assert checked.returncode == 0, checked
        assert checked.stdout.startswith(f"healthy (http://127.0.0.1:{port})")
        checked = healthcheck(env, "--json")
        document = orjson.loads(checked.stdout)
        assert checked.returncode == 0 and document["ok"] is True
        assert set(document["checks"]) == {"gate", "loop", "feed", "broker"}

        proc.send_signal(signal.SIGTERM)
        wait("exit", lambda: proc.poll() is not None, within_s=30)
        reader.join(timeout=10)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
    datagrams = list(recorder.datagrams)
    ready_at = next(i for i, (d, _) in enumerate(datagrams) if "READY=1" in d.splitlines())
    ready_lines = datagrams[ready_at][1]
    # READY=1 only after the gate: the log lines written before it was sent include the gate's and trading_ready.
    seen_before_ready = {line.get("event") for line in recorder.lines[:ready_lines]}
    assert {"reconciliation_passed", "trading_ready", "control_api_listening"} <= seen_before_ready, seen_before_ready
    assert recorder.index("trading_ready") < recorder.index("systemd_notified")
    # Before READY=1: at most the start-up STATUS=, never a ping.
    before = [d for d, _ in datagrams[:ready_at]]
    assert all(d.startswith("STATUS=") for d in before) and pings(before) == 0
    assert any("starting" in d for d in before)
    assert sum("READY=1" in d.splitlines() for d, _ in datagrams) == 1
    after = [d for d, _ in datagrams[ready_at + 1:]]
    stopping_at = next(i for i, d in enumerate(after) if "STOPPING=1" in d.splitlines())
    assert pings(after[:stopping_at]) >= 3 and pings(after[stopping_at:]) == 0
    assert recorder.index("stop_requested") < len(recorder.lines)
    status = [d for d in after if d.startswith("STATUS=paper ACTIVE")]
    assert status and "risk LOW" in status[0] and "day P&L" in status[0] and "health ok" in status[0]
    assert recorder.events("summary"), "no summary: the stop was not the graceful one"
    # The daemon is gone: the health check says unreachable.
    gone = healthcheck(env)
    assert gone.returncode == 3 and "cannot reach the daemon" in gone.stderr


# -- a feed a restart did not cure: one watchdog restart per session ---------------------------------------------------
def notifier_app(journal: Journal, event_ns: int) -> Any:
    app = fake_app(time.time_ns(), event_ns)
    app.settings.mode = "live"
    app.settings.health = HealthSettings()
    app.journal = journal
    app.health = HealthProbe(cast(App, app))
    return app


def test_a_feed_the_restart_did_not_cure_is_spared_for_the_rest_of_the_session(tmp_path: Path) -> None:
    """An exchange-wide halt, or a holiday the calendar does not know: the feed stays silent after the watchdog's
    restart. Without a bound systemd would restart the daemon every few minutes all day (StartLimitBurst never trips
    at that pace), each time reconciling and alerting."""
    journal = Journal(tmp_path / "live.sqlite3")
    env = {"NOTIFY_SOCKET": str(tmp_path / "nobody-listens"), "WATCHDOG_USEC": "30000000"}
    first = notifier_app(journal, T0)
    service = ServiceNotifier(cast(App, first), env=env)
    assert service.judge().ok and journal.load_state(FEED_RESTART_STATE) is None
    first.feeds[0].last_tick_wall_ns = time.time_ns() - 31 * NS
    assert [c.name for c in service.judge().failing] == ["feed"]  # this run: the pings stop, systemd restarts it
    assert journal.load_state(FEED_RESTART_STATE) == {"session_day": T0_DAY, "since": ist_text(T0)}

    # The restarted process, same session, the feed still silent: the watchdog keeps pinging, saying why.
    second = notifier_app(journal, T0 + 200 * NS)
    second.feeds[0].last_tick_wall_ns = 0
    second.ready_wall_ns = time.time_ns() - 300 * NS  # past the first-tick grace
    restarted = ServiceNotifier(cast(App, second), env=env)
    with captured_logs() as lines:
        restarted._load_feed_note()
    assert [line["event"] for line in lines] == ["watchdog_feed_spared"]
    judged = restarted.judge()
    assert judged.ok and "spared" in next(c.detail for c in judged.checks if c.name == "feed")
    assert not second.health.report().ok  # /healthz still says so

    # The feed comes back: the note is cleared and a later stall is judged again.
    second.feeds[0].last_tick_wall_ns = time.time_ns()
    assert restarted.judge().ok and journal.load_state(FEED_RESTART_STATE) == {"session_day": 0, "since": ist_text(
        T0 + 200 * NS)}
    second.feeds[0].last_tick_wall_ns = time.time_ns() - 31 * NS
    assert [c.name for c in restarted.judge().failing] == ["feed"]


def test_a_note_from_an_earlier_session_spares_nothing(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "live.sqlite3")
    journal.save_state(FEED_RESTART_STATE, {"session_day": T0_DAY - 1, "since": "yesterday"}, T0)
    app = notifier_app(journal, T0)
    app.feeds[0].last_tick_wall_ns = time.time_ns() - 31 * NS
    service = ServiceNotifier(cast(App, app), env={"NOTIFY_SOCKET": str(tmp_path / "s"), "WATCHDOG_USEC": "30000000"})
    service._load_feed_note()
    assert service.feed_spared_day == 0 and [c.name for c in service.judge().failing] == ["feed"]
