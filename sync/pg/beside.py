"""A front's catch-up on PostgreSQL, beside the other fronts' appends (PgStore.project_some).

Fronts append under the write lock shared (sync.pg.store); the projections' cursor is an
entries.id, and ids are taken as rows are written, so an append in flight may hold ids
below rows another front has committed. A catch-up under the exclusive lock never meets
one — and holds every front's pushes while it projects. Here it takes the lock shared too,
and goes only as far as the *horizon*: the id sequence's last value read at a moment all
of whose lock holders have ended since (every writer takes the lock before its first id,
so no row at or below that value can still come). The horizon is read without waiting:
each catch-up notes (last value, holders) and uses the latest note whose holders are all
gone (one a push or so back). One front projects at a time (`PROJECT_LOCK`, tried, not
waited for: a front finding another at it goes back to its requests), so no push waits
for a projection (but for IdleProjection.keep_pace). A sequence that caches values (ALTER
SEQUENCE … CACHE n, n > 1) hands them out of order: then there is no horizon, and the
catch-up takes the lock exclusive as before.

A pull reads only what the projections have seen (`projected_read`), so it never passes
over an entry that concerns its client but was not projected yet. A fork switch, which
makes every projection anew inside a front's push (shared lock), first takes
`PROJECT_LOCK` whole (`hold_projections`), waiting for a chunk under way, and a pull that
read across it fails busy: the town asks again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psycopg

from sync._chunk_end import PROJECT_CHUNK
from sync._projecting import REBUILT, Projecting
from sync.protocol.errors import StoreError

if TYPE_CHECKING:
    from sync.pg.store import PgStore

PROJECT_LOCK = 0x7A68_6962_6170  # the advisory lock one front's catch-up holds (tried)
MARKS = 64  # notes kept whose holders have not all ended (a writer stuck that long: the rest)
_LAST = (
    "SELECT s.last_value, s.is_called, q.seqcache FROM entries_id_seq s, pg_sequence q "
    "WHERE q.seqrelid = 'entries_id_seq'::regclass"
)
_HOLDERS = (  # transactions holding this database's write lock, but this connection's own
    "SELECT virtualtransaction FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid = %s AND objid = %s AND objsubid = 1 AND pid <> pg_backend_pid()"
)
# per origin, the first seq a pull may not read: the first the projections have not seen,
# or past the head (what commits after this statement). One statement: one snapshot.
BOUNDS_SQL = (
    "SELECT h.origin, coalesce(u.first, h.seq + 1) FROM heads h LEFT JOIN ("
    "SELECT origin, min(seq) AS first FROM entries WHERE id > coalesce(("
    "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'projected'), 0) GROUP BY origin"
    ") u ON u.origin = h.origin"
)


class Horizon:
    """One connection's notes of (the sequence's last value, the lock's holders then)."""

    def __init__(self, write_lock: int) -> None:
        self._key = (write_lock >> 32, write_lock & 0xFFFF_FFFF)
        self._notes: list[tuple[int, frozenset[str]]] = []
        self._safe = 0  # the highest id below which no append can still commit

    def read(self, conn: psycopg.Connection[Any]) -> int | None:
        """The horizon now (it only grows); None if the sequence caches values. The last
        value is read before the holders: a writer with an id at or below it took the
        lock before, so it is among them unless it has ended."""
        row = conn.execute(_LAST).fetchone()
        assert row is not None
        last, called, cache = int(row[0]), bool(row[1]), int(row[2])
        if cache > 1:
            return None
        holders = frozenset(r[0] for r in conn.execute(_HOLDERS, self._key).fetchall())
        self._notes.append((last if called else last - 1, holders))
        waiting = []
        for at, held in self._notes:
            if held & holders:
                waiting.append((at, held))
            else:
                self._safe = max(self._safe, at)
        self._notes = waiting[-MARKS:]
        return self._safe


def project_some(store: PgStore, limit: int | None = None) -> tuple[int, int]:
    """(projected, remaining): on a front (a deferring store), beside the other fronts'
    appends; else, inside an exclusive transaction, or with no horizon, as every store's."""
    if store.deferring and not (store._depth and store._exclusive):
        done = _beside(store, limit)
        if done is not None:
            return done, store.unprojected()
        if store._depth:  # a shared transaction: nothing can be projected safely
            return 0, store.unprojected()
    return Projecting.project_some(store, limit)


@contextlib.contextmanager
def projected_read(store: PgStore) -> Iterator[dict[str, int] | None]:
    """LogStore.projected_read: the bounds (BOUNDS_SQL), and `store.busy` if the
    projections were made anew meanwhile (what was read may mix the two)."""
    if not store._lazy:
        yield None
        return
    rebuilt = store.get_meta(REBUILT)  # (before: a rebuild after it shows in the bounds)
    yield dict(store.query(BOUNDS_SQL))
    if store.get_meta(REBUILT) != rebuilt:
        raise StoreError("store.busy")


def hold_projections(store: PgStore) -> None:
    """LogStore._hold_projections: a fork switch in a front's push waits for a chunk."""
    if not store._exclusive:
        store.query("SELECT pg_advisory_xact_lock(?)", (PROJECT_LOCK,))


def _beside(store: PgStore, limit: int | None) -> int | None:
    """Project up to `limit` entries (None: all) below the horizon, a chunk a transaction
    under the write lock shared (inside the caller's transaction: a savepoint each) and
    `PROJECT_LOCK`; returns how many it projected (what lies past the horizon waits for
    the next call), or None if there is no horizon (nothing done)."""
    try:
        through = store.horizon.read(store.conn)
    except psycopg.Error as exc:
        raise store.translate_error(exc) from exc
    if through is None:
        return None
    total, budget = 0, limit if limit is not None else 2**62
    while total < budget:
        with store._write(catch_up=False, exclusive=False):
            if not store.query("SELECT pg_try_advisory_xact_lock(?)", (PROJECT_LOCK,))[0][0]:
                break  # another front is at it
            done, _ = store._project(min(budget - total, PROJECT_CHUNK), through)
        store._between_chunks()
        if not done:
            break
        total += done
    return total
