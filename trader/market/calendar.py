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
A malformed file raises ``CalendarError`` naming the file, the field and the fix.

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
import re
import tomllib
from calendar import SATURDAY
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from trader.logging import get_logger

IST = ZoneInfo("Asia/Kolkata")

log = get_logger("trader.calendar")

_NS_PER_MICROSECOND = 1_000
_NS_PER_SECOND = 1_000_000_000
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_DAY = timedelta(days=1)

SHIPPED_CALENDAR_FILE = resources.files("trader.market").joinpath("data", "nse_calendar.toml")
CALENDAR_FORMAT = 1
NSE_HOLIDAYS_PAGE = "https://www.nseindia.com/resources/exchange-communication-holidays"


@dataclass(frozen=True, slots=True)
class SessionHours:
    """F&O normal-market hours (IST) in force from ``effective_from`` until the next row's date."""

    effective_from: date
    open: time
    close: time


@dataclass(frozen=True, slots=True)
class ExpiryWeekday:
    """The expiry weekday for contracts whose unadjusted expiry date is on or after ``effective_from``.

    Weeklies expire on ``weekday``; monthlies on the last such weekday of the month.
    """

    effective_from: date
    weekday: int


@dataclass(frozen=True, slots=True)
class CalendarData:
    """The merged calendar data: what ``MarketCalendar`` answers from.

    ``years`` are the years whose holiday list is complete; ``files`` the files it was read from (shipped first).
    """

    years: frozenset[int]
    holidays: frozenset[date]
    special_sessions: frozenset[date]
    session_hours: tuple[SessionHours, ...]  # by effective_from
    expiry_weekdays: Mapping[str, tuple[ExpiryWeekday, ...]]  # by effective_from
    weekly_underlyings: frozenset[str]
    files: tuple[str, ...]
    descriptions: Mapping[date, str] = field(default_factory=dict)

    @property
    def user_file(self) -> str | None:
        return self.files[1] if len(self.files) > 1 else None


class CalendarError(ValueError):
    """A calendar file that cannot be used: one entry in ``problems`` per field, each saying how to fix it."""

    def __init__(self, file: str, problems: list[str]) -> None:
        super().__init__(f"calendar file {file}: " + "; ".join(problems))
        self.file = file
        self.problems = problems


# --- reading the data file -------------------------------------------------------------------------------

_WEEKDAYS = {name.lower(): number for number, name in enumerate(gregorian.day_name)}
_TOP_KEYS = ("format", "weekly_underlyings", "session_hours", "expiry_weekdays", "years")
_HOURS_KEYS = ("from", "open", "close", "source")
_EXPIRY_KEYS = ("from", "weekday", "underlyings", "source")
_YEAR_KEYS = ("source", "holidays", "special_sessions")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_UNDERLYING = re.compile(r"[A-Z][A-Z0-9]*")
_FORMAT_HINT = f"see the format at the top of {SHIPPED_CALENDAR_FILE}"


@dataclass(slots=True)
class _Parsed:
    """One file's content, before merging; dicts so a user file can override entries of the shipped one."""

    years: set[int] = field(default_factory=set)
    holidays: dict[date, str] = field(default_factory=dict)
    special_sessions: dict[date, str] = field(default_factory=dict)
    session_hours: dict[date, SessionHours] = field(default_factory=dict)
    expiry_weekdays: dict[str, dict[date, int]] = field(default_factory=dict)
    weekly_underlyings: frozenset[str] | None = None


class _Reader:
    """Turns one TOML document into ``_Parsed``, collecting every problem instead of stopping at the first."""

    def __init__(self, *, require_format: bool) -> None:
        self.require_format = require_format
        self.problems: list[str] = []
        self.parsed = _Parsed()

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def read(self, doc: Mapping[str, Any]) -> _Parsed:
        self._unknown_keys("the top level", doc, _TOP_KEYS)
        self._format(doc.get("format"))
        if "weekly_underlyings" in doc:
            names = self._underlyings("weekly_underlyings", doc["weekly_underlyings"])
            if names is not None:
                self.parsed.weekly_underlyings = frozenset(names)
        for index, row in enumerate(self._rows("session_hours", doc.get("session_hours", []))):
            self._session_hours(f"session_hours[{index}]", row)
        for index, row in enumerate(self._rows("expiry_weekdays", doc.get("expiry_weekdays", []))):
            self._expiry_weekday(f"expiry_weekdays[{index}]", row)
        years = doc.get("years", {})
        if not isinstance(years, dict):
            self.problem("years", "must be a table of [years.YYYY] tables")
            years = {}
        for key, table in years.items():
            self._year(key, table)
        return self.parsed

    def _unknown_keys(self, where: str, table: Mapping[str, Any], known: tuple[str, ...]) -> None:
        for key in table:
            if key not in known:
                self.problem(where, f"unknown key {key!r} (known: {', '.join(known)}); check the spelling, "
                                    f"{_FORMAT_HINT}")

    def _format(self, value: object) -> None:
        if value is None:
            if self.require_format:
                self.problem("format", f"missing; the first line must be `format = {CALENDAR_FORMAT}`")
        elif type(value) is not int or value != CALENDAR_FORMAT:
            self.problem("format", f"{value!r} is not supported; this version reads `format = {CALENDAR_FORMAT}`")

    def _rows(self, where: str, value: object) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
            self.problem(where, f"must be an array of tables, written [[{where}]]; {_FORMAT_HINT}")
            return []
        return value

    def _date(self, where: str, value: object) -> date | None:
        if isinstance(value, datetime) or not isinstance(value, date):
            self.problem(where, f"{value!r} is not a date; write a TOML date such as 2027-01-05 (no quotes, no time)")
            return None
        return value

    def _time(self, where: str, value: object) -> time | None:
        if not isinstance(value, time) or value.tzinfo is not None:
            self.problem(where, f"{value!r} is not a time of day; write an IST time such as 09:15:00 (no quotes)")
            return None
        return value

    def _source(self, where: str, row: Mapping[str, Any]) -> None:
        if "source" in row and not isinstance(row["source"], str):
            self.problem(f"{where}.source", "must be a string, e.g. \"NSE/FAOP/71777 (12 Dec 2025)\"")

    def _underlyings(self, where: str, value: object) -> list[str] | None:
        if not isinstance(value, list) or not value:
            self.problem(where, 'must be a non-empty list of underlying names, e.g. ["NIFTY", "SENSEX"]')
            return None
        names = []
        for name in value:
            if not isinstance(name, str) or not _UNDERLYING.fullmatch(name):
                self.problem(where, f"{name!r} is not an underlying name; use Kite's upper-case name, e.g. NIFTY")
            else:
                names.append(name)
        return names

    def _session_hours(self, where: str, row: dict[str, Any]) -> None:
        self._unknown_keys(where, row, _HOURS_KEYS)
        self._source(where, row)
        missing = [key for key in ("from", "open", "close") if key not in row]
        if missing:
            self.problem(where, f"missing {', '.join(missing)}; a row is from = 2026-08-03, open = 09:15:00, "
                                "close = 15:40:00")
            return
        start = self._date(f"{where}.from", row["from"])
        opens = self._time(f"{where}.open", row["open"])
        closes = self._time(f"{where}.close", row["close"])
        if start is None or opens is None or closes is None:
            return
        if opens >= closes:
            self.problem(where, f"open {opens:%H:%M} is not before close {closes:%H:%M}")
        elif start in self.parsed.session_hours:
            self.problem(where, f"a second row from {start.isoformat()}; keep one row per date")
        else:
            self.parsed.session_hours[start] = SessionHours(start, opens, closes)

    def _expiry_weekday(self, where: str, row: dict[str, Any]) -> None:
        self._unknown_keys(where, row, _EXPIRY_KEYS)
        self._source(where, row)
        missing = [key for key in ("from", "weekday", "underlyings") if key not in row]
        if missing:
            self.problem(where, f"missing {', '.join(missing)}; a row is from = 2025-09-01, weekday = \"Tuesday\", "
                                'underlyings = ["NIFTY"]')
            return
        start = self._date(f"{where}.from", row["from"])
        weekday = _WEEKDAYS.get(row["weekday"].lower()) if isinstance(row["weekday"], str) else None
        if weekday is None or weekday >= SATURDAY:
            self.problem(f"{where}.weekday", f"{row['weekday']!r} is not a weekday; write Monday ... Friday")
        names = self._underlyings(f"{where}.underlyings", row["underlyings"])
        if start is None or weekday is None or weekday >= SATURDAY or names is None:
            return
        for name in names:
            rules = self.parsed.expiry_weekdays.setdefault(name, {})
            if start in rules:
                self.problem(where, f"{name} has a second row from {start.isoformat()}; keep one row per date")
            rules[start] = weekday

    def _year(self, key: str, table: object) -> None:
        where = f"years.{key}"
        if not (key.isdigit() and len(key) == 4):
            self.problem(where, f"{key!r} is not a year; name the table [years.YYYY], e.g. [years.2027]")
            return
        if not isinstance(table, dict):
            self.problem(where, "must be a table with holidays and special_sessions sub-tables")
            return
        year = int(key)
        self._unknown_keys(where, table, _YEAR_KEYS)
        self._source(where, table)
        self.parsed.years.add(year)
        holidays = self._days(f"{where}.holidays", year, table.get("holidays", {}))
        sessions = self._days(f"{where}.special_sessions", year, table.get("special_sessions", {}))
        for day in sorted(holidays.keys() & sessions.keys()):
            self.problem(where, f"{day.isoformat()} is both a holiday and a special session; keep it in one")
        self.parsed.holidays.update(holidays)
        self.parsed.special_sessions.update(sessions)

    def _days(self, where: str, year: int, table: object) -> dict[date, str]:
        if not isinstance(table, dict):
            self.problem(where, 'must be a table of YYYY-MM-DD = "description" lines')
            return {}
        days: dict[date, str] = {}
        for key, description in table.items():
            try:
                day = date.fromisoformat(key) if _ISO_DATE.fullmatch(key) else None
            except ValueError:
                day = None
            if day is None:
                self.problem(where, f"{key!r} is not a date; write YYYY-MM-DD = \"description\", "
                                    f"e.g. {year}-01-26 = \"Republic Day\"")
                continue
            if day.year != year:
                self.problem(where, f"{key} is not in {year}; move it to [{where.replace(str(year), str(day.year))}]")
                continue
            if not isinstance(description, str):
                self.problem(f"{where}.{key}", f"{description!r} must be a quoted description, e.g. \"Holi\"")
                continue
            days[day] = description
        return days


def _read_file(file: Path | Traversable, *, require_format: bool) -> _Parsed:
    name = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CalendarError(name, [f"cannot be read ({exc}); point calendar_file (TRADER_CALENDAR_FILE) at a "
                                   f"readable UTF-8 TOML file, {_FORMAT_HINT}"]) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CalendarError(name, [f"is not valid TOML ({exc}); dates are written 2027-01-26 without quotes as "
                                   f"values and as keys of holidays tables, {_FORMAT_HINT}"]) from None
    reader = _Reader(require_format=require_format)
    parsed = reader.read(doc)
    if reader.problems:
        raise CalendarError(name, reader.problems)
    return parsed


def _merge(base: _Parsed, user: _Parsed, name: str) -> _Parsed:
    """``user`` over ``base``: see ``load_calendar_data``. Checks the rules that need both files."""
    problems = []
    for day in sorted(user.holidays):
        if day.weekday() >= SATURDAY and day not in base.special_sessions:
            problems.append(f"years.{day.year}.holidays: {day.isoformat()} is a {day:%A}; list weekday closures only "
                            "(weekends need no entry unless they cancel a special session): check the date")
    for day in sorted(user.special_sessions):
        if day.weekday() < SATURDAY and day not in base.holidays:
            problems.append(f"years.{day.year}.special_sessions: {day.isoformat()} is a {day:%A} and no holiday; "
                            "special sessions are weekend sessions or reopen a listed holiday: check the date")
    if problems:
        raise CalendarError(name, problems)
    expiry = {underlying: dict(rules) for underlying, rules in base.expiry_weekdays.items()}
    for underlying, rules in user.expiry_weekdays.items():
        expiry.setdefault(underlying, {}).update(rules)
    return _Parsed(
        years=base.years | user.years,
        holidays={**{d: s for d, s in base.holidays.items() if d not in user.special_sessions}, **user.holidays},
        special_sessions={**{d: s for d, s in base.special_sessions.items() if d not in user.holidays},
                          **user.special_sessions},
        session_hours={**base.session_hours, **user.session_hours},
        expiry_weekdays=expiry,
        weekly_underlyings=user.weekly_underlyings if user.weekly_underlyings is not None else base.weekly_underlyings,
    )


def _freeze(parsed: _Parsed, files: tuple[str, ...]) -> CalendarData:
    problems = []
    if not parsed.session_hours:
        problems.append("session_hours: no rows; the shipped file must have them (reinstall the package)")
    weekly = parsed.weekly_underlyings or frozenset()
    for name in sorted(weekly - parsed.expiry_weekdays.keys()):
        problems.append(f"weekly_underlyings: {name} has no expiry_weekdays row; add one or drop it from the list")
    if problems:
        raise CalendarError(files[-1], problems)
    return CalendarData(
        years=frozenset(parsed.years),
        holidays=frozenset(parsed.holidays),
        special_sessions=frozenset(parsed.special_sessions),
        session_hours=tuple(parsed.session_hours[d] for d in sorted(parsed.session_hours)),
        expiry_weekdays=MappingProxyType({
            name: tuple(ExpiryWeekday(d, rules[d]) for d in sorted(rules))
            for name, rules in parsed.expiry_weekdays.items()
        }),
        weekly_underlyings=weekly,
        files=files,
        descriptions=MappingProxyType({**parsed.holidays, **parsed.special_sessions}),
    )


_shipped: CalendarData | None = None


def shipped_calendar_data() -> CalendarData:
    """The data of the shipped file alone (read once)."""
    global _shipped  # noqa: PLW0603 - a read-once cache of an immutable value
    if _shipped is None:
        _shipped = _freeze(_read_file(SHIPPED_CALENDAR_FILE, require_format=True), (str(SHIPPED_CALENDAR_FILE),))
    return _shipped


def load_calendar_data(user_file: Path | None = None) -> CalendarData:
    """The shipped data, extended and overridden by ``user_file`` if given.

    The user file has the shipped file's layout; every part is optional. Its years are added to the known ones;
    in a year both have, its holidays and special sessions are added, a holiday of the user file cancels a
    shipped special session and a special session of the user file reopens a shipped holiday. A session_hours row
    with the same ``from`` date as a shipped one replaces it (others are added); likewise an expiry_weekdays row
    for each underlying it lists. ``weekly_underlyings`` replaces the shipped list. Raises ``CalendarError``.
    """
    if user_file is None:
        return shipped_calendar_data()
    name = str(user_file)
    shipped = _read_file(SHIPPED_CALENDAR_FILE, require_format=True)
    merged = _merge(shipped, _read_file(user_file, require_format=False), name)
    return _freeze(merged, (str(SHIPPED_CALENDAR_FILE), name))


# --- the calendar ----------------------------------------------------------------------------------------


def ist_date(ts_ns: int) -> date:
    """The IST calendar date of an instant given in nanoseconds UTC."""
    return datetime.fromtimestamp(ts_ns // _NS_PER_SECOND, tz=IST).date()


def _ist_to_ns(day: date, wall_time: time) -> int:
    local = datetime.combine(day, wall_time, tzinfo=IST)
    return (local - _UNIX_EPOCH) // timedelta(microseconds=1) * _NS_PER_MICROSECOND


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
