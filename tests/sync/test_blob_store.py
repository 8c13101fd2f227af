"""The blob store and the blob stream format: checked, resumable, bounded."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from sync.blob_index import BlobState
from sync.blobs import BlobStore, Receiving
from sync.protocol.blobs import (
    CHUNK,
    DATA,
    LIST,
    BlobRef,
    FrameReader,
    Hasher,
    check_chunk,
    check_list,
    encode_frame,
    max_frame,
)
from sync.protocol.errors import BlobError
from sync.store import Store

AT = "2026-12-02T10:00:00+08:00"


def ref_and_list(data: bytes) -> tuple[BlobRef, bytes]:
    hasher = Hasher()
    for n in range(0, len(data), 1000):  # fed in pieces that do not align with chunks
        hasher.update(data[n : n + 1000])
    return hasher.ref(), hasher.chunk_list()


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    store = Store(tmp_path / "node.db", extensions=[BlobState()])
    return BlobStore(tmp_path, store)


def test_hasher_names_the_bytes_and_their_chunk_list() -> None:
    data = os.urandom(3 * CHUNK + 17)
    ref, digests = ref_and_list(data)
    assert ref.sha256 == hashlib.sha256(data).hexdigest() and ref.size == len(data)
    assert ref.chunks == 4 and len(digests) == 4 * 32
    assert ref.root == hashlib.sha256(digests).hexdigest()
    check_list(ref, digests)
    with pytest.raises(BlobError):
        check_list(ref, digests[:-1] + b"\0")
    check_chunk(ref, digests, 3, data[3 * CHUNK :])
    with pytest.raises(BlobError):
        check_chunk(ref, digests, 3, data[3 * CHUNK :] + b"x")  # more than the chunk
    empty, listed = ref_and_list(b"")
    assert empty.chunks == 1 and len(listed) == 32


def test_blob_store_add_is_streamed_deduplicated_and_refuses_past_the_limit(
    blobs: BlobStore,
) -> None:
    data = os.urandom(2 * CHUNK + 5)
    first = blobs.add_file(io.BytesIO(data), limit=10 * CHUNK, at=AT)
    again = blobs.add_file(io.BytesIO(data), limit=10 * CHUNK, at=AT)
    assert first == again and blobs.has(first.sha256)
    assert blobs.path(first.sha256).read_bytes() == data
    with pytest.raises(BlobError) as refused:
        blobs.add_file(io.BytesIO(os.urandom(CHUNK + 1)), limit=CHUNK, at=AT)
    assert refused.value.key == "blob.too_big"
    assert list(blobs.partial_dir.iterdir()) == []  # nothing of the refused file is left


def test_blob_store_read_refuses_bytes_changed_on_disk(blobs: BlobStore, tmp_path: Path) -> None:
    ref = blobs.add_file(io.BytesIO(b"scan" * 50_000), limit=10**7, at=AT)
    with open(blobs.path(ref.sha256), "r+b") as f:
        f.seek(100)
        f.write(b"X")
    out = tmp_path / "out.jpg"
    with pytest.raises(BlobError) as refused:
        blobs.write_out(ref.sha256, out)
    assert refused.value.key == "blob.corrupt"
    assert not out.exists() and not (tmp_path / "out.jpg.part").exists()


def test_receiving_resumes_at_the_last_checked_chunk(blobs: BlobStore) -> None:
    data = os.urandom(5 * CHUNK + 100)
    ref, digests = ref_and_list(data)
    arriving = blobs.receiving(ref)
    arriving.set_list(digests)
    for index in range(3):
        arriving.add(index, data[index * CHUNK : (index + 1) * CHUNK])
    with open(arriving.path, "ab") as f:  # a cut mid-chunk left half a chunk behind
        f.write(data[3 * CHUNK : 3 * CHUNK + 999])
    resumed = blobs.receiving(ref)  # a new process: the list and the partial file are kept
    assert resumed.have == 3  # the half chunk is cut by the next add (opening only reads)
    with pytest.raises(BlobError):  # out of order
        resumed.add(4, data[4 * CHUNK : 5 * CHUNK])
    with pytest.raises(BlobError):  # not the bytes the list names
        resumed.add(3, os.urandom(CHUNK))
    assert resumed.have == 3 and not resumed.finish(AT)
    for index in range(3, ref.chunks):
        resumed.add(index, data[index * CHUNK : (index + 1) * CHUNK])
    assert resumed.finish(AT) and blobs.has(ref.sha256)
    assert b"".join(blobs.read(ref.sha256)) == data
    assert list(blobs.partial_dir.iterdir()) == []


def test_receiving_cuts_a_corrupted_partial_back_to_its_good_prefix(blobs: BlobStore) -> None:
    data = os.urandom(4 * CHUNK)
    ref, digests = ref_and_list(data)
    arriving = blobs.receiving(ref)
    arriving.set_list(digests)
    for index in range(3):
        arriving.add(index, data[index * CHUNK : (index + 1) * CHUNK])
    with open(arriving.path, "r+b") as f:
        f.seek(CHUNK + 7)
        f.write(b"\0")
    assert blobs.receiving(ref).have == 1


def test_receiving_refuses_a_whole_that_is_not_the_named_hash(blobs: BlobStore) -> None:
    data = os.urandom(2 * CHUNK)
    honest, digests = ref_and_list(data)
    lying = BlobRef(hashlib.sha256(b"other").hexdigest(), honest.size, honest.root)
    arriving = blobs.receiving(lying)
    arriving.set_list(digests)
    arriving.add(0, data[:CHUNK])
    arriving.add(1, data[CHUNK:])
    with pytest.raises(BlobError) as refused:
        arriving.finish(AT)
    assert refused.value.key == "blob.hash_mismatch"
    assert not blobs.has(lying.sha256) and list(blobs.partial_dir.iterdir()) == []


def test_receiving_refuses_a_list_that_is_not_the_named_root(blobs: BlobStore) -> None:
    ref, digests = ref_and_list(os.urandom(CHUNK + 1))
    arriving = blobs.receiving(ref)
    with pytest.raises(BlobError):
        arriving.set_list(digests[::-1])
    with pytest.raises(BlobError):  # no chunk before a checked list
        arriving.add(0, b"x")


def test_frame_reader_gives_whole_frames_from_any_pieces_and_bounds_a_frame() -> None:
    stream = encode_frame(LIST, 0, b"l" * 64) + encode_frame(DATA, 0, b"c" * 1000)
    reader = FrameReader(max_frame(CHUNK))
    frames = [f for n in range(0, len(stream), 7) for f in reader.feed(stream[n : n + 7])]
    assert [(f.kind, f.index, len(f.payload)) for f in frames] == [(LIST, 0, 64), (DATA, 0, 1000)]
    assert reader.pending == 0
    with pytest.raises(BlobError):  # a frame claiming 1 GiB is refused from its header
        list(
            FrameReader(max_frame(CHUNK)).feed(
                DATA + (0).to_bytes(4, "big") + (2**30).to_bytes(4, "big")
            )
        )
    with pytest.raises(BlobError):
        list(FrameReader(max_frame(CHUNK)).feed(b"Z" + bytes(8)))


def every_chunk_in(blobs: BlobStore, data: bytes) -> tuple[BlobRef, Receiving]:
    """`data` arriving, its list and every chunk in, not settled yet."""
    ref, digests = ref_and_list(data)
    arriving = blobs.receiving(ref)
    arriving.set_list(digests)
    for index in range(ref.chunks):
        arriving.add(index, data[index * CHUNK : (index + 1) * CHUNK])
    return ref, arriving


def test_receiving_a_blob_attached_meanwhile_leaves_no_partial_behind(blobs: BlobStore) -> None:
    """The same bytes attached here while they arrive (or taken another way): the arrival
    settles on the copy held, and its partial file goes."""
    data = os.urandom(2 * CHUNK + 9)
    ref, arriving = every_chunk_in(blobs, data)
    assert blobs.add_file(io.BytesIO(data), limit=10 * CHUNK, at=AT) == ref
    assert arriving.finish(AT) and blobs.has(ref.sha256)
    assert b"".join(blobs.read(ref.sha256)) == data
    assert list(blobs.partial_dir.iterdir()) == []


@pytest.mark.parametrize("other", ["size_off_by_one", "another_list"])
def test_receiving_opened_for_another_ref_of_the_hash_leaves_the_partial_alone(
    blobs: BlobStore, other: str
) -> None:
    """Opening an arrival only reads: a `have` for the same hash named otherwise (a member
    naming a shared file with a wrong size or list) must not cut or unlist the partial that
    a put is about to settle (the server hashes it off its loop, then settles it unread)."""
    data = os.urandom(3 * CHUNK + 10)
    ref, arriving = every_chunk_in(blobs, data)
    lie = {"size_off_by_one": BlobRef(ref.sha256, ref.size - 1, ref.root),
           "another_list": BlobRef(ref.sha256, ref.size, "ab" * 32)}[other]  # fmt: skip
    assert blobs.receiving(lie).have < ref.chunks
    assert blobs.receiving(ref).have == ref.chunks  # the list and every chunk still there
    assert arriving.whole_matches()
    assert arriving.finish(AT, checked=True)
    assert b"".join(blobs.read(ref.sha256)) == data
