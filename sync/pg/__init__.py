"""The city's store on PostgreSQL (issue #15): the log core so far.

    PgStore(url)        a connection to one database, migrated on open (sync.pg.schema)
    migrate(conn)       bring a psycopg connection's database to SCHEMA_VERSION

Needs the optional extra: `pip install 'zhibao[postgresql]'` (psycopg 3); without it,
importing this package raises StoreError `store.pg_driver_missing`, which says so.
docs/postgresql.md says what exists, why entries are partitioned by origin, what is left.
"""

from __future__ import annotations

from sync.protocol import i18n
from sync.protocol.errors import StoreError

i18n.register(
    {
        "store.pg_driver_missing": (
            "The PostgreSQL driver is not installed: pip install 'zhibao[postgresql]'.",
            "未安装 PostgreSQL 驱动：请执行 pip install 'zhibao[postgresql]'。",
        ),
    }
)

try:
    import psycopg  # noqa: F401
except ImportError as exc:  # the optional extra is not installed
    raise StoreError("store.pg_driver_missing") from exc

from sync.pg.errors import translate  # noqa: E402
from sync.pg.schema import ENTRY_PARTITIONS, SCHEMA_VERSION, migrate  # noqa: E402
from sync.pg.store import PgStore  # noqa: E402

__all__ = ["ENTRY_PARTITIONS", "SCHEMA_VERSION", "PgStore", "migrate", "translate"]
