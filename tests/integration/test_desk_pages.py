"""The desk's warnings, case and access pages (issue #14) on a real `zhibao serve`: nothing
without a login, the warnings equal `zhibao case list --warning`, filters work and bad ones
are 400, opening a case is recorded (admins read the records, viewers may not), and a
hostile village's applicant `<script>alert(1)</script>`, signed with its own key, is text."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import tomli_w

from tests.integration.test_desk import EVIL, PASSWORD, client, login, zb
from tests.support.servers import zhibao_serve
from tests.support.topology import CITY, TOWN, VILLAGE
from tests.tiers import test_figures as figures
from tiers.cases import service
from tiers.cases.service import Applicant

ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The month of tests.tiers.test_figures (open cases long overdue by now), and a case the
    hostile village accepted for `<script>alert(1)</script>` with its own key, synced up;
    ana an admin, vi a viewer."""
    base = tmp_path_factory.mktemp("desk-pages")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "name_of", lambda node_id: EVIL if node_id == VILLAGE else "镇")
        with figures.small_city(base / "homes") as net:
            figures.hand_built_month(net)
            service.accept(net.village, item_code="D4", applicant=Applicant(EVIL, phone="1380"),
                           at=figures.t("10-20"))  # fmt: skip
            paused = service.accept(net.village, item_code="D4", applicant=Applicant(EVIL),
                                    at=figures.t("10-20", "11:00"))  # fmt: skip
            service.suspend(net.village, paused, "实地勘察", at=figures.t("10-21"))
            figures.up(net, figures.t("10-22"))
    home = base / "homes" / CITY
    config = tomllib.loads((home / "node.toml").read_text("utf-8"))
    config.setdefault("settings", {})["yellow_days"] = 5  # the paused case is yellow
    (home / "node.toml").write_text(tomli_w.dumps(config), "utf-8")
    zb(home, "user", "add", "ana", "--role", "admin", stdin=PASSWORD + "\n")
    zb(home, "user", "add", "vi", "--role", "viewer", stdin=PASSWORD + "\n")
    return home


@pytest.fixture(scope="module")
def served(city: Path) -> Iterator[str]:
    with zhibao_serve(city) as server:
        yield server.url


def listed(city: Path, *args: str) -> list[str]:
    rows = json.loads(zb(city, "case", "list", "--json", "--limit", "1000", *args))
    return [row["case_id"] for row in rows]


def shown(page: str) -> list[str]:
    """The case ids the warnings table links to, in order."""
    table = page.split('id="warnings"', 1)[1] if 'id="warnings"' in page else ""
    return re.findall(r'<td><a href="/desk/case/([^"]+)">', table)


def all_pages(web: httpx.Client, query: str, limit: int = 1) -> list[str]:
    """Every case id the warnings page shows for `query`, following its next links
    `limit` a page."""
    ids: list[str] = []
    path: str | None = f"/desk/warnings?{query}&limit={limit}"
    while path:
        page = web.get(path)
        assert page.status_code == 200, page.text
        ids += shown(page.text)
        found = re.search(r'<a href="(/desk/warnings\?[^"]+)">下一页</a>', page.text)
        path = found[1].replace("&amp;", "&") if found else None
    return ids


def test_desk_pages_show_nothing_without_a_login(served: str, city: Path) -> None:
    (some,) = listed(city, "--warning", "red", "--limit", "1")
    with client(served) as web:
        web.cookies.set("zhibao_desk", "a-guessed-session", path="/desk")
        for path in ("/desk/warnings", "/desk/warnings?warning=yellow", f"/desk/case/{some}",
                     "/desk/case/nothing", "/desk/access"):  # fmt: skip
            answer = web.get(path)
            assert answer.status_code == 401, path
            assert some not in answer.text and "alert" not in answer.text
    with client(served) as web:
        login(web)
        records = web.get("/desk/access").text
    assert some not in records  # no record of an opening that was refused


def test_desk_warnings_list_what_case_list_lists(served: str, city: Path) -> None:
    red, yellow = listed(city, "--warning", "red"), listed(city, "--warning", "yellow")
    assert len(red) >= 3 and len(yellow) >= 1 and not set(red) & set(yellow)
    with client(served) as web:
        login(web)
        first = web.get("/desk/warnings")  # red, a screenful
        assert first.status_code == 200 and shown(first.text) == red
        assert all_pages(web, "warning=red") == red  # one a page, by the next links
        assert all_pages(web, "warning=red", 2) == red
        assert all_pages(web, "warning=yellow") == yellow
        assert shown(web.get("/desk/warnings?warning=yellow").text) == yellow
        assert 'href="/desk/warnings"' in web.get("/desk/").text  # the overview links to it


def test_desk_warnings_page_back_and_forth(served: str, city: Path) -> None:
    red = listed(city, "--warning", "red")
    with client(served) as web:
        login(web)
        page = web.get("/desk/warnings?warning=red&offset=1&limit=1").text
        assert shown(page) == red[1:2]
        back = re.search(r'<a href="(/desk/warnings\?[^"]+)">上一页</a>', page)
        assert back and shown(web.get(back[1].replace("&amp;", "&")).text) == red[:1]
        assert shown(web.get("/desk/warnings?offset=1").text) == red[1:]
        assert shown(web.get(f"/desk/warnings?offset={len(red)}").text) == []


def test_desk_warnings_filters_equal_case_list_filters(served: str, city: Path) -> None:
    with client(served) as web:
        login(web)
        for query, args in (
            (f"node={VILLAGE}", ["--node", VILLAGE]),
            (f"node={TOWN}", ["--node", TOWN]),
            ("node=330782001", ["--node", "330782001"]),
            ("item=D4", ["--item", "D4"]),
            ("item=A1", ["--item", "A1"]),
            ("department=交通运输", ["--department", "交通运输"]),
            (f"department=交通运输&node={TOWN}", ["--department", "交通运输", "--node", TOWN]),
        ):
            want = listed(city, "--warning", "red", *args)
            assert all_pages(web, f"warning=red&{query}") == want, query
        by_village = all_pages(web, f"warning=red&node={VILLAGE}")
        assert by_village and by_village == listed(city, "--warning", "red", "--node", VILLAGE)
        everything = all_pages(web, "warning=red")
        d4 = all_pages(web, "warning=red&department=交通运输")
        assert d4 == by_village and set(d4) < set(everything)
        assert all_pages(web, "warning=red&department=没有这个部门") == []


def test_desk_warnings_bad_filters_are_400(served: str) -> None:
    with client(served) as web:
        login(web)
        for query in ("warning=green", "warning=unaccepted", "node=12", "node=abc",
                      "offset=-1", "offset=x", "offset=１", "item=" + "x" * 65, "limit=0",
                      "limit=201", "limit=0000000012345", "limit=x", "offset=99999999999",
                      "department=" + "y" * 65):  # fmt: skip
            answer = web.get(f"/desk/warnings?{query}")
            assert answer.status_code == 400, query
            assert "<table" not in answer.text


def test_desk_case_page_is_case_show_and_is_recorded(served: str, city: Path) -> None:
    (case_id,) = listed(city, "--warning", "red", "--node", VILLAGE)
    want = json.loads(zb(city, "case", "show", case_id, "--json"))
    with client(served) as web:
        login(web, "vi")
        page = web.get(f"/desk/case/{case_id}")
        assert page.status_code == 200
        assert EVIL not in page.text and ESCAPED in page.text
        assert "<script" not in page.text
        events = page.text.split('id="events"', 1)[1]
        assert events.count("<tr>") == 1 + len(want["events"])
        assert want["deadline"] in page.text and "1380" in page.text
        missing = web.get("/desk/case/330782001001-20251020-9999")
        assert missing.status_code == 404 and "<script" not in missing.text
        assert web.get("/desk/case/%3Cscript%3E").status_code == 404
        assert "<script" not in web.get("/desk/case/%3Cscript%3E").text
        assert web.get("/desk/access").status_code == 403
    with client(served) as admin:
        login(admin)
        records = admin.get("/desk/access")
    assert records.status_code == 200
    rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td><a href=\"/desk/case/([^\"]+)\"",
                      records.text)  # fmt: skip
    assert rows[0][1:] == ("vi", case_id)  # newest first
    assert [r for r in rows if r[1:] == ("vi", case_id)] == [rows[0]]  # one record, not two
    assert all(r[2] != "330782001001-20251020-9999" for r in rows)  # unknown: not recorded


def test_desk_warnings_show_a_hostile_applicant_as_text(served: str) -> None:
    with client(served) as web:
        login(web)
        page = web.get(f"/desk/warnings?warning=red&node={VILLAGE}").text
        english = web.get("/desk/lang?to=en")
        assert english.status_code == 303
        in_english = web.get(f"/desk/warnings?warning=red&node={VILLAGE}").text
    assert EVIL not in page and ESCAPED in page and "<script" not in page
    towns = re.findall(r'<datalist id="nodes">(.*?)</datalist>', page)
    assert towns and f'<option value="{TOWN}">' in towns[0]  # the city's towns to pick from
    assert "预警办件" in page and "Warnings" in in_english and "预警办件" not in in_english


def test_desk_case_pages_in_english(served: str, city: Path) -> None:
    (case_id, *_) = listed(city, "--warning", "red")
    with client(served) as web:
        web.get("/desk/lang?to=en")
        login(web)
        case = web.get(f"/desk/case/{case_id}").text
        records = web.get("/desk/access").text
        bad = web.get("/desk/warnings?limit=0")
    assert "History" in case and "Details" in case and "办理过程" not in case
    assert "Who opened which case" in records and "查阅记录" not in records
    assert bad.status_code == 400 and "is not a page size" in bad.text
