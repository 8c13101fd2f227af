"""The planner's statistics of a young city's tables, kept up between a catch-up's chunks.

PostgreSQL plans from statistics that ANALYZE gathers; autovacuum runs it once a table has
changed by a tenth since the last, but looks only once a minute (`autovacuum_naptime`). A
city that takes a flood of entries within that minute — its first pushes, a town's year of
backlog, `zhibao store migrate` — projects them on a guess: a table never analyzed is
taken for a small one whose every column holds 200 values. Then the count of a case's
events (tiers.cases.projection) read every row of `case_events`, in parallel on both cores,
at each chunk (94 of 94 in a 513 K hop), and a chunk's read of entries sorted all of them
to keep 8,000 (225 ms a chunk). So the catch-up, between two chunks, analyzes each of the
store's tables that has changed since its last ANALYZE by more rows than it then held
(or FEW, if more): a table's statistics are at most half its size behind, and a table
growing from nothing to N rows is analyzed about log2(N / FEW) times. Autovacuum goes on
doing the rest; a table it (or another front) is analyzing is skipped (SKIP_LOCKED), and a
role that owns no table analyzes none (ANALYZE only warns).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import psycopg
from psycopg.pq import TransactionStatus

if TYPE_CHECKING:
    from sync.pg.store import PgStore

LOOK_SECONDS = 1.0  # the most often a connection looks whether a table has grown
FEW = 10_000  # rows a table's plans may do without statistics for
GROWN = 4  # times the rows it held at its last ANALYZE a table is analyzed again at
_GROWN = (  # this schema's tables (partitions too; not their parent) grown past their stats
    "SELECT format('%%I', c.relname) FROM pg_class c WHERE c.relkind = 'r' "
    "AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) "
    "AND pg_stat_get_live_tuples(c.oid) > greatest(%s, %s * c.reltuples)"
)


def refresh(store: PgStore) -> None:
    """Between two chunks of a catch-up (outside any transaction): ANALYZE the tables that
    have grown past their statistics, if this connection has not looked for LOOK_SECONDS.
    A failure is left for the next statement to meet: statistics only speed plans up."""
    now = time.monotonic()
    if now - store.statistics_looked < LOOK_SECONDS:
        return
    conn = store.conn
    if conn.broken or conn.info.transaction_status != TransactionStatus.IDLE:
        return
    store.statistics_looked = now
    try:
        grown = [row[0] for row in conn.execute(_GROWN, (FEW, GROWN)).fetchall()]
        if grown:
            conn.execute(f"ANALYZE (SKIP_LOCKED) {', '.join(grown)}")
    except psycopg.Error:
        return
