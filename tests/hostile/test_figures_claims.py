"""Figures a town cannot game with its own real key (issue #12, parts 2 and 7).

The town runs modified software (`Actor`): it signs a corrected monthly report for last month
that claims the city's step (环节) as its own and whose by-item part disagrees with its own
total, and it signs a forward stamped before it accepted the case (to charge nothing to its
own step). All of it reaches a real city server and is stored (each entry is well formed and
signed by an enrolled key); none of it moves a figure: the city recomputes every count from
the entries, charges each step to the node that spent it, and reconcile names the town.

Last month's working days come from the calendar, so the test does not depend on today.
WS-002 (公共场所卫生许可) is a 上报 item promised in 7 working days and decided by the city:
a review step (初审) may take 1 (a quarter of 7, at least one), the city keeps 7 − 1 = 6.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from tests.hostile.harness import Actor
from tests.hostile.network import CITY, TOWN, Net, assert_works, findings, today, zb, zj
from tiers.calendar import WorkCalendar

# the attacks reach the city too: its PostgreSQL runs in the soak run (the CI run's sample
# of a member pushing to a PostgreSQL city: test_city_pushes.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]

ITEM = "330782-WS-002"


def _last_month() -> tuple[str, list[date]]:
    first = today().replace(day=1)
    start = (first - timedelta(days=1)).replace(day=1)
    cal = WorkCalendar()
    days = [start + timedelta(days=i) for i in range((first - start).days)]
    return f"{start:%Y-%m}", [d for d in days if cal.is_workday(d)]


def _at(day: date, clock: str = "09:00") -> str:
    return f"{day.isoformat()}T{clock}:00+08:00"


def _last_body(actor: Actor) -> tuple[int, dict[str, Any]]:
    entry = actor.log()[-1]
    return entry.seq, entry.fields()["body"]


def test_town_cannot_claim_the_city_step_or_a_part_it_did_not_count(net: Net) -> None:
    period, d = _last_month()
    town, city = net.home(TOWN), net.home(CITY)
    actor = net.actor(TOWN)
    with net.serving(CITY) as served:
        city_url = served[CITY].url
        # 1: the town accepts and forwards the same day (on time: 0 of 1); the city takes it
        # the next working day and completes it ten working days later (10 of 6: late).
        one = zb(town, "case", "accept", "--item", ITEM, "--applicant", "李四",
                 "--at", _at(d[2])).stdout.strip()  # fmt: skip
        zb(town, "case", "forward", one, "--at", _at(d[2], "10:00"))
        # 2: accepted on d[5]; the hostile town signs its forward as of d[4], before that.
        two = zb(town, "case", "accept", "--item", ITEM, "--applicant", "王五",
                 "--at", _at(d[5])).stdout.strip()  # fmt: skip
        seq, _ = _last_body(actor)
        actor.forge("case.forwarded", {"case_id": two, "after": [TOWN, seq], "to": CITY},
                    at=_at(d[4]))  # fmt: skip
        zb(town, "sync", "--peer", city_url)
        zb(city, "case", "accept", one, "--at", _at(d[3]))
        zb(city, "case", "complete", one, "--result", "approved", "--at", _at(d[13]))
        zb(city, "case", "accept", two, "--at", _at(d[5], "11:00"))
        zb(city, "case", "complete", two, "--result", "approved", "--at", _at(d[6]))
        # The town hears of the completions, reports honestly, then signs a forged correction
        # (the latest report stands).
        zb(town, "sync", "--peer", city_url)
        zb(town, "report", "monthly", "--period", period)
        _, honest = _last_body(actor)
        forged = {**honest, "figures": dict(honest["figures"]),
                  "parts": {p: {k: dict(v) for k, v in rows.items()}
                            for p, rows in honest["parts"].items()}}  # fmt: skip
        forged["figures"]["steps"] += 1  # the city's late step on case 1, claimed
        forged["figures"]["steps_on_time"] += 1
        forged["parts"]["item"][ITEM]["accepted"] += 2  # a by-item row unlike the total
        actor.forge("report.monthly", forged)
        pushed = actor.push_own(city_url)
        assert pushed.status_code == 200, pushed.text
        by_node = zj(city, "stats", "--period", period, "--by", "node")
        result = zj(city, "reconcile", "--period", period)
    rows = {row["key"]: row for row in by_node["rows"]}
    # The steps are charged where they were spent: the town's one honest review (case 2's
    # back-dated one counts nowhere), the city's two decisions (1 late, 2 on time).
    assert (rows[TOWN]["steps"], rows[TOWN]["steps_on_time"]) == (1, 1)
    assert (rows[CITY]["steps"], rows[CITY]["steps_on_time"]) == (2, 1)
    assert rows[CITY]["step_days_used"] == 11 and rows[CITY]["step_days_allowed"] == 13
    # The town's promise is still the town's: case 1, done 11 working days after its
    # acceptance (of 7), is overdue for it; case 2 (1 day) is not.
    assert (rows[TOWN]["accepted"], rows[TOWN]["overdue"]) == (2, 1)
    found = result["findings"]
    total = {(f["evidence"]["field"], f["evidence"]["reported"], f["evidence"]["computed"])
             for f in found if f["kind"] == "report_mismatch"
             and f["evidence"]["part"] == "total"}  # fmt: skip
    assert total == {("steps", 2, 1), ("steps_on_time", 2, 1)}
    parts = {(f["evidence"]["part"], f["evidence"]["key"], f["evidence"]["field"])
             for f in found if f["kind"] == "report_mismatch"
             and f["evidence"]["part"] != "total"}  # fmt: skip
    assert parts == {("item", ITEM, "accepted")}
    sums = {(f["evidence"]["part"], f["evidence"]["field"], f["evidence"]["parts_sum"],
             f["evidence"]["total"])
            for f in found if f["kind"] == "report_inconsistent"}  # fmt: skip
    assert ("item", "accepted", 4, 2) in sums
    assert ("item", "steps", 1, 2) in sums and ("kind", "steps", 1, 2) in sums
    assert all(f["node_id"] == TOWN for f in found
               if f["kind"] in ("report_mismatch", "report_inconsistent"))  # fmt: skip
    backdated = findings(city, "backdated_step", period)
    assert [(f["node_id"], f["evidence"]["case_id"]) for f in backdated] == [(TOWN, two)]
    assert_works(city, town, period=period)
