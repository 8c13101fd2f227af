"""The bundle file format (DESIGN §4 "Bundles"): pure bytes in, values out.

Bundles: the sync batches on a file, for links that are down (DESIGN §4, §7).

A bundle file, all integers big-endian:

    b"ZBDL"  1 byte version (1)
    4 bytes  header length H,  H bytes header: canonical JSON
             {"v": 1, "kind": "bundle", "from", "to", "created", "sealed": bool,
              "suite": "X25519-HKDF-SHA256-ChaCha20Poly1305" (sealed only),
              "entries": total, "counts": {origin: entries},
              "blobs": materials that follow (only when there are any)}
    8 bytes  payload length P, P bytes payload
    64 bytes Ed25519 signature by "from" over `bundle_message(header, payload)`
    (only when "blobs"): the materials part, streamed (sync.protocol.bundle_materials)

Everything up to the signature is the entries part: a bundle without materials is exactly
what it was before materials existed, and every limit below is the entries part's.

The plain payload is a sequence of frames (4-byte length + one `encode_batch` batch, a zstd
frame that declares its unpacked size), so a bundle of any size is made of bounded batches.
Sealed, the payload is HPKE (RFC 9180, base mode: X25519 KEM, HKDF-SHA256,
ChaCha20-Poly1305) to the recipient's enrolled seal key, with `SEAL_DOMAIN + SHA-256(header)`
as `info`, so a sealed payload cannot be moved under another header. The signature covers
the stored (sealed) payload.

A receipt file, carried back to the sender: b"ZBRC", 1 byte version (1), then canonical
JSON `{"for": sender, "bundle": SHA-256 of the entries part, "raw": receipt, "sig": hex}`
(and, for a bundle with materials, `"materials"` and `"progress"`, each `{"raw", "sig"}`)
and a newline; only the signed parts are trusted (checked by `receipts.accept`).

What goes in (`bundle_entries`): up to an ancestor, this node's subtree above what that
ancestor has receipted; down to a descendant, what concerns it (`relevance.select_for`)
above what it has receipted. The receipt an import writes is, for a bundle from below, the
usual one (heads of the sender's subtree); for a bundle from above, what this node holds
of every log — whole within its subtree, in part (highest seq) above it — which is exactly
the pull cursor, so the sender's next bundle leaves out what arrived.

Limits, so no file makes a receiver hold or unpack more than a real bundle would:
- MAX_BUNDLE_BYTES (512 MiB): the entries part, and so the payload;
- MAX_BUNDLE_ENTRIES (4,000,000): the entries the header declares, checked before the
  payload is opened (and the frames must hold exactly what the header counts);
- MAX_BUNDLE_PLAIN_BYTES (2 GiB): all frames unpacked, summed from the sizes the frames
  declare before the first one is unpacked; each frame must declare at most
  MAX_BATCH_BYTES and unpack to exactly what it declares (counted in chunks and dropped).
Frames are unpacked and handed over one at a time (`iter_frames`), never all kept. A
receipt file is at most MAX_RECEIPT_BYTES. Export refuses to write what import would refuse.

Invariants: when the receiver knows the sender's key, the signature is checked before the
payload is decrypted or unpacked, so a forged file is refused unopened (see
`sync.bundles.import_bundle`). A bundle is imported whole or not at all: every entry (and,
for a first bundle from the parent, the signature) is checked inside one transaction that
is rolled back on any failure, so a truncated, altered, misaddressed or forged file
changes nothing. Importing twice applies nothing twice. A receipt is issued only after the
import committed. (The materials that follow are taken after that, one by one: see
sync.protocol.bundle_materials.)
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import zstandard
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sync.protocol import i18n
from sync.protocol.batch import (
    BATCH_BYTES,
    BATCH_ENTRIES,
    MAX_BATCH_BYTES,
    Run,
    decode_batch,
    encode_batch,
)
from sync.protocol.canonical import canonical
from sync.protocol.entry import SignedEntry
from sync.protocol.errors import BundleError, NodeIdError, RefusedError
from sync.protocol.ids import tier_of
from sync.protocol.keys import Signer
from sync.protocol.messages import Receipt, bundle_message
from sync.protocol.sealed import SUITE_NAME, SealError, open_with_any, seal

MAGIC, RECEIPT_MAGIC, VERSION = b"ZBDL", b"ZBRC", 1
SEAL_DOMAIN = b"zhibao/bundle-seal/v1\0"
MAX_HEADER_BYTES = 1024 * 1024
MAX_BUNDLE_BYTES = 512 * 1024 * 1024  # the file
MAX_BUNDLE_PLAIN_BYTES = 2 * 1024 * 1024 * 1024  # all frames unpacked
MAX_BUNDLE_ENTRIES = 4_000_000
MAX_BUNDLE_BLOBS = 100_000  # materials one bundle may declare
MAX_RECEIPT_BYTES = 1024 * 1024
_MIB = 1024 * 1024
_CHUNK = 1024 * 1024
_U32, _U64 = struct.Struct(">I"), struct.Struct(">Q")
SIG = _SIG = 64


@dataclass(frozen=True)
class BundleFile:
    """A parsed bundle: the header's exact bytes and fields, the payload and the signature."""

    header_raw: bytes
    header: dict[str, Any]
    payload: bytes | memoryview  # a view into the file's bytes: a big payload is not copied
    sig: bytes
    size: int = 0  # of the entries part: where the materials part starts

    @property
    def blobs(self) -> int:
        """How many materials follow the entries part (the header says, signed)."""
        return int(self.header.get("blobs", 0))

    @property
    def sender(self) -> str:
        return str(self.header["from"])

    @property
    def recipient(self) -> str:
        return str(self.header["to"])


def cut(entries: Sequence[SignedEntry]) -> list[list[SignedEntry]]:
    """`entries` in frames of at most BATCH_ENTRIES entries / BATCH_BYTES, cut anywhere."""
    out: list[list[SignedEntry]] = []
    chunk: list[SignedEntry] = []
    size = 0
    for entry in entries:
        chunk.append(entry)
        size += len(entry.raw) + _SIG
        if len(chunk) >= BATCH_ENTRIES or size >= BATCH_BYTES:
            out.append(chunk)
            chunk, size = [], 0
    if chunk:
        out.append(chunk)
    return out


def payload_of(frames: Sequence[Sequence[SignedEntry]]) -> bytes:
    """The payload of `frames`; BundleError if they exceed what an import accepts."""
    if sum(map(len, frames)) > MAX_BUNDLE_ENTRIES:
        raise export_limit_error()
    out: list[bytes] = []
    unpacked = 0
    for frame in frames:
        batch = encode_batch(frame)
        unpacked += zstandard.frame_content_size(batch)
        if unpacked > MAX_BUNDLE_PLAIN_BYTES:
            raise export_limit_error()
        out.append(_U32.pack(len(batch)) + batch)
    return b"".join(out)


def export_limit_error() -> BundleError:
    """What export says when there is more to send than an import would accept."""
    return BundleError(
        "bundle.export_too_big",
        entries=f"{MAX_BUNDLE_ENTRIES:,}",
        plain=MAX_BUNDLE_PLAIN_BYTES // _MIB,
        size=MAX_BUNDLE_BYTES // _MIB,
    )


def encode_bundle(
    signer: Signer,
    sender: str,
    recipient: str,
    created: str,
    entries: Sequence[SignedEntry],
    seal_to: bytes | None = None,
    *,
    frames: Sequence[Sequence[SignedEntry]] | None = None,
    payload: bytes | None = None,
    blobs: int = 0,
) -> bytes:
    """The bytes of a bundle of `entries` signed by `signer`, sealed when `seal_to` is given
    (its entries part, which declares `blobs` materials to follow when there are any).

    `frames`: `entries` cut into frames already (a node relaying logs ends each run where a
    signature proves it, sync.proofs); by default they are cut every BATCH_ENTRIES.
    `payload`: `payload_of(frames)`, when the caller has it already."""
    if frames is None:
        frames = cut(entries)
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.origin] = counts.get(entry.origin, 0) + 1
    header: dict[str, Any] = {
        "v": VERSION,
        "kind": "bundle",
        "from": sender,
        "to": recipient,
        "created": created,
        "sealed": seal_to is not None,
        "entries": len(entries),
        "counts": counts,
    }
    if seal_to is not None:
        header["suite"] = SUITE_NAME
    if blobs:
        header["blobs"] = blobs
    header_raw = canonical(header)
    if payload is None:
        payload = payload_of(frames)
    if seal_to is not None:
        payload = seal(payload, seal_to, _seal_info(header_raw))
    sig = signer.sign(bundle_message(header_raw, payload))
    return b"".join(
        [
            MAGIC,
            bytes([VERSION]),
            _U32.pack(len(header_raw)),
            header_raw,
            _U64.pack(len(payload)),
            payload,
            sig,
        ]
    )


def _seal_info(header_raw: bytes) -> bytes:
    return SEAL_DOMAIN + hashlib.sha256(header_raw).digest()


def _malformed(reason: str) -> BundleError:
    return BundleError("bundle.malformed", reason=reason)


def _check_header(header: Any) -> None:
    if not isinstance(header, dict) or header.get("v") != VERSION or header.get("kind") != "bundle":
        raise ValueError("not a bundle header")
    tier_of(header["from"])
    tier_of(header["to"])
    counts = header["counts"]
    if not isinstance(header["created"], str) or not isinstance(header["sealed"], bool):
        raise ValueError("created/sealed")
    if not isinstance(counts, dict) or not all(isinstance(n, int) for n in counts.values()):
        raise ValueError("counts")
    if sum(counts.values()) != header["entries"] or any(n < 1 for n in counts.values()):
        raise ValueError("counts do not add up")
    blobs = header.get("blobs", 1)
    if type(blobs) is not int or not 1 <= blobs <= MAX_BUNDLE_BLOBS:
        raise ValueError("blobs")


def read_bundle(data: bytes) -> BundleFile:
    """Parse a bundle's structure; BundleError for anything truncated, extended or malformed."""
    if not data.startswith(MAGIC):
        if data.startswith(RECEIPT_MAGIC):
            raise BundleError("bundle.is_receipt")
        raise BundleError("bundle.not_bundle")
    if len(data) < 9:
        raise BundleError("bundle.truncated")
    if data[4] != VERSION:
        raise BundleError("bundle.version", version=data[4])
    (size,) = _U32.unpack_from(data, 5)
    if size > MAX_HEADER_BYTES:
        raise _malformed("header too big")
    pos = 9 + size
    if pos + 8 > len(data):
        raise BundleError("bundle.truncated")
    header_raw = data[9:pos]
    (length,) = _U64.unpack_from(data, pos)
    pos += 8
    if pos + length + _SIG > len(data):
        raise BundleError("bundle.truncated")
    try:
        header = json.loads(header_raw)
        _check_header(header)
        if canonical(header) != header_raw:
            raise ValueError("not canonical JSON")
    except (ValueError, KeyError, TypeError, AttributeError, NodeIdError) as exc:
        raise _malformed(f"bad header: {exc}") from None
    if pos + length + _SIG < len(data) and "blobs" not in header:
        raise _malformed("bytes after the signature")
    if header["entries"] > MAX_BUNDLE_ENTRIES:
        raise BundleError(
            "bundle.too_many_entries", entries=header["entries"], limit=f"{MAX_BUNDLE_ENTRIES:,}"
        )
    payload = memoryview(data)[pos : pos + length]
    end = pos + length + _SIG
    return BundleFile(header_raw, header, payload, bytes(data[pos + length : end]), end)


def _unsealed(bundle: BundleFile, seals: Sequence[X25519PrivateKey]) -> bytes | memoryview:
    if not bundle.header["sealed"]:
        return bundle.payload
    try:
        return open_with_any(bundle.payload, seals, _seal_info(bundle.header_raw))
    except SealError:
        raise BundleError("bundle.cannot_open") from None


def _walk(plain: memoryview) -> Iterator[tuple[memoryview, int]]:
    """Each frame, with the unpacked size it declares, read from its zstd frame header
    alone: nothing is unpacked. BundleError for a frame cut short, not zstd, not sized, or
    declaring more than a batch may hold."""
    pos = 0
    while pos < len(plain):
        if pos + 4 > len(plain):
            raise BundleError("bundle.truncated")
        (size,) = _U32.unpack_from(plain, pos)
        if pos + 4 + size > len(plain):
            raise BundleError("bundle.truncated")
        frame = plain[pos + 4 : pos + 4 + size]
        try:
            declared = zstandard.frame_content_size(frame)
        except zstandard.ZstdError:
            raise _malformed("a frame is not zstd") from None
        if declared < 0:
            raise _malformed("a frame does not declare its size")
        if declared > MAX_BATCH_BYTES:
            raise _malformed(f"a frame unpacks to more than {MAX_BATCH_BYTES // _MIB} MiB")
        yield frame, declared
        pos += 4 + size


def _check_declared(plain: memoryview, entries: int) -> None:
    """All frames together declare no more than the limit, and are no more than the
    entries (each holds one at least): checked before any frame is unpacked."""
    unpacked = 0
    for frames, (_, declared) in enumerate(_walk(plain), start=1):
        if frames > entries:
            raise _malformed("more frames than entries")
        unpacked += declared
        if unpacked > MAX_BUNDLE_PLAIN_BYTES:
            raise BundleError("bundle.unpacks_too_big", limit=MAX_BUNDLE_PLAIN_BYTES // _MIB)


def _check_unpacked_size(frame: memoryview, declared: int) -> None:
    """The frame unpacks to exactly `declared` bytes, all its zstd frames together: counted
    in chunks and dropped, so a lie costs at most `declared` bytes of work."""
    reader = zstandard.ZstdDecompressor().stream_reader(frame, read_across_frames=True)
    seen = 0
    try:
        while chunk := reader.read(_CHUNK):
            seen += len(chunk)
            if seen > declared:
                break
    except zstandard.ZstdError:
        raise _malformed("a frame is not valid zstd") from None
    if seen != declared:
        raise _malformed("a frame does not unpack to the size it declares")


def iter_frames(bundle: BundleFile, seals: Sequence[X25519PrivateKey]) -> Iterator[list[Run]]:
    """The runs of a bundle, one frame at a time, unsealed with `seal` if needed.

    Every limit on sizes is checked before the first frame is unpacked; the entries are
    checked against the header's counts as they come, and the last step (after the last
    frame) raises BundleError if any origin fell short. Check the signature first.
    """
    plain = memoryview(_unsealed(bundle, seals))
    expected = {str(o): int(n) for o, n in bundle.header["counts"].items()}
    _check_declared(plain, int(bundle.header["entries"]))
    counts: dict[str, int] = {}
    for frame, declared in _walk(plain):
        _check_unpacked_size(frame, declared)
        try:
            runs = decode_batch(bytes(frame))
        except RefusedError as exc:
            raise _malformed(str(exc)) from None
        if not runs:
            raise _malformed("an empty frame")
        for run in runs:
            counts[run.origin] = counts.get(run.origin, 0) + len(run.items)
            if counts[run.origin] > expected.get(run.origin, 0):
                raise _malformed("entries do not match the header's counts")
        yield runs
    if counts != expected:
        raise _malformed("entries do not match the header's counts")


def open_payload(bundle: BundleFile, seals: Sequence[X25519PrivateKey]) -> list[Run]:
    """All the runs of a bundle at once (for tools and tests; imports use `iter_frames`)."""
    return [run for runs in iter_frames(bundle, seals) for run in runs]


def encode_receipt_file(
    receipt: Receipt, for_node: str, bundle_digest: bytes,
    parts: dict[str, tuple[bytes, bytes]] | None = None,
) -> bytes:  # fmt: skip
    """A receipt file; `parts`: what it says of materials, by name (raw, signature)."""
    body: dict[str, Any] = {
        "for": for_node,
        "bundle": bundle_digest.hex(),
        "raw": receipt.raw.decode(),
        "sig": receipt.sig.hex(),
    }
    for name, (raw, sig) in (parts or {}).items():
        body[name] = {"raw": raw.decode(), "sig": sig.hex()}
    return RECEIPT_MAGIC + bytes([VERSION]) + canonical(body) + b"\n"


def read_receipt_file(data: bytes) -> tuple[str, bytes, bytes]:
    """(for whom, receipt raw, signature) of a receipt file; BundleError if malformed."""
    if not data.startswith(RECEIPT_MAGIC) or len(data) < 6 or data[4] != VERSION:
        raise BundleError("bundle.not_bundle")
    try:
        body = json.loads(data[5:])
        return str(body["for"]), str(body["raw"]).encode(), bytes.fromhex(str(body["sig"]))
    except (ValueError, KeyError, TypeError):
        raise BundleError("bundle.receipt_malformed") from None


def is_receipt(data: bytes) -> bool:
    return data.startswith(RECEIPT_MAGIC)


i18n.register(
    {
        "bundle.not_bundle": (
            "not a zhibao bundle or receipt file",
            "不是 zhibao 数据包或回执文件",
        ),
        "bundle.is_receipt": ("this is a receipt file, not a bundle", "这是回执文件，不是数据包"),
        "bundle.truncated": (
            "the bundle is truncated (copied incompletely?); nothing was imported",
            "数据包不完整（可能未拷贝完）；未导入任何内容",
        ),
        "bundle.version": (
            "unknown bundle format version {version}",
            "未知的数据包格式版本 {version}",
        ),
        "bundle.malformed": (
            "the bundle is damaged ({reason}); nothing was imported",
            "数据包已损坏（{reason}）；未导入任何内容",
        ),
        "bundle.wrong_recipient": (
            "this bundle is addressed to {to}, not to this node ({me}); nothing was imported",
            "此数据包发往 {to}，不是本节点（{me}）；未导入任何内容",
        ),
        "bundle.unrelated": (
            "{node_id} is neither above nor below this node ({me}): bundles go up or down the tree",
            "{node_id} 不是本节点（{me}）的上级或下级：数据包只能上下级之间传递",
        ),
        "bundle.forged": (
            "the bundle's signature is not {node_id}'s: it was altered or forged; "
            "nothing was imported",
            "数据包签名与 {node_id} 不符：已被篡改或伪造；未导入任何内容",
        ),
        "bundle.unknown_sender": (
            "the sender {node_id} is not enrolled here, so the bundle cannot be checked; "
            "nothing was imported",
            "发送方 {node_id} 未在此登记，无法核验数据包；未导入任何内容",
        ),
        "bundle.cannot_open": (
            "cannot open the sealed bundle: it is sealed to another key or was altered; "
            "nothing was imported",
            "无法打开加密数据包：加密对象不是本节点或已被篡改；未导入任何内容",
        ),
        "bundle.entry_refused": (
            "entry {origin}#{seq} refused ({reason}); nothing from this bundle was imported",
            "条目 {origin}#{seq} 被拒绝（{reason}）；此数据包未导入任何内容",
        ),
        "bundle.no_seal_key": (
            "no seal key is known for {node_id}: give --seal-key HEX (from `zhibao node show` "
            "there), or --no-seal to write personal data in the clear",
            "不知道 {node_id} 的加密公钥：请用 --seal-key 提供（在对方运行 `zhibao node show` "
            "查看），或用 --no-seal 以明文写出个人信息",
        ),
        "bundle.too_big": (
            "{path} is too big for a bundle or receipt ({size} MiB; at most {limit} MiB); "
            "nothing was imported",
            "{path} 作为数据包或回执过大（{size} MiB，上限 {limit} MiB）；未导入任何内容",
        ),
        "bundle.too_many_entries": (
            "the bundle declares {entries} entries, more than a bundle may hold ({limit}); "
            "nothing was imported",
            "数据包声明含 {entries} 条条目，超过数据包上限（{limit}）；未导入任何内容",
        ),
        "bundle.unpacks_too_big": (
            "the bundle would unpack to more than a bundle may ({limit} MiB); nothing was imported",
            "数据包解压后将超过数据包上限（{limit} MiB）；未导入任何内容",
        ),
        "bundle.export_too_big": (
            "there is more to send than one bundle may hold ({entries} entries, {plain} MiB "
            "unpacked, {size} MiB on file); nothing was written: sync over the network instead",
            "待发送内容超过单个数据包上限（{entries} 条条目、解压后 {plain} MiB、文件 {size} "
            "MiB）；未写入任何内容：请改用网络同步",
        ),
        "bundle.receipt_malformed": ("the receipt file is damaged", "回执文件已损坏"),
        "bundle.receipt_not_ours": (
            "this receipt is for {to}, not for this node ({me})",
            "此回执属于 {to}，不属于本节点（{me}）",
        ),
        "bundle.receipt_refused": ("receipt refused: {reason}", "回执被拒绝：{reason}"),
    }
)
