"""The legal guards (tiers.cases.guards), worked by hand on the 2025 calendar.

October 2025: 1-8 off (国庆, 中秋), Saturday the 11th a working day (调休). A1 is the town's
承诺件 of 5 working days (fee 10.50 yuan); accepted Thursday 9 October it is due on the 15th
(10, 11, 13, 14, 15). C3 is a free 即办件.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from sync.clock import ZONE, AtLimits
from sync.protocol.errors import ZhibaoError
from sync.protocol.i18n import use_locale
from tests.helpers_cases import TOWN, Network, count_entries, network
from tiers.cases import service, views
from tiers.cases.machine import fold
from tiers.cases.order import Event
from tiers.cases.projection import load_case
from tiers.catalogue import CatalogueItem
from tiers.published import publish_items

WHO = service.Applicant("张三")


def _on(node: Any, day: str, hour: int = 10) -> None:
    """Set the node's clock to `day` (2025-10-..) at `hour`, with the --at limits on."""
    moment = datetime.fromisoformat(f"{day}T{hour:02d}:00").replace(tzinfo=ZONE)
    node.clock._now = lambda: moment
    node.clock.limits = AtLimits()


def _refused(node: Any, work: Any, key: str) -> ZhibaoError:
    """`work()` is refused with `key` and appends nothing."""
    before = count_entries(node.store)
    with pytest.raises(ZhibaoError) as refused:
        work()
    assert refused.value.key == key, refused.value
    assert count_entries(node.store) == before
    return refused.value


def _view(node: Any, case_id: str, day: str) -> dict[str, Any]:
    return views.case_view(node.store, case_id, datetime.fromisoformat(day).date(), 1)


@pytest.fixture
def net(tmp_path: Path) -> Any:
    with network(tmp_path) as built:
        yield built


def _accepted_a1(net: Network, day: str = "2025-10-09") -> str:
    _on(net.town, day)
    return service.accept(net.town, item_code="A1", applicant=WHO, at=f"{day}T09:00")


# --- 行政许可法 第四十二条: one extension, at most the item's limit, before the deadline ---


def test_guards_extension_once_within_the_limit_art42(net: Network) -> None:
    town = net.town
    case_id = _accepted_a1(net)
    assert _view(town, case_id, "2025-10-09")["deadline"] == "2025-10-15"
    _on(town, "2025-10-14")
    _refused(town, lambda: service.extend(town, case_id, 11, "核查", approved_by="局长"),
             "case.extend_limit")  # fmt: skip
    service.extend(town, case_id, 10, "入户核查", approved_by="王局长")
    shown = _view(town, case_id, "2025-10-14")
    # 10 more working days after the 15th: 16 17 20 21 22 23 24 27 28 29
    assert shown["deadline"] == "2025-10-29"
    assert (shown["extensions"], shown["extension_limit"]) == (1, 10)
    assert shown["approved_by"] == "王局长"
    extended = [ev for ev in shown["events"] if ev["type"] == "case.extended"]
    assert extended[0]["body"]["approved_by"] == "王局长"
    _refused(town, lambda: service.extend(town, case_id, 1, "再延", approved_by="局长"),
             "case.extend_twice")  # fmt: skip


def test_guards_extension_limit_comes_from_the_catalogue_art42(net: Network) -> None:
    short = CatalogueItem("D4", "特种许可", "交通", "promised", 5, 20, 0, (), ("town",), "town", 3)
    publish_items(net.city, [short], at="2025-01-02T09:00")
    net.down()
    _on(net.town, "2025-10-09")
    case_id = service.accept(net.town, item_code="D4", applicant=WHO)
    accepted = load_case(net.town.store, case_id).state
    assert accepted is not None and accepted.extension_limit == 3
    error = _refused(net.town,
                     lambda: service.extend(net.town, case_id, 4, "核查", approved_by="局长"),
                     "case.extend_limit")  # fmt: skip
    assert "at most 3 working days, not 4" in str(error)
    service.extend(net.town, case_id, 3, "核查", approved_by="局长")


def test_guards_no_extension_once_the_deadline_has_passed_art42(net: Network) -> None:
    town = net.town
    case_id = _accepted_a1(net)
    _on(town, "2025-10-16")  # due the 15th: red
    # neither dated now nor back-dated to before the deadline
    _refused(town, lambda: service.extend(town, case_id, 5, "补救", approved_by="局长"),
             "case.extend_late")  # fmt: skip
    _refused(town,
             lambda: service.extend(town, case_id, 5, "补救", at="2025-10-14", approved_by="局长"),
             "case.extend_late")  # fmt: skip
    use_locale("zh")
    try:
        error = _refused(town, lambda: service.extend(town, case_id, 5, "补救", approved_by="局长"),
                         "case.extend_late")  # fmt: skip
        assert "2025-10-15" in str(error) and "期限内批准" in str(error)
    finally:
        use_locale("en")


def test_guards_extension_needs_who_approved_it_art42(net: Network) -> None:
    case_id = _accepted_a1(net)
    _refused(net.town, lambda: service.extend(net.town, case_id, 5, "核查", approved_by=" "),
             "case.blank")  # fmt: skip


def test_guards_an_id_number_or_phone_longer_than_a_case_may_carry_is_refused(
    net: Network,
) -> None:
    """(What the projections index is at most MAX_KEY characters: said to the clerk in the
    reader's words before anything is signed.)"""
    _on(net.town, "2025-10-09")
    long = "1" * 65
    for who, field in ((service.Applicant("王芳", id_no=long), "id-no"),
                       (service.Applicant("王芳", phone=long), "phone")):  # fmt: skip
        error = _refused(net.town, lambda who=who: service.receive(net.town, "A1", who),
                         "case.too_long")  # fmt: skip
        assert str(error) == f"{field} is at most 64 characters, not 65."
    service.receive(net.town, "A1", service.Applicant("王芳", phone="1" * 64))


# --- suspensions are not back-dated across a passed deadline --------------------------------


def test_guards_suspension_back_dated_across_the_deadline_is_refused(net: Network) -> None:
    town = net.town
    case_id = _accepted_a1(net)
    _on(town, "2025-10-20")
    _refused(town, lambda: service.suspend(town, case_id, "专家评审", at="2025-10-14"),
             "case.pause_backdated")  # fmt: skip
    _refused(town, lambda: service.suspend(town, case_id, "专家评审", at="2025-10-15"),
             "case.pause_backdated")  # fmt: skip
    service.suspend(town, case_id, "专家评审", at="2025-10-16")  # after it: still overdue
    service.resume(town, case_id, at="2025-10-20")
    assert _view(town, case_id, "2025-10-20")["deadline"] == "2025-10-15"


def test_guards_paper_history_entered_after_the_deadline_goes_in(net: Network) -> None:
    # 补录 (DESIGN §8): a case first recorded here after its deadline was never watched
    # here; its suspension and extension, dated before the deadline, are its history
    town = net.town
    _on(town, "2025-10-20")
    case_id = service.accept(town, item_code="A1", applicant=WHO, at="2025-10-09T09:00")
    service.suspend(town, case_id, "专家评审", at="2025-10-14")
    service.resume(town, case_id, at="2025-10-16")
    service.extend(town, case_id, 2, "复杂", at="2025-10-16T10:00", approved_by="局长")
    # 10 11 13 14 used; paused (14, 16]; 1 + 2 left: 17 20 21
    assert _view(town, case_id, "2025-10-20")["deadline"] == "2025-10-21"


def test_guards_suspension_before_the_deadline_moves_it(net: Network) -> None:
    town = net.town
    case_id = _accepted_a1(net)
    _on(town, "2025-10-14")
    service.suspend(town, case_id, "检测", at="2025-10-14")
    _on(town, "2025-10-17")
    service.resume(town, case_id, at="2025-10-17")
    # used 10 11 13 14 (4 of 5); the pause (14, 17] stops the clock; one left: the 20th
    assert _view(town, case_id, "2025-10-17")["deadline"] == "2025-10-20"


def test_guards_supplement_after_acceptance_is_not_back_dated_either(net: Network) -> None:
    case_id = _accepted_a1(net)
    _on(net.town, "2025-10-17")
    _refused(net.town,
             lambda: service.request_supplement(net.town, case_id, ["照片"], at="2025-10-13"),
             "case.pause_backdated")  # fmt: skip


# --- 行政许可法 第三十二条: a 补正 notice after five working days accepts as of receipt ------


def test_guards_supplement_within_five_working_days_does_not_accept_art32(net: Network) -> None:
    town = net.town
    _on(town, "2025-10-09")
    case_id = service.receive(town, "A1", WHO, at="2025-10-09T09:00")
    _on(town, "2025-10-15")  # working days after the 9th: 10 11 13 14 15 = five
    service.request_supplement(town, case_id, ["照片"])
    assert service.deemed_accepted(town, case_id) is None
    shown = _view(town, case_id, "2025-10-15")
    assert (shown["accepted_at"], shown["deadline"], shown["deemed_accepted"]) == (
        None, None, False,
    )  # fmt: skip


def test_guards_late_supplement_accepts_as_of_receipt_art32(net: Network) -> None:
    town, city = net.town, net.city
    _on(town, "2025-10-09")
    case_id = service.receive(town, "A1", WHO, at="2025-10-09T09:00")
    _on(town, "2025-10-16")  # the sixth working day after receipt
    service.request_supplement(town, case_id, ["照片"])
    assert service.deemed_accepted(town, case_id) == "2025-10-09T09:00:00+08:00"
    shown = _view(town, case_id, "2025-10-16")
    assert shown["status"] == "supplement_requested"  # the notice is still recorded
    assert shown["accepted_at"] == "2025-10-09T09:00:00+08:00"
    assert shown["deadline"] == "2025-10-15" and shown["warning"] == "red"
    _on(town, "2025-10-17")
    service.supply(town, case_id)
    shown = _view(town, case_id, "2025-10-17")
    assert (shown["status"], shown["deadline"]) == ("accepted", "2025-10-15")
    assert [ev["type"] for ev in shown["events"]].count("case.accepted") == 0
    net.sync((town, city))  # the city folds the same from the same events
    assert _view(city, case_id, "2025-10-17")["deadline"] == "2025-10-15"


def test_guards_late_supplement_counts_in_the_figures_from_receipt_art32(net: Network) -> None:
    from tiers.city.stats import compute_stats
    from tiers.figures import parse_period

    town = net.town
    _on(town, "2025-10-09")
    case_id = service.receive(town, "A1", WHO, at="2025-10-09T09:00")
    _on(town, "2025-10-16")
    service.request_supplement(town, case_id, ["照片"])
    _on(town, "2025-10-17")
    service.supply(town, case_id)
    service.complete(town, case_id, "approved")
    net.sync((town, net.city))
    result = compute_stats(net.city.store, parse_period("2025-10"), "node",
                           datetime(2025, 10, 31).date())  # fmt: skip
    row = {r["key"]: r for r in result["rows"]}[TOWN]
    # accepted 10-09 (as of receipt), due 10-15, completed 10-17: late, not "on time"
    assert (row["accepted"], row["completed"], row["on_time"], row["overdue"]) == (1, 1, 0, 1)


def _event(seq: int, kind: str, at: str, after: int | None, **extra: Any) -> Event:
    case_id = f"{TOWN}-20251009-0001"
    body = {"case_id": case_id, "after": [TOWN, after] if after else None, **extra}
    return Event(TOWN, seq, "case." + kind, f"{at}T10:00:00+08:00", body)


def test_guards_late_supplement_without_limits_accepts_at_receipt_when_accepted_art32() -> None:
    # a notice that does not state the item's limits (an older node's): the acceptance that
    # follows counts from receipt all the same
    received = _event(1, "received", "2025-10-09", None, item_code="A1",
                      applicant={"name": "张三"}, materials=[])  # fmt: skip
    notice = _event(2, "supplement_requested", "2025-10-16", 1, missing=["照片"])
    supplied = _event(3, "supplied", "2025-10-17", 2)
    accepted = _event(4, "accepted", "2025-10-17", 3, promised_days=5)
    state = fold([received, notice])
    assert state is not None and state.deemed_accepted and state.accepted_at is None
    state = fold([received, notice, supplied, accepted])
    assert state is not None and state.accepted_at == received.at


# --- the fold refuses what a command would have refused, from any node ----------------------


def test_guards_fold_refuses_second_long_late_and_back_dated_extensions_art42() -> None:
    received = _event(1, "received", "2025-10-09", None, item_code="A1",
                      applicant={"name": "张三"}, materials=[])  # fmt: skip
    accepted = _event(2, "accepted", "2025-10-09", 1, promised_days=5)
    too_long = _event(3, "extended", "2025-10-10", 2, days=100, reason="x")
    late = _event(4, "extended", "2025-10-16", 2, days=5, reason="x")
    first = _event(5, "extended", "2025-10-13", 2, days=5, reason="x")
    second = _event(6, "extended", "2025-10-14", 5, days=5, reason="x")
    state = fold([received, accepted, too_long, late, first, second])
    assert state is not None
    assert [(v.seq, v.key) for v in state.violations] == [
        (3, "case.extend_limit"), (4, "case.extend_late"), (6, "case.extend_twice"),
    ]  # fmt: skip
    assert (state.extension_days, state.extensions) == (5, 1)
    completed = _event(7, "completed", "2025-10-16", 5, result="approved")
    back = _event(8, "suspended", "2025-10-15", 7, reason="x")
    state = fold([received, accepted, completed, back])
    assert state is not None
    assert [(v.seq, v.key) for v in state.violations][-1:] == [(8, "case.illegal")]
    state = fold([received, accepted, _event(3, "suspended", "2025-10-20", 2, reason="x"),
                  _event(4, "extended", "2025-10-14", 3, days=5, reason="x")])  # fmt: skip
    assert state is not None and [(v.seq, v.key) for v in state.violations] == [
        (4, "case.backdated")
    ]


# --- warnings: 第三十二条 (not accepted), 第四十四条 (not delivered in ten working days) -----


def test_guards_warning_received_not_accepted_art32(net: Network) -> None:
    town = net.town
    _on(town, "2025-10-09")
    case_id = service.receive(town, "A1", WHO, at="2025-10-09T09:00")
    assert _view(town, case_id, "2025-10-15")["warning"] is None  # five working days
    assert _view(town, case_id, "2025-10-16")["warning"] == "unaccepted"
    _on(town, "2025-10-16")
    assert [c["case_id"] for c in views.list_at(town, warning_filter="unaccepted")] == [case_id]
    town.config.settings["unaccepted_days"] = 6
    assert views.list_at(town, warning_filter="unaccepted") == []


def test_guards_warning_completed_not_delivered_art44(net: Network) -> None:
    town = net.town
    _on(town, "2025-10-09")
    case_id = service.accept(town, item_code="C3", applicant=WHO, at="2025-10-09T09:00")
    service.complete(town, case_id, "approved", at="2025-10-09T10:00")
    # ten working days after the 9th: 10 11 13 14 15 16 17 20 21 22
    assert _view(town, case_id, "2025-10-22")["warning"] is None
    assert _view(town, case_id, "2025-10-23")["warning"] == "undelivered"
    _on(town, "2025-10-23")
    assert [c["case_id"] for c in views.list_at(town, warning_filter="undelivered")] == [case_id]
    service.deliver(town, case_id)
    assert views.list_at(town, warning_filter="undelivered") == []


# --- 票款分离: the catalogue's fee, or a stated reason; no delivery unpaid -------------------


def test_guards_fee_must_be_the_catalogues_unless_overridden(net: Network) -> None:
    town = net.town
    case_id = _accepted_a1(net)  # A1: 10.50 yuan
    error = _refused(town, lambda: service.assess_fee(town, case_id, "500"), "case.fee_mismatch")
    assert "10.50" in str(error) and "--override-reason" in str(error)
    service.assess_fee(town, case_id, "500", override_reason="加急工本费（物价局批文）")
    fee = [ev for ev in _view(town, case_id, "2025-10-09")["events"]
           if ev["type"] == "case.fee_assessed"]  # fmt: skip
    assert fee[0]["body"]["override_reason"] == "加急工本费（物价局批文）"
    other = _accepted_a1(net)
    service.assess_fee(town, other, "10.50", override_reason="不需要")
    fee = [ev for ev in _view(town, other, "2025-10-09")["events"]
           if ev["type"] == "case.fee_assessed"]  # fmt: skip
    assert "override_reason" not in fee[0]["body"]  # the catalogue's: nothing to explain


def test_guards_fee_on_a_free_item_is_refused_without_reason(net: Network) -> None:
    _on(net.town, "2025-10-09")
    case_id = service.accept(net.town, item_code="C3", applicant=WHO)
    _refused(net.town, lambda: service.assess_fee(net.town, case_id, "5"), "case.fee_free")


def test_guards_fee_item_is_not_delivered_unpaid(net: Network) -> None:
    town = net.town
    case_id = _accepted_a1(net)
    service.complete(town, case_id, "approved")
    _refused(town, lambda: service.deliver(town, case_id), "case.deliver_unassessed")
    service.assess_fee(town, case_id, "10.50")
    _refused(town, lambda: service.deliver(town, case_id), "case.deliver_unpaid")
    service.pay(town, case_id, "R-001")
    service.deliver(town, case_id)


def test_guards_fold_refuses_delivery_of_an_unpaid_assessed_fee() -> None:
    received = _event(1, "received", "2025-10-09", None, item_code="A1",
                      applicant={"name": "张三"}, materials=[])  # fmt: skip
    steps = [
        received, _event(2, "accepted", "2025-10-09", 1, promised_days=5),
        _event(3, "fee_assessed", "2025-10-09", 2, fee_fen=1050),
        _event(4, "completed", "2025-10-10", 3, result="approved"),
        _event(5, "delivered", "2025-10-10", 4, method="window"),
    ]  # fmt: skip
    state = fold(steps)
    assert state is not None and state.status == "completed"
    assert [(v.seq, v.key) for v in state.violations] == [(5, "case.deliver_unpaid")]


# --- DESIGN §8: --at is neither in the future nor before the floor -------------------------


def test_guards_at_is_refused_in_the_future_and_before_the_floor(net: Network) -> None:
    town = net.town
    _on(town, "2025-10-09")  # 10:00
    service.receive(town, "A1", WHO, at="2025-10-09T10:10")  # within the 10 minutes
    _refused(town, lambda: service.receive(town, "A1", WHO, at="2025-10-09T10:11"),
             "time.future")  # fmt: skip
    _refused(town, lambda: service.receive(town, "A1", WHO, at="2020-10-08"), "time.floor")
    service.receive(town, "A1", WHO, at="2020-10-09")  # five years back, to the day
    town.clock.limits = None
    town.clock.configure({"at_floor": "2025-01-01"})
    _refused(town, lambda: service.receive(town, "A1", WHO, at="2024-12-31"), "time.floor")
    _refused(town, lambda: service.receive(town, "A1", WHO, at="1901-06-01T09:00+08:05:43"),
             "time.offset")  # fmt: skip


# --- the catalogue's extension_days column (default: 第四十二条's 10) ------------------------


def test_guards_catalogue_extension_days_in_csv_and_json() -> None:
    from tiers.catalogue import parse_catalogue
    from tiers.published import _check_item_body

    csv = (
        "code,name,department,kind,promised_days,extension_days\n"
        "D4,特种许可,交通,承诺,5,3\nD5,一般许可,交通,承诺,5,\n"
    ).encode()
    d4, d5 = parse_catalogue(csv, "c.csv")
    assert (d4.extension_days, d5.extension_days) == (3, 10)
    doc = b'[{"code":"D4","name":"n","department":"d","kind":"promised","promised_days":5,' \
          b'"extension_days":0}]'  # fmt: skip
    (json_item,) = parse_catalogue(doc, "c.json")
    assert json_item.extension_days == 0
    # the body carries it only when it is not the default, so older nodes verify the rest
    assert d4.to_body()["extension_days"] == 3 and "extension_days" not in d5.to_body()
    assert CatalogueItem.from_body(d4.to_body()) == d4
    _check_item_body(d4.to_body())
    with pytest.raises(ValueError):
        _check_item_body(d5.to_body() | {"extension_days": 10})  # not canonical
    from sync.protocol.errors import CatalogueError

    with pytest.raises(CatalogueError) as bad:
        parse_catalogue(csv.replace(b",3\n", b",-1\n"), "c.csv")
    assert bad.value.params["column"] == "extension_days"


def test_guards_fee_totals_by_department(net: Network) -> None:
    # 票款分离: assessed at the window, paid at the bank; both totals per department
    from tiers.city.stats import compute_stats, table_rows
    from tiers.figures import parse_period

    town = net.town
    paid = _accepted_a1(net)  # 公安, 10.50
    service.assess_fee(town, paid, "10.50")
    service.pay(town, paid, "R-1")
    unpaid = _accepted_a1(net)
    service.assess_fee(town, unpaid, "500", override_reason="加急（批文）")
    free = service.accept(town, item_code="C3", applicant=WHO)  # 民政, free
    service.complete(town, free, "approved")
    net.sync((town, net.city))
    result = compute_stats(net.city.store, parse_period("2025-10"), "department",
                           datetime(2025, 10, 9).date())  # fmt: skip
    rows = {r["key"]: r for r in result["rows"]}
    assert (rows["公安"]["fees_assessed_fen"], rows["公安"]["fees_paid_fen"]) == (51050, 1050)
    assert (rows["民政"]["fees_assessed_fen"], rows["民政"]["fees_paid_fen"]) == (0, 0)
    assert (result["total"]["fees_assessed_fen"], result["total"]["fees_paid_fen"]) == (
        51050, 1050,
    )  # fmt: skip
    shown = [row for row in table_rows(result) if "510.50" in row]
    assert shown and "10.50" in shown[0]  # the table shows yuan


def test_guards_reconcile_lists_fee_override_with_its_reason(net: Network) -> None:
    from tiers.city.reconcile import reconcile

    town = net.town
    case_id = _accepted_a1(net)
    service.assess_fee(town, case_id, "500", override_reason="加急（物价局批文）")
    honest = _accepted_a1(net)
    service.assess_fee(town, honest, "10.50")
    net.sync((town, net.city))
    found = [f for f in reconcile(net.city, "2025-10", now=datetime(2025, 11, 3, tzinfo=ZONE))[
        "findings"] if f["kind"] == "fee_override"]  # fmt: skip
    assert [(f["node_id"], f["evidence"]["case_id"], f["evidence"]["reason"]) for f in found] == [
        (TOWN, case_id, "加急（物价局批文）")
    ]
    assert "500.00" in found[0]["detail"] and "10.50" in found[0]["detail"]


def test_guards_reconcile_names_a_suspension_written_after_a_later_dated_entry(
    net: Network,
) -> None:
    # the fold reads case events only; the city's reconcile reads the whole log: a
    # heartbeat the town dated 10-20, then a suspension it dated 10-14 (due 10-15)
    from tiers.city.reconcile import reconcile

    town = net.town
    case_id = _accepted_a1(net)
    beat = town.append("sync.alive", {"via": "sync"}, at="2025-10-20T09:00:00+08:00")
    _on(town, "2025-10-14")
    service.suspend(town, case_id, "检测", at="2025-10-14T10:00")
    suspended = town.store.head(TOWN)[0]
    net.sync((town, net.city))
    found = [f for f in reconcile(net.city, "2025-10", now=datetime(2025, 11, 3, tzinfo=ZONE))[
        "findings"] if f["kind"] == "backdated"]  # fmt: skip
    assert [
        (
            f["node_id"],
            f["evidence"]["seq"],
            f["evidence"]["written_after_seq"],
            f["evidence"]["due"],
        )
        for f in found
    ] == [(TOWN, suspended, beat.seq, "2025-10-15")]


def test_guards_reconcile_names_a_fee_item_delivered_with_no_fee_assessed(net: Network) -> None:
    """票款分离: `case deliver` refuses a fee item (A1, 10.50 yuan) with no fee assessed; the
    fold cannot (it has no catalogue). The town signs such a delivery with its real key; the
    city's reconcile names it (fee_unassessed), and not the honest delivery after payment."""
    from tiers.city.reconcile import reconcile

    town = net.town
    case_id = _accepted_a1(net)
    _on(town, "2025-10-09", 18)
    service.complete(town, case_id, "approved", at="2025-10-09T10:00")
    _refused(town, lambda: service.deliver(town, case_id, at="2025-10-09T11:00"),
             "case.deliver_unassessed")  # fmt: skip
    anchor = load_case(town.store, case_id).state.anchor  # type: ignore[union-attr]
    town.append("case.delivered", {"case_id": case_id, "after": list(anchor), "method": "window"},
                at="2025-10-09T11:00:00+08:00")  # fmt: skip
    honest = _accepted_a1(net)
    _on(town, "2025-10-09", 18)
    service.complete(town, honest, "approved", at="2025-10-09T10:00")
    service.assess_fee(town, honest, "10.50", at="2025-10-09T10:10")
    service.pay(town, honest, "R-1", at="2025-10-09T10:20")
    service.deliver(town, honest, at="2025-10-09T11:00")
    net.sync((town, net.city))
    found = [f for f in reconcile(net.city, "2025-10", now=datetime(2025, 11, 3, tzinfo=ZONE))[
        "findings"] if f["kind"] == "fee_unassessed"]  # fmt: skip
    assert [(f["node_id"], f["evidence"]["case_id"]) for f in found] == [(TOWN, case_id)]
    assert "10.50" in found[0]["detail"]


def test_guards_reconcile_names_an_acceptance_unlike_the_catalogue_art42(net: Network) -> None:
    """The fold trusts the promise an acceptance recorded (promised days, extension limit):
    a town that skipped `case accept`'s catalogue lookup signs, with its real key, A1 (5
    days, extension limit 10) accepted with 30 days and a limit of 100, then extends by 100.
    The city's reconcile names the acceptance; the honest acceptance is not named."""
    from tiers.city.reconcile import reconcile

    town = net.town
    _on(town, "2025-10-09")
    case_id = service.receive(town, "A1", WHO, at="2025-10-09T09:00")
    anchor = load_case(town.store, case_id).state.anchor  # type: ignore[union-attr]
    town.append("case.accepted", {"case_id": case_id, "after": list(anchor),
                                  "promised_days": 30, "extension_limit": 100},
                at="2025-10-09T09:10:00+08:00")  # fmt: skip
    honest = _accepted_a1(net)
    net.sync((town, net.city))
    found = [f for f in reconcile(net.city, "2025-10", now=datetime(2025, 11, 3, tzinfo=ZONE))[
        "findings"] if f["kind"] == "acceptance_unlike_catalogue"]  # fmt: skip
    assert [(f["node_id"], f["evidence"]["case_id"]) for f in found] == [(TOWN, case_id)]
    evidence = found[0]["evidence"]
    assert (evidence["promised_days"], evidence["extension_limit"]) == (30, 100)
    assert (evidence["catalogue_promised_days"], evidence["catalogue_extension_days"]) == (5, 10)
    assert honest != case_id


def test_guards_reconcile_finds_acceptances_however_their_time_is_written(net: Network) -> None:
    """Reconcile passes over events more than a day outside the month in SQL, by the date
    their `at` begins with. A town signs, with its real key, acceptances unlike the
    catalogue whose times are written to slip past that: an ISO basic date, and a date two
    days before the month with an offset of -23:00 (October 1st in China). Both are named;
    one that is in September however it is read is not."""
    from tiers.city.reconcile import reconcile

    town = net.town
    named = []
    for at in ("20251009T091000+0800", "2025-09-29T23:30:00-23:00", "2025-09-30T09:00:00+08:00"):
        _on(town, "2025-09-29")
        case_id = service.receive(town, "A1", WHO, at="2025-09-29T08:00")
        anchor = load_case(town.store, case_id).state.anchor  # type: ignore[union-attr]
        town.append("case.accepted", {"case_id": case_id, "after": list(anchor),
                                      "promised_days": 30}, at=at)  # fmt: skip
        named.append(case_id)
    net.sync((town, net.city))
    found = [f for f in reconcile(net.city, "2025-10", now=datetime(2025, 11, 3, tzinfo=ZONE))[
        "findings"] if f["kind"] == "acceptance_unlike_catalogue"]  # fmt: skip
    assert sorted(f["evidence"]["case_id"] for f in found) == sorted(named[:2])


def test_guards_reconcile_names_each_backdated_suspension_of_a_busy_town(net: Network) -> None:
    """The town's log read once for all its suspensions of the month: three cases accepted
    10-09 (A1: due 10-15), heartbeats dated 10-14 and 10-20 between them; a suspension
    dated 10-14 written after the 10-20 heartbeat is named with it, one written before it
    (after the 10-14 one only) is not, nor one on a case accepted after the 10-20 heartbeat."""
    from tiers.city.reconcile import reconcile

    town = net.town
    early, late = _accepted_a1(net), _accepted_a1(net)
    town.append("sync.alive", {"via": "sync"}, at="2025-10-14T08:00:00+08:00")
    _on(town, "2025-10-14")
    service.suspend(town, early, "检测", at="2025-10-14T09:00")  # before the 10-20 beat
    beat = town.append("sync.alive", {"via": "sync"}, at="2025-10-20T09:00:00+08:00")
    after = _accepted_a1(net)  # accepted after the beat: its span starts after it
    _on(town, "2025-10-14", 12)
    service.suspend(town, late, "检测", at="2025-10-14T10:00")
    backdated_seq = town.store.head(TOWN)[0]
    service.suspend(town, after, "检测", at="2025-10-14T11:00")
    net.sync((town, net.city))
    found = [f for f in reconcile(net.city, "2025-10", now=datetime(2025, 11, 3, tzinfo=ZONE))[
        "findings"] if f["kind"] == "backdated"]  # fmt: skip
    assert [(f["evidence"]["case_id"], f["evidence"]["seq"], f["evidence"]["written_after_seq"],
             f["evidence"]["written_after_at"]) for f in found] == [
        (late, backdated_seq, beat.seq, "2025-10-20T09:00:00+08:00")]  # fmt: skip
