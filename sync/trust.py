"""Enrolment and key lookup: who may sign for which origin (DESIGN §1).

Trust is rooted at the city's pinned key. A `node.enrolled` entry is valid only when its
author is the enrolled node's parent; the `nodes` table is a projection of those entries
(plus the pinned root), so any node can check any entry by walking village → town → city.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sync import authority, keyring
from sync.authority import Refusal
from sync.keyring import REKEYED, REVOKED
from sync.logstore import LogStore
from sync.protocol import i18n
from sync.protocol.entry import SignedEntry, register_body_check
from sync.protocol.errors import EnrolmentError
from sync.protocol.ids import check_node_id, city_of, parent_of, tier_of
from sync.protocol.keys import check_identity_key, check_seal_key

ENROLLED = "node.enrolled"

_DDL = """
CREATE TABLE IF NOT EXISTS nodes (
    node_id TEXT PRIMARY KEY, tier TEXT NOT NULL, name TEXT NOT NULL, parent_id TEXT,
    public_key BLOB NOT NULL, seal_key BLOB, enrolled_by TEXT, enrolled_seq INTEGER,
    enrolled_at TEXT
) WITHOUT ROWID;
"""


def enrolment_body(
    node_id: str,
    name: str,
    public_key_hex: str,
    seal_key_hex: str | None,
    continue_from: int | None = None,
) -> dict[str, Any]:
    """The body of a `node.enrolled` entry, after every check a parent must make."""
    tier = tier_of(node_id)
    parent = parent_of(node_id)
    check_node_id(node_id, tier, parent)
    check_identity_key(public_key_hex)
    if seal_key_hex:
        check_seal_key(seal_key_hex)
    if not name.strip():
        raise EnrolmentError("enrol.name_required")
    body: dict[str, Any] = {
        "node_id": node_id,
        "tier": tier,
        "name": name.strip(),
        "parent_id": parent,
        "public_key": public_key_hex.lower(),
        "seal_key": seal_key_hex.lower() if seal_key_hex else None,
    }
    if continue_from is not None:
        body["continue_from"] = continue_from
    return body


def _check_body(body: dict[str, Any]) -> None:
    for field in ("node_id", "tier", "name", "public_key"):
        if not isinstance(body.get(field), str):
            raise ValueError(f"{field} missing")
    if tier_of(body["node_id"]) != body["tier"] or body.get("parent_id") != parent_of(
        body["node_id"]
    ):
        raise ValueError("node_id does not fit tier/parent")
    check_identity_key(body["public_key"])
    if body.get("seal_key") is not None:
        check_seal_key(body["seal_key"])
    start = body.get("continue_from")
    if start is not None and (type(start) is not int or not 0 < start < 1 << 62):
        raise ValueError("continue_from must be a seq")


register_body_check(ENROLLED, _check_body)
register_body_check(REKEYED, keyring.check_rotation_body)
register_body_check(REVOKED, keyring.check_revocation_body)
register_body_check(keyring.USES_REPORT, keyring.check_uses_body)


class Trust:
    """The `nodes` projection as a store extension, and key lookups on it."""

    name = "trust"
    version = 1
    ddl = _DDL + keyring.DDL
    types: frozenset[str] | None = frozenset({ENROLLED, REKEYED, REVOKED, keyring.USES_REPORT})
    lazy = False  # ingest checks keys against it: always in step

    def apply(self, store: LogStore, entry: SignedEntry, fields: dict[str, Any]) -> None:
        body = fields["body"]  # admitted by the rules below
        if entry.type == REKEYED:
            keyring.pin_legacy(store, entry.origin)
            keyring.record_rotation(store, entry, body)
            keyring.refresh_current(store, entry.origin)
            if body.get("seal_key"):
                store.execute(
                    "UPDATE nodes SET seal_key = ? WHERE node_id = ?",
                    (bytes.fromhex(body["seal_key"]), entry.origin),
                )
            return
        if entry.type == REVOKED:
            keyring.record_revocation(store, entry, fields, fields["at"])
            return
        if entry.type == keyring.USES_REPORT:
            keyring.record_report(store, entry, body)
            return
        keyring.pin_legacy(store, body["node_id"])
        store.execute(
            "INSERT INTO nodes (node_id, tier, name, parent_id, public_key, seal_key, "
            "enrolled_by, enrolled_seq, enrolled_at) VALUES (?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(node_id) DO UPDATE SET name=excluded.name, public_key=excluded.public_key,"
            " seal_key=excluded.seal_key, enrolled_by=excluded.enrolled_by, "
            "enrolled_seq=excluded.enrolled_seq, enrolled_at=excluded.enrolled_at",
            (
                body["node_id"],
                body["tier"],
                body["name"],
                body["parent_id"],
                bytes.fromhex(body["public_key"]),
                bytes.fromhex(body["seal_key"]) if body.get("seal_key") else None,
                entry.origin,
                entry.seq,
                fields["at"],
            ),
        )
        keyring.record_enrolment(store, entry, body)
        keyring.refresh_current(store, body["node_id"])

    def flush(self, store: LogStore) -> None:
        pass

    def discard(self) -> None:
        pass


def _enrolment_authority(
    store: LogStore, owner: str | None, entry: SignedEntry, fields: Mapping[str, Any]
) -> Refusal | None:
    """An enrolment counts only when the enrolled node's parent wrote it, or, for the city,
    when the city enrols itself with the key pinned at `init`."""
    body = fields["body"]
    node_id = body["node_id"]
    if node_id == entry.origin and body["tier"] == "city":
        pinned = keyring.KeyRing.load(store, node_id).key_at(entry.seq)
        if pinned == bytes.fromhex(body["public_key"]):
            return keyring.enrolment_key_authority(store, entry, body)
    elif body["parent_id"] == entry.origin:
        return keyring.enrolment_key_authority(store, entry, body)
    return "enrol.not_parent", {"node_id": node_id}


authority.register(ENROLLED, _enrolment_authority)
authority.register(REKEYED, keyring.rotation_authority)
authority.register(REVOKED, keyring.revocation_authority)
authority.register(keyring.USES_REPORT, keyring.uses_authority)


def pin_root(store: LogStore, city_id: str, root_key: bytes, name: str = "") -> None:
    """Record the city's key, pinned at init: the root every enrolment chain ends in."""
    with store.transaction():
        store.execute(
            "INSERT OR IGNORE INTO nodes (node_id, tier, name, parent_id, public_key) "
            "VALUES (?, 'city', ?, NULL, ?)",
            (city_of(city_id), name, root_key),
        )
        store.execute(
            "INSERT OR IGNORE INTO node_keys (node_id, kind, from_seq, public_key, base) "
            "VALUES (?, ?, 0, ?, 0)",
            (city_of(city_id), keyring.ENROL, root_key),
        )


def public_key(store: LogStore, origin: str) -> bytes | None:
    """The key `origin` signs with now; None when unknown here, or revoked and not
    replaced (`revoked` tells which)."""
    return keyring.KeyRing.load(store, origin).current()


def key_at(store: LogStore, origin: str, seq: int) -> bytes | None:
    """The key enrolled for `origin` at `seq` (DESIGN §2); None if none may sign it."""
    return keyring.KeyRing.load(store, origin).key_at(seq)


_SEEN = "wire_key_seen:"  # meta: origin's current key has signed something here


def verify_wire(store: LogStore, origin: str, check: Callable[[bytes], bool]) -> bytes | None:
    """The key of `origin`'s that `check` accepts on a request, receipt, time answer or
    bundle (None if none): its current key, or the one a planned rotation retired — but
    only until the current one has been seen in use here. Then the retired key is dead."""
    ring = keyring.KeyRing.load(store, origin)
    current, previous = ring.current(), ring.previous()
    if current is None:
        return None
    seen = store.get_meta(_SEEN + origin) == current.hex()
    if check(current):
        if previous is not None and not seen:
            with store.transaction():
                store.set_meta(_SEEN + origin, current.hex())
        return current
    if previous is not None and not seen and check(previous):
        return previous
    return None


def revoked(store: LogStore, node_id: str) -> bool:
    """True when an ancestor revoked `node_id`'s key and no new one was enrolled since."""
    return keyring.KeyRing.load(store, node_id).revoked()


def seal_key(store: LogStore, node_id: str) -> bytes | None:
    rows = store.query("SELECT seal_key FROM nodes WHERE node_id = ?", (node_id,))
    return rows[0][0] if rows else None


def children(store: LogStore, node_id: str) -> list[str]:
    """Ids of the nodes enrolled directly below `node_id`."""
    rows = store.query("SELECT node_id FROM nodes WHERE parent_id = ? ORDER BY node_id", (node_id,))
    return [r[0] for r in rows]


def enrolled_nodes(store: LogStore) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT node_id, tier, name, parent_id, public_key, seal_key, enrolled_by, enrolled_at "
        "FROM nodes ORDER BY node_id"
    )
    return [
        {
            "node_id": n,
            "tier": t,
            "name": nm,
            "parent_id": p,
            "public_key": k.hex(),
            "seal_key": s.hex() if s else None,
            "enrolled_by": by,
            "enrolled_at": at,
        }
        for n, t, nm, p, k, s, by, at in rows
    ]


i18n.register(
    {
        "enrol.name_required": ("An enrolment needs a --name.", "登记需要 --name。"),
        "enrol.not_parent": (
            "{origin} may not enrol {node_id}: only its parent can.",
            "{origin} 无权登记 {node_id}：只有其直接上级可以登记。",
        ),
        "enrol.key_changed": (
            "{node_id} is already enrolled with another key: a new key needs --continue-from "
            "SEQ (the seq after which it signs)",
            "{node_id} 已用另一密钥登记：更换密钥须用 --continue-from SEQ"
            "（新密钥从该序号之后签名）",
        ),
        "key.reused": (
            "{node_id} may not rotate to a key it has already used",
            "{node_id} 不能轮换回已用过的密钥",
        ),
        "revoke.report_not_below": (
            "{origin} may not report on {node_id}: a node reports only on nodes below it",
            "{origin} 无权报告 {node_id}：只能报告其下级节点",
        ),
        "key.too_many": (
            "{node_id} may not rotate its key more than {limit} times under one enrolment",
            "{node_id} 在同一次登记下轮换密钥不能超过 {limit} 次",
        ),
        "enrol.too_many": (
            "{node_id} may not be enrolled with more than {limit} keys",
            "{node_id} 登记的密钥不能超过 {limit} 个",
        ),
        "revoke.not_ancestor": (
            "{origin} may not revoke {node_id}: only a node above it can",
            "{origin} 无权吊销 {node_id}：只有其上级节点可以",
        ),
        "enrol.not_below": (
            "This node ({origin}) can only enrol nodes directly below it, not {node_id}.",
            "本节点（{origin}）只能登记直属下级，不能登记 {node_id}。",
        ),
    }
)
