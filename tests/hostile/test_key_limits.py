"""A member that floods the key records with its own real key: every check of an origin's
keys reads all its records, so their number is bounded (sync.keyring MAX_ROTATIONS per
enrolment, MAX_ENROLMENTS per node); the entries beyond are kept but quarantined."""

from __future__ import annotations

import pytest

from sync import keyring, trust
from sync.ingest import ingest
from sync.protocol.batch import decode_batch, encode_batch
from sync.protocol.entry import SignedEntry, encode_entry
from sync.protocol.keys import Signer
from tests.hostile.harness import Actor, sign_raw, stamp_now
from tests.support.topology import CITY, TOWN, VILLAGE, Topology

# the attacks reach the city too: its PostgreSQL runs in the soak run (the CI run's sample
# of a member pushing to a PostgreSQL city: test_city_pushes.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]


def rotations(actor: Actor, count: int) -> tuple[list[SignedEntry], list[Signer]]:
    """`count` rotations of the actor's log from seq 1, each signed by the key the one
    before named (as the node's own `node rekey` would chain them)."""
    entries: list[SignedEntry] = []
    keys: list[Signer] = []
    signer, prev = actor.signer, None
    for seq in range(1, count + 1):
        new = Signer.generate()
        body = {"public_key": new.public.hex()}
        raw = encode_entry(actor.node_id, seq, prev, stamp_now(), keyring.REKEYED, body)
        entry = sign_raw(signer, raw, actor.node_id, seq, keyring.REKEYED)
        entries.append(entry)
        keys.append(new)
        prev, signer = entry.hash, new
    return entries, keys


def _push(topology: Topology, receiver: str, sender: str, entries: list[SignedEntry]) -> None:
    with topology.open(receiver) as node:
        result = ingest(
            node.store,
            decode_batch(encode_batch(entries)),
            me=receiver,
            sender=sender,
            received_at=node.clock.stamp(),
        )
        assert not result.rejected, result.rejected  # kept in the log, as evidence


def test_rotations_beyond_the_limit_are_quarantined(topology: Topology) -> None:
    village = Actor.of(topology.home(VILLAGE))
    entries, keys = rotations(village, keyring.MAX_ROTATIONS + 1)
    _push(topology, TOWN, VILLAGE, entries)
    with topology.open(TOWN) as town:
        held = {(q["seq"], q["reason"]) for q in town.store.quarantined()}
        assert held == {(keyring.MAX_ROTATIONS + 1, "key.too_many")}
        # the key stays the last one admitted: the flood changed nothing more
        assert trust.public_key(town.store, VILLAGE) == keys[keyring.MAX_ROTATIONS - 1].public


def test_replacement_enrolments_beyond_the_limit_are_quarantined(topology: Topology) -> None:
    town = Actor.of(topology.home(TOWN))
    with town.store() as store:
        first = store.head(TOWN)[0] + 1
    for start in range(1, keyring.MAX_ENROLMENTS + 1):  # with the first one: one too many
        key = Signer.generate().public.hex()
        town.forge(trust.ENROLLED, trust.enrolment_body(VILLAGE, "v", key, None, start))
    _push(topology, CITY, TOWN, town.log())
    with topology.open(CITY) as city:
        held = [(q["seq"], q["reason"]) for q in city.store.quarantined()]
        assert held == [(first + keyring.MAX_ENROLMENTS - 1, "enrol.too_many")]
        assert len(keyring.KeyRing.load(city.store, VILLAGE).enrols) == keyring.MAX_ENROLMENTS
