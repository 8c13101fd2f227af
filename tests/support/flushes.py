"""Lazy extensions for tests of the catch-up, on either engine: how many entries each flush
was shown (what a catch-up projected together: where its chunks end), and which notes were
projected (a row a note: none passed over, none twice)."""

from __future__ import annotations

from typing import Any

from sync.logstore import LogStore
from sync.protocol.entry import SignedEntry


class Flushes:
    """Each flush's count of entries, a row a flush, in order (`shown`)."""

    name = "flushes"
    version = 1
    ddl = "CREATE TABLE IF NOT EXISTS flushes (n INTEGER PRIMARY KEY, shown INTEGER)"
    types: frozenset[str] | None = None
    lazy = True

    def __init__(self) -> None:
        self.shown = 0

    def apply(self, store: LogStore, entry: SignedEntry, fields: dict[str, Any]) -> None:
        self.shown += 1

    def flush(self, store: LogStore) -> None:
        if self.shown:
            store.execute("INSERT INTO flushes (shown) VALUES (?)", (self.shown,))
        self.shown = 0

    def discard(self) -> None:
        self.shown = 0


def shown(store: LogStore) -> list[int]:
    """How many entries each flush so far was shown."""
    return [int(n) for (n,) in store.query("SELECT shown FROM flushes ORDER BY n")]


class Seen:
    """A row a test note projected (origin, seq) with its tag, indexed as a projection indexes
    a case's id. A second sight of one is refused by the database, which quarantines that
    entry (`store.constraint`): look there too."""

    name = "seen"
    version = 1
    ddl = (
        "CREATE TABLE IF NOT EXISTS seen (origin TEXT NOT NULL, seq INTEGER NOT NULL, "
        "tag TEXT NOT NULL, PRIMARY KEY (origin, seq));"
        "CREATE INDEX IF NOT EXISTS seen_tag ON seen (tag);"
    )
    types: frozenset[str] | None = frozenset({"test.note"})
    lazy = True

    def apply(self, store: LogStore, entry: SignedEntry, fields: dict[str, Any]) -> None:
        store.execute(
            "INSERT INTO seen (origin, seq, tag) VALUES (?, ?, ?)",
            (entry.origin, entry.seq, str(fields["body"].get("tag", ""))),
        )

    def flush(self, store: LogStore) -> None:
        pass

    def discard(self) -> None:
        pass
