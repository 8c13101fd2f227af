"""Monthly reports (办件月报表, DESIGN §5): a town or village signs its figures into its log.

A report is one `report.monthly` entry whose body is
`{"period": "YYYY-MM", "scope": "node", "figures": {<every count of tiers.figures.Counts>},
"held": {origin: seq}, "parts": {"item": {code: {count: n}}, "kind": {kind: {count: n}}}}`:
the counts of the reporting node's own work — the cases it accepted, those it received or
rejected, its own steps (环节) — exactly as `stats --by node` counts that node, the same split
by item and by kind (`tiers.report_parts`), and the heads of its own subtree it held when
it counted (so the city can tell a late log from a wrong figure). Rates are not in the
body: they follow from the counts. Reports signed before `parts` and the newer counts
existed state only `LEGACY_FIELDS`; they stay valid, and are compared on what they state.

Invariants: a report is computed from the entries held at the reporting node when it is
made, and appended in the same transaction, so the figures and `held` describe one state.
Only a finished month is reported. A node may correct a report by reporting the month
again; the latest seq for a period stands. Reporting unchanged figures appends nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sync.logstore import LogStore
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.entry import register_body_check
from sync.protocol.errors import ReportError
from sync.protocol.ids import is_within, tier_of
from tiers import report_parts as parts_
from tiers.calendar import WorkCalendar
from tiers.case_facts import (  # noqa: F401  (FigureProjection: tiers.node lists it here)
    REPORT_MONTHLY,
    FigureProjection,
    backfill,
    load_facts,
)
from tiers.complaints.figures import add_complaints, complaint_parts
from tiers.figure_cells import period_cells
from tiers.figures import (
    COUNT_FIELDS,
    LEGACY_FIELDS,
    Counts,
    Period,
    derive,
    node_key,
    parse_period,
    regroup,
)
from tiers.published import list_items, work_calendar

SCOPE = "node"
_MONTH = re.compile(r"^\d{4}-\d{2}$")
_COUNT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Report:
    """A monthly report as held here: who, which entry, when, and what it stated."""

    origin: str
    seq: int
    at: str
    period: str
    counts: Counts
    held: dict[str, int]
    stated: frozenset[str] = frozenset(COUNT_FIELDS)  # the counts the report states
    parts: dict[str, parts_.Rows] = field(default_factory=dict)  # as the body carries them

    def to_json(self) -> dict[str, Any]:
        return {
            "node_id": self.origin,
            "seq": self.seq,
            "at": self.at,
            "period": self.period,
            "figures": derive(self.counts),
            "held": self.held,
            "parts": {
                part: {key: derive(Counts.from_body(row)) for key, row in rows.items()}
                for part, rows in self.parts.items()
            },
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


def own_counts(store: LogStore, node_id: str, period: Period, today: date) -> Counts:
    """The counts a report by `node_id` states: its row of `stats --by node`."""
    rows = node_counts(store, period, work_calendar(store), today)
    return rows.get(node_id, Counts())


def own_parts_all(
    store: LogStore, period: Period, today: date
) -> dict[str, dict[str, dict[str, Counts]]]:
    """Every node's parts for `period` from the entries held here (what its report carries)."""
    items = {item.code: item for item in list_items(store)}
    cells, _ = period_cells(store, period, today, work_calendar(store), items)
    computed = parts_.computed_parts(cells, items)
    _add_complaint_parts(computed, store, period)
    return computed


def own_parts(store: LogStore, node_id: str, period: Period, today: date) -> dict[str, parts_.Rows]:
    """The parts a report by `node_id` carries (`tiers.report_parts`), as body rows."""
    items = {item.code: item for item in list_items(store)}
    cells, _ = period_cells(store, period, today, work_calendar(store), items)
    computed = parts_.computed_parts(cells, items, node_id)
    _add_complaint_parts(computed, store, period, node_id)
    return parts_.to_body(computed.get(node_id, {}))


def _add_complaint_parts(
    computed: dict[str, dict[str, dict[str, Counts]]], store: LogStore, period: Period,
    only: str | None = None,
) -> None:  # fmt: skip
    """Complaints count in the total (`node_counts`), so in every part too, under the keys
    `stats --by item|kind` gives them (the case's item, else `?`)."""
    for part in parts_.PARTS:
        for subject, rows in complaint_parts(store, period, part).items():
            if only is not None and subject != only:
                continue
            target = computed.setdefault(subject, {}).setdefault(part, {})
            for key, counts in rows.items():
                target.setdefault(key, Counts()).add(counts)


def submit_monthly(node: Node, period_text: str, at: str | None = None) -> Submitted:
    """Count the node's own figures for a finished month and sign them into its log."""
    if tier_of(node.node_id) == "city":
        raise ReportError("report.city")
    today = node.clock.now().date()
    period = report_period(period_text, today)
    backfill(node.store)  # a home made by an earlier zhibao
    with node.store.transaction():
        counts = own_counts(node.store, node.node_id, period, today)
        parts = own_parts(node.store, node.node_id, period, today)
        standing = latest_reports(node.store, period.label).get(node.node_id)
        if (standing is not None and standing.counts == counts and standing.parts == parts
                and standing.stated == frozenset(COUNT_FIELDS)):  # fmt: skip
            return Submitted(standing, appended=False)
        held = {o: s for o, (s, _) in node.store.heads().items() if is_within(o, node.node_id)}
        body = {"period": period.label, "scope": SCOPE, "figures": counts.to_body(), "held": held,
                "parts": parts}  # fmt: skip
        entry = node.append(REPORT_MONTHLY, body, at=node.clock.stamp(at) if at else None)
    return Submitted(Report(node.node_id, entry.seq, entry.fields()["at"], period.label, counts,
                            held, frozenset(COUNT_FIELDS), parts), appended=True)  # fmt: skip


def _report(origin: str, seq: int, at: str, text: str) -> Report:
    body = json.loads(text)
    figures = body["figures"]
    return Report(origin, seq, at, body["period"], Counts.from_body(figures),
                  dict(body.get("held", {})), Counts.stated_in(figures),
                  dict(body.get("parts", {})))  # fmt: skip


def latest_reports(store: LogStore, period: str) -> dict[str, Report]:
    """The standing report of each node for `period` (its latest seq), by node id."""
    rows = store.query(
        "SELECT origin, seq, at, body FROM monthly_reports WHERE period = ? ORDER BY origin, seq",
        (period,),
    )
    return {origin: _report(origin, seq, at, body) for origin, seq, at, body in rows}


def reports_of(store: LogStore, origin: str) -> list[Report]:
    """Every report `origin` made that is held here, oldest first."""
    rows = store.query(
        "SELECT origin, seq, at, body FROM monthly_reports WHERE origin = ? ORDER BY seq",
        (origin,),
    )
    return [_report(*row) for row in rows]


def node_counts(
    store: LogStore, period: Period, cal: WorkCalendar, today: date
) -> dict[str, Counts]:
    """Every node's counts for `period` from the entries held here (what a report states)."""
    items = {item.code: item for item in list_items(store)}
    rows = regroup(period_cells(store, period, today, cal, items)[0], node_key)
    add_complaints(rows, store, period, "node")
    return rows


def _count(where: str, name: Any, value: Any) -> None:
    if not isinstance(name, str) or not _COUNT_NAME.match(name):
        raise ValueError(f"{where} must name counts in snake_case")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{where}.{name} must be a whole number of at least 0")


def _check_report_body(body: dict[str, Any]) -> None:
    """A `report.monthly` body: period (YYYY-MM), scope, every count of the first report
    format (`LEGACY_FIELDS`) and any newer ones as integers ≥ 0, optional `parts`.

    Counts a later zhibao adds are let through (snake_case names, integers ≥ 0) and
    ignored here, so a town that upgrades before its city does not break its log there;
    reconciliation compares only the counts a report states."""
    period = body.get("period")
    if not isinstance(period, str) or not _MONTH.match(period):
        raise ValueError("period must be YYYY-MM")
    if body.get("scope") != SCOPE:
        raise ValueError(f"scope must be {SCOPE}")
    counts = body.get("figures")
    if not isinstance(counts, dict) or not set(LEGACY_FIELDS) <= set(counts):
        raise ValueError("figures must hold every count of the report")
    for name, value in counts.items():
        _count("figures", name, value)
    held = body.get("held", {})
    if not isinstance(held, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in held.values()
    ):
        raise ValueError("held must map origins to seqs")
    if "parts" in body:
        parts_.check(body["parts"], _count)


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
