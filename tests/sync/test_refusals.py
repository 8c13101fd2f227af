"""Bad input is refused, and refused with the receiving node's state unchanged.

In-process: a real uvicorn server in a thread serves the town (or the city) from its home
in `tmp_path`; requests come from `PeerClient`, from `sync_round`, or are made by hand
(tests/support/wire.py) when a test must send exactly one thing. "Unchanged" is checked on
a snapshot of heads (seq and hash), entry counts per origin and fork records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import ExitStack
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import zstandard
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sync import receipts
from sync.audit import verify_log
from sync.client import PeerClient
from sync.clock import Clock, system_now
from sync.protocol.batch import MAGIC
from sync.protocol.entry import SignedEntry, signing_message
from sync.protocol.errors import LinkDownError, RefusedError
from sync.protocol.keys import Signer
from sync.protocol.messages import request_message
from sync.round import sync_round
from sync.server import MAX_BODY, NodeApp
from tests.conftest import Templates
from tests.support.servers import Switchboard, serve_in_thread, switchboard, zhibao
from tests.support.state import Snapshot, assert_whole, audit_problems, snapshot_home
from tests.support.topology import (
    CITY,
    TOWN,
    TOWN_B,
    VILLAGE,
    VILLAGE_2,
    VILLAGE_B,
    Topology,
    append_notes,
    copy_topology,
    create_node,
)
from tests.support.wire import (
    batch_of,
    encode_runs,
    error_of,
    garbled_sealed,
    push_request,
    sign_request,
    tampered,
)
from tiers.node import open_home

HELD = 5  # entries of the village the town already holds when a test starts
NEW = 4  # entries the village has written since


@pytest.fixture(scope="module")
def prepared(topology_templates: Templates, tmp_path_factory: pytest.TempPathFactory) -> Topology:
    """The network every test here starts from (built once, copied per test): the town
    holds HELD entries of the village (pushed by a real round), the village HELD + NEW."""
    net = copy_topology(
        topology_templates([VILLAGE, VILLAGE_2, VILLAGE_B]), tmp_path_factory.mktemp("prepared")
    )
    with serve_in_thread(net.home(TOWN)) as url, net.open(VILLAGE) as village:
        append_notes(village, HELD)
        assert sync_round(village, url).pushed == HELD
        append_notes(village, NEW, start=HELD)
    return net


@pytest.fixture
def net(prepared: Topology, tmp_path: Path) -> Topology:
    return copy_topology(prepared, tmp_path / "net")


@pytest.fixture(scope="module")
def board() -> Iterator[tuple[str, Switchboard]]:
    with switchboard() as served:
        yield served


@pytest.fixture
def town_url(net: Topology, board: tuple[str, Switchboard]) -> Iterator[str]:
    """The town of this test's network, served in a thread (shared by the module)."""
    url, switch = board
    with switch.serving(net.home(TOWN), url):
        yield url


def _new_entries(net: Topology, origin: str = VILLAGE, after: int = HELD) -> list[SignedEntry]:
    with net.open(origin) as node:
        return node.store.entries(origin, after)


def _push(net: Topology, url: str, batch: bytes, sender: str = VILLAGE) -> dict[str, Any]:
    with net.open(sender) as node, PeerClient(node, url) as client:
        return client.push(batch)


def _town(net: Topology) -> Snapshot:
    return snapshot_home(net.home(TOWN))


def _audit(net: Topology, node_id: str) -> list[dict[str, Any]]:
    """`log verify` at `node_id`: its problems (none when clean)."""
    with net.open(node_id) as node:
        return audit_problems(node.store)


def _z(plain: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(plain)


def _sig_flipped(entry: SignedEntry) -> SignedEntry:
    return entry._replace(sig=bytes([entry.sig[0] ^ 0x80]) + entry.sig[1:])


def _byte_at(entry: SignedEntry, marker: bytes) -> int:
    return entry.raw.index(marker) + len(marker)


# --- entries --------------------------------------------------------------------------

TAMPERINGS: list[object] = [
    pytest.param(lambda e: tampered(e, _byte_at(e, b'"n":')), id="body-digit"),
    pytest.param(lambda e: tampered(e, _byte_at(e, b'"seq":')), id="seq"),
    pytest.param(lambda e: tampered(e, _byte_at(e, b'"origin":"') + 11), id="origin"),
    pytest.param(lambda e: tampered(e, _byte_at(e, b'"prev":"')), id="prev"),
    pytest.param(lambda e: tampered(e, _byte_at(e, b'"at":"')), id="at"),
    pytest.param(lambda e: tampered(e, 0, mask=0x80), id="not-utf8"),
    pytest.param(lambda e: tampered(e, len(e.raw) - 1), id="not-json"),
]


@pytest.mark.parametrize("tamper", TAMPERINGS)
def test_push_refuses_entry_with_one_byte_flipped(
    net: Topology, town_url: str, tamper: Callable[[SignedEntry], SignedEntry]
) -> None:
    """Flipped first: nothing applies. Flipped third: the two before it apply, nothing after."""
    before = _town(net)
    entries = _new_entries(net)
    answer = _push(net, town_url, batch_of([tamper(entries[0]), *entries[1:]]))
    assert answer["result"]["applied"] == {}
    assert [r["origin"] for r in answer["result"]["rejected"]] == [VILLAGE]
    assert _town(net) == before

    bad = 2
    answer = _push(
        net, town_url, batch_of([*entries[:bad], tamper(entries[bad]), *entries[bad + 1 :]])
    )
    assert answer["result"]["applied"] == {VILLAGE: bad}
    after = _town(net)
    assert after.heads[VILLAGE] == (HELD + bad, entries[bad - 1].hash.hex())
    assert_whole(after)
    assert _audit(net, TOWN) == []  # every stored signature verifies on its own


def test_push_bad_signature_on_the_tip_is_refused(net: Topology, town_url: str) -> None:
    """The last entry of a run must prove itself: with its signature flipped, the entries
    below it (whose own signatures verify) apply, it and nothing after it does."""
    before = _town(net)
    entries = _new_entries(net)
    answer = _push(net, town_url, batch_of([*entries[:-1], _sig_flipped(entries[-1])]))
    assert answer["result"]["applied"] == {VILLAGE: len(entries) - 1}
    assert answer["result"]["rejected"][0]["seq"] == entries[-1].seq
    assert _town(net).heads[VILLAGE][0] == before.heads[VILLAGE][0] + len(entries) - 1
    assert _audit(net, TOWN) == []
    only = _push(net, town_url, batch_of([_sig_flipped(entries[-1])]))
    assert only["result"]["applied"] == {} and only["result"]["rejected"]


def test_push_bad_signature_below_a_valid_tip_is_vouched_by_the_chain(
    net: Topology, town_url: str
) -> None:
    """docs/protocol.md: the tip's valid signature proves the bytes of every entry below
    it, so only one Ed25519 check is made per run. A bad signature on an inner entry changes
    no content: the entries apply, and `log verify` counts it as vouched, not a problem."""
    entries = _new_entries(net)
    answer = _push(net, town_url, batch_of([entries[0], _sig_flipped(entries[1]), *entries[2:]]))
    assert answer["result"]["applied"] == {VILLAGE: len(entries)}
    assert _audit(net, TOWN) == []
    with net.open(TOWN) as town:
        assert verify_log(town.store).vouched == {VILLAGE: 1}


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed{s}") for s in range(3)])
def test_push_of_batch_flipped_on_the_wire_stores_only_true_entries(
    net: Topology, town_url: str, seed: int
) -> None:
    """One bit flipped anywhere in the compressed batch (zstd carries no checksum): the
    push is refused, or applies a prefix of the true log; never a byte the author did not
    sign. (The request itself is re-signed, as a bad line between signing and sending.)"""
    rng = random.Random(seed)
    with net.open(VILLAGE) as village:
        truth = {e.seq: e.hash for e in village.store.entries(VILLAGE)}
    batch = batch_of(_new_entries(net, after=0))
    for _ in range(6):
        flipped = bytearray(batch)
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        with contextlib.suppress(RefusedError):
            _push(net, town_url, bytes(flipped))
        after = _town(net)
        assert_whole(after)
        seq, digest = after.heads[VILLAGE]
        assert bytes.fromhex(digest) == truth[seq]
    # content is proved by the chain; an inner signature stored unverified is vouched for
    assert _audit(net, TOWN) == []


def _truncate_plain(cut: int) -> Callable[[bytes], bytes]:
    def make(batch: bytes) -> bytes:
        return _z(zstandard.ZstdDecompressor().decompress(batch)[:cut])

    return make


@pytest.mark.parametrize(
    "truncate",
    [
        pytest.param(lambda b: b[: len(b) - 1], id="frame-last-byte"),
        pytest.param(lambda b: b[: len(b) // 2], id="frame-half"),
        pytest.param(lambda b: b[:4], id="frame-header-only"),
        pytest.param(lambda b: b"", id="empty"),
        pytest.param(_truncate_plain(-1), id="last-signature-byte"),
        pytest.param(_truncate_plain(-64), id="last-signature"),
        pytest.param(_truncate_plain(len(MAGIC) + 10), id="inside-header"),
        pytest.param(_truncate_plain(len(MAGIC)), id="magic-only"),
    ],
)
def test_push_refuses_truncated_batch(
    net: Topology, town_url: str, truncate: Callable[[bytes], bytes]
) -> None:
    before = _town(net)
    with pytest.raises(RefusedError) as refused:
        _push(net, town_url, truncate(batch_of(_new_entries(net))))
    assert refused.value.code == "batch.malformed"
    assert _town(net) == before


@pytest.mark.parametrize(
    "order",
    [
        pytest.param([1, 0, 2, 3], id="first-two-swapped"),
        pytest.param([3, 2, 1, 0], id="reversed"),
        pytest.param([1, 2, 3], id="first-missing"),
    ],
)
def test_push_refuses_reordered_run(net: Topology, town_url: str, order: list[int]) -> None:
    """One run labelled HELD+1.. whose entries are not in that order: nothing applies."""
    before = _town(net)
    entries = _new_entries(net)
    answer = _push(net, town_url, encode_runs([(VILLAGE, HELD + 1, [entries[i] for i in order])]))
    assert answer["result"]["applied"] == {}
    assert answer["result"]["rejected"]
    assert _town(net) == before


def test_push_same_batch_twice_applies_once(net: Topology, town_url: str) -> None:
    batch = batch_of(_new_entries(net, after=0))  # HELD already there, NEW not yet
    first = _push(net, town_url, batch)
    assert first["result"] == {
        "applied": {VILLAGE: NEW},
        "duplicates": HELD,
        "rejected": [],
        "forks": [],
    }
    after_first = _town(net)
    second = _push(net, town_url, batch)
    assert second["result"] == {
        "applied": {},
        "duplicates": HELD + NEW,
        "rejected": [],
        "forks": [],
    }
    assert _town(net) == after_first
    assert after_first.heads[VILLAGE][0] == after_first.counts[VILLAGE] == HELD + NEW


def test_push_refuses_entries_of_unenrolled_node(net: Topology) -> None:
    """A village the town never enrolled: its entries (relayed by the town) are refused."""
    with net.open(CITY) as city:
        root = city.config.public_key
    stranger = create_node(net.base / "strangers", "330782001299", root)
    with stranger:
        append_notes(stranger, 3)
        entries = stranger.store.entries(stranger.node_id)
    with serve_in_thread(net.home(CITY)) as city_url:
        with net.open(TOWN) as town:
            sync_round(town, city_url)  # the city now holds the town's log and its villages'
        before = snapshot_home(net.home(CITY))
        answer = _push(net, city_url, batch_of(entries), sender=TOWN)
        assert answer["result"]["applied"] == {}
        assert [r["origin"] for r in answer["result"]["rejected"]] == ["330782001299"]
        assert snapshot_home(net.home(CITY)) == before


def test_push_refuses_entries_signed_by_an_impostor(net: Topology, town_url: str) -> None:
    """Entries for the village's id, well formed and chained, but signed by another key."""
    impostor = Signer.generate()
    genuine = _new_entries(net)
    forged = [e._replace(sig=impostor.sign(signing_message(e.hash))) for e in genuine]
    before = _town(net)
    answer = _push(net, town_url, batch_of(forged))
    assert answer["result"]["applied"] == {}
    assert [r["reason"] for r in answer["result"]["rejected"]] == ["bad signature"]
    assert _town(net) == before


# --- who may send what ----------------------------------------------------------------


@pytest.mark.parametrize(
    "sender, origin, receiver",
    [
        pytest.param(TOWN, VILLAGE_B, CITY, id="town-relays-sibling-towns-village"),
        pytest.param(VILLAGE, VILLAGE_2, TOWN, id="village-relays-sibling-village"),
        pytest.param(TOWN_B, TOWN, CITY, id="town-relays-sibling-town"),
    ],
)
def test_push_refuses_log_sender_may_not_relay(
    net: Topology, sender: str, origin: str, receiver: str
) -> None:
    """`origin` has entries `receiver` lacks and would accept from the right sender."""
    with ExitStack() as stack:
        city_url = stack.enter_context(serve_in_thread(net.home(CITY)))
        town_url = stack.enter_context(serve_in_thread(net.home(TOWN)))
        for node_id, url in ((VILLAGE_2, town_url), (TOWN, city_url), (TOWN_B, city_url)):
            with net.open(node_id) as node:
                append_notes(node, 2)
                sync_round(node, url)  # every key is now known where it is needed
        with net.open(VILLAGE_B) as village_b:
            append_notes(village_b, 3)
        with net.open(TOWN_B) as town_b:
            sync_round(town_b, city_url)  # the city holds village B's log, 3 entries
        with net.open(origin) as author:
            held = snapshot_home(net.home(receiver)).heads.get(origin, (0, ""))[0]
            append_notes(author, 2, start=100)
            entries = author.store.entries(origin, held)
        assert len(entries) >= 2
        url = city_url if receiver == CITY else town_url
        before = snapshot_home(net.home(receiver))
        answer = _push(net, url, batch_of(entries), sender=sender)
        assert answer["result"]["applied"] == {}
        assert {r["origin"] for r in answer["result"]["rejected"]} == {origin}
        assert "may not send" in answer["result"]["rejected"][0]["reason"]
        assert snapshot_home(net.home(receiver)) == before


# --- forks ----------------------------------------------------------------------------


def test_fork_from_copied_village_home_is_kept_as_evidence_and_freezes_origin(
    net: Topology, town_url: str
) -> None:
    copy = net.base / "village-copy"
    shutil.copytree(net.home(VILLAGE), copy)

    with net.open(VILLAGE) as original:
        append_notes(original, 2, start=50, tag="original")
        assert sync_round(original, town_url).pushed == NEW + 2
    held = _town(net)
    with open_home(copy) as twin:
        append_notes(twin, 3, start=50, tag="copy")  # other bytes for the same seqs, and one more
        summary = sync_round(twin, town_url)
        twin_heads = twin.store.heads()
        twin_acks = receipts.acknowledged(twin.store, TOWN)
    # the town kept the first history and stored the other as evidence
    after = _town(net)
    assert summary.forks
    assert after.heads[VILLAGE] == held.heads[VILLAGE]
    assert after.counts[VILLAGE] == held.counts[VILLAGE]
    # and reported it in its own log, one entry more (sync.fork_evidence)
    assert after.counts[TOWN] == held.counts[TOWN] + 1
    assert {(o, s) for o, s, _ in after.forks} == {(VILLAGE, f["seq"]) for f in summary.forks}
    # the copy holds no receipt for entries that the town does not hold
    assert twin_acks.get(VILLAGE, 0) < twin_heads[VILLAGE][0]
    assert twin_acks.get(VILLAGE, 0) <= HELD
    done = zhibao(net.home(TOWN), "status", "--json")
    assert done.returncode == 0, done.stderr
    forks = json.loads(done.stdout)["forks"]
    assert forks and [f["origin"] for f in forks] == [VILLAGE] * len(after.forks)
    # the origin is frozen: even the original's next entries are refused
    with net.open(VILLAGE) as original:
        append_notes(original, 1, start=60)
        refused = sync_round(original, town_url)
    assert refused.pushed == 0
    assert [r["reason"] for r in refused.rejected] == [
        f"origin {VILLAGE} is frozen after a fork; an admin must resolve it"
    ]
    assert _town(net) == after


# --- requests -------------------------------------------------------------------------


def test_request_from_unenrolled_node_is_refused(net: Topology, town_url: str) -> None:
    stranger = Signer.generate()
    before = _town(net)
    response = push_request(stranger, "330782001299", batch_of(_new_entries(net))).send(town_url)
    assert (response.status_code, error_of(response)) == (403, "request.unknown_node")
    assert _town(net) == before


def test_request_signed_by_unenrolled_key_for_enrolled_id_is_refused(
    net: Topology, town_url: str
) -> None:
    impostor = Signer.generate()
    before = _town(net)
    response = push_request(impostor, VILLAGE, batch_of(_new_entries(net))).send(town_url)
    assert (response.status_code, error_of(response)) == (403, "request.bad_signature")
    assert _town(net) == before


def test_replayed_request_is_refused(net: Topology, town_url: str) -> None:
    with net.open(VILLAGE) as village:
        request = push_request(village, VILLAGE, batch_of(_new_entries(net)))
    first = request.send(town_url)
    assert first.status_code == 200
    assert first.json()["result"]["applied"] == {VILLAGE: NEW}
    after_first = _town(net)
    second = request.send(town_url)
    assert (second.status_code, error_of(second)) == (409, "request.replayed")
    assert _town(net) == after_first


Change = Callable[[dict[str, str], bytes], bytes]


def _mangle_headers(net: Topology, url: str, change: Change) -> httpx.Response:
    """Sign a genuine push of the new entries, let `change` alter headers/body, send it."""
    body = batch_of(_new_entries(net))
    with net.open(VILLAGE) as village:
        request = push_request(village.signer, VILLAGE, body)
    headers = dict(request.headers)
    body = change(headers, body)
    return replace(request, headers=headers, body=body).send(url)


def _other_key(headers: dict[str, str], body: bytes) -> bytes:
    message = request_message(
        "POST",
        "/v1/push",
        body,
        VILLAGE,
        headers["x-zhibao-time"],
        headers["x-zhibao-nonce"],
        server=TOWN,
    )
    headers["x-zhibao-signature"] = Signer.generate().sign(message).hex()
    return body


def _set(header: str, value: str) -> Callable[[dict[str, str], bytes], bytes]:
    def change(headers: dict[str, str], body: bytes) -> bytes:
        headers[header] = value
        return body

    return change


def _later(header: str) -> Callable[[dict[str, str], bytes], bytes]:
    """The time header one second later (still within the skew allowed)."""

    def change(headers: dict[str, str], body: bytes) -> bytes:
        headers[header] = (
            datetime.fromisoformat(headers[header]) + timedelta(seconds=1)
        ).isoformat()
        return body

    return change


def _drop(header: str) -> Callable[[dict[str, str], bytes], bytes]:
    def change(headers: dict[str, str], body: bytes) -> bytes:
        del headers[header]
        return body

    return change


@pytest.mark.parametrize(
    "change, status, error",
    [
        pytest.param(_other_key, 403, "request.bad_signature", id="signed-by-other-key"),
        pytest.param(
            _set("x-zhibao-signature", "zz" * 64),
            403,
            "request.bad_signature",
            id="signature-not-hex",
        ),
        pytest.param(
            _set("x-zhibao-signature", "00" * 64), 403, "request.bad_signature", id="signature-zero"
        ),
        pytest.param(lambda h, b: b + b"\0", 403, "request.bad_signature", id="body-changed"),
        pytest.param(
            _set("x-zhibao-nonce", "f" * 32), 403, "request.bad_signature", id="nonce-changed"
        ),
        pytest.param(_later("x-zhibao-time"), 403, "request.bad_signature", id="time-changed"),
        pytest.param(
            _set("x-zhibao-node", VILLAGE_2),
            403,
            "request.bad_signature",
            id="claims-to-be-sibling-village",
        ),
        pytest.param(_set("x-zhibao-node", TOWN), 403, "request.not_child", id="claims-to-be-town"),
        pytest.param(_drop("x-zhibao-signature"), 403, "request.unsigned", id="unsigned"),
        pytest.param(
            _set("x-zhibao-nonce", "a" * 65), 403, "request.unsigned", id="nonce-too-long"
        ),
    ],
)
def test_request_with_wrong_signature_is_refused(
    net: Topology,
    town_url: str,
    change: Callable[[dict[str, str], bytes], bytes],
    status: int,
    error: str,
) -> None:
    before = _town(net)
    response = _mangle_headers(net, town_url, change)
    assert (response.status_code, error_of(response)) == (status, error)
    assert _town(net) == before


def test_request_with_stale_time_is_refused(net: Topology, town_url: str) -> None:
    late = Clock(now=lambda: system_now() - timedelta(hours=1))
    before = _town(net)
    with net.open(VILLAGE) as village:
        request = sign_request(
            village.signer, VILLAGE, "/v1/push", batch_of(_new_entries(net)), clock=late
        )
    response = request.send(town_url)
    assert (response.status_code, error_of(response)) == (401, "request.clock")
    assert "time" in response.json()  # the server tells the client its time
    assert _town(net) == before


def test_request_over_max_body_is_refused(net: Topology, town_url: str) -> None:
    body = MAGIC + bytes(MAX_BODY + 1 - len(MAGIC))
    before = _town(net)
    with net.open(VILLAGE) as village:
        request = push_request(village.signer, VILLAGE, body)
    try:
        response = request.send(town_url)
    except httpx.HTTPError:  # the server may close before the whole body is sent
        pass
    else:
        assert (response.status_code, error_of(response)) == (413, "request.too_big")
    assert _town(net) == before
    # and the server is still there for honest work
    assert _push(net, town_url, batch_of(_new_entries(net)))["result"]["applied"] == {VILLAGE: NEW}


def test_request_over_max_body_without_length_is_read_no_further(net: Topology) -> None:
    """A body without Content-Length (chunked) is refused before it is read: a signed
    request declares its size (driven at the ASGI level to count what the app pulled)."""
    chunk, pulled = 1 << 20, 0
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += chunk
        return {"type": "http.request", "body": bytes(chunk), "more_body": pulled < 4 * MAX_BODY}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    with net.open(VILLAGE) as village:
        signed = push_request(village.signer, VILLAGE, b"")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/push",
        "raw_path": b"/v1/push",
        "query_string": b"",
        "root_path": "",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 50000),
        "headers": [(k.encode(), v.encode()) for k, v in signed.headers.items()],
    }
    before = _town(net)
    with net.open(TOWN) as town:
        asyncio.run(NodeApp(town).app(scope, receive, send))
    assert sent[0]["status"] == 411
    assert json.loads(sent[1]["body"])["error"] == "request.no_length"
    assert pulled <= chunk  # at most one piece, drained so an honest client reads the answer
    assert _town(net) == before


@pytest.mark.parametrize(
    "path, body",
    [
        pytest.param("/v1/push", b"not a batch", id="push-not-zstd"),
        pytest.param("/v1/push", b"", id="push-empty"),
        pytest.param("/v1/push", _z(b"ZBB1{}\n"), id="push-no-runs"),
        pytest.param(
            "/v1/push", _z(b'ZBB1{"runs":[["330782001201",6,-1]]}\n'), id="push-negative-count"
        ),
        pytest.param(
            "/v1/push", _z(b'ZBB1{"runs":[["330782001201",6,999999]]}\n'), id="push-huge-count"
        ),
        pytest.param("/v1/pull", b"{not json", id="pull-not-json"),
        pytest.param("/v1/pull", b"[]", id="pull-not-object"),
        pytest.param("/v1/pull", b'{"cursors": {"330782": "x"}}', id="pull-bad-cursor"),
        pytest.param("/v1/pull", b'{"cursors": [1, 2]}', id="pull-cursors-list"),
    ],
)
def test_request_with_malformed_body_is_refused(
    net: Topology, town_url: str, path: str, body: bytes
) -> None:
    before = _town(net)
    with net.open(VILLAGE) as village:
        request = sign_request(village, VILLAGE, path, body)
    response = request.send(town_url)
    assert (response.status_code, error_of(response)) == (400, "batch.malformed")
    assert _town(net) == before


# --- the client refuses garbled answers -----------------------------------------------


class GarblingTransport(httpx.BaseTransport):
    """Pass requests to the real server; rewrite the answer of one path with `garble`."""

    def __init__(
        self, path: str, garble: Callable[[bytes], bytes], seal: X25519PrivateKey
    ) -> None:
        self.inner = httpx.HTTPTransport()
        self.path, self.garble, self.seal = path, garble, seal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path != self.path:
            return response
        content = response.read()
        response.close()
        garbled = garbled_sealed(content, request, self.seal, self.garble)  # sealed again
        return httpx.Response(response.status_code, headers=response.headers, content=garbled)

    def close(self) -> None:
        self.inner.close()


def _json_edit(edit: Callable[[dict[str, Any]], object]) -> Callable[[bytes], bytes]:
    def garble(content: bytes) -> bytes:
        data = json.loads(content)
        edit(data)
        return json.dumps(data).encode()

    return garble


@pytest.mark.parametrize(
    "path, garble",
    [
        pytest.param(
            "/v1/hello",
            _json_edit(lambda d: d["receipt"].update(sig="zz")),
            id="hello-receipt-sig-not-hex",
        ),
        pytest.param("/v1/hello", _json_edit(lambda d: d.pop("receipt")), id="hello-no-receipt"),
        pytest.param(
            "/v1/hello",
            _json_edit(lambda d: d.update(have={VILLAGE: "5"})),
            id="hello-have-not-int",
        ),
        pytest.param("/v1/hello", lambda c: c[:-1], id="hello-cut"),
        pytest.param("/v1/push", _json_edit(lambda d: d.pop("result")), id="push-no-result"),
        pytest.param(
            "/v1/push",
            _json_edit(lambda d: d["result"].update(rejected=None)),
            id="push-rejected-null",
        ),
        pytest.param(
            "/v1/push",
            _json_edit(lambda d: d["receipt"].update(raw=1)),
            id="push-receipt-raw-not-text",
        ),
        pytest.param(
            "/v1/time",
            _json_edit(lambda d: d.update(time="2025-10-09T10:00:00")),
            id="time-without-offset",
        ),
        pytest.param("/v1/time", lambda c: b"[]", id="time-not-object"),
    ],
)
def test_round_treats_garbled_answer_as_broken_link(
    net: Topology, town_url: str, path: str, garble: Callable[[bytes], bytes]
) -> None:
    with net.open(VILLAGE) as village:
        before = snapshot_home(net.home(VILLAGE))
        with pytest.raises(LinkDownError):
            sync_round(village, town_url, transport=GarblingTransport(path, garble, village.seal))
        assert snapshot_home(net.home(VILLAGE)) == before
        assert receipts.acknowledged(village.store, TOWN) == {VILLAGE: HELD}
        sync_round(village, town_url)  # the next round completes what this one began
        assert receipts.acknowledged(village.store, TOWN) == {VILLAGE: HELD + NEW}
    assert _town(net).heads[VILLAGE][0] == HELD + NEW


def test_round_refuses_forged_receipt(net: Topology, town_url: str) -> None:
    def forge(content: bytes) -> bytes:
        data = json.loads(content)
        raw = json.loads(data["receipt"]["raw"])
        raw["heads"][VILLAGE] = [HELD + NEW, "00" * 32]
        data["receipt"]["raw"] = json.dumps(raw, sort_keys=True, separators=(",", ":"))
        return json.dumps(data).encode()

    with net.open(VILLAGE) as village:
        with pytest.raises(RefusedError):
            garbling = GarblingTransport("/v1/hello", forge, village.seal)
            sync_round(village, town_url, transport=garbling)
        assert receipts.acknowledged(village.store, TOWN) == {VILLAGE: HELD}


# --- clocks ---------------------------------------------------------------------------


def test_round_with_clock_three_days_off_syncs_and_corrects_offset(
    net: Topology, town_url: str
) -> None:
    ahead = Clock(now=lambda: system_now() + timedelta(days=3))
    with net.open(VILLAGE, clock=ahead) as village:
        summary = sync_round(village, town_url)
        assert summary.pushed == NEW
        assert abs(summary.clock_offset_seconds + 3 * 86400) < 60
        assert summary.warnings and "clock" in summary.warnings[0]
        assert abs((village.clock.now() - system_now()).total_seconds()) < 60
        append_notes(village, 1, start=99)  # stamped with the corrected time
        at = json.loads(village.store.entries(VILLAGE, HELD + NEW)[0].raw)["at"]
        assert at.startswith(system_now().date().isoformat())
        # the offset is kept: the next round needs no new warning
        assert not sync_round(village, town_url).warnings
    with net.open(VILLAGE) as reopened:
        assert abs(reopened.clock.offset + timedelta(days=3)) < timedelta(minutes=1)
    assert _town(net).heads[VILLAGE][0] == HELD + NEW + 1
    assert _audit(net, TOWN) == []


def test_request_with_a_forged_signature_is_refused_before_its_body(net: Topology) -> None:
    """Node ids are public (every case id starts with one): a keyless attacker who names an
    enrolled village and declares a 20 MiB body must be refused on its headers, before the
    server reserves or reads anything — else three such slow uploads held the whole body
    budget for 45 minutes and every honest child got 503."""
    pulled = 0
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1 << 16
        return {"type": "http.request", "body": bytes(1 << 16), "more_body": True}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    signed = push_request(Signer.generate(), VILLAGE, b"x" * (20 << 20))  # not its key
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/push", "raw_path": b"/v1/push", "query_string": b"",
        "root_path": "", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 50000),
        "headers": [
            *((k.encode(), v.encode()) for k, v in signed.headers.items()),
            (b"content-length", str(20 << 20).encode()),
        ],
    }  # fmt: skip
    with net.open(TOWN) as town:
        app = NodeApp(town)
        asyncio.run(app.app(scope, receive, send))
        assert app.gate.free == app.gate.limits.body_budget  # nothing was reserved
    assert sent[0]["status"] == 403
    assert json.loads(sent[1]["body"])["error"] == "request.bad_signature"
    assert pulled <= 2 * (1 << 16)  # drained a little at most
