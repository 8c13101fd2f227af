"""Materials over HTTP attacked by a member (issue #11 item 4): village A, enrolled, with
its own real key, signs `have`, `put` and `get` requests the real program never makes,
against a real `zhibao serve` town.

- a chunk that does not match its entry's chunk list: 400 `blob.bad_chunk`, the partial
  kept at the last good chunk, nothing held; the honest sync then completes it;
- a put for a blob no entry names, named only by A's quarantined entry on B's case, or
  named by B's entry (not A's subtree): 403 `blob.not_named`, nothing written;
- more than the blob: a frame past its end (400 `blob.beyond_end`), a frame claiming a GiB
  (400 `blob.bad_frame`), a 20 MiB body of which the blob is a sliver — refused, memory
  bounded;
- frames of another blob under this blob's name, sealed either way: refused
  (`wire.cannot_open`, `blob.bad_list`);
- a get for a blob of a case that does not concern the caller: 403 `blob.not_yours`.
"""

from __future__ import annotations

import hashlib
import os
import random
import select
import socket
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import tomli_w
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sync import trust
from sync.keyfiles import SEAL_KEY
from sync.protocol.blobs import CHUNK, DATA, LIST, Hasher, chunk_info, encode_frame
from sync.protocol.messages import DIGEST, digest_message, request_headers
from sync.protocol.sealed import WIRE_MAGIC, answer_info, request_info, seal
from tests.hostile.harness import Actor, stamp_now
from tests.hostile.network import (
    ITEM,
    MAX_RSS,
    TOWN,
    VILLAGE_A,
    VILLAGE_B,
    VILLAGE_C,
    Net,
    server_rss,
    zb,
    zj,
)
from tests.support.servers import Served
from tests.support.wire import SignedRequest

# SQLite only (no city_engine): one module-wide copy of the network (`shared_net`) serves
# every test, its city on SQLite; a member pushing to a PostgreSQL city: test_city_pushes.py

STREAM = "application/x-zhibao-blobs"
JSON = "application/json"
Frame = tuple[bytes, int, bytes]


@pytest.fixture(scope="module")
def town(shared_net: Net) -> Iterator[Served]:
    with shared_net.serving(TOWN) as served:
        yield served[TOWN]


def _settings(home: Path, **values: object) -> None:
    path = home / "node.toml"
    data = tomllib.loads(path.read_text("utf-8"))
    data.setdefault("settings", {}).update(values)
    path.write_text(tomli_w.dumps(data), "utf-8")


def _attached(net: Net, village: str, url: str, size: int, seed: int) -> tuple[str, str, bytes]:
    """A real case at `village` with a real material attached, its entries (not its
    bytes: no time for materials) synced to the town. (case id, sha256, bytes)."""
    home = net.home(village)
    _settings(home, material_seconds_per_round=0)
    case_id = zb(home, "case", "receive", "--item", ITEM, "--applicant", "村民").stdout.strip()
    data = random.Random(seed).randbytes(size)
    path = home.parent / f"scan-{seed}.pdf"
    path.write_bytes(data)
    sha = zj(home, "case", "attach", case_id, str(path))[0]["sha256"]
    zb(home, "sync", "--peer", url)
    return case_id, sha, data


def _honest_sync(net: Net, village: str, url: str) -> dict[str, Any]:
    _settings(net.home(village), material_seconds_per_round=20)
    summary: dict[str, Any] = zj(net.home(village), "sync", "--peer", url)
    return summary


def _chunks(data: bytes) -> list[bytes]:
    return [data[at : at + CHUNK] for at in range(0, len(data), CHUNK)] or [b""]


def _list(data: bytes) -> bytes:
    hasher = Hasher()
    hasher.update(data)
    return hasher.chunk_list()


def _whole(data: bytes) -> list[Frame]:
    """The frames of a whole blob: its chunk list, then every chunk."""
    return [(LIST, 0, _list(data))] + [(DATA, i, c) for i, c in enumerate(_chunks(data))]


def _seal_key(actor: Actor) -> X25519PrivateKey:
    raw = bytes.fromhex((actor.home / SEAL_KEY).read_text("ascii").strip())
    return X25519PrivateKey.from_private_bytes(raw)


def _put(
    actor: Actor, sha: str, frames: Sequence[Frame], *, start: int = 0, label: str | None = None,
    path: str | None = None,
) -> SignedRequest:  # fmt: skip
    """A put by `actor` of `frames`, each payload sealed to the town's seal key in this
    request's context under the name `label` (the blob's own by default), as a client
    seals them."""
    path = path or f"/v1/blobs/put?sha256={sha}&from={start}"
    stamp, nonce = stamp_now(), os.urandom(16).hex()
    with actor.store() as store:
        key = trust.seal_key(store, TOWN)
    assert key is not None
    context = request_info("POST", path, actor.node_id, TOWN, stamp, nonce)
    name = label or sha
    body = WIRE_MAGIC + b"".join(
        encode_frame(kind, index, seal(payload, key, chunk_info(context, name, kind, index)))
        for kind, index, payload in frames
    )
    proof = request_headers(
        actor.signer, "POST", path, body, node=actor.node_id, server=TOWN, time=stamp, nonce=nonce
    )
    opener = answer_info("POST", path, actor.node_id, TOWN, nonce, proof[DIGEST])
    headers = {"content-type": STREAM, **proof}
    return SignedRequest("POST", path, body, headers, (_seal_key(actor), opener))


def _have(actor: Actor, url: str, sha: str) -> Any:
    body = f'{{"sha256": ["{sha}"]}}'.encode()
    answer = actor.request("/v1/blobs/have", body, to=TOWN, content_type=JSON).send(url)
    assert answer.status_code == 200, answer.text
    return answer.json()["blobs"][sha]


def _refused(answer: httpx.Response, status: int, error: str) -> None:
    assert (answer.status_code, answer.json()["error"]) == (status, error), answer.text[:300]
    assert "\n" not in answer.json()["message"]


def _state_at_town(net: Net, case_id: str) -> list[str]:
    return [m["state"] for m in zj(net.home(TOWN), "case", "materials", case_id)]


def test_member_sends_a_chunk_that_does_not_match(shared_net: Net, town: Served) -> None:
    village = shared_net.actor(VILLAGE_A)
    case_id, sha, data = _attached(shared_net, VILLAGE_A, town.url, 5 * CHUNK + 100, seed=11)
    bad = bytearray(_chunks(data)[2])
    bad[1000] ^= 0x01
    frames = [*_whole(data)[:3], (DATA, 2, bytes(bad))]  # list, chunks 0 and 1, a bad 2
    _refused(_put(village, sha, frames).send(town.url), 400, "blob.bad_chunk")
    assert _have(village, town.url, sha) == {"next": 2}  # kept at the last good chunk
    assert _state_at_town(shared_net, case_id) == ["on_the_way"]
    summary = _honest_sync(shared_net, VILLAGE_A, town.url)
    assert summary["materials_sent"] == 1 and summary["materials_sent_bytes"] < len(data)
    assert _state_at_town(shared_net, case_id) == ["here"]


def test_member_puts_a_blob_no_admitted_entry_of_its_own_names(
    shared_net: Net, town: Served
) -> None:
    thief, victim = shared_net.actor(VILLAGE_A), shared_net.actor(VILLAGE_B)
    loose = random.Random(12).randbytes(3000)  # named by nobody
    loose_sha = hashlib.sha256(loose).hexdigest()
    _refused(_put(thief, loose_sha, _whole(loose)).send(town.url), 403, "blob.not_named")

    # named only by A's own entry on B's case: quarantined at the town, so named by nothing
    case_b, sha_b, data_b = _attached(shared_net, VILLAGE_B, town.url, 3000, seed=13)
    forged = random.Random(14).randbytes(4000)
    hasher = Hasher()
    hasher.update(forged)
    ref = hasher.ref()
    material = {"name": "申请表", "file": "x.pdf", "media_type": "application/pdf"}
    thief.forge("case.attached", {"case_id": case_b, "materials": [material | ref.to_json()]})
    assert thief.push_own(town.url).status_code == 200
    _refused(_put(thief, ref.sha256, _whole(forged)).send(town.url), 403, "blob.not_named")
    assert _have(thief, town.url, ref.sha256) == "refused"

    # B's genuine material, sent up by A: not from the subtree whose entry names it
    _refused(_put(thief, sha_b, _whole(data_b)).send(town.url), 403, "blob.not_named")
    assert _state_at_town(shared_net, case_b) == ["on_the_way"]
    assert not any((shared_net.home(TOWN) / "materials").rglob(ref.sha256 + "*"))
    assert _have(victim, town.url, sha_b) == {"next": 0}


def _stream_raw(url: str, path: str, headers: dict[str, str], body: Iterator[bytes]) -> int:
    """POST `body` on a raw connection, stopping as soon as the server answers (or closes);
    the status it gave (0: none)."""
    parts = urlsplit(url)
    head = [f"POST {path} HTTP/1.1", f"host: {parts.netloc}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        try:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            for piece in body:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break  # an answer (or a close) before the whole body
                sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            line = sock.makefile("rb").readline()
        except (ConnectionResetError, TimeoutError):
            return 0
    return int(line.split()[1]) if line.startswith(b"HTTP/") else 0


def _signed_stream(
    actor: Actor, sha: str, start: int, frames: Sequence[Frame], size: int, raw: bytes = b""
) -> tuple[str, dict[str, str], Iterator[bytes]]:
    """A put of `frames` (sealed as a client seals them) and `raw`, followed by zeros up to
    `size` bytes, honestly signed (digest and all): its path, headers and body in pieces."""
    path = f"/v1/blobs/put?sha256={sha}&from={start}"
    stamp, nonce = stamp_now(), os.urandom(16).hex()
    with actor.store() as store:
        key = trust.seal_key(store, TOWN)
    assert key is not None
    context = request_info("POST", path, actor.node_id, TOWN, stamp, nonce)
    prefix = WIRE_MAGIC + b"".join(
        encode_frame(kind, index, seal(payload, key, chunk_info(context, sha, kind, index)))
        for kind, index, payload in frames
    ) + raw
    zeros = b"\0" * (256 * 1024)
    pieces = [prefix] + [zeros] * ((size - len(prefix)) // len(zeros))
    pieces.append(b"\0" * (size - sum(len(p) for p in pieces)))
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(piece)
    message = digest_message("POST", path, digest.hexdigest(), actor.node_id, stamp, nonce,
                             server=TOWN)  # fmt: skip
    headers = {
        "content-type": STREAM, "content-length": str(size), "x-zhibao-node": actor.node_id,
        "x-zhibao-server": TOWN, "x-zhibao-time": stamp, "x-zhibao-nonce": nonce,
        "x-zhibao-digest": digest.hexdigest(),
        "x-zhibao-signature": actor.signer.sign(message).hex(),
    }  # fmt: skip
    return path, headers, iter(pieces)


def test_member_sends_more_than_the_blob(shared_net: Net, town: Served) -> None:
    village = shared_net.actor(VILLAGE_A)
    case_id, sha, data = _attached(shared_net, VILLAGE_A, town.url, 2 * CHUNK + 7, seed=15)
    beyond = [*_whole(data), (DATA, 3, b"x" * 10)]  # a fourth chunk of a three-chunk blob
    _refused(_put(village, sha, beyond).send(town.url), 400, "blob.beyond_end")
    assert _state_at_town(shared_net, case_id) == ["on_the_way"]
    huge = DATA + (3).to_bytes(4, "big") + (2**30).to_bytes(4, "big")  # a GiB, it says
    path, headers, body = _signed_stream(village, sha, 3, [], 20 * 2**20, raw=huge)
    assert _stream_raw(town.url, path, headers, body) == 400

    # 20 MiB: the whole of a blob of two chunks, then zeros that would be more of it
    case_2, sha_2, data_2 = _attached(shared_net, VILLAGE_A, town.url, CHUNK + 5, seed=19)
    path, headers, body = _signed_stream(village, sha_2, 0, _whole(data_2), 20 * 2**20)
    assert _stream_raw(town.url, path, headers, body) == 400
    assert server_rss(town) < MAX_RSS
    assert _state_at_town(shared_net, case_id) == _state_at_town(shared_net, case_2)
    assert _state_at_town(shared_net, case_2) == ["on_the_way"]
    summary = _honest_sync(shared_net, VILLAGE_A, town.url)
    assert summary["materials_sent"] == 2 and summary["materials_sent_bytes"] == 0
    assert _state_at_town(shared_net, case_id) == _state_at_town(shared_net, case_2) == ["here"]


def test_member_sends_frames_of_another_blob_under_this_blob_s_name(
    shared_net: Net, town: Served
) -> None:
    village = shared_net.actor(VILLAGE_A)
    case_id, sha, _ = _attached(shared_net, VILLAGE_A, town.url, 20_000, seed=16)
    _, other_sha, other = _attached(shared_net, VILLAGE_A, town.url, 20_000, seed=17)
    mislabelled = _put(village, sha, _whole(other), label=other_sha)  # sealed as the other's
    _refused(mislabelled.send(town.url), 400, "wire.cannot_open")
    relabelled = _put(village, sha, _whole(other))  # sealed under this one's name
    _refused(relabelled.send(town.url), 400, "blob.bad_list")
    assert _have(village, town.url, sha) == {"next": 0}
    assert _state_at_town(shared_net, case_id) == ["on_the_way"]


def test_member_gets_a_material_of_a_case_that_does_not_concern_it(
    shared_net: Net, town: Served
) -> None:
    case_b, sha_b, data_b = _attached(shared_net, VILLAGE_B, town.url, 30_000, seed=18)
    _honest_sync(shared_net, VILLAGE_B, town.url)
    assert _state_at_town(shared_net, case_b) == ["here"]
    ask = f'{{"sha256": "{sha_b}", "from": 0}}'.encode()
    for prying in (VILLAGE_A, VILLAGE_C):
        actor = shared_net.actor(prying)
        answer = actor.request("/v1/blobs/get", ask, to=TOWN, content_type=JSON).send(town.url)
        _refused(answer, 403, "blob.not_yours")
    owner = shared_net.actor(VILLAGE_B)  # its own material: given, sealed
    request = owner.request("/v1/blobs/get", ask, to=TOWN, content_type=JSON)
    with httpx.Client(base_url=town.url, timeout=30) as client:
        answer = client.post(request.path, content=request.body, headers=request.headers)
    assert answer.status_code == 200 and answer.content.startswith(WIRE_MAGIC)
    assert data_b[:64] not in answer.content and len(answer.content) > len(data_b)
