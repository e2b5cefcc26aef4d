"""Fault injection on the control API's HTTP door (issue #10): malformed logins, token guessing past the login's rate
limit on the API routes, and malformed HTTP that must not put header bytes (a session id, the token) into a log.

In-process paper daemon (the set-up of tests/test_dashboard_http.py); real sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from pathlib import Path

import pytest
from test_dashboard_http import TOKEN, WallClock, running

from trader.control.dashboard import SESSION_COOKIE
from trader.control.http import MAX_CONNECTIONS, TOKEN_FAILURES_PER_MINUTE

from helpers import captured_logs, wait_for

pytestmark = pytest.mark.usefixtures("clean_env")


async def test_a_login_form_with_too_many_fields_is_a_bad_request_not_a_crash(tmp_path: Path) -> None:
    with captured_logs() as lines:
        async with running(tmp_path) as (_, client):
            form = f"token={TOKEN}&a=1&b=2&c=3&d=4"
            reply, body = await client.call("POST", "/login", data=form.encode(),
                                            headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert reply.status == 400, body
            assert (await reply.json())["error"]["code"] == "bad_request" and SESSION_COOKIE not in reply.cookies
    assert not [line for line in lines if line["event"] == "control_request_failed"]
    assert TOKEN not in str(lines)


async def test_guessing_the_token_on_the_api_routes_is_rate_limited_like_the_login(tmp_path: Path) -> None:
    """The login allows 5 failures a minute per address; without a limit on the bearer header, the same token could be
    guessed on GET /status thousands of times a second (measured: ~2,500/s on this machine)."""
    wall = WallClock()
    with captured_logs() as lines:
        async with running(tmp_path, wall) as (_, client):
            session_id, _ = await client.login()
            for attempt in range(TOKEN_FAILURES_PER_MINUTE):
                reply, _ = await client.call("GET", "/status",
                                             headers={"Authorization": f"Bearer guess-{attempt:03d}-0123456789"})
                assert reply.status == 401, attempt
            # Past the budget every bearer try is refused before it is compared, the right token too (else a 200
            # would tell the guesser it had found it); the Retry-After says when the oldest failure leaves the window.
            for path, token in (("/status", "guess-x-0123456789"), ("/status", TOKEN), ("/metrics", TOKEN)):
                reply, _ = await client.call("GET", path, headers={"Authorization": f"Bearer {token}"})
                answer = await reply.json()
                assert reply.status == 429 and answer["error"]["code"] == "too_many_requests", (path, answer)
                assert reply.headers["Retry-After"] == "60"
            # A logged-in dashboard (cookie, no Authorization header) keeps working; so does /healthz.
            reply, _ = await client.call("GET", "/status", headers={"Cookie": f"{SESSION_COOKIE}={session_id}"})
            assert reply.status == 200
            reply, _ = await client.call("GET", "/healthz")
            assert reply.status in (200, 503)
            wall.t += 60 * 1_000_000_000
            reply, _ = await client.call("GET", "/status", headers={"Authorization": f"Bearer {TOKEN}"})
            assert reply.status == 200
            # A missing header is no guess: a page whose session ended polls without one, and is not counted.
            for _ in range(TOKEN_FAILURES_PER_MINUTE + 5):
                reply, _ = await client.call("GET", "/status")
                assert reply.status == 401
    refused = [line for line in lines if line["event"] == "control_token_refused"]
    assert [line["failures_last_minute"] for line in refused] == list(range(1, TOKEN_FAILURES_PER_MINUTE + 1))
    assert refused[0]["remote"] == "127.0.0.1"
    text = str(lines)
    assert "guess-" not in text and TOKEN not in text


async def test_a_malformed_request_logs_one_line_without_its_header_bytes(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """aiohttp refuses a header line past 8 KB with a 400 and logs the error, whose text quotes the line's first 100
    bytes: a browser whose Cookie header grew past 8 KB (cookies of other programs on 127.0.0.1 are sent to every
    port) would write its session id, and an oversized Authorization header the token, into stderr, with a traceback
    per request. It must be one JSON line with the remote address, and no header bytes."""
    caplog.set_level(logging.DEBUG)
    with captured_logs() as lines:
        async with running(tmp_path) as (app, client):
            session_id, _ = await client.login()
            port = int(app.control_url.rsplit(":", 1)[1])
            for header in (f"Cookie: {SESSION_COOKIE}={session_id}; other={'x' * 9_000}",
                           f"Authorization: Bearer {TOKEN}{'y' * 9_000}"):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(f"GET /status HTTP/1.1\r\nHost: x\r\n{header}\r\nConnection: close\r\n\r\n".encode())
                await writer.drain()
                answer = await reader.read()
                writer.close()
                assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400"), answer[:100]
    logged = caplog.text + str(lines)
    assert session_id not in logged and TOKEN not in logged
    assert "Traceback" not in caplog.text
    bad = [line for line in lines if line["event"] == "control_bad_http"]
    assert len(bad) == 2 and {line["remote"] for line in bad} == {"127.0.0.1"}, bad


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_idle_connections_cannot_take_every_file_descriptor(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """Any local process, without the token, could open connections and send nothing: each held a file descriptor for
    aiohttp's default hour (measured: 1,100 such connections filled a daemon's 1,024 descriptors, systemd's default
    soft limit, and GET /healthz and every operator command then failed while the trading path was one open() from
    EMFILE). The server keeps at most MAX_CONNECTIONS; the next ones are closed at once, and when the idle ones go,
    the API answers again."""
    with captured_logs() as lines:
        async with running(tmp_path) as (app, client):
            port = int(app.control_url.rsplit(":", 1)[1])
            before = fds()
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(MAX_CONNECTIONS + 40)]
            # Our own ends are 40 + MAX_CONNECTIONS descriptors; the server's ends of the 40 past the cap are closed.
            await wait_for(lambda: fds() - before <= 2 * MAX_CONNECTIONS + 40 + 4, within_s=10)
            for _, writer in idle:
                writer.close()
            await wait_for(lambda: fds() - before <= 4, within_s=10)
            reply, _ = await client.call("GET", "/status", headers={"Authorization": f"Bearer {TOKEN}"})
            assert reply.status == 200
    gc.collect()  # a request task that failed and was never awaited is reported when it is collected
    assert "Task exception was never retrieved" not in caplog.text, caplog.text[:2000]
    full = [line for line in lines if line["event"] == "control_connections_full"]
    assert len(full) == 1 and full[0]["most"] == MAX_CONNECTIONS, full  # once per time the cap is reached


async def test_another_sites_page_cannot_lock_the_operator_out_of_the_login(tmp_path: Path) -> None:
    """A form POST to /login is a "simple" cross-origin request: any page the operator has open could send five wrong
    tokens a minute and keep the dashboard's login at 429. A browser marks such a request ``Sec-Fetch-Site:
    cross-site`` (or ``same-site`` from another port of the same host): it is refused before it counts."""
    wall = WallClock()
    async with running(tmp_path, wall) as (_, client):
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        for site in ("cross-site", "same-site") * 5:
            reply, _ = await client.call("POST", "/login", data=b"token=wrong-token-0123456789",
                                         headers={**form, "Sec-Fetch-Site": site})
            assert reply.status == 403 and (await reply.json())["error"]["code"] == "forbidden", site
        reply, _ = await client.call("POST", "/login", data=f"token={TOKEN}".encode(),
                                     headers={**form, "Sec-Fetch-Site": "cross-site"})
        assert reply.status == 403 and SESSION_COOKIE not in reply.cookies  # no login from another site either
        # The page's own login (same-origin), a typed-in request ("none") and non-browser clients still log in.
        for headers in ({"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}, {}):
            await client.login(**headers)
