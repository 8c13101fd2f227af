"""How fast one node records: `node.append` rates, and `zhibao case accept` as a clerk waits for it.

    .venv/bin/python bench/append.py [--entries 1000] [--history 20000] [--runs 10] [--profile]
                                     [--before REF]

Figures (one per line, `name: value unit`):
- append_one_per_txn: `node.append` with realistic ~380-byte case events, each its own
  transaction (synchronous=FULL: one fsync each), as a window clerk's commands do;
- append_batched: the same appends, 1000 per transaction (encode, sign, check, insert,
  projections — the CPU cost without the disk);
- cli_*: median wall time of `zhibao case accept --item CODE --applicant NAME` and
  `zhibao case list` at a town that already holds --history entries, against `python -c
  pass`, `import cli.main` and `zhibao node show` (the start-up floor every command pays);
- before_*/after_*: `case accept` and `case list` by the code of --before REF (default
  main) and by this tree, taking turns on the same town, bytecode cached (issue #13).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    CITY,
    NAMES,
    ROOT,
    TOWN,
    ZHIBAO,
    case_events,
    enrol,
    figure,
    generate,
    note,
    print_machine,
)

from sync.ingest import ingest
from sync.protocol.batch import Run
from tiers.catalogue import parse_catalogue
from tiers.node import create_home, open_home
from tiers.published import publish_items

PYTHON = ROOT / ".venv" / "bin" / "python"
ITEM = "330782-WS-001"  # 健康证明办理: accepted at village, town and city


def make_town(base: Path, history: int) -> Path:
    """A town holding the city's catalogue (synced down) and `history` case events of its own."""
    from _common import CATALOGUE

    city = create_home(base / "city", tier="city", node_id=CITY, name=NAMES[CITY])
    publish_items(city, parse_catalogue(CATALOGUE.read_bytes(), CATALOGUE.name))
    town = create_home(
        base / "town",
        tier="town",
        node_id=TOWN,
        name=NAMES[TOWN],
        parent_id=CITY,
        root_key=city.config.root_key,
    )
    enrol(city, town)
    logged = city.store.entries(CITY)
    runs = [Run(CITY, 1, [(e.raw, e.sig) for e in logged])]
    result = ingest(town.store, runs, me=TOWN, sender=CITY, received_at=town.clock.stamp())
    assert result.applied_total == len(logged), result.to_json()
    if history:
        generate(town, history, seed=7)
    city.close()
    town.close()
    return base / "town"


def bench_appends(home: Path, count: int) -> None:
    node = open_home(home)
    try:
        first = node.store.head(node.node_id)[0] + 1
        events = list(
            case_events(
                node.node_id,
                2 * count,
                first_seq=first,
                seed=11,
                start=__import__("datetime").date(2026, 3, 2),
            )
        )
        size = 0
        latencies = []
        started = time.perf_counter()
        for kind, body, at in events[:count]:
            t0 = time.perf_counter()
            entry = node.append(kind, body, at=at)
            latencies.append(time.perf_counter() - t0)
            size += len(entry.raw)
        elapsed = time.perf_counter() - started
        figure("append_entry_bytes_avg", round(size / count), "bytes")
        figure("append_one_per_txn", count / elapsed, "entries/s")
        figure("append_one_per_txn_median", statistics.median(latencies) * 1000, "ms")
        latencies.sort()
        figure("append_one_per_txn_p95", latencies[int(0.95 * (count - 1))] * 1000, "ms")
        started = time.perf_counter()
        with node.store.transaction():
            for kind, body, at in events[count:]:
                node.append(kind, body, at=at)
        elapsed = time.perf_counter() - started
        figure("append_batched", count / elapsed, "entries/s")
    finally:
        node.close()


def wall(argv: list[str], runs: int, env: dict[str, str]) -> tuple[list[float], list[float]]:
    """Wall and CPU (user+sys) seconds of `runs` runs of `argv`."""
    times, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return times, cpus


ACCEPT = [
    "case", "accept", "--item", ITEM, "--applicant", "王秀英", "--phone", "13857901234",
    "--id-no", "330782196211197795", "--material", "身份证", "--material", "体检表",
]  # fmt: skip


def bench_cli(home: Path, runs: int, cache: Path, before: Path | None = None) -> None:
    """Each command as this environment runs it, then with bytecode cached (as installed);
    with `before` (a checkout of the code before the change), the same commands by both
    codes on the same town, run by run alternately, cached."""
    plain = dict(os.environ, ZHIBAO_HOME=str(home))
    plain.pop("ZHIBAO_DEBUG", None)
    cached = dict(plain, PYTHONPYCACHEPREFIX=str(cache))
    cached.pop("PYTHONDONTWRITEBYTECODE", None)
    has_case = subprocess.run([str(ZHIBAO), "case", "--help"], capture_output=True).returncode == 0
    timed = [
        ("python_startup", [str(PYTHON), "-c", "pass"]),
        ("import_cli_main", [str(PYTHON), "-c", "import cli.main"]),
        ("node_show", [str(ZHIBAO), "node", "show"]),
    ]
    if has_case:
        timed.append(("case_accept", [str(ZHIBAO), *ACCEPT]))
        timed.append(("case_list", [str(ZHIBAO), "case", "list"]))
    else:
        note("`zhibao case` does not exist yet: timing `zhibao log verify` instead")
        timed.append(("log_verify", [str(ZHIBAO), "log", "verify"]))
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        note(
            "PYTHONDONTWRITEBYTECODE is set here: 'cli_*' recompile zhibao's sources on every "
            "run; 'cli_cached_*' use a bytecode cache, as an installed zhibao does"
        )
    for _name, argv in timed[-2:]:
        wall(argv, 1, cached)  # fill the bytecode cache (and build any new index once)
    for mode, env in (("cli", plain), ("cli_cached", cached)):
        for name, argv in timed:
            times, cpus = wall(argv, runs, env)
            figure(f"{mode}_{name}_median", statistics.median(times) * 1000, "ms")
            figure(f"{mode}_{name}_min", min(times) * 1000, "ms")
            figure(f"{mode}_{name}_cpu_median", statistics.median(cpus) * 1000, "ms")
    if before is not None and has_case:
        compare(before, timed[-2:], runs, cached)


def checkout(ref: str, into: Path) -> Path | None:
    """The packages of `ref` (git archive of sync, tiers, cli) under `into`, or None."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "sync", "tiers", "cli"], capture_output=True
    )
    if archive.returncode != 0:
        note(f"no before/after comparison: git archive {ref}: {archive.stderr.decode().strip()}")
        return None
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", ref],
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    note(f"before: {ref} ({commit}), its sync/tiers/cli first on PYTHONPATH; after: this tree")
    return into


def compare(
    before: Path, timed: list[tuple[str, list[str]]], runs: int, env: dict[str, str]
) -> None:
    """`before_*` and `after_*` medians of each command, the two codes taking turns run by
    run on the same town (a shared machine's load falls on both alike), bytecode cached."""
    old = dict(env, PYTHONPATH=str(before))
    for name, argv in timed:
        wall(argv, 1, old)  # the old code's bytecode cache
        sides: dict[str, tuple[list[float], list[float]]] = {"before": ([], []), "after": ([], [])}
        for _ in range(runs):
            for side, side_env in (("before", old), ("after", env)):
                times, cpus = wall(argv, 1, side_env)
                sides[side][0].extend(times)
                sides[side][1].extend(cpus)
        for side, (times, cpus) in sides.items():
            figure(f"{side}_{name}_median", statistics.median(times) * 1000, "ms")
            figure(f"{side}_{name}_cpu_median", statistics.median(cpus) * 1000, "ms")
        note(f"{name}: {' '.join(argv[1:])}")


def import_breakdown(cache: Path, runs: int = 5) -> None:
    """Self time of `import cli.main` by top-level package (python -X importtime, cached)."""
    env = dict(os.environ, PYTHONPYCACHEPREFIX=str(cache))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    totals: Counter[str] = Counter()
    for _ in range(runs):
        err = subprocess.run(
            [str(PYTHON), "-X", "importtime", "-c", "import cli.main"],
            env=env,
            capture_output=True,
            text=True,
        ).stderr
        for line in err.splitlines():
            if line.startswith("import time:") and "|" in line and "self [us]" not in line:
                self_us, _cumulative, name = line[len("import time:") :].split("|")
                totals[name.strip().split(".")[0]] += int(self_us)
    figure("import_total", sum(totals.values()) / runs / 1000, "ms (under -X importtime)")
    for name, micros in totals.most_common(10):
        figure(f"import_{name}", micros / runs / 1000, "ms")


def profile_accept(home: Path) -> None:
    """Where one `case accept` spends its time once Python is up: open, accept, close."""
    from tiers.cases import service

    who = service.Applicant("王秀英", "330782196211197795", "13857901234")
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        node = open_home(home)
        t1 = time.perf_counter()
        service.accept(node, item_code=ITEM, applicant=who, materials=["身份证", "体检表"])
        t2 = time.perf_counter()
        node.close()
        samples.append((t1 - t0, t2 - t1))
    figure("inproc_open_home_median", statistics.median(s[0] for s in samples) * 1000, "ms")
    figure("inproc_case_accept_median", statistics.median(s[1] for s in samples) * 1000, "ms")
    profiler = cProfile.Profile()
    node = open_home(home)
    profiler.enable()
    service.accept(node, item_code=ITEM, applicant=who, materials=["身份证", "体检表"])
    profiler.disable()
    node.close()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(20)
    print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1000, help="appends to time (default 1000)")
    parser.add_argument(
        "--history",
        type=int,
        default=20_000,
        help="case events the town holds before the timings (default 20000)",
    )
    parser.add_argument("--runs", type=int, default=10, help="runs of each command (default 10)")
    parser.add_argument("--profile", action="store_true", help="profile one case accept in-process")
    parser.add_argument(
        "--before",
        default="main",
        metavar="REF",
        help="git ref whose code the commands are also timed with, alternately (default main;"
        " '' for none)",
    )
    args = parser.parse_args()
    print_machine()
    with tempfile.TemporaryDirectory(prefix="zhibao-bench-") as tmp:
        started = time.perf_counter()
        home = make_town(Path(tmp), args.history)
        figure("setup_history_entries", args.history, "entries")
        figure("setup_seconds", time.perf_counter() - started, "s")
        bench_appends(home, args.entries)
        cache = Path(tmp) / "pycache"
        before = checkout(args.before, Path(tmp) / "before") if args.before else None
        bench_cli(home, args.runs, cache, before)
        import_breakdown(cache)
        if args.profile:
            profile_accept(home)
    note(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
