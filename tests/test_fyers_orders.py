"""Fyers order reports (order-book rows and order-socket messages) → OrderUpdate / Fill through the shared tracker:
statuses, cumulative fills, duplicates, out-of-order and malformed reports; never a duplicated or invented fill."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from trader.adapters.fyers.orders import order_status, socket_order_row, to_report
from trader.adapters.order_tracker import OrderTracker, PostbackError
from trader.clock import NS_PER_SECOND, SimClock
from trader.events import Fill, IntentPurpose, OrderIntent, OrderStatus, OrderType, OrderUpdate, Side
from trader.market.instruments import OptionContract, OptionType

TAG = "ENT0ABCDEF100000001"
START_NS = 1_764_561_600 * NS_PER_SECOND


def contract() -> OptionContract:
    return OptionContract(exchange="NFO", tradingsymbol="NIFTY26D0326000CE", underlying="NIFTY",
                          expiry=date(2026, 12, 3), strike=2_600_000, option_type=OptionType.CE, lot_size=75,
                          tick_size=5, instrument_token=101126120339395)


def intent(quantity: int = 150, side: Side = Side.BUY) -> OrderIntent:
    return OrderIntent(ts_ns=START_NS, intent_id=TAG, strategy_id="s1", contract=contract(), side=side,
                       quantity=quantity, order_type=OrderType.LIMIT, purpose=IntentPurpose.ENTRY,
                       expected_price=10_150, limit_price=10_150)


def row(status: int = 6, filled: int = 0, price: float = 0.0, **extra: Any) -> dict[str, Any]:
    """An order-book row as GET /orders lists it (API v3 docs' sample fields)."""
    return {"id": "26120100001", "exchOrdId": "1100000012345", "symbol": "NSE:NIFTY26D0326000CE", "qty": 150,
            "remainingQuantity": 150 - filled, "filledQty": filled, "status": status, "type": 1, "side": 1,
            "limitPrice": 101.5, "stopPrice": 0, "tradedPrice": price, "productType": "INTRADAY",
            "fyToken": "101126120339395", "orderValidity": "DAY", "orderDateTime": "01-Dec-2026 09:15:02",
            "message": "", "orderTag": f"2:{TAG}", **extra}


def tracker() -> OrderTracker:
    t = OrderTracker(SimClock(START_NS))
    t.expect(intent(), TAG)
    t.placed(TAG, "26120100001")
    return t


def test_statuses() -> None:
    assert order_status(2) is OrderStatus.COMPLETE and order_status(5) is OrderStatus.REJECTED
    assert order_status(1) is OrderStatus.CANCELLED and order_status(7) is OrderStatus.CANCELLED
    assert order_status(6) is OrderStatus.OPEN and order_status(6, 3) is OrderStatus.TRIGGER_PENDING
    assert order_status(4) is OrderStatus.PENDING and order_status(3) is OrderStatus.PENDING
    assert order_status(99) is OrderStatus.PENDING  # unknown: never terminal


def test_cumulative_reports_become_fills_once() -> None:
    t = tracker()
    events = t.on_postback(to_report(row(6, 75, 101.5)))
    assert [type(e) for e in events] == [Fill, OrderUpdate]
    fill = events[0]
    assert isinstance(fill, Fill) and (fill.quantity, fill.price) == (75, 10_150)
    assert t.on_postback(to_report(row(6, 75, 101.5))) == []  # a repeat adds nothing
    events = t.on_postback(to_report(row(2, 150, 101.75)))  # average 101.75 over 150 → second 75 at 102.00
    fills = [e for e in events if isinstance(e, Fill)]
    assert [(f.quantity, f.price) for f in fills] == [(75, 10_200)]
    assert isinstance(events[-1], OrderUpdate) and events[-1].status is OrderStatus.COMPLETE
    assert t.on_postback(to_report(row(2, 150, 101.75))) == []  # nothing after a terminal state
    assert t.on_postback(to_report(row(6, 75, 101.5))) == []  # a stale report after the end


def test_socket_messages_use_the_order_book_shape() -> None:
    message = {"id": "26120100001", "qty": 150, "qty_filled": 150, "qty_remaining": 0, "price_traded": 101.5,
               "org_ord_status": 2, "ord_type": 1, "tran_side": 1, "ordertag": TAG, "oms_msg": "TRADE CONFIRMED",
               "symbol": "NSE:NIFTY26D0326000CE", "fy_token": "101126120339395", "unknown_field": 1}
    renamed = socket_order_row(message)
    assert "unknown_field" not in renamed and renamed["filledQty"] == 150
    report = to_report(renamed)
    assert report["status"] == "COMPLETE" and report["tag"] == TAG and report["pending_quantity"] == 0
    events = tracker().on_postback(report)
    assert [(e.quantity, e.price) for e in events if isinstance(e, Fill)] == [(150, 10_150)]


@pytest.mark.parametrize("bad", [
    {"id": ""}, {"qty": "many"}, {"filledQty": 200}, {"filledQty": -1}, {"status": None}, {"tradedPrice": "x"},
    {"id": None},
])
def test_malformed_reports_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(PostbackError):
        to_report(row(6, 75, 101.5) | bad)


def test_a_fill_beyond_the_order_is_dropped_not_booked() -> None:
    t = OrderTracker(SimClock(START_NS))
    t.expect(intent(quantity=75), TAG)
    t.placed(TAG, "26120100001")
    assert t.on_postback(to_report(row(2, 150, 101.5))) == []  # 150 filled of our 75: logged and dropped


def test_an_untagged_order_is_not_ours() -> None:
    t = tracker()
    assert t.on_postback(to_report(row(2, 150, 101.5, id="999", orderTag="1:Untagged"))) == []


def test_a_report_without_filled_qty_is_refused_not_read_as_nothing_filled() -> None:
    traded = row(2, 150, 101.5)
    del traded["filledQty"]
    with pytest.raises(PostbackError):  # a "traded" report with 0 filled would end the order with nothing booked
        to_report(traded)


def test_the_report_names_the_orders_contract_and_side() -> None:
    report = to_report(row(6, side=-1, symbol="BSE:SENSEX26D0385000CE"))
    assert (report["exchange"], report["tradingsymbol"], report["transaction_type"]) == \
        ("BFO", "SENSEX26D0385000CE", "SELL")
    with pytest.raises(PostbackError):
        to_report(row(6, side=2))
