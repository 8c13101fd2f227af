"""The desk (issue #14) in real headless Chromium against a real city that synced over HTTP
(tests/browser/conftest.py): nothing without a login, every page of the header (found on the
page, so pages added later are covered) and a case opened from the warnings, with no console
error, no page error, no CSP violation and no dialog; the overview's figures equal `zhibao
stats --json`; an XLSX downloaded by the browser equals the page's table; a hostile
village's name is text; after logging out, going back shows nothing.

Screenshots of every page at 1366x768 (and the overview as printed) go to the artifacts
folder (conftest.artifacts: $ZHIBAO_ARTIFACTS, else artifacts/browser/, not committed)."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import openpyxl
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    Download,
    Error,
    Page,
    Request,
    Response,
    sync_playwright,
)

from sync.protocol import i18n
from tests.browser.conftest import ADMIN, NODES, PERIOD, City, artifacts, name_of
from tests.integration.test_desk import EVIL, PASSWORD, zb
from tiers.city import stats as city_stats
from tiers.desk import overview

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

WIDTH, HEIGHT = 1366, 768
LOGIN = "/desk/login"
RAW_KEY = re.compile(r"\bdesk(?:\.[a-z_]+)+")  # an i18n key shown as it is, untranslated
# Collects the page's CSP violations (init scripts run whatever the page's CSP says).
WATCH_CSP = """window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(e.violatedDirective + ' ' + e.blockedURI);
});"""


# The desk names its icon (/desk/static/favicon.svg), so Chrome asks no /favicon.ico.
UNCOUNTED: tuple[str, ...] = ()
LOAD_FAILED = "Failed to load resource: the server responded with a status of"


@dataclass
class Watched:
    """What went wrong on the pages a context opened: console errors, uncaught errors,
    answers >= 400 and failed requests, dialogs (alert and friends) and CSP violations,
    each with the page's URL. `allowed`: statuses a test expects (401 without a login)."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    allowed: tuple[int, ...] = ()
    failed: dict[str, str] = field(default_factory=dict)  # request URL -> why
    downloads: set[str] = field(default_factory=set)  # (a download's request "fails")

    def attach(self, page: Page) -> None:
        def console(message: ConsoleMessage) -> None:
            if message.type == "error" and not message.text.startswith(LOAD_FAILED):
                self.errors.append(f"console {page.url}: {message.text}")

        def answered(response: Response) -> None:
            path = urlsplit(response.url).path
            if response.status >= 400 and response.status not in self.allowed \
                    and path not in UNCOUNTED:  # fmt: skip
                self.errors.append(f"{response.status} {response.url}")

        def dialog(shown: Dialog) -> None:
            self.dialogs.append(f"{page.url}: {shown.type} {shown.message}")
            shown.dismiss()

        def thrown(exc: Error) -> None:
            self.errors.append(f"pageerror {page.url}: {exc}")

        def failed(request: Request) -> None:
            # a request the browser itself dropped because the page went on (a click that
            # navigates while the icon loads) is no failure of the desk's
            if str(request.failure) != "net::ERR_ABORTED":
                self.failed.setdefault(request.url, str(request.failure))

        def downloaded(download: Download) -> None:
            self.downloads.add(download.url)

        page.on("console", console)
        page.on("pageerror", thrown)
        page.on("response", answered)
        page.on("requestfailed", failed)
        page.on("download", downloaded)
        page.on("dialog", dialog)

    def check(self, page: Page) -> None:
        """Fail on anything seen so far (the CSP violations of the page now open too)."""
        violations = page.evaluate("window.__csp || []")
        self.errors += [f"csp {page.url}: {v}" for v in violations]
        self.errors += [f"failed {url}: {why}" for url, why in self.failed.items()
                        if url not in self.downloads]  # fmt: skip
        self.failed.clear()
        assert not self.errors and not self.dialogs, (self.errors, self.dialogs)


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=chromium)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Desk:
    page: Page
    watched: Watched
    url: str

    def go(self, path: str) -> int:
        """Open `path`; the HTTP status of the answer (after redirects)."""
        answer = self.page.goto(self.url + path)
        assert answer is not None
        return answer.status

    def login(self, name: str = ADMIN, password: str = PASSWORD) -> None:
        self.go(LOGIN)
        self.page.fill('input[name="name"]', name)
        self.page.fill('input[name="password"]', password)
        with self.page.expect_navigation():
            self.page.click('form[action="/desk/login"] button[type="submit"]')
        assert urlsplit(self.page.url).path == "/desk/", self.page.content()

    def path(self) -> str:
        parts = urlsplit(self.page.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def shot(self, name: str) -> Path:
        where = artifacts() / f"{name}.png"
        self.page.screenshot(path=str(where), full_page=True)
        return where


@pytest.fixture
def desk(browser: Browser, served: str) -> Iterator[Desk]:
    """A fresh browser context (no cookies) at 1366x768, watched."""
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT},
                                  accept_downloads=True)  # fmt: skip
    context.add_init_script(WATCH_CSP)
    page = context.new_page()
    watched = Watched()
    watched.attach(page)
    try:
        yield Desk(page, watched, served)
    finally:
        context.close()


def nav_links(desk: Desk) -> list[str]:
    """The header's links to the desk's pages (not the language switch), in order."""
    hrefs = desk.page.eval_on_selector_all(
        "header nav a[href]", "links => links.map(a => a.getAttribute('href'))"
    )
    return [h for h in dict.fromkeys(hrefs) if h.startswith("/desk/") and "/lang" not in h]


def table_text(desk: Desk, selector: str) -> list[list[str]]:
    """The text of every cell of the table `selector`, row by row (header row first)."""
    rows: list[list[str]] = desk.page.eval_on_selector(
        selector, "t => [...t.rows].map(r => [...r.cells].map(c => c.textContent))"
    )
    return rows


def in_period(path: str) -> str:
    """`path` for the month of the cases (pages that have no months ignore it)."""
    return f"{path}{'&' if '?' in path else '?'}period={PERIOD}"


def slug(path: str) -> str:
    """A screenshot's name for a desk path: /desk/ overview, /desk/warnings?period=2025-10
    warnings-period-2025-10."""
    named = re.sub(r"[^A-Za-z0-9]+", "-", path.removeprefix("/desk")).strip("-")
    if not named or named.startswith("period"):
        named = f"overview-{named}".strip("-")
    return named


def too_wide(desk: Desk) -> list[str]:
    """The page, when it is wider than the screen (it scrolls sideways)."""
    width = desk.page.evaluate("document.documentElement.scrollWidth")
    return [f"{desk.path()}: {width}px"] if width > WIDTH else []


# --- without a login ---------------------------------------------------------------------------


def test_desk_browser_shows_nothing_without_a_login(
    desk: Desk, browser: Browser, served: str, city: City
) -> None:
    # the pages a logged-in admin is offered, found on the page by another context
    context = browser.new_context()
    try:
        admin = Desk(context.new_page(), Watched(), served)
        admin.login()
        paths = nav_links(admin)
    finally:
        context.close()
    assert "/desk/" in paths and "/desk/warnings" in paths, paths
    paths += [f"/desk/?period={PERIOD}", f"/desk/case/{city.cases['hostile']}",
              "/desk/warnings?format=xlsx", f"/desk/stats.csv?period={PERIOD}",
              "/desk/no-such-page"]  # fmt: skip
    desk.watched.allowed = (401,)
    secrets = {EVIL, *city.applicants, *(name_of(n) for n in NODES), *city.cases.values()}
    not_redirected = []
    for path in paths:
        status = desk.go(path)
        shown = desk.page.inner_text("body")
        assert not any(secret in shown for secret in secrets), (path, shown)
        assert not re.search(r"\d", shown), (path, shown)  # not even a count
        assert desk.page.query_selector("table") is None, path
        if desk.path() == LOGIN:
            assert status == 200 and desk.page.query_selector('input[type="password"]')
        else:  # a file (a table's CSV/XLSX) answers 401 with a link to the login
            assert status == 401, (path, status)
            assert desk.page.query_selector(f'a[href="{LOGIN}"]'), path
            not_redirected.append(path)
    desk.watched.check(desk.page)
    # every page goes to the login; only the files (a table's CSV/XLSX) answer 401
    files = [p for p in paths if "format=" in p or ".csv" in p]
    assert sorted(not_redirected) == sorted(files), not_redirected


# --- logged in ---------------------------------------------------------------------------------


def test_desk_browser_every_page_opens_clean(desk: Desk, city: City) -> None:
    desk.login()
    desk.watched.check(desk.page)
    paths = nav_links(desk)
    assert len(paths) >= 3, paths  # overview, warnings, access at least
    wide: list[str] = []
    for path in [*paths, *(in_period(p) for p in paths)]:
        assert desk.go(path) == 200, path
        assert desk.page.query_selector("main"), path
        desk.shot(slug(path))
        desk.watched.check(desk.page)
        wide += too_wide(desk)
    desk.go("/desk/warnings")
    with desk.page.expect_navigation():
        desk.page.click('main a[href^="/desk/case/"]')
    case_id = desk.page.url.rsplit("/", 1)[1]
    assert case_id in city.cases.values()
    assert case_id in desk.page.inner_text("main")
    desk.shot("case")
    desk.watched.check(desk.page)
    wide += too_wide(desk)
    desk.go(f"/desk/?period={PERIOD}")
    desk.page.emulate_media(media="print")
    desk.shot("overview-print")
    desk.page.emulate_media(media="screen")
    desk.watched.check(desk.page)
    assert not wide, f"wider than a {WIDTH}x{HEIGHT} screen: {wide}"


def test_desk_browser_pages_show_no_untranslated_key(desk: Desk, city: City) -> None:
    """Every page of the header and a case, in Chinese and then, by the header's switch, in
    English."""
    desk.login()
    raw: dict[str, set[str]] = {}  # key -> the languages and pages it showed on
    for lang in ("zh-CN", "en"):
        if lang == "en":
            with desk.page.expect_navigation():
                desk.page.click('header a[href="/desk/lang?to=en"]')
        for path in [*nav_links(desk), f"/desk/case/{city.cases['hostile']}"]:
            assert desk.go(path) == 200, path
            assert desk.page.get_attribute("html", "lang") == lang, path
            for key in RAW_KEY.findall(desk.page.inner_text("body")):
                raw.setdefault(key, set()).add(f"{lang} {path}")
    assert not raw, f"i18n keys shown untranslated: {raw}"


def test_desk_browser_overview_equals_stats_json_and_shows_a_hostile_name_as_text(
    desk: Desk, city: City
) -> None:
    want = json.loads(zb(city.home, "stats", "--period", PERIOD, "--json", lang="zh"))
    desk.login()
    assert desk.go(f"/desk/?period={PERIOD}") == 200
    shown = city_stats.table_columns(want, overview.COLUMNS)
    with i18n.speaking("zh"):
        heads, rows = city_stats.headers(shown, "node"), city_stats.table_rows(want, shown)
    table = table_text(desk, "table#stats")
    assert table == [heads, *rows] and len(rows) == len(NODES)  # five nodes and the total
    labels = {row["label"] for row in want["rows"]}
    assert EVIL in labels
    evil = desk.page.get_by_text(EVIL, exact=True)
    assert evil.count() >= 1 and evil.first.is_visible()
    assert desk.page.evaluate("document.querySelectorAll('main script').length") == 0
    desk.go("/desk/warnings")
    assert desk.page.get_by_text(EVIL, exact=True).first.is_visible()  # the applicant
    desk.go(f"/desk/case/{city.cases['hostile']}")
    assert desk.page.get_by_text(EVIL, exact=True).first.is_visible()
    desk.watched.check(desk.page)  # no dialog: the script never ran


CODE = re.compile(r"[a-z][a-z_]*")  # a machine's word: town, red, not_due
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")


def same_value(text: str, value: object) -> bool:
    """Whether a cell of the page (its text) shows the value of the XLSX's cell. Where the
    file keeps the machine's form of what the page says in words (a tier `town` for 镇级, a
    state `not_due`, a JSON object) the page must show something; a time in the file to the
    second may be shown to the minute."""
    if value is None:
        return text in ("", "-")
    if isinstance(value, bool):
        return text in ("", "是", "否", "yes", "no", str(value))
    if isinstance(value, int | float):
        plain = text.replace(",", "").strip()
        scale = 100 if plain.endswith("%") else 1
        plain = plain.removesuffix("%")
        decimals = len(plain.split(".", 1)[1]) if "." in plain else 0
        try:
            return abs(float(plain) - value * scale) <= 0.5 * 10**-decimals + 1e-9
        except ValueError:
            return False
    if isinstance(value, datetime.datetime | datetime.date):
        return text.startswith(value.isoformat()[:10])
    held = str(value)
    if held == text:
        return True
    if TIME.match(held):
        return len(text) >= 16 and held.replace("T", " ").startswith(text)
    return text != "" and (CODE.fullmatch(held) is not None or held.startswith("{"))


def agrees(table: list[list[str]], sheet: list[tuple[object, ...]]) -> dict[str, int]:
    """Assert the XLSX `sheet` holds what the page's `table` shows, row for row. A column
    under the same header holds the same values (the file may hold more columns); a
    column the file names otherwise (the page's 事项 is the file's 事项编码 and 事项名称) has
    each word of each cell in a cell of the file's row. How many columns were compared by
    header and how many by words."""
    heads, file_heads = table[0], [str(h) for h in sheet[0]]
    assert len(sheet) == len(table), (table, sheet)
    columns = {j: file_heads.index(h) for j, h in enumerate(heads) if h in file_heads}
    for shown, held in zip(table[1:], sheet[1:], strict=True):
        cells = {str(v) for v in held if v is not None}
        for j, text in enumerate(shown):
            k = columns.get(j)
            if k is None or (text == "" and held[k] == shown[0]):  # 合计: the total's name
                assert all(word in cells for word in text.split()), (heads[j], text, held)
            else:
                assert same_value(text, held[k]), (heads[j], text, held[k])
    return {"by header": len(columns), "by words": len(heads) - len(columns)}


def test_desk_browser_xlsx_downloads_equal_the_page_tables(
    desk: Desk, city: City, tmp_path: Path
) -> None:
    """Every XLSX link on every page of the header (and the overview of the month with the
    cases), downloaded by the browser and read back with openpyxl."""
    desk.login()
    checked: list[str] = []
    paths = nav_links(desk)
    for path in [*paths, *(in_period(p) for p in paths)]:
        desk.go(path)
        tables = desk.page.locator("main table")
        for link in desk.page.locator("main a[href*='xlsx']").all():
            href = link.get_attribute("href") or ""
            wanted = parse_qs(urlsplit(href).query).get("table")
            named = f'main table[id="{wanted[0]}"]' if wanted and '"' not in wanted[0] else None
            if named and desk.page.locator(named).count() == 1:
                selector = named
            elif tables.count() == 1:
                selector = "main table"
            else:
                continue  # no table on the page says it is this file's
            table = table_text(desk, selector)
            with desk.page.expect_download() as started:
                link.click()
            got = tmp_path / f"{len(checked)}-{started.value.suggested_filename}"
            started.value.save_as(got)
            assert got.suffix == ".xlsx", got
            sheet = openpyxl.load_workbook(got).active
            assert sheet is not None
            rows = list(sheet.iter_rows(values_only=True))
            while rows and all(v is None for v in rows[-1]):
                rows.pop()
            if len(rows) == len(table) + 2 and rows[-1][1:] == (None,) * (len(rows[-1]) - 1):
                rows = rows[:-2]  # the table's note, under a blank row
            compared = agrees(table, rows)
            assert compared["by header"] >= max(2, len(table[0]) // 2), (compared, href)
            checked.append(f"{path} {href}")
    assert any(c.startswith(f"/desk/?period={PERIOD} ") for c in checked), checked
    desk.watched.check(desk.page)


# --- logging out -------------------------------------------------------------------------------


def test_desk_browser_logout_leaves_nothing_behind(desk: Desk, city: City) -> None:
    desk.login()
    desk.go(f"/desk/?period={PERIOD}")
    assert EVIL in desk.page.inner_text("main")
    shown_at = desk.path()
    desk.go("/desk/warnings")
    with desk.page.expect_navigation():
        desk.page.click('header form[action="/desk/logout"] button')
    assert desk.path() == LOGIN
    desk.page.go_back()  # to the warnings
    desk.page.wait_for_load_state()
    back = desk.page.inner_text("body")
    assert EVIL not in back and not any(name in back for name in city.applicants), back
    desk.go(shown_at)  # the old URL
    assert desk.path() == LOGIN
    assert EVIL not in desk.page.inner_text("body")
    assert "zhibao_desk" not in {cookie["name"] for cookie in desk.page.context.cookies()}
    desk.watched.check(desk.page)
