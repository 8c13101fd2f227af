"""The facts of every case, kept current as entries are applied (`FigureProjection`), and
the monthly reports held (`monthly_reports`): what `tiers.figures.per_case` counts from.

`case_facts` holds one row of `tiers.figures.Facts` per case; a period's statistics read the
rows of the cases with something in the period (`load_facts`). `case_gaps` lists events
waiting for an entry not held here; `clock_leads` the entries stamped furthest ahead of
their arrival. Invariant: a row equals `facts_of` on the case's fold (a test checks it at
every node, in any order of arrival).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sync.clock import local_date, local_day
from sync.logstore import LogStore
from sync.protocol.entry import SignedEntry
from tiers.cases import entries as e
from tiers.cases.order import Event
from tiers.cases.projection import CaseProjection, load_cases
from tiers.figures import COUNT_FIELDS, FACT_COLUMNS, Dated, Facts, Period, dated, facts_of
from tiers.steps import Step, advance

REPORT_MONTHLY = "report.monthly"
NAME = "case_facts"
# meta: the mark of the last flush that wrote facts; each row's `changed` is its flush's
# mark (tiers.figure_cells counts a month again from the cases changed since its own)
MARK = "figures.mark"
MARK_COLUMN = "changed"
CELL_COUNTS = COUNT_FIELDS  # the columns of `figure_cells`, as `tiers.figures.Counts` names them

_DDL = (
    """
DROP TABLE IF EXISTS case_figures;  -- the facts table before 环节 (steps): refilled by backfill
CREATE TABLE IF NOT EXISTS case_facts (
    case_id TEXT PRIMARY KEY, origin TEXT NOT NULL, node TEXT, item_code TEXT NOT NULL,
    received_on TEXT NOT NULL, accepted_on TEXT, promised_days INTEGER, completed_on TEXT,
    ended_on TEXT, pauses TEXT NOT NULL, extensions TEXT NOT NULL, rating INTEGER,
    rated_on TEXT, fee_fen INTEGER, fee_on TEXT, paid_fen INTEGER, paid_on TEXT,
    steps TEXT NOT NULL, events INTEGER NOT NULL, changed INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS case_facts_changed ON case_facts (changed);
CREATE INDEX IF NOT EXISTS case_facts_received ON case_facts (received_on);
CREATE INDEX IF NOT EXISTS case_facts_accepted ON case_facts (accepted_on);
CREATE INDEX IF NOT EXISTS case_facts_ended_accepted ON case_facts (ended_on, accepted_on);
CREATE INDEX IF NOT EXISTS case_facts_rated ON case_facts (rated_on);
CREATE INDEX IF NOT EXISTS case_facts_fee ON case_facts (fee_on);
CREATE INDEX IF NOT EXISTS case_facts_paid ON case_facts (paid_on);
CREATE TABLE IF NOT EXISTS case_gaps (
    case_id TEXT NOT NULL, origin TEXT NOT NULL, seq INTEGER NOT NULL, at TEXT NOT NULL,
    after_origin TEXT NOT NULL, after_seq INTEGER NOT NULL, PRIMARY KEY (case_id, origin, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS monthly_reports (
    origin TEXT NOT NULL, seq INTEGER NOT NULL, period TEXT NOT NULL, at TEXT NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (origin, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS monthly_reports_period ON monthly_reports (period, origin);
CREATE TABLE IF NOT EXISTS clock_leads (
    origin TEXT NOT NULL, month TEXT NOT NULL, lead_seconds INTEGER NOT NULL,
    seq INTEGER NOT NULL, at TEXT NOT NULL, received_at TEXT NOT NULL,
    PRIMARY KEY (origin, month)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS figure_periods (
    period TEXT PRIMARY KEY, as_of TEXT NOT NULL, basis TEXT NOT NULL, mark INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS figure_cells (
    period TEXT NOT NULL, case_id TEXT NOT NULL, node TEXT NOT NULL, item TEXT NOT NULL,
    years TEXT NOT NULL, """
    + ", ".join(f"{c} INTEGER NOT NULL" for c in CELL_COUNTS)
    + """,
    PRIMARY KEY (period, case_id, node)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS figure_cells_case ON figure_cells (case_id);
"""
)
_UPSERT = (
    f"INSERT OR REPLACE INTO case_facts ({', '.join(FACT_COLUMNS)}, events, changed) "
    f"VALUES ({', '.join('?' for _ in FACT_COLUMNS)}, ?, ?)"
)


_PAUSES, _EXTENSIONS = FACT_COLUMNS.index("pauses"), FACT_COLUMNS.index("extensions")
_STEPS = FACT_COLUMNS.index("steps")


def _pairs_text(pairs: tuple[Any, ...]) -> str:
    return json.dumps(pairs) if pairs else "[]"


def _row(f: Facts) -> tuple[Any, ...]:
    values = [getattr(f, name) for name in FACT_COLUMNS]
    values[_PAUSES] = _pairs_text(f.pauses)
    values[_EXTENSIONS] = _pairs_text(f.extensions)
    values[_STEPS] = json.dumps(f.steps)
    return tuple(values)


def _pairs(text: str) -> tuple[Any, ...]:
    return () if text == "[]" else tuple(tuple(pair) for pair in json.loads(text))


def facts_from_row(row: tuple[Any, ...]) -> Facts:
    """`Facts` from a `case_facts` row's FACT_COLUMNS."""
    values = list(row)
    values[_PAUSES] = _pairs(values[_PAUSES])
    values[_EXTENSIONS] = _pairs(values[_EXTENSIONS])
    values[_STEPS] = tuple(tuple(step) for step in json.loads(values[_STEPS]))
    return Facts(*values)


# The rows a period's figures are counted from (`:s`, `:e`: its first and last day, ISO);
# tiers.desk.figures asks which cases are among them. `+received_on`: the cases open across
# the period are found by `ended_on > :e` (those ended since, or still open), not by every
# case received before it, so a recent month costs what happened since, not all history
# (at a 1M-entry city: this month 0.7 s -> 0.005 s, December 1.2 s -> 0.5-0.7 s).
FACTS_WHERE = (
    "received_on BETWEEN :s AND :e OR accepted_on BETWEEN :s AND :e "
    "OR ended_on BETWEEN :s AND :e OR (ended_on > :e AND +received_on < :s) "
    "OR (ended_on IS NULL AND received_on < :s) "
    "OR rated_on BETWEEN :s AND :e OR fee_on BETWEEN :s AND :e OR paid_on BETWEEN :s AND :e"
)


def load_facts(store: LogStore, period: Period) -> list[Facts]:
    """Every case with something to count in `period`: received, accepted, ended, rated or
    charged in it, or received before it and not ended before it (a step may end in it).
    Each term of the query has an index, so a month costs what it holds, not the year."""
    sql = f"SELECT {', '.join(FACT_COLUMNS)} FROM case_facts WHERE {FACTS_WHERE}"
    rows = store.query(sql, {"s": period.start.isoformat(), "e": period.end.isoformat()})
    return [facts_from_row(r) for r in rows]


def next_mark(store: LogStore) -> int:
    """A new mark for the facts rows a flush writes (`MARK`; under the write lock)."""
    rows = store.query("SELECT value FROM meta WHERE key = ?", (MARK,))
    mark = (int(rows[0][0]) if rows else 0) + 1
    store.set_meta(MARK, str(mark))
    return mark


def _refresh(store: LogStore, case_ids: Iterable[str], mark: int) -> None:
    """Refold each case into its `case_facts` row and its `case_gaps` (events waiting for
    an `after` that is not held here: evidence that part of some log is missing); a case
    that is gone takes its kept figures (`figure_cells`) with it."""
    for case_id, folded in load_cases(store, list(case_ids)):
        if folded.state is None:
            store.execute("DELETE FROM case_facts WHERE case_id = ?", (case_id,))
            store.execute("DELETE FROM figure_cells WHERE case_id = ?", (case_id,))
        else:
            # The events its facts account for; -1 while some wait, so `_advance` refolds.
            known = -1 if folded.waiting else len(folded.ordered)
            store.execute(_UPSERT, (*_row(facts_of(folded.state)), known, mark))
        store.execute("DELETE FROM case_gaps WHERE case_id = ?", (case_id,))
        if not folded.waiting:
            continue
        held = {ev.ref for ev in folded.ordered} | {ev.ref for ev in folded.waiting}
        for ev in folded.waiting:
            after = ev.after
            if after is not None and after not in held:
                store.execute(
                    "INSERT OR IGNORE INTO case_gaps (case_id, origin, seq, at, after_origin, "
                    "after_seq) VALUES (?, ?, ?, ?, ?, ?)",
                    (case_id, ev.origin, ev.seq, ev.at, after[0], after[1]),
                )


_ONCE = (e.RATED, e.FEE_ASSESSED, e.FEE_PAID)
_CUSTODY = frozenset({e.FORWARDED, e.TAKEN, e.COMPLETED, e.REJECTED, e.WITHDRAWN})


_FACT_SOURCES = (
    "SELECT c.case_id, c.origin, c.accepted_by, c.item_code, c.received_at, c.accepted_at, "
    "c.promised_days, c.completed_at, c.closed_at, c.pauses, c.rating, c.fee_fen, c.held, "
    "c.waiting, c.violations, f.events, f.extensions, f.rated_on, f.fee_on, f.paid_fen, "
    "f.paid_on, f.steps FROM cases c LEFT JOIN case_facts f USING (case_id) "
    "WHERE c.case_id IN (SELECT value FROM json_each(?))"
)


def _advance(
    store: LogStore,
    fresh: dict[str, list[Event]],
    mark: int,
    folded: Mapping[str, list[Event]],
) -> set[str]:
    """Bring each case's facts up to date without refolding it: from the `cases` row the case
    projection has just written (it flushes first) and the fresh events' own dates; the
    cases this could not do, for the caller to refold.

    Exact, not a guess: only when the stored facts account for every event held but the
    fresh ones (the counts prove it; an event that waited is never counted as accounted
    for) and all of them took effect (none waits, none was refused); else the caller
    refolds the case, as `facts_of` on its fold would give. The fresh events are taken in
    the order the case projection folded them on in, where it did (`folded`: its
    `folded_on`, for the same events); else in the order applied, but then more than one
    custody move (the steps follow them in the fold's order) makes it refold.
    """
    ids = json.dumps(sorted(fresh))
    done = set()
    for row in store.query(_FACT_SOURCES, (ids,)):
        facts = _advanced(row, fresh[row[0]], folded.get(row[0]))
        if facts is not None:
            store.execute(_UPSERT, (*_row(facts), row[12], mark))
            done.add(row[0])
    if done:
        store.execute(
            "DELETE FROM case_gaps WHERE case_id IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(done)),),
        )
    return set(fresh) - done


def _advanced(row: tuple[Any, ...], fresh: list[Event], folded: list[Event] | None) -> Facts | None:
    """The facts of one case from its `cases` row and fresh events (`folded`: the same, in
    the order the case projection folded them on, if it did), or None (see `_advance`)."""
    (case_id, origin, by, item, received, accepted, promised, completed, closed, pauses, rating,
     fee, held, waiting, violations, known, extensions, rated_on, fee_on, paid_fen,
     paid_on, steps_text) = row  # fmt: skip
    kinds = [ev.type for ev in fresh]
    if waiting or violations != "[]" or (known or 0) + len(fresh) != held:
        return None
    if any(kinds.count(kind) > 1 for kind in _ONCE):
        return None
    if folded is not None and sorted(ev.ref for ev in folded) == sorted(ev.ref for ev in fresh):
        fresh = folded  # the fold's order (a refold lists extensions in it too)
    elif sum(kind in _CUSTODY for kind in kinds) > 1:  # their order is the fold's
        return None
    steps: list[Step] = (
        [tuple(step) for step in json.loads(steps_text)]
        if steps_text is not None else [(origin, local_day(received), None, "")]
    )  # fmt: skip
    for ev in fresh:
        if ev.type in _CUSTODY:
            advance(steps, ev.type, ev.at, ev.origin)
    got = dated(fresh, Dated(_pairs(extensions or "[]"), rated_on, fee_on, paid_fen, paid_on))
    done = local_day(completed)
    return Facts(
        case_id, origin, by, item, local_day(received), local_day(accepted), promised,
        done, done or local_day(closed),
        tuple((local_day(a), local_day(b)) for a, b in _pairs(pauses)),
        got.extensions, rating, got.rated_on, fee, got.fee_on, got.paid_fen, got.paid_on,
        tuple(steps),
    )  # fmt: skip


def backfill(store: LogStore) -> int:
    """Fill `case_facts` for cases projected before this projection existed (a home made
    by an earlier zhibao); the number of cases filled in."""
    counts = store.query("SELECT (SELECT COUNT(*) FROM cases), (SELECT COUNT(*) FROM case_facts)")
    if counts[0][0] == counts[0][1]:
        return 0
    rows = store.query(
        "SELECT case_id FROM cases WHERE case_id NOT IN (SELECT case_id FROM case_facts)"
    )
    with store.transaction():
        _refresh(store, [r[0] for r in rows], next_mark(store))
    return len(rows)


class FigureProjection:
    """Store extension keeping `case_facts`, `case_gaps`, `monthly_reports` and
    `clock_leads`.

    `clock_leads` keeps, per origin and month of arrival, the entry whose `at` lay furthest
    ahead of the time it was stored here: a clock running fast (reconciliation's clock_skew).
    It must come after `CaseProjection` in `tiers.node.extensions()`: its flush reads the
    `cases` rows that one has just brought up to date, and the order it folded cases on in
    (given `cases`: its `folded_on`).
    """

    name = NAME
    version = 2
    ddl = _DDL
    # 2: `changed` marks and the kept month figures (tiers.figure_cells); the tables are new
    steps = MappingProxyType({2: "ALTER TABLE case_facts ADD COLUMN changed INTEGER NOT NULL "
                                 "DEFAULT 0"})  # fmt: skip
    types: frozenset[str] | None = None
    lazy = True

    def __init__(self, cases: CaseProjection | None = None) -> None:
        self._cases = cases  # flushed just before this one: the order it folded cases on in
        self._fresh: dict[str, list[Event]] = {}  # case id -> its events applied
        self._stamped: dict[str, dict[int, tuple[datetime, str]]] = {}  # origin: seq: `at`

    def apply(self, store: LogStore, entry: SignedEntry, fields: dict[str, Any]) -> None:
        at = fields["at"]
        self._stamped.setdefault(entry.origin, {})[entry.seq] = (datetime.fromisoformat(at), at)
        if entry.type in e.TYPES:
            body = fields["body"]
            event = Event(entry.origin, entry.seq, entry.type, at, body)
            self._fresh.setdefault(body["case_id"], []).append(event)
        elif entry.type == REPORT_MONTHLY:
            body = fields["body"]
            store.execute(
                "INSERT OR IGNORE INTO monthly_reports (origin, seq, period, at, body) "
                "VALUES (?, ?, ?, ?, ?)",
                (entry.origin, entry.seq, body["period"], at, json.dumps(body)),
            )

    def discard(self) -> None:
        self._fresh.clear()
        self._stamped.clear()

    def flush(self, store: LogStore) -> None:
        folded: dict[str, list[Event]] = {}
        if self._cases is not None:  # taken at every flush: this one's, never a later one's
            folded, self._cases.folded_on = self._cases.folded_on, {}
        if self._fresh:
            mark = next_mark(store)
            _refresh(store, sorted(_advance(store, self._fresh, mark, folded)), mark)
        self._fresh.clear()
        for origin, stamped in self._stamped.items():
            for month, lead, seq, at, received in _leads(store, origin, stamped):
                store.execute(
                    "INSERT INTO clock_leads (origin, month, lead_seconds, seq, at, received_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(origin, month) DO UPDATE SET "
                    "lead_seconds = excluded.lead_seconds, seq = excluded.seq, at = excluded.at, "
                    "received_at = excluded.received_at "
                    "WHERE excluded.lead_seconds > clock_leads.lead_seconds",
                    (origin, month, lead, seq, at, received),
                )
        self._stamped.clear()


def _leads(
    store: LogStore, origin: str, stamped: dict[int, tuple[datetime, str]]
) -> list[tuple[str, int, int, str, str]]:
    """Per month of arrival, the entry of `stamped` (seq: its `at`, parsed and as written)
    furthest ahead of its arrival: (month, lead in seconds, seq, at, received_at); the first
    such entry where several are.
    Each entry is weighed, not only the latest stamped: the entries of one flush may have
    arrived at different times (a catch-up over several pushes), and clock_leads must not
    depend on how they were grouped."""
    best: dict[str, tuple[int, int, str, str]] = {}  # month: lead, seq, at, received_at
    arrivals: dict[str, tuple[datetime, str]] = {}  # received_at: its moment and month
    for seq, received in store.query(
        "SELECT seq, received_at FROM entries WHERE origin = ? AND seq >= ? AND seq <= ? "
        "ORDER BY seq", (origin, min(stamped), max(stamped))
    ):  # fmt: skip
        held = stamped.get(seq)
        if held is None:  # set aside (quarantined): not shown
            continue
        moment, at = held
        arrival = arrivals.get(received)
        if arrival is None:
            arrival = arrivals[received] = (
                datetime.fromisoformat(received), local_date(received).strftime("%Y-%m")
            )  # fmt: skip
        lead = int((moment - arrival[0]).total_seconds())
        kept = best.get(arrival[1])
        if kept is None or lead > kept[0]:
            best[arrival[1]] = (lead, seq, at, received)
    return [(month, *kept) for month, kept in best.items()]
