"""Reading and writing strategy state documents: checked field readers and the contract format.

A saved document comes back from the journal after a restart, possibly from an older run, another day, or a file
someone edited. It is never trusted: every field is read through ``DocReader``, which raises ``ValueError`` naming
the field (``position.stop_price: expected an integer, got '7000'``) instead of guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from trader.market.instruments import OptionContract, OptionType

STATE_PREFIX = "strategy:"


def state_name(strategy_id: str) -> str:
    """The journal's name for a strategy's document."""
    return f"{STATE_PREFIX}{strategy_id}"


def contract_doc(contract: OptionContract) -> dict[str, object]:
    return {
        "exchange": contract.exchange,
        "tradingsymbol": contract.tradingsymbol,
        "underlying": contract.underlying,
        "expiry": contract.expiry.isoformat(),
        "strike": contract.strike,
        "option_type": contract.option_type.value,
        "lot_size": contract.lot_size,
        "tick_size": contract.tick_size,
        "instrument_token": contract.instrument_token,
    }


def same_contract(a: OptionContract, b: OptionContract) -> bool:
    """The same instrument: by token when both are known, else by exchange and tradingsymbol."""
    if a.instrument_token and b.instrument_token:
        return a.instrument_token == b.instrument_token
    return (a.exchange, a.tradingsymbol) == (b.exchange, b.tradingsymbol)


class DocReader:
    """Checked access to one mapping of a state document; ``where`` prefixes the field names in errors."""

    def __init__(self, doc: object, where: str = "") -> None:
        if not isinstance(doc, Mapping):
            raise ValueError(f"{where or 'document'}: expected an object, got {type(doc).__name__}")
        self._doc = doc
        self._where = where

    def name(self, key: str) -> str:
        return f"{self._where}.{key}" if self._where else key

    def raw(self, key: str) -> object:
        if key not in self._doc:
            raise ValueError(f"{self.name(key)}: missing")
        return self._doc[key]

    def integer(self, key: str, *, minimum: int | None = None) -> int:
        value = self.raw(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{self.name(key)}: expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise ValueError(f"{self.name(key)}: must be >= {minimum}, got {value}")
        return value

    def text(self, key: str, *, choices: tuple[str, ...] | None = None) -> str:
        value = self.raw(key)
        if not isinstance(value, str):
            raise ValueError(f"{self.name(key)}: expected a string, got {value!r}")
        if choices is not None and value not in choices:
            raise ValueError(f"{self.name(key)}: expected one of {', '.join(choices)}, got {value!r}")
        return value

    def child(self, key: str) -> DocReader:
        return DocReader(self.raw(key), self.name(key))

    def optional_child(self, key: str) -> DocReader | None:
        return None if self.raw(key) is None else self.child(key)

    def items(self, key: str) -> list[DocReader]:
        value = self.raw(key)
        if not isinstance(value, list):
            raise ValueError(f"{self.name(key)}: expected a list, got {type(value).__name__}")
        return [DocReader(item, f"{self.name(key)}[{i}]") for i, item in enumerate(value)]

    def contract(self, key: str) -> OptionContract:
        reader = self.child(key)
        expiry_text = reader.text("expiry")
        try:
            expiry = date.fromisoformat(expiry_text)
        except ValueError:
            raise ValueError(f"{reader.name('expiry')}: expected an ISO date, got {expiry_text!r}") from None
        option_type = OptionType(reader.text("option_type", choices=tuple(t.value for t in OptionType)))
        exchange, tradingsymbol, underlying = (reader.text("exchange"), reader.text("tradingsymbol"),
                                               reader.text("underlying"))
        strike, lot_size, tick_size = reader.integer("strike"), reader.integer("lot_size"), reader.integer("tick_size")
        token = reader.integer("instrument_token", minimum=0)
        try:
            return OptionContract(exchange, tradingsymbol, underlying, expiry, strike, option_type, lot_size,
                                  tick_size, token)
        except ValueError as exc:  # the contract's own checks (exchange, strike, lot and tick sizes)
            raise ValueError(f"{self.name(key)}: {exc}") from None

    def header(self, strategy_id: str, version: int) -> None:
        """Every document starts with its format version and the strategy it belongs to."""
        found = self.integer("version")
        if found != version:
            raise ValueError(f"{self.name('version')}: this build reads version {version}, got {found}; move the "
                             "journal aside or run the build that wrote it")
        owner = self.text("strategy_id")
        if owner != strategy_id:
            raise ValueError(f"{self.name('strategy_id')}: the document belongs to {owner!r}, not {strategy_id!r}")
