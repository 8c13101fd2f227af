from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.protocol.batch import decode_batch, encode_batch
from sync.protocol.canonical import canonical
from sync.protocol.entry import (
    SignedEntry,
    encode_entry,
    entry_fields,
    entry_hash,
    parse_envelope,
    sign_entry,
    verify_run,
)
from sync.protocol.errors import EnrolmentError, EntryError, RefusedError
from sync.protocol.keys import Signer, check_identity_key, has_small_order

AT = "2025-10-09T10:00:00+08:00"
SEED = bytes(range(32))


def _chain(signer: Signer, n: int, origin: str = "330782001") -> list[SignedEntry]:
    out: list[SignedEntry] = []
    prev = None
    for seq in range(1, n + 1):
        entry = sign_entry(signer, encode_entry(origin, seq, prev, AT, "test.note", {"n": seq}))
        out.append(entry)
        prev = entry.hash
    return out


def test_canonical_sorts_keys_and_refuses_floats() -> None:
    assert canonical({"b": 1, "a": "中"}) == '{"a":"中","b":1}'.encode()
    with pytest.raises(TypeError):
        canonical({"fee": 1.5})


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c, max_size=3),
        max_leaves=10,
    )
)
def test_canonical_round_trips_through_json(value: object) -> None:
    assert canonical(json.loads(canonical(value))) == canonical(value)
    assert canonical(entry_fields(canonical(value))) == canonical(value)  # the ingest reader


def test_canonical_refuses_integers_the_reader_cannot_take_back() -> None:
    with pytest.raises(TypeError, match="64 bits"):
        canonical({"n": 2**63})
    with pytest.raises(TypeError, match="64 bits"):
        canonical([-(2**63) - 1])


def test_sign_entry_hash_is_sha256_of_exact_bytes() -> None:
    entry = _chain(Signer(SEED), 1)[0]
    assert entry.hash == entry_hash(entry.raw)
    assert entry.seq == 1 and entry.origin == "330782001"


def test_verify_run_accepts_a_chain() -> None:
    signer = Signer(SEED)
    chain = _chain(signer, 5)
    result = verify_run(
        "330782001",
        [(e.raw, e.sig) for e in chain],
        head_seq=0,
        head_hash=None,
        public_key=signer.public,
    )
    assert result.error is None and [e.seq for e in result.accepted] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "mutate, accepted, bad_seq",
    [
        pytest.param(lambda items: [items[0], items[2], items[1]], [1], 3, id="reordered"),
        pytest.param(lambda items: [items[0], items[2]], [1], 3, id="dropped"),
        pytest.param(lambda items: [items[0], items[0], items[1]], [1], 1, id="duplicated"),
        pytest.param(
            lambda items: [
                items[0],
                (items[1][0].replace(b'"n":2', b'"n":9'), items[1][1]),
                items[2],
            ],
            [1],
            2,
            id="changed-byte-named",
        ),
        pytest.param(
            lambda items: [items[0], items[1], (items[2][0], Signer.generate().sign(b"x"))],
            [1, 2],
            3,
            id="foreign-signature-on-tip",
        ),
    ],
)
def test_verify_run_refuses_tampering(mutate, accepted: list[int], bad_seq: int) -> None:  # type: ignore[no-untyped-def]
    signer = Signer(SEED)
    items = [(e.raw, e.sig) for e in _chain(signer, 3)]
    result = verify_run(
        "330782001", mutate(items), head_seq=0, head_hash=None, public_key=signer.public
    )
    assert result.error is not None
    assert result.error.params["seq"] == bad_seq
    assert [e.seq for e in result.accepted] == accepted


def test_verify_run_changed_byte_at_tip_fails_signature() -> None:
    signer = Signer(SEED)
    items = [(e.raw, e.sig) for e in _chain(signer, 2)]
    items[1] = (items[1][0].replace(b'"n":2', b'"n":7'), items[1][1])
    result = verify_run("330782001", items, head_seq=0, head_hash=None, public_key=signer.public)
    assert [e.seq for e in result.accepted] == [1]
    assert result.error is not None and result.error.params["reason_key"] == "entry.signature"


def test_verify_run_tip_signature_vouches_for_chain_below() -> None:
    """One valid tip signature proves the bytes of every entry below (docs/protocol.md)."""
    signer = Signer(SEED)
    items = [(e.raw, e.sig) for e in _chain(signer, 3)]
    items[1] = (items[1][0], bytes(64))
    result = verify_run("330782001", items, head_seq=0, head_hash=None, public_key=signer.public)
    assert len(result.accepted) == 3 and result.error is None


def test_verify_run_looks_back_from_a_bad_tip_for_a_signature_that_proves_the_rest() -> None:
    signer = Signer(SEED)
    items = [(e.raw, e.sig) for e in _chain(signer, 4)]
    items[1] = (items[1][0], bytes(64))
    items[3] = (items[3][0], bytes(64))
    result = verify_run("330782001", items, head_seq=0, head_hash=None, public_key=signer.public)
    assert [e.seq for e in result.accepted] == [1, 2, 3]  # #3 vouches for #2
    assert result.error is not None and result.error.params["seq"] == 4


def test_verify_run_refuses_other_key() -> None:
    chain = _chain(Signer(SEED), 2)
    result = verify_run(
        "330782001",
        [(e.raw, e.sig) for e in chain],
        head_seq=0,
        head_hash=None,
        public_key=Signer.generate().public,
    )
    assert not result.accepted and result.error is not None
    assert result.error.params["reason_key"] == "entry.signature"


def test_parse_envelope_refuses_wrong_origin_label() -> None:
    entry = _chain(Signer(SEED), 1)[0]
    with pytest.raises(EntryError):
        parse_envelope(entry.raw, "330782002")


def test_batch_round_trip_keeps_exact_bytes() -> None:
    chain = _chain(Signer(SEED), 10)
    runs = decode_batch(encode_batch(chain))
    assert len(runs) == 1 and runs[0].first == 1
    assert runs[0].items == [(e.raw, e.sig) for e in chain]


@pytest.mark.parametrize("cut", [1, 10, -1, -64], ids=["head", "early", "last-byte", "sigs"])
def test_batch_truncated_is_refused(cut: int) -> None:
    data = encode_batch(_chain(Signer(SEED), 3))
    import zstandard

    plain = zstandard.ZstdDecompressor().decompress(data)
    broken = zstandard.ZstdCompressor().compress(plain[:cut])
    with pytest.raises(RefusedError):
        decode_batch(broken)


def test_batch_garbage_is_refused() -> None:
    with pytest.raises(RefusedError):
        decode_batch(b"not a batch at all")


IDENTITY = "01" + "00" * 31


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(IDENTITY, id="identity"),
        pytest.param("00" * 32, id="order-4"),
        pytest.param(
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", id="order-2"
        ),
        pytest.param(
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", id="order-8"
        ),
    ],
)
def test_small_order_keys_are_refused(key: str) -> None:
    assert has_small_order(bytes.fromhex(key))
    with pytest.raises(EnrolmentError) as caught:
        check_identity_key(key)
    assert key[:16] in str(caught.value)  # says which key (its `key` param once broke `t`)


def test_real_keys_are_not_small_order() -> None:
    for _ in range(20):
        assert not has_small_order(Signer.generate().public)
