"""What people read is inert: text shown on a terminal, cells opened in a spreadsheet.

Names, reasons, notes and departments can come from any enrolled node, so:
- `terminal_safe` shows every character that could drive or disguise a terminal (C0
  controls, ESC, DEL, C1, and the bidi embedding/override/isolate characters U+202A–U+202E,
  U+2066–U+2069) as a visible escape (`\\x1b`, `\\u202e`); with `lines`, newlines stay.
  The CLI prints every human line through it (`cli.common`).
- `csv_cell`: a CSV cell that a spreadsheet would run as a formula (it begins with =, +, -,
  @, a tab or a carriage return) is prefixed with a single quote, as OWASP recommends, and
  its control characters are shown as escapes (a CSV may be printed on a terminal); numbers
  stay numbers.
- `text_cell`: the same for a cell of a tab-separated text file.
- `WORKBOOK_OPTIONS`: XLSX workbooks never turn a string into a formula, a link or a number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

# for xlsxwriter.Workbook(file, WORKBOOK_OPTIONS): write() keeps every str a string
WORKBOOK_OPTIONS: dict[str, Any] = {
    "in_memory": True,
    "strings_to_formulas": False,
    "strings_to_urls": False,
    "strings_to_numbers": False,
}

BIDI_CONTROLS = (*range(0x202A, 0x202F), *range(0x2066, 0x206A))
UNSAFE = (*range(0x20), 0x7F, *range(0x80, 0xA0), *BIDI_CONTROLS)
_SHOWN = {c: (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in UNSAFE}
_SHOWN_LINES = {c: shown for c, shown in _SHOWN.items() if c != 0x0A}


def terminal_safe(text: object, *, lines: bool = False) -> str:
    """`text` with every unsafe character shown as a visible escape; with `lines`,
    newlines are kept (a block meant to span lines)."""
    return str(text).translate(_SHOWN_LINES if lines else _SHOWN)


def csv_cell(value: Any) -> Any:
    """`value` as a CSV writer should get it: text quoted if it would start a formula, its
    control characters shown as escapes; anything else (numbers) unchanged."""
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_STARTS):
        value = "'" + value
    return terminal_safe(value)


def csv_row(values: Iterable[Any]) -> list[Any]:
    return [csv_cell(value) for value in values]


_NUMBER = re.compile(r"-?\d+(\.\d+)?%?")


def text_cell(value: Any) -> str:
    """A cell of a tab-separated text file (`--out FILE.txt`/`.tsv`), which a spreadsheet
    opens too: as `csv_cell` (a formula start quoted, controls escaped, a tab among them),
    but a number ("-3", "81.8%") or "-" (no value) stays as written; None is empty."""
    if value is None:
        return ""
    text = str(value)
    if text == "-" or _NUMBER.fullmatch(text):
        return text
    return str(csv_cell(text))
