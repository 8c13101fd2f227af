"""`case list`: the cases held here that match a search, one page at a time, in SQL.

The filters (`Filters`) become one WHERE clause on the `cases` projection, served by its
indexes (tiers.cases.projection): a page picks its case ids newest first (`received_at,
case_id`, LIMIT/OFFSET) and then reads only those rows; the count of the rest is one
`count(*)`. Only the rows on the page reach Python, where their deadline, remaining days
and warning are judged on the calendar in force.

Red (overdue: open and due before today) is a WHERE term like the others. The other
warnings depend on the working-day calendar, so `--warning` narrows in SQL to a superset
first (yellow: open and due before the (threshold + 1)-th working day, or paused;
unaccepted: received and never accepted; undelivered: completed more than ten calendar
days ago) and each candidate is then judged exactly.

Searches: `applicant` is a part of the name; `id_no` and `phone` a whole number or its last
digits (尾号); `item` an item code or a part of its name; `department` the catalogue's department
whole; `node` a node id, meaning the
cases held by or received at that node or any node under it; `since`/`until` the day of
receipt, both included.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sync.logstore import LogStore
from sync.protocol import i18n
from sync.protocol.errors import CaseError
from sync.protocol.ids import is_node_id, subtree_end
from tiers.calendar import WorkCalendar
from tiers.cases import guards
from tiers.cases.machine import OPEN, STATUSES
from tiers.deadlines import Deadline, remaining_workdays, warning
from tiers.provisional import case_years
from tiers.published import work_calendar

WARNINGS = ("yellow", "red", guards.UNACCEPTED, guards.UNDELIVERED)
EXACT = frozenset({"red"})  # warnings whose SQL term is the whole rule (no row to judge)
FULL_ID_NO = 15  # an ID number this long or longer is matched whole (an index serves it)
FULL_PHONE = 11  # likewise a phone number (a mobile number has 11 digits)
_OPEN = "(" + ", ".join(f"'{s}'" for s in sorted(OPEN)) + ")"
_NAME = "json_extract(c.applicant, '$.name')"
_ID_NO = "json_extract(c.applicant, '$.id_no')"
_PHONE = "json_extract(c.applicant, '$.phone')"
_COLUMNS = (
    "c.case_id, c.item_code, json_extract(k.body, '$.name'), c.status, c.holder, c.origin,"
    f" {_NAME}, {_PHONE}, c.received_at, c.accepted_at, c.deadline, c.accepted_on,"
    " c.paused_since, c.remaining_when_paused, c.completed_at, c.result"
)
_FROM = " FROM cases c LEFT JOIN catalogue k ON k.code = c.item_code"
_ORDER = " ORDER BY c.received_at DESC, c.case_id DESC"


@dataclass(frozen=True)
class Filters:
    """What `case list` searches for; None matches everything."""

    status: str | None = None
    warning: str | None = None
    applicant: str | None = None
    id_no: str | None = None
    phone: str | None = None
    item: str | None = None
    node: str | None = None
    since: date | None = None
    until: date | None = None
    department: str | None = None

    def given(self) -> dict[str, str]:
        """The filters in force, as the reader gave them (for "No cases matched …")."""
        return {
            name: value.isoformat() if isinstance(value, date) else str(value)
            for name, value in vars(self).items()
            if value is not None
        }


@dataclass(frozen=True)
class Page:
    """One page of matching cases (newest first), where it starts, and how many match."""

    rows: list[dict[str, Any]]
    offset: int
    total: int

    @property
    def rest(self) -> int:
        """Matching cases after this page."""
        return max(0, self.total - self.offset - len(self.rows))


def _like(text: str) -> str:
    """`text` for a LIKE pattern, its wildcards taken literally (ESCAPE '\\')."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _where(filters: Filters) -> tuple[list[str], list[Any]]:
    """The WHERE terms and their parameters for every filter but `warning`."""
    terms: list[str] = []
    params: list[Any] = []
    if filters.status is not None:
        if filters.status not in STATUSES:
            raise CaseError("case.bad_status", status=filters.status, statuses=", ".join(STATUSES))
        terms.append("c.status = ?")
        params.append(filters.status)
    if filters.applicant is not None:
        terms.append(f"lower({_NAME}) LIKE lower(?) ESCAPE '\\'")
        params.append(f"%{_like(filters.applicant.strip())}%")
    for value, column, full in (
        (filters.id_no, _ID_NO, FULL_ID_NO), (filters.phone, _PHONE, FULL_PHONE)
    ):  # fmt: skip
        if value is None:
            continue
        value = value.strip()
        if len(value) >= full:  # whole: the expression index (x and X both found)
            terms.append(f"{column} IN (?, ?)")
            params += [value.upper(), value.lower()]
        else:  # the last digits (尾号), x or X (lower(): PostgreSQL's LIKE minds case)
            terms.append(f"lower({column}) LIKE lower(?) ESCAPE '\\'")
            params.append(f"%{_like(value)}")
    if filters.item is not None:
        item = filters.item.strip()
        terms.append(
            "(c.item_code = ? OR lower(json_extract(k.body, '$.name')) LIKE lower(?) ESCAPE '\\')"
        )
        params += [item, f"%{_like(item)}%"]
    if filters.department is not None:
        terms.append("json_extract(k.body, '$.department') = ?")
        params.append(filters.department.strip())
    if filters.node is not None:
        if not is_node_id(filters.node):
            raise CaseError("case.bad_node", node_id=filters.node)
        end = subtree_end(filters.node)
        terms.append("(c.holder >= ? AND c.holder < ? OR c.origin >= ? AND c.origin < ?)")
        params += [filters.node, end, filters.node, end]
    if filters.since is not None:
        terms.append("c.received_at >= ?")
        params.append(filters.since.isoformat())
    if filters.until is not None:
        terms.append("c.received_at < ?")
        params.append((filters.until + timedelta(days=1)).isoformat())
    if filters.since and filters.until and filters.since > filters.until:
        raise CaseError(
            "case.bad_span", since=filters.since.isoformat(), until=filters.until.isoformat()
        )
    return terms, params


def _candidates(
    colour: str, cal: WorkCalendar, today: date, threshold: int
) -> tuple[str, list[Any]]:
    """A WHERE term every case with warning `colour` today meets (few others do)."""
    if colour == "red":
        return f"c.status IN {_OPEN} AND c.deadline < ?", [today.isoformat()]
    if colour == "yellow":
        # remaining = working days in (today, due] <= threshold: due comes before the
        # (threshold + 1)-th working day after today; a paused case keeps its remaining days
        before = cal.add_workdays(today, max(threshold, 0) + 1)[0]
        return (
            f"c.status IN {_OPEN} AND c.accepted_at IS NOT NULL AND (c.deadline IS NULL"
            " OR c.deadline >= ? AND c.deadline < ?)",
            [today.isoformat(), before.isoformat()],
        )
    if colour == guards.UNACCEPTED:
        return "c.status = 'received' AND c.accepted_at IS NULL", []
    if colour == guards.UNDELIVERED:
        # more than ten working days since completion: more than ten calendar days (a day's
        # slack for an `at` written in another offset)
        cutoff = today - timedelta(days=guards.DELIVERY_DAYS - 1)
        return "c.status = 'completed' AND c.completed_at < ?", [cutoff.isoformat()]
    raise CaseError("case.bad_warning", warning=colour)


class _Judge:
    """Turns `cases` rows into list rows, judging deadlines on the calendar in force."""

    def __init__(self, cal: WorkCalendar, today: date, threshold: int, unaccepted: int) -> None:
        self.cal, self.today, self.threshold, self.unaccepted = cal, today, threshold, unaccepted

    def row(self, found: tuple[Any, ...]) -> dict[str, Any]:
        (case_id, item_code, item_name, status, holder, origin, name, phone, received_at,
         accepted_at, due, accepted_on, paused_since, remaining_paused, completed_at,
         result) = found  # fmt: skip
        years: list[int] = []
        deadline = None
        if accepted_at is not None:
            # read again on the calendar in force (tiers.provisional): a year published
            # whole since, or an old arrangement read as the days it lists, counts at once
            years = case_years(self.cal, accepted_on, due, paused_since)
            deadline = Deadline(
                date.fromisoformat(due) if due else None,
                frozenset(years),
                date.fromisoformat(paused_since) if paused_since else None,
                remaining_paused,
            )
        colour: str | None
        remaining = None
        if deadline is not None and status in OPEN:
            colour = warning(self.cal, deadline, self.today, self.threshold)
            remaining = remaining_workdays(self.cal, deadline, self.today)
        else:
            colour = guards.late_warning(
                self.cal, status, received_at, completed_at, accepted_at is not None,
                self.today, self.unaccepted,
            )  # fmt: skip
        return {
            "case_id": case_id, "item_code": item_code, "item_name": item_name,
            "status": status, "holder": holder, "origin": origin, "applicant": name,
            "phone": phone, "received_at": received_at, "accepted_at": accepted_at,
            "deadline": due, "remaining_days": remaining, "warning": colour,
            "provisional": bool(years), "completed_at": completed_at, "result": result,
            "provisional_years": years,
        }  # fmt: skip


def find(
    store: LogStore, today: date, threshold: int, filters: Filters = Filters(), *,
    limit: int | None = None, offset: int = 0,
    unaccepted: int = guards.DEFAULT_UNACCEPTED_DAYS,
) -> Page:  # fmt: skip
    """The page of cases matching `filters` (all of them when `limit` is None)."""
    if (limit is not None and limit < 0) or offset < 0:
        raise CaseError("case.bad_page")
    terms, params = _where(filters)
    cal = work_calendar(store)
    judge = _Judge(cal, today, threshold, unaccepted)
    if filters.warning is not None:
        if filters.warning not in WARNINGS:
            raise CaseError("case.bad_warning", warning=filters.warning)
        term, more = _candidates(filters.warning, cal, today, threshold)
        terms, params = [*terms, term], [*params, *more]
        if filters.warning not in EXACT:  # judged row by row: the page is cut from them all
            sql = f"SELECT {_COLUMNS}{_FROM} WHERE {' AND '.join(terms)}{_ORDER}"
            colour = filters.warning
            matching = [r for r in map(judge.row, store.query(sql, tuple(params)))
                        if r["warning"] == colour]  # fmt: skip
            end = None if limit is None else offset + limit
            return Page(matching[offset:end], offset, len(matching))
    by_item = filters.item is not None or filters.department is not None
    count_sql, page_sql = queries(terms, by_item)
    total = store.query(count_sql, tuple(params))[0][0]
    found = store.query(page_sql, (*params, -1 if limit is None else limit, offset))
    return Page([judge.row(r) for r in found], offset, total)


def queries(terms: list[str], by_item: bool) -> tuple[str, str]:
    """The count and the page for WHERE `terms`. The page picks its case ids first (from
    an index alone where one covers the terms: sorting thousands of index entries is cheap,
    reading thousands of rows is not), then reads those rows only."""
    where = f" WHERE {' AND '.join(terms)}" if terms else ""
    source = _FROM if by_item else " FROM cases c"  # only --item needs the catalogue
    keys = f"SELECT c.case_id{source}{where}{_ORDER} LIMIT ? OFFSET ?"
    return (
        f"SELECT count(*){source}{where}",
        f"SELECT {_COLUMNS}{_FROM} WHERE c.case_id IN ({keys}){_ORDER}",
    )


def provisional_years(rows: list[dict[str, Any]]) -> set[int]:
    """The years whose calendar the deadlines on `rows` guessed."""
    return {year for row in rows for year in row["provisional_years"]}


i18n.register(
    {
        "case.bad_status": (
            "'{status}' is not a case status; use one of {statuses}.",
            "“{status}”不是办件状态；可用 {statuses}。",
        ),
        "case.bad_warning": (
            "'{warning}' is not a warning; use yellow, red, unaccepted or undelivered.",
            "“{warning}”不是预警级别；可用 yellow（黄灯）、red（红灯）、unaccepted（未受理）"
            "或 undelivered（未送达）。",
        ),
        "case.bad_node": (
            "'{node_id}' is not a node id (6, 9 or 12 digits).",
            "“{node_id}”不是节点编号（6、9 或 12 位数字）。",
        ),
        "case.bad_span": (
            "--since {since} comes after --until {until}.",
            "--since {since} 晚于 --until {until}。",
        ),
        "case.bad_page": (
            "--limit and --offset must not be negative.",
            "--limit 和 --offset 不能为负数。",
        ),
    }
)
