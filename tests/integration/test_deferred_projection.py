"""Receipt first, projection after: what `serve` defers, and who catches it up (sync.store).

A deferring connection (as `serve` runs) stores and acknowledges entries without
projecting them; the tier projections catch up from a cursor kept in the same database,
chunk by chunk. The invariant checked throughout: the projections equal the log up to the
cursor, never more and never less, and nobody reads or writes a case behind the log.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import apsw
import pytest

from sync.ingest import ingest
from sync.node import NODE_DB, open_node
from sync.protocol.batch import decode_batch, encode_batch
from sync.store import PROJECTED, Store
from tests.helpers_cases import TOWN, VILLAGE, Network, case_entries, network
from tests.support.servers import ZHIBAO, cli_env, zhibao, zhibao_serve
from tests.support.topology import enrol
from tiers.cases import service
from tiers.node import extensions, open_home

pytestmark = pytest.mark.usefixtures("city_engine")  # every city here: SQLite, then PostgreSQL

AT = "2025-10-09T10:00:00+08:00"


def _receive(net: Network, count: int) -> list[str]:
    """Enrol the nodes, then `count` B2 cases received and forwarded at the village (two
    entries each)."""
    enrol(net.city, net.town)
    enrol(net.town, net.village)
    net.down()
    node = net.village
    ids = []
    with node.store.transaction():
        for number in range(count):
            case_id = service.receive(
                node, "B2", service.Applicant(f"王{number}", phone="13900000000"), ["户口本"]
            )
            service.forward(node, case_id)
            ids.append(case_id)
    return ids


def _push_deferred(store: Store, village: Store) -> int:
    """Ingest the village's log into `store` as `serve` does; the count applied."""
    runs = decode_batch(encode_batch(list(village.iter_all(VILLAGE))))
    result = ingest(store, runs, me=TOWN, sender=VILLAGE, received_at=AT)
    assert not result.rejected, result.rejected
    return result.applied_total


def _read(home: Path, sql: str) -> int:
    """One number, read without opening the node (which would catch up)."""
    conn = apsw.Connection(str(home / NODE_DB), flags=apsw.SQLITE_OPEN_READONLY)
    conn.set_busy_timeout(10_000)
    try:
        return int(conn.execute(sql).fetchone()[0] or 0)
    finally:
        conn.close()


def _cursor(home: Path) -> int:
    return _read(home, f"SELECT CAST(value AS INTEGER) FROM meta WHERE key = '{PROJECTED}'")


def _assert_projection_matches_cursor(home: Path) -> int:
    """case_events holds exactly the case entries at or below the cursor; returns it."""
    cursor = _cursor(home)
    below = _read(home, f"SELECT count(*) FROM entries WHERE id <= {cursor} AND type LIKE 'case.%'")
    assert _read(home, "SELECT count(*) FROM case_events") == below
    return cursor


def test_a_deferring_store_acknowledges_first_and_projects_on_catch_up(tmp_path: Path) -> None:
    with network(tmp_path) as net:
        _receive(net, 5)
        town = net.town.store
        town.defer_projections()
        events_before = town.query("SELECT count(*) FROM case_events")[0][0]
        applied = _push_deferred(town, net.village.store)
        assert applied == 10
        assert town.unprojected() == 10
        assert town.query("SELECT count(*) FROM case_events")[0][0] == events_before

        assert town.catch_up(limit=4) == 6  # a step, as the idle server takes them
        assert town.query("SELECT count(*) FROM case_events")[0][0] == events_before + 4
        _assert_projection_matches_cursor(net.town.home)

        with open_home(net.town.home) as reader:  # a clerk's command catches up on opening
            assert reader.store.unprojected() == 0
            assert reader.store.query("SELECT count(*) FROM case_events")[0][0] == 10
        _assert_projection_matches_cursor(net.town.home)


def test_a_clerk_writing_behind_a_deferred_push_sees_the_case_first(tmp_path: Path) -> None:
    with network(tmp_path) as net:
        (case_id,) = _receive(net, 1)
        net.town.store.defer_projections()
        _push_deferred(net.town.store, net.village.store)
        # opened without the catch-up of open_home: the write transaction itself catches up
        clerk = open_node(net.town.home, extensions=extensions(), clock=net.town.clock)
        try:
            assert clerk.store.unprojected() == 2
            service.accept(clerk, case_id)
            assert clerk.store.unprojected() == 0
            holder = clerk.store.query("SELECT holder FROM cases WHERE case_id = ?", (case_id,))
            assert holder == [(TOWN,)]
        finally:
            clerk.close()


def test_serve_projects_on_its_own_once_the_pushes_stop(tmp_path: Path) -> None:
    with network(tmp_path) as net:
        ids = _receive(net, 20)
        village_events = len(case_entries(net.village.store, VILLAGE))
        town_home, village_home = net.town.home, net.village.home
    with zhibao_serve(town_home) as served:
        done = zhibao(village_home, "sync", "--peer", served.url, "--json")
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 30
        while _read(town_home, "SELECT count(*) FROM case_events") < village_events:
            assert time.monotonic() < deadline, "serve never projected what it took"
            time.sleep(0.05)  # waiting on another process, not making time pass
        _assert_projection_matches_cursor(town_home)
        assert served.errors() == ""
    listed = zhibao(town_home, "case", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert set(ids) <= {case["case_id"] for case in _cases(listed.stdout)}


def _cases(stdout: str) -> list[dict[str, object]]:
    import json

    value = json.loads(stdout)
    return value["cases"] if isinstance(value, dict) else value  # type: ignore[no-any-return]


@pytest.mark.parametrize("seed", range(3))
def test_kill9_while_catching_up_keeps_projection_and_cursor_together(
    tmp_path: Path, seed: int
) -> None:
    """`zhibao serve` catches up a backlog on start; killed in the middle of it, the town
    holds a projection equal to its log up to the cursor, and the next open finishes."""
    rng = random.Random(seed)
    with network(tmp_path, durable=False) as net:
        _receive(net, 1500)
        net.town.store.defer_projections()
        total = _push_deferred(net.town.store, net.village.store)
        town_home = net.town.home
    start = _cursor(town_home)
    server = subprocess.Popen(
        [ZHIBAO, "serve", "--home", str(town_home), "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=cli_env(),
    )
    try:
        deadline = time.monotonic() + 60
        while _cursor(town_home) == start and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.05))
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
    reached = _assert_projection_matches_cursor(town_home)
    assert start < reached, "the kill landed before any chunk was committed"
    with open_home(town_home) as town:
        assert town.store.unprojected() == 0
    final = _assert_projection_matches_cursor(town_home)
    assert final >= start + total
