"""The working-day calendar: the `chinesecalendar` package plus the city's published overrides.

A day is a working day by the first rule that applies:

1. a single-day override (date -> working or not) published by the city;
2. the city's whole-year arrangement for that year (it wins over the package, so nodes
   running different package versions agree once the city has spoken);
3. the `chinesecalendar` package, for the years it knows (with 调休 adjusted working days);
4. otherwise weekends alone (Mon-Fri work); such a year is *guessed*, and every count that
   touched a guessed day names the year so callers can mark the result provisional.

Pure: no clock, no I/O. Overrides travel as `calendar.override` log entries (`to_body`).
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from typing import Any, NamedTuple

import chinese_calendar

from sync.protocol.errors import CatalogueError
from sync.protocol.i18n import locale, register, t

register(
    {
        "calendar.provisional": (
            "provisional: publish the {years} calendar override",
            "临时期限：请发布 {years} 年的节假日安排",
        ),
        "calendar.bad_override": (
            "Malformed calendar override: {reason}",
            "日历调整格式有误：{reason}",
        ),
    }
)

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def provisional_note(years: Iterable[int]) -> str:
    """The sentence telling a person which years' calendars the city should publish."""
    sep = "、" if locale() == "zh" else ", "
    return t("calendar.provisional", years=sep.join(str(y) for y in sorted(set(years))))


def _bad(reason: str) -> CatalogueError:
    return CatalogueError("calendar.bad_override", reason=reason)


def _parse_date(value: Any, where: str) -> date:
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise _bad(f"{where}: expected a YYYY-MM-DD string, got {value!r}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _bad(f"{where}: no such date {value!r}") from None


def _date_list(value: Any, where: str) -> frozenset[date]:
    if not isinstance(value, list):
        raise _bad(f"{where}: expected a list of dates")
    return frozenset(_parse_date(item, where) for item in value)


@dataclass(frozen=True)
class YearArrangement:
    """One year's official arrangement: days off on weekdays, and 调休 working weekend days."""

    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "holidays", frozenset(self.holidays))
        object.__setattr__(self, "workdays", frozenset(self.workdays))
        both = self.holidays & self.workdays
        if both:
            raise _bad(f"{min(both).isoformat()} is both a holiday and a working day")

    def is_workday(self, d: date) -> bool:
        """Listed working days work, listed holidays rest, other days by weekday."""
        if d in self.workdays:
            return True
        return d not in self.holidays and d.weekday() < 5


@dataclass(frozen=True)
class CalendarOverrides:
    """What the city published: whole-year arrangements and single-day local overrides."""

    years: Mapping[int, YearArrangement] = field(default_factory=dict)
    days: Mapping[date, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "years", dict(self.years))
        object.__setattr__(self, "days", dict(self.days))
        for year, arrangement in self.years.items():
            stray = [d for d in arrangement.holidays | arrangement.workdays if d.year != year]
            if stray:
                raise _bad(f"{min(stray).isoformat()} listed in the arrangement for {year}")

    def merged(self, other: CalendarOverrides) -> CalendarOverrides:
        """These overrides updated by a later publication: its years replace ours whole."""
        return CalendarOverrides({**self.years, **other.years}, {**self.days, **other.days})

    def to_body(self) -> dict[str, Any]:
        """A JSON-able dict (sorted ISO date strings, booleans; no floats)."""
        return {
            "years": {
                str(year): {
                    "holidays": sorted(d.isoformat() for d in arr.holidays),
                    "workdays": sorted(d.isoformat() for d in arr.workdays),
                }
                for year, arr in sorted(self.years.items())
            },
            "days": {d.isoformat(): self.days[d] for d in sorted(self.days)},
        }

    @classmethod
    def from_body(cls, body: Any) -> CalendarOverrides:
        """The overrides in `body` (as made by `to_body`); CatalogueError if malformed."""
        if not isinstance(body, Mapping):
            raise _bad("expected an object")
        raw_years = body.get("years", {})
        raw_days = body.get("days", {})
        if not isinstance(raw_years, Mapping) or not isinstance(raw_days, Mapping):
            raise _bad("'years' and 'days' must be objects")
        years: dict[int, YearArrangement] = {}
        for key, arr in raw_years.items():
            if not isinstance(key, str) or not re.fullmatch(r"[1-9]\d{3}", key):
                raise _bad(f"year {key!r} is not a four-digit year")
            if not isinstance(arr, Mapping):
                raise _bad(f"years.{key}: expected an object")
            years[int(key)] = YearArrangement(
                _date_list(arr.get("holidays", []), f"years.{key}.holidays"),
                _date_list(arr.get("workdays", []), f"years.{key}.workdays"),
            )
        days: dict[date, bool] = {}
        for key, working in raw_days.items():
            if not isinstance(working, bool):
                raise _bad(f"days.{key}: expected true or false, got {working!r}")
            days[_parse_date(key, "days")] = working
        return cls(years, days)


@cache
def _package_year(year: int) -> tuple[int, ...] | None:
    """Ordinals of the package's working days in `year`; None if it does not know the year."""
    first = date(year, 1, 1)
    days = [first + timedelta(i) for i in range((date(year, 12, 31) - first).days + 1)]
    try:
        return tuple(d.toordinal() for d in days if chinese_calendar.is_workday(d))
    except NotImplementedError:
        return None


class _Year(NamedTuple):
    workdays: tuple[int, ...]  # sorted ordinals
    known: bool
    pinned: tuple[int, ...]  # sorted ordinals of single-day overrides in this year


class WorkCalendar:
    """Working-day arithmetic over one set of overrides; memoises one sorted set per year."""

    def __init__(self, overrides: CalendarOverrides | None = None) -> None:
        self.overrides = overrides or CalendarOverrides()
        self._years: dict[int, _Year] = {}

    def _year(self, year: int) -> _Year:
        cached = self._years.get(year)
        if cached is not None:
            return cached
        first = date(year, 1, 1)
        span = range(first.toordinal(), date(year, 12, 31).toordinal() + 1)
        arrangement = self.overrides.years.get(year)
        package = None if arrangement is not None else _package_year(year)
        if arrangement is not None:
            working = {o for o in span if arrangement.is_workday(date.fromordinal(o))}
        elif package is not None:
            working = set(package)
        else:
            working = {o for o in span if date.fromordinal(o).weekday() < 5}
        pinned = sorted(d.toordinal() for d in self.overrides.days if d.year == year)
        for o in pinned:
            if self.overrides.days[date.fromordinal(o)]:
                working.add(o)
            else:
                working.discard(o)
        known = arrangement is not None or package is not None
        result = _Year(tuple(sorted(working)), known, tuple(pinned))
        self._years[year] = result
        return result

    def is_workday(self, d: date) -> bool:
        """Whether `d` is a working day (weekends alone for a year nobody knows)."""
        year = self._year(d.year)
        i = bisect_left(year.workdays, d.toordinal())
        return i < len(year.workdays) and year.workdays[i] == d.toordinal()

    def is_known(self, d: date) -> bool:
        """Whether `d` is settled by an override or a known year rather than guessed."""
        return d in self.overrides.days or self._year(d.year).known

    def guessed_years(self, after: date, through: date) -> frozenset[int]:
        """Years with a guessed day d, after < d <= through."""
        guessed = set()
        for y in range(after.year, through.year + 1):
            year = self._year(y)
            if year.known:
                continue
            lo = max(after.toordinal() + 1, date(y, 1, 1).toordinal())
            hi = min(through.toordinal(), date(y, 12, 31).toordinal())
            pinned = bisect_right(year.pinned, hi) - bisect_left(year.pinned, lo)
            if hi >= lo and pinned < hi - lo + 1:
                guessed.add(y)
        return frozenset(guessed)

    def add_workdays(self, start: date, n: int) -> tuple[date, frozenset[int]]:
        """The n-th working day after `start` (`start` itself for n == 0), and guessed years."""
        if n < 0:
            raise ValueError(f"cannot count {n} working days")
        if n == 0:
            return start, frozenset()
        after, y = start.toordinal(), start.year
        while True:
            days = self._year(y).workdays
            i = bisect_right(days, after)
            if n <= len(days) - i:
                due = date.fromordinal(days[i + n - 1])
                return due, self.guessed_years(start, due)
            n -= len(days) - i
            y += 1

    def workdays_in(self, after: date, through: date) -> tuple[int, frozenset[int]]:
        """How many working days d have after < d <= through, and guessed years."""
        if through <= after:
            return 0, frozenset()
        lo, hi = after.toordinal(), through.toordinal()
        count = 0
        for y in range(after.year, through.year + 1):
            days = self._year(y).workdays
            count += bisect_right(days, hi) - bisect_right(days, lo)
        return count, self.guessed_years(after, through)
