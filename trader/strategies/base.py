"""The strategy plugin contract: events in, signals and order intents out. Strategies do no I/O.

A strategy's memory survives a restart through two calls the host actor makes: ``snapshot_state`` after every fill,
order update and emitted intent (the document goes to the journal as ``strategy:<strategy_id>``), and
``restore_state`` once before the actor starts, with the saved document and the positions the broker says the
strategy holds. A snapshot document is plain JSON (ints, strs, bools, None, lists, dicts; money in paise, times in
integer ns) and always carries ``version`` and ``strategy_id``; everything else is the strategy's own (see
``trader/strategies/state.py`` for the shared field readers and the contract format).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from trader.events import Fill, OrderIntent, OrderUpdate, Signal, Tick
from trader.ids import IdFactory
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import OptionContract


@dataclass(slots=True)
class StrategyContext:
    """What the host actor lends a strategy: reference data, the latest quotes, ids. Read-only for strategies."""

    instruments: InstrumentMaster
    ids: IdFactory
    quotes: dict[int, Tick] = field(default_factory=dict)
    entries_allowed: bool = True  # False once the daemon is stopping
    # Contracts the strategies hold, by token (restored positions included): their ticks must reach the strategies
    # even when they lie outside the chains the feed was provisioned with. Kept by the host actor.
    held: dict[int, OptionContract] = field(default_factory=dict)
    # The premium at risk per entry (paise, entry to stop × quantity) the risk gate allows: capital ×
    # max_risk_per_trade_pct. A strategy sizes its entries to fit it; 0 = not known (size with [strategy] lots).
    risk_budget: int = 0

    def quote(self, instrument_token: int) -> Tick | None:
        return self.quotes.get(instrument_token)


@dataclass(frozen=True, slots=True)
class RestoredPosition:
    """A position the broker holds for us at start-up, as the reconciliation gate hands it to the strategy actor."""

    contract: OptionContract
    quantity: int  # signed units: >0 long, <0 short
    average_price: int  # paise per unit
    strategy_id: str  # "" = ours, but the owner is not known (an orphan)
    opened_ns: int  # when the position was opened (first fill), 0 if not known


@dataclass(frozen=True, slots=True)
class Holding:
    """What a strategy manages right now, for logs, counts and feed subscriptions (not a source of truth)."""

    strategy_id: str
    contract: OptionContract
    quantity: int  # signed units
    average_price: int  # paise per unit
    stop_price: int  # paise; 0 = no stop
    target_price: int  # paise; 0 = no target
    time_exit_ns: int  # 0 = none / the strategy's daily exit time
    pending_intent: str  # "" = no order working


class Strategy(Protocol):
    strategy_id: str

    def on_tick(self, tick: Tick, ctx: StrategyContext) -> Sequence[Signal | OrderIntent]: ...

    def on_fill(self, fill: Fill) -> None: ...

    def on_order_update(self, update: OrderUpdate) -> None: ...

    def snapshot_state(self) -> dict[str, object]:
        """The strategy's memory as a JSON-able document (see the module docstring). Cheap; no I/O."""
        ...

    def restore_state(self, state: Mapping[str, object] | None,
                      held: Sequence[RestoredPosition]) -> list[RestoredPosition]:
        """Take back the saved memory and the positions the broker says this strategy holds; return those it does
        NOT take over. ``state`` may be None, stale or from another day: the broker's positions win. A malformed
        document raises ``ValueError`` naming the field, and the strategy is left unchanged."""
        ...

    def holdings(self) -> list[Holding]:
        """The positions it manages now (quantity may be 0 while an order is working)."""
        ...

    def pending_intents(self) -> list[str]:
        """Intent ids it waits on (an entry or exit not yet in a terminal state)."""
        ...


StrategyFactory = Callable[..., Strategy]
