"""A streaming replica on loopback for the tests: a private primary and a hot standby.

The primary is a cluster of its own (`start_cluster` of tests/support/postgres.py), never
the run's shared one: a test here restarts, replicates and stops it without disturbing the
tests on the shared cluster. It is made ready for replication (`wal_level=replica`,
`max_wal_senders`, a `host replication` line for 127.0.0.1 in pg_hba.conf), then

    pg_basebackup -d "host=127.0.0.1 port=P user=zhibao passfile=…" -D STANDBY/data \
        -R -X stream -c fast
    pg_ctl -D STANDBY/data start -o "-p P2 -c hot_standby=on …"

(as the `postgres` user when we are root) gives a standby streaming from it on another
free port. `-R` writes `standby.signal` and `primary_conninfo` (naming the passfile, not the
password). Both are stopped (fast) and their dirs removed when the fixture ends; a watchdog
does it should the test process be killed. `wait_replayed` waits, bounded, until the standby
has replayed everything the primary has written so far (`pg_last_wal_replay_lsn`).

Use: `from tests.support.pg_standby import pg_pair` in a test module (a module-scoped
fixture: one pair for the module's tests), then `replicated_database(pair)` per test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.support.postgres import (
    ROLE,
    _as_owner,
    _free_port,
    _missing,
    fresh_database,
    start_cluster,
    stop_cluster,
)

REPLAY_TIMEOUT_S = 60.0  # a busy shared machine; replay of a few thousand rows takes ms
MIN_WAL_SENDERS = 4
HBA_LINE = f"host replication {ROLE} 127.0.0.1/32 scram-sha-256"
_STANDBY_SETTINGS = (  # as the shared cluster's: a throwaway, fast and small
    "-c hot_standby=on -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
    "-c shared_buffers=32MB -c max_connections=60 -c log_min_messages=warning"
)


@dataclass(frozen=True)
class Pair:
    """A primary and its standby: each one's maintenance database URL, and their records
    (for `stop_cluster`)."""

    primary: str
    standby: str
    records: tuple[dict[str, str], dict[str, str]]

    def on_standby(self, url: str) -> str:
        """`url` (a database on the primary) as the same database on the standby."""
        return _with_port(url, urlsplit(self.standby).port or 5432)


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{host}:{port}"))


def _chown(*paths: Path) -> None:
    if os.geteuid() == 0:
        for path in paths:
            shutil.chown(path, "postgres", "postgres")


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_as_owner(argv), capture_output=True, text=True, check=False)


def configure_for_replication(record: dict[str, str]) -> None:
    """Make the running cluster of `record` a primary a standby may stream from: wal_level
    replica, enough WAL senders (restarting it only if a setting had to change) and a pg_hba
    line letting the role replicate over 127.0.0.1 with its password."""
    import psycopg

    bins, data = Path(record["bindir"]), Path(record["top"]) / "data"
    hba = data / "pg_hba.conf"
    if HBA_LINE not in hba.read_text().splitlines():
        with hba.open("a") as out:  # appending keeps the file's owner
            out.write(HBA_LINE + "\n")
    with psycopg.connect(record["url"], autocommit=True) as conn:
        level = conn.execute("SHOW wal_level").fetchone()
        senders = conn.execute("SHOW max_wal_senders").fetchone()
        restart = False
        if level is None or level[0] not in ("replica", "logical"):
            conn.execute("ALTER SYSTEM SET wal_level = 'replica'")
            restart = True
        if senders is None or int(senders[0]) < MIN_WAL_SENDERS:
            conn.execute(f"ALTER SYSTEM SET max_wal_senders = {MIN_WAL_SENDERS}")
            restart = True
        conn.execute("SELECT pg_reload_conf()")
        rules = conn.execute(
            "SELECT count(*) FROM pg_hba_file_rules WHERE 'replication' = ANY(database) "
            "AND type = 'host' AND address = '127.0.0.1' AND error IS NULL"
        ).fetchone()
        assert rules is not None and rules[0] >= 1, "pg_hba.conf has no replication line"
    if restart:  # pg_ctl restart keeps the options the cluster was started with
        done = _run([str(bins / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "restart",
                     "-m", "fast"])  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl restart failed: {done.stderr}")


def _watchdog(bins: Path, top: Path, pid: int) -> None:
    """Stop the cluster in `top` and remove it once process `pid` is gone (a killed run)."""
    stop = " ".join(_as_owner([str(bins / "pg_ctl"), "-D", str(top / "data"), "stop", "-m",
                               "immediate"]))  # fmt: skip
    script = f"while kill -0 {pid} 2>/dev/null; do sleep 2; done; {stop} >/dev/null 2>&1; "
    script += f"rm -rf {top}"
    subprocess.run(["sh", "-c", f"({script}) </dev/null >/dev/null 2>&1 &"], check=True,
                   start_new_session=True)  # fmt: skip


def start_standby(primary: dict[str, str], watch_pid: int) -> dict[str, str]:
    """A hot standby of the running primary of `primary` (its record), streaming from it on
    another free port; its record (url, top, bindir), as `start_cluster` gives."""
    bins = Path(primary["bindir"])
    source = urlsplit(primary["url"])
    top = Path(tempfile.mkdtemp(prefix="zhibao-pg-standby-"))
    passfile = top / "pgpass"  # libpq's format; read by pg_basebackup and then the standby
    passfile.write_text(f"127.0.0.1:{source.port}:*:{ROLE}:{source.password}\n")
    passfile.chmod(0o600)
    _chown(top, passfile)
    _watchdog(bins, top, watch_pid)
    conninfo = f"host=127.0.0.1 port={source.port} user={ROLE} passfile={passfile}"
    backup = _run([str(bins / "pg_basebackup"), "-d", conninfo, "-D", str(top / "data"), "-R",
                   "-X", "stream", "-c", "fast", "--no-sync"])  # fmt: skip
    if backup.returncode != 0:
        shutil.rmtree(top, ignore_errors=True)
        raise RuntimeError(f"pg_basebackup failed: {backup.stderr}")
    for attempt in range(5):  # a port free a moment ago may be taken by now: another
        port = _free_port()
        started = _run([str(bins / "pg_ctl"), "-D", str(top / "data"), "-l", str(top / "log"),
                        "-w", "-t", "60", "-o", f"-k {top} -p {port} "
                        f"-c listen_addresses=127.0.0.1 {_STANDBY_SETTINGS}", "start"])  # fmt: skip
        if started.returncode == 0:
            break
        if attempt == 4:
            log = (top / "log").read_text(errors="replace") if (top / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start (standby) failed: {started.stderr}\n{log[-2000:]}")
    return {"url": _with_port(primary["url"], port), "top": str(top), "bindir": str(bins)}


def wait_replayed(pair: Pair, timeout: float = REPLAY_TIMEOUT_S) -> str:
    """Wait until the standby has replayed all the primary has written so far (its current
    WAL position, read now); that position. Fails the test after `timeout` seconds."""
    import psycopg

    with psycopg.connect(pair.primary, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    target = str(row[0])
    deadline = time.monotonic() + timeout
    with psycopg.connect(pair.standby, autocommit=True) as conn:
        while True:
            done = conn.execute(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn, pg_last_wal_replay_lsn()::text",
                (target,),
            ).fetchone()
            assert done is not None
            if done[0]:
                return target
            if time.monotonic() > deadline:
                raise AssertionError(f"the standby replayed up to {done[1]}, not {target}, "
                                     f"in {timeout} s")  # fmt: skip
            time.sleep(0.02)  # waiting on another process (the standby's replay), bounded


@contextlib.contextmanager
def replicated_database(pair: Pair) -> Iterator[tuple[str, str]]:
    """A new database on the primary, once the standby has it too: (primary URL, standby
    URL) of it. Dropped on the primary afterwards (the standby follows)."""
    with fresh_database(pair.primary) as url:
        wait_replayed(pair)
        yield url, pair.on_standby(url)


def start_pair(watch_pid: int) -> Pair:
    """A private primary configured for replication and a standby of it, both running."""
    primary = start_cluster(watch_pid)
    try:
        configure_for_replication(primary)
        standby = start_standby(primary, watch_pid)
    except BaseException:
        stop_cluster(primary)
        raise
    return Pair(primary["url"], standby["url"], (primary, standby))


def stop_pair(pair: Pair) -> None:
    """Stop the standby, then the primary, and remove both dirs."""
    primary, standby = pair.records
    stop_cluster(standby)
    stop_cluster(primary)


@pytest.fixture(scope="module")
def pg_pair() -> Iterator[Pair]:
    """A private primary and its streaming standby for this module's tests."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("psycopg is not installed (the test extras have it)")
    pair = start_pair(os.getpid())
    try:
        yield pair
    finally:
        stop_pair(pair)


__all__ = [
    "Pair",
    "configure_for_replication",
    "pg_pair",
    "replicated_database",
    "start_pair",
    "start_standby",
    "stop_pair",
    "wait_replayed",
]
