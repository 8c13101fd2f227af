"""A case's materials (DESIGN §8): scans and results as signed references to blobs.

`case.attached` names, for one case, files by SHA-256, size, chunk-list root, media type
and the material each stands for (`name`, matched to the catalogue item's materials list
where it can). The bytes live in the node's blob store (sync.blobs) and travel after the
entries that name them: up with the author's log, down (like the case's other events) to
the nodes the case concerns, so a result attached at the city reaches the village for 送达.

Rules (docs/protocol.md "Materials"):
- who may attach: the case's origin and its ancestors only, decided from ids alone (so every
  node gives the same verdict): a village attaching to its neighbour's case is quarantined
  and its bytes never fetched. At the command, this node must also hold the case, be its
  origin or be the node it was forwarded to.
- where a material is (`state`): `here` (held whole, checked), `dropped` (let go here after
  the parent receipted it), `on_the_way` (named by an entry held here, not whole yet, for
  less than `material_missing_hours`), `missing` (longer than that).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Annotated, Any

import msgspec
from msgspec import Meta

from sync import authority, blob_index
from sync.authority import Refusal
from sync.clock import parse_time
from sync.logstore import LogStore
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.blobs import MAX_BLOB_BYTES, SHA256, BlobRef
from sync.protocol.entry import SignedEntry, encode_entry, parse_envelope, register_body_check
from sync.protocol.errors import CaseError, CaseNotFoundError, CustodyError
from sync.protocol.ids import is_within
from tiers.cases.entries import MAX_LIST, Text, is_case_id
from tiers.cases.projection import load_case
from tiers.published import get_item

ATTACHED = "case.attached"
DEFAULT_MISSING_HOURS = 72
STATES = ("here", "on_the_way", "missing", "dropped")

# msgspec matches a pattern anywhere in the string (re.search), and `$` lets a final line
# break through: anchored at both ends, or "../x" + 64 hex digits would pass as a hash
Hex64 = Annotated[str, Meta(pattern=rf"^{SHA256.pattern}\Z")]
MediaType = Annotated[str, Meta(min_length=3, max_length=200, pattern=r"^[\w.+-]+/[\w.+-]+\Z")]


class Material(msgspec.Struct, forbid_unknown_fields=True):
    name: Text
    file: Text
    sha256: Hex64
    size: Annotated[int, Meta(ge=0, le=MAX_BLOB_BYTES)]
    root: Hex64
    media_type: MediaType

    def __post_init__(self) -> None:
        if self.name.isspace() or self.file.isspace():
            raise ValueError("name and file must be non-empty text")


class Attached(msgspec.Struct, kw_only=True):
    case_id: str
    materials: Annotated[list[Material], Meta(min_length=1, max_length=MAX_LIST)]

    def __post_init__(self) -> None:
        if not is_case_id(self.case_id):
            raise ValueError("case_id is malformed")


register_body_check(ATTACHED, Attached)


def _refs(fields: dict[str, Any]) -> list[BlobRef]:
    return [BlobRef(m["sha256"], m["size"], m["root"]) for m in fields["body"]["materials"]]


blob_index.register_refs(ATTACHED, _refs)


def _attach_authority(
    store: Any, owner: str | None, entry: SignedEntry, fields: Mapping[str, Any]
) -> Refusal | None:
    """Materials of a case come from its origin or the nodes above it, never from aside."""
    case_id = fields["body"]["case_id"]
    if is_within(case_id.split("-", 1)[0], entry.origin):
        return None
    return "material.not_on_path", {"case_id": case_id}


authority.register(ATTACHED, _attach_authority)

_DDL = """
CREATE TABLE IF NOT EXISTS case_materials (
    origin TEXT NOT NULL, seq INTEGER NOT NULL, position INTEGER NOT NULL,
    case_id TEXT NOT NULL, at TEXT NOT NULL, name TEXT NOT NULL, file TEXT NOT NULL,
    sha256 TEXT NOT NULL, size INTEGER NOT NULL, media_type TEXT NOT NULL,
    PRIMARY KEY (origin, seq, position)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS case_materials_case ON case_materials (case_id);
"""


class MaterialProjection:
    """`case_materials`: one row per material named by an admitted `case.attached`."""

    name = "case_materials"
    version = 1
    ddl = _DDL
    types: frozenset[str] | None = frozenset({ATTACHED})
    lazy = True

    def apply(self, store: LogStore, entry: SignedEntry, fields: dict[str, Any]) -> None:
        body = fields["body"]
        for position, m in enumerate(body["materials"]):
            store.execute(
                "INSERT OR IGNORE INTO case_materials (origin, seq, position, case_id, at, name,"
                " file, sha256, size, media_type) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (entry.origin, entry.seq, position, body["case_id"], fields["at"], m["name"],
                 m["file"], m["sha256"], m["size"], m["media_type"]),
            )  # fmt: skip

    def flush(self, store: LogStore) -> None:
        pass

    def discard(self) -> None:
        pass


# --- attaching ---------------------------------------------------------------------------


def media_type(path: Path) -> str:
    guessed, _ = mimetypes.guess_type(path.name, strict=False)
    return guessed or "application/octet-stream"


def material_name(file: Path, given: str | None, listed: Sequence[str]) -> str:
    """The material a file stands for: `--material`, else the catalogue's name the file's
    name contains (the longest such), else the file's name without its extension."""
    if given and given.strip():
        return given.strip()
    stem = file.stem
    matches = [name for name in listed if name and name in stem]
    return max(matches, key=len) if matches else stem


def _may_attach(node: Node, case_id: str) -> None:
    state = load_case(node.store, case_id).state
    if state is None:
        raise CaseNotFoundError("case.not_found", case_id=case_id)
    me = node.node_id
    if me not in (state.holder, state.origin, state.forward_to):
        raise CustodyError("material.not_holder", case_id=case_id, holder=state.holder)


def _named(path: Path, material: str | None, listed: Sequence[str], ref: BlobRef) -> dict[str, Any]:
    return {"name": material_name(path, material, listed), "file": path.name,
            "sha256": ref.sha256, "size": ref.size, "root": ref.root,
            "media_type": media_type(path)}  # fmt: skip


def _check_draft(node: Node, case_id: str, named: list[dict[str, Any]], at: str) -> None:
    """Refuse, before a byte is stored, an entry the log would refuse (more files than one
    names, a name too long, too big an entry): the same check, on refs of the longest size."""
    body = {"case_id": case_id, "materials": named}
    seq, prev = node.store.head(node.node_id)
    parse_envelope(encode_entry(node.node_id, seq + 1, prev, at, ATTACHED, body))


def attach(
    node: Node, case_id: str, files: Sequence[tuple[Path, IO[bytes]]], *,
    material: str | None = None, at: str | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Store each file (streamed, checked, deduplicated) and sign one `case.attached`
    naming them all. A refusal (a file too big, unreadable, the case not ours) attaches
    nothing; bytes already stored for a refused attach stay as unnamed blobs, which are
    neither listed nor sent."""
    _may_attach(node, case_id)
    state = load_case(node.store, case_id).state
    assert state is not None
    item = get_item(node.store, state.item_code)
    listed = item.materials if item is not None else ()
    limit = blob_index.limit_bytes(node.config.settings)
    stamp = node.clock.stamp(at)
    longest = BlobRef("0" * 64, MAX_BLOB_BYTES, "0" * 64)
    _check_draft(node, case_id, [_named(p, material, listed, longest) for p, _ in files], stamp)
    named: list[dict[str, Any]] = []
    for path, source in files:
        try:
            ref = node.blobs.add_file(source, limit, stamp)
        except OSError as exc:
            raise CaseError("material.unreadable", path=str(path), detail=exc.strerror) from None
        named.append(_named(path, material, listed, ref))
    with node.store.transaction():
        _may_attach(node, case_id)
        node.append(ATTACHED, {"case_id": case_id, "materials": named}, at=stamp)
    return named


# --- where each material is ----------------------------------------------------------------


@dataclass(frozen=True)
class Listed:
    name: str
    file: str
    sha256: str
    size: int
    media_type: str
    state: str
    attached_by: str
    attached_at: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def missing_after(settings: dict[str, Any]) -> timedelta:
    value = settings.get("material_missing_hours", DEFAULT_MISSING_HOURS)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        value = DEFAULT_MISSING_HOURS
    return timedelta(hours=value)


# A material's state (STATES) in SQL, of `m.sha256`; its one parameter is `_cutoff`: a
# material neither here nor let go, first named by an entry that arrived at or before it, is
# missing, after it on the way. Counted in the database, not a query or three a material
# (`status` at a city names millions). Times compare as text: every received_at is a stamp
# of this node's clock (whole seconds, +08:00), and PostgreSQL's collation is byte order.
_STATE = (
    "CASE WHEN EXISTS (SELECT 1 FROM blobs b WHERE b.sha256 = m.sha256) THEN 'here' "
    "WHEN EXISTS (SELECT 1 FROM blob_dropped d WHERE d.sha256 = m.sha256) THEN 'dropped' "
    "ELSE coalesce((SELECT CASE WHEN MIN(r.received_at) <= ? THEN 'missing' END "
    "FROM blob_refs r WHERE r.sha256 = m.sha256), 'on_the_way') END"
)  # (no blob_refs row: named by an entry not projected yet, on the way)


def _cutoff(node: Node) -> str:
    """A material named by an entry that arrived after this is still on the way; at or
    before it, missing (`material_missing_hours`); a setting reaching before year 1 means
    never missing ("" comes before every stamp)."""
    try:
        return (node.clock.now() - missing_after(node.config.settings)).isoformat()
    except OverflowError:
        return ""


def materials_of(node: Node, case_id: str) -> list[Listed]:
    """Every material named for `case_id` by an entry held here, in the order attached."""
    if load_case(node.store, case_id).state is None:
        raise CaseNotFoundError("case.not_found", case_id=case_id)
    rows = node.store.query(
        f"SELECT name, file, sha256, size, media_type, {_STATE}, origin, at "
        "FROM case_materials m WHERE case_id = ? ORDER BY at, origin, seq, position",
        (_cutoff(node), case_id),
    )
    return [Listed(*row) for row in rows]


def find(node: Node, case_id: str, wanted: str) -> Listed:
    """The material of `case_id` named `wanted` or with that SHA-256 (or a prefix of it)."""
    listed = materials_of(node, case_id)
    key = wanted.strip()
    hits = [m for m in listed if m.sha256 == key.lower()] or [m for m in listed if m.name == key]
    if not hits and len(key) >= 8:
        hits = [m for m in listed if m.sha256.startswith(key.lower())]
    unique = {m.sha256: m for m in hits}
    if not unique:
        raise CaseError("material.not_found", case_id=case_id, wanted=key)
    if len(unique) > 1:
        raise CaseError(
            "material.ambiguous", case_id=case_id, wanted=key,
            hashes=", ".join(sorted(h[:12] for h in unique)),
        )  # fmt: skip
    return next(iter(unique.values()))


def write_out(node: Node, case_id: str, wanted: str, out: Path) -> Listed:
    material = find(node, case_id, wanted)
    if material.state != "here":
        raise CaseError(
            f"material.{material.state}", case_id=case_id, name=material.name,
            sha256=material.sha256,
        )  # fmt: skip
    node.blobs.write_out(material.sha256, out)
    return material


def overdue(store: LogStore, now: datetime, after: timedelta) -> list[dict[str, Any]]:
    """Materials named by entries held here for longer than `after` whose bytes are not
    here (nor let go here on purpose): what `reconcile` reports as `missing_material`."""
    rows = store.query(
        "SELECT m.origin, m.seq, m.case_id, m.name, m.sha256, m.size, r.received_at "
        "FROM case_materials m JOIN blob_refs r ON r.sha256 = m.sha256 AND r.origin = m.origin"
        " AND r.seq = m.seq WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.sha256 = m.sha256)"
        " AND NOT EXISTS (SELECT 1 FROM blob_dropped d WHERE d.sha256 = m.sha256) "
        "ORDER BY m.origin, m.seq, m.position"
    )
    out = []
    for origin, seq, case_id, name, sha, size, received in rows:
        waited = now - parse_time(received)
        if waited >= after:
            out.append(
                {"node_id": origin, "case_id": case_id, "name": name, "sha256": sha,
                 "size": size, "seq": seq, "received_at": received,
                 "hours": int(waited.total_seconds() // 3600)}
            )  # fmt: skip
    return out


def summary(node: Node) -> dict[str, Any]:
    """`status --json` "materials": how many distinct materials named here are in each
    state, the bytes held, and how many the parent has not receipted yet."""
    out: dict[str, Any] = dict.fromkeys(STATES, 0)
    out.update(node.store.query(
        f"SELECT state, COUNT(*) FROM (SELECT {_STATE} AS state FROM "
        "(SELECT DISTINCT sha256 FROM case_materials) m) s GROUP BY state",
        (_cutoff(node),),
    ))  # fmt: skip
    (held_bytes,) = node.store.query("SELECT COALESCE(SUM(size), 0) FROM blobs")[0]
    parent = node.config.parent_id
    out["bytes_here"] = int(held_bytes)  # PostgreSQL sums bigint as numeric (Decimal)
    out["not_receipted_by_parent"] = (
        len(blob_index.up_for(node.store, node.node_id, parent)) if parent else 0
    )
    return out


i18n.register(
    {
        "material.not_on_path": (
            "{origin} may not attach materials to case {case_id}: only its origin and the "
            "nodes above it can",
            "{origin} 无权为办件 {case_id} 添加材料：只有办件的来源节点及其上级可以",
        ),
        "material.not_holder": (
            "case {case_id} is held by {holder}: attach materials where the case is",
            "办件 {case_id} 由 {holder} 持有：请在持有办件的节点添加材料",
        ),
        "material.unreadable": (
            "cannot read {path}: {detail}; nothing was attached",
            "无法读取 {path}：{detail}；未添加任何材料",
        ),
        "material.not_found": (
            "case {case_id} has no material {wanted}",
            "办件 {case_id} 没有材料 {wanted}",
        ),
        "material.ambiguous": (
            "case {case_id} has several materials {wanted} ({hashes}): give the SHA-256",
            "办件 {case_id} 有多份名为 {wanted} 的材料（{hashes}）：请给出 SHA-256",
        ),
        "material.on_the_way": (
            "{name} of case {case_id} is on its way here, not whole yet: sync, then try again",
            "办件 {case_id} 的 {name} 正在传来，尚未收齐：请同步后再试",
        ),
        "material.missing": (
            "{name} of case {case_id} has not arrived (sha256 {sha256}): ask the node that "
            "attached it to sync",
            "办件 {case_id} 的 {name} 未到达（sha256 {sha256}）：请联系添加它的节点同步",
        ),
        "material.dropped": (
            "{name} of case {case_id} was handed up and its copy here let go: open it at the "
            "parent (zhibao case material there)",
            "办件 {case_id} 的 {name} 已上交，本机副本已清理：请在上级节点打开（在该处运行 "
            "zhibao case material）",
        ),
    }
)
