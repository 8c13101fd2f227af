"""The city at scale (bench/city_scale.py): one configuration (engine x fronts) — a new
city, its towns pinned to it, the fronts, the towns' pushes (hop 2) and the figures.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import apsw
import tomli_w
from _city_pg import Watch, create_database, server_cpu_seconds
from _common import CATALOGUE, ROOT, Server, count_rows, cpu_seconds, note, unprojected
from stats import CITY, TOWNS

from sync import trust
from sync.keyring import ENROL
from sync.store import PROJECTED
from tiers.catalogue import parse_catalogue
from tiers.node import open_home
from tiers.published import publish_items

ZHIBAO = [sys.executable, "-m", "cli.main"]


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
            period: str, runs: int, concurrency: int,
            pg_data: Path | None = None, watch: bool = False) -> Result:  # fmt: skip
    """One configuration; `pg_data`: the private cluster's data directory (its CPU is
    measured too), None for SQLite or a server of yours; `watch`: what PostgreSQL's
    connections and statements did during hop 2 (_city_pg.Watch)."""
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
        pg_cpu = pg_data is not None and engine == "postgresql"
        server0 = server_cpu_seconds(pg_data) if pg_cpu else 0.0
        watching = Watch(url) if watch and url else None
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
        if watching is not None:
            f["watch"] = watching.stop()
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
        if pg_cpu:
            f["postgres_cpu_s"] = server_cpu_seconds(pg_data) - server0
        waited = time.perf_counter()
        while city.unprojected() > 0:
            time.sleep(0.25)
        f["projected_after_s"] = time.perf_counter() - waited
        f["fronts_cpu_with_projection_s"] = sum(
            cpu_seconds(s.pid) - c for s, c in zip(servers, cpu0, strict=True))  # fmt: skip
        if pg_cpu:
            f["postgres_cpu_with_projection_s"] = server_cpu_seconds(pg_data) - server0
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
    if "postgres_cpu_s" in f:
        f["postgres_cpu_us_per_entry"] = f["postgres_cpu_s"] / arrived * 1e6
        f["postgres_projection_cpu_us_per_entry"] = (
            f["postgres_cpu_with_projection_s"] - f["postgres_cpu_s"]) / arrived * 1e6  # fmt: skip
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
