"""`zhibao complaint …` (DESIGN §8) and the 好差评 commands `case rate --channel`,
`case rectify`, `case rectifications`, run as the real program in a town's home."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.cli.test_case_cli import case, entry_count, ok, ok_json
from tests.helpers_cases import CATALOGUE_CSV
from tests.support.servers import zhibao

TOWN = "330782001"
COMPLAINT_ID = re.compile(rf"^{TOWN}-C\d{{8}}-\d{{4}}$")
SHOW_KEYS = {
    "complaint_id", "filed_by", "about", "case_id", "department", "subject", "text", "days",
    "filed_at", "status", "deadline", "provisional", "remaining_days", "warning", "on_time",
    "replies", "closed_at", "closed_by", "note", "violations",
}  # fmt: skip
LIST_KEYS = SHOW_KEYS - {"text", "replies", "closed_by", "note", "violations"} | {"replies"}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("complaint-cli")
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


def complaint(home: Path, *args: str) -> str:
    out = ok(home, "complaint", *args).strip()
    assert COMPLAINT_ID.match(out), out
    return out


def failed(home: Path, *args: str, code: int = 1) -> str:
    """A refusal: exit `code`, one line on stderr (exit 1: `zhibao: …`), nothing appended."""
    before = entry_count(home)
    done = zhibao(home, *args)
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    if code == 1:
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("zhibao: "), done.stderr
    assert entry_count(home) == before
    return done.stderr


def test_complaint_cli_file_reply_close_list(town: Path) -> None:
    cid = case(town, "accept", "--item", "A1", "--applicant", "张三", "--at", "2025-10-09T09:00")
    first = complaint(town, "file", "--case", cid, "--text", "办理太慢", "--at", "2025-10-09T10:00")
    assert first == f"{TOWN}-C20251009-0001"
    shown = ok_json(town, "complaint", "file", "--department", "民政", "--text", "窗口推诿",
                    "--at", "2025-10-09T11:00")  # fmt: skip
    assert set(shown) >= SHOW_KEYS
    assert (shown["complaint_id"], shown["about"], shown["subject"]) == (
        f"{TOWN}-C20251009-0002", "department", TOWN,
    )  # fmt: skip
    assert (shown["days"], shown["deadline"]) == (5, "2025-10-15")  # 10-11 is worked
    assert complaint(town, "reply", first, "--text", "已催办", "--at", "2025-10-10T09:00") == first
    assert complaint(town, "close", first, "--note", "已办结", "--at", "2025-10-10T10:00") == first
    listed = ok_json(town, "complaint", "list")
    assert [c["complaint_id"] for c in listed] == [shown["complaint_id"], first]
    assert all(set(c) >= LIST_KEYS for c in listed)
    assert [c["complaint_id"] for c in ok_json(town, "complaint", "list", "--open")] == [
        shown["complaint_id"]
    ]
    assert ok_json(town, "complaint", "list", "--warning", "red")[0]["warning"] == "red"
    text = ok(town, "complaint", "show", first)
    assert "on time" in text and "已催办" in text
    assert "按时办结" in ok(town, "complaint", "show", first, lang="zh")
    assert "红灯" in ok(town, "complaint", "list", lang="zh")


def test_complaint_cli_refusals(town: Path) -> None:
    cid = complaint(town, "file", "--node", TOWN, "--text", "态度差", "--at", "2025-10-09T10:00")
    ok(town, "complaint", "close", cid, "--at", "2025-10-10T10:00")
    assert "closed" in failed(town, "complaint", "close", cid)
    assert "closed" in failed(town, "complaint", "reply", cid, "--text", "x")
    failed(town, "complaint", "reply", f"{TOWN}-C20251009-0099", "--text", "x")
    failed(town, "complaint", "file", "--node", "330782002", "--text", "兄弟镇")
    failed(town, "complaint", "file", "--department", "不存在", "--text", "x")
    failed(town, "complaint", "file", "--text", "x", code=2)
    failed(town, "complaint", "file", "--node", TOWN, "--case", cid, "--text", "x", code=2)
    failed(town, "complaint", "file", "--node", TOWN, code=2)
    assert "窗口" not in failed(town, "complaint", "list", "--warning", "blue", code=2)


def test_case_cli_rate_rejected_with_channel_and_rectify(town: Path) -> None:
    cid = case(town, "receive", "--item", "A1", "--applicant", "张三", "--at", "2025-10-09T09:00")
    case(town, "reject", cid, "--reason", "不属于受理范围", "--at", "2025-10-09T09:30")
    shown = ok_json(town, "case", "rate", cid, "--score", "5", "--channel", "pad",
                    "--at", "2025-10-09T09:40")  # fmt: skip
    assert (shown["rating"], shown["rating_channel"]) == (5, "pad")
    assert shown["rectification"]["due"] == "2025-10-29" and shown["allowed"] == ["rectify"]
    assert "Rectification (bad rating 5): open since 2025-10-09, due 2025-10-29" in ok(
        town, "case", "show", cid
    )
    listed = ok_json(town, "case", "rectifications", "--open")
    assert [(r["case_id"], r["channel"], r["status"]) for r in listed] == [(cid, "pad", "open")]
    failed(town, "case", "rate", cid, "--score", "1", "--channel", "fax", code=2)
    failed(town, "case", "rectify", cid, code=2)  # the note is required
    assert case(town, "rectify", cid, "--note", "已回访并致歉", "--at", "2025-10-10T09:00") == cid
    assert ok_json(town, "case", "rectifications", "--open") == []
    assert "差评整改" in ok(town, "case", "show", cid, lang="zh")
    failed(town, "case", "rectify", cid, "--note", "再来一次")
