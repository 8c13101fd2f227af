"""A login role of a test's own (the `role` fixture, tests/postgres/conftest.py) given its
rights by hand, as an operator may (docs/operator.md)."""

from __future__ import annotations

from typing import Any

from psycopg.conninfo import make_conninfo

from sync.pg import PgStore

GRANTS = [  # every right on zhibao's tables, as docs/operator.md asks of such a role
    "GRANT USAGE, CREATE ON SCHEMA public TO {role}",
    "GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}",
    "GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}",
]


def as_role(
    by: PgStore, pg_url: str, role: tuple[str, str], grants: list[str], **store: Any
) -> PgStore:
    """The store as `role` sees it once `by` (the owner) has run `grants` (REVOKE too) for it."""
    name, password = role
    for grant in grants:
        by.conn.execute(grant.format(role=name))
    return PgStore(make_conninfo(pg_url, user=name, password=password), **store)
