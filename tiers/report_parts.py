"""The parts of a monthly report (办件月报表): the node's counts by item and by kind.

A report body may carry, beside its total `figures`, `"parts": {"item": {code: {count:
n}}, "kind": {kind: {count: n}}}`: the same counts of the same node, split by the case's
item code and by the item's kind in the catalogue in force (`immediate`, `promised`,
`forward`, `joint`; `?` for an item not in it). A row states the counts the total states
(投诉 under the case's item, else `?`); one it leaves out is 0, and a row of zeros is left
out. Every count is counted under one key, so each part adds up to the total: a
part that does not is wrong however many entries are missing here (`inconsistent`), and
each part is also recomputed from the entries, like the total (`compare`).

Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tiers.catalogue import CatalogueItem
from tiers.figures import COUNT_FIELDS, Cells, Counts, KeyOf, regroup

PARTS = ("item", "kind")
# Every count is split: 投诉 under the key `stats --by item|kind` gives them (the case's item
# or kind, else "?": tiers.reports._add_complaint_parts), so the parts add up to the total.
SPLIT_FIELDS = COUNT_FIELDS
UNKNOWN_KIND = "?"
_SEP = "\x00"

Rows = dict[str, dict[str, int]]  # part key → {count: n}, as a body states it


def part_key(part: str, item_code: str, items: Mapping[str, CatalogueItem]) -> str:
    """The row a case of `item_code` counts in, in `part`."""
    if part == "item":
        return item_code
    item = items.get(item_code)
    return item.kind if item is not None else UNKNOWN_KIND


def computed_parts(
    cells: Cells, items: Mapping[str, CatalogueItem], only: str | None = None
) -> dict[str, dict[str, dict[str, Counts]]]:
    """node → part → key → counts, as every node (or `only`) would report them, from a
    period's cells (`tiers.figure_cells`)."""
    out: dict[str, dict[str, dict[str, Counts]]] = {}
    for part in PARTS:

        def key_of(item_code: str, node: str, part: str = part) -> str | None:
            if only is not None and node != only:
                return None
            return node + _SEP + part_key(part, item_code, items)

        for joined, counts in regroup(cells, key_of).items():
            node, key = joined.split(_SEP, 1)
            out.setdefault(node, {}).setdefault(part, {})[key] = counts
    return out


def to_body(parts: Mapping[str, Mapping[str, Counts]]) -> dict[str, Rows]:
    """Parts as a report body carries them: zero counts and rows of zeros left out."""
    body: dict[str, Rows] = {}
    for part in PARTS:
        rows = {}
        for key, counts in sorted(parts.get(part, {}).items()):
            stated = {f: n for f, n in counts.to_body().items() if n}
            if stated:
                rows[key] = stated
        body[part] = rows
    return body


def check(parts: Any, count_name: Any) -> None:
    """A body's `parts`: known part names, each a map of keys to maps of counts (`count_name`
    checks a name and value); ValueError otherwise."""
    if not isinstance(parts, dict) or not set(parts) <= set(PARTS):
        raise ValueError(f"parts must map some of {', '.join(PARTS)} to rows")
    for part, rows in parts.items():
        if not isinstance(rows, dict):
            raise ValueError(f"parts.{part} must map keys to counts")
        for key, row in rows.items():
            if not isinstance(key, str) or not key or not isinstance(row, dict):
                raise ValueError(f"parts.{part} must map keys to counts")
            for name, value in row.items():
                count_name(f"parts.{part}.{key}", name, value)


@dataclass(frozen=True)
class PartMismatch:
    """One count of one row of one part that differs from the recomputation."""

    part: str
    key: str
    field: str
    reported: int
    computed: int


def compare(
    stated: frozenset[str], parts: Mapping[str, Rows],
    computed: Mapping[str, Mapping[str, Counts]],
) -> list[PartMismatch]:  # fmt: skip
    """Every stated count of every part the report carries, against `computed` (the
    reporter's own part → key → counts): rows on either side, missing ones as 0."""
    found = []
    for part, rows in sorted(parts.items()):
        mine = computed.get(part, {})
        for key in sorted(set(rows) | set(mine)):
            row, counts = rows.get(key, {}), mine.get(key, Counts())
            for name in SPLIT_FIELDS:
                if name not in stated:
                    continue
                reported, recomputed = int(row.get(name, 0)), getattr(counts, name)
                if reported != recomputed:
                    found.append(PartMismatch(part, key, name, reported, recomputed))
    return found


@dataclass(frozen=True)
class PartSum:
    """A count whose rows in a part do not add up to the report's total."""

    part: str
    field: str
    parts_sum: int
    total: int


def inconsistent(stated: frozenset[str], total: Counts, parts: Mapping[str, Rows]) -> list[PartSum]:
    """The counts of each part that do not add up to the report's own total."""
    found = []
    for part, rows in sorted(parts.items()):
        for name in SPLIT_FIELDS:
            if name not in stated:
                continue
            summed = sum(int(row.get(name, 0)) for row in rows.values())
            if summed != getattr(total, name):
                found.append(PartSum(part, name, summed, getattr(total, name)))
    return found


def node_part_key(by: str, items: Mapping[str, CatalogueItem]) -> KeyOf:
    """A `--by kind` row key for `tiers.city.stats`."""
    return lambda item_code, node: part_key(by, item_code, items)
