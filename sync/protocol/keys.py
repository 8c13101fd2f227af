"""Ed25519 identity keys and X25519 seal keys as raw bytes, with the checks enrolment needs.

Invariant: a public key accepted by `check_identity_key` decodes to a point of large order,
so a signature made with it cannot be valid for every message (small-order and identity
points are refused, as DESIGN §2 asks).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from sync.protocol import i18n
from sync.protocol.errors import EnrolmentError, KeyFileError

# Edwards curve -x^2 + y^2 = 1 + d x^2 y^2 over GF(p), p = 2^255 - 19.
_P = 2**255 - 19
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _decompress(encoded: bytes) -> tuple[int, int] | None:
    y = int.from_bytes(encoded, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= _P:
        return None
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x2 = u * pow(v, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = _P - x
    return x, y


def _double(point: tuple[int, int]) -> tuple[int, int]:
    x, y = point
    dxy = _D * x * x * y * y % _P
    x3 = 2 * x * y * pow(1 + dxy, _P - 2, _P) % _P
    y3 = (y * y + x * x) * pow(1 - dxy, _P - 2, _P) % _P
    return x3, y3


def has_small_order(public: bytes) -> bool:
    """True when the encoded point is invalid, the identity, or of order dividing 8."""
    point = _decompress(public)
    if point is None:
        return True
    for _ in range(3):
        point = _double(point)
    return point == (0, 1)


def _raw_key(public_hex: str) -> bytes:
    try:
        raw = bytes.fromhex(public_hex)
    except ValueError:
        raise EnrolmentError("key.not_hex", key=public_hex[:16]) from None
    if len(raw) != 32:
        raise EnrolmentError("key.length", length=len(raw))
    return raw


def check_identity_key(public_hex: str) -> bytes:
    """The 32 raw bytes of an Ed25519 public key, or EnrolmentError saying why not."""
    raw = _raw_key(public_hex)
    if has_small_order(raw):
        raise EnrolmentError("key.small_order", key=public_hex[:16])
    return raw


def check_seal_key(public_hex: str) -> bytes:
    """The 32 raw bytes of an X25519 public key; all-zero and low-order keys are refused."""
    raw = _raw_key(public_hex)
    probe = X25519PrivateKey.generate()

    try:
        probe.exchange(X25519PublicKey.from_public_bytes(raw))
    except ValueError:
        raise EnrolmentError("key.small_order", key=public_hex[:16]) from None
    return raw


class Signer:
    """An Ed25519 identity: signs hashes for entries, receipts and requests."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise KeyFileError("key.file_bad")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public = self._key.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate().private_bytes_raw())

    @property
    def seed(self) -> bytes:
        return self._key.private_bytes_raw()

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


_VERIFIERS: dict[bytes, Ed25519PublicKey] = {}


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `message` by `public`."""
    key = _VERIFIERS.get(public)
    if key is None:
        key = Ed25519PublicKey.from_public_bytes(public)
        if len(_VERIFIERS) < 4096:
            _VERIFIERS[public] = key
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


i18n.register(
    {
        "key.not_hex": ("Key {key}… is not hexadecimal.", "密钥 {key}… 不是十六进制。"),
        "key.length": (
            "A key must be 32 bytes (64 hex digits), not {length}.",
            "密钥应为 32 字节（64 位十六进制），实为 {length} 字节。",
        ),
        "key.small_order": (
            "Key {key}… is a small-order or identity point and cannot be enrolled.",
            "密钥 {key}… 是小阶点或单位点，不能登记。",
        ),
        "key.file_bad": ("The key file is damaged or not a key.", "密钥文件已损坏或不是密钥。"),
    }
)
