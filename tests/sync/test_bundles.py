"""Bundles: village → town → city on files only, sealing, and every way a file is refused."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sync.audit import verify_log
from sync.bundles import (
    Imported,
    encode_bundle,
    export_bundle,
    import_bundle,
    import_receipt,
    open_payload,
    read_bundle,
)
from sync.node import Node
from sync.protocol.errors import BundleError
from sync.protocol.keys import Signer
from sync.status import node_status
from tests.support.state import snapshot
from tests.support.topology import (
    CITY,
    TOWN,
    VILLAGE,
    VILLAGE_2,
    append_notes,
    create_node,
    enrol,
)
from tests.support.topology import (
    SHIPPED_CATALOGUE as CATALOGUE,
)
from tiers.cases.service import Applicant, receive
from tiers.catalogue import parse_catalogue
from tiers.node import open_home
from tiers.published import list_items, publish_items

# its cities on SQLite, then on PostgreSQL: there in the soak run but for the tests marked
# pg_ci (a bounded sample in CI: tests/support/postgres.py soak_marks)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]

APPLICANT = "欧阳秀英"
PHONE = "13905791234"


@dataclass
class Net:
    city: Node
    town: Node
    village: Node


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    """A city, a town and a village, enrolled by their parents and introduced by nothing:
    the town and the village know only the city's pinned key and their own children."""
    city = create_node(tmp_path, CITY, None)
    town = create_node(tmp_path, TOWN, city.config.public_key)
    village = create_node(tmp_path, VILLAGE, city.config.public_key)
    net = Net(city, town, village)
    try:
        enrol(city, town)
        enrol(town, village)
        yield net
    finally:
        for node in (net.city, net.town, net.village):
            node.close()


def carry(sender: Node, recipient: Node, *, seal: bool = True) -> Imported:
    """Export (sealed, as by default), import at the recipient, and carry its receipt back
    to the sender."""
    data = export_bundle(sender, recipient.node_id, seal=seal).data
    done = import_bundle(recipient, data)
    import_receipt(sender, done.receipt_file)
    return done


def published(net: Net) -> None:
    """The city's catalogue, carried down to the town and to the village by bundle."""
    publish_items(net.city, parse_catalogue(CATALOGUE.read_bytes(), "catalogue.csv"))
    carry(net.city, net.town)
    carry(net.town, net.village)


def village_case(net: Net) -> str:
    return receive(net.village, "330782-WS-001", Applicant(APPLICANT, phone=PHONE), ["身份证"])


@pytest.mark.pg_ci
def test_bundle_village_to_town_to_city_with_receipts_back(net: Net) -> None:
    published(net)
    village_case(net)
    append_notes(net.village, 3)
    head = net.village.store.head(VILLAGE)[0]
    assert node_status(net.village)["acknowledged"].get(VILLAGE) is None

    up = carry(net.village, net.town)
    assert up.applied == {VILLAGE: head}
    assert net.town.store.head(VILLAGE) == net.village.store.head(VILLAGE)
    assert node_status(net.village)["acknowledged"][VILLAGE] == head

    append_notes(net.town, 2)
    carry(net.town, net.city)
    for origin in (TOWN, VILLAGE):
        assert net.city.store.head(origin) == net.town.store.head(origin)
    report = verify_log(net.city.store)
    assert report.ok, report.problems
    acknowledged = node_status(net.town)["acknowledged"]
    assert acknowledged == {TOWN: net.town.store.head(TOWN)[0], VILLAGE: head}


def test_bundle_export_skips_what_the_recipient_receipted(net: Net) -> None:
    published(net)
    append_notes(net.village, 2)
    carry(net.village, net.town)
    assert export_bundle(net.village, TOWN).header["entries"] == 0
    append_notes(net.village, 1, start=2)
    assert export_bundle(net.village, TOWN).header["counts"] == {VILLAGE: 1}
    assert (
        export_bundle(net.village, TOWN, full=True).header["entries"]
        == (net.village.store.head(VILLAGE)[0])
    )


def test_bundle_down_to_a_child_carries_the_catalogue(net: Net) -> None:
    items = parse_catalogue(CATALOGUE.read_bytes(), "catalogue.csv")
    publish_items(net.city, items)
    made = export_bundle(net.city, TOWN)
    assert made.header["counts"][CITY] == net.city.store.head(CITY)[0]  # enrolment + items
    runs = open_payload(read_bundle(made.data), [net.town.seal])
    kinds = {json.loads(raw)["type"] for run in runs for raw, _ in run.items}
    assert kinds == {"node.enrolled", "catalogue.item"}
    done = import_bundle(net.town, made.data)
    assert not done.already
    assert [i.code for i in list_items(net.town.store)] == sorted(i.code for i in items)

    import_receipt(net.city, done.receipt_file)
    assert export_bundle(net.city, TOWN).header["entries"] == 0  # the town's receipt says so
    publish_items(net.city, [replace(items[0], promised_days=items[0].promised_days + 1)])
    assert export_bundle(net.city, TOWN).header["counts"] == {CITY: 1}


def test_bundle_first_bundle_teaches_the_village_its_town_key(net: Net) -> None:
    publish_items(net.city, parse_catalogue(CATALOGUE.read_bytes(), "catalogue.csv"))
    carry(net.city, net.town)
    data = export_bundle(net.town, VILLAGE).data
    assert net.village.store.query("SELECT 1 FROM nodes WHERE node_id = ?", (TOWN,)) == []
    done = import_bundle(net.village, data)
    assert done.applied[CITY] > 0 and done.applied[TOWN] == 1
    assert len(list_items(net.village.store)) == 15


def test_bundle_sealed_round_trip_leaks_no_personal_data(net: Net) -> None:
    published(net)
    case_id = village_case(net)
    plain = export_bundle(net.village, TOWN, seal=False).data
    sealed = export_bundle(net.village, TOWN)  # sealed by default
    assert sealed.header["sealed"] and not read_bundle(plain).header["sealed"]
    opened = open_payload(read_bundle(plain), [net.town.seal])
    assert any(APPLICANT.encode() in raw for run in opened for raw, _ in run.items)
    for secret in (APPLICANT, PHONE, case_id):
        assert secret.encode() not in sealed.data
    with pytest.raises(BundleError) as refused:
        open_payload(read_bundle(sealed.data), [X25519PrivateKey.generate()])
    assert refused.value.key == "bundle.cannot_open"

    done = import_bundle(net.town, sealed.data)
    assert done.applied == {VILLAGE: net.village.store.head(VILLAGE)[0]}
    assert net.town.store.query("SELECT applicant FROM cases WHERE case_id = ?", (case_id,))


def test_bundle_sealed_to_another_key_is_refused(net: Net) -> None:
    published(net)
    append_notes(net.village, 2)
    other = X25519PrivateKey.generate().public_key().public_bytes_raw()
    data = export_bundle(net.village, TOWN, seal=True, seal_key=other).data
    before = snapshot(net.town.store)
    with pytest.raises(BundleError) as refused:
        import_bundle(net.town, data)
    assert refused.value.key == "bundle.cannot_open"
    assert snapshot(net.town.store) == before


def test_bundle_export_refuses_unrelated_nodes_and_unknown_seal_keys(net: Net) -> None:
    with pytest.raises(BundleError) as unrelated:
        export_bundle(net.village, VILLAGE_2)
    assert unrelated.value.key == "bundle.unrelated"
    with pytest.raises(BundleError) as unknown:
        export_bundle(net.town, CITY)  # the city's seal key has not come down yet
    assert unknown.value.key == "bundle.no_seal_key"
    assert export_bundle(net.town, CITY, seal=False).header["sealed"] is False


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


MUTATIONS = [
    pytest.param(lambda d: _flip(d, len(d) // 2), "bundle.forged", id="payload-byte"),
    pytest.param(lambda d: _flip(d, len(d) - 1), "bundle.forged", id="signature-byte"),
    pytest.param(
        lambda d: d.replace(b'"entries":', b'"entries";'), "bundle.malformed", id="header-garbled"
    ),
    pytest.param(
        lambda d: _flip(d, d.index(b'"created":"') + 13), "bundle.forged", id="header-byte"
    ),
    pytest.param(lambda d: d[: len(d) - 100], "bundle.truncated", id="truncated"),
    pytest.param(lambda d: d[:30], "bundle.truncated", id="truncated-header"),
    pytest.param(lambda d: d + b"\0", "bundle.malformed", id="trailing-bytes"),
    pytest.param(lambda d: b"PK\x03\x04" + d[4:], "bundle.not_bundle", id="not-a-bundle"),
]


@pytest.mark.parametrize(("mutate", "key"), MUTATIONS)
@pytest.mark.parametrize("seal", [False, True], ids=["plain", "sealed"])
def test_bundle_damaged_file_is_refused_whole(
    net: Net, mutate: object, key: str, seal: bool
) -> None:
    published(net)
    append_notes(net.village, 5)
    data = export_bundle(net.village, TOWN, seal=seal).data
    before = snapshot(net.town.store)
    with pytest.raises(BundleError) as refused:
        import_bundle(net.town, mutate(data))  # type: ignore[operator]
    assert refused.value.key == key
    assert "\n" not in str(refused.value)
    assert snapshot(net.town.store) == before
    held = net.village.store.head(VILLAGE)[0]
    assert import_bundle(net.town, data).applied == {VILLAGE: held}  # the intact one works


def test_bundle_for_another_node_is_refused(net: Net) -> None:
    published(net)
    append_notes(net.village, 2)
    data = export_bundle(net.village, TOWN).data
    before = snapshot(net.city.store)
    with pytest.raises(BundleError) as refused:
        import_bundle(net.city, data)
    assert refused.value.key == "bundle.wrong_recipient"
    assert TOWN in str(refused.value) and CITY in str(refused.value)
    assert snapshot(net.city.store) == before


def test_bundle_forged_by_another_key_is_refused(net: Net) -> None:
    published(net)
    append_notes(net.village, 2)
    entries = list(net.village.store.iter_all(VILLAGE))
    forged = encode_bundle(Signer.generate(), VILLAGE, TOWN, "2025-10-09T10:00:00+08:00", entries)
    before = snapshot(net.town.store)
    with pytest.raises(BundleError) as refused:
        import_bundle(net.town, forged)
    assert refused.value.key == "bundle.forged"
    assert snapshot(net.town.store) == before


def test_bundle_first_bundle_with_a_forged_signature_leaves_nothing(net: Net) -> None:
    publish_items(net.city, parse_catalogue(CATALOGUE.read_bytes(), "catalogue.csv"))
    carry(net.city, net.town)
    good = export_bundle(net.town, VILLAGE).data
    bundle = read_bundle(good)
    entries = [
        entry
        for run in open_payload(bundle, [net.village.seal])
        for entry in net.town.store.entries(run.origin, run.first - 1, len(run.items))
    ]
    forged = encode_bundle(Signer.generate(), TOWN, VILLAGE, bundle.header["created"], entries)
    before = snapshot(net.village.store)
    with pytest.raises(BundleError) as refused:
        import_bundle(net.village, forged)
    assert refused.value.key == "bundle.forged"  # the town's key was learnt, then rolled back
    assert snapshot(net.village.store) == before
    assert net.village.store.query("SELECT 1 FROM nodes WHERE node_id = ?", (TOWN,)) == []


def test_bundle_with_a_log_the_sender_may_not_relay_is_refused(net: Net, tmp_path: Path) -> None:
    published(net)
    sibling = create_node(tmp_path, VILLAGE_2, net.city.config.public_key)
    try:
        enrol(net.town, sibling)
        append_notes(sibling, 2)
        append_notes(net.village, 2)
        entries = [*net.village.store.iter_all(VILLAGE), *sibling.store.iter_all(VILLAGE_2)]
    finally:
        sibling.close()
    smuggled = encode_bundle(net.village.signer, VILLAGE, TOWN, "2025-10-09T10:00:00+08:00",
                             entries)  # fmt: skip
    before = snapshot(net.town.store)
    with pytest.raises(BundleError) as refused:
        import_bundle(net.town, smuggled)
    assert refused.value.key == "bundle.entry_refused"
    assert VILLAGE_2 in str(refused.value)
    assert snapshot(net.town.store) == before  # not even the village's own entries


def test_bundle_import_twice_is_a_noop(net: Net) -> None:
    published(net)
    append_notes(net.village, 4)
    data = export_bundle(net.village, TOWN).data
    first = import_bundle(net.town, data)
    after_first = snapshot(net.town.store)
    again = import_bundle(net.town, data)
    assert not first.already and again.already
    assert again.applied == {} and again.duplicates == first.entries
    assert snapshot(net.town.store) == after_first
    import_receipt(net.village, again.receipt_file)  # the rewritten receipt is as good
    assert node_status(net.village)["acknowledged"][VILLAGE] == net.village.store.head(VILLAGE)[0]


def test_bundle_receipt_for_another_node_is_refused(net: Net) -> None:
    published(net)
    append_notes(net.village, 1)
    done = import_bundle(net.town, export_bundle(net.village, TOWN).data)
    with pytest.raises(BundleError) as refused:
        import_receipt(net.city, done.receipt_file)
    assert refused.value.key == "bundle.receipt_not_ours"
    body = json.loads(done.receipt_file[5:])
    forged = done.receipt_file[:5] + json.dumps({**body, "sig": "00" * 64}).encode()
    with pytest.raises(BundleError) as bad:
        import_receipt(net.village, forged)
    assert bad.value.key == "bundle.receipt_refused"
    assert node_status(net.village)["acknowledged"] == {}


@pytest.mark.pg_ci
def test_bundle_fork_is_refused_and_kept_as_evidence(net: Net, tmp_path: Path) -> None:
    published(net)
    append_notes(net.village, 1)
    net.village.close()
    copy = tmp_path / "copy"
    shutil.copytree(net.village.home, copy)
    net.village = open_home(net.village.home)
    twin = open_home(copy)
    try:
        append_notes(net.village, 1, tag="original")
        append_notes(twin, 1, tag="copy")
        carry(net.village, net.town)
        forked = export_bundle(twin, TOWN, full=True).data
    finally:
        twin.close()
    with pytest.raises(BundleError) as refused:
        import_bundle(net.town, forked)
    assert refused.value.key == "bundle.entry_refused"
    assert [f["origin"] for f in net.town.store.forks()] == [VILLAGE]
