"""Restore: a town whose node.db died is rebuilt from the city's copy over real HTTP."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sync.audit import verify_log
from sync.node import NODE_DB, RESTORING
from sync.protocol.errors import HomeError, LinkDownError, SyncError
from sync.restore import restore_node
from sync.round import sync_round
from sync.status import node_status
from tests.support.servers import serve_in_thread
from tests.support.state import snapshot_home
from tests.support.topology import CITY, TOWN, VILLAGE, Topology, append_notes
from tiers.node import open_home

# its cities on SQLite, then on PostgreSQL: there in the soak run but for the tests marked
# pg_ci (a bounded sample in CI: tests/support/postgres.py soak_marks)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]


@dataclass
class Synced:
    topology: Topology
    city_url: str

    def home(self, node_id: str) -> Path:
        return self.topology.home(node_id)


@pytest.fixture
def synced(topology: Topology) -> Iterator[Synced]:
    """Village → town → city over HTTP, with work on both lower tiers; the city serving."""
    with topology.open(VILLAGE) as village:
        append_notes(village, 4, tag="village")
    with topology.open(TOWN) as town:
        append_notes(town, 3, tag="town")
    with serve_in_thread(topology.home(TOWN)) as town_url, topology.open(VILLAGE) as village:
        sync_round(village, town_url)
    with serve_in_thread(topology.home(CITY)) as city_url:
        with topology.open(TOWN) as town:
            sync_round(town, city_url)
        yield Synced(topology, city_url)


def lose_database(home: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        (home / (NODE_DB + suffix)).unlink(missing_ok=True)


class CutSubtreePull(httpx.HTTPTransport):
    """The link drops when the restore asks for its own subtree: after its first pull (what
    concerns it, small here), as the bodies are sealed and say nothing on the wire."""

    pulls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/pull":
            self.pulls += 1
            if self.pulls > 1:
                raise httpx.ConnectError("link cut", request=request)
        return super().handle_request(request)


@pytest.mark.pg_ci
def test_restore_rebuilds_a_lost_town_from_the_city(synced: Synced) -> None:
    town_home = synced.home(TOWN)
    before = snapshot_home(town_home)
    lose_database(town_home)
    with open_home(town_home, rebuild=True) as town:
        summary = restore_node(town, synced.city_url)
        assert not town.store.get_meta(RESTORING)
        report = verify_log(town.store)
        assert report.ok, report.problems
        assert summary.heads == before.seqs()
    after = snapshot_home(town_home)
    assert after.heads == before.heads and after.counts.keys() >= before.counts.keys()
    assert after.within(TOWN) == before.within(TOWN)


def test_restore_refuses_appends_until_caught_up(synced: Synced) -> None:
    town_home = synced.home(TOWN)
    lose_database(town_home)
    with open_home(town_home, rebuild=True) as town:
        with pytest.raises(LinkDownError):
            restore_node(town, synced.city_url, transport=CutSubtreePull())
        assert node_status(town)["restoring"]
        with pytest.raises(HomeError) as refused:
            append_notes(town, 1)
        assert refused.value.key == "node.restoring"
        restore_node(town, synced.city_url)  # resumes without --force: still restoring
        assert not node_status(town)["restoring"]
        seq = town.store.head(TOWN)[0]
        append_notes(town, 1, tag="after")
        assert town.store.head(TOWN)[0] == seq + 1
        sync_round(town, synced.city_url)
    with open_home(synced.home(CITY)) as city:
        assert city.store.head(TOWN)[0] == seq + 1
        assert city.store.forks() == []


def test_restore_refuses_a_database_that_holds_entries(synced: Synced) -> None:
    with open_home(synced.home(TOWN)) as town:
        before = town.store.heads()
        with pytest.raises(HomeError) as refused:
            restore_node(town, synced.city_url)
        assert refused.value.key == "restore.not_empty"
        assert not town.store.get_meta(RESTORING)
        restore_node(town, synced.city_url, force=True)
        assert town.store.heads() == before


def test_restore_refuses_a_city_a_missing_url_and_a_non_ancestor(synced: Synced) -> None:
    lose_database(synced.home(TOWN))
    with open_home(synced.home(TOWN), rebuild=True) as town:
        with pytest.raises(HomeError) as no_url:
            restore_node(town)  # the topology gives no parent URL
        assert no_url.value.key == "restore.no_url"
        with serve_in_thread(synced.home(VILLAGE)) as url, pytest.raises(SyncError) as below:
            restore_node(town, url)  # a village holds the town's log only in part
        assert below.value.key == "restore.not_ancestor"
        assert town.store.get_meta(RESTORING)
    with open_home(synced.home(CITY)) as city, pytest.raises(HomeError) as refused:
        restore_node(city, synced.city_url)
    assert refused.value.key == "restore.city"


def test_round_stops_a_node_put_back_from_an_old_backup(synced: Synced, tmp_path: Path) -> None:
    town_home = synced.home(TOWN)
    backup = tmp_path / "backup.db"
    shutil.copy(town_home / NODE_DB, backup)  # closed, so the WAL is already checkpointed
    with open_home(town_home) as town:
        append_notes(town, 2, tag="lost")
        sync_round(town, synced.city_url)
        newest = town.store.head(TOWN)
    lose_database(town_home)
    shutil.copy(backup, town_home / NODE_DB)

    with open_home(town_home) as town:
        old = town.store.head(TOWN)
        assert old[0] < newest[0]
        with pytest.raises(SyncError) as stopped:
            sync_round(town, synced.city_url)
        assert stopped.value.key == "sync.restore_needed"
        assert "zhibao restore" in str(stopped.value)
        with pytest.raises(HomeError):
            append_notes(town, 1, tag="fork")
        assert town.store.head(TOWN) == old
        restore_node(town, synced.city_url)  # no --force: the round marked it restoring
        assert town.store.head(TOWN) == newest
        append_notes(town, 1, tag="safe")
        sync_round(town, synced.city_url)
    with open_home(synced.home(CITY)) as city:
        assert city.store.forks() == []
        assert city.store.head(TOWN)[0] == newest[0] + 1
