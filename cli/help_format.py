"""Help pages laid out by display width: a CJK character takes two columns.

click measures text in characters and breaks lines only at spaces, so a Chinese help
text (no spaces, two columns a character) runs past the edge of the terminal. The
formatter here measures every line in terminal columns and may break between two CJK
characters, never before closing punctuation (，。）…) nor after opening punctuation
(（“…). `HelpContext` puts it on every command (cli.help.localise).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator

import click

from cli.click_i18n import gettext

NO_LINE_START = set("，。、；：？！）》」』】〉”’…%,.;:?!)]}")
NO_LINE_END = set("（《「『【〈“‘([{")
_TOKENS = re.compile(r"\s+|\S+")


def display_width(text: str) -> int:
    """Terminal columns `text` takes: wide and full-width (CJK) characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in "WF"


def pieces(word: str) -> Iterator[str]:
    """`word` (no spaces) cut where a line may break: between two characters one of
    which is wide, unless that would start a line with closing punctuation or end one
    with opening punctuation."""
    start = 0
    for i in range(1, len(word)):
        before, after = word[i - 1], word[i]
        if (
            (_wide(before) or _wide(after))
            and after not in NO_LINE_START
            and before not in NO_LINE_END
        ):
            yield word[start:i]
            start = i
    yield word[start:]


def _lines(text: str, width: int, first: str, rest: str) -> Iterator[str]:
    """Greedy fill of one paragraph by display width; a piece wider than a whole line is
    cut by characters."""
    indent, line, used, space = first, "", 0, ""
    for token in _TOKENS.findall(text):
        if token.isspace():
            space = " " if line else ""
            continue
        for n, piece in enumerate(pieces(token)):
            gap = space if n == 0 else ""
            room = width - display_width(indent)
            need = display_width(gap + piece)
            if line and used + need > room:
                yield indent + line
                indent, line, used, gap = rest, "", 0, ""
                room, need = width - display_width(indent), display_width(piece)
            while not line and need > room > 0:  # longer than a line: cut it
                cut, taken = "", 0
                for ch in piece:
                    if taken + display_width(ch) > room and cut:
                        break
                    cut, taken = cut + ch, taken + display_width(ch)
                yield indent + cut
                indent, piece = rest, piece[len(cut) :]
                room, need = width - display_width(indent), display_width(piece)
            line, used = line + gap + piece, used + need
        space = ""
    if line:
        yield indent + line


def wrap_text(
    text: str,
    width: int = 78,
    initial_indent: str = "",
    subsequent_indent: str = "",
    preserve_paragraphs: bool = False,
) -> str:
    """click.formatting.wrap_text, measured in terminal columns (same paragraphs, and a
    paragraph after a line holding only `\\b` is kept as written)."""
    text = text.expandtabs()
    if not preserve_paragraphs:
        return "\n".join(_lines(text, width, initial_indent, subsequent_indent))
    out = []
    for indent, raw, body in _paragraphs(text):
        first, rest = initial_indent + " " * indent, subsequent_indent + " " * indent
        if raw:
            out.append("\n".join((first if i == 0 else rest) + line
                                 for i, line in enumerate(body.splitlines())))  # fmt: skip
        else:
            out.append("\n".join(_lines(body, width, first, rest)))
    return "\n\n".join(out)


def _paragraphs(text: str) -> Iterator[tuple[int, bool, str]]:
    """(indent, keep as written, text) for each blank-line-separated paragraph."""
    block: list[str] = []
    indent = 0
    for line in [*text.splitlines(), ""]:
        if line:
            if not block:
                indent = len(line) - len(line.lstrip())
                line = line.lstrip()
            block.append(line)
            continue
        if block:
            if block[0].strip() == "\b":
                yield indent, True, "\n".join(block[1:])
            else:
                yield indent, False, " ".join(block)
        block = []


class WidthFormatter(click.HelpFormatter):
    """click's help formatter with every width in terminal columns."""

    def write_heading(self, heading: str) -> None:
        colon = "：" if heading and _wide(heading[-1]) else ":"
        self.write(f"{'':>{self.current_indent}}{heading}{colon}\n")

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        if prefix is None:
            prefix = gettext("Usage:")
            prefix = prefix if _wide(prefix[-1]) else prefix + " "
        head = f"{prefix:>{self.current_indent}}{prog} "
        text_width = self.width - self.current_indent
        if not args:
            self.write(head.rstrip(" ") + "\n")
            return
        if text_width >= display_width(head) + 20:
            indent = " " * display_width(head)
            self.write(wrap_text(args, text_width, head, indent))
        else:
            self.write(head + "\n")
            indent = " " * (max(self.current_indent, display_width(prefix)) + 4)
            self.write(wrap_text(args, text_width, indent, indent))
        self.write("\n")

    def write_text(self, text: str) -> None:
        indent = " " * self.current_indent
        self.write(wrap_text(text, self.width, indent, indent, preserve_paragraphs=True))
        self.write("\n")

    def write_dl(
        self, rows: Iterable[tuple[str, str]], col_max: int = 30, col_spacing: int = 2
    ) -> None:
        rows = list(rows)
        first_width = max((display_width(row[0]) for row in rows), default=0)
        first_col = min(first_width, col_max) + col_spacing
        margin = " " * self.current_indent
        for row in rows:
            first, second = row[0], row[1] if len(row) > 1 else ""
            self.write(margin + first)
            if not second:
                self.write("\n")
                continue
            if display_width(first) <= first_col - col_spacing:
                self.write(" " * (first_col - display_width(first)))
            else:
                self.write("\n" + " " * (first_col + self.current_indent))
            text_width = max(self.width - first_col - 2, 10)
            lines = wrap_text(second, text_width, preserve_paragraphs=True).splitlines()
            self.write((lines[0] if lines else "") + "\n")
            for line in lines[1:]:
                self.write(f"{'':>{first_col + self.current_indent}}{line}\n" if line else "\n")


class HelpContext(click.Context):
    """A click context whose help pages are laid out by `WidthFormatter`."""

    formatter_class = WidthFormatter
