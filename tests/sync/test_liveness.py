"""Liveness (issue #10, item 4): a node that syncs is seen alive by its ancestors even when
it records no case.

A node writes a `sync.alive` heartbeat when a round (or a bundle for its parent) starts
and it has written nothing for `heartbeat_hours`; the city counts it heard at the
heartbeat's own time, never later than its arrival, and tells `alive` (recording cases),
`quiet` (heard, no case for `quiet_days`) and `silent` (nothing for `stale_days`) apart.
Heartbeats are no activity: no figure changes when they are added.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from sync import bundles, liveness
from sync.clock import ZONE, Clock, system_now
from sync.node import RESTORING, Node
from sync.protocol.entry import encode_entry, entry_fields, parse_envelope
from sync.protocol.errors import EntryError
from sync.round import sync_round
from tests.conftest import MakeTopology
from tests.helpers_cases import ITEMS
from tests.support.servers import ZHIBAO, cli_env, serve_in_thread
from tests.support.topology import CITY, TOWN, VILLAGE, VILLAGE_2, hand_down
from tests.tiers.test_figures import PERSON, push, small_city, t
from tiers.cases import service
from tiers.city.network import network_health
from tiers.city.reconcile import Thresholds, last_heard, reconcile
from tiers.city.stats import compute_stats
from tiers.figures import parse_period
from tiers.node import open_home
from tiers.published import publish_items
from tiers.reports import submit_monthly

# its cities on SQLite, then on PostgreSQL: there in the soak run but for the tests marked
# pg_ci (a bounded sample in CI: tests/support/postgres.py soak_marks)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]

NOW = datetime(2025, 11, 20, 9, tzinfo=ZONE)
LATER = NOW + timedelta(days=2)
VILLAGE_3 = "330782001203"


def moving_clock(node: Node, start: datetime) -> Callable[[timedelta], datetime]:
    """Give `node` a clock that stands at `start` until moved; returns the mover."""
    moment = [start]
    node.clock = Clock(now=lambda: moment[0])

    def move(by: timedelta) -> datetime:
        moment[0] += by
        return moment[0]

    return move


def alive_seqs(node: Node, origin: str) -> list[int]:
    return [e.seq for e in node.store.iter_all(origin) if e.type == liveness.ALIVE]


def test_beat_written_only_after_heartbeat_hours_of_silence(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        village = net.village
        move = moving_clock(village, NOW)
        first = liveness.beat(village)  # its own log is empty: it never wrote anything
        assert first is not None and first.type == liveness.ALIVE and first.seq == 1
        fields = entry_fields(first.raw)
        assert fields["body"] == {"via": "sync"} and fields["at"] == NOW.isoformat()
        assert liveness.beat(village) is None  # a round a minute later: nothing
        move(timedelta(hours=23, minutes=59))
        assert liveness.beat(village) is None
        move(timedelta(minutes=1))
        second = liveness.beat(village)
        assert second is not None and second.seq == 2
        move(timedelta(hours=20))
        service.receive(village, "B2", PERSON)  # a case is news enough
        move(timedelta(hours=23))
        assert liveness.beat(village) is None
        move(timedelta(hours=1))
        third = liveness.beat(village, liveness.VIA_BUNDLE)
        assert third is not None and entry_fields(third.raw)["body"] == {"via": "bundle"}
        assert alive_seqs(village, VILLAGE) == [1, 2, 4]


def test_beat_follows_heartbeat_hours_setting(tmp_path: Path) -> None:
    assert liveness.heartbeat_hours({}) == 24.0
    assert liveness.heartbeat_hours({"heartbeat_hours": "often"}) == 24.0
    assert liveness.heartbeat_hours({"heartbeat_hours": True}) == 24.0
    assert liveness.heartbeat_hours({"heartbeat_hours": 6}) == 6.0
    with small_city(tmp_path) as net:
        village = net.village
        move = moving_clock(village, NOW)
        village.config = dataclasses.replace(village.config, settings={"heartbeat_hours": 0})
        assert liveness.beat(village) is None  # 0: heartbeats off
        village.config = dataclasses.replace(village.config, settings={"heartbeat_hours": 2})
        assert liveness.beat(village) is not None
        move(timedelta(hours=2))
        assert liveness.beat(village) is not None
        assert alive_seqs(village, VILLAGE) == [1, 2]


def test_beat_never_while_restoring(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        with net.village.store.transaction():
            net.village.store.set_meta(RESTORING, "1")
        assert liveness.beat(net.village) is None
        assert net.village.store.head(VILLAGE)[0] == 0


@pytest.mark.pg_ci
def test_heartbeat_body_is_checked_on_every_way_in() -> None:
    stamp = NOW.isoformat()
    parse_envelope(encode_entry(VILLAGE, 1, None, stamp, liveness.ALIVE, {"via": "sync"}))
    later = {"via": "sync", "peer": TOWN}  # a later version's extra key is let through
    parse_envelope(encode_entry(VILLAGE, 1, None, stamp, liveness.ALIVE, later))
    for body in ({}, {"via": 7}, {"via": ""}, {"via": "x" * 17}, {"via": "SYNC\n"}):
        with pytest.raises(EntryError) as refused:
            parse_envelope(encode_entry(VILLAGE, 1, None, stamp, liveness.ALIVE, body))
        assert refused.value.params["reason_key"] == "entry.schema", body


@pytest.mark.pg_ci
def test_heard_at_is_the_heartbeat_time_capped_by_arrival() -> None:
    early, late = t("11-10"), t("11-12")
    assert liveness.heard_at(liveness.ALIVE, early, late) == (early, "heartbeat")
    assert liveness.heard_at(liveness.ALIVE, late, early) == (early, "heartbeat")
    assert liveness.heard_at("case.received", early, late) == (late, "entry")


def test_future_heartbeat_is_heard_at_its_arrival(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        moving_clock(net.village, datetime(2025, 11, 25, 9, tzinfo=ZONE))  # a clock ahead
        assert liveness.beat(net.village) is not None
        push(net.village, net.town, t("11-19"))
        assert last_heard(net.town.store)[VILLAGE] == (t("11-19"), "heartbeat")
        later = network_health(net.town, now=datetime(2025, 11, 27, 12, tzinfo=ZONE))
    village = next(n for n in later["nodes"] if n["node_id"] == VILLAGE)
    assert village["liveness"] == "silent" and village["stale"]  # 8 days after it arrived


def test_city_tells_alive_quiet_and_silent_apart(tmp_path: Path) -> None:
    nodes = (CITY, TOWN, VILLAGE, VILLAGE_2, VILLAGE_3)
    with small_city(tmp_path, nodes=nodes) as net:
        v2 = open_home(tmp_path / VILLAGE_2, clock=Clock(now=lambda: NOW))
        v3 = open_home(tmp_path / VILLAGE_3, clock=Clock(now=lambda: NOW))
        try:
            service.receive(v2, "B2", PERSON, at=t("11-16"))
            service.receive(v3, "B2", PERSON, at=t("11-01"))
            push(v3, net.town, t("11-01", "12:00"))  # and never again
            move = moving_clock(net.village, datetime(2025, 11, 10, 10, tzinfo=ZONE))
            service.receive(net.village, "B2", PERSON)  # its last case, on 11-10
            for day in range(9):  # then it only syncs, every day
                stamp = move(timedelta(days=1)).isoformat()
                assert liveness.beat(net.village) is not None
                push(net.village, net.town, stamp)
                if day == 6:
                    push(v2, net.town, stamp)
                push(net.town, net.city, stamp)
            health = network_health(net.city, now=NOW)
            stale = reconcile(net.city, "2025-11", now=NOW)["findings"]
            strict = network_health(net.city, now=NOW, limits=Thresholds(quiet_days=11))
        finally:
            v2.close()
            v3.close()
    by_id = {n["node_id"]: n for n in health["nodes"]}
    village = by_id[VILLAGE]
    assert village["liveness"] == "quiet" and not village["stale"]
    assert (village["last_heard"], village["heard_how"]) == (t("11-19"), "heartbeat")
    assert village["last_case_at"] == t("11-10")
    assert by_id[VILLAGE_2]["liveness"] == "alive" and not by_id[VILLAGE_2]["stale"]
    assert by_id[VILLAGE_3]["liveness"] == "silent" and by_id[VILLAGE_3]["stale"]
    assert by_id[CITY]["liveness"] != "silent"
    states = [n["liveness"] for n in health["nodes"]]
    assert health["liveness"] == {s: states.count(s) for s in ("alive", "quiet", "silent")}
    assert health["stale"] == states.count("silent")
    assert health["limits"] == {"stale_days": 7.0, "quiet_days": 5.0}
    stale_nodes = {f["node_id"]: f for f in stale if f["kind"] == "stale_node"}
    assert VILLAGE_3 in stale_nodes and VILLAGE not in stale_nodes and VILLAGE_2 not in stale_nodes
    assert {n["node_id"]: n["liveness"] for n in strict["nodes"]}[VILLAGE] == "alive"


def test_heartbeats_change_no_figure(tmp_path: Path) -> None:
    period = parse_period("2025-10")
    with small_city(tmp_path) as net:
        case_id = service.receive(net.village, "B2", PERSON, at=t("10-13"))
        service.forward(net.village, case_id, at=t("10-13", "11:00"))
        accepted = service.accept(net.town, item_code="A1", applicant=PERSON, at=t("10-14"))
        service.complete(net.town, accepted, "approved", at=t("10-15"))
        push(net.village, net.town, t("10-15", "12:00"))
        submit_monthly(net.town, "2025-10", at=t("11-03"))
        push(net.town, net.city, t("11-03", "12:00"))

        def figures() -> tuple[object, ...]:
            found = reconcile(net.city, "2025-10", now=LATER)
            kinds = {k: v for k, v in found["counts"].items() if k != "stale_node"}
            return (
                compute_stats(net.city.store, period, "node", LATER.date()),
                compute_stats(net.city.store, period, "item", LATER.date()),
                kinds,
            )

        before = figures()
        stale_before = reconcile(net.city, "2025-10", now=LATER)["counts"]["stale_node"]
        for node in (net.village, net.town):
            moving_clock(node, NOW + timedelta(days=1))
            assert liveness.beat(node) is not None
        push(net.village, net.town, t("11-21", "12:00"))
        push(net.town, net.city, t("11-21", "12:00"))
        after = figures()
        stale_after = reconcile(net.city, "2025-10", now=LATER)["counts"]["stale_node"]
        assert alive_seqs(net.city, VILLAGE) and alive_seqs(net.city, TOWN)
    assert before == after
    assert after[2]["report_mismatch"] == 0  # the town's report still matches
    assert (stale_before, stale_after) == (2, 0)  # what the heartbeats are for


def test_bundle_for_the_parent_carries_a_heartbeat(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        move = moving_clock(net.village, NOW)
        service.receive(net.village, "B2", PERSON)
        move(timedelta(days=2))
        made = bundles.export_bundle(net.village, TOWN, seal=False)
        again = bundles.export_bundle(net.village, TOWN, seal=False)
        down = bundles.export_bundle(net.town, VILLAGE, seal=False)  # not to an ancestor
        moving_clock(net.town, NOW + timedelta(days=3))  # the stick arrives a day later
        bundles.import_bundle(net.town, made.data)
        held = alive_seqs(net.town, VILLAGE)
        town_beats = alive_seqs(net.town, TOWN)
    assert made.header["counts"] == {VILLAGE: 2} == again.header["counts"]
    assert held == [2]  # the case, then the heartbeat the export wrote
    assert down.header["counts"][TOWN] == 1 and town_beats == []  # its enrolment only


# --- real HTTP: a city, a town and two villages over two weeks ---------------------------


def _zhibao_json(home: Path, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [ZHIBAO, "--home", str(home), *args, "--json"], capture_output=True, text=True,
        env=cli_env(), timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def test_quiet_village_that_syncs_is_quiet_at_the_city_not_stale(
    make_topology: MakeTopology,
) -> None:
    """Two weeks on an injected clock that ends now: the village records a case on day 0
    and then only syncs with its town every day; the town syncs with the city. The other
    village syncs on day 0 and never again. Real HTTP servers (uvicorn, the node's real
    app) for town and city; the final look is a real `zhibao status` at the city."""
    net = make_topology([VILLAGE, VILLAGE_2])
    start = system_now().replace(microsecond=0) - timedelta(days=14)
    moment = [start]

    def clock() -> Clock:
        return Clock(now=lambda: moment[0])

    with net.open(CITY, clock=clock()) as city:  # the catalogue, for the villages' cases
        publish_items(city, list(ITEMS))
        with net.open(TOWN, clock=clock()) as town:
            hand_down(city, town)
            for village_id in (VILLAGE, VILLAGE_2):
                with net.open(village_id, clock=clock()) as village:
                    hand_down(town, village)
    with (
        net.open(CITY, clock=clock()) as city_node,
        net.open(TOWN, clock=clock()) as town_node,
        serve_in_thread(node=city_node) as city_url,
        serve_in_thread(node=town_node) as town_url,
        net.open(TOWN, clock=clock()) as town,
        net.open(VILLAGE, clock=clock()) as village,
        net.open(VILLAGE_2, clock=clock()) as village_2,
    ):
        for node in (village, village_2):
            service.receive(node, "B2", PERSON)
            sync_round(node, town_url)
        sync_round(town, city_url)
        with net.open(CITY, clock=clock()) as look:
            day0 = {n["node_id"]: n["liveness"] for n in network_health(look)["nodes"]}
        for _ in range(14):
            moment[0] += timedelta(days=1)
            sync_round(village, town_url)
            sync_round(town, city_url)
        for _ in range(3):  # syncing every minute writes no more heartbeats
            moment[0] += timedelta(minutes=1)
            sync_round(village, town_url)
        sync_round(town, city_url)
    assert day0[VILLAGE] == day0[VILLAGE_2] == "alive"

    status = _zhibao_json(net.home(CITY), "status")
    network = status["network"]
    assert isinstance(network, dict)
    nodes = {n["node_id"]: n for n in network["nodes"]}
    assert nodes[VILLAGE]["liveness"] == "quiet" and nodes[VILLAGE]["stale"] is False
    assert nodes[VILLAGE]["heard_how"] == "heartbeat"
    assert datetime.fromisoformat(nodes[VILLAGE]["last_heard"]) == moment[0] - timedelta(
        minutes=3
    )
    assert nodes[VILLAGE_2]["liveness"] == "silent" and nodes[VILLAGE_2]["stale"] is True
    assert nodes[TOWN]["liveness"] == "quiet" and nodes[TOWN]["stale"] is False
    assert nodes[VILLAGE]["entries_held"] == 1 + 14  # one case, one heartbeat a day
    month = f"{moment[0]:%Y-%m}"
    found = _zhibao_json(net.home(CITY), "reconcile", "--period", month)["findings"]
    assert isinstance(found, list)
    assert {f["node_id"] for f in found if f["kind"] == "stale_node"} == {VILLAGE_2}
    table = subprocess.run(
        [ZHIBAO, "status", "--home", str(net.home(CITY))], capture_output=True, text=True,
        env=cli_env(), timeout=120, check=True,
    ).stdout  # fmt: skip
    row = next(line for line in table.splitlines() if line.startswith(VILLAGE + " "))
    assert " quiet " in row
