"""A month's figures kept per case (issue #15: month statistics at millions of entries).

`stats`, `reconcile` and the desk count a period from every case with something in it
(`tiers.figures.per_case` over `tiers.case_facts.load_facts`): at a city of 1 M entries that
is ~15,000 cases a month and most of two seconds; at 5 M, several times that. So for a
month, what each case counts is kept in `figure_cells` (one row per case and node the
figure counts for, with the case's item code), and a month's cells are a `GROUP BY` of
those rows; every grouping (`regroup`: by node, tier, item, department, kind; a report's
parts) is a sum of the cells.

The rows stay exact, not approximate, because of what they are kept with:

- every `case_facts` row carries the `changed` mark of the flush that last wrote it
  (meta `figures.mark`, moved once per flush that writes facts, under the write lock); a
  case whose facts row goes away takes its cells with it (`tiers.case_facts._refresh`);
- `figure_periods` records, per month, the mark its rows are counted up to, the day open
  cases were judged at (`judged_as_of`: it moves each day of a running month) and a
  digest of everything else a count depends on (`_basis`: the calendar in force, the
  catalogue, the code that counts);
- so a month is brought up to date by counting again only the cases changed since its mark
  (a case not selected for the month before or after its change counted nothing in it,
  since `load_facts` selects every case that counts anything); a different day or basis
  counts the month again whole. The mark is read before anything else, so whatever commits
  while a month is counted has a later mark and is counted again next time.

A store that cannot write (a replica, the desk's reader connection) reads the rows when
they are up to date and counts live otherwise. Quarters and years are counted live (their
figures are not sums of months'). The rows go with `case_facts` when it is remade.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

from sync.logstore import LogStore
from sync.protocol.errors import StoreError
from tiers import calendar, case_facts, deadlines, figures, steps
from tiers.calendar import WorkCalendar
from tiers.case_facts import CELL_COUNTS, FACTS_WHERE, MARK, facts_from_row
from tiers.catalogue import CatalogueItem
from tiers.figures import (
    COUNT_FIELDS,
    FACT_COLUMNS,
    Cells,
    Counts,
    Facts,
    Period,
    add_cells,
    judged_as_of,
    per_case,
)
from tiers.provisional import figure_years

INCREMENTAL_MAX = 20_000  # changed cases counted again one by one; more: the month whole
_CODE = (figures, steps, deadlines, calendar, case_facts)  # the code a count depends on (`_basis`)

_INSERT = (
    f"INSERT INTO figure_cells (period, case_id, node, item, years, {', '.join(CELL_COUNTS)}) "
    f"VALUES ({', '.join('?' for _ in range(5 + len(CELL_COUNTS)))})"
)
_SUM = (  # the kept rows of a month but those of some cases
    f"SELECT node, item, {', '.join(f'SUM({c})' for c in CELL_COUNTS)} FROM figure_cells "
    "WHERE period = ? AND case_id NOT IN (SELECT value FROM json_each(?)) GROUP BY node, item"
)
_YEARS = (
    "SELECT DISTINCT years FROM figure_cells WHERE period = ? AND years != '' "
    "AND case_id NOT IN (SELECT value FROM json_each(?))"
)


def period_cells(
    store: LogStore, period: Period, today: date, cal: WorkCalendar,
    items: Mapping[str, CatalogueItem],
) -> tuple[Cells, list[int]]:  # fmt: skip
    """The cells of `period` and the guessed years its figures rest on
    (`tiers.provisional.figure_years`): from the kept rows for a month, brought up to date
    first where this store can write them; counted live otherwise."""
    if not period.is_month:
        return _live(store, period, today, cal, items)
    try:
        head, new = _heads(store, period, today, cal, items)
    except StoreError:  # a replica of a city that does not keep cells yet
        return _live(store, period, today, cal, items)
    if head == new:
        return _merge(store, period, [], None)
    if not _writable(store):
        return _live(store, period, today, cal, items)
    changed, counted = _count(store, period, today, cal, items, head, new)
    return _merge(store, period, changed, counted)


def keep(
    store: LogStore, period: Period, today: date, cal: WorkCalendar,
    items: Mapping[str, CatalogueItem],
) -> int:  # fmt: skip
    """Bring the kept rows of the month `period` up to date on a store that keeps them
    (tiers.figure_keeper); the cases counted for it."""
    head, new = _heads(store, period, today, cal, items)
    if head == new:
        return 0
    return _count(store, period, today, cal, items, head, new)[1].cases


def unkept_month(
    store: LogStore, today: date, cal: WorkCalendar, items: Mapping[str, CatalogueItem],
    months: list[Period],
) -> Period | None:  # fmt: skip
    """The first of `months` whose rows are not kept for today's judgment and this basis
    (never counted, or counted on another day or basis: it would be counted whole). A
    month kept but for cases changed since is not one: a clerk's ask counts only those."""
    basis = _basis(cal, items)
    heads = {str(p): (str(a), str(b)) for p, a, b in store.query(
        "SELECT period, as_of, basis FROM figure_periods")}  # fmt: skip
    for period in months:
        if heads.get(period.label) != (judged_as_of(period, today), basis):
            return period
    return None


Head = tuple[str, str, int]  # (as_of, basis, mark) a month's rows were counted at


@dataclass
class _Counted:
    """Cases counted: their `figure_cells` rows, and the cells and years they add up to."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    cells: Cells = field(default_factory=dict)
    years: set[int] = field(default_factory=set)
    cases: int = 0


def _heads(
    store: LogStore, period: Period, today: date, cal: WorkCalendar,
    items: Mapping[str, CatalogueItem],
) -> tuple[Head | None, Head]:  # fmt: skip
    """The month's kept head, and the head a count now would have."""
    as_of, basis = judged_as_of(period, today), _basis(cal, items)
    mark = _mark(store)  # first: whatever commits after it is counted again next time
    return _head(store, period), (as_of, basis, mark)


def _count(
    store: LogStore, period: Period, today: date, cal: WorkCalendar,
    items: Mapping[str, CatalogueItem], head: Head | None, new: Head,
) -> tuple[list[str] | None, _Counted]:  # fmt: skip
    """Count the cases changed since `head` (every case of the month when it was counted
    on another day or basis, or too much changed) and keep the rows: (the cases changed,
    or None for the whole month; what was counted)."""
    changed = None
    if head is not None and head[:2] == new[:2]:
        rows = store.query(  # one past the most counted one by one: never every case
            "SELECT case_id FROM case_facts WHERE changed > ? LIMIT ?",
            (head[2], INCREMENTAL_MAX + 1),
        )
        if len(rows) <= INCREMENTAL_MAX:
            changed = [r[0] for r in rows]
    counted = _rows(period, _load(store, period, changed), today, cal, items)
    _save(store, period, head, new, changed, counted.rows)
    return changed, counted


def _save(
    store: LogStore, period: Period, head: Head | None, new: Head, changed: list[str] | None,
    counted: list[tuple[Any, ...]],
) -> None:  # fmt: skip
    """Keep what was counted: the month's rows (`changed` None) or those cases' rows made
    again, unless another process brought the month up to date meanwhile. Without
    catching the projections up first (a clerk's `stats` does not do a serve's work), and
    when the store cannot (busy, full), not at all: the month is counted again next time."""
    try:
        with store.exclusive():
            if _head(store, period) != head:
                return
            if changed is None:
                store.execute("DELETE FROM figure_cells WHERE period = ?", (period.label,))
            else:
                store.execute(
                    "DELETE FROM figure_cells WHERE period = ? AND case_id IN "
                    "(SELECT value FROM json_each(?))",
                    (period.label, json.dumps(changed)),
                )
            with store.batched():
                for row in counted:
                    store.execute(_INSERT, row)
            store.execute(
                "INSERT INTO figure_periods (period, as_of, basis, mark) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(period) DO UPDATE SET as_of = excluded.as_of, "
                "basis = excluded.basis, mark = excluded.mark",
                (period.label, *new),
            )
    except StoreError:
        pass


def _merge(
    store: LogStore, period: Period, changed: list[str] | None, counted: _Counted | None
) -> tuple[Cells, list[int]]:
    """What was `counted`, with the kept rows of every other case of the month (none
    when `changed` is None: the month was counted whole)."""
    cells: Cells = {}
    years: set[int] = set()
    if changed is not None:
        params = (period.label, json.dumps(changed))
        for node, item, *values in store.query(_SUM, params):
            cells[(node, item)] = Counts(*map(int, values))
        years |= {int(y) for (listed,) in store.query(_YEARS, params) for y in listed.split(",")}
    if counted is not None:
        for key, counts in counted.cells.items():
            cells.setdefault(key, Counts()).add(counts)
        years |= counted.years
    return cells, sorted(years)


def _live(
    store: LogStore, period: Period, today: date, cal: WorkCalendar,
    items: Mapping[str, CatalogueItem],
) -> tuple[Cells, list[int]]:  # fmt: skip
    facts = case_facts.load_facts(store, period)
    cells = add_cells({}, per_case(facts, period, cal, today, items))
    return cells, figure_years(cal, facts, period, today)


def _rows(
    period: Period, facts: list[Facts], today: date, cal: WorkCalendar,
    items: Mapping[str, CatalogueItem],
) -> _Counted:  # fmt: skip
    """Count these cases: a `figure_cells` row per case and node it counts for (its counts
    in `CELL_COUNTS` order, which is `Counts`' own), and what they add up to."""
    out = _Counted(cases=len(facts))
    for f, by_node in per_case(facts, period, cal, today, items):
        years = figure_years(cal, [f], period, today)
        out.years.update(years)
        listed = ",".join(map(str, years))
        for node, counts in by_node.items():
            out.rows.append((period.label, f.case_id, node, f.item_code, listed,
                             *counts.__dict__.values()))  # fmt: skip
            out.cells.setdefault((node, f.item_code), Counts()).add(counts)
    return out


def _load(store: LogStore, period: Period, changed: list[str] | None) -> list[Facts]:
    """The period's facts (`load_facts`), only of the cases `changed` unless None."""
    if changed is None:
        return case_facts.load_facts(store, period)
    if not changed:
        return []
    sql = (
        f"SELECT {', '.join(FACT_COLUMNS)} FROM case_facts WHERE ({FACTS_WHERE}) "
        "AND case_id IN (SELECT value FROM json_each(:ids))"
    )
    params = {"s": period.start.isoformat(), "e": period.end.isoformat(),
              "ids": json.dumps(changed)}  # fmt: skip
    return [facts_from_row(r) for r in store.query(sql, params)]


def _mark(store: LogStore) -> int:
    rows = store.query("SELECT value FROM meta WHERE key = ?", (MARK,))
    return int(rows[0][0]) if rows else 0


def _head(store: LogStore, period: Period) -> Head | None:
    rows = store.query(
        "SELECT as_of, basis, mark FROM figure_periods WHERE period = ?", (period.label,)
    )
    return (str(rows[0][0]), str(rows[0][1]), int(rows[0][2])) if rows else None


def _writable(store: Any) -> bool:
    """A store that keeps `case_facts` (and so the marks): not a replica or a reader."""
    extensions = getattr(store, "extensions", ())
    return any(getattr(ext, "name", None) == case_facts.NAME for ext in extensions)


@cache
def _code_digest() -> bytes:
    digest = hashlib.sha256()
    for module in _CODE:
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.digest()


def _basis(cal: WorkCalendar, items: Mapping[str, CatalogueItem]) -> str:
    """What a count depends on besides the case's facts and the day: the calendar in force
    (and the holiday package behind it), the catalogue, and the code that counts."""
    digest = hashlib.sha256(_code_digest())
    digest.update(repr(_calendar_key(cal)).encode())
    digest.update(repr(sorted(items.items())).encode())
    digest.update(str(COUNT_FIELDS).encode())
    return digest.hexdigest()[:32]


def _calendar_key(cal: WorkCalendar) -> Iterable[Any]:
    overrides = cal.overrides
    return (
        _package_version(),
        sorted((year, sorted(a.holidays), sorted(a.workdays), a.complete)
               for year, a in overrides.years.items()),
        sorted(overrides.days.items()),
    )  # fmt: skip


@cache
def _package_version() -> str:
    """chinesecalendar's version: the years it knows make the calendar."""
    return version("chinesecalendar")
