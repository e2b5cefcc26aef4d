"""Strategy actor: hosts the strategy plugins, feeds them events, publishes their signals and intents."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from trader.actors.base import Actor
from trader.bus import EventBus
from trader.events import (
    Command,
    CommandKind,
    Fill,
    IntentPurpose,
    OrderIntent,
    OrderStatus,
    OrderUpdate,
    Signal,
    Tick,
)
from trader.logging import get_logger
from trader.money import to_rupees
from trader.strategies.base import Strategy, StrategyContext

log = get_logger("trader.strategy")


class StrategyActor(Actor):
    name = "strategy"

    def __init__(self, bus: EventBus, strategies: Sequence[Strategy], context: StrategyContext,
                 *, auto_execution: bool = True, conflate_ticks: bool = True) -> None:
        super().__init__(bus, conflate_ticks=conflate_ticks)
        self.strategies = list(strategies)
        self.context = context
        self.auto_execution = auto_execution
        self.signals = 0
        self.intents = 0
        self.last_tick_ts_ns = 0

    def subscriptions(self) -> Iterable[type]:
        return (Tick, Fill, OrderUpdate, Command)

    async def handle(self, event: Any) -> None:
        kind = type(event)
        if kind is Tick:
            self.context.quotes[event.instrument_token] = event
            self.last_tick_ts_ns = event.ts_ns
            for strategy in self.strategies:
                self._emit(strategy.on_tick(event, self.context))
        elif kind is Fill:
            for strategy in self.strategies:
                strategy.on_fill(event)
        elif kind is OrderUpdate:
            for strategy in self.strategies:
                strategy.on_order_update(event)
        elif kind is Command and event.kind is CommandKind.STOP_ENTRIES:
            self.context.entries_allowed = False
            log.info("entries_stopped", reason=event.reason)

    def _emit(self, outputs: Sequence[Signal | OrderIntent]) -> None:
        for item in outputs:
            if type(item) is Signal:
                self.signals += 1
                log.info("signal", signal_id=item.signal_id, strategy=item.strategy_id, tick_id=item.tick_id,
                         underlying=item.underlying, direction=item.direction.value,
                         confidence=item.confidence, reason=item.reason, event_ts_ns=item.ts_ns)
                self.bus.publish(item)
            elif type(item) is OrderIntent:
                if not self.auto_execution and item.purpose is IntentPurpose.ENTRY:
                    # Semi-live: the signal is logged, a human places the order. The intent still ends in one
                    # terminal state, so the strategy does not wait for a fill that will never come.
                    log.info("intent_not_sent", intent_id=item.intent_id, reason="auto_execution is off",
                             tradingsymbol=item.contract.tradingsymbol)
                    self.bus.publish(OrderUpdate(ts_ns=item.ts_ns, intent_id=item.intent_id, order_id="",
                                                 status=OrderStatus.REJECTED,
                                                 reason="auto_execution is off: signal only"))
                    continue
                self.intents += 1
                log.info("intent", intent_id=item.intent_id, signal_id=item.signal_id, strategy=item.strategy_id,
                         tradingsymbol=item.contract.tradingsymbol, side=item.side.value, quantity=item.quantity,
                         order_type=item.order_type.value, purpose=item.purpose.value,
                         expected_price_inr=to_rupees(item.expected_price), reason=item.reason, event_ts_ns=item.ts_ns)
                self.bus.publish(item)
