"""`Store.max_seqs` (the pull cursors) is the highest seq held per origin, whole or in part."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from sync.protocol.entry import SignedEntry
from sync.store import Store

ORIGINS = ["330782", "330782001", "330782001201", "330782001202", "330782002", "330783"]


def _entry(origin: str, seq: int) -> SignedEntry:
    raw = f'{{"origin":"{origin}","seq":{seq}}}'.encode()  # the store does not parse here
    return SignedEntry(raw, bytes(64), bytes(32), origin, seq, "test.thing")


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(ORIGINS), st.sets(st.integers(1, 300), min_size=1)))
def test_max_seqs_is_the_highest_seq_held_per_origin(held: dict[str, set[int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "node.db") as store:
        with store.transaction():
            for origin, seqs in held.items():  # held in part: any seqs, no head moves
                store.insert([_entry(origin, s) for s in sorted(seqs)], "now", whole=False)
        assert store.max_seqs() == {origin: max(seqs) for origin, seqs in held.items()}
        grouped = store.query("SELECT origin, MAX(seq) FROM entries GROUP BY origin")
        assert store.max_seqs() == dict(grouped)
