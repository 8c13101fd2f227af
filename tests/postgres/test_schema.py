"""The log tables on PostgreSQL: created by numbered migrations, once, whoever opens first."""

from __future__ import annotations

import threading

import psycopg
import pytest

from sync.pg import ENTRY_PARTITIONS, SCHEMA_VERSION, PgStore, migrate, schema
from sync.pg.schema import MIGRATIONS, version
from sync.protocol.errors import StoreError
from tests.postgres.chains import chain, signer_for

VILLAGE = "330782001201"
LOG_TABLES = {"entries", "heads", "forks", "fork_decisions", "meta", "receipts", "nonces",
              "peers", "quarantine", "signed_tips", "schema_version"}  # fmt: skip


def test_migrate_creates_log_tables_and_records_version(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert version(conn) == 0
        assert migrate(conn) == [v for v, _, _ in MIGRATIONS]
        assert version(conn) == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}  # fmt: skip
        partitions = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'entries'::regclass"
        ).fetchone()
    assert tables >= LOG_TABLES
    assert partitions == (ENTRY_PARTITIONS,)


def test_migrate_again_changes_nothing(pg_url: str) -> None:
    entries = chain(signer_for(VILLAGE), VILLAGE, 3)
    with PgStore(pg_url) as store, store.transaction():
        store.insert(entries, "2025-10-13T09:00:00+08:00")
    with PgStore(pg_url) as store:  # opening migrates: nothing left to do
        assert migrate(store.conn) == []
        assert store.head(VILLAGE) == (3, entries[-1].hash)
        assert store.query("SELECT version, name FROM schema_version ORDER BY version") == [
            (v, name) for v, name, _ in MIGRATIONS
        ]


def test_migrate_from_two_processes_at_once_applies_once(pg_url: str) -> None:
    conns = [psycopg.connect(pg_url, autocommit=True) for _ in range(2)]
    results: list[list[int]] = []
    try:
        threads = [threading.Thread(target=lambda c=c: results.append(migrate(c))) for c in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        for c in conns:
            c.close()
    assert sorted(results) == [[], [v for v, _, _ in MIGRATIONS]]


def test_a_database_at_migration_2_is_brought_on_and_its_logs_go_on(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A city made before migration 3 (the append check in one pass): opening applies it,
    the chains held go on, and what the check refused it still refuses."""
    entries = chain(signer_for(VILLAGE), VILLAGE, 5)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        with monkeypatch.context() as then:  # a zhibao that knew migrations 1 and 2
            then.setattr(schema, "MIGRATIONS", MIGRATIONS[:2])
            migrate(conn)
        conn.cursor().executemany(  # held under migration 2's check
            "INSERT INTO entries (origin, seq, hash, sig, raw, type, received_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, 'then')",
            [(e.origin, e.seq, e.hash, e.sig, e.raw, e.type) for e in entries[:3]],
        )
    with PgStore(pg_url) as store:
        assert store.query("SELECT version FROM schema_version ORDER BY version") == [
            (v,) for v, _, _ in MIGRATIONS
        ]
        assert store.head(VILLAGE) == (3, entries[2].hash)
        [(checked,)] = store.query(
            "SELECT prosrc FROM pg_proc WHERE proname = 'zhibao_entries_appended'"
        )
        assert "json_to_record" in checked  # migration 3's check, not migration 1's
        with pytest.raises(StoreError) as caught, store.transaction():
            store.insert([entries[4]._replace(seq=4)], "2025-10-13T09:00:00+08:00")
        assert caught.value.key == "store.pg_chain"  # its bytes name seq 5
        with store.transaction():
            store.insert(entries[3:], "2025-10-13T09:00:00+08:00")
        assert store.head(VILLAGE) == (5, entries[-1].hash)


def test_open_refuses_a_database_a_newer_zhibao_migrated(pg_url: str) -> None:
    with PgStore(pg_url) as store:
        store.execute("INSERT INTO schema_version (version, name) VALUES (99, 'future')")
    with pytest.raises(StoreError) as caught:
        PgStore(pg_url)
    assert caught.value.key == "store.pg_newer"
    assert caught.value.params["version"] == 99
