"""Reading cases: `case show` and `case list` as JSON-ready dicts (DESIGN §7 keys).

Warnings (电子监察) are judged for a given day and threshold: red past the deadline, yellow
with `threshold` or fewer working days left (accepted cases still open); `unaccepted` for a
case received and not accepted after `unaccepted_days` working days (行政许可法 第三十二条),
`undelivered` for one completed and not delivered within ten working days (第四十四条).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from sync.clock import local_date
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.errors import CaseError, CaseNotFoundError
from sync.store import Store
from tiers import materials
from tiers.calendar import WorkCalendar
from tiers.cases import guards
from tiers.cases.machine import OPEN, STATUSES, allowed_actions
from tiers.cases.projection import deadline_of, load_case
from tiers.catalogue import yuan_from_fen
from tiers.deadlines import Deadline, remaining_workdays, warning
from tiers.provisional import case_years
from tiers.published import get_item, work_calendar
from tiers.rectification import DEFAULT_RECTIFY_DAYS, rectification, rectify_days

WARNINGS = ("yellow", "red", guards.UNACCEPTED, guards.UNDELIVERED)
DEFAULT_YELLOW_DAYS = 1


def judging_day(node: Node) -> tuple[date, int]:
    """Today at this node and its yellow threshold (setting `yellow_days`, default 1)."""
    threshold = node.config.settings.get("yellow_days", DEFAULT_YELLOW_DAYS)
    return node.clock.now().date(), int(threshold)


def unaccepted_days(node: Node) -> int:
    """Working days a received case may wait for acceptance before its warning (setting
    `unaccepted_days`, default 5: 行政许可法 第三十二条's five days to accept or notify)."""
    value = node.config.settings.get("unaccepted_days", guards.DEFAULT_UNACCEPTED_DAYS)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return guards.DEFAULT_UNACCEPTED_DAYS
    return value


def _warning(
    cal: WorkCalendar, status: str, deadline: Deadline | None, today: date, threshold: int,
    late: tuple[str, str | None, bool, int] | None = None,
) -> str | None:  # fmt: skip
    """The deadline's yellow/red; else, with `late` (received_at, completed_at, accepted,
    unaccepted_days), whether acceptance or delivery is late."""
    if deadline is not None and status in OPEN:
        return warning(cal, deadline, today, threshold)
    if late is None:
        return None
    received_at, completed_at, accepted, days = late
    return guards.late_warning(cal, status, received_at, completed_at, accepted, today, days)


def case_view(
    store: Store, case_id: str, today: date, threshold: int,
    unaccepted: int = guards.DEFAULT_UNACCEPTED_DAYS,
    rectify_within: int = DEFAULT_RECTIFY_DAYS,
) -> dict[str, Any]:  # fmt: skip
    """Everything known here about one case, its events in causal order (CaseNotFoundError)."""
    folded = load_case(store, case_id)
    state = folded.state
    if state is None:
        raise CaseNotFoundError("case.not_found", case_id=case_id)
    cal = work_calendar(store)
    deadline = deadline_of(state, cal)
    item = get_item(store, state.item_code)
    refused = {v.ref: v.key for v in state.violations}
    events = [
        {
            "type": ev.type, "node_id": ev.origin, "at": ev.at, "seq": ev.seq,
            "after": ev.body.get("after"), "body": dict(ev.body),
            "standing": "refused" if ev.ref in refused else "applied",
            "problem": refused.get(ev.ref),
        }
        for ev in folded.ordered
    ] + [
        {
            "type": ev.type, "node_id": ev.origin, "at": ev.at, "seq": ev.seq,
            "after": ev.body.get("after"), "body": dict(ev.body), "standing": "waiting",
            "problem": None,
        }
        for ev in folded.waiting
    ]  # fmt: skip
    remaining = None
    if deadline is not None and state.status in OPEN:
        remaining = remaining_workdays(cal, deadline, today)
    return {
        "case_id": state.case_id,
        "item_code": state.item_code,
        "item_name": item.name if item else None,
        "status": state.status,
        "holder": state.holder,
        "origin": state.origin,
        "forward_to": state.forward_to,
        "applicant": state.applicant,
        "materials": state.materials,
        "missing": state.missing,
        "received_at": state.received_at,
        "accepted_at": state.accepted_at,
        "accepted_by": state.accepted_by,
        "promised_days": state.promised_days,
        "extension_days": state.extension_days,
        "deadline": deadline.due.isoformat() if deadline and deadline.due else None,
        "paused_since": (
            deadline.paused_since.isoformat() if deadline and deadline.paused_since else None
        ),
        "remaining_days": remaining,
        "warning": _warning(
            cal, state.status, deadline, today, threshold,
            (state.received_at, state.completed_at, state.accepted, unaccepted),
        ),
        "provisional": bool(deadline and deadline.provisional),
        "provisional_years": sorted(deadline.provisional_years) if deadline else [],
        "provisional_note": deadline.note() if deadline else None,
        "completed_at": state.completed_at,
        "completed_by": state.completed_by,
        "result": state.result,
        "note": state.note,
        "delivered_at": state.delivered_at,
        "delivery_method": state.delivery_method,
        "fee_fen": state.fee_fen,
        "fee": yuan_from_fen(state.fee_fen) if state.fee_fen is not None else None,
        "paid": state.paid,
        "receipt": state.receipt,
        "rating": state.rating,
        "comment": state.comment,
        "closed_at": state.closed_at,
        "reason": state.reason,
        "allowed": allowed_actions(state),
        "waiting": len(folded.waiting),
        "violations": [
            {"node_id": v.origin, "seq": v.seq, "type": v.type, "problem": v.key, "kind": v.kind}
            for v in state.violations
        ],
        "events": events,
        "extensions": state.extensions,
        "extension_limit": guards.extension_limit(state),
        "approved_by": state.approved_by,
        "deemed_accepted": state.deemed_accepted,
        "rated_at": state.rated_at,
        "rating_channel": state.rating_channel,
        "rectification": rectification(
            cal,
            state.rating,
            local_date(state.rated_at) if state.rated_at else None,
            state.rectified_at,
            state.rectified_by,
            state.rectify_note,
            today,
            rectify_within,
            threshold,
        ),
    }


_LIST_COLUMNS = (
    "case_id, item_code, status, holder, origin, applicant, accepted_at, deadline, "
    "accepted_on, paused_since, remaining_when_paused, completed_at, result, received_at"
)


def list_cases(
    store: Store, today: date, threshold: int, *, status: str | None = None,
    warning_filter: str | None = None, unaccepted: int = guards.DEFAULT_UNACCEPTED_DAYS,
) -> list[dict[str, Any]]:  # fmt: skip
    """Cases known here, newest first, optionally only one status or one warning colour."""
    if status is not None and status not in STATUSES:
        raise CaseError("case.bad_status", status=status, statuses=", ".join(STATUSES))
    if warning_filter is not None and warning_filter not in WARNINGS:
        raise CaseError("case.bad_warning", warning=warning_filter)
    sql = f"SELECT {_LIST_COLUMNS} FROM cases"
    params: tuple[Any, ...] = ()
    if status is not None:
        sql += " WHERE status = ?"
        params = (status,)
    cal = work_calendar(store)
    result = []
    for row in store.query(sql + " ORDER BY received_at DESC, case_id DESC", params):
        (case_id, item_code, st, holder, origin, applicant, accepted_at, due, accepted_on,
         paused_since, remaining, completed_at, outcome, received_at) = row  # fmt: skip
        years: list[int] = []
        deadline = None
        if accepted_at is not None:
            # read again on the calendar in force (tiers.provisional): a year published whole
            # since, or an old arrangement read as the days it lists, counts at once
            years = case_years(cal, accepted_on, due, paused_since)
            deadline = Deadline(
                date.fromisoformat(due) if due else None,
                frozenset(years),
                date.fromisoformat(paused_since) if paused_since else None,
                remaining,
            )
        late = (received_at, completed_at, accepted_at is not None, unaccepted)
        colour = _warning(cal, st, deadline, today, threshold, late)
        if warning_filter is not None and colour != warning_filter:
            continue
        result.append(
            {
                "case_id": case_id, "item_code": item_code, "status": st, "holder": holder,
                "origin": origin, "applicant": json.loads(applicant).get("name"),
                "accepted_at": accepted_at, "deadline": due, "warning": colour,
                "provisional": bool(years), "completed_at": completed_at,
                "result": outcome, "provisional_years": years,
            }
        )  # fmt: skip
    return result


def show(node: Node, case_id: str) -> dict[str, Any]:
    """`case_view` for today at this node."""
    today, threshold = judging_day(node)
    view = case_view(
        node.store, case_id, today, threshold, unaccepted_days(node),
        rectify_days(node.config.settings),
    )  # fmt: skip
    view["attachments"] = [m.to_json() for m in materials.materials_of(node, case_id)]
    return view


def list_at(
    node: Node, status: str | None = None, warning_filter: str | None = None
) -> list[dict[str, Any]]:
    """`list_cases` for today at this node."""
    today, threshold = judging_day(node)
    return list_cases(
        node.store, today, threshold, status=status, warning_filter=warning_filter,
        unaccepted=unaccepted_days(node),
    )  # fmt: skip


i18n.register(
    {
        "case.bad_status": (
            "'{status}' is not a case status; use one of {statuses}.",
            "“{status}”不是办件状态；可用 {statuses}。",
        ),
        "case.bad_warning": (
            "'{warning}' is not a warning; use yellow, red, unaccepted or undelivered.",
            "“{warning}”不是预警级别；可用 yellow（黄灯）、red（红灯）、unaccepted（未受理）"
            "或 undelivered（未送达）。",
        ),
    }
)
