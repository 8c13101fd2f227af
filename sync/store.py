"""The log store: one apsw connection on a node's SQLite file (or ":memory:").

Invariants:
- Entries are append-only twice over: no update/delete in this API, and triggers abort
  any UPDATE or DELETE on `entries`.
- Every write is one `with self.transaction():` — a batch applies whole or not at all.
- `synchronous=FULL` with WAL: a transaction that returned is on disk, so a receipt
  (which is only written after commit) never acknowledges an entry a power cut can lose.
- Extensions (projections kept by the layers above) see every entry exactly once, in the
  order entries were stored (`entries.id`). Eager ones (trust: the keys ingest checks) see
  it in the transaction that stores it. Lazy ones (the tiers' case and figure projections)
  do too, unless the connection defers them (`defer_projections`, as `serve` does so a
  push is acknowledged once it is durable, not once it is projected): then they catch up
  later from a cursor kept in the same database (`meta.projected`), in transactions that
  move the cursor with the projection. Any other writer catches up before it starts, and
  readers catch up when they open the node, so nobody sees a projection behind the log
  and a projection always equals the log up to its cursor.
- One bad entry costs one entry, never the node. Before any extension sees an entry, the
  rule registered for its type (sync.authority) may refuse it; and an entry an extension
  raises on is rolled back alone. Either way it is kept (it is part of its author's signed
  chain) but quarantined with its reason, and never projected; every later entry goes on.
  An entry this node appends itself (`strict`) is refused instead, so the node never
  writes what it could not use, and never chains its next entry after it.
- Each extension's tables are made at the version it declares, recorded in meta
  (`tables.<name>`); an older store is migrated at open, a newer one refused, and nothing
  runs when they match (sync._tables).
- `signed_tips` names the entries whose own signature was checked here (the last entry of
  every run ingest accepted); each vouches for every entry of its origin below it through
  the hash chain, so a relay cuts its batches there (sync.proofs).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import apsw

from sync import _tables
from sync._projecting import (  # noqa: F401  (re-exported: the store's public constants)
    PROJECT_CHUNK,
    PROJECTED,
    UNPROJECTED_SQL,
    UNUSABLE,
    Extension,
)
from sync._tables import KEY as TABLES_KEY  # noqa: F401  (re-exported, as above)
from sync._tables import StateTables, Step  # noqa: F401
from sync._tables import make as make_tables  # noqa: F401
from sync.logstore import LogStore
from sync.protocol.entry import SignedEntry
from sync.protocol.errors import DiskFullError, StoreError

BUSY_TIMEOUT_MS = 10_000
# what SQLite says when a table, column or key the code names is not there: the database
# changed under zhibao, never an entry's doing (the statements are the code's; an entry's
# values are parameters). Other SQLErrors may be ("malformed JSON"): the entry's fault.
_SCHEMA_GONE = re.compile(
    r"no such (table|column): |table \S+ has no column named "
    r"|ON CONFLICT clause does not match any PRIMARY KEY or UNIQUE constraint"
)
WAL_CHECKPOINT_PAGES = 8192

_MAX_SEQS_SQL = """
WITH RECURSIVE o(origin) AS (
    SELECT MIN(origin) FROM entries
    UNION ALL
    SELECT (SELECT MIN(origin) FROM entries WHERE origin > o.origin) FROM o
    WHERE o.origin IS NOT NULL
)
SELECT origin, (SELECT MAX(seq) FROM entries WHERE entries.origin = o.origin) FROM o
WHERE origin IS NOT NULL
"""

_DDL = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL,
    sig BLOB NOT NULL,
    raw BLOB NOT NULL,
    type TEXT NOT NULL,
    received_at TEXT NOT NULL,
    UNIQUE (origin, seq)
);
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
"""
_NO_DELETE = """
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
"""
_DDL += _NO_DELETE + """
CREATE TABLE IF NOT EXISTS heads (
    origin TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS forks (
    origin TEXT NOT NULL, seq INTEGER NOT NULL, held_hash BLOB NOT NULL,
    other_hash BLOB NOT NULL, other_raw BLOB NOT NULL, other_sig BLOB NOT NULL,
    detected_at TEXT NOT NULL, resolved INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (origin, seq, other_hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fork_decisions (
    origin TEXT NOT NULL, seq INTEGER NOT NULL, author TEXT NOT NULL, author_seq INTEGER NOT NULL,
    kept_hash BLOB NOT NULL, other_hash BLOB NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (origin, seq, author, author_seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS receipts (
    issuer TEXT NOT NULL, origin TEXT NOT NULL, seq INTEGER NOT NULL, hash BLOB NOT NULL,
    raw BLOB NOT NULL, sig BLOB NOT NULL, at TEXT NOT NULL, PRIMARY KEY (issuer, origin)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nonces (
    node TEXT NOT NULL, nonce TEXT NOT NULL, seen INTEGER NOT NULL, PRIMARY KEY (node, nonce)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS peers (
    node_id TEXT PRIMARY KEY, last_contact TEXT NOT NULL, skew_seconds INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quarantine (
    origin TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, reason TEXT NOT NULL,
    params TEXT NOT NULL, received_at TEXT NOT NULL, PRIMARY KEY (origin, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS quarantine_received ON quarantine (received_at);
CREATE TABLE IF NOT EXISTS signed_tips (
    origin TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (origin, seq)
) WITHOUT ROWID;
"""
LOG_DDL = _DDL  # the log's tables (sync._tables makes the extensions' after them)


def _translate(exc: apsw.Error) -> StoreError:
    cause: BaseException | None = exc
    while cause is not None:  # SQLite rolls back by itself on SQLITE_FULL; apsw's own
        if isinstance(cause, apsw.FullError):  # rollback then fails with another error
            return DiskFullError("store.full")
        cause = cause.__context__
    if isinstance(exc, apsw.FullError):
        return DiskFullError("store.full")
    if isinstance(exc, apsw.ConstraintError):
        return StoreError("store.constraint", detail=str(exc))
    if isinstance(exc, apsw.BusyError):
        return StoreError("store.busy")
    if isinstance(exc, apsw.IOError):
        return StoreError("store.io", detail=str(exc))
    if isinstance(exc, apsw.SQLError) and _SCHEMA_GONE.match(str(exc)):
        return StoreError("store.schema", detail=str(exc))
    return StoreError("store.failed", detail=str(exc))


class Store(LogStore):
    """A node's SQLite database. Owns its connection; close it (or use `with`)."""

    driver_errors = (apsw.Error,)

    def __init__(
        self, path: str | Path, *, extensions: Sequence[Extension] = (), owner: str | None = None
    ) -> None:
        self.path = str(path)
        try:
            self.conn = apsw.Connection(self.path)
            self.conn.set_busy_timeout(BUSY_TIMEOUT_MS)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            # checkpoint the WAL into the database every 32 MB rather than 4: a 4,000-entry
            # push writes ~2.5 MB, and copying pages back after every other push cost a
            # quarter of ingest (in process, 50,000 entries: 1.02 s → 0.78 s); `serve` also
            # checkpoints when it is idle
            self.conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            self.conn.execute("PRAGMA foreign_keys=ON")
            with self.conn:
                self.conn.execute(_DDL)
        except apsw.Error as exc:
            raise _translate(exc) from exc
        self._setup(extensions, owner)
        try:
            _tables.make(self, extensions)  # the extensions' tables, at their versions
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.conn.close()

    def translate_error(self, exc: BaseException) -> StoreError:
        assert isinstance(exc, apsw.Error)
        return _translate(exc)

    def _begin(self, exclusive: bool) -> None:
        # the write lock at once: nothing read (a head, a case's state, the projection
        # cursor) can change before this transaction writes; SQLite has one writer anyway
        self.conn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self.conn.execute("COMMIT")

    def _rollback(self) -> None:
        if not self.conn.get_autocommit():
            with contextlib.suppress(apsw.Error):
                self.conn.execute("ROLLBACK")

    def _savepoint(self) -> apsw.Connection:
        return self.conn  # apsw: `with conn:` is a savepoint

    def _last_id(self) -> int:
        return int(self.conn.last_insert_rowid())

    def _script(self, ddl: str) -> None:
        try:
            self.conn.execute(ddl)
        except apsw.Error as exc:
            raise _translate(exc) from exc

    def reader(self) -> _Reader:
        """A read-only connection to this database file, for another thread."""
        try:
            conn = apsw.Connection(self.path, flags=apsw.SQLITE_OPEN_READONLY)
            conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        except apsw.Error as exc:
            raise _translate(exc) from exc
        return _Reader(conn)

    def checkpoint(self) -> None:
        """Copy what the WAL holds into the database file, as far as readers allow."""
        try:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except apsw.Error as exc:
            raise _translate(exc) from exc

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads that all see one state of the database, even while another process writes."""
        try:
            self.conn.execute("BEGIN")
        except apsw.Error as exc:
            raise _translate(exc) from exc
        try:
            yield
        finally:
            self.conn.execute("END")

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self.conn.execute(sql, params))
        except apsw.Error as exc:
            raise _translate(exc) from exc

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> None:
        try:
            self.conn.execute(sql, params)
        except apsw.Error as exc:
            raise _translate(exc) from exc

    def max_seqs(self) -> dict[str, int]:
        """Highest seq held per origin, whole or in part (the pull cursors).

        A skip scan of the (origin, seq) index: two seeks per origin, where `GROUP BY
        origin` reads every entry's index row (a city holds millions; this runs per pull)."""
        return {o: s for o, s in self.query(_MAX_SEQS_SQL)}

    def drop_branch(self, origin: str, seq: int) -> None:
        """Inside a fork switch's transaction (sync.fork_switch): the entries of `origin`
        from `seq` on leave the log, the append-only trigger dropped and put back around
        the one DELETE; a whole log's head goes back to seq - 1 (gone at seq 1)."""
        head, _ = self.head(origin)
        whole = bool(self.query("SELECT 1 FROM heads WHERE origin = ?", (origin,)))
        self.execute("DROP TRIGGER entries_no_delete")
        self.execute("DELETE FROM entries WHERE origin = ? AND seq >= ?", (origin, seq))
        self.execute(_NO_DELETE)
        if whole and head >= seq:
            below = self.hash_at(origin, seq - 1)
            if below is None:
                self.execute("DELETE FROM heads WHERE origin = ?", (origin,))
            else:
                self.execute(
                    "UPDATE heads SET seq = ?, hash = ? WHERE origin = ?", (seq - 1, below, origin)
                )

    def each(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        try:
            yield from self.conn.execute(sql, params)
        except apsw.Error as exc:
            raise _translate(exc) from exc

    def _append(self, entries: Sequence[SignedEntry], received_at: str, *, whole: bool) -> None:
        try:
            self.conn.executemany(
                "INSERT INTO entries (origin, seq, hash, sig, raw, type, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(e.origin, e.seq, e.hash, e.sig, e.raw, e.type, received_at) for e in entries],
            )
            last = entries[-1]
            if whole:
                self.conn.execute(
                    "INSERT INTO heads (origin, seq, hash) VALUES (?, ?, ?) ON CONFLICT(origin) "
                    "DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                    (last.origin, last.seq, last.hash),
                )
        except apsw.Error as exc:
            raise _translate(exc) from exc


class _Reader:
    """A read-only connection to a store's file (`Store.reader`)."""

    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self.conn.execute(sql, params))
        except apsw.Error as exc:
            raise _translate(exc) from exc

    entry_rows = query  # (SQLite's bytes are bytes)

    def close(self) -> None:
        self.conn.close()
