"""Alerts and systemd in a real `trader run` subprocess (issue #10 fault injection): the stop stays within
settings.shutdown_timeout_seconds while both alert destinations are black holes and the notify socket is full, the
bot token appears nowhere in the output; and a daemon killed with SIGKILL is said to have crashed exactly once by
the next start (and not by the one after a clean stop)."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from trader.config import load_settings

from alerts_fakes import BOT_TOKEN, CHAT_ID
from helpers import DAEMON_WAIT_S, daemon_env, wait_until

pytestmark = pytest.mark.usefixtures("clean_env")

RUN = [sys.executable, "-m", "trader", "run", "--speed", "60", "--start", "2026-11-25T09:25"]


class Process:
    """A `trader run` subprocess whose stdout lines a thread collects (raw bytes, to grep for the token too)."""

    def __init__(self, env: dict[str, str], stderr: Path) -> None:
        with stderr.open("ab") as err:
            self.proc = subprocess.Popen(RUN, stdout=subprocess.PIPE, stderr=err, env=env)
        self.raw: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.raw.append(raw)

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for raw in list(self.raw):
            if f'"{name}"'.encode() in raw:
                with contextlib.suppress(orjson.JSONDecodeError):
                    line = orjson.loads(raw)
                    if line.get("event") == name:
                        found.append(line)
        return found

    def wait_ready(self) -> None:
        wait_until("trading_ready", lambda: self.events("trading_ready") or self.proc.poll() is not None)
        assert self.proc.poll() is None, b"".join(self.raw[-20:]).decode(errors="replace")

    def end(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self.reader.join(timeout=10)


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A port whose connections are accepted by the kernel and never answered."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(1_000)
    try:
        yield hole.getsockname()[1]
    finally:
        hole.close()


@contextlib.contextmanager
def webhook_sink() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    bodies: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(orjson.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    finally:
        server.shutdown()
        server.server_close()


def test_the_stop_with_dead_alert_endpoints_and_a_full_notify_socket_stays_within_the_timeout(tmp_path: Path) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # bound, never read: its queue fills up
    notify_path = tmp_path / "notify.sock"
    notify.bind(str(notify_path))
    with black_hole() as port:
        env = daemon_env(tmp_path / "data", NOTIFY_SOCKET=str(notify_path), WATCHDOG_USEC="200000",
                         TRADER_ALERTS__WEBHOOK_URL=f"http://127.0.0.1:{port}/hook",
                         TRADER_ALERTS__TELEGRAM_BOT_TOKEN=BOT_TOKEN, TRADER_ALERTS__TELEGRAM_CHAT_ID=str(CHAT_ID),
                         TRADER_ALERTS__TELEGRAM_API_ROOT=f"http://127.0.0.1:{port}")
        (tmp_path / "data").mkdir()
        daemon = Process(env, tmp_path / "stderr")
        try:
            daemon.wait_ready()
            # Alerts are waiting on the black holes (started, the Telegram poll) and the notify queue is full.
            wait_until("a failed notify", lambda: daemon.events("systemd_notify_failed"))
            started = time.monotonic()
            daemon.proc.send_signal(signal.SIGTERM)
            code = daemon.proc.wait(timeout=30)
            took = time.monotonic() - started
        finally:
            daemon.end()
    notify.close()
    assert code == 0
    timeout_s = load_settings({}).shutdown_timeout_seconds  # the default the daemon ran with (at most 9 s)
    assert took <= timeout_s, f"the stop took {took:.1f} s (shutdown_timeout_seconds {timeout_s})"
    unsent = daemon.events("alerts_unsent_at_stop")
    assert {line["destination"] for line in unsent} == {"telegram", "webhook"}
    output = b"".join(daemon.raw) + (tmp_path / "stderr").read_bytes()
    assert BOT_TOKEN.encode() not in output and b"TEST-token" not in output
    print(f"stop with dead alert endpoints: {took:.2f} s")


def test_a_killed_daemon_is_said_to_have_crashed_exactly_once(tmp_path: Path) -> None:
    with webhook_sink() as (url, bodies):
        env = daemon_env(tmp_path / "data", TRADER_ALERTS__WEBHOOK_URL=url)
        (tmp_path / "data").mkdir()

        def kinds() -> list[str]:
            return [str(body["kind"]) for body in list(bodies)]

        first = Process(env, tmp_path / "stderr")
        try:
            first.wait_ready()
            wait_until("the first started alert", lambda: kinds().count("started") == 1)
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(timeout=30)
        finally:
            first.end()
        assert "crash_restart" not in kinds()

        second = Process(env, tmp_path / "stderr")
        try:
            second.wait_ready()
            wait_until("the second started alert", lambda: kinds().count("started") == 2)
            second.proc.send_signal(signal.SIGTERM)
            assert second.proc.wait(timeout=30) == 0
        finally:
            second.end()
        wait_until("the stopped alert", lambda: "stopped" in kinds(), timeout_s=10)
        assert kinds().count("crash_restart") == 1

        third = Process(env, tmp_path / "stderr")
        try:
            third.wait_ready()
            wait_until("the third started alert", lambda: kinds().count("started") == 3, timeout_s=DAEMON_WAIT_S)
            third.proc.send_signal(signal.SIGTERM)
            assert third.proc.wait(timeout=30) == 0
        finally:
            third.end()
    assert kinds().count("crash_restart") == 1, kinds()
    assert kinds().count("started") == 3
