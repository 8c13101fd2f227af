"""The projections' writes on PostgreSQL are held and sent in runs (`PgStore.batched`): a
write's error surfaces late, yet it still costs the one entry that caused it; a read sees
the writes held before it; a block that fails sends nothing. Each test runs on both engines
(SQLite's `batched` holds nothing) and must give the same tables."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sync.logstore import LogStore
from sync.pg import PgStore
from sync.protocol.entry import SignedEntry, encode_entry, sign_entry
from sync.protocol.keys import Signer
from sync.store import Store

CITY, VILLAGE = "330782", "330782001201"
AT = "2025-10-13T09:00:00+08:00"


class Tally:
    """A lazy extension keeping one row per tag (a PRIMARY KEY: a second entry naming a tag
    already held makes the database refuse the write), and, at flush, the count it reads
    back — which must include the writes this chunk made."""

    ddl = (
        "CREATE TABLE IF NOT EXISTS tally (tag TEXT PRIMARY KEY, seq INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS tally_seen (seq INTEGER PRIMARY KEY, rows INTEGER NOT NULL)"
    )
    name = "tally"
    version = 1
    types: frozenset[str] | None = frozenset({"test.note"})
    lazy = True

    def __init__(self) -> None:
        self.last = 0

    def apply(self, store: LogStore, entry: SignedEntry, fields: dict[str, Any]) -> None:
        store.execute(
            "INSERT INTO tally (tag, seq) VALUES (?, ?)", (fields["body"]["tag"], entry.seq)
        )
        self.last = entry.seq

    def flush(self, store: LogStore) -> None:
        [(rows,)] = store.query("SELECT count(*) FROM tally")
        store.execute(
            "INSERT OR REPLACE INTO tally_seen (seq, rows) VALUES (?, ?)", (self.last, rows)
        )

    def discard(self) -> None:
        self.last = 0


@pytest.fixture(params=["sqlite", "postgresql"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    def make() -> LogStore:
        if request.param == "sqlite":
            return Store(tmp_path / "node.db", extensions=[Tally()], owner=CITY)
        return PgStore(request.getfixturevalue("pg_url"), extensions=[Tally()], owner=CITY)

    yield make


def _notes(signer: Signer, tags: list[str]) -> list[SignedEntry]:
    out, prev = [], None
    for seq, tag in enumerate(tags, 1):
        entry = sign_entry(signer, encode_entry(VILLAGE, seq, prev, AT, "test.note", {"tag": tag}))
        out.append(entry)
        prev = entry.hash
    return out


def test_a_members_entry_whose_write_the_database_refuses_costs_that_entry_alone(
    make_store: Any,
) -> None:
    """A village signs, with its own key, a note naming a tag an earlier note named: the
    projection's INSERT is refused by the database — on PostgreSQL only when the held run
    is sent, after later entries' writes were queued. Only that entry is set aside."""
    store = make_store()
    store.defer_projections()
    tags = ["a", "b", "c", "b", "d", "e"]  # seq 4 repeats seq 2's tag
    with store.transaction():
        store.insert(_notes(Signer.generate(), tags), AT)
    assert store.catch_up() == 0
    assert store.query("SELECT tag, seq FROM tally ORDER BY seq") == [
        ("a", 1), ("b", 2), ("c", 3), ("d", 5), ("e", 6)
    ]  # fmt: skip
    [held] = store.quarantined()
    assert (held["origin"], held["seq"], held["reason"]) == (VILLAGE, 4, "projection.failed")
    store.close()


def test_a_read_in_the_block_sees_the_writes_held_before_it(make_store: Any) -> None:
    store = make_store()
    store.defer_projections()
    with store.transaction():
        store.insert(_notes(Signer.generate(), ["a", "b", "c"]), AT)
    store.catch_up()
    assert store.query("SELECT seq, rows FROM tally_seen") == [(3, 3)]
    store.close()


def test_a_block_that_raises_sends_nothing_it_held(make_store: Any) -> None:
    store = make_store()
    with store.transaction():
        with pytest.raises(RuntimeError), store.transaction(), store.batched():
            store.execute("INSERT INTO tally (tag, seq) VALUES ('held', 1)")
            raise RuntimeError("the block fails before its end")
        store.execute("INSERT INTO tally (tag, seq) VALUES ('after', 2)")
    assert store.query("SELECT tag FROM tally") == [("after",)]
    store.close()


def test_writes_held_before_a_savepoint_survive_its_rollback(make_store: Any) -> None:
    """A savepoint opened inside a block (an extension's own nested transaction) must not
    take the block's earlier writes with it when it rolls back, nor keep its own."""
    store = make_store()
    with store.transaction(), store.batched():
        store.execute("INSERT INTO tally (tag, seq) VALUES ('before', 1)")
        with pytest.raises(RuntimeError), store.transaction():
            store.execute("INSERT INTO tally (tag, seq) VALUES ('inside', 2)")
            raise RuntimeError("rolled back")
        store.execute("INSERT INTO tally (tag, seq) VALUES ('after', 3)")
    assert store.query("SELECT tag FROM tally ORDER BY seq") == [("before",), ("after",)]
    store.close()
