"""Async Kite Connect v3 REST client (aiohttp) and the ``Broker`` port on top of it.

``KiteRestClient`` speaks the wire protocol exactly as the official ``kiteconnect`` client does
(``shared/docs/kite-protocol.md`` §1-§3, §5):

* headers: ``X-Kite-Version: 3`` always, ``Authorization: token <api_key>:<access_token>`` when both are known,
  a ``User-Agent`` naming trader;
* GET/DELETE parameters in the query string, POST/PUT form-encoded (``None`` values omitted), a JSON array body for
  ``/margins/orders`` and ``/margins/basket``;
* responses: JSON envelopes return their ``data``; errors raise the **official** ``kiteconnect.exceptions`` class named
  by ``error_type`` (unknown names → ``GeneralException``) with ``.code`` = the HTTP status; an unparsable JSON body
  or a content type that is neither JSON nor CSV raises ``DataException`` (class default code 502, as the official
  client does). Every exception raised from a response also carries ``http_status``. Transport failures (connection
  errors, timeouts) propagate as ``aiohttp.ClientError`` / ``TimeoutError``, as the official client lets
  ``requests`` exceptions through; ``classify`` maps all of these onto the daemon's ``BrokerError`` classes.

The client returns Kite's payloads **raw** (rupee floats, timestamp strings, exactly as on the wire); conversion to
paise happens in ``KiteBroker``, the port adapter, with ``round(x * 100)``. ``instruments()`` is the exception: it
returns an ``InstrumentMaster`` built from the CSV dump.

Pacing: one GCRA token bucket per endpoint family (orders, quote, historical, everything else) on the injected clock.
Retries: only GET requests are retried (timeout, connection error, 5xx, 429) with bounded exponential backoff;
POST/PUT/DELETE are sent exactly once — an ambiguous write is resolved by the execution actor looking the ``tag`` up.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast
from urllib.parse import urljoin

import aiohttp
from kiteconnect import exceptions as kite_exceptions

from trader import __version__
from trader.adapters.kite.orders import OrderTracker
from trader.adapters.ports import (
    BrokerError,
    BrokerOrder,
    BrokerUnavailable,
    MarginView,
    OrderRejected,
    RateLimited,
)
from trader.clock import NS_PER_SECOND, Clock, LiveClock
from trader.events import IntentPurpose, OrderIntent, OrderRequest, OrderStatus, OrderType, Tick
from trader.ids import is_valid_tag
from trader.market.instruments import InstrumentMaster
from trader.money import rupee_text, to_paise_or_zero, to_rupees
from trader.ratelimit import RateLimiter

KiteException: type[Exception] = kite_exceptions.KiteException
GeneralException: type[Exception] = kite_exceptions.GeneralException
DataException: type[Exception] = kite_exceptions.DataException
NetworkException: type[Exception] = kite_exceptions.NetworkException
TokenException: type[Exception] = kite_exceptions.TokenException

DEFAULT_ROOT = "https://api.kite.trade"
KITE_VERSION = "3"
USER_AGENT = f"trader/{__version__} (aiohttp/{aiohttp.__version__}; Kite Connect v3)"

# Requests per second per endpoint family (§5). Orders: Kite allows 10/s per account; we keep a margin.
DEFAULT_RATE_LIMITS: Mapping[str, float] = {"orders": 8.0, "quote": 1.0, "historical": 3.0, "default": 10.0}

_MARKET_PROTECTED = frozenset({"MARKET", "SL-M"})


# --- errors -------------------------------------------------------------------------------------------------


class KiteSessionExpired(OrderRejected):
    """TokenException: the request was refused because the access token is invalid or expired; log in again."""


def _http_status(exc: BaseException) -> int | None:
    status = getattr(exc, "http_status", None)
    if isinstance(status, int):
        return status
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) else None


def classify(exc: BaseException) -> type[BrokerError]:
    """The daemon's view of a client failure.

    429 → ``RateLimited`` (not accepted; may be re-sent later). 5xx, ``NetworkException``, ``DataException``,
    timeouts and connection errors → ``BrokerUnavailable`` (a write may or may not have happened). Any other 4xx
    (InputException, OrderException, MarginException→GeneralException, …) → ``OrderRejected``; TokenException →
    ``KiteSessionExpired`` (an ``OrderRejected``). A ``ValueError`` from client-side validation → ``OrderRejected``
    (nothing was sent). Anything else → ``BrokerUnavailable``: when in doubt, look the tag up.
    """
    if isinstance(exc, BrokerError):
        return type(exc)
    if isinstance(exc, (aiohttp.ClientError, TimeoutError)):
        return BrokerUnavailable
    if isinstance(exc, KiteException):
        status = _http_status(exc)
        if status == 429:
            return RateLimited
        if isinstance(exc, (NetworkException, DataException)) or status is None or status >= 500:
            return BrokerUnavailable
        if isinstance(exc, TokenException):
            return KiteSessionExpired
        return OrderRejected
    if isinstance(exc, ValueError):
        return OrderRejected
    return BrokerUnavailable


def to_broker_error(exc: BaseException) -> BrokerError:
    kind = classify(exc)
    if isinstance(exc, BrokerError):
        return exc
    status = _http_status(exc)
    detail = f"{type(exc).__name__}" + (f" (HTTP {status})" if status is not None else "") + f": {exc}"
    error = kind(detail)
    error.__cause__ = exc
    return error


def _kite_error(status: int, envelope: Mapping[str, Any]) -> Exception:
    """The official exception class named by ``error_type``, exactly as ``KiteConnect._request`` picks it."""
    name = envelope.get("error_type")
    candidate = getattr(kite_exceptions, name, None) if isinstance(name, str) and name else None
    cls: Any = candidate if isinstance(candidate, type) and issubclass(candidate, KiteException) else GeneralException
    exc: Exception = cls(str(envelope.get("message", "")), code=status)
    exc.http_status = status  # type: ignore[attr-defined]
    return exc


def _data_exception(status: int, message: str) -> Exception:
    exc = DataException(message)  # class default code (502), as the official client
    exc.http_status = status  # type: ignore[attr-defined]
    return exc


def parse_response(status: int, content_type: str, body: bytes) -> Any:
    """Kite envelope → ``data`` (JSON) or raw bytes (CSV); raises the official exception classes."""
    if "json" in content_type:
        try:
            envelope = json.loads(body)
        except ValueError:
            raise _data_exception(
                status, f"Couldn't parse the JSON response received from the server: {body[:200]!r}") from None
        if not isinstance(envelope, dict):
            raise _data_exception(status, f"JSON response is not an envelope object: {body[:200]!r}")
        if envelope.get("status") == "error" or envelope.get("error_type"):
            raise _kite_error(status, envelope)
        if "data" not in envelope:
            raise _data_exception(status, f"JSON envelope without 'data': {body[:200]!r}")
        return envelope["data"]
    if "csv" in content_type:
        return body
    raise _data_exception(status, f"Unknown Content-Type ({content_type}) with response: ({body[:200]!r})")


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


class KiteRestClient:
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
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock: Clock = clock or LiveClock()
        limits = {**DEFAULT_RATE_LIMITS, **(rate_limits or {})}
        self._limiters = {family: RateLimiter.per_second(rate, clock=self._clock) for family, rate in limits.items()}
        self._get_attempts = get_attempts
        self._backoff_ns = round(backoff_s * NS_PER_SECOND)
        self._max_backoff_ns = round(max_backoff_s * NS_PER_SECOND)

    # -- plumbing ----------------------------------------------------------------------------------------------
    def headers(self) -> dict[str, str]:
        headers = {"X-Kite-Version": KITE_VERSION, "User-Agent": USER_AGENT}
        if self.api_key and self.access_token:
            headers["Authorization"] = f"token {self.api_key}:{self.access_token}"
        return headers

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._owns_session and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> KiteRestClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _send_once(self, method: str, url: str, *, query: Any, form: dict[str, str] | None,
                         json_body: Any) -> Any:
        session = self._get_session()
        async with session.request(method, url, params=query, data=form, json=json_body, headers=self.headers(),
                                   timeout=self._timeout, allow_redirects=True) as response:
            body = await response.read()
            return parse_response(response.status, response.headers.get("Content-Type", ""), body)

    async def request(self, method: str, path: str, params: Mapping[str, object] | None = None, *,
                      query: Sequence[tuple[str, str]] | Mapping[str, object] | None = None,
                      json_body: Any = None) -> Any:
        """Send one Kite request. ``params`` go to the query (GET/DELETE) or the form body (POST/PUT);
        ``query`` adds explicit query parameters (repeated keys as pairs); ``json_body`` replaces the form."""
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
                                             json_body=json_body)
            except (aiohttp.ClientError, TimeoutError):
                if attempt == attempts:
                    raise
            except KiteException as exc:
                status = _http_status(exc) or 0
                if attempt == attempts or not (status == 429 or status >= 500):
                    raise
            delay = min(self._backoff_ns << (attempt - 1), self._max_backoff_ns)
            await self._clock.sleep_until(self._clock.now_ns() + delay)
        raise AssertionError("unreachable")  # pragma: no cover

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

    async def profile(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self.request("GET", "/user/profile"))

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
            raise _data_exception(200, f"expected a CSV instrument dump from {path}, got JSON")
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


# --- the Broker port ----------------------------------------------------------------------------------------

_STATUS_MAP: Mapping[str, OrderStatus] = {
    "OPEN": OrderStatus.OPEN,
    "TRIGGER PENDING": OrderStatus.TRIGGER_PENDING,
    "COMPLETE": OrderStatus.COMPLETE,
    "CANCELLED": OrderStatus.CANCELLED,
    "REJECTED": OrderStatus.REJECTED,
    # On the exchange book, being changed: still working.
    "MODIFY VALIDATION PENDING": OrderStatus.OPEN,
    "MODIFY PENDING": OrderStatus.OPEN,
    "MODIFIED": OrderStatus.OPEN,
    "CANCEL PENDING": OrderStatus.OPEN,
}


def order_status(kite_status: str | None) -> OrderStatus:
    """Kite's status string as ours; pre-exchange and unknown interim states are PENDING (never terminal)."""
    return _STATUS_MAP.get(kite_status or "", OrderStatus.PENDING)


def _protection(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _broker_order(order: Mapping[str, Any]) -> BrokerOrder:
    return BrokerOrder(
        order_id=str(order.get("order_id", "")),
        tag=str(order.get("tag") or ""),
        status=order_status(order.get("status")),
        quantity=int(order.get("quantity") or 0),
        filled_quantity=int(order.get("filled_quantity") or 0),
        average_price=to_paise_or_zero(order.get("average_price")),
    )


def _has_tag(order: Mapping[str, Any], tag: str) -> bool:
    tags = order.get("tags") or ()
    return order.get("tag") == tag or (isinstance(tags, list) and tag in tags)


def _drop(_event: object) -> None:
    pass


class KiteBroker:
    """The ``Broker`` port over ``KiteRestClient``. Every failure leaves as a ``BrokerError`` (see ``classify``).

    Conversions (rupee floats → paise, ``round(x * 100)``) happen here. ``margins()`` reads the equity segment:
    ``available`` = ``net`` (Kite's usable figure for pre-trade checks; ``available.live_balance`` if ``net`` is
    absent), ``used`` = ``utilised.debits``. Order updates arrive from the ticker, not from here.
    """

    def __init__(self, client: KiteRestClient, *, product: str = "MIS", variety: str = "regular",
                 validity: str = "DAY", tracker: OrderTracker | None = None) -> None:
        self.client = client
        self.product = product
        self.variety = variety
        self.validity = validity
        self.tracker = tracker
        self._publish: Callable[[object], None] = _drop

    def attach(self, publish: Callable[[object], None]) -> None:
        self._publish = publish

    @property
    def wants_ticks(self) -> bool:
        return False

    def on_tick(self, tick: Tick) -> None:
        pass

    def order_params(self, request: OrderRequest) -> dict[str, Any]:
        intent = request.intent
        params: dict[str, Any] = {
            "exchange": intent.contract.exchange,
            "tradingsymbol": intent.contract.tradingsymbol,
            "transaction_type": intent.side.value,
            "quantity": intent.quantity,
            "product": self.product,
            "order_type": intent.order_type.value,
            "validity": self.validity,
            "tag": request.tag,
        }
        if intent.order_type in (OrderType.LIMIT, OrderType.SL):
            params["price"] = rupee_text(intent.limit_price)
        if intent.order_type in (OrderType.SL, OrderType.SL_M):
            params["trigger_price"] = rupee_text(intent.trigger_price)
        if intent.order_type in (OrderType.MARKET, OrderType.SL_M):
            params["market_protection"] = _protection(intent.market_protection)
        return params

    async def resync(self) -> None:
        """Feed today's order book through the tracker: it publishes only what postbacks did not already report."""
        if self.tracker is None:
            return
        for row in await self._orders():
            self.on_postback(row)

    def on_postback(self, data: dict[str, Any]) -> None:
        """An order message from the ticker: publish what it adds (fills first, then the status)."""
        if self.tracker is None:
            return
        for event in self.tracker.on_postback(data):
            self._publish(event)

    async def place_order(self, request: OrderRequest) -> str:
        if self.tracker is not None:
            self.tracker.expect(request.intent, request.tag)  # before sending: a postback may beat the reply
        try:
            return await self.client.place_order(self.variety, **self.order_params(request))
        except Exception as exc:
            raise to_broker_error(exc) from exc

    async def cancel_order(self, order_id: str) -> None:
        try:
            await self.client.cancel_order(self.variety, order_id)
        except Exception as exc:
            raise to_broker_error(exc) from exc

    async def _orders(self) -> list[dict[str, Any]]:
        try:
            return await self.client.orders()
        except Exception as exc:
            raise to_broker_error(exc) from exc

    async def find_order_by_tag(self, tag: str) -> BrokerOrder | None:
        """The newest of today's orders carrying ``tag`` (by ``order_timestamp``, then position in the list)."""
        matches = [(str(o.get("order_timestamp") or ""), i, o) for i, o in enumerate(await self._orders())
                   if _has_tag(o, tag)]
        if not matches:
            return None
        return _broker_order(max(matches, key=lambda m: (m[0], m[1]))[2])

    async def open_orders(self) -> list[BrokerOrder]:
        views = [_broker_order(o) for o in await self._orders()]
        return [v for v in views if not v.status.is_terminal]

    async def margins(self) -> MarginView:
        try:
            equity = await self.client.margins("equity")
        except Exception as exc:
            raise to_broker_error(exc) from exc
        available = equity.get("net")
        if available is None:
            available = (equity.get("available") or {}).get("live_balance")
        used = (equity.get("utilised") or {}).get("debits")
        return MarginView(available=to_paise_or_zero(available), used=to_paise_or_zero(used))

    async def positions(self) -> dict[int, int]:
        """Net quantity per token from ``positions.net``, summed over products; flat instruments left out."""
        try:
            data = await self.client.positions()
        except Exception as exc:
            raise to_broker_error(exc) from exc
        held: dict[int, int] = {}
        for row in data.get("net") or ():
            token = int(row["instrument_token"])
            held[token] = held.get(token, 0) + int(row.get("quantity") or 0)
        return {token: qty for token, qty in held.items() if qty}

    async def order_margin(self, intent: OrderIntent) -> int:
        """``POST /margins/orders`` ``total`` in paise; an EXIT intent only reduces a position, so 0 without asking.

        The price sent is the limit price, else the expected price (Kite needs one to value a premium)."""
        if intent.purpose is IntentPurpose.EXIT:
            return 0
        order: dict[str, Any] = {
            "exchange": intent.contract.exchange,
            "tradingsymbol": intent.contract.tradingsymbol,
            "transaction_type": intent.side.value,
            "variety": self.variety,
            "product": self.product,
            "order_type": intent.order_type.value,
            "quantity": intent.quantity,
            "price": to_rupees(intent.limit_price or intent.expected_price),
            "trigger_price": to_rupees(intent.trigger_price),
        }
        try:
            data = await self.client.order_margins([order])
        except Exception as exc:
            raise to_broker_error(exc) from exc
        if not data:
            raise BrokerUnavailable("empty /margins/orders response")
        return to_paise_or_zero(data[0].get("total"))
