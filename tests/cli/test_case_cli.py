"""`zhibao case …` (DESIGN §7), run as the real program in temporary town homes."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.helpers_cases import CATALOGUE_CSV
from tests.support.servers import zhibao

TOWN = "330782001"
SHOW_KEYS = {
    "case_id", "item_code", "status", "holder", "origin", "accepted_at", "deadline",
    "completed_at", "result", "events", "warning", "provisional", "provisional_note",
}  # fmt: skip
EVENT_KEYS = {"type", "node_id", "at", "seq"}
LIST_KEYS = {"case_id", "item_code", "status", "holder", "origin", "accepted_at", "deadline",
             "completed_at", "result", "warning", "provisional"}  # fmt: skip
CASE_ID = re.compile(rf"^{TOWN}-\d{{8}}-\d{{4}}$")


def ok(home: Path, *args: str, lang: str = "en") -> str:
    done = zhibao(home, *args, lang=lang)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def ok_json(home: Path, *args: str) -> Any:
    return json.loads(ok(home, *args, "--json"))


def case(home: Path, *args: str) -> str:
    """Run a recording case command; it prints the case id alone."""
    out = ok(home, "case", *args).strip()
    assert CASE_ID.match(out), out
    return out


def entry_count(home: Path) -> int:
    return len(ok_json(home, "log", "show"))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A town (under a city whose key it pins) holding the A1/B2/C3 catalogue."""
    base = tmp_path_factory.mktemp("case-cli")
    city = base / "city"
    ok(city, "init", "--tier", "city", "--node-id", "330782", "--name", "义乌市")
    root = ok_json(city, "node", "show")["public_key"]
    town = base / "town"
    ok(town, "init", "--tier", "town", "--node-id", TOWN, "--name", "稠城街道",
       "--parent", "330782", "--root-key", root)  # fmt: skip
    (base / "catalogue.csv").write_text(CATALOGUE_CSV, "utf-8")
    ok(town, "catalogue", "import", str(base / "catalogue.csv"))
    return town


@pytest.fixture
def town(template: Path, tmp_path: Path) -> Path:
    home = tmp_path / "town"
    shutil.copytree(template, home)
    return home


def test_case_cli_whole_lifecycle(town: Path) -> None:
    cid = case(town, "accept", "--item", "A1", "--applicant", "张三", "--id-no",
               "330782199001011234", "--phone", "13800000000", "--material", "身份证",
               "--at", "2025-09-29T10:00")  # fmt: skip
    assert cid == f"{TOWN}-20250929-0001"
    steps = [
        ("request-supplement", cid, "--missing", "照片", "--missing", "居住证明",
         "--at", "2025-09-30T09:00"),
        ("supply", cid, "--at", "2025-10-09T09:00"),
        ("suspend", cid, "--reason", "实地勘察", "--at", "2025-10-09T10:00"),
        ("resume", cid, "--at", "2025-10-10T09:00"),
        ("extend", cid, "--days", "2", "--reason", "情况复杂", "--approved-by", "局长",
         "--at", "2025-10-10T10:00"),
        ("fee", cid, "--amount", "10.50", "--at", "2025-10-10T11:00"),
        ("pay", cid, "--receipt", "R-0001", "--at", "2025-10-10T11:30"),
        ("complete", cid, "--result", "approved", "--note", "准予", "--at", "2025-10-16T15:00"),
        ("deliver", cid, "--method", "sms", "--at", "2025-10-17T09:00"),
    ]  # fmt: skip
    for step in steps:
        assert case(town, *step) == cid
    rated = ok_json(town, "case", "rate", cid, "--score", "1", "--comment", "满意",
                    "--at", "2025-10-17T10:00")  # fmt: skip
    shown = ok_json(town, "case", "show", cid)
    assert rated == shown
    assert set(shown) >= SHOW_KEYS
    assert {k: shown[k] for k in ("case_id", "item_code", "status", "holder", "origin",
                                  "accepted_at", "deadline", "completed_at", "result")} == {
        "case_id": cid, "item_code": "A1", "status": "delivered", "holder": TOWN,
        "origin": TOWN, "accepted_at": "2025-09-29T10:00:00+08:00",
        # 5 days + 2 extended, from 09-29; National Day, the supplement (09-30 → 10-09)
        # and the special procedure (10-09 → 10-10) not counted.
        "deadline": "2025-10-17", "completed_at": "2025-10-16T15:00:00+08:00",
        "result": "approved",
    }  # fmt: skip
    assert (shown["fee_fen"], shown["fee"], shown["paid"]) == (1050, "10.50", True)
    assert (shown["rating"], shown["comment"]) == (1, "满意")
    assert shown["applicant"] == {"name": "张三", "id_no": "330782199001011234",
                                  "phone": "13800000000"}  # fmt: skip
    assert shown["warning"] is None
    assert shown["provisional"] is False
    assert shown["provisional_note"] is None
    for event in shown["events"]:
        assert set(event) >= EVENT_KEYS
        assert event["node_id"] == TOWN
    assert [e["type"] for e in shown["events"]] == [
        "case.received", "case.accepted", "case.supplement_requested", "case.supplied",
        "case.suspended", "case.resumed", "case.extended", "case.fee_assessed",
        "case.fee_paid", "case.completed", "case.delivered", "case.rated",
    ]  # fmt: skip
    seqs = [e["seq"] for e in shown["events"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert shown["events"][-1]["at"] == "2025-10-17T10:00:00+08:00"


def test_case_cli_receive_accept_reject_withdraw(town: Path) -> None:
    first = case(town, "receive", "--item", "A1", "--applicant", "李四", "--material", "身份证",
                 "--material", "照片", "--at", "2025-10-09T09:00")  # fmt: skip
    second = case(town, "receive", "--item", "B2", "--applicant", "王五", "--at",
                  "2025-10-09T09:30")  # fmt: skip
    third = case(town, "receive", "--item", "C3", "--applicant", "赵六", "--at",
                 "2025-10-09T10:00")  # fmt: skip
    assert [first, second, third] == [f"{TOWN}-20251009-000{n}" for n in (1, 2, 3)]
    received = ok_json(town, "case", "show", first)
    assert received["status"] == "received"
    assert received["materials"] == ["身份证", "照片"]
    assert received["accepted_at"] is None and received["deadline"] is None
    case(town, "accept", first, "--at", "2025-10-09T11:00")
    case(town, "reject", second, "--reason", "不属于本镇受理范围", "--at", "2025-10-09T11:00")
    case(town, "withdraw", third, "--at", "2025-10-09T11:00")
    statuses = {c["case_id"]: c["status"] for c in ok_json(town, "case", "list")}
    assert statuses == {first: "accepted", second: "rejected", third: "withdrawn"}
    assert ok_json(town, "case", "show", first)["deadline"] == "2025-10-15"


def test_case_cli_forward_defaults_to_parent(town: Path) -> None:
    cid = case(town, "receive", "--item", "A1", "--applicant", "钱七", "--at", "2025-10-09")
    case(town, "forward", cid, "--note", "请市局决定", "--at", "2025-10-09T15:00")
    shown = ok_json(town, "case", "show", cid)
    assert (shown["status"], shown["holder"], shown["forward_to"]) == (
        "in_transit", TOWN, "330782"
    )  # fmt: skip
    assert shown["events"][-1]["body"]["note"] == "请市局决定"
    other = case(town, "receive", "--item", "A1", "--applicant", "孙八", "--at", "2025-10-09")
    out = ok_json(town, "case", "forward", other, "--to", "330782", "--at", "2025-10-09T16:00")
    assert out["status"] == "in_transit"
    # Until the city takes it, the case is still the town's: only withdraw remains here.
    assert shown["allowed"] == ["accept", "withdraw"]
    refused = zhibao(town, "case", "accept", cid, "--at", "2025-10-10")
    assert refused.returncode == 1
    assert "forwarded to 330782" in refused.stderr


def test_case_cli_illegal_transition_exit_1_nothing_appended(town: Path) -> None:
    cid = case(town, "receive", "--item", "A1", "--applicant", "周九", "--at", "2025-10-09")
    before = entry_count(town)
    done = zhibao(town, "case", "complete", cid, "--result", "approved", "--at", "2025-10-10")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
    assert done.stderr == (
        f"zhibao: Case {cid} is received; complete is not allowed. "
        "Allowed now: accept, reject, request-supplement, forward, withdraw.\n"
    )
    assert entry_count(town) == before
    for args in (
        ("rate", cid, "--score", "1"),
        ("deliver", cid),
        ("pay", cid, "--receipt", "R1"),
        ("accept", "330782001-20251009-0099"),
        ("fee", cid, "--amount", "1.005"),
    ):
        done = zhibao(town, "case", *args, "--at", "2025-10-10")
        assert done.returncode == 1, args
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, args
    assert entry_count(town) == before


def test_case_cli_usage_errors_exit_2(town: Path) -> None:
    cid = case(town, "receive", "--item", "A1", "--applicant", "吴十", "--at", "2025-10-09")
    for args in (
        ("rate", cid, "--score", "6"),
        ("complete", cid, "--result", "maybe"),
        ("extend", cid, "--days", "0", "--reason", "x", "--approved-by", "y"),
        ("accept",),
        ("list", "--warning", "green"),
    ):
        assert zhibao(town, "case", *args).returncode == 2, args


def test_case_cli_chinese(town: Path) -> None:
    cid = case(town, "accept", "--item", "A1", "--applicant", "郑十一", "--at", "2025-10-09")
    done = zhibao(town, "case", "rate", cid, "--score", "1", lang="zh")
    assert done.returncode == 1
    assert done.stderr == (
        f"zhibao: 办件 {cid} 当前为“已受理”，不能执行 rate。现在可以：一次性告知补正"
        "（request-supplement）、启动特别程序（suspend）、延长时限（extend）、上报（forward）、"
        "办结（complete）、核定收费（fee）、撤回（withdraw）。\n"
    )
    shown = ok(town, "case", "show", cid, lang="zh")
    assert "状态" in shown and "已受理" in shown and "办结期限" in shown
    assert "2025-10-15" in shown
    listed = ok(town, "case", "list", lang="zh")
    assert "办件编号" in listed and "红灯（超期）" in listed


def test_case_cli_list_json_with_warnings(town: Path) -> None:
    overdue = case(town, "accept", "--item", "A1", "--applicant", "甲", "--at", "2025-10-09")
    due_today = case(town, "accept", "--item", "C3", "--applicant", "乙")  # 即办, accepted now
    # --at may not lie in the future (DESIGN §8): a deadline some 1000 working days away
    # falls in a year no calendar is published for yet
    long = town.parent / "long.csv"
    long.write_text("code,name,department,kind,promised_days\nL9,长期,x,承诺,1000\n", "utf-8")
    ok(town, "catalogue", "import", str(long))
    future = case(town, "accept", "--item", "L9", "--applicant", "丙")
    done = case(town, "accept", "--item", "C3", "--applicant", "丁", "--at", "2025-10-09")
    case(town, "complete", done, "--result", "denied", "--at", "2025-10-09T17:00")
    listed = ok_json(town, "case", "list")
    assert isinstance(listed, list) and len(listed) == 4
    for row in listed:
        assert set(row) >= LIST_KEYS
    by_id = {row["case_id"]: row for row in listed}
    assert by_id[overdue]["warning"] == "red"
    assert by_id[due_today]["warning"] == "yellow"
    assert by_id[future]["warning"] is None
    assert by_id[future]["provisional"] is True  # nobody knows that year's calendar
    # completed and never delivered: ten working days are long over (行政许可法 第四十四条)
    assert by_id[done]["warning"] == "undelivered"
    assert [r["case_id"] for r in ok_json(town, "case", "list", "--warning", "red")] == [overdue]
    assert [r["case_id"] for r in ok_json(town, "case", "list", "--warning", "yellow")] == [
        due_today
    ]
    assert [r["case_id"] for r in ok_json(town, "case", "list", "--status", "completed")] == [done]
    shown = ok_json(town, "case", "show", future)
    assert shown["provisional"] is True
    assert str(shown["provisional_years"][-1]) in shown["provisional_note"]


def test_case_cli_unknown_item_and_case(town: Path) -> None:
    before = entry_count(town)
    done = zhibao(town, "case", "receive", "--item", "ZZ", "--applicant", "x")
    assert done.returncode == 1 and "No catalogue item ZZ" in done.stderr
    done = zhibao(town, "case", "show", "330782001-20251009-0042")
    assert done.returncode == 1 and "No case 330782001-20251009-0042" in done.stderr
    assert entry_count(town) == before


@pytest.mark.slow
def test_case_cli_forward_then_accept_takes_custody_across_nodes(tmp_path: Path) -> None:
    """A village forwards on a bundle; the town's `case accept` takes and accepts it."""
    city, town, village = tmp_path / "city", tmp_path / "town", tmp_path / "village"
    root = ok_json(city, "init", "--tier", "city", "--node-id", "330782", "--name", "市")
    nodes = {}
    for home, tier, node_id, parent in ((town, "town", TOWN, "330782"),
                                        (village, "village", f"{TOWN}201", TOWN)):  # fmt: skip
        key = root["public_key"]
        nodes[tier] = ok_json(home, "init", "--tier", tier, "--node-id", node_id, "--name",
                              tier, "--parent", parent, "--root-key", key)  # fmt: skip
    for parent, child in ((city, nodes["town"]), (town, nodes["village"])):
        ok(parent, "node", "enroll", "--node-id", child["node_id"], "--name", child["name"],
           "--public-key", child["public_key"], "--seal-key", child["seal_key"])  # fmt: skip
    (tmp_path / "catalogue.csv").write_text(CATALOGUE_CSV, "utf-8")
    ok(city, "catalogue", "import", str(tmp_path / "catalogue.csv"))

    def carry(src: Path, dst: Path, to: str) -> None:
        stick = tmp_path / f"{src.name}-{dst.name}.zb"
        stick.unlink(missing_ok=True)
        ok(src, "bundle", "export", "--to", to, "--out", str(stick))
        ok(dst, "bundle", "import", str(stick))

    carry(city, town, TOWN)
    carry(town, village, f"{TOWN}201")
    cid = ok(village, "case", "receive", "--item", "B2", "--applicant", "李四",
             "--at", "2025-09-26T09:30").strip()  # fmt: skip
    ok(village, "case", "forward", cid, "--at", "2025-09-26T16:00")
    carry(village, town, TOWN)
    assert ok_json(town, "case", "show", cid)["status"] == "in_transit"
    taken = ok_json(town, "case", "accept", cid, "--at", "2025-09-29T10:00")
    assert (taken["status"], taken["holder"], taken["origin"]) == ("accepted", TOWN, f"{TOWN}201")
    assert [e["type"] for e in taken["events"]] == [
        "case.received", "case.forwarded", "case.taken", "case.accepted"
    ]  # fmt: skip
    assert taken["deadline"] == "2025-10-20"  # 10 working days across National Day
    carry(town, village, f"{TOWN}201")
    seen = ok_json(village, "case", "show", cid)
    assert (seen["status"], seen["holder"]) == ("accepted", TOWN)
    done = zhibao(village, "case", "withdraw", cid, "--at", "2025-09-30")
    assert done.returncode == 1 and f"held by {TOWN}" in done.stderr
