"""The legal guards on a case (电子监察): what the law lets a centre record, and when.

- 行政许可法 第三十二条: a 补正 notice is given on the spot or within five days of receipt;
  a later one means the application was accepted on the day it was received (the clock
  starts then).
- 第四十二条: 20 working days, which the organ's head may extend once, by at most 10 (the
  item's `extension_days`), and only while the time limit runs.
- 第四十四条: the decision is served (送达) within ten working days of being made.
- 第八十二条: the law's periods are working days (no public holidays).
- Back-dating: an origin writes its log in seq order, so a suspension, extension or 补正
  notice dated before an event its author already recorded on the case, or dated on or
  before the deadline but written after a case event (any case) its author dated past the
  deadline since it first wrote on this case, was back-dated: it cannot move the deadline.
  "Written after" reads the author's previous `LOOK_BACK` case events held here (`written`
  below): the author and its ancestors, whose figures count the case, hold all of them. A
  whole paper history entered case by case (补录) is not caught: each case's events are
  written before the next case's.

Every rule is checked twice: by the commands (`tiers.cases.service`) before they append, with
today as the node knows it; and by the fold (`tiers.cases.machine.step`) on every event from
any node, with nothing but the case's events and the calendar, so every node holding the
same events agrees on them, whatever a hostile or buggy node wrote. Pure: no store, no clock.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from sync.clock import local_date, local_day
from sync.protocol import i18n
from sync.protocol.errors import IllegalTransitionError
from tiers.calendar import WorkCalendar
from tiers.cases import entries as e
from tiers.catalogue import DEFAULT_EXTENSION_DAYS
from tiers.deadlines import Pause, compute_deadline

if TYPE_CHECKING:
    from tiers.cases.machine import CaseState
    from tiers.cases.order import Event

SUPPLEMENT_NOTICE_DAYS = 5  # 第三十二条: 补正 notice within five days of receipt
DELIVERY_DAYS = 10  # 第四十四条: 送达 within ten days of the decision
DEFAULT_UNACCEPTED_DAYS = 5  # 第三十二条 again: accept, reject or notify within five days
UNACCEPTED, UNDELIVERED = "unaccepted", "undelivered"
BACKDATING = frozenset({e.SUSPENDED, e.EXTENDED, e.SUPPLEMENT_REQUESTED})
# what the fold refuses under these rules (and an unpaid delivery, tiers.cases.machine)
FOLD_KEYS = frozenset(
    {
        "case.extend_twice", "case.extend_limit", "case.extend_late", "case.backdated",
        "case.backdated_deadline", "case.deliver_unpaid", "case.rectify_backdated",
    }
)  # fmt: skip
LOOK_BACK = 64  # previous case events of the author read to date a pausing event's writing


def supplement_is_late(cal: WorkCalendar, received_at: str, requested_at: str) -> bool:
    """第三十二条: a 补正 notice more than five working days after receipt is late, and the
    application then counts as accepted on the day it was received."""
    days, _ = cal.workdays_in(local_date(received_at), local_date(requested_at))
    return days > SUPPLEMENT_NOTICE_DAYS


def extension_limit(state: CaseState) -> int:
    """The most one extension may add: what the acceptance recorded from the catalogue, else
    the law's 10 working days (第四十二条) — an acceptance that names none gets no more."""
    return DEFAULT_EXTENSION_DAYS if state.extension_limit is None else state.extension_limit


def due_now(state: CaseState, cal: WorkCalendar) -> date | None:
    """The deadline as the events folded so far give it; None before acceptance or while an
    open pause froze the clock."""
    if state.accepted_at is None or state.promised_days is None:
        return None
    pauses = [
        Pause(local_date(start), local_date(end) if end else None) for start, end in state.pauses
    ]
    return compute_deadline(
        cal, local_date(state.accepted_at), state.promised_days, pauses, state.extension_days
    ).due


def _seen_late(due: date, today: date | None, seen: date | None) -> bool:
    """At a command: the deadline has passed `today` on a case this node recorded by then
    (`seen`: the day it first stored an event of the case). A case entered only after its
    deadline (补录 of a whole paper history) was never watched here: its records go in."""
    return today is not None and today > due and seen is not None and seen <= due


def check_extension(
    state: CaseState, days: int, on: date, cal: WorkCalendar, *, today: date | None = None,
    seen: date | None = None,
) -> None:  # fmt: skip
    """第四十二条: once, at most the item's limit, and not after the deadline (dated `on`;
    at a command also `today`, see `_seen_late`). IllegalTransitionError with the limit."""
    case_id = state.case_id
    if state.extensions:
        raise IllegalTransitionError("case.extend_twice", case_id=case_id)
    limit = extension_limit(state)
    if days > limit:
        raise IllegalTransitionError("case.extend_limit", case_id=case_id, days=days, limit=limit)
    due = due_now(state, cal)
    if due is not None and (on > due or _seen_late(due, today, seen)):
        raise IllegalTransitionError("case.extend_late", case_id=case_id, due=due.isoformat())


def check_pause_not_backdated(
    state: CaseState, on: date, today: date, cal: WorkCalendar, seen: date | None
) -> None:
    """At a command: once the deadline has passed (`_seen_late`), a suspension dated on or
    before it would make an overdue case on time (a pause then moves the deadline)."""
    due = due_now(state, cal)
    if due is not None and on <= due and _seen_late(due, today, seen):
        raise IllegalTransitionError(
            "case.pause_backdated", case_id=state.case_id, due=due.isoformat(), at=on.isoformat()
        )


def check_written(state: CaseState, on: date, written: str | None, cal: WorkCalendar) -> None:
    """A pausing event dated `on`, on or before the deadline, written after its author dated
    a case event `written`, past the deadline: back-dated across it."""
    if written is None:
        return
    due = due_now(state, cal)
    if due is not None and on <= due < date.fromisoformat(written):
        raise IllegalTransitionError(
            "case.backdated_deadline", case_id=state.case_id, at=on.isoformat(),
            due=due.isoformat(), written=written,
        )  # fmt: skip


def check_event(
    state: CaseState, event: Event, cal: WorkCalendar, written: str | None = None
) -> None:
    """The fold's guards on an event from any node (a refusal makes it a violation).
    `written`: the latest day its author dated one of its previous case events."""
    if event.type == e.RECTIFIED and state.rated_at is not None:
        rated = local_date(state.rated_at)
        if local_date(event.at) < rated:  # on time however late: what `--at` refuses
            raise IllegalTransitionError(
                "case.rectify_backdated", case_id=state.case_id, at=event.at,
                rated=rated.isoformat(),
            )  # fmt: skip
    if event.type not in BACKDATING:
        return
    on = local_date(event.at)
    latest = state.latest_by_origin.get(event.origin)
    if latest is not None and on < date.fromisoformat(latest):
        raise IllegalTransitionError(
            "case.backdated", case_id=state.case_id, at=on.isoformat(), latest=latest
        )
    check_written(state, on, written, cal)
    if event.type == e.EXTENDED:
        check_extension(state, event.body["days"], on, cal)


def late_supplement_accepts(state: CaseState, event: Event, cal: WorkCalendar) -> None:
    """After a 补正 notice before acceptance was applied: when it was late (第三十二条), the
    case is accepted as of receipt — at once if the notice states the item's promised days
    (as `case request-supplement` writes), else by the `case.accepted` that follows."""
    if state.accepted or not supplement_is_late(cal, state.received_at, event.at):
        return
    state.deemed_accepted = True
    days = event.body.get("promised_days")
    if isinstance(days, int) and not isinstance(days, bool):
        state.accepted_at, state.accepted_by = state.received_at, event.origin
        state.promised_days = days
        limit = event.body.get("extension_limit")
        if isinstance(limit, int) and not isinstance(limit, bool):
            state.extension_limit = limit


def note_applied(state: CaseState, event: Event) -> None:
    """Remember the latest day each origin dated an applied event of this case."""
    day = local_day(event.at)
    if day > state.latest_by_origin.get(event.origin, ""):
        state.latest_by_origin[event.origin] = day


def late_warning(
    cal: WorkCalendar, status: str, received_at: str, completed_at: str | None,
    accepted: bool, today: date, unaccepted_days: int,
) -> str | None:  # fmt: skip
    """'unaccepted': received, not accepted, and more than `unaccepted_days` working days
    since (第三十二条); 'undelivered': completed and not served within ten working days
    (第四十四条). None otherwise (the deadline's yellow/red is judged elsewhere)."""
    if status == "received" and not accepted:
        waited = cal.workdays_in(local_date(received_at), today)[0]
        return UNACCEPTED if waited > unaccepted_days else None
    if status == "completed" and completed_at is not None:
        waited = cal.workdays_in(local_date(completed_at), today)[0]
        return UNDELIVERED if waited > DELIVERY_DAYS else None
    return None


i18n.register(
    {
        "case.extend_twice": (
            "Case {case_id} was extended once already; the law allows one extension"
            " (行政许可法 第四十二条).",
            "办件 {case_id} 已延长过一次；依《行政许可法》第四十二条只能延长一次。",
        ),
        "case.extend_limit": (
            "Case {case_id} may be extended by at most {limit} working days, not {days}"
            " (the item's limit; 行政许可法 第四十二条).",
            "办件 {case_id} 最多可延长 {limit} 个工作日，不能延长 {days} 个"
            "（事项规定；《行政许可法》第四十二条）。",
        ),
        "case.extend_late": (
            "Case {case_id}'s time limit ran out on {due}; an extension is approved before it"
            " runs out, never after (行政许可法 第四十二条).",
            "办件 {case_id} 的办理期限已于 {due} 届满；延长须在期限内批准，期满后不能延长"
            "（《行政许可法》第四十二条）。",
        ),
        "case.pause_backdated": (
            "Case {case_id}'s time limit ran out on {due}; a suspension dated {at} would be"
            " back-dated across it and cannot be recorded now.",
            "办件 {case_id} 的办理期限已于 {due} 届满；日期为 {at} 的中止属于倒签，跨越了期限，"
            "现在不能记录。",
        ),
        "case.backdated_deadline": (
            "Case {case_id}'s time limit ran out on {due}, and this node has since recorded"
            " an event dated {written}; a suspension, extension or 补正 notice dated {at} would"
            " be back-dated across the deadline.",
            "办件 {case_id} 的办理期限已于 {due} 届满，本节点此后已记录日期为 {written} 的事项；"
            "日期为 {at} 的中止、延长或补正告知属于跨越期限的倒签。",
        ),
        "case.rectify_backdated": (
            "Case {case_id} was rated on {rated}; a rectification dated {at} is before the"
            " bad rating it answers (back-dated).",
            "办件 {case_id} 于 {rated} 收到差评；日期为 {at} 的整改早于该差评（倒签）。",
        ),
        "case.backdated": (
            "On case {case_id} this node already recorded an event dated {latest}; a"
            " suspension or extension dated {at} would be back-dated.",
            "本节点已在办件 {case_id} 上记录了日期为 {latest} 的事项；日期为 {at} 的中止或"
            "延长属于倒签。",
        ),
    }
)
