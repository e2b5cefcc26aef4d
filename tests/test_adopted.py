"""The keeper of adopted positions: protective stop, time exit, never more than held, never for ``hold``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import time
from typing import Any

import pytest
from test_strategy import at, make_context

from trader.events import Fill, IntentPurpose, OrderIntent, OrderStatus, OrderType, OrderUpdate, Side, Signal, Tick
from trader.market.instruments import OptionContract, OptionType
from trader.strategies.adopted import AdoptedPolicy, AdoptedPositionKeeper
from trader.strategies.base import RestoredPosition

from helpers import captured_logs


class Keeper:
    def __init__(self, policy: AdoptedPolicy | None = None) -> None:
        self.keeper = AdoptedPositionKeeper(policy or AdoptedPolicy())
        self.ctx, contracts = make_context()
        self.call = contracts[(26_000, OptionType.CE)]
        self.put = contracts[(25_900, OptionType.PE)]

    def adopt(self, *positions: tuple[OptionContract, int, int], state: dict[str, Any] | None = None) -> None:
        held = [RestoredPosition(contract=c, quantity=q, average_price=p, strategy_id="", opened_ns=at(9, 40))
                for c, q, p in positions]
        assert self.keeper.restore_state(state, held) == []

    def option(self, contract: OptionContract, ts_ns: int, bid: int, ask: int | None = None) -> list[OrderIntent]:
        tick = Tick(ts_ns=ts_ns, instrument_token=contract.instrument_token, last_price=bid, bid=bid, bid_qty=650,
                    ask=ask if ask is not None else bid + 10, ask_qty=650)
        self.ctx.quotes[tick.instrument_token] = tick
        return intents(self.keeper.on_tick(tick, self.ctx))

    def fill(self, intent: OrderIntent, quantity: int, price: int, *, status: OrderStatus | None = None) -> None:
        self.keeper.on_fill(Fill(ts_ns=intent.ts_ns, fill_id=f"{intent.intent_id}F{quantity}",
                                 intent_id=intent.intent_id, order_id="O" + intent.intent_id,
                                 contract=intent.contract, side=intent.side, quantity=quantity, price=price,
                                 expected_price=intent.expected_price, charges=0, purpose=intent.purpose))
        if status is not None:
            self.keeper.on_order_update(OrderUpdate(ts_ns=intent.ts_ns, intent_id=intent.intent_id,
                                                    order_id="O" + intent.intent_id, status=status,
                                                    filled_quantity=quantity, average_price=price))

    def held(self) -> dict[str, int]:
        return {h.contract.tradingsymbol: h.quantity for h in self.keeper.holdings()}


def intents(produced: Sequence[Signal | OrderIntent]) -> list[OrderIntent]:
    assert all(isinstance(p, OrderIntent) for p in produced)  # the keeper never signals
    return [p for p in produced if isinstance(p, OrderIntent)]


def test_the_stop_fires_one_exit_of_exactly_the_held_quantity() -> None:
    k = Keeper()
    k.adopt((k.call, 130, 10_000))
    assert k.option(k.call, at(10, 0), 7_100) == []  # 29 % down: hold
    [exit_intent] = k.option(k.call, at(10, 1), 6_990)
    assert (exit_intent.side, exit_intent.quantity, exit_intent.purpose) == (Side.SELL, 130, IntentPurpose.EXIT)
    assert exit_intent.order_type is OrderType.MARKET and exit_intent.market_protection == -1
    assert exit_intent.strategy_id == "adopted" and exit_intent.expected_price == 6_990
    assert "stop_loss" in exit_intent.reason
    assert k.option(k.call, at(10, 2), 5_000) == []  # the exit is working: not sent again
    k.fill(exit_intent, 130, 6_980, status=OrderStatus.COMPLETE)
    assert k.held() == {} and k.option(k.call, at(10, 3), 4_000) == []


def test_the_time_exit_closes_every_position_on_any_tick() -> None:
    k = Keeper(AdoptedPolicy(exit_time=time(15, 10)))
    k.adopt((k.call, 65, 10_000), (k.put, 130, 8_000))
    assert k.option(k.call, at(15, 9, 59), 10_000) == []
    exits = k.option(k.call, at(15, 10), 10_000)
    assert sorted((e.contract.tradingsymbol, e.quantity, e.side) for e in exits) == sorted(
        [(k.call.tradingsymbol, 65, Side.SELL), (k.put.tradingsymbol, 130, Side.SELL)])
    assert all("time_exit" in e.reason for e in exits)


def test_policy_hold_never_sends_anything() -> None:
    k = Keeper(AdoptedPolicy(policy="hold"))
    k.adopt((k.call, 65, 10_000))
    assert k.option(k.call, at(10, 0), 100) == []
    assert k.option(k.call, at(15, 20), 100) == []
    [holding] = k.keeper.holdings()
    assert holding.quantity == 65 and holding.stop_price == 0


def test_no_exit_is_larger_than_what_is_left() -> None:
    k = Keeper()
    k.adopt((k.call, 130, 10_000))
    [first] = k.option(k.call, at(10, 1), 6_900)
    # Half fills, then the order is cancelled: the retry, after the pause, sells only the rest.
    k.fill(first, 65, 6_900, status=OrderStatus.CANCELLED)
    assert k.held() == {k.call.tradingsymbol: 65}
    assert k.option(k.call, at(10, 1, 1), 6_900) == []
    [retry] = k.option(k.call, at(10, 1, 6), 6_900)
    assert retry.quantity == 65
    # Another strategy buying the same contract does not grow what the keeper sells.
    k.keeper.on_fill(Fill(ts_ns=at(10, 2), fill_id="X1", intent_id="other", order_id="OX", contract=k.call,
                          side=Side.BUY, quantity=65, price=6_900, expected_price=6_900, charges=0))
    assert k.held() == {k.call.tradingsymbol: 65}
    # A flatten by the risk gate sells 100 (more than held): the position ends at 0, never short.
    k.keeper.on_fill(Fill(ts_ns=at(10, 2), fill_id="F1", intent_id="flatten", order_id="OF", contract=k.call,
                          side=Side.SELL, quantity=100, price=6_900, expected_price=6_900, charges=0,
                          purpose=IntentPurpose.EXIT))
    k.keeper.on_order_update(OrderUpdate(ts_ns=at(10, 3), intent_id=retry.intent_id, order_id="O2",
                                         status=OrderStatus.CANCELLED))
    assert k.held() == {}
    assert k.option(k.call, at(10, 5), 6_000) == [] and k.option(k.call, at(15, 15), 6_000) == []


def test_a_sell_never_exceeds_the_position_over_a_stream_of_ticks() -> None:
    k = Keeper()
    k.adopt((k.call, 195, 10_000), (k.put, 65, 9_000))
    held = {k.call.tradingsymbol: 195, k.put.tradingsymbol: 65}
    sold: dict[str, int] = {}
    ts = at(10, 0)
    for step in range(400):  # falling premiums, every exit filled partly and then cancelled
        ts += 3 * 1_000_000_000
        for contract in (k.call, k.put):
            for intent in k.option(contract, ts, 8_000 - step * 10):
                symbol = intent.contract.tradingsymbol
                assert intent.side is Side.SELL and intent.quantity <= held[symbol] - sold.get(symbol, 0)
                part = min(intent.quantity, 65)
                sold[symbol] = sold.get(symbol, 0) + part
                k.fill(intent, part, 6_000, status=OrderStatus.CANCELLED if part < intent.quantity
                       else OrderStatus.COMPLETE)
    assert sold == held and k.held() == {}


def test_a_short_is_covered_with_a_buy_of_exactly_its_size() -> None:
    k = Keeper()
    k.adopt((k.put, -65, 10_000))
    assert k.option(k.put, at(10, 0), 12_900, ask=12_990) == []
    [cover] = k.option(k.put, at(10, 1), 12_995, ask=13_005)
    assert (cover.side, cover.quantity, cover.expected_price) == (Side.BUY, 65, 13_005)


def test_adoption_is_logged_once_per_position_with_the_policy() -> None:
    k = Keeper()
    with captured_logs() as lines:
        k.adopt((k.call, 65, 10_000))
        k.adopt((k.call, 65, 10_000))
    adopted = [line for line in lines if line["event"] == "position_adopted"]
    assert len(adopted) == 1
    assert adopted[0]["policy"] == "protect" and adopted[0]["tradingsymbol"] == k.call.tradingsymbol
    assert adopted[0]["quantity"] == 65 and adopted[0]["stop_inr"] == 70.0


def saved(k: Keeper) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(k.keeper.snapshot_state()))
    return doc


def test_state_round_trip_keeps_the_stop_and_the_working_exit_and_the_broker_wins() -> None:
    k = Keeper()
    k.adopt((k.call, 130, 10_000))
    [working] = k.option(k.call, at(10, 1), 6_900)
    doc = saved(k)
    after = Keeper(AdoptedPolicy(stop_loss_pct=0.5))
    after.adopt((after.call, 65, 9_000), state=doc)  # the broker says 65 are left
    [holding] = after.keeper.holdings()
    assert (holding.quantity, holding.average_price, holding.stop_price) == (65, 9_000, 7_000)
    assert after.keeper.pending_intents() == [working.intent_id]
    assert after.option(after.call, at(10, 2), 6_000) == []  # still working
    after.keeper.on_order_update(OrderUpdate(ts_ns=at(10, 3), intent_id=working.intent_id, order_id="O",
                                             status=OrderStatus.CANCELLED))
    [retry] = after.option(after.call, at(10, 3, 5), 6_000)
    assert retry.quantity == 65
    # A position the saved document had but the broker no longer holds is forgotten.
    gone = Keeper()
    gone.adopt(state=doc)
    assert gone.keeper.holdings() == []


@pytest.mark.parametrize(("path", "value", "named"), [
    ("version", 3, "version"),
    ("policy", "close", "policy: expected one of"),
    ("positions", {}, "positions: expected a list"),
    ("positions.0.quantity", "130", r"positions\[0\].quantity: expected an integer"),
    ("positions.0.stop_price", -1, r"positions\[0\].stop_price: must be >= 0"),
    ("positions.0.contract.exchange", "NSE", r"positions\[0\].contract: invalid option contract"),
])
def test_a_malformed_keeper_document_is_refused_naming_the_field(path: str, value: Any, named: str) -> None:
    k = Keeper()
    k.adopt((k.call, 130, 10_000))
    doc = saved(k)
    target: Any = doc
    *parents, last = path.split(".")
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    target[last] = value
    with pytest.raises(ValueError, match=named):
        k.keeper.restore_state(doc, [])
    assert k.held() == {k.call.tradingsymbol: 130}  # unchanged


def test_policy_is_validated() -> None:
    with pytest.raises(ValueError, match="policy"):
        AdoptedPolicy(policy="close")
    with pytest.raises(ValueError, match="stop_loss_pct"):
        AdoptedPolicy(stop_loss_pct=30)
