"""The bytes of the blobs a node holds (a case's materials), named by signed entries
(sync.blob_index says which entries name which blobs, and where they should go).

- the table `blobs` lists the blobs held whole, each checked against its SHA-256 before it
  was recorded; `drop` lets one go on purpose (recorded in `blob_dropped`).
- the bytes, under the home's `materials/`: `ab/<sha256>` whole, `partial/<sha256>` a
  transfer under way (only chunks checked against the signed chunk list are ever kept
  there), and `partial/<sha256>.list` its chunk list.

Invariants: a blob is recorded held only after its bytes are whole, fsynced and match its
SHA-256; no blob is read out without being checked against it again (`read`); a file is
read and written in chunks, never whole in memory; a disk that fills mid-write leaves the
partial file at its last whole checked chunk and says so (`blob.disk_full`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sync.logstore import LogStore
from sync.protocol import i18n
from sync.protocol.blobs import (
    CHUNK,
    SHA256,
    BlobRef,
    Hasher,
    check_chunk,
    check_list,
    chunk_size,
)
from sync.protocol.errors import BlobError

MATERIALS = "materials"
_FSYNC_EVERY = 8 * 1024 * 1024

class BlobStore:
    """The bytes of the blobs of one home, and the tables that say what is held."""

    def __init__(self, home: Path, store: LogStore) -> None:
        self.root = home / MATERIALS
        self.partial_dir = self.root / "partial"
        self.store = store

    # --- paths -----------------------------------------------------------------------

    def path(self, sha256: str) -> Path:
        return self.root / _named(sha256)[:2] / sha256

    def _partial(self, sha256: str) -> Path:
        return self.partial_dir / _named(sha256)

    def _list_path(self, sha256: str) -> Path:
        return self.partial_dir / (_named(sha256) + ".list")

    # --- what is held ----------------------------------------------------------------

    def has(self, sha256: str) -> bool:
        return bool(self.store.query("SELECT 1 FROM blobs WHERE sha256 = ?", (sha256,)))

    def held(self, sha256: str) -> BlobRef | None:
        """The ref of a blob held whole here (as it was checked when it was recorded)."""
        rows = self.store.query("SELECT size, root FROM blobs WHERE sha256 = ?", (sha256,))
        return BlobRef(sha256, rows[0][0], rows[0][1]) if rows else None

    def dropped(self, sha256: str) -> bool:
        return bool(self.store.query("SELECT 1 FROM blob_dropped WHERE sha256 = ?", (sha256,)))

    def _record(self, ref: BlobRef, at: str, source: str | None) -> None:
        """Held: since `at`, from `source` (the peer it came from; None: attached here).
        A blob held already keeps where it first came from."""
        with self.store.transaction():
            self.store.execute(
                "INSERT INTO blobs (sha256, size, root, held_at, source) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(sha256) DO NOTHING",
                (ref.sha256, ref.size, ref.root, at, source),
            )
            self.store.execute("DELETE FROM blob_dropped WHERE sha256 = ?", (ref.sha256,))

    # --- adding a local file ---------------------------------------------------------

    def add_file(self, source: IO[bytes], limit: int, at: str) -> BlobRef:
        """Stream `source` into the store (checked, fsynced, deduplicated): its ref.
        Refused with `blob.too_big` as soon as it passes `limit` bytes."""
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        hasher = Hasher()
        tmp = self.partial_dir / f"add-{os.getpid()}-{id(hasher)}.tmp"
        try:
            with _disk_full_is_an_error(), open(tmp, "wb") as out:
                while piece := source.read(CHUNK):
                    hasher.update(piece)
                    if hasher.size > limit:
                        raise BlobError("blob.too_big", limit_mb=_mb(limit))
                    out.write(piece)
                out.flush()
                os.fsync(out.fileno())
            ref = hasher.ref()
            self._settle(tmp, ref, at)
            return ref
        finally:
            tmp.unlink(missing_ok=True)

    def chunk_list(self, ref: BlobRef) -> bytes:
        """The chunk list of a held blob (read and hashed from its bytes)."""
        hasher = Hasher()
        for piece in self.read(ref.sha256):
            hasher.update(piece)
        return hasher.chunk_list()

    def _settle(self, path: Path, ref: BlobRef, at: str, source: str | None = None) -> None:
        """Move a whole, checked file into place (or drop it: the blob is held already)."""
        final = self.path(ref.sha256)
        if not self.has(ref.sha256) or not final.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, final)
            _fsync_dir(final.parent)
        else:
            path.unlink(missing_ok=True)
        self._record(ref, at, source)

    # --- reading ---------------------------------------------------------------------

    def read(self, sha256: str) -> Iterator[bytes]:
        """The bytes of a held blob in chunks; the last step checks them against its hash
        and raises `blob.corrupt` (the disk changed them), so a reader writes to a scratch
        file and keeps it only when the iteration ended without error."""
        if not self.has(sha256):
            raise BlobError("blob.not_held", sha256=sha256)
        digest = hashlib.sha256()
        try:
            with open(self.path(sha256), "rb") as src:
                while piece := src.read(CHUNK):
                    digest.update(piece)
                    yield piece
        except FileNotFoundError:
            raise BlobError("blob.corrupt", sha256=sha256) from None
        if digest.hexdigest() != sha256:
            raise BlobError("blob.corrupt", sha256=sha256)

    def read_chunk(self, sha256: str, index: int) -> bytes:
        """Chunk `index` of a held blob, unchecked (the receiver checks it)."""
        with open(self.path(sha256), "rb") as src:
            src.seek(index * CHUNK)
            return src.read(CHUNK)

    def write_out(self, sha256: str, out: Path) -> int:
        """Copy a held blob to `out`, checked; nothing is left at `out` on any failure."""
        tmp = out.with_name(out.name + ".part")
        written = 0
        try:
            with _disk_full_is_an_error(), open(tmp, "wb") as dst:
                for piece in self.read(sha256):
                    dst.write(piece)
                    written += len(piece)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
        return written

    # --- receiving in chunks ---------------------------------------------------------

    def receiving(self, ref: BlobRef) -> Receiving:
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        return Receiving(self, ref)

    @contextlib.contextmanager
    def claim(self, sha256: str) -> Iterator[bool]:
        """Whether this process may write `sha256`'s partial file now: an advisory lock
        (flock), so a server taking a blob from a child and a round fetching the same blob
        from above — two processes — never write one partial file at once. Never waits."""
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        lock = self.partial_dir / (sha256 + ".lock")
        with open(lock, "a+b") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                if self.has(sha256):  # nobody writes its partial again
                    lock.unlink(missing_ok=True)
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def drop(self, sha256: str, at: str) -> None:
        """Let a held blob go on purpose (its hash stays in the entries that name it)."""
        path = self.path(sha256)
        with self.store.transaction():
            self.store.execute("DELETE FROM blobs WHERE sha256 = ?", (sha256,))
            self.store.execute(
                "INSERT OR REPLACE INTO blob_dropped (sha256, at) VALUES (?, ?)", (sha256, at)
            )
        path.unlink(missing_ok=True)


class Receiving:
    """A blob arriving chunk by chunk, from a wire or a bundle, resumable across cuts and
    restarts: `have` is how many chunks are held checked; `chunk_list` must be given once
    (checked against the ref) before any chunk; chunks come in order from `have`.
    Opening one only reads (a `have` for the same hash named with another size or list
    must not cut a partial a put is settling); only `set_list`, `add`, `finish` and
    `abandon` write, under `BlobStore.claim`."""

    def __init__(self, blobs: BlobStore, ref: BlobRef) -> None:
        self.blobs, self.ref = blobs, ref
        self.path = blobs._partial(ref.sha256)
        self.digests: bytes | None = None
        listed = blobs._list_path(ref.sha256)
        if listed.exists():
            with contextlib.suppress(BlobError):  # another ref's: the next set_list replaces it
                self.set_list(listed.read_bytes(), save=False)
        self.have = self._verified_prefix() if self.digests is not None else 0
        self._unsynced = 0

    @property
    def whole(self) -> bool:
        return self.blobs.has(self.ref.sha256)

    def set_list(self, digests: bytes, *, save: bool = True) -> None:
        check_list(self.ref, digests)
        self.digests = digests
        if save:
            with _disk_full_is_an_error():
                _write_synced(self.blobs._list_path(self.ref.sha256), digests)

    def _marker(self) -> Path:
        return self.path.with_name(self.path.name + ".have")

    def _synced_chunks(self) -> int:
        """Chunks known fsynced and checked (the marker `add` writes after each fsync), so
        a resume re-reads only what came after: not the whole partial file per cut."""
        try:
            value = int(self._marker().read_text("ascii"))
        except (OSError, ValueError):
            return 0
        size = self.path.stat().st_size if self.path.exists() else 0
        return max(0, min(value, self.ref.chunks - 1, size // CHUNK))

    def _verified_prefix(self) -> int:
        """Chunks at the start of the partial file that match the list (what follows is
        cut by the next `add`, which writes at its chunk's offset)."""
        assert self.digests is not None
        good = self._synced_chunks()
        if self.path.exists():
            with open(self.path, "rb") as src:
                src.seek(good * CHUNK)
                while good < self.ref.chunks:
                    piece = src.read(chunk_size(self.ref.size, good))
                    try:
                        check_chunk(self.ref, self.digests, good, piece)
                    except BlobError:
                        break
                    good += 1
        return good

    def add(self, index: int, data: bytes | memoryview) -> None:
        """Keep chunk `index` (it must be the next one) if it matches the list."""
        if self.digests is None:
            raise BlobError("blob.bad_list", sha256=self.ref.sha256)
        if index != self.have:
            raise BlobError("blob.bad_chunk", sha256=self.ref.sha256, index=index)
        check_chunk(self.ref, self.digests, index, data)
        offset = index * CHUNK
        try:
            with _disk_full_is_an_error(), open(self.path, "ab") as out:
                out.truncate(offset)
                out.write(data)
                self._unsynced += len(data)
                if self._unsynced >= _FSYNC_EVERY:
                    out.flush()
                    os.fsync(out.fileno())
                    self._unsynced = 0
                    self._marker().write_text(str(index + 1), "ascii")
        except BlobError:
            with open(self.path, "r+b") as out:
                out.truncate(offset)
            raise
        self.have += 1

    def whole_matches(self) -> bool:
        """Whether the partial file, whole, is the blob's SHA-256 (fsynced first). Pure file
        work, no database: a server runs it off its event loop, then `finish(checked=True)`."""
        digest = hashlib.sha256()
        with open(self.path, "r+b") as src:
            src.truncate(self.ref.size)  # anything after the last chunk is no part of it
            while piece := src.read(CHUNK):
                digest.update(piece)
            os.fsync(src.fileno())
        return digest.hexdigest() == self.ref.sha256

    def finish(self, at: str, source: str | None = None, *, checked: bool = False) -> bool:
        """When every chunk is in: check the whole against its SHA-256 and hold it (as
        come from `source`, the peer that sent it; see blob_index.may_fetch).
        A whole that does not match (an entry naming a root and a hash of different
        bytes) is thrown away and refused. False while chunks are missing."""
        if self.have < self.ref.chunks:
            return False
        if not checked and not self.whole_matches():
            self.abandon()
            raise BlobError("blob.hash_mismatch", sha256=self.ref.sha256)
        self.blobs._settle(self.path, self.ref, at, source)
        self.blobs._list_path(self.ref.sha256).unlink(missing_ok=True)
        self._marker().unlink(missing_ok=True)
        return True

    def abandon(self) -> None:
        self.path.unlink(missing_ok=True)
        self.blobs._list_path(self.ref.sha256).unlink(missing_ok=True)
        self._marker().unlink(missing_ok=True)
        self.have, self.digests = 0, None


class _DiskFull:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise BlobError("blob.disk_full") from None


def _disk_full_is_an_error() -> _DiskFull:
    return _DiskFull()


def _write_synced(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _named(sha256: str) -> str:
    """`sha256` if it is one (64 lower-case hex digits), so it can name a file under the
    store and nowhere else; else `blob.not_held` (no such blob can be held)."""
    if SHA256.fullmatch(sha256) is None:
        raise BlobError("blob.not_held", sha256=sha256[:80])
    return sha256


def _mb(limit: int) -> str:
    return f"{limit / (1024 * 1024):g}"


i18n.register(
    {
        "blob.too_big": (
            "the file is larger than this node takes ({limit_mb} MB, material_max_mb in "
            "node.toml): nothing was attached",
            "文件超过本节点的上限（{limit_mb} MB，见 node.toml 的 material_max_mb），未添加",
        ),
        "blob.not_held": (
            "material {sha256} is not held here",
            "本机没有材料 {sha256}",
        ),
        "blob.corrupt": (
            "material {sha256} on this disk no longer matches its hash: fetch it again",
            "本机磁盘上的材料 {sha256} 与其哈希不符，请重新获取",
        ),
        "blob.hash_mismatch": (
            "material {sha256} arrived whole but its bytes do not match its SHA-256: refused",
            "材料 {sha256} 已收齐，但内容与其 SHA-256 不符，已拒收",
        ),
        "blob.disk_full": (
            "the disk is full: the material was not written (what had arrived checked is kept)",
            "磁盘已满：材料未写入（已校验收到的部分保留）",
        ),
    }
)
