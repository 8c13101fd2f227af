"""The format of what `stats` and `case list` write (`--format`, `--json`, `--out FILE`).

One rule for both: `--format` if given, else JSON with `--json`, else the `--out` file's
suffix (`.csv`, `.xlsx`, `.json`, `.txt`/`.tsv` for the tab-separated table), else the
terminal table. An `--out` name with another suffix is refused rather than guessed, so no
tab-separated text lands in a file named `.xls` or `.cvs`. (Kept apart from tiers.export,
which loads xlsxwriter: `case list` on a terminal does not need it.)
"""

from __future__ import annotations

from pathlib import PurePath

from sync.protocol import i18n
from sync.protocol.errors import ZhibaoError

FORMATS = ("table", "json", "csv", "xlsx")
# The format a file's name implies (`--out` without `--format`); a text table is tab-separated.
SUFFIXES = {".csv": "csv", ".xlsx": "xlsx", ".json": "json", ".txt": "table", ".tsv": "table"}


def format_for(fmt: str | None, out_name: str | None, as_json: bool) -> str:
    """The output format (see the module's text)."""
    if fmt is not None:
        return fmt
    if as_json:
        return "json"
    if out_name is None:
        return "table"
    suffix = PurePath(out_name).suffix.lower()
    if suffix not in SUFFIXES:
        raise ZhibaoError("out.unknown_suffix", name=PurePath(out_name).name,
                          suffixes=", ".join(SUFFIXES), formats="|".join(FORMATS))  # fmt: skip
    return SUFFIXES[suffix]


i18n.register(
    {
        "out.unknown_suffix": (
            "Cannot tell the format from the name {name}: end it in one of {suffixes}, or give"
            " --format {formats}.",
            "无法从文件名 {name} 判断格式：请以 {suffixes} 之一结尾，或用 --format {formats}"
            " 指定。",
        ),
    }
)
