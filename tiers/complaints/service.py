"""Complaint work at a node: `zhibao complaint file|reply|close|show|list` (DESIGN §8).

Invariants: each recording function checks everything inside `node.store.transaction()`
and only then appends (the append joins that transaction), so a refusal appends nothing.
A complaint's time limit is fixed when it is filed (`days` in its body, from the filing
node's setting `complaint_days`), so every node judges it on time or late alike.

The default limit, 5 working days, follows the practice of 便民服务中心 complaint rules: an
ordinary complaint answered on the spot or the next day, one that needs several units
within a week (一周之内作出答复), counted as 5 working days after the day it was filed.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sync import trust
from sync.clock import local_date
from sync.logstore import LogStore
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.errors import NodeIdError
from sync.protocol.ids import ancestors_of, subtree_end, tier_of
from tiers.calendar import WorkCalendar
from tiers.cases.projection import load_case
from tiers.cases.views import judging_day
from tiers.complaints import entries as c
from tiers.complaints.entries import ComplaintError
from tiers.complaints.projection import (
    OPEN,
    ComplaintState,
    Folded,
    check,
    due_date,
    load_complaint,
)
from tiers.deadlines import RED, YELLOW, remaining_workdays, warning
from tiers.published import list_items, work_calendar

DEFAULT_COMPLAINT_DAYS = 5
COMPLAINT_DAYS = "complaint_days"  # the setting in node.toml [settings]


def complaint_days(node: Node) -> int:
    """The time limit this node gives the complaints it files (1 … 60 working days)."""
    value = node.config.settings.get(COMPLAINT_DAYS, DEFAULT_COMPLAINT_DAYS)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= c.MAX_DAYS:
        raise ComplaintError("complaint.bad_days", value=value, most=c.MAX_DAYS)
    return value


def _text(value: str | None, what: str) -> str:
    if value is None or not value.strip():
        raise ComplaintError("complaint.blank", field=what)
    return value.strip()


def next_complaint_id(node: Node, stamp: str) -> str:
    """The next `<node-id>-C<YYYYMMDD>-<NNNN>` for the day of `stamp` at this node."""
    prefix = f"{node.node_id}-C{local_date(stamp):%Y%m%d}-"
    rows = node.store.query(
        "SELECT complaint_id FROM complaint_events WHERE complaint_id >= ? AND complaint_id < ?"
        " AND origin = ?",
        (prefix, prefix[:-1] + ".", node.node_id),
    )
    numbers = [int(r[0].rsplit("-", 1)[1]) for r in rows]
    return f"{prefix}{max(numbers, default=0) + 1:04d}"


def _known_node(node: Node, node_id: str) -> bool:
    """This node, its ancestors, and the nodes enrolled or whose log is held here."""
    if node_id == node.node_id or node_id in ancestors_of(node.node_id):
        return True
    if node_id in node.store.heads():
        return True
    return any(n["node_id"] == node_id for n in trust.enrolled_nodes(node.store))


def _subject(
    node: Node, case_id: str | None, about_node: str | None, department: str | None
) -> dict[str, Any]:
    """The `about` part of a filing body, and the node that must answer for it."""
    given = [v for v in (case_id, about_node, department) if v is not None]
    if len(given) != 1:
        raise ComplaintError("complaint.about_what")
    if case_id is not None:
        state = load_case(node.store, case_id.strip()).state
        if state is None:
            raise ComplaintError("complaint.unknown_case", case_id=case_id)
        return {"about": "case", "case_id": state.case_id, "subject": state.holder}
    if about_node is not None:
        target = about_node.strip()
        try:
            tier_of(target)
        except NodeIdError:
            raise ComplaintError("complaint.unknown_node", node_id=target) from None
        if not _known_node(node, target):
            raise ComplaintError("complaint.unknown_node", node_id=target)
        return {"about": "node", "subject": target}
    name = _text(department, "department")
    known = sorted({item.department for item in list_items(node.store)})
    if name not in known:
        raise ComplaintError(
            "complaint.unknown_department", department=name, known="、".join(known) or "-"
        )
    return {"about": "department", "department": name, "subject": node.node_id}


def file(
    node: Node, text: str, *, case_id: str | None = None, about_node: str | None = None,
    department: str | None = None, at: str | None = None,
) -> str:  # fmt: skip
    """登记投诉 about a case, a node or a department; returns the new complaint id."""
    with node.store.transaction():
        about = _subject(node, case_id, about_node, department)
        if not c.on_line(about["subject"], node.node_id):
            raise ComplaintError(
                "complaint.subject_unrelated", origin=node.node_id, complaint_id="-",
                subject=about["subject"],
            )  # fmt: skip
        stamp = node.clock.stamp(at)
        complaint_id = next_complaint_id(node, stamp)
        body = {
            "complaint_id": complaint_id, "after": None, "text": _text(text, "text"),
            "days": complaint_days(node), **about,
        }  # fmt: skip
        node.append(c.FILED, body, at=stamp)
    return complaint_id


def _folded(store: LogStore, complaint_id: str) -> Folded:
    folded = load_complaint(store, complaint_id)
    if folded.state is None:
        raise ComplaintError("complaint.not_found", complaint_id=complaint_id)
    return folded


def _answer(node: Node, complaint_id: str, action: str, kind: str, at: str | None,
            **fields: Any) -> str:  # fmt: skip
    with node.store.transaction():
        folded = _folded(node.store, complaint_id)
        state = folded.state
        assert state is not None
        check(state, action, node.node_id, state.subject)
        stamp = node.clock.stamp(at)
        last = max(local_date(ev.at) for ev in folded.ordered + folded.waiting)
        if local_date(stamp) < last:
            raise ComplaintError(
                "complaint.at_before", complaint_id=complaint_id, at=stamp, last=last.isoformat()
            )
        after = list(state.anchor) if state.anchor else None
        body = {"complaint_id": complaint_id, "subject": state.subject, "after": after, **fields}
        node.append(kind, body, at=stamp)
    return complaint_id


def reply(node: Node, complaint_id: str, text: str, at: str | None = None) -> str:
    """答复: the subject (or a centre above it) answers the complainant."""
    return _answer(node, complaint_id, "reply", c.REPLIED, at, text=_text(text, "text"))


def close(node: Node, complaint_id: str, note: str | None = None, at: str | None = None) -> str:
    """办结 the complaint (by its subject or a centre above it), with an optional note."""
    fields = {"note": note.strip()} if note and note.strip() else {}
    return _answer(node, complaint_id, "close", c.CLOSED, at, **fields)


# --- reading ------------------------------------------------------------------------------


def _judged(
    cal: WorkCalendar, filed_at: str, days: int, closed_at: str | None, today: date,
    threshold: int,
) -> dict[str, Any]:  # fmt: skip
    """Deadline, remaining days, warning (open only) and on-time (closed only)."""
    deadline = due_date(cal, filed_at, days)
    assert deadline.due is not None
    judged: dict[str, Any] = {
        "deadline": deadline.due.isoformat(),
        "provisional": deadline.provisional,
        "provisional_note": deadline.note(),
        "remaining_days": None,
        "warning": None,
        "on_time": None,
    }
    if closed_at is None:
        judged["remaining_days"] = remaining_workdays(cal, deadline, today)
        judged["warning"] = warning(cal, deadline, today, threshold)
    else:
        judged["on_time"] = local_date(closed_at) <= deadline.due
    return judged


def complaint_view(
    store: LogStore, complaint_id: str, today: date, threshold: int
) -> dict[str, Any]:
    """Everything known here about one complaint (`complaint show --json`, `file --json`)."""
    folded = _folded(store, complaint_id)
    s = folded.state
    assert isinstance(s, ComplaintState)
    return {
        "complaint_id": s.complaint_id,
        "filed_by": s.filer,
        "about": s.about,
        "case_id": s.case_id,
        "department": s.department,
        "subject": s.subject,
        "text": s.text,
        "days": s.days,
        "filed_at": s.filed_at,
        "status": s.status,
        **_judged(work_calendar(store), s.filed_at, s.days, s.closed_at, today, threshold),
        "replies": s.replies,
        "closed_at": s.closed_at,
        "closed_by": s.closed_by,
        "note": s.note,
        "waiting": len(folded.waiting),
        "violations": [
            {"node_id": v.origin, "seq": v.seq, "type": v.type, "problem": v.key}
            for v in s.violations
        ],
    }


def show(node: Node, complaint_id: str) -> dict[str, Any]:
    today, threshold = judging_day(node)
    return complaint_view(node.store, complaint_id.strip(), today, threshold)


WARNINGS = (YELLOW, RED)  # a complaint's time limit; not a case's reception or delivery


def list_complaints(
    store: LogStore, today: date, threshold: int, *, open_only: bool = False,
    warning_filter: str | None = None, subject: str | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Complaints known here, newest first; optionally only open ones, one warning colour,
    or those about one node and the nodes below it."""
    if warning_filter is not None and warning_filter not in WARNINGS:
        raise ComplaintError("complaint.bad_warning", warning=warning_filter)
    sql = (
        "SELECT complaint_id, filer, about, case_id, department, subject, days, filed_at, "
        "status, closed_at, replies FROM complaints"
    )
    where: list[str] = []
    params: list[Any] = []
    if open_only:
        where.append("status = ?")
        params.append(OPEN)
    if subject is not None:
        where.append("subject >= ? AND subject < ?")
        params += [subject, subtree_end(subject)]
    if where:
        sql += " WHERE " + " AND ".join(where)
    cal = work_calendar(store)
    out = []
    for row in store.query(sql + " ORDER BY filed_at DESC, complaint_id DESC", params):
        (complaint_id, filer, about, case_id, department, subj, days, filed_at, status,
         closed_at, replies) = row  # fmt: skip
        judged = _judged(cal, filed_at, days, closed_at, today, threshold)
        if warning_filter is not None and judged["warning"] != warning_filter:
            continue
        out.append(
            {
                "complaint_id": complaint_id, "filed_by": filer, "about": about,
                "case_id": case_id, "department": department, "subject": subj,
                "days": days, "filed_at": filed_at, "status": status, "replies": replies,
                "closed_at": closed_at, **judged,
            }
        )  # fmt: skip
    return out


def list_at(
    node: Node, *, open_only: bool = False, warning_filter: str | None = None,
    subject: str | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    today, threshold = judging_day(node)
    return list_complaints(
        node.store, today, threshold, open_only=open_only, warning_filter=warning_filter,
        subject=subject,
    )  # fmt: skip


i18n.register(
    {
        "complaint.bad_days": (
            "The setting complaint_days must be a whole number of working days from 1 to"
            " {most}, not {value}.",
            "设置 complaint_days 须为 1 到 {most} 的整数工作日，不能是 {value}。",
        ),
        "complaint.blank": ("{field} may not be blank.", "{field} 不能为空。"),
        "complaint.about_what": (
            "Name exactly one of --case, --node or --department: what the complaint is about.",
            "请指定投诉对象：--case、--node 或 --department 三者之一。",
        ),
        "complaint.unknown_case": (
            "No case {case_id} is known at this node.",
            "本节点没有办件 {case_id}。",
        ),
        "complaint.unknown_node": (
            "{node_id} is not a node known here.",
            "“{node_id}”不是本节点已知的节点。",
        ),
        "complaint.unknown_department": (
            "No department {department} in the catalogue; known: {known}.",
            "事项目录中没有部门“{department}”；现有：{known}。",
        ),
        "complaint.at_before": (
            "{at} is before complaint {complaint_id}'s latest event ({last}); check --at.",
            "{at} 早于投诉 {complaint_id} 的最近一次记录（{last}），请检查 --at。",
        ),
        "complaint.bad_warning": (
            "'{warning}' is not a warning; use yellow or red.",
            "“{warning}”不是预警级别；可用 yellow（黄灯）或 red（红灯）。",
        ),
    }
)
