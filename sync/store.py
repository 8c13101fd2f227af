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
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import apsw

from sync.protocol import i18n
from sync.protocol.entry import SignedEntry, entry_fields
from sync.protocol.errors import DiskFullError, StoreError

BUSY_TIMEOUT_MS = 10_000
WAL_CHECKPOINT_PAGES = 8192
PROJECTED = "projected"  # meta key: entries.id up to which the lazy extensions have seen
PROJECT_CHUNK = 2000  # entries held in memory at once while catching up
UNPROJECTED_SQL = (  # entries stored but not yet seen by the lazy extensions
    "SELECT coalesce(max(id), 0) - coalesce((SELECT CAST(value AS INTEGER) FROM meta "
    f"WHERE key = '{PROJECTED}'), 0) FROM entries"
)

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
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TABLE IF NOT EXISTS heads (
    origin TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS forks (
    origin TEXT NOT NULL, seq INTEGER NOT NULL, held_hash BLOB NOT NULL,
    other_hash BLOB NOT NULL, other_raw BLOB NOT NULL, other_sig BLOB NOT NULL,
    detected_at TEXT NOT NULL, resolved INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (origin, seq, other_hash)
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
"""


class Extension(Protocol):
    """A projection kept by a layer above (see the module doc for eager and lazy)."""

    ddl: str
    types: frozenset[str] | None  # entry types it wants; None for all
    lazy: bool  # may see entries after the transaction that stored them

    def apply(self, store: Store, entry: SignedEntry, fields: dict[str, Any]) -> None: ...

    def flush(self, store: Store) -> None: ...


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
    return StoreError("store.failed", detail=str(exc))


class Store:
    """A node's database. Owns its connection; close it (or use `with`)."""

    def __init__(self, path: str | Path, *, extensions: Sequence[Extension] = ()) -> None:
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
                for ext in extensions:
                    self.conn.execute(ext.ddl)
        except apsw.Error as exc:
            raise _translate(exc) from exc
        self.extensions = list(extensions)
        self._eager = [ext for ext in self.extensions if not ext.lazy]
        self._lazy = [ext for ext in self.extensions if ext.lazy]
        self.deferring = False  # see defer_projections
        self._depth = 0
        self._projected: int | None = None  # the cursor, while a transaction projects inline
        self._moved = False  # entries were projected inline since the cursor was written

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def defer_projections(self) -> None:
        """From now on, store entries without projecting them; `catch_up` projects them."""
        self.deferring = True

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """One atomic write; nested use joins the outer transaction (a savepoint).

        The outermost takes the write lock at once (BEGIN IMMEDIATE), so nothing it reads
        (a head, a case's state, the projection cursor) can change before it writes; unless
        this connection defers projections, it first brings them up to date.
        """
        return self._write(catch_up=bool(self._lazy) and not self.deferring)

    @contextlib.contextmanager
    def _write(self, *, catch_up: bool) -> Iterator[None]:
        outer = self._depth == 0
        try:
            if outer:
                self.conn.execute("BEGIN IMMEDIATE")
            try:
                with self.conn:
                    self._depth += 1
                    try:
                        if outer and catch_up:  # then project inline from the cursor
                            _, self._projected = self._project()
                        yield
                        if outer:
                            self._finish()
                    finally:
                        self._depth -= 1
                        if outer:
                            self._projected, self._moved = None, False
                if outer:
                    self.conn.execute("COMMIT")
            except BaseException:
                if outer and not self.conn.get_autocommit():
                    with contextlib.suppress(apsw.Error):
                        self.conn.execute("ROLLBACK")
                raise
        except apsw.Error as exc:
            raise _translate(exc) from exc

    def _finish(self) -> None:
        """End of the outermost transaction: flush what was applied, move the cursor."""
        for ext in self._eager:
            ext.flush(self)
        if self._moved and self._projected is not None:
            for ext in self._lazy:
                ext.flush(self)
            self.set_meta(PROJECTED, str(self._projected))
            self._moved = False

    # --- lazy projections ----------------------------------------------------------------

    def unprojected(self) -> int:
        """How many stored entries the lazy extensions have not seen yet."""
        if not self._lazy:
            return 0
        rows = self.query(UNPROJECTED_SQL)
        return max(0, int(rows[0][0]))  # ids are never reused: entries are never deleted

    def catch_up(self, limit: int | None = None) -> int:
        """Project up to `limit` (else all) entries not projected yet; returns how many remain.

        One transaction per chunk of PROJECT_CHUNK entries, each moving the cursor with the
        projection, so a long catch-up never holds the write lock for long and a crash
        keeps every chunk it finished."""
        left = limit if limit is not None else 2**62
        remaining = self.unprojected()
        while remaining and left > 0:
            with self._write(catch_up=False):
                done, _ = self._project(min(left, PROJECT_CHUNK))
            left -= done
            remaining = self.unprojected() if done else 0
        return remaining

    def checkpoint(self) -> None:
        """Copy what the WAL holds into the database file, as far as readers allow."""
        try:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except apsw.Error as exc:
            raise _translate(exc) from exc

    def _project(self, limit: int | None = None) -> tuple[int, int]:
        """Inside a transaction: let the lazy extensions see entries past the cursor, moving
        it with them; returns (entries gone through, the cursor now)."""
        rows = self.query("SELECT value FROM meta WHERE key = ?", (PROJECTED,))
        cursor = int(rows[0][0]) if rows else 0
        left = limit if limit is not None else 2**62
        done = 0
        while left > 0:
            chunk = self.query(
                "SELECT id, origin, seq, hash, sig, raw, type FROM entries WHERE id > ? "
                "ORDER BY id LIMIT ?",
                (cursor, min(left, PROJECT_CHUNK)),
            )
            if not chunk:
                break
            entries = [SignedEntry(raw, sig, h, o, s, t) for _, o, s, h, sig, raw, t in chunk]
            parsed: dict[int, Any] = {}
            for ext in self._lazy:
                self._apply(ext, entries, parsed)
                ext.flush(self)
            cursor = chunk[-1][0]
            left -= len(chunk)
            done += len(chunk)
            self.set_meta(PROJECTED, str(cursor))
        return done, cursor

    def _apply(
        self, ext: Extension, entries: Sequence[SignedEntry], parsed: dict[int, Any]
    ) -> None:
        """Show `ext` the entries it wants; `parsed` caches their fields by position."""
        wanted = ext.types
        for index, entry in enumerate(entries):
            if wanted is None or entry.type in wanted:
                fields = parsed.get(index)
                if fields is None:
                    fields = parsed[index] = entry_fields(entry.raw)
                ext.apply(self, entry, fields)

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

    # --- heads and entries -------------------------------------------------------------

    def head(self, origin: str) -> tuple[int, bytes | None]:
        rows = self.query("SELECT seq, hash FROM heads WHERE origin = ?", (origin,))
        return (rows[0][0], rows[0][1]) if rows else (0, None)

    def heads(self) -> dict[str, tuple[int, bytes]]:
        return {o: (s, h) for o, s, h in self.query("SELECT origin, seq, hash FROM heads")}

    def entry(self, origin: str, seq: int) -> SignedEntry | None:
        rows = self.query(
            "SELECT raw, sig, hash, type FROM entries WHERE origin = ? AND seq = ?", (origin, seq)
        )
        if not rows:
            return None
        raw, sig, digest, kind = rows[0]
        return SignedEntry(raw, sig, digest, origin, seq, kind)

    def entries(
        self, origin: str, after: int = 0, limit: int = -1, through: int | None = None
    ) -> list[SignedEntry]:
        top = through if through is not None else 2**62
        rows = self.query(
            "SELECT seq, raw, sig, hash, type FROM entries WHERE origin = ? AND seq > ? "
            "AND seq <= ? ORDER BY seq LIMIT ?",
            (origin, after, top, limit),
        )
        return [SignedEntry(raw, sig, h, origin, seq, kind) for seq, raw, sig, h, kind in rows]

    def max_seqs(self) -> dict[str, int]:
        """Highest seq held per origin, whole or in part (the pull cursors).

        A skip scan of the (origin, seq) index: two seeks per origin, where `GROUP BY
        origin` reads every entry's index row (a city holds millions; this runs per pull)."""
        return {o: s for o, s in self.query(_MAX_SEQS_SQL)}

    def hash_at(self, origin: str, seq: int) -> bytes | None:
        rows = self.query("SELECT hash FROM entries WHERE origin = ? AND seq = ?", (origin, seq))
        return rows[0][0] if rows else None

    def iter_all(self, origin: str | None = None) -> Iterator[SignedEntry]:
        sql = "SELECT origin, seq, raw, sig, hash, type FROM entries"
        params: tuple[Any, ...] = ()
        if origin is not None:
            sql += " WHERE origin = ?"
            params = (origin,)
        for o, seq, raw, sig, h, kind in self.conn.execute(sql + " ORDER BY origin, seq", params):
            yield SignedEntry(raw, sig, h, o, seq, kind)

    def insert(
        self, entries: Sequence[SignedEntry], received_at: str, *, whole: bool = True
    ) -> None:
        """Append verified entries of one origin and run the extensions.

        Call inside `transaction()`. With `whole` the caller has proved they extend the
        origin's head (a log this node holds whole); without it they are single entries of
        a log held in part (what flowed down), each checked on its own, and no head moves.
        Entries are parsed again only for the extensions that want them: keeping every
        parsed body of a batch alive costs more (garbage collection) than parsing twice.
        """
        if not entries:
            return
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
        parsed: dict[int, Any] = {}
        for ext in self._eager:
            self._apply(ext, entries, parsed)
        if self._projected is not None:  # this transaction projects inline (not deferring)
            for ext in self._lazy:
                self._apply(ext, entries, parsed)
            self._projected = self.conn.last_insert_rowid()
            self._moved = True

    # --- forks ---------------------------------------------------------------------------

    def record_fork(self, origin: str, seq: int, held: bytes, other: SignedEntry, at: str) -> None:
        self.execute(
            "INSERT OR IGNORE INTO forks (origin, seq, held_hash, other_hash, other_raw, "
            "other_sig, detected_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (origin, seq, held, other.hash, other.raw, other.sig, at),
        )

    def frozen(self) -> set[str]:
        return {r[0] for r in self.query("SELECT DISTINCT origin FROM forks WHERE resolved = 0")}

    def forks(self) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT origin, seq, held_hash, other_hash, detected_at, resolved FROM forks "
            "ORDER BY origin, seq"
        )
        return [
            {
                "origin": o,
                "seq": s,
                "held_hash": h.hex(),
                "other_hash": x.hex(),
                "detected_at": d,
                "resolved": bool(r),
            }
            for o, s, h, x, d, r in rows
        ]

    # --- meta ----------------------------------------------------------------------------

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else default

    def set_meta(self, key: str, value: str) -> None:
        self.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) "
            "DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def delete_meta(self, key: str) -> None:
        """Forget a setting (e.g. "restoring" once a restore has caught up)."""
        self.execute("DELETE FROM meta WHERE key = ?", (key,))


i18n.register(
    {
        "store.full": (
            "The disk is full: nothing was written. Free some space and try again.",
            "磁盘已满：未写入任何内容。请清理空间后重试。",
        ),
        "store.constraint": (
            "The database refused the change: {detail}",
            "数据库拒绝了此修改：{detail}",
        ),
        "store.busy": (
            "The database is busy (another zhibao is writing); try again.",
            "数据库正忙（另一个 zhibao 进程在写入），请重试。",
        ),
        "store.failed": ("Database error: {detail}", "数据库错误：{detail}"),
    }
)
