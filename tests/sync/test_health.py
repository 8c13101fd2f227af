"""`GET /v1/health` (DESIGN §8) and serve's log (issue #13, part 5).

The health check needs no signature and says exactly: node id, version, last sync and
backlog — no centre name, no parent URL, no error text, nothing of a case. `zhibao serve`
stamps every line of its log with the time, uvicorn's own lines included, and its
background rounds are recorded where a separate `zhibao status` reads them.
"""

from __future__ import annotations

import json
import re
import socket
import time
import tomllib
from datetime import datetime
from importlib import metadata
from pathlib import Path

import httpx
import pytest
import tomli_w

from sync.round import sync_round
from tests.conftest import MakeTopology
from tests.support.servers import Served, serve_in_thread, zhibao, zhibao_serve
from tests.support.topology import CITY, TOWN, VILLAGE, Topology, append_notes

HEALTH_KEYS = {"ok", "node_id", "version", "last_sync", "backlog"}
STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d (zhibao|uvicorn): ")
WAIT = 20.0  # seconds a condition may take to show in a server's log (never slept away)


@pytest.fixture
def net(make_topology: MakeTopology) -> Topology:
    return make_topology([VILLAGE])


def _set_parent_url(home: Path, url: str) -> None:
    path = home / "node.toml"
    settings = tomllib.loads(path.read_text("utf-8"))
    path.write_text(tomli_w.dumps({**settings, "parent_url": url}), "utf-8")


def test_health_answers_a_stranger_with_four_figures(net: Topology) -> None:
    """No signature, no headers: 200 with exactly the allowed keys, right values."""
    with net.open(TOWN) as town:
        append_notes(town, 3)
        own = town.store.head(TOWN)[0]
    with serve_in_thread(net.home(CITY)) as city_url, serve_in_thread(net.home(TOWN)) as url:
        before = httpx.get(f"{url}/v1/health")
        with net.open(TOWN) as town:
            sync_round(town, city_url)
            last_sync = town.store.get_meta("last_sync")
        after = httpx.get(f"{url}/v1/health")
        refused = httpx.post(f"{url}/v1/health", content=b"{}")
    assert before.status_code == 200 and before.headers["cache-control"] == "no-store"
    assert set(before.json()) == HEALTH_KEYS
    assert before.json() == {
        "ok": True, "node_id": TOWN, "version": metadata.version("zhibao"),
        "last_sync": None, "backlog": own,
    }  # fmt: skip
    assert after.json()["last_sync"] == last_sync is not None and after.json()["backlog"] == 0
    assert refused.status_code == 405


def test_health_says_nothing_of_names_cases_or_the_link(net: Topology, tmp_path: Path) -> None:
    """A town with a case (name, ID number, phone) whose parent is down: its health names
    neither the citizen nor the centre, nor the parent's URL nor the error."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    down = f"http://127.0.0.1:{closed.getsockname()[1]}"
    catalogue = tmp_path / "items.csv"
    catalogue.write_text(
        "code,name,department,kind,promised_days\nH1,健康检查事项,民政局,承诺,5\n", "utf-8"
    )
    try:
        assert zhibao(net.home(CITY), "catalogue", "import", str(catalogue)).returncode == 0
        with serve_in_thread(net.home(CITY)) as city_url:
            assert zhibao(net.home(TOWN), "sync", "--peer", city_url).returncode == 0
        accepted = zhibao(
            net.home(TOWN), "case", "accept", "--item", "H1", "--applicant", "王秀英",
            "--id-no", "330782194001011234", "--phone", "13800138000",
        )  # fmt: skip
        assert accepted.returncode == 0, accepted.stderr
        _set_parent_url(net.home(TOWN), down)
        assert zhibao(net.home(TOWN), "sync").returncode == 1  # recorded: the link is down
        with serve_in_thread(net.home(TOWN)) as url:
            answer = httpx.get(f"{url}/v1/health")
    finally:
        closed.close()
    text = answer.text
    assert set(answer.json()) == HEALTH_KEYS and answer.json()["backlog"] >= 1
    port = down.rsplit(":", 1)[1]
    for secret in ("王秀英", "330782194001011234", "13800138000", "健康检查", "稠城", port,
                   "ConnectError", "cannot reach", '"H1"'):  # fmt: skip
        assert secret not in text, secret


def _wait_for(served: Served, pattern: str) -> str:
    """serve's stderr once `pattern` appears in it (polled, up to WAIT seconds)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        said = served.errors()
        if re.search(pattern, said):
            return said
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} never appeared in serve's log: {served.errors()}")


def test_serve_logs_stamped_lines_and_records_its_rounds_for_status(net: Topology) -> None:
    """`zhibao serve --access-log` at a town whose parent is down: every stderr line is
    stamped (its own, uvicorn's warning about a garbled request, uvicorn's access lines);
    the wait is never "0 s"; and `zhibao status` in another process shows the failure."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    down = f"http://127.0.0.1:{closed.getsockname()[1]}"
    _set_parent_url(net.home(TOWN), down)
    started = datetime.now().astimezone().replace(microsecond=0)
    try:
        with zhibao_serve(net.home(TOWN), "--access-log", "--interval", "0.1") as served:
            _wait_for(served, r"zhibao: link problem: cannot reach")
            assert httpx.get(f"{served.url}/v1/health").status_code == 200
            port = int(served.url.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port)) as garbled:
                garbled.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
                garbled.recv(1024)
            said = _wait_for(served, r"uvicorn: WARNING: Invalid HTTP request")
            said = _wait_for(served, r'uvicorn: .*"GET /v1/health HTTP/1.1" 200')
            shown = json.loads(zhibao(net.home(TOWN), "status", "--json").stdout)
    finally:
        closed.close()
    lines = said.splitlines()
    assert lines and all(STAMPED.match(line) for line in lines), said
    first = datetime.fromisoformat(lines[0].split(" ", 1)[0])
    assert first >= started
    assert "retrying in 0 s" not in said
    assert re.search(r"retrying in \d+(\.\d)? (s|min)$", said, re.MULTILINE), said
    state = shown["link"]
    assert state["state"] == "failing" and state["failures"] >= 1
    assert state["last_error"]["key"] == "link.down" and state["last_error"]["peer"] == down
