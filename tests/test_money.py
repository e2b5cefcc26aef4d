"""The one rupee↔paise conversion: exact for whole paise, refuses what is not a finite number."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trader.money import MoneyError, format_inr, group_indian, rupee_text, to_paise, to_paise_or_zero, to_rupees


@pytest.mark.parametrize(("rupees", "paise"), [
    (0, 0), (1, 100), (0.05, 5), (123.45, 12345), (-0.1, -10), (1e7, 1_000_000_000),
    ("123.45", 12345), (" 24000 ", 2_400_000), ("0.105", 10), ("0.115", 12), (Decimal("19.95"), 1995),
])
def test_to_paise_converts_floats_ints_and_decimal_text(rupees: float | int | str | Decimal, paise: int) -> None:
    assert to_paise(rupees) == paise


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "-inf", "NaN", "abc", "", True, None, [1], "1_000",
                                 "\u0661\u0662", "1e1000000", "1e300000", Decimal("1e20"), 1e300, "12.3.4", "0x10"])
def test_to_paise_refuses_what_is_not_a_finite_number(bad: object) -> None:
    with pytest.raises(MoneyError):
        to_paise(bad)  # type: ignore[arg-type]  # the point is a wrong type from the outside world


def test_absent_optional_wire_field_is_zero() -> None:
    assert to_paise_or_zero(None) == 0
    assert to_paise_or_zero(12.3) == 1230


@given(st.integers(min_value=-10**12, max_value=10**12))
def test_whole_paise_survive_the_float_round_trip(paise: int) -> None:
    assert to_paise(to_rupees(paise)) == paise
    assert to_paise(rupee_text(paise)) == paise


def test_text_forms() -> None:
    assert rupee_text(12345) == "123.45"
    assert rupee_text(-5) == "-0.05"
    assert format_inr(-123_456_789) == "-₹12,34,567.89"  # Indian grouping: lakh and crore
    assert format_inr(5) == "₹0.05"
    assert format_inr(10_000_000) == "₹1,00,000.00"
    assert format_inr(99_999) == "₹999.99"


@pytest.mark.parametrize(("number", "text"), [(0, "0"), (999, "999"), (1000, "1,000"), (12345, "12,345"),
                                              (123456, "1,23,456"), (1234567, "12,34,567"),
                                              (12345678, "1,23,45,678"), (1234567890, "1,23,45,67,890"),
                                              (-100000, "-1,00,000")])
def test_indian_digit_grouping(number: int, text: str) -> None:
    assert group_indian(number) == text
