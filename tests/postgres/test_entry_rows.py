"""Entries' bytes read in PostgreSQL's binary format (`entry_rows`): the reads that go by it
— a catch-up's chunk, `entry`, `entries`, a reader of its own (what `log verify`'s workers
read by) — give them back as stored, as bytes, whatever they hold. (Over HTTP, a member's
real key signing them: tests/hostile/test_city_pushes.py. That the format is binary is a
matter of speed, measured in bench/README.md, not asserted here.)"""

from __future__ import annotations

from sync.protocol.entry import SignedEntry, encode_entry, sign_entry
from tests.postgres.chains import AT, front, signer_for

TOWN = "330782001"
# what JSON escapes, what hex and escape formats spell, a NUL, beyond the BMP
TAGS = ["\x00", "\\x00", "\\\\", "\\", '"', "末尾", "\U0001f600", "\x7f", "", "tab\t\n"]


def _signed() -> list[SignedEntry]:
    signer, out, prev = signer_for(TOWN), [], None
    for seq, tag in enumerate(TAGS, start=1):
        out.append(sign_entry(signer, encode_entry(TOWN, seq, prev, AT, "test.note",
                                                   {"n": seq, "tag": tag})))  # fmt: skip
        prev = out[-1].hash
    return out


def test_every_read_of_an_entry_gives_its_bytes_as_stored(pg_url: str) -> None:
    entries = _signed()
    store = front(pg_url)
    try:
        with store.transaction():
            store.insert(entries, AT)
        assert store.entries(TOWN) == entries
        assert [store.entry(TOWN, e.seq) for e in entries] == entries
        sql = "SELECT seq, raw, sig, hash FROM entries WHERE origin = ? ORDER BY seq"
        held = [(e.seq, e.raw, e.sig, e.hash) for e in entries]
        reader = store.reader()
        try:
            for rows in (store.entry_rows(sql, (TOWN,)), reader.entry_rows(sql, (TOWN,))):
                assert rows == held
                assert {type(v) for row in rows for v in row[1:]} == {bytes}
        finally:
            reader.close()
        store.catch_up()  # (a chunk's rows: the projection reads each entry's fields)
        tags = store.query("SELECT seq, tag FROM seen ORDER BY seq")
        assert tags == [(n, tag) for n, tag in enumerate(TAGS, start=1)][1:]
        # (a text column holds no NUL on PostgreSQL: that entry alone is set aside)
        assert store.query("SELECT seq, reason FROM quarantine") == [(1, "projection.failed")]
    finally:
        store.close()
