"""The write lock of sync.pg.PgStore (`_begin`): shared by fronts storing pushes, exclusive
for every other writer; a writer that cannot have it in time fails alone and cleanly."""

from __future__ import annotations

import contextlib
import secrets

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from sync.pg import PgStore
from sync.protocol.errors import StoreError
from tests.postgres.chains import chain, signer_for
from tests.support.flushes import Seen

pytestmark = pytest.mark.postgresql

TOWN = "330782001"
NOW = "2025-10-13T09:00:00+08:00"


def test_a_writer_that_waits_too_long_for_the_lock_fails_and_its_connection_goes_on(
    pg_url: str,
) -> None:
    holder, waiter = PgStore(pg_url), PgStore(pg_url)
    try:
        waiter.conn.execute("SET lock_timeout = '200ms'")
        with holder.transaction():  # exclusive: a clerk's command, the projections
            with pytest.raises(StoreError) as busy, waiter.transaction():
                waiter.set_meta("x", "1")
            assert busy.value.key == "store.busy"
            waiter.defer_projections()  # a front: the shared lock waits for it as well
            with pytest.raises(StoreError), waiter.transaction():
                waiter.set_meta("x", "1")
        with waiter.transaction():  # then it writes: no transaction left open, aborted
            waiter.set_meta("x", "2")
        assert holder.get_meta("x") == "2"
    finally:
        holder.close()
        waiter.close()


def test_fronts_share_the_lock(pg_url: str) -> None:
    one, two = PgStore(pg_url), PgStore(pg_url)
    try:
        one.defer_projections()
        two.defer_projections()
        two.conn.execute("SET lock_timeout = '200ms'")
        with one.transaction():
            one.set_meta("a", "1")
            with two.transaction():  # not blocked by the other front
                two.set_meta("b", "1")
        assert one.get_meta("b") == "1" and two.get_meta("a") == "1"
    finally:
        one.close()
        two.close()


def test_opening_the_store_does_not_wait_for_a_front_writing(pg_url: str) -> None:
    """The projections' tables are made once (their DDL's digest in meta): a command that
    opens the store while a front holds rows of them does not queue behind it (CREATE INDEX
    IF NOT EXISTS takes a share lock on its table before it finds the index)."""
    from tiers.node import extensions

    first = PgStore(pg_url, extensions=extensions())
    try:
        with first.transaction():  # a front, mid-write on a projection's table
            first.execute("INSERT INTO meta (key, value) VALUES ('x', '1')")
            first.execute("LOCK TABLE cases IN ROW EXCLUSIVE MODE")
            opened = PgStore(pg_url, extensions=extensions())  # (waiting, it would fail
            opened.close()  # store.busy after lock_timeout: it is this transaction it waits on)
    finally:
        first.close()


def test_a_role_refused_a_projection_s_table_fails_the_catch_up_and_blames_no_entry(
    pg_url: str,
) -> None:
    """The operator's grants leave the city's role without INSERT on one projection's
    table: a catch-up fails whole with `store.pg_denied`, one line saying what to do, and
    quarantines no entry (it is not theirs to blame: before, every entry of the chunk was
    set aside as unusable, one at a time); granted again, it projects each entry once."""
    role, password = "clerk_" + secrets.token_hex(4), secrets.token_hex(8)
    owner = PgStore(pg_url, extensions=[Seen()])
    try:
        owner.defer_projections()
        with owner.transaction():  # five notes signed by the town's own key
            owner.insert(chain(signer_for(TOWN), TOWN, 5), NOW)
        for grant in (
            f"CREATE ROLE {role} LOGIN PASSWORD '{password}'",
            f"GRANT USAGE, CREATE ON SCHEMA public TO {role}",
            f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}",
            f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}",
            f"REVOKE INSERT ON seen FROM {role}",
        ):
            owner.conn.execute(grant)
        url = make_conninfo(pg_url, user=role, password=password)
        with PgStore(url, extensions=[Seen()]) as clerk:
            with pytest.raises(StoreError) as denied:
                clerk.catch_up()
            assert denied.value.key == "store.pg_denied"
            assert "permission denied" in str(denied.value) and "\n" not in str(denied.value)
            assert owner.query("SELECT count(*) FROM quarantine") == [(0,)]
            assert owner.get_meta("projected") is None
            owner.conn.execute(f"GRANT INSERT ON seen TO {role}")
            assert clerk.catch_up() == 0
        assert owner.query("SELECT count(*) FROM seen") == [(5,)]
        assert owner.query("SELECT count(*) FROM quarantine") == [(0,)]
    finally:
        with contextlib.suppress(psycopg.Error):
            owner.conn.execute(f"DROP OWNED BY {role}")
            owner.conn.execute(f"DROP ROLE {role}")
        owner.close()
