"""The complaint counts (投诉) of `stats` and of the monthly report, defined once.

A complaint counts for the node it is about (its `subject`): that node must answer for it,
as a case counts for the node that accepted it. Dates are China-time days of the events'
`at`. For each period:

- `complaints`: filed in the period;
- `complaints_open_at_start`: filed before the period and not closed before it;
- `complaints_closed`: closed (办结) in the period; `complaints_closed_on_time`: of those,
  closed on or before the deadline day (the `days`-th working day after filing, `days` fixed
  in the filing entry, so every node judges it alike);
- 投诉办结率 = closed ÷ (open at start + filed), as 办结率 is for cases (tiers.figures.derive).

By item, department or kind, a complaint about a case counts under the case's item; one
about a department under that department; any other under "?".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from sync.logstore import LogStore
from sync.protocol.ids import tier_of
from tiers.figures import Counts, Period
from tiers.published import list_items, work_calendar

UNKNOWN = "?"
_SEP = "\x00"

# (subject, case's item code or None, department or None) → the row key, or None
ComplaintKey = Callable[[str, str | None, str | None], str | None]


def _key_of(store: LogStore, by: str) -> ComplaintKey | None:
    if by == "node":
        return lambda subject, item, department: subject
    if by == "tier":
        return lambda subject, item, department: tier_of(subject)
    items = {item.code: item for item in list_items(store)}
    if by == "item":
        return lambda subject, item, department: item or UNKNOWN
    if by == "department":

        def department_of(subject: str, item: str | None, department: str | None) -> str:
            if department is not None:
                return department
            known = items.get(item) if item is not None else None
            return known.department if known is not None else UNKNOWN

        return department_of
    if by == "kind":

        def kind_of(subject: str, item: str | None, department: str | None) -> str:
            known = items.get(item) if item is not None else None
            return known.kind if known is not None else UNKNOWN

        return kind_of
    return None


_SQL = (
    "SELECT k.subject, c.item_code, k.department, k.days, k.filed_on, k.closed_on "
    "FROM complaints k LEFT JOIN cases c ON c.case_id = k.case_id "
    "WHERE k.filed_on <= :e AND (k.closed_on IS NULL OR k.closed_on >= :s)"
)


def _tally(store: LogStore, period: Period, key_of: ComplaintKey) -> dict[str, Counts]:
    s, e = period.start.isoformat(), period.end.isoformat()
    cal = work_calendar(store)
    rows: dict[str, Counts] = {}
    held = store.query(_SQL, {"s": s, "e": e})
    for subject, item, department, days, filed_on, closed_on in held:
        key = key_of(subject, item, department)
        if key is None:
            continue
        c = rows.setdefault(key, Counts())
        if filed_on >= s:
            c.complaints += 1
        elif closed_on is None or closed_on >= s:
            c.complaints_open_at_start += 1
        if closed_on is not None and closed_on <= e:
            c.complaints_closed += 1
            due, _ = cal.add_workdays(date.fromisoformat(filed_on), days)
            c.complaints_closed_on_time += date.fromisoformat(closed_on) <= due
    return rows


def complaint_counts(store: LogStore, period: Period, by: str) -> dict[str, Counts]:
    """The complaint counts of `period` per row key of `stats --by BY` (only those fields)."""
    key_of = _key_of(store, by)
    if key_of is None:
        return {}
    return _tally(store, period, key_of)


def complaint_parts(store: LogStore, period: Period, part: str) -> dict[str, dict[str, Counts]]:
    """subject → row key of a monthly report's `part` (`item` or `kind`, keyed as `stats
    --by` keys it) → the complaint counts: a report's parts then add up to its total."""
    key_of = _key_of(store, part)
    assert key_of is not None, part

    def joined(subject: str, item: str | None, department: str | None) -> str | None:
        key = key_of(subject, item, department)
        return None if key is None else subject + _SEP + key

    out: dict[str, dict[str, Counts]] = {}
    for both, counts in _tally(store, period, joined).items():
        subject, key = both.split(_SEP, 1)
        out.setdefault(subject, {})[key] = counts
    return out


def add_complaints(rows: dict[str, Counts], store: LogStore, period: Period, by: str) -> None:
    """Add the complaint counts to `rows` (counts of cases per key, from tiers.figures.per_case)."""
    for key, counts in complaint_counts(store, period, by).items():
        if key not in rows:
            rows[key] = Counts()
        rows[key].add(counts)
