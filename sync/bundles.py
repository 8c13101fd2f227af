"""Bundles at a node: what to put in one for a peer, and importing one whole or not at all.

The file format and its limits are in `sync.protocol.bundle`; see its docstring. Bundles
are sealed to the recipient's enrolled seal key unless the caller asks otherwise. The
materials a bundle carries after its entries: `sync.bundle_materials`.

Import checks the sender's signature before it opens anything when the sender's key is
known here; only a first bundle from the parent (whose key arrives in it, vouched for by
the enrolment records it carries) is opened and applied first, inside the transaction, and
its signature checked before the commit.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import IO, Any

from sync import bundle_materials, forks, keyring, liveness, proofs, receipts, relevance, trust
from sync.ingest import IngestResult, ingest
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.batch import BATCH_ENTRIES, Run
from sync.protocol.bundle import (
    MAGIC,
    MAX_BUNDLE_BYTES,
    MAX_RECEIPT_BYTES,
    RECEIPT_MAGIC,
    BundleFile,
    cut,
    encode_bundle,
    encode_receipt_file,
    export_limit_error,
    is_receipt,
    iter_frames,
    open_payload,
    payload_of,
    read_bundle,
    read_receipt_file,
)
from sync.protocol.bundle_materials import entries_size, needed_to_size, read_signed_parts
from sync.protocol.canonical import canonical
from sync.protocol.entry import SignedEntry, entry_hash
from sync.protocol.errors import BundleError, RefusedError
from sync.protocol.ids import is_within, parent_of, tier_of
from sync.protocol.keys import check_seal_key, verify
from sync.protocol.messages import Receipt, bundle_message, make_receipt

# --- export and import at a node ---------------------------------------------------------


def _related(a: str, b: str) -> bool:
    return a != b and (is_within(a, b) or is_within(b, a))


def bundle_entries(node: Node, to: str, *, full: bool = False) -> list[SignedEntry]:
    """Everything `to` is not known to hold (see module doc), in the order `bundle_frames`
    gives."""
    return [entry for frame in bundle_frames(node, to, full=full) for entry in frame]


def bundle_frames(node: Node, to: str, *, full: bool = False) -> list[list[SignedEntry]]:
    """Everything `to` is not known to hold, cut into a bundle's frames.

    Up to an ancestor: this node's subtree above what `to` has receipted (all with `full`),
    in the order this node stored it, each log's runs ending where a signature proves them
    (sync.proofs). Down to a descendant: what concerns it above what it has receipted
    (each entry proves itself).
    """
    store, me = node.store, node.node_id
    known = {} if full else receipts.acknowledged(store, to)
    if is_within(me, to):
        return list(proofs.batches(store, proofs.plan(store, me, known)))
    cursors = dict(known)
    chosen: list[SignedEntry] = []
    while True:
        batch, more = relevance.select_for(store, to, cursors, BATCH_ENTRIES)
        chosen.extend(batch)
        for entry in batch:
            cursors[entry.origin] = max(cursors.get(entry.origin, 0), entry.seq)
        if not more or not batch:
            return cut(sorted(chosen, key=lambda e: (len(e.origin), e.origin, e.seq)))


@dataclass(frozen=True)
class Exported:
    """A bundle made: `data` its entries part (the whole bundle when it carries no
    materials), `carried` the materials `write_bundle` streams after it."""

    data: bytes
    header: dict[str, Any]
    carried: bundle_materials.Carried = field(default_factory=bundle_materials.Carried)
    seal_to: bytes | None = None


def export_bundle(
    node: Node, to: str, *, seal: bool = True, seal_key: bytes | None = None, full: bool = False,
    materials: bool = False, max_bytes: int | None = None,
) -> Exported:  # fmt: skip
    """A signed bundle for `to` (an ancestor or a descendant of this node), sealed to its
    enrolled seal key (or `seal_key`) unless `seal` is False; BundleError if none is known.

    With `materials`, it also carries the materials `to` lacks, within `max_bytes` (default:
    `bundle_max_mb`) for the whole file: what does not fit is left for the next bundle,
    never an entry. Write it with `write_bundle`."""
    tier_of(to)
    if not _related(to, node.node_id):
        raise BundleError("bundle.unrelated", node_id=to, me=node.node_id)
    target = None
    if seal:
        target = seal_key or trust.seal_key(node.store, to)
        if target is None:
            raise BundleError("bundle.no_seal_key", node_id=to)
        check_seal_key(target.hex())
    if is_within(node.node_id, to):  # up to an ancestor: a village on a USB stick is alive
        liveness.beat(node, liveness.VIA_BUNDLE)
    frames = bundle_frames(node, to, full=full)
    entries = [entry for frame in frames for entry in frame]
    payload = payload_of(frames)
    carried = bundle_materials.Carried()
    if materials:
        bound = bundle_materials.max_bytes(node.config.settings) if max_bytes is None else max_bytes
        counts: dict[str, int] = {}
        for entry in entries:
            counts[entry.origin] = counts.get(entry.origin, 0) + 1
        entries_part = len(payload) + len(canonical(counts)) + 2048  # the rest of the header,
        # the seal, the framing and the signature take well under 2 KiB
        carried = bundle_materials.plan(node, to, bound - entries_part, sealed=seal)
    data = encode_bundle(
        node.wire_signer, node.node_id, to, node.clock.stamp(), entries, target, frames=frames,
        payload=payload, blobs=len(carried.parts),
    )  # fmt: skip
    if len(data) > MAX_BUNDLE_BYTES:
        raise export_limit_error()
    return Exported(data, read_bundle(data).header, carried, target)


def write_bundle(node: Node, made: Exported, out: IO[bytes]) -> int:
    """Write the whole bundle to `out`: its entries part, then its materials streamed a
    chunk at a time; the bytes written. BlobError if a material here changed meanwhile."""
    written = out.write(made.data)
    header_raw = read_bundle(made.data).header_raw
    return written + bundle_materials.write(node, made.carried, header_raw, made.seal_to, out)


@dataclass
class Imported:
    """What an import did; `already` when every entry was held before (a no-op)."""

    sender: str
    entries: int
    applied: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    already: bool = False
    receipt_file: bytes = b""
    materials: bundle_materials.Taken = field(default_factory=bundle_materials.Taken)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "bundle",
            "from": self.sender,
            "entries": self.entries,
            "applied": self.applied,
            "duplicates": self.duplicates,
            "already_imported": self.already,
            "materials": self.materials.to_json(),
        }


class _Refused(Exception):
    def __init__(
        self, error: BundleError, runs: list[Run] | None = None, result: IngestResult | None = None
    ) -> None:
        self.error, self.runs, self.result = error, runs, result


def _signed_by(key: bytes | None, bundle: BundleFile) -> bool:
    return key is not None and verify(
        key, bundle_message(bundle.header_raw, bundle.payload), bundle.sig
    )


def _unsigned(node: Node, bundle: BundleFile) -> BundleError | None:
    """Why the bundle is not the sender's, judged by the keys held now; None if it is.
    A bundle signed by a key of the sender's that was revoked is counted as such."""
    if trust.verify_wire(node.store, bundle.sender, lambda key: _signed_by(key, bundle)):
        return None
    keys = [k for k in (trust.public_key(node.store, bundle.sender),) if k is not None]
    ring = keyring.KeyRing.load(node.store, bundle.sender)
    if keyring.signed_by_revoked(node.store, bundle.sender, lambda key: _signed_by(key, bundle)):
        with node.store.transaction():
            keyring.record_use(
                node.store, bundle.sender, bundle.sender, "bundle", None, node.clock.stamp()
            )
        return BundleError("bundle.revoked", node_id=bundle.sender)
    kind = "bundle.unknown_sender" if not keys and not ring.enrols else "bundle.forged"
    return BundleError(kind, node_id=bundle.sender)


def _add(total: IngestResult, part: IngestResult) -> None:
    for origin, count in part.applied.items():
        total.applied[origin] = total.applied.get(origin, 0) + count
    total.duplicates += part.duplicates
    total.rejected.extend(part.rejected)
    total.forks.extend(part.forks)


def _receipt_for(node: Node, sender: str) -> Receipt:
    """Up: the heads of the sender's subtree held here. Down: what is held here of every
    log (whole within this node, in part above it), so the sender can use it as cursors."""
    store, me = node.store, node.node_id
    if is_within(sender, me):
        return receipts.issue(store, node.wire_signer, me, node.clock, sender)
    heads: dict[str, tuple[int, bytes]] = {
        o: h for o, h in store.heads().items() if is_within(o, me)
    }
    for origin, seq in store.max_seqs().items():
        digest = store.hash_at(origin, seq)
        if origin not in heads and digest is not None:
            heads[origin] = (seq, digest)
    return make_receipt(node.wire_signer, me, node.clock.stamp(), heads)


def _keep_fork_evidence(node: Node, runs: list[Run], forks: list[dict[str, Any]]) -> None:
    """Forks are proof a key wrote two histories: keep them even though the bundle is refused."""
    at = node.clock.stamp()
    with node.store.transaction():
        for fork in forks:
            for run in runs:
                offset = int(fork["seq"]) - run.first
                if run.origin == fork["origin"] and 0 <= offset < len(run.items):
                    raw, sig = run.items[offset]
                    seq, kind = int(fork["seq"]), json.loads(raw)["type"]
                    other = SignedEntry(raw, sig, entry_hash(raw), run.origin, seq, kind)
                    held = bytes.fromhex(fork["held_hash"])
                    node.store.record_fork(run.origin, seq, held, other, at)


def import_bundle(node: Node, data: bytes, materials: IO[bytes] | None = None) -> Imported:
    """Verify and apply a bundle's entries part, whole or not at all, then take in the
    materials that follow it one by one (from `materials`, a file at the first byte after
    the entries part; by default from the rest of `data`).

    When the sender's key is known here, a bundle it did not sign is refused before its
    payload is decrypted or unpacked. Otherwise (a first bundle from the parent) frames are
    applied one at a time inside the transaction and the signature is checked, against the
    key the bundle itself brought, before the commit; anything wrong rolls everything back.
    """
    bundle = read_bundle(data)
    if not bundle.blobs and materials is not None and materials.read(1):
        raise BundleError("bundle.malformed", reason="bytes after the signature")
    me = node.node_id
    if bundle.recipient != me:
        raise BundleError("bundle.wrong_recipient", to=bundle.recipient, me=me)
    if not _related(bundle.sender, me):
        raise BundleError("bundle.unrelated", node_id=bundle.sender, me=me)
    checked = bool(keyring.KeyRing.load(node.store, bundle.sender).enrols)
    if checked and (forged := _unsigned(node, bundle)) is not None:
        if forged.key != "bundle.forged" or bundle.sender != parent_of(me):
            raise forged
        # the parent may have rotated its key, and this bundle brings the rotation: judged
        # like a parent's first bundle, against the keys it brought, before the commit
        checked = False
    if not checked and bundle.sender != parent_of(me):  # only a parent's first bundle may
        raise BundleError("bundle.unknown_sender", node_id=bundle.sender)  # bring its key
    stamp = node.clock.stamp()
    result = IngestResult()
    try:
        with node.store.transaction():
            for runs in iter_frames(bundle, node.seals):
                part = ingest(
                    node.store,
                    runs,
                    me=me,
                    sender=bundle.sender,
                    received_at=stamp,
                )
                _add(result, part)
                if part.rejected:
                    if not checked and (forged := _unsigned(node, bundle)) is not None:
                        raise _Refused(forged)
                    refusal = BundleError("bundle.entry_refused", **part.rejected[0])
                    raise _Refused(refusal, runs, part)
            if not checked and (forged := _unsigned(node, bundle)) is not None:
                raise _Refused(forged)
            if result.applied_total:
                node.store.set_meta("last_sync", stamp)
                node.store.set_meta("last_sync_peer", f"bundle:{bundle.sender}")
                node.store.execute(
                    "INSERT INTO peers (node_id, last_contact) VALUES (?, ?) "
                    "ON CONFLICT(node_id) DO UPDATE SET last_contact = excluded.last_contact",
                    (bundle.sender, stamp),
                )
    except _Refused as refused:
        if refused.runs is not None and refused.result is not None and refused.result.forks:
            _keep_fork_evidence(node, refused.runs, refused.result.forks)
            forks.report(node)  # evidence travels up in this node's log (sync.fork_evidence)
        raise refused.error from None
    receipt = _receipt_for(node, bundle.sender)
    taken = bundle_materials.Taken()
    parts = None
    if bundle.blobs:
        source = materials or bundle_materials.from_memory(data, bundle.size)
        taken = bundle_materials.take(node, source, bundle, stamp)
        parts = bundle_materials.receipt_parts(node, bundle.sender, taken)
    digest = hashlib.sha256(memoryview(data)[: bundle.size]).digest()
    total = int(bundle.header["entries"])
    return Imported(
        sender=bundle.sender,
        entries=total,
        applied=result.applied,
        duplicates=result.duplicates,
        already=total > 0 and not result.applied_total,
        receipt_file=encode_receipt_file(receipt, bundle.sender, digest, parts),
        materials=taken,
    )


def read_entries_part(handle: IO[bytes], name: str) -> bytes:
    """A bundle file's entries part (or as much of it as there is: `read_bundle` says what
    is wrong with it), leaving `handle` at the first byte of its materials part; BundleError
    if the entries part is over MAX_BUNDLE_BYTES."""
    prefix = handle.read(9)
    if prefix.startswith(MAGIC):
        prefix += handle.read(max(0, needed_to_size(prefix) - len(prefix)))
        total = entries_size(prefix)
    else:  # not a bundle: `read_bundle` says so, unless it is too big to be one anyway
        total = handle.seek(0, os.SEEK_END)
    if total > MAX_BUNDLE_BYTES:
        raise BundleError(
            "bundle.too_big", path=name, size=total // 2**20, limit=MAX_BUNDLE_BYTES // 2**20
        )
    if not prefix.startswith(MAGIC):
        return prefix
    return prefix + handle.read(total - len(prefix))


def import_receipt(node: Node, data: bytes) -> Receipt:
    """Verify a receipt file against its issuer's enrolled key and record it, with the
    materials it says the issuer holds whole (or in part) when it says so."""
    return import_receipt_file(node, data)[0]


def import_receipt_file(
    node: Node, data: bytes
) -> tuple[Receipt, bundle_materials.Acknowledged | None]:
    """`import_receipt`, and what the file says of materials, if anything."""
    for_node, raw, sig = read_receipt_file(data)
    if for_node != node.node_id:
        raise BundleError("bundle.receipt_not_ours", to=for_node, me=node.node_id)
    said = bundle_materials.check_parts(node, read_signed_parts(data))
    issuer = said.issuer if said is not None else None
    try:
        receipt = receipts.accept(node.store, raw, sig, expected_issuer=issuer)
    except RefusedError as exc:
        raise BundleError("bundle.receipt_refused", reason=str(exc)) from None
    if said is not None:
        bundle_materials.record(node, said)
    return receipt, said


i18n.register(
    {
        "bundle.revoked": (
            "This bundle is signed by a revoked key of {node_id}: refused, nothing applied.",
            "此数据包由 {node_id} 已吊销的密钥签名：已拒绝，未导入任何内容。",
        ),
    }
)

__all__ = [
    "MAX_BUNDLE_BYTES",
    "MAX_RECEIPT_BYTES",
    "RECEIPT_MAGIC",
    "BundleFile",
    "Exported",
    "Imported",
    "bundle_entries",
    "encode_bundle",
    "export_bundle",
    "import_bundle",
    "import_receipt",
    "import_receipt_file",
    "is_receipt",
    "open_payload",
    "read_bundle",
    "read_entries_part",
    "write_bundle",
]
