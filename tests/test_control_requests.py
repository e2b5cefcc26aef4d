"""The control API's request bodies: what each accepts, what it refuses, and the 400 message that names the field."""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from trader.control.requests import (
    FlattenBody,
    HaltBody,
    ManualOrder,
    RejectBody,
    describe_validation_error,
)
from trader.events import OrderType, Side
from trader.market.instruments import OptionType

BASE: dict[str, Any] = {"side": "BUY", "instrument": "NIFTY ATM CE", "lots": 1}


def refused(body: Any, model: type[ManualOrder | HaltBody | RejectBody | FlattenBody] = ManualOrder) -> tuple[str, str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    return describe_validation_error(caught.value)


def with_(**changes: Any) -> dict[str, Any]:
    body = dict(BASE)
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


# --- what is accepted -----------------------------------------------------------------------------------------


def test_minimal_order_and_defaults() -> None:
    order = ManualOrder.model_validate(BASE)
    assert order.side is Side.BUY
    assert order.instrument == "NIFTY ATM CE"
    assert order.lots == 1 and order.quantity is None
    assert order.order_type is OrderType.MARKET
    assert order.market_protection == -1.0
    assert (order.price, order.trigger_price, order.expiry) == (None, None, None)
    assert (order.confirm, order.dry_run, order.reason) == (False, False, "")


def test_enums_are_case_insensitive_and_text_is_stripped() -> None:
    order = ManualOrder.model_validate({"side": " sell ", "underlying": "  nifty ", "strike": 26000,
                                        "option_type": "pe", "quantity": 130, "order_type": "sl_m",
                                        "trigger_price": 99.5, "reason": "  hedge  "})
    assert order.side is Side.SELL
    assert order.underlying == "nifty"  # the resolver reads underlying names case-insensitively
    assert order.option_type is OptionType.PE
    assert order.order_type is OrderType.SL_M
    assert order.reason == "hedge"
    assert ManualOrder.model_validate(with_(order_type="Sl-M", trigger_price=10)).order_type is OrderType.SL_M
    assert ManualOrder.model_validate(with_(instrument="  nifty atm ce  ")).instrument == "nifty atm ce"


def test_every_order_type_with_its_prices() -> None:
    limit = ManualOrder.model_validate(with_(order_type="LIMIT", price=100.05))
    assert (limit.price, limit.trigger_price) == (100.05, None)
    stop = ManualOrder.model_validate(with_(order_type="SL", price=101, trigger_price=100.5))
    assert (stop.price, stop.trigger_price) == (101.0, 100.5)
    sell_stop = ManualOrder.model_validate(with_(side="SELL", order_type="SL", price=99, trigger_price=100))
    assert sell_stop.trigger_price == 100.0
    stop_market = ManualOrder.model_validate(with_(order_type="SL-M", trigger_price=90, market_protection=2.5))
    assert (stop_market.price, stop_market.market_protection) == (None, 2.5)
    market = ManualOrder.model_validate(with_(market_protection=100))
    assert market.market_protection == 100


def test_expiry_confirm_dry_run_and_reason() -> None:
    order = ManualOrder.model_validate(with_(expiry="2026-12-01", confirm=True, dry_run=True, reason="x" * 200))
    assert order.expiry == date(2026, 12, 1)
    assert order.confirm and order.dry_run
    assert len(order.reason) == 200


# --- what is refused, and how the 400 says it ----------------------------------------------------------------


def test_the_lots_message() -> None:
    assert refused(with_(lots=0)) == (
        "lots", "lots: must be a whole number from 1 to 100; give lots or quantity, not both (got 0)")


@pytest.mark.parametrize("value", [0, -1, 101, 1.5, 2.0, "2", True, [1]])
def test_lots_must_be_a_whole_number_in_range(value: Any) -> None:
    field, message = refused(with_(lots=value))
    assert field == "lots"
    assert "lots: must be a whole number from 1 to 100" in message


@pytest.mark.parametrize("value", [0, -65, 100_001, 65.0, "65", False])
def test_quantity_must_be_a_whole_number_in_range(value: Any) -> None:
    field, message = refused(with_(lots=None, quantity=value))
    assert field == "quantity"
    assert message.startswith("quantity: must be a whole number of units from 1 to 100,000, a multiple of the lot")


def test_lots_or_quantity_not_both_nor_neither() -> None:
    assert refused(with_(quantity=65)) == ("lots", "lots: give lots or quantity (units), not both")
    field, message = refused(with_(lots=None))
    assert field == "lots"
    assert message.startswith("lots: required: give lots (e.g. 1) or quantity")


def test_instrument_or_underlying_strike_option_type() -> None:
    field, message = refused(with_(underlying="NIFTY"))
    assert field == "instrument"
    assert message == ("instrument: give instrument, or underlying + strike + option_type, not both "
                       "(also got underlying)")
    field, message = refused(with_(instrument=None))
    assert field == "instrument"
    assert "required: give instrument (e.g. 'NIFTY ATM CE'" in message
    field, message = refused(with_(instrument=None, underlying="NIFTY", option_type="CE"))
    assert field == "strike"
    assert message.startswith("strike: required with underlying and option_type")
    field, _ = refused(with_(instrument=None, strike=26000, option_type="CE"))
    assert field == "underlying"
    field, _ = refused(with_(instrument=None, strike=26000, underlying="NIFTY"))
    assert field == "option_type"


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"order_type": "LIMIT"}, "price", "price: required for a LIMIT order"),
    ({"order_type": "SL", "trigger_price": 10}, "price", "price: required for a SL order"),
    ({"order_type": "SL", "price": 10}, "trigger_price", "trigger_price: required for a SL order"),
    ({"order_type": "SL-M"}, "trigger_price", "trigger_price: required for a SL-M order"),
    ({"price": 10}, "price", "price: not allowed for a MARKET order (did you mean order_type LIMIT"),
    ({"trigger_price": 10}, "trigger_price", "trigger_price: not allowed for a MARKET order"),
    ({"order_type": "LIMIT", "price": 10, "trigger_price": 9}, "trigger_price",
     "trigger_price: not allowed for a LIMIT order"),
    ({"order_type": "SL-M", "trigger_price": 10, "price": 10}, "price", "price: not allowed for a SL-M order"),
    ({"order_type": "LIMIT", "price": 10, "market_protection": -1}, "market_protection",
     "market_protection: applies to MARKET and SL-M orders only, not LIMIT"),
    ({"order_type": "SL", "price": 10, "trigger_price": 10.5}, "trigger_price",
     "trigger_price: a BUY stop-loss triggers at or below its price: trigger 10.5 is above price 10"),
    ({"side": "SELL", "order_type": "SL", "price": 10, "trigger_price": 9.5}, "trigger_price",
     "trigger_price: a SELL stop-loss triggers at or above its price: trigger 9.5 is below price 10"),
])
def test_prices_must_fit_the_order_type(changes: dict[str, Any], field: str, words: str) -> None:
    got_field, message = refused(with_(**changes))
    assert got_field == field
    assert message.startswith(words)


@pytest.mark.parametrize("value", [0, 100.01, -0.5, -2, "auto", math.nan, math.inf])
def test_market_protection_is_minus_one_or_a_percentage(value: Any) -> None:
    field, message = refused(with_(market_protection=value))
    assert field == "market_protection"
    assert "must be -1 (automatic) or a percentage above 0 and at most 100" in message


@pytest.mark.parametrize("field", ["price", "trigger_price"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 0, -1, "100", True, 1_000_001])
def test_prices_are_finite_positive_numbers(field: str, value: Any) -> None:
    body = with_(order_type="SL", price=10, trigger_price=10)
    body[field] = value
    got, message = refused(body)
    assert got == field
    assert message.startswith(f"{field}: must be rupees above 0 on the contract's tick")


@pytest.mark.parametrize("value", [0, -26000, math.nan, math.inf, "26000", 10_000_001])
def test_strike_is_a_positive_number(value: Any) -> None:
    got, message = refused({"side": "BUY", "underlying": "NIFTY", "strike": value, "option_type": "CE", "lots": 1})
    assert got == "strike"
    assert message.startswith("strike: must be the strike in rupees, a number above 0")


@pytest.mark.parametrize("value", ["01-12-2026", "2026-12-1", "2026-02-30", 20261201, "2026-12-01T10:00:00",
                                   "tomorrow", ""])
def test_expiry_is_an_iso_date(value: Any) -> None:
    got, message = refused(with_(expiry=value))
    assert got == "expiry"
    assert message.startswith("expiry: must be an ISO date YYYY-MM-DD (e.g. 2026-12-01)")


@pytest.mark.parametrize(("field", "value"), [("side", "HOLD"), ("side", 1), ("order_type", "STOP"),
                                              ("option_type", "CALL")])
def test_enums_refuse_other_values(field: str, value: Any) -> None:
    body = with_(instrument=None, underlying="NIFTY", strike=26000, option_type="CE")
    body[field] = value
    got, message = refused(body)
    assert got == field
    assert message.startswith(f"{field}: must be ")


@pytest.mark.parametrize("field", ["confirm", "dry_run"])
@pytest.mark.parametrize("value", ["yes", "true", 1, None])
def test_flags_are_json_booleans_only(field: str, value: Any) -> None:
    got, message = refused({**BASE, field: value})
    assert got == field
    assert message.startswith(f"{field}: must be true or false")


def test_text_fields_are_bounded_and_printable() -> None:
    got, message = refused(with_(reason="x" * 201))
    assert (got, message.split(" (got")[0]) == ("reason", "reason: must be printable text of at most 200 characters")
    assert refused(with_(reason="line\nbreak"))[0] == "reason"
    assert refused(with_(instrument="N" * 65))[0] == "instrument"
    assert refused(with_(instrument="   "))[0] == "instrument"  # stripped to empty
    assert refused(with_(instrument="NIFTY\x00ATM CE"))[0] == "instrument"
    assert refused(with_(instrument=None, underlying="N" * 41, strike=1, option_type="CE"))[0] == "underlying"
    assert refused(with_(instrument=26000))[0] == "instrument"  # a number is not text


def test_unknown_fields_are_refused_by_name() -> None:
    got, message = refused(with_(lot=1))
    assert got == "lot"
    assert message.startswith("lot: unknown field; accepted fields: side, instrument, underlying, strike")


def test_a_body_that_is_not_an_object() -> None:
    field, message = refused([BASE])
    assert field == ""
    assert message.startswith("the body must be a JSON object (fields: side, instrument,")


def test_missing_side_and_every_problem_is_named() -> None:
    field, message = refused({"instrument": "NIFTY ATM CE", "lots": 0, "extra": 1})
    assert field == "side"
    assert message.startswith("side: required; must be BUY or SELL")
    assert "lots: must be a whole number" in message
    assert "extra: unknown field" in message


def test_long_input_is_shortened_in_the_message() -> None:
    _, message = refused(with_(side="X" * 500))
    assert "X" * 41 not in message
    assert len(message) < 200


# --- the other bodies ------------------------------------------------------------------------------------------


def test_halt_and_reject_bodies() -> None:
    assert HaltBody.model_validate({}).reason == ""
    assert HaltBody.model_validate({"reason": "  news  "}).reason == "news"
    assert RejectBody.model_validate({"reason": "late"}).reason == "late"
    for model in (HaltBody, RejectBody):
        assert refused({"reason": "x" * 201}, model)[0] == "reason"
        got, message = refused({"why": "x"}, model)
        assert (got, message) == ("why", "why: unknown field; accepted fields: reason")
        assert refused({"reason": 5}, model)[0] == "reason"


@pytest.mark.parametrize(("given", "name"), [
    ("NIFTY", "NIFTY"), ("nifty", "NIFTY"), ("NSE:NIFTY50-INDEX", "NIFTY"), ("NSE:NIFTY BANK", "BANKNIFTY"),
    ("bse:sensex", "SENSEX"), ("", None), ("   ", None), (None, None),
])
def test_flatten_names_an_underlying_canonically(given: str | None, name: str | None) -> None:
    assert FlattenBody.model_validate({"underlying": given}).underlying == name
    assert FlattenBody.model_validate({}).underlying is None


def test_flatten_refuses_an_unknown_underlying() -> None:
    got, message = refused({"underlying": "NIFTYX"}, FlattenBody)
    assert got == "underlying"
    assert message == ("underlying: must be an index: NIFTY, BANKNIFTY, FINNIFTY, MIDCPNIFTY, NIFTYNXT50, SENSEX (or "
                       "its quote name, e.g. NSE:NIFTY50-INDEX), or left out to flatten every position "
                       "(got 'NIFTYX')")


# --- arbitrary input never escapes as anything but ValidationError ---------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats() | st.text(max_size=80)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=3), max_leaves=6)
FIELDS = ["side", "instrument", "underlying", "strike", "option_type", "expiry", "lots", "quantity", "order_type",
          "price", "trigger_price", "market_protection", "confirm", "dry_run", "reason", "junk"]
PLAUSIBLE = {
    "side": st.sampled_from(["BUY", "sell", "Hold"]),
    "instrument": st.sampled_from(["NIFTY ATM CE", "NIFTY26D0126000CE", ""]),
    "underlying": st.sampled_from(["NIFTY", "SENSEX", "X"]),
    "strike": st.floats(allow_nan=True) | st.integers(-5, 30_000),
    "option_type": st.sampled_from(["CE", "pe", "XX"]),
    "expiry": st.sampled_from(["2026-12-01", "2026-13-01", "x"]),
    "lots": st.integers(-2, 102),
    "quantity": st.integers(-2, 200),
    "order_type": st.sampled_from(["MARKET", "limit", "SL", "sl-m", "X"]),
    "price": st.floats() | st.integers(-1, 1000),
    "trigger_price": st.floats() | st.integers(-1, 1000),
    "market_protection": st.floats() | st.integers(-2, 101),
    "confirm": st.booleans(),
    "dry_run": st.booleans(),
    "reason": st.text(max_size=210),
    "junk": JSON_VALUES,
}


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=8)
       | st.fixed_dictionaries({}, optional={name: value for name, value in PLAUSIBLE.items()}))
def test_arbitrary_bodies_validate_or_raise_a_described_validation_error(body: dict[str, Any]) -> None:
    try:
        order = ManualOrder.model_validate(body)
    except ValidationError as exc:
        field, message = describe_validation_error(exc)
        assert message
        assert field in (*FIELDS, "") or field in body
        return
    # What validates keeps every rule.
    assert (order.lots is None) != (order.quantity is None)
    assert (order.instrument is None) == (order.underlying is not None)
    for number in (order.price, order.trigger_price, order.strike, order.market_protection):
        assert number is None or math.isfinite(number)
