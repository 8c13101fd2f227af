"""What a hostile village writes reaches the town's `case show` page and `case list` files
inert.

Village A, with its real key and modified software, records its own case with every text a
clerk's page now shows carrying terminal escapes, bidi overrides and spreadsheet formulas:
the applicant's name and phone, the materials, the 一次性告知 list, the special procedure's
reason. The town takes it in as a push would (every signature and body checked). Its page,
its list, and the list's CSV and XLSX show each text visibly escaped where it stood, and no
cell is a formula.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from sync.clock import local_date
from tests.hostile.harness import stamp_now
from tests.hostile.network import ITEM, TOWN, VILLAGE_A, Net, zb
from tests.support.servers import zhibao
from tests.support.topology import hand_up
from tiers.inert import UNSAFE

# the attacks reach the city too: its PostgreSQL runs in the soak run (the CI run's sample
# of a member pushing to a PostgreSQL city: test_city_pushes.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]

ESCAPES = "\x1b]8;;http://evil.example/\x07点我\x1b]8;;\x07\x1b[2J\u202e"
NAME = f'=HYPERLINK("http://evil.example/","张三"){ESCAPES}'
PHONE = "+cmd|' /C calc'!A0"
MISSING = [f"照片{ESCAPES}", "=1+2", "@SUM(A1)"]
REASON = f"实地勘察\x9b31m{ESCAPES}"
RAW_UNSAFE = {chr(c) for c in UNSAFE if c != 0x0A}


def _inert(text: str) -> str:
    found = sorted({f"U+{ord(ch):04X}" for ch in text if ch in RAW_UNSAFE})
    assert not found, f"raw control characters reach the reader: {found}"
    return text


def _forge_case(net: Net) -> str:
    actor = net.actor(VILLAGE_A)
    at = stamp_now()
    case_id = f"{VILLAGE_A}-{local_date(at):%Y%m%d}-0901"
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("case.received", {"item_code": ITEM, "materials": [f"身份证{ESCAPES}"],
                           "applicant": {"name": NAME, "phone": PHONE, "id_no": "-2+3"}}),
        ("case.accepted", {"promised_days": 15}),
        ("case.supplement_requested", {"missing": MISSING}),
        ("case.supplied", {}),
        ("case.suspended", {"reason": REASON}),
    ]  # fmt: skip
    after = None
    for entry_type, body in bodies:
        entry = actor.forge(entry_type, {"case_id": case_id, "after": after, **body}, at=at)
        after = [VILLAGE_A, entry.seq]
    with net.topology.open(VILLAGE_A) as village, net.topology.open(TOWN) as town:
        result = hand_up(village, town)
    assert not result["rejected"], result
    return case_id


def test_hostile_texts_on_the_case_page_are_inert(net: Net) -> None:
    case_id = _forge_case(net)
    town = net.home(TOWN)
    for lang in ("en", "zh"):
        done = zhibao(town, "case", "show", case_id, lang=lang)
        assert done.returncode == 0, done.stderr
        page = _inert(done.stdout)
        assert "\\x1b]8;;http://evil.example/\\x07" in page and "\\u202e" in page
        assert "=HYPERLINK(" in page and PHONE in page and "\\x9b31m" in page
        # the 一次性告知 list keeps its numbering, each item escaped where it stood
        assert "  1. 照片\\x1b]8;;" in page and "  2. =1+2" in page and "  3. @SUM(A1)" in page
    listed = _inert(zb(town, "case", "list").stdout)
    assert case_id in listed and "\\x1b[2J" in listed


def test_hostile_texts_in_case_list_files_are_inert(net: Net, tmp_path: Path) -> None:
    case_id = _forge_case(net)
    town = net.home(TOWN)
    printed = zb(town, "case", "list", "--format", "csv").stdout
    _inert(printed)
    (row,) = [
        r for r in csv.DictReader(io.StringIO(printed.lstrip("\ufeff"))) if r["case_id"] == case_id
    ]
    assert row["applicant"].startswith("'=HYPERLINK(") and "\\u202e" in row["applicant"]
    assert row["phone"] == "'" + PHONE
    book = tmp_path / "list.xlsx"
    zb(town, "case", "list", "--out", str(book))
    sheet = openpyxl.load_workbook(book).active
    assert sheet is not None
    cells = [c for row in sheet.iter_rows(min_row=2) for c in row if c.value is not None]
    assert cells and all(c.data_type != "f" for c in cells)  # no formula, only values
    by_text = {str(c.value) for c in cells}
    assert NAME in by_text or any(v.startswith("=HYPERLINK(") for v in by_text)


def test_hostile_texts_in_case_list_text_files_are_no_formulas(net: Net, tmp_path: Path) -> None:
    # `--out FILE.tsv` (or .txt) is the table, tab-separated: a spreadsheet opens it too,
    # so a name or phone that starts a formula is quoted there as in the CSV
    case_id = _forge_case(net)
    town = net.home(TOWN)
    text = tmp_path / "list.tsv"
    zb(town, "case", "list", "--out", str(text))
    header, *rows = text.read_text(encoding="utf-8").splitlines()
    _inert(text.read_text(encoding="utf-8").replace("\t", " "))  # tabs: the separators
    (row,) = [dict(zip(header.split("\t"), r.split("\t"), strict=True)) for r in rows
              if r.startswith(case_id)]  # fmt: skip
    cells = [row[k] for k in row]
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@"))], cells
    assert row["applicant"].startswith("'=HYPERLINK(") and row["phone"] == "'" + PHONE
