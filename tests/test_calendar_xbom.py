"""The shipped NSE calendar against exchange_calendars' XBOM (BSE, which closes on the same days as NSE).

exchange_calendars is a test-only dependency: an independent, maintained list to catch a typo in our data file. Every
known difference is listed below with its reason; any other difference fails the test.
"""

from __future__ import annotations

from datetime import date, timedelta

import exchange_calendars as xcals
import pandas as pd
import pytest

from trader.market.calendar import MarketCalendar

# exchange_calendars 4.13.2 under pandas 3 warns about its own use of Series.values; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Series.values returning an ndarray:DeprecationWarning")

CALENDAR = MarketCalendar()

# Days we trade and XBOM does not.
ONLY_WE_TRADE = {
    # Union Budget on a Sunday, normal hours (NSE/CMTR/72349, 16 Jan 2026). XBOM models special Saturday sessions
    # (it has Sat 1 Feb 2025, which we have too) but no Sunday one.
    date(2026, 2, 1): "Sunday Budget-day session",
}
# Days XBOM trades and we do not. Empty with exchange_calendars >= 4.13.2 (the lower bound in pyproject): 4.13.0 and
# 4.13.1 lack the ad-hoc closure of 15 Jan 2026 (Maharashtra municipal elections), which 4.13.2 added.
ONLY_XBOM_TRADES: dict[date, str] = {}
# Diwali Muhurat sessions are one-hour evening sessions that neither calendar counts as a session: 21 Oct 2025 is a
# holiday in both, and 8 Nov 2026 is a Sunday. Neither has a session for them.
MUHURAT_DAYS = (date(2025, 10, 21), date(2026, 11, 8))
# The F&O close moved to 15:40 on 3 Aug 2026 (NSE/FAOP/74467); XBOM keeps 15:30 (the cash market's close).
CLOSE_MOVED = date(2026, 8, 3)


def xbom_for(year: int) -> xcals.ExchangeCalendar | None:
    """XBOM over one year, or None if its holiday list does not reach that year."""
    try:
        return xcals.get_calendar("XBOM", start=f"{year}-01-01", end=f"{year}-12-31")
    except ValueError:  # "The XBOM holidays are only recorded to the year ..."
        return None


def compared_years() -> dict[int, xcals.ExchangeCalendar]:
    years = {year: xbom_for(year) for year in sorted(CALENDAR.holiday_years)}
    covered = {year: calendar for year, calendar in years.items() if calendar is not None}
    assert {2025, 2026} <= covered.keys(), "exchange_calendars too old: install exchange_calendars>=4.13.2"
    return covered


def days_of(year: int) -> list[date]:
    first = date(year, 1, 1)
    return [first + timedelta(days=n) for n in range((date(year + 1, 1, 1) - first).days)]


def xbom_trading_days(xbom: xcals.ExchangeCalendar, year: int) -> set[date]:
    """XBOM's own business-day rule, day by day. Its ``sessions`` index is built with pandas' date_range, which under
    pandas 3 drops the special Saturday sessions XBOM declares (Sat 1 Feb 2025); the day offset keeps them."""
    days = {day for day in days_of(year) if xbom.day.is_on_offset(pd.Timestamp(day))}
    assert {session.date() for session in xbom.sessions} <= days
    return days


def test_trading_days_agree_with_xbom_but_for_the_listed_differences() -> None:
    for year, xbom in compared_years().items():
        theirs = xbom_trading_days(xbom, year)
        ours = {day for day in days_of(year) if CALENDAR.is_trading_day(day)}
        assert ours - theirs == {d for d in ONLY_WE_TRADE if d.year == year}, year
        assert theirs - ours == {d for d in ONLY_XBOM_TRADES if d.year == year}, year
    for day in MUHURAT_DAYS:
        assert not CALENDAR.is_trading_day(day)


def test_session_hours_agree_with_xbom_until_the_close_moved_to_1540() -> None:
    ten_minutes = 10 * 60 * 1_000_000_000
    for _, xbom in compared_years().items():
        for session, row in xbom.schedule.iterrows():
            day = pd.Timestamp(session).date()
            if day in ONLY_XBOM_TRADES:
                continue
            open_ns, close_ns = CALENDAR.session_bounds(day)
            assert open_ns == row["open"].value, day
            assert close_ns == row["close"].value + (ten_minutes if day >= CLOSE_MOVED else 0), day
