"""A lazy extension that keeps how many entries each flush was shown: what a catch-up
projected together (tests of where its chunks end, on either engine)."""

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
