"""`zhibao store migrate --to postgresql://…` and `zhibao store info`: a city's store moved
from node.db to PostgreSQL through the real CLI, with everything a person or a tool reads
the same before and after; every refusal one line with nothing changed; a move killed
half-way leaving the home on node.db and the target refused until `--restart`; an entry
edited in node.db behind the store's back refusing the move, by origin and seq."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import tomllib
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sync.node import NODE_DB
from tests.support.servers import ZHIBAO, cli_env, ok, refused, zhibao_serve
from tests.support.topology import CITY, TOWN, VILLAGE, append_notes
from tests.tiers.test_figures import hand_built_month, push, small_city, t
from tiers import store_move
from tiers.cases import service
from tiers.node import open_home

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"


def city_with_a_month(base: Path) -> Path:
    """A city, a town and a village with October 2025's cases (tests/tiers/test_figures),
    every log at the city, a desk user; closed. The city's home."""
    with small_city(base) as net:
        hand_built_month(net)
    home = base / CITY
    done = subprocess.run([ZHIBAO, "user", "add", "ana", "--role", "admin", "--home", str(home)],
                          input=PASSWORD + "\n", capture_output=True, text=True, env=cli_env(),
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return home


def readings(home: Path, *, brief: bool = False) -> dict[str, Any]:
    """What tools read of the city: log verify, stats (two months and a quarter, by node and
    by item; `brief`: October by node), case list, status (without the store's kind, and the
    time it was asked)."""
    periods, keys = (("2025-10",), ("node",)) if brief else (("2025-09", "2025-10", "2025-Q4"),
                                                             ("node", "item"))  # fmt: skip
    status = json.loads(ok(home, "status", "--json"))
    status.pop("store", None)
    status.get("network", {}).pop("as_of", None)  # the time it was asked
    return {
        "verify": json.loads(ok(home, "log", "verify", "--json")),
        "stats": [
            json.loads(ok(home, "stats", "--period", period, "--by", by, "--json"))
            for period in periods
            for by in keys
        ],
        "cases": json.loads(ok(home, "case", "list", "--json")),
        "status": status,
    }


def tables_of(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        )]  # fmt: skip


def entries_in(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM entries").fetchone()
        return int(row[0]) if row else 0


def config_of(home: Path) -> dict[str, Any]:
    return tomllib.loads((home / "node.toml").read_text("utf-8"))


# --- the move -----------------------------------------------------------------------------


def test_store_migrate_moves_a_city_and_it_keeps_syncing(tmp_path: Path, pg_url: str) -> None:
    home = city_with_a_month(tmp_path)
    before = readings(home)
    assert before["verify"]["ok"] and before["cases"], before
    info = json.loads(ok(home, "store", "info", "--json"))
    assert info["engine"] == "sqlite" and info["entries"] == before["verify"]["entries"]
    assert info["origins"] == 3 and info["bytes"] > 0

    moved = json.loads(ok(home, "store", "migrate", "--to", pg_url, "--json"))

    assert moved["from"] == "sqlite" and moved["entries"] == info["entries"]
    assert moved["origins"] == 3 and ":" not in moved["to"].split("@")[0].split("//")[1]
    assert moved["copied"]["desk_users"] == 1 and moved["rebuilt"]["cases"] == 12
    assert moved["checks"]["log_verify"] and moved["checks"]["stats"]
    assert moved["checks"]["stats_months"] == ["2025-09", "2025-10"]
    assert re.fullmatch(r"node\.db\.migrated-\d{4}-\d\d-\d\d", moved["kept"])
    assert (home / moved["kept"]).exists() and not (home / NODE_DB).exists()
    assert config_of(home)["store"] == moved["to"]  # no password in node.toml
    assert PASSWORD not in (home / "node.toml").read_text()
    assert stat.S_IMODE((home / "store.pgpass").stat().st_mode) == 0o600
    after = readings(home)
    for key, value in before.items():
        if isinstance(value, dict):
            assert {k: after[key].get(k) for k in value} == value, key
        assert after[key] == value, key
    info_after = json.loads(ok(home, "store", "info", "--json"))
    assert info_after["engine"] == "postgresql" and info_after["entries"] == info["entries"]
    assert json.loads(ok(home, "status", "--json"))["store"] == "postgresql"
    text = ok(home, "user", "list", "--json")
    assert "ana" in text

    # the town records more and pushes it; the city (on PostgreSQL now) takes it
    town = open_home(tmp_path / TOWN)
    try:
        new_case = service.accept(town, item_code="A1", applicant=service.Applicant("赵六"),
                                  at=t("11-18"))  # fmt: skip
        city = open_home(home)
        try:
            assert push(town, city, t("11-19")) > 0
        finally:
            city.close()
    finally:
        town.close()
    listed = json.loads(ok(home, "case", "list", "--json"))
    assert new_case in {c["case_id"] for c in listed}
    # …and by a bundle, through the CLI at both ends
    town = open_home(tmp_path / TOWN)
    try:
        later = service.accept(town, item_code="A1", applicant=service.Applicant("钱七"),
                               at=t("11-19"))  # fmt: skip
    finally:
        town.close()
    bundle = tmp_path / "town.zb"
    ok(tmp_path / TOWN, "bundle", "export", "--to", CITY, "--out", str(bundle))
    ok(home, "bundle", "import", str(bundle))
    listed = json.loads(ok(home, "case", "list", "--json"))
    assert later in {c["case_id"] for c in listed}
    assert json.loads(ok(home, "log", "verify", "--json"))["ok"]
    refused(home, "store", "migrate", "--to", pg_url)  # already on PostgreSQL


def test_store_migrate_refuses_a_town_a_served_city_and_a_taken_database(
    tmp_path: Path, pg_url: str
) -> None:
    home = city_with_a_month(tmp_path)
    line = refused(tmp_path / TOWN, "store", "migrate", "--to", pg_url)
    assert "city" in line
    assert "市级" in refused(tmp_path / VILLAGE, "store", "migrate", "--to", pg_url, lang="zh")
    assert tables_of(pg_url) == []

    with zhibao_serve(home) as served:
        line = refused(home, "store", "migrate", "--to", pg_url)
        assert f"pid {served.proc.pid}" in line and "zhibao serve" in line
        assert f"pid {served.proc.pid}" in refused(home, "store", "migrate", "--to", pg_url,
                                                   lang="zh")  # fmt: skip
    assert tables_of(pg_url) == [] and (home / NODE_DB).exists()
    assert "store" not in config_of(home)

    # a database holding another city's log (made by `init --store`) is never touched
    other = tmp_path / "other"
    ok(other, "init", "--tier", "city", "--node-id", "330783", "--name", "东阳市",
       "--store", pg_url)  # fmt: skip
    held = entries_in(pg_url)
    line = refused(home, "store", "migrate", "--to", pg_url)
    assert "330783" in line and "already holds" in line
    line = refused(home, "store", "migrate", "--to", pg_url, "--restart")
    assert "330783" in line
    assert entries_in(pg_url) == held and (home / NODE_DB).exists()
    assert "store" not in config_of(home)


# --- half-way, and a node.db edited behind the store's back -------------------------------


def test_store_migrate_killed_half_way_leaves_the_home_on_sqlite(
    tmp_path: Path, pg_url: str
) -> None:
    home = city_with_a_month(tmp_path)
    city = open_home(home)
    try:
        append_notes(city, 20_000, tag="bulk")  # the kill lands long before the copy ends
    finally:
        city.close()
    before = readings(home, brief=True)
    with subprocess.Popen(
        [ZHIBAO, "store", "migrate", "--to", pg_url, "--progress", "--home", str(home)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(),
    ) as proc:  # fmt: skip
        assert proc.stderr is not None
        first = proc.stderr.readline()  # after the first batch of entries is committed
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert first.startswith(b"Copying: 2,000 of "), first
    landed = entries_in(pg_url)
    assert 0 < landed < before["verify"]["entries"]

    assert readings(home, brief=True) == before  # the home is still node.db, whole
    assert "store" not in config_of(home) and (home / NODE_DB).exists()
    line = refused(home, "store", "migrate", "--to", pg_url)
    assert "--restart" in line and entries_in(pg_url) == landed

    moved = json.loads(ok(home, "store", "migrate", "--to", pg_url, "--restart", "--json"))
    assert moved["entries"] == before["verify"]["entries"]
    assert readings(home, brief=True) == before


@pytest.mark.parametrize("edited", ["raw", "seq"])
def test_store_migrate_refuses_an_entry_edited_in_node_db(
    tmp_path: Path, pg_url: str, edited: str
) -> None:
    """Its bytes, or its seq made a number no seq is (entries go by binary COPY: a value not
    of its column's type fails in the client, and is said as plainly as the server's)."""
    home = city_with_a_month(tmp_path)
    with closing(sqlite3.connect(home / NODE_DB)) as db, db:  # closed: else it holds node.db
        db.execute("DROP TRIGGER entries_no_update")
        (seq, raw), = db.execute(
            "SELECT seq, raw FROM entries WHERE origin = ? AND type = 'case.completed' "
            "ORDER BY seq LIMIT 1", (TOWN,)
        )  # fmt: skip
        if edited == "raw":
            db.execute("UPDATE entries SET raw = ? WHERE origin = ? AND seq = ?",
                       (bytes(raw).replace(b"approved", b"denied!!"), TOWN, seq))  # fmt: skip
        else:
            last = db.execute("SELECT max(seq) FROM entries WHERE origin = ?", (TOWN,))
            seq = last.fetchone()[0] + 0.5  # its last entry's
            db.execute("UPDATE entries SET seq = ? WHERE origin = ? AND seq = ?",
                       (seq, TOWN, seq - 0.5))  # fmt: skip
    line = refused(home, "store", "migrate", "--to", pg_url)
    assert f"Entry {seq} of {TOWN}" in line, line
    assert f"{TOWN} 的第 {seq} 条" in refused(home, "store", "migrate", "--to", pg_url, "--restart",
                                             lang="zh")  # fmt: skip
    assert (home / NODE_DB).exists() and "store" not in config_of(home)
    assert json.loads(ok(home, "store", "info", "--json"))["engine"] == "sqlite"


# --- every table accounted for ------------------------------------------------------------


def test_store_migrate_accounts_for_every_table_the_code_makes() -> None:
    """Every `CREATE TABLE` in sync/ and tiers/ (extensions, the store, tables made on first
    use) is copied, rebuilt, part of the log, or SQLite's own: a new table fails here until
    tiers/store_move.py says what a move does with it."""
    made = set()
    for path in [*(ROOT / "sync").rglob("*.py"), *(ROOT / "tiers").rglob("*.py")]:
        if "pg" in path.relative_to(ROOT).parts:
            continue
        made |= set(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", path.read_text("utf-8")))
    assert len(made) > 30, made
    assert store_move.unknown_tables(sorted(made)) == []
    assert not set(store_move.COPIED) & set(store_move.REBUILT)
    assert store_move.unknown_tables(["entries", "new_table"]) == ["new_table"]


def test_store_migrate_accounts_for_every_table_of_a_city(tmp_path: Path) -> None:
    home = city_with_a_month(tmp_path)
    with closing(sqlite3.connect(home / NODE_DB)) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert {"cases", "desk_users", "quarantine"} <= set(tables)
    assert store_move.unknown_tables(tables) == []


def test_store_migrate_refuses_a_table_it_does_not_know(tmp_path: Path, pg_url: str) -> None:
    home = tmp_path / "city"
    ok(home, "init", "--tier", "city", "--node-id", CITY, "--name", "义乌市")
    with closing(sqlite3.connect(home / NODE_DB)) as db, db:
        db.execute("CREATE TABLE mystery (x INTEGER)")
    line = refused(home, "store", "migrate", "--to", pg_url)
    assert "(mystery)" in line and "upgrade zhibao" in line
    assert "mystery" in refused(home, "store", "migrate", "--to", pg_url, lang="zh")
    assert tables_of(pg_url) == [] and "store" not in config_of(home)


def test_store_migrate_refuses_an_entry_re_signed_in_node_db(tmp_path: Path, pg_url: str) -> None:
    """The last entry of a log edited with its hash made again: the database takes it (its
    hash is its bytes', nothing chains after it), `log verify` on the target does not."""
    home = city_with_a_month(tmp_path)
    with closing(sqlite3.connect(home / NODE_DB)) as db, db:
        db.execute("DROP TRIGGER entries_no_update")
        ((seq, raw),) = db.execute(
            "SELECT seq, raw FROM entries WHERE origin = ? ORDER BY seq DESC LIMIT 1", (VILLAGE,)
        )
        edited = bytes(raw).replace(b'"score":1', b'"score":5')
        assert edited != bytes(raw)
        db.execute(
            "UPDATE entries SET raw = ?, hash = ? WHERE origin = ? AND seq = ?",
            (edited, hashlib.sha256(edited).digest(), VILLAGE, seq),
        )
    line = refused(home, "store", "migrate", "--to", pg_url)
    assert f"Entry {seq} of {VILLAGE} in node.db is not what its author signed" in line, line
    assert (home / NODE_DB).exists() and "store" not in config_of(home)
