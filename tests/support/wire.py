"""Hand-made requests and batches, to send the server exactly what a test wants."""

from __future__ import annotations

import json
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import zstandard

from sync.clock import Clock
from sync.protocol.batch import MAGIC, encode_batch
from sync.protocol.canonical import canonical
from sync.protocol.entry import SignedEntry, entry_hash
from sync.protocol.ids import parent_of
from sync.protocol.keys import Signer
from sync.protocol.messages import request_headers

BATCH_TYPE = "application/x-zhibao-batch"


@dataclass(frozen=True)
class SignedRequest:
    """One request exactly as it goes on the wire (so it can be sent twice)."""

    method: str
    path: str
    body: bytes
    headers: dict[str, str]

    def send(self, url: str) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=30) as client:
            return client.request(self.method, self.path, content=self.body, headers=self.headers)


def sign_request(
    signer: Signer,
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
    (by default the parent of `node_id`)."""
    stamp = (clock or Clock()).stamp()
    nonce = nonce or secrets.token_hex(16)
    server = server or parent_of(node_id) or node_id
    headers = {
        "content-type": content_type,
        **request_headers(
            signer, method, path, body, node=node_id, server=server, time=stamp, nonce=nonce
        ),
    }
    return SignedRequest(method, path, body, headers)


def push_request(signer: Signer, node_id: str, batch: bytes) -> SignedRequest:
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
