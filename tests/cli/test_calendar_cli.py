"""Issue #12 part 8 at the command line: `calendar import` makes each year say whether it is
the whole year, and a deadline or a figure resting on a guessed year is marked provisional
in `case list`, `stats`, `report monthly`, `status` and `reconcile`.

Publishing runs the real program (subprocesses, nothing there depends on today). What
depends on today — "it is December 2026 and the package knows years up to 2026" — runs
the same click commands in process on homes opened with a fixed clock (the one seam:
`cli.common.open_home`), so the test means the same on any day it runs.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import cli.common
from cli.main import cli as zhibao_cli
from sync.clock import ZONE
from sync.protocol.i18n import use_locale
from tests.helpers_cases import CITY, TOWN, copy_logs, fixed_clock, network
from tests.support.calendars import whole_2027_file
from tests.support.servers import zhibao
from tiers.calendar_publish import package_years
from tiers.cases import service
from tiers.node import open_home

NEW_YEAR_ONLY = {"years": {"2027": {"complete": False, "holidays": ["2027-01-01"]}}}


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    assert 2027 not in package_years(), "chinesecalendar knows 2027: move these tests a year on"
    use_locale("en")
    yield
    use_locale(None)


@pytest.fixture
def city(tmp_path: Path) -> Path:
    home = tmp_path / "city"
    done = zhibao(home, "init", "--tier", "city", "--node-id", CITY, "--name", "市行政服务中心")
    assert done.returncode == 0, done.stderr
    return home


def _file(tmp_path: Path, doc: dict[str, Any], name: str = "calendar.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    return path


def _log(home: Path) -> str:
    done = zhibao(home, "log", "show", "--json")
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        pytest.param(
            {"years": {"2027": {"holidays": ["2027-01-01"]}}},
            'Say whether 2027 is the whole year: "complete": true',
            id="undeclared",
        ),
        pytest.param(
            {"years": {"2027": {"complete": True, "holidays": ["2027-01-01"]}}},
            "2027 is declared complete but clearly is not the whole year: no weekday off for"
            " 春节、清明节、劳动节、端午节、中秋节、国庆节",
            id="new-year-declared-whole",
        ),
        pytest.param(
            {"years": {"2027": {"complete": True, "holidays": [], "workdays": []}}},
            "no weekday off for 元旦、春节",
            id="no-holidays-at-all",
        ),
        pytest.param(
            {"years": {"2027": {"complete": "yes", "holidays": []}}},
            "years.2027.complete: expected true or false",
            id="complete-not-bool",
        ),
        pytest.param(
            {"years": {"2027": {"complete": True, "whole": True}}},
            "unknown key 'whole'",
            id="unknown-key",
        ),
    ],
)
def test_calendar_import_refuses_in_one_line_and_appends_nothing(
    city: Path, tmp_path: Path, doc: dict[str, Any], says: str
) -> None:
    before = _log(city)
    done = zhibao(city, "calendar", "import", str(_file(tmp_path, doc)))
    assert done.returncode == 1, done.stdout
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("zhibao: ")
    assert says in done.stderr
    assert _log(city) == before


def test_calendar_import_refusal_in_chinese(city: Path, tmp_path: Path) -> None:
    doc = {"years": {"2027": {"complete": True, "holidays": ["2027-01-01"]}}}
    done = zhibao(city, "calendar", "import", str(_file(tmp_path, doc)), lang="zh")
    assert done.returncode == 1
    assert "2027 年声明为全年安排，但显然不完整：春节、" in done.stderr


def test_calendar_import_partial_then_whole_then_no_downgrade(city: Path, tmp_path: Path) -> None:
    partial = zhibao(city, "calendar", "import", str(_file(tmp_path, NEW_YEAR_ONLY)))
    assert partial.returncode == 0, partial.stderr
    assert "Some days only, still provisional until the whole year is published: 2027." in (
        partial.stdout
    )
    shown = zhibao(city, "calendar", "show").stdout
    assert "some days only (provisional)" in shown
    year = json.loads(zhibao(city, "calendar", "show", "--year", "2027", "--json").stdout)
    assert (year["source"], year["known"], year["complete"]) == ("guessed", False, False)
    assert year["holidays"] == ["2027-01-01"]
    text = zhibao(city, "calendar", "show", "--year", "2027").stdout
    assert text.startswith("2027: not known whole; weekends plus the days 330782 published")
    whole = zhibao(city, "calendar", "import", str(_file(tmp_path, whole_2027_file(), "w.json")))
    assert whole.returncode == 0, whole.stderr
    assert "Whole year, deadlines in it no longer provisional: 2027." in whole.stdout
    year = json.loads(zhibao(city, "calendar", "show", "--year", "2027", "--json").stdout)
    assert (year["source"], year["known"], year["complete"]) == ("override", True, True)
    before = _log(city)
    again = zhibao(city, "calendar", "import", str(_file(tmp_path, NEW_YEAR_ONLY)))
    assert again.returncode == 1
    assert "2027 is already published here as the whole year" in again.stderr
    assert _log(city) == before


# --- what depends on today: in process, with a fixed clock ---------------------------------


def _run(now: datetime, home: Path, *args: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(
        cli.common, "open_home", lambda where: open_home(where, clock=fixed_clock(now))
    )
    result = CliRunner().invoke(zhibao_cli, [*args, "--home", str(home)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


DECEMBER_29 = datetime(2026, 12, 29, 10, 0, tzinfo=ZONE)
JANUARY_20 = datetime(2027, 1, 20, 10, 0, tzinfo=ZONE)
FEBRUARY_2 = datetime(2027, 2, 2, 10, 0, tzinfo=ZONE)


@pytest.fixture
def homes(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """A city and a town; the town accepted a 5-day case on 2026-12-28 (due 2027-01-04 on
    weekends alone, provisional) and completed it on 2027-01-04; the city holds it all."""
    with network(tmp_path, DECEMBER_29) as net:
        case_id = service.accept(net.town, item_code="A1", applicant=service.Applicant("周九"),
                                 at="2026-12-28T09:00")  # fmt: skip
        net.up()
    yield {"city": tmp_path / "city", "town": tmp_path / "town", "case": Path(case_id)}


def _publish_whole(homes: dict[str, Path], tmp_path: Path) -> None:
    path = _file(tmp_path, whole_2027_file(), "whole.json")
    assert zhibao(homes["city"], "calendar", "import", str(path)).returncode == 0
    with open_home(homes["city"]) as city, open_home(homes["town"]) as town:
        copy_logs(city.store, town.store)


def test_case_list_table_and_json_mark_provisional(
    homes: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = _run(DECEMBER_29, homes["town"], "case", "list", monkeypatch=monkeypatch)
    listed = json.loads(_run(DECEMBER_29, homes["town"], "case", "list", "--json",
                             monkeypatch=monkeypatch))  # fmt: skip
    assert "2027-01-04 (provisional)" in table
    assert table.rstrip().endswith("provisional: publish the 2027 calendar override")
    assert (listed[0]["provisional"], listed[0]["provisional_years"]) == (True, [2027])
    _publish_whole(homes, tmp_path)
    table = _run(DECEMBER_29, homes["town"], "case", "list", monkeypatch=monkeypatch)
    assert "2027-01-05" in table and "provisional" not in table


def test_status_has_a_calendar_line_and_key(
    homes: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _run(DECEMBER_29, homes["city"], "status", monkeypatch=monkeypatch)
    info = json.loads(_run(DECEMBER_29, homes["city"], "status", "--json", monkeypatch=monkeypatch))
    assert "NOT KNOWN, counted on weekends alone: 2027 (1 open case(s) have deadlines in it)" in (
        text
    )
    assert info["calendar"]["needed"] == [{"year": 2027, "open_cases": 1, "this_year": False,
                                           "next_year": True, "published_days": False}]  # fmt: skip
    _publish_whole(homes, tmp_path)
    info = json.loads(_run(DECEMBER_29, homes["city"], "status", "--json", monkeypatch=monkeypatch))
    assert info["calendar"]["published_whole"] == [2027] and info["calendar"]["needed"] == []


def test_reconcile_json_and_table_name_the_missing_year(
    homes: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = json.loads(_run(DECEMBER_29, homes["city"], "reconcile", "--period", "2026-11",
                             "--json", monkeypatch=monkeypatch))  # fmt: skip
    missing = [f for f in result["findings"] if f["kind"] == "calendar_missing"]
    assert [(f["node_id"], f["evidence"]["year"]) for f in missing] == [(CITY, 2027)]
    assert result["provisional"] == []
    table = _run(DECEMBER_29, homes["city"], "reconcile", "--period", "2026-11",
                 monkeypatch=monkeypatch)  # fmt: skip
    words = " ".join(table.split())  # the table wraps a detail to fit 100 columns
    assert "calendar missing" in words and "has not published a whole 2027 calendar" in words


def _complete_on_january_4(homes: dict[str, Path]) -> None:
    with open_home(homes["town"], clock=fixed_clock(JANUARY_20)) as town:
        service.complete(town, str(homes["case"]), "approved", at="2027-01-04T16:00")
        with open_home(homes["city"]) as city:
            copy_logs(town.store, city.store)


def test_stats_json_table_and_csv_name_the_guessed_year(
    homes: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _complete_on_january_4(homes)
    args = ("stats", "--period", "2027-01")
    result = json.loads(_run(JANUARY_20, homes["city"], *args, "--json", monkeypatch=monkeypatch))
    table = _run(JANUARY_20, homes["city"], *args, monkeypatch=monkeypatch)
    out = tmp_path / "stats.csv"
    _run(JANUARY_20, homes["city"], *args, "--format", "csv", "--out", str(out),
         monkeypatch=monkeypatch)  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(out.read_bytes().decode("utf-8-sig"))))
    assert result["provisional"] == [2027]
    assert (result["total"]["on_time"], result["total"]["early"]) == (1, 0)
    assert "provisional: these figures count 2027 on weekends alone" in table
    assert {row["provisional"] for row in rows} == {"2027"}
    _publish_whole(homes, tmp_path)
    result = json.loads(_run(JANUARY_20, homes["city"], *args, "--json", monkeypatch=monkeypatch))
    assert result["provisional"] == [] and result["total"]["early"] == 1
    assert "provisional" not in _run(JANUARY_20, homes["city"], *args, monkeypatch=monkeypatch)


def test_report_monthly_names_the_guessed_year(
    homes: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _complete_on_january_4(homes)
    done = json.loads(_run(FEBRUARY_2, homes["town"], "report", "monthly", "--period",
                           "2027-01", "--json", monkeypatch=monkeypatch))  # fmt: skip
    text = _run(FEBRUARY_2, homes["town"], "report", "monthly", "--period", "2027-01",
                monkeypatch=monkeypatch)  # fmt: skip
    assert done["provisional"] == [2027] and done["node_id"] == TOWN
    assert "already reported" in text
    assert "provisional: these figures count 2027 on weekends alone" in text
