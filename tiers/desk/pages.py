"""The desk's case pages (issue #14): warnings, one case, and who opened which case.

Warnings are `zhibao case list --warning yellow|red` (tiers.cases.listing, the same query and
filters), their CSV and XLSX `case list --format csv|xlsx`'s bytes for the same filters
(tiers.cases.reading.cases_table; a viewer's with the phone masked); a case is `zhibao case
show` (tiers.desk.case_page), its opening recorded in tiers.desk.access, whose records admins
read and download here. Every value escaped; a bad filter is a ZhibaoError (400).
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from sync.node import Node
from sync.protocol import i18n
from sync.protocol.errors import ZhibaoError
from tiers import export
from tiers.cases import listing, reading, views
from tiers.desk import access, case_page, layout
from tiers.desk.layout import Page
from tiers.desk.users import Session
from tiers.export import Table

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
        "desk.access.title": ("Who opened which case", "办件查阅记录"),
        "desk.access.none": ("No case has been opened yet.", "尚无查阅记录。"),
        "desk.access.at": ("When", "时间"),
        "desk.access.name": ("Who", "用户"),
        "desk.access.what": ("Material downloaded", "下载的材料"),
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
    query = wanted.given()
    if limit != PAGE:
        query["limit"] = str(limit)
    if layout.wants_file(request):  # every match, as `case list --format csv|xlsx` writes it
        offset, limit = 0, layout.MAX_EXPORT_ROWS
    page = views.find_at(node, wanted, limit, offset)
    rows = [_seen(row, session) for row in page.rows]
    tools = reading.cases_table(rows, for_people=False)
    people = reading.cases_table(rows, for_people=True)

    def write(fmt: str) -> bytes:
        return export.to_csv(tools) if fmt == "csv" else export.to_xlsx(people)

    form = _filter_form(query, _children(node))
    title = i18n.t("desk.warnings.title")
    if not page.rows:
        body = f'{form}<p class="empty">{escape(i18n.t("desk.warnings.none"))}</p>'
        return Page(title, body, tables=[people], files={people.name: write})
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
    table = layout.html_table(
        _on_screen(people), table_id="warnings", numeric=("remaining",),
        links={"case_id": _case_link},
    )  # fmt: skip
    body = (
        f"{form}<p>{escape(i18n.tn('desk.warnings.count', page.total))} · {escape(shown)}</p>"
        f'{table}<p class="pages">{" ".join(links)}</p>'
    )
    return Page(title, body, tables=[people], files={people.name: write})


def _seen(row: dict[str, Any], session: Session) -> dict[str, Any]:
    """A `case list` row as `session` may see it (a viewer: the phone masked)."""
    if session.role == "admin":
        return row
    return row | {"phone": case_page.mask_phone(row["phone"])}


_SCREEN = ("case_id", "item", "status", "holder", "applicant", "received_at", "deadline",
           "remaining", "warning")  # fmt: skip


def _on_screen(people: Table) -> Table:
    """The warnings' columns that fit a screen, in the words of `case list`'s XLSX."""
    rows = [
        {**row, "item": f"{row['item_code']} {row['item_name'] or ''}".strip(),
         "remaining": row["remaining_days"]}
        for row in people.rows
    ]  # fmt: skip
    heads = [i18n.t("desk.col." + key) for key in _SCREEN]
    return Table("warnings", _SCREEN, heads, rows)


def _case_link(row: Mapping[str, Any]) -> str:
    return "/case/" + layout.path_part(row["case_id"])


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


# --- who opened which case -------------------------------------------------------------------


def access_page(node: Node, request: Request, rest: str, found: Session) -> Page:
    offset, size = _offset(request), ACCESS_PAGE
    if layout.wants_file(request):
        offset, size = 0, layout.MAX_EXPORT_ROWS
    records, total = access.recent(node.store, size, offset)
    keys = ("at", "name", "case_id", "what")
    heads = [i18n.t(k) for k in ("desk.access.at", "desk.access.name", "desk.col.case_id",
                                 "desk.access.what")]  # fmt: skip
    table = Table("access", keys, heads, [r.to_json() for r in records])
    title = i18n.t("desk.access.title")
    if not records:
        return Page(title, f"<p>{escape(i18n.t('desk.access.none'))}</p>", tables=[table])
    links = []
    if offset > 0:
        back = max(0, offset - ACCESS_PAGE)
        links.append(f'<a href="{PREFIX}/access?offset={back}">'
                     f'{escape(i18n.t("desk.page.previous"))}</a>')  # fmt: skip
    if offset + len(records) < total:
        links.append(f'<a href="{PREFIX}/access?offset={offset + len(records)}">'
                     f'{escape(i18n.t("desk.page.next"))}</a>')  # fmt: skip
    body = (
        layout.html_table(table, table_id="access", links={"case_id": _case_link})
        + f'<p class="pages">{" ".join(links)}</p>'
    )
    return Page(title, body, tables=[table])


layout.register("/warnings", warnings, nav=(20, "desk.nav.warnings"))
layout.register("/case/", case_page.case, prefix=True)
layout.register("/access", access_page, nav=(90, "desk.nav.access"), admins=True)
