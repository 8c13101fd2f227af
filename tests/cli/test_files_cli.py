"""Files at rest and files an operator names: a node's data is its owner's, a mistake is one
clear line (exit 1, nothing written), and bundles are sealed unless asked otherwise."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sync.protocol.bundle import MAX_BUNDLE_BYTES, MAX_RECEIPT_BYTES, RECEIPT_MAGIC
from sync.protocol.keys import Signer
from tests.support.servers import zhibao
from tests.support.topology import CITY, TOWN, VILLAGE, VILLAGE_2, Topology
from tiers.node import open_home


def ok(home: Path, *args: str) -> str:
    done = zhibao(home, *args)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    return done.stdout


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The message of a command that must fail as an operator's mistake does."""
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.startswith("zhibao: ") and done.stderr.count("\n") == 1, done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    return done.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def listing(*folders: Path) -> dict[str, list[str]]:
    return {str(f): sorted(p.name for p in f.iterdir()) for f in folders}


# --- data at rest -----------------------------------------------------------------------------


def test_files_home_and_database_are_the_owners_only(tmp_path: Path) -> None:
    home = tmp_path / "city"
    ok(home, "init", "--tier", "city", "--node-id", CITY, "--name", "市")
    assert mode(home) == 0o700
    for name in ("node.db", "node.key", "seal.key"):
        assert mode(home / name) == 0o600, name
    node = open_home(home)  # while open (and written), SQLite keeps -wal and -shm
    try:
        node.append("test.note", {"n": 1})
        for name in ("node.db-wal", "node.db-shm"):
            assert mode(home / name) == 0o600, name
    finally:
        node.close()
    assert ok(home, "status")  # nothing to warn about


def test_files_database_recreated_for_a_restore_is_the_owners_only(topology: Topology) -> None:
    home = topology.home(TOWN)
    for name in ("node.db", "node.db-wal", "node.db-shm"):
        (home / name).unlink(missing_ok=True)
    open_home(home, rebuild=True).close()  # the disk died: an empty database, for `restore`
    assert mode(home / "node.db") == 0o600


@pytest.mark.parametrize(
    ("path", "loose"),
    [pytest.param("node.db", 0o644, id="database-readable"),
     pytest.param("node.db", 0o620, id="database-group-writable"),
     pytest.param(".", 0o755, id="home-listable")],
)  # fmt: skip
def test_files_open_home_warns_when_others_can_reach_it(
    topology: Topology, path: str, loose: int
) -> None:
    home = topology.home(TOWN)
    quiet = ok(home, "status")
    (home / path).chmod(loose)
    done = zhibao(home, "status")
    assert done.returncode == 0 and done.stdout == quiet  # it warns; it does not refuse
    assert done.stderr.count("\n") == 1
    assert f"chmod 700 {home}; chmod 600 {home}/node.db*" in done.stderr
    (home / path).chmod(0o700 if path == "." else 0o600)
    assert ok(home, "status") == quiet


def test_files_init_in_an_open_folder_warns(tmp_path: Path) -> None:
    home = tmp_path / "shared"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    done = zhibao(home, "init", "--tier", "city", "--node-id", CITY, "--name", "市")
    assert done.returncode == 0 and "chmod 700" in done.stderr
    assert mode(home / "node.db") == 0o600


# --- an operator's mistakes -------------------------------------------------------------------


@pytest.fixture
def stick(topology: Topology, tmp_path: Path) -> dict[str, Any]:
    """A bundle from the village to the town, and a folder of things to get wrong."""
    work = tmp_path / "work"
    work.mkdir()
    bundle = work / "up.zb"
    ok(topology.home(VILLAGE), "bundle", "export", "--to", TOWN, "--out", str(bundle))
    (work / "folder").mkdir()
    os.mkfifo(work / "fifo")
    sparse = work / "huge.zb"
    with sparse.open("wb") as handle:
        handle.truncate(MAX_BUNDLE_BYTES + 1)  # sparse: costs no disk
    receipt = work / "huge.receipt"
    with receipt.open("wb") as handle:
        handle.write(RECEIPT_MAGIC + b"\x01")
        handle.truncate(MAX_RECEIPT_BYTES + 1)
    return {"work": work, "bundle": bundle}


MISTAKES = [  # (id, node, command line, what the message says)
    ("stats-out-missing-folder", CITY, "stats --out {work}/missing/s.txt", "cannot write"),
    ("stats-csv-missing-folder", CITY, "stats --format csv --out {work}/missing/s.csv",
     "cannot write"),
    ("stats-out-directory", CITY, "stats --format xlsx --out {work}/folder", "is a directory"),
    ("stats-out-under-a-file", CITY, "stats --out {work}/up.zb/s.txt", "not a directory"),
    ("export-missing-folder", TOWN, f"bundle export --to {VILLAGE} --out {{work}}/missing/b",
     "cannot write"),
    ("export-out-directory", TOWN, f"bundle export --to {VILLAGE} --out {{work}}/folder",
     "is a directory"),
    ("import-missing-file", TOWN, "bundle import {work}/missing.zb", "no such file"),
    ("import-directory", TOWN, "bundle import {work}/folder", "is a directory"),
    ("import-fifo", TOWN, "bundle import {work}/fifo", "not a regular file"),
    ("import-too-big", TOWN, "bundle import {work}/huge.zb", "too big"),
    ("receipt-too-big", TOWN, "bundle import {work}/huge.receipt", "too big"),
    ("receipt-out-missing-folder", TOWN,
     "bundle import {work}/up.zb --receipt-out {work}/missing/r", "cannot write"),
    ("catalogue-missing-file", CITY, "catalogue import {work}/missing.csv", "no such file"),
    ("catalogue-directory", CITY, "catalogue import {work}/folder", "is a directory"),
    ("calendar-directory", CITY, "calendar import {work}/folder", "is a directory"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("node_id", "line", "said"), [pytest.param(*rest, id=name) for name, *rest in MISTAKES]
)
def test_files_operator_mistake_is_one_clear_line(
    topology: Topology, stick: dict[str, Any], node_id: str, line: str, said: str
) -> None:
    home, work = topology.home(node_id), stick["work"]
    held = json.loads(ok(home, "status", "--json"))["heads"]
    before = listing(work, work / "folder", home)
    done = zhibao(home, *line.format(work=work).split())
    assert said in one_line_error(done)
    assert listing(work, work / "folder", home) == before  # nothing written, nothing left
    assert json.loads(ok(home, "status", "--json"))["heads"] == held  # nothing imported


def test_files_mistake_speaks_the_readers_language(topology: Topology, tmp_path: Path) -> None:
    out = tmp_path / "missing" / "s.csv"
    done = zhibao(topology.home(CITY), "stats", "--format", "csv", "--out", str(out), lang="zh")
    assert one_line_error(done) == f"zhibao: 无法写入 {out}：文件或目录不存在；未写入任何内容\n"


def test_files_unforeseen_os_error_is_not_an_internal_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    home = tmp_path / "a-file" / "home"
    done = zhibao(home, "init", "--tier", "city", "--node-id", CITY, "--name", "市")
    said = one_line_error(done)
    assert said == f"zhibao: cannot access {home}: a part of the path is not a directory\n"


# --- sealed by default --------------------------------------------------------------------------


def export(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return zhibao(home, "bundle", "export", "--json", *args)


def test_files_bundles_are_sealed_unless_asked_otherwise(
    topology: Topology, tmp_path: Path
) -> None:
    town, out = topology.home(TOWN), tmp_path / "b.zb"
    for extra in ((), ("--seal",)):
        done = export(town, "--to", VILLAGE, "--out", str(out), *extra)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        assert json.loads(done.stdout)["sealed"] is True
    done = export(town, "--to", VILLAGE, "--out", str(out), "--no-seal")
    assert done.returncode == 0 and json.loads(done.stdout)["sealed"] is False
    assert (
        done.stderr
        == f"zhibao: warning: {out} is not sealed: it carries personal data in the clear\n"
    )
    key = json.loads(ok(topology.home(VILLAGE), "node", "show", "--json"))["seal_key"]
    contradiction = export(town, "--to", VILLAGE, "--out", str(out), "--no-seal", "--seal-key", key)
    assert contradiction.returncode == 2


def test_files_no_seal_key_known_names_both_ways_out(topology: Topology, tmp_path: Path) -> None:
    town, out = topology.home(TOWN), tmp_path / "b.zb"
    key = Signer.generate().public.hex()
    enrolled = zhibao(
        town, "node", "enroll", "--node-id", VILLAGE_2, "--name", "后宅村", "--public-key", key
    )
    assert enrolled.returncode == 0  # said at once: nothing can be sealed to it
    assert enrolled.stderr.count("\n") == 1 and "--seal-key" in enrolled.stderr
    said = one_line_error(export(town, "--to", VILLAGE_2, "--out", str(out)))  # no --seal-key
    assert "--seal-key" in said and "zhibao node show" in said and "--no-seal" in said
    assert not out.exists()
    done = export(town, "--to", VILLAGE_2, "--out", str(out), "--no-seal")
    assert done.returncode == 0 and "not sealed" in done.stderr
