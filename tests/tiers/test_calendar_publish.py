"""Publishing the calendar (issue #12 part 8): each year declares whether it is the whole
year; a year declared whole must plausibly be the 国务院办公厅 notice's whole year, on the
publishing node and on every node that receives it; old entries without the declaration
still verify and count as the days they list."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path

import pytest

from sync.clock import ZONE, Clock
from sync.node import Node
from sync.protocol.entry import encode_entry
from sync.protocol.errors import CatalogueError, StoreError
from sync.protocol.i18n import use_locale
from tests.hostile.harness import sign_raw
from tests.support.calendars import NEW_YEAR_ONLY_2027, WHOLE_2027
from tests.support.postgres import city_store
from tiers.calendar import CalendarOverrides, YearArrangement
from tiers.calendar_publish import publish_calendar, year_view
from tiers.node import create_home
from tiers.published import CALENDAR_OVERRIDE, calendar_state, work_calendar

# its cities on SQLite, then on PostgreSQL: there in the soak run but for the tests marked
# pg_ci (a bounded sample in CI: tests/support/postgres.py soak_marks)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]

CITY, TOWN = "330782", "330782001"
D = date.fromisoformat
NodeFactory = Callable[[str], Node]
# New Year's Day alone, declared the whole of 2027: what the receivers must not believe.
BOGUS_WHOLE = {"days": {}, "years": {"2027": {"complete": True, "holidays": ["2027-01-01"],
                                              "workdays": []}}}  # fmt: skip


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    use_locale("en")
    yield
    use_locale(None)


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[NodeFactory]:
    opened: list[Node] = []
    clock = Clock(now=lambda: datetime(2026, 12, 1, 10, 0, tzinfo=ZONE))

    def make(node_id: str) -> Node:
        options: dict[str, str | None] = {"tier": "city", "node_id": node_id, "name": node_id,
                                          "store": city_store()}  # city_engine's, if any
        if node_id != CITY:
            options |= {"tier": "town", "parent_id": CITY, "root_key": opened[0].config.root_key,
                        "store": None}
        node = create_home(tmp_path / node_id, clock=clock, **options)
        opened.append(node)
        return node

    yield make
    for node in opened:
        node.close()


def _head(node: Node) -> int:
    return node.store.head(node.node_id)[0]


def _arrive(source: Node, target: Node) -> None:
    held, _ = target.store.head(source.node_id)
    with target.store.transaction():
        target.store.insert(
            source.store.entries(source.node_id, after=held), "2026-12-01T10:00:00+08:00"
        )


@pytest.mark.parametrize(
    ("arrangement", "key"),
    [
        pytest.param(YearArrangement(frozenset({D("2027-01-01")})), "calendar.undeclared",
                     id="undeclared"),
        pytest.param(YearArrangement(frozenset({D("2027-01-01")}), complete=True),
                     "calendar.not_whole_year", id="new-year-declared-whole"),
        pytest.param(YearArrangement(complete=True), "calendar.not_whole_year", id="empty-whole"),
    ],
)  # fmt: skip
def test_publish_calendar_refuses_and_appends_nothing(
    make_node: NodeFactory, arrangement: YearArrangement, key: str
) -> None:
    city = make_node(CITY)
    before = _head(city)
    with pytest.raises(CatalogueError) as caught:
        publish_calendar(city, CalendarOverrides({2027: arrangement}, {D("2027-05-06"): True}))
    assert caught.value.key == key
    assert _head(city) == before
    assert calendar_state(city.store).overrides == CalendarOverrides()


def test_publish_calendar_whole_year_replaces_partial_and_refuses_going_back(
    make_node: NodeFactory,
) -> None:
    city = make_node(CITY)
    first = publish_calendar(city, CalendarOverrides({2027: NEW_YEAR_ONLY_2027}))
    assert (first.years, first.complete) == ((2027,), ())
    assert not work_calendar(city.store).knows_year(2027)
    whole = publish_calendar(city, CalendarOverrides({2027: WHOLE_2027}))
    assert (whole.seq, whole.complete) == (first.seq + 1, (2027,))  # type: ignore[operator]
    assert work_calendar(city.store).knows_year(2027)
    with pytest.raises(CatalogueError) as caught:
        publish_calendar(city, CalendarOverrides({2027: NEW_YEAR_ONLY_2027}))
    assert caught.value.key == "calendar.downgrade"
    assert _head(city) == whole.seq
    # A single local day stays possible, under "days", and keeps the year whole.
    publish_calendar(city, CalendarOverrides(days={D("2027-03-08"): False}))
    calendar = work_calendar(city.store)
    assert calendar.knows_year(2027) and not calendar.is_workday(D("2027-03-08"))


def test_old_entry_without_the_declaration_verifies_and_counts_its_days(
    make_node: NodeFactory,
) -> None:
    # As a node before issue #12 wrote it: accepted as it is, read as New Year's Day only.
    city = make_node(CITY)
    old = {"days": {}, "years": {"2027": {"holidays": ["2027-01-01"], "workdays": []}}}
    city.append(CALENDAR_OVERRIDE, old)
    calendar = work_calendar(city.store)
    assert not calendar.is_workday(D("2027-01-01"))
    assert calendar.is_workday(D("2027-02-08"))  # 春节 still a guess
    assert not calendar.knows_year(2027)
    view = year_view(city.store, 2027).to_json()
    assert (view["source"], view["known"], view["complete"]) == ("guessed", False, None)


@pytest.mark.pg_ci
def test_city_itself_cannot_append_a_bogus_whole_year(make_node: NodeFactory) -> None:
    city = make_node(CITY)
    before = _head(city)
    with pytest.raises(StoreError):
        city.append(CALENDAR_OVERRIDE, BOGUS_WHOLE)
    assert _head(city) == before


def test_received_bogus_whole_year_from_the_city_is_quarantined(make_node: NodeFactory) -> None:
    # The city's real key, modified software: New Year's Day alone signed as the whole of
    # 2027. A receiver checks what it can — the notice's shape — and sets the entry aside.
    city, town = make_node(CITY), make_node(TOWN)
    _arrive(city, town)
    seq, prev = city.store.head(CITY)
    raw = encode_entry(CITY, seq + 1, prev, "2026-12-01T10:00:00+08:00", CALENDAR_OVERRIDE,
                       BOGUS_WHOLE)  # fmt: skip
    with town.store.transaction():
        town.store.insert([sign_raw(city.signer, raw, CITY, seq + 1, CALENDAR_OVERRIDE)],
                          "2026-12-01T10:00:00+08:00")  # fmt: skip
    held = town.store.quarantined()
    assert [(q["origin"], q["seq"], q["reason"]) for q in held] == [
        (CITY, seq + 1, "calendar.not_whole_year")
    ]
    assert "no weekday off for 春节" in held[0]["detail"]
    assert town.store.head(CITY)[0] == seq + 1  # kept in the chain, as evidence
    assert calendar_state(town.store).overrides == CalendarOverrides()
    assert not work_calendar(town.store).knows_year(2027)


def test_town_partial_year_left_out_where_the_city_decides(make_node: NodeFactory) -> None:
    city, town = make_node(CITY), make_node(TOWN)
    publish_calendar(city, CalendarOverrides({2027: WHOLE_2027}))
    _arrive(city, town)
    result = publish_calendar(town, CalendarOverrides({2027: NEW_YEAR_ONLY_2027}))
    assert (result.seq, result.overridden) == (None, (2027,))
    assert work_calendar(town.store).knows_year(2027)
