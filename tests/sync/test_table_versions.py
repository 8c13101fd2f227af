"""The extensions' tables, versioned (sync._tables), on both engines: a store made at one
version and opened by code declaring the next migrates once — an eager table by its declared
steps, its rows kept; a lazy projection remade from the log, equal to the log — a second open
runs nothing, a newer store is refused unchanged, a failed step changes nothing, and one
crafted entry costs one entry of a remade projection, never the open."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from sync.logstore import LogStore
from sync.protocol.entry import SignedEntry, encode_entry, sign_entry
from sync.protocol.errors import StoreError
from sync.protocol.keys import Signer
from sync.store import TABLES_KEY, Extension, StateTables, Store
from tests.support.postgres import store_env

pytestmark = pytest.mark.usefixtures("city_engine")  # each test on SQLite, then PostgreSQL

CITY, TOWN = "330782", "330782001"
AT = "2025-10-13T09:00:00+08:00"


def opened(where: Path, extensions: Sequence[Extension]) -> LogStore:
    """The test's store: node.db in `where`, or the test's PostgreSQL database."""
    url = store_env()
    if url is None:
        return Store(where / "node.db", extensions=extensions, owner=CITY)
    from sync.pg import PgStore

    return PgStore(url, extensions=extensions, owner=CITY)


@pytest.fixture
def store_at(tmp_path: Path) -> Iterator[Any]:
    """Opens the test's store with the extensions given; closes every store it opened."""
    stores: list[LogStore] = []

    def open_with(*extensions: Extension) -> LogStore:
        stores.append(opened(tmp_path, extensions))
        return stores[-1]

    yield open_with
    for store in stores:
        store.close()


def notes(origin: str, bodies: list[dict[str, Any]]) -> list[SignedEntry]:
    signer = Signer(origin.encode().ljust(32, b"k")[:32])
    out, prev = [], None
    for seq, body in enumerate(bodies, 1):
        out.append(sign_entry(signer, encode_entry(origin, seq, prev, AT, "test.note", body)))
        prev = out[-1].hash
    return out


def add(store: LogStore, entries: list[SignedEntry]) -> None:
    with store.transaction():
        store.insert(entries, AT)
    store.catch_up()


def rows(store: LogStore, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in store.query(sql)]


def version(store: LogStore, name: str) -> str | None:
    return store.get_meta(TABLES_KEY + name)


# --- an eager table of state, and its step -------------------------------------------------


class Notes(StateTables):
    name = "notes"
    version = 1
    ddl = "CREATE TABLE IF NOT EXISTS notes (k TEXT PRIMARY KEY, v TEXT NOT NULL);"


STEPS_RUN: list[int] = []


def _sizes(store: LogStore) -> None:
    STEPS_RUN.append(2)
    store.execute("ALTER TABLE notes ADD COLUMN size INTEGER NOT NULL DEFAULT 0")
    store.execute("UPDATE notes SET size = length(v)")


class Notes2(Notes):
    version = 2
    ddl = Notes.ddl.replace("NOT NULL)", "NOT NULL, size INTEGER NOT NULL DEFAULT 0)") + (
        "CREATE INDEX IF NOT EXISTS notes_size ON notes (size);"
    )
    steps = MappingProxyType({2: _sizes})


def _half_done(store: LogStore) -> None:
    store.execute("ALTER TABLE notes ADD COLUMN size INTEGER NOT NULL DEFAULT 0")
    raise ValueError("the step's own bug")


class NotesBroken(Notes2):
    steps = MappingProxyType({2: _half_done})


def _with_notes(store: LogStore) -> None:
    with store.transaction():
        store.execute("INSERT INTO notes (k, v) VALUES ('a', 'one'), ('b', 'three')")


def test_tables_an_older_eager_table_runs_its_step_once_and_keeps_its_rows(
    store_at: Any,
) -> None:
    STEPS_RUN.clear()
    _with_notes(store_at(Notes()))
    assert version(store_at(Notes()), "notes") is not None
    store = store_at(Notes2())
    assert STEPS_RUN == [2]
    assert rows(store, "SELECT k, v, size FROM notes ORDER BY k") == [
        ("a", "one", 3), ("b", "three", 5),
    ]  # fmt: skip
    assert version(store, "notes") == f"2:{_digest(Notes2.ddl)}"
    # a second open runs nothing: not even while another writer holds the table (on
    # PostgreSQL a CREATE INDEX IF NOT EXISTS would wait for it, on SQLite any write would)
    with store.transaction():
        store.execute("INSERT INTO notes (k, v, size) VALUES ('c', 'x', 1)")
        again = store_at(Notes2())
    assert STEPS_RUN == [2]
    assert len(rows(again, "SELECT k FROM notes")) == 3


def test_tables_a_newer_store_is_refused_and_left_as_it_is(store_at: Any) -> None:
    store = store_at(Notes2())
    _with_notes(store)
    before = (version(store, "notes"), rows(store, "SELECT k, v, size FROM notes ORDER BY k"))
    with pytest.raises(StoreError) as refused:
        store_at(Notes())
    assert refused.value.key == "store.tables_newer"
    assert "\n" not in str(refused.value) and "notes" in str(refused.value)
    again = store_at(Notes2())
    after = (version(again, "notes"), rows(again, "SELECT k, v, size FROM notes ORDER BY k"))
    assert after == before


# --- a lazy projection, remade from the log -----------------------------------------------


APPLIED: list[tuple[str, int]] = []


class Tally:
    """A lazy projection of test notes: one row per entry."""

    name = "tally"
    version = 1
    ddl = (
        "CREATE TABLE IF NOT EXISTS tally (origin TEXT NOT NULL, seq INTEGER NOT NULL, "
        "PRIMARY KEY (origin, seq));"
    )
    types: frozenset[str] | None = frozenset({"test.note"})
    lazy = True

    def apply(self, store: LogStore, entry: SignedEntry, fields: dict[str, Any]) -> None:
        APPLIED.append((entry.origin, entry.seq))
        store.execute("INSERT INTO tally (origin, seq) VALUES (?, ?)", (entry.origin, entry.seq))

    def flush(self, store: LogStore) -> None:
        pass

    def discard(self) -> None:
        pass


class Tally2(Tally):
    """Version 2 keeps each note's tag too (no step: remade from the log), and cannot use a
    note whose tag is not text — which version 1 took (what a crafted entry finds)."""

    version = 2
    ddl = Tally.ddl.replace("seq INTEGER NOT NULL,", "seq INTEGER NOT NULL, tag TEXT NOT NULL,")

    def __init__(self) -> None:
        self.bad = False

    def apply(self, store: LogStore, entry: SignedEntry, fields: dict[str, Any]) -> None:
        APPLIED.append((entry.origin, entry.seq))
        tag = fields["body"].get("tag", "")
        self.bad = self.bad or not isinstance(tag, str)
        store.execute(
            "INSERT INTO tally (origin, seq, tag) VALUES (?, ?, ?)",
            (entry.origin, entry.seq, str(tag)),
        )

    def flush(self, store: LogStore) -> None:
        if self.bad:  # (raised at flush: the whole chunk's savepoint goes back)
            raise TypeError("tag")

    def discard(self) -> None:
        self.bad = False


LATER: list[int] = []


class Later(Tally):
    """A lazy projection after Tally's, reading its table: remade with it."""

    name = "later"
    ddl = Tally.ddl.replace("tally", "later")

    def apply(self, store: LogStore, entry: SignedEntry, fields: dict[str, Any]) -> None:
        LATER.append(entry.seq)
        store.execute(
            "INSERT INTO later (origin, seq) SELECT origin, seq FROM tally "
            "WHERE origin = ? AND seq = ?",
            (entry.origin, entry.seq),
        )


def test_tables_an_older_projection_is_remade_from_the_log_once(store_at: Any) -> None:
    store = store_at(Tally(), Later())
    add(store, notes(TOWN, [{"tag": "a"}, {"tag": "b"}, {"tag": "c"}]))
    add(store, notes(CITY, [{"tag": "d"}]))
    later_before = rows(store, "SELECT origin, seq FROM later ORDER BY origin, seq")
    assert len(later_before) == 4
    APPLIED.clear()
    LATER.clear()
    store = store_at(Tally2(), Later())
    assert rows(store, "SELECT origin, seq, tag FROM tally ORDER BY origin, seq") == [
        (CITY, 1, "d"), (TOWN, 1, "a"), (TOWN, 2, "b"), (TOWN, 3, "c"),
    ]  # fmt: skip
    assert rows(store, "SELECT origin, seq FROM later ORDER BY origin, seq") == later_before
    assert len(APPLIED) == len(LATER) == 4  # each entry shown once, to both (later: too)
    assert version(store, "tally") == f"2:{_digest(Tally2.ddl)}"
    APPLIED.clear()
    store_at(Tally2(), Later())
    assert APPLIED == []  # the second open: nothing remade


class TallyIndexed(Tally):
    """Version 2 only adds an index: a step, so nothing is remade."""

    version = 2
    ddl = Tally.ddl + "CREATE INDEX IF NOT EXISTS tally_seq ON tally (seq);"
    steps = MappingProxyType({2: "CREATE INDEX IF NOT EXISTS tally_seq ON tally (seq);"})


def test_tables_a_projection_with_a_step_is_not_remade(store_at: Any) -> None:
    add(store_at(Tally()), notes(TOWN, [{"tag": "a"}, {"tag": "b"}]))
    APPLIED.clear()
    store = store_at(TallyIndexed())
    assert APPLIED == [] and rows(store, "SELECT seq FROM tally ORDER BY seq") == [(1,), (2,)]
    assert version(store, "tally") == f"2:{_digest(TallyIndexed.ddl)}"


def test_tables_a_new_projection_sees_the_entries_stored_before_it(store_at: Any) -> None:
    """(An extension added to a node that has projected for a while: made from the log, not
    left empty — what `tiers.case_facts.backfill` had to mend by hand.)"""
    add(store_at(Tally()), notes(TOWN, [{"tag": "a"}, {"tag": "b"}]))
    store = store_at(Tally(), Later())
    assert rows(store, "SELECT origin, seq FROM later ORDER BY seq") == [(TOWN, 1), (TOWN, 2)]


def test_tables_a_failed_step_leaves_the_whole_store_as_it_was(store_at: Any) -> None:
    store = store_at(Notes(), Tally())
    _with_notes(store)
    add(store, notes(TOWN, [{"tag": "a"}]))
    with pytest.raises(StoreError) as failed:
        store_at(Tally2(), NotesBroken())  # the remade tally first, then the step that fails
    assert failed.value.key == "store.tables_step"
    assert "notes" in str(failed.value) and "ValueError" in str(failed.value)
    again = store_at(Notes(), Tally())  # version 1 still: nothing was changed
    assert version(again, "notes") == f"1:{_digest(Notes.ddl)}"
    assert version(again, "tally") == f"1:{_digest(Tally.ddl)}"
    assert rows(again, "SELECT * FROM notes ORDER BY k") == [("a", "one"), ("b", "three")]
    assert rows(again, "SELECT * FROM tally") == [(TOWN, 1)]


def test_tables_a_crafted_entry_costs_one_entry_of_a_remade_projection(store_at: Any) -> None:
    """A member's note that version 1 took and version 2 cannot use: the remade projection
    sets it aside (quarantined, `projection.failed`) and holds every other; the store opens."""
    store = store_at(Tally())
    add(store, notes(TOWN, [{"tag": "a"}, {"tag": {"x": 1}}, {"tag": "c"}]))
    store = store_at(Tally2())
    assert rows(store, "SELECT origin, seq, tag FROM tally ORDER BY seq") == [
        (TOWN, 1, "a"), (TOWN, 3, "c"),
    ]  # fmt: skip
    assert [(q["origin"], q["seq"], q["reason"]) for q in store.quarantined()] == [
        (TOWN, 2, "projection.failed")
    ]
    add(store, notes(TOWN, [{"tag": "a"}, {"tag": {"x": 1}}, {"tag": "c"}, {"tag": "d"}])[3:])
    assert rows(store, "SELECT seq FROM tally ORDER BY seq") == [(1,), (3,), (4,)]


# --- the desk's table made before `what` ------------------------------------------------


def test_tables_desk_access_made_before_what_gets_it_by_its_step(store_at: Any) -> None:
    from tiers.desk import access

    store = store_at()
    with store.transaction():
        store.execute(
            "CREATE TABLE desk_access (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, "
            "name TEXT NOT NULL, case_id TEXT NOT NULL)"
        )
        store.execute("INSERT INTO desk_access (at, name, case_id) VALUES (?, 'a', 'c1')", (AT,))
    access.ensure(store)
    assert rows(store, "SELECT name, case_id, what FROM desk_access") == [("a", "c1", "")]
    assert version(store, "desk_access") == f"2:{_digest(access.DeskAccess.ddl)}"
    access.record(store, "bob", "c2", AT, "a.pdf")
    access.ensure(store)  # at its version: nothing runs
    assert access.recent(store, 10)[1] == 2


def _digest(ddl: str) -> str:
    from sync._tables import digest

    return digest(ddl)


def test_tables_every_extension_of_a_node_has_its_own_name() -> None:
    from sync.node_store import base_extensions
    from tiers.desk.access import DeskAccess
    from tiers.desk.users import DeskUsers
    from tiers.node import extensions

    named = [ext.name for ext in [*base_extensions(extensions()), DeskUsers(), DeskAccess()]]
    assert len(named) == len(set(named)) and all(json.dumps(n).isascii() for n in named)


# --- the tiers' own projections -----------------------------------------------------------


def _dump(store: LogStore, tables: Sequence[str]) -> dict[str, list[str]]:
    """Every row of `tables`; case_facts without its `changed` marks (which flush wrote a
    row, not what it holds: tiers.figure_cells)."""

    def rows(table: str) -> list[str]:
        got = store.query(f"SELECT * FROM {table}")
        if table == "case_facts":
            got = [row[:-1] for row in got]
        return sorted(repr(tuple(row)) for row in got)

    return {t: rows(t) for t in tables}


def test_tables_the_case_projection_remade_equals_what_it_held(tmp_path: Path) -> None:
    """A new version of the cases' tables at a city that holds a case's whole history: the
    cases and every lazy projection after them are remade from the log, equal to what they
    were (clock_leads aside: it keeps the latest `at` of each batch projected)."""
    from sync.node import open_node
    from tests.helpers_cases import forward_round_trip, network
    from tiers.cases.projection import CaseProjection
    from tiers.node import extensions

    class Cases2(CaseProjection):
        version = 2

    tables = ("cases", "case_events", "case_facts", "case_gaps", "monthly_reports",
              "case_materials", "complaints", "complaint_events")  # fmt: skip
    with network(tmp_path) as net:
        forward_round_trip(net)
        home, before = net.city.home, _dump(net.city.store, tables)
    assert before["cases"] and before["case_facts"] and len(before["case_events"]) > 5
    kept = [Cases2() if isinstance(ext, CaseProjection) else ext for ext in extensions()]
    node = open_node(home, extensions=kept)
    try:
        assert _dump(node.store, tables) == before
        assert version(node.store, "cases") == f"2:{_digest(Cases2.ddl)}"
    finally:
        node.close()


def test_tables_case_facts_at_version_1_gain_their_marks_by_the_step(tmp_path: Path) -> None:
    """A city whose figures' tables were made before kept month figures (version 1: no
    `changed` marks, no figure tables), opened by this code: the step adds the column to
    the rows held (they are not remade from the log: every mark is 0), the figure tables
    are made, and a month counted then kept is what a live count gives."""
    from tests.helpers_cases import forward_round_trip, network
    from tiers import figure_cells
    from tiers.case_facts import FigureProjection
    from tiers.figures import month_of
    from tiers.node import open_home
    from tiers.published import list_items, work_calendar

    with network(tmp_path) as net:
        forward_round_trip(net)
        home, store = net.city.home, net.city.store
        held = rows(store, "SELECT case_id, events FROM case_facts ORDER BY case_id")
        month = month_of(net.city.clock.now().date())
        with store.exclusive():  # as version 1 left it
            store.execute("DROP TABLE figure_cells")
            store.execute("DROP TABLE figure_periods")
            store.execute("DROP INDEX case_facts_changed")
            store.execute("ALTER TABLE case_facts DROP COLUMN changed")
            store.set_meta(TABLES_KEY + "case_facts", "1:made before the marks")
    assert held
    node = open_home(home)
    try:
        store = node.store
        assert version(store, "case_facts") == f"2:{_digest(FigureProjection.ddl)}"
        assert rows(store, "SELECT case_id, events FROM case_facts ORDER BY case_id") == held
        assert rows(store, "SELECT DISTINCT changed FROM case_facts") == [(0,)]
        today = node.clock.now().date()
        items = {item.code: item for item in list_items(store)}
        counted = figure_cells.period_cells(store, month, today, work_calendar(store), items)
        assert rows(store, "SELECT period FROM figure_periods") == [(month.label,)]
        assert counted == figure_cells._live(store, month, today, work_calendar(store), items)
        assert figure_cells.period_cells(store, month, today, work_calendar(store), items) == (
            counted
        )
    finally:
        node.close()
