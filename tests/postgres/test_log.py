"""The log core on PostgreSQL: appends move heads, reads come back in order, and the
database itself refuses a gap, a duplicate, a broken chain and any change to what is held."""

from __future__ import annotations

import psycopg
import pytest

from sync.pg import PgStore
from sync.protocol.entry import SignedEntry, encode_entry, entry_hash
from sync.protocol.errors import StoreError
from tests.hostile.harness import sign_raw
from tests.postgres.chains import AT, chain, signer_for

TOWN, VILLAGE = "330782001", "330782001201"
NOW = "2025-10-13T09:00:00+08:00"


@pytest.fixture
def store(pg_url: str):  # type: ignore[no-untyped-def]
    with PgStore(pg_url) as opened:
        yield opened


def _refused(store: PgStore, entries: list[SignedEntry]) -> str:
    with pytest.raises(StoreError) as caught, store.transaction():
        store.insert(entries, NOW)
    return caught.value.key


def test_insert_moves_heads_and_reads_come_back_in_order(store: PgStore) -> None:
    village = chain(signer_for(VILLAGE), VILLAGE, 7)
    town = chain(signer_for(TOWN), TOWN, 2)
    with store.transaction():
        store.insert(village[:4] + town, NOW)  # one COPY, two origins
    with store.transaction():
        store.insert(village[4:], NOW)
    assert store.heads() == {VILLAGE: (7, village[-1].hash), TOWN: (2, town[-1].hash)}
    assert store.max_seqs() == {VILLAGE: 7, TOWN: 2}
    assert store.head("330782001299") == (0, None)
    assert store.entries(VILLAGE, after=2, limit=3) == village[2:5]
    assert store.entries(VILLAGE, after=5) == village[5:]
    assert store.entries(VILLAGE, through=2) == village[:2]
    assert store.entry(VILLAGE, 6) == village[5]
    assert store.entry(VILLAGE, 8) is None
    assert store.hash_at(TOWN, 1) == town[0].hash
    assert list(store.iter_all()) == town + village
    assert list(store.iter_all(VILLAGE)) == village


def test_insert_of_a_seq_held_is_refused_and_writes_nothing(store: PgStore) -> None:
    village = chain(signer_for(VILLAGE), VILLAGE, 5)
    with store.transaction():
        store.insert(village[:3], NOW)
    assert _refused(store, village[2:5]) == "store.pg_taken"  # seq 3 again, then 4 and 5
    assert store.head(VILLAGE) == (3, village[2].hash)
    assert store.entry(VILLAGE, 4) is None


def test_insert_with_a_gap_is_refused(store: PgStore) -> None:
    village = chain(signer_for(VILLAGE), VILLAGE, 5)
    for picked in ([2, 3], [1, 2, 4]):  # not from seq 1; a hole inside
        assert _refused(store, [village[n - 1] for n in picked]) == "store.pg_gap"
    assert store.heads() == {}
    with store.transaction():
        store.insert(village[:1], NOW)
    for picked in ([3, 4], [2, 4]):  # past the head; a hole inside
        assert _refused(store, [village[n - 1] for n in picked]) == "store.pg_gap"
    assert store.head(VILLAGE) == (1, village[0].hash)
    assert store.entry(VILLAGE, 2) is None


def test_insert_that_does_not_extend_the_chain_is_refused(store: PgStore) -> None:
    signer = signer_for(VILLAGE)
    held = chain(signer, VILLAGE, 3)
    other = chain(signer, VILLAGE, 5, tag="copied node")  # the same key, another history
    with store.transaction():
        store.insert(held, NOW)
    assert _refused(store, other[3:]) == "store.pg_chain"  # seq 4 chained to another 3
    mine = chain(signer, VILLAGE, 1, after=held[2])
    assert _refused(store, mine + other[4:]) == "store.pg_chain"  # 5 chained to another 4
    assert store.head(VILLAGE) == (3, held[2].hash)
    with store.transaction():
        store.insert(mine, NOW)
    assert store.head(VILLAGE) == (4, mine[0].hash)


def test_insert_whose_bytes_name_another_seq_or_origin_is_refused(store: PgStore) -> None:
    signer = signer_for(VILLAGE)
    village = chain(signer, VILLAGE, 2)
    town = chain(signer_for(TOWN), TOWN, 1)
    assert _refused(store, [village[0], village[0]._replace(seq=2)]) == "store.pg_chain"
    assert _refused(store, [town[0]._replace(origin=VILLAGE)]) == "store.pg_chain"
    assert store.heads() == {}
    # chained right (its prev is seq 1's hash) but naming seq 3, or seq 2 as 2.0
    for named in (b'"seq":3', b'"seq":2.0'):
        raw = encode_entry(VILLAGE, 2, village[0].hash, AT, "test.note", {"n": 2})
        raw = raw.replace(b'"seq":2', named)
        assert named in raw
        liar = sign_raw(signer, raw, VILLAGE, 2, "test.note")
        assert _refused(store, [village[0], liar]) == "store.pg_chain", named
    assert store.heads() == {}


def test_insert_whose_bytes_are_not_a_json_object_is_refused(store: PgStore) -> None:
    """Bytes that are JSON but no object name no origin, seq or prev: the chain check refuses
    them as it refuses any other (never an error of the check itself), and an object after
    JSON whitespace is read as ingest reads it."""
    village = chain(signer_for(VILLAGE), VILLAGE, 1)[0]
    for raw in (b'["330782001201", 1]', b'"330782001201"', b"1", b"null", b' \t[{"seq": 1}]'):
        odd = village._replace(raw=raw, hash=entry_hash(raw))
        assert _refused(store, [odd]) == "store.pg_chain", raw
    assert store.heads() == {}
    spaced = b" \t\r\n" + village.raw.replace(b",", b" , ") + b"\n"
    with store.transaction():
        store.insert([village._replace(raw=spaced, hash=entry_hash(spaced))], NOW)
    assert store.head(VILLAGE) == (1, entry_hash(spaced))


def test_insert_whose_hash_is_not_of_its_bytes_is_refused(store: PgStore) -> None:
    village = chain(signer_for(VILLAGE), VILLAGE, 2)
    liar = village[1]._replace(hash=village[0].hash)
    assert _refused(store, [village[0], liar]) == "store.pg_chain"
    assert store.heads() == {}


def test_a_failed_append_rolls_back_the_whole_transaction(store: PgStore) -> None:
    village = chain(signer_for(VILLAGE), VILLAGE, 4)
    town = chain(signer_for(TOWN), TOWN, 2)
    with pytest.raises(StoreError), store.transaction():
        store.insert(town, NOW)
        store.mark_signed(TOWN, 2)
        store.insert([village[0], village[2]], NOW)
    assert store.heads() == {}
    assert store.query("SELECT count(*) FROM entries") == [(0,)]
    assert store.last_signed(TOWN) == 0


CHANGES = (
    "UPDATE entries SET type = 'case.accepted' WHERE seq = 1",
    "DELETE FROM entries WHERE seq = 2",
    "TRUNCATE entries",
    "UPDATE heads SET seq = 1",
    "DELETE FROM heads",
    "INSERT INTO heads VALUES ('330782001', 9, sha256('x'))",
)


def test_sql_from_any_client_cannot_change_what_is_held(store: PgStore) -> None:
    village = chain(signer_for(VILLAGE), VILLAGE, 2)
    with store.transaction():
        store.insert(village, NOW)
    with psycopg.connect(store.url, autocommit=True) as other:
        for sql in CHANGES:
            with pytest.raises(psycopg.Error) as caught:
                other.execute(sql)
            assert (sql, caught.value.sqlstate) in ((sql, "ZB003"), (sql, "ZB004"))
    assert list(store.iter_all()) == village
    assert store.heads() == {VILLAGE: (2, village[1].hash)}


def test_sql_from_any_client_cannot_append_past_a_gap(store: PgStore) -> None:
    village = chain(signer_for(VILLAGE), VILLAGE, 3)
    row = village[2]
    with psycopg.connect(store.url, autocommit=True) as other, pytest.raises(psycopg.Error) as e:
        other.execute(
            "INSERT INTO entries (origin, seq, hash, sig, raw, type, received_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (row.origin, row.seq, row.hash, row.sig, row.raw, row.type, NOW),
        )
    assert e.value.sqlstate == "ZB001"
    assert store.heads() == {}


def test_forks_meta_and_signed_tips_are_kept(store: PgStore) -> None:
    signer = signer_for(VILLAGE)
    held, other = chain(signer, VILLAGE, 2), chain(signer, VILLAGE, 2, tag="other")
    with store.transaction():
        store.insert(held, NOW)
        store.mark_signed(VILLAGE, 2)
        store.mark_signed(VILLAGE, 2)
        store.record_fork(VILLAGE, 2, held[1].hash, other[1], NOW)
        store.record_fork(VILLAGE, 2, held[1].hash, other[1], NOW)  # once is enough
        store.set_meta("restoring", "1")
        store.set_meta("restoring", "2")
    assert store.frozen() == {VILLAGE}
    assert store.query("SELECT count(*) FROM forks") == [(1,)]
    assert store.signed_seqs(VILLAGE, 0, 2) == [2]
    assert store.last_signed(VILLAGE) == 2
    assert store.get_meta("restoring") == "2"
    store.delete_meta("restoring")
    assert store.get_meta("restoring", "gone") == "gone"


def test_a_snapshot_reads_one_state_while_another_process_appends(store: PgStore) -> None:
    village = chain(signer_for(VILLAGE), VILLAGE, 4)
    with store.transaction():
        store.insert(village[:2], NOW)
    with store.snapshot():
        assert store.head(VILLAGE) == (2, village[1].hash)
        with PgStore(store.url) as other, other.transaction():
            other.insert(village[2:], NOW)
        assert store.head(VILLAGE) == (2, village[1].hash)
        assert store.entries(VILLAGE) == village[:2]
    assert store.head(VILLAGE) == (4, village[3].hash)


def test_each_reads_in_chunks_and_two_reads_may_be_open_at_once(store: PgStore) -> None:
    """`each` streams a read on a server-side cursor (store migrate and its checks go through
    millions of rows with it); a second read opened before the first is done is its own."""
    entries = chain(signer_for(VILLAGE), VILLAGE, 7)
    with store.transaction():
        store.insert(entries, NOW)
    sql = "SELECT seq FROM entries WHERE origin = ? ORDER BY seq"
    outer, inner = store.each(sql, (VILLAGE,), chunk=2), store.each(sql, (VILLAGE,), chunk=3)
    pairs = [(a[0], b[0]) for a, b in zip(outer, inner, strict=True)]
    assert pairs == [(n, n) for n in range(1, 8)]
