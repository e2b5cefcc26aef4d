"""Ids unique across restarts and valid as order tags: Kite's ``tag``, Fyers' ``orderTag`` (1-20 alphanumerics)."""

from __future__ import annotations

import re

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TAG = re.compile(r"^[A-Za-z0-9]{1,20}$")


def base36(value: int, width: int) -> str:
    digits = []
    for _ in range(width):
        value, remainder = divmod(value, 36)
        digits.append(_ALPHABET[remainder])
    return "".join(reversed(digits))


def is_valid_tag(tag: str) -> bool:
    return bool(_TAG.match(tag))


class IdFactory:
    """``<kind><run><counter>``: the run part comes from the start time, so a restart never reuses an id."""

    def __init__(self, start_ns: int) -> None:
        # Milliseconds since the epoch, modulo 36^7 (≈ 2.5 years): two runs collide only if started in the same
        # millisecond, and broker tags are only looked up within a trading day.
        self._run = base36(start_ns // 1_000_000, 7)
        self._counter = 0

    def next(self, kind: str) -> str:
        if not (kind.isalnum() and len(kind) <= 3):
            raise ValueError(f"id kind must be 1-3 alphanumerics, got {kind!r}")
        self._counter += 1
        return f"{kind}{self._run}{self._counter:08d}"


_OWN_ID = re.compile(r"^[A-Za-z0-9]{1,3}[0-9A-Z]{7}[0-9]{8}$")


def is_own_id(tag: str) -> bool:
    """True if ``tag`` has the shape of an id this daemon makes (a hand-placed order has no tag, or another)."""
    return bool(_OWN_ID.match(tag))


# Fyers' ``orderTag`` (API v3 place-order field): letters and digits only, at most 30 characters (Fyers' docs; the
# length is not checked by the official SDK). Our tags (1-20 alphanumerics, ``is_valid_tag``) fit unchanged, so the
# mapping is the identity: one key, the same on both venues.
_FYERS_REPORTED_TAG = re.compile(r"^[0-9]+:(?P<tag>.*)$")


def fyers_order_tag(tag: str) -> str:
    """Our order tag as Fyers' ``orderTag`` (the same string); a tag we would never make is refused."""
    if not is_valid_tag(tag):
        raise ValueError(f"order tag must be 1-20 ASCII letters/digits (our idempotency key), got {tag!r}")
    return tag


def tag_from_fyers(reported: object) -> str:
    """The tag in a Fyers report's ``orderTag``. Fyers' order book may show it as ``"<n>:<tag>"`` (e.g.
    ``"1:Untagged"`` for an order placed without one); the prefix is dropped and "Untagged" is no tag."""
    if not isinstance(reported, str):
        return ""
    text = reported.strip()
    match = _FYERS_REPORTED_TAG.match(text)
    if match:
        text = match.group("tag")
    return "" if text == "Untagged" else text
