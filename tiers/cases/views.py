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
from sync.logstore import LogStore
from sync.node import Node
from sync.protocol.errors import CaseNotFoundError
from tiers import materials
from tiers.calendar import WorkCalendar
from tiers.cases import guards, listing
from tiers.cases.entries import SUPPLEMENT_REQUESTED, SUPPLIED
from tiers.cases.machine import OPEN, allowed_actions, allowed_for
from tiers.cases.projection import deadline_of, load_case
from tiers.catalogue import yuan_from_fen
from tiers.deadlines import Deadline, remaining_workdays, warning
from tiers.published import get_item, work_calendar
from tiers.rectification import DEFAULT_RECTIFY_DAYS, rectification, rectify_days

WARNINGS = listing.WARNINGS
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
    store: LogStore, case_id: str, today: date, threshold: int,
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
    here = store.owner
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
            cal,
            state.status,
            deadline,
            today,
            threshold,
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
        # what this node itself may record now (custody, the catalogue's tiers)
        "allowed_here": allowed_for(state, here, item) if here else allowed_actions(state),
        "notices": notices(events),
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


def notices(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The 一次性告知 notices among a case's `events` that took effect, each with what was
    missing and when it was supplied (None while it is not)."""
    found: list[dict[str, Any]] = []
    for ev in events:
        if ev["standing"] != "applied":
            continue
        if ev["type"] == SUPPLEMENT_REQUESTED:
            found.append(
                {"at": ev["at"], "node_id": ev["node_id"], "missing": list(ev["body"]["missing"]),
                 "supplied_at": None}
            )  # fmt: skip
        elif ev["type"] == SUPPLIED and found and found[-1]["supplied_at"] is None:
            found[-1]["supplied_at"] = ev["at"]
    return found


def list_cases(
    store: LogStore, today: date, threshold: int, *, status: str | None = None,
    warning_filter: str | None = None, unaccepted: int = guards.DEFAULT_UNACCEPTED_DAYS,
) -> list[dict[str, Any]]:  # fmt: skip
    """Cases known here, newest first, optionally only one status or one warning colour
    (every one of them: `tiers.cases.listing.find` pages and searches)."""
    wanted = listing.Filters(status=status, warning=warning_filter)
    return listing.find(store, today, threshold, wanted, unaccepted=unaccepted).rows


def show(node: Node, case_id: str) -> dict[str, Any]:
    """`case_view` for today at this node."""
    today, threshold = judging_day(node)
    view = case_view(
        node.store, case_id, today, threshold, unaccepted_days(node),
        rectify_days(node.config.settings),
    )  # fmt: skip
    view["attachments"] = [m.to_json() for m in materials.materials_of(node, case_id)]
    view["node_names"] = node_names(node, view)
    return view


def node_names(node: Node, view: dict[str, Any]) -> dict[str, str]:
    """The names (as enrolled; this node's own from its settings) of the nodes a case
    names: holder, origin, where it went, who accepted and completed it, event authors."""
    named = {view[k] for k in ("holder", "origin", "forward_to", "accepted_by", "completed_by")}
    named |= {ev["node_id"] for ev in view["events"]}
    named.discard(None)
    rows = node.store.query(
        "SELECT node_id, name FROM nodes WHERE node_id IN (SELECT value FROM json_each(?))",
        (json.dumps(sorted(named)),),
    )
    names = {node_id: name for node_id, name in rows if name}
    if node.node_id in named and node.config.name:
        names.setdefault(node.node_id, node.config.name)
    return names


def list_at(
    node: Node, status: str | None = None, warning_filter: str | None = None
) -> list[dict[str, Any]]:
    """`list_cases` for today at this node."""
    today, threshold = judging_day(node)
    return list_cases(
        node.store, today, threshold, status=status, warning_filter=warning_filter,
        unaccepted=unaccepted_days(node),
    )  # fmt: skip


def find_at(
    node: Node, filters: listing.Filters, limit: int | None = None, offset: int = 0
) -> listing.Page:
    """`listing.find` for today at this node."""
    today, threshold = judging_day(node)
    return listing.find(
        node.store, today, threshold, filters, limit=limit, offset=offset,
        unaccepted=unaccepted_days(node),
    )  # fmt: skip
