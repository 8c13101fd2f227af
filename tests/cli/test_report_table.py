"""cli.report_table: tables that fit a width, CJK and hostile text included."""

from __future__ import annotations

import pytest

from cli.common import display_width
from cli.report_table import Fit, cut, lines, wrap

LONG_NAME = "义乌市稠城街道下骆宅村便民服务室（第二服务点）"  # 46 columns


def test_report_table_cuts_the_giving_column_to_the_width() -> None:
    rows = [["330782001201", LONG_NAME, "12", "80.0%"], ["total", "", "3", "-"]]
    shown = lines(["node", "name", "accepted", "completion rate"], rows,
                  Fit(width=50, right=frozenset({2, 3}), give=1))  # fmt: skip
    assert all(display_width(line) <= 50 for line in shown), shown
    assert "…" in shown[-2] and LONG_NAME not in "".join(shown)
    assert shown[-2].endswith("12       80.0%") and shown[-1].endswith(" 3           -")
    assert display_width(shown[-2]) == display_width(shown[-1]) == 50  # numbers on the right


def test_report_table_leaves_a_table_that_fits_alone() -> None:
    rows = [["330782001201", LONG_NAME, "12"]]
    assert LONG_NAME in lines(["node", "name", "n"], rows, Fit(width=None, give=1))[-1]
    assert LONG_NAME in lines(["node", "name", "n"], rows, Fit(width=100, give=1))[-1]


def test_report_table_breaks_a_header_wider_than_its_cells() -> None:
    shown = lines(["node", "open past deadline"], [["330782001", "1"]], Fit(right=frozenset({1})))
    assert shown[0].split() == ["open", "past"] or shown[0].split() == ["open past"]
    assert shown[1].split() == ["node", "deadline"]
    assert max(map(display_width, shown)) < len("330782001  open past deadline")
    one = lines(["node", "open past deadline"], [["1", "open past deadline, and more"]], Fit())
    assert one[0].split() == ["node", "open", "past", "deadline"] and len(one) == 3


def test_report_table_wraps_evidence_instead_of_cutting_it() -> None:
    detail = "330782001 has not reported 2025-10 (its log is held here up to #50). " * 3
    shown = lines(["kind", "node", "detail"], [["missing report", "330782001", detail]],
                  Fit(width=60, give=2, wrap=True))  # fmt: skip
    assert all(display_width(line) <= 60 for line in shown) and len(shown) > 3
    indent = shown[0].index("detail")
    assert " ".join(line[indent:] for line in shown[2:]).split() == detail.split()


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("an ordinary sentence that goes on for a while", id="words"),
        pytest.param("缺少工作日历国务院办公厅的年节假日安排通知应已发布期限跨入", id="cjk"),
        pytest.param("x" * 45, id="one-long-word"),
    ],
)
def test_report_table_wrap_keeps_every_character(text: str) -> None:
    parts = wrap(text, 11)
    assert all(display_width(p) <= 11 for p in parts)
    assert "".join(parts).replace(" ", "") == text.replace(" ", "")


def test_report_table_cut_counts_wide_characters() -> None:
    assert cut("稠城街道便民服务中心", 9) == "稠城街道…"
    assert cut("short", 9) == "short"


def test_report_table_hostile_cells_are_escaped_before_they_are_measured() -> None:
    hostile = '=HYPERLINK("http://evil.example/","下骆宅村")\x1b[31m\u202e'
    shown = lines(["node", "name", "n"], [["330782001201", hostile, "1"]],
                  Fit(width=40, give=1))  # fmt: skip
    text = "\n".join(shown)
    assert "\x1b" not in text and "\u202e" not in text
    assert all(display_width(line) <= 40 for line in shown)
    whole = "\n".join(lines(["node", "name", "n"], [["1", hostile, "1"]], Fit(width=None)))
    assert "\\x1b[31m\\u202e" in whole and "\x1b" not in whole
