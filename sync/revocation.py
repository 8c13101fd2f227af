"""`node revoke` and `node enroll --continue-from`: what an ancestor checks before it
writes a revocation or a replacement key (DESIGN §8; the rules every node applies to them
are in sync.keyring).

The cut-off of a revocation is never below what the revoking node already holds of that
log: those entries were verified and counted here, and a cut-off below them would unsay
them on some nodes and not on others. A replacement key continues the log after a seq
that is at least what the parent holds (so a restore onto it never forks) and, after a
revocation, exactly at its cut-off (the seqs between could be signed by no key at all).
"""

from __future__ import annotations

import hashlib
from typing import Any

from sync import keyring
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.canonical import canonical
from sync.protocol.entry import SignedEntry
from sync.protocol.errors import EnrolmentError, HomeError
from sync.protocol.ids import is_within

_REPORTED = "revoked_uses_reported"  # meta: digest of the counts last relayed up


def revoke(
    node: Node, node_id: str, reason: str, after_seq: int | None = None, at: str | None = None
) -> tuple[SignedEntry, dict[str, Any]]:
    """Append a revocation of `node_id`'s key; returns the entry and its body."""
    me, store = node.node_id, node.store
    if node_id == me or not is_within(node_id, me):
        raise EnrolmentError("revoke.not_below", origin=me, node_id=node_id)
    reason = reason.strip()
    if not reason or len(reason) > keyring.REASON_MAX:
        raise EnrolmentError("revoke.reason", limit=keyring.REASON_MAX)
    with store.transaction():
        ring = keyring.KeyRing.load(store, node_id)
        if not ring.enrols:
            raise EnrolmentError("revoke.unknown", node_id=node_id)
        if ring.revoked():
            raise EnrolmentError("revoke.already", node_id=node_id, cut=max(ring.cuts))
        held = store.head(node_id)[0]
        cut = held if after_seq is None else after_seq
        if cut < held:
            raise EnrolmentError("revoke.below_held", node_id=node_id, seq=cut, held=held)
        current = ring.current()
        body = {
            "node_id": node_id,
            "after_seq": cut,
            "reason": reason,
            "public_key": current.hex() if current else None,
        }
        entry = node.append(keyring.REVOKED, body, at=at)
    return entry, body


def report(node: Node) -> None:
    """Relay this node's counts of what revoked keys tried here up in its own log
    (`evidence.revoked_key_used`), when they changed since the last report: the city sees
    what was refused at a town, not only what it refused itself."""
    if node.config.parent_id is None:
        return
    body = keyring.uses_body(node.store)
    if not body["uses"]:
        return
    digest = hashlib.sha256(canonical(body)).hexdigest()
    if node.store.get_meta(_REPORTED) == digest:
        return
    try:
        with node.store.transaction():
            node.append(keyring.USES_REPORT, body)
            node.store.set_meta(_REPORTED, digest)
    except HomeError:  # restoring, frozen or revoked: it cannot write, and says so elsewhere
        return


def check_replacement(node: Node, node_id: str, public_key: str, continue_from: int | None) -> None:
    """Refuse an enrolment that would swap an enrolled node's key in a way that forks
    its log or leaves seqs no key may sign."""
    store = node.store
    ring = keyring.KeyRing.load(store, node_id)
    if continue_from is None:
        if ring.revoked():
            raise EnrolmentError(
                "enrol.revoked_needs_continue", node_id=node_id, cut=max(ring.cuts)
            )
        # what every node compares it with (keyring.enrolment_key_authority): the key
        # enrolled from seq 1 — not the key in force, which a rotation may have changed
        first = next((key for start, key in ring.enrols if start == 0), None)
        if first is not None and first.hex() != public_key.lower():
            raise EnrolmentError("enrol.key_changed", node_id=node_id)
        return
    if not ring.enrols:
        raise EnrolmentError("enrol.continue_unknown", node_id=node_id)
    held = store.head(node_id)[0]
    if continue_from < held:
        raise EnrolmentError("enrol.continue_below", node_id=node_id, seq=continue_from, held=held)
    cuts = [c for c in ring.cuts if c > ring.base_of(1 << 62)]
    if cuts and continue_from != max(cuts):
        raise EnrolmentError("enrol.continue_cut", node_id=node_id, cut=max(cuts))


i18n.register(
    {
        "revoke.not_below": (
            "This node ({origin}) can only revoke nodes below it, not {node_id}.",
            "本节点（{origin}）只能吊销其下级节点，不能吊销 {node_id}。",
        ),
        "revoke.reason": (
            "A revocation needs a --reason (at most {limit} characters).",
            "吊销需要 --reason（不超过 {limit} 个字）。",
        ),
        "revoke.unknown": (
            "{node_id} is not enrolled here: nothing to revoke.",
            "{node_id} 未在此登记：无可吊销。",
        ),
        "revoke.already": (
            "{node_id} is already revoked (after seq {cut}); enrol a new key with "
            "`node enroll … --continue-from {cut}`.",
            "{node_id} 已被吊销（序号 {cut} 之后）；请用 `node enroll … --continue-from {cut}` "
            "登记新密钥。",
        ),
        "revoke.below_held": (
            "{node_id}'s log is held here up to seq {held}, verified and counted: the cut-off "
            "cannot be below it (asked {seq}).",
            "本节点已持有并统计 {node_id} 的日志至序号 {held}：截止序号不能低于它（所填 {seq}）。",
        ),
        "revoke.done": (
            "Revoked the key of {node_id}: entries it signs after seq {cut} are refused "
            "(entry #{seq}).",
            "已吊销 {node_id} 的密钥：其在序号 {cut} 之后签名的条目一律拒收（条目 #{seq}）。",
        ),
        "enrol.revoked_needs_continue": (
            "{node_id} was revoked after seq {cut}: enrol its new key with --continue-from {cut}.",
            "{node_id} 已在序号 {cut} 之后被吊销：请用 --continue-from {cut} 登记其新密钥。",
        ),
        "enrol.continue_unknown": (
            "{node_id} is not enrolled yet: enrol it without --continue-from.",
            "{node_id} 尚未登记：请不带 --continue-from 登记。",
        ),
        "enrol.continue_below": (
            "{node_id}'s log is held here up to seq {held}, signed by its old key: the new "
            "key can continue from {held} or later, not {seq}.",
            "本节点持有 {node_id} 的日志至序号 {held}（旧密钥签名）：新密钥只能从 {held} "
            "或之后接续，不能从 {seq}。",
        ),
        "enrol.continue_cut": (
            "{node_id} was revoked after seq {cut}: its new key must continue from exactly "
            "{cut} (no key may sign the seqs in between).",
            "{node_id} 已在序号 {cut} 之后被吊销：新密钥必须恰好从 {cut} 接续"
            "（中间的序号无密钥可签）。",
        ),
    }
)
