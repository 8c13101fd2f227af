"""The hostile network, built once per session and copied for each test or module."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.network import Net, build_network
from tests.support.topology import Topology


@pytest.fixture(scope="session")
def hostile_template(tmp_path_factory: pytest.TempPathFactory) -> Topology:
    """City, two towns, villages A, B, C and X: built once, never opened by a test."""
    return build_network(tmp_path_factory.mktemp("hostile-template"))


@pytest.fixture
def net(hostile_template: Topology, tmp_path: Path) -> Net:
    """A fresh copy of the network for one test."""
    return Net.copy_of(hostile_template, tmp_path / "net")


@pytest.fixture(scope="module")
def shared_net(hostile_template: Topology, tmp_path_factory: pytest.TempPathFactory) -> Net:
    """One copy for a module whose attacks do not interfere."""
    return Net.copy_of(hostile_template, tmp_path_factory.mktemp("shared") / "net")
