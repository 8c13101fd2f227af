"""The desk's overview at /desk/ of a real `zhibao serve` (issue #14): a month's figures by
node, department, item and kind equal to `zhibao stats --by X --json`, their CSV the bytes of
`stats --by X --out f.csv`, the twelve-month trend the charts draw equal to twelve months of
`stats --json` totals (a month without a denominator a gap, not 0), Chart.js and desk.js
shipped and served, a wrong grouping refused, a hostile name shown as text."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import subprocess
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import openpyxl
import pytest

from sync.protocol import i18n
from tests.integration import test_desk
from tests.integration.test_desk import EVIL, PERIOD, cells, client, login, zb
from tiers.city import stats as city_stats
from tiers.desk import figures, overview
from tiers.desk.layout import STATIC

# the desk is the city's: its PostgreSQL runs in the soak run (the CI run compares the
# desk's figures and tables on both: tests/postgres/test_tiers_on_pg.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]

ROOT = Path(__file__).resolve().parents[2]
# test_desk's city (a hostile village among its nodes, one admin) served by `zhibao serve`.
city, served = test_desk.city, test_desk.served
MONTHS = [f"2024-{m:02d}" for m in (11, 12)] + [f"2025-{m:02d}" for m in range(1, 11)]


class _Attributes(HTMLParser):
    """The attributes of every start tag, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Attributes()
    parser.feed(page)
    return parser.tags


def trend_rows(page: str) -> list[list[str]]:
    """The body rows of the table under the charts (id "trend"), cell texts."""
    table = page[page.index('<table id="trend">') :]
    body = table[table.index("<tbody>") : table.index("</tbody>")]
    return [[unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", body)]  # fmt: skip


def trend_of(page: str) -> dict[str, object]:
    (box,) = [a for t, a in tags(page) if a.get("id") == "trend-charts"]
    text = box["data-trend"]
    assert text is not None
    data: dict[str, object] = json.loads(text)
    return data


def download(page: str, table: str, fmt: str) -> str:
    """The page's link to `table` as `fmt` (as the page offers it)."""
    hrefs = [unescape(h) for h in re.findall(r'href="([^"]+)"', page)]
    (found,) = [h for h in hrefs if f"table={table}" in h and f"format={fmt}" in h]
    return found


def test_overview_each_grouping_equals_stats_json(served: str, city: Path) -> None:
    with client(served) as web:
        login(web)
        for by in overview.BY:
            want = json.loads(zb(city, "stats", "--by", by, "--period", PERIOD, "--json",
                                 lang="zh"))  # fmt: skip
            page = web.get("/desk/", params={"by": by, "period": PERIOD})
            assert page.status_code == 200, page.text
            shown = city_stats.table_columns(want, overview.COLUMNS)
            with i18n.speaking("zh"):
                heads = city_stats.headers(shown, by)
                rows = city_stats.table_rows(want, shown)
                tab = i18n.t("desk.overview.by." + by)
            assert cells(page.text) == [heads, *rows], by
            assert len(rows) >= 2 and rows[-1][0] == "合计"
            current = [a for t, a in tags(page.text) if t == "a" and a.get("aria-current")]
            assert len(current) == 1 and f"by={by}" in (current[0]["href"] or "")
            assert f'aria-current="page" class="current">{tab}</a>' in page.text
            assert "分组： <a" in page.text
            assert f'name="by" value="{by}"' in page.text  # another month keeps the grouping


def test_overview_downloads_are_the_stats_files(served: str, city: Path, tmp_path: Path) -> None:
    with client(served) as web:
        login(web)
        for by in overview.BY:
            out = tmp_path / f"{by}.csv"
            zb(city, "stats", "--by", by, "--period", PERIOD, "--out", str(out), lang="zh")
            page = web.get("/desk/", params={"by": by, "period": PERIOD}).text
            got = web.get(download(page, "stats", "csv"))
            assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
            assert got.content == out.read_bytes(), by
        zb(city, "stats", "--by", "item", "--period", PERIOD, "--out", str(tmp_path / "i.xlsx"),
           lang="zh")  # fmt: skip
        page = web.get("/desk/", params={"by": "item", "period": PERIOD}).text
        xlsx = web.get(download(page, "stats", "xlsx"))
        old = web.get(f"/desk/stats.csv?period={PERIOD}")  # the node table's first address
        first = web.get("/desk/", params={"by": "kind", "period": PERIOD, "format": "csv"})
        nothing = web.get("/desk/", params={"period": PERIOD, "format": "csv", "table": "x"})
    assert first.content == (tmp_path / "kind.csv").read_bytes()  # no table: the figures
    assert nothing.status_code == 404
    assert old.content == (tmp_path / "node.csv").read_bytes()

    def sheet(data: bytes) -> list[tuple[object, ...]]:
        return list(openpyxl.load_workbook(io.BytesIO(data)).active.iter_rows(values_only=True))

    assert sheet(xlsx.content) == sheet((tmp_path / "i.xlsx").read_bytes())


def test_overview_trend_equals_twelve_months_of_stats_json(served: str, city: Path) -> None:
    with client(served) as web:
        login(web)
        page = web.get("/desk/", params={"period": PERIOD}).text
        data = trend_of(page)
        trend_csv = web.get(download(page, "trend", "csv")).content
    totals = [json.loads(zb(city, "stats", "--period", month, "--json"))["total"]
              for month in MONTHS]  # fmt: skip
    assert data["labels"] == MONTHS
    series = data["series"]
    assert isinstance(series, list)
    assert [s["key"] for s in series] == list(figures.TREND)
    with i18n.speaking("zh"):
        assert [s["label"] for s in series] == [i18n.t("stats.col." + k) for k in figures.TREND]
    for one in series:
        assert one["values"] == [total[one["key"]] for total in totals], one["key"]
        assert one["percent"] == (one["key"] != "accepted")
    rates = [v for one in series if one["percent"] for v in one["values"]]
    assert None in rates and any(v for v in rates)  # empty months are gaps, the month is not
    assert data["series"][0]["values"][-1] > 0  # type: ignore[index]
    rows = list(csv.DictReader(io.StringIO(trend_csv.decode("utf-8-sig"))))
    assert [r["period"] for r in rows] == MONTHS
    for row, total in zip(rows, totals, strict=True):
        for key in ("received", *figures.TREND):
            assert row[key] == ("" if total[key] is None else str(total[key])), (row, key)
    shown = trend_rows(page)  # the table under the charts: the same months and figures
    assert [r[0] for r in shown] == MONTHS
    assert [r[2] for r in shown] == [str(total["accepted"]) for total in totals]
    assert page.index('id="trend-charts"') < page.index('id="trend"')
    with client(served) as web:
        login(web)
        quarter = trend_of(web.get("/desk/", params={"period": "2025-Q4"}).text)
    assert quarter["labels"] == [*MONTHS[2:], "2025-11", "2025-12"]  # up to its last month


def test_overview_ships_chartjs_and_its_script(served: str) -> None:
    recorded = (ROOT / "scripts" / "vendor-chartjs").read_text("utf-8")
    version = re.search(r"^VERSION=(\S+)$", recorded, re.M)
    sha256 = re.search(r"^JS_SHA256=([0-9a-f]{64})$", recorded, re.M)
    assert version and sha256
    with client(served) as web:
        login(web)
        page = web.get("/desk/").text
        chart = web.get("/desk/static/chart.umd.min.js")
        mine = web.get("/desk/static/desk.js")
        licence = web.get("/desk/static/chart.js.LICENSE.txt")
    sources = [a["src"] for t, a in tags(page) if t == "script"]
    assert sources == ["/desk/static/chart.umd.min.js", "/desk/static/desk.js"]
    for answer in (chart, mine):
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/javascript")
    assert hashlib.sha256(chart.content).hexdigest() == sha256[1]
    assert f"Chart.js v{version[1]}".encode() in chart.content[:200]
    assert mine.content == (STATIC / "desk.js").read_bytes() and b"data-trend" in mine.content
    assert licence.headers["content-type"].startswith("text/plain") and b"MIT" in licence.content
    assert not re.search(r"<script(?![^>]*\bsrc=)", page) and " style=" not in page
    checked = subprocess.run([ROOT / "scripts" / "vendor-chartjs", "--check"],
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stderr


def test_overview_refuses_a_grouping_it_does_not_offer(served: str) -> None:
    with client(served) as web:
        login(web)
        for asked in ("tier", "town", "<b>x</b>"):
            answer = web.get("/desk/", params={"by": asked, "period": PERIOD})
            assert answer.status_code == 400
            assert "不是概览的分组方式：node、department、item、kind" in answer.text
            assert "<b>x</b>" not in answer.text
        web.get("/desk/lang?to=en")
        answer = web.get("/desk/", params={"by": "tier"})
        assert answer.status_code == 400
        assert "'tier' is not a grouping of the overview: node, department, item, kind." in (
            unescape(answer.text)
        )
        assert web.get("/desk/", params={"by": "", "period": PERIOD}).status_code == 200


def test_overview_speaks_english_when_asked(served: str) -> None:
    with client(served) as web:
        web.get("/desk/lang?to=en")
        login(web)
        page = web.get("/desk/", params={"by": "department", "period": PERIOD}).text
    assert "Figures for 2025-10 (2025-10-01 to 2025-10-31) by department" in page
    assert "The whole network, 2024-11 to 2025-10" in page and "Group by: <a" in page
    assert [s["label"] for s in trend_of(page)["series"]] == [  # type: ignore[attr-defined]
        "accepted", "completion rate", "on-time rate", "satisfaction"]  # fmt: skip
    assert "合计" not in page and "统计" not in page


def test_overview_shows_a_hostile_name_as_text(served: str, city: Path) -> None:
    with client(served) as web:
        login(web)
        page = web.get("/desk/", params={"by": "node", "period": PERIOD}).text
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert any(EVIL in row for row in cells(page))  # the name itself, as text
    raw = re.search(r'data-trend="([^"]*)"', page)
    assert raw and not set(raw[1]) & set("<>\"'")
    assert trend_of(page)["labels"] == MONTHS


def test_overview_data_attribute_holds_any_text_inside_it() -> None:
    hostile = {"label": EVIL + "\"' onmouseover=alert(2) x='&amp;", "values": [None, 0.5]}
    html = f"<section id=a{overview.data_attribute('trend', hostile)}><i></i></section>"
    assert [t for t, _ in tags(html)] == ["section", "i"]
    (attrs,) = [a for t, a in tags(html) if t == "section"]
    assert set(attrs) == {"id", "data-trend"}
    assert json.loads(attrs["data-trend"] or "") == hostile
