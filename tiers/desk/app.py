"""The desk's web pages (issue #14), an ASGI app `zhibao serve` mounts at /desk.

Nothing but the login page, its language switch and the shipped files (tiers/desk/static:
style, scripts, icon; no figure in them) answers without a login, and none of them waits for
the desk's lock or its node: a page redirects to the login, anything else is 401. Sessions
live in the node's database (tiers.desk.users), their cookie HttpOnly, SameSite=Strict,
Path=/desk, a new one at each login; every form that changes something carries a CSRF
token. Failed logins wait longer and longer, counted per (name, client address) — a
stranger cannot slow someone's logins from elsewhere — under a looser cap per name (many
addresses guessing one name); both kept for at most `MAX_TRACKED` keys, the oldest whose
wait is over forgotten first. Every attempt counts as failed until its password checked
out, so attempts sent at once wait like attempts sent one after another. At most
`MAX_CHECKING` passwords are checked at once (each check takes 19 MiB and a core): a
stranger sending logins by the hundred is told to try again, not given the node's memory;
a name no one can have (`users.NAME`) is refused without a check.
(Behind a reverse proxy every reader has the proxy's address: the per-name cap still holds.)
Pages (tiers.desk.layout's routes) are rendered in a worker thread, one at a time, in the
reader's language (Chinese unless the switch says English), every value escaped; each table
on a page downloads as CSV or XLSX; a page that fails unforeseen answers 500 and logs one line
(where, never the message: it may quote personal data). A login's password check (Argon2id,
slow on purpose) runs in its worker thread outside that one-at-a-time lock: other pages, and
the node's sync requests, go on meanwhile. Read-only: nothing goes in the log.
"""

from __future__ import annotations

import hmac
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from html import escape
from typing import Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sync.logs import log_line
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.errors import ZhibaoError, describe
from tiers.desk import (
    access,
    case_page,
    figures,
    findings_page,
    layout,
    network_page,
    overview,
    pages,
    users,
)

# The modules whose pages register themselves with tiers.desk.layout when imported.
PAGES = (overview, pages, network_page, findings_page)
PREFIX = "/desk"
SESSION_COOKIE, LOGIN_COOKIE, LANG_COOKIE = "zhibao_desk", "zhibao_desk_login", "zhibao_desk_lang"
LANGS = ("zh", "en")
MAX_FORM = 4096
FREE_FAILURES = 3  # failed logins of a name from one address before each next one waits
NAME_FREE_FAILURES = 30  # failed logins of a name from every address before each next waits
MAX_WAIT = 900.0  # seconds: the longest wait after failed logins
MAX_TRACKED = 4096  # (name, address) pairs, and names, whose failures are remembered
MAX_CHECKING = 2  # password checks at once (Argon2id: 19 MiB and a core's second or so each)
CHECK_QUEUE = 2.0  # seconds a login waits for a check to end before it is told to try again
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

i18n.register(
    {
        "desk.login": ("Log in", "登录"),
        "desk.name": ("Name", "用户名"),
        "desk.password": ("Password", "密码"),
        "desk.login_failed": ("Wrong name or password.", "用户名或密码错误。"),
        "desk.login_wait": (
            "Too many failed logins for this name: try again in {seconds} s.",
            "该用户名登录失败次数过多：请 {seconds} 秒后再试。",
        ),
        "desk.login_busy": (
            "Many logins are being checked just now: please try again in a moment.",
            "当前正在核验的登录较多：请稍后再试。",
        ),
        "desk.form_expired": ("The form expired: please log in again.", "表单已过期：请重新登录。"),
        "desk.not_found": ("No such page.", "没有这个页面。"),
        "desk.unauthorised": ("Log in first.", "请先登录。"),
        "desk.bad_request": ("Bad request.", "请求无效。"),
        "desk.internal": (
            "Something went wrong on the desk; the node's log says where.",
            "工作台出错；节点日志中记录了出错位置。",
        ),
        "desk.bad_format": ("'{format}' is not a file format: csv or xlsx.",
                            "“{format}”不是文件格式：csv 或 xlsx。"),
    }
)


class Desk:
    """The desk of the node `open_node` opens (once, on the first request; `close` closes
    it). `now` (seconds) measures idle sessions and login waits; tests inject it. With
    `warm`, a `tiers.desk.figures.Warmer` on a second connection keeps the overview's
    figures computed from the first request on (the login page: they are being computed
    while the reader types their password)."""

    def __init__(
        self,
        open_node: Callable[[], Node],
        *,
        now: Callable[[], float] = time.time,
        idle_seconds: float | None = None,
        warm: bool = True,
    ) -> None:
        self._open = open_node
        self._node: Node | None = None
        self.now = now
        self._idle = idle_seconds
        self._warm = warm
        self._warmer: figures.Warmer | None = None
        self._failures: OrderedDict[tuple[str, str], tuple[int, float]] = OrderedDict()
        self._name_failures: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._checking = threading.BoundedSemaphore(MAX_CHECKING)

    @property
    def node(self) -> Node:
        if self._node is None:
            node = self._open()
            users.ensure(node.store)
            access.ensure(node.store, node.config.settings, node.clock.now())
            self._node = node
        return self._node

    @property
    def idle_seconds(self) -> float:
        if self._idle is None:
            self._idle = users.idle_seconds(self.node.config.settings)
        return self._idle

    def start(self) -> None:
        """Start warming the figures now (`serve` does, with the server), not on the first
        request: the first reader then finds this month's overview computed."""
        if self._warm and self._warmer is None:
            self._warmer = figures.Warmer(self._open)

    def close(self) -> None:
        if self._warmer is not None:
            self._warmer.stop()
            self._warmer = None
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
        self.start()  # (started by `serve` already; an app made otherwise starts it here)
        if request.method == "POST":
            body = await _read_body(request)
        response = await run_in_threadpool(self._answer, request, path, lang, body)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        await response(scope, receive, send)

    def _answer(self, request: Request, path: str, lang: str, body: bytes | None) -> Response:
        """One request's answer, in a worker thread (the server's event loop goes on with
        sync requests meanwhile), one at a time (the desk's node has one connection); a login
        holds that lock only around its database reads and writes, not its password check."""
        try:
            with i18n.speaking(lang):
                try:
                    if path == "/login" and request.method == "POST" and body is not None:
                        return self._login(request, _form(body))
                    if request.method == "GET" and (path in ("/login", "/lang")
                                                    or path.startswith("/static/")):  # fmt: skip
                        return self._shell(request, path)  # no node: not behind others' pages
                    with self._lock:
                        return self._route(request, path, lang, body)
                except ZhibaoError as exc:
                    said = f"<p>{escape(str(exc))}</p>"
                    return _page(layout.Page(i18n.t("desk.bad_request"), said, 400))
        except Exception as exc:  # a bug: this page fails, one line in the operator's words
            log_line("server.internal_logged", method=request.method, path=PREFIX + path,
                     error=describe(exc))  # fmt: skip
            with i18n.speaking(lang):
                return _page(layout.Page(i18n.t("desk.internal"), "", 500))

    # --- routing ---------------------------------------------------------------------------

    def _shell(self, request: Request, path: str) -> Response:
        """What answers without the node: the shipped files, the language switch, the login
        page (outside the desk's lock: a slow page of another reader does not hold them)."""
        if path == "/lang":
            return self._switch(request)
        if path == "/login":
            return self._login_page()
        shipped = layout.STATIC_FILES.get(path[len("/static/") :])
        if shipped is None:
            return _page(layout.Page(i18n.t("desk.not_found"), "", 404))
        return Response(shipped[0], media_type=shipped[1],
                        headers={"Cache-Control": "max-age=3600"})  # fmt: skip

    def _route(self, request: Request, path: str, lang: str, body: bytes | None) -> Response:
        method = request.method
        token = request.cookies.get(SESSION_COOKIE, "")
        found = None
        if token:
            found = users.session(self.node.store, token, self.now(), self.idle_seconds)
        if found is None:
            if method == "GET" and not _is_file(request, path):  # a page: to the login
                return _redirect("/login")
            link = f'<p><a href="{PREFIX}/login">{escape(i18n.t("desk.login"))}</a></p>'
            return _page(layout.Page(i18n.t("desk.unauthorised"), link, 401))
        if path == "/logout" and method == "POST" and body is not None:
            if not hmac.compare_digest(_form(body).get("csrf", ""), found.csrf):
                return _page(layout.Page(i18n.t("desk.bad_request"), "", 403))
            users.close_session(self.node.store, token)
            response = _redirect("/login")
            response.delete_cookie(SESSION_COOKIE, path=PREFIX, httponly=True, samesite="strict")
            return response
        if method == "GET":
            try:
                return self._serve(request, path, found)
            except ZhibaoError as exc:  # a bad month or filter: said under the desk's header
                said = f"<p>{escape(str(exc))}</p>"
                return _page(layout.Page(i18n.t("desk.bad_request"), said, 400), found)
        return _page(layout.Page(i18n.t("desk.not_found"), "", 404), found)

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
        response = _page(layout.Page(i18n.t("desk.login"), body, status))
        response.set_cookie(LOGIN_COOKIE, pre, path=PREFIX, httponly=True, samesite="strict")
        return response

    def _login(self, request: Request, form: dict[str, str]) -> Response:
        pre = request.cookies.get(LOGIN_COOKIE, "")
        if not pre or not hmac.compare_digest(form.get("csrf", ""), pre):
            return self._login_page(i18n.t("desk.form_expired"), 403)
        name, password = form.get("name", ""), form.get("password", "")
        if not users.NAME.fullmatch(name):  # no one's name: nothing to check, nothing to count
            return self._login_page(i18n.t("desk.login_failed"), 401)
        if not self._checking.acquire(timeout=CHECK_QUEUE):  # memory and cores stay bounded
            return self._login_page(i18n.t("desk.login_busy"), 503)
        try:
            return self._check(request, name, password)
        finally:
            self._checking.release()

    def _check(self, request: Request, name: str, password: str) -> Response:
        """`_login` once its form is good: the waits, the password, the session."""
        address = request.client.host if request.client else ""
        now = self.now()
        with self._lock:
            until = max(self._failures.get((name, address), (0, 0.0))[1],
                        self._name_failures.get(name, (0, 0.0))[1])  # fmt: skip
            if now < until:
                wait = math.ceil(until - now)
                return self._login_page(i18n.t("desk.login_wait", seconds=wait), 429)
            self._failed(name, address, now)  # until the password checks out
            found = users.find(self.node.store, name)
        user = users.verify(found, password)  # Argon2id, outside the lock
        with self._lock:
            if user is None:
                return self._login_page(i18n.t("desk.login_failed"), 401)
            self._forgive(name, address)
            token = users.open_session(self.node.store, user.name, now, self.idle_seconds)
        response = _redirect("/")
        response.set_cookie(SESSION_COOKIE, token, path=PREFIX, httponly=True, samesite="strict")
        response.delete_cookie(LOGIN_COOKIE, path=PREFIX, httponly=True, samesite="strict")
        return response

    def _failed(self, name: str, address: str, now: float) -> None:
        """Count a failed login of `name` from `address` (under the desk's lock)."""
        _count(self._failures, (name, address), FREE_FAILURES, now)
        _count(self._name_failures, name, NAME_FREE_FAILURES, now)

    def _forgive(self, name: str, address: str) -> None:
        """`name` logged in from `address`: its failures are forgotten (under the lock)."""
        self._failures.pop((name, address), None)
        self._name_failures.pop(name, None)

    # --- pages -----------------------------------------------------------------------------

    def _serve(self, request: Request, path: str, found: users.Session) -> Response:
        """A page, or one of its tables as a file (`format=csv|xlsx`, `table=NAME`)."""
        fmt = request.query_params.get("format")
        if fmt is not None and fmt not in layout.FILE_FORMATS:  # said before a page is made
            raise ZhibaoError("desk.bad_format", format=fmt)  # (and a case's opening recorded)
        if path in ("/stats.csv", "/stats.xlsx"):  # the overview's figures, as `stats --out`
            name, data = overview.stats_file(self.node, request, path.rsplit(".", 1)[1])
            return _file(name, path.rsplit(".", 1)[1], data)
        page = layout.route(self.node, request, path, found)
        if page is None:
            return _page(layout.Page(i18n.t("desk.not_found"), "", 404), found)
        if isinstance(page, Response):  # a file the page serves itself (a case's material)
            return page
        if fmt is not None and page.status == 200:
            made = page.file(request.query_params.get("table"), fmt)
            if made is None:
                return _page(layout.Page(i18n.t("desk.not_found"), "", 404), found)
            return _file(made[0], fmt, made[1])
        return _page(page, found, layout.downloads(path, request, page.tables))


def _count(failures: OrderedDict[Any, tuple[int, float]], key: Any, free: int,
           now: float) -> None:  # fmt: skip
    """One more failure for `key`: past `free` of them, the next login waits 1 s, 2 s,
    4 s… (at most `MAX_WAIT`); at most `MAX_TRACKED` keys, the oldest whose wait is over
    forgotten first (a guesser sending made-up names cannot push out the name it guesses),
    the oldest of all when every one still waits."""
    count = failures.get(key, (0, 0.0))[0] + 1
    wait = 0.0 if count < free else min(2.0 ** (count - free), MAX_WAIT)
    failures[key] = (count, now + wait)
    failures.move_to_end(key)
    while len(failures) > MAX_TRACKED:
        over = next((k for k, (_, until) in failures.items() if until <= now), None)
        if over is None:
            failures.popitem(last=False)
        else:
            del failures[over]


def _is_file(request: Request, path: str) -> bool:
    """Whether a GET asks for a file (a table's CSV/XLSX, a material), not a page."""
    return ("format" in request.query_params or path.endswith((".csv", ".xlsx"))
            or "/material/" in path)  # fmt: skip


def _page(page: layout.Page, found: users.Session | None = None, extra: str = "") -> Response:
    html = layout.document(page, found, extra)
    return Response(html, status_code=page.status, media_type="text/html; charset=utf-8")


def _file(name: str, fmt: str, data: bytes) -> Response:
    media = ("text/csv; charset=utf-8" if fmt == "csv"
             else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")  # fmt: skip
    named = case_page.disposition(f"{name}.{fmt}")  # a table's name may be Chinese (办件)
    return Response(data, media_type=media, headers={"Content-Disposition": named})


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
    """The form's fields (first value of each); none when it has more than a desk form."""
    try:
        parsed = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=8)
    except ValueError:  # more fields than any form of the desk has
        return {}
    return {key: values[0] for key, values in parsed.items() if values}
