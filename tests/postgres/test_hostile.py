"""A member with its own real key, running modified software, against the city's store on
PostgreSQL: whatever it signs, the database keeps the history it holds."""

from __future__ import annotations

import psycopg
import pytest

from sync.pg import PgStore
from sync.protocol.entry import encode_entry
from sync.protocol.errors import StoreError
from tests.hostile.harness import Actor, sign_raw, stamp_now
from tests.support.topology import VILLAGE, Topology


def test_a_member_signing_over_a_seq_held_is_refused_by_the_database(
    topology: Topology, pg_url: str
) -> None:
    actor = Actor.of(topology.home(VILLAGE))
    actor.forge("test.note", {"n": 1})
    actor.forge("test.note", {"n": 2})
    log = actor.log()  # its real log, signed with its real key
    assert len(log) >= 2
    with PgStore(pg_url) as store:
        with store.transaction():
            store.insert(log, stamp_now())
        last = log[-1]
        before = log[-2]
        raw = encode_entry(VILLAGE, last.seq, before.hash, stamp_now(), "test.note",
                           {"n": 2, "rewritten": True})  # fmt: skip
        rewrite = sign_raw(actor.signer, raw, VILLAGE, last.seq, "test.note")
        with pytest.raises(StoreError) as caught, store.transaction():
            store.insert([rewrite], stamp_now())  # as if ingest had not compared it
        assert caught.value.key == "store.pg_taken"
        raw = encode_entry(VILLAGE, last.seq + 2, last.hash, stamp_now(), "test.note", {"n": 4})
        skipping = sign_raw(actor.signer, raw, VILLAGE, last.seq + 2, "test.note")
        with pytest.raises(StoreError) as caught, store.transaction():
            store.insert([skipping], stamp_now())
        assert caught.value.key == "store.pg_gap"
        with psycopg.connect(pg_url, autocommit=True) as conn, pytest.raises(psycopg.Error):
            conn.execute(  # straight into the table, its signature and hash beside it
                "UPDATE entries SET raw = %s, sig = %s, hash = %s WHERE origin = %s AND seq = %s",
                (rewrite.raw, rewrite.sig, rewrite.hash, VILLAGE, last.seq),
            )
        assert list(store.iter_all(VILLAGE)) == log
        assert store.head(VILLAGE) == (last.seq, last.hash)
        honest = actor.forge("test.note", {"n": 3})  # its next entry, chained: taken
        with store.transaction():
            store.insert([honest], stamp_now())
        assert store.head(VILLAGE) == (honest.seq, honest.hash)
