"""NSE/BSE F&O trading calendar: sessions, holidays and option expiries.

Times come in as IST wall-clock times and leave as integer nanoseconds UTC, the domain's time unit.

The data live in a TOML file shipped with the package, ``trader/market/data/nse_calendar.toml`` (see
``SHIPPED_CALENDAR_FILE``), whose header documents the format:

* ``format = 1``, and ``weekly_underlyings``: the underlyings with weekly options (NIFTY, SENSEX);
* ``[[session_hours]]`` rows ``from`` / ``open`` / ``close`` (IST): the F&O normal market, effective-dated
  (09:15-15:30, and 09:15-15:40 from 3 Aug 2026);
* ``[[expiry_weekdays]]`` rows ``from`` / ``weekday`` / ``underlyings``: the expiry weekday by unadjusted expiry
  date (NSE Thursday, then Tuesday from 1 Sep 2025; SENSEX Tuesday, then Thursday from 1 Sep 2025);
* ``[years.YYYY]`` tables, one per year whose holiday list is complete, with ``holidays`` (weekday closures,
  ``YYYY-MM-DD = "description"``) and ``special_sessions`` (weekend days with a normal session, such as the
  Union Budget days Sat 1 Feb 2025 and Sun 1 Feb 2026). Every row may carry a ``source``.

A user file in the same layout (``calendar_file`` setting, ``TRADER_CALENDAR_FILE``) extends and overrides the
shipped one, so next year's NSE list or an ad-hoc closure needs no code change: see ``load_calendar_data``.
A malformed file raises ``CalendarError`` naming the file, the field and the fix (reading and validating the files:
``calendar_data.py``).

A year without holiday data never raises: every weekday counts as a trading day (known extra closures still
apply). That is right for the built-in market and backtests; in live trading the exchange itself refuses orders
on a holiday, and a calendar built with ``warn_clock`` logs one ``calendar_unknown_year`` warning per day naming
the year and where to add it.

Sources, also named next to each row of the data file: NSE trading-holiday circulars (2026: NSE/FAOP/71777 and
NSE/CMTR/71775, 12 Dec 2025; the ad-hoc 15 Jan 2026 closure: NSE circulars of 9-12 Jan 2026; list at
https://www.nseindia.com/resources/exchange-communication-holidays); the Budget-day session NSE/CMTR/72349
(16 Jan 2026); the 15:40 close NSE/FAOP/74467 (29 May 2026) and BSE notice 20260801-2; the expiry days from
NSE's equity-derivatives contract specifications (NSE/FAOP/68747) and SEBI circular
SEBI/HO/MRD/TPD-1/P/CIR/2024/132 (1 Oct 2024, one benchmark weekly per exchange). An expiry that falls on a
holiday moves to the previous trading day.
"""

from __future__ import annotations

import calendar as gregorian
from calendar import SATURDAY
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from trader.logging import get_logger
from trader.market.calendar_data import (
    NSE_HOLIDAYS_PAGE,
    SHIPPED_CALENDAR_FILE,
    CalendarData,
    ExpiryWeekday,
    SessionHours,
    shipped_calendar_data,
)

IST = ZoneInfo("Asia/Kolkata")

log = get_logger("trader.calendar")

_NS_PER_MICROSECOND = 1_000
_NS_PER_SECOND = 1_000_000_000
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_DAY = timedelta(days=1)

# --- the calendar ----------------------------------------------------------------------------------------


def ist_date(ts_ns: int) -> date:
    """The IST calendar date of an instant given in nanoseconds UTC."""
    return datetime.fromtimestamp(ts_ns // _NS_PER_SECOND, tz=IST).date()


def ist_ns(day: date, wall_time: time) -> int:
    """An IST wall-clock moment as integer ns UTC (exact: no float on the way)."""
    return utc_ns(datetime.combine(day, wall_time, tzinfo=IST))


def utc_ns(moment: datetime) -> int:
    """An aware datetime as integer ns UTC (exact to the microsecond: no float on the way)."""
    return (moment - _UNIX_EPOCH) // timedelta(microseconds=1) * _NS_PER_MICROSECOND


def ist_text(ts_ns: int) -> str:
    """ns UTC as an ISO IST time to the second, for logs (``2026-11-20T09:15:00+05:30``)."""
    return datetime.fromtimestamp(ts_ns // _NS_PER_SECOND, tz=IST).isoformat(timespec="seconds")


class MarketCalendar:
    """Trading days, session bounds and expiries of the NSE/BSE F&O segments.

    ``data`` defaults to the shipped file's (``load_calendar_data`` adds a user file). ``extra_holidays`` and
    ``extra_sessions`` add closures or special sessions in code: an extra holiday cancels a special session of the
    data and an extra session reopens a holiday; a date may not be in both extras. Special sessions keep the
    normal hours.

    In a year the data do not cover, every weekday is a trading day. ``warn_clock`` (live trading: the clock's
    ``now_ns``) makes such an answer log one ``calendar_unknown_year`` warning per IST day of that clock and year.
    """

    def __init__(self, data: CalendarData | None = None, *, extra_holidays: Iterable[date] = (),
                 extra_sessions: Iterable[date] = (), warn_clock: Callable[[], int] | None = None) -> None:
        self.data = data if data is not None else shipped_calendar_data()
        added_holidays = frozenset(extra_holidays)
        added_sessions = frozenset(extra_sessions)
        conflicting = added_holidays & added_sessions
        if conflicting:
            raise ValueError(f"dates both in extra_holidays and extra_sessions: {sorted(conflicting)}")
        self._years = self.data.years
        self._holidays = (self.data.holidays - added_sessions) | added_holidays
        self._special_sessions = (self.data.special_sessions - added_holidays) | added_sessions
        self._warn_clock = warn_clock
        self._warned_day: date | None = None
        self._warned_years: set[int] = set()

    @property
    def holiday_years(self) -> frozenset[int]:
        """The years whose holidays are known."""
        return self._years

    # --- trading days and sessions ---------------------------------------------------------------

    def is_trading_day(self, d: date) -> bool:
        if d.year not in self._years:
            self._unknown_year(d)
        if d in self._holidays:
            return False
        return d.weekday() < SATURDAY or d in self._special_sessions

    def _unknown_year(self, d: date) -> None:
        if self._warn_clock is None:
            return
        today = ist_date(self._warn_clock())
        if today != self._warned_day:
            self._warned_day, self._warned_years = today, set()
        if d.year in self._warned_years:
            return
        self._warned_years.add(d.year)
        user_file = self.data.user_file
        target = user_file if user_file is not None else "a file of your own named by TRADER_CALENDAR_FILE"
        known = ", ".join(str(year) for year in sorted(self._years)) or "none"
        log.warning("calendar_unknown_year", year=d.year, asked_about=d.isoformat(), today=today.isoformat(),
                    known_years=known, calendar_files=list(self.data.files),
                    effect="every weekday counts as a trading day; on an exchange holiday the exchange rejects the "
                           "orders",
                    fix=f"add a [years.{d.year}] table with NSE's {d.year} trading holidays ({NSE_HOLIDAYS_PAGE}) "
                        f"to {target}; the format is at the top of {SHIPPED_CALENDAR_FILE}")

    def previous_trading_day(self, d: date) -> date:
        """The last trading day strictly before ``d``."""
        day = d - _ONE_DAY
        while not self.is_trading_day(day):
            day -= _ONE_DAY
        return day

    def next_trading_day(self, d: date) -> date:
        """The first trading day strictly after ``d``."""
        day = d + _ONE_DAY
        while not self.is_trading_day(day):
            day += _ONE_DAY
        return day

    def session_hours(self, d: date) -> SessionHours:
        """The F&O session hours row in force on ``d`` (the first row also covers earlier dates)."""
        rows = self.data.session_hours
        in_force = [hours for hours in rows if hours.effective_from <= d]
        return in_force[-1] if in_force else rows[0]

    def session_bounds(self, d: date) -> tuple[int, int]:
        """(open, close) of the F&O normal market on ``d`` in ns UTC.

        Raises ValueError if ``d`` is not a trading day.
        """
        if not self.is_trading_day(d):
            reason = self.data.descriptions.get(d) if d in self._holidays else None
            raise ValueError(f"{d.isoformat()} ({d:%A}{f', {reason}' if reason else ''}) is not an NSE/BSE "
                             "trading day")
        hours = self.session_hours(d)
        return ist_ns(d, hours.open), ist_ns(d, hours.close)

    def is_open(self, ts_ns: int) -> bool:
        """Whether the F&O normal market is open at ``ts_ns``: open <= ts < close."""
        day = ist_date(ts_ns)
        if not self.is_trading_day(day):
            return False
        open_ns, close_ns = self.session_bounds(day)
        return open_ns <= ts_ns < close_ns

    def next_session_open(self, ts_ns: int) -> int:
        """The open (ns UTC) of the session that ``ts_ns`` is in or waiting for.

        If ``ts_ns`` falls on a trading day before that day's close, the result is that day's open: later
        than ``ts_ns`` before the open, at or before it during the session. From the close onwards, and on
        non-trading days, it is the open of the next trading day.
        """
        day = ist_date(ts_ns)
        if self.is_trading_day(day):
            open_ns, close_ns = self.session_bounds(day)
            if ts_ns < close_ns:
                return open_ns
        return self.session_bounds(self.next_trading_day(day))[0]

    # --- expiries -------------------------------------------------------------------------------------
    # The computed rule: what the built-in market, paper trading and backtests use. In live trading expiries,
    # lot and tick sizes come from the day's instrument dump, never from here.

    def weekly_expiry(self, underlying: str, on_or_after: date) -> date:
        """The first weekly expiry on or after ``on_or_after`` (holiday expiries already moved earlier).

        Only NIFTY and SENSEX have weeklies. Because a holiday pulls an expiry earlier, the answer for a
        date in an expiry's week can be the following week: NIFTY on Tue 24 Nov 2026 (a holiday) gives
        1 Dec 2026, and on Mon 23 Nov 2026 gives 23 Nov 2026.
        """
        rules = self._expiry_weekdays(underlying)
        weekly = self.data.weekly_underlyings
        if underlying not in weekly:
            raise ValueError(
                f"{underlying} has no weekly options (only {', '.join(sorted(weekly))} do); use monthly_expiry"
            )
        # The unadjusted expiry is never before the adjusted one, so the search can start at on_or_after.
        candidate = on_or_after
        while True:
            if candidate.weekday() == _weekday_in_force(underlying, rules, candidate):
                expiry = self._on_or_before_trading_day(candidate)
                if expiry >= on_or_after:
                    return expiry
            candidate += _ONE_DAY

    def monthly_expiry(self, underlying: str, year: int, month: int) -> date:
        """The monthly expiry: the month's last expiry weekday, moved back over holidays."""
        rules = self._expiry_weekdays(underlying)
        month_end = date(year, month, gregorian.monthrange(year, month)[1])
        weekday = _weekday_in_force(underlying, rules, month_end)
        last_expiry_weekday = month_end - timedelta(days=(month_end.weekday() - weekday) % 7)
        return self._on_or_before_trading_day(last_expiry_weekday)

    def next_expiry(self, underlying: str, ts_ns: int) -> date:
        """The nearest expiry whose expiry-day session close is still after ``ts_ns``.

        Weekly underlyings (NIFTY, SENSEX) use their weeklies, which include the monthly date; the others
        their monthlies.
        """
        expiry = self._first_expiry_on_or_after(underlying, ist_date(ts_ns))
        if self.session_bounds(expiry)[1] <= ts_ns:
            expiry = self._first_expiry_on_or_after(underlying, expiry + _ONE_DAY)
        return expiry

    def _first_expiry_on_or_after(self, underlying: str, day: date) -> date:
        if underlying in self.data.weekly_underlyings:
            return self.weekly_expiry(underlying, day)
        expiry = self.monthly_expiry(underlying, day.year, day.month)
        if expiry >= day:
            return expiry
        next_month = date(day.year, day.month, 1) + timedelta(days=31)
        return self.monthly_expiry(underlying, next_month.year, next_month.month)

    def _on_or_before_trading_day(self, d: date) -> date:
        # An expiry that falls on a holiday moves to the previous trading day.
        return d if self.is_trading_day(d) else self.previous_trading_day(d)

    def _expiry_weekdays(self, underlying: str) -> tuple[ExpiryWeekday, ...]:
        try:
            return self.data.expiry_weekdays[underlying]
        except KeyError:
            known = ", ".join(self.data.expiry_weekdays)
            raise ValueError(f"unknown underlying {underlying!r}; known underlyings: {known}") from None


def _weekday_in_force(underlying: str, rules: tuple[ExpiryWeekday, ...], d: date) -> int:
    in_force = [rule for rule in rules if rule.effective_from <= d]
    if not in_force:
        raise ValueError(f"no expiry rule for {underlying} before {rules[0].effective_from.isoformat()}")
    return in_force[-1].weekday
