"""Forks resolved (issue #10 item 3): a copied village forks its log; the city (or the town)
decides with `zhibao fork resolve`; the decision flows down and up, unfreezes the origin
wherever the kept entry is held, and the losing copy cannot freeze it again.

Logs move in process (ingest, as a push or a pull would); the commands run as the real
`zhibao` subprocess on the same homes."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest

from sync.ingest import IngestResult, ingest
from sync.node import Node
from sync.protocol.batch import decode_batch, encode_batch
from sync.protocol.entry import SignedEntry
from tests.support.servers import zhibao
from tests.support.topology import (
    CITY,
    TOWN,
    TOWN_B,
    VILLAGE,
    Topology,
    append_notes,
    build_topology,
    copy_topology,
    hand_down,
    hand_up,
)
from tiers.node import open_home

# its cities on SQLite, then on PostgreSQL: there in the soak run but for the tests marked
# pg_ci (a bounded sample in CI: tests/support/postgres.py soak_marks)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]

COMMON = 2  # entries of the village's log both copies share


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Topology:
    return build_topology(tmp_path_factory.mktemp("forks"), (CITY, TOWN, TOWN_B, VILLAGE))


@pytest.fixture
def net(template: Topology, tmp_path: Path) -> Topology:
    return copy_topology(template, tmp_path / "net")


def push(receiver: Node, entries: Sequence[SignedEntry], sender: str) -> IngestResult:
    """`entries` sent to `receiver` by `sender`, as a push (or a pull) would carry them."""
    return ingest(
        receiver.store,
        decode_batch(encode_batch(list(entries))),
        me=receiver.node_id,
        sender=sender,
        received_at=receiver.clock.stamp(),
    )


def relay(net: Topology) -> None:
    """The village's log to the town, the town's subtree to the city."""
    with net.open(VILLAGE) as village, net.open(TOWN) as town, net.open(CITY) as city:
        assert not hand_up(village, town)["rejected"]
        assert not hand_up(town, city)["rejected"]


@dataclass
class Fork:
    seq: int  # the first seq the two histories differ at
    twin: Path  # the copied home
    held: str  # hash (hex) of the original's entry at `seq`: what town and city hold
    other: str  # hash of the copy's


def make_fork(net: Topology, *, at: Sequence[str] = (TOWN, CITY)) -> Fork:
    """The village's home copied after COMMON entries; the original records 2 more and
    syncs; the copy records 3 others and pushes them to each node in `at` (the town, and
    the city directly, e.g. on a USB stick)."""
    with net.open(VILLAGE) as village:
        append_notes(village, COMMON, tag="common")
    relay(net)
    twin = Path(shutil.copytree(net.home(VILLAGE), net.base / "village-copy"))
    with net.open(VILLAGE) as village:
        append_notes(village, 2, start=10, tag="original")
        held = village.store.entries(VILLAGE, COMMON)[0].hash.hex()
    relay(net)
    with open_home(twin) as copy:
        append_notes(copy, 3, start=10, tag="copy")
        copied = copy.store.entries(VILLAGE, COMMON)
    fork_seq = copied[0].seq
    for node_id in at:
        with net.open(node_id) as node:
            result = push(node, copied, VILLAGE)
            assert [f["seq"] for f in result.forks] == [fork_seq], result.to_json()
            assert node.store.frozen() == {VILLAGE}
    return Fork(fork_seq, twin, held, copied[0].hash.hex())


def push_to(net: Topology, node_id: str, entries: Sequence[SignedEntry], sender: str) -> (
    IngestResult
):  # fmt: skip
    with net.open(node_id) as node:
        return push(node, entries, sender)


def zb(home: Path, *args: str) -> CompletedProcess[str]:
    done = zhibao(home, *args)
    assert done.returncode == 0, done.stderr
    return done


def fork_list(home: Path) -> dict[str, Any]:
    return dict(json.loads(zb(home, "fork", "list", "--json").stdout))


def one_line_error(done: CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert len(lines) == 1 and lines[0].startswith("zhibao: "), done.stderr
    return lines[0]


def resolve(home: Path, *args: str) -> CompletedProcess[str]:
    return zhibao(home, "fork", "resolve", VILLAGE, *args)


def log_of(net: Topology, node_id: str) -> list[bytes]:
    with net.open(node_id) as node:
        return [e.hash for e in node.store.entries(node_id)]


# --- resolved at the city ----------------------------------------------------------------


def test_fork_resolve_keep_held_at_city_unfreezes_city_then_town(net: Topology) -> None:
    fork = make_fork(net)
    done = zb(net.home(CITY), "fork", "resolve", VILLAGE, "--keep", "held",
              "--reason", "副本为旧硬盘恢复", "--json")  # fmt: skip
    decided = json.loads(done.stdout)
    assert (decided["seq"], decided["kept_hash"], decided["other_hash"]) == (
        fork.seq, fork.held, fork.other
    )
    assert decided["by"] == CITY
    city = fork_list(net.home(CITY))["forks"]
    assert [(f["seq"], f["resolved"], f["state"]) for f in city] == [(fork.seq, True, "resolved")]
    assert city[0]["decision"]["kept_hash"] == fork.held
    assert city[0]["other_type"] == city[0]["held_type"] == "test.note"
    # the town is still frozen until the decision reaches it
    assert fork_list(net.home(TOWN))["forks"][0]["state"] == "unresolved"
    with net.open(CITY) as city_node, net.open(TOWN) as town:
        assert hand_down(city_node, town) >= 1
        assert town.store.frozen() == set()
        assert town.store.forks()[0]["decision"]["by"] == CITY
    # the village's log flows again, up to the city; the evidence is kept everywhere
    with net.open(VILLAGE) as village:
        append_notes(village, 1, start=20, tag="after")
        head = village.store.head(VILLAGE)
    relay(net)
    for node_id in (TOWN, CITY):
        with net.open(node_id) as node:
            assert node.store.head(VILLAGE) == head
            assert [f["other_hash"] for f in node.store.forks()] == [fork.other]
            assert node.store.hash_at(VILLAGE, fork.seq) == bytes.fromhex(fork.held)


def test_fork_resolve_reported_by_reconcile_and_status(net: Topology) -> None:
    fork = make_fork(net, at=(CITY,))
    period = zb(net.home(CITY), "status", "--json")  # any month: forks are not by period
    assert json.loads(period.stdout)["network"]["forks"] == 1
    before = json.loads(zb(net.home(CITY), "reconcile", "--period", "2025-10", "--json").stdout)
    [open_fork] = [f for f in before["findings"] if f["kind"] == "fork"]
    assert open_fork["evidence"]["resolved"] is False and "frozen" in open_fork["detail"]
    zb(net.home(CITY), "fork", "resolve", VILLAGE, "--keep", "held", "--reason", "old disk")
    after = json.loads(zb(net.home(CITY), "reconcile", "--period", "2025-10", "--json").stdout)
    [found] = [f for f in after["findings"] if f["kind"] == "fork"]
    assert found["node_id"] == VILLAGE
    assert found["evidence"]["resolved"] is True
    assert found["evidence"]["resolved_by"] == CITY
    assert found["evidence"]["kept_hash"] == fork.held
    assert found["evidence"]["reason"] == "old disk"
    assert "resolved by 330782" in found["detail"] and "old disk" in found["detail"]
    assert json.loads(zb(net.home(CITY), "status", "--json").stdout)["network"]["forks"] == 0


# --- the losing copy afterwards ------------------------------------------------------------


def test_fork_losing_copy_is_refused_afterwards_without_refreezing(net: Topology) -> None:
    fork = make_fork(net)
    zb(net.home(CITY), "fork", "resolve", VILLAGE, "--keep", "held", "--reason", "copy")
    with net.open(CITY) as city, net.open(TOWN) as town:
        hand_down(city, town)
    with net.open(VILLAGE) as village:  # the kept history goes on past the copy's head
        append_notes(village, 3, start=20)
    relay(net)
    with open_home(fork.twin) as copy:
        append_notes(copy, 1, start=30, tag="copy")
        from_fork = copy.store.entries(VILLAGE, COMMON)
        above = copy.store.entries(VILLAGE, fork.seq)  # from seq + 1 on
    for node_id in (TOWN, CITY):
        with net.open(node_id) as node:
            heads, evidence = node.store.heads(), node.store.forks()
            again = push(node, from_fork, VILLAGE)  # from the fork point (a copy's round)
            later = push(node, above, VILLAGE)  # from a seq above it, crafted
            assert again.forks == later.forks == []
            assert [r["seq"] for r in again.rejected] == [fork.seq]
            assert "decided the fork at #" in again.rejected[0]["reason"]
            assert [r["seq"] for r in later.rejected] == [fork.seq + 1]
            assert "does not continue the history" in later.rejected[0]["reason"]
            assert node.store.frozen() == set()
            assert node.store.heads() == heads and node.store.forks() == evidence


def test_fork_decision_before_the_fork_is_remembered_and_refuses_the_copy(
    net: Topology,
) -> None:
    fork = make_fork(net, at=(CITY,))  # the town has not seen the copy yet
    zb(net.home(CITY), "fork", "resolve", VILLAGE, "--keep", "held", "--reason", "copy")
    with net.open(CITY) as city, net.open(TOWN) as town:
        hand_down(city, town)
    listed = fork_list(net.home(TOWN))
    assert listed["forks"] == []
    assert [(d["origin"], d["seq"], d["by"], d["in_force"]) for d in listed["decisions"]] == [
        (VILLAGE, fork.seq, CITY, True)
    ]
    with open_home(fork.twin) as copy:
        copied = copy.store.entries(VILLAGE, COMMON)
    with net.open(TOWN) as town:
        result = push(town, copied, VILLAGE)
        assert result.forks == [] and town.store.forks() == []
        assert [r["seq"] for r in result.rejected] == [fork.seq]
        assert town.store.frozen() == set()


# --- resolved at the parent ----------------------------------------------------------------


@pytest.mark.pg_ci
def test_fork_resolve_at_the_parent_flows_up_and_down(net: Topology) -> None:
    fork = make_fork(net)
    zb(net.home(TOWN), "fork", "resolve", VILLAGE, "--keep", "held", "--reason", "town")
    with net.open(TOWN) as town, net.open(CITY) as city, net.open(VILLAGE) as village:
        assert town.store.frozen() == set()
        hand_up(town, city)  # the town's log, the decision in it, goes up whole
        assert city.store.frozen() == set()
        assert city.store.forks()[0]["decision"]["by"] == TOWN
        hand_down(town, village)  # and down: the village remembers it
        assert village.store.fork_decision(VILLAGE, fork.seq) is not None


# --- refused -------------------------------------------------------------------------------


def test_fork_resolve_refused_elsewhere_writes_nothing(net: Topology) -> None:
    make_fork(net)
    for node_id in (TOWN_B, VILLAGE):
        before = log_of(net, node_id)
        line = one_line_error(resolve(net.home(node_id), "--keep", "held", "--reason", "x"))
        assert f"Only the city or {VILLAGE}'s parent ({TOWN})" in line
        assert log_of(net, node_id) == before


def test_fork_resolve_refused_without_an_unresolved_fork(net: Topology) -> None:
    before = log_of(net, CITY)
    line = one_line_error(resolve(net.home(CITY), "--keep", "held", "--reason", "x"))
    assert line == f"zhibao: No unresolved fork of {VILLAGE} is held here."
    make_fork(net, at=(CITY,))
    zb(net.home(CITY), "fork", "resolve", VILLAGE, "--keep", "held", "--reason", "once")
    twice = log_of(net, CITY)
    one_line_error(resolve(net.home(CITY), "--keep", "held", "--reason", "twice"))
    assert log_of(net, CITY) == twice == [*before, twice[-1]]


def test_fork_resolve_keep_other_switches_the_held_branch(net: Topology) -> None:
    fork = make_fork(net, at=(CITY,))  # the city holds the original's seq and seq + 1
    with net.open(CITY) as city:
        losing = [e.hash.hex() for e in city.store.entries(VILLAGE, fork.seq - 1)]
        before = city.store.unprojected()
    assert len(losing) == 2 and before == 0
    done = zb(net.home(CITY), "fork", "resolve", VILLAGE, "--keep", "other",
              "--reason", "原件为旧备份", "--json")  # fmt: skip
    decided = json.loads(done.stdout)
    assert (decided["kept_hash"], decided["other_hash"]) == (fork.other, fork.held)
    listed = fork_list(net.home(CITY))
    [row] = listed["forks"]
    assert (row["held_hash"], row["other_hash"], row["state"]) == (fork.other, fork.held,
                                                                   "resolved")  # fmt: skip
    assert [(a["seq"], a["hash"], a["by"]) for a in listed["abandoned"]] == [
        (fork.seq, losing[0], CITY), (fork.seq + 1, losing[1], CITY)
    ]  # fmt: skip
    with net.open(CITY) as city, open_home(fork.twin) as copy:
        assert city.store.head(VILLAGE) == (fork.seq, bytes.fromhex(fork.other))
        assert city.store.frozen() == set() and city.store.unprojected() == 0
        rest = push(city, copy.store.entries(VILLAGE, fork.seq), VILLAGE)  # the kept branch
        assert not rest.rejected and rest.applied == {VILLAGE: 2}
        assert city.store.head(VILLAGE) == copy.store.head(VILLAGE)
    with net.open(VILLAGE) as village:  # the original's branch is refused, never a new fork
        again = push_to(net, CITY, village.store.entries(VILLAGE, COMMON), VILLAGE)
    assert again.forks == [] and [r["seq"] for r in again.rejected] == [fork.seq]
    assert json.loads(zb(net.home(CITY), "log", "verify", "--json").stdout)["ok"] is True


def test_fork_keep_other_decision_switches_the_town_when_it_flows_down(net: Topology) -> None:
    fork = make_fork(net)  # town and city hold the original's entries
    zb(net.home(CITY), "fork", "resolve", VILLAGE, "--keep", "other", "--reason", "r")
    with net.open(CITY) as city, net.open(TOWN) as town:
        assert town.store.frozen() == {VILLAGE}
        hand_down(city, town)  # the decision: the town gives up its branch in that ingest
        assert town.store.frozen() == set()
        assert town.store.hash_at(VILLAGE, fork.seq) == bytes.fromhex(fork.other)
        assert town.store.head(VILLAGE) == (fork.seq, bytes.fromhex(fork.other))
        assert town.store.forks()[0]["state"] == "resolved"
    listed = fork_list(net.home(TOWN))
    assert [a["seq"] for a in listed["abandoned"]] == [fork.seq, fork.seq + 1]
    assert json.loads(zb(net.home(TOWN), "log", "verify", "--json").stdout)["ok"] is True


def test_fork_keep_other_refused_at_the_origin_itself(net: Topology) -> None:
    fork = make_fork(net, at=(CITY,))
    zb(net.home(CITY), "fork", "resolve", VILLAGE, "--keep", "other", "--reason", "r")
    with net.open(CITY) as city, net.open(TOWN) as town:
        hand_down(city, town)
    with net.open(TOWN) as town, net.open(VILLAGE) as village:
        hand_down(town, village)
        head = village.store.head(VILLAGE)
        assert village.store.hash_at(VILLAGE, fork.seq) == bytes.fromhex(fork.held)
    listed = fork_list(net.home(VILLAGE))
    assert listed["self_lost"] == [fork.seq] and listed["abandoned"] == []
    assert "restore" in zb(net.home(VILLAGE), "fork", "list").stdout
    with net.open(VILLAGE) as village:
        assert village.store.head(VILLAGE) == head


def test_fork_resolve_usage_errors_exit_2(net: Topology) -> None:
    assert resolve(net.home(CITY), "--keep", "both", "--reason", "x").returncode == 2
    assert resolve(net.home(CITY), "--keep", "held").returncode == 2


# --- the list ------------------------------------------------------------------------------


def test_fork_list_json_keys(net: Topology) -> None:
    fork = make_fork(net, at=(CITY,))
    listed = fork_list(net.home(CITY))
    assert set(listed) == {"forks", "decisions", "abandoned", "reports", "self_lost"}
    [row] = listed["forks"]
    assert set(row) == {
        "origin", "seq", "held_hash", "other_hash", "held_type", "held_at", "other_type",
        "other_at", "detected_at", "resolved", "state", "decision",
    }  # fmt: skip
    assert (row["origin"], row["seq"], row["held_hash"], row["other_hash"]) == (
        VILLAGE, fork.seq, fork.held, fork.other
    )
    assert row["decision"] is None and row["held_at"] and row["other_at"]
    zb(net.home(CITY), "fork", "resolve", VILLAGE, "--keep", "held", "--reason", "r")
    listed = fork_list(net.home(CITY))
    assert set(listed["forks"][0]["decision"]) == {
        "by", "entry_seq", "kept_hash", "other_hash", "reason", "at"
    }  # fmt: skip
    assert set(listed["decisions"][0]) == {
        "origin", "seq", "by", "entry_seq", "kept_hash", "other_hash", "reason", "at", "in_force"
    }  # fmt: skip
    table = zb(net.home(CITY), "fork", "list").stdout
    assert VILLAGE in table and "resolved" in table and fork.held[:12] in table
    chinese = zhibao(net.home(CITY), "fork", "list", lang="zh")
    assert chinese.returncode == 0 and "已处理" in chinese.stdout
