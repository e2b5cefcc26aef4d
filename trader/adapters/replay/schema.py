"""The tick-file schema (documented in docs/data.md): column names, and one raw row's fields → typed values.

One row is one quote or trade of one instrument. Columns (CSV header names, Parquet field names):

* ``ts`` (required): the event time, with its zone — ISO-8601 text with an offset (``2026-11-27T09:15:00.25+05:30``,
  ``...Z``), an integer of nanoseconds since the Unix epoch (UTC), or a Parquet ``timestamp`` with a time zone.
* ``instrument_token`` or ``tradingsymbol`` (one of them, unless the file name names the instrument): the Kite token,
  or the tradingsymbol (``NIFTY25DEC26000CE``, ``NFO:NIFTY25DEC26000CE``, ``NIFTY 50`` for the index).
* ``last_price`` (required): rupees (decimal text or a number), converted exactly to integer paise.
* optional: ``bid``, ``ask`` (rupees; empty or 0 = no quote), ``bid_qty``, ``ask_qty``, ``volume`` (the day's
  cumulative traded quantity), ``oi`` (integers; empty = 0). Other columns are ignored.

Everything here is pure: a ``RowError`` names the field; the reader adds the file and the row.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

from trader.market.calendar import utc_ns
from trader.money import MoneyError, to_paise

TS = "ts"
INSTRUMENT_TOKEN = "instrument_token"
TRADINGSYMBOL = "tradingsymbol"
LAST_PRICE = "last_price"
BID = "bid"
ASK = "ask"
BID_QTY = "bid_qty"
ASK_QTY = "ask_qty"
VOLUME = "volume"
OI = "oi"

PRICE_FIELDS = (BID, ASK)
QUANTITY_FIELDS = (BID_QTY, ASK_QTY, VOLUME, OI)
KNOWN_COLUMNS = (TS, INSTRUMENT_TOKEN, TRADINGSYMBOL, LAST_PRICE, *PRICE_FIELDS, *QUANTITY_FIELDS)

# What a reader hands over for one cell: CSV gives text (or None past a short row), Parquet gives Python values.
Cell = str | int | float | Decimal | None

_INT_TEXT = re.compile(r"[+-]?[0-9]+")
# Event times outside [2000-01-01, 2100-01-01) UTC are refused: an integer time in seconds, milliseconds or
# microseconds (read as ns it lands in 1970) or a mistyped year is bad data, never a day to replay.
MAX_PRICE_PAISE = 10**15 * 100  # a thousand lakh crore rupees: larger is garbage (as ``trader.money`` judges floats)
MIN_TS_NS = 946_684_800 * 1_000_000_000
MAX_TS_NS = 4_102_444_800 * 1_000_000_000


class RowError(ValueError):
    """One field of one row is unusable; ``field`` names the column."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _blank(value: Cell) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def parse_ts(value: Cell) -> int:
    """ISO-8601 text with a zone, or integer nanoseconds (UTC epoch) → ns, between 2000 and 2100 (so within int64)."""
    if _blank(value):
        raise RowError(TS, "is empty (an event time with its zone, or integer ns since the epoch, is required)")
    if isinstance(value, bool) or not isinstance(value, int | str):  # a float, Decimal, bytes, date, a struct...
        raise RowError(TS, f"{value!r} is not a time: give ISO-8601 text with a zone or integer ns since the epoch")
    if isinstance(value, int):
        return check_ts_range(value, value)
    text = value.strip()
    if _INT_TEXT.fullmatch(text):
        return check_ts_range(int(text), value)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RowError(TS, f"{value!r} is not an ISO-8601 time (e.g. 2026-11-27T09:15:00+05:30)") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise RowError(TS, f"{value!r} has no zone: add +05:30 (IST) or Z (UTC)")
    ns = utc_ns(moment)
    # datetime keeps microseconds; nanoseconds in the text (9 fraction digits) are added back exactly.
    fraction = re.search(r"[.,]([0-9]{7,9})", text)
    if fraction:
        digits = fraction.group(1).ljust(9, "0")
        ns += int(digits[6:])
    return check_ts_range(ns, value)


def ts_in_range(ts_ns: int) -> bool:
    return MIN_TS_NS <= ts_ns < MAX_TS_NS


def check_ts_range(ts_ns: int, value: Cell) -> int:
    """``ts_ns`` if it lies between 2000 and 2100; a ``RowError`` saying what it probably is otherwise."""
    if ts_in_range(ts_ns):
        return ts_ns
    hint = ""
    if isinstance(value, int | str) and not isinstance(value, bool) and 0 < ts_ns < MIN_TS_NS:
        for unit, scale in (("seconds", 1_000_000_000), ("milliseconds", 1_000_000), ("microseconds", 1_000)):
            if ts_in_range(ts_ns * scale):
                hint = f" (it looks like {unit} since the epoch: integer times are nanoseconds)"
                break
    raise RowError(TS, f"{value!r} is not between 2000-01-01 and 2100-01-01 UTC{hint}")


def parse_price(field: str, value: Cell, *, required: bool) -> int:
    """Rupees → paise, exactly; an empty optional price is 0 (no quote)."""
    if _blank(value):
        if required:
            raise RowError(field, "is empty (a price in rupees is required)")
        return 0
    assert value is not None
    try:
        paise = to_paise(value)
    except MoneyError:
        raise RowError(field, f"{value!r} is not a price in rupees") from None
    if abs(paise) >= MAX_PRICE_PAISE:  # to_paise bounds floats and text, not integers
        raise RowError(field, f"{value!r} is not a plausible price in rupees")
    return paise


def parse_quantity(field: str, value: Cell) -> int:
    """A non-negative integer; empty is 0."""
    if _blank(value):
        return 0
    if isinstance(value, bool):
        raise RowError(field, f"{value!r} is not a quantity")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float | Decimal) and _whole(value):
        number = int(value)
    elif isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        raise RowError(field, f"{value!r} is not a whole number")
    if number < 0:
        raise RowError(field, f"{value!r} is negative")
    return number


def _whole(value: float | Decimal) -> bool:
    try:
        return value == int(value)
    except (ValueError, OverflowError, ArithmeticError):  # NaN, infinity
        return False


def parse_token(value: Cell) -> int:
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        token = int(value.strip())
    elif isinstance(value, int) and not isinstance(value, bool):
        token = value
    else:
        raise RowError(INSTRUMENT_TOKEN, f"{value!r} is not an instrument token (an integer)")
    if token <= 0:
        raise RowError(INSTRUMENT_TOKEN, f"{value!r} is not an instrument token (a positive integer)")
    return token
