"""Fixtures shared by every test package: networks of real node homes in `tmp_path`.

Building a network (keys, databases, enrolments) costs a few fsyncs per node, so each
distinct set of nodes is built once per session and every test gets its own copy: same
ids, names and keys every time, separate files.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.postgres import (
    PG_CI,
    PG_SOAK,
    STORE_ENV,
    city_engine,
    create_database,
    database_of,
    drop_databases,
    soak_marks,
    stop_shared,
    store_env,
)
from tests.support.slowfirst import pytest_collection_modifyitems  # noqa: F401 (the hook)
from tests.support.topology import CITY, TOWN, VILLAGE, Topology, build_topology, copy_topology

# No per-example deadline: on a busy 2-core runner an example can take longer than
# hypothesis's 200 ms (test_csv_cell_never_starts_a_formula failed once in a full run under
# load and passed alone; its message was not kept, so the deadline is a guess)
settings.register_profile("zhibao", deadline=None)
settings.load_profile("zhibao")

__all__ = ["city_engine"]  # a fixture: `pytest.mark.usefixtures("city_engine")` runs a
# test's cities on SQLite and on PostgreSQL (tests/support/postgres.py)

MakeTopology = Callable[..., Topology]
HostileTemplates = Callable[[], Topology]
Templates = Callable[[Iterable[str]], Topology]


@pytest.fixture(scope="session")
def topology_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Templates]:
    """Networks built once per session, by node set and the city's engine (under
    `city_engine`'s PostgreSQL, the city in a template database of its own); copy them,
    never open them."""
    built: dict[tuple[bool, tuple[str, ...]], Topology] = {}

    def template(nodes: Iterable[str]) -> Topology:
        on = store_env()
        key = (on is not None, tuple(sorted(set(nodes))))
        if key not in built:
            store = None if on is None else create_database(on, "tpl_" + secrets.token_hex(8))
            built[key] = build_topology(tmp_path_factory.mktemp("network"), key[1], store=store)
        return built[key]

    yield template
    for net in built.values():
        if net.store is not None:
            drop_databases(net.store, database_of(net.store))


@pytest.fixture
def make_topology(tmp_path: Path, topology_templates: Templates) -> MakeTopology:
    """A fresh copy of a network (parents of the nodes named are added), per call."""
    counter = itertools.count(1)

    def make(nodes: Iterable[str] = (CITY, TOWN, VILLAGE)) -> Topology:
        return copy_topology(topology_templates(nodes), tmp_path / f"net{next(counter)}")

    return make


@pytest.fixture
def topology(make_topology: MakeTopology) -> Topology:
    """A city, one town and one of its villages (see tests/support/topology.py)."""
    return make_topology()


@pytest.fixture(scope="session")
def hostile_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileTemplates]:
    """The hostile network (tests/hostile/network.py: city, two towns, villages A, B, C
    and X), built once per engine (under `city_engine`'s PostgreSQL the city in a template
    database of its own); never opened by a test, only copied."""
    from tests.hostile.network import build_network  # only the suites that use it pay
    built: dict[bool, Topology] = {}

    def template() -> Topology:
        on = store_env()
        if (on is not None) not in built:
            base = tmp_path_factory.mktemp("hostile-template")
            if on is None:
                built[False] = build_network(base)
            else:  # city_store() hands the builder the template database
                with pytest.MonkeyPatch.context() as patch:
                    patch.setenv(STORE_ENV, create_database(on, "tpl_" + secrets.token_hex(8)))
                    built[True] = build_network(base)
        return built[on is not None]

    yield template
    for net in built.values():
        if net.store is not None:
            drop_databases(net.store, database_of(net.store))


def pytest_configure(config: pytest.Config) -> None:
    for marker in (
        f"{PG_SOAK}: the PostgreSQL runs of a module or test opted in (city_engine) go to "
        "the soak run, but those of a test marked pg_ci",
        f"{PG_CI}: this test's PostgreSQL run stays in the CI run (a module marked pg_soak)",
    ):
        config.addinivalue_line("markers", marker)


@pytest.hookimpl(tryfirst=True)  # before the markers' deselection (-m 'not soak')
def pytest_itemcollected(item: pytest.Item) -> None:
    soak_marks([item])


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The run's controller stops the PostgreSQL cluster the tests started, if any."""
    if hasattr(session.config, "workerinput"):  # a pytest-xdist worker: not its to stop
        return
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None and getattr(factory, "_basetemp", None) is not None:
        stop_shared(factory.getbasetemp())
