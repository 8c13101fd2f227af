"""A catch-up's chunks on either engine: they end where a push ended, a step goes on to a
push's end, and what a chunk holds is bounded by its bytes whatever a member signed — the
same chunks on both (on PostgreSQL a push is told by the transaction that stored it).
(SQLite's alone, with the arrival-time rules: tests/sync/test_catch_up_chunks.py.)"""

from __future__ import annotations

from collections.abc import Callable

from sync._chunk_end import PROJECT_BYTES, PROJECT_CHUNK
from sync.logstore import LogStore
from sync.protocol.entry import SignedEntry
from tests.support.flushes import Flushes, shown
from tests.support.topology import CITY, TOWN, VILLAGE
from tests.sync.test_catch_up_chunks import Log

MakeStore = Callable[..., LogStore]


def _flushes(make_store: MakeStore, pushes: list[list[list[SignedEntry]]],
             step: int | None = None) -> list[int]:  # fmt: skip
    """Each push one transaction, its own second of arrival, on a store that defers its
    projections (a front); then catch-ups (of `step`, or whole): what each flush saw."""
    store = make_store(Flushes(), owner=CITY)
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


def test_chunks_end_where_pushes_ended(make_store: MakeStore) -> None:
    third, village = PROJECT_CHUNK * 3 // 8, Log(VILLAGE)
    assert _flushes(make_store, [[village.next(third)] for _ in range(3)]) == [2 * third, third]


def test_a_push_longer_than_a_chunk_is_cut_where_the_chunk_is_full(make_store: MakeStore) -> None:
    village, rest = Log(VILLAGE), PROJECT_CHUNK // 8
    pushes = [[village.next(rest)], [village.next(PROJECT_CHUNK + rest)]]
    assert _flushes(make_store, pushes) == [rest, PROJECT_CHUNK, rest]


def test_a_step_goes_on_to_where_its_push_ended(make_store: MakeStore) -> None:
    town, village = Log(TOWN), Log(VILLAGE)
    pushes = [[town.next(300), village.next(300)] for _ in range(3)]
    assert _flushes(make_store, pushes, step=100) == [600, 600, 600]


def test_a_members_largest_entries_fill_a_chunk_by_bytes(make_store: MakeStore) -> None:
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
    assert _flushes(make_store, [[entries]]) == expected
    again = Log(TOWN, pad=30_000).next(400)  # (the same database: another log)
    stepped = _flushes(make_store, [[again]], step=100)
    assert stepped == [*expected, 100, 100, 100, 100]  # (the flushes before, then these)

