"""The exchange simulator's Fyers API v3 wire face: REST (api root ``/api/v3``, data root ``/data``), the symbol master
(``/sym_details``), the login (auth code + ``appIdHash``) and the order-update socket (``/trade/v3``), all on one
aiohttp server, over the SAME core as the Kite face (``ExchangeSimulator``: one synthetic market, one matching
engine, one book; an order placed here shows in the Kite face's book too).

Paths are what the official SDK builds: ``Config.API + "/orders/sync"`` etc., so pointing its ``Config.API`` at
``<base>/api/v3`` and ``Config.DATA_API`` at ``<base>/data`` is all a client changes. Requests carry
``Authorization: <app_id>:<access_token>``. Access tokens live in the core's token set, so the core's fault knobs
apply to both faces alike: ``sim.expire_tokens()`` (REST answers 401 code -8, the order socket refuses its
handshake), ``sim.set_offline()`` (503, sockets dropped), ``sim.drop_websockets()`` / ``ws_drop_every_s``, and
``sim.faults`` (latency, 5xx share, 429 share, ``timeout_after_accept`` on placements).

Access tokens are JWT-shaped (``header.payload.signature``, base64url, HMAC-SHA256 with the app secret) because the
SDK's data socket reads ``exp`` and ``hsm_key`` from the payload: ``authorize_hsm(hsm_key)`` accepts the key of a live
token. ``exp`` is the simulator's wall clock (``sim.wall_ns``) plus ``token_ttl_s``, by default ten years: the SDK
compares ``exp`` with the real ``time.time()``, so a short lifetime on a test's fake wall clock would make its tests
depend on today's date; tokens die by the core's knob (``sim.expire_tokens``), as Kite's do, not by ``exp``.

HSM data socket: ``data_socket`` is a factory ``face -> server``, by default ``HsmServer(face.authorize_hsm,
face.listing)`` from ``trader.sim.fyers.data_socket``; the server is started
on ``data_ws_port`` with the face, fed every tick batch the core books (``publish_ticks(batch, day_stats)``, as the
Kite ``TickerServer``), dropped and taken offline with the core's knobs. ``symbol_token`` is a factory
``face -> handler`` for ``POST /data/symbol-token`` (by default ``symbol_token_handler(face.resolve,
face.authorized_any)``); the handler authorizes itself (the SDK sends the bare access token there).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

from aiohttp import web

from trader.events import Tick
from trader.logging import get_logger
from trader.market.instruments import OptionContract
from trader.sim.encode import DayStats
from trader.sim.exchange import ExchangeSimulator
from trader.sim.fyers import routes, symbols
from trader.sim.fyers.data_routes import symbol_token_handler
from trader.sim.fyers.data_socket import HsmServer
from trader.sim.fyers.order_socket import OrderSocket
from trader.sim.fyers.views import order_row, position_rows, trade_row
from trader.sim.fyers.wire import (
    INDEX_SYMBOLS,
    ORDER_SOCKET_KEYS,
    POSITION_SOCKET_KEYS,
    TRADE_SOCKET_KEYS,
    FyersError,
    failure,
    fy_token,
    fyers_symbol,
    index_fy_token,
    invalid_input,
    ok,
    socket_view,
)
from trader.sim.order_entry import EntryError
from trader.sim.sim_order import SimOrder
from trader.sim.wire import USER_ID

_log = get_logger("trader.sim.fyers")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_PUBLIC = frozenset({"/api/v3/generate-authcode", "/api/v3/validate-authcode", "/trade/v3", "/data/symbol-token"})


class DataSocketServer(Protocol):
    """What the face needs of the HSM data socket server (TickerServer-like)."""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str: ...
    async def stop(self) -> None: ...
    @property
    def clients(self) -> int: ...
    async def publish_ticks(self, ticks: Iterable[Tick], day_stats: Mapping[int, DayStats] | None = None) -> None: ...
    async def drop_connections(self) -> None: ...


def entry_error(error: EntryError) -> FyersError:
    """The Fyers face's answer to a refusal of the shared order entry."""
    if error.kind == "rate_limit":
        return FyersError(429, -429, "request limit reached")
    if error.kind == "not_found":
        return FyersError(400, -51, f"Invalid order id: {error.message}")
    if error.kind in ("order", "margin"):
        return FyersError(400, -99, error.message)
    return invalid_input(error.message)


def _hsm_server(face: FyersFace) -> DataSocketServer:
    return HsmServer(face.authorize_hsm, face.listing)


def _symbol_token_route(face: FyersFace) -> Handler:
    return symbol_token_handler(face.resolve, face.authorized_any)


class FyersFace:
    def __init__(self, sim: ExchangeSimulator, *, app_id: str = "SIMAPP-100", secret_key: str = "sim_fyers_secret",
                 redirect_uri: str = "https://127.0.0.1/", token_ttl_s: int = 10 * 365 * 86_400,
                 data_socket: Callable[[FyersFace], DataSocketServer] | None = None,
                 symbol_token: Callable[[FyersFace], Handler] | None = None) -> None:
        self.sim = sim
        self.app_id = app_id
        self.secret_key = secret_key
        self.redirect_uri = redirect_uri
        self.token_ttl_s = token_ttl_s
        self.hsm_keys: dict[str, str] = {}  # hsm_key -> the access token carrying it
        self.auth_codes: set[str] = set()  # issued by generate-authcode, single use
        self.issued: set[str] = set()  # every access token this face issued (expired ones stay: -8, not -16)
        self.token_refusals = 0
        self.base_url = ""
        self.data_ws_url = ""
        self.order_socket = OrderSocket(self.authorized)
        self._runner: web.AppRunner | None = None
        # The HSM market-data socket and its /data/symbol-token route: the real ones unless a test gives its own.
        self.data_socket: DataSocketServer | None = (data_socket or _hsm_server)(self)
        sim.order_listeners.append(self._on_order)
        sim.trade_listeners.append(self._on_trade)
        sim.batch_listeners.append(self._on_batch)
        sim.socket_listeners.append(self._on_socket_fault)
        self.app = web.Application(middlewares=[self._middleware])
        r = self.app.router
        r.add_get("/api/v3/generate-authcode", self.generate_authcode)
        r.add_post("/api/v3/validate-authcode", self.validate_authcode)
        r.add_get("/api/v3/profile", self.profile)
        r.add_post("/api/v3/logout", self.logout)
        r.add_get("/trade/v3", self.order_socket.handle)
        routes.add_routes(r, sim)
        symbols.add_routes(r, sim)
        r.add_post("/data/symbol-token", (symbol_token or _symbol_token_route)(self))

    # -- lifecycle -----------------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0, data_ws_port: int = 0) -> str:
        """Serve the face (the core must be started first); returns the base URL (``http://host:port``)."""
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.base_url = f"http://{host}:{sockets[0].getsockname()[1] if sockets else port}"
        self.order_socket.start()
        if self.data_socket is not None:
            self.data_ws_url = await self.data_socket.start(host, data_ws_port)
        _log.info("sim_fyers_started", **self.urls())
        return self.base_url

    async def stop(self) -> None:
        for hooks, hook in ((self.sim.order_listeners, self._on_order), (self.sim.trade_listeners, self._on_trade),
                            (self.sim.batch_listeners, self._on_batch),
                            (self.sim.socket_listeners, self._on_socket_fault)):
            if hook in hooks:
                hooks.remove(hook)  # type: ignore[arg-type]
        await self.order_socket.stop()
        if self.data_socket is not None:
            await self.data_socket.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    def urls(self) -> dict[str, str]:
        """What a client sets (the names of the daemon's settings: TRADER_FYERS__<NAME>)."""
        ws = self.base_url.replace("http://", "ws://", 1)
        return {"API_ROOT": f"{self.base_url}/api/v3", "DATA_ROOT": f"{self.base_url}/data",
                "DATA_WS_URL": self.data_ws_url, "ORDER_WS_URL": f"{ws}/trade/v3",
                "SYMBOLS_ROOT": f"{self.base_url}/sym_details", "APP_ID": self.app_id}

    # -- the core's events ---------------------------------------------------------------------------------
    def _on_order(self, order: SimOrder) -> None:
        self.order_socket.push("orders", socket_view(order_row(self.sim, order), ORDER_SOCKET_KEYS))

    def _on_trade(self, order: SimOrder, trade: Mapping[str, Any]) -> None:
        self.order_socket.push("trades", socket_view(trade_row(self.sim, order, trade), TRADE_SOCKET_KEYS))
        symbol = fyers_symbol(order.contract)
        for row in position_rows(self.sim):
            if row["symbol"] == symbol:
                self.order_socket.push("positions", socket_view(row, POSITION_SOCKET_KEYS))

    async def _on_batch(self, batch: list[Tick]) -> None:
        if self.data_socket is not None and self.data_socket.clients:
            await self.data_socket.publish_ticks(batch, self.sim.day_stats(t.instrument_token for t in batch))

    async def _on_socket_fault(self, what: str) -> None:
        if what in ("drop", "offline"):
            await self.order_socket.drop_connections()
        if self.data_socket is not None:
            if what == "drop":
                await self.data_socket.drop_connections()
            elif what == "offline":
                await self.data_socket.stop()
            elif what == "online" and self.data_ws_url:
                host, _, port = self.data_ws_url.split("://", 1)[1].split("/", 1)[0].rpartition(":")
                await self.data_socket.start(host, int(port))

    # -- authentication ------------------------------------------------------------------------------------
    def app_id_hash(self) -> str:
        return hashlib.sha256(f"{self.app_id}:{self.secret_key}".encode()).hexdigest()

    def _token_state(self, credentials: str) -> int:
        """0 if ``<app_id>:<access_token>`` is good, else Fyers' code: -8 expired, -16 invalid."""
        app_id, _, token = credentials.partition(":")
        if app_id == self.app_id and token in self.sim.auth.access_tokens and token in self.issued:
            return 0
        return -8 if app_id == self.app_id and token in self.issued else -16

    def authorized(self, credentials: str) -> bool:
        """For the sockets: is ``<app_id>:<access_token>`` a live token of this face?"""
        return self._token_state(credentials) == 0

    def authorized_any(self, credentials: str) -> bool:
        """``<app_id>:<access_token>`` or the bare access token (what the SDK's symbol conversion sends)."""
        return self.authorized(credentials if ":" in credentials else f"{self.app_id}:{credentials}")

    def authorize_hsm(self, hsm_key: str) -> bool:
        """For the HSM data socket: is ``hsm_key`` the key of a live access token?"""
        token = self.hsm_keys.get(hsm_key)
        return token is not None and token in self.sim.auth.access_tokens

    def _issue_token(self) -> str:
        """A JWT-shaped access token whose payload carries ``exp`` and ``hsm_key`` (what the SDK's data socket
        reads); signed with the app secret (nobody checks the signature but the simulator's own book)."""
        now = self.sim.wall_ns() // 1_000_000_000
        hsm_key = secrets.token_hex(20)
        payload = {"iss": "api.fyers.in", "iat": now, "nbf": now, "exp": now + self.token_ttl_s,
                   "sub": "access_token", "fy_id": USER_ID, "appType": 100, "hsm_key": hsm_key,
                   "nonce": secrets.token_hex(8)}
        head = _b64({"alg": "HS256", "typ": "JWT"}) + "." + _b64(payload)
        signature = hmac.new(self.secret_key.encode(), head.encode(), hashlib.sha256).digest()
        token = f"{head}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
        self.hsm_keys[hsm_key] = token
        return token

    # -- identity for the data socket ----------------------------------------------------------------------
    def listing(self, instrument_token: int) -> tuple[str, str] | None:
        """The core's instrument token -> (Fyers symbol, fyToken), for the index and every listed contract."""
        index = self.sim.market.index
        if instrument_token == index.instrument_token:
            return INDEX_SYMBOLS[self.sim.spec.name][0], index_fy_token(index)
        contract = self.sim.instruments.by_token(instrument_token)
        if not isinstance(contract, OptionContract):
            return None
        return fyers_symbol(contract), fy_token(contract)

    def resolve(self, symbol: str) -> str | None:
        """A Fyers symbol -> its fyToken (None if the simulated exchange does not list it)."""
        index = self.sim.market.index
        if symbol == INDEX_SYMBOLS[self.sim.spec.name][0]:
            return index_fy_token(index)
        prefix, _, tradingsymbol = symbol.partition(":")
        exchange = {"NSE": "NFO", "BSE": "BFO"}.get(prefix, "")
        contract = self.sim.contract(exchange, tradingsymbol) if exchange else None
        return fy_token(contract) if contract is not None else None

    async def generate_authcode(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("client_id") != self.app_id:
            raise FyersError(400, -352, "Invalid app id")
        redirect = request.query.get("redirect_uri") or self.redirect_uri
        if redirect != self.redirect_uri:
            raise invalid_input("redirect_uri does not match the app's redirect url")
        code = secrets.token_hex(16)
        self.auth_codes.add(code)
        separator = "&" if "?" in redirect else "?"
        state = request.query.get("state", "None")
        raise web.HTTPFound(f"{redirect}{separator}s=ok&code=200&auth_code={code}&state={state}")

    async def validate_authcode(self, request: web.Request) -> web.StreamResponse:
        body = await routes.json_body(request)
        if body.get("grant_type") != "authorization_code":
            raise invalid_input("grant_type must be authorization_code")
        if body.get("appIdHash") != self.app_id_hash():
            raise FyersError(401, -16, "Invalid appIdHash: sha256 of '<app_id>:<secret>' expected")
        code = body.get("code")
        if not isinstance(code, str) or code not in self.auth_codes:
            raise FyersError(401, -16, "Invalid auth code: expired or already used")
        self.auth_codes.discard(code)
        token = self._issue_token()
        self.issued.add(token)
        self.sim.auth.access_tokens.add(token)
        return ok({"access_token": token, "refresh_token": secrets.token_hex(24)})

    async def profile(self, request: web.Request) -> web.StreamResponse:
        return ok({"data": {"fy_id": USER_ID, "name": "FYERS SIMULATOR", "display_name": "Simulator",
                            "email_id": "sim@example.invalid", "PAN": "", "mobile_number": "", "image": None,
                            "totp": False, "pin_change_date": "", "pwd_change_date": None, "pwd_to_expire": 90,
                            "ddpi_enabled": False, "mtf_enabled": False}})

    async def logout(self, request: web.Request) -> web.StreamResponse:
        token = request.headers.get("Authorization", "").partition(":")[2]
        self.sim.auth.access_tokens.discard(token)
        self.issued.discard(token)
        return ok(message="you are logged out")

    # -- HTTP plumbing -------------------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        sim, faults = self.sim, self.sim.faults
        if faults.latency_ms:
            await sim.pause(faults.latency_ms / 1000)
        try:
            if sim.offline:
                raise FyersError(503, -503, "Simulated outage: the broker cannot be reached.")
            if request.path not in _PUBLIC and not request.path.startswith("/sym_details/"):
                state = self._token_state(request.headers.get("Authorization", ""))
                if state:
                    self.token_refusals += 1
                    raise FyersError(401, state, "Your token has expired" if state == -8
                                     else "Could not authenticate the user: invalid token")
                if faults.rate_limit_rate and sim.rng.random() < faults.rate_limit_rate:
                    raise FyersError(429, -429, "request limit reached")
                if faults.error_rate and sim.rng.random() < faults.error_rate:
                    status = sim.rng.choice([500, 502, 503])
                    raise FyersError(status, -status, f"Simulated server error {status}.")
            return await handler(request)
        except FyersError as error:
            return failure(error)
        except EntryError as error:
            return failure(entry_error(error))
        except web.HTTPNotFound:
            return failure(FyersError(404, -404, f"Route not found: {request.method} {request.path}"))
        except web.HTTPMethodNotAllowed:
            return failure(FyersError(405, -405, f"Method not allowed: {request.method}"))


def _b64(value: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).rstrip(b"=").decode()
