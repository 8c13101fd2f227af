"""What a person reads is inert, even when an enrolled member writes to attack it.

A real village, with its own key, records an applicant whose name carries terminal escape
sequences, bidi overrides and a spreadsheet formula; its town enrols it under a name that
is a formula; the city publishes an item whose name and department are hostile. All of it
travels up in sealed bundles. At the town and at the city, every table, line, CSV and XLSX
is inert, JSON stays exact, and an error message carrying such text is one escaped line.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from cli.common import display_width
from tests.support.servers import ZHIBAO, cli_env
from tests.support.topology import (
    CITY,
    SHIPPED_CATALOGUE,
    TOWN,
    VILLAGE,
    Topology,
)
from tiers.inert import FORMULA_STARTS, UNSAFE

OSC_LINK = "\x1b]8;;http://evil.example/\x07点我\x1b]8;;\x07"
APPLICANT = f'=HYPERLINK("http://evil.example/","张三"){OSC_LINK}\x1b[2J\u202e英秀\u2066\x9b31m'
VILLAGE_NAME = '=HYPERLINK("http://evil.example/","下骆宅村")\x1b[31m\u202e'
ITEM = "330782-ZZ-001"
ITEM_ROW = f'{ITEM},"\x1b]0;pwned\x07恶意事项\u202e",=1+2,承诺,5,,,,village;town,town\n'
RAW_UNSAFE = {chr(c) for c in UNSAFE if c != 0x0A}  # a newline ends a line; the rest must not pass


def run(home: Path, *args: str, lang: str = "en") -> subprocess.CompletedProcess[bytes]:
    """`zhibao ARGS --home HOME`, its output kept as bytes (text mode would hide a CR)."""
    return subprocess.run(
        [ZHIBAO, *args, "--home", str(home)], capture_output=True, env=cli_env(lang),
        timeout=120, check=False,
    )  # fmt: skip


def ok(home: Path, *args: str) -> str:
    done = run(home, *args)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b"", done.stderr.decode()
    return done.stdout.decode()


def inert(text: str) -> str:
    """`text`, after checking that no character in it can drive or disguise a terminal."""
    found = sorted({f"U+{ord(ch):04X}" for ch in text if ch in RAW_UNSAFE})
    assert not found, f"raw control characters reach the reader: {found}"
    return text


def carry(sender: Path, recipient: Path, to: str, stick: Path) -> None:
    """A bundle as an operator carries one: exported (sealed by default), imported."""
    stick.unlink(missing_ok=True)
    ok(sender, "bundle", "export", "--to", to, "--out", str(stick))
    ok(recipient, "bundle", "import", str(stick))


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A city, town and village after the attack has travelled up to the city."""
    from tests.support.topology import build_topology

    base = tmp_path_factory.mktemp("hostile")
    net: Topology = build_topology(base / "net")
    city, town, village = net.home(CITY), net.home(TOWN), net.home(VILLAGE)
    catalogue = base / "catalogue.csv"
    catalogue.write_text(SHIPPED_CATALOGUE.read_text("utf-8") + ITEM_ROW, "utf-8")
    ok(city, "catalogue", "import", str(catalogue))
    carry(city, town, TOWN, base / "down1.zb")
    carry(town, village, VILLAGE, base / "down2.zb")
    keys = json.loads(ok(village, "node", "show", "--json"))
    ok(town, "node", "enroll", "--node-id", VILLAGE, "--name", VILLAGE_NAME,
       "--public-key", keys["public_key"], "--seal-key", keys["seal_key"])  # fmt: skip
    case_id = ok(village, "case", "receive", "--item", ITEM, "--applicant", APPLICANT).strip()
    carry(village, town, TOWN, base / "up1.zb")
    carry(town, city, CITY, base / "up2.zb")
    return {"homes": {CITY: city, TOWN: town}, "case_id": case_id, "base": base}


HOLDERS = [pytest.param(TOWN, id="town"), pytest.param(CITY, id="city")]


@pytest.mark.slow
@pytest.mark.parametrize("holder", HOLDERS)
def test_hostile_case_list_and_show_are_inert(network: dict[str, Any], holder: str) -> None:
    home, case_id = network["homes"][holder], network["case_id"]
    for args in (("case", "list"), ("case", "show", case_id)):
        shown = inert(ok(home, *args))
        assert case_id in shown
        # escaped where it stood, visibly, rather than dropped
        assert "\\x1b]8;;http://evil.example/\\x07" in shown and "\\u202e" in shown, args
        assert "\\x9b31m" in shown and "张三" in shown


@pytest.mark.slow
@pytest.mark.parametrize("holder", HOLDERS)
def test_hostile_tables_and_logs_are_inert(network: dict[str, Any], holder: str) -> None:
    home = network["homes"][holder]
    assert "\\x1b]0;pwned\\x07" in inert(ok(home, "catalogue", "list"))
    assert "HYPERLINK" in inert(ok(home, "log", "show", "--origin", VILLAGE))
    assert "\\u202e" in inert(ok(home, "log", "show", "--origin", TOWN))  # the enrolment
    table = inert(ok(home, "stats", "--by", "node"))  # the default table cuts a long name
    assert all(display_width(line) <= 100 for line in table.splitlines())
    assert '=HYPERLINK("http' in table and "…" in table
    assert "\\x1b[31m" in inert(ok(home, "stats", "--by", "node", "--wide"))  # whole
    assert "\\x1b[31m" in inert(ok(home, "status"))  # the network table names the village


@pytest.mark.slow
@pytest.mark.parametrize("holder", HOLDERS)
def test_hostile_json_stays_exact(network: dict[str, Any], holder: str) -> None:
    home, case_id = network["homes"][holder], network["case_id"]
    text = inert(ok(home, "case", "show", case_id, "--json"))
    assert json.loads(text)["applicant"]["name"] == APPLICANT
    listed = json.loads(inert(ok(home, "case", "list", "--json")))
    assert [c["applicant"] for c in listed if c["case_id"] == case_id] == [APPLICANT]


def _csv(home: Path, by: str) -> list[dict[str, str]]:
    data = ok(home, "stats", "--by", by, "--format", "csv")  # printed: a terminal may show it
    inert(data.replace("\r\n", "\n"))  # CSV lines end in CRLF; no other CR may pass
    return list(csv.DictReader(io.StringIO(data.lstrip("\ufeff"), newline="")))


@pytest.mark.slow
@pytest.mark.parametrize("holder", HOLDERS)
def test_hostile_stats_csv_cells_are_inert(network: dict[str, Any], holder: str) -> None:
    home = network["homes"][holder]
    by_node = {row["key"]: row for row in _csv(home, "node")}
    label = by_node[VILLAGE]["label"]
    assert label.startswith("'=HYPERLINK(") and label.endswith("\\x1b[31m\\u202e")
    assert by_node[VILLAGE]["received"] == "1"  # numbers stay numbers
    by_department = {row["key"]: row for row in _csv(home, "department")}
    assert "'=1+2" in by_department and "=1+2" not in by_department
    for rows in (by_node.values(), by_department.values()):
        for row in rows:
            assert not any(cell.startswith(FORMULA_STARTS) for cell in row.values()), row


@pytest.mark.slow
def test_hostile_stats_xlsx_holds_strings_not_formulas(
    network: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "stats.xlsx"
    done = run(
        network["homes"][CITY], "stats", "--by", "node", "--format", "xlsx", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr.decode()
    sheet = openpyxl.load_workbook(out).active
    assert sheet is not None
    cells = {row[0].value: row[1] for row in sheet.iter_rows(min_row=2)}
    label = cells[VILLAGE]
    assert str(label.value).startswith('=HYPERLINK("http') and label.data_type == "s"
    assert all(c.data_type != "f" for row in sheet.iter_rows() for c in row)


@pytest.mark.slow
def test_hostile_error_message_is_one_escaped_line(network: dict[str, Any]) -> None:
    home = network["homes"][CITY]
    done = run(home, "case", "show", f"{TOWN}-20261201-0001\x1b]0;pwned\x07\n\u202eX")
    assert done.returncode == 1 and done.stdout == b""
    said = inert(done.stderr.decode())
    assert said.startswith("zhibao: ") and said.count("\n") == 1, said
    assert "\\x1b]0;pwned\\x07\\x0a\\u202eX" in said
