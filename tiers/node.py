"""Open and create nodes with every projection the tiers keep (the one place they are listed)."""

from __future__ import annotations

from pathlib import Path

from sync.clock import Clock
from sync.node import Node, init_node, open_node
from sync.store import Extension
from tiers import flow  # noqa: F401  (registers what flows down)
from tiers.cases.projection import CaseProjection
from tiers.complaints.projection import ComplaintProjection
from tiers.materials import MaterialProjection
from tiers.published import Published
from tiers.reports import FigureProjection


def extensions() -> list[Extension]:
    """The tier projections every node keeps, in the order they must see entries."""
    cases = CaseProjection()
    return [
        Published(), cases, FigureProjection(cases), MaterialProjection(), ComplaintProjection(),
    ]  # fmt: skip


def open_home(home: Path, *, clock: Clock | None = None, rebuild: bool = False) -> Node:
    """Open a node with its projections brought up to date (`serve` may have deferred some).
    `rebuild`: a home that lost its node.db gets a new one, for `restore` (sync.node)."""
    node = open_node(home, extensions=extensions(), clock=clock, rebuild=rebuild)
    try:
        node.store.catch_up()
    except BaseException:
        node.close()
        raise
    return node


def create_home(
    home: Path, *, clock: Clock | None = None, store: str | None = None, **options: str | None
) -> Node:
    """A new node's home (sync.node.init_node); `store`: a city's PostgreSQL database."""
    return init_node(home, extensions=extensions(), clock=clock, store=store, **options)  # type: ignore[arg-type]
