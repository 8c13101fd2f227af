"""What a node's store is, whichever engine keeps it: the log's reads and appends, forks,
meta, and the transaction every write is one of (see sync.store for the invariants).

`LogStore` is written once, in SQLite's SQL; an engine subclasses it with its connection:
sync.store.Store (SQLite, every node's default) and sync.pg.PgStore (PostgreSQL, a city's
choice), whose `query` speaks the same SQL through sync.pg.dialect. An engine provides:

    query, execute           run one statement (SQLite's SQL, `?` placeholders)
    _begin(exclusive)        open the outermost transaction: `exclusive` (every writer but a
                             deferring one) keeps any other writer out until it ends
    _commit, _rollback       end it
    _savepoint()             a nested transaction: rolls back alone when its block raises
    _append(entries, …)      add the rows of a verified batch (and move the head if whole)
    _last_id()               entries.id of the last entry this connection appended
    max_seqs, iter_all, snapshot, checkpoint, close
    reader()                 another connection to the database, read only, for another
                             thread (`log verify`'s workers): `query` as the store's
    drop_branch(origin, seq) a fork switch's delete: the entries of `origin` from `seq` on
                             leave the log, a whole log's head goes back to seq - 1
    _script(ddl)             an extension's SQLite DDL, several statements, run as one
                             script (PostgreSQL: translated, sync.pg.dialect.ddl)
    driver_errors, translate_error    the driver's exceptions, and the project's for each
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from sync._projecting import PROJECTED, UNUSABLE, Extension, Projecting, about_the_store, why
from sync.protocol import i18n
from sync.protocol.entry import SignedEntry
from sync.protocol.errors import StoreError

if TYPE_CHECKING:
    from sync.store import Store


class Reader(Protocol):
    """A read-only connection to a store's database (`LogStore.reader`), or the store."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def entry_rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """`query`, for rows holding entries' bytes (raw, sig, hash): on PostgreSQL read in
        its binary format, the bytes as they are, not as hex (sync.pg.store). Only for
        columns of bytea, integers and text: a type psycopg reads no binary of (xid,
        regclass …) would come back as bytes — cast it to text."""
        ...


class ClosingReader(Reader, Protocol):
    """A connection of its own (`LogStore.reader`): close it when done."""

    def close(self) -> None: ...


class LogStore(Projecting):
    """The engine-neutral half of a node's database (see the module doc)."""

    driver_errors: tuple[type[BaseException], ...] = ()
    # whether another process may append to the same log at the same moment and win (two
    # fronts on one PostgreSQL database); SQLite makes a writer wait for the database instead
    races = False
    # SQL naming, for each entry, the transaction that stored it — where ids of two
    # transactions may interleave (fronts appending at once); NULL where they cannot
    written_by = "NULL"
    path: str  # what names the database (a file, a URL): caches key a store by it

    def _setup(self, extensions: Sequence[Extension], owner: str | None) -> None:
        self.owner = owner  # this node's id: what the authority rules judge from
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

    # --- what an engine provides ---------------------------------------------------------

    def translate_error(self, exc: BaseException) -> StoreError:
        raise NotImplementedError

    def _begin(self, exclusive: bool) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        raise NotImplementedError

    def _savepoint(self) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def _append(self, entries: Sequence[SignedEntry], received_at: str, *, whole: bool) -> None:
        raise NotImplementedError

    def batched(self) -> contextlib.AbstractContextManager[None]:
        """A block whose writes may reach the database late, grouped (an engine whose every
        statement is a round trip sends runs of one statement together); any read in it
        sees them, and they are sent before it ends. Open it inside a savepoint: when the
        block raises, its writes are undone with the savepoint (or never sent). A write's
        error may surface at a later statement of the block. SQLite's statements are calls
        in process: nothing to group."""
        return contextlib.nullcontext()

    def max_seqs(self) -> dict[str, int]:
        raise NotImplementedError

    def each(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """The rows of a read, a few thousand at a time (never the whole table in memory:
        a city's case events run to millions)."""
        raise NotImplementedError

    def iter_all(self, origin: str | None = None) -> Iterator[SignedEntry]:
        """Every entry (of `origin`), by origin and seq, streamed (`each`)."""
        sql, params = _entries_of(origin)
        for o, seq, raw, sig, h, kind in self.each(sql + " ORDER BY origin, seq", params):
            yield SignedEntry(raw, sig, h, o, seq, kind)

    def last_entries(self, limit: int, origin: str | None = None) -> list[SignedEntry]:
        """The last `limit` entries of `iter_all`'s order (of `origin`), in that order: read
        from the end of the (origin, seq) index, not the whole log (a city's runs to
        millions)."""
        sql, params = _entries_of(origin)
        rows = self.entry_rows(sql + " ORDER BY origin DESC, seq DESC LIMIT ?", (*params, limit))
        return [SignedEntry(raw, sig, h, o, seq, kind) for o, seq, raw, sig, h, kind in rows[::-1]]

    def snapshot(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def checkpoint(self) -> None:
        raise NotImplementedError

    def reader(self) -> ClosingReader:
        raise NotImplementedError

    def drop_branch(self, origin: str, seq: int) -> None:
        raise NotImplementedError

    def _script(self, ddl: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> LogStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transactions --------------------------------------------------------------------

    def defer_projections(self) -> None:
        """From now on, store entries without projecting them; `catch_up` projects them."""
        self.deferring = True

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """One atomic write; nested use joins the outer transaction (a savepoint).

        The outermost takes the write lock at once (BEGIN IMMEDIATE), so nothing it reads
        (a head, a case's state, the projection cursor) can change before it writes; unless
        this connection defers projections, it first brings them up to date.
        """
        return self._write(
            catch_up=bool(self._lazy) and not self.deferring, exclusive=not self.deferring
        )

    @property
    def in_transaction(self) -> bool:
        """Whether a `transaction()` of this connection is open."""
        return self._depth > 0

    @contextlib.contextmanager
    def projected_read(self) -> Iterator[dict[str, int] | None]:
        """A read of what concerns a node (sync.relevance): yields, per origin, the first
        seq it must stop before, so that it never passes over one the projections have not
        seen — None where no entry is read unprojected (the read catches them up under the
        lock whole); a store whose fronts project beside their appends says (sync.pg), and
        fails the read (`store.busy`) if the projections were made anew meanwhile."""
        yield None

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """A write transaction that keeps every other writer out even on a deferring store
        (PostgreSQL: the exclusive lock, not the fronts' shared one) — for work that must
        see the projections whole (materials asked for, catching them up first; a
        migration) — without catching them up first."""
        return self._write(catch_up=False)

    @contextlib.contextmanager
    def _write(self, *, catch_up: bool, exclusive: bool = True) -> Iterator[None]:
        outer = self._depth == 0
        try:
            if outer:
                self._begin(exclusive)
            try:
                with self._savepoint():
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
                    self._commit()
            except BaseException:
                if outer:  # what the extensions noted of the writes rolled back goes too
                    self._discard(self.extensions)
                    self._rollback()
                raise
        except self.driver_errors as exc:
            raise self.translate_error(exc) from exc

    def _finish(self) -> None:
        """End of the outermost transaction: flush what was applied, project what waits for
        it (entries ingest stored in this transaction), move the cursor."""
        for ext in self._eager:
            ext.flush(cast("Store", self))
        if self._projected is None:
            return
        if self._pending:
            self._catch_up_inline()
        elif self._moved:
            self._flush_inline()
            self.set_meta(PROJECTED, str(self._projected))
            self._moved = False

    # --- heads and entries -------------------------------------------------------------

    def head(self, origin: str) -> tuple[int, bytes | None]:
        rows = self.query("SELECT seq, hash FROM heads WHERE origin = ?", (origin,))
        return (rows[0][0], rows[0][1]) if rows else (0, None)

    def heads(self) -> dict[str, tuple[int, bytes]]:
        return {o: (s, h) for o, s, h in self.query("SELECT origin, seq, hash FROM heads")}

    def entry_rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """`Reader.entry_rows`: `query`'s rows, where no engine reads bytes otherwise."""
        return self.query(sql, params)

    def entry(self, origin: str, seq: int) -> SignedEntry | None:
        rows = self.entry_rows(
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
        rows = self.entry_rows(
            "SELECT seq, raw, sig, hash, type FROM entries WHERE origin = ? AND seq > ? "
            "AND seq <= ? ORDER BY seq LIMIT ?",
            (origin, after, top, limit),
        )
        return [SignedEntry(raw, sig, h, origin, seq, kind) for seq, raw, sig, h, kind in rows]

    def hash_at(self, origin: str, seq: int) -> bytes | None:
        rows = self.query("SELECT hash FROM entries WHERE origin = ? AND seq = ?", (origin, seq))
        return rows[0][0] if rows else None

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
        self._append(entries, received_at, whole=whole)
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
                with self._savepoint():
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
                "UPDATE forks SET resolved = CASE WHEN held_hash = ? THEN 1 ELSE 0 END "
                "WHERE origin = ? AND seq = ?",
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
        "store.schema": (
            "The database lacks a table, column or key this zhibao uses ({detail}); this step "
            "wrote nothing. If it was changed by hand, restore it from a backup "
            "(docs/operator.md); if not, report it.",
            "数据库缺少本 zhibao 使用的表、列或键（{detail}）；此步未写入任何内容。如系手动改动，"
            "请从备份恢复（见 docs/operator.md）；否则请报告此问题。",
        ),
    }
)


def _entries_of(origin: str | None) -> tuple[str, tuple[Any, ...]]:
    """`iter_all`'s read, unordered: every entry, or `origin`'s."""
    sql = "SELECT origin, seq, raw, sig, hash, type FROM entries"
    return (sql, ()) if origin is None else (sql + " WHERE origin = ?", (origin,))
