"""Signed statements besides entries: receipts (of entries and of materials), request
signatures and time answers (DESIGN §2, §4).

Each has its own domain prefix, so a signature made for one kind of message can never be
replayed as another. Messages are canonical JSON, signed once, verified from the bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sync.protocol.canonical import canonical
from sync.protocol.errors import RefusedError
from sync.protocol.keys import Signer, verify

RECEIPT_DOMAIN = b"zhibao/receipt/v1\0"
REQUEST_DOMAIN = b"zhibao/request/v2\0"  # v2: the request names the server it is for
BUNDLE_DOMAIN = b"zhibao/bundle/v1\0"
TIME_DOMAIN = b"zhibao/time/v1\0"
BLOB_RECEIPT_DOMAIN = b"zhibao/blob-receipt/v1\0"


@dataclass(frozen=True)
class Receipt:
    """ "`issuer` holds each origin up to seq with hash" — the acknowledgement of a push."""

    raw: bytes
    sig: bytes
    issuer: str
    at: str
    heads: dict[str, tuple[int, str]]

    def to_json(self) -> dict[str, Any]:
        return {"raw": self.raw.decode(), "sig": self.sig.hex()}


def make_receipt(
    signer: Signer, issuer: str, at: str, heads: dict[str, tuple[int, bytes]]
) -> Receipt:
    body = {"issuer": issuer, "at": at, "heads": {o: [s, h.hex()] for o, (s, h) in heads.items()}}
    raw = canonical(body)
    return Receipt(
        raw,
        signer.sign(RECEIPT_DOMAIN + raw),
        issuer,
        at,
        {o: (s, h.hex()) for o, (s, h) in heads.items()},
    )


def read_receipt(raw: bytes, sig: bytes, public_key: bytes) -> Receipt:
    """Verify and parse a receipt; RefusedError if forged or malformed."""
    if not verify(public_key, RECEIPT_DOMAIN + raw, sig):
        raise RefusedError("receipt.forged")
    try:
        body = json.loads(raw)
        heads = {str(o): (int(s), str(h)) for o, (s, h) in body["heads"].items()}
        return Receipt(raw, sig, str(body["issuer"]), str(body["at"]), heads)
    except (ValueError, KeyError, TypeError):
        raise RefusedError("receipt.malformed") from None


@dataclass(frozen=True)
class BlobReceipt:
    """ "`issuer` holds each of `held` whole, checked against its SHA-256" — said to `to`,
    the node that sent (or asked about) them: the acknowledgement of a material."""

    raw: bytes
    sig: bytes
    issuer: str
    to: str
    at: str
    held: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"raw": self.raw.decode(), "sig": self.sig.hex()}


def make_blob_receipt(
    signer: Signer, issuer: str, to: str, at: str, held: Sequence[str]
) -> BlobReceipt:
    body = {"issuer": issuer, "to": to, "at": at, "held": sorted(set(held))}
    raw = canonical(body)
    return BlobReceipt(
        raw, signer.sign(BLOB_RECEIPT_DOMAIN + raw), issuer, to, at, tuple(body["held"])
    )


def read_blob_receipt(raw: bytes, sig: bytes, public_key: bytes) -> BlobReceipt:
    """Verify and parse a material receipt; RefusedError if forged or malformed."""
    if not verify(public_key, BLOB_RECEIPT_DOMAIN + raw, sig):
        raise RefusedError("receipt.forged")
    try:
        body = json.loads(raw)
        held = body["held"]
        if not isinstance(held, list) or not all(isinstance(h, str) for h in held):
            raise TypeError("held")
        return BlobReceipt(
            raw, sig, str(body["issuer"]), str(body["to"]), str(body["at"]), tuple(held)
        )
    except (ValueError, KeyError, TypeError):
        raise RefusedError("receipt.malformed") from None


SENDER, SERVER, TIME, NONCE, DIGEST, SIGNATURE = (
    "x-zhibao-node",
    "x-zhibao-server",
    "x-zhibao-time",
    "x-zhibao-nonce",
    "x-zhibao-digest",
    "x-zhibao-signature",
)
# "plain" from a client asked for the clear wire: a server serving plain then answers plain
# (docs/protocol.md "Private wire"); not signed, it cannot make a sealed server send clear
WIRE = "x-zhibao-wire"


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def request_message(
    method: str, path: str, body: bytes, node: str, time: str, nonce: str, *, server: str
) -> bytes:
    """What a node signs for one HTTP request: method, path (with its query string, if
    any), body digest, sender, time, nonce, and the server it is for, so a request made
    for one server is refused by any other (it cannot be replayed there)."""
    return digest_message(method, path, body_digest(body), node, time, nonce, server=server)


def digest_message(
    method: str, path: str, digest: str, node: str, time: str, nonce: str, *, server: str
) -> bytes:
    """`request_message` from the body's digest (what a server checks before the body)."""
    return REQUEST_DOMAIN + canonical([method.upper(), path, digest, node, server, time, nonce])


def request_headers(
    signer: Signer, method: str, path: str, body: bytes, *, node: str, server: str, time: str,
    nonce: str,
) -> dict[str, str]:  # fmt: skip
    """The headers of a signed request. The body's digest travels in one of them, so the
    server checks the signature before it reads a byte of the body."""
    digest = body_digest(body)
    message = digest_message(method, path, digest, node, time, nonce, server=server)
    return {
        SENDER: node,
        SERVER: server,
        TIME: time,
        NONCE: nonce,
        DIGEST: digest,
        SIGNATURE: signer.sign(message).hex(),
    }


def time_message(server: str, time: str, nonce: str) -> bytes:
    """What a server signs when it tells the time: its id, the time and the client's fresh
    challenge, so an answer cannot be replayed to another client or later."""
    return TIME_DOMAIN + canonical([server, time, nonce])


def bundle_message(header: bytes, payload: bytes) -> bytes:
    return BUNDLE_DOMAIN + hashlib.sha256(header).digest() + hashlib.sha256(payload).digest()
