"""Options and output shared by every command: --home, --json, --at, and printing."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from sync.node import Node, resolve_home
from tiers.node import open_home

F = TypeVar("F", bound=Callable[..., Any])

home_option = click.option(
    "--home",
    "home",
    envvar="ZHIBAO_HOME",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The node's home directory (default: $ZHIBAO_HOME, else .).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for other tools.")
at_option = click.option(
    "--at",
    "at",
    default=None,
    metavar="ISO-TIME",
    help="When it happened, for records entered later (补录); default now.",
)


@contextmanager
def node_at(home: Path | None) -> Iterator[Node]:
    """Open the node at --home for one command and close it afterwards."""
    node = open_home(resolve_home(home))
    try:
        yield node
    finally:
        node.close()


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, sort_keys=False))


def display_width(text: str) -> int:
    """Terminal columns `text` takes: wide and full-width (CJK) characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """A plain aligned table, CJK text included."""
    width = display_width
    cells = [[str(c) if c is not None else "" for c in row] for row in rows]
    widths = [width(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], width(cell))

    def line(row: list[str]) -> str:
        return "  ".join(c + " " * (widths[i] - width(c)) for i, c in enumerate(row)).rstrip()

    click.echo(line(headers))
    click.echo("  ".join("-" * w for w in widths))
    for row in cells:
        click.echo(line(row))
