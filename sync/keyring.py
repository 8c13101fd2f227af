"""Which key signs an origin's entry at a given seq: enrolments, rotations, revocations
(DESIGN §2 "the key enrolled for `origin` (at that seq)").

A node's log is signed by a succession of keys, each from a seq on:
- an **enrolment** by the node's parent (`node.enrolled`): the first from seq 1, a
  replacement after a loss (`continue_from` C) for the seqs after C;
- a **rotation** by the node itself (`node.rekeyed` at seq K, signed by the key in force at
  K): the new key signs the seqs after K. A rotation belongs to the enrolment in force where
  it was written (its `base`), so a later replacement overrides it;
- a **revocation** by any ancestor (`node.revoked`, cut-off N): no key enrolled before N
  signs anything after N — neither the revoked key nor a rotation it made. Only a
  replacement enrolment from a seq >= N brings the log back.

So for (origin, seq): base = the latest enrolment from below seq; key = the latest rotation
on that base from below seq, else the base's; refused when a cut-off below seq lies above
the base. `KeyRing.span` also says up to which seq that answer holds, so a run is verified
in pieces with one key each (sync.ingest).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sync.logstore import LogStore
from sync.protocol.entry import SignedEntry
from sync.protocol.ids import is_node_id, is_within
from sync.protocol.keys import check_identity_key, check_seal_key

REKEYED = "node.rekeyed"
REVOKED = "node.revoked"
USES_REPORT = "evidence.revoked_key_used"  # a node's counts, relayed up in its own log
REPORT_ROWS = 200
REKEY_MARK = b'"type":"node.rekeyed"'  # where a run must be cut: the key may change after it
REASON_MAX = 500
# Every check of an origin's keys reads all its records (a few rows), so a member may not
# pile them up with its own real key: 4,000 self-rotations in one push cost its parent two
# minutes inside one transaction. Beyond these, the entry is kept but quarantined.
MAX_ROTATIONS = 100  # per enrolment (a replacement starts a new count)
MAX_ENROLMENTS = 100  # per node: the first, and replacements after a loss

DDL = """
CREATE TABLE IF NOT EXISTS node_keys (
    node_id TEXT NOT NULL, kind TEXT NOT NULL, from_seq INTEGER NOT NULL,
    public_key BLOB NOT NULL, base INTEGER NOT NULL, by_origin TEXT, by_seq INTEGER,
    PRIMARY KEY (node_id, kind, from_seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS revocations (
    node_id TEXT NOT NULL, after_seq INTEGER NOT NULL, by_origin TEXT NOT NULL,
    by_seq INTEGER NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (by_origin, by_seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS revocations_node ON revocations (node_id);
CREATE TABLE IF NOT EXISTS revoked_reports (
    reporter TEXT NOT NULL, node_id TEXT NOT NULL, via TEXT NOT NULL, how TEXT NOT NULL,
    count INTEGER NOT NULL, max_seq INTEGER, first_at TEXT NOT NULL, last_at TEXT NOT NULL,
    by_seq INTEGER NOT NULL, PRIMARY KEY (reporter, node_id, via, how)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS revoked_uses (
    node_id TEXT NOT NULL, via TEXT NOT NULL, how TEXT NOT NULL, count INTEGER NOT NULL,
    max_seq INTEGER, first_at TEXT NOT NULL, last_at TEXT NOT NULL,
    PRIMARY KEY (node_id, via, how)
) WITHOUT ROWID;
"""

ENROL, ROTATE = "enrol", "rekey"


@dataclass(frozen=True)
class Answer:
    key: bytes | None  # None: nothing here may sign that seq
    through: int | None  # the answer holds for every seq up to this one (None: for ever)
    why: str | None = None  # "entry.revoked" or "entry.unknown_key" when key is None
    cut: int | None = None  # the revocation's cut-off, when revoked


@dataclass
class KeyRing:
    """The keys of one origin, read once (a few rows) and asked per seq."""

    enrols: list[tuple[int, bytes]]  # (from_seq, key), sorted
    rotations: list[tuple[int, bytes, int]]  # (from_seq, key, base), sorted
    cuts: list[int]  # revocation cut-offs, sorted

    @classmethod
    def load(cls, store: LogStore, node_id: str) -> KeyRing:
        enrols: list[tuple[int, bytes]] = []
        rotations: list[tuple[int, bytes, int]] = []
        for kind, start, key, base in store.query(
            "SELECT kind, from_seq, public_key, base FROM node_keys WHERE node_id = ? "
            "ORDER BY from_seq",
            (node_id,),
        ):
            if kind == ENROL:
                enrols.append((start, key))
            else:
                rotations.append((start, key, base))
        if not enrols:  # enrolled before key records existed (see `pin_legacy`)
            rows = store.query("SELECT public_key FROM nodes WHERE node_id = ?", (node_id,))
            if rows:
                enrols.append((0, rows[0][0]))
        cuts = [
            r[0]
            for r in store.query(
                "SELECT after_seq FROM revocations WHERE node_id = ? ORDER BY after_seq",
                (node_id,),
            )
        ]
        return cls(enrols, rotations, cuts)

    def _base(self, seq: int) -> tuple[int, bytes] | None:
        found = None
        for start, key in self.enrols:
            if start < seq:
                found = (start, key)
        return found

    def span(self, seq: int) -> Answer:
        """The key for `seq`, and up to which seq the same answer holds."""
        base = self._base(seq)
        later = [s for s, _ in self.enrols if s >= seq]
        through = min(later) if later else None
        if base is None:
            return Answer(None, through, "entry.unknown_key")
        start, key = base
        for cut in self.cuts:
            if start < cut < seq:
                return Answer(None, through, "entry.revoked", cut)
        for rot_start, rot_key, rot_base in self.rotations:
            if rot_base != start:
                continue
            if rot_start < seq:
                key = rot_key
            elif through is None or rot_start < through:
                through = rot_start
                break
        for cut in self.cuts:
            if cut >= seq and start < cut and (through is None or cut < through):
                through = cut
        return Answer(key, through)

    def key_at(self, seq: int) -> bytes | None:
        return self.span(seq).key

    def current(self) -> bytes | None:
        """The key the node signs with now (its next entry, whatever its seq)."""
        return self.span(1 << 62).key

    def previous(self) -> bytes | None:
        """The key a planned rotation retired, still used on the wire for a while (the
        node's requests, receipts and bundles) until everyone has its rotation."""
        answer = self.span(1 << 62)
        base = self._base(1 << 62)
        if answer.key is None or base is None:
            return None
        mine = [(s, k) for s, k, b in self.rotations if b == base[0]]
        if not mine:
            return None
        return mine[-2][1] if len(mine) > 1 else base[1]

    def revoked(self) -> bool:
        return self.span(1 << 62).why == "entry.revoked"

    def base_of(self, seq: int) -> int:
        base = self._base(seq)
        return base[0] if base is not None else 0


# --- projection (applied by sync.trust.Trust) ----------------------------------------------


def pin_legacy(store: LogStore, node_id: str) -> None:
    """A node enrolled before key records existed has none: record its key as enrolled,
    from seq 1, before a rotation or a replacement changes `nodes.public_key` (which
    `KeyRing.load` falls back to, and which turns into the key in force)."""
    store.execute(
        "INSERT OR IGNORE INTO node_keys (node_id, kind, from_seq, public_key, base, by_origin, "
        "by_seq) SELECT node_id, ?, 0, public_key, 0, enrolled_by, enrolled_seq FROM nodes "
        "WHERE node_id = ? AND NOT EXISTS (SELECT 1 FROM node_keys WHERE node_id = ?)",
        (ENROL, node_id, node_id),
    )


def record_enrolment(store: LogStore, entry: SignedEntry, body: Mapping[str, Any]) -> None:
    start = int(body.get("continue_from") or 0)
    store.execute(
        "INSERT INTO node_keys (node_id, kind, from_seq, public_key, base, by_origin, by_seq) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (body["node_id"], ENROL, start, bytes.fromhex(body["public_key"]), start, entry.origin,
         entry.seq),
    )  # fmt: skip


def record_rotation(store: LogStore, entry: SignedEntry, body: Mapping[str, Any]) -> None:
    base = KeyRing.load(store, entry.origin).base_of(entry.seq)
    store.execute(
        "INSERT INTO node_keys (node_id, kind, from_seq, public_key, base, by_origin, by_seq) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (entry.origin, ROTATE, entry.seq, bytes.fromhex(body["public_key"]), base, entry.origin,
         entry.seq),
    )  # fmt: skip


def record_revocation(
    store: LogStore, entry: SignedEntry, fields: Mapping[str, Any], received_at: str
) -> None:
    """Keep the revocation; entries of the revoked log already held here past its cut-off
    (taken before it arrived) are counted as the revoked key's use (`how` "held")."""
    body = fields["body"]
    store.execute(
        "INSERT OR IGNORE INTO revocations (node_id, after_seq, by_origin, by_seq, reason, at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (body["node_id"], body["after_seq"], entry.origin, entry.seq, body["reason"],
         fields["at"]),
    )  # fmt: skip
    node_id, ring = body["node_id"], KeyRing.load(store, body["node_id"])
    held = store.head(node_id)[0]
    late = [s for s in range(body["after_seq"] + 1, held + 1) if ring.key_at(s) is None]
    if late:
        record_use(store, node_id, node_id, "held", max(late), received_at, len(late))


def refresh_current(store: LogStore, node_id: str) -> None:
    """Keep `nodes.public_key` the key the node signs with now (when it has one)."""
    key = KeyRing.load(store, node_id).current()
    if key is not None:
        store.execute("UPDATE nodes SET public_key = ? WHERE node_id = ?", (key, node_id))


# --- who may write what ----------------------------------------------------------------------


def check_rotation_body(body: dict[str, Any]) -> None:
    if not isinstance(body.get("public_key"), str):
        raise ValueError("public_key missing")
    check_identity_key(body["public_key"])
    seal = body.get("seal_key")
    if seal is not None:
        if not isinstance(seal, str):
            raise ValueError("seal_key must be hex")
        check_seal_key(seal)


def check_revocation_body(body: dict[str, Any]) -> None:
    node_id, after, reason = body.get("node_id"), body.get("after_seq"), body.get("reason")
    if not isinstance(node_id, str) or not is_node_id(node_id):
        raise ValueError("node_id missing")
    if type(after) is not int or after < 0:
        raise ValueError("after_seq must be a whole number >= 0")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > REASON_MAX:
        raise ValueError("reason missing or too long")


def rotation_authority(
    store: LogStore, owner: str | None, entry: SignedEntry, fields: Mapping[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    """A node rotates only its own key, never back to a key it has used, and at most
    MAX_ROTATIONS times per enrolment. Judged again after the rotation was recorded (the
    lazy projections' pass, sync._projecting): its own record is not a use."""
    new = bytes.fromhex(fields["body"]["public_key"])
    rows = store.query(
        "SELECT kind, public_key, base FROM node_keys WHERE node_id = ? "
        "AND NOT (kind = ? AND from_seq = ?)",
        (entry.origin, ROTATE, entry.seq),
    )
    ring = KeyRing.load(store, entry.origin)
    if new in {key for _, key, _ in rows} or new == ring.key_at(entry.seq):
        return "key.reused", {"node_id": entry.origin}
    base = ring.base_of(entry.seq)
    if sum(kind == ROTATE and on == base for kind, _, on in rows) >= MAX_ROTATIONS:
        return "key.too_many", {"node_id": entry.origin, "limit": MAX_ROTATIONS}
    return None


def revocation_authority(
    store: LogStore, owner: str | None, entry: SignedEntry, fields: Mapping[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    """Only an ancestor revokes (the node's parent, a town above a village, the city)."""
    node_id = fields["body"]["node_id"]
    if node_id != entry.origin and is_within(node_id, entry.origin):
        return None
    return "revoke.not_ancestor", {"node_id": node_id}


def enrolment_key_authority(
    store: LogStore, entry: SignedEntry, body: Mapping[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    """A second enrolment of a node may not swap its key silently: a new key comes with
    the seq it continues from (`continue_from`), once per seq, and at most MAX_ENROLMENTS
    seqs per node."""
    start = int(body.get("continue_from") or 0)
    rows = store.query(
        "SELECT from_seq, public_key FROM node_keys WHERE node_id = ? AND kind = ?",
        (body["node_id"], ENROL),
    )
    same = [key for seq, key in rows if seq == start]
    if same and same[0] != bytes.fromhex(body["public_key"]):
        return "enrol.key_changed", {"node_id": body["node_id"]}
    if not same and len(rows) >= MAX_ENROLMENTS:
        return "enrol.too_many", {"node_id": body["node_id"], "limit": MAX_ENROLMENTS}
    return None


def record_use(
    store: LogStore, node_id: str, via: str, how: str, seq: int | None, at: str, count: int = 1
) -> None:
    """Count what a revoked key tried (`revoked_key_used`): per node, sender and way in."""
    store.execute(
        "INSERT INTO revoked_uses (node_id, via, how, count, max_seq, first_at, last_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(node_id, via, how) DO UPDATE SET "
        "count = revoked_uses.count + excluded.count, max_seq = NULLIF(CASE WHEN "
        "COALESCE(excluded.max_seq, 0) > COALESCE(revoked_uses.max_seq, 0) THEN "
        "COALESCE(excluded.max_seq, 0) ELSE COALESCE(revoked_uses.max_seq, 0) END, 0), "
        "last_at = excluded.last_at",  # portable: no two-argument MAX, columns qualified
        (node_id, via, how, count, seq, at, at),
    )


def signed_by_revoked(store: LogStore, node_id: str, check: Callable[[bytes], bool]) -> bool:
    """Whether `check` accepts one of the keys `node_id` ever had, and it was revoked: a
    request or bundle signed with a stolen key (counted by the caller as such)."""
    ring = KeyRing.load(store, node_id)
    if not ring.cuts:
        return False
    every = {key for _, key in ring.enrols} | {key for _, key, _ in ring.rotations}
    return any(check(key) for key in every)


def revoked_uses(store: LogStore) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT node_id, via, how, count, max_seq, first_at, last_at FROM revoked_uses "
        "ORDER BY node_id, via, how"
    )
    return [
        {"node_id": n, "via": v, "how": h, "count": c, "max_seq": m, "first_at": f, "last_at": la}
        for n, v, h, c, m, f, la in rows
    ]


def revocations(store: LogStore) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT node_id, after_seq, by_origin, by_seq, reason, at FROM revocations "
        "ORDER BY node_id, after_seq"
    )
    return [
        {"node_id": n, "after_seq": a, "by": b, "seq": s, "reason": r, "at": at}
        for n, a, b, s, r, at in rows
    ]


def uses_body(store: LogStore) -> dict[str, Any]:
    """The body of a `evidence.revoked_key_used` report: this node's own counts."""
    return {"uses": revoked_uses(store)[:REPORT_ROWS]}


def check_uses_body(body: dict[str, Any]) -> None:
    uses = body.get("uses")
    if not isinstance(uses, list) or len(uses) > REPORT_ROWS:
        raise ValueError(f"uses must be a list of at most {REPORT_ROWS}")
    for use in uses:
        if not isinstance(use, dict) or not all(
            isinstance(use.get(k), str) for k in ("node_id", "via", "how", "first_at", "last_at")
        ):
            raise ValueError("a use needs node_id, via, how, first_at, last_at")
        if type(use.get("count")) is not int or use["count"] < 1:
            raise ValueError("count must be a whole number >= 1")
        if use.get("max_seq") is not None and type(use["max_seq"]) is not int:
            raise ValueError("max_seq must be a whole number")


def uses_authority(
    store: LogStore, owner: str | None, entry: SignedEntry, fields: Mapping[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    """A node reports only what was tried on its own subtree."""
    for use in fields["body"]["uses"]:
        if not is_within(use["node_id"], entry.origin) or use["node_id"] == entry.origin:
            return "revoke.report_not_below", {"node_id": use["node_id"]}
    return None


def record_report(store: LogStore, entry: SignedEntry, body: Mapping[str, Any]) -> None:
    """Keep the reporter's latest counts (each report carries its totals, not increments)."""
    for use in body["uses"]:
        store.execute(
            "INSERT INTO revoked_reports (reporter, node_id, via, how, count, max_seq, first_at,"
            " last_at, by_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (reporter, node_id, via, how) DO UPDATE SET "  # PostgreSQL: a target
            "count = excluded.count, max_seq = excluded.max_seq, last_at = excluded.last_at, "
            "by_seq = excluded.by_seq WHERE excluded.by_seq > revoked_reports.by_seq",
            (entry.origin, use["node_id"], use["via"], use["how"], use["count"],
             use.get("max_seq"), use["first_at"], use["last_at"], entry.seq),
        )  # fmt: skip


def reported_uses(store: LogStore) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT reporter, node_id, via, how, count, max_seq, first_at, last_at "
        "FROM revoked_reports ORDER BY node_id, reporter, via, how"
    )
    return [
        {"reported_by": r, "node_id": n, "via": v, "how": h, "count": c, "max_seq": m,
         "first_at": f, "last_at": la}
        for r, n, v, h, c, m, f, la in rows
    ]  # fmt: skip
