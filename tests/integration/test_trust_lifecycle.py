"""The trust lifecycle end to end, through the real `zhibao` command and real `zhibao serve`
processes on loopback (issue #10, "Tests and figures").

The stolen laptop: a village records cases and syncs; its home is copied (the thief's
laptop); the town revokes the village's key; the thief's pushes and bundles are refused and
counted; the village is rebuilt on a new machine with a new key, restored from the town, and
goes on; the city's figures hold exactly the legitimate cases. The relay: the city revokes a
second village before its town knows; the thief's entries the town took are refused when
the town relays them, and the thief is refused at the town once the revocation has come
down. A planned rotation (`node rekey`) goes through town and city unnoticed.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from sync.keyfiles import OLD_KEY
from sync.node import NODE_TOML
from tests.conftest import HostileTemplates
from tests.hostile.harness import Actor
from tests.hostile.network import (
    CITY,
    ITEM,
    TOWN,
    VILLAGE_A,
    VILLAGE_B,
    VILLAGE_C,
    Net,
    assert_works,
    findings,
    heads,
    one_line_error,
    period_now,
    zb,
    zj,
)
from tests.support.postgres import pg_in_soak, sqlite_only

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("city_engine")]  # SQLite, PostgreSQL


@pytest.fixture
def net(hostile_templates: HostileTemplates, tmp_path: Path) -> Net:
    """City, two towns, villages A, B, C and X (tests/hostile/network.py), a copy."""
    return Net.copy_of(hostile_templates(), tmp_path / "net")


def _accept(home: Path, applicant: str) -> str:
    """Create and accept (受理) a case for `applicant`; its id."""
    return zb(home, "case", "accept", "--item", ITEM, "--applicant", applicant).stdout.strip()


def _applicants(home: Path, origin: str) -> set[str]:
    return {c["applicant"] for c in zj(home, "case", "list") if c["origin"] == origin}


def _stats_row(home: Path, node_id: str) -> dict[str, Any]:
    answer = zj(home, "stats", "--period", period_now(), "--by", "node")
    [row] = [r for r in answer["rows"] if r["key"] == node_id]
    return dict(row)


def _uses(home: Path, node_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    """`status --json` "revoked_key_used" of `node_id`, by (via, how)."""
    return {
        (u["via"], u["how"]): u
        for u in zj(home, "status")["revoked_key_used"]
        if u["node_id"] == node_id
    }


def _found(home: Path, node_id: str) -> set[tuple[str, str]]:
    """`reconcile --json` findings "revoked_key_used" of `node_id`, as (via, how)."""
    return {
        (f["evidence"]["via"], f["evidence"]["how"])
        for f in findings(home, "revoked_key_used")
        if f["node_id"] == node_id
    }


def _init_replacement(home: Path, town_url: str, root_key: str) -> dict[str, str]:
    """`zhibao init` of village A on a new machine (new keys); its `node show --json`."""
    zb(home, "init", "--tier", "village", "--node-id", VILLAGE_A, "--name", "下骆宅村（新电脑）",
       "--parent", TOWN, "--parent-url", town_url, "--root-key", root_key)  # fmt: skip
    return dict(zj(home, "node", "show"))


def _enroll(town: Path, keys: dict[str, str], *extra: str, ok: bool = True) -> Any:
    return zb(town, "node", "enroll", "--node-id", VILLAGE_A, "--name", "下骆宅村",
              "--public-key", keys["public_key"], "--seal-key", keys["seal_key"], *extra,
              ok=ok)  # fmt: skip


@pg_in_soak  # > 10 s
def test_stolen_laptop_revoked_refused_and_rebuilt(net: Net, tmp_path: Path) -> None:
    village, town, city = net.home(VILLAGE_A), net.home(TOWN), net.home(CITY)
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        _accept(village, "张三丰")
        zb(village, "case", "receive", "--item", ITEM, "--applicant", "李四光")
        zb(village, "sync", "--peer", town_url)
        zb(town, "sync", "--peer", city_url)
        thief = Path(shutil.copytree(village, tmp_path / "stolen-laptop"))

        zb(town, "node", "revoke", "--node-id", VILLAGE_A, "--reason", "村办公室电脑被盗")
        [revocation] = zj(town, "status")["revocations"]
        cut = revocation["after_seq"]
        assert (revocation["node_id"], revocation["by"]) == (VILLAGE_A, TOWN)
        assert cut == heads(town)[VILLAGE_A] == heads(village)[VILLAGE_A]

        # (a) the thief records a case on the copy and syncs: refused in one line
        stolen_case = _accept(thief, "贼人甲")
        refused = one_line_error(zb(thief, "sync", "--peer", town_url, ok=False))
        assert town_url in refused and "revoked" in refused
        # (b) and in a bundle carried to the town: refused in one line, nothing applied
        bundle = tmp_path / "thief.zhibao"
        zb(thief, "bundle", "export", "--to", TOWN, "--out", str(bundle))
        refused = one_line_error(zb(town, "bundle", "import", str(bundle), ok=False))
        assert VILLAGE_A in refused and "revoked" in refused
        assert heads(town)[VILLAGE_A] == cut
        uses = _uses(town, VILLAGE_A)
        assert set(uses) == {(VILLAGE_A, "request"), (VILLAGE_A, "bundle")}
        assert uses[(VILLAGE_A, "bundle")]["count"] == 1
        assert _found(town, VILLAGE_A) == set(uses)

        # the revocation reaches the city with the town's log
        zb(town, "sync", "--peer", city_url)
        cuts = zj(city, "status")["revocations"]
        assert [(r["node_id"], r["after_seq"], r["by"]) for r in cuts] == [(VILLAGE_A, cut, TOWN)]

        # the village rebuilt on a new machine: new keys, the same node id
        new_pc = tmp_path / "new-pc"
        keys = _init_replacement(new_pc, town_url, zj(city, "node", "show")["public_key"])
        town_head = heads(town)[TOWN]
        for wrong in ((), ("--continue-from", str(cut - 1)), ("--continue-from", str(cut + 1))):
            line = one_line_error(_enroll(town, keys, *wrong, ok=False))
            assert str(cut) in line, (wrong, line)
        assert heads(town)[TOWN] == town_head  # nothing written
        _enroll(town, keys, "--continue-from", str(cut))
        zb(new_pc, "restore", "--from", town_url)
        assert heads(new_pc)[VILLAGE_A] == cut
        rebuilt_case = _accept(new_pc, "重建后王五")
        assert rebuilt_case == stolen_case  # the same number: the thief's never counted
        zb(new_pc, "sync")  # to its parent URL, given at init
        zb(town, "sync", "--peer", city_url)

        # the thief, still at it after the replacement, is refused as before
        one_line_error(zb(thief, "sync", "--peer", town_url, ok=False))
        assert _uses(town, VILLAGE_A)[(VILLAGE_A, "request")]["count"] >= 2

    legit = {"张三丰", "李四光", "重建后王五"}
    for home in (town, city):
        assert _applicants(home, VILLAGE_A) == legit
        row = _stats_row(home, VILLAGE_A)
        assert (row["received"], row["accepted"]) == (3, 2)  # 李四光's is received only
    assert zj(city, "case", "show", rebuilt_case)["holder"] == VILLAGE_A
    assert heads(new_pc)[VILLAGE_A] == heads(town)[VILLAGE_A] == heads(city)[VILLAGE_A]
    assert heads(new_pc)[VILLAGE_A] == cut + 2
    assert heads(town)[TOWN] == heads(city)[TOWN]
    assert zj(new_pc, "node", "show")["public_key"] == keys["public_key"]
    assert_works(town, city)


@pytest.mark.soak  # CI keeps the others of this file (15-minute bound)
def test_relayed_thief_entries_refused_at_the_city_after_an_ancestor_revocation(
    net: Net, tmp_path: Path
) -> None:
    village, honest = net.home(VILLAGE_B), net.home(VILLAGE_C)
    town, city = net.home(TOWN), net.home(CITY)
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        _accept(village, "王大妈")
        zb(village, "sync", "--peer", town_url)
        zb(town, "sync", "--peer", city_url)
        thief = Path(shutil.copytree(village, tmp_path / "stolen-laptop"))

        # the city revokes the village's key; the town has not pulled it yet
        zb(city, "node", "revoke", "--node-id", VILLAGE_B, "--reason", "笔记本电脑失窃")
        cut = heads(city)[VILLAGE_B]
        assert zj(town, "status")["revocations"] == []
        _accept(thief, "贼人乙")
        zb(thief, "sync", "--peer", town_url)  # the town does not know: it takes them
        assert heads(town)[VILLAGE_B] == cut + 2
        _accept(honest, "赵六")
        zb(honest, "sync", "--peer", town_url)

        # the town's next round brings the revocation down first (its pull comes before its
        # push): it holds back what the revoked key signed, counts it, and reports it up
        zb(town, "sync", "--peer", city_url)
        assert heads(city)[VILLAGE_B] == cut
        assert heads(city)[VILLAGE_C] == heads(honest)[VILLAGE_C]
        assert set(_uses(town, VILLAGE_B)) == {(VILLAGE_B, "held")}
        assert _uses(town, VILLAGE_B)[(VILLAGE_B, "held")]["count"] == 2
        reported = [
            u for u in zj(city, "status")["revoked_key_used_reported"] if u["node_id"] == VILLAGE_B
        ]
        assert [(u["reported_by"], u["how"], u["count"], u["max_seq"]) for u in reported] == [
            (TOWN, "held", 2, cut + 2)
        ]
        assert _found(city, VILLAGE_B) == {(VILLAGE_B, "held")}
        assert [(r["node_id"], r["by"]) for r in zj(town, "status")["revocations"]] \
            == [(VILLAGE_B, CITY)]  # fmt: skip

        # pushed by hand anyway (modified software at the town), the city refuses them
        thief_entries = Actor.of(thief).log(after=cut)
        town_actor = Actor.of(town)
        assert town_actor.push(city_url, thief_entries).json()["result"]["rejected"]
        assert heads(city)[VILLAGE_B] == cut
        assert _uses(city, VILLAGE_B)[(TOWN, "entry")]["max_seq"] == cut + 2

        # the town knows now: the thief is refused there
        _accept(thief, "贼人丙")
        refused = one_line_error(zb(thief, "sync", "--peer", town_url, ok=False))
        assert "revoked" in refused
        assert heads(town)[VILLAGE_B] == cut + 2
        assert set(_uses(town, VILLAGE_B)) == {(VILLAGE_B, "held"), (VILLAGE_B, "request")}
        assert _found(town, VILLAGE_B) == {(VILLAGE_B, "held"), (VILLAGE_B, "request")}

        # the held thief entries do not hold up the honest villages
        _accept(honest, "钱七")
        zb(honest, "sync", "--peer", town_url)
        zb(town, "sync", "--peer", city_url)  # no longer held up by what it holds back
        assert heads(city)[VILLAGE_C] == heads(honest)[VILLAGE_C]
        reported = zj(city, "status")["revoked_key_used_reported"]
        assert {(u["how"], u["count"]) for u in reported if u["node_id"] == VILLAGE_B} == {
            ("held", 2), ("request", 1)
        }

    assert _applicants(city, VILLAGE_B) == {"王大妈"}
    assert _stats_row(city, VILLAGE_B)["accepted"] == 1
    assert _applicants(city, VILLAGE_C) == {"赵六", "钱七"}
    assert_works(city)
    # the town holds what it took before it knew, and says so (docs/protocol.md, known limits)
    done = zb(town, "log", "verify", "--json", ok=False)
    assert done.returncode == 1
    problems = json.loads(done.stdout)["problems"]
    held = {(p["origin"], p["seq"], p["kind"]) for p in problems}
    assert held == {(VILLAGE_B, cut + 1, "revoked"), (VILLAGE_B, cut + 2, "revoked")}


@sqlite_only  # refused at the town and the village: no city is the subject
def test_enroll_and_revoke_refusals_write_nothing(net: Net, tmp_path: Path) -> None:
    town, village = net.home(TOWN), net.home(VILLAGE_C)
    other, root = tmp_path / "other-pc", zj(net.home(CITY), "node", "show")["public_key"]
    zb(other, "init", "--tier", "village", "--node-id", VILLAGE_C, "--name", "另一台",
       "--parent", TOWN, "--root-key", root)  # fmt: skip
    keys = zj(other, "node", "show")
    before = heads(town), heads(village)
    swap = zb(town, "node", "enroll", "--node-id", VILLAGE_C, "--name", "后宅村",
              "--public-key", keys["public_key"], ok=False)  # fmt: skip
    assert "--continue-from" in one_line_error(swap)
    sibling = zb(village, "node", "revoke", "--node-id", VILLAGE_B, "--reason", "邻村", ok=False)
    assert VILLAGE_B in one_line_error(sibling)
    upward = zb(town, "node", "revoke", "--node-id", CITY, "--reason", "政变", ok=False)
    assert CITY in one_line_error(upward)
    assert (heads(town), heads(village)) == before
    assert zj(town, "status")["revocations"] == []


@pytest.mark.soak  # CI keeps the others of this file (15-minute bound)
def test_planned_rotation_goes_through_town_and_city(net: Net) -> None:
    village, town, city = net.home(VILLAGE_C), net.home(TOWN), net.home(CITY)
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        _accept(village, "孙七")
        zb(village, "sync", "--peer", town_url)
        zb(town, "sync", "--peer", city_url)
        old = zj(village, "node", "show")["public_key"]
        rotated = zj(village, "node", "rekey")
        assert rotated["public_key"] != old
        assert zj(village, "node", "show")["public_key"] == rotated["public_key"]
        _accept(village, "周八")
        zb(village, "sync", "--peer", town_url)
        zb(town, "sync", "--peer", city_url)
        _accept(village, "吴九")  # and again, once the town has receipted the rotation
        zb(village, "sync", "--peer", town_url)
        zb(town, "sync", "--peer", city_url)
    assert heads(village)[VILLAGE_C] == heads(town)[VILLAGE_C] == heads(city)[VILLAGE_C]
    assert heads(village)[VILLAGE_C] == rotated["seq"] + 4
    for home in (town, city):
        assert _applicants(home, VILLAGE_C) == {"孙七", "周八", "吴九"}
        status = zj(home, "status")
        for key in ("revocations", "revoked_key_used", "forks", "quarantined"):
            assert status[key] == [], (home.name, key, status[key])
    assert_works(village, town, city)


@pg_in_soak  # 20 s on PostgreSQL here; the city only receipts the town's rotation
def test_a_village_that_missed_its_towns_rotation_still_syncs(net: Net) -> None:
    village, town = net.home(VILLAGE_C), net.home(TOWN)
    config = tomllib.loads((town / NODE_TOML).read_text("utf-8"))
    config.setdefault("settings", {})["rekey_grace_days"] = 0  # the grace over at once
    (town / NODE_TOML).write_text(tomli_w.dumps(config), "utf-8")
    zb(town, "node", "rekey")
    with net.serving(CITY) as served:
        zb(town, "sync", "--peer", served[CITY].url)  # the city receipts the rotation
    zb(town, "status")  # opening the home retires the old key for good
    assert not (town / OLD_KEY).exists()
    with net.serving(TOWN) as served:
        _accept(village, "郑十")
        zb(village, "sync", "--peer", served[TOWN].url)
    assert heads(town)[VILLAGE_C] == heads(village)[VILLAGE_C]
