"""What rests on a guessed calendar year, and which years the city must publish.

A year is *known* when the city published it whole (`"complete": true`) or the
chinesecalendar package knows it; any other year is counted on weekends alone and every
result that counted one of its days is *provisional* (tiers.calendar). This module says so
wherever a deadline or a figure appears:

- `case_years`: a case's deadline (`case list`), recomputed from the calendar in force,
  so a calendar published since the case was folded, or read differently by a newer
  version, counts at once;
- `figure_years`: figures of a period (`stats`, `report monthly`): the guessed years of
  the days the counts consulted, and no others (a case accepted in December with its
  deadline in an unknown January does not make December's figures provisional: whether
  it was completed on time in December does not depend on January);
- `years_needed`: the years `status` lists and `reconcile` reports as `calendar_missing`:
  this year, next year from the notice month on (setting `calendar_notice_month`, default
  11: the 国务院办公厅's notice for the next year comes out in October to December), and
  every year an open case's deadline is counted in, when not known.

Invariant: every function depends only on what the store holds and on the day given.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from sync.logstore import LogStore
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.errors import ZhibaoError
from tiers.calendar import WorkCalendar
from tiers.case_facts import load_facts
from tiers.cases.machine import OPEN
from tiers.figures import Facts, Period, judged_as_of
from tiers.published import calendar_state, work_calendar

NOTICE_MONTH = 11  # setting `calendar_notice_month`
_OPEN_SQL = "(" + ", ".join(f"'{s}'" for s in sorted(OPEN)) + ")"


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def case_years(
    cal: WorkCalendar, accepted_on: str | None, deadline: str | None, paused_since: str | None
) -> list[int]:
    """The guessed years a case's deadline was counted through (after acceptance, up to
    the deadline, or to the pause that froze it); [] before acceptance."""
    start, end = _day(accepted_on), _day(deadline) or _day(paused_since)
    if start is None or end is None:
        return []
    return sorted(cal.guessed_years(start, end))


def figure_years(
    cal: WorkCalendar, facts: Iterable[Facts], period: Period, today: date
) -> list[int]:
    """The guessed years the figures of `period` (tiers.figures.per_case) rest on: working days
    are counted from acceptance up to a completion in the period, or up to the day open
    cases are judged at (`judged_as_of`), never beyond."""
    start, end, as_of = (
        period.start.isoformat(),
        period.end.isoformat(),
        judged_as_of(period, today),
    )
    spans: set[tuple[str, str]] = set()
    for f in facts:
        if f.accepted_on is None:
            continue
        if f.completed_on is not None and start <= f.completed_on <= end:
            spans.add((f.accepted_on, f.completed_on))
        if f.accepted_on <= as_of and (f.ended_on is None or f.ended_on > as_of):
            spans.add((f.accepted_on, as_of))
    years: set[int] = set()
    for first, last in spans:
        years |= cal.guessed_years(date.fromisoformat(first), date.fromisoformat(last))
    return sorted(years)


def period_years(
    store: LogStore, period: Period, today: date, node_id: str | None = None,
    facts: list[Facts] | None = None,
) -> list[int]:  # fmt: skip
    """`figure_years` of the facts held here for `period` (only `node_id`'s, if given: the
    cases it accepted, as its monthly report counts them); `facts`: already loaded."""
    if facts is None:
        facts = load_facts(store, period)
    if node_id is not None:
        facts = [f for f in facts if f.node == node_id]
    return figure_years(work_calendar(store), facts, period, today)


def provisional_figures(years: Iterable[int]) -> str:
    """The note under figures that rest on guessed years."""
    return i18n.t("provisional.figures", years=i18n.listed(sorted(set(years))))


@dataclass(frozen=True)
class YearNeeded:
    """A year that is not known and is needed: by open cases, or because it is this year
    or next year's notice is due."""

    year: int
    open_cases: int  # open accepted cases whose deadline is counted in it
    this_year: bool
    next_year: bool  # next year, and the notice month has come
    published_days: bool  # some days of it are published, not the whole year

    def to_json(self) -> dict[str, Any]:
        return {"year": self.year, "open_cases": self.open_cases, "this_year": self.this_year,
                "next_year": self.next_year, "published_days": self.published_days}  # fmt: skip


def notice_month(settings: dict[str, Any]) -> int:
    """The month from which next year's calendar is expected (`calendar_notice_month`);
    a value that is not a month is refused, naming the setting."""
    value = settings.get("calendar_notice_month", NOTICE_MONTH)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 12:
        raise ZhibaoError("setting.bad", name="calendar_notice_month", value=str(value),
                          expected="1–12")  # fmt: skip
    return value


def years_needed(store: LogStore, today: date, month: int = NOTICE_MONTH) -> list[YearNeeded]:
    """Every year needed and not known, by year."""
    cal = work_calendar(store)
    counts: dict[int, int] = {}
    for accepted_on, deadline, paused_since in store.query(
        "SELECT accepted_on, deadline, paused_since FROM cases "
        f"WHERE status IN {_OPEN_SQL} AND accepted_on IS NOT NULL"
    ):
        for year in case_years(cal, accepted_on, deadline, paused_since):
            counts[year] = counts.get(year, 0) + 1
    candidates = set(counts) | {today.year}
    if today.month >= month:
        candidates.add(today.year + 1)
    state = calendar_state(store)
    published = set(state.overrides.years) | {d.year for d in state.overrides.days}
    return [
        YearNeeded(
            y,
            counts.get(y, 0),
            y == today.year,
            y == today.year + 1 and today.month >= month,
            y in published,
        )
        for y in sorted(candidates)
        if not cal.knows_year(y)
    ]


def calendar_status(node: Node) -> dict[str, Any]:
    """`status --json` key `calendar`: where each year comes from, and what is needed."""
    from tiers.calendar_publish import package_years  # `status` only; `case list` needs not (#13)

    store = node.store
    state = calendar_state(store)
    package = package_years()
    needed = years_needed(store, node.clock.now().date(), notice_month(node.config.settings))
    whole = sorted(y for y, a in state.overrides.years.items() if a.complete)
    partial = sorted(
        ({y for y, a in state.overrides.years.items() if not a.complete}
         | {d.year for d in state.overrides.days}) - set(whole)
    )  # fmt: skip
    return {
        "package_years": [package[0], package[-1]],
        "published_whole": whole,
        "published_partial": partial,
        "needed": [n.to_json() for n in needed],
    }


def status_line(info: dict[str, Any]) -> str:
    """The calendar line of `status` for a person."""
    package = info["package_years"]
    whole = ", ".join(map(str, info["published_whole"])) or "-"
    known = i18n.t("provisional.status_known", first=package[0], last=package[1], whole=whole)
    if not info["needed"]:
        return known
    parts = []
    for need in info["needed"]:
        why = (
            i18n.t("provisional.open_cases", count=need["open_cases"])
            if need["open_cases"]
            else (
                i18n.t("provisional.this_year")
                if need["this_year"]
                else i18n.t("provisional.next_year")
            )
        )
        parts.append(i18n.t("provisional.year_why", year=need["year"], why=why))
    return known + i18n.t("provisional.status_needed", years="; ".join(parts))


def calendar_missing(node: Node, today: date) -> list[tuple[str, dict[str, Any], str]]:
    """Findings `calendar_missing` for reconcile, as (node id, evidence, message key): one
    per year needed, named for the city, which alone publishes the calendar."""
    city = node.node_id[:6]
    found = []
    for need in years_needed(node.store, today, notice_month(node.config.settings)):
        message = "finding.calendar_missing" if need.open_cases else "finding.calendar_missing_next"
        if not need.open_cases and need.this_year:
            message = "finding.calendar_missing_now"
        found.append((city, {"publisher": city, **need.to_json()}, message))
    return found


i18n.register(
    {
        "setting.bad": (
            "node.toml setting {name} = {value} is not valid: expected {expected}.",
            "node.toml 中的设置 {name} = {value} 无效：应为 {expected}。",
        ),
    }
)
i18n.register(
    {
        "provisional.status_known": (
            "calendar: known from the package {first}–{last}, published whole: {whole}",
            "日历：软件包已知 {first}–{last} 年，已发布全年安排：{whole}",
        ),
        "provisional.status_needed": (
            "; NOT KNOWN, counted on weekends alone: {years} — the city must publish it"
            " (`zhibao calendar import`)",
            "；未知（仅按周末计算）：{years}——需由市级发布（`zhibao calendar import`）",
        ),
        "provisional.open_cases": (
            "{count} open case(s) have deadlines in it",
            "{count} 件在办件的期限落在该年",
        ),
        "provisional.this_year": ("this year", "本年度"),
        "provisional.year_why": ("{year} ({why})", "{year}（{why}）"),
        "provisional.next_year": ("next year: the notice is due", "下一年度：节假日安排应已发布"),
        "provisional.figures": (
            "provisional: these figures count {years} on weekends alone; publish the {years}"
            " calendar and count again",
            "临时数据：{years} 年仅按周末计算；请发布 {years} 年的节假日安排后重新统计",
        ),
        "provisional.list_mark": ("provisional", "临时"),
        "finding.calendar_missing": (
            "{node_id} has not published a whole {year} calendar: {open_cases} open case(s)"
            " have deadlines counted in {year} on weekends alone (provisional).",
            "{node_id} 尚未发布 {year} 年全年节假日安排：{open_cases} 件在办件的期限在"
            " {year} 年仅按周末计算（临时期限）。",
        ),
        "finding.calendar_missing_next": (
            "{node_id} has not published a whole {year} calendar; the State Council's notice"
            " for {year} is due, and deadlines reaching into {year} will be provisional.",
            "{node_id} 尚未发布 {year} 年全年节假日安排；国务院办公厅的 {year} 年节假日安排"
            "通知应已发布，期限跨入 {year} 年的办件将为临时期限。",
        ),
        "finding.calendar_missing_now": (
            "{node_id} has not published a whole {year} calendar, and {year} is this year:"
            " every deadline counted in it is provisional.",
            "{node_id} 尚未发布本年度（{year} 年）全年节假日安排：该年的期限均为临时期限。",
        ),
    }
)
