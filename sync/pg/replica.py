"""A city's store on a streaming replica (a hot standby of its PostgreSQL database).

A standby replays the primary's WAL and refuses every write (SQLSTATE 25006,
read_only_sql_transaction), DDL included, so nothing is migrated there: opening a store on
it only checks that the primary's schema (replayed) is the one this zhibao knows. Statistics
and the desk may read from one (node.toml `store_replica`, tiers.reader); writing through
it is refused with StoreError `store.pg_read_only`.
"""

from __future__ import annotations

from typing import Any

from sync.protocol import i18n
from sync.protocol.errors import StoreError

READ_ONLY = "25006"  # read_only_sql_transaction: what a standby answers every write

i18n.register(
    {
        "store.pg_read_only": (
            "The database is a read-only replica: nothing can be written there (write to "
            "its primary).",
            "该数据库是只读副本：不能在其上写入（请写入主库）。",
        ),
        "store.pg_replica_behind": (
            "The replica's schema is version {version}, this zhibao's is {known}: migrate the "
            "primary (open it with this zhibao) and let the replica catch up.",
            "副本的数据库结构为第 {version} 版，本版本 zhibao 为第 {known} 版：请先迁移主库"
            "（用本版本打开它），待副本跟上。",
        ),
    }
)


def in_recovery(conn: Any) -> bool:
    """Whether psycopg connection `conn` is to a standby (a server in recovery)."""
    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    return bool(row and row[0])


def check_schema(conn: Any, known: int) -> None:
    """On a standby, instead of migrating: the replayed schema must be version `known`
    (newer: `store.pg_newer`, upgrade zhibao; older or none: `store.pg_replica_behind`)."""
    if conn.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
        held = 0
    else:
        held = int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
                   .fetchone()[0])  # fmt: skip
    if held > known:
        raise StoreError("store.pg_newer", version=held, known=known)
    if held < known:
        raise StoreError("store.pg_replica_behind", version=held, known=known)
