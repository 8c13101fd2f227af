"""The desk's case pages (issue #14): warnings, one case, and who opened which case.

Each page is (title, body HTML, status) for `tiers.desk.app` to wrap; every value escaped.
Warnings are `zhibao case list --warning yellow|red` (tiers.cases.listing, the same query and
filters); a case is `zhibao case show` (tiers.cases.views.show), its opening recorded in
tiers.desk.access. A bad filter is a ZhibaoError (the app answers 400).
"""

from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request

from sync.node import Node
from sync.protocol import i18n
from sync.protocol.errors import CaseNotFoundError, ZhibaoError
from tiers.cases import listing, views
from tiers.cases.labels import event_label, status_label
from tiers.desk import access, layout
from tiers.desk.layout import Page
from tiers.desk.users import Session

PREFIX = "/desk"
PAGE = 20  # warnings on a screen (`limit` asks for 1 to MAX_PAGE)
MAX_PAGE = 200
ACCESS_PAGE = 50
COLOURS = ("red", "yellow")
MAX_TEXT = 64  # the longest item or department searched for
LIST_NODES = ' list="nodes"'

i18n.register(
    {
        "desk.nav.warnings": ("Warnings", "预警"),
        "desk.nav.access": ("Case access", "查阅记录"),
        "desk.warnings.title": ("Warnings", "预警办件"),
        "desk.warnings.count": ("{count} cases", "{count} 件"),
        "desk.warnings.count.one": ("1 case", "1 件"),
        "desk.warnings.none": ("No cases.", "没有办件。"),
        "desk.warnings.red": ("Red (overdue)", "红灯（已超期）"),
        "desk.warnings.yellow": ("Yellow (due soon)", "黄灯（即将到期）"),
        "desk.filter.warning": ("Warning", "预警"),
        "desk.filter.node": ("Town or node", "镇街或节点"),
        "desk.filter.item": ("Item", "事项"),
        "desk.filter.department": ("Department", "部门"),
        "desk.filter.apply": ("Filter", "筛选"),
        "desk.page.next": ("Next", "下一页"),
        "desk.page.previous": ("Previous", "上一页"),
        "desk.page.shown": ("{first}–{last} of {total}", "第 {first}–{last} 条，共 {total} 条"),
        "desk.bad_offset": ("'{offset}' is not a page offset.", "“{offset}”不是有效的分页位置。"),
        "desk.bad_limit": (
            "'{limit}' is not a page size: 1 to {max}.",
            "“{limit}”不是有效的每页条数：1 至 {max}。",
        ),
        "desk.bad_text": (
            "The {field} searched for is longer than {max} characters.",
            "搜索的{field}超过 {max} 个字符。",
        ),
        "desk.col.case_id": ("Case", "办件编号"),
        "desk.col.item": ("Item", "事项"),
        "desk.col.status": ("Status", "状态"),
        "desk.col.holder": ("Held by", "办理节点"),
        "desk.col.applicant": ("Applicant", "申请人"),
        "desk.col.received_at": ("Received", "收件时间"),
        "desk.col.deadline": ("Deadline", "办结期限"),
        "desk.col.remaining": ("Working days left", "剩余工作日"),
        "desk.col.warning": ("Warning", "预警"),
        "desk.warning.red": ("red", "红灯"),
        "desk.warning.yellow": ("yellow", "黄灯"),
        "desk.warning.unaccepted": ("not accepted", "未受理"),
        "desk.warning.undelivered": ("not delivered", "未送达"),
        "desk.case.title": ("Case {case_id}", "办件 {case_id}"),
        "desk.case.not_found": ("No case {case_id} here.", "本节点没有办件 {case_id}。"),
        "desk.case.details": ("Details", "办件信息"),
        "desk.case.events": ("History", "办理过程"),
        "desk.case.field.origin": ("Received at", "收件节点"),
        "desk.case.field.accepted_at": ("Accepted", "受理时间"),
        "desk.case.field.completed_at": ("Completed", "办结时间"),
        "desk.case.field.result": ("Result", "办理结果"),
        "desk.case.field.delivered_at": ("Delivered", "送达时间"),
        "desk.case.field.rating": ("Rating", "评价"),
        "desk.case.field.id_no": ("ID number", "证件号码"),
        "desk.case.field.phone": ("Phone", "联系电话"),
        "desk.case.field.materials": ("Materials", "申请材料"),
        "desk.ev.at": ("Time", "时间"),
        "desk.ev.type": ("Event", "事件"),
        "desk.ev.node": ("Node", "节点"),
        "desk.ev.standing": ("Standing", "效力"),
        "desk.ev.body": ("Contents", "内容"),
        "desk.standing.applied": ("applied", "有效"),
        "desk.standing.refused": ("refused", "已拒绝"),
        "desk.standing.waiting": ("waiting", "待前序"),
        "desk.access.title": ("Who opened which case", "办件查阅记录"),
        "desk.access.none": ("No case has been opened yet.", "尚无查阅记录。"),
        "desk.access.at": ("When", "时间"),
        "desk.access.name": ("Who", "用户"),
    }
)


# --- warnings --------------------------------------------------------------------------------


def _text(request: Request, name: str) -> str | None:
    value = request.query_params.get(name, "").strip()
    if len(value) > MAX_TEXT:
        raise ZhibaoError("desk.bad_text", field=i18n.t(f"desk.filter.{name}"), max=MAX_TEXT)
    return value or None


def _offset(request: Request) -> int:
    raw = request.query_params.get("offset", "0")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise ZhibaoError("desk.bad_offset", offset=raw)
    return int(raw)


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", str(PAGE))
    if not (raw.isascii() and raw.isdigit() and len(raw) < 9 and 1 <= int(raw) <= MAX_PAGE):
        raise ZhibaoError("desk.bad_limit", limit=raw, max=MAX_PAGE)
    return int(raw)


def warnings(node: Node, request: Request, rest: str, session: Session) -> Page:
    colour = request.query_params.get("warning", "red")
    if colour not in COLOURS:
        raise ZhibaoError("case.bad_warning", warning=colour)
    wanted = listing.Filters(
        warning=colour, node=_text(request, "node"), item=_text(request, "item"),
        department=_text(request, "department"),
    )  # fmt: skip
    offset, limit = _offset(request), _limit(request)
    page = views.find_at(node, wanted, limit, offset)
    query = wanted.given()
    if limit != PAGE:
        query["limit"] = str(limit)
    form = _filter_form(query, _children(node))
    if not page.rows:
        body = f'{form}<p class="empty">{escape(i18n.t("desk.warnings.none"))}</p>'
        return Page(i18n.t("desk.warnings.title"), body)
    heads = ["case_id", "item", "status", "holder", "applicant", "received_at", "deadline",
             "remaining", "warning"]  # fmt: skip
    rows = "".join(_warning_row(row) for row in page.rows)
    shown = i18n.t("desk.page.shown", first=offset + 1, last=offset + len(page.rows),
                   total=page.total)  # fmt: skip
    links = []
    if offset > 0:
        back = urlencode({**query, "offset": max(0, offset - limit)})
        links.append(
            f'<a href="{PREFIX}/warnings?{back}">{escape(i18n.t("desk.page.previous"))}</a>'
        )
    if page.rest:
        ahead = urlencode({**query, "offset": offset + len(page.rows)})
        links.append(f'<a href="{PREFIX}/warnings?{ahead}">{escape(i18n.t("desk.page.next"))}</a>')
    body = (
        f"{form}<p>{escape(i18n.tn('desk.warnings.count', page.total))} · {escape(shown)}</p>"
        f'<table id="warnings"><thead><tr>{_heads(heads)}</tr></thead><tbody>{rows}</tbody>'
        f'</table><p class="pages">{" ".join(links)}</p>'
    )
    return Page(i18n.t("desk.warnings.title"), body)


def _heads(keys: list[str]) -> str:
    return "".join(f"<th>{escape(i18n.t('desk.col.' + key))}</th>" for key in keys)


def _cell(value: Any) -> str:
    return f"<td>{escape('' if value is None else str(value))}</td>"


def _warning_row(row: dict[str, Any]) -> str:
    target = escape(quote(row["case_id"], safe=""))
    link = f'<a href="{PREFIX}/case/{target}">{escape(row["case_id"])}</a>'
    item = f"{row['item_code']} {row['item_name'] or ''}".strip()
    colour = i18n.t(f"desk.warning.{row['warning']}") if row["warning"] else ""
    cells = [item, status_label(row["status"]), row["holder"], row["applicant"],
             row["received_at"], row["deadline"], row["remaining_days"], colour]  # fmt: skip
    return f"<tr><td>{link}</td>{''.join(_cell(c) for c in cells)}</tr>"


def _children(node: Node) -> list[tuple[str, str]]:
    """The nodes enrolled directly under this one (a city's towns, a town's villages)."""
    rows = node.store.query(
        "SELECT node_id, name FROM nodes WHERE parent_id = ? ORDER BY node_id", (node.node_id,)
    )
    return [(node_id, name) for node_id, name in rows]


def _filter_form(query: dict[str, str], children: list[tuple[str, str]]) -> str:
    chosen = query.get("warning", "red")
    options = "".join(
        f'<option value="{c}"{" selected" if c == chosen else ""}>'
        f"{escape(i18n.t('desk.warnings.' + c))}</option>"
        for c in COLOURS
    )
    fields = "".join(
        f'<label>{escape(i18n.t("desk.filter." + name))} <input name="{name}" '
        f'value="{escape(query.get(name, ""))}" size="12" maxlength="{MAX_TEXT}"'
        f"{LIST_NODES if name == 'node' else ''}></label> "
        for name in ("node", "item", "department")
    )
    fields += (
        '<datalist id="nodes">'
        + "".join(
            f'<option value="{escape(node_id)}">{escape(name)}</option>'
            for node_id, name in children
        )
        + "</datalist>"
    )
    return (
        f'<form method="get" action="{PREFIX}/warnings"><label>'
        f'{escape(i18n.t("desk.filter.warning"))} <select name="warning">{options}</select>'
        f"</label> {fields}"
        f'<button type="submit">{escape(i18n.t("desk.filter.apply"))}</button></form>'
    )


# --- one case --------------------------------------------------------------------------------


def case(node: Node, request: Request, case_id: str, found: Session) -> Page:
    try:
        view = views.show(node, case_id)
    except CaseNotFoundError:
        said = escape(i18n.t("desk.case.not_found", case_id=case_id))
        return Page(i18n.t("desk.not_found"), f"<p>{said}</p>", 404)
    access.record(node.store, found.name, view["case_id"], node.clock.now().isoformat())
    applicant = view["applicant"] or {}
    names = view.get("node_names", {})

    def named(node_id: str | None) -> str:
        if not node_id:
            return ""
        return f"{node_id} {names[node_id]}" if names.get(node_id) else node_id

    colour = i18n.t(f"desk.warning.{view['warning']}") if view["warning"] else ""
    details: list[tuple[str, Any]] = [
        ("desk.col.case_id", view["case_id"]),
        ("desk.col.item", f"{view['item_code']} {view['item_name'] or ''}".strip()),
        ("desk.col.status", status_label(view["status"])),
        ("desk.col.holder", named(view["holder"])),
        ("desk.case.field.origin", named(view["origin"])),
        ("desk.col.applicant", applicant.get("name")),
        ("desk.case.field.id_no", applicant.get("id_no")),
        ("desk.case.field.phone", applicant.get("phone")),
        ("desk.case.field.materials", "、".join(map(str, view["materials"] or []))),
        ("desk.col.received_at", view["received_at"]),
        ("desk.case.field.accepted_at", view["accepted_at"]),
        ("desk.col.deadline", view["deadline"]),
        ("desk.col.remaining", view["remaining_days"]),
        ("desk.col.warning", colour),
        ("desk.case.field.completed_at", view["completed_at"]),
        ("desk.case.field.result", view["result"]),
        ("desk.case.field.delivered_at", view["delivered_at"]),
        ("desk.case.field.rating", view["rating"]),
    ]
    table = "".join(
        f"<tr><th>{escape(i18n.t(key))}</th>{_cell(value)}</tr>" for key, value in details
    )
    events = "".join(
        "<tr>" + _cell(ev["at"]) + _cell(event_label(ev["type"])) + _cell(named(ev["node_id"]))
        + _cell(i18n.t(f"desk.standing.{ev['standing']}"))
        + _cell(json.dumps(ev["body"], ensure_ascii=False, sort_keys=True)) + "</tr>"
        for ev in view["events"]
    )  # fmt: skip
    heads = "".join(f"<th>{escape(i18n.t('desk.ev.' + k))}</th>"
                    for k in ("at", "type", "node", "standing", "body"))  # fmt: skip
    body = (
        f"<h2>{escape(i18n.t('desk.case.details'))}</h2>"
        f'<table id="case" class="details"><tbody>{table}</tbody></table>'
        f"<h2>{escape(i18n.t('desk.case.events'))}</h2>"
        f'<table id="events"><thead><tr>{heads}</tr></thead><tbody>{events}</tbody></table>'
    )
    return Page(i18n.t("desk.case.title", case_id=view["case_id"]), body)


# --- who opened which case -------------------------------------------------------------------


def access_page(node: Node, request: Request, rest: str, found: Session) -> Page:
    offset = _offset(request)
    records, total = access.recent(node.store, ACCESS_PAGE, offset)
    if not records:
        return Page(i18n.t("desk.access.title"), f"<p>{escape(i18n.t('desk.access.none'))}</p>")
    rows = "".join(
        f'<tr>{_cell(r.at)}{_cell(r.name)}<td>'
        f'<a href="{PREFIX}/case/{escape(quote(r.case_id, safe=""))}">'
        f"{escape(r.case_id)}</a></td></tr>"
        for r in records
    )
    keys = ("desk.access.at", "desk.access.name", "desk.col.case_id")
    heads = "".join(f"<th>{escape(i18n.t(k))}</th>" for k in keys)
    links = []
    if offset > 0:
        back = max(0, offset - ACCESS_PAGE)
        links.append(f'<a href="{PREFIX}/access?offset={back}">'
                     f'{escape(i18n.t("desk.page.previous"))}</a>')  # fmt: skip
    if offset + len(records) < total:
        links.append(f'<a href="{PREFIX}/access?offset={offset + len(records)}">'
                     f'{escape(i18n.t("desk.page.next"))}</a>')  # fmt: skip
    body = (
        f'<table id="access"><thead><tr>{heads}</tr></thead><tbody>{rows}</tbody></table>'
        f'<p class="pages">{" ".join(links)}</p>'
    )
    return Page(i18n.t("desk.access.title"), body)


layout.register("/warnings", warnings, nav=(20, "desk.nav.warnings"))
layout.register("/case/", case, prefix=True)
layout.register("/access", access_page, nav=(90, "desk.nav.access"), admins=True)
