"""A real streaming replica on loopback (tests/support/pg_standby.py): what the primary
stores, the standby serves once it has replayed it; writing on the standby is refused."""

from __future__ import annotations

import pytest

from sync.pg import PgStore
from sync.protocol import i18n
from sync.protocol.errors import StoreError
from tests.postgres.chains import chain, signer_for
from tests.support.pg_standby import Pair, pg_pair, replicated_database, wait_replayed

__all__ = ["pg_pair"]  # the fixture, imported to be used here

VILLAGE, TOWN = "330782001201", "330782001"
NOW = "2025-10-13T09:00:00+08:00"


def test_replica_serves_entries_written_on_the_primary(pg_pair: Pair) -> None:
    village = chain(signer_for(VILLAGE), VILLAGE, 30)
    town = chain(signer_for(TOWN), TOWN, 3)
    with replicated_database(pg_pair) as (url, standby_url), PgStore(url) as primary:
        with primary.transaction():
            primary.insert(village[:20] + town, NOW)
        wait_replayed(pg_pair)
        with PgStore(standby_url) as standby:
            assert standby.heads() == {VILLAGE: (20, village[19].hash), TOWN: (3, town[2].hash)}
            assert standby.entries(VILLAGE) == village[:20]
            with primary.transaction():  # a later append reaches an open reader too
                primary.insert(village[20:], NOW)
            wait_replayed(pg_pair)
            assert standby.head(VILLAGE) == (30, village[-1].hash)
            assert list(standby.iter_all()) == town + village


def test_replica_refuses_a_write_with_a_clear_error(pg_pair: Pair) -> None:
    village = chain(signer_for(VILLAGE), VILLAGE, 3)
    with replicated_database(pg_pair) as (primary_url, standby_url):
        PgStore(primary_url).close()  # migrated on the primary, replayed on the standby
        wait_replayed(pg_pair)
        with PgStore(standby_url) as standby:
            with pytest.raises(StoreError) as caught, standby.transaction():
                standby.insert(village, NOW)
            assert caught.value.key == "store.pg_read_only"
            assert "read-only replica" in str(caught.value)
            with i18n.speaking("zh"):
                assert "只读副本" in str(caught.value)
            with pytest.raises(StoreError) as meta, standby.transaction():
                standby.set_meta("projected", "1")
            assert meta.value.key == "store.pg_read_only"
            assert standby.heads() == {}


def test_replica_of_an_unmigrated_database_is_refused_not_migrated(pg_pair: Pair) -> None:
    with replicated_database(pg_pair) as (_, standby_url):
        with pytest.raises(StoreError) as caught:
            PgStore(standby_url)  # the primary was never opened by zhibao: no schema
        assert caught.value.key == "store.pg_replica_behind"
