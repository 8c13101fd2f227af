"""The monthly report (办件月报表) by item and by kind, its compatibility with the reports
already in logs, and reconciliation of every part; on the hand-built October of
tests/tiers/test_figures.py (the town's A1, B2 and C3 cases)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.topology import CITY, TOWN
from tests.tiers.test_figures import (
    PERSON,
    TOWN_OCTOBER,
    hand_built_month,
    push,
    small_city,
    t,
    up,
)
from tests.tiers.test_reconcile import NOW, findings
from tiers.cases import service
from tiers.figures import COUNT_FIELDS, LEGACY_FIELDS, Counts
from tiers.reports import REPORT_MONTHLY, latest_reports, submit_monthly
from tiers.reports import _check_report_body as check_body

# its cities on SQLite, then on PostgreSQL: there in the soak run but for the tests marked
# pg_ci (a bounded sample in CI: tests/support/postgres.py soak_marks)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]


def legacy_body(counts: Counts) -> dict[str, Any]:
    """A report body exactly as zhibao wrote them before parts and 环节 (the old count set,
    where `complaints` counted bad ratings)."""
    figures = {f: getattr(counts, f) for f in LEGACY_FIELDS}
    figures["complaints"] = counts.bad_ratings
    return {"period": "2025-10", "scope": "node", "held": {TOWN: 1},
            "figures": figures}  # fmt: skip


@pytest.mark.pg_ci
def test_report_parts_by_item_and_kind_add_up_to_the_total(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        hand_built_month(net)
        done = submit_monthly(net.town, "2025-10", at="2025-11-03T09:00")
    parts = done.report.parts
    # A1: 1–5, 11, 14 accepted (7); B2: 7; C3: 6. 承诺 = A1, 上报 = B2, 即办 = C3.
    assert {k: row.get("accepted", 0) for k, row in parts["item"].items()} == {
        "A1": 7, "B2": 1, "C3": 1}  # fmt: skip
    assert {k: row.get("accepted", 0) for k, row in parts["kind"].items()} == {
        "promised": 7, "forward": 1, "immediate": 1}  # fmt: skip
    assert parts["item"]["A1"]["rejected"] == 1  # 12 (不予受理)
    assert parts["item"]["A1"]["overdue"] == 1 and "overdue" not in parts["item"]["B2"]
    for part in ("item", "kind"):
        for name in COUNT_FIELDS:
            assert sum(row.get(name, 0) for row in parts[part].values()) == getattr(
                TOWN_OCTOBER, name), (part, name)  # fmt: skip


def test_report_parts_reconcile_clean_then_name_the_part(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        hand_built_month(net)
        submit_monthly(net.town, "2025-10", at="2025-11-03T09:00")
        up(net, t("11-03", "12:00"))
        assert findings(net.city, "report_mismatch") == []
        assert findings(net.city, "report_inconsistent") == []
        # 补录 of a C3 (即办) accepted and completed on 10-20: the 即办 row and the total move.
        case_id = service.accept(net.town, item_code="C3", applicant=PERSON, at=t("10-20"))
        service.complete(net.town, case_id, "approved", at=t("10-20", "10:30"))
        up(net, t("11-04", "12:00"))
        found = findings(net.city, "report_mismatch")
    where = {(f["evidence"]["part"], f["evidence"].get("key"), f["evidence"]["field"])
             for f in found}  # fmt: skip
    assert ("total", None, "accepted") in where
    assert ("item", "C3", "accepted") in where and ("kind", "immediate", "completed") in where
    assert not any(key in ("A1", "B2", "promised", "forward") for _, key, _ in where)
    item = next(f for f in found if f["evidence"].get("key") == "C3"
                and f["evidence"]["field"] == "accepted")  # fmt: skip
    assert (item["evidence"]["reported"], item["evidence"]["computed"]) == (1, 2)
    assert "C3" in item["detail"]


def test_report_old_format_entry_verifies_ingests_and_reconciles(tmp_path: Path) -> None:
    """A `report.monthly` signed by an earlier zhibao (exactly the old count set, no parts)
    is still a valid entry, reaches the city, and reconciles without a mismatch for a count
    it never stated."""
    with small_city(tmp_path) as net:
        hand_built_month(net)
        body = legacy_body(TOWN_OCTOBER)
        check_body(body)  # what every node checks on every way in
        net.town.append(REPORT_MONTHLY, body, at="2025-11-03T09:00:00+08:00")
        assert push(net.town, net.city, t("11-03", "12:00")) == 1  # verified and applied
        held = latest_reports(net.city.store, "2025-10")[TOWN]
        mismatches = findings(net.city, "report_mismatch")
        inconsistent = findings(net.city, "report_inconsistent")
        # Reporting again with today's zhibao appends a report stating every count.
        again = submit_monthly(net.town, "2025-10", at="2025-11-04T09:00")
    stated = (frozenset(LEGACY_FIELDS) - {"complaints"}) | {"bad_ratings"}
    assert held.stated == stated and held.parts == {}
    assert held.counts.bad_ratings == TOWN_OCTOBER.bad_ratings == 1  # read as bad ratings
    assert held.counts.complaints == 0  # no 投诉 were recorded then
    assert held.counts.steps == 0 and held.counts.accepted == 9  # unstated: 0
    assert mismatches == [] and inconsistent == []
    assert again.appended and again.report.stated == frozenset(COUNT_FIELDS)


def test_report_old_format_mismatch_still_found_on_what_it_stated(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        hand_built_month(net)
        wrong = Counts(**{**TOWN_OCTOBER.__dict__, "accepted": 8})
        net.town.append(REPORT_MONTHLY, legacy_body(wrong), at="2025-11-03T09:00:00+08:00")
        push(net.town, net.city, t("11-03", "12:00"))
        found = findings(net.city, "report_mismatch")
    assert [(f["evidence"]["field"], f["evidence"]["reported"], f["evidence"]["computed"])
            for f in found] == [("accepted", 8, 9)]  # fmt: skip


def test_report_parts_that_do_not_add_up_are_inconsistent(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        hand_built_month(net)
        done = submit_monthly(net.town, "2025-10", at="2025-11-03T09:00")
        body = {"period": "2025-10", "scope": "node", "held": done.report.held,
                "figures": TOWN_OCTOBER.to_body(), "parts": done.report.parts}  # fmt: skip
        body["parts"]["item"]["A1"] = dict(body["parts"]["item"]["A1"], accepted=9)
        net.town.append(REPORT_MONTHLY, body, at="2025-11-04T09:00:00+08:00")
        up(net, t("11-04", "12:00"))
        inconsistent = findings(net.city, "report_inconsistent")
        mismatch = findings(net.city, "report_mismatch")
    assert [(f["node_id"], f["evidence"]["part"], f["evidence"]["field"],
             f["evidence"]["parts_sum"], f["evidence"]["total"]) for f in inconsistent] == [
        (TOWN, "item", "accepted", 11, 9)]  # fmt: skip
    assert [(f["evidence"]["part"], f["evidence"]["key"], f["evidence"]["field"])
            for f in mismatch] == [("item", "A1", "accepted")]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "ok"),
    [
        pytest.param({}, True, id="old-set"),
        pytest.param({"steps": 2}, True, id="newer-count"),
        pytest.param({"from_a_later_zhibao": 3}, True, id="unknown-later-count"),
        pytest.param({"accepted": None}, False, id="old-count-missing"),
        pytest.param({"steps": -1}, False, id="negative"),
        pytest.param({"steps": True}, False, id="bool"),
        pytest.param({"Bad Name": 1}, False, id="bad-name"),
    ],
)
def test_report_body_check_old_set_required_newer_optional(change: dict[str, Any],
                                                          ok: bool) -> None:  # fmt: skip
    body = legacy_body(TOWN_OCTOBER)
    for name, value in change.items():
        if value is None:
            del body["figures"][name]
        else:
            body["figures"][name] = value
    if ok:
        check_body(body)
    else:
        with pytest.raises(ValueError):
            check_body(body)


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param({"department": {}}, id="unknown-part"),
        pytest.param({"item": {"A1": {"accepted": -1}}}, id="negative"),
        pytest.param({"item": {"A1": 3}}, id="not-a-row"),
        pytest.param({"item": {"": {"accepted": 1}}}, id="empty-key"),
    ],
)
def test_report_body_check_refuses_bad_parts(parts: dict[str, Any]) -> None:
    body = legacy_body(TOWN_OCTOBER) | {"parts": parts}
    with pytest.raises(ValueError):
        check_body(body)


def test_reconcile_names_no_one_for_the_city(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        hand_built_month(net)
        result = {f["node_id"] for f in findings(net.city, "report_mismatch", now=NOW)}
    assert CITY not in result
