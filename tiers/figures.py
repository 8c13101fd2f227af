"""The statistics of DESIGN §5, defined once: what each figure means and how it is counted.

Both the city's `stats` and a town's or village's monthly report count with `per_case` here
(through `tiers.figure_cells`), so a report and the city's recomputation can only differ in
the entries they were computed from.

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
- Each figure is counted in `per_case` (`_count_case`, `_count_steps`) and nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import date, timedelta
from typing import Any, NamedTuple

from sync.clock import local_day
from sync.protocol import i18n
from sync.protocol.errors import ReportError
from tiers.calendar import WorkCalendar
from tiers.cases import entries as e
from tiers.cases.machine import CaseState
from tiers.cases.order import Event
from tiers.catalogue import CatalogueItem
from tiers.deadlines import CaseDeadlines
from tiers.steps import REJECTED, WITHDRAWN, Judged, Step, judge, steps_of

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
    # Newer counts (a report made before they existed lacks them: they read as 0 there and
    # reconciliation compares only what a report stated; `LEGACY_FIELDS` are always stated).
    rejected: int = 0  # 不予受理 in the period, for the node that rejected the case
    withdrawn: int = 0  # accepted cases withdrawn (撤件) in the period
    carried_out: int = 0  # 结转下月: accepted by the period's end, not ended by it
    statutory_completed: int = 0  # 承诺件 completed in the period whose item has a statutory limit
    statutory_days_used: int = 0  # their working days used
    statutory_days_promised: int = 0  # their promised working days
    statutory_days_total: int = 0  # their statutory working days
    steps: int = 0  # 环节: this node's steps ended (handed on or completed) in the period
    steps_on_time: int = 0  # … within the step's own limit
    step_days_used: int = 0  # their working days used
    step_days_allowed: int = 0  # their limits
    steps_open_late: int = 0  # steps open at the period's close, past their limit then
    # Issue #12 (newer report bodies; an older body lacks them: read as 0, see from_body)
    complaints: int = 0  # 投诉 filed in the period, for the node they are about
    complaints_open_at_start: int = 0  # filed before the period, not closed before it
    complaints_closed: int = 0  # 投诉 closed (办结) in the period
    complaints_closed_on_time: int = 0  # … on or before their deadline day
    completed_rated: int = 0  # cases completed in the period and rated by its last day

    def add(self, other: Counts) -> None:
        mine, theirs = self.__dict__, other.__dict__  # (3x setattr's speed: a hot loop)
        for f in COUNT_FIELDS:
            mine[f] += theirs[f]

    def to_body(self) -> dict[str, int]:
        return {f: getattr(self, f) for f in COUNT_FIELDS}

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Counts:
        """Counts from a report body: a count it does not state is 0, one this version does
        not know is ignored (a report from a newer zhibao). A body without `bad_ratings`
        was written before issue #12, when `complaints` counted bad ratings (差评): it is
        read as such (and as no 投诉, which were not recorded then)."""
        values = {f: int(body.get(f, 0)) for f in COUNT_FIELDS}
        if "bad_ratings" not in body:
            values["bad_ratings"], values["complaints"] = values["complaints"], 0
        return cls(**values)

    @staticmethod
    def stated_in(body: dict[str, Any]) -> frozenset[str]:
        """The counts a report body states, by today's names (see `from_body`)."""
        stated = frozenset(COUNT_FIELDS) & set(body)
        if "bad_ratings" not in body and "complaints" in body:
            stated = (stated - {"complaints"}) | {"bad_ratings"}
        return stated


COUNT_FIELDS = tuple(f.name for f in fields(Counts))
# The counts every report states: those of the first report format (zhibao ≤ 0.x, before
# the monthly report carried parts, 不予受理 and 环节).
# The counts every report states, by the names report bodies have always used: before
# issue #12 `complaints` counted bad ratings (`from_body`), now 投诉 (and `bad_ratings` those).
LEGACY_FIELDS = tuple(
    "complaints" if f == "bad_ratings" else f
    for f in COUNT_FIELDS[: COUNT_FIELDS.index("fees_paid_fen") + 1]
)


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def derive(c: Counts, *, withdrawn_in_base: bool = True) -> dict[str, Any]:
    """The figures of DESIGN §7 from counts: rates rounded to 4 places, None when undefined;
    then every count behind them. `withdrawn_in_base`: whether accepted cases the applicant
    withdrew stay in 办结率's denominator (setting `completion_counts_withdrawn`)."""
    base = c.open_at_start + c.accepted - (0 if withdrawn_in_base else c.withdrawn)
    return {
        "accepted": c.accepted,
        "completed": c.completed,
        "completion_rate": _ratio(c.completed, base),
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
        "overdue_total": c.overdue + c.open_overdue,
        "speedup_statutory": _rest(c.statutory_days_used, c.statutory_days_total),
        "promise_compression": _rest(c.statutory_days_promised, c.statutory_days_total),
        "step_on_time_rate": _ratio(c.steps_on_time, c.steps),
        **{f: getattr(c, f) for f in COUNT_FIELDS[len(LEGACY_FIELDS) :]},
        "complaint_closure_rate": _ratio(
            c.complaints_closed, c.complaints_open_at_start + c.complaints
        ),  # 投诉办结率
        "complaint_on_time_rate": _ratio(c.complaints_closed_on_time, c.complaints_closed),
        "rating_rate": _ratio(c.completed_rated, c.completed),  # 评议率
    }


def _rest(part: int, whole: int) -> float | None:
    """1 − part ÷ whole, to 4 places (a speed-up or a compression)."""
    return round(1 - part / whole, 4) if whole else None


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
    steps: tuple[Step, ...] = ()  # (node, began_on, ended_on, how): `tiers.steps`


FACT_COLUMNS = tuple(f.name for f in fields(Facts))


class Dated(NamedTuple):
    """What a case's events date beside its state: its extensions (day, days), when it was
    rated, charged and paid, and how much."""

    extensions: tuple[tuple[str, int], ...] = ()
    rated_on: str | None = None
    fee_on: str | None = None
    paid_fen: int | None = None
    paid_on: str | None = None


UNDATED = Dated()


def dated(events: Iterable[Event], since: Dated = UNDATED) -> Dated:
    """`since`, with what `events` (in the order applied) date."""
    extensions, (_, rated_on, fee_on, paid_fen, paid_on) = list(since.extensions), since
    for ev in events:
        if ev.type == e.EXTENDED:
            extensions.append((local_day(ev.at), int(ev.body["days"])))
        elif ev.type == e.RATED:
            rated_on = local_day(ev.at)
        elif ev.type == e.FEE_ASSESSED:
            fee_on = local_day(ev.at)
        elif ev.type == e.FEE_PAID:
            paid_on, paid_fen = local_day(ev.at), int(ev.body["fee_fen"])
    return Dated(tuple(extensions), rated_on, fee_on, paid_fen, paid_on)


def facts_of(state: CaseState) -> Facts:
    """The facts of a folded case (only events the machine applied count)."""
    got = dated(state.events)
    completed_on = local_day(state.completed_at)
    return Facts(
        state.case_id, state.origin, state.accepted_by, state.item_code,
        local_day(state.received_at), local_day(state.accepted_at),
        state.promised_days, completed_on, completed_on or local_day(state.closed_at),
        tuple((local_day(s), local_day(end)) for s, end in state.pauses),
        got.extensions, state.rating, got.rated_on, state.fee_fen, got.fee_on, got.paid_fen,
        got.paid_on,
        steps_of(state.origin, state.received_at,
                 ((ev.type, ev.at, ev.origin) for ev in state.events[1:])),
    )  # fmt: skip


# --- counting ---------------------------------------------------------------------------------

# (a case's item code, the node the figure counts for) → row key, or None to leave it out
KeyOf = Callable[[str, str], str | None]


def judged_as_of(period: Period, today: date) -> str:
    """The day whose close `open_overdue` is judged at: the period's last day once it is
    over, else yesterday (a case is overdue the day after its deadline day)."""
    return (period.end if today > period.end else today - timedelta(days=1)).isoformat()


def tally(
    facts: Iterable[Facts],
    period: Period,
    cal: WorkCalendar,
    today: date,
    key_of: KeyOf,
    items: Mapping[str, CatalogueItem] | None = None,
) -> dict[str, Counts]:
    """Every figure of `period` counted from `facts`, per `key_of(item_code, node)` (None
    leaves it out): `per_case`'s counts regrouped (bench/stats.py's towns report so)."""
    return regroup(add_cells({}, per_case(facts, period, cal, today, items)), key_of)


# A period's counts per (node the figure counts for, the case's item code): every grouping
# of the figures is a sum of these (`regroup`); tiers.figure_cells keeps them per period.
Cells = dict[tuple[str, str], Counts]


def regroup(cells: Mapping[tuple[str, str], Counts], key_of: KeyOf) -> dict[str, Counts]:
    """Cells summed per `key_of(item_code, node)` (None leaves a cell out)."""
    rows: dict[str, Counts] = {}
    for (node, item_code), counts in cells.items():
        key = key_of(item_code, node)
        if key is not None:
            rows.setdefault(key, Counts()).add(counts)
    return rows


def add_cells(cells: Cells, cases: Iterable[tuple[Facts, dict[str, Counts]]]) -> Cells:
    """`cells` with what each case counts (from `per_case`) added to its cells."""
    for f, by_node in cases:
        for node, counts in by_node.items():
            cells.setdefault((node, f.item_code), Counts()).add(counts)
    return cells


def per_case(
    facts: Iterable[Facts],
    period: Period,
    cal: WorkCalendar,
    today: date,
    items: Mapping[str, CatalogueItem] | None = None,
) -> Iterator[tuple[Facts, dict[str, Counts]]]:
    """What each case counts in `period`, per node the figure counts for: the receiving node
    for `received`, the rejecting one for `rejected`, the node of each step for the 环节
    counts, the accepting node for the rest; cases counting nothing are left out. Every
    grouping of the figures (by node, item, department, kind; a report's parts) is a sum of
    these (`add_cells`, `regroup`; kept per month by `tiers.figure_cells`). `items` (the
    catalogue in force, by code) gives statutory limits and the review limit of steps;
    without it they count as unknown."""
    s, e_, as_of = period.start.isoformat(), period.end.isoformat(), judged_as_of(period, today)
    deadlines = CaseDeadlines(cal)
    catalogue = items or {}
    for f in facts:
        rows: dict[str, Counts] = {}

        def counts(f: Facts, node: str | None, rows: dict[str, Counts] = rows) -> Counts | None:
            if node is None:
                return None
            if node not in rows:
                rows[node] = Counts()
            return rows[node]

        _count_case(f, catalogue, deadlines, s, e_, as_of, counts)
        if rows:
            yield f, rows


def _count_case(
    f: Facts, catalogue: Mapping[str, CatalogueItem], deadlines: CaseDeadlines, s: str, e_: str,
    as_of: str, counts: Callable[[Facts, str | None], Counts | None],
) -> None:  # fmt: skip
    """Every figure one case counts between the days `s` and `e_` (judged open at `as_of`)."""
    if s <= f.received_on <= e_ and (r := counts(f, f.origin)) is not None:
        r.received += 1
    last = f.steps[-1] if f.steps else None
    if (last is not None and last[3] == REJECTED and last[2] is not None
            and s <= last[2] <= e_ and (r := counts(f, last[0])) is not None):  # fmt: skip
        r.rejected += 1
    _count_steps(f, catalogue.get(f.item_code), deadlines, s, e_, as_of, counts)
    acc = f.accepted_on
    if acc is None:  # a case refused before acceptance (不予受理) is rated too: for the
        # node that refused it (else, a rating on a case never accepted: its receiver)
        by = last[0] if last is not None and last[3] == REJECTED else f.origin
        if (r := counts(f, by)) is not None:
            _count_rating(r, f, s, e_)
        return
    if (c := counts(f, f.node)) is None:
        return
    ended = f.ended_on
    if s <= acc <= e_:
        c.accepted += 1
    elif acc < s and (ended is None or ended >= s):
        c.open_at_start += 1
    if acc <= e_ and (ended is None or ended > e_):
        c.carried_out += 1
    if last is not None and last[3] == WITHDRAWN and ended is not None and s <= ended <= e_:
        c.withdrawn += 1
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
            used = deadlines.used(f)
            c.promised_completed += 1
            c.days_used_total += used
            c.days_promised_total += f.promised_days
            item = catalogue.get(f.item_code)
            if item is not None and item.statutory_days:
                c.statutory_completed += 1
                c.statutory_days_used += used
                c.statutory_days_promised += f.promised_days
                c.statutory_days_total += item.statutory_days
    if acc <= as_of and (ended is None or ended > as_of):
        due = deadlines.due(f, as_of)
        c.open_overdue += due is not None and due.isoformat() <= as_of
    _count_rating(c, f, s, e_)
    if f.fee_on is not None and s <= f.fee_on <= e_:
        c.fees_assessed_fen += f.fee_fen or 0
    if f.paid_on is not None and s <= f.paid_on <= e_:
        c.fees_paid_fen += f.paid_fen or 0


def _promised(f: Facts, item: CatalogueItem | None) -> int:
    """The promise a case's steps share: recorded at acceptance, else the catalogue's."""
    if f.promised_days is not None:
        return f.promised_days
    return item.promised_days if item is not None else 0


def _count_steps(
    f: Facts, item: CatalogueItem | None, deadlines: CaseDeadlines, s: str, e_: str, as_of: str,
    counts: Callable[[Facts, str | None], Counts | None],
) -> None:  # fmt: skip
    """环节: each step that ended in the period, for its node; each step open at the close
    of `as_of` and past its limit then."""
    if not any(step[2] is None or step[2] >= s for step in f.steps):
        return

    def judged(extension_days: int, as_of: str | None = None) -> list[Judged]:
        return judge(f.steps, accepted_on=f.accepted_on, accepted_by=f.node,
                     promised=_promised(f, item), extension_days=extension_days,
                     pauses=f.pauses, item=item, cal=deadlines.cal, as_of=as_of,
                     used_days=deadlines.span)  # fmt: skip

    for step in judged(sum(n for _, n in f.extensions)):
        if step.ended_on is not None and s <= step.ended_on <= e_:
            c = counts(f, step.node)
            if c is not None:
                c.steps += 1
                c.steps_on_time += step.on_time
                c.step_days_used += step.used
                c.step_days_allowed += step.allowed
    if not any(began <= as_of and (ended is None or ended > as_of)
               for _, began, ended, _ in f.steps):  # fmt: skip
        return
    for step in judged(sum(n for d, n in f.extensions if d <= as_of), as_of):
        if step.ended_on is None and not step.on_time:
            c = counts(f, step.node)
            if c is not None:
                c.steps_open_late += 1


def node_key(item_code: str, node: str) -> str | None:
    """By node: the node the figure counts for."""
    return node


def _count_rating(c: Counts, f: Facts, first: str, last: str) -> None:
    """A rating recorded between the days `first` and `last` (ISO, inclusive)."""
    if f.rated_on is not None and first <= f.rated_on <= last and f.rating is not None:
        c.rated += 1
        c.satisfied += f.rating in SATISFIED_SCORES
        c.bad_ratings += f.rating not in SATISFIED_SCORES


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
