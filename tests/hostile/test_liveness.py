"""Attacks on liveness (issue #10, item 4), by enrolled members with their real keys,
against real `zhibao serve` processes.

- A heartbeat in another node's name (a sibling village's, or by the parent for its own
  village) is refused by the signature and whole-log rules: the victim still looks silent,
  and looks alive only once it really syncs.
- A flood of heartbeats stamped a month ahead makes its author heard when they arrived,
  not later: a week after the flood stopped it is silent and stale, and its clock is
  reported.
- A heartbeat whose body is garbage is refused; every other node goes on.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from sync import liveness
from sync.protocol.entry import encode_entry
from tests.hostile.harness import Actor, sign_raw, stamp_now
from tests.hostile.network import (
    CITY,
    TOWN,
    VILLAGE_A,
    VILLAGE_B,
    Net,
    assert_works,
    findings,
    heads,
    honest_round,
    zb,
    zj,
)
from tiers.city.network import network_health
from tiers.city.reconcile import reconcile

# the attacks reach the city too: its PostgreSQL runs in the soak run (the CI run's sample
# of a member pushing to a PostgreSQL city: test_city_pushes.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]


def network_of(net: Net, node_id: str = CITY) -> dict[str, dict[str, Any]]:
    """`zhibao status --json`'s network at `node_id`, by node id."""
    return {n["node_id"]: n for n in zj(net.home(node_id), "status")["network"]["nodes"]}


def heartbeat_for(actor: Actor, origin: str, seq: int, prev: bytes | None) -> Any:
    """A well-formed heartbeat of `origin`, signed with `actor`'s own real key."""
    raw = encode_entry(origin, seq, prev, stamp_now(), liveness.ALIVE, {"via": "sync"})
    return sign_raw(actor.signer, raw, origin, seq, liveness.ALIVE)


def applied(answer: Any, origin: str) -> int:
    if answer.status_code != 200:
        return 0
    return int(answer.json()["result"]["applied"].get(origin, 0))


def test_heartbeat_in_another_nodes_name_is_refused(net: Net) -> None:
    sibling, parent = net.actor(VILLAGE_A), net.actor(TOWN)
    assert heads(net.home(TOWN)).get(VILLAGE_B, 0) == 0  # B has written nothing yet
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        by_sibling = sibling.push(town_url, [heartbeat_for(sibling, VILLAGE_B, 1, None)])
        by_parent = parent.push(city_url, [heartbeat_for(parent, VILLAGE_B, 1, None)])
        assert applied(by_sibling, VILLAGE_B) == 0, by_sibling.text
        assert applied(by_parent, VILLAGE_B) == 0, by_parent.text
        if by_parent.status_code == 200:  # the parent may relay B's log: the key refuses it
            refused = {(r["origin"], r["seq"]) for r in by_parent.json()["result"]["rejected"]}
            assert (VILLAGE_B, 1) in refused, by_parent.text
        zb(net.home(TOWN), "sync", "--peer", city_url)
        assert VILLAGE_B not in heads(net.home(TOWN)) and VILLAGE_B not in heads(net.home(CITY))
        before = network_of(net)[VILLAGE_B]
        # the real B syncs once: its own heartbeat, signed by its own key, is believed
        zb(net.home(VILLAGE_B), "sync", "--peer", town_url)
        zb(net.home(TOWN), "sync", "--peer", city_url)
        after = network_of(net)[VILLAGE_B]
        assert served[TOWN].proc.poll() is None and served[CITY].proc.poll() is None
    assert (before["liveness"], before["last_heard"], before["stale"]) == ("silent", None, True)
    assert (after["liveness"], after["heard_how"], after["stale"]) == ("quiet", "heartbeat", False)
    assert_works(net.home(TOWN), net.home(CITY))


def test_future_heartbeats_do_not_keep_a_member_alive(net: Net) -> None:
    village = net.actor(VILLAGE_A)
    ahead = (datetime.fromisoformat(stamp_now()) + timedelta(days=30)).isoformat()
    flood = [village.forge(liveness.ALIVE, {"via": "sync"}, at=ahead) for _ in range(50)]
    with net.serving(CITY, TOWN) as served:
        answer = village.push_own(served[TOWN].url)
        assert applied(answer, VILLAGE_A) == len(flood), answer.text  # its own, well-formed
        zb(net.home(TOWN), "sync", "--peer", served[CITY].url)
    arrived = datetime.fromisoformat(stamp_now())
    seen = network_of(net)[VILLAGE_A]
    assert seen["heard_how"] == "heartbeat"
    assert datetime.fromisoformat(seen["last_heard"]) <= arrived  # its arrival, not its `at`
    assert seen["liveness"] != "silent"
    assert any(f["node_id"] == VILLAGE_A for f in findings(net.home(CITY), "clock_skew"))
    week_later = arrived + timedelta(days=8)  # its heartbeats still say "in three weeks"
    with net.topology.open(CITY) as city:
        later = {n["node_id"]: n for n in network_health(city, now=week_later)["nodes"]}
        stale = reconcile(city, f"{arrived:%Y-%m}", now=week_later)["findings"]
    assert later[VILLAGE_A]["liveness"] == "silent" and later[VILLAGE_A]["stale"]
    assert VILLAGE_A in {f["node_id"] for f in stale if f["kind"] == "stale_node"}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"via": 12}, id="number"),
        pytest.param({"via": "x" * 20_000}, id="huge"),
        pytest.param({"pulse": ["garbage", {"deep": None}]}, id="no_via"),
    ],
)
def test_garbage_heartbeat_is_refused_and_nothing_stops(net: Net, body: dict[str, Any]) -> None:
    village = net.actor(VILLAGE_A)
    held_before = heads(net.home(TOWN)).get(VILLAGE_A, 0)
    forged = village.forge(liveness.ALIVE, body)
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        answer = village.push(town_url, [forged])
        assert answer.status_code == 200, answer.text
        result = answer.json()["result"]
        assert result["applied"].get(VILLAGE_A, 0) == 0, result
        assert (VILLAGE_A, forged.seq) in {(r["origin"], r["seq"]) for r in result["rejected"]}
        honest_round(net, town_url, city_url)  # another village, the town and the city go on
        assert served[TOWN].proc.poll() is None, served[TOWN].errors()
    assert heads(net.home(TOWN)).get(VILLAGE_A, 0) == held_before
    assert_works(net.home(TOWN), net.home(CITY))
