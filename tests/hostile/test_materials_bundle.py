"""Attacks on materials in bundles: an enrolled village, with its own real key, builds the
bundle file by hand.

material_for_a_case_it_may_not_write: village A signs a `case.attached` on village B's case
and bundles the scan it names to the town. The entry is quarantined at the town, so no
admitted entry names the scan: it is refused with one line, nothing of it is held, and
the rest of the bundle is imported.

lying_materials_part: A attaches scans to its own case honestly, then bundles a materials
part that lies: a head claiming another size, a chunk longer than its size, a mislabelled
stream (other bytes under the right name), a frame declaring gigabytes (stepped over, never
read). Each is refused on its own, the honest material between them is taken, nothing
partial is held, and A's honest bundle afterwards delivers every scan whole.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from sync import trust
from sync.node import NODE_DB
from sync.protocol.blobs import CHUNK, DATA, LIST, BlobRef, Hasher, chunk_count, encode_frame
from sync.protocol.bundle import encode_bundle, read_bundle
from sync.protocol.bundle_materials import (
    FRAME_HEAD,
    Part,
    context_of,
    encode_head,
    opening,
    seal_payload,
)
from sync.store import Store
from tests.hostile.harness import Actor, stamp_now
from tests.hostile.network import (
    ITEM,
    TOWN,
    VILLAGE_A,
    VILLAGE_B,
    Net,
    assert_quarantined,
    assert_works,
    zb,
    zj,
)

# the attacks reach the city too: its PostgreSQL runs in the soak run (the CI run's sample
# of a member pushing to a PostgreSQL city: test_city_pushes.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]


def _scan(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@dataclass
class Carry:
    """One material as the hostile bundle carries it: the head it claims, the chunk list
    and chunk payloads it sends (payloads may be any bytes), optional frame lengths that lie."""

    head: Part
    listed: bytes
    chunks: list[bytes]
    lengths: dict[int, int] | None = None  # chunk index → declared payload length


def _honest(data: bytes) -> Carry:
    hasher = Hasher()
    hasher.update(data)
    ref = hasher.ref()
    chunks = [data[i : i + CHUNK] for i in range(0, max(len(data), 1), CHUNK)]
    return Carry(Part(ref, 0, ref.chunks), hasher.chunk_list(), chunks)


def _seal_key(actor: Actor, node_id: str) -> bytes:
    with actor.store() as store:
        key = trust.seal_key(store, node_id)
    assert key is not None
    return key


def _bundle(actor: Actor, to: str, after: int, carried: list[Carry]) -> bytes:
    """A sealed bundle from `actor` to `to`: its log above `after`, signed with its real
    key, then `carried` as the materials part, each piece sealed as the format says."""
    seal_to = _seal_key(actor, to)
    entries = actor.log(after=after)
    data = encode_bundle(
        actor.signer, actor.node_id, to, stamp_now(), entries, seal_to, blobs=len(carried)
    )
    context = context_of(read_bundle(data).header_raw)
    parts = [data, opening()]
    for position, carry in enumerate(carried):
        sha = carry.head.ref.sha256
        parts.append(encode_head(carry.head, position, context, seal_to))
        parts.append(encode_frame(LIST, 0, seal_payload(carry.listed, seal_to, context, sha,
                                                        LIST, 0)))  # fmt: skip
        for index, chunk in enumerate(carry.chunks, start=carry.head.first):
            frame = encode_frame(DATA, index, seal_payload(chunk, seal_to, context, sha, DATA,
                                                           index))  # fmt: skip
            lie = (carry.lengths or {}).get(index)
            if lie is not None:  # the head declares `lie` bytes; the file holds what it holds
                frame = FRAME_HEAD.pack(DATA, index, lie) + frame[FRAME_HEAD.size :]
            parts.append(frame)
    return b"".join(parts)


def _town_head(net: Net, origin: str) -> int:
    return int(zj(net.home(TOWN), "status")["heads"].get(origin, 0))


def _blob_rows(net: Net, sha256: str) -> bool:
    with Store(net.home(TOWN) / NODE_DB) as store:
        return bool(store.query("SELECT 1 FROM blobs WHERE sha256 = ?", (sha256,)))


def test_material_for_a_case_it_may_not_write_is_refused_at_import(
    net: Net, tmp_path: Path
) -> None:
    town, b = net.home(TOWN), net.home(VILLAGE_B)
    case_b = zb(b, "case", "receive", "--item", ITEM, "--applicant", "张三").stdout.strip()
    zb(b, "case", "forward", case_b)
    zb(b, "bundle", "export", "--to", TOWN, "--out", str(tmp_path / "b.zbb"))
    zb(town, "bundle", "import", str(tmp_path / "b.zbb"))

    hostile = net.actor(VILLAGE_A)
    after = _town_head(net, VILLAGE_A)
    carry = _honest(_scan(150_000, 1))
    ref = carry.head.ref
    forged = hostile.forge(
        "case.attached",
        {"case_id": case_b, "materials": [
            {"name": "户口簿", "file": "户口簿.pdf", "sha256": ref.sha256, "size": ref.size,
             "root": ref.root, "media_type": "application/pdf"}]},
    )  # fmt: skip
    stick = tmp_path / "a.zbb"
    stick.write_bytes(_bundle(hostile, TOWN, after, [carry]))

    done = zj(town, "bundle", "import", str(stick))
    assert done["applied"] == {VILLAGE_A: forged.seq - after}  # A's log goes in, evidence
    materials = done["materials"]
    assert materials["held"] == 0 and materials["refused"] == 1 and not materials["cut_short"]
    (refusal,) = materials["refusals"]
    assert refusal["sha256"] == ref.sha256 and refusal["reason"] == "blob.not_named"
    said = zb(town, "bundle", "import", str(stick)).stdout
    refused = [line for line in said.splitlines() if line.startswith("refused: ")]
    assert len(refused) == 1 and ref.sha256 in refused[0], said
    assert not _blob_rows(net, ref.sha256)
    assert not (town / "materials" / "partial" / ref.sha256).exists()
    assert zj(town, "case", "materials", case_b) == []
    assert_quarantined(town, VILLAGE_A, {forged.seq}, "material.not_on_path")
    assert_works(town)


def test_lying_materials_part_refused_piece_by_piece(net: Net, tmp_path: Path) -> None:
    town, a = net.home(TOWN), net.home(VILLAGE_A)
    scans = {f"s{n}.pdf": _scan(2 * CHUNK + 1000 * n, 10 + n) for n in range(5)}
    for name, data in scans.items():
        (tmp_path / name).write_bytes(data)
    after = _town_head(net, VILLAGE_A)
    case_a = zb(a, "case", "receive", "--item", ITEM, "--applicant", "李四").stdout.strip()
    zb(a, "case", "attach", case_a, *(str(tmp_path / name) for name in scans))
    honest = [_honest(data) for data in scans.values()]
    shas = [c.head.ref.sha256 for c in honest]

    bigger = _honest(scans["s0.pdf"])  # a head claiming another size than its entry's
    ref = bigger.head.ref
    bigger.head = Part(BlobRef(ref.sha256, ref.size + CHUNK, ref.root), 0, ref.chunks + 1)
    bigger.chunks.append(b"\0" * CHUNK)
    longer = _honest(scans["s1.pdf"])  # a chunk with bytes after its end
    longer.chunks[0] += b"\0" * 100
    other = _honest(scans["s2.pdf"])  # the right name over other bytes
    other.chunks = [_scan(len(c), 99) for c in other.chunks]
    endless = _honest(scans["s4.pdf"])  # a frame declaring 4 GB, the file ending there
    endless.lengths = {1: 0xFFFFFFF0}
    stick = tmp_path / "lies.zbb"
    carried = [bigger, longer, other, honest[3], endless]
    stick.write_bytes(_bundle(net.actor(VILLAGE_A), TOWN, after, carried))

    answer = zj(town, "bundle", "import", str(stick))
    assert answer["applied"][VILLAGE_A] == 2  # the case and its attach: entries go in
    materials = answer["materials"]
    assert materials["held"] == 1 and materials["cut_short"]
    reasons = {r["sha256"]: r["reason"] for r in materials["refusals"]}
    assert reasons == {
        shas[0]: "bundle.material_not_as_named",
        shas[1]: "blob.bad_chunk",
        shas[2]: "blob.bad_chunk",
    }
    assert [_blob_rows(net, sha) for sha in shas] == [False, False, False, True, False]
    assert materials["chunks_kept"][shas[4]] == 1  # its first chunk was whole and checked

    # A's honest bundle afterwards delivers every scan whole
    zb(a, "bundle", "export", "--to", TOWN, "--out", str(tmp_path / "honest.zbb"))
    again = zj(town, "bundle", "import", str(tmp_path / "honest.zbb"))
    assert again["materials"]["refused"] == 0 and again["materials"]["held"] == 5
    for name, data in scans.items():
        out = tmp_path / f"out-{name}"
        zb(town, "case", "material", case_a, Path(name).stem, "--out", str(out))
        assert out.read_bytes() == data
    assert chunk_count(len(scans["s4.pdf"])) == 3


def test_sibling_naming_the_same_hash_wrongly_does_not_hold_the_scan_back(
    net: Net, tmp_path: Path
) -> None:
    """Village B names A's scan's hash (a wrong size and root) on its own case and reaches
    the town first; A's honest bundle still delivers the scan."""
    town, a, b = net.home(TOWN), net.home(VILLAGE_A), net.home(VILLAGE_B)
    data = _scan(3 * CHUNK + 5, 60)
    (tmp_path / "户口簿.pdf").write_bytes(data)
    ref = _honest(data).head.ref
    case_b = zb(b, "case", "receive", "--item", ITEM, "--applicant", "王五").stdout.strip()
    net.actor(VILLAGE_B).forge(
        "case.attached",
        {"case_id": case_b, "materials": [
            {"name": "户口簿", "file": "x.pdf", "sha256": ref.sha256, "size": ref.size + 1,
             "root": "0" * 64, "media_type": "application/pdf"}]},
    )  # fmt: skip
    zb(b, "bundle", "export", "--to", TOWN, "--out", str(tmp_path / "b.zbb"))
    zb(town, "bundle", "import", str(tmp_path / "b.zbb"))

    case_a = zb(a, "case", "receive", "--item", ITEM, "--applicant", "李四").stdout.strip()
    zb(a, "case", "attach", case_a, str(tmp_path / "户口簿.pdf"))
    zb(a, "bundle", "export", "--to", TOWN, "--out", str(tmp_path / "a.zbb"))
    done = zj(town, "bundle", "import", str(tmp_path / "a.zbb"))
    assert done["materials"]["held"] == 1 and done["materials"]["refused"] == 0
    zb(town, "case", "material", case_a, "户口簿", "--out", str(tmp_path / "out.pdf"))
    assert (tmp_path / "out.pdf").read_bytes() == data
