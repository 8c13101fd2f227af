"""`allowed_for`: what a node itself may record now ("allowed now" in `case show` and in
refusals), and the refusal of an item this tier does not accept, which names no case."""

from __future__ import annotations

from typing import Any

import pytest

from sync.protocol.errors import IllegalTransitionError, ZhibaoError
from sync.protocol.i18n import use_locale
from tests.helpers_cases import CITY, ITEMS, TOWN, VILLAGE
from tests.tiers.test_case_machine import (
    ACCEPTED,
    COMPLETE_T,
    DELIVER_V,
    FEE_T,
    FORWARD_T,
    FORWARD_V,
    OTHER_VILLAGE,
    RATE_V,
    RECEIVE_T,
    RECEIVE_V,
    SUSPEND_T,
    state_of,
)
from tiers.cases.machine import ACTIONS, NEW_CASE, TAKE, CaseState, allowed_for, check
from tiers.catalogue import CatalogueItem

A1, B2, C3 = ITEMS
HISTORIES = [
    pytest.param([RECEIVE_V], id="received-at-village"),
    pytest.param([RECEIVE_V, FORWARD_V], id="in-transit"),
    pytest.param(ACCEPTED, id="accepted-at-town"),
    pytest.param([*ACCEPTED, FEE_T], id="fee-assessed"),
    pytest.param([*ACCEPTED, SUSPEND_T], id="suspended"),
    pytest.param([*ACCEPTED, COMPLETE_T], id="completed"),
    pytest.param([*ACCEPTED, COMPLETE_T, DELIVER_V], id="delivered"),
    pytest.param([*ACCEPTED, COMPLETE_T, DELIVER_V, RATE_V], id="rated"),
    pytest.param([*ACCEPTED, FORWARD_T], id="forwarded-to-city"),
    pytest.param([RECEIVE_T], id="received-at-town"),
]


def _accepted_by_check(state: CaseState, action: str, actor: str, item: Any) -> bool:
    shown = TAKE if action == "accept" and state.status == "in_transit" else action
    try:
        check(state, shown, actor, item=item)
    except ZhibaoError:
        return False
    return True


@pytest.mark.parametrize("steps", HISTORIES)
@pytest.mark.parametrize("actor", [CITY, TOWN, VILLAGE, OTHER_VILLAGE])
@pytest.mark.parametrize("item", [None, B2], ids=["no-item", "B2"])
def test_allowed_for_lists_exactly_what_check_lets_the_node_record(
    steps: list[tuple[str, str, dict[str, Any]]], actor: str, item: CatalogueItem | None
) -> None:
    state = state_of(steps)
    expected = [a for a in ACTIONS if _accepted_by_check(state, a, actor, item)]
    assert allowed_for(state, actor, item) == expected


def test_allowed_for_leaves_out_what_only_the_holder_or_the_target_may_do() -> None:
    completed = state_of([*ACCEPTED, COMPLETE_T])
    assert allowed_for(completed, TOWN, B2) == ["deliver", "fee"]
    assert allowed_for(completed, VILLAGE, B2) == ["deliver"]  # the origin delivers, no more
    assert allowed_for(completed, OTHER_VILLAGE, B2) == []
    in_transit = state_of([RECEIVE_V, FORWARD_V])
    assert allowed_for(in_transit, TOWN, B2) == ["accept"]  # taking it
    assert allowed_for(in_transit, VILLAGE, B2) == ["withdraw"]
    # B2 is decided at the city: the town that holds it may not complete it
    assert "complete" not in allowed_for(state_of(ACCEPTED), TOWN, B2)
    assert "complete" in allowed_for(state_of(ACCEPTED), TOWN, None)


def test_refusal_lists_nothing_when_nothing_is_for_this_node() -> None:
    use_locale("en")
    try:
        with pytest.raises(IllegalTransitionError) as refused:
            check(state_of([*ACCEPTED, COMPLETE_T, DELIVER_V, RATE_V]), "rate", VILLAGE)
    finally:
        use_locale(None)
    assert str(refused.value).endswith(
        f"Allowed now: nothing by this node (the case is with {TOWN})."
    )
    assert refused.value.key == "case.illegal"  # the key others count stays the same


CITY_ONLY = CatalogueItem("S9", "契税", "税务", "immediate", 0, 0, 0, (), ("city",), "city")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_new_case_of_an_item_this_tier_does_not_accept_names_no_case(lang: str) -> None:
    """`case accept --item` checks before the case exists: no "forward case -"."""
    dry = CaseState(NEW_CASE, CITY_ONLY.code, TOWN, {}, [], "", TOWN)
    use_locale(lang)
    try:
        with pytest.raises(IllegalTransitionError) as refused:
            check(dry, "accept", TOWN, item=CITY_ONLY)
        message = str(refused.value)
    finally:
        use_locale(None)
    assert refused.value.key == "case.tier_apply_there"
    assert NEW_CASE not in message.replace("S9", "") and "S9" in message, message
