"""`zhibao catalogue` and `zhibao calendar`, run as the real program in temporary homes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MakeTopology
from tests.support.calendars import HOLIDAYS_2027, WORKDAYS_2027, whole_2027_file
from tests.support.servers import zhibao
from tests.support.topology import CITY, TOWN, hand_down
from tests.support.topology import SHIPPED_CATALOGUE as SHARED_CATALOGUE

BAD_CSV = (
    "code,name,department,kind,promised_days,fee\n"
    "T-001,健康证明办理,卫生健康局,承诺,1,45.00\n"
    "T-002,农机行驶证核发,农业农村局,即办,0,十元\n"
)


def ok(home: Path, *args: str, lang: str = "en") -> str:
    done = zhibao(home, *args, lang=lang)
    assert done.returncode == 0, done.stderr
    return done.stdout


def ok_json(home: Path, *args: str) -> Any:
    return json.loads(ok(home, *args, "--json"))


@pytest.fixture
def city(tmp_path: Path) -> Path:
    home = tmp_path / "city"
    ok(home, "init", "--tier", "city", "--node-id", "330782", "--name", "市行政服务中心")
    return home


def test_catalogue_import_shared_file_then_reimport(city: Path) -> None:
    assert ok(city, "catalogue", "import", str(SHARED_CATALOGUE)).strip() == (
        "15 added, 0 changed, 0 unchanged"
    )
    assert ok(city, "catalogue", "import", str(SHARED_CATALOGUE)).strip() == (
        "0 added, 0 changed, 15 unchanged"
    )
    assert len([e for e in ok_json(city, "log", "show") if e["type"] == "catalogue.item"]) == 15


def test_catalogue_list_json_shape(city: Path) -> None:
    ok(city, "catalogue", "import", str(SHARED_CATALOGUE), "--at", "2025-10-09T08:30")
    items = ok_json(city, "catalogue", "list")
    assert [item["code"] for item in items] == sorted(item["code"] for item in items)
    assert len(items) == 15
    by_code = {item["code"]: item for item in items}
    assert by_code["330782-WS-001"] == {
        "code": "330782-WS-001", "name": "健康证明办理", "department": "卫生健康局",
        "kind": "promised", "promised_days": 1, "statutory_days": 5, "fee": "45.00",
        "fee_fen": 4500, "materials": ["身份证", "体检表"],
        "accept_tiers": ["village", "town", "city"], "decide_tier": "town",
        "extension_days": 10, "origin": "330782", "seq": by_code["330782-WS-001"]["seq"],
    }  # fmt: skip
    assert {item["kind"] for item in items} == {"immediate", "promised", "forward", "joint"}
    published = [e for e in ok_json(city, "log", "show") if e["type"] == "catalogue.item"]
    assert published[0]["at"] == "2025-10-09T08:30:00+08:00"


def test_catalogue_list_table_uses_chinese_labels(city: Path) -> None:
    assert "No catalogue items yet" in ok(city, "catalogue", "list")
    ok(city, "catalogue", "import", str(SHARED_CATALOGUE))
    table = ok(city, "catalogue", "list", lang="zh")
    assert table.splitlines()[0].split()[:4] == ["事项编码", "事项名称", "部门", "类型"]
    row = next(line for line in table.splitlines() if line.startswith("330782-WS-001"))
    assert row.split()[3:7] == ["承诺", "1", "5", "45.00"]


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        pytest.param("en", "bad.csv line 3, column fee: '十元' is not an amount in yuan", id="en"),
        pytest.param("zh", "bad.csv 第 3 行 fee 列：“十元”不是以元为单位的金额", id="zh"),
    ],
)
def test_catalogue_import_malformed_csv_is_refused_whole(
    city: Path, tmp_path: Path, lang: str, expected: str
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_CSV, "utf-8")
    before = ok_json(city, "log", "show")
    done = zhibao(city, "catalogue", "import", str(bad), lang=lang)
    assert done.returncode == 1
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
    assert ok_json(city, "log", "show") == before
    assert ok_json(city, "catalogue", "list") == []


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("catalogue", "import"), id="missing-file"),
        pytest.param(("catalogue", "list", "--bogus"), id="unknown-option"),
        pytest.param(("calendar", "show", "--year", "twenty"), id="bad-year"),
    ],
)
def test_catalogue_usage_error_exits_2(city: Path, args: tuple[str, ...]) -> None:
    done = zhibao(city, *args)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr


def test_calendar_import_then_show(city: Path, tmp_path: Path) -> None:
    overrides = tmp_path / "calendar.json"
    overrides.write_text(json.dumps(whole_2027_file() | {"days": {"2027-05-06": True}}), "utf-8")
    seq = ok_json(city, "status")["heads"]["330782"] + 1
    out = ok(city, "calendar", "import", str(overrides))
    assert f"entry #{seq}: 1 year, 1 single day." in out
    assert "Whole year, deadlines in it" in out
    assert "Nothing new" in ok(city, "calendar", "import", str(overrides))
    shown = ok_json(city, "calendar", "show")
    assert 2026 in shown["package_years"] and 2027 not in shown["package_years"]
    assert shown["override_years"] == {"2027": {"origin": "330782", "seq": seq, "complete": True}}
    assert shown["days"] == {"2027-05-06": {"working": True, "origin": "330782", "seq": seq}}
    year = ok_json(city, "calendar", "show", "--year", "2027")
    assert (year["source"], year["origin"], year["seq"]) == ("override", "330782", seq)
    assert (year["known"], year["complete"]) == (True, True)
    assert year["holidays"] == sorted(HOLIDAYS_2027)
    assert year["workdays"] == sorted(WORKDAYS_2027)
    assert ok_json(city, "calendar", "show", "--year", "2026")["source"] == "package"


def test_calendar_import_malformed_names_file(city: Path, tmp_path: Path) -> None:
    bad = tmp_path / "calendar.json"
    bad.write_text('{"years": {"2027": {"complete": false, "holidays": ["2027-13-01"]}}}', "utf-8")
    before = ok_json(city, "log", "show")
    done = zhibao(city, "calendar", "import", str(bad))
    assert done.returncode == 1
    assert done.stderr.startswith(f"zhibao: {bad}: malformed calendar override")
    assert len(done.stderr.splitlines()) == 1
    assert ok_json(city, "log", "show") == before


def test_catalogue_import_at_a_town_says_it_counts_there_only(tmp_path: Path) -> None:
    """A town's own import (standalone use) is kept local (#9): the clerk is told so."""
    from tests.support.topology import TOWN, build_topology

    net = build_topology(tmp_path, [TOWN])
    done = zhibao(net.home(TOWN), "catalogue", "import", str(SHARED_CATALOGUE))
    assert done.returncode == 0, done.stderr
    assert "counts here only" in done.stdout and done.stderr == ""


def test_catalogue_import_of_a_header_alone_is_refused(city: Path, tmp_path: Path) -> None:
    header = tmp_path / "header.csv"
    header.write_text(SHARED_CATALOGUE.read_text("utf-8").splitlines()[0] + "\n", "utf-8")
    before = ok_json(city, "log", "show")
    for lang, said in (("en", "holds no items"), ("zh", "没有任何事项")):
        done = zhibao(city, "catalogue", "import", str(header), lang=lang)
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.startswith(f"zhibao: {header}") and said in done.stderr
        assert done.stderr.count("\n") == 1
    assert ok_json(city, "log", "show") == before


def test_catalogue_import_reads_a_chinese_list_copied_out_of_a_spreadsheet(
    city: Path, tmp_path: Path
) -> None:
    rows = [
        "事项编码\t事项名称\t实施主体\t办件类型\t承诺办结时限\t收费标准\t申请材料\t受理层级",
        "Z-001\t健康证明办理\t卫生健康局\t承诺件\t1个工作日\t45.00\t身份证,复印件;体检表\t村级、镇级",
        "Z-002\t独生子女父母光荣证\t卫生健康局\t即办件\t0\t不收费\t户口簿\t镇级",
    ]
    listing = tmp_path / "事项清单.txt"
    listing.write_bytes(("\r\n".join(rows) + "\r\n").encode("gb18030"))  # Excel's own text
    assert ok(city, "catalogue", "import", str(listing), lang="zh").strip() == (
        "新增 2 项，修改 0 项，未变 0 项"
    )
    items = {item["code"]: item for item in ok_json(city, "catalogue", "list")}
    assert (items["Z-001"]["kind"], items["Z-001"]["fee"], items["Z-001"]["materials"]) == (
        "promised", "45.00", ["身份证,复印件", "体检表"]
    )  # fmt: skip
    assert items["Z-001"]["accept_tiers"] == ["village", "town"]
    assert (items["Z-002"]["kind"], items["Z-002"]["fee_fen"]) == ("immediate", 0)
    bad = tmp_path / "坏清单.tsv"
    bad.write_text("\n".join([rows[0], rows[1].replace("1个工作日", "一天")]) + "\n", "utf-8")
    done = zhibao(city, "catalogue", "import", str(bad), lang="zh")
    assert done.returncode == 1
    assert "第 2 行 承诺办结时限 列：“一天”不是工作日天数" in done.stderr


def test_catalogue_from_a_hostile_spreadsheet_reaches_a_town_inert(
    make_topology: MakeTopology, tmp_path: Path
) -> None:
    """A department's list (tab-separated, Chinese headers) carrying terminal escapes, a
    bidi override and spreadsheet formulas: published by the city, handed down, listed at
    the town as visible escapes; JSON keeps the exact text."""
    net = make_topology([CITY, TOWN])
    name = "健康证明\x1b]0;owned\x07\u202e<script>"
    department = "=cmd|' /C calc'!A0"
    listing = tmp_path / "清单.tsv"
    listing.write_text(
        f"事项编码\t事项名称\t部门\t办件类型\t承诺时限\nX-001\t{name}\t{department}\t承诺件\t1\n",
        "utf-8",
    )
    ok(net.home(CITY), "catalogue", "import", str(listing))
    with net.open(CITY) as city, net.open(TOWN) as town:
        assert hand_down(city, town) >= 1
    for lang in ("en", "zh"):
        table = ok(net.home(TOWN), "catalogue", "list", lang=lang)
        assert "\x1b" not in table and "\x07" not in table and "\u202e" not in table
        assert "健康证明\\x1b]0;owned\\x07\\u202e<script>" in table
    (item,) = ok_json(net.home(TOWN), "catalogue", "list")
    assert (item["name"], item["department"]) == (name, department)
