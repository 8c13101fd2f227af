"""A town running modified software games its figures with its real key; the city's
figures do not move, and its reconcile names the town and each entry.

What the town signs on its own cases (行政许可法 第四十二条: one extension of at most 10
working days, while the time limit runs; 票款分离: the catalogue's fee, paid before
delivery):
- case K, 残疾人生活补贴 (15 working days), accepted Monday 3 August 2026, due the 24th:
  an extension of 100 days (over the limit), one of 5 (legal: due the 31st), a second one;
  then, after recording case L on 15 September, a suspension dated 20 August (back-dated
  across the deadline: its log is seq-ordered), a resume and the completion on 16 September.
- case L: an extension dated 20 November, after its deadline.
- case N, 健康证明 (45.00 yuan): a fee of 500.00 with no reason, delivery unpaid.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.hostile.network import CITY, TOWN, Net, assert_works, zb, zj

# the attacks reach the city too: its PostgreSQL runs in the soak run (the CI run's sample
# of a member pushing to a PostgreSQL city: test_city_pushes.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]

MZ, WS = "330782-MZ-002", "330782-WS-001"


class _Case:
    """One of the hostile town's cases: each event names the previous one as `after`."""

    def __init__(self, net: Net, case_id: str) -> None:
        self.actor, self.case_id, self.last = net.actor(TOWN), case_id, None
        self.seqs: dict[str, int] = {}

    def sign(self, kind: str, at: str, label: str = "", **fields: Any) -> int:
        body = {"case_id": self.case_id, "after": list(self.last) if self.last else None}
        entry = self.actor.forge("case." + kind, body | fields, at=f"{at}+08:00")
        self.last = (TOWN, entry.seq)
        self.seqs[label or kind] = entry.seq
        return entry.seq


def _received(case: _Case, item: str, at: str) -> None:
    case.sign("received", at, item_code=item, applicant={"name": "张三"}, materials=[])


def test_hostile_town_cannot_game_extensions_suspensions_and_fees(net: Net) -> None:
    k, lcase, n = (_Case(net, f"{TOWN}-{day}-0001") for day in ("20260803", "20260915",
                                                                 "20261123"))  # fmt: skip
    _received(k, MZ, "2026-08-03T09:00:00")
    k.sign("accepted", "2026-08-03T09:05:00", promised_days=15)
    k.sign("extended", "2026-08-10T10:00:00", "too_long", days=100, reason="x")
    k.sign("extended", "2026-08-11T10:00:00", "legal", days=5, reason="核查", approved_by="局长")
    k.sign("extended", "2026-08-12T10:00:00", "twice", days=5, reason="x", approved_by="局长")
    _received(lcase, MZ, "2026-09-15T09:00:00")  # the town writes on 15 September …
    k.sign("suspended", "2026-08-20T10:00:00", reason="专家评审")  # … then "20 August"
    k.sign("resumed", "2026-09-16T09:00:00")
    k.sign("completed", "2026-09-16T10:00:00", result="approved")
    lcase.sign("accepted", "2026-09-15T09:05:00", promised_days=15)
    lcase.sign("extended", "2026-11-20T10:00:00", "late", days=5, reason="x", approved_by="局长")
    _received(n, WS, "2026-11-23T09:00:00")
    n.sign("accepted", "2026-11-23T09:05:00", promised_days=1)
    n.sign("fee_assessed", "2026-11-23T09:10:00", fee_fen=50000)
    n.sign("completed", "2026-11-23T15:00:00", result="approved")
    n.sign("delivered", "2026-11-23T16:00:00", method="window")

    city = net.home(CITY)
    with net.serving(CITY) as served:
        answer = net.actor(TOWN).push_own(served[CITY].url)
        assert answer.status_code == 200, answer.text

    shown = zj(city, "case", "show", k.case_id)
    refused = {(v["seq"], v["problem"]) for v in shown["violations"]}
    assert {(k.seqs["too_long"], "case.extend_limit"), (k.seqs["twice"], "case.extend_twice"),
            (k.seqs["suspended"], "case.backdated_deadline")} <= refused  # fmt: skip
    assert (shown["extension_days"], shown["deadline"]) == (5, "2026-08-31")
    assert shown["completed_at"] == "2026-09-16T10:00:00+08:00"
    row = next(r for r in zj(city, "stats", "--period", "2026-09", "--by", "node")["rows"]
               if r["key"] == TOWN)  # fmt: skip
    assert (row["completed"], row["on_time"], row["overdue"]) == (1, 0, 1)  # not "on time"
    late = zj(city, "case", "show", lcase.case_id)
    assert [v["problem"] for v in late["violations"]] == ["case.extend_late"]
    assert late["extension_days"] == 0
    fee_case = zj(city, "case", "show", n.case_id)
    assert fee_case["status"] == "completed"  # the unpaid delivery did not happen
    assert [(v["problem"], v["kind"]) for v in fee_case["violations"]] == [
        ("case.deliver_unpaid", "guard")
    ]

    def found(period: str, kind: str) -> set[tuple[str, int, Any]]:
        listed = zj(city, "reconcile", "--period", period)["findings"]
        return {(f["node_id"], f["evidence"]["seq"], f["evidence"].get("problem"))
                for f in listed if f["kind"] == kind}  # fmt: skip

    assert found("2026-08", "guard_violation") == {
        (TOWN, k.seqs["too_long"], "case.extend_limit"),
        (TOWN, k.seqs["twice"], "case.extend_twice"),
        (TOWN, k.seqs["suspended"], "case.backdated_deadline"),
    }
    november = found("2026-11", "guard_violation")
    assert november == {(TOWN, lcase.seqs["late"], "case.extend_late"),
                        (TOWN, n.seqs["delivered"], "case.deliver_unpaid")}  # fmt: skip
    assert found("2026-11", "fee_override") == {(TOWN, n.seqs["fee_assessed"], None)}
    detail = [f["detail"] for f in zj(city, "reconcile", "--period", "2026-11")["findings"]
              if f["kind"] == "fee_override"]  # fmt: skip
    assert "500.00" in detail[0] and "45.00" in detail[0] and "no reason" in detail[0]
    zb(city, "log", "verify")
    assert_works(city, period="2026-11")
