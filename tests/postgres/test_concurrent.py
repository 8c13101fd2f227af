"""Two processes appending one origin's entries to one PostgreSQL database at the same time
(two `serve` fronts taking pushes): the database decides, each seq is won exactly once,
and the head always names the last entry of one unbroken chain."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from sync.pg import PgStore
from tests.postgres.chains import chain, signer_for

ROOT = Path(__file__).resolve().parents[2]
VILLAGE = "330782001201"
NOW = "2025-10-13T09:00:00+08:00"
WAIT_S = 20.0


class Writer:
    """An appender process (tests/postgres/appender.py), ready and waiting for "go"."""

    def __init__(self, job: dict[str, object]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.postgres.appender", json.dumps(job)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def tell(self, text: str = "go") -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def result(self) -> dict[str, object]:
        out, _ = self.proc.communicate(timeout=WAIT_S * 3)
        assert self.proc.returncode == 0
        return dict(json.loads(out.strip().splitlines()[-1]))


@contextmanager
def writers(*jobs: dict[str, object]) -> Iterator[list[Writer]]:
    started: list[Writer] = []
    try:
        for job in jobs:  # all started, then each waited for: they start up side by side
            started.append(Writer(job))
        for w in started:
            assert w.line() == "ready"
        yield started
    finally:
        for w in started:
            if w.proc.poll() is None:
                w.proc.kill()
            w.proc.wait()
            for pipe in (w.proc.stdin, w.proc.stdout):
                if pipe is not None:
                    pipe.close()


def _stored(url: str) -> list[tuple[int, bytes]]:
    sql = "SELECT seq, hash FROM entries WHERE origin = %s ORDER BY seq"
    with psycopg.connect(url) as conn:
        return [(s, bytes(h)) for s, h in conn.execute(sql, (VILLAGE,))]


def _wait_for_a_lock_waiter(url: str) -> None:
    """Until a backend of this database waits on a lock (the second writer, blocked)."""
    deadline = time.monotonic() + WAIT_S
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            [(waiting,)] = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            ).fetchall()
            if waiting:
                return
            time.sleep(0.02)  # polling for the other process, not making time pass
    raise AssertionError("the second writer never waited on the first")


def test_two_processes_racing_on_one_origin_win_each_seq_once(pg_url: str) -> None:
    count = 160
    PgStore(pg_url).close()  # migrated once, before the race
    jobs = [{"url": pg_url, "origin": VILLAGE, "count": count, "seed": s, "mode": "race"}
            for s in (1, 2)]  # fmt: skip
    with writers(*jobs) as (a, b):
        a.tell()
        b.tell()
        won_a, won_b = a.result()["won"], b.result()["won"]
    assert isinstance(won_a, list) and isinstance(won_b, list)
    assert not set(won_a) & set(won_b)
    assert sorted(won_a + won_b) == list(range(1, count + 1))
    expected = chain(signer_for(VILLAGE), VILLAGE, count)
    assert _stored(pg_url) == [(e.seq, e.hash) for e in expected]
    with PgStore(pg_url) as store:
        assert store.head(VILLAGE) == (count, expected[-1].hash)


def test_two_processes_with_two_histories_keep_exactly_one(pg_url: str) -> None:
    count = 60  # a copied node: one key, two histories, pushed to two fronts at once
    PgStore(pg_url).close()
    jobs = [{"url": pg_url, "origin": VILLAGE, "count": count, "seed": s, "tag": tag,
             "mode": "race"} for s, tag in ((3, "a"), (4, "b"))]  # fmt: skip
    with writers(*jobs) as (a, b):
        a.tell()
        b.tell()
        results = [a.result(), b.result()]
    winner = 0 if results[0]["won"] else 1
    assert results[winner]["won"] == list(range(1, count + 1))
    assert results[1 - winner]["won"] == []
    kept = chain(signer_for(VILLAGE), VILLAGE, count, tag="ab"[winner])
    assert _stored(pg_url) == [(e.seq, e.hash) for e in kept]


def test_a_writer_blocked_on_seqs_another_holds_is_refused_when_it_commits(pg_url: str) -> None:
    PgStore(pg_url).close()
    job = {"url": pg_url, "origin": VILLAGE, "count": 10, "mode": "hold", "first": 1, "last": 10}
    with writers(job, job) as (a, b):
        a.tell()
        assert a.line() == "held"  # 1…10 written, not committed
        b.tell()
        _wait_for_a_lock_waiter(pg_url)  # b's seq 1 waits on a's
        a.tell("commit")
        assert a.result() == {"won": list(range(1, 11)), "refused": {}}
        assert b.result() == {"won": [], "refused": {"store.pg_taken": 1}}
    assert [s for s, _ in _stored(pg_url)] == list(range(1, 11))


def test_a_writer_waits_for_the_head_and_goes_on_from_it(pg_url: str) -> None:
    entries = chain(signer_for(VILLAGE), VILLAGE, 20)
    with PgStore(pg_url) as store, store.transaction():
        store.insert(entries[:5], NOW)
    base = {"url": pg_url, "origin": VILLAGE, "count": 20, "mode": "hold"}
    with writers({**base, "first": 6, "last": 10}, {**base, "first": 11, "last": 20}) as (a, b):
        a.tell()
        assert a.line() == "held"  # the head's row is locked at 10, not committed
        b.tell()
        _wait_for_a_lock_waiter(pg_url)  # b's 11…20 wait for the head
        a.tell("commit")
        assert b.line() == "held"  # then go on from the head a committed
        b.tell("commit")
        assert a.result()["won"] == list(range(6, 11))
        assert b.result()["won"] == list(range(11, 21))
    with PgStore(pg_url) as store:
        assert store.head(VILLAGE) == (20, entries[-1].hash)
    assert _stored(pg_url) == [(e.seq, e.hash) for e in entries]
