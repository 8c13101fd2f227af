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
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from sync import _tables
from sync._projecting import Extension
from sync.logstore import LogStore
from sync.pg import beside, dialect, replica, schema, statistics
from sync.pg.held import send as send_held
from sync.protocol import i18n
from sync.protocol.entry import SignedEntry
from sync.protocol.errors import DiskFullError, StoreError

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
# What says the connection is gone or cannot be had (no SQLSTATE: cut on the client's side;
# 08: connection; 57P: the server shutting down; 53300: too many connections) — the store
# failing (StoreError.FAILING). Other operational errors (54000: an index row too big,
# 53200: out of memory, 57014: a statement cancelled) may be an entry's doing: its fault.
_CUT = ("08", "57P", "53300")
_OWN_CODES = {  # the SQLSTATEs sync.pg.schema's triggers raise
    "ZB001": "store.pg_gap",
    "ZB002": "store.pg_chain",
    "ZB003": "store.pg_append_only",
    "ZB004": "store.pg_append_only",
}


def translate(exc: psycopg.Error) -> StoreError:
    """A psycopg error as the project's own (the key says what a person can do about it)."""
    code = getattr(exc, "sqlstate", None) or ""
    diag = getattr(exc, "diag", None)
    detail: dict[str, Any] = {}
    with contextlib.suppress(TypeError, ValueError):
        detail = json.loads(diag.message_detail or "") if diag is not None else {}
    if code in _OWN_CODES:
        return StoreError(_OWN_CODES[code], origin=detail.get("origin"), seq=detail.get("seq"),
                          detail=str(diag.message_primary if diag else exc))  # fmt: skip
    if isinstance(exc, pg_errors.UniqueViolation) and diag is not None:
        if diag.constraint_name and diag.constraint_name.startswith("entries_"):
            return StoreError("store.pg_taken", detail=diag.message_detail or "")
        return StoreError("store.constraint", detail=str(diag.message_primary))
    if code == replica.READ_ONLY:  # a standby (sync.pg.replica)
        return StoreError("store.pg_read_only")
    if code == "42501":  # insufficient_privilege: the operator's grants, not the data
        return StoreError("store.pg_denied", detail=(diag and diag.message_primary) or str(exc))
    if code in ("42P01", "42703") or (code == "42P10" and "ON CONFLICT" in str(exc)):
        # undefined table or column, or no key an upsert names: changed under zhibao
        return StoreError("store.schema", detail=(diag and diag.message_primary) or str(exc))
    if code == "53100":  # disk_full
        return DiskFullError("store.full")
    if code in ("40001", "40P01", "55P03"):  # serialization, deadlock, lock not available
        return StoreError("store.busy")
    if isinstance(exc, psycopg.OperationalError) and (not code or code.startswith(_CUT)):
        return StoreError("store.pg_unreachable", detail=str(exc).strip().splitlines()[0])
    if isinstance(exc, pg_errors.IntegrityError):
        return StoreError("store.constraint", detail=str(exc))
    return StoreError("store.failed", detail=str(exc))


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

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of `sql`, SQLite's SQL (sync.pg.dialect translates it)."""
        self._send_held()
        try:
            statement, values = self._dialect.translate(sql), dialect.params(params)
            if self._depth == 0 and self.conn.info.transaction_status in _OUTSIDE:
                cur = self._alone(lambda: self.conn.execute(statement, values))  # a read
            else:
                cur = self.conn.execute(statement, values)
            return cur.fetchall() if cur.description is not None else []
        except psycopg.Error as exc:
            raise translate(exc) from exc

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

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            cur = self.conn.execute(self._dialect.translate(sql), dialect.params(params))
            return cur.fetchall() if cur.description is not None else []
        except psycopg.Error as exc:
            raise translate(exc) from exc

    def close(self) -> None:
        self.conn.close()


i18n.register(
    {
        "store.pg_gap": (
            "The database refused entries of {origin}: they must go on from seq {seq} without "
            "a gap (another process may have appended first); nothing was written, send again.",
            "数据库拒绝了 {origin} 的条目：须从序号 {seq} 起连续追加（可能另一进程已先追加）；"
            "未写入任何内容，请重新发送。",
        ),
        "store.pg_chain": (
            "The database refused entry {seq} of {origin}: it does not extend the chain held "
            "here; nothing was written.",
            "数据库拒绝了 {origin} 的第 {seq} 条：它不接续此处所存的哈希链；未写入任何内容。",
        ),
        "store.pg_taken": (
            "The database already holds an entry at that seq ({detail}): another process "
            "appended first; nothing was written, send again.",
            "数据库在该序号已有条目（{detail}）：另一进程已先追加；未写入任何内容，请重新发送。",
        ),
        "store.pg_append_only": (
            "The log is append-only: the database refused to change or delete it.",
            "日志只可追加：数据库拒绝修改或删除。",
        ),
        "store.pg_whole_only": (
            "The PostgreSQL store holds whole logs only (the city's); {origin} was sent in part.",
            "PostgreSQL 存储只保存完整日志（市级）；{origin} 只送来了一部分。",
        ),
        "store.pg_newer": (
            "The database was upgraded by a newer zhibao (schema {version}; this one knows up "
            "to {known}): upgrade zhibao.",
            "数据库已由更新版本的 zhibao 升级（结构版本 {version}，本版本只支持到 {known}）："
            "请升级 zhibao。",
        ),
        "store.pg_collation": (
            "The database sorts text by the rules of {collation}; zhibao needs byte order: "
            "create it with LC_COLLATE 'C' (CREATE DATABASE … TEMPLATE template0 "
            "LC_COLLATE 'C' LC_CTYPE 'C').",
            "该数据库按 {collation} 的规则排序文本；zhibao 需要按字节排序：请以 LC_COLLATE 'C' "
            "创建数据库（CREATE DATABASE … TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'）。",
        ),
        "store.pg_unreachable": (
            "The PostgreSQL database could not be reached: {detail}",
            "无法连接 PostgreSQL 数据库：{detail}",
        ),
        "store.pg_denied": (
            "The PostgreSQL database refused this node's role: {detail}. Grant the role its "
            "rights on the city's tables (docs/operator.md); nothing was written.",
            "PostgreSQL 数据库拒绝了本节点使用的角色：{detail}。请为该角色授予市级数据表的权限"
            "（见 docs/operator.md）；未写入任何内容。",
        ),
    }
)
