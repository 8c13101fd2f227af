"""Issue #12 part 8: a deadline or a figure resting on a year nobody published whole is
provisional wherever it appears, and the city is told which years it must publish.

The installed chinesecalendar knows years up to 2026. A town accepts a 5-day case (A1) on
Monday 2026-12-28: counting starts the next working day (受理次日起算, DESIGN §3): Tue 12-29,
Wed 12-30, Thu 12-31, then 2027 on weekends alone: Fri 01-01 (a guess: it is 元旦), Mon
01-04 — due 2027-01-04, provisional. With the whole 2027 published (元旦 off): due 01-05.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from sync.clock import ZONE
from sync.protocol.i18n import use_locale
from tests.helpers_cases import Network, network
from tests.support.calendars import NEW_YEAR_ONLY_2027, WHOLE_2027
from tiers.calendar import CalendarOverrides
from tiers.calendar_publish import package_years, publish_calendar
from tiers.cases import service
from tiers.cases.views import list_cases
from tiers.city.reconcile import reconcile
from tiers.city.stats import compute_stats
from tiers.figures import parse_period
from tiers.provisional import calendar_status, period_years, status_line, years_needed

D = date.fromisoformat
DECEMBER_29 = datetime(2026, 12, 29, 10, 0, tzinfo=ZONE)


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    assert 2027 not in package_years(), (
        "the installed chinesecalendar knows 2027: move these tests to a year it does not know"
    )
    use_locale("en")
    yield
    use_locale(None)


def _december_case(net: Network) -> str:
    case_id = service.accept(net.town, item_code="A1", applicant=service.Applicant("周九"),
                             at="2026-12-28T09:00")  # fmt: skip
    net.up()
    return case_id


def _publish(net: Network, overrides: CalendarOverrides, at: str = "2026-12-29T09:00") -> None:
    publish_calendar(net.city, overrides, at=at)
    net.down()


def _listed(net: Network, case_id: str) -> dict[str, Any]:
    listed = list_cases(net.town.store, DECEMBER_29.date(), 1)
    return next(c for c in listed if c["case_id"] == case_id)


def test_case_list_marks_a_deadline_in_an_unknown_year(tmp_path: Path) -> None:
    with network(tmp_path, DECEMBER_29) as net:
        case_id = _december_case(net)
        listed = _listed(net, case_id)
        assert (listed["deadline"], listed["provisional"], listed["provisional_years"]) == (
            "2027-01-04", True, [2027]
        )  # fmt: skip
        # New Year's Day alone is not the whole year: counted, still provisional.
        _publish(net, CalendarOverrides({2027: NEW_YEAR_ONLY_2027}))
        listed = _listed(net, case_id)
        assert (listed["deadline"], listed["provisional_years"]) == ("2027-01-05", [2027])
        _publish(net, CalendarOverrides({2027: WHOLE_2027}), at="2026-12-29T10:00")
        listed = _listed(net, case_id)
    assert (listed["deadline"], listed["provisional"], listed["provisional_years"]) == (
        "2027-01-05", False, []
    )  # fmt: skip


def test_case_list_provisional_reads_the_calendar_in_force(tmp_path: Path) -> None:
    # A row folded under an older reading (an arrangement that was taken for the whole
    # year) is judged again on the calendar in force: the list never trusts a stale flag.
    with network(tmp_path, DECEMBER_29) as net:
        case_id = _december_case(net)
        net.town.store.execute(
            "UPDATE cases SET provisional = 0, provisional_years = '[]' WHERE case_id = ?",
            (case_id,),
        )
        assert _listed(net, case_id)["provisional_years"] == [2027]


def test_figures_of_december_do_not_rest_on_2027(tmp_path: Path) -> None:
    # Whether the case is on time in December does not depend on January: 2026-12 is exact.
    with network(tmp_path, DECEMBER_29) as net:
        _december_case(net)
        stats = compute_stats(net.city.store, parse_period("2026-12"), "node", D("2026-12-29"))
    assert stats["provisional"] == []
    assert stats["total"]["accepted"] == 1


def test_figures_of_january_name_2027_until_it_is_published(tmp_path: Path) -> None:
    # Completed Mon 2027-01-04: on the guessed calendar that is the deadline day (on time,
    # not early); with 元旦 off the deadline is 01-05 and the same completion is early.
    january = parse_period("2027-01")
    with network(tmp_path, datetime(2027, 1, 20, 10, 0, tzinfo=ZONE)) as net:
        case_id = _december_case(net)
        service.complete(net.town, case_id, "approved", at="2027-01-04T16:00")
        net.up()
        before = compute_stats(net.city.store, january, "node", D("2027-01-20"))
        _publish(net, CalendarOverrides({2027: WHOLE_2027}), at="2027-01-20T09:00")
        after = compute_stats(net.city.store, january, "node", D("2027-01-20"))
    assert (before["total"]["on_time"], before["total"]["early"]) == (1, 0)
    assert before["provisional"] == [2027]
    assert (after["total"]["on_time"], after["total"]["early"]) == (1, 1)
    assert after["provisional"] == []


def test_open_case_makes_figures_provisional_once_judged_in_2027(tmp_path: Path) -> None:
    # Still open on 2027-01-20: whether it is overdue (open_overdue) counts January's days.
    with network(tmp_path, datetime(2027, 1, 20, 10, 0, tzinfo=ZONE)) as net:
        _december_case(net)
        guessed = period_years(net.town.store, parse_period("2027-01"), D("2027-01-20"))
        other = period_years(net.town.store, parse_period("2027-01"), D("2027-01-20"), "330782")
    assert guessed == [2027]
    assert other == []  # the city accepted nothing: its own report rests on no guess


@pytest.mark.parametrize(
    ("today", "needed"),
    [
        pytest.param("2026-10-31", [], id="october-not-yet"),
        pytest.param("2026-11-01", [2027], id="from-november"),
        pytest.param("2027-03-01", [2027], id="this-year-unknown"),
    ],
)
def test_years_needed_from_the_notice_month(tmp_path: Path, today: str, needed: list[int]) -> None:
    # The 国务院办公厅's notice for the next year comes out in October to December: from
    # November on (setting calendar_notice_month), next year is needed.
    with network(tmp_path, DECEMBER_29) as net:
        found = years_needed(net.city.store, D(today))
    assert [n.year for n in found] == needed


def test_years_needed_counts_open_cases_and_ends_with_a_whole_year(tmp_path: Path) -> None:
    with network(tmp_path, DECEMBER_29) as net:
        _december_case(net)
        before = years_needed(net.city.store, D("2026-06-01"))  # before the notice month
        _publish(net, CalendarOverrides({2027: NEW_YEAR_ONLY_2027}))
        partial = years_needed(net.city.store, D("2026-12-29"))
        _publish(net, CalendarOverrides({2027: WHOLE_2027}), at="2026-12-29T10:00")
        after = years_needed(net.city.store, D("2026-12-29"))
    assert [(n.year, n.open_cases, n.next_year, n.published_days) for n in before] == [
        (2027, 1, False, False)
    ]
    assert [(n.year, n.open_cases, n.next_year, n.published_days) for n in partial] == [
        (2027, 1, True, True)
    ]
    assert after == []


def test_status_calendar_names_known_and_needed_years(tmp_path: Path) -> None:
    with network(tmp_path, DECEMBER_29) as net:
        _december_case(net)
        info = calendar_status(net.town)
        line = status_line(info)
        _publish(net, CalendarOverrides({2027: WHOLE_2027}))
        settled = calendar_status(net.town)
        settled_line = status_line(settled)
    first = package_years()[0]
    assert info == {
        "package_years": [first, 2026],
        "published_whole": [],
        "published_partial": [],
        "needed": [{"year": 2027, "open_cases": 1, "this_year": False, "next_year": True,
                    "published_days": False}],
    }  # fmt: skip
    assert line == (
        f"calendar: known from the package {first}–2026, published whole: -; NOT KNOWN, counted"
        " on weekends alone: 2027 (1 open case(s) have deadlines in it) — the city must publish"
        " it (`zhibao calendar import`)"
    )
    assert settled["published_whole"] == [2027] and settled["needed"] == []
    assert settled_line == f"calendar: known from the package {first}–2026, published whole: 2027"


def test_reconcile_reports_calendar_missing_named_for_the_city(tmp_path: Path) -> None:
    with network(tmp_path, DECEMBER_29) as net:
        _december_case(net)
        found = reconcile(net.city, "2026-11", now=DECEMBER_29)
        _publish(net, CalendarOverrides({2027: WHOLE_2027}))
        after = reconcile(net.city, "2026-11", now=DECEMBER_29)
    missing = [f for f in found["findings"] if f["kind"] == "calendar_missing"]
    assert [(f["node_id"], f["evidence"]) for f in missing] == [
        ("330782", {"publisher": "330782", "year": 2027, "open_cases": 1, "this_year": False,
                    "next_year": True, "published_days": False}),
    ]  # fmt: skip
    assert missing[0]["detail"] == (
        "330782 has not published a whole 2027 calendar: 1 open case(s) have deadlines counted"
        " in 2027 on weekends alone (provisional)."
    )
    assert found["counts"]["calendar_missing"] == 1
    assert not [f for f in after["findings"] if f["kind"] == "calendar_missing"]


def test_reconcile_next_year_without_open_cases_in_chinese(tmp_path: Path) -> None:
    with network(tmp_path, DECEMBER_29) as net:
        use_locale("zh")
        found = reconcile(net.city, "2026-11", now=DECEMBER_29)
    missing = [f for f in found["findings"] if f["kind"] == "calendar_missing"]
    assert [f["detail"] for f in missing] == [
        "330782 尚未发布 2027 年全年节假日安排；国务院办公厅的 2027 年节假日安排通知应已发布，"
        "期限跨入 2027 年的办件将为临时期限。"
    ]


@pytest.mark.parametrize("value", ["eleven", 13, 0, True])
def test_notice_month_setting_that_is_not_a_month_is_refused_by_name(value: Any) -> None:
    from sync.protocol.errors import ZhibaoError
    from tiers.provisional import notice_month

    with pytest.raises(ZhibaoError) as refused:
        notice_month({"calendar_notice_month": value})
    assert refused.value.key == "setting.bad"
    assert "calendar_notice_month" in str(refused.value) and "1–12" in str(refused.value)
    assert notice_month({}) == 11 and notice_month({"calendar_notice_month": 10}) == 10
