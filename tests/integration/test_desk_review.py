"""A second look at the desk (issue #14) as a hostile reader and as a clerk meets it: a form
with too many fields, a failure nobody foresaw, the logins checked at once, a file whose
name is Chinese, the titles of a page still being worked out.

The desk runs in-process (uvicorn in a thread, mounted as `serve` mounts it, as
tests/integration/test_desk.py does) with an injected clock: no sleeps."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import apsw
import pytest

from sync.node import Node
from sync.server import NodeApp
from tests.integration.test_desk import PASSWORD, Clock, _desk_served, client, login, zb
from tests.support.servers import _uvicorn
from tests.support.topology import CITY
from tiers.desk import app as desk_app
from tiers.desk import figures, layout, users
from tiers.desk.app import Desk
from tiers.node import open_home

# the desk is the city's: its PostgreSQL runs in the soak run (the CI run compares the
# desk's figures and tables on both: tests/postgres/test_tiers_on_pg.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]


@pytest.fixture
def desk_city(make_topology) -> Path:  # type: ignore[no-untyped-def]
    """A city with one admin, ana."""
    home: Path = make_topology([CITY]).home(CITY)
    zb(home, "user", "add", "ana", "--role", "admin", stdin=PASSWORD + "\n")
    return home


def _login_form(web) -> str:  # type: ignore[no-untyped-def]
    found = re.search(r'name="csrf" value="([^"]+)"', web.get("/desk/login").text)
    assert found
    return found[1]


def test_desk_login_form_with_many_fields_is_refused_not_a_crash(desk_city: Path) -> None:
    with _desk_served(desk_city, Clock()) as url, client(url) as web:
        csrf = _login_form(web)
        body = f"csrf={csrf}&name=ana&password=x" + "&junk=1" * 8
        form = {"content-type": "application/x-www-form-urlencoded"}
        answer = web.post("/desk/login", content=body.encode(), headers=form)
        assert answer.status_code in (400, 401, 403)
        assert "Content-Security-Policy" in answer.headers
        assert login(web).status_code == 303  # the desk goes on


def test_desk_page_that_fails_answers_500_with_headers_and_logs_no_message(
    desk_city: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    def broken(*_: object) -> None:
        raise KeyError("13800138000")  # a message may quote personal data

    monkeypatch.setitem(layout.ROUTES, "/broken", (broken, False, False))
    with _desk_served(desk_city, Clock()) as url, client(url) as web:
        login(web)
        answer = web.get("/desk/broken")
        assert answer.status_code == 500
        assert "Content-Security-Policy" in answer.headers
        assert "13800138000" not in answer.text and "desk.internal" not in answer.text
        assert web.get("/desk/").status_code == 200  # the desk goes on
    logged = capfd.readouterr().err
    assert "GET /desk/broken: KeyError at test_desk_review.py" in logged
    assert "13800138000" not in logged


def test_desk_password_checks_at_once_are_bounded(
    desk_city: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Logins sent at once by a stranger (names made up, each costing an Argon2id check of
    19 MiB) are checked MAX_CHECKING at a time; the others are told to try again."""
    checking, release = threading.Semaphore(0), threading.Event()
    calls: list[str] = []
    real = users.password_matches

    def held(password: str, stored: str) -> bool:
        calls.append(password)
        checking.release()
        assert release.wait(30)
        return real(password, stored)

    monkeypatch.setattr(users, "password_matches", held)
    monkeypatch.setattr(desk_app, "CHECK_QUEUE", 0)
    with _desk_served(desk_city, Clock()) as url:
        answers: list[int] = []

        def guess(k: int) -> None:
            with client(url) as web:
                answers.append(login(web, f"guest{k}", "a guess").status_code)

        at_once = range(desk_app.MAX_CHECKING)
        held_ones = [threading.Thread(target=guess, args=(k,)) for k in at_once]
        for thread in held_ones:
            thread.start()
        try:
            for _ in held_ones:
                assert checking.acquire(timeout=30)
            with client(url) as web:
                one_more = login(web, "guest-late", "a guess")
                assert one_more.status_code == 503 and "请稍后再试" in one_more.text
                assert login(web, "<no one>", "a guess").status_code == 401  # no such name
        finally:
            release.set()
            for thread in held_ones:
                thread.join(30)
        assert len(calls) == desk_app.MAX_CHECKING and sorted(answers) == [401, 401]
        with client(url) as web:
            assert login(web).status_code == 303  # the checks ended: ana logs in


def test_desk_file_named_in_chinese_is_named_so_in_every_browser(desk_city: Path) -> None:
    """The warnings' table is called 办件 under zh: its file is 办件.xlsx (RFC 6266
    `filename*`), not `%E5%8A%9E%E4%BB%B6.xlsx` in a browser that takes `filename` as it is."""
    with _desk_served(desk_city, Clock()) as url, client(url) as web:
        login(web)
        page = web.get("/desk/warnings")
        assert "table=%E5%8A%9E%E4%BB%B6" in page.text  # the page's own link
        got = web.get("/desk/warnings?format=xlsx&table=办件")
        assert got.status_code == 200
        assert got.headers["content-disposition"] == (
            "attachment; filename=\"__.xlsx\"; filename*=UTF-8''%E5%8A%9E%E4%BB%B6.xlsx"
        )
        stats = web.get("/desk/stats.csv?period=2025-10")
        assert stats.headers["content-disposition"].startswith(
            'attachment; filename="stats-2025-10.csv"'
        )


def test_desk_warmer_that_fails_says_so_and_goes_on(
    desk_city: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A pass of the figures warmer that raises (a busy database, a bug) is logged in one
    line (where, not the message) and tried again: the warmer does not end in silence."""
    real = figures.Warmer._warm
    passes: list[int] = []

    def flaky(self: figures.Warmer, node: Node) -> None:
        passes.append(1)
        if len(passes) == 1:
            raise RuntimeError("13800138000")
        real(self, node)

    monkeypatch.setattr(figures.Warmer, "_warm", flaky)
    warmer = figures.Warmer(lambda: open_home(desk_city), every=0.01)
    try:
        assert warmer.warmed.wait(60)  # a whole pass after the failed one
    finally:
        warmer.stop()
        figures.forget()
    assert len(passes) == 2
    logged = capfd.readouterr().err
    assert "RuntimeError at test_desk_review.py" in logged and "13800138000" not in logged


def test_desk_made_up_names_do_not_push_out_the_name_guessed(
    desk_city: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failure tables keep MAX_TRACKED keys: a guesser who sends made-up names between
    its guesses does not get ana's wait forgotten."""
    monkeypatch.setattr(desk_app, "MAX_TRACKED", 3)
    with _desk_served(desk_city, Clock()) as url, client(url) as web:
        for _ in range(desk_app.FREE_FAILURES):
            assert login(web, "ana", "a guess").status_code == 401
        for k in range(5):
            assert login(web, f"made-up{k}", "a guess").status_code == 401
        assert login(web, "ana", "another guess").status_code == 429


def test_desk_login_page_and_shipped_files_do_not_wait_behind_a_page(desk_city: Path) -> None:
    """Another reader's page being made (the desk's lock held) holds neither the login page,
    the language switch nor the shipped files (a page's scripts and style)."""
    desk = Desk(lambda: open_home(desk_city), now=Clock(), warm=False)
    node = open_home(desk_city)
    try:
        app = NodeApp(node, mounts=[("/desk", desk)]).app
        with _uvicorn(app, "desk") as url, client(url) as web:
            assert login(web).status_code == 303  # the desk has opened its node
            with desk._lock:  # a page of another reader, taking its time
                for path in ("/desk/login", "/desk/static/desk.css", "/desk/lang?to=en"):
                    assert web.get(path, timeout=10).status_code in (200, 303), path
    finally:
        desk.close()
        node.close()


def test_desk_bad_request_of_a_reader_keeps_the_header(desk_city: Path) -> None:
    """A mistyped month is said under the desk's header: the reader keeps the pages' links
    and the logout button."""
    with _desk_served(desk_city, Clock()) as url, client(url) as web:
        login(web)
        answer = web.get("/desk/?period=2025-13")
        assert answer.status_code == 400 and "2025-13" in answer.text
        assert 'action="/desk/logout"' in answer.text and 'href="/desk/warnings"' in answer.text


def test_desk_guessed_session_cookie_takes_no_write_lock(desk_city: Path) -> None:
    """A stranger's made-up session cookie is answered (to the login) without writing: it
    neither waits for the node's writers (a sync storing entries) nor holds the desk."""
    with _desk_served(desk_city, Clock()) as url, client(url) as web, client(url) as ana:
        login(ana)  # the desk has opened its node
        writer = apsw.Connection(str(desk_city / "node.db"))
        writer.execute("BEGIN IMMEDIATE")  # a sync storing entries, for a while
        try:
            web.cookies.set("zhibao_desk", "a-guessed-session", path="/desk")
            assert web.get("/desk/", timeout=5).status_code == 303
        finally:
            writer.execute("ROLLBACK")
            writer.close()
