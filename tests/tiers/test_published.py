"""The published catalogue and calendar: entries, projections, precedence, idempotent imports."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from sync.clock import ZONE, Clock
from sync.node import Node
from sync.protocol.entry import encode_entry, parse_envelope
from sync.protocol.errors import CatalogueError, EntryError
from sync.protocol.i18n import use_locale
from sync.relevance import select_for
from tests.support.calendars import NEW_YEAR_ONLY_2027, WHOLE_2027
from tests.support.postgres import city_store
from tiers.calendar import CalendarOverrides, YearArrangement
from tiers.calendar_publish import parse_overrides, publish_calendar
from tiers.catalogue import CatalogueItem, parse_catalogue
from tiers.node import create_home
from tiers.published import (
    CALENDAR_OVERRIDE,
    CATALOGUE_ITEM,
    ImportResult,
    calendar_state,
    get_item,
    list_items,
    list_published,
    publish_items,
    work_calendar,
)

# its cities on SQLite, then on PostgreSQL: there in the soak run but for the tests marked
# pg_ci (a bounded sample in CI: tests/support/postgres.py soak_marks)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]

SHARED_CATALOGUE = Path(__file__).resolve().parents[2] / "tiers" / "data" / "catalogue.csv"
CITY, TOWN, VILLAGE = "330782", "330782001", "330782001201"
D = date.fromisoformat
ARRANGEMENT_2027 = WHOLE_2027  # illustrative: Mon 02-08 off (春节), Sat 02-20 worked

NodeFactory = Callable[..., Node]


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    use_locale("en")
    yield
    use_locale(None)


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[NodeFactory]:
    """Create nodes in tmp_path (the city first: others pin its key); closes them afterwards."""
    opened: list[Node] = []
    clock = Clock(now=lambda: datetime(2025, 10, 9, 10, 0, tzinfo=ZONE))

    def make(node_id: str) -> Node:
        tier = {6: "city", 9: "town", 12: "village"}[len(node_id)]
        options: dict[str, str | None] = {
            "tier": tier,
            "node_id": node_id,
            "name": f"node {node_id}",
        }
        if tier != "city":
            parent = node_id[: 6 if tier == "town" else 9]
            options |= {"parent_id": parent, "root_key": opened[0].config.root_key}
        else:
            options["store"] = city_store()  # city_engine's, if any
        node = create_home(tmp_path / node_id, clock=clock, **options)
        opened.append(node)
        return node

    yield make
    for node in opened:
        node.close()


@pytest.fixture
def shared_items() -> list[CatalogueItem]:
    return parse_catalogue(SHARED_CATALOGUE.read_bytes(), SHARED_CATALOGUE.name)


def arrive(source: Node, target: Node) -> None:
    """Apply what `source` wrote and `target` lacks, as a sync batch would (one transaction)."""
    head, _ = target.store.head(source.node_id)
    entries = source.store.entries(source.node_id, after=head)
    with target.store.transaction():
        target.store.insert(entries, "2025-10-09T10:00:00+08:00")


def head(node: Node) -> int:
    return node.store.head(node.node_id)[0]


def renamed(item: CatalogueItem, suffix: str) -> CatalogueItem:
    return dataclasses.replace(item, name=item.name + suffix)


def test_publish_items_shared_catalogue_publishes_fifteen(
    make_node: NodeFactory, shared_items: list[CatalogueItem]
) -> None:
    city = make_node(CITY)
    before = head(city)
    assert publish_items(city, shared_items) == ImportResult(15, 0, 0)
    assert head(city) == before + 15
    assert list_items(city.store) == sorted(shared_items, key=lambda item: item.code)
    fee = get_item(city.store, "330782-WS-001")
    assert fee is not None and fee.fee_fen == 4500
    assert get_item(city.store, "no-such-code") is None


def test_publish_items_reimport_appends_nothing(
    make_node: NodeFactory, shared_items: list[CatalogueItem]
) -> None:
    city = make_node(CITY)
    publish_items(city, shared_items)
    published = head(city)
    assert publish_items(city, shared_items) == ImportResult(0, 0, 15)
    assert head(city) == published


@pytest.mark.pg_ci
def test_publish_items_changed_item_appends_one(
    make_node: NodeFactory, shared_items: list[CatalogueItem]
) -> None:
    city = make_node(CITY)
    publish_items(city, shared_items)
    published = head(city)
    changed = [dataclasses.replace(i, fee_fen=5000) if i.code == "330782-WS-001" else i
               for i in shared_items]  # fmt: skip
    assert publish_items(city, changed, at="2025-10-10") == ImportResult(0, 1, 14)
    assert head(city) == published + 1
    assert city.store.entry(CITY, published + 1).fields()["at"] == "2025-10-10T09:00:00+08:00"  # type: ignore[union-attr]
    item = get_item(city.store, "330782-WS-001")
    assert item is not None and item.fee_fen == 5000


def test_publish_items_appends_all_or_nothing(
    make_node: NodeFactory, shared_items: list[CatalogueItem]
) -> None:
    city = make_node(CITY)
    before = head(city)
    too_big = dataclasses.replace(shared_items[1], materials=("材料" * 10,) * 1000)
    with pytest.raises(EntryError):
        publish_items(city, [shared_items[0], too_big])
    assert head(city) == before
    assert list_items(city.store) == []


def test_published_city_wins_over_local_when_city_arrives_later(
    make_node: NodeFactory, shared_items: list[CatalogueItem]
) -> None:
    city, town = make_node(CITY), make_node(TOWN)
    assert publish_items(town, [renamed(shared_items[0], "（本镇）")]) == ImportResult(1, 0, 0)
    publish_items(city, shared_items)
    arrive(city, town)
    assert get_item(town.store, shared_items[0].code) == shared_items[0]
    assert {(p.item.code, p.origin) for p in list_published(town.store)} == {
        (item.code, CITY) for item in shared_items
    }


def test_published_city_wins_over_local_when_local_is_later(
    make_node: NodeFactory, shared_items: list[CatalogueItem]
) -> None:
    city, town = make_node(CITY), make_node(TOWN)
    publish_items(city, shared_items)
    arrive(city, town)
    local = renamed(shared_items[0], "（本镇）")
    town.append(CATALOGUE_ITEM, local.to_body())
    assert get_item(town.store, local.code) == shared_items[0]
    assert publish_items(town, [local]) == ImportResult(0, 0, 0, overridden=1)
    assert head(town) == 1


def test_published_later_seq_wins_when_a_partial_log_arrives_out_of_order(
    make_node: NodeFactory, shared_items: list[CatalogueItem]
) -> None:
    city, town = make_node(CITY), make_node(TOWN)
    publish_items(city, shared_items[:1])
    first = head(city)
    publish_items(city, [renamed(shared_items[0], "（新）")])
    newer, older = city.store.entry(CITY, first + 1), city.store.entry(CITY, first)
    assert newer is not None and older is not None
    assert (newer.type, older.type) == (CATALOGUE_ITEM, CATALOGUE_ITEM)
    with town.store.transaction():
        for entry in (newer, older):
            town.store.insert([entry], "2025-10-09T10:00:00+08:00", whole=False)
    assert [(p.item.name, p.seq) for p in list_published(town.store)] == [
        (shared_items[0].name + "（新）", first + 1)
    ]


def test_published_entries_flow_down_to_nodes_below(
    make_node: NodeFactory, shared_items: list[CatalogueItem]
) -> None:
    city = make_node(CITY)
    before = head(city)
    publish_items(city, shared_items[:2])
    publish_calendar(city, CalendarOverrides({2027: ARRANGEMENT_2027}))
    entries, more = select_for(city.store, TOWN, {}, 100)
    sent = [(e.origin, e.seq, e.type) for e in entries]
    assert sent[:before] == [
        (CITY, e.seq, e.type) for e in city.store.entries(CITY, through=before)
    ]
    assert sent[before:] == [
        (CITY, before + 1, CATALOGUE_ITEM),
        (CITY, before + 2, CATALOGUE_ITEM),
        (CITY, before + 3, CALENDAR_OVERRIDE),
    ]
    assert not more


def test_published_town_import_never_changes_what_a_village_uses(
    make_node: NodeFactory, shared_items: list[CatalogueItem]
) -> None:
    """Only the city publishes for others: a town's own import (standalone use) counts at
    the town alone; arriving at a village it is set aside, and the village keeps its own."""
    make_node(CITY)
    town, village = make_node(TOWN), make_node(VILLAGE)
    publish_items(village, [renamed(shared_items[0], "（本村）")])
    publish_items(town, [renamed(shared_items[0], "（本镇）"), shared_items[1]])
    arrive(town, village)
    assert [item.name for item in list_items(village.store)] == [shared_items[0].name + "（本村）"]
    assert [item.name for item in list_items(town.store)] == [
        shared_items[0].name + "（本镇）",
        shared_items[1].name,
    ]
    assert {(q["origin"], q["reason"]) for q in village.store.quarantined()} == {
        (TOWN, "published.not_city")
    }


def test_published_local_import_works_without_city(
    make_node: NodeFactory, shared_items: list[CatalogueItem]
) -> None:
    make_node(CITY)
    town = make_node(TOWN)
    assert publish_items(town, shared_items) == ImportResult(15, 0, 0)
    assert publish_items(town, shared_items) == ImportResult(0, 0, 15)
    assert len(list_items(town.store)) == 15


def _body(shared: CatalogueItem, **changes: Any) -> dict[str, Any]:
    body = shared.to_body() | changes
    return {k: v for k, v in body.items() if v is not ...}


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"name": ...}, id="missing-field"),
        pytest.param({"kind": "承诺"}, id="kind-not-canonical"),
        pytest.param({"fee_fen": -1}, id="negative-fee"),
        pytest.param({"fee_fen": "45.00"}, id="fee-as-text"),
        pytest.param({"accept_tiers": ["city", "town"]}, id="tiers-out-of-order"),
        pytest.param({"name": " padded "}, id="untrimmed-text"),
        pytest.param({"extra": 1}, id="unknown-field"),
    ],
)
def test_catalogue_item_body_check_refuses_malformed(
    make_node: NodeFactory, shared_items: list[CatalogueItem], changes: dict[str, Any]
) -> None:
    raw = encode_entry(CITY, 1, None, "2025-10-09T10:00:00+08:00", CATALOGUE_ITEM,
                       _body(shared_items[0], **changes))  # fmt: skip
    with pytest.raises(EntryError) as caught:
        parse_envelope(raw)
    assert caught.value.reason_key == "entry.schema"
    city = make_node(CITY)
    before = head(city)
    with pytest.raises(EntryError):
        city.append(CATALOGUE_ITEM, _body(shared_items[0], **changes))
    assert head(city) == before


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"years": {"27": {"holidays": [], "workdays": []}}, "days": {}}, id="year"),
        pytest.param({"years": {}, "days": {"2027-02-30": True}}, id="no-such-day"),
        pytest.param({"years": {}, "days": {"2027-02-03": 1}}, id="not-bool"),
        pytest.param({"years": {}}, id="not-canonical"),
    ],
)
def test_calendar_override_body_check_refuses_malformed(body: dict[str, Any]) -> None:
    raw = encode_entry(CITY, 1, None, "2025-10-09T10:00:00+08:00", CALENDAR_OVERRIDE, body)
    with pytest.raises(EntryError) as caught:
        parse_envelope(raw)
    assert caught.value.reason_key == "entry.schema"


def test_work_calendar_override_makes_2027_known(make_node: NodeFactory) -> None:
    city = make_node(CITY)
    before = head(city)
    assert not work_calendar(city.store).is_known(D("2027-03-01"))
    result = publish_calendar(city, CalendarOverrides({2027: ARRANGEMENT_2027}))
    assert result.seq == before + 1 and result.years == (2027,)
    calendar = work_calendar(city.store)
    assert calendar.is_known(D("2027-03-01"))
    assert not calendar.is_workday(D("2027-02-08"))  # a Monday off
    assert calendar.is_workday(D("2027-02-20"))  # a Saturday worked


def test_work_calendar_is_reused_until_overrides_change(make_node: NodeFactory) -> None:
    city = make_node(CITY)
    first = work_calendar(city.store)
    assert work_calendar(city.store) is first
    publish_calendar(city, CalendarOverrides(days={D("2026-06-01"): False}))
    second = work_calendar(city.store)
    assert second is not first and not second.is_workday(D("2026-06-01"))
    assert work_calendar(city.store) is second


def test_publish_calendar_twice_appends_nothing_and_merges_days(make_node: NodeFactory) -> None:
    city = make_node(CITY)
    before = head(city)
    overrides = CalendarOverrides({2027: ARRANGEMENT_2027}, {D("2026-06-01"): False})
    assert publish_calendar(city, overrides).seq == before + 1
    assert publish_calendar(city, overrides).seq is None
    assert head(city) == before + 1
    publish_calendar(city, CalendarOverrides(days={D("2026-06-02"): False}))
    state = calendar_state(city.store)
    assert state.overrides.days == {D("2026-06-01"): False, D("2026-06-02"): False}
    assert state.years[2027].seq == before + 1
    assert state.days[D("2026-06-02")].seq == before + 2


@pytest.mark.parametrize("city_first", [pytest.param(True, id="city-first"),
                                        pytest.param(False, id="local-first")])  # fmt: skip
def test_calendar_city_decides_a_year_whatever_the_order(
    make_node: NodeFactory, city_first: bool
) -> None:
    city, town = make_node(CITY), make_node(TOWN)
    local = CalendarOverrides(
        {2027: YearArrangement(holidays=frozenset({D("2027-03-01")}), complete=False)},
        {D("2027-03-02"): False},
    )
    publish_calendar(city, CalendarOverrides({2027: ARRANGEMENT_2027}))
    if city_first:
        arrive(city, town)
        town.append(CALENDAR_OVERRIDE, local.to_body())
    else:
        publish_calendar(town, local)
        arrive(city, town)
    calendar = work_calendar(town.store)
    assert calendar.is_workday(D("2027-03-01")) and calendar.is_workday(D("2027-03-02"))
    assert not calendar.is_workday(D("2027-02-08"))
    assert calendar_state(town.store).years[2027].origin == CITY
    result = publish_calendar(town, local)
    assert result.seq is None and result.overridden == (2027,)


def test_parse_overrides_names_line_and_column() -> None:
    with pytest.raises(CatalogueError) as caught:
        parse_overrides(b'{"years": {\n  "2027": [}}', "cal.json")
    assert str(caught.value).startswith("cal.json line 2, column ")


def test_parse_overrides_refuses_unknown_keys() -> None:
    with pytest.raises(CatalogueError) as caught:
        parse_overrides(b'{"year": {}}', "cal.json")
    assert str(caught.value).startswith("cal.json: expected")


def test_parse_overrides_reads_years_and_days() -> None:
    data = (
        b'{"years": {"2027": {"complete": false, "holidays": ["2027-01-01"]}},'
        b' "days": {"2026-06-01": true}}'
    )
    overrides = parse_overrides(data, "cal.json")
    assert overrides.years[2027] == NEW_YEAR_ONLY_2027
    assert overrides.days == {D("2026-06-01"): True}
