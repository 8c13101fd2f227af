"""The legal guards at the command line: one clear line in English and Chinese, exit 1,
nothing appended (the real program, in a town home copied per test)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from sync.clock import ZONE
from tests.cli.test_case_cli import case, entry_count, ok, ok_json, template, town  # noqa: F401
from tests.support.servers import zhibao


def refused(home: Path, *args: str, lang: str = "en") -> str:
    """The command is refused: exit 1, one line on stderr, and nothing appended."""
    before = entry_count(home)
    done = zhibao(home, *args, lang=lang)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.startswith("zhibao: ") and done.stderr.count("\n") == 1, done.stderr
    assert entry_count(home) == before
    return done.stderr


def test_guards_cli_at_in_the_future_or_before_the_floor(town: Path) -> None:  # noqa: F811
    # DESIGN §8: not beyond the clock tolerance (10 minutes), not before the floor
    ahead = (datetime.now(ZONE) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    said = refused(town, "case", "receive", "--item", "A1", "--applicant", "甲", "--at", ahead)
    assert "in the future" in said and "10 minutes" in said
    said = refused(town, "case", "receive", "--item", "A1", "--applicant", "甲",
                   "--at", "2003-05-01", lang="zh")  # fmt: skip
    assert "最早日期" in said and "at_floor_years" in said
    said = refused(town, "case", "receive", "--item", "A1", "--applicant", "甲",
                   "--at", "2025-10-09T14:30+08:05:43")  # fmt: skip
    assert "+08:05:43" in said and "whole minutes" in said
    # the same rule for every command that takes --at: the catalogue too
    csv = town.parent / "more.csv"
    csv.write_text("code,name,department,kind,promised_days\nE5,x,y,承诺,3\n", "utf-8")
    assert "in the future" in refused(town, "catalogue", "import", str(csv), "--at", ahead)


def test_guards_cli_at_floor_setting(town: Path) -> None:  # noqa: F811
    toml = town / "node.toml"
    text = toml.read_text("utf-8")
    assert "[settings]" in text
    toml.write_text(text.replace("[settings]", '[settings]\nat_floor = "2025-10-01"'), "utf-8")
    said = refused(town, "case", "receive", "--item", "A1", "--applicant", "甲",
                   "--at", "2025-09-30")  # fmt: skip
    assert "2025-10-01" in said and "at_floor" in said
    case(town, "receive", "--item", "A1", "--applicant", "甲", "--at", "2025-10-01")


def test_guards_cli_extension_art42(town: Path) -> None:  # noqa: F811
    cid = case(town, "accept", "--item", "A1", "--applicant", "甲")  # today
    # DESIGN §7's `case extend CASE --days N --reason TEXT` still works (scripts drive it as
    # written), recorded without an approver and saying the law asks for one
    other = case(town, "accept", "--item", "A1", "--applicant", "乙")
    no_head = zhibao(town, "case", "extend", other, "--days", "5", "--reason", "核查")
    assert no_head.returncode == 0 and no_head.stdout.strip() == other
    assert "--approved-by" in no_head.stderr and "第四十二条" in no_head.stderr
    assert ok_json(town, "case", "show", other)["approved_by"] is None
    said = refused(town, "case", "extend", cid, "--days", "11", "--reason", "核查",
                   "--approved-by", "王局长")  # fmt: skip
    assert "at most 10 working days, not 11" in said
    extended = ok_json(town, "case", "extend", cid, "--days", "10", "--reason", "核查",
                       "--approved-by", "王局长")  # fmt: skip
    assert (extended["approved_by"], extended["extensions"]) == ("王局长", 1)
    assert "延长批准人" in ok(town, "case", "show", cid, lang="zh")
    said = refused(town, "case", "extend", cid, "--days", "1", "--reason", "再延",
                   "--approved-by", "王局长", lang="zh")  # fmt: skip
    assert "只能延长一次" in said


def test_guards_cli_late_extension_and_back_dated_suspension(town: Path) -> None:  # noqa: F811
    # due 2025-10-15 (10, 11, 13, 14, 15); then the town records another case on the 20th
    cid = case(town, "accept", "--item", "A1", "--applicant", "甲", "--at", "2025-10-09")
    case(town, "receive", "--item", "A1", "--applicant", "乙", "--at", "2025-10-20")
    said = refused(town, "case", "extend", cid, "--days", "5", "--reason", "补救",
                   "--approved-by", "王局长", "--at", "2025-10-16")  # fmt: skip
    assert "ran out on 2025-10-15" in said
    said = refused(town, "case", "suspend", cid, "--reason", "专家评审", "--at", "2025-10-14",
                   lang="zh")  # fmt: skip
    assert "倒签" in said and "2025-10-15" in said and "2025-10-20" in said
    said = refused(town, "case", "extend", cid, "--days", "5", "--reason", "补救",
                   "--approved-by", "王局长", "--at", "2025-10-14")  # fmt: skip
    assert "back-dated across the deadline" in said
    assert ok_json(town, "case", "show", cid)["warning"] == "red"


def test_guards_cli_late_supplement_says_accepted_as_of_receipt_art32(town: Path) -> None:  # noqa: F811
    cid = case(town, "receive", "--item", "A1", "--applicant", "甲", "--at", "2025-10-09T09:00")
    done = zhibao(town, "case", "request-supplement", cid, "--missing", "照片",
                  "--at", "2025-10-16T09:00")  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == cid
    assert "counts as accepted as of 2025-10-09T09:00:00+08:00" in done.stderr
    assert "第三十二条" in done.stderr
    shown = ok_json(town, "case", "show", cid)
    assert (shown["deemed_accepted"], shown["deadline"]) == (True, "2025-10-15")
    assert [e["type"] for e in shown["events"]][-1] == "case.supplement_requested"


def test_guards_cli_fees_as_the_catalogue_says(town: Path) -> None:  # noqa: F811
    cid = case(town, "accept", "--item", "A1", "--applicant", "甲")  # A1: 10.50 yuan
    case(town, "complete", cid, "--result", "approved")
    said = refused(town, "case", "deliver", cid)
    assert "fee of 10.50 yuan" in said
    said = refused(town, "case", "fee", cid, "--amount", "500", lang="zh")
    assert "10.50" in said and "--override-reason" in said
    case(town, "fee", cid, "--amount", "500", "--override-reason", "加急")
    assert "record the payment" in refused(town, "case", "deliver", cid)
    case(town, "pay", cid, "--receipt", "R1")
    case(town, "deliver", cid)
    free = case(town, "accept", "--item", "C3", "--applicant", "乙")
    assert "is free" in refused(town, "case", "fee", free, "--amount", "5")


@pytest.mark.parametrize("warning", ["unaccepted", "undelivered"])
def test_guards_cli_list_new_warnings(town: Path, warning: str) -> None:  # noqa: F811
    received = case(town, "receive", "--item", "A1", "--applicant", "甲", "--at", "2025-10-09")
    done = case(town, "accept", "--item", "C3", "--applicant", "乙", "--at", "2025-10-09")
    case(town, "complete", done, "--result", "approved", "--at", "2025-10-09T10:00")
    expected = received if warning == "unaccepted" else done
    listed = ok_json(town, "case", "list", "--warning", warning)
    assert [c["case_id"] for c in listed] == [expected]
    text = ok(town, "case", "list", "--warning", warning, lang="zh")
    assert ("第三十二条" if warning == "unaccepted" else "第四十四条") in text
