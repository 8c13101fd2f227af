"""Fixtures shared by every test package: networks of real node homes in `tmp_path`.

Building a network (keys, databases, enrolments) costs a few fsyncs per node, so each
distinct set of nodes is built once per session and every test gets its own copy: same
ids, names and keys every time, separate files.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from tests.support.postgres import stop_shared
from tests.support.slowfirst import pytest_collection_modifyitems  # noqa: F401 (the hook)
from tests.support.topology import CITY, TOWN, VILLAGE, Topology, build_topology, copy_topology

MakeTopology = Callable[..., Topology]
Templates = Callable[[Iterable[str]], Topology]


@pytest.fixture(scope="session")
def topology_templates(tmp_path_factory: pytest.TempPathFactory) -> Templates:
    """Networks built once per session, by node set; copy them, never open them."""
    built: dict[tuple[str, ...], Topology] = {}

    def template(nodes: Iterable[str]) -> Topology:
        key = tuple(sorted(set(nodes)))
        if key not in built:
            built[key] = build_topology(tmp_path_factory.mktemp("network"), key)
        return built[key]

    return template


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


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The run's controller stops the PostgreSQL cluster the tests started, if any."""
    if hasattr(session.config, "workerinput"):  # a pytest-xdist worker: not its to stop
        return
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None and getattr(factory, "_basetemp", None) is not None:
        stop_shared(factory.getbasetemp())
