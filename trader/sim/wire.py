"""Kite Connect v3 wire details shared by the simulator's handlers: envelopes, errors, fault knobs, formatting.

Error status/type pairs follow ``docs/reference/kite-protocol.md`` §1.5 (TokenException 403, InputException 400,
OrderException
400, MarginException 400, NetworkException 503, DataException 502, GeneralException 500, rate limit 429 with a
NetworkException body as §5 recommends).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from aiohttp import web

from trader import money
from trader.events import OrderType
from trader.market.calendar import IST

NS_PER_SECOND = 1_000_000_000


class KiteError(Exception):
    """An error answer: HTTP ``status`` with ``{"status": "error", "error_type": ..., "message": ...}``."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def token_error(message: str = "Incorrect `api_key` or `access_token`.") -> KiteError:
    return KiteError(403, "TokenException", message)


def input_error(message: str) -> KiteError:
    return KiteError(400, "InputException", message)


def order_error(message: str) -> KiteError:
    return KiteError(400, "OrderException", message)


def rate_limited() -> KiteError:
    return KiteError(429, "NetworkException", "Too many requests")


@dataclass(slots=True)
class Faults:
    """Fault knobs; a live ``ExchangeSimulator.faults`` may be changed between (or during) requests.

    * ``latency_ms``: added before every answer.
    * ``error_rate``: share of authenticated requests answered with a 5xx before they are handled (nothing happens).
    * ``timeout_after_accept``: share of order placements that are accepted (the order exists and trades) but
      whose answer is held back ``timeout_delay_s`` seconds (``timeout_mode="delay"``) or never sent because the
      connection is dropped (``"drop"``).
    * ``rate_limit_rate``: share of authenticated requests answered with HTTP 429 before they are handled.
    """

    latency_ms: int = 0
    error_rate: float = 0.0
    timeout_after_accept: float = 0.0
    timeout_mode: Literal["delay", "drop"] = "delay"
    timeout_delay_s: float = 30.0
    rate_limit_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("error_rate", "timeout_after_accept", "rate_limit_rate"):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"Faults.{name} must be in [0, 1], got {share}")
        if self.latency_ms < 0 or self.timeout_delay_s < 0:
            raise ValueError("Faults.latency_ms and timeout_delay_s must be >= 0")


def success(data: Any) -> web.Response:
    return web.json_response({"status": "success", "data": data})


def failure(error: KiteError) -> web.Response:
    return web.json_response({"status": "error", "message": error.message, "error_type": error.error_type,
                              "data": None}, status=error.status)


def kite_time(ts_ns: int) -> str:
    """``yyyy-mm-dd hh:mm:ss`` in IST without a zone, as Kite writes timestamps (19 characters)."""
    return datetime.fromtimestamp(ts_ns / NS_PER_SECOND, tz=IST).strftime("%Y-%m-%d %H:%M:%S")


def kite_clock_time(ts_ns: int) -> str:
    """``hh:mm:ss`` (the trades' ``order_timestamp``)."""
    return datetime.fromtimestamp(ts_ns / NS_PER_SECOND, tz=IST).strftime("%H:%M:%S")


def form_paise(name: str, text: str | None) -> int:
    """A rupee amount from a form field, as integer paise; raises InputException if it is not a number."""
    if text is None or text == "":
        return 0
    try:
        return money.to_paise(text)
    except money.MoneyError:
        raise input_error(f"Invalid `{name}`: {text!r} is not a number.") from None


def to_int(name: str, text: str | None) -> int:
    try:
        return int(str(text))
    except ValueError:
        raise input_error(f"Invalid `{name}`: {text!r} is not a whole number.") from None

# Shared by the simulator's route groups.
USER_ID = "SIM001"
PRODUCTS = frozenset({"NRML", "MIS"})
ORDER_TYPES = {t.value: t for t in OrderType}
LPP_PCT = 40  # NSE's limit price protection: ±40 % of the reference for premiums above ₹50 ...
LPP_ABSOLUTE_PAISE = 2_000  # ... else ±₹20
LPP_PCT_THRESHOLD_PAISE = 5_000
