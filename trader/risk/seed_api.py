"""The seed's library API on the risk core: rupee floats and optional times at the edge, paise and ``ts_ns`` inside.

Mixed into ``RiskManager``; every call converts through ``trader.money`` and goes to the paise API (``check``,
``on_fill``, ``mark``, ``metrics``, ``reset_daily``), so the library and the daemon run the same decisions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

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


class _PaiseApi(Protocol):
    """What the facade needs of the manager it is mixed into."""

    _library_intents: int
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
    def check_can_place_order(self: _PaiseApi, contract: OptionContract, quantity: int, side: Side | str,
                              price: float, *, stop_loss_price: float | None = None,
                              ts_ns: int | None = None) -> tuple[bool, str]:
        """(approved, reason) for an order of ``quantity`` units at ``price`` rupees. Nothing is recorded."""
        ts = _ts(self, ts_ns)
        self._library_intents += 1
        paise = to_paise(price)
        # The purpose is required by OrderIntent but never read: the core decides "exit" from the book alone.
        intent = OrderIntent(ts_ns=ts, intent_id=f"LIB{self._library_intents}", strategy_id="library",
                             contract=contract, side=as_side(side), quantity=quantity, order_type=OrderType.LIMIT,
                             purpose=IntentPurpose.ENTRY, expected_price=paise, limit_price=paise)
        stop = None if stop_loss_price is None else to_paise(stop_loss_price)
        decision = self.check(intent, ts, stop_loss_price=stop)
        return decision.approved, decision.reason

    def record_trade(self: _PaiseApi, contract: OptionContract, quantity: int, side: Side | str, price: float, *,
                     charges: float = 0.0, ts_ns: int | None = None) -> None:
        """Book an executed trade: ``quantity`` units at ``price`` rupees; it also counts as one order sent."""
        ts = _ts(self, ts_ns)
        self.note_order_sent(ts)
        self.on_fill(contract, as_side(side), quantity, to_paise(price), to_paise(charges), ts)

    def update_market_price(self: _PaiseApi, contract: OptionContract, price: float, *,
                            ts_ns: int | None = None) -> bool:
        """Mark an open position at ``price`` rupees; True if its unrealized P&L changed."""
        return self.mark(self._keyed(contract).instrument_token, to_paise(price), _ts(self, ts_ns))

    def get_risk_metrics(self: _PaiseApi, *, ts_ns: int | None = None) -> RiskMetrics:
        return self.metrics(_ts(self, ts_ns))

    def reset_daily_metrics(self: _PaiseApi, *, ts_ns: int | None = None) -> None:
        self.reset_daily(_ts(self, ts_ns))


def _ts(manager: _PaiseApi, ts_ns: int | None) -> int:
    """The caller's time, else the manager's clock (the wall clock unless one was injected)."""
    return manager._now_ns() if ts_ns is None else ts_ns
