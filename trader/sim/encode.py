"""Encode ticks as Kite WebSocket binary packets and frames (the simulator's side of ``adapters/kite/decoder.py``).

Layouts (big-endian, all unsigned): ltp 8 bytes; index quote 28 and full 32; tradeable quote 44 and full 184 with
five depth levels a side. Prices go on the wire in paise, which is what Kite sends for NSE/BSE F&O and indices.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from trader.events import Tick

Mode = Literal["ltp", "quote", "full"]
DEPTH_LEVELS = 5

_LTP = struct.Struct(">II")
_INDEX_QUOTE = struct.Struct(">6Ii")
_INDEX_FULL = struct.Struct(">6IiI")
_QUOTE = struct.Struct(">11I")
_FULL_TAIL = struct.Struct(">5I")
_DEPTH_LEVEL = struct.Struct(">IIH2x")
_U16 = struct.Struct(">H")


@dataclass(frozen=True, slots=True)
class DayStats:
    """What a quote packet carries beyond the tick: the day's OHLC (paise) and trade statistics."""

    open: int = 0
    high: int = 0
    low: int = 0
    close: int = 0  # the previous session's close, as Kite sends it
    average_price: int = 0
    last_quantity: int = 0
    total_buy_quantity: int = 0
    total_sell_quantity: int = 0
    oi_day_high: int = 0
    oi_day_low: int = 0
    last_trade_ts: int = 0  # epoch seconds


DepthSide = Sequence[tuple[int, int, int]]  # (price paise, quantity, orders), best first


def _seconds(ts_ns: int) -> int:
    return ts_ns // 1_000_000_000


def encode_packet(tick: Tick, mode: Mode, *, index: bool = False, day: DayStats | None = None,
                  bids: DepthSide = (), asks: DepthSide = ()) -> bytes:
    """One packet for ``tick`` in ``mode``. Depth defaults to the tick's best bid/ask as a single level."""
    stats = day or DayStats()
    token, last = tick.instrument_token, tick.last_price
    if mode == "ltp":
        return _LTP.pack(token, last)
    if index:
        change = last - stats.close if stats.close else 0
        head = (token, last, stats.high, stats.low, stats.open, stats.close, change)
        return _INDEX_QUOTE.pack(*head) if mode == "quote" else _INDEX_FULL.pack(*head, _seconds(tick.exchange_ts_ns))
    quote = _QUOTE.pack(token, last, stats.last_quantity, stats.average_price, tick.volume,
                        stats.total_buy_quantity, stats.total_sell_quantity, stats.open, stats.high, stats.low,
                        stats.close)
    if mode == "quote":
        return quote
    tail = _FULL_TAIL.pack(stats.last_trade_ts, tick.oi, stats.oi_day_high, stats.oi_day_low,
                           _seconds(tick.exchange_ts_ns))
    bid_levels = list(bids) or ([(tick.bid, tick.bid_qty, 1)] if tick.bid else [])
    ask_levels = list(asks) or ([(tick.ask, tick.ask_qty, 1)] if tick.ask else [])
    return quote + tail + _depth(bid_levels) + _depth(ask_levels)


def _depth(levels: list[tuple[int, int, int]]) -> bytes:
    padded = (levels + [(0, 0, 0)] * DEPTH_LEVELS)[:DEPTH_LEVELS]
    # On the wire each level is quantity, price, orders — quantity first.
    return b"".join(_DEPTH_LEVEL.pack(quantity, price, orders) for price, quantity, orders in padded)


def encode_frame(packets: Iterable[bytes]) -> bytes:
    """``[u16 count]([u16 length][packet])*`` — several instruments share one frame."""
    body = [_U16.pack(len(p)) + p for p in packets]
    return _U16.pack(len(body)) + b"".join(body)


HEARTBEAT = b"\x00"  # a 1-byte binary frame when there is nothing to stream
