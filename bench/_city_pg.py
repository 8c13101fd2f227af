"""The city at scale (bench/city_scale.py): the PostgreSQL server the runs use (a private
cluster unless `--pg`), a new database per configuration.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

from _common import cpu_seconds


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
