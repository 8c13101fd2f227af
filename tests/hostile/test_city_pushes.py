"""A member with its real key, running modified software, pushing straight to the city's
server (uvicorn in a thread, as `zhibao serve` runs it) on SQLite and on PostgreSQL
(`city_engine`): forged entries, runs out of order or skipping a seq, entries the city
holds sent again, one signed request sent twice, and a fork of its own log. Whatever it
sends, the city keeps each log whole (every seq once, chained), refuses or sets aside the
rest, and `log verify` finds nothing wrong.

The member is the town (the city's child: its pushes reach the city's ingest itself); the
network is the session's city and town (tests/conftest.py `make_topology`), copied. The
same attacks on a town: tests/sync/test_refusals.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sync.clock import local_date
from sync.protocol.entry import SignedEntry, encode_entry, signing_message
from sync.protocol.keys import Signer
from tests.conftest import MakeTopology
from tests.hostile.harness import Actor, server_id, sign_raw, stamp_now
from tests.hostile.network import ITEM, zj
from tests.support.servers import serve_in_thread
from tests.support.state import Snapshot, assert_whole, audit_problems, snapshot_home
from tests.support.topology import CITY, TOWN, Topology
from tests.support.wire import batch_of, encode_runs, error_of, tampered

pytestmark = pytest.mark.usefixtures("city_engine")  # every city here: SQLite, then PostgreSQL

FIRST = 3  # entries of its own the town writes before the first push


@pytest.fixture
def net(make_topology: MakeTopology) -> Topology:
    """City and town (the town's log not yet at the city), the town a few entries on."""
    net = make_topology([TOWN])
    town = Actor.of(net.home(TOWN))
    for n in range(FIRST):
        town.forge("test.note", {"n": n})
    return net


@pytest.fixture
def city(net: Topology) -> Iterator[str]:
    """The city's server: its URL."""
    with serve_in_thread(net.home(CITY)) as url:
        yield url


def _city(net: Topology) -> Snapshot:
    return snapshot_home(net.home(CITY))


def _result(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


def _next(actor: Actor, count: int, tag: str) -> list[SignedEntry]:
    """`count` more entries of the actor's own log, chained and signed (not yet pushed)."""
    return [actor.forge("test.note", {"n": n, "tag": tag}) for n in range(count)]


def _verified(net: Topology) -> None:
    """The city's store whole, and `log verify` finds nothing wrong."""
    assert_whole(_city(net))
    with net.open(CITY) as city:
        assert audit_problems(city.store) == []


def test_city_refuses_forged_entries_and_keeps_the_true_prefix(net: Topology, city: str) -> None:
    town = Actor.of(net.home(TOWN))
    held = _result(town.push_own(city))["applied"][TOWN]
    entries = _next(town, 4, "forged")
    before = _city(net)
    impostor = Signer.generate()  # well formed and chained, signed by another key
    forged = [e._replace(sig=impostor.sign(signing_message(e.hash))) for e in entries]
    answer = _result(town.push(city, forged))
    assert answer["applied"] == {} and answer["rejected"]
    flipped = [entries[0], tampered(entries[1], entries[1].raw.index(b'"n":') + 4), *entries[2:]]
    answer = _result(town.push(city, flipped))
    assert answer["applied"] == {TOWN: 1}  # the true entry below the flipped one
    assert [r["origin"] for r in answer["rejected"]] == [TOWN]
    after = _city(net)
    assert after.heads[TOWN] == (held + 1, entries[0].hash.hex())
    assert after.counts == {**before.counts, TOWN: held + 1}
    _verified(net)


def test_city_refuses_a_case_id_no_index_row_can_hold(net: Topology, city: str) -> None:
    """The town writes a case whose id runs to 20,000 digits (a PostgreSQL index row holds
    ~2,700 bytes; SQLite's would take it): refused at the door on either engine for what it
    is (`entry.schema`), the entries below it kept, nothing of it projected."""
    town = Actor.of(net.home(TOWN))
    held = _result(town.push_own(city))["applied"][TOWN]
    long_id = f"{TOWN}-20251020-" + "9" * 20_000
    town.forge("case.received", {"case_id": long_id, "after": None, "item_code": "A1",
                                 "materials": [], "applicant": {"name": "张三"}})  # fmt: skip
    answer = _result(town.push_own(city))
    assert answer["applied"] == {}
    [refused] = answer["rejected"]
    assert (refused["origin"], refused["reason_key"]) == (TOWN, "entry.schema")
    assert _city(net).heads[TOWN][0] == held
    with net.open(CITY) as node:
        assert node.store.query("SELECT count(*) FROM cases") == [(0,)]
        assert node.store.query("SELECT count(*) FROM quarantine") == [(0,)]
    _verified(net)


def test_city_keeps_entries_spaced_as_their_author_signed_them(net: Topology, city: str) -> None:
    """The town's real key signs entries as JSON any parser reads but zhibao never writes:
    whitespace before the object, inside it and after it. Ingest takes them (it reads JSON,
    not one spelling of it); so must the city's store on either engine, as they were
    signed (PostgreSQL's append check reads the same object), and `log verify` with them."""
    town = Actor.of(net.home(TOWN))
    held = _result(town.push_own(city))["applied"][TOWN]
    spacings = [lambda raw: b" \n\t\r" + raw, lambda raw: raw.replace(b'":', b'" : ') + b"\n"]
    signed = []
    for spaced in spacings:
        with town.store() as store, store.transaction():
            seq, prev = store.head(TOWN)
            raw = spaced(encode_entry(TOWN, seq + 1, prev, stamp_now(), "test.note", {"n": 1}))
            signed.append(sign_raw(town.signer, raw, TOWN, seq + 1, "test.note"))
            store.insert(signed[-1:], stamp_now())
    answer = _result(town.push_own(city))
    assert (answer["applied"], answer["rejected"]) == ({TOWN: 2}, [])
    with net.open(CITY) as node:
        assert node.store.entries(TOWN, after=held) == signed
    _verified(net)


# what a COPY's text format gives a meaning (column and row ends, escapes, NULL, the end of
# the data), and what JSON escapes: in a name, as the town's real key signs it
COPY_SPECIALS = ["tab\there", "two\nlines\r", "back\\slash", "\\N", "\\.", "\\", '"q"', "末尾\\"]


def test_city_projects_texts_a_copy_gives_meaning_to_as_they_were_signed(
    net: Topology, city: str
) -> None:
    """The town signs twenty cases (more than a projection's run sends one by one: on
    PostgreSQL they go in bulk) whose applicants' names hold what a COPY's text format
    reads as a column's or a row's end, an escape, NULL or the data's end (inside the
    events' and the rows' JSON columns; as whole values: tests/postgres/test_batched.py).
    Each case's event and row at the city hold the name as signed, nothing is set aside."""
    town = Actor.of(net.home(TOWN))
    at = stamp_now()
    names = {}
    for n in range(20):
        case_id = f"{TOWN}-{local_date(at):%Y%m%d}-{n + 1:04d}"
        names[case_id] = f"{COPY_SPECIALS[n % len(COPY_SPECIALS)]}{n}"
        town.forge("case.received", {"case_id": case_id, "after": None, "item_code": ITEM,
                                     "materials": [], "applicant": {"name": names[case_id]}},
                   at=at)  # fmt: skip
    answer = _result(town.push_own(city))
    assert answer["rejected"] == []
    with net.open(CITY) as node:
        node.store.catch_up()
        rows = node.store.query("SELECT case_id, applicant FROM cases")
        bodies = node.store.query("SELECT case_id, body FROM case_events")
        assert node.store.query("SELECT count(*) FROM quarantine") == [(0,)]
    assert {c: json.loads(a)["name"] for c, a in rows} == names
    assert {c: json.loads(b)["applicant"]["name"] for c, b in bodies} == names
    _verified(net)


def test_city_refuses_runs_out_of_order(net: Topology, city: str) -> None:
    town = Actor.of(net.home(TOWN))
    held = _result(town.push_own(city))["applied"][TOWN]
    entries = _next(town, 3, "late")
    before = _city(net)
    for order in ([1, 0, 2], [2, 1, 0], [1, 2]):  # swapped, reversed, the first missing
        runs = encode_runs([(TOWN, held + 1, [entries[i] for i in order])])
        answer = _result(town.push_bytes(city, runs))
        assert answer["applied"] == {} and answer["rejected"], order
    skipping = encode_runs([(TOWN, held + 2, entries[1:])])  # a run above a seq not held
    answer = _result(town.push_bytes(city, skipping))
    assert answer["applied"] == {}
    assert _city(net) == before
    _verified(net)


def test_city_stores_entries_sent_again_once(net: Topology, city: str) -> None:
    town = Actor.of(net.home(TOWN))
    held = _result(town.push_own(city))["applied"][TOWN]
    new = _next(town, 3, "again")
    whole = town.log()
    first = _result(town.push(city, whole))
    assert (first["applied"], first["duplicates"]) == ({TOWN: 3}, held)
    after_first = _city(net)
    second = _result(town.push(city, [*whole, *new]))  # every entry held, some twice over
    assert (second["applied"], second["duplicates"], second["rejected"]) == ({}, held + 6, [])
    assert _city(net) == after_first
    assert after_first.heads[TOWN] == (held + 3, new[-1].hash.hex())
    _verified(net)


def test_city_refuses_a_push_request_sent_twice(net: Topology, city: str) -> None:
    town = Actor.of(net.home(TOWN))
    request = town.request("/v1/push", batch_of(town.log()), to=server_id(city))
    first = request.send(city)
    assert _result(first)["applied"] == {TOWN: len(town.log())}
    after_first = _city(net)
    replayed = request.send(city)
    assert (replayed.status_code, error_of(replayed)) == (409, "request.replayed")
    assert _city(net) == after_first
    _verified(net)


def test_city_keeps_a_members_fork_as_evidence_and_freezes_its_log(
    net: Topology, city: str, tmp_path: Path
) -> None:
    town = Actor.of(net.home(TOWN))
    held = _result(town.push_own(city))["applied"][TOWN]
    [last] = town.log(after=held - 1)
    [before_last] = town.log(after=held - 2)[:1]
    raw = encode_entry(TOWN, held, before_last.hash, stamp_now(), "test.note", {"n": "other"})
    other = sign_raw(town.signer, raw, TOWN, held, "test.note")  # same seq, other bytes
    kept = _city(net)
    answer = _result(town.push(city, [other]))
    assert answer["applied"] == {} and [f["seq"] for f in answer["forks"]] == [held]
    after = _city(net)
    assert after.heads == kept.heads and after.counts == kept.counts
    assert [(o, s) for o, s, _ in after.forks] == [(TOWN, held)]
    assert [(f["origin"], f["seq"]) for f in zj(net.home(CITY), "status")["forks"]] == [
        (TOWN, held)
    ]
    frozen = _result(town.push(city, _next(town, 1, "after the fork")))  # chained on `last`
    assert frozen["applied"] == {} and "frozen" in frozen["rejected"][0]["reason"]
    assert _city(net) == after
    assert last.hash.hex() == after.heads[TOWN][1]
    _verified(net)
