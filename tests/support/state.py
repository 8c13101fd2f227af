"""What a node holds, read back for comparison: heads, entry counts, forks, integrity."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from sync import node_store, receipts
from sync.audit import verify_log
from sync.node import NODE_DB, NODE_TOML, Node, NodeConfig
from sync.store import Store


@dataclass(frozen=True)
class Snapshot:
    """heads: origin → (seq, hash hex); counts: origin → rows held; forks: (origin, seq, other)."""

    heads: dict[str, tuple[int, str]]
    counts: dict[str, int]
    forks: tuple[tuple[str, int, str], ...]

    def seqs(self) -> dict[str, int]:
        return {origin: seq for origin, (seq, _) in self.heads.items()}

    def within(self, subtree: str) -> Snapshot:
        """Only the origins of `subtree` (what a parent holds of a child's logs)."""
        return Snapshot(
            {o: h for o, h in self.heads.items() if o.startswith(subtree)},
            {o: c for o, c in self.counts.items() if o.startswith(subtree)},
            tuple(f for f in self.forks if f[0].startswith(subtree)),
        )


def snapshot(store: Store) -> Snapshot:
    """Heads, counts and forks read in one transaction (a server may be writing)."""
    with store.snapshot():
        return _read(store)


def _read(store: Store) -> Snapshot:
    heads = {o: (s, h.hex()) for o, (s, h) in sorted(store.heads().items())}
    counts = {
        o: c
        for o, c in store.query(
            "SELECT origin, COUNT(*) FROM entries GROUP BY origin ORDER BY origin"
        )
    }
    forks = tuple(
        (o, s, h.hex().upper())  # as SQLite's hex(), which PostgreSQL does not have
        for o, s, h in store.query(
            "SELECT origin, seq, other_hash FROM forks ORDER BY origin, seq, other_hash"
        )
    )
    return Snapshot(heads, counts, forks)


@contextmanager
def home_store(home: Path) -> Iterator[Store]:
    """The store of the node at `home`, no projection: its node.db, or the PostgreSQL
    database its node.toml names (a city under `city_engine`); the keys are not needed."""
    config = NodeConfig(**tomllib.loads((home / NODE_TOML).read_text("utf-8")))
    if not config.store:
        lite = Store(home / NODE_DB)
        try:
            yield lite
        finally:
            lite.close()
        return
    store = node_store.open_store(home, config, [])
    try:
        yield store
    finally:
        store.close()


def snapshot_home(home: Path) -> Snapshot:
    """A snapshot read through a store of its own (the node's keys are not needed)."""
    with home_store(home) as store:
        return snapshot(store)


def integrity_check(home: Path) -> str:
    """`PRAGMA integrity_check` on a separate connection: "ok" when intact.

    The connection is apsw's, not the stdlib's: two SQLite libraries in one process do not
    share POSIX locks, so closing a stdlib connection would drop the locks of any apsw
    connection the test still has open on the same file (an in-thread server's).
    """
    conn = apsw.Connection(str(home / NODE_DB))
    try:
        rows = list(conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()
    return "; ".join(str(r[0]) for r in rows)


def audit_problems(store: Store) -> list[dict[str, Any]]:
    """`log verify`: every problem found in every log held whole (empty when clean)."""
    return verify_log(store).problems


def assert_prefix_held(author: Node, parent_home: Path) -> None:
    """What the parent holds of `author`'s subtree is, per origin, a prefix of the true log
    (same hash at its head), each entry once; and no receipt `author` holds claims more."""
    there = snapshot_home(parent_home)
    assert_whole(there)
    for origin, (seq, digest) in there.within(author.node_id).heads.items():
        held = author.store.hash_at(origin, seq)
        assert held is not None and held.hex() == digest, (origin, seq)
    for origin, seq in receipts.acknowledged(author.store, author.config.parent_id or "").items():
        if origin.startswith(author.node_id):
            assert there.heads[origin][0] >= seq, (origin, seq)


def assert_whole(snap: Snapshot) -> None:
    """Every log held whole has each entry exactly once: rows per origin == head seq."""
    assert {o: seq for o, (seq, _) in snap.heads.items()} == {
        o: snap.counts.get(o, 0) for o in snap.heads
    }
