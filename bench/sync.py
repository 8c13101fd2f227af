"""Replication speed, bytes, resumption and memory: village → town → city over loopback HTTP.

    .venv/bin/python bench/sync.py [--entries 50000] [--profile]
    .venv/bin/python bench/sync.py --backlog 200000      # town RSS while ingesting a backlog
    .venv/bin/python bench/sync.py --slow [--entries N]  # through a 200 ms, 1 Mbit/s line

The village's case events are generated in-process with `node.append` (5000 per
transaction) and timed apart. The town and the city are real `zhibao serve` processes on
127.0.0.1 port 0; each hop is one `sync.round.sync_round` run by the sending node in this
process, through an httpx transport that counts what goes over the wire. The cut tests
and the slow line use fresh copies of the town taken before any village entry arrived.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _breakdown import breakdown
from _common import (
    CITY,
    TOWN,
    VILLAGE,
    CountingTransport,
    Server,
    Wire,
    calibration_us,
    count_rows,
    cpu_seconds,
    figure,
    generate,
    make_network,
    note,
    print_machine,
    self_peak_mib,
    snapshot,
    wait_projected,
)

from sync.protocol.errors import SyncError
from sync.round import RoundSummary, sync_round
from sync.server import IDLE_SECONDS
from sync.testing.proxy import Fault, FaultProxy, Schedule
from tiers.node import open_home

MIB = 1024


class RssSampler:
    """Samples VmRSS of a process every `interval` seconds in a thread; `peak` in KiB."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval, self.peak, self.samples = pid, interval, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from _common import proc_status

        while not self._stop.is_set():
            rss = proc_status(self.pid).get("VmRSS", 0)
            self.peak, self.samples = max(self.peak, rss), self.samples + 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def db_size(home: Path, entries: int) -> None:
    """The town's database on disk, and the biggest tables and indexes in it (dbstat)."""
    files = [home / name for name in ("node.db", "node.db-wal")]
    size = sum(f.stat().st_size for f in files if f.exists())
    figure("town_db", size / 2**20, f"MiB (node.db + wal, {size / entries:,.0f} bytes per entry)")
    try:
        import apsw

        conn = apsw.Connection(str(home / "node.db"), flags=apsw.SQLITE_OPEN_READONLY)
        rows = conn.execute(
            "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 6"
        ).fetchall()
        conn.close()
    except Exception as exc:  # dbstat is optional in SQLite builds
        note(f"no table sizes: {exc}")
        return
    for name, pages in rows:
        figure(f"town_db_{name}", pages / entries, "bytes per entry")


def run_hop(
    home: Path, url: str, wire: Wire, transport: httpx.BaseTransport | None = None
) -> tuple[RoundSummary, float]:
    """One round by the node at `home` against `url`; (summary, wall seconds)."""
    node = open_home(home)
    try:
        started = time.perf_counter()
        summary = sync_round(
            node, url, transport=transport or CountingTransport(wire), timeout=120.0
        )
        return summary, time.perf_counter() - started
    finally:
        node.close()


def report_hop(
    name: str,
    summary: RoundSummary,
    seconds: float,
    wire: Wire,
    server: Server,
    cpu: float,
    rss_before: int,
    entry_bytes: float,
) -> None:
    pushed = summary.pushed
    figure(f"{name}_entries", pushed, "entries")
    figure(f"{name}_seconds", seconds, "s")
    figure(f"{name}_entries_per_s", pushed / seconds, "entries/s")
    push_wait = wire.seconds.get("/v1/push", 0.0)
    figure(f"{name}_push_requests_seconds", push_wait, "s (waiting on /v1/push answers)")
    figure(
        f"{name}_http_requests",
        wire.requests,
        f"({', '.join(f'{p} {n}' for p, n in wire.paths.items())})",
    )
    figure(f"{name}_batches", summary.batches)
    figure(
        f"{name}_pushed_bytes_per_entry",
        summary.pushed_bytes / pushed,
        "bytes (RoundSummary.pushed_bytes)",
    )
    figure(
        f"{name}_wire_bytes_per_entry",
        wire.body_bytes / pushed,
        "bytes (request + response bodies, whole round)",
    )
    figure(
        f"{name}_wire_bytes_per_entry_with_headers",
        (wire.body_bytes + wire.header_bytes) / pushed,
        "bytes",
    )
    figure(
        f"{name}_compression_ratio",
        (entry_bytes + 64) / (summary.pushed_bytes / pushed),
        "(raw+sig : batch)",
    )
    if wire.pushed_entries and wire.open_seconds:
        figure(
            f"{name}_unseal_ms",
            wire.open_seconds * 1000,
            "ms (opening every sealed push body once, in this process: what the receiver adds)",
        )
    figure(f"{name}_receiver_cpu_seconds", cpu, "s")
    figure(f"{name}_receiver_cpu_per_entry", cpu / pushed * 1e6, "µs")
    figure(f"{name}_receiver_rss_before", rss_before / MIB, "MiB")
    figure(f"{name}_receiver_rss_peak", server.rss().get("VmHWM", 0) / MIB, "MiB (VmHWM)")


def hop_with_server(
    name: str, sender: Path, server: Server, entry_bytes: float
) -> tuple[RoundSummary, float, Wire]:
    wire = Wire()
    rss_before = server.rss().get("VmRSS", 0)
    cpu_before, own_before = cpu_seconds(server.pid), time.process_time()
    summary, seconds = run_hop(sender, server.url, wire)
    cpu, own = cpu_seconds(server.pid) - cpu_before, time.process_time() - own_before
    report_hop(name, summary, seconds, wire, server, cpu, rss_before, entry_bytes)
    figure(f"{name}_sender_cpu_per_entry", own / summary.pushed * 1e6, "µs (this process)")
    figure(
        f"{name}_entries_per_receiver_cpu_s",
        summary.pushed / cpu,
        "entries/s if the receiver had a core to itself",
    )
    wire.seconds["sender_cpu"], wire.seconds["receiver_cpu"] = own, cpu
    # `serve` acknowledges a push once it is durable and projects it once no push has come
    # for IDLE_SECONDS; wait for that here, so the next hop does not share the CPU with it
    cpu_before = cpu_seconds(server.pid)
    waited = wait_projected(server.home)
    projecting = cpu_seconds(server.pid) - cpu_before
    figure(
        f"{name}_projected_after_s",
        waited,
        f"s after the round (the server waits {IDLE_SECONDS} s for quiet, then projects)",
    )
    figure(
        f"{name}_projection_cpu_per_entry",
        projecting / summary.pushed * 1e6,
        "µs (receiver CPU while catching up the tier projections, off the hot path)",
    )
    if summary.rejected:
        raise SystemExit(f"{name}: refused {summary.rejected[:3]}")
    return summary, seconds, wire


# --- cut and resume ----------------------------------------------------------------------------


class LosingTransport(CountingTransport):
    """Delivers requests, but loses the answer to the push that carries entry `lose_at`."""

    def __init__(self, wire: Wire, lose_at: int) -> None:
        super().__init__(wire)
        self.lose_at, self.lost = lose_at, False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if (
            not self.lost
            and request.url.path == "/v1/push"
            and self.wire.pushed_entries >= self.lose_at
        ):
            self.lost = True
            raise httpx.ReadError("answer lost on the way back (simulated)", request=request)
        return response


def check_after_resume(
    name: str, home: Path, village_head: int, rounds: list[Wire], total: int, cut_round: Wire
) -> None:
    carried = sum(w.pushed_entries for w in rounds)
    applied = sum(w.applied for w in rounds)
    held = count_rows(home, "SELECT COUNT(*) FROM entries WHERE origin = ?", (VILLAGE,))
    distinct = count_rows(
        home, "SELECT COUNT(DISTINCT seq) FROM entries WHERE origin = ?", (VILLAGE,)
    )
    head = count_rows(home, "SELECT seq FROM heads WHERE origin = ?", (VILLAGE,))
    wait_projected(home)
    events = count_rows(home, "SELECT COUNT(*) FROM case_events WHERE origin = ?", (VILLAGE,))
    figure(f"{name}_applied_before_cut", cut_round.applied, "entries")
    figure(f"{name}_resent_entries", carried - total, "entries")
    figure(
        f"{name}_resent_bytes",
        sum(w.pushed_body for w in rounds) - total_request_bytes[0],
        "bytes (push bodies)",
    )
    figure(f"{name}_duplicates_reported", sum(w.duplicates for w in rounds), "entries")
    figure(f"{name}_applied_total", applied, f"entries (expected {total})")
    figure(f"{name}_applied_twice", applied - total, "entries")
    figure(
        f"{name}_town_entries_held",
        held,
        f"(distinct seq {distinct}, head seq {head}, village head {village_head}, "
        f"case_events {events})",
    )
    ok = held == distinct == head == village_head == events and applied == total
    figure(f"{name}_consistent", "yes" if ok else "NO")


total_request_bytes = [0]  # request bytes of a clean hop-1 round, for the re-sent bytes


def cut_request(pristine: Path, base: Path, village: Path, village_head: int, total: int) -> None:
    """Cut the TCP connection halfway through the pushed bytes, then run the next round."""
    home = snapshot(pristine, base / "town-cut")
    with (
        Server(home) as server,
        FaultProxy("127.0.0.1", int(server.url.rsplit(":", 1)[1])) as proxy,
    ):
        proxy.force(Fault("cut", "c2s", offset=total_request_bytes[0] // 2))
        first = Wire()
        try:
            run_hop(village, proxy.url, first)
            note("cut_request: the round was not cut (it finished)")
        except SyncError as exc:
            note(f"cut_request: round 1 ended with {type(exc).__name__}: {exc}")
        proxy.wait_idle()
        second = Wire()
        _, seconds = run_hop(village, proxy.url, second)
        figure("cut_request_resume_seconds", seconds, "s")
        check_after_resume("cut_request", home, village_head, [first, second], total, first)


def lose_answer(pristine: Path, base: Path, village: Path, village_head: int, total: int) -> None:
    """The town applies the push that crosses 50 %, but its answer never arrives."""
    home = snapshot(pristine, base / "town-lost")
    with Server(home) as server:
        first = Wire()
        try:
            run_hop(village, server.url, first, LosingTransport(first, total // 2))
            note("lost_answer: the round was not cut (it finished)")
        except SyncError as exc:
            note(f"lost_answer: round 1 ended with {type(exc).__name__}: {exc}")
        second = Wire()
        _, seconds = run_hop(village, server.url, second)
        figure("lost_answer_resume_seconds", seconds, "s")
        check_after_resume("lost_answer", home, village_head, [first, second], total, first)


# --- the slow line -------------------------------------------------------------------------------


def slow_line(
    pristine: Path, base: Path, village: Path, total: int, rtt: float, bps: float
) -> None:
    home = snapshot(pristine, base / "town-slow")
    with (
        Server(home) as server,
        FaultProxy(
            "127.0.0.1",
            int(server.url.rsplit(":", 1)[1]),
            schedule=Schedule.slow(rtt, bps),
            io_timeout=300.0,
        ) as proxy,
    ):
        wire = Wire()
        summary, seconds = run_hop(village, proxy.url, wire)
        stats = proxy.stats
    up, down = stats.bytes_c2s, stats.bytes_s2c
    figure("slow_rtt", rtt * 1000, "ms")
    figure("slow_bandwidth", bps / 1e6, "Mbit/s each way")
    figure("slow_entries", summary.pushed, "entries")
    figure("slow_seconds", seconds, "s")
    figure("slow_entries_per_s", summary.pushed / seconds, "entries/s")
    figure("slow_bytes_up", up, "bytes (proxy, with headers)")
    figure("slow_bytes_down", down, "bytes (proxy, with headers)")
    figure("slow_bytes_per_entry", (up + down) / summary.pushed, "bytes")
    floor = max(up, down) * 8 / bps
    figure("slow_bytes_over_bandwidth", floor, "s (the busier direction ÷ bandwidth)")
    figure(
        "slow_http_round_trips",
        wire.requests,
        f"({', '.join(f'{p} {n}' for p, n in wire.paths.items())}) + 1 TCP connect",
    )
    ideal = floor + (wire.requests + stats.connections) * rtt
    figure("slow_ideal_seconds", ideal, "s (bytes ÷ bandwidth + one RTT per request and connect)")
    figure("slow_efficiency", ideal / seconds * 100, "% of the ideal")
    figure(
        "slow_overhead_seconds",
        seconds - ideal,
        "s (what bytes and round trips do not explain: preparing the first batch, "
        "applying the last, proxy scheduling)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=50_000, help="case events (default 50000)")
    parser.add_argument(
        "--backlog",
        type=int,
        default=None,
        metavar="N",
        help="only: generate N entries and report the town's RSS while it ingests them",
    )
    parser.add_argument(
        "--slow",
        action="store_true",
        help="only: push the entries through a 200 ms RTT, 1 Mbit/s proxy",
    )
    parser.add_argument("--rtt", type=float, default=0.2, help="with --slow (seconds)")
    parser.add_argument("--bps", type=float, default=1_000_000, help="with --slow (bits/s)")
    parser.add_argument(
        "--breakdown-entries",
        type=int,
        default=20_000,
        help="entries to break the ingest path down on (default 20000)",
    )
    parser.add_argument("--profile", action="store_true", help="also cProfile the ingest path")
    parser.add_argument("--keep", type=Path, default=None, help="work in DIR and keep it")
    args = parser.parse_args()
    count = args.backlog or args.entries
    print_machine()
    started = time.perf_counter()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=False)
        run(args.keep, count, args)
    else:
        with tempfile.TemporaryDirectory(prefix="zhibao-bench-") as tmp:
            run(Path(tmp), count, args)
    figure("bench_seconds", time.perf_counter() - started, "s")
    note(f"load average after: {os.getloadavg()[0]:.2f}")
    note(f"calibration after: {calibration_us():.1f} µs for sum(range(1000))")


def run(base: Path, count: int, args: argparse.Namespace) -> None:
    homes = make_network(base)
    with Server(homes[CITY]) as city:
        run_hop(homes[TOWN], city.url, Wire())  # the town learns the city's enrolments
        pristine = snapshot(homes[TOWN], base / "town-pristine")
        with Server(homes[TOWN]) as town:
            run_hop(homes[VILLAGE], town.url, Wire())  # and the village the town's
            village = open_home(homes[VILLAGE])
            try:
                seconds = generate(village, count)
                village_head = village.store.head(VILLAGE)[0]
                entry_bytes = village.store.query(
                    "SELECT AVG(LENGTH(raw)) FROM entries WHERE origin = ? AND type LIKE 'case.%'",
                    (VILLAGE,),
                )[0][0]
            finally:
                village.close()
            figure("entries", count, "case events")
            figure("entry_bytes_avg", entry_bytes, "bytes (canonical JSON; + 64-byte signature)")
            figure("generate_seconds", seconds, "s (node.append, 5000 per transaction)")
            figure("generate_entries_per_s", count / seconds, "entries/s")
            if args.slow:
                slow_line(pristine, base, homes[VILLAGE], count, args.rtt, args.bps)
                return
            if args.backlog:
                with RssSampler(town.pid) as sampler:
                    hop_with_server("backlog", homes[VILLAGE], town, entry_bytes)
                figure(
                    "backlog_town_rss_sampled_peak",
                    sampler.peak / MIB,
                    f"MiB (VmRSS, {sampler.samples} samples)",
                )
                db_size(homes[TOWN], count)
                figure(
                    "backlog_sender_rss_peak",
                    self_peak_mib(),
                    "MiB (this process: generation + village side)",
                )
                return
            _, hop1_s, wire1 = hop_with_server("hop1", homes[VILLAGE], town, entry_bytes)
            db_size(homes[TOWN], count)
            total_request_bytes[0] = wire1.pushed_body
            _, hop2_s, _ = hop_with_server("hop2", homes[TOWN], city, entry_bytes)
    figure("end_to_end_seconds", hop1_s + hop2_s, "s (village → town, then town → city)")
    figure("end_to_end_entries_per_s", count / (hop1_s + hop2_s), "entries/s")
    cut_request(pristine, base, homes[VILLAGE], village_head, count)
    lose_answer(pristine, base, homes[VILLAGE], village_head, count)
    hop1 = {"entries": count, **wire1.seconds}
    breakdown(pristine, base, homes[VILLAGE], hop1, args.profile, args.breakdown_entries)


if __name__ == "__main__":
    main()
