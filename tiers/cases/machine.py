"""The case state machine (DESIGN §3), pure: fold and the one transition check.

Invariants:
- `fold` takes events in causal order (`tiers.cases.order`), so every node holding the
  same events folds the same state.
- `fold` never raises: an event the machine refuses (no custody, illegal in its status) is
  kept aside as a violation, which is an error for its author and a finding for the city.
- `check` is the one place that says what is allowed; the service calls it before it
  appends and `fold` calls it on every event, so a log written by this code folds clean.
- Exactly one node holds a case. A forward leaves the case `in_transit` and with the sender
  until the receiver records `case.taken`. Delivery and rating may also come from the origin,
  and so may the 差评整改 (`case.rectified`) a rating of 4 or 5 opens (tiers.rectification).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sync.protocol import i18n
from sync.protocol.errors import CaseError, CustodyError, IllegalTransitionError
from sync.protocol.ids import tier_of
from tiers.calendar import WorkCalendar
from tiers.cases import entries as e
from tiers.cases import guards
from tiers.cases.labels import describe_actions, status_label
from tiers.cases.order import Event, Ref
from tiers.catalogue import TIERS, CatalogueItem

RECEIVED, IN_TRANSIT, ACCEPTED = "received", "in_transit", "accepted"
SUPPLEMENT_REQUESTED, SUSPENDED = "supplement_requested", "suspended"
COMPLETED, DELIVERED, REJECTED, WITHDRAWN = "completed", "delivered", "rejected", "withdrawn"
STATUSES = (
    RECEIVED, IN_TRANSIT, ACCEPTED, SUPPLEMENT_REQUESTED, SUSPENDED, COMPLETED, DELIVERED,
    REJECTED, WITHDRAWN,
)  # fmt: skip
CLOSED = frozenset({REJECTED, WITHDRAWN})
OPEN = frozenset({RECEIVED, IN_TRANSIT, ACCEPTED, SUPPLEMENT_REQUESTED, SUSPENDED})

# Actions are the `zhibao case` command names, in the order messages list them. "take" is
# `case accept` on a case forwarded to this node; it is shown as "accept".
ACTIONS = (
    "accept", "reject", "request-supplement", "supply", "suspend", "resume", "extend",
    "forward", "complete", "deliver", "fee", "pay", "rate", "withdraw", "rectify",
)  # fmt: skip
TAKE, RECEIVE = "take", "receive"
ACTION_OF = {
    e.RECEIVED: RECEIVE, e.ACCEPTED: "accept", e.REJECTED: "reject",
    e.SUPPLEMENT_REQUESTED: "request-supplement", e.SUPPLIED: "supply",
    e.SUSPENDED: "suspend", e.RESUMED: "resume", e.EXTENDED: "extend",
    e.FORWARDED: "forward", e.TAKEN: TAKE, e.COMPLETED: "complete",
    e.DELIVERED: "deliver", e.FEE_ASSESSED: "fee", e.FEE_PAID: "pay", e.RATED: "rate",
    e.WITHDRAWN: "withdraw", e.RECTIFIED: "rectify",
}  # fmt: skip
_BY_ORIGIN = frozenset({"deliver", "rate", "rectify"})  # the origin may record these too

_STATUS_ACTIONS: dict[str, frozenset[str]] = {
    RECEIVED: frozenset({"accept", "reject", "request-supplement", "forward", "withdraw"}),
    SUPPLEMENT_REQUESTED: frozenset({"supply", "reject", "fee", "pay", "withdraw"}),
    ACCEPTED: frozenset(
        {"request-supplement", "suspend", "extend", "forward", "complete", "fee", "pay", "withdraw"}
    ),
    SUSPENDED: frozenset({"resume", "extend", "fee", "pay", "withdraw"}),
    IN_TRANSIT: frozenset({"accept", "withdraw"}),
    COMPLETED: frozenset({"deliver", "fee", "pay"}),
    DELIVERED: frozenset({"rate", "fee", "pay", "rectify"}),
    REJECTED: frozenset({"rate", "rectify"}),  # 不予受理 is rated too (好差评, 国办发〔2019〕51号)
    WITHDRAWN: frozenset(),
}


@dataclass(frozen=True)
class Violation:
    """An event the machine refused: by (origin, seq), its type and the message key why."""

    origin: str
    seq: int
    type: str
    key: str

    @property
    def ref(self) -> Ref:
        return (self.origin, self.seq)

    @property
    def kind(self) -> str:
        return violation_kind(self.key)


@dataclass
class CaseState:
    """A case as folded from its events. Times are the events' `at` strings.

    `tip` is the last event in causal order (applied or refused); `anchor` the last one that
    took effect, which a new event names as its `after`: never an event the machine refused,
    which a node further down the tree may not hold (a hostile village's claim on another's
    case) and would then wait for for ever. `applied` counts the events that took effect;
    `events` lists them when the state comes from `fold` (a state rebuilt from the
    projection's row has only the events folded onto it since).
    """

    case_id: str
    item_code: str
    origin: str
    applicant: dict[str, Any]
    materials: list[str]
    received_at: str
    holder: str
    status: str = RECEIVED
    forward_to: str | None = None
    status_before_forward: str | None = None
    accepted_at: str | None = None
    accepted_by: str | None = None
    promised_days: int | None = None
    pauses: list[tuple[str, str | None]] = field(default_factory=list)  # (start, end) `at`s
    extension_days: int = 0
    missing: list[str] = field(default_factory=list)
    supplement_before_acceptance: bool = False
    supplement_after_acceptance: bool = False
    completed_at: str | None = None
    completed_by: str | None = None
    result: str | None = None
    note: str | None = None
    delivered_at: str | None = None
    delivery_method: str | None = None
    fee_fen: int | None = None
    paid: bool = False
    receipt: str | None = None
    rating: int | None = None
    comment: str | None = None
    closed_at: str | None = None
    reason: str | None = None
    tip: Ref | None = None
    anchor: Ref | None = None
    applied: int = 0
    violations: list[Violation] = field(default_factory=list)
    events: list[Event] = field(default_factory=list, repr=False, compare=False)
    # legal guards (#12, tiers.cases.guards)
    extensions: int = 0  # how many extensions took effect (the law allows one)
    extension_limit: int | None = None  # as the acceptance recorded it; None: the law's 10
    approved_by: str | None = None  # who approved the extension
    deemed_accepted: bool = False  # a late 补正 notice: accepted as of receipt (第三十二条)
    latest_by_origin: dict[str, str] = field(default_factory=dict)  # origin -> latest day
    rated_at: str | None = None
    rating_channel: str | None = None
    rectified_at: str | None = None  # a bad rating's 整改 closed (`case.rectified`)
    rectified_by: str | None = None
    rectify_note: str | None = None

    @property
    def accepted(self) -> bool:
        return self.accepted_at is not None


def allowed_actions(state: CaseState) -> list[str]:
    """What the status allows now (for whoever may act), in `ACTIONS` order."""
    allowed = set(_STATUS_ACTIONS[state.status])
    if state.paid:
        allowed -= {"fee", "pay"}
    if state.fee_fen is None:
        allowed.discard("pay")
    if state.rating is not None:
        allowed.discard("rate")
    if state.rating not in e.BAD_SCORES or state.rectified_at is not None:
        allowed.discard("rectify")
    if state.accepted:
        allowed.discard("reject")
        if state.supplement_after_acceptance:
            allowed.discard("request-supplement")
    else:
        allowed -= {"fee", "pay"}
        if state.supplement_before_acceptance:
            allowed.discard("request-supplement")
    return [action for action in ACTIONS if action in allowed]


def _rank(tier: str) -> int:
    return TIERS.index(tier)


def violation_kind(key: str) -> str:
    """'custody' for an event by a node without custody, 'guard' for one the legal guards
    refused (tiers.cases.guards, an unpaid delivery), else 'illegal'."""
    if key in ("case.not_holder", "case.not_target"):
        return "custody"
    return "guard" if key in guards.FOLD_KEYS else "illegal"


NEW_CASE = "-"  # the case id of a case about to be received: none yet (`check` before it)


def _refusal(
    state: CaseState, action: str, actor: str, item: CatalogueItem | None
) -> CaseError | None:
    """Why `actor` may not take `action` (allowed by the status) on `state`: custody, or
    with `item` the catalogue's tier rules; None when it may."""
    if action == TAKE or (action == "accept" and state.status == IN_TRANSIT):
        if actor != state.forward_to:
            return CustodyError(
                "case.not_target", case_id=state.case_id, node_id=actor, to=state.forward_to
            )
    elif actor != state.holder and not (action in _BY_ORIGIN and actor == state.origin):
        return CustodyError(
            "case.not_holder", case_id=state.case_id, node_id=actor, holder=state.holder
        )
    if item is None:
        return None
    tier = tier_of(actor)
    if action == "accept" and tier not in item.accept_tiers:
        key = "case.tier_apply_there" if state.case_id == NEW_CASE else "case.tier_accept"
        return IllegalTransitionError(
            key, case_id=state.case_id, item_code=item.code, tier=tier,
            tiers=", ".join(item.accept_tiers),
        )  # fmt: skip
    if action == "complete" and _rank(tier) < _rank(item.decide_tier):
        return IllegalTransitionError(
            "case.tier_decide", case_id=state.case_id, item_code=item.code, tier=tier,
            decide_tier=item.decide_tier,
        )  # fmt: skip
    return None


def allowed_for(state: CaseState, actor: str, item: CatalogueItem | None = None) -> list[str]:
    """What `actor` itself may record now: what the status allows, less what custody (and,
    with `item`, the catalogue's tiers) keeps from it. A case in transit to `actor` lists
    "accept" (taking it)."""
    return [
        action
        for action in allowed_actions(state)
        if _refusal(state, TAKE if action == "accept" and state.status == IN_TRANSIT
                    else action, actor, item) is None
    ]  # fmt: skip


def check(state: CaseState, action: str, actor: str, *, item: CatalogueItem | None = None) -> None:
    """Refuse `action` by node `actor` on `state` unless the machine allows it.

    IllegalTransitionError when the status does not allow it (the message lists what
    `actor` may do instead), CustodyError when `actor` does not hold the case. With `item`,
    the catalogue's tier rules apply too (accept: tier in accept_tiers; complete:
    decide_tier or above).
    """
    shown = "accept" if action == TAKE else action
    allowed = allowed_actions(state)
    if action == RECEIVE:
        raise IllegalTransitionError("case.exists", case_id=state.case_id)
    if shown not in allowed:
        if not allowed:
            raise IllegalTransitionError(
                "case.closed", case_id=state.case_id, status=state.status,
                status_label=status_label(state.status), action=shown,
            )  # fmt: skip
        mine = allowed_for(state, actor, item)
        text = describe_actions(mine) if mine else i18n.t("case.nothing_here", holder=state.holder)
        raise IllegalTransitionError(
            "case.illegal", case_id=state.case_id, status=state.status,
            status_label=status_label(state.status), action=shown, allowed=mine,
            allowed_text=text,
        )  # fmt: skip
    refusal = _refusal(state, action, actor, item)
    if refusal is not None:
        raise refusal


def check_receive(item: CatalogueItem, actor: str) -> None:
    """A node may receive (收件) an item only when its tier is among the accepting tiers."""
    tier = tier_of(actor)
    if tier not in item.accept_tiers:
        raise IllegalTransitionError(
            "case.tier_receive", item_code=item.code, tier=tier,
            tiers=", ".join(item.accept_tiers),
        )  # fmt: skip


def _open_pause(state: CaseState, at: str) -> None:
    state.pauses.append((at, None))


def _close_pause(state: CaseState, at: str) -> None:
    if state.pauses and state.pauses[-1][1] is None:
        state.pauses[-1] = (state.pauses[-1][0], at)


def _transition(state: CaseState, event: Event) -> None:
    """Apply an event `check` allowed."""
    body, at = event.body, event.at
    kind = event.type
    if kind == e.ACCEPTED:
        state.status, state.accepted_by = ACCEPTED, event.origin
        state.accepted_at = state.received_at if state.deemed_accepted else at
        state.promised_days = body["promised_days"]
        if body.get("extension_limit") is not None:
            state.extension_limit = body["extension_limit"]
    elif kind == e.REJECTED or kind == e.WITHDRAWN:
        _close_pause(state, at)
        state.status = REJECTED if kind == e.REJECTED else WITHDRAWN
        state.closed_at, state.reason = at, body.get("reason")
    elif kind == e.SUPPLEMENT_REQUESTED:
        state.status, state.missing = SUPPLEMENT_REQUESTED, list(body["missing"])
        if state.accepted:
            state.supplement_after_acceptance = True
            _open_pause(state, at)
        else:
            state.supplement_before_acceptance = True
    elif kind == e.SUPPLIED:
        state.missing = []
        if state.accepted:
            _close_pause(state, at)
            state.status = ACCEPTED
        else:
            state.status = RECEIVED
    elif kind == e.SUSPENDED:
        state.status, state.reason = SUSPENDED, body["reason"]
        _open_pause(state, at)
    elif kind == e.RESUMED:
        state.status = ACCEPTED
        _close_pause(state, at)
    elif kind == e.EXTENDED:
        state.extension_days += body["days"]
        state.extensions += 1
        state.approved_by = body.get("approved_by")
    elif kind == e.FORWARDED:
        state.status_before_forward, state.status = state.status, IN_TRANSIT
        state.forward_to = body["to"]
    elif kind == e.TAKEN:
        state.holder, state.forward_to = event.origin, None
        state.status = state.status_before_forward or RECEIVED
    elif kind == e.COMPLETED:
        state.status, state.completed_at, state.completed_by = COMPLETED, at, event.origin
        state.result, state.note = body["result"], body.get("note")
    elif kind == e.DELIVERED:
        state.status, state.delivered_at = DELIVERED, at
        state.delivery_method = body["method"]
    elif kind == e.FEE_ASSESSED:
        state.fee_fen = body["fee_fen"]
    elif kind == e.FEE_PAID:
        state.paid, state.receipt = True, body["receipt"]
    elif kind == e.RATED:
        state.rating, state.comment = body["score"], body.get("comment")
        state.rated_at, state.rating_channel = at, body.get("channel")
    elif kind == e.RECTIFIED:
        state.rectified_at, state.rectified_by = at, event.origin
        state.rectify_note = body["note"]


def _start(event: Event) -> CaseState:
    body = event.body
    state = CaseState(
        case_id=body["case_id"], item_code=body["item_code"], origin=event.origin,
        applicant=dict(body["applicant"]), materials=list(body["materials"]),
        received_at=event.at, holder=event.origin, tip=event.ref, anchor=event.ref, applied=1,
        events=[event],
    )  # fmt: skip
    guards.note_applied(state, event)
    return state


_PACKAGE_CALENDAR: list[WorkCalendar] = []


def _default_calendar() -> WorkCalendar:
    """The package's calendar without overrides, for a fold not given the node's."""
    if not _PACKAGE_CALENDAR:
        _PACKAGE_CALENDAR.append(WorkCalendar())
    return _PACKAGE_CALENDAR[0]


def step(
    state: CaseState, event: Event, cal: WorkCalendar | None = None,
    written: Mapping[Ref, str] | None = None,
) -> None:  # fmt: skip
    """Fold one more event, which comes after `state.tip` in causal order; never raises.

    A refused event lands in `violations` with its message key and changes nothing else.
    `cal` is the node's working calendar (the legal guards count working days); `written`,
    for pausing events, the latest day their author dated a previous case event
    (`tiers.cases.guards`).
    """
    cal = cal or _default_calendar()
    state.tip = event.ref
    try:
        if event.type == e.ACCEPTED and state.status == IN_TRANSIT:
            raise IllegalTransitionError("case.take_first", case_id=state.case_id)
        if event.type == e.FEE_PAID and event.body["fee_fen"] != state.fee_fen:
            raise IllegalTransitionError("case.pay_mismatch", case_id=state.case_id)
        check(state, ACTION_OF[event.type], event.origin)
        if event.type == e.DELIVERED and state.fee_fen is not None and not state.paid:
            raise IllegalTransitionError("case.deliver_unpaid", case_id=state.case_id)
        guards.check_event(state, event, cal, (written or {}).get(event.ref))
    except CaseError as exc:
        state.violations.append(Violation(event.origin, event.seq, event.type, exc.key))
        return
    _transition(state, event)
    if event.type == e.SUPPLEMENT_REQUESTED:
        guards.late_supplement_accepts(state, event, cal)
    guards.note_applied(state, event)
    state.anchor = event.ref
    state.applied += 1
    state.events.append(event)


def fold(
    events: Iterable[Event], cal: WorkCalendar | None = None,
    written: Mapping[Ref, str] | None = None,
) -> CaseState | None:  # fmt: skip
    """The state after `events` (already in causal order); None if no case was received.

    Events before the `case.received` (which causal order never yields) are violations.
    """
    state: CaseState | None = None
    orphans: list[Violation] = []
    for event in events:
        if state is None:
            if event.type == e.RECEIVED:
                state = _start(event)
            else:
                orphans.append(Violation(event.origin, event.seq, event.type, "case.not_found"))
            continue
        step(state, event, cal, written)
    if state is not None:
        state.violations[:0] = orphans
    return state


i18n.register(
    {
        "case.illegal": (
            "Case {case_id} is {status}; {action} is not allowed. Allowed now: {allowed_text}.",
            "办件 {case_id} 当前为“{status_label}”，不能执行 {action}。现在可以：{allowed_text}。",
        ),
        "case.closed": (
            "Case {case_id} is {status}; {action} is not allowed. Nothing more can be recorded"
            " on it.",
            "办件 {case_id} 已是“{status_label}”，不能执行 {action}，也不能再记录任何事项。",
        ),
        "case.exists": ("Case {case_id} was already received.", "办件 {case_id} 已经收件。"),
        "case.not_found": (
            "No case {case_id} is known at this node.",
            "本节点没有办件 {case_id}。",
        ),
        "case.not_holder": (
            "Case {case_id} is held by {holder}, not by this node ({node_id}); only the holder"
            " may record this.",
            "办件 {case_id} 由 {holder} 经办，本节点（{node_id}）不能记录此事项。",
        ),
        "case.not_target": (
            "Case {case_id} was forwarded to {to}, not to this node ({node_id}).",
            "办件 {case_id} 已上报给 {to}，不是本节点（{node_id}）。",
        ),
        "case.tier_accept": (
            "Item {item_code} is accepted at {tiers}, not at a {tier}; forward case"
            " {case_id} instead.",
            "事项 {item_code} 由 {tiers} 受理，{tier} 不能受理；请上报办件 {case_id}。",
        ),
        "case.tier_apply_there": (
            "Item {item_code} is accepted at {tiers}, not at a {tier}: the applicant applies"
            " there.",
            "事项 {item_code} 由 {tiers} 受理，{tier} 不能受理：请申请人到受理层级办理。",
        ),
        "case.nothing_here": (
            "nothing by this node (the case is with {holder})",
            "本节点无可记录的事项（由 {holder} 经办）",
        ),
        "case.tier_receive": (
            "Item {item_code} is received at {tiers}, not at a {tier}.",
            "事项 {item_code} 由 {tiers} 收件，{tier} 不能收件。",
        ),
        "case.tier_decide": (
            "Item {item_code} is decided at the {decide_tier} or above, not at a {tier};"
            " forward case {case_id} instead.",
            "事项 {item_code} 须由 {decide_tier} 或更高层级办结，{tier} 不能办结；"
            "请上报办件 {case_id}。",
        ),
        "case.take_first": (
            "Case {case_id} is in transit; its receiver must take it before accepting it.",
            "办件 {case_id} 正在移交，接收方须先接收再受理。",
        ),
        "case.deliver_unpaid": (
            "Case {case_id} has a fee assessed and not paid; record the payment before"
            " delivering (票款分离).",
            "办件 {case_id} 已核定收费但尚未缴费；请先登记缴费再送达（票款分离）。",
        ),
        "case.pay_mismatch": (
            "The payment on case {case_id} does not match the assessed fee.",
            "办件 {case_id} 的缴费金额与核定金额不符。",
        ),
    }
)
