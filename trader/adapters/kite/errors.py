"""Kite Connect errors: the official ``kiteconnect.exceptions`` classes raised from responses, and their mapping onto
the daemon's ``BrokerError`` kinds (rejected, rate-limited, unavailable/ambiguous, session expired).

Responses raise the **official** class named by ``error_type`` (unknown names → ``GeneralException``) with ``.code``
= the HTTP status; an unparsable JSON body or a content type that is neither JSON nor CSV raises ``DataException``
(class default code 502, as the official client does). Every exception raised from a response also carries
``http_status``. Transport failures (connection errors, timeouts) propagate as ``aiohttp.ClientError`` /
``TimeoutError``; ``classify`` maps all of these onto the daemon's ``BrokerError`` classes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp
from kiteconnect import exceptions as kite_exceptions

from trader.adapters.ports import BrokerError, BrokerUnavailable, OrderRejected, RateLimited, SessionExpired

KiteException: type[Exception] = kite_exceptions.KiteException
GeneralException: type[Exception] = kite_exceptions.GeneralException
DataException: type[Exception] = kite_exceptions.DataException
NetworkException: type[Exception] = kite_exceptions.NetworkException
TokenException: type[Exception] = kite_exceptions.TokenException

class KiteSessionExpired(SessionExpired):
    """TokenException: the request was refused because the access token is invalid or expired; log in again."""


def http_status(exc: BaseException) -> int | None:
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
        status = http_status(exc)
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
    status = http_status(exc)
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


def data_exception(status: int, message: str) -> Exception:
    exc = DataException(message)  # class default code (502), as the official client
    exc.http_status = status  # type: ignore[attr-defined]
    return exc


def token_exception(message: str) -> Exception:
    """A ``TokenException`` (HTTP 403) raised by the client itself: the token is known to be dead."""
    cls: Any = TokenException
    exc: Exception = cls(message, code=403)
    exc.http_status = 403  # type: ignore[attr-defined]
    return exc


def parse_response(status: int, content_type: str, body: bytes) -> Any:
    """Kite envelope → ``data`` (JSON) or raw bytes (CSV); raises the official exception classes."""
    if "json" in content_type:
        try:
            envelope = json.loads(body)
        except ValueError:
            raise data_exception(
                status, f"Couldn't parse the JSON response received from the server: {body[:200]!r}") from None
        if not isinstance(envelope, dict):
            raise data_exception(status, f"JSON response is not an envelope object: {body[:200]!r}")
        if envelope.get("status") == "error" or envelope.get("error_type"):
            raise _kite_error(status, envelope)
        if "data" not in envelope:
            raise data_exception(status, f"JSON envelope without 'data': {body[:200]!r}")
        return envelope["data"]
    if "csv" in content_type:
        return body
    raise data_exception(status, f"Unknown Content-Type ({content_type}) with response: ({body[:200]!r})")

