"""The city at scale on SQLite and on PostgreSQL (issue #15): a city of ≥ 5,000,000 entries
(20 towns, 300 villages), ingested over HTTP by one `zhibao serve` and, on PostgreSQL, by
two against one database; then month statistics, reconcile and bytes per entry. Figures
only: nothing here asserts a speed.

    .venv/bin/python bench/city_scale.py [--entries 5000000] [--dir DIR] [--keep]
        [--engines sqlite,postgresql] [--pg URL] [--fronts 1,2] [--months 12] [--runs 3]

Generation (once per `--dir`): bench/stats.py's `Year` writes every case of every town and
village, each entry signed by its node's key. Each town is a real town home (SQLite) whose
own log is its `Year` log (inserted as written, with its signature checkpoints), and which
has ingested its villages' logs the way a village's push is applied (`sync.ingest`, one
batch per village per week): hop 1, timed here in process. The town homes stay in
DIR/towns (a few GB at 5 M entries) and a later run with the same `--dir` reuses them.

Each configuration (engine × fronts) then gets a new city: `zhibao init --tier city`
(`--store postgresql://…` on a new database), the shared catalogue published and the 20
towns enrolled (their keys and seal keys) in process; a copy of every town home, pinned to
that city's key (node.toml `root_key` and the city's row in the town's key ring: what a
town made for that city holds); `--fronts` `zhibao serve` processes on port 0; every town
runs `zhibao sync --peer FRONT --json` at the same time, the towns split between the
fronts (hop 2). Timed: the pushes (first launch to last round done), the fronts' CPU, and
the catch-up of the city's projections after them (serve projects once pushes stop).
Then `zhibao stats --period P --json` (first and median of `--runs` repeats), the same
`--by node`, `zhibao reconcile --period P --json`, and bytes: node.db (+ WAL) on SQLite,
`pg_database_size` and the entries' partitions' `pg_total_relation_size` on PostgreSQL.

Without `--pg` a private PostgreSQL cluster is started with tests/support/postgres.py's
`start_cluster` (initdb, free port, watchdog) and restarted with durability on (fsync,
synchronous_commit, as SQLite's `synchronous=FULL`) and 256 MB of shared buffers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _city_pg import drop_database, pg_settings, private_cluster
from _city_run import Result, measure
from _city_towns import generate, reuse
from _common import figure, note, print_machine
from stats import YEAR

# --- the table -----------------------------------------------------------------------------------

COLUMNS = [
    ("failed", "failed", "{}"),
    ("entries_held", "entries at the city", "{:,}"),
    ("push_s", "hop 2: towns → city, wall (s)", "{:.1f}"),
    ("sync_retries", "hop 2: rounds run again after a timeout", "{}"),
    ("push_entries_per_s", "hop 2: entries/s", "{:,.0f}"),
    ("push_cpu_us_per_entry", "hop 2: fronts' CPU per entry (µs)", "{:.0f}"),
    ("towns_cpu_us_per_entry", "hop 2: the 20 `zhibao sync`' CPU per entry (µs)", "{:.0f}"),
    ("postgres_cpu_us_per_entry", "hop 2: the PostgreSQL server's CPU per entry (µs)", "{:.0f}"),
    ("projection_cpu_us_per_entry", "projection at the city, fronts' CPU per entry (µs)", "{:.0f}"),
    ("postgres_projection_cpu_us_per_entry", "… and the PostgreSQL server's (µs)", "{:.0f}"),
    ("projected_after_s", "projections caught up after (s)", "{:.1f}"),
    ("node_show_s", "node show --json, median (s): any command's floor", "{:.2f}"),
    ("stats_first_s", "stats --period --json, first (s)", "{:.2f}"),
    ("stats_s", "stats --period --json, median (s)", "{:.2f}"),
    ("stats_by_node_s", "stats … --by node, median (s)", "{:.2f}"),
    ("reconcile_first_s", "reconcile --period, first (s)", "{:.2f}"),
    ("reconcile_s", "reconcile --period, median (s)", "{:.2f}"),
    ("database_bytes", "database (MiB)", "mib"),
    ("bytes_per_entry", "database bytes per entry", "{:,.0f}"),
    ("entries_bytes_per_entry", "entries table + indexes, bytes per entry", "{:,.0f}"),
    ("reconcile_counts", "reconcile findings", "{}"),
]


def table(results: list[Result]) -> None:
    heads = [f"{r.engine}, {r.fronts} serve{'s' if r.fronts > 1 else ''}" for r in results]
    print("| figure | " + " | ".join(heads) + " |")
    print("|---|" + "---|" * len(results))
    for key, label, fmt in COLUMNS:
        cells = []
        for r in results:
            value = r.figures.get(key)
            if value is None:
                cells.append("")
            elif fmt == "mib":
                cells.append(f"{value / 2**20:,.0f}")
            else:
                cells.append(fmt.format(value))
        print(f"| {label} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=5_000_000)
    parser.add_argument("--months", type=int, default=12, help="months of cases (1-12)")
    parser.add_argument("--dir", type=Path, default=None, help="keep/reuse the town homes here")
    parser.add_argument("--keep", action="store_true", help="keep the cities and the dir")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--pg", default=None, help="a server (URL of a role with CREATEDB)")
    parser.add_argument("--pg-data", type=Path, default=None,
                        help="--pg's data directory, on this machine: its CPU is measured "
                        "(with --keep, the city's database outlives the run)")  # fmt: skip
    parser.add_argument("--fronts", default="1,2", help="serve processes on PostgreSQL")
    parser.add_argument("--period", default=None, help="the month measured (default: June)")
    parser.add_argument("--runs", type=int, default=3, help="repeats of stats after the first")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=5,
        help="towns pushing to one front at a time (default 5)",
    )
    parser.add_argument("--watch", action="store_true",
                        help="PostgreSQL: sample its connections and rank its statements "
                        "during hop 2 (loads pg_stat_statements)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    fronts = sorted({int(n) for n in args.fronts.split(",")})
    months = max(1, min(12, args.months))
    period = args.period or f"{YEAR}-{min(6, months):02d}"
    base = args.dir or Path(tempfile.mkdtemp(prefix="zhibao-city-scale-"))
    print_machine()
    note(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    note("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    towns_dir = base / "towns"
    record = None
    try:
        made = reuse(towns_dir, args.entries, months)
        if made is None:
            shutil.rmtree(towns_dir, ignore_errors=True)
            made = generate(towns_dir, args.entries, months)
            note(f"generated in {made['generate_seconds']:.0f} s")
        else:
            note(f"reusing the town homes in {towns_dir}")
        figure("entries generated (towns' and villages' logs)", made["held"])
        figure("cases", made["cases"])
        figure("hop 1: villages → towns, ingest in process", made["hop1_seconds"], "s")
        figure("hop 1: entries/s", made["hop1_entries"] / max(made["hop1_seconds"], 1e-9))
        pg = args.pg
        if "postgresql" in engines and pg is None:
            pg, record = private_cluster(args.watch)
        if pg is not None and "postgresql" in engines:
            note(f"PostgreSQL: {pg_settings(pg)}")
        results = []
        for engine in engines:
            for n in fronts if engine == "postgresql" else [1]:
                work = base / f"run-{engine}-{n}"
                shutil.rmtree(work, ignore_errors=True)
                note(f"{engine}, {n} serve: start {datetime.now(UTC):%H:%M:%S} UTC, load "
                     f"{os.getloadavg()[0]:.2f}")  # fmt: skip
                try:
                    pg_data = Path(record["top"]) / "data" if record is not None else args.pg_data
                    result = measure(engine, n, towns_dir, work, pg, period, args.runs,
                                     args.concurrency, pg_data, args.watch)  # fmt: skip
                except SystemExit as failure:  # said, and the next configuration runs
                    result = Result(engine, n, figures={"failed": str(failure)[:300]})
                    note(f"{engine}, {n} serve: FAILED: {failure}")
                results.append(result)
                for key, value in result.figures.items():
                    figure(f"{engine}_{n}_{key}", value)
                shutil.rmtree(work / "towns", ignore_errors=True)
                if not args.keep:
                    shutil.rmtree(work, ignore_errors=True)
                    if result.url:
                        drop_database(result.url)
        same = {
            json.dumps(r.stats_json, sort_keys=True) for r in results if "failed" not in r.figures
        }
        figure("same stats JSON on every configuration", "yes" if len(same) == 1 else "NO")
        note(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        table(results)
        if args.json:
            args.json.write_text(json.dumps({
                "generated": made, "same_stats": len(same) == 1,
                "results": [{"engine": r.engine, "fronts": r.fronts, **r.figures}
                            for r in results]}, indent=1))  # fmt: skip
    finally:
        if record is not None:
            from tests.support.postgres import stop_cluster

            stop_cluster(record)
        if not args.keep and args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
        else:
            note(f"kept: {base}")


if __name__ == "__main__":
    main()
