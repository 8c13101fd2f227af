"""Which blobs (a case's materials) the entries held here name, and where they should go.

Sync knows nothing about cases: the domain registers, per entry type, which blobs an entry
names (`register_refs`) and who may fetch a blob (`register_access`). Tables:

- `blob_refs` (a lazy projection of admitted entries): every blob an entry held here names,
  with the entry and when it arrived. A quarantined entry names nothing.
- `blobs`: the blobs held here whole (sync.blobs writes it); `blob_dropped`: those let go on
  purpose, so nobody fetches them back; `blob_receipts`: the peers that signed that they
  hold a blob whole; `blob_progress`: how many chunks of a blob a peer signed it holds
  checked, not yet whole (a bundle resumes there). These are state, not projections: a
  rebuild leaves them alone.

Selections: `up_for` (what a parent still needs from this subtree), `down_for` (what a
descendant may be sent), `wanted` (what this node should fetch from above).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sync.logstore import LogStore
from sync.protocol import i18n
from sync.protocol.blobs import BlobRef
from sync.protocol.entry import SignedEntry
from sync.protocol.ids import is_within, subtree_end

DEFAULT_LIMIT_MB = 64  # a scanned 户口簿 at 300 dpi is a few MB; a long PDF tens

# entry fields (decoded, admitted) -> the blobs it names
RefsOf = Callable[[dict[str, Any]], list[BlobRef]]
# (store, client id, sha256) -> whether the client may be sent this blob
Access = Callable[[LogStore, str, str], bool]
_REFS: dict[str, RefsOf] = {}
_ACCESS: list[Access] = []

_REFS_DDL = """
CREATE TABLE IF NOT EXISTS blob_refs (
    sha256 TEXT NOT NULL, origin TEXT NOT NULL, seq INTEGER NOT NULL, size INTEGER NOT NULL,
    root TEXT NOT NULL, received_at TEXT NOT NULL, PRIMARY KEY (sha256, origin, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blob_refs_origin ON blob_refs (origin, seq);
"""
_STATE_DDL = """
CREATE TABLE IF NOT EXISTS blobs (
    sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, root TEXT NOT NULL, held_at TEXT NOT NULL,
    source TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blob_dropped (sha256 TEXT PRIMARY KEY, at TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blob_receipts (
    peer TEXT NOT NULL, sha256 TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (peer, sha256)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blob_progress (
    peer TEXT NOT NULL, sha256 TEXT NOT NULL, chunks INTEGER NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (peer, sha256)
) WITHOUT ROWID;
"""


def register_refs(entry_type: str, refs: RefsOf) -> None:
    """Let the domain that owns `entry_type` say which blobs such an entry names."""
    _REFS[entry_type] = refs


def register_access(rule: Access) -> None:
    """Let the domain grant a client a blob (the default: blobs its own subtree named)."""
    if rule not in _ACCESS:
        _ACCESS.append(rule)


class BlobRefs:
    """`blob_refs` as a lazy store extension over the entry types that name blobs."""

    name = "blob_refs"
    version = 1
    ddl = _REFS_DDL
    lazy = True

    def __init__(self) -> None:
        self.types: frozenset[str] | None = frozenset(_REFS)  # registered before a store opens

    def apply(self, store: LogStore, entry: SignedEntry, fields: dict[str, Any]) -> None:
        refs = _REFS[entry.type](fields)
        if not refs:
            return
        (received,) = store.query(
            "SELECT received_at FROM entries WHERE origin = ? AND seq = ?",
            (entry.origin, entry.seq),
        )[0]
        for ref in refs:
            store.execute(
                "INSERT OR IGNORE INTO blob_refs (sha256, origin, seq, size, root, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (ref.sha256, entry.origin, entry.seq, ref.size, ref.root, received),
            )

    def flush(self, store: LogStore) -> None:
        pass

    def discard(self) -> None:
        pass


class BlobState:
    """The tables of what is held, dropped and receipted (never rebuilt from the log)."""

    name = "blob_state"
    version = 1
    ddl = _STATE_DDL
    types: frozenset[str] | None = frozenset()
    lazy = False

    def apply(self, store: LogStore, entry: SignedEntry, fields: dict[str, Any]) -> None:
        pass

    def flush(self, store: LogStore) -> None:
        pass

    def discard(self) -> None:
        pass


def ref_of(
    store: LogStore, sha256: str, root: str | None = None, size: int | None = None
) -> BlobRef | None:
    """The blob an admitted entry held here names by `sha256` (the first such entry's
    size and root, or with `root` and `size` the first naming exactly those; entries naming
    one hash with another size or root are not believed: a blob is held only if its bytes
    match everything the entry used says)."""
    where, params = _exactly("sha256 = ?", [sha256], root, size)
    rows = store.query(
        f"SELECT size, root FROM blob_refs WHERE {where} ORDER BY received_at, origin, seq LIMIT 1",
        params,
    )
    return BlobRef(sha256, rows[0][0], rows[0][1]) if rows else None


def _exactly(
    where: str, params: list[Any], root: str | None, size: int | None
) -> tuple[str, list[Any]]:
    """`where` narrowed to `root` and `size` when given (no `? IS NULL`: PostgreSQL cannot
    tell the type of a parameter compared with nothing)."""
    if root is not None:
        where, params = where + " AND root = ?", [*params, root]
    if size is not None:
        where, params = where + " AND size = ?", [*params, size]
    return where, params


def ref_named_by(
    store: LogStore, sha256: str, subtree: str, root: str | None = None, size: int | None = None
) -> BlobRef | None:
    """The blob an admitted entry of `subtree` (a node and those below it) names by
    `sha256`: what a node of that subtree may send up (its first such entry's size and
    root; an entry from elsewhere naming the same hash otherwise cannot hold it back).
    With `root` (and `size`): only an entry naming that chunk list (and size) — the ones
    the sender holds, so a member of the subtree naming a shared hash (a blank form) with
    a wrong list or size first cannot hold the honest copy back."""
    where, params = _exactly(
        "sha256 = ? AND origin >= ? AND origin < ?", [sha256, subtree, subtree_end(subtree)],
        root, size,
    )  # fmt: skip
    rows = store.query(
        f"SELECT size, root FROM blob_refs WHERE {where} ORDER BY received_at, origin, seq LIMIT 1",
        params,
    )
    return BlobRef(sha256, rows[0][0], rows[0][1]) if rows else None


def may_fetch(store: LogStore, client: str, sha256: str) -> bool:
    """Whether `client` may be sent blob `sha256`: it came here from `client`'s subtree
    (so its bytes are that subtree's already: a village that let its copy go may fetch it
    back), or a domain rule grants it. Naming a hash grants nothing: a member that learns
    the hash of another's scan and names it on its own case gets no byte of it."""
    rows = store.query("SELECT source FROM blobs WHERE sha256 = ?", (sha256,))
    if rows and rows[0][0] is not None and is_within(rows[0][0], client):
        return True
    return any(rule(store, client, sha256) for rule in _ACCESS)


def up_for(store: LogStore, me: str, peer: str) -> list[BlobRef]:
    """Blobs held here that `peer` (an ancestor) should hold and has not receipted: those
    named by entries of this node's subtree (they go up with the logs), oldest first."""
    rows = store.query(
        "SELECT r.sha256, b.size, b.root, MIN(r.received_at) AS first FROM blob_refs r "
        "JOIN blobs b ON b.sha256 = r.sha256 WHERE r.origin >= ? AND r.origin < ? AND "
        "NOT EXISTS (SELECT 1 FROM blob_receipts p WHERE p.peer = ? AND p.sha256 = r.sha256) "
        "GROUP BY r.sha256 ORDER BY first, r.sha256",
        (me, subtree_end(me), peer),
    )
    return [BlobRef(sha, size, root) for sha, size, root, _ in rows]


def down_for(store: LogStore, client: str) -> list[BlobRef]:
    """Blobs held here that `client` (a descendant) may be sent and has not receipted:
    named by entries from outside its subtree that a domain rule grants it."""
    rows = store.query(
        "SELECT r.sha256, b.size, b.root, MIN(r.received_at) AS first FROM blob_refs r "
        "JOIN blobs b ON b.sha256 = r.sha256 WHERE NOT (r.origin >= ? AND r.origin < ?) AND "
        "NOT EXISTS (SELECT 1 FROM blob_receipts p WHERE p.peer = ? AND p.sha256 = r.sha256) "
        "GROUP BY r.sha256 ORDER BY first, r.sha256",
        (client, subtree_end(client), client),
    )
    return [
        BlobRef(sha, size, root) for sha, size, root, _ in rows if may_fetch(store, client, sha)
    ]


def wanted(store: LogStore, me: str) -> list[BlobRef]:
    """Blobs named by entries held here from outside this node's subtree (results from
    above) that are neither held nor let go: what a pull fetches from the parent."""
    rows = store.query(
        "SELECT r.sha256, r.size, r.root, MIN(r.received_at) AS first FROM blob_refs r "
        "WHERE NOT (r.origin >= ? AND r.origin < ?) "
        "AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.sha256 = r.sha256) "
        "AND NOT EXISTS (SELECT 1 FROM blob_dropped d WHERE d.sha256 = r.sha256) "
        "GROUP BY r.sha256 ORDER BY first, r.sha256",
        (me, subtree_end(me)),
    )
    return [BlobRef(sha, size, root) for sha, size, root, _ in rows]


def droppable(store: LogStore, me: str, parent: str) -> list[str]:
    """Blobs held here that `parent` receipted whole, named by entries of this node's
    subtree and by no entry from outside it (a result from above stays until delivered)."""
    low, high = me, subtree_end(me)
    rows = store.query(
        "SELECT b.sha256 FROM blobs b WHERE EXISTS (SELECT 1 FROM blob_receipts p WHERE "
        "p.peer = ? AND p.sha256 = b.sha256) AND EXISTS (SELECT 1 FROM blob_refs r WHERE "
        "r.sha256 = b.sha256 AND r.origin >= ? AND r.origin < ?) AND NOT EXISTS (SELECT 1 "
        "FROM blob_refs r WHERE r.sha256 = b.sha256 AND NOT (r.origin >= ? AND r.origin < ?))",
        (parent, low, high, low, high),
    )
    return [sha for (sha,) in rows]


def record_receipt(store: LogStore, peer: str, sha256: str, at: str) -> None:
    """`peer` signed that it holds blob `sha256` whole (call inside a transaction)."""
    store.execute(
        "INSERT OR IGNORE INTO blob_receipts (peer, sha256, at) VALUES (?, ?, ?)",
        (peer, sha256, at),
    )


def record_progress(store: LogStore, peer: str, sha256: str, chunks: int, at: str) -> None:
    """`peer` signed that it holds the first `chunks` chunks of `sha256` (call inside a
    transaction); the newest statement wins, even when it says less (a partial let go)."""
    store.execute(
        "INSERT INTO blob_progress (peer, sha256, chunks, at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(peer, sha256) DO UPDATE SET chunks = excluded.chunks, at = excluded.at "
        "WHERE excluded.at >= blob_progress.at",
        (peer, sha256, chunks, at),
    )


def progress(store: LogStore, peer: str) -> dict[str, int]:
    """sha256 → chunks `peer` last said it holds of a blob it does not hold whole."""
    rows = store.query("SELECT sha256, chunks FROM blob_progress WHERE peer = ?", (peer,))
    return {sha: chunks for sha, chunks in rows}


def receipted(store: LogStore, peer: str, sha256: str) -> bool:
    return bool(
        store.query(
            "SELECT 1 FROM blob_receipts WHERE peer = ? AND sha256 = ?", (peer, sha256)
        )
    )


def limit_bytes(settings: dict[str, Any]) -> int:
    """The largest blob this node takes (`material_max_mb` in node.toml)."""
    value = settings.get("material_max_mb", DEFAULT_LIMIT_MB)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        value = DEFAULT_LIMIT_MB
    return int(value * 1024 * 1024)


# why a node will not take or give a material (the wire's refusals, shown by both sides)
i18n.register(
    {
        "blob.bad_request": (
            "the material request is malformed",
            "材料请求格式错误",
        ),
        "blob.not_named": (
            "no entry of the sender's subtree held here names material {sha256}: it is not "
            "taken from this sender",
            "本节点所存该发送方下属的条目均未提及材料 {sha256}：不接收其上传",
        ),
        "blob.too_big_here": (
            "material {sha256} is larger than this node takes (material_max_mb in node.toml)",
            "材料 {sha256} 超过本节点的大小上限（见 node.toml 的 material_max_mb）",
        ),
        "blob.dropped_here": (
            "material {sha256} was let go here on purpose",
            "本节点已按设置清理材料 {sha256}",
        ),
        "blob.wrong_start": (
            "material {sha256}: this node holds its chunks up to {next}; send from there",
            "材料 {sha256}：本节点已有前 {next} 块，请从该处续传",
        ),
        "blob.beyond_end": (
            "material {sha256}: more was sent than its size: refused",
            "材料 {sha256}：发送的数据超出其大小，已拒收",
        ),
        "blob.not_yours": (
            "material {sha256} is not one this node may send you",
            "材料 {sha256} 不在本节点可向您发送的范围内",
        ),
    }
)
