"""Attack 1 (far_future_at): an entry whose `at` is valid ISO 8601 but lies where no date
arithmetic reaches (year 9999 at -12:00, year 1 at +14:00). It must be refused when it is
verified, listed in the push's "rejected", and never reach a projection: the town, its
upward sync and the other villages go on as before."""

from __future__ import annotations

import pytest

from tests.hostile.network import (
    CITY,
    ITEM,
    TOWN,
    VILLAGE_A,
    Net,
    assert_works,
    heads,
    honest_round,
)

# the attacks reach the city too: its PostgreSQL runs in the soak run (the CI run's sample
# of a member pushing to a PostgreSQL city: test_city_pushes.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]


@pytest.mark.parametrize(
    "at",
    [
        pytest.param("9999-12-31T23:59:59-12:00", id="far_future"),
        pytest.param("0001-01-01T00:00:00+14:00", id="distant_past"),
    ],
)
def test_entry_time_out_of_range_is_refused_at_verification(net: Net, at: str) -> None:
    village = net.actor(VILLAGE_A)
    held_before = heads(net.home(TOWN)).get(VILLAGE_A, 0)
    forged = village.forge(
        "case.received",
        {
            "case_id": f"{VILLAGE_A}-20260105-0001",
            "after": None,
            "item_code": ITEM,
            "applicant": {"name": "时间旅行者"},
            "materials": [],
        },
        at=at,
    )
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        answer = village.push(town_url, [forged])
        assert answer.status_code == 200, answer.text
        result = answer.json()["result"]
        assert result["applied"].get(VILLAGE_A, 0) == 0, f"entry with at={at} applied: {result}"
        refused = [(r["origin"], r["seq"]) for r in result["rejected"] if r.get("reason")]
        assert (VILLAGE_A, forged.seq) in refused, result

        honest_round(net, town_url, city_url)  # other villages sync through the town, which
        # syncs with the city
        assert served[TOWN].proc.poll() is None, served[TOWN].errors()
    assert heads(net.home(TOWN)).get(VILLAGE_A, 0) == held_before
    assert_works(net.home(TOWN), net.home(CITY))
