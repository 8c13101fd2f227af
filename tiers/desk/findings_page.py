"""The desk's findings page (issue #14): `zhibao reconcile`'s findings for a month with their
evidence, and the monthly reports received and missing for that month.

The findings are `tiers.city.reconcile.reconcile(node, period)` with the thresholds of
node.toml — the very call `zhibao reconcile --period P --json` makes without options — so the
page equals the command (same findings, same order). `reconcile` needs a month; the page
shows last month unless `?period=YYYY-MM` asks for another (the month whose reports are due).

Reports: every node enrolled below this one, with its standing report for the month (the
latest it signed: seq, signed time, arrival here) or none. A node without one is `missing`
exactly where reconcile finds `missing_report` (the month is over and the node was enrolled
by its end), `not_due` otherwise.

Every value is escaped and shown inert (`tiers.inert.terminal_safe`: bidi overrides and
control characters as visible escapes): names and evidence come from any enrolled node.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from html import escape
from typing import Any

from starlette.requests import Request

from sync import trust
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.errors import ReportError, ZhibaoError
from sync.protocol.ids import is_within
from tiers.city.finding_kinds import kind_name
from tiers.city.reconcile import KINDS, Thresholds, reconcile
from tiers.desk import layout, slow
from tiers.desk.layout import PREFIX, Page
from tiers.desk.users import Session
from tiers.export import Table
from tiers.figures import month_of, parse_period
from tiers.inert import terminal_safe
from tiers.reports import latest_reports

FINDING_COLUMNS = ("kind", "kind_name", "node_id", "name", "detail", "evidence")
REPORT_COLUMNS = ("node_id", "tier", "name", "state", "report_seq", "report_at", "received_at")
MAX_NODE = 12  # the longest node id

i18n.register(
    {
        "desk.findings.nav": ("Findings", "核对结果"),
        "desk.findings.title": ("Findings for {period}", "{period} 核对结果"),
        "desk.findings.month": ("Month", "月份"),
        "desk.findings.kind": ("Kind", "类别"),
        "desk.findings.node": ("Node (and below)", "节点（含下级）"),
        "desk.findings.all": ("all", "全部"),
        "desk.findings.apply": ("Show", "查看"),
        "desk.findings.count": ("{shown} of {total} findings", "共 {total} 条，显示 {shown} 条"),
        "desk.findings.none": ("No finding.", "没有发现问题。"),
        "desk.findings.computing": (
            "The findings for {period} are being worked out; this page reloads itself.",
            "正在核对 {period} 的数据，本页面将自动刷新。",
        ),
        "desk.findings.busy": (
            "The desk is working out other findings; this page tries again shortly.",
            "工作台正在核对其他月份的数据，本页面稍后自动重试。",
        ),
        "desk.findings.as_of": (
            "As worked out at {at}; newer data is being checked (reload later).",
            "以下为 {at} 的核对结果；新数据正在核对中（请稍后刷新）。",
        ),
        "desk.findings.provisional": (
            "The figures of this month count {years} on weekends alone (no calendar for it).",
            "本月统计中 {years} 年仅按周末计算（缺少该年日历）。",
        ),
        "desk.findings.reports": ("Monthly reports for {period}", "{period} 月报报送情况"),
        "desk.findings.reports_summary": (
            "{received} received, {missing} missing, {not_due} not due.",
            "已报 {received}，未报 {missing}，未到期 {not_due}。",
        ),
        "desk.findings.bad_node": ("'{value}' is not a node id.", "“{value}”不是节点编码。"),
        "desk.findings.bad_kind": (
            "'{value}' is not a kind of finding.",
            "“{value}”不是核对结果类别。",
        ),
        "desk.findings.col.kind": ("Kind (key)", "类别代码"),
        "desk.findings.col.kind_name": ("Kind", "类别"),
        "desk.findings.col.node_id": ("Node", "节点编码"),
        "desk.findings.col.name": ("Name", "名称"),
        "desk.findings.col.detail": ("Finding", "问题"),
        "desk.findings.col.evidence": ("Evidence", "证据"),
        "desk.findings.col.tier": ("Tier", "层级"),
        "desk.findings.col.state": ("Report", "月报"),
        "desk.findings.col.report_seq": ("Entry #", "条目号"),
        "desk.findings.col.report_at": ("Signed at", "签署时间"),
        "desk.findings.col.received_at": ("Arrived here", "到达本处"),
        "desk.findings.state.received": ("received", "已报"),
        "desk.findings.state.missing": ("MISSING", "未报"),
        "desk.findings.state.not_due": ("not due", "未到期"),
        "desk.findings.true": ("yes", "是"),
        "desk.findings.false": ("no", "否"),
    }
)


# Words for the evidence keys reconcile uses (a key without one is shown as it is).
EVIDENCE_WORDS = {
    "seq": ("entry #", "条目号"),
    "at": ("time", "时间"),
    "case_id": ("case", "办件编号"),
    "reason": ("reason", "理由"),
    "period": ("month", "月份"),
    "held_seq": ("held here up to #", "本处持有至"),
    "held_here": ("held here up to #", "本处持有至"),
    "held_by_reporter": ("reporter held up to #", "报送方持有至"),
    "reporter": ("reported by", "报送节点"),
    "report_seq": ("report entry #", "月报条目号"),
    "report_at": ("report signed", "月报签署时间"),
    "report_hash": ("report hash", "月报哈希"),
    "field": ("count", "指标"),
    "reported": ("reported", "报送值"),
    "computed": ("recomputed", "重算值"),
    "part": ("split by", "分列"),
    "key": ("row", "分列项"),
    "parts_sum": ("sum of the parts", "分列合计"),
    "total": ("total", "总计"),
    "days": ("days", "天数"),
    "limit_days": ("limit (days)", "上限（天）"),
    "last_heard": ("last heard", "最近消息"),
    "how": ("how", "方式"),
    "seconds": ("seconds", "秒数"),
    "received_at": ("arrived here", "到达本处"),
    "type": ("entry type", "条目类型"),
    "holder": ("held by", "经办节点"),
    "problem": ("problem", "问题"),
    "count": ("times", "次数"),
    "first_seq": ("first entry #", "起始条目号"),
    "first_at": ("first", "首次"),
    "last_at": ("last", "最近"),
    "max_seq": ("highest entry #", "最大条目号"),
    "via": ("via", "经由"),
    "reported_by": ("seen by", "发现节点"),
    "why": ("why", "原因"),
    "forwarded_at": ("forwarded", "上报时间"),
    "from": ("from", "来自"),
    "enrolled": ("enrolled", "已登记"),
    "year": ("year", "年度"),
    "publisher": ("publisher", "发布节点"),
    "open_cases": ("open cases", "在办件数"),
    "this_year": ("this year", "本年度"),
    "next_year": ("next year", "下一年度"),
    "published_days": ("some days published", "已发布部分日期"),
    "item_code": ("item", "事项编码"),
    "fee": ("fee (yuan)", "收费（元）"),
    "catalogue_fee": ("catalogue fee (yuan)", "目录收费（元）"),
    "detected_at": ("detected", "发现时间"),
    "held_hash": ("hash held here", "本处哈希"),
    "other_hash": ("other hash", "另一哈希"),
    "resolved": ("resolved", "已处理"),
    "resolved_by": ("resolved by", "处理节点"),
    "kept_hash": ("hash kept", "保留哈希"),
    "resolved_at": ("resolved", "处理时间"),
    "decision_seq": ("decision entry #", "裁定条目号"),
    "missing_seq": ("missing after #", "缺少条目号"),
    "referenced_by": ("referenced by", "引用条目"),
    "referenced_at": ("referenced", "引用时间"),
    "began_on": ("began", "开始日期"),
    "ended_on": ("ended", "结束日期"),
    "accepted_on": ("accepted", "受理日期"),
    "name": ("name", "名称"),
    "hours": ("hours", "小时数"),
    "sha256": ("SHA-256", "SHA-256"),
    "size": ("size (bytes)", "大小（字节）"),
}  # fmt: skip
i18n.register({f"desk.findings.ev.{k}": pair for k, pair in EVIDENCE_WORDS.items()})


def default_period(today: date) -> str:
    """Last month: the newest month that is over, whose reports are due."""
    return month_of(today.replace(day=1) - timedelta(days=1)).label


def _asked(request: Request, name: str, limit: int) -> str | None:
    value = request.query_params.get(name, "").strip()
    return value[:limit] if value else None


def findings_of(node: Node, period: str) -> dict[str, Any]:
    """`zhibao reconcile --period PERIOD --json` (no options: node.toml's thresholds)."""
    return reconcile(node, period, limits=Thresholds.from_settings(node.config.settings))


def reports_of(node: Node, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node below this one with its standing report for the month, or its state."""
    store = node.store
    standing = latest_reports(store, result["period"])
    missing = {f["node_id"] for f in result["findings"] if f["kind"] == "missing_report"}
    rows = []
    for n in trust.enrolled_nodes(store):
        node_id = n["node_id"]
        if node_id == node.node_id or not is_within(node_id, node.node_id):
            continue
        report = standing.get(node_id)
        row = {"node_id": node_id, "tier": n["tier"], "name": n["name"], "report_seq": None,
               "report_at": None, "received_at": None}  # fmt: skip
        if report is not None:
            entry = store.query("SELECT received_at FROM entries WHERE origin = ? AND seq = ?",
                                (node_id, report.seq))  # fmt: skip
            row |= {"state": "received", "report_seq": report.seq, "report_at": report.at,
                    "received_at": entry[0][0] if entry else None}  # fmt: skip
        else:
            row["state"] = "missing" if node_id in missing else "not_due"
        rows.append(row)
    order = {"missing": 0, "received": 1, "not_due": 2}
    rows.sort(key=lambda r: (order[r["state"]], len(r["node_id"]), r["node_id"]))
    return rows


def evidence_items(evidence: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The evidence as (key, its name for the reader, value) by key: text as it is, yes or
    no for a truth, anything else as JSON."""
    out = []
    for key, value in sorted(evidence.items()):
        word = f"desk.findings.ev.{key}"
        if isinstance(value, bool):
            shown = i18n.t(f"desk.findings.{str(value).lower()}")
        else:
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        out.append((key, i18n.t(word) if i18n.has(word) else key, shown))
    return out


# How the reports table's codes read in XLSX (CSV keeps the codes).
REPORT_WORDS = {
    "tier": lambda value: i18n.term("tier", str(value)),
    "state": lambda value: i18n.t(f"desk.findings.state.{value}"),
}


def _shown(value: Any) -> str:
    return escape(terminal_safe("" if value is None else value))


def _names(node: Node) -> dict[str, str]:
    return {n["node_id"]: n["name"] for n in trust.enrolled_nodes(node.store)}


def _finding_rows(node: Node, result: dict[str, Any], kind: str | None,
                  within: str | None) -> list[dict[str, Any]]:  # fmt: skip
    names = _names(node)
    return [
        {"kind": f["kind"], "kind_name": kind_name(f["kind"]), "node_id": f["node_id"],
         "name": names.get(f["node_id"]), "detail": f["detail"],
         "evidence": json.dumps(f["evidence"], ensure_ascii=False, sort_keys=True)}
        for f in result["findings"]
        if (kind is None or f["kind"] == kind)
        and (within is None or is_within(f["node_id"], within))
    ]  # fmt: skip


def _headers(prefix: str, columns: tuple[str, ...]) -> list[str]:
    return [i18n.t(f"{prefix}{c}") for c in columns]


def _findings_html(rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in _headers("desk.findings.col.",
                                                              FINDING_COLUMNS[1:5]))  # fmt: skip
    head += f"<th>{escape(i18n.t('desk.findings.col.evidence'))}</th>"
    body = []
    for r in rows:
        evidence = "".join(
            f'<li><span class="key" title="{_shown(key)}">{_shown(word)}</span> '
            f"<bdi>{_shown(value)}</bdi></li>"
            for key, word, value in evidence_items(json.loads(r["evidence"]))
        )
        body.append(
            f'<tr class="finding-{escape(r["kind"])}"><td>{_shown(r["kind_name"])}</td>'
            f"<td>{_shown(r['node_id'])}</td><td><bdi>{_shown(r['name'])}</bdi></td>"
            f"<td><bdi>{_shown(r['detail'])}</bdi></td>"
            f'<td><ul class="evidence">{evidence}</ul></td></tr>'
        )
    return (f'<table id="findings"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')  # fmt: skip


def _reports_html(rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>"
                   for h in _headers("desk.findings.col.", REPORT_COLUMNS))  # fmt: skip
    body = []
    for r in rows:
        cells = [
            _shown(r["node_id"]), escape(i18n.term("tier", r["tier"])),
            f"<bdi>{_shown(r['name'])}</bdi>",
            escape(i18n.t(f"desk.findings.state.{r['state']}")),
            _shown(r["report_seq"]), _shown(r["report_at"]), _shown(r["received_at"]),
        ]  # fmt: skip
        body.append(f'<tr class="report-{r["state"]}">'
                    + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")  # fmt: skip
    return (f'<table id="reports"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')  # fmt: skip


def _form(period: str, kind: str | None, within: str | None, kinds: list[str]) -> str:
    options = f'<option value="">{escape(i18n.t("desk.findings.all"))}</option>' + "".join(
        f'<option value="{k}"{" selected" if k == kind else ""}>{escape(kind_name(k))}</option>'
        for k in kinds
    )
    return (
        f'<form method="get" action="{PREFIX}/findings">'
        f'<label>{escape(i18n.t("desk.findings.month"))} <input name="period" '
        f'value="{escape(period)}" size="8" maxlength="7"></label> '
        f'<label>{escape(i18n.t("desk.findings.kind"))} <select name="kind">{options}</select>'
        f'</label> <label>{escape(i18n.t("desk.findings.node"))} <input name="node" '
        f'value="{escape(within or "")}" size="12" maxlength="{MAX_NODE}"></label> '
        f'<button type="submit">{escape(i18n.t("desk.findings.apply"))}</button></form>'
    )


def findings(node: Node, request: Request, rest: str, session: Session) -> Page:
    period = _asked(request, "period", 16) or default_period(node.clock.now().date())
    kind, within = _asked(request, "kind", 40), _asked(request, "node", 40)
    if kind is not None and kind not in KINDS:
        raise ZhibaoError("desk.findings.bad_kind", value=kind)
    if within is not None and not (within.isascii() and within.isdigit()
                                   and len(within) <= MAX_NODE):  # fmt: skip
        raise ZhibaoError("desk.findings.bad_node", value=within)
    asked = parse_period(period)  # a bad month is said now, not by a thread
    if not asked.is_month:
        raise ReportError("report.month_only", value=period)
    period = asked.label  # one spelling, one computation kept
    try:
        answer = slow.result(node, "reconcile", period, lambda n: findings_of(n, period))
    except slow.Busy:
        said = escape(i18n.t("desk.findings.busy"))
        title = i18n.t("desk.findings.title", period=period)
        return Page(title, f"<p>{said}</p>", 503, reload=slow.RELOAD)
    if answer.value is None:
        said = escape(i18n.t("desk.findings.computing", period=period))
        return Page(i18n.t("desk.findings.title", period=period), f'<p class="note">{said}</p>',
                    200, reload=slow.RELOAD)  # fmt: skip
    result = answer.value
    label = result["period"]
    found = _finding_rows(node, result, kind, within)
    reports = reports_of(node, result)
    if within is not None:
        reports = [r for r in reports if is_within(r["node_id"], within)]
    tables = [
        Table("findings", FINDING_COLUMNS, _headers("desk.findings.col.", FINDING_COLUMNS),
              found, frozen_columns=3),
        Table("reports", REPORT_COLUMNS, _headers("desk.findings.col.", REPORT_COLUMNS),
              reports, frozen_columns=1, words=REPORT_WORDS),
    ]  # fmt: skip
    kinds = [k for k in KINDS if result["counts"].get(k) or k == kind]
    count = i18n.t("desk.findings.count", shown=len(found), total=len(result["findings"]))
    states = {s: sum(r["state"] == s for r in reports) for s in ("received", "missing", "not_due")}
    note = ""
    if not answer.current and answer.at:  # kept from before; being brought up to date
        at = answer.at[:16].replace("T", " ")
        note += f'<p class="note">{escape(i18n.t("desk.findings.as_of", at=at))}</p>'
    if result["provisional"]:
        years = i18n.listed(result["provisional"])
        note += f'<p class="note">{escape(i18n.t("desk.findings.provisional", years=years))}</p>'
    listing = (_findings_html(found) if found
               else f'<p class="empty">{escape(i18n.t("desk.findings.none"))}</p>')  # fmt: skip
    body = (
        f"{_form(label, kind, within, kinds)}<p>{escape(count)}</p>{note}{listing}"
        f"<h2>{escape(i18n.t('desk.findings.reports', period=label))}</h2>"
        f"<p>{escape(i18n.t('desk.findings.reports_summary', **states))}</p>"
        f"{_reports_html(reports)}"
    )
    return Page(i18n.t("desk.findings.title", period=label), body, tables=tables)


layout.register("/findings", findings, nav=(40, "desk.findings.nav"))
