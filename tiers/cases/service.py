"""Case work at a node: one function per `zhibao case` command (DESIGN §3, §7).

Invariants: each function checks everything inside `node.store.transaction()` and only
then appends (the append joins that transaction), so a refusal appends nothing. Every
event names the case's latest event known here that took effect as its `after`. Case ids are
`<node-id>-<YYYYMMDD>-<NNNN>`, numbered per node per day of `at` (China time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sync.clock import local_date
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.errors import (
    CaseError,
    CaseNotFoundError,
    IllegalTransitionError,
    NodeIdError,
)
from sync.protocol.ids import parent_of, tier_of
from tiers.cases import entries as e
from tiers.cases.machine import IN_TRANSIT, TAKE, CaseState, check, check_receive
from tiers.cases.projection import load_case
from tiers.catalogue import CatalogueItem, fen_from_yuan
from tiers.published import get_item


@dataclass(frozen=True)
class Applicant:
    """The citizen a case is for; `id_no` and `phone` are optional."""

    name: str
    id_no: str | None = None
    phone: str | None = None

    def to_body(self) -> dict[str, str]:
        body = {"name": self.name.strip()}
        for key in ("id_no", "phone"):
            value = getattr(self, key)
            if value and value.strip():
                body[key] = value.strip()
        return body


def _item(node: Node, code: str) -> CatalogueItem:
    item = get_item(node.store, code)
    if item is None:
        raise CaseError("case.unknown_item", item_code=code)
    return item


def _state(node: Node, case_id: str) -> CaseState:
    state = load_case(node.store, case_id).state
    if state is None:
        raise CaseNotFoundError("case.not_found", case_id=case_id)
    return state


def _stamp(node: Node, state: CaseState, at: str | None) -> str:
    """The event's time; refuses a day before the case's latest event (a typo in --at)."""
    stamp = node.clock.stamp(at)
    held = load_case(node.store, state.case_id)
    last = max(local_date(ev.at) for ev in held.ordered + held.waiting)
    if local_date(stamp) < last:
        raise CaseError("case.at_before", case_id=state.case_id, at=stamp, last=last.isoformat())
    return stamp


def _append(node: Node, state: CaseState, kind: str, stamp: str, **fields: Any) -> None:
    after = state.anchor  # the last event that took effect, never one the machine refused
    body = {"case_id": state.case_id, "after": list(after) if after else None, **fields}
    node.append(kind, body, at=stamp)


def _act(
    node: Node, case_id: str, action: str, kind: str, at: str | None, *,
    with_item: bool = False, **fields: Any,
) -> str:  # fmt: skip
    """Check `action` on the case and append one `kind` event, in one transaction."""
    with node.store.transaction():
        state = _state(node, case_id)
        item = get_item(node.store, state.item_code) if with_item else None
        check(state, action, node.node_id, item=item)
        stamp = _stamp(node, state, at)
        _append(node, state, kind, stamp, **fields)
    return case_id


def _text(value: str | None, what: str) -> str:
    if value is None or not value.strip():
        raise CaseError("case.blank", field=what)
    return value.strip()


def next_case_id(node: Node, stamp: str) -> str:
    """The next `<node-id>-<YYYYMMDD>-<NNNN>` for the day of `stamp` at this node."""
    prefix = f"{node.node_id}-{local_date(stamp):%Y%m%d}-"
    rows = node.store.query(
        "SELECT case_id FROM case_events WHERE case_id >= ? AND case_id < ? AND origin = ?",
        (prefix, prefix[:-1] + ".", node.node_id),
    )
    numbers = [int(r[0].rsplit("-", 1)[1]) for r in rows]
    return f"{prefix}{max(numbers, default=0) + 1:04d}"


def _receive(
    node: Node, item: CatalogueItem, applicant: Applicant, materials: Sequence[str], stamp: str
) -> CaseState:
    check_receive(item, node.node_id)
    _text(applicant.name, "applicant")
    case_id = next_case_id(node, stamp)
    body = {
        "case_id": case_id, "after": None, "item_code": item.code,
        "applicant": applicant.to_body(),
        "materials": [m.strip() for m in materials if m.strip()],
    }  # fmt: skip
    node.append(e.RECEIVED, body, at=stamp)
    return _state(node, case_id)


def receive(
    node: Node, item_code: str, applicant: Applicant, materials: Sequence[str] = (),
    at: str | None = None,
) -> str:  # fmt: skip
    """收件/代办: record an application for `item_code`; returns the new case id."""
    with node.store.transaction():
        state = _receive(node, _item(node, item_code), applicant, materials, node.clock.stamp(at))
    return state.case_id


def _accept_body(item: CatalogueItem | None, state: CaseState) -> dict[str, Any]:
    if item is None:
        raise CaseError("case.unknown_item", item_code=state.item_code)
    return {"promised_days": item.promised_days}


def accept(
    node: Node, case_id: str | None = None, *, item_code: str | None = None,
    applicant: Applicant | None = None, materials: Sequence[str] = (), at: str | None = None,
) -> str:  # fmt: skip
    """受理. With `item_code` and `applicant`: receive and accept a new case at once.

    On a case forwarded to this node: take custody (`case.taken`), and accept it too unless
    it was accepted below (or this tier does not accept the item).
    """
    with node.store.transaction():
        if case_id is None:
            if item_code is None or applicant is None:
                raise CaseError("case.accept_what")
            new_item = _item(node, item_code)
            stamp = node.clock.stamp(at)
            check(_dry_state(new_item, node), "accept", node.node_id, item=new_item)
            state = _receive(node, new_item, applicant, materials, stamp)
            _append(node, state, e.ACCEPTED, stamp, promised_days=new_item.promised_days)
            return state.case_id
        state = _state(node, case_id)
        item = get_item(node.store, state.item_code)
        if state.status == IN_TRANSIT:
            check(state, TAKE, node.node_id, item=item)
            stamp = _stamp(node, state, at)
            _append(node, state, e.TAKEN, stamp)
            state = _state(node, case_id)
            accepts = item is not None and tier_of(node.node_id) in item.accept_tiers
            if not state.accepted and accepts:
                _append(node, state, e.ACCEPTED, stamp, **_accept_body(item, state))
            return case_id
        check(state, "accept", node.node_id, item=item)
        stamp = _stamp(node, state, at)
        _append(node, state, e.ACCEPTED, stamp, **_accept_body(item, state))
    return case_id


def _dry_state(item: CatalogueItem, node: Node) -> CaseState:
    """A just-received case, to check acceptance before anything is appended."""
    return CaseState("-", item.code, node.node_id, {}, [], "", node.node_id)


def reject(node: Node, case_id: str, reason: str, at: str | None = None) -> str:
    """不予受理, with the reason the applicant is told."""
    return _act(node, case_id, "reject", e.REJECTED, at, reason=_text(reason, "reason"))


def request_supplement(
    node: Node, case_id: str, missing: Sequence[str], at: str | None = None
) -> str:
    """一次性告知补正: list everything missing at once (once before, once after acceptance)."""
    items = [m.strip() for m in missing if m and m.strip()]
    if not items:
        raise CaseError("case.blank", field="missing")
    return _act(node, case_id, "request-supplement", e.SUPPLEMENT_REQUESTED, at, missing=items)


def supply(node: Node, case_id: str, at: str | None = None) -> str:
    """补齐材料. Before acceptance this is the acceptance (the clock starts) where the tier
    accepts the item; after acceptance it ends the supplement's pause."""
    with node.store.transaction():
        state = _state(node, case_id)
        item = get_item(node.store, state.item_code)
        accepts = item is not None and tier_of(node.node_id) in item.accept_tiers
        check(state, "supply", node.node_id)
        stamp = _stamp(node, state, at)
        _append(node, state, e.SUPPLIED, stamp)
        if not state.accepted and accepts:
            state = _state(node, case_id)
            _append(node, state, e.ACCEPTED, stamp, **_accept_body(item, state))
    return case_id


def suspend(node: Node, case_id: str, reason: str, at: str | None = None) -> str:
    """Start a special procedure (实地勘察, 听证, 检验 …): the clock pauses until resume."""
    return _act(node, case_id, "suspend", e.SUSPENDED, at, reason=_text(reason, "reason"))


def resume(node: Node, case_id: str, at: str | None = None) -> str:
    """End the special procedure; the clock runs again."""
    return _act(node, case_id, "resume", e.RESUMED, at)


def extend(node: Node, case_id: str, days: int, reason: str, at: str | None = None) -> str:
    """延长: add `days` working days to the time limit."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 10_000:
        raise CaseError("case.bad_days", days=days)
    return _act(node, case_id, "extend", e.EXTENDED, at, days=days, reason=_text(reason, "reason"))


def forward(
    node: Node, case_id: str, to: str | None = None, note: str | None = None,
    at: str | None = None,
) -> str:  # fmt: skip
    """上报: hand the case to `to` (default: this node's parent); it stays ours until taken."""
    target = (to or default_forward_target(node) or "").strip()
    if not target:
        raise CaseError("case.forward_where", case_id=case_id)
    try:
        tier_of(target)
    except NodeIdError:
        raise CaseError("case.forward_bad", to=target) from None
    if target == node.node_id:
        raise IllegalTransitionError("case.forward_self", case_id=case_id)
    fields: dict[str, Any] = {"to": target}
    if note and note.strip():
        fields["note"] = note.strip()
    return _act(node, case_id, "forward", e.FORWARDED, at, **fields)


def complete(
    node: Node, case_id: str, result: str, note: str | None = None, at: str | None = None
) -> str:
    """办结: approved or denied, by a node of the item's deciding tier or above."""
    if result not in e.RESULTS:
        raise CaseError("case.bad_result", result=result)
    fields: dict[str, Any] = {"result": result}
    if note and note.strip():
        fields["note"] = note.strip()
    return _act(node, case_id, "complete", e.COMPLETED, at, with_item=True, **fields)


def deliver(node: Node, case_id: str, method: str = "window", at: str | None = None) -> str:
    """送达 the result, by the holder or by the village that received the case."""
    if method not in e.DELIVERY_METHODS:
        raise CaseError("case.bad_method", method=method)
    return _act(node, case_id, "deliver", e.DELIVERED, at, method=method)


def assess_fee(node: Node, case_id: str, amount_yuan: str, at: str | None = None) -> str:
    """核定收费 in yuan (two decimals at most), recorded in integer fen."""
    fen = fen_from_yuan(amount_yuan)
    if fen <= 0:
        raise CaseError("case.fee_zero")
    return _act(node, case_id, "fee", e.FEE_ASSESSED, at, fee_fen=fen)


def pay(node: Node, case_id: str, receipt: str, at: str | None = None) -> str:
    """Record the bank's payment of the assessed fee (票款分离), with its receipt number."""
    with node.store.transaction():
        state = _state(node, case_id)
        check(state, "pay", node.node_id)
        stamp = _stamp(node, state, at)
        _append(
            node, state, e.FEE_PAID, stamp, receipt=_text(receipt, "receipt"),
            fee_fen=state.fee_fen,
        )  # fmt: skip
    return case_id


def rate(
    node: Node, case_id: str, score: int, comment: str | None = None, at: str | None = None,
    channel: str | None = None,
) -> str:  # fmt: skip
    """评价 after delivery or 不予受理: 1 非常满意 … 5 非常不满意 (GB/T 39046), and where it
    was given (`channel`: window, pad, sms, web, app, phone)."""
    if isinstance(score, bool) or score not in e.SCORES:
        raise CaseError("case.bad_score", score=score)
    if channel is not None and channel not in e.CHANNELS:
        raise CaseError("case.bad_channel", channel=channel, channels=", ".join(e.CHANNELS))
    fields: dict[str, Any] = {"score": score}
    if comment and comment.strip():
        fields["comment"] = comment.strip()
    if channel is not None:
        fields["channel"] = channel
    return _act(node, case_id, "rate", e.RATED, at, **fields)


def rectify(node: Node, case_id: str, note: str, at: str | None = None) -> str:
    """差评整改 done: closes the rectification a bad rating (4 or 5) opened, with a note
    saying what was put right (by the holder or the case's origin)."""
    return _act(node, case_id, "rectify", e.RECTIFIED, at, note=_text(note, "note"))


def withdraw(node: Node, case_id: str, reason: str | None = None, at: str | None = None) -> str:
    """撤回 at the applicant's request; nothing can be recorded afterwards."""
    fields: dict[str, Any] = {"reason": reason.strip()} if reason and reason.strip() else {}
    return _act(node, case_id, "withdraw", e.WITHDRAWN, at, **fields)


def default_forward_target(node: Node) -> str | None:
    """Where `case forward` sends a case without --to: the parent (by config or by id)."""
    if node.config.parent_id:
        return node.config.parent_id
    return parent_of(node.node_id)


i18n.register(
    {
        "case.unknown_item": (
            "No catalogue item {item_code} at this node: import or sync the catalogue first.",
            "本节点没有事项 {item_code}：请先导入或同步事项目录。",
        ),
        "case.accept_what": (
            "Name a CASE to accept, or give --item and --applicant to accept a new one.",
            "请指定要受理的办件编号，或用 --item 和 --applicant 受理新办件。",
        ),
        "case.blank": ("{field} may not be blank.", "{field} 不能为空。"),
        "case.at_before": (
            "{at} is before the case's latest event ({last}) on case {case_id}; check --at.",
            "{at} 早于办件 {case_id} 的最近一次记录（{last}），请检查 --at。",
        ),
        "case.bad_days": (
            "--days must be a whole number of working days from 1, not {days}.",
            "--days 须为 1 以上的整数工作日，不能是 {days}。",
        ),
        "case.forward_where": (
            "This node has no parent: name where to forward case {case_id} with --to.",
            "本节点没有上级：请用 --to 指定办件 {case_id} 上报给谁。",
        ),
        "case.forward_bad": ("'{to}' is not a node id.", "“{to}”不是节点编码。"),
        "case.forward_self": (
            "Case {case_id} cannot be forwarded to this node itself.",
            "办件 {case_id} 不能上报给本节点自己。",
        ),
        "case.bad_result": (
            "--result must be approved or denied, not {result}.",
            "--result 须为 approved（准予）或 denied（不予），不能是 {result}。",
        ),
        "case.bad_method": (
            "--method must be window, mail or sms, not {method}.",
            "--method 须为 window、mail 或 sms，不能是 {method}。",
        ),
        "case.fee_zero": ("A fee must be more than 0 yuan.", "收费金额须大于 0 元。"),
        "case.bad_channel": (
            "--channel must be one of {channels}, not {channel}.",
            "--channel 须为 {channels} 之一，不能是 {channel}。",
        ),
        "case.bad_score": (
            "--score must be 1 (very satisfied) to 5 (very dissatisfied), not {score}.",
            "--score 须为 1（非常满意）到 5（非常不满意），不能是 {score}。",
        ),
    }
)
