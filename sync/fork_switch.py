"""Giving way to a fork decision (issue #10): where the decision in force for (origin, seq)
keeps the entry this node does not hold, the held branch from seq on leaves the log.

`switch`, inside one transaction (a crash leaves the node as it was, or switched):
- the held entries of the origin from seq on move to `fork_abandoned` (kept as evidence,
  with the decision that dropped them), their quarantine and signature marks go with them;
  this is the one place entries leave `entries` (`store.drop_branch`: on SQLite the
  append-only trigger is dropped and put back around the one DELETE, on PostgreSQL the
  trigger lets this one delete through, sync.pg.schema);
- the head goes back to seq - 1 (`drop_branch` too), and the kept entry — from the fork's
  evidence (`forks`, or a report, sync.fork_evidence) — is verified again (hash,
  envelope, signature by the key in force at seq) and appended when it continues what is
  held; the rest of the kept branch comes by normal sync;
- the forks at (origin, seq) are rewritten as held = the kept entry, other = each losing
  one, resolved; forks above seq (on the dropped branch) are marked resolved;
- every lazy projection (cases, figures, catalogue …) is made again from the log
  (`Store.rebuild`).

Refused (the fork stays `switch_needed`, frozen): at the origin itself — its own log lost,
it must be restored from its parent (`fork.switch_self`); and when the dropped branch
holds an entry an eager projection used (keys, fork decisions, fork reports: a copied
town's log), which `rebuild` does not remake (`fork.switch_eager`).

`switch_decided` does every switch a decision asks for; ingest calls it before each run
and at its end (so a decision and the kept branch can arrive in one batch), and
`fork resolve --keep other` right after appending its decision.
"""

from __future__ import annotations

from typing import Any

from sync import fork_evidence, keyring
from sync.logstore import LogStore
from sync.protocol import i18n
from sync.protocol.entry import SignedEntry, entry_hash, parse_envelope, signing_message
from sync.protocol.errors import EntryError, ForkError
from sync.protocol.keys import verify

DDL = """
CREATE TABLE IF NOT EXISTS fork_abandoned (
    origin TEXT NOT NULL, seq INTEGER NOT NULL, hash BLOB NOT NULL, sig BLOB NOT NULL,
    raw BLOB NOT NULL, type TEXT NOT NULL, received_at TEXT NOT NULL,
    fork_seq INTEGER NOT NULL, kept_hash BLOB NOT NULL, decided_by TEXT NOT NULL,
    abandoned_at TEXT NOT NULL, PRIMARY KEY (origin, seq, hash)
) WITHOUT ROWID;
"""


def blocked(store: LogStore, origin: str, seq: int) -> str | None:
    """Why this node may not give up its branch of `origin` from `seq` on (an i18n key),
    or None when it may."""
    if origin == store.owner:
        return "fork.switch_self"
    eager = store._eager_types
    kinds = {k for (k,) in store.query(
        "SELECT DISTINCT type FROM entries WHERE origin = ? AND seq >= ?", (origin, seq)
    )}  # fmt: skip
    if kinds and (eager is None or kinds & eager):
        return "fork.switch_eager"
    return None


def waiting(store: LogStore) -> list[tuple[str, int, dict[str, Any]]]:
    """(origin, seq, decision in force) of every fork here decided for the entry this node
    does not hold, lowest seq first."""
    out = []
    for origin, seq in store.query(
        "SELECT DISTINCT origin, seq FROM forks WHERE resolved = 0 ORDER BY origin, seq"
    ):
        decision = store.fork_decision(origin, seq)
        if decision is not None:
            out.append((origin, seq, decision))
    return out


def switch_decided(
    store: LogStore, at: str, passed: set[tuple[str, int, str, int]] | None = None
) -> list[tuple[str, int]]:
    """Inside a transaction: every switch a decision asks for that this node may make
    (see `blocked`); (origin, seq) of each made. `passed` (one per ingest, which asks
    before every run) remembers the (origin, seq, decision) found blocked: while its fork
    is unresolved the origin is frozen, no entry of it comes in, and `blocked` (a scan of
    its log from seq on) would say the same again."""
    done: list[tuple[str, int]] = []
    for origin, seq, decision in waiting(store):
        if any(o == origin for o, _ in done):
            continue
        key = (origin, seq, str(decision["by"]), int(decision["entry_seq"]))
        if passed is not None and key in passed:
            continue
        if blocked(store, origin, seq) is not None:
            if passed is not None:
                passed.add(key)
            continue
        try:
            switch(store, origin, seq, at)
        except ForkError:  # the kept entry does not prove itself: stay frozen
            continue
        done.append((origin, seq))
        if passed is not None:  # its log changed: ask again
            passed.difference_update({k for k in passed if k[0] == origin})
    return done


def _evidence(store: LogStore, origin: str, seq: int, digest: bytes) -> tuple[bytes, bytes] | None:
    rows = store.query(
        "SELECT other_raw, other_sig FROM forks WHERE origin = ? AND seq = ? AND other_hash = ? "
        "UNION ALL SELECT raw, sig FROM entries WHERE origin = ? AND seq = ? AND hash = ? "
        "UNION ALL SELECT raw, sig FROM fork_abandoned WHERE origin = ? AND seq = ? AND hash = ?"
        " LIMIT 1",
        (origin, seq, digest) * 3,
    )
    if rows:
        return rows[0][0], rows[0][1]
    return fork_evidence.raw_of(store, origin, seq, digest)


def _verified(store: LogStore, origin: str, seq: int, raw: bytes, sig: bytes) -> SignedEntry:
    """The kept entry, proved again here: envelope, and signature by the key in force."""
    digest = entry_hash(raw)
    key = keyring.KeyRing.load(store, origin).key_at(seq)
    try:
        fields = parse_envelope(raw, origin, seq)
    except EntryError:
        key = None
    if key is None or not verify(key, signing_message(digest), sig):
        raise ForkError("fork.kept_unproved", origin=origin, seq=seq)
    return SignedEntry(raw, sig, digest, origin, seq, fields.type)


def switch(store: LogStore, origin: str, seq: int, at: str) -> SignedEntry | None:
    """Inside a transaction: give up the branch of `origin` held here from `seq` on for
    the entry the decision in force keeps (module doc); the kept entry if it was appended.
    ForkError (nothing changed, the transaction rolls back) when it may not."""
    decision = store.fork_decision(origin, seq)
    if decision is None:
        raise ForkError("fork.none", origin=origin)
    why = blocked(store, origin, seq)
    if why is not None:
        raise ForkError(why, origin=origin, seq=seq)
    kept = bytes.fromhex(decision["kept_hash"])
    found = _evidence(store, origin, seq, kept)
    entry = _verified(store, origin, seq, *found) if found is not None else None
    held = store.hash_at(origin, seq)
    if held == kept:  # nothing to give up
        store.settle_fork(origin, seq)
        return None
    rows = store.query(
        "SELECT held_hash, other_hash, detected_at FROM forks WHERE origin = ? AND seq = ?",
        (origin, seq),
    )
    losing = {h for r in rows for h in r[:2]} - {kept}
    store.execute(
        "INSERT OR IGNORE INTO fork_abandoned (origin, seq, hash, sig, raw, type, received_at, "
        "fork_seq, kept_hash, decided_by, abandoned_at) SELECT origin, seq, hash, sig, raw, "
        "type, received_at, ?, ?, ?, ? FROM entries WHERE origin = ? AND seq >= ?",
        (seq, kept, decision["by"], at, origin, seq),
    )
    evidence = {h: _evidence(store, origin, seq, h) for h in losing}
    whole = bool(store.query("SELECT 1 FROM heads WHERE origin = ?", (origin,)))
    store.drop_branch(origin, seq)
    for table in ("quarantine", "signed_tips"):
        store.execute(f"DELETE FROM {table} WHERE origin = ? AND seq >= ?", (origin, seq))
    below = store.hash_at(origin, seq - 1)
    detected = min(r[2] for r in rows)
    store.execute("DELETE FROM forks WHERE origin = ? AND seq = ?", (origin, seq))
    for digest, found_raw in sorted(evidence.items()):
        if found_raw is not None:
            store.execute(
                "INSERT OR IGNORE INTO forks (origin, seq, held_hash, other_hash, other_raw, "
                "other_sig, detected_at, resolved) VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
                (origin, seq, kept, digest, found_raw[0], found_raw[1], detected),
            )
    store.execute("UPDATE forks SET resolved = 1 WHERE origin = ? AND seq > ?", (origin, seq))
    appended = None
    if entry is not None:
        prev = entry.fields()["prev"]
        if not whole:
            store.insert([entry], at, whole=False)
            appended = entry
        elif store.head(origin)[0] == seq - 1 and prev == (below.hex() if below else None):
            store.insert([entry], at)
            store.mark_signed(origin, seq)
            appended = entry
    store.rebuild()
    return appended


def abandoned(store: LogStore) -> list[dict[str, Any]]:
    """The entries this node gave up for a fork decision, kept as evidence."""
    rows = store.query(
        "SELECT origin, seq, hash, type, json_extract(CAST(raw AS TEXT), '$.at'), fork_seq, "
        "kept_hash, decided_by, abandoned_at FROM fork_abandoned ORDER BY origin, seq, hash"
    )
    return [
        {"origin": o, "seq": s, "hash": h.hex(), "type": t, "at": a, "fork_seq": f,
         "kept_hash": k.hex(), "by": by, "abandoned_at": when}
        for o, s, h, t, a, f, k, by, when in rows
    ]  # fmt: skip


i18n.register(
    {
        "fork.switch_self": (
            "This node's own log lost the decision on the fork of {origin} at #{seq}: it does"
            " not switch by itself; move node.db aside and run `zhibao restore --force`.",
            "本节点自身日志在第 {seq} 号分叉裁定中未被保留：不会自动切换；"
            "请移开 node.db 后运行 `zhibao restore --force`。",
        ),
        "fork.switch_eager": (
            "The entries of {origin} held here from #{seq} on include key or fork records:"
            " this node cannot give them up by itself; restore it from its parent.",
            "本处持有的 {origin} 自第 {seq} 号起的条目含密钥或分叉记录：本节点无法自动放弃；"
            "请从上级恢复本节点。",
        ),
        "fork.kept_unproved": (
            "The kept entry of {origin} at #{seq} does not prove itself here (signature or"
            " envelope): nothing was changed.",
            "保留的 {origin} 第 {seq} 号条目在本处无法验证（签名或信封）：未作任何更改。",
        ),
    }
)
