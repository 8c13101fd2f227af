"""The city's tier projections and reads on PostgreSQL give what they give on SQLite.

Two networks are built the same way in process (tests/tiers/test_figures.py's `small_city`
and `hand_built_month`): one with every node on SQLite, one whose city keeps its store in a
fresh PostgreSQL database (`pg_url`). Figures by every grouping, `case list` pages, reconcile
findings, the desk's cached figures and its tables must be equal. A hostile town (its own
real key, modified software: tests/hostile/harness.py `Actor`) then writes SQL-looking text
and text where numbers belong; the PostgreSQL city stores it, quarantines or shows it as
text, exactly as the SQLite city does, and none of it is executed.

The city is created on PostgreSQL as `zhibao init --store URL` creates it (`create_home(...,
store=url)`, `_pg_city`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from sync.clock import ZONE
from sync.pg import PgStore
from tests.helpers_cases import ITEMS
from tests.hostile.harness import Actor
from tests.support.topology import CITY, TOWN, VILLAGE, hand_up
from tests.tiers import test_figures
from tests.tiers.test_figures import AFTER, OCTOBER, City, hand_built_month, push, small_city, t
from tiers.cases import listing
from tiers.cases.listing import Filters
from tiers.city.network import network_health
from tiers.city.reconcile import reconcile
from tiers.city.stats import BY, compute_stats
from tiers.desk import access, users
from tiers.desk import figures as desk_figures
from tiers.figures import parse_period
from tiers.rectification import list_rectifications

NOW = datetime(2025, 11, 20, 9, tzinfo=ZONE)
ITEM_A1 = next(item for item in ITEMS if item.code == "A1").to_body()
SQL_LOOKING = (
    "'); DROP TABLE cases; --",
    "%s",
    "%(x)s",
    "?",
    "\\u0000",  # a backslash and "u0000": what a NUL looks like in JSON, no NUL
    "x' OR '1'='1",
)


@contextmanager
def _pg_city(url: str) -> Iterator[None]:
    """While open, the city `small_city` creates keeps its store in `url`, as `zhibao init
    --store URL` makes it (towns and villages on SQLite, as always)."""
    real = test_figures.create_home

    def create(home: Path, **options: Any) -> Any:
        if options.get("node_id") == CITY:
            options["store"] = url
        return real(home, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(test_figures, "create_home", create)
        yield


@contextmanager
def _twins(tmp_path: Path, pg_url: str) -> Iterator[tuple[City, City]]:
    """The same month built twice: every node on SQLite, and with the city on PostgreSQL."""
    with small_city(tmp_path / "lite") as lite:
        hand_built_month(lite)
        with _pg_city(pg_url), small_city(tmp_path / "pg") as pg:
            assert isinstance(pg.city.store, PgStore)
            hand_built_month(pg)
            yield lite, pg


def _lists(store: Any) -> dict[str, Any]:
    """`case list` pages under the filters a clerk uses (rows, offset, total)."""
    asked = {
        "all": Filters(),
        "item": Filters(item="A1"),
        "item_name": Filters(item="居住"),
        "department": Filters(department="公安"),
        "node": Filters(node=TOWN),
        "village": Filters(node=VILLAGE),
        "status": Filters(status="completed"),
        "applicant": Filters(applicant="王建"),
        "phone_tail": Filters(phone="0001"),
        "phone": Filters(phone="13805790001"),
        "red": Filters(warning="red"),
        "yellow": Filters(warning="yellow"),
        "since": Filters(since=date(2025, 10, 10), until=date(2025, 10, 20)),
    }
    out = {name: listing.find(store, AFTER, 3, f) for name, f in asked.items()}
    out["page2"] = listing.find(store, AFTER, 3, Filters(), limit=3, offset=3)
    return {name: (p.rows, p.offset, p.total) for name, p in out.items()}


def _figures(store: Any) -> dict[tuple[str, str], Any]:
    periods = [OCTOBER, parse_period("2025-11"), parse_period("2025"), parse_period("2025-Q4")]
    return {
        (p.label, by): compute_stats(store, p, by, AFTER) for p in periods for by in BY
    }  # fmt: skip


def _without_hashes(value: Any) -> Any:
    """Findings as compared across the two networks: entry hashes differ (each network's
    keys are its own, so every chain differs), nothing else may."""
    if isinstance(value, dict):
        return {k: _without_hashes(v) for k, v in value.items() if "hash" not in k}
    if isinstance(value, list):
        return [_without_hashes(v) for v in value]
    return value


def _reads(net: City) -> dict[str, Any]:
    city = net.city
    found = reconcile(city, "2025-10", now=NOW)
    return {
        "lists": _lists(city.store),
        "reconcile": _without_hashes(found),
        "rectifications": list_rectifications(city.store, AFTER, 10, 3),
        "network": _without_hashes(network_health(city, now=NOW)),
        "quarantine": _without_hashes(city.store.quarantine_counts()),
        "quarantined": _without_hashes(city.store.quarantined()),
    }


def test_tiers_on_pg_figures_lists_and_findings_equal_sqlite(tmp_path: Path, pg_url: str) -> None:
    with _twins(tmp_path, pg_url) as (lite, pg):
        on_pg = _figures(pg.city.store)
        assert on_pg == _figures(lite.city.store)
        town = {r["key"]: r for r in on_pg[("2025-10", "node")]["rows"]}[TOWN]
        assert (town["accepted"], town["completed"], town["fees_paid_fen"]) == (9, 8, 4100)
        assert isinstance(town["fees_paid_fen"], int) and isinstance(town["avg_days"], float)
        reads = _reads(pg)
        assert reads == _reads(lite)
        assert reads["lists"]["all"][2] == 12  # 1–7 and 10–14 (13: September)
        assert reads["lists"]["red"][2] == 2  # 11 and 14: due 10-27 and 11-06, open
        assert reads["reconcile"]["findings"]  # something to compare (a late case at least)


def test_tiers_on_pg_desk_figures_and_tables_equal_sqlite(tmp_path: Path, pg_url: str) -> None:
    desk_figures.forget()
    with _twins(tmp_path, pg_url) as (lite, pg):
        for net in (lite, pg):  # computed, then served from the cache: the same
            for by in BY:
                first = desk_figures.stats(net.city, OCTOBER, by, AFTER)
                assert desk_figures.stats(net.city, OCTOBER, by, AFTER) == first
        assert desk_figures.trend(pg.city, "2025-11") == desk_figures.trend(lite.city, "2025-11")
        before = desk_figures.stats(pg.city, OCTOBER, "node", AFTER)
        # a case event after the cached result: the cache must see which case it names
        from tiers.cases import service

        for net in (lite, pg):
            case_id = listing.find(net.city.store, AFTER, 3, Filters(status="accepted")).rows[0]
            service.complete(net.town, case_id["case_id"], "approved", at=t("11-20", "08:00"))
            push(net.town, net.city, t("11-20", "08:30"))
        after = {by: desk_figures.stats(pg.city, OCTOBER, by, AFTER) for by in BY}
        assert after == {by: compute_stats(pg.city.store, OCTOBER, by, AFTER) for by in BY}
        assert after == {by: desk_figures.stats(lite.city, OCTOBER, by, AFTER) for by in BY}
        assert before == after["node"]  # completed in November: October's figures stand
        november = parse_period("2025-11")
        assert desk_figures.stats(pg.city, november, "item", AFTER) == desk_figures.stats(
            lite.city, november, "item", AFTER
        )

        def desk_tables(store: Any) -> Any:
            assert users.anyone(store) is False  # no desk table yet: no error either
            users.add_user(store, "Zhang_san", "admin", "correct horse", "2025-11-20T09:00")
            users.add_user(store, "li.si", "viewer", "correct horse", "2025-11-20T09:01")
            access.ensure(store, {"desk_access_days": 30}, NOW)
            for day in ("09-01", "10-25", "11-19"):
                access.record(store, "li.si", "c-1", t(day), "户口簿.jpg")
            gone = access.prune(store, NOW)
            return users.anyone(store), users.list_users(store), gone, access.recent(store, 10)

        on_pg = desk_tables(pg.city.store)
        assert on_pg == desk_tables(lite.city.store)
        # 09-01 went when 10-25 was recorded (a new day prunes): two are left
        assert on_pg[0] is True and on_pg[2] == 0 and on_pg[3][1] == 2
        assert [u.name for u in on_pg[1]] == ["Zhang_san", "li.si"]  # code point order
    desk_figures.forget()


def _forge_hostile(net: City) -> list[dict[str, object]]:
    """The town, its real key in modified software, writes cases carrying SQL-looking text
    everywhere text goes, a case event out of turn, and at last
    entries with text (SQL, even) where numbers belong; each handed up to the city as a push
    would. What the city made of each push."""
    actor = Actor.of(net.town.home)
    first, second = f"{TOWN}-20251020-0901", f"{TOWN}-20251020-0902"
    prev: list[object] = []
    pushed = []
    for kind, body in (
        ("case.received", {"case_id": first, "after": None, "item_code": "A1",
                           "materials": list(SQL_LOOKING),
                           "applicant": {"name": SQL_LOOKING[0], "id_no": SQL_LOOKING[1],
                                         "phone": SQL_LOOKING[2]}}),
        ("case.accepted", {"case_id": first, "promised_days": 5}),
        ("case.received", {"case_id": second, "after": None, "item_code": SQL_LOOKING[1],
                           "materials": [], "applicant": {"name": SQL_LOOKING[5]}}),
        ("case.accepted", {"case_id": first, "promised_days": 5}),  # a second time
        ("case.suspended", {"case_id": first, "reason": SQL_LOOKING[4]}),
        ("catalogue.item", {**ITEM_A1, "name": SQL_LOOKING[0], "department": "%s"}),  # the
        # city's to publish: quarantined
        ("case.fee_assessed", {"case_id": first, "fee_fen": "1050"}),  # refused at the door:
        ("case.accepted", {"case_id": first, "promised_days": "5); DROP TABLE cases; --"}),
    ):  # fmt: skip
        # (the fee's text refused, so is every entry after it: the log's chain stops there)
        if "after" not in body and kind.startswith("case."):
            body = {**body, "after": prev}
        entry = actor.forge(kind, body, at=t("10-20", "09:00"))
        if body.get("case_id") == first:
            prev = [TOWN, entry.seq]
        pushed.append(hand_up(net.town, net.city))
    return pushed


def test_tiers_on_pg_hostile_text_is_stored_quarantined_or_shown_never_run(
    tmp_path: Path, pg_url: str
) -> None:
    with _twins(tmp_path, pg_url) as (lite, pg):
        store = pg.city.store
        tables = store.query("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()")
        held = int(store.query("SELECT count(*) FROM cases")[0][0])
        pushed = _forge_hostile(pg)
        assert pushed == _forge_hostile(lite)  # applied, refused (and why): the same
        assert [p["applied"] for p in pushed[:6]] == [{TOWN: 1}] * 6
        refused = [p["rejected"] for p in pushed[6:]]
        assert refused[0] == refused[1] and len(refused[0]) == 1  # type: ignore[arg-type]
        assert refused[0][0]["reason_key"] == "entry.schema"  # type: ignore[index]
        # stored: what the city took is in its log as it was signed
        bodies = [json.loads(e.raw)["body"] for e in store.entries(TOWN)[-6:]]
        assert bodies[0]["applicant"] == {"name": SQL_LOOKING[0], "id_no": "%s", "phone": "%(x)s"}
        assert bodies[0]["materials"] == list(SQL_LOOKING)
        # never run: every table is there, the other cases too, and the two new ones
        now = store.query("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()")
        assert now == tables
        assert int(store.query("SELECT count(*) FROM cases")[0][0]) == held + 2
        # shown as text: the applicant as written, in `case list` and in its search
        rows = listing.find(store, AFTER, 3, Filters(applicant="DROP TABLE")).rows
        assert [(r["case_id"], r["applicant"], r["phone"]) for r in rows] == [
            (f"{TOWN}-20251020-0901", SQL_LOOKING[0], "%(x)s")
        ]
        for text in SQL_LOOKING:  # each search finds what it says, taken literally
            on_pg = listing.find(store, AFTER, 3, Filters(applicant=text))
            on_lite = listing.find(lite.city.store, AFTER, 3, Filters(applicant=text))
            assert (on_pg.rows, on_pg.total) == (on_lite.rows, on_lite.total)
            assert on_pg.total == (1 if text in (SQL_LOOKING[0], SQL_LOOKING[5]) else 0), text
        assert listing.find(store, AFTER, 3, Filters(id_no="%s")).total == 1  # 尾号 "%s"
        assert listing.find(store, AFTER, 3, Filters(item="%s")).total == 1  # the item "%s"
        assert listing.find(store, AFTER, 3, Filters(phone="?")).total == 0
        # quarantined: the forged catalogue item, and the catalogue is the city's still
        reads = _reads(pg)
        assert [(q["origin"], q["type"]) for q in reads["quarantined"]] == [
            (TOWN, "catalogue.item")
        ]
        assert listing.find(store, AFTER, 3, Filters(department="%s")).total == 0
        # and every read of the city: the same as on SQLite
        assert reads == _reads(lite)
        assert _figures(store) == _figures(lite.city.store)
