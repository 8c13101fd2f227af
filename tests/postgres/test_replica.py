"""A real streaming replica on loopback (tests/support/pg_standby.py): what the primary
stores, the standby serves once it has replayed it; writing on the standby is refused."""

from __future__ import annotations

import json
import shutil
import tomllib
from contextlib import closing
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit, urlunsplit

import pytest

from cli.common import json_text
from sync import blob_index, forks, trust
from sync.clock import Clock
from sync.keyfiles import NODE_KEY, SEAL_KEY, read_seal_secret, read_signer
from sync.node import Node
from sync.node_store import PASSFILE
from sync.pg import PgStore
from sync.protocol import i18n
from sync.protocol.entry import SignedEntry
from sync.protocol.errors import StoreError
from sync.store import Extension, Store
from tests.postgres.chains import chain, signer_for
from tests.support.pg_standby import Pair, pg_pair, replicated_database, wait_replayed
from tests.support.postgres import _free_port
from tests.support.servers import zhibao
from tests.support.topology import CITY, TOWN
from tests.tiers.test_figures import PERSON, hand_built_month, push, small_city, t
from tiers import node as tiers_node
from tiers import reader
from tiers.cases import service
from tiers.city.stats import compute_stats
from tiers.desk import figures
from tiers.figures import parse_period
from tiers.node import open_home
from tiers.reader import SETTING

__all__ = ["pg_pair"]  # the fixture, imported to be used here

VILLAGE = "330782001201"
NOW = "2025-10-13T09:00:00+08:00"


def test_replica_serves_entries_written_on_the_primary(pg_pair: Pair) -> None:
    village = chain(signer_for(VILLAGE), VILLAGE, 30)
    town = chain(signer_for(TOWN), TOWN, 3)
    with replicated_database(pg_pair) as (url, standby_url), PgStore(url) as primary:
        with primary.transaction():
            primary.insert(village[:20] + town, NOW)
        wait_replayed(pg_pair)
        with closing(PgStore(standby_url)) as standby:
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
        with closing(PgStore(standby_url)) as standby:
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


# --- statistics and the desk read from the replica (node.toml store_replica) ---------------


def _extensions() -> list[Extension]:
    """What a city's store projects (sync.node's own, then the tiers')."""
    return [trust.Trust(), forks.ForkDecisions(), blob_index.BlobState(), blob_index.BlobRefs(),
            *tiers_node.extensions()]  # fmt: skip


def _copy_city(home: Path, url: str) -> None:
    """The city's log (every origin, in the order the city stored it) into the database at
    `url`, projected there as the city projects it."""
    with open_home(home) as city, closing(PgStore(url, extensions=_extensions(), owner=CITY)) as pg:
        # what `init` records outside the log: the root key, pinned, with the city's name
        trust.pin_root(cast(Store, pg), CITY, bytes.fromhex(city.config.root_key), city.config.name)
        rows = city.store.query("SELECT raw, sig, hash, origin, seq, type FROM entries ORDER BY id")
        with pg.transaction():
            pg.insert([SignedEntry(*row) for row in rows], NOW)
        pg.catch_up()
        assert pg.heads() == city.store.heads()


def _one_more_case(town_home: Path, url: str) -> None:
    """An October case accepted at the town, stored in the database at `url` only."""
    with (
        open_home(town_home) as town,
        closing(PgStore(url, extensions=_extensions(), owner=CITY)) as pg,
    ):
        held = pg.head(TOWN)[0]
        service.accept(town, item_code="A1", applicant=PERSON, at=t("10-20"))
        with pg.transaction():
            pg.insert(town.store.entries(TOWN, after=held), NOW)
        pg.catch_up()


def _set_replica(home: Path, url: str) -> None:
    """node.toml `store_replica = url` (no password), the password in `store.pgpass`."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[1]
    (home / PASSFILE).write_text(
        f"{parts.hostname}:{parts.port}:{parts.path.lstrip('/')}:{parts.username}:"
        f"{parts.password}\n"
    )
    (home / PASSFILE).chmod(0o600)
    plain = urlunsplit(parts._replace(netloc=f"{parts.username}@{host}"))
    toml = home / "node.toml"
    text = toml.read_text("utf-8")
    assert text.rstrip().splitlines()[-1] == "[settings]", text
    toml.write_text(text.rstrip("\n") + f'\n{SETTING} = "{plain}"\n', "utf-8")


@pytest.fixture(scope="module")
def october(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """City, town and village homes after tests/tiers/test_figures.py's hand-built October."""
    base = tmp_path_factory.mktemp("october")
    with small_city(base) as net:
        hand_built_month(net)
    return base


def test_stats_read_from_the_replica_equal_the_primary(
    pg_pair: Pair, october: Path, tmp_path: Path
) -> None:
    shutil.copytree(october, tmp_path / "net")
    home = tmp_path / "net" / CITY
    asked = ("stats", "--period", "2025-10", "--by", "node", "--json")
    with replicated_database(pg_pair) as (primary_url, standby_url):
        _copy_city(home, primary_url)
        _one_more_case(tmp_path / "net" / TOWN, primary_url)  # the home's node.db lacks it
        with closing(PgStore(primary_url)) as primary:
            on_primary = compute_stats(
                cast(Store, primary), parse_period("2025-10"), "node", date.today()
            )
        wait_replayed(pg_pair)
        own = zhibao(home, *asked)
        _set_replica(home, standby_url)
        read = zhibao(home, *asked)
        assert read.returncode == 0 and own.returncode == 0, read.stderr + own.stderr
        assert read.stderr == ""  # the replica was read: no warning
        assert json.loads(read.stdout) == json.loads(json_text(on_primary))
        with open_home(home) as node:  # the desk's figures: the same, from the replica
            replica = reader.of(node)
            assert replica is not node.store
            assert urlsplit(replica.url).port == urlsplit(standby_url).port
            assert figures.month(node, "2025-10", "node") == json.loads(read.stdout)
    accepted = {row["key"]: row["accepted"] for row in json.loads(read.stdout)["rows"]}
    assert accepted[TOWN] == 10  # the month's 9 and the case stored on the primary only
    assert {row["key"]: row["accepted"] for row in json.loads(own.stdout)["rows"]}[TOWN] == 9


def test_stats_fall_back_to_the_primary_when_the_replica_is_down(
    october: Path, tmp_path: Path
) -> None:
    shutil.copytree(october / CITY, tmp_path / CITY)
    home = tmp_path / CITY
    asked = ("stats", "--period", "2025-10", "--json")
    own = zhibao(home, *asked)
    down = f"postgresql://zhibao:pw@127.0.0.1:{_free_port()}/zhibao_330782"  # nobody listens
    _set_replica(home, down)
    read = zhibao(home, *asked)
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout) == json.loads(own.stdout)
    (line,) = read.stderr.splitlines()
    assert line.startswith("zhibao: the replica postgresql://zhibao@127.0.0.1:")
    assert "the figures are read from the primary" in line and ":pw@" not in line


def test_desk_reads_the_primary_while_the_replica_is_down(
    october: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(october / CITY, tmp_path / CITY)
    _set_replica(tmp_path / CITY, f"postgresql://zhibao:pw@127.0.0.1:{_free_port()}/zhibao")
    with open_home(tmp_path / CITY) as node:
        assert reader.of(node) is node.store
        assert reader.of(node) is node.store  # not tried again within RETRY_S: one line
        shown = figures.month(node, "2025-10", "node")
    (line,) = capsys.readouterr().err.splitlines()
    assert "the figures are read from the primary" in line and ":pw@" not in line
    accepted = {row["key"]: row["accepted"] for row in shown["rows"]}
    assert accepted[TOWN] == 9


def _city_on(url: str, home: Path, settings: dict[str, str]) -> Node:
    """The city of `home` with its store in the database at `url`: its root pinned, its own
    log (enrolments, catalogue) appended there; `settings` added to its node.toml ones."""
    with open_home(home) as sqlite_city:
        config = replace(sqlite_city.config, settings={**sqlite_city.config.settings, **settings})
        own = sqlite_city.store.entries(CITY)
    store = PgStore(url, extensions=_extensions(), owner=CITY)
    trust.pin_root(cast(Store, store), CITY, bytes.fromhex(config.root_key), config.name)
    with store.transaction():
        store.insert(own, NOW)
    signer, seal = read_signer(home / NODE_KEY), read_seal_secret(home / SEAL_KEY)
    return Node(home, config, cast(Store, store), signer, seal, Clock())


def test_city_on_the_primary_desk_figures_from_the_standby(
    pg_pair: Pair, october: Path, tmp_path: Path
) -> None:
    shutil.copytree(october, tmp_path / "net")
    net = tmp_path / "net"
    with open_home(net / CITY) as sqlite_city:
        expected = compute_stats(sqlite_city.store, parse_period("2025-10"), "node", date.today())
    with replicated_database(pg_pair) as (primary_url, standby_url):
        _set_replica(net / CITY, standby_url)  # store.pgpass and node.toml's setting
        replica_setting = {SETTING: tomllib.loads((net / CITY / "node.toml").read_text())[
            "settings"][SETTING]}  # fmt: skip
        with _city_on(primary_url, net / CITY, replica_setting) as city:
            with open_home(net / TOWN) as town:  # the town's subtree, pushed as a sync does
                assert push(town, city, t("11-01")) > 0
            city.store.catch_up()
            on_primary = compute_stats(city.store, parse_period("2025-10"), "node", date.today())
            assert on_primary == expected  # the city on PostgreSQL counts as on SQLite
            wait_replayed(pg_pair)
            replica = reader.of(city)
            assert replica is not city.store
            assert urlsplit(replica.url).port == urlsplit(standby_url).port
            shown = figures.month(city, "2025-10", "node")
            assert shown == json.loads(json_text(on_primary))
            assert {key[0] for key in figures.CACHE.held} >= {replica.path}  # read there
            assert city.store.path not in {key[0] for key in figures.CACHE.held}
            with open_home(net / TOWN) as town:  # one more case: the standby follows
                service.accept(town, item_code="A1", applicant=PERSON, at=t("10-21"))
                push(town, city, t("11-02"))
            city.store.catch_up()
            wait_replayed(pg_pair)
            later = figures.month(city, "2025-10", "node")
    accepted = {row["key"]: row["accepted"] for row in later["rows"]}
    assert accepted[TOWN] == 10
