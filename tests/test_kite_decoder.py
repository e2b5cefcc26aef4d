"""Kite binary tick decoder: the shared fixtures, conformance with the official parser, malformed frames.

The official parser is ``KiteTicker._parse_binary`` from the installed ``kiteconnect`` package, called on an instance
that never connects. Packets in these tests are packed with format strings written here, independently of the
decoder's own ``struct`` layouts.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import struct
from datetime import datetime
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kiteconnect import KiteTicker

from trader.adapters.kite.decoder import DecodedFrame, MarketDepth, decode_frame, decode_to_dicts
from trader.events import Tick

from helpers import FIXTURES

NS = 1_000_000_000
RECEIVED = 1_795_151_700_123_456_789
OFFICIAL = KiteTicker("key", "token")  # never connected: only its parser is used

INFY = 408065  # NSE segment (1), the token of the fixtures
NIFTY_OPT = (12_345 << 8) | 2  # an NFO token
NIFTY_50 = 256265  # segment 9: index layouts
CDS_TOKEN = (777 << 8) | 3
BCD_TOKEN = (778 << 8) | 6
NCO_TOKEN = (779 << 8) | 12

KNOWN_SEGMENTS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 12]
SCALED_DIVISORS = {3: 10_000_000, 6: 10_000, 12: 10_000}  # wire units per rupee, where not 100
PACKET_LENGTHS = [8, 28, 32, 44, 184]

# gokiteconnect's names in ticker_*.json → the official Python parser's names.
GO_TO_PY = {
    "last_quantity": "last_traded_quantity",
    "average_price": "average_traded_price",
    "volume": "volume_traded",
    "buy_quantity": "total_buy_quantity",
    "sell_quantity": "total_sell_quantity",
    "timestamp": "exchange_timestamp",
}


# --- building frames ---------------------------------------------------------------------------------------------


def frame_of(*packets: bytes, count: int | None = None) -> bytes:
    """A WebSocket binary frame: u16 packet count, then u16 length + packet for each."""
    body = b"".join(struct.pack(">H", len(p)) + p for p in packets)
    return struct.pack(">H", len(packets) if count is None else count) + body


def ltp_packet(token: int, last: int) -> bytes:
    return struct.pack(">II", token, last)


def quote_packet(token: int, last: int, volume: int = 0, close: int = 0) -> bytes:
    # token, last, last qty, avg price, volume, buy qty, sell qty, open, high, low, close
    return struct.pack(">11I", token, last, 3, last, volume, 10, 20, last, last + 5, max(last - 5, 0), close)


def full_packet(
    token: int,
    last: int,
    *,
    volume: int = 0,
    oi: int = 0,
    exchange_ts: int = 0,
    bids: list[tuple[int, int, int]] | None = None,
    asks: list[tuple[int, int, int]] | None = None,
) -> bytes:
    """Depth levels given as (price, quantity, orders); on the wire each is quantity, price, orders, 2 pad bytes."""
    low, close = max(last - 5, 0), max(last - 1, 0)
    head = struct.pack(">11I", token, last, 3, last, volume, 10, 20, last, last + 5, low, close)
    head += struct.pack(">5I", exchange_ts, oi, oi + 1, max(oi - 1, 0), exchange_ts)
    levels = (bids or [(0, 0, 0)] * 5) + (asks or [(0, 0, 0)] * 5)
    return head + b"".join(struct.pack(">IIHxx", q, p, o) for p, q, o in levels)


def index_packet(
    token: int, last: int, high: int, low: int, open_: int, close: int, *, exchange_ts: int | None
) -> bytes:
    packet = struct.pack(">6Ii", token, last, high, low, open_, close, last - close)
    return packet if exchange_ts is None else packet + struct.pack(">I", exchange_ts)


def fixture_packet(name: str) -> bytes:
    return base64.b64decode((FIXTURES / f"ticker_{name}.packet").read_text())


def fixture_json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"ticker_{name}.json").read_text())
    return data


def decode(frame: bytes | bytearray | memoryview, **kwargs: Any) -> DecodedFrame:
    return decode_frame(frame, received_ns=RECEIVED, **kwargs)


# --- comparing with the official parser -------------------------------------------------------------------------


def assert_price(paise: int, rupees: float, segment: int) -> None:
    """Our integer paise against the official parser's float rupees for the same wire integer."""
    divisor = SCALED_DIVISORS.get(segment)
    if divisor is None:
        # The wire integer is paise and the official value is that integer / 100.0: doing the same division on ours
        # gives a bit-identical float, so this is exact equality, no tolerance.
        assert paise / 100 == rupees
        assert round(rupees * 100) == paise
        return
    # Finer than a paisa: recover the wire integer (exact, it is < 2**32 so the float division round-trips), then
    # check our value is the nearest paisa with halves rounded up, computed here with exact fractions.
    raw = round(rupees * divisor)
    assert raw / divisor == rupees
    assert paise == math.floor(Fraction(raw * 100, divisor) + Fraction(1, 2))


def assert_matches_official(result: DecodedFrame, official: list[dict[str, Any]]) -> None:
    assert len(result.ticks) == len(official)
    expected_depths: dict[int, dict[str, Any]] = {}
    for tick, d in zip(result.ticks, official, strict=True):
        assert type(tick) is Tick
        segment = d["instrument_token"] & 0xFF
        assert tick.ts_ns == RECEIVED
        assert tick.instrument_token == d["instrument_token"]
        assert_price(tick.last_price, d["last_price"], segment)
        assert tick.volume == d.get("volume_traded", 0)
        assert tick.oi == d.get("oi", 0)
        if "depth" in d:
            best_bid, best_ask = d["depth"]["buy"][0], d["depth"]["sell"][0]
            assert_price(tick.bid, best_bid["price"], segment)
            assert_price(tick.ask, best_ask["price"], segment)
            assert (tick.bid_qty, tick.ask_qty) == (best_bid["quantity"], best_ask["quantity"])
            expected_depths[tick.instrument_token] = d["depth"]  # the later packet of a token wins, as in ours
        else:
            assert (tick.bid, tick.bid_qty, tick.ask, tick.ask_qty) == (0, 0, 0, 0)
        if "exchange_timestamp" in d:
            # The official value is datetime.fromtimestamp(seconds) (naive local time); apply the same function to
            # ours rather than inverting it, which would be ambiguous around DST changes in some zones.
            assert tick.exchange_ts_ns % NS == 0
            assert datetime.fromtimestamp(tick.exchange_ts_ns // NS) == d["exchange_timestamp"]
        else:
            assert tick.exchange_ts_ns == 0
        assert tick.tick_id == 0

    assert result.depths.keys() == expected_depths.keys()
    for token, depth in result.depths.items():
        segment = token & 0xFF
        for ours, theirs in ((depth.bids, expected_depths[token]["buy"]), (depth.asks, expected_depths[token]["sell"])):
            assert len(ours) == len(theirs) == 5
            for (price, quantity, orders), level in zip(ours, theirs, strict=True):
                assert_price(price, level["price"], segment)
                assert (quantity, orders) == (level["quantity"], level["orders"])


# --- (a) the shared fixtures --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["quote", "full"])
def test_fixture_packets_decode_to_the_fixture_values(name: str) -> None:
    packet = fixture_packet(name)
    assert len(packet) == {"quote": 44, "full": 184}[name]
    expected = fixture_json(name)
    frame = frame_of(packet)

    # Our Tick.
    result = decode(frame)
    assert (result.heartbeat, result.malformed) == (False, 0)
    (tick,) = result.ticks
    assert tick.instrument_token == expected["instrument_token"] == INFY
    assert tick.last_price / 100 == expected["last_price"]
    assert tick.volume == expected["volume"]
    assert tick.ts_ns == RECEIVED
    if name == "full":
        assert tick.oi == expected["oi"]
        stamp = int(datetime.fromisoformat(expected["timestamp"]).timestamp())
        assert tick.exchange_ts_ns == stamp * NS == 1_625_461_887 * NS
        depth = result.depths[INFY]
        for ours, theirs in ((depth.bids, expected["depth"]["buy"]), (depth.asks, expected["depth"]["sell"])):
            assert [(p / 100, q, o) for p, q, o in ours] == [(x["price"], x["quantity"], x["orders"]) for x in theirs]
        assert (tick.bid, tick.bid_qty, tick.ask, tick.ask_qty) == (157340, 5, 157370, 172)
    else:
        assert (tick.oi, tick.bid, tick.ask, tick.exchange_ts_ns) == (0, 0, 0, 0)
        assert result.depths == {}

    # The official-shaped dict, key by key under the Python client's names.
    (d,) = decode_to_dicts(frame)
    assert d == OFFICIAL._parse_binary(frame)[0]
    for key, value in expected.items():
        if key == "change":
            continue  # checked below: the fixture's change is absolute (Go), the Python client's is a percentage
        py_key = GO_TO_PY.get(key, key)
        if key in ("timestamp", "last_trade_time"):
            assert d[py_key] == datetime.fromtimestamp(datetime.fromisoformat(value).timestamp())
        else:
            assert d[py_key] == value, key
    assert d["change"] == (d["last_price"] - d["ohlc"]["close"]) * 100 / d["ohlc"]["close"]
    if name == "full":
        assert d["last_price"] - d["ohlc"]["close"] == expected["change"]
    # ticker_quote.json's change (5.9) is the full packet's, not this packet's (1573.15 - 1567.80 = 5.35): the
    # fixtures README says so, so it is not compared.


def test_ltp_fixture_matches_the_first_eight_bytes_of_the_quote_packet() -> None:
    # There is no ticker_ltp.packet; an ltp packet is the first 8 bytes of the quote packet's layout, and
    # ticker_ltp.json carries the same token and price as the quote packet.
    expected = fixture_json("ltp")
    frame = frame_of(fixture_packet("quote")[:8])
    (tick,) = decode(frame).ticks
    assert (tick.instrument_token, tick.last_price / 100) == (expected["instrument_token"], expected["last_price"])
    assert decode_to_dicts(frame) == OFFICIAL._parse_binary(frame) == [expected]


# --- (b) conformance with the official parser on generated frames --------------------------------------------------

SEGMENT = st.one_of(st.sampled_from(KNOWN_SEGMENTS), st.integers(0, 255))


@st.composite
def packets(draw: st.DrawFn) -> bytes:
    """Any packet length the protocol knows, with any segment: the length alone picks the layout, as on the wire."""
    length = draw(st.sampled_from(PACKET_LENGTHS))
    token = (draw(st.integers(0, 2**24 - 1)) << 8) | draw(SEGMENT)
    return struct.pack(">I", token) + draw(st.binary(min_size=length - 4, max_size=length - 4))


@st.composite
def realistic_full_packets(draw: st.DrawFn) -> bytes:
    """Full packets with plausible values (random bytes rarely look like a market), on every tradeable segment."""
    segment = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 12]))
    token = (draw(st.integers(1, 2**24 - 1)) << 8) | segment
    # One price step: 0.05 rupee on the divisor-100 segments, 0.0025 rupee (a currency tick) on the others.
    step = {3: 25_000, 6: 25, 12: 25}.get(segment, 5)
    mid = draw(st.integers(1, min(400_000, 2**31 // step))) * step
    bids = [(max(mid - i * step, 0), draw(st.integers(0, 50_000)), draw(st.integers(0, 200))) for i in range(1, 6)]
    asks = [(mid + i * step, draw(st.integers(0, 50_000)), draw(st.integers(0, 200))) for i in range(1, 6)]
    return full_packet(
        token,
        mid,
        volume=draw(st.integers(0, 2**32 - 1)),
        oi=draw(st.integers(0, 10**9)),
        exchange_ts=draw(st.integers(1_600_000_000, 1_900_000_000)),
        bids=bids,
        asks=asks,
    )


FRAMES = st.lists(st.one_of(packets(), realistic_full_packets()), max_size=12).map(lambda ps: frame_of(*ps))


@settings(max_examples=300)
@given(FRAMES)
def test_dicts_equal_the_official_parser(frame: bytes) -> None:
    # Same keys and bit-identical values, floats and datetimes included.
    assert decode_to_dicts(frame) == OFFICIAL._parse_binary(frame)


@settings(max_examples=300)
@given(FRAMES)
def test_ticks_and_depth_equal_the_official_parser(frame: bytes) -> None:
    result = decode(frame)
    assert (result.heartbeat, result.malformed) == (False, 0)
    assert_matches_official(result, OFFICIAL._parse_binary(frame))


def test_index_packets_use_their_own_layout() -> None:
    # Index quote/full: high, low, open, close (not open, high, low, close) and a signed change field nobody reads.
    quote = index_packet(NIFTY_50, 2_600_000, 2_610_000, 2_590_000, 2_595_000, 2_620_000, exchange_ts=None)
    full = index_packet(NIFTY_50, 2_600_100, 2_610_000, 2_590_000, 2_595_000, 2_620_000, exchange_ts=1_795_151_700)
    frame = frame_of(quote, full, ltp_packet(NIFTY_50, 2_600_200))
    result = decode(frame)
    assert [(t.last_price, t.exchange_ts_ns, t.volume) for t in result.ticks] == [
        (2_600_000, 0, 0),
        (2_600_100, 1_795_151_700 * NS, 0),
        (2_600_200, 0, 0),
    ]
    assert result.depths == {}
    dicts = decode_to_dicts(frame)
    assert dicts == OFFICIAL._parse_binary(frame)
    assert dicts[0]["ohlc"] == {"open": 25950.0, "high": 26100.0, "low": 25900.0, "close": 26200.0}
    assert [d["tradable"] for d in dicts] == [False, False, False]
    assert [d["mode"] for d in dicts] == ["quote", "full", "ltp"]


@pytest.mark.parametrize(
    ("token", "raw", "paise"),
    [
        (CDS_TOKEN, 831_234_567, 8312),  # 83.1234567 rupees
        (CDS_TOKEN, 831_250_000, 8313),  # 83.125: a half rounds up
        (CDS_TOKEN, 831_249_999, 8312),
        (BCD_TOKEN, 831_250, 8313),  # 83.1250 rupees
        (BCD_TOKEN, 831_249, 8312),
        (NCO_TOKEN, 1_234_567, 12346),  # 123.4567 rupees
        (NIFTY_OPT, 12_345, 12_345),  # divisor 100: the wire integer is paise
    ],
)
def test_finer_than_paise_segments_round_to_the_nearest_paisa(token: int, raw: int, paise: int) -> None:
    bids = [(raw - 1, 1, 1)] * 5
    asks = [(raw + 1, 2, 1)] * 5
    frame = frame_of(ltp_packet(token, raw), quote_packet(token, raw), full_packet(token, raw, bids=bids, asks=asks))
    result = decode(frame)
    assert [t.last_price for t in result.ticks] == [paise] * 3
    assert_matches_official(result, OFFICIAL._parse_binary(frame))


def test_decoded_ticks_are_real_ticks() -> None:
    packet = full_packet(NIFTY_OPT, 12_345, volume=7, oi=9, exchange_ts=1_795_151_700, bids=[(12_340, 50, 2)] * 5,
                         asks=[(12_350, 75, 3)] * 5)  # fmt: skip
    (tick,) = decode(frame_of(packet)).ticks
    built = Tick(ts_ns=RECEIVED, instrument_token=NIFTY_OPT, last_price=12_345, volume=7, oi=9, bid=12_340, bid_qty=50,
                 ask=12_350, ask_qty=75, exchange_ts_ns=1_795_151_700 * NS)  # fmt: skip
    assert type(tick) is Tick
    assert tick == built
    assert hash(tick) == hash(built)
    assert repr(tick) == repr(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tick.last_price = 1  # type: ignore[misc]  # frozen: the assignment must fail
    assert dataclasses.replace(tick, tick_id=5).tick_id == 5


def test_tick_ids_number_decoded_ticks_in_wire_order() -> None:
    frame = frame_of(ltp_packet(INFY, 1), b"\x00" * 40, quote_packet(INFY, 2), full_packet(INFY, 3))
    result = decode(frame, first_tick_id=41)
    assert [(t.last_price, t.tick_id) for t in result.ticks] == [(1, 41), (2, 42), (3, 43)]
    assert result.malformed == 1


def test_buffers_other_than_bytes_decode_the_same() -> None:
    frame = frame_of(full_packet(NIFTY_OPT, 100), quote_packet(INFY, 200), ltp_packet(NIFTY_50, 300))
    expected = decode(frame)
    assert decode(bytearray(frame)) == expected
    assert decode(memoryview(frame)) == expected
    assert decode_to_dicts(memoryview(frame)) == decode_to_dicts(frame)


def test_depth_is_price_quantity_orders_best_first() -> None:
    bids = [(12_340 - 5 * i, 10 + i, 1 + i) for i in range(5)]
    asks = [(12_350 + 5 * i, 20 + i, 2 + i) for i in range(5)]
    result = decode(frame_of(full_packet(NIFTY_OPT, 12_345, bids=bids, asks=asks)))
    assert result.depths == {NIFTY_OPT: MarketDepth(bids=tuple(bids), asks=tuple(asks))}


# --- (c) malformed frames --------------------------------------------------------------------------------------------


def test_empty_frame_is_malformed() -> None:
    assert decode(b"") == DecodedFrame([], {}, heartbeat=False, malformed=1)
    assert decode_to_dicts(b"") == []


@pytest.mark.parametrize("byte", [b"\x00", b"\x01", b"\xff"])
def test_one_byte_frame_is_a_heartbeat(byte: bytes) -> None:
    assert decode(byte) == DecodedFrame([], {}, heartbeat=True, malformed=0)
    assert decode_to_dicts(byte) == []


def test_frame_with_no_packets_is_fine() -> None:
    assert decode(b"\x00\x00") == DecodedFrame([], {}, heartbeat=False, malformed=0)


def test_truncated_frames_keep_the_whole_packets_and_count_the_rest() -> None:
    packets = [full_packet(NIFTY_OPT, 100), quote_packet(INFY, 200), ltp_packet(NIFTY_50, 300)]
    frame = frame_of(*packets)
    whole = decode(frame)
    whole_dicts = decode_to_dicts(frame)
    ends = []
    pos = 2
    for p in packets:
        pos += 2 + len(p)
        ends.append(pos)
    for cut in range(2, len(frame) + 1):
        complete = sum(end <= cut for end in ends)
        result = decode(frame[:cut])
        assert result.ticks == whole.ticks[:complete], cut
        assert result.malformed == len(packets) - complete, cut
        assert not result.heartbeat
        # decode_to_dicts frames packets with its own walk; both must agree on every cut.
        assert decode_to_dicts(frame[:cut]) == whole_dicts[:complete], cut


@pytest.mark.parametrize("length", [0, 1, 4, 7, 9, 27, 29, 31, 33, 43, 45, 183, 185, 300])
def test_packet_of_unknown_length_is_counted_and_skipped(length: int) -> None:
    odd = struct.pack(">I", NIFTY_OPT) + bytes(max(length - 4, 0)) if length >= 4 else bytes(length)
    assert len(odd) == length
    frame = frame_of(full_packet(NIFTY_OPT, 100), odd, quote_packet(INFY, 200))
    result = decode(frame)
    assert [t.last_price for t in result.ticks] == [100, 200]
    assert result.malformed == 1
    assert list(result.depths) == [NIFTY_OPT]


def test_packet_count_larger_than_the_data() -> None:
    frame = frame_of(quote_packet(INFY, 200), ltp_packet(NIFTY_50, 300), count=5)
    result = decode(frame)
    assert [t.last_price for t in result.ticks] == [200, 300]
    assert result.malformed == 3
    assert [d["last_price"] for d in decode_to_dicts(frame)] == [2.0, 3.0]


def test_packet_count_smaller_than_the_data() -> None:
    # Bytes after the counted packets mean the count (or a length) is wrong: decode what was counted, count one.
    frame = frame_of(quote_packet(INFY, 200), ltp_packet(NIFTY_50, 300), count=1)
    result = decode(frame)
    assert [t.last_price for t in result.ticks] == [200]
    assert result.malformed == 1


@settings(max_examples=500)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    result = decode(data)
    assert result.malformed >= 0
    assert result.heartbeat == (len(data) == 1)
    if len(data) >= 2:
        count = struct.unpack_from(">H", data)[0]
        assert len(result.ticks) <= count
    assert [d["instrument_token"] for d in decode_to_dicts(data)] == [t.instrument_token for t in result.ticks]


@settings(max_examples=300)
@given(FRAMES, st.data())
def test_corrupted_frames_never_raise_and_keep_the_packets_before_the_damage(frame: bytes, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(frame) - 1))
    corrupted = frame[:position] + bytes([data.draw(st.integers(0, 255))]) + frame[position + 1 :]
    cut = data.draw(st.integers(0, len(corrupted)))
    damaged = corrupted[:cut]
    result = decode(damaged)
    assert result.malformed >= 0
    # Every packet that ends before the first changed byte decodes exactly as in the intact frame.
    intact = decode(frame).ticks
    first_change = min(position, cut) if corrupted[position] != frame[position] else cut
    pos, undamaged = 2, 0
    if first_change >= 2 and damaged[:2] == frame[:2]:
        for _ in range(struct.unpack_from(">H", frame)[0]):
            pos += 2 + struct.unpack_from(">H", frame, pos)[0]
            if pos > first_change:
                break
            undamaged += 1
        assert result.ticks[:undamaged] == intact[:undamaged]
