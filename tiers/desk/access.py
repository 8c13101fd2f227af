"""Who opened which case on the desk (issue #14): node-local, never a log entry.

One row per opening of a case page: the person's name, when (ISO time at this node) and
the case id. Admins read them newest first at /desk/access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sync.store import Store

_DDL = """
CREATE TABLE IF NOT EXISTS desk_access (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, name TEXT NOT NULL,
    case_id TEXT NOT NULL)
"""


@dataclass(frozen=True)
class Access:
    at: str
    name: str
    case_id: str

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "name": self.name, "case_id": self.case_id}


def ensure(store: Store) -> None:
    """Create the table (the desk does, once, when it opens the node)."""
    store.execute(_DDL)


def record(store: Store, name: str, case_id: str, at: str) -> None:
    """Note that `name` opened `case_id` at `at`."""
    with store.transaction():
        store.execute("INSERT INTO desk_access (at, name, case_id) VALUES (?, ?, ?)",
                      (at, name, case_id))  # fmt: skip


def recent(store: Store, limit: int, offset: int = 0) -> tuple[list[Access], int]:
    """A page of the records, newest first, and how many there are in all."""
    total = store.query("SELECT count(*) FROM desk_access")[0][0]
    rows = store.query(
        "SELECT at, name, case_id FROM desk_access ORDER BY id DESC LIMIT ? OFFSET ?",
        (limit, offset),
    )
    return [Access(*row) for row in rows], total
