"""Materials (#11): a scan over a slow line cut every ~500 KB, memory while moving big files,
many small scans per hop, and a case event recorded while a scan is moving.

    .venv/bin/python bench/materials.py                  # ~4-5 min (`line` runs alongside)
    .venv/bin/python bench/materials.py --serial         # ~7-8 min: one part at a time
    .venv/bin/python bench/materials.py --quick          # ~1.5 min: everything smaller
    .venv/bin/python bench/materials.py --only line,rss  # some parts (line, rss, many, event)

Homes come from `tiers.node.create_home` (bench/_common.py), cases from
`tiers.cases.service`, materials from `tiers.materials.attach` (or `zhibao case attach`);
receivers are real `zhibao serve` processes on 127.0.0.1 port 0. Scans are random bytes
(incompressible, as JPEG or PDF scans are). Every part starts from fresh copies of a
network built once (city, town, village, enrolled, the catalogue handed down).

`line` spends ~3.5 min waiting on a 1 Mbit/s line and little CPU; unless `--serial`, it
runs in a child process while the other parts run, and its lines are printed at the end.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _common import (
    CITY,
    ROOT,
    TOWN,
    VILLAGE,
    Server,
    calibration_us,
    count_rows,
    cpu_seconds,
    figure,
    note,
    print_machine,
    wait_projected,
)
from _materials_line import line
from _materials_net import (
    MIB,
    TIME_BOX,
    attach_file,
    build,
    fresh,
    held,
    new_cases,
    one_round,
    run_zhibao,
    settings,
    wait_for,
    write_scan,
)

from sync.testing.proxy import FaultProxy, Schedule
from tiers import materials
from tiers.cases import service
from tiers.node import open_home

PARTS = ("line", "rss", "many", "event")


# --- 2. peak RSS of sender and receiver while moving a big file --------------------------------


def rss(homes: dict[str, Path], base: Path, args: argparse.Namespace) -> None:
    for size_mib in (args.small_mib, args.big_mib):
        h = fresh(homes, base / f"rss-{size_mib:g}")
        limit = int(max(args.big_mib, args.small_mib) * 2)
        settings(h[VILLAGE], material_max_mb=limit, material_seconds_per_round=TIME_BOX)
        settings(h[TOWN], material_max_mb=limit)
        size = int(size_mib * MIB)
        name = f"rss_{size_mib:g}mib"
        (case_id,) = new_cases(h[VILLAGE], 1)
        scan = write_scan(base / f"scan-{size_mib:g}.pdf", size, seed=2)
        log = base / f"{name}.log"
        code, seconds, peak = run_zhibao(
            ["case", "attach", case_id, str(scan), "--home", str(h[VILLAGE])], log
        )
        scan.unlink()
        if code:
            raise SystemExit(f"zhibao case attach failed: {log.read_text()}")
        figure(f"{name}_attach_seconds", seconds, "s (`zhibao case attach`, wall)")
        figure(f"{name}_attach_peak_rss", peak, "MiB (the attach process, wait4 ru_maxrss)")
        figure(f"{name}_bytes", size, "bytes")
        runs = [("", h)]
        if args.gc_each_put:  # the same village, before its round, and a fresh town
            copy = fresh({VILLAGE: h[VILLAGE], TOWN: h[TOWN]}, base / f"rss-{size_mib:g}-gc")
            shutil.copytree(h[VILLAGE] / "materials", copy[VILLAGE] / "materials")
            runs.append(("_gc_each_put", copy))
        for suffix, homes_now in runs:
            moved(f"{name}{suffix}", homes_now, size, log, gc_each_put=bool(suffix))


def moved(name: str, h: dict[str, Path], size: int, log: Path, *, gc_each_put: bool) -> None:
    """`zhibao sync` from the village to a `zhibao serve` town: time and both peaks."""
    with Server(h[TOWN]) as town:
        before = town.rss()
        code, seconds, peak = run_zhibao(
            ["sync", "--peer", town.url, "--home", str(h[VILLAGE]), "--json"],
            log,
            gc_each_put=gc_each_put,
        )
        after = town.rss()
    if code:
        raise SystemExit(f"zhibao sync failed: {log.read_text()}")
    whole = count_rows(h[TOWN], "SELECT COUNT(*) FROM blobs WHERE size = ?", (size,))
    figure(f"{name}_sync_seconds", seconds, "s (`zhibao sync`, wall, loopback)")
    figure(f"{name}_sync_mb_per_s", size / MIB / seconds, "MiB/s (whole process)")
    figure(f"{name}_sender_peak_rss", peak, "MiB (`zhibao sync`, wait4 ru_maxrss; target < 100)")
    figure(
        f"{name}_receiver_peak_rss",
        after.get("VmHWM", 0) / 1024,
        f"MiB (`zhibao serve` VmHWM, VmRSS {before.get('VmRSS', 0) / 1024:.1f} before; "
        "target < 100)",
    )
    figure(f"{name}_town_holds_it", "yes" if whole == 1 else "NO")


# --- 3. many small scans, village → town → city --------------------------------------------------


class Timing(httpx.HTTPTransport):
    """Notes when a round's materials step began (its first /v1/blobs/ request), and the
    requests and the seconds spent waiting on their answers, by path."""

    def __init__(self) -> None:
        super().__init__(verify=False)
        self.materials_began: float | None = None
        self.requests: dict[str, int] = {}
        self.waited: dict[str, float] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if self.materials_began is None and path.startswith("/v1/blobs/"):
            self.materials_began = time.perf_counter()
        started = time.perf_counter()
        response = super().handle_request(request)
        self.requests[path] = self.requests.get(path, 0) + 1
        self.waited[path] = self.waited.get(path, 0.0) + time.perf_counter() - started
        return response


def many(homes: dict[str, Path], base: Path, args: argparse.Namespace) -> None:
    h = fresh(homes, base / "many")
    for node_id in (VILLAGE, TOWN):
        settings(h[node_id], material_seconds_per_round=TIME_BOX)
    per_case, size = 4, int(args.scan_kib * 1024)
    cases = new_cases(h[VILLAGE], -(-args.scans // per_case))
    rng = random.Random(3)
    node = open_home(h[VILLAGE])
    started = time.perf_counter()
    try:
        made = 0
        for case_id in cases:
            files = []
            for page in range(min(per_case, args.scans - made)):
                files.append((Path(f"scan-{made + page}.jpg"), io.BytesIO(rng.randbytes(size))))
            made += len(files)
            materials.attach(node, case_id, files)
    finally:
        node.close()
    attach_s = time.perf_counter() - started
    total = args.scans * size
    figure("many_scans", args.scans, f"scans of {size} bytes in {len(cases)} cases")
    figure("many_attach_seconds", attach_s, "s (tiers.materials.attach in process, fsync each)")
    with Server(h[CITY]) as city, Server(h[TOWN]) as town:
        for hop, sender, server in (("hop1", VILLAGE, town), ("hop2", TOWN, city)):
            timing = Timing()
            cpu_before, own_before = cpu_seconds(server.pid), time.process_time()
            started = time.perf_counter()
            summary = one_round(h[sender], server.url, timing)
            ended = time.perf_counter()
            cpu, own = cpu_seconds(server.pid) - cpu_before, time.process_time() - own_before
            step = ended - (timing.materials_began or started)
            figure(f"many_{hop}_round_seconds", ended - started, "s (entries, then materials)")
            figure(f"many_{hop}_materials_seconds", step, "s (from the first /v1/blobs/ request)")
            figure(f"many_{hop}_mb_per_s", total / MIB / step, "MiB/s (materials step)")
            figure(f"many_{hop}_mb_per_s_round", total / MIB / (ended - started), "MiB/s (round)")
            figure(f"many_{hop}_receiver_cpu_seconds", cpu, "s (`zhibao serve`, /proc)")
            figure(f"many_{hop}_sender_cpu_seconds", own, "s (this process: the sender)")
            puts = timing.requests.get("/v1/blobs/put", 0)
            figure(
                f"many_{hop}_puts",
                puts,
                f"(waiting on their answers {timing.waited.get('/v1/blobs/put', 0.0):.2f} s; "
                + ", ".join(f"{p} {n}" for p, n in timing.requests.items() if "blobs" in p)
                + ")",
            )
            if puts:
                figure(
                    f"many_{hop}_ms_per_put",
                    timing.waited["/v1/blobs/put"] / puts * 1000,
                    "ms (sending a put until its answer is read)",
                )
            figure(
                f"many_{hop}_sent",
                summary.materials_sent,
                f"materials receipted (left {summary.materials_left}, "
                f"refused {len(summary.materials_refused)})",
            )
            wait_projected(server.home)  # `serve` projects when idle: not during the next hop
    held_city = count_rows(h[CITY], "SELECT COUNT(*) FROM blobs")
    figure("many_city_holds", held_city, f"materials (expected {args.scans})")


# --- 4. a case event recorded while a scan is moving ---------------------------------------------


def event(homes: dict[str, Path], base: Path, args: argparse.Namespace) -> None:
    h = fresh(homes, base / "event")
    if args.seconds_per_round is not None:
        settings(h[VILLAGE], material_seconds_per_round=args.seconds_per_round)
    size = int(args.scan_mib * MIB)
    case_id, *others = new_cases(h[VILLAGE], 1 + len(args.event_at))
    sha = attach_file(h[VILLAGE], case_id, write_scan(base / "event-scan.pdf", size, seed=4))
    partial = h[TOWN] / "materials" / "partial" / sha
    log = base / "event-watch.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    env.pop("ZHIBAO_HOME", None)
    arrivals: list[float] = []
    with (
        Server(h[TOWN]) as town,
        FaultProxy(
            "127.0.0.1",
            int(town.url.rsplit(":", 1)[1]),
            schedule=Schedule.slow(args.rtt, args.bps),
            io_timeout=300.0,
        ) as proxy,
        open(log, "wb") as sink,
    ):
        watch = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "sync", "--watch", "--peer", proxy.url,
             "--home", str(h[VILLAGE]), "--json"],
            stdout=sink, stderr=sink, env=env,
        )  # fmt: skip
        try:
            moving = wait_for(lambda: partial.exists() and partial.stat().st_size >= 4 * 65536)
            node = open_home(h[VILLAGE])
            waiting: list[tuple[int, float]] = []
            seen: dict[int, float] = {}

            def look() -> None:  # every event is watched for from its append on, at once
                for seq, _ in waiting:
                    if seq not in seen and count_rows(
                        h[TOWN], "SELECT COUNT(*) FROM entries WHERE origin = ? AND seq = ?",
                        (VILLAGE, seq),
                    ):  # fmt: skip
                        seen[seq] = time.perf_counter()

            try:
                for offset, other in zip(args.event_at, others, strict=True):
                    while time.perf_counter() < moving + offset:
                        look()
                        time.sleep(0.05)
                    service.accept(node, other)  # 受理: one signed entry, committed here
                    waiting.append((node.store.head(VILLAGE)[0], time.perf_counter()))
            finally:
                node.close()
            wait_for(lambda: (look(), len(seen) == len(waiting))[1], timeout=600.0)
            arrivals.extend(seen[seq] - appended for seq, appended in waiting)
            got = partial.stat().st_size if partial.exists() else held(h[TOWN], sha) * size
        finally:
            watch.send_signal(signal.SIGINT)
            try:
                watch.wait(timeout=15)
            except subprocess.TimeoutExpired:
                watch.kill()
                watch.wait()
    box = args.seconds_per_round if args.seconds_per_round is not None else "default (20)"
    note(f"event: `zhibao sync --watch` through the line; material_seconds_per_round {box}")
    for offset, delay in zip(args.event_at, arrivals, strict=True):
        figure(
            f"event_at_{offset:g}s_reached_town_after",
            delay,
            f"s (recorded {offset:g} s after the scan began to arrive)",
        )
    figure("event_reached_town_after_max", max(arrivals), "s")
    figure("event_scan_bytes_at_town_then", got, f"bytes of the {size} of the scan")


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(PARTS), help="parts, comma-separated")
    parser.add_argument("--quick", action="store_true", help="everything smaller (~1.5 min)")
    parser.add_argument("--serial", action="store_true", help="run `line` alone, first")
    parser.add_argument("--scan-mib", type=float, default=20.0, help="line and event scan")
    parser.add_argument(
        "--cut-kb", type=float, default=500.0, help="line: cut every (1000 B; 0: no cuts)"
    )
    parser.add_argument("--rtt", type=float, default=0.2, help="line, event: seconds")
    parser.add_argument("--bps", type=float, default=1_000_000, help="line, event: bits/s")
    parser.add_argument("--small-mib", type=float, default=50.0, help="rss: the smaller file")
    parser.add_argument("--big-mib", type=float, default=200.0, help="rss: the bigger file")
    parser.add_argument(
        "--gc-each-put",
        action="store_true",
        help="rss: also run the sender with a full garbage collection before each put (a "
        "diagnosis: what its peak would be if dead put bodies were freed at once)",
    )
    parser.add_argument("--scans", type=int, default=1000, help="many: how many scans")
    parser.add_argument("--scan-kib", type=float, default=200.0, help="many: each scan")
    parser.add_argument(
        "--event-at",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[1.0, 8.0, 15.0],
        help="event: seconds after the scan began to arrive (comma-separated)",
    )
    parser.add_argument(
        "--seconds-per-round",
        type=float,
        default=None,
        help="event: material_seconds_per_round at the village (default: the node's default)",
    )
    parser.add_argument("--keep", type=Path, default=None, help="work in DIR and keep it")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.scan_mib, args.small_mib, args.big_mib, args.scans = 2.0, 5.0, 20.0, 100
    parts = [p for p in args.only.split(",") if p]
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if not args.child:
        print_machine()
    started = time.perf_counter()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=False)
        run(args.keep, parts, args)
    else:
        with tempfile.TemporaryDirectory(prefix="zhibao-bench-") as tmp:
            run(Path(tmp), parts, args)
    if not args.child:
        figure("bench_seconds", time.perf_counter() - started, "s")
        note(f"load average after: {os.getloadavg()[0]:.2f}")
        note(f"calibration after: {calibration_us():.1f} µs for sum(range(1000))")


def line_alongside(base: Path, args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], Path]:
    """`line` in a child process (its own network, its own proxy); its output to a file."""
    out = base / "line.out"
    command = [
        sys.executable, __file__, "--child", "--only", "line", "--scan-mib", str(args.scan_mib),
        "--cut-kb", str(args.cut_kb), "--rtt", str(args.rtt), "--bps", str(args.bps),
    ]  # fmt: skip
    with open(out, "wb") as sink:
        return subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT), out


def run(base: Path, parts: list[str], args: argparse.Namespace) -> None:
    child = None
    if "line" in parts and len(parts) > 1 and not args.serial:
        child = line_alongside(base, args)
        note("line: running alongside the other parts (its lines come last)")
        parts = [p for p in parts if p != "line"]
    try:
        homes = build(base)
        for part in PARTS:
            if part in parts:
                began = time.perf_counter()
                {"line": line, "rss": rss, "many": many, "event": event}[part](homes, base, args)
                note(f"{part}: {time.perf_counter() - began:.1f} s")
    except BaseException:
        if child is not None:
            child[0].kill()
        raise
    finally:
        if child is not None:
            proc, out = child
            if proc.wait():
                note(f"line: the child process failed ({proc.returncode})")
            sys.stdout.write(out.read_text("utf-8"))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
