"""The pure case state machine: transitions, custody, tier rules, causal order, fold."""

from __future__ import annotations

import random
from typing import Any

import pytest

from sync.protocol.errors import CustodyError, IllegalTransitionError
from sync.protocol.i18n import use_locale
from tests.helpers_cases import CITY, ITEMS, TOWN, VILLAGE
from tiers.cases.machine import TAKE, CaseState, allowed_actions, check, fold
from tiers.cases.order import Event, causal_order, chained

CASE = f"{VILLAGE}-20251009-0001"
OTHER_VILLAGE = "330782001202"
A1, B2, C3 = ITEMS

# Shorthand steps: (event type suffix, author, extra body fields).
RECEIVE_V = ("received", VILLAGE, {})
RECEIVE_T = ("received", TOWN, {})
FORWARD_V = ("forwarded", VILLAGE, {"to": TOWN})
TAKE_T = ("taken", TOWN, {})
ACCEPT_T = ("accepted", TOWN, {"promised_days": 5})
FORWARD_T = ("forwarded", TOWN, {"to": CITY})
TAKE_C = ("taken", CITY, {})
COMPLETE_C = ("completed", CITY, {"result": "approved"})
COMPLETE_T = ("completed", TOWN, {"result": "approved"})
DELIVER_V = ("delivered", VILLAGE, {"method": "window"})
DELIVER_T = ("delivered", TOWN, {"method": "window"})
FEE_T = ("fee_assessed", TOWN, {"fee_fen": 1050})
PAY_T = ("fee_paid", TOWN, {"receipt": "R1", "fee_fen": 1050})
RATE_V = ("rated", VILLAGE, {"score": 1})
SUPPLEMENT_T = ("supplement_requested", TOWN, {"missing": ["照片"]})
SUPPLY_T = ("supplied", TOWN, {})
SUSPEND_T = ("suspended", TOWN, {"reason": "听证"})
WITHDRAW_T = ("withdrawn", TOWN, {})
REJECT_T = ("rejected", TOWN, {"reason": "不符合条件"})
RATE_REJECTED_T = ("rated", TOWN, {"score": 2})  # 不予受理 is rated too (issue #12)

AT_TOWN = [RECEIVE_V, FORWARD_V, TAKE_T]  # received at the village, now held by the town
ACCEPTED = [*AT_TOWN, ACCEPT_T]


def events(steps: list[tuple[str, str, dict[str, Any]]]) -> list[Event]:
    """Events of one case, each naming the previous one as its `after`."""
    seqs: dict[str, int] = {}
    out: list[Event] = []
    for kind, origin, extra in steps:
        seqs[origin] = seqs.get(origin, 0) + 1
        body: dict[str, Any] = {"case_id": CASE, "after": list(out[-1].ref) if out else None}
        if kind == "received":
            body |= {"item_code": "B2", "applicant": {"name": "李四"}, "materials": []}
        out.append(Event(origin, seqs[origin], "case." + kind, "2025-10-09T10:00:00+08:00",
                         body | extra))  # fmt: skip
    return out


def state_of(steps: list[tuple[str, str, dict[str, Any]]]) -> CaseState:
    state = fold(events(steps))
    assert state is not None
    assert state.violations == [], state.violations
    return state


LEGAL = [
    pytest.param([RECEIVE_T], "accept", TOWN, id="received-accept"),
    pytest.param([RECEIVE_T], "reject", TOWN, id="received-reject"),
    pytest.param([RECEIVE_T], "request-supplement", TOWN, id="received-supplement"),
    pytest.param([RECEIVE_V], "forward", VILLAGE, id="received-forward"),
    pytest.param([RECEIVE_T], "withdraw", TOWN, id="received-withdraw"),
    pytest.param([RECEIVE_T, SUPPLEMENT_T], "supply", TOWN, id="supplement-supply"),
    pytest.param([RECEIVE_T, SUPPLEMENT_T], "reject", TOWN, id="supplement-reject"),
    pytest.param([*ACCEPTED, SUPPLEMENT_T], "supply", TOWN, id="after-acceptance-supply"),
    pytest.param([RECEIVE_V, FORWARD_V], TAKE, TOWN, id="in-transit-take-by-target"),
    pytest.param([RECEIVE_V, FORWARD_V], "withdraw", VILLAGE, id="in-transit-withdraw"),
    pytest.param(ACCEPTED, "complete", TOWN, id="accepted-complete"),
    pytest.param(ACCEPTED, "suspend", TOWN, id="accepted-suspend"),
    pytest.param(ACCEPTED, "extend", TOWN, id="accepted-extend"),
    pytest.param(ACCEPTED, "forward", TOWN, id="accepted-forward"),
    pytest.param(ACCEPTED, "fee", TOWN, id="accepted-fee"),
    pytest.param(ACCEPTED, "request-supplement", TOWN, id="accepted-supplement"),
    pytest.param([*ACCEPTED, SUSPEND_T], "resume", TOWN, id="suspended-resume"),
    pytest.param([*ACCEPTED, FEE_T], "pay", TOWN, id="assessed-pay"),
    pytest.param([*ACCEPTED, COMPLETE_T], "deliver", TOWN, id="completed-deliver-holder"),
    pytest.param([*ACCEPTED, COMPLETE_T], "deliver", VILLAGE, id="completed-deliver-origin"),
    pytest.param([*ACCEPTED, COMPLETE_T, DELIVER_V], "rate", VILLAGE, id="delivered-rate"),
    pytest.param([*ACCEPTED, COMPLETE_T, DELIVER_T], "rate", TOWN, id="delivered-rate-holder"),
    pytest.param([*ACCEPTED, FORWARD_T, TAKE_C], "complete", CITY, id="city-completes"),
]


@pytest.mark.parametrize(("steps", "action", "actor"), LEGAL)
def test_machine_legal_transition_is_allowed(
    steps: list[tuple[str, str, dict[str, Any]]], action: str, actor: str
) -> None:
    check(state_of(steps), action, actor)


ILLEGAL = [
    pytest.param([RECEIVE_T], "complete", TOWN, "received",
                 "accept, reject, request-supplement, forward, withdraw",
                 id="complete-before-accept"),
    pytest.param(ACCEPTED, "rate", TOWN, "accepted",
                 "request-supplement, suspend, extend, forward, complete, fee, withdraw",
                 id="rate-before-completion"),
    # the village (the origin) may deliver, but only the holder assesses a fee
    pytest.param([*ACCEPTED, COMPLETE_T], "rate", VILLAGE, "completed", "Allowed now: deliver.",
                 id="rate-before-delivery"),
    pytest.param([*ACCEPTED, COMPLETE_T], "complete", TOWN, "completed", "deliver, fee",
                 id="complete-twice"),
    pytest.param(ACCEPTED, "deliver", TOWN, "accepted", "complete", id="deliver-before-complete"),
    pytest.param(ACCEPTED, "pay", TOWN, "accepted", "fee", id="pay-before-fee"),
    pytest.param([*ACCEPTED, FEE_T, PAY_T], "pay", TOWN, "accepted", "complete",
                 id="pay-twice"),
    pytest.param([*ACCEPTED, COMPLETE_T, DELIVER_V, RATE_V], "rate", VILLAGE, "delivered",
                 f"Allowed now: nothing by this node (the case is with {TOWN}).",
                 id="rate-twice"),
    pytest.param([RECEIVE_T, SUPPLEMENT_T], "accept", TOWN, "supplement_requested",
                 "reject, supply, withdraw", id="accept-before-supply"),
    pytest.param([RECEIVE_T, SUPPLEMENT_T], "request-supplement", TOWN,
                 "supplement_requested", "supply", id="supplement-twice"),
    pytest.param([*ACCEPTED, SUSPEND_T], "complete", TOWN, "suspended",
                 "resume, extend, fee, withdraw", id="complete-while-suspended"),
    # only the town it went to takes it ("accept"); the village may still withdraw it
    pytest.param([RECEIVE_V, FORWARD_V], "complete", VILLAGE, "in_transit",
                 "Allowed now: withdraw.", id="complete-in-transit"),
    pytest.param(ACCEPTED, "resume", TOWN, "accepted", "suspend", id="resume-not-suspended"),
    pytest.param(ACCEPTED, "supply", TOWN, "accepted", "request-supplement",
                 id="supply-without-request"),
    pytest.param(ACCEPTED, "reject", TOWN, "accepted", "complete", id="reject-after-accept"),
]  # fmt: skip


@pytest.mark.parametrize(("steps", "action", "actor", "status", "allowed"), ILLEGAL)
def test_machine_illegal_transition_names_status_and_allowed(
    steps: list[tuple[str, str, dict[str, Any]]], action: str, actor: str, status: str,
    allowed: str,
) -> None:  # fmt: skip
    use_locale("en")
    try:
        with pytest.raises(IllegalTransitionError) as caught:
            check(state_of(steps), action, actor)
        message = str(caught.value)
    finally:
        use_locale(None)
    assert message.startswith(f"Case {CASE} is {status}; {action} is not allowed.")
    assert "Allowed now: " in message
    assert allowed in message
    assert action not in message.split("Allowed now: ")[1].split(", ")


def test_machine_illegal_message_lists_exactly_what_is_allowed() -> None:
    use_locale("en")
    try:
        with pytest.raises(IllegalTransitionError) as caught:
            check(state_of([RECEIVE_T]), "complete", TOWN)
        message = str(caught.value)
    finally:
        use_locale(None)
    assert message == (
        f"Case {CASE} is received; complete is not allowed. "
        "Allowed now: accept, reject, request-supplement, forward, withdraw."
    )
    assert caught.value.allowed == ["accept", "reject", "request-supplement", "forward",
                                    "withdraw"]  # fmt: skip


def test_machine_illegal_message_in_chinese() -> None:
    use_locale("zh")
    try:
        with pytest.raises(IllegalTransitionError) as caught:
            check(state_of([RECEIVE_T]), "complete", TOWN)
        message = str(caught.value)
    finally:
        use_locale(None)
    assert "已收件" in message
    assert "受理（accept）" in message


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param([RECEIVE_T, WITHDRAW_T], id="withdrawn"),
        pytest.param([RECEIVE_T, REJECT_T, RATE_REJECTED_T], id="rejected-and-rated"),
        pytest.param([*ACCEPTED, WITHDRAW_T], id="withdrawn-after-acceptance"),
    ],
)
@pytest.mark.parametrize("action", ["accept", "complete", "withdraw", "fee", "deliver", "rate"])
def test_machine_nothing_after_withdrawn_or_rejected(
    steps: list[tuple[str, str, dict[str, Any]]], action: str
) -> None:
    state = state_of(steps)
    assert allowed_actions(state) == []
    with pytest.raises(IllegalTransitionError, match="Nothing more can be recorded"):
        use_locale("en")
        try:
            check(state, action, TOWN)
        finally:
            use_locale(None)


CUSTODY = [
    pytest.param([RECEIVE_V], "accept", TOWN, id="accept-not-forwarded"),
    pytest.param([RECEIVE_V, FORWARD_V], TAKE, CITY, id="take-by-non-target"),
    pytest.param([RECEIVE_V, FORWARD_V], "accept", VILLAGE, id="sender-cannot-take"),
    pytest.param(ACCEPTED, "complete", VILLAGE, id="origin-cannot-complete"),
    pytest.param([*ACCEPTED, COMPLETE_T], "deliver", OTHER_VILLAGE, id="stranger-delivers"),
    pytest.param([*ACCEPTED, FORWARD_T], "withdraw", CITY, id="receiver-withdraws-before-taken"),
    pytest.param([*ACCEPTED, FORWARD_T, TAKE_C], "suspend", TOWN, id="old-holder-suspends"),
]


@pytest.mark.parametrize(("steps", "action", "actor"), CUSTODY)
def test_machine_actor_without_custody_is_refused(
    steps: list[tuple[str, str, dict[str, Any]]], action: str, actor: str
) -> None:
    with pytest.raises(CustodyError):
        check(state_of(steps), action, actor)


def test_machine_forward_keeps_custody_until_taken() -> None:
    in_transit = state_of([*ACCEPTED, FORWARD_T])
    assert (in_transit.status, in_transit.holder, in_transit.forward_to) == (
        "in_transit", TOWN, CITY
    )  # fmt: skip
    taken = state_of([*ACCEPTED, FORWARD_T, TAKE_C])
    assert (taken.status, taken.holder, taken.forward_to) == ("accepted", CITY, None)
    back_to_received = state_of(AT_TOWN)
    assert (back_to_received.status, back_to_received.holder) == ("received", TOWN)


TIER_RULES = [
    pytest.param([("received", VILLAGE, {})], "accept", VILLAGE, A1, "tier_accept",
                 id="village-accepts-town-item"),
    pytest.param(ACCEPTED, "complete", TOWN, B2, "tier_decide", id="town-completes-city-item"),
]  # fmt: skip


@pytest.mark.parametrize(("steps", "action", "actor", "item", "key"), TIER_RULES)
def test_machine_tier_rules_from_catalogue(
    steps: list[tuple[str, str, dict[str, Any]]], action: str, actor: str, item: Any, key: str
) -> None:
    state = state_of(steps)
    check(state, action, actor)  # legal without the catalogue …
    with pytest.raises(IllegalTransitionError) as caught:
        check(state, action, actor, item=item)  # … refused by its tier rules
    assert caught.value.key == f"case.{key}"


def test_machine_city_may_complete_city_item() -> None:
    check(state_of([*ACCEPTED, FORWARD_T, TAKE_C]), "complete", CITY, item=B2)


def test_machine_causal_order_ignores_arrival_order() -> None:
    history = events([*ACCEPTED, FORWARD_T, TAKE_C, COMPLETE_C, DELIVER_V, RATE_V])
    for seed in range(20):
        shuffled = list(history)
        random.Random(seed).shuffle(shuffled)
        ordered, waiting = causal_order(shuffled)
        assert ordered == history
        assert waiting == []


def test_machine_causal_order_waits_for_missing_after() -> None:
    history = events([*ACCEPTED, FORWARD_T, TAKE_C, COMPLETE_C, DELIVER_V, RATE_V])
    take_c = history[5]
    assert take_c.type == "case.taken"
    held = [ev for ev in history if ev is not take_c]
    ordered, waiting = causal_order(held)
    assert ordered == history[:5]
    assert [ev.type for ev in waiting] == ["case.completed", "case.delivered", "case.rated"]


def test_machine_concurrent_events_tie_break_by_origin_then_seq() -> None:
    base = events([*ACCEPTED, COMPLETE_T])
    after = list(base[-1].ref)
    by_village = Event(VILLAGE, 3, "case.delivered", "2025-10-10T09:00:00+08:00",
                       {"case_id": CASE, "after": after, "method": "window"})  # fmt: skip
    by_town = Event(TOWN, 4, "case.delivered", "2025-10-09T09:00:00+08:00",
                    {"case_id": CASE, "after": after, "method": "sms"})  # fmt: skip
    for arrival in ([by_village, by_town], [by_town, by_village]):
        ordered, _ = causal_order([*base, *arrival])
        state = fold(ordered)
        assert state is not None
        # "330782001" < "330782001201": the town's delivery is first; the village's is refused.
        assert state.delivery_method == "sms"
        assert [(v.origin, v.key) for v in state.violations] == [(VILLAGE, "case.illegal")]


def test_machine_chained_orders_a_chain_as_causal_order_does_from_any_tip() -> None:
    """What arrived in one go, in any order, extending what was folded up to some tip: the
    order `causal_order` gives the whole case (so the projection may fold it on)."""
    history = events([*ACCEPTED, FORWARD_T, TAKE_C, COMPLETE_C, DELIVER_V, RATE_V])
    for cut in range(len(history)):
        tip = history[cut - 1].ref if cut else None
        for seed in range(10):
            fresh = history[cut:]
            random.Random(seed).shuffle(fresh)
            assert chained(tip, fresh) == causal_order(history)[0][cut:]


def test_machine_chained_refuses_what_is_no_single_chain_from_the_tip() -> None:
    history = events([*ACCEPTED, COMPLETE_T])
    tip = history[1].ref
    assert chained(tip, history[3:]) is None  # a gap: the take is not there
    assert chained(history[0].ref, history[2:]) is None  # not from the tip folded
    assert chained(None, history[1:]) is None  # a case not begun needs its receipt
    after = list(history[-1].ref)
    branch = [Event(origin, seq, "case.delivered", "2025-10-10T09:00:00+08:00",
                    {"case_id": CASE, "after": after, "method": "window"})
              for origin, seq in ((VILLAGE, 3), (TOWN, 4))]  # fmt: skip
    assert chained(history[-1].ref, branch) is None  # two after one: causal_order decides
    # a chain by `after` that runs an origin's log backwards (a hostile author's): refused
    first = Event(TOWN, 9, "case.completed", "2025-10-10T09:00:00+08:00",
                  {"case_id": CASE, "after": list(history[3].ref)})  # fmt: skip
    then = Event(TOWN, 8, "case.delivered", "2025-10-10T09:00:00+08:00",
                 {"case_id": CASE, "after": [TOWN, 9], "method": "window"})  # fmt: skip
    assert chained(history[3].ref, [then, first]) is None


def test_machine_fold_refuses_without_raising() -> None:
    history = events([RECEIVE_V, ("completed", TOWN, {"result": "approved"}), FORWARD_V])
    state = fold(history)
    assert state is not None
    assert state.status == "in_transit"
    assert [(v.type, v.key) for v in state.violations] == [("case.completed", "case.illegal")]


def test_machine_fold_accept_while_in_transit_needs_take_first() -> None:
    state = fold(events([RECEIVE_V, FORWARD_V, ACCEPT_T]))
    assert state is not None
    assert state.status == "in_transit"
    assert [v.key for v in state.violations] == ["case.take_first"]
