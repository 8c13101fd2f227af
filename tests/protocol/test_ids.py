"""Node and case ids: the fast checks that run several times for every entry received."""

from __future__ import annotations

import pytest

from sync.protocol.ids import is_node_id, tier_of
from tiers.cases.entries import is_case_id
from tiers.complaints.entries import is_complaint_id


@pytest.mark.parametrize("value", ["330782", "330782001", "330782001201"])
def test_well_formed_ids_pass_twice(value: str) -> None:
    assert is_node_id(value) and is_node_id(value)  # the second answer comes from the cache


@pytest.mark.parametrize(
    "value",
    [
        "33078",  # no tier is 5 digits long
        "3307820012",
        "330782\n",  # a regex with `$` let this through
        "３３０７８２",  # full-width digits are digits to str.isdigit, not to us
        "33078²",
        "",
        None,
        330782,
        ["330782"],  # unhashable: must be a plain False, not a TypeError
        {"id": "330782"},
    ],
)
def test_malformed_ids_fail_without_raising(value: object) -> None:
    assert is_node_id(value) is False


def test_tier_of_uses_the_same_rule() -> None:
    assert [tier_of(i) for i in ("330782", "330782001", "330782001201")] == [
        "city",
        "town",
        "village",
    ]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("330782001201-20251009-0001", True),
        ("330782001-20251009-12345", True),
        ("330782001-20251009-123456789", True),
        ("330782001-20251009-1234567890", False),
        ("330782001-20251009-" + "1" * 20_000, False),
        ("330782001201-2025109-0001", False),
        ("330782001201-20251009-001", False),
        ("330782001201-20251009-0001-1", False),
        ("33078200120-20251009-0001", False),
        ("330782001201-２０２５1009-0001", False),
        (["330782001201-20251009-0001"], False),
        (None, False),
    ],
)
def test_case_ids(value: object, ok: bool) -> None:
    assert is_case_id(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("330782001201-C20251009-0001", True),
        ("330782001-C20251009-123456789", True),
        ("330782001-C20251009-1234567890", False),
        ("330782001-C20251009-" + "1" * 20_000, False),  # more than an index row holds
        ("330782001-C20251009-001", False),
        ("330782001-20251009-0001", False),
    ],
)
def test_complaint_ids(value: object, ok: bool) -> None:
    assert is_complaint_id(value) is ok
