"""Argument checks for the seed's API: every refusal names the argument, what was wrong and what would do.

Callers' mistakes (a wrong type, a quantity that is not whole lots, an unknown provider) raise ``ValueError`` or
``TypeError`` here, before anything is sent; what a venue refuses comes back in the answer instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from trader.config import ConfigError, Settings, load_settings
from trader.events import OrderType, Side
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import OptionContract, UnderlyingSpec, resolve_underlying
from trader.money import MoneyError, rupee_text, to_paise
from trader.risk.checks import whole_lots_problem
from trader.risk.seed_api import as_side


def settings(overrides: dict[str, Any]) -> Settings:
    """The project's settings (environment ``TRADER_*`` and defaults) under the caller's arguments; a bad value is
    a ValueError naming the setting."""
    try:
        return load_settings(overrides)
    except ConfigError as exc:
        raise ValueError("; ".join(line.removeprefix("config error: ") for line in exc.lines)) from None


def given(**values: object) -> dict[str, object]:
    """The arguments the caller gave (not None)."""
    return {key: value for key, value in values.items() if value is not None}


ORDER_TYPES = tuple(order_type.value for order_type in OrderType)


def choice(kind: str, given: object, choices: Sequence[str]) -> str:
    """``given`` as one of ``choices`` (case and surrounding spaces ignored), else a ValueError listing them."""
    listed = ", ".join(repr(c) for c in choices)
    if not isinstance(given, str):
        raise TypeError(f"{kind} must be a string, one of {listed}; got {type(given).__name__} {given!r}")
    name = given.strip().lower()
    if name not in choices:
        raise ValueError(f"unknown {kind} {given!r}: choose one of {listed}")
    return name


def check_options(factory: str, name: str, target: Callable[..., object], options: dict[str, Any]) -> None:
    """Refuse keyword arguments ``target`` does not take, naming the ones it does."""
    import inspect  # noqa: PLC0415 - only on this path

    params = inspect.signature(target).parameters
    accepted = [p for p, spec in params.items() if spec.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"{factory}({name!r}) does not take {', '.join(unknown)}; it takes "
                        f"{', '.join(accepted) or 'no options'}")


def side(value: object) -> Side:
    if not isinstance(value, Side | str):
        raise TypeError(f"side must be OrderSide.BUY / OrderSide.SELL or 'BUY' / 'SELL', got {value!r}")
    return as_side(value)


def order_type(value: object) -> OrderType:
    if isinstance(value, OrderType):
        return value
    if isinstance(value, str):
        text = value.strip().upper().replace("_", "-")
        if text in ORDER_TYPES:
            return OrderType(text)
    raise ValueError(f"order_type must be one of {', '.join(ORDER_TYPES)} (OrderType.MARKET, ...), got {value!r}")


def quantity(contract: OptionContract, value: object) -> int:
    """Units, a whole number of lots of ``contract``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"quantity must be a whole number of units (lots × lot size {contract.lot_size} for "
                        f"{contract.tradingsymbol}), got {type(value).__name__} {value!r}")
    problem = whole_lots_problem(contract, value)
    if problem:
        raise ValueError(problem)
    return value


def price(name: str, value: object, contract: OptionContract, *, required_for: str = "") -> int:
    """Rupees → paise, positive and on ``contract``'s tick; ``required_for`` names why a missing one is needed."""
    if value is None:
        raise ValueError(f"{name} is required for {required_for}: give it in rupees, e.g. {name}=120.5")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"{name} must be an amount of rupees (a number), got {value!r}")
    try:
        paise = to_paise(value)
    except MoneyError as exc:
        raise ValueError(f"{name}: {exc}") from None
    tick = contract.tick_size
    if paise <= 0 or paise % tick or (isinstance(value, float) and not math.isclose(paise / 100, value)):
        below = max(paise // tick * tick, tick)
        raise ValueError(f"{name} {value!r} must be a positive multiple of the tick size ₹{rupee_text(tick)} for "
                         f"{contract.tradingsymbol}, e.g. {rupee_text(below)} or {rupee_text(below + tick)}")
    return paise


def underlying(symbol: object) -> UnderlyingSpec:
    if not isinstance(symbol, str):
        raise TypeError(f"symbol must be a string such as 'NSE:NIFTY50-INDEX', got {symbol!r}")
    return resolve_underlying(symbol)


def symbols(values: object, what: str = "symbols") -> list[UnderlyingSpec]:
    """A non-empty list of underlyings (a single string is taken as one), without repeats."""
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list | tuple) or not values:
        raise ValueError(f"{what} must be a non-empty list such as ['NSE:NIFTY50-INDEX'], got {values!r}")
    specs: list[UnderlyingSpec] = []
    for value in values:
        spec = underlying(value)
        if spec in specs:
            raise ValueError(f"{what}: {value!r} names {spec.name} twice")
        specs.append(spec)
    return specs


def listed_contract(value: object, instruments: InstrumentMaster, where: str) -> OptionContract:
    """The listed contract ``value`` names: an ``OptionContract`` (or a chain's quote) or a tradingsymbol, as the
    market ``where`` lists it (its lot size and token win over a parsed symbol's)."""
    if isinstance(value, OptionContract):
        symbol = f"{value.exchange}:{value.tradingsymbol}"
    elif isinstance(value, str):
        symbol = value
        OptionContract.parse(symbol)  # a malformed symbol gets the parser's own explanation
    else:
        raise TypeError("contract must be an OptionContract (e.g. one of get_option_chain(...).contracts, or "
                        f"OptionContract.parse('NIFTY25DEC26000CE')) or a tradingsymbol, got {type(value).__name__}")
    listed = instruments.contract(symbol)
    if listed is None:
        parsed = value if isinstance(value, OptionContract) else OptionContract.parse(symbol)
        expiries = instruments.expiries(parsed.underlying)
        hint = (f"it lists {parsed.underlying} expiries {', '.join(e.isoformat() for e in expiries[:4])}"
                if expiries else f"it lists no {parsed.underlying} options")
        raise ValueError(f"{parsed.tradingsymbol} is not listed on {where} ({hint}); take a contract from "
                         "get_option_chain(...).contracts")
    return listed
