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
- `signed_tips` names the entries whose own signature was checked here (the last entry of
  every run ingest accepted); each vouches for every entry of its origin below it through
  the hash chain, so a relay cuts its batches there (sync.proofs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import apsw

from sync._projecting import (
    PROJECT_CHUNK,  # noqa: F401  (re-exported: the store's public constants)
    PROJECTED,
    UNPROJECTED_SQL,  # noqa: F401
    UNUSABLE,
    Extension,
    Projecting,
    about_the_store,
    why,
)
from sync.protocol import i18n
from sync.protocol.entry import SignedEntry
from sync.protocol.errors import DiskFullError, StoreError

BUSY_TIMEOUT_MS = 10_000
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
    return StoreError("store.failed", detail=str(exc))


class Store(Projecting):
    """A node's database. Owns its connection; close it (or use `with`)."""

    def __init__(
        self, path: str | Path, *, extensions: Sequence[Extension] = (), owner: str | None = None
    ) -> None:
        self.path = str(path)
        self.owner = owner  # this node's id: what the authority rules judge from
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
        # the types some extension asks for by name: only those are judged (sync.authority)
        self._named: frozenset[str] = frozenset().union(
            *(ext.types for ext in self.extensions if ext.types is not None)
        )
        eager = [ext.types for ext in self._eager]  # what some eager one wants (None: all)
        self._eager_types: frozenset[str] | None = (
            None if None in eager else frozenset().union(*(t for t in eager if t is not None))
        )
        self.deferring = False  # see defer_projections
        self._depth = 0
        self._projected: int | None = None  # the cursor, while a transaction projects inline
        self._moved = False  # entries were projected inline since the cursor was written
        self._pending = False  # entries inserted in this transaction wait for `_finish`

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
                            self._pending = False
                if outer:
                    self.conn.execute("COMMIT")
            except BaseException:
                if outer:  # what the extensions noted of the writes rolled back goes too
                    self._discard(self.extensions)
                if outer and not self.conn.get_autocommit():
                    with contextlib.suppress(apsw.Error):
                        self.conn.execute("ROLLBACK")
                raise
        except apsw.Error as exc:
            raise _translate(exc) from exc

    def _finish(self) -> None:
        """End of the outermost transaction: flush what was applied, project what waits for
        it (entries ingest stored in this transaction), move the cursor."""
        for ext in self._eager:
            ext.flush(self)
        if self._projected is None:
            return
        if self._pending:
            self._catch_up_inline()
        elif self._moved:
            self._flush_inline()
            self.set_meta(PROJECTED, str(self._projected))
            self._moved = False

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
        self,
        entries: Sequence[SignedEntry],
        received_at: str,
        *,
        whole: bool = True,
        strict: bool = False,
    ) -> None:
        """Append verified entries of one origin and run the extensions.

        Call inside `transaction()`. With `whole` the caller has proved they extend the
        origin's head (a log this node holds whole); without it they are single entries of
        a log held in part (what flowed down), each checked on its own, and no head moves.
        `strict` (this node's own appends): an entry the authority rules or a projection
        refuse raises StoreError, so the whole transaction appends nothing; otherwise such
        an entry is quarantined (see module doc). Entries are parsed again only for the
        extensions that want them: keeping every parsed body of a batch alive costs more
        (garbage collection) than parsing twice.
        """
        if not entries:
            return
        if strict and self._pending:  # what ingest stored earlier in this transaction first
            self._catch_up_inline()
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
        if strict:
            self._insert_strict(entries, parsed)
            return
        eager = self._eager_types
        if eager is not None and not eager:
            return self._mark_pending()
        received = [received_at] * len(entries)
        wanted = [i for i, e in enumerate(entries) if eager is None or e.type in eager]
        for index in wanted:  # eager extensions see few entries: one at a time, each
            # judged after those before it took effect (the rules on keys count them)
            if not self._admit(entries, parsed, received, eager, only=index):
                continue
            try:
                with self.conn:
                    self._show(self._eager, entries, {index}, parsed, flush=False)
            except Exception as exc:
                if about_the_store(exc):
                    raise
                self.quarantine(entries[index], UNUSABLE, why(exc), received_at)
        return self._mark_pending()

    def _mark_pending(self) -> None:
        if self._projected is not None:  # this transaction projects: at its end, isolated
            self._pending = True

    # --- forks ---------------------------------------------------------------------------
    # A fork row is evidence (both entries are kept: the held one in `entries`, the other
    # here). `resolved` follows the decision in force for (origin, seq) (sync.forks): set
    # when this node holds the entry the decision keeps, so the origin unfreezes.

    def record_fork(self, origin: str, seq: int, held: bytes, other: SignedEntry, at: str) -> None:
        self.execute(
            "INSERT OR IGNORE INTO forks (origin, seq, held_hash, other_hash, other_raw, "
            "other_sig, detected_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (origin, seq, held, other.hash, other.raw, other.sig, at),
        )
        self.settle_fork(origin, seq)

    def frozen(self) -> set[str]:
        return {r[0] for r in self.query("SELECT DISTINCT origin FROM forks WHERE resolved = 0")}

    def fork_decision(self, origin: str, seq: int) -> dict[str, Any] | None:
        """The decision in force for (origin, seq): the highest author's (the city's over a
        town's), of those its latest; whatever order they arrived in. None if there is none."""
        rows = self.query(
            "SELECT author, author_seq, kept_hash, other_hash, reason, at FROM fork_decisions "
            "WHERE origin = ? AND seq = ? ORDER BY length(author), author_seq DESC LIMIT 1",
            (origin, seq),
        )
        if not rows:
            return None
        by, by_seq, kept, other, reason, at = rows[0]
        return {"by": by, "entry_seq": by_seq, "kept_hash": kept.hex(),
                "other_hash": other.hex(), "reason": reason, "at": at}  # fmt: skip

    def settle_fork(self, origin: str, seq: int) -> None:
        """Mark the forks at (origin, seq) resolved when the decision in force keeps the
        entry held here; unresolved otherwise (this node holds the entry it drops)."""
        decision = self.fork_decision(origin, seq)
        if decision is not None:
            self.execute(
                "UPDATE forks SET resolved = (held_hash = ?) WHERE origin = ? AND seq = ?",
                (bytes.fromhex(decision["kept_hash"]), origin, seq),
            )

    def forks(self) -> list[dict[str, Any]]:
        """Every fork held here, with what is known of both entries and the decision in
        force (None until there is one). `state`: `unresolved`, `resolved`, or
        `switch_needed` (decided for the entry this node does not hold)."""
        rows = self.query(
            "SELECT f.origin, f.seq, f.held_hash, f.other_hash, f.detected_at, f.resolved, "
            "e.type, json_extract(CAST(e.raw AS TEXT), '$.at'), "
            "json_extract(CAST(f.other_raw AS TEXT), '$.type'), "
            "json_extract(CAST(f.other_raw AS TEXT), '$.at') FROM forks f "
            "LEFT JOIN entries e ON e.origin = f.origin AND e.seq = f.seq AND e.hash = f.held_hash "
            "ORDER BY f.origin, f.seq, f.other_hash"
        )
        out = []
        for o, s, h, x, d, r, held_type, held_at, other_type, other_at in rows:
            decision = self.fork_decision(o, s)
            state = "resolved" if r else "unresolved" if decision is None else "switch_needed"
            out.append(
                {
                    "origin": o, "seq": s, "held_hash": h.hex(), "other_hash": x.hex(),
                    "held_type": held_type, "held_at": held_at,
                    "other_type": other_type, "other_at": other_at,
                    "detected_at": d, "resolved": bool(r), "state": state, "decision": decision,
                }
            )  # fmt: skip
        return out

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
        "store.io": (
            "The disk could not be read or written: {detail}",
            "磁盘读写失败：{detail}",
        ),

    }
)
