"""The HSM codec (trader/adapters/fyers/hsm.py, hsm_topics.py): every message both ways, random values, bad frames,
and the official SDK's own request bytes read by our server-side decoder."""

from __future__ import annotations

import base64
import importlib
import struct
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.adapters.fyers.hsm import (
    ABSENT,
    DEPTH_FIELDS,
    INDEX_FIELDS,
    SCRIP_FIELDS,
    AckRequest,
    AuthRequest,
    AuthResponse,
    ChannelRequest,
    CustomMessage,
    DataFeed,
    HsmError,
    LiteRecord,
    ModeRequest,
    Ping,
    PingRequest,
    Request,
    Response,
    SimpleResponse,
    Snapshot,
    SubscribeRequest,
    Update,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)  # fmt: skip
from trader.adapters.fyers.hsm_topics import TopicBook, fy_token_parts, hsm_key, hsm_topic, scaled_paise

REQUESTS: list[Request] = [
    AuthRequest("hsmkey123", "trader-1"), AckRequest(0), AckRequest(2**32 - 1),
    SubscribeRequest(("sf|nse_fo|35001", "if|nse_cm|Nifty 50")), SubscribeRequest(("dp|nse_fo|1",), 3, True),
    ChannelRequest(frozenset({11}), pause=True), ChannelRequest(frozenset({1, 63}), pause=False),
    ModeRequest(frozenset({11}), lite=False), ModeRequest(frozenset({2, 11}), lite=True), PingRequest(),
]  # fmt: skip
SNAP = Snapshot(7, "sf|nse_fo|35001", tuple(range(1, 22)), 1, 2, "NSE", "35001", "NSE:NIFTY26D0326000CE")
RESPONSES: list[Response] = [
    AuthResponse(True, 20), AuthResponse(False), SimpleResponse(4, True), SimpleResponse(5, False),
    SimpleResponse(7, True), SimpleResponse(8, True), SimpleResponse(12, True),
    CustomMessage(51001, "symbol limit ✓", 4), CustomMessage(-1, "", 0), Ping(),
    DataFeed(9, (SNAP, Update(7, (ABSENT, 5)), LiteRecord(7, 12345),
                 Snapshot(8, "if|nse_cm|Nifty 50", (2600000, ABSENT, 1, 2, 3, 4), 1, 2, "NSE", "26000", "x"))),
    DataFeed(0, ()),
]  # fmt: skip


@pytest.mark.parametrize("request_", REQUESTS, ids=repr)
def test_requests_round_trip(request_: Request) -> None:
    frame = encode_request(request_)
    assert struct.unpack(">H", frame[:2])[0] == len(frame) - 2
    assert decode_request(frame) == request_


@pytest.mark.parametrize("response", RESPONSES, ids=repr)
def test_responses_round_trip(response: Response) -> None:
    assert decode_response(encode_response(response)) == response


def test_wire_bytes_as_the_sdk_reads_them() -> None:
    assert encode_request(PingRequest()) == bytes([0, 1, 11])
    assert encode_request(AckRequest(5)) == bytes([0, 9, 3, 1, 1, 0, 4, 0, 0, 0, 5])
    auth = encode_response(AuthResponse(True, 3))
    assert auth[7:8] == b"K" and struct.unpack(">I", auth[11:15])[0] == 3  # the SDK's __auth_resp offsets
    feed = encode_response(DataFeed(77, (Update(1, (5,)),)))
    assert feed[2] == 6 and struct.unpack(">I", feed[3:7])[0] == 77 and struct.unpack(">H", feed[7:9])[0] == 1


topic_st = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)
i32 = st.integers(-(2**31), 2**31 - 1)


@settings(max_examples=200, derandomize=True)
@given(st.lists(topic_st, min_size=1, max_size=30), st.integers(1, 63), st.booleans(), st.integers(0, 2**32 - 1),
       st.frozensets(st.integers(1, 63), min_size=1), st.booleans())
def test_random_requests_round_trip(topics: list[str], channel: int, unsub: bool, number: int,
                                    channels: frozenset[int], lite: bool) -> None:
    for request in (SubscribeRequest(tuple(topics), channel, unsub), AckRequest(number),
                    ModeRequest(channels, lite), ChannelRequest(channels, not lite), AuthRequest(topics[0])):
        assert decode_request(encode_request(request)) == request


@settings(max_examples=200, derandomize=True)
@given(st.integers(0, 0xFFFF), st.lists(i32, max_size=21), st.integers(1, 0xFFFF), st.integers(0, 8),
       st.sampled_from(["sf|nse_fo|1", "if|nse_cm|Nifty 50", "dp|bse_fo|99"]), st.integers(0, 2**32 - 1), i32,
       st.text(max_size=20))
def test_random_datafeeds_round_trip(topic_id: int, values: list[int], multiplier: int, precision: int, topic: str,
                                     number: int, ltp: int, message: str) -> None:
    values = values[:6] if topic.startswith("if") else values
    snap = Snapshot(topic_id, topic, tuple(values), multiplier, precision, "NSE", "1", "NSE:X")
    feed = DataFeed(number, (snap, Update(topic_id, tuple(values)), LiteRecord(topic_id, ltp)))
    assert decode_response(encode_response(feed)) == feed
    custom = CustomMessage(ltp, message, topic_id & 0xFF)
    assert decode_response(encode_response(custom)) == custom


@settings(max_examples=300, derandomize=True)
@given(st.sampled_from(range(len(RESPONSES))), st.data())
def test_every_truncation_or_extension_of_a_server_frame_is_refused(which: int, data: st.DataObject) -> None:
    frame = encode_response(RESPONSES[which])
    cut = data.draw(st.integers(0, len(frame) - 1))
    with pytest.raises(HsmError):
        decode_response(frame[:cut])
    with pytest.raises(HsmError):
        decode_response(frame + b"\x00")


@pytest.mark.parametrize(("frame", "words"), [
    (b"", "length"), (b"\x00\x01\x63", "unknown server frame type 99"),
    (b"\x00\x05\x04\x01\x01\x00\x01", "field 1 needs 1 bytes"),
    (encode_response(AuthResponse(True))[:-1], "length says"),
    (b"\x00\x0a\x06\x00\x00\x00\x01\x00\x01\x63\x00\x01", "unknown record type 99"),
    (encode_response(DataFeed(1, (Snapshot(1, "xx|a|1", (), 1, 2, "", "", ""),))), "kinds: sf, if, dp"),
    (encode_response(DataFeed(1, (Snapshot(1, "if|a|1", (1,) * 7, 1, 2, "", "", ""),))), "7 values"),
])  # fmt: skip
def test_garbled_server_frames_say_what_is_wrong(frame: bytes, words: str) -> None:
    with pytest.raises(HsmError, match=words):
        decode_response(frame)


@pytest.mark.parametrize(("frame", "words"), [
    (b"\x00\x01", "request type"), (b"\x00\x00\x63", "unknown request type 99"),
    (encode_request(AckRequest(1))[:-1], "field 1 needs 4 bytes"), (encode_request(AckRequest(1)) + b"x", "left over"),
    (b"\x00\x00\x0c\x02\x01\x00\x08" + bytes(8) + b"\x02\x00\x01\x46", "names no channel"),
    (b"\x00\x00\x0c\x02\x01\x00\x08" + struct.pack(">Q", 2048) + b"\x02\x00\x01\x01", "mode 1"),
    (b"\x00\x00\x04\x02\x01\x00\x02\x00\x00\x02\x00\x01\x0b", "0 topics"),
])  # fmt: skip
def test_garbled_requests_say_what_is_wrong(frame: bytes, words: str) -> None:
    with pytest.raises(HsmError, match=words):
        decode_request(frame)


def test_custom_messages_read_as_the_sdk_reads_them() -> None:
    only_text = b"\x00\x0a\x33\x02\x02\x00\x02hi\x09\x00\x00"  # field 2, and an unknown empty field 9
    assert decode_response(only_text) == CustomMessage(0, "hi", 0)
    with pytest.raises(HsmError, match="custom code is 2 bytes"):
        decode_response(b"\x00\x07\x33\x01\x01\x00\x02\x00\x01")
    with pytest.raises(HsmError, match="repeated field id 2"):
        decode_response(b"\x00\x0a\x33\x02\x02\x00\x01a\x02\x00\x01b")


def test_book_merges_snapshots_updates_and_lite_records() -> None:
    book = TopicBook()
    state, changed = book.apply(SNAP)
    assert changed and state.values["ltp"] == 1 and state.kind == "sf"
    state, changed = book.apply(Update(7, (ABSENT, ABSENT, 9)))
    assert changed and state.values["last_traded_time"] == 9 and state.values["ltp"] == 1
    assert book.apply(Update(7, (1,)))[1] is False
    assert book.apply(LiteRecord(7, 250))[0].values["ltp"] == 250
    with pytest.raises(HsmError, match="no snapshot"):
        book.apply(Update(99, (1,)))
    with pytest.raises(HsmError, match="22 values"):
        book.apply(Update(7, (1,) * 22))
    assert len(SCRIP_FIELDS) == 21 and len(INDEX_FIELDS) == 6 and len(DEPTH_FIELDS) == 30


def test_prices_scale_by_precision_and_multiplier_into_paise() -> None:
    assert scaled_paise(2612345, 2, 1) == 2612345
    assert scaled_paise(5, 0, 1) == 500
    assert scaled_paise(123450, 4, 1) == 1234  # 12.345 rupees → half to even
    assert scaled_paise(700, 2, 7) == 100
    state = TopicBook().apply(Snapshot(1, "if|nse_cm|Nifty 50", (2600005, 2590000, 17), 1, 2, "NSE", "26000", "s"))[0]
    assert state.prices() == {"ltp": 2600005, "prev_close_price": 2590000, "exch_feed_time": 17}


def test_topics_from_symbols_and_fy_tokens() -> None:
    assert fy_token_parts("101125120335001") == ("nse_fo", "35001")
    assert hsm_topic("NSE:NIFTY26D0326000CE", "101125120335001") == "sf|nse_fo|35001"
    assert hsm_topic("NSE:NIFTY26D0326000CE", "101125120335001", depth=True) == "dp|nse_fo|35001"
    assert hsm_topic("BSE:SENSEX26D0480000PE", "121125120400011") == "sf|bse_fo|00011"
    index_map = {"NSE:NIFTY50-INDEX": "Nifty 50"}
    assert hsm_topic("NSE:NIFTY50-INDEX", "101000000026000", index_map=index_map) == "if|nse_cm|Nifty 50"
    assert hsm_topic("BSE:SENSEX-INDEX", "121000000001") == "if|bse_cm|SENSEX"
    for bad in ("", "12", "9999000000123", "10110000001x"):
        with pytest.raises(HsmError):
            fy_token_parts(bad)
    with pytest.raises(HsmError, match="no market depth"):
        hsm_topic("NSE:NIFTY50-INDEX", "101000000026000", depth=True)


def _jwt(payload: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(obj)).decode().rstrip("=")
    return f"{part({'alg': 'HS256'})}.{part(payload)}.sig"


def test_hsm_key_from_the_access_token() -> None:
    token = _jwt({"hsm_key": "abc123", "exp": 4102444800})
    assert hsm_key(token) == ("abc123", 4102444800)
    assert hsm_key(f"APPID-100:{token}") == ("abc123", 4102444800)
    for bad in ("x.y", "a.!!!.c", _jwt({"exp": 1}), _jwt({"hsm_key": "", "exp": 1})):
        with pytest.raises(HsmError):
            hsm_key(bad)


def test_the_official_sdk_requests_decode(tmp_path: Path) -> None:
    """The official SDK's request builders (name-mangled privates, called unchanged) → our server-side decoder."""
    data_ws: Any = importlib.import_module("fyers_apiv3.FyersWebsocket.data_ws")
    sdk = data_ws.FyersDataSocket(access_token=_jwt({"hsm_key": "k1", "exp": 4102444800}), log_path=str(tmp_path),
                                  write_to_file=True, reconnect=False)
    try:
        assert sdk.access_token_to_hsmtoken()
        built = {
            "auth": sdk._FyersDataSocket__access_token_msg(),
            "full": sdk._FyersDataSocket__full_mode_msg(), "lite": sdk._FyersDataSocket__lite_mode_msg(),
            "sub": sdk._FyersDataSocket__subscription_msg(["sf|nse_fo|35001", "if|nse_cm|Nifty 50"]),
            "unsub": sdk._FyersDataSocket__unsubscription_msg(["sf|nse_fo|35001"]),
            "pause": sdk._FyersDataSocket__channel_pause_msg(11),
            "resume": sdk._FyersDataSocket__channel_resume_msg(12),
            "ack": sdk._FyersDataSocket__ackowledgement_msg(42),
        }
        assert decode_request(bytes(built["auth"])) == AuthRequest("k1", sdk.source, "P")
        assert decode_request(bytes(built["full"])) == ModeRequest(frozenset({11}), lite=False)
        assert decode_request(bytes(built["lite"])) == ModeRequest(frozenset({11}), lite=True)
        assert decode_request(bytes(built["sub"])) == SubscribeRequest(("sf|nse_fo|35001", "if|nse_cm|Nifty 50"), 11)
        assert decode_request(bytes(built["unsub"])) == SubscribeRequest(("sf|nse_fo|35001",), 11, unsubscribe=True)
        assert decode_request(bytes(built["pause"])) == ChannelRequest(frozenset({11}), pause=True)
        assert decode_request(bytes(built["resume"])) == ChannelRequest(frozenset({12}), pause=False)
        assert decode_request(bytes(built["ack"])) == AckRequest(42)
        assert encode_request(AckRequest(42)) == bytes(built["ack"])
        assert encode_request(AuthRequest("k1", sdk.source)) == bytes(built["auth"])
        custom = encode_response(CustomMessage(51001, "limit reached", 4))
        assert data_ws.parse_custom_message(custom) == {"code": 51001, "message": "limit reached", "ref_type": 4}
    finally:
        data_ws.FyersDataSocket._instance = None
