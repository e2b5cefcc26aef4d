"""The semi-live approval book (pure): pending entries, approve at the current quote, reject, expiry on event time."""

from __future__ import annotations

import dataclasses

import pytest

from trader.approvals import AlreadyDecided, ApprovalBook, NoQuote, UnknownApproval, quote_price, reprice
from trader.events import ApprovalStatus, IntentPurpose, OrderIntent, OrderType, Side, Tick
from trader.market.instruments import OptionContract

from helpers import T0

CE = OptionContract.parse("NIFTY26DEC26000CE", instrument_token=101)
NS = 1_000_000_000
EXPIRY = 60 * NS


def entry(intent_id: str = "I1", signal_id: str = "S1", side: Side = Side.BUY, expected: int = 10_000,
          **changes: object) -> OrderIntent:
    intent = OrderIntent(ts_ns=T0, intent_id=intent_id, strategy_id="ema", contract=CE, side=side,
                         quantity=CE.lot_size, order_type=OrderType.MARKET, purpose=IntentPurpose.ENTRY,
                         expected_price=expected, stop_loss_price=7_000, signal_id=signal_id)
    return dataclasses.replace(intent, **changes)  # type: ignore[arg-type]


def quote(bid: int, ask: int, last: int = 0) -> Tick:
    return Tick(ts_ns=T0, instrument_token=CE.instrument_token, last_price=last or bid, bid=bid, bid_qty=650,
                ask=ask, ask_qty=650)


def test_approve_reprices_at_the_ask_and_keeps_the_stop_distance() -> None:
    book = ApprovalBook(EXPIRY)
    pending = book.add(entry(), T0)
    assert (pending.status, pending.expires_ns) == (ApprovalStatus.PENDING, T0 + EXPIRY)
    approved = book.approve("I1", T0 + 10 * NS, quote(10_480, 10_500), by="operator")
    assert approved.status is ApprovalStatus.APPROVED and approved.by == "operator"
    intent = approved.intent
    assert (intent.ts_ns, intent.expected_price, intent.stop_loss_price) == (T0 + 10 * NS, 10_500, 7_500)
    assert (intent.intent_id, intent.quantity, intent.side) == ("I1", CE.lot_size, Side.BUY)  # same intent
    assert book.pending() == [] and book.decided() == [approved]


def test_a_limit_moves_with_the_price_rounded_to_the_tick_and_a_sell_takes_the_bid() -> None:
    limit = entry(order_type=OrderType.LIMIT, limit_price=10_100, expected=10_000)
    moved = reprice(limit, quote(10_230, 10_254), T0)
    assert moved.expected_price == 10_254 and moved.limit_price == 10_355  # 10_354 → the 5-paise tick
    assert moved.limit_price % CE.tick_size == 0
    sell = reprice(entry(side=Side.SELL, stop_loss_price=13_000), quote(9_800, 9_900), T0)
    assert (sell.expected_price, sell.stop_loss_price) == (9_800, 12_800)
    assert quote_price(Side.BUY, quote(0, 0, last=9_000)) == 9_000  # no touch: the last traded price
    assert quote_price(Side.BUY, None) == 0


def test_without_a_quote_it_stays_pending() -> None:
    book = ApprovalBook(EXPIRY)
    book.add(entry(), T0)
    with pytest.raises(NoQuote, match="no quote for NIFTY26DEC26000CE"):
        book.approve("I1", T0 + NS, None)
    with pytest.raises(NoQuote):
        book.approve("I1", T0 + NS, quote(0, 0, last=0))
    assert [a.intent_id for a in book.pending()] == ["I1"]


def test_found_by_signal_id_and_unknown_ids_say_so() -> None:
    book = ApprovalBook(EXPIRY)
    book.add(entry("I1", "S1"), T0)
    book.add(entry("I2", "S2"), T0 + NS)
    found = book.find("S2")
    assert found is not None and found.intent_id == "I2"
    rejected = book.reject("S1", T0 + 2 * NS, by="cli", reason="too late in the day")
    assert (rejected.intent_id, rejected.status, rejected.reason) == ("I1", ApprovalStatus.REJECTED,
                                                                      "too late in the day")
    with pytest.raises(UnknownApproval, match="no pending signal or intent 'NOPE'"):
        book.approve("NOPE", T0, quote(1, 2))
    with pytest.raises(UnknownApproval):
        book.reject("", T0)
    found = book.find("S1")
    assert found is not None and found.status is ApprovalStatus.REJECTED  # still found once decided


def test_a_decision_is_final() -> None:
    book = ApprovalBook(EXPIRY)
    book.add(entry(), T0)
    book.approve("I1", T0 + NS, quote(9_990, 10_000), by="api")
    with pytest.raises(AlreadyDecided, match=r"I1 is already APPROVED .* by api") as twice:
        book.approve("I1", T0 + 2 * NS, quote(9_990, 10_000))
    assert not twice.value.just_expired
    with pytest.raises(AlreadyDecided, match="already APPROVED"):
        book.reject("S1", T0 + 2 * NS)
    assert len(book.decided()) == 1


def test_expiry_is_event_time_and_a_late_approval_expires_it() -> None:
    book = ApprovalBook(EXPIRY)
    book.add(entry("I1", "S1"), T0)
    book.add(entry("I2", "S2"), T0 + 30 * NS)
    assert book.expire_due(T0 + EXPIRY - 1) == []
    [expired] = book.expire_due(T0 + EXPIRY)
    assert (expired.intent_id, expired.status, expired.decided_ns) == ("I1", ApprovalStatus.EXPIRED, T0 + EXPIRY)
    assert "not approved within 60 s" in expired.reason
    # An approval that arrives after the expiry, before any tick or heartbeat expired it: expired, not sent.
    with pytest.raises(AlreadyDecided, match="I2 is already EXPIRED") as late:
        book.approve("I2", T0 + 30 * NS + EXPIRY, quote(9_990, 10_000))
    assert late.value.just_expired and late.value.approval.status is ApprovalStatus.EXPIRED
    assert book.pending() == []


def test_stop_entries_expires_everything_pending_and_the_decided_view_is_bounded() -> None:
    book = ApprovalBook(EXPIRY, decided_kept=3)
    for n in range(5):
        book.add(entry(f"I{n}", f"S{n}"), T0 + n)
    ended = book.expire_all(T0 + 10, "entries stopped (shutting down)")
    assert [a.intent_id for a in ended] == ["I0", "I1", "I2", "I3", "I4"]
    assert all(a.status is ApprovalStatus.EXPIRED and a.reason.startswith("entries stopped") for a in ended)
    assert [a.intent_id for a in book.decided()] == ["I4", "I3", "I2"]  # newest first, the last 3
    assert book.find("I0") is None and book.find("I4") is not None
    with pytest.raises(ValueError, match="already in the approval book"):
        book.add(entry("I4", "S4"), T0)
    with pytest.raises(ValueError, match="must be positive"):
        ApprovalBook(0)


def test_an_approval_is_never_priced_on_a_quote_older_than_the_limit() -> None:
    book = ApprovalBook(EXPIRY, max_quote_age_ns=30 * NS)
    book.add(entry(), T0)
    with pytest.raises(NoQuote) as stale:
        book.approve("I1", T0 + 31 * NS, quote(10_990, 11_000))  # the quote is from T0: 31 s old
    assert "31 s old" in str(stale.value) and "stays pending" in str(stale.value)
    assert [a.intent_id for a in book.pending()] == ["I1"]
    fresh = dataclasses.replace(quote(10_990, 11_000), ts_ns=T0 + 31 * NS)
    assert book.approve("I1", T0 + 31 * NS, fresh).intent.expected_price == 11_000
