from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.protocol import i18n
from sync.protocol.errors import CaseError, CatalogueError
from tiers.catalogue import (
    CatalogueItem,
    fen_from_yuan,
    kind_label,
    parse_catalogue,
    tier_label,
    yuan_from_fen,
)

SHARED = Path(__file__).resolve().parents[2] / "tiers" / "data" / "catalogue.csv"
HEADER = (
    "code,name,department,kind,promised_days,statutory_days,fee,materials,accept_tiers,decide_tier"
)
GOOD_ROW = "A-1,健康证明办理,卫生健康局,承诺,1,5,45.00,身份证;体检表,village;town;city,town"


@pytest.fixture
def shared() -> bytes:
    return SHARED.read_bytes()


@pytest.fixture
def locale() -> Iterator[None]:
    yield
    i18n.use_locale(None)


def _csv(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _by_code(items: list[CatalogueItem]) -> dict[str, CatalogueItem]:
    return {item.code: item for item in items}


def _refusal(data: bytes, filename: str = "catalogue.csv") -> CatalogueError:
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue(data, filename)
    return caught.value


def test_parse_catalogue_reads_shared_file(shared: bytes) -> None:
    items = parse_catalogue(shared, "catalogue.csv")
    assert len(items) == 15
    assert Counter(item.kind for item in items) == {
        "promised": 8,
        "immediate": 4,
        "forward": 2,
        "joint": 1,
    }
    by_code = _by_code(items)
    health = by_code["330782-WS-001"]
    assert health == CatalogueItem(
        code="330782-WS-001",
        name="健康证明办理",
        department="卫生健康局",
        kind="promised",
        promised_days=1,
        statutory_days=5,
        fee_fen=4500,
        materials=("身份证", "体检表"),
        accept_tiers=("village", "town", "city"),
        decide_tier="town",
    )
    assert by_code["330782-NY-001"].fee_fen == 1000
    assert by_code["330782-GA-001"].fee_fen == 2000
    assert by_code["330782-JT-001"].accept_tiers == ("town", "city")
    assert by_code["330782-JS-001"].accept_tiers == ("city",)
    assert by_code["330782-MZ-001"].kind == "forward"
    assert by_code["330782-MZ-001"].decide_tier == "town"
    assert by_code["330782-ZJ-001"].decide_tier == "city"
    assert by_code["330782-SW-001"].promised_days == 0


def test_parse_catalogue_accepts_gb18030(shared: bytes) -> None:
    data = shared.decode("utf-8").encode("gb18030")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    assert parse_catalogue(data, "catalogue.csv") == parse_catalogue(shared, "catalogue.csv")


def test_parse_catalogue_accepts_bom(shared: bytes) -> None:
    items = parse_catalogue(b"\xef\xbb\xbf" + shared, "catalogue.csv")
    assert items == parse_catalogue(shared, "catalogue.csv")
    assert items[0].code == "330782-JT-001"


def test_parse_catalogue_reads_file_written_by_excel(tmp_path: Path, shared: bytes) -> None:
    path = tmp_path / "目录.csv"
    text = shared.decode("utf-8").replace("\n", "\r\n")
    path.write_bytes(text.encode("gb18030"))
    assert parse_catalogue(path.read_bytes(), path.name) == parse_catalogue(shared)


def test_parse_catalogue_trims_and_accepts_alternative_spellings() -> None:
    data = _csv(
        " code , name,department,kind,promised_days,accept_tiers,materials ",
        "",
        "  B-1 , 最低生活保障申请 ,民政局, forward ,20, 村；镇 ,申请书； 户口簿;;",
        ",,,,,,",
        "B-2,登记,民政局,Immediate,0,,",
    )
    first, second = parse_catalogue(data)
    assert first.code == "B-1"
    assert first.name == "最低生活保障申请"
    assert first.kind == "forward"
    assert first.accept_tiers == ("village", "town")
    assert first.materials == ("申请书", "户口簿")
    assert first.statutory_days is None
    assert first.fee_fen == 0
    assert second.kind == "immediate"
    assert second.materials == ()


@pytest.mark.parametrize(
    ("kind", "accept", "decide"),
    [
        pytest.param("上报", "village;town", "town", id="forward-above-lowest"),
        pytest.param("上报", "town;city", "city", id="forward-from-town"),
        pytest.param("上报", "", "town", id="forward-all-tiers"),
        pytest.param("承诺", "town;city", "town", id="promised-lowest"),
        pytest.param("联办", "city", "city", id="joint-city-only"),
        pytest.param("即办", "", "village", id="immediate-all-tiers"),
    ],
)
def test_parse_catalogue_defaults_decide_tier(kind: str, accept: str, decide: str) -> None:
    days = "0" if kind == "即办" else "5"
    data = _csv(
        "code,name,department,kind,promised_days,accept_tiers", f"C,n,d,{kind},{days},{accept}"
    )
    (item,) = parse_catalogue(data)
    assert item.decide_tier == decide
    assert item.accept_tiers == (
        tuple(accept.split(";")) if accept else ("village", "town", "city")
    )


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        pytest.param(_csv(HEADER), "catalogue.csv", id="csv-header-only"),
        pytest.param(_csv(HEADER, "", " , ,", ""), "catalogue.csv", id="csv-header-and-blanks"),
        pytest.param(_csv("事项编码\t事项名称\t部门\t办件类型\t承诺时限"), "清单.tsv", id="tsv"),
        pytest.param(b"[]", "c.json", id="json-empty-list"),
        pytest.param(b'{"items": []}', "c.json", id="json-no-items"),
    ],
)
def test_parse_catalogue_refuses_a_file_without_items(
    data: bytes, filename: str, locale: None
) -> None:
    err = _refusal(data, filename)
    assert err.key == "catalogue.no_items"
    i18n.use_locale("en")
    assert str(err) == (
        f"{filename} holds no items (a header alone, or an empty list): there is nothing to publish"
    )
    i18n.use_locale("zh")
    assert str(err).startswith(f"{filename} 没有任何事项")


# The shared catalogue's first items as a 事项清单 names its columns and writes its values.
LIST_ZH = (
    "事项编码,事项名称,实施主体,办件类型,承诺办结时限,法定办结时限,收费标准,申请材料,受理层级,决定层级",
    "330782-JT-001,道路货物运输经营许可,交通运输局,承诺件,10个工作日,20个工作日,不收费,"
    "申请表;营业执照;车辆行驶证;驾驶员从业资格证,镇级、市级,市级",
    "330782-JT-002,出租汽车从业资格证注册,交通运输局,即办件,0,0,0,申请表;从业资格证;身份证,"
    "镇、市,镇级",
    "330782-JT-003,道路运输车辆年审,交通运输局,承诺件,3 个工作日,10,无,车辆行驶证;道路运输证,"
    "村级；镇级；市级,镇",
)


def test_parse_catalogue_reads_a_list_with_chinese_headers(shared: bytes) -> None:
    expected = parse_catalogue(shared, "catalogue.csv")[:3]
    assert parse_catalogue(_csv(*LIST_ZH), "事项清单.csv") == expected
    # the names `catalogue list` prints under zh read back too
    listed = "事项编码,事项名称,部门,类型,承诺时限,法定时限,收费（元）,受理层级,决定层级"
    rows = [row.replace(",申请表;营业执照;车辆行驶证;驾驶员从业资格证", "") for row in LIST_ZH[1:2]]
    (item,) = parse_catalogue(_csv(listed, *rows))
    assert item == dataclasses.replace(expected[0], materials=())


@pytest.mark.parametrize(
    ("header", "row", "column", "problem", "said"),
    [
        pytest.param("事项编码,事项名称,部门,办件类型,承诺时限,收费标准", "A,n,d,承诺件,1,十元",
                     "收费标准", "bad_fee", "'十元' is not an amount in yuan", id="bad-fee"),
        pytest.param("事项编码,事项名称,部门,办件类型", "A,n,d,承诺件", "承诺时限",
                     "missing_column", "required are 事项编码、事项名称、部门、办件类型、承诺时限",
                     id="missing-column"),
        pytest.param("事项编码,事项名,部门,办件类型,承诺时限", "A,n,d,承诺件,1", "事项名",
                     "unknown_column", "use 事项编码、事项名称、部门", id="unknown-column"),
        pytest.param("事项编码,实施编码,事项名称,部门,办件类型,承诺时限", "A,A,n,d,承诺件,1",
                     "实施编码", "duplicate_column", "appears twice", id="one-column-twice"),
        pytest.param("事项编码,事项名称,部门,办件类型,承诺时限", "A,n,d,承诺件,1天", "承诺时限",
                     "bad_days", "'1天' is not a number of working days", id="calendar-days"),
    ],
)  # fmt: skip
def test_parse_catalogue_names_a_chinese_column_as_the_file_does(
    header: str, row: str, column: str, problem: str, said: str, locale: None
) -> None:
    err = _refusal(_csv(header, row), "清单.csv")
    assert err.key == "catalogue." + problem
    assert err.params["column"] == column
    i18n.use_locale("en")
    assert f"column {column}: " in str(err) and said in str(err)


def test_parse_catalogue_reads_tab_separated_text(shared: bytes) -> None:
    expected = parse_catalogue(shared, "catalogue.csv")
    tabbed = shared.decode().replace(",", "\t")
    assert parse_catalogue(tabbed.encode(), "catalogue.txt") == expected  # told by its header
    assert parse_catalogue(tabbed.encode("gb18030"), "目录.tsv") == expected  # Excel's text
    assert parse_catalogue(_csv(*(r.replace(",", "\t") for r in LIST_ZH))) == expected[:3]
    # a comma is then only a character of a value
    (item,) = parse_catalogue(_csv(HEADER.replace(",", "\t"), GOOD_ROW.replace(",", "\t")
                                   .replace("身份证;体检表", "身份证,复印件;体检表")))  # fmt: skip
    assert item.materials == ("身份证,复印件", "体检表")


def test_parse_catalogue_keeps_commas_when_the_header_has_a_tab_inside_a_name() -> None:
    """A CSV is still a CSV when a quoted value holds a tab: the header line decides."""
    (item,) = parse_catalogue(_csv(HEADER, GOOD_ROW.replace("健康证明办理", '"健康\t证明"')))
    assert item.name == "健康\t证明"


MALFORMED = [
    pytest.param(_csv("code,name,department,kind", GOOD_ROW), 1, "promised_days", "missing_column",
                 id="missing-required-column"),
    pytest.param(_csv(HEADER.replace(",fee,", ",fees,"), GOOD_ROW), 1, "fees", "unknown_column",
                 id="unknown-column"),
    pytest.param(_csv(HEADER + ",kind", GOOD_ROW + ",承诺"), 1, "kind", "duplicate_column",
                 id="duplicate-column"),
    pytest.param(_csv(HEADER, GOOD_ROW, "A-2,n,d,承若,1,5,0,,,"), 3, "kind", "bad_kind",
                 id="bad-kind"),
    pytest.param(_csv(HEADER, "A-2,n,d,承诺,-1,5,0,,,"), 2, "promised_days", "bad_days",
                 id="negative-days"),
    pytest.param(_csv(HEADER, "A-2,n,d,承诺,1.5,5,0,,,"), 2, "promised_days", "bad_days",
                 id="fractional-days"),
    pytest.param(_csv(HEADER, "A-2,n,d,承诺,,5,0,,,"), 2, "promised_days", "blank",
                 id="blank-required"),
    pytest.param(_csv(HEADER, "A-2,n,d,即办,3,5,0,,,"), 2, "promised_days", "immediate_days",
                 id="immediate-with-days"),
    pytest.param(_csv(HEADER, "A-2,n,d,承诺,10,5,0,,,"), 2, "statutory_days", "statutory_short",
                 id="statutory-below-promised"),
    pytest.param(_csv(HEADER, "A-2,n,d,承诺,1,5,45.001,,,"), 2, "fee", "bad_fee",
                 id="fee-three-decimals"),
    pytest.param(_csv(HEADER, "A-2,n,d,承诺,1,5,abc,,,"), 2, "fee", "bad_fee", id="fee-abc"),
    pytest.param(_csv(HEADER, "A-2,n,d,承诺,1,5,-3,,,"), 2, "fee", "bad_fee", id="fee-negative"),
    pytest.param(_csv(HEADER, GOOD_ROW, "", GOOD_ROW), 4, "code", "duplicate_code",
                 id="duplicate-code"),
    pytest.param(_csv(HEADER, "A" * 65 + ",n,d,承诺,1,5,0,,,"), 2, "code", "code_too_long",
                 id="code-longer-than-a-case-may-carry"),
    pytest.param(_csv(HEADER, "A-2,n,d,承诺,1,5,0,,town;county,"), 2, "accept_tiers", "bad_tier",
                 id="bad-accept-tier"),
    pytest.param(_csv(HEADER, "A-2,n,d,承诺,1,5,0,,,省"), 2, "decide_tier", "bad_tier",
                 id="bad-decide-tier"),
    pytest.param(_csv(HEADER, "A-2,n,d,承诺,1,5,0,,town;city,village"), 2, "decide_tier",
                 "decide_below", id="decide-below-accepting"),
    pytest.param(_csv(HEADER, "A-2,n,d,上报,1,5,0,,village;town,village"), 2, "decide_tier",
                 "forward_decide", id="forward-decided-at-lowest"),
    pytest.param(_csv(HEADER, "A-2,n,d,上报,1,5,0,,city,"), 2, "accept_tiers",
                 "forward_nowhere", id="forward-city-only"),
    pytest.param(_csv(HEADER, GOOD_ROW + ",extra"), 2, None, "too_many_values",
                 id="too-many-values"),
    pytest.param(b"", None, None, "empty", id="empty-file"),
    pytest.param(b'[\n  {"code": "A"},\n  {"code": ', 3, None, "json_invalid",
                 id="invalid-json"),
    pytest.param(b'[\n{"code": "A", "kind": "promised", "kind": "immediate"}]', None, None,
                 "json_unreadable", id="json-duplicate-key"),
    pytest.param(b'{"rows": []}', None, None, "json_shape", id="json-wrong-shape"),
    pytest.param(b'[\n  {"code": "A-1", "name": "n", "department": "d", "kind": "promised",\n'
                 b'   "promised_days": 1},\n  ["A-2"]\n]', 4, None, "not_object",
                 id="json-item-not-object"),
    pytest.param(b'[{"code": "A-1", "name": "n", "department": "d", "kind": "promised",'
                 b' "promised_days": 1, "fee": 45.001}]', 1, "fee", "bad_fee",
                 id="json-fee-three-decimals"),
    pytest.param(b'[{"code": "A-1", "name": "n", "department": "d", "kind": "promised",'
                 b' "promised_days": true}]', 1, "promised_days", "bad_days",
                 id="json-bool-days"),
    pytest.param(b"\xff\xfec\x00o\x00d\x00e\x00", None, None, "encoding", id="utf-16"),
    pytest.param(b"code,name\n\x81\x20", 2, None, "encoding", id="neither-utf8-nor-gb18030"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "line", "column", "problem"), MALFORMED)
def test_parse_catalogue_refuses_malformed_file(
    data: bytes, line: int | None, column: str | None, problem: str, locale: None
) -> None:
    err = _refusal(data, "c.json" if data.startswith((b"[", b"{")) else "catalogue.csv")
    assert err.key == "catalogue." + problem
    assert err.params["line"] == line
    assert err.params["column"] == column
    for name in ("en", "zh"):
        i18n.use_locale(name)
        assert i18n.has(err.key)
        assert "{" not in str(err).replace('{"items"', "")
        assert "None" not in str(err)


def test_parse_catalogue_names_line_after_blank_lines() -> None:
    err = _refusal(_csv(HEADER, GOOD_ROW, "", " ", "A-2,n,d,承若,1,5,0,,,,"))
    assert err.params["line"] == 5
    assert err.params["column"] == "kind"


def test_parse_catalogue_names_first_line_of_quoted_multiline_record() -> None:
    err = _refusal(_csv(HEADER, GOOD_ROW, 'A-2,n,d,承若,1,5,0,"申请表\n（原件）",,'))
    assert err.params["line"] == 3


def test_parse_catalogue_duplicate_code_names_first_line() -> None:
    err = _refusal(_csv(HEADER, GOOD_ROW, GOOD_ROW))
    assert err.params == {
        "file": "catalogue.csv",
        "line": 3,
        "column": "code",
        "value": "A-1",
        "first": 2,
    }


def test_catalogue_error_renders_english(locale: None) -> None:
    rows = [GOOD_ROW.replace("A-1", f"A-{n}") for n in range(5)]
    err = _refusal(_csv(HEADER, *rows, "A-9,n,d,承若,1,5,0,,,"))
    i18n.use_locale("en")
    assert str(err) == (
        "catalogue.csv line 7, column kind: '承若' is not a kind; "
        "use 即办, 承诺, 上报 or 联办 (immediate, promised, forward, joint)"
    )


def test_catalogue_error_renders_chinese(locale: None) -> None:
    err = _refusal(_csv(HEADER, "A-2,n,d,承诺,1,5,abc,,,"))
    i18n.use_locale("zh")
    assert str(err) == (
        "catalogue.csv 第 2 行 fee 列：“abc”不是以元为单位的金额；"
        "请填写 0 或以上、最多两位小数的数，如 45 或 45.00"
    )


def test_catalogue_item_body_round_trip(shared: bytes) -> None:
    for item in parse_catalogue(shared, "catalogue.csv"):
        body = json.loads(json.dumps(item.to_body(), ensure_ascii=False))
        assert body == item.to_body()
        assert CatalogueItem.from_body(body) == item
        assert not any(isinstance(value, float) for value in body.values())
    assert _by_code(parse_catalogue(shared))["330782-WS-001"].to_body()["fee_fen"] == 4500


@pytest.mark.parametrize(
    "wrapped", [pytest.param(False, id="list"), pytest.param(True, id="items")]
)
def test_parse_catalogue_json_matches_csv(shared: bytes, wrapped: bool) -> None:
    items = parse_catalogue(shared, "catalogue.csv")
    rows: list[dict[str, Any]] = []
    for item in items:
        row = {k: v for k, v in item.to_body().items() if k != "fee_fen"}
        rows.append(row | {"fee": yuan_from_fen(item.fee_fen)})
    rows[0]["fee"] = 12.5  # a JSON number is read as a Decimal, never a float
    doc = {"items": rows} if wrapped else rows
    parsed = parse_catalogue(json.dumps(doc, ensure_ascii=False, indent=2).encode())
    assert parsed[0].fee_fen == 1250
    assert parsed[1:] == items[1:]


def test_parse_catalogue_json_names_item_line() -> None:
    rows = [{"code": f"J-{n}", "name": "n", "department": "d", "kind": "promised",
             "promised_days": 1} for n in range(3)]  # fmt: skip
    rows[2]["kind"] = "承若"
    err = _refusal(json.dumps(rows, ensure_ascii=False, indent=2).encode(), "c.json")
    assert err.params["line"] == 16
    assert err.params["column"] == "kind"
    assert err.params["file"] == "c.json"


@pytest.mark.parametrize(
    ("change", "column", "problem"),
    [
        pytest.param({"fee_fen": 45.0}, "fee_fen", "bad_fen", id="float-fee"),
        pytest.param({"fee_fen": -1}, "fee_fen", "bad_fen", id="negative-fee"),
        pytest.param({"promised_days": "1"}, "promised_days", "bad_days", id="text-days"),
        pytest.param({"promised_days": True}, "promised_days", "bad_days", id="bool-days"),
        pytest.param({"kind": "承诺"}, "kind", "bad_kind", id="chinese-kind"),
        pytest.param({"accept_tiers": ["镇"]}, "accept_tiers", "bad_tier", id="chinese-tier"),
        pytest.param({"accept_tiers": []}, "accept_tiers", "blank", id="no-tiers"),
        pytest.param({"materials": "a;b"}, "materials", "not_list", id="text-materials"),
        pytest.param({"extra": 1}, "extra", "unknown_column", id="unknown-key"),
        pytest.param({"promised_days": 30}, "statutory_days", "statutory_short", id="rules"),
    ],
)
def test_catalogue_item_from_body_refuses_bad_body(
    shared: bytes, change: dict[str, Any], column: str, problem: str
) -> None:
    body = parse_catalogue(shared)[0].to_body() | change
    with pytest.raises(CatalogueError) as caught:
        CatalogueItem.from_body(body)
    assert caught.value.key == "catalogue.entry." + problem
    assert caught.value.params["line"] is None
    assert caught.value.params["column"] == column


def test_catalogue_item_from_body_refuses_missing_key(shared: bytes) -> None:
    body = parse_catalogue(shared)[0].to_body()
    del body["decide_tier"]
    with pytest.raises(CatalogueError) as caught:
        CatalogueItem.from_body(body)
    assert caught.value.params["column"] == "decide_tier"
    assert str(caught.value).startswith("catalogue item 330782-JT-001, field decide_tier")


def test_kind_label_follows_locale(locale: None) -> None:
    i18n.use_locale("zh")
    assert [kind_label(k) for k in ("immediate", "promised", "forward", "joint")] == [
        "即办",
        "承诺",
        "上报",
        "联办",
    ]
    assert tier_label("town") == "镇级"
    i18n.use_locale("en")
    assert kind_label("上报") == "forward"
    assert tier_label("市") == "city"
    with pytest.raises(CatalogueError):
        kind_label("承若")


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        pytest.param("45", 4500, id="whole"),
        pytest.param("45.5", 4550, id="one-decimal"),
        pytest.param("45.00", 4500, id="two-decimals"),
        pytest.param(" 0.01 ", 1, id="one-fen-trimmed"),
        pytest.param("0", 0, id="zero"),
        pytest.param("19.99", 1999, id="not-a-float"),
    ],
)
def test_fen_from_yuan_converts_exactly(text: str, fen: int) -> None:
    assert fen_from_yuan(text) == fen


@pytest.mark.parametrize(
    "text",
    ["-1", "45.001", "abc", "", "1e3", "４５", "1,000", ".5", "45.", "+1", "NaN"],
)
def test_fen_from_yuan_refuses_invalid(text: str) -> None:
    with pytest.raises(CaseError) as caught:
        fen_from_yuan(text)
    assert caught.value.key == "money.invalid"
    assert caught.value.params == {"value": text}
    with pytest.raises(CatalogueError):
        fen_from_yuan(text, error=CatalogueError)


def test_yuan_from_fen_formats_two_decimals() -> None:
    assert yuan_from_fen(4500) == "45.00"
    assert yuan_from_fen(5) == "0.05"
    assert yuan_from_fen(0) == "0.00"
    assert yuan_from_fen(-50) == "-0.50"


@given(st.integers(min_value=0, max_value=10**17 - 1))
def test_fen_from_yuan_round_trips_fen(fen: int) -> None:
    yuan = yuan_from_fen(fen)
    assert fen_from_yuan(yuan) == fen
    assert Decimal(yuan) * 100 == fen


@given(st.from_regex(r"\A[0-9]{1,15}(\.[0-9]{1,2})?\Z"))
def test_fen_from_yuan_round_trips_yuan(text: str) -> None:
    assert Decimal(yuan_from_fen(fen_from_yuan(text))) == Decimal(text)
