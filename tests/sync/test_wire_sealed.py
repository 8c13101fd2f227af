"""The private wire (issue #10 item 5): what a wiretap on a village's line sees of a round.

Real servers on 127.0.0.1 port 0, real SQLite homes, and a loopback proxy that records
every byte it carries each way. A case received at the village (pushed up) and a case the
town received and forwarded down to the village (pulled down) carry distinctive names, ID
numbers and phone numbers; the capture is searched for them as bytes, in JSON escapes, and
inside every zstd frame that can be found in it (a batch is compressed: a tap would
decompress it). Sealed, none is there although the round moved both cases; with plain asked
explicitly on both sides, all are (so the search can fail).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import zstandard

from sync import trust
from sync.node import Node
from sync.protocol.errors import RefusedError
from sync.protocol.ids import parent_of
from sync.round import sync_round
from sync.service import ServerThread
from sync.testing.proxy import FaultProxy
from tests.conftest import MakeTopology
from tests.helpers_cases import ITEMS
from tests.support.servers import serve_in_thread
from tests.support.topology import (
    CITY,
    TOWN,
    TOWN_B,
    VILLAGE,
    VILLAGE_2,
    VILLAGE_B,
    Topology,
    create_node,
    hand_down,
)
from tests.support.wire import batch_of, error_of, push_request, sign_request
from tiers.cases import service
from tiers.node import open_home
from tiers.published import publish_items

VILLAGE_PERSON = service.Applicant("骆秀英", "33078219610203442X", "13957981234")
TOWN_PERSON = service.Applicant("稠城甄宝玉", "330782197705065518", "15867924680")
SECRETS = [
    value
    for person in (VILLAGE_PERSON, TOWN_PERSON)
    for value in (person.name, person.id_no, person.phone)
    if value is not None
]
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _forms(secret: str) -> list[bytes]:
    """The ways `secret` can appear in bytes: UTF-8, and JSON-escaped."""
    return [secret.encode(), json.dumps(secret).strip('"').encode()]


def _unpacked(capture: bytes) -> list[bytes]:
    """Every zstd frame that starts anywhere in `capture`, unpacked as far as it goes."""
    out: list[bytes] = []
    at = capture.find(ZSTD_MAGIC)
    while at >= 0:
        with suppress(zstandard.ZstdError):
            out.append(zstandard.ZstdDecompressor().decompressobj().decompress(capture[at:]))
        at = capture.find(ZSTD_MAGIC, at + 1)
    return out


def seen(capture: bytes) -> set[str]:
    """The secrets a wiretap finds in `capture`, as it is or inside its zstd frames."""
    texts = [capture, *_unpacked(capture)]
    return {s for s in SECRETS if any(form in text for form in _forms(s) for text in texts)}


def _held(node: Node, secret: str) -> bool:
    """`node` holds an entry whose bytes carry `secret` (it crossed the line)."""
    rows = node.store.query("SELECT raw FROM entries")
    return any(secret.encode() in bytes(raw) for (raw,) in rows)


@pytest.fixture
def net(make_topology: MakeTopology) -> Topology:
    """City, town, two villages; the catalogue came down; a case at the village to push
    up and one the town received and forwarded to the village to pull down."""
    topology = make_topology((CITY, TOWN, VILLAGE, VILLAGE_2))
    with topology.open(CITY) as city:
        publish_items(city, ITEMS)
    with topology.open(CITY) as city, topology.open(TOWN) as town:
        hand_down(city, town)
    with topology.open(TOWN) as town, topology.open(VILLAGE) as village:
        hand_down(town, village)
        service.receive(village, "B2", VILLAGE_PERSON)
        case_id = service.receive(town, "B2", TOWN_PERSON)
        service.forward(town, case_id, to=VILLAGE)
    return topology


@contextmanager
def tapped(url: str) -> Iterator[FaultProxy]:
    port = int(url.rsplit(":", 1)[1])
    with FaultProxy("127.0.0.1", port, record=True) as proxy:
        yield proxy


def _round_through_tap(net: Topology, url: str, *, plain: bool) -> tuple[bytes, bytes]:
    """One round of the village with the town through a recording proxy; the bytes each
    way, after checking that the round moved both cases."""
    with tapped(url) as proxy, net.open(VILLAGE) as village:
        summary = sync_round(village, proxy.url, plain=plain)
        assert summary.pushed >= 1 and summary.pulled >= 2, summary
        assert _held(village, TOWN_PERSON.name)  # pulled down: it crossed the line
        up, down = proxy.recorded("c2s"), proxy.recorded("s2c")
    with net.open(TOWN) as town:
        assert _held(town, VILLAGE_PERSON.name)  # pushed up
    assert len(up) > 1000 and len(down) > 1000
    return up, down


def test_sealed_round_shows_no_name_id_number_or_phone_on_the_wire(net: Topology) -> None:
    with net.open(VILLAGE) as village:
        assert not _held(village, TOWN_PERSON.name)
    with serve_in_thread(net.home(TOWN)) as url:
        up, down = _round_through_tap(net, url, plain=False)
    assert seen(up) == set() and seen(down) == set()
    assert b"x-zhibao-node: " + VILLAGE.encode() in up  # what the tap does see: who, when
    assert b"application/x-zhibao-sealed" in down


def test_plain_round_asked_for_on_both_sides_shows_them_all(net: Topology) -> None:
    with ServerThread(lambda: open_home(net.home(TOWN)), plain=True) as served:
        up, down = _round_through_tap(net, served.url, plain=True)
    village_side = {VILLAGE_PERSON.name, VILLAGE_PERSON.id_no, VILLAGE_PERSON.phone}
    town_side = {TOWN_PERSON.name, TOWN_PERSON.id_no, TOWN_PERSON.phone}
    assert seen(up) >= village_side and seen(down) >= town_side


def test_plain_push_to_a_sealed_server_is_refused_and_says_why(net: Topology) -> None:
    with serve_in_thread(net.home(TOWN)) as url, net.open(VILLAGE) as village:
        with pytest.raises(RefusedError) as refused:
            sync_round(village, url, plain=True)
        assert refused.value.params["code"] == "wire.plain_refused"
        assert "\n" not in str(refused.value) and "--plain" in str(refused.value)
        assert sync_round(village, url).pushed >= 1  # sealed, it goes through
    with net.open(TOWN) as town:
        assert _held(town, VILLAGE_PERSON.name)


def test_plain_round_warns(net: Topology) -> None:
    town = ServerThread(lambda: open_home(net.home(TOWN)), plain=True)
    with town as served, net.open(VILLAGE) as village:
        summary = sync_round(village, served.url, plain=True)
    assert any("clear" in w for w in summary.warnings)


def test_sealed_body_replayed_to_another_endpoint_or_by_another_node_is_refused(
    net: Topology,
) -> None:
    """A village's sealed push, taken off the line: re-signed by the village itself for
    /v1/pull (its own key: as a member could), and by its sibling village for /v1/push,
    it opens for neither. Sent again as it was, its nonce is refused. The town still takes
    the genuine push afterwards."""
    with net.open(VILLAGE) as village:
        entries = village.store.entries(VILLAGE)
        genuine = push_request(village, VILLAGE, batch_of(entries))
        elsewhere = sign_request(village.signer, VILLAGE, "/v1/pull", genuine.body)
    with net.open(VILLAGE_2) as sibling:
        other = sign_request(sibling.signer, VILLAGE_2, "/v1/push", genuine.body)
    with serve_in_thread(net.home(TOWN)) as url:
        for request in (elsewhere, other):
            answer = request.send(url)
            assert (answer.status_code, error_of(answer)) == (400, "wire.cannot_open")
        assert genuine.send(url).status_code == 200
        replayed = replace(genuine, opener=None).send(url)
        assert (replayed.status_code, error_of(replayed)) == (409, "request.replayed")
    with net.open(TOWN) as town:
        assert _held(town, VILLAGE_PERSON.name)


@pytest.fixture
def unsealed_town(topology: Topology) -> Topology:
    """A second town the city enrolled without a seal key, and its village (with one)."""
    with topology.open(CITY) as city:
        town = create_node(topology.base, TOWN_B, city.config.public_key)
        body = trust.enrolment_body(TOWN_B, "北苑", town.signer.public.hex(), None)
        city.append(trust.ENROLLED, body)
        village = create_node(topology.base, VILLAGE_B, city.config.public_key)
        seal = village.seal.public_key().public_bytes_raw().hex()
        body = trust.enrolment_body(VILLAGE_B, "前洪", village.signer.public.hex(), seal)
        town.append(trust.ENROLLED, body)
        hand_down(city, town)
        hand_down(town, village)
        topology.homes[TOWN_B], topology.homes[VILLAGE_B] = town.home, village.home
        town.close()
        village.close()
    assert parent_of(VILLAGE_B) == TOWN_B
    return topology


def test_client_refuses_to_push_to_a_server_without_a_seal_key(unsealed_town: Topology) -> None:
    net = unsealed_town
    with net.open(VILLAGE_B) as village:
        village.append("test.note", {"n": 1, "tag": "x"})
        with serve_in_thread(net.home(TOWN_B)) as url, pytest.raises(RefusedError) as refused:
            sync_round(village, url)
        said = str(refused.value)
        assert refused.value.key == "wire.peer_no_seal_key"
        assert "--seal-key" in said and "--plain" in said and "\n" not in said
        with ServerThread(lambda: open_home(net.home(TOWN_B)), plain=True) as served:
            assert sync_round(village, served.url, plain=True).pushed >= 1  # asked for


def test_sealed_server_refuses_a_node_without_a_seal_key(
    topology: Topology, tmp_path: Path
) -> None:
    """A village its town enrolled without a seal key: nothing can be sealed to it, so the
    town answers nothing but the reason (before reading the body)."""
    with topology.open(TOWN) as town:
        village = create_node(tmp_path, VILLAGE_2, town.config.root_key)
        body = trust.enrolment_body(VILLAGE_2, "后宅", village.signer.public.hex(), None)
        town.append(trust.ENROLLED, body)
        hand_down(town, village)
    try:
        with serve_in_thread(topology.home(TOWN)) as url:
            with pytest.raises(RefusedError) as refused:
                sync_round(village, url)
            assert refused.value.params["code"] == "wire.no_seal_key"
            assert "--seal-key" in str(refused.value)
    finally:
        village.close()


class AskingPlain(httpx.HTTPTransport):
    """A man in the middle who adds the (unsigned) "plain, please" header to every request."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["x-zhibao-wire"] = "plain"
        return super().handle_request(request)


def test_a_sealed_request_gets_a_sealed_answer_whatever_a_header_says(net: Topology) -> None:
    """Even a server started --plain answers a sealed request sealed: the header asking for
    plain is not signed, and a man in the middle could add it."""
    with (
        ServerThread(lambda: open_home(net.home(TOWN)), plain=True) as served,
        tapped(served.url) as proxy,
        net.open(VILLAGE) as village,
    ):
        summary = sync_round(village, proxy.url, transport=AskingPlain())
        assert summary.pushed >= 1 and summary.pulled >= 2, summary
        down = proxy.recorded("s2c")
    assert seen(down) == set()
