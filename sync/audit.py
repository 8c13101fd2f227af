"""`log verify`: re-check every stored entry, every signature, every link (DESIGN §2).

An audit checks every entry's bytes, link and signature, so a changed byte, a broken
chain, a bad or foreign signature or a missing seq is named by origin and seq. A signature
that does not verify on an entry that a later entry of the same log vouches for (its own
signature good, every link between them whole) is no problem: the chain proves the entry,
as it did when ingest took it (sync.ingest), and a relay or a hostile author may have
stored garbage there on purpose. Such entries are counted (`vouched`), not reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from sync.keyring import Answer, KeyRing
from sync.protocol import i18n
from sync.protocol.entry import entry_hash, parse_envelope, signing_message
from sync.protocol.errors import EntryError
from sync.protocol.keys import verify
from sync.store import Store


@dataclass
class AuditReport:
    origins: int = 0
    entries: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)
    vouched: dict[str, int] = field(default_factory=dict)  # origin -> inner bad signatures

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "origins": self.origins,
            "entries": self.entries,
            "problems": self.problems,
            "vouched": self.vouched,
        }


def _problem(report: AuditReport, origin: str, seq: int, kind: str, **detail: Any) -> None:
    report.problems.append(
        {"origin": origin, "seq": seq, "kind": kind, "detail": i18n.t(f"audit.{kind}", **detail)}
    )


def _unproved(report: AuditReport, origin: str, seqs: list[int]) -> None:
    """Bad signatures that no later signature vouches for are problems."""
    for seq in seqs:
        _problem(report, origin, seq, "signature")
    seqs.clear()


def verify_log(store: Store, origin: str | None = None) -> AuditReport:
    """Check every entry held (or one origin's); never stops at the first problem."""
    with store.snapshot():
        return _verify(store, origin)


def _verify(store: Store, origin: str | None) -> AuditReport:
    report = AuditReport()
    origins = [origin] if origin else sorted(store.heads())
    for current in origins:
        report.origins += 1
        ring = KeyRing.load(store, current)
        if not ring.enrols:
            _problem(report, current, 0, "unknown_key")
        answer: Answer | None = None  # the key for this seq, and how far it holds
        expected, prev = 1, None
        unproved: list[int] = []  # seqs whose signature failed, since the chain was whole
        for entry in store.iter_all(current):
            report.entries += 1
            if not isinstance(entry.raw, bytes):  # edited behind our back as TEXT
                entry = replace(entry, raw=str(entry.raw).encode())
            actual = entry_hash(entry.raw)
            linked = entry.seq == expected
            if not linked:
                _problem(report, current, expected, "missing", first=expected, last=entry.seq - 1)
                prev = None
            if actual != entry.hash:
                _problem(report, current, entry.seq, "changed")
            try:
                fields = parse_envelope(entry.raw, current, entry.seq)
                if prev is not None and fields.prev != prev.hex():
                    _problem(report, current, entry.seq, "chain")
                    linked = False
            except EntryError as exc:
                _problem(report, current, entry.seq, "malformed", reason=exc.params["reason"])
                linked = False
            if not linked:  # nothing from here on vouches for what came before
                _unproved(report, current, unproved)
            if answer is None or (answer.through is not None and entry.seq > answer.through):
                answer = ring.span(entry.seq)
            key = answer.key
            if key is None and answer.why == "entry.revoked":
                _problem(report, current, entry.seq, "revoked", cut=answer.cut)
            elif key is not None and not verify(key, signing_message(actual), entry.sig):
                unproved.append(entry.seq)
            elif unproved:
                report.vouched[current] = report.vouched.get(current, 0) + len(unproved)
                unproved.clear()
            expected, prev = entry.seq + 1, actual
        _unproved(report, current, unproved)
        head_seq, head_hash = store.head(current)
        if head_seq != expected - 1 or (prev is not None and head_hash != prev):
            _problem(report, current, head_seq, "head", held=expected - 1)
    return report


i18n.register(
    {
        "audit.unknown_key": ("no enrolled key for this origin", "此来源没有已登记的密钥"),
        "audit.revoked": (
            "held, but signed after the revocation of its key (cut-off seq {cut})",
            "已持有，但签名时间在其密钥吊销（截止序号 {cut}）之后",
        ),
        "audit.missing": ("entries {first}..{last} are missing", "缺少条目 {first}..{last}"),
        "audit.changed": (
            "stored bytes were changed (hash mismatch)",
            "存储的字节被改动（哈希不符）",
        ),
        "audit.chain": (
            "hash chain broken: prev does not match the entry before",
            "哈希链断裂：prev 与前一条不符",
        ),
        "audit.malformed": ("malformed entry: {reason}", "条目格式错误：{reason}"),
        "audit.signature": (
            "signature does not verify with the enrolled key",
            "签名无法用已登记的密钥验证",
        ),
        "audit.head": (
            "head record disagrees with the log (log ends at {held})",
            "头记录与日志不符（日志止于 {held}）",
        ),
    }
)
