"""The hostile network, built once per session and engine (tests/conftest.py
`hostile_templates`) and copied for each test or module."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import HostileTemplates
from tests.hostile.network import Net
from tests.support.topology import Topology


@pytest.fixture
def hostile_template(hostile_templates: HostileTemplates) -> Topology:
    """The template on the engine of this test."""
    return hostile_templates()


@pytest.fixture
def net(hostile_template: Topology, tmp_path: Path) -> Net:
    """A fresh copy of the network for one test."""
    return Net.copy_of(hostile_template, tmp_path / "net")


@pytest.fixture(scope="module")
def shared_net(
    hostile_templates: HostileTemplates, tmp_path_factory: pytest.TempPathFactory
) -> Net:
    """One copy for a module whose attacks do not interfere (its city on SQLite: a
    module-wide copy outlives any one test's database)."""
    return Net.copy_of(hostile_templates(), tmp_path_factory.mktemp("shared") / "net")
