"""The one place the desk computes figures: a period's `compute_stats` for a grouping, and
the monthly trend the overview charts.

(Issue #14: pages call this; caching belongs here, not in the pages.)
"""

from __future__ import annotations

from typing import Any

from sync.node import Node
from tiers.city import stats as city_stats
from tiers.figures import Period, month_of, parse_period

# The figures the overview's trend charts, in the order they are drawn.
TREND = ("accepted", "completion_rate", "on_time_rate", "satisfaction_rate")


def month(node: Node, asked: str | None, by: str) -> dict[str, Any]:
    """`zhibao stats --by BY --period ASKED --json` (this month when ASKED is None/empty)."""
    today = node.clock.now().date()
    period = parse_period(asked) if asked else month_of(today)
    return city_stats.compute_stats(node.store, period, by, today, node.config.settings)


def months_back(last: Period, count: int) -> list[Period]:
    """The `count` months ending with the month `last` starts in, oldest first."""
    year, number = last.start.year, last.start.month
    labels = []
    for _ in range(count):
        labels.append(f"{year:04d}-{number:02d}")
        year, number = (year, number - 1) if number > 1 else (year - 1, 12)
    return [parse_period(label) for label in reversed(labels)]


def trend(node: Node, asked: str | None, count: int = 12) -> list[dict[str, Any]]:
    """The network's totals for each of the `count` months up to ASKED (this month when
    None), oldest first: {"period", "received", "accepted", "completion_rate",
    "on_time_rate", "satisfaction_rate"} — each month's `stats --json` "total" row."""
    today = node.clock.now().date()
    last = parse_period(asked) if asked else month_of(today)
    points = []
    for period in months_back(last, count):
        whole = city_stats.compute_stats(node.store, period, "tier", today,
                                         node.config.settings)["total"]  # fmt: skip
        points.append({"period": period.label, "received": whole["received"],
                       **{key: whole[key] for key in TREND}})  # fmt: skip
    return points
