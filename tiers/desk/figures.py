"""The one place the desk computes figures: a period's `compute_stats` for a grouping.

(Issue #14: pages call this; caching and trends belong here, not in the pages.)
"""

from __future__ import annotations

from typing import Any

from sync.node import Node
from tiers.city import stats as city_stats
from tiers.figures import month_of, parse_period


def month(node: Node, asked: str | None, by: str) -> dict[str, Any]:
    """`zhibao stats --by BY --period ASKED --json` (this month when ASKED is None/empty)."""
    today = node.clock.now().date()
    period = parse_period(asked) if asked else month_of(today)
    return city_stats.compute_stats(node.store, period, by, today, node.config.settings)
