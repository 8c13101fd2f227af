"""`zhibao serve` at a city keeps this month's and last month's figures counted
(tiers.figure_keeper): a real serve, a real town pushing cases with its own key, the kept
rows read from the database the serve writes."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import zhibao, zhibao_serve
from tests.support.topology import CITY, TOWN, Topology, build_catalogued, hand_up
from tiers.cases import service
from tiers.cases.service import Applicant
from tiers.figure_cells import _live
from tiers.figure_keeper import kept_months
from tiers.figures import regroup
from tiers.published import list_items, work_calendar

pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_ci]

PERSON = Applicant("王建国", phone="13805790001")
WAIT_S = 60.0


def _town_item(net: Topology) -> str:
    with net.open(TOWN) as town:
        return next(i.code for i in list_items(town.store) if "town" in i.accept_tiers)


def _accept(net: Topology, item: str, count: int, *, days_ago: int = 0) -> list[str]:
    """`count` cases accepted at the town (signed by its key), handed up to the city."""
    with net.open(TOWN) as town, net.open(CITY) as city:
        at = (town.clock.now() - timedelta(days=days_ago)).isoformat(timespec="seconds")
        ids = [service.accept(town, item_code=item, applicant=PERSON, at=at) for _ in range(count)]
        assert not hand_up(town, city)["rejected"]
    return ids


def _kept(net: Topology) -> tuple[dict[str, int], int]:
    """(period → the mark its kept rows were counted at, the mark now) at the city."""
    with net.open(CITY) as city:
        heads = dict(city.store.query("SELECT period, mark FROM figure_periods"))
        mark = city.store.query("SELECT value FROM meta WHERE key = 'figures.mark'")
        return {p: int(m) for p, m in heads.items()}, int(mark[0][0]) if mark else 0


def _wait_kept(net: Topology, months: list[str]) -> dict[str, int]:
    deadline = time.monotonic() + WAIT_S
    while True:
        heads, mark = _kept(net)
        if all(heads.get(m) == mark for m in months):
            return heads
        assert time.monotonic() < deadline, f"not kept in {WAIT_S} s: {heads}, mark {mark}"
        time.sleep(0.2)


def _town_row(home: Path, period: str) -> dict[str, Any]:
    out = zhibao(home, "stats", "--period", period, "--json")
    assert out.returncode == 0, out.stderr
    return {row["key"]: row for row in json.loads(out.stdout)["rows"]}[TOWN]


def test_serve_keeps_the_months_a_town_pushes_into(tmp_path: Path) -> None:
    net = build_catalogued(tmp_path)
    item = _town_item(net)
    _accept(net, item, 3)
    with net.open(CITY) as city:
        today = city.clock.now().date()
    months = [p.label for p in kept_months(today)]
    with zhibao_serve(net.home(CITY)):
        first = _wait_kept(net, months)
        # the town (its own key) accepts more today and back-dates two into last month:
        # both kept months are counted again, with the mark the new facts were written at
        _accept(net, item, 1)
        _accept(net, item, 2, days_ago=today.day + 3)
        again = _wait_kept(net, months)
        assert all(again[m] > first[m] for m in months)
    this, last = months
    assert _town_row(net.home(CITY), this)["accepted"] == 4
    assert _town_row(net.home(CITY), last)["accepted"] == 2
    with net.open(CITY) as city:  # what stats read is what a live count gives
        for period in kept_months(today):
            items = {i.code: i for i in list_items(city.store)}
            cells, _ = _live(city.store, period, today, work_calendar(city.store), items)
            live = regroup(cells, lambda item, node: node)[TOWN]
            assert live.accepted == _town_row(net.home(CITY), period.label)["accepted"]


def test_a_town_serve_keeps_nothing(tmp_path: Path) -> None:
    net = build_catalogued(tmp_path)
    _accept(net, _town_item(net), 1)
    with zhibao_serve(net.home(TOWN)):
        time.sleep(1.5)
    with net.open(TOWN) as town:
        assert town.store.query("SELECT COUNT(*) FROM figure_periods") == [(0,)]


def test_serve_keeps_the_two_years_before_once_each_and_no_further(tmp_path: Path) -> None:
    """A town (its own key) back-dates cases into months a year and more ago: the serve's
    keeper counts each month of the two years before last month once, so a clerk's first
    `stats` of one reads kept rows equal to a live count — and keeps no month beyond them,
    whatever the cases' dates say."""
    from tiers.figure_cells import unkept_month
    from tiers.figure_keeper import SWEEP_BACK, swept_months

    net = build_catalogued(tmp_path)
    item = _town_item(net)
    with net.open(CITY) as city:
        today = city.clock.now().date()
    _accept(net, item, 2, days_ago=120)
    _accept(net, item, 3, days_ago=400)
    _accept(net, item, 1, days_ago=900)  # beyond the two years: counted when asked, not kept
    months = kept_months(today) + swept_months(today)
    assert len(months) == SWEEP_BACK + 2
    with zhibao_serve(net.home(CITY)):
        deadline = time.monotonic() + WAIT_S
        while True:
            with net.open(CITY) as city:
                cal, store = work_calendar(city.store), city.store
                items = {i.code: i for i in list_items(store)}
                if unkept_month(store, today, cal, items, months) is None:
                    break
            assert time.monotonic() < deadline, "the months were not kept"
            time.sleep(0.2)
    with net.open(CITY) as city:
        kept = [p for (p,) in city.store.query("SELECT period FROM figure_periods ORDER BY 1")]
    assert kept == sorted(p.label for p in months)  # and nothing beyond them
    for days_ago, accepted in ((120, 2), (400, 3)):
        label = f"{today - timedelta(days=days_ago):%Y-%m}"
        assert _town_row(net.home(CITY), label)["accepted"] == accepted
