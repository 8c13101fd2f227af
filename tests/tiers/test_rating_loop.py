"""The 好差评 closed loop (issue #12 part 5): 不予受理 rated too, the channel recorded, a bad
rating opening a rectification (差评整改) that must be closed with a note, and 评议率.

Sources: 国办发〔2019〕51号 (every service is rated — 现场服务“一次一评”、网上服务“一事一评”
— and every 差评 is verified, rectified and answered); GB/T 39046 scores 1 非常满意 … 5 非常
不满意, 4 and 5 being bad; the rectification limit of 15 working days is Sichuan's scheme
(对“不满意”或者“非常不满意”问题，在15个工作日内整改到位), the default of `rectify_days`.
Deadlines are hand-counted on the 2025 calendar (Saturday 11 October worked).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest

from sync.clock import ZONE
from sync.protocol.entry import encode_entry, parse_envelope
from sync.protocol.errors import CaseError, CustodyError, EntryError, IllegalTransitionError
from tests.helpers_cases import TOWN, VILLAGE, Network, count_entries, network
from tiers.cases import service
from tiers.cases.views import case_view
from tiers.city.stats import compute_stats
from tiers.figures import parse_period
from tiers.rectification import list_rectifications, rectify_days

NOVEMBER = datetime(2025, 11, 3, 10, 0, tzinfo=ZONE)
OCTOBER = parse_period("2025-10")


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    with network(tmp_path, NOVEMBER) as built:
        yield built


def _rejected_at_town(net: Network) -> str:
    case_id = service.receive(net.town, "A1", service.Applicant("张三"), at="2025-10-09T09:00")
    service.reject(net.town, case_id, "不属于本中心受理范围", at="2025-10-09T09:30")
    return case_id


def test_rating_a_rejected_case_opens_a_rectification_due_in_15_working_days(
    net: Network,
) -> None:
    case_id = _rejected_at_town(net)
    service.rate(net.town, case_id, 5, "白跑一趟", at="2025-10-09T09:40", channel="pad")
    view = case_view(net.town.store, case_id, date(2025, 10, 9), 1)
    assert (view["status"], view["rating"], view["rating_channel"]) == ("rejected", 5, "pad")
    assert view["allowed"] == ["rectify"]
    r = view["rectification"]
    # 10-10, 10-11 (Sat, worked), 13, 14, 15, 16, 17, 20, 21, 22, 23, 24, 27, 28, 29
    assert (r["opened_on"], r["due"], r["status"]) == ("2025-10-09", "2025-10-29", "open")
    assert r["warning"] is None and r["remaining_days"] == 15
    assert (
        case_view(net.town.store, case_id, date(2025, 10, 30), 1)["rectification"]["warning"]
        == "red"
    )


def test_rectify_closes_it_with_a_note_once(net: Network) -> None:
    case_id = _rejected_at_town(net)
    service.rate(net.town, case_id, 4, at="2025-10-09T09:40")
    service.rectify(net.town, case_id, "已补充告知材料清单并回访", at="2025-10-20T10:00")
    view = case_view(net.town.store, case_id, date(2025, 10, 30), 1)
    r = view["rectification"]
    assert (r["status"], r["closed_by"], r["note"]) == ("closed", TOWN, "已补充告知材料清单并回访")
    assert r["on_time"] is True and r["warning"] is None
    assert view["allowed"] == [] and view["events"][-1]["type"] == "case.rectified"
    before = count_entries(net.town.store)
    with pytest.raises(IllegalTransitionError):
        service.rectify(net.town, case_id, "再次整改")
    with pytest.raises(CaseError) as caught:
        service.rectify(net.town, case_id, "  ")
    assert caught.value.key == "case.blank"
    assert count_entries(net.town.store) == before


def test_rectify_refused_on_a_good_rating_or_none(net: Network) -> None:
    case_id = _rejected_at_town(net)
    before = count_entries(net.town.store)
    with pytest.raises(IllegalTransitionError):
        service.rectify(net.town, case_id, "无差评")
    service.rate(net.town, case_id, 3, at="2025-10-09T09:40")  # 基本满意: not bad
    with pytest.raises(IllegalTransitionError):
        service.rectify(net.town, case_id, "无差评")
    assert count_entries(net.town.store) == before + 1
    assert case_view(net.town.store, case_id, date(2025, 10, 9), 1)["rectification"] is None


def test_rectify_only_by_the_holder_or_the_origin(net: Network) -> None:
    """谁办理、谁负责: a village rejects and its citizen rates it there; the town above may
    not close the village's rectification (it neither holds nor received the case)."""
    case_id = service.receive(net.village, "B2", service.Applicant("王五"), at="2025-10-09T09:20")
    service.reject(net.village, case_id, "材料不符", at="2025-10-09T09:30")
    service.rate(net.village, case_id, 5, at="2025-10-09T09:35", channel="window")
    net.up()
    before = count_entries(net.town.store)
    with pytest.raises(CustodyError):
        service.rectify(net.town, case_id, "越权整改")
    assert count_entries(net.town.store) == before
    service.rectify(net.village, case_id, "已当面解释", at="2025-10-10T09:00")
    r = case_view(net.village.store, case_id, date(2025, 10, 10), 1)["rectification"]
    assert (r["closed_by"], r["on_time"]) == (VILLAGE, True)


def test_rate_channel_is_checked(net: Network) -> None:
    case_id = _rejected_at_town(net)
    before = count_entries(net.town.store)
    with pytest.raises(CaseError) as caught:
        service.rate(net.town, case_id, 5, channel="fax")
    assert caught.value.key == "case.bad_channel"
    assert count_entries(net.town.store) == before
    body = {"case_id": case_id, "after": [TOWN, 1], "score": 5, "channel": "fax"}
    raw = encode_entry(TOWN, 2, bytes(32), "2025-10-09T09:40:00+08:00", "case.rated", body)
    with pytest.raises(EntryError):
        parse_envelope(raw)
    body["channel"] = "sms"
    raw = encode_entry(TOWN, 2, bytes(32), "2025-10-09T09:40:00+08:00", "case.rated", body)
    assert parse_envelope(raw).type == "case.rated"


def test_rectification_list_open_and_overdue(net: Network) -> None:
    late = _rejected_at_town(net)
    service.rate(net.town, late, 5, at="2025-10-09T09:40")
    done = _rejected_at_town(net)
    service.rate(net.town, done, 4, at="2025-10-09T09:50")
    service.rectify(net.town, done, "已整改", at="2025-10-10T09:00")
    good = _rejected_at_town(net)
    service.rate(net.town, good, 1, at="2025-10-09T09:55")
    store, days = net.town.store, rectify_days({})
    assert days == 15
    listed = list_rectifications(store, date(2025, 10, 30), days, 1)
    assert {r["case_id"]: r["status"] for r in listed} == {late: "open", done: "closed"}
    red = list_rectifications(store, date(2025, 10, 30), days, 1, warning_filter="red")
    assert [r["case_id"] for r in red] == [late]
    assert list_rectifications(store, date(2025, 10, 29), days, 1, warning_filter="red") == []
    assert [r["case_id"] for r in list_rectifications(store, date(2025, 10, 30), days, 1,
                                                      open_only=True)] == [late]  # fmt: skip
    five = list_rectifications(store, date(2025, 10, 30), rectify_days({"rectify_days": 5}), 1)
    assert {r["case_id"]: r["due"] for r in five}[late] == "2025-10-15"


@pytest.mark.parametrize("value", [0, "15", True])
def test_rectify_days_setting_is_checked(value: object) -> None:
    with pytest.raises(CaseError):
        rectify_days({"rectify_days": value})


def test_figures_count_ratings_of_rejected_cases_and_the_rating_rate(net: Network) -> None:
    """A 不予受理 rated bad counts as rated and as a 差评 for the node that received it; 评议率
    is the share of the cases completed in the period that were rated by its end."""
    rejected = _rejected_at_town(net)
    service.rate(net.town, rejected, 5, at="2025-10-09T09:40")
    rated = service.accept(net.town, item_code="C3", applicant=service.Applicant("甲"),
                           at="2025-10-10T09:00")  # fmt: skip
    service.complete(net.town, rated, "approved", at="2025-10-10T09:10")
    service.deliver(net.town, rated, at="2025-10-10T09:20")
    service.rate(net.town, rated, 1, at="2025-10-31T17:00")
    later = service.accept(net.town, item_code="C3", applicant=service.Applicant("乙"),
                           at="2025-10-10T10:00")  # fmt: skip
    service.complete(net.town, later, "approved", at="2025-10-10T10:10")
    service.deliver(net.town, later, at="2025-10-10T10:20")
    service.rate(net.town, later, 2, at="2025-11-03T09:00")  # rated after the month
    never = service.accept(net.town, item_code="C3", applicant=service.Applicant("丙"),
                           at="2025-10-10T11:00")  # fmt: skip
    service.complete(net.town, never, "approved", at="2025-10-10T11:10")
    town = {r["key"]: r for r in compute_stats(net.town.store, OCTOBER, "node",
                                               NOVEMBER.date())["rows"]}[TOWN]  # fmt: skip
    assert (town["rated"], town["satisfied"], town["bad_ratings"]) == (2, 1, 1)
    assert (town["completed"], town["completed_rated"]) == (3, 1)
    assert town["rating_rate"] == 0.3333  # 评议率 1 ÷ 3
    assert town["complaints"] == 0  # a 差评 is not a 投诉
    assert VILLAGE not in {r["key"] for r in compute_stats(net.town.store, OCTOBER, "node",
                                                           NOVEMBER.date())["rows"]}  # fmt: skip


def test_rectification_dated_before_its_bad_rating_is_refused_by_the_fold(net: Network) -> None:
    """The holder signs, with its real key and without `case rectify`'s --at check, a
    rectification dated three weeks before the 差评 it answers (so it would read as closed
    on time). The fold refuses it: the rectification stays open and goes red, and the
    case says why (a 'guard' violation, a guard_violation finding at the city)."""
    from tiers.cases.projection import load_case

    case_id = _rejected_at_town(net)
    service.rate(net.town, case_id, 5, at="2025-10-30T09:40")
    anchor = load_case(net.town.store, case_id).state.anchor  # type: ignore[union-attr]
    net.town.append("case.rectified", {"case_id": case_id, "after": list(anchor),
                    "note": "已整改"}, at="2025-10-09T10:00:00+08:00")  # fmt: skip
    view = case_view(net.town.store, case_id, date(2025, 11, 30), 1)
    assert view["rectification"]["status"] == "open"
    assert view["rectification"]["warning"] == "red"  # due 2025-11-20
    assert [(v["kind"], v["problem"]) for v in view["violations"]] == [
        ("guard", "case.rectify_backdated")
    ]
