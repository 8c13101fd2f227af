"""`zhibao stats`, `zhibao report monthly`, `zhibao reconcile`, run as the real program on
homes holding the hand-built October of tests/tiers/test_figures.py."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from tests.support.topology import CITY, TOWN, VILLAGE
from tests.tiers.test_figures import hand_built_month, push, small_city, t
from tiers.figures import COUNT_FIELDS
from tiers.node import open_home

ZHIBAO = str(Path(sys.executable).parent / "zhibao")
if not Path(ZHIBAO).exists():
    ZHIBAO = shutil.which("zhibao") or ZHIBAO
STATS_KEYS = {
    "key", "accepted", "completed", "completion_rate", "on_time", "early", "overdue",
    "avg_days", "speedup", "rated", "satisfaction_rate",
}  # fmt: skip


def zhibao(home: Path, *args: str, lang: str = "en") -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("ZHIBAO_HOME", "ZHIBAO_DEBUG")}
    env["ZHIBAO_LANG"] = lang
    return subprocess.run(
        [ZHIBAO, *args, "--home", str(home)], capture_output=True, env=env, timeout=60,
        check=False,
    )  # fmt: skip


def ok(home: Path, *args: str, lang: str = "en") -> bytes:
    done = zhibao(home, *args, lang=lang)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def refused(home: Path, *args: str, status: int = 1) -> str:
    done = zhibao(home, *args)
    assert done.returncode == status, done
    assert done.stdout == b""
    return done.stderr.decode()


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """City, town and village homes after the hand-built October, closed again."""
    base = tmp_path_factory.mktemp("october")
    with small_city(base) as net:
        hand_built_month(net)
    return {node_id: base / node_id for node_id in (CITY, TOWN, VILLAGE)}


def test_stats_json_has_the_stable_keys(homes: dict[str, Path]) -> None:
    result = json.loads(ok(homes[CITY], "stats", "--period", "2025-10", "--json"))
    assert result["period"] == "2025-10"
    assert all(set(row) >= STATS_KEYS for row in result["rows"])
    assert set(result["total"]) >= STATS_KEYS
    town = {row["key"]: row for row in result["rows"]}[TOWN]
    assert (town["accepted"], town["completed"], town["completion_rate"]) == (9, 8, 0.8)
    assert (town["avg_days"], town["speedup"], town["satisfaction_rate"]) == (4.57, 0.2, 0.6667)


def test_stats_format_json_to_file_equals_stdout(homes: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "stats.json"
    ok(homes[CITY], "stats", "--period", "2025-Q4", "--by", "item", "--format", "json",
       "--out", str(out))  # fmt: skip
    printed = ok(homes[CITY], "stats", "--period", "2025-Q4", "--by", "item", "--json")
    assert json.loads(out.read_text("utf-8")) == json.loads(printed)
    assert json.loads(printed)["period"] == "2025-Q4"


def test_stats_csv_reads_back_with_bom_and_chinese(homes: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "stats.csv"
    ok(homes[CITY], "stats", "--period", "2025-10", "--by", "department", "--format", "csv",
       "--out", str(out))  # fmt: skip
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    by_key = {row["key"]: row for row in rows}
    assert set(by_key) == {"公安", "民政", "total"}
    assert by_key["公安"]["accepted"] == "7" and by_key["民政"]["accepted"] == "2"
    assert by_key["total"]["completion_rate"] == "0.8"
    assert by_key["total"]["fees_assessed_fen"] == "5150"
    assert all(row["period"] == "2025-10" for row in rows)


@pytest.mark.parametrize("by", ["node", "tier", "item", "department", "kind"])
def test_stats_csv_carries_every_json_key(homes: dict[str, Path], by: str) -> None:
    printed = json.loads(ok(homes[CITY], "stats", "--period", "2025-10", "--by", by, "--json"))
    data = ok(homes[CITY], "stats", "--period", "2025-10", "--by", by, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert [row["key"] for row in rows] == [r["key"] for r in printed["rows"]] + ["total"]
    for row, shown in zip(rows, [*printed["rows"], printed["total"]], strict=True):
        # every key of the JSON row, and the result's period and guessed calendar years
        assert set(row) == {"period", *shown, "provisional"}
        assert {k: row[k] for k in shown} == {
            k: "" if v is None else str(v) for k, v in shown.items()
        }


def test_stats_by_kind_shares_and_rates(homes: dict[str, Path]) -> None:
    result = json.loads(ok(homes[CITY], "stats", "--period", "2025-10", "--by", "kind",
                           "--json", lang="zh"))  # fmt: skip
    kinds = {row["key"]: row for row in result["rows"]}
    # A1 (承诺): 1–5, 11, 14; B2 (上报): 7; C3 (即办): 6 — 9 accepted in all
    assert {k: r["accepted"] for k, r in kinds.items()} == {
        "promised": 7, "forward": 1, "immediate": 1}
    assert kinds["promised"]["accepted_share"] == 0.7778  # 7 ÷ 9
    assert kinds["immediate"]["accepted_share"] == 0.1111 and kinds["immediate"]["label"] == "即办"
    assert kinds["forward"]["label"] == "上报" and kinds["forward"]["speedup"] == 0.3
    assert kinds["promised"]["on_time_rate"] == 0.8333  # 5 of 6 (3 was late)
    assert result["total"]["accepted_share"] == 1.0


def test_stats_csv_to_stdout_is_the_same_bytes(homes: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "stats.csv"
    ok(homes[CITY], "stats", "--period", "2025-10", "--format", "csv", "--out", str(out))
    assert ok(homes[CITY], "stats", "--period", "2025-10", "--format", "csv") == out.read_bytes()


def test_stats_xlsx_reads_back_with_openpyxl(homes: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "stats.xlsx"
    ok(homes[CITY], "stats", "--period", "2025-10", "--by", "node", "--format", "xlsx",
       "--out", str(out), lang="zh")  # fmt: skip
    book = openpyxl.load_workbook(out)
    sheet = book["2025-10"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:5] == ("编码", "名称", "收件量", "受理量", "办结量")
    by_key = {row[0]: row for row in rows[1:]}
    assert set(by_key) == {CITY, TOWN, VILLAGE, "total"}  # the city: its step on case 7
    town = dict(zip(rows[0], by_key[TOWN], strict=True))
    assert town["名称"] == "稠城街道便民服务中心"
    assert (town["受理量"], town["办结量"], town["办结率"]) == (9, 8, 0.8)
    assert town["核定收费（元）"] == 51.5 and town["满意率"] == 0.6667
    assert by_key[VILLAGE][rows[0].index("办结率")] is None  # undefined, left blank


def test_stats_table_in_chinese(homes: dict[str, Path]) -> None:
    text = ok(homes[CITY], "stats", "--period", "2025-10", lang="zh").decode()
    assert "受理量" in text and "稠城街道便民服务中心" in text and "80.0%" in text


def test_stats_refusals(homes: dict[str, Path], tmp_path: Path) -> None:
    assert "--out" in refused(homes[CITY], "stats", "--format", "xlsx")
    assert "not a period" in refused(homes[CITY], "stats", "--period", "2025-13")
    refused(homes[CITY], "stats", "--by", "village", status=2)
    assert not list(tmp_path.iterdir())


def test_report_monthly_then_reconcile_json(homes: dict[str, Path], tmp_path: Path) -> None:
    work = tmp_path / "net"
    shutil.copytree(homes[CITY].parent, work)
    town, city = work / TOWN, work / CITY
    first = json.loads(ok(town, "report", "monthly", "--period", "2025-10", "--json"))
    assert first["appended"] and first["figures"]["accepted"] == 9
    again = ok(town, "report", "monthly", "--period", "2025-10").decode()
    assert "already reported" in again
    with open_home(town) as t_node, open_home(city) as c_node:
        push(t_node, c_node, t("11-03"))
    result = json.loads(ok(city, "reconcile", "--period", "2025-10", "--json"))
    assert set(result) >= {"period", "findings"} and result["period"] == "2025-10"
    for finding in result["findings"]:
        assert set(finding) >= {"kind", "node_id", "detail", "evidence"}
    kinds = {(f["kind"], f["node_id"]) for f in result["findings"]}
    assert ("missing_report", VILLAGE) in kinds and ("missing_report", TOWN) not in kinds
    assert not any(f["kind"] == "report_mismatch" for f in result["findings"])
    table = ok(city, "reconcile", "--period", "2025-10").decode()
    assert "missing_report" in table


def test_report_monthly_refusals(homes: dict[str, Path]) -> None:
    assert "one month" in refused(homes[TOWN], "report", "monthly", "--period", "2025-Q4")
    assert "reconcile" in refused(homes[CITY], "report", "monthly", "--period", "2025-10")
    assert "one month" in refused(homes[CITY], "reconcile", "--period", "2025")


def test_stats_default_period_is_this_month(homes: dict[str, Path]) -> None:
    result = json.loads(ok(homes[CITY], "stats", "--json"))
    assert len(result["period"]) == 7 and result["period"] > "2025-11"
    town = {row["key"]: row for row in result["rows"]}[TOWN]
    assert (town["accepted"], town["open_at_start"], town["open_overdue"]) == (0, 2, 2)


DOCS = Path(__file__).resolve().parents[2] / "docs" / "statistics.md"


def _doc_json_blocks() -> list[Any]:
    text = DOCS.read_text("utf-8")
    blocks = [part.split("```", 1)[0] for part in text.split("```json\n")[1:]]
    return [json.loads(block) for block in blocks if "…" not in block]


def test_docs_examples_match_the_program(homes: dict[str, Path]) -> None:
    stats_example, report_example = _doc_json_blocks()[:2]
    result = json.loads(ok(homes[CITY], "stats", "--period", "2025-10", "--json"))
    real_town = {row["key"]: row for row in result["rows"]}[TOWN]
    assert set(stats_example) == set(result)
    assert stats_example["rows"][0] == real_town  # the hand-built month, as documented
    assert set(report_example["figures"]) == set(COUNT_FIELDS)
    assert {k: real_town[k] for k in report_example["figures"]} == report_example["figures"]
