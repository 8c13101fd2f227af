"""How fast `zhibao log verify` re-checks a large log, every signature and every link.

    .venv/bin/python bench/verify.py [--entries 100000] [--runs 3] [--home DIR]
                                     [--compare DIR] [--one-worker] [--workers N]

A town holds the city's log and one village's log of --entries realistic case events
(~380 bytes each, made by the village with `node.append` and ingested at the town as a
sync round would). Each run is `zhibao log verify --json` as a subprocess at that town.

Figures (one per line, `name: value unit`):
- ed25519_verify_one_core: Ed25519 verifications per second on one core (cryptography's
  OpenSSL), and ed25519_ceiling_all_cores the same times the cores this process may use:
  no `log verify` that checks every signature can go faster than that ceiling;
- log_verify_seconds_median and log_verify_entries_per_s (median of --runs runs);
- with --compare DIR (another checkout, e.g. `git archive main | tar -x -C DIR`): the same
  command run from DIR, alternating with this checkout run by run, as before_log_verify_*;
- with --one-worker: this checkout with `--workers 1` too (one_worker_log_verify_*), to
  tell what the cores bring from what the rest of the change does.
Each side's CPU seconds (user + system, all its threads) come with its wall time: on a
loaded machine the wall time says more of the load than of the code (with the kernel's
autogroup scheduling, a session gets its share of a busy machine however many threads
it runs).
- split_*: one in-process `verify_log` with a worker per core, each slice's thread CPU
  time added up per thread: split_busiest_thread_cpu_seconds is the wall time that run
  would take if each worker had a core to itself, split_projected_entries_per_s the rate.
With --home DIR the town is built there once and reused by later runs (--entries is then
what it already holds).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CITY, ROOT, TOWN, VILLAGE, figure, generate, make_network, note, print_machine

from sync.ingest import ingest
from sync.protocol.batch import Run
from tiers.node import open_home

PYTHON = ROOT / ".venv" / "bin" / "python"
RUN = 5000  # entries per ingested run, as a sync round sends them


def make_town(base: Path, entries: int) -> Path:
    """City, town and village; the village writes `entries` case events; the town ingests
    the city's log and the village's, so it holds both whole."""
    homes = make_network(base)
    village = open_home(homes[VILLAGE])
    generate(village, entries, seed=13)
    town = open_home(homes[TOWN])
    city = open_home(homes[CITY])
    try:
        for source, sender in ((city, CITY), (village, VILLAGE)):
            logged = source.store.entries(source.node_id)
            for start in range(0, len(logged), RUN):
                part = logged[start : start + RUN]
                run = Run(source.node_id, part[0].seq, [(e.raw, e.sig) for e in part])
                done = ingest(
                    town.store, [run], me=TOWN, sender=sender, received_at=town.clock.stamp()
                )
                assert done.applied_total == len(part), done.to_json()
    finally:
        for node in (village, town, city):
            node.close()
    return homes[TOWN]


def ed25519_rate(seconds: float = 1.0) -> float:
    """Verifications per second on one core, best of three (the floor of any full check)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    public, message = key.public_key(), b"zhibao" * 7
    signature = key.sign(message)
    best = 0.0
    for _ in range(3):
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds / 3:
            for _ in range(100):
                public.verify(signature, message)
            count += 100
        best = max(best, count / (time.perf_counter() - started))
    return best


def verify_once(code: Path, home: Path, extra: list[str]) -> tuple[float, float, dict[str, object]]:
    """Wall and CPU seconds of one `log verify --json` run from checkout `code`."""
    env = dict(os.environ, PYTHONPATH=str(code))
    argv = [str(PYTHON), "-m", "cli.main", "log", "verify", "--json", "--home", str(home), *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=code, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} (in {code}) failed: {done.stderr.strip()[-2000:]}")
    return elapsed, cpu, json.loads(done.stdout)


def split(town: Path) -> None:
    """Which thread did how much of the work (thread CPU time, per slice, added up)."""
    import threading

    from sync import audit

    spent: dict[int, float] = {}
    real = audit.check_slice

    def timed(conn: Any, part: audit.Slice) -> audit.Checked:
        started = time.thread_time()
        try:
            return real(conn, part)
        finally:
            ident = threading.get_ident()
            spent[ident] = spent.get(ident, 0.0) + time.thread_time() - started

    audit.check_slice = timed
    node = open_home(town)
    try:
        main_started, wall = time.thread_time(), time.perf_counter()
        report = audit.verify_log(node.store)
        wall = time.perf_counter() - wall
        main_cpu = time.thread_time() - main_started
    finally:
        audit.check_slice = real
        node.close()
    busiest = max(spent.values())
    for n, seconds in enumerate(sorted(spent.values(), reverse=True), 1):
        figure(f"split_thread_{n}_cpu_seconds", seconds, "s")
    figure("split_caller_thread_cpu_seconds", main_cpu, "s")
    figure("split_wall_seconds", wall, "s")
    figure("split_busiest_thread_cpu_seconds", busiest, "s")
    figure("split_projected_entries_per_s", report.entries / (busiest + main_cpu), "entries/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=100_000, help="village entries (100000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each side (default 3)")
    parser.add_argument("--home", type=Path, default=None, help="build the town here, or reuse")
    parser.add_argument("--compare", type=Path, default=None, help="a checkout to run as before")
    parser.add_argument("--workers", type=int, default=None, help="pass --workers N (this side)")
    parser.add_argument("--one-worker", action="store_true", help="also run with --workers 1")
    args = parser.parse_args()
    print_machine()
    cores = len(os.sched_getaffinity(0))
    one = ed25519_rate()
    figure("ed25519_verify_one_core", one, "verifications/s")
    figure("ed25519_ceiling_all_cores", one * cores, "verifications/s")
    with tempfile.TemporaryDirectory(prefix="zhibao-bench-") as tmp:
        base = args.home if args.home is not None else Path(tmp) / "net"
        town = base / "town"
        if (town / "node.db").exists():
            note(f"reusing the town in {base}")
        else:
            started = time.perf_counter()
            make_town(base, args.entries)
            figure("setup_seconds", time.perf_counter() - started, "s")
        sides = [("", ROOT, [] if args.workers is None else ["--workers", str(args.workers)])]
        if args.one_worker:
            sides.insert(0, ("one_worker_", ROOT, ["--workers", "1"]))
        if args.compare is not None:
            sides.insert(0, ("before_", args.compare.resolve(), []))
        times: dict[str, list[float]] = {name: [] for name, _, _ in sides}
        cpus: dict[str, list[float]] = {name: [] for name, _, _ in sides}
        held = 0
        for run in range(args.runs):
            for name, code, extra in sides:  # alternate, so both see the same load
                elapsed, cpu, report = verify_once(code, town, extra)
                assert report["ok"] is True, report
                held = int(report["entries"])  # type: ignore[call-overload]
                times[name].append(elapsed)
                cpus[name].append(cpu)
                note(
                    f"run {run + 1} {name or 'this_'}side: {elapsed:.2f} s, cpu {cpu:.2f} s, "
                    f"load {os.getloadavg()[0]:.2f}"
                )
        figure("entries_verified", held, "entries")
        split(town)
        for name, _, _ in sides if held else []:
            median = statistics.median(times[name])
            figure(f"{name}log_verify_seconds_median", median, "s")
            figure(f"{name}log_verify_entries_per_s", held / median, "entries/s")
            figure(f"{name}log_verify_cpu_seconds_median", statistics.median(cpus[name]), "s")
    note(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
