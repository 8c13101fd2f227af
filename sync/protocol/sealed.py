"""Sealing to a node's enrolled seal key (HPKE, RFC 9180), for bundles and the wire.

One suite everywhere: base mode, X25519 KEM, HKDF-SHA256, ChaCha20-Poly1305
(`SUITE_NAME`). `seal(plain, public, info)` gives `enc || ciphertext` (32 + len + 16
bytes); `open_sealed` undoes it, or raises `SealError` when the key or the `info` is not
the one it was sealed with, or a byte changed. `info` names the context (a domain and what
the sealed bytes belong to), so sealed bytes cannot be moved into another context.

The private wire (DESIGN §4, docs/protocol.md "Private wire"): a sealed HTTP body is
`WIRE_MAGIC + seal(...)`; a plain one (a batch, JSON) never starts with it.
- a request body is sealed to the server's enrolled seal key with `request_info`: method,
  path, sender, server, time and nonce of the signed request it travels in, so it opens
  only as the body of that one request (not on another endpoint, not from another sender,
  not in a replay with a new nonce);
- an answer body is sealed to the requester's enrolled seal key with `answer_info`: the
  same request's method, path, sender, server, nonce and the digest of its body on the wire,
  so an answer opens only as the answer to that request.
The request signature covers the sealed bytes (their digest), as it covers a plain body.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from sync.protocol.canonical import canonical

SUITE_NAME = "X25519-HKDF-SHA256-ChaCha20Poly1305"
WIRE_MAGIC = b"ZBW1"  # a sealed wire body; a batch starts with zstd's magic, JSON with "{"
WIRE_REQUEST_DOMAIN = b"zhibao/wire-request/v1\0"
WIRE_ANSWER_DOMAIN = b"zhibao/wire-answer/v1\0"
SEALED_TYPE = "application/x-zhibao-sealed"
OVERHEAD = len(WIRE_MAGIC) + 32 + 16  # magic, the KEM's encapsulated key, the AEAD tag
_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


class SealError(ValueError):
    """Sealed bytes that do not open with this key and context (or are not sealed)."""


def seal(plain: bytes | memoryview, public: bytes, info: bytes) -> bytes:
    """`plain` sealed to the X25519 public key `public` (32 bytes) in context `info`."""
    return _SUITE.encrypt(plain, X25519PublicKey.from_public_bytes(public), info=info)


def open_sealed(sealed: bytes | memoryview, private: X25519PrivateKey, info: bytes) -> bytes:
    """What `seal` sealed to `private`'s public key in context `info`; SealError otherwise."""
    try:
        return _SUITE.decrypt(sealed, private, info=info)
    except (InvalidTag, ValueError):
        raise SealError("does not open with this key and context") from None


def request_info(method: str, path: str, sender: str, server: str, time: str, nonce: str) -> bytes:
    """The context of a request body: the signed request it is the body of."""
    return WIRE_REQUEST_DOMAIN + canonical([method.upper(), path, sender, server, time, nonce])


def answer_info(method: str, path: str, sender: str, server: str, nonce: str, digest: str) -> bytes:
    """The context of an answer body: the request (and its body's digest) it answers."""
    return WIRE_ANSWER_DOMAIN + canonical([method.upper(), path, sender, server, nonce, digest])


def is_sealed(body: bytes | memoryview) -> bool:
    return bytes(body[: len(WIRE_MAGIC)]) == WIRE_MAGIC


def seal_body(plain: bytes | memoryview, public: bytes, info: bytes) -> bytes:
    """A sealed wire body: `WIRE_MAGIC` and `plain` sealed to `public` in context `info`."""
    return WIRE_MAGIC + seal(plain, public, info)


def open_body(
    body: bytes | memoryview, privates: Sequence[X25519PrivateKey], info: bytes
) -> bytes:
    """The plain bytes of a sealed wire body, opened with the first of `privates` that can
    (a node's seal key, and its retired one for a while after a rotation); SealError if it
    is not one or opens with none."""
    if not is_sealed(body):
        raise SealError("not a sealed body")
    return open_with_any(memoryview(body)[len(WIRE_MAGIC) :], privates, info)


def open_with_any(
    sealed: bytes | memoryview, privates: Sequence[X25519PrivateKey], info: bytes
) -> bytes:
    for private in privates[:-1]:
        try:
            return open_sealed(sealed, private, info)
        except SealError:
            continue
    return open_sealed(sealed, privates[-1], info)
