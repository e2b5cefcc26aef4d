"""The bodies of the control API's POST requests, validated with pydantic before anything acts on them.

Every model forbids unknown fields, strips surrounding whitespace from text, reads enums case-insensitively
(``buy``, ``sl-m``), takes only finite numbers and bounds every length, so a typo is a 400 naming the field instead
of an order nobody meant. Prices are rupees here (what a human types); ``trader/control/resolve.py`` turns them into
paise with ``trader/money.py`` and checks them against the contract's tick.

``describe_validation_error`` turns a ``ValidationError`` into ``(field, message)`` for the 400 answer, the message
saying what the field accepts: ``lots: must be a whole number from 1 to 100; give lots or quantity, not both``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from trader.events import OrderType, Side
from trader.market.instruments import FALLBACK_UNDERLYINGS, OptionType, resolve_underlying
from trader.risk.config import MAX_LOTS_PER_ORDER

MAX_REASON_CHARS = 200
MAX_INSTRUMENT_CHARS = 64
MAX_UNDERLYING_CHARS = 40
MAX_QUANTITY = 100_000  # units; far above any freeze quantity (SENSEX 1,000, NIFTY 1,800), so only garbage fails
MAX_PRICE_RUPEES = 1_000_000.0  # an option premium of ten lakh rupees per unit is garbage
MAX_STRIKE_RUPEES = 10_000_000.0
_CROSS_FIELD = "manual_order"  # the error type of a rule across fields; its ctx names the field to blame


def _upper_enum_text(value: Any) -> Any:
    """Enum values case-insensitively and without surrounding whitespace: " buy " → "BUY", "sl_m" → "SL-M"."""
    if isinstance(value, str):
        return value.strip().upper().replace("_", "-")
    return value


def _number(value: Any) -> Any:
    """A JSON number only: text and booleans are refused (``true`` is not a price, nor ``"100"``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("not a number")
    return value


def _iso_date(value: Any) -> Any:
    """An ISO calendar date ``YYYY-MM-DD`` only (pydantic would also take a Unix timestamp)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError("not an ISO date")


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("contains control characters")
    return value


SideField = Annotated[Side, BeforeValidator(_upper_enum_text)]
OrderTypeField = Annotated[OrderType, BeforeValidator(_upper_enum_text)]
OptionTypeField = Annotated[OptionType, BeforeValidator(_upper_enum_text)]
Rupees = Annotated[float, BeforeValidator(_number)]
WholeNumber = Annotated[int, Strict()]  # 2, not 2.0, "2" or true
Flag = Annotated[bool, Strict()]  # JSON true/false only: "yes" does not confirm a live order
IsoDate = Annotated[date, BeforeValidator(_iso_date)]
Reason = Annotated[str, Field(max_length=MAX_REASON_CHARS), AfterValidator(_printable)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, str_strip_whitespace=True)

    # What each field accepts, in the words of a 400 answer (``describe_validation_error``).
    ACCEPTS: ClassVar[dict[str, str]] = {}


def _fail(field: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(_CROSS_FIELD, "{field}: {detail}", {"field": field, "detail": message})


_REASON_ACCEPTS = f"printable text of at most {MAX_REASON_CHARS} characters"
_UNDERLYING_NAMES = ", ".join(FALLBACK_UNDERLYINGS)


class ManualOrder(_Body):
    """``POST /orders``: an operator's order, by tradingsymbol, spoken form or underlying + strike + option type.

    Exactly one of ``instrument`` or (``underlying``, ``strike``, ``option_type``); exactly one of ``lots`` or
    ``quantity`` (units). ``expiry`` defaults to the nearest listed expiry not yet past its close. Price rules by
    ``order_type``: MARKET neither price nor trigger; LIMIT a price; SL a price and a trigger (a BUY's trigger at or
    below its price, a SELL's at or above); SL-M a trigger. ``market_protection`` (-1 automatic, or a percentage in
    (0, 100]) applies to MARKET and SL-M only.
    """

    ACCEPTS: ClassVar[dict[str, str]] = {
        "side": "must be BUY or SELL",
        "instrument": (f"must be a tradingsymbol (NIFTY26D0126000CE, NFO:NIFTY26DEC26000CE, BFO:SENSEX26D0385000CE) "
                       f"or a spoken form (NIFTY ATM CE, NIFTY ATM+2 PE, NIFTY ATM-1 CE, NIFTY ITM1 CE, "
                       f"NIFTY OTM2 PE, NIFTY 26000 CE) of at most {MAX_INSTRUMENT_CHARS} characters; or give "
                       "underlying, strike and option_type instead"),
        "underlying": (f"must be an index: {_UNDERLYING_NAMES} (or its quote name, e.g. NSE:NIFTY50-INDEX), "
                       f"at most {MAX_UNDERLYING_CHARS} characters"),
        "strike": "must be the strike in rupees, a number above 0 (e.g. 26000)",
        "option_type": "must be CE or PE",
        "expiry": ("must be an ISO date YYYY-MM-DD (e.g. 2026-12-01) of a listed expiry; leave it out for the "
                   "nearest one"),
        "lots": f"must be a whole number from 1 to {MAX_LOTS_PER_ORDER}; give lots or quantity, not both",
        "quantity": (f"must be a whole number of units from 1 to {MAX_QUANTITY:,}, a multiple of the lot size; give "
                     "lots or quantity, not both"),
        "order_type": "must be MARKET, LIMIT, SL or SL-M (default MARKET)",
        "price": ("must be rupees above 0 on the contract's tick (0.05): required for LIMIT and SL, not allowed for "
                  "MARKET and SL-M"),
        "trigger_price": ("must be rupees above 0 on the contract's tick (0.05): required for SL and SL-M, not "
                          "allowed for MARKET and LIMIT"),
        "market_protection": ("must be -1 (automatic) or a percentage above 0 and at most 100, for MARKET and SL-M "
                              "orders only"),
        "confirm": "must be true or false (live mode requires true)",
        "dry_run": "must be true or false (true: resolve the order and answer, place nothing)",
        "reason": f"must be {_REASON_ACCEPTS}",
        "request_id": ("must be 1-40 letters, digits, '-' or '_', chosen by the client: the same request_id sent "
                       "again answers with the first order instead of placing another"),
    }

    side: SideField
    instrument: str | None = Field(None, min_length=1, max_length=MAX_INSTRUMENT_CHARS)
    underlying: str | None = Field(None, min_length=1, max_length=MAX_UNDERLYING_CHARS)
    strike: Rupees | None = Field(None, gt=0, le=MAX_STRIKE_RUPEES)
    option_type: OptionTypeField | None = None
    expiry: IsoDate | None = None
    lots: WholeNumber | None = Field(None, ge=1, le=MAX_LOTS_PER_ORDER)
    quantity: WholeNumber | None = Field(None, ge=1, le=MAX_QUANTITY)
    order_type: OrderTypeField = OrderType.MARKET
    price: Rupees | None = Field(None, gt=0, le=MAX_PRICE_RUPEES)
    trigger_price: Rupees | None = Field(None, gt=0, le=MAX_PRICE_RUPEES)
    market_protection: Rupees = -1.0
    confirm: Flag = False
    dry_run: Flag = False
    reason: Reason = ""
    # The client's idempotency key: a retry after a timeout (same request_id) never places a second order.
    request_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,40}$")

    @field_validator("instrument", "underlying")
    @classmethod
    def _no_control_characters(cls, value: str | None) -> str | None:
        return None if value is None else _printable(value)

    @field_validator("market_protection")
    @classmethod
    def _protection(cls, value: float) -> float:
        if value != -1 and not 0 < value <= 100:
            raise ValueError("outside -1 or (0, 100]")
        return value

    @model_validator(mode="after")
    def _one_way_to_name_the_contract(self) -> ManualOrder:
        structured = {"underlying": self.underlying, "strike": self.strike, "option_type": self.option_type}
        given = [name for name, value in structured.items() if value is not None]
        if self.instrument is not None:
            if given:
                raise _fail("instrument", f"give instrument, or underlying + strike + option_type, not both "
                                          f"(also got {', '.join(given)})")
        elif not given:
            raise _fail("instrument", "required: give instrument (e.g. 'NIFTY ATM CE' or 'NIFTY26D0126000CE') or "
                                      "underlying + strike + option_type")
        else:
            missing = [name for name in structured if name not in given]
            if missing:
                raise _fail(missing[0], f"required with {' and '.join(given)}: give underlying, strike and "
                                        "option_type together, or instrument instead (e.g. 'NIFTY ATM CE')")
        return self

    @model_validator(mode="after")
    def _lots_or_quantity(self) -> ManualOrder:
        if self.lots is not None and self.quantity is not None:
            raise _fail("lots", "give lots or quantity (units), not both")
        if self.lots is None and self.quantity is None:
            raise _fail("lots", "required: give lots (e.g. 1) or quantity in units (a multiple of the lot size)")
        return self

    @model_validator(mode="after")
    def _prices_fit_the_order_type(self) -> ManualOrder:
        kind = self.order_type
        needs_price = kind in (OrderType.LIMIT, OrderType.SL)
        needs_trigger = kind in (OrderType.SL, OrderType.SL_M)
        if needs_price and self.price is None:
            raise _fail("price", f"required for a {kind} order (rupees, on the tick)")
        if not needs_price and self.price is not None:
            hint = " (did you mean order_type LIMIT, or SL with a trigger_price?)" if kind is OrderType.MARKET else ""
            raise _fail("price", f"not allowed for a {kind} order{hint}")
        if needs_trigger and self.trigger_price is None:
            raise _fail("trigger_price", f"required for a {kind} order (rupees, on the tick)")
        if not needs_trigger and self.trigger_price is not None:
            raise _fail("trigger_price", f"not allowed for a {kind} order (use SL or SL-M for a stop)")
        if "market_protection" in self.model_fields_set and kind not in (OrderType.MARKET, OrderType.SL_M):
            raise _fail("market_protection", f"applies to MARKET and SL-M orders only, not {kind}")
        if kind is OrderType.SL and self.price is not None and self.trigger_price is not None:
            if self.side is Side.BUY and self.trigger_price > self.price:
                raise _fail("trigger_price", f"a BUY stop-loss triggers at or below its price: trigger "
                                             f"{self.trigger_price:g} is above price {self.price:g}")
            if self.side is Side.SELL and self.trigger_price < self.price:
                raise _fail("trigger_price", f"a SELL stop-loss triggers at or above its price: trigger "
                                             f"{self.trigger_price:g} is below price {self.price:g}")
        return self


class HaltBody(_Body):
    """``POST /halt``: why (optional)."""

    ACCEPTS: ClassVar[dict[str, str]] = {"reason": f"must be {_REASON_ACCEPTS}"}

    reason: Reason = ""


class RejectBody(_Body):
    """``POST /signals/{ref}/reject``: why (optional)."""

    ACCEPTS: ClassVar[dict[str, str]] = {"reason": f"must be {_REASON_ACCEPTS}"}

    reason: Reason = ""


class FlattenBody(_Body):
    """``POST /flatten``: one underlying (any name ``resolve_underlying`` knows, kept as its canonical name such as
    ``NIFTY``), or none / empty for every position."""

    ACCEPTS: ClassVar[dict[str, str]] = {
        "underlying": (f"must be an index: {_UNDERLYING_NAMES} (or its quote name, e.g. NSE:NIFTY50-INDEX), or "
                       "left out to flatten every position"),
    }

    underlying: str | None = Field(None, max_length=MAX_UNDERLYING_CHARS)

    @field_validator("underlying")
    @classmethod
    def _canonical_name(cls, value: str | None) -> str | None:
        if not value:
            return None
        return resolve_underlying(value).name


BODY_MODELS: dict[str, type[_Body]] = {
    model.__name__: model for model in (ManualOrder, HaltBody, RejectBody, FlattenBody)
}
_SHOWN_INPUT_CHARS = 40


def describe_validation_error(exc: ValidationError) -> tuple[str, str]:
    """``(field, message)`` for a 400 answer: the first problem's field ("" for the body as a whole) and a message
    that names every problem and what each field accepts, e.g. ``lots: must be a whole number from 1 to 100; give
    lots or quantity, not both (got 0)``."""
    model = BODY_MODELS.get(exc.title)
    accepts = model.ACCEPTS if model is not None else {}
    problems: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        problem = _describe(error, accepts)
        if problem not in problems:
            problems.append(problem)
    if not problems:  # pydantic never raises an empty ValidationError; answer sensibly all the same
        return "", "the request body is not valid"
    return problems[0][0], "; ".join(message for _, message in problems)


def _describe(error: Any, accepts: dict[str, str]) -> tuple[str, str]:
    loc = tuple(error.get("loc", ()))
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    if kind == _CROSS_FIELD:
        return str(ctx.get("field", "")), str(error.get("msg", ""))
    field = str(loc[0]) if loc else ""
    if not field:
        fields = ", ".join(accepts) or "none"
        return "", f"the body must be a JSON object (fields: {fields})"
    if kind == "extra_forbidden":
        return field, f"{_shown_field(field)}: unknown field; accepted fields: {', '.join(accepts) or 'none'}"
    accepted = accepts.get(field, str(error.get("msg", "is not valid")))
    if kind == "missing":
        return field, f"{field}: required; {accepted}"
    return field, f"{field}: {accepted}{_shown_input(error.get('input'))}"


def _shown_field(field: str) -> str:
    return field if len(field) <= _SHOWN_INPUT_CHARS else field[:_SHOWN_INPUT_CHARS] + "…"


def _shown_input(value: Any) -> str:
    if isinstance(value, dict | list) or value is None:
        return ""
    text = repr(value)
    if len(text) > _SHOWN_INPUT_CHARS:
        text = text[:_SHOWN_INPUT_CHARS] + "…"
    return f" (got {text})"
