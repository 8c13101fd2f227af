"""`zhibao sync` and `zhibao status` as a person reads them (issue #13, part 5 and the
smaller items): "1 entry", sizes in bytes rather than "0 KB", `--watch` lines stamped, and
status labels and table headers in the reader's language."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest

from cli.sync import _ServeLog
from sync.protocol.errors import LinkDownError
from sync.round import RoundSummary
from tests.conftest import MakeTopology
from tests.support.servers import ZHIBAO, cli_env, serve_in_thread, zhibao
from tests.support.topology import CITY, TOWN, VILLAGE, Topology, append_notes
from tests.sync.test_forks_resolve import make_fork

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"


@pytest.fixture
def net(make_topology: MakeTopology) -> Topology:
    return make_topology([VILLAGE])


def test_sync_counts_one_entry_and_bytes_in_both_languages(net: Topology) -> None:
    with serve_in_thread(net.home(CITY)) as url:
        assert zhibao(net.home(TOWN), "sync", "--peer", url).returncode == 0
        with net.open(TOWN) as town:
            append_notes(town, 1)
        english = zhibao(net.home(TOWN), "sync", "--peer", url).stdout
        with net.open(TOWN) as town:
            append_notes(town, 1, start=1)
        chinese = zhibao(net.home(TOWN), "sync", "--peer", url, lang="zh").stdout
    assert re.fullmatch(
        rf"Synced with {re.escape(url)}: 1 entry up, 0 entries down \(\d+ B on the wire\)\.\n",
        english,
    ), english
    assert re.fullmatch(
        rf"已与 {re.escape(url)} 同步：上传 1 条，下载 0 条（传输 \d+ B）。\n", chinese
    ), chinese


def _interruptible() -> None:
    """Ctrl-C as a terminal gives it: an ignored or blocked SIGINT is inherited across exec,
    and Python then raises no KeyboardInterrupt (in two full runs the child outlived the
    SIGINT below; no test leaves SIGINT ignored at its teardown — a probe found none — so
    it is set while a test runs, or blocked in the thread that forks: not found yet)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_sync_watch_stamps_each_line(net: Topology) -> None:
    """`sync --watch` is a log too: its first round's line begins with the time."""
    with serve_in_thread(net.home(CITY)) as url:
        proc = subprocess.Popen(
            [ZHIBAO, "sync", "--watch", "--peer", url, "--interval", "60",
             "--home", str(net.home(TOWN))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(), text=True,
            preexec_fn=_interruptible,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
        finally:
            os.kill(proc.pid, signal.SIGINT)
            proc.communicate(timeout=30)
    assert re.match(rf"{STAMP} Synced with {re.escape(url)}: \d+ entr(y|ies) up", first), first


def test_status_labels_and_tables_in_chinese(net: Topology) -> None:
    """The city's status (with its network table) under zh: Chinese labels and headers,
    none of the English ones."""
    english = zhibao(net.home(CITY), "status").stdout
    chinese = zhibao(net.home(CITY), "status", lang="zh").stdout
    assert english.startswith("node   ") and "last heard" in english and "held" in english
    assert chinese.startswith("节点  ") and "最近消息" in chinese and "持有至" in chinese
    assert chinese.splitlines()[0].endswith("（市级）")  # Chinese brackets round the tier
    assert english.splitlines()[0].endswith(" (city)")
    words = ("node", "parent", "link", "clock offset", "origin", "held", "name", "state",
             "last heard", "entries", "forwards", "yellow/red", "network:")  # fmt: skip
    for word in words:
        assert not re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", chinese), word


def test_serve_log_says_when_the_link_works_again(capsys: pytest.CaptureFixture[str]) -> None:
    """serve's background sync: a failure (its wait never "0 s"), then the first round
    that gets through says so, and what it moved; every line stamped."""
    url = "http://127.0.0.1:9"
    said = _ServeLog()
    said.error(LinkDownError("link.down", url=url, detail="ConnectError"), 0.04)
    said.error(LinkDownError("link.down", url=url, detail="ConnectError"), 1.5)
    said.round(RoundSummary(peer=url, pushed=1, pushed_bytes=300))
    said.round(RoundSummary(peer=url))  # nothing moved, nothing to say
    lines = capsys.readouterr().err.splitlines()
    assert all(re.match(rf"{STAMP} zhibao: ", line) for line in lines), lines
    assert [line.split(" zhibao: ", 1)[1] for line in lines] == [
        f"link problem: cannot reach {url} (ConnectError); nothing was lost, try again later;"
        " retrying in 0.1 s",
        f"link problem: cannot reach {url} (ConnectError); nothing was lost, try again later;"
        " retrying in 1.5 s",
        f"the link to {url} works again (after 2 failed rounds)",
        f"Synced with {url}: 1 entry up, 0 entries down (300 B on the wire).",
    ]


def test_status_names_a_forks_state_in_the_readers_language(net: Topology) -> None:
    """A fork held at the city: its status line says the state in words, both languages."""
    fork = make_fork(net, at=(CITY,))
    english = zhibao(net.home(CITY), "status").stdout
    chinese = zhibao(net.home(CITY), "status", lang="zh").stdout
    assert f"FORK {VILLAGE}#{fork.seq} detected " in english
    assert "(unresolved (frozen); see `zhibao fork list`)" in english
    assert f"分叉 {VILLAGE}#{fork.seq}，" in chinese and "（未处理（已冻结）；见" in chinese
