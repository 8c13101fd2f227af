"""Monthly reports (办件月报表, DESIGN §5): a town or village signs its figures into its log.

A report is one `report.monthly` entry whose body is
`{"period": "YYYY-MM", "scope": "node", "figures": {<every count of tiers.figures.Counts>},
"held": {origin: seq}}`: the counts of the reporting node's own work — the cases it
accepted, and those it received — exactly as `stats --by node` counts that node, and the
heads of its own subtree it held when it counted (so the city can tell a late log from a
wrong figure). Rates are not in the body: they follow from the counts.

Invariants: a report is computed from the entries held at the reporting node when it is
made, and appended in the same transaction, so the figures and `held` describe one state.
Only a finished month is reported. A node may correct a report by reporting the month
again; the latest seq for a period stands. Reporting unchanged figures appends nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sync.clock import local_date
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.entry import SignedEntry, register_body_check
from sync.protocol.errors import ReportError
from sync.protocol.ids import is_within, tier_of
from sync.store import Store
from tiers.calendar import WorkCalendar
from tiers.cases import entries as e
from tiers.cases.projection import load_case
from tiers.complaints.figures import add_complaints
from tiers.figures import (
    COUNT_FIELDS,
    FACT_COLUMNS,
    Counts,
    Facts,
    Period,
    derive,
    facts_of,
    node_key,
    parse_period,
    tally,
)
from tiers.published import work_calendar

REPORT_MONTHLY = "report.monthly"
SCOPE = "node"
_MONTH = re.compile(r"^\d{4}-\d{2}$")


@dataclass(frozen=True)
class Report:
    """A monthly report as held here: who, which entry, when, and what it stated."""

    origin: str
    seq: int
    at: str
    period: str
    counts: Counts
    held: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "node_id": self.origin,
            "seq": self.seq,
            "at": self.at,
            "period": self.period,
            "figures": derive(self.counts),
            "held": self.held,
        }


@dataclass(frozen=True)
class Submitted:
    """What `submit_monthly` did: the report standing now, and whether it appended it."""

    report: Report
    appended: bool

    def to_json(self) -> dict[str, Any]:
        return self.report.to_json() | {"appended": self.appended}


def report_period(text: str, today: date) -> Period:
    """The month to report: YYYY-MM only, and over by `today`."""
    period = parse_period(text)
    if not period.is_month:
        raise ReportError("report.month_only", value=text)
    if period.end >= today:
        raise ReportError("report.not_over", period=period.label, end=period.end.isoformat())
    return period


def own_counts(store: Store, node_id: str, period: Period, today: date) -> Counts:
    """The counts a report by `node_id` states: its row of `stats --by node`."""
    rows = node_counts(store, period, work_calendar(store), today)
    return rows.get(node_id, Counts())


def submit_monthly(node: Node, period_text: str, at: str | None = None) -> Submitted:
    """Count the node's own figures for a finished month and sign them into its log."""
    if tier_of(node.node_id) == "city":
        raise ReportError("report.city")
    today = node.clock.now().date()
    period = report_period(period_text, today)
    with node.store.transaction():
        counts = own_counts(node.store, node.node_id, period, today)
        standing = latest_reports(node.store, period.label).get(node.node_id)
        if standing is not None and standing.counts == counts:
            return Submitted(standing, appended=False)
        held = {o: s for o, (s, _) in node.store.heads().items() if is_within(o, node.node_id)}
        body = {"period": period.label, "scope": SCOPE, "figures": counts.to_body(), "held": held}
        entry = node.append(REPORT_MONTHLY, body, at=node.clock.stamp(at) if at else None)
    return Submitted(Report(node.node_id, entry.seq, entry.fields()["at"], period.label, counts,
                            held), appended=True)  # fmt: skip


def _report(origin: str, seq: int, at: str, text: str) -> Report:
    body = json.loads(text)
    return Report(origin, seq, at, body["period"], Counts.from_body(body["figures"]),
                  dict(body.get("held", {})))  # fmt: skip


def latest_reports(store: Store, period: str) -> dict[str, Report]:
    """The standing report of each node for `period` (its latest seq), by node id."""
    rows = store.query(
        "SELECT origin, seq, at, body FROM monthly_reports WHERE period = ? ORDER BY origin, seq",
        (period,),
    )
    return {origin: _report(origin, seq, at, body) for origin, seq, at, body in rows}


def reports_of(store: Store, origin: str) -> list[Report]:
    """Every report `origin` made that is held here, oldest first."""
    rows = store.query(
        "SELECT origin, seq, at, body FROM monthly_reports WHERE origin = ? ORDER BY seq",
        (origin,),
    )
    return [_report(*row) for row in rows]


def node_counts(store: Store, period: Period, cal: WorkCalendar, today: date) -> dict[str, Counts]:
    """Every node's counts for `period` from the entries held here (what a report states)."""
    rows = tally(load_facts(store, period), period, cal, today, node_key)
    add_complaints(rows, store, period, "node")
    return rows


# --- the projection -------------------------------------------------------------------------

_DDL = """
CREATE TABLE IF NOT EXISTS case_figures (
    case_id TEXT PRIMARY KEY, origin TEXT NOT NULL, node TEXT, item_code TEXT NOT NULL,
    received_on TEXT NOT NULL, accepted_on TEXT, promised_days INTEGER, completed_on TEXT,
    ended_on TEXT, pauses TEXT NOT NULL, extensions TEXT NOT NULL, rating INTEGER,
    rated_on TEXT, fee_fen INTEGER, fee_on TEXT, paid_fen INTEGER, paid_on TEXT,
    events INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS case_figures_received ON case_figures (received_on);
CREATE INDEX IF NOT EXISTS case_figures_accepted ON case_figures (accepted_on);
CREATE INDEX IF NOT EXISTS case_figures_ended_accepted ON case_figures (ended_on, accepted_on);
CREATE INDEX IF NOT EXISTS case_figures_rated ON case_figures (rated_on);
CREATE INDEX IF NOT EXISTS case_figures_fee ON case_figures (fee_on);
CREATE INDEX IF NOT EXISTS case_figures_paid ON case_figures (paid_on);
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
"""
_UPSERT = (
    f"INSERT OR REPLACE INTO case_figures ({', '.join(FACT_COLUMNS)}, events) "
    f"VALUES ({', '.join('?' for _ in FACT_COLUMNS)}, ?)"
)


_PAUSES, _EXTENSIONS = FACT_COLUMNS.index("pauses"), FACT_COLUMNS.index("extensions")


def _pairs_text(pairs: tuple[Any, ...]) -> str:
    return json.dumps(pairs) if pairs else "[]"


def _row(f: Facts) -> tuple[Any, ...]:
    values = [getattr(f, name) for name in FACT_COLUMNS]
    values[_PAUSES] = _pairs_text(f.pauses)
    values[_EXTENSIONS] = _pairs_text(f.extensions)
    return tuple(values)


def _pairs(text: str) -> tuple[Any, ...]:
    return () if text == "[]" else tuple(tuple(pair) for pair in json.loads(text))


def _facts(row: tuple[Any, ...]) -> Facts:
    values = list(row)
    values[_PAUSES] = _pairs(values[_PAUSES])
    values[_EXTENSIONS] = _pairs(values[_EXTENSIONS])
    return Facts(*values)


def load_facts(store: Store, period: Period) -> list[Facts]:
    """Every case with something to count in `period`: received, accepted, ended, rated or
    charged in it, or accepted before it and not ended before it. Each term of the query
    has an index, so a month costs what it holds, not what the year holds."""
    sql = (
        f"SELECT {', '.join(FACT_COLUMNS)} FROM case_figures WHERE "
        "received_on BETWEEN :s AND :e OR accepted_on BETWEEN :s AND :e "
        "OR ended_on BETWEEN :s AND :e OR (ended_on > :e AND accepted_on < :s) "
        "OR (ended_on IS NULL AND accepted_on < :s) "
        "OR rated_on BETWEEN :s AND :e OR fee_on BETWEEN :s AND :e OR paid_on BETWEEN :s AND :e"
    )
    rows = store.query(sql, {"s": period.start.isoformat(), "e": period.end.isoformat()})
    return [_facts(r) for r in rows]


def _refresh(store: Store, case_ids: Iterable[str]) -> None:
    """Refold each case into its `case_figures` row and its `case_gaps` (events waiting for
    an `after` that is not held here: evidence that part of some log is missing)."""
    for case_id in case_ids:
        folded = load_case(store, case_id)
        if folded.state is None:
            store.execute("DELETE FROM case_figures WHERE case_id = ?", (case_id,))
        else:
            # The events its facts account for; -1 while some wait, so `_advance` refolds.
            known = -1 if folded.waiting else len(folded.ordered)
            store.execute(_UPSERT, (*_row(facts_of(folded.state)), known))
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


def _day(stamp: str | None) -> str | None:
    return local_date(stamp).isoformat() if stamp else None


_ONCE = (e.RATED, e.FEE_ASSESSED, e.FEE_PAID)


_FACT_SOURCES = (
    "SELECT c.case_id, c.origin, c.accepted_by, c.item_code, c.received_at, c.accepted_at, "
    "c.promised_days, c.completed_at, c.closed_at, c.pauses, c.rating, c.fee_fen, c.held, "
    "c.waiting, c.violations, f.events, f.extensions, f.rated_on, f.fee_on, f.paid_fen, "
    "f.paid_on FROM cases c LEFT JOIN case_figures f USING (case_id) "
    "WHERE c.case_id IN (SELECT value FROM json_each(?))"
)


def _advance(store: Store, fresh: dict[str, list[tuple[str, str, dict[str, Any]]]]) -> set[str]:
    """Bring each case's facts up to date without refolding it: from the `cases` row the case
    projection has just written (it flushes first) and the fresh events' own dates; the
    cases this could not do, for the caller to refold.

    Exact, not a guess: only when the stored facts account for every event held but the
    fresh ones (the counts prove it; an event that waited is never counted as accounted
    for) and all of them took effect (none waits, none was refused); else the caller
    refolds the case, as `facts_of` on its fold would give.
    """
    ids = json.dumps(sorted(fresh))
    done = set()
    for row in store.query(_FACT_SOURCES, (ids,)):
        facts = _advanced(row, fresh[row[0]])
        if facts is not None:
            store.execute(_UPSERT, (*_row(facts), row[12]))
            done.add(row[0])
    if done:
        store.execute(
            "DELETE FROM case_gaps WHERE case_id IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(done)),),
        )
    return set(fresh) - done


def _advanced(row: tuple[Any, ...], fresh: list[tuple[str, str, dict[str, Any]]]) -> Facts | None:
    """The facts of one case from its `cases` row and fresh events, or None (see `_advance`)."""
    (case_id, origin, by, item, received, accepted, promised, completed, closed, pauses, rating,
     fee, held, waiting, violations, known, extensions, rated_on, fee_on, paid_fen,
     paid_on) = row  # fmt: skip
    kinds = [kind for kind, _, _ in fresh]
    if waiting or violations != "[]" or (known or 0) + len(fresh) != held:
        return None
    if any(kinds.count(kind) > 1 for kind in _ONCE):
        return None
    added = list(_pairs(extensions or "[]"))
    for kind, at, body in fresh:
        if kind == e.EXTENDED:
            added.append((local_date(at).isoformat(), int(body["days"])))
        elif kind == e.RATED:
            rated_on = _day(at)
        elif kind == e.FEE_ASSESSED:
            fee_on = _day(at)
        elif kind == e.FEE_PAID:
            paid_on, paid_fen = _day(at), int(body["fee_fen"])
    done = _day(completed)
    return Facts(
        case_id, origin, by, item, local_date(received).isoformat(), _day(accepted), promised,
        done, done or _day(closed),
        tuple((local_date(a).isoformat(), _day(b)) for a, b in _pairs(pauses)),
        tuple(added), rating, rated_on, fee, fee_on, paid_fen, paid_on,
    )  # fmt: skip


def backfill(store: Store) -> int:
    """Fill `case_figures` for cases projected before this projection existed (a home made
    by an earlier zhibao); the number of cases filled in."""
    counts = store.query("SELECT (SELECT COUNT(*) FROM cases), (SELECT COUNT(*) FROM case_figures)")
    if counts[0][0] == counts[0][1]:
        return 0
    rows = store.query(
        "SELECT case_id FROM cases WHERE case_id NOT IN (SELECT case_id FROM case_figures)"
    )
    with store.transaction():
        _refresh(store, [r[0] for r in rows])
    return len(rows)


class FigureProjection:
    """Store extension keeping `case_figures`, `case_gaps`, `monthly_reports` and
    `clock_leads`.

    `clock_leads` keeps, per origin and month of arrival, the entry whose `at` lay furthest
    ahead of the time it was stored here: a clock running fast (reconciliation's clock_skew).
    It must come after `CaseProjection` in `tiers.node.extensions()`: its flush reads the
    `cases` rows that one has just brought up to date.
    """

    ddl = _DDL
    types: frozenset[str] | None = None
    lazy = True

    def __init__(self) -> None:
        self._fresh: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
        self._latest: dict[str, tuple[datetime, int, str]] = {}

    def apply(self, store: Store, entry: SignedEntry, fields: dict[str, Any]) -> None:
        at = fields["at"]
        moment = datetime.fromisoformat(at)
        held = self._latest.get(entry.origin)
        if held is None or moment > held[0]:
            self._latest[entry.origin] = (moment, entry.seq, at)
        if entry.type in e.TYPES:
            body = fields["body"]
            self._fresh.setdefault(body["case_id"], []).append((entry.type, at, body))
        elif entry.type == REPORT_MONTHLY:
            body = fields["body"]
            store.execute(
                "INSERT OR IGNORE INTO monthly_reports (origin, seq, period, at, body) "
                "VALUES (?, ?, ?, ?, ?)",
                (entry.origin, entry.seq, body["period"], at, json.dumps(body)),
            )

    def discard(self) -> None:
        self._fresh.clear()
        self._latest.clear()

    def flush(self, store: Store) -> None:
        refold = _advance(store, self._fresh) if self._fresh else set()
        _refresh(store, sorted(refold))
        self._fresh.clear()
        for origin, (moment, seq, at) in self._latest.items():
            rows = store.query(
                "SELECT received_at FROM entries WHERE origin = ? AND seq = ?", (origin, seq)
            )
            if not rows:
                continue
            received = rows[0][0]
            lead = int((moment - datetime.fromisoformat(received)).total_seconds())
            store.execute(
                "INSERT INTO clock_leads (origin, month, lead_seconds, seq, at, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(origin, month) DO UPDATE SET "
                "lead_seconds = excluded.lead_seconds, seq = excluded.seq, at = excluded.at, "
                "received_at = excluded.received_at WHERE excluded.lead_seconds > lead_seconds",
                (origin, local_date(received).strftime("%Y-%m"), lead, seq, at, received),
            )
        self._latest.clear()


def _check_report_body(body: dict[str, Any]) -> None:
    """A `report.monthly` body: period (YYYY-MM), scope, and every count as an integer ≥ 0."""
    period = body.get("period")
    if not isinstance(period, str) or not _MONTH.match(period):
        raise ValueError("period must be YYYY-MM")
    if body.get("scope") != SCOPE:
        raise ValueError(f"scope must be {SCOPE}")
    counts = body.get("figures")
    if not isinstance(counts, dict) or set(counts) != set(COUNT_FIELDS):
        raise ValueError("figures must hold exactly the report's counts")
    for name, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"figures.{name} must be a whole number of at least 0")
    held = body.get("held", {})
    if not isinstance(held, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in held.values()
    ):
        raise ValueError("held must map origins to seqs")


register_body_check(REPORT_MONTHLY, _check_report_body)


i18n.register(
    {
        "report.city": (
            "The city does not report to anyone: run `zhibao reconcile` to check the reports.",
            "市级节点无需报送月报：请运行 `zhibao reconcile` 核对各中心的报表。",
        ),
        "report.month_only": (
            "A monthly report covers one month: use --period YYYY-MM, not {value}.",
            "月报只能按月报送：请用 --period YYYY-MM，而不是 {value}。",
        ),
        "report.not_over": (
            "{period} is not over yet (it ends {end}); report it once the month has ended.",
            "{period} 尚未结束（截至 {end}），请在月末之后报送。",
        ),
    }
)
