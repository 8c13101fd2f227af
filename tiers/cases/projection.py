"""The case projection: `case_events` (every case event held here) and `cases` (folded).

Invariants:
- `apply` is one cheap insert plus noting the event; `flush` (end of the applying
  transaction) brings each touched case up to date once: by folding the new events onto
  the stored state when they extend its causal chain (the usual, in-order case), else by
  refolding all its events in causal order, so late or out-of-order arrivals across
  village, town and city logs give the same state as in-order ones.
- A `cases` row holds the folded `CaseState`: its columns, plus `state`, the JSON of the
  fields no column holds (kept small: a row that outgrows its page spills into overflow
  pages). `held` counts its events held here.
- An event whose `after` is not held yet is kept in `case_events` and counted as waiting;
  it joins the fold when the missing event arrives.
- Deadlines come from `tiers.deadlines` on the calendar in force; a `calendar.override`
  marks every case whose counting span touches the overridden years dirty, so provisional
  deadlines are recomputed when the city publishes the missing year.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import date
from typing import Any

import msgspec

from sync.clock import local_date, local_day
from sync.logstore import LogStore
from sync.protocol.entry import SignedEntry
from tiers.calendar import WorkCalendar
from tiers.cases import entries
from tiers.cases.guards import BACKDATING, LOOK_BACK
from tiers.cases.machine import OPEN, CaseState, Violation, fold, step
from tiers.cases.order import Event, Ref, causal_order, chained
from tiers.deadlines import Deadline, Pause, compute_deadline
from tiers.published import CALENDAR_OVERRIDE, work_calendar

_DDL = """
CREATE TABLE IF NOT EXISTS case_events (
    origin TEXT NOT NULL, seq INTEGER NOT NULL, case_id TEXT NOT NULL, type TEXT NOT NULL,
    at TEXT NOT NULL, body TEXT NOT NULL, after_origin TEXT, after_seq INTEGER,
    PRIMARY KEY (origin, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS case_events_case ON case_events (case_id);
CREATE TABLE IF NOT EXISTS cases (
    case_id TEXT PRIMARY KEY, item_code TEXT NOT NULL, origin TEXT NOT NULL,
    holder TEXT NOT NULL, status TEXT NOT NULL, forward_to TEXT,
    applicant TEXT NOT NULL, received_at TEXT NOT NULL,
    accepted_at TEXT, accepted_on TEXT, accepted_by TEXT, promised_days INTEGER,
    extension_days INTEGER NOT NULL DEFAULT 0, pauses TEXT NOT NULL DEFAULT '[]',
    deadline TEXT, provisional INTEGER NOT NULL DEFAULT 0, provisional_years TEXT,
    paused_since TEXT, remaining_when_paused INTEGER,
    completed_at TEXT, completed_by TEXT, result TEXT, delivered_at TEXT,
    closed_at TEXT, fee_fen INTEGER, paid INTEGER NOT NULL DEFAULT 0,
    rating INTEGER, comment TEXT,
    last_origin TEXT, last_seq INTEGER, event_count INTEGER NOT NULL,
    held INTEGER NOT NULL, waiting INTEGER NOT NULL DEFAULT 0,
    violations TEXT NOT NULL DEFAULT '[]', state TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cases_status ON cases (status);
CREATE INDEX IF NOT EXISTS cases_holder ON cases (holder);
-- for `case list` (tiers.cases.listing): newest first, by item, deadline, origin, number
CREATE INDEX IF NOT EXISTS cases_received ON cases (received_at, case_id);
CREATE INDEX IF NOT EXISTS cases_item ON cases (item_code);
CREATE INDEX IF NOT EXISTS cases_due ON cases (status, deadline, received_at);
CREATE INDEX IF NOT EXISTS cases_origin ON cases (origin);
CREATE INDEX IF NOT EXISTS cases_id_no ON cases (json_extract(applicant, '$.id_no'));
CREATE INDEX IF NOT EXISTS cases_phone ON cases (json_extract(applicant, '$.phone'));
"""

_COLUMNS = (
    "case_id", "item_code", "origin", "holder", "status", "forward_to", "applicant",
    "received_at", "accepted_at", "accepted_on", "accepted_by", "promised_days",
    "extension_days", "pauses", "deadline", "provisional", "provisional_years",
    "paused_since", "remaining_when_paused", "completed_at", "completed_by", "result",
    "delivered_at", "closed_at", "fee_fen", "paid", "rating", "comment", "last_origin",
    "last_seq", "event_count", "held", "waiting", "violations", "state",
)  # fmt: skip
_UPSERT = (
    f"INSERT OR REPLACE INTO cases ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
)
LOAD_CASES = 500  # cases whose events one statement reads (load_cases)
_OPEN_SQL = "(" + ", ".join(f"'{s}'" for s in sorted(OPEN)) + ")"


def load_events(store: LogStore, case_id: str) -> list[Event]:
    """Every event of `case_id` held here, in no particular order."""
    rows = store.query(
        "SELECT origin, seq, type, at, body FROM case_events WHERE case_id = ?", (case_id,)
    )
    return [Event(o, s, t, at, json.loads(b)) for o, s, t, at, b in rows]


@dataclass
class Folded:
    """A case's state, its events in causal order, and those waiting for their `after`."""

    state: CaseState | None
    ordered: list[Event]
    waiting: list[Event]


def load_case(store: LogStore, case_id: str) -> Folded:
    """Fold `case_id` from the events held here (sees this transaction's appends)."""
    return _folded(store, load_events(store, case_id), work_calendar(store))


def load_cases(store: LogStore, case_ids: Sequence[str]) -> Iterator[tuple[str, Folded]]:
    """`load_case` of each of `case_ids`, in that order, on one calendar: the events read
    `LOAD_CASES` cases at a time (one statement, not one a case: on PostgreSQL each is a
    round trip). A case's row may be written between two yields: its events stay as read."""
    if not case_ids:
        return
    calendar = work_calendar(store)
    for start in range(0, len(case_ids), LOAD_CASES):
        some = case_ids[start : start + LOAD_CASES]
        events: dict[str, list[Event]] = {case_id: [] for case_id in some}
        for o, s, t, at, b, case_id in store.query(
            "SELECT origin, seq, type, at, body, case_id FROM case_events "
            "WHERE case_id IN (SELECT value FROM json_each(?))",
            (_text(list(some)),),
        ):
            events[case_id].append(Event(o, s, t, at, json.loads(b)))
        for case_id in some:
            yield case_id, _folded(store, events[case_id], calendar)


def _folded(store: LogStore, events: list[Event], calendar: WorkCalendar) -> Folded:
    ordered, waiting = causal_order(events)
    return Folded(fold(ordered, calendar, written_after(store, ordered)), ordered, waiting)


def latest_written(store: LogStore, origin: str, seq: int, case_id: str) -> str | None:
    """The latest day `origin` dated one of its `LOOK_BACK` case events (any case) held here
    between its first event on `case_id` and `seq`: its seq-ordered log was written no
    earlier (tiers.cases.guards)."""
    rows = store.query(
        "SELECT at FROM case_events WHERE origin = :origin AND seq < :seq AND seq >= (SELECT "
        "min(seq) FROM case_events WHERE case_id = :case AND origin = :origin) ORDER BY seq DESC"
        " LIMIT :limit",
        {"origin": origin, "seq": seq, "case": case_id, "limit": LOOK_BACK},
    )
    return max(local_date(r[0]) for r in rows).isoformat() if rows else None


def written_after(store: LogStore, events: Iterable[Event]) -> dict[Ref, str]:
    """`latest_written` for each suspension, extension and 补正 notice among `events`."""
    out = {}
    for ev in events:
        if ev.type not in BACKDATING:
            continue
        if day := latest_written(store, ev.origin, ev.seq, ev.body["case_id"]):
            out[ev.ref] = day
    return out


def first_recorded(store: LogStore, case_id: str) -> date | None:
    """The day (this node's clock) it first stored an event of `case_id`."""
    rows = store.query(
        "SELECT min(e.received_at) FROM case_events c JOIN entries e ON e.origin = c.origin"
        " AND e.seq = c.seq WHERE c.case_id = ?", (case_id,),
    )  # fmt: skip
    return local_date(rows[0][0]) if rows and rows[0][0] else None


def pauses_of(state: CaseState) -> list[Pause]:
    """The clock's pauses (supplement after acceptance, special procedures) as dates."""
    return [
        Pause(local_date(start), local_date(end) if end else None) for start, end in state.pauses
    ]


def deadline_of(state: CaseState, calendar: WorkCalendar) -> Deadline | None:
    """When an accepted case is due; None before acceptance."""
    if state.accepted_at is None or state.promised_days is None:
        return None
    return compute_deadline(
        calendar,
        local_date(state.accepted_at),
        state.promised_days,
        pauses_of(state),
        state.extension_days,
    )


# the text of json.dumps(ensure_ascii=False, sort_keys=True, separators=(",", ":")), ~5×
# faster (the case events' bodies and the cases' JSON columns: ~800,000 a 513 K catch-up)
_ENCODE = msgspec.json.Encoder(order="sorted").encode


def _text(value: Any) -> str:
    """Compact JSON for a projection column (values came from canonical entries: no floats)."""
    if isinstance(value, list) and not value:
        return "[]"
    return _ENCODE(value).decode()


# The state's fields that no column of `cases` holds; they go into its `state` column.
_IN_COLUMNS = frozenset(
    {
        "case_id", "item_code", "origin", "holder", "status", "forward_to", "applicant",
        "received_at", "accepted_at", "accepted_by", "promised_days", "extension_days",
        "pauses", "completed_at", "completed_by", "result", "delivered_at", "closed_at",
        "fee_fen", "paid", "rating", "comment", "tip", "applied", "violations", "events",
    }
)  # fmt: skip
_REST = tuple(f.name for f in fields(CaseState) if f.name not in _IN_COLUMNS)
_BLANK = CaseState("-", "-", "-", {}, [], "", "-")
_DEFAULTS = {name: getattr(_BLANK, name) for name in _REST}
_LOAD = (
    "case_id, item_code, origin, holder, status, forward_to, applicant, received_at, "
    "accepted_at, accepted_by, promised_days, extension_days, pauses, completed_at, "
    "completed_by, result, delivered_at, closed_at, fee_fen, paid, rating, comment, "
    "last_origin, last_seq, event_count, violations, state, held, waiting"
)


@dataclass
class _Stored:
    """A `cases` row read back: the state, its counts, and its JSON columns' text as read
    (so a column whose value did not change is written back without encoding it again)."""

    state: CaseState
    held: int
    waiting: int
    texts: dict[str, tuple[Any, str]]


def _stored(row: tuple[Any, ...]) -> _Stored:
    (case_id, item_code, origin, holder, status, forward_to, applicant, received_at,
     accepted_at, accepted_by, promised_days, extension_days, pauses, completed_at,
     completed_by, result, delivered_at, closed_at, fee_fen, paid, rating, comment,
     last_origin, last_seq, applied, violations, rest, held, waiting) = row  # fmt: skip
    texts = {
        "applicant": (json.loads(applicant), applicant),
        "pauses": (json.loads(pauses), pauses),
        "violations": (json.loads(violations), violations),
    }
    data = json.loads(rest)
    # a row written before a field existed lacks it: the field's default (a fresh case's)
    values: dict[str, Any] = {name: data.get(name, _DEFAULTS[name]) for name in _REST}
    texts["state"] = (values, rest)
    state = CaseState(
        case_id=case_id, item_code=item_code, origin=origin, holder=holder, status=status,
        forward_to=forward_to, applicant=texts["applicant"][0], received_at=received_at,
        accepted_at=accepted_at, accepted_by=accepted_by, promised_days=promised_days,
        extension_days=extension_days,
        pauses=[(start, end) for start, end in texts["pauses"][0]],
        completed_at=completed_at, completed_by=completed_by, result=result,
        delivered_at=delivered_at, closed_at=closed_at, fee_fen=fee_fen, paid=bool(paid),
        rating=rating, comment=comment,
        tip=(last_origin, last_seq) if last_origin is not None else None, applied=applied,
        violations=[Violation(*v) for v in texts["violations"][0]],
        **{name: _restored(name, v) for name, v in values.items()},
    )  # fmt: skip
    return _Stored(state, held, waiting, texts)


def _restored(name: str, value: Any) -> Any:
    """A `state` column value as the CaseState field wants it (JSON has lists only)."""
    if name == "anchor":
        return tuple(value) if value is not None else None
    if isinstance(value, dict):
        return dict(value)  # never the shared default's
    return list(value) if isinstance(value, list) else value


def _row(
    state: CaseState,
    held: int,
    waiting: int,
    deadline: Deadline | None,
    texts: dict[str, tuple[Any, str]],
) -> tuple[Any, ...]:
    def text(column: str, value: Any) -> str:
        known = texts.get(column)
        return known[1] if known is not None and known[0] == value else _text(value)

    tip = state.tip
    violations = [[v.origin, v.seq, v.type, v.key] for v in state.violations]
    rest = {name: getattr(state, name) for name in _REST}
    return (
        state.case_id, state.item_code, state.origin, state.holder, state.status,
        state.forward_to, text("applicant", state.applicant), state.received_at,
        state.accepted_at,
        local_day(state.accepted_at),
        state.accepted_by, state.promised_days, state.extension_days,
        text("pauses", [list(p) for p in state.pauses]),
        deadline.due.isoformat() if deadline and deadline.due else None,
        int(bool(deadline and deadline.provisional)),
        _text(sorted(deadline.provisional_years)) if deadline else None,
        deadline.paused_since.isoformat() if deadline and deadline.paused_since else None,
        deadline.remaining_when_paused if deadline else None,
        state.completed_at, state.completed_by, state.result, state.delivered_at,
        state.closed_at, state.fee_fen, int(state.paid), state.rating, state.comment,
        tip[0] if tip else None, tip[1] if tip else None, state.applied, held, waiting,
        text("violations", violations), text("state", rest),
    )  # fmt: skip


class _Writer:
    """Writes `cases` rows, loading the calendar once and only if a deadline needs it."""

    def __init__(self, store: LogStore) -> None:
        self.store = store
        self._calendar: WorkCalendar | None = None

    def write(
        self,
        state: CaseState,
        held: int,
        waiting: int,
        texts: dict[str, tuple[Any, str]] | None = None,
    ) -> None:
        deadline = None
        if state.accepted_at is not None:
            deadline = deadline_of(state, self.calendar())
        self.store.execute(_UPSERT, _row(state, held, waiting, deadline, texts or {}))

    def calendar(self) -> WorkCalendar:
        if self._calendar is None:
            self._calendar = work_calendar(self.store)
        return self._calendar

    def refold(self, case_ids: Sequence[str]) -> None:
        """Recompute each case from all its events (or drop a row no event supports)."""
        for case_id, folded in load_cases(self.store, case_ids):
            if folded.state is None:
                self.store.execute("DELETE FROM cases WHERE case_id = ?", (case_id,))
                continue
            held = len(folded.ordered) + len(folded.waiting)
            self.write(folded.state, held, len(folded.waiting))

    def advance(self, fresh: dict[str, list[Event]]) -> dict[str, list[Event]]:
        """Fold each case's `fresh` events onto its stored state when they simply extend
        its causal chain; the cases it did, each with its fresh events in the order folded
        (the others are the caller's to refold).

        Exact, not a guess: it applies only when nothing waits, every event held is either
        folded already or in `fresh` (the count proves it, also after a rolled-back
        transaction), and the fresh events, in whatever order they arrived, form one chain
        from the stored tip (`chained`: each names the one before as its `after`; a new
        case's starts with its `case.received`), so they sort last in causal order: an
        origin's entries arrive in seq order, so its earlier events are folded already.
        """
        ids = _text(sorted(fresh))
        counts = dict(
            self.store.query(
                "SELECT case_id, count(*) FROM case_events WHERE case_id IN "
                "(SELECT value FROM json_each(?)) GROUP BY case_id",
                (ids,),
            )
        )
        stored = {
            row[0]: row
            for row in self.store.query(
                f"SELECT {_LOAD} FROM cases WHERE case_id IN (SELECT value FROM json_each(?))",
                (ids,),
            )
        }
        # read before any row is written (each read sends the writes held before it: the
        # rows then go in one run); what they read, no row written here changes. Every case
        # folded on needs the calendar (a new one to fold its first event, the others to step)
        written = written_after(self.store, (ev for events in fresh.values() for ev in events))
        self.calendar()
        folded = {}
        for case_id, events in fresh.items():
            count, row = counts.get(case_id, 0), stored.get(case_id)
            chain = self._extend(case_id, events, count, row, written)
            if chain is not None:
                folded[case_id] = chain
        return folded

    def _extend(
        self,
        case_id: str,
        fresh: list[Event],
        count: int,
        row: tuple[Any, ...] | None,
        written: dict[Ref, str],
    ) -> list[Event] | None:
        texts = None
        if row is None:
            chain = chained(None, fresh) if count == len(fresh) else None
            state = fold(chain[:1], self.calendar()) if chain else None
            if chain is None or state is None:
                return None
            steps = chain[1:]
        else:
            known = _stored(row)
            if known.waiting or count != known.held + len(fresh):
                return None
            state, texts = known.state, known.texts
            chain = chained(state.tip, fresh)
            if chain is None:
                return None
            steps = chain
        for event in steps:
            step(state, event, self.calendar(), written)
        self.write(state, count, 0, texts)
        return chain


def recompute(store: LogStore, case_ids: Iterable[str]) -> None:
    """Refold each case from all its events and write its `cases` row."""
    _Writer(store).refold(list(case_ids))


def _override_years(body: Any) -> tuple[int, int] | None:
    """The first and last year a `calendar.override` body touches, or None if unreadable."""
    try:
        years = {int(y) for y in body.get("years", {})}
        years |= {int(d[:4]) for d in body.get("days", {})}
    except (AttributeError, TypeError, ValueError):
        return None
    return (min(years), max(years)) if years else None


class CaseProjection:
    """The store extension keeping `case_events` and `cases` (see the module doc)."""

    name = "cases"
    version = 1
    ddl = _DDL
    types: frozenset[str] | None = entries.TYPES | {CALENDAR_OVERRIDE}
    lazy = True

    def __init__(self) -> None:
        self._fresh: dict[str, list[Event]] = {}  # case id -> events applied, in order
        self._span: tuple[date, date] | None = None
        self._all_accepted = False
        # the cases the last flush folded on, each with its events in the order folded: an
        # extension flushing after this one in the same transaction may take that order
        # for its own (tiers.case_facts), as a refold would have given it
        self.folded_on: dict[str, list[Event]] = {}

    def apply(self, store: LogStore, entry: SignedEntry, fields: dict[str, Any]) -> None:
        body = fields["body"]
        if entry.type == CALENDAR_OVERRIDE:
            self._touch_calendar(body)
            return
        after = body.get("after") or (None, None)
        store.execute(
            "INSERT OR IGNORE INTO case_events (origin, seq, case_id, type, at, body, "
            "after_origin, after_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.origin, entry.seq, body["case_id"], entry.type, fields["at"],
                _text(body), after[0], after[1],
            ),
        )  # fmt: skip
        event = Event(entry.origin, entry.seq, entry.type, fields["at"], body)
        self._fresh.setdefault(body["case_id"], []).append(event)

    def _touch_calendar(self, body: Any) -> None:
        span = _override_years(body)
        if span is None:
            self._all_accepted = True
            return
        first, last = date(span[0], 1, 1), date(span[1], 12, 31)
        if self._span is not None:
            first, last = min(first, self._span[0]), max(last, self._span[1])
        self._span = (first, last)

    def _calendar_cases(self, store: LogStore) -> set[str]:
        """Cases whose deadline a calendar override in this transaction may move, and those
        with a 补正 notice before acceptance, whose lateness (第三十二条: accepted as of
        receipt) the fold judges on the calendar, accepted or not."""
        # JSON true: SQLite's json_extract gives 1, PostgreSQL's (sync.pg.dialect) 'true'
        noticed = (
            "CAST(json_extract(state, '$.supplement_before_acceptance') AS TEXT) IN ('1', 'true')"
        )
        if self._all_accepted:
            rows = store.query(
                f"SELECT case_id FROM cases WHERE accepted_at IS NOT NULL OR {noticed}"
            )
        elif self._span is not None:
            first, last = self._span
            rows = store.query(
                "SELECT case_id FROM cases WHERE accepted_on IS NOT NULL AND accepted_on <= ? "
                f"AND (deadline IS NULL OR deadline >= ?) OR {noticed} "
                "AND substr(received_at, 1, 10) <= ?",
                (last.isoformat(), first.isoformat(), last.isoformat()),
            )
        else:
            return set()
        return {r[0] for r in rows}

    def discard(self) -> None:
        self._fresh.clear()
        self.folded_on = {}
        self._span, self._all_accepted = None, False

    def flush(self, store: LogStore) -> None:
        writer = _Writer(store)
        refold = self._calendar_cases(store)
        fresh = {c: events for c, events in self._fresh.items() if c not in refold}
        self.folded_on = writer.advance(fresh) if fresh else {}
        refold |= fresh.keys() - self.folded_on.keys()
        writer.refold(sorted(refold))
        self._fresh.clear()
        self._span, self._all_accepted = None, False
