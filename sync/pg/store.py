"""The log core of a city's store on PostgreSQL: one psycopg connection, the log tables of
sync.schema migrated on open, and the same reads and appends as sync.store.Store.

Invariants (the database holds them, whatever process writes: see sync.pg.schema):
- entries are append-only, one per (origin, seq), each origin's 1 … head without a gap,
  each chained to the one before by its `prev`; `heads` moves with them, in the same
  statement, under the head's row lock.
- `insert` appends a batch with one COPY; a batch that loses a race to another writer (the
  seq is taken, the head moved) fails whole with StoreError `store.pg_taken` or
  `store.pg_gap`, and the transaction applies nothing: read the head again and resend.
- Every write is one `with store.transaction():` (nested: a savepoint).

Not yet here (docs/postgresql.md): the projections (extensions) the tiers keep, quarantine
by the authority rules, logs held in part (a city holds every log whole), fork switches.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from sync.pg import replica, schema
from sync.protocol import i18n
from sync.protocol.entry import SignedEntry
from sync.protocol.errors import DiskFullError, StoreError

CONNECT_TIMEOUT_S = 10
LOCK_TIMEOUT = "10s"  # as sync.store's busy timeout: a writer waits this long for a head
_COPY_ENTRIES = "COPY entries (origin, seq, hash, sig, raw, type, received_at) FROM STDIN"
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
    if code == "53100":  # disk_full
        return DiskFullError("store.full")
    if code in ("40001", "40P01", "55P03"):  # serialization, deadlock, lock not available
        return StoreError("store.busy")
    if isinstance(exc, psycopg.OperationalError):
        return StoreError("store.pg_unreachable", detail=str(exc).strip().splitlines()[0])
    if isinstance(exc, pg_errors.IntegrityError):
        return StoreError("store.constraint", detail=str(exc))
    return StoreError("store.failed", detail=str(exc))


class PgStore:
    """A city's log on PostgreSQL. Owns its connection; close it (or use `with`)."""

    def __init__(self, url: str, *, owner: str | None = None) -> None:
        self.url = url
        self.owner = owner
        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            raise translate(exc) from exc
        try:
            self.conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
            schema.migrate(self.conn)
        except BaseException as exc:
            self.conn.close()
            if isinstance(exc, psycopg.Error):
                raise translate(exc) from exc
            raise

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> PgStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic write; nested use joins the outer one (a savepoint)."""
        try:
            with self.conn.transaction():
                yield
        except psycopg.Error as exc:
            raise translate(exc) from exc

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads that all see one state of the database, even while another process writes."""
        try:
            with self.conn.transaction():
                self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                yield
        except psycopg.Error as exc:
            raise translate(exc) from exc

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of `sql` (PostgreSQL's `%s` placeholders)."""
        try:
            return self.conn.execute(sql, params or None).fetchall()
        except psycopg.Error as exc:
            raise translate(exc) from exc

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> None:
        try:
            self.conn.execute(sql, params or None)
        except psycopg.Error as exc:
            raise translate(exc) from exc

    # --- heads and entries -------------------------------------------------------------

    def head(self, origin: str) -> tuple[int, bytes | None]:
        rows = self.query("SELECT seq, hash FROM heads WHERE origin = %s", (origin,))
        return (rows[0][0], rows[0][1]) if rows else (0, None)

    def heads(self) -> dict[str, tuple[int, bytes]]:
        return {o: (s, h) for o, s, h in self.query("SELECT origin, seq, hash FROM heads")}

    def max_seqs(self) -> dict[str, int]:
        """Highest seq held per origin (the pull cursors): every log is held whole here and
        the database keeps it 1 … head, so the heads table answers without a scan."""
        return {o: s for o, s in self.query("SELECT origin, seq FROM heads")}

    def entry(self, origin: str, seq: int) -> SignedEntry | None:
        rows = self.query(
            "SELECT raw, sig, hash, type FROM entries WHERE origin = %s AND seq = %s",
            (origin, seq),
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
            "SELECT seq, raw, sig, hash, type FROM entries WHERE origin = %s AND seq > %s "
            "AND seq <= %s ORDER BY seq LIMIT %s",
            (origin, after, top, None if limit < 0 else limit),
        )
        return [SignedEntry(raw, sig, h, origin, seq, kind) for seq, raw, sig, h, kind in rows]

    def hash_at(self, origin: str, seq: int) -> bytes | None:
        rows = self.query("SELECT hash FROM entries WHERE origin = %s AND seq = %s", (origin, seq))
        return rows[0][0] if rows else None

    def iter_all(self, origin: str | None = None, chunk: int = 2000) -> Iterator[SignedEntry]:
        """Every entry (of `origin`), by origin and seq, read `chunk` rows at a time on a
        server-side cursor (inside a transaction of its own unless one is open)."""
        sql = "SELECT origin, seq, raw, sig, hash, type FROM entries"
        params: tuple[Any, ...] = ()
        if origin is not None:
            sql += " WHERE origin = %s"
            params = (origin,)
        try:
            with self.conn.transaction(), self.conn.cursor(name="iter_all") as cur:
                cur.itersize = chunk
                cur.execute(sql + " ORDER BY origin, seq", params)
                for o, seq, raw, sig, h, kind in cur:
                    yield SignedEntry(raw, sig, h, o, seq, kind)
        except psycopg.Error as exc:
            raise translate(exc) from exc

    def insert(
        self, entries: Sequence[SignedEntry], received_at: str, *, whole: bool = True
    ) -> None:
        """Append verified entries of one or more origins, each run extending its head.

        Call inside `transaction()`. One COPY: the statement trigger checks every run
        against its locked head (sync.pg.schema) and moves the heads. A log held in part
        (`whole=False`) has no place here yet: the city holds every log whole."""
        if not entries:
            return
        if not whole:
            raise StoreError("store.pg_whole_only", origin=entries[0].origin)
        try:
            with self.conn.cursor() as cur, cur.copy(_COPY_ENTRIES) as copy:
                for e in entries:
                    copy.write_row((e.origin, e.seq, e.hash, e.sig, e.raw, e.type, received_at))
        except psycopg.Error as exc:
            raise translate(exc) from exc

    # --- forks ---------------------------------------------------------------------------

    def record_fork(self, origin: str, seq: int, held: bytes, other: SignedEntry, at: str) -> None:
        self.execute(
            "INSERT INTO forks (origin, seq, held_hash, other_hash, other_raw, other_sig, "
            "detected_at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (origin, seq, held, other.hash, other.raw, other.sig, at),
        )

    def frozen(self) -> set[str]:
        return {r[0] for r in self.query("SELECT DISTINCT origin FROM forks WHERE NOT resolved")}

    # --- meta, quarantine, signatures checked here ---------------------------------------

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key = %s", (key,))
        return rows[0][0] if rows else default

    def set_meta(self, key: str, value: str) -> None:
        self.execute(
            "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) "
            "DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def delete_meta(self, key: str) -> None:
        self.execute("DELETE FROM meta WHERE key = %s", (key,))

    def mark_signed(self, origin: str, seq: int) -> None:
        self.execute(
            "INSERT INTO signed_tips (origin, seq) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (origin, seq),
        )

    def signed_seqs(self, origin: str, after: int, through: int) -> list[int]:
        rows = self.query(
            "SELECT seq FROM signed_tips WHERE origin = %s AND seq > %s AND seq <= %s ORDER BY seq",
            (origin, after, through),
        )
        return [r[0] for r in rows]

    def last_signed(self, origin: str) -> int:
        rows = self.query("SELECT max(seq) FROM signed_tips WHERE origin = %s", (origin,))
        return rows[0][0] or 0


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
        "store.pg_unreachable": (
            "The PostgreSQL database could not be reached: {detail}",
            "无法连接 PostgreSQL 数据库：{detail}",
        ),
    }
)
