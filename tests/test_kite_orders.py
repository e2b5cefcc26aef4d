"""Order postbacks become exactly the new OrderUpdates and Fills — repeats, reorders and strangers add nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from trader.adapters.kite.orders import OrderTracker
from trader.clock import SimClock
from trader.events import Fill, IntentPurpose, OrderIntent, OrderStatus, OrderType, OrderUpdate, Side
from trader.market.instruments import OptionContract

from helpers import FIXTURES, T0, captured_logs

pytestmark = pytest.mark.usefixtures("quiet_logs")

CE = OptionContract.parse("NIFTY26NOV26000CE", instrument_token=101)
INTENT = OrderIntent(ts_ns=T0, intent_id="I1", strategy_id="s", contract=CE, side=Side.BUY, quantity=130,
                     order_type=OrderType.MARKET, purpose=IntentPurpose.ENTRY, expected_price=10_000)


def postback(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "postback.json").read_text())  # the real payload shape
    data.update({"tag": "I1", "order_id": "O1", "exchange": "NFO", "tradingsymbol": CE.tradingsymbol,
                 "quantity": 130}, **changes)
    return data


def tracker() -> OrderTracker:
    t = OrderTracker(SimClock(T0))
    t.expect(INTENT, "I1")
    t.placed("I1", "O1")  # the order id our place_order reply named
    return t


def test_partial_then_complete_gives_two_fills_at_the_implied_prices() -> None:
    t = tracker()
    first = t.on_postback(postback(status="OPEN", filled_quantity=65, pending_quantity=65, average_price=100.0))
    second = t.on_postback(postback(status="COMPLETE", filled_quantity=130, pending_quantity=0, average_price=100.5))
    fills = [e for e in first + second if isinstance(e, Fill)]
    assert [(f.quantity, f.price) for f in fills] == [(65, 10_000), (65, 10_100)]  # 100.5 avg ⇒ 2nd at 101.00
    assert fills[0].charges > fills[1].charges  # brokerage once per order, on its first fill
    assert [f.intent_id for f in fills] == ["I1", "I1"] and fills[0].expected_price == 10_000
    updates = [e for e in first + second if isinstance(e, OrderUpdate)]
    assert [(u.status, u.filled_quantity) for u in updates] == [(OrderStatus.OPEN, 65), (OrderStatus.COMPLETE, 130)]
    assert isinstance(second[0], Fill) and isinstance(second[-1], OrderUpdate)  # the fill comes before the update


def test_repeats_stale_reports_and_anything_after_a_terminal_state_add_nothing() -> None:
    t = tracker()
    t.on_postback(postback(status="OPEN", filled_quantity=65, average_price=100.0))
    assert t.on_postback(postback(status="OPEN", filled_quantity=65, average_price=100.0)) == []
    assert t.on_postback(postback(status="OPEN", filled_quantity=0, average_price=0)) == []
    done = t.on_postback(postback(status="COMPLETE", filled_quantity=130, average_price=100.0))
    assert len(done) == 2
    assert t.on_postback(postback(status="COMPLETE", filled_quantity=130, average_price=100.0)) == []
    assert t.on_postback(postback(status="CANCELLED", filled_quantity=130, average_price=100.0)) == []


def test_rejection_and_strangers_and_garbage() -> None:
    t = tracker()
    [update] = t.on_postback(postback(status="REJECTED", filled_quantity=0, average_price=0,
                                      status_message="Insufficient funds"))
    assert isinstance(update, OrderUpdate)
    assert update.status is OrderStatus.REJECTED and update.reason == "Insufficient funds"
    assert tracker().on_postback(postback(tag="SOMEONEELSE", order_id="O9")) == []  # placed from the web: ignored
    assert tracker().on_postback(postback(order_id="")) == []
    assert tracker().on_postback(postback(status="OPEN", filled_quantity=65, average_price="100")) == []


def test_a_report_without_tag_is_tied_by_its_order_id_once_known() -> None:
    t = tracker()
    t.on_postback(postback(status="OPEN", filled_quantity=0, average_price=0))
    events = t.on_postback(postback(tag=None, status="COMPLETE", filled_quantity=130, average_price=99.95))
    fill, update = events
    assert isinstance(fill, Fill) and isinstance(update, OrderUpdate)
    assert fill.price == 9_995


def test_implausible_reports_are_refused_and_never_crash() -> None:
    t = tracker()
    assert t.on_postback(postback(status="COMPLETE", filled_quantity=260, average_price=100.0)) == []  # > ordered
    assert t.on_postback(postback(status="OPEN", filled_quantity=65, average_price=0)) == []  # a fill at no price
    t.on_postback(postback(status="OPEN", filled_quantity=65, average_price=100.0))
    # A cumulative average that would make the next execution free (or negative) is refused, not booked.
    assert t.on_postback(postback(status="COMPLETE", filled_quantity=130, average_price=40.0)) == []
    done = t.on_postback(postback(status="COMPLETE", filled_quantity=130, average_price=100.0))
    assert [type(e) for e in done] == [Fill, OrderUpdate]


def test_two_orders_under_one_tag_are_tracked_apart_so_no_fill_is_lost() -> None:
    t = tracker()
    first = t.on_postback(postback(order_id="O1", status="COMPLETE", filled_quantity=130, average_price=100.0))
    # A second order id under the tag is booked only as the broker's own record (order book, history).
    assert t.on_postback(postback(order_id="O2", status="OPEN", filled_quantity=65, average_price=101.0)) == []
    second = t.on_postback(postback(order_id="O2", status="OPEN", filled_quantity=65, average_price=101.0),
                           confirmed=True)
    fills = [e for e in first + second if isinstance(e, Fill)]
    assert [(f.order_id, f.quantity) for f in fills] == [("O1", 130), ("O2", 65)]


def test_an_order_id_never_seen_is_not_booked_until_confirmed_even_under_our_tag() -> None:
    t = OrderTracker(SimClock(T0))
    t.expect(INTENT, "I1")
    forged = postback(order_id="F999", status="COMPLETE", filled_quantity=65, average_price=1.0)
    assert t.needs_confirmation(forged)
    assert t.on_postback(forged) == []  # held back: the broker must confirm the order first
    assert not t.needs_confirmation(postback(tag="SOMEONEELSE", order_id="O9"))  # not ours: just ignored
    t.placed("I1", "O1")
    assert not t.needs_confirmation(postback())  # named by our own reply: trusted at once
    assert [type(e) for e in t.on_postback(postback(status="OPEN", filled_quantity=65, average_price=100.0))] == \
        [Fill, OrderUpdate]
    t.placed("NOTOURS", "O7")  # a tag we never expected is not adopted by a reply
    assert not t.is_known("O7")


I2 = OrderIntent(ts_ns=T0, intent_id="I2", strategy_id="s", contract=CE, side=Side.BUY, quantity=65,
                 order_type=OrderType.MARKET, purpose=IntentPurpose.ENTRY, expected_price=10_000)


def test_a_known_order_reported_under_another_intents_tag_is_dropped_and_its_real_fill_kept() -> None:
    t = tracker()
    t.expect(I2, "I2")
    t.placed("I2", "O2")
    with captured_logs() as logs:
        # O1 is I1's order; a report for it under I2's tag must not be booked to I2 (nor take O1 over) ...
        assert t.on_postback(postback(tag="I2", status="OPEN", filled_quantity=65, average_price=100.0)) == []
    [line] = [entry for entry in logs if entry["event"] == "postback_tag_mismatch"]
    assert line["level"] == "warning" and (line["order_id"], line["tag"], line["reported_tag"]) == ("O1", "I1", "I2")
    # ... and O1's real fill, all 130 of I1's units, is still booked to I1.
    events = t.on_postback(postback(status="COMPLETE", filled_quantity=130, average_price=100.0))
    assert [(f.intent_id, f.order_id, f.quantity) for f in events if isinstance(f, Fill)] == [("I1", "O1", 130)]


@pytest.mark.parametrize("claim", [{"tradingsymbol": "NIFTY26NOV26000PE"}, {"transaction_type": "SELL"},
                                   {"exchange": "BFO"}])
def test_a_report_contradicting_the_known_orders_contract_or_side_is_dropped(claim: dict[str, Any]) -> None:
    t = tracker()
    with captured_logs() as logs:
        assert t.on_postback(postback(status="COMPLETE", filled_quantity=130, average_price=100.0, **claim)) == []
    [line] = [entry for entry in logs if entry["event"] == "postback_contradicts_order"]
    assert line["level"] == "error" and line["order_id"] == "O1" and line["tag"] == "I1"
    # the order's own reports still count
    events = t.on_postback(postback(status="COMPLETE", filled_quantity=130, average_price=100.0))
    assert [(f.side, f.quantity) for f in events if isinstance(f, Fill)] == [(Side.BUY, 130)]


def test_a_confirmed_record_under_our_tag_for_another_contract_is_neither_booked_nor_made_ours() -> None:
    t = tracker()
    row = postback(order_id="O9", status="COMPLETE", filled_quantity=130, average_price=100.0,
                   tradingsymbol="NIFTY26NOV26000PE", transaction_type="SELL")
    assert t.on_postback(row, confirmed=True) == []
    assert not t.is_known("O9")


def test_a_complete_report_short_of_the_orders_quantity_is_malformed_and_dropped() -> None:
    t = tracker()
    with captured_logs() as logs:
        assert t.on_postback(postback(status="COMPLETE", filled_quantity=65, average_price=100.0)) == []
    assert any(entry["event"] == "postback_rejected" and "COMPLETE" in entry["problem"] for entry in logs)
    # the order is not finished by it: its real completion is booked
    events = t.on_postback(postback(status="COMPLETE", filled_quantity=130, average_price=100.0))
    assert [f.quantity for f in events if isinstance(f, Fill)] == [130]
    assert isinstance(events[-1], OrderUpdate) and events[-1].status is OrderStatus.COMPLETE


def test_a_trades_row_without_a_trade_id_is_refused_never_given_an_empty_one() -> None:
    # Two trades of one order with the same made-up id "" would be one fill to the reconciliation gate.
    from trader.adapters.kite.broker import _broker_trade  # noqa: PLC0415 - the row reader under test
    from trader.adapters.ports import BrokerUnavailable  # noqa: PLC0415

    row = {"order_id": "O1", "transaction_type": "BUY", "quantity": 75, "average_price": 101.5,
           "tradingsymbol": "NIFTY26D0326000CE", "instrument_token": 12345}
    for missing in ({}, {"trade_id": ""}, {"trade_id": "  "}, {"trade_id": None}):
        with pytest.raises(BrokerUnavailable, match="without a trade_id"):
            _broker_trade({**row, **missing})
    assert _broker_trade({**row, "trade_id": "T9"}).trade_id == "T9"
