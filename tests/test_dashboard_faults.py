"""Fault injection on the control API's HTTP door (issue #10): malformed logins, token guessing past the login's rate
limit on the API routes, and malformed HTTP that must not put header bytes (a session id, the token) into a log.

In-process paper daemon (the set-up of tests/test_dashboard_http.py); real sockets on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_dashboard_http import TOKEN, running

from trader.control.dashboard import SESSION_COOKIE

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
