"""Reconciliation: each kind of finding caused by a scenario that really causes it, and absent
when the cause is; and the network's health for the city's `status`."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sync.clock import ZONE
from sync.ingest import ingest
from sync.node import Node
from sync.protocol.batch import decode_batch, encode_batch
from tests.support.topology import CITY, TOWN, VILLAGE, hand_down
from tests.tiers.test_figures import PERSON, City, fixed, push, small_city, t, up
from tiers.cases import service
from tiers.city.network import network_health
from tiers.city.reconcile import Finding, Thresholds, reconcile
from tiers.node import open_home
from tiers.reports import submit_monthly

# its cities on SQLite, then on PostgreSQL: there in the soak run but for the tests marked
# pg_ci (a bounded sample in CI: tests/support/postgres.py soak_marks)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]

NOW = datetime(2025, 11, 20, 9, tzinfo=ZONE)


def findings(node: Node, kind: str, *, now: datetime = NOW, period: str = "2025-10",
             limits: Thresholds | None = None) -> list[dict[str, Any]]:  # fmt: skip
    result = reconcile(node, period, now=now, limits=limits)
    return [f for f in result["findings"] if f["kind"] == kind]


def worked_month(net: City) -> str:
    """A quiet October: the town accepts one A1 on 10-09 and completes it on 10-10; the
    village receives nothing. Returns the case id."""
    case_id = service.accept(net.town, item_code="A1", applicant=PERSON, at=t("10-09"))
    service.complete(net.town, case_id, "approved", at=t("10-10"))
    return case_id


@pytest.mark.pg_ci
def test_reconcile_report_mismatch_after_late_entry(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        worked_month(net)
        submit_monthly(net.town, "2025-10", at="2025-11-03T09:00")
        up(net, t("11-03", "12:00"))
        assert findings(net.city, "report_mismatch") == []
        # 补录 on 11-04: a paper record of a case accepted on 10-20, after the report went up.
        service.accept(net.town, item_code="A1", applicant=PERSON, at=t("10-20"))
        up(net, t("11-04", "12:00"))
        found = findings(net.city, "report_mismatch")
    by_field = {f["evidence"]["field"]: f for f in found if f["evidence"]["part"] == "total"}
    # due 10-27, open at the close of October: carried out, and its step open and late
    assert set(by_field) == {"received", "accepted", "open_overdue", "carried_out",
                             "steps_open_late"}  # fmt: skip
    # the parts say the same of the one row they concern
    assert {(f["evidence"]["part"], f["evidence"]["key"]) for f in found
            if f["evidence"]["part"] != "total"} == {("item", "A1"), ("kind", "promised")}
    accepted = by_field["accepted"]
    assert accepted["node_id"] == TOWN
    assert (accepted["evidence"]["reported"], accepted["evidence"]["computed"]) == (1, 2)
    assert accepted["evidence"]["report_hash"] is not None
    assert "accepted" in accepted["detail"]


def test_reconcile_missing_report_only_for_nodes_that_did_not_report(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        worked_month(net)
        submit_monthly(net.town, "2025-10", at="2025-11-03T09:00")
        up(net, t("11-03", "12:00"))
        missing = findings(net.city, "missing_report")
        not_over = findings(net.city, "missing_report", now=datetime(2025, 10, 25, tzinfo=ZONE))
        submit_monthly(net.village, "2025-10", at="2025-11-05T09:00")
        up(net, t("11-05", "12:00"))
        after = findings(net.city, "missing_report")
    assert [f["node_id"] for f in missing] == [VILLAGE]
    assert not_over == []  # a month that is not over is not due
    assert after == []


@pytest.mark.pg_ci
def test_reconcile_fork_from_a_copied_village(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        service.receive(net.village, "B2", PERSON, at=t("10-09"))
        up(net, t("10-09", "12:00"))
        assert findings(net.city, "fork") == []
        shutil.copytree(net.village.home, tmp_path / "copy")  # a restore from a copied disk
        with open_home(tmp_path / "copy", clock=fixed(NOW)) as twin:
            service.receive(twin, "B2", PERSON, at=t("10-10"))
            fork_run = twin.store.entries(VILLAGE, after=net.city.store.head(VILLAGE)[0])
        service.receive(net.village, "B2", PERSON, at=t("10-10", "11:00"))
        up(net, t("10-10", "12:00"))
        result = ingest(net.city.store, decode_batch(encode_batch(fork_run)), me=CITY,
                        sender=VILLAGE, received_at=t("10-11"))  # fmt: skip
        found = findings(net.city, "fork")
    assert result.forks
    assert [f["node_id"] for f in found] == [VILLAGE]
    assert found[0]["evidence"]["seq"] == fork_run[0].seq
    assert found[0]["evidence"]["held_hash"] != found[0]["evidence"]["other_hash"]


def test_reconcile_gap_while_a_village_log_lags(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        village, town, city = net.village, net.town, net.city
        case_id = service.accept(village, item_code="D4", applicant=PERSON, at=t("10-09"))
        service.forward(village, case_id, at=t("10-09", "11:00"))
        push(village, town, t("10-09", "12:00"))
        service.accept(town, case_id, at=t("10-10"))
        service.complete(town, case_id, "approved", at=t("10-11"))
        submit_monthly(town, "2025-10", at="2025-11-03T09:00")
        push(town, city, t("11-03", "12:00"), only={TOWN})  # not the village's log
        found = findings(city, "gap")
        push(town, city, t("11-04", "12:00"))
        after = findings(city, "gap")
    assert {f["node_id"] for f in found} == {VILLAGE}
    waiting = [f for f in found if "referenced_by" in f["evidence"]]
    assert waiting and waiting[0]["evidence"]["case_id"] == case_id
    assert waiting[0]["evidence"]["referenced_by"][0] == TOWN
    reported = [f for f in found if "held_by_reporter" in f["evidence"]]
    assert reported and reported[0]["evidence"]["held_here"] == 0
    assert reported[0]["evidence"]["reporter"] == TOWN
    assert after == []


def test_reconcile_stale_node_after_silence(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        service.receive(net.village, "B2", PERSON, at=t("10-09"))
        up(net, t("10-09", "12:00"))
        quiet = findings(net.city, "stale_node", now=datetime(2025, 10, 12, tzinfo=ZONE))
        stale = findings(net.city, "stale_node")
        strict = findings(net.city, "stale_node", now=datetime(2025, 10, 12, tzinfo=ZONE),
                          limits=Thresholds(stale_days=1))  # fmt: skip
    assert VILLAGE not in {f["node_id"] for f in quiet}
    village = [f for f in stale if f["node_id"] == VILLAGE]
    assert village and village[0]["evidence"]["last_heard"] == t("10-09", "12:00")
    assert village[0]["evidence"]["days"] > 7
    assert VILLAGE in {f["node_id"] for f in strict}


def test_reconcile_orphan_forward_never_taken_up(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        orphan = service.receive(net.village, "B2", PERSON, at=t("10-09"))
        service.forward(net.village, orphan, at=t("10-09", "11:00"))
        taken = service.receive(net.village, "B2", PERSON, at=t("10-09", "12:00"))
        service.forward(net.village, taken, at=t("10-09", "13:00"))
        push(net.village, net.town, t("10-09", "14:00"))
        service.accept(net.town, taken, at=t("10-10"))
        up(net, t("10-10", "12:00"))
        early = findings(net.city, "orphan_forward", now=datetime(2025, 10, 10, tzinfo=ZONE))
        found = findings(net.city, "orphan_forward")
    assert early == []  # a day is not long enough to worry
    assert [f["evidence"]["case_id"] for f in found] == [orphan]
    assert found[0]["node_id"] == TOWN and found[0]["evidence"]["from"] == VILLAGE


def test_reconcile_clock_skew_of_a_fast_village_clock(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        true_time = datetime(2025, 10, 9, 10, tzinfo=ZONE)
        net.village.clock = fixed(true_time + timedelta(hours=2))  # two hours fast
        net.town.clock = fixed(true_time)
        service.receive(net.village, "B2", PERSON)  # stamped by the village's clock
        service.receive(net.town, "A1", PERSON)
        up(net, (true_time + timedelta(minutes=5)).isoformat())
        found = findings(net.city, "clock_skew")
        other_month = findings(net.city, "clock_skew", period="2025-11")
    assert [f["node_id"] for f in found] == [VILLAGE]
    assert found[0]["evidence"]["seconds"] == 2 * 3600 - 5 * 60  # ahead of its arrival
    assert other_month == []


@pytest.mark.pg_ci
def test_reconcile_clock_skew_found_however_the_pushes_were_projected(tmp_path: Path) -> None:
    """A village clock two hours fast, set right before its next entry: the city projects
    both pushes in one catch-up (as `serve` defers them), and the fast entry is still the one
    found, not the later-stamped entry that arrived on time."""
    with small_city(tmp_path) as net:
        true_time = datetime(2025, 10, 9, 10, tzinfo=ZONE)
        net.city.store.defer_projections()
        net.village.clock = fixed(true_time + timedelta(hours=2))  # stamped 12:00
        service.receive(net.village, "B2", PERSON)
        up(net, (true_time + timedelta(minutes=5)).isoformat())  # arrives 10:05
        net.village.clock = fixed(true_time + timedelta(hours=2, minutes=30))  # set right
        service.receive(net.village, "B2", PERSON)  # stamped 12:30
        up(net, (true_time + timedelta(hours=2, minutes=35)).isoformat())  # arrives 12:35
        net.city.store.catch_up()
        found = findings(net.city, "clock_skew")
    assert [f["node_id"] for f in found] == [VILLAGE]
    assert found[0]["evidence"]["seconds"] == 2 * 3600 - 5 * 60
    assert found[0]["evidence"]["at"].startswith("2025-10-09T12:00")


def test_reconcile_custody_violation_of_a_concurrent_withdrawal(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        clash = service.receive(net.village, "B2", PERSON, at=t("10-09"))
        service.forward(net.village, clash, at=t("10-09", "11:00"))
        calm = service.receive(net.village, "B2", PERSON, at=t("10-09", "12:00"))
        service.forward(net.village, calm, at=t("10-09", "13:00"))
        push(net.village, net.town, t("10-09", "14:00"))
        service.accept(net.town, clash, at=t("10-10", "09:00"))  # the town takes it …
        service.withdraw(net.village, clash, "申请人撤回", at=t("10-10", "09:30"))  # … unseen
        service.withdraw(net.village, calm, "申请人撤回", at=t("10-10", "09:40"))  # not taken
        up(net, t("10-10", "12:00"))
        found = findings(net.city, "custody_violation")
        september = findings(net.city, "custody_violation", period="2025-09")
    assert [(f["node_id"], f["evidence"]["case_id"]) for f in found] == [(VILLAGE, clash)]
    assert found[0]["evidence"]["holder"] == TOWN
    assert found[0]["evidence"]["type"] == "case.withdrawn"
    assert september == []


def test_reconcile_quiet_network_has_no_findings(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        worked_month(net)
        submit_monthly(net.town, "2025-10", at="2025-11-03T09:00")
        submit_monthly(net.village, "2025-10", at="2025-11-03T09:00")
        up(net, t("11-18", "12:00"))
        result = reconcile(net.city, "2025-10", now=NOW)
    assert result["findings"] == []
    assert result["reports"] == 2


def test_network_health_lists_every_node(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        case_id = service.receive(net.village, "B2", PERSON, at=t("10-09"))
        service.forward(net.village, case_id, at=t("10-09", "11:00"))
        service.accept(net.town, item_code="A1", applicant=PERSON, at=t("10-09"))  # due 10-15
        up(net, t("10-09", "12:00"))
        hand_down(net.city, net.town)
        health = network_health(net.city, now=NOW)
    nodes = {n["node_id"]: n for n in health["nodes"]}
    assert set(nodes) == {CITY, TOWN, VILLAGE}
    assert nodes[VILLAGE]["entries_held"] == 2  # received, forwarded
    assert nodes[VILLAGE]["last_heard"] == t("10-09", "12:00")
    assert nodes[VILLAGE]["open_forwards_out"] == 1 and nodes[TOWN]["open_forwards_in"] == 1
    assert nodes[TOWN]["warnings"]["red"] == 1  # the A1 case, still open on 11-20
    assert nodes[VILLAGE]["stale"] and not nodes[CITY]["stale"]
    assert health["warnings"] == {"yellow": 0, "red": 1}


def test_finding_detail_of_one_says_one_not_1_things() -> None:
    used = {"via": "330782001", "how": "entry", "last_at": "2025-10-09T10:00:00+08:00",
            "reported_by": "330782001"}  # fmt: skip
    once = Finding("revoked_key_used", "330782001201", {**used, "count": 1}).to_json()
    twice = Finding("revoked_key_used", "330782001201", {**used, "count": 2}).to_json()
    assert "used once (" in once["detail"] and "1 times" not in once["detail"]
    assert "used 2 times (" in twice["detail"]
    held = {"first_seq": 7, "seq": 7, "type": "case.accepted", "why": "no custody"}
    one = Finding("quarantined_entry", "330782001201", {**held, "count": 1}).to_json()
    assert one["detail"].startswith("One of 330782001201's entries (#7) is held")
    assert one["evidence"]["count"] == 1 and one["kind"] == "quarantined_entry"
