"""The network, cases and scans bench/materials.py and bench/_materials_line.py build on."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import httpx
import tomli_w
from _common import (
    CITY,
    ROOT,
    TOWN,
    VILLAGE,
    Server,
    count_rows,
    make_network,
    snapshot,
)

from sync.round import RoundSummary, sync_round
from tiers import materials
from tiers.cases import service
from tiers.node import open_home

MIB = 1024 * 1024
ITEM = "330782-WS-002"  # 公共场所卫生许可: 上报, received at villages, decided by the city
TIME_BOX = 3600  # material_seconds_per_round where a part measures the transfer itself


def build(base: Path) -> dict[str, Path]:
    """City, town, village enrolled; the town and the village have had one round each (the
    enrolments and the catalogue came down)."""
    homes = make_network(base / "pristine")
    with Server(homes[CITY]) as city:
        one_round(homes[TOWN], city.url)
        with Server(homes[TOWN]) as town:
            one_round(homes[VILLAGE], town.url)
    return homes


def fresh(homes: dict[str, Path], to: Path) -> dict[str, Path]:
    return {node_id: snapshot(home, to / home.name) for node_id, home in homes.items()}


def settings(home: Path, **values: object) -> None:
    """Set `values` in the [settings] of the node.toml at `home`."""
    path = home / "node.toml"
    data = tomllib.loads(path.read_text("utf-8"))
    data.setdefault("settings", {}).update(values)
    path.write_text(tomli_w.dumps(data), "utf-8")


def one_round(home: Path, url: str, transport: httpx.BaseTransport | None = None) -> RoundSummary:
    node = open_home(home)
    try:
        return sync_round(
            node, url, transport=transport or httpx.HTTPTransport(verify=False), timeout=120.0
        )
    finally:
        node.close()


def new_cases(home: Path, count: int) -> list[str]:
    """`count` cases received at the village (收件), as `zhibao case receive` records them."""
    node = open_home(home)
    try:
        return [
            service.receive(node, ITEM, service.Applicant(f"王建国{i}"), ["申请表", "营业执照"])
            for i in range(count)
        ]
    finally:
        node.close()


def write_scan(path: Path, size: int, seed: int) -> Path:
    """A file of `size` random bytes, written 1 MiB at a time."""
    rng = random.Random(seed)
    with open(path, "wb") as out:
        left = size
        while left:
            piece = rng.randbytes(min(MIB, left))
            out.write(piece)
            left -= len(piece)
    return path


def attach_file(home: Path, case_id: str, path: Path) -> str:
    """Attach one file in process; its SHA-256."""
    node = open_home(home)
    try:
        with open(path, "rb") as source:
            return str(materials.attach(node, case_id, [(path, source)])[0]["sha256"])
    finally:
        node.close()


GC_EACH_PUT = """
import gc, sys
import sync.blob_transfer as transfer
body = transfer._put_body
def collected(*args, **kwargs):
    gc.collect()
    return body(*args, **kwargs)
transfer._put_body = collected
from cli.main import main
sys.argv[0] = "zhibao"
main()
"""  # `zhibao` with a full garbage collection before each put's body is made (a diagnosis)


def run_zhibao(
    args: list[str], out: Path, *, gc_each_put: bool = False
) -> tuple[int, float, float]:
    """`zhibao ARGS` as a child process (stdout and stderr to `out`): (exit code, wall
    seconds, its own peak RSS in MiB from wait4, so no other child can blur it)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    env.pop("ZHIBAO_HOME", None)
    program = ["-c", GC_EACH_PUT] if gc_each_put else ["-m", "cli.main"]
    started = time.perf_counter()
    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, *program, *args], stdout=sink, stderr=sink, env=env
        )
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - started, usage.ru_maxrss / 1024


def held(home: Path, sha: str) -> bool:
    return bool(count_rows(home, "SELECT COUNT(*) FROM blobs WHERE sha256 = ?", (sha,)))


def wait_for(condition: Callable[[], bool], timeout: float = 120.0, every: float = 0.02) -> float:
    """Poll `condition()` until true; the perf_counter time it became true."""
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"timed out after {timeout} s")
        time.sleep(every)
    return time.perf_counter()
