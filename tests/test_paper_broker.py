"""PaperBroker: the fill rules in the module docstring of ``trader/adapters/paper.py``.

All prices are paise. The contract is a NIFTY option (lot 65, tick 5 paise); the broker runs with 150 ms latency and
one adverse tick of slippage, so a MARKET buy on an ask of 100.00 fills at 100.05.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from datetime import date, datetime
from typing import TypedDict
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.adapters.paper import PaperBroker, PaperBrokerConfig
from trader.adapters.ports import OrderRejected
from trader.clock import SimClock
from trader.events import (
    Fill,
    IntentPurpose,
    OrderIntent,
    OrderRequest,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    Tick,
)
from trader.market.calendar import MarketCalendar
from trader.market.charges import option_charges
from trader.market.instruments import OptionContract

IST = ZoneInfo("Asia/Kolkata")
MS = 1_000_000
T0 = int(datetime(2025, 12, 1, 10, 0, tzinfo=IST).timestamp()) * 1_000_000_000
TOKEN = 123
CONTRACT = OptionContract.parse("NIFTY25DEC24000CE", instrument_token=TOKEN)
LOT = CONTRACT.lot_size
TICK = CONTRACT.tick_size
LATENCY_MS = 150
ACTIVE = T0 + LATENCY_MS * MS  # first instant an order placed at T0 may fill

_ids = itertools.count(1)


def test_contract_is_the_one_the_rules_below_assume() -> None:
    assert (LOT, TICK, CONTRACT.exchange) == (65, 5, "NFO")


class Harness:
    def __init__(self, *, latency_ms: int = LATENCY_MS, slippage_ticks: int = 1,
                 calendar: MarketCalendar | None = None) -> None:
        self.clock = SimClock(T0, speed=0)
        self.broker = PaperBroker(self.clock, PaperBrokerConfig(latency_ms=latency_ms, slippage_ticks=slippage_ticks),
                                  calendar)
        self.events: list[object] = []
        self.broker.attach(self.events.append)

    async def place(self, side: Side, quantity: int, order_type: OrderType, *, limit: int = 0, trigger: int = 0,
                    protection: float = -1.0, expected: int = 10_000) -> tuple[str, OrderRequest]:
        n = next(_ids)
        intent = OrderIntent(
            ts_ns=self.clock.now_ns(), intent_id=f"intent-{n}", strategy_id="test", contract=CONTRACT, side=side,
            quantity=quantity, order_type=order_type, purpose=IntentPurpose.ENTRY, expected_price=expected,
            limit_price=limit, trigger_price=trigger, market_protection=protection,
        )
        request = OrderRequest(ts_ns=self.clock.now_ns(), intent=intent, tag=f"tag-{n}")
        order_id = await self.broker.place_order(request)
        return order_id, request

    def quote(self, ts_ns: int, *, last: int, bid: int = 0, bid_qty: int = 0, ask: int = 0, ask_qty: int = 0) -> None:
        self.clock.jump_to(ts_ns)
        self.broker.on_tick(Tick(ts_ns=ts_ns, instrument_token=TOKEN, last_price=last, bid=bid, bid_qty=bid_qty,
                                 ask=ask, ask_qty=ask_qty))

    def fills(self, order_id: str | None = None) -> list[Fill]:
        return [e for e in self.events if isinstance(e, Fill) and order_id in (None, e.order_id)]

    def updates(self, order_id: str | None = None) -> list[OrderUpdate]:
        return [e for e in self.events if isinstance(e, OrderUpdate) and order_id in (None, e.order_id)]

    def statuses(self, order_id: str) -> list[OrderStatus]:
        return [u.status for u in self.updates(order_id)]


def book(mid: int, *, qty: int = 10 * LOT, spread: int = 10) -> dict[str, int]:
    """A quote around ``mid`` with plenty of size on both sides."""
    return {"last": mid, "bid": mid - spread, "bid_qty": qty, "ask": mid + spread, "ask_qty": qty}


# -- MARKET --------------------------------------------------------------------------------------------------


async def test_market_buy_waits_for_latency_then_fills_at_ask_plus_slippage() -> None:
    h = Harness()
    order_id, _ = await h.place(Side.BUY, LOT, OrderType.MARKET)
    assert h.fills() == []
    assert h.statuses(order_id) == [OrderStatus.OPEN]

    h.quote(T0, last=10_000, bid=9_990, bid_qty=650, ask=10_000, ask_qty=650)  # the quote it was decided on
    h.quote(ACTIVE - 1, last=10_000, bid=9_990, bid_qty=650, ask=10_010, ask_qty=650)  # latency not elapsed yet
    assert h.fills() == []
    assert h.statuses(order_id) == [OrderStatus.OPEN]

    h.quote(ACTIVE, last=10_020, bid=10_010, bid_qty=650, ask=10_030, ask_qty=650)
    h.quote(ACTIVE + 50 * MS, last=9_000, bid=8_990, bid_qty=650, ask=9_000, ask_qty=650)  # later: must not matter
    [fill] = h.fills()
    assert (fill.price, fill.quantity, fill.side, fill.ts_ns) == (10_030 + TICK, LOT, Side.BUY, ACTIVE)
    final = h.updates(order_id)[-1]
    assert (final.status, final.filled_quantity, final.pending_quantity, final.average_price) == (
        OrderStatus.COMPLETE, LOT, 0, 10_035)


async def test_slippage_ticks_setting_is_applied() -> None:
    h = Harness(slippage_ticks=3)
    await h.place(Side.BUY, LOT, OrderType.MARKET)
    h.quote(ACTIVE, **book(10_000))
    assert h.fills()[0].price == 10_010 + 3 * TICK


async def test_market_sell_fills_at_bid_minus_slippage() -> None:
    h = Harness()
    order_id, _ = await h.place(Side.SELL, 2 * LOT, OrderType.MARKET)
    h.quote(T0 + 100 * MS, last=10_000, bid=10_000, bid_qty=650, ask=10_010, ask_qty=650)
    assert h.fills() == []
    h.quote(ACTIVE + 1, last=10_000, bid=9_980, bid_qty=650, ask=9_990, ask_qty=650)
    [fill] = h.fills()
    assert (fill.price, fill.quantity, fill.side) == (9_980 - TICK, 2 * LOT, Side.SELL)
    assert h.statuses(order_id) == [OrderStatus.OPEN, OrderStatus.COMPLETE]


async def test_market_buy_beyond_auto_protection_stays_open_until_the_book_comes_back() -> None:
    h = Harness()
    order_id, request = await h.place(Side.BUY, LOT, OrderType.MARKET, protection=-1)
    # Auto protection is 3 %: last 100.00 → the order may not pay more than 103.00.
    h.quote(ACTIVE, last=10_000, bid=9_990, bid_qty=650, ask=10_305, ask_qty=650)
    assert h.fills() == []
    assert h.statuses(order_id) == [OrderStatus.OPEN]
    found = await h.broker.find_order_by_tag(request.tag)
    assert found is not None and found.status is OrderStatus.OPEN and found.filled_quantity == 0
    assert [o.order_id for o in await h.broker.open_orders()] == [order_id]

    h.quote(ACTIVE + 1 * MS, last=10_000, bid=9_990, bid_qty=650, ask=10_100, ask_qty=650)
    [fill] = h.fills()
    assert fill.price == 10_105
    assert h.statuses(order_id) == [OrderStatus.OPEN, OrderStatus.COMPLETE]
    assert await h.broker.open_orders() == []


async def test_market_buy_fill_is_capped_at_the_protection_price() -> None:
    h = Harness()
    await h.place(Side.BUY, LOT, OrderType.MARKET)
    h.quote(ACTIVE, last=10_000, bid=9_990, bid_qty=650, ask=10_300, ask_qty=650)  # ask exactly at the 3 % cap
    [fill] = h.fills()
    assert fill.price == 10_300  # ask + slippage would be 103.05, beyond the cap


async def test_market_sell_beyond_auto_protection_stays_open() -> None:
    h = Harness()
    order_id, _ = await h.place(Side.SELL, LOT, OrderType.MARKET)
    h.quote(ACTIVE, last=10_000, bid=9_695, bid_qty=650, ask=10_010, ask_qty=650)  # cap is 97.00
    assert h.fills() == []
    assert h.statuses(order_id) == [OrderStatus.OPEN]
    h.quote(ACTIVE + MS, last=10_000, bid=9_700, bid_qty=650, ask=10_010, ask_qty=650)
    [fill] = h.fills()
    assert fill.price == 9_700  # bid − slippage would be 96.95, below the cap


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
async def test_market_protection_is_not_fixed_by_a_quote_without_any_price(side: Side) -> None:
    # The first quote after latency has no last price and an empty book (an option that has not traded yet):
    # there is nothing to base the protection band on, so the band must come from the first quote that has one.
    h = Harness()
    order_id, _ = await h.place(side, LOT, OrderType.MARKET)
    h.quote(ACTIVE, last=0)
    assert h.fills() == []
    # Now LTP 100.00: the 3 % band is 97.00-103.00, and the touch is 50 % away from it.
    h.quote(ACTIVE + MS, last=10_000, bid=5_000, bid_qty=650, ask=20_000, ask_qty=650)
    assert h.fills() == [], "a MARKET order filled 50 % away from the last price, far beyond the 3 % protection"
    assert h.statuses(order_id) == [OrderStatus.OPEN]
    h.quote(ACTIVE + 2 * MS, last=10_000, bid=9_990, bid_qty=650, ask=10_010, ask_qty=650)
    assert h.fills()[0].price == (10_015 if side is Side.BUY else 9_985)


@pytest.mark.parametrize(("side", "protection", "beyond", "back", "expected_price"), [
    (Side.BUY, 1.0, {"ask": 10_105}, {"ask": 10_095}, 10_100),  # cap 101.00
    (Side.BUY, 10.0, {"ask": 11_005}, {"ask": 10_990}, 10_995),  # cap 110.00
    (Side.SELL, 2.0, {"bid": 9_795}, {"bid": 9_810}, 9_805),  # cap 98.00
])
async def test_market_explicit_protection_percentage(side: Side, protection: float, beyond: dict[str, int],
                                                     back: dict[str, int], expected_price: int) -> None:
    h = Harness()
    order_id, _ = await h.place(side, LOT, OrderType.MARKET, protection=protection)
    base = {"last": 10_000, "bid": 9_990, "bid_qty": 650, "ask": 10_010, "ask_qty": 650}
    h.quote(ACTIVE, **(base | beyond))
    assert h.fills() == []
    assert h.statuses(order_id) == [OrderStatus.OPEN]
    h.quote(ACTIVE + MS, **(base | back))
    [fill] = h.fills()
    assert fill.price == expected_price
    assert h.statuses(order_id) == [OrderStatus.OPEN, OrderStatus.COMPLETE]


# -- LIMIT ---------------------------------------------------------------------------------------------------


async def test_limit_buy_fills_only_when_ask_reaches_the_limit_and_never_above_it() -> None:
    h = Harness()
    order_id, _ = await h.place(Side.BUY, LOT, OrderType.LIMIT, limit=10_000)
    h.quote(ACTIVE, last=10_000, bid=9_990, bid_qty=650, ask=10_005, ask_qty=650)
    h.quote(ACTIVE + MS, last=10_000, bid=9_990, bid_qty=650, ask=10_050, ask_qty=650)
    assert h.fills() == []
    assert h.statuses(order_id) == [OrderStatus.OPEN]
    h.quote(ACTIVE + 2 * MS, last=10_000, bid=9_990, bid_qty=650, ask=10_000, ask_qty=650)
    [fill] = h.fills()
    assert fill.price == 10_000  # ask + slippage (100.05) capped at the limit
    assert h.statuses(order_id) == [OrderStatus.OPEN, OrderStatus.COMPLETE]


async def test_limit_buy_below_the_limit_pays_touch_plus_slippage() -> None:
    h = Harness()
    await h.place(Side.BUY, LOT, OrderType.LIMIT, limit=10_000)
    h.quote(ACTIVE, last=9_900, bid=9_880, bid_qty=650, ask=9_900, ask_qty=650)
    assert h.fills()[0].price == 9_905


async def test_limit_sell_fills_only_when_bid_reaches_the_limit_and_never_below_it() -> None:
    h = Harness()
    order_id, _ = await h.place(Side.SELL, LOT, OrderType.LIMIT, limit=10_000)
    h.quote(ACTIVE, last=10_000, bid=9_995, bid_qty=650, ask=10_010, ask_qty=650)
    assert h.fills() == []
    assert h.statuses(order_id) == [OrderStatus.OPEN]
    h.quote(ACTIVE + MS, last=10_000, bid=10_000, bid_qty=650, ask=10_010, ask_qty=650)
    [fill] = h.fills()
    assert fill.price == 10_000  # bid − slippage (99.95) capped at the limit
    h2 = Harness()
    await h2.place(Side.SELL, LOT, OrderType.LIMIT, limit=10_000)
    h2.quote(ACTIVE, last=10_100, bid=10_100, bid_qty=650, ask=10_110, ask_qty=650)
    assert h2.fills()[0].price == 10_095


# -- SL / SL-M -----------------------------------------------------------------------------------------------


async def test_sl_buy_triggers_on_ltp_then_behaves_as_a_limit() -> None:
    h = Harness()
    order_id, _ = await h.place(Side.BUY, LOT, OrderType.SL, trigger=10_100, limit=10_200)
    assert h.statuses(order_id) == [OrderStatus.TRIGGER_PENDING]
    # LTP below the trigger: nothing happens even though the ask is inside the limit.
    h.quote(ACTIVE, last=10_095, bid=10_080, bid_qty=650, ask=10_100, ask_qty=650)
    assert h.fills() == []
    assert h.statuses(order_id) == [OrderStatus.TRIGGER_PENDING]
    # LTP reaches the trigger but the ask is beyond the limit: OPEN, not filled.
    h.quote(ACTIVE + MS, last=10_100, bid=10_190, bid_qty=650, ask=10_250, ask_qty=650)
    assert h.fills() == []
    assert h.statuses(order_id) == [OrderStatus.TRIGGER_PENDING, OrderStatus.OPEN]
    # The ask comes inside the limit (LTP now back below the trigger: it stays triggered).
    h.quote(ACTIVE + 2 * MS, last=10_000, bid=10_150, bid_qty=650, ask=10_198, ask_qty=650)
    [fill] = h.fills()
    assert fill.price == 10_200  # 101.98 + 0.05 capped at the limit
    assert h.statuses(order_id) == [OrderStatus.TRIGGER_PENDING, OrderStatus.OPEN, OrderStatus.COMPLETE]


async def test_sl_sell_triggers_on_ltp_at_or_below_trigger() -> None:
    h = Harness()
    order_id, _ = await h.place(Side.SELL, LOT, OrderType.SL, trigger=9_900, limit=9_800)
    h.quote(ACTIVE, last=9_905, bid=9_850, bid_qty=650, ask=9_910, ask_qty=650)
    assert h.fills() == []
    assert h.statuses(order_id) == [OrderStatus.TRIGGER_PENDING]
    h.quote(ACTIVE + MS, last=9_900, bid=9_850, bid_qty=650, ask=9_910, ask_qty=650)
    [fill] = h.fills()
    assert fill.price == 9_845
    assert h.statuses(order_id) == [OrderStatus.TRIGGER_PENDING, OrderStatus.OPEN, OrderStatus.COMPLETE]


async def test_sl_does_not_trigger_before_latency() -> None:
    h = Harness()
    order_id, _ = await h.place(Side.BUY, LOT, OrderType.SL, trigger=10_100, limit=10_200)
    h.quote(ACTIVE - 1, last=10_150, bid=10_140, bid_qty=650, ask=10_150, ask_qty=650)
    assert h.statuses(order_id) == [OrderStatus.TRIGGER_PENDING]
    h.quote(ACTIVE, last=10_150, bid=10_140, bid_qty=650, ask=10_160, ask_qty=650)
    assert h.fills()[0].price == 10_165


@pytest.mark.parametrize(("side", "trigger", "idle", "hit", "expected_price"), [
    (Side.BUY, 10_100, book(10_050), {"last": 10_120, "bid": 10_110, "bid_qty": 650, "ask": 10_130, "ask_qty": 650},
     10_135),
    (Side.SELL, 9_900, book(9_950), {"last": 9_880, "bid": 9_870, "bid_qty": 650, "ask": 9_890, "ask_qty": 650},
     9_865),
])
async def test_sl_m_triggers_then_fills_as_market(side: Side, trigger: int, idle: dict[str, int],
                                                  hit: dict[str, int], expected_price: int) -> None:
    h = Harness()
    order_id, _ = await h.place(side, LOT, OrderType.SL_M, trigger=trigger)
    h.quote(ACTIVE, **idle)
    assert h.fills() == []
    assert h.statuses(order_id) == [OrderStatus.TRIGGER_PENDING]
    h.quote(ACTIVE + MS, **hit)
    [fill] = h.fills()
    assert fill.price == expected_price
    assert h.statuses(order_id) == [OrderStatus.TRIGGER_PENDING, OrderStatus.OPEN, OrderStatus.COMPLETE]


async def test_sl_m_after_trigger_respects_market_protection() -> None:
    h = Harness()
    order_id, _ = await h.place(Side.BUY, LOT, OrderType.SL_M, trigger=10_000)
    # Triggered at LTP 100.00, cap 103.00; the ask is at 104.00.
    h.quote(ACTIVE, last=10_000, bid=9_990, bid_qty=650, ask=10_400, ask_qty=650)
    assert h.fills() == []
    assert h.statuses(order_id) == [OrderStatus.TRIGGER_PENDING, OrderStatus.OPEN]
    h.quote(ACTIVE + MS, last=10_000, bid=9_990, bid_qty=650, ask=10_200, ask_qty=650)
    assert h.fills()[0].price == 10_205


# -- quantity at the touch -----------------------------------------------------------------------------------


async def test_partial_fills_in_whole_lots_then_complete_with_correct_average() -> None:
    h = Harness()
    order_id, request = await h.place(Side.BUY, 3 * LOT, OrderType.MARKET)
    h.quote(ACTIVE, last=10_000, bid=9_990, bid_qty=1_000, ask=10_000, ask_qty=LOT - 1)  # less than a lot
    assert h.fills() == []
    h.quote(ACTIVE + MS, last=10_000, bid=9_990, bid_qty=1_000, ask=10_000, ask_qty=100)  # one lot and a bit
    [first] = h.fills()
    assert (first.quantity, first.price) == (LOT, 10_005)
    partial = h.updates(order_id)[-1]
    assert (partial.status, partial.filled_quantity, partial.pending_quantity, partial.average_price) == (
        OrderStatus.OPEN, LOT, 2 * LOT, 10_005)
    found = await h.broker.find_order_by_tag(request.tag)
    assert found is not None and (found.status, found.filled_quantity) == (OrderStatus.OPEN, LOT)

    h.quote(ACTIVE + 2 * MS, last=10_010, bid=10_000, bid_qty=1_000, ask=10_020, ask_qty=1_000)
    second = h.fills()[1]
    assert (second.quantity, second.price) == (2 * LOT, 10_025)
    final = h.updates(order_id)[-1]
    expected_average = round((LOT * 10_005 + 2 * LOT * 10_025) / (3 * LOT))
    assert (final.status, final.filled_quantity, final.pending_quantity, final.average_price) == (
        OrderStatus.COMPLETE, 3 * LOT, 0, expected_average)
    assert h.statuses(order_id) == [OrderStatus.OPEN, OrderStatus.OPEN, OrderStatus.COMPLETE]


async def test_partial_sell_fills_against_bid_quantity() -> None:
    h = Harness()
    order_id, _ = await h.place(Side.SELL, 2 * LOT, OrderType.LIMIT, limit=9_900)
    h.quote(ACTIVE, last=10_000, bid=9_950, bid_qty=LOT, ask=10_000, ask_qty=10)
    h.quote(ACTIVE + MS, last=10_000, bid=9_960, bid_qty=5 * LOT, ask=10_000, ask_qty=10)
    assert [(f.quantity, f.price) for f in h.fills()] == [(LOT, 9_945), (LOT, 9_955)]
    assert h.updates(order_id)[-1].average_price == 9_950


async def test_two_orders_cannot_take_the_same_displayed_quantity() -> None:
    h = Harness()
    first, _ = await h.place(Side.BUY, LOT, OrderType.MARKET)
    second, _ = await h.place(Side.BUY, LOT, OrderType.LIMIT, limit=10_100)
    h.quote(ACTIVE, last=10_000, bid=9_990, bid_qty=1_000, ask=10_000, ask_qty=LOT)
    assert [f.order_id for f in h.fills()] == [first]
    assert h.statuses(second) == [OrderStatus.OPEN]
    h.quote(ACTIVE + MS, last=10_000, bid=9_990, bid_qty=1_000, ask=10_000, ask_qty=LOT)  # a fresh quote
    assert [f.order_id for f in h.fills()] == [first, second]


async def test_two_orders_share_the_displayed_quantity_in_whole_lots() -> None:
    h = Harness()
    first, _ = await h.place(Side.SELL, 2 * LOT, OrderType.MARKET)
    second, _ = await h.place(Side.SELL, 2 * LOT, OrderType.MARKET)
    h.quote(ACTIVE, last=10_000, bid=10_000, bid_qty=3 * LOT, ask=10_010, ask_qty=1_000)
    assert [(f.order_id, f.quantity) for f in h.fills()] == [(first, 2 * LOT), (second, LOT)]
    assert sum(f.quantity for f in h.fills()) <= 3 * LOT


async def test_sell_at_the_minimum_price_still_fills() -> None:
    h = Harness()
    market_id, _ = await h.place(Side.SELL, LOT, OrderType.MARKET, expected=5)
    limit_id, _ = await h.place(Side.SELL, LOT, OrderType.LIMIT, limit=5, expected=5)
    h.quote(ACTIVE, last=5, bid=5, bid_qty=10 * LOT, ask=10, ask_qty=10 * LOT)
    assert {(f.order_id, f.price, f.quantity) for f in h.fills()} == {(market_id, 5, LOT), (limit_id, 5, LOT)}
    assert h.statuses(market_id)[-1] is OrderStatus.COMPLETE
    assert h.statuses(limit_id)[-1] is OrderStatus.COMPLETE


# -- rejections ----------------------------------------------------------------------------------------------


class Placement(TypedDict, total=False):
    """Keyword arguments of ``Harness.place``."""

    quantity: int
    limit: int
    trigger: int
    protection: float


@pytest.mark.parametrize(("order_type", "kwargs", "words"), [
    (OrderType.MARKET, {"quantity": 100}, ("quantity", "lot size")),
    (OrderType.MARKET, {"quantity": 0}, ("quantity", "lot size")),
    (OrderType.LIMIT, {"quantity": LOT + 1, "limit": 10_000}, ("quantity", "lot size")),
    (OrderType.MARKET, {"protection": 0}, ("market_protection",)),
    (OrderType.MARKET, {"protection": 150}, ("market_protection",)),
    (OrderType.MARKET, {"protection": -2}, ("market_protection",)),
    (OrderType.SL_M, {"protection": 0, "trigger": 10_000}, ("market_protection",)),
    (OrderType.LIMIT, {"limit": 10_002}, ("price", "tick")),
    (OrderType.LIMIT, {"limit": 0}, ("price",)),
    (OrderType.SL, {"limit": 10_000, "trigger": 10_003}, ("trigger_price", "tick")),
    (OrderType.SL_M, {"trigger": 0}, ("trigger_price",)),
    (OrderType.SL, {"limit": 9_900, "trigger": 10_000}, ("wrong side", "trigger")),
])
async def test_invalid_orders_are_rejected_with_the_reason_and_publish_nothing(
        order_type: OrderType, kwargs: Placement, words: tuple[str, ...]) -> None:
    h = Harness()
    placement: Placement = {"quantity": LOT, **kwargs}
    with pytest.raises(OrderRejected) as info:
        await h.place(Side.BUY, order_type=order_type, **placement)
    message = str(info.value)
    for word in words:
        assert word in message
    assert h.events == []
    assert await h.broker.open_orders() == []
    h.quote(ACTIVE, **book(10_000))
    assert h.events == []


@pytest.mark.parametrize("protection", [-1, 0.5, 100])
async def test_valid_market_protection_values_are_accepted(protection: float) -> None:
    h = Harness()
    await h.place(Side.BUY, LOT, OrderType.MARKET, protection=protection)
    assert h.statuses(h.updates()[0].order_id) == [OrderStatus.OPEN]


# -- cancel --------------------------------------------------------------------------------------------------


async def test_cancel_open_order_then_it_never_fills() -> None:
    h = Harness()
    order_id, request = await h.place(Side.BUY, LOT, OrderType.LIMIT, limit=9_000)
    h.quote(ACTIVE, **book(10_000))
    await h.broker.cancel_order(order_id)
    assert h.statuses(order_id) == [OrderStatus.OPEN, OrderStatus.CANCELLED]
    h.quote(ACTIVE + MS, last=8_900, bid=8_880, bid_qty=650, ask=8_900, ask_qty=650)
    assert h.fills() == []
    found = await h.broker.find_order_by_tag(request.tag)
    assert found is not None and found.status is OrderStatus.CANCELLED
    assert await h.broker.open_orders() == []
    with pytest.raises(OrderRejected, match="CANCELLED"):
        await h.broker.cancel_order(order_id)
    assert h.statuses(order_id) == [OrderStatus.OPEN, OrderStatus.CANCELLED]


async def test_cancel_partially_filled_order_keeps_its_fills() -> None:
    h = Harness()
    order_id, _ = await h.place(Side.BUY, 2 * LOT, OrderType.MARKET)
    h.quote(ACTIVE, last=10_000, bid=9_990, bid_qty=650, ask=10_000, ask_qty=LOT)
    await h.broker.cancel_order(order_id)
    final = h.updates(order_id)[-1]
    assert (final.status, final.filled_quantity, final.pending_quantity) == (OrderStatus.CANCELLED, LOT, 0)
    h.quote(ACTIVE + MS, **book(10_000))
    assert len(h.fills()) == 1


async def test_cancel_of_a_completed_or_unknown_order_is_rejected() -> None:
    h = Harness()
    order_id, _ = await h.place(Side.BUY, LOT, OrderType.MARKET)
    h.quote(ACTIVE, **book(10_000))
    assert h.statuses(order_id) == [OrderStatus.OPEN, OrderStatus.COMPLETE]
    with pytest.raises(OrderRejected, match="COMPLETE"):
        await h.broker.cancel_order(order_id)
    with pytest.raises(OrderRejected, match="does not exist"):
        await h.broker.cancel_order("PAPER-NOPE")
    assert h.statuses(order_id) == [OrderStatus.OPEN, OrderStatus.COMPLETE]


# -- what a fill carries -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("side", "expected", "quote", "price", "slip_paise"), [
    (Side.BUY, 10_000, {"ask": 10_020}, 10_025, 25),  # paid more than expected: worse
    (Side.BUY, 10_000, {"ask": 9_900}, 9_905, -95),  # paid less: better
    (Side.SELL, 10_000, {"bid": 9_980}, 9_975, 25),  # received less: worse
    (Side.SELL, 10_000, {"bid": 10_100}, 10_095, -95),  # received more: better
])
async def test_fill_carries_expected_price_and_signed_slippage(side: Side, expected: int, quote: dict[str, int],
                                                               price: int, slip_paise: int) -> None:
    h = Harness()
    _, request = await h.place(side, LOT, OrderType.MARKET, expected=expected)
    base = {"last": 10_000, "bid": 9_990, "bid_qty": 650, "ask": 10_010, "ask_qty": 650}
    h.quote(ACTIVE, **(base | quote))
    [fill] = h.fills()
    assert fill.price == price
    assert fill.expected_price == expected
    assert fill.intent_id == request.intent.intent_id
    assert fill.contract == CONTRACT and fill.purpose is IntentPurpose.ENTRY
    assert fill.slippage_paise == slip_paise
    assert fill.slippage_bps == pytest.approx(slip_paise * 10_000 / expected)


async def test_charges_include_brokerage_on_the_first_fill_of_an_order_only() -> None:
    h = Harness()
    order_id, _ = await h.place(Side.SELL, 3 * LOT, OrderType.MARKET)
    h.quote(ACTIVE, last=10_000, bid=10_000, bid_qty=LOT, ask=10_010, ask_qty=650)
    h.quote(ACTIVE + MS, last=10_000, bid=10_000, bid_qty=LOT, ask=10_010, ask_qty=650)
    h.quote(ACTIVE + 2 * MS, last=10_000, bid=10_000, bid_qty=650, ask=10_010, ask_qty=650)
    first, second, third = h.fills(order_id)
    trade_date = date(2025, 12, 1)

    def charges(fill: Fill, brokerage: bool) -> int:
        return option_charges(exchange="NFO", side=Side.SELL, quantity=fill.quantity, price=fill.price,
                              trade_date=trade_date, include_brokerage=brokerage).total

    assert first.charges == charges(first, True)
    assert second.charges == charges(second, False)
    assert third.charges == charges(third, False)
    assert first.charges - second.charges >= 20_00  # ₹20 brokerage (plus its GST) on the first fill only
    # A second order pays its own brokerage again.
    await h.place(Side.SELL, LOT, OrderType.MARKET)
    h.quote(ACTIVE + 200 * MS, last=10_000, bid=10_000, bid_qty=650, ask=10_010, ask_qty=650)
    other = h.fills()[-1]
    assert other.order_id != order_id
    assert other.charges == charges(other, True)


async def test_charges_use_the_trade_date_in_india() -> None:
    # 00:30 IST on 1 Apr 2026 is still 31 Mar in UTC; STT rose from 0.10 % to 0.15 % on 1 Apr 2026.
    ts = int(datetime(2026, 4, 1, 0, 30, tzinfo=IST).timestamp()) * 1_000_000_000
    h = Harness()
    h.clock.jump_to(ts - LATENCY_MS * MS)
    await h.place(Side.SELL, LOT, OrderType.MARKET)
    h.quote(ts, **book(10_000))
    [fill] = h.fills()
    new = option_charges(exchange="NFO", side=Side.SELL, quantity=LOT, price=fill.price, trade_date=date(2026, 4, 1))
    old = option_charges(exchange="NFO", side=Side.SELL, quantity=LOT, price=fill.price, trade_date=date(2026, 3, 31))
    assert new.total != old.total
    assert fill.charges == new.total


# -- order book views and terminal updates -------------------------------------------------------------------


async def test_find_order_by_tag_returns_the_order() -> None:
    h = Harness()
    order_id, request = await h.place(Side.BUY, 2 * LOT, OrderType.LIMIT, limit=10_000)
    assert await h.broker.find_order_by_tag("no-such-tag") is None
    found = await h.broker.find_order_by_tag(request.tag)
    assert found is not None
    assert (found.order_id, found.tag, found.status, found.quantity, found.filled_quantity, found.average_price) == (
        order_id, request.tag, OrderStatus.OPEN, 2 * LOT, 0, 0)
    h.quote(ACTIVE, last=10_000, bid=9_990, bid_qty=650, ask=9_990, ask_qty=650)
    found = await h.broker.find_order_by_tag(request.tag)
    assert found is not None
    assert (found.status, found.filled_quantity, found.average_price) == (OrderStatus.COMPLETE, 2 * LOT, 9_995)
    assert h.broker.orders_with_tag(request.tag) == 1


async def test_ticks_of_other_instruments_do_not_fill() -> None:
    h = Harness()
    await h.place(Side.BUY, LOT, OrderType.MARKET)
    h.broker.on_tick(Tick(ts_ns=ACTIVE, instrument_token=TOKEN + 1, last_price=10_000, bid=9_990, bid_qty=650,
                          ask=10_000, ask_qty=650))
    assert h.fills() == []


async def test_exactly_one_terminal_update_per_order() -> None:
    h = Harness()
    complete, _ = await h.place(Side.BUY, 2 * LOT, OrderType.MARKET)
    cancelled, _ = await h.place(Side.BUY, LOT, OrderType.LIMIT, limit=9_000)
    sl, _ = await h.place(Side.SELL, LOT, OrderType.SL_M, trigger=9_800)
    h.quote(ACTIVE, last=10_000, bid=9_990, bid_qty=650, ask=10_000, ask_qty=LOT)
    await h.broker.cancel_order(cancelled)
    for i in range(1, 6):
        h.quote(ACTIVE + i * MS, last=9_700, bid=9_690, bid_qty=650, ask=9_700, ask_qty=650)
    with pytest.raises(OrderRejected):
        await h.broker.cancel_order(complete)
    terminal = Counter(u.order_id for u in h.updates() if u.status.is_terminal)
    assert terminal == {complete: 1, cancelled: 1, sl: 1}
    for order_id in (complete, cancelled, sl):
        assert h.updates(order_id)[-1].status.is_terminal
    assert await h.broker.open_orders() == []


# -- property: the rules hold on any book ---------------------------------------------------------------------

_QUOTE = st.tuples(
    st.integers(1, 400),  # last, in ticks
    st.integers(1, 400),  # bid, in ticks
    st.integers(0, 4 * LOT),  # bid qty
    st.integers(0, 10),  # ask above bid, in ticks
    st.integers(0, 4 * LOT),  # ask qty
)
_ORDER = st.tuples(
    st.sampled_from([Side.BUY, Side.SELL]),
    st.integers(1, 4),  # lots
    st.sampled_from([OrderType.MARKET, OrderType.LIMIT, OrderType.SL, OrderType.SL_M]),
    st.integers(1, 400),  # limit, in ticks
    st.integers(1, 400),  # trigger, in ticks
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(orders=st.lists(_ORDER, min_size=1, max_size=5), quotes=st.lists(_QUOTE, max_size=12))
def test_fills_never_exceed_shown_quantity_limit_or_order_size(
        orders: list[tuple[Side, int, OrderType, int, int]], quotes: list[tuple[int, int, int, int, int]]) -> None:
    h = Harness()

    async def place_all() -> dict[str, OrderIntent]:
        placed = {}
        for side, lots, order_type, limit, trigger in orders:
            limit_price = limit * TICK if order_type in (OrderType.LIMIT, OrderType.SL) else 0
            trigger_price = trigger * TICK if order_type in (OrderType.SL, OrderType.SL_M) else 0
            if order_type is OrderType.SL and side.sign * (limit_price - trigger_price) < 0:
                trigger_price = limit_price  # a stop's limit must be on the far side of its trigger
            order_id, request = await h.place(side, lots * LOT, order_type, limit=limit_price, trigger=trigger_price)
            placed[order_id] = request.intent
        return placed

    placed = asyncio.run(place_all())
    for i, (last, bid, bid_qty, spread, ask_qty) in enumerate(quotes):
        ts = ACTIVE + i * MS
        before = len(h.events)
        h.quote(ts, last=last * TICK, bid=bid * TICK, bid_qty=bid_qty, ask=(bid + spread) * TICK, ask_qty=ask_qty)
        new_fills = [e for e in h.events[before:] if isinstance(e, Fill)]
        assert sum(f.quantity for f in new_fills if f.side is Side.BUY) <= ask_qty
        assert sum(f.quantity for f in new_fills if f.side is Side.SELL) <= bid_qty
        for fill in new_fills:
            intent = placed[fill.order_id]
            assert fill.ts_ns == ts and fill.quantity > 0 and fill.quantity % LOT == 0
            assert fill.price > 0 and fill.price % TICK == 0
            if intent.order_type in (OrderType.LIMIT, OrderType.SL):
                assert fill.price <= intent.limit_price if fill.side is Side.BUY else fill.price >= intent.limit_price
            if fill.side is Side.BUY:
                assert fill.price >= (bid + spread) * TICK
            else:
                assert fill.price <= bid * TICK
    for order_id, intent in placed.items():
        fills = h.fills(order_id)
        updates = h.updates(order_id)
        filled = sum(f.quantity for f in fills)
        assert filled <= intent.quantity
        assert sum(u.status.is_terminal for u in updates) <= 1
        assert updates[-1].filled_quantity == filled
        if filled == intent.quantity:
            assert updates[-1].status is OrderStatus.COMPLETE
        if fills:
            assert updates[-1].average_price == round(sum(f.quantity * f.price for f in fills) / filled)


async def test_with_a_calendar_orders_are_day_orders_cancelled_after_the_close() -> None:
    h = Harness(calendar=MarketCalendar())
    order_id, _ = await h.place(Side.BUY, LOT, OrderType.LIMIT, limit=9_000)
    h.quote(ACTIVE, **book(10_000))
    assert h.statuses(order_id) == [OrderStatus.OPEN]
    close = int(datetime(2025, 12, 1, 15, 30, tzinfo=IST).timestamp()) * 1_000_000_000  # Mon 1 Dec 2025
    h.quote(close - 1, **book(10_000))
    assert h.statuses(order_id) == [OrderStatus.OPEN]
    next_morning = int(datetime(2025, 12, 2, 9, 15, tzinfo=IST).timestamp()) * 1_000_000_000
    h.quote(next_morning, **book(8_000))  # would cross the limit, but the order died with yesterday's session
    assert h.statuses(order_id) == [OrderStatus.OPEN, OrderStatus.CANCELLED]
    assert h.fills() == []
    assert "expired" in h.updates(order_id)[-1].reason


async def test_margins_model_premium_for_buys_and_an_estimate_for_sells() -> None:
    h = Harness()
    start = await h.broker.margins()
    assert (start.available, start.used) == (10_000_000, 0)
    buy_id, buy = await h.place(Side.BUY, 2 * LOT, OrderType.MARKET, expected=10_000)
    assert await h.broker.order_margin(buy.intent) == 2 * LOT * 10_000  # the premium, paid up front
    h.quote(ACTIVE, **book(10_000))
    [fill] = h.fills(buy_id)
    after = await h.broker.margins()
    assert after.used == 2 * LOT * fill.price
    assert after.available == 10_000_000 - 2 * LOT * fill.price - fill.charges
    _, reduce = await h.place(Side.SELL, LOT, OrderType.MARKET)
    assert await h.broker.order_margin(reduce.intent) == 0  # closing frees margin, it needs none
    _, flip = await h.place(Side.SELL, 3 * LOT, OrderType.MARKET)
    assert await h.broker.order_margin(flip.intent) == LOT * CONTRACT.strike * 12 // 100  # the short part only
