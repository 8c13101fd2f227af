"""PostgreSQL tests: every test here is marked `postgresql` and gets a database of its own
on the run's private cluster (tests/support/postgres.py says how it starts and stops)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sync.logstore import LogStore
from sync.pg import PgStore
from sync.store import Store
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


@pytest.fixture(params=["sqlite", "postgresql"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., LogStore]:
    """Makes this test's store on each engine in turn (SQLite: a file in `tmp_path`;
    PostgreSQL: this test's database), with the `extensions` given and `owner`."""

    def make(*extensions: Any, owner: str | None = None) -> LogStore:
        if request.param == "sqlite":
            return Store(tmp_path / "node.db", extensions=list(extensions), owner=owner)
        url = request.getfixturevalue("pg_url")
        return PgStore(url, extensions=list(extensions), owner=owner)

    return make


@pytest.fixture
def role(pg_url: str) -> Iterator[tuple[str, str]]:
    """A login role of this test's own (name, password), dropped after it; skipped where
    the server's test role may not make roles (`ZHIBAO_TEST_PG`: an operator's server)."""
    name, password = "clerk_" + secrets.token_hex(4), secrets.token_hex(8)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        [(may,)] = conn.execute(
            "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchall()
        if not may:
            pytest.skip("the test server's role may not create roles")
        conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        try:
            yield name, password
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.execute(f"DROP OWNED BY {name}")
            with contextlib.suppress(psycopg.Error):
                conn.execute(f"DROP ROLE {name}")
