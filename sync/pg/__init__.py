"""The city's store on PostgreSQL (issue #15): the log core so far.

    PgStore(url)        a connection to one database, migrated on open (sync.pg.schema)
    migrate(conn)       bring a psycopg connection's database to SCHEMA_VERSION

Needs the optional extra: `pip install zhibao[postgresql]` (psycopg 3). docs/postgresql.md
says what exists, why entries are partitioned by origin, and what is left.
"""

from __future__ import annotations

from sync.pg.schema import ENTRY_PARTITIONS, SCHEMA_VERSION, migrate
from sync.pg.store import PgStore, translate

__all__ = ["ENTRY_PARTITIONS", "SCHEMA_VERSION", "PgStore", "migrate", "translate"]
