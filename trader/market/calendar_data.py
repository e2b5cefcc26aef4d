"""The NSE/BSE calendar's data: the shipped TOML file, a user's file that extends or overrides it, validation.

The format is documented at the top of ``trader/market/data/nse_calendar.toml`` and in ``trader.market.calendar``.
Every problem in a file is collected and raised at once as a ``CalendarError`` naming the file, the field and the fix.
"""

from __future__ import annotations

import calendar as gregorian
import re
import tomllib
from calendar import SATURDAY
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from types import MappingProxyType
from typing import Any

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
