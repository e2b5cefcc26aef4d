"""ema_crossover_enhanced across a restart: snapshot, restore, the broker's word over the document."""

from __future__ import annotations

import dataclasses
import json
from datetime import time
from typing import Any

import pytest
from test_strategy import RALLY, Driver, at, entered_driver

from trader.actors.strategy import StrategyActor
from trader.bus import EventBus
from trader.events import Fill, IntentPurpose, OrderIntent, OrderStatus, OrderUpdate, Side, Tick
from trader.market.instruments import OptionContract, OptionType
from trader.strategies.adopted import AdoptedPolicy, AdoptedPositionKeeper
from trader.strategies.base import RestoredPosition
from trader.strategies.ema_crossover import STRATEGY_NAME, EmaCrossoverParams

from helpers import captured_logs


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


# -- the host actor: routing restored positions, saving documents --------------------------------------------------

class Host:
    """A StrategyActor with one ema strategy, a recording ``save_state`` and a tap on the bus (no event loop)."""

    def __init__(self, *, fail_saves: bool = False) -> None:
        self.driver = Driver()
        self.bus = EventBus()
        self.trail: list[tuple[str, str, str]] = []  # ("save", name, phase) / ("publish", type, "")
        self.docs: dict[str, dict[str, object]] = {}
        self.fail_saves = fail_saves
        self.bus.tap(lambda event: self.trail.append(("publish", type(event).__name__, "")))
        self.actor = StrategyActor(self.bus, [self.driver.strategy], self.driver.ctx, save_state=self.save,
                                   keeper=AdoptedPositionKeeper(AdoptedPolicy(exit_time=time(15, 10))))

    def save(self, name: str, doc: dict[str, object]) -> None:
        if self.fail_saves:
            raise OSError("disk full")
        self.docs[name] = json.loads(json.dumps(doc))
        self.trail.append(("save", name, str(doc.get("phase", ""))))

    async def option(self, contract: OptionContract, ts_ns: int, price: int) -> None:
        await self.actor.handle(Tick(ts_ns=ts_ns, instrument_token=contract.instrument_token, last_price=price,
                                     bid=price - 5, bid_qty=650, ask=price + 5, ask_qty=650))


def test_restore_routes_owned_positions_and_gives_the_rest_to_the_keeper() -> None:
    driver, entry = entered_driver()
    doc = saved_doc(driver)
    host = Host()
    orphan = held(host.driver.contracts[(25_900, OptionType.PE)], quantity=130, price=8_000, strategy_id="")
    retired = held(host.driver.contracts[(26_100, OptionType.CE)], price=5_000, strategy_id="old_strategy")
    with captured_logs() as lines:
        host.actor.restore({STRATEGY_NAME: doc}, [held(entry.contract), orphan, retired])
    assert (host.actor.restored_positions, host.actor.adopted_positions) == (3, 2)
    assert host.actor.keeper in host.actor.strategies
    restored = {line["tradingsymbol"]: line for line in lines if line["event"] == "strategy_position_restored"}
    assert restored[entry.contract.tradingsymbol]["strategy"] == STRATEGY_NAME
    assert restored[entry.contract.tradingsymbol]["stop_inr"] == doc["stop_price"] / 100
    assert restored[orphan.contract.tradingsymbol]["strategy"] == "adopted"
    assert restored[orphan.contract.tradingsymbol]["stop_inr"] == 56.0
    assert {line["tradingsymbol"] for line in lines if line["event"] == "position_adopted"} == {
        orphan.contract.tradingsymbol, retired.contract.tradingsymbol}
    # Their ticks must reach the strategies, and each document is on disk after the restore.
    assert set(host.driver.ctx.held) == {entry.contract.instrument_token, orphan.contract.instrument_token,
                                         retired.contract.instrument_token}
    assert set(host.docs) == {f"strategy:{STRATEGY_NAME}", "strategy:adopted"}
    assert host.actor.state_names() == {STRATEGY_NAME: f"strategy:{STRATEGY_NAME}", "adopted": "strategy:adopted"}


def test_a_refused_document_leaves_the_strategy_flat_and_the_position_to_the_keeper() -> None:
    driver, entry = entered_driver()
    host = Host()
    with captured_logs("ERROR") as lines:
        host.actor.restore({STRATEGY_NAME: {**saved_doc(driver), "stop_price": "x"}}, [held(entry.contract)])
    [refused] = [line for line in lines if line["event"] == "strategy_state_refused"]
    assert "stop_price" in refused["error"] and refused["strategy"] == STRATEGY_NAME
    assert host.driver.strategy.holdings() == []
    assert [(h.strategy_id, h.quantity) for h in host.actor.holdings()] == [("adopted", 65)]


async def test_an_exit_is_saved_before_it_is_published_and_fills_are_saved_once() -> None:
    driver, entry = entered_driver()
    host = Host()
    host.actor.restore({STRATEGY_NAME: saved_doc(driver)}, [held(entry.contract)], booked_fill_ids=["old-fill"])
    host.trail.clear()
    await host.option(entry.contract, at(10, 31), 7_500)  # a tick that changes nothing writes nothing
    assert [t for t in host.trail if t[0] == "save"] == []
    await host.option(entry.contract, at(10, 32), 6_900)
    saves_then_intent = [t for t in host.trail if t[0] == "save" or t[1] == "OrderIntent"]
    assert saves_then_intent == [("save", f"strategy:{STRATEGY_NAME}", "exiting"), ("publish", "OrderIntent", "")]
    [exit_intent] = [e for e in host.driver.strategy.pending_intents()]
    fill = Fill(ts_ns=at(10, 32), fill_id="O9F65", intent_id=exit_intent, order_id="O9", contract=entry.contract,
                side=Side.SELL, quantity=65, price=6_900, expected_price=6_895, charges=0,
                purpose=IntentPurpose.EXIT)
    await host.actor.handle(fill)
    await host.actor.handle(fill)  # redelivered: not counted twice
    await host.actor.handle(dataclasses.replace(fill, fill_id="old-fill"))  # already in the restored position
    assert host.actor.duplicate_fills == 2
    assert host.docs[f"strategy:{STRATEGY_NAME}"]["quantity"] == 0
    await host.actor.handle(OrderUpdate(ts_ns=at(10, 32), intent_id=exit_intent, order_id="O9",
                                        status=OrderStatus.COMPLETE, filled_quantity=65, average_price=6_900))
    assert host.docs[f"strategy:{STRATEGY_NAME}"]["phase"] == "flat"
    assert host.actor.open_positions == 0 and host.driver.ctx.held == {}


async def test_the_keeper_exit_fill_reaches_the_keeper() -> None:
    host = Host()
    orphan = held(host.driver.contracts[(25_900, OptionType.PE)], quantity=130, price=8_000, strategy_id="")
    host.actor.restore({}, [orphan])
    await host.option(orphan.contract, at(10, 0), 5_000)
    [intent_id] = host.actor.keeper.pending_intents()
    await host.actor.handle(Fill(ts_ns=at(10, 0), fill_id="K1F130", intent_id=intent_id, order_id="K1",
                                 contract=orphan.contract, side=Side.SELL, quantity=130, price=5_000,
                                 expected_price=4_995, charges=0, purpose=IntentPurpose.EXIT))
    await host.actor.handle(OrderUpdate(ts_ns=at(10, 0), intent_id=intent_id, order_id="K1",
                                        status=OrderStatus.COMPLETE, filled_quantity=130, average_price=5_000))
    assert host.actor.open_positions == 0
    assert host.docs["strategy:adopted"]["positions"] == []


def test_an_intent_that_ended_while_down_is_ended_for_its_strategy() -> None:
    driver, entry = entered_driver()
    [lost] = exits(driver.option(entry.contract, at(10, 32), 6_900))
    host = Host()
    host.actor.restore({STRATEGY_NAME: saved_doc(driver)}, [held(entry.contract)], open_intent_ids=set())
    assert host.driver.strategy.pending_intents() == []
    [retry] = exits(host.driver.option(entry.contract, at(10, 33), 6_800))  # the stop is acted on again
    assert retry.intent_id != lost.intent_id and retry.quantity == 65
    kept = Host()
    kept.actor.restore({STRATEGY_NAME: saved_doc(driver)}, [held(entry.contract)], open_intent_ids={lost.intent_id})
    assert kept.driver.strategy.pending_intents() == [lost.intent_id]


async def test_a_state_that_cannot_be_saved_stops_entries_but_not_exits() -> None:
    driver, entry = entered_driver()
    host = Host(fail_saves=True)
    with captured_logs("ERROR") as lines:
        host.actor.restore({STRATEGY_NAME: saved_doc(driver)}, [held(entry.contract)])
    assert [line["event"] for line in lines] == ["strategy_state_save_failed"]
    assert host.driver.ctx.entries_allowed is False
    await host.option(entry.contract, at(10, 32), 6_900)
    assert [t[1] for t in host.trail if t[1] in ("OrderIntent", "OrderUpdate")] == ["OrderIntent"]  # the exit goes
