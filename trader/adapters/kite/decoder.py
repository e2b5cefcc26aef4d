"""Decoder for Kite Connect WebSocket binary frames (``docs/reference/kite-protocol.md`` §4.3–4.7).

A binary frame is ``[u16 N]`` followed by N times ``[u16 L][L bytes of packet]``, big-endian throughout. What a packet
holds is decided by its length alone, exactly as in the official client:

====== ======================= ===========================================================================
length layout                  fields
====== ======================= ===========================================================================
8      ltp (any segment)       token, last price
28     index quote             token, last, high, low, open, close, change (ignored)
32     index full              the 28 bytes + exchange timestamp
44     tradeable quote         token, last, last qty, avg price, volume, buy qty, sell qty, open, high, low, close
184    tradeable full          the 44 bytes + last trade time, oi, oi high, oi low, exchange timestamp, 10 depth levels
====== ======================= ===========================================================================

Two outputs:

* :func:`decode_frame` — the daemon's hot path: our :class:`~trader.events.Tick` (integer paise, ns timestamps) plus the
  5-level depth of full-mode tradeable packets, a heartbeat flag and a malformed-packet count. It never raises on bad
  input: a packet that cannot be decoded is counted and skipped, the rest of the frame still decodes.
* :func:`decode_to_dicts` — the same packets as the official ``KiteTicker._parse_binary`` would return them (same keys,
  rupees as floats, naive local ``datetime``\\s, percentage ``change``). It exists for conformance tests against the
  official parser; it follows the same framing rules and uses the same ``struct`` layouts as :func:`decode_frame`.

Speed (``bench/decode.py``): each packet is unpacked with one precompiled :class:`struct.Struct` call
(``unpack_from`` on the frame itself, no slicing); the common segments (price divisor 100) need no arithmetic, because
their wire integers already are paise; and ticks are built without the frozen-dataclass ``__init__`` (see
:func:`_new_tick`), which would otherwise cost more than everything else together. The official parser does one
``struct.unpack`` with a freshly built format string and a slice per field.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from struct import Struct
from typing import Any, Final, NamedTuple

from trader.events import Tick

__all__ = [
    "DecodedFrame",
    "DepthLevel",
    "MarketDepth",
    "decode_frame",
    "decode_to_dicts",
]

DepthLevel = tuple[int, int, int]
"""One depth level: (price in paise, quantity, number of orders)."""

NS_PER_SECOND: Final = 1_000_000_000

# Segment codes (the low byte of an instrument token, protocol doc §4.6).
SEGMENT_CDS: Final = 3  # NSE currency derivatives: prices in 1e-7 rupee
SEGMENT_BCD: Final = 6  # BSE currency derivatives: prices in 1e-4 rupee
SEGMENT_INDICES: Final = 9  # NSE/BSE indices: not tradable, own 28/32-byte layouts
SEGMENT_NCO: Final = 12  # present only in kiteconnect 5.2.2, shares BCD's divisor

# Packet lengths, which are the only thing that tells the layouts apart.
LEN_LTP: Final = 8
LEN_INDEX_QUOTE: Final = 28
LEN_INDEX_FULL: Final = 32
LEN_QUOTE: Final = 44
LEN_FULL: Final = 184

# Wire prices of these segments are finer than a paisa. Each maps to (wire units per paisa, half of that), so that
# ``(raw + half) // units`` rounds to the nearest paisa, halves up (all wire values are unsigned). Rounding loses
# information: CDS contracts tick in 0.25 paise, so neighbouring ticks can collapse onto one paise value. The daemon
# trades index options (NFO/BFO, divisor 100, exact), so this path only has to be correct, not lossless or fast.
_SCALED_SEGMENTS: Final[dict[int, tuple[int, int]]] = {
    SEGMENT_CDS: (100_000, 50_000),  # 1e7 wire units per rupee = 1e5 per paisa
    SEGMENT_BCD: (100, 50),  # 1e4 per rupee = 100 per paisa
    SEGMENT_NCO: (100, 50),
}

# Float divisors as the official parser uses them (wire integer → rupees), for decode_to_dicts only.
_RUPEE_DIVISORS: Final[dict[int, float]] = {SEGMENT_CDS: 10_000_000.0, SEGMENT_BCD: 10_000.0, SEGMENT_NCO: 10_000.0}

# All fields are unsigned, as the official client reads them (the docs call them int32 but nobody sends negatives).
_U16: Final = Struct(">H").unpack_from
_LTP: Final = Struct(">II")
# Index quote: token, last, high, low, open, close, then a 4-byte "change" that the official parser ignores.
_INDEX_QUOTE: Final = Struct(">6I4x")
_INDEX_FULL: Final = Struct(">6I4xI")
_QUOTE: Final = Struct(">11I")
_QUOTE_HEAD: Final = Struct(">5I")  # token, last, last qty, avg price, volume: all a quote packet gives a Tick
# Full: 16 uint32 (quote fields + last trade time, oi, oi high, oi low, exchange ts), then 10 depth entries of
# (quantity u32, price u32, orders u16, 2 padding bytes); entries 0-4 are bids, 5-9 offers, best first.
_FULL: Final = Struct(">16I" + "IIH2x" * 10)

assert _LTP.size == LEN_LTP
assert _INDEX_QUOTE.size == LEN_INDEX_QUOTE
assert _INDEX_FULL.size == LEN_INDEX_FULL
assert _QUOTE.size == LEN_QUOTE
assert _FULL.size == LEN_FULL

_DEPTH_OFFSET: Final = 16  # index of the first depth value in a _FULL tuple


class MarketDepth(NamedTuple):
    """Five levels a side from a full-mode tradeable packet, best first. Empty levels arrive as zeros and stay so.

    A ``NamedTuple`` rather than a dataclass because it is built for every full packet: ``tuple.__new__`` makes one in
    about a tenth of a frozen dataclass's construction time.
    """

    bids: tuple[DepthLevel, ...]
    asks: tuple[DepthLevel, ...]


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """Everything one WebSocket binary frame carried.

    ``depths`` is keyed by instrument token; if a frame carries two full packets for one token, the later one wins
    (``ticks`` keeps both, in wire order). ``malformed`` counts packets that could not be decoded: a length that is no
    known layout, packets the count promised but the frame does not hold (truncation), bytes left over after the last
    counted packet (counted as one), and an empty frame (counted as one).
    """

    ticks: list[Tick]
    depths: dict[int, MarketDepth]
    heartbeat: bool = False
    malformed: int = 0


# Building our Tick is the largest cost of decoding: a frozen dataclass's __init__ calls object.__setattr__ once per
# field (about 1.7 µs for Tick's 11 fields on CPython 3.11, several times the cost of unpacking a 184-byte packet). So
# the hot path builds an instance of a plain mutable class with exactly Tick's slots and then relabels it as a Tick.
# CPython checks on the ``__class__`` assignment that both layouts are identical (same slots, same size) and raises
# TypeError otherwise, so this cannot produce a corrupt object; the result is a real Tick in every respect (type,
# equality, hash, repr, immutability), which tests/test_kite_decoder.py checks.
_TICK_FIELDS: Final = (
    "ts_ns", "instrument_token", "last_price", "volume", "oi", "bid", "bid_qty", "ask", "ask_qty", "exchange_ts_ns",
    "tick_id",
)  # fmt: skip
if tuple(f.name for f in fields(Tick)) != _TICK_FIELDS or hasattr(Tick, "__post_init__"):
    # The positional Tick(...) calls below and _TickLayout depend on the field order: fail loudly, not silently.
    raise ImportError(f"trader.events.Tick changed ({[f.name for f in fields(Tick)]}); update {__name__}")


class _TickLayout:
    """Same slots as Tick, but mutable, so its __init__ is plain attribute stores (see the comment above)."""

    __slots__ = _TICK_FIELDS

    def __init__(  # noqa: PLR0917 -- positional on purpose: mirrors Tick(...) and keyword passing costs time
        self, ts_ns: int, instrument_token: int, last_price: int, volume: int, oi: int, bid: int, bid_qty: int,
        ask: int, ask_qty: int, exchange_ts_ns: int, tick_id: int,
    ) -> None:  # fmt: skip
        self.ts_ns = ts_ns
        self.instrument_token = instrument_token
        self.last_price = last_price
        self.volume = volume
        self.oi = oi
        self.bid = bid
        self.bid_qty = bid_qty
        self.ask = ask
        self.ask_qty = ask_qty
        self.exchange_ts_ns = exchange_ts_ns
        self.tick_id = tick_id


def _new_tick(  # noqa: PLR0917 -- positional on purpose, like Tick(...)
    ts_ns: int, instrument_token: int, last_price: int, volume: int, oi: int, bid: int, bid_qty: int, ask: int,
    ask_qty: int, exchange_ts_ns: int, tick_id: int,
) -> Tick:  # fmt: skip
    """``Tick(...)`` with all fields positional, about 3.5 times faster. Used for every decoded packet."""
    obj: Any = _TickLayout(
        ts_ns, instrument_token, last_price, volume, oi, bid, bid_qty, ask, ask_qty, exchange_ts_ns, tick_id
    )
    obj.__class__ = Tick
    tick: Tick = obj
    return tick


def _relabelling_works() -> bool:
    try:
        return _new_tick(*range(11)) == Tick(*range(11))
    except TypeError:  # layouts differ, e.g. Tick lost slots=True
        return False


if not _relabelling_works():
    # Checked once here so that decode_frame can never raise TypeError on the relabel in the middle of a session.
    raise ImportError(f"trader.events.Tick's layout no longer matches {__name__}._TickLayout; update the decoder")


def _split(frame: bytes | bytearray | memoryview) -> tuple[list[tuple[int, int]], int]:
    """Return ``[(offset, length), ...]`` of the packets in ``frame`` and the number of packets lost to bad framing.

    Only framing is checked here (what fits in the buffer); whether a length is a known layout is the caller's
    business. The official parser slices past the end silently (a 184-byte packet cut off after 44 bytes decodes as a
    quote) and raises ``struct.error`` when a length header is missing; we stop at the first packet that does not fit
    and count it and every packet after it as malformed.
    """
    size = len(frame)
    count = _U16(frame, 0)[0]
    packets: list[tuple[int, int]] = []
    append = packets.append
    pos = 2
    for index in range(count):
        body = pos + 2
        if body > size:
            return packets, count - index
        length = _U16(frame, pos)[0]
        pos = body + length
        if pos > size:
            return packets, count - index
        append((body, length))
    # More bytes than the count accounts for: the count or a length is wrong, so the framing is suspect.
    return packets, 1 if pos != size else 0


def decode_frame(frame: bytes | bytearray | memoryview, *, received_ns: int, first_tick_id: int = 0) -> DecodedFrame:
    """Decode one binary frame into ticks (and depth). Never raises on malformed input.

    ``received_ns`` becomes every tick's ``ts_ns`` (our event time is the receive time; the exchange's own time is in
    ``exchange_ts_ns`` for full-mode packets, else 0). If ``first_tick_id`` is non-zero, the ticks are numbered
    ``first_tick_id, first_tick_id + 1, ...`` in wire order, which saves the caller a ``dataclasses.replace`` per tick;
    otherwise ``tick_id`` stays 0.

    The framing walk is :func:`_split`'s, inlined because a list of (offset, length) pairs costs a few per cent here;
    tests check that both agree on every truncation of a frame.
    """
    size = len(frame)
    if size < 2:
        # Kite's idle heartbeat is a single byte; a zero-byte binary frame is nothing Kite sends.
        return DecodedFrame([], {}, heartbeat=size == 1, malformed=0 if size == 1 else 1)

    ticks: list[Any] = []  # _TickLayout objects relabelled as Tick (see _new_tick)
    append = ticks.append
    depths: dict[int, MarketDepth] = {}
    malformed = 0
    tick_id = first_tick_id
    step = 1 if first_tick_id else 0
    # Locals, not globals/attributes, in the loop: each saves a dictionary lookup per packet.
    full = _FULL.unpack_from
    quote = _QUOTE_HEAD.unpack_from
    layout: Any = _TickLayout  # its instances become Ticks once relabelled; untyped to allow that
    tick_cls = Tick
    new_depth = tuple.__new__
    depth_cls = MarketDepth
    scaled = _SCALED_SEGMENTS
    ns = NS_PER_SECOND

    count = (frame[0] << 8) | frame[1]
    pos = 2
    for index in range(count):
        offset = pos + 2
        if offset > size:  # the count promised more packets than the frame holds
            malformed += count - index
            break
        length = (frame[pos] << 8) | frame[pos + 1]
        pos = offset + length
        if pos > size:  # this packet is cut off
            malformed += count - index
            break
        # Branches ordered by how often they occur in streaming; each is one unpack and one tick.
        if length == LEN_FULL:
            v = full(frame, offset)
            token = v[0]
            if (token & 0xFF) in scaled:
                tick, depth = _scaled_full(v, received_ns, tick_id)
                append(tick)
                depths[token] = depth
            else:
                # Field order: ts, token, last, volume, oi, bid, bid_qty, ask, ask_qty, exchange ts, tick_id.
                t = layout(received_ns, token, v[1], v[4], v[12], v[17], v[16], v[32], v[31], v[15] * ns, tick_id)
                t.__class__ = tick_cls
                append(t)
                # Depth levels on the wire are (quantity, price, orders); ours are (price, quantity, orders).
                depths[token] = new_depth(depth_cls, (
                    ((v[17], v[16], v[18]), (v[20], v[19], v[21]), (v[23], v[22], v[24]),
                     (v[26], v[25], v[27]), (v[29], v[28], v[30])),
                    ((v[32], v[31], v[33]), (v[35], v[34], v[36]), (v[38], v[37], v[39]),
                     (v[41], v[40], v[42]), (v[44], v[43], v[45])),
                ))  # fmt: skip
        elif length == LEN_QUOTE:
            token, last, _, _, volume = quote(frame, offset)
            if (token & 0xFF) in scaled:
                last = _paise(token, last)
            t = layout(received_ns, token, last, volume, 0, 0, 0, 0, 0, 0, tick_id)
            t.__class__ = tick_cls
            append(t)
        elif length == LEN_LTP:
            token, last = _LTP.unpack_from(frame, offset)
            append(_new_tick(received_ns, token, _paise(token, last), 0, 0, 0, 0, 0, 0, 0, tick_id))
        elif length == LEN_INDEX_FULL:
            iv = _INDEX_FULL.unpack_from(frame, offset)
            token = iv[0]
            append(_new_tick(received_ns, token, _paise(token, iv[1]), 0, 0, 0, 0, 0, 0, iv[6] * ns, tick_id))
        elif length == LEN_INDEX_QUOTE:
            token, last = _INDEX_QUOTE.unpack_from(frame, offset)[:2]
            append(_new_tick(received_ns, token, _paise(token, last), 0, 0, 0, 0, 0, 0, 0, tick_id))
        else:  # no layout has this length; the framing is intact, so skip just this packet
            malformed += 1
            continue
        tick_id += step
    else:
        if pos != size:  # bytes beyond the counted packets: the count or a length is wrong
            malformed += 1

    return DecodedFrame(ticks, depths, heartbeat=False, malformed=malformed)


def _paise(token: int, raw: int) -> int:
    """A wire price of ``token``'s segment in paise (identity for divisor-100 segments, else rounded half up)."""
    units = _SCALED_SEGMENTS.get(token & 0xFF)
    if units is None:
        return raw
    return (raw + units[1]) // units[0]


def _scaled_full(v: tuple[Any, ...], received_ns: int, tick_id: int) -> tuple[Tick, MarketDepth]:
    """The full-packet path for currency segments, whose prices need rounding to paise (rare, so kept out of line)."""
    token = v[0]
    units, half = _SCALED_SEGMENTS[token & 0xFF]
    levels = [((v[i + 1] + half) // units, v[i], v[i + 2]) for i in range(_DEPTH_OFFSET, _DEPTH_OFFSET + 30, 3)]
    bids, asks = tuple(levels[:5]), tuple(levels[5:])
    tick = _new_tick(
        received_ns, token, (v[1] + half) // units, v[4], v[12],
        bids[0][0], bids[0][1], asks[0][0], asks[0][1], v[15] * NS_PER_SECOND, tick_id,
    )  # fmt: skip
    return tick, MarketDepth(bids, asks)


def decode_to_dicts(frame: bytes | bytearray | memoryview) -> list[dict[str, Any]]:
    """Decode a frame into the official parser's tick dicts, for conformance checks.

    Values equal ``KiteTicker._parse_binary``'s for every well-formed frame: the same keys, ``int`` for integers,
    rupees as ``raw / divisor`` with the same float divisor (so the floats are bit-identical), percentage ``change``
    computed with the same float operations (``0`` when close is 0), and ``datetime.fromtimestamp`` (naive, host
    local time; ``None`` if out of range) for timestamps. Malformed packets are skipped, not decoded half-way.
    """
    if len(frame) < 2:
        return []
    packets, _ = _split(frame)
    out: list[dict[str, Any]] = []
    for offset, length in packets:
        if length == LEN_LTP:
            token, last = _LTP.unpack_from(frame, offset)
            div = _RUPEE_DIVISORS.get(token & 0xFF, 100.0)
            out.append(
                {
                    "tradable": (token & 0xFF) != SEGMENT_INDICES,
                    "mode": "ltp",
                    "instrument_token": token,
                    "last_price": last / div,
                }
            )
        elif length in (LEN_INDEX_QUOTE, LEN_INDEX_FULL):
            iv = (_INDEX_FULL if length == LEN_INDEX_FULL else _INDEX_QUOTE).unpack_from(frame, offset)
            token = iv[0]
            div = _RUPEE_DIVISORS.get(token & 0xFF, 100.0)
            d: dict[str, Any] = {
                "tradable": (token & 0xFF) != SEGMENT_INDICES,
                "mode": "full" if length == LEN_INDEX_FULL else "quote",
                "instrument_token": token,
                "last_price": iv[1] / div,
                # Index layout: high, low, open, close — not the tradeable packets' open, high, low, close.
                "ohlc": {"high": iv[2] / div, "low": iv[3] / div, "open": iv[4] / div, "close": iv[5] / div},
            }
            d["change"] = _change(d)
            if length == LEN_INDEX_FULL:
                d["exchange_timestamp"] = _local_datetime(iv[6])
            out.append(d)
        elif length in (LEN_QUOTE, LEN_FULL):
            v = (_FULL if length == LEN_FULL else _QUOTE).unpack_from(frame, offset)
            token = v[0]
            div = _RUPEE_DIVISORS.get(token & 0xFF, 100.0)
            d = {
                "tradable": (token & 0xFF) != SEGMENT_INDICES,
                "mode": "full" if length == LEN_FULL else "quote",
                "instrument_token": token,
                "last_price": v[1] / div,
                "last_traded_quantity": v[2],
                "average_traded_price": v[3] / div,
                "volume_traded": v[4],
                "total_buy_quantity": v[5],
                "total_sell_quantity": v[6],
                "ohlc": {"open": v[7] / div, "high": v[8] / div, "low": v[9] / div, "close": v[10] / div},
            }
            d["change"] = _change(d)
            if length == LEN_FULL:
                d["last_trade_time"] = _local_datetime(v[11])
                d["oi"] = v[12]
                d["oi_day_high"] = v[13]
                d["oi_day_low"] = v[14]
                d["exchange_timestamp"] = _local_datetime(v[15])
                levels = [
                    {"quantity": v[i], "price": v[i + 1] / div, "orders": v[i + 2]}
                    for i in range(_DEPTH_OFFSET, _DEPTH_OFFSET + 30, 3)
                ]
                d["depth"] = {"buy": levels[:5], "sell": levels[5:]}
            out.append(d)
    return out


def _change(d: dict[str, Any]) -> float | int:
    """Percentage change from the previous close, with the official parser's float operations and its int 0."""
    close = d["ohlc"]["close"]
    if close == 0:
        return 0
    change: float = (d["last_price"] - close) * 100 / close
    return change


def _local_datetime(epoch_seconds: int) -> datetime | None:
    """As the official parser does: naive local time, ``None`` if the platform cannot represent the value."""
    try:
        return datetime.fromtimestamp(epoch_seconds)
    except (OverflowError, OSError, ValueError):
        return None
