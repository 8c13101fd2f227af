"""Complaints (投诉, issue #12 part 4): filing, answering, time limits, warnings, figures.

Every deadline here is hand-counted on the 2025 calendar (国务院办公厅 2025 holiday notice:
1–8 October off, Sunday 28 September and Saturday 11 October worked) from the day after
filing, as a case's time limit is (受理次日起算).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest

from sync import relevance
from sync.clock import ZONE
from sync.protocol.errors import StoreError
from tests.helpers_cases import CITY, TOWN, VILLAGE, Network, count_entries, network
from tiers.cases import service as cases
from tiers.city.stats import compute_stats
from tiers.complaints import service
from tiers.complaints.entries import ComplaintError
from tiers.complaints.service import complaint_view, list_complaints
from tiers.figures import Counts, derive, parse_period
from tiers.reports import latest_reports, submit_monthly

NOVEMBER = datetime(2025, 11, 3, 10, 0, tzinfo=ZONE)  # October is over
OCTOBER = parse_period("2025-10")


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    with network(tmp_path, NOVEMBER) as built:
        yield built


def test_complaint_file_about_a_case_names_its_holder_and_the_default_limit(net: Network) -> None:
    case_id = cases.receive(net.village, "B2", cases.Applicant("李四"), at="2025-10-09T09:00")
    cases.forward(net.village, case_id, at="2025-10-09T09:30")
    net.up()
    cases.accept(net.town, case_id, at="2025-10-09T10:00")
    net.down()
    # the village, where the citizen walked in, files about the case the town now holds
    complaint_id = service.file(net.village, "镇里推诿", case_id=case_id, at="2025-10-09T11:00")
    assert complaint_id == f"{VILLAGE}-C20251009-0001"
    view = complaint_view(net.village.store, complaint_id, date(2025, 10, 9), 1)
    assert (view["about"], view["case_id"], view["subject"]) == ("case", case_id, TOWN)
    assert view["filed_by"] == VILLAGE and view["status"] == "open"
    # 5 working days (the default): 10-10, 10-11 (a Saturday worked), 10-13, 10-14, 10-15
    assert (view["days"], view["deadline"]) == (5, "2025-10-15")
    assert service.file(net.village, "再次投诉", about_node=TOWN, at="2025-10-09T12:00").endswith(
        "-C20251009-0002"
    )


def test_complaint_days_setting_is_fixed_in_the_filing(net: Network) -> None:
    net.town.config.settings["complaint_days"] = 3
    complaint_id = service.file(net.town, "窗口态度差", about_node=TOWN, at="2025-10-09T09:00")
    net.town.config.settings["complaint_days"] = 10  # a later change does not move it
    view = complaint_view(net.town.store, complaint_id, date(2025, 10, 9), 1)
    assert (view["days"], view["deadline"]) == (3, "2025-10-13")  # 10-10, 10-11, 10-13


@pytest.mark.parametrize("value", [0, 61, "5", True])
def test_complaint_days_setting_out_of_range_is_refused(net: Network, value: object) -> None:
    net.town.config.settings["complaint_days"] = value
    before = count_entries(net.town.store)
    with pytest.raises(ComplaintError) as caught:
        service.file(net.town, "窗口态度差", about_node=TOWN)
    assert caught.value.key == "complaint.bad_days"
    assert count_entries(net.town.store) == before


def test_complaint_department_must_be_in_the_catalogue(net: Network) -> None:
    complaint_id = service.file(net.town, "民政窗口推诿", department="民政", at="2025-10-09T09:00")
    view = complaint_view(net.town.store, complaint_id, date(2025, 10, 9), 1)
    assert (view["about"], view["department"], view["subject"]) == ("department", "民政", TOWN)
    before = count_entries(net.town.store)
    with pytest.raises(ComplaintError) as caught:
        service.file(net.town, "x", department="不存在的局")
    assert caught.value.key == "complaint.unknown_department"
    assert count_entries(net.town.store) == before


@pytest.mark.parametrize(
    "about",
    [
        pytest.param({"about_node": "330782002"}, id="a sibling town"),
        pytest.param({"about_node": "330782001202"}, id="a village not on the line"),
        pytest.param({"about_node": "nonsense"}, id="not a node id"),
        pytest.param({"case_id": "330782001-20251009-0099"}, id="an unknown case"),
        pytest.param({}, id="about nothing"),
        pytest.param({"about_node": TOWN, "department": "民政"}, id="about two things"),
    ],
)
def test_complaint_file_refusals_append_nothing(net: Network, about: dict[str, str]) -> None:
    before = count_entries(net.village.store)
    with pytest.raises(ComplaintError):
        service.file(net.village, "投诉", **about)
    assert count_entries(net.village.store) == before


def test_complaint_reply_and_close_by_subject_or_ancestor_only(net: Network) -> None:
    """谁办理、谁负责: the node complained about answers; the centres above it supervise."""
    about_town = service.file(net.village, "镇窗口推诿", about_node=TOWN, at="2025-10-09T09:00")
    about_village = service.file(net.village, "代办员不在岗", about_node=VILLAGE,
                                 at="2025-10-09T09:05")  # fmt: skip
    net.up()
    before = count_entries(net.village.store)
    for attempt in (
        lambda: service.reply(net.village, about_town, "已转镇里", at="2025-10-09T10:00"),
        lambda: service.close(net.village, about_town, at="2025-10-09T10:00"),
    ):
        with pytest.raises(ComplaintError) as caught:
            attempt()
        assert caught.value.key == "complaint.not_responsible"
    assert count_entries(net.village.store) == before
    service.reply(net.town, about_town, "已约谈窗口人员", at="2025-10-10T09:00")
    net.up()
    service.close(net.city, about_town, "市中心督办完毕", at="2025-10-10T10:00")  # an ancestor
    service.close(net.town, about_village, "已排班", at="2025-10-10T11:00")
    net.up()
    net.down()
    view = complaint_view(net.village.store, about_town, date(2025, 10, 20), 1)
    assert [r["node_id"] for r in view["replies"]] == [TOWN]
    assert (view["status"], view["closed_by"], view["note"]) == ("closed", CITY, "市中心督办完毕")
    assert view["on_time"] is True and view["warning"] is None
    assert view["violations"] == []


def test_complaint_closed_takes_nothing_more(net: Network) -> None:
    complaint_id = service.file(net.town, "态度差", about_node=TOWN, at="2025-10-09T09:00")
    service.close(net.town, complaint_id, at="2025-10-10T09:00")
    before = count_entries(net.town.store)
    for attempt in (
        lambda: service.close(net.town, complaint_id, at="2025-10-11T09:00"),
        lambda: service.reply(net.town, complaint_id, "补充说明", at="2025-10-11T09:00"),
    ):
        with pytest.raises(ComplaintError) as caught:
            attempt()
        assert caught.value.key == "complaint.already_closed"
    with pytest.raises(ComplaintError) as caught:
        service.close(net.town, f"{TOWN}-C20251009-0009")
    assert caught.value.key == "complaint.not_found"
    assert count_entries(net.town.store) == before


def test_complaint_answer_dated_before_the_filing_is_refused(net: Network) -> None:
    complaint_id = service.file(net.town, "态度差", about_node=TOWN, at="2025-10-09T09:00")
    before = count_entries(net.town.store)
    with pytest.raises(ComplaintError) as caught:  # a typo in --at
        service.reply(net.town, complaint_id, "已核实", at="2025-10-08T09:00")
    assert caught.value.key == "complaint.at_before"
    assert count_entries(net.town.store) == before


def test_complaint_node_refuses_to_sign_what_no_one_would_accept(net: Network) -> None:
    """The authority rule holds for a node's own appends too (sync.store strict)."""
    complaint_id = service.file(net.town, "态度差", about_node=TOWN, at="2025-10-09T09:00")
    net.down()
    seq = net.town.store.query(
        "SELECT seq FROM complaint_events WHERE complaint_id = ?", (complaint_id,)
    )[0][0]
    filed = [TOWN, seq]
    before = count_entries(net.village.store)
    forged = {"complaint_id": complaint_id, "subject": TOWN, "after": filed}
    with pytest.raises(StoreError) as caught:
        net.village.append("complaint.closed", forged)
    assert "only 330782001 or a centre above it" in str(caught.value)
    stolen = {"complaint_id": f"{TOWN}-C20251009-0002", "subject": TOWN, "after": None,
              "about": "node", "text": "x", "days": 5}  # fmt: skip
    with pytest.raises(StoreError):
        net.village.append("complaint.filed", stolen)
    assert count_entries(net.village.store) == before


def test_complaint_warnings_yellow_then_red(net: Network) -> None:
    complaint_id = service.file(net.town, "态度差", about_node=TOWN, at="2025-10-09T09:00")
    store = net.town.store

    def colour(day: date) -> str | None:
        return complaint_view(store, complaint_id, day, 1)["warning"]

    # due 10-15: two working days left on 10-13, one on 10-14, none on 10-15, past on 10-16
    assert [colour(date(2025, 10, d)) for d in (13, 14, 15, 16)] == [
        None, "yellow", "yellow", "red",
    ]  # fmt: skip
    assert [
        c["complaint_id"]
        for c in list_complaints(store, date(2025, 10, 16), 1, warning_filter="red")
    ] == [complaint_id]
    assert list_complaints(store, date(2025, 10, 13), 1, warning_filter="red") == []
    service.close(net.town, complaint_id, at="2025-10-20T09:00")  # late
    assert list_complaints(store, date(2025, 10, 20), 1, open_only=True) == []
    view = complaint_view(store, complaint_id, date(2025, 10, 20), 1)
    assert view["warning"] is None and view["on_time"] is False


def _month_of_complaints(net: Network) -> dict[str, str]:
    """Hand-built: about the town K1 (filed 09-26, closed 10-09), K2 (filed 10-09, closed
    10-20), K3 (filed 10-20, open); about the village K4 (filed 10-09, closed 10-10 by the
    town); K5 (filed and closed in November: not in October)."""
    t, v = net.town, net.village
    k = {
        "K1": service.file(t, "一", about_node=TOWN, at="2025-09-26T09:00"),
        "K2": service.file(t, "二", about_node=TOWN, at="2025-10-09T09:00"),
        "K4": service.file(v, "四", about_node=VILLAGE, at="2025-10-09T09:00"),
    }
    service.close(t, k["K1"], at="2025-10-09T10:00")  # due 10-10: 9-28, 9-29, 9-30, 10-9, 10-10
    net.up()
    service.close(t, k["K4"], at="2025-10-10T09:00")  # due 10-15
    service.close(t, k["K2"], at="2025-10-20T09:00")  # due 10-15: late
    k["K3"] = service.file(t, "三", about_node=TOWN, at="2025-10-20T10:00")
    k["K5"] = service.file(t, "五", about_node=TOWN, at="2025-11-03T09:00")
    service.close(t, k["K5"], at="2025-11-03T09:30")
    net.up()
    net.down()
    return k


def test_complaint_figures_hand_counted_month(net: Network) -> None:
    _month_of_complaints(net)
    result = compute_stats(net.city.store, OCTOBER, "node", NOVEMBER.date())
    rows = {row["key"]: row for row in result["rows"]}
    town, village = rows[TOWN], rows[VILLAGE]
    assert (
        town["complaints"],
        town["complaints_open_at_start"],
        town["complaints_closed"],
        town["complaints_closed_on_time"],
    ) == (2, 1, 2, 1)  # K2 K3; K1; K1 K2; K1
    assert town["complaint_closure_rate"] == 0.6667  # 投诉办结率 2 ÷ (1 + 2)
    assert town["complaint_on_time_rate"] == 0.5
    assert (village["complaints"], village["complaints_closed"]) == (1, 1)  # K4
    assert village["complaint_closure_rate"] == 1.0
    assert result["total"]["complaints"] == 3 and result["total"]["complaints_closed"] == 3
    by_tier = {r["key"]: r for r in compute_stats(net.city.store, OCTOBER, "tier",
                                                  NOVEMBER.date())["rows"]}  # fmt: skip
    assert by_tier["town"]["complaints"] == 2 and by_tier["village"]["complaints"] == 1


def test_complaint_figures_by_item_and_department(net: Network) -> None:
    case_id = cases.accept(net.town, item_code="A1", applicant=cases.Applicant("张三"),
                           at="2025-10-09T09:00")  # fmt: skip
    service.file(net.town, "办件慢", case_id=case_id, at="2025-10-10T09:00")
    service.file(net.town, "民政窗口推诿", department="民政", at="2025-10-10T09:00")
    service.file(net.town, "大厅太吵", about_node=TOWN, at="2025-10-10T09:00")
    items = {r["key"]: r for r in compute_stats(net.town.store, OCTOBER, "item",
                                                NOVEMBER.date())["rows"]}  # fmt: skip
    assert (items["A1"]["complaints"], items["?"]["complaints"]) == (1, 2)
    departments = {r["key"]: r for r in compute_stats(net.town.store, OCTOBER, "department",
                                                      NOVEMBER.date())["rows"]}  # fmt: skip
    assert departments["公安"]["complaints"] == 1  # A1's department
    assert departments["民政"]["complaints"] == 1
    assert departments["?"]["complaints"] == 1


def test_complaint_counts_in_the_monthly_report_and_reconcile_agrees(net: Network) -> None:
    from tiers.city.reconcile import reconcile

    _month_of_complaints(net)
    submitted = submit_monthly(net.town, "2025-10")
    assert submitted.appended
    counts = submitted.report.counts
    assert (counts.complaints, counts.complaints_open_at_start, counts.complaints_closed,
            counts.complaints_closed_on_time) == (2, 1, 2, 1)  # fmt: skip
    net.up()
    assert latest_reports(net.city.store, "2025-10")[TOWN].counts == counts
    # the parts (by item, by kind) count them too, under "?" (complaints about the node), so
    # each adds up to the total and the city finds the report neither wrong nor inconsistent
    parts = submitted.report.parts
    assert parts["kind"]["?"] == parts["item"]["?"] == {
        "complaints": 2, "complaints_open_at_start": 1, "complaints_closed": 2,
        "complaints_closed_on_time": 1}  # fmt: skip
    found = reconcile(net.city, "2025-10", now=NOVEMBER)["findings"]
    assert [f for f in found if f["kind"] in ("report_mismatch", "report_inconsistent")
            and f["node_id"] == TOWN] == []  # fmt: skip


def test_complaint_old_report_body_complaints_meant_bad_ratings() -> None:
    """A report signed before issue #12 carried bad ratings (差评) as `complaints`."""
    old = {name: 0 for name in (
        "received", "accepted", "completed", "open_at_start", "on_time", "early", "overdue",
        "open_overdue", "promised_completed", "days_used_total", "days_promised_total",
        "rated", "satisfied", "complaints", "fees_assessed_fen", "fees_paid_fen",
    )} | {"rated": 4, "satisfied": 3, "complaints": 1}  # fmt: skip
    counts = Counts.from_body(old)
    assert (counts.bad_ratings, counts.complaints, counts.rated) == (1, 0, 4)
    assert derive(counts)["complaint_closure_rate"] is None
    new = Counts(rated=4, satisfied=3, bad_ratings=1, complaints=2).to_body()
    assert Counts.from_body(new) == Counts(rated=4, satisfied=3, bad_ratings=1, complaints=2)


def test_complaint_events_flow_down_to_subject_and_filer(net: Network) -> None:
    from_village = service.file(net.village, "镇里推诿", about_node=TOWN, at="2025-10-09T09:00")
    net.up()  # the town now holds the village's log (in the field: it enrolled the village)
    about_village = service.file(net.town, "代办员不在岗", about_node=VILLAGE,
                                 at="2025-10-09T09:00")  # fmt: skip
    about_town = service.file(net.town, "大厅太吵", about_node=TOWN, at="2025-10-09T09:00")
    service.reply(net.town, from_village, "已约谈", at="2025-10-10T09:00")
    town_log = {
        body_id
        for (body_id,) in net.town.store.query(
            "SELECT complaint_id FROM complaint_events WHERE origin = ?", (TOWN,)
        )
    }
    assert town_log == {about_village, about_town, from_village}
    entries, _ = relevance.select_for(net.town.store, VILLAGE, {}, 1000)
    sent = {e.fields()["body"]["complaint_id"] for e in entries if e.type.startswith("complaint.")}
    assert sent == {about_village, from_village}  # not the town's complaint about itself


def test_complaint_fold_refuses_a_reply_naming_another_subject() -> None:
    """The authority rule reads the subject from the entry itself (never from arrival order);
    the fold then holds it to the filing's: a village naming itself as the subject of a
    complaint about its town passes the rule and is refused here, changing nothing."""
    from tiers.cases.order import Event
    from tiers.complaints.projection import fold

    cid = f"{VILLAGE}-C20251009-0001"
    at = "2025-10-09T09:00:00+08:00"
    filed = Event(VILLAGE, 1, "complaint.filed", at, {
        "complaint_id": cid, "subject": TOWN, "after": None, "about": "node", "text": "推诿",
        "days": 5})  # fmt: skip
    hijack = Event(VILLAGE, 2, "complaint.closed", at,
                   {"complaint_id": cid, "subject": VILLAGE, "after": [VILLAGE, 1]})  # fmt: skip
    answer = Event(
        TOWN,
        7,
        "complaint.replied",
        at,
        {"complaint_id": cid, "subject": TOWN, "after": [VILLAGE, 1], "text": "已核实"},
    )
    state = fold([filed, hijack, answer])
    assert state is not None and state.status == "open"
    assert [(v.origin, v.seq, v.key) for v in state.violations] == [
        (VILLAGE, 2, "complaint.wrong_subject")
    ]
    assert [r["node_id"] for r in state.replies] == [TOWN]
    assert state.anchor == (TOWN, 7)  # the next event follows the reply, never the refusal


_REPLY = {"complaint_id": f"{VILLAGE}-C20251009-0001", "subject": TOWN, "after": [VILLAGE, 1]}
_FILED = {"complaint_id": f"{VILLAGE}-C20251009-0001", "subject": TOWN, "after": None,
          "about": "node", "text": "推诿", "days": 5}  # fmt: skip


@pytest.mark.parametrize(
    ("entry_type", "change"),
    [
        pytest.param("complaint.filed", {"days": 0}, id="no days"),
        pytest.param("complaint.filed", {"days": 61}, id="more than 60 days"),
        pytest.param("complaint.filed", {"about": "case"}, id="case without case_id"),
        pytest.param(
            "complaint.filed",
            {"case_id": "330782001-20251009-0001"},
            id="case_id on a node complaint",
        ),
        pytest.param("complaint.filed", {"about": "department"}, id="no department"),
        pytest.param("complaint.filed", {"text": "   "}, id="blank text"),
        pytest.param(
            "complaint.filed", {"complaint_id": f"{VILLAGE}-20251009-0001"}, id="a case id"
        ),
        pytest.param("complaint.filed", {"subject": "33078"}, id="not a node id"),
        pytest.param("complaint.filed", {"after": [VILLAGE, 1]}, id="filing with after"),
        pytest.param("complaint.replied", {"after": [VILLAGE, 1]}, id="reply without text"),
        pytest.param("complaint.closed", {"after": None}, id="closing without after"),
        pytest.param("complaint.closed", {"after": [VILLAGE, 1], "note": ""}, id="empty note"),
    ],
)
def test_complaint_bodies_refused(entry_type: str, change: dict[str, object]) -> None:
    from sync.protocol.entry import encode_entry, parse_envelope
    from sync.protocol.errors import EntryError

    base = dict(_FILED)
    if entry_type != "complaint.filed":
        base = {k: _FILED[k] for k in ("complaint_id", "subject")}
    body = base | change
    raw = encode_entry(VILLAGE, 2, bytes(32), "2025-10-09T09:00:00+08:00", entry_type, body)
    with pytest.raises(EntryError):
        parse_envelope(raw)


@pytest.mark.parametrize(
    ("entry_type", "body"),
    [
        pytest.param("complaint.filed", _FILED, id="filed"),
        pytest.param(
            "complaint.filed",
            _FILED | {"about": "case", "case_id": "330782001-20251009-0001"},
            id="filed about a case",
        ),
        pytest.param("complaint.replied", _REPLY | {"text": "已答复"}, id="replied"),
        pytest.param("complaint.closed", _REPLY, id="closed"),
    ],
)
def test_complaint_bodies_accepted(entry_type: str, body: dict[str, object]) -> None:
    from sync.protocol.entry import encode_entry, parse_envelope

    raw = encode_entry(VILLAGE, 2, bytes(32), "2025-10-09T09:00:00+08:00", entry_type, body)
    assert parse_envelope(raw).type == entry_type


def test_complaint_close_backdated_before_its_filing_counts_nowhere(net: Network) -> None:
    """The subject signs, with its real key and without `complaint close`'s --at check, a
    close dated a month before the village filed the complaint about it. The fold refuses
    it (so the complaint does not drop out of October's 投诉 count nor close on time), and
    reconcile blames the town."""
    from tiers.city.reconcile import reconcile

    complaint_id = service.file(net.village, "镇窗口推诿", about_node=TOWN, at="2025-10-09T09:00")
    net.up()
    filed = net.town.store.query(
        "SELECT seq FROM complaint_events WHERE complaint_id = ?", (complaint_id,)
    )[0][0]
    closing = {"complaint_id": complaint_id, "subject": TOWN, "after": [VILLAGE, filed],
               "note": "已办结"}  # fmt: skip
    net.town.append("complaint.closed", closing, at="2025-09-08T09:00:00+08:00")
    net.up()
    row = compute_stats(net.city.store, OCTOBER, "node", NOVEMBER.date())["total"]
    assert (row["complaints"], row["complaints_closed"]) == (1, 0)
    view = complaint_view(net.city.store, complaint_id, NOVEMBER.date(), 3)
    assert view["status"] == "open"
    found = reconcile(net.city, "2025-09", now=NOVEMBER)["findings"]
    assert [(f["node_id"], f["evidence"]["problem"]) for f in found
            if f["kind"] == "complaint_violation"] == [(TOWN, "complaint.backdated")]  # fmt: skip


def test_complaint_counts_in_the_report_parts_add_up_to_their_total(net: Network) -> None:
    """The parts by item and by kind split complaints too (the case's item or kind, else
    "?"), so an honest report with complaints and cases is consistent (no
    report_inconsistent) and matches (no report_mismatch)."""
    from tiers.city.reconcile import reconcile

    _month_of_complaints(net)
    cases.accept(net.town, item_code="A1", applicant=cases.Applicant("张三"),
                 at="2025-10-09T09:00")  # fmt: skip
    submitted = submit_monthly(net.town, "2025-10")
    assert submitted.report.counts.complaints == 2 and submitted.report.parts
    net.up()
    found = reconcile(net.city, "2025-10", now=NOVEMBER)["findings"]
    assert [f for f in found if f["node_id"] == TOWN
            and f["kind"] in ("report_inconsistent", "report_mismatch")] == []  # fmt: skip
