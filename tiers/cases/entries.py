"""Case entry types (DESIGN §3) and the checks on their bodies.

Every body has `case_id` and `after`: `[origin, seq]` of the latest event of this case its
author knew (null only on the first event, `case.received`). `after` gives a case's history
across village, town and city logs a causal order that never relies on `at`.
Money is integer fen; ratings are 1 (非常满意) … 5 (非常不满意) as in GB/T 39046.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, get_args

import msgspec
from msgspec import Meta

from sync import authority
from sync.authority import Refusal
from sync.protocol import i18n
from sync.protocol.canonical import MAX_INT
from sync.protocol.entry import SignedEntry, register_body_check
from sync.protocol.ids import is_node_id, is_within

RECEIVED = "case.received"
ACCEPTED = "case.accepted"
REJECTED = "case.rejected"
SUPPLEMENT_REQUESTED = "case.supplement_requested"
SUPPLIED = "case.supplied"
SUSPENDED = "case.suspended"
RESUMED = "case.resumed"
EXTENDED = "case.extended"
FORWARDED = "case.forwarded"
TAKEN = "case.taken"
COMPLETED = "case.completed"
DELIVERED = "case.delivered"
FEE_ASSESSED = "case.fee_assessed"
FEE_PAID = "case.fee_paid"
RATED = "case.rated"
WITHDRAWN = "case.withdrawn"
RECTIFIED = "case.rectified"  # 差评整改 closed, with a note (issue #12)

Result = Literal["approved", "denied"]
DeliveryMethod = Literal["window", "mail", "sms"]
RESULTS: tuple[str, ...] = get_args(Result)
DELIVERY_METHODS: tuple[str, ...] = get_args(DeliveryMethod)
SCORES = range(1, 6)
BAD_SCORES = frozenset({4, 5})  # 不满意, 非常不满意 (GB/T 39046): a 差评, which opens a 整改
Channel = Literal["window", "pad", "sms", "web", "app", "phone"]  # where a rating was given
CHANNELS: tuple[str, ...] = get_args(Channel)
MAX_TEXT = 2000
MAX_LIST = 100


CASE_NUMBER_DIGITS = range(4, 10)  # a day's number at a node: 0001 … 999999999


def is_day_and_number(day: str, number: str) -> bool:
    """An id's `YYYYMMDD` and its day's number of 4 to 9 digits, all ASCII digits. (Bounded:
    an id is a key of indexed columns, and a member's id of thousands of digits was
    projected on SQLite but is more than a PostgreSQL index row may hold.)"""
    digits = day + number
    return (len(day) == 8 and len(number) in CASE_NUMBER_DIGITS and digits.isascii()
            and digits.isdigit())  # fmt: skip


def is_case_id(value: object) -> bool:
    """`<node id>-<YYYYMMDD>-<number of 4 to 9 digits>` (`is_day_and_number`)."""
    if type(value) is not str:
        return False
    parts = value.split("-")
    return len(parts) == 3 and is_node_id(parts[0]) and is_day_and_number(parts[1], parts[2])


Text = Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)]
# text a projection indexes (an item's code, an applicant's id number and phone): short, so
# that no member's value is more than an index row holds (PostgreSQL: ~2,700 bytes)
MAX_KEY = 64
Key = Annotated[str, Meta(min_length=1, max_length=MAX_KEY)]
Texts = Annotated[list[Text], Meta(max_length=MAX_LIST)]
Days = Annotated[int, Meta(ge=1, le=10_000)]
Fen = Annotated[int, Meta(ge=1, le=MAX_INT)]
Seq = Annotated[int, Meta(ge=1, le=MAX_INT)]


def _blank(value: str | None) -> bool:
    return value is not None and value.isspace()  # empty is refused by Meta(min_length=1)


class CaseBody(msgspec.Struct, kw_only=True):
    """What every case body has. The shape (types, lengths, ranges, choices; other keys are
    let through) is checked by msgspec as the body is decoded; `__post_init__` checks what a
    shape cannot say: ids, and that text is more than white space (`blank` names them)."""

    case_id: str
    after: tuple[str, Seq]  # [origin, seq] of the latest event of this case its author knew

    blank: ClassVar[tuple[str, ...]] = ()  # text fields
    blank_lists: ClassVar[tuple[str, ...]] = ()  # lists of text

    def __post_init__(self) -> None:
        if not is_case_id(self.case_id):
            raise ValueError("case_id is malformed")
        after = self.after
        if after is not None and not is_node_id(after[0]):
            raise ValueError("after must be [origin, seq]")
        for name in self.blank:
            if _blank(getattr(self, name)):
                raise ValueError(f"{name} must be non-empty text")
        for name in self.blank_lists:
            if any(map(str.isspace, getattr(self, name))):
                raise ValueError(f"{name} must be a list of non-empty text")


class Applicant(msgspec.Struct, forbid_unknown_fields=True):
    name: Text
    id_no: Key | None = None
    phone: Key | None = None

    def __post_init__(self) -> None:
        if _blank(self.name) or _blank(self.id_no) or _blank(self.phone):
            raise ValueError("applicant's name, id_no and phone must be non-empty text")


class Received(CaseBody, kw_only=True):
    after: None = None  # type: ignore[assignment]  # the first event of a case has none
    item_code: Key
    applicant: Applicant
    materials: Texts
    blank = ("item_code",)
    blank_lists = ("materials",)


Limit = Annotated[int, Meta(ge=0, le=100_000)]


class Accepted(CaseBody):
    promised_days: Limit
    extension_limit: Limit | None = None  # the item's extension_days then (optional, #12)


class WithReason(CaseBody):
    reason: Text
    blank = ("reason",)


class SupplementRequested(CaseBody):
    missing: Annotated[list[Text], Meta(min_length=1, max_length=MAX_LIST)]
    # optional (#12): the item's limits, for a late notice that accepts the case (第三十二条)
    promised_days: Limit | None = None
    extension_limit: Limit | None = None
    blank_lists = ("missing",)


class Extended(CaseBody):
    reason: Text
    days: Days
    approved_by: Text | None = None  # the head who approved it (第四十二条; optional, #12)
    blank = ("reason", "approved_by")


class Forwarded(CaseBody):
    to: str
    note: Text | None = None
    blank = ("note",)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not is_node_id(self.to):
            raise ValueError("to must be a node id")


class Completed(CaseBody):
    result: Result
    note: Text | None = None
    blank = ("note",)


class Delivered(CaseBody):
    method: DeliveryMethod


class FeeAssessed(CaseBody):
    fee_fen: Fen
    override_reason: Text | None = None  # why it differs from the catalogue (optional, #12)
    blank = ("override_reason",)


class FeePaid(CaseBody):
    receipt: Text
    fee_fen: Fen
    blank = ("receipt",)


class Rated(CaseBody):
    score: Annotated[int, Meta(ge=SCORES.start, le=SCORES.stop - 1)]
    comment: Text | None = None
    channel: Channel | None = None  # optional: logs written before issue #12 lack it
    blank = ("comment",)


class Rectified(CaseBody):
    note: Text
    blank = ("note",)


class Withdrawn(CaseBody):
    reason: Text | None = None
    blank = ("reason",)


BODIES: dict[str, type[CaseBody]] = {
    RECEIVED: Received,
    ACCEPTED: Accepted,
    REJECTED: WithReason,
    SUPPLEMENT_REQUESTED: SupplementRequested,
    SUPPLIED: CaseBody,
    SUSPENDED: WithReason,
    RESUMED: CaseBody,
    EXTENDED: Extended,
    FORWARDED: Forwarded,
    TAKEN: CaseBody,
    COMPLETED: Completed,
    DELIVERED: Delivered,
    FEE_ASSESSED: FeeAssessed,
    FEE_PAID: FeePaid,
    RATED: Rated,
    WITHDRAWN: Withdrawn,
    RECTIFIED: Rectified,
}
TYPES = frozenset(BODIES)

for _type, _body in BODIES.items():
    register_body_check(_type, _body)


def _received_authority(
    store: Any, owner: str | None, entry: SignedEntry, fields: Mapping[str, Any]
) -> Refusal | None:
    """A case is created only by the node whose id its case id starts with: anyone else's
    `case.received` for that id is a claim on somebody else's case, never the case."""
    case_id = fields["body"]["case_id"]
    if case_id.split("-", 1)[0] == entry.origin:
        return None
    return "case.not_origin", {"case_id": case_id}


def _after_authority(
    store: Any, owner: str | None, entry: SignedEntry, fields: Mapping[str, Any]
) -> Refusal | None:
    """An event may name as its `after` only an entry its author can hold: its own, its
    ancestors' (what flows down) or its subtree's. A village naming a sibling's entry names
    what it never saw — e.g. `[neighbour, 999999]`, which would wait for ever and make the
    city blame the neighbour for a gap in its log. And the node named knows what it wrote:
    an entry of its own beyond its head was never there to be seen."""
    after = fields["body"]["after"]
    if after is None:
        return None
    named, seq = after
    if not (is_within(named, entry.origin) or is_within(entry.origin, named)):
        return "case.after_unreachable", {"after": f"{named}#{seq}"}
    if named == owner and named != entry.origin and store.head(named)[0] < seq:
        return "case.after_unreachable", {"after": f"{named}#{seq}"}
    return None


authority.register(RECEIVED, _received_authority)
for _type in BODIES.keys() - {RECEIVED}:
    authority.register(_type, _after_authority)
i18n.register(
    {
        "case.after_unreachable": (
            "{origin} names {after} as what its event follows, an entry it cannot hold",
            "{origin} 声称其事项接续 {after}，但它不可能持有该条目",
        ),
        "case.not_origin": (
            "{origin} may not create case {case_id}: only the node whose id it starts with can",
            "{origin} 无权创建办件 {case_id}：只有编号前缀所指的节点可以创建",
        ),
    }
)
