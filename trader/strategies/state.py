"""Strategy state documents: their journal names, the check every document starts with, and contract identity.

A saved document comes back from the journal after a restart, possibly from an older run, another day, or a file
someone edited. It is never trusted: every field is read through ``DocReader`` (``trader/store/codec.py``, the one
checked-field reader), which raises ``ValueError`` naming the field (``position.stop_price: expected an integer, got
'7000'``) instead of guessing.
"""

from __future__ import annotations

from trader.market.instruments import OptionContract
from trader.store.codec import DocReader

STATE_PREFIX = "strategy:"


def state_name(strategy_id: str) -> str:
    """The journal's name for a strategy's document."""
    return f"{STATE_PREFIX}{strategy_id}"


def same_contract(a: OptionContract, b: OptionContract) -> bool:
    """The same instrument: by token when both are known, else by exchange and tradingsymbol."""
    if a.instrument_token and b.instrument_token:
        return a.instrument_token == b.instrument_token
    return (a.exchange, a.tradingsymbol) == (b.exchange, b.tradingsymbol)


def check_header(doc: DocReader, strategy_id: str, version: int) -> None:
    """Every document starts with its format version and the strategy it belongs to."""
    found = doc.integer("version")
    if found != version:
        raise ValueError(f"{doc.name('version')}: this build reads version {version}, got {found}; move the "
                         "journal aside or run the build that wrote it")
    owner = doc.text("strategy_id")
    if owner != strategy_id:
        raise ValueError(f"{doc.name('strategy_id')}: the document belongs to {owner!r}, not {strategy_id!r}")
