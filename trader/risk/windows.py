"""The risk core's time windows and saved state: IST calendar windows (day, ISO week, month) for the loss limits,
breaches, and the checked (de)serialisation of positions in the saved risk state."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import TypeVar

from trader.book import BookPosition
from trader.clock import NS_PER_SECOND
from trader.market.calendar import IST, ist_ns
from trader.market.instruments import OptionContract, OptionType

_T = TypeVar("_T")


def ist_day_start_ns(day: date) -> int:
    return ist_ns(day, time(0))


def ist_wall_time(ts_ns: int) -> datetime:
    return datetime.fromtimestamp(ts_ns // NS_PER_SECOND, tz=IST)


def day_key(day: date) -> tuple[int, ...]:
    return (day.toordinal(),)


def iso_week_key(day: date) -> tuple[int, ...]:
    iso = day.isocalendar()
    return (iso.year, iso.week)


def month_key(day: date) -> tuple[int, ...]:
    return (day.year, day.month)


@dataclass(slots=True)
class LossWindow:
    name: str  # DAILY / WEEKLY / MONTHLY
    limit_field: str  # the RiskConfig field that sets the limit
    fraction: float
    limit: int  # paise
    key_of: Callable[[date], tuple[int, ...]]
    clears: str  # when a breach of this window clears, for reason strings
    key: tuple[int, ...] = ()  # () sorts before every real key: the first event opens the window
    base: int = 0  # equity at the window start


@dataclass(frozen=True, slots=True)
class Breach:
    limit: str  # the RiskConfig field
    ts_ns: int
    reason: str


# -- saved state ---------------------------------------------------------------------------------------------------

def position_state(position: BookPosition) -> dict[str, object]:
    contract = position.contract
    return {
        "contract": {
            "exchange": contract.exchange, "tradingsymbol": contract.tradingsymbol,
            "underlying": contract.underlying, "expiry": contract.expiry.isoformat(), "strike": contract.strike,
            "option_type": contract.option_type.value, "lot_size": contract.lot_size,
            "tick_size": contract.tick_size, "instrument_token": contract.instrument_token,
        },
        "quantity": position.quantity, "cost": position.cost, "realized": position.realized,
        "last_price": position.last_price, "trade_realized": position.trade_realized,
        "trade_charges": position.trade_charges,
    }


def position_from_state(data: Mapping[str, object]) -> BookPosition:
    raw = mapping_field(data.get("contract"), "positions[].contract")
    contract = OptionContract(
        exchange=typed_field(raw, "exchange", str), tradingsymbol=typed_field(raw, "tradingsymbol", str),
        underlying=typed_field(raw, "underlying", str), expiry=date.fromisoformat(typed_field(raw, "expiry", str)),
        strike=typed_field(raw, "strike", int), option_type=OptionType(typed_field(raw, "option_type", str)),
        lot_size=typed_field(raw, "lot_size", int), tick_size=typed_field(raw, "tick_size", int),
        instrument_token=typed_field(raw, "instrument_token", int),
    )
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
