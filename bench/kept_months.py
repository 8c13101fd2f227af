"""Kept month figures (tiers/figure_cells.py) on a city you have: each month counted whole
and kept, read back, and counted live, timed in process; and whether the three agree.

    .venv/bin/python bench/kept_months.py --home CITY_HOME [--year 2025] [--months 1-12]

It writes: each month's kept rows are counted afresh (its `figure_periods` head removed
first). Run it on a copy, or on a city kept by `bench/city_scale.py --keep`
(DIR/run-sqlite-1/city; on PostgreSQL the home's node.toml names its database).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import figure, note, print_machine

from tiers.figure_cells import _live, period_cells
from tiers.figures import parse_period
from tiers.node import open_home
from tiers.published import list_items, work_calendar


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--year", type=int, default=2025)
    parser.add_argument("--months", default="1-12", help="a range, e.g. 6-6")
    args = parser.parse_args()
    first, last = (int(x) for x in args.months.split("-"))
    print_machine()
    node = open_home(args.home)
    try:
        store, today = node.store, node.clock.now().date()
        cal, items = work_calendar(store), {i.code: i for i in list_items(store)}
        for month in range(first, last + 1):
            period = parse_period(f"{args.year}-{month:02d}")
            with store.transaction():
                store.execute("DELETE FROM figure_periods WHERE period = ?", (period.label,))
            began = time.perf_counter()
            counted = period_cells(store, period, today, cal, items)
            whole = time.perf_counter() - began
            began = time.perf_counter()
            again = period_cells(store, period, today, cal, items)
            read = time.perf_counter() - began
            began = time.perf_counter()
            live = _live(store, period, today, cal, items)
            live_s = time.perf_counter() - began
            same = counted == again == live
            figure(f"{period.label}_counted_and_kept", whole, "s")
            figure(f"{period.label}_read_back", read, "s")
            figure(f"{period.label}_live", live_s, "s")
            figure(f"{period.label}_cells", len(live[0]))
            figure(f"{period.label}_equal", "yes" if same else "NO")
            if not same:
                note(f"{period.label}: the kept rows differ from a live count")
    finally:
        node.close()


if __name__ == "__main__":
    main()
