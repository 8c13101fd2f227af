"""A home's key files: written once 0600, refused when others may read them.

`node.key` (the identity key, Ed25519 seed) and `seal.key` (X25519, what sealed bodies and
bundles are opened with), each with its `.next` (a rotation under way) and `.old` (the
retired key, kept for the wire for a while) — see sync.rekey.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sync.protocol.errors import KeyFileError
from sync.protocol.keys import Signer

NODE_KEY, SEAL_KEY = "node.key", "seal.key"
NEXT, OLD = ".next", ".old"
NEXT_KEY, OLD_KEY = NODE_KEY + NEXT, NODE_KEY + OLD
NEXT_SEAL, OLD_SEAL = SEAL_KEY + NEXT, SEAL_KEY + OLD


def write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def read_secret(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
        text = path.read_text("ascii").strip()
    except FileNotFoundError:
        raise KeyFileError("key.missing", path=str(path)) from None
    except (OSError, UnicodeDecodeError):
        raise KeyFileError("key.file_bad") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError("key.too_open", path=str(path))
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise KeyFileError("key.file_bad") from None


def read_signer(path: Path) -> Signer:
    return Signer(read_secret(path))


def read_seal(path: Path) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(read_secret(path))


def read_seal_secret(path: Path) -> bytes:
    """The seal key's 32 bytes, checked as `read_seal` checks them, without making the key:
    making one loads OpenSSL's backend (~8 ms), which a command that opens nothing sealed
    does not need (#13). Any 32 bytes are an X25519 private key."""
    secret = read_secret(path)
    if len(secret) != 32:
        X25519PrivateKey.from_private_bytes(secret)  # raises as read_seal would
    return secret


def seal_public_hex(seal: X25519PrivateKey) -> str:
    return seal.public_key().public_bytes_raw().hex()
