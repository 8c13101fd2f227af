"""The planner's statistics of a young city's tables, kept up beside a catch-up.

PostgreSQL plans from statistics that ANALYZE gathers; autovacuum runs it once a table has
changed by a tenth, but looks only once a minute (`autovacuum_naptime`). A city that takes
a flood of entries within that minute — its first pushes, a town's year of backlog,
`zhibao store migrate` — projects them on a guess: a table never analyzed is taken for a
small one whose every column holds 200 values. Then the count of a case's events
(tiers.cases.projection) read every row of `case_events`, in parallel on both cores, at
each chunk (94 of 94 in a 513 K hop), and a chunk's read of entries sorted all of them to
keep 8,000 (225 ms a chunk). So between two chunks of a catch-up (outside any transaction,
at most once LOOK_SECONDS) a front looks for the store's tables (a partition of `entries`
is one) holding more live rows than FEW and GROWN times what they held at their last
ANALYZE, and analyzes them on a connection of its own, in a thread, so that no request of
the front waits for it (hundreds of milliseconds at 500 K entries). A table growing to N
rows is analyzed about log4(N / FEW) + 1 times, its statistics at most three quarters
behind its size; a table whose rows are rewritten, not added (`cases`), is left to
autovacuum as it grows no more. A table autovacuum (or another front) is analyzing is
skipped (SKIP_LOCKED), and a role that does not own the tables analyzes none (ANALYZE only
warns). Statistics only speed plans up: any failure here is dropped.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import psycopg
from psycopg.pq import TransactionStatus

if TYPE_CHECKING:
    from sync.pg.store import PgStore

LOOK_SECONDS = 1.0  # the most often a front looks whether a table has grown
FEW = 10_000  # rows a table's plans may do without statistics for
GROWN = 4  # times the rows it held at its last ANALYZE a table is analyzed again at
_GROWN = (  # this schema's tables (partitions too; not their parent) grown past their stats
    "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relkind = 'r' "
    "AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) "
    "AND pg_stat_get_live_tuples(c.oid) > greatest(%s, %s * c.reltuples)"
)


def refresh(store: PgStore) -> None:
    """Between two chunks of a catch-up: if this front has not looked for LOOK_SECONDS and
    is not analyzing already, look for the tables grown past their statistics and analyze
    them in a thread (`store.analyzing`)."""
    now = time.monotonic()
    if now - store.statistics_looked < LOOK_SECONDS:
        return
    conn = store.conn
    if conn.broken or conn.info.transaction_status != TransactionStatus.IDLE:
        return
    if store.analyzing is not None and store.analyzing.is_alive():
        return
    store.statistics_looked = now
    try:
        grown = [row[0] for row in conn.execute(_GROWN, (FEW, GROWN)).fetchall()]
    except psycopg.Error:
        return
    if grown:
        store.analyzing = threading.Thread(target=_analyze, args=(store, grown), daemon=True)
        store.analyzing.start()


def _analyze(store: PgStore, tables: list[str]) -> None:
    try:
        with store.connect() as conn:  # (its own: the front's is the serving loop's alone)
            conn.execute(f"ANALYZE (SKIP_LOCKED) {', '.join(tables)}")
    except psycopg.Error:
        return
