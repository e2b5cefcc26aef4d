"""Fyers' HSM market-data protocol (the binary WebSocket ``fyers_apiv3.FyersWebsocket.data_ws`` speaks), both ways.

Pure: bytes in, dataclasses out and back, no I/O. Our client (``ticker.py``) and the simulator's face
(``trader/sim/fyers/data_socket.py``) both use it. Every message is ``[u16 length][u8 type]...``, big-endian.

Client requests (type, then a field count and fields ``[u8 id][u16 size][value]``):

====  ===============  ====================================================================================
1     auth             1: the hsm token (the access token's JWT ``hsm_key``), 2: mode ``"P"``, 3: u8 1, 4: source
3     acknowledgement  1: u32 number of the last datafeed frame taken
4/5   (un)subscribe    1: u16 count + count x (u8 size, ascii topic), 2: u8 channel
7/8   channel pause/   1: u64 channel bit mask (bit n = channel n, 0 < n < 64)
      resume
12    mode             1: u64 channel bit mask, 2: u8 76 (lite) or 70 (full)
11    ping             no fields (``00 01 0b``)
====  ===============  ====================================================================================

The SDK writes 0 in the length of mode and channel requests and an over-count in (un)subscribe ones, so the server
cannot rely on it: ``decode_request`` ignores it and checks the fields fill the frame exactly. ``encode_request`` writes
the true length. The message types and field lists live in ``hsm_messages.py`` and are re-exported here.

Server frames: responses 1/4/5/7/8/12 carry a status field whose value is ``"K"`` on success (auth adds a u32 field:
how many datafeed frames between acknowledgements, 0 = none); 51 is a custom message (1: i32 code, 2: utf-8 text,
3: u8 type of the request it answers); 6 is a datafeed: ``[u32 frame number][u16 record count]`` then records:

* 83 snapshot: u16 topic id, u8-sized topic name (``sf|nse_fo|12345``), u8 n + n x i32 values, 2 bytes (unknown, 0),
  u16 multiplier, u8 precision, then exchange, exchange token and symbol as u8-sized strings;
* 85 update: u16 topic id, u8 n + n x i32 values (``i32 min`` = unchanged/absent);
* 76 lite: u16 topic id, i32 ltp.

Values are integers; prices divide by ``10**precision * multiplier`` to give rupees (``trader.money`` turns them into
paise). Field order per topic kind is ``SCRIP_FIELDS``/``INDEX_FIELDS``/``DEPTH_FIELDS`` (the SDK's map.json lists).
Anything short, garbled or left over raises ``HsmError`` naming what is wrong: never a half message.
"""

from __future__ import annotations

from struct import Struct

from trader.adapters.fyers.hsm_messages import (
    ABSENT,
    DEPTH_FIELDS,
    DEPTH_PRICES,
    FAILED,
    FIELDS,
    INDEX_FIELDS,
    INDEX_PRICES,
    LITE,
    MODE_FULL,
    MODE_LITE,
    OK,
    PRICES,
    REQ_ACK,
    REQ_AUTH,
    REQ_MODE,
    REQ_PAUSE,
    REQ_PING,
    REQ_RESUME,
    REQ_SUBSCRIBE,
    REQ_UNSUBSCRIBE,
    RESP_CUSTOM,
    RESP_DATAFEED,
    SCRIP_FIELDS,
    SCRIP_PRICES,
    SIMPLE_RESPONSES,
    SNAPSHOT,
    UPDATE,
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
)

__all__ = [
    "ABSENT", "DEPTH_FIELDS", "DEPTH_PRICES", "FAILED", "FIELDS", "INDEX_FIELDS", "INDEX_PRICES", "LITE",
    "MODE_FULL", "MODE_LITE", "OK", "PRICES", "REQ_ACK", "REQ_AUTH", "REQ_MODE", "REQ_PAUSE", "REQ_PING",
    "REQ_RESUME", "REQ_SUBSCRIBE", "REQ_UNSUBSCRIBE", "RESP_CUSTOM", "RESP_DATAFEED", "SCRIP_FIELDS",
    "SCRIP_PRICES", "SIMPLE_RESPONSES", "SNAPSHOT", "UPDATE", "AckRequest", "AuthRequest", "AuthResponse",
    "ChannelRequest", "CustomMessage", "DataFeed", "HsmError", "LiteRecord", "ModeRequest", "Ping", "PingRequest",
    "Request", "Response", "SimpleResponse", "Snapshot", "SubscribeRequest", "Update", "decode_request",
    "decode_response", "encode_request", "encode_response",
]  # fmt: skip

_U8, _U16, _U32, _I32, _U64 = Struct(">B"), Struct(">H"), Struct(">I"), Struct(">i"), Struct(">Q")


# -- writing ----------------------------------------------------------------------------------------------------
def _ascii(text: str, what: str, limit: int = 255) -> bytes:
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise HsmError(f"{what} {text!r} is not ASCII") from None
    if len(raw) > limit:
        raise HsmError(f"{what} is {len(raw)} bytes; at most {limit} fit")
    return raw


def _field(field_id: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise HsmError(f"field {field_id} is {len(value)} bytes; at most 65535 fit")
    return _U8.pack(field_id) + _U16.pack(len(value)) + value


def _message(kind: int, *fields: bytes) -> bytes:
    body = _U8.pack(kind) + _U8.pack(len(fields)) + b"".join(fields)
    if len(body) > 0xFFFF:
        raise HsmError(f"a message of {len(body)} bytes does not fit the u16 length")
    return _U16.pack(len(body)) + body


def _mask(channels: frozenset[int]) -> bytes:
    if not channels or any(not 0 < c < 64 for c in channels):
        raise HsmError(f"channels {sorted(channels)} must be non-empty, each between 1 and 63")
    return _U64.pack(sum(1 << c for c in channels))


def encode_request(request: Request) -> bytes:
    match request:
        case AuthRequest(hsm_token, source, mode):
            return _message(REQ_AUTH, _field(1, _ascii(hsm_token, "hsm token", 0xFFFF)),
                            _field(2, _ascii(mode, "mode")), _field(3, b"\x01"),
                            _field(4, _ascii(source, "source", 0xFFFF)))
        case AckRequest(number):
            if not 0 <= number < 2**32:
                raise HsmError(f"message number {number} is not a u32")
            return _message(REQ_ACK, _field(1, _U32.pack(number)))
        case SubscribeRequest(topics, channel, unsubscribe):
            if not topics or len(topics) > 0xFFFF:
                raise HsmError(f"{len(topics)} topics: between 1 and 65535 fit in one request")
            if not 0 < channel < 64:
                raise HsmError(f"channel {channel} is not between 1 and 63")
            names = [_ascii(t, "topic") for t in topics]
            scrips = _U16.pack(len(names)) + b"".join(_U8.pack(len(n)) + n for n in names)
            return _message(REQ_UNSUBSCRIBE if unsubscribe else REQ_SUBSCRIBE, _field(1, scrips),
                            _field(2, _U8.pack(channel)))
        case ChannelRequest(channels, pause):
            return _message(REQ_PAUSE if pause else REQ_RESUME, _field(1, _mask(channels)))
        case ModeRequest(channels, lite):
            return _message(REQ_MODE, _field(1, _mask(channels)), _field(2, _U8.pack(MODE_LITE if lite else MODE_FULL)))
        case PingRequest():
            return _U16.pack(1) + _U8.pack(REQ_PING)
    raise HsmError(f"not a request: {request!r}")


def _i32(value: int) -> bytes:
    if not ABSENT <= value < 2**31:
        raise HsmError(f"value {value} is not an i32")
    return _I32.pack(value)


def _record(record: Snapshot | Update | LiteRecord) -> bytes:
    if not 0 <= record.topic_id <= 0xFFFF:
        raise HsmError(f"topic id {record.topic_id} is not a u16")
    head = _U16.pack(record.topic_id)
    if isinstance(record, LiteRecord):
        return _U8.pack(LITE) + head + _i32(record.ltp)
    if len(record.values) > 255:
        raise HsmError(f"{len(record.values)} values: at most 255 fit in a record")
    values = _U8.pack(len(record.values)) + b"".join(_i32(v) for v in record.values)
    if isinstance(record, Update):
        return _U8.pack(UPDATE) + head + values
    if not 0 < record.multiplier <= 0xFFFF or not 0 <= record.precision <= 255:
        raise HsmError(f"multiplier {record.multiplier} / precision {record.precision} out of range")
    topic = _ascii(record.topic, "topic")
    strings = b"".join(_U8.pack(len(s)) + s for s in (
        _ascii(record.exchange, "exchange"), _ascii(record.exchange_token, "exchange token"),
        _ascii(record.symbol, "symbol")))
    return (_U8.pack(SNAPSHOT) + head + _U8.pack(len(topic)) + topic + values + b"\x00\x00"
            + _U16.pack(record.multiplier) + _U8.pack(record.precision) + strings)


def encode_response(response: Response) -> bytes:
    match response:
        case AuthResponse(ok, ack_every):
            if not 0 <= ack_every < 2**32:
                raise HsmError(f"ack count {ack_every} is not a u32")
            return _message(REQ_AUTH, _field(1, (OK if ok else FAILED).encode()), _field(2, _U32.pack(ack_every)))
        case SimpleResponse(kind, ok):
            if kind not in SIMPLE_RESPONSES:
                raise HsmError(f"response type {kind} is not a simple response")
            return _message(kind, _field(1, (OK if ok else FAILED).encode()))
        case CustomMessage(code, message, ref_type):
            if not 0 <= ref_type <= 255:
                raise HsmError(f"ref type {ref_type} is not a u8")
            return _message(RESP_CUSTOM, _field(1, _i32(code)), _field(2, message.encode()),
                            _field(3, _U8.pack(ref_type)))
        case DataFeed(number, records):
            if not 0 <= number < 2**32 or len(records) > 0xFFFF:
                raise HsmError(f"frame number {number} / {len(records)} records out of range")
            body = (_U8.pack(RESP_DATAFEED) + _U32.pack(number) + _U16.pack(len(records))
                    + b"".join(_record(r) for r in records))
            if len(body) > 0xFFFF:
                raise HsmError(f"a datafeed of {len(body)} bytes does not fit the u16 length")
            return _U16.pack(len(body)) + body
        case Ping():
            return _U16.pack(1) + _U8.pack(REQ_PING)
    raise HsmError(f"not a response: {response!r}")


# -- reading ----------------------------------------------------------------------------------------------------
class _Reader:
    def __init__(self, data: bytes | bytearray | memoryview, what: str) -> None:
        self.data = bytes(data)
        self.at = 0
        self.what = what

    def take(self, size: int, name: str) -> bytes:
        if self.at + size > len(self.data):
            raise HsmError(f"{self.what}: {name} needs {size} bytes at offset {self.at}, "
                           f"the frame has {len(self.data) - self.at} left")
        out = self.data[self.at:self.at + size]
        self.at += size
        return out

    def num(self, fmt: Struct, name: str) -> int:
        value: int = fmt.unpack(self.take(fmt.size, name))[0]  # take() checked the size
        return value

    def text(self, name: str, size: int | None = None) -> str:
        raw = self.take(self.num(_U8, f"{name} size") if size is None else size, name)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HsmError(f"{self.what}: {name} is not UTF-8: {raw[:40]!r}") from None

    def fields(self, expected: tuple[int, ...], *, others: bool = False) -> dict[int, bytes]:
        """Exactly the ``expected`` fields; with ``others``, any fields at all (each one's size still checked)."""
        count = self.num(_U8, "field count")
        if count != len(expected) and not others:
            raise HsmError(f"{self.what}: {count} fields, expected {len(expected)}")
        out: dict[int, bytes] = {}
        for _ in range(count):
            field_id = self.num(_U8, "field id")
            if (field_id not in expected and not others) or field_id in out:
                raise HsmError(f"{self.what}: unexpected or repeated field id {field_id}")
            out[field_id] = self.take(self.num(_U16, f"field {field_id} size"), f"field {field_id}")
        return out

    def end(self) -> None:
        if self.at != len(self.data):
            raise HsmError(f"{self.what}: {len(self.data) - self.at} bytes left over after offset {self.at}")


def _sized(raw: bytes, size: int, what: str, fmt: Struct) -> int:
    if len(raw) != size:
        raise HsmError(f"{what} is {len(raw)} bytes, expected {size}")
    value: int = fmt.unpack(raw)[0]
    return value


def _ascii_of(raw: bytes, what: str) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise HsmError(f"{what} is not ASCII: {raw[:40]!r}") from None


def _channels(raw: bytes, what: str) -> frozenset[int]:
    mask = _sized(raw, 8, what, _U64)
    channels = frozenset(c for c in range(1, 64) if mask >> c & 1)
    if not channels or mask & 1:
        raise HsmError(f"{what} {mask:#x} names no channel between 1 and 63")
    return channels


def decode_request(frame: bytes | bytearray | memoryview) -> Request:
    """A client's request, as the server reads it (the length prefix is not trusted: see the module text)."""
    r = _Reader(frame, "request")
    r.take(2, "length")
    kind = r.num(_U8, "request type")
    request: Request
    if kind == REQ_PING:
        request = PingRequest()
    elif kind == REQ_AUTH:
        f = r.fields((1, 2, 3, 4))
        if f[3] != b"\x01":
            raise HsmError(f"auth field 3 is {f[3]!r}, expected b'\\x01'")
        request = AuthRequest(_ascii_of(f[1], "hsm token"), _ascii_of(f[4], "source"), _ascii_of(f[2], "mode"))
        if not request.hsm_token:
            raise HsmError("auth request without an hsm token")
    elif kind == REQ_ACK:
        request = AckRequest(_sized(r.fields((1,))[1], 4, "ack message number", _U32))
    elif kind in (REQ_SUBSCRIBE, REQ_UNSUBSCRIBE):
        f = r.fields((1, 2))
        channel = _sized(f[2], 1, "channel", _U8)
        scrips = _Reader(f[1], "topic list")
        topics = tuple(_ascii_of(scrips.take(scrips.num(_U8, "topic size"), "topic"), "topic")
                       for _ in range(scrips.num(_U16, "topic count")))
        scrips.end()
        if not topics or not 0 < channel < 64:
            raise HsmError(f"subscription with {len(topics)} topics on channel {channel}")
        request = SubscribeRequest(topics, channel, unsubscribe=kind == REQ_UNSUBSCRIBE)
    elif kind in (REQ_PAUSE, REQ_RESUME):
        request = ChannelRequest(_channels(r.fields((1,))[1], "channel mask"), pause=kind == REQ_PAUSE)
    elif kind == REQ_MODE:
        f = r.fields((1, 2))
        mode = _sized(f[2], 1, "mode", _U8)
        if mode not in (MODE_LITE, MODE_FULL):
            raise HsmError(f"mode {mode} is neither {MODE_LITE} (lite) nor {MODE_FULL} (full)")
        request = ModeRequest(_channels(f[1], "channel mask"), lite=mode == MODE_LITE)
    else:
        raise HsmError(f"unknown request type {kind}")
    r.end()
    return request


def _status(raw: bytes) -> bool:
    if not raw:
        raise HsmError("empty status field")
    return raw == OK.encode()


def _read_record(r: _Reader) -> Snapshot | Update | LiteRecord:
    kind = r.num(_U8, "record type")
    if kind not in (SNAPSHOT, UPDATE, LITE):
        raise HsmError(f"datafeed: unknown record type {kind}")
    topic_id = r.num(_U16, "topic id")
    if kind == LITE:
        return LiteRecord(topic_id, r.num(_I32, "ltp"))
    topic = r.text("topic") if kind == SNAPSHOT else ""
    values = tuple(r.num(_I32, "value") for _ in range(r.num(_U8, "value count")))
    if kind == UPDATE:
        return Update(topic_id, values)
    limit = FIELDS.get(topic[:2])
    if limit is None or len(values) > len(limit):
        raise HsmError(f"datafeed: snapshot of {topic!r} with {len(values)} values (kinds: sf, if, dp)")
    r.take(2, "snapshot reserved bytes")
    multiplier, precision = r.num(_U16, "multiplier"), r.num(_U8, "precision")
    if multiplier == 0:
        raise HsmError(f"datafeed: snapshot of {topic!r} with multiplier 0")
    return Snapshot(topic_id, topic, values, multiplier, precision, r.text("exchange"), r.text("exchange token"),
                    r.text("symbol"))


def decode_response(frame: bytes | bytearray | memoryview) -> Response:
    """A server frame, as the client reads it; its length prefix must match the frame."""
    r = _Reader(frame, "server frame")
    length = r.num(_U16, "length")
    if length != len(r.data) - 2:
        raise HsmError(f"server frame: length says {length} bytes, {len(r.data) - 2} follow")
    kind = r.num(_U8, "response type")
    response: Response
    if kind == REQ_PING:
        response = Ping()
    elif kind == RESP_DATAFEED:
        r.what = "datafeed"
        number = r.num(_U32, "frame number")
        response = DataFeed(number, tuple(_read_record(r) for _ in range(r.num(_U16, "record count"))))
    elif kind == REQ_AUTH:
        r.what = "auth response"
        f = r.fields((1, 2))
        response = AuthResponse(_status(f[1]), _sized(f[2], 4, "ack count", _U32))
    elif kind in SIMPLE_RESPONSES:
        r.what = f"response {kind}"
        response = SimpleResponse(kind, _status(r.fields((1,))[1]))
    elif kind == RESP_CUSTOM:
        r.what = "custom message"
        f = r.fields((1, 2, 3), others=True)  # as the SDK reads it: fields may be missing, unknown ones are skipped
        try:
            text = f.get(2, b"").decode("utf-8")
        except UnicodeDecodeError:
            raise HsmError(f"custom message text is not UTF-8: {f[2][:40]!r}") from None
        code = _sized(f[1], 4, "custom code", _I32) if 1 in f else 0
        response = CustomMessage(code, text, _sized(f[3], 1, "ref type", _U8) if 3 in f else 0)
    else:
        raise HsmError(f"unknown server frame type {kind}")
    r.end()
    return response
