"""Case work at a node: one function per `zhibao case` command (DESIGN §3, §7).

Invariants: each function checks everything inside `node.store.transaction()` and only
then appends (the append joins that transaction), so a refusal appends nothing. Every
event names the case's latest event known here that took effect as its `after`. Case ids are
`<node-id>-<YYYYMMDD>-<NNNN>`, numbered per node per day of `at` (China time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
from tiers.cases import guards
from tiers.cases.machine import IN_TRANSIT, NEW_CASE, TAKE, CaseState, check, check_receive
from tiers.cases.projection import first_recorded, latest_written, load_case, load_events
from tiers.catalogue import DEFAULT_EXTENSION_DAYS, CatalogueItem, fen_from_yuan, yuan_from_fen
from tiers.published import get_item, work_calendar

Guard = Callable[[CaseState, str], None]  # (state, the event's stamp): raise to refuse


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
    # every event held (applied, refused or waiting): its times only, no second fold
    last = max(local_date(ev.at) for ev in load_events(node.store, state.case_id))
    if local_date(stamp) < last:
        raise CaseError("case.at_before", case_id=state.case_id, at=stamp, last=last.isoformat())
    return stamp


def _append(node: Node, state: CaseState, kind: str, stamp: str, **fields: Any) -> None:
    after = state.anchor  # the last event that took effect, never one the machine refused
    body = {"case_id": state.case_id, "after": list(after) if after else None, **fields}
    node.append(kind, body, at=stamp)


def _act(
    node: Node, case_id: str, action: str, kind: str, at: str | None, *,
    with_item: bool = False, guard: Guard | None = None, **fields: Any,
) -> str:  # fmt: skip
    """Check `action` on the case (and `guard`, the legal guards) and append one `kind`
    event, in one transaction."""
    with node.store.transaction():
        state = _state(node, case_id)
        item = get_item(node.store, state.item_code) if with_item else None
        check(state, action, node.node_id, item=item)
        stamp = _stamp(node, state, at)
        if guard is not None:
            guard(state, stamp)
        _append(node, state, kind, stamp, **fields)
    return case_id


def _limits(item: CatalogueItem) -> dict[str, Any]:
    """The item's time limits an acceptance records (the extension limit only when it is
    not the law's default, so the body stays what older nodes wrote)."""
    fields: dict[str, Any] = {"promised_days": item.promised_days}
    if item.extension_days != DEFAULT_EXTENSION_DAYS:
        fields["extension_limit"] = item.extension_days
    return fields


def _text(value: str | None, what: str) -> str:
    if value is None or not value.strip():
        raise CaseError("case.blank", field=what)
    return value.strip()


def next_case_id(node: Node, stamp: str) -> str:
    """The next `<node-id>-<YYYYMMDD>-<NNNN>` for the day of `stamp` at this node."""
    prefix = f"{node.node_id}-{local_date(stamp):%Y%m%d}-"
    # `+origin`: search the case_id index for the day's ids, not every event of this node
    # by the primary key (10-20 ms at 20,000 entries; #13)
    rows = node.store.query(
        "SELECT case_id FROM case_events WHERE case_id >= ? AND case_id < ? AND +origin = ?",
        (prefix, prefix[:-1] + ".", node.node_id),
    )
    numbers = [int(r[0].rsplit("-", 1)[1]) for r in rows]
    return f"{prefix}{max(numbers, default=0) + 1:04d}"


def _receive(
    node: Node, item: CatalogueItem, applicant: Applicant, materials: Sequence[str], stamp: str
) -> CaseState:
    check_receive(item, node.node_id)
    _text(applicant.name, "applicant")
    for what, value in (("id-no", applicant.id_no), ("phone", applicant.phone)):
        if value and len(value.strip()) > e.MAX_KEY:  # (indexed: see tiers.cases.entries)
            raise CaseError("case.too_long", field=what, max=e.MAX_KEY, length=len(value.strip()))
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
    return _limits(item)


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
            _append(node, state, e.ACCEPTED, stamp, **_limits(new_item))
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
    return CaseState(NEW_CASE, item.code, node.node_id, {}, [], "", node.node_id)


def reject(node: Node, case_id: str, reason: str, at: str | None = None) -> str:
    """不予受理, with the reason the applicant is told."""
    return _act(node, case_id, "reject", e.REJECTED, at, reason=_text(reason, "reason"))


def request_supplement(
    node: Node, case_id: str, missing: Sequence[str], at: str | None = None
) -> str:
    """一次性告知补正: list everything missing at once (once before, once after acceptance).

    After acceptance the notice pauses the clock, so it may not be back-dated across a
    deadline that has passed. Before acceptance, a notice more than five working days after
    receipt makes the case accepted as of receipt (第三十二条): it then carries the item's
    limits where this tier accepts the item (see `deemed_accepted`).
    """
    items = [m.strip() for m in missing if m and m.strip()]
    if not items:
        raise CaseError("case.blank", field="missing")
    with node.store.transaction():
        state = _state(node, case_id)
        check(state, "request-supplement", node.node_id)
        stamp = _stamp(node, state, at)
        fields: dict[str, Any] = {"missing": items}
        cal = work_calendar(node.store)
        if state.accepted:
            _pause_guard(node)(state, stamp)
        elif guards.supplement_is_late(cal, state.received_at, stamp):
            item = get_item(node.store, state.item_code)
            if item is not None and tier_of(node.node_id) in item.accept_tiers:
                fields |= _limits(item)
        _append(node, state, e.SUPPLEMENT_REQUESTED, stamp, **fields)
    return case_id


def deemed_accepted(node: Node, case_id: str) -> str | None:
    """When a late 补正 notice made the case accepted as of receipt (第三十二条): the
    receipt's time, else None."""
    state = _state(node, case_id)
    return state.received_at if state.deemed_accepted else None


def _pause_guard(node: Node) -> Guard:
    """A pause may not be back-dated across a deadline that has already passed."""

    def guard(state: CaseState, stamp: str) -> None:
        today = node.clock.now().date()
        cal = work_calendar(node.store)
        seen = first_recorded(node.store, state.case_id)
        guards.check_pause_not_backdated(state, local_date(stamp), today, cal, seen)
        _written_guard(node, state, stamp, cal)

    return guard


def _written_guard(node: Node, state: CaseState, stamp: str, cal: Any) -> None:
    """What the fold checks on every node: not dated on or before the deadline after this
    node dated a case event past it (so a log written here folds clean everywhere)."""
    seq = node.store.head(node.node_id)[0] + 1
    written = latest_written(node.store, node.node_id, seq, state.case_id)
    guards.check_written(state, local_date(stamp), written, cal)


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
    return _act(
        node, case_id, "suspend", e.SUSPENDED, at, guard=_pause_guard(node),
        reason=_text(reason, "reason"),
    )  # fmt: skip


def resume(node: Node, case_id: str, at: str | None = None) -> str:
    """End the special procedure; the clock runs again."""
    return _act(node, case_id, "resume", e.RESUMED, at)


def extend(
    node: Node, case_id: str, days: int, reason: str, at: str | None = None, *,
    approved_by: str | None = None,
) -> str:  # fmt: skip
    """延长 (第四十二条): add `days` working days to the time limit, approved by the organ's
    head (`case extend --approved-by` requires it; recorded when given): once, at most the
    item's limit, and only before the deadline has passed."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 10_000:
        raise CaseError("case.bad_days", days=days)
    reason = _text(reason, "reason")
    fields: dict[str, Any] = {"days": days, "reason": reason}
    if approved_by is not None:
        fields["approved_by"] = _text(approved_by, "approved-by")

    def guard(state: CaseState, stamp: str) -> None:
        today = node.clock.now().date()
        cal = work_calendar(node.store)
        seen = first_recorded(node.store, state.case_id)
        guards.check_extension(state, days, local_date(stamp), cal, today=today, seen=seen)
        _written_guard(node, state, stamp, cal)

    return _act(node, case_id, "extend", e.EXTENDED, at, guard=guard, **fields)


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

    def guard(state: CaseState, stamp: str) -> None:
        if state.paid:
            return
        if state.fee_fen is not None:
            raise IllegalTransitionError("case.deliver_unpaid", case_id=case_id)
        item = get_item(node.store, state.item_code)
        if item is not None and item.fee_fen > 0:
            raise IllegalTransitionError(
                "case.deliver_unassessed", case_id=case_id, item_code=item.code,
                fee=yuan_from_fen(item.fee_fen),
            )  # fmt: skip

    return _act(node, case_id, "deliver", e.DELIVERED, at, guard=guard, method=method)


def assess_fee(
    node: Node, case_id: str, amount_yuan: str, at: str | None = None,
    override_reason: str | None = None,
) -> str:  # fmt: skip
    """核定收费 in yuan (two decimals at most), recorded in integer fen: the catalogue's fee
    for the item, or another amount with `override_reason` (recorded; a finding at the city)."""
    fen = fen_from_yuan(amount_yuan)
    if fen <= 0:
        raise CaseError("case.fee_zero")
    reason = override_reason.strip() if override_reason and override_reason.strip() else None

    def guard(state: CaseState, stamp: str) -> None:
        item = get_item(node.store, state.item_code)
        if item is None or item.fee_fen == fen or reason is not None:
            return
        key = "case.fee_free" if item.fee_fen == 0 else "case.fee_mismatch"
        raise CaseError(
            key, case_id=case_id, item_code=item.code, amount=yuan_from_fen(fen),
            fee=yuan_from_fen(item.fee_fen),
        )  # fmt: skip

    fields: dict[str, Any] = {"fee_fen": fen}
    item = get_item(node.store, _state(node, case_id).item_code)
    if reason is not None and (item is None or item.fee_fen != fen):
        fields["override_reason"] = reason
    return _act(node, case_id, "fee", e.FEE_ASSESSED, at, guard=guard, **fields)


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
        "case.too_long": (
            "{field} is at most {max} characters, not {length}.",
            "{field} 最多 {max} 个字符，不能是 {length} 个。",
        ),
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
        "case.fee_mismatch": (
            "Item {item_code} costs {fee} yuan in the catalogue, not {amount}; to charge"
            " another amount on case {case_id}, give --override-reason.",
            "事项 {item_code} 在目录中收费 {fee} 元，不是 {amount} 元；如需对办件 {case_id}"
            " 收取其他金额，请用 --override-reason 说明理由。",
        ),
        "case.fee_free": (
            "Item {item_code} is free in the catalogue; a fee of {amount} yuan on case"
            " {case_id} needs --override-reason.",
            "事项 {item_code} 在目录中不收费；对办件 {case_id} 收费 {amount} 元须用"
            " --override-reason 说明理由。",
        ),
        "case.deliver_unassessed": (
            "Item {item_code} has a fee of {fee} yuan; assess it and record the payment on"
            " case {case_id} before delivering (票款分离).",
            "事项 {item_code} 收费 {fee} 元；请先对办件 {case_id} 核定收费并登记缴费，再送达"
            "（票款分离）。",
        ),
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
