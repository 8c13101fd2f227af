"""Applying batches from other nodes: verify, detect duplicates and forks, apply atomically.

Two modes, chosen per origin:
- a log this node holds WHOLE (its own subtree, or its own log during a restore) must
  extend the held head: every link is checked and one signature vouches for the run;
- a log held IN PART (what flows down from ancestors) is taken entry by entry, each with
  its own signature checked, no head kept.
Invariants: a batch is applied in one transaction (all of it or none of what it
applied); re-sending a batch applies nothing twice; two validly signed entries for one
(origin, seq) are kept as evidence and freeze the origin; nothing after a refused entry
of an origin is applied for that origin in the same batch.

Signatures: a whole log is proved by the hash chain up to an entry whose own signature
verifies (`verify_run`), on every way in alike, so one Ed25519 check per run. An inner
entry's stored signature may then be anything (a relay, or its author, may have sent
garbage there): the entry is proved all the same, `log verify` says so, and the accepted
run's last entry — whose signature was checked — is recorded (`Store.mark_signed`) so this
node, relaying the log, cuts its batches where a signature proves them (sync.proofs).
Entries of a log held in part are not chained here: each one's own signature is checked,
and one that fails costs that entry alone.

More than one front (a city on PostgreSQL served by two `serve` processes): the database
decides who appends a seq (sync.pg), never a process's memory. A batch whose transaction
loses that race to another front applied nothing; it is tried again from the start
(`retrying`, at most RACE_ATTEMPTS in all), heads read anew, so what the other front stored
meanwhile is skipped as duplicates — or, another history, recorded as a fork — exactly as
when it came first. On SQLite a writer waits for the database instead: nothing is retried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sync import forks, keyring, proofs
from sync.keyring import KeyRing
from sync.logstore import LogStore
from sync.protocol import i18n
from sync.protocol.batch import Run
from sync.protocol.entry import (
    SignedEntry,
    entry_hash,
    parse_envelope,
    signing_message,
    verify_run,
)
from sync.protocol.errors import EntryError, StoreError
from sync.protocol.ids import is_within, tier_order
from sync.protocol.keys import verify

T = TypeVar("T")
# What a writer on PostgreSQL meets when another front (a second `serve` on the same
# database) appended first: the seq is taken, the head moved, or a deadlock or lock timeout.
# The transaction applied nothing; read the heads again and the batch goes through.
RACES = frozenset({"store.pg_taken", "store.pg_gap", "store.busy"})
RACE_ATTEMPTS = 3  # tries in all of a batch that keeps losing races, before it is refused


@dataclass
class IngestResult:
    applied: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    forks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def applied_total(self) -> int:
        return sum(self.applied.values())

    def refuse(self, error: EntryError) -> None:
        """Record a refused entry: its reason as text, and as key and params (JSON values)
        so a client renders it in its own reader's language."""
        params = error.params.get("reason_params") or {}
        self.rejected.append(
            {
                "origin": error.params.get("origin"),
                "seq": error.params.get("seq"),
                "reason": str(error.params.get("reason", error)),
                "reason_key": error.params.get("reason_key"),
                "reason_params": {k: v if v is None or isinstance(v, str | int | float) else str(v)
                                  for k, v in params.items()},
            }
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "forks": self.forks,
        }


def _entry_error(origin: str, seq: int | None, key: str, /, **params: Any) -> EntryError:
    return EntryError(
        "entry.rejected", origin=origin, seq=seq, reason=i18n.t(key, **params), reason_key=key,
        reason_params=params,
    )  # fmt: skip


def _fork(
    store: LogStore,
    result: IngestResult,
    origin: str,
    seq: int,
    held: bytes,
    raw: bytes,
    sig: bytes,
    key: bytes,
    at: str,
) -> tuple[str, dict[str, Any]]:
    """Record (origin, seq) as forked if the other entry is validly signed and not from a
    branch a decision dropped (sync.forks); the refusal of the other entry."""
    other = entry_hash(raw)
    if not verify(key, signing_message(other), sig):
        return "entry.signature", {}
    try:
        fields = parse_envelope(raw, origin, seq)
    except EntryError:
        return "entry.signature", {}
    dropped = forks.off_kept(store, origin, seq, fields.prev)
    if dropped is not None:
        return "fork.off_kept", dropped
    store.record_fork(origin, seq, held, SignedEntry(raw, sig, other, origin, seq, fields.type), at)
    result.forks.append(
        {"origin": origin, "seq": seq, "held_hash": held.hex(), "other_hash": other.hex()}
    )
    return "entry.fork", {}


def _ingest_whole(
    store: LogStore, run: Run, ring: KeyRing, result: IngestResult, at: str, sender: str
) -> None:
    head_seq, head_hash = store.head(run.origin)
    fresh = run.items
    if run.first <= head_seq:
        overlap = min(head_seq - run.first + 1, len(run.items))
        for offset in range(overlap):
            seq = run.first + offset
            raw, sig = run.items[offset]
            held = store.hash_at(run.origin, seq)
            if held == entry_hash(raw):
                result.duplicates += 1
                continue
            key = ring.key_at(seq)
            why, params = (
                _fork(store, result, run.origin, seq, held, raw, sig, key, at)
                if held is not None and key is not None
                else ("entry.signature", {})
            )
            result.refuse(_entry_error(run.origin, seq, why, **params))
            return
        fresh = run.items[overlap:]
    while fresh:  # in pieces, each signed by one key (a rotation or a cut-off ends one)
        first = head_seq + 1
        answer = ring.span(first)
        if answer.key is None:
            _refuse_keyless(store, result, run.origin, first, len(fresh), answer, at, sender)
            return
        count = len(fresh) if answer.through is None else min(len(fresh), answer.through - head_seq)
        for index in range(count):
            if keyring.REKEY_MARK in fresh[index][0]:
                count = index + 1
                break
        piece, fresh = fresh[:count], fresh[count:]
        if not _ingest_piece(store, run.origin, piece, head_seq, head_hash, answer.key, result, at):
            return
        head_seq, head_hash = store.head(run.origin)
        if fresh:
            ring = KeyRing.load(store, run.origin)  # a rotation in the piece changed it


def _ingest_piece(
    store: LogStore,
    origin: str,
    items: list[tuple[bytes, bytes]],
    head_seq: int,
    head_hash: bytes | None,
    key: bytes,
    result: IngestResult,
    at: str,
) -> bool:
    """Verify and apply consecutive entries signed by one key; False if one was refused."""
    checked = verify_run(origin, items, head_seq=head_seq, head_hash=head_hash, public_key=key)
    accepted, error = checked.accepted, checked.error
    taken, points = proofs.checkpoints(accepted, key)
    if taken < len(accepted):  # signatures too far apart to relay: the rest is refused
        seq, limit = accepted[taken].seq, proofs.SPAN_MAX[0]
        error = _entry_error(origin, seq, "entry.unproved", count=limit)
        accepted = accepted[:taken]
    if accepted:
        store.insert(accepted, at)
        for seq in points:
            store.mark_signed(origin, seq)
        result.applied[origin] = result.applied.get(origin, 0) + len(accepted)
    if error is not None:
        result.refuse(error)
        return False
    return len(accepted) == len(items)


def _refuse_keyless(
    store: LogStore,
    result: IngestResult,
    origin: str,
    seq: int,
    count: int,
    answer: keyring.Answer,
    at: str,
    sender: str,
) -> None:
    """Nothing may sign `seq` of `origin` here: refuse it (and what follows), and count
    it when a revoked key signed it (`revoked_key_used`)."""
    if answer.why == "entry.revoked":
        keyring.record_use(store, origin, sender, "entry", seq + count - 1, at, count)
        result.refuse(_entry_error(origin, seq, "entry.revoked", origin=origin, cut=answer.cut))
    else:
        result.refuse(_entry_error(origin, seq, "entry.unknown_key", origin=origin))


def _ingest_part(
    store: LogStore, run: Run, ring: KeyRing, result: IngestResult, at: str, sender: str
) -> None:
    for offset, (raw, sig) in enumerate(run.items):
        seq = run.first + offset
        try:
            fields = parse_envelope(raw, run.origin, seq)
        except EntryError as exc:
            result.refuse(exc)
            return
        digest = entry_hash(raw)
        held = store.hash_at(run.origin, seq)
        if held == digest:
            result.duplicates += 1
            continue
        answer = ring.span(seq)
        if answer.key is None:
            _refuse_keyless(store, result, run.origin, seq, 1, answer, at, sender)
            continue
        if not verify(answer.key, signing_message(digest), sig):
            result.refuse(_entry_error(run.origin, seq, "entry.signature"))
            continue  # no chain ties it to the next: that one may still prove itself
        if held is not None:
            why, params = _fork(store, result, run.origin, seq, held, raw, sig, answer.key, at)
            result.refuse(_entry_error(run.origin, seq, why, **params))
            return
        store.insert([SignedEntry(raw, sig, digest, run.origin, seq, fields.type)], at, whole=False)
        result.applied[run.origin] = result.applied.get(run.origin, 0) + 1
        if fields.type == keyring.REKEYED:
            ring = KeyRing.load(store, run.origin)


def _joined(runs: list[Run]) -> list[Run]:
    """`runs` (sorted) with each run that continues the one before it merged into it."""
    out: list[Run] = []
    for run in runs:
        last = out[-1] if out else None
        if (
            last is not None
            and last.origin == run.origin
            and last.first + len(last.items) == run.first
        ):
            last.items.extend(run.items)  # a list made for this batch by decode_batch
        else:
            out.append(Run(run.origin, run.first, list(run.items)))
    return out


def ingest(
    store: LogStore,
    runs: list[Run],
    *,
    me: str,
    sender: str,
    received_at: str,
) -> IngestResult:
    """Verify and apply `runs` sent by `sender` to node `me`, in one transaction.

    A child may send only logs of its own subtree; anything else sent from below is
    refused. Runs are taken in tier order (city, town, village) so an enrolment arrives
    before the entries it vouches for; consecutive runs of one origin (a bundle's frames
    cut a log anywhere) are taken as one, so the signature that proves them is the last.
    """
    ordered = _joined(sorted(runs, key=lambda r: (tier_order(r.origin), r.first)))

    def attempt() -> IngestResult:
        return _ingest_all(store, ordered, me=me, sender=sender, received_at=received_at)

    if store.in_transaction:  # inside the caller's transaction: the caller retries it whole
        return attempt()
    return retrying(store, attempt)


def retrying(store: LogStore, attempt: Callable[[], T]) -> T:
    """`attempt()`, which runs one whole transaction on `store`, again while it loses a race
    to another front (RACES, on PostgreSQL only) — at most RACE_ATTEMPTS times in all; then
    its StoreError goes to the caller (a server answers 503: the client sends again)."""
    tries = 1
    while True:
        try:
            return attempt()
        except StoreError as exc:
            if tries >= RACE_ATTEMPTS or not lost_race(store, exc):
                raise
            tries += 1


def lost_race(store: LogStore, exc: StoreError) -> bool:
    """Whether `exc` says another writer of the same PostgreSQL database came first. A
    SQLite store waits for the database (its busy timeout): its `store.busy` is no race."""
    return store.races and exc.key in RACES


def _ingest_all(
    store: LogStore, ordered: list[Run], *, me: str, sender: str, received_at: str
) -> IngestResult:
    result = IngestResult()
    from_below = is_within(sender, me) and sender != me
    passed: set[tuple[str, int, str, int]] = set()  # forks found blocked (fork_switch)
    with store.transaction():
        for run in ordered:
            whole = is_within(run.origin, me)
            if from_below and not is_within(run.origin, sender):
                result.refuse(
                    _entry_error(
                        run.origin, run.first, "entry.not_allowed", sender=sender, origin=run.origin
                    )
                )
                continue
            forks.switch_decided(store, received_at, passed)  # a decision just come may ask
            if run.origin in store.frozen():  # asked per run: a decision may just have come
                result.refuse(
                    _entry_error(run.origin, run.first, "entry.frozen", origin=run.origin)
                )
                continue
            dropped = forks.screen(store, run.origin, run.first, run.items)
            if dropped is not None:  # an entry a fork decision dropped, and all after it
                cut, params = dropped
                result.refuse(
                    _entry_error(run.origin, run.first + cut, "fork.decided_away", **params)
                )
                run = Run(run.origin, run.first, run.items[:cut])
                if not run.items:
                    continue
            ring = KeyRing.load(store, run.origin)
            if not ring.enrols:
                result.refuse(
                    _entry_error(run.origin, run.first, "entry.unknown_key", origin=run.origin)
                )
                continue
            if whole:
                _ingest_whole(store, run, ring, result, received_at, sender)
            else:
                _ingest_part(store, run, ring, result, received_at, sender)
        forks.switch_decided(store, received_at, passed)
    return result


i18n.register(
    {
        "entry.revoked": (
            "the key of {origin} was revoked after seq {cut}: nothing it signs later counts",
            "{origin} 的密钥已在序号 {cut} 之后吊销：其后签名的内容一律不予接受",
        ),
        "entry.unproved": (
            "no signature verifies within {count} entries from here: they could not be relayed",
            "自此起 {count} 条条目内没有可验证的签名：无法转发",
        ),
    }
)
