"""Bodies of the case entry types (tiers/cases/entries.py): which are accepted, which refused.

These tests pin behaviour across the body-check implementation (hand-written checks today,
msgspec Structs tomorrow). Every body goes through the public `encode_entry` and
`parse_envelope`, and only accept vs refuse and the refusal's `reason_key` are asserted:
never message text, never private functions.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

import tiers.cases.entries as e
from sync.protocol.canonical import canonical
from sync.protocol.entry import encode_entry, entry_fields, parse_envelope
from sync.protocol.errors import EntryError

CITY, TOWN, VILLAGE = "330782", "330782001", "330782001201"
CASE_ID = "330782001201-20251009-0001"
AT = "2025-10-09T09:30:00+08:00"
PREV = bytes(range(32))  # any hash will do: the entries checked here sit at seq 2
AFTER = [VILLAGE, 1]
SCHEMA = "entry.schema"
DROP = object()  # as a value in a change: remove the key

VALID: dict[str, dict[str, Any]] = {
    e.RECEIVED: {
        "case_id": CASE_ID,
        "after": None,
        "item_code": "B2",
        "applicant": {"name": "王小明", "id_no": "330782199001011234", "phone": "13800000000"},
        "materials": ["户口本", "身份证复印件"],
    },
    e.ACCEPTED: {"case_id": CASE_ID, "after": AFTER, "promised_days": 5},
    e.REJECTED: {"case_id": CASE_ID, "after": AFTER, "reason": "材料不全"},
    e.SUPPLEMENT_REQUESTED: {"case_id": CASE_ID, "after": AFTER, "missing": ["户口本"]},
    e.SUPPLIED: {"case_id": CASE_ID, "after": AFTER},
    e.SUSPENDED: {"case_id": CASE_ID, "after": AFTER, "reason": "等待鉴定"},
    e.RESUMED: {"case_id": CASE_ID, "after": AFTER},
    e.EXTENDED: {"case_id": CASE_ID, "after": AFTER, "reason": "情况复杂", "days": 10},
    e.FORWARDED: {"case_id": CASE_ID, "after": AFTER, "to": TOWN, "note": "请镇里受理"},
    e.TAKEN: {"case_id": CASE_ID, "after": [TOWN, 3]},
    e.COMPLETED: {"case_id": CASE_ID, "after": AFTER, "result": "approved", "note": "同意"},
    e.DELIVERED: {"case_id": CASE_ID, "after": AFTER, "method": "window"},
    e.FEE_ASSESSED: {"case_id": CASE_ID, "after": AFTER, "fee_fen": 1050},
    e.FEE_PAID: {"case_id": CASE_ID, "after": AFTER, "receipt": "R-0001", "fee_fen": 1050},
    e.RATED: {"case_id": CASE_ID, "after": AFTER, "score": 1, "comment": "很好"},
    e.WITHDRAWN: {"case_id": CASE_ID, "after": AFTER, "reason": "不办了"},
    e.RECTIFIED: {"case_id": CASE_ID, "after": AFTER, "note": "已向申请人致歉并改进告知"},
}
ALL_TYPES = sorted(VALID)
LATER_TYPES = [t for t in ALL_TYPES if t != e.RECEIVED]

Path = tuple[str, ...]  # where a value sits in a body: ("applicant", "name")


def _raw(entry_type: str, body: Any) -> bytes:
    """An entry at seq 2 of a village carrying `body`, which need not be an object."""
    if isinstance(body, dict):
        return encode_entry(VILLAGE, 2, PREV, AT, entry_type, body)
    envelope = {
        "v": 1,
        "origin": VILLAGE,
        "seq": 2,
        "prev": PREV.hex(),
        "at": AT,
        "type": entry_type,
        "body": body,
    }
    return canonical(envelope)


def _changed(entry_type: str, path: Path, value: object) -> dict[str, Any]:
    """The valid body of `entry_type` with the value at `path` replaced (or dropped)."""
    body = copy.deepcopy(VALID[entry_type])
    *parents, key = path
    target = body
    for name in parents:
        target = target[name]
    if value is DROP:
        target.pop(key, None)
    else:
        target[key] = value
    return body


def _accepts(entry_type: str, body: Any) -> None:
    raw = _raw(entry_type, body)
    assert parse_envelope(raw).type == entry_type
    assert entry_fields(raw)["body"] == body


def _refusal(entry_type: str, body: Any) -> str:
    """The reason_key of the refusal of `body` (fails the test if it is accepted)."""
    with pytest.raises(EntryError) as caught:
        parse_envelope(_raw(entry_type, body))
    reason_key = caught.value.params["reason_key"]
    assert isinstance(reason_key, str)
    return reason_key


# -- every type has a valid example, and it is accepted ---------------------------------------


def test_every_case_type_has_an_example_here() -> None:
    assert set(VALID) == set(e.TYPES)
    assert len(VALID) == 17


@pytest.mark.parametrize("entry_type", ALL_TYPES)
def test_valid_body_is_accepted(entry_type: str) -> None:
    _accepts(entry_type, VALID[entry_type])


@pytest.mark.parametrize("entry_type", ALL_TYPES)
def test_unknown_top_level_key_is_accepted(entry_type: str) -> None:
    # Current behaviour: case bodies are open to new keys (older nodes ignore them).
    _accepts(entry_type, _changed(entry_type, ("remark",), "extra"))


@pytest.mark.parametrize("body", [[], [CASE_ID], CASE_ID, None, 1])
@pytest.mark.parametrize("entry_type", [e.RECEIVED, e.TAKEN])
def test_body_that_is_not_an_object_is_refused(entry_type: str, body: object) -> None:
    # Today this is "entry.bad_field" (field "body"): the envelope refuses a non-object body
    # before the case check runs. Either key is fine across the refactor.
    assert _refusal(entry_type, body) in {"entry.schema", "entry.bad_field"}


# -- case_id -----------------------------------------------------------------------------------

BAD_CASE_IDS = [
    "",
    "330782001201-20251009",  # two parts
    "330782001201-20251009-0001-2",  # four parts
    "330782001201--20251009-0001",
    "33078200120-20251009-0001",  # node part of 11 digits
    "3307820012-20251009-0001",  # node part of 10 digits
    "330782001201-2025109-0001",  # date part of 7 digits
    "330782001201-202510090-0001",  # date part of 9 digits
    "330782001201-20251009-001",  # number part shorter than 4
    "330782001201-20251009-0123456789",  # number part longer than 9
    "330782001201-20251009-" + "9" * 20_000,  # a member's, more than an index row holds
    "330782001201-20251009-",
    "330782001201-20251009-000３",  # full-width digit in the number
    "330782001201-2025100９-0001",  # full-width digit in the date
    "３30782001201-20251009-0001",  # full-width digit in the node id
    "330782001201-20251009-0001\n",  # trailing newline
    " 330782001201-20251009-0001",
    "330782001201-20251009-0001 ",
    "330782001201-20251009-00a1",
    "330782001201-20251009-+001",
    "330782001201_20251009_0001",
    "330782001201/20251009/0001",
    3307820012010001,  # not a string
    None,
    [CASE_ID],
    {"id": CASE_ID},
]


@pytest.mark.parametrize("case_id", BAD_CASE_IDS)
@pytest.mark.parametrize("entry_type", [e.RECEIVED, e.ACCEPTED, e.TAKEN])
def test_malformed_case_id_is_refused(entry_type: str, case_id: object) -> None:
    assert _refusal(entry_type, _changed(entry_type, ("case_id",), case_id)) == SCHEMA


@pytest.mark.parametrize("entry_type", ALL_TYPES)
def test_missing_case_id_is_refused(entry_type: str) -> None:
    assert _refusal(entry_type, _changed(entry_type, ("case_id",), DROP)) == SCHEMA


@pytest.mark.parametrize(
    "case_id",
    [
        "330782001201-20251009-0001",
        "330782001201-20251009-12345",  # the number may be longer than 4 digits
        "330782001201-20251009-123456789",  # … up to 9
        "330782001-20251009-0001",  # a town's case
        "330782-20251009-0001",  # a city's case
        # Current behaviour: the date part is 8 ASCII digits, not checked as a calendar date.
        "330782001201-20251399-0001",
    ],
)
@pytest.mark.parametrize("entry_type", [e.RECEIVED, e.TAKEN])
def test_well_formed_case_id_is_accepted(entry_type: str, case_id: str) -> None:
    _accepts(entry_type, _changed(entry_type, ("case_id",), case_id))


# -- after -------------------------------------------------------------------------------------


@pytest.mark.parametrize("after", [AFTER, [TOWN, 1], [], "330782001201#1", 0, {}])
def test_after_on_received_must_be_null(after: object) -> None:
    assert _refusal(e.RECEIVED, _changed(e.RECEIVED, ("after",), after)) == SCHEMA


def test_after_may_be_absent_on_received() -> None:
    # Current behaviour: a missing `after` on case.received is taken as null (the module
    # docstring says every body has `after`).
    _accepts(e.RECEIVED, _changed(e.RECEIVED, ("after",), DROP))


@pytest.mark.parametrize("after", [DROP, None])
@pytest.mark.parametrize("entry_type", LATER_TYPES)
def test_after_is_required_after_the_first_event(entry_type: str, after: object) -> None:
    assert _refusal(entry_type, _changed(entry_type, ("after",), after)) == SCHEMA


BAD_AFTERS = [
    [],
    [VILLAGE],  # too short
    [VILLAGE, 1, 2],  # too long
    [VILLAGE, 0],  # seq 0
    [VILLAGE, -1],
    [VILLAGE, True],  # a bool is not a seq
    [VILLAGE, "1"],
    [VILLAGE, None],
    [1, VILLAGE],  # the wrong way round
    ["33078200120", 1],  # origin of 11 digits
    ["３３０７８２", 1],  # full-width digits
    [int(VILLAGE), 1],  # origin as a number
    [CASE_ID, 1],  # a case id is not a node id
    [None, 1],
    "330782001201",  # a string
    "330782001201#1",
    {"origin": VILLAGE, "seq": 1},
    1,
    True,
]


@pytest.mark.parametrize("after", BAD_AFTERS)
@pytest.mark.parametrize("entry_type", [e.ACCEPTED, e.TAKEN, e.RATED])
def test_malformed_after_is_refused(entry_type: str, after: object) -> None:
    assert _refusal(entry_type, _changed(entry_type, ("after",), after)) == SCHEMA


@pytest.mark.parametrize("after", [[CITY, 1], [TOWN, 42], [VILLAGE, 2**63 - 1]])
def test_well_formed_after_is_accepted(after: list[object]) -> None:
    _accepts(e.TAKEN, _changed(e.TAKEN, ("after",), after))


# -- text --------------------------------------------------------------------------------------

REQUIRED_TEXT: list[tuple[str, Path]] = [
    (e.RECEIVED, ("item_code",)),
    (e.RECEIVED, ("applicant", "name")),
    (e.REJECTED, ("reason",)),
    (e.SUSPENDED, ("reason",)),
    (e.EXTENDED, ("reason",)),
    (e.FEE_PAID, ("receipt",)),
]
OPTIONAL_TEXT: list[tuple[str, Path]] = [
    (e.RECEIVED, ("applicant", "id_no")),
    (e.RECEIVED, ("applicant", "phone")),
    (e.FORWARDED, ("note",)),
    (e.COMPLETED, ("note",)),
    (e.RATED, ("comment",)),
    (e.WITHDRAWN, ("reason",)),
]
ALL_TEXT = REQUIRED_TEXT + OPTIONAL_TEXT
BAD_TEXTS = [
    "",
    " ",
    "  ",
    "\u3000",  # ideographic space
    "\u3000\u3000",
    "\n\t",
    "x" * (e.MAX_TEXT + 1),
    "中" * (e.MAX_TEXT + 1),  # the limit counts characters
    5,
    0,
    True,
    ["text"],
    {"text": "x"},
]


def _ids(cases: list[tuple[str, Path]]) -> list[str]:
    return [f"{entry_type}:{'.'.join(path)}" for entry_type, path in cases]


@pytest.mark.parametrize("value", BAD_TEXTS)
@pytest.mark.parametrize(("entry_type", "path"), ALL_TEXT, ids=_ids(ALL_TEXT))
def test_bad_text_is_refused(entry_type: str, path: Path, value: object) -> None:
    assert _refusal(entry_type, _changed(entry_type, path, value)) == SCHEMA


KEYED_TEXT: list[tuple[str, Path]] = [  # indexed by the case projection: short
    (e.RECEIVED, ("item_code",)),
    (e.RECEIVED, ("applicant", "id_no")),
    (e.RECEIVED, ("applicant", "phone")),
]


@pytest.mark.parametrize("value", ["x" * (e.MAX_KEY + 1), "中" * 2000])  # (6,000 bytes)
@pytest.mark.parametrize(("entry_type", "path"), KEYED_TEXT, ids=_ids(KEYED_TEXT))
def test_keyed_text_longer_than_an_index_holds_is_refused(
    entry_type: str, path: Path, value: object
) -> None:
    assert _refusal(entry_type, _changed(entry_type, path, value)) == SCHEMA


@pytest.mark.parametrize(("entry_type", "path"), KEYED_TEXT, ids=_ids(KEYED_TEXT))
def test_keyed_text_up_to_its_bound_is_accepted(entry_type: str, path: Path) -> None:
    _accepts(entry_type, _changed(entry_type, path, "中" * e.MAX_KEY))


@pytest.mark.parametrize("value", [DROP, None])
@pytest.mark.parametrize(("entry_type", "path"), REQUIRED_TEXT, ids=_ids(REQUIRED_TEXT))
def test_required_text_must_be_present(entry_type: str, path: Path, value: object) -> None:
    assert _refusal(entry_type, _changed(entry_type, path, value)) == SCHEMA


@pytest.mark.parametrize("value", [DROP, None])
@pytest.mark.parametrize(("entry_type", "path"), OPTIONAL_TEXT, ids=_ids(OPTIONAL_TEXT))
def test_optional_text_may_be_absent_or_null(entry_type: str, path: Path, value: object) -> None:
    _accepts(entry_type, _changed(entry_type, path, value))


@pytest.mark.parametrize("value", ["x", " x ", "第一行\n第二行"])
@pytest.mark.parametrize(("entry_type", "path"), ALL_TEXT, ids=_ids(ALL_TEXT))
def test_good_text_is_accepted(entry_type: str, path: Path, value: str) -> None:
    _accepts(entry_type, _changed(entry_type, path, value))


FREE_TEXT = [case for case in ALL_TEXT if case not in KEYED_TEXT]


@pytest.mark.parametrize("value", ["x" * e.MAX_TEXT, "中" * e.MAX_TEXT])
@pytest.mark.parametrize(("entry_type", "path"), FREE_TEXT, ids=_ids(FREE_TEXT))
def test_text_up_to_its_bound_is_accepted(entry_type: str, path: Path, value: str) -> None:
    _accepts(entry_type, _changed(entry_type, path, value))


# -- lists of text -----------------------------------------------------------------------------

LISTS = [(e.RECEIVED, "materials"), (e.SUPPLEMENT_REQUESTED, "missing")]
BAD_LISTS = [
    DROP,
    None,
    "户口本",  # not a list
    {"户口本": 1},
    3,
    ["ok"] * (e.MAX_LIST + 1),
    [""],
    ["  "],
    ["\u3000"],
    ["ok", ""],
    ["x" * (e.MAX_TEXT + 1)],
    [5],
    [None],
    [True],
    [["户口本"]],
]


@pytest.mark.parametrize("value", BAD_LISTS)
@pytest.mark.parametrize(("entry_type", "key"), LISTS)
def test_bad_list_is_refused(entry_type: str, key: str, value: object) -> None:
    assert _refusal(entry_type, _changed(entry_type, (key,), value)) == SCHEMA


@pytest.mark.parametrize("value", [["户口本"], ["ok"] * e.MAX_LIST, ["x" * e.MAX_TEXT], ["a", "a"]])
@pytest.mark.parametrize(("entry_type", "key"), LISTS)
def test_good_list_is_accepted(entry_type: str, key: str, value: list[str]) -> None:
    _accepts(entry_type, _changed(entry_type, (key,), value))


def test_materials_may_be_empty() -> None:
    _accepts(e.RECEIVED, _changed(e.RECEIVED, ("materials",), []))


def test_missing_must_not_be_empty() -> None:
    body = _changed(e.SUPPLEMENT_REQUESTED, ("missing",), [])
    assert _refusal(e.SUPPLEMENT_REQUESTED, body) == SCHEMA


# -- integers ----------------------------------------------------------------------------------

# (type, key, lowest allowed, highest allowed or None for no upper bound)
INTEGERS: list[tuple[str, str, int, int | None]] = [
    (e.ACCEPTED, "promised_days", 0, 100_000),
    (e.EXTENDED, "days", 1, 10_000),
    (e.FEE_ASSESSED, "fee_fen", 1, None),
    (e.FEE_PAID, "fee_fen", 1, None),
    (e.RATED, "score", 1, 5),
]
INTEGER_IDS = [f"{t}:{k}" for t, k, _, _ in INTEGERS]


def _bad_integers(low: int, high: int | None) -> list[object]:
    bad: list[object] = [DROP, None, True, False, str(low), [low], {"n": low}, low - 1]
    if high is not None:
        bad.append(high + 1)
    return bad


@pytest.mark.parametrize(
    ("entry_type", "key", "value"),
    [(t, k, v) for t, k, low, high in INTEGERS for v in _bad_integers(low, high)],
)
def test_bad_integer_is_refused(entry_type: str, key: str, value: object) -> None:
    assert _refusal(entry_type, _changed(entry_type, (key,), value)) == SCHEMA


@pytest.mark.parametrize(("entry_type", "key", "low", "high"), INTEGERS, ids=INTEGER_IDS)
def test_integer_bounds_are_inclusive(
    entry_type: str, key: str, low: int, high: int | None
) -> None:
    for value in (low, high if high is not None else 2**63 - 1):
        _accepts(entry_type, _changed(entry_type, (key,), value))


@pytest.mark.parametrize("score", [0, 6, True])
def test_score_outside_one_to_five_is_refused(score: object) -> None:
    assert _refusal(e.RATED, _changed(e.RATED, ("score",), score)) == SCHEMA


@pytest.mark.parametrize("score", range(1, 6))
def test_every_score_of_one_to_five_is_accepted(score: int) -> None:
    _accepts(e.RATED, _changed(e.RATED, ("score",), score))


def test_integral_float_is_refused_where_an_integer_is_wanted() -> None:
    # `canonical` never writes a float, but another writer may send `3.0`.
    raw = _raw(e.RATED, _changed(e.RATED, ("score",), 3))
    assert raw.count(b'"score":3') == 1
    with pytest.raises(EntryError) as caught:
        parse_envelope(raw.replace(b'"score":3', b'"score":3.0'))
    assert caught.value.params["reason_key"] == SCHEMA, caught.value.params


# -- choices -----------------------------------------------------------------------------------

CHOICES = [(e.COMPLETED, "result", e.RESULTS), (e.DELIVERED, "method", e.DELIVERY_METHODS)]


@pytest.mark.parametrize(
    "value", [DROP, None, "", "APPROVED", "Window", "ok", "approved ", 1, True, ["approved"]]
)
@pytest.mark.parametrize(("entry_type", "key"), [(t, k) for t, k, _ in CHOICES])
def test_choice_outside_the_set_is_refused(entry_type: str, key: str, value: object) -> None:
    assert _refusal(entry_type, _changed(entry_type, (key,), value)) == SCHEMA


@pytest.mark.parametrize(
    ("entry_type", "key", "value"), [(t, k, v) for t, k, choices in CHOICES for v in choices]
)
def test_every_allowed_choice_is_accepted(entry_type: str, key: str, value: str) -> None:
    _accepts(entry_type, _changed(entry_type, (key,), value))


def test_the_allowed_choices() -> None:
    assert set(e.RESULTS) == {"approved", "denied"}
    assert set(e.DELIVERY_METHODS) == {"window", "mail", "sms"}


# -- forwarded.to ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "to",
    [
        DROP,
        None,
        "",
        "33078",
        "3307820",
        "3307820012011",
        "３３０７８２",
        "330782 ",
        "330782\n",
        int(CITY),
        [TOWN],
        CASE_ID,
    ],
)
def test_forward_to_must_be_a_node_id(to: object) -> None:
    assert _refusal(e.FORWARDED, _changed(e.FORWARDED, ("to",), to)) == SCHEMA


@pytest.mark.parametrize("to", [CITY, TOWN, VILLAGE])
def test_forward_to_any_tier_is_accepted(to: str) -> None:
    _accepts(e.FORWARDED, _changed(e.FORWARDED, ("to",), to))


# -- applicant ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "applicant",
    [
        DROP,
        None,
        "王小明",
        ["王小明"],
        {},  # name is required
        {"id_no": "330782199001011234"},
        {"name": "王小明", "address": "某村"},  # no other keys
        {"name": "王小明", "id_no": None, "phone": None, "email": None},
    ],
)
def test_bad_applicant_is_refused(applicant: object) -> None:
    assert _refusal(e.RECEIVED, _changed(e.RECEIVED, ("applicant",), applicant)) == SCHEMA


@pytest.mark.parametrize(
    "applicant",
    [
        {"name": "王小明"},
        {"name": "王小明", "id_no": None, "phone": None},
        {"name": "王小明", "phone": "13800000000"},
    ],
)
def test_applicant_with_a_name_is_accepted(applicant: dict[str, Any]) -> None:
    _accepts(e.RECEIVED, _changed(e.RECEIVED, ("applicant",), applicant))


@pytest.mark.parametrize(
    ("entry_type", "before"),
    [
        (e.FEE_ASSESSED, b'"fee_fen":'),
        (e.FEE_PAID, b'"fee_fen":'),
        (e.TAKEN, b'"after":\\["\\d+",'),
    ],
)
def test_integer_beyond_64_bits_is_refused(entry_type: str, before: bytes) -> None:
    # written by hand: `canonical` never would, and SQLite could not hold it in a projection
    raw = re.sub(
        b"(" + before + b")\\d+", rb"\g<1>9223372036854775808", _raw(entry_type, VALID[entry_type])
    )
    assert b"9223372036854775808" in raw
    with pytest.raises(EntryError) as caught:
        parse_envelope(raw)
    assert caught.value.params["reason_key"] == SCHEMA, caught.value.params


@pytest.mark.parametrize("value", [b'"\xff"', b'"\xe4\xb8"', b"1e999", b"-1e400"])
@pytest.mark.parametrize("entry_type", [e.RECEIVED, e.TAKEN])
def test_unknown_key_is_still_checked_as_json(entry_type: str, value: bytes) -> None:
    # unknown keys are let through, but they must be JSON the projections can read back
    body = dict(VALID[entry_type], extra=1)
    raw = _raw(entry_type, body).replace(b'"extra":1', b'"extra":' + value)
    with pytest.raises(EntryError) as caught:
        parse_envelope(raw)
    assert caught.value.params["reason_key"] == "entry.not_json"


@pytest.mark.parametrize("value", ["", "  ", 5, None])
@pytest.mark.parametrize(("entry_type", "path"), REQUIRED_TEXT, ids=_ids(REQUIRED_TEXT))
def test_another_key_does_not_change_the_verdict(
    entry_type: str, path: Path, value: object
) -> None:
    # a body with keys the schema does not know takes the slower, whole-body path: it must
    # refuse what the one-pass path refuses, for the same reason
    body = _changed(entry_type, path, value)
    assert _refusal(entry_type, body) == SCHEMA
    assert _refusal(entry_type, dict(body, later_key={"any": ["thing", 1]})) == SCHEMA


def test_a_repeated_key_counts_as_the_projections_read_it() -> None:
    # last one wins, as `entry_fields` reads it, whichever path decides
    raw = _raw(e.RATED, _changed(e.RATED, ("score",), 3)).replace(
        b'"score":3', b'"score":9,"score":3'
    )
    parse_envelope(raw)
    assert entry_fields(raw)["body"]["score"] == 3
