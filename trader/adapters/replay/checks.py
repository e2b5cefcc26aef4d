"""Pure row validation for replayed tick files: no I/O, no asyncio, no clock.

A bad row stops the replay with a ``ReplayDataError`` naming the file, the row and the field: an unsorted timestamp,
an unknown instrument, a zero or negative price, a crossed book (bid above ask), a price off the instrument's tick
size, a value that is not a number. Gaps during market hours (an instrument silent for longer than ``gap_ns`` while
the market is open) are not errors: ``GapCounter`` counts them for the run's report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from trader.adapters.replay import schema
from trader.adapters.replay.schema import Cell, RowError

if TYPE_CHECKING:
    from trader.adapters.replay.readers import FastColumns
from trader.events import Tick
from trader.market.calendar import ist_date, ist_text
from trader.money import rupee_text

DEFAULT_GAP_NS = 60 * 1_000_000_000  # an instrument silent for over a minute in market hours is a gap

Int64s = npt.NDArray[np.int64]
# One checked row, in ``Tick``'s field order: ts_ns, instrument_token, last_price, volume, oi, bid, bid_qty, ask,
# ask_qty (paise and units); the market adds exchange_ts_ns (= ts_ns) and the tick_id when it builds the ``Tick``.
TickFields = tuple[int, int, int, int, int, int, int, int, int]


class ReplayDataError(ValueError):
    """A tick file cannot be replayed; the message names the file, the row and the field."""

    def __init__(self, file: str, where: str, field: str, message: str) -> None:
        super().__init__(f"{file} {where}, field {field!r}: {message}")
        self.file = file
        self.where = where
        self.field = field


@dataclass(frozen=True, slots=True)
class InstrumentInfo:
    """What a row check needs to know of an instrument: its token, tick size (paise; 0 = unchecked) and name."""

    instrument_token: int
    tick_size: int
    label: str


class InstrumentResolver:
    """Token or tradingsymbol → ``InstrumentInfo``, from the day's instrument master (given as plain mappings)."""

    def __init__(self, by_token: Mapping[int, InstrumentInfo], by_symbol: Mapping[str, InstrumentInfo]) -> None:
        self._by_token = dict(by_token)
        self._by_symbol = {symbol.upper(): info for symbol, info in by_symbol.items()}

    def find_token(self, token: int) -> InstrumentInfo | None:
        return self._by_token.get(token)

    def find_symbol(self, text: str) -> InstrumentInfo | None:
        upper = text.strip().upper()
        info = self._by_symbol.get(upper)
        if info is None:
            info = self._by_symbol.get(upper.rpartition(":")[2])
        return info

    def token(self, value: Cell) -> InstrumentInfo:
        token = schema.parse_token(value)
        info = self._by_token.get(token)
        if info is None:
            raise RowError(schema.INSTRUMENT_TOKEN, f"instrument token {token} is not in the instrument master")
        return info

    def symbol(self, value: Cell) -> InstrumentInfo:
        text = str(value).strip().upper() if value is not None else ""
        if not text:
            raise RowError(schema.TRADINGSYMBOL, "is empty (a tradingsymbol or an instrument_token is required)")
        info = self._by_symbol.get(text)
        if info is None:
            _, _, bare = text.rpartition(":")  # "NFO:NIFTY25DEC26000CE": the exchange prefix is optional
            info = self._by_symbol.get(bare)
        if info is None:
            raise RowError(schema.TRADINGSYMBOL, f"{value!r} is not in the instrument master")
        return info


@dataclass(slots=True)
class FileChecker:
    """Turns one file's rows, in file order, into checked ticks.

    ``fixed`` is the instrument every row belongs to when the file has no instrument column (one file per
    instrument). Rows must be in non-decreasing time order within a file.
    """

    file: str
    resolver: InstrumentResolver
    fixed: InstrumentInfo | None = None
    _last_ts: int = field(default=-(1 << 63), init=False)
    _last_where: str = field(default="", init=False)

    def tick(self, where: str, row: Mapping[str, Cell]) -> Tick:
        """One row through every check (the row path): a checked ``Tick`` or a ``ReplayDataError`` naming the row."""
        try:
            return self._tick(where, row)
        except RowError as exc:
            raise ReplayDataError(self.file, where, exc.field, exc.message) from None

    def fast_ticks(self, columns: FastColumns, last_where: str) -> list[TickFields] | None:
        """A whole decoded batch at once, checked column-wise, as ``TickFields`` rows; or None when any row fails a
        check: then the row path (``tick``) over the same rows raises the exact error. Both paths accept the same
        rows and give the same values."""
        count = len(columns.ts)
        if not count:
            return []
        known = self._instruments(columns, count)
        if known is None:
            return None
        tokens, tick_sizes = known
        ts, last, bid, ask = columns.ts, columns.last, columns.bid, columns.ask
        if ts[0] < self._last_ts or (count > 1 and bool((ts[1:] < ts[:-1]).any())):
            return None
        if bool(((ts < schema.MIN_TS_NS) | (ts >= schema.MAX_TS_NS)).any()):
            return None  # a time outside 2000-2100 (seconds or ms read as ns): the row path names it
        if bool((last <= 0).any() | (bid < 0).any() | (ask < 0).any() | ((ask > 0) & (bid > ask)).any()):
            return None
        sized = tick_sizes > 0
        if sized.any():
            grid = np.where(sized, tick_sizes, 1)
            if bool(((last % grid != 0) | (bid % grid != 0) | (ask % grid != 0)).any()):
                return None
        if bool((columns.bid_qty < 0).any() | (columns.ask_qty < 0).any() | (columns.volume < 0).any()
                | (columns.oi < 0).any()):
            return None
        self._last_ts = int(ts[-1])
        self._last_where = last_where
        return list(zip(ts.tolist(), tokens.tolist(), last.tolist(), columns.volume.tolist(), columns.oi.tolist(),
                        bid.tolist(), columns.bid_qty.tolist(), ask.tolist(), columns.ask_qty.tolist(), strict=True))

    def _instruments(self, columns: FastColumns, count: int) -> tuple[Int64s, Int64s] | None:
        """Each row's instrument token and tick size (paise; 0 = unchecked), or None if one is not in the master."""
        resolver = self.resolver
        if columns.token is not None:
            unique, inverse = np.unique(columns.token, return_inverse=True)
            infos = [resolver.find_token(token) for token in unique.tolist()]
        elif columns.symbol is not None:
            index: dict[str, int] = {}
            positions = [index.setdefault(symbol, len(index)) for symbol in columns.symbol]
            inverse = np.asarray(positions, dtype=np.int64)
            infos = [resolver.find_symbol(symbol) for symbol in index]
        elif self.fixed is not None:
            infos, inverse = [self.fixed], np.zeros(count, dtype=np.int64)
        else:
            return None
        found = [info for info in infos if info is not None]
        if len(found) != len(infos):
            return None
        tokens = np.asarray([info.instrument_token for info in found], dtype=np.int64)
        sizes = np.asarray([info.tick_size for info in found], dtype=np.int64)
        return tokens[inverse], sizes[inverse]

    def _tick(self, where: str, row: Mapping[str, Cell]) -> Tick:
        ts = schema.parse_ts(row.get(schema.TS))
        if ts < self._last_ts:
            raise RowError(schema.TS, f"{_time_text(ts)} is earlier than {_time_text(self._last_ts)} at "
                                      f"{self._last_where}: rows must be sorted by time")
        info = self._instrument(row)
        last = schema.parse_price(schema.LAST_PRICE, row.get(schema.LAST_PRICE), required=True)
        bid = schema.parse_price(schema.BID, row.get(schema.BID), required=False)
        ask = schema.parse_price(schema.ASK, row.get(schema.ASK), required=False)
        check_prices(info, last, bid, ask)
        tick = Tick(ts_ns=ts, instrument_token=info.instrument_token, last_price=last,
                    volume=schema.parse_quantity(schema.VOLUME, row.get(schema.VOLUME)),
                    oi=schema.parse_quantity(schema.OI, row.get(schema.OI)),
                    bid=bid, bid_qty=schema.parse_quantity(schema.BID_QTY, row.get(schema.BID_QTY)),
                    ask=ask, ask_qty=schema.parse_quantity(schema.ASK_QTY, row.get(schema.ASK_QTY)),
                    exchange_ts_ns=ts)
        self._last_ts = ts
        self._last_where = where
        return tick

    def _instrument(self, row: Mapping[str, Cell]) -> InstrumentInfo:
        token = row.get(schema.INSTRUMENT_TOKEN)
        if token is not None and str(token).strip():
            return self.resolver.token(token)
        symbol = row.get(schema.TRADINGSYMBOL)
        if symbol is not None and str(symbol).strip():
            return self.resolver.symbol(symbol)
        if self.fixed is not None:
            return self.fixed
        raise RowError(schema.INSTRUMENT_TOKEN, "is empty and so is tradingsymbol: one of them names the instrument")


def _time_text(ts_ns: int) -> str:
    """IST to the second, with the fraction when there is one (two rows a millisecond apart must read apart)."""
    fraction = ts_ns % 1_000_000_000
    text = ist_text(ts_ns)
    if not fraction:
        return text
    return f"{text[:19]}.{fraction:09d}".rstrip("0") + text[19:]


def check_prices(info: InstrumentInfo, last: int, bid: int, ask: int) -> None:
    """Positive prices on the instrument's tick grid and an uncrossed book (0 bid/ask = no quote on that side)."""
    if last <= 0:
        raise RowError(schema.LAST_PRICE, f"{rupee_text(last)} is not a positive price")
    for name, price in ((schema.BID, bid), (schema.ASK, ask)):
        if price < 0:
            raise RowError(name, f"{rupee_text(price)} is negative")
    for name, price in ((schema.LAST_PRICE, last), (schema.BID, bid), (schema.ASK, ask)):
        if info.tick_size > 0 and price % info.tick_size:
            raise RowError(name, f"{rupee_text(price)} is not a multiple of {info.label}'s tick size "
                                 f"{rupee_text(info.tick_size)}")
    if bid > 0 and ask > 0 and bid > ask:
        raise RowError(schema.BID, f"crossed book: bid {rupee_text(bid)} is above ask {rupee_text(ask)}")


@dataclass(frozen=True, slots=True)
class Gap:
    instrument_token: int
    from_ns: int
    to_ns: int


SessionBounds = Callable[[date], tuple[int, int] | None]


class GapCounter:
    """Counts silences longer than ``gap_ns`` of an instrument inside one session (fed ticks in event-time order).

    ``session_bounds(day)`` is (open, close) in ns of the IST day's session, or None on a closed day. Only a silence
    with both ends inside the same session counts; the first ``keep`` gaps are kept for the report.
    """

    def __init__(self, session_bounds: SessionBounds, gap_ns: int = DEFAULT_GAP_NS, keep: int = 20) -> None:
        self._session_bounds = session_bounds
        self._gap_ns = gap_ns
        self._keep = keep
        self._bounds: dict[date, tuple[int, int] | None] = {}
        self._last: dict[int, int] = {}
        self.count = 0
        self.examples: list[Gap] = []

    def _session(self, ts_ns: int) -> tuple[int, int] | None:
        day = ist_date(ts_ns)
        if day not in self._bounds:
            self._bounds[day] = self._session_bounds(day)
        bounds = self._bounds[day]
        if bounds is None or not bounds[0] <= ts_ns < bounds[1]:
            return None
        return bounds

    def observe(self, tick: Tick) -> None:
        token = tick.instrument_token
        previous = self._last.get(token)
        self._last[token] = tick.ts_ns
        if previous is None or tick.ts_ns - previous <= self._gap_ns:
            return
        session = self._session(tick.ts_ns)
        if session is None or not session[0] <= previous < session[1]:
            return
        self.count += 1
        if len(self.examples) < self._keep:
            self.examples.append(Gap(token, previous, tick.ts_ns))
