"""The dashboard's side of the control API: the static page and its assets, the login that turns the bearer token into
a session cookie, the server-side session table, CSRF and the login rate limit.

* ``GET /`` and ``GET /static/{name}`` are open: the page holds no secret and shows a login form until ``GET /session``
  says the browser is logged in. Assets are read once from the package data (``trader/control/static/``), served with
  a Content-Security-Policy of ``default-src 'self'`` (no inline script, no other origin).
* ``POST /login`` takes the token (JSON ``{"token": …}`` or a form field ``token``), compares it in constant time and
  answers with the cookie ``trader_session``: a random 32-byte id, HttpOnly, SameSite=Strict, Path=/, Max-Age =
  ``control.session_hours``. The table keeps only a SHA-256 of each id, with its expiry and CSRF value; it holds at
  most ``MAX_SESSIONS`` (the one nearest its end is dropped for a new one).
* A cookie-authenticated request reads the JSON API like the bearer token does; one that changes something (any
  method but GET/HEAD/OPTIONS) must also carry ``X-Trader-CSRF`` equal to its session's value, which the page reads
  from ``GET /session`` (another site's form or script cannot read it). Bearer-token clients are unchanged.
* A login a browser marks as sent by another site's page (``Sec-Fetch-Site: cross-site`` or ``same-site``) is a 403
  that counts as no failure. Login failures are counted per remote address: ``LOGIN_FAILURES_PER_MINUTE`` within a
  minute, and the next try is a 429 (with Retry-After) before the token is even compared. Failures are logged with
  the address only; the token never appears in a page, a cookie or a log line.

Session and rate-limit times are wall time (``time.monotonic_ns`` unless a test injects its own): a login lasts
hours of the user's day, not of the market's event clock.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import orjson
from aiohttp import web

from trader.control.service import BadRequest, ControlError, NotFound
from trader.logging import get_logger

log = get_logger("trader.control")

SESSION_COOKIE = "trader_session"
CSRF_HEADER = "X-Trader-CSRF"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_SESSIONS = 32
LOGIN_FAILURES_PER_MINUTE = 5
LOGIN_WINDOW_NS = 60 * 1_000_000_000
MAX_TRACKED_REMOTES = 4_096
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_CONTENT_TYPES = {"html": "text/html", "js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}
_ASSET_NAME = re.compile(r"^[a-z0-9_-]{1,64}\.(html|js|css|svg)$")
_MAX_SESSION_ID_CHARS = 128
_OTHER_SITES = frozenset({"cross-site", "same-site"})  # Sec-Fetch-Site of a request another page sent
PAGE = "dashboard.html"


class TooManyLogins(ControlError):
    status = 429
    code = "too_many_logins"


class WrongToken(ControlError):
    status = 401
    code = "unauthorized"


class Forbidden(ControlError):
    status = 403
    code = "forbidden"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str


def load_assets() -> dict[str, Asset]:
    """The files of ``trader/control/static/`` (package data) by name; only plain names with a known type."""
    folder = resources.files("trader.control").joinpath("static")
    assets: dict[str, Asset] = {}
    for item in folder.iterdir():
        match = _ASSET_NAME.match(item.name)
        if match and item.is_file():
            assets[item.name] = Asset(item.read_bytes(), _CONTENT_TYPES[match.group(1)])
    if PAGE not in assets:
        raise RuntimeError(f"the dashboard's {PAGE} is missing from the package data (trader/control/static/)")
    return assets


@dataclass(slots=True)
class Session:
    csrf: str
    expires_ns: int


def _key(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).digest()


class SessionTable:
    """Logged-in browsers: SHA-256 of the cookie's id → CSRF value and expiry (wall ns)."""

    def __init__(self, lifetime_ns: int, now_ns: Callable[[], int], most: int = MAX_SESSIONS) -> None:
        self.lifetime_ns = lifetime_ns
        self.now_ns = now_ns
        self.most = most
        self._table: dict[bytes, Session] = {}

    def __len__(self) -> int:
        self._prune()
        return len(self._table)

    def _prune(self) -> None:
        now = self.now_ns()
        for key in [key for key, session in self._table.items() if session.expires_ns <= now]:
            del self._table[key]

    def create(self) -> tuple[str, Session]:
        self._prune()
        while len(self._table) >= self.most:
            del self._table[min(self._table, key=lambda key: self._table[key].expires_ns)]
        session_id = secrets.token_urlsafe(32)
        session = Session(csrf=secrets.token_urlsafe(32), expires_ns=self.now_ns() + self.lifetime_ns)
        self._table[_key(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > _MAX_SESSION_ID_CHARS:
            return None
        key = _key(session_id)
        session = self._table.get(key)
        if session is not None and session.expires_ns <= self.now_ns():
            del self._table[key]
            return None
        return session

    def drop(self, session_id: str) -> None:
        self._table.pop(_key(session_id), None)


class LoginLimiter:
    """Failed logins per remote address within the last minute; the least recently failing addresses are forgotten
    first when more than ``most`` are tracked."""

    def __init__(self, now_ns: Callable[[], int], per_minute: int = LOGIN_FAILURES_PER_MINUTE,
                 most: int = MAX_TRACKED_REMOTES) -> None:
        self.now_ns = now_ns
        self.per_minute = per_minute
        self.most = most
        self._failures: OrderedDict[str, deque[int]] = OrderedDict()

    def _recent(self, remote: str) -> deque[int] | None:
        times = self._failures.get(remote)
        if times is None:
            return None
        cutoff = self.now_ns() - LOGIN_WINDOW_NS
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._failures[remote]
            return None
        return times

    def retry_after_s(self, remote: str) -> int:
        """0 when ``remote`` may try; else the whole seconds until its oldest counted failure leaves the window."""
        times = self._recent(remote)
        if times is None or len(times) < self.per_minute:
            return 0
        return max(1, -(-(times[0] + LOGIN_WINDOW_NS - self.now_ns()) // 1_000_000_000))

    def failed(self, remote: str) -> int:
        times = self._recent(remote) or deque()
        times.append(self.now_ns())
        self._failures[remote] = times
        self._failures.move_to_end(remote)
        while len(self._failures) > self.most:
            self._failures.popitem(last=False)
        return len(times)


class Dashboard:
    """The page, its assets and the browser sessions of one control server."""

    def __init__(self, token: bytes, session_hours: float, now_ns: Callable[[], int]) -> None:
        self._token = token
        self.max_age_s = max(1, round(session_hours * 3600))
        self.sessions = SessionTable(self.max_age_s * 1_000_000_000, now_ns)
        self.limiter = LoginLimiter(now_ns)
        self.assets = load_assets()

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/", self.page)
        router.add_get("/static/{name}", self.asset)
        router.add_post("/login", self.login)
        router.add_post("/logout", self.logout)
        router.add_get("/session", self.session)

    @staticmethod
    def is_open(path: str) -> bool:
        """Paths that need no token: the page, its assets, and the login door itself."""
        return path in ("/", "/login", "/logout", "/session") or path.startswith("/static/")

    # -- authentication -------------------------------------------------------------------------------------
    def session_of(self, request: web.Request) -> tuple[str, Session] | None:
        session_id = request.cookies.get(SESSION_COOKIE, "")
        session = self.sessions.get(session_id)
        return (session_id, session) if session is not None else None

    @staticmethod
    def csrf_ok(request: web.Request, session: Session) -> bool:
        given = request.headers.get(CSRF_HEADER, "").encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, session.csrf.encode())

    @staticmethod
    def csrf_refusal() -> Forbidden:
        return Forbidden(f"a dashboard request that changes something must carry the {CSRF_HEADER} header with the "
                         "value GET /session gives the logged-in browser; reload the page")

    # -- handlers -------------------------------------------------------------------------------------------
    def _serve(self, name: str) -> web.Response:
        asset = self.assets.get(name)
        if asset is None:
            raise NotFound(f"no dashboard file {name!r}")
        charset = None if asset.content_type == "image/svg+xml" else "utf-8"
        return web.Response(body=asset.body, content_type=asset.content_type, charset=charset,
                            headers={"Cache-Control": "no-cache"})

    async def page(self, request: web.Request) -> web.Response:
        return self._serve(PAGE)

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == PAGE:
            raise NotFound(f"the page is GET /, not /static/{PAGE}")
        return self._serve(name)

    async def login(self, request: web.Request) -> web.Response:
        remote = request.remote or "unknown"
        if request.headers.get("Sec-Fetch-Site", "").lower() in _OTHER_SITES:
            # Another site's page (a form POST needs no preflight) would otherwise spend this address's failures and
            # keep the operator's login at 429; the page's own login is same-origin, curl and scripts send no header.
            log.warning("dashboard_login_cross_site", remote=remote)
            raise Forbidden("a login from another site's page is refused: open the dashboard itself (GET /) and log "
                            "in there")
        wait_s = self.limiter.retry_after_s(remote)
        if wait_s:
            log.warning("dashboard_login_throttled", remote=remote, retry_after_s=wait_s)
            error = TooManyLogins(f"too many failed logins from this address: try again in {wait_s} s")
            return web.Response(body=orjson.dumps(error.body()), status=error.status, content_type="application/json",
                                headers={"Retry-After": str(wait_s)})
        given = await self._given_token(request)
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._token):
            failures = self.limiter.failed(remote)
            log.warning("dashboard_login_failed", remote=remote, failures_last_minute=failures)
            raise WrongToken("wrong token: use the control API's token (TRADER_CONTROL__TOKEN, or the "
                             "control_token file in the daemon's data dir)")
        session_id, session = self.sessions.create()
        log.info("dashboard_login", remote=remote, sessions=len(self.sessions), max_age_s=self.max_age_s)
        response = web.Response(body=orjson.dumps(self._session_answer(session)), content_type="application/json")
        response.set_cookie(SESSION_COOKIE, session_id, max_age=self.max_age_s, path="/", httponly=True,
                            samesite="Strict", secure=_is_https(request))
        return response

    async def _given_token(self, request: web.Request) -> str:
        raw = await request.read()
        token: Any = None
        if request.content_type == "application/x-www-form-urlencoded":
            try:
                values = parse_qs(raw.decode("utf-8", "surrogateescape"), max_num_fields=4).get("token")
            except ValueError:  # more than max_num_fields fields: a 400 like any malformed login, not a crash
                raise BadRequest("the login form has too many fields: send only token") from None
            token = values[0] if values else None
        else:
            try:
                data = orjson.loads(raw) if raw.strip() else {}
            except orjson.JSONDecodeError:
                raise BadRequest('the body must be JSON {"token": "..."} or a form with a token field') from None
            token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise BadRequest('no token given: send JSON {"token": "..."} or a form with a token field',
                             field="token")
        return token.strip()

    def _session_answer(self, session: Session) -> dict[str, Any]:
        left_ns = max(0, session.expires_ns - self.sessions.now_ns())
        return {"logged_in": True, "csrf": session.csrf, "expires_in_s": (left_ns + 500_000_000) // 1_000_000_000}

    async def logout(self, request: web.Request) -> web.Response:
        found = self.session_of(request)
        if found is not None:
            session_id, session = found
            if not self.csrf_ok(request, session):
                raise self.csrf_refusal()
            self.sessions.drop(session_id)
            log.info("dashboard_logout", remote=request.remote or "")
        response = web.Response(body=orjson.dumps({"logged_in": False}), content_type="application/json")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def session(self, request: web.Request) -> web.Response:
        found = self.session_of(request)
        answer = self._session_answer(found[1]) if found is not None else {"logged_in": False}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")


def _is_https(request: web.Request) -> bool:
    """Served over TLS, directly or behind a proxy that says so: the cookie is then marked Secure too."""
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"
