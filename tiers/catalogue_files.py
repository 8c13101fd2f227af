"""Reading a catalogue file into rows; `tiers.catalogue` checks the rows and makes the items.

Text is UTF-8 (a BOM is fine), else GB18030 as Excel saves it in China. A table is CSV, or
tab-separated when its header line holds more tabs than commas or its name ends in .tsv
(what a copy out of a spreadsheet gives). Its header names the columns in English (`code`,
`name` … as DESIGN §7 lists them) or as a 事项清单 names them in Chinese (`HEADER_NAMES`:
事项编码, 事项名称, 部门, 办件类型, 承诺时限 …); problems then name the column as the file
does. JSON is a list of items, or {"items": [...]}, keyed by the English names. A file
with no item (a header alone, `[]`) is refused: there would be nothing to publish.

Every problem is one `CatalogueError` whose params name the `file`, the `line` and the
`column` (messages registered in `tiers.catalogue`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NoReturn

from sync.protocol.errors import CatalogueError

REQUIRED = ("code", "name", "department", "kind", "promised_days")
COLUMNS = (
    *REQUIRED, "statutory_days", "fee", "materials", "accept_tiers", "decide_tier",
    "extension_days",
)  # fmt: skip
# Chinese column names: the first of each column is the one messages use (and the one
# `catalogue list` prints under zh); the others are how 政务服务事项实施清单 lists name it.
_CHINESE: dict[str, tuple[str, ...]] = {
    "code": ("事项编码", "实施编码", "编码"),
    "name": ("事项名称", "名称"),
    "department": ("部门", "实施主体", "实施部门", "主管部门"),
    "kind": ("办件类型", "类型"),
    "promised_days": ("承诺时限", "承诺办结时限"),
    "statutory_days": ("法定时限", "法定办结时限"),
    "fee": ("收费（元）", "收费(元)", "收费", "收费标准", "收费金额（元）"),
    "materials": ("申请材料", "材料"),
    "accept_tiers": ("受理层级",),
    "decide_tier": ("决定层级",),
    "extension_days": ("延长时限", "可延长时限"),
}
HEADER_NAMES = {zh: column for column, names in _CHINESE.items() for zh in names}
CHINESE = {column: names[0] for column, names in _CHINESE.items()}

Rows = list[tuple[int, dict[str, Any]]]


@dataclass(frozen=True)
class Where:
    """Where a value came from: the key prefix, the params that locate the message, and
    the column names as the file's header writes them (when not the English ones)."""

    prefix: str
    at: dict[str, Any]
    names: Mapping[str, str] = field(default_factory=dict)

    def fail(self, problem: str, column: str | None, **params: Any) -> NoReturn:
        shown = self.names.get(column, column) if column is not None else None
        raise CatalogueError(
            self.prefix + problem, **({"line": None} | self.at), column=shown, **params
        )


def at(file: str, line: int | None = None, names: Mapping[str, str] | None = None) -> Where:
    return Where("catalogue.", {"file": file, "line": line}, names or {})


def read_rows(data: bytes, filename: str = "") -> tuple[Rows, Mapping[str, str]]:
    """The rows of a CSV, TSV or JSON catalogue, each with its line, and the column names
    as the file writes them. JSON when the name ends in .json, or when it does not end in
    .csv or .tsv and the text starts with `[` or `{`."""
    file = filename or "catalogue"
    text = _decode(data, file)
    name = filename.lower()
    names: Mapping[str, str] = {}
    if name.endswith(".json") or (
        not name.endswith((".csv", ".tsv")) and text.lstrip()[:1] in ("[", "{")
    ):
        rows = _json_rows(text, file)
    else:
        rows, names = _table_rows(text, file, _delimiter(text, name))
    if not rows:
        at(file).fail("no_items", None)
    return rows, names


def check_keys(
    keys: Iterable[str],
    allowed: tuple[str, ...],
    w: Where,
    required: tuple[str, ...] = REQUIRED,
    chinese: bool = False,
) -> None:
    """Unknown keys first (likely a typo), then missing ones; a Chinese header is told the
    Chinese names."""
    present = list(keys)

    def listed(columns: tuple[str, ...]) -> str:
        return "、".join(CHINESE[c] for c in columns) if chinese else ", ".join(columns)

    for key in present:
        if key not in allowed:
            w.fail("unknown_column", key, allowed=listed(allowed))
    for key in required:
        if key not in present:
            w.fail("missing_column", key, required=listed(required))


def _decode(data: bytes, file: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16, Excel's "Unicode text"
        at(file).fail("encoding", None)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = data.decode("gb18030")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            at(file, line).fail("encoding", None)
    return text.removeprefix("\ufeff")


def _delimiter(text: str, name: str) -> str:
    """A tab when the file says so (.tsv) or its header line holds more tabs than commas."""
    if name.endswith(".tsv"):
        return "\t"
    header = next((line for line in text.splitlines() if line.strip()), "")
    return "\t" if header.count("\t") > header.count(",") else ","


def _table_rows(text: str, file: str, delimiter: str) -> tuple[Rows, Mapping[str, str]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    names: dict[str, str] = {}
    rows: Rows = []
    end = 0
    try:
        for record in reader:
            line, end = end + 1, reader.line_num  # a quoted value may span lines
            cells = [cell.strip() for cell in record]
            w = at(file, line, names)
            if not any(cells):
                continue
            if header is None:
                header, names = _header(cells, file, line)
                continue
            if any(cells[len(header) :]):
                w.fail("too_many_values", None, count=len(cells), columns=len(header))
            cells = (cells + [""] * len(header))[: len(header)]  # short rows: blanks at the end
            if any(cell for name, cell in zip(header, cells, strict=True) if not name):
                w.fail("unknown_column", "", allowed=", ".join(COLUMNS))  # under a blank heading
            rows.append((line, {name: cell for name, cell in zip(header, cells, strict=True)}))
    except csv.Error as exc:
        at(file, reader.line_num, names).fail("csv_invalid", None, reason=str(exc))
    if header is None:
        at(file).fail("empty", None, required=",".join(REQUIRED))
    return rows, names


def _header(cells: list[str], file: str, line: int) -> tuple[list[str], dict[str, str]]:
    """The columns a header line names, and their names as written where not English."""
    chinese = any(cell in HEADER_NAMES for cell in cells)
    names = dict(CHINESE) if chinese else {}
    header = []
    for cell in cells:
        column = HEADER_NAMES.get(cell, cell)
        if column in header and column:
            at(file, line, names | {column: cell}).fail("duplicate_column", column)
        if column != cell:
            names[column] = cell
        header.append(column)
    check_keys([c for c in header if c], COLUMNS, at(file, line, names), chinese=chinese)
    return header, names


def _json_rows(text: str, file: str) -> Rows:
    # Never a float, even for a fee; and a key given twice is refused, not silently the last.
    decoder = json.JSONDecoder(parse_float=Decimal, object_pairs_hook=_unique_keys)
    try:
        doc = decoder.decode(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError knows its line
        line = getattr(exc, "lineno", None)
        problem = "json_unreadable" if line is None else "json_invalid"
        at(file, line).fail(problem, None, reason=getattr(exc, "msg", str(exc)))
    items = doc.get("items") if isinstance(doc, dict) and list(doc) == ["items"] else doc
    if not isinstance(items, list):
        at(file).fail("json_shape", None)
    rows = []
    for start, obj in zip(_item_offsets(text, decoder), items, strict=True):
        w = at(file, text.count("\n", 0, start) + 1)
        if not isinstance(obj, dict):
            w.fail("not_object", None)
        check_keys(obj, COLUMNS, w)
        rows.append((w.at["line"], obj))
    return rows


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) < len(pairs):
        keys = [key for key, _ in pairs]
        raise ValueError(f"key {next(k for k in keys if keys.count(k) > 1)!r} appears twice")
    return obj


def _item_offsets(text: str, decoder: json.JSONDecoder) -> list[int]:
    """Where each item of a valid `[...]` or `{"items": [...]}` document starts."""
    i, offsets = _skip_space(text, 0), []
    if text[i] == "{":
        _, i = decoder.raw_decode(text, _skip_space(text, i + 1))  # the one key, "items"
        i = _skip_space(text, _skip_space(text, i) + 1)  # past the colon
    i += 1
    while text[i := _skip_space(text, i)] != "]":
        offsets.append(i)
        _, i = decoder.raw_decode(text, i)
        i = _skip_space(text, i)
        i += text[i] == ","
    return offsets


def _skip_space(text: str, i: int) -> int:
    while text[i] in " \t\r\n":
        i += 1
    return i
