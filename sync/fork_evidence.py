"""Fork evidence travels up (issue #10): a node that finds a fork of a log it holds whole —
an origin of its subtree, not itself — writes a signed report into its own log, and every
ancestor that gets the report records the fork as if both entries had reached it.

- An `evidence.fork` report carries both entries of the fork (origin, seq): their hashes,
  signatures, sizes, and their bytes (base64). Entries are at most MAX_ENTRY_BYTES, so two
  of them do not always fit in one entry: the bytes (held entry first, then the other)
  are cut into `parts` consecutive report entries (at most MAX_PARTS), each carrying the
  same origin, seq, hashes, signatures and sizes, and its chunk (`part` from 0). The
  report takes effect with its last part.
- Not `fork.`: those flow down to every node below their writer (sync.relevance), and a
  village's entries (applicants' names, ID numbers) must not reach every village. A report
  flows up with its writer's log, like the log it is about.
- Authority (sync.authority): a report counts only when its author is a strict ancestor of
  the forked origin (`forks.may_resolve`), and its last part only when the parts before it
  are the entries just below it in the author's log and both entries prove themselves:
  their hashes, their envelopes (origin, seq, size, body) and their signatures by the key
  in force for the origin at that seq here (sync.keyring). Otherwise it is quarantined
  (`fork.report_not_authority`, `fork.report_bad`) and freezes nobody: a member cannot
  forge a fork of a node with an entry it made up, since it cannot sign for that node.
- Applying (in `ForkDecisions`, eager, so ingest refuses the origin within the batch that
  brings the report): the fork is recorded against what this node holds at that seq (the
  reporter's held entry stands in when it holds nothing there yet), and remembered in
  `fork_reports` with both entries' bytes (so a later branch switch keeps them as evidence).
- Writing (`report`, after ingest on every way in: push served, bundle imported, round):
  every fork held here of an origin of this node's subtree that no report of this node
  covers yet is reported, all in one transaction.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sync import authority, keyring
from sync.authority import Refusal
from sync.logstore import LogStore
from sync.protocol import i18n
from sync.protocol.entry import (
    MAX_ENTRY_BYTES,
    SignedEntry,
    entry_hash,
    parse_envelope,
    register_body_check,
    signing_message,
)
from sync.protocol.errors import EntryError, ZhibaoError
from sync.protocol.ids import is_node_id, is_within
from sync.protocol.keys import verify

if TYPE_CHECKING:
    from sync.node import Node

REPORTED = "evidence.fork"
CHUNK = 18_000  # bytes of entries per part: 24,000 base64 characters, well inside an entry
MAX_PARTS = -(-2 * MAX_ENTRY_BYTES // CHUNK)  # two entries of the largest size
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")

DDL = """
CREATE TABLE IF NOT EXISTS fork_reports (
    origin TEXT NOT NULL, seq INTEGER NOT NULL, reporter TEXT NOT NULL,
    reporter_seq INTEGER NOT NULL, hash_a BLOB NOT NULL, raw_a BLOB NOT NULL, sig_a BLOB NOT NULL,
    hash_b BLOB NOT NULL, raw_b BLOB NOT NULL, sig_b BLOB NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (reporter, reporter_seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fork_reports_fork ON fork_reports (origin, seq);
"""


def _check_body(body: dict[str, Any]) -> None:
    if not is_node_id(body.get("origin")):
        raise ValueError("origin is not a node id")
    seq, parts, part = body.get("seq"), body.get("parts"), body.get("part")
    if type(seq) is not int or seq < 1:
        raise ValueError("seq must be a positive integer")
    if type(parts) is not int or not 1 <= parts <= MAX_PARTS:
        raise ValueError(f"parts must be 1 to {MAX_PARTS}")
    if type(part) is not int or not 0 <= part < parts:
        raise ValueError("part must be below parts")
    hashes, sigs, sizes = body.get("hashes"), body.get("sigs"), body.get("sizes")
    if not isinstance(hashes, list) or len(hashes) != 2 or hashes[0] == hashes[1]:
        raise ValueError("hashes must be two different hashes")
    if not all(isinstance(h, str) and _HEX64.fullmatch(h) for h in hashes):
        raise ValueError("hashes must be 64 lowercase hex digits")
    if not isinstance(sigs, list) or len(sigs) != 2:
        raise ValueError("sigs must be two signatures")
    if not all(isinstance(s, str) and _HEX128.fullmatch(s) for s in sigs):
        raise ValueError("sigs must be 128 lowercase hex digits")
    if not isinstance(sizes, list) or len(sizes) != 2:
        raise ValueError("sizes must be two sizes")
    if not all(type(n) is int and 1 <= n <= MAX_ENTRY_BYTES for n in sizes):
        raise ValueError(f"sizes must be 1 to {MAX_ENTRY_BYTES}")
    data = body.get("data")
    if not isinstance(data, str) or len(data) > 4 * CHUNK // 3 + 4:
        raise ValueError("data must be a base64 chunk")


register_body_check(REPORTED, _check_body)

_SAME = ("origin", "seq", "parts", "hashes", "sigs", "sizes")


def _entries(store: LogStore, author: str, author_seq: int, body: Mapping[str, Any]) -> (
    tuple[SignedEntry, SignedEntry] | str
):  # fmt: skip
    """The two entries a report's last part proves, or the name of what is wrong."""
    parts = body["parts"]
    if body["part"] != parts - 1:
        return "parts"
    chunks = []
    for offset in range(parts - 1, 0, -1):
        earlier = store.entry(author, author_seq - offset)
        if earlier is None or earlier.type != REPORTED:
            return "parts"
        other = earlier.fields()["body"]
        if any(other.get(k) != body[k] for k in _SAME) or other.get("part") != parts - 1 - offset:
            return "parts"
        chunks.append(other["data"])
    chunks.append(body["data"])
    try:
        data = base64.b64decode("".join(chunks), validate=True)
    except (binascii.Error, ValueError):
        return "data"
    size_a, size_b = body["sizes"]
    if len(data) != size_a + size_b:
        return "data"
    origin, seq = body["origin"], body["seq"]
    key = keyring.KeyRing.load(store, origin).key_at(seq)
    if key is None:
        return "key"
    out = []
    for raw, digest, sig in zip(
        (data[:size_a], data[size_a:]), body["hashes"], body["sigs"], strict=True
    ):
        if entry_hash(raw).hex() != digest:
            return "hash"
        try:
            fields = parse_envelope(raw, origin, seq)
        except EntryError:
            return "envelope"
        signed = SignedEntry(raw, bytes.fromhex(sig), entry_hash(raw), origin, seq, fields.type)
        if not verify(key, signing_message(signed.hash), signed.sig):
            return "signature"
        out.append(signed)
    return out[0], out[1]


def _authority(
    store: LogStore, owner: str | None, entry: SignedEntry, fields: Mapping[str, Any]
) -> Refusal | None:
    body = fields["body"]
    origin = body["origin"]
    if entry.origin == origin or not is_within(origin, entry.origin):
        return "fork.report_not_authority", {"fork_origin": origin}
    if body["part"] != body["parts"] - 1:
        return None  # a part alone does nothing
    proved = _entries(store, entry.origin, entry.seq, body)
    if isinstance(proved, str):
        return "fork.report_bad", {"fork_origin": origin, "fork_seq": body["seq"],
                                   "problem": proved}  # fmt: skip
    return None


authority.register(REPORTED, _authority)


def apply(store: LogStore, entry: SignedEntry, fields: dict[str, Any]) -> None:
    """A report admitted here (its last part: proved by the rule above): remember it and
    record the fork, when this node holds the origin's log whole."""
    body = fields["body"]
    if body["part"] != body["parts"] - 1:
        return
    proved = _entries(store, entry.origin, entry.seq, body)
    if isinstance(proved, str):  # the rule refused it already; never reached
        return
    a, b = proved
    origin, seq, at = body["origin"], body["seq"], fields["at"]
    store.execute(
        "INSERT OR IGNORE INTO fork_reports (origin, seq, reporter, reporter_seq, hash_a, raw_a, "
        "sig_a, hash_b, raw_b, sig_b, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (origin, seq, entry.origin, entry.seq, a.hash, a.raw, a.sig, b.hash, b.raw, b.sig, at),
    )
    owner = store.owner
    if owner is None or owner == origin or not is_within(origin, owner):
        return
    from sync import forks  # forks applies reports: imported here, not at the top

    held = store.hash_at(origin, seq)
    if held == a.hash or held is None:
        pairs = [(a.hash, b)]
    elif held == b.hash:
        pairs = [(b.hash, a)]
    else:  # a third entry: two forks of the one held here
        pairs = [(held, a), (held, b)]
    for kept, other in pairs:
        if forks.off_kept(store, origin, seq, other.fields()["prev"]) is None:
            store.record_fork(origin, seq, kept, other, at)


def raw_of(store: LogStore, origin: str, seq: int, digest: bytes) -> tuple[bytes, bytes] | None:
    """The bytes and signature of the entry `digest` at (origin, seq) that a report here
    carried, or None."""
    rows = store.query(
        "SELECT raw_a, sig_a FROM fork_reports WHERE origin = ? AND seq = ? AND hash_a = ? "
        "UNION ALL SELECT raw_b, sig_b FROM fork_reports WHERE origin = ? AND seq = ? "
        "AND hash_b = ? LIMIT 1",
        (origin, seq, digest, origin, seq, digest),
    )
    return (rows[0][0], rows[0][1]) if rows else None


# --- writing reports -------------------------------------------------------------------------

_UNREPORTED = """
SELECT f.origin, f.seq, e.raw, e.sig, e.hash, e.type, f.other_raw, f.other_sig, f.other_hash
FROM forks f JOIN entries e ON e.origin = f.origin AND e.seq = f.seq AND e.hash = f.held_hash
WHERE NOT EXISTS (
    SELECT 1 FROM fork_reports r WHERE r.reporter = ? AND r.origin = f.origin AND r.seq = f.seq
    AND ((r.hash_a = f.held_hash AND r.hash_b = f.other_hash)
         OR (r.hash_a = f.other_hash AND r.hash_b = f.held_hash))
)
ORDER BY f.origin, f.seq, f.other_hash
"""


def bodies(origin: str, seq: int, a: SignedEntry, b: SignedEntry) -> list[dict[str, Any]]:
    """The report of the fork (origin, seq) between `a` (held) and `b`, part by part."""
    data = a.raw + b.raw
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    return [
        {
            "origin": origin, "seq": seq, "hashes": [a.hash.hex(), b.hash.hex()],
            "sigs": [a.sig.hex(), b.sig.hex()], "sizes": [len(a.raw), len(b.raw)],
            "part": index, "parts": len(chunks), "data": base64.b64encode(chunk).decode(),
        }
        for index, chunk in enumerate(chunks)
    ]  # fmt: skip


def report(node: Node) -> list[tuple[str, int]]:
    """Report every fork held here that this node may report (an origin of its subtree,
    not itself) and has not reported yet: (origin, seq) of each. Nothing while the node
    cannot append (restoring, frozen, revoked …): the next call does it."""
    me, store = node.node_id, node.store
    if node.config.parent_id is None:  # the city: nobody above to tell
        return []
    done: list[tuple[str, int]] = []
    try:
        with store.transaction():
            for origin, seq, raw, sig, digest, kind, o_raw, o_sig, o_hash in store.query(
                _UNREPORTED, (me,)
            ):
                if origin == me or not is_within(origin, me):
                    continue
                held = SignedEntry(raw, sig, digest, origin, seq, kind)
                other = SignedEntry(o_raw, o_sig, o_hash, origin, seq, "")
                for body in bodies(origin, seq, held, other):
                    node.append(REPORTED, body)
                done.append((origin, seq))
    except ZhibaoError:
        return []
    return done


def reports(store: LogStore) -> list[dict[str, Any]]:
    """Every fork report held here (this node's and those from below)."""
    rows = store.query(
        "SELECT origin, seq, reporter, reporter_seq, hash_a, hash_b, at FROM fork_reports "
        "ORDER BY origin, seq, length(reporter), reporter, reporter_seq"
    )
    return [
        {"origin": o, "seq": s, "by": by, "entry_seq": by_seq, "held_hash": a.hex(),
         "other_hash": b.hex(), "at": at}
        for o, s, by, by_seq, a, b, at in rows
    ]  # fmt: skip


i18n.register(
    {
        "fork.report_not_authority": (
            "{origin} may not report a fork of {fork_origin}: it is not above it",
            "{origin} 无权报告 {fork_origin} 的分叉：它不是其上级",
        ),
        "fork.report_bad": (
            "the report of a fork of {fork_origin} at #{fork_seq} does not prove itself"
            " ({problem})",
            "关于 {fork_origin} 第 {fork_seq} 号分叉的报告无法自证（{problem}）",
        ),
    }
)
