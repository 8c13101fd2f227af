"""Batches of logs held here, cut where a signature proves them (DESIGN §2, docs/protocol.md).

A receiver checks one signature per run: the last entry's, which vouches for every entry
below it through the hash chain (`verify_run`). So a node that sends on a log it holds —
a town relaying its villages' logs up, a parent answering a restore — must end each run
of a batch on an entry whose own signature is good. Below such an entry, a stored
signature may be garbage (a hostile author or relay may have sent it so, and the chain
proved the entry all the same): ending a run there would get the whole run refused, and a
relay that kept cutting there would never get past it.

The entries whose signature was checked here are in `signed_tips` (every run ingest
accepted ended on one); between two of them lies at most one batch the sender once sent,
which a receiver takes. This node's own log is signed here: every entry above what a
restore brought back is a good place to cut. A log that has no checked entry on record at
all (held before this rule existed) may be cut anywhere, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from sync.protocol.batch import BATCH_BYTES, BATCH_ENTRIES, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES
from sync.protocol.entry import SIGNATURE_BYTES, SignedEntry
from sync.store import Store

Plan = Sequence[tuple[str, int, int]]  # (origin, after, through): the entries in (after, through]
_HARD_ENTRIES = MAX_BATCH_ENTRIES  # what a receiver takes in one batch
_HARD_BYTES = MAX_BATCH_BYTES - 1024 * 1024  # room for the batch's header
_READ = 256  # entries read at a time once a batch is full and looks for where to end


def cut_points(store: Store, origin: str, after: int, through: int) -> Callable[[int], bool]:
    """Whether a batch may end on (origin, seq), for seqs in (after, through]."""
    last = store.last_signed(origin)
    if origin == store.owner:
        points = set(store.signed_seqs(origin, after, min(through, last)))
        return lambda seq: seq > last or seq in points or seq == through
    if not last:
        return lambda seq: True
    points = set(store.signed_seqs(origin, after, through))
    points.add(through)  # the head: the last run accepted here ended on it
    return points.__contains__


def batches(
    store: Store, plan: Plan, *, first: int = BATCH_ENTRIES, size: int = BATCH_ENTRIES
) -> Iterator[list[SignedEntry]]:
    """The entries of `plan` in batches of about `size` entries (the first of `first`) and
    at most BATCH_BYTES, each run of each origin ending on a cut point. A batch grows past
    its size (up to what a receiver takes) rather than end a run where no signature proves
    it, or be cut back to less than half; it is read only as far as it needs."""
    pending: list[SignedEntry] = []
    weight = safe = 0  # bytes held; len(pending) at the last place a batch may end
    limit = first
    for origin, after, through in plan:
        may_end = cut_points(store, origin, after, through)
        cursor = after
        while cursor < through:
            room = max(limit - len(pending), _READ)
            chunk = store.entries(origin, cursor, room, through)
            if not chunk:
                break
            for entry in chunk:
                pending.append(entry)
                weight += len(entry.raw) + SIGNATURE_BYTES
                if may_end(entry.seq):
                    safe = len(pending)
                if len(pending) < limit and weight < BATCH_BYTES:
                    continue
                hard = len(pending) >= _HARD_ENTRIES or weight >= _HARD_BYTES
                if safe == len(pending) or (safe and (2 * safe >= len(pending) or hard)):
                    yield pending[:safe]
                    pending = pending[safe:]
                elif hard:  # no signature to end on within what a receiver takes
                    yield pending
                    pending = []
                else:
                    continue
                weight = sum(len(e.raw) + SIGNATURE_BYTES for e in pending)
                safe, limit = 0, size
            cursor = chunk[-1].seq
    if pending:
        yield pending
