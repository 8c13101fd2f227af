"""The honest side: a city, two towns and villages, served by real `zhibao serve`
processes and driven by the real `zhibao` command; and the checks every attack ends with.

Ids are fixed: villages A, B and C under the town (A sorts before B; C is an honest
bystander), village X under the sibling town. The network is built once through the
tiers API (enrolments, the shipped catalogue published by the city and handed down,
the towns' logs at the city) and copied for each test or module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

from sync.clock import Clock
from sync.node import Node
from sync.protocol.ids import is_within
from tests.hostile.harness import Actor, peak_rss
from tests.support.servers import Served, cli_env, zhibao, zhibao_serve
from tests.support.topology import (
    SHIPPED_CATALOGUE,
    Topology,
    build_topology,
    copy_topology,
    hand_down,
    hand_up,
)
from tiers.catalogue import parse_catalogue
from tiers.published import publish_items

CITY = "330782"
TOWN = "330782001"
TOWN_B = "330782002"
VILLAGE_A = "330782001201"  # the hostile village, in most tests
VILLAGE_B = "330782001202"  # its victim (A sorts before B)
VILLAGE_C = "330782001203"  # an honest bystander under the same town
VILLAGE_X = "330782002201"  # under the sibling town
NODES = (CITY, TOWN, TOWN_B, VILLAGE_A, VILLAGE_B, VILLAGE_C, VILLAGE_X)
ITEM = "330782-MZ-002"  # 承诺, 15 working days; received at villages and towns, town decides
MAX_RSS = 200 * 2**20  # a generous bound on any process's peak resident set


# --- building ----------------------------------------------------------------------------


def relay_up(child: Node, parent: Node) -> None:
    """Give `parent` the logs of `child`'s subtree, as a push would (in process)."""
    result = hand_up(child, parent)
    assert not result["rejected"], result["rejected"]


def build_network(base: Path) -> Topology:
    """Every node of NODES enrolled and introduced, the catalogue everywhere, the towns'
    logs (the villages' enrolments) at the city."""
    net = build_topology(base, NODES)
    items = parse_catalogue(SHIPPED_CATALOGUE.read_bytes(), SHIPPED_CATALOGUE.name)
    with net.open(CITY) as city:
        publish_items(city, items)
        for town_id in (TOWN, TOWN_B):
            with net.open(town_id) as town:
                hand_down(city, town)
                relay_up(town, city)
                for village_id in NODES:
                    if len(village_id) == 12 and is_within(village_id, town_id):
                        with net.open(village_id) as village:
                            hand_down(town, village)
    return net


@dataclass
class Net:
    """A copy of the network: homes by node id, and the servers started on it."""

    topology: Topology

    @classmethod
    def copy_of(cls, template: Topology, base: Path) -> Net:
        return cls(copy_topology(template, base))

    def home(self, node_id: str) -> Path:
        return self.topology.home(node_id)

    def actor(self, node_id: str) -> Actor:
        return Actor.of(self.home(node_id))

    @contextmanager
    def serving(self, *node_ids: str) -> Iterator[dict[str, Served]]:
        """`zhibao serve` for each node (subprocesses on port 0), stopped afterwards."""
        with ExitStack() as stack:
            yield {n: stack.enter_context(zhibao_serve(self.home(n))) for n in node_ids}


def server_rss(served: Served) -> int:
    assert served.proc.poll() is None, f"the server died: {served.errors()}"
    return peak_rss(served.proc.pid)


# --- the command line --------------------------------------------------------------------


def zb(home: Path, *args: str, ok: bool = True) -> CompletedProcess[str]:
    """`zhibao ARGS --home HOME`; with `ok`, it must exit 0."""
    done = zhibao(home, *args)
    if ok:
        assert done.returncode == 0, f"zhibao {' '.join(args)}: {done.stderr or done.stdout}"
    return done


def zj(home: Path, *args: str) -> Any:
    """The JSON printed by `zhibao ARGS --json --home HOME`, which must exit 0."""
    return json.loads(zb(home, *args, "--json").stdout)


def one_line_error(done: CompletedProcess[str]) -> str:
    """The single `zhibao: ...` line of a command that failed cleanly (exit 1)."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert len(lines) == 1 and lines[0].startswith("zhibao: "), done.stderr
    assert "internal error" not in lines[0] and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def today() -> date:
    return Clock().now().date()


def period_now() -> str:
    return f"{today():%Y-%m}"


# --- what must hold after every attack ---------------------------------------------------


_READS = (
    ("case", "list", "--json"),
    ("status", "--json"),
    ("stats", "--json"),
    ("reconcile", "--period", "{period}", "--json"),
    ("log", "verify", "--json"),
)
# The real `zhibao` entry point (cli.main.main) run once per command line, in one fresh
# interpreter: each run parses its arguments, opens the node from disk, answers and closes
# it, exactly as a `zhibao` process does; only the interpreter's start-up is shared.
_PROBE = """
import contextlib, io, json, sys
from cli.main import main
answers = []
for args in json.loads(sys.argv[1]):
    out, err = (io.TextIOWrapper(io.BytesIO(), "utf-8", newline="") for _ in "12")
    code = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
        except SystemExit as exc:
            code = exc.code
    said = [s.flush() or s.buffer.getvalue().decode("utf-8", "replace") for s in (out, err)]
    answers.append({"code": code, "stdout": said[0], "stderr": said[1]})
sys.__stdout__.write(json.dumps(answers))
"""


def zhibao_each(home: Path, commands: Sequence[Sequence[str]]) -> list[CompletedProcess[str]]:
    """`zhibao ARGS --home HOME` for each of `commands`, one after the other in one fresh
    process (cli.main.main each time); what each said and its exit status."""
    argv = [[*args, "--home", str(home)] for args in commands]
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(argv)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"zhibao at {home.name}: {done.stderr[-2000:]}"
    return [
        CompletedProcess(args, a["code"], a["stdout"], a["stderr"])
        for args, a in zip(argv, json.loads(done.stdout), strict=True)
    ]


def assert_works(*homes: Path, period: str | None = None) -> None:
    """At each home, the commands an operator relies on answer (exit 0, JSON):
    case list, status, stats, reconcile; and `log verify` says ok.

    Each home's five commands run in one fresh process (zhibao_each; the homes side by
    side), not five: the start-up they shared is the same interpreter importing the same
    code, and each command still opens the node from its files and must exit 0 with JSON.
    A broken node fails here as before: a damaged log fails `log verify` ("ok": false), a
    damaged database or home makes a command exit 1 (tests/hostile/test_works.py breaks
    nodes both ways and sees this assertion fire)."""
    month = period or period_now()
    commands = [[a.format(period=month) for a in args] for args in _READS]
    with ThreadPoolExecutor(len(homes)) as pool:
        answered = list(pool.map(lambda home: zhibao_each(home, commands), homes))
    for home, answers in zip(homes, answered, strict=True):
        for done in answers:
            what = f"zhibao {' '.join(done.args[:-2])} at {home.name}"
            assert done.returncode == 0, f"{what}: {done.stderr or done.stdout[-2000:]}"
            answer = json.loads(done.stdout)
            if done.args[0] == "log":
                assert answer["ok"] is True, f"{what}: {answer}"


def honest_round(net: Net, town_url: str, city_url: str, village: str = VILLAGE_C) -> str:
    """An honest village records a case, syncs with its town, the town with the city: the
    city then holds all of the village's log and the case. Returns the case id."""
    home = net.home(village)
    case_id = zb(home, "case", "receive", "--item", ITEM, "--applicant", "诚实村民").stdout.strip()
    zb(home, "sync", "--peer", town_url)
    zb(net.home(TOWN), "sync", "--peer", city_url)
    head = zj(home, "status")["heads"][village]
    assert zj(net.home(CITY), "status")["heads"].get(village) == head
    shown = zj(net.home(CITY), "case", "show", case_id)
    assert shown["origin"] == village and shown["holder"] == village
    return case_id


def quarantined(home: Path) -> list[dict[str, Any]]:
    """`status --json`'s "quarantined" list (issue #9 adds it)."""
    status = zj(home, "status")
    assert "quarantined" in status, "status --json has no 'quarantined' list"
    entries: list[dict[str, Any]] = status["quarantined"]
    for entry in entries:
        assert {"origin", "seq", "type", "reason", "detail", "at"} <= set(entry), entry
    return entries


def assert_quarantined(home: Path, origin: str, seqs: set[int], reason: str) -> None:
    """Each (origin, seq) is set aside at `home` with `reason`, and reconcile says so."""
    found = {q["seq"] for q in quarantined(home) if q["origin"] == origin and q["reason"] == reason}
    assert seqs <= found, (seqs, found, reason)
    listed = findings(home, "quarantined_entry")
    assert any(f["node_id"] == origin for f in listed), listed


def findings(home: Path, kind: str, period: str | None = None) -> list[dict[str, Any]]:
    result = zj(home, "reconcile", "--period", period or period_now())
    return [f for f in result["findings"] if f["kind"] == kind]


def heads(home: Path) -> dict[str, int]:
    return dict(zj(home, "status")["heads"])
