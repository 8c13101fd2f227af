"""The case projection: causal order across logs, deadlines, pauses, provisional calendars."""

from __future__ import annotations

import json
import random
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.protocol.errors import CustodyError
from sync.store import Store
from tests.helpers_cases import (
    CITY,
    TOWN,
    VILLAGE,
    body_of,
    case_entries,
    case_row,
    copy_logs,
    forward_round_trip,
    fresh_store,
    insert_one,
    network,
    town_node,
)
from tests.support.calendars import NEW_YEAR_ONLY_2027, WHOLE_2027
from tiers.calendar import CalendarOverrides
from tiers.calendar_publish import publish_calendar
from tiers.cases import service
from tiers.cases.projection import _text, recompute
from tiers.cases.views import case_view
from tiers.figures import FACT_COLUMNS

_VOLATILE = {"remaining_days", "warning"}


def _view(store: Store, case_id: str) -> dict[str, Any]:
    view = case_view(store, case_id, date(2025, 10, 20), 1)
    return {k: v for k, v in view.items() if k not in _VOLATILE | {"item_name"}}


def test_projection_round_trip_state_at_every_node(tmp_path: Path) -> None:
    with network(tmp_path) as net:
        case_id = forward_round_trip(net)
        rows = [case_row(n.store, case_id) for n in (net.village, net.town, net.city)]
    assert rows[0] == rows[1] == rows[2]
    row = rows[0]
    assert row["status"] == "delivered"
    assert row["origin"] == VILLAGE
    assert row["holder"] == CITY
    assert row["accepted_by"] == TOWN
    assert row["accepted_at"] == "2025-09-29T10:00:00+08:00"
    assert row["completed_by"] == CITY
    assert row["rating"] == 1
    assert row["violations"] == "[]"
    assert row["waiting"] == 0
    # 10 working days from 2025-09-29, National Day off, 调休 Saturday 10-11 worked, and the
    # 实地勘察 from 10-09 to 10-13 not counted: 2 days used before it, 8 after.
    assert row["deadline"] == "2025-10-23"


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed{s}") for s in range(12)])
def test_projection_scrambled_arrival_across_logs_gives_same_state(
    tmp_path: Path, seed: int
) -> None:
    """The three logs interleaved at random, each origin in its own seq order, and taken in
    flushes of one to five entries: the case and its figures' facts come out the same
    (a flush holding several custody moves out of causal order is refolded, one holding
    them as a chain is folded on in its order)."""
    with network(tmp_path) as net:
        case_id = forward_round_trip(net)
        expected_row = case_row(net.city.store, case_id)
        expected_view = _view(net.city.store, case_id)
        expected_facts = _facts(net.city.store, case_id)
        logs = {o: case_entries(net.city.store, o) for o in (VILLAGE, TOWN, CITY)}
    assert [len(logs[o]) for o in (VILLAGE, TOWN, CITY)] == [4, 3, 4]
    rng = random.Random(seed)
    queues = {o: list(es) for o, es in logs.items()}
    order = []
    while any(queues.values()):
        origin = rng.choice([o for o, q in queues.items() if q])
        order.append(queues[origin].pop(0))
    with fresh_store(tmp_path / f"fourth{seed}.db") as store:
        while order:
            size = rng.randint(1, 5)
            flush, order = order[:size], order[size:]
            with store.transaction():
                for entry in flush:
                    store.insert([entry], "2025-10-09T10:00:00+08:00")
        assert case_row(store, case_id) == expected_row
        assert _view(store, case_id) == expected_view
        assert _facts(store, case_id) == expected_facts


def test_projection_any_arrival_order_waits_then_converges(tmp_path: Path) -> None:
    with network(tmp_path) as net:
        case_id = forward_round_trip(net)
        expected_row = case_row(net.city.store, case_id)
        everything = [e for o in (VILLAGE, TOWN, CITY) for e in case_entries(net.city.store, o)]
    for seed in range(5):
        entries = list(everything)
        random.Random(seed).shuffle(entries)
        with fresh_store(tmp_path / f"any{seed}.db") as store:
            for entry in entries[:-1]:
                insert_one(store, entry)
            held = store.query("SELECT count(*) FROM case_events")[0][0]
            assert held == len(everything) - 1  # nothing lost while waiting
            insert_one(store, entries[-1])
            assert case_row(store, case_id) == expected_row


@pytest.mark.parametrize("step", [None, 1], ids=["inline", "caught-up-an-entry-a-step"])
def test_projection_folds_on_a_case_whose_logs_came_in_one_go_in_any_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: int | None
) -> None:
    """Every log of a case in one transaction, a town's and the city's before the village's
    (a relay's tier order: the town's acceptance before the village's forward it follows):
    one chain from nothing, so the case is folded on as it is, never refolded whole — and
    comes out as a refold makes it. Also when a serving front projects such a push later,
    in steps shorter than it, its runs stored as ingest stores them (the city's, the town's,
    the village's): a step goes on to where the push ended. Its figures' facts, whose steps
    follow its custody moves (five here, all in one flush), are not refolded either: they
    take the order the case was folded on in, and equal those built a push at a time."""
    from tiers import case_facts
    from tiers.cases import projection

    with network(tmp_path) as net:
        case_id = forward_round_trip(net)
        expected_row = case_row(net.city.store, case_id)
        expected_facts = _facts(net.city.store, case_id)
        origins = (CITY, TOWN, VILLAGE) if step else (TOWN, CITY, VILLAGE)
        logs = [case_entries(net.city.store, o) for o in origins]
    refolded: list[str] = []
    refold, refresh = projection._Writer.refold, case_facts._refresh

    def counted(writer: Any, case_ids: list[str]) -> None:
        refolded.extend(case_ids)
        refold(writer, case_ids)

    def counted_facts(store: Store, case_ids: list[str], mark: int) -> None:
        refolded.extend(f"facts of {case_id}" for case_id in case_ids)
        refresh(store, case_ids, mark)

    monkeypatch.setattr(projection._Writer, "refold", counted)
    monkeypatch.setattr(case_facts, "_refresh", counted_facts)
    with fresh_store(tmp_path / "one-go.db") as store:
        if step:
            store.defer_projections()
        with store.transaction():
            for log in logs:
                store.insert(log, "2025-10-09T10:00:00+08:00")
        while store.catch_up(step):
            pass
        assert refolded == []
        assert case_row(store, case_id) == expected_row
        assert _facts(store, case_id) == expected_facts
        assert sum(e.type in case_facts._CUSTODY for log in logs for e in log) == 5
        recompute(store, [case_id])
        assert refolded == [case_id] and case_row(store, case_id) == expected_row


def _facts(store: Store, case_id: str) -> list[tuple[Any, ...]]:
    """The case's `case_facts` row (the facts its figures count), as stored."""
    columns = ", ".join(FACT_COLUMNS)
    return store.query(f"SELECT {columns} FROM case_facts WHERE case_id = ?", (case_id,))


def test_projection_event_whose_after_is_missing_waits(tmp_path: Path) -> None:
    with network(tmp_path) as net:
        case_id = forward_round_trip(net)
        village_log = case_entries(net.city.store, VILLAGE)
        town_log = case_entries(net.city.store, TOWN)
    with fresh_store(tmp_path / "partial.db") as store:
        for entry in village_log:  # received, forwarded, then delivered and rated
            insert_one(store, entry)
        row = case_row(store, case_id)
        assert row["status"] == "in_transit"
        assert row["holder"] == VILLAGE
        assert row["waiting"] == 2  # delivered/rated wait for the city's completion
        for entry in town_log:
            insert_one(store, entry)
        row = case_row(store, case_id)
        assert row["status"] == "in_transit"  # the town forwarded to the city
        assert row["holder"] == TOWN
        assert row["accepted_at"] == "2025-09-29T10:00:00+08:00"
        assert row["waiting"] == 2


def test_projection_deadline_across_national_day_2025(tmp_path: Path) -> None:
    with town_node(tmp_path) as town:
        who = service.Applicant("王五")
        a = service.accept(town, item_code="A1", applicant=who, at="2025-09-29T10:00")
        b = service.accept(town, item_code="A1", applicant=who, at="2025-09-30T10:00")
        c = service.accept(town, item_code="C3", applicant=who, at="2025-09-30T10:00")
        # 5 working days from 09-29: 09-30, 10-09, 10-10, 10-11 (调休 Saturday), 10-13.
        assert case_row(town.store, a)["deadline"] == "2025-10-13"
        assert case_row(town.store, b)["deadline"] == "2025-10-14"
        # 即办件 are due the day they are accepted.
        assert case_row(town.store, c)["deadline"] == "2025-09-30"
        assert case_row(town.store, a)["provisional"] == 0


def test_projection_supplement_before_acceptance_starts_clock_at_supply(tmp_path: Path) -> None:
    with town_node(tmp_path) as town:
        case_id = service.receive(town, "A1", service.Applicant("赵六"), at="2025-09-22T09:00")
        service.request_supplement(town, case_id, ["照片", "居住证明"], at="2025-09-22T09:10")
        row = case_row(town.store, case_id)
        assert row["status"] == "supplement_requested"
        assert row["accepted_at"] is None
        assert row["deadline"] is None
        service.supply(town, case_id, at="2025-09-29T10:00")
        row = case_row(town.store, case_id)
    assert row["status"] == "accepted"
    assert row["accepted_at"] == "2025-09-29T10:00:00+08:00"
    assert row["deadline"] == "2025-10-13"  # counted from the supply, not from 09-22


def test_projection_supplement_after_acceptance_pauses_clock(tmp_path: Path) -> None:
    with town_node(tmp_path) as town:
        who = service.Applicant("钱七")
        case_id = service.accept(town, item_code="A1", applicant=who, at="2025-11-03T09:00")
        assert case_row(town.store, case_id)["deadline"] == "2025-11-10"
        service.request_supplement(town, case_id, ["照片"], at="2025-11-04T09:00")
        paused = case_row(town.store, case_id)
        service.supply(town, case_id, at="2025-11-06T09:00")
        row = case_row(town.store, case_id)
    assert paused["deadline"] is None
    assert paused["paused_since"] == "2025-11-04"
    assert paused["remaining_when_paused"] == 4
    assert row["deadline"] == "2025-11-12"


def test_projection_suspend_resume_pauses_and_extension_adds(tmp_path: Path) -> None:
    with town_node(tmp_path) as town:
        who = service.Applicant("孙八")
        case_id = service.accept(town, item_code="A1", applicant=who, at="2025-11-03T09:00")
        service.suspend(town, case_id, "专家评审", at="2025-11-04T15:00")
        assert case_row(town.store, case_id)["status"] == "suspended"
        service.resume(town, case_id, at="2025-11-06T09:00")
        assert case_row(town.store, case_id)["deadline"] == "2025-11-12"
        service.extend(town, case_id, 3, "情况复杂", at="2025-11-07T09:00")
        row = case_row(town.store, case_id)
    assert row["status"] == "accepted"
    assert row["extension_days"] == 3
    assert row["deadline"] == "2025-11-17"


def test_projection_provisional_deadline_recomputed_after_override(tmp_path: Path) -> None:
    with network(tmp_path) as net:
        town = net.town
        who = service.Applicant("周九")
        case_id = service.accept(town, item_code="A1", applicant=who, at="2026-12-28T09:00")
        row = case_row(town.store, case_id)
        # 2027 is unknown: 01-01 (a Friday) is guessed a working day.
        assert row["deadline"] == "2027-01-04"
        assert row["provisional"] == 1
        assert row["provisional_years"] == "[2027]"
        view = case_view(town.store, case_id, date.fromisoformat("2026-12-29"), 1)
        assert view["provisional"] is True
        assert "2027" in view["provisional_note"]
        # Issue #12: New Year's Day alone is not the whole year: counted, still provisional.
        partial = CalendarOverrides({2027: NEW_YEAR_ONLY_2027})
        publish_calendar(net.city, partial, at="2026-12-29T09:00")
        copy_logs(net.city.store, town.store)
        row = case_row(town.store, case_id)
        assert row["deadline"] == "2027-01-05"
        assert row["provisional_years"] == "[2027]"
        publish_calendar(net.city, CalendarOverrides({2027: WHOLE_2027}), at="2026-12-29T10:00")
        copy_logs(net.city.store, town.store)
        row = case_row(town.store, case_id)
        view = case_view(town.store, case_id, date.fromisoformat("2026-12-29"), 1)
    assert row["deadline"] == "2027-01-05"
    assert row["provisional"] == 0
    assert view["provisional"] is False
    assert view["provisional_note"] is None


def test_projection_event_without_custody_is_a_violation(tmp_path: Path) -> None:
    with network(tmp_path) as net:
        case_id = service.receive(net.village, "B2", service.Applicant("吴十"),
                                  at="2025-10-09T09:00")  # fmt: skip
        net.up()
        # The town accepts a case the village never forwarded: append it directly, as a
        # node running other code could; the service itself would refuse.
        first = case_entries(net.town.store, VILLAGE)[0]
        assert body_of(first)["case_id"] == case_id
        with pytest.raises(CustodyError):
            service.accept(net.town, case_id, at="2025-10-09T10:00")
        net.town.append(
            "case.accepted",
            {"case_id": case_id, "after": [VILLAGE, first.seq], "promised_days": 10},
            at="2025-10-09T10:00:00+08:00",
        )
        row = case_row(net.town.store, case_id)
        view = case_view(net.town.store, case_id, date(2025, 10, 9), 1)
    assert row["status"] == "received"
    assert row["holder"] == VILLAGE
    assert row["accepted_at"] is None
    assert view["violations"] == [
        {"node_id": TOWN, "seq": 1, "type": "case.accepted", "problem": "case.not_holder",
         "kind": "custody"}
    ]  # fmt: skip
    assert [e["standing"] for e in view["events"]] == ["applied", "refused"]


def test_projection_rolled_back_events_leave_no_trace(tmp_path: Path) -> None:
    with town_node(tmp_path) as town:
        who = service.Applicant("冯十二")
        case_id = service.accept(town, item_code="A1", applicant=who, at="2025-11-03T09:00")
        with pytest.raises(RuntimeError), town.store.transaction():
            service.suspend(town, case_id, "听证", at="2025-11-04T09:00")
            raise RuntimeError("the operator pressed Ctrl-C")
        service.extend(town, case_id, 2, "情况复杂", at="2025-11-05T09:00")
        row = case_row(town.store, case_id)
        kept = town.store.query("SELECT * FROM cases")
        with town.store.transaction():
            recompute(town.store, [case_id])
        assert town.store.query("SELECT * FROM cases") == kept
    assert row["status"] == "accepted"
    assert row["pauses"] == "[]"
    assert row["extension_days"] == 2
    assert row["held"] == 3


def test_projection_late_supplement_verdict_follows_a_published_calendar(tmp_path: Path) -> None:
    """第三十二条: a 补正 notice more than five working days after receipt accepts the case as
    of receipt. Received Monday 2026-12-28, notice Monday 2027-01-04 while 2027 is guessed:
    12-29, 12-30, 12-31, 01-01, 01-04 = five days, not late. The city then publishes
    Saturday 2027-01-02 as a working day (调休): six days, late. The town, whose case was not
    accepted yet, must judge it as a fresh fold of the same events does: its acceptance
    after the 补正 counts from receipt."""
    from datetime import date as day

    from tiers.cases.projection import load_case

    with network(tmp_path) as net:
        town = net.town
        case_id = service.receive(town, "A1", service.Applicant("周九"), at="2026-12-28T09:00")
        service.request_supplement(town, case_id, ["身份证"], at="2027-01-04T09:00")
        publish_calendar(net.city, CalendarOverrides({}, {day(2027, 1, 2): True}),
                         at="2026-12-29T09:00")  # fmt: skip
        copy_logs(net.city.store, town.store)
        service.supply(town, case_id, at="2027-01-05T09:00")
        fresh = load_case(town.store, case_id).state
        row = case_row(town.store, case_id)
    assert fresh is not None and fresh.deemed_accepted
    assert fresh.accepted_at == "2026-12-28T09:00:00+08:00"
    assert row["accepted_at"] == fresh.accepted_at


def test_facts_take_the_fold_s_order_only_for_the_events_folded() -> None:
    """A town takes a village's forward and completes it in one flush, the two arriving
    completed-first: the facts' steps follow the order the case projection folded them on
    in — and only when that order is for these very events; otherwise (none, or another
    set's) the facts are refolded, not advanced in the order applied."""
    from tiers import case_facts
    from tiers.cases.order import Event
    from tiers.steps import COMPLETED, FORWARDED, IN_TRANSIT

    taken = Event(TOWN, 7, "case.taken", "2025-10-09T09:00:00+08:00", {"after": [VILLAGE, 2]})
    done = Event(TOWN, 8, "case.completed", "2025-10-10T09:00:00+08:00", {"after": [TOWN, 7]})
    row = (
        "c1", VILLAGE, TOWN, "B2", "2025-10-08T09:00:00+08:00", "2025-10-09T09:00:00+08:00", 5,
        "2025-10-10T09:00:00+08:00", None, "[]", None, None,
        4, 0, "[]", 2, "[]", None, None, None, None,
        json.dumps([[VILLAGE, "2025-10-08", "2025-10-08", IN_TRANSIT]]),
    )  # fmt: skip
    facts = case_facts._advanced(row, [done, taken], [taken, done])
    assert facts is not None
    assert [(node, how) for node, _, _, how in facts.steps] == [
        (VILLAGE, FORWARDED), (TOWN, COMPLETED),
    ]  # fmt: skip
    assert case_facts._advanced(row, [done, taken], None) is None
    other = Event(TOWN, 9, "case.completed", done.at, {"after": [TOWN, 7]})
    assert case_facts._advanced(row, [done, taken], [taken, other]) is None


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(_JSON)
def test_a_column_s_json_text_is_what_json_dumps_writes(value: Any) -> None:
    """The projection's JSON columns are written by msgspec (faster); their text must stay
    what json.dumps wrote, so rows written before and after compare equal: any text (CJK,
    control characters, U+2028, quotes, backslashes), keys sorted, ints within 64 bits."""
    expected = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    assert _text(value) == expected
