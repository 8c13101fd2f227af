"""The replication engine's city side on PostgreSQL: a fork detected, decided and switched
(the projections made again equal to what SQLite makes of the same log), `log verify`
clean and then finding bytes changed behind the store's back, and a member signing two
histories with its real key. The city's store is a PgStore on the test's own database
(`city_on_pg` puts it there for every city home the test opens in process)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, cast

import apsw
import psycopg
import pytest

from sync import blob_index, fork_switch, forks, trust
from sync.audit import verify_log
from sync.ingest import IngestResult, ingest
from sync.node import Node
from sync.pg import PgStore
from sync.protocol.batch import decode_batch, encode_batch
from sync.protocol.entry import SignedEntry, encode_entry
from sync.protocol.errors import StoreError
from sync.store import Extension, Store
from tests.hostile.harness import Actor, sign_raw, stamp_now
from tests.postgres.chains import chain, signer_for
from tests.support.servers import serve_in_thread
from tests.support.topology import (
    CITY,
    TOWN,
    VILLAGE,
    Topology,
    append_notes,
    build_catalogued,
    build_topology,
    hand_up,
)
from tiers import node as tiers_node
from tiers.case_facts import FigureProjection
from tiers.cases import service
from tiers.cases.service import Applicant
from tiers.node import open_home
from tiers.store_check import BOOKKEEPING
from tiers.store_move import CACHES

ITEM = "330782-WS-001"  # accepted at a village


def _person(name: str) -> Applicant:
    return Applicant(name, phone="13805790001")


@pytest.fixture
def city_on_pg(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every city the test's helpers build keeps its store in `pg_url`'s database (as
    `zhibao init --store` makes it: tests.support.postgres.city_store)."""
    monkeypatch.setenv("ZHIBAO_STORE", pg_url)
    return pg_url


def _push(receiver: Node, entries: Sequence[SignedEntry], sender: str) -> IngestResult:
    batch = decode_batch(encode_batch(list(entries)))
    at = receiver.clock.stamp()
    return ingest(receiver.store, batch, me=receiver.node_id, sender=sender, received_at=at)


def _relay(net: Topology) -> None:
    with net.open(VILLAGE) as village, net.open(TOWN) as town, net.open(CITY) as city:
        assert not hand_up(village, town)["rejected"]
        assert not hand_up(town, city)["rejected"]


def _extensions() -> list[Extension]:
    return [trust.Trust(), forks.ForkDecisions(), blob_index.BlobState(), blob_index.BlobRefs(),
            *tiers_node.extensions()]  # fmt: skip


def _lazy_tables() -> list[str]:
    """The tables the lazy projections keep (what a fork switch makes again)."""
    scratch = apsw.Connection(":memory:")
    try:
        for ext in _extensions():
            if ext.lazy:
                scratch.execute(ext.ddl)
        return sorted(name for (name,) in scratch.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ) if name not in CACHES)  # fmt: skip
    finally:
        scratch.close()


def _rows(store: Any, table: str) -> list[tuple[Any, ...]]:
    """Every row of `table`, marks of when a row was written aside (store_check's)."""
    columns = "*"
    if any(name == table for name, _ in BOOKKEEPING):
        scratch = apsw.Connection(":memory:")
        try:
            scratch.execute(FigureProjection.ddl)
            columns = ", ".join(
                name for _, name, *_ in scratch.execute(f'PRAGMA table_info("{table}")')
                if (table, name) not in BOOKKEEPING
            )  # fmt: skip
        finally:
            scratch.close()
    return sorted(store.query(f'SELECT {columns} FROM "{table}"'), key=repr)


def _replayed_on_sqlite(city: Node, path: Path) -> Store:
    """The PostgreSQL city's log, in the order it stored it, into a SQLite store with the
    city's projections (its root key pinned, as `init` does)."""
    store = Store(path, extensions=_extensions(), owner=CITY)
    trust.pin_root(store, CITY, bytes.fromhex(city.config.root_key), city.config.name)
    rows = city.store.query(
        "SELECT raw, sig, hash, origin, seq, type, received_at FROM entries ORDER BY id"
    )
    runs: list[tuple[str, list[SignedEntry]]] = []  # as they came: origin and time of arrival
    for *row, received in rows:
        entry = SignedEntry(*row)
        if runs and (runs[-1][1][-1].origin, runs[-1][0]) == (entry.origin, received):
            runs[-1][1].append(entry)
        else:
            runs.append((received, [entry]))
    with store.transaction():
        for received, run in runs:
            store.insert(run, received)
    store.catch_up()
    return store


def test_pg_city_fork_detected_decided_switched_projections_equal_sqlite(
    city_on_pg: str, tmp_path: Path
) -> None:
    net = build_catalogued(tmp_path / "net")
    with net.open(VILLAGE) as village:
        service.accept(village, item_code=ITEM, applicant=_person("王秀英"))
    _relay(net)
    twin = Path(shutil.copytree(net.home(VILLAGE), tmp_path / "village-copy"))
    with net.open(VILLAGE) as village:
        service.accept(village, item_code=ITEM, applicant=_person("原件"))
    _relay(net)
    with open_home(twin) as copy:
        common, _ = copy.store.head(VILLAGE)
        service.accept(copy, item_code=ITEM, applicant=_person("副本"))
        service.accept(copy, item_code=ITEM, applicant=_person("副本二"))
        seq = common + 1  # where the two histories part
        copied = copy.store.entries(VILLAGE, common)
        with net.open(CITY) as city:
            held = city.store.hash_at(VILLAGE, seq)
            top = city.store.head(VILLAGE)[0]
            assert held is not None and top >= seq
            assert isinstance(city.store, PgStore)
            detected = _push(city, copied[:1], VILLAGE)
            assert [f["seq"] for f in detected.forks] == [seq]
            assert city.store.frozen() == {VILLAGE}
            assert city.store.forks()[0]["state"] == "unresolved"
            forks.resolve(city, VILLAGE, "other", "原件为旧备份")  # decided and switched
            assert city.store.frozen() == set() and city.store.unprojected() == 0
            assert city.store.head(VILLAGE) == (seq, copied[0].hash)
            [row] = city.store.forks()
            assert (row["held_hash"], row["other_hash"], row["state"]) == (
                copied[0].hash.hex(),
                held.hex(),
                "resolved",
            )
            dropped = fork_switch.abandoned(city.store)
            assert [a["seq"] for a in dropped] == list(range(seq, top + 1))
            assert dropped[0]["hash"] == held.hex()
            rest = _push(city, copied[1:], VILLAGE)  # the rest of the kept branch
            assert not rest.rejected and city.store.head(VILLAGE) == copy.store.head(VILLAGE)
            assert verify_log(cast(Store, city.store)).ok
            with closing(_replayed_on_sqlite(city, tmp_path / "replay.db")) as replay:
                tables = _lazy_tables()
                assert any(_rows(replay, t) for t in tables)  # cases were projected
                for table in tables:
                    assert _rows(city.store, table) == _rows(replay, table), table


def _city_with_logs(net: Topology) -> None:
    with net.open(VILLAGE) as village:
        append_notes(village, 20, tag="v")
    _relay(net)


def test_pg_city_log_verify_clean_then_finds_bytes_changed_in_the_database(
    city_on_pg: str, tmp_path: Path
) -> None:
    net = build_topology(tmp_path / "net")
    _city_with_logs(net)
    with net.open(CITY) as city:
        store = cast(Store, city.store)
        alone, apart = verify_log(store, workers=1), verify_log(store, workers=2, slice_size=4)
        assert alone.ok and apart.ok and alone.entries > 20
        assert apart.to_json() == alone.to_json()
    with psycopg.connect(city_on_pg, autocommit=True) as conn:  # the role is a superuser
        (raw,) = conn.execute(
            "SELECT raw FROM entries WHERE origin = %s AND seq = 5", (VILLAGE,)
        ).fetchone() or (None,)
        assert raw is not None and b'"tag":"v"' in raw
        altered = raw.replace(b'"tag":"v"', b'"tag":"w"')
        with pytest.raises(psycopg.Error):  # the trigger refuses it
            conn.execute("UPDATE entries SET raw = %s WHERE origin = %s AND seq = 5",
                         (altered, VILLAGE))  # fmt: skip
        conn.execute("ALTER TABLE entries DISABLE TRIGGER entries_no_update")
        conn.execute("UPDATE entries SET raw = %s WHERE origin = %s AND seq = 5",
                     (altered, VILLAGE))  # fmt: skip
        conn.execute("ALTER TABLE entries ENABLE TRIGGER entries_no_update")
    with net.open(CITY) as city:
        store = cast(Store, city.store)
        alone, apart = verify_log(store, workers=1), verify_log(store, workers=2, slice_size=4)
        assert not alone.ok
        assert (VILLAGE, 5, "changed") in {
            (p["origin"], p["seq"], p["kind"]) for p in alone.problems
        }
        assert apart.to_json() == alone.to_json()


def test_pg_city_hostile_member_forking_its_log_is_frozen_and_the_store_stays_sound(
    city_on_pg: str, tmp_path: Path
) -> None:
    """A town (a direct child of the city) signs two entries for one seq with its real key
    and pushes the second over HTTP after the first arrived: the city keeps the history it
    holds, records the fork and freezes the town's log; its village's log goes on."""
    net = build_topology(tmp_path / "net")
    _city_with_logs(net)
    actor = Actor.of(net.home(TOWN))
    mine = actor.forge("test.note", {"n": 100})  # its real next entry, signed with its key
    before = actor.log()[mine.seq - 2]
    raw = encode_entry(TOWN, mine.seq, before.hash, stamp_now(), "test.note", {"n": 666})
    other = sign_raw(actor.signer, raw, TOWN, mine.seq, "test.note")  # same seq, same key
    _relay(net)
    with net.open(CITY) as city:
        assert city.store.head(TOWN) == (mine.seq, mine.hash)
    with open_home(net.home(CITY)) as city, serve_in_thread(node=city) as url:
        answer = actor.push(url, [other])
        assert answer.status_code == 200, answer.text
    with net.open(CITY) as city:
        assert city.store.frozen() == {TOWN}
        assert city.store.head(TOWN) == (mine.seq, mine.hash)  # the history held stays
        [fork] = city.store.forks()
        assert (fork["origin"], fork["seq"], fork["other_hash"]) == (
            TOWN, mine.seq, other.hash.hex()
        )
        later = actor.forge("test.note", {"n": 101})
        refused = _push(city, [later], TOWN)  # frozen: nothing more of it comes in
        assert refused.applied.get(TOWN, 0) == 0 and city.store.head(TOWN)[0] == mine.seq
        assert verify_log(cast(Store, city.store)).ok
    with net.open(VILLAGE) as village:  # the rest of the network goes on
        append_notes(village, 2, tag="later")
    with net.open(VILLAGE) as village, net.open(TOWN) as town, net.open(CITY) as city:
        hand_up(village, town)
        hand_up(town, city)
        assert city.store.head(VILLAGE) == village.store.head(VILLAGE)
        assert city.store.head(TOWN)[0] == mine.seq


def test_pg_drop_branch_only_for_a_decided_fork_whole_and_moves_the_head(pg_url: str) -> None:
    """The database's side of a fork switch (migration 2): a delete goes through only for
    the origin and seq `zhibao.switch` names, with a fork decision held there, and only
    the branch whole; the head goes back to the entry below it."""
    village, town = chain(signer_for(VILLAGE), VILLAGE, 6), chain(signer_for(TOWN), TOWN, 2)
    with PgStore(pg_url) as store:
        with store.transaction():
            store.insert(village, stamp_now())
            store.insert(town, stamp_now())
        with pytest.raises(StoreError) as undecided, store.transaction():
            store.drop_branch(VILLAGE, 4)  # no decision at (village, 4)
        assert undecided.value.key == "store.pg_append_only"
        with store.transaction():
            store.execute(
                "INSERT INTO fork_decisions (origin, seq, author, author_seq, kept_hash, "
                "other_hash, reason, at) VALUES (?, 4, ?, 1, ?, ?, 'r', ?)",
                (VILLAGE, CITY, b"k" * 32, village[3].hash, stamp_now()),
            )
        for sql, params in (
            ("DELETE FROM entries WHERE origin = ? AND seq = 5", (VILLAGE,)),  # in part
            ("DELETE FROM entries WHERE origin = ? AND seq >= 3", (VILLAGE,)),  # below seq
            ("DELETE FROM entries WHERE origin = ?", (TOWN,)),  # another origin
        ):
            with pytest.raises(StoreError) as refused, store.transaction():
                store.query("SELECT set_config('zhibao.switch', ?, true)", (f"{VILLAGE}:4",))
                store.execute(sql, params)
            assert refused.value.key == "store.pg_append_only", sql
        assert store.head(VILLAGE) == (6, village[-1].hash)
        with store.transaction():
            store.drop_branch(VILLAGE, 4)
            assert store.query("SELECT current_setting('zhibao.switch', true)") == [("",)]
        assert store.head(VILLAGE) == (3, village[2].hash) and store.head(TOWN)[0] == 2
        assert [e.seq for e in store.entries(VILLAGE)] == [1, 2, 3]
        with pytest.raises(StoreError), store.transaction():  # the setting went with it
            store.execute("DELETE FROM entries WHERE origin = ? AND seq >= 3", (VILLAGE,))
        with store.transaction():  # the kept branch goes on from the head moved back
            store.insert(village[3:4], stamp_now())
        assert store.head(VILLAGE) == (4, village[3].hash)
