"""The desk at /desk/ of a real `zhibao serve` (issue #14, first slice): nothing without a
login, login and logout with CSRF tokens, strict cookies and headers, failed logins slowed,
idle sessions ended, a removed person's session ended, and this month's figures by node equal
to `zhibao stats --json`, a hostile village's name shown as text.

The slowdown and idle tests run the same app in-process (uvicorn in a thread, mounted by the
sync server as `serve` mounts it) with an injected clock: no sleeps."""

from __future__ import annotations

import io
import json
import re
import subprocess
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path

import httpx
import openpyxl
import pytest
import tomli_w

from sync.protocol import i18n
from sync.server import NodeApp
from tests.support.servers import ZHIBAO, _uvicorn, cli_env, zhibao_serve
from tests.support.topology import CITY, VILLAGE
from tests.tiers import test_figures as figures
from tiers.city import stats as city_stats
from tiers.desk import app as desk_app
from tiers.desk import overview
from tiers.desk.app import Desk
from tiers.node import open_home

# the desk is the city's: its PostgreSQL runs in the soak run (the CI run compares the
# desk's figures and tables on both: tests/postgres/test_tiers_on_pg.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]

PASSWORD = "correct horse battery"
PERIOD = "2025-10"  # the month tests.tiers.test_figures builds
EVIL = "<script>alert(1)</script>"


def zb(home: Path, *args: str, stdin: str = "", lang: str = "en") -> str:
    done = subprocess.run(
        [ZHIBAO, *args, "--home", str(home)],
        input=stdin, capture_output=True, text=True, env=cli_env(lang), timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A city whose village (enrolled by its town as `<script>alert(1)</script>`) signed a
    month of cases with its own key; one admin, ana."""
    base = tmp_path_factory.mktemp("desk")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "name_of", lambda node_id: EVIL if node_id == VILLAGE else "镇")
        with figures.small_city(base / "homes") as net:
            figures.hand_built_month(net)
    home = base / "homes" / CITY
    zb(home, "user", "add", "ana", "--role", "admin", stdin=PASSWORD + "\n")
    return home


@pytest.fixture(scope="module")
def served(city: Path) -> Iterator[str]:
    with zhibao_serve(city) as server:
        yield server.url


def client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, follow_redirects=False, timeout=30)


def login(web: httpx.Client, name: str = "ana", password: str = PASSWORD) -> httpx.Response:
    page = web.get("/desk/login")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return web.post("/desk/login", data={"csrf": found[1], "name": name, "password": password})


def csrf_of(page: str) -> str:
    found = re.search(r'action="/desk/logout".*?name="csrf" value="([^"]+)"', page)
    assert found, page
    return found[1]


class _Cells(HTMLParser):
    """The text of every cell of the table with id "stats", row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_table = self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and ("id", "stats") in attrs:
            self._in_table = True
        elif self._in_table and tag == "tr":
            self.rows.append([])
        elif self._in_table and tag in ("td", "th"):
            self._in_cell = True
            self.rows[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = False
        elif tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.rows[-1][-1] += data


def cells(page: str) -> list[list[str]]:
    parser = _Cells()
    parser.feed(page)
    return parser.rows


def test_desk_shows_nothing_without_a_login(served: str) -> None:
    with client(served) as web:
        web.cookies.set("zhibao_desk", "a-guessed-session", path="/desk")
        for path in ("/desk/", f"/desk/?period={PERIOD}", f"/desk/stats.csv?period={PERIOD}",
                     "/desk/stats.xlsx", "/desk/no-such-page"):  # fmt: skip
            answer = web.get(path)
            assert answer.status_code in (303, 401), path
            if answer.status_code == 303:
                assert answer.headers["location"] == "/desk/login"
            assert "合计" not in answer.text and EVIL not in answer.text and "0" not in answer.text
        assert web.post("/desk/logout", data={"csrf": "x"}).status_code == 401
        assert web.get("/desk").status_code in (303, 307)  # to /desk/, which asks for a login


def test_desk_login_sets_a_strict_cookie_and_logout_ends_the_session(served: str) -> None:
    with client(served) as web:
        answer = login(web)
        assert answer.status_code == 303 and answer.headers["location"] == "/desk/"
        (cookie,) = [c for c in answer.headers.get_list("set-cookie") if "zhibao_desk=" in c]
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/desk"} <= flags
        page = web.get("/desk/")
        assert page.status_code == 200 and "合计" in page.text
        token = web.cookies["zhibao_desk"]
        out = web.post("/desk/logout", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303 and out.headers["location"] == "/desk/login"
    with client(served) as again:  # the old cookie is dead on the server, not only dropped
        again.cookies.set("zhibao_desk", token, path="/desk")
        assert again.get("/desk/").status_code == 303


def test_desk_refuses_login_and_logout_without_their_csrf_token(served: str) -> None:
    with client(served) as web:
        web.get("/desk/login")
        forged = web.post("/desk/login", data={"csrf": "forged", "name": "ana",
                                               "password": PASSWORD})  # fmt: skip
        assert forged.status_code == 403
        assert "zhibao_desk" not in web.cookies
    with client(served) as web:
        cookie_only = web.post("/desk/login", data={"name": "ana", "password": PASSWORD})
        assert cookie_only.status_code == 403 and "zhibao_desk" not in web.cookies
        login(web)
        assert web.post("/desk/logout", data={"csrf": "forged"}).status_code == 403
        assert web.post("/desk/logout").status_code == 403
        assert web.get("/desk/").status_code == 200  # still logged in


def test_desk_headers_on_every_answer(served: str) -> None:
    with client(served) as web:
        answers = [web.get("/desk/"), web.get("/desk/login"), web.get("/desk/nothing")]
        login(web)
        answers += [web.get("/desk/"), web.get(f"/desk/stats.csv?period={PERIOD}"),
                    web.get("/desk/nothing"), web.get("/desk/static/desk.css")]  # fmt: skip
    for answer in answers:
        assert answer.headers["content-security-policy"].startswith("default-src 'self'")
        assert answer.headers["x-frame-options"] == "DENY"
        shipped = answer.url.path.startswith("/desk/static/")  # the package's files, cached
        assert answer.headers["cache-control"] == ("max-age=3600" if shipped else "no-store")
        assert answer.headers.get("x-content-type-options") == "nosniff"
        if answer.headers.get("content-type", "").startswith("text/html"):
            assert not re.search(r"<script(?![^>]*\bsrc=)", answer.text)  # no inline script


def test_desk_wrong_password_and_unknown_name_say_the_same(served: str) -> None:
    with client(served) as web:
        wrong, unknown = login(web, "ana", "not the password"), login(web, "nobody", PASSWORD)
        assert wrong.status_code == unknown.status_code == 401
        assert "用户名或密码错误" in wrong.text and "用户名或密码错误" in unknown.text
        assert "zhibao_desk" not in web.cookies


def test_desk_removed_user_session_ends(served: str, city: Path) -> None:
    zb(city, "user", "add", "bo", "--role", "viewer", stdin=PASSWORD + "\n")
    with client(served) as web:
        assert login(web, "bo").status_code == 303
        assert web.get("/desk/").status_code == 200
        zb(city, "user", "remove", "bo")
        assert web.get("/desk/").status_code == 303
        assert web.get(f"/desk/stats.csv?period={PERIOD}").status_code == 401


def test_desk_table_equals_stats_json_and_a_hostile_name_is_text(served: str, city: Path) -> None:
    want = json.loads(zb(city, "stats", "--period", PERIOD, "--json", lang="zh"))
    assert EVIL in {row["label"] for row in want["rows"]}
    with client(served) as web:
        login(web)
        page = web.get(f"/desk/?period={PERIOD}").text
    shown = city_stats.table_columns(want, overview.COLUMNS)
    with i18n.speaking("zh"):
        heads, rows = city_stats.headers(shown, "node"), city_stats.table_rows(want, shown)
    table = cells(page)
    assert table == [heads, *rows] and len(rows) > 2
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_desk_downloads_equal_the_stats_files(served: str, city: Path, tmp_path: Path) -> None:
    zb(city, "stats", "--period", PERIOD, "--out", str(tmp_path / "s.csv"))
    zb(city, "stats", "--period", PERIOD, "--out", str(tmp_path / "s.xlsx"))
    with client(served) as web:
        web.get("/desk/lang?to=en")
        login(web)
        page = web.get(f"/desk/?period={PERIOD}")
        assert "Figures for 2025-10" in page.text and "Log out" in page.text
        csv = web.get(f"/desk/stats.csv?period={PERIOD}")
        xlsx = web.get(f"/desk/stats.xlsx?period={PERIOD}")
    assert csv.content == (tmp_path / "s.csv").read_bytes()
    assert "attachment" in xlsx.headers["content-disposition"]

    def sheet(data: bytes) -> list[tuple[object, ...]]:
        return list(openpyxl.load_workbook(io.BytesIO(data)).active.iter_rows(values_only=True))

    assert sheet(xlsx.content) == sheet((tmp_path / "s.xlsx").read_bytes())
    assert any(EVIL in str(v) for row in sheet(xlsx.content) for v in row)


# --- in-process, with an injected clock ------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _idle_minutes(home: Path, minutes: int) -> None:
    path = home / "node.toml"
    config = tomllib.loads(path.read_text("utf-8"))
    config.setdefault("settings", {})["desk_idle_minutes"] = minutes
    path.write_text(tomli_w.dumps(config), "utf-8")


@contextmanager
def _desk_served(home: Path, clock: Clock) -> Iterator[str]:
    desk = Desk(lambda: open_home(home), now=clock)
    node = open_home(home)
    try:
        with _uvicorn(NodeApp(node, mounts=[("/desk", desk)]).app, "desk") as url:
            yield url
    finally:
        desk.close()
        node.close()


@pytest.fixture
def desk_city(make_topology) -> Path:  # type: ignore[no-untyped-def]
    home: Path = make_topology([CITY]).home(CITY)
    zb(home, "user", "add", "ana", "--role", "admin", stdin=PASSWORD + "\n")
    return home


def test_desk_session_ends_after_the_idle_minutes_of_node_toml(desk_city: Path) -> None:
    _idle_minutes(desk_city, 5)
    clock = Clock()
    with _desk_served(desk_city, clock) as url, client(url) as web:
        login(web)
        clock.now += 4 * 60
        assert web.get("/desk/").status_code == 200  # use restarts the idle time
        clock.now += 4 * 60
        assert web.get("/desk/").status_code == 200
        clock.now += 5 * 60 + 1
        assert web.get("/desk/").status_code == 303
        clock.now -= 60  # the session is gone for good, not only hidden while idle
        assert web.get("/desk/").status_code == 303


def test_desk_slows_failed_logins_for_a_name(desk_city: Path) -> None:
    clock = Clock()
    with _desk_served(desk_city, clock) as url, client(url) as web:
        for _ in range(desk_app.FREE_FAILURES):
            assert login(web, "ana", "wrong password").status_code == 401
        waited = login(web)  # the right password, too soon
        assert waited.status_code == 429 and "zhibao_desk" not in web.cookies
        assert "请 1 秒后再试" in waited.text
        assert login(web, "someone-else", "wrong password").status_code == 401  # per name
        clock.now += 1.5
        assert login(web, "ana", "wrong password").status_code == 401
        assert login(web).status_code == 429  # the next wait is longer
        clock.now += 2.5
        assert login(web).status_code == 303
        assert login(web, "ana", "wrong password").status_code == 401  # counted afresh


def test_desk_remembers_failures_for_a_bounded_number_of_names(
    desk_city: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(desk_app, "MAX_TRACKED", 3)
    desk = Desk(lambda: open_home(desk_city))
    for i in range(10):
        desk._failed(f"name{i}", "127.0.0.1", 0.0)
    assert list(desk._failures) == [(f"name{i}", "127.0.0.1") for i in (7, 8, 9)]
    assert list(desk._name_failures) == ["name7", "name8", "name9"]
