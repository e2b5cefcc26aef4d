"""Events and contracts as JSON-able data, and back with every field checked: the one codec for what the journal
keeps (intents, fills, positions in saved states). Money stays integer paise, times integer ns, dates ISO text.

A document that does not decode raises ``ValueError`` naming the field; nothing is half-read.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import TypeVar

from trader.events import Fill, IntentPurpose, OrderIntent, OrderType, Side
from trader.market.instruments import OptionContract, OptionType

_T = TypeVar("_T")


def typed(data: Mapping[str, object], key: str, kind: type[_T], where: str) -> _T:
    value = data.get(key)
    # bool is an int subclass: a flag must not pass for a number, nor a number for a flag.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{where}: {key!r} must be {kind.__name__}, got {value!r}")
    return value


def number(data: Mapping[str, object], key: str, where: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: {key!r} must be a number, got {value!r}")
    return float(value)


def mapping(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be an object, got {value!r}")
    return value


def contract_to_dict(contract: OptionContract) -> dict[str, object]:
    return {
        "exchange": contract.exchange, "tradingsymbol": contract.tradingsymbol,
        "underlying": contract.underlying, "expiry": contract.expiry.isoformat(), "strike": contract.strike,
        "option_type": contract.option_type.value, "lot_size": contract.lot_size,
        "tick_size": contract.tick_size, "instrument_token": contract.instrument_token,
    }


def contract_from_dict(data: object, where: str = "contract", *, minimum_token: int | None = None) -> OptionContract:
    """``minimum_token``: the risk book keys contracts unknown to the instrument master by negative local tokens;
    other documents may require a real (or unknown, 0) token."""
    reader = DocReader(data, where)
    expiry_text = reader.text("expiry")
    try:
        expiry = date.fromisoformat(expiry_text)
    except ValueError:
        raise ValueError(f"{reader.name('expiry')}: expected an ISO date, got {expiry_text!r}") from None
    option_type = OptionType(reader.text("option_type", choices=tuple(t.value for t in OptionType)))
    exchange, tradingsymbol, underlying = (reader.text("exchange"), reader.text("tradingsymbol"),
                                           reader.text("underlying"))
    strike, lot_size, tick_size = reader.integer("strike"), reader.integer("lot_size"), reader.integer("tick_size")
    token = reader.integer("instrument_token", minimum=minimum_token)
    try:
        return OptionContract(exchange, tradingsymbol, underlying, expiry, strike, option_type, lot_size,
                              tick_size, token)
    except ValueError as exc:  # the contract's own checks (exchange, strike, lot and tick sizes)
        raise ValueError(f"{where}: {exc}") from None


class DocReader:
    """Checked access to one mapping of a saved document; ``where`` prefixes the field names in errors."""

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
        return contract_from_dict(self.raw(key), self.name(key), minimum_token=0)


def intent_to_dict(intent: OrderIntent) -> dict[str, object]:
    return {
        "ts_ns": intent.ts_ns, "intent_id": intent.intent_id, "strategy_id": intent.strategy_id,
        "contract": contract_to_dict(intent.contract), "side": intent.side.value, "quantity": intent.quantity,
        "order_type": intent.order_type.value, "purpose": intent.purpose.value,
        "expected_price": intent.expected_price, "limit_price": intent.limit_price,
        "trigger_price": intent.trigger_price, "market_protection": intent.market_protection,
        "stop_loss_price": intent.stop_loss_price, "signal_id": intent.signal_id, "reason": intent.reason,
    }


def intent_from_dict(data: object, where: str = "intent") -> OrderIntent:
    raw = mapping(data, where)
    try:
        return OrderIntent(
            ts_ns=typed(raw, "ts_ns", int, where), intent_id=typed(raw, "intent_id", str, where),
            strategy_id=typed(raw, "strategy_id", str, where),
            contract=contract_from_dict(raw.get("contract"), f"{where}.contract"),
            side=Side(typed(raw, "side", str, where)), quantity=typed(raw, "quantity", int, where),
            order_type=OrderType(typed(raw, "order_type", str, where)),
            purpose=IntentPurpose(typed(raw, "purpose", str, where)),
            expected_price=typed(raw, "expected_price", int, where),
            limit_price=typed(raw, "limit_price", int, where), trigger_price=typed(raw, "trigger_price", int, where),
            market_protection=number(raw, "market_protection", where),
            stop_loss_price=typed(raw, "stop_loss_price", int, where),
            signal_id=typed(raw, "signal_id", str, where), reason=typed(raw, "reason", str, where),
        )
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def fill_to_dict(fill: Fill) -> dict[str, object]:
    return {
        "ts_ns": fill.ts_ns, "fill_id": fill.fill_id, "intent_id": fill.intent_id, "order_id": fill.order_id,
        "contract": contract_to_dict(fill.contract), "side": fill.side.value, "quantity": fill.quantity,
        "price": fill.price, "expected_price": fill.expected_price, "charges": fill.charges,
        "purpose": fill.purpose.value,
    }


def fill_from_dict(data: object, where: str = "fill") -> Fill:
    raw = mapping(data, where)
    try:
        return Fill(
            ts_ns=typed(raw, "ts_ns", int, where), fill_id=typed(raw, "fill_id", str, where),
            intent_id=typed(raw, "intent_id", str, where), order_id=typed(raw, "order_id", str, where),
            contract=contract_from_dict(raw.get("contract"), f"{where}.contract"),
            side=Side(typed(raw, "side", str, where)), quantity=typed(raw, "quantity", int, where),
            price=typed(raw, "price", int, where), expected_price=typed(raw, "expected_price", int, where),
            charges=typed(raw, "charges", int, where), purpose=IntentPurpose(typed(raw, "purpose", str, where)),
        )
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
