"""The working-day calendar: the `chinesecalendar` package plus the city's published overrides.

A day is a working day by the first rule that applies:

1. a single-day override (date -> working or not) published by the city;
2. a day listed in the city's arrangement for that year;
3. for a year the city declared *complete* (the whole of the 国务院办公厅 notice for it),
   weekends alone: the arrangement wins over the package, so nodes running different
   package versions agree once the city has spoken;
4. the `chinesecalendar` package, for the years it knows (with 调休 adjusted working days);
5. otherwise weekends alone (Mon-Fri work).

A year is *known* when the city published it complete or the package knows it; any other
year is *guessed* (even with some days published: an arrangement that is not declared
complete, such as New Year's Day alone, leaves 春节 counted as working days), and every
count that touched a guessed day names the year so callers can mark it provisional.
An arrangement from before the declaration existed (`complete` absent) counts as the days
it lists, not as a whole year: a partial one must not silence "provisional".

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
from sync.protocol.i18n import listed, register, t

register(
    {
        "calendar.provisional": (
            "provisional: publish the {years} calendar override",
            "临时期限：请发布 {years} 年的节假日安排",
        ),
        "calendar.not_whole_year": (
            "{year} is declared complete but clearly is not the whole year: no weekday off for"
            " {missing} (the State Council's notice gives every festival its days off). Publish"
            ' the whole arrangement, or say "complete": false for these days alone',
            "{year} 年声明为全年安排，但显然不完整：{missing} 没有工作日放假（国务院办公厅的"
            "节假日安排通知为每个节日安排放假）。请发布全年安排，"
            '或对这些日期注明 "complete": false',
        ),
        "calendar.odd_workdays": (
            "{year} is declared complete but lists weekdays as 调休 working days: {days} (a 调休"
            " working day is a Saturday or Sunday)",
            "{year} 年声明为全年安排，但把工作日列为调休上班日：{days}（调休上班日应为周六或周日）",
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
    return t("calendar.provisional", years=listed(sorted(set(years))))


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
    """One year's official arrangement: days off on weekdays, and 调休 working weekend days.

    `complete`: True when it is the whole year (the year is then known), False when it
    lists only some days, None when its publisher did not say (an entry from before the
    declaration existed; read as False).
    """

    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()
    complete: bool | None = None

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
                str(year): _arrangement_body(arr) for year, arr in sorted(self.years.items())
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
            complete = arr.get("complete")
            if complete is not None and not isinstance(complete, bool):
                raise _bad(f"years.{key}.complete: expected true or false, got {complete!r}")
            years[int(key)] = YearArrangement(
                _date_list(arr.get("holidays", []), f"years.{key}.holidays"),
                _date_list(arr.get("workdays", []), f"years.{key}.workdays"),
                complete,
            )
        days: dict[date, bool] = {}
        for key, working in raw_days.items():
            if not isinstance(working, bool):
                raise _bad(f"days.{key}: expected true or false, got {working!r}")
            days[_parse_date(key, "days")] = working
        return cls(years, days)


def _arrangement_body(arr: YearArrangement) -> dict[str, Any]:
    body: dict[str, Any] = {
        "holidays": sorted(d.isoformat() for d in arr.holidays),
        "workdays": sorted(d.isoformat() for d in arr.workdays),
    }
    if arr.complete is not None:  # absent in entries from before the declaration existed
        body["complete"] = arr.complete
    return body


# The 国务院办公厅关于某年部分节假日安排的通知 has one paragraph per festival of the
# 全国年节及纪念日放假办法 (一、元旦 二、春节 三、清明节 四、劳动节 五、端午节 六、中秋节
# 七、国庆节), each "M月D日至D日放假调休，共N天" with its 调休 working days. So a whole
# year has weekday days off in each festival's window. Windows: 元旦 is 1 January (or the
# Monday after a weekend New Year); 正月初一 falls between 21 January and 20 February and
# 春节 gives at least seven days off from 除夕 or 初一, five of them weekdays; 清明 (solar
# term, 4-6 April); 劳动节 from 1 May (29 April when bridged); 端午 (五月初五, 28 May - 25
# June); 中秋 (八月十五, 8 September - 7 October); 国庆 1-7 October (8 with 中秋), five
# weekdays. 清明, 端午 and 中秋 are holidays since 2008 (国务院令第513号). Every year the
# chinesecalendar package knows (2004-2026) passes; the minimums are lower than any of them
# so a local bridge or a short year is never refused, while New Year's Day alone is.
# (name, first (month, day), last (month, day), weekdays off at least, first year)
_FESTIVALS = (
    ("元旦", (1, 1), (1, 3), 1, 0),
    ("春节", (1, 20), (2, 28), 3, 0),
    ("清明节", (4, 2), (4, 7), 1, 2008),
    ("劳动节", (4, 29), (5, 6), 1, 0),
    ("端午节", (5, 27), (6, 26), 1, 2008),
    ("中秋节", (9, 7), (10, 8), 1, 2008),
    ("国庆节", (10, 1), (10, 8), 3, 0),
)


def whole_year_problem(year: int, arrangement: YearArrangement) -> tuple[str, dict[str, Any]]:
    """Why an arrangement declared complete clearly is not the whole of `year`'s notice:
    an i18n key and its params, or ("", {}) when it is plausible. Pure, so every node that
    checks a received arrangement reaches the same verdict."""
    off = {d for d in arrangement.holidays if d.weekday() < 5}
    missing = [
        name
        for name, first, last, need, since in _FESTIVALS
        if year >= since and sum(date(year, *first) <= d <= date(year, *last) for d in off) < need
    ]
    if missing:
        return "calendar.not_whole_year", {"year": year, "missing": "、".join(missing)}
    odd = sorted(d.isoformat() for d in arrangement.workdays if d.weekday() < 5)
    if odd:
        return "calendar.odd_workdays", {"year": year, "days": ", ".join(odd)}
    return "", {}


@cache
def _package_year(year: int) -> tuple[int, ...] | None:
    """Ordinals of the package's working days in `year`; None if it does not know the year.

    The package's own rule (`chinese_calendar.is_workday`: a 调休 working day, or a weekday
    that is not a holiday; years between its first and last holiday's), read from its two
    tables once: `is_workday` itself scans every holiday on each call (#13, 20 ms a year)."""
    holidays, workdays = chinese_calendar.holidays, chinese_calendar.workdays
    if not min(holidays).year <= year <= max(holidays).year:
        return None
    first = date(year, 1, 1)
    days = [first + timedelta(i) for i in range((date(year, 12, 31) - first).days + 1)]
    return tuple(
        d.toordinal() for d in days if d in workdays or (d.weekday() <= 4 and d not in holidays)
    )


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
        whole = arrangement is not None and arrangement.complete is True
        package = None if whole else _package_year(year)
        if package is not None:
            working = set(package)
        else:
            working = {o for o in span if date.fromordinal(o).weekday() < 5}
        if arrangement is not None:
            working -= {d.toordinal() for d in arrangement.holidays}
            working |= {d.toordinal() for d in arrangement.workdays}
        pinned = sorted(d.toordinal() for d in self.overrides.days if d.year == year)
        for o in pinned:
            if self.overrides.days[date.fromordinal(o)]:
                working.add(o)
            else:
                working.discard(o)
        known = whole or package is not None
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

    def knows_year(self, year: int) -> bool:
        """Whether `year` is known whole: published complete, or known to the package."""
        return self._year(year).known

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
