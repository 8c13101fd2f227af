"""Content-addressed blobs (a case's materials) as pure bytes: chunking, checking, framing.

A blob is named by a signed entry (`BlobRef`): its SHA-256, its size, and `root`, the
SHA-256 of its chunk list — the SHA-256 of each `CHUNK`-byte piece, in order, concatenated
(the last piece may be shorter; an empty blob has one empty chunk). A receiver gets the
chunk list first and checks it against `root`, then every chunk against the list as it
arrives, so a hostile sender can make it write at most one bad chunk, never hold a wrong
blob: whole, the blob is checked once more against `sha256` before it is held.

A blob stream (the wire and bundles carry the same one), all integers big-endian:

    1 byte kind (b"L": the chunk list, b"C": one chunk), 4 bytes chunk index,
    4 bytes payload length N, N bytes payload

`FrameReader` takes bytes as they come and gives whole frames, never buffering more than
one frame of at most `max_frame` bytes: an endless or oversized stream costs the receiver
one frame's memory. Sealed streams seal each payload separately (`chunk_info` names the
blob, the kind and the index, so a sealed chunk cannot be moved to another place).
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from sync.protocol import i18n
from sync.protocol.canonical import canonical
from sync.protocol.errors import BlobError

CHUNK = 64 * 1024
DIGEST = 32
LIST, DATA = b"L", b"C"
SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_BLOB_BYTES = 4 * 1024**3  # what any node can be asked to hold for one blob
_HEAD = struct.Struct(">cII")
CHUNK_DOMAIN = b"zhibao/blob-chunk/v1\0"


@dataclass(frozen=True)
class BlobRef:
    """What a signed entry says of a blob: enough to check every byte of it."""

    sha256: str
    size: int
    root: str

    @property
    def chunks(self) -> int:
        return chunk_count(self.size)

    def to_json(self) -> dict[str, object]:
        return {"sha256": self.sha256, "size": self.size, "root": self.root}


def chunk_count(size: int) -> int:
    return max(1, -(-size // CHUNK))


def chunk_size(size: int, index: int) -> int:
    """How many bytes chunk `index` of a blob of `size` bytes has."""
    return min(CHUNK, size - index * CHUNK) if size else 0


def is_ref(sha256: object, size: object, root: object) -> bool:
    return (
        type(sha256) is str and SHA256.fullmatch(sha256) is not None
        and type(root) is str and SHA256.fullmatch(root) is not None
        and type(size) is int and 0 <= size <= MAX_BLOB_BYTES
    )  # fmt: skip


class Hasher:
    """SHA-256 and chunk list of bytes fed in any pieces: `ref()` when all are in."""

    def __init__(self) -> None:
        self._whole = hashlib.sha256()
        self._chunk = hashlib.sha256()
        self._in_chunk = 0
        self.size = 0
        self.digests = bytearray()

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        self._whole.update(view)
        self.size += len(view)
        while view:
            take = min(CHUNK - self._in_chunk, len(view))
            self._chunk.update(view[:take])
            self._in_chunk += take
            view = view[take:]
            if self._in_chunk == CHUNK:
                self.digests += self._chunk.digest()
                self._chunk, self._in_chunk = hashlib.sha256(), 0

    def ref(self) -> BlobRef:
        digests = bytes(self.digests)
        if self._in_chunk or not digests:
            digests += self._chunk.digest()
        return BlobRef(self._whole.hexdigest(), self.size, hashlib.sha256(digests).hexdigest())

    def chunk_list(self) -> bytes:
        """The chunk list (call after `ref`-worthy input: all bytes fed)."""
        digests = bytes(self.digests)
        if self._in_chunk or not digests:
            digests += self._chunk.copy().digest()
        return digests


def check_list(ref: BlobRef, digests: bytes) -> None:
    """`digests` is the chunk list `ref` names; BlobError otherwise."""
    if len(digests) != ref.chunks * DIGEST or hashlib.sha256(digests).hexdigest() != ref.root:
        raise BlobError("blob.bad_list", sha256=ref.sha256)


def check_chunk(ref: BlobRef, digests: bytes, index: int, data: bytes | memoryview) -> None:
    """`data` is chunk `index` of the blob whose checked chunk list is `digests`."""
    if not 0 <= index < ref.chunks or len(data) != chunk_size(ref.size, index):
        raise BlobError("blob.bad_chunk", sha256=ref.sha256, index=index)
    if hashlib.sha256(data).digest() != digests[index * DIGEST : (index + 1) * DIGEST]:
        raise BlobError("blob.bad_chunk", sha256=ref.sha256, index=index)


def chunk_info(context: bytes, sha256: str, kind: bytes, index: int) -> bytes:
    """The sealing context of one frame's payload: the stream's context (the request or
    bundle it travels in), the blob, the frame's kind and index."""
    return CHUNK_DOMAIN + canonical([context.hex(), sha256, kind.decode(), index])


def encode_frame(kind: bytes, index: int, payload: bytes | memoryview) -> bytes:
    return _HEAD.pack(kind, index, len(payload)) + bytes(payload)


def max_frame(ref_size: int = MAX_BLOB_BYTES, overhead: int = 64) -> int:
    """The largest frame a stream of blobs of at most `ref_size` bytes can need."""
    return _HEAD.size + max(CHUNK, chunk_count(ref_size) * DIGEST) + overhead


@dataclass(frozen=True)
class Frame:
    kind: bytes
    index: int
    payload: bytes


class FrameReader:
    """Whole frames out of bytes fed as they come; at most one frame buffered."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes | memoryview) -> Iterator[Frame]:
        self._buffer += data
        while len(self._buffer) >= _HEAD.size:
            kind, index, length = _HEAD.unpack_from(self._buffer)
            if kind not in (LIST, DATA) or _HEAD.size + length > self.max_frame:
                raise BlobError("blob.bad_frame")
            end = _HEAD.size + length
            if len(self._buffer) < end:
                return
            frame = Frame(kind, index, bytes(self._buffer[_HEAD.size : end]))
            del self._buffer[:end]
            yield frame

    @property
    def pending(self) -> int:
        """Bytes of a frame begun but not whole (a stream cut mid-frame)."""
        return len(self._buffer)


i18n.register(
    {
        "blob.bad_list": (
            "the chunk list sent for material {sha256} is not the one its entry names",
            "材料 {sha256} 的分块清单与其条目所记不符",
        ),
        "blob.bad_chunk": (
            "chunk {index} of material {sha256} does not match its entry: refused",
            "材料 {sha256} 的第 {index} 块与其条目所记不符，已拒收",
        ),
        "blob.bad_frame": (
            "a material stream is malformed or a frame is too large",
            "材料数据流格式错误或分帧过大",
        ),
    }
)
