"""Crashes and full disks: what a receipt promises survives `kill -9`; nothing half-applies.

The town runs as the real `zhibao serve` subprocess and the village pushes a large backlog
with the real `zhibao sync`, while SIGKILL hits one of them at seeded random moments. After
every kill: the database passes `PRAGMA integrity_check` (on a separate connection) and
`zhibao log verify`, and every entry the village holds a receipt for (`status --json`,
"acknowledged") is at the town, with the same hash. A full disk or an I/O error while a
batch is applied is a clean refusal, and the store is exactly as it was.

The city's side (`test_kill9_city_server_…`): the town pushes its backlog to the city's
`zhibao serve`, killed mid-push, on both engines (`city_engine`; the city on PostgreSQL
with two fronts: tests/postgres/test_fronts.py). The other tests here are the town's
(SQLite: PRAGMA integrity_check, max_page_count, an I/O error of apsw's VFS).
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import apsw
import pytest

from sync import receipts
from sync.ingest import ingest
from sync.node import NODE_DB, Node
from sync.protocol.batch import Run, decode_batch, encode_batch
from sync.protocol.entry import SignedEntry
from sync.protocol.errors import DiskFullError, RefusedError, StoreError
from sync.round import sync_round
from sync.status import node_status
from sync.store import Store
from tests.conftest import MakeTopology, Templates
from tests.support.postgres import sqlite_in_soak
from tests.support.servers import ZHIBAO, cli_env, serve_in_thread, zhibao, zhibao_serve
from tests.support.state import (
    assert_whole,
    audit_problems,
    home_store,
    integrity_check,
    snapshot,
    snapshot_home,
)
from tests.support.topology import (
    CITY,
    TOWN,
    VILLAGE,
    Topology,
    append_notes,
    copy_topology,
)

PAD = 6_000  # bytes per entry: a push batch (BATCH_BYTES, 2 MB) holds about 340 of them
BACKLOG = 3_000  # about nine batches
MORE_PER_KILL = 1_000  # written between kills: about three more batches
KILL_WINDOW = (0.25, 0.9)  # seconds after `zhibao sync` starts, for an early kill


@pytest.fixture(scope="module")
def template(topology_templates: Templates, tmp_path_factory: pytest.TempPathFactory) -> Topology:
    """City, town and a village with a large backlog, built once and copied per test."""
    net = copy_topology(topology_templates([VILLAGE]), tmp_path_factory.mktemp("kill9"))
    with net.open(VILLAGE) as village:
        append_notes(village, BACKLOG, pad=PAD)
    return net


@pytest.fixture
def net(template: Topology, tmp_path: Path) -> Topology:
    return copy_topology(template, tmp_path / "net")


def _cli_json(home: Path, *args: str) -> dict[str, Any]:
    done = zhibao(home, *args, "--json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _start_sync(net: Topology, url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [ZHIBAO, "sync", "--home", str(net.home(VILLAGE)), "--peer", url, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )


def _finish(sync: subprocess.Popen[str]) -> int:
    """Reap a `zhibao sync`; a failure must be one clean line, never a traceback."""
    _, err = sync.communicate(timeout=120)
    if sync.returncode not in (0, -9):
        last = err.replace("\r", "\n").strip().splitlines()[-1]  # after any progress lines
        assert sync.returncode == 1, err
        assert "Traceback" not in err and last.startswith("zhibao: "), err
    return sync.returncode


def _check_town(net: Topology, *, cli: bool = True) -> None:
    """After a crash: intact database, clean audit, and every receipted entry there.

    With `cli` the audit and the receipts are read through `zhibao log verify` and
    `zhibao status`, as an operator would; otherwise in-process (same functions, faster).
    """
    assert integrity_check(net.home(TOWN)) == "ok"
    if cli:
        verify = zhibao(net.home(TOWN), "log", "verify", "--json")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert json.loads(verify.stdout)["ok"] is True
        status = _cli_json(net.home(VILLAGE), "status")
        acked = int(status["acknowledged"].get(VILLAGE, 0))
    else:
        with net.open(TOWN) as town_node:
            assert audit_problems(town_node.store) == []
        with net.open(VILLAGE) as village_node:
            acked = node_status(village_node)["acknowledged"].get(VILLAGE, 0)
    town = snapshot_home(net.home(TOWN))
    assert_whole(town)
    assert town.heads.get(VILLAGE, (0, ""))[0] >= acked
    if acked:
        with (
            Store(net.home(TOWN) / NODE_DB) as there,
            Store(net.home(VILLAGE) / NODE_DB) as here,
        ):
            assert there.hash_at(VILLAGE, acked) == here.hash_at(VILLAGE, acked)


def _converge(net: Topology, url: str) -> None:
    done = zhibao(net.home(VILLAGE), "sync", "--peer", url, "--json")
    assert done.returncode == 0, done.stderr
    village, town = snapshot_home(net.home(VILLAGE)), snapshot_home(net.home(TOWN))
    assert town.within(VILLAGE) == village.within(VILLAGE)
    status = _cli_json(net.home(VILLAGE), "status")
    assert status["acknowledged"] == {VILLAGE: village.heads[VILLAGE][0]}


def _held_at(home: Path, origin: str) -> int:
    conn = apsw.Connection(str(home / NODE_DB), flags=apsw.SQLITE_OPEN_READONLY)
    conn.set_busy_timeout(10_000)  # a server just restarted after kill -9 recovers the WAL
    try:
        return int(
            next(conn.execute("SELECT COUNT(*) FROM entries WHERE origin = ?", (origin,)))[0]
        )
    finally:
        conn.close()


def _await_kill_moment(net: Topology, sync: subprocess.Popen[str], rng: random.Random) -> None:
    """Wait for a seeded moment: early in the round, or just after a batch committed at
    the town (so the next one is in flight and the village already holds a receipt)."""
    if rng.random() < 0.3:
        with suppress(subprocess.TimeoutExpired):
            sync.wait(timeout=rng.uniform(*KILL_WINDOW))
        return
    start = _held_at(net.home(TOWN), VILLAGE)
    deadline = time.monotonic() + 60
    while sync.poll() is None and time.monotonic() < deadline:
        if _held_at(net.home(TOWN), VILLAGE) > start:
            break
        time.sleep(0.01)  # polling a real process, not making time pass
    with suppress(subprocess.TimeoutExpired):
        sync.wait(timeout=rng.uniform(0.0, 0.05))  # a batch is applied in a few tens of ms


def _kill_server_repeatedly(net: Topology, seed: int, kills: int) -> None:
    rng = random.Random(seed)
    outcomes = []
    for round_no in range(kills):
        with zhibao_serve(net.home(TOWN)) as served:
            sync = _start_sync(net, served.url)
            _await_kill_moment(net, sync, rng)
            served.kill9()
            outcomes.append(_finish(sync))
        _check_town(net)
        with net.open(VILLAGE) as village:
            append_notes(village, MORE_PER_KILL, start=BACKLOG + round_no * MORE_PER_KILL, pad=PAD)
    assert 1 in outcomes, f"no kill landed during a round: {outcomes}"
    with zhibao_serve(net.home(TOWN)) as served:
        _converge(net, served.url)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed{s}") for s in (1,)])
def test_kill9_town_server_during_push_keeps_every_receipted_entry(
    net: Topology, seed: int
) -> None:
    _kill_server_repeatedly(net, seed, kills=3)


@pytest.mark.soak
@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed{s}") for s in range(100, 110)])
def test_kill9_town_server_soak(net: Topology, seed: int) -> None:
    _kill_server_repeatedly(net, seed, kills=8)


CITY_BACKLOG = 800  # the town's own entries the city lacks: about two and a half batches


def _city_receipted(net: Topology) -> None:
    """After the city's serve was killed: its store whole, `log verify` ok, and every
    entry of the town's log a receipt from the city acknowledges is there, same hash."""
    if (net.home(CITY) / NODE_DB).exists():  # PostgreSQL: no such check, the log verify
        assert integrity_check(net.home(CITY)) == "ok"
    verify = zhibao(net.home(CITY), "log", "verify", "--json")
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"] is True, verify.stdout
    acked = int(_cli_json(net.home(TOWN), "status")["acknowledged"].get(TOWN, 0))
    city = snapshot_home(net.home(CITY))
    assert_whole(city)
    assert city.heads[TOWN][0] >= acked
    with home_store(net.home(CITY)) as there, home_store(net.home(TOWN)) as here:
        assert there.hash_at(TOWN, acked) == here.hash_at(TOWN, acked)


@pytest.mark.usefixtures("city_engine")
@pytest.mark.slow
@sqlite_in_soak  # on SQLite the town's server above is the same code, killed the same way
def test_kill9_city_server_during_push_keeps_every_receipted_entry(
    city_engine: str, make_topology: MakeTopology
) -> None:
    net = make_topology([TOWN])
    with net.open(TOWN) as town:
        append_notes(town, CITY_BACKLOG, pad=PAD)
    with home_store(net.home(CITY)) as city, zhibao_serve(net.home(CITY)) as served:
        start = city.head(TOWN)[0]
        sync = subprocess.Popen(
            [ZHIBAO, "sync", "--home", str(net.home(TOWN)), "--peer", served.url, "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while city.head(TOWN)[0] == start and sync.poll() is None:
            assert time.monotonic() < deadline, "no batch reached the city"
            time.sleep(0.01)  # polling a real process, not making time pass
        served.kill9()  # a batch committed, the next in flight
        assert _finish(sync) == 1, "the push ended before the kill"
    _city_receipted(net)
    with zhibao_serve(net.home(CITY)) as served:  # the next round completes
        done = zhibao(net.home(TOWN), "sync", "--peer", served.url, "--json")
        assert done.returncode == 0, done.stderr
    town_log = snapshot_home(net.home(TOWN)).within(TOWN)
    assert snapshot_home(net.home(CITY)).within(TOWN).heads == town_log.heads
    _city_receipted(net)


@pytest.mark.slow
def test_kill9_sync_client_mid_round_leaves_both_sides_intact(net: Topology) -> None:
    rng = random.Random(7)
    outcomes = []
    for round_no in range(2):
        # the server stops before the checks: it may still be applying the last request
        with serve_in_thread(net.home(TOWN)) as url:
            sync = _start_sync(net, url)
            _await_kill_moment(net, sync, rng)
            if sync.poll() is None:
                sync.kill()  # SIGKILL
            outcomes.append(_finish(sync))
        assert integrity_check(net.home(VILLAGE)) == "ok"
        _check_town(net, cli=False)
        with net.open(VILLAGE) as village:
            append_notes(village, MORE_PER_KILL, start=BACKLOG + round_no * MORE_PER_KILL, pad=PAD)
    assert -9 in outcomes, f"no kill landed during a round: {outcomes}"
    with serve_in_thread(net.home(TOWN)) as url:
        _converge(net, url)
    with net.open(VILLAGE) as village:
        assert audit_problems(village.store) == []


def test_log_verify_while_a_batch_is_applied_sees_one_snapshot(small: Topology) -> None:
    with small.open(VILLAGE) as village:
        first, rest = village.store.entries(VILLAGE, 0, 1000), village.store.entries(VILLAGE, 1000)
    with small.open(TOWN) as reader, small.open(TOWN) as server:

        def apply(entries: list[SignedEntry]) -> None:
            runs = decode_batch(encode_batch(entries))
            ingest(server.store, runs, me=TOWN, sender=VILLAGE, received_at=server.clock.stamp())

        apply(first)
        read_log = reader.store.iter_all

        def read_then_apply(origin: str | None = None) -> Iterator[SignedEntry]:
            yield from read_log(origin)
            if origin == VILLAGE:  # the server commits a batch just after the log was read
                apply(rest)

        reader.store.iter_all = read_then_apply  # type: ignore[method-assign]
        assert audit_problems(reader.store) == []


# --- a full disk, a failing disk ---------------------------------------------------------


@pytest.fixture(scope="module")
def small_template(
    topology_templates: Templates, tmp_path_factory: pytest.TempPathFactory
) -> Topology:
    net = copy_topology(topology_templates([VILLAGE]), tmp_path_factory.mktemp("small"))
    with net.open(VILLAGE) as village:
        append_notes(village, 2_000)
    return net


@pytest.fixture
def small(small_template: Topology, tmp_path: Path) -> Topology:
    """City, town and a village holding 2,000 entries the town has not seen."""
    return copy_topology(small_template, tmp_path / "net")


def _village_runs(net: Topology) -> list[Run]:
    with net.open(VILLAGE) as village:
        return decode_batch(encode_batch(village.store.entries(VILLAGE)))


def _fill_disk(town: Node) -> None:
    """Let the town's database grow by a few pages only, as on a nearly full disk."""
    pages = town.store.query("PRAGMA page_count")[0][0]
    town.store.execute(f"PRAGMA max_page_count = {pages + 8}")


def test_disk_full_during_apply_refuses_and_keeps_store_intact(small: Topology) -> None:
    runs = _village_runs(small)
    with small.open(TOWN) as town:
        _fill_disk(town)
        before = snapshot(town.store)
        with pytest.raises(DiskFullError):
            ingest(town.store, runs, me=TOWN, sender=VILLAGE, received_at=town.clock.stamp())
        assert snapshot(town.store) == before
        # the connection is still usable, and over HTTP it is a clean refusal too
        with serve_in_thread(node=town) as url, small.open(VILLAGE) as village:
            with pytest.raises(RefusedError) as refused:
                sync_round(village, url)
            assert refused.value.code == "store.full"
            assert receipts.acknowledged(village.store, TOWN) == {}
        assert snapshot(town.store) == before
        assert audit_problems(town.store) == []
    assert integrity_check(small.home(TOWN)) == "ok"
    assert snapshot_home(small.home(TOWN)) == before
    # with room again, the same push applies whole
    with serve_in_thread(small.home(TOWN)) as url, small.open(VILLAGE) as village:
        assert sync_round(village, url).pushed == 2_000
    assert_whole(snapshot_home(small.home(TOWN)))


class _FailingFile(apsw.VFSFile):
    def xWrite(self, data: bytes, offset: int) -> None:
        if _FailingVFS.failing:
            raise apsw.IOError("injected write failure")
        super().xWrite(data, offset)


class _FailingVFS(apsw.VFS):
    """The default VFS, whose writes fail while `failing` is set."""

    failing = False

    def __init__(self) -> None:
        super().__init__("zhibao-test-failing", "unix", makedefault=True)

    def xOpen(self, name: str | apsw.URIFilename | None, flags: list[int]) -> apsw.VFSFile:
        return _FailingFile("unix", name, flags)


@contextmanager
def _failing_disk() -> Iterator[type[_FailingVFS]]:
    vfs = _FailingVFS()
    try:
        yield _FailingVFS
    finally:
        _FailingVFS.failing = False
        vfs.unregister()


def test_io_error_during_apply_refuses_and_keeps_store_intact(small: Topology) -> None:
    runs = _village_runs(small)
    with _failing_disk() as disk, small.open(TOWN) as town:
        before = snapshot(town.store)
        disk.failing = True
        with pytest.raises(StoreError):
            ingest(town.store, runs, me=TOWN, sender=VILLAGE, received_at=town.clock.stamp())
        disk.failing = False
        assert snapshot(town.store) == before
    assert integrity_check(small.home(TOWN)) == "ok"
    assert snapshot_home(small.home(TOWN)) == before
    with small.open(TOWN) as town:
        result = ingest(town.store, runs, me=TOWN, sender=VILLAGE, received_at=town.clock.stamp())
        assert result.applied == {VILLAGE: 2_000}
        assert audit_problems(town.store) == []
