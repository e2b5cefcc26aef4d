"""Async Kite Connect v3 REST client (aiohttp); the ``Broker`` port on top of it is ``broker.py``.

``KiteRestClient`` speaks the wire protocol exactly as the official ``kiteconnect`` client does
(Kite Connect v3 docs, https://kite.trade/docs/connect/v3/, and the official client's ``connect.py``):

* headers: ``X-Kite-Version: 3`` always, ``Authorization: token <api_key>:<access_token>`` when both are known,
  a ``User-Agent`` naming trader;
* GET/DELETE parameters in the query string, POST/PUT form-encoded (``None`` values omitted), a JSON array body for
  ``/margins/orders`` and ``/margins/basket``;
* responses: JSON envelopes return their ``data``; errors raise the official ``kiteconnect.exceptions`` classes
  (``errors.py``); transport failures propagate as ``aiohttp.ClientError`` / ``TimeoutError``, as the official client
  lets ``requests`` exceptions through.

The client returns Kite's payloads **raw** (rupee floats, timestamp strings, exactly as on the wire); conversion to
paise happens in ``KiteBroker``, the port adapter, through ``trader.money``. ``instruments()`` is the exception: it
returns an ``InstrumentMaster`` built from the CSV dump.

Pacing: one ``RateLimiter`` per endpoint family (orders, quote, historical, everything else) on the injected clock.
Retries: only GET requests are retried (timeout, connection error, 5xx, 429) with bounded exponential backoff;
POST/PUT/DELETE are sent exactly once — an ambiguous write is resolved by the execution actor looking the ``tag`` up.

Token expiry: the first HTTP 403 ``TokenException`` for the client's own access token marks that token dead and calls
``on_token_rejected(token, detail)``; from then on every request with the dead token is refused here, without being
sent (a ``TokenException``, 403), until ``access_token`` is replaced — no order leaves with a token Kite has refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast
from urllib.parse import urljoin

import aiohttp

from trader import __version__
from trader.adapters.http_session import OwnedSession
from trader.adapters.kite.errors import (
    KiteException,
    TokenException,
    data_exception,
    http_status,
    parse_response,
    token_exception,
)
from trader.clock import NS_PER_SECOND, Clock, LiveClock
from trader.ids import is_valid_tag
from trader.market.instrument_master import InstrumentMaster
from trader.ratelimit import RateLimiter

DEFAULT_ROOT = "https://api.kite.trade"
KITE_VERSION = "3"
USER_AGENT = f"trader/{__version__} (aiohttp/{aiohttp.__version__}; Kite Connect v3)"

# Requests per second per endpoint family (§5). Orders: Kite allows 10/s per account; we keep a margin.
DEFAULT_RATE_LIMITS: Mapping[str, float] = {"orders": 8.0, "quote": 1.0, "historical": 3.0, "default": 10.0}

_MARKET_PROTECTED = frozenset({"MARKET", "SL-M"})

# --- pacing -------------------------------------------------------------------------------------------------


def endpoint_family(method: str, path: str) -> str:
    if path.startswith("/orders/") and method in ("POST", "PUT", "DELETE"):
        return "orders"
    if path == "/quote" or path.startswith("/quote/"):
        return "quote"
    if path.startswith("/instruments/historical/"):
        return "historical"
    return "default"


# --- the REST client ----------------------------------------------------------------------------------------


def _form_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _clean(params: Mapping[str, object] | None) -> dict[str, str]:
    return {key: _form_value(value) for key, value in (params or {}).items() if value is not None}


def checksum(api_key: str, request_token: str, api_secret: str) -> str:
    """Kite's login checksum: hex SHA-256 of ``api_key + request_token + api_secret``."""
    return hashlib.sha256(f"{api_key}{request_token}{api_secret}".encode()).hexdigest()


class KiteRestClient(OwnedSession):
    """One aiohttp session per client; all methods are coroutines returning Kite's ``data`` payload raw."""

    def __init__(self, api_key: str, access_token: str | None = None, *, root: str = DEFAULT_ROOT,
                 session: aiohttp.ClientSession | None = None, timeout_s: float = 7.0, clock: Clock | None = None,
                 rate_limits: Mapping[str, float] | None = None, get_attempts: int = 3,
                 backoff_s: float = 0.25, max_backoff_s: float = 2.0) -> None:
        if get_attempts < 1:
            raise ValueError(f"get_attempts must be >= 1, got {get_attempts}")
        self.api_key = api_key
        self.access_token = access_token
        self.root = root
        super().__init__(session)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock: Clock = clock or LiveClock()
        limits = {**DEFAULT_RATE_LIMITS, **(rate_limits or {})}
        self._limiters = {family: RateLimiter.per_second(rate, clock=self._clock) for family, rate in limits.items()}
        self._get_attempts = get_attempts
        self._backoff_ns = round(backoff_s * NS_PER_SECOND)
        self._max_backoff_ns = round(max_backoff_s * NS_PER_SECOND)
        self.dead_token: str | None = None  # refused by Kite with 403 TokenException: never sent again
        self.on_token_rejected: Callable[[str, str], None] | None = None

    # -- plumbing ----------------------------------------------------------------------------------------------
    def headers(self, access_token: str | None = None) -> dict[str, str]:
        headers = {"X-Kite-Version": KITE_VERSION, "User-Agent": USER_AGENT}
        token = access_token or self.access_token
        if self.api_key and token:
            headers["Authorization"] = f"token {self.api_key}:{token}"
        return headers

    async def _send_once(self, method: str, url: str, *, query: Any, form: dict[str, str] | None,
                         json_body: Any, access_token: str | None) -> Any:
        session = self._get_session()
        async with session.request(method, url, params=query, data=form, json=json_body,
                                   headers=self.headers(access_token),
                                   timeout=self._timeout, allow_redirects=True) as response:
            body = await response.read()
            return parse_response(response.status, response.headers.get("Content-Type", ""), body)

    async def request(self, method: str, path: str, params: Mapping[str, object] | None = None, *,
                      query: Sequence[tuple[str, str]] | Mapping[str, object] | None = None,
                      json_body: Any = None, access_token: str | None = None) -> Any:
        """Send one Kite request. ``params`` go to the query (GET/DELETE) or the form body (POST/PUT);
        ``query`` adds explicit query parameters (repeated keys as pairs); ``json_body`` replaces the form;
        ``access_token`` authenticates this request only (checking a new token before it is swapped in)."""
        token = access_token or self.access_token
        if token and token == self.dead_token:
            raise token_exception("not sent: Kite already refused this access token (403 TokenException); "
                                  "run `trader login` for a new one")
        method = method.upper()
        url = urljoin(self.root, path)  # as the official client: a path in ``root`` is discarded
        form: dict[str, str] | None = None
        query_params: list[tuple[str, str]] = []
        if isinstance(query, Mapping):
            query_params.extend(_clean(query).items())
        elif query is not None:
            query_params.extend(query)
        if method in ("GET", "DELETE"):
            query_params.extend(_clean(params).items())
        elif json_body is None:
            form = _clean(params)
        limiter = self._limiters.get(endpoint_family(method, path), self._limiters["default"])
        attempts = self._get_attempts if method == "GET" else 1
        for attempt in range(1, attempts + 1):
            await limiter.acquire()
            try:
                return await self._send_once(method, url, query=query_params or None, form=form,
                                             json_body=json_body, access_token=access_token)
            except (aiohttp.ClientError, TimeoutError):
                if attempt == attempts:
                    raise
            except KiteException as exc:
                status = http_status(exc) or 0
                if status == 403 and isinstance(exc, TokenException) and token:
                    self._token_refused(token, f"{method} {path}: {exc}")
                if attempt == attempts or not (status == 429 or status >= 500):
                    raise
            delay = min(self._backoff_ns << (attempt - 1), self._max_backoff_ns)
            await self._clock.sleep_until(self._clock.now_ns() + delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _token_refused(self, token: str, detail: str) -> None:
        if token != self.access_token or token == self.dead_token:
            return  # a candidate checked with ``access_token=``, or already known dead
        self.dead_token = token
        if self.on_token_rejected is not None:
            self.on_token_rejected(token, detail)

    # -- session -----------------------------------------------------------------------------------------------
    async def generate_session(self, request_token: str, api_secret: str) -> dict[str, Any]:
        """Exchange a login ``request_token``; stores and returns the session (``access_token`` etc.)."""
        data = await self.request("POST", "/session/token", {
            "api_key": self.api_key,
            "request_token": request_token,
            "checksum": checksum(self.api_key, request_token, api_secret),
        })
        session = cast(dict[str, Any], data)
        if "access_token" in session:
            self.access_token = str(session["access_token"])
        return session

    async def invalidate_session(self, access_token: str | None = None) -> bool:
        token = access_token or self.access_token
        data = await self.request("DELETE", "/session/token", {"api_key": self.api_key, "access_token": token})
        if token == self.access_token:
            self.access_token = None
        return bool(data)

    async def profile(self, *, access_token: str | None = None) -> dict[str, Any]:
        """``GET /user/profile``: the cheapest authenticated call, also used to check a new token."""
        return cast(dict[str, Any], await self.request("GET", "/user/profile", access_token=access_token))

    async def margins(self, segment: str | None = None) -> dict[str, Any]:
        path = f"/user/margins/{segment}" if segment else "/user/margins"
        return cast(dict[str, Any], await self.request("GET", path))

    # -- orders ------------------------------------------------------------------------------------------------
    async def place_order(self, variety: str, **params: Any) -> str:
        """``POST /orders/:variety``; returns the order id. Our code path always sets ``tag``."""
        validate_order_params(params)
        data = await self.request("POST", f"/orders/{variety}", {"variety": variety, **params})
        return str(cast(dict[str, Any], data)["order_id"])

    async def modify_order(self, variety: str, order_id: str, **params: Any) -> str:
        data = await self.request("PUT", f"/orders/{variety}/{order_id}",
                                  {"variety": variety, "order_id": order_id, **params})
        return str(cast(dict[str, Any], data)["order_id"])

    async def cancel_order(self, variety: str, order_id: str, parent_order_id: str | None = None) -> str:
        data = await self.request("DELETE", f"/orders/{variety}/{order_id}", {"parent_order_id": parent_order_id})
        return str(cast(dict[str, Any], data)["order_id"])

    async def orders(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self.request("GET", "/orders"))

    async def order_history(self, order_id: str) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self.request("GET", f"/orders/{order_id}"))

    async def trades(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self.request("GET", "/trades"))

    async def order_trades(self, order_id: str) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self.request("GET", f"/orders/{order_id}/trades"))

    async def positions(self) -> dict[str, list[dict[str, Any]]]:
        return cast(dict[str, list[dict[str, Any]]], await self.request("GET", "/portfolio/positions"))

    # -- margins calculators -----------------------------------------------------------------------------------
    async def order_margins(self, orders: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]],
                    await self.request("POST", "/margins/orders", json_body=[dict(o) for o in orders]))

    async def basket_margins(self, orders: Sequence[Mapping[str, Any]], consider_positions: bool = True,
                             mode: str | None = None) -> dict[str, Any]:
        query = {"consider_positions": consider_positions, "mode": mode}
        return cast(dict[str, Any], await self.request("POST", "/margins/basket", query=query,
                                                       json_body=[dict(o) for o in orders]))

    # -- market data -------------------------------------------------------------------------------------------
    async def quote(self, instruments: str | Sequence[str]) -> dict[str, dict[str, Any]]:
        return cast(dict[str, dict[str, Any]],
                    await self.request("GET", "/quote", query=_instrument_query(instruments)))

    async def ltp(self, instruments: str | Sequence[str]) -> dict[str, dict[str, Any]]:
        return cast(dict[str, dict[str, Any]],
                    await self.request("GET", "/quote/ltp", query=_instrument_query(instruments)))

    async def instruments_csv(self, exchange: str | None = None) -> str:
        path = f"/instruments/{exchange}" if exchange else "/instruments"
        data = await self.request("GET", path)
        if not isinstance(data, bytes):
            raise data_exception(200, f"expected a CSV instrument dump from {path}, got JSON")
        return data.decode("utf-8")

    async def instruments(self, exchange: str | None = None) -> InstrumentMaster:
        """The daily dump as an ``InstrumentMaster`` (index options and indices only)."""
        return InstrumentMaster.from_kite_csv(await self.instruments_csv(exchange))


def _instrument_query(instruments: str | Sequence[str]) -> list[tuple[str, str]]:
    names = [instruments] if isinstance(instruments, str) else list(instruments)
    return [("i", name) for name in names]


def validate_order_params(params: Mapping[str, Any]) -> None:
    """Refuse, before sending, what our code path must never send: no/invalid ``tag``, unprotected market orders."""
    tag = params.get("tag")
    if not isinstance(tag, str) or not is_valid_tag(tag):
        raise ValueError(f"order tag must be 1-20 ASCII letters/digits (our idempotency key), got {tag!r}")
    order_type = params.get("order_type")
    if order_type in _MARKET_PROTECTED:
        protection = params.get("market_protection")
        if protection is None:
            raise ValueError(f"{order_type} orders need market_protection (-1 = automatic, or 1..100 percent)")
        try:
            value = float(protection)
        except (TypeError, ValueError):
            raise ValueError(f"market_protection must be a number, got {protection!r}") from None
        if not (value == -1 or 0 < value <= 100):
            raise ValueError(f"market_protection must be -1 (automatic) or in (0, 100], got {protection!r}")

