"""The bundle file format (DESIGN §4 "Bundles"): pure bytes in, values out.

Bundles: the sync batches on a file, for links that are down (DESIGN §4, §7).

A bundle file, all integers big-endian:

    b"ZBDL"  1 byte version (1)
    4 bytes  header length H,  H bytes header: canonical JSON
             {"v": 1, "kind": "bundle", "from", "to", "created", "sealed": bool,
              "suite": "X25519-HKDF-SHA256-ChaCha20Poly1305" (sealed only),
              "entries": total, "counts": {origin: entries}}
    8 bytes  payload length P, P bytes payload
    64 bytes Ed25519 signature by "from" over `bundle_message(header, payload)`

The plain payload is a sequence of frames (4-byte length + one `encode_batch` batch), so a
bundle of any size is made of bounded batches. Sealed, the payload is HPKE (RFC 9180,
base mode: X25519 KEM, HKDF-SHA256, ChaCha20-Poly1305) to the recipient's enrolled seal
key, with `SEAL_DOMAIN + SHA-256(header)` as `info`, so a sealed payload cannot be moved
under another header. The signature covers the stored (sealed) payload.

A receipt file, carried back to the sender: b"ZBRC", 1 byte version (1), then canonical
JSON `{"for": sender, "bundle": SHA-256 of the bundle file, "raw": receipt, "sig": hex}`
and a newline; only `raw` and `sig` are trusted (checked by `receipts.accept`).

What goes in (`bundle_entries`): up to an ancestor, this node's subtree above what that
ancestor has receipted; down to a descendant, what concerns it (`relevance.select_for`)
above what it has receipted. The receipt an import writes is, for a bundle from below, the
usual one (heads of the sender's subtree); for a bundle from above, what this node holds
of every log — whole within its subtree, in part (highest seq) above it — which is exactly
the pull cursor, so the sender's next bundle leaves out what arrived.

Invariants: a bundle is imported whole or not at all — every entry and the sender's
signature are checked inside one transaction that is rolled back on any failure, so a
truncated, altered, misaddressed or forged file changes nothing. Importing twice applies
nothing twice. A receipt is issued only after the import committed.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from sync.protocol import i18n
from sync.protocol.batch import BATCH_BYTES, BATCH_ENTRIES, Run, decode_batch, encode_batch
from sync.protocol.canonical import canonical
from sync.protocol.entry import SignedEntry
from sync.protocol.errors import BundleError, NodeIdError, RefusedError
from sync.protocol.ids import tier_of
from sync.protocol.keys import Signer
from sync.protocol.messages import Receipt, bundle_message

MAGIC, RECEIPT_MAGIC, VERSION = b"ZBDL", b"ZBRC", 1
SEAL_DOMAIN = b"zhibao/bundle-seal/v1\0"
SUITE_NAME = "X25519-HKDF-SHA256-ChaCha20Poly1305"
MAX_HEADER_BYTES = 1024 * 1024
MAX_BUNDLE_BYTES = 512 * 1024 * 1024
_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
_U32, _U64 = struct.Struct(">I"), struct.Struct(">Q")
_SIG = 64


@dataclass(frozen=True)
class BundleFile:
    """A parsed bundle: the header's exact bytes and fields, the payload and the signature."""

    header_raw: bytes
    header: dict[str, Any]
    payload: bytes
    sig: bytes

    @property
    def sender(self) -> str:
        return str(self.header["from"])

    @property
    def recipient(self) -> str:
        return str(self.header["to"])


def _frames(entries: Sequence[SignedEntry]) -> bytes:
    out: list[bytes] = []
    chunk: list[SignedEntry] = []
    size = 0
    for entry in entries:
        chunk.append(entry)
        size += len(entry.raw) + _SIG
        if len(chunk) >= BATCH_ENTRIES or size >= BATCH_BYTES:
            out.append(encode_batch(chunk))
            chunk, size = [], 0
    if chunk:
        out.append(encode_batch(chunk))
    return b"".join(_U32.pack(len(batch)) + batch for batch in out)


def encode_bundle(
    signer: Signer,
    sender: str,
    recipient: str,
    created: str,
    entries: Sequence[SignedEntry],
    seal_to: bytes | None = None,
) -> bytes:
    """The bytes of a bundle of `entries` signed by `signer`, sealed when `seal_to` is given."""
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
    header_raw = canonical(header)
    payload = _frames(entries)
    if seal_to is not None:
        public = X25519PublicKey.from_public_bytes(seal_to)
        payload = _SUITE.encrypt(payload, public, info=_seal_info(header_raw))
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
    if sum(counts.values()) != header["entries"]:
        raise ValueError("counts do not add up")


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
    if pos + length + _SIG < len(data):
        raise _malformed("bytes after the signature")
    try:
        header = json.loads(header_raw)
        _check_header(header)
        if canonical(header) != header_raw:
            raise ValueError("not canonical JSON")
    except (ValueError, KeyError, TypeError, AttributeError, NodeIdError) as exc:
        raise _malformed(f"bad header: {exc}") from None
    return BundleFile(header_raw, header, data[pos : pos + length], data[pos + length :])


def open_payload(bundle: BundleFile, seal: X25519PrivateKey) -> list[Run]:
    """The runs of a bundle, unsealed with `seal` if needed; header counts are re-checked."""
    plain = bundle.payload
    if bundle.header["sealed"]:
        try:
            plain = _SUITE.decrypt(plain, seal, info=_seal_info(bundle.header_raw))
        except (InvalidTag, ValueError):
            raise BundleError("bundle.cannot_open") from None
    runs: list[Run] = []
    pos = 0
    while pos < len(plain):
        if pos + 4 > len(plain):
            raise BundleError("bundle.truncated")
        (size,) = _U32.unpack_from(plain, pos)
        if pos + 4 + size > len(plain):
            raise BundleError("bundle.truncated")
        try:
            runs.extend(decode_batch(plain[pos + 4 : pos + 4 + size]))
        except RefusedError as exc:
            raise _malformed(str(exc)) from None
        pos += 4 + size
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.origin] = counts.get(run.origin, 0) + len(run.items)
    if counts != {str(o): int(n) for o, n in bundle.header["counts"].items()}:
        raise _malformed("entries do not match the header's counts")
    return runs


def encode_receipt_file(receipt: Receipt, for_node: str, bundle_digest: bytes) -> bytes:
    body = {
        "for": for_node,
        "bundle": bundle_digest.hex(),
        "raw": receipt.raw.decode(),
        "sig": receipt.sig.hex(),
    }
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
            "there), or export without --seal",
            "不知道 {node_id} 的加密公钥：请用 --seal-key 提供（在对方运行 `zhibao node show` "
            "查看），或不加 --seal 导出",
        ),
        "bundle.too_big": ("the bundle is too big ({size} MiB)", "数据包过大（{size} MiB）"),
        "bundle.receipt_malformed": ("the receipt file is damaged", "回执文件已损坏"),
        "bundle.receipt_not_ours": (
            "this receipt is for {to}, not for this node ({me})",
            "此回执属于 {to}，不属于本节点（{me}）",
        ),
        "bundle.receipt_refused": ("receipt refused: {reason}", "回执被拒绝：{reason}"),
    }
)
