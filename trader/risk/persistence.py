"""The risk manager's saved state: what a restart needs, written as JSON-able data and read back with every field
checked, so a malformed or foreign file is refused with the field named, never half-applied.

The functions reach into ``RiskManager``'s internals on purpose: they are its persistence, kept out of the state
machine's file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING, TypeVar

from trader.book import BookPosition, PositionBook
from trader.events import Fill, RiskLevel
from trader.risk.checks import symbol_key
from trader.risk.windows import Breach, ist_day_start_ns
from trader.store.codec import contract_from_dict, contract_to_dict

if TYPE_CHECKING:
    from trader.risk.core import RiskManager

STATE_VERSION = 1
_ONE_DAY = timedelta(days=1)
_T = TypeVar("_T")


def check_state_version(state: Mapping[str, object]) -> None:
    version = typed_field(state, "version", int)
    if version != STATE_VERSION:
        raise ValueError(f"risk state version {version} is not supported (expected {STATE_VERSION})")


def manager_state(manager: RiskManager) -> dict[str, object]:
    return {
        "version": STATE_VERSION,
        "initial_capital": manager.capital,
        "day": manager._day.isoformat() if manager._day is not None else None,
        "day_started_ns": manager._day_started_ns,
        "last_reset_ns": manager._last_reset_ns,
        "windows": {w.name: {"key": list(w.key), "base": w.base} for w in manager._windows},
        "peak_equity": manager._peak,
        "state": manager.state.value,  # derived from halted + breaches; written for people reading the file
        "level": manager._level.value,
        "level_reason": manager._level_reason,
        "halted": manager._halted,
        "halt_reason": manager._halt_reason,
        "breaches": [{"window": name, "limit": b.limit, "ts_ns": b.ts_ns, "reason": b.reason}
                     for name, b in manager._breaches.items()],
        "flatten_pending": manager._flatten_pending,
        "realized": manager.book.realized,
        "charges": manager.book.charges,
        "positions": [position_state(p) for p in manager.book.open_positions()],
    }


def restore_manager(manager: RiskManager, state: Mapping[str, object]) -> None:
    """Fill a freshly built manager from ``manager_state`` output (the version already checked)."""
    shift = manager.capital - typed_field(state, "initial_capital", int)
    book = manager.book
    book.realized = typed_field(state, "realized", int)
    book.charges = typed_field(state, "charges", int)
    for raw in typed_field(state, "positions", list):
        position = position_from_state(mapping_field(raw, "positions[]"))
        book.positions[position.contract.instrument_token] = position
        if position.contract.instrument_token < 0:
            manager._local_tokens[symbol_key(position.contract)] = position.contract.instrument_token
    day = state.get("day")
    if day is not None:
        if not isinstance(day, str):
            raise ValueError(f"risk state: 'day' must be an ISO date or null, got {day!r}")
        manager._day = date.fromisoformat(day)
        manager._next_day_ns = ist_day_start_ns(manager._day + _ONE_DAY)
    manager._day_started_ns = typed_field(state, "day_started_ns", int)
    manager._last_reset_ns = typed_field(state, "last_reset_ns", int)
    windows = typed_field(state, "windows", dict)
    for window in manager._windows:
        saved = mapping_field(windows.get(window.name), f"windows.{window.name}")
        key = typed_field(saved, "key", list)
        window.key = tuple(int_field(part, f"windows.{window.name}.key") for part in key)
        window.base = typed_field(saved, "base", int) + shift
    manager._peak = typed_field(state, "peak_equity", int) + shift
    manager._halted = typed_field(state, "halted", bool)
    manager._halt_reason = typed_field(state, "halt_reason", str)
    for raw in typed_field(state, "breaches", list):
        breach = mapping_field(raw, "breaches[]")
        manager._breaches[typed_field(breach, "window", str)] = Breach(
            limit=typed_field(breach, "limit", str), ts_ns=typed_field(breach, "ts_ns", int),
            reason=typed_field(breach, "reason", str))
    manager._level = RiskLevel(typed_field(state, "level", str))
    manager._level_reason = typed_field(state, "level_reason", str)
    manager._flatten_pending = typed_field(state, "flatten_pending", bool)
    # A restart is not a change: no event.
    manager._published_state, manager._published_breaches = manager.state, frozenset(manager._breaches)


def rebuild_book(manager: RiskManager, fills: Sequence[Fill], *, replay: bool) -> None:
    """Positions, realized P&L and charges from the fills the start-up gate vouches for (the journal's, the missed
    ones, the broker's outside trades), never from the saved copy alone: a fill saved by one actor and not the
    other is counted once. ``replay=True`` (no saved state) books them through the windows as they happened, so a
    day the broker knows was a loss stays a loss even when the state file was lost."""
    if replay:
        for fill in fills:
            manager.on_fill(fill.contract, fill.side, fill.quantity, fill.price, fill.charges, fill.ts_ns)
        return
    marks = {token: p.last_price for token, p in manager.book.positions.items()}
    book = PositionBook()
    for fill in fills:
        book.apply(manager._keyed(fill.contract), fill.side, fill.quantity, fill.price, fill.charges)
    for token, position in book.positions.items():
        if position.quantity and marks.get(token):
            position.last_price = marks[token]
    manager.book = book


def position_state(position: BookPosition) -> dict[str, object]:
    return {
        "contract": contract_to_dict(position.contract),
        "quantity": position.quantity, "cost": position.cost, "realized": position.realized,
        "last_price": position.last_price, "trade_realized": position.trade_realized,
        "trade_charges": position.trade_charges,
    }


def position_from_state(data: Mapping[str, object]) -> BookPosition:
    contract = contract_from_dict(data.get("contract"), "risk state: positions[].contract")
    return BookPosition(contract, quantity=typed_field(data, "quantity", int), cost=typed_field(data, "cost", int),
                        realized=typed_field(data, "realized", int), last_price=typed_field(data, "last_price", int),
                        trade_realized=typed_field(data, "trade_realized", int),
                        trade_charges=typed_field(data, "trade_charges", int))


def typed_field(data: Mapping[str, object], key: str, kind: type[_T]) -> _T:
    value = data.get(key)
    # bool is an int subclass: a flag must not pass for a number, nor a number for a flag.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"risk state: {key!r} must be {kind.__name__}, got {value!r}")
    return value


def int_field(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"risk state: {where} must be int, got {value!r}")
    return value


def mapping_field(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise ValueError(f"risk state: {where} must be an object, got {value!r}")
    return value
