"""The envelope of a log entry (DESIGN §2): which raw entries `parse_envelope` accepts.

These tests pin behaviour across the body-check implementation (hand-written checks today,
msgspec Structs tomorrow): only accept vs refuse, the refusal's `reason_key` and, for
"entry.bad_field", which field it names. No message text, no private functions. The field
is not an error param of its own today, so `_names_field` compares the refusal's `reason`
with the message rendered from ("entry.bad_field", field=...), whatever its wording.
"""

from __future__ import annotations

from typing import Any

import pytest

from sync.clock import Clock, local_date
from sync.protocol import i18n
from sync.protocol.canonical import canonical
from sync.protocol.entry import MAX_ENTRY_BYTES, encode_entry, entry_fields, parse_envelope
from sync.protocol.errors import EntryError, ZhibaoError
from sync.protocol.keys import Signer

ORIGIN = "330782001201"
AT = "2025-10-09T09:30:00+08:00"
PREV = bytes(range(32))
PREV_HEX = PREV.hex()
TYPE = "test.thing"  # well formed, and no layer registers a body check for it
DROP = object()  # as a value in a change: remove the key


def _fields(**changes: object) -> dict[str, Any]:
    """A well-formed envelope (seq 2 of a village) with some fields replaced or dropped."""
    fields: dict[str, Any] = {
        "v": 1,
        "origin": ORIGIN,
        "seq": 2,
        "prev": PREV_HEX,
        "at": AT,
        "type": TYPE,
        "body": {"n": 1},
    }
    for key, value in changes.items():
        if value is DROP:
            del fields[key]
        else:
            fields[key] = value
    return fields


def _raw(**changes: object) -> bytes:
    return canonical(_fields(**changes))


def _refusal(raw: bytes, origin: str | None = None, seq: int | None = None) -> EntryError:
    with pytest.raises(EntryError) as caught:
        parse_envelope(raw, origin, seq)
    return caught.value


def _accepted(raw: bytes, origin: str | None = None, seq: int | None = None) -> Any:
    """The fields of `raw` once `parse_envelope` has accepted it."""
    parse_envelope(raw, origin, seq)
    return entry_fields(raw)


def _reason_key(raw: bytes, origin: str | None = None, seq: int | None = None) -> str:
    reason_key = _refusal(raw, origin, seq).params["reason_key"]
    assert isinstance(reason_key, str)
    return reason_key


def _names_field(error: EntryError, field: str) -> bool:
    """True when `error` refuses a malformed `field`."""
    params = error.params
    return bool(
        params["reason_key"] == "entry.bad_field"
        and params["reason"] == i18n.t("entry.bad_field", field=field)
    )


def _bad_field(raw: bytes) -> str:
    """The field a refusal of `raw` as "entry.bad_field" names."""
    error = _refusal(raw)
    assert error.params["reason_key"] == "entry.bad_field"
    names = [
        f for f in ("v", "origin", "seq", "prev", "at", "type", "body") if _names_field(error, f)
    ]
    assert len(names) == 1
    return names[0]


# -- accepted ----------------------------------------------------------------------------------


def test_well_formed_entries_are_accepted() -> None:
    assert _accepted(_raw()) == _fields()
    first = _fields(seq=1, prev=None)
    assert _accepted(canonical(first)) == first


def test_encode_entry_round_trips() -> None:
    raw = encode_entry(ORIGIN, 2, PREV, AT, TYPE, {"n": 1})
    assert raw == _raw()
    assert _accepted(raw, ORIGIN, 2) == _fields()


def test_refusal_is_an_entry_rejected_error() -> None:
    error = _refusal(_raw(v=2))
    assert error.key == "entry.rejected"
    assert error.params["reason_key"] == "entry.version"
    assert error.reason_key == "entry.version"  # params read as attributes


# -- the set of fields, JSON -------------------------------------------------------------------


@pytest.mark.parametrize("key", ["v", "origin", "seq", "prev", "at", "type", "body"])
def test_missing_field_is_refused(key: str) -> None:
    assert _reason_key(_raw(**{key: DROP})) == "entry.fields"


@pytest.mark.parametrize("key", ["sig", "hash", "x", "V"])
def test_extra_field_is_refused(key: str) -> None:
    assert _reason_key(_raw(**{key: 1})) == "entry.fields"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"{",
        b"{}x",
        b"\xff\xfe",
        b"{'v': 1}",
        _raw().replace(b'"n":1', b'"n":NaN'),
        _raw().replace(b'"n":1', b'"n":"\xff"'),  # invalid UTF-8 inside a string
        _raw().replace(b'"n":1', b'"n":"\xe4\xb8"'),  # truncated UTF-8 sequence
        _raw().replace(b'"n":1', b'"n":"\\ud800"'),  # lone surrogate
    ],
)
def test_not_json_is_refused(raw: bytes) -> None:
    assert _reason_key(raw) == "entry.not_json"


@pytest.mark.parametrize("value", [[], [_fields()], "entry", 1, None, True])
def test_top_level_not_an_object_is_refused(value: object) -> None:
    assert _reason_key(canonical(value)) == "entry.fields"


# -- at ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "at",
    [
        "2025-10-09T09:30:00",  # naive: no offset
        "2025-10-09",  # a date alone is naive too
        "",
        "yesterday",
        "2025-10-09T09:30:00+08:00 trailing",
        "2025-02-30T09:30:00+08:00",  # no 30 February
        "2025-13-09T09:30:00+08:00",
        "2025-10-09T25:00:00+08:00",
        "2025-10-09T09:30:00+24:00",
        1760000000,  # not a string
        None,
        [AT],
        {"at": AT},
    ],
)
def test_bad_at_is_refused(at: object) -> None:
    assert _bad_field(_raw(at=at)) == "at"


@pytest.mark.parametrize(
    "at",
    ["2025-10-09T09:30:00+08:00", "2025-10-09T09:30:00.123456+08:00", "2025-10-09T01:30:00+00:00"],
)
def test_good_at_is_accepted(at: str) -> None:
    assert _accepted(_raw(at=at))["at"] == at


# -- type and body -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry_type",
    [
        "Case.Received",
        "case.Received",
        "case",
        "case..x",
        ".case.x",
        "case.x.",
        "case.x-y",
        "case x.y",
        "1case.x",
        "case.1x",
        "_case.x",
        "",
        5,
        None,
        ["case.x"],
    ],
)
def test_bad_type_is_refused(entry_type: object) -> None:
    assert _bad_field(_raw(type=entry_type)) == "type"


@pytest.mark.parametrize("entry_type", ["test.thing", "a.b.c", "test2.thing_2", "x.y_"])
def test_unregistered_well_formed_type_with_an_object_body_is_accepted(entry_type: str) -> None:
    for body in ({}, {"n": 1}, {"nested": {"list": [1, "a", None]}}):
        fields = _accepted(_raw(type=entry_type, body=body))
        assert fields["type"] == entry_type and fields["body"] == body


@pytest.mark.parametrize("body", [[], [{"n": 1}], "body", 1, None, True])
def test_body_that_is_not_an_object_is_refused(body: object) -> None:
    assert _bad_field(_raw(body=body)) == "body"


def test_type_with_a_trailing_newline_is_refused() -> None:
    assert _bad_field(_raw(type="test.thing\n")) == "type"


# -- v, seq, origin, prev ----------------------------------------------------------------------


@pytest.mark.parametrize("version", [2, 0, -1, "1", True, None, [1]])
def test_unknown_version_is_refused(version: object) -> None:
    assert _reason_key(_raw(v=version)) == "entry.version"


def test_float_version_is_refused() -> None:
    raw = _raw().replace(b'"v":1', b'"v":1.0')
    assert _reason_key(raw) == "entry.version"


@pytest.mark.parametrize("seq", [0, -1, True, False, "1", None, [1]])
def test_bad_seq_is_refused(seq: object) -> None:
    # seq is checked before v and prev: a bad seq is "entry.bad_field" naming seq.
    assert _bad_field(_raw(seq=seq)) == "seq"


def test_float_seq_is_refused() -> None:
    raw = _raw().replace(b'"seq":2', b'"seq":2.0')
    assert _bad_field(raw) == "seq"


@pytest.mark.parametrize(
    "origin",
    [
        "",
        "33078",
        "3307820",
        "3307820012011",
        "３３０７８２",  # full-width digits
        "330782 ",
        "330782\n",
        "33078a",
        330782,
        None,
        [ORIGIN],
    ],
)
def test_bad_origin_is_refused(origin: object) -> None:
    assert _bad_field(_raw(origin=origin)) == "origin"


@pytest.mark.parametrize("origin", ["330782", "330782001", "330782001201"])
def test_origin_of_every_tier_is_accepted(origin: str) -> None:
    assert _accepted(_raw(origin=origin))["origin"] == origin


@pytest.mark.parametrize(
    ("seq", "prev"),
    [
        (2, None),  # only seq 1 has no prev
        (1, PREV_HEX),  # seq 1 has no prev
        (1, ""),
        (2, ""),
        (2, PREV_HEX[:-2]),  # short
        (2, PREV_HEX + "00"),  # long
        (2, PREV_HEX.upper()),  # uppercase hex
        (2, "g" * 64),
        (2, " " + PREV_HEX[1:]),
        (2, 0),
        (2, [PREV_HEX]),
    ],
)
def test_prev_that_does_not_fit_seq_is_refused(seq: int, prev: object) -> None:
    assert _bad_field(_raw(seq=seq, prev=prev)) == "prev"


def test_prev_with_a_trailing_newline_is_refused() -> None:
    assert _bad_field(_raw(prev=PREV_HEX + "\n")) == "prev"


# -- labels, size, integers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "seq"), [("330782001202", None), (None, 3), ("330782001", 2), (ORIGIN, 1)]
)
def test_entry_labelled_as_another_is_refused(origin: str | None, seq: int | None) -> None:
    assert _reason_key(_raw(), origin, seq) == "entry.mislabelled"


@pytest.mark.parametrize(("origin", "seq"), [(None, None), (ORIGIN, None), (None, 2), (ORIGIN, 2)])
def test_entry_labelled_as_itself_is_accepted(origin: str | None, seq: int | None) -> None:
    assert _accepted(_raw(), origin, seq) == _fields()


def _padded(size: int) -> bytes:
    """A well-formed entry of exactly `size` bytes."""
    bare = _raw(body={"pad": ""})
    raw = _raw(body={"pad": "x" * (size - len(bare))})
    assert len(raw) == size
    return raw


def test_entry_of_the_largest_size_is_accepted() -> None:
    parse_envelope(_padded(MAX_ENTRY_BYTES))


@pytest.mark.parametrize("raw", [_padded(MAX_ENTRY_BYTES + 1), b"x" * (MAX_ENTRY_BYTES + 1)])
def test_entry_over_the_largest_size_is_refused(raw: bytes) -> None:
    # The size is checked first: even bytes that are not JSON are refused as too big.
    assert _reason_key(raw) == "entry.too_big"


@pytest.mark.parametrize("n", [2**63, 2**64, -(2**63) - 1])
def test_canonical_cannot_encode_integers_beyond_64_bits(n: int) -> None:
    with pytest.raises(TypeError):
        encode_entry(ORIGIN, 2, PREV, AT, TYPE, {"n": n})


def test_integers_at_the_64_bit_limits_are_accepted() -> None:
    for n in (2**63 - 1, -(2**63)):
        assert _accepted(_raw(body={"n": n}))["body"] == {"n": n}


@pytest.mark.parametrize("seq", [2**63, 2**64, 2**70])
def test_seq_beyond_signed_64_bits_written_by_hand_is_refused(seq: int) -> None:
    # `canonical` never writes it and SQLite could not store it
    assert _bad_field(_raw().replace(b'"seq":2', b'"seq":%d' % seq)) == "seq"


@pytest.mark.parametrize("value", [b"9223372036854775808", b"-9223372036854775809", b"1.5", b"1e3"])
def test_body_number_canonical_would_not_write_is_refused(value: bytes) -> None:
    # a type no layer knows: its body is still only what `canonical` could have written
    assert _reason_key(_raw().replace(b'"n":1', b'"n":' + value)) == "entry.schema"


# -- `at` is read by the rule the projections use ------------------------------------------


@pytest.mark.parametrize("when", ["1970-01-01T08:00", "2025-10-09", "2099-12-31T23:59"])
def test_every_at_zhibao_writes_is_accepted_and_readable(when: str) -> None:
    at = Clock().stamp(when)
    assert _accepted(_raw(at=at))["at"] == at
    local_date(at)  # what the projections do with it


@pytest.mark.parametrize("when", ["1900-01-01", "1025-10-09T14:30", "9999-12-31", "2100-01-01"])
def test_at_outside_the_years_an_entry_may_name_is_refused_when_typed(when: str) -> None:
    with pytest.raises(ZhibaoError) as refused:
        Clock().stamp(when)
    assert refused.value.key == "time.range"


@pytest.mark.parametrize(
    "at",
    [
        "9999-12-31T23:59:59-12:00",  # once stopped every projection (OverflowError)
        "0001-01-01T00:00:00+14:00",
        "1900-01-01T09:00:00+08:05:43",  # what an --at before 1901 used to write
        "1969-12-31T23:59:59+00:00",
        "2100-01-01T00:00:00+00:00",
        "2100-01-01T08:00:00+08:00",
    ],
)
def test_at_outside_the_years_an_entry_may_name_is_refused(at: str) -> None:
    assert _reason_key(_raw(at=at)) == "entry.at_range"


@pytest.mark.parametrize("at", ["2025-10-09T14:30:00z", "2025-10-09T14:30:00+08"])
def test_at_the_projections_could_not_read_is_refused_or_readable(at: str) -> None:
    try:
        parse_envelope(_raw(at=at))
    except EntryError as exc:
        assert exc.params["reason_key"] == "entry.bad_field"
    else:
        local_date(at)


# -- bodies checked by a function ----------------------------------------------------------


def test_enrolment_with_a_small_order_key_is_refused_not_a_crash() -> None:
    from sync import trust

    body = trust.enrolment_body("330782001", "稠城", Signer.generate().public.hex(), None)
    body["public_key"] = "01" + "00" * 31  # the identity point: written by hand
    raw = encode_entry("330782", 2, PREV, AT, trust.ENROLLED, body)
    with pytest.raises(EntryError) as caught:
        parse_envelope(raw, "330782", 2)
    assert caught.value.params["reason_key"] == "entry.schema"
    assert "0100000000000000" in caught.value.params["reason"]  # which key, in words
