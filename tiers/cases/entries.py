"""Case entry types (DESIGN §3) and the checks on their bodies.

Every body has `case_id` and `after`: `[origin, seq]` of the latest event of this case its
author knew (null only on the first event, `case.received`). `after` gives a case's history
across village, town and city logs a causal order that never relies on `at`.
Money is integer fen; ratings are 1 (非常满意) … 5 (非常不满意) as in GB/T 39046.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sync.protocol.entry import register_body_check
from sync.protocol.ids import is_node_id

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

RESULTS = ("approved", "denied")
DELIVERY_METHODS = ("window", "mail", "sms")
SCORES = range(1, 6)
MAX_TEXT = 2000
MAX_LIST = 100


def is_case_id(value: object) -> bool:
    """`<node id>-<YYYYMMDD>-<number of 4 digits or more>`, all ASCII digits."""
    if type(value) is not str:
        return False
    parts = value.split("-")
    if len(parts) != 3 or not is_node_id(parts[0]):
        return False
    digits = parts[1] + parts[2]
    return len(parts[1]) == 8 and len(parts[2]) >= 4 and digits.isascii() and digits.isdigit()


def _text(body: dict[str, Any], key: str, *, optional: bool = False) -> None:
    value = body.get(key)
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        raise ValueError(f"{key} must be non-empty text")


def _texts(body: dict[str, Any], key: str, *, nonempty: bool = False) -> None:
    value = body.get(key)
    if not isinstance(value, list) or len(value) > MAX_LIST or (nonempty and not value):
        raise ValueError(f"{key} must be a list of text")
    for item in value:
        if not isinstance(item, str) or not item.strip() or len(item) > MAX_TEXT:
            raise ValueError(f"{key} must be a list of non-empty text")


def _int(body: dict[str, Any], key: str, low: int, high: int | None = None) -> None:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{key} must be an integer of at least {low}")
    if high is not None and value > high:
        raise ValueError(f"{key} must be at most {high}")


def _choice(body: dict[str, Any], key: str, choices: tuple[str, ...]) -> None:
    if body.get(key) not in choices:
        raise ValueError(f"{key} must be one of {', '.join(choices)}")


def _envelope(body: dict[str, Any], *, first: bool) -> None:
    case_id = body.get("case_id")
    if not is_case_id(case_id):
        raise ValueError("case_id is malformed")
    after = body.get("after")
    if first:
        if after is not None:
            raise ValueError("the first event of a case has after = null")
        return
    if not (
        isinstance(after, list)
        and len(after) == 2
        and is_node_id(after[0])
        and isinstance(after[1], int)
        and not isinstance(after[1], bool)
        and after[1] >= 1
    ):
        raise ValueError("after must be [origin, seq]")


def _received(body: dict[str, Any]) -> None:
    _envelope(body, first=True)
    _text(body, "item_code")
    applicant = body.get("applicant")
    if not isinstance(applicant, dict) or set(applicant) - {"name", "id_no", "phone"}:
        raise ValueError("applicant must be an object with name, id_no, phone")
    _text(applicant, "name")
    _text(applicant, "id_no", optional=True)
    _text(applicant, "phone", optional=True)
    _texts(body, "materials")


def _accepted(body: dict[str, Any]) -> None:
    _envelope(body, first=False)
    _int(body, "promised_days", 0, 100_000)


def _with_reason(body: dict[str, Any]) -> None:
    _envelope(body, first=False)
    _text(body, "reason")


def _supplement(body: dict[str, Any]) -> None:
    _envelope(body, first=False)
    _texts(body, "missing", nonempty=True)


def _plain(body: dict[str, Any]) -> None:
    _envelope(body, first=False)


def _extended(body: dict[str, Any]) -> None:
    _with_reason(body)
    _int(body, "days", 1, 10_000)


def _forwarded(body: dict[str, Any]) -> None:
    _envelope(body, first=False)
    to = body.get("to")
    if not is_node_id(to):
        raise ValueError("to must be a node id")
    _text(body, "note", optional=True)


def _completed(body: dict[str, Any]) -> None:
    _envelope(body, first=False)
    _choice(body, "result", RESULTS)
    _text(body, "note", optional=True)


def _delivered(body: dict[str, Any]) -> None:
    _envelope(body, first=False)
    _choice(body, "method", DELIVERY_METHODS)


def _fee_assessed(body: dict[str, Any]) -> None:
    _envelope(body, first=False)
    _int(body, "fee_fen", 1)


def _fee_paid(body: dict[str, Any]) -> None:
    _envelope(body, first=False)
    _text(body, "receipt")
    _int(body, "fee_fen", 1)


def _rated(body: dict[str, Any]) -> None:
    _envelope(body, first=False)
    _int(body, "score", 1, 5)
    _text(body, "comment", optional=True)


def _withdrawn(body: dict[str, Any]) -> None:
    _envelope(body, first=False)
    _text(body, "reason", optional=True)


BODY_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    RECEIVED: _received,
    ACCEPTED: _accepted,
    REJECTED: _with_reason,
    SUPPLEMENT_REQUESTED: _supplement,
    SUPPLIED: _plain,
    SUSPENDED: _with_reason,
    RESUMED: _plain,
    EXTENDED: _extended,
    FORWARDED: _forwarded,
    TAKEN: _plain,
    COMPLETED: _completed,
    DELIVERED: _delivered,
    FEE_ASSESSED: _fee_assessed,
    FEE_PAID: _fee_paid,
    RATED: _rated,
    WITHDRAWN: _withdrawn,
}
TYPES = frozenset(BODY_CHECKS)

for _type, _check in BODY_CHECKS.items():
    register_body_check(_type, _check)
