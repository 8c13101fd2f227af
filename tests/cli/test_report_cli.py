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

from cli.common import display_width
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
        "promised": 7,
        "forward": 1,
        "immediate": 1,
    }
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
    assert rows[0][:6] == ("编码", "名称", "收件量", "上期结转", "受理量", "办结量")
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
    assert "missing report" in table and "1 report held" in table  # "1 reports": no more
    chinese = ok(city, "reconcile", "--period", "2025-10", lang="zh").decode()
    assert "未报月报" in chinese and "missing" not in chinese
    assert "已收到 1 份月报" in chinese


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


# --- the table a person reads (issue #13, part 4) ---------------------------------------------


def _lines(text: bytes) -> list[str]:
    return text.decode().splitlines()


def _row(lines: list[str], key: str) -> list[str]:
    [line] = [line for line in lines if line.startswith(key + " ")]
    return line.split()


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("by", ["node", "tier", "item", "department", "kind"])
def test_stats_default_table_fits_100_columns(homes: dict[str, Path], lang: str, by: str) -> None:
    lines = _lines(ok(homes[CITY], "stats", "--period", "2025-10", "--by", by, lang=lang))
    assert all(display_width(line) <= 100 for line in lines), "\n".join(lines)
    wide = _lines(ok(homes[CITY], "stats", "--period", "2025-10", "--by", by, "--wide", lang=lang))
    assert max(map(display_width, wide)) > 100  # the rest is there, with --wide


@pytest.mark.parametrize(
    ("lang", "carried", "note"),
    [
        pytest.param("en", "carried", "completion rate = completed ÷ (carried over + accepted)",
                     id="en"),
        pytest.param("zh", "上期结转", "办结率 = 办结量 ÷（上期结转 + 受理量）", id="zh"),
    ],
)  # fmt: skip
def test_stats_table_shows_the_rates_denominator(
    homes: dict[str, Path], lang: str, carried: str, note: str
) -> None:
    lines = _lines(ok(homes[CITY], "stats", "--period", "2025-10", lang=lang))
    assert any(carried in line for line in lines[1:3])  # a column of its own
    # the town: 1 carried over from September + 9 accepted; 8 completed = 80.0 %; one closed
    # late, one open past its deadline
    assert _row(lines, TOWN)[2:] == ["1", "9", "8", "80.0%", "1", "1"]
    assert note in lines


def test_stats_table_names_both_overdue_counts(homes: dict[str, Path]) -> None:
    text = ok(homes[CITY], "stats", "--period", "2025-10").decode()
    assert "closed overdue: completed in the period, after the deadline." in text
    assert "open past deadline: still open at the close of 2025-10-31" in text
    assert "--wide" in text and "--columns" in text  # how to see more
    wide = ok(homes[CITY], "stats", "--period", "2025-10", "--wide").decode()
    assert "satisfaction" in wide and "own step" in wide and "--columns" not in wide


def test_stats_columns_chooses_table_csv_and_xlsx_columns(
    homes: dict[str, Path], tmp_path: Path
) -> None:
    chosen = ("--columns", "satisfaction_rate,accepted,label")
    lines = _lines(ok(homes[CITY], "stats", "--period", "2025-10", *chosen))
    rule = next(i for i, line in enumerate(lines) if line.startswith("---"))
    assert lines[rule - 1].split() == ["node", "name", "satisfaction", "accepted"]
    assert _row(lines, TOWN)[2:] == ["66.7%", "9"]
    data = ok(homes[CITY], "stats", "--period", "2025-10", "--format", "csv", *chosen)
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert rows[0] == ["period", "key", "label", "satisfaction_rate", "accepted", "provisional"]
    out = tmp_path / "chosen.xlsx"
    ok(homes[CITY], "stats", "--period", "2025-10", "--out", str(out), *chosen, lang="zh")
    sheet = openpyxl.load_workbook(out)["2025-10"]
    assert next(sheet.iter_rows(values_only=True)) == ("编码", "名称", "满意率", "受理量")


@pytest.mark.parametrize(
    ("name", "looks_like"),
    [
        pytest.param("s.xlsx", "xlsx", id="xlsx"),
        pytest.param("S.CSV", "csv", id="csv-upper-case"),
        pytest.param("s.json", "json", id="json"),
        pytest.param("s.txt", "text", id="txt"),
    ],
)
def test_stats_out_format_follows_the_name(
    homes: dict[str, Path], tmp_path: Path, name: str, looks_like: str
) -> None:
    out = tmp_path / name
    ok(homes[CITY], "stats", "--period", "2025-10", "--out", str(out))
    data = out.read_bytes()
    if looks_like == "xlsx":
        assert data.startswith(b"PK") and openpyxl.load_workbook(out)["2025-10"]
    elif looks_like == "csv":
        assert data.startswith(b"\xef\xbb\xbfperiod,key,label,")
    elif looks_like == "json":
        assert json.loads(data)["period"] == "2025-10"
    else:
        header, *rest = data.decode().splitlines()
        assert header.split("\t")[:4] == ["node", "name", "carried over", "accepted"]
        assert rest[-1].startswith("total\t")


def test_stats_format_given_wins_over_the_name(homes: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "s.xlsx"
    ok(homes[CITY], "stats", "--period", "2025-10", "--format", "csv", "--out", str(out))
    assert out.read_bytes().startswith(b"\xef\xbb\xbfperiod,")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        pytest.param(("--out", "{tmp}/s.dat"), "Cannot tell the format from the name s.dat",
                     id="unknown-suffix"),
        pytest.param(("--out", "{tmp}/stats"), "Cannot tell the format from the name stats",
                     id="no-suffix"),
        pytest.param(("--wide", "--columns", "accepted"), "not both", id="wide-and-columns"),
        pytest.param(("--json", "--columns", "accepted"), "JSON always has every key",
                     id="columns-json"),
        pytest.param(("--columns", "accepted,acepted"), "No such column: acepted",
                     id="unknown-column"),
    ],
)  # fmt: skip
def test_stats_refuses_what_it_cannot_do(
    homes: dict[str, Path], tmp_path: Path, args: tuple[str, ...], said: str
) -> None:
    error = refused(homes[CITY], "stats", *(a.format(tmp=tmp_path) for a in args))
    assert error.startswith("zhibao: ") and said in error and error.count("\n") == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_stats_unknown_suffix_in_chinese(homes: dict[str, Path], tmp_path: Path) -> None:
    done = zhibao(homes[CITY], "stats", "--out", str(tmp_path / "s.dat"), lang="zh")
    assert done.returncode == 1
    assert done.stderr.decode().startswith("zhibao: 无法从文件名 s.dat 判断格式")


@pytest.mark.parametrize(
    ("lang", "said"),
    [
        pytest.param("en", ("carried over 1", "accepted 9", "completed 8", "on time 7",
                            "closed overdue 1", "open past deadline 1"), id="en"),
        pytest.param("zh", ("上期结转 1", "受理量 9", "办结量 8", "按时办结 7", "超期办结 1",
                            "在办超期 1"), id="zh"),
    ],
)  # fmt: skip
def test_report_monthly_speaks_of_overdue_as_stats_does(
    homes: dict[str, Path], tmp_path: Path, lang: str, said: tuple[str, ...]
) -> None:
    work = tmp_path / "net"
    shutil.copytree(homes[CITY].parent, work)
    first = ok(work / TOWN, "report", "monthly", "--period", "2025-10", lang=lang).decode()
    again = ok(work / TOWN, "report", "monthly", "--period", "2025-10", lang=lang).decode()
    for text in (first, again):  # appended, then unchanged: the figures both times
        assert all(words in text for words in said), text
    table = ok(work / TOWN, "stats", "--period", "2025-10", "--wide", lang=lang).decode()
    assert all(words.rsplit(" ", 1)[0].split(" ")[0] in table for words in said)


def test_reconcile_table_fits_and_names_kinds_in_chinese(homes: dict[str, Path]) -> None:
    english = _lines(ok(homes[CITY], "reconcile", "--period", "2025-10"))
    chinese = _lines(ok(homes[CITY], "reconcile", "--period", "2025-10", lang="zh"))
    for lines in (english, chinese):
        assert all(display_width(line) <= 100 for line in lines), "\n".join(lines)
    assert english[0].split() == ["kind", "node", "detail"]
    assert {"missing", "report"} <= set(english[2].split())
    assert chinese[2].startswith("未报月报") and "2 个问题" not in chinese[-1]
    listed = json.loads(ok(homes[CITY], "reconcile", "--period", "2025-10", "--json", lang="zh"))
    assert listed["findings"][0]["kind"] == "missing_report"  # JSON keeps the key
    kinds = {f["kind"] for f in listed["findings"]}
    assert not any(kind in "\n".join(chinese) for kind in kinds)


def test_stats_note_follows_the_withdrawn_setting(homes: dict[str, Path], tmp_path: Path) -> None:
    work = tmp_path / "net"
    shutil.copytree(homes[CITY].parent, work)
    toml = work / CITY / "node.toml"
    toml.write_text(toml.read_text("utf-8") + "completion_counts_withdrawn = false\n", "utf-8")
    lines = _lines(ok(work / CITY, "stats", "--period", "2025-10"))
    assert "completion rate = completed ÷ (carried over + accepted − withdrawn)" in lines


@pytest.mark.parametrize("option", ["--stale-days", "--forward-days", "--skew-seconds"])
def test_reconcile_refuses_a_negative_threshold(tmp_path: Path, option: str) -> None:
    """Below 0 every node (every forward, every clock) would be a finding: refused."""
    done = zhibao(tmp_path / "city", "reconcile", "--period", "2025-10", option, "-1")
    assert done.returncode == 2 and done.stdout == b""
    assert option.encode() in done.stderr and b"Traceback" not in done.stderr
