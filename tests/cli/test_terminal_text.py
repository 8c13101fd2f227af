"""The rules that keep what a person reads inert, as properties of any text."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli.common import print_json, print_table, terminal_safe
from tiers.inert import FORMULA_STARTS, UNSAFE, csv_cell

RAW = frozenset(chr(c) for c in UNSAFE)
# text rich in what matters: controls, C1, bidi, CJK, and plain letters
texts = st.text(
    st.one_of(
        st.sampled_from(sorted(RAW)),
        st.sampled_from("=+-@\t\r\n\\张三下骆宅村abc 0123"),
        st.characters(),
    )
)


@given(texts)
def test_terminal_safe_leaves_nothing_that_drives_a_terminal(text: str) -> None:
    assert not RAW & set(terminal_safe(text))
    assert not (RAW - {"\n"}) & set(terminal_safe(text, lines=True))
    if not RAW & set(text):
        assert terminal_safe(text) == text  # ordinary text, CJK included, is untouched


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        pytest.param("\x1b[31m红\x1b[0m", "\\x1b[31m红\\x1b[0m", id="ansi-colour"),
        pytest.param("\x1b]8;;http://x/\x07a", "\\x1b]8;;http://x/\\x07a", id="osc-hyperlink"),
        pytest.param("abc\u202edef\u2066", "abc\\u202edef\\u2066", id="bidi-override"),
        pytest.param("\x9b31m\x7f", "\\x9b31m\\x7f", id="c1-csi-and-del"),
        pytest.param("a\r\nb\tc", "a\\x0d\\x0ab\\x09c", id="line-breaks"),
    ],
)
def test_terminal_safe_shows_each_escape_visibly(text: str, shown: str) -> None:
    assert terminal_safe(text) == shown


@given(st.dictionaries(texts, st.one_of(texts, st.integers(), st.lists(texts, max_size=3))))
def test_print_json_is_exact_and_inert(value: object) -> None:
    with redirect_stdout(io.StringIO()) as printed:
        print_json(value)
    out = printed.getvalue()
    assert json.loads(out) == value
    assert not (RAW - {"\n"}) & set(out)


def test_print_table_cells_are_inert(capsys: pytest.CaptureFixture[str]) -> None:
    print_table(["name\u202e", "n"], [["\x1b[2J张三", 3], [None, -1]])
    out = capsys.readouterr().out
    assert not (RAW - {"\n"}) & set(out)
    assert "name\\u202e" in out and "\\x1b[2J张三" in out and "-1" in out


@given(texts)
def test_csv_cell_never_starts_a_formula(text: str) -> None:
    cell = csv_cell(text)
    assert not cell.startswith(FORMULA_STARTS) and not RAW & set(cell)
    if text.startswith(FORMULA_STARTS):
        assert cell.startswith("'")


@pytest.mark.parametrize("number", [0, 7, -3, 0.6667, -1.5])
def test_csv_cell_numbers_stay_numbers(number: float) -> None:
    assert csv_cell(number) == number and type(csv_cell(number)) is type(number)
