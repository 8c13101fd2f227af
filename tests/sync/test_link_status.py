"""The link as `status` shows it (issue #13, part 5): each round records its attempt, its
success and its failure with the time in the node's database, so `zhibao status` in another
process shows a parent that is down, since when, and what still waits for its receipt.

Real parts: the city served by uvicorn, a real fault-injecting proxy in front of it, a
port that is bound but not listening (a parent that is down), `zhibao` as a subprocess.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sync import link
from sync.clock import ZONE, Clock
from sync.protocol import i18n
from sync.protocol.errors import LinkDownError
from sync.round import sync_round
from sync.testing.proxy import Fault, FaultProxy
from tests.conftest import MakeTopology
from tests.support.servers import serve_in_thread, zhibao
from tests.support.topology import CITY, TOWN, VILLAGE, Topology, append_notes, hand_up


@pytest.fixture
def net(make_topology: MakeTopology) -> Topology:
    return make_topology([VILLAGE])


class SetClock:
    """A clock the test moves by hand (never sleeps)."""

    def __init__(self) -> None:
        self.at = datetime.now(ZONE).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def down_url() -> Iterator[str]:
    """A parent that is down: a port bound but not listening (connections refused)."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{closed.getsockname()[1]}"
    finally:
        closed.close()


def _status(home: Path, lang: str = "en") -> dict[str, Any]:
    done = zhibao(home, "status", "--json", lang=lang)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_link_status_shows_a_parent_behind_a_fault_proxy_going_down_and_up(
    net: Topology,
) -> None:
    """Through a real proxy: a good round, the line cut (proxy down), then back up. A
    separate `zhibao status` shows after each what happened and when (injected times)."""
    moved = SetClock()
    with serve_in_thread(net.home(CITY)) as city_url:
        port = int(city_url.rsplit(":", 1)[1])
        with FaultProxy("127.0.0.1", port) as proxy:
            with net.open(TOWN, clock=Clock(now=moved)) as town:
                append_notes(town, 3)
                sync_round(town, proxy.url)
            good = moved.at.isoformat()
            shown = _status(net.home(TOWN))
            assert shown["link"]["state"] == "ok" and shown["backlog"] == 0
            assert shown["link"]["last_success"] == shown["last_sync"] == good

            proxy.down()
            moved.at += timedelta(minutes=1)  # within SKEW_WARN: no correction
            with net.open(TOWN, clock=Clock(now=moved)) as town:
                append_notes(town, 2)
                with pytest.raises(LinkDownError):
                    sync_round(town, proxy.url)
            failed = moved.at.isoformat()
            shown = _status(net.home(TOWN))
            state = shown["link"]
            assert (state["state"], state["failures"], state["failing_since"]) == (
                "failing", 1, failed,
            )  # fmt: skip
            assert state["last_success"] == shown["last_sync"] == good  # still the old one
            assert state["last_attempt"] == failed and state["last_attempt_peer"] == proxy.url
            error = state["last_error"]
            assert (error["at"], error["key"], error["peer"]) == (failed, "link.down", proxy.url)
            assert proxy.url in error["message"]
            assert shown["backlog"] == 2 and shown["backlog_by_origin"] == {TOWN: 2}

            proxy.up()  # the first connection is cut mid-answer: a second kind of failure
            proxy.force(Fault("cut", "s2c", offset=20))
            moved.at += timedelta(minutes=1)  # within SKEW_WARN: no correction
            with net.open(TOWN, clock=Clock(now=moved)) as town, pytest.raises(LinkDownError):
                sync_round(town, proxy.url)
            state = _status(net.home(TOWN))["link"]
            assert (state["failures"], state["failing_since"]) == (2, failed)
            assert state["last_error"]["at"] == moved.at.isoformat()

            moved.at += timedelta(minutes=1)  # within SKEW_WARN: no correction
            with net.open(TOWN, clock=Clock(now=moved)) as town:
                assert sync_round(town, proxy.url).pushed == 2
    shown = _status(net.home(TOWN))
    state = shown["link"]
    assert (state["state"], state["failures"], state["failing_since"]) == ("ok", 0, None)
    assert state["last_success"] == moved.at.isoformat()
    assert state["last_error"]["at"] < state["last_success"]  # kept, as history
    assert shown["backlog"] == 0 and shown["backlog_by_origin"] == {}


def test_status_command_shows_a_parent_that_is_down_with_the_time(
    net: Topology, down_url: str
) -> None:
    """The real `zhibao sync` against a closed port, then `zhibao status` (text, both
    languages): the failure, its time and the backlog; JSON keeps the §7 keys."""
    with net.open(TOWN) as town:
        append_notes(town, 4)
    before = datetime.now(ZONE).replace(microsecond=0)
    failed = zhibao(net.home(TOWN), "sync", "--peer", down_url)
    assert failed.returncode == 1 and "ConnectError" in failed.stderr
    after = datetime.now(ZONE) + timedelta(seconds=1)
    shown = _status(net.home(TOWN))
    assert {"node_id", "heads", "acknowledged", "forks", "last_sync"} <= shown.keys()
    assert shown["last_sync"] is None and shown["link"]["state"] == "failing"
    at = shown["link"]["last_error"]["at"]
    assert before <= datetime.fromisoformat(at) <= after
    waiting = shown["heads"][TOWN]  # the 4 notes and the village's enrolment
    assert shown["backlog"] == shown["unacknowledged"] == waiting >= 4

    text = zhibao(net.home(TOWN), "status").stdout
    assert f"last error    {at} (just now): cannot reach {down_url}" in text
    assert "FAILING: the last round failed" in text
    assert f"{waiting} entries not yet acknowledged by the parent" in text
    chinese = zhibao(net.home(TOWN), "status", lang="zh").stdout
    assert f"上次错误  {at}（刚才）：无法连接 {down_url}" in chinese
    assert "连接失败" in chinese and f"{waiting} 条尚未获上级确认" in chinese
    for english in ("last error", "backlog", "acknowledged", "FAILING", "origin", "node "):
        assert english not in chinese, english


def test_link_failure_of_a_bug_is_recorded_by_type_and_place_not_message(
    net: Topology, down_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception outside the error tree (its message quoting a citizen) is recorded as
    its type and place only, and the round's own exception still reaches the caller."""
    import sync.round

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("王秀英 330782194001011234")

    monkeypatch.setattr(sync.round, "correct_clock", broken)
    with net.open(TOWN) as town:
        with pytest.raises(RuntimeError):
            sync_round(town, down_url)
        error = link.link_state(town)["last_error"]
    assert error["key"] == "link.internal"
    assert "(RuntimeError at test_link_status.py:" in error["message"]
    assert "王秀英" not in json.dumps(error, ensure_ascii=False)


def test_backlog_counts_the_villages_entries_a_town_relays(net: Topology) -> None:
    """At a town, what the city has not receipted includes its villages' logs."""
    with net.open(VILLAGE) as village, net.open(TOWN) as town:
        append_notes(village, 5)
        hand_up(village, town)
        append_notes(town, 1)
        held = {o: s for o, (s, _) in town.store.heads().items() if o in (TOWN, VILLAGE)}
    assert held[VILLAGE] >= 5
    with serve_in_thread(net.home(CITY)) as city_url, net.open(TOWN) as town:
        before = link.backlog(town)
        sync_round(town, city_url)
        after = link.backlog(town)
    assert before == held and after == {}


def test_link_never_synced_and_the_city(net: Topology) -> None:
    with net.open(TOWN) as town:
        assert link.link_state(town)["state"] == "never"
    with net.open(CITY) as city:
        assert link.backlog(city) == {} and link.link_state(city)["parent_id"] is None
    text = zhibao(net.home(CITY), "status").stdout
    assert "none (top of the network)" in text and "last error" not in text


@pytest.mark.parametrize(
    ("seconds", "english", "chinese"),
    [
        pytest.param(0.0, "0.1 s", "0.1 秒", id="zero"),
        pytest.param(0.37, "0.4 s", "0.4 秒", id="under-a-second"),
        pytest.param(12.4, "12 s", "12 秒", id="seconds"),
        pytest.param(300.0, "5 min", "5 分钟", id="minutes"),
    ],
)
def test_wait_text_never_says_zero_seconds(seconds: float, english: str, chinese: str) -> None:
    try:
        i18n.use_locale("en")
        assert link.wait_text(seconds) == english
        i18n.use_locale("zh")
        assert link.wait_text(seconds) == chinese
    finally:
        i18n.use_locale(None)


@pytest.mark.parametrize(
    ("nbytes", "shown"),
    [(0, "0 B"), (843, "843 B"), (1536, "1.5 KB"), (20 * 1024, "20 KB"), (3 << 20, "3.0 MB")],
)
def test_size_text_never_says_zero_kb(nbytes: int, shown: str) -> None:
    assert link.size_text(nbytes) == shown


def test_age_text_in_both_languages() -> None:
    now = datetime(2026, 12, 2, 16, 0, tzinfo=ZONE)
    cases = [
        (now - timedelta(seconds=3), "just now", "刚才"),
        (now - timedelta(seconds=42), "42 s ago", "42 秒前"),
        (now - timedelta(minutes=5), "5 min ago", "5 分钟前"),
        (now - timedelta(hours=3), "3 h ago", "3 小时前"),
        (now - timedelta(days=2), "2 days ago", "2 天前"),
        (now + timedelta(hours=1), "in the future: check this computer's clock",
         "在将来：请检查本机时钟"),
    ]  # fmt: skip
    try:
        for then, english, chinese in cases:
            i18n.use_locale("en")
            assert link.age_text(then.isoformat(), now) == english
            i18n.use_locale("zh")
            assert link.age_text(then.isoformat(), now) == chinese
    finally:
        i18n.use_locale(None)
    assert link.age_text("not a time", now) == "" and link.age_text(None, now) == ""
