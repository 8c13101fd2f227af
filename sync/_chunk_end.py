"""Where a catch-up's chunk ends (sync._projecting): where a push ended, so that what
arrived together is projected together — the case projection folds a town's event on only
beside the village's event it follows, which a receiver stores after it in the same push
(tiers.cases.projection) — within what a chunk may hold in memory."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sync.protocol.batch import BATCH_BYTES, BATCH_ENTRIES
from sync.protocol.ids import tier_order

# entries and bytes held in memory at once while catching up: two usual pushes' worth, so
# that a chunk ending where a push ended still holds at least one whole (a longer push, up
# to what a receiver takes, is cut)
PROJECT_CHUNK, PROJECT_BYTES = 2 * BATCH_ENTRIES, 2 * BATCH_BYTES


def chunk_end(sizes: Sequence[tuple[int, int, str, str, Any]], limit: int, *, whole: bool) -> int:
    """How many of `sizes` (id, bytes, time of arrival, origin, transaction, in id order;
    `whole`: no entry is stored after them) a chunk of about `limit` entries takes: all,
    when they are no more; else as many as end where the last push that ended within
    `limit` ended, or, if none did, where the first push to end after it ended — never more
    than PROJECT_CHUNK entries and PROJECT_BYTES (a push longer than that is cut at `limit`,
    or before it where the bytes run out). 0: `sizes` ends before a push did, read further.
    (An idle catch-up's steps of a few hundred entries cut a town's runs from its villages'
    of the same push, and each case they shared was then refolded whole.)"""
    bound, total = min(len(sizes), PROJECT_CHUNK), 0
    for index in range(bound):
        total += sizes[index][1]
        if total > PROJECT_BYTES and index:
            bound = index
            break
    end = min(bound, limit)
    if end == len(sizes):
        return end
    ended = push_ends(sizes, whole)
    for index in [*range(end, 0, -1), *range(end + 1, bound + 1)]:
        if ended(index):
            return index
    return end if bound < len(sizes) else 0


def push_ends(sizes: Sequence[tuple[int, int, str, str, Any]], whole: bool
               ) -> Callable[[int], bool]:  # fmt: skip
    """Whether a push ended before sizes[index] (`chunk_end`'s rows). Where each entry names
    the transaction that stored it (PostgreSQL: two fronts append at once and their ids
    interleave), where no push seen before goes on at or after it, among these rows — a
    push being a transaction's entries of one time of arrival (ingest gives a transaction
    one; a move, `zhibao store migrate`, copies many pushes in one). Else (SQLite: one
    writer, a transaction's ids follow one another) where the time of arrival changes, or
    where `tier_order`, in which `sync.ingest` stores a batch's runs, goes back: a new
    batch began."""
    if sizes[0][4] is None:

        def ended(index: int) -> bool:
            if index == len(sizes):
                return whole
            (_, _, before, previous, _), (_, _, arrived, origin, _) = sizes[index - 1 : index + 1]
            return arrived != before or tier_order(origin) < tier_order(previous)

        return ended
    last = {(row[4], row[2]): index for index, row in enumerate(sizes)}
    reach = [0] * (len(sizes) + 1)  # reach[i]: the last place a push before i is at
    for index in range(1, len(sizes) + 1):
        reach[index] = max(reach[index - 1], last[sizes[index - 1][4], sizes[index - 1][2]])
    return lambda index: reach[index] < index and (index < len(sizes) or whole)
