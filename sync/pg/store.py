"""A city's store on PostgreSQL: one psycopg connection, the log tables migrated on open
(sync.pg.schema), the projections' tables made from their SQLite DDL (sync.pg.dialect), and
everything else as sync.store.Store (sync.logstore: the same code, the same SQL).

Invariants (the database holds them, whatever process writes: see sync.pg.schema):
- entries are append-only, one per (origin, seq), each origin's 1 … head without a gap,
  each chained to the one before by its `prev`; `heads` moves with them, in the same
  statement, under the head's row lock.
- `insert` appends a batch with one COPY; a batch that loses a race to another writer (the
  seq is taken, the head moved) fails whole with StoreError `store.pg_taken` or
  `store.pg_gap`, and the transaction applies nothing: read the head again and resend.
- Every write is one `with store.transaction():` (nested: a savepoint), under an advisory
  lock: shared by fronts (`defer_projections`), which store pushes and project beside them
  up to a horizon no append in flight can still add below (sync.pg.beside), exclusive for
  every other writer (PgStore._begin).

Not here (docs/postgresql.md): logs held in part (a city holds every log whole).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus

from sync import _tables
from sync._projecting import Extension
from sync.logstore import LogStore
from sync.pg import beside, dialect, schema, statistics
from sync.pg.errors import translate
from sync.pg.held import send as send_held
from sync.protocol.entry import SignedEntry
from sync.protocol.errors import StoreError

T = TypeVar("T")
_OUTSIDE = (TransactionStatus.IDLE, TransactionStatus.UNKNOWN)  # no transaction open (UNKNOWN: cut)
CONNECT_TIMEOUT_S = 10
WRITE_LOCK = 0x7A68_6962_6177  # the advisory lock writers take (see PgStore._begin)
BATCH_ROWS = 5000  # writes a `batched` block holds before it sends them
LOCK_TIMEOUT = "10s"  # as sync.store's busy timeout: a writer waits this long for a head
_CURSORS = itertools.count(1)
# binary: bytes as they are, not hex for the server to decode (~1.2 µs of its CPU an entry)
_COLUMNS = "origin, seq, hash, sig, raw, type, received_at"
_TYPES = ("text", "int8", "bytea", "bytea", "bytea", "text", "text")
_COPY_ENTRIES = f"COPY entries ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"


class PgStore(LogStore):
    """A city's store on PostgreSQL. Owns its connection; close it (or use `with`)."""

    driver_errors = (psycopg.Error,)
    races = True
    written_by = "xmin::text"  # (kept by a freeze since PostgreSQL 9.4)

    def __init__(
        self,
        url: str,
        *,
        extensions: Sequence[Extension] = (),
        owner: str | None = None,
        passfile: str | Path | None = None,
    ) -> None:
        self.url = url
        self.path = url  # what caches key a store by (sync.store.Store's file path)
        options: dict[str, Any] = {"passfile": str(passfile)} if passfile else {}
        self._options = options  # what _reconnect and a second connection (`reader`) need
        try:
            self.conn = self.connect()
        except psycopg.Error as exc:
            raise translate(exc) from exc
        try:
            self.conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
            schema.check_collation(self.conn)
            schema.migrate(self.conn)
        except BaseException as exc:
            self.conn.close()
            if isinstance(exc, psycopg.Error):
                raise translate(exc) from exc
            raise
        self._dialect = dialect.Dialect(self._primary_key, self._column_types)
        self._savepoints = 0
        self._held: list[tuple[str, Any]] | None = None  # a `batched` block's writes, as given
        self._reads = 0  # `each` reads open in the read transaction one of them began
        self._exclusive = False  # the open transaction holds the write lock whole
        self.horizon = beside.Horizon(WRITE_LOCK)
        self.statistics_looked = -statistics.LOOK_SECONDS  # (sync.pg.statistics.refresh)
        self.analyzing: threading.Thread | None = None  # (sync.pg.statistics.refresh)
        self._setup(extensions, owner)
        try:
            _make_tables(self, extensions)
        except BaseException:
            self.conn.close()
            raise

    def connect(self) -> psycopg.Connection[Any]:
        """A new connection to this database (same URL and passfile), autocommitting."""
        return psycopg.connect(
            self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, **self._options
        )

    def close(self) -> None:
        if self.analyzing is not None:  # (its own connection: let it end before the database)
            self.analyzing.join()
        self.conn.close()

    def translate_error(self, exc: BaseException) -> StoreError:
        assert isinstance(exc, psycopg.Error)
        return translate(exc)

    def _primary_key(self, table: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary "
            "ORDER BY array_position(i.indkey, a.attnum)",
            (table,),
        ).fetchall()
        return [r[0] for r in rows]

    def _column_types(self, table: str) -> dict[str, str]:
        rows = self.conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (table,),
        ).fetchall()
        return dict(rows)

    # --- transactions --------------------------------------------------------------------

    # a front's catch-up, beside the other fronts' appends (sync.pg.beside)
    project_some = beside.project_some
    _between_chunks = statistics.refresh
    projected_read = beside.projected_read
    _hold_projections = beside.hold_projections

    def _begin(self, exclusive: bool) -> None:
        """BEGIN, then the write lock: exclusive for every writer but a deferring one (a
        front storing pushes or projecting them), which shares it with the other fronts.
        Every writer holds it before it takes its first id, so a front's projection,
        bounded by who holds it (sync.pg.beside), never steps over an entry committed
        later; under the exclusive lock no append is in flight at all."""
        self._alone(lambda: self.conn.execute("BEGIN"))
        self._exclusive = exclusive
        which = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        try:
            self.conn.execute(f"SELECT {which}({WRITE_LOCK})")
        except BaseException:  # (lock_timeout: a long catch-up holds it) the BEGIN must
            self._rollback()  # not stay open, aborted, under every later statement
            raise

    def _alone(self, run: Callable[[], T]) -> T:
        """`run()`, one statement outside any transaction (a BEGIN, a read), on a live
        connection: one the database or the network cut (a restart of PostgreSQL) is
        replaced first, or when `run` finds it cut, and `run` goes again once."""
        if self.conn.broken:  # (closed but not broken: this store was closed, stays so)
            self._reconnect()
        try:
            return run()
        except psycopg.OperationalError:
            if not self.conn.broken:
                raise
        self._reconnect()
        return run()

    def _reconnect(self) -> None:
        """A new connection in place of a cut one; only between transactions (`_alone`),
        so nothing of a transaction ever runs on the new connection outside it: a
        transaction that loses its connection fails (`store.pg_unreachable`) and its
        writer sends again. Raises that StoreError while the database cannot be reached."""
        try:
            conn = self.connect()
            conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        except psycopg.Error as exc:
            raise translate(exc) from exc
        self.conn.close()
        self.conn, self._savepoints = conn, 0
        self.horizon = beside.Horizon(WRITE_LOCK)  # (the database may be a restored one)

    def _commit(self) -> None:
        self._send_held()
        self.conn.execute("COMMIT")

    def _rollback(self) -> None:
        if self._held is not None:
            self._held.clear()
        with contextlib.suppress(psycopg.Error):
            self.conn.execute("ROLLBACK")

    @contextlib.contextmanager
    def _savepoint(self) -> Iterator[None]:
        if self.conn.info.transaction_status == TransactionStatus.IDLE:
            with self.transaction():
                yield
            return
        self._send_held()  # what was written before the savepoint is not undone with it
        self._savepoints += 1
        name = f"zb{self._savepoints}"
        try:
            self.conn.execute(f"SAVEPOINT {name}")
            try:
                yield
                self._send_held()
            except BaseException:
                if self._held is not None:
                    self._held.clear()  # written inside: undone with it
                self.conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                self.conn.execute(f"RELEASE SAVEPOINT {name}")
                raise
            self.conn.execute(f"RELEASE SAVEPOINT {name}")
        finally:
            self._savepoints -= 1

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads that all see one state of the database, even while another process writes."""
        try:
            self._alone(lambda: self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ"))
        except psycopg.Error as exc:
            raise translate(exc) from exc
        try:
            yield
        finally:
            self._rollback()

    def checkpoint(self) -> None:
        """Nothing to do: PostgreSQL checkpoints by itself."""

    def reader(self) -> _Reader:
        """A second connection to this database (same URL and passfile), read only, for
        another thread; it speaks the store's SQL (sync.pg.dialect) too."""
        try:
            conn = self.connect()
        except psycopg.Error as exc:
            raise translate(exc) from exc
        try:
            conn.execute("SET default_transaction_read_only = on")
        except psycopg.Error as exc:
            conn.close()
            raise translate(exc) from exc
        return _Reader(conn)

    # --- statements ----------------------------------------------------------------------

    def query(
        self, sql: str, params: Sequence[Any] | dict[str, Any] = (), *, binary: bool = False
    ) -> list[tuple[Any, ...]]:
        """Rows of `sql`, SQLite's SQL (sync.pg.dialect translates it); `binary`: in
        PostgreSQL's binary format (`entry_rows`)."""
        self._send_held()
        try:
            statement, values = self._dialect.translate(sql), dialect.params(params)
            # (a lambda, not a partial: after `_alone` reconnects it runs on the new connection)
            run = lambda: self.conn.execute(statement, values, binary=binary)  # noqa: E731
            outside = self._depth == 0 and self.conn.info.transaction_status in _OUTSIDE
            cur = self._alone(run) if outside else run()  # (outside: a read)
            return cur.fetchall() if cur.description is not None else []
        except psycopg.Error as exc:
            raise translate(exc) from exc

    def entry_rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """`query` in the binary format: a bytea goes as it is, not as the hex text the
        server writes and the client decodes (a catch-up's 513 K entries, 2026-12-04: the
        catch-up 24.0-24.4 s -> 23.4-23.7 s in process, bench/README.md)."""
        return self.query(sql, params, binary=True)

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> None:
        if self._held is not None:
            self._held.append((sql, params))
            if len(self._held) >= BATCH_ROWS:
                self._send_held()
            return
        try:
            self.conn.execute(self._dialect.translate(sql), dialect.params(params))
        except psycopg.Error as exc:
            raise translate(exc) from exc

    @contextlib.contextmanager
    def batched(self) -> Iterator[None]:
        """Writes (`execute`) inside the block are held and sent in runs of one statement
        with `executemany` — a long run of a plain INSERT as a COPY and one statement
        (`Dialect.bulk`) — all in one pipeline (one round trip, not one a statement or a run)
        — before any read (`query`), any savepoint, and the block's end; dropped when the
        block raises. A write's error therefore surfaces at the next read or at the end,
        inside the block: the block fails whole (a projection then goes entry by entry,
        each entry a block of its own, so the error still costs one entry)."""
        if self._held is not None:  # nested: the outer block sends them
            yield
            return
        self._held = []
        try:
            yield
            self._send_held()
        finally:
            self._held = None

    def _send_held(self) -> None:
        if not self._held:
            return
        held, self._held = self._held, []
        try:
            send_held(self.conn, self._dialect, held)
        except psycopg.Error as exc:
            raise translate(exc) from exc

    # --- heads and entries -------------------------------------------------------------

    def max_seqs(self) -> dict[str, int]:
        """Highest seq held per origin (the pull cursors): every log is held whole here and
        the database keeps it 1 … head, so the heads table answers without a scan."""
        return {o: s for o, s in self.query("SELECT origin, seq FROM heads")}

    def each(
        self, sql: str, params: Sequence[Any] = (), chunk: int = 2000
    ) -> Iterator[tuple[Any, ...]]:
        """The rows of `sql` (SQLite's SQL), `chunk` at a time on a server-side cursor,
        inside the transaction open, else in a read transaction of its own, which the
        reads opened meanwhile share and the last one to finish ends."""
        self._send_held()
        own = self.conn.info.transaction_status in _OUTSIDE or self._reads > 0
        try:
            if own and self._reads == 0:
                self._alone(lambda: self.conn.execute("BEGIN"))
            self._reads += own
            try:
                with self.conn.cursor(name=f"each{next(_CURSORS)}") as cur:  # one name a read
                    cur.itersize = chunk
                    cur.execute(self._dialect.translate(sql), dialect.params(params))
                    yield from cur
            finally:
                self._reads -= own
                if own and self._reads == 0:
                    self._rollback()  # it only read
        except psycopg.Error as exc:
            raise translate(exc) from exc

    def _append(self, entries: Sequence[SignedEntry], received_at: str, *, whole: bool) -> None:
        """One COPY: the statement trigger checks every run against its locked head
        (sync.pg.schema) and moves the heads. A log held in part (`whole=False`) has no
        place here: the city holds every log whole."""
        if not whole:
            raise StoreError("store.pg_whole_only", origin=entries[0].origin)
        try:
            with self.conn.cursor() as cur, cur.copy(_COPY_ENTRIES) as copy:
                copy.set_types(_TYPES)
                for e in entries:
                    row = (e.origin, e.seq, e.hash, e.sig, e.raw, e.type, received_at)
                    try:
                        copy.write_row(row)
                    except (TypeError, ValueError, OverflowError) as exc:  # not its column's type
                        raise StoreError("store.failed", origin=e.origin, seq=e.seq,
                                         detail=str(exc)) from exc  # fmt: skip
        except psycopg.Error as exc:
            raise translate(exc) from exc

    def drop_branch(self, origin: str, seq: int) -> None:
        """Inside a fork switch's transaction (sync.fork_switch): the entries of `origin`
        from `seq` on leave the log. The database lets them go only for this statement's
        `zhibao.switch` and a fork decision it holds at (origin, seq), moves the head back
        itself, and refuses a branch left in part (sync.pg.schema, migration 2)."""
        self._hold_projections()  # no front projects the branch as it goes
        self.query("SELECT seq FROM heads WHERE origin = ? FOR UPDATE", (origin,))
        self.query("SELECT set_config('zhibao.switch', ?, true)", (f"{origin}:{seq}",))
        self.execute("DELETE FROM entries WHERE origin = ? AND seq >= ?", (origin, seq))
        self.query("SELECT set_config('zhibao.switch', '', true)")

    def _last_id(self) -> int:
        row = self.conn.execute("SELECT currval('entries_id_seq')").fetchone()
        return int(row[0]) if row else 0

    def _script(self, ddl: str) -> None:
        """An extension's SQLite DDL, translated, as one script (no parameters: several
        statements in one go)."""
        try:
            self.conn.execute(dialect.ddl(ddl).encode())
        except psycopg.Error as exc:
            raise translate(exc) from exc


def _make_tables(store: PgStore, extensions: Sequence[Extension]) -> None:
    """The extensions' tables at their versions (sync._tables: DDL only when a version or
    the DDL changed, not at every open — CREATE INDEX … IF NOT EXISTS takes a share lock on
    its table before it finds the index there, which waited for every front writing to it).
    A standby (a replica's reader) only refuses tables newer than this code."""
    if not extensions:
        return  # a reader (`log verify`'s, a replica's): nothing to make
    standby = store.conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    _tables.make(store, extensions, check_only=standby)


class _Reader:
    """A read-only connection to a PgStore's database (`PgStore.reader`)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self._dialect = dialect.Dialect(lambda table: [])  # reads: no INSERT OR REPLACE

    def query(
        self, sql: str, params: Sequence[Any] = (), *, binary: bool = False
    ) -> list[tuple[Any, ...]]:
        try:
            statement = self._dialect.translate(sql)
            cur = self.conn.execute(statement, dialect.params(params), binary=binary)
            return cur.fetchall() if cur.description is not None else []
        except psycopg.Error as exc:
            raise translate(exc) from exc

    def entry_rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.query(sql, params, binary=True)  # (as PgStore.entry_rows)

    def close(self) -> None:
        self.conn.close()
