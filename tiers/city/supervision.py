"""The legal guards' findings for the city's reconcile (电子监察, tiers.cases.guards).

    fee_override     a fee assessed unlike the catalogue's (票款分离): with the reason
                     recorded (`case fee --override-reason`), or with none (written by a
                     node that skipped the check)
    acceptance_unlike_catalogue  an acceptance (受理) whose promised days or extension limit
                     differ from the catalogue item's in force: the fold trusts what the
                     acceptance recorded (the promise made to the applicant), so a node that
                     skipped the command's check could give itself a longer limit
    fee_unassessed   a case of an item with a fee delivered with no fee assessed (票款分离:
                     what `case deliver` refuses; the fold, without the catalogue, cannot)
    guard_violation  an event the legal guards refused (a second or too long or late
                     extension, a suspension or extension back-dated on its case, a
                     delivery before the assessed fee was paid): it counts nowhere
    backdated        a suspension, extension or 补正 notice dated on or before the case's
                     deadline but written (since its author's first event on the case) after
                     an entry of any type its author dated past it (an origin writes its log
                     in seq order), which the fold's window of case events did not catch;
                     evidence names both entries

Each is `(kind, node_id, evidence, message key or None)`, for the period's events; the
reconcile wraps them in its `Finding`. Depends only on what is held here.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from sync.clock import local_date
from sync.logstore import LogStore
from sync.protocol import i18n
from tiers.cases import entries as e
from tiers.cases import guards
from tiers.cases.machine import DELIVERED, fold
from tiers.cases.order import causal_order
from tiers.cases.projection import load_events, written_after
from tiers.catalogue import DEFAULT_EXTENSION_DAYS, CatalogueItem, yuan_from_fen
from tiers.figures import Period
from tiers.published import get_item, work_calendar

KINDS = (
    "acceptance_unlike_catalogue", "fee_override", "fee_unassessed", "guard_violation",
    "backdated",
)  # fmt: skip
Raw = tuple[str, str, dict[str, Any], str | None]
_PAUSING = (e.SUSPENDED, e.EXTENDED, e.SUPPLEMENT_REQUESTED)


def _item_cache(store: LogStore) -> Callable[[str], CatalogueItem | None]:
    """`get_item` for one pass over the period's events (the catalogue does not change
    during it), each item read once rather than once per event."""
    return functools.cache(lambda code: get_item(store, code))


def _in(period: Period, at: str) -> bool:
    return period.start <= local_date(at) <= period.end


# An event's `at` carries its author's offset (any under a day either way), so the date it
# begins with is its local (China) day, two days before to one day after. Rows whose `at`
# begins with an extended calendar date (YYYY-MM-DD) outside that reach of the period are
# passed over in SQL, before their bodies are read; any other (a basic or week date, which
# ISO 8601 and the entry's check allow too: a member could sign one) reaches `_in`, which
# decides every row.
_NEAR = (
    "(substr({at}, 5, 1) != '-' OR substr({at}, 8, 1) != '-' "
    "OR substr({at}, 1, 10) BETWEEN ? AND ?)"
)


def _near(period: Period) -> tuple[str, str]:
    """`_NEAR`'s bounds for `period`."""
    return (period.start - timedelta(days=2)).isoformat(), (
        period.end + timedelta(days=2)
    ).isoformat()


def fee_overrides(store: LogStore, period: Period) -> list[Raw]:
    """Fees assessed in the period that differ from the item's catalogue fee."""
    found: list[Raw] = []
    item_of = _item_cache(store)
    for origin, seq, case_id, at, body in store.query(
        "SELECT e.origin, e.seq, e.case_id, e.at, e.body FROM case_events e "
        f"WHERE e.type = ? AND {_NEAR.format(at='e.at')} ORDER BY e.origin, e.seq",
        (e.FEE_ASSESSED, *_near(period)),
    ):  # fmt: skip
        if not _in(period, at):
            continue
        fields = json.loads(body)
        item_rows = store.query("SELECT item_code FROM cases WHERE case_id = ?", (case_id,))
        item = item_of(item_rows[0][0]) if item_rows else None
        if item is None or item.fee_fen == fields["fee_fen"]:
            continue
        reason = fields.get("override_reason")
        found.append((
            "fee_override", origin,
            {"case_id": case_id, "seq": seq, "at": at, "item_code": item.code,
             "fee": yuan_from_fen(fields["fee_fen"]), "catalogue_fee": yuan_from_fen(item.fee_fen),
             "reason": reason},
            None if reason is not None else "finding.fee_override_unstated",
        ))  # fmt: skip
    return found


def unlike_catalogue(store: LogStore, period: Period) -> list[Raw]:
    """Acceptances in the period whose `promised_days` or `extension_limit` (absent: the
    law's 10) differ from the catalogue item's: what `case accept` never writes."""
    found: list[Raw] = []
    item_of = _item_cache(store)
    for origin, seq, case_id, at, body, item_code in store.query(
        "SELECT e.origin, e.seq, e.case_id, e.at, e.body, c.item_code FROM case_events e "
        f"JOIN cases c USING (case_id) WHERE e.type IN (?, ?) AND {_NEAR.format(at='e.at')} "
        "ORDER BY e.origin, e.seq",
        (e.ACCEPTED, e.SUPPLEMENT_REQUESTED, *_near(period)),
    ):  # fmt: skip
        if not _in(period, at):
            continue
        fields = json.loads(body)
        if "promised_days" not in fields:
            continue  # a 补正 notice carries them only when it accepts (第三十二条)
        item = item_of(item_code)
        if item is None:
            continue
        recorded = (fields["promised_days"],
                    fields.get("extension_limit", DEFAULT_EXTENSION_DAYS))  # fmt: skip
        if recorded == (item.promised_days, item.extension_days):
            continue
        found.append(("acceptance_unlike_catalogue", origin, {
            "case_id": case_id, "seq": seq, "at": at, "item_code": item.code,
            "promised_days": recorded[0], "extension_limit": recorded[1],
            "catalogue_promised_days": item.promised_days,
            "catalogue_extension_days": item.extension_days}, None))  # fmt: skip
    return found


def unassessed_deliveries(store: LogStore, period: Period) -> list[Raw]:
    """Deliveries in the period, applied, of a case whose item has a fee in the catalogue
    and that had no fee assessed (`case deliver` refuses them: 票款分离). (`+c.status`: by
    the status index SQLite read every delivered case's events, 4.9 s at 5 M entries;
    scanning the events, 1.4 s.)"""
    found: list[Raw] = []
    item_of = _item_cache(store)
    for origin, seq, case_id, at, item_code in store.query(
        "SELECT e.origin, e.seq, e.case_id, e.at, c.item_code FROM case_events e JOIN cases c"
        " USING (case_id) WHERE e.type = ? AND c.fee_fen IS NULL AND +c.status = ?"
        f" AND {_NEAR.format(at='e.at')} ORDER BY e.origin, e.seq",
        (e.DELIVERED, DELIVERED, *_near(period)),
    ):  # fmt: skip
        if not _in(period, at):
            continue  # before reading the item: the year's deliveries are not the month's
        item = item_of(item_code)
        if item is None or item.fee_fen == 0:
            continue
        found.append(("fee_unassessed", origin, {
            "case_id": case_id, "seq": seq, "at": at, "item_code": item.code,
            "catalogue_fee": yuan_from_fen(item.fee_fen)}, None))  # fmt: skip
    return found


def guard_violations(store: LogStore, period: Period) -> list[Raw]:
    """Events in the period that the legal guards refused when the case was folded."""
    found: list[Raw] = []
    for case_id, text in store.query(
        "SELECT case_id, violations FROM cases WHERE violations != '[]' ORDER BY case_id"
    ):
        for origin, seq, kind, key in json.loads(text):
            if key not in guards.FOLD_KEYS:
                continue
            rows = store.query(
                "SELECT at FROM case_events WHERE origin = ? AND seq = ?", (origin, seq)
            )
            if rows and _in(period, rows[0][0]):
                found.append(("guard_violation", origin, {
                    "case_id": case_id, "seq": seq, "type": kind, "at": rows[0][0],
                    "problem": key}, None))  # fmt: skip
    return found


def backdated(store: LogStore, period: Period) -> list[Raw]:
    """Suspensions, extensions and 补正 notices (applied, in the period) dated on or before
    their case's deadline but written, since their author's first event on the case, after
    an entry (any type, the whole log held here) their author dated past it."""
    cal = work_calendar(store)
    events = [
        row for row in store.query(
            "SELECT origin, seq, case_id, at FROM case_events WHERE type IN (?, ?, ?) "
            f"AND {_NEAR.format(at='at')} ORDER BY origin, seq", (*_PAUSING, *_near(period)))
        if _in(period, row[3])
    ]  # fmt: skip
    found: list[Raw] = []
    for origin, rows in itertools.groupby(events, key=lambda row: row[0]):
        mine = [
            (seq, case_id, at, _first_on(store, origin, case_id)) for _, seq, case_id, at in rows
        ]
        days = _Days(store, origin, min(m[3] for m in mine), mine[-1][0])
        for seq, case_id, at, first in mine:
            latest = days.latest(first, seq)
            if latest is None or local_date(at) > latest[0]:
                continue
            due = _due_before(store, case_id, (origin, seq), cal)
            if due is None or local_date(at) > due or latest[0] <= due:
                continue
            found.append(("backdated", origin, {
                "case_id": case_id, "seq": seq, "at": at, "due": due.isoformat(),
                "written_after_seq": latest[1], "written_after_at": days.stamp(latest[1])},
                None))  # fmt: skip
    return found


def _first_on(store: LogStore, origin: str, case_id: str) -> int:
    """The seq of `origin`'s first event on the case."""
    rows = store.query(
        "SELECT min(seq) FROM case_events WHERE origin = ? AND case_id = ?", (origin, case_id)
    )
    return int(rows[0][0])


_STAMPS = "SELECT seq, json_extract(CAST(raw AS TEXT), '$.at') FROM entries WHERE origin = ?"


class _Days:
    """The local day of each of an origin's entries from seq `low` to `high` - 1, read once
    for all the period's events of that origin (their spans overlap: a town writes many
    cases at a time; read event by event, the same entries were read thousands of times)."""

    def __init__(self, store: LogStore, origin: str, low: int, high: int) -> None:
        self.store, self.origin, self.low = store, origin, low
        self.days = [0] * max(0, high - low)  # 0: not held here
        for seq, stamp in store.each(f"{_STAMPS} AND seq >= ? AND seq < ?", (origin, low, high)):
            self.days[seq - low] = local_date(stamp).toordinal()

    def latest(self, low: int, high: int) -> tuple[date, int] | None:
        """The latest day an entry from seq `low` to `high` - 1 was dated, and the first
        such entry's seq; None when none is held."""
        span = self.days[low - self.low : high - self.low]
        day = max(span, default=0)
        return (date.fromordinal(day), low + span.index(day)) if day else None

    def stamp(self, seq: int) -> str:
        return str(self.store.query(f"{_STAMPS} AND seq = ?", (self.origin, seq))[0][1])


def _due_before(store: LogStore, case_id: str, ref: tuple[str, int], cal: Any) -> date | None:
    """The case's deadline from its events before `ref` in causal order, if it applied."""
    ordered, _ = causal_order(load_events(store, case_id))
    refs = [ev.ref for ev in ordered]
    if ref not in refs:
        return None
    written = written_after(store, ordered)
    before = fold(ordered[: refs.index(ref)], cal, written)
    after = fold(ordered[: refs.index(ref) + 1], cal, written)
    if before is None or after is None or after.anchor != ref:
        return None  # refused by the machine: a guard_violation already, counted nowhere
    return guards.due_now(before, cal)


def findings(store: LogStore, period: Period) -> list[Raw]:
    """Every finding of this module for the period."""
    return [*unlike_catalogue(store, period), *fee_overrides(store, period),
            *unassessed_deliveries(store, period),
            *guard_violations(store, period), *backdated(store, period)]  # fmt: skip


i18n.register(
    {
        "finding.fee_override": (
            "{node_id} assessed {fee} yuan on case {case_id} (#{seq}, {at}); the catalogue"
            " says {catalogue_fee} for item {item_code}. Reason given: {reason}",
            "{node_id} 对办件 {case_id} 核定收费 {fee} 元（#{seq}，{at}）；目录中事项"
            " {item_code} 收费 {catalogue_fee} 元。所述理由：{reason}",
        ),
        "finding.fee_override_unstated": (
            "{node_id} assessed {fee} yuan on case {case_id} (#{seq}, {at}); the catalogue"
            " says {catalogue_fee} for item {item_code}, and no reason was recorded.",
            "{node_id} 对办件 {case_id} 核定收费 {fee} 元（#{seq}，{at}）；目录中事项"
            " {item_code} 收费 {catalogue_fee} 元，且未记录理由。",
        ),
        "finding.acceptance_unlike_catalogue": (
            "{node_id} accepted case {case_id} (#{seq}, {at}) with {promised_days} promised"
            " days and an extension limit of {extension_limit}; the catalogue says"
            " {catalogue_promised_days} and {catalogue_extension_days} for item {item_code}.",
            "{node_id} 受理办件 {case_id}（#{seq}，{at}）时记录承诺时限 {promised_days} 天、"
            "可延长 {extension_limit} 天；目录中事项 {item_code} 为 {catalogue_promised_days}"
            " 天、{catalogue_extension_days} 天。",
        ),
        "finding.fee_unassessed": (
            "{node_id} delivered case {case_id} (#{seq}, {at}) with no fee assessed; the"
            " catalogue says {catalogue_fee} yuan for item {item_code} (票款分离).",
            "{node_id} 送达办件 {case_id}（#{seq}，{at}）时未核定收费；目录中事项 {item_code}"
            " 收费 {catalogue_fee} 元（票款分离）。",
        ),
        "finding.guard_violation": (
            "{node_id} wrote {type} #{seq} on case {case_id} ({at}), which the law does not"
            " allow ({problem}); it counts nowhere.",
            "{node_id} 在办件 {case_id} 上记录的 {type} #{seq}（{at}）不合法定要求（{problem}），"
            "不计入任何统计。",
        ),
        "finding.backdated": (
            "{node_id} dated #{seq} on case {case_id} {at}, on or before its deadline {due},"
            " but wrote it after #{written_after_seq}, dated {written_after_at}: back-dated.",
            "{node_id} 在办件 {case_id} 上的 #{seq} 日期为 {at}（不晚于期限 {due}），"
            "却写在日期为 {written_after_at} 的 #{written_after_seq} 之后：属于倒签。",
        ),
    }
)
