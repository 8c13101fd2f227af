"""Tables as files: CSV for tools and Excel, XLSX for people (one writer for every table).

`stats`, `case list` and the desk export through here, so every exported table behaves the
same: CSV in UTF-8 with a byte-order mark (Excel then shows the Chinese), the JSON keys as
its header, numbers as numbers (rates as fractions, money in fen), empty cells where a value
is undefined; XLSX with headers in the reader's language, rates as percentages and money in
yuan (number formats, so Excel can sum them). Cells are inert (`tiers.inert`): a name written
on another node is never run as a formula, a link or a number.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from sync.protocol import i18n
from sync.protocol.errors import ReportError
from tiers.inert import WORKBOOK_OPTIONS, csv_row

# How a column's numbers are shown in XLSX (CSV always carries the raw JSON value).
PERCENT = "percent"  # a fraction, shown 12.3%
MONEY = "money"  # fen, shown in yuan
DAYS = "days"  # a number of days with two decimals
_NUMBER_FORMATS = {PERCENT: "0.0%", MONEY: "#,##0.00", DAYS: "0.00"}
FORMATS = ("table", "json", "csv", "xlsx")
# An --out file's name says its format; .txt/.tsv hold the terminal table, tab-separated.
SUFFIXES = {".csv": "csv", ".xlsx": "xlsx", ".json": "json", ".txt": "table", ".tsv": "table"}

i18n.register(
    {
        "export.unknown_suffix": (
            "Cannot tell the format from the name {name}: end it in one of {suffixes}, or give"
            " --format {formats}.",
            "无法从文件名 {name} 判断格式：请以 {suffixes} 之一结尾，或用 --format {formats}"
            " 指定。",
        ),
    }
)


def format_for(fmt: str | None, out_name: str | None, as_json: bool) -> str:
    """The output format of a command that prints or exports a table: `--format`, else
    `--json`, else the `--out` file's suffix (`SUFFIXES`), else the terminal table. An
    `--out` name with another suffix is refused rather than guessed."""
    if fmt is not None:
        return fmt
    if as_json:
        return "json"
    if out_name is None:
        return "table"
    suffix = PurePath(out_name).suffix.lower()
    if suffix not in SUFFIXES:
        raise ReportError("export.unknown_suffix", name=PurePath(out_name).name,
                          suffixes=i18n.listed(SUFFIXES),
                          formats="|".join(FORMATS))  # fmt: skip
    return SUFFIXES[suffix]


@dataclass(frozen=True)
class Table:
    """Rows of JSON-ready dicts and how to write them.

    `columns` are the JSON keys in order (the CSV header); `headers` their labels in the
    reader's language (the XLSX header); `formats` maps a key to PERCENT, MONEY or DAYS;
    `note` is a line written under the XLSX table (e.g. provisional figures); `words` maps
    a key to how its codes read to a person (`town` -> 镇级): XLSX cells say the words, CSV
    keeps the codes for tools."""

    name: str
    columns: Sequence[str]
    headers: Sequence[str]
    rows: Sequence[Mapping[str, Any]]
    formats: Mapping[str, str] = field(default_factory=dict)
    note: str | None = None
    widths: Mapping[int, int] = field(default_factory=dict)  # column index -> width
    frozen_columns: int = 0
    words: Mapping[str, Callable[[Any], str]] = field(default_factory=dict)


def to_csv(table: Table) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(csv_row(table.columns))
    for row in table.rows:
        writer.writerow(csv_row("" if row.get(c) is None else row[c] for c in table.columns))
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


def to_xlsx(table: Table) -> bytes:
    import xlsxwriter  # only a command that writes a workbook pays for loading it

    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, WORKBOOK_OPTIONS)
    sheet = book.add_worksheet(_sheet_name(table.name))
    bold = book.add_format({"bold": True})
    number_formats = {k: book.add_format({"num_format": f}) for k, f in _NUMBER_FORMATS.items()}
    sheet.write_row(0, 0, list(table.headers), bold)
    for r, row in enumerate(table.rows, start=1):
        for c, column in enumerate(table.columns):
            value = row.get(column)
            if value is not None and column in table.words:
                value = table.words[column](value)
            _write_cell(sheet, r, c, value, table.formats.get(column), number_formats)
    if table.note:
        sheet.write_string(len(table.rows) + 2, 0, table.note)
    sheet.freeze_panes(1, table.frozen_columns)
    for index, width in table.widths.items():
        sheet.set_column(index, index, width)
    book.close()
    return buffer.getvalue()


def _write_cell(sheet: Any, r: int, c: int, value: Any, kind: str | None,
                formats: Mapping[str, Any]) -> None:  # fmt: skip
    if value is None:
        sheet.write_blank(r, c, None)
    elif isinstance(value, bool):
        sheet.write_boolean(r, c, value)
    elif isinstance(value, int | float) and kind == MONEY:
        sheet.write_number(r, c, value / 100, formats[MONEY])
    elif isinstance(value, int | float) and kind is not None:
        sheet.write_number(r, c, value, formats[kind])
    elif isinstance(value, int | float):
        sheet.write_number(r, c, value)
    else:
        sheet.write_string(r, c, str(value))


def _sheet_name(name: str) -> str:
    """Excel's limits: at most 31 characters, none of []:*?/\\ ."""
    cleaned = "".join("_" if ch in "[]:*?/\\" else ch for ch in name).strip("'")
    return (cleaned or "Sheet1")[:31]
