"""The city's ingest and projection catch-up in process, on one engine (#15): the town homes
of a `bench/city_scale.py --dir DIR` run pushed into a new city with `sync.ingest`, in the
batches `sync.proofs.batches` cuts (what `zhibao sync` sends), projections deferred as a
`serve` front defers them, then `catch_up`. No HTTP, no other process: where the store's
own time goes. Figures only.

    .venv/bin/python bench/city_scale.py --entries 50000 --dir DIR --engines sqlite --keep
    .venv/bin/python bench/catch_up.py --towns DIR/towns --engine postgresql [--pg URL]

Without `--pg` a private PostgreSQL cluster is started (bench/_city_pg.py, durability on).
Run it on two checkouts back to back (PYTHONPATH=OTHER) to compare before and after.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import stats  # noqa: F401  (before _city_run: _common and _breakdown import each other)
from _city_pg import Watch, create_database, drop_database, private_cluster
from _city_run import enrol_towns, make_city
from _common import cpu_seconds, figure, note, print_machine

from sync import proofs
from sync.ingest import ingest
from sync.protocol.batch import decode_batch, encode_batch
from tiers.node import open_home


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--towns", type=Path, required=True, help="DIR/towns of city_scale")
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg", default=None, help="a server (URL of a role with CREATEDB)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also cProfile the catch-up: its N costliest functions")  # fmt: skip
    parser.add_argument("--callers", default=None, metavar="NAME",
                        help="also cProfile: who called the functions matching NAME")  # fmt: skip
    parser.add_argument("--watch", action="store_true",
                        help="PostgreSQL: the statements that took the server longest in the "
                        "catch-up (a private cluster with pg_stat_statements)")  # fmt: skip
    args = parser.parse_args()
    print_machine()
    record, url = None, None
    work = Path(tempfile.mkdtemp(prefix="zhibao-catch-up-"))
    try:
        if args.engine == "postgresql":
            server = args.pg
            if server is None:
                server, record = private_cluster(watch=args.watch)
            url = create_database(server)
        make_city(work / "city", url)
        enrol_towns(work / "city", args.towns)
        pushes = []
        for town in sorted(p.name for p in args.towns.iterdir() if (p / "node.toml").exists()):
            with open_home(args.towns / town) as node:
                plan = proofs.plan(node.store, node.node_id, {})
                pushes += [(town, encode_batch(b)) for b in proofs.batches(node.store, plan)]
        with open_home(work / "city") as city:
            city.store.defer_projections()
            server = _backend(city.store)
            wall, cpu, held = time.perf_counter(), time.process_time(), 0
            spent = [server()]
            for town, data in pushes:
                result = ingest(city.store, decode_batch(data), me=city.node_id, sender=town,
                                received_at=city.clock.stamp())  # fmt: skip
                assert not result.rejected, result.rejected[:2]
                held += result.applied_total
            wall2, cpu2 = time.perf_counter(), time.process_time()
            spent.append(server())
            watch = Watch(url) if args.watch and url is not None else None
            profiler = cProfile.Profile() if args.profile or args.callers else None
            if profiler is not None:
                profiler.enable()
            city.store.catch_up()
            wall3, cpu3 = time.perf_counter(), time.process_time()
            spent.append(server())
            if profiler is not None:
                profiler.disable()
                ranked = pstats.Stats(profiler).sort_stats("tottime")
                ranked.print_stats(args.profile)
                if args.callers:
                    ranked.print_callers(args.callers)
            if watch is not None:
                for row in watch.stop().get("statements", []):
                    note(f"{row['seconds']:6.1f} s {row['calls']:8} calls  {row['query']}")
        figure("entries ingested", held)
        figure("ingest, wall", wall2 - wall, "s")
        figure("ingest, this process's CPU", cpu2 - cpu, "s")
        figure("catch-up of the projections, wall", wall3 - wall2, "s")
        figure("catch-up, this process's CPU", cpu3 - cpu2, "s")
        if spent[0] is not None:  # (not the server's WAL writer, checkpointer, autovacuum)
            figure("ingest, the connection's backend's CPU", spent[1] - spent[0], "s")
            figure("catch-up, the connection's backend's CPU", spent[2] - spent[1], "s")
            figure("CPU an entry, this process and its backend",
                   (cpu3 - cpu + spent[2] - spent[0]) / held * 1e6, "µs")  # fmt: skip
        else:  # SQLite: all of it; a server elsewhere: its share not measured
            figure("CPU an entry, this process", (cpu3 - cpu) / held * 1e6, "µs")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if url is not None:
            drop_database(url)
        if record is not None:
            from tests.support.postgres import stop_cluster

            stop_cluster(record)
            note("private cluster stopped")


def _backend(store: object) -> Callable[[], float | None]:
    """The CPU seconds so far of the server process serving `store` (PostgreSQL on this
    machine: its backend's /proc entry; not the WAL writer's nor the checkpointer's), else
    None (SQLite: all of it is this process's; a server elsewhere: not measured)."""
    conn = getattr(store, "conn", None)
    pid = getattr(getattr(conn, "info", None), "backend_pid", None)
    comm = Path(f"/proc/{pid}/comm")
    if pid is None or not comm.exists() or comm.read_text().strip() != "postgres":
        return lambda: None
    return lambda: cpu_seconds(pid)


if __name__ == "__main__":
    main()
