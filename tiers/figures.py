"""The statistics of DESIGN §5, defined once: what each figure means and how it is counted.

Both the city's `stats` and a town's or village's monthly report call `tally` here, so a
report and the city's recomputation can only differ in the entries they were computed from.

A case belongs to the node that accepted it (受理, `accepted_by`): that node made the
promise, so acceptance, completion, timeliness, ratings and fees all count for it, even
when a higher tier decided the case. `received` alone counts for the node that received
the case (收件/代办), which is how villages that forward everything show their work.
Dates are China-time days of the events' `at`; never the time an entry arrived, so a late
or out-of-order entry changes the months its events happened in, and no other.

Pure: facts in, counts out. `tiers.reports` keeps the facts of every case current as
entries are applied (`FigureProjection`) and loads those a period needs.

Invariants:
- Counts (`Counts`) are integers: a report body carries them exactly; rates are derived
  from them (`derive`) and never stored.
- Each figure is counted in `tally` and nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import date, timedelta
from typing import Any

from sync.clock import local_date
from sync.protocol import i18n
from sync.protocol.errors import ReportError
from tiers.calendar import WorkCalendar
from tiers.cases import entries as e
from tiers.cases.machine import CaseState
from tiers.deadlines import Pause, compute_deadline, workdays_used

SATISFIED_SCORES = (1, 2, 3)  # 非常满意, 满意, 基本满意; 4 and 5 are bad ratings (差评)

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})-[Qq]([1-4])$")
_YEAR = re.compile(r"^(\d{4})$")


@dataclass(frozen=True)
class Period:
    """A month, quarter or year: its label (`2025-10`, `2025-Q4`, `2025`) and its days."""

    label: str
    start: date
    end: date  # inclusive

    @property
    def is_month(self) -> bool:
        return _MONTH.match(self.label) is not None


def _month_end(year: int, month: int) -> date:
    first_next = date(year + month // 12, month % 12 + 1, 1)
    return first_next - timedelta(days=1)


def parse_period(text: str) -> Period:
    """`2025-10`, `2025-Q4` or `2025`; ReportError for anything else."""
    value = (text or "").strip()
    try:
        if m := _MONTH.match(value):
            year, month = int(m[1]), int(m[2])
            return Period(f"{year:04d}-{month:02d}", date(year, month, 1), _month_end(year, month))
        if m := _QUARTER.match(value):
            year, quarter = int(m[1]), int(m[2])
            first = 3 * quarter - 2
            return Period(
                f"{year:04d}-Q{quarter}", date(year, first, 1), _month_end(year, first + 2)
            )
        if m := _YEAR.match(value):
            year = int(m[1])
            return Period(f"{year:04d}", date(year, 1, 1), date(year, 12, 31))
    except ValueError:
        pass
    raise ReportError("period.bad", value=text)


def month_of(day: date) -> Period:
    return parse_period(f"{day:%Y-%m}")


@dataclass
class Counts:
    """The integer counts behind every figure (what a monthly report carries)."""

    received: int = 0  # received (收件) in the period, for the receiving node
    accepted: int = 0  # 受理量
    completed: int = 0  # 办结量
    open_at_start: int = 0  # accepted before the period, not completed or closed before it
    on_time: int = 0  # completed in the period on or before the deadline day
    early: int = 0  # … before the deadline day (a part of on_time)
    overdue: int = 0  # completed in the period after the deadline day
    open_overdue: int = 0  # open at the period's close, past the deadline then
    promised_completed: int = 0  # 承诺件 (promised_days > 0) completed in the period
    days_used_total: int = 0  # their working days used, pauses excluded
    days_promised_total: int = 0  # their promised working days
    rated: int = 0  # ratings recorded in the period
    satisfied: int = 0  # … of 1 to 3
    bad_ratings: int = 0  # … of 4 or 5 (差评数); `complaints` in reports before issue #12
    fees_assessed_fen: int = 0  # fees assessed in the period
    fees_paid_fen: int = 0  # payments recorded in the period
    # Issue #12 (newer report bodies; an older body lacks them: read as 0, see from_body)
    complaints: int = 0  # 投诉 filed in the period, for the node they are about
    complaints_open_at_start: int = 0  # filed before the period, not closed before it
    complaints_closed: int = 0  # 投诉 closed (办结) in the period
    complaints_closed_on_time: int = 0  # … on or before their deadline day
    completed_rated: int = 0  # cases completed in the period and rated by its last day

    def add(self, other: Counts) -> None:
        for f in COUNT_FIELDS:
            setattr(self, f, getattr(self, f) + getattr(other, f))

    def to_body(self) -> dict[str, int]:
        return {f: getattr(self, f) for f in COUNT_FIELDS}

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Counts:
        """Counts from a report body; a count it lacks is 0. A body without `bad_ratings`
        was written before issue #12, when `complaints` counted bad ratings (差评): it is
        read as such (and as no 投诉, which were not recorded then)."""
        values = {f: int(body.get(f, 0)) for f in COUNT_FIELDS}
        if "bad_ratings" not in body:
            values["bad_ratings"], values["complaints"] = values["complaints"], 0
        return cls(**values)


COUNT_FIELDS = tuple(f.name for f in fields(Counts))


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def derive(c: Counts) -> dict[str, Any]:
    """The figures of DESIGN §7 from counts: rates rounded to 4 places, None when undefined."""
    return {
        "accepted": c.accepted,
        "completed": c.completed,
        "completion_rate": _ratio(c.completed, c.open_at_start + c.accepted),
        "on_time": c.on_time,
        "early": c.early,
        "overdue": c.overdue,
        "avg_days": (
            round(c.days_used_total / c.promised_completed, 2) if c.promised_completed else None
        ),
        "speedup": (
            round(1 - c.days_used_total / c.days_promised_total, 4)
            if c.days_promised_total
            else None
        ),
        "rated": c.rated,
        "satisfaction_rate": _ratio(c.satisfied, c.rated),
        "received": c.received,
        "open_at_start": c.open_at_start,
        "open_overdue": c.open_overdue,
        "on_time_rate": _ratio(c.on_time, c.completed),
        "bad_ratings": c.bad_ratings,
        "fees_assessed_fen": c.fees_assessed_fen,
        "fees_paid_fen": c.fees_paid_fen,
        "promised_completed": c.promised_completed,
        "days_used_total": c.days_used_total,
        "days_promised_total": c.days_promised_total,
        "satisfied": c.satisfied,
        "complaints": c.complaints,
        "complaints_open_at_start": c.complaints_open_at_start,
        "complaints_closed": c.complaints_closed,
        "complaints_closed_on_time": c.complaints_closed_on_time,
        "complaint_closure_rate": _ratio(
            c.complaints_closed, c.complaints_open_at_start + c.complaints
        ),  # 投诉办结率
        "complaint_on_time_rate": _ratio(c.complaints_closed_on_time, c.complaints_closed),
        "completed_rated": c.completed_rated,
        "rating_rate": _ratio(c.completed_rated, c.completed),  # 评议率
    }


# --- the facts of one case ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Facts:
    """What the figures need of one case; dates are ISO days (China time), or None."""

    case_id: str
    origin: str
    node: str | None  # accepted_by
    item_code: str
    received_on: str
    accepted_on: str | None
    promised_days: int | None
    completed_on: str | None
    ended_on: str | None  # completed, rejected or withdrawn
    pauses: tuple[tuple[str, str | None], ...]
    extensions: tuple[tuple[str, int], ...]
    rating: int | None
    rated_on: str | None
    fee_fen: int | None
    fee_on: str | None
    paid_fen: int | None
    paid_on: str | None


FACT_COLUMNS = tuple(f.name for f in fields(Facts))


def _day(stamp: str | None) -> str | None:
    return local_date(stamp).isoformat() if stamp else None


def facts_of(state: CaseState) -> Facts:
    """The facts of a folded case (only events the machine applied count)."""
    extensions, rated_on, fee_on, paid_on, paid_fen = [], None, None, None, None
    for ev in state.events:
        if ev.type == e.EXTENDED:
            extensions.append((local_date(ev.at).isoformat(), int(ev.body["days"])))
        elif ev.type == e.RATED:
            rated_on = _day(ev.at)
        elif ev.type == e.FEE_ASSESSED:
            fee_on = _day(ev.at)
        elif ev.type == e.FEE_PAID:
            paid_on, paid_fen = _day(ev.at), int(ev.body["fee_fen"])
    completed_on = _day(state.completed_at)
    return Facts(
        state.case_id, state.origin, state.accepted_by, state.item_code,
        local_date(state.received_at).isoformat(), _day(state.accepted_at),
        state.promised_days, completed_on, completed_on or _day(state.closed_at),
        tuple((local_date(s).isoformat(), _day(end)) for s, end in state.pauses),
        tuple(extensions), state.rating, rated_on, state.fee_fen, fee_on, paid_fen, paid_on,
    )  # fmt: skip


# --- counting ---------------------------------------------------------------------------------

KeyOf = Callable[[Facts, str], str | None]  # (facts, "received" | "handled") → row key


class _Deadlines:
    """Deadlines and working days on one calendar, memoised for the common unpaused case."""

    def __init__(self, cal: WorkCalendar) -> None:
        self.cal = cal
        self._due: dict[tuple[str, int], date] = {}
        self._used: dict[tuple[str, str], int] = {}

    def due(self, f: Facts, as_of: str | None = None) -> date | None:
        """The deadline as known at the close of `as_of` (None: with every event)."""
        assert f.accepted_on is not None and f.promised_days is not None
        days = f.promised_days
        if f.extensions:
            days += sum(n for d, n in f.extensions if as_of is None or d <= as_of)
        pauses = [
            Pause(date.fromisoformat(s), date.fromisoformat(end) if end else None)
            for s, end in f.pauses
            if as_of is None or s <= as_of
        ]
        if as_of is not None:
            pauses = [p if p.end and p.end.isoformat() <= as_of else Pause(p.start) for p in pauses]
        if pauses:
            return compute_deadline(self.cal, date.fromisoformat(f.accepted_on), days, pauses).due
        key = (f.accepted_on, days)
        if key not in self._due:
            self._due[key] = self.cal.add_workdays(date.fromisoformat(f.accepted_on), days)[0]
        return self._due[key]

    def used(self, f: Facts) -> int:
        assert f.accepted_on is not None and f.completed_on is not None
        accepted, done = date.fromisoformat(f.accepted_on), date.fromisoformat(f.completed_on)
        if f.pauses:
            pauses = [
                Pause(date.fromisoformat(s), date.fromisoformat(end) if end else None)
                for s, end in f.pauses
            ]
            return workdays_used(self.cal, accepted, done, pauses)[0]
        key = (f.accepted_on, f.completed_on)
        if key not in self._used:
            self._used[key] = workdays_used(self.cal, accepted, done)[0]
        return self._used[key]


def judged_as_of(period: Period, today: date) -> str:
    """The day whose close `open_overdue` is judged at: the period's last day once it is
    over, else yesterday (a case is overdue the day after its deadline day)."""
    return (period.end if today > period.end else today - timedelta(days=1)).isoformat()


def tally(
    facts: Iterable[Facts], period: Period, cal: WorkCalendar, today: date, key_of: KeyOf
) -> dict[str, Counts]:
    """Count every figure of `period` per key. `key_of(f, role)` gives a case's row key for
    its reception ("received") and for everything else ("handled"); None leaves it out."""
    s, e_, as_of = period.start.isoformat(), period.end.isoformat(), judged_as_of(period, today)
    deadlines = _Deadlines(cal)
    rows: dict[str, Counts] = {}

    def counts(key: str) -> Counts:
        if key not in rows:
            rows[key] = Counts()
        return rows[key]

    for f in facts:
        if s <= f.received_on <= e_ and (key := key_of(f, "received")) is not None:
            counts(key).received += 1
        acc = f.accepted_on
        if acc is None:  # a case refused before acceptance (不予受理) is rated too
            if (key := key_of(f, "received")) is not None:
                _count_rating(counts(key), f, s, e_)
            continue
        if (key := key_of(f, "handled")) is None:
            continue
        c = counts(key)
        ended = f.ended_on
        if s <= acc <= e_:
            c.accepted += 1
        elif acc < s and (ended is None or ended >= s):
            c.open_at_start += 1
        done = f.completed_on
        if done is not None and s <= done <= e_:
            c.completed += 1
            due = deadlines.due(f)
            if due is None or date.fromisoformat(done) > due:
                c.overdue += 1
            else:
                c.on_time += 1
                c.early += date.fromisoformat(done) < due
            c.completed_rated += f.rated_on is not None and f.rated_on <= e_
            if f.promised_days:
                c.promised_completed += 1
                c.days_used_total += deadlines.used(f)
                c.days_promised_total += f.promised_days
        if acc <= as_of and (ended is None or ended > as_of):
            due = deadlines.due(f, as_of)
            c.open_overdue += due is not None and due.isoformat() <= as_of
        _count_rating(c, f, s, e_)
        if f.fee_on is not None and s <= f.fee_on <= e_:
            c.fees_assessed_fen += f.fee_fen or 0
        if f.paid_on is not None and s <= f.paid_on <= e_:
            c.fees_paid_fen += f.paid_fen or 0
    return rows


def _count_rating(c: Counts, f: Facts, first: str, last: str) -> None:
    """A rating recorded between the days `first` and `last` (ISO, inclusive)."""
    if f.rated_on is not None and first <= f.rated_on <= last and f.rating is not None:
        c.rated += 1
        c.satisfied += f.rating in SATISFIED_SCORES
        c.bad_ratings += f.rating not in SATISFIED_SCORES


def node_key(f: Facts, role: str) -> str | None:
    """By node: the receiving node for `received`, the accepting node for the rest."""
    return f.origin if role == "received" else f.node


def total(rows: dict[str, Counts]) -> Counts:
    out = Counts()
    for c in rows.values():
        out.add(c)
    return out


i18n.register(
    {
        "period.bad": (
            "'{value}' is not a period: use a month (2025-10), a quarter (2025-Q4) or a year"
            " (2025).",
            "“{value}”不是有效统计期：应为月（2025-10）、季度（2025-Q4）或年（2025）。",
        ),
    }
)
