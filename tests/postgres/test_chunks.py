"""A catch-up's chunks on PostgreSQL, where a push is told by the transaction that stored it:
they end where a push ended, a step goes on to its push's end, and what a chunk holds is
bounded by its bytes whatever a member signed — the chunks SQLite makes of the same pushes
(tests/sync/test_catch_up_chunks.py, with its arrival-time rules)."""

from __future__ import annotations

from sync._chunk_end import PROJECT_BYTES, PROJECT_CHUNK
from sync.pg import PgStore
from sync.protocol.entry import SignedEntry
from tests.support.flushes import Flushes, shown
from tests.support.topology import CITY, TOWN, VILLAGE
from tests.sync.test_catch_up_chunks import Log


def _flushes(pg_url: str, pushes: list[list[list[SignedEntry]]],
             step: int | None = None) -> list[int]:  # fmt: skip
    """Each push one transaction, its own second of arrival, on a store that defers its
    projections (a front); then catch-ups (of `step`, or whole): what each flush saw."""
    store = PgStore(pg_url, extensions=[Flushes()], owner=CITY)
    try:
        store.defer_projections()
        for number, runs in enumerate(pushes):
            with store.transaction():
                for run in runs:
                    store.insert(run, f"2026-11-20T10:00:{number:02d}+08:00")
        while store.catch_up(step):
            assert step is not None
        return shown(store)
    finally:
        store.close()


def test_chunks_end_where_pushes_ended(pg_url: str) -> None:
    third, village = PROJECT_CHUNK * 3 // 8, Log(VILLAGE)
    assert _flushes(pg_url, [[village.next(third)] for _ in range(3)]) == [2 * third, third]


def test_a_push_longer_than_a_chunk_is_cut_where_the_chunk_is_full(pg_url: str) -> None:
    village, rest = Log(VILLAGE), PROJECT_CHUNK // 8
    pushes = [[village.next(rest)], [village.next(PROJECT_CHUNK + rest)]]
    assert _flushes(pg_url, pushes) == [rest, PROJECT_CHUNK, rest]


def test_a_step_goes_on_to_where_its_push_ended(pg_url: str) -> None:
    town, village = Log(TOWN), Log(VILLAGE)
    pushes = [[town.next(300), village.next(300)] for _ in range(3)]
    assert _flushes(pg_url, pushes, step=100) == [600, 600, 600]


def test_a_members_largest_entries_fill_a_chunk_by_bytes(pg_url: str) -> None:
    """A member signs 400 entries of the largest size allowed, in one push (which never
    ends within a chunk): each chunk holds what PROJECT_BYTES allows, all are projected
    once, and a step within it is cut at the step."""
    entries = Log(VILLAGE, pad=30_000).next(400)
    expected, held = [0], 0  # greedy: as many as fit in PROJECT_BYTES, then the next chunk
    for entry in entries:
        if expected[-1] and held + len(entry.raw) > PROJECT_BYTES:
            expected.append(0)
            held = 0
        expected[-1] += 1
        held += len(entry.raw)
    assert len(expected) > 1
    assert _flushes(pg_url, [[entries]]) == expected
    again = Log(TOWN, pad=30_000).next(400)  # (the same database: another log)
    stepped = _flushes(pg_url, [[again]], step=100)
    assert stepped == [*expected, 100, 100, 100, 100]  # (the flushes before, then these)
