"""The desk under load and under attack (issue #14): the figures cache is exact and reused,
a session's last use is written once a minute, a slow login blocks neither sync nor other
pages, failed logins wait per (name, address) under a per-name cap, and the access records
have their indexes and their retention.

The figures tests use tests.tiers.test_figures' hand-built month on real homes; the rest
run the desk in-process (uvicorn in a thread, as tests/integration/test_desk.py does) with
an injected clock: no sleeps."""

from __future__ import annotations

import dataclasses
import threading
import tomllib
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import tomli_w

from sync.clock import ZONE
from sync.protocol import i18n
from tests.integration.test_desk import (
    PASSWORD,
    Clock,
    _desk_served,
    _idle_minutes,
    client,
    login,
    zb,
)
from tests.support.state import home_store
from tests.support.topology import CITY
from tests.tiers import test_figures as tf
from tiers.cases import service
from tiers.city.stats import compute_stats
from tiers.desk import access, figures, users
from tiers.desk import app as desk_app
from tiers.figures import parse_period
from tiers.node import open_home
from tiers.published import publish_items

# the desk is the city's: its PostgreSQL runs in the soak run (the CI run compares the
# desk's figures and tables on both: tests/postgres/test_tiers_on_pg.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]

OCTOBER, AUGUST = "2025-10", "2025-08"
IDS: dict[str, str] = {}  # the hand-built month's cases, by number


@pytest.fixture
def desk_city(make_topology) -> Path:  # type: ignore[no-untyped-def]
    """A city with one admin, ana (as tests/integration/test_desk.py's)."""
    home: Path = make_topology([CITY]).home(CITY)
    zb(home, "user", "add", "ana", "--role", "admin", stdin=PASSWORD + "\n")
    return home


# --- the figures cache -----------------------------------------------------------------------


@pytest.fixture
def net(tmp_path: Path) -> Iterator[tf.City]:
    with tf.small_city(tmp_path) as built:
        IDS.update(tf.hand_built_month(built))
        tf.up(built)
        figures.forget()
        yield built
    figures.forget()


def _fresh(net: tf.City, period: str, by: str = "node") -> dict[str, object]:
    city = net.city
    return compute_stats(city.store, parse_period(period), by, city.clock.now().date(),
                         city.config.settings)  # fmt: skip


def test_figures_cache_gives_compute_stats_and_computes_once(net: tf.City) -> None:
    before = figures.CACHE.computed
    first = figures.month(net.city, OCTOBER, "node")
    assert first == _fresh(net, OCTOBER) and first["total"]["accepted"] > 0
    again = figures.month(net.city, OCTOBER, "node")
    assert again == first and figures.CACHE.computed == before + 1
    again["rows"].clear()  # a copy: the caller may change it
    assert figures.month(net.city, OCTOBER, "node") == first


def test_figures_cache_a_case_entry_recomputes_only_the_months_it_touches(net: tf.City) -> None:
    figures.month(net.city, OCTOBER, "node")
    figures.month(net.city, AUGUST, "node")
    computed = figures.CACHE.computed
    service.accept(net.town, item_code="C3", applicant=tf.PERSON, at=tf.t("10-20"))
    tf.up(net, tf.t("11-02"))
    october = figures.month(net.city, OCTOBER, "node")
    assert october == _fresh(net, OCTOBER)  # the new case counts at once: never stale
    assert figures.CACHE.computed == computed + 1
    assert figures.month(net.city, AUGUST, "node") == _fresh(net, AUGUST)
    assert figures.CACHE.computed == computed + 1  # August's rows did not change: kept


def test_figures_cache_an_event_of_a_counted_case_recomputes_its_month(net: tf.City) -> None:
    """A November delivery of case 2 (completed on 10-13): October counted that case, so it
    is computed again; August, which did not, is kept."""
    figures.month(net.city, OCTOBER, "node")
    figures.month(net.city, AUGUST, "node")
    computed = figures.CACHE.computed
    service.deliver(net.town, IDS["2"], at=tf.t("11-18"))
    tf.up(net, tf.t("11-19"))
    assert figures.month(net.city, OCTOBER, "node") == _fresh(net, OCTOBER)
    assert figures.CACHE.computed == computed + 1
    assert figures.month(net.city, AUGUST, "node") == _fresh(net, AUGUST)
    assert figures.CACHE.computed == computed + 1


def test_figures_cache_any_other_entry_recomputes_everything(net: tf.City) -> None:
    figures.month(net.city, AUGUST, "item")
    computed = figures.CACHE.computed
    renamed = dataclasses.replace(tf.ITEMS[0], name="改名的事项")
    publish_items(net.city, [renamed], at="2025-11-19T09:00")
    assert figures.month(net.city, AUGUST, "item") == _fresh(net, AUGUST, "item")
    assert figures.CACHE.computed == computed + 1


def test_figures_cache_follows_deferred_projections(net: tf.City) -> None:
    """`serve` stores pushed entries before projecting them: the cursor is in the version."""
    figures.month(net.city, OCTOBER, "node")
    net.city.store.defer_projections()
    service.accept(net.town, item_code="C3", applicant=tf.PERSON, at=tf.t("10-21"))
    tf.up(net, tf.t("11-02"))
    assert figures.month(net.city, OCTOBER, "node") == _fresh(net, OCTOBER)  # not projected
    computed = figures.CACHE.computed
    net.city.store.catch_up()
    caught_up = figures.month(net.city, OCTOBER, "node")
    assert caught_up == _fresh(net, OCTOBER) and figures.CACHE.computed == computed + 1


def test_figures_cache_is_keyed_by_language_and_the_day_judged_at(net: tf.City) -> None:
    with i18n.speaking("en"):
        english = figures.month(net.city, OCTOBER, "node")
    with i18n.speaking("zh"):
        chinese = figures.month(net.city, OCTOBER, "node")
        november = figures.month(net.city, None, "node")  # the clock says 2025-11-20
    assert english["total"]["label"] != chinese["total"]["label"]
    assert november["period"] == "2025-11"
    net.city.clock.offset = timedelta(days=1)  # the next day
    computed = figures.CACHE.computed
    with i18n.speaking("zh"):
        assert figures.month(net.city, OCTOBER, "node") == chinese  # over: judged at 10-31
        assert figures.CACHE.computed == computed
        assert figures.month(net.city, None, "node") == _fresh(net, "2025-11")
        assert figures.CACHE.computed == computed + 1  # this month: judged a day later


def test_figures_cache_is_bounded(net: tf.City, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(figures, "MAX_CACHED", 3)
    figures.trend(net.city, OCTOBER, 6)
    assert len(figures.CACHE.held) == 3


def test_figures_warmer_computes_what_was_asked_after_a_change(net: tf.City) -> None:
    figures.month(net.city, OCTOBER, "department")
    service.accept(net.town, item_code="C3", applicant=tf.PERSON, at=tf.t("10-22"))
    tf.up(net, tf.t("11-02"))
    home = net.base / CITY
    now = net.city.clock.now()
    _someone(net)
    warmer = figures.Warmer(lambda: open_home(home, clock=tf.fixed(now)))
    try:
        assert warmer.warmed.wait(60)
        computed = figures.CACHE.computed
        want = _fresh(net, OCTOBER, "department")
        assert figures.month(net.city, OCTOBER, "department") == want
        assert figures.CACHE.computed == computed  # the warmer had computed it
        # while a warmer runs, a page computing a result leaves its cases to the warmer
        figures.month(net.city, AUGUST, "kind")
        (key,) = [k for k in figures.CACHE.held if k[1] == AUGUST and k[2] == "kind"]
        assert figures.CACHE.held[key].cases is None
        for _ in range(2):  # a whole pass begun after the page
            warmer.warmed.clear()
            assert warmer.warmed.wait(60)
        assert figures.CACHE.held[key].cases is not None
    finally:
        warmer.stop()
    assert not figures.CACHE.warmed


def _someone(net: tf.City) -> None:
    users.ensure(net.city.store)
    users.add_user(net.city.store, "ana", "viewer", PASSWORD, now_iso(net))


def now_iso(net: tf.City) -> str:
    return net.city.clock.now().isoformat()


def test_figures_warmer_idles_while_nobody_can_read_the_desk(net: tf.City) -> None:
    home = net.base / CITY
    now = net.city.clock.now()
    computed = figures.CACHE.computed
    warmer = figures.Warmer(lambda: open_home(home, clock=tf.fixed(now)), every=0.01)
    try:
        assert not warmer.warmed.wait(0.5)  # several looks: no desk user, nothing computed
        assert figures.CACHE.computed == computed
        _someone(net)
        assert warmer.warmed.wait(60)  # a desk user: this month and the trend computed
        assert figures.CACHE.computed > computed
    finally:
        warmer.stop()


def test_desk_start_warms_before_the_first_request(desk_city: Path) -> None:
    desk = desk_app.Desk(lambda: open_home(desk_city))
    try:
        desk.start()
        assert desk._warmer is not None and desk._warmer.warmed.wait(60)
    finally:
        desk.close()


# --- sessions --------------------------------------------------------------------------------


def _last_seen(home: Path) -> float:
    with home_store(home) as store:  # node.db, or the city's PostgreSQL database
        return float(store.query("SELECT last_seen FROM desk_sessions")[0][0])


def test_desk_session_last_use_written_once_a_minute(desk_city: Path) -> None:
    _idle_minutes(desk_city, 5)
    clock = Clock()
    with _desk_served(desk_city, clock) as url, client(url) as web:
        login(web)
        start = clock.now
        assert _last_seen(desk_city) == start
        clock.now += users.SEEN_GRAIN - 1
        assert web.get("/desk/").status_code == 200
        assert _last_seen(desk_city) == start  # moved by less than a minute: not written
        clock.now += 2
        web.get("/desk/")
        assert _last_seen(desk_city) == clock.now
        # the idle time counts from the last use written: at most a minute early, never late
        used = clock.now
        clock.now += 30
        web.get("/desk/")
        clock.now = used + 5 * 60 + 1
        assert web.get("/desk/").status_code == 303


# --- a slow login ----------------------------------------------------------------------------


def test_desk_slow_login_blocks_neither_sync_nor_pages(
    desk_city: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checking, release = threading.Event(), threading.Event()
    real = users.password_matches

    def slow(password: str, stored: str) -> bool:
        if password == "the slow one":
            checking.set()
            assert release.wait(30)
        return real(password, stored)

    monkeypatch.setattr(users, "password_matches", slow)
    clock = Clock()
    with _desk_served(desk_city, clock) as url, client(url) as other, client(url) as web:
        login(other)  # another reader, logged in before
        answers: list[int] = []
        slow_login = threading.Thread(
            target=lambda: answers.append(login(web, "ana", "the slow one").status_code)
        )
        slow_login.start()
        try:
            assert checking.wait(30)
            health = httpx.get(f"{url}/v1/health", timeout=10)
            assert health.status_code == 200
            assert other.get("/desk/", timeout=10).status_code == 200
        finally:
            release.set()
            slow_login.join(30)
        assert answers == [401]


# --- failed logins ---------------------------------------------------------------------------


def _from(url: str, address: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=url, follow_redirects=False, timeout=30, transport=transport)


def test_desk_failed_logins_wait_per_name_and_address(desk_city: Path) -> None:
    clock = Clock()
    with _desk_served(desk_city, clock) as url:
        with _from(url, "127.0.0.2") as stranger:
            for _ in range(desk_app.FREE_FAILURES):
                assert login(stranger, "ana", "a guess").status_code == 401
            assert login(stranger, "ana", "another guess").status_code == 429
        with _from(url, "127.0.0.3") as ana:  # ana, from her own office, is not slowed
            assert login(ana).status_code == 303


def test_desk_failed_logins_of_a_name_capped_across_addresses(
    desk_city: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(desk_app, "NAME_FREE_FAILURES", 4)
    clock = Clock()
    with _desk_served(desk_city, clock) as url:
        for k in range(2, 6):  # four addresses, one guess each: each under its own limit
            with _from(url, f"127.0.0.{k}") as guesser:
                assert login(guesser, "ana", "a guess").status_code == 401
        with _from(url, "127.0.0.9") as ana:
            waited = login(ana)
            assert waited.status_code == 429 and "zhibao_desk" not in ana.cookies
            clock.now += 1.5
            assert login(ana).status_code == 303
            assert login(ana, "ana", "a typo").status_code == 401  # counted afresh


# --- the access records ----------------------------------------------------------------------


def test_desk_access_records_kept_for_desk_access_days(desk_city: Path) -> None:
    now = datetime(2026, 3, 1, 9, tzinfo=ZONE)
    with open_home(desk_city) as node:
        access.ensure(node.store)
        for days in (40, 31, 29, 1):
            access.record(node.store, "ana", f"case-{days}", (now - timedelta(days)).isoformat())
        access.ensure(node.store, {access.RETENTION_SETTING: 30}, now)  # the desk opens
        kept = [r.case_id for r in access.recent(node.store, 10)[0]]
        assert kept == ["case-1", "case-29"]
        # two days later, the first record of the day deletes what has passed 30 days since
        access.record(node.store, "bo", "case-new", (now + timedelta(days=2)).isoformat())
        assert [r.case_id for r in access.recent(node.store, 10)[0]] == ["case-new", "case-1"]
        if node.config.store is None:  # SQLite's plan (PostgreSQL's EXPLAIN says it otherwise)
            plan = node.store.query("EXPLAIN QUERY PLAN DELETE FROM desk_access WHERE at < ?",
                                    ("2026",))  # fmt: skip
            assert any("desk_access_at" in str(row) for row in plan)


@pytest.mark.parametrize("value", [0, -5, "ten", True, 2.5])
def test_desk_access_days_bad_value_is_the_default(value: object) -> None:
    assert access.retention_days({access.RETENTION_SETTING: value}) == access.RETENTION_DEFAULT
    assert access.retention_days({access.RETENTION_SETTING: 7}) == 7


def test_desk_opening_the_node_applies_the_retention(desk_city: Path) -> None:
    path = desk_city / "node.toml"
    config = tomllib.loads(path.read_text("utf-8"))
    config.setdefault("settings", {})[access.RETENTION_SETTING] = 30
    path.write_text(tomli_w.dumps(config), "utf-8")
    with open_home(desk_city) as node:
        access.ensure(node.store)
        access.record(node.store, "ana", "old", "2000-01-01T09:00:00+08:00")
        access.record(node.store, "ana", "today", node.clock.now().isoformat())
    clock = Clock()
    with _desk_served(desk_city, clock) as url, client(url) as web:
        login(web)  # the desk opens the node
        with open_home(desk_city) as node:
            assert [r.case_id for r in access.recent(node.store, 10)[0]] == ["today"]
