"""Village → town → city over a seeded flaky line: nothing lost, nothing applied twice.

Both hops go through a `FaultProxy` (cuts, stalls, flipped bytes, replayed and reordered
connections) in front of real uvicorn servers on 127.0.0.1. The village and the town keep
appending and keep syncing; a round may fail, but only with the project's own SyncError.
After the line is fixed, one clean round per hop must give exact convergence.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from sync.node import Node
from sync.protocol.errors import SyncError
from sync.receipts import acknowledged
from sync.round import sync_round
from sync.testing.proxy import FaultProxy, Schedule
from tests.conftest import MakeTopology
from tests.support.postgres import engines_and
from tests.support.servers import Switchboard, switchboard
from tests.support.state import assert_prefix_held, assert_whole, audit_problems, snapshot
from tests.support.topology import CITY, TOWN, VILLAGE, VILLAGE_2, Topology, append_notes

pytestmark = pytest.mark.usefixtures("city_engine")  # every city here: SQLite, then PostgreSQL

ROUND_TIMEOUT = 1.5  # a flipped Content-Length leaves a request hanging until this
LINE = Schedule.flaky(cut=0.3, flip=0.1, max_stall=0.3, max_hold=0.3, latency=0.002)


@dataclass
class Outcome:
    """How the flaky rounds went: successes, and the clean errors that ended the others."""

    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def failed(self, exc: SyncError) -> None:
        name = f"{type(exc).__name__}:{exc.key}"
        self.errors[name] = self.errors.get(name, 0) + 1


Boards = dict[str, tuple[str, Switchboard]]


@pytest.fixture(scope="module")
def boards() -> Iterator[Boards]:
    """One in-thread server each for the city and the town, shared by the module's tests."""
    with switchboard() as city, switchboard() as town:
        yield {CITY: city, TOWN: town}


@contextmanager
def _proxied(
    topology: Topology, boards: Boards, node_id: str, seed: int
) -> Iterator[tuple[str, FaultProxy]]:
    """(direct URL, flaky proxy) for `node_id`, served in a thread."""
    url, board = boards[node_id]
    with board.serving(topology.home(node_id), url):
        port = urlsplit(url).port
        assert port is not None
        with FaultProxy("127.0.0.1", port, schedule=LINE, seed=seed, io_timeout=10) as proxy:
            yield url, proxy


def _plain_http() -> httpx.HTTPTransport:
    """httpx's own transport, minus loading the CA bundle (50 ms a round; http:// only)."""
    return httpx.HTTPTransport(verify=False)


def _flaky_rounds(node: Node, url: str, parent_home: Path, rounds: int, outcome: Outcome) -> None:
    """`rounds` rounds over the flaky line; after each, failed or not, the parent holds a
    true prefix of every log, once, and no receipt claims more than it holds."""
    for _ in range(rounds):
        try:
            sync_round(node, url, timeout=ROUND_TIMEOUT, transport=_plain_http())
        except SyncError as exc:  # anything else is a bug, and fails the test
            outcome.failed(exc)
        else:
            outcome.ok += 1
        assert_prefix_held(node, parent_home)


def _run(
    topology: Topology, boards: Boards, seed: int, *, entries: int, bursts: int, rounds: int
) -> None:
    rng = random.Random(seed)
    outcome = Outcome()
    expected = {VILLAGE: 0, VILLAGE_2: 0, TOWN: 2}  # the town's log starts with two enrolments
    with ExitStack() as stack:
        city_url, city_line = stack.enter_context(_proxied(topology, boards, CITY, seed))
        town_url, town_line = stack.enter_context(_proxied(topology, boards, TOWN, seed + 10_000))
        village = stack.enter_context(topology.open(VILLAGE))
        village_2 = stack.enter_context(topology.open(VILLAGE_2))
        town = stack.enter_context(topology.open(TOWN))
        for burst in range(bursts):
            for node in (village, village_2, town):
                count = rng.randint(1, entries // bursts)
                append_notes(node, count, start=expected[node.node_id], tag=f"b{burst}")
                expected[node.node_id] += count
            _flaky_rounds(village, town_line.url, topology.home(TOWN), rounds, outcome)
            _flaky_rounds(village_2, town_line.url, topology.home(TOWN), 1, outcome)
            _flaky_rounds(town, city_line.url, topology.home(CITY), rounds, outcome)
        # the line is fixed: one clean round per hop. (Late replays and held requests may
        # still reach the servers; they can only bring what these rounds bring anyway.)
        for node in (village, village_2):
            assert not sync_round(node, town_url, transport=_plain_http()).rejected
        assert not sync_round(town, city_url, transport=_plain_http()).rejected
        faults = town_line.stats.faults + city_line.stats.faults
        snaps = {n.node_id: snapshot(n.store) for n in (village, village_2, town)}
        acks = {
            n.node_id: acknowledged(n.store, n.config.parent_id or "")
            for n in (village, village_2, town)
        }
    with topology.open(CITY) as city:
        snaps[CITY] = snapshot(city.store)
        problems = {CITY: audit_problems(city.store)}
    for node_id in (VILLAGE, VILLAGE_2, TOWN):
        with topology.open(node_id) as node:
            problems[node_id] = audit_problems(node.store)

    assert sum(faults.values()) > 0, f"the flaky line injected no fault: {outcome}"
    assert problems == {CITY: [], TOWN: [], VILLAGE: [], VILLAGE_2: []}
    for snap in snaps.values():
        assert_whole(snap)
    # each log is exactly what its author wrote, at every node above it
    assert {o: s for o, (s, _) in snaps[CITY].heads.items() if o != CITY} == expected
    assert snaps[TOWN].within(TOWN) == snaps[CITY].within(TOWN)
    assert snaps[VILLAGE].within(VILLAGE) == snaps[TOWN].within(VILLAGE)
    assert snaps[VILLAGE_2].within(VILLAGE_2) == snaps[TOWN].within(VILLAGE_2)
    assert snaps[CITY].forks == snaps[TOWN].forks == ()
    # and every author holds its parent's receipt for all of it
    assert acks[VILLAGE][VILLAGE] == expected[VILLAGE]
    assert acks[VILLAGE_2][VILLAGE_2] == expected[VILLAGE_2]
    assert {o: acks[TOWN][o] for o in expected} == expected


@pytest.fixture
def network(make_topology: MakeTopology) -> Topology:
    return make_topology([VILLAGE, VILLAGE_2])


@engines_and("seed", range(10), pg_in_ci=2)  # PostgreSQL: 2 seeds in CI, the rest in soak
def test_flaky_link_converges_exactly(network: Topology, boards: Boards, seed: int) -> None:
    _run(network, boards, seed, entries=300, bursts=2, rounds=2)


@pytest.mark.soak
@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed{s}") for s in range(100, 140)])
def test_flaky_link_soak_converges_exactly(network: Topology, boards: Boards, seed: int) -> None:
    _run(network, boards, seed, entries=8_000, bursts=5, rounds=5)
