"""What people open in a spreadsheet is inert ("CSV injection", OWASP).

Names, departments and other text in an export can come from any enrolled node, so a CSV
cell that a spreadsheet would run as a formula (it begins with =, +, -, @, a tab or a
carriage return) is prefixed with a single quote, as OWASP recommends; numbers stay numbers.
XLSX workbooks are opened with options that never turn a string into a formula, a link or
a number. Every CSV and XLSX writer uses these.
"""

from __future__ import annotations

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


def csv_cell(value: Any) -> Any:
    """`value` as a CSV writer should get it: text that would start a formula is quoted."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_row(values: Iterable[Any]) -> list[Any]:
    return [csv_cell(value) for value in values]
