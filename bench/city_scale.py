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
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import apsw
import tomli_w
from _common import CATALOGUE, ROOT, Server, count_rows, figure, note, print_machine, unprojected
from stats import CITY, TOWNS, VILLAGES, YEAR, Year

from sync import proofs, trust
from sync.clock import ZONE
from sync.ingest import ingest
from sync.keyring import ENROL
from sync.protocol.batch import MAX_BATCH_ENTRIES, decode_batch, encode_batch
from sync.protocol.keys import Signer
from sync.store import PROJECTED
from tiers.catalogue import parse_catalogue
from tiers.node import create_home, open_home
from tiers.published import publish_items

ZHIBAO = [sys.executable, "-m", "cli.main"]
# entries of a 12-month year per unit of Year's scale, counted at scale 0.05: towns' cases
# grow with the scale; a village opens at most 2 cases a day, so theirs stop at scale 2
TOWN_ENTRIES, VILLAGE_ENTRIES, FLOOR_PER_MONTH = 781_000, 266_000, 320
GENERATED = "generated.json"


def scale_for(entries: int, months: int) -> float:
    """The Year scale that writes about `entries` entries in `months` months of cases."""
    fraction = months / 12
    need = max(0, entries - FLOOR_PER_MONTH * months - 300) / fraction
    if need <= 2 * (TOWN_ENTRIES + VILLAGE_ENTRIES):
        return need / (TOWN_ENTRIES + VILLAGE_ENTRIES)
    return (need - 2 * VILLAGE_ENTRIES) / TOWN_ENTRIES


# --- generation: 20 town homes holding their villages' logs -----------------------------------


def generate(towns_dir: Path, entries: int, months: int) -> dict[str, Any]:
    """The town homes of a generated city; returns what was made (also kept in
    DIR/towns/generated.json)."""
    began = time.perf_counter()
    year = Year(scale_for(entries, months))
    placeholder = Signer.generate().public.hex()  # each run pins its own city's key
    towns = {}
    for town in TOWNS:
        towns[town] = create_home(towns_dir / town, tier="town", node_id=town,
                                  name=f"{town} 便民服务中心", parent_id=CITY,
                                  root_key=placeholder)  # fmt: skip
        year.logs[town].signer = towns[town].signer  # the town's own log is signed by its key
        towns[town].store.defer_projections()  # projected once, at the end (catch_up)
        for village in VILLAGES[town]:
            body = trust.enrolment_body(village, f"{village} 便民服务室",
                                        year.logs[village].signer.public.hex(), None)  # fmt: skip
            year.logs[town].append(trust.ENROLLED, body, "2024-12-21T10:00:00+08:00")
    hop1 = Hop1()
    end = datetime(YEAR + months // 12, months % 12 + 1, 20, tzinfo=ZONE)
    last_day = date(YEAR + months // 12, months % 12 + 1, 1)  # cases open before this day
    day = date(YEAR, 1, 1)
    try:
        while day < end.date():
            if day.day == 3 and date(YEAR, 1, 31) < day <= last_day + timedelta(days=2):
                previous = day.replace(day=1) - timedelta(days=1)
                year.run_until(year._at(day, 8, 0))
                year.report(f"{previous:%Y-%m}", day)
                forget_closed(year)
            if day < last_day and year.cal.is_workday(day):
                year.open_day(day)
            year.run_until(year._at(day + timedelta(days=1), 0, 0))
            if day.weekday() == 6:
                deliver(year, towns, year._at(day, 22, 0), hop1)
            day += timedelta(days=1)
        year.run_until(end)
        deliver(year, towns, end - timedelta(hours=1), hop1)
        for node in towns.values():
            node.store.catch_up()
    finally:
        for node in towns.values():
            node.close()
    made = {"entries": entries, "months": months, "scale": year.scale,
            "held": sum(log.seq for log in year.logs.values()), "cases": len(year.cases),
            "hop1_entries": hop1.entries, "hop1_seconds": hop1.seconds,
            "generate_seconds": time.perf_counter() - began}  # fmt: skip
    (towns_dir / GENERATED).write_text(json.dumps(made, indent=1))
    return made


@dataclass
class Hop1:
    entries: int = 0
    seconds: float = 0.0


def forget_closed(year: Year) -> None:
    """Drop the events of closed cases once their facts are kept (a year of 5 M entries
    would not fit in memory otherwise): `report` reads only the facts of those."""
    for case in year.cases:
        if case.facts is not None and case.steps:
            case.events.clear()
            case.steps.clear()


def deliver(year: Year, towns: dict[str, Any], at: datetime, hop1: Hop1) -> None:
    """A week's entries into the town homes: the town's own (as its node wrote them, with
    the signature checkpoints its ingest would record), then each village's push."""
    stamp = at.isoformat()
    for town in TOWNS:
        store = towns[town].store
        own, year.logs[town].pending = year.logs[town].pending, []
        if own:
            with store.transaction():
                store.insert(own, stamp)
                for seq in proofs.checkpoints(own, towns[town].signer.public)[1]:
                    store.mark_signed(town, seq)
        for village in VILLAGES[town]:
            pending, year.logs[village].pending = year.logs[village].pending, []
            for start in range(0, len(pending), MAX_BATCH_ENTRIES):
                runs = decode_batch(encode_batch(pending[start : start + MAX_BATCH_ENTRIES]))
                began = time.perf_counter()
                result = ingest(store, runs, me=town, sender=village, received_at=stamp)
                hop1.seconds += time.perf_counter() - began
                assert not result.rejected, result.rejected[:3]
                hop1.entries += result.applied_total


# --- one configuration: a city, its fronts, the towns' pushes ---------------------------------


@dataclass
class Result:
    engine: str
    fronts: int
    url: str | None = None  # the city's database (PostgreSQL)
    figures: dict[str, Any] = field(default_factory=dict)
    stats_json: Any = None


def run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("ZHIBAO_HOME", None)
    env.pop("ZHIBAO_STORE", None)
    return subprocess.run([*ZHIBAO, *argv], capture_output=True, text=True, env=env, **kw)


def make_city(home: Path, store: str | None) -> str:
    """`zhibao init --tier city` (on `store` if given), the catalogue published and the
    towns enrolled; returns the city's public key."""
    argv = ["init", "--tier", "city", "--node-id", CITY, "--name", "义乌市行政服务中心",
            "--home", str(home), "--json"]  # fmt: skip
    done = run([*argv, "--store", store] if store else argv)
    if done.returncode:
        raise SystemExit(f"zhibao init: {done.stderr.strip()}")
    return str(tomllib.loads((home / "node.toml").read_text("utf-8"))["public_key"])


def enrol_towns(home: Path, towns_dir: Path) -> None:
    with open_home(home) as city:
        publish_items(city, parse_catalogue(CATALOGUE.read_bytes(), CATALOGUE.name),
                      at="2024-12-20T09:00:00+08:00")  # fmt: skip
        for town in TOWNS:
            config = tomllib.loads((towns_dir / town / "node.toml").read_text("utf-8"))
            seal = _seal_public(towns_dir / town / "seal.key")
            body = trust.enrolment_body(town, config["name"], config["public_key"], seal)
            city.append(trust.ENROLLED, body, at="2024-12-20T10:00:00+08:00")


def _seal_public(path: Path) -> str:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    private = X25519PrivateKey.from_private_bytes(bytes.fromhex(path.read_text().strip()))
    return private.public_key().public_bytes_raw().hex()


def copy_towns(towns_dir: Path, to: Path, city_key: str) -> None:
    """A copy of every town home, pinned to the city of this run (the key it pins at init)."""
    for town in TOWNS:
        shutil.copytree(towns_dir / town, to / town)
        path = to / town / "node.toml"
        config = tomllib.loads(path.read_text("utf-8"))
        config["root_key"] = city_key
        path.write_text(tomli_w.dumps(config), "utf-8")
        conn = apsw.Connection(str(to / town / "node.db"))
        with conn:
            key = bytes.fromhex(city_key)
            conn.execute("UPDATE nodes SET public_key = ? WHERE node_id = ?", (key, CITY))
            conn.execute("UPDATE node_keys SET public_key = ? WHERE node_id = ? AND kind = ?",
                         (key, CITY, ENROL))  # fmt: skip
        conn.close()


@dataclass
class Pushes:
    """One town's `zhibao sync --peer FRONT`, run again (up to twice) when the link fails:
    on a loaded machine a round can time out; the next one resumes where it stopped."""

    home: Path
    url: str
    pushed: int = 0
    retries: int = 0
    rejected: list[Any] = field(default_factory=list)
    error: str | None = None

    def run(self, gate: threading.Semaphore) -> None:
        argv = [*ZHIBAO, "sync", "--peer", self.url, "--json", "--home", str(self.home)]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        for attempt in range(3):
            with gate:  # at most --concurrency towns push to one front at a time
                done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
            if done.returncode == 0:
                summary = json.loads(done.stdout)
                self.pushed += int(summary["pushed"])
                self.rejected += summary["rejected"]
                self.error = None
                return
            self.error = done.stderr.strip()[-2000:]
            if "cannot reach" not in done.stderr or attempt == 2:
                return
            self.retries += 1


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class City:
    """What the measurements need of the city's store, on either engine."""

    def __init__(self, home: Path, url: str | None) -> None:
        self.home, self.url = home, url

    def _pg(self, sql: str) -> Any:
        import psycopg

        assert self.url is not None
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(sql).fetchone()
            return row[0] if row else None

    def entries(self) -> int:
        if self.url:
            return int(self._pg("SELECT count(*) FROM entries"))
        return int(count_rows(self.home, "SELECT count(*) FROM entries"))

    def unprojected(self) -> int:
        """Entries stored and not yet projected (what sync.store's UNPROJECTED_SQL says)."""
        if self.url:
            return max(0, int(self._pg(
                "SELECT coalesce(max(id), 0) - coalesce((SELECT CAST(value AS bigint) FROM meta "
                f"WHERE key = '{PROJECTED}'), 0) FROM entries")))  # fmt: skip
        return unprojected(self.home)

    def sizes(self) -> dict[str, int]:
        if self.url:
            return {
                "database_bytes": int(self._pg("SELECT pg_database_size(current_database())")),
                "entries_bytes": int(self._pg(
                    "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) "
                    "+ pg_total_relation_size('entries') FROM pg_inherits "
                    "WHERE inhparent = 'entries'::regclass")),
            }  # fmt: skip
        conn = apsw.Connection(str(self.home / "node.db"))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        try:
            row = conn.execute(
                "SELECT sum(pgsize) FROM dbstat WHERE name IN "
                "(SELECT name FROM sqlite_master WHERE tbl_name = 'entries')"
            ).fetchone()
            entries = row[0] if row else 0
        except apsw.Error:
            entries = 0
        conn.close()
        size = sum(p.stat().st_size for p in self.home.glob("node.db*"))
        return {"database_bytes": size, "entries_bytes": int(entries or 0)}


def measure(engine: str, fronts: int, towns_dir: Path, work: Path, pg: str | None,
            period: str, runs: int, concurrency: int) -> Result:  # fmt: skip
    result = Result(engine, fronts)
    f = result.figures
    home, url = work / "city", None
    if engine == "postgresql":
        assert pg is not None
        url = result.url = create_database(pg)
    city_key = make_city(home, url)
    enrol_towns(home, towns_dir)
    copy_towns(towns_dir, work / "towns", city_key)
    city = City(home, url)
    before = city.entries()
    servers = [Server(home) for _ in range(fronts)]
    try:
        cpu0 = [cpu_seconds(s.pid) for s in servers]
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        rounds = [Pushes(work / "towns" / town, servers[k % fronts].url)
                  for k, town in enumerate(TOWNS)]  # fmt: skip
        gates = [threading.Semaphore(concurrency) for _ in servers]
        threads = [threading.Thread(target=r.run, args=(gates[k % fronts],))
                   for k, r in enumerate(rounds)]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        failed = [r.error for r in rounds if r.error]
        if failed:
            raise SystemExit(f"zhibao sync failed: {failed[0]}")
        pushed = sum(r.pushed for r in rounds)
        rejected = [x for r in rounds for x in r.rejected]
        f["sync_retries"] = sum(r.retries for r in rounds)
        f["push_s"] = time.perf_counter() - began
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        f["towns_cpu_s"] = (after.ru_utime + after.ru_stime) - (children.ru_utime
                                                                + children.ru_stime)  # fmt: skip
        f["fronts_cpu_s"] = sum(cpu_seconds(s.pid) - c for s, c in zip(servers, cpu0, strict=True))
        waited = time.perf_counter()
        while city.unprojected() > 0:
            time.sleep(0.25)
        f["projected_after_s"] = time.perf_counter() - waited
        f["fronts_cpu_with_projection_s"] = sum(
            cpu_seconds(s.pid) - c for s, c in zip(servers, cpu0, strict=True))  # fmt: skip
    except BaseException:
        for server in servers:  # what the fronts said, for the failure's report
            server.proc.terminate()
            try:
                _, err = server.proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                _, err = server.proc.communicate()
            note(f"serve {server.pid} said: {err.strip()[-3000:]}")
        raise
    finally:
        for server in servers:
            server.stop()
    held = city.entries()
    f["entries_pushed"], f["entries_held"] = pushed, held
    f["entries_arrived"] = held - before
    f["rejected"] = len(rejected)
    if held - before != pushed or rejected:  # a round cut by a timeout is not counted
        note(f"{engine}×{fronts}: held {held - before} new entries, pushed {pushed}, "
             f"rejected {rejected[:3]}")  # fmt: skip
    arrived = max(1, held - before)
    f["push_entries_per_s"] = arrived / f["push_s"]
    f["push_cpu_us_per_entry"] = f["fronts_cpu_s"] / arrived * 1e6
    f["towns_cpu_us_per_entry"] = f["towns_cpu_s"] / arrived * 1e6
    f["projection_cpu_us_per_entry"] = (f["fronts_cpu_with_projection_s"] - f["fronts_cpu_s"]
                                        ) / arrived * 1e6  # fmt: skip
    # a command that opens the city and prints a little: what any command costs here
    f["node_show_s"] = timed_runs(["node", "show", "--json", "--home", str(home)], runs)[1]
    stats = ["stats", "--period", period, "--json", "--home", str(home)]
    f["stats_first_s"], f["stats_s"], result.stats_json = timed_runs(stats, runs)
    f["stats_by_node_first_s"], f["stats_by_node_s"], _ = timed_runs(
        [*stats, "--by", "node"], runs)  # fmt: skip
    f["reconcile_first_s"], f["reconcile_s"], found = timed_runs(
        ["reconcile", "--period", period, "--json", "--home", str(home)], min(runs, 2))  # fmt: skip
    f["reconcile_counts"] = json.dumps(found.get("counts", found) if isinstance(found, dict)
                                       else found, sort_keys=True)  # fmt: skip
    sizes = city.sizes()
    f.update(sizes)
    f["bytes_per_entry"] = sizes["database_bytes"] / max(1, held)
    f["entries_bytes_per_entry"] = sizes["entries_bytes"] / max(1, held)
    return result


def timed_runs(argv: list[str], runs: int) -> tuple[float, float, Any]:
    """(first, median of the next `runs`, the JSON printed) of a `zhibao` command."""
    seconds, out = [], None
    for _ in range(1 + runs):
        began = time.perf_counter()
        done = run(argv)
        seconds.append(time.perf_counter() - began)
        if done.returncode:
            raise SystemExit(f"zhibao {' '.join(argv[:3])}: {done.stderr.strip()}")
        out = json.loads(done.stdout)
    return seconds[0], statistics.median(seconds[1:]) if runs else seconds[0], out


# --- PostgreSQL ----------------------------------------------------------------------------------


def private_cluster() -> tuple[str, dict[str, str]]:
    """A private cluster (tests/support/postgres.py), restarted with durability on."""
    from tests.support.postgres import _as_owner, start_cluster

    record = start_cluster(os.getpid())
    bins, top = Path(record["bindir"]), Path(record["top"])
    port = record["url"].rsplit(":", 1)[1].split("/")[0]
    options = (f"-k {top} -p {port} -c listen_addresses=127.0.0.1 -c shared_buffers=256MB "
               "-c max_connections=60 -c log_min_messages=warning")  # fmt: skip
    subprocess.run(_as_owner([str(bins / "pg_ctl"), "-D", str(top / "data"), "-l",
                              str(top / "log"), "-w", "-t", "120", "-o", options, "restart"]),
                   check=True, capture_output=True)  # fmt: skip
    return record["url"], record


def create_database(server: str) -> str:
    import psycopg

    from tests.support.postgres import with_database

    name = "city_" + secrets.token_hex(6)
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'")
    return with_database(server, name)


def drop_database(url: str) -> None:
    import psycopg

    server, name = url.rsplit("/", 1)
    with psycopg.connect(server + "/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def pg_settings(url: str) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name IN "
            "('server_version', 'fsync', 'synchronous_commit', 'shared_buffers', "
            "'full_page_writes') ORDER BY name"
        ).fetchall()
    return ", ".join(f"{n}={v}" for n, v in rows)


# --- the table -----------------------------------------------------------------------------------

COLUMNS = [
    ("failed", "failed", "{}"),
    ("entries_held", "entries at the city", "{:,}"),
    ("push_s", "hop 2: towns → city, wall (s)", "{:.1f}"),
    ("sync_retries", "hop 2: rounds run again after a timeout", "{}"),
    ("push_entries_per_s", "hop 2: entries/s", "{:,.0f}"),
    ("push_cpu_us_per_entry", "hop 2: fronts' CPU per entry (µs)", "{:.0f}"),
    ("towns_cpu_us_per_entry", "hop 2: the 20 `zhibao sync`' CPU per entry (µs)", "{:.0f}"),
    ("projection_cpu_us_per_entry", "projection at the city, fronts' CPU per entry (µs)", "{:.0f}"),
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
    parser.add_argument("--fronts", default="1,2", help="serve processes on PostgreSQL")
    parser.add_argument("--period", default=None, help="the month measured (default: June)")
    parser.add_argument("--runs", type=int, default=3, help="repeats of stats after the first")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=5,
        help="towns pushing to one front at a time (default 5)",
    )
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
            pg, record = private_cluster()
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
                    result = measure(
                        engine, n, towns_dir, work, pg, period, args.runs, args.concurrency
                    )
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


def reuse(towns_dir: Path, entries: int, months: int) -> dict[str, Any] | None:
    path = towns_dir / GENERATED
    if not path.exists():
        return None
    made = json.loads(path.read_text())
    return made if (made["entries"], made["months"]) == (entries, months) else None


if __name__ == "__main__":
    main()
