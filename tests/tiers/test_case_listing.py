"""`tiers.cases.listing`: the searched, paged case list, judged on the 2025 calendar.

October 2025: 1-8 off (国庆, 中秋), Saturday the 11th a working day. A1 is the town's 承诺件
of 5 working days, C3 a 即办件; the node's clock stands on 9 October 2025 (tests.helpers_cases).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from sync.node import Node
from sync.protocol.errors import CaseError
from tests.helpers_cases import town_node
from tiers.cases import listing, service
from tiers.cases.listing import Filters, find

WHO = {
    "王秀英": ("330782196211197795", "13857901234"),
    "王小明": ("33078219900101123X", "13900001111"),
    "李四": (None, "057985123456"),
    "赵%_六": (None, None),  # LIKE's wildcards in a name: taken literally
}


@pytest.fixture
def town(tmp_path: Path) -> Iterator[Node]:
    with town_node(tmp_path) as node:
        yield node


def _who(name: str) -> service.Applicant:
    id_no, phone = WHO[name]
    return service.Applicant(name, id_no, phone)


def _ids(page: listing.Page) -> list[str]:
    return [row["case_id"] for row in page.rows]


def _many(town: Node, count: int) -> list[str]:
    """`count` A1 cases received on successive days from 1 September, newest last."""
    made = []
    for n in range(count):
        day = date(2025, 9, 1) + timedelta(days=n)
        made.append(service.receive(town, "A1", _who("李四"), at=f"{day}T09:00"))
    return made


def test_listing_pages_newest_first_with_the_count_of_the_rest(town: Node) -> None:
    made = _many(town, 7)
    newest = list(reversed(made))
    first = find(town.store, date(2025, 10, 9), 1, limit=3)
    assert _ids(first) == newest[:3] and (first.total, first.rest) == (7, 4)
    second = find(town.store, date(2025, 10, 9), 1, limit=3, offset=3)
    assert _ids(second) == newest[3:6] and second.rest == 1
    last = find(town.store, date(2025, 10, 9), 1, limit=3, offset=6)
    assert _ids(last) == newest[6:] and last.rest == 0
    assert _ids(find(town.store, date(2025, 10, 9), 1)) == newest  # no limit: all
    past = find(town.store, date(2025, 10, 9), 1, limit=3, offset=9)
    assert past.rows == [] and past.total == 7


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param(Filters(applicant="王"), {"王秀英", "王小明"}, id="part-of-name"),
        pytest.param(Filters(applicant="%_"), {"赵%_六"}, id="wildcards-literal"),
        pytest.param(Filters(id_no="330782196211197795"), {"王秀英"}, id="whole-id"),
        pytest.param(Filters(id_no="33078219900101123x"), {"王小明"}, id="whole-id-lower-x"),
        pytest.param(Filters(id_no="123x"), {"王小明"}, id="id-last-digits"),
        pytest.param(Filters(phone="13857901234"), {"王秀英"}, id="whole-phone"),
        pytest.param(Filters(phone="3456"), {"李四"}, id="phone-last-digits"),
        pytest.param(Filters(item="C3"), {"王小明"}, id="item-code"),
        pytest.param(Filters(item="居住"), {"王秀英", "李四", "赵%_六"}, id="part-of-item-name"),
        pytest.param(Filters(status="received"), {"李四"}, id="status"),
        pytest.param(
            Filters(since=date(2025, 10, 2), until=date(2025, 10, 3)),
            {"王小明", "李四"},
            id="received-between",
        ),
        pytest.param(Filters(until=date(2025, 10, 1)), {"王秀英"}, id="received-until"),
        pytest.param(Filters(applicant="王", item="A1"), {"王秀英"}, id="together"),
        pytest.param(Filters(applicant="钱"), set(), id="nobody"),
    ],
)
def test_listing_searches(town: Node, filters: Filters, expected: set[str]) -> None:
    service.accept(town, item_code="A1", applicant=_who("王秀英"), at="2025-10-01T09:00")
    service.accept(town, item_code="C3", applicant=_who("王小明"), at="2025-10-02T09:00")
    service.receive(town, "A1", _who("李四"), at="2025-10-03T23:59")
    service.accept(town, item_code="A1", applicant=_who("赵%_六"), at="2025-10-04T09:00")
    found = find(town.store, date(2025, 10, 9), 1, filters)
    assert {row["applicant"] for row in found.rows} == expected
    assert found.total == len(expected)


def test_listing_node_means_the_node_and_those_under_it(tmp_path: Path) -> None:
    from tests.helpers_cases import VILLAGE, network

    with network(tmp_path) as net:
        own = service.accept(net.town, item_code="A1", applicant=_who("李四"), at="2025-10-09")
        theirs = service.receive(net.village, "B2", _who("李四"), at="2025-10-09T10:00")
        net.up()
        store = net.town.store
        today = date(2025, 10, 9)
        assert set(_ids(find(store, today, 1, Filters(node=VILLAGE)))) == {theirs}
        assert set(_ids(find(store, today, 1, Filters(node=net.town.node_id)))) == {own, theirs}
        with pytest.raises(CaseError) as bad:
            find(store, today, 1, Filters(node="33078x"))
        assert bad.value.key == "case.bad_node"


def _varied(town: Node) -> None:
    """Cases that take each warning on some day in October and November 2025."""
    for day in ("2025-09-29", "2025-10-09", "2025-10-10", "2025-10-13", "2025-10-16"):
        service.accept(town, item_code="A1", applicant=_who("李四"), at=f"{day}T09:00")
        service.receive(town, "A1", _who("李四"), at=f"{day}T10:00")
        done = service.accept(town, item_code="C3", applicant=_who("李四"), at=f"{day}T11:00")
        service.complete(town, done, "approved", at=f"{day}T16:00")
    paused = service.accept(town, item_code="A1", applicant=_who("李四"), at="2025-10-09T09:00")
    service.suspend(town, paused, "实地勘察", at="2025-10-13T09:00")


@pytest.mark.parametrize("threshold", [0, 1, 3])
def test_listing_warning_search_finds_exactly_the_cases_with_that_warning(
    town: Node, threshold: int
) -> None:
    """The SQL narrowing never loses a case: each warning search returns what judging every
    case one by one returns, day after day (holidays, weekends, a paused case included)."""
    _varied(town)
    seen = set()
    for offset in range(0, 50, 2):
        today = date(2025, 10, 1) + timedelta(days=offset)
        every = find(town.store, today, threshold).rows
        for colour in listing.WARNINGS:
            expected = [row["case_id"] for row in every if row["warning"] == colour]
            found = find(town.store, today, threshold, Filters(warning=colour))
            assert _ids(found) == expected, (today, colour)
            assert found.total == len(expected)
            seen |= {colour} if expected else set()
    assert seen == set(listing.WARNINGS)  # the data did put every warning to the test


def test_listing_warning_search_pages(town: Node) -> None:
    made = [service.accept(town, item_code="A1", applicant=_who("李四"), at=f"2025-09-{d}")
            for d in ("22", "23", "24", "25", "26")]  # fmt: skip
    page = find(town.store, date(2025, 10, 20), 1, Filters(warning="red"), limit=2, offset=1)
    assert _ids(page) == list(reversed(made))[1:3] and (page.total, page.rest) == (5, 2)


def test_listing_rows_keep_the_list_keys_and_add_details(town: Node) -> None:
    case_id = service.accept(town, item_code="A1", applicant=_who("王秀英"), at="2025-10-09")
    (row,) = find(town.store, date(2025, 10, 10), 1).rows
    assert row == {
        "case_id": case_id, "item_code": "A1", "item_name": "居住证", "status": "accepted",
        "holder": town.node_id, "origin": town.node_id, "applicant": "王秀英",
        "phone": "13857901234", "received_at": "2025-10-09T09:00:00+08:00",
        "accepted_at": "2025-10-09T09:00:00+08:00", "deadline": "2025-10-15",
        "remaining_days": 4, "warning": None, "provisional": False, "completed_at": None,
        "result": None, "provisional_years": [],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("filters", "key"),
    [
        pytest.param(Filters(status="lost"), "case.bad_status", id="status"),
        pytest.param(Filters(warning="blue"), "case.bad_warning", id="warning"),
        pytest.param(
            Filters(since=date(2025, 10, 2), until=date(2025, 10, 1)), "case.bad_span", id="span"
        ),
    ],
)
def test_listing_refuses_what_cannot_match(town: Node, filters: Filters, key: str) -> None:
    with pytest.raises(CaseError) as refused:
        find(town.store, date(2025, 10, 9), 1, filters)
    assert refused.value.key == key


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        pytest.param(Filters(), "COVERING INDEX cases_received", id="newest-first"),
        pytest.param(Filters(warning="red"), "COVERING INDEX cases_due", id="overdue"),
        pytest.param(Filters(phone="13857901234"), "INDEX cases_phone", id="whole-phone"),
        pytest.param(Filters(id_no="330782196211197795"), "INDEX cases_id_no", id="whole-id"),
    ],
)
def test_listing_queries_use_an_index(town: Node, filters: Filters, index: str) -> None:
    """A page's cases are picked from an index, not by reading and sorting every case;
    the count comes from the same index."""
    _many(town, 3)
    terms, params = listing._where(filters)
    if filters.warning:
        cal = listing.work_calendar(town.store)
        term, more = listing._candidates(filters.warning, cal, date(2025, 10, 9), 1)
        terms, params = [*terms, term], [*params, *more]
    count_sql, page_sql = listing.queries(terms, by_item=False)
    for sql, args, wanted in ((count_sql, params, "INDEX"), (page_sql, [*params, 5, 0], index)):
        plan = " | ".join(
            str(r[-1]) for r in town.store.query(f"EXPLAIN QUERY PLAN {sql}", tuple(args))
        )
        assert wanted in plan, plan  # the count: from whichever index covers it
