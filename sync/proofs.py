"""Batches of logs held here, cut where a signature proves them (DESIGN §2, docs/protocol.md).

A receiver checks one signature per run: the last entry's, which vouches for every entry
below it through the hash chain (`verify_run`). So a node that sends on a log it holds —
a town relaying its villages' logs up, a parent answering a restore — must end each run
of a batch on an entry whose own signature is good. Below such an entry, a stored
signature may be garbage (a hostile author or relay may have sent it so, and the chain
proved the entry all the same): ending a run there would get the whole run refused, and a
relay that kept cutting there would never get past it.

The entries whose signature was checked here are in `signed_tips`: the last entry of
every run ingest accepted, and, inside a long run (a bundle's runs are joined), one at
least every SPAN_CHECK entries or bytes (`checkpoints`); a run whose signatures are further
apart than SPAN_MAX is not taken past its last checked one. So between two checked entries
lie at most SPAN_MAX entries and bytes, which a batch always holds. This node's own log is
signed here: every entry above what a restore brought back is a good place to cut. A log
that has no checked entry on record at all (held before this rule existed) may be cut
anywhere, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from sync.keyring import KeyRing
from sync.logstore import LogStore
from sync.protocol.batch import BATCH_BYTES, BATCH_ENTRIES, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES
from sync.protocol.entry import SIGNATURE_BYTES, SignedEntry, signing_message
from sync.protocol.ids import is_within, tier_order
from sync.protocol.keys import verify

Plan = Sequence[tuple[str, int, int]]  # (origin, after, through): the entries in (after, through]
_HARD_ENTRIES = MAX_BATCH_ENTRIES  # what a receiver takes in one batch
_HARD_BYTES = MAX_BATCH_BYTES - 1024 * 1024  # room for the batch's header
_READ = 256  # entries read at a time once a batch is full and looks for where to end
_WEIGHT = SIGNATURE_BYTES + 4  # what an entry weighs in a batch beside its bytes
SPAN_CHECK = (5_000, 4 * 1024 * 1024)  # entries, bytes: check a signature at least this often
SPAN_MAX = (10_000, 8 * 1024 * 1024)  # ... and take no run whose checked ones are further apart
MAX_PARTS = 100_000  # runs stored apart that `arrival_order` puts in order; past it, log by log


def checkpoints(run: Sequence[SignedEntry], key: bytes) -> tuple[int, list[int]]:
    """For a run whose last entry's signature was checked (`verify_run`), following an
    entry that was: how many of its entries to take, and the seqs to record as checked.

    Every SPAN_CHECK a signature is tried (the next entries' in turn if it fails); if none
    verifies within SPAN_MAX, the run is taken only up to the last checked entry. One
    Ed25519 check per 5,000 entries of an honest log; none for a push's usual run."""
    points: list[int] = []
    count = weight = 0  # since the last checked entry
    last = len(run) - 1
    for index, entry in enumerate(run):
        count += 1
        weight += len(entry.raw) + _WEIGHT
        if index < last and (count < SPAN_CHECK[0] and weight < SPAN_CHECK[1]):
            continue
        if index == last or verify(key, signing_message(entry.hash), entry.sig):
            points.append(entry.seq)
            count = weight = 0
        elif count >= SPAN_MAX[0] or weight >= SPAN_MAX[1]:
            taken = index - count + 1  # up to the last checked entry
            return taken, points
    return len(run), points


def plan(store: LogStore, subtree: str, held: Mapping[str, int]) -> list[tuple[str, int, int]]:
    """(origin, after, through) for every log of `subtree` held here whole beyond what the
    peer `held` (origin -> seq), in tier order (an enrolment before what it vouches for).
    Never past a revocation's cut-off that no new key follows: entries a revoked key signed
    that this node took before it knew are kept here, but nobody else takes them."""
    revoked = {r[0] for r in store.query("SELECT DISTINCT node_id FROM revocations")}
    out = []
    for origin, (seq, _) in store.heads().items():
        if origin in revoked:
            seq = _signable(KeyRing.load(store, origin), seq)
        if is_within(origin, subtree) and seq > held.get(origin, 0):
            out.append((origin, held.get(origin, 0), seq))
    return sorted(out, key=lambda p: tier_order(p[0]))


def _signable(ring: KeyRing, head: int) -> int:
    """The last seq up to `head` from which on no key is missing."""
    for cut in ring.cuts:
        if cut < head and ring.span(cut + 1).key is None:
            return cut
    return head


def cut_points(store: LogStore, origin: str, after: int, through: int) -> Callable[[int], bool]:
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


def arrival_order(
    store: LogStore, plan: Plan, cuts: Callable[[str], Callable[[int], bool]]
) -> list[tuple[str, int, int]]:
    """The entries of `plan` as parts (origin, after, through) in the order this node stored
    them (`entries.id`), each part ending where its origin may be cut (`cuts(origin)`):
    what a town relays arrives above in the order the town took it — a village's forward
    before the town's acceptance that follows it — so the receiver's projection meets each
    event after the one it follows, not before (which would make it fold the case again
    whole). Keys still precede what they sign: this node took an enrolment before the
    entries it vouches for. A part that does not end on a cut point takes in the origin's
    next entries up to one, and each part starts where its origin's last one ended, so
    every log is sent whole and in seq order whatever its ids (order is a speed, not a
    rule: the receiver's projection takes any order). Past MAX_PARTS parts (a long-offline
    node's bundle), the plan's own order: one log after another."""
    if len(plan) < 2:
        return list(plan)
    spans = []  # (first id, origin, last seq): entries stored together
    for origin, after, last in plan:
        # a log held whole has every seq: id - seq is constant along what was stored at once
        spans += [(start, origin, hi) for hi, start in store.query(
            "SELECT max(seq), min(id) FROM entries WHERE origin = ? AND seq > ? AND seq <= ? "
            "GROUP BY id - seq", (origin, after, last)
        )]  # fmt: skip
        if len(spans) > MAX_PARTS:
            return list(plan)
    spans.sort()
    head = {origin: last for origin, _, last in plan}
    sent = {origin: after for origin, after, _ in plan}
    parts = []
    for _, origin, hi in spans:
        if hi <= sent[origin]:
            continue  # taken in already by an earlier part
        end, may_end = hi, cuts(origin)
        while end < head[origin] and not may_end(end):
            end += 1
        parts.append((origin, sent[origin], end))
        sent[origin] = end
    return parts


def batches(
    store: LogStore,
    plan: Plan,
    *,
    first: int = BATCH_ENTRIES,
    size: int = BATCH_ENTRIES,
    arrival: bool = True,
) -> Iterator[list[SignedEntry]]:
    """The entries of `plan` in batches of about `size` entries (the first of `first`) and
    at most BATCH_BYTES, each run of each origin ending on a cut point, in the order they
    were stored here (`arrival_order`; with `arrival` False, a log after another in the
    plan's order). A batch grows past its size (up to what a receiver takes) rather than
    end a run where no signature proves it, or be cut back to less than half; it is read
    only as far as it needs (but to find the order stored in: one look at each log's ids)."""
    pending: list[SignedEntry] = []
    weight = safe = 0  # bytes held; len(pending) at the last place a batch may end
    limit = first
    spans = {origin: (after, through) for origin, after, through in plan}
    cuts: dict[str, Callable[[int], bool]] = {}

    def cut(origin: str) -> Callable[[int], bool]:  # read for a log once it is reached
        if origin not in cuts:
            cuts[origin] = cut_points(store, origin, *spans[origin])
        return cuts[origin]

    for origin, after, through in arrival_order(store, plan, cut) if arrival else plan:
        may_end = cut(origin)
        cursor = after
        while cursor < through:
            room = max(limit - len(pending), _READ)
            chunk = store.entries(origin, cursor, room, through)
            if not chunk:
                break
            for entry in chunk:
                pending.append(entry)
                weight += len(entry.raw) + _WEIGHT
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
                weight = sum(len(e.raw) + _WEIGHT for e in pending)
                safe, limit = 0, size
            cursor = chunk[-1].seq
    if pending:
        yield pending
