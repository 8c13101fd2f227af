"""Attacks 2 and 3: a village writes on a case that is not its own.

case_hijack: village A signs a `case.received` under village B's next case id. Whatever
the order of arrival, the case stays B's (origin and holder), the town can take it up,
A's entry is quarantined ("case.not_origin") and nothing blames B.

hostile_case_event: A signs events on B's case (taken, completed, forwarded to A) naming
the case's latest event as `after`. Custody does not move, the case is not completed,
reconcile may blame A but never B, and the town's own next event does not name A's
refused event as its `after` (B never holds A's log, so B would wait for it forever).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sync.clock import local_date
from tests.hostile.harness import stamp_now
from tests.hostile.network import (
    CITY,
    ITEM,
    TOWN,
    VILLAGE_A,
    VILLAGE_B,
    Net,
    assert_quarantined,
    assert_works,
    findings,
    honest_round,
    zb,
    zj,
)

# the attacks reach the city too: its PostgreSQL runs in the soak run (the CI run's sample
# of a member pushing to a PostgreSQL city: test_city_pushes.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]


def _blamed(home: Path) -> set[str]:
    return {f["node_id"] for f in findings(home, "custody_violation")}


def _received_by_b(net: Net, stamp: str) -> str:
    home = net.home(VILLAGE_B)
    case_id = zb(home, "case", "receive", "--item", ITEM, "--applicant", "张三", "--at", stamp)
    zb(home, "case", "forward", case_id.stdout.strip())
    return case_id.stdout.strip()


@pytest.mark.parametrize("a_first", [True, False], ids=["hijacker_first", "owner_first"])
def test_case_hijack_leaves_case_with_its_origin(net: Net, a_first: bool) -> None:
    stamp = stamp_now()
    case_id = f"{VILLAGE_B}-{local_date(stamp):%Y%m%d}-0001"  # B's next case id
    hijacker = net.actor(VILLAGE_A)
    town, city, b = net.home(TOWN), net.home(CITY), net.home(VILLAGE_B)
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url

        def hijack() -> int:
            forged = hijacker.forge(
                "case.received",
                {
                    "case_id": case_id,
                    "after": None,
                    "item_code": ITEM,
                    "applicant": {"name": "冒名顶替"},
                    "materials": [],
                },
                at=stamp,
            )
            answer = hijacker.push_own(town_url)
            assert answer.status_code == 200, answer.text
            return forged.seq

        seq = hijack() if a_first else 0
        assert _received_by_b(net, stamp) == case_id
        zb(b, "sync", "--peer", town_url)
        if not a_first:
            seq = hijack()
        zb(town, "sync", "--peer", city_url)
        for home in (town, city):
            shown = zj(home, "case", "show", case_id)
            assert (shown["origin"], shown["holder"]) == (VILLAGE_B, VILLAGE_B), shown
            assert shown["applicant"]["name"] == "张三" and shown["status"] == "in_transit"
        zb(town, "case", "accept", case_id)  # the town takes it up from B
        assert zj(town, "case", "show", case_id)["holder"] == TOWN
        zb(town, "sync", "--peer", city_url)
        assert zj(city, "case", "show", case_id)["holder"] == TOWN
        for home in (town, city):
            assert_quarantined(home, VILLAGE_A, {seq}, "case.not_origin")
            assert VILLAGE_B not in _blamed(home)
        honest_round(net, town_url, city_url)
    assert_works(town, city)


def _case_events_of(home: Path, origin: str, case_id: str) -> list[dict[str, Any]]:
    rows = zj(home, "log", "show", "--origin", origin)
    return [r for r in rows if r["type"].startswith("case.") and r["body"]["case_id"] == case_id]


def test_hostile_case_event_changes_nothing_and_blames_only_its_author(net: Net) -> None:
    hostile = net.actor(VILLAGE_A)
    town, city, b = net.home(TOWN), net.home(CITY), net.home(VILLAGE_B)
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        case_id = _received_by_b(net, stamp_now())
        zb(b, "sync", "--peer", town_url)
        latest = zj(town, "case", "show", case_id)["events"][-1]
        after = [latest["node_id"], latest["seq"]]
        assert after[0] == VILLAGE_B  # B's forward
        forged = [
            hostile.forge("case.taken", {"case_id": case_id, "after": after}),
            hostile.forge(
                "case.completed", {"case_id": case_id, "after": after, "result": "approved"}
            ),
            hostile.forge("case.forwarded", {"case_id": case_id, "after": after, "to": VILLAGE_A}),
        ]
        answer = hostile.push(town_url, forged)
        assert answer.status_code == 200, answer.text

        shown = zj(town, "case", "show", case_id)
        assert (shown["origin"], shown["holder"], shown["forward_to"]) == (
            VILLAGE_B,
            VILLAGE_B,
            TOWN,
        ), shown
        assert shown["status"] == "in_transit" and shown["completed_at"] is None, shown

        zb(town, "case", "accept", case_id)  # take custody and accept
        zb(town, "case", "complete", case_id, "--result", "approved")
        afters = [tuple(e["body"]["after"] or ()) for e in _case_events_of(town, TOWN, case_id)]
        assert afters and all(a[:1] != (VILLAGE_A,) for a in afters), afters

        zb(b, "sync", "--peer", town_url)  # B gets the town's events on its case
        assert zj(b, "case", "show", case_id)["status"] == "completed"
        zb(b, "case", "deliver", case_id)
        zb(b, "sync", "--peer", town_url)
        zb(town, "sync", "--peer", city_url)
        assert zj(city, "case", "show", case_id)["status"] == "delivered"
        for home in (town, city):
            assert _blamed(home) <= {VILLAGE_A}, findings(home, "custody_violation")
        honest_round(net, town_url, city_url)
    assert_works(town, city)
