"""A city's serve keeps this month's and last month's figures counted (tiers.figure_cells).

Entries change the cases; `tiers.figure_cells` counts a month again from the cases changed
since it was last counted, at the first `stats`, `reconcile` or desk page that asks for it.
At a city of millions of entries, a month counted whole takes seconds. So `serve` at a city
runs a `FigureKeeper`: a thread with its own connection that, every `KEEP_EVERY` seconds,
once the projections have caught up (while pushes keep coming it waits: the serve's own
projection comes first), brings the two months supervisors read most up to date — this
month, judged as of yesterday, and last month. A clerk's `stats` for them then reads kept
rows. When those two are up to date, it counts, one a pass, the months of the two years
before (`SWEEP_BACK`: a year-on-year comparison) that are not kept at all, or were kept
before a calendar or catalogue was published: the first `stats` of any of them reads kept
rows too (a month kept but for cases changed since is left to the ask, which counts only
those). Nothing it does changes a figure: the rows are what a live count gives (a month
is kept only with the mark, day and basis it was counted at).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

from sync.logstore import LogStore
from sync.node import Node
from sync.protocol import i18n
from tiers.figure_cells import keep, unkept_month
from tiers.figures import Period, month_of
from tiers.node_loop import NodeLoop
from tiers.published import list_items, work_calendar

KEEP_EVERY = 5.0  # seconds between looks
MAX_BACKOFF = 300.0  # seconds: the longest pause after failures in a row
SWEEP_BACK = 24  # months before last month kept counted once (a bound, whatever the cases say)

i18n.register(
    {
        "figures.keeper_failed": (
            "this month's figures could not be kept counted ({error}); trying again in {seconds} s",
            "未能预先统计本月数据（{error}）；{seconds} 秒后重试",
        ),
        "figures.keeper_stopped": (
            "this month's figures are not kept counted: no connection of its own ({error})",
            "不预先统计本月数据：无法另开数据库连接（{error}）",
        ),
    }
)


def kept_months(today: date) -> list[Period]:
    """This month and last month."""
    this = month_of(today)
    return [this, month_of(this.start - timedelta(days=1))]


def swept_months(today: date) -> list[Period]:
    """The `SWEEP_BACK` months before last month, the latest first."""
    months, period = [], kept_months(today)[-1]
    for _ in range(SWEEP_BACK):
        period = month_of(period.start - timedelta(days=1))
        months.append(period)
    return months


def keep_months(store: LogStore, today: date) -> tuple[int, Period | None]:
    """Bring `kept_months` up to date, unless the projections are behind; when they were,
    count the first of `swept_months` not kept. The cases counted, and that month (None:
    every swept month is kept, or there was other work)."""
    if store.unprojected():
        return 0, None
    cal, items = work_calendar(store), {item.code: item for item in list_items(store)}
    counted = sum(keep(store, period, today, cal, items) for period in kept_months(today))
    if counted:
        return counted, None
    older = unkept_month(store, today, cal, items, swept_months(today))
    if older is None:
        return 0, None
    counted = keep(store, older, today, cal, items)
    if unkept_month(store, today, cal, items, [older]) is not None:
        return counted, None  # not kept (the store was busy): the next pass, at its pace
    return counted, older


class FigureKeeper(NodeLoop):
    """The thread (see the module doc); `stop` ends it. A node that is not a city, or
    that cannot be opened, has nothing kept (its commands count for themselves)."""

    thread_name = "figure-keeper"
    stopped_key = "figures.keeper_stopped"
    failed_key = "figures.keeper_failed"

    def __init__(self, open_node: Callable[[], Node], every: float = KEEP_EVERY) -> None:
        self.passes = 0  # steps done (tests may wait on it)
        super().__init__(open_node, every, MAX_BACKOFF)

    def begin(self, node: Node) -> bool:
        return node.config.tier == "city"

    def step(self, node: Node) -> float | None:
        _, swept = keep_months(node.store, node.clock.now().date())
        self.passes += 1
        return 0.0 if swept is not None else None  # more may be waiting: look again at once
