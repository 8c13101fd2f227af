"""PostgreSQL tests: every test here is marked `postgresql` and gets a database of its own
on the run's private cluster (tests/support/postgres.py says how it starts and stops)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import fresh_database, shared_server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.postgresql)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The run's server (its maintenance database's URL)."""
    return shared_server(tmp_path_factory)


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty database for this test (dropped after it)."""
    with fresh_database(pg_server) as url:
        yield url
