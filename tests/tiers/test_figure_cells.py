"""A month's figures kept per case (tiers.figure_cells): always what a live count gives.

Every test compares the kept cells with `_live` (the month counted from every case's facts
now), after each change that could leave them stale: a case changed, a case back-dated
into a month already counted, a new day of a running month, a calendar or catalogue
published, the projections remade from the log. Each also checks that the month was not
counted again whole when only some cases changed, or at all when nothing did.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from sync.clock import ZONE
from sync.logstore import LogStore
from tests.support.postgres import another_writer
from tests.tiers.test_figures import (
    AFTER,
    OCTOBER,
    PERSON,
    TOWN_OCTOBER,
    City,
    hand_built_month,
    small_city,
    t,
    up,
)
from tiers import figure_cells
from tiers.calendar import CalendarOverrides
from tiers.calendar_publish import publish_calendar
from tiers.cases import service
from tiers.catalogue import CatalogueItem
from tiers.city.stats import compute_stats
from tiers.figures import Period, parse_period
from tiers.published import list_items, publish_items, work_calendar

pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_ci]

MONTHS = [parse_period(m) for m in ("2025-09", "2025-10", "2025-11")]
WHOLE = [2, 11, 2]  # the cases counted in each month whole: 13 and 10; all but 13; 11 and 14


class Counted:
    """How many cases each count of a month counted (a spy on `figure_cells._rows`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[int] = []
        real = figure_cells._rows

        def spy(period: Period, facts: list[Any], *rest: Any) -> list[tuple[Any, ...]]:
            self.calls.append(len(facts))
            return real(period, facts, *rest)

        monkeypatch.setattr(figure_cells, "_rows", spy)

    def take(self) -> list[int]:
        calls, self.calls = self.calls, []
        return calls


def kept(store: LogStore, period: Period, today: date = AFTER) -> Any:
    items = {item.code: item for item in list_items(store)}
    return figure_cells.period_cells(store, period, today, work_calendar(store), items)


def live(store: LogStore, period: Period, today: date = AFTER) -> Any:
    items = {item.code: item for item in list_items(store)}
    return figure_cells._live(store, period, today, work_calendar(store), items)


def assert_kept_is_live(store: LogStore, today: date = AFTER) -> None:
    for period in MONTHS:
        assert kept(store, period, today) == live(store, period, today), period.label


def test_the_kept_columns_are_the_counts_in_their_order() -> None:
    """Rows are written from and read into `Counts` by position (`_rows`, `_merge`)."""
    from tiers.case_facts import CELL_COUNTS
    from tiers.figures import Counts

    assert tuple(Counts().__dict__) == CELL_COUNTS


@pytest.fixture
def month(tmp_path: Path) -> Any:
    with small_city(tmp_path) as net:
        ids = hand_built_month(net)
        yield net, ids


def test_kept_month_equals_a_live_count_and_is_read_back_unchanged(
    month: tuple[City, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    net, _ = month
    counted = Counted(monkeypatch)
    store = net.city.store
    assert_kept_is_live(store)
    assert counted.take() == WHOLE  # each month counted once, whole
    assert kept(store, OCTOBER) == live(store, OCTOBER)
    assert counted.take() == []  # nothing changed: read back, nothing counted
    result = compute_stats(store, OCTOBER, "node", AFTER)
    town = {row["key"]: row for row in result["rows"]}["330782001"]
    assert town["completed"] == TOWN_OCTOBER.completed  # the hand count, through the cells
    assert town["steps_open_late"] == TOWN_OCTOBER.steps_open_late
    rows = store.query("SELECT COUNT(*) FROM figure_cells WHERE period = '2025-10'")
    assert rows[0][0] >= 11


def test_a_changed_case_is_counted_again_alone(
    month: tuple[City, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    net, ids = month
    store = net.city.store
    assert_kept_is_live(store)
    counted = Counted(monkeypatch)
    # 11 (open, overdue since 10-27) completed in November: October unchanged, November not
    service.complete(net.town, ids["11"], "approved", at=t("11-05"))
    up(net, t("11-06"))
    assert_kept_is_live(store)
    assert counted.take() == [0, 1, 1]  # September: not among its cases; the others: 11 alone
    nov = compute_stats(store, MONTHS[2], "node", AFTER)
    assert {row["key"]: row for row in nov["rows"]}["330782001"]["completed"] == 1


@pytest.mark.parametrize(("most", "calls"), [(2, [0, 2, 2]), (1, WHOLE)])
def test_more_cases_changed_than_counted_one_by_one_count_the_month_whole(
    month: tuple[City, dict[str, str]], monkeypatch: pytest.MonkeyPatch, most: int, calls: list[int]
) -> None:
    """Two cases changed: counted again alone up to INCREMENTAL_MAX, else the month whole
    (never a month kept with one of the two left stale)."""
    net, ids = month
    store = net.city.store
    assert_kept_is_live(store)
    monkeypatch.setattr(figure_cells, "INCREMENTAL_MAX", most)
    counted = Counted(monkeypatch)
    service.complete(net.town, ids["11"], "approved", at=t("11-05"))
    service.complete(net.town, ids["14"], "approved", at=t("11-05", "10:00"))
    up(net, t("11-06"))
    assert_kept_is_live(store)
    assert counted.take() == calls


def test_a_member_back_dating_cases_into_a_counted_month_changes_it(
    month: tuple[City, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A town signs, with its own key, cases dated in September after the city counted
    September: the month kept at the city changes exactly as a live count does."""
    net, _ = month
    store = net.city.store
    assert_kept_is_live(store)
    before = compute_stats(store, MONTHS[0], "node", AFTER)
    counted = Counted(monkeypatch)
    for n in range(3):
        case_id = service.accept(net.town, item_code="A1", applicant=PERSON,
                                 at=t("09-1" + str(n + 5)))  # fmt: skip
        service.complete(net.town, case_id, "approved", at=t("09-2" + str(n + 2)))
    up(net, t("11-10"))
    assert_kept_is_live(store)
    assert counted.take() == [3, 0, 0]  # September: the three alone; the others: none of them
    after = compute_stats(store, MONTHS[0], "node", AFTER)
    town = {row["key"]: row for row in after["rows"]}["330782001"]
    was = {row["key"]: row for row in before["rows"]}["330782001"]
    assert town["completed"] == was["completed"] + 3


def test_a_busy_store_answers_the_month_and_keeps_it_once_free(
    month: tuple[City, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holds the store's write lock (a serve catching up, an import): a
    clerk's month is counted and answered all the same, nothing is kept meanwhile, and the
    next ask, once the store is free, keeps it."""
    net, _ = month
    store = net.city.store
    counted = Counted(monkeypatch)
    with another_writer(store):
        assert kept(store, OCTOBER) == live(store, OCTOBER)
        assert store.query("SELECT COUNT(*) FROM figure_periods")[0][0] == 0
    assert counted.take() == [WHOLE[1]]
    assert kept(store, OCTOBER) == live(store, OCTOBER)
    assert counted.take() == [WHOLE[1]]  # counted again: nothing was kept while busy
    assert kept(store, OCTOBER) == live(store, OCTOBER)
    assert counted.take() == []  # kept now: read back


def test_a_new_day_of_a_running_month_counts_it_again(
    month: tuple[City, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    net, _ = month
    store = net.city.store
    november = MONTHS[2]
    counted = Counted(monkeypatch)
    for day in (date(2025, 11, 10), date(2025, 11, 10), date(2025, 11, 11)):
        assert kept(store, november, day) == live(store, november, day)
    assert counted.take() == [2, 2]  # 11-10 once (then read back), 11-11 again: judged later
    head = store.query("SELECT as_of FROM figure_periods WHERE period = '2025-11'")
    assert head == [("2025-11-10",)]


def test_a_calendar_or_catalogue_published_counts_every_month_again(
    month: tuple[City, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    net, _ = month
    store = net.city.store
    assert_kept_is_live(store)
    counted = Counted(monkeypatch)
    # A local day off on 10-14 moves deadlines (cases 1, 2, 4, 11 …)
    publish_calendar(net.city, CalendarOverrides(days={date(2025, 10, 14): False}),
                     at="2025-11-12T09:00")  # fmt: skip
    assert_kept_is_live(store)
    assert counted.take() == WHOLE
    a1 = next(item for item in list_items(store) if item.code == "A1")
    changed = CatalogueItem(**{**a1.__dict__, "statutory_days": 15})
    publish_items(net.city, [changed], at="2025-11-12T10:00")
    assert_kept_is_live(store)
    assert counted.take() == WHOLE
    result = compute_stats(store, OCTOBER, "node", AFTER)
    town = {row["key"]: row for row in result["rows"]}["330782001"]
    assert town["statutory_days_total"] == 6 * 15 + 30


def test_projections_remade_from_the_log_leave_no_stale_month(
    month: tuple[City, dict[str, str]],
) -> None:
    net, _ = month
    store = net.city.store
    assert_kept_is_live(store)
    with store.transaction():
        store.rebuild()  # every lazy table emptied, the log projected again at the end
    assert store.query("SELECT COUNT(*) FROM figure_periods") == [(0,)]
    assert_kept_is_live(store)


def test_a_reader_reads_kept_months_and_counts_the_others_live(
    month: tuple[City, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that cannot write (the desk's reader, a replica) uses a month kept up to
    date, and otherwise counts it live without writing anything."""
    net, ids = month
    store = net.city.store
    kept(store, OCTOBER)
    reader = store.reader()
    try:
        assert kept(reader, OCTOBER) == live(store, OCTOBER)
        service.complete(net.town, ids["11"], "approved", at=t("10-30"))
        up(net, t("11-06"))
        counted = Counted(monkeypatch)
        assert kept(reader, OCTOBER) == live(store, OCTOBER)
        assert counted.take() == []  # live: no rows made
        assert kept(reader, MONTHS[2]) == live(store, MONTHS[2])
    finally:
        reader.close()
    assert store.query("SELECT period FROM figure_periods") == [("2025-10",)]


def test_quarters_and_years_are_counted_live(month: tuple[City, dict[str, str]]) -> None:
    net, _ = month
    store = net.city.store
    for text in ("2025-Q4", "2025"):
        assert kept(store, parse_period(text)) == live(store, parse_period(text))
    assert store.query("SELECT COUNT(*) FROM figure_periods") == [(0,)]


def test_a_running_month_at_the_town_reports_what_the_city_keeps(tmp_path: Path) -> None:
    """A town's monthly report (counted from its own kept cells) and the city's recount from
    its kept cells agree: reconcile finds nothing to say of the figures."""
    from tiers.city.reconcile import reconcile
    from tiers.reports import submit_monthly

    now = datetime(2025, 11, 20, 9, tzinfo=ZONE)
    with small_city(tmp_path, now=now) as net:
        hand_built_month(net)
        kept(net.city.store, OCTOBER)  # the city counted October before the report came
        submit_monthly(net.town, "2025-10")
        up(net, t("11-20"))
        result = reconcile(net.city, "2025-10", now=now)
    kinds = [f["kind"] for f in result["findings"]]
    assert not [k for k in kinds if k.startswith("report_")], result["findings"]
