"""One bad entry costs one entry, never the node: quarantine and who may write what.

Members attack with their own real keys: each hostile entry below is signed by an enrolled
node's real key (written into its own log as modified software would, then handed on by
`ingest`, as a push, pull, bundle or relay does), so every signature verifies.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sync import trust
from sync.audit import verify_log
from sync.ingest import ingest
from sync.node import Node
from sync.protocol.batch import decode_batch, encode_batch
from sync.protocol.entry import (
    SignedEntry,
    encode_entry,
    entry_hash,
    sign_entry,
    signing_message,
)
from sync.protocol.errors import StoreError
from sync.protocol.keys import Signer
from sync.status import node_status
from sync.store import Store
from tests.support.topology import (
    CITY,
    SHIPPED_CATALOGUE,
    TOWN,
    VILLAGE,
    VILLAGE_2,
    Topology,
    build_topology,
    hand_down,
    hand_up,
)
from tiers.catalogue import parse_catalogue
from tiers.city.reconcile import reconcile
from tiers.node import open_home
from tiers.published import get_item, list_items, publish_items

# its cities on SQLite, then on PostgreSQL: there in the soak run but for the tests marked
# pg_ci (a bounded sample in CI: tests/support/postgres.py soak_marks)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]

AT = "2026-11-20T10:00:00+08:00"


@pytest.fixture
def net(tmp_path: Path) -> Topology:
    return build_topology(tmp_path, [CITY, TOWN, VILLAGE, VILLAGE_2])


def forge(node: Node, entry_type: str, body: dict[str, Any], at: str = AT) -> SignedEntry:
    """What modified software at `node` writes: an entry signed with its real key, stored in
    its own log with none of the checks the CLI makes."""
    seq, prev = node.store.head(node.node_id)
    raw = encode_entry(node.node_id, seq + 1, prev, at, entry_type, body)
    entry = sign_entry(node.signer, raw)
    with node.store.transaction():
        node.store.insert([entry], AT)  # not strict: as a node that skips its own rules
    return entry


@pytest.fixture
def opened(net: Topology) -> Iterator[dict[str, Node]]:
    nodes = {n: open_home(net.home(n)) for n in (CITY, TOWN, VILLAGE, VILLAGE_2)}
    try:
        with nodes[CITY].store.transaction():
            publish_items(nodes[CITY], parse_catalogue(SHIPPED_CATALOGUE.read_bytes()))
        for child in (TOWN, VILLAGE, VILLAGE_2):
            _hand_down(nodes, child)
        yield nodes
    finally:
        for node in nodes.values():
            node.close()


def _hand_down(nodes: dict[str, Node], node_id: str) -> None:
    hand_down(nodes[node_id[: len(node_id) - 3]], nodes[node_id])


def quarantined(node: Node) -> list[tuple[str, int, str]]:
    return [(q["origin"], q["seq"], q["reason"]) for q in node.store.quarantined()]


# --- a projection that cannot use an entry -------------------------------------------------


class Fussy:
    """A lazy extension that raises on any entry whose body says "boom" (a projection bug
    that one crafted entry finds), and counts what it saw."""

    name = "fussy"
    version = 1
    ddl = "CREATE TABLE IF NOT EXISTS fussy (origin TEXT, seq INTEGER)"
    types: frozenset[str] | None = frozenset({"test.note"})
    lazy = True

    def __init__(self) -> None:
        self.pending: list[tuple[str, int]] = []

    def apply(self, store: Store, entry: SignedEntry, fields: dict[str, Any]) -> None:
        store.execute("INSERT INTO fussy VALUES (?, ?)", (entry.origin, entry.seq))
        self.pending.append((entry.origin, entry.seq))
        if fields["body"].get("boom"):
            self.pending.append(("boom", 0))

    def flush(self, store: Store) -> None:
        if ("boom", 0) in self.pending:
            raise OverflowError("date value out of range")
        self.pending.clear()

    def discard(self) -> None:
        self.pending.clear()


def _notes(signer: Signer, origin: str, bodies: list[dict[str, Any]]) -> list[SignedEntry]:
    out, prev = [], None
    for seq, body in enumerate(bodies, 1):
        entry = sign_entry(signer, encode_entry(origin, seq, prev, AT, "test.note", body))
        out.append(entry)
        prev = entry.hash
    return out


@pytest.mark.pg_ci
@pytest.mark.parametrize("deferring", [False, True], ids=["inline", "deferred"])
def test_projection_failure_costs_one_entry(tmp_path: Path, deferring: bool) -> None:
    signer = Signer.generate()
    store = Store(tmp_path / "node.db", extensions=[Fussy()], owner=CITY)
    if deferring:
        store.defer_projections()
    entries = _notes(signer, VILLAGE, [{"n": 1}, {"n": 2, "boom": True}, {"n": 3}])
    with store.transaction():
        store.insert(entries, AT)
    store.catch_up()
    seen = store.query("SELECT origin, seq FROM fussy ORDER BY seq")
    assert seen == [(VILLAGE, 1), (VILLAGE, 3)]
    [held] = store.quarantined()
    assert (held["origin"], held["seq"], held["reason"]) == (VILLAGE, 2, "projection.failed")
    assert "OverflowError" in held["detail"]
    assert store.unprojected() == 0
    more = _notes(signer, VILLAGE, [{"n": 1}, {"n": 2, "boom": True}, {"n": 3}, {"n": 4}])
    with store.transaction():  # later entries keep flowing and projecting
        store.insert(more[3:], AT)
    store.catch_up()
    assert store.query("SELECT max(seq) FROM fussy") == [(4,)]
    store.close()


@pytest.mark.pg_ci
def test_own_append_a_projection_cannot_use_is_refused(tmp_path: Path) -> None:
    signer = Signer.generate()
    store = Store(tmp_path / "node.db", extensions=[Fussy()], owner=VILLAGE)
    [ok, bad] = _notes(signer, VILLAGE, [{"n": 1}, {"n": 2, "boom": True}])
    with store.transaction():
        store.insert([ok], AT, strict=True)
    with pytest.raises(StoreError) as refused, store.transaction():
        store.insert([bad], AT, strict=True)
    assert refused.value.key == "store.refused_own"
    assert store.head(VILLAGE)[0] == 1  # nothing appended: the next entry chains to #1
    assert store.quarantined() == []
    store.close()


# --- who may write what --------------------------------------------------------------------


def _received(case_id: str) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "after": None,
        "item_code": "330782-WS-001",
        "applicant": {"name": "张三"},
        "materials": [],
    }


def test_case_of_another_village_is_never_created_by_a_claim(opened: dict[str, Node]) -> None:
    town, hostile, victim = opened[TOWN], opened[VILLAGE], opened[VILLAGE_2]
    case_id = f"{VILLAGE_2}-20261120-0001"
    claim = forge(hostile, "case.received", _received(case_id))
    assert hand_up(hostile, town)["rejected"] == []  # kept: part of its author's chain
    from tiers.cases.service import Applicant, receive

    real = receive(victim, "330782-WS-001", Applicant("李四"), [], at=AT)
    assert real == case_id
    assert hand_up(victim, town)["rejected"] == []
    from tiers.cases.projection import load_case

    state = load_case(town.store, case_id).state
    assert state is not None and (state.origin, state.holder) == (VILLAGE_2, VILLAGE_2)
    assert quarantined(town) == [(VILLAGE, claim.seq, "case.not_origin")]
    hand_up(town, opened[CITY])
    found = reconcile(opened[CITY], "2026-11")["findings"]
    kinds = {(f["kind"], f["node_id"]) for f in found}
    assert ("quarantined_entry", VILLAGE) in kinds
    assert not any(node == VILLAGE_2 for kind, node in kinds if kind == "custody_violation")
    assert verify_log(opened[CITY].store).ok


def test_catalogue_and_calendar_count_only_from_the_city(opened: dict[str, Node]) -> None:
    town, village = opened[TOWN], opened[VILLAGE]
    item = get_item(town.store, "330782-WS-001")
    assert item is not None
    from dataclasses import replace

    renamed = replace(item, name="村里改的名字")
    publish_items(village, [renamed])  # the village's own import: it counts there
    assert get_item(village.store, item.code) == item  # the city's item wins even there
    local = replace(item, code="330782-CUN-001", name="本村事项")
    publish_items(village, [local])
    assert get_item(village.store, local.code) == local
    hand_up(village, town)
    assert get_item(town.store, local.code) is None  # never at the town
    assert {r for _, _, r in quarantined(town)} == {"published.not_city"}
    assert len(list_items(town.store)) == len(list_items(opened[CITY].store))


def test_enrolment_by_a_node_that_is_not_the_parent_is_set_aside(
    opened: dict[str, Node],
) -> None:
    town, hostile = opened[TOWN], opened[VILLAGE]
    made_up = Signer.generate()
    body = trust.enrolment_body("330782001299", "假村", made_up.public.hex(), None)
    forge(hostile, trust.ENROLLED, body)
    forge(hostile, "test.note", {"after": "the enrolment"})
    result = hand_up(hostile, town)  # used to raise EnrolmentError inside ingest: HTTP 500
    assert result["rejected"] == [] and result["applied"][VILLAGE] == 2
    assert trust.public_key(town.store, "330782001299") is None
    assert [r for _, _, r in quarantined(town)] == ["enrol.not_parent"]
    assert node_status(town)["quarantined"][0]["origin"] == VILLAGE


def test_an_entry_far_in_the_future_is_refused_and_the_town_goes_on(
    opened: dict[str, Node],
) -> None:
    town, hostile = opened[TOWN], opened[VILLAGE]
    seq, prev = hostile.store.head(VILLAGE)
    at = "9999-12-31T23:59:59-12:00"
    body = _received(f"{VILLAGE}-99991231-0001")
    raw = encode_entry(VILLAGE, seq + 1, prev, at, "case.received", body)
    digest = entry_hash(raw)  # `sign_entry` would refuse it: signed by hand, as a hostile node
    sig = hostile.signer.sign(signing_message(digest))
    entry = SignedEntry(raw, sig, digest, VILLAGE, seq + 1, "case.received")
    result = ingest(
        town.store,
        decode_batch(encode_batch([entry])),
        me=TOWN,
        sender=VILLAGE,
        received_at=AT,
    )
    assert result.rejected and "9999" in result.rejected[0]["reason"]
    assert town.store.head(VILLAGE)[0] == seq
    assert verify_log(town.store).ok


def test_a_claim_on_a_case_never_becomes_what_the_holder_builds_on(
    opened: dict[str, Node],
) -> None:
    """A hostile village records `case.completed` on its neighbour's case (a custody
    violation at the town). The town's next event on the case must not name it as `after`:
    the neighbour never holds the hostile village's log and would wait for it for ever."""
    from tiers.cases import service
    from tiers.cases.projection import load_case

    town, hostile, victim = opened[TOWN], opened[VILLAGE], opened[VILLAGE_2]
    case_id = service.receive(victim, "330782-WS-001", service.Applicant("王五"), [], at=AT)
    service.forward(victim, case_id, at=AT)
    hand_up(victim, town)
    service.accept(town, case_id, at=AT)  # takes custody
    taken = load_case(town.store, case_id).ordered[-1].ref
    forge(hostile, "case.completed", {"case_id": case_id, "after": list(taken),
                                      "result": "denied"})  # fmt: skip
    hand_up(hostile, town)
    service.complete(town, case_id, "approved", at=AT)
    service.assess_fee(town, case_id, "45.00", at=AT)  # 票款分离: paid before delivery
    service.pay(town, case_id, "R-0001", at=AT)
    state = load_case(town.store, case_id).state
    assert state is not None and state.result == "approved" and state.holder == TOWN
    assert [v.origin for v in state.violations] == [VILLAGE]
    hand_down(town, victim)
    held = load_case(victim.store, case_id)
    assert held.waiting == [] and held.state is not None and held.state.status == "completed"
    service.deliver(victim, case_id, at=AT)  # the village hands the result over


def test_an_event_naming_what_its_author_cannot_hold_blames_its_author(
    opened: dict[str, Node],
) -> None:
    """Beyond the issue's list: a village names `[neighbour, 999999]` as the `after` of an
    event on the neighbour's case. It would wait for ever, and the city's reconcile blamed
    the neighbour for a gap in its log. A village can only ever hold its own, its
    ancestors' and (a town, a city) its subtree's entries: such an event is set aside."""
    from tiers.cases import service

    town, hostile, victim = opened[TOWN], opened[VILLAGE], opened[VILLAGE_2]
    case_id = service.receive(victim, "330782-WS-001", service.Applicant("赵六"), [], at=AT)
    hand_up(victim, town)
    forge(hostile, "case.supplied", {"case_id": case_id, "after": [VILLAGE_2, 999999]})
    hand_up(hostile, town)
    hand_up(town, opened[CITY])
    assert quarantined(town)[-1][2] == "case.after_unreachable"
    found = reconcile(opened[CITY], "2026-11")["findings"]
    assert not [f for f in found if f["kind"] == "gap" and f["node_id"] == VILLAGE_2]
    assert [f["node_id"] for f in found if f["kind"] == "quarantined_entry"] == [VILLAGE]


def test_an_event_naming_its_town_s_entry_that_never_was_is_set_aside_at_the_town(
    opened: dict[str, Node],
) -> None:
    """The town knows what it wrote: `[town, 999999]` from a village (its ancestor, so not
    unreachable) named an entry that never was; the town would have waited for it."""
    from tiers.cases import service

    town, hostile = opened[TOWN], opened[VILLAGE]
    case_id = service.receive(hostile, "330782-WS-001", service.Applicant("钱七"), [], at=AT)
    forge(hostile, "case.supplied", {"case_id": case_id, "after": [TOWN, 999999]})
    hand_up(hostile, town)
    seq = hostile.store.head(VILLAGE)[0]
    assert quarantined(town) == [(VILLAGE, seq, "case.after_unreachable")]
