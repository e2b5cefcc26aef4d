"""NSE/BSE F&O calendar: trading days, sessions (ns UTC) and expiries against the fact sheet's dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trader.market.calendar import (
    FO_SESSION_HOURS,
    IST,
    TRADING_HOLIDAYS,
    WEEKLY_UNDERLYINGS,
    MarketCalendar,
    ist_date,
)
from trader.market.instruments import FALLBACK_UNDERLYINGS

CALENDAR = MarketCalendar()
NS = 1_000_000_000


def ist_ns(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> int:
    """An IST wall-clock time as ns UTC, computed independently of the module under test (IST = UTC+5:30)."""
    utc = datetime(year, month, day, hour, minute, second, tzinfo=UTC) - timedelta(hours=5, minutes=30)
    return int(utc.timestamp()) * NS


# --- trading days ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "trading"),
    [
        (date(2026, 11, 23), True),  # Monday
        (date(2026, 11, 24), False),  # Guru Nanak Jayanti (Tuesday)
        (date(2026, 1, 15), False),  # ad-hoc: municipal elections
        (date(2026, 3, 3), False),  # Holi
        (date(2025, 10, 21), False),  # Diwali: Muhurat session only
        (date(2025, 2, 1), True),  # Saturday Budget session
        (date(2026, 2, 1), True),  # Sunday Budget session
        (date(2026, 2, 7), False),  # ordinary Saturday
        (date(2026, 2, 8), False),  # ordinary Sunday
        (date(2026, 8, 3), True),
    ],
)
def test_is_trading_day(day: date, trading: bool) -> None:
    assert CALENDAR.is_trading_day(day) is trading


def test_holidays_are_weekdays_of_covered_years() -> None:
    assert len(TRADING_HOLIDAYS) == 14 + 16
    assert all(day.weekday() < 5 for day in TRADING_HOLIDAYS)


def test_years_without_holiday_data_are_refused() -> None:
    with pytest.raises(ValueError, match="no NSE/BSE holiday data for 2027"):
        CALENDAR.is_trading_day(date(2027, 1, 4))
    with pytest.raises(ValueError, match="2024"):
        CALENDAR.next_trading_day(date(2024, 12, 30))


def test_previous_and_next_trading_day_skip_weekends_and_holidays() -> None:
    assert CALENDAR.next_trading_day(date(2026, 11, 20)) == date(2026, 11, 23)
    assert CALENDAR.next_trading_day(date(2026, 11, 23)) == date(2026, 11, 25)
    assert CALENDAR.previous_trading_day(date(2026, 11, 25)) == date(2026, 11, 23)
    assert CALENDAR.previous_trading_day(date(2026, 11, 23)) == date(2026, 11, 20)
    assert CALENDAR.next_trading_day(date(2026, 1, 30)) == date(2026, 2, 1)  # Sunday session


def test_extra_holidays_and_sessions_from_config() -> None:
    calendar = MarketCalendar(
        extra_holidays=[date(2026, 12, 1), date(2026, 2, 1)],  # a new closure; the Sunday session cancelled
        extra_sessions=[date(2026, 11, 24), date(2026, 12, 5)],  # a holiday reopened; a Saturday session
    )
    assert not calendar.is_trading_day(date(2026, 12, 1))
    assert not calendar.is_trading_day(date(2026, 2, 1))
    assert calendar.is_trading_day(date(2026, 11, 24))
    assert calendar.is_trading_day(date(2026, 12, 5))
    saturday_session = (ist_ns(2026, 12, 5, 9, 15), ist_ns(2026, 12, 5, 15, 40))
    assert calendar.session_bounds(date(2026, 12, 5)) == saturday_session
    # The built-in calendar is untouched.
    assert CALENDAR.is_trading_day(date(2026, 12, 1))


def test_extras_that_conflict_or_fall_outside_the_data_are_refused() -> None:
    with pytest.raises(ValueError, match="both in extra_holidays and extra_sessions"):
        MarketCalendar(extra_holidays=[date(2026, 12, 5)], extra_sessions=[date(2026, 12, 5)])
    with pytest.raises(ValueError, match="2027"):
        MarketCalendar(extra_holidays=[date(2027, 1, 26)])


# --- sessions ----------------------------------------------------------------------------------------------


def test_close_moves_from_1530_to_1540_on_3_aug_2026() -> None:
    last_1530 = CALENDAR.session_bounds(date(2026, 7, 31))
    first_1540 = CALENDAR.session_bounds(date(2026, 8, 3))
    assert last_1530 == (ist_ns(2026, 7, 31, 9, 15), ist_ns(2026, 7, 31, 15, 30))
    assert first_1540 == (ist_ns(2026, 8, 3, 9, 15), ist_ns(2026, 8, 3, 15, 40))
    # The same closes as literal UTC instants: 10:00 and 10:10 UTC.
    assert last_1530[1] == int(datetime(2026, 7, 31, 10, 0, tzinfo=UTC).timestamp()) * NS
    assert first_1540[1] == int(datetime(2026, 8, 3, 10, 10, tzinfo=UTC).timestamp()) * NS


def test_session_hours_table_is_ordered_by_date() -> None:
    starts = [hours.effective_from for hours in FO_SESSION_HOURS]
    assert starts == sorted(starts)


def test_session_bounds_refuses_non_trading_days() -> None:
    with pytest.raises(ValueError, match=r"2026-11-24 .*not an NSE/BSE trading day"):
        CALENDAR.session_bounds(date(2026, 11, 24))
    with pytest.raises(ValueError, match="not an NSE/BSE trading day"):
        CALENDAR.session_bounds(date(2026, 2, 7))


@pytest.mark.parametrize(
    ("ts_ns", "is_open"),
    [
        (ist_ns(2026, 7, 31, 9, 15) - 1, False),
        (ist_ns(2026, 7, 31, 9, 15), True),
        (ist_ns(2026, 7, 31, 15, 30) - 1, True),
        (ist_ns(2026, 7, 31, 15, 30), False),
        (ist_ns(2026, 8, 3, 15, 35), True),  # after the old close, before the new one
        (ist_ns(2026, 8, 3, 15, 40) - 1, True),
        (ist_ns(2026, 8, 3, 15, 40), False),
        (ist_ns(2026, 11, 24, 11, 0), False),  # holiday
        (ist_ns(2026, 2, 7, 11, 0), False),  # Saturday
        (ist_ns(2026, 2, 1, 11, 0), True),  # Sunday Budget session
    ],
)
def test_is_open_at_the_boundaries(ts_ns: int, is_open: bool) -> None:
    assert CALENDAR.is_open(ts_ns) is is_open


@pytest.mark.parametrize(
    ("ts_ns", "expected_open"),
    [
        # Friday evening over the weekend.
        (ist_ns(2026, 11, 20, 18, 0), ist_ns(2026, 11, 23, 9, 15)),
        # Monday evening over the Tuesday holiday.
        (ist_ns(2026, 11, 23, 16, 0), ist_ns(2026, 11, 25, 9, 15)),
        # Exactly at the close: the session is over.
        (ist_ns(2026, 11, 23, 15, 40), ist_ns(2026, 11, 25, 9, 15)),
        # Before the open on a trading day: that day's open.
        (ist_ns(2026, 11, 23, 7, 0), ist_ns(2026, 11, 23, 9, 15)),
        # Inside a session: the open of that session.
        (ist_ns(2026, 11, 23, 12, 0), ist_ns(2026, 11, 23, 9, 15)),
        (ist_ns(2026, 11, 23, 15, 40) - 1, ist_ns(2026, 11, 23, 9, 15)),
        # On a holiday.
        (ist_ns(2026, 11, 24, 10, 0), ist_ns(2026, 11, 25, 9, 15)),
        # Just after midnight IST, which is still the previous day in UTC.
        (ist_ns(2026, 11, 25, 0, 1), ist_ns(2026, 11, 25, 9, 15)),
    ],
)
def test_next_session_open(ts_ns: int, expected_open: int) -> None:
    assert CALENDAR.next_session_open(ts_ns) == expected_open


START_2025 = ist_ns(2025, 1, 1, 0, 0)
END_2026 = ist_ns(2026, 12, 30, 0, 0)  # the next open must still be inside the holiday data


@given(st.integers(min_value=START_2025, max_value=END_2026))
def test_next_session_open_is_the_open_of_this_or_the_next_session(ts_ns: int) -> None:
    open_ns = CALENDAR.next_session_open(ts_ns)
    session_day = ist_date(open_ns)
    assert CALENDAR.session_bounds(session_day)[0] == open_ns
    if CALENDAR.is_open(ts_ns):
        assert open_ns <= ts_ns
        assert session_day == ist_date(ts_ns)
    else:
        assert open_ns > ts_ns
        # No trading day lies between ts and the returned session.
        day = ist_date(ts_ns)
        if CALENDAR.is_trading_day(day) and ts_ns >= CALENDAR.session_bounds(day)[1]:
            day += timedelta(days=1)
        while day < session_day:
            assert not CALENDAR.is_trading_day(day)
            day += timedelta(days=1)


def test_ist_date_uses_kolkata_time() -> None:
    assert ist_date(ist_ns(2026, 11, 25, 0, 1)) == date(2026, 11, 25)
    assert ist_date(ist_ns(2026, 11, 24, 23, 59)) == date(2026, 11, 24)
    assert str(IST) == "Asia/Kolkata"


# --- expiries ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("underlying", "on_or_after", "expiry"),
    [
        ("NIFTY", date(2026, 11, 18), date(2026, 11, 23)),  # Tue 24 Nov is a holiday
        ("NIFTY", date(2026, 11, 23), date(2026, 11, 23)),
        ("NIFTY", date(2026, 11, 24), date(2026, 12, 1)),  # the moved expiry is already past
        ("NIFTY", date(2026, 2, 26), date(2026, 3, 2)),  # Holi on Tue 3 Mar
        ("NIFTY", date(2026, 4, 8), date(2026, 4, 13)),  # Ambedkar Jayanti on Tue 14 Apr
        ("NIFTY", date(2026, 11, 25), date(2026, 12, 1)),
        ("NIFTY", date(2025, 8, 14), date(2025, 8, 14)),  # Thursday expiries until Aug 2025
        ("NIFTY", date(2025, 8, 25), date(2025, 8, 28)),
        ("NIFTY", date(2025, 8, 29), date(2025, 9, 2)),  # first Tuesday expiry
        ("SENSEX", date(2026, 1, 9), date(2026, 1, 14)),  # Thu 15 Jan closed (elections)
        ("SENSEX", date(2026, 3, 20), date(2026, 3, 25)),  # Ram Navami on Thu 26 Mar
        ("SENSEX", date(2026, 4, 17), date(2026, 4, 23)),
        ("SENSEX", date(2025, 1, 1), date(2025, 1, 7)),  # Tuesday expiries Jan-Aug 2025
        ("SENSEX", date(2025, 8, 27), date(2025, 9, 4)),  # first Thursday expiry after the reform
    ],
)
def test_weekly_expiry(underlying: str, on_or_after: date, expiry: date) -> None:
    assert CALENDAR.weekly_expiry(underlying, on_or_after) == expiry


@pytest.mark.parametrize(
    ("underlying", "year", "month", "expiry"),
    [
        ("NIFTY", 2026, 11, date(2026, 11, 23)),  # last Tuesday 24 Nov is a holiday
        ("BANKNIFTY", 2026, 11, date(2026, 11, 23)),
        ("NIFTY", 2026, 3, date(2026, 3, 30)),  # Mahavir Jayanti on Tue 31 Mar
        ("FINNIFTY", 2026, 3, date(2026, 3, 30)),
        ("MIDCPNIFTY", 2026, 3, date(2026, 3, 30)),
        ("NIFTYNXT50", 2026, 1, date(2026, 1, 27)),
        ("NIFTY", 2025, 12, date(2025, 12, 30)),
        ("NIFTY", 2025, 8, date(2025, 8, 28)),  # last Thursday before the Sep 2025 reform
        ("BANKNIFTY", 2025, 9, date(2025, 9, 30)),  # last Tuesday after it
        ("SENSEX", 2026, 3, date(2026, 3, 25)),  # Ram Navami on Thu 26 Mar
        ("SENSEX", 2026, 5, date(2026, 5, 27)),  # Bakri Id on Thu 28 May
        ("SENSEX", 2025, 6, date(2025, 6, 24)),  # last Tuesday, Jan-Aug 2025
        ("SENSEX", 2026, 12, date(2026, 12, 31)),
    ],
)
def test_monthly_expiry(underlying: str, year: int, month: int, expiry: date) -> None:
    assert CALENDAR.monthly_expiry(underlying, year, month) == expiry


def test_monthly_only_underlyings_have_no_weekly_expiry() -> None:
    with pytest.raises(ValueError, match="BANKNIFTY has no weekly options"):
        CALENDAR.weekly_expiry("BANKNIFTY", date(2026, 11, 2))


def test_unknown_underlying_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown underlying 'BANKEX'.*NIFTY.*SENSEX"):
        CALENDAR.monthly_expiry("BANKEX", 2026, 11)
    with pytest.raises(ValueError, match="unknown underlying 'nifty'"):
        CALENDAR.weekly_expiry("nifty", date(2026, 11, 2))
    with pytest.raises(ValueError, match="unknown underlying"):
        CALENDAR.next_expiry("RELIANCE", ist_ns(2026, 11, 2, 10, 0))


def test_weekly_flags_agree_with_the_fallback_table() -> None:
    assert {name for name, spec in FALLBACK_UNDERLYINGS.items() if spec.weekly} == WEEKLY_UNDERLYINGS
    for name in FALLBACK_UNDERLYINGS:  # every known underlying has expiry rules
        CALENDAR.monthly_expiry(name, 2026, 6)


@pytest.mark.parametrize(
    ("underlying", "ts_ns", "expiry"),
    [
        ("NIFTY", ist_ns(2026, 11, 23, 10, 0), date(2026, 11, 23)),
        ("NIFTY", ist_ns(2026, 11, 23, 15, 40) - 1, date(2026, 11, 23)),
        ("NIFTY", ist_ns(2026, 11, 23, 15, 40), date(2026, 12, 1)),  # expired at the close
        ("NIFTY", ist_ns(2026, 11, 24, 10, 0), date(2026, 12, 1)),
        ("NIFTY", ist_ns(2026, 11, 20, 18, 0), date(2026, 11, 23)),
        ("NIFTY", ist_ns(2026, 7, 28, 15, 30), date(2026, 8, 4)),  # 15:30 close before Aug 2026
        ("NIFTY", ist_ns(2026, 7, 28, 15, 29), date(2026, 7, 28)),
        ("SENSEX", ist_ns(2026, 1, 12, 9, 0), date(2026, 1, 14)),
        ("BANKNIFTY", ist_ns(2026, 11, 10, 10, 0), date(2026, 11, 23)),
        ("BANKNIFTY", ist_ns(2026, 11, 23, 16, 0), date(2026, 12, 29)),
        ("BANKNIFTY", ist_ns(2026, 11, 25, 10, 0), date(2026, 12, 29)),  # monthly already past this month
        ("FINNIFTY", ist_ns(2026, 3, 31, 10, 0), date(2026, 4, 28)),  # holiday after the moved expiry
    ],
)
def test_next_expiry(underlying: str, ts_ns: int, expiry: date) -> None:
    assert CALENDAR.next_expiry(underlying, ts_ns) == expiry


@given(st.dates(min_value=date(2025, 1, 1), max_value=date(2026, 12, 24)))
def test_weekly_expiries_are_trading_days_on_or_after_the_query(day: date) -> None:
    for underlying in sorted(WEEKLY_UNDERLYINGS):
        expiry = CALENDAR.weekly_expiry(underlying, day)
        assert expiry >= day
        assert CALENDAR.is_trading_day(expiry)
        # At most one week ahead, even past a moved expiry — except across SENSEX's Tuesday → Thursday switch on
        # 1 Sep 2025, where the week after Tue 26 Aug 2025 expires on Thu 4 Sep.
        switched = underlying == "SENSEX" and day < date(2025, 9, 1) <= expiry
        assert (expiry - day).days <= (9 if switched else 7)


def test_the_sensex_weekday_switch_gap() -> None:
    assert CALENDAR.weekly_expiry("SENSEX", date(2025, 8, 27)) == date(2025, 9, 4)


def test_simulated_market_calendar_runs_in_years_without_holiday_data() -> None:
    real = MarketCalendar()
    simulated = MarketCalendar(weekdays_when_unknown=True)
    with pytest.raises(ValueError, match="no NSE/BSE holiday data for 2031"):
        real.is_trading_day(date(2031, 3, 4))
    assert simulated.is_trading_day(date(2031, 3, 4))  # a Tuesday
    assert not simulated.is_trading_day(date(2031, 3, 8))  # a Saturday
    assert not simulated.is_trading_day(date(2026, 11, 24))  # known holidays still apply
    assert simulated.weekly_expiry("NIFTY", date(2031, 3, 3)) == date(2031, 3, 4)
