"""A front's catch-up beside the other fronts' appends (sync.pg.beside): one front projects
at a time and no front waits for it; a sequence that caches ids gives no horizon; and a
pull reads only what the projections have seen, so a town is never handed a later entry of
a log while an earlier one that concerns it waits to be projected (its cursor would pass
over it for good). test_cursor_in_flight: the horizon and a push in flight."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest

from sync import idle_projection, relevance
from sync.idle_projection import IdleProjection
from sync.logstore import LogStore
from sync.pg.beside import PROJECT_LOCK
from sync.protocol.entry import SignedEntry, encode_entry, sign_entry
from sync.protocol.errors import StoreError
from tests.postgres.chains import AT, chain, front, signer_for
from tests.support.postgres import fresh_database

CITY, TOWN, OTHER = "330782", "330782001", "330782002"
NOW = "2025-10-13T09:00:00+08:00"


def seen(store: LogStore) -> list[tuple[str, int]]:
    return [(o, int(s)) for o, s in store.query("SELECT origin, seq FROM seen ORDER BY 1, 2")]


def test_one_front_projects_at_a_time_and_the_other_does_not_wait(pg_url: str) -> None:
    """While another front is projecting (it holds PROJECT_LOCK), a front's catch-up goes
    back to its requests at once, having projected nothing; then it projects all, once."""
    store = front(pg_url)
    try:
        with store.transaction():
            store.insert(chain(signer_for(TOWN), TOWN, 6), NOW)
        with psycopg.connect(pg_url, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", (PROJECT_LOCK,))
            started = time.monotonic()
            assert store.catch_up() == 6
            assert time.monotonic() - started < 1.5  # (lock_timeout is 2 s: it did not wait)
            assert seen(store) == []
            other.execute("SELECT pg_advisory_unlock(%s)", (PROJECT_LOCK,))
        assert store.catch_up() == 0
        assert seen(store) == [(TOWN, n) for n in range(1, 7)]
    finally:
        store.close()


def test_a_sequence_that_caches_ids_gives_no_horizon(pg_url: str) -> None:
    """An operator sets the id sequence to cache values (each connection then hands out
    its own block: ids no longer follow the order they were taken in): a front's catch-up
    takes the write lock whole, as before — it waits for a push in flight and fails busy
    rather than pass over it — and a pull's, inside its shared transaction, projects
    nothing."""
    store, pusher = front(pg_url), front(pg_url)
    try:
        store.conn.execute("ALTER SEQUENCE entries_id_seq CACHE 20")
        store.conn.execute("SET lock_timeout = '300ms'")
        with pusher.transaction():
            pusher.insert(chain(signer_for(OTHER), OTHER, 2), NOW)
        with pusher.transaction():
            pusher.insert(chain(signer_for(TOWN), TOWN, 3), NOW)
            with pytest.raises(StoreError) as busy:
                store.catch_up()
            assert busy.value.key == "store.busy"
        with store.transaction():  # (a pull's shared transaction)
            assert store.catch_up() == 5
        assert seen(store) == []
        assert store.catch_up() == 0
        assert seen(store) == [*((TOWN, n) for n in (1, 2, 3)), *((OTHER, n) for n in (1, 2))]
    finally:
        store.close()
        pusher.close()


def _city_log(count_notes: int) -> list[SignedEntry]:
    """The city's own log: `count_notes` notes for TOWN, then a broadcast (`node.`) one."""
    signer, out, prev = signer_for(CITY), [], None
    for seq in range(1, count_notes + 2):
        kind = "test.note" if seq <= count_notes else "node.test_broadcast"
        entry = sign_entry(signer, encode_entry(CITY, seq, prev, AT, kind, {"tag": TOWN}))
        out.append(entry)
        prev = entry.hash
    return out


def _notes_for(store: LogStore, client: str, cursors: dict[str, int]) -> list[tuple[str, int]]:
    """A selector as the tiers' are: what concerns `client`, read from a projection."""
    return [
        (o, int(s)) for o, s in store.query(
            "SELECT s.origin, s.seq FROM seen s JOIN entries e ON e.origin = s.origin "
            "AND e.seq = s.seq WHERE e.raw LIKE ?", (f"%{client}%".encode(),),
        )
    ]  # fmt: skip


def test_a_pull_never_passes_over_an_entry_the_projections_have_not_seen(
    pg_url: str, monkeypatch: Any
) -> None:
    """The city's log holds two notes for TOWN (found through a projection) and then a
    broadcast (found in the log itself). Before the projections see the notes, a pull
    would hand TOWN the broadcast alone, and TOWN's cursor on the city's log would pass
    over both notes for good: it hands over nothing of that log until they are seen; a
    town's own log, which concerns no one here, is not held back by it."""
    monkeypatch.setattr(relevance, "_SELECTORS", [_notes_for])
    store = front(pg_url)
    try:
        with store.transaction():
            store.insert(_city_log(2), NOW)
            store.insert(chain(signer_for(OTHER), OTHER, 2), NOW)
        with store.projected_read() as bounds:
            assert bounds == {CITY: 1, OTHER: 1}
        assert relevance.select_for(store, TOWN, {}, 100) == ([], False)
        assert store.catch_up() == 0
        with store.projected_read() as bounds:
            assert bounds == {CITY: 4, OTHER: 3}
        entries, more = relevance.select_for(store, TOWN, {}, 100)
        assert [(e.origin, e.seq) for e in entries] == [(CITY, 1), (CITY, 2), (CITY, 3)]
        assert not more
    finally:
        store.close()


def test_a_push_waits_while_the_projections_are_far_behind(pg_url: str, monkeypatch: Any) -> None:
    """Nothing holds a front's pushes back while another front projects, so a town's own
    key pushing fast could leave the city's cases and figures ever further behind: a push
    waits (the loop serving meanwhile) while they are more than BEHIND entries behind, and
    goes on once they catch up — or after PACE_WAIT_S: it is never refused for it."""
    monkeypatch.setattr(idle_projection, "BEHIND", 3)
    monkeypatch.setattr(idle_projection, "BACKLOG", 0)
    monkeypatch.setattr(idle_projection, "PACE_WAIT_S", 1.0)
    store = front(pg_url)

    async def paced() -> float:
        started = time.monotonic()
        await IdleProjection(store).keep_pace()
        return time.monotonic() - started

    try:
        with store.transaction():
            store.insert(chain(signer_for(TOWN), TOWN, 6), NOW)
        with psycopg.connect(pg_url, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", (PROJECT_LOCK,))  # a slow projector
            assert asyncio.run(paced()) >= 1.0
            assert seen(store) == []
            other.execute("SELECT pg_advisory_unlock(%s)", (PROJECT_LOCK,))
        assert asyncio.run(paced()) < 1.0  # this front's own steps caught up meanwhile
        assert seen(store) == [(TOWN, n) for n in range(1, 7)]
    finally:
        store.close()


def test_pushes_waiting_together_share_one_reading_of_how_far_behind(
    pg_url: str, monkeypatch: Any
) -> None:
    """Ten pushes waiting at once on one front (a town's own key sending fast, ten rounds
    at a time) read how far behind the projections are about once a STALLED_SECONDS
    between them, not once each: the database is not polled ten times as often."""
    monkeypatch.setattr(idle_projection, "BEHIND", 3)
    monkeypatch.setattr(idle_projection, "PACE_WAIT_S", 1.0)
    store = front(pg_url)
    reads: list[float] = []
    unprojected = store.unprojected

    def counted() -> int:
        reads.append(time.monotonic())
        return unprojected()

    monkeypatch.setattr(store, "unprojected", counted)
    pace = IdleProjection(store)

    async def ten_waiting() -> None:
        await asyncio.gather(*(pace.keep_pace() for _ in range(10)))

    try:
        with store.transaction():
            store.insert(chain(signer_for(TOWN), TOWN, 6), NOW)
        with psycopg.connect(pg_url, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", (PROJECT_LOCK,))  # a slow projector
            started = time.monotonic()
            asyncio.run(ten_waiting())
            waited = time.monotonic() - started
        assert waited >= 1.0
        # once a STALLED_SECONDS for the ten, and the front's own steps read it too (~110
        # before: each push on its own)
        assert len(reads) <= 2 * (waited / idle_projection.STALLED_SECONDS + 1)
    finally:
        store.close()


def test_a_fork_switch_waits_for_another_front_s_chunk_and_a_pull_across_it_fails(
    pg_url: str,
) -> None:
    """A push whose ingest switches a fork makes every projection anew (`rebuild()`, its
    rows gone, the cursor at 0), under the shared lock like a front's projecting. Midway
    through another front's chunk it waits for that chunk (here, in one thread, until it
    gives up busy) instead of having its emptying overwritten by the chunk's cursor — the
    entries below it never projected again; and a pull that read across it fails busy
    rather than hand out a log's broadcast without the notes before it."""
    projector, switcher = front(pg_url), front(pg_url)
    switcher.conn.execute("SET lock_timeout = '300ms'")
    try:
        with projector.transaction():
            projector.insert(chain(signer_for(TOWN), TOWN, 6), NOW)
        assert projector.catch_up() == 0
        with switcher.transaction():
            switcher.insert(chain(signer_for(OTHER), OTHER, 3), NOW)
        waited: list[str] = []
        project = projector._project_isolated

        def midway(*args: Any, **kwargs: Any) -> Any:
            if not waited:
                with pytest.raises(StoreError) as busy, switcher.transaction():
                    switcher.rebuild()  # (a fork switch in a push)
                waited.append(busy.value.key)
            return project(*args, **kwargs)

        projector._project_isolated = midway  # type: ignore[method-assign]
        assert projector.catch_up() == 0
        projector._project_isolated = project  # type: ignore[method-assign]
        assert waited == ["store.busy"]
        with switcher.transaction():
            switcher.rebuild()
        assert seen(projector) == []
        assert projector.catch_up() == 0
        assert seen(projector) == [
            *((TOWN, n) for n in range(1, 7)),
            *((OTHER, n) for n in (1, 2, 3)),
        ]
        with (
            pytest.raises(StoreError) as busy,
            projector.projected_read(),
            switcher.transaction(),
        ):
            switcher.rebuild()
        assert busy.value.key == "store.busy"
    finally:
        projector.close()
        switcher.close()


def test_another_city_s_writer_on_the_same_server_does_not_hold_the_projections(
    pg_url: str, pg_server: str
) -> None:
    """Advisory locks are the database's: a writer of another city's database on the
    same server, mid-push with the same lock key, is no holder here — the catch-up
    projects at once (before, it waited for every such writer to end)."""
    store = front(pg_url)
    try:
        with store.transaction():
            store.insert(chain(signer_for(TOWN), TOWN, 4), NOW)
        with fresh_database(pg_server) as other_url:
            elsewhere = front(other_url)
            try:
                with elsewhere.transaction():
                    elsewhere.insert(chain(signer_for(OTHER), OTHER, 2), NOW)
                    assert store.catch_up() == 0
            finally:
                elsewhere.close()
        assert seen(store) == [(TOWN, n) for n in range(1, 5)]
    finally:
        store.close()
