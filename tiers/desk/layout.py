"""What every desk page shares: the `Page` a handler returns, the shell around it, the HTML
form of a `tiers.export.Table`, the pages' navigation and the files under /desk/static/.

A handler returns a `Page`: its title, its body (HTML, every value already escaped) and the
tables it shows. The app offers each table as CSV and XLSX under the page (the same query
with `format=csv|xlsx&table=NAME`, written by `tiers.export`, the writer `stats` uses), so
every table on the desk exports the same way. A handler asked for a `format` puts every row
in its tables, not one screen (`wants_file`), at most `MAX_EXPORT_ROWS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response

from sync.node import Node
from sync.protocol import i18n
from tiers import export
from tiers.desk.users import Session
from tiers.export import MONEY, PERCENT, Table

PREFIX = "/desk"
FILE_FORMATS = ("csv", "xlsx")
MAX_EXPORT_ROWS = 100_000
STATIC = Path(__file__).parent / "static"
_MEDIA = {".css": "text/css", ".js": "text/javascript", ".txt": "text/plain; charset=utf-8",
          ".svg": "image/svg+xml"}  # fmt: skip
# Served by name only: the files the package ships, read once.
STATIC_FILES = {
    path.name: (path.read_bytes(), _MEDIA[path.suffix])
    for path in sorted(STATIC.iterdir())
    if path.suffix in _MEDIA
}

Handler = Callable[[Node, Request, str, Session], "Page | Response | None"]
# The pages: path -> (handler, whether the path is a prefix, admins only); `register` fills it.
ROUTES: dict[str, tuple[Handler, bool, bool]] = {}
# The pages in the header: (order, path, i18n key, admins only).
NAV: list[tuple[int, str, str, bool]] = []

i18n.register(
    {
        "desk.download": ("Download:", "下载："),
        "desk.switch": ("中文", "English"),  # the other language, in its own words
        "desk.logout": ("Log out", "退出"),
        "desk.signed_in": ("{name} ({role})", "{name}（{role}）"),
        "desk.forbidden": ("Only an admin may see this page.", "只有管理员可以查看此页面。"),
    }
)


@dataclass(frozen=True)
class Page:
    """One page: title, body HTML (escaped), status, the tables it offers as files, and
    the scripts under /desk/static/ it loads (in order, at the end of the body). `files`
    writes a table's file itself (name -> writer(format) -> bytes) where its file must be
    exactly a command's (the overview's figures are `stats --out`'s bytes)."""

    title: str
    body: str
    status: int = 200
    tables: Sequence[Table] = ()
    scripts: Sequence[str] = ()
    files: Mapping[str, Callable[[str], bytes]] = field(default_factory=dict)
    reload: int | None = None  # seconds after which the page reloads itself (a meta refresh)

    def file(self, name: str | None, fmt: str) -> tuple[str, bytes] | None:
        """The file `name.fmt` (the first table when no name), or None when there is no
        such table."""
        chosen = next((t for t in self.tables if name in (None, t.name)), None)
        if chosen is None:
            return None
        writer = self.files.get(chosen.name)
        if writer is not None:
            return chosen.name, writer(fmt)
        return chosen.name, export.to_csv(chosen) if fmt == "csv" else export.to_xlsx(chosen)


def register(
    path: str,
    handler: Handler,
    *,
    nav: tuple[int, str] | None = None,
    prefix: bool = False,
    admins: bool = False,
) -> None:
    """Serve GET `path` (every path under it, when `prefix`) by `handler(node, request, rest,
    session)`, `rest` being what follows `path`; `nav` = (order, i18n key) puts a link in the
    header; `admins`: a viewer gets 403 (and no link)."""
    ROUTES[path] = (handler, prefix, admins)
    if nav is not None:
        if not i18n.has(nav[1]):  # a header link would show its key
            raise ValueError(f"desk page {path}: register {nav[1]!r} before the page")
        NAV.append((nav[0], path, nav[1], admins))
        NAV.sort()


def route(
    node: Node, request: Request, path: str, session: Session
) -> Page | Response | None:
    """The page at `path` for `session` (or a file it serves itself, as a Response), or None
    when there is none."""
    found = ROUTES.get(path)
    rest = ""
    if found is None:
        for start, entry in ROUTES.items():
            if entry[1] and path.startswith(start):
                found, rest = entry, path[len(start) :]
                break
    if found is None or (found[1] and not rest) or (not found[1] and rest):
        return None
    handler, _, admins = found
    if admins and session.role != "admin":
        return Page(i18n.t("desk.forbidden"), "", 403)
    return handler(node, request, rest, session)


def wants_file(request: Request) -> bool:
    """Whether the page is asked as a file (then every row, not one screen)."""
    return request.query_params.get("format") in FILE_FORMATS


def shown(value: Any, kind: str | None = None) -> str:
    """A cell's text on the page: empty for None, rates as 12.3 %, money (fen) in yuan."""
    if value is None:
        return ""
    if kind == PERCENT and isinstance(value, int | float):
        return f"{value * 100:.1f}%"
    if kind == MONEY and isinstance(value, int | float):
        return f"{value / 100:,.2f}"
    return str(value)


def html_table(
    table: Table,
    *,
    table_id: str | None = None,
    links: Mapping[str, Callable[[Mapping[str, Any]], str | None]] | None = None,
    numeric: Sequence[str] = (),
) -> str:
    """`table` as an HTML table: headers in the reader's language, every cell escaped;
    `links` maps a column to the desk path its cell opens (None: no link); `numeric`
    columns are right-aligned."""
    links = links or {}
    ident = f' id="{escape(table_id)}"' if table_id else ""
    head = "".join(
        f'<th{" class=num" if c in numeric else ""}>{escape(h)}</th>'
        for c, h in zip(table.columns, table.headers, strict=True)
    )
    body = []
    for row in table.rows:
        cells = []
        for column in table.columns:
            text = escape(shown(row.get(column), table.formats.get(column)))
            target = links[column](row) if column in links else None
            if target:
                text = f'<a href="{escape(PREFIX + target)}">{text}</a>'
            align = ' class="num"' if column in numeric else ""
            cells.append(f"<td{align}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table{ident}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def path_part(value: str) -> str:
    """`value` as one segment of a desk path (a case id, a node id), percent-encoded."""
    return quote(value, safe="")


def downloads(path: str, request: Request, tables: Sequence[Table]) -> str:
    """Links to each table of the page as CSV and XLSX (the page's own query kept)."""
    if not tables:
        return ""
    query = {k: v for k, v in request.query_params.items()
             if k not in ("format", "table", "offset", "limit")}  # fmt: skip
    links = []
    for table in tables:
        for fmt in FILE_FORMATS:
            wanted = urlencode({**query, "format": fmt, "table": table.name})
            label = f"{table.name}.{fmt}" if len(tables) > 1 else fmt.upper()
            links.append(f'<a href="{escape(PREFIX + path)}?{escape(wanted)}">{escape(label)}</a>')
    return f'<p class="downloads">{escape(i18n.t("desk.download"))} {" ".join(links)}</p>'


def nav(session: Session) -> str:
    """The links to the desk's pages, for the header."""
    return " ".join(
        f'<a href="{PREFIX}{to}">{escape(i18n.t(key))}</a>'
        for _, to, key, admins in NAV
        if not admins or session.role == "admin"
    )


def document(page: Page, session: Session | None, extra: str = "") -> str:
    """The whole HTML document of `page` (`extra`: more escaped HTML under its body)."""
    other = "en" if i18n.locale() == "zh" else "zh"
    bar = f'<a href="{PREFIX}/lang?to={other}">{escape(i18n.t("desk.switch"))}</a>'
    if session is not None:
        who = i18n.t("desk.signed_in", name=session.name, role=i18n.t("desk.role." + session.role))
        bar = (
            f"{nav(session)} <span>{escape(who)}</span> {bar} "
            f'<form method="post" action="{PREFIX}/logout" class="inline">'
            f'<input type="hidden" name="csrf" value="{escape(session.csrf)}">'
            f'<button type="submit">{escape(i18n.t("desk.logout"))}</button></form>'
        )
    scripts = "".join(
        f'<script src="{PREFIX}/static/{escape(name)}"></script>' for name in page.scripts
    )
    return (
        f'<!doctype html><html lang="{"zh-CN" if i18n.locale() == "zh" else "en"}"><head>'
        f'<meta charset="utf-8"><meta name="viewport" content="width=device-width">'
        + (f'<meta http-equiv="refresh" content="{int(page.reload)}">' if page.reload else "")
        + f"<title>{escape(page.title)}</title>"
        f'<link rel="icon" href="{PREFIX}/static/favicon.svg" type="image/svg+xml">'
        f'<link rel="stylesheet" href="{PREFIX}/static/desk.css"></head><body>'
        f"<header><h1>{escape(page.title)}</h1><nav>{bar}</nav></header>"
        f"<main>{page.body}{extra}</main>{scripts}</body></html>"
    )
