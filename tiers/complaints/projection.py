"""One complaint folded from its events, and the store extension keeping every complaint.

Invariants:
- `fold` takes one complaint's events in causal order (`tiers.cases.order`: each names the
  event its author knew last as `after`), so every node holding the same events folds the
  same complaint; it never raises: an event it refuses is kept aside as a violation.
- `check` is the one place that says what is allowed; the service calls it before it
  appends and `fold` calls it on every event, so a log written by this code folds clean.
- The projection refolds a touched complaint whole at the end of the applying transaction
  (complaints are few and short). `complaints` holds what a list or a count needs; the
  deadline is not stored: it is counted on the calendar in force when it is read.
- What flows down (DESIGN §1): an ancestor's events about a complaint filed in a node's
  subtree or about a node of it, so a village sees the town's answer to its complaint and
  a town the city's complaint about it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sync import relevance
from sync.clock import local_date, local_day
from sync.logstore import LogStore
from sync.protocol import i18n
from sync.protocol.entry import SignedEntry
from sync.protocol.ids import ancestors_of, is_within, subtree_end
from tiers.calendar import WorkCalendar
from tiers.cases.order import Event, Ref, causal_order
from tiers.complaints import entries as c
from tiers.complaints.entries import ComplaintError
from tiers.deadlines import Deadline

OPEN, CLOSED = "open", "closed"
STATUSES = (OPEN, CLOSED)
_ACTION_OF = {c.FILED: "file", c.REPLIED: "reply", c.CLOSED: "close"}


@dataclass(frozen=True)
class Violation:
    """An event the fold refused: by (origin, seq), its type and the message key why."""

    origin: str
    seq: int
    type: str
    key: str


@dataclass
class ComplaintState:
    """A complaint as folded from its events (times are the events' `at` strings)."""

    complaint_id: str
    filer: str
    about: str
    case_id: str | None
    department: str | None
    subject: str
    text: str
    days: int
    filed_at: str
    status: str = OPEN
    replies: list[dict[str, Any]] = field(default_factory=list)
    closed_at: str | None = None
    closed_by: str | None = None
    note: str | None = None
    tip: Ref | None = None
    anchor: Ref | None = None  # the last event that took effect: a new event's `after`
    violations: list[Violation] = field(default_factory=list)
    days_of: dict[Ref, str] = field(default_factory=dict, repr=False)  # event -> its day


def due_date(cal: WorkCalendar, filed_at: str, days: int) -> Deadline:
    """The day a complaint is due: the `days`-th working day after the day it was filed
    (counting starts the next working day, as a case's time limit does)."""
    due, guessed = cal.add_workdays(local_date(filed_at), days)
    return Deadline(due, guessed)


def check(state: ComplaintState, action: str, actor: str, subject: str) -> None:
    """Refuse `action` ("reply" or "close") by node `actor` unless the complaint allows it."""
    if action == "file":
        raise ComplaintError("complaint.exists", complaint_id=state.complaint_id)
    if subject != state.subject:
        raise ComplaintError(
            "complaint.wrong_subject", complaint_id=state.complaint_id, subject=state.subject
        )
    if not is_within(state.subject, actor):
        raise ComplaintError(
            "complaint.not_responsible", complaint_id=state.complaint_id, origin=actor,
            subject=state.subject,
        )  # fmt: skip
    if state.status == CLOSED:
        raise ComplaintError(
            "complaint.already_closed", complaint_id=state.complaint_id, action=action
        )


def _start(event: Event) -> ComplaintState:
    body = event.body
    return ComplaintState(
        complaint_id=body["complaint_id"], filer=event.origin, about=body["about"],
        case_id=body.get("case_id"), department=body.get("department"),
        subject=body["subject"], text=body["text"], days=body["days"], filed_at=event.at,
        tip=event.ref, anchor=event.ref,
    )  # fmt: skip


def _check_dated(state: ComplaintState, event: Event) -> None:
    """An answer dated before the filing, or before the event its author names as known
    (`after`), is back-dated (what `complaint reply|close --at` refuses): else a subject
    could close a complaint about it on time, or before the month it was filed in."""
    day = local_day(event.at)
    known = state.days_of.get(event.after) if event.after is not None else None
    last = max(local_day(state.filed_at), known or "")
    if day < last:
        raise ComplaintError(
            "complaint.backdated", complaint_id=state.complaint_id, at=event.at, last=last
        )


def step(state: ComplaintState, event: Event) -> None:
    """Fold one more event (after `state.tip` in causal order); a refused one is set aside."""
    state.tip = event.ref
    state.days_of[event.ref] = local_day(event.at)
    try:
        check(state, _ACTION_OF[event.type], event.origin, event.body["subject"])
        _check_dated(state, event)
    except ComplaintError as exc:
        state.violations.append(Violation(event.origin, event.seq, event.type, exc.key))
        return
    if event.type == c.REPLIED:
        state.replies.append(
            {"node_id": event.origin, "seq": event.seq, "at": event.at, "text": event.body["text"]}
        )
    else:
        state.status, state.closed_at, state.closed_by = CLOSED, event.at, event.origin
        state.note = event.body.get("note")
    state.anchor = event.ref


def fold(events: Iterable[Event]) -> ComplaintState | None:
    """The complaint after `events` (in causal order); None if it was never filed here."""
    state: ComplaintState | None = None
    orphans: list[Violation] = []
    for event in events:
        if state is None:
            if event.type == c.FILED:
                state = _start(event)
            else:
                orphan = Violation(event.origin, event.seq, event.type, "complaint.not_found")
                orphans.append(orphan)
            continue
        step(state, event)
    if state is not None:
        state.violations[:0] = orphans
    return state


# --- the projection ---------------------------------------------------------------------

_DDL = """
CREATE TABLE IF NOT EXISTS complaint_events (
    origin TEXT NOT NULL, seq INTEGER NOT NULL, complaint_id TEXT NOT NULL, type TEXT NOT NULL,
    at TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (origin, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS complaint_events_id ON complaint_events (complaint_id);
CREATE TABLE IF NOT EXISTS complaints (
    complaint_id TEXT PRIMARY KEY, filer TEXT NOT NULL, about TEXT NOT NULL, case_id TEXT,
    department TEXT, subject TEXT NOT NULL, days INTEGER NOT NULL, filed_at TEXT NOT NULL,
    filed_on TEXT NOT NULL, status TEXT NOT NULL, closed_at TEXT, closed_on TEXT,
    replies INTEGER NOT NULL, waiting INTEGER NOT NULL, violations INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS complaints_subject ON complaints (subject);
CREATE INDEX IF NOT EXISTS complaints_filed ON complaints (filed_on);
CREATE INDEX IF NOT EXISTS complaints_closed ON complaints (closed_on);
"""


@dataclass
class Folded:
    """A complaint's state, its events in causal order, and those waiting for their `after`."""

    state: ComplaintState | None
    ordered: list[Event]
    waiting: list[Event]


def load_complaint(store: LogStore, complaint_id: str) -> Folded:
    """Fold `complaint_id` from the events held here (sees this transaction's appends)."""
    rows = store.query(
        "SELECT origin, seq, type, at, body FROM complaint_events WHERE complaint_id = ?",
        (complaint_id,),
    )
    ordered, waiting = causal_order(Event(o, s, t, at, json.loads(b)) for o, s, t, at, b in rows)
    return Folded(fold(ordered), ordered, waiting)


def _refold(store: LogStore, complaint_id: str) -> None:
    folded = load_complaint(store, complaint_id)
    s = folded.state
    if s is None:
        store.execute("DELETE FROM complaints WHERE complaint_id = ?", (complaint_id,))
        return
    store.execute(
        "INSERT OR REPLACE INTO complaints (complaint_id, filer, about, case_id, department, "
        "subject, days, filed_at, filed_on, status, closed_at, closed_on, replies, waiting, "
        "violations) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            s.complaint_id, s.filer, s.about, s.case_id, s.department, s.subject, s.days,
            s.filed_at, local_day(s.filed_at), s.status, s.closed_at,
            local_day(s.closed_at), len(s.replies),
            len(folded.waiting), len(s.violations),
        ),
    )  # fmt: skip


class ComplaintProjection:
    """The store extension keeping `complaint_events` and `complaints` (module doc)."""

    name = "complaints"
    version = 1
    ddl = _DDL
    types: frozenset[str] | None = c.TYPES
    lazy = True

    def __init__(self) -> None:
        self._touched: set[str] = set()

    def apply(self, store: LogStore, entry: SignedEntry, fields: dict[str, Any]) -> None:
        body = fields["body"]
        store.execute(
            "INSERT OR IGNORE INTO complaint_events (origin, seq, complaint_id, type, at, body) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                entry.origin, entry.seq, body["complaint_id"], entry.type, fields["at"],
                json.dumps(body, ensure_ascii=False, sort_keys=True),
            ),
        )  # fmt: skip
        self._touched.add(body["complaint_id"])

    def discard(self) -> None:
        self._touched.clear()

    def flush(self, store: LogStore) -> None:
        for complaint_id in sorted(self._touched):
            _refold(store, complaint_id)
        self._touched.clear()


def complaint_events_for(
    store: LogStore, client: str, cursors: dict[str, int]
) -> list[tuple[str, int]]:
    """(origin, seq) of ancestors' complaint events about complaints that concern `client`:
    filed in its subtree, or about a node of it."""
    low, high = client, subtree_end(client)
    out: list[tuple[str, int]] = []
    for origin in ancestors_of(client):
        rows = store.query(
            "SELECT e.seq FROM complaint_events e WHERE e.origin = ? AND e.seq > ? AND "
            "e.complaint_id IN (SELECT complaint_id FROM complaints WHERE "
            "(complaint_id >= ? AND complaint_id < ?) OR (subject >= ? AND subject < ?))",
            (origin, cursors.get(origin, 0), low, high, low, high),
        )
        out.extend((origin, seq) for (seq,) in rows)
    return out


relevance.register_selector(complaint_events_for)


i18n.register(
    {
        "complaint.exists": (
            "Complaint {complaint_id} was already filed.",
            "投诉 {complaint_id} 已经登记。",
        ),
        "complaint.not_found": (
            "No complaint {complaint_id} is known at this node.",
            "本节点没有投诉 {complaint_id}。",
        ),
        "complaint.wrong_subject": (
            "Complaint {complaint_id} is about {subject}; an answer naming another subject is"
            " refused.",
            "投诉 {complaint_id} 针对 {subject}；指向其他对象的答复无效。",
        ),
        "complaint.backdated": (
            "Complaint {complaint_id}: an answer dated {at} is before its filing or the event"
            " it follows ({last}): back-dated, it changes nothing.",
            "投诉 {complaint_id}：日期为 {at} 的答复或办结早于投诉登记或其接续的记录（{last}），"
            "属于倒签，不产生效力。",
        ),
        "complaint.already_closed": (
            "Complaint {complaint_id} is closed; {action} is not allowed.",
            "投诉 {complaint_id} 已办结，不能再答复或办结（{action}）。",
        ),
    }
)


def violations_in(store: LogStore, first: str, last: str) -> list[tuple[str, dict[str, Any]]]:
    """Complaint events held here that the fold refused, dated between the days `first`
    and `last` (ISO, inclusive): (author, evidence) for reconciliation's findings."""
    found = []
    rows = store.query("SELECT complaint_id, subject FROM complaints WHERE violations > 0")
    for complaint_id, subject in rows:
        state = load_complaint(store, complaint_id).state
        for v in state.violations if state is not None else ():
            at = store.query(
                "SELECT at FROM complaint_events WHERE origin = ? AND seq = ?", (v.origin, v.seq)
            )[0][0]
            if first <= local_day(at) <= last:
                found.append(
                    (v.origin, {"complaint_id": complaint_id, "seq": v.seq, "type": v.type,
                                "at": at, "subject": subject, "problem": v.key})
                )  # fmt: skip
    return found


i18n.register(
    {
        "finding.complaint_violation": (
            "{node_id} wrote {type} #{seq} on complaint {complaint_id} (about {subject}), which"
            " was refused ({problem}): it changes nothing and counts nowhere.",
            "{node_id} 对投诉 {complaint_id}（针对 {subject}）的记录 {type} #{seq} 无效"
            "（{problem}）：不改变投诉，也不计入统计。",
        ),
    }
)
