"""The longest tests first, one share of them at the head of each worker's queue.

`scripts/test` runs pytest-xdist's `worksteal`: the collection is cut into one contiguous
share per worker, and a worker that runs out takes half of the longest queue's *tail*. A
long test near the end of a share was therefore the run's tail (one worker busy for half a
minute while the others had nothing left). Here the tests named in `durations.txt` (the
run's slowest, as `--durations` prints them) are dealt out longest first (a module's
together), each to the share with the least time so far, and put at the heads of the
shares; every other test keeps its place in collection order, filling the shares behind.
The tail is then made of short tests, which idle workers steal. Nothing is skipped or added.

Refresh the list after a suite's timings change (the lines `--durations` prints, as is):
    scripts/test -q --durations=100 | grep -E '^[0-9.]+s (setup|call|teardown) ' \
        > tests/support/durations.txt
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DURATIONS = Path(__file__).with_name("durations.txt")
_LINE = re.compile(r"^\s*([0-9.]+)s\s+(?:setup|call|teardown)\s+(\S.*?)\s*$")
LONG = 3.0  # seconds: a test at least this long is placed (those shorter fill in)


def recorded(text: str) -> dict[str, float]:
    """Seconds by test id (its setup, call and teardown added up) from `--durations` lines."""
    seconds: dict[str, float] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            seconds[match[2]] = seconds.get(match[2], 0.0) + float(match[1])
    return seconds


def of(nodeid: str, seconds: dict[str, float]) -> float:
    """A test's recorded seconds; a test that since runs on both engines (`city_engine`:
    `[sqlite]`, `[sqlite-seed0]`) has its SQLite run's under the id it had before."""
    if nodeid in seconds:
        return seconds[nodeid]
    return seconds.get(nodeid.replace("[sqlite]", "").replace("[sqlite-", "["), 0.0)


def share_sizes(count: int, workers: int) -> list[int]:
    """How many tests worksteal's first distribution gives each worker, in order."""
    sizes = []
    for i in range(workers):
        sizes.append(count // (workers - i))
        count -= sizes[-1]
    return sizes


def arrange(items: list[pytest.Item], seconds: dict[str, float], workers: int) -> list[pytest.Item]:
    """`items` reordered: long ones dealt to the shares' heads, the rest in order behind.

    A module's long tests go to one share together (their module-scoped fixtures, such as
    a demo city two tests read, are then built once), dealt by their total."""
    sizes = share_sizes(len(items), workers)
    seconds = {item.nodeid: of(item.nodeid, seconds) for item in items}
    modules: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        if seconds.get(item.nodeid, 0.0) >= LONG:
            modules.setdefault(item.nodeid.split("::")[0], []).append(i)
    units = sorted(modules.values(), key=lambda u: -sum(seconds[items[i].nodeid] for i in u))
    heads: list[list[int]] = [[] for _ in range(workers)]
    load = [0.0] * workers
    for unit in units:
        fits = [w for w in range(workers) if len(heads[w]) + len(unit) <= sizes[w]]
        share = min(fits or range(workers), key=lambda w: (load[w], w))
        heads[share] += unit[: sizes[share] - len(heads[share])]
        load[share] += sum(seconds[items[i].nodeid] for i in unit)
    placed = {i for head in heads for i in head}
    rest = iter(i for i in range(len(items)) if i not in placed)
    order: list[int] = []
    for w in range(workers):
        head = sorted(heads[w])  # collection order within a head: a module's tests together
        order += head
        order += [next(rest) for _ in range(sizes[w] - len(head))]
    return [items[i] for i in order]


@pytest.hookimpl(trylast=True)  # after the markers' deselection: arrange what will run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    workerinput = getattr(config, "workerinput", None)  # set on pytest-xdist's workers only
    workers = int(workerinput["workercount"]) if workerinput else 1
    if workers < 2 or not DURATIONS.exists():
        return
    items[:] = arrange(items, recorded(DURATIONS.read_text("utf-8")), workers)
