"""The control API's HTTP server (aiohttp), inside the daemon, on its event loop.

Every route but ``GET /healthz`` and the dashboard's (``GET /``, ``/static/*``, ``/session``; ``POST /login``,
``/logout``: trader/control/dashboard.py) needs ``Authorization: Bearer <token>`` (compared in constant time) or the
dashboard's session cookie; a missing or wrong token is a 401. Wrong tokens are counted per remote address: past
``TOKEN_FAILURES_PER_MINUTE`` within a minute, every request from there that offers one is a 429 before it is compared
(the dashboard's login has its own, tighter limit). A cookie-authenticated request that changes something
must carry the session's ``X-Trader-CSRF`` value (403 otherwise). Bodies are at most ``control.max_body_bytes``
(413), parsed with orjson into the pydantic models of ``trader/control/requests.py`` (400 naming the field). Every
answer of the API, errors included, is JSON (the dashboard's page and assets, and the Prometheus text of
``GET /metrics`` aside); errors are
``{"error": {"code", "message", "field"?, "check"?}}``. The token never appears in an answer or a log line; each
request is logged once (``control_request``: method, path, status, milliseconds), without its headers or query.
The server binds loopback only unless ``control.allow_remote`` is set, and checks the address it really bound.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, ValidationError

from trader.config import ConfigError
from trader.control.dashboard import SAFE_METHODS, SECURITY_HEADERS, Dashboard, LoginLimiter
from trader.control.requests import FlattenBody, HaltBody, ManualOrder, RejectBody, describe_validation_error
from trader.control.service import BadRequest, ControlError, ControlService
from trader.logging import get_logger
from trader.service_settings import ControlSettings, is_loopback

log = get_logger("trader.control")

OPEN_PATHS = frozenset({"/healthz"})
SCRAPE_PATH = "/metrics"  # Prometheus asks every few seconds: logged at debug, like /healthz, unless refused
# Wrong bearer tokens per remote address within a minute before every bearer try from there is a 429 (checked before
# the token is compared). The dashboard's login allows 5; scripts and scrapers retry a wrong token on their own, so
# this budget is wider, and still turns thousands of guesses a second into one every two seconds.
TOKEN_FAILURES_PER_MINUTE = 30
SHUTDOWN_TIMEOUT_S = 1.0
# Open connections at most (a browser opens up to 6, the CLI and Prometheus one each): each is a file descriptor, and
# the daemon's journal and broker sockets need theirs. An idle one is closed after KEEPALIVE_TIMEOUT_S (aiohttp's own
# server default; its bare RequestHandler keeps one for an hour).
MAX_CONNECTIONS = 64
KEEPALIVE_TIMEOUT_S = 75.0  # in-flight requests at shutdown get this long, then they are cancelled
_REF = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                 413: "too_large", 429: "too_many_requests", 503: "unavailable"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Body = TypeVar("Body", bound=BaseModel)


class ProtocolLog(logging.Logger):
    """aiohttp's server logger for the control API. A request aiohttp cannot parse (a header line past 8 KB, too many
    headers, a bad request line) gets its 400 and one ``control_bad_http`` warning with the remote address and the
    error's class: aiohttp's own text quotes the offending line's first bytes (the start of a Cookie or Authorization
    header is a session id or the token) with a traceback, to stderr. Anything else it logs goes on as an error."""

    def __init__(self) -> None:
        super().__init__("trader.control.aiohttp", logging.WARNING)

    def handle(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else ""
            log.warning("control_bad_http", remote=str(remote or ""), error=type(error).__name__, status=error.code)
        else:
            log.error("control_http_error", message=record.getMessage(), exc_info=record.exc_info or False)


class NoBody(BaseModel):
    """``POST /resume``, ``/reset-daily``, ``/orders/{ref}/cancel``, ``/signals/{ref}/approve``: nothing, or ``{}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def json_response(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS), status=status,
                        content_type="application/json", headers=headers)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status, headers)


class ControlServer:
    def __init__(self, service: ControlService, settings: ControlSettings, token: str, *,
                 token_hint: str = "", wall_ns: Callable[[], int] = time.monotonic_ns) -> None:
        if not token:
            raise ValueError("the control API needs a token")
        self.service = service
        self.settings = settings
        self._token = token.encode()
        self._token_hint = token_hint or "TRADER_CONTROL__TOKEN"
        self.dashboard = Dashboard(self._token, settings.session_hours, wall_ns)
        self.token_limiter = LoginLimiter(wall_ns, per_minute=TOKEN_FAILURES_PER_MINUTE)
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.port = 0
        self.web_app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[self._guard])
        self._routes(self.web_app.router)

    def _routes(self, router: web.UrlDispatcher) -> None:
        service = self.service
        router.add_get("/healthz", self._healthz)
        router.add_get("/metrics", self._metrics)
        self.dashboard.routes(router)
        for path, read in (("/status", service.status), ("/positions", service.positions),
                           ("/orders", service.orders), ("/signals", service.signals), ("/risk", service.risk),
                           ("/report", service.report)):
            router.add_get(path, self._reader(read))
        router.add_post("/orders", self._place)
        router.add_post("/orders/{ref}/cancel", self._cancel)
        router.add_post("/halt", self._halt)
        router.add_post("/resume", self._resume)
        router.add_post("/reset-daily", self._reset_daily)
        router.add_post("/flatten", self._flatten)
        router.add_post("/signals/{ref}/approve", self._approve)
        router.add_post("/signals/{ref}/reject", self._reject)

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def start(self) -> str:
        """Listen; return the URL. ``ConfigError`` when the port is taken or the address is not loopback."""
        settings = self.settings
        host = "127.0.0.1" if settings.host == "localhost" else settings.host.strip("[]")
        runner = web.AppRunner(self.web_app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S, logger=ProtocolLog(),
                               keepalive_timeout=KEEPALIVE_TIMEOUT_S)
        await runner.setup()
        if runner.server is not None:
            _cap_connections(runner.server, MAX_CONNECTIONS)
        try:
            await web.TCPSite(runner, host, settings.port).start()
        except OSError as exc:
            await runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError([
                    f"start-up error: control.port: {host}:{settings.port} is already in use (another daemon, or "
                    "another program); pick another with TRADER_CONTROL__PORT (0 = any free port) or control.port "
                    "in the config file, or turn the API off with TRADER_CONTROL__ENABLED=false"]) from None
            raise ConfigError([f"start-up error: control.host/control.port: cannot listen on {host}:{settings.port} "
                               f"({exc.strerror or exc}); set TRADER_CONTROL__HOST / TRADER_CONTROL__PORT"]) from None
        addresses = [address for address in runner.addresses if isinstance(address, tuple)]
        remote = [a[0] for a in addresses if not is_loopback(str(a[0]))]
        if remote and not settings.allow_remote:
            await runner.cleanup()
            raise ConfigError([f"start-up error: control.host: {settings.host!r} listens on {', '.join(remote)}, "
                               "not a loopback address; the control API can place orders, so that needs "
                               "control.allow_remote = true (TRADER_CONTROL__ALLOW_REMOTE=true)"])
        self._runner = runner
        self.port = int(addresses[0][1]) if addresses else settings.port
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"
        return self.url

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # -- middleware -----------------------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        # The dashboard's page, assets and 2-second polls are logged at debug (thousands an hour); its acts, its
        # logins and every bearer client's request at info.
        quiet = request.path in OPEN_PATHS or (request.method in SAFE_METHODS and self.dashboard.is_open(request.path))
        try:
            if request.path in OPEN_PATHS or self.dashboard.is_open(request.path):
                response: web.StreamResponse = await self._answer(request, handler)
            elif wait_s := self._bearer_wait_s(request):
                response = error_response(
                    429, "too_many_requests", f"too many wrong tokens from this address (the daemon's log names them: "
                    f"control_token_refused); try again in {wait_s} s. Meanwhile trading can still be stopped without "
                    "the API: the kill-switch file (risk.kill_switch_file) or SIGTERM",
                    headers={"Retry-After": str(wait_s)})
            elif self._authorized(request):
                response = await self._answer(request, handler)
            elif (found := self.dashboard.session_of(request)) is None:
                response = error_response(
                    401, "unauthorized",
                    f"missing or wrong bearer token: send 'Authorization: Bearer <token>' with the token from "
                    f"{self._token_hint}", headers={"WWW-Authenticate": 'Bearer realm="trader"'})
            elif request.method not in SAFE_METHODS and not self.dashboard.csrf_ok(request, found[1]):
                response = json_response(self.dashboard.csrf_refusal().body(), 403)
            else:
                quiet = request.method in SAFE_METHODS
                response = await self._answer(request, handler)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            response.headers.setdefault("Cache-Control", "no-store")
            status = response.status
            return response
        finally:
            quiet = quiet or (request.path == SCRAPE_PATH and status < 400)
            log_line = log.debug if quiet else log.info
            log_line("control_request", method=request.method, path=request.path, status=status,
                     ms=round((time.perf_counter() - started) * 1000, 1), remote=request.remote or "")

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ControlError as exc:
            return json_response(exc.body(), exc.status)
        except web.HTTPException as exc:
            return error_response(exc.status, _STATUS_CODES.get(exc.status, "bad_request"),
                                  self._http_message(request, exc))
        except Exception:
            log.exception("control_request_failed", method=request.method, path=request.path)
            return error_response(500, "internal", "internal error: the daemon's log has the details")

    def _http_message(self, request: web.Request, exc: web.HTTPException) -> str:
        if exc.status == 404:
            return f"no such route: {request.method} {request.path} (GET /status, /positions, /orders, /signals, " \
                   "/risk, /report, /metrics; POST /orders, /orders/{id}/cancel, /halt, /resume, /reset-daily, " \
                   "/flatten, /signals/{id}/approve, /signals/{id}/reject; the dashboard: GET /)"
        if exc.status == 405:
            allowed = exc.headers.get("Allow", "")
            return f"{request.method} is not allowed on {request.path}" + (f"; use {allowed}" if allowed else "")
        if exc.status == 413:
            return (f"the request body is larger than {self.settings.max_body_bytes} bytes "
                    "(control.max_body_bytes)")
        return exc.reason

    def _bearer_wait_s(self, request: web.Request) -> int:
        """0 unless the request offers a token and its address has used up ``TOKEN_FAILURES_PER_MINUTE``."""
        if "Authorization" not in request.headers:
            return 0
        return self.token_limiter.retry_after_s(request.remote or "unknown")

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization")
        scheme, _, given = (header or "").partition(" ")
        # Always compare, so that a missing header takes as long as a wrong one. A header that is not UTF-8 comes in
        # with surrogate escapes: turned back into its bytes, it is a wrong token (401), not a server error.
        match = hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), self._token)
        if match and scheme.lower() == "bearer":
            return True
        if header is not None:  # a token offered and wrong: a guess, counted like a failed login
            remote = request.remote or "unknown"
            log.warning("control_token_refused", remote=remote, failures_last_minute=self.token_limiter.failed(remote))
        return False

    # -- helpers --------------------------------------------------------------------------------------------
    @staticmethod
    async def _body(request: web.Request, model: type[Body]) -> Body:
        raw = await request.read()  # raises 413 past client_max_size
        data: Any = {}
        if raw.strip():
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise BadRequest(f"the body is not valid JSON ({exc}); send a JSON object, e.g. "
                                 '{"side": "BUY", "instrument": "NIFTY ATM CE", "lots": 1}') from None
        if not isinstance(data, dict):
            raise BadRequest(f"the body must be a JSON object, not {type(data).__name__}")
        if data:
            _refuse_repeated_fields(raw)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            field, message = describe_validation_error(exc)
            raise BadRequest(message, field=field) from None

    @staticmethod
    def _ref(request: web.Request) -> str:
        ref = request.match_info["ref"]
        if not _REF.match(ref):
            raise BadRequest("the id must be 1-64 letters, digits or . _ : - (an intent id, an order id or a "
                             "signal id, as GET /orders and GET /signals show them)", field="ref")
        return ref

    # -- handlers -------------------------------------------------------------------------------------------
    async def _healthz(self, request: web.Request) -> web.Response:
        """Open (no token) and cheap: ``app.health``'s report, 200 when every check passes, else 503."""
        report = self.service.app.health.report()
        return json_response(report.as_dict(), 200 if report.ok else 503, headers={"Cache-Control": "no-store"})

    async def _metrics(self, request: web.Request) -> web.Response:
        """Prometheus text format, from the App's own registry (``trader/actors/metrics.py``)."""
        body = generate_latest(self.service.app.metrics_registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    @staticmethod
    def _reader(read: Callable[[], dict[str, Any]]) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return json_response(read())
        return handler

    async def _place(self, request: web.Request) -> web.Response:
        order = await self._body(request, ManualOrder)
        answer = await self.service.place_order(order)
        return json_response(answer, 202 if answer.get("decided") is False else 200)

    async def _cancel(self, request: web.Request) -> web.Response:
        ref = self._ref(request)
        await self._body(request, NoBody)
        return json_response(await self.service.cancel(ref))

    async def _halt(self, request: web.Request) -> web.Response:
        body = await self._body(request, HaltBody)
        return json_response(await self.service.halt(body.reason))

    async def _resume(self, request: web.Request) -> web.Response:
        await self._body(request, NoBody)
        return json_response(await self.service.resume())

    async def _reset_daily(self, request: web.Request) -> web.Response:
        await self._body(request, NoBody)
        return json_response(await self.service.reset_daily())

    async def _flatten(self, request: web.Request) -> web.Response:
        body = await self._body(request, FlattenBody)
        return json_response(await self.service.flatten(body.underlying))

    async def _approve(self, request: web.Request) -> web.Response:
        ref = self._ref(request)
        await self._body(request, NoBody)
        answer = await self.service.approve(ref)
        return json_response(answer, 202 if answer.get("decided") is False else 200)

    async def _reject(self, request: web.Request) -> web.Response:
        ref = self._ref(request)
        body = await self._body(request, RejectBody)
        return json_response(await self.service.reject(ref, body.reason))


def _cap_connections(server: web.Server, most: int) -> None:
    """At most ``most`` open connections: one past it is aborted right after it is accepted (aiohttp has no such
    bound), logged once each time the cap is reached. Wraps the server's ``connection_made``, which every new
    connection's handler calls first."""
    admit = server.connection_made
    full = False

    def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
        nonlocal full
        admit(handler, transport)
        if len(server.connections) <= most:
            full = False
            return
        # Not at once: the handler starts its request task after this call returns, and that task must see the
        # handler still attached (else aiohttp asserts in it); the abort's connection_lost then ends it cleanly.
        asyncio.get_running_loop().call_soon(transport.abort)
        if not full:
            full = True
            log.warning("control_connections_full", most=most)

    server.connection_made = connection_made  # type: ignore[method-assign]


def _refuse_repeated_fields(raw: bytes) -> None:
    """``BadRequest`` when an object in the (valid JSON) body names a field twice: parsers keep one of the two
    values (orjson the last), so ``{"dry_run": true, "dry_run": false}`` would place an order its sender may have
    meant as a dry run. A request that can be read two ways is refused, never guessed."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for name, _ in items:
            if name in seen:
                raise BadRequest(f"the body names {name!r} twice: send each field once", field=name)
            seen.add(name)
        return dict(items)

    try:
        json.loads(raw, object_pairs_hook=pairs)
    except (RecursionError, ValueError):  # orjson read it; the stdlib parser gives up sooner on deep or huge input
        raise BadRequest("the body is nested too deeply or holds too large a number; send a flat JSON object, "
                         'e.g. {"side": "BUY", "instrument": "NIFTY ATM CE", "lots": 1}') from None

