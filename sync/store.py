"""The log store: one apsw connection on a node's SQLite file (or ":memory:").

Invariants:
- Entries are append-only twice over: no update/delete in this API, and triggers abort
  any UPDATE or DELETE on `entries`.
- Every write is one `with self.transaction():` — a batch applies whole or not at all.
- `synchronous=FULL` with WAL: a transaction that returned is on disk, so a receipt
  (which is only written after commit) never acknowledges an entry a power cut can lose.
- Extensions (projections kept by the layers above) see each applied entry inside the same
  transaction, so a projection can never disagree with the log it was built from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import apsw

from sync.protocol import i18n
from sync.protocol.entry import SignedEntry
from sync.protocol.errors import DiskFullError, StoreError

BUSY_TIMEOUT_MS = 10_000

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
    """A projection kept by a layer above, updated in the transaction that applies entries."""

    ddl: str
    types: frozenset[str] | None  # entry types it wants; None for all

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
            self.conn.execute("PRAGMA foreign_keys=ON")
            with self.conn:
                self.conn.execute(_DDL)
                for ext in extensions:
                    self.conn.execute(ext.ddl)
        except apsw.Error as exc:
            raise _translate(exc) from exc
        self.extensions = list(extensions)
        self._depth = 0

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic write; nested use joins the outer transaction (a savepoint)."""
        try:
            with self.conn:
                self._depth += 1
                try:
                    yield
                    if self._depth == 1:
                        for ext in self.extensions:
                            ext.flush(self)
                finally:
                    self._depth -= 1
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
        """Highest seq held per origin, whole or in part (the pull cursors)."""
        return {o: s for o, s in self.query("SELECT origin, MAX(seq) FROM entries GROUP BY origin")}

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
        self,
        entries: Sequence[SignedEntry],
        parsed: Sequence[dict[str, Any]],
        received_at: str,
        *,
        whole: bool = True,
    ) -> None:
        """Append verified entries of one origin and run the extensions.

        Call inside `transaction()`. With `whole` the caller has proved they extend the
        origin's head (a log this node holds whole); without it they are single entries of
        a log held in part (what flowed down), each checked on its own, and no head moves.
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
        for ext in self.extensions:
            wanted = ext.types
            for entry, fields in zip(entries, parsed, strict=True):
                if wanted is None or entry.type in wanted:
                    ext.apply(self, entry, fields)

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
