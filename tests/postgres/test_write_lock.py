"""The write lock of sync.pg.PgStore (`_begin`): shared by fronts storing pushes, exclusive
for every other writer; a writer that cannot have it in time fails alone and cleanly."""

from __future__ import annotations

import pytest

from sync.pg import PgStore
from sync.protocol.errors import StoreError

pytestmark = pytest.mark.postgresql


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
