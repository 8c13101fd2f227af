"""The projections' writes on PostgreSQL are held and sent in runs (`PgStore.batched`): a
write's error surfaces late, yet it still costs the one entry that caused it; a read sees
the writes held before it; a block that fails sends nothing. Each test runs on both engines
(SQLite's `batched` holds nothing) and must give the same tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sync.logstore import LogStore
from sync.pg import PgStore
from sync.pg.dialect import Bulk
from sync.protocol.entry import SignedEntry, encode_entry, sign_entry
from sync.protocol.errors import StoreError
from sync.protocol.keys import Signer
from sync.store import Store
from tests.postgres.roles import GRANTS, as_role

CITY, VILLAGE = "330782", "330782001201"
AT = "2025-10-13T09:00:00+08:00"


class Tally:
    """A lazy extension keeping one row per tag (a PRIMARY KEY: a second entry naming a tag
    already held makes the database refuse the write), and, at flush, the count it reads
    back — which must include the writes this chunk made."""

    ddl = (
        "CREATE TABLE IF NOT EXISTS tally (tag TEXT PRIMARY KEY, seq INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS tally_seen (seq INTEGER PRIMARY KEY, rows INTEGER NOT NULL)"
    )
    name = "tally"
    version = 1
    types: frozenset[str] | None = frozenset({"test.note"})
    lazy = True

    def __init__(self) -> None:
        self.last = 0

    def apply(self, store: LogStore, entry: SignedEntry, fields: dict[str, Any]) -> None:
        store.execute(
            "INSERT INTO tally (tag, seq) VALUES (?, ?)", (fields["body"]["tag"], entry.seq)
        )
        self.last = entry.seq

    def flush(self, store: LogStore) -> None:
        [(rows,)] = store.query("SELECT count(*) FROM tally")
        store.execute(
            "INSERT OR REPLACE INTO tally_seen (seq, rows) VALUES (?, ?)", (self.last, rows)
        )

    def discard(self) -> None:
        self.last = 0


def _notes(signer: Signer, tags: list[str]) -> list[SignedEntry]:
    out, prev = [], None
    for seq, tag in enumerate(tags, 1):
        entry = sign_entry(signer, encode_entry(VILLAGE, seq, prev, AT, "test.note", {"tag": tag}))
        out.append(entry)
        prev = entry.hash
    return out


def test_a_members_entry_whose_write_the_database_refuses_costs_that_entry_alone(
    make_store: Any,
) -> None:
    """A village signs, with its own key, a note naming a tag an earlier note named: the
    projection's INSERT is refused by the database — on PostgreSQL only when the held run
    is sent, after later entries' writes were queued. Only that entry is set aside."""
    store = make_store(Tally(), owner=CITY)
    store.defer_projections()
    tags = ["a", "b", "c", "b", "d", "e"]  # seq 4 repeats seq 2's tag
    with store.transaction():
        store.insert(_notes(Signer.generate(), tags), AT)
    assert store.catch_up() == 0
    assert store.query("SELECT tag, seq FROM tally ORDER BY seq") == [
        ("a", 1), ("b", 2), ("c", 3), ("d", 5), ("e", 6)
    ]  # fmt: skip
    [held] = store.quarantined()
    assert (held["origin"], held["seq"], held["reason"]) == (VILLAGE, 4, "projection.failed")
    store.close()


def test_a_read_in_the_block_sees_the_writes_held_before_it(make_store: Any) -> None:
    store = make_store(Tally(), owner=CITY)
    store.defer_projections()
    with store.transaction():
        store.insert(_notes(Signer.generate(), ["a", "b", "c"]), AT)
    store.catch_up()
    assert store.query("SELECT seq, rows FROM tally_seen") == [(3, 3)]
    store.close()


def test_a_block_that_raises_sends_nothing_it_held(make_store: Any) -> None:
    store = make_store(Tally(), owner=CITY)
    with store.transaction():
        with pytest.raises(RuntimeError), store.transaction(), store.batched():
            store.execute("INSERT INTO tally (tag, seq) VALUES ('held', 1)")
            raise RuntimeError("the block fails before its end")
        store.execute("INSERT INTO tally (tag, seq) VALUES ('after', 2)")
    assert store.query("SELECT tag FROM tally") == [("after",)]
    store.close()


def test_writes_held_before_a_savepoint_survive_its_rollback(make_store: Any) -> None:
    """A savepoint opened inside a block (an extension's own nested transaction) must not
    take the block's earlier writes with it when it rolls back, nor keep its own."""
    store = make_store(Tally(), owner=CITY)
    with store.transaction(), store.batched():
        store.execute("INSERT INTO tally (tag, seq) VALUES ('before', 1)")
        with pytest.raises(RuntimeError), store.transaction():
            store.execute("INSERT INTO tally (tag, seq) VALUES ('inside', 2)")
            raise RuntimeError("rolled back")
        store.execute("INSERT INTO tally (tag, seq) VALUES ('after', 3)")
    assert store.query("SELECT tag FROM tally ORDER BY seq") == [("before",), ("after",)]
    store.close()


# A long run of one plain INSERT goes to PostgreSQL as a COPY into a table of the
# transaction's and one statement from it (sync.pg.dialect.Bulk, sync.pg.held); it must
# leave the rows a run of single INSERTs leaves on SQLite.
LONG = 40  # > sync.pg.held.BULK_ROWS


def test_plain_inserts_have_a_bulk_form_and_no_other_does(pg_url: str) -> None:
    store = PgStore(pg_url, extensions=[Tally()], owner=CITY)
    for sql in ("INSERT INTO tally (tag, seq) VALUES (?, ?)",
                "INSERT OR IGNORE INTO tally (tag, seq) VALUES (?,?)",
                "INSERT OR REPLACE INTO tally_seen (seq, rows) VALUES (?, ?)"):  # fmt: skip
        assert store._dialect.bulk(sql) is not None, sql
    for sql in ("INSERT INTO tally (tag, seq) VALUES (?, 1)",  # a literal: not plain
                "INSERT INTO tally (tag, seq) SELECT ?, ?",
                "INSERT INTO tally (tag, seq) VALUES (?, ?) ON CONFLICT(tag) DO NOTHING",
                ):  # fmt: skip
        assert store._dialect.bulk(sql) is None, sql
    store.close()


def test_a_members_long_run_with_one_refused_write_costs_that_entry_alone(
    make_store: Any,
) -> None:
    """A village signs, with its own key, forty notes; the twentieth repeats the fifth's tag
    and the thirtieth holds a real NUL (PostgreSQL keeps no NUL in text).
    On PostgreSQL the chunk's inserts went as one statement, which the database refuses
    whole: the entries are shown again in halves, and those two alone are set aside."""
    store = make_store(Tally(), owner=CITY)
    store.defer_projections()
    tags = [f"t{n:02d}" for n in range(1, LONG + 1)]
    tags[19], tags[29] = tags[4], "a\x00b"
    with store.transaction():
        store.insert(_notes(Signer.generate(), tags), AT)
    assert store.catch_up() == 0
    kept = store.query("SELECT seq FROM tally ORDER BY seq")
    refused = {20} | ({30} if isinstance(store, PgStore) else set())
    assert [s for (s,) in kept] == [s for s in range(1, LONG + 1) if s not in refused]
    assert {q["seq"] for q in store.quarantined()} == refused
    store.close()


# odd texts; the last five what a COPY's text format reads as a column's or a row's end, an
# escape, NULL, the end of the data
_ODD = [
    "",
    "it's",
    'a "quote"',
    "back\\slash",
    "\\u0000 as text",
    "受理；补正",
    "x" * 500,
    "tab\there",
    "two\nlines\r",
    "\\N",
    "\\.",
    "\\",
]


def _rows_after(store: LogStore, statement: str, rows: list[tuple[Any, ...]]) -> list[Any]:
    with store.transaction(), store.batched():
        for row in rows:
            store.execute(statement, row)
    return store.query("SELECT * FROM odd ORDER BY k")


@pytest.mark.parametrize(
    ("how", "repeated", "bulk"),
    [("", False, True), ("OR IGNORE ", True, True), ("OR REPLACE ", False, True),
     ("OR REPLACE ", True, False)],
)  # fmt: skip
def test_a_long_run_leaves_what_single_inserts_leave(
    tmp_path: Path, pg_url: str, how: str, repeated: bool, bulk: bool, monkeypatch: Any
) -> None:
    """NULL, bools (0 and 1, as SQLite keeps them), big ints, quotes, backslashes, CJK; rows
    held already (OR REPLACE: replaced); keys repeated within the run (OR IGNORE: the first
    stays; OR REPLACE: sent one by one, the server deciding which rows share a key): the
    same table on both engines, and the run sent as one statement where it can be."""
    made: list[bool] = []
    ready = Bulk.ready
    monkeypatch.setattr(Bulk, "ready", lambda self, rows: _seen(made, ready(self, rows)))

    class Odd(Tally):
        name = "odd"
        ddl = ("CREATE TABLE IF NOT EXISTS odd (k INTEGER PRIMARY KEY, t TEXT, n INTEGER, "
               "f INTEGER NOT NULL DEFAULT 7)")  # fmt: skip

    rows: list[tuple[Any, ...]] = []
    for k in range(LONG):  # each odd text once whole, then with a number after it
        text = _ODD[k] if k < len(_ODD) else _ODD[k % len(_ODD)] + str(k)
        rows.append((k % 25 if repeated else k, text, [None, True, False, 2**62, -5][k % 5]))
    statement = f"INSERT {how}INTO odd (k, t, n) VALUES (?, ?, ?)"
    lite = Store(tmp_path / "node.db", extensions=[Odd()], owner=CITY)
    pg = PgStore(pg_url, extensions=[Odd()], owner=CITY)
    if how == "":
        with pytest.raises(StoreError):  # a key twice in one run: refused, as one by one
            _rows_after(pg, statement, [*rows, rows[0]])
        assert pg.query("SELECT count(*) FROM odd") == [(0,)]
    else:
        for store in (lite, pg):  # rows held before the run
            store.execute("INSERT INTO odd (k, t, n) VALUES (3, 'old', 1), (900, 'kept', 2)")
    made.clear()
    assert _rows_after(lite, statement, rows) == _rows_after(pg, statement, rows)
    assert made == [bulk]
    lite.close()
    pg.close()


def _held_on_both(
    tmp_path: Path, pg_url: str, extension: type, held: list[Any], read: str
) -> list[list[tuple[Any, ...]]]:
    """`held` written in one batched block on SQLite, then on PostgreSQL (a store of each
    keeping `extension`'s tables): what `read` finds on each."""
    tables = []
    for store in (Store(tmp_path / "node.db", extensions=[extension()], owner=CITY),
                  PgStore(pg_url, extensions=[extension()], owner=CITY)):  # fmt: skip
        with store.transaction(), store.batched():
            for statement, row in held:
                store.execute(statement, row)
        tables.append(store.query(read))
        store.close()
    return tables


def test_two_runs_of_one_statement_in_one_send_keep_each_its_own_rows(
    tmp_path: Path, pg_url: str
) -> None:
    """Runs alternate within one send (an event, its case's row, the next event…): every
    run is copied before the first is read, so each has a table of its own — the second
    run's rows, replacing the first's, win as they do on SQLite."""

    class Odd(Tally):
        name = "odd"
        ddl = "CREATE TABLE IF NOT EXISTS odd (k INTEGER PRIMARY KEY, t TEXT, n INTEGER)"

    replace = "INSERT OR REPLACE INTO odd (k, t, n) VALUES (?, ?, ?)"
    other = "INSERT INTO odd (k, t, n) VALUES (?, ?, ?)"
    held = [(replace, (k, "first", 1)) for k in range(LONG)]
    held += [(other, (1000 + k, "between", 2)) for k in range(LONG)]
    held += [(replace, (k, "second", 3)) for k in range(0, LONG, 2)]
    tables = _held_on_both(tmp_path, pg_url, Odd, held, "SELECT * FROM odd ORDER BY k")
    assert tables[0] == tables[1]
    assert [t for _, t, _ in tables[1][:4]] == ["second", "first", "second", "first"]


def test_a_runs_table_is_emptied_before_each_use_and_made_by_each_transaction(
    pg_url: str,
) -> None:
    """Two sends of one statement in one transaction (a read between them sends what was
    held): the second's table holds its own rows alone. A transaction rolled back takes
    the table it made with it, one committed drops it: the next transaction makes its own
    (with the table's columns as they are then: one altered meanwhile is read as it is)."""
    store = PgStore(pg_url, extensions=[Tally()], owner=CITY)
    statement = "INSERT INTO tally (tag, seq) VALUES (?, ?)"
    store.execute("ALTER TABLE tally ALTER COLUMN seq TYPE text")
    with store.transaction(), store.batched():
        for k in range(LONG):
            store.execute(statement, (f"first-{k}", k))
        assert store.query("SELECT count(*) FROM tally") == [(LONG,)]
        for k in range(LONG):
            store.execute(statement, (f"second-{k}", k))
    assert store.query("SELECT count(*) FROM tally") == [(2 * LONG,)]
    with pytest.raises(RuntimeError), store.transaction(), store.batched():
        for k in range(LONG):
            store.execute(statement, (f"undone-{k}", k))
        store.query("SELECT 1")  # (sent: its table made, in this transaction)
        raise RuntimeError("rolled back")
    store.execute("ALTER TABLE tally ALTER COLUMN seq TYPE bigint USING seq::bigint")
    _run(store, statement, 2)  # (its table's seq: bigint now, not text from before)
    assert store.query("SELECT count(*) FROM tally WHERE tag LIKE '2-%'") == [(LONG,)]
    assert store.query("SELECT count(*) FROM tally") == [(3 * LONG,)]
    store.close()


def test_runs_into_tables_named_alike_never_share_a_table(tmp_path: Path, pg_url: str) -> None:
    """PostgreSQL folds unquoted names to lower case and cuts them at 63 bytes: runs into
    a table with a long name, or into one table spelled in two cases, each keep their rows,
    as on SQLite."""
    long = "a_projection_table_with_a_rather_long_name_for_a_test"

    class Alike(Tally):
        name = "alike"
        ddl = f"CREATE TABLE IF NOT EXISTS {long} (k INTEGER PRIMARY KEY, t TEXT)"

    replace = f"INSERT OR REPLACE INTO {long} (k, t) VALUES (?, ?)"
    upper = f"INSERT OR IGNORE INTO {long.upper()} (k, t) VALUES (?, ?)"
    held = [(replace, (k, "first")) for k in range(LONG)]
    held += [(upper, (100 + k, "second")) for k in range(LONG)]
    held += [(replace, (200 + k, "third")) for k in range(LONG)]
    read = f"SELECT t, count(*) FROM {long} GROUP BY t ORDER BY t"
    tables = _held_on_both(tmp_path, pg_url, Alike, held, read)
    assert tables[0] == tables[1] == [("first", LONG), ("second", LONG), ("third", LONG)]


def test_a_role_that_may_not_make_temporary_tables_sends_its_runs_one_by_one(
    pg_url: str, role: tuple[str, str]
) -> None:
    """A role given its rights by hand after PUBLIC's were revoked (docs/operator.md) may
    lack TEMPORARY: its long runs go as single statements, the same rows, and the
    projection never stalls on a right it does not need."""
    owner = PgStore(pg_url, extensions=[Tally()], owner=CITY)
    [(database,)] = owner.query("SELECT current_database()")
    try:
        grants = [f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC',
                  f'GRANT CONNECT ON DATABASE "{database}" TO {{role}}', *GRANTS]  # fmt: skip
        with as_role(owner, pg_url, role, grants, extensions=[Tally()], owner=CITY) as clerk:
            _run(clerk, "INSERT INTO tally (tag, seq) VALUES (?, ?)", 3)
        assert owner.query("SELECT count(*) FROM tally") == [(LONG,)]
    finally:
        owner.close()


def _seen(made: list[bool], ready: list[Any] | None) -> list[Any] | None:
    made.append(ready is not None)
    return ready


def test_a_table_with_bytes_is_not_sent_in_bulk(pg_url: str) -> None:
    """A BLOB column's run goes row by row (a bulk run carries ints and text), its bytes as
    they were."""

    class Blobs(Tally):
        name = "blobs"
        ddl = "CREATE TABLE IF NOT EXISTS blobs (k INTEGER PRIMARY KEY, b BLOB)"

    pg = PgStore(pg_url, extensions=[Blobs()], owner=CITY)
    statement = "INSERT INTO blobs (k, b) VALUES (?, ?)"
    assert pg._dialect.bulk(statement) is None
    with pg.transaction(), pg.batched():
        for k in range(LONG):
            pg.execute(statement, (k, bytes([k, 0, 255])))
    assert pg.query("SELECT b FROM blobs WHERE k = 7") == [(bytes([7, 0, 255]),)]
    pg.close()


def test_a_column_put_back_is_written_in_one_statement_again(pg_url: str, monkeypatch: Any) -> None:
    """While a table lacks a column its INSERT names, the run goes one by one (and fails);
    the column put back, the same process sends the run as one statement again."""
    made: list[bool] = []
    ready = Bulk.ready
    monkeypatch.setattr(Bulk, "ready", lambda self, rows: _seen(made, ready(self, rows)))
    store = PgStore(pg_url, extensions=[Tally()], owner=CITY)
    statement = "INSERT INTO tally (tag, seq) VALUES (?, ?)"
    store.execute("ALTER TABLE tally DROP COLUMN seq")
    with pytest.raises(StoreError) as gone:
        _run(store, statement, 0)
    assert gone.value.key == "store.schema"
    store.execute("ALTER TABLE tally ADD COLUMN seq INTEGER")
    _run(store, statement, 1)
    assert made == [True]
    assert store.query("SELECT count(*) FROM tally") == [(LONG,)]
    store.close()


def _run(store: LogStore, statement: str, n: int) -> None:
    with store.transaction(), store.batched():
        for k in range(LONG):
            store.execute(statement, (f"{n}-{k}", k))
