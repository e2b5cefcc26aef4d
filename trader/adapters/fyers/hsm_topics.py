"""Pure rules around the HSM socket: symbol → topic, the access token's hsm key, and the per-topic field book.

Topics (as the SDK's ``SymbolConversion`` builds them from the ``/data/symbol-token`` answer):

* a fyToken's first 4 digits name the exchange segment (``EXCHANGE_SEGMENTS``, the SDK's map.json ``exch_seg_dict``),
  its digits from the 11th on are the exchange token;
* scrips: ``sf|<segment>|<exchange token>``; depth: ``dp|<segment>|<exchange token>`` (indices have no depth);
* indices (symbols ending ``-INDEX``): ``if|<segment>|<name>`` with the name from the index map (Fyers publishes it as
  JSON: ``{"NSE:NIFTY50-INDEX": "Nifty 50", ...}``), else the symbol's text between ``:`` and ``-``.

The book merges a topic's snapshot (83) with its updates (85, lite 76) into current values: an update never
arrives for a topic without a snapshot in a well-behaved stream, and ``TopicBook.apply`` says so if it does.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

import orjson

from trader.adapters.fyers.hsm import ABSENT, FIELDS, PRICES, HsmError, LiteRecord, Snapshot, Update
from trader.money import MoneyError, to_paise

EXCHANGE_SEGMENTS: dict[str, str] = {
    "1010": "nse_cm", "1011": "nse_fo", "1012": "cde_fo", "1020": "nse_com", "1120": "mcx_fo", "1210": "bse_cm",
    "1211": "bse_fo", "1212": "bcs_fo",
}  # fmt: skip
# The index names of the indices we trade, as the SDK's map.json ``index_dict`` gives them (Fyers also publishes the
# whole map as JSON: https://public.fyers.in/sym_details/index_hsm_mapping.json).
INDEX_MAP: dict[str, str] = {
    "NSE:NIFTY50-INDEX": "Nifty 50", "NSE:NIFTYBANK-INDEX": "Nifty Bank", "NSE:FINNIFTY-INDEX": "Nifty Fin Service",
    "NSE:MIDCPNIFTY-INDEX": "NIFTY MID SELECT", "BSE:SENSEX-INDEX": "SENSEX", "BSE:BANKEX-INDEX": "BANKEX",
}  # fmt: skip
Kind = Literal["sf", "if", "dp"]
_KINDS: dict[str, Kind] = {"sf": "sf", "if": "if", "dp": "dp"}


def is_index(symbol: str) -> bool:
    return symbol.rsplit("-", 1)[-1] == "INDEX" and "-" in symbol


def fy_token_parts(fy_token: str) -> tuple[str, str]:
    """``"101125120312345"`` → ``("nse_fo", "12345")``; ``HsmError`` for what is not a fyToken of a known segment."""
    if not fy_token.isascii() or not fy_token.isdigit() or len(fy_token) <= 10:
        raise HsmError(f"fyToken {fy_token!r} is not more than 10 digits")
    segment = EXCHANGE_SEGMENTS.get(fy_token[:4])
    if segment is None:
        raise HsmError(f"fyToken {fy_token!r}: unknown exchange segment {fy_token[:4]}")
    return segment, fy_token[10:]


def hsm_topic(symbol: str, fy_token: str, *, depth: bool = False, index_map: Mapping[str, str] | None = None) -> str:
    """The HSM topic for ``symbol`` (``NSE:NIFTY50-INDEX``, ``NSE:NIFTY26D0326000CE``) whose fyToken is given."""
    segment, exchange_token = fy_token_parts(fy_token)
    if is_index(symbol):
        if depth:
            raise HsmError(f"{symbol}: an index has no market depth")
        name = (index_map or {}).get(symbol) or symbol.partition(":")[2].rsplit("-", 1)[0]
        if not name or "|" in name:
            raise HsmError(f"{symbol}: no index name for its topic")
        return f"if|{segment}|{name}"
    return f"{'dp' if depth else 'sf'}|{segment}|{exchange_token}"


def hsm_key(access_token: str) -> tuple[str, int]:
    """The ``hsm_key`` and ``exp`` (epoch seconds) in an access token's JWT payload (``app_id:`` prefix allowed)."""
    jwt = access_token.rpartition(":")[2]
    parts = jwt.split(".")
    if len(parts) != 3:
        raise HsmError("the access token is not a JWT (three dot-separated parts)")
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        raise HsmError("the access token's JWT payload is not base64 JSON") from None
    key, exp = payload.get("hsm_key") if isinstance(payload, dict) else None, payload.get("exp", 0)
    if not isinstance(key, str) or not key or not isinstance(exp, int):
        raise HsmError("the access token's JWT payload has no hsm_key (or a non-integer exp)")
    return key, exp


def scaled_paise(value: int, precision: int, multiplier: int) -> int:
    """A wire price (``value / (10**precision * multiplier)`` rupees) in paise, through ``trader.money``."""
    try:
        return to_paise(Decimal(value).scaleb(-precision) / multiplier)
    except (MoneyError, ArithmeticError) as exc:
        raise HsmError(f"price {value} (precision {precision}, multiplier {multiplier}): {exc}") from None


@dataclass(slots=True)
class TopicState:
    topic: str
    kind: Kind
    values: dict[str, int]
    multiplier: int
    precision: int
    symbol: str

    def price(self, name: str) -> int:
        """A price field in paise (0 when absent)."""
        raw = self.values.get(name)
        return 0 if raw is None else scaled_paise(raw, self.precision, self.multiplier)

    def prices(self) -> dict[str, int]:
        """Every present field, prices in paise, the rest as sent."""
        scaled = PRICES[self.kind]
        return {k: self.price(k) if k in scaled else v for k, v in self.values.items()}


@dataclass(slots=True)
class TopicBook:
    """topic id → the topic's current values, built from snapshots and updates."""

    topics: dict[int, TopicState] = field(default_factory=dict)
    by_name: dict[str, TopicState] = field(default_factory=dict)

    def apply(self, record: Snapshot | Update | LiteRecord) -> tuple[TopicState, bool]:
        """Take one record; returns the topic's state and whether any value changed."""
        if isinstance(record, Snapshot):
            kind = _KINDS.get(record.topic[:2])
            if kind is None:
                raise HsmError(f"snapshot of {record.topic!r}: unknown topic kind")
            names = FIELDS[kind]
            state = TopicState(record.topic, kind, {n: v for n, v in zip(names, record.values, strict=False)
                                                    if v != ABSENT}, record.multiplier, record.precision,
                               record.symbol)
            self.topics[record.topic_id] = state
            self.by_name[record.topic] = state
            return state, True
        state_or_none = self.topics.get(record.topic_id)
        if state_or_none is None:
            raise HsmError(f"update for topic id {record.topic_id}, which had no snapshot")
        state = state_or_none
        if isinstance(record, LiteRecord):
            changed = record.ltp != ABSENT and state.values.get("ltp") != record.ltp
            if changed:
                state.values["ltp"] = record.ltp
            return state, changed
        names = FIELDS[state.kind]
        if len(record.values) > len(names):
            raise HsmError(f"update for {state.topic!r} with {len(record.values)} values; it has {len(names)}")
        changed = False
        for name, value in zip(names, record.values, strict=False):
            if value != ABSENT and state.values.get(name) != value:
                state.values[name] = value
                changed = True
        return state, changed
