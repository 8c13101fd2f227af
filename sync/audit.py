"""`log verify`: re-check every stored entry, every signature, every link (DESIGN §2).

An audit checks every entry's bytes, link and signature, so a changed byte, a broken
chain, a bad or foreign signature or a missing seq is named by origin and seq. A signature
that does not verify on an entry that a later entry of the same log vouches for (its own
signature good, every link between them whole) is no problem: the chain proves the entry,
as it did when ingest took it (sync.ingest), and a relay or a hostile author may have
stored garbage there on purpose. Such entries are counted (`vouched`), not reported.

Every core takes part. Each log is cut into slices of `SLICE` entries, and a worker checks
a slice on its own: every entry's hash, envelope, link and signature, the link of its first
entry to the entry before the slice included (read again for that). What it saw comes back
as marks in log order: problems, breaks of the chain, bad signatures, and the good
signatures that may vouch for a bad one before them. The caller replays the marks slice by
slice, in order, as one pass over the whole log meets them, so the report is the same
whatever the number of workers or the size of a slice. The slices are planned in the
caller's snapshot, up to the highest seq it holds; a worker reads them through its own
connection, and since the log is append-only (triggers refuse UPDATE and DELETE) it reads
the very entries the snapshot holds, whatever is appended meanwhile. Only a fork switch
(sync.fork_switch, run by ingest) replaces entries: a slice whose last entry the worker
did not read as the snapshot holds it is checked again in the snapshot (`_as_held`).

The workers are threads, each with its own read-only connection (`store.reader()`: on
SQLite a read-only connection to the file, on PostgreSQL a second connection to the same
database, read only; both speak the store's SQL). Ed25519 verification is
~90 % of an entry's CPU time here and releases the GIL (cryptography 50: two threads
verifying use 1.96 CPU seconds per second); reading, hashing and parsing hold it (~10 %),
so threads keep about ten cores busy. A pool of processes measured no faster on two
cores (bench/README.md, "log verify (#13)"), and a forked one would inherit the open
SQLite connection (which SQLite forbids), a spawned one need every module that registers
a body check imported again.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sync.keyring import Answer, KeyRing
from sync.logstore import ClosingReader, LogStore, Reader
from sync.protocol import i18n
from sync.protocol.entry import entry_hash, parse_envelope, signing_message
from sync.protocol.errors import EntryError
from sync.protocol.keys import verify

SLICE = 4096  # entries a worker checks at a time

# what a slice says, in log order (see `check_slice`)
PROBLEM, BREAK, BAD, GOOD = 0, 1, 2, 3

Progress = Callable[[int, int], None]  # (entries checked, entries in all)


@dataclass
class AuditReport:
    origins: int = 0
    entries: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)
    vouched: dict[str, int] = field(default_factory=dict)  # origin -> inner bad signatures

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "origins": self.origins,
            "entries": self.entries,
            "problems": self.problems,
            "vouched": self.vouched,
        }


@dataclass(frozen=True, slots=True)
class Slice:
    """The entries of `origin` with `after` < seq <= `through` (after None: from the first)."""

    origin: str
    after: Any
    through: Any
    ring: KeyRing


@dataclass(frozen=True, slots=True)
class Checked:
    entries: int
    marks: list[tuple[Any, ...]]
    last: tuple[Any, bytes] | None  # (seq, actual hash) of the slice's last entry


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def verify_log(
    store: LogStore,
    origin: str | None = None,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
    slice_size: int = SLICE,
) -> AuditReport:
    """Check every entry held (or one origin's); never stops at the first problem.

    `workers`: threads that check slices (default: one per core); with one, or fewer
    entries than two slices hold, everything is checked here, in the caller's snapshot.
    `progress(done, total)` is called after each slice, in the caller's thread."""
    with store.snapshot():
        origins = [origin] if origin else sorted(store.heads())
        plans = [_plan(store, current, slice_size) for current in origins]
        slices = [part for plan in plans for part in plan.slices]
        total = sum(plan.entries for plan in plans)
        many = min(workers if workers is not None else cores(), len(slices))
        if many <= 1 or total < 2 * slice_size or not _on_disk(store):
            here = (check_slice(store, part) for part in slices)
            return _audit(store, plans, progress, here)
        pool = _Workers(store, many)
        try:
            return _audit(store, plans, progress, pool.map(slices))
        finally:
            pool.close()


def _on_disk(store: LogStore) -> bool:
    return store.path not in ("", ":memory:") and not store.path.startswith("file:")


@dataclass(frozen=True, slots=True)
class Plan:
    origin: str
    ring: KeyRing
    slices: list[Slice]
    entries: int


def _plan(store: LogStore, origin: str, size: int) -> Plan:
    """The slices of one origin's log as this snapshot holds it: each ends at the seq of
    its `size`-th entry (found by the index, not by reading the entries), the last at the
    highest seq held."""
    ring = KeyRing.load(store, origin)
    count, top = store.query("SELECT COUNT(*), MAX(seq) FROM entries WHERE origin = ?", (origin,))[
        0
    ]
    slices: list[Slice] = []
    after: Any = None
    while count:
        where, params = "origin = ?", [origin]
        if after is not None:
            where, params = "origin = ? AND seq > ?", [origin, after]
        rows = store.query(
            f"SELECT seq FROM entries WHERE {where} ORDER BY seq LIMIT 1 OFFSET ?",
            (*params, size - 1),
        )
        through = rows[0][0] if rows else top
        slices.append(Slice(origin, after, through, ring))
        if through == top:
            break
        after = through
    return Plan(origin, ring, slices, count)


def _audit(
    store: LogStore, plans: list[Plan], progress: Progress | None, results: Iterator[Checked]
) -> AuditReport:
    """Replay what the slices saw, origin by origin and slice by slice, in log order."""
    report = AuditReport()
    total, done = sum(plan.entries for plan in plans), 0
    for plan in plans:
        origin = plan.origin
        report.origins += 1
        if not plan.ring.enrols:
            _problem(report, origin, 0, "unknown_key")
        unproved: list[int] = []  # seqs whose signature failed, since the chain was whole
        last: tuple[Any, bytes] | None = None
        for part in plan.slices:
            checked = next(results)
            if not _as_held(store, part, checked):  # changed since the plan: check it here
                checked = check_slice(store, part)
            _replay(report, origin, checked.marks, unproved)
            report.entries += checked.entries
            last = checked.last or last
            done += checked.entries
            if progress is not None:
                progress(done, total)
        _unproved(report, origin, unproved)
        expected, prev = (last[0] + 1, last[1]) if last is not None else (1, None)
        head_seq, head_hash = store.head(origin)
        if head_seq != expected - 1 or (prev is not None and head_hash != prev):
            _problem(report, origin, head_seq, "head", held=expected - 1)
    return report


def _as_held(store: LogStore, part: Slice, checked: Checked) -> bool:
    """Whether a worker read the slice as the caller's snapshot holds it. The log only
    grows, but ingest's fork switch (sync.fork_switch) deletes a branch and writes another
    in its place, and a worker reads outside the snapshot: whatever changed in a slice
    changes its last entry's hash (each entry's bytes hold the hash before it)."""
    held = store.query(_BEFORE_SQL, (part.origin, part.through))
    if not held or checked.last is None:
        return not held and checked.last is None
    seq, raw = held[0]
    return checked.last == (seq, entry_hash(_bytes(raw)))


def _replay(
    report: AuditReport, origin: str, marks: list[tuple[Any, ...]], unproved: list[int]
) -> None:
    for mark in marks:
        what = mark[0]
        if what == PROBLEM:
            _problem(report, origin, mark[1], mark[2], **mark[3])
        elif what == BREAK:  # nothing from here on vouches for what came before
            _unproved(report, origin, unproved)
        elif what == BAD:
            unproved.append(mark[1])
        elif unproved:  # GOOD: vouches for every bad signature since the chain was whole
            report.vouched[origin] = report.vouched.get(origin, 0) + len(unproved)
            unproved.clear()


def _problem(report: AuditReport, origin: str, seq: int, kind: str, **detail: Any) -> None:
    report.problems.append(
        {"origin": origin, "seq": seq, "kind": kind, "detail": i18n.t(f"audit.{kind}", **detail)}
    )


def _unproved(report: AuditReport, origin: str, seqs: list[int]) -> None:
    """Bad signatures that no later signature vouches for are problems."""
    for seq in seqs:
        _problem(report, origin, seq, "signature")
    seqs.clear()


# --- checking one slice (in a worker, or here) ------------------------------------------

_SLICE_SQL = "SELECT seq, raw, sig, hash FROM entries WHERE origin = ? AND seq <= ?"
_BEFORE_SQL = "SELECT seq, raw FROM entries WHERE origin = ? AND seq <= ? ORDER BY seq DESC LIMIT 1"


def check_slice(conn: Reader, part: Slice) -> Checked:
    """Every entry of `part`, read through `conn` (the store, or a reader of its database):
    bytes, link, envelope, signature, as marks in log order.

    The entry just before the slice (seq `after`) is read too: its seq and hash are where
    the first link starts. Marks: (PROBLEM, seq, kind, params); BREAK where the chain is
    not whole; (BAD, seq) for a signature that does not verify; GOOD for one that does (or
    that no key checks), left out where no bad signature can be waiting for it."""
    expected, prev = 1, None  # no entry before: no link to check
    if part.after is None:
        rows = conn.entry_rows(_SLICE_SQL + " ORDER BY seq", (part.origin, part.through))
    else:
        for seq, raw in conn.entry_rows(_BEFORE_SQL, (part.origin, part.after)):
            expected, prev = seq + 1, entry_hash(_bytes(raw))
        rows = conn.entry_rows(
            _SLICE_SQL + " AND seq > ? ORDER BY seq", (part.origin, part.through, part.after)
        )
    origin, ring = part.origin, part.ring
    marks: list[tuple[Any, ...]] = []
    waiting = True  # a bad signature may wait for a good one (before this slice, unknown)
    answer: Answer | None = None  # the key for this seq, and how far it holds
    count = 0
    for seq, raw, sig, stored in rows:
        count += 1
        raw = _bytes(raw)
        actual = entry_hash(raw)
        linked = seq == expected
        if not linked:
            marks.append((PROBLEM, expected, "missing", {"first": expected, "last": seq - 1}))
            prev = None
        if actual != stored:
            marks.append((PROBLEM, seq, "changed", {}))
        try:
            fields = parse_envelope(raw, origin, seq)
            if prev is not None and fields.prev != prev.hex():
                marks.append((PROBLEM, seq, "chain", {}))
                linked = False
        except EntryError as exc:
            marks.append((PROBLEM, seq, "malformed", {"reason": exc.params["reason"]}))
            linked = False
        if not linked:
            marks.append((BREAK,))
            waiting = False
        if answer is None or (answer.through is not None and seq > answer.through):
            answer = ring.span(seq)
        key = answer.key
        if key is None and answer.why == "entry.revoked":
            marks.append((PROBLEM, seq, "revoked", {"cut": answer.cut}))
        elif key is not None and not verify(key, signing_message(actual), sig):
            marks.append((BAD, seq))
            waiting = True
        elif waiting:
            marks.append((GOOD,))
            waiting = False
        expected, prev = seq + 1, actual
    last = (expected - 1, prev) if count and prev is not None else None  # prev: its hash
    return Checked(count, marks, last)


def _bytes(raw: Any) -> bytes:
    return raw if isinstance(raw, bytes) else str(raw).encode()  # edited behind our back


class _Workers:
    """Threads that check slices, each with its own read-only connection (closed here)."""

    def __init__(self, store: LogStore, count: int) -> None:
        from concurrent.futures import ThreadPoolExecutor  # only for a log of 2 slices or more

        self.store = store
        self.pool = ThreadPoolExecutor(count, thread_name_prefix="zhibao-verify")
        self.local = threading.local()
        self.opened: list[ClosingReader] = []
        self.lock = threading.Lock()

    def check(self, part: Slice) -> Checked:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.store.reader()
            self.local.conn = conn
            with self.lock:
                self.opened.append(conn)
        return check_slice(conn, part)

    def map(self, slices: list[Slice]) -> Iterator[Checked]:
        return self.pool.map(self.check, slices)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for conn in self.opened:
            conn.close()


i18n.register(
    {
        "audit.unknown_key": ("no enrolled key for this origin", "此来源没有已登记的密钥"),
        "audit.revoked": (
            "held, but signed after the revocation of its key (cut-off seq {cut})",
            "已持有，但签名时间在其密钥吊销（截止序号 {cut}）之后",
        ),
        "audit.missing": ("entries {first}..{last} are missing", "缺少条目 {first}..{last}"),
        "audit.changed": (
            "stored bytes were changed (hash mismatch)",
            "存储的字节被改动（哈希不符）",
        ),
        "audit.chain": (
            "hash chain broken: prev does not match the entry before",
            "哈希链断裂：prev 与前一条不符",
        ),
        "audit.malformed": ("malformed entry: {reason}", "条目格式错误：{reason}"),
        "audit.signature": (
            "signature does not verify with the enrolled key",
            "签名无法用已登记的密钥验证",
        ),
        "audit.head": (
            "head record disagrees with the log (log ends at {held})",
            "头记录与日志不符（日志止于 {held}）",
        ),
    }
)
