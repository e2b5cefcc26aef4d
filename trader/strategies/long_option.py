"""One long option position and its exits, as the built-in strategies manage it: the fills and order updates that
change it, the stop / target / time exits that close it, and what it reports (holdings, pending intents).

A strategy inherits it and says what differs: where its stop and target are (``_set_levels``), which market
protection its exits carry (``_market_protection``), and its day's exit time (``_exit_ns``, set by the strategy at
each new day). Pure and synchronous, like every strategy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from trader.events import Fill, IntentPurpose, OrderIntent, OrderType, OrderUpdate, Side, Signal, Tick
from trader.market.instruments import OptionContract
from trader.strategies.base import Holding, RestoredPosition, StrategyContext
from trader.strategies.ema_state import Phase
from trader.strategies.state import same_contract

EXIT_RETRY_NS = 5 * 1_000_000_000  # an exit that did not complete is sent again, but not on every tick


class SavedPosition(Protocol):
    """The position part of a strategy's checked state document (``ema_state.Saved``, ``orb_state.Saved``)."""

    @property
    def phase(self) -> Phase: ...
    @property
    def contract(self) -> OptionContract | None: ...
    @property
    def quantity(self) -> int: ...
    @property
    def stop_price(self) -> int: ...
    @property
    def target_price(self) -> int: ...
    @property
    def time_exit_ns(self) -> int: ...
    @property
    def opened_ns(self) -> int: ...
    @property
    def pending_intent(self) -> str: ...
    @property
    def exit_reason(self) -> str: ...
    @property
    def retry_exit_at_ns(self) -> int: ...


class LongOptionPosition:
    strategy_id: str
    _exit_ns: int  # the day's exit time (ns), 0 before the first day

    def _init_position(self) -> None:
        self._phase = Phase.FLAT
        self._contract: OptionContract | None = None
        self._held = 0
        self._cost = 0
        self._stop_price = 0  # paise, fixed from the average cost when an entry fills
        self._target_price = 0
        self._time_exit_ns = 0  # 0 = the day's exit_time
        self._opened_ns = 0
        self._pending_intent = ""
        self._exit_reason = ""
        self._retry_exit_at_ns = 0

    # -- what differs between strategies ----------------------------------------------------------------------
    def _set_levels(self) -> None:
        raise NotImplementedError

    @property
    def _market_protection(self) -> float:
        raise NotImplementedError

    def _time_exit_at(self) -> int:
        return self._time_exit_ns or self._exit_ns

    # -- the position ------------------------------------------------------------------------------------------
    def on_fill(self, fill: Fill) -> None:
        ours = fill.intent_id == self._pending_intent
        held_contract = self._contract is not None and fill.contract.instrument_token == self._contract.instrument_token
        if not (ours or held_contract):
            return
        # Fills of other intents on the contract held (the risk gate flattening it) change the position too.
        if fill.side is Side.BUY:
            if self._held == 0:
                self._opened_ns = fill.ts_ns
                self._time_exit_ns = self._exit_ns
            self._held += fill.quantity
            self._cost += fill.quantity * fill.price
            self._set_levels()
        else:
            if self._held:
                self._cost -= self._cost * min(fill.quantity, self._held) // self._held
            self._held = max(self._held - fill.quantity, 0)
            if self._held == 0 and not ours and self._phase is Phase.OPEN:
                self._phase = Phase.FLAT  # closed from outside (a flatten): nothing left to manage
                self._clear_position()

    def on_order_update(self, update: OrderUpdate) -> None:
        if update.intent_id != self._pending_intent or not update.status.is_terminal:
            return
        self._pending_intent = ""
        if self._held > 0:
            if self._phase is Phase.EXITING:
                # An exit that did not complete: retry it, but not on every tick.
                self._retry_exit_at_ns = update.ts_ns + EXIT_RETRY_NS
            self._phase = Phase.OPEN
        else:
            self._phase = Phase.FLAT
            self._clear_position()

    def _clear_position(self) -> None:
        self._contract = None
        self._held = self._cost = 0
        self._stop_price = self._target_price = self._time_exit_ns = self._opened_ns = 0

    def holdings(self) -> list[Holding]:
        if self._contract is None:
            return []
        return [Holding(self.strategy_id, self._contract, self._held,
                        self._cost // self._held if self._held else 0, self._stop_price, self._target_price,
                        self._time_exit_ns, self._pending_intent)]

    def pending_intents(self) -> list[str]:
        return [self._pending_intent] if self._pending_intent else []

    # -- restarts ----------------------------------------------------------------------------------------------
    @staticmethod
    def _position_to_take(saved: SavedPosition | None, held: Sequence[RestoredPosition]) -> RestoredPosition | None:
        """The broker's position this strategy takes back: the saved contract if still held long; without a
        document the first long position. Short positions are never taken."""
        longs = [p for p in held if p.quantity > 0]
        if saved is None:
            return longs[0] if longs else None
        if saved.contract is not None:
            return next((p for p in longs if same_contract(p.contract, saved.contract)), None)
        return None

    def _restored(self, saved: SavedPosition | None) -> None:
        """What a strategy keeps of its document besides the position, before the levels are set (a hook)."""

    def _restore_position(self, saved: SavedPosition | None, taken: RestoredPosition | None) -> None:
        """The position as the broker holds it (its quantity and price win), with the document's stop, target and
        pending order when it has one; an entry still waiting stays pending, as before the restart."""
        self._phase = Phase.FLAT
        self._clear_position()
        self._pending_intent = self._exit_reason = ""
        self._retry_exit_at_ns = 0
        self._restored(saved)
        if taken is not None:
            self._contract = taken.contract
            self._held = taken.quantity
            self._cost = taken.quantity * taken.average_price
            self._opened_ns = taken.opened_ns
            self._phase = Phase.OPEN
            self._set_levels()
            if saved is not None:
                if saved.quantity > 0:  # the entry had filled: its stop and target stand
                    self._stop_price, self._target_price = saved.stop_price, saved.target_price
                self._time_exit_ns = saved.time_exit_ns
                self._opened_ns = taken.opened_ns or saved.opened_ns
                self._exit_reason = saved.exit_reason
                self._retry_exit_at_ns = saved.retry_exit_at_ns
                if saved.pending_intent:
                    self._phase, self._pending_intent = saved.phase, saved.pending_intent
        elif saved is not None and saved.phase is Phase.ENTERING:
            # The entry order may still fill: wait for it, as before the restart.
            self._phase, self._contract, self._pending_intent = Phase.ENTERING, saved.contract, saved.pending_intent

    # -- exits -------------------------------------------------------------------------------------------------
    def _check_exits(self, tick: Tick, ctx: StrategyContext, out: list[Signal | OrderIntent]) -> None:
        contract = self._contract
        assert contract is not None
        if tick.ts_ns >= self._time_exit_at():
            self._exit(tick, ctx, out, "time_exit")
            return
        if tick.instrument_token != contract.instrument_token or self._held <= 0:
            return
        mark = tick.bid or tick.last_price
        if mark <= self._stop_price:
            self._exit(tick, ctx, out, "stop_loss")
        elif mark >= self._target_price:
            self._exit(tick, ctx, out, "target")

    def _exit(self, tick: Tick, ctx: StrategyContext, out: list[Signal | OrderIntent], reason: str) -> None:
        contract = self._contract
        if contract is None or self._held <= 0 or tick.ts_ns < self._retry_exit_at_ns:
            return
        quote = ctx.quote(contract.instrument_token)
        expected = quote.bid if quote is not None and quote.bid > 0 else (quote.last_price if quote else 0)
        intent = OrderIntent(
            ts_ns=tick.ts_ns, intent_id=ctx.ids.next("I"), strategy_id=self.strategy_id, contract=contract,
            side=Side.SELL, quantity=self._held, order_type=OrderType.MARKET, purpose=IntentPurpose.EXIT,
            expected_price=expected, market_protection=self._market_protection, reason=reason,
        )
        self._phase = Phase.EXITING
        self._pending_intent = intent.intent_id
        self._exit_reason = reason
        out.append(intent)
