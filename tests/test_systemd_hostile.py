"""systemd's side under odd environments (issue #10 fault injection): NOTIFY_SOCKET naming a file, a directory, a
path too long, an abstract name nobody binds or one that is not UTF-8; WATCHDOG_USEC absurdly small. The daemon's
notifier never raises and never turns into a busy loop."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from trader.health import HealthReport
from trader.systemd import MIN_ROUND_S, SystemdNotifier, Watchdog, watchdog_interval_s

from helpers import captured_logs, wait_for


@pytest.mark.parametrize("where", ["file", "dir", "long", "abstract", "relative", "undecodable"])
def test_a_notify_socket_that_cannot_be_used_is_logged_once_and_never_raised(tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_text("not a socket")
    address = {"file": str(tmp_path / "file"), "dir": str(tmp_path), "long": "/tmp/" + "x" * 300,
               "abstract": "@trader-test-nobody-binds-this", "relative": "no/such/dir.sock",
               "undecodable": str(tmp_path) + "/" + os.fsdecode(b"\xff\xfe.sock")}[where]
    notifier = SystemdNotifier(address)
    with captured_logs() as lines:
        assert [notifier.notify("WATCHDOG=1") for _ in range(3)] == [False] * 3
    assert [line["event"] for line in lines] == ["systemd_notify_failed"]
    notifier.close()


def test_an_abstract_name_that_is_not_utf8_is_reached() -> None:
    """The environment's bytes are the name (Python decodes them with surrogates): they were encoded as UTF-8,
    which raised UnicodeEncodeError out of notify() — into App.run's first STATUS=."""
    name = b"trader-test-\xff\xfe-" + str(os.getpid()).encode()
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(b"\0" + name)
    receiver.settimeout(5)
    try:
        notifier = SystemdNotifier("@" + os.fsdecode(name))
        assert notifier.notify("READY=1")
        assert receiver.recv(100) == b"READY=1"
        notifier.close()
    finally:
        receiver.close()


async def test_a_tiny_watchdog_usec_is_no_busy_loop() -> None:
    """WATCHDOG_USEC=1 (half a microsecond between pings): the task used to sleep 5e-7 s a round, spinning the
    event loop that trades. A round is now at least MIN_ROUND_S."""
    interval = watchdog_interval_s({"WATCHDOG_USEC": "1"}, os.getpid())
    assert interval is not None and interval < 1e-6
    judged: list[int] = []

    def judge() -> HealthReport:
        judged.append(1)
        return HealthReport(checks=())

    dog = Watchdog(SystemdNotifier(""), interval_s=interval, judge=judge, status=lambda: "x")
    loop = asyncio.get_running_loop()
    started = loop.time()
    dog.start()
    await wait_for(lambda: len(judged) >= 4)
    took = loop.time() - started
    await dog.stop()
    assert took >= 3 * MIN_ROUND_S * 0.9, f"4 rounds in {took * 1000:.2f} ms"
