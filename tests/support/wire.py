"""Hand-made requests and batches, to send the server exactly what a test wants."""

from __future__ import annotations

import json
import secrets
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import zstandard
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sync import trust
from sync.clock import Clock
from sync.node import Node
from sync.protocol.batch import MAGIC, encode_batch
from sync.protocol.canonical import canonical
from sync.protocol.entry import SignedEntry, entry_hash
from sync.protocol.ids import parent_of
from sync.protocol.keys import Signer
from sync.protocol.messages import DIGEST, NONCE, SENDER, SERVER, request_headers
from sync.protocol.sealed import (
    SEALED_TYPE,
    answer_info,
    is_sealed,
    open_body,
    request_info,
    seal_body,
)

BATCH_TYPE = "application/x-zhibao-batch"


@dataclass(frozen=True)
class SignedRequest:
    """One request exactly as it goes on the wire (so it can be sent twice)."""

    method: str
    path: str
    body: bytes
    headers: dict[str, str]
    # the sender's seal key and the answer's context, to open a sealed answer (as PeerClient)
    opener: tuple[X25519PrivateKey, bytes] | None = None

    def send(self, url: str) -> httpx.Response:
        """The answer, opened when it came sealed and the sender's seal key is known."""
        with httpx.Client(base_url=url, timeout=30) as client:
            answer = client.request(self.method, self.path, content=self.body, headers=self.headers)
        return opened(answer, self.opener)


def opened(answer: httpx.Response, opener: tuple[X25519PrivateKey, bytes] | None) -> httpx.Response:
    """`answer` with its sealed body opened (as PeerClient opens it), else as it came."""
    if opener is None or not is_sealed(answer.content):
        return answer
    plain = open_body(answer.content, [opener[0]], opener[1])
    headers = {k: v for k, v in answer.headers.items() if k.startswith("x-zhibao-")}
    return httpx.Response(answer.status_code, headers=headers, content=plain)


def garbled_sealed(
    content: bytes,
    request: httpx.Request,
    seal: X25519PrivateKey,
    garble: Callable[[bytes], bytes],
) -> bytes:
    """A sealed answer to `request` (from the node whose seal key is `seal`) opened, its
    plain body passed through `garble`, and sealed again as a server could (a hostile
    server, or anyone holding the node's public seal key: answers are not signed as a
    whole, only the receipts and entries in them). Plain content is garbled as it is."""
    if not is_sealed(content):
        return garble(content)
    headers = request.headers
    info = answer_info(
        request.method, request.url.path, headers[SENDER], headers[SERVER], headers[NONCE],
        headers[DIGEST],
    )  # fmt: skip
    plain = open_body(content, [seal], info)
    return seal_body(garble(plain), seal.public_key().public_bytes_raw(), info)


def sign_request(
    signer: Signer | Node,
    node_id: str,
    path: str,
    body: bytes,
    *,
    content_type: str = BATCH_TYPE,
    method: str = "POST",
    clock: Clock | None = None,
    nonce: str | None = None,
    server: str | None = None,
) -> SignedRequest:
    """What `PeerClient` sends, signed by `signer` on behalf of `node_id`, for `server`
    (by default the parent of `node_id`). Given the sender's open `Node`, a push body is
    sealed to the server's seal key as that node knows it, and the answer opened with the
    node's seal key (a hello or pull body goes as given: a server takes them plain)."""
    node = signer if isinstance(signer, Node) else None
    key = signer.signer if isinstance(signer, Node) else signer
    stamp = (clock or Clock()).stamp()
    nonce = nonce or secrets.token_hex(16)
    server = server or parent_of(node_id) or node_id
    seal_to = trust.seal_key(node.store, server) if node is not None else None
    if seal_to is not None and path == "/v1/push":
        info = request_info(method, path, node_id, server, stamp, nonce)
        body, content_type = seal_body(body, seal_to, info), SEALED_TYPE
    proof = request_headers(
        key, method, path, body, node=node_id, server=server, time=stamp, nonce=nonce
    )
    headers = {"content-type": content_type, **proof}
    opener = None
    if node is not None:
        opener = (node.seal, answer_info(method, path, node_id, server, nonce, proof[DIGEST]))
    return SignedRequest(method, path, body, headers, opener)


def push_request(signer: Signer | Node, node_id: str, batch: bytes) -> SignedRequest:
    return sign_request(signer, node_id, "/v1/push", batch)


def error_of(response: httpx.Response) -> str:
    """The server's error key (`error` in its JSON answer)."""
    data: dict[str, Any] = response.json()
    return str(data["error"])


def tampered(entry: SignedEntry, index: int, mask: int = 0x01) -> SignedEntry:
    """`entry` with the byte at `index` of its raw bytes XOR `mask` (signature kept)."""
    raw = bytearray(entry.raw)
    raw[index] ^= mask
    return entry._replace(raw=bytes(raw), hash=entry_hash(bytes(raw)))


def batch_of(entries: Sequence[SignedEntry]) -> bytes:
    return encode_batch(list(entries))


def body_json(value: Any) -> bytes:
    return json.dumps(value).encode()


def encode_runs(runs: Sequence[tuple[str, int, Sequence[SignedEntry]]]) -> bytes:
    """A batch with exactly these run labels and entry order (which `encode_batch` would
    never produce for out-of-order entries): the layout of sync/protocol/batch.py."""
    header = canonical({"runs": [[origin, first, len(items)] for origin, first, items in runs]})
    entries = [entry for _, _, items in runs for entry in items]
    parts = [MAGIC, header, b"\n"]
    for entry in entries:
        parts += [struct.pack(">I", len(entry.raw)), entry.raw]
    parts += [entry.sig for entry in entries]
    return zstandard.ZstdCompressor().compress(b"".join(parts))
