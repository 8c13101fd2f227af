"""Materials over HTTP (issue #11): a village's scans reach the town and the city whole and
checked, a result attached at the city reaches the village, through cuts, a `kill -9` and
a slow line, sealed, and never ahead of the case's entries.

Real parts throughout: node homes made as `zhibao init` makes them, `zhibao case ...` as a
subprocess, servers on 127.0.0.1 port 0 (uvicorn in a thread, or `zhibao serve`), the
fault proxy between them.
"""

from __future__ import annotations

import json
import random
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
import tomli_w

from sync.protocol.blobs import CHUNK
from sync.round import RoundSummary, sync_round
from sync.service import ServerThread, watch
from sync.testing.proxy import Fault, FaultProxy, Schedule
from tests.support.servers import zhibao, zhibao_serve
from tests.support.topology import (
    CITY,
    SHIPPED_CATALOGUE,
    TOWN,
    VILLAGE,
    Topology,
    build_topology,
    copy_topology,
    hand_down,
)
from tiers.catalogue import parse_catalogue
from tiers.node import open_home
from tiers.published import publish_items

ITEM = "330782-WS-002"  # 公共场所卫生许可: 上报, received at villages, decided by the city
MB = 1024 * 1024


# --- the network ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Topology:
    """City, town, village, enrolled, the shipped catalogue everywhere: built once."""
    net = build_topology(tmp_path_factory.mktemp("materials"), (CITY, TOWN, VILLAGE))
    items = parse_catalogue(SHIPPED_CATALOGUE.read_bytes(), SHIPPED_CATALOGUE.name)
    with net.open(CITY) as city, net.open(TOWN) as town, net.open(VILLAGE) as village:
        publish_items(city, items)
        hand_down(city, town)
        hand_down(town, village)
    return net


@pytest.fixture
def net(template: Topology, tmp_path: Path) -> Topology:
    return copy_topology(template, tmp_path / "net")


def zb(home: Path, *args: str) -> CompletedProcess[str]:
    done = zhibao(home, *args)
    assert done.returncode == 0, f"zhibao {' '.join(args)}: {done.stderr or done.stdout}"
    return done


def zj(home: Path, *args: str) -> Any:
    return json.loads(zb(home, *args, "--json").stdout)


def settings(home: Path, **values: object) -> None:
    """Set `values` in the [settings] of the node.toml at `home`."""
    path = home / "node.toml"
    data = tomllib.loads(path.read_text("utf-8"))
    data.setdefault("settings", {}).update(values)
    path.write_text(tomli_w.dumps(data), "utf-8")


@contextmanager
def served(net: Topology, node_id: str, *, plain: bool = False) -> Iterator[str]:
    home = net.home(node_id)
    with ServerThread(lambda: open_home(home), plain=plain) as server:
        yield server.url


def sync(net: Topology, node_id: str, url: str, **options: Any) -> RoundSummary:
    """One round of `node_id` with the server at `url` (its parent, behind whatever)."""
    with net.open(node_id) as node:
        return sync_round(node, url, **options)


def scan(path: Path, size: int, seed: int) -> bytes:
    """A file of `size` random bytes (no two runs of it alike): a scanned page."""
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def new_case(net: Topology) -> str:
    home = net.home(VILLAGE)
    return zb(home, "case", "receive", "--item", ITEM, "--applicant", "王建国").stdout.strip()


def states(net: Topology, node_id: str, case_id: str) -> dict[str, str]:
    return {m["file"]: m["state"] for m in zj(net.home(node_id), "case", "materials", case_id)}


def written(net: Topology, node_id: str, case_id: str, name: str, out: Path) -> bytes:
    zb(net.home(node_id), "case", "material", case_id, name, "--out", str(out))
    return out.read_bytes()


# --- both directions -----------------------------------------------------------------------


def test_materials_go_up_to_the_city_and_a_result_comes_down_to_the_village(
    net: Topology, tmp_path: Path
) -> None:
    village, town, city = (net.home(n) for n in (VILLAGE, TOWN, CITY))
    form = scan(tmp_path / "申请表.pdf", 3 * MB + 12_345, seed=1)
    case_id = new_case(net)
    zb(village, "case", "attach", case_id, str(tmp_path / "申请表.pdf"))
    zb(village, "case", "forward", case_id)
    with served(net, CITY) as city_url, served(net, TOWN) as town_url:
        summary = sync(net, VILLAGE, town_url)
        assert (summary.materials_sent, summary.materials_left) == (1, 0), summary
        assert summary.materials_sent_bytes == len(form)
        assert states(net, TOWN, case_id) == {"申请表.pdf": "here"}
        zb(town, "case", "accept", case_id)
        zb(town, "case", "forward", case_id)
        assert sync(net, TOWN, city_url).materials_sent == 1
        assert states(net, CITY, case_id) == {"申请表.pdf": "here"}
        assert written(net, CITY, case_id, "申请表", tmp_path / "at-city") == form

        zb(city, "case", "accept", case_id)
        licence = scan(tmp_path / "许可证.pdf", MB + 7, seed=2)
        zb(city, "case", "attach", case_id, str(tmp_path / "许可证.pdf"), "--material", "许可证")
        down = sync(net, TOWN, city_url)
        assert (down.materials_received, down.materials_received_bytes) == (1, len(licence))
        assert sync(net, VILLAGE, town_url).materials_received == 1
    assert states(net, VILLAGE, case_id) == {"申请表.pdf": "here", "许可证.pdf": "here"}
    assert written(net, VILLAGE, case_id, "许可证", tmp_path / "at-village") == licence
