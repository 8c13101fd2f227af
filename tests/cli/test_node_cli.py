"""`zhibao init` and `zhibao node show` as a newcomer meets them, run as the real program:
labels in the reader's language, the enrolment command `node show` prints (run as printed),
a --parent-url no sync could use refused, a home that lost node.db refused."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from cli.common import display_width
from sync.node import NODE_DB
from sync.protocol.errors import HomeError
from tests.support.servers import ok, refused
from tests.support.topology import CITY, TOWN, Topology
from tiers.node import open_home

TOWN_NAME = "稠城街道便民服务中心"
pytestmark = pytest.mark.usefixtures("city_engine")  # every city here: SQLite, then PostgreSQL




def init_town(home: Path, root_key: str, *extra: str, name: str = TOWN_NAME) -> None:
    ok(home, "init", "--tier", "town", "--node-id", TOWN, "--name", name, "--parent", CITY,
       "--root-key", root_key, *extra)  # fmt: skip


@pytest.fixture
def city(tmp_path: Path) -> tuple[Path, str]:
    home = tmp_path / "city"
    ok(home, "init", "--tier", "city", "--node-id", CITY, "--name", "义乌市行政服务中心")
    return home, json.loads(ok(home, "node", "show", "--json"))["public_key"]


def test_node_show_labels_in_the_readers_language(city: tuple[Path, str], tmp_path: Path) -> None:
    home, key = city
    town = tmp_path / "town"
    init_town(town, key, "--parent-url", "http://127.0.0.1:8750")
    english = ok(town, "node", "show").splitlines()
    assert [line.split("  ")[0] for line in english[:8]] == [
        "Node id", "Tier", "Name", "Parent", "Public key", "Seal key", "Parent's address",
        "Root key (the city's)",
    ]  # fmt: skip
    chinese = ok(town, "node", "show", lang="zh").splitlines()
    assert [line.split()[0] for line in chinese[:8]] == [
        "节点编号", "层级", "名称", "上级节点", "身份公钥", "加密公钥", "上级地址",
        "根公钥（市级）",
    ]  # fmt: skip
    assert chinese[0].split() == ["节点编号", TOWN]
    assert chinese[7].split()[1] == key
    # the values start in one column, a Chinese character taking two
    starts = set()
    for line in chinese[:8]:
        label, value = line.split()[:2]
        starts.add(display_width(line[: line.index(value, len(label))]))
    assert starts == {display_width("根公钥（市级）") + 2}
    shown = json.loads(ok(town, "node", "show", "--json"))  # JSON unchanged: keys in English
    assert set(shown) == {"node_id", "tier", "name", "parent_id", "public_key", "seal_key"}
    city_lines = ok(home, "node", "show").splitlines()
    assert city_lines[-1] == f"Towns and villages pin this key: `zhibao init … --root-key {key}`"


def test_node_show_prints_the_enrolment_its_parent_runs(
    city: tuple[Path, str], tmp_path: Path
) -> None:
    home, key = city
    town = tmp_path / "town"
    init_town(town, key)
    lines = ok(town, "node", "show").splitlines()
    assert lines[-2] == f"To enrol this node, run at its parent ({CITY}):"
    words = shlex.split(lines[-1])
    assert words[:3] == ["zhibao", "node", "enroll"]
    ok(home, *words[1:])  # as printed, at the city
    shown = json.loads(ok(town, "node", "show", "--json"))
    enrolled = [e for e in json.loads(ok(home, "log", "show", "--json"))
                if e["type"] == "node.enrolled" and e["body"]["node_id"] == TOWN]  # fmt: skip
    assert len(enrolled) == 1
    body = enrolled[0]["body"]
    assert (body["name"], body["public_key"], body["seal_key"]) == (
        TOWN_NAME, shown["public_key"], shown["seal_key"]
    )  # fmt: skip


def test_node_show_keeps_a_hostile_name_inert(city: tuple[Path, str], tmp_path: Path) -> None:
    _, key = city
    town = tmp_path / "town"
    name = "镇\x1b[2J\u202e<script>=cmd|' /C calc'!A0"
    init_town(town, key, name=name)
    out = ok(town, "node", "show")
    assert "\x1b" not in out and "\u202e" not in out
    assert "镇\\x1b[2J\\u202e<script>" in out
    hint = out.splitlines()[-1]
    assert shlex.split(hint)[6] == "镇\\x1b[2J\\u202e<script>=cmd|' /C calc'!A0"  # one word


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("notaurl", id="no-scheme"),
        pytest.param("ftp://city.example", id="not-http"),
        pytest.param("http://", id="no-host"),
        pytest.param("http://city.example:99999", id="bad-port"),
        pytest.param("http://city example:8750", id="space"),
        pytest.param("http://admin:pw@city.example", id="credentials"),
        pytest.param("http://city.example/?x=1", id="query"),
    ],
)
def test_init_refuses_a_parent_url_no_sync_could_use(
    city: tuple[Path, str], tmp_path: Path, url: str
) -> None:
    _, key = city
    town = tmp_path / "town"
    args = ["init", "--tier", "town", "--node-id", TOWN, "--name", TOWN_NAME, "--parent", CITY,
            "--root-key", key, "--parent-url", url]  # fmt: skip
    line = refused(town, *args)
    assert f"--parent-url {url} is not an address a node can sync with" in line
    assert "上级 `zhibao serve` 的地址" in refused(town, *args, lang="zh")
    assert not town.exists()  # nothing written


@pytest.mark.parametrize("url", ["http://127.0.0.1:8750", "https://city.example/zhibao/"])
def test_init_takes_a_parent_url_sync_can_use(
    city: tuple[Path, str], tmp_path: Path, url: str
) -> None:
    _, key = city
    init_town(tmp_path / "town", key, "--parent-url", url)
    assert f"Parent's address       {url}" in ok(tmp_path / "town", "node", "show")


def test_home_with_keys_but_no_database_is_refused(topology: Topology) -> None:
    home = topology.home(TOWN)
    for name in (NODE_DB, NODE_DB + "-wal", NODE_DB + "-shm"):
        (home / name).unlink(missing_ok=True)
    for command in (("status",), ("case", "list"), ("node", "show"), ("log", "verify")):
        line = refused(home, *command)
        assert f"node.db is missing at {home} (the keys are there)" in line, command
        assert "`zhibao restore`" in line
    assert "缺少 node.db（密钥还在）" in refused(home, "status", lang="zh")
    assert not (home / NODE_DB).exists()  # not silently an empty database
    with pytest.raises(HomeError) as caught:
        open_home(home)
    assert caught.value.key == "node.db_lost"
    open_home(home, rebuild=True).close()  # what `restore` does: a new one, marked restoring
    assert (home / NODE_DB).exists()
    assert json.loads(ok(home, "status", "--json"))["restoring"]
