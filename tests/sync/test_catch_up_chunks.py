"""A catch-up's chunks end where a push ended: what arrived together is projected together
(the case projection folds on an event that came before the one it follows only when both
are in one flush; tiers.cases.projection), and memory stays bounded by PROJECT_CHUNK and
PROJECT_BYTES whatever a member signed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sync._chunk_end import PROJECT_BYTES, chunk_end
from sync.logstore import LogStore
from sync.protocol.entry import SignedEntry, encode_entry, sign_entry
from sync.protocol.keys import Signer
from sync.store import PROJECT_CHUNK, Store
from tests.support.flushes import Flushes, shown
from tests.support.topology import CITY, TOWN, VILLAGE

AT = "2026-11-20T10:00:00+08:00"


class Log:
    """One origin's log, signed by its own key, handed out a run at a time."""

    def __init__(self, origin: str, pad: int = 0) -> None:
        self.origin, self.pad = origin, pad
        self.signer, self.prev, self.seq = Signer.generate(), None, 0

    def next(self, count: int) -> list[SignedEntry]:
        out = []
        for _ in range(count):
            self.seq += 1
            body = {"n": self.seq, "pad": "x" * self.pad}
            raw = encode_entry(self.origin, self.seq, self.prev, AT, "test.note", body)
            out.append(sign_entry(self.signer, raw))
            self.prev = out[-1].hash
        return out


def _flushes(tmp_path: Path, pushes: list[list[list[SignedEntry]]], *, one_second: bool = False,
             step: int | None = None) -> list[int]:  # fmt: skip
    """Pushes stored as `sync.ingest` stores them (each its runs, one transaction, its own
    second of arrival unless `one_second`), then one catch-up (or, with `step`, catch-ups
    of that many, as a serving front's between requests): how many each flush saw."""
    tmp_path.mkdir(exist_ok=True)
    store = Store(tmp_path / "node.db", extensions=[Flushes()], owner=CITY)
    try:
        store.defer_projections()
        for number, runs in enumerate(pushes):
            second = 0 if one_second else number
            with store.transaction():
                for run in runs:
                    store.insert(run, f"2026-11-20T10:00:{second:02d}+08:00")
        while store.catch_up(step):
            assert step is not None  # a whole catch-up leaves nothing
        return shown(store)
    finally:
        store.close()


def test_a_chunk_ends_where_a_push_ended(tmp_path: Path) -> None:
    third, village = PROJECT_CHUNK * 3 // 8, Log(VILLAGE)  # pushes of 3,000, chunks of 8,000
    assert _flushes(tmp_path, [[village.next(third)] for _ in range(3)]) == [2 * third, third]


def test_pushes_in_one_second_end_where_the_tier_order_goes_back(tmp_path: Path) -> None:
    """Arrival times have whole seconds: pushes in the same one are told apart by the order
    ingest stores a batch's runs in (the town's, then its villages')."""
    town, village, part = Log(TOWN), Log(VILLAGE), PROJECT_CHUNK // 4
    pushes = [[town.next(part), village.next(part // 2)] for _ in range(3)]
    assert _flushes(tmp_path, pushes, one_second=True) == [3 * part, 3 * part // 2]


def test_a_push_longer_than_a_chunk_is_cut_where_the_chunk_is_full(tmp_path: Path) -> None:
    village, rest = Log(VILLAGE), PROJECT_CHUNK // 8
    pushes = [[village.next(rest)], [village.next(PROJECT_CHUNK + rest)]]
    assert _flushes(tmp_path, pushes) == [rest, PROJECT_CHUNK, rest]


def test_a_step_shorter_than_a_push_goes_on_to_where_the_push_ended(tmp_path: Path) -> None:
    """A serving front catches up a few hundred entries at a time between requests: a step
    ending inside a push would show the town's runs without its villages' of that push."""
    town, village = Log(TOWN), Log(VILLAGE)
    pushes = [[town.next(300), village.next(300)] for _ in range(3)]
    assert _flushes(tmp_path, pushes, step=100) == [600, 600, 600]
    assert _flushes(tmp_path / "in-one", pushes[:1], one_second=True, step=599) == [600]


def test_a_step_within_a_push_longer_than_a_chunk_is_cut_at_the_step(tmp_path: Path) -> None:
    """A member's push that never ends within a chunk (more entries, or more bytes, than it
    may hold) does not make a step longer than the step it asked for."""
    village, step = Log(VILLAGE), PROJECT_CHUNK // 16
    flushes = _flushes(tmp_path, [[village.next(PROJECT_CHUNK + 10)]], step=step)
    assert flushes[:-1] == [step] * (len(flushes) - 1) and sum(flushes) == PROJECT_CHUNK + 10
    heavy = Log(VILLAGE, pad=30_000)
    flushes = _flushes(tmp_path / "heavy", [[heavy.next(400)]], step=100)
    assert flushes[:-1] == [100] * (len(flushes) - 1) and sum(flushes) == 400


def test_where_transactions_interleave_a_push_is_a_transaction_s_one_time_of_arrival() -> None:
    """PostgreSQL's rows name their transaction: a push ends where none seen before goes on.
    A move (`store migrate`) copies many pushes in one transaction: they still end where the
    time of arrival changes — and a transaction whose rows go on past another's is no end."""
    one = [(i, 10, "10:00:00" if i < 4 else "10:00:01", TOWN, "701") for i in range(10)]
    assert chunk_end(one, 7, whole=True) == 4
    marks = ["701"] * 3 + ["702"] * 4 + ["701"] * 2 + ["703"]  # 701's rows around 702's
    two = [(i, 10, "10:00:00", TOWN, mark) for i, mark in enumerate(marks)]
    assert chunk_end(two, 5, whole=True) == 9 and chunk_end(two, 5, whole=False) == 9
    assert chunk_end(two[:8], 5, whole=False) == 0  # 701 may go on: read further


def test_a_chunk_holds_no_more_than_its_bytes(tmp_path: Path) -> None:
    """A member's entries of the largest size allowed: a chunk is bounded by bytes as well,
    not only by count (so memory is, whatever a sender signed)."""
    village = Log(VILLAGE, pad=30_000)
    entries = village.next(400)
    flushes = _flushes(tmp_path, [[entries]])
    assert len(flushes) > 1 and sum(flushes) == 400
    assert max(flushes) * len(entries[0].raw) <= PROJECT_BYTES


class Touchy(Flushes):
    """Flushes, but raising on an entry whose body says "boom" (a projection bug that one
    crafted entry finds)."""

    name = "touchy"

    def apply(self, store: LogStore, entry: SignedEntry, fields: dict[str, Any]) -> None:
        if fields["body"].get("boom"):
            raise OverflowError("date value out of range")
        super().apply(store, entry, fields)


def test_an_entry_a_projection_raises_on_costs_a_few_attempts_not_one_an_entry(
    tmp_path: Path,
) -> None:
    """A member's push of 4,000 entries with one crafted to make a projection raise: it is
    quarantined alone and every other entry projected, in a few flushes (halves of halves
    down to 32, then one at a time) rather than 3,999 of one entry each."""
    signer, prev, log = Signer.generate(), None, []
    for seq in range(1, 4001):
        body = {"n": seq, "boom": seq == 2345}
        log.append(sign_entry(signer, encode_entry(VILLAGE, seq, prev, AT, "test.note", body)))
        prev = log[-1].hash
    store = Store(tmp_path / "node.db", extensions=[Touchy()], owner=CITY)
    try:
        store.defer_projections()
        with store.transaction():
            store.insert(log, AT)
        assert store.catch_up() == 0
        flushes = shown(store)
        [held] = store.quarantined()
    finally:
        store.close()
    assert (held["origin"], held["seq"], held["reason"]) == (VILLAGE, 2345, "projection.failed")
    assert sum(flushes) == 3999 and len(flushes) < 50, len(flushes)
