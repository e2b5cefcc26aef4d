"""The HSM protocol's vocabulary: message types, field lists and the messages as dataclasses (``hsm.py`` has the
wire layout and the codec; it re-exports all of this)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


class HsmError(ValueError):
    """A frame that is not a well-formed HSM message; the text says what is wrong."""


ABSENT: Final = -(2**31)  # i32 min: "no value" in snapshots, "unchanged" in updates
OK: Final = "K"
FAILED: Final = "E"  # any status other than "K" is a failure to the SDK; the real server's text is unconfirmed

SCRIP_FIELDS: Final = (
    "ltp", "vol_traded_today", "last_traded_time", "exch_feed_time", "bid_size", "ask_size", "bid_price", "ask_price",
    "last_traded_qty", "tot_buy_qty", "tot_sell_qty", "avg_trade_price", "OI", "low_price", "high_price", "Yhigh",
    "Ylow", "lower_ckt", "upper_ckt", "open_price", "prev_close_price",
)  # fmt: skip
SCRIP_PRICES: Final = frozenset({"ltp", "bid_price", "ask_price", "avg_trade_price", "low_price", "high_price",
                                 "open_price", "prev_close_price"})
INDEX_FIELDS: Final = ("ltp", "prev_close_price", "exch_feed_time", "high_price", "low_price", "open_price")
INDEX_PRICES: Final = frozenset({"ltp", "prev_close_price", "high_price", "low_price", "open_price"})
DEPTH_FIELDS: Final = tuple(
    f"{name}{level}" for name in ("bid_price", "ask_price", "bid_size", "ask_size", "bid_order", "ask_order")
    for level in range(1, 6))
DEPTH_PRICES: Final = frozenset(DEPTH_FIELDS[:10])
FIELDS: Final = {"sf": SCRIP_FIELDS, "if": INDEX_FIELDS, "dp": DEPTH_FIELDS}
PRICES: Final = {"sf": SCRIP_PRICES, "if": INDEX_PRICES, "dp": DEPTH_PRICES}

REQ_AUTH, REQ_ACK, REQ_SUBSCRIBE, REQ_UNSUBSCRIBE, REQ_PAUSE, REQ_RESUME, REQ_PING, REQ_MODE = 1, 3, 4, 5, 7, 8, 11, 12
RESP_DATAFEED, RESP_CUSTOM = 6, 51
SNAPSHOT, UPDATE, LITE = 83, 85, 76
MODE_LITE, MODE_FULL = 76, 70
SIMPLE_RESPONSES: Final = frozenset({REQ_SUBSCRIBE, REQ_UNSUBSCRIBE, REQ_PAUSE, REQ_RESUME, REQ_MODE})



# -- messages ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AuthRequest:
    hsm_token: str
    source: str = "trader"
    mode: str = "P"


@dataclass(frozen=True, slots=True)
class AckRequest:
    message_number: int


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    topics: tuple[str, ...]
    channel: int = 11
    unsubscribe: bool = False


@dataclass(frozen=True, slots=True)
class ChannelRequest:
    channels: frozenset[int]
    pause: bool  # False: resume


@dataclass(frozen=True, slots=True)
class ModeRequest:
    channels: frozenset[int]
    lite: bool


@dataclass(frozen=True, slots=True)
class PingRequest:
    pass


Request = AuthRequest | AckRequest | SubscribeRequest | ChannelRequest | ModeRequest | PingRequest


@dataclass(frozen=True, slots=True)
class AuthResponse:
    ok: bool
    ack_every: int = 0  # datafeed frames per acknowledgement; 0: never acknowledge


@dataclass(frozen=True, slots=True)
class SimpleResponse:
    """The answer to a (un)subscribe (4/5), channel pause/resume (7/8) or mode (12) request."""

    kind: int
    ok: bool


@dataclass(frozen=True, slots=True)
class CustomMessage:
    code: int
    message: str
    ref_type: int = 0  # the request type it answers (0: none)


@dataclass(frozen=True, slots=True)
class Snapshot:
    topic_id: int
    topic: str
    values: tuple[int, ...]  # ABSENT where the server has no value
    multiplier: int
    precision: int
    exchange: str
    exchange_token: str
    symbol: str


@dataclass(frozen=True, slots=True)
class Update:
    topic_id: int
    values: tuple[int, ...]  # ABSENT where unchanged


@dataclass(frozen=True, slots=True)
class LiteRecord:
    topic_id: int
    ltp: int


@dataclass(frozen=True, slots=True)
class DataFeed:
    message_number: int
    records: tuple[Snapshot | Update | LiteRecord, ...]


@dataclass(frozen=True, slots=True)
class Ping:
    """A 3-byte ``00 01 0b`` frame from the server (whether the real one sends any is unconfirmed)."""


Response = AuthResponse | SimpleResponse | CustomMessage | DataFeed | Ping
