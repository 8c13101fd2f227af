"""Issue #12 end to end: one hand-counted month of 电子监察 on a real city, town and village.

December 2026, counted on the Chinese calendar (the 国务院办公厅 2026 holiday notice puts
no holiday in December: every Monday–Friday works, no 调休 weekend day). Working days:
1–4 (Tue–Fri), 7–11, 14–18, 21–25, 28–31. The installed chinesecalendar knows years up to
2026; 2027 is counted on weekends alone until the city publishes it whole, so Friday
2027-01-01 (元旦 in the real arrangement) is a guessed working day.

Rules used, with their source:
- 受理次日起算 (DESIGN §3; 行政许可法 第八十二条: periods in working days): a deadline is the
  N-th working day after acceptance; a 即办件 is due the day it is accepted.
- 行政许可法 第四十二条: 20 working days, extendable ONCE by at most 10 (the item's
  `extension_days`) with the head's approval, and only while the time limit runs.
- 票款分离 (the centres' practice, DESIGN §3: the window assesses the fee the catalogue
  fixes, the bank records the payment): a fee unlike the catalogue's needs a reason (a
  `fee_override` finding), and a fee item is served only once paid. 行政许可法 第四十四条
  (送达 within ten days, working days by 第八十二条) is the 'undelivered' warning.
- 环节 (issue #12 part 2, tiers/steps.py): a review step (初审) may take a quarter of the
  promised days, at least 1; the deciding step gets the rest plus extensions.
- 投诉: 5 working days from the day after filing (setting `complaint_days`, default 5).
- 好差评 (国办发〔2019〕51号: every 差评 is verified and rectified; GB/T 39046 scores, 4 and
  5 are 差评): a bad rating, also on a 不予受理 case, opens a rectification due in 15
  working days (Sichuan's scheme, the default of `rectify_days`).

The cases (A1 居住证: 承诺件, 5 promised / 20 statutory days, fee 10.50, town decides; B2 低保:
上报件, 10 / 30 days, received in villages, decided by the city; C3: 即办件):

E  A1 accepted 12-01 09:00, due 12-08 (02, 03, 04, 07, 08). 12-07: an extension of 11 days
   is refused (over the limit of 10), one of 5 approved by the centre's head is recorded:
   due 12-15 (09, 10, 11, 14, 15). 12-10: a second extension is refused. Completed 12-14:
   early, 9 days used (02–04, 07–11, 14); its step: 9 of 5 + 5.
L  A1 accepted 12-01 09:10, due 12-08. 12-09: an extension is refused (the deadline has
   passed). Completed 12-10: late, 7 days used (02–04, 07–10); its step: 7 of 5.
B  B2 received at the village 12-01 and forwarded the same day (the village's step: 0 of
   2); the town takes and accepts it 12-02 (due 12-16: 03, 04, 07–11, 14–16) and forwards it
   12-03 (its 初审: 1 day, 12-03, of 10 // 4 = 2: on time); the city takes it 12-04 and
   completes it 12-21: 11 days (07–11, 14–18, 21) of its 10 − 2 = 8 — the city's step is
   late. The case is overdue (due 12-16), 13 days used (03, 04, 07–11, 14–18, 21), and
   counts for the town, which accepted it. Delivered and rated 1 at the village 12-22.
R  A1 received at the town 12-03 and rejected (不予受理); rated 5 at once: a rectification
   opens, due 12-24 (04, 07–11, 14–18, 21–24: 15 working days), still open on 12-31 (red).
I  C3 accepted and completed 12-04: on time (not early), its step 0 of 0.
F1 A1 accepted 12-07 (due 12-14: 08–11, 14); fee 10.50 as the catalogue says, assessed
   12-07, paid 12-08; completed 12-09: early, 2 days (08, 09); delivered, rated 1.
F2 A1 accepted 12-08 (due 12-15: 09–11, 14, 15); fee 20.00 with the reason 加急制证工本费
   (a fee_override finding); completed 12-11: early, 3 days (09–11); delivery refused while
   unpaid; paid 12-14, delivered, rated 2.
P  A1 accepted 12-28: 29, 30, 31, then 2027 on weekends alone: 01-01 (guessed), 01-04 —
   due 2027-01-04, provisional. With the whole 2027 published (元旦 off): 01-04, 01-05 —
   due 2027-01-05. Open at the close of December, not overdue then.
K1 complaint about the town filed 12-07 (due 12-14: 08–11, 14), replied 12-08, closed
   12-10: on time.
K2 complaint about the town filed 12-21 (due 12-28: 22–25, 28), still open on 12-31: red.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import cli.common
from cli.main import cli as zhibao_cli
from sync.clock import ZONE, Clock
from sync.node import Node
from sync.protocol.errors import IllegalTransitionError
from sync.protocol.i18n import use_locale
from sync.round import sync_round
from tests.helpers_cases import count_entries
from tests.support.calendars import WHOLE_2027
from tests.support.postgres import sqlite_only
from tests.support.servers import serve_in_thread
from tests.support.topology import CITY, TOWN, VILLAGE
from tests.tiers.test_figures import City, down, push, small_city
from tiers.calendar import CalendarOverrides
from tiers.calendar_publish import package_years, publish_calendar
from tiers.cases import service
from tiers.cases.service import Applicant
from tiers.cases.views import case_view, list_cases
from tiers.city.stats import compute_stats
from tiers.complaints import service as complaints
from tiers.complaints.service import complaint_view
from tiers.figures import Counts, parse_period
from tiers.node import open_home
from tiers.provisional import calendar_status
from tiers.reports import latest_reports, submit_monthly

pytestmark = pytest.mark.usefixtures("city_engine")  # every city here: SQLite, then PostgreSQL

START = datetime(2026, 12, 1, 8, 0, tzinfo=ZONE)
REPORTED = datetime(2027, 1, 4, 9, 0, tzinfo=ZONE)  # Monday: December is over
CITY_READS = datetime(2027, 1, 4, 10, 0, tzinfo=ZONE)
PERSON = Applicant("陈美华", phone="13905790002")
HEAD = "中心主任 张伟"


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    assert 2027 not in package_years(), "chinesecalendar knows 2027: move this month a year on"
    use_locale("en")
    yield
    use_locale(None)


def at(net: City, day: str, clock: str) -> str:
    """Move every node's clock to `day` (MM-DD of December 2026) at `clock`, and return
    that time for --at: each event is recorded on the day it happened."""
    moment = datetime.fromisoformat(f"2026-{day}T{clock}:00+08:00")
    for node in (net.city, net.town, net.village):
        node.clock.offset = moment - node.clock.base_now()
    return moment.isoformat()


def refused(node: Node, key: str, act: Callable[[], object]) -> None:
    """`act` is refused with `key` and appends nothing (guards.py: check, then append)."""
    before = count_entries(node.store)
    with pytest.raises(IllegalTransitionError) as caught:
        act()
    assert caught.value.key == key
    assert count_entries(node.store) == before


def december(net: City) -> dict[str, str]:
    """The month of the module docstring; returns the case and complaint ids by letter."""
    town, village, city = net.town, net.village, net.city
    ids: dict[str, str] = {}

    def accept(name: str, item: str, when: str) -> str:
        ids[name] = service.accept(town, item_code=item, applicant=PERSON, at=when)
        return ids[name]

    accept("E", "A1", at(net, "12-01", "09:00"))
    accept("L", "A1", at(net, "12-01", "09:10"))
    ids["B"] = service.receive(village, "B2", PERSON, ["户口本"], at=at(net, "12-01", "09:30"))
    service.forward(village, ids["B"], at=at(net, "12-01", "09:40"))
    push(village, town, at(net, "12-01", "12:00"))
    service.accept(town, ids["B"], at=at(net, "12-02", "09:00"))  # takes it and accepts it
    service.forward(town, ids["B"], note="请市民政局审批", at=at(net, "12-03", "10:00"))
    push(town, city, at(net, "12-03", "12:00"))
    ids["R"] = service.receive(town, "A1", PERSON, at=at(net, "12-03", "14:00"))
    service.reject(town, ids["R"], "不属于本中心受理范围", at=at(net, "12-03", "14:10"))
    service.rate(town, ids["R"], 5, "白跑一趟", at=at(net, "12-03", "14:20"), channel="pad")
    service.accept(city, ids["B"], at=at(net, "12-04", "09:00"))  # custody only: town accepted
    service.complete(town, accept("I", "C3", at(net, "12-04", "10:00")), "approved",
                     at=at(net, "12-04", "10:10"))  # fmt: skip

    # 第四十二条: at most 10 working days (A1 names no other limit) …
    def extension(name: str, days: int, reason: str, when: str) -> Callable[[], str]:
        return lambda: service.extend(town, ids[name], days, reason, at=when, approved_by=HEAD)

    refused(town, "case.extend_limit", extension("E", 11, "需实地核查", at(net, "12-07", "09:00")))
    service.extend(town, ids["E"], 5, "需实地核查", at=at(net, "12-07", "09:05"), approved_by=HEAD)
    accept("F1", "A1", at(net, "12-07", "10:00"))
    service.assess_fee(town, ids["F1"], "10.50", at=at(net, "12-07", "10:05"))
    ids["K1"] = complaints.file(town, "窗口人员态度生硬", about_node=TOWN,
                                at=at(net, "12-07", "11:00"))  # fmt: skip
    service.pay(town, ids["F1"], "ICBC-2026-0001", at=at(net, "12-08", "09:00"))
    accept("F2", "A1", at(net, "12-08", "10:00"))
    service.assess_fee(town, ids["F2"], "20.00", at=at(net, "12-08", "10:05"),
                       override_reason="加急制证工本费")  # fmt: skip
    complaints.reply(town, ids["K1"], "已约谈窗口人员并致歉", at=at(net, "12-08", "11:00"))
    # … never after the deadline (L was due 12-08) …
    refused(town, "case.extend_late", extension("L", 5, "补办", at(net, "12-09", "09:00")))
    service.complete(town, ids["F1"], "approved", at=at(net, "12-09", "10:00"))
    service.deliver(town, ids["F1"], at=at(net, "12-09", "10:10"))
    service.rate(town, ids["F1"], 1, at=at(net, "12-09", "10:15"), channel="window")
    # … and once.
    refused(town, "case.extend_twice", extension("E", 3, "再次延长", at(net, "12-10", "09:00")))
    service.complete(town, ids["L"], "approved", at=at(net, "12-10", "10:00"))
    complaints.close(town, ids["K1"], "已整改", at=at(net, "12-10", "11:00"))
    service.complete(town, ids["F2"], "approved", at=at(net, "12-11", "10:00"))
    when = at(net, "12-11", "10:10")  # 票款分离: not served before the fee is paid
    refused(town, "case.deliver_unpaid", lambda: service.deliver(town, ids["F2"], at=when))
    service.pay(town, ids["F2"], "ICBC-2026-0002", at=at(net, "12-14", "09:00"))
    service.deliver(town, ids["F2"], at=at(net, "12-14", "09:10"))
    service.rate(town, ids["F2"], 2, at=at(net, "12-14", "09:15"), channel="window")
    service.complete(town, ids["E"], "approved", at=at(net, "12-14", "10:00"))
    service.complete(city, ids["B"], "approved", at=at(net, "12-21", "10:00"))
    ids["K2"] = complaints.file(town, "办件进度无人告知", about_node=TOWN,
                                at=at(net, "12-21", "11:00"))  # fmt: skip
    at(net, "12-21", "12:00")
    down(net)
    service.deliver(village, ids["B"], at=at(net, "12-22", "10:00"))
    service.rate(village, ids["B"], 1, "很方便", at=at(net, "12-22", "10:05"), channel="pad")
    accept("P", "A1", at(net, "12-28", "09:00"))
    return ids


def to_january(net: City, moment: datetime) -> None:
    for node in (net.city, net.town, net.village):
        node.clock.offset = moment - node.clock.base_now()


@contextmanager
def served(node: Node) -> Iterator[str]:
    """`node` served over real HTTP (uvicorn on 127.0.0.1 port 0) with its own clock. Once
    the server has stopped, the node is as a command would open it again (tiers.node.open_home):
    projections caught up, no longer deferred as `serve` defers them."""
    with serve_in_thread(node=node) as url:
        yield url
    node.store.catch_up()
    node.store.deferring = False


def replicate_and_report(net: City) -> None:
    """2027-01-04: the village syncs with the town, both sign their December report, the
    town syncs with the city — real signed, sealed rounds (sync.round) over loopback."""
    to_january(net, REPORTED)
    with served(net.town) as town_url:
        assert not sync_round(net.village, town_url).rejected
    assert submit_monthly(net.village, "2026-12").appended
    with served(net.town) as town_url:
        assert not sync_round(net.village, town_url).rejected
    assert submit_monthly(net.town, "2026-12").appended
    with served(net.city) as city_url:
        assert not sync_round(net.town, city_url).rejected


# The town's December, counted by hand (module docstring).
TOWN_DECEMBER = Counts(
    received=7,  # E, L, R, I, F1, F2, P (B was received at the village)
    accepted=7,  # E, L, B, I, F1, F2, P
    completed=6,  # E, L, B, I, F1, F2
    open_at_start=0,
    on_time=4,  # E, I, F1, F2
    early=3,  # E (12-14 < 12-15), F1 (12-09 < 12-14), F2 (12-11 < 12-15)
    overdue=2,  # L (12-10 > 12-08), B (12-21 > 12-16)
    open_overdue=0,  # P is due in 2027
    promised_completed=5,  # E, L, B, F1, F2 (I is a 即办件)
    days_used_total=34,  # 9 + 7 + 13 + 2 + 3
    days_promised_total=30,  # 4 × 5 + 10 (the extension is not part of the promise)
    rated=4,  # R (5), F1 (1), F2 (2), B (1, at the village: the town's case)
    satisfied=3,
    bad_ratings=1,  # R
    fees_assessed_fen=3050,  # 1050 (F1) + 2000 (F2)
    fees_paid_fen=3050,  # F1 12-08, F2 12-14
    rejected=1,  # R
    withdrawn=0,
    carried_out=1,  # P: 0 + 7 accepted − 6 completed
    statutory_completed=5,
    statutory_days_used=34,
    statutory_days_promised=30,
    statutory_days_total=110,  # 4 × 20 + 30
    steps=6,  # E, L, I, F1, F2 (decided here) and B's 初审
    steps_on_time=5,  # all but L
    step_days_used=22,  # 9 + 7 + 0 + 2 + 3 + 1
    step_days_allowed=27,  # (5 + 5) + 5 + 0 + 5 + 5 + 2
    steps_open_late=0,  # P's step: 3 days (29–31) of 5 at the close
    complaints=2,  # K1, K2
    complaints_open_at_start=0,
    complaints_closed=1,  # K1
    complaints_closed_on_time=1,  # K1: 12-10 ≤ 12-14
    completed_rated=3,  # F1, F2, B
)
# The village relayed B the day it came: its step 0 of 2; the city decided B, late: 11 of 8.
VILLAGE_DECEMBER = Counts(received=1, steps=1, steps_on_time=1, step_days_allowed=2)
CITY_DECEMBER = Counts(steps=1, steps_on_time=0, step_days_used=11, step_days_allowed=8)


def cli_json(home: Path, *args: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`zhibao ARGS --json --home HOME`, in process on the home opened with the city's
    clock at CITY_READS (the one seam: cli.common.open_home), so the test means the same
    on any day it runs."""
    clock = Clock(now=lambda: CITY_READS)
    monkeypatch.setattr(cli.common, "open_home", lambda where: open_home(where, clock=clock))
    result = CliRunner().invoke(zhibao_cli, [*args, "--json", "--home", str(home)],
                                catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_supervision_month_stats_and_reconcile_at_the_city(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with small_city(tmp_path, now=START) as net:
        ids = december(net)
        replicate_and_report(net)
        town_report = latest_reports(net.city.store, "2026-12")[TOWN]
        village_report = latest_reports(net.city.store, "2026-12")[VILLAGE]
    assert town_report.counts == TOWN_DECEMBER
    assert village_report.counts == VILLAGE_DECEMBER

    by_node = cli_json(tmp_path / CITY, "stats", "--period", "2026-12", "--by", "node",
                       monkeypatch=monkeypatch)  # fmt: skip
    rows = {row["key"]: row for row in by_node["rows"]}
    assert set(rows) == {CITY, TOWN, VILLAGE}
    assert {k: v for k, v in rows[TOWN].items() if k in TOWN_DECEMBER.to_body()} == (
        TOWN_DECEMBER.to_body()
    )
    town = rows[TOWN]
    assert town["completion_rate"] == 0.8571  # 6 ÷ (0 + 7)
    assert town["on_time_rate"] == 0.6667  # 4 ÷ 6
    assert town["avg_days"] == 6.8  # 34 ÷ 5
    assert town["speedup"] == -0.1333  # 1 − 34 ÷ 30: slower than promised
    assert town["speedup_statutory"] == 0.6909  # 1 − 34 ÷ 110
    assert town["promise_compression"] == 0.7273  # 1 − 30 ÷ 110
    assert town["satisfaction_rate"] == 0.75  # 3 ÷ 4
    assert town["overdue_total"] == 2  # L, B completed late; nothing open past its deadline
    assert town["step_on_time_rate"] == 0.8333  # 5 ÷ 6
    assert town["complaint_closure_rate"] == 0.5  # 投诉办结率: K1 ÷ (0 + K1, K2)
    assert town["complaint_on_time_rate"] == 1.0
    assert town["rating_rate"] == 0.5  # 评议率: F1, F2, B of the 6 completed
    # The late 上报 case is the city's late step, and the town's on-time 初审.
    city = rows[CITY]
    assert {k: city[k] for k in ("steps", "steps_on_time", "step_days_used",
                                 "step_days_allowed", "accepted")} == {
        "steps": 1, "steps_on_time": 0, "step_days_used": 11, "step_days_allowed": 8,
        "accepted": 0}  # fmt: skip
    assert city["step_on_time_rate"] == 0.0 and city["on_time_rate"] is None
    assert rows[VILLAGE]["step_on_time_rate"] == 1.0 and rows[VILLAGE]["received"] == 1
    total = by_node["total"]
    assert (total["received"], total["steps"], total["steps_on_time"]) == (8, 8, 6)
    assert total["step_on_time_rate"] == 0.75  # (5 + 0 + 1) ÷ (6 + 1 + 1)
    assert by_node["provisional"] == []  # December's figures count no day of 2027

    by_kind = cli_json(tmp_path / CITY, "stats", "--period", "2026-12", "--by", "kind",
                       monkeypatch=monkeypatch)  # fmt: skip
    kinds = {row["key"]: row for row in by_kind["rows"]}
    assert set(kinds) == {"promised", "forward", "immediate", "?"}  # ?: complaints about a node
    wanted = {
        # E, L, F1, F2, P accepted (R received); E, F1, F2 early, L late; 9 + 7 + 2 + 3 days
        "promised": {"received": 6, "accepted": 5, "completed": 4, "on_time": 3, "early": 3,
                     "overdue": 1, "days_used_total": 21, "days_promised_total": 20,
                     "rated": 3, "bad_ratings": 1, "rejected": 1, "carried_out": 1,
                     "fees_assessed_fen": 3050, "fees_paid_fen": 3050, "steps": 4,
                     "steps_on_time": 3, "step_days_used": 21, "step_days_allowed": 25,
                     "completion_rate": 0.8, "avg_days": 5.25, "speedup": -0.05,
                     "accepted_share": 0.7143, "complaints": 0},
        # B: 13 of 10 days; its steps: village 0 of 2, town 1 of 2, city 11 of 8
        "forward": {"received": 1, "accepted": 1, "completed": 1, "on_time": 0, "overdue": 1,
                    "days_used_total": 13, "days_promised_total": 10, "rated": 1,
                    "satisfied": 1, "steps": 3, "steps_on_time": 2, "step_days_used": 12,
                    "step_days_allowed": 12, "speedup": -0.3, "speedup_statutory": 0.5667,
                    "accepted_share": 0.1429},
        "immediate": {"received": 1, "accepted": 1, "completed": 1, "on_time": 1, "early": 0,
                      "avg_days": None, "steps": 1, "steps_on_time": 1, "step_days_allowed": 0,
                      "accepted_share": 0.1429},
        "?": {"accepted": 0, "complaints": 2, "complaints_closed": 1,
              "complaints_closed_on_time": 1, "complaint_closure_rate": 0.5},
    }  # fmt: skip
    assert {k: {f: kinds[k][f] for f in want} for k, want in wanted.items()} == wanted
    assert by_kind["total"]["accepted"] == 7 and by_kind["total"]["completed"] == 6

    found = cli_json(tmp_path / CITY, "reconcile", "--period", "2026-12", monkeypatch=monkeypatch)
    assert found["reports"] == 2
    # Both reports agree with the logs; the overridden fee and the unknown 2027 remain
    # (2027 is this year on 2027-01-04, and P's open deadline is counted in it). The three
    # refused extensions and the refused delivery were never written: no guard_violation.
    assert [(f["kind"], f["node_id"]) for f in found["findings"]] == [
        ("calendar_missing", CITY), ("fee_override", TOWN),
    ]  # fmt: skip
    missing, fee = found["findings"]
    assert missing["evidence"] == {"publisher": CITY, "year": 2027, "open_cases": 1,
                                   "this_year": True, "next_year": False,
                                   "published_days": False}  # fmt: skip
    assert fee["evidence"]["case_id"] == ids["F2"]
    assert (fee["evidence"]["fee"], fee["evidence"]["catalogue_fee"]) == ("20.00", "10.50")
    assert fee["evidence"]["reason"] == "加急制证工本费"


@sqlite_only  # the town's own views: no city is the subject
def test_supervision_month_records_at_the_town(tmp_path: Path) -> None:
    """What the town's own views say of the month: the approved extension names its head,
    the open complaint and the open rectification are red by the close of December."""
    with small_city(tmp_path, now=START) as net:
        ids = december(net)
        store = net.town.store
        close = date(2026, 12, 31)
        extended = [e for e in case_view(store, ids["E"], close, 1)["events"]
                    if e["type"] == "case.extended"]  # fmt: skip
        e_case = case_view(store, ids["E"], close, 1)
        k1 = complaint_view(store, ids["K1"], close, 1)
        k2 = complaint_view(store, ids["K2"], close, 1)
        rect = case_view(store, ids["R"], close, 1)["rectification"]
        b_at_city = case_view(net.city.store, ids["B"], close, 1)
        # 第四十四条: E, completed 12-14 and never served, has had 10 working days by 12-28
        # (15–18, 21–25, 28) and 11 by 12-29
        served_late = [case_view(store, ids["E"], date(2026, 12, d), 1)["warning"]
                       for d in (28, 29)]  # fmt: skip
    assert len(extended) == 1  # the refusals appended nothing
    assert (e_case["deadline"], e_case["extension_days"]) == ("2026-12-15", 5)
    assert served_late == [None, "undelivered"]
    raw = [json.loads(e.raw)["body"] for e in net_entries(tmp_path, TOWN)
           if e.type == "case.extended"]  # fmt: skip
    assert raw == [{"case_id": ids["E"], "after": raw[0]["after"], "days": 5,
                    "reason": "需实地核查", "approved_by": HEAD}]  # fmt: skip
    assert (k1["deadline"], k1["status"], k1["on_time"]) == ("2026-12-14", "closed", True)
    assert (k2["deadline"], k2["status"], k2["warning"]) == ("2026-12-28", "open", "red")
    assert (rect["opened_on"], rect["due"], rect["status"], rect["warning"]) == (
        "2026-12-03", "2026-12-24", "open", "red")  # fmt: skip
    # the city holds B as it completed it: the village's delivery goes up in January
    assert (b_at_city["deadline"], b_at_city["status"], b_at_city["holder"]) == (
        "2026-12-16", "completed", CITY)  # fmt: skip


def net_entries(base: Path, origin: str) -> list[Any]:
    with open_home(base / origin) as node:
        return list(node.store.iter_all(origin))


def test_supervision_month_deadline_in_an_unknown_year(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """P's deadline is counted in 2027 on weekends alone: provisional in `case list`,
    `status`, January's `stats`, and `calendar_missing` at the city — until the city
    publishes the whole 2027, when it moves a day (元旦 off)."""
    with small_city(tmp_path, now=START) as net:
        ids = december(net)
        replicate_and_report(net)
        today = REPORTED.date()
        listed = {c["case_id"]: c for c in list_cases(net.town.store, today, 1)}
        status = calendar_status(net.city)
        january = compute_stats(net.city.store, parse_period("2027-01"), "node", today)
        december_figures = compute_stats(net.city.store, parse_period("2026-12"), "node", today)
        publish_calendar(net.city, CalendarOverrides({2027: WHOLE_2027}),
                         at=REPORTED.replace(hour=11).isoformat())  # fmt: skip
        to_january(net, REPORTED.replace(hour=11, minute=5))
        down(net)
        after = {c["case_id"]: c for c in list_cases(net.town.store, today, 1)}
        january_after = compute_stats(net.city.store, parse_period("2027-01"), "node", today)
        status_after = calendar_status(net.city)
    p = listed[ids["P"]]
    assert (p["deadline"], p["provisional"], p["provisional_years"]) == ("2027-01-04", True, [2027])
    assert [c["case_id"] for c in listed.values() if c["provisional"]] == [ids["P"]]
    assert status["needed"] == [{"year": 2027, "open_cases": 1, "this_year": True,
                                 "next_year": False, "published_days": False}]  # fmt: skip
    # January is judged as of 01-03 (01-04 is not over): P's days 12-29 … 01-01 (guessed)
    assert january["provisional"] == [2027] and january["total"]["open_at_start"] == 1
    assert december_figures["provisional"] == []
    q = after[ids["P"]]
    assert (q["deadline"], q["provisional"], q["provisional_years"]) == ("2027-01-05", False, [])
    assert january_after["provisional"] == []
    assert status_after["needed"] == [] and status_after["published_whole"] == [2027]
