"""`trader healthcheck` against servers that do not answer properly: it gives up within --timeout (exit 3), as
documented, whether the server never answers (a wedged or stopped daemon: the kernel still accepts the connection) or
trickles its answer a byte at a time (urllib's timeout bounds each read, not the answer)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

from trader.cli import main as cli_main
from trader.control.client import ControlClient, Unreachable

TIMEOUT_S = 1.0
SLACK_S = 2.0  # thread start-up and the exit path on a loaded 2-core machine


@contextlib.contextmanager
def server(behaviour: Callable[[socket.socket], None] | None) -> Iterator[str]:
    """A listener on 127.0.0.1; with ``behaviour`` each accepted connection is handed to it in a thread, without it
    nothing is ever accepted (the connection waits in the backlog, as with a SIGSTOPped daemon)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    conns: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conns.append(conn)
            threading.Thread(target=behaviour, args=(conn,), daemon=True).start()

    if behaviour is not None:
        listener.settimeout(0.2)
        threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        for conn in conns:
            conn.close()
        listener.close()


def trickle(conn: socket.socket) -> None:
    """Reads the request, then sends the start of an answer and one byte every 0.2 s, forever."""
    with contextlib.suppress(OSError):
        conn.recv(65_536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: ")
        while True:
            conn.sendall(b"x")
            time.sleep(0.2)  # the server's pace, which the client must not wait out


def healthcheck_within(url: str, limit_s: float) -> tuple[int | None, float]:
    """Run `trader healthcheck --url URL --timeout 1` in a thread: its exit code (None if it was still running after
    ``limit_s``) and how long it took."""
    codes: list[int] = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: codes.append(cli_main(["healthcheck", "--url", url, "--timeout",
                                                                      str(TIMEOUT_S)])), daemon=True)
    thread.start()
    thread.join(limit_s)
    return (codes[0] if codes else None), time.monotonic() - started


def test_a_server_that_never_answers_is_unreachable_within_the_timeout() -> None:
    with server(None) as url:
        code, took = healthcheck_within(url, 15)
    assert code == 3 and took < TIMEOUT_S + SLACK_S, (code, took)


def test_a_server_that_trickles_its_answer_is_unreachable_within_the_timeout() -> None:
    with server(trickle) as url:
        code, took = healthcheck_within(url, 15)
    assert code == 3 and took < TIMEOUT_S + SLACK_S, (code, took)


def test_every_operator_command_gives_up_on_a_trickling_server_and_a_post_says_it_may_have_happened() -> None:
    """The same bound for `trader status`, `trader flatten`, ...: one ControlClient call is bounded in all."""
    outcome: list[BaseException] = []

    def call(post: bool) -> None:
        client = ControlClient(url, "t" * 32, token_source="test", timeout_s=TIMEOUT_S)
        try:
            client.post("/flatten", {}) if post else client.get("/status")
        except BaseException as exc:  # the test reads what it was
            outcome.append(exc)

    with server(trickle) as url:
        for post in (False, True):
            outcome.clear()
            started = time.monotonic()
            thread = threading.Thread(target=call, args=(post,), daemon=True)
            thread.start()
            thread.join(15)
            took = time.monotonic() - started
            assert outcome and isinstance(outcome[0], Unreachable) and took < TIMEOUT_S + SLACK_S, (outcome, took)
            assert ("may still carry the request out" in str(outcome[0])) is post
