"""Reconciliation and the network's health (DESIGN §5, §7 `zhibao reconcile`, `status`).

The city recomputes each reporter's figures from the entries it holds, with the same
`tiers.figures` the reporter used, and lists findings. Each names a node and carries its
evidence (entries by origin and seq, hashes, times), so an admin can act on it:

    report_mismatch    a report's count differs from the recomputed one (one per field)
    missing_report     an enrolled town or village has no report for a month that is over
    fork               two signed entries for one (origin, seq) are held: unresolved (the
                       origin is frozen), resolved (by whom, the kept hash, the reason), or
                       decided for the entry not held here (still frozen here)
    gap                part of a log is missing here: a reporter held more of it than we
                       do, or an event here waits for an entry of it we do not hold
    stale_node         not heard from (no contact, no new entry arrived, no heartbeat) for
                       `stale_days`
    orphan_forward     a case forwarded to the node `forward_days` ago, never taken up
    clock_skew         an entry stamped ahead of its arrival here, or a peer's clock off,
                       by more than `skew_seconds`
    custody_violation  an event (in the month) from a node that did not hold the case
    quarantined_entry  an entry held here but set aside (its author may not write it, or a
                       projection could not use it): counted nowhere, whatever the month
    revoked_key_used   a revoked key tried to sign something here (entries, requests or
                       bundles, refused): one finding per node, sender and way in
    missing_material   a material an entry held here names has not arrived whole after
                       `material_missing_hours` (named by the node that attached it)
    calendar_missing   a year needed and not known (tiers.provisional.years_needed): this
                       year, next year from `calendar_notice_month`, or one an open case's
                       deadline is counted in; named by the city, which publishes it
    report_inconsistent  a report's part (by item, by kind) does not add up to its own
                       total (one per part and count)
    backdated_step     a node's step on a case (环节) ends, by its own signed time, before it
                       began: counted nowhere (`tiers.steps`), named here
    fee_override, guard_violation, backdated: the legal guards' (tiers.city.supervision)
    complaint_violation  a complaint event (in the month) the complaint refused: a reply
                       or closing naming another subject, after closing, a second filing

Invariant: findings depend only on what is held here and on `now`; the same store and the
same `now` give the same findings in the same order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sync import keyring, liveness, trust
from sync.clock import local_date
from sync.logstore import LogStore
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.errors import ReportError
from sync.protocol.ids import is_within
from tiers import materials, report_parts, steps
from tiers.cases.machine import IN_TRANSIT, OPEN, violation_kind
from tiers.city import supervision
from tiers.city.finding_kinds import words
from tiers.complaints.projection import violations_in as complaint_violations
from tiers.figure_cells import period_cells
from tiers.figures import COUNT_FIELDS, Counts, Period, parse_period
from tiers.provisional import calendar_missing
from tiers.published import list_items, work_calendar
from tiers.reports import Report, backfill, latest_reports, load_facts, node_counts, own_parts_all

KINDS = (
    "report_mismatch", "missing_report", "fork", "gap", "stale_node", "orphan_forward",
    "clock_skew", "custody_violation", "quarantined_entry", "revoked_key_used",
    "missing_material", "calendar_missing", "report_inconsistent", "backdated_step",
    "complaint_violation", *supervision.KINDS,
)  # fmt: skip
_OPEN_SQL = "(" + ", ".join(f"'{s}'" for s in sorted(OPEN)) + ")"


@dataclass(frozen=True)
class Thresholds:
    """When silence, a pending forward or a clock difference becomes a finding; when a
    node heard from recently but recording no case counts as quiet (`quiet_days`)."""

    stale_days: float = 7.0
    forward_days: float = 3.0
    skew_seconds: int = 600
    quiet_days: float = 5.0

    @classmethod
    def from_settings(cls, settings: dict[str, Any], **given: float | None) -> Thresholds:
        """node.toml settings (`stale_days`, `forward_days`, `skew_seconds`, `quiet_days`),
        then options."""
        names = ("stale_days", "forward_days", "skew_seconds", "quiet_days")
        values: dict[str, Any] = {k: settings[k] for k in names if k in settings}
        values |= {k: v for k, v in given.items() if v is not None}
        return cls(**values)


@dataclass(frozen=True)
class Finding:
    kind: str
    node_id: str
    evidence: dict[str, Any] = field(default_factory=dict)
    message: str | None = None  # the detail's i18n key, when not `finding.<kind>`

    def to_json(self) -> dict[str, Any]:
        key = self.message or f"finding.{self.kind}"
        if self.evidence.get("count") == 1 and i18n.has(key + ".one"):
            key += ".one"  # "used once", not "used 1 times"
        detail = i18n.t(key, node_id=self.node_id, **self.evidence, **words(self.evidence))
        return {"kind": self.kind, "node_id": self.node_id, "detail": detail,
                "evidence": self.evidence}  # fmt: skip


def _find(kind: str, node_id: str, **evidence: Any) -> Finding:
    return Finding(kind, node_id, evidence)


def _since(now: datetime, stamp: str) -> float:
    return (now - datetime.fromisoformat(stamp)).total_seconds() / 86400


def _entry_hash(store: LogStore, origin: str, seq: int) -> str | None:
    digest = store.hash_at(origin, seq)
    return digest.hex() if digest is not None else None


def _reporters(store: LogStore, me: str) -> list[dict[str, Any]]:
    return [n for n in trust.enrolled_nodes(store)
            if n["node_id"] != me and is_within(n["node_id"], me)]  # fmt: skip


def _reports(
    store: LogStore, me: str, period: Period, today: date, reporters: list[dict[str, Any]]
) -> list[Finding]:
    found: list[Finding] = []
    computed = node_counts(store, period, work_calendar(store), today)
    reports = latest_reports(store, period.label)
    parts = own_parts_all(store, period, today) if any(r.parts for r in reports.values()) else {}
    for origin, report in sorted(reports.items()):
        mine = computed.get(origin, Counts())
        where = {"report_seq": report.seq, "report_at": report.at,
                 "report_hash": _entry_hash(store, origin, report.seq)}  # fmt: skip
        for name in COUNT_FIELDS:
            if name not in report.stated:
                continue  # a report made before this count existed does not state it
            reported, recomputed = getattr(report.counts, name), getattr(mine, name)
            if reported != recomputed:
                found.append(_find("report_mismatch", origin, field=name, reported=reported,
                                   computed=recomputed, part="total", **where))  # fmt: skip
        found += _part_findings(origin, report, parts.get(origin, {}), where)
        for held_origin, seq in sorted(report.held.items()):
            here = store.head(held_origin)[0]
            if here < seq:
                found.append(_find("gap", held_origin, held_here=here, held_by_reporter=seq,
                                   reporter=origin, **where))  # fmt: skip
    if today > period.end:
        for node in reporters:
            enrolled = node["enrolled_at"]
            if node["node_id"] not in reports and (
                enrolled is None or local_date(enrolled) <= period.end
            ):
                found.append(_find("missing_report", node["node_id"], period=period.label,
                                   held_seq=store.head(node["node_id"])[0]))  # fmt: skip
    return found


def _years(store: LogStore, period: Period, today: date) -> list[int]:
    """The guessed years the month's figures rest on (kept with its cells)."""
    items = {item.code: item for item in list_items(store)}
    return period_cells(store, period, today, work_calendar(store), items)[1]


def _part_findings(
    origin: str, report: Report, computed: dict[str, Any], where: dict[str, Any]
) -> list[Finding]:
    """A report's parts (by item, by kind): rows that do not add up to its own total, and
    rows that differ from the recomputation, each naming its part and row."""
    sums = report_parts.inconsistent(report.stated, report.counts, report.parts)
    wrong = report_parts.compare(report.stated, report.parts, computed)
    return [
        *(_find("report_inconsistent", origin, part=s.part, field=s.field,
                parts_sum=s.parts_sum, total=s.total, **where) for s in sums),
        *(Finding("report_mismatch", origin,
                  {"field": m.field, "reported": m.reported, "computed": m.computed,
                   "part": m.part, "key": m.key, **where},
                  "finding.report_mismatch_part") for m in wrong),
    ]  # fmt: skip


def _backdated(store: LogStore, period: Period) -> list[Finding]:
    """Steps (环节) that end in the month, by their signed times, before they began."""
    s, e_ = period.start.isoformat(), period.end.isoformat()
    return [
        _find("backdated_step", node, case_id=f.case_id, began_on=began, ended_on=ended,
              accepted_on=f.accepted_on, how=how)
        for f in load_facts(store, period)
        for node, began, ended, how in steps.backdated(f.steps, f.accepted_on, f.node)
        if ended is not None and s <= ended <= e_
    ]  # fmt: skip


def _forks(store: LogStore) -> list[Finding]:
    """Every fork held here; once decided, with the decision in force (sync.forks)."""
    found = []
    for f in store.forks():
        evidence = {"seq": f["seq"], "held_hash": f["held_hash"], "other_hash": f["other_hash"],
                    "detected_at": f["detected_at"], "resolved": f["resolved"]}  # fmt: skip
        decision = f["decision"]
        if decision is not None:
            evidence |= {"resolved_by": decision["by"], "decision_seq": decision["entry_seq"],
                         "kept_hash": decision["kept_hash"], "reason": decision["reason"],
                         "resolved_at": decision["at"]}  # fmt: skip
        message = {"resolved": "finding.fork_resolved",
                   "switch_needed": "finding.fork_switch_needed"}.get(f["state"])  # fmt: skip
        found.append(Finding("fork", f["origin"], evidence, message))
    return found


def _waiting_gaps(store: LogStore) -> list[Finding]:
    rows = store.query(
        "SELECT after_origin, after_seq, case_id, origin, seq, at FROM case_gaps "
        "ORDER BY after_origin, after_seq, origin, seq"
    )
    return [
        _find("gap", after_origin, missing_seq=after_seq, held_here=store.head(after_origin)[0],
              case_id=case_id, referenced_by=[origin, seq], referenced_at=at)
        for after_origin, after_seq, case_id, origin, seq, at in rows
    ]  # fmt: skip


def last_heard(store: LogStore) -> dict[str, tuple[str, str]]:
    """node id → (when last heard from, how): a direct contact ("contact"), the arrival
    here of its newest entry, relayed or not ("entry"), or, when that entry is its
    heartbeat, the heartbeat's own time capped by its arrival ("heartbeat"), whichever is
    later. A node that syncs writes a heartbeat when it has written nothing for a day
    (sync.liveness), so a quiet node is heard through its newest entry."""
    heard: dict[str, tuple[str, str]] = {}
    for origin, (seq, _) in store.heads().items():  # one look-up a head: joined, SQLite
        for kind, at, received in store.query(  # scanned every entry (1.4 s at 5 M)
            "SELECT type, json_extract(CAST(raw AS TEXT), '$.at'), received_at FROM entries "
            "WHERE origin = ? AND seq = ?", (origin, seq)
        ):  # fmt: skip
            heard[origin] = liveness.heard_at(kind, at, received)
    for node_id, contact, _ in store.query("SELECT node_id, last_contact, skew_seconds FROM peers"):
        known = heard.get(node_id)
        if known is None or datetime.fromisoformat(contact) > datetime.fromisoformat(known[0]):
            heard[node_id] = (contact, "contact")
    return heard


def _stale(
    store: LogStore, reporters: list[dict[str, Any]], now: datetime, limits: Thresholds
) -> list[Finding]:
    heard = last_heard(store)
    found = []
    for node in reporters:
        when, how = heard.get(node["node_id"], (node["enrolled_at"], "enrolled"))
        if when and _since(now, when) > limits.stale_days:
            found.append(_find("stale_node", node["node_id"], last_heard=when, how=how,
                               days=round(_since(now, when), 1), limit_days=limits.stale_days,
                               held_seq=store.head(node["node_id"])[0]))  # fmt: skip
    return found


def _in_transit(store: LogStore) -> list[tuple[str, str, str, str]]:
    """(case_id, holder, forward_to, forwarded_at) of every case in transit."""
    out = []
    for case_id, holder, to in store.query(
        "SELECT case_id, holder, forward_to FROM cases WHERE status = ? ORDER BY case_id",
        (IN_TRANSIT,),
    ):
        rows = store.query(
            "SELECT at FROM case_events WHERE case_id = ? AND type = 'case.forwarded' "
            "ORDER BY at DESC LIMIT 1", (case_id,))  # fmt: skip
        out.append((case_id, holder, to, rows[0][0] if rows else ""))
    return out


def _orphans(store: LogStore, period: Period, now: datetime, limits: Thresholds) -> list[Finding]:
    enrolled = {n["node_id"] for n in trust.enrolled_nodes(store)}
    found = []
    for case_id, holder, to, at in _in_transit(store):
        if not at or local_date(at) > period.end or _since(now, at) <= limits.forward_days:
            continue
        found.append(_find("orphan_forward", to, case_id=case_id, forwarded_at=at,
                           days=round(_since(now, at), 1), enrolled=to in enrolled,
                           **{"from": holder}))  # fmt: skip
    return found


def _skew(store: LogStore, period: Period, limits: Thresholds) -> list[Finding]:
    found = []
    for origin, lead, seq, at, received in store.query(
        "SELECT origin, lead_seconds, seq, at, received_at FROM clock_leads WHERE month = ? "
        "AND lead_seconds > ? ORDER BY origin", (period.label, limits.skew_seconds)
    ):  # fmt: skip
        found.append(_find("clock_skew", origin, seq=seq, at=at, received_at=received,
                           seconds=lead, how="entry"))  # fmt: skip
    for node_id, contact, skew in store.query(
        "SELECT node_id, last_contact, skew_seconds FROM peers WHERE abs(skew_seconds) > ? "
        "ORDER BY node_id", (limits.skew_seconds,)
    ):  # fmt: skip
        found.append(_find("clock_skew", node_id, seconds=skew, at=contact, how="contact"))
    return found


def _custody(store: LogStore, period: Period) -> list[Finding]:
    found = []
    for case_id, holder, text in store.query(
        "SELECT case_id, holder, violations FROM cases WHERE violations != '[]' ORDER BY case_id"
    ):
        for origin, seq, kind, key in json.loads(text):
            if violation_kind(key) != "custody":
                continue
            rows = store.query(
                "SELECT at FROM case_events WHERE origin = ? AND seq = ?", (origin, seq)
            )
            at = rows[0][0] if rows else None
            if at is not None and period.start <= local_date(at) <= period.end:
                found.append(_find("custody_violation", origin, case_id=case_id, seq=seq,
                                   type=kind, at=at, holder=holder, problem=key))  # fmt: skip
    return found


def _revoked_uses(store: LogStore, me: str) -> list[Finding]:
    """Every attempt a revoked key made here, refused — and those the nodes below reported
    (`reported_by`): who, through whom, how, how often."""
    own = [dict(u, reported_by=me) for u in keyring.revoked_uses(store)]
    return [
        _find("revoked_key_used", u["node_id"], via=u["via"], how=u["how"], count=u["count"],
              max_seq=u["max_seq"], first_at=u["first_at"], last_at=u["last_at"],
              reported_by=u["reported_by"])
        for u in own + keyring.reported_uses(store)
    ]  # fmt: skip


def _quarantined(store: LogStore) -> list[Finding]:
    """One finding per node and reason, however many entries (seq = the latest of them)."""
    return [
        _find("quarantined_entry", q["origin"], seq=q["last_seq"], first_seq=q["first_seq"],
              count=q["count"], type=q["type"], reason=q["reason"], why=q["detail"],
              received_at=q["last_at"])
        for q in store.quarantine_counts()
    ]  # fmt: skip


def _missing_materials(node: Node, now: datetime) -> list[Finding]:
    after = materials.missing_after(node.config.settings)
    return [
        _find("missing_material", m.pop("node_id"), **m)
        for m in materials.overdue(node.store, now, after)
    ]


def reconcile(
    node: Node, period_text: str, *, limits: Thresholds | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:  # fmt: skip
    """`reconcile --json`: {"period", "findings": [{"kind", "node_id", "detail",
    "evidence"}], "reports", "counts"}, findings ordered by kind (as in KINDS), node, evidence."""
    period = parse_period(period_text)
    if not period.is_month:
        raise ReportError("report.month_only", value=period_text)
    limits = limits or Thresholds.from_settings(node.config.settings)
    now = now or node.clock.now()
    store = node.store
    backfill(store)
    reporters = _reporters(store, node.node_id)
    findings = [
        *_reports(store, node.node_id, period, now.date(), reporters),
        *_backdated(store, period),
        *_forks(store),
        *_waiting_gaps(store),
        *_stale(store, reporters, now, limits),
        *_orphans(store, period, now, limits),
        *_skew(store, period, limits),
        *_custody(store, period),
        *_quarantined(store),
        *_revoked_uses(store, node.node_id),
        *_missing_materials(node, now),
        *(Finding("calendar_missing", *f) for f in calendar_missing(node, now.date())),
        *(Finding(*raw) for raw in supervision.findings(store, period)),
        *(_find("complaint_violation", author, **evidence) for author, evidence in
          complaint_violations(store, period.start.isoformat(), period.end.isoformat())),
    ]  # fmt: skip
    findings.sort(key=lambda f: (KINDS.index(f.kind), f.node_id, json.dumps(f.evidence)))
    counts = {kind: sum(f.kind == kind for f in findings) for kind in KINDS}
    return {
        "period": period.label,
        "findings": [f.to_json() for f in findings],
        "reports": len(latest_reports(store, period.label)),
        "counts": counts,
        "provisional": _years(store, period, now.date()),
    }


i18n.register(
    {
        "finding.report_mismatch": (
            "{node_id} reported {field} = {reported} for the month; the entries give {computed}"
            " (report #{report_seq}).",
            "{node_id} 月报中{field_name}为 {reported}，"
            "按日志重算为 {computed}（报表 #{report_seq}）。",
        ),
        "finding.report_mismatch_part": (
            "{node_id} reported {field} = {reported} for {part} {key}; the entries give"
            " {computed} (report #{report_seq}).",
            "{node_id} 月报按{part_name}分列的 {key} 中{field_name}为 {reported}，"
            "按日志重算为 {computed}（报表 #{report_seq}）。",
        ),
        "finding.report_inconsistent": (
            "{node_id}'s report by {part} adds up to {field} = {parts_sum}, but its total"
            " states {total} (report #{report_seq}).",
            "{node_id} 月报按{part_name}分列的{field_name}合计为 {parts_sum}，"
            "与其总计 {total} 不符（报表 #{report_seq}）。",
        ),
        "finding.backdated_step": (
            "{node_id}'s step on case {case_id} ({how}) is stamped {ended_on}, before it began"
            " ({began_on}); it is counted nowhere.",
            "{node_id} 在办件 {case_id} 上的环节（{how}）时间为 {ended_on}，早于其开始"
            "（{began_on}），不予统计。",
        ),
        "finding.missing_report": (
            "{node_id} has not reported {period} (its log is held here up to #{held_seq}).",
            "{node_id} 未报送 {period} 月报（本处持有其日志至 #{held_seq}）。",
        ),
        "finding.fork": (
            "{node_id} wrote two different entries #{seq} (detected {detected_at}); its log is"
            " frozen until an admin resolves it.",
            "{node_id} 的第 {seq} 号条目存在两个不同版本（{detected_at} 发现），"
            "日志已冻结，需管理员处理。",
        ),
        "finding.fork_resolved": (
            "{node_id} wrote two different entries #{seq} (detected {detected_at}); resolved by"
            " {resolved_by} on {resolved_at}: kept {kept_hash} ({reason}).",
            "{node_id} 的第 {seq} 号条目存在两个不同版本（{detected_at} 发现）；已由"
            " {resolved_by} 于 {resolved_at} 处理：保留 {kept_hash}（{reason}）。",
        ),
        "finding.fork_switch_needed": (
            "{node_id} wrote two different entries #{seq} (detected {detected_at}); {resolved_by}"
            " decided to keep {kept_hash} ({reason}), which is not the entry held here: the log"
            " stays frozen here.",
            "{node_id} 的第 {seq} 号条目存在两个不同版本（{detected_at} 发现）；{resolved_by}"
            " 裁定保留 {kept_hash}（{reason}），与本处持有的条目不同：本处日志仍冻结。",
        ),
        "finding.gap": (
            "Part of {node_id}'s log is missing here (held up to #{held_here}).",
            "本处缺少 {node_id} 的部分日志（仅持有至 #{held_here}）。",
        ),
        "finding.stale_node": (
            "Nothing heard from {node_id} for {days} days (last {last_heard}).",
            "{node_id} 已 {days} 天无消息（最近一次 {last_heard}）。",
        ),
        "finding.orphan_forward": (
            "Case {case_id} was forwarded to {node_id} by {from} on {forwarded_at} and never"
            " taken up ({days} days).",
            "办件 {case_id} 于 {forwarded_at} 由 {from} 上报至 {node_id}，{days} 天仍未接收。",
        ),
        "finding.clock_skew": (
            "{node_id}'s clock is off by {seconds} s (at {at}).",
            "{node_id} 的时钟偏差 {seconds} 秒（{at}）。",
        ),
        "finding.revoked_key_used": (
            "{node_id}'s revoked key was used {count} times ({how}, via {via}, last "
            "{last_at}, seen by {reported_by}); everything it signed was refused.",
            "{node_id} 已吊销的密钥被使用 {count} 次（{how}，经由 {via}，最近 {last_at}，"
            "由 {reported_by} 发现）；其签名内容已全部拒收。",
        ),
        "finding.revoked_key_used.one": (
            "{node_id}'s revoked key was used once ({how}, via {via}, at {last_at}, seen by"
            " {reported_by}); what it signed was refused.",
            "{node_id} 已吊销的密钥被使用 1 次（{how}，经由 {via}，于 {last_at}，"
            "由 {reported_by} 发现）；其签名内容已拒收。",
        ),
        "finding.quarantined_entry.one": (
            "One of {node_id}'s entries (#{seq}) is held but set aside ({type}): {why}.",
            "{node_id} 有 1 条条目（#{seq}）已保存但未采用（{type}）：{why}。",
        ),
        "finding.quarantined_entry": (
            "{count} of {node_id}'s entries (#{first_seq}–#{seq}) are held but set aside; the"
            " latest ({type}): {why}.",
            "{node_id} 有 {count} 条条目（#{first_seq}—#{seq}）已保存但未采用；最近一条"
            "（{type}）：{why}。",
        ),
        "finding.missing_material": (
            "{name} of case {case_id}, attached by {node_id} (#{seq}), has not arrived whole"
            " here {hours} hours after its entry (sha256 {sha256}).",
            "{node_id} 为办件 {case_id} 添加的 {name}（#{seq}）在条目到达 {hours} 小时后"
            "仍未完整到达本处（sha256 {sha256}）。",
        ),
        "finding.custody_violation": (
            "{node_id} recorded {type} on case {case_id} (#{seq}, {at}) without holding it"
            " (holder {holder}).",
            "{node_id} 在未经办的情况下对办件 {case_id} 记录了 {type}"
            "（#{seq}，{at}；经办节点 {holder}）。",
        ),
    }
)
