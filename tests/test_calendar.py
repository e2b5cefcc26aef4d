"""NSE/BSE F&O calendar: trading days, sessions (ns UTC) and expiries against the NSE circulars' dates; the data file,
a user's file over it, malformed files, and years without holiday data."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trader.cli import main
from trader.config import ConfigError, load_settings
from trader.market.calendar import IST, MarketCalendar, ist_date
from trader.market.calendar_data import SHIPPED_CALENDAR_FILE, CalendarError, load_calendar_data, shipped_calendar_data
from trader.market.instruments import FALLBACK_UNDERLYINGS

from helpers import captured_logs

CALENDAR = MarketCalendar()
WEEKLY_UNDERLYINGS = CALENDAR.data.weekly_underlyings
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
    holidays = CALENDAR.data.holidays
    assert CALENDAR.holiday_years == {2025, 2026}
    assert len(holidays) == 14 + 16
    assert all(day.weekday() < 5 and day.year in CALENDAR.holiday_years for day in holidays)
    assert CALENDAR.data.special_sessions == {date(2025, 2, 1), date(2026, 2, 1)}


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


def test_extras_that_conflict_are_refused_and_extras_apply_in_years_without_data() -> None:
    with pytest.raises(ValueError, match="both in extra_holidays and extra_sessions"):
        MarketCalendar(extra_holidays=[date(2026, 12, 5)], extra_sessions=[date(2026, 12, 5)])
    calendar = MarketCalendar(extra_holidays=[date(2027, 1, 26)])
    assert not calendar.is_trading_day(date(2027, 1, 26))  # a known closure beats "every weekday"
    assert calendar.is_trading_day(date(2027, 1, 25))


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
    starts = [hours.effective_from for hours in CALENDAR.data.session_hours]
    assert starts == sorted(starts)
    assert len(starts) == 2


def test_session_bounds_refuses_non_trading_days() -> None:
    with pytest.raises(ValueError, match=r"2026-11-24 \(Tuesday, Prakash Gurpurb .*\) is not an NSE/BSE trading day"):
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
END_2027 = ist_ns(2027, 12, 31, 0, 0)  # 2027 has no holiday data: weekdays


@given(st.integers(min_value=START_2025, max_value=END_2027))
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


@given(st.dates(min_value=date(2025, 1, 1), max_value=date(2027, 12, 24)))
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




# --- years without holiday data ----------------------------------------------------------------------------


def test_a_year_without_holiday_data_trades_on_weekdays_and_never_raises() -> None:
    assert 2027 not in CALENDAR.holiday_years
    assert CALENDAR.is_trading_day(date(2027, 1, 5))  # a Tuesday
    assert CALENDAR.is_trading_day(date(2027, 1, 26))  # Republic Day, but unknown: a weekday
    assert not CALENDAR.is_trading_day(date(2027, 1, 9))  # a Saturday
    assert CALENDAR.next_trading_day(date(2026, 12, 31)) == date(2027, 1, 1)
    assert CALENDAR.previous_trading_day(date(2025, 1, 1)) == date(2024, 12, 31)  # before the data, too
    # The session hours in force last (15:40 close) carry on.
    assert CALENDAR.session_bounds(date(2027, 1, 5)) == (ist_ns(2027, 1, 5, 9, 15), ist_ns(2027, 1, 5, 15, 40))
    assert CALENDAR.next_session_open(ist_ns(2026, 12, 31, 15, 40)) == ist_ns(2027, 1, 1, 9, 15)
    assert CALENDAR.is_open(ist_ns(2027, 1, 5, 9, 15))
    # Expiries follow the weekday rule: NIFTY on Tuesdays, SENSEX on Thursdays, monthlies on the last one.
    assert CALENDAR.next_expiry("NIFTY", ist_ns(2026, 12, 30, 10, 0)) == date(2027, 1, 5)
    assert CALENDAR.next_expiry("NIFTY", ist_ns(2027, 1, 5, 9, 15)) == date(2027, 1, 5)
    assert CALENDAR.weekly_expiry("SENSEX", date(2027, 1, 5)) == date(2027, 1, 7)
    assert CALENDAR.monthly_expiry("BANKNIFTY", 2027, 1) == date(2027, 1, 26)
    assert CALENDAR.weekly_expiry("NIFTY", date(2031, 3, 3)) == date(2031, 3, 4)


class FakeClock:
    def __init__(self, ts_ns: int) -> None:
        self.ts_ns = ts_ns

    def __call__(self) -> int:
        return self.ts_ns


def test_live_calendar_warns_once_a_day_per_unknown_year() -> None:
    clock = FakeClock(ist_ns(2027, 1, 5, 9, 15))
    calendar = MarketCalendar(warn_clock=clock)
    with captured_logs("WARNING") as lines:
        assert calendar.is_open(clock())  # the ticker's silence check
        calendar.is_trading_day(date(2027, 1, 5))  # the risk gate's window check
        calendar.next_expiry("NIFTY", clock())
        calendar.is_trading_day(date(2026, 12, 31))  # a known year: silent
        calendar.is_trading_day(date(2028, 1, 3))  # another unknown year: its own warning
        clock.ts_ns = ist_ns(2027, 1, 6, 9, 15)  # the next day: warned again
        calendar.is_open(clock())
        calendar.is_open(clock() + 60 * NS)
    warnings = [line for line in lines if line["event"] == "calendar_unknown_year"]
    assert [(w["year"], w["today"]) for w in warnings] == [(2027, "2027-01-05"), (2028, "2027-01-05"),
                                                           (2027, "2027-01-06")]
    first = warnings[0]
    assert first["level"] == "warning"
    assert first["calendar_files"] == [str(SHIPPED_CALENDAR_FILE)]
    assert "[years.2027]" in first["fix"] and "TRADER_CALENDAR_FILE" in first["fix"]
    assert "every weekday counts as a trading day" in first["effect"]


def test_simulated_calendars_do_not_warn() -> None:
    with captured_logs("WARNING") as lines:
        assert MarketCalendar().is_trading_day(date(2027, 1, 5))
    assert lines == []


# --- the data file and a user's file over it ---------------------------------------------------------------


def test_the_shipped_file_is_package_data_with_its_format_documented() -> None:
    path = Path(str(SHIPPED_CALENDAR_FILE))
    assert path.parts[-4:] == ("trader", "market", "data", "nse_calendar.toml")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# NSE/BSE F&O trading calendar")
    for documented in ("format = 1", "[[session_hours]]", "[[expiry_weekdays]]", "[years.2027.holidays]",
                       "[years.2027.special_sessions]", "TRADER_CALENDAR_FILE"):
        assert documented in text
    assert load_calendar_data() is shipped_calendar_data()
    assert CALENDAR.data.files == (str(SHIPPED_CALENDAR_FILE),)


def write(tmp_path: Path, text: str, name: str = "my_calendar.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


USER_2027 = """
# 2027 as a user would add it the day NSE publishes it (these dates are made up for the test).
[years.2027]
source = "test data, not NSE's list"

[years.2027.holidays]
2027-01-26 = "Republic Day"
2027-03-22 = "Holi (test)"

[years.2027.special_sessions]
2027-02-06 = "Budget (Saturday, test)"

[years.2026.holidays]
2026-12-01 = "ad-hoc closure (test)"
2026-02-01 = "the Sunday session cancelled (test)"

[years.2026.special_sessions]
2026-11-24 = "holiday reopened (test)"
"""


def test_a_user_file_adds_a_year_and_overrides_the_shipped_days(tmp_path: Path) -> None:
    data = load_calendar_data(write(tmp_path, USER_2027))
    calendar = MarketCalendar(data, warn_clock=FakeClock(ist_ns(2027, 1, 5, 10, 0)))
    assert calendar.holiday_years == {2025, 2026, 2027}
    assert data.files == (str(SHIPPED_CALENDAR_FILE), str(tmp_path / "my_calendar.toml"))
    with captured_logs("WARNING") as lines:
        assert not calendar.is_trading_day(date(2027, 1, 26))
        assert calendar.is_trading_day(date(2027, 2, 6))  # a Saturday session
        assert not calendar.is_trading_day(date(2027, 2, 7))
        assert calendar.monthly_expiry("NIFTY", 2027, 1) == date(2027, 1, 25)  # moved off the holiday
        assert not calendar.is_trading_day(date(2026, 12, 1))  # added to a shipped year
        assert not calendar.is_trading_day(date(2026, 2, 1))  # a shipped special session cancelled
        assert calendar.is_trading_day(date(2026, 11, 24))  # a shipped holiday reopened
        assert not calendar.is_trading_day(date(2026, 1, 26))  # the rest of the shipped year stays
    assert lines == []  # 2027 is known now: no warning


def test_a_user_file_overrides_session_hours_and_expiry_rules(tmp_path: Path) -> None:
    data = load_calendar_data(write(tmp_path, """
weekly_underlyings = ["NIFTY", "SENSEX", "BANKNIFTY"]

[[session_hours]]
from = 2027-04-01
open = 09:00:00
close = 15:45:00

[[session_hours]]
from = 2026-08-03   # replaces the shipped row of that date
open = 09:15:00
close = 15:35:00

[[expiry_weekdays]]
from = 2027-01-01
weekday = "thursday"
underlyings = ["NIFTY", "BANKNIFTY"]
"""))
    calendar = MarketCalendar(data)
    assert [h.effective_from for h in data.session_hours] == [date(2025, 1, 1), date(2026, 8, 3), date(2027, 4, 1)]
    assert calendar.session_bounds(date(2026, 8, 3)) == (ist_ns(2026, 8, 3, 9, 15), ist_ns(2026, 8, 3, 15, 35))
    assert calendar.session_bounds(date(2027, 4, 1)) == (ist_ns(2027, 4, 1, 9, 0), ist_ns(2027, 4, 1, 15, 45))
    assert calendar.session_bounds(date(2026, 7, 31))[1] == ist_ns(2026, 7, 31, 15, 30)
    assert calendar.weekly_expiry("NIFTY", date(2026, 12, 28)) == date(2026, 12, 29)  # still Tuesday in 2026
    assert calendar.weekly_expiry("NIFTY", date(2027, 1, 1)) == date(2027, 1, 7)  # Thursday from 2027
    assert calendar.weekly_expiry("BANKNIFTY", date(2027, 1, 1)) == date(2027, 1, 7)
    assert calendar.weekly_expiry("SENSEX", date(2027, 1, 1)) == date(2027, 1, 7)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[years.2027.holidays]\n2027-02-30 = "no such day"\n',
         ["years.2027.holidays: '2027-02-30' is not a date", 'write YYYY-MM-DD = "description"']),
        ('[years.2027.holidays]\n"26-01-2027" = "Republic Day"\n', ["'26-01-2027' is not a date"]),
        ('[years.2027.holidays]\n2026-12-31 = "wrong year"\n',
         ["years.2027.holidays: 2026-12-31 is not in 2027; move it to [years.2026.holidays]"]),
        ('[years.2027.holidays]\n2027-01-24 = "a Sunday"\n', ["2027-01-24 is a Sunday", "check the date"]),
        ('[years.2027.special_sessions]\n2027-01-25 = "a Monday"\n', ["2027-01-25 is a Monday and no holiday"]),
        ('[years.2027.holidays]\n2027-01-26 = "x"\n[years.2027.special_sessions]\n2027-01-26 = "x"\n',
         ["years.2027: 2027-01-26 is both a holiday and a special session"]),
        ('[years.2027.holidays]\n2027-01-26 = 1\n', ["years.2027.holidays.2027-01-26: 1 must be a quoted description"]),
        ("holidays_2027 = []\n", ["the top level: unknown key 'holidays_2027'", "check the spelling"]),
        ('[years.2027]\nholiday = {}\n',
         ["years.2027: unknown key 'holiday' (known: source, holidays, special_sessions)"]),
        ('[years.27]\nsource = "x"\n', ["years.27: '27' is not a year; name the table [years.YYYY]"]),
        ("format = 2\n", ["format: 2 is not supported; this version reads `format = 1`"]),
        ('[[session_hours]]\nfrom = 2027-01-01\nopen = 15:40:00\nclose = 09:15:00\n',
         ["session_hours[0]: open 15:40 is not before close 09:15"]),
        ('[[session_hours]]\nfrom = "2027-01-01"\nopen = 09:15:00\nclose = 15:30:00\n',
         ["session_hours[0].from: '2027-01-01' is not a date; write a TOML date such as 2027-01-05 (no quotes"]),
        ('[[session_hours]]\nfrom = 2027-01-01\nopen = 09:15:00\n', ["session_hours[0]: missing close"]),
        ('[[session_hours]]\nfrom = 2027-01-01\nopen = 09:15:00\nclose = 15:30:00\nclosing = 15:30:00\n',
         ["session_hours[0]: unknown key 'closing'"]),
        ('[[expiry_weekdays]]\nfrom = 2027-01-01\nweekday = "Saturday"\nunderlyings = ["NIFTY"]\n',
         ["expiry_weekdays[0].weekday: 'Saturday' is not a weekday; write Monday ... Friday"]),
        ('[[expiry_weekdays]]\nfrom = 2027-01-01\nweekday = "Tuesday"\nunderlyings = ["nifty"]\n',
         ["expiry_weekdays[0].underlyings: 'nifty' is not an underlying name"]),
        ('weekly_underlyings = ["NIFTY", "BANKEX"]\n',
         ["weekly_underlyings: BANKEX has no expiry_weekdays row"]),
        ('[years.2027.holidays\n2027-01-26 = "x"\n', ["is not valid TOML", "line 1"]),
        ("[years.2027.holidays]\n2027-01-26 = 2027-01-26\n", ["must be a quoted description"]),
    ],
)
def test_malformed_user_files_name_the_field_and_the_fix(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CalendarError) as caught:
        load_calendar_data(path)
    message = str(caught.value)
    assert message.startswith(f"calendar file {path}: ")
    for fragment in expected:
        assert fragment in message


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, 'format = 3\nextra = 1\n[years.2027.holidays]\n2027-13-01 = "x"\n')
    with pytest.raises(CalendarError) as caught:
        load_calendar_data(path)
    assert len(caught.value.problems) == 3


def test_unreadable_calendar_files(tmp_path: Path) -> None:
    with pytest.raises(CalendarError, match=r"missing\.toml: cannot be read \(.*No such file.*point calendar_file"):
        load_calendar_data(tmp_path / "missing.toml")
    with pytest.raises(CalendarError, match="cannot be read"):
        load_calendar_data(tmp_path)  # a directory
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(CalendarError, match="cannot be read"):
        load_calendar_data(binary)


# --- configuration ------------------------------------------------------------------------------------------


def test_calendar_file_from_the_environment(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write(tmp_path, USER_2027)
    clean_env.setenv("TRADER_CALENDAR_FILE", str(path))
    settings = load_settings()
    assert settings.calendar_file == path
    assert 2027 in settings.market_calendar().holiday_years
    assert load_settings({"calendar_file": None}).market_calendar().holiday_years == {2025, 2026}


def test_a_bad_calendar_file_is_a_config_error(clean_env: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[years.2027.holidays]\n2027-02-30 = "x"\n')
    clean_env.setenv("TRADER_CALENDAR_FILE", str(path))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    [line] = caught.value.lines
    assert line.startswith(f"config error: calendar_file: calendar file {path}: years.2027.holidays: '2027-02-30'")
    assert line.endswith("set it with --calendar-file or TRADER_CALENDAR_FILE")
    clean_env.delenv("TRADER_CALENDAR_FILE")
    assert main(["check-config", "--calendar-file", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: calendar_file: calendar file ") and "cannot be read" in err
    assert main(["check-config", "--calendar-file", str(write(tmp_path, USER_2027, "ok.toml"))]) == 0


def test_a_calendar_file_that_breaks_after_start_up_is_still_a_config_error(clean_env: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    path = write(tmp_path, USER_2027)
    settings = load_settings({"calendar_file": str(path)})
    path.write_text("format = 9\n")
    with pytest.raises(ConfigError, match=r"config error: calendar_file: .*format"):
        settings.market_calendar()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2027-01-32T09:15"], "--start '2027-01-32T09:15': not an ISO date-time; write it like "
                                          "2027-01-05T09:15"),
        (["--start", "tomorrow"], "not an ISO date-time"),
        (["--start", "2024-12-31T09:15"], "start in 2025 or later"),
        (["--start", "2027-01-05T09:15", "--follow-calendar"], "give one of --start and --follow-calendar"),
    ],
)
def test_sim_start_is_validated(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: ") and message in err
