"""差评整改 (issue #12 part 5, the 好差评 closed loop): a bad rating opens a rectification.

A rating of 4 (不满意) or 5 (非常不满意) on a case — delivered or not accepted (不予受理) —
opens a rectification on the day it was given; it is closed by `case.rectified`, with a
note, from the case's holder or origin (`zhibao case rectify`). It is due on the N-th
working day after the rating, N being the setting `rectify_days` (default 15).

Sources: 国办发〔2019〕51号 (关于建立政务服务“好差评”制度提高政务服务水平的意见) requires
every 差评 to be verified, rectified and answered (情况清楚、诉求合理的立行立改；情况复杂的
建立台账、限期整改) and leaves the limit to the local scheme; 15 working days is the limit
Sichuan's scheme sets (对“不满意”或者“非常不满意”问题，在15个工作日内整改到位); some
cities use 5 (德州: 5个工作日内整改反馈), hence a setting.

Pure reading: nothing here appends (the event is recorded by tiers.cases.service.rectify).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sync.clock import local_date
from sync.logstore import LogStore
from sync.protocol import i18n
from sync.protocol.errors import CaseError
from tiers.calendar import WorkCalendar
from tiers.cases import entries as e
from tiers.deadlines import Deadline, remaining_workdays, warning
from tiers.published import work_calendar

DEFAULT_RECTIFY_DAYS = 15
RECTIFY_DAYS = "rectify_days"  # the setting in node.toml [settings]
_BAD = tuple(sorted(e.BAD_SCORES))


def rectify_days(settings: dict[str, Any]) -> int:
    """The working days a rectification may take at this node (setting `rectify_days`)."""
    value = settings.get(RECTIFY_DAYS, DEFAULT_RECTIFY_DAYS)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise CaseError("rectify.bad_days", value=value)
    return value


def rectification(
    cal: WorkCalendar, rating: int | None, rated_on: date | None, rectified_at: str | None,
    rectified_by: str | None, note: str | None, today: date, days: int, threshold: int,
) -> dict[str, Any] | None:  # fmt: skip
    """The rectification a bad rating opened (None for a good rating or none): when it
    opened, when it is due, and either its warning today or whether it closed on time."""
    if rating not in e.BAD_SCORES or rated_on is None:
        return None
    due, guessed = cal.add_workdays(rated_on, days)
    deadline = Deadline(due, guessed)
    closed_on = local_date(rectified_at) if rectified_at else None
    return {
        "opened_on": rated_on.isoformat(),
        "due": due.isoformat(),
        "provisional": deadline.provisional,
        "status": "open" if closed_on is None else "closed",
        "remaining_days": remaining_workdays(cal, deadline, today) if closed_on is None else None,
        "warning": warning(cal, deadline, today, threshold) if closed_on is None else None,
        "closed_at": rectified_at,
        "closed_by": rectified_by,
        "note": note,
        "on_time": None if closed_on is None else closed_on <= due,
    }


_LIST_SQL = (
    "SELECT c.case_id, c.item_code, c.status, c.holder, c.origin, c.rating, "
    "coalesce(f.rated_on, json_extract(c.state, '$.rated_at')), "
    "json_extract(c.state, '$.rectified_at'), json_extract(c.state, '$.rectified_by'), "
    "json_extract(c.state, '$.rectify_note'), json_extract(c.state, '$.rating_channel') "
    "FROM cases c LEFT JOIN case_facts f USING (case_id) "
    f"WHERE c.rating IN ({', '.join(str(s) for s in _BAD)}) ORDER BY 7 DESC, c.case_id DESC"
)


def list_rectifications(
    store: LogStore, today: date, days: int, threshold: int, *, open_only: bool = False,
    warning_filter: str | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Every rectification known here (newest rating first): open ones only, or only those
    with one warning colour today (red: overdue)."""
    cal = work_calendar(store)
    out = []
    for row in store.query(_LIST_SQL):
        (case_id, item_code, status, holder, origin, rating, rated, rectified_at, by, note,
         channel) = row  # fmt: skip
        if rated is None:  # never without a date: the figure projection keeps `rated_on`
            continue
        rated_on = date.fromisoformat(rated) if len(rated) == 10 else local_date(rated)
        r = rectification(cal, rating, rated_on, rectified_at, by, note, today, days, threshold)
        if r is None or (open_only and r["status"] != "open"):
            continue
        if warning_filter is not None and r["warning"] != warning_filter:
            continue
        out.append(
            {"case_id": case_id, "item_code": item_code, "case_status": status,
             "holder": holder, "origin": origin, "rating": rating, "channel": channel, **r}
        )  # fmt: skip
    return out


i18n.register(
    {
        "rectify.bad_days": (
            "The setting rectify_days must be a whole number of working days from 1, not {value}.",
            "设置 rectify_days 须为 1 以上的整数工作日，不能是 {value}。",
        ),
    }
)
