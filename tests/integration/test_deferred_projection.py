"""Receipt first, projection after: what `serve` defers, and who catches it up (sync.store).

A deferring connection (as `serve` runs) stores and acknowledges entries without
projecting them; the tier projections catch up from a cursor kept in the same database,
chunk by chunk. The invariant checked throughout: the projections equal the log up to the
cursor, never more and never less, and nobody reads or writes a case behind the log.

The deferring node is the city (the village's log relayed by its town), on both engines
(`city_engine`): a town defers the same way, in the same code (sync.logstore).
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
import tomllib
from pathlib import Path

import apsw
import psycopg
import pytest

from sync import node_store
from sync.ingest import ingest
from sync.node import NODE_DB, NODE_TOML, open_node
from sync.protocol.batch import decode_batch, encode_batch
from sync.store import PROJECTED, Store
from tests.helpers_cases import CITY, TOWN, VILLAGE, Network, case_entries, network
from tests.support.postgres import engines_and, sqlite_only
from tests.support.servers import ZHIBAO, cli_env, zhibao, zhibao_serve
from tests.support.topology import enrol
from tiers.cases import service
from tiers.node import extensions, open_home

pytestmark = pytest.mark.usefixtures("city_engine")  # every city here: SQLite, then PostgreSQL

AT = "2025-10-09T10:00:00+08:00"


def _receive(net: Network, count: int) -> list[str]:
    """Enrol the nodes (the town's log at the city: it knows the village's key), then
    `count` B2 cases received and forwarded at the village (two entries each)."""
    enrol(net.city, net.town)
    enrol(net.town, net.village)
    net.down()
    net.sync((net.town, net.city))
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


def _push_deferred(
    store: Store, village: Store, *, me: str = CITY, through: int | None = None, at: str = AT
) -> int:
    """Ingest the village's log (up to seq `through`) into the city's `store` (relayed by the
    town), or the town's (`me`), as `serve` does, as a push arriving `at`; the count applied."""
    log = [e for e in village.iter_all(VILLAGE) if through is None or e.seq <= through]
    runs = decode_batch(encode_batch(log))
    sender = TOWN if me == CITY else VILLAGE
    result = ingest(store, runs, me=me, sender=sender, received_at=at)
    assert not result.rejected, result.rejected
    return result.applied_total


def _read(home: Path, sql: str) -> int:
    """One number, read without opening the node (which would catch up)."""
    url = _pg_url(home)
    if url is not None:
        with psycopg.connect(url, passfile=str(node_store.passfile_of(home) or "")) as pg:
            row = pg.execute(sql.replace("CAST(value AS INTEGER)", "CAST(value AS bigint)"))
            return int((row.fetchone() or (0,))[0] or 0)
    conn = apsw.Connection(str(home / NODE_DB), flags=apsw.SQLITE_OPEN_READONLY)
    conn.set_busy_timeout(10_000)
    try:
        return int(conn.execute(sql).fetchone()[0] or 0)
    finally:
        conn.close()


def _pg_url(home: Path) -> str | None:
    """The PostgreSQL database node.toml names (None: node.db)."""
    store = tomllib.loads((home / NODE_TOML).read_text("utf-8")).get("store")
    return str(store) if store else None


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
        city = net.city.store
        city.defer_projections()
        events_before = city.query("SELECT count(*) FROM case_events")[0][0]
        applied = _push_deferred(city, net.village.store, through=6)
        applied += _push_deferred(city, net.village.store, at=AT.replace(":00+", ":01+"))
        assert applied == 10
        assert city.unprojected() == 10
        assert city.query("SELECT count(*) FROM case_events")[0][0] == events_before

        # a step, as the idle server takes them: on to where the push it reached ended
        assert city.catch_up(limit=4) == 4
        assert city.query("SELECT count(*) FROM case_events")[0][0] == events_before + 6
        _assert_projection_matches_cursor(net.city.home)

        with open_home(net.city.home) as reader:  # a clerk's command catches up on opening
            assert reader.store.unprojected() == 0
            assert reader.store.query("SELECT count(*) FROM case_events")[0][0] == 10
        _assert_projection_matches_cursor(net.city.home)


@sqlite_only  # the town's clerk accepts the case (no city acts on a case it does not hold)
def test_a_clerk_writing_behind_a_deferred_push_sees_the_case_first(tmp_path: Path) -> None:
    with network(tmp_path) as net:
        (case_id,) = _receive(net, 1)
        net.town.store.defer_projections()
        _push_deferred(net.town.store, net.village.store, me=TOWN)
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
        net.sync((net.village, net.town))
        city_home, town_home = net.city.home, net.town.home
    with zhibao_serve(city_home) as served:
        done = zhibao(town_home, "sync", "--peer", served.url, "--json")
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 30
        while _read(city_home, "SELECT count(*) FROM case_events") < village_events:
            assert time.monotonic() < deadline, "serve never projected what it took"
            time.sleep(0.05)  # waiting on another process, not making time pass
        _assert_projection_matches_cursor(city_home)
        assert served.errors() == ""
    listed = zhibao(city_home, "case", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert set(ids) <= {case["case_id"] for case in _cases(listed.stdout)}


def _cases(stdout: str) -> list[dict[str, object]]:
    import json

    value = json.loads(stdout)
    return value["cases"] if isinstance(value, dict) else value  # type: ignore[no-any-return]


@engines_and("seed", range(3), pg_in_ci=0)  # > 10 s: PostgreSQL in the soak run
def test_kill9_while_catching_up_keeps_projection_and_cursor_together(
    tmp_path: Path, seed: int
) -> None:
    """`zhibao serve` catches up a backlog on start; killed in the middle of it, the city
    holds a projection equal to its log up to the cursor, and the next open finishes."""
    rng = random.Random(seed)
    with network(tmp_path, durable=False) as net:
        _receive(net, 1500)
        net.city.store.defer_projections()
        total = _push_deferred(net.city.store, net.village.store)
        city_home = net.city.home
    start = _cursor(city_home)
    server = subprocess.Popen(
        [ZHIBAO, "serve", "--home", str(city_home), "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=cli_env(),
    )
    try:
        deadline = time.monotonic() + 60
        while _cursor(city_home) == start and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.05))
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
    reached = _assert_projection_matches_cursor(city_home)
    assert start < reached, "the kill landed before any chunk was committed"
    with open_home(city_home) as city:
        assert city.store.unprojected() == 0
    final = _assert_projection_matches_cursor(city_home)
    assert final >= start + total
