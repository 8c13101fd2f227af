"""The desk's web pages (issue #14), an ASGI app `zhibao serve` mounts at /desk.

Nothing but the login page, its language switch and the style sheet answers without a
login: a page redirects to the login, anything else is 401. Sessions live in the node's
database (tiers.desk.users), their cookie HttpOnly, SameSite=Strict, Path=/desk; every form
that changes something carries a CSRF token; failed logins for a name wait longer and longer.
Pages are rendered on the event loop without awaiting, in the reader's language (Chinese
unless the switch says English), every value escaped. Read-only: nothing goes in the log.
"""

from __future__ import annotations

import hmac
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sync.node import Node
from sync.protocol import i18n
from sync.protocol.errors import ZhibaoError
from tiers.city import stats as city_stats
from tiers.desk import access, pages, users
from tiers.figures import month_of, parse_period

PREFIX = "/desk"
SESSION_COOKIE, LOGIN_COOKIE, LANG_COOKIE = "zhibao_desk", "zhibao_desk_login", "zhibao_desk_lang"
LANGS = ("zh", "en")
MAX_FORM = 4096
FREE_FAILURES = 3  # failed logins for a name before each next one has to wait
MAX_WAIT = 900.0  # seconds: the longest wait after failed logins
MAX_TRACKED = 4096  # names whose failures are remembered (the oldest forgotten first)
COLUMNS = city_stats.DEFAULT_COLUMNS
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
CSS = (Path(__file__).parent / "desk.css").read_bytes()

i18n.register(
    {
        "desk.title": ("zhibao desk: {name}", "直报工作台：{name}"),
        "desk.login": ("Log in", "登录"),
        "desk.logout": ("Log out", "退出"),
        "desk.name": ("Name", "用户名"),
        "desk.password": ("Password", "密码"),
        "desk.login_failed": ("Wrong name or password.", "用户名或密码错误。"),
        "desk.login_wait": (
            "Too many failed logins for this name: try again in {seconds} s.",
            "该用户名登录失败次数过多：请 {seconds} 秒后再试。",
        ),
        "desk.form_expired": ("The form expired: please log in again.", "表单已过期：请重新登录。"),
        "desk.signed_in": ("{name} ({role})", "{name}（{role}）"),
        "desk.overview": (
            "Figures for {period} ({start} to {end}) by node",
            "{period} 各节点统计（{start} 至 {end}）",
        ),
        "desk.download": ("Download:", "下载："),
        "desk.other_month": ("Month", "月份"),
        "desk.show": ("Show", "查看"),
        "desk.switch": ("中文", "English"),  # the other language, in its own words
        "desk.not_found": ("No such page.", "没有这个页面。"),
        "desk.unauthorised": ("Log in first.", "请先登录。"),
        "desk.bad_request": ("Bad request.", "请求无效。"),
    }
)


class Desk:
    """The desk of the node `open_node` opens (once, on the first request; `close` closes
    it). `now` (seconds) measures idle sessions and login waits; tests inject it."""

    def __init__(
        self,
        open_node: Callable[[], Node],
        *,
        now: Callable[[], float] = time.time,
        idle_seconds: float | None = None,
    ) -> None:
        self._open = open_node
        self._node: Node | None = None
        self.now = now
        self._idle = idle_seconds
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

    @property
    def node(self) -> Node:
        if self._node is None:
            self._node = self._open()
            users.ensure(self._node.store)
            access.ensure(self._node.store)
        return self._node

    @property
    def idle_seconds(self) -> float:
        if self._idle is None:
            self._idle = users.idle_seconds(self.node.config.settings)
        return self._idle

    def close(self) -> None:
        if self._node is not None:
            self._node.close()
            self._node = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        path = path or "/"
        lang = request.cookies.get(LANG_COOKIE)
        lang = lang if lang in LANGS else "zh"
        body: bytes | None = b""
        if request.method == "POST":
            body = await _read_body(request)
        with i18n.speaking(lang):
            try:
                response = self._route(request, path, lang, body)
            except ZhibaoError as exc:
                response = _page(i18n.t("desk.bad_request"), f"<p>{escape(str(exc))}</p>", 400)
        response.headers.update(HEADERS)
        await response(scope, receive, send)

    # --- routing ---------------------------------------------------------------------------

    def _route(self, request: Request, path: str, lang: str, body: bytes | None) -> Response:
        method = request.method
        if path == "/desk.css" and method == "GET":
            return Response(CSS, media_type="text/css")
        if path == "/lang" and method == "GET":
            return self._switch(request)
        if path == "/login":
            if method == "GET":
                return self._login_page()
            if method == "POST" and body is not None:
                return self._login(request, _form(body))
        token = request.cookies.get(SESSION_COOKIE, "")
        found = None
        if token:
            found = users.session(self.node.store, token, self.now(), self.idle_seconds)
        if found is None:
            if method == "GET" and path in ("/", ""):
                return _redirect("/login")
            return _page(i18n.t("desk.unauthorised"),
                         f'<p><a href="{PREFIX}/login">{escape(i18n.t("desk.login"))}</a></p>',
                         401)  # fmt: skip
        if path == "/logout" and method == "POST" and body is not None:
            if not hmac.compare_digest(_form(body).get("csrf", ""), found.csrf):
                return _page(i18n.t("desk.bad_request"), "", 403)
            users.close_session(self.node.store, token)
            response = _redirect("/login")
            response.delete_cookie(SESSION_COOKIE, path=PREFIX, httponly=True, samesite="strict")
            return response
        if method == "GET" and path == "/":
            return self._overview(request, found)
        if method == "GET" and path in ("/stats.csv", "/stats.xlsx"):
            return self._download(request, path.rsplit(".", 1)[1])
        if method == "GET":
            shown = pages.route(self.node, request, path, found)
            if shown is not None:
                return _page(*shown, found)
        return _page(i18n.t("desk.not_found"), "", 404)

    # --- login -----------------------------------------------------------------------------

    def _switch(self, request: Request) -> Response:
        to = request.query_params.get("to", "zh")
        back = "/" if request.cookies.get(SESSION_COOKIE) else "/login"
        response = _redirect(back)
        if to in LANGS:
            response.set_cookie(LANG_COOKIE, to, path=PREFIX, httponly=True, samesite="strict")
        return response

    def _login_page(self, message: str = "", status: int = 200) -> Response:
        pre = secrets.token_urlsafe(24)
        said = f'<p class="error">{escape(message)}</p>' if message else ""
        body = (
            f'{said}<form method="post" action="{PREFIX}/login">'
            f'<input type="hidden" name="csrf" value="{pre}">'
            f'<label>{escape(i18n.t("desk.name"))} <input name="name" autocomplete="username" '
            f'required></label> <label>{escape(i18n.t("desk.password"))} <input name="password" '
            f'type="password" autocomplete="current-password" required></label> '
            f'<button type="submit">{escape(i18n.t("desk.login"))}</button></form>'
        )
        response = _page(i18n.t("desk.login"), body, status)
        response.set_cookie(LOGIN_COOKIE, pre, path=PREFIX, httponly=True, samesite="strict")
        return response

    def _login(self, request: Request, form: dict[str, str]) -> Response:
        pre = request.cookies.get(LOGIN_COOKIE, "")
        if not pre or not hmac.compare_digest(form.get("csrf", ""), pre):
            return self._login_page(i18n.t("desk.form_expired"), 403)
        name, password = form.get("name", ""), form.get("password", "")
        now = self.now()
        count, until = self._failures.get(name, (0, 0.0))
        if now < until:
            return self._login_page(i18n.t("desk.login_wait", seconds=math.ceil(until - now)), 429)
        user = users.authenticate(self.node.store, name, password)
        if user is None:
            self._failed(name, count + 1, now)
            return self._login_page(i18n.t("desk.login_failed"), 401)
        self._failures.pop(name, None)
        token = users.open_session(self.node.store, user.name, now, self.idle_seconds)
        response = _redirect("/")
        response.set_cookie(SESSION_COOKIE, token, path=PREFIX, httponly=True, samesite="strict")
        response.delete_cookie(LOGIN_COOKIE, path=PREFIX, httponly=True, samesite="strict")
        return response

    def _failed(self, name: str, count: int, now: float) -> None:
        wait = 0.0 if count < FREE_FAILURES else min(2.0 ** (count - FREE_FAILURES), MAX_WAIT)
        self._failures[name] = (count, now + wait)
        self._failures.move_to_end(name)
        while len(self._failures) > MAX_TRACKED:
            self._failures.popitem(last=False)

    # --- pages -----------------------------------------------------------------------------

    def _stats(self, request: Request) -> dict[str, Any]:
        node = self.node
        today = node.clock.now().date()
        asked = request.query_params.get("period")
        period = parse_period(asked) if asked else month_of(today)
        return city_stats.compute_stats(node.store, period, "node", today, node.config.settings)

    def _overview(self, request: Request, found: users.Session) -> Response:
        result = self._stats(request)
        shown = city_stats.table_columns(result, COLUMNS)
        heads = city_stats.headers(shown, "node")
        rows = city_stats.table_rows(result, shown)
        period = quote(result["period"])
        head = "".join(f"<th>{escape(h)}</th>" for h in heads)
        cells = "".join(
            "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows
        )
        body = (
            f"<h2>{escape(i18n.t('desk.overview', period=result['period'], start=result['from'], end=result['to']))}</h2>"  # noqa: E501
            f'<form method="get" action="{PREFIX}/"><label>{escape(i18n.t("desk.other_month"))} '
            f'<input name="period" value="{escape(result["period"])}" size="8"></label> '
            f'<button type="submit">{escape(i18n.t("desk.show"))}</button></form>'
            f'<table id="stats"><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>'
            f'<p>{escape(i18n.t("desk.download"))} <a href="{PREFIX}/stats.xlsx?period={period}">'
            f'XLSX</a> <a href="{PREFIX}/stats.csv?period={period}">CSV</a></p>'
        )
        return _page(i18n.t("desk.title", name=self.node.config.name), body, 200, found)

    def _download(self, request: Request, fmt: str) -> Response:
        result = self._stats(request)
        if fmt == "csv":
            data, media = city_stats.to_csv(result), "text/csv; charset=utf-8"
        else:
            data = city_stats.to_xlsx(result)
            media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        name = f"stats-{result['period']}.{fmt}"
        disposition = f'attachment; filename="{name}"'
        return Response(data, media_type=media, headers={"Content-Disposition": disposition})


def _page(title: str, body: str, status: int, found: users.Session | None = None) -> Response:
    other = "en" if i18n.locale() == "zh" else "zh"
    bar = f'<a href="{PREFIX}/lang?to={other}">{escape(i18n.t("desk.switch"))}</a>'
    if found is not None:
        who = i18n.t("desk.signed_in", name=found.name, role=i18n.t("desk.role." + found.role))
        bar = (
            f"{pages.nav(found)} <span>{escape(who)}</span> {bar} "
            f'<form method="post" action="{PREFIX}/logout" class="inline">'
            f'<input type="hidden" name="csrf" value="{escape(found.csrf)}">'
            f'<button type="submit">{escape(i18n.t("desk.logout"))}</button></form>'
        )
    html = (
        f'<!doctype html><html lang="{"zh-CN" if i18n.locale() == "zh" else "en"}"><head>'
        f'<meta charset="utf-8"><title>{escape(title)}</title>'
        f'<link rel="stylesheet" href="{PREFIX}/desk.css"></head><body>'
        f"<header><h1>{escape(title)}</h1><nav>{bar}</nav></header><main>{body}</main>"
        "</body></html>"
    )
    return Response(html, status_code=status, media_type="text/html; charset=utf-8")


def _redirect(to: str) -> Response:
    return Response(status_code=303, headers={"Location": PREFIX + to})


async def _read_body(request: Request) -> bytes | None:
    """The form's bytes, or None when it is longer than a login form can be."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return None
    return body


def _form(body: bytes) -> dict[str, str]:
    parsed = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=8)
    return {key: values[0] for key, values in parsed.items() if values}
