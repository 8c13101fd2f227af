"""The `city_engine` fixture: every city a test builds — a session network's copy, the case
helpers' network, `zhibao init` in a subprocess — is on the engine the test runs with, and
each copy of a network has a database of its own."""

from __future__ import annotations

import json
from pathlib import Path

from sync.node_store import store_kind
from tests.conftest import MakeTopology
from tests.helpers_cases import network
from tests.support.servers import zhibao
from tests.support.topology import CITY, TOWN, append_notes


def test_every_city_lands_on_the_engine_of_the_test(
    city_engine: str, make_topology: MakeTopology, tmp_path: Path
) -> None:
    first, second = make_topology(), make_topology()
    with first.open(CITY) as one, second.open(CITY) as other, first.open(TOWN) as town:
        assert store_kind(one.config) == store_kind(other.config) == city_engine
        assert store_kind(town.config) == "sqlite"  # a town never follows $ZHIBAO_STORE
        if city_engine == "postgresql":
            assert one.config.store != other.config.store  # a copy each
        held = other.store.head(CITY)
        append_notes(one, 3)
        assert one.store.head(CITY)[0] == held[0] + 3
        assert other.store.head(CITY) == held  # the copies share nothing
    with network(tmp_path / "cases") as net, network(tmp_path / "more") as more:
        assert store_kind(net.city.config) == store_kind(more.city.config) == city_engine
        if city_engine == "postgresql":  # two cities built by helpers: two databases
            assert net.city.config.store != more.city.config.store


def test_a_city_made_by_the_cli_lands_on_the_engine_of_the_test(
    city_engine: str, tmp_path: Path
) -> None:
    home = tmp_path / "cli-city"
    done = zhibao(home, "init", "--tier", "city", "--node-id", "330783", "--name", "x")
    assert done.returncode == 0, done.stderr
    status = json.loads(zhibao(home, "status", "--json").stdout)
    assert status["store"] == city_engine


def test_two_cities_made_by_the_cli_in_one_test_get_a_database_each(
    city_engine: str, tmp_path: Path
) -> None:
    stores = []
    for n, city in enumerate(("330783", "330784")):
        home = tmp_path / f"city{n}"
        done = zhibao(home, "init", "--tier", "city", "--node-id", city, "--name", city)
        assert done.returncode == 0, done.stderr
        status = json.loads(zhibao(home, "status", "--json").stdout)
        assert status["store"] == city_engine and status["heads"].get(city) is not None
        stores.append((home / "node.toml").read_text("utf-8"))
    assert stores[0] != stores[1]
