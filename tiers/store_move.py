"""Moving a city's store from node.db to PostgreSQL (`zhibao store migrate`), and what
`zhibao store info` says of a node's store.

Nothing is lost, and a move that stops half-way is harmless:
- Refused before anything is written (here or in the target): a town or village (their
  store is node.db), a home already on PostgreSQL, a node.db another process has open (a
  running `serve`: see `holder`), a target that holds a log.
- node.db's write lock is held from the first row read to the switch: nothing is appended
  while the copy runs, and what is compared is what was copied.
- The target is marked (meta `migrating`) until the switch. A run that stopped (killed, the
  database gone) leaves the home on node.db, untouched, and the target marked; the next run
  refuses a marked target unless `--restart`, which drops what that run wrote. Only a marked
  database of this very node is ever dropped; a database holding a log that is not marked
  is refused, whatever the options.
- Entries go in `entries.id` order (the order the projections saw them), through
  `PgStore.insert`, in runs of one origin and one arrival time: the database's triggers
  check every run (no gap, each entry's hash its bytes', each chained to the one before).
- Local state (TABLES: `copied`) is copied row by row; the projections (`rebuilt`) are made
  again on PostgreSQL from the log, then compared with node.db's, table by table (tiers.
  store_check). A table this module does not know refuses the move.
- The switch comes only after the checks (entries, heads, quarantine, every rebuilt table,
  `log verify` on the target, month statistics): the password to `store.pgpass` (0600),
  `store` into node.toml, the target unmarked, node.db renamed `node.db.migrated-DATE` (kept,
  never deleted).
"""

from __future__ import annotations

import fcntl
import os
import struct
import tomllib
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sync import node_store, trust
from sync.pg import dialect
from sync.protocol import i18n
from sync.protocol.entry import SignedEntry
from sync.protocol.errors import StoreError
from sync.store import TABLES_KEY, Store
from tiers import store_check
from tiers.case_facts import MARK as FIGURES_MARK
from tiers.node import extensions, open_home
from tiers.store_check import MigrateError

MARK = "migrating"  # meta of the target while a move is under way
BATCH = 2000  # entries per transaction on the target
KEPT = "node.db.migrated-"
_DMS = 128  # SQLite's "dead man switch" byte of the -shm file (os_unix.c, UNIX_SHM_DMS)

# Every table of a city's node.db, and what the move does with it.
COPIED = (  # local state: not in the log, copied row by row
    "meta", "receipts", "nonces", "peers", "signed_tips", "forks", "quarantine",
    "fork_abandoned", "revoked_uses", "blobs", "blob_dropped", "blob_receipts",
    "blob_progress", "desk_users", "desk_sessions", "desk_access",
)  # fmt: skip
REBUILT = (  # projections of the log: made again on PostgreSQL, then compared
    "nodes", "node_keys", "revocations", "revoked_reports", "fork_decisions", "fork_reports",
    "blob_refs", "catalogue_sources", "catalogue", "calendar_overrides", "cases",
    "case_events", "case_facts", "case_gaps", "monthly_reports", "case_materials",
    "complaints", "complaint_events",
)  # fmt: skip
AS_HELD = (  # projections whose rows may not be what the log makes of them now: copied
    # after the rebuild, replacing what it made (clock_leads: rows written before 2026-12
    # weighed only the latest `at` of each flush, tiers.case_facts; a move changes no finding)
    "clock_leads",
)
# what a projection keeps to answer faster (tiers.figure_cells): made again where it is read
CACHES = ("figure_periods", "figure_cells")
LOG = ("entries", "heads")  # appended through PgStore.insert; heads follow (a trigger)
ENGINE = ("sqlite_sequence", "sqlite_stat1", "sqlite_stat4")  # SQLite's own bookkeeping
_NOT_COPIED_META = ("projected", MARK, FIGURES_MARK, node_store.STORE_NODE_ID)  # the target's

Progress = Callable[[int, int], None]


def holder(db: Path) -> int | None:
    """The process id of another process that has SQLite database `db` open, else None.

    In WAL mode (every node's), each connection holds a shared lock on one byte of the
    `-shm` file for as long as it is open (SQLite's os_unix.c: the DMS byte), so a running
    `serve`, or any other zhibao on the home, holds it. F_GETLK asks the kernel who holds a
    conflicting lock; this process's own locks never conflict with it."""
    try:
        fd = os.open(str(db) + "-shm", os.O_RDONLY)
    except FileNotFoundError:  # no connection open anywhere (the last one removes it)
        return None
    try:
        asked = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, _DMS, 1, 0)
        kind, _, _, _, pid = struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, asked))
    finally:
        os.close(fd)
    return None if kind == fcntl.F_UNLCK else int(pid)


def info(node: Any) -> dict[str, Any]:
    """`store info --json`: the engine, where it is, entries, origins, bytes on disk."""
    store = node.store
    entries = int(store.query("SELECT count(*) FROM entries")[0][0])
    origins = len(store.max_seqs())
    if node.config.store:
        size = int(store.query("SELECT pg_database_size(current_database())")[0][0])
        return {"engine": "postgresql", "location": node.config.store, "entries": entries,
                "origins": origins, "bytes": size}  # fmt: skip
    db = node.home / node_store.NODE_DB
    size = sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())
    return {"engine": "sqlite", "location": str(db), "entries": entries, "origins": origins,
            "bytes": size}  # fmt: skip


def unknown_tables(names: Sequence[str]) -> list[str]:
    """The tables of `names` this module does not account for (a move refuses them)."""
    known = {*COPIED, *REBUILT, *AS_HELD, *CACHES, *LOG, *ENGINE}
    return sorted(n for n in names if n not in known)


def migrate(
    home: Path,
    url: str,
    *,
    restart: bool = False,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Move the city at `home` to the PostgreSQL database `url` (see the module doc); what
    was moved and what was checked, as `store migrate --json` prints it."""
    clean, password = node_store.split_store_url(url)
    password = password or os.environ.get("PGPASSWORD") or None
    node = open_home(home)
    try:
        if node.config.tier != "city":
            raise MigrateError("store.migrate_city_only", tier=node.config.tier)
        if node.config.store:
            raise MigrateError("store.migrate_already", url=node.config.store)
        db = home / node_store.NODE_DB
        _refuse_held(db)
        _check_target(url, clean, node.node_id, restart=restart)
        sqlite = node.store
        assert isinstance(sqlite, Store)  # (node.toml names no other store: checked above)
        sqlite.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # node.db whole without its WAL
        with sqlite.transaction():  # node.db's write lock, held until the switch
            _refuse_held(db)
            tables = [r[0] for r in sqlite.query(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )]  # fmt: skip
            unknown = unknown_tables(tables)
            if unknown:
                raise MigrateError("store.migrate_unknown_table", tables=", ".join(unknown))
            from sync.pg import PgStore

            kept_by = node_store.base_extensions(extensions())
            target = PgStore(url, extensions=kept_by, owner=node.node_id)
            try:
                target.defer_projections()  # all of them at once, after the copy
                copied = _copy_state(sqlite, target, [t for t in COPIED if t in tables],
                                     node.node_id, when=(now or datetime.now(UTC)))  # fmt: skip
                # the root pinned at init (node.toml's, not the log's), as init pins it
                trust.pin_root(target, node.node_id, bytes.fromhex(node.config.root_key),
                               node.config.name)  # fmt: skip
                moved = _copy_entries(sqlite, target, progress)
                target.catch_up()
                with target.transaction():  # what the catch-up made of them gives way
                    copied |= _copy_tables(sqlite, target, [t for t in AS_HELD if t in tables],
                                           replace=True)  # fmt: skip
                checks = store_check.compare(
                    sqlite, target, [t for t in REBUILT if t in tables], node.clock.now().date(),
                    node.config.settings,
                )  # fmt: skip
                _refuse_held(db)
                kept = _switch(home, clean, password, target, now or datetime.now(UTC))
            finally:
                target.close()
    finally:
        node.close()
    _tidy(home / kept)
    return {
        "from": "sqlite", "to": clean, "kept": kept, "entries": moved,
        "origins": checks.pop("origins"), "copied": copied,
        "rebuilt": checks.pop("rebuilt"), "checks": checks,
    }  # fmt: skip


def _refuse_held(db: Path) -> None:
    pid = holder(db)
    if pid is not None:
        raise MigrateError("store.migrate_in_use", pid=pid, db=str(db))


# --- the target ------------------------------------------------------------------------


def _check_target(url: str, clean: str, node_id: str, *, restart: bool) -> None:
    """Refuse a target holding a log, unless it is this node's marked half-done move and
    `restart` (then drop what that move wrote). Read-only until then."""
    import psycopg

    from sync.pg import translate

    try:
        with psycopg.connect(url, connect_timeout=10, autocommit=True) as conn:
            held, owner, mark = _claimed(conn)
            if mark is not None and mark == node_id:
                if not restart:
                    raise MigrateError("store.migrate_half_done", url=clean)
                _drop_everything(conn)
                return
            if held or mark is not None or (owner is not None and owner != node_id):
                raise MigrateError("store.migrate_target_taken", url=clean, node_id=owner or "?")
    except psycopg.Error as exc:
        raise translate(exc) from exc


def _claimed(conn: Any) -> tuple[bool, str | None, str | None]:
    """(entries or heads held, meta's node id, meta's move mark) of a database."""

    def one(sql: str, *params: str) -> Any:
        row = conn.execute(sql, params or None).fetchone()
        return row[0] if row else None

    exists = {n: one("SELECT to_regclass(%s) IS NOT NULL", n) for n in ("entries", "heads", "meta")}
    held = any(
        exists[n] and one(f"SELECT EXISTS (SELECT 1 FROM {n})") for n in ("entries", "heads")
    )
    if not exists["meta"]:
        return bool(held), None, None
    owner = one("SELECT value FROM meta WHERE key = %s", node_store.STORE_NODE_ID)
    mark = one("SELECT value FROM meta WHERE key = %s", MARK)
    return bool(held), owner, mark.split(" ")[0] if mark else None


def _drop_everything(conn: Any) -> None:
    """Drop the tables and functions a half-done move made (in one transaction)."""
    with conn.transaction():
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename NOT IN (SELECT c.relname FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid)"
        )]  # fmt: skip
        for name in tables:
            conn.execute(f'DROP TABLE IF EXISTS "{name}" CASCADE')
        functions = [r[0] for r in conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n "
            "ON n.oid = p.pronamespace WHERE n.nspname = current_schema() "
            "AND p.proname LIKE 'zhibao\\_%'"
        )]  # fmt: skip
        for signature in functions:
            conn.execute(f"DROP FUNCTION IF EXISTS {signature} CASCADE")


# --- copying ---------------------------------------------------------------------------


def _copy_state(
    sqlite: Store, target: Any, tables: list[str], node_id: str, *, when: datetime
) -> dict[str, int]:
    """Mark the target, then copy every table of local state; rows per table."""
    with target.transaction():
        target.set_meta(MARK, f"{node_id} {when.isoformat(timespec='seconds')}")
        target.set_meta(node_store.STORE_NODE_ID, node_id)
        return _copy_tables(sqlite, target, tables)


def _copy_tables(
    sqlite: Store, target: Any, tables: list[str], *, replace: bool = False
) -> dict[str, int]:
    """Copy `tables` row by row (inside the caller's transaction); `replace`: what the
    target holds in them goes first. Rows per table."""
    copied: dict[str, int] = {}
    for table in tables:
        columns = [r[1] for r in sqlite.query(f'PRAGMA table_info("{table}")')]
        if not target.query("SELECT to_regclass(?) IS NOT NULL", (table,))[0][0]:
            _create_like(sqlite, target, table)
        elif replace:
            target.execute(f"DELETE FROM {table}")
        names, count = ", ".join(columns), 0
        with target.conn.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in sqlite.each(f'SELECT {names} FROM "{table}"'):  # streamed, not held
                if table != "meta" or not _not_copied(row[0]):
                    copy.write_row(row)
                    count += 1
        if "id" in columns:  # an identity column goes on after the rows copied
            _follow_identity(target, table)
        copied[table] = count
    return copied


def _not_copied(key: str) -> bool:
    """A meta key the target keeps its own of (its tables were made at this code's versions
    too)."""
    return key in _NOT_COPIED_META or key.startswith(TABLES_KEY)


def _follow_identity(target: Any, table: str) -> None:
    sequence = target.query("SELECT pg_get_serial_sequence(?, 'id')", (table,))[0][0]
    if sequence:
        target.query(
            f"SELECT setval(?, max(id)) FROM {table} HAVING max(id) IS NOT NULL", (sequence,)
        )


def _create_like(sqlite: Store, target: Any, table: str) -> None:
    """A table node.db has and the target's migrations do not make (the desk's, made on
    first use): made from node.db's own DDL, with its indexes."""
    for (sql,) in sqlite.query(
        "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL "
        "ORDER BY type = 'index', name",
        (table,),
    ):
        target.conn.execute(dialect.ddl(sql).encode())


def _copy_entries(sqlite: Store, target: Any, progress: Progress | None) -> int:
    """Every entry, in entries.id order, BATCH to a transaction; how many."""
    total = int(sqlite.query("SELECT count(*) FROM entries")[0][0])
    last, done = 0, 0
    while True:
        rows = sqlite.query(
            "SELECT id, origin, seq, hash, sig, raw, type, received_at FROM entries "
            "WHERE id > ? ORDER BY id LIMIT ?",
            (last, BATCH),
        )
        if not rows:
            return done
        with target.transaction():
            for received_at, run in _runs(rows):
                try:
                    target.insert(run, received_at)
                except StoreError as exc:
                    origin = exc.params.get("origin") or run[0].origin
                    seq = exc.params.get("seq") or run[0].seq
                    raise MigrateError("store.migrate_bad_entry", origin=origin, seq=seq,
                                       detail=str(exc)) from exc  # fmt: skip
        last = rows[-1][0]
        done += len(rows)
        if progress is not None:
            progress(done, total)


def _runs(rows: list[tuple[Any, ...]]) -> Iterator[tuple[str, list[SignedEntry]]]:
    """Consecutive rows of one origin and one arrival time, as (received_at, entries)."""
    run: list[SignedEntry] = []
    at = None
    for _, origin, seq, digest, sig, raw, kind, received_at in rows:
        if run and (origin != run[0].origin or received_at != at):
            yield str(at), run
            run = []
        at = received_at
        run.append(SignedEntry(_bytes(raw), _bytes(sig), _bytes(digest), origin, seq, kind))
    if run:
        yield str(at), run


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()  # edited behind our back


# --- the switch ------------------------------------------------------------------------


def _switch(home: Path, clean: str, password: str | None, target: Any, now: datetime) -> str:
    """Point the home at the target: passfile, node.toml, the target unmarked, node.db
    renamed (kept). Returns the name node.db was given."""
    import tomli_w

    passfile = home / node_store.PASSFILE
    passfile.unlink(missing_ok=True)  # a stale one (a SQLite home has no use for it)
    if password is not None:
        node_store.write_passfile(home, clean, password)
    path = home / "node.toml"
    config = tomllib.loads(path.read_text("utf-8"))
    config["store"] = clean
    temp = home / ".node.toml.migrate"
    temp.write_text(tomli_w.dumps(config), "utf-8")
    with temp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, path)
    with target.transaction():
        target.delete_meta(MARK)
    kept = KEPT + now.strftime("%Y-%m-%d")
    n = 1
    while (home / kept).exists():
        n += 1
        kept = f"{KEPT}{now.strftime('%Y-%m-%d')}.{n}"
    os.rename(home / node_store.NODE_DB, home / kept)
    fd = os.open(home, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return kept


def _tidy(kept: Path) -> None:
    """node.db was renamed while open, so SQLite left its -wal and -shm under the old name
    (it never checkpoints into a moved file): move them beside the kept file and let SQLite
    fold the WAL in (nothing is in it but what the move's own transaction wrote)."""
    import apsw

    old = kept.parent / node_store.NODE_DB
    for suffix in ("-wal", "-shm"):
        if Path(f"{old}{suffix}").exists():
            os.replace(f"{old}{suffix}", f"{kept}{suffix}")
    conn = apsw.Connection(str(kept))
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()  # the last connection: SQLite removes the -wal and -shm


i18n.register(
    {
        "store.migrate_city_only": (
            "Only a city's store moves to PostgreSQL; this node is a {tier}: its store stays "
            "node.db. Nothing was changed.",
            "只有市级节点的数据可迁移到 PostgreSQL；本节点不是市级节点，数据仍保存在 node.db。"
            "未做任何修改。",
        ),
        "store.migrate_already": (
            "This home's store is already on PostgreSQL ({url}). Nothing was changed.",
            "本节点的数据已在 PostgreSQL（{url}）。未做任何修改。",
        ),
        "store.migrate_in_use": (
            "node.db is open in another process (pid {pid}): stop `zhibao serve` and every "
            "other zhibao on this home, then move it. Nothing was changed.",
            "node.db 正被另一进程（pid {pid}）打开：请先停止 `zhibao serve` 及本节点的其他 "
            "zhibao 进程，再迁移。未做任何修改。",
        ),
        "store.migrate_target_taken": (
            "The database {url} already holds a zhibao log (node {node_id}): move into an empty "
            "database. Nothing was changed.",
            "数据库 {url} 已存有 zhibao 日志（节点 {node_id}）：请迁移到空数据库。未做任何修改。",
        ),
        "store.migrate_half_done": (
            "The database {url} holds a move of this node that stopped half-way: run again "
            "with --restart to drop it and start over. The home is still on node.db.",
            "数据库 {url} 中有本节点中途停止的迁移：请加 --restart 重新运行，"
            "将其清除后从头开始。本节点仍使用 node.db。",
        ),
        "store.migrate_unknown_table": (
            "node.db has tables this zhibao does not know how to move ({tables}): upgrade "
            "zhibao. Nothing was switched; the home stays on node.db.",
            "node.db 中有本版本不知如何迁移的表（{tables}）：请升级 zhibao。"
            "未切换；本节点仍使用 node.db。",
        ),
    }
)
