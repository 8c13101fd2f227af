"""The desk's network and findings pages (issue #14) on a real `zhibao serve`: the network
page lists `zhibao status --json`'s network (with the backlog a town's signed report proves),
the findings page equals `zhibao reconcile --json` for the month with the reports received
and missing, both download as CSV and XLSX with the page's rows, viewers read them, nothing
shows without a login, and a hostile village's evidence (HTML, a bidi override), signed with
its own key, shows as text."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import httpx
import openpyxl
import pytest

from sync.clock import ZONE
from tests.integration.test_desk import EVIL, PASSWORD, client, login, zb
from tests.support.servers import zhibao_serve
from tests.support.topology import CITY, TOWN, VILLAGE
from tests.tiers import test_figures as figures
from tiers.cases import service
from tiers.cases.service import Applicant
from tiers.desk import network_page
from tiers.desk.findings_page import FINDING_COLUMNS, REPORT_COLUMNS
from tiers.inert import terminal_safe
from tiers.reports import submit_monthly

# the desk is the city's: its PostgreSQL runs in the soak run (the CI run compares the
# desk's figures and tables on both: tests/postgres/test_tiers_on_pg.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]

PERIOD = "2025-10"
HOSTILE = "<script>alert(2)</script>\u202egnp.exe<img src=x onerror=alert(3)>"
ESCAPED = "&lt;script&gt;alert(2)&lt;/script&gt;\\u202egnp.exe&lt;img"


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The month of tests.tiers.test_figures, with its village `<script>alert(1)</script>`;
    the village assesses a fee unlike the catalogue's with a hostile reason (its own key),
    synced up; then records one more case the town holds and reports October with (its
    report's `held` beyond the city's heads: a backlog of the village's entries), and only the
    town's own log reaches the city. The village reports nothing. ana admin, vi viewer."""
    base = tmp_path_factory.mktemp("desk-network")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "name_of", lambda node_id: EVIL if node_id == VILLAGE else "镇")
        with figures.small_city(base / "homes") as net:
            figures.hand_built_month(net)
            case = service.accept(net.village, item_code="D4", applicant=Applicant("张三"),
                                  at=figures.t("10-20"))  # fmt: skip
            service.assess_fee(net.village, case, "5.00", at=figures.t("10-20", "10:30"),
                               override_reason=HOSTILE)  # fmt: skip
            figures.up(net, figures.t("10-22"))
            service.accept(net.village, item_code="D4", applicant=Applicant("李四"),
                           at=figures.t("10-23"))  # fmt: skip
            figures.push(net.village, net.town, figures.t("10-23", "12:00"))
            submit_monthly(net.town, PERIOD)
            figures.push(net.town, net.city, figures.t("11-02"), only={TOWN})
    home = base / "homes" / CITY
    zb(home, "user", "add", "ana", "--role", "admin", stdin=PASSWORD + "\n")
    zb(home, "user", "add", "vi", "--role", "viewer", stdin=PASSWORD + "\n")
    return home


@pytest.fixture(scope="module")
def served(city: Path) -> Iterator[str]:
    with zhibao_serve(city) as server:
        yield server.url


class _Table(HTMLParser):
    """Each row of the table with id `table_id`: (the row's class, its cells' text)."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id = table_id
        self.rows: list[tuple[str, list[str]]] = []
        self._in_table = self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and ("id", self.table_id) in attrs:
            self._in_table = True
        elif self._in_table and tag == "tr":
            self.rows.append((dict(attrs).get("class") or "", []))
        elif self._in_table and tag in ("td", "th"):
            self._in_cell = True
            self.rows[-1][1].append("")
        elif self._in_cell and tag == "li" and self.rows[-1][1][-1]:
            self.rows[-1][1][-1] += "\n"

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = False
        elif tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.rows[-1][1][-1] += data


def table(page: str, table_id: str) -> list[tuple[str, list[str]]]:
    parser = _Table(table_id)
    parser.feed(page)
    return parser.rows


def by_column(rows: list[tuple[str, list[str]]], columns: tuple[str, ...]) -> list[dict[str, str]]:
    """The body rows as {json key: cell text} (the first row is the header)."""
    return [dict(zip(columns, cells, strict=True)) for _, cells in rows[1:]]


def get(web: httpx.Client, path: str) -> httpx.Response:
    answer = web.get(path)
    assert answer.status_code == 200, answer.text
    return answer


def csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


def sheet(data: bytes) -> list[tuple[object, ...]]:
    return list(openpyxl.load_workbook(io.BytesIO(data)).active.iter_rows(values_only=True))


def minute(stamp: object) -> str:
    """An ISO time as the page shows it (to the minute)."""
    return str(stamp or "")[:16].replace("T", " ")


def status_network(city: Path) -> dict[str, dict[str, object]]:
    info = json.loads(zb(city, "status", "--json"))
    return {n["node_id"]: n for n in info["network"]["nodes"]}


# --- network ---------------------------------------------------------------------------------


def test_desk_network_lists_the_nodes_and_values_of_status_json(served: str, city: Path) -> None:
    want = status_network(city)
    town_held = json.loads(zb(city.parent / TOWN, "status", "--json"))["heads"][VILLAGE]
    city_held = json.loads(zb(city, "status", "--json"))["heads"][VILLAGE]
    assert town_held > city_held  # the fixture's backlog
    with client(served) as web:
        web.get("/desk/lang?to=en")
        login(web)
        page = get(web, "/desk/network").text
    rows = table(page, "network")
    shown = by_column(rows, network_page.SHOWN)
    assert sorted(r["node_id"] for r in shown) == sorted(want) == sorted([CITY, TOWN, VILLAGE])
    for row in shown:
        node = want[row["node_id"]]
        assert row["name"] == node["name"]
        assert row["tier"] == node["tier"]  # "town" in English words is the code
        assert row["liveness"] == node["liveness"]
        assert row["last_heard"] == minute(node["last_heard"])
        for key in ("entries_held", "forks", "quarantined", "revoked_key_used"):
            assert row[key] == str(node[key]), key
        assert row["warnings_red"] == str(node["warnings"]["red"])  # type: ignore[index]
        assert row["warnings_yellow"] == str(node["warnings"]["yellow"])  # type: ignore[index]
        assert row["revoked"] == ("yes" if node["revoked"] else "")
    backlog = {r["node_id"]: r["backlog"] for r in shown}
    assert backlog == {CITY: "0", TOWN: str(town_held - city_held), VILLAGE: ""}
    assert {r["calendar_next_year"] for r in shown} == {"MISSING"}  # the package ends in 2026
    levels = [cls for cls, _ in rows[1:]]
    assert levels == sorted(levels, key=["attention-red", "attention-yellow", ""].index)
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Backlog" in page and "Calendar 2027" in page


def test_desk_network_filters_by_tier_and_liveness(served: str, city: Path) -> None:
    want = status_network(city)
    with client(served) as web:
        login(web)
        villages = table(get(web, "/desk/network?tier=village").text, "network")
        assert [cells[0] for _, cells in villages[1:]] == [VILLAGE]
        for state in ("alive", "quiet", "silent"):
            page = get(web, f"/desk/network?liveness={state}").text
            shown = {cells[0] for _, cells in table(page, "network")[1:]}
            assert shown == {n for n, v in want.items() if v["liveness"] == state}, state
        assert web.get("/desk/network?tier=province").status_code == 400
        assert web.get("/desk/network?liveness=%3Cb%3E").status_code == 400
        assert "<b>" not in web.get("/desk/network?liveness=%3Cb%3E").text


def test_desk_network_downloads_equal_the_page_rows(served: str) -> None:
    with client(served) as web:
        login(web)
        page = get(web, "/desk/network").text
        assert "/desk/network?format=csv&amp;table=network" in page
        as_csv = get(web, "/desk/network?format=csv&table=network")
        as_xlsx = get(web, "/desk/network?format=xlsx&table=network")
        villages = get(web, "/desk/network?tier=village&format=csv&table=network")
    shown = by_column(table(page, "network"), network_page.SHOWN)
    rows = csv_rows(as_csv.content)
    assert list(rows[0]) == list(network_page.COLUMNS)
    assert [r["node_id"] for r in rows] == [r["node_id"] for r in shown]
    for got, seen in zip(rows, shown, strict=True):
        for key in ("name", "backlog", "entries_held", "forks", "warnings_red",
                    "warnings_yellow", "quarantined", "skew_seconds"):  # fmt: skip
            assert got[key] == seen[key], key
        assert minute(got["last_heard"]) == seen["last_heard"]
    book = sheet(as_xlsx.content)
    assert len(book) == len(shown) + 1 and book[0][0] == "节点编码"
    assert [r[0] for r in book[1:]] == [r["node_id"] for r in shown]
    assert [r[2] for r in book[1:]] == [r["name"] for r in shown]
    # XLSX says what the page says (镇级, 静默 …); CSV keeps the codes, as status --json
    tier, state = network_page.COLUMNS.index("tier"), network_page.COLUMNS.index("liveness")
    assert [(r[tier], r[state]) for r in book[1:]] == [(r["tier"], r["liveness"]) for r in shown]
    assert {r["tier"] for r in rows} <= {"city", "town", "village"}
    assert [r["node_id"] for r in csv_rows(villages.content)] == [VILLAGE]


# --- findings --------------------------------------------------------------------------------


def test_desk_findings_equal_reconcile_json_for_the_month(served: str, city: Path) -> None:
    want = json.loads(zb(city, "reconcile", "--period", PERIOD, "--json"))
    kinds = {f["kind"] for f in want["findings"]}
    assert {"fee_override", "missing_report", "gap"} <= kinds  # what the fixture made
    with client(served) as web:
        web.get("/desk/lang?to=en")
        login(web)
        page = get(web, f"/desk/findings?period={PERIOD}").text
        as_csv = csv_rows(get(web, f"/desk/findings?period={PERIOD}&format=csv"
                                   "&table=findings").content)  # fmt: skip
    shown = by_column(table(page, "findings"), FINDING_COLUMNS[1:])
    assert [(r["node_id"], r["detail"]) for r in shown] == [
        (f["node_id"], terminal_safe(f["detail"])) for f in want["findings"]
    ]  # control and bidi characters shown as escapes, as the command prints them
    assert [(r["kind"], r["node_id"], json.loads(r["evidence"])) for r in as_csv] == [
        (f["kind"], f["node_id"], f["evidence"]) for f in want["findings"]
    ]
    assert "fee unlike catalogue" in {r["kind_name"] for r in shown}
    reports = {r["node_id"]: r for r in by_column(table(page, "reports"), REPORT_COLUMNS)}
    assert reports[VILLAGE]["state"] == "MISSING" and reports[VILLAGE]["report_seq"] == ""
    assert reports[TOWN]["state"] == "received" and reports[TOWN]["report_seq"].isdigit()
    assert set(reports) == {TOWN, VILLAGE}  # the city reports to nobody
    missing = {f["node_id"] for f in want["findings"] if f["kind"] == "missing_report"}
    assert missing == {r for r, v in reports.items() if v["state"] == "MISSING"}


def test_desk_findings_filter_by_kind_and_node(served: str, city: Path) -> None:
    want = json.loads(zb(city, "reconcile", "--period", PERIOD, "--json"))["findings"]
    with client(served) as web:
        login(web)
        fees = get(web, f"/desk/findings?period={PERIOD}&kind=fee_override").text
        village = get(web, f"/desk/findings?period={PERIOD}&node={VILLAGE}").text
        assert web.get(f"/desk/findings?period={PERIOD}&kind=nonsense").status_code == 400
        assert web.get(f"/desk/findings?period={PERIOD}&node=abc").status_code == 400
        assert web.get("/desk/findings?period=2025-Q4").status_code == 400
    fee_rows = by_column(table(fees, "findings"), FINDING_COLUMNS[1:])
    assert [r["node_id"] for r in fee_rows] == [
        f["node_id"] for f in want if f["kind"] == "fee_override"
    ]
    village_rows = by_column(table(village, "findings"), FINDING_COLUMNS[1:])
    in_zh = json.loads(zb(city, "reconcile", "--period", PERIOD, "--json", lang="zh"))
    assert [r["detail"] for r in village_rows] == [
        terminal_safe(f["detail"]) for f in in_zh["findings"] if f["node_id"] == VILLAGE
    ]
    assert [r[1][0] for r in table(village, "reports")[1:]] == [VILLAGE]


def test_desk_findings_default_to_last_month(served: str) -> None:
    with client(served) as web:
        login(web)
        page = get(web, "/desk/findings").text
    assert table(page, "reports")  # the page answered with the month's reports table
    last = (datetime.now(ZONE).date().replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    assert f"<title>{last} 核对结果</title>" in page


def test_desk_findings_downloads_equal_the_page_rows(served: str) -> None:
    with client(served) as web:
        login(web)
        page = get(web, f"/desk/findings?period={PERIOD}").text
        reports_csv = get(web, f"/desk/findings?period={PERIOD}&format=csv&table=reports")
        findings_xlsx = get(web, f"/desk/findings?period={PERIOD}&format=xlsx&table=findings")
        reports_xlsx = get(web, f"/desk/findings?period={PERIOD}&format=xlsx&table=reports")
    shown = by_column(table(page, "findings"), FINDING_COLUMNS[1:])
    book = sheet(findings_xlsx.content)
    assert [(r[1], r[2], terminal_safe(r[4])) for r in book[1:]] == [
        (r["kind_name"], r["node_id"], r["detail"]) for r in shown
    ]
    reports = by_column(table(page, "reports"), REPORT_COLUMNS)
    assert [(r["node_id"], r["report_seq"]) for r in csv_rows(reports_csv.content)] == [
        (r["node_id"], r["report_seq"]) for r in reports
    ]
    held = sheet(reports_xlsx.content)[1:]
    assert [r[0] for r in held] == [r["node_id"] for r in reports]
    at = REPORT_COLUMNS.index("state")
    assert [r[at] for r in held] == [r["state"] for r in reports]  # words, as on the page
    assert {r["state"] for r in csv_rows(reports_csv.content)} <= {"received", "missing", "not_due"}


def test_desk_findings_show_a_hostile_villages_evidence_as_text(served: str, city: Path) -> None:
    want = json.loads(zb(city, "reconcile", "--period", PERIOD, "--json"))["findings"]
    (fee,) = [f for f in want if f["kind"] == "fee_override" and f["node_id"] == VILLAGE]
    assert fee["evidence"]["reason"] == HOSTILE  # signed by the village itself
    with client(served) as web:
        login(web)
        page = get(web, f"/desk/findings?period={PERIOD}&node={VILLAGE}").text
        as_csv = get(web, f"/desk/findings?period={PERIOD}&format=csv&table=findings")
    assert "<script>alert(2)" not in page and "<img" not in page and "\u202e" not in page
    assert ESCAPED in page  # in the detail and the evidence
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 1  # its name, as text
    assert "\u202e" not in as_csv.content.decode("utf-8-sig")  # shown as \u202e there too


# --- who may see them ------------------------------------------------------------------------


def test_desk_network_and_findings_ask_for_a_login(served: str) -> None:
    with client(served) as web:
        for path in ("/desk/network", "/desk/network?format=csv&table=network",
                     f"/desk/findings?period={PERIOD}",
                     f"/desk/findings?period={PERIOD}&format=xlsx&table=findings"):  # fmt: skip
            answer = web.get(path)
            assert answer.status_code in (303, 401), path
            assert VILLAGE not in answer.text and "alert" not in answer.text


def test_desk_network_and_findings_are_read_by_viewers(served: str) -> None:
    with client(served) as web:
        assert login(web, "vi").status_code == 303
        network = get(web, "/desk/network").text
        found = get(web, f"/desk/findings?period={PERIOD}").text
        assert VILLAGE in network and VILLAGE in found
        nav = network.split("<nav>", 1)[1].split("</nav>", 1)[0]
        assert "/desk/network" in nav and "/desk/findings" in nav


def test_desk_network_calendar_of_a_node_below_is_confirmed_by_its_receipt() -> None:
    years = {"this": (2026, "package", None), "next": (2027, "published", (CITY, 40))}
    assert network_page.calendar_of(CITY, CITY, years, {}, {}) == ("package", "published")
    assert network_page.calendar_of(TOWN, CITY, years, {CITY: 39}, {}) == (
        "package", "unconfirmed")  # fmt: skip
    assert network_page.calendar_of(TOWN, CITY, years, {CITY: 40}, {}) == (
        "package", "published")  # fmt: skip
