"""`zhibao case show` (the clerk's page) and `zhibao case list` (pages, searches, files),
run as the real program on a town whose cases are recorded in process beforehand."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from tests.helpers_cases import CATALOGUE_CSV
from tests.support.servers import ZHIBAO, cli_env
from tiers.cases import service
from tiers.node import open_home

TOWN = "330782001"
LIST_KEYS = {"case_id", "item_code", "status", "holder", "origin", "accepted_at", "deadline",
             "completed_at", "result", "warning", "provisional"}  # fmt: skip
EXTRA = "S9,契税,税务,即办,0,,,,city,city\n"  # an item only the city accepts


def run(home: Path, *args: str, lang: str = "en", lines: int | None = None) -> Any:
    env = cli_env(lang)
    if lines is not None:
        env["LINES"] = str(lines)
    return subprocess.run([ZHIBAO, *args, "--home", str(home)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)  # fmt: skip


def ok(home: Path, *args: str, lang: str = "en", lines: int | None = None) -> str:
    done = run(home, *args, lang=lang, lines=lines)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return str(done.stdout)


def refused(home: Path, *args: str, code: int = 1, lang: str = "en") -> str:
    done = run(home, *args, lang=lang)
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    return str(done.stderr)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A town under a city, holding the A1/B2/C3 catalogue and the city-only S9."""
    base = tmp_path_factory.mktemp("case-view")
    city = base / "city"
    ok(city, "init", "--tier", "city", "--node-id", "330782", "--name", "义乌市")
    root = json.loads(ok(city, "node", "show", "--json"))["public_key"]
    town = base / "town"
    ok(town, "init", "--tier", "town", "--node-id", TOWN, "--name", "稠城街道",
       "--parent", "330782", "--root-key", root)  # fmt: skip
    (base / "catalogue.csv").write_text(CATALOGUE_CSV + EXTRA, "utf-8")
    ok(town, "catalogue", "import", str(base / "catalogue.csv"))
    return town


@pytest.fixture
def town(template: Path, tmp_path: Path) -> Path:
    home = tmp_path / "town"
    shutil.copytree(template, home)
    return home


def _record(home: Path, work: Any) -> Any:
    node = open_home(home)
    try:
        return work(node)
    finally:
        node.close()


def _people(home: Path, count: int) -> list[str]:
    """`count` A1 cases received on successive days from 1 September 2025 (newest last)."""

    def work(node: Any) -> list[str]:
        return [
            service.receive(
                node,
                "A1",
                service.Applicant(f"村民{n}", None, f"1380000{n:04d}"),
                at=f"2025-09-{n + 1:02d}T09:00",
            )
            for n in range(count)
        ]

    made: list[str] = _record(home, work)
    return made


# --- case list ----------------------------------------------------------------------------


def test_case_list_shows_a_screenful_and_counts_the_rest(town: Path) -> None:
    made = _people(town, 12)
    text = ok(town, "case", "list", lines=10)  # room for 5 rows
    shown = [line.split()[0] for line in text.splitlines()[2:7]]
    assert shown == list(reversed(made))[:5]
    assert text.splitlines()[7] == (
        "… and 7 more cases: --offset 5 shows the next ones, --limit N more at once."
    )
    assert len(text.splitlines()) == 8
    last = ok(town, "case", "list", "--limit", "5", "--offset", "6")
    assert last.splitlines()[-1] == "… and 1 more case: --offset 11 shows it."
    zh = ok(town, "case", "list", "--limit", "5", "--offset", "6", lang="zh")
    assert zh.splitlines()[-1] == "……还有 1 件：用 --offset 11 查看。"
    assert ok(town, "case", "list", "--offset", "20") == "No cases past the first 20 (12 match).\n"
    assert ok(town, "case", "list", "--limit", "0") == "12 cases match.\n"
    assert ok(town, "case", "list", "--limit", "0", "--phone", "0003") == "1 case matches.\n"


def test_case_list_json_keeps_its_shape_and_lists_every_case(town: Path) -> None:
    made = _people(town, 30)
    listed = json.loads(ok(town, "case", "list", "--json", lines=10))
    assert isinstance(listed, list) and [r["case_id"] for r in listed] == list(reversed(made))
    for row in listed:
        assert set(row) >= LIST_KEYS
    paged = json.loads(ok(town, "case", "list", "--json", "--limit", "2", "--offset", "1"))
    assert [r["case_id"] for r in paged] == list(reversed(made))[1:3]


def test_case_list_searches_reach_the_query(town: Path) -> None:
    def work(node: Any) -> dict[str, str]:
        who = service.Applicant
        return {
            "wang": service.accept(node, item_code="A1", at="2025-10-09T09:00",
                                   applicant=who("王秀英", "330782196211197795", "13857901234")),
            "li": service.receive(node, "C3", who("李四", None, "057985123456"),
                                  at="2025-10-10T09:00"),
        }  # fmt: skip

    ids = _record(town, work)

    def found(*args: str) -> list[str]:
        return [r["case_id"] for r in json.loads(ok(town, "case", "list", "--json", *args))]

    assert found("--applicant", "秀") == [ids["wang"]]
    assert found("--id-no", "330782196211197795") == [ids["wang"]]
    assert found("--phone", "3456") == [ids["li"]]
    assert found("--item", "证明") == [ids["li"]]  # C3's name
    assert found("--node", TOWN) == [ids["li"], ids["wang"]]
    assert found("--since", "2025-10-10") == [ids["li"]]
    assert found("--until", "2025-10-09") == [ids["wang"]]
    assert found("--status", "accepted", "--warning", "red") == [ids["wang"]]
    assert found("--applicant", "王", "--item", "C3") == []


def test_case_list_says_what_matched_nothing(town: Path) -> None:
    assert ok(town, "case", "list") == "No cases.\n"
    assert ok(town, "case", "list", "--applicant", "钱", "--since", "2025-10-01") == (
        "No cases match --applicant 钱 --since 2025-10-01.\n"
    )
    assert ok(town, "case", "list", "--warning", "red", lang="zh") == (
        "没有符合 --warning red 的办件。\n"
    )


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        pytest.param(("--since", "2025-13-01"), 2, "--since", id="bad-date"),
        pytest.param(("--limit", "-1"), 2, "--limit", id="negative-limit"),
        pytest.param(("--node", "33078x"), 1, "not a node id", id="bad-node"),
        pytest.param(
            ("--since", "2025-10-02", "--until", "2025-10-01"), 1, "comes after", id="empty-span"
        ),
        pytest.param(("--format", "xlsx"), 1, "give --out FILE", id="xlsx-to-terminal"),
    ],
)
def test_case_list_refuses_bad_searches(
    town: Path, args: tuple[str, ...], code: int, says: str
) -> None:
    message = refused(town, "case", "list", *args, code=code)
    assert says in message
    if code == 1:
        assert message.startswith("zhibao: ") and message.count("\n") == 1


def test_case_list_exports_csv_xlsx_and_json_files(town: Path, tmp_path: Path) -> None:
    made = _people(town, 3)
    out = tmp_path / "overdue.csv"
    done = run(town, "case", "list", "--out", str(out))  # the format from the extension
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr == f"Wrote 3 cases to {out}.\n"
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(data[3:].decode("utf-8"), newline="")))
    assert [r["case_id"] for r in rows] == list(reversed(made))
    assert rows[0]["applicant"] == "村民2" and rows[0]["phone"] == "13800000002"
    assert rows[0]["status"] == "received" and rows[0]["item_name"] == "居住证"
    printed = ok(town, "case", "list", "--format", "csv", "--limit", "1")
    assert printed.count("\n") == 2  # the header and one case (CRLF, read as text)
    book = tmp_path / "逾期.xlsx"
    done = run(town, "case", "list", "--out", str(book), "--limit", "1", lang="zh")
    assert done.returncode == 0 and done.stderr == f"已将 1 件写入 {book}。\n"
    sheet = openpyxl.load_workbook(book).active
    assert sheet is not None and sheet.title == "办件"
    header, first = [[c.value for c in row] for row in sheet.iter_rows(max_row=2)]
    assert header[:4] == ["办件编号", "事项编码", "事项名称", "状态"]
    assert first[0] == made[-1] and first[3] == "已收件"
    assert first[8] == "2025-09-03 09:00"
    as_json = tmp_path / "cases.json"
    ok_done = run(town, "case", "list", "--out", str(as_json))
    assert ok_done.returncode == 0
    assert [r["case_id"] for r in json.loads(as_json.read_text("utf-8"))] == list(reversed(made))
    text = tmp_path / "cases.txt"  # no format of its own: the table, every case, tab-separated
    assert run(town, "case", "list", "--out", str(text)).returncode == 0
    lines = text.read_text("utf-8").splitlines()
    assert lines[0].split("\t")[:3] == ["case", "item code", "item"]
    assert [line.split("\t")[0] for line in lines[1:]] == list(reversed(made))


def test_case_list_xlsx_without_out_writes_nothing(town: Path, tmp_path: Path) -> None:
    _people(town, 1)
    assert "give --out FILE" in refused(town, "case", "list", "--format", "xlsx")
    missing = tmp_path / "nowhere" / "x.csv"
    assert "cannot write" in refused(town, "case", "list", "--out", str(missing))
    assert not missing.parent.exists()
    odd = tmp_path / "cases.dat"  # the same rule as `stats --out`: a name that says no format
    assert "Cannot tell the format from the name cases.dat" in refused(
        town, "case", "list", "--out", str(odd)
    )
    assert not odd.exists()


def test_case_list_out_with_an_unknown_suffix_is_refused_as_stats_does(
    town: Path, tmp_path: Path
) -> None:
    # a tab-separated table in a file named .xls (or a typo, .cvs) is what #13 removed from
    # `stats --out`: `case list --out` follows the same rule and writes nothing
    _people(town, 1)
    for name in ("overdue.xls", "overdue.cvs"):
        out = tmp_path / name
        said = refused(town, "case", "list", "--out", str(out))
        assert f"Cannot tell the format from the name {name}" in said
        assert not out.exists()
    given = run(town, "case", "list", "--out", str(tmp_path / "x.xls"), "--format", "csv")
    assert given.returncode == 0 and (tmp_path / "x.xls").read_bytes().startswith(b"\xef\xbb\xbf")


# --- case show ----------------------------------------------------------------------------


def _whole_story(town: Path) -> tuple[str, str, str]:
    """A case through 补正, 特别程序, fee, completion, delivery and rating; one rejected;
    one forwarded up to the city and not yet taken."""

    def work(node: Any) -> tuple[str, str, str]:
        who = service.Applicant("张三", "330782199001011234", "13800000000")
        cid = service.accept(node, item_code="A1", applicant=who, materials=["身份证"],
                             at="2025-09-29T10:00")  # fmt: skip
        service.request_supplement(node, cid, ["近期免冠照片", "居住证明（原件）"],
                                   at="2025-09-30T09:00")  # fmt: skip
        service.supply(node, cid, at="2025-10-09T09:00")
        service.suspend(node, cid, "实地勘察", at="2025-10-09T10:00")
        service.resume(node, cid, at="2025-10-10T09:00")
        service.assess_fee(node, cid, "10.50", at="2025-10-10T11:00")
        service.pay(node, cid, "R-0001", at="2025-10-10T11:30")
        service.complete(node, cid, "approved", "准予登记，证件可领取", at="2025-10-13T15:00")
        service.deliver(node, cid, "mail", at="2025-10-14T09:00")
        service.rate(node, cid, 2, "办事快", at="2025-10-14T10:00", channel="pad")
        no = service.receive(node, "A1", service.Applicant("李四"), at="2025-10-09T09:00")
        service.reject(node, no, "不属于本镇受理范围", at="2025-10-09T10:00")
        up = service.receive(node, "A1", service.Applicant("王五"), at="2025-10-09T11:00")
        service.forward(node, up, "330782", "请市局审批", at="2025-10-09T12:00")
        return cid, no, up

    made: tuple[str, str, str] = _record(town, work)
    return made


def test_case_show_prints_every_detail_a_clerk_needs(town: Path) -> None:
    cid, no, _up = _whole_story(town)
    page = ok(town, "case", "show", cid)
    lines = page.splitlines()
    assert lines[0] == f"Case {cid}"
    for label, value in [
        ("phone", "13800000000"), ("ID number", "330782199001011234"),
        ("materials handed in", "身份证"), ("result", "approved"),
        ("result note", "准予登记，证件可领取"), ("delivery method", "by mail"),
        ("fee (yuan)", "10.50"), ("payment receipt", "R-0001"), ("rating", "2 (satisfied)"),
        ("rating comment", "办事快"), ("rated through", "rating pad"),
        ("time limit", "5 working days"), ("accepted", "2025-09-29 10:00"),
        ("holder", f"{TOWN} 稠城街道"),  # with the node's name
    ]:  # fmt: skip
        assert any(line.startswith(label + "  ") and line.endswith("  " + value)
                   for line in lines), (label, value, page)  # fmt: skip
    # the 一次性告知 list on its own, numbered, and when it was answered
    start = lines.index(
        f"One-time notice of what is missing (一次性告知), 2025-09-30 09:00, by {TOWN}:"
    )
    assert lines[start + 1 : start + 4] == [
        "  1. 近期免冠照片", "  2. 居住证明（原件）", "  Supplied 2025-10-09 09:00.",
    ]  # fmt: skip
    events = lines[lines.index("Events:") + 3 :]
    notes = {line.split("  ")[0]: line for line in events}
    assert len(events) == 11
    for said in ("materials: 身份证", "promised 5 working days", "2 items missing",
                 "实地勘察", "10.50 yuan", "receipt R-0001", "approved; 准予登记",
                 "by mail", "2 (satisfied); through rating pad; 办事快"):  # fmt: skip
        assert any(said in line for line in events), (said, events)
    assert notes  # every event line carries its node, seq and time
    rejected = ok(town, "case", "show", no)
    assert any(line.startswith("reason  ") and line.endswith("  不属于本镇受理范围")
               for line in rejected.splitlines())  # fmt: skip
    zh = ok(town, "case", "show", cid, lang="zh")
    assert "一次性告知补正（2025-09-30 09:00，330782001）：" in zh
    assert "  1. 近期免冠照片" in zh and "送达方式    邮寄送达" in zh
    assert "缴费票据号  R-0001" in zh and "评价意见    办事快" in zh
    assert "  受理            承诺时限 5 个工作日" in zh  # the event's note, not "承诺5 个工作日"


def test_case_show_lists_only_what_this_node_may_record(town: Path) -> None:
    _cid, _no, up = _whole_story(town)
    page = ok(town, "case", "show", up)
    (line,) = [line for line in page.splitlines() if line.startswith("allowed here now")]
    assert line.endswith("  withdraw")  # "accept" is the city's, which it went to
    assert json.loads(ok(town, "case", "show", up, "--json"))["allowed"] == ["accept", "withdraw"]
    assert any(line.startswith("status  ") and line.endswith("  in transit (to 330782)")
               for line in page.splitlines())  # fmt: skip


def test_case_accept_of_an_item_for_another_tier_names_no_placeholder(town: Path) -> None:
    message = refused(town, "case", "accept", "--item", "S9", "--applicant", "赵六", lang="zh")
    assert message.startswith("zhibao: 事项 S9 由") and message.count("\n") == 1
    assert message.endswith("不能受理：请申请人到受理层级办理。\n") and "办件 -" not in message
    english = refused(town, "case", "accept", "--item", "S9", "--applicant", "赵六")
    assert "applicant applies there" in english and " -" not in english
