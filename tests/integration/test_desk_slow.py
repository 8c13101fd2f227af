"""Results that take seconds on the desk (tiers.desk.slow; the findings page's reconcile):
computed on a thread with its own connection, kept with the data version, served exact when
current, the kept one (with its time) while a newer one is computed, nothing but "being
computed" (a reloading page) before the first, an error said once, at most MAX_RUNNING at
once. A real node's home (tests.tiers.test_figures' hand-built month); the computation is
a function of the test, blocked on an event where the test needs it to be slow."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.requests import Request

from sync.node import Node
from sync.protocol import i18n
from sync.protocol.errors import ReportError
from tests.tiers import test_figures as tf
from tiers.desk import findings_page, slow
from tiers.desk.findings_page import findings_of
from tiers.desk.users import Session
from tiers.published import publish_items

PERIOD = "2025-10"


@pytest.fixture
def net(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tf.City]:
    monkeypatch.setattr(slow, "WAIT", 0.2)
    slow.forget()
    with tf.small_city(tmp_path) as built:
        tf.hand_built_month(built)
        tf.up(built)
        yield built
    slow.forget()


@pytest.fixture
def city(net: tf.City) -> Node:
    return net.city


def _gate() -> tuple[threading.Event, threading.Event, Any]:
    started, release = threading.Event(), threading.Event()

    def compute(node: Node) -> dict[str, Any]:
        started.set()
        assert release.wait(30)
        return {"entries": node.store.query("SELECT count(*) FROM entries")[0][0]}

    return started, release, compute


def _settle() -> None:
    for thread in list(slow._running.values()):
        thread.join(30)


def test_slow_result_quick_answer_is_current_and_equals_reconcile(city: Node) -> None:
    got = slow.result(city, "reconcile", PERIOD, lambda n: findings_of(n, PERIOD))
    assert got.current and got.value == findings_of(city, PERIOD)
    again = slow.result(city, "reconcile", PERIOD, lambda n: pytest.fail("computed again"))
    assert again.value is got.value  # kept: the same data version, the same day


def test_slow_result_nothing_yet_then_current(city: Node) -> None:
    started, release, compute = _gate()
    first = slow.result(city, "count", PERIOD, compute)
    assert first.value is None and not first.current and started.is_set()
    assert slow.result(city, "count", PERIOD, compute).value is None  # still running: one thread
    release.set()
    _settle()
    done = slow.result(city, "count", PERIOD, compute)
    assert done.current and done.value == {"entries": tf_entries(city)}


def _findings_asked(period: str) -> Request:
    """GET /desk/findings?period=PERIOD, as the page's handler gets it."""
    return Request({"type": "http", "method": "GET", "path": "/findings",
                    "query_string": f"period={period}".encode(), "headers": []})  # fmt: skip


def tf_entries(node: Node) -> int:
    return int(node.store.query("SELECT count(*) FROM entries")[0][0])


def test_slow_result_kept_one_served_with_its_time_while_newer_data_is_computed(
    net: tf.City,
) -> None:
    city = net.city
    slow.result(city, "count", PERIOD, lambda n: {"entries": tf_entries(n)})
    _settle()
    before = tf_entries(city)
    publish_items(city, [dataclasses.replace(tf.ITEMS[0], name="改名")], at="2025-11-19T09:00")
    assert tf_entries(city) > before  # the data version moved
    _started, release, compute = _gate()
    stale = slow.result(city, "count", PERIOD, compute)
    assert not stale.current and stale.value == {"entries": before} and stale.at
    release.set()
    _settle()
    fresh = slow.result(city, "count", PERIOD, compute)
    assert fresh.current and fresh.value == {"entries": tf_entries(city)}


def test_slow_result_error_said_once(city: Node) -> None:
    def broken(node: Node) -> dict[str, Any]:
        raise ReportError("stats.bad_by", by="x", allowed="y")

    with pytest.raises(ReportError):
        slow.result(city, "broken", PERIOD, broken)
    _settle()
    _started, release, compute = _gate()
    release.set()
    assert slow.result(city, "broken", PERIOD, compute).value is not None  # asked afresh


def test_slow_result_busy_beyond_max_running(city: Node) -> None:
    _started, release, compute = _gate()
    try:
        for n in range(slow.MAX_RUNNING):
            assert slow.result(city, f"count{n}", PERIOD, compute).value is None
        with pytest.raises(slow.Busy):  # a reader asking month after month cannot pile up threads
            slow.result(city, "one-more", PERIOD, compute)
    finally:
        release.set()
        _settle()


def test_findings_page_says_it_is_computing_and_reloads_then_shows_them(
    city: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real = findings_page.findings_of

    def gated(node: Node, period: str) -> dict[str, Any]:
        assert release.wait(30)
        return real(node, period)

    monkeypatch.setattr(findings_page, "findings_of", gated)
    asked = _findings_asked(PERIOD)
    reader = Session("ana", "viewer", "csrf")
    with i18n.speaking("en"):
        waiting = findings_page.findings(city, asked, "", reader)
        assert waiting.reload == slow.RELOAD and "being worked out" in waiting.body
        assert waiting.title == f"Findings for {PERIOD}"  # the month, not "{period}"
        assert not waiting.tables  # nothing to download yet
        release.set()
        _settle()
        shown = findings_page.findings(city, asked, "", reader)
    assert shown.reload is None and [t.name for t in shown.tables] == ["findings", "reports"]
    assert len(shown.tables[0].rows) == len(real(city, PERIOD)["findings"])


def test_findings_page_busy_says_so_under_the_month_asked(city: Node) -> None:
    _started, release, compute = _gate()
    asked = _findings_asked(PERIOD)
    try:
        for n in range(slow.MAX_RUNNING):
            slow.result(city, f"count{n}", PERIOD, compute)
        with i18n.speaking("zh"):
            busy = findings_page.findings(city, asked, "", Session("ana", "viewer", "csrf"))
    finally:
        release.set()
        _settle()
    assert busy.status == 503 and busy.reload == slow.RELOAD
    assert busy.title == f"{PERIOD} 核对结果"


def test_findings_page_a_quarter_is_refused_before_any_thread(
    city: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    computed: list[str] = []
    monkeypatch.setattr(findings_page, "findings_of", lambda n, p: computed.append(p) or {})
    asked = _findings_asked("2025-q4")
    with pytest.raises(ReportError):
        findings_page.findings(city, asked, "", Session("ana", "viewer", "csrf"))
    _settle()
    assert computed == []  # no thread began: reconcile takes months only


def test_slow_result_found_running_answers_without_waiting(
    city: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page reloading itself while the computation runs answers at once: it holds the
    desk's one-at-a-time lock, and every other reader's page would wait with it."""
    started, release, compute = _gate()
    answers: list[slow.Answer] = []
    reload = threading.Thread(target=lambda: answers.append(slow.result(city, "count", PERIOD,
                                                                        compute)))  # fmt: skip
    try:
        assert slow.result(city, "count", PERIOD, compute).value is None  # started: waited
        assert started.wait(30)
        monkeypatch.setattr(slow, "WAIT", 60.0)
        reload.start()
        reload.join(30)  # long before the computation ends: it waits for `release`
        assert answers and answers[0].value is None
    finally:
        release.set()
        _settle()
