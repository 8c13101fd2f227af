"""A real city for the desk's browser tests, built and synced the way people do it: every
node made with `zhibao init` and enrolled by its parent with `zhibao node enroll`, the
catalogue imported at the city and pulled down, cases recorded by villages and towns with
`zhibao case …`, every log carried up by `zhibao sync` over HTTP to real `zhibao serve`
processes. The village 330782001201 is enrolled as `<script>alert(1)</script>` and one of
its applicants is called that too. Then headless Chromium (Debian's `chromium`, driven by
Playwright; no browser is downloaded) against the city's `zhibao serve`.

Without chromium the tests skip, saying why, unless we are root or on CI: `scripts/test`
installs it there, so missing it is a failure, never a skip.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest

from tests.integration.test_desk import EVIL, PASSWORD, zb
from tests.support.servers import zhibao_serve
from tests.support.topology import (
    CITY,
    NAMES,
    SHIPPED_CATALOGUE,
    TOWN,
    TOWN_B,
    VILLAGE,
    VILLAGE_2,
    VILLAGE_B,
)
from tests.support.topology import name_of as topology_name

PERIOD = "2025-10"  # the month the cases below happened in
ROOT = Path(__file__).resolve().parents[2]
NODES = (CITY, TOWN, TOWN_B, VILLAGE, VILLAGE_2, VILLAGE_B)
PARENT = {TOWN: CITY, TOWN_B: CITY, VILLAGE: TOWN, VILLAGE_2: TOWN, VILLAGE_B: TOWN_B}
ADMIN = "ana"
T = TypeVar("T")


def name_of(node_id: str) -> str:
    """The name each node is enrolled under: the hostile village's is a script tag."""
    return EVIL if node_id == VILLAGE else topology_name(node_id)


@dataclass
class City:
    """The city's home and what was recorded: case ids by tag and the applicants' names
    (none may show without a login)."""

    home: Path
    cases: dict[str, str] = field(default_factory=dict)
    applicants: set[str] = field(default_factory=set)


def chromium_path() -> str:
    """Debian's chromium, or a skip saying why (a failure as root or on CI, where
    `scripts/test` installs it)."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() == 0 or os.environ.get("CI"):
        pytest.fail("chromium is missing: scripts/test installs it as root "
                    "(apt-get install -y chromium fonts-wqy-microhei)")  # fmt: skip
    pytest.skip("no chromium and not root: install Debian's chromium (sudo apt-get "
                "install chromium fonts-wqy-microhei) to run tests/browser")  # fmt: skip


def artifacts() -> Path:
    """Where the screenshots go: $ZHIBAO_ARTIFACTS, else artifacts/ in the repository
    (ignored by git), in a folder `browser`."""
    where = Path(os.environ.get("ZHIBAO_ARTIFACTS") or ROOT / "artifacts") / "browser"
    where.mkdir(parents=True, exist_ok=True)
    return where


def _together(calls: list[Callable[[], T]]) -> list[T]:
    """Run independent `zhibao` commands side by side (different homes); their results."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return [done.result() for done in [pool.submit(call) for call in calls]]


def _init(homes: dict[str, Path], root_key: str, node_id: str) -> dict[str, str]:
    """`zhibao init` of a town or village; its `node show`."""
    home = homes[node_id]
    tier = "town" if len(node_id) == 9 else "village"
    zb(home, "init", "--tier", tier, "--node-id", node_id, "--name", topology_name(node_id),
       "--parent", PARENT[node_id], "--root-key", root_key)  # fmt: skip
    keys: dict[str, str] = json.loads(zb(home, "node", "show", "--json"))
    return keys


def _sync(homes: dict[str, Path], url: dict[str, str], nodes: tuple[str, ...]) -> None:
    """`zhibao sync --peer PARENT` of `nodes`, side by side."""
    _together([partial(zb, homes[n], "sync", "--peer", url[PARENT[n]]) for n in nodes])


def build_city(base: Path) -> City:
    """The network of the module docstring, synced up; ana an admin of the city's desk."""
    homes = {node_id: base / node_id for node_id in NODES}
    zb(homes[CITY], "init", "--tier", "city", "--node-id", CITY, "--name", NAMES[CITY])
    root_key = json.loads(zb(homes[CITY], "node", "show", "--json"))["public_key"]
    made = _together([partial(_init, homes, root_key, n) for n in NODES[1:]])
    for node_id, keys in zip(NODES[1:], made, strict=True):
        zb(homes[PARENT[node_id]], "node", "enroll", "--node-id", node_id, "--name",
           name_of(node_id), "--public-key", keys["public_key"], "--seal-key",
           keys["seal_key"])  # fmt: skip
    zb(homes[CITY], "catalogue", "import", str(SHIPPED_CATALOGUE))
    city = City(homes[CITY])

    def case(node_id: str, tag: str, item: str, applicant: str, at: str) -> str:
        city.cases[tag] = zb(homes[node_id], "case", "accept", "--item", item, "--applicant",
                             applicant, "--at", at).strip()  # fmt: skip
        city.applicants.add(applicant)
        return city.cases[tag]

    def step(node_id: str, *args: str) -> None:
        zb(homes[node_id], "case", *args)

    with zhibao_serve(homes[CITY]) as up, zhibao_serve(homes[TOWN]) as town, \
            zhibao_serve(homes[TOWN_B]) as town_b:  # fmt: skip
        url = {CITY: up.url, TOWN: town.url, TOWN_B: town_b.url}
        _sync(homes, url, (TOWN, TOWN_B))  # the catalogue and the keys come down
        _sync(homes, url, (VILLAGE, VILLAGE_2, VILLAGE_B))
        # the hostile village: one case forwarded to its town (decided there), one left
        # open for an applicant named like a script (long overdue by now: red)
        forwarded = case(VILLAGE, "forwarded", "330782-JT-003", "张三", "2025-10-09T09:00")
        step(VILLAGE, "forward", forwarded, "--at", "2025-10-09T10:00")
        case(VILLAGE, "hostile", "330782-JT-003", EVIL, "2025-10-20T10:00")
        case(VILLAGE_2, "open", "330782-MZ-002", "李四", "2025-10-15T09:00")
        done = case(VILLAGE_B, "village_b", "330782-SC-001", "赵六", "2025-10-21T09:00")
        step(VILLAGE_B, "forward", done, "--at", "2025-10-21T09:30")
        quick = case(TOWN, "town", "330782-RS-001", "王五", "2025-10-10T09:00")
        step(TOWN, "complete", quick, "--result", "approved", "--at", "2025-10-10T09:20")
        step(TOWN, "deliver", quick, "--at", "2025-10-10T09:30")
        step(TOWN, "rate", quick, "--score", "1", "--at", "2025-10-10T09:35")
        case(TOWN_B, "town_b", "330782-JT-003", "钱七", "2025-10-22T09:00")
        _sync(homes, url, (VILLAGE, VILLAGE_2, VILLAGE_B))
        step(TOWN, "accept", forwarded, "--at", "2025-10-10T09:00")
        step(TOWN, "complete", forwarded, "--result", "approved", "--at", "2025-10-13T10:00")
        step(TOWN_B, "accept", done, "--at", "2025-10-22T10:00")
        step(TOWN_B, "complete", done, "--result", "denied", "--at", "2025-10-23T10:00")
        _sync(homes, url, (TOWN, TOWN_B))
    zb(homes[CITY], "user", "add", ADMIN, "--role", "admin", stdin=PASSWORD + "\n")
    return city


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_path()


@pytest.fixture(scope="module")
def city(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> City:
    """The city of `build_city`, built once per run (the first pytest-xdist worker to ask
    builds it, the others wait for it), copied for each module that uses it."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    built, record = shared / "browser-city", shared / "browser-city.json"
    with (shared / "browser-city.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            made = build_city(built)
            record.write_text(json.dumps({"cases": made.cases,
                                          "applicants": sorted(made.applicants)}))  # fmt: skip
    held = json.loads(record.read_text())
    home = Path(shutil.copytree(built / CITY, tmp_path_factory.mktemp("browser-city") / CITY))
    return City(home, held["cases"], set(held["applicants"]))


@pytest.fixture(scope="module")
def served(city: City) -> Iterator[str]:
    """The city's `zhibao serve` (sync and desk), its URL."""
    with zhibao_serve(city.home) as server:
        yield server.url
