"""Tables that fit a terminal's width (`stats`, `reconcile`): long headers break at a space
onto a second line, numbers are aligned on the right, and one column gives way when the
table is still too wide — its cells cut short with `…` (a name: `--wide` shows it whole) or
wrapped onto more lines (a finding's detail, which is evidence and is never cut).

Every cell is made terminal-safe before it is measured, so a cut never splits an escape and
the width counted is the width shown (CJK characters take two columns)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import click

from cli.common import display_width, terminal_safe

WIDTH = 100  # the default table fits this many columns
GAP = "  "
_NARROWEST = 8  # a column that gives way keeps at least this many


@dataclass(frozen=True)
class Fit:
    """How to lay a table out: `right` the columns aligned on the right (numbers), `give`
    the column that gives way when the table is wider than `width` (None: none does), and
    whether it `wrap`s its cells (else they are cut short)."""

    width: int | None = WIDTH
    right: frozenset[int] = frozenset()
    give: int | None = None
    wrap: bool = False


def _split(header: str) -> list[str]:
    """A header on one line, or on two at the space that makes it narrowest."""
    best = [header]
    for i, ch in enumerate(header):
        if ch == " ":
            two = [header[:i], header[i + 1 :]]
            if max(map(display_width, two)) < max(map(display_width, best)):
                best = two
    return best


def _prefix(text: str, width: int) -> str:
    """The longest start of `text` that takes at most `width` columns."""
    used = 0
    for i, ch in enumerate(text):
        used += display_width(ch)
        if used > width:
            return text[:i]
    return text


def cut(text: str, width: int) -> str:
    """`text` in at most `width` columns, ending in `…` when cut."""
    return text if display_width(text) <= width else _prefix(text, width - 1) + "…"


def wrap(text: str, width: int) -> list[str]:
    """`text` as lines of at most `width` columns, broken at spaces where it can be."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if display_width(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while display_width(word) > width:  # longer than a line (CJK has no spaces): break it
            head = _prefix(word, width) or word[0]
            lines.append(head)
            word = word[len(head) :]
        line = word
    return [*lines, line]


def lines(headers: Sequence[str], rows: Sequence[Sequence[object]], fit: Fit) -> list[str]:
    """The table as lines of text, made to `fit`."""
    cells = [[terminal_safe(c) if c is not None else "" for c in row] for row in rows]
    widths = [max([0, *(display_width(row[i]) for row in cells)]) for i in range(len(headers))]
    heads: list[list[str]] = []
    for i, header in enumerate(terminal_safe(h) for h in headers):
        heads.append(_split(header) if display_width(header) > widths[i] else [header])
        widths[i] = max(widths[i], *map(display_width, heads[i]))
    total = sum(widths) + len(GAP) * (len(widths) - 1)
    if fit.width is not None and fit.give is not None and total > fit.width:
        least = max(_NARROWEST, *map(display_width, heads[fit.give]))
        widths[fit.give] = max(least, widths[fit.give] - (total - fit.width))
    depth = max(len(h) for h in heads)

    def line(row: Sequence[str]) -> str:
        shown = [
            " " * (widths[i] - display_width(c)) + c if i in fit.right
            else c + " " * (widths[i] - display_width(c))
            for i, c in enumerate(row)
        ]  # fmt: skip
        return GAP.join(shown).rstrip()

    out = [line([(["", *h] if len(h) < depth else h)[d] for h in heads]) for d in range(depth)]
    out.append(GAP.join("-" * w for w in widths))
    for row in cells:
        if fit.give is None or display_width(row[fit.give]) <= widths[fit.give]:
            out.append(line(row))
        elif not fit.wrap:
            out.append(line([cut(c, widths[i]) if i == fit.give else c for i, c in enumerate(row)]))
        else:
            parts = wrap(row[fit.give], widths[fit.give])
            out.append(line([parts[0] if i == fit.give else c for i, c in enumerate(row)]))
            out += [line(["" if i != fit.give else p for i in range(len(row))]) for p in parts[1:]]
    return out


def print_fitted(headers: Sequence[str], rows: Sequence[Sequence[object]], fit: Fit) -> None:
    """Print the table made to `fit` (see `lines`)."""
    for text in lines(headers, rows, fit):
        click.echo(text)
