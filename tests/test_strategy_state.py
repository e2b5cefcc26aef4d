"""ema_crossover_enhanced across a restart: snapshot, restore, the broker's word over the document."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_strategy import RALLY, Driver, at, entered_driver

from trader.events import IntentPurpose, OrderIntent, OrderStatus, OrderUpdate, Side
from trader.market.instruments import OptionContract, OptionType
from trader.strategies.base import RestoredPosition
from trader.strategies.ema_crossover import STRATEGY_NAME, EmaCrossoverParams


def saved_doc(driver: Driver) -> dict[str, Any]:
    """What the journal gives back: the snapshot through JSON."""
    doc: dict[str, Any] = json.loads(json.dumps(driver.strategy.snapshot_state()))
    return doc


def held(contract: OptionContract, quantity: int = 65, price: int = 10_000,
         strategy_id: str = STRATEGY_NAME, opened_ns: int = 0) -> RestoredPosition:
    return RestoredPosition(contract=contract, quantity=quantity, average_price=price, strategy_id=strategy_id,
                            opened_ns=opened_ns)


def restarted(params: EmaCrossoverParams | None = None) -> Driver:
    return Driver(params)


def exits(produced: list[Any]) -> list[OrderIntent]:
    return [p for p in produced if isinstance(p, OrderIntent) and p.purpose is IntentPurpose.EXIT]


def test_round_trip_keeps_the_position_and_its_levels() -> None:
    driver, entry = entered_driver()
    doc = saved_doc(driver)
    assert doc["phase"] == "open" and doc["quantity"] == 65 and doc["cost"] == 65 * 10_000
    assert doc["contract"]["tradingsymbol"] == entry.contract.tradingsymbol
    assert 6_999 <= doc["stop_price"] <= 7_000 and 16_000 <= doc["target_price"] <= 16_001

    after = restarted()
    assert after.strategy.restore_state(doc, [held(entry.contract)]) == []
    assert saved_doc(after) == doc
    [holding] = after.strategy.holdings()
    assert (holding.contract, holding.quantity, holding.average_price) == (entry.contract, 65, 10_000)
    assert (holding.stop_price, holding.target_price) == (doc["stop_price"], doc["target_price"])


def test_stop_and_target_survive_even_when_the_parameters_changed() -> None:
    driver, entry = entered_driver()
    doc = saved_doc(driver)
    # The operator changed the stop to 50 % and the target to 100 % before the restart: the open trade keeps the
    # levels it was entered with.
    stop = restarted(EmaCrossoverParams(confirm_bars=3, stop_loss_pct=0.5, target_pct=1.0))
    stop.strategy.restore_state(doc, [held(entry.contract)])
    assert stop.option(entry.contract, at(10, 31), 7_500) == []
    [stopped] = exits(stop.option(entry.contract, at(10, 32), 6_900))
    assert (stopped.reason, stopped.side, stopped.quantity) == ("stop_loss", Side.SELL, 65)

    target = restarted(EmaCrossoverParams(confirm_bars=3, stop_loss_pct=0.5, target_pct=1.0))
    target.strategy.restore_state(doc, [held(entry.contract)])
    assert target.option(entry.contract, at(10, 31), 15_900) == []
    assert [e.reason for e in exits(target.option(entry.contract, at(10, 32), 16_100))] == ["target"]


def test_time_exit_survives() -> None:
    driver, entry = entered_driver()
    doc = saved_doc(driver)
    assert doc["time_exit_ns"] == at(15, 10)
    after = restarted()
    after.strategy.restore_state(doc, [held(entry.contract)])
    assert after.option(entry.contract, at(15, 9, 59), 10_000) == []
    assert [e.reason for e in exits(after.option(entry.contract, at(15, 10), 10_000))] == ["time_exit"]


def test_the_broker_quantity_wins_and_the_stop_stays() -> None:
    driver, entry = entered_driver()
    doc = saved_doc(driver)
    after = restarted()
    # The broker holds 130 (a fill the document never saw): all of it is managed, with the saved stop.
    assert after.strategy.restore_state(doc, [held(entry.contract, quantity=130, price=9_000)]) == []
    [holding] = after.strategy.holdings()
    assert holding.quantity == 130 and holding.stop_price == doc["stop_price"]
    [stopped] = exits(after.option(entry.contract, at(10, 32), 6_900))
    assert stopped.quantity == 130


def test_a_position_on_another_contract_is_not_claimed() -> None:
    driver, _entry = entered_driver()
    doc = saved_doc(driver)
    other = driver.contracts[(26_500, OptionType.PE)]
    after = restarted()
    position = held(other)
    assert after.strategy.restore_state(doc, [position]) == [position]
    assert after.strategy.holdings() == [] and saved_doc(after)["phase"] == "flat"


def test_a_position_closed_while_down_leaves_the_strategy_flat() -> None:
    driver, entry = entered_driver()
    after = restarted()
    assert after.strategy.restore_state(saved_doc(driver), []) == []
    assert after.strategy.holdings() == []
    assert exits(after.option(entry.contract, at(10, 32), 6_000)) == []


def test_short_positions_are_never_claimed() -> None:
    driver, entry = entered_driver()
    after = restarted()
    short = held(entry.contract, quantity=-65)
    assert after.strategy.restore_state(saved_doc(driver), [short]) == [short]
    assert after.strategy.restore_state(None, [short]) == [short]


def test_without_a_document_the_broker_position_gets_the_strategy_levels() -> None:
    contract = Driver().contracts[(26_000, OptionType.CE)]
    after = restarted()
    assert after.strategy.restore_state(None, [held(contract, price=20_000)]) == []
    [holding] = after.strategy.holdings()
    assert (holding.quantity, holding.average_price) == (65, 20_000)
    assert 13_999 <= holding.stop_price <= 14_000 and 32_000 <= holding.target_price <= 32_001
    assert [e.quantity for e in exits(after.option(contract, at(10, 32), 13_900))] == [65]


def test_a_pending_exit_survives_and_is_not_sent_twice() -> None:
    driver, entry = entered_driver()
    [first] = exits(driver.option(entry.contract, at(10, 32), 6_900))
    doc = saved_doc(driver)
    assert doc["phase"] == "exiting" and doc["pending_intent"] == first.intent_id
    after = restarted()
    after.strategy.restore_state(doc, [held(entry.contract)])
    assert after.strategy.pending_intents() == [first.intent_id]
    assert exits(after.option(entry.contract, at(10, 33), 6_500)) == []  # the exit is still working
    # It ends unfilled: the position is still held, and the exit is retried after the pause.
    after.strategy.on_order_update(OrderUpdate(ts_ns=at(10, 34), intent_id=first.intent_id, order_id="O1",
                                               status=OrderStatus.CANCELLED, reason="test"))
    assert exits(after.option(entry.contract, at(10, 34, 1), 6_500)) == []
    [retry] = exits(after.option(entry.contract, at(10, 34, 6), 6_500))
    assert retry.quantity == 65 and retry.intent_id != first.intent_id


def test_a_pending_entry_survives_and_its_fill_opens_the_position() -> None:
    driver = Driver()
    driver.run_path(at(9, 30), RALLY)
    entry = driver.intents()[0]
    doc = saved_doc(driver)
    assert doc["phase"] == "entering" and doc["quantity"] == 0
    after = restarted()
    assert after.strategy.restore_state(doc, []) == []
    assert after.strategy.pending_intents() == [entry.intent_id]
    after.fill(entry, 10_000)
    [holding] = after.strategy.holdings()
    assert holding.quantity == 65 and 6_999 <= holding.stop_price <= 7_000


def test_no_entry_after_restoring_an_open_position() -> None:
    driver, entry = entered_driver()
    after = restarted()
    after.strategy.restore_state(saved_doc(driver), [held(entry.contract)])
    after.run_path(at(10, 35), RALLY)  # another bullish crossover, same direction as the call held
    assert after.signals() and [i for i in after.intents() if i.purpose is IntentPurpose.ENTRY] == []
    assert after.strategy.holdings()[0].quantity == 65


def _break(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    broken: dict[str, Any] = json.loads(json.dumps(doc))
    *parents, last = path.split(".")
    target = broken
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return broken


@pytest.mark.parametrize(("path", "value", "named"), [
    ("stop_price", "7000", "stop_price: expected an integer"),
    ("stop_price", True, "stop_price: expected an integer"),
    ("quantity", -65, "quantity: must be >= 0"),
    ("phase", KeyError, "phase: missing"),
    ("phase", "holding", "phase: expected one of"),
    ("version", 2, "version: this build reads version 1"),
    ("strategy_id", "other", "strategy_id: the document belongs to 'other'"),
    ("contract.lot_size", 0, "contract: invalid option contract"),
    ("contract.expiry", "someday", "contract.expiry: expected an ISO date"),
    ("contract.option_type", "XX", "contract.option_type: expected one of"),
    ("contract", [1, 2], "contract: expected an object"),
    ("pending_intent", 5, "pending_intent: expected a string"),
])
def test_a_malformed_document_is_refused_naming_the_field(path: str, value: Any, named: str) -> None:
    driver, entry = entered_driver()
    doc = _break(saved_doc(driver), path, value)
    after = restarted()
    before = saved_doc(after)
    with pytest.raises(ValueError, match=named):
        after.strategy.restore_state(doc, [held(entry.contract)])
    assert saved_doc(after) == before  # nothing half-restored


def test_inconsistent_documents_are_refused() -> None:
    driver, _entry = entered_driver()
    doc = saved_doc(driver)
    after = restarted()
    with pytest.raises(ValueError, match="quantity: phase open needs a position"):
        after.strategy.restore_state({**doc, "quantity": 0, "cost": 0}, [])
    with pytest.raises(ValueError, match="contract: missing for phase open"):
        after.strategy.restore_state({**doc, "contract": None}, [])
    with pytest.raises(ValueError, match="pending_intent: phase exiting"):
        after.strategy.restore_state({**doc, "phase": "exiting"}, [])
    with pytest.raises(ValueError, match="document: expected an object"):
        after.strategy.restore_state([], [])  # type: ignore[arg-type]
