"""Attack 4 (village_calendar, village_catalogue): a village publishes a calendar (every
weekday of this year and the next a holiday) and a catalogue (a city item renamed, an
item the city never published), through `zhibao` or forged straight into its log.

Only the city publishes for others: the town's and the city's deadlines and catalogue do
not move. Through the command line the village may refuse the import (one line) or keep
the entries for itself; forged entries are quarantined ("published.not_city")."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.hostile.network import (
    CITY,
    ITEM,
    TOWN,
    VILLAGE_A,
    Net,
    assert_quarantined,
    assert_works,
    honest_round,
    one_line_error,
    today,
    zb,
    zj,
)
from tests.support.topology import SHIPPED_CATALOGUE
from tiers.calendar import CalendarOverrides, YearArrangement
from tiers.catalogue import parse_catalogue

# the attacks reach the city too: its PostgreSQL runs in the soak run (the CI run's sample
# of a member pushing to a PostgreSQL city: test_city_pushes.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]


def _weekdays(year: int) -> list[date]:
    first = date(year, 1, 1)
    days = (first + timedelta(days=n) for n in range((date(year + 1, 1, 1) - first).days))
    return [d for d in days if d.weekday() < 5]


def _no_work(years: tuple[int, ...]) -> CalendarOverrides:
    """Every weekday of `years` a holiday."""
    return CalendarOverrides({y: YearArrangement(holidays=frozenset(_weekdays(y))) for y in years})


def _seen(net: Net, case_id: str) -> dict[str, Any]:
    """What the attack must not move: the town case's deadline and the catalogue, at the
    town and at the city."""
    return {
        node_id: {
            "deadline": zj(net.home(node_id), "case", "show", case_id)["deadline"],
            "catalogue": {i["code"]: i for i in zj(net.home(node_id), "catalogue", "list")},
        }
        for node_id in (TOWN, CITY)
    }


def _assert_unmoved(before: dict[str, Any], after: dict[str, Any]) -> None:
    for node_id in (TOWN, CITY):
        assert after[node_id]["deadline"] == before[node_id]["deadline"], node_id
        assert after[node_id]["catalogue"] == before[node_id]["catalogue"], node_id


def _town_case(net: Net, city_url: str) -> str:
    town = net.home(TOWN)
    case_id = zb(town, "case", "accept", "--item", ITEM, "--applicant", "王五").stdout.strip()
    zb(town, "sync", "--peer", city_url)
    assert zj(town, "case", "show", case_id)["deadline"] is not None
    return case_id


@pytest.mark.soak  # CI keeps the others of this file (15-minute bound)
@pytest.mark.slow
def test_village_calendar_and_catalogue_imports_count_only_at_the_village(
    net: Net, tmp_path: Path
) -> None:
    village, town = net.home(VILLAGE_A), net.home(TOWN)
    year = today().year
    calendar = tmp_path / "calendar.json"
    calendar.write_text(json.dumps(_no_work((year, year + 1)).to_body()), "utf-8")
    lines = SHIPPED_CATALOGUE.read_text("utf-8").splitlines()
    renamed = [line.replace(line.split(",")[1], "村里改的名字", 1) for line in lines[1:]]
    catalogue = tmp_path / "catalogue.csv"
    catalogue.write_text("\n".join([lines[0], *renamed]) + "\n", "utf-8")
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        case_id = _town_case(net, city_url)
        before = _seen(net, case_id)
        for what, path in (("calendar", calendar), ("catalogue", catalogue)):
            done = zb(village, what, "import", str(path), ok=False)
            if done.returncode:  # the village may refuse to publish: then in one line
                one_line_error(done)
        pushed = zb(village, "sync", "--peer", town_url, ok=False)
        assert pushed.returncode in (0, 1) and "internal error" not in pushed.stderr, pushed.stderr
        zb(town, "sync", "--peer", city_url)
        _assert_unmoved(before, _seen(net, case_id))
        honest_round(net, town_url, city_url)
    assert_works(town, net.home(CITY))


def test_forged_village_calendar_and_catalogue_are_quarantined(net: Net) -> None:
    hostile, town, city = net.actor(VILLAGE_A), net.home(TOWN), net.home(CITY)
    year = today().year
    items = parse_catalogue(SHIPPED_CATALOGUE.read_bytes(), SHIPPED_CATALOGUE.name)
    city_item = next(item for item in items if item.code == ITEM)
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        case_id = _town_case(net, city_url)
        before = _seen(net, case_id)
        forged = [
            hostile.forge("calendar.override", _no_work((year, year + 1)).to_body()),
            hostile.forge("catalogue.item", replace(city_item, name="村里改的名字").to_body()),
            hostile.forge("catalogue.item", replace(city_item, code="330782-CUN-999").to_body()),
        ]
        answer = hostile.push_own(town_url)
        assert answer.status_code == 200, answer.text
        zb(town, "sync", "--peer", city_url)
        _assert_unmoved(before, _seen(net, case_id))
        for home in (town, city):
            assert_quarantined(home, VILLAGE_A, {e.seq for e in forged}, "published.not_city")
        honest_round(net, town_url, city_url)
    assert_works(town, city)
