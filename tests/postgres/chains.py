"""Signed chains of entries for the PostgreSQL tests, made with the real encoder and keys,
and a front's store to put them in."""

from __future__ import annotations

from sync.pg import PgStore
from sync.protocol.entry import SignedEntry, encode_entry, sign_entry
from sync.protocol.keys import Signer
from tests.support.flushes import Seen

AT = "2025-10-13T09:00:00+08:00"


def signer_for(node_id: str) -> Signer:
    """A fixed key per node id (the same on every run)."""
    return Signer(node_id.encode().ljust(32, b"k")[:32])


def chain(
    signer: Signer, origin: str, count: int, *, after: SignedEntry | None = None, tag: str = ""
) -> list[SignedEntry]:
    """`count` entries of `origin` signed by `signer`, going on from `after` (or seq 1)."""
    out: list[SignedEntry] = []
    seq, prev = (after.seq, after.hash) if after is not None else (0, None)
    for _ in range(count):
        seq += 1
        raw = encode_entry(origin, seq, prev, AT, "test.note", {"n": seq, "tag": tag})
        entry = sign_entry(signer, raw)
        out.append(entry)
        prev = entry.hash
    return out


def front(url: str) -> PgStore:
    """A store as `serve` keeps it (projections deferred, `Seen` the projection), with a
    short wait for the lock."""
    store = PgStore(url, extensions=[Seen()])
    store.defer_projections()
    store.conn.execute("SET lock_timeout = '2s'")
    return store
