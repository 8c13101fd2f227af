"""A young city's tables analyzed beside a catch-up (sync.pg.statistics): a table grown
past its statistics is analyzed, on a connection of the front's own (no request waits for
it), never from inside a transaction, and however a member floods the city, each table
only as often as it quadruples."""

from __future__ import annotations

import math

import psycopg
import pytest

from sync.pg import statistics
from sync.pg.store import PgStore
from tests.postgres.chains import AT, chain, front, signer_for

TOWN = "330782001"


def analyzed(url: str) -> dict[str, int]:
    """How many times each table of this database was analyzed by hand (not autovacuum)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT relname, analyze_count FROM pg_stat_user_tables").fetchall()
    return {name: int(count) for name, count in rows}


def settled(store: PgStore) -> None:
    """Wait for the ANALYZE a look started (on a connection of its own, in a thread)."""
    if store.analyzing is not None:
        store.analyzing.join()


def town_partition(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT tableoid::regclass::text FROM entries WHERE origin = %s LIMIT 1", (TOWN,)
        ).fetchone()
    assert row is not None
    return str(row[0])


def push(url: str, entries: list) -> None:  # type: ignore[type-arg]
    """Store `entries` from a connection of their own and have its counts published (the
    statistics a front reads are what each backend has reported)."""
    pusher = front(url)
    try:
        with pusher.transaction():
            pusher.insert(entries, AT)
        pusher.conn.execute("SELECT pg_stat_force_next_flush()")
        pusher.conn.execute("SELECT 1")  # (reported as the backend went idle before it)
    finally:
        pusher.close()


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statistics, "FEW", 100)
    monkeypatch.setattr(statistics, "LOOK_SECONDS", 0.0)


def test_a_flood_is_analyzed_by_the_catch_up_and_a_small_table_is_not(
    pg_url: str, quick: None
) -> None:
    """3,000 entries pushed into a new city: its first catch-up analyzes the partition of
    `entries` that holds them (its plans were a guess: a table never analyzed), on a
    connection of its own, and leaves alone the tables that stayed small."""
    push(pg_url, chain(signer_for(TOWN), TOWN, 3000))
    store = front(pg_url)
    try:
        before = analyzed(pg_url)
        assert store.catch_up() == 0
        assert store.analyzing is not None  # (not on the front's connection: a thread's)
        settled(store)
        after = analyzed(pg_url)
        partition = town_partition(pg_url)
        assert after[partition] == before[partition] + 1
        assert after["heads"] == before["heads"] and after["meta"] == before["meta"]
        with psycopg.connect(pg_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (partition,)
            ).fetchone()
        assert row is not None and row[0] == 3000
    finally:
        store.close()


def test_nothing_is_analyzed_inside_a_transaction(pg_url: str, quick: None) -> None:
    """A chunk's transaction (or a push's) is never made to hold ANALYZE's lock."""
    push(pg_url, chain(signer_for(TOWN), TOWN, 500))
    store = front(pg_url)
    try:
        before = analyzed(pg_url)
        with store.transaction():
            statistics.refresh(store)
        assert analyzed(pg_url) == before
        statistics.refresh(store)
        settled(store)
        assert analyzed(pg_url)[town_partition(pg_url)] == before[town_partition(pg_url)] + 1
    finally:
        store.close()


def test_a_member_flooding_in_small_pushes_has_each_table_analyzed_as_it_quadruples(
    pg_url: str, quick: None
) -> None:
    """A town, with its own key, pushes 4,000 entries as 40 pushes of 100, each caught up
    at once (a front looking after every chunk): its partition is analyzed at most once
    each time it has quadrupled since the last (100, 400, 1,600 …), not once a push."""
    signer, log = signer_for(TOWN), []
    store: PgStore = front(pg_url)
    try:
        for _ in range(40):
            pushed = chain(signer, TOWN, 100, after=log[-1] if log else None)
            push(pg_url, pushed)
            log += pushed
            assert store.catch_up() == 0
            settled(store)
        times = analyzed(pg_url)[town_partition(pg_url)]
        bound = math.floor(math.log(4000 / statistics.FEW, statistics.GROWN)) + 1
        assert 1 <= times <= bound
    finally:
        store.close()
