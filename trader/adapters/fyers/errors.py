"""Fyers API v3 errors: the reply envelope ``{"s": "error", "code": -nnn, "message": ...}`` plus the HTTP status, mapped
onto the daemon's ``BrokerError`` kinds.

Every reply is a JSON object with ``s`` ("ok" / "error"), ``code`` and ``message`` (Fyers API v3 docs, "Request &
Response Structure"; the official SDK's ``fyersModel.py`` returns exactly that object, and builds
``{"s": "error", "code": <HTTP status or -99>, "message": ...}`` itself when a reply is not JSON).

Codes this module knows (Fyers' error-code table; those marked * could not be confirmed from the SDK, see the report):
token refused -8 (expired), -15 / -16 / -17 (invalid or not authenticated)*; rate limit -429* or HTTP 429; request
refused -50 (invalid parameters), -51 (invalid order id), -53, -99 (order rejected), -300 (invalid symbol), -352
(invalid app id)*. HTTP 401 is also a refused token; a 403 is a refused token ONLY with a JSON Fyers error carrying a
token code: a bare 403 (a CDN or firewall page, HTML) says nothing about the token and is ``BrokerUnavailable``.

The rule for writes (place/modify/cancel): only a refusal that certainly means "no order was created or changed" is
``OrderRejected``: the short allow-list ``WRITE_REFUSAL_CODES`` (client-side input validation). Everything else —
-99 (Fyers' catch-all, which the SDK also builds itself for its own network failures), every other code (all marked
unconfirmed in docs/fyers-protocol.md), 5xx, a timeout, a malformed reply — is ``BrokerUnavailable``: the order may
exist, so the execution actor looks its tag up before any re-send. A rejection is never invented for an order that
may exist.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from trader.adapters.ports import BrokerError, BrokerUnavailable, OrderRejected, RateLimited, SessionExpired

TOKEN_CODES = frozenset({-8, -15, -16, -17})
RATE_LIMIT_CODES = frozenset({-429})
REFUSAL_CODES = frozenset({-50, -51, -53, -99, -300, -352, -201, -202})  # refusals of a READ (nothing is at stake)
# Order writes: the only codes that are OrderRejected. Each is Fyers' validation of the request itself, answered
# before anything reaches the order system, so no order can exist because of it:
#   -50 "invalid parameters / invalid input": the request body failed validation, nothing was created or changed;
#   -51 "invalid order id": a modify/cancel named an order Fyers does not have, so there is nothing to change
#       (a place carries no order id and cannot get it).
WRITE_REFUSAL_CODES = frozenset({-50, -51})


class FyersError(Exception):
    """A reply Fyers sent (``s == "error"``, or not a reply we can read). ``http_status`` and ``code`` as received."""

    def __init__(self, message: str, *, http_status: int, code: int | None = None, malformed: bool = False) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.malformed = malformed


class FyersTokenError(FyersError):
    """The access token was refused (expired, invalid, logged out): log in again. The token watcher's signal."""


class FyersSessionExpired(SessionExpired):
    """The daemon's view of a refused token: nothing was accepted; log in again (as Kite's ``KiteSessionExpired``)."""


def classify(exc: BaseException, *, write: bool = False) -> type[BrokerError]:
    """The daemon's view of a client failure. ``write``: the request was an order write (place/modify/cancel).

    Refused token → ``FyersSessionExpired``; 429 or the rate-limit code → ``RateLimited``; transport failures,
    timeouts, 5xx and malformed replies → ``BrokerUnavailable``; on a write only a ``WRITE_REFUSAL_CODES`` code is
    ``OrderRejected``, any other error envelope (-99 included) ``BrokerUnavailable`` (ambiguous); on a read any 4xx
    error envelope is ``OrderRejected``. A ``ValueError`` from client-side validation → ``OrderRejected`` (nothing
    was sent).
    """
    if isinstance(exc, BrokerError):
        return type(exc)
    if isinstance(exc, (aiohttp.ClientError, TimeoutError)):
        return BrokerUnavailable
    if isinstance(exc, FyersTokenError):
        return FyersSessionExpired
    if isinstance(exc, FyersError):
        if exc.http_status == 429 or exc.code in RATE_LIMIT_CODES:
            return RateLimited
        if exc.malformed or exc.http_status >= 500:
            return BrokerUnavailable
        if write:
            return OrderRejected if exc.code in WRITE_REFUSAL_CODES else BrokerUnavailable
        return OrderRejected
    if isinstance(exc, ValueError):
        return OrderRejected
    return BrokerUnavailable


def to_broker_error(exc: BaseException, *, write: bool = False) -> BrokerError:
    if isinstance(exc, BrokerError):
        return exc
    kind = classify(exc, write=write)
    status = getattr(exc, "http_status", None)
    code = getattr(exc, "code", None)
    detail = (f"{type(exc).__name__}" + (f" (HTTP {status}" + (f", code {code})" if code is not None else ")")
                                         if status is not None else "") + f": {exc}")
    error = kind(detail)
    error.__cause__ = exc
    return error


def _code(envelope: Mapping[str, Any]) -> int | None:
    code = envelope.get("code")
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _envelope(body: bytes) -> dict[str, Any] | None:
    try:
        envelope = json.loads(body)
    except ValueError:
        return None
    return envelope if isinstance(envelope, dict) else None


def token_refused(status: int, body: bytes) -> bool:
    """Whether a refusal means the access token is dead: HTTP 401, or a JSON Fyers error with a token code. A bare
    403 (a CDN, a firewall, an HTML page) is not: it says nothing about the token."""
    envelope = _envelope(body)
    code = _code(envelope) if envelope is not None else None
    return code in TOKEN_CODES or (status == 401 and code not in REFUSAL_CODES)


def parse_reply(status: int, body: bytes) -> dict[str, Any]:
    """A Fyers reply → its envelope (``s == "ok"``); raises ``FyersError`` / ``FyersTokenError`` otherwise."""
    envelope = _envelope(body)
    if envelope is None:
        if status == 401:
            raise FyersTokenError(f"HTTP {status}: {body[:200]!r}", http_status=status)
        raise FyersError(f"not a JSON object (HTTP {status}): {body[:200]!r}", http_status=status, malformed=True)
    code = _code(envelope)
    message = str(envelope.get("message") or "")
    if envelope.get("s") == "ok" and status < 400:
        return envelope
    if token_refused(status, body):
        raise FyersTokenError(message or f"HTTP {status}", http_status=status, code=code)
    if status == 403 and code is None:  # not a Fyers error: a proxy's or firewall's answer
        raise FyersError(f"HTTP 403 without a Fyers error code: {body[:200]!r}", http_status=status, malformed=True)
    if envelope.get("s") == "error" or status >= 400:
        raise FyersError(message or f"HTTP {status}", http_status=status, code=code)
    raise FyersError(f"a reply with s={envelope.get('s')!r} (HTTP {status}): {body[:200]!r}", http_status=status,
                     code=code, malformed=True)
