"""The materials part of a bundle, and what its receipt says of them: pure bytes.

A bundle (sync.protocol.bundle) whose header declares `"blobs": N` (N ≥ 1) carries, after
the signature of its entries part, the materials part; all integers big-endian:

    b"ZBMT"  1 byte version (1)
    N times, one material:
      4 bytes length H, H bytes head: canonical JSON
          {"sha256", "size", "root", "first": F, "end": E}
      one LIST frame (index 0): the material's whole chunk list
      E - F DATA frames, indexes F .. E-1 in order: its chunks F to E-1
    (frames: sync.protocol.blobs, `encode_frame`: kind, index, payload length, payload)

A material is carried from chunk F (the chunk the recipient's last receipt said it had,
else 0) to chunk E (its last, unless the bundle's size bound cut it there): a material
too big for one bundle travels in pieces, one per receipt carried back.

Sealed (the header's "sealed"), every head and every frame payload is sealed separately to
the recipient's seal key (HPKE, sync.protocol.sealed): a head with `head_info` (the
bundle's header digest and the material's position), a frame payload with
`sync.protocol.blobs.chunk_info` (the header digest, the material, the frame's kind and
index), so no sealed piece opens anywhere else. Frame lengths stay in clear, so a reader
can step over a material it refuses without opening it.

Integrity: the materials part is not covered by the bundle's signature, and needs not be:
the importer takes a material only when an admitted entry held there names its SHA-256,
size and root (the entries part is imported first), checks the list against that root,
each chunk against the list and the whole against the SHA-256 (sync.blobs.Receiving). A
changed byte costs the importer that material, never a wrong file. The header's signed
count says how many materials follow, so a file cut short is told from a whole one.

A receipt file (sync.protocol.bundle) for a bundle with materials adds two signed parts:
`"materials"`, a blob receipt (sync.protocol.messages, the wire's acknowledgement of
materials: `{"issuer", "to", "at", "held": [sha256 …]}`), naming the bundle's materials held
whole; and, when some are not, `"progress"`, signed with PROGRESS_DOMAIN: canonical JSON
`{"issuer", "to", "at", "chunks": {sha256: chunks held}}`. The sender stops carrying what is
held and starts the others where they stopped.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sync.protocol import i18n
from sync.protocol.blobs import (
    DIGEST,
    LIST,
    MAX_BLOB_BYTES,
    SHA256,
    BlobRef,
    chunk_count,
    chunk_info,
    chunk_size,
    is_ref,
)
from sync.protocol.bundle import MAGIC as BUNDLE_MAGIC
from sync.protocol.bundle import MAX_HEADER_BYTES, SIG
from sync.protocol.canonical import canonical
from sync.protocol.errors import BlobError, BundleError
from sync.protocol.keys import Signer
from sync.protocol.sealed import SealError, open_with_any, seal

MAGIC, VERSION = b"ZBMT", 1
HEAD_DOMAIN = b"zhibao/bundle-material-head/v1\0"
PROGRESS_DOMAIN = b"zhibao/material-progress/v1\0"
MAX_HEAD_BYTES = 4096
SEALED_EXTRA = 32 + 16  # HPKE: the encapsulated key and the AEAD tag
FRAME_HEAD = struct.Struct(">cII")  # a sync.protocol.blobs frame: kind, index, length
LENGTH = struct.Struct(">I")
_U64 = struct.Struct(">Q")
OPENING = len(MAGIC) + 1


@dataclass(frozen=True)
class Part:
    """One material as a bundle carries it: `ref`, its chunks `first` to `end` - 1."""

    ref: BlobRef
    first: int
    end: int

    def to_json(self) -> dict[str, Any]:
        return {**self.ref.to_json(), "first": self.first, "end": self.end}


def context_of(header_raw: bytes) -> bytes:
    """What every sealed piece of a bundle's materials is bound to: its header's digest."""
    return hashlib.sha256(header_raw).digest()


def head_info(context: bytes, position: int) -> bytes:
    return HEAD_DOMAIN + context + LENGTH.pack(position)


def encode_head(part: Part, position: int, context: bytes, seal_to: bytes | None) -> bytes:
    """A material's head as it goes on file (length and, sealed, the sealed JSON)."""
    raw = canonical(part.to_json())
    if seal_to is not None:
        raw = seal(raw, seal_to, head_info(context, position))
    return LENGTH.pack(len(raw)) + raw


def read_head(
    raw: bytes, position: int, context: bytes, seals: Sequence[X25519PrivateKey] | None
) -> Part:
    """The head at `position`, opened with `seals` if the bundle is sealed; BundleError
    (`bundle.materials_damaged`) if it does not open or is not a head."""
    if seals is not None:
        try:
            raw = open_with_any(raw, seals, head_info(context, position))
        except SealError:
            raise damaged(position, "a material's head does not open") from None
    try:
        body = json.loads(raw)
        ref = BlobRef(body["sha256"], body["size"], body["root"])
        first, end = body["first"], body["end"]
        if canonical(body) != raw or not is_ref(ref.sha256, ref.size, ref.root):
            raise ValueError("not a head")
        if type(first) is not int or type(end) is not int or not 0 <= first < end <= ref.chunks:
            raise ValueError("chunks out of range")
    except (ValueError, KeyError, TypeError):
        raise damaged(position, "a material's head is malformed") from None
    return Part(ref, first, end)


def seal_payload(
    payload: bytes | memoryview, seal_to: bytes | None, context: bytes, sha256: str,
    kind: bytes, index: int,
) -> bytes | memoryview:  # fmt: skip
    if seal_to is None:
        return payload
    return seal(payload, seal_to, chunk_info(context, sha256, kind, index))


def open_payload(
    payload: bytes, seals: Sequence[X25519PrivateKey] | None, context: bytes, sha256: str,
    kind: bytes, index: int,
) -> bytes:  # fmt: skip
    """A frame's payload, opened when sealed; BlobError (`blob.bad_chunk`) if it does not."""
    if seals is None:
        return payload
    try:
        return open_with_any(payload, seals, chunk_info(context, sha256, kind, index))
    except SealError:
        raise BlobError("blob.bad_chunk", sha256=sha256, index=index) from None


def payload_length(kind: bytes, ref: BlobRef, index: int, sealed: bool) -> int:
    """The exact payload length of frame `kind`/`index` of `ref` in a bundle."""
    extra = SEALED_EXTRA if sealed else 0
    return (ref.chunks * DIGEST if kind == LIST else chunk_size(ref.size, index)) + extra


def part_bytes(part: Part, sealed: bool) -> int:
    """How many bytes `part` takes in a bundle: head, chunk list and chunks."""
    extra = SEALED_EXTRA if sealed else 0
    head = LENGTH.size + len(canonical(part.to_json())) + extra
    listed = FRAME_HEAD.size + part.ref.chunks * DIGEST + extra
    chunks = sum(chunk_size(part.ref.size, i) for i in range(part.first, part.end))
    return head + listed + chunks + (part.end - part.first) * (FRAME_HEAD.size + extra)


def chunks_within(ref: BlobRef, first: int, budget: int, sealed: bool) -> int:
    """The `end` of the longest run of chunks from `first` whose part fits in `budget`
    bytes (`first` itself if not even one chunk does)."""
    extra = SEALED_EXTRA if sealed else 0
    used = part_bytes(Part(ref, first, first + 1), sealed) - chunk_size(ref.size, first)
    used -= FRAME_HEAD.size + extra
    end = first
    while end < ref.chunks:
        step = FRAME_HEAD.size + extra + chunk_size(ref.size, end)
        if used + step > budget:
            break
        used += step
        end += 1
    return end


def needed_to_size(start: bytes) -> int:
    """From a bundle's first 9 bytes: how many of its first bytes `entries_size` needs."""
    if len(start) < 9 or not start.startswith(BUNDLE_MAGIC):
        return 9
    (size,) = LENGTH.unpack_from(start, 5)
    return 9 + min(size, MAX_HEADER_BYTES + 1) + 8


def entries_size(prefix: bytes) -> int:
    """The length of a bundle's entries part, from its first `needed_to_size` bytes (a
    prefix too short, or not a bundle's, gives its own length: `read_bundle` says why)."""
    need = needed_to_size(prefix[:9])
    if len(prefix) < need or need == 9:
        return len(prefix)
    (length,) = _U64.unpack_from(prefix, need - 8)
    return need + length + SIG


def opening() -> bytes:
    return MAGIC + bytes([VERSION])


def check_opening(data: bytes) -> None:
    if data != opening():
        raise damaged(0, "the materials part does not start as one")


def damaged(position: int, reason: str) -> BundleError:
    return BundleError("bundle.materials_damaged", position=position + 1, reason=reason)


# --- what a receipt file says of materials -------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """`issuer` signed to `to` that it holds the first `chunks[sha256]` chunks of each
    material named, checked, not yet whole: where the next bundle starts it."""

    issuer: str
    to: str
    at: str
    chunks: dict[str, int]


def make_progress(
    signer: Signer, issuer: str, to: str, at: str, chunks: dict[str, int]
) -> tuple[bytes, bytes]:
    """(raw, signature) of a progress statement."""
    raw = canonical({"issuer": issuer, "to": to, "at": at, "chunks": dict(sorted(chunks.items()))})
    return raw, signer.sign(PROGRESS_DOMAIN + raw)


def progress_message(raw: bytes) -> bytes:
    return PROGRESS_DOMAIN + raw


def read_progress(raw: bytes) -> Progress:
    """Parse a progress statement (check its signature first); BundleError if malformed."""
    try:
        body = json.loads(raw)
        chunks = {str(k): v for k, v in body["chunks"].items()}
        top = chunk_count(MAX_BLOB_BYTES)
        if not all(SHA256.fullmatch(k) and type(n) is int and 0 <= n <= top
                   for k, n in chunks.items()):  # fmt: skip
            raise ValueError("not a hash and a count")
        return Progress(str(body["issuer"]), str(body["to"]), str(body["at"]), chunks)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BundleError("bundle.receipt_malformed") from None


def read_signed_parts(data: bytes) -> dict[str, tuple[bytes, bytes]]:
    """A receipt file's signed parts about materials, by name ("materials": a blob receipt,
    sync.protocol.messages; "progress": a progress statement): (raw, signature) each."""
    try:
        body = json.loads(data[5:])
        return {
            name: (str(body[name]["raw"]).encode(), bytes.fromhex(str(body[name]["sig"])))
            for name in ("materials", "progress")
            if name in body
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BundleError("bundle.receipt_malformed") from None


i18n.register(
    {
        "bundle.materials_damaged": (
            "the materials part is damaged from material {position} on ({reason}): what came "
            "before it is kept",
            "材料部分自第 {position} 份起已损坏（{reason}）：此前的材料已保留",
        ),
    }
)
