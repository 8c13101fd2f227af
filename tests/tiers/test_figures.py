"""The figures of DESIGN §5 on a hand-built month, every number worked out by hand below.

October 2025 on the Chinese calendar: 10-01 … 10-08 are the National Day holiday, 10-11
(a Saturday) is a working day (调休). Working days: 9, 10, 11, 13–17, 20–24, 27–31.
Item A1 is a town's 承诺件 of 5 working days (fee 10.50), B2 is received in villages,
accepted by towns and decided by the city in 10 working days, C3 is a town's 即办件.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from sync import trust
from sync.clock import ZONE, Clock
from sync.ingest import ingest
from sync.node import Node
from sync.protocol.batch import decode_batch, encode_batch
from sync.protocol.errors import ReportError
from sync.protocol.ids import is_within, parent_of, tier_of
from tests.helpers_cases import ITEMS, fresh_store, insert_one
from tests.support.postgres import city_store
from tests.support.topology import CITY, TOWN, VILLAGE, hand_down, name_of
from tiers.cases import service
from tiers.cases.projection import load_case
from tiers.cases.service import Applicant
from tiers.catalogue import CatalogueItem
from tiers.city.stats import compute_stats
from tiers.figures import Counts, derive, facts_of, parse_period
from tiers.node import create_home
from tiers.published import publish_items, work_calendar
from tiers.reports import latest_reports, load_facts, node_counts, submit_monthly

# its cities on SQLite, then on PostgreSQL: there in the soak run but for the tests marked
# pg_ci (a bounded sample in CI: tests/support/postgres.py soak_marks)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]

# D4: accepted in villages too, decided by towns, 3 working days.
D4 = CatalogueItem("D4", "道路运输车辆年审", "交通运输", "promised", 3, 10, 0, (),
                   ("village", "town"), "town")  # fmt: skip
OCTOBER = parse_period("2025-10")
AFTER = date(2025, 11, 20)  # judged once October is over
PERSON = Applicant("王建国", phone="13805790001")


def t(day: str, clock: str = "10:00") -> str:
    """A time on a 2025 day given as MM-DD."""
    return f"2025-{day}T{clock}:00+08:00"


def fixed(now: datetime) -> Clock:
    return Clock(now=lambda: now)


@dataclass
class City:
    """A city, a town and a village, opened with a fixed clock, catalogue `ITEMS` held."""

    city: Node
    town: Node
    village: Node
    base: Path


ENROLLED_AT = "2025-01-02T08:00:00+08:00"


@contextmanager
def small_city(tmp_path: Path, now: datetime = datetime(2025, 11, 20, 9, tzinfo=ZONE),
               nodes: tuple[str, ...] = (CITY, TOWN, VILLAGE)) -> Iterator[City]:  # fmt: skip
    """Real homes with a fixed clock, each enrolled by its parent early in 2025 (as `node
    enroll` does), the catalogue published by the city, both handed down as a pull would."""
    with ExitStack() as stack:
        opened: dict[str, Node] = {}
        for node_id in sorted(nodes, key=len):
            parent = parent_of(node_id)
            node = create_home(
                tmp_path / node_id, tier=tier_of(node_id), node_id=node_id,
                name=name_of(node_id), parent_id=parent,
                root_key=opened[CITY].config.public_key if parent else None, clock=fixed(now),
                store=city_store() if parent is None else None,  # city_engine's, if any
            )  # fmt: skip
            stack.callback(node.close)
            opened[node_id] = node
            if parent is not None:
                seal = node.seal.public_key().public_bytes_raw().hex()
                body = trust.enrolment_body(node_id, node.config.name, node.config.public_key,
                                            seal)  # fmt: skip
                opened[parent].append(trust.ENROLLED, body, at=ENROLLED_AT)
        publish_items(opened[CITY], [*ITEMS, D4], at="2025-01-02T09:00")
        for node_id in sorted(nodes, key=len)[1:]:
            hand_down(opened[parent_of(node_id)], opened[node_id])  # type: ignore[index]
        yield City(opened[CITY], opened[TOWN], opened.get(VILLAGE), tmp_path)  # type: ignore[arg-type]


def push(src: Node, dst: Node, received_at: str, *, only: set[str] | None = None) -> int:
    """Send `dst` what `src` holds of its own subtree beyond `dst`'s heads, as one real batch
    (encoded, decoded, verified and applied by `sync.ingest`); `only` limits the origins."""
    entries = []
    for origin in sorted(src.store.heads(), key=lambda o: (len(o), o)):
        if is_within(origin, src.node_id) and (only is None or origin in only):
            entries += src.store.entries(origin, after=dst.store.head(origin)[0])
    if not entries:
        return 0
    result = ingest(dst.store, decode_batch(encode_batch(entries)), me=dst.node_id,
                    sender=src.node_id, received_at=received_at)  # fmt: skip
    assert not result.rejected, result.rejected
    return result.applied_total


def up(net: City, received_at: str = t("11-01")) -> None:
    push(net.village, net.town, received_at)
    push(net.town, net.city, received_at)


def down(net: City) -> None:
    hand_down(net.city, net.town)
    hand_down(net.town, net.village)


def hand_built_month(net: City) -> dict[str, str]:
    """The cases of the month (module docstring); returns their ids by number."""
    town, village, city = net.town, net.village, net.city
    ids: dict[str, str] = {}

    def accept(n: str, item: str, at: str) -> str:
        ids[n] = service.accept(town, item_code=item, applicant=PERSON, at=at)
        return ids[n]

    # 13: accepted and completed in September: nothing to count in October.
    service.complete(town, accept("13", "A1", t("09-22")), "approved", at=t("09-24"))
    # 10: accepted 09-29, due 10-13 (09-30, 10-09, 10, 11, 13); completed 10-10: open at the
    # start of October, early, 3 working days used (09-30, 10-09, 10-10).
    service.complete(town, accept("10", "A1", t("09-29")), "approved", at=t("10-10"))
    # 1: accepted 10-09, due 10-15; completed on the deadline day: on time, 5 days used.
    service.complete(town, accept("1", "A1", t("10-09", "09:00")), "approved", at=t("10-15"))
    # (票款分离: a fee item is delivered only once its fee is paid)
    service.assess_fee(town, ids["1"], "10.50", at=t("10-15", "10:30"))
    service.pay(town, ids["1"], "ICBC-0003", at=t("10-15", "10:40"))
    service.deliver(town, ids["1"], at=t("10-15", "11:00"))
    service.rate(town, ids["1"], 2, at=t("10-15", "11:05"))
    # 2: accepted 10-09, fee 10.50 assessed 10-09 and paid 10-10; completed 10-13: early,
    # 3 days used (10, 11, 13).
    accept("2", "A1", t("10-09", "09:10"))
    service.assess_fee(town, ids["2"], "10.50", at=t("10-09", "09:20"))
    service.pay(town, ids["2"], "ICBC-0001", at=t("10-10"))
    service.complete(town, ids["2"], "approved", at=t("10-13"))
    # 3: accepted 10-09, fee 20.00 assessed 10-09 (unlike the catalogue's: with a reason)
    # and paid 10-17; completed 10-17: late, 7 days used; rated 5 (a complaint).
    accept("3", "A1", t("10-09", "09:20"))
    service.assess_fee(town, ids["3"], "20.00", at=t("10-09", "09:30"),
                       override_reason="加急工本费")  # fmt: skip
    service.complete(town, ids["3"], "denied", at=t("10-17"))
    service.pay(town, ids["3"], "ICBC-0002", at=t("10-17", "10:30"))
    service.deliver(town, ids["3"], at=t("10-17", "11:00"))
    service.rate(town, ids["3"], 5, "太慢", at=t("10-17", "11:05"))
    # 4: accepted 10-13, 实地勘察 from 10-14 to 10-20 (15, 16, 17, 20 not counted): due
    # 10-24; completed 10-21: early, 2 days used (10-14, 10-21).
    accept("4", "A1", t("10-13"))
    # recorded on the day: once the deadline has passed, a suspension dated before it would
    # be back-dated across it (refused)
    town.clock.offset = datetime.fromisoformat(t("10-14")) - town.clock.base_now()
    service.suspend(town, ids["4"], "实地勘察", at=t("10-14"))
    town.clock.offset = timedelta()
    service.resume(town, ids["4"], at=t("10-20"))
    service.complete(town, ids["4"], "approved", at=t("10-21"))
    # 5: received 10-09, 补正 the same day, supplied 10-10 (accepted then): due 10-16;
    # completed 10-16: on time, 5 days used.
    ids["5"] = service.receive(town, "A1", PERSON, at=t("10-09", "11:00"))
    service.request_supplement(town, ids["5"], ["户口本"], at=t("10-09", "11:10"))
    service.supply(town, ids["5"], at=t("10-10", "09:00"))
    service.complete(town, ids["5"], "approved", at=t("10-16"))
    # 6: 即办 accepted and completed 10-09: due the same day, on time, not a 承诺件.
    service.complete(town, accept("6", "C3", t("10-09", "14:00")), "approved",
                     at=t("10-09", "14:10"))  # fmt: skip
    # 11: accepted 10-20, due 10-27, still open at the close of October: open overdue.
    accept("11", "A1", t("10-20"))
    # 14: accepted 10-30, due 11-06: open, not overdue; fee assessed 10-30, paid 11-03.
    accept("14", "A1", t("10-30"))
    service.assess_fee(town, ids["14"], "10.50", at=t("10-30", "10:00"))
    service.pay(town, ids["14"], "ICBC-0004", at=t("11-03"))
    # 12: received 10-09 and rejected: received, never accepted.
    ids["12"] = service.receive(town, "A1", PERSON, at=t("10-09", "15:00"))
    service.reject(town, ids["12"], "不属于本中心受理范围", at=t("10-09", "15:10"))
    # 7: received at the village 10-09 and forwarded; the town takes and accepts it 10-10
    # (due 10-23) and forwards it to the city, which takes it 10-11 and completes it 10-20:
    # early, 7 days used (11, 13–17, 20); delivered and rated 1 at the village 10-21.
    ids["7"] = service.receive(village, "B2", PERSON, ["户口本"], at=t("10-09", "09:30"))
    service.forward(village, ids["7"], at=t("10-09", "09:40"))
    push(village, town, t("10-09", "12:00"))
    service.accept(town, ids["7"], at=t("10-10", "09:00"))
    service.forward(town, ids["7"], note="请市民政局审批", at=t("10-10", "10:00"))
    push(village, town, t("10-10", "12:00"))
    push(town, city, t("10-10", "12:00"))
    service.accept(city, ids["7"], at=t("10-11"))
    service.complete(city, ids["7"], "approved", at=t("10-20"))
    down(net)
    service.deliver(village, ids["7"], at=t("10-21"))
    service.rate(village, ids["7"], 1, "很好", at=t("10-21", "10:05"))
    up(net)
    down(net)
    return ids


TOWN_OCTOBER = Counts(
    received=9,  # 1, 2, 3, 4, 5, 6, 11, 12, 14
    accepted=9,  # 1, 2, 3, 4, 5, 6, 7, 11, 14
    completed=8,  # 1, 2, 3, 4, 5, 6, 7, 10
    open_at_start=1,  # 10
    on_time=7,  # 1, 2, 4, 5, 6, 7, 10
    early=4,  # 2, 4, 7, 10
    overdue=1,  # 3
    open_overdue=1,  # 11
    promised_completed=7,  # all completed but the 即办 6
    days_used_total=32,  # 5 + 3 + 7 + 2 + 5 + 7 + 3
    days_promised_total=40,  # 6 × 5 + 10
    rated=3,  # 1 (2), 3 (5), 7 (1)
    satisfied=2,
    bad_ratings=1,  # 3 (5)
    fees_assessed_fen=5150,  # 1050 (1) + 1050 (2) + 2000 (3) + 1050 (14)
    fees_paid_fen=4100,  # 1, 2, 3; case 14 paid in November
    rejected=1,  # 12 (不予受理 10-09)
    withdrawn=0,
    carried_out=2,  # 11, 14: 1 open at the start + 9 accepted − 8 completed
    statutory_completed=7,  # the 承诺件 completed: A1 has a statutory 20 days, B2 30
    statutory_days_used=32,
    statutory_days_promised=40,
    statutory_days_total=150,  # 6 × 20 + 30
    # 环节: the town's own steps ended in October: 1, 2, 3, 4, 5, 6, 10 (it decided them)
    # and 7 (its 初审, taken, accepted and forwarded on 10-10: 0 days of the 2 a review may
    # take, a quarter of B2's 10); 3 used 7 of its 5 days.
    steps=8,
    steps_on_time=7,
    step_days_used=25,  # 5 + 3 + 7 + 2 + 5 + 0 + 3 + 0
    step_days_allowed=32,  # 6 × 5 + 0 (即办 6) + 2
    steps_open_late=1,  # 11: accepted 10-20, 9 working days used by 10-31, 5 allowed
    completed_rated=3,  # 1, 3 and 7: completed and rated in October
)


def test_figures_hand_built_month_by_node(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        hand_built_month(net)
        result = compute_stats(net.city.store, OCTOBER, "node", AFTER)
    rows = {row["key"]: row for row in result["rows"]}
    assert set(rows) == {CITY, TOWN, VILLAGE}  # the city has a row for its step on 7
    town = rows[TOWN]
    assert town["label"] == "稠城街道便民服务中心"
    assert {k: town[k] for k in ("accepted", "completed", "on_time", "early", "overdue",
                                 "rated", "received", "open_at_start", "open_overdue",
                                 "bad_ratings", "fees_assessed_fen", "fees_paid_fen")} == {
        "accepted": 9, "completed": 8, "on_time": 7, "early": 4, "overdue": 1, "rated": 3,
        "received": 9, "open_at_start": 1, "open_overdue": 1, "bad_ratings": 1,
        "fees_assessed_fen": 5150, "fees_paid_fen": 4100,
    }  # fmt: skip
    assert town["completion_rate"] == 0.8  # 8 ÷ (1 + 9)
    assert town["on_time_rate"] == 0.875  # 7 ÷ 8
    assert town["avg_days"] == 4.57  # 32 ÷ 7
    assert town["speedup"] == 0.2  # 1 − 32 ÷ 40
    assert town["satisfaction_rate"] == 0.6667  # 2 ÷ 3
    assert town["bad_ratings"] == 1 and town["complaints"] == 0  # 差评 are not 投诉 (#12)
    assert town["rating_rate"] == 0.375  # 评议率: 3 of the 8 completed were rated (1, 3, 7)
    village = rows[VILLAGE]
    assert (village["received"], village["accepted"], village["completed"]) == (1, 0, 0)
    assert village["completion_rate"] is None and village["satisfaction_rate"] is None
    assert result["total"]["received"] == 10
    assert result["total"]["accepted"] == 9
    assert result["total"]["completion_rate"] == 0.8


def test_figures_counts_match_hand_count_exactly(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        hand_built_month(net)
        rows = node_counts(net.city.store, OCTOBER, work_calendar(net.city.store), AFTER)
    assert rows[TOWN] == TOWN_OCTOBER
    # The city decided case 7, which the town accepted: only its own step counts for it,
    # taken 10-11 and completed 10-20 (13–17, 20: 6 working days) of its 8 (10 − the 2 of
    # the town's 初审, during which the clock ran); the village relayed it the day it came.
    assert rows[CITY] == Counts(steps=1, steps_on_time=1, step_days_used=6, step_days_allowed=8)
    assert rows[VILLAGE] == Counts(received=1, steps=1, steps_on_time=1, step_days_allowed=2)


def test_figures_projection_equals_a_refold_at_every_node(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        ids = hand_built_month(net)
        for node in (net.city, net.town, net.village):
            held = {f.case_id: f for f in load_facts(node.store, parse_period("2025"))}
            for case_id in held:
                state = load_case(node.store, case_id).state
                assert state is not None
                assert held[case_id] == facts_of(state), (node.node_id, case_id)
            assert len(held) == (len(ids) if node is not net.village else 1)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_figures_any_arrival_order_gives_the_same_counts(tmp_path: Path, seed: int) -> None:
    with small_city(tmp_path / "net") as net:
        hand_built_month(net)
        entries = list(net.city.store.iter_all())
    random.Random(seed).shuffle(entries)
    with fresh_store(tmp_path / "shuffled.db") as store:
        for entry in entries:
            insert_one(store, entry)
        rows = node_counts(store, OCTOBER, work_calendar(store), AFTER)
    assert rows[TOWN] == TOWN_OCTOBER


def test_figures_same_at_every_node_holding_the_entries(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        hand_built_month(net)
        at_town = node_counts(net.town.store, OCTOBER, work_calendar(net.town.store), AFTER)
    assert at_town[TOWN] == TOWN_OCTOBER


def test_figures_november_counts_the_late_payment_only(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        hand_built_month(net)
        november = compute_stats(net.city.store, parse_period("2025-11"), "node",
                                 date(2025, 12, 10))  # fmt: skip
    town = {row["key"]: row for row in november["rows"]}[TOWN]
    # 11 and 14 are open at the start of November; 11 (due 10-27) is still overdue.
    assert (town["accepted"], town["completed"], town["open_at_start"]) == (0, 0, 2)
    assert town["fees_paid_fen"] == 1050 and town["fees_assessed_fen"] == 0
    assert town["open_overdue"] == 2  # 14 fell due on 11-06 too
    assert town["completion_rate"] == 0.0


def test_figures_by_item_tier_and_department(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        hand_built_month(net)
        store = net.city.store
        by_item = {r["key"]: r for r in compute_stats(store, OCTOBER, "item", AFTER)["rows"]}
        by_tier = {r["key"]: r for r in compute_stats(store, OCTOBER, "tier", AFTER)["rows"]}
        by_dept = {r["key"]: r for r in compute_stats(store, OCTOBER, "department", AFTER)["rows"]}
    # A1: 1–5, 11, 14 accepted; 1–5 and 10 completed, 3 late; 12 received too.
    assert (by_item["A1"]["accepted"], by_item["A1"]["completed"]) == (7, 6)
    assert (by_item["A1"]["overdue"], by_item["A1"]["received"]) == (1, 8)
    assert by_item["A1"]["label"] == "居住证"
    assert (by_item["B2"]["accepted"], by_item["B2"]["received"]) == (1, 1)
    assert by_item["B2"]["avg_days"] == 7.0 and by_item["B2"]["speedup"] == 0.3  # 1 − 7 ÷ 10
    assert by_item["C3"]["avg_days"] is None and by_item["C3"]["on_time"] == 1
    assert by_tier["town"]["accepted"] == 9 and by_tier["village"]["received"] == 1
    assert by_tier["village"]["accepted"] == 0
    assert (by_tier["city"]["accepted"], by_tier["city"]["steps"]) == (0, 1)  # its step on 7
    assert by_dept["公安"]["accepted"] == 7 and by_dept["民政"]["accepted"] == 2


@pytest.mark.pg_ci
def test_figures_late_acceptance_entry_counts_in_its_own_month(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        village, town, city = net.village, net.town, net.city
        # The village accepts D4 on 10-09 (due 10-13) and forwards it; the town takes it
        # 10-10 and completes it 10-11: early, 2 working days used (10, 11).
        case_id = service.accept(village, item_code="D4", applicant=PERSON, at=t("10-09"))
        service.forward(village, case_id, at=t("10-09", "11:00"))
        push(village, town, t("10-09", "12:00"))
        service.accept(town, case_id, at=t("10-10"))
        service.complete(town, case_id, "approved", at=t("10-11"))
        push(town, city, t("10-12"), only={TOWN})  # the village's log lags behind
        before = node_counts(city.store, OCTOBER, work_calendar(city.store), AFTER)
        push(town, city, t("11-04"))  # the acceptance arrives in November
        after = node_counts(city.store, OCTOBER, work_calendar(city.store), AFTER)
        november = node_counts(city.store, parse_period("2025-11"), work_calendar(city.store),
                               date(2025, 12, 10))  # fmt: skip
    assert before == {}  # the town's events wait for the village's
    assert (after[VILLAGE].accepted, after[VILLAGE].completed, after[VILLAGE].early) == (1, 1, 1)
    assert after[VILLAGE].received == 1 and after[VILLAGE].days_used_total == 2
    assert VILLAGE not in november


def test_figures_report_states_the_node_row(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        hand_built_month(net)
        done = submit_monthly(net.town, "2025-10", at="2025-11-03T09:00")
        again = submit_monthly(net.town, "2025-10")
        up(net, t("11-03", "12:00"))
        held = latest_reports(net.city.store, "2025-10")
    assert done.appended and done.report.counts == TOWN_OCTOBER
    assert not again.appended and again.report.seq == done.report.seq
    assert held[TOWN].counts == TOWN_OCTOBER and held[TOWN].seq == done.report.seq
    assert held[TOWN].held[VILLAGE] >= 1


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        pytest.param("2025-10", date(2025, 10, 1), date(2025, 10, 31), id="month"),
        pytest.param("2024-02", date(2024, 2, 1), date(2024, 2, 29), id="leap-february"),
        pytest.param("2025-Q4", date(2025, 10, 1), date(2025, 12, 31), id="quarter"),
        pytest.param("2025-q1", date(2025, 1, 1), date(2025, 3, 31), id="quarter-lower"),
        pytest.param("2025", date(2025, 1, 1), date(2025, 12, 31), id="year"),
    ],
)
def test_parse_period_spans(text: str, start: date, end: date) -> None:
    period = parse_period(text)
    assert (period.start, period.end) == (start, end)


@pytest.mark.parametrize("text", ["2025-13", "2025-Q5", "25-10", "October", ""])
def test_parse_period_refuses_nonsense(text: str) -> None:
    with pytest.raises(ReportError):
        parse_period(text)


def test_derive_rates_undefined_without_denominator() -> None:
    figures = derive(Counts())
    assert figures["completion_rate"] is None
    assert figures["avg_days"] is None and figures["speedup"] is None
    assert figures["satisfaction_rate"] is None and figures["on_time_rate"] is None


def test_report_refuses_unfinished_month_and_city(tmp_path: Path) -> None:
    with small_city(tmp_path, now=datetime(2025, 10, 20, 9, tzinfo=ZONE)) as net:
        with pytest.raises(ReportError, match="not over"):
            submit_monthly(net.town, "2025-10")
        with pytest.raises(ReportError, match="one month"):
            submit_monthly(net.town, "2025-Q3")
        with pytest.raises(ReportError, match="city"):
            submit_monthly(net.city, "2025-09")
