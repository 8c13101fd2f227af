"""Log entries (DESIGN §2): encode once, hash, sign, and verify runs of them.

Invariants:
- `raw` is produced once by `encode_entry` (canonical JSON) and never re-serialised;
  `hash = SHA-256(raw)`, the signature is Ed25519 over `ENTRY_DOMAIN + hash`.
- A valid signature on entry n vouches for every entry of the same origin below it,
  because each entry's bytes contain the hash of the one before (`prev`). `verify_run`
  uses that: it checks every hash link, and signatures only as needed to prove the run.
"""

from __future__ import annotations

import hashlib
import re
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

import msgspec

from sync.protocol import i18n
from sync.protocol.canonical import MAX_INT, canonical, check_value
from sync.protocol.errors import EntryError, ZhibaoError
from sync.protocol.ids import is_node_id
from sync.protocol.keys import Signer, verify

ENTRY_DOMAIN = b"zhibao/entry/v1\0"
FORMAT_VERSION = 1
MAX_ENTRY_BYTES = 32 * 1024
SIGNATURE_BYTES = 64
LOOK_BACK = 64  # signatures tried below a tip whose own signature fails (see verify_run)
_TYPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")  # fullmatch: no "\n" after
_HEX64 = re.compile(r"[0-9a-f]{64}")

# The instants an entry's `at` may name: every tier can represent them in Asia/Shanghai and
# count working days from them without leaving what `datetime` holds (a year-9999 stamp with
# a negative offset once stopped every projection). [AT_EARLIEST, AT_LATEST)
AT_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
AT_LATEST = datetime(2100, 1, 1, tzinfo=UTC)
_SAFE_FIRST, _SAFE_LAST = AT_EARLIEST.year + 1, AT_LATEST.year - 2  # whatever the offset
BodyCheck = Callable[[dict[str, Any]], None]
_decode_any = msgspec.json.Decoder().decode


class Envelope(msgspec.Struct, forbid_unknown_fields=True):
    """An entry's fields as decoded for checking: exactly these keys, each value checked
    where a refusal can name it; the body stays JSON until its type's check reads it."""

    v: Any
    origin: Any
    seq: Any
    prev: Any
    at: Any
    type: Any
    body: msgspec.Raw


_decode_envelope = msgspec.json.Decoder(Envelope).decode
_BODY_CHECKS: dict[str, Callable[[msgspec.Raw], None]] = {}


class _BodyFault(Exception):
    """A body that is not JSON, or not an object (reason key and params for the refusal)."""

    def __init__(self, reason_key: str, **params: object) -> None:
        super().__init__(reason_key)
        self.reason_key, self.params = reason_key, params


def register_body_check(entry_type: str, check: type[msgspec.Struct] | BodyCheck) -> None:
    """Let a layer above check the body of its own entry types.

    `check` is a `msgspec.Struct` type: the body must convert to it (shape, types, ranges,
    checked in C; its `__post_init__` says what a shape cannot; other keys are let through).
    Or, for bodies whose check needs code of its own, a function on the body that raises
    ValueError to refuse; such bodies must also hold only what `canonical` writes (no
    floats, integers within 64 bits). A check raises msgspec.ValidationError or _BodyFault.
    """
    if isinstance(check, type) and issubclass(check, msgspec.Struct):
        _BODY_CHECKS[entry_type] = _converting(check)
    else:
        _BODY_CHECKS[entry_type] = _calling(cast(BodyCheck, check))


def _whole(body: msgspec.Raw) -> dict[str, Any]:
    """The body decoded whole, as `entry_fields` (the projections) will read it."""
    try:
        value = _decode_any(body)
    except ValueError:
        raise _BodyFault("entry.not_json") from None
    if type(value) is not dict:
        raise _BodyFault("entry.bad_field", field="body")
    return value


def _converting(schema: type[msgspec.Struct]) -> Callable[[msgspec.Raw], None]:
    """Usually one pass in C: decode into `schema` closed to other keys, which reads every
    byte. Should that fail (another key, or anything wrong), the verdict is the body
    decoded whole and converted to `schema` open to other keys. The closed decoder is made
    on the first body checked: every command registers every type, few check any (#13)."""
    decoders: list[Callable[[msgspec.Raw], object]] = []

    def run(body: msgspec.Raw) -> None:
        if not decoders:
            closed = types.new_class(
                f"Closed{schema.__name__}", (schema,), {"forbid_unknown_fields": True}
            )
            decoders.append(msgspec.json.Decoder(closed).decode)
        try:
            decoders[0](body)
        except ValueError:
            msgspec.convert(_whole(body), schema)

    return run


def _calling(check: BodyCheck) -> Callable[[msgspec.Raw], None]:
    def run(body: msgspec.Raw) -> None:
        value = _whole(body)
        try:
            check_value(value, "body")  # no floats, no integers SQLite could not hold
            check(value)
        except (ValueError, TypeError, KeyError, ZhibaoError) as exc:  # a ZhibaoError's
            raise msgspec.ValidationError(str(exc)) from None  # str is in the locale's words

    return run


_ANY_BODY = _calling(lambda body: None)  # a type no layer knows: any canonical object


_new_tuple = tuple.__new__  # SignedEntry(...) without the named tuple's Python-level __new__


class SignedEntry(NamedTuple):
    """An entry's exact bytes with its hash and its author's signature beside them.

    A named tuple, not a frozen dataclass: one is made for every entry received, and a
    frozen dataclass costs several times more to build."""

    raw: bytes
    sig: bytes
    hash: bytes
    origin: str
    seq: int
    type: str

    def fields(self) -> dict[str, Any]:
        return entry_fields(self.raw)


def entry_fields(raw: bytes) -> Any:
    """The JSON value of an entry's bytes (ValueError if they are not strict UTF-8 JSON).

    msgspec, not the standard library: several times faster, and stricter (UTF-8 only,
    no NaN, no lone surrogates); `canonical` never writes anything it would refuse.
    """
    return _decode_any(raw)


def entry_hash(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


def signing_message(digest: bytes) -> bytes:
    return ENTRY_DOMAIN + digest


def encode_entry(
    origin: str, seq: int, prev: bytes | None, at: str, entry_type: str, body: dict[str, Any]
) -> bytes:
    """The canonical bytes of a new entry (the only place entries are serialised)."""
    return canonical(
        {
            "v": FORMAT_VERSION,
            "origin": origin,
            "seq": seq,
            "prev": prev.hex() if prev is not None else None,
            "at": at,
            "type": entry_type,
            "body": body,
        }
    )


def sign_entry(signer: Signer, raw: bytes) -> SignedEntry:
    """Hash and sign `raw`; checks the envelope so a node never writes what it would refuse."""
    fields = parse_envelope(raw)
    digest = entry_hash(raw)
    return SignedEntry(
        raw, signer.sign(signing_message(digest)), digest, fields.origin, fields.seq, fields.type
    )


def _refuse(origin: object, seq: object, reason_key: str, **params: object) -> EntryError:
    return EntryError(
        "entry.rejected",
        origin=origin,
        seq=seq,
        reason=i18n.t(reason_key, **params),
        reason_key=reason_key,
        reason_params=params,
    )


def _load(raw: bytes, origin: str | None, seq: int | None) -> Envelope:
    """The fields of `raw`: size, strict JSON, exactly the envelope's keys."""
    if len(raw) > MAX_ENTRY_BYTES:
        raise _refuse(origin, seq, "entry.too_big", size=len(raw), limit=MAX_ENTRY_BYTES)
    try:
        return _decode_envelope(raw)
    except ValueError:  # msgspec.DecodeError (ValidationError among them), UnicodeDecodeError
        pass
    try:  # say which: not JSON at all, or not the envelope's keys
        _decode_any(raw)
    except ValueError:
        raise _refuse(origin, seq, "entry.not_json") from None
    raise _refuse(origin, seq, "entry.fields")


def _check_content(fields: Envelope, o: str, s: int) -> None:
    """`at`, `type` and `body` of an entry whose identity (origin, seq, prev, v) is checked."""
    at = fields.at
    try:  # the rule the projections read `at` by (C): ISO 8601 with an offset (fixed, so
        # a tzinfo is one)
        if type(at) is not str:
            raise ValueError
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None:
            raise ValueError
    except ValueError:
        raise _refuse(o, s, "entry.bad_field", field="at") from None
    if not in_range(moment):
        first, last = AT_EARLIEST.year, AT_LATEST.year - 1
        raise _refuse(o, s, "entry.at_range", at=at, first=first, last=last)
    kind = fields.type
    check = _BODY_CHECKS.get(kind) if type(kind) is str else None
    if check is None:
        if type(kind) is not str or not _TYPE.fullmatch(kind):
            raise _refuse(o, s, "entry.bad_field", field="type")
        check = _ANY_BODY  # a type no layer here knows: any object `canonical` could write
    try:
        check(fields.body)
    except msgspec.ValidationError as exc:
        raise _refuse(o, s, "entry.schema", type=kind, detail=str(exc)) from None
    except _BodyFault as fault:
        raise _refuse(o, s, fault.reason_key, **fault.params) from None


def in_range(moment: datetime) -> bool:
    """Whether an aware `moment` lies in [AT_EARLIEST, AT_LATEST). Its own year decides
    alone away from the edges (an offset is less than a day; comparing across offsets costs
    ~1.7 µs, on every entry received) and before any comparison (one near year 1 or 9999
    could overflow)."""
    if _SAFE_FIRST <= moment.year <= _SAFE_LAST:
        return True
    return _SAFE_FIRST - 2 <= moment.year <= _SAFE_LAST + 2 and AT_EARLIEST <= moment < AT_LATEST


def parse_envelope(raw: bytes, origin: str | None = None, seq: int | None = None) -> Envelope:
    """Parse and check the envelope and body of `raw` (size, fields, types, schema)."""
    fields = _load(raw, origin, seq)
    o, s, prev = fields.origin, fields.seq, fields.prev
    if not is_node_id(o):
        raise _refuse(origin, seq, "entry.bad_field", field="origin")
    if type(s) is not int or not 1 <= s <= MAX_INT:
        raise _refuse(o, seq, "entry.bad_field", field="seq")
    if type(fields.v) is not int or fields.v != FORMAT_VERSION:
        raise _refuse(o, s, "entry.version", version=fields.v)
    if not (prev is None if s == 1 else type(prev) is str and _HEX64.fullmatch(prev)):
        raise _refuse(o, s, "entry.bad_field", field="prev")
    if (origin is not None and o != origin) or (seq is not None and s != seq):
        raise _refuse(origin, seq, "entry.mislabelled", got=f"{o}#{s}")
    _check_content(fields, o, s)
    return fields


@dataclass(frozen=True, slots=True)
class RunResult:
    """What `verify_run` proved: the accepted prefix and, if it stopped early, why."""

    accepted: list[SignedEntry]
    error: EntryError | None


def verify_run(
    origin: str,
    items: Sequence[tuple[bytes, bytes]],
    *,
    head_seq: int,
    head_hash: bytes | None,
    public_key: bytes,
) -> RunResult:
    """Verify consecutive entries of `origin` that follow (head_seq, head_hash).

    Every size limit, envelope, sequence number and hash link is checked. Signatures: the
    last entry of the chained prefix is checked, and vouches for every entry below it; if
    its own signature fails, the entries below it are tried from the top, at most
    `LOOK_BACK` of them, and the first that verifies vouches for itself and all below it
    (the rest is refused).
    An entry whose origin, seq, prev and version are exactly the ones expected next has a
    well-formed identity by that alone; any other goes through `parse_envelope`, which
    names what is wrong with it.
    """
    chained: list[SignedEntry] = []
    error: EntryError | None = None
    known_origin = is_node_id(origin)
    expected = head_seq + 1
    want_prev = head_hash.hex() if head_hash is not None else None
    for raw, sig in items:
        try:
            fields = _load(raw, origin, expected)
            s = fields.seq
            if not (
                known_origin
                and fields.origin == origin
                and s == expected
                and type(s) is int
                and fields.prev == want_prev
                and fields.v == FORMAT_VERSION
                and type(fields.v) is int
            ):
                parse_envelope(raw, origin)  # raises unless well formed: then out of place
                if s != expected:
                    raise _refuse(origin, s, "entry.seq_gap", expected=expected)
                raise _refuse(origin, expected, "entry.chain")
            _check_content(fields, origin, expected)
            if len(sig) != SIGNATURE_BYTES:
                raise _refuse(origin, expected, "entry.signature")
        except EntryError as exc:
            error = exc
            break
        digest = entry_hash(raw)
        chained.append(_new_tuple(SignedEntry, (raw, sig, digest, origin, expected, fields.type)))
        expected += 1
        want_prev = digest.hex()
    if not chained:
        return RunResult([], error)
    tip = chained[-1]
    if verify(public_key, signing_message(tip.hash), tip.sig):
        return RunResult(chained, error)
    for index in range(len(chained) - 2, max(-1, len(chained) - 2 - LOOK_BACK), -1):
        entry = chained[index]
        if verify(public_key, signing_message(entry.hash), entry.sig):
            bad = _refuse(origin, entry.seq + 1, "entry.signature")
            return RunResult(chained[: index + 1], bad)
    return RunResult([], _refuse(origin, chained[0].seq, "entry.signature"))


i18n.register(
    {
        "entry.too_big": (
            "entry of {size} bytes exceeds {limit}",
            "条目 {size} 字节，超过上限 {limit}",
        ),
        "entry.not_json": ("not valid UTF-8 JSON", "不是有效的 UTF-8 JSON"),
        "entry.fields": ("wrong set of fields", "字段不符合格式"),
        "entry.bad_field": ("field '{field}' is malformed", "字段 {field} 格式错误"),
        "entry.version": ("unknown format version {version}", "未知格式版本 {version}"),
        "entry.at_range": (
            "time {at} is outside the years {first}-{last} an entry may name",
            "时间 {at} 超出条目允许的 {first}—{last} 年范围",
        ),
        "entry.mislabelled": ("labelled as another entry ({got})", "与所标条目不符（实为 {got}）"),
        "entry.schema": ("body of {type} is invalid: {detail}", "{type} 的内容无效：{detail}"),
        "entry.seq_gap": (
            "expected seq {expected} (gap or reorder)",
            "应为序号 {expected}（缺号或乱序）",
        ),
        "entry.chain": ("hash chain broken (prev does not match)", "哈希链断裂（prev 不符）"),
        "entry.signature": ("bad signature", "签名无效"),
        "entry.unknown_key": ("node {origin} is not enrolled here", "节点 {origin} 未在此登记"),
        "entry.frozen": (
            "origin {origin} is frozen after a fork; an admin must resolve it",
            "来源 {origin} 出现分叉已冻结，需管理员处理",
        ),
        "entry.fork": (
            "fork: a different entry with the same seq is already held",
            "分叉：已持有同一序号的不同条目",
        ),
        "entry.not_allowed": (
            "{sender} may not send the log of {origin}",
            "{sender} 无权发送 {origin} 的日志",
        ),
    }
)
