"""A private PostgreSQL cluster for the tests, started once per test run, stopped at its end.

Debian's `postgresql` package provides the server (`scripts/test` installs it as root;
anyone else is told, and the PostgreSQL tests skip saying why; on CI or as root a missing
server is a failure, never a skip). PostgreSQL refuses to run as root, so as root the
cluster belongs to the `postgres` user (`runuser -u postgres -- initdb …`).

The first test that asks for it starts it (`initdb` in a temp dir, then `pg_ctl start`
listening on 127.0.0.1 at a free port and on a socket in that dir), under a file lock that
every pytest-xdist worker of the run shares, and records it in `postgres.json` beside the
workers' temp dirs; the others read the record. The run's controller stops it at the end
(`stop_shared`, from tests/conftest.py's `pytest_sessionfinish`), and a watchdog stops it
should the run be killed. Durability is off (fsync, synchronous_commit): nothing here
survives the run.

`ZHIBAO_TEST_PG` (a postgresql:// URL of a role that may CREATE DATABASE) uses that server
instead. Each test gets a database of its own (`fresh_database`), dropped after it.

Both engines for the city: a test (or module: `pytestmark =
pytest.mark.usefixtures("city_engine")`) that takes the `city_engine` fixture runs twice,
on SQLite and on PostgreSQL (`@pg_in_soak`, `@sqlite_in_soak`: that engine's run in the
soak run only; `@sqlite_only`: once, on SQLite). On PostgreSQL `$ZHIBAO_STORE` names the
test's fresh database, so every city the test builds lands there: through the CLI
(`zhibao init --tier city` reads it; a second city's `init` through tests/support/servers.py
`zhibao` gets a database of its own) and through the helpers (`city_store()`, which
tests/support/topology.py and tests/helpers_cases.py pass to `create_home` for a city; a
second city gets a database of its own, dropped with the test's). A network built once per
session (tests/conftest.py) keeps its city in a template database; each copy gets a
database of its own made from it (`create_database(…, template=…)`, `move_city_store`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from sync import node_store
from sync.logstore import LogStore

RECORD = "postgres.json"
STORE_ENV = "ZHIBAO_STORE"
ROLE = "zhibao"
INSTALL = "sudo apt-get install postgresql"
_SETTINGS = (  # a throwaway cluster: fast, small, nothing kept
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
    "-c shared_buffers=32MB -c max_connections=60 -c log_min_messages=warning"
)


def bindir() -> Path | None:
    """The newest installed server's bin dir (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    ) if Path("/usr/lib/postgresql").is_dir() else []  # fmt: skip
    return found[-1].parent if found else None


def _as_owner(argv: list[str]) -> list[str]:
    """Run `argv` as the cluster's owner: `postgres` when we are root, else ourselves."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _missing(why: str) -> None:
    if os.geteuid() == 0 or os.environ.get("CI"):
        pytest.fail(f"{why}: scripts/test installs it as root (apt-get install -y postgresql)")
    pytest.skip(f"{why} and not root: install it ({INSTALL}) to run tests/postgres")


def start_cluster(watch_pid: int) -> dict[str, str]:
    """initdb and start a cluster in a new temp dir; its record (url, pgdata, bindir).
    A watchdog stops it and removes the dir once process `watch_pid` is gone."""
    bins = bindir()
    if bins is None:
        _missing("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb)")
        raise AssertionError("unreachable")
    top = Path(tempfile.mkdtemp(prefix="zhibao-pg-"))
    data, password = top / "data", secrets.token_hex(16)
    (top / "pw").write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(top, "postgres", "postgres")
        shutil.chown(top / "pw", "postgres", "postgres")
    subprocess.run(
        _as_owner([str(bins / "initdb"), "-D", str(data), "-U", ROLE, f"--pwfile={top / 'pw'}",
                   "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                   "--locale=C", "--no-sync", "--no-instructions"]),
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (top / "pw").unlink()
    for attempt in range(5):  # a port free a moment ago may be taken by now: another
        port = _free_port()
        started = subprocess.run(
            _as_owner([str(bins / "pg_ctl"), "-D", str(data), "-l", str(top / "log"), "-w",
                       "-t", "60", "-o", f"-k {top} -p {port} -c listen_addresses=127.0.0.1 "
                       f"{_SETTINGS}", "start"]),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if started.returncode == 0:
            break
        if attempt == 4:
            log = (top / "log").read_text(errors="replace") if (top / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {started.stderr}\n{log[-2000:]}")
    stop = " ".join(_as_owner([str(bins / "pg_ctl"), "-D", str(data), "stop", "-m", "immediate"]))
    watchdog = (
        f"while kill -0 {watch_pid} 2>/dev/null; do sleep 2; done; "
        f"{stop} >/dev/null 2>&1; rm -rf {top}"
    )
    subprocess.run(  # the run may end without its sessionfinish (kill -9): a watchdog, in
        ["sh", "-c", f"({watchdog}) </dev/null >/dev/null 2>&1 &"],  # the background
        check=True, start_new_session=True,
    )  # fmt: skip
    url = f"postgresql://{ROLE}:{password}@127.0.0.1:{port}/postgres"
    return {"url": url, "top": str(top), "bindir": str(bins)}


def stop_cluster(record: dict[str, str]) -> None:
    """Stop the cluster of `record` (fast shutdown) and remove its dir."""
    bins, top = Path(record["bindir"]), Path(record["top"])
    subprocess.run(
        _as_owner([str(bins / "pg_ctl"), "-D", str(top / "data"), "stop", "-m", "fast"]),
        capture_output=True, check=False,
    )  # fmt: skip
    shutil.rmtree(top, ignore_errors=True)


def _shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def shared_server(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The URL of the run's server (its `postgres` database), started by whoever asks first."""
    given = os.environ.get("ZHIBAO_TEST_PG")
    if given:
        return given
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("psycopg is not installed (the test extras have it)")
    shared = _shared_dir(tmp_path_factory)
    record = shared / RECORD
    with (shared / "postgres.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            # the controller of an xdist run is our parent; without xdist, we are the run
            watch = os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid()
            record.write_text(json.dumps(start_cluster(watch)))
    return str(json.loads(record.read_text())["url"])


def stop_shared(basetemp: Path | None) -> None:
    """At the end of the run (the controller's sessionfinish): stop the server if one was
    started under `basetemp`."""
    if basetemp is None or not (basetemp / RECORD).exists():
        return
    stop_cluster(json.loads((basetemp / RECORD).read_text()))
    (basetemp / RECORD).unlink()


def with_database(url: str, name: str) -> str:
    """`url` naming database `name` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def database_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def create_database(url: str, name: str, *, template: str = "template0") -> str:
    """Database `name` made from `template` on `url`'s server (any database of it); its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        # FILE_COPY (PostgreSQL 15+): 0.06 s here, where the default WAL_LOG took 0.42 s
        strategy = " STRATEGY FILE_COPY" if admin.info.server_version >= 150000 else ""
        admin.execute(f"CREATE DATABASE {name} TEMPLATE {template} ENCODING 'UTF8'{strategy}")
    return with_database(url, name)


def drop_databases(url: str, *names: str, prefix: str | None = None) -> None:
    """Drop `names` (and every database whose name starts with `prefix`) on `url`'s server."""
    import psycopg

    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as admin:
        found = list(names)
        if prefix is not None:
            pattern = prefix.replace("_", "\\_") + "%"
            found += [r[0] for r in admin.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (pattern,)
            )]  # fmt: skip
        for name in found:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """A new empty database on `server` (from template0), dropped when the block ends with
    every database named after it (`NAME_…`: `another_database`)."""
    name = "t_" + secrets.token_hex(8)
    url = create_database(server, name)
    try:
        yield url
    finally:
        drop_databases(server, name, prefix=name + "_")


def another_database(url: str, *, template: str = "template0") -> str:
    """A further database for the test whose fresh database `url` names (`NAME_<hex>`,
    dropped with it), made from `template`."""
    return create_database(url, f"{database_of(url)}_{secrets.token_hex(4)}", template=template)


def store_env() -> str | None:
    """`$ZHIBAO_STORE`: the test's database while `city_engine` runs it on PostgreSQL."""
    return os.environ.get(STORE_ENV) or None


def city_store() -> str | None:
    """The database a city built by a test's helpers keeps its store in: `$ZHIBAO_STORE`
    (set by `city_engine` on PostgreSQL) while no city holds it, then a further database
    for each (`another_database`: a test may build more than one city); None: node.db."""
    url = store_env()
    if url is None:
        return None
    import psycopg

    with psycopg.connect(url) as conn:
        taken = conn.execute("SELECT to_regclass('heads') IS NOT NULL").fetchone() == (True,)
    return another_database(url) if taken else url


@contextlib.contextmanager
def another_writer(store: LogStore) -> Iterator[None]:
    """Another process's writer holding `store` (a long catch-up, a clerk's import) for
    the block: a second connection takes the write lock — SQLite's, or the advisory lock
    PostgreSQL's writers take — and `store` waits a tenth of a second for it, not ten."""
    from sync.pg.store import PgStore

    if isinstance(store, PgStore):
        from sync.pg.store import LOCK_TIMEOUT, WRITE_LOCK

        other = store.reader()  # read only: an advisory lock writes nothing
        other.query(f"SELECT pg_advisory_lock({WRITE_LOCK})")
        store.conn.execute("SET lock_timeout = '100ms'")
        try:
            yield
        finally:
            store.conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
            other.close()
        return
    import apsw

    from sync.store import BUSY_TIMEOUT_MS, Store

    assert isinstance(store, Store)
    writer = apsw.Connection(store.path)
    writer.execute("BEGIN IMMEDIATE")
    store.conn.set_busy_timeout(100)
    try:
        yield
    finally:
        store.conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        writer.execute("ROLLBACK")
        writer.close()


def move_city_store(home: Path, url: str) -> None:
    """Point the city at `home` (a copy) at database `url`: node.toml's store, its passfile."""
    import tomllib

    import tomli_w

    clean, password = node_store.split_store_url(url)
    config = tomllib.loads((home / "node.toml").read_text("utf-8"))
    config["store"] = clean
    (home / "node.toml").write_text(tomli_w.dumps(config), "utf-8")
    (home / node_store.PASSFILE).unlink(missing_ok=True)
    if password is not None:
        node_store.write_passfile(home, clean, password)


ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
# a heavy test of a module opted in: its PostgreSQL run only in the soak run (`-m soak`)
pg_in_soak = pytest.mark.parametrize(
    "city_engine",
    ["sqlite", pytest.param("postgresql", marks=[pytest.mark.postgresql, pytest.mark.soak])],
    indirect=True,
)
# a test whose SQLite run another test covers already: that run in the soak run only
sqlite_in_soak = pytest.mark.parametrize(
    "city_engine",
    [pytest.param("sqlite", marks=pytest.mark.soak),
     pytest.param("postgresql", marks=pytest.mark.postgresql)],
    indirect=True,
)  # fmt: skip


def engines_and(argname: str, values: Sequence[Any], *, pg_in_ci: int) -> pytest.MarkDecorator:
    """Parametrize `city_engine` and `argname` (seeds, say): every value on both engines,
    the PostgreSQL runs of all but the first `pg_in_ci` values in the soak run only."""
    params = []
    for n, value in enumerate(values):
        params.append(pytest.param("sqlite", value, id=f"sqlite-{argname}{value}"))
        marks = [pytest.mark.postgresql] + ([pytest.mark.soak] if n >= pg_in_ci else [])
        name = f"postgresql-{argname}{value}"
        params.append(pytest.param("postgresql", value, marks=marks, id=name))
    return pytest.mark.parametrize(("city_engine", argname), params, indirect=["city_engine"])


PG_SOAK, PG_CI = "pg_soak", "pg_ci"  # markers (registered by tests/conftest.py)


def soak_marks(items: list[pytest.Item]) -> None:
    """The PostgreSQL runs of a module (or test) marked `pg_soak` go to the soak run, but
    those of a test marked `pg_ci`: a bounded sample of a big module in the CI run."""
    for item in items:
        spec = getattr(item, "callspec", None)
        if spec is None or spec.params.get("city_engine") != "postgresql":
            continue
        if item.get_closest_marker(PG_SOAK) and not item.get_closest_marker(PG_CI):
            item.add_marker(pytest.mark.soak)


# a test of a module opted in whose subject is no city (a town's or a village's): SQLite only
sqlite_only = pytest.mark.parametrize("city_engine", ["sqlite"], indirect=True)


@pytest.fixture(params=ENGINES)
def city_engine(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """`sqlite` or `postgresql`: the engine of every city this test builds (see above)."""
    if request.param == "sqlite":
        monkeypatch.delenv(STORE_ENV, raising=False)
        yield "sqlite"
        return
    with fresh_database(shared_server(tmp_path_factory)) as url:
        monkeypatch.setenv(STORE_ENV, url)
        yield "postgresql"
