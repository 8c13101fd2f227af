"""The projection cursor on PostgreSQL with two fronts appending (sync.pg.beside):
ids are taken in one order and committed in another, and a catch-up never passes over an
entry a push still in flight holds a lower id of — whatever it projected before."""

from __future__ import annotations

import pytest

from sync.pg import PgStore
from tests.postgres.chains import chain, front, signer_for
from tests.support.flushes import Flushes, shown

pytestmark = pytest.mark.postgresql

TOWN, OTHER, VILLAGE = "330782001", "330782002", "330782001201"
NOW = "2025-10-13T09:00:00+08:00"


def projected(store: PgStore) -> tuple[int, list[tuple[str, int]]]:
    """(the cursor, the rows of the projection)."""
    return int(store.get_meta("projected") or 0), [
        (o, int(s)) for o, s in store.query("SELECT origin, seq FROM seen ORDER BY origin, seq")
    ]


def test_an_entry_still_being_appended_is_not_passed_over(pg_url: str) -> None:
    """A push holds low ids uncommitted while a later one commits higher ids: a front's
    catch-up, beside them (sync.pg.beside), neither waits for the first nor projects the
    later one past it; once the first commits, it projects both, each once. The pushes are
    signed by the towns' own keys; a front could be any of them."""
    slow, fast, projector = front(pg_url), front(pg_url), front(pg_url)
    try:
        with fast.transaction():
            fast.insert(chain(signer_for(OTHER), OTHER, 5), NOW)
        assert projector.catch_up() == 0  # the cursor at 5
        with slow.transaction():  # a front mid-push: ids taken, not committed
            slow.insert(chain(signer_for(TOWN), TOWN, 10), NOW)
            later = chain(signer_for(OTHER), OTHER, 8)[5:]
            with fast.transaction():  # committed, with ids above the slow push's
                fast.insert(later, NOW)
            assert projector.catch_up() == 13  # (waiting, it would fail busy after 2 s)
            assert projected(projector) == (5, [(OTHER, n) for n in range(1, 6)])
        assert projector.catch_up() == 0
        cursor, rows = projected(projector)
        assert rows == [*((TOWN, n) for n in range(1, 11)), *((OTHER, n) for n in range(1, 9))]
        [(top,)] = projector.query("SELECT max(id) FROM entries")
        assert cursor == top
    finally:
        for store in (slow, fast, projector):
            store.close()


@pytest.mark.parametrize("step", [1, 4, 6, 8, 10])
def test_a_catch_up_step_takes_a_push_whole_though_another_took_ids_inside_it(
    pg_url: str, step: int
) -> None:
    """Two fronts append at once, so one town's push (its own run, then its village's, in
    two parts) holds ids on both sides of another town's. A catch-up in steps shorter than
    it, as a serving front's between requests, still shows the first push to one flush whole
    (the case projection folds on a town's acceptance only beside the village's forward it
    follows) and ends there, before the push after both: not where the ids change hands."""
    town, other, projector = (PgStore(pg_url, extensions=[Flushes()]) for _ in range(3))
    try:
        for front in (town, other):
            front.defer_projections()
        village = chain(signer_for(VILLAGE), VILLAGE, 4)
        with town.transaction():  # a front mid-push
            town.insert(chain(signer_for(TOWN), TOWN, 3), NOW)
            town.insert(village[:2], NOW)
            with other.transaction():  # the other front's push, committed first
                other.insert(chain(signer_for(OTHER), OTHER, 4), NOW)
            town.insert(village[2:], NOW)  # (ingest stores a log's runs of a batch apart
            # only in a test: the two parts stand for runs of the same push)
        with other.transaction():
            last = other.entries(OTHER, 0, 10, 10)[-1]
            other.insert(chain(signer_for(OTHER), OTHER, 2, after=last), NOW)
        while projector.catch_up(step):
            pass
        assert shown(projector) == [11, 2]
    finally:
        for store in (town, other, projector):
            store.close()
