"""The risk core's time windows: IST calendar windows (day, ISO week, month) for the loss limits, and breaches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import TypeVar

from trader.clock import NS_PER_SECOND
from trader.market.calendar import IST, ist_ns

_T = TypeVar("_T")


def ist_day_start_ns(day: date) -> int:
    return ist_ns(day, time(0))


def ist_wall_time(ts_ns: int) -> datetime:
    return datetime.fromtimestamp(ts_ns // NS_PER_SECOND, tz=IST)


def day_key(day: date) -> tuple[int, ...]:
    return (day.toordinal(),)


def iso_week_key(day: date) -> tuple[int, ...]:
    iso = day.isocalendar()
    return (iso.year, iso.week)


def month_key(day: date) -> tuple[int, ...]:
    return (day.year, day.month)


@dataclass(slots=True)
class LossWindow:
    name: str  # DAILY / WEEKLY / MONTHLY
    limit_field: str  # the RiskConfig field that sets the limit
    fraction: float
    limit: int  # paise
    key_of: Callable[[date], tuple[int, ...]]
    clears: str  # when a breach of this window clears, for reason strings
    key: tuple[int, ...] = ()  # () sorts before every real key: the first event opens the window
    base: int = 0  # equity at the window start


@dataclass(frozen=True, slots=True)
class Breach:
    limit: str  # the RiskConfig field
    ts_ns: int
    reason: str
