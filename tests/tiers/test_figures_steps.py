"""环节: time charged where it was spent, and the figures a centre is assessed on, on a second
hand-built October (same calendar and catalogue as tests/tiers/test_figures.py).

October 2025 working days: 9, 10, 11 (调休), 13–17, 20–24, 27–31. B2 (低保, 上报, promised 10,
statutory 30) is received in villages, accepted by towns and decided by the city; a review
step (初审) may take a quarter of B2's 10 promised days: 2; the city's share is 10 − 2 = 8
when the town accepted the case (the clock ran during its review).

- L (late at the city): received at the village 10-09 and relayed the same day; the town
  takes and accepts it 10-10 (due 10-23) and forwards it 10-13 (2 working days: 11, 13 — on
  time); the city takes it 10-14 and completes it 10-29: 11 working days (15–17, 20–24,
  27–29) of its 8 — late, and the case is overdue: the town's figure, as it always was
  (the town made the promise), but the late step is the city's.
- S (slow town): the town accepts it 10-10 itself and forwards it 10-16 (11, 13–16: 5 of
  2 — late); the city takes it 10-16 and completes it 10-20 (17, 20: 2 of 8 — on time).
- W (withdrawn): an A1 the town accepts 10-13; the applicant withdraws it 10-14.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.topology import CITY, TOWN, VILLAGE
from tests.tiers.test_figures import AFTER, OCTOBER, PERSON, City, down, push, small_city, t, up
from tiers.calendar import WorkCalendar
from tiers.cases import service
from tiers.city.stats import compute_stats
from tiers.figures import Counts
from tiers.published import work_calendar
from tiers.reports import node_counts
from tiers.steps import judge, review_limit, steps_of

# its cities on SQLite, then on PostgreSQL: there in the soak run but for the tests marked
# pg_ci (a bounded sample in CI: tests/support/postgres.py soak_marks)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]

DATE_NOW = AFTER


def steps_month(net: City) -> dict[str, str]:
    town, village, city = net.town, net.village, net.city
    ids = {}
    ids["L"] = service.receive(village, "B2", PERSON, ["户口本"], at=t("10-09", "09:30"))
    service.forward(village, ids["L"], at=t("10-09", "09:40"))
    push(village, town, t("10-09", "12:00"))
    service.accept(town, ids["L"], at=t("10-10", "09:00"))
    service.forward(town, ids["L"], at=t("10-13", "10:00"))
    push(town, city, t("10-13", "12:00"))
    service.accept(city, ids["L"], at=t("10-14"))
    service.complete(city, ids["L"], "approved", at=t("10-29"))

    ids["S"] = service.accept(town, item_code="B2", applicant=PERSON, at=t("10-10", "09:30"))
    service.forward(town, ids["S"], at=t("10-16", "09:00"))
    push(town, city, t("10-16", "12:00"))
    service.accept(city, ids["S"], at=t("10-16", "14:00"))
    service.complete(city, ids["S"], "approved", at=t("10-20"))

    ids["W"] = service.accept(town, item_code="A1", applicant=PERSON, at=t("10-13"))
    service.withdraw(town, ids["W"], at=t("10-14"))
    down(net)
    up(net)
    return ids


def test_steps_late_city_is_charged_to_the_city_not_the_town(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        steps_month(net)
        rows = node_counts(net.city.store, OCTOBER, work_calendar(net.city.store), DATE_NOW)
    # The town's old figures keep their meaning: it accepted L, S and W; L is overdue (done
    # 10-29, due 10-23), S on time (due 10-24, done 10-20).
    town = rows[TOWN]
    assert (town.accepted, town.completed, town.on_time, town.overdue) == (3, 2, 1, 1)
    assert town.withdrawn == 1 and town.carried_out == 0  # 3 accepted − 2 done − 1 withdrawn
    # …and its own steps: L's review on time (2 of 2), S's late (5 of 2).
    assert (town.steps, town.steps_on_time, town.step_days_used, town.step_days_allowed) == (
        2, 1, 7, 4)  # fmt: skip
    # The city's own: L late (11 of 8), S on time (2 of 8).
    assert rows[CITY] == Counts(steps=2, steps_on_time=1, step_days_used=13, step_days_allowed=16)
    # The village relayed L the day it came: 0 of 2.
    assert rows[VILLAGE] == Counts(received=1, steps=1, steps_on_time=1, step_days_allowed=2)


@pytest.mark.pg_ci
def test_steps_stats_by_node_has_a_city_row_with_its_own_rate(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        steps_month(net)
        result = compute_stats(net.city.store, OCTOBER, "node", DATE_NOW)
    rows = {row["key"]: row for row in result["rows"]}
    assert rows[CITY]["step_on_time_rate"] == 0.5 and rows[CITY]["accepted"] == 0
    assert rows[CITY]["on_time_rate"] is None  # it accepted nothing: the promise is the town's
    assert rows[TOWN]["step_on_time_rate"] == 0.5 and rows[TOWN]["on_time_rate"] == 0.5
    assert rows[VILLAGE]["step_on_time_rate"] == 1.0
    assert result["total"]["steps"] == 5 and result["total"]["step_on_time_rate"] == 0.6


@pytest.mark.parametrize(
    ("setting", "rate"),
    [
        pytest.param(None, 0.6667, id="default-withdrawn-in-base"),  # 2 ÷ 3
        pytest.param(True, 0.6667, id="withdrawn-in-base"),
        pytest.param(False, 1.0, id="withdrawn-left-out"),  # 2 ÷ (3 − 1)
    ],
)
def test_completion_rate_withdrawn_setting(tmp_path: Path, setting: bool | None,
                                           rate: float) -> None:  # fmt: skip
    settings = {} if setting is None else {"completion_counts_withdrawn": setting}
    with small_city(tmp_path) as net:
        steps_month(net)
        result = compute_stats(net.city.store, OCTOBER, "node", DATE_NOW, settings)
    town = {row["key"]: row for row in result["rows"]}[TOWN]
    assert town["completion_rate"] == rate and town["withdrawn"] == 1


def test_overdue_total_is_completed_late_plus_open_past_deadline(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        steps_month(net)
        # an A1 accepted 10-20 (due 10-27), still open at the close of October
        service.accept(net.town, item_code="A1", applicant=PERSON, at=t("10-20"))
        up(net)
        result = compute_stats(net.city.store, OCTOBER, "node", DATE_NOW)
    town = {row["key"]: row for row in result["rows"]}[TOWN]
    assert (town["overdue"], town["open_overdue"], town["overdue_total"]) == (1, 1, 2)
    assert town["steps_open_late"] == 1  # 9 working days (21–24, 27–31) of its 5


def test_speedup_against_statutory_and_promise_compression(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        steps_month(net)
        result = compute_stats(net.city.store, OCTOBER, "item", DATE_NOW)
    b2 = {row["key"]: row for row in result["rows"]}["B2"]
    # L used 14 working days from acceptance (11, 13–17, 20–24, 27–29) and S 7 (11, 13–17,
    # 20): 21 of 2 × 10 promised, 2 × 30 statutory.
    assert (b2["days_used_total"], b2["days_promised_total"]) == (21, 20)
    assert b2["statutory_days_total"] == 60 and b2["statutory_completed"] == 2
    assert b2["speedup"] == -0.05  # 1 − 21 ÷ 20: slower than promised
    assert b2["speedup_statutory"] == 0.65  # 1 − 21 ÷ 60: still faster than the law allows
    assert b2["promise_compression"] == 0.6667  # 1 − 20 ÷ 60: the promise is a third of the law's


def test_steps_limits_pure() -> None:
    """The limits by themselves: a review takes a quarter of the promise, at least a day; the
    decider keeps the rest, plus extensions (行政许可法 第四十二条: the extension is the
    deciding authority's)."""
    assert review_limit(None, 10) == 2 and review_limit(None, 3) == 1 and review_limit(None, 0) == 1
    assert review_limit(None, 20) == 5
    steps = steps_of(TOWN, "2025-10-10T09:00:00+08:00", [
        ("case.accepted", "2025-10-10T09:00:00+08:00", TOWN),
        ("case.forwarded", "2025-10-13T10:00:00+08:00", TOWN),
        ("case.taken", "2025-10-14T09:00:00+08:00", CITY),
        ("case.extended", "2025-10-20T09:00:00+08:00", CITY),
        ("case.completed", "2025-10-29T09:00:00+08:00", CITY),
    ])  # fmt: skip
    assert steps == ((TOWN, "2025-10-10", "2025-10-13", "forwarded"),
                     (CITY, "2025-10-14", "2025-10-29", "completed"))  # fmt: skip
    cal = WorkCalendar()
    judged = judge(steps, accepted_on="2025-10-10", accepted_by=TOWN, promised=10,
                   extension_days=5, pauses=(), item=None, cal=cal)  # fmt: skip
    assert [(j.node, j.used, j.allowed, j.on_time) for j in judged] == [
        (TOWN, 2, 2, True), (CITY, 11, 13, True)]  # 10 + 5 − 2


def test_steps_back_dated_forward_is_counted_nowhere() -> None:
    """A forward stamped before the town took the case cannot be right: the step is left out
    (the window refuses such a stamp: `case.at_before`)."""
    steps = ((TOWN, "2025-10-13", "2025-10-10", "forwarded"),
             (CITY, "2025-10-14", "2025-10-20", "completed"))  # fmt: skip
    judged = judge(steps, accepted_on="2025-10-13", accepted_by=TOWN, promised=10,
                   extension_days=0, pauses=(), item=None, cal=WorkCalendar())  # fmt: skip
    assert [j.node for j in judged] == [CITY]


def test_steps_open_at_close_judged_as_of_then(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        # taken by the town 10-10, accepted, not forwarded by the close of October: its review
        # of 2 days has run 15 (11, 13–17, 20–24, 27–31) — an open late step for the town.
        case_id = service.accept(net.town, item_code="B2", applicant=PERSON, at=t("10-10"))
        up(net)
        october = node_counts(net.city.store, OCTOBER, work_calendar(net.city.store), DATE_NOW)
        service.forward(net.town, case_id, at=t("11-03"))
        up(net)
        later = node_counts(net.city.store, OCTOBER, work_calendar(net.city.store), DATE_NOW)
    assert october[TOWN].steps_open_late == 1 and october[TOWN].steps == 0
    assert later[TOWN] == october[TOWN]  # a forward in November does not move October
