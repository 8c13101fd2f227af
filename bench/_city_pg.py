"""The city at scale (bench/city_scale.py): the PostgreSQL server the runs use (a private
cluster unless `--pg`), a new database per configuration.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from _common import cpu_seconds

# --watch: pg_stat_statements loaded (its own small cost on every statement)
WATCH_OPTIONS = " -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"


def private_cluster(watch: bool = False) -> tuple[str, dict[str, str]]:
    """A private cluster (tests/support/postgres.py), restarted with durability on
    (`watch`: with pg_stat_statements, for `Watch`)."""
    from tests.support.postgres import _as_owner, start_cluster

    record = start_cluster(os.getpid())
    bins, top = Path(record["bindir"]), Path(record["top"])
    port = record["url"].rsplit(":", 1)[1].split("/")[0]
    options = (f"-k {top} -p {port} -c listen_addresses=127.0.0.1 -c shared_buffers=256MB "
               "-c max_connections=60 -c log_min_messages=warning")  # fmt: skip
    options += WATCH_OPTIONS if watch else ""
    subprocess.run(_as_owner([str(bins / "pg_ctl"), "-D", str(top / "data"), "-l",
                              str(top / "log"), "-w", "-t", "120", "-o", options, "restart"]),
                   check=True, capture_output=True)  # fmt: skip
    return record["url"], record


def server_cpu_seconds(data: Path) -> float:
    """CPU seconds the cluster in `data` has used: the postmaster's, with the backends it
    has reaped, and those of its live processes (each front's connection is one)."""
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    total = cpu_seconds(postmaster, reaped=True)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == postmaster:
                total += cpu_seconds(int(proc.name))
        except (OSError, ValueError):  # gone meanwhile
            continue
    return total


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


class Watch:
    """What the server did while the towns pushed (`--watch`): what each connection to the
    city's database was doing, sampled every SAMPLE_S (pg_stat_activity: running, waiting
    on a lock, on the WAL's fsync, or idle — waiting on its front), and the statements that
    took the server the most time (pg_stat_statements, when the cluster loaded it)."""

    SAMPLE_S = 0.1

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        self.samples: Counter[str] = Counter()
        self._stop = threading.Event()
        with psycopg.connect(url, autocommit=True) as conn:
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                conn.execute("SELECT pg_stat_statements_reset()")
                self.statements = True
            except psycopg.Error:  # not loaded: a server of yours
                self.statements = False
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(self.SAMPLE_S):
                rows = conn.execute(
                    "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'"
                ).fetchall()
                for state, kind, event in rows:
                    what = state or "?"
                    if state == "active" and kind:
                        what += f" {kind}:{event}"
                    elif state == "active":
                        what += " (on CPU)"
                    self.samples[what] += 1

    def stop(self, top: int = 15) -> dict[str, Any]:
        """Stop sampling; the shares of the samples and the `top` statements."""
        import psycopg

        self._stop.set()
        self._thread.join()
        total = max(1, sum(self.samples.values()))
        found: dict[str, Any] = {
            "connection_states": {k: round(v / total, 3) for k, v in self.samples.most_common()}
        }
        if self.statements:
            with psycopg.connect(self.url, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT round(total_exec_time::numeric / 1000, 1), calls, rows, "
                    "round((total_exec_time / greatest(calls, 1))::numeric, 3), "
                    "left(regexp_replace(query, '\\s+', ' ', 'g'), 160) "
                    "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database()) ORDER BY total_exec_time DESC LIMIT %s",
                    (top,),
                ).fetchall()
            found["statements"] = [
                {"seconds": float(s), "calls": c, "rows": r, "ms_per_call": float(m), "query": q}
                for s, c, r, m, q in rows
            ]
        return found
