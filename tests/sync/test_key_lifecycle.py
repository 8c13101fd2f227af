"""Key epochs (sync.keyring): revocation, replacement after a loss, planned rotation —
checked on real homes and real SQLite files, with the thief's copy signing with the real
stolen key."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from sync import keyring, rekey, revocation, trust
from sync.audit import verify_log
from sync.ingest import ingest
from sync.keyfiles import NODE_KEY, OLD_KEY, read_secret
from sync.node import NODE_TOML, Node
from sync.protocol.batch import decode_batch, encode_batch
from sync.protocol.entry import SignedEntry
from sync.protocol.errors import EnrolmentError, HomeError
from sync.protocol.keys import Signer
from sync.restore import restore_node
from sync.round import sync_round
from tests.hostile.harness import Actor
from tests.support.servers import serve_in_thread, zhibao
from tests.support.topology import (
    CITY,
    TOWN,
    VILLAGE,
    Topology,
    append_notes,
    build_topology,
    create_node,
    hand_down,
    hand_up,
)
from tiers.node import open_home

# its cities on SQLite, then on PostgreSQL: there in the soak run but for the tests marked
# pg_ci (a bounded sample in CI: tests/support/postgres.py soak_marks)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]


@pytest.fixture
def net(tmp_path: Path) -> Topology:
    topology = build_topology(tmp_path / "net")
    with topology.open(VILLAGE) as village:
        append_notes(village, 3, tag="legit")
    with topology.open(TOWN) as town, topology.open(VILLAGE) as village:
        assert not hand_up(village, town)["rejected"]
    with topology.open(CITY) as city, topology.open(TOWN) as town:
        assert not hand_up(town, city)["rejected"]
    return topology


def steal(topology: Topology, where: Path) -> Actor:
    """A copy of the village's home, as a thief takes it: same key, same log."""
    return Actor.of(Path(shutil.copytree(topology.home(VILLAGE), where)))


def offer(node: Node, entries: list[SignedEntry], *, sender: str) -> dict[str, Any]:
    """`entries` arriving at `node` from `sender` in one batch (as a push or relay would);
    the ingest result as JSON."""
    batch = decode_batch(encode_batch(entries))
    return ingest(
        node.store, batch, me=node.node_id, sender=sender, received_at=node.clock.stamp()
    ).to_json()


def reasons(result: dict[str, object]) -> list[str]:
    return [str(r["reason"]) for r in result["rejected"]]  # type: ignore[attr-defined]


@pytest.mark.pg_ci
def test_revoked_key_signs_nothing_after_the_cut_off(net: Topology, tmp_path: Path) -> None:
    thief = steal(net, tmp_path / "thief")
    with net.open(TOWN) as town:
        _, body = revocation.revoke(town, VILLAGE, "PC stolen from the village office")
        assert body["after_seq"] == town.store.head(VILLAGE)[0] == 3  # 3 notes
        assert trust.revoked(town.store, VILLAGE)
    thief.forge("test.note", {"n": 99, "tag": "thief"})
    with net.open(TOWN) as town:
        result = offer(town, thief.log(after=3), sender=VILLAGE)
        assert not result["applied"]
        assert "revoked" in reasons(result)[0]
        assert town.store.head(VILLAGE)[0] == 3
        uses = keyring.revoked_uses(town.store)
        assert uses and uses[0]["node_id"] == VILLAGE and uses[0]["max_seq"] == 4
    # the revocation reaches the city with the town's log; the thief's entry relayed by a
    # town that did not know (any relay) is refused there too
    with net.open(CITY) as city, net.open(TOWN) as town:
        assert not hand_up(town, city)["rejected"]
        result = offer(city, thief.log(after=3), sender=TOWN)
        assert not result["applied"] and "revoked" in reasons(result)[0]
        assert city.store.head(VILLAGE)[0] == 3
        assert verify_log(city.store).ok


def test_revoked_node_refuses_to_append_once_it_knows(net: Topology) -> None:
    with net.open(TOWN) as town:
        revocation.revoke(town, VILLAGE, "stolen")
    with net.open(TOWN) as town, net.open(VILLAGE) as village:
        hand_down(town, village)
        with pytest.raises(HomeError) as refused:
            append_notes(village, 1)
        assert refused.value.key == "node.revoked"


def test_revoke_refuses_what_would_unsay_held_entries(net: Topology) -> None:
    with net.open(TOWN) as town:
        with pytest.raises(EnrolmentError) as below:
            revocation.revoke(town, VILLAGE, "stolen", after_seq=2)
        assert below.value.key == "revoke.below_held"
        with pytest.raises(EnrolmentError) as not_below:
            revocation.revoke(town, CITY, "coup")
        assert not_below.value.key == "revoke.not_below"
        assert town.store.head(TOWN)[0] == 1  # nothing written


def test_a_new_key_continues_the_log_after_a_revocation(net: Topology, tmp_path: Path) -> None:
    thief = steal(net, tmp_path / "thief")
    with net.open(TOWN) as town:
        revocation.revoke(town, VILLAGE, "stolen")
    replacement = create_node(tmp_path / "new-pc", VILLAGE, net.keys[CITY])
    new_key = replacement.signer.public.hex()
    new_seal = replacement.seal.public_key().public_bytes_raw().hex()
    replacement.close()
    with net.open(TOWN) as town:
        with pytest.raises(EnrolmentError) as silent_swap:
            revocation.check_replacement(town, VILLAGE, new_key, None)
        assert silent_swap.value.key == "enrol.revoked_needs_continue"
        with pytest.raises(EnrolmentError) as wrong_seq:
            revocation.check_replacement(town, VILLAGE, new_key, 5)
        assert wrong_seq.value.key == "enrol.continue_cut"
        revocation.check_replacement(town, VILLAGE, new_key, 3)
        body = trust.enrolment_body(VILLAGE, "下骆宅村", new_key, new_seal, 3)
        town.append(trust.ENROLLED, body)
        assert trust.public_key(town.store, VILLAGE) == bytes.fromhex(new_key)
        assert not trust.revoked(town.store, VILLAGE)
    with (
        serve_in_thread(net.home(TOWN)) as town_url,
        open_home(tmp_path / "new-pc" / VILLAGE) as village,
    ):
        restore_node(village, town_url)  # a fresh home with the new key: nothing forked
        assert village.store.head(VILLAGE)[0] == 3
        append_notes(village, 2, tag="after")
        summary = sync_round(village, town_url)
        assert not summary.to_json().get("rejected"), summary.to_json()
    thief.forge("test.note", {"n": 7, "tag": "thief"})
    with net.open(TOWN) as town:
        assert town.store.head(VILLAGE)[0] == 5
        result = offer(town, thief.log(after=3), sender=VILLAGE)
        assert not result["applied"]
        assert town.store.head(VILLAGE)[0] == 5
        report = verify_log(town.store)
        assert report.ok, report.problems
    with net.open(CITY) as city, net.open(TOWN) as town:
        assert not hand_up(town, city)["rejected"]
        assert city.store.head(VILLAGE)[0] == 5
        assert verify_log(city.store).ok


def test_planned_rotation_is_followed_by_every_receiver(net: Topology) -> None:
    with net.open(VILLAGE) as village:
        old = village.signer.public.hex()
        new, _ = rekey.rotate(village)
        assert village.signer.public.hex() == new != old
        assert village.config.public_key == new
        assert village.wire_signer.public.hex() == old  # until the town has it
        append_notes(village, 2, tag="rotated")
    with open_home(net.home(VILLAGE)) as village:  # reopened: the new key, checked
        assert village.signer.public.hex() == new
    with net.open(TOWN) as town, net.open(VILLAGE) as village:
        assert not hand_up(village, town)["rejected"]
        assert town.store.head(VILLAGE)[0] == 6
        assert trust.public_key(town.store, VILLAGE) == bytes.fromhex(new)
        assert trust.key_at(town.store, VILLAGE, 4) == bytes.fromhex(old)
        assert trust.seal_key(town.store, VILLAGE) == village.seal.public_key().public_bytes_raw()
        assert village.retiring_seal is not None  # bodies sealed to the old one still open
        assert verify_log(town.store).ok
    with net.open(CITY) as city, net.open(TOWN) as town:
        assert not hand_up(town, city)["rejected"]
        assert city.store.head(VILLAGE)[0] == 6 and verify_log(city.store).ok


def test_a_rotation_is_never_set_aside_as_a_reused_key(net: Topology) -> None:
    # the rule is asked again after the rotation took effect (the lazy projections' pass):
    # its own record is no earlier use of the key
    with net.open(VILLAGE) as village:
        rekey.rotate(village)
        append_notes(village, 1, tag="rotated")
        assert village.store.quarantined() == []
    with net.open(TOWN) as town, net.open(VILLAGE) as village:
        assert not hand_up(village, town)["rejected"]
        assert town.store.quarantined() == []
    with net.open(CITY) as city, net.open(TOWN) as town:
        assert not hand_up(town, city)["rejected"]
        assert city.store.quarantined() == []


def test_a_database_from_before_key_epochs_follows_a_rotation(net: Topology) -> None:
    # a town whose database was made before key records existed: only `nodes` knows keys
    with net.open(TOWN) as town, town.store.transaction():
        town.store.execute("DELETE FROM node_keys")
    with net.open(VILLAGE) as village:
        old = village.signer.public
        rekey.rotate(village)
        append_notes(village, 1, tag="rotated")
    with net.open(TOWN) as town, net.open(VILLAGE) as village:
        assert not hand_up(village, town)["rejected"]
        assert town.store.head(VILLAGE)[0] == 5
        assert trust.key_at(town.store, VILLAGE, 3) == old  # not the new key from seq 1
        # the village signs its requests with the old key until the town has the rotation
        assert trust.verify_wire(town.store, VILLAGE, lambda key: key == old) == old


def test_a_rotated_node_can_be_enrolled_again_with_its_enrolled_key(net: Topology) -> None:
    # a new name or seal key for a child that rotated: the enrolment names the key it was
    # enrolled with (what every node compares it with), not the rotated one
    with net.open(VILLAGE) as village:
        first = village.signer.public.hex()
        rekey.rotate(village)
        seal = village.seal.public_key().public_bytes_raw().hex()
    with net.open(TOWN) as town, net.open(VILLAGE) as village:
        assert not hand_up(village, town)["rejected"]
    done = zhibao(
        net.home(TOWN), "node", "enroll", "--node-id", VILLAGE, "--name", "renamed",
        "--public-key", first, "--seal-key", seal,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with net.open(TOWN) as town, net.open(VILLAGE) as village:
        [row] = [n for n in trust.enrolled_nodes(town.store) if n["node_id"] == VILLAGE]
        assert row["name"] == "renamed" and row["public_key"] == village.signer.public.hex()
        assert town.store.quarantined() == []


def test_old_key_signs_nothing_after_its_rotation(net: Topology, tmp_path: Path) -> None:
    with net.open(VILLAGE) as village:
        rekey.rotate(village)
    with net.open(TOWN) as town, net.open(VILLAGE) as village:
        assert not hand_up(village, town)["rejected"]
    # someone who kept the retired key signs the next entry, chained after the rotation
    thief = steal(net, tmp_path / "old-copy")
    thief.signer = Signer(read_secret(thief.home / OLD_KEY))
    thief.forge("test.note", {"n": 1})
    with net.open(TOWN) as town:
        result = offer(town, thief.log(after=4), sender=VILLAGE)
        assert not result["applied"] and result["rejected"]
        assert town.store.head(VILLAGE)[0] == 4


def test_interrupted_rotation_is_finished_when_the_home_is_opened(net: Topology) -> None:
    home = net.home(VILLAGE)
    with net.open(VILLAGE) as village:
        new, _ = rekey.rotate(village)
    # as if the process died after the entry, before the files moved
    (home / NODE_KEY).replace(home / "node.key.next")
    (home / OLD_KEY).replace(home / NODE_KEY)
    with open_home(home) as village:
        assert village.signer.public.hex() == new
        append_notes(village, 1)


def test_a_member_may_not_revoke_or_rekey_for_another(net: Topology, tmp_path: Path) -> None:
    net2 = build_topology(tmp_path / "two", (CITY, TOWN, VILLAGE, "330782001202"))
    sibling = Actor.of(net2.home("330782001202"))
    sibling.forge(keyring.REVOKED, {"node_id": VILLAGE, "after_seq": 0, "reason": "spite"})
    with net2.open(TOWN) as town:
        result = offer(town, sibling.log(), sender="330782001202")
        assert result["applied"]  # kept as evidence …
        assert not trust.revoked(town.store, VILLAGE)  # … and obeyed by nobody
        reasons_held = {q["reason"] for q in town.store.quarantined()}
        assert "revoke.not_ancestor" in reasons_held


def test_the_city_rotates_and_a_town_enrolled_later_still_follows(
    net: Topology, tmp_path: Path
) -> None:
    with net.open(CITY) as city:
        root = city.config.root_key
        new, _ = rekey.rotate(city)
        assert city.config.root_key == root != new  # what new nodes pin stays the root
        newcomer = create_node(tmp_path / "later", "330782009", root)
        try:
            body = trust.enrolment_body(
                newcomer.node_id, "新镇", newcomer.signer.public.hex(), None
            )
            city.append(trust.ENROLLED, body)  # signed with the city's new key
            hand_down(city, newcomer)
            assert trust.public_key(newcomer.store, CITY) == bytes.fromhex(new)
            assert trust.public_key(newcomer.store, newcomer.node_id) is not None
        finally:
            newcomer.close()
    with net.open(CITY) as city, net.open(TOWN) as town:
        hand_down(city, town)  # the town pinned the root before: it follows the rotation
        assert trust.public_key(town.store, CITY) == bytes.fromhex(new)
        assert not hand_up(town, city)["rejected"]


def test_rotations_over_http_keep_every_round_working(net: Topology) -> None:
    with net.open(VILLAGE) as village:
        rekey.rotate(village)
        append_notes(village, 1, tag="after-rotation")
    with net.open(TOWN) as town:
        rekey.rotate(town)  # the town too: its villages learn it from their next pull
    with serve_in_thread(net.home(CITY)) as city_url, serve_in_thread(net.home(TOWN)) as town_url:
        for _ in range(2):  # the second round: each side has the other's rotation
            with net.open(VILLAGE) as village:
                done = sync_round(village, town_url).to_json()
                assert not done.get("rejected"), done
            with net.open(TOWN) as town:
                done = sync_round(town, city_url).to_json()
                assert not done.get("rejected"), done
    with net.open(CITY) as city, net.open(VILLAGE) as village, net.open(TOWN) as town:
        assert city.store.head(VILLAGE)[0] == village.store.head(VILLAGE)[0] == 5
        assert city.store.head(TOWN)[0] == town.store.head(TOWN)[0]
        assert trust.public_key(village.store, TOWN) == town.signer.public
        assert verify_log(city.store).ok and verify_log(village.store).ok


def test_a_child_that_missed_its_parents_rotation_still_syncs(net: Topology) -> None:
    # the town rotates, the city receipts it, the grace period (0 days here) is over: the
    # town signs time answers and receipts with its new key only. Its village, off line
    # all that time, learns the rotation only from its next pull.
    toml = net.home(TOWN) / NODE_TOML
    config = tomllib.loads(toml.read_text("utf-8"))
    config.setdefault("settings", {})["rekey_grace_days"] = 0
    toml.write_text(tomli_w.dumps(config), "utf-8")
    with net.open(TOWN) as town:
        rekey.rotate(town)
    with serve_in_thread(net.home(CITY)) as city_url, net.open(TOWN) as town:
        sync_round(town, city_url)
    with net.open(TOWN) as town:
        assert town.retiring is None and not (net.home(TOWN) / OLD_KEY).exists()
    with serve_in_thread(net.home(TOWN)) as town_url, net.open(VILLAGE) as village:
        done = sync_round(village, town_url).to_json()
        assert not done.get("rejected"), done
        assert trust.public_key(village.store, TOWN) == town_key(net)


def town_key(net: Topology) -> bytes:
    return Signer(read_secret(net.home(TOWN) / NODE_KEY)).public


@pytest.mark.pg_ci
def test_a_member_cannot_report_revoked_key_use_of_others(net: Topology) -> None:
    """A village signs `evidence.revoked_key_used` naming its town and its city (not below
    it), with an absurd count: kept as evidence, quarantined, counted nowhere."""
    liar = Actor.of(net.home(VILLAGE))
    at = "2026-12-01T00:00:00+08:00"
    use = {"via": VILLAGE, "how": "request", "count": 2**62, "max_seq": None,
           "first_at": at, "last_at": at}  # fmt: skip
    liar.forge(keyring.USES_REPORT, {"uses": [dict(use, node_id=TOWN)]})
    liar.forge(keyring.USES_REPORT, {"uses": [dict(use, node_id=CITY)]})
    with net.open(TOWN) as town:
        result = offer(town, liar.log(after=3), sender=VILLAGE)
        assert result["applied"] == {VILLAGE: 2}
        assert keyring.reported_uses(town.store) == []
        held = {(q["seq"], q["reason"]) for q in town.store.quarantined()}
        assert held == {(4, "revoke.report_not_below"), (5, "revoke.report_not_below")}
