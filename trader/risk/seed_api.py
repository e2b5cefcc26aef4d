"""The seed's library API on the risk core: rupee floats and optional times at the edge, paise and ``ts_ns`` inside.

Mixed into ``RiskManager``; every call converts through ``trader.money`` and goes to the paise API (``check``,
``on_fill``, ``mark``, ``metrics``, ``reset_daily``), so the library and the daemon run the same decisions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

from trader.book import PositionBook
from trader.events import IntentPurpose, OrderIntent, OrderType, Side
from trader.market.instruments import OptionContract
from trader.money import to_paise
from trader.risk.results import RiskDecision, RiskMetrics


def as_side(side: Side | str) -> Side:
    """``Side.BUY``/``Side.SELL`` or the strings "BUY"/"SELL" (any case)."""
    if isinstance(side, Side):
        return side
    try:
        return Side(str(side).strip().upper())
    except ValueError:
        raise ValueError(f"side must be BUY or SELL, got {side!r}") from None


def plain_contract(contract: object) -> OptionContract:
    """The ``OptionContract`` itself: a chain's quote (a subclass carrying prices) is reduced to the contract, anything
    else is refused with what to pass."""
    if type(contract) is OptionContract:
        return contract
    if isinstance(contract, OptionContract):
        return OptionContract(**{f.name: getattr(contract, f.name) for f in dataclasses.fields(OptionContract)})
    raise TypeError("contract must be an OptionContract (e.g. OptionContract.parse('NIFTY25DEC26000CE'), or one of "
                    f"get_option_chain(...).contracts), got {type(contract).__name__}")


def _units(quantity: object) -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise TypeError(f"quantity must be a whole number of units (lots × lot size), got {quantity!r}")
    return quantity


class _PaiseApi(Protocol):
    """What the facade needs of the manager it is mixed into."""

    _library_intents: int
    book: PositionBook
    _now_ns: Callable[[], int]

    def check(self, intent: OrderIntent, ts_ns: int, *, stop_loss_price: int | None = None) -> RiskDecision: ...
    def note_order_sent(self, ts_ns: int) -> None: ...
    def on_fill(self, contract: OptionContract, side: Side, quantity: int,  # noqa: PLR0917 (the fill's fields)
                price_paise: int, charges_paise: int, ts_ns: int) -> None: ...
    def mark(self, instrument_token: int, price_paise: int, ts_ns: int) -> bool: ...
    def metrics(self, ts_ns: int) -> RiskMetrics: ...
    def reset_daily(self, ts_ns: int) -> None: ...
    def _keyed(self, contract: OptionContract) -> OptionContract: ...


class SeedApi:
    def start_monitoring(self: _PaiseApi, *, ts_ns: int | None = None) -> RiskMetrics:
        """The seed's call to begin watching the limits; returns the metrics now.

        Nothing runs in the background, and nothing needs to: every fill (``record_trade``), mark
        (``update_market_price``) and check re-evaluates the loss limits, the drawdown and the risk level at once, so
        a breach moves the state to REDUCING_ONLY on the event that caused it. This opens the loss windows at the
        current time (or ``ts_ns``).
        """
        return self.metrics(_ts(self, ts_ns))

    def check_can_place_order(self: _PaiseApi, contract: OptionContract, quantity: int,
                              side: Side | str, price: float | None = None, *, stop_loss_price: float | None = None,
                              ts_ns: int | None = None) -> tuple[bool, str]:
        """(approved, reason) for an order of ``quantity`` units at ``price`` rupees. Nothing is recorded.

        Without ``price`` the contract's last mark is used (its last fill or ``update_market_price``); a contract
        never traded or marked has none, and the answer is (False, "... give price=...")."""
        contract = plain_contract(contract)
        units = _units(quantity)
        order_side = as_side(side)
        ts = _ts(self, ts_ns)
        if price is None:
            position = self.book.positions.get(self._keyed(contract).instrument_token)
            paise = position.last_price if position is not None else 0
            if paise <= 0:
                return False, (f"no price known for {contract.tradingsymbol} (it was never traded or marked here): "
                               "give price=<rupees>, the order's limit or expected price, e.g. "
                               "check_can_place_order(contract, quantity, side, price=120.5)")
        else:
            paise = to_paise(price)
        self._library_intents += 1
        # The purpose is required by OrderIntent but never read: the core decides "exit" from the book alone.
        intent = OrderIntent(ts_ns=ts, intent_id=f"LIB{self._library_intents}", strategy_id="library",
                             contract=contract, side=order_side, quantity=units, order_type=OrderType.LIMIT,
                             purpose=IntentPurpose.ENTRY, expected_price=paise, limit_price=paise)
        stop = None if stop_loss_price is None else to_paise(stop_loss_price)
        decision = self.check(intent, ts, stop_loss_price=stop)
        return decision.approved, decision.reason

    def record_trade(self: _PaiseApi, contract: OptionContract, quantity: int, side: Side | str, price: float, *,
                     charges: float = 0.0, ts_ns: int | None = None) -> None:
        """Book an executed trade: ``quantity`` units at ``price`` rupees; it also counts as one order sent."""
        ts = _ts(self, ts_ns)
        contract, units, order_side = plain_contract(contract), _units(quantity), as_side(side)
        paise, charges_paise = to_paise(price), to_paise(charges)
        self.note_order_sent(ts)
        self.on_fill(contract, order_side, units, paise, charges_paise, ts)

    def update_market_price(self: _PaiseApi, contract: OptionContract, price: float, *,
                            ts_ns: int | None = None) -> bool:
        """Mark an open position at ``price`` rupees; True if its unrealized P&L changed."""
        return self.mark(self._keyed(plain_contract(contract)).instrument_token, to_paise(price), _ts(self, ts_ns))

    def get_risk_metrics(self: _PaiseApi, *, ts_ns: int | None = None) -> RiskMetrics:
        return self.metrics(_ts(self, ts_ns))

    def reset_daily_metrics(self: _PaiseApi, *, ts_ns: int | None = None) -> None:
        self.reset_daily(_ts(self, ts_ns))


def _ts(manager: _PaiseApi, ts_ns: int | None) -> int:
    """The caller's time, else the manager's clock (the wall clock unless one was injected)."""
    return manager._now_ns() if ts_ns is None else ts_ns
