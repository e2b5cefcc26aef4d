"""Kite historical candles (``GET /instruments/historical/:token/:interval``, saved as JSON) replayed as bars.

A file holds one instrument's candles — the response as Kite sends it (``{"status": "success", "data": {"candles":
[...]}}``), or just ``{"candles": [...]}``, or the bare list — and is named like a one-instrument tick file:
``<token or tradingsymbol>[_<YYYY-MM-DD>|_<YYYYMMDD>].json``. A candle is ``[ts, open, high, low, close, volume]``
with a 7th element ``oi`` when fetched with ``oi=1``; ``ts`` is ISO-8601 with its offset (``2019-12-04T09:15:00+0530``).

Each candle becomes four ticks along the documented intrabar path (``BAR_PATH``): O→H→L→C when close ≥ open, else
O→L→H→C, at fixed offsets inside the candle's interval: its start, a quarter, a half, and its last second. The interval
is the day's session for day candles (a timestamp at midnight IST), else the smallest step between the file's
candles (a minute when the file has one candle). The candle's volume is split into quarters (the remainder on the
close) and added to a cumulative day volume (the tick schema's ``volume``); ``oi`` is on all four.

Everything here is pure: ``candle_ticks`` takes the parsed JSON and returns ticks, or raises ``ReplayDataError``
naming the file, the candle (1-based) and the field.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from trader.adapters.replay import schema
from trader.adapters.replay.checks import InstrumentInfo, ReplayDataError
from trader.adapters.replay.schema import RowError
from trader.events import Tick
from trader.market.calendar import MarketCalendar, ist_date, ist_ns, ist_text
from trader.money import rupee_text

CANDLE_SUFFIXES = (".json",)
FIELDS = ("ts", "open", "high", "low", "close", "volume", "oi")
BAR_PATH = ("O-H-L-C if close >= open else O-L-H-C; ticks at the candle's start, 1/4, 1/2 and its last second; "
            "volume in quarters")
NS_PER_SECOND = 1_000_000_000
DEFAULT_INTERVAL_NS = 60 * NS_PER_SECOND
_MIDNIGHT = time(0, 0)


def is_candle_file(path: Path) -> bool:
    return path.suffix.lower() in CANDLE_SUFFIXES


@dataclass(frozen=True, slots=True)
class Candle:
    ts_ns: int
    open: int  # paise
    high: int
    low: int
    close: int
    volume: int
    oi: int


def load_rows(path: Path) -> list[Any]:
    """The candle rows of a saved historical response (numbers read as decimals: the paise are exact)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"), parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ReplayDataError(str(path), f"line {exc.lineno}", "candles", f"not JSON: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise ReplayDataError(str(path), f"byte {exc.start}", "candles", "not UTF-8 text (Kite's JSON is UTF-8): "
                              f"{exc.reason}") from None
    except RecursionError:
        raise ReplayDataError(str(path), "file", "candles", "nested too deeply to be Kite's historical response "
                              "(a list of [ts, open, high, low, close, volume] rows)") from None
    rows = document
    if isinstance(rows, dict) and isinstance(rows.get("data"), dict):
        rows = rows["data"]
    if isinstance(rows, dict):
        rows = rows.get("candles")
    if not isinstance(rows, list):
        raise ReplayDataError(str(path), "file", "candles", "no candle list: expected Kite's historical response "
                              '({"data": {"candles": [[ts, o, h, l, c, v, oi], ...]}}) or the list itself')
    return rows


def parse_candle(row: Any) -> Candle:
    """One ``[ts, o, h, l, c, v(, oi)]`` row, checked: positive prices, low ≤ open, close ≤ high."""
    if not isinstance(row, list) or len(row) not in (6, 7):
        raise RowError("candles", f"{row!r} is not a candle [ts, open, high, low, close, volume(, oi)]")
    if not isinstance(row[0], str):
        raise RowError("ts", f"{row[0]!r} is not a time: Kite gives ISO-8601 text like 2019-12-04T09:15:00+0530")
    ts = schema.parse_ts(row[0])
    prices = []
    for name, value in zip(FIELDS[1:5], row[1:5], strict=True):
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise RowError(name, f"{value!r} is not a price in rupees")
        price = schema.parse_price(name, value, required=True)
        if price <= 0:
            raise RowError(name, f"{rupee_text(price)} is not a positive price")
        prices.append(price)
    open_, high, low, close = prices
    if high < low:
        raise RowError("high", f"{rupee_text(high)} is below the low {rupee_text(low)}")
    for name, price in (("open", open_), ("close", close)):
        if not low <= price <= high:
            raise RowError(name, f"{rupee_text(price)} is outside the candle's range "
                                 f"[{rupee_text(low)}, {rupee_text(high)}]")
    volume = schema.parse_quantity("volume", row[5])
    oi = schema.parse_quantity("oi", row[6]) if len(row) == 7 else 0
    return Candle(ts, open_, high, low, close, volume, oi)


def intrabar_path(candle: Candle) -> tuple[int, int, int, int]:
    """The four prices a candle is replayed as: O→H→L→C when it closed at or above its open, else O→L→H→C."""
    if candle.close >= candle.open:
        return candle.open, candle.high, candle.low, candle.close
    return candle.open, candle.low, candle.high, candle.close


def offsets(span_ns: int) -> tuple[int, int, int, int]:
    """Where the four ticks sit inside an interval of ``span_ns``: start, 1/4, 1/2, last second."""
    last = max(span_ns - NS_PER_SECOND, span_ns // 2 + 1)
    return 0, span_ns // 4, span_ns // 2, last


def is_day_candle(ts_ns: int) -> bool:
    day = ist_date(ts_ns)
    return ts_ns == ist_ns(day, _MIDNIGHT)


def candle_ticks(file: str, rows: Sequence[Any], info: InstrumentInfo, calendar: MarketCalendar) -> list[Tick]:
    """All of one file's candles as ticks, in time order, every candle checked first (file/candle/field errors)."""
    candles: list[Candle] = []
    for number, row in enumerate(rows, start=1):
        try:
            candle = parse_candle(row)
            for name, price in zip(FIELDS[1:5], (candle.open, candle.high, candle.low, candle.close), strict=True):
                if info.tick_size and price % info.tick_size:
                    raise RowError(name, f"{rupee_text(price)} is not a multiple of {info.label}'s tick size "
                                         f"{rupee_text(info.tick_size)}")
            if candles and candle.ts_ns <= candles[-1].ts_ns:
                raise RowError("ts", f"{ist_text(candle.ts_ns)} is not after the candle before "
                                     f"({ist_text(candles[-1].ts_ns)}): candles must be sorted by time")
            if is_day_candle(candle.ts_ns) and not calendar.is_trading_day(ist_date(candle.ts_ns)):
                raise RowError("ts", f"{ist_date(candle.ts_ns)} is not a trading day")
        except RowError as exc:
            raise ReplayDataError(file, f"candle {number}", exc.field, exc.message) from None
        candles.append(candle)
    step = min((b.ts_ns - a.ts_ns for a, b in itertools.pairwise(candles)), default=DEFAULT_INTERVAL_NS)
    ticks: list[Tick] = []
    day_volume = 0
    day = None
    token = info.instrument_token
    for candle in candles:
        start, span = candle.ts_ns, step
        if is_day_candle(candle.ts_ns):
            start, close_ns = calendar.session_bounds(ist_date(candle.ts_ns))
            span = close_ns - start
        if ist_date(start) != day:
            day, day_volume = ist_date(start), 0
        quarter = candle.volume // 4
        shares = (quarter, quarter, quarter, candle.volume - 3 * quarter)
        for offset, price, share in zip(offsets(span), intrabar_path(candle), shares, strict=True):
            day_volume += share
            ts = start + offset
            ticks.append(Tick(ts_ns=ts, instrument_token=token, last_price=price, volume=day_volume, oi=candle.oi,
                              exchange_ts_ns=ts))
    return ticks


def first_ts(path: Path) -> int | None:
    """The first candle's time (where a replay's clock starts); None for an empty file."""
    rows = load_rows(path)
    if not rows:
        return None
    try:
        return parse_candle(rows[0]).ts_ns
    except RowError as exc:
        raise ReplayDataError(str(path), "candle 1", exc.field, exc.message) from None


def last_ts(path: Path) -> int | None:
    rows = load_rows(path)
    if not rows:
        return None
    try:
        return parse_candle(rows[-1]).ts_ns
    except RowError:
        return None
