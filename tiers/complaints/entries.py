"""Complaint entry types (投诉) and the checks on their bodies and authors.

A complaint is filed by any node about a case, a node (a window, a centre) or a department;
its `subject` is the node that must answer for it, named in every body of the complaint so
who may write an entry is decided by the entry alone (sync.authority: never by arrival
order). Complaint ids are `<filing node>-C<YYYYMMDD>-<NNNN>`, made by the filing node as
case ids are.

Who may write what (enforced on every way in; a refused entry is quarantined):
- `complaint.filed`: the node whose id the complaint id starts with; its subject must be
  on its line of the tree (itself, an ancestor or a node below it), so the complaint flows
  to its subject and the subject's answer flows back (tiers.complaints.projection).
- `complaint.replied`, `complaint.closed`: the subject or one of its ancestors (the
  supervising centres: 谁办理、谁负责, and the level above checks). The subject named must
  be the filing's; that is checked when the complaint is folded (a mismatch is refused there).
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
from sync.protocol.errors import ZhibaoError
from sync.protocol.ids import is_node_id, is_within
from tiers.cases.entries import MAX_TEXT, is_case_id, is_day_and_number

FILED = "complaint.filed"
REPLIED = "complaint.replied"
CLOSED = "complaint.closed"

About = Literal["case", "node", "department"]
ABOUTS: tuple[str, ...] = get_args(About)
MAX_DAYS = 60  # a complaint's time limit is days or weeks; a bound keeps a forged one honest

Text = Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)]
Seq = Annotated[int, Meta(ge=1, le=MAX_INT)]


def is_complaint_id(value: object) -> bool:
    """`<node id>-C<YYYYMMDD>-<number of 4 to 9 digits>` (as a case id's: `is_day_and_number`)."""
    if type(value) is not str:
        return False
    parts = value.split("-")
    return (len(parts) == 3 and is_node_id(parts[0]) and parts[1].startswith("C")
            and is_day_and_number(parts[1][1:], parts[2]))  # fmt: skip


def filer_of(complaint_id: str) -> str:
    return complaint_id.split("-", 1)[0]


class ComplaintBody(msgspec.Struct, kw_only=True):
    """What every complaint body has: its id, its subject, and `after` (`[origin, seq]` of
    the latest event of this complaint its author knew; null only on the filing)."""

    complaint_id: str
    subject: str
    after: tuple[str, Seq]

    blank: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        if not is_complaint_id(self.complaint_id):
            raise ValueError("complaint_id is malformed")
        if not is_node_id(self.subject):
            raise ValueError("subject must be a node id")
        if self.after is not None and not is_node_id(self.after[0]):
            raise ValueError("after must be [origin, seq]")
        for name in self.blank:
            value = getattr(self, name)
            if value is not None and value.isspace():
                raise ValueError(f"{name} must be non-empty text")


class Filed(ComplaintBody, kw_only=True):
    after: None = None  # type: ignore[assignment]  # the first event of a complaint has none
    about: About
    case_id: str | None = None
    department: Text | None = None
    text: Text
    days: Annotated[int, Meta(ge=1, le=MAX_DAYS)]
    blank = ("department", "text")

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.about == "case") != (self.case_id is not None):
            raise ValueError("case_id is given exactly when the complaint is about a case")
        if (self.about == "department") != (self.department is not None):
            raise ValueError("department is given exactly when it is about a department")
        if self.case_id is not None and not is_case_id(self.case_id):
            raise ValueError("case_id is malformed")


class Replied(ComplaintBody):
    text: Text
    blank = ("text",)


class Closed(ComplaintBody):
    note: Text | None = None
    blank = ("note",)


BODIES: dict[str, type[ComplaintBody]] = {FILED: Filed, REPLIED: Replied, CLOSED: Closed}
TYPES = frozenset(BODIES)

for _type, _body in BODIES.items():
    register_body_check(_type, _body)


def on_line(a: str, b: str) -> bool:
    """Whether `a` and `b` lie on one path from the city down (one is within the other)."""
    return is_within(a, b) or is_within(b, a)


def _filed_authority(
    store: Any, owner: str | None, entry: SignedEntry, fields: Mapping[str, Any]
) -> Refusal | None:
    """Only the filing node makes its complaint ids, and only about a node on its line."""
    body = fields["body"]
    complaint_id, subject = body["complaint_id"], body["subject"]
    if filer_of(complaint_id) != entry.origin:
        return "complaint.not_origin", {"complaint_id": complaint_id}
    if not on_line(subject, entry.origin):
        return "complaint.subject_unrelated", {"complaint_id": complaint_id, "subject": subject}
    return None


def _answer_authority(
    store: Any, owner: str | None, entry: SignedEntry, fields: Mapping[str, Any]
) -> Refusal | None:
    """Replies and closings come from the subject or its ancestors, after an entry their
    author can hold (its own, its ancestors' or its subtree's)."""
    body = fields["body"]
    complaint_id, subject = body["complaint_id"], body["subject"]
    if not is_within(subject, entry.origin):
        return "complaint.not_responsible", {"complaint_id": complaint_id, "subject": subject}
    named, seq = body["after"]
    if not on_line(named, entry.origin):
        return "complaint.after_unreachable", {"after": f"{named}#{seq}"}
    if named == owner and named != entry.origin and store.head(named)[0] < seq:
        return "complaint.after_unreachable", {"after": f"{named}#{seq}"}
    return None


authority.register(FILED, _filed_authority)
authority.register(REPLIED, _answer_authority)
authority.register(CLOSED, _answer_authority)

i18n.register(
    {
        "complaint.not_origin": (
            "{origin} may not file complaint {complaint_id}: only the node whose id it starts"
            " with can",
            "{origin} 无权登记投诉 {complaint_id}：只有编号前缀所指的节点可以登记",
        ),
        "complaint.subject_unrelated": (
            "{origin} filed complaint {complaint_id} about {subject}, a node neither above nor"
            " below it",
            "{origin} 登记的投诉 {complaint_id} 针对 {subject}，该节点既非其上级也非其下级",
        ),
        "complaint.not_responsible": (
            "{origin} may not answer complaint {complaint_id}: only {subject} or a centre above"
            " it may",
            "{origin} 无权答复或办结投诉 {complaint_id}：只有 {subject} 或其上级中心可以",
        ),
        "complaint.refused": ("The complaint work was refused.", "投诉处理被拒绝。"),
        "complaint.after_unreachable": (
            "{origin} names {after} as what its complaint event follows, an entry it cannot hold",
            "{origin} 声称其投诉记录接续 {after}，但它不可能持有该条目",
        ),
    }
)


class ComplaintError(ZhibaoError):
    """Complaint work refused (a ZhibaoError: one line on stderr, exit 1)."""

    default_key = "complaint.refused"
