"""The dashboard's door over real HTTP, against an in-process paper daemon: the open page and its assets (CSP, no
external URL, no inline script), login with the token into an HttpOnly SameSite=Strict session cookie, the cookie
reading the API, CSRF on every cookie-authenticated POST, logout, session expiry and the bound on sessions, the login
rate limit, and the token never in an answer, a cookie or a log line.

Session and rate-limit times are wall time: a second server on the same daemon's service runs on a clock the test
moves, so expiry is tested without waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from trader.app import App
from trader.config import load_settings
from trader.control.dashboard import CSRF_HEADER, MAX_SESSIONS, SESSION_COOKIE
from trader.control.http import ControlServer
from trader.control.service import ControlService

from helpers import captured_logs, wait_for

pytestmark = pytest.mark.usefixtures("clean_env")

TOKEN = "dashboard-test-token-0123456789"
HOUR_NS = 3_600 * 1_000_000_000


class WallClock:
    """The sessions' and the rate limit's wall clock, moved by the test."""

    def __init__(self) -> None:
        self.t = 1_000 * HOUR_NS

    def __call__(self) -> int:
        return self.t


@dataclass
class Client:
    http: aiohttp.ClientSession
    url: str
    seen: list[str] = field(default_factory=list)  # every answer's headers and body, to look for the token

    async def call(self, method: str, path: str, *, json: Any = None, data: Any = None,
                   headers: dict[str, str] | None = None) -> tuple[aiohttp.ClientResponse, bytes]:
        async with self.http.request(method, self.url + path, json=json, data=data, headers=headers or {}) as reply:
            body = await reply.read()
        self.seen.append(str(reply.headers) + body.decode("utf-8", "replace"))
        return reply, body

    async def login(self, token: str = TOKEN, **headers: str) -> tuple[str, str]:
        """The session cookie's value and the CSRF value of a successful login."""
        reply, _ = await self.call("POST", "/login", json={"token": token}, headers=headers)
        assert reply.status == 200, reply.status
        answer = await reply.json()
        return reply.cookies[SESSION_COOKIE].value, str(answer["csrf"])


def cookie(session_id: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={session_id}"}


@contextlib.asynccontextmanager
async def running(tmp_path: Path, wall: WallClock | None = None) -> AsyncIterator[tuple[App, Client]]:
    """A paper daemon (no strategy entries) and a client of its control API; with ``wall``, of a second control
    server on the same service that keeps its sessions by that clock."""
    settings = load_settings({
        "mode": "paper", "data_dir": str(tmp_path), "heartbeat_seconds": 0.5,
        "sim": {"start": "2026-11-20T10:00:00", "speed": 5, "seed": 11}, "strategy": {"confidence_cutoff": 100},
        "control": {"token": TOKEN, "order_wait_seconds": 3, "session_hours": 2},
    })
    app = App(settings)
    task = asyncio.create_task(app.run(install_signal_handlers=False))
    server: ControlServer | None = None
    try:
        await wait_for(lambda: bool(app.control_url) or task.done(), within_s=30)
        if task.done():
            task.result()
        url = app.control_url
        if wall is not None:
            server = ControlServer(ControlService(app), settings.control, TOKEN, wall_ns=wall)
            url = await server.start()
        async with aiohttp.ClientSession() as http:
            yield app, Client(http, url)
    finally:
        if server is not None:
            await server.stop()
        app.request_stop("test over")
        await asyncio.wait_for(task, 30)


async def test_the_page_and_its_assets_are_open_and_self_contained(tmp_path: Path) -> None:
    async with running(tmp_path) as (_, client):
        reply, page = await client.call("GET", "/")
        assert reply.status == 200 and reply.content_type == "text/html"
        csp = reply.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert reply.headers["X-Content-Type-Options"] == "nosniff" and reply.headers["X-Frame-Options"] == "DENY"
        html = page.decode()
        # No inline script: every <script> element loads a file of the daemon's own; no inline style or handler.
        scripts = re.findall(r"<script[^>]*>", html)
        assert scripts and all('src="/static/' in tag for tag in scripts), scripts
        assert re.search(r"<script[^>]*>\s*[^<\s]", html) is None
        assert " style=" not in html and not re.search(r"\son[a-z]+=", html)
        assets = set(re.findall(r'(?:src|href)="(/static/[^"]+)"', html))
        assert assets == {"/static/dashboard.js", "/static/dashboard.css", "/static/icon.svg"}
        types = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}
        for path in sorted(assets):
            reply, body = await client.call("GET", path)
            assert reply.status == 200 and reply.content_type == types[path.rsplit(".", 1)[1]], path
            assert "default-src 'self'" in reply.headers["Content-Security-Policy"]
            # No other origin: the only URL is SVG's XML namespace, which names, never loads.
            urls = set(re.findall(r"https?://[^\s\"'`)]+", body.decode()))
            assert urls <= {"http://www.w3.org/2000/svg"}, (path, urls)
        assert not re.findall(r"https?://", html)
        # Nothing else is served from the package: unknown names, the page under /static, paths that climb out.
        for path in ("/static/nothing.js", "/static/dashboard.html", "/static/..%2Fhttp.py", "/static/.token"):
            reply, body = await client.call("GET", path)
            assert reply.status == 404 and reply.content_type == "application/json", path
        reply, body = await client.call("GET", "/static/%2e%2e/dashboard.py")  # normalised to /dashboard.py
        assert reply.status == 401 and b"import" not in body
        # The API itself still wants a token or a session.
        reply, _ = await client.call("GET", "/status")
        assert reply.status == 401
        reply, body = await client.call("GET", "/session")
        assert reply.status == 200 and (await reply.json()) == {"logged_in": False}
    assert not any(TOKEN in text for text in client.seen)


async def test_login_gives_a_strict_http_only_cookie_that_reads_the_api(tmp_path: Path) -> None:
    with captured_logs() as lines:
        async with running(tmp_path) as (app, client):
            # A wrong token, an empty one, a body that is not JSON: no cookie.
            reply, _ = await client.call("POST", "/login", json={"token": "wrong-token-0123456789"})
            assert reply.status == 401 and SESSION_COOKIE not in reply.cookies
            assert (await reply.json())["error"]["message"].startswith("wrong token")
            bad: list[dict[str, Any]] = [{"json": {}}, {"json": {"token": ""}}, {"data": b"{not json"},
                                         {"json": {"token": 123}}]
            for kwargs in bad:
                reply, _ = await client.call("POST", "/login", **kwargs)
                assert reply.status == 400 and SESSION_COOKIE not in reply.cookies, kwargs

            reply, _ = await client.call("POST", "/login", json={"token": TOKEN})
            assert reply.status == 200
            raw = reply.headers["Set-Cookie"]
            morsel = SimpleCookie(raw)[SESSION_COOKIE]
            assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/", raw
            assert morsel["max-age"] == str(2 * 3600), raw  # control.session_hours
            assert not morsel["secure"], raw  # plain HTTP on loopback: a Secure cookie would never come back
            session_id = morsel.value
            assert re.fullmatch(r"[A-Za-z0-9_-]{43}", session_id) and TOKEN not in session_id
            answer = await reply.json()
            assert answer["logged_in"] is True and answer["expires_in_s"] == 2 * 3600
            assert re.fullmatch(r"[A-Za-z0-9_-]{43}", answer["csrf"]) and answer["csrf"] != session_id

            reply, _ = await client.call("GET", "/session", headers=cookie(session_id))
            assert (await reply.json())["csrf"] == answer["csrf"]
            reply, _ = await client.call("GET", "/status", headers=cookie(session_id))
            assert reply.status == 200 and (await reply.json())["trading_state"] == "ACTIVE"
            assert reply.headers["Cache-Control"] == "no-store"
            for path in ("/positions", "/orders", "/signals", "/risk", "/report"):
                reply, _ = await client.call("GET", path, headers=cookie(session_id))
                assert reply.status == 200, path
            # A cookie the daemon never gave out, or a huge one, is no session.
            for fake in ("x" * 43, "y" * 5_000):
                reply, _ = await client.call("GET", "/status", headers=cookie(fake))
                assert reply.status == 401

            # A form post logs in too; behind a TLS proxy the cookie is marked Secure.
            reply, _ = await client.call("POST", "/login", data={"token": TOKEN})
            assert reply.status == 200 and SESSION_COOKIE in reply.cookies
            reply, _ = await client.call("POST", "/login", json={"token": TOKEN},
                                         headers={"X-Forwarded-Proto": "https"})
            assert SimpleCookie(reply.headers["Set-Cookie"])[SESSION_COOKIE]["secure"]
            assert len(app.control.server.dashboard.sessions) == 3  # type: ignore[union-attr]
    assert not any(TOKEN in text for text in client.seen), "the token came back in an answer"
    assert not any(TOKEN in str(line) for line in lines), "the token reached the log"
    assert not any(session_id in str(line) for line in lines), "a session id reached the log"
    # The page's 2-second polls stay out of the info log; logins and refusals are in it.
    requests = {(line["method"], line["path"], line["status"]) for line in lines if line["event"] == "control_request"}
    assert ("GET", "/positions", 200) not in requests and ("GET", "/status", 200) not in requests, requests
    assert {("POST", "/login", 200), ("POST", "/login", 401), ("GET", "/status", 401)} <= requests, requests
    logins = [line for line in lines if line["event"] == "dashboard_login"]
    assert len(logins) == 3 and logins[0]["remote"] == "127.0.0.1"
    assert [line["remote"] for line in lines if line["event"] == "dashboard_login_failed"] == ["127.0.0.1"]


async def test_a_cookie_post_needs_the_sessions_csrf_value_and_bearer_clients_do_not(tmp_path: Path) -> None:
    async with running(tmp_path) as (app, client):
        session_id, csrf = await client.login()
        _, other_csrf = await client.login()
        for headers in ({}, {CSRF_HEADER: ""}, {CSRF_HEADER: csrf + "x"}, {CSRF_HEADER: other_csrf}):
            reply, _ = await client.call("POST", "/halt", json={"reason": "forged"},
                                         headers={**cookie(session_id), **headers})
            answer = await reply.json()
            assert reply.status == 403 and answer["error"]["code"] == "forbidden", (headers, answer)
            assert CSRF_HEADER in answer["error"]["message"]
        assert app.risk.state.value == "ACTIVE"  # nothing forged got through
        reply, _ = await client.call("POST", "/signals/NOPE1/approve", headers=cookie(session_id))
        assert reply.status == 403

        reply, _ = await client.call("POST", "/halt", json={"reason": "from the page"},
                                     headers={**cookie(session_id), CSRF_HEADER: csrf})
        assert reply.status == 200 and (await reply.json())["trading_state"] == "HALTED"
        # Bearer clients are unchanged: no CSRF value, no cookie.
        reply, _ = await client.call("POST", "/resume", headers={"Authorization": f"Bearer {TOKEN}"})
        assert reply.status == 200 and (await reply.json())["trading_state"] == "ACTIVE"
        # A cookie GET needs no CSRF value (it changes nothing).
        reply, _ = await client.call("GET", "/risk", headers=cookie(session_id))
        assert reply.status == 200

        # Logout needs the CSRF value too (another site cannot log the user out), then the cookie is dead.
        reply, _ = await client.call("POST", "/logout", headers=cookie(session_id))
        assert reply.status == 403
        reply, _ = await client.call("POST", "/logout", headers={**cookie(session_id), CSRF_HEADER: csrf})
        assert reply.status == 200 and (await reply.json()) == {"logged_in": False}
        cleared = SimpleCookie(reply.headers["Set-Cookie"])[SESSION_COOKIE]
        assert cleared.value == "" and cleared["max-age"] == "0"
        reply, _ = await client.call("GET", "/status", headers=cookie(session_id))
        assert reply.status == 401
        reply, _ = await client.call("GET", "/session", headers=cookie(session_id))
        assert (await reply.json()) == {"logged_in": False}
        # Logging out without a session is no error.
        reply, _ = await client.call("POST", "/logout")
        assert reply.status == 200


async def test_sessions_expire_and_are_bounded(tmp_path: Path) -> None:
    wall = WallClock()
    async with running(tmp_path, wall) as (_, client):
        first, _ = await client.login()
        wall.t += 2 * HOUR_NS - 1_000_000_000  # a second before control.session_hours (2) is up
        reply, _ = await client.call("GET", "/status", headers=cookie(first))
        assert reply.status == 200
        reply, _ = await client.call("GET", "/session", headers=cookie(first))
        assert (await reply.json())["expires_in_s"] == 1
        wall.t += 1_000_000_000
        reply, _ = await client.call("GET", "/status", headers=cookie(first))
        assert reply.status == 401
        reply, _ = await client.call("GET", "/session", headers=cookie(first))
        assert (await reply.json()) == {"logged_in": False}

        # At most MAX_SESSIONS at once: a new login pushes out the one nearest its end (the oldest).
        ids = []
        for _ in range(MAX_SESSIONS + 3):
            ids.append((await client.login())[0])
            wall.t += 1_000_000_000
        alive = [(await client.call("GET", "/status", headers=cookie(i)))[0].status == 200 for i in ids]
        assert alive == [False] * 3 + [True] * MAX_SESSIONS


async def test_failed_logins_are_rate_limited_per_address(tmp_path: Path) -> None:
    wall = WallClock()
    with captured_logs() as lines:
        async with running(tmp_path, wall) as (_, client):
            for attempt in range(5):
                reply, _ = await client.call("POST", "/login", json={"token": f"guess-{attempt}-0123456789"})
                assert reply.status == 401, attempt
                wall.t += 1_000_000_000
            # The sixth try within the minute is refused before the token is compared: the right one too.
            for token in ("guess-5-0123456789", TOKEN):
                reply, _ = await client.call("POST", "/login", json={"token": token})
                answer = await reply.json()
                assert reply.status == 429 and answer["error"]["code"] == "too_many_logins", answer
                assert reply.headers["Retry-After"] == "55" and SESSION_COOKIE not in reply.cookies
            # A minute after the first failure one try is free again; the right token logs in.
            wall.t += 55 * 1_000_000_000
            await client.login()
            # Successful logins are not limited.
            for _ in range(10):
                await client.login()
    failed = [line for line in lines if line["event"] == "dashboard_login_failed"]
    assert [line["failures_last_minute"] for line in failed] == [1, 2, 3, 4, 5]
    assert len([line for line in lines if line["event"] == "dashboard_login_throttled"]) == 2
    logged = " ".join(str(line) for line in lines)
    assert "guess-" not in logged and TOKEN not in logged, "an attempted or the real token reached the log"
