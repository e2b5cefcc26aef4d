"""Async Fyers API v3 REST client (aiohttp); the ``Broker`` port on top of it is ``broker.py``.

The wire, as the official ``fyers-apiv3`` SDK speaks it (``fyersModel.py``):

* headers ``Authorization: <app_id>:<access_token>``, ``Content-Type: application/json``, ``version: 3``;
* two roots: the API root (``.../api/v3``: orders, books, funds, profile, login) and the data root (``.../data``:
  quotes); paths are appended to the root as they are;
* GET parameters in the query string; POST/PATCH/DELETE bodies are JSON objects;
* every reply is an envelope ``{"s": "ok"|"error", "code": int, "message": str, ...}`` with the payload under its own
  key (``orderBook``, ``tradeBook``, ``netPositions``, ``fund_limit``, ``data``, ``d``, ``id``, ``access_token``).

Every reply is validated here: a payload missing or of the wrong shape is a ``FyersError`` with ``malformed=True``
(``BrokerUnavailable`` on a write, a clear error on a read). Payloads are returned raw (rupee floats); paise happen in
``FyersBroker``.

Pacing (Fyers' documented limits per app and user: 10 requests/s, 200/min, 100 000/day; we keep a margin): every
request takes a slot from all three shared ``RateLimiter`` windows on the injected clock. Retries: GET only (timeout,
connection error, 5xx, 429), bounded exponential backoff; writes are sent exactly once.

Token expiry: the first refused token (``FyersTokenError``) marks it dead and calls ``on_token_rejected(token,
detail)``; requests with a dead token are refused here, unsent, until ``access_token`` is replaced.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp

from trader import __version__
from trader.adapters.fyers.errors import FyersError, FyersTokenError, parse_reply
from trader.adapters.http_session import OwnedSession
from trader.clock import NS_PER_SECOND, Clock, LiveClock
from trader.ids import fyers_order_tag
from trader.ratelimit import RateLimiter

DEFAULT_API_ROOT = "https://api-t1.fyers.in/api/v3"
DEFAULT_DATA_ROOT = "https://api-t1.fyers.in/data"
USER_AGENT = f"trader/{__version__} (aiohttp/{aiohttp.__version__}; Fyers API v3)"

# (limit, window in seconds): Fyers allows 10/s, 200/min and 100 000/day; we keep a margin on the short windows.
DEFAULT_RATE_LIMITS: tuple[tuple[int, float], ...] = ((8, 1.0), (180, 60.0), (100_000, 86_400.0))

_WRITES = frozenset({"POST", "PATCH", "PUT", "DELETE"})


def app_id_hash(app_id: str, secret_key: str) -> str:
    """Fyers' login hash: hex SHA-256 of ``"<app_id>:<secret_key>"``."""
    return hashlib.sha256(f"{app_id}:{secret_key}".encode()).hexdigest()


def _malformed(what: str, envelope: Mapping[str, Any], status: int = 200) -> FyersError:
    return FyersError(f"{what}: {json.dumps(envelope, default=str)[:200]}", http_status=status, malformed=True)


def _rows(envelope: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    rows = envelope.get(key)
    if rows is None and key in ("orderBook", "tradeBook", "netPositions"):
        rows = []  # an empty day: Fyers may leave the list out
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise _malformed(f"'{key}' is not a list of objects", envelope)
    return rows


class FyersRestClient(OwnedSession):
    """One aiohttp session per client; every method is a coroutine returning Fyers' payload raw, validated."""

    def __init__(self, app_id: str, access_token: str | None = None, *, api_root: str = DEFAULT_API_ROOT,
                 data_root: str = DEFAULT_DATA_ROOT, session: aiohttp.ClientSession | None = None,
                 timeout_s: float = 7.0, clock: Clock | None = None,
                 rate_limits: Sequence[tuple[int, float]] = DEFAULT_RATE_LIMITS, get_attempts: int = 3,
                 backoff_s: float = 0.25, max_backoff_s: float = 2.0) -> None:
        if get_attempts < 1:
            raise ValueError(f"get_attempts must be >= 1, got {get_attempts}")
        self.app_id = app_id
        self.access_token = access_token
        self.api_root = api_root.rstrip("/")
        self.data_root = data_root.rstrip("/")
        super().__init__(session)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock: Clock = clock or LiveClock()
        self._limiters = [RateLimiter(limit, window_ns=round(window * NS_PER_SECOND), clock=self._clock)
                          for limit, window in rate_limits]
        self._get_attempts = get_attempts
        self._backoff_ns = round(backoff_s * NS_PER_SECOND)
        self._max_backoff_ns = round(max_backoff_s * NS_PER_SECOND)
        self.dead_token: str | None = None
        self.on_token_rejected: Callable[[str, str], None] | None = None

    @property
    def root(self) -> str:
        return self.api_root

    def headers(self, access_token: str | None = None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "version": "3", "User-Agent": USER_AGENT}
        token = access_token or self.access_token
        if self.app_id and token:
            headers["Authorization"] = f"{self.app_id}:{token}"
        return headers

    async def _acquire(self, urgent: bool) -> None:
        for limiter in self._limiters:
            await limiter.acquire(urgent=urgent)

    async def request(self, method: str, path: str, params: Mapping[str, object] | None = None, *,
                      data: bool = False, access_token: str | None = None, auth: bool = True,
                      urgent: bool = False) -> dict[str, Any]:
        """One Fyers request → its ``s == "ok"`` envelope. ``data``: on the data root; ``access_token``: this
        request only (checking a candidate token); ``auth=False``: no Authorization header (login)."""
        token = access_token or self.access_token
        if auth and token and token == self.dead_token:
            raise FyersTokenError("not sent: Fyers already refused this access token; run `trader login --venue "
                                  "fyers` for a new one", http_status=401)
        method = method.upper()
        url = (self.data_root if data else self.api_root) + path
        query = {k: str(v) for k, v in (params or {}).items() if v is not None} if method == "GET" else None
        body = json.dumps(dict(params or {})) if method != "GET" else None
        headers = self.headers(access_token) if auth else {"Content-Type": "application/json", "version": "3"}
        attempts = self._get_attempts if method == "GET" else 1
        for attempt in range(1, attempts + 1):
            await self._acquire(urgent)
            try:
                session = self._get_session()
                async with session.request(method, url, params=query, data=body, headers=headers,
                                           timeout=self._timeout) as response:
                    return parse_reply(response.status, await response.read())
            except (aiohttp.ClientError, TimeoutError):
                if attempt == attempts:
                    raise
            except FyersTokenError as exc:
                if auth and token:
                    self._token_refused(token, f"{method} {path}: {exc}")
                raise
            except FyersError as exc:
                if attempt == attempts or not (exc.http_status == 429 or exc.http_status >= 500 or exc.malformed):
                    raise
            delay = min(self._backoff_ns << (attempt - 1), self._max_backoff_ns)
            await self._clock.sleep_until(self._clock.now_ns() + delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _token_refused(self, token: str, detail: str) -> None:
        if token != self.access_token or token == self.dead_token:
            return
        self.dead_token = token
        if self.on_token_rejected is not None:
            self.on_token_rejected(token, detail)

    # -- login and account ---------------------------------------------------------------------------------------
    async def validate_authcode(self, auth_code: str, secret_key: str) -> str:
        """``POST /validate-authcode`` → the access token (stored in the client too)."""
        envelope = await self.request("POST", "/validate-authcode", {
            "grant_type": "authorization_code", "appIdHash": app_id_hash(self.app_id, secret_key),
            "code": auth_code}, auth=False)
        token = envelope.get("access_token")
        if not isinstance(token, str) or not token:
            raise _malformed("no access_token in the /validate-authcode reply", envelope)
        self.access_token = token
        return token

    async def profile(self, *, access_token: str | None = None) -> dict[str, Any]:
        envelope = await self.request("GET", "/profile", access_token=access_token)
        data = envelope.get("data")
        if not isinstance(data, dict):
            raise _malformed("'data' of /profile is not an object", envelope)
        return data

    async def funds(self) -> list[dict[str, Any]]:
        return _rows(await self.request("GET", "/funds"), "fund_limit")

    # -- orders --------------------------------------------------------------------------------------------------
    async def place_order(self, order: Mapping[str, Any]) -> str:
        """``POST /orders/sync``; returns Fyers' order id. Refuses, unsent, an order without a valid ``orderTag``."""
        tag = order.get("orderTag")
        if not isinstance(tag, str) or fyers_order_tag(tag) != tag:
            raise ValueError(f"orderTag must be our idempotency key (1-20 letters/digits), got {tag!r}")
        return self._order_id(await self.request("POST", "/orders/sync", order))

    async def modify_order(self, order_id: str, changes: Mapping[str, Any]) -> str:
        return self._order_id(await self.request("PATCH", "/orders/sync", {"id": order_id, **changes}, urgent=True))

    async def cancel_order(self, order_id: str) -> str:
        return self._order_id(await self.request("DELETE", "/orders/sync", {"id": order_id}, urgent=True))

    @staticmethod
    def _order_id(envelope: Mapping[str, Any]) -> str:
        order_id = envelope.get("id")
        if isinstance(order_id, int) and not isinstance(order_id, bool):
            order_id = str(order_id)
        if not isinstance(order_id, str) or not order_id.strip():
            raise _malformed("an order reply without an order id", envelope)
        return order_id.strip()

    async def order_margin(self, orders: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """``POST /multiorder/margin`` ``{"data": [order, ...]}`` → ``data`` with ``margin_avail``, ``margin_total``
        (what the orders need) and ``margin_new_order``, rupees. Not in the official SDK's method list: the endpoint
        and its reply as public Fyers integrations call it (unconfirmed from Fyers' own docs)."""
        envelope = await self.request("POST", "/multiorder/margin", {"data": [dict(o) for o in orders]})
        data = envelope.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("margin_total"), int | float) \
                or isinstance(data.get("margin_total"), bool):
            raise _malformed("'data.margin_total' of /multiorder/margin is not a number", envelope)
        return data

    async def orders(self) -> list[dict[str, Any]]:
        return _rows(await self.request("GET", "/orders"), "orderBook")

    async def trades(self) -> list[dict[str, Any]]:
        return _rows(await self.request("GET", "/tradebook"), "tradeBook")

    async def positions(self) -> list[dict[str, Any]]:
        return _rows(await self.request("GET", "/positions"), "netPositions")

    # -- market data -----------------------------------------------------------------------------------------------
    async def quotes(self, symbols: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``GET <data>/quotes?symbols=A,B`` → ``{symbol: v}`` for every symbol Fyers answered ``s == "ok"``."""
        envelope = await self.request("GET", "/quotes", {"symbols": ",".join(symbols)}, data=True)
        rows = envelope.get("d")
        if not isinstance(rows, list):
            raise _malformed("'d' of /quotes is not a list", envelope)
        quotes: dict[str, dict[str, Any]] = {}
        for row in rows:
            if isinstance(row, dict) and row.get("s") == "ok" and isinstance(row.get("n"), str) \
                    and isinstance(row.get("v"), dict):
                quotes[row["n"]] = row["v"]
        return quotes

    # -- public files ------------------------------------------------------------------------------------------------
    async def download_text(self, url: str) -> str:
        """A public file (the symbol master CSV) as text; no Authorization. Non-200 is a ``FyersError``
        (5xx/429 retriable as a read)."""
        await self._acquire(False)
        session = self._get_session()
        async with session.get(url, timeout=self._timeout) as response:
            body = await response.read()
            if response.status != 200:
                raise FyersError(f"GET {url}: HTTP {response.status}", http_status=response.status,
                                 malformed=response.status >= 500)
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise FyersError(f"GET {url}: not UTF-8 text", http_status=200, malformed=True) from None
