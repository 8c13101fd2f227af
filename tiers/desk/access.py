"""Who opened which case on the desk (issue #14): node-local, never a log entry.

One row per opening of a case page or download of one of its materials: the person's name,
when (ISO time at this node), the case id and what was opened (`what`: empty for the case's
page, the material's file name for a download). Admins read them newest first at /desk/access.

Retention: node.toml `desk_access_days` (default 1095, three years; a bad value is the
default) — older records are deleted when the desk opens the node (`ensure`) and then at
most once a day, by the first `record` of a new day. The listing reads the table by its
primary key (newest first); `desk_access_at` serves the deletion and the count,
`desk_access_case` a case's openings.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from sync.logstore import LogStore
from sync.protocol.errors import StoreError
from sync.store import StateTables, Step, make_tables

RETENTION_SETTING = "desk_access_days"
RETENTION_DEFAULT = 1095  # days: three years

_DDL = """
CREATE TABLE IF NOT EXISTS desk_access (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, name TEXT NOT NULL,
    case_id TEXT NOT NULL, what TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS desk_access_at ON desk_access (at);
CREATE INDEX IF NOT EXISTS desk_access_case ON desk_access (case_id, id);
"""

# Per database: (days kept, the day of the last pruning); set by `ensure`.
_KEPT: dict[str, tuple[int, str]] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Access:
    at: str
    name: str
    case_id: str
    what: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "name": self.name, "case_id": self.case_id, "what": self.what}


def retention_days(settings: dict[str, Any]) -> int:
    """node.toml `desk_access_days` (default 1095); a bad value is the default."""
    value = settings.get(RETENTION_SETTING, RETENTION_DEFAULT)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return RETENTION_DEFAULT
    return value


def _add_what(store: LogStore) -> None:
    """Version 2: the column `what`. A table made before versions were recorded is taken as
    version 1 whether it has it or not (a SQLite home's made before `what` lacks it; one
    made since, and every PostgreSQL store's, has it)."""
    try:
        with store.transaction():  # a savepoint: the read that fails leaves the rest going
            store.query("SELECT what FROM desk_access LIMIT 1")
        return
    except StoreError:  # no such column
        pass
    store.execute("ALTER TABLE desk_access ADD COLUMN what TEXT NOT NULL DEFAULT ''")


class DeskAccess(StateTables):
    """`desk_access` at its version (sync._tables); 2 added `what`."""

    name = "desk_access"
    version = 2
    ddl = _DDL
    steps: Mapping[int, Step] = MappingProxyType({2: _add_what})


def ensure(store: LogStore, settings: dict[str, Any] | None = None,
           now: datetime | None = None) -> None:  # fmt: skip
    """Create the table and its indexes, or bring them to this code's version (the desk
    does when it opens the node; nothing runs when they are at it); with `now`, delete the
    records older than the retention of `settings` too."""
    make_tables(store, [DeskAccess()])
    if now is not None:
        with _LOCK:
            _KEPT[store.path] = (retention_days(settings or {}), "")
        prune(store, now)


def prune(store: LogStore, now: datetime) -> int:
    """Delete the records older than the retention set by `ensure` (none when it set none);
    how many went."""
    with _LOCK:
        kept = _KEPT.get(store.path)
        if kept is None:
            return 0
        _KEPT[store.path] = (kept[0], now.date().isoformat())
    cutoff = (now - timedelta(days=kept[0])).isoformat()
    with store.transaction():  # counted and deleted under the write lock: the same rows
        gone = store.query("SELECT count(*) FROM desk_access WHERE at < ?", (cutoff,))[0][0]
        store.execute("DELETE FROM desk_access WHERE at < ?", (cutoff,))
    return int(gone)


def record(store: LogStore, name: str, case_id: str, at: str, what: str = "") -> None:
    """Note that `name` opened `case_id` (`what`: a material's file name) at `at` (and, the
    first time on a new day, delete the records past their retention)."""
    with store.transaction():
        store.execute("INSERT INTO desk_access (at, name, case_id, what) VALUES (?, ?, ?, ?)",
                      (at, name, case_id, what))  # fmt: skip
    with _LOCK:
        kept = _KEPT.get(store.path)
    when = datetime.fromisoformat(at)
    if kept is not None and kept[1] != when.date().isoformat():
        prune(store, when)


def recent(store: LogStore, limit: int, offset: int = 0) -> tuple[list[Access], int]:
    """A page of the records, newest first, and how many there are in all."""
    total = store.query("SELECT count(*) FROM desk_access")[0][0]
    rows = store.query(
        "SELECT at, name, case_id, what FROM desk_access ORDER BY id DESC LIMIT ? OFFSET ?",
        (limit, offset),
    )
    return [Access(*row) for row in rows], total
