"""Publishing the calendar (`zhibao calendar import|show`): the file, its checks, the entry.

The file an admin publishes is JSON:

    {"years": {"2027": {"complete": true, "holidays": [...], "workdays": [...]}},
     "days": {"2027-05-06": true}}

Every year says whether it is the whole year: `"complete": true` for the whole of the
国务院办公厅 notice for that year (the year is then known: deadlines in it are settled),
`false` for some days of it only (those days count; the year stays provisional). A year
declared complete must plausibly be whole (`tiers.calendar.whole_year_problem`), and a
node never replaces its own whole year by a partial one (that would silently turn the
year back into a guess: single days go under "days").

Invariant: a refusal appends nothing; publishing what is already in force appends nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import chinese_calendar

from sync.logstore import LogStore
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.canonical import canonical
from sync.protocol.errors import CatalogueError, ZhibaoError
from tiers.calendar import CalendarOverrides, YearArrangement, whole_year_problem
from tiers.published import (
    CALENDAR_OVERRIDE,
    OverrideSource,
    _calendar_rows,
    _deciders,
    _stamp,
    _strength,
    calendar_state,
    work_calendar,
)


@dataclass(frozen=True)
class CalendarResult:
    """What `publish_calendar` appended (`seq` None: nothing new) and what it left out."""

    seq: int | None
    years: tuple[int, ...]
    days: tuple[date, ...]
    overridden: tuple[int, ...]  # years a stronger publisher already decides
    complete: tuple[int, ...] = ()  # of `years`, those published as the whole year

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "years": list(self.years),
            "days": [d.isoformat() for d in self.days],
            "overridden": list(self.overridden),
            "complete": list(self.complete),
        }


def check_arrangements(overrides: CalendarOverrides, held: dict[int, bool]) -> None:
    """CatalogueError unless every year declares `complete`, every complete year is
    plausibly whole, and no year whole in `held` (this node's own) is made partial."""
    for year, arrangement in sorted(overrides.years.items()):
        if arrangement.complete is None:
            raise CatalogueError("calendar.undeclared", year=year)
        if arrangement.complete:
            key, params = whole_year_problem(year, arrangement)
            if key:
                raise CatalogueError(key, **params)
        elif held.get(year):
            raise CatalogueError("calendar.downgrade", year=year)


def publish_calendar(
    node: Node, overrides: CalendarOverrides, at: str | None = None
) -> CalendarResult:
    """Append one `calendar.override` entry with the parts not already published (or none);
    CatalogueError (nothing appended) when a year fails `check_arrangements`."""
    with node.store.transaction():
        rows = _calendar_rows(node.store)
        deciders = _deciders(rows)
        mine = {unit: value for origin, unit, _y, _s, value in rows if origin == node.node_id}
        whole = {
            int(unit): json.loads(value).get("complete") is True
            for unit, value in mine.items()
            if len(unit) == 4
        }
        check_arrangements(overrides, whole)
        stronger = {y for y, o in deciders.items() if _strength(o) < _strength(node.node_id)}
        body = overrides.to_body()
        years = {
            int(unit): overrides.years[int(unit)]
            for unit, value in body["years"].items()
            if int(unit) not in stronger and mine.get(unit) != canonical(value).decode()
        }
        days = {
            d: working
            for d, working in overrides.days.items()
            if d.year not in stronger and mine.get(d.isoformat()) != canonical(working).decode()
        }
        left_out = {int(u) for u in body["years"]} | {d.year for d in overrides.days}
        skipped = tuple(sorted(left_out & stronger))
        if not years and not days:
            return CalendarResult(None, (), (), skipped)
        fresh = CalendarOverrides(years, days)
        entry = node.append(CALENDAR_OVERRIDE, fresh.to_body(), at=_stamp(node, at))
    complete = tuple(sorted(y for y, a in years.items() if a.complete))
    return CalendarResult(entry.seq, tuple(sorted(years)), tuple(sorted(days)), skipped, complete)


def package_years() -> range:
    """The years the installed `chinesecalendar` package knows."""
    known = chinese_calendar.holidays
    return range(min(known).year, max(known).year + 1)


@dataclass(frozen=True)
class YearView:
    """One year as this node counts it: where it comes from and its non-weekday rules.

    `source`: "override" (published whole), "package" or "guessed"; a year that is not
    whole may still have published days (`arrangement`: the origin's arrangement, whose
    `complete` is then False or None)."""

    year: int
    source: str
    origin: OverrideSource | None
    holidays: tuple[date, ...]  # weekdays off
    workdays: tuple[date, ...]  # weekend days worked (调休)
    days: dict[date, bool]  # single-day overrides in force
    arrangement: YearArrangement | None = None

    @property
    def known(self) -> bool:
        return self.source != "guessed"

    def to_json(self) -> dict[str, Any]:
        return {
            "year": self.year,
            "source": self.source,
            "origin": self.origin.origin if self.origin else None,
            "seq": self.origin.seq if self.origin else None,
            "holidays": [d.isoformat() for d in self.holidays],
            "workdays": [d.isoformat() for d in self.workdays],
            "days": {d.isoformat(): w for d, w in sorted(self.days.items())},
            "known": self.known,
            "complete": self.arrangement.complete if self.arrangement else None,
        }


def year_view(store: LogStore, year: int) -> YearView:
    """How `year` is counted here, day by day, with where its rules come from."""
    state = calendar_state(store)
    calendar = work_calendar(store)
    arrangement = state.overrides.years.get(year)
    if arrangement is not None and arrangement.complete:
        source = "override"
    elif calendar.knows_year(year):
        source = "package"
    else:
        source = "guessed"
    first = date(year, 1, 1)
    span = [first + timedelta(i) for i in range((date(year, 12, 31) - first).days + 1)]
    return YearView(
        year,
        source,
        state.years.get(year),
        tuple(d for d in span if d.weekday() < 5 and not calendar.is_workday(d)),
        tuple(d for d in span if d.weekday() >= 5 and calendar.is_workday(d)),
        {d: w for d, w in state.overrides.days.items() if d.year == year},
        arrangement,
    )


def parse_overrides(data: bytes, filename: str = "") -> CalendarOverrides:
    """A calendar override file (JSON: {"years": {...}, "days": {...}}), or CatalogueError."""
    file = filename or "calendar"
    try:
        doc = json.loads(data.decode("utf-8").removeprefix("\ufeff"))
    except UnicodeDecodeError:
        raise CatalogueError("published.calendar_encoding", file=file) from None
    except json.JSONDecodeError as exc:
        raise CatalogueError(
            "published.calendar_json", file=file, line=exc.lineno, column=exc.colno, reason=exc.msg
        ) from None
    if not isinstance(doc, dict) or not set(doc) <= {"years", "days"}:
        raise CatalogueError("published.calendar_shape", file=file)
    years = doc.get("years")
    for year, arrangement in years.items() if isinstance(years, dict) else ():
        # a misspelt "complete" must not pass for an undeclared year
        unknown = sorted(set(arrangement) - {"complete", "holidays", "workdays"}) if isinstance(
            arrangement, dict) else []  # fmt: skip
        if unknown:
            reason = f"years.{year}: unknown key {unknown[0]!r}"
            raise CatalogueError("published.calendar_bad", file=file, reason=reason)
    try:
        return CalendarOverrides.from_body(doc)
    except ZhibaoError as exc:
        raise CatalogueError(
            "published.calendar_bad", file=file, reason=exc.params.get("reason", str(exc))
        ) from None


_SHAPE = (
    '{{"years": {{"2027": {{"complete": true, "holidays": [...], "workdays": [...]}}}},'
    ' "days": {{"2027-05-06": true}}}}'
)
i18n.register(
    {
        "published.calendar_encoding": ("{file} is not UTF-8 text", "{file} 不是 UTF-8 编码的文本"),
        "published.calendar_json": (
            "{file} line {line}, column {column}: not valid JSON ({reason})",
            "{file} 第 {line} 行 {column} 列：不是有效的 JSON（{reason}）",
        ),
        "published.calendar_shape": ("{file}: expected " + _SHAPE, "{file}：格式应为 " + _SHAPE),
        "published.calendar_bad": (
            "{file}: malformed calendar override: {reason}",
            "{file}：日历调整格式有误：{reason}",
        ),
        "calendar.undeclared": (
            'Say whether {year} is the whole year: "complete": true for the whole of the'
            ' State Council\'s holiday notice for {year}, "complete": false for these days only',
            "请注明 {year} 年是否为全年安排：整份国务院办公厅 {year} 年节假日安排通知用"
            ' "complete": true，仅部分日期用 "complete": false',
        ),
        "calendar.downgrade": (
            "{year} is already published here as the whole year: a partial arrangement would"
            " replace it and make {year} provisional again. Publish the whole year with the"
            ' change, or give the days under "days"',
            "本节点已发布 {year} 年全年安排：部分安排会替换它，使 {year} 年重新变为临时。"
            '请发布修改后的全年安排，或把这些日期写在 "days" 中',
        ),
    }
)
