"""More than one front (#15 part 3): two real `zhibao serve` processes on one city whose store
is one real PostgreSQL database, towns syncing with the real `zhibao sync`.

What must hold whatever the two fronts do at once: every entry stored once, each origin
1 … head without a gap and equal to what its town holds; nothing a receipt acknowledged is
lost (kill -9 of a front, the database restarted); a push applied twice stores nothing twice;
a fork is recorded once; the projections (`stats`) are those of the same city on SQLite.

The city is made as `zhibao init --tier city … --store postgresql://…` makes it (its
node.toml names the database; tiers.node.create_home with `store`, tests/support/topology).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from sync.ingest import RACE_ATTEMPTS, RACES, ingest, retrying
from sync.pg import PgStore
from sync.pg.beside import PROJECT_LOCK
from sync.protocol.batch import decode_batch
from sync.protocol.errors import StoreError
from sync.store import Store
from tests.hostile.network import (
    CITY,
    ITEM,
    NODES,
    TOWN,
    TOWN_B,
    period_now,
    relay_up,
)
from tests.support.postgres import (
    _as_owner,
    create_database,
    drop_databases,
    shared_server,
    start_cluster,
    stop_cluster,
)
from tests.support.servers import ZHIBAO, Served, cli_env, zhibao, zhibao_serve
from tests.support.topology import (
    SHIPPED_CATALOGUE,
    Topology,
    append_notes,
    build_topology,
    copy_topology,
    hand_down,
)
from tests.support.wire import batch_of, push_request
from tiers.cases.service import Applicant, accept, receive, reject
from tiers.catalogue import parse_catalogue
from tiers.node import open_home
from tiers.published import publish_items

pytestmark = pytest.mark.slow  # real serve and sync processes, a cluster restarted

TOWNS = (TOWN, TOWN_B)
CASES = 12  # per town: accepted, and every fourth received and refused (不予受理)
WAIT_S = 60.0


# --- the network ---------------------------------------------------------------------------


def build(base: Path, store: str | None) -> Topology:
    """City (on `store`, else SQLite), two towns and their villages, the catalogue handed
    down, the towns' logs at the city; then each town records the same cases."""
    net = build_topology(base, NODES, store=store)
    items = parse_catalogue(SHIPPED_CATALOGUE.read_bytes(), SHIPPED_CATALOGUE.name)
    with net.open(CITY) as city:
        publish_items(city, items)
        for town_id in TOWNS:
            with net.open(town_id) as town:
                hand_down(city, town)
                relay_up(town, city)
    for town_id in TOWNS:
        with net.open(town_id) as town:
            for n in range(CASES):
                person = Applicant(f"申请人{town_id[-1]}-{n}", phone=f"1380000{n:04d}")
                if n % 4:
                    accept(town, item_code=ITEM, applicant=person)
                else:
                    reject(town, receive(town, ITEM, person), "材料不齐")
    return net


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """The network with its city in a template database of the run's server (copied per test)."""
    server = shared_server(tmp_path_factory)
    name = "tpl_fronts_" + secrets.token_hex(6)
    net = build(tmp_path_factory.mktemp("fronts"), create_database(server, name))
    yield net
    drop_databases(server, name, prefix=name + "_")


@pytest.fixture(scope="module")
def on_sqlite(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`stats --json` of the same city on SQLite, once the towns' logs reached it."""
    net = build(tmp_path_factory.mktemp("fronts-sqlite"), None)
    with net.open(CITY) as city:
        for town_id in TOWNS:
            with net.open(town_id) as town:
                relay_up(town, city)
    return stats(net.home(CITY))


@pytest.fixture
def net(template: Topology, tmp_path: Path) -> Topology:
    return copy_topology(template, tmp_path / "net")


# --- looking at it ---------------------------------------------------------------------------


def cli_json(home: Path, *args: str) -> Any:
    done = zhibao(home, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def stats(city_home: Path) -> dict[str, Any]:
    answer: dict[str, Any] = cli_json(city_home, "stats", "--period", period_now(), "--by", "node")
    return answer


def heads_at(url: str) -> dict[str, tuple[int, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT origin, seq, hash FROM heads").fetchall()
    return {o: (s, bytes(h).hex()) for o, s, h in rows}


def counts_at(url: str) -> dict[str, tuple[int, int, int]]:
    """origin → (entries, lowest seq, highest seq) stored."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT origin, count(*), min(seq), max(seq) FROM entries GROUP BY origin"
        ).fetchall()
    return {o: (n, lo, hi) for o, n, lo, hi in rows}


def held_by(net: Topology, town_id: str) -> dict[str, tuple[int, str]]:
    """The heads of `town_id`'s subtree, as the town holds them."""
    with net.open(town_id) as town:
        return {o: (s, h.hex()) for o, (s, h) in town.store.heads().items()
                if o.startswith(town_id)}  # fmt: skip


def stored_at(url: str, town_id: str) -> list[tuple[str, int, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT origin, seq, hash FROM entries WHERE origin LIKE %s ORDER BY origin, seq",
            (town_id + "%",),
        ).fetchall()
    return [(o, s, bytes(h).hex()) for o, s, h in rows]


def assert_whole(net: Topology, url: str, *town_ids: str) -> None:
    """Each town's subtree at the city exactly as the town holds it: same heads, every
    seq 1 … head once, each entry the town's (the database keeps each chain linked)."""
    heads, counts = heads_at(url), counts_at(url)
    for town_id in town_ids:
        for origin, (seq, digest) in held_by(net, town_id).items():
            assert heads.get(origin) == (seq, digest), origin
            assert counts[origin] == (seq, 1, seq), origin
        with net.open(town_id) as town:
            held = [(e.origin, e.seq, e.hash.hex()) for o in sorted(town.store.heads())
                    if o.startswith(town_id) for e in town.store.entries(o)]  # fmt: skip
        assert stored_at(url, town_id) == held


def acknowledged(net: Topology, town_id: str) -> int:
    """The seq of the town's own log its receipts from the city acknowledge."""
    status = cli_json(net.home(town_id), "status")
    return int(status["acknowledged"].get(town_id, 0))


# --- driving it ------------------------------------------------------------------------------


def start_sync(home: Path, url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [ZHIBAO, "sync", "--home", str(home), "--peer", url, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
    )  # fmt: skip


def finish(sync: subprocess.Popen[str]) -> tuple[int, str]:
    """(exit status, stderr) of a `zhibao sync`; a failure is one clean line, never a trace."""
    _, err = sync.communicate(timeout=WAIT_S * 2)
    if sync.returncode != 0:
        last = err.replace("\r", "\n").strip().splitlines()[-1]
        assert sync.returncode == 1 and last.startswith("zhibao: "), err
        assert "Traceback" not in err and "internal error" not in err, err
    return sync.returncode, err


def sync_ok(home: Path, url: str) -> None:
    code, err = finish(start_sync(home, url))
    assert code == 0, err


def alive(front: Served) -> None:
    assert front.proc.poll() is None, f"the front died: {front.errors()}"
    assert "Traceback" not in front.errors(), front.errors()
    assert "internal error" not in front.errors(), front.errors()


def poll(what: str, check: Any) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.01)  # polling another process, not making time pass
    raise AssertionError(f"never: {what}")


def _first_batch(sync: subprocess.Popen[str], url: str, start: int) -> None:
    """Until the city holds a batch of the town's push (the round still going on)."""
    poll("a batch committed", lambda: heads_at(url)[TOWN][0] > start or sync.poll() is not None)
    assert sync.poll() is None, f"the round ended at once: {finish(sync)}"


# --- (a) towns pushing to both fronts at once ------------------------------------------------


def test_two_fronts_take_every_towns_push_once(net: Topology, on_sqlite: dict[str, Any]) -> None:
    assert net.store is not None
    for town_id in TOWNS:  # more than one batch each (the first holds 500 entries)
        with net.open(town_id) as town:
            append_notes(town, 700, tag=town_id)
    city = net.home(CITY)
    with zhibao_serve(city) as a, zhibao_serve(city) as b:
        syncs = [start_sync(net.home(t), front.url) for t in TOWNS for front in (a, b)]
        for sync in syncs:  # each town to both fronts at once: the same seqs raced for
            finish(sync)
        for town_id in TOWNS:  # whatever a race left to do, the next round does
            sync_ok(net.home(town_id), a.url)
            sync_ok(net.home(town_id), b.url)
        alive(a)
        alive(b)
    assert_whole(net, net.store, *TOWNS)
    for town_id in TOWNS:
        assert acknowledged(net, town_id) == held_by(net, town_id)[town_id][0]
    assert stats(city) == on_sqlite


# --- (b) one push applied twice ----------------------------------------------------------------


def _post_both(requests: list[Any], urls: list[str]) -> list[httpx.Response]:
    """Each request to its URL, all at the same moment (threads released together)."""
    answers: list[httpx.Response | None] = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def send(i: int) -> None:
        start.wait()
        answers[i] = requests[i].send(urls[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def test_the_same_batch_pushed_to_both_fronts_is_stored_once(net: Topology) -> None:
    assert net.store is not None
    with net.open(TOWN) as town:
        append_notes(town, 300, tag="twice")
        held = net_head = heads_at(net.store)[TOWN][0]
        batch = batch_of(town.store.entries(TOWN, held))
        count = town.store.head(TOWN)[0] - held
        twice = [push_request(town, TOWN, batch) for _ in range(2)]  # two nonces, one batch
        replayed = push_request(town, TOWN, batch_of(town.store.entries(TOWN, held, 1)))
    city = net.home(CITY)
    with zhibao_serve(city) as a, zhibao_serve(city) as b:
        answers = _post_both(twice, [a.url, b.url])
        assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
        results = [r.json()["result"] for r in answers]
        assert sorted(r["applied"].get(TOWN, 0) for r in results) == [0, count]
        assert sorted(r["duplicates"] for r in results) == [0, count]
        assert all(r["rejected"] == [] and r["forks"] == [] for r in results)
        # one request (one nonce) sent to both at once: one takes it, the other refuses it
        statuses = sorted(r.status_code for r in _post_both([replayed, replayed], [a.url, b.url]))
        assert statuses == [200, 409]
        alive(a)
        alive(b)
    assert net_head + count == heads_at(net.store)[TOWN][0]
    assert_whole(net, net.store, TOWN)


# --- (c) kill -9 of a front mid-push; (2) mid-catch-up ------------------------------------------


def test_a_front_killed_mid_push_loses_nothing_acknowledged(net: Topology) -> None:
    assert net.store is not None
    url = net.store
    with net.open(TOWN) as town:
        append_notes(town, 3_000, tag="big", pad=3_000)  # a push of several batches
    start = heads_at(url)[TOWN][0]
    city = net.home(CITY)
    with zhibao_serve(city) as a, zhibao_serve(city) as b:
        sync = start_sync(net.home(TOWN), a.url)
        _first_batch(sync, url, start)
        a.kill9()
        code, _ = finish(sync)
        assert code == 1, "the round ended before the kill: nothing was cut"
        assert acknowledged(net, TOWN) <= heads_at(url)[TOWN][0]
        sync_ok(net.home(TOWN), b.url)  # the other front takes the rest
        alive(b)
    assert_whole(net, url, TOWN)


def _catching_up(conn: psycopg.Connection[Any]) -> bool:
    """Whether a backend of the city's database is projecting (holds the lock a front's
    catch-up takes, sync.pg.beside)."""
    [(n,)] = conn.execute(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
        "WHERE d.datname = current_database() AND l.locktype = 'advisory' "
        "AND l.mode = 'ExclusiveLock' AND l.granted "
        "AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
        (PROJECT_LOCK,),
    ).fetchall()
    return bool(n)


def _projected(url: str) -> tuple[int, int]:
    """(the projection cursor, the highest entry id)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT value FROM meta WHERE key = 'projected'").fetchall()
        [(top,)] = conn.execute("SELECT coalesce(max(id), 0) FROM entries").fetchall()
    return (int(rows[0][0]) if rows else 0), int(top)


def test_a_front_killed_mid_catch_up_leaves_a_cursor_the_other_goes_on_from(
    net: Topology, on_sqlite: dict[str, Any]
) -> None:
    assert net.store is not None
    url = net.store
    with net.open(TOWN) as town:
        append_notes(town, 4_000, tag="backlog")
    city = net.home(CITY)
    with zhibao_serve(city) as a, zhibao_serve(city) as b:
        sync_ok(net.home(TOWN_B), a.url)
        sync_ok(net.home(TOWN), a.url)  # its pull projected TOWN_B's cases; its push waits
        with psycopg.connect(url, autocommit=True) as conn:
            poll("front a catching up", lambda: _catching_up(conn))
            a.kill9()
        cursor, top = _projected(url)
        assert cursor < top, "the catch-up was over before the kill"
        sync_ok(net.home(TOWN_B), b.url)  # front b's pull goes on from the cursor
        assert _projected(url) == (top, top)
        alive(b)
    assert_whole(net, url, *TOWNS)
    assert stats(city) == on_sqlite  # nothing projected twice, nothing passed over


# --- (d) the database restarted mid-round --------------------------------------------------------


@pytest.fixture
def private_cluster() -> Iterator[dict[str, str]]:
    """A PostgreSQL cluster of this test's own (it is restarted: nobody else may use it)."""
    record = start_cluster(os.getpid())
    try:
        yield record
    finally:
        stop_cluster(record)


def _restart(record: dict[str, str]) -> None:
    data = str(Path(record["top"]) / "data")
    subprocess.run(
        _as_owner([str(Path(record["bindir"]) / "pg_ctl"), "-D", data, "-l",
                   str(Path(record["top"]) / "log"), "-w", "-t", "60", "restart", "-m", "fast"]),
        check=True, capture_output=True, text=True,
    )  # fmt: skip


def test_the_database_restarted_mid_round_then_the_next_round_completes(
    tmp_path: Path, private_cluster: dict[str, str]
) -> None:
    url = create_database(private_cluster["url"], "fronts_restart")
    net = build(tmp_path / "net", url)
    with net.open(TOWN) as town:
        append_notes(town, 2_000, tag="big", pad=3_000)
    start = heads_at(url)[TOWN][0]
    city = net.home(CITY)
    with zhibao_serve(city) as a:
        sync = start_sync(net.home(TOWN), a.url)
        _first_batch(sync, url, start)
        _restart(private_cluster)
        code, err = finish(sync)
        if code:  # cut mid-round: said in one line (a 503: the database, try again)
            assert "PostgreSQL" in err or "busy" in err, err
        alive(a)  # the front reconnects
        sync_ok(net.home(TOWN), a.url)
        alive(a)
    assert_whole(net, url, TOWN)
    assert acknowledged(net, TOWN) == held_by(net, TOWN)[TOWN][0]


# --- (e) a hostile town's other history, pushed to both fronts -----------------------------------


def test_a_fork_pushed_to_both_fronts_is_recorded_once(net: Topology, tmp_path: Path) -> None:
    assert net.store is not None
    copied = tmp_path / "copied"  # the town's home copied: its real key, a second history
    shutil.copytree(net.home(TOWN), copied)
    with net.open(TOWN) as town:
        append_notes(town, 5, tag="honest")
    city = net.home(CITY)
    with zhibao_serve(city) as a, zhibao_serve(city) as b:
        sync_ok(net.home(TOWN), a.url)  # front a stores the honest seqs
        with open_home(copied) as other:
            split = other.store.head(TOWN)[0]
            append_notes(other, 5, tag="forged")
            batch = batch_of(other.store.entries(TOWN, split))
            pushes = [push_request(other, TOWN, batch) for _ in range(2)]
        answers = _post_both(pushes, [a.url, b.url])
        assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
        for answer in answers:  # each front refuses seq split+1 as a fork, applies nothing
            result = answer.json()["result"]
            assert result["applied"] == {} and result["rejected"][0]["seq"] == split + 1
        alive(a)
        alive(b)
    with psycopg.connect(net.store) as conn:
        rows = conn.execute("SELECT origin, seq FROM forks").fetchall()
    assert rows == [(TOWN, split + 1)]
    assert [(f["origin"], f["seq"]) for f in cli_json(city, "fork", "list")["forks"]] == [
        (TOWN, split + 1)
    ]


# --- the retry itself, made to happen ------------------------------------------------------------


def _lock_waiter(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        poll("a writer waiting on another's seqs", lambda: conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        ).fetchall()[0][0])  # fmt: skip


@pytest.mark.parametrize("part", ["some", "all"])
def test_a_batch_that_loses_the_race_is_retried_and_skips_what_the_other_front_stored(
    net: Topology, part: str
) -> None:
    """Another front holds seqs of this batch uncommitted: the batch waits, is refused
    (store.pg_taken) when they commit, and its second try skips them as duplicates."""
    assert net.store is not None
    url = net.store
    with net.open(TOWN) as town:
        append_notes(town, 10, tag="raced")
        base = heads_at(url)[TOWN][0]
        entries = town.store.entries(TOWN, base)  # the town's cases, then the notes
    held = 3 if part == "some" else len(entries)  # what the other front stores first
    commit = threading.Event()
    holding = threading.Event()
    results: dict[str, Any] = {}

    def other_front() -> None:
        with PgStore(url) as other:
            other.defer_projections()  # a front: the write lock shared
            with other.transaction():
                other.insert(entries[:held], "2025-10-13T09:00:00+08:00")
                holding.set()
                commit.wait(WAIT_S)

    def this_front() -> None:
        with open_home(net.home(CITY)) as city:
            city.store.defer_projections()
            results["ingest"] = ingest(city.store, decode_batch(batch_of(entries)), me=CITY,
                                       sender=TOWN, received_at=city.clock.stamp())  # fmt: skip

    first = threading.Thread(target=other_front)
    first.start()
    assert holding.wait(WAIT_S)
    second = threading.Thread(target=this_front)
    second.start()
    _lock_waiter(url)  # this front's COPY waits on the seqs the other holds
    commit.set()
    first.join(WAIT_S)
    second.join(WAIT_S)
    result = results["ingest"]
    count = len(entries)
    applied = {TOWN: count - held} if held < count else {}
    assert (result.duplicates, result.applied, result.rejected) == (held, applied, [])
    assert heads_at(url)[TOWN] == (base + count, entries[-1].hash.hex())
    assert counts_at(url)[TOWN] == (base + count, 1, base + count)


def test_retrying_gives_up_after_three_races_and_never_retries_on_sqlite(
    tmp_path: Path, pg_url: str
) -> None:
    tries: list[str] = []

    def lose(key: str) -> Any:
        def attempt() -> None:
            tries.append(key)
            raise StoreError(key, detail="")

        return attempt

    with PgStore(pg_url) as pg:
        for key in sorted(RACES):
            with pytest.raises(StoreError):
                retrying(pg, lose(key))
        with pytest.raises(StoreError):
            retrying(pg, lose("store.constraint"))  # no race: at once
    assert tries == [k for k in sorted(RACES) for _ in range(RACE_ATTEMPTS)] + ["store.constraint"]
    tries.clear()
    with Store(tmp_path / "node.db") as sqlite, pytest.raises(StoreError):
        retrying(sqlite, lose("store.busy"))  # SQLite waited for the database already
    assert tries == ["store.busy"]
