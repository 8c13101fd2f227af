"""Batches: entries on the wire and in bundles, compressed, bounded (DESIGN §4).

Layout (before zstd compression): b"ZBB1" magic, a canonical-JSON header line
`{"runs": [[origin, first_seq, count], ...]}` and a newline, then for every entry a
4-byte big-endian length and its exact bytes, then all 64-byte signatures in one block
(signatures do not compress; keeping them apart lets the JSON compress better).

Invariant: decoding never re-serialises an entry; the bytes that come out are the bytes
the author signed. Labels in the header are only hints: verification re-checks each one.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import zstandard

from sync.protocol import i18n
from sync.protocol.canonical import MAX_INT, canonical
from sync.protocol.entry import MAX_ENTRY_BYTES, SIGNATURE_BYTES, SignedEntry
from sync.protocol.errors import RefusedError

MAGIC = b"ZBB1"
BATCH_ENTRIES, BATCH_BYTES = 4000, 2 * 1024 * 1024  # what a push or a bundle frame holds
MAX_BATCH_ENTRIES = 20_000  # what a receiver takes
MAX_BATCH_BYTES = 16 * 1024 * 1024  # decompressed; bounds memory on the receiver
_LEN = struct.Struct(">I")
LEVEL = 1  # as small as level 6 here, 3× faster


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive entries of one origin, as (raw, sig) pairs, first seq `first`."""

    origin: str
    first: int
    items: list[tuple[bytes, bytes]]


def encode_batch(entries: Sequence[SignedEntry]) -> bytes:
    """Compress entries (grouped into runs in the order given) into one batch."""
    runs: list[list[object]] = []
    for entry in entries:
        last = runs[-1] if runs else None
        if last is not None and last[0] == entry.origin and last[1] + last[2] == entry.seq:  # type: ignore[operator]
            last[2] += 1  # type: ignore[operator]
        else:
            runs.append([entry.origin, entry.seq, 1])
    parts = [MAGIC, canonical({"runs": runs}), b"\n"]
    for entry in entries:
        parts.append(_LEN.pack(len(entry.raw)))
        parts.append(entry.raw)
    parts.extend(entry.sig for entry in entries)
    # a compressor per batch (~4 µs): one shared by threads is not allowed by python-zstandard,
    # and `serve`'s background push and its loop's pull answers can compress at once
    return zstandard.ZstdCompressor(level=LEVEL).compress(b"".join(parts))


def _bad(reason: str) -> RefusedError:
    return RefusedError("batch.malformed", reason=reason)


def _decompress(data: bytes) -> bytes:
    """The frame's content, never more than MAX_BATCH_BYTES, whatever its header claims.

    python-zstandard allocates the content size a frame header states and ignores
    `max_output_size` then; so a frame claiming more than the limit is refused from its
    header alone, one claiming less gets a buffer of that size (bounded) and fails if its
    data runs over, and one claiming nothing gets at most the limit and fails past it.
    """
    try:
        claimed = zstandard.frame_content_size(data)
    except zstandard.ZstdError:
        raise _bad("not a zstd frame") from None
    if claimed > MAX_BATCH_BYTES:
        raise _bad(f"frame claims {claimed} bytes, more than {MAX_BATCH_BYTES}")
    try:
        # one per call: an instance must not be used by two threads at once (a server
        # decodes pushes while its background sync decodes pulls); a window bigger than a
        # whole batch is refused rather than allocated
        decompressor = zstandard.ZstdDecompressor(max_window_size=MAX_BATCH_BYTES)
        return decompressor.decompress(data, max_output_size=MAX_BATCH_BYTES)
    except zstandard.ZstdError:
        raise _bad("not a zstd frame, truncated or too large") from None


def decode_batch(data: bytes) -> list[Run]:
    """The runs of a batch; RefusedError for anything truncated, oversized or malformed.

    Memory stays bounded by MAX_BATCH_BYTES (plus the runs made from them) for any input.
    """
    plain = _decompress(data)
    if not plain.startswith(MAGIC):
        raise _bad("bad magic")
    end = plain.find(b"\n", len(MAGIC))
    if end < 0:
        raise _bad("no header")
    try:
        header = json.loads(plain[len(MAGIC) : end])
        runs = [(o, f, c) for o, f, c in header["runs"]]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise _bad("bad header") from None
    if not all(type(o) is str and type(f) is int and type(c) is int for o, f, c in runs):
        raise _bad("bad header")
    total = sum(c for _, _, c in runs)
    if total > MAX_BATCH_ENTRIES or any(c < 1 or f < 1 or f > MAX_INT - c for _, f, c in runs):
        raise _bad("bad run counts")
    raws: list[bytes] = []
    pos = end + 1
    for _ in range(total):
        if pos + 4 > len(plain):
            raise _bad("truncated")
        (size,) = _LEN.unpack_from(plain, pos)
        if size > MAX_ENTRY_BYTES:
            raise _bad("entry too big")
        pos += 4
        raws.append(plain[pos : pos + size])
        pos += size
    if len(plain) - pos != total * SIGNATURE_BYTES or any(len(r) == 0 for r in raws):
        raise _bad("truncated")
    sigs = [plain[at : at + SIGNATURE_BYTES] for at in range(pos, len(plain), SIGNATURE_BYTES)]
    out: list[Run] = []
    index = 0
    for origin, first, count in runs:
        out.append(
            Run(
                origin,
                first,
                list(zip(raws[index : index + count], sigs[index : index + count], strict=True)),
            )
        )
        index += count
    return out


i18n.register({"batch.malformed": ("malformed batch: {reason}", "批次格式错误：{reason}")})
