"""What is the database failing and what is an entry's fault, on PostgreSQL (sync.pg.store
`translate`, StoreError.FAILING, sync._projecting `about_the_store`) and, for a table gone,
on SQLite too: the database refusing the city's role, or lacking a table, blames no entry
— the catch-up fails whole and waits for the operator — while an entry whose value the
database cannot hold (an index row too big, an OperationalError in psycopg) is set aside
alone and the others are projected: one signed entry must not stop the city's projections
(nor, through them, every town's pull)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest

from sync.logstore import LogStore
from sync.pg import PgStore
from sync.protocol.entry import SignedEntry
from sync.protocol.errors import StoreError
from tests.postgres.chains import chain, signer_for
from tests.postgres.roles import GRANTS, as_role
from tests.support.flushes import Seen

pytestmark = pytest.mark.postgresql

TOWN = "330782001"
NOW = "2025-10-13T09:00:00+08:00"


def test_an_entry_too_big_for_an_index_is_set_aside_alone(pg_url: str) -> None:
    """A town signs, with its own key, a note whose tag no btree index row can hold
    (54000, program_limit_exceeded: an OperationalError to psycopg, as an applicant's id
    number of 2,000 CJK characters is in `cases`): it is quarantined, the notes before and
    after it are projected, and the catch-up ends — it does not fail, again and again, as
    if the database were unreachable."""
    store = PgStore(pg_url, extensions=[Seen()])  # (its tag indexed)
    try:
        store.defer_projections()
        signer = signer_for(TOWN)
        first = chain(signer, TOWN, 2, tag="a")
        big = chain(signer, TOWN, 1, after=first[-1], tag=secrets.token_hex(8000))
        after = chain(signer, TOWN, 2, after=big[-1], tag="b")
        with store.transaction():
            store.insert([*first, *big, *after], NOW)
        assert store.catch_up() == 0
        assert store.query("SELECT seq FROM seen ORDER BY seq") == [(1,), (2,), (4,), (5,)]
        assert store.query("SELECT seq, reason FROM quarantine") == [(3, "projection.failed")]
    finally:
        store.close()


def test_a_role_refused_a_projection_s_table_fails_the_catch_up_and_blames_no_entry(
    pg_url: str, role: tuple[str, str]
) -> None:
    """The operator's grants leave the city's role without INSERT on one projection's
    table: a catch-up fails whole with `store.pg_denied`, one line saying what to do, and
    quarantines no entry (it is not theirs to blame: before, every entry of the chunk was
    set aside as unusable, one at a time); granted again, it projects each entry once."""
    name, _ = role
    owner = PgStore(pg_url, extensions=[Seen()])
    try:
        owner.defer_projections()
        with owner.transaction():  # five notes signed by the town's own key
            owner.insert(chain(signer_for(TOWN), TOWN, 5), NOW)
        grants = [*GRANTS, "REVOKE INSERT ON seen FROM {role}"]
        with as_role(owner, pg_url, role, grants, extensions=[Seen()]) as clerk:
            with pytest.raises(StoreError) as denied:
                clerk.catch_up()
            assert denied.value.key == "store.pg_denied"
            said = str(denied.value)
            assert said.startswith("The PostgreSQL database refused this node's role")
            assert "\n" not in said
            assert owner.query("SELECT count(*) FROM quarantine") == [(0,)]
            assert owner.get_meta("projected") is None
            owner.conn.execute(f"GRANT INSERT ON seen TO {name}")
            assert clerk.catch_up() == 0
        assert owner.query("SELECT count(*) FROM seen") == [(5,)]
        assert owner.query("SELECT count(*) FROM quarantine") == [(0,)]
    finally:
        owner.close()


@pytest.mark.parametrize("gone", ["table", "column"])
def test_a_projection_s_table_or_column_gone_fails_the_catch_up_and_blames_no_entry(
    make_store: Callable[..., LogStore], gone: str
) -> None:
    """Someone drops a projection's table, or a column of it, by hand: the catch-up of five
    notes the town signed with its own key fails whole with `store.schema`, one line saying
    what to do, and sets aside no entry (before, each was quarantined as unusable, one at a
    time: the whole log); once the table is made again, each note is projected once."""
    store = make_store(Seen())
    try:
        store.defer_projections()
        with store.transaction():
            store.insert(chain(signer_for(TOWN), TOWN, 5), NOW)
        if gone == "table":
            store.execute("DROP TABLE seen")
        else:
            store.execute("DROP INDEX seen_tag")  # (SQLite drops no indexed column)
            store.execute("ALTER TABLE seen DROP COLUMN tag")
        with pytest.raises(StoreError) as failed:
            store.catch_up()
        assert failed.value.key == "store.schema"
        said = str(failed.value)
        assert said.startswith("The database lacks a table, column or key this zhibao uses (")
        assert "seen" in said or "tag" in said
        assert "\n" not in said
        assert store.query("SELECT count(*) FROM quarantine") == [(0,)]
        assert store.get_meta("projected") is None
        if gone == "table":
            for statement in Seen.ddl.split(";"):
                if statement.strip():
                    store.execute(statement)
        else:
            store.execute("ALTER TABLE seen ADD COLUMN tag TEXT NOT NULL DEFAULT ''")
        assert store.catch_up() == 0
        assert store.query("SELECT seq FROM seen ORDER BY seq") == [(n,) for n in range(1, 6)]
        assert store.query("SELECT count(*) FROM quarantine") == [(0,)]
    finally:
        store.close()


class Latest:
    """Each origin's last test note, written as the tiers' projections write theirs: an
    upsert on a unique index (`latest`) and an INSERT OR REPLACE on a primary key
    (`last_tag`)."""

    name = "latest"
    version = 1
    ddl = (
        "CREATE TABLE IF NOT EXISTS latest (origin TEXT NOT NULL, seq INTEGER NOT NULL);"
        "CREATE UNIQUE INDEX IF NOT EXISTS latest_origin ON latest (origin);"
        "CREATE TABLE IF NOT EXISTS last_tag (origin TEXT PRIMARY KEY, tag TEXT NOT NULL);"
    )
    types: frozenset[str] | None = frozenset({"test.note"})
    lazy = True

    def apply(self, store: LogStore, entry: SignedEntry, fields: dict[str, Any]) -> None:
        store.execute(
            "INSERT INTO latest (origin, seq) VALUES (?, ?) "
            "ON CONFLICT (origin) DO UPDATE SET seq = excluded.seq",
            (entry.origin, entry.seq),
        )
        store.execute(
            "INSERT OR REPLACE INTO last_tag (origin, tag) VALUES (?, ?)",
            (entry.origin, str(fields["body"].get("tag", ""))),
        )

    def flush(self, store: LogStore) -> None:
        pass

    def discard(self) -> None:
        pass


def test_the_unique_index_an_upsert_needs_gone_fails_the_catch_up_and_blames_no_entry(
    make_store: Callable[..., LogStore],
) -> None:
    """Someone drops the unique index an upsert names: the catch-up of five notes the town
    signed with its own key fails whole with `store.schema` and sets aside no entry (before:
    each was quarantined, one at a time — PostgreSQL 42P10, SQLite "ON CONFLICT clause does
    not match"); with the index back, each note is projected once."""
    _key_gone(make_store(Latest()), "DROP INDEX latest_origin",
              "CREATE UNIQUE INDEX latest_origin ON latest (origin)")  # fmt: skip


def test_the_primary_key_a_replace_goes_by_gone_fails_the_catch_up_and_blames_no_entry(
    pg_url: str,
) -> None:
    """The same for the primary key an INSERT OR REPLACE goes by (PostgreSQL: the dialect
    finds no key to write `ON CONFLICT (…)` with; SQLite cannot drop a primary key)."""
    _key_gone(PgStore(pg_url, extensions=[Latest()]),
              "ALTER TABLE last_tag DROP CONSTRAINT last_tag_pkey",
              "ALTER TABLE last_tag ADD PRIMARY KEY (origin)")  # fmt: skip


def _key_gone(store: LogStore, drop: str, put_back: str) -> None:
    try:
        store.defer_projections()
        with store.transaction():
            store.insert(chain(signer_for(TOWN), TOWN, 5), NOW)
        store.execute(drop)
        for _ in range(2):  # and again: nothing of the first failure is kept
            with pytest.raises(StoreError) as failed:
                store.catch_up()
            assert failed.value.key == "store.schema"
            said = str(failed.value)
            assert said.startswith("The database lacks a table, column or key this zhibao uses")
            assert "\n" not in said
        assert store.query("SELECT count(*) FROM quarantine") == [(0,)]
        assert store.get_meta("projected") is None
        store.execute(put_back)
        assert store.catch_up() == 0
        assert store.query("SELECT origin, seq FROM latest") == [(TOWN, 5)]
        assert store.query("SELECT count(*) FROM last_tag") == [(1,)]
        assert store.query("SELECT count(*) FROM quarantine") == [(0,)]
    finally:
        store.close()
