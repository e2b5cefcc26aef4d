"""The strategy plugin contract: events in, signals and order intents out. Strategies do no I/O."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from trader.events import Fill, OrderIntent, OrderUpdate, Signal, Tick
from trader.ids import IdFactory
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import OptionContract


@dataclass(frozen=True, slots=True)
class RestoredPosition:
    """A position held at a restart, handed to the strategy that owns it ("" = ours, owner unknown)."""

    contract: OptionContract
    quantity: int  # signed units
    average_price: int  # paise
    strategy_id: str
    opened_ns: int


@dataclass(slots=True)
class StrategyContext:
    """What the host actor lends a strategy: reference data, the latest quotes, ids. Read-only for strategies."""

    instruments: InstrumentMaster
    ids: IdFactory
    quotes: dict[int, Tick] = field(default_factory=dict)
    entries_allowed: bool = True  # False once the daemon is stopping

    def quote(self, instrument_token: int) -> Tick | None:
        return self.quotes.get(instrument_token)


class Strategy(Protocol):
    strategy_id: str

    def on_tick(self, tick: Tick, ctx: StrategyContext) -> Sequence[Signal | OrderIntent]: ...

    def on_fill(self, fill: Fill) -> None: ...

    def on_order_update(self, update: OrderUpdate) -> None: ...


StrategyFactory = Callable[..., Strategy]
