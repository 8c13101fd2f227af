"""Materials in bundles at a node: which to carry, writing them out, taking them in.

The format is in `sync.protocol.bundle_materials`. Up to an ancestor a bundle carries the
materials of this subtree it has not receipted (`blob_index.up_for`), down to a descendant
those it may be sent (`blob_index.down_for`), oldest first, each from the chunk the
recipient's last receipt said it had (else from 0), within the bundle's size
bound: the first material that does not fit whole is carried in part, the rest left for
the next bundle. Entries are never left out for materials.

Taking them in (after the entries part committed, so the entries that name them are
admitted): each material is checked against the admitted entry that names it (from below,
an entry of the sender's subtree, as over the wire: sync.blob_wire), streamed
from the file chunk by chunk into `sync.blobs.Receiving` (a chunk in memory at a time),
held only when whole and matching its SHA-256. A material refused (not named by an
admitted entry here, not as named, over `material_max_mb`, a chunk that does not open or
match) is stepped over and the rest taken; a file cut short keeps every whole checked
chunk it brought and holds nothing partial.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from sync import blob_index, trust
from sync.blobs import Receiving
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.blobs import (
    CHUNK,
    DATA,
    LIST,
    SHA256,
    BlobRef,
    check_chunk,
    check_list,
    chunk_size,
    encode_frame,
)
from sync.protocol.bundle import BundleFile
from sync.protocol.bundle_materials import (
    FRAME_HEAD,
    LENGTH,
    MAX_HEAD_BYTES,
    OPENING,
    SEALED_EXTRA,
    Part,
    check_opening,
    chunks_within,
    context_of,
    damaged,
    encode_head,
    make_progress,
    open_payload,
    opening,
    part_bytes,
    payload_length,
    progress_message,
    read_head,
    read_progress,
    seal_payload,
)
from sync.protocol.errors import BlobError, BundleError, RefusedError, ZhibaoError
from sync.protocol.ids import is_within
from sync.protocol.keys import verify
from sync.protocol.messages import BLOB_RECEIPT_DOMAIN, make_blob_receipt, read_blob_receipt

DEFAULT_BUNDLE_MAX_MB = 1024  # well under FAT32's 4 GiB per file, the common USB stick
_MIB = 1024 * 1024


def max_bytes(settings: dict[str, Any], given_mb: float | None = None) -> int:
    """The size bound of a bundle: `given_mb`, else `bundle_max_mb` in node.toml."""
    value: Any = given_mb if given_mb is not None else settings.get("bundle_max_mb")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        value = DEFAULT_BUNDLE_MAX_MB
    return int(value * _MIB)


# --- export --------------------------------------------------------------------------------


@dataclass
class Carried:
    """The materials a bundle carries (each with its checked chunk list) and those left."""

    parts: list[Part] = field(default_factory=list)
    lists: list[bytes] = field(default_factory=list)
    left: int = 0
    left_bytes: int = 0
    unreadable: list[BlobError] = field(default_factory=list)  # held here but damaged

    @property
    def size(self) -> int:
        """The material bytes carried (chunks, before sealing)."""
        return sum(chunk_size(p.ref.size, i) for p in self.parts for i in range(p.first, p.end))

    @property
    def partial(self) -> int:
        """Materials carried not to their last chunk (the size bound cut them)."""
        return sum(1 for p in self.parts if p.end < p.ref.chunks)

    def to_json(self) -> dict[str, Any]:
        return {
            "carried": len(self.parts),
            "bytes": self.size,
            "partial": self.partial,
            "left": self.left,
            "left_bytes": self.left_bytes,
            "unreadable": [exc.params.get("sha256", "") for exc in self.unreadable],
        }


def to_send(node: Node, to: str) -> list[BlobRef]:
    """The materials `to` should get from here and has not receipted, oldest first."""
    store, me = node.store, node.node_id
    if is_within(me, to):
        return blob_index.up_for(store, me, to)
    return blob_index.down_for(store, to)


def plan(node: Node, to: str, budget: int, *, sealed: bool) -> Carried:
    """What fits in `budget` bytes of materials part (see module doc)."""
    carried = Carried()
    refs = to_send(node, to)
    started = blob_index.progress(node.store, to)
    used = OPENING
    for n, ref in enumerate(refs):
        first = min(started.get(ref.sha256, 0), ref.chunks - 1)
        part = Part(ref, first, ref.chunks)
        if used + part_bytes(part, sealed) <= budget:
            if _listed(node, ref, carried):
                carried.parts.append(part)
                used += part_bytes(part, sealed)
            continue
        end = chunks_within(ref, first, budget - used, sealed)  # the first that does not fit
        if end > first and _listed(node, ref, carried):
            carried.parts.append(Part(ref, first, end))
            n += 1
        rest = refs[n:]
        carried.left, carried.left_bytes = len(rest), sum(r.size for r in rest)
        break
    return carried


def _listed(node: Node, ref: BlobRef, carried: Carried) -> bool:
    """Read `ref`'s chunk list into `carried`; False (noted) if the copy here is damaged."""
    try:
        digests = node.blobs.chunk_list(ref)
        check_list(ref, digests)
    except BlobError:
        carried.unreadable.append(BlobError("blob.corrupt", sha256=ref.sha256))
        return False
    carried.lists.append(digests)
    return True


def write(
    node: Node, carried: Carried, header_raw: bytes, seal_to: bytes | None, out: IO[bytes]
) -> int:
    """Stream the materials part to `out`, a chunk at a time; the bytes written.
    BlobError if a copy here changed since it was planned (write nothing then)."""
    if not carried.parts:
        return 0
    context = context_of(header_raw)
    written = out.write(opening())
    for position, (part, digests) in enumerate(zip(carried.parts, carried.lists, strict=True)):
        ref = part.ref
        written += out.write(encode_head(part, position, context, seal_to))
        listed = seal_payload(digests, seal_to, context, ref.sha256, LIST, 0)
        written += out.write(encode_frame(LIST, 0, listed))
        for index, data in _chunks(node, part, digests):
            sealed = seal_payload(data, seal_to, context, ref.sha256, DATA, index)
            written += out.write(encode_frame(DATA, index, sealed))
    return written


def _chunks(node: Node, part: Part, digests: bytes) -> Iterator[tuple[int, bytes]]:
    """The chunks of `part` read from the copy here, each checked against its list;
    BlobError (`blob.corrupt`) if it cannot be read or no longer matches."""
    ref = part.ref
    try:
        src = open(node.blobs.path(ref.sha256), "rb")  # noqa: SIM115 (closed below)
    except OSError:
        raise BlobError("blob.corrupt", sha256=ref.sha256) from None
    with src:
        src.seek(part.first * CHUNK)
        for index in range(part.first, part.end):
            try:
                data = src.read(chunk_size(ref.size, index))
                check_chunk(ref, digests, index, data)
            except (OSError, BlobError):
                raise BlobError("blob.corrupt", sha256=ref.sha256) from None
            yield index, data


# --- import --------------------------------------------------------------------------------


class _Cut(Exception):
    """The file ended before the materials part did."""


class _Source:
    """The materials part of a file: exact reads, and steps over bytes not wanted."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        here = handle.tell()
        self.end = handle.seek(0, os.SEEK_END)
        handle.seek(here)

    def read(self, size: int) -> bytes:
        data = self.handle.read(size)
        if len(data) < size:
            raise _Cut
        return data

    def skip(self, size: int) -> None:
        if self.handle.tell() + size > self.end:
            self.handle.seek(0, os.SEEK_END)
            raise _Cut
        self.handle.seek(size, os.SEEK_CUR)


@dataclass
class Taken:
    """What an import did with a bundle's materials (JSON keys stable)."""

    declared: int = 0
    held: list[str] = field(default_factory=list)  # whole here now
    new: int = 0  # of those, made whole by this import
    partial: dict[str, int] = field(default_factory=dict)  # sha256 → chunks kept, checked
    refused: list[tuple[str, ZhibaoError]] = field(default_factory=list)
    cut: bool = False

    @property
    def not_whole(self) -> int:
        """Declared materials neither held nor refused: partial or never reached."""
        return self.declared - len(self.held) - len(self.refused)

    def to_json(self) -> dict[str, Any]:
        return {
            "declared": self.declared,
            "held": len(self.held),
            "new": self.new,
            "partial": self.not_whole,
            "refused": len(self.refused),
            "cut_short": self.cut,
            "refusals": [
                {"sha256": sha, "reason": exc.key, "message": str(exc)} for sha, exc in self.refused
            ],
            "chunks_kept": dict(self.partial),
        }


def take(node: Node, handle: IO[bytes], bundle: BundleFile, at: str) -> Taken:
    """Take in the materials part from `handle` (at its first byte), one chunk at a time."""
    taken = Taken(declared=bundle.blobs)
    if not bundle.blobs:
        return taken
    node.store.catch_up()  # the entries just imported name what comes
    intake = _Intake(node, bundle, _Source(handle), taken, at)
    position = 0
    try:
        check_opening(intake.source.read(OPENING))
        for position in range(bundle.blobs):
            if not intake.material(position):
                break
    except _Cut:
        taken.cut = True
    except BundleError as exc:
        taken.refused.append((f"#{position + 1}", exc))
    return taken


def _frames(source: _Source, part: Part, position: int) -> Iterator[tuple[bytes, int, int]]:
    """The frames of `part` in the order they must come: (kind, index, payload length);
    the caller reads or skips each payload. BundleError if they do not come so."""
    expected = [(LIST, 0), *((DATA, i) for i in range(part.first, part.end))]
    for kind, index in expected:
        got_kind, got_index, length = FRAME_HEAD.unpack(source.read(FRAME_HEAD.size))
        if (got_kind, got_index) != (kind, index):
            raise damaged(position, "a material's frames are out of order")
        yield kind, index, length


def _judge(node: Node, sender: str, ref: BlobRef) -> ZhibaoError | None:
    """Why this node refuses `ref` from a bundle of `sender`; None if it takes it.
    From below, an entry of the sender's subtree must name it (as over the wire, so an
    entry from elsewhere naming the hash cannot hold it back); from above, any entry."""
    store, sha = node.store, ref.sha256
    if is_within(sender, node.node_id):
        if blob_index.ref_named_by(store, sha, sender) is None:
            return BlobError("blob.not_named", sha256=sha)
        exact = blob_index.ref_named_by(store, sha, sender, ref.root, ref.size)
    elif blob_index.ref_of(store, sha) is None:
        return BlobError("bundle.material_unnamed", sha256=sha)
    else:  # any entry naming exactly this: one naming the hash first otherwise holds it back
        exact = blob_index.ref_of(store, sha, ref.root, ref.size)
    if exact != ref:
        return BlobError("bundle.material_not_as_named", sha256=sha)
    limit = blob_index.limit_bytes(node.config.settings)
    if ref.size > limit:
        return BlobError(
            "bundle.material_too_big", sha256=ref.sha256, size_mb=f"{ref.size / _MIB:.1f}",
            limit_mb=f"{limit / _MIB:g}",
        )  # fmt: skip
    return None


class _Intake:
    """One bundle's materials part being taken in, material by material."""

    def __init__(
        self, node: Node, bundle: BundleFile, source: _Source, taken: Taken, at: str
    ) -> None:
        self.node, self.source, self.taken, self.at = node, source, taken, at
        self.sender = bundle.sender
        self.context = context_of(bundle.header_raw)
        self.seals = node.seals if bundle.header["sealed"] else None

    def material(self, position: int) -> bool:
        """Take in (or step over) the material at `position`; False when the rest cannot
        be taken (the disk is full). _Cut and BundleError (damaged) propagate. A material
        another process is writing (`serve` taking it from a child, a round fetching it)
        is stepped over: it stays partial here."""
        (length,) = LENGTH.unpack(self.source.read(LENGTH.size))
        if length > MAX_HEAD_BYTES + SEALED_EXTRA:
            raise damaged(position, "a material's head is too long")
        part = read_head(self.source.read(length), position, self.context, self.seals)
        sha = part.ref.sha256
        refusal = _judge(self.node, self.sender, part.ref)
        done = refusal is None and self.node.blobs.has(sha)
        with contextlib.ExitStack() as stack:
            receiving = None
            if refusal is None and not done and stack.enter_context(self.node.blobs.claim(sha)):
                receiving = self.node.blobs.receiving(part.ref)
            try:
                refusal = self._frames_into(part, position, receiving) or refusal
                if receiving is not None and refusal is None:
                    done = receiving.finish(self.at)
                    self.taken.new += done
            except BlobError as exc:  # a whole that does not match its hash
                refusal = exc
            finally:
                if receiving is not None and not done:
                    self.taken.partial[sha] = receiving.have
        if refusal is not None:
            self.taken.refused.append((sha, refusal))
        elif done:
            self.taken.held.append(sha)
        return refusal is None or refusal.key != "blob.disk_full"

    def _frames_into(
        self, part: Part, position: int, receiving: Receiving | None
    ) -> ZhibaoError | None:
        """Read the frames of `part` into `receiving` (None: step over them all); the
        first refusal, after which the rest are stepped over."""
        ref, refusal = part.ref, None
        for kind, index, length in _frames(self.source, part, position):
            if (
                receiving is None
                or refusal is not None
                or (receiving.have != index if kind == DATA else receiving.digests is not None)
            ):  # refused or held; a chunk held already, or after a gap; a list known
                self.source.skip(length)
                continue
            if length != payload_length(kind, ref, index, self.seals is not None):
                refusal = BlobError("blob.bad_chunk", sha256=ref.sha256, index=index)
                self.source.skip(length)
                continue
            payload = self.source.read(length)
            try:
                plain = open_payload(payload, self.seals, self.context, ref.sha256, kind, index)
                if kind == LIST:
                    receiving.set_list(plain)
                else:
                    receiving.add(index, plain)
            except BlobError as exc:
                refusal = exc
        return refusal


def from_memory(data: bytes | memoryview, start: int) -> IO[bytes]:
    """The materials part of a bundle held in memory, as a file (tools and tests)."""
    return io.BytesIO(bytes(memoryview(data)[start:]))


# --- what the receipt says of them ---------------------------------------------------------


@dataclass(frozen=True)
class Acknowledged:
    """What a receipt file's issuer signed of one bundle's materials: held whole, and how
    many chunks of the others it holds checked."""

    issuer: str
    held: tuple[str, ...]
    partial: dict[str, int]
    at: str


def receipt_parts(node: Node, sender: str, taken: Taken) -> dict[str, tuple[bytes, bytes]]:
    """The signed parts a receipt file for `sender` carries about `taken`."""
    me, stamp = node.node_id, node.clock.stamp()
    made = make_blob_receipt(node.wire_signer, me, sender, stamp, taken.held)
    parts = {"materials": (made.raw, made.sig)}
    if taken.partial:
        parts["progress"] = make_progress(node.wire_signer, me, sender, stamp, taken.partial)
    return parts


def check_parts(node: Node, parts: dict[str, tuple[bytes, bytes]]) -> Acknowledged | None:
    """The materials a receipt file's signed parts acknowledge, checked against the
    issuer's key and addressed to this node; BundleError if they are not."""
    if "materials" not in parts:
        return None
    raw, sig = parts["materials"]
    issuer = _issuer(raw)
    key = trust.verify_wire(node.store, issuer, lambda k: verify(k, BLOB_RECEIPT_DOMAIN + raw, sig))
    try:
        if key is None:
            raise RefusedError("receipt.forged")
        made = read_blob_receipt(raw, sig, key)
    except RefusedError:
        raise BundleError("bundle.receipt_refused", reason=i18n.t("bundle.parts_forged")) from None
    if made.to != node.node_id:
        raise BundleError("bundle.receipt_not_ours", to=made.to, me=node.node_id)
    partial: dict[str, int] = {}
    if "progress" in parts:
        raw, sig = parts["progress"]
        said = read_progress(raw)
        signed = trust.verify_wire(
            node.store, issuer, lambda k: verify(k, progress_message(raw), sig)
        )
        if signed is None or said.issuer != issuer or said.to != node.node_id:
            raise BundleError("bundle.receipt_refused", reason=i18n.t("bundle.parts_forged"))
        partial = said.chunks
    held = tuple(sha for sha in made.held if SHA256.fullmatch(sha))
    return Acknowledged(issuer, held, partial, made.at)


def _issuer(raw: bytes) -> str:
    try:
        return str(json.loads(raw)["issuer"])
    except (ValueError, KeyError, TypeError):
        raise BundleError("bundle.receipt_malformed") from None


def record(node: Node, said: Acknowledged) -> None:
    """Record what a checked receipt file says its issuer holds, whole and in part."""
    with node.store.transaction():
        for sha in said.held:
            blob_index.record_receipt(node.store, said.issuer, sha, said.at)
        for sha, chunks in said.partial.items():
            blob_index.record_progress(node.store, said.issuer, sha, chunks, said.at)


i18n.register(
    {
        "bundle.material_unnamed": (
            "material {sha256}: no entry admitted here names it: refused",
            "材料 {sha256}：本机已接收的条目中没有引用它的，已拒收",
        ),
        "bundle.material_not_as_named": (
            "material {sha256}: its size or chunk list is not what its entry says: refused",
            "材料 {sha256}：大小或分块清单与其条目所记不符，已拒收",
        ),
        "bundle.material_too_big": (
            "material {sha256} is {size_mb} MB, more than this node takes ({limit_mb} MB, "
            "material_max_mb in node.toml): refused",
            "材料 {sha256} 为 {size_mb} MB，超过本节点上限（{limit_mb} MB，见 node.toml 的 "
            "material_max_mb），已拒收",
        ),
        "bundle.parts_forged": (
            "what it says of materials is not signed by its issuer for this node",
            "其中关于材料的内容并非签发方为本节点所签",
        ),
    }
)
