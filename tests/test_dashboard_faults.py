"""Fault injection on the control API's HTTP door (issue #10): malformed logins, token guessing past the login's rate
limit on the API routes, and malformed HTTP that must not put header bytes (a session id, the token) into a log.

In-process paper daemon (the set-up of tests/test_dashboard_http.py); real sockets on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_dashboard_http import TOKEN, WallClock, running

from trader.control.dashboard import SESSION_COOKIE
from trader.control.http import TOKEN_FAILURES_PER_MINUTE

from helpers import captured_logs

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
