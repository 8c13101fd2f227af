"""The desk's network page (issue #14): every node of this node's network, the ones that need
attention first.

Each row is `zhibao status --json`'s `network.nodes` row (tiers.city.network.network_health,
not recomputed here) with what the page adds:

- `backlog`: entries the node is known to hold that this node has not received. For this
  node itself, what its parent has not acknowledged (`status`'s `backlog`; 0 at the city).
  For a node below, the heads its newest signed monthly report states it held (`held`, its
  own subtree) beyond the heads held here, as of that report (`backlog_as_of`, the report's
  signed time); None when it has sent no report. Over HTTP a child proves what it holds in
  no other way the parent keeps (a pull's cursors are not recorded), so this is a lower
  bound as of the report, never a guess.
- `skew_seconds`: the node's clock difference measured at its last direct contact here
  (`peers.skew_seconds`, as `status` lists peers); None for a node that never contacted
  this one directly (a village syncing with its town, seen from the city).
- `calendar_this_year`, `calendar_next_year`: whether the node has the working calendar of
  this year and of next year (from `calendar_notice_month` on; before it `not_due`), see
  `calendar_of`.
- `attention`: `red` (silent, forked, revoked, revoked key used, red cases, entries set
  aside, this year's calendar missing), `yellow` (quiet, yellow cases, backlog, a clock off
  by more than `skew_seconds`, next year's calendar missing or unconfirmed) or "".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from html import escape
from typing import Any

from starlette.requests import Request

from sync import receipts
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.errors import ZhibaoError
from sync.protocol.ids import is_within
from sync.status import node_status
from tiers.city.network import LIVENESS, network_health
from tiers.city.reconcile import Thresholds
from tiers.desk import layout
from tiers.desk.layout import PREFIX, Page
from tiers.desk.users import Session
from tiers.export import Table
from tiers.inert import terminal_safe
from tiers.provisional import notice_month
from tiers.published import calendar_state, work_calendar

TIERS = ("city", "town", "village")
ATTENTION = ("red", "yellow", "")
# The table's columns: JSON keys, as in `status --json`'s network nodes where they exist.
COLUMNS = (
    "node_id", "tier", "name", "liveness", "last_heard", "heard_how", "last_contact",
    "last_case_at", "backlog", "backlog_as_of", "entries_held", "forks", "revoked",
    "revoked_key_used", "skew_seconds", "calendar_this_year", "calendar_next_year",
    "warnings_red", "warnings_yellow", "quarantined", "attention", "parent_id",
)  # fmt: skip
# The columns on the screen (1366 px wide); the files carry every column.
SHOWN = tuple(c for c in COLUMNS if c not in ("last_contact", "last_case_at", "backlog_as_of",
                                              "parent_id"))  # fmt: skip
TIMES = ("last_heard", "last_contact", "last_case_at", "backlog_as_of")
NUMERIC = ("backlog", "entries_held", "forks", "revoked_key_used", "skew_seconds",
           "warnings_red", "warnings_yellow", "quarantined")  # fmt: skip
# What a cell's code is called on the page (the files keep the code, as `status --json`).
_WORDS = {"liveness": "desk.network.liveness.", "heard_how": "desk.network.how.",
          "calendar_this_year": "desk.network.calendar.",
          "calendar_next_year": "desk.network.calendar.",
          "attention": "desk.network.attention."}  # fmt: skip

i18n.register(
    {
        "desk.network.nav": ("Network", "网络"),
        "desk.network.title": ("Network: {name}", "网络状况：{name}"),
        "desk.network.summary": (
            "{nodes} nodes as of {as_of}: {alive} alive, {quiet} quiet, {silent} silent;"
            " {attention} need attention.",
            "截至 {as_of} 共 {nodes} 个节点：正常 {alive}，无办件 {quiet}，失联 {silent}；"
            "{attention} 个需要关注。",
        ),
        "desk.network.none": ("No node matches.", "没有符合条件的节点。"),
        "desk.network.limits": (
            "Silent: nothing heard for {stale_days} days; quiet: no case recorded for"
            " {quiet_days} days; clock off: more than {skew_seconds} s.",
            "失联：{stale_days} 天无消息；无办件：{quiet_days} 天未记录办件；"
            "时钟偏差：超过 {skew_seconds} 秒。",
        ),
        "desk.network.explain": (
            "Backlog: entries the node is known to hold that this node has not received — for"
            " a node below, what its latest signed monthly report says it held beyond what is"
            " held here (as of that report; empty when it has sent none); for this node, what"
            " its parent has not acknowledged. Calendar: whether the node has the year's"
            " working calendar — from the package, published here, or published here and"
            " not yet confirmed by the node (a receipt from it).",
            "积压：已知该节点持有而本节点尚未收到的条目——下级节点按其最近一份签名月报所述"
            "持有量与本处持有量之差计算（以该月报时间为准；未报月报则留空）；本节点为上级尚未"
            "确认的条目。日历：该节点是否具备该年度工作日历——来自软件包、已在本处发布，"
            "或已发布但尚未由该节点确认收到（回执）。",
        ),
        "desk.network.filter.tier": ("Tier", "层级"),
        "desk.network.filter.liveness": ("State", "状态"),
        "desk.network.filter.all": ("all", "全部"),
        "desk.network.filter.apply": ("Filter", "筛选"),
        "desk.network.bad_filter": (
            "'{value}' is not a {name} here: use one of {allowed}.",
            "“{value}”不是有效的{name}：应为 {allowed} 之一。",
        ),
        "desk.network.col.node_id": ("Node", "节点编码"),
        "desk.network.col.tier": ("Tier", "层级"),
        "desk.network.col.name": ("Name", "名称"),
        "desk.network.col.liveness": ("State", "状态"),
        "desk.network.col.last_heard": ("Last heard", "最近消息"),
        "desk.network.col.heard_how": ("Heard by", "消息来源"),
        "desk.network.col.last_contact": ("Last contact", "最近直连"),
        "desk.network.col.last_case_at": ("Last case event", "最近办件"),
        "desk.network.col.backlog": ("Backlog", "积压条目"),
        "desk.network.col.backlog_as_of": ("Backlog as of", "积压截至"),
        "desk.network.col.entries_held": ("Entries held here", "本处持有条目"),
        "desk.network.col.forks": ("Forks", "分叉"),
        "desk.network.col.revoked": ("Revoked", "已吊销"),
        "desk.network.col.revoked_key_used": ("Revoked key used", "吊销密钥使用"),
        "desk.network.col.skew_seconds": ("Clock skew (s)", "时钟偏差（秒）"),
        "desk.network.col.calendar_this_year": ("Calendar {year}", "{year} 年日历"),
        "desk.network.col.calendar_next_year": ("Calendar {year}", "{year} 年日历"),
        "desk.network.col.warnings_red": ("Red cases", "红灯办件"),
        "desk.network.col.warnings_yellow": ("Yellow cases", "黄灯办件"),
        "desk.network.col.quarantined": ("Entries set aside", "未采用条目"),
        "desk.network.col.attention": ("Attention", "关注"),
        "desk.network.col.parent_id": ("Parent", "上级"),
        "desk.network.liveness.alive": ("alive", "正常"),
        "desk.network.liveness.quiet": ("quiet", "无办件"),
        "desk.network.liveness.silent": ("silent", "失联"),
        "desk.network.how.contact": ("direct contact", "直接连接"),
        "desk.network.how.entry": ("an entry arriving", "条目到达"),
        "desk.network.how.heartbeat": ("its heartbeat", "心跳"),
        "desk.network.calendar.package": ("known (package)", "已具备（软件包）"),
        "desk.network.calendar.published": ("known (published)", "已具备（已发布）"),
        "desk.network.calendar.unconfirmed": ("published, not confirmed", "已发布，未确认收到"),
        "desk.network.calendar.missing": ("MISSING", "缺失"),
        "desk.network.calendar.not_due": ("not due yet", "尚未到期"),
        "desk.network.attention.red": ("red", "红"),
        "desk.network.attention.yellow": ("yellow", "黄"),
        "desk.network.yes": ("yes", "是"),
        "desk.network.as_of": ("as of its report of {at}", "以其 {at} 的月报为准"),
    }
)


def calendar_years(node: Node, today: date) -> dict[str, Any]:
    """This year and next year as this node counts them: per year, `package` (the
    chinesecalendar package knows it), `published` (a whole-year publication is in force
    here: its (origin, seq)) or `missing`; next year is `not_due` before the notice month
    when it is not known."""
    store = node.store
    cal, state = work_calendar(store), calendar_state(store)
    due_next = today.month >= notice_month(node.config.settings)
    out: dict[str, Any] = {}
    for key, year in (("this", today.year), ("next", today.year + 1)):
        arrangement = state.overrides.years.get(year)
        source = state.years.get(year)
        if arrangement is not None and arrangement.complete and source is not None:
            out[key] = (year, "published", (source.origin, source.seq))
        elif cal.knows_year(year):
            out[key] = (year, "package", None)
        else:
            out[key] = (year, "missing" if key == "this" or due_next else "not_due", None)
    return out


def calendar_of(
    node_id: str, me: str, years: dict[str, Any], acked: dict[str, int], held: dict[str, int]
) -> tuple[str, str]:
    """(this year, next year) of `node_id`'s calendar: what this node has (`calendar_years`)
    for itself; for a node below, a year published here is `published` only where the node
    is known to hold the publishing entry (a receipt it issued here, or its own report's
    `held`), else `unconfirmed`: it reaches the node with its next pull, which the parent
    cannot see. A year the package knows is known wherever this zhibao runs."""
    states = []
    for key in ("this", "next"):
        _, state, source = years[key]
        if state == "published" and node_id != me:
            origin, seq = source
            if max(acked.get(origin, 0), held.get(origin, 0)) < seq and origin != node_id:
                state = "unconfirmed"
        states.append(state)
    return states[0], states[1]


def _latest_held(node: Node) -> dict[str, tuple[str, dict[str, int]]]:
    """node id → (signed time, `held`) of its newest monthly report held here."""
    rows = node.store.query(
        "SELECT m.origin, m.at, json_extract(m.body, '$.held') FROM monthly_reports m "
        "WHERE m.seq = (SELECT MAX(seq) FROM monthly_reports WHERE origin = m.origin)"
    )
    return {origin: (at, json.loads(held) if held else {}) for origin, at, held in rows}


def attention(row: dict[str, Any], limits: Thresholds) -> str:
    if (row["liveness"] == "silent" or row["forks"] or row["revoked"] or row["revoked_key_used"]
            or row["warnings_red"] or row["quarantined"]
            or row["calendar_this_year"] == "missing"):  # fmt: skip
        return "red"
    skew = row["skew_seconds"]
    if (row["liveness"] == "quiet" or row["warnings_yellow"] or row["backlog"]
            or (skew is not None and abs(skew) > limits.skew_seconds)
            or row["calendar_next_year"] in ("missing", "unconfirmed")):  # fmt: skip
        return "yellow"
    return ""


def network_rows(node: Node) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """(network_health, the page's rows attention first, the calendar years)."""
    limits = Thresholds.from_settings(node.config.settings)
    now = node.clock.now()
    health = network_health(node, limits=limits, now=now)
    status = node_status(node)
    skews = {p["node_id"]: p["skew_seconds"] for p in status["peers"]}
    years = calendar_years(node, now.date())
    reports = _latest_held(node)
    heads = {o: s for o, (s, _) in node.store.heads().items()}
    me = node.node_id
    rows = []
    for n in health["nodes"]:
        node_id = n["node_id"]
        at, held = reports.get(node_id, (None, {}))
        if node_id == me:
            backlog: int | None = status["backlog"]
            at = None
        elif node_id in reports:
            backlog = sum(max(0, seq - heads.get(origin, 0)) for origin, seq in held.items()
                          if isinstance(seq, int) and is_within(origin, node_id))  # fmt: skip
        else:
            backlog = None
        this, after = calendar_of(node_id, me, years, receipts.acknowledged(node.store, node_id)
                                  if node_id != me else {}, held)  # fmt: skip
        row = {
            **{k: n[k] for k in ("node_id", "tier", "name", "parent_id", "liveness",
                                 "last_heard", "heard_how", "last_contact", "last_case_at",
                                 "entries_held", "forks", "revoked", "revoked_key_used",
                                 "quarantined")},
            "backlog": backlog, "backlog_as_of": at,
            "skew_seconds": skews.get(node_id), "calendar_this_year": this,
            "calendar_next_year": after, "warnings_red": n["warnings"]["red"],
            "warnings_yellow": n["warnings"]["yellow"],
        }  # fmt: skip
        row["attention"] = attention(row, limits)
        rows.append(row)
    rows.sort(key=lambda r: (ATTENTION.index(r["attention"]), len(r["node_id"]), r["node_id"]))
    return health, rows, years


def _choice(request: Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.query_params.get(name, "")
    if value and value not in allowed:
        raise ZhibaoError("desk.network.bad_filter", value=value[:40],
                          name=i18n.t(f"desk.network.filter.{name}"),
                          allowed=", ".join(allowed))  # fmt: skip
    return value or None


def _table(rows: list[dict[str, Any]], years: dict[str, Any]) -> Table:
    year = {"calendar_this_year": years["this"][0], "calendar_next_year": years["next"][0]}
    headers = [i18n.t(f"desk.network.col.{c}", year=year.get(c, "")) for c in COLUMNS]
    return Table("network", COLUMNS, headers, rows, frozen_columns=3)


def _cell(column: str, value: Any) -> str:
    if value is None or value == "" or value is False:
        return ""
    if value is True:
        return i18n.t("desk.network.yes")
    if column == "tier":
        return i18n.term("tier", str(value))
    if column in _WORDS and i18n.has(_WORDS[column] + str(value)):
        return i18n.t(_WORDS[column] + str(value))
    if column in TIMES and isinstance(value, str):
        return value[:16].replace("T", " ")  # to the minute, in the zone it was written in
    return layout.shown(value)


def _html(table: Table) -> str:
    """The SHOWN columns of `table`, each row's attention as its class; the backlog's
    time (`backlog_as_of`) as its cell's title."""
    labels = dict(zip(table.columns, table.headers, strict=True))
    head = "".join(
        f"<th{' class=num' if c in NUMERIC else ''}>{escape(labels[c])}</th>" for c in SHOWN
    )
    body = []
    for row in table.rows:
        cls = f' class="attention-{row["attention"]}"' if row["attention"] else ""
        cells = "".join(
            f"<td{' class=num' if c in NUMERIC else ''}{_title(c, row)}>"
            f"{_bdi(c, escape(terminal_safe(_cell(c, row.get(c)))))}</td>"
            for c in SHOWN
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return (f'<table id="network"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')  # fmt: skip


def _title(column: str, row: Mapping[str, Any]) -> str:
    if column != "backlog" or not row.get("backlog_as_of"):
        return ""
    said = i18n.t("desk.network.as_of", at=_cell("backlog_as_of", row["backlog_as_of"]))
    return f' title="{escape(said)}"'


def _bdi(column: str, text: str) -> str:
    """A name written on another node, isolated from the text around it."""
    return f"<bdi>{text}</bdi>" if column == "name" else text


def _form(tier: str | None, state: str | None) -> str:
    def select(name: str, values: tuple[str, ...], chosen: str | None, word: Any) -> str:
        options = f'<option value="">{escape(i18n.t("desk.network.filter.all"))}</option>'
        options += "".join(
            f'<option value="{v}"{" selected" if v == chosen else ""}>{escape(word(v))}</option>'
            for v in values
        )
        return (f'<label>{escape(i18n.t(f"desk.network.filter.{name}"))} '
                f'<select name="{name}">{options}</select></label> ')  # fmt: skip

    return (
        f'<form method="get" action="{PREFIX}/network">'
        + select("tier", TIERS, tier, lambda v: i18n.term("tier", v))
        + select("liveness", LIVENESS, state, lambda v: i18n.t(f"desk.network.liveness.{v}"))
        + f'<button type="submit">{escape(i18n.t("desk.network.filter.apply"))}</button></form>'
    )


def network(node: Node, request: Request, rest: str, session: Session) -> Page:
    tier, state = _choice(request, "tier", TIERS), _choice(request, "liveness", LIVENESS)
    health, rows, years = network_rows(node)
    shown = [r for r in rows if (tier is None or r["tier"] == tier)
             and (state is None or r["liveness"] == state)]  # fmt: skip
    table = _table(shown, years)
    limits = Thresholds.from_settings(node.config.settings)
    summary = i18n.t(
        "desk.network.summary", nodes=len(rows), as_of=health["as_of"][:16].replace("T", " "),
        attention=sum(bool(r["attention"]) for r in rows), **health["liveness"],
    )  # fmt: skip
    listing = (_html(table) if shown
               else f'<p class="empty">{escape(i18n.t("desk.network.none"))}</p>')  # fmt: skip
    said = i18n.t("desk.network.limits", stale_days=limits.stale_days,
                  quiet_days=limits.quiet_days, skew_seconds=limits.skew_seconds)  # fmt: skip
    body = (
        f"{_form(tier, state)}<p>{escape(summary)}</p>{listing}"
        f'<p class="note">{escape(said)}</p>'
        f'<p class="note">{escape(i18n.t("desk.network.explain"))}</p>'
    )
    return Page(i18n.t("desk.network.title", name=node.config.name), body, tables=[table])


layout.register("/network", network, nav=(30, "desk.network.nav"))
