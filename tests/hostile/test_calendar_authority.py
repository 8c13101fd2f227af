"""Issue #12 part 8, hostile members with their own real keys and the calendar:

- village_whole_year_bundle: village A signs a whole (plausible) 2027 into its own log and
  carries it to its town on a USB stick made by the real `bundle export`; the town relays
  A's log to the city. Only the city publishes the calendar: set aside at both
  ("published.not_city"), 2027 stays guessed there.
- town_whole_year: the town signs a whole 2027 into its own log; it flows down to its
  village on a pull and up to the city on a push: set aside at both.
- city_bogus_whole_year: the city's own key in modified software signs New Year's Day
  alone as the whole of 2027 (the command refuses that). A receiver cannot know the real
  notice, but it can check its shape (a whole year has 春节, 国庆 … days off): the entry is
  set aside at the town and at the city itself ("calendar.not_whole_year"), reconcile says
  so, and 2027 stays provisional. A plausible whole year signed by the city is the city's
  word: no receiver can tell it from the real notice.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.network import (
    CITY,
    TOWN,
    VILLAGE_A,
    VILLAGE_C,
    Net,
    assert_quarantined,
    assert_works,
    zb,
    zj,
)
from tests.support.calendars import WHOLE_2027
from tiers.calendar import CalendarOverrides

# the attacks reach the city too: its PostgreSQL runs in the soak run (the CI run's sample
# of a member pushing to a PostgreSQL city: test_city_pushes.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]

WHOLE = CalendarOverrides({2027: WHOLE_2027}).to_body()
BOGUS_WHOLE = {"days": {}, "years": {"2027": {"complete": True, "holidays": ["2027-01-01"],
                                              "workdays": []}}}  # fmt: skip


def _held(home: Path, origin: str) -> int:
    """How far `home` holds `origin`'s log, whole or in part (what flowed down)."""
    status = zj(home, "status")
    return max(status["heads"].get(origin, 0), status["held_in_part"].get(origin, 0))


def _year_2027(home: Path) -> tuple[str, bool]:
    view = zj(home, "calendar", "show", "--year", "2027")
    return view["source"], view["known"]


def test_village_whole_year_on_a_bundle_and_relayed_counts_nowhere_else(
    net: Net, tmp_path: Path
) -> None:
    village, town, city = net.home(VILLAGE_A), net.home(TOWN), net.home(CITY)
    forged = net.actor(VILLAGE_A).forge("calendar.override", WHOLE)
    stick = tmp_path / "a.zbb"
    zb(village, "bundle", "export", "--to", TOWN, "--out", str(stick))
    zb(town, "bundle", "import", str(stick))
    assert_quarantined(town, VILLAGE_A, {forged.seq}, "published.not_city")
    assert _year_2027(town) == ("guessed", False)
    with net.serving(CITY) as served:
        zb(town, "sync", "--peer", served[CITY].url)
    assert zj(city, "status")["heads"][VILLAGE_A] >= forged.seq  # relayed whole, as evidence
    assert_quarantined(city, VILLAGE_A, {forged.seq}, "published.not_city")
    assert _year_2027(city) == ("guessed", False)
    assert_works(town, city)


def test_town_whole_year_counts_neither_below_nor_above(net: Net) -> None:
    town, city, village = net.home(TOWN), net.home(CITY), net.home(VILLAGE_C)
    forged = net.actor(TOWN).forge("calendar.override", WHOLE)
    with net.serving(CITY, TOWN) as served:
        zb(village, "sync", "--peer", served[TOWN].url)
        zb(town, "sync", "--peer", served[CITY].url)
    for home in (village, city):
        assert _held(home, TOWN) >= forged.seq, home.name
        assert_quarantined(home, TOWN, {forged.seq}, "published.not_city")
        assert _year_2027(home) == ("guessed", False)
    assert_works(village, city)


def test_city_bogus_whole_year_is_set_aside_everywhere(net: Net) -> None:
    town, city = net.home(TOWN), net.home(CITY)
    forged = net.actor(CITY).forge("calendar.override", BOGUS_WHOLE)
    with net.serving(CITY) as served:
        zb(town, "sync", "--peer", served[CITY].url)
    for home in (town, city):
        assert _held(home, CITY) >= forged.seq, home.name
        assert_quarantined(home, CITY, {forged.seq}, "calendar.not_whole_year")
        assert _year_2027(home) == ("guessed", False)
        assert zj(home, "status")["calendar"]["published_whole"] == [], home.name
    assert_works(town, city)
