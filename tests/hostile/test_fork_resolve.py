"""Attack: a forged fork decision. Village A's home is copied and the copy forks A's log
(real `zhibao serve`, real `zhibao sync`). A neighbour village and the sibling town then
sign `fork.resolved` entries with their own real keys, keeping the copy's entry: each is
quarantined ("fork.not_authority") wherever it arrives, and changes nothing (A stays
frozen, no decision is remembered). The city's real decision then does what theirs could
not: the town unfreezes A after a pull, and A's log flows to the city again."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from sync import fork_switch, rekey
from sync.forks import RESOLVED
from sync.ingest import ingest
from sync.protocol.batch import decode_batch, encode_batch
from tests.hostile.harness import Actor
from tests.hostile.network import (
    CITY,
    ITEM,
    TOWN,
    TOWN_B,
    VILLAGE_A,
    VILLAGE_C,
    Net,
    assert_quarantined,
    assert_works,
    heads,
    zb,
    zj,
)
from tests.support.topology import VILLAGE, append_notes, build_topology, hand_up
from tiers.node import open_home

# the attacks reach the city too: its PostgreSQL runs in the soak run (the CI run's sample
# of a member pushing to a PostgreSQL city: test_city_pushes.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]


def _receive(home: Path, applicant: str) -> None:
    zb(home, "case", "receive", "--item", ITEM, "--applicant", applicant)


def _fork_state(home: Path) -> list[tuple[str, int, str]]:
    return [(f["origin"], f["seq"], f["state"]) for f in zj(home, "fork", "list")["forks"]]


def _copy_forks_a(net: Net) -> tuple[int, str, str]:
    """A and its copy each record a different case after a common history; both sync with
    the town (the copy second: the town holds the fork), and the copy's entries reach the
    city too (as its USB stick would). Returns (seq, held hash, copy's hash)."""
    village, town = net.home(VILLAGE_A), net.home(TOWN)
    twin = Path(shutil.copytree(village, net.home(VILLAGE_A).parent / "copy-of-a"))
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        _receive(village, "原件村民")
        zb(village, "sync", "--peer", town_url)
        zb(town, "sync", "--peer", city_url)
        _receive(twin, "副本村民")
        zb(twin, "sync", "--peer", town_url, ok=False)  # refused: the town keeps the first
    with open_home(twin) as copy, open_home(net.home(CITY)) as city:
        seq = heads(village)[VILLAGE_A]
        copied = copy.store.entries(VILLAGE_A, seq - 1)
        result = ingest(city.store, decode_batch(encode_batch(copied)), me=CITY,
                        sender=VILLAGE_A, received_at=city.clock.stamp())  # fmt: skip
        assert [f["seq"] for f in result.forks] == [seq]
        held = city.store.hash_at(VILLAGE_A, seq)
        assert held is not None
    assert _fork_state(town) == _fork_state(net.home(CITY)) == [(VILLAGE_A, seq, "unresolved")]
    return seq, held.hex(), copied[0].hash.hex()


def test_forged_fork_decisions_are_quarantined_and_change_nothing(net: Net) -> None:
    seq, held, other = _copy_forks_a(net)
    village, town, city = net.home(VILLAGE_A), net.home(TOWN), net.home(CITY)
    forged = {"origin": VILLAGE_A, "seq": seq, "kept_hash": other, "other_hash": held,
              "reason": "保留副本"}  # fmt: skip
    neighbour, sibling = net.actor(VILLAGE_C), net.actor(TOWN_B)
    by_village = neighbour.forge(RESOLVED, forged)
    by_town = sibling.forge(RESOLVED, forged)
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        assert neighbour.push_own(town_url).status_code == 200
        assert sibling.push_own(city_url).status_code == 200
        zb(town, "sync", "--peer", city_url)  # relays village C's log, pulls the city's
        assert heads(town)[VILLAGE_C] == heads(city)[VILLAGE_C] == by_village.seq
        assert heads(city)[TOWN_B] == by_town.seq
        for home in (town, city):
            assert_quarantined(home, VILLAGE_C, {by_village.seq}, "fork.not_authority")
            assert _fork_state(home) == [(VILLAGE_A, seq, "unresolved")]
            assert zj(home, "fork", "list")["decisions"] == []
        assert_quarantined(city, TOWN_B, {by_town.seq}, "fork.not_authority")
        # A stays frozen at the town
        _receive(village, "冻结期间")
        zb(village, "sync", "--peer", town_url, ok=False)
        frozen_at = heads(town)[VILLAGE_A]
        assert frozen_at == seq
        # the city's own decision is obeyed: down to the town, and A flows again
        zb(city, "fork", "resolve", VILLAGE_A, "--keep", "held", "--reason", "副本来自旧硬盘")
        zb(town, "sync", "--peer", city_url)
        assert _fork_state(town) == [(VILLAGE_A, seq, "resolved")]
        zb(village, "sync", "--peer", town_url)
        zb(town, "sync", "--peer", city_url)
        assert heads(town)[VILLAGE_A] == heads(city)[VILLAGE_A] == heads(village)[VILLAGE_A]
        assert heads(city)[VILLAGE_A] > frozen_at
        for home in (town, city):
            [decision] = zj(home, "fork", "list")["decisions"]
            assert (decision["by"], decision["kept_hash"]) == (CITY, held)
    assert_works(town, city)


def test_a_blocked_decision_is_examined_once_per_push_not_per_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A town decides (its own real key, no `fork resolve` checks) to keep the copy's entry
    where the city holds a rotation: the city cannot give its branch up (switch_eager) and
    stays frozen. Looking again scans the village's log from the fork on; a push of many
    runs must not make the city scan it once per run."""
    net = build_topology(tmp_path / "net", (CITY, TOWN, VILLAGE))
    with net.open(VILLAGE) as village:
        append_notes(village, 2, tag="common")
    twin = Path(shutil.copytree(net.home(VILLAGE), tmp_path / "copy"))
    with net.open(VILLAGE) as village:
        rekey.rotate(village)  # the original's seq 3: a key record
    with net.open(VILLAGE) as village, net.open(TOWN) as town, net.open(CITY) as city:
        assert not hand_up(village, town)["rejected"]
        assert not hand_up(town, city)["rejected"]
        held = city.store.hash_at(VILLAGE, 3)
    with open_home(twin) as copy:
        append_notes(copy, 1, tag="copy")
        [other] = copy.store.entries(VILLAGE, 2)
    assert held is not None
    town = Actor.of(net.home(TOWN))
    with town.store() as store:
        after = store.head(TOWN)[0]
    town.forge(RESOLVED, {"origin": VILLAGE, "seq": 3, "kept_hash": other.hash.hex(),
                          "other_hash": held.hex(), "reason": "keep the copy"})  # fmt: skip
    looked: list[tuple[str, int]] = []
    real = fork_switch.blocked

    def counted(store: Any, origin: str, seq: int) -> str | None:
        looked.append((origin, seq))
        return real(store, origin, seq)

    monkeypatch.setattr(fork_switch, "blocked", counted)
    with net.open(CITY) as city, net.open(VILLAGE) as village:
        runs = [other, *town.log(after=after)]  # the fork, then the decision
        sent = decode_batch(encode_batch(runs))
        ingest(city.store, sent, me=CITY, sender=TOWN, received_at=city.clock.stamp())
        assert [f["state"] for f in city.store.forks()] == ["switch_needed"]
        looked.clear()
        # then many runs: the village's seqs one by one, each its own run (not consecutive)
        again = [e for e in village.store.entries(VILLAGE) if e.seq % 2]
        again += town.log()[:1]
        sent = decode_batch(encode_batch(again))
        assert len(sent) >= 3
        ingest(city.store, sent, me=CITY, sender=TOWN, received_at=city.clock.stamp())
        assert looked == [(VILLAGE, 3)]
        assert city.store.frozen() == {VILLAGE}
