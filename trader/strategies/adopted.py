"""The keeper of adopted positions: ours at the broker after a restart, but no strategy claims them.

A position the reconciliation gate finds without a known owner (or one its strategy refused: a different contract
than it remembers, a short, a strategy no longer configured) would otherwise sit with no stop, no target and no time
exit until it expires. The keeper manages it under a policy (config section ``[adopted]``):

- ``protect`` (default): a protective stop on the option's own ticks (a long exits when its bid falls to
  ``average × (1 − stop_loss_pct)``, a short when its ask rises to ``average × (1 + stop_loss_pct)``) and a time exit
  at ``exit_time`` (default: the strategy's), each a MARKET order for exactly the quantity held, never more;
- ``hold``: reported only; the keeper never sends an order.

It never enters, but it takes what a manual order (strategy ``manual``, placed through the control API) opens and no
strategy takes (``adopt_fill``), so a position opened by hand through the daemon is managed the same way before and
after a restart. Its exits go through the risk gate like any strategy's. A rejected or unfilled exit is retried after
a pause, on a later tick. State document (version 1), money in paise, times in ns:

    {"version": 1, "strategy_id": "adopted", "policy": "protect",
     "positions": [{"contract": {...}, "quantity": 65, "average_price": 10000, "stop_price": 7000,
                    "opened_ns": ..., "origin": "", "pending_intent": "", "exit_reason": "",
                    "retry_exit_at_ns": 0}]}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from trader.events import Fill, IntentPurpose, OrderIntent, OrderType, OrderUpdate, Side, Signal, Tick
from trader.logging import get_logger
from trader.market.calendar import IST
from trader.market.instruments import OptionContract
from trader.money import to_rupees
from trader.store.codec import DocReader, contract_to_dict
from trader.strategies.base import Holding, RestoredPosition, StrategyContext
from trader.strategies.state import check_header

ADOPTED_STRATEGY_ID = "adopted"
MANUAL_STRATEGY_ID = "manual"  # the strategy id of an operator's order (control API, CLI, Python facade)
POLICIES = ("protect", "hold")
STATE_VERSION = 1
_NS = 1_000_000_000
_EXIT_RETRY_NS = 5 * _NS

log = get_logger("trader.strategy")


@dataclass(frozen=True, slots=True)
class AdoptedPolicy:
    policy: str = "protect"
    stop_loss_pct: float = 0.30
    exit_time: time = time(15, 10)
    market_protection: float = -1.0

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        if not 0 < self.stop_loss_pct < 1:
            raise ValueError(f"stop_loss_pct must be in (0, 1), got {self.stop_loss_pct}")


@dataclass(slots=True)
class _Adopted:
    contract: OptionContract
    quantity: int  # signed units
    average_price: int
    stop_price: int  # 0 = none
    opened_ns: int
    origin: str  # the strategy id the gate knew ("" = unknown)
    pending_intent: str = ""
    exit_reason: str = ""
    retry_exit_at_ns: int = 0


def _key(contract: OptionContract) -> str:
    return f"{contract.exchange}:{contract.tradingsymbol}"


class AdoptedPositionKeeper:
    """Strategy-shaped: the host actor feeds it ticks, fills and order updates like any strategy."""

    def __init__(self, policy: AdoptedPolicy | None = None, strategy_id: str = ADOPTED_STRATEGY_ID) -> None:
        self.policy = policy or AdoptedPolicy()
        self.strategy_id = strategy_id
        self._positions: dict[str, _Adopted] = {}
        self._reported: set[str] = set()
        self._day_end_ns = 0
        self._exit_ns = 0

    @property
    def protects(self) -> bool:
        return self.policy.policy == "protect"

    def __len__(self) -> int:
        return len(self._positions)

    # -- events -------------------------------------------------------------------------------------------
    def on_tick(self, tick: Tick, ctx: StrategyContext) -> Sequence[Signal | OrderIntent]:
        if not self._positions or not self.protects:
            return ()
        if tick.ts_ns >= self._day_end_ns:
            self._roll_day(tick.ts_ns)
        out: list[Signal | OrderIntent] = []
        for position in self._positions.values():
            if position.pending_intent or position.quantity == 0 or tick.ts_ns < position.retry_exit_at_ns:
                continue
            if tick.ts_ns >= self._exit_ns:
                out.append(self._exit(position, tick, ctx, "time_exit"))
            elif tick.instrument_token and tick.instrument_token == position.contract.instrument_token:
                if position.quantity > 0:
                    hit = position.stop_price > 0 and (tick.bid or tick.last_price) <= position.stop_price
                else:
                    hit = position.stop_price > 0 and (tick.ask or tick.last_price) >= position.stop_price
                if hit:
                    out.append(self._exit(position, tick, ctx, "stop_loss"))
        return out

    def on_fill(self, fill: Fill) -> None:
        position = self._positions.get(_key(fill.contract))
        if position is None or position.quantity == 0:
            return
        # Only what reduces the position counts (our exits, a flatten); it never flips it. Fills that add to it
        # belong to someone else's entry on the same contract.
        reducing = fill.side.sign != (1 if position.quantity > 0 else -1)
        if not reducing:
            return
        sign = 1 if position.quantity > 0 else -1
        position.quantity -= sign * min(fill.quantity, abs(position.quantity))
        if position.quantity == 0 and not position.pending_intent:
            self._close(position, fill.ts_ns)

    def on_order_update(self, update: OrderUpdate) -> None:
        if not update.status.is_terminal:
            return
        for position in list(self._positions.values()):
            if position.pending_intent != update.intent_id:
                continue
            position.pending_intent = ""
            if position.quantity == 0:
                self._close(position, update.ts_ns)
            else:
                position.retry_exit_at_ns = update.ts_ns + _EXIT_RETRY_NS  # retry, but not on every tick

    def _close(self, position: _Adopted, ts_ns: int) -> None:
        del self._positions[_key(position.contract)]
        log.info("adopted_position_closed", tradingsymbol=position.contract.tradingsymbol,
                 reason=position.exit_reason or "closed outside the keeper", event_ts_ns=ts_ns)

    def _roll_day(self, ts_ns: int) -> None:
        day = datetime.fromtimestamp(ts_ns / _NS, tz=IST).date()
        self._exit_ns = self._at(day, self.policy.exit_time)
        self._day_end_ns = self._at(day + timedelta(days=1), time(0))

    @staticmethod
    def _at(day: date, t: time) -> int:
        return int(datetime.combine(day, t, tzinfo=IST).timestamp()) * _NS

    def _exit(self, position: _Adopted, tick: Tick, ctx: StrategyContext, reason: str) -> OrderIntent:
        contract = position.contract
        side = Side.SELL if position.quantity > 0 else Side.BUY
        quote = ctx.quote(contract.instrument_token) if contract.instrument_token else None
        expected = 0 if quote is None else (quote.bid if side is Side.SELL else quote.ask) or quote.last_price
        intent = OrderIntent(
            ts_ns=tick.ts_ns, intent_id=ctx.ids.next("I"), strategy_id=self.strategy_id, contract=contract,
            side=side, quantity=abs(position.quantity), order_type=OrderType.MARKET, purpose=IntentPurpose.EXIT,
            expected_price=expected, market_protection=self.policy.market_protection,
            reason=f"adopted position: {reason}")
        position.pending_intent = intent.intent_id
        position.exit_reason = reason
        return intent

    # -- adoption and state -------------------------------------------------------------------------------
    def adopt_fill(self, fill: Fill, quantity: int, origin: str = MANUAL_STRATEGY_ID) -> None:
        """Take ``quantity`` units of ``fill`` (the part no strategy took) as a position to keep: it opens one, or
        adds to (or turns) the one held on that contract, at the fill's price; the stop follows the new average."""
        if quantity <= 0:
            return
        key = _key(fill.contract)
        signed = fill.side.sign * quantity
        position = self._positions.get(key)
        if position is None:
            position = self._positions[key] = _Adopted(contract=fill.contract, quantity=0, average_price=0,
                                                       stop_price=0, opened_ns=fill.ts_ns, origin=origin)
        held = position.quantity
        new = held + signed
        if held == 0 or held * signed > 0:  # opens or adds: the average moves
            position.average_price = (abs(held) * position.average_price + quantity * fill.price) // abs(new)
        elif new * held < 0:  # turned through zero: the rest is a new position at this price
            position.average_price, position.opened_ns = fill.price, fill.ts_ns
        position.quantity = new
        if new == 0:
            if not position.pending_intent:
                self._close(position, fill.ts_ns)
            return
        position.stop_price = self._stop_for(new, position.average_price)
        log.warning("position_adopted", tradingsymbol=fill.contract.tradingsymbol, quantity=new,
                    average_inr=to_rupees(position.average_price), policy=self.policy.policy,
                    stop_inr=to_rupees(position.stop_price),
                    exit_time=self.policy.exit_time.isoformat() if self.protects else "", owner=origin,
                    fill_id=fill.fill_id, intent_id=fill.intent_id,
                    what=f"opened by a {origin} order that no strategy took: "
                         + ("the keeper holds a protective stop and the time exit" if self.protects
                            else "reported only, never closed by the daemon"))
        self._reported.add(key)

    def _stop_for(self, quantity: int, average_price: int) -> int:
        if not self.protects or average_price <= 0:
            return 0
        if quantity > 0:
            return math.floor(average_price * (1 - self.policy.stop_loss_pct))
        return math.ceil(average_price * (1 + self.policy.stop_loss_pct))

    def snapshot_state(self) -> dict[str, object]:
        return {
            "version": STATE_VERSION, "strategy_id": self.strategy_id, "policy": self.policy.policy,
            "positions": [
                {"contract": contract_to_dict(p.contract), "quantity": p.quantity, "average_price": p.average_price,
                 "stop_price": p.stop_price, "opened_ns": p.opened_ns, "origin": p.origin,
                 "pending_intent": p.pending_intent, "exit_reason": p.exit_reason,
                 "retry_exit_at_ns": p.retry_exit_at_ns}
                for p in self._positions.values()
            ],
        }

    def _read_state(self, state: Mapping[str, object]) -> dict[str, _Adopted]:
        doc = DocReader(state)
        check_header(doc, self.strategy_id, STATE_VERSION)
        doc.text("policy", choices=POLICIES)
        saved: dict[str, _Adopted] = {}
        for item in doc.items("positions"):
            position = _Adopted(
                contract=item.contract("contract"), quantity=item.integer("quantity"),
                average_price=item.integer("average_price", minimum=0),
                stop_price=item.integer("stop_price", minimum=0),
                opened_ns=item.integer("opened_ns", minimum=0), origin=item.text("origin"),
                pending_intent=item.text("pending_intent"), exit_reason=item.text("exit_reason"),
                retry_exit_at_ns=item.integer("retry_exit_at_ns", minimum=0))
            if position.quantity == 0 and not position.pending_intent:
                raise ValueError(f"{item.name('quantity')}: 0 with no order working: nothing to keep")
            saved[_key(position.contract)] = position
        return saved

    def restore_state(self, state: Mapping[str, object] | None,
                      held: Sequence[RestoredPosition]) -> list[RestoredPosition]:
        """Adopt every non-zero position offered; the broker's quantity and price win, a saved stop and a working
        exit are kept when the saved position is on the same contract and side. Returns the zero positions."""
        saved = self._read_state(state) if state is not None else {}
        positions: dict[str, _Adopted] = {}
        for restored in held:
            if restored.quantity == 0:
                continue
            key = _key(restored.contract)
            before = saved.get(key)
            same_side = before is not None and (before.quantity > 0) == (restored.quantity > 0)
            position = _Adopted(
                contract=restored.contract, quantity=restored.quantity, average_price=restored.average_price,
                stop_price=self._stop_for(restored.quantity, restored.average_price), opened_ns=restored.opened_ns,
                origin=restored.strategy_id)
            if before is not None and (same_side or before.quantity == 0):
                if before.stop_price and self.protects and same_side:
                    position.stop_price = before.stop_price
                position.opened_ns = restored.opened_ns or before.opened_ns
                position.origin = restored.strategy_id or before.origin
                position.pending_intent, position.exit_reason = before.pending_intent, before.exit_reason
                position.retry_exit_at_ns = before.retry_exit_at_ns
            positions[key] = position
        self._positions = positions
        for key, position in positions.items():
            if key not in self._reported:
                self._reported.add(key)
                log.warning("position_adopted", tradingsymbol=position.contract.tradingsymbol,
                            quantity=position.quantity, average_inr=to_rupees(position.average_price),
                            policy=self.policy.policy, stop_inr=to_rupees(position.stop_price),
                            exit_time=self.policy.exit_time.isoformat() if self.protects else "",
                            owner=position.origin or "unknown",
                            what="no strategy claims this position: "
                                 + ("the keeper holds a protective stop and the time exit" if self.protects
                                    else "reported only, never closed by the daemon"))
        return [p for p in held if p.quantity == 0]

    def holdings(self) -> list[Holding]:
        return [Holding(self.strategy_id, p.contract, p.quantity, p.average_price, p.stop_price, 0,
                        self._exit_ns if self.protects else 0, p.pending_intent)
                for p in self._positions.values()]

    def pending_intents(self) -> list[str]:
        return [p.pending_intent for p in self._positions.values() if p.pending_intent]
