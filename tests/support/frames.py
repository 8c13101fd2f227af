"""zstd frames that lie about their size, made by hand (tests/sync/test_http_boundary.py)."""

from __future__ import annotations

import struct

ZSTD_MAGIC = 0xFD2FB528
BLOCK = 128 * 1024  # the largest zstd block


def rle_frame(content: int, *, declared: int | None, byte: int = 0) -> bytes:
    """A zstd frame of `content` bytes of `byte` in RLE blocks (4 bytes per 128 KiB, so a
    GiB fits in 32 KiB), whose header states `declared` as its size (None: no size, and a
    window of 128 KiB)."""
    if declared is None:  # window descriptor: 2^(10 + 7) bytes
        header = struct.pack("<IBB", ZSTD_MAGIC, 0x00, 7 << 3)
    else:  # single segment, 8-byte content size
        header = struct.pack("<IBQ", ZSTD_MAGIC, 0xE0, declared)
    blocks = bytearray()
    left = content
    while left > 0:
        size = min(left, BLOCK)
        left -= size
        value = (size << 3) | (1 << 1) | (1 if left == 0 else 0)  # an RLE block; the last?
        blocks += value.to_bytes(3, "little") + bytes([byte])
    return header + bytes(blocks)


def wide_window_frame(window_log: int, content: int) -> bytes:
    """A frame without a size that asks for a window of 2^`window_log` bytes."""
    header = struct.pack("<IBB", ZSTD_MAGIC, 0x00, (window_log - 10) << 3)
    return header + rle_frame(content, declared=None)[len(header) :]
