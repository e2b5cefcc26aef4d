"""NSE/BSE F&O trading calendar: sessions, holidays and option expiries.

Source: the project fact sheet (``/work/shared/docs/india-fno-facts.md``, compiled 24 Nov 2026):
§1.1 session times, §1.3 holidays and special sessions, §2.2 expiry days. Times come in as IST
wall-clock times and leave as integer nanoseconds UTC, the domain's time unit.

Holiday data exists only for the years in ``HOLIDAY_DATA_YEARS``. Any question about another year
raises ``ValueError`` instead of guessing: an unknown holiday silently treated as a trading day would
put a wrong session or a wrong expiry into the daemon. Each December, add the next year from the NSE
holiday circular.
"""

from __future__ import annotations

import calendar as gregorian
from calendar import SATURDAY, THURSDAY, TUESDAY
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")

_NS_PER_MICROSECOND = 1_000
_NS_PER_SECOND = 1_000_000_000
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_DAY = timedelta(days=1)

HOLIDAY_DATA_YEARS = frozenset({2025, 2026})

# NSE trading holidays on weekdays (fact sheet §1.3: 2025 from exchange_calendars and
# pandas_market_calendars, which agree; 2026 from NSE/FAOP/71777 plus the ad-hoc 15 Jan 2026 closure).
# BSE closes on the same days for our purposes, so one list serves both exchanges. Weekend holidays need
# no entry. The Diwali Muhurat sessions (21 Oct 2025; 8 Nov 2026, timing never captured) are one-hour
# special sessions we do not trade, so those days count as closed.
TRADING_HOLIDAYS: frozenset[date] = frozenset({
    date(2025, 2, 26),   # Mahashivratri
    date(2025, 3, 14),   # Holi
    date(2025, 3, 31),   # Id-Ul-Fitr
    date(2025, 4, 10),   # Mahavir Jayanti
    date(2025, 4, 14),   # Ambedkar Jayanti
    date(2025, 4, 18),   # Good Friday
    date(2025, 5, 1),    # Maharashtra Day
    date(2025, 8, 15),   # Independence Day
    date(2025, 8, 27),   # Ganesh Chaturthi
    date(2025, 10, 2),   # Gandhi Jayanti / Dussehra
    date(2025, 10, 21),  # Diwali Laxmi Pujan (Muhurat session only)
    date(2025, 10, 22),  # Balipratipada
    date(2025, 11, 5),   # Guru Nanak Jayanti
    date(2025, 12, 25),  # Christmas
    date(2026, 1, 15),   # Maharashtra municipal elections (added 9-12 Jan 2026)
    date(2026, 1, 26),   # Republic Day
    date(2026, 3, 3),    # Holi
    date(2026, 3, 26),   # Ram Navami
    date(2026, 3, 31),   # Mahavir Jayanti
    date(2026, 4, 3),    # Good Friday
    date(2026, 4, 14),   # Ambedkar Jayanti
    date(2026, 5, 1),    # Maharashtra Day
    date(2026, 5, 28),   # Bakri Id
    date(2026, 6, 26),   # Muharram
    date(2026, 9, 14),   # Ganesh Chaturthi
    date(2026, 10, 2),   # Gandhi Jayanti
    date(2026, 10, 20),  # Dussehra
    date(2026, 11, 10),  # Diwali Balipratipada
    date(2026, 11, 24),  # Guru Nanak Jayanti
    date(2026, 12, 25),  # Christmas
})

# Weekend days with a full normal-hours session (Union Budget days, fact sheet §1.3).
SPECIAL_SESSIONS: frozenset[date] = frozenset({
    date(2025, 2, 1),  # Saturday
    date(2026, 2, 1),  # Sunday
})


@dataclass(frozen=True, slots=True)
class SessionHours:
    """F&O normal-market hours (IST) in force from ``effective_from`` until the next row's date."""

    effective_from: date
    open: time
    close: time


# Fact sheet §1.1: 09:15-15:30 for many years; 15:40 from 3 Aug 2026 because of the cash market's
# closing auction (NSE/FAOP/74467, BSE notice 20260801-2). Read session times from here only: the
# close moved once and may move again.
FO_SESSION_HOURS: tuple[SessionHours, ...] = (
    SessionHours(effective_from=date.min, open=time(9, 15), close=time(15, 30)),
    SessionHours(effective_from=date(2026, 8, 3), open=time(9, 15), close=time(15, 40)),
)


@dataclass(frozen=True, slots=True)
class ExpiryWeekday:
    """The expiry weekday for contracts whose unadjusted expiry date is on or after ``effective_from``.

    Weeklies expire on ``weekday``; monthlies on the last such weekday of the month. The rows start in
    2025, where the holiday data starts; older dates are out of scope.
    """

    effective_from: date
    weekday: int


_SEPTEMBER_2025_REFORM = date(2025, 9, 1)  # NSE moved to Tuesday, BSE to Thursday (fact sheet §2.2)
_NSE_EXPIRY_WEEKDAYS = (
    ExpiryWeekday(date(2025, 1, 1), THURSDAY),
    ExpiryWeekday(_SEPTEMBER_2025_REFORM, TUESDAY),
)
_EXPIRY_WEEKDAYS: Mapping[str, tuple[ExpiryWeekday, ...]] = MappingProxyType({
    "NIFTY": _NSE_EXPIRY_WEEKDAYS,
    "BANKNIFTY": _NSE_EXPIRY_WEEKDAYS,
    "FINNIFTY": _NSE_EXPIRY_WEEKDAYS,
    "MIDCPNIFTY": _NSE_EXPIRY_WEEKDAYS,
    "NIFTYNXT50": _NSE_EXPIRY_WEEKDAYS,
    # Friday until Dec 2024, Tuesday from Jan 2025 (fact sheet [S]; we assume from 1 Jan 2025),
    # Thursday from 1 Sep 2025 [S].
    "SENSEX": (
        ExpiryWeekday(date(2025, 1, 1), TUESDAY),
        ExpiryWeekday(_SEPTEMBER_2025_REFORM, THURSDAY),
    ),
})

# SEBI allows one benchmark weekly per exchange since 20 Nov 2024 (fact sheet §2.2).
WEEKLY_UNDERLYINGS = frozenset({"NIFTY", "SENSEX"})


def ist_date(ts_ns: int) -> date:
    """The IST calendar date of an instant given in nanoseconds UTC."""
    return datetime.fromtimestamp(ts_ns // _NS_PER_SECOND, tz=IST).date()


def _ist_to_ns(day: date, wall_time: time) -> int:
    local = datetime.combine(day, wall_time, tzinfo=IST)
    return (local - _UNIX_EPOCH) // timedelta(microseconds=1) * _NS_PER_MICROSECOND


class MarketCalendar:
    """Trading days, session bounds and expiries of the NSE/BSE F&O segments.

    ``extra_holidays`` and ``extra_sessions`` let configuration add ad-hoc closures (like 15 Jan 2026,
    announced a week ahead) or special sessions. An extra holiday cancels a built-in special session and
    an extra session overrides a built-in holiday; a date may not be in both extras. Special sessions
    keep the normal hours.

    ``weekdays_when_unknown`` is for the built-in simulated market only: in a year without holiday data it
    treats every weekday as a trading day instead of refusing. Real trading must never set it.
    """

    def __init__(self, extra_holidays: Iterable[date] = (), extra_sessions: Iterable[date] = (),
                 *, weekdays_when_unknown: bool = False) -> None:
        self._weekdays_when_unknown = weekdays_when_unknown
        added_holidays = frozenset(extra_holidays)
        added_sessions = frozenset(extra_sessions)
        conflicting = added_holidays & added_sessions
        if conflicting:
            raise ValueError(f"dates both in extra_holidays and extra_sessions: {sorted(conflicting)}")
        for day in added_holidays | added_sessions:
            _require_holiday_data(day)
        self._holidays = (TRADING_HOLIDAYS - added_sessions) | added_holidays
        self._special_sessions = (SPECIAL_SESSIONS - added_holidays) | added_sessions

    # --- trading days and sessions ---------------------------------------------------------------

    def is_trading_day(self, d: date) -> bool:
        if self._weekdays_when_unknown and d.year not in HOLIDAY_DATA_YEARS:
            return d.weekday() < SATURDAY
        _require_holiday_data(d)
        if d in self._holidays:
            return False
        return d.weekday() < SATURDAY or d in self._special_sessions

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

    def session_bounds(self, d: date) -> tuple[int, int]:
        """(open, close) of the F&O normal market on ``d`` in ns UTC.

        Raises ValueError if ``d`` is not a trading day.
        """
        if not self.is_trading_day(d):
            raise ValueError(f"{d.isoformat()} ({d:%A}) is not an NSE/BSE trading day")
        hours = _session_hours_on(d)
        return _ist_to_ns(d, hours.open), _ist_to_ns(d, hours.close)

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

    def weekly_expiry(self, underlying: str, on_or_after: date) -> date:
        """The first weekly expiry on or after ``on_or_after`` (holiday expiries already moved earlier).

        Only NIFTY and SENSEX have weeklies. Because a holiday pulls an expiry earlier, the answer for a
        date in an expiry's week can be the following week: NIFTY on Tue 24 Nov 2026 (a holiday) gives
        1 Dec 2026, and on Mon 23 Nov 2026 gives 23 Nov 2026.
        """
        rules = _expiry_weekdays(underlying)
        if underlying not in WEEKLY_UNDERLYINGS:
            raise ValueError(
                f"{underlying} has no weekly options (only {', '.join(sorted(WEEKLY_UNDERLYINGS))} do); "
                "use monthly_expiry"
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
        rules = _expiry_weekdays(underlying)
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
        if underlying in WEEKLY_UNDERLYINGS:
            return self.weekly_expiry(underlying, day)
        expiry = self.monthly_expiry(underlying, day.year, day.month)
        if expiry >= day:
            return expiry
        next_month = date(day.year, day.month, 1) + timedelta(days=31)
        return self.monthly_expiry(underlying, next_month.year, next_month.month)

    def _on_or_before_trading_day(self, d: date) -> date:
        # Fact sheet §2.2: an expiry that falls on a holiday moves to the previous trading day.
        return d if self.is_trading_day(d) else self.previous_trading_day(d)


def _require_holiday_data(d: date) -> None:
    if d.year not in HOLIDAY_DATA_YEARS:
        years = ", ".join(str(year) for year in sorted(HOLIDAY_DATA_YEARS))
        raise ValueError(
            f"no NSE/BSE holiday data for {d.year} (have {years}); add that year's holidays from the NSE "
            "circular to trader/market/calendar.py"
        )


def _session_hours_on(d: date) -> SessionHours:
    in_force = [hours for hours in FO_SESSION_HOURS if hours.effective_from <= d]
    return in_force[-1]


def _expiry_weekdays(underlying: str) -> tuple[ExpiryWeekday, ...]:
    try:
        return _EXPIRY_WEEKDAYS[underlying]
    except KeyError:
        known = ", ".join(_EXPIRY_WEEKDAYS)
        raise ValueError(f"unknown underlying {underlying!r}; known underlyings: {known}") from None


def _weekday_in_force(underlying: str, rules: tuple[ExpiryWeekday, ...], d: date) -> int:
    in_force = [rule for rule in rules if rule.effective_from <= d]
    if not in_force:
        raise ValueError(f"no expiry rule for {underlying} before {rules[0].effective_from.isoformat()}")
    return in_force[-1].weekday
