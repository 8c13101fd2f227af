"""What `zhibao serve` takes in before it trusts a sender (issue #9).

Memory is spent only on who passed the header checks; bodies are read within a deadline
and a shared byte budget; a batch decompresses to at most MAX_BATCH_BYTES whatever its
frame claims; every refusal is a JSON 4xx with a reason; only the right nodes may call
each endpoint; and a request signed for one server is refused by another.

Some tests drive the ASGI app directly with a `receive` that counts the body bytes the
app pulled (what a socket would have had to deliver); the others use real servers.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
import tracemalloc
from collections.abc import Iterator, MutableMapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w
import zstandard

from sync import relevance
from sync.admission import MAX_BODY, Limits
from sync.clock import Clock, system_now
from sync.protocol.batch import MAGIC, MAX_BATCH_BYTES, decode_batch
from sync.protocol.errors import LinkDownError, RefusedError
from sync.round import sync_round
from sync.server import NodeApp
from tests.conftest import MakeTopology
from tests.support.frames import rle_frame, wide_window_frame
from tests.support.servers import _uvicorn, serve_in_thread
from tests.support.state import snapshot_home
from tests.support.topology import (
    CITY,
    TOWN,
    TOWN_B,
    VILLAGE,
    VILLAGE_B,
    Topology,
    append_notes,
)
from tests.support.wire import batch_of, body_json, error_of, push_request, sign_request
from tiers.node import open_home

KIB, MIB = 1024, 1024 * 1024

# --- zstd frames that lie -------------------------------------------------------------


def _peak_while(function: Any, *args: Any) -> tuple[int, BaseException | None]:
    """Peak bytes Python allocated while `function` ran, and what it raised."""
    tracemalloc.start()
    try:
        try:
            function(*args)
        except Exception as exc:  # returned to the test
            return tracemalloc.get_traced_memory()[1], exc
        return tracemalloc.get_traced_memory()[1], None
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(rle_frame(1 << 30, declared=1 << 30), id="claims-1GiB-holds-1GiB"),
        pytest.param(rle_frame(1 << 30, declared=None), id="claims-nothing-holds-1GiB"),
        pytest.param(rle_frame(1 << 30, declared=1024), id="claims-1KiB-holds-1GiB"),
        pytest.param(rle_frame(1 << 20, declared=1 << 40), id="claims-1TiB"),
        pytest.param(wide_window_frame(30, 1 << 20), id="window-1GiB"),
    ],
)
def test_decode_batch_of_a_lying_frame_is_refused_within_the_batch_limit(frame: bytes) -> None:
    peak, raised = _peak_while(decode_batch, frame)
    assert isinstance(raised, RefusedError) and raised.key == "batch.malformed"
    assert peak < MAX_BATCH_BYTES + 4 * MIB


def test_decode_batch_still_reads_a_frame_without_a_size() -> None:
    """Frames need not state their size (a streaming compressor's do not)."""
    plain = MAGIC + b'{"runs":[]}\n'
    compressor = zstandard.ZstdCompressor(write_content_size=False)
    assert decode_batch(compressor.compress(plain)) == []


@pytest.mark.parametrize(
    "plain",
    [
        pytest.param(MAGIC + b"[" * 100_000 + b"\n", id="deeply-nested-header"),
        pytest.param(MAGIC + b'{"runs":[["330782001201",1e400,1]]}\n', id="first-seq-infinite"),
        pytest.param(MAGIC + b'{"runs":[["330782001201",' + b"9" * 30 + b",1]]}\n", id="huge-seq"),
        pytest.param(MAGIC + b'{"runs":[[1,1,1]]}\n', id="origin-not-text"),
        pytest.param(MAGIC + b'{"runs":[["330782001201",true,1]]}\n', id="seq-a-boolean"),
        pytest.param(MAGIC + b'{"runs":"abc"}\n', id="runs-a-string"),
    ],
)
def test_decode_batch_refuses_a_malformed_header(plain: bytes) -> None:
    with pytest.raises(RefusedError) as refused:
        decode_batch(zstandard.ZstdCompressor().compress(plain))
    assert refused.value.key == "batch.malformed"


# --- driving the app at the ASGI level --------------------------------------------------


@dataclass
class Exchange:
    """One request driven through the ASGI app, and what came of it."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    pulled: int = 0  # body bytes the app asked for

    def json(self) -> Any:
        return json.loads(self.body)


async def _drive(
    app: NodeApp,
    headers: dict[str, str],
    *,
    path: str = "/v1/push",
    method: str = "POST",
    size: int = 0,
    chunk: int = 16 * KIB,
    stall_after: int | None = None,
    delay: float = 0.0,
    started: asyncio.Event | None = None,
) -> Exchange:
    """Send `size` body bytes in `chunk`s, `delay` seconds apart (stalling for good after
    `stall_after` bytes); `started` is set when the app first asks for the body."""
    out = Exchange()

    async def receive() -> dict[str, Any]:
        if started is not None:
            started.set()
        if stall_after is not None and out.pulled >= stall_after:
            await asyncio.Event().wait()  # never comes: the app's deadline must end it
        if delay:
            await asyncio.sleep(delay)
        piece = min(chunk, size - out.pulled)
        out.pulled += piece
        return {"type": "http.request", "body": bytes(piece), "more_body": out.pulled < size}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out.status = message["status"]
            out.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        else:
            out.body += message.get("body", b"")

    raw_path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 50000),
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    await app.app(scope, receive, send)
    return out


def _signed_headers(net: Topology, sender: str, **kwargs: Any) -> dict[str, str]:
    """Headers of a genuine push by `sender` (body b""; the body is never checked here)."""
    with net.open(sender) as node:
        request = sign_request(node.signer, sender, "/v1/push", b"", **kwargs)
    return dict(request.headers)


def _serve_app(net: Topology, node_id: str, limits: Limits | None = None) -> Any:
    """A runner: `run(make)` runs `make(app)` on a fresh loop, `app` serving the node."""

    def run(make: Any) -> Any:
        with net.open(node_id) as node:
            return asyncio.run(make(NodeApp(node, limits=limits)))

    return run


@pytest.fixture
def net(make_topology: MakeTopology) -> Topology:
    return make_topology([VILLAGE, VILLAGE_B])


REFUSED_ON_HEADERS = [
    pytest.param(lambda net: {}, 403, "request.unsigned", id="no-zhibao-headers"),
    pytest.param(
        lambda net: {**_signed_headers(net, VILLAGE), "x-zhibao-node": "330782001299"},
        403,
        "request.unknown_node",
        id="unknown-node",
    ),
    pytest.param(
        lambda net: _signed_headers(net, VILLAGE, server=TOWN_B),
        403,
        "request.wrong_server",
        id="signed-for-another-server",
    ),
    pytest.param(
        lambda net: _signed_headers(net, TOWN_B, server=TOWN),
        403,
        "request.not_child",
        id="sibling-town",
    ),
    pytest.param(
        lambda net: _signed_headers(
            net, VILLAGE, clock=Clock(now=lambda: system_now() - timedelta(hours=2))
        ),
        401,
        "request.clock",
        id="stale-time",
    ),
    pytest.param(
        lambda net: {**_signed_headers(net, VILLAGE), "x-zhibao-nonce": "zz" * 16},
        403,
        "request.unsigned",
        id="nonce-not-hex",
    ),
    pytest.param(
        lambda net: {**_signed_headers(net, VILLAGE), "x-zhibao-time": "yesterday"},
        400,
        "request.bad_time",
        id="time-malformed",
    ),
    pytest.param(
        lambda net: {**_signed_headers(net, VILLAGE), "x-zhibao-time": "2026-01-01T00:00:00"},
        400,
        "request.bad_time",
        id="time-without-offset",
    ),
]


@pytest.mark.parametrize("make_headers, status, error", REFUSED_ON_HEADERS)
def test_request_refused_on_its_headers_leaves_the_body_unread(
    net: Topology, make_headers: Any, status: int, error: str
) -> None:
    """A 24 MiB body behind headers that fail: at most the drain allowance is read, and
    the connection is closed rather than read on."""
    limits = Limits()
    headers = {**make_headers(net), "content-length": str(MAX_BODY)}
    before = snapshot_home(net.home(TOWN))
    done = _serve_app(net, TOWN, limits)(lambda app: _drive(app, headers, size=MAX_BODY))
    assert (done.status, done.json()["error"]) == (status, error)
    assert done.json()["message"]
    assert done.pulled <= limits.drain_bytes + 16 * KIB
    assert done.headers.get("connection") == "close"
    assert snapshot_home(net.home(TOWN)) == before


def test_request_declaring_more_than_the_limit_is_refused_before_its_body(net: Topology) -> None:
    headers = {**_signed_headers(net, VILLAGE), "content-length": str(MAX_BODY + 1)}
    done = _serve_app(net, TOWN)(lambda app: _drive(app, headers, size=MAX_BODY + 1))
    assert (done.status, done.json()["error"]) == (413, "request.too_big")
    assert done.pulled <= Limits().drain_bytes + 16 * KIB


def test_request_with_malformed_length_is_refused(net: Topology) -> None:
    headers = {**_signed_headers(net, VILLAGE), "content-length": "12ab"}
    done = _serve_app(net, TOWN)(lambda app: _drive(app, headers, size=0))
    assert (done.status, done.json()["error"]) == (400, "request.bad_length")


def test_refused_small_body_is_drained_and_the_connection_kept(net: Topology) -> None:
    """An honest client refused on a small request still reads the answer: the body is
    drained and the connection left open."""
    headers = {**_signed_headers(net, TOWN_B, server=TOWN), "content-length": "2"}
    done = _serve_app(net, TOWN)(lambda app: _drive(app, headers, size=2))
    assert (done.status, done.json()["error"]) == (403, "request.not_child")
    assert done.pulled == 2 and "connection" not in done.headers


def test_stalled_upload_is_cut_with_408_and_nothing_applied(net: Topology) -> None:
    limits = Limits(idle_seconds=0.05)
    headers = {**_signed_headers(net, VILLAGE), "content-length": str(4 * MIB)}
    before = snapshot_home(net.home(TOWN))
    done = _serve_app(net, TOWN, limits)(
        lambda app: _drive(app, headers, size=4 * MIB, stall_after=MIB)
    )
    assert (done.status, done.json()["error"]) == (408, "request.timeout")
    assert done.headers.get("connection") == "close"
    assert snapshot_home(net.home(TOWN)) == before


def test_trickled_upload_is_cut_at_its_deadline(net: Topology) -> None:
    """A body that keeps coming, but slower than `min_rate`, is cut at its deadline
    (here 1/64 s for 1 MiB; it comes 1 KiB every millisecond at best)."""
    limits = Limits(grace_seconds=0.0, min_rate=64 * MIB, idle_seconds=10.0)
    headers = {**_signed_headers(net, VILLAGE), "content-length": str(MIB)}
    done = _serve_app(net, TOWN, limits)(
        lambda app: _drive(app, headers, size=MIB, chunk=KIB, delay=0.001)
    )
    assert (done.status, done.json()["error"]) == (408, "request.timeout")
    assert done.pulled < MIB


def test_bodies_beyond_the_budget_are_answered_503(net: Topology) -> None:
    """While one sender's body holds the budget, another's is refused at once with 503
    and Retry-After (the client backs off); the budget is whole again afterwards."""
    limits = Limits(body_budget=3 * MIB, idle_seconds=0.2)
    first = {**_signed_headers(net, VILLAGE), "content-length": str(2 * MIB)}

    async def race(app: NodeApp) -> tuple[Exchange, Exchange, Exchange]:
        reading = asyncio.Event()
        held = asyncio.create_task(
            _drive(app, first, size=2 * MIB, stall_after=MIB, started=reading)
        )
        await reading.wait()
        second = {**_signed_headers(net, VILLAGE), "content-length": str(2 * MIB)}
        busy = await _drive(app, second, size=2 * MIB)
        cut = await held
        third = {**_signed_headers(net, VILLAGE), "content-length": str(2 * MIB)}
        after = await _drive(app, third, size=2 * MIB)
        return busy, cut, after

    busy, cut, after = _serve_app(net, TOWN, limits)(race)
    assert (busy.status, busy.json()["error"]) == (503, "server.busy")
    assert busy.headers.get("retry-after")
    assert cut.status == 408
    # read whole, then checked: its signature was made for an empty body
    assert (after.status, after.json()["error"]) == (403, "request.bad_signature")
    assert after.pulled == 2 * MIB


def test_busy_server_is_a_link_problem_for_the_client(net: Topology) -> None:
    with (
        net.open(TOWN) as town,
        _uvicorn(NodeApp(town, limits=Limits(body_budget=0)).app, TOWN) as url,
        net.open(VILLAGE) as village,
        pytest.raises(LinkDownError),
    ):
        sync_round(village, url)


# --- bad input is a 4xx with a reason, never a 500 ---------------------------------------


@pytest.fixture
def served(net: Topology) -> Iterator[str]:
    with serve_in_thread(net.home(TOWN)) as url:
        yield url


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 100_000, id="nested-100000-deep"),
        pytest.param(b'{"cursors":' * 50_000, id="nested-objects"),
        pytest.param(b"5", id="a-number"),
        pytest.param(b"null", id="null"),
        pytest.param(b'"cursors"', id="a-string"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b'{"cursors": {"330782": Infinity}}', id="cursor-infinite"),
        pytest.param(b'{"cursors": {"330782": 1.5}}', id="cursor-float"),
        pytest.param(b'{"cursors": {"330782": true}}', id="cursor-boolean"),
        pytest.param(b'{"cursors": {"330782": -1}}', id="cursor-negative"),
        pytest.param(b'{"cursors": {"330782": ' + b"9" * 40 + b"}}", id="cursor-huge"),
        pytest.param(b'{"cursors": {"not an id": 1}}', id="cursor-origin-not-an-id"),
        pytest.param(b'{"cursors": {}, "mode": "everything"}', id="mode-unknown"),
        pytest.param(b'{"cursors": {}, "limit": "all"}', id="limit-not-a-number"),
    ],
)
def test_malformed_pull_is_refused_with_400(net: Topology, served: str, body: bytes) -> None:
    with net.open(VILLAGE) as village:
        request = sign_request(village.signer, VILLAGE, "/v1/pull", body)
    response = request.send(served)
    assert (response.status_code, error_of(response)) == (400, "batch.malformed")


@pytest.mark.parametrize(
    "plain",
    [
        pytest.param(MAGIC + b"[" * 100_000 + b"\n", id="nested-header"),
        pytest.param(MAGIC + b'{"runs":[["330782001201",' + b"9" * 30 + b",1]]}\n", id="huge-seq"),
    ],
)
def test_malformed_push_is_refused_with_400(net: Topology, served: str, plain: bytes) -> None:
    with net.open(VILLAGE) as village:
        request = push_request(village, VILLAGE, zstandard.ZstdCompressor().compress(plain))
    response = request.send(served)
    assert (response.status_code, error_of(response)) == (400, "batch.malformed")


def test_push_of_a_bomb_signed_by_an_enrolled_village_is_refused(
    net: Topology, served: str
) -> None:
    """The village's own key signs a 32 KiB frame that unpacks to 1 GiB: refused, nothing
    applied, and the town serves the next honest round."""
    bomb = rle_frame(1 << 30, declared=1 << 30)
    assert len(bomb) < 40 * KIB
    before = snapshot_home(net.home(TOWN))
    with net.open(VILLAGE) as village:
        response = push_request(village, VILLAGE, bomb).send(served)
        assert (response.status_code, error_of(response)) == (400, "batch.malformed")
        assert snapshot_home(net.home(TOWN)) == before
        append_notes(village, 3)
        assert sync_round(village, served).pushed == 3


@pytest.mark.parametrize(
    "method, path, status, error",
    [
        pytest.param("GET", "/v1/nothing", 404, "request.no_route", id="no-such-path"),
        pytest.param("GET", "/v1/push", 405, "request.bad_method", id="get-on-push"),
        pytest.param("GET", "/v1/time?nonce=xyz", 400, "time.bad_nonce", id="time-bad-nonce"),
        pytest.param(
            "GET", "/v1/time?nonce=" + "a" * 65, 400, "time.bad_nonce", id="time-nonce-long"
        ),
    ],
)
def test_unroutable_request_is_a_json_refusal(
    served: str, method: str, path: str, status: int, error: str
) -> None:
    response = httpx.request(method, served + path)
    assert (response.status_code, error_of(response)) == (status, error)
    assert response.json()["message"]


def test_unexpected_exception_is_a_500_and_one_log_line(
    net: Topology, served: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug in a handler: the client gets a generic 500, the log one line without the
    exception's text (which may quote a citizen), and the server goes on serving."""

    def broken(*args: Any) -> Any:
        raise KeyError("王秀英 330782194001011234")

    with monkeypatch.context() as patch:
        patch.setattr(relevance, "select_for", broken)
        with net.open(VILLAGE) as village:
            response = sign_request(
                village.signer, VILLAGE, "/v1/pull", body_json({"cursors": {}})
            ).send(served)
    assert (response.status_code, error_of(response)) == (500, "server.internal")
    assert "王秀英" not in response.text
    logged = [line for line in capsys.readouterr().err.splitlines() if "zhibao:" in line]
    assert len(logged) == 1 and "KeyError" in logged[0] and "/v1/pull" in logged[0]
    assert "王秀英" not in logged[0] and "3307821940" not in logged[0]
    with net.open(VILLAGE) as village:
        append_notes(village, 2)
        assert sync_round(village, served).pushed == 2


# --- who may call what ------------------------------------------------------------------


@pytest.mark.parametrize(
    "sender, path, receiver, error",
    [
        pytest.param(TOWN_B, "/v1/push", TOWN, "request.not_child", id="sibling-town-pushes"),
        pytest.param(VILLAGE_B, "/v1/push", TOWN, "request.not_child", id="cousin-village-pushes"),
        pytest.param(VILLAGE, "/v1/push", CITY, "request.not_child", id="village-skips-its-town"),
        pytest.param(CITY, "/v1/push", TOWN, "request.not_child", id="city-pushes-down"),
        pytest.param(TOWN, "/v1/push", TOWN, "request.not_child", id="town-pushes-to-itself"),
        pytest.param(TOWN_B, "/v1/hello", TOWN, "request.not_below", id="sibling-town-hello"),
        pytest.param(CITY, "/v1/pull", TOWN, "request.not_below", id="city-pulls-from-town"),
        pytest.param(TOWN, "/v1/pull", TOWN, "request.not_below", id="town-pulls-from-itself"),
    ],
)
def test_sender_not_allowed_on_endpoint_is_refused_with_403(
    net: Topology, sender: str, path: str, receiver: str, error: str
) -> None:
    """Each signs with its own enrolled key (and for the right server): refused all the
    same, and nothing changes at the receiver."""
    with net.open(sender) as node:
        entries = node.store.entries(sender)
        body = batch_of(entries) if path == "/v1/push" and entries else body_json({})
        request = sign_request(node.signer, sender, path, body, server=receiver)
    before = snapshot_home(net.home(receiver))
    with serve_in_thread(net.home(receiver)) as url:
        response = request.send(url)
    assert (response.status_code, error_of(response)) == (403, error)
    assert snapshot_home(net.home(receiver)) == before


def test_village_may_pull_from_its_grandparent(net: Topology) -> None:
    """`restore --from CITY_URL`: hello and pull at the city are allowed to a village."""
    with ExitStack() as stack:
        city_url = stack.enter_context(serve_in_thread(net.home(CITY)))
        with net.open(TOWN) as town:
            sync_round(town, city_url)  # the city learns the village's enrolment
        with net.open(VILLAGE) as village:
            for path, body in (("/v1/hello", b"{}"), ("/v1/pull", body_json({"cursors": {}}))):
                request = sign_request(village.signer, VILLAGE, path, body, server=CITY)
                assert request.send(city_url).status_code == 200


def test_request_signed_for_one_server_is_refused_by_another(net: Topology) -> None:
    """A village's pull captured on its way to the town and replayed at the city (where
    the village may pull, its nonce is unseen and its time fresh): refused, by the header
    naming the town, and, with the header changed, by the signature."""
    with ExitStack() as stack:
        city_url = stack.enter_context(serve_in_thread(net.home(CITY)))
        town_url = stack.enter_context(serve_in_thread(net.home(TOWN)))
        with net.open(TOWN) as town:
            sync_round(town, city_url)
        with net.open(VILLAGE) as village:
            request = sign_request(
                village.signer, VILLAGE, "/v1/pull", body_json({"cursors": {}}), server=TOWN
            )
        replayed = request.send(city_url)
        assert (replayed.status_code, error_of(replayed)) == (403, "request.wrong_server")
        relabelled = replace(request, headers={**request.headers, "x-zhibao-server": CITY})
        relabelled = relabelled.send(city_url)
        assert (relabelled.status_code, error_of(relabelled)) == (403, "request.bad_signature")
        assert request.send(town_url).status_code == 200  # it was a genuine request


def _set_parent_url(home: Path, url: str) -> None:
    path = home / "node.toml"
    settings = tomllib.loads(path.read_text("utf-8"))
    path.write_text(tomli_w.dumps({**settings, "parent_url": url}), "utf-8")


def test_client_refuses_a_parent_url_that_serves_another_node(net: Topology) -> None:
    """node.toml's parent_url answered by another town: the round stops at the time
    answer, before any signed request, and says which node answered."""
    before = snapshot_home(net.home(TOWN_B))
    with serve_in_thread(net.home(TOWN_B)) as other:
        _set_parent_url(net.home(VILLAGE), other)
        with open_home(net.home(VILLAGE)) as village, pytest.raises(RefusedError) as refused:
            sync_round(village, other)
    assert refused.value.key == "peer.wrong_node"
    assert TOWN_B in str(refused.value) and TOWN in str(refused.value)
    assert snapshot_home(net.home(TOWN_B)) == before


def test_client_syncing_with_its_parent_signs_for_the_parent(net: Topology) -> None:
    with serve_in_thread(net.home(TOWN)) as url:
        _set_parent_url(net.home(VILLAGE), url)
        with open_home(net.home(VILLAGE)) as village:
            append_notes(village, 2)
            assert sync_round(village, url).pushed == 2
