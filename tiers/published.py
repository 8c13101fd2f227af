"""What the city publishes and every node keeps: the catalogue and the calendar overrides.

Both travel as log entries (`catalogue.item`, one item per entry; `calendar.override`, a
`CalendarOverrides.to_body()`, published by `tiers.calendar_publish`), and `Published`
keeps their projections inside the transaction that applies them, for local appends and
synced arrivals alike.

Invariants:
- Precedence depends only on the entries, never on arrival order: a publisher with a
  shorter id (a higher tier: the city's 6 digits, then a town's 9) wins over one with a
  longer id (a town or village that imported locally for standalone use); equal lengths
  fall back to the smaller id; within one origin the later seq wins.
- The catalogue resolves per item code. The calendar resolves per year: the strongest
  origin that says anything about a year (its arrangement or single days in it) decides
  that whole year, so a node never mixes the city's calendar with a local one. A later
  arrangement of a year by the same origin replaces the earlier one whole.
- A `calendar.override` declaring a year complete that clearly is not (no days off for
  春节 …, `tiers.calendar.whole_year_problem`) is quarantined on every way in.
- Bodies are refused at verification unless they are exactly what `to_body()` writes.
- Publishing appends only what is new or changed, all in one transaction, so importing the
  same file twice appends nothing.
- Entries may arrive as a partial log (what flowed down) and out of seq order: a row only
  ever moves to a later seq of the same origin.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from sync import authority
from sync.authority import Refusal
from sync.logstore import LogStore
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.canonical import canonical
from sync.protocol.entry import SignedEntry, register_body_check
from sync.protocol.errors import CatalogueError
from sync.protocol.ids import tier_of, tier_order
from tiers.calendar import CalendarOverrides, WorkCalendar, YearArrangement, whole_year_problem
from tiers.catalogue import CatalogueItem

CATALOGUE_ITEM = "catalogue.item"
CALENDAR_OVERRIDE = "calendar.override"

_DDL = """
CREATE TABLE IF NOT EXISTS catalogue_sources (
    code TEXT NOT NULL, origin TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (code, origin)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS catalogue (
    code TEXT PRIMARY KEY, body TEXT NOT NULL, origin TEXT NOT NULL, seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS calendar_overrides (
    origin TEXT NOT NULL, unit TEXT NOT NULL, year INTEGER NOT NULL, seq INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (origin, unit)
) WITHOUT ROWID;
"""


def _strength(origin: str) -> tuple[int, str]:
    """Sort key of a publisher: the smaller, the stronger (city before town before village)."""
    return tier_order(origin)


def _check_item_body(body: dict[str, Any]) -> None:
    try:
        item = CatalogueItem.from_body(body)
    except CatalogueError as exc:
        raise ValueError(str(exc)) from None
    if item.to_body() != body:
        raise ValueError("not in canonical form (as CatalogueItem.to_body writes it)")


def _check_calendar_body(body: dict[str, Any]) -> None:
    try:
        overrides = CalendarOverrides.from_body(body)
    except CatalogueError as exc:
        raise ValueError(str(exc)) from None
    if overrides.to_body() != body:
        raise ValueError("not in canonical form (as CalendarOverrides.to_body writes it)")


register_body_check(CATALOGUE_ITEM, _check_item_body)
register_body_check(CALENDAR_OVERRIDE, _check_calendar_body)


def _published_authority(
    store: LogStore, owner: str | None, entry: SignedEntry, fields: Mapping[str, Any]
) -> Refusal | None:
    """The catalogue and the calendar count only from the city. A town's or village's own
    import (standalone use) counts on that node alone: it never changes what others use.
    A calendar that declares a year complete must plausibly be the whole year (the check
    `publish_calendar` makes), whoever signed it: a year wrongly counted as known would
    silence "provisional" on every deadline in it."""
    if tier_of(entry.origin) != "city" and entry.origin != owner:
        return "published.not_city", {}
    if entry.type == CALENDAR_OVERRIDE:
        try:
            overrides = CalendarOverrides.from_body(fields["body"])
        except CatalogueError as exc:
            return "calendar.bad_override", {"reason": exc.params.get("reason", str(exc))}
        for year, arrangement in sorted(overrides.years.items()):
            if arrangement.complete:
                key, params = whole_year_problem(year, arrangement)
                if key:
                    return key, params
    return None


authority.register(CATALOGUE_ITEM, _published_authority)
authority.register(CALENDAR_OVERRIDE, _published_authority)
# Published entries flow down from every ancestor to every node below it.


class Published:
    """The store extension keeping `catalogue` and `calendar_overrides` (see module doc)."""

    name = "published"
    version = 1
    ddl: str = _DDL
    types: frozenset[str] | None = frozenset({CATALOGUE_ITEM, CALENDAR_OVERRIDE})
    lazy = True

    def apply(self, store: LogStore, entry: SignedEntry, fields: dict[str, Any]) -> None:
        if entry.type == CATALOGUE_ITEM:
            self._apply_item(store, entry, fields["body"])
        else:
            self._apply_calendar(store, entry, fields["body"])

    def flush(self, store: LogStore) -> None:
        pass

    def discard(self) -> None:
        pass

    @staticmethod
    def _apply_item(store: LogStore, entry: SignedEntry, body: dict[str, Any]) -> None:
        code = body["code"]
        store.execute(
            "INSERT INTO catalogue_sources (code, origin, seq, body) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(code, origin) DO UPDATE SET seq = excluded.seq, body = excluded.body "
            "WHERE excluded.seq > catalogue_sources.seq",
            (code, entry.origin, entry.seq, canonical(body).decode()),
        )
        sources = store.query(
            "SELECT origin, seq, body FROM catalogue_sources WHERE code = ?", (code,)
        )
        origin, seq, text = min(sources, key=lambda row: _strength(row[0]))
        store.execute(
            "INSERT INTO catalogue (code, body, origin, seq) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(code) DO UPDATE SET body = excluded.body, origin = excluded.origin, "
            "seq = excluded.seq",
            (code, text, origin, seq),
        )

    @staticmethod
    def _apply_calendar(store: LogStore, entry: SignedEntry, body: dict[str, Any]) -> None:
        rows = [
            (unit, int(unit), canonical(value).decode()) for unit, value in body["years"].items()
        ] + [
            (day, int(day[:4]), canonical(working).decode())
            for day, working in body["days"].items()
        ]
        for unit, year, value in rows:
            store.execute(
                "INSERT INTO calendar_overrides (origin, unit, year, seq, value) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(origin, unit) DO UPDATE SET "
                "seq = excluded.seq, value = excluded.value "
                "WHERE excluded.seq > calendar_overrides.seq",
                (entry.origin, unit, year, entry.seq, value),
            )


# --- the catalogue -------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    """How an import compared with the catalogue in force; only added+changed were appended.

    `overridden` counts items that differ from what a stronger publisher (the city) already
    set for the code: appending them would change nothing, so they are left out.
    """

    added: int
    changed: int
    unchanged: int
    overridden: int = 0

    def to_json(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class PublishedItem:
    """A catalogue item in force, with the entry that set it."""

    item: CatalogueItem
    origin: str
    seq: int


def _stamp(node: Node, at: str | None) -> str | None:
    return node.clock.stamp(at) if at else None


def publish_items(
    node: Node, items: Sequence[CatalogueItem], at: str | None = None
) -> ImportResult:
    """Append a `catalogue.item` entry for each new or changed item, all or none."""
    added = changed = unchanged = overridden = 0
    stamp = _stamp(node, at)
    mine = _strength(node.node_id)
    with node.store.transaction():
        for item in items:
            body = item.to_body()
            held = node.store.query(
                "SELECT body, origin FROM catalogue WHERE code = ?", (item.code,)
            )
            if held and json.loads(held[0][0]) == body:
                unchanged += 1
                continue
            if held and _strength(held[0][1]) < mine:
                overridden += 1
                continue
            node.append(CATALOGUE_ITEM, body, at=stamp)
            if held:
                changed += 1
            else:
                added += 1
    return ImportResult(added, changed, unchanged, overridden)


def get_item(store: LogStore, code: str) -> CatalogueItem | None:
    """The item in force for `code`, or None."""
    rows = store.query("SELECT body FROM catalogue WHERE code = ?", (code,))
    return CatalogueItem.from_body(json.loads(rows[0][0])) if rows else None


def list_items(store: LogStore) -> list[CatalogueItem]:
    """Every item in force, by code."""
    return [entry.item for entry in list_published(store)]


def list_published(store: LogStore) -> list[PublishedItem]:
    """Every item in force with the origin and seq of the entry that set it, by code."""
    rows = sorted(store.query("SELECT code, body, origin, seq FROM catalogue"))  # by code
    # point, as SQLite orders text: a PostgreSQL city's collation may not be C
    return [PublishedItem(CatalogueItem.from_body(json.loads(b)), o, s) for _, b, o, s in rows]


# --- the calendar --------------------------------------------------------------------------


_Row = tuple[Any, ...]  # (origin, unit, year, seq, value) of calendar_overrides


def _calendar_rows(store: LogStore) -> list[_Row]:
    return store.query(
        "SELECT origin, unit, year, seq, value FROM calendar_overrides ORDER BY origin, unit"
    )


def _deciders(rows: list[_Row]) -> dict[int, str]:
    """For each year with any override, the origin that decides it."""
    deciders: dict[int, str] = {}
    for origin, _unit, year, _seq, _value in rows:
        if year not in deciders or _strength(origin) < _strength(deciders[year]):
            deciders[year] = origin
    return deciders


@dataclass(frozen=True)
class OverrideSource:
    """Where an override in force came from."""

    origin: str
    seq: int


@dataclass(frozen=True)
class CalendarState:
    """The overrides in force, with the entry behind each year and day."""

    overrides: CalendarOverrides
    years: dict[int, OverrideSource]
    days: dict[date, OverrideSource]


def calendar_state(store: LogStore) -> CalendarState:
    """Resolve `calendar_overrides` into the overrides in force (see module doc)."""
    return _resolve(tuple(_calendar_rows(store)))


def _resolve(rows: tuple[_Row, ...]) -> CalendarState:
    deciders = _deciders(list(rows))
    years: dict[int, YearArrangement] = {}
    days: dict[date, bool] = {}
    year_sources: dict[int, OverrideSource] = {}
    day_sources: dict[date, OverrideSource] = {}
    for origin, unit, year, seq, value in rows:
        if deciders[year] != origin:
            continue
        if len(unit) == 4:
            single = CalendarOverrides.from_body({"years": {unit: json.loads(value)}})
            years[year] = single.years[year]
            year_sources[year] = OverrideSource(origin, seq)
        else:
            day = date.fromisoformat(unit)
            days[day] = json.loads(value)
            day_sources[day] = OverrideSource(origin, seq)
    return CalendarState(CalendarOverrides(years, days), year_sources, day_sources)


_CALENDARS: weakref.WeakKeyDictionary[LogStore, tuple[tuple[_Row, ...], WorkCalendar]] = (
    weakref.WeakKeyDictionary()
)


def work_calendar(store: LogStore) -> WorkCalendar:
    """The working-day calendar in force on this node; reused until the overrides change."""
    rows = tuple(_calendar_rows(store))
    cached = _CALENDARS.get(store)
    if cached is not None and cached[0] == rows:
        return cached[1]
    calendar = WorkCalendar(_resolve(rows).overrides)
    _CALENDARS[store] = (rows, calendar)
    return calendar


i18n.register(
    {
        "published.not_city": (
            "{origin} is not the city: what it publishes counts only on {origin} itself",
            "{origin} 不是市级节点：其发布的目录或日历只在 {origin} 本节点有效",
        ),
    }
)
