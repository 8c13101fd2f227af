"""Bundles from a hostile member: a forged file is refused unopened, and what a file may make
a receiver unpack or hold is capped, whoever signed it."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zstandard
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sync import bundles
from sync.bundles import export_bundle, import_bundle
from sync.node import Node
from sync.protocol import bundle as bundle_format
from sync.protocol.batch import MAX_BATCH_BYTES, Run, encode_batch
from sync.protocol.bundle import (
    MAGIC,
    MAX_BUNDLE_ENTRIES,
    MAX_BUNDLE_PLAIN_BYTES,
    SUITE_NAME,
    VERSION,
    BundleFile,
)
from sync.protocol.canonical import canonical
from sync.protocol.errors import BundleError
from sync.protocol.keys import Signer
from sync.protocol.messages import bundle_message
from tests.support.state import snapshot
from tests.support.topology import CITY, TOWN, VILLAGE, append_notes, create_node, enrol
from tests.support.wire import tampered

CREATED = "2026-12-01T10:00:00+08:00"
GARBAGE = b"neither zstd nor HPKE, just bytes " * 8


@dataclass
class Net:
    city: Node
    town: Node
    village: Node


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    """A city, a town and a village enrolled by their parents; the town knows the village's
    key (it enrolled it), the village does not know the town's yet (nothing came down)."""
    city = create_node(tmp_path, CITY, None)
    town = create_node(tmp_path, TOWN, city.config.public_key)
    village = create_node(tmp_path, VILLAGE, city.config.public_key)
    try:
        enrol(city, town)
        enrol(town, village)
        yield Net(city, town, village)
    finally:
        for node in (city, town, village):
            node.close()


def craft(
    signer: Signer,
    sender: str,
    recipient: str,
    counts: dict[str, int],
    payload: bytes,
    *,
    sealed: bool = False,
) -> bytes:
    """A bundle file with exactly this header and payload, signed by `signer`."""
    header: dict[str, Any] = {
        "v": VERSION, "kind": "bundle", "from": sender, "to": recipient, "created": CREATED,
        "sealed": sealed, "entries": sum(counts.values()), "counts": counts,
    }  # fmt: skip
    if sealed:
        header["suite"] = SUITE_NAME
    raw = canonical(header)
    sig = signer.sign(bundle_message(raw, payload))
    return b"".join(
        [MAGIC, bytes([VERSION]), struct.pack(">I", len(raw)), raw,
         struct.pack(">Q", len(payload)), payload, sig]
    )  # fmt: skip


def frames(*batches: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(b)) + b for b in batches)


def refused(node: Node, data: bytes) -> BundleError:
    """Import `data` at `node`, which must refuse it and keep everything as it was."""
    before = snapshot(node.store)
    with pytest.raises(BundleError) as caught:
        import_bundle(node, data)
    assert snapshot(node.store) == before
    assert "\n" not in str(caught.value)
    return caught.value


@pytest.mark.parametrize(
    ("sealed", "opened"),
    [pytest.param(False, "bundle.malformed", id="plain"),
     pytest.param(True, "bundle.cannot_open", id="sealed")],
)  # fmt: skip
def test_bundle_forged_is_refused_before_its_payload_is_opened(
    net: Net, sealed: bool, opened: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    payloads: list[str] = []  # who had a payload opened (decrypted, unpacked)
    real = bundles.iter_frames

    def watched(bundle: BundleFile, seal: X25519PrivateKey) -> Iterator[list[Run]]:
        payloads.append(bundle.sender)
        return real(bundle, seal)

    monkeypatch.setattr(bundles, "iter_frames", watched)
    counts = {VILLAGE: 2}
    payload = GARBAGE if sealed else frames(GARBAGE)  # a frame that is not zstd
    forged = craft(Signer.generate(), VILLAGE, TOWN, counts, payload, sealed=sealed)
    assert refused(net.town, forged).key == "bundle.forged"
    assert payloads == []
    # the very same payload under the village's own signature is opened, and found wanting
    genuine = craft(net.village.signer, VILLAGE, TOWN, counts, payload, sealed=sealed)
    assert refused(net.town, genuine).key == opened
    assert payloads == [VILLAGE]


def bomb(declared: int, count: int) -> bytes:
    """`count` frames, each a zstd frame of `declared` zero bytes (a few hundred bytes each):
    no batch inside, so unpacking any one of them would end in "damaged"."""
    one = zstandard.ZstdCompressor(level=1).compress(bytes(declared))
    assert zstandard.frame_content_size(one) == declared and len(one) < 4096
    return frames(*[one] * count)


def test_bundle_frames_declaring_more_than_the_cap_are_refused_unopened(net: Net) -> None:
    count = MAX_BUNDLE_PLAIN_BYTES // MAX_BATCH_BYTES + 1  # each at the per-batch limit
    payload = bomb(MAX_BATCH_BYTES, count)
    data = craft(net.village.signer, VILLAGE, TOWN, {VILLAGE: count}, payload)
    error = refused(net.town, data)  # signed by an enrolled village with its own key
    assert error.key == "bundle.unpacks_too_big"
    assert f"{MAX_BUNDLE_PLAIN_BYTES // 2**20} MiB" in str(error)


def test_bundle_first_bundle_from_the_parent_is_capped_too(net: Net) -> None:
    """The village does not know the town's key yet: the payload is opened before the
    signature can be checked, and still nothing is unpacked beyond the cap."""
    count = MAX_BUNDLE_PLAIN_BYTES // MAX_BATCH_BYTES + 1
    data = craft(net.town.signer, TOWN, VILLAGE, {TOWN: count}, bomb(MAX_BATCH_BYTES, count))
    assert refused(net.village, data).key == "bundle.unpacks_too_big"


def test_bundle_frame_beyond_the_batch_limit_is_refused_unopened(net: Net) -> None:
    data = craft(net.village.signer, VILLAGE, TOWN, {VILLAGE: 1}, bomb(MAX_BATCH_BYTES + 1, 1))
    error = refused(net.town, data)
    assert error.key == "bundle.malformed" and "unpacks to more than" in str(error)


def test_bundle_declaring_too_many_entries_is_refused_from_its_header(net: Net) -> None:
    data = craft(net.village.signer, VILLAGE, TOWN, {VILLAGE: MAX_BUNDLE_ENTRIES + 1}, GARBAGE)
    error = refused(net.town, data)
    assert error.key == "bundle.too_many_entries"
    assert f"{MAX_BUNDLE_ENTRIES:,}" in str(error)


def test_bundle_frame_hiding_more_than_it_declares_is_refused(net: Net) -> None:
    """A batch followed, inside the same frame, by a second zstd frame of 8 MiB: the frame
    declares only the batch's size, and must not unpack to more."""
    append_notes(net.village, 2)
    batch = encode_batch(list(net.village.store.iter_all(VILLAGE)))
    hidden = zstandard.ZstdCompressor(level=1).compress(bytes(8 * 2**20))
    data = craft(net.village.signer, VILLAGE, TOWN, {VILLAGE: 3}, frames(batch + hidden))
    error = refused(net.town, data)
    assert error.key == "bundle.malformed" and "size it declares" in str(error)


def test_bundle_frames_without_a_declared_size_are_refused(net: Net) -> None:
    append_notes(net.village, 2)
    entries = list(net.village.store.iter_all(VILLAGE))
    plain = zstandard.ZstdDecompressor().decompress(encode_batch(entries))
    unsized = zstandard.ZstdCompressor(level=1, write_content_size=False).compress(plain)
    data = craft(net.village.signer, VILLAGE, TOWN, {VILLAGE: len(entries)}, frames(unsized))
    error = refused(net.town, data)
    assert error.key == "bundle.malformed" and "declare its size" in str(error)


def test_bundle_of_many_frames_is_applied_whole_or_not_at_all(net: Net) -> None:
    append_notes(net.village, 10)
    entries = list(net.village.store.iter_all(VILLAGE))
    small = [encode_batch(entries[i : i + 3]) for i in range(0, len(entries), 3)]
    good = craft(net.village.signer, VILLAGE, TOWN, {VILLAGE: len(entries)}, frames(*small))
    opened = bundle_format.iter_frames(bundle_format.read_bundle(good), net.town.seals)
    assert [sum(len(run.items) for run in runs) for runs in opened] == [3, 3, 3, 1]
    bad = [*entries[:-2], tampered(entries[-2], 10), entries[-1]]  # in the third frame
    batches = [encode_batch(bad[i : i + 3]) for i in range(0, len(bad), 3)]
    signed = craft(net.village.signer, VILLAGE, TOWN, {VILLAGE: len(bad)}, frames(*batches))
    assert refused(net.town, signed).key == "bundle.entry_refused"  # the first two undone
    assert import_bundle(net.town, good).applied == {VILLAGE: len(entries)}


def test_bundle_frames_must_hold_what_the_header_counts(net: Net) -> None:
    append_notes(net.village, 4)
    entries = list(net.village.store.iter_all(VILLAGE))
    short = craft(net.village.signer, VILLAGE, TOWN, {VILLAGE: len(entries) + 1},
                  frames(encode_batch(entries)))  # fmt: skip
    assert refused(net.town, short).key == "bundle.malformed"
    more = craft(net.village.signer, VILLAGE, TOWN, {VILLAGE: len(entries) - 1},
                 frames(encode_batch(entries)))  # fmt: skip
    assert refused(net.town, more).key == "bundle.malformed"


@pytest.mark.parametrize(
    ("limit", "value"),
    [pytest.param("MAX_BUNDLE_ENTRIES", 3, id="entries"),
     pytest.param("MAX_BUNDLE_PLAIN_BYTES", 2000, id="unpacked")],
)  # fmt: skip
def test_bundle_export_refuses_what_an_import_would(
    net: Net, monkeypatch: pytest.MonkeyPatch, limit: str, value: int
) -> None:
    append_notes(net.village, 10)
    monkeypatch.setattr(bundle_format, limit, value)
    with pytest.raises(BundleError) as refused_export:
        export_bundle(net.village, TOWN, seal=False)
    assert refused_export.value.key == "bundle.export_too_big"


def test_bundle_with_more_frames_than_entries_is_refused_unopened(net: Net) -> None:
    """Each frame holds an entry at least: a million tiny frames cannot hide behind one."""
    data = craft(net.village.signer, VILLAGE, TOWN, {VILLAGE: 3}, bomb(16, 4))
    error = refused(net.town, data)
    assert error.key == "bundle.malformed" and "more frames than entries" in str(error)
