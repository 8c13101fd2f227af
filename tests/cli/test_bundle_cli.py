"""`zhibao bundle export|import` and `zhibao restore`, run as the real program."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import zhibao, zhibao_serve
from tests.support.topology import SHIPPED_CATALOGUE as CATALOGUE

CITY, TOWN, VILLAGE, VILLAGE_2 = "330782", "330782001", "330782001201", "330782001202"
APPLICANT = "司马秀英"


def ok(home: Path, *args: str) -> str:
    done = zhibao(home, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def ok_json(home: Path, *args: str) -> Any:
    return json.loads(ok(home, *args, "--json"))


def fails(home: Path, *args: str, status: int = 1) -> str:
    """Run a command that must fail; its one-line error message."""
    done = zhibao(home, *args)
    assert done.returncode == status, (done.stdout, done.stderr)
    if status == 1:
        assert done.stderr.startswith("zhibao: ") and done.stderr.count("\n") == 1, done.stderr
        assert "Traceback" not in done.stderr
    return done.stderr


@dataclass
class Homes:
    base: Path
    city: Path
    town: Path
    village: Path


def init(home: Path, tier: str, node_id: str, root: str | None = None) -> dict[str, Any]:
    args = ["init", "--tier", tier, "--node-id", node_id, "--name", f"{tier} {node_id}"]
    if root:
        args += ["--parent", node_id[: {"town": 6, "village": 9}[tier]], "--root-key", root]
    return ok_json(home, *args)


def enroll(parent: Path, child: dict[str, Any]) -> None:
    ok(parent, "node", "enroll", "--node-id", child["node_id"], "--name", child["name"],
       "--public-key", child["public_key"], "--seal-key", child["seal_key"])  # fmt: skip


def carry(sender: Path, recipient: Path, to: str, out: Path, *extra: str) -> str:
    """Export, import (printing a receipt), import the receipt at the sender."""
    ok(sender, "bundle", "export", "--to", to, "--out", str(out), *extra)
    said = ok(recipient, "bundle", "import", str(out))
    assert "Recorded" in ok(sender, "bundle", "import", str(out) + ".receipt")
    return said


@pytest.fixture
def homes(tmp_path: Path) -> Homes:
    h = Homes(tmp_path, tmp_path / "city", tmp_path / "town", tmp_path / "village")
    city = init(h.city, "city", CITY)
    town = init(h.town, "town", TOWN, city["public_key"])
    village = init(h.village, "village", VILLAGE, city["public_key"])
    enroll(h.city, town)
    enroll(h.town, village)
    ok(h.city, "catalogue", "import", str(CATALOGUE))
    return h


@pytest.mark.slow
def test_bundle_cli_round_trip_up_and_down(homes: Homes) -> None:
    h, stick = homes, homes.base / "stick"
    stick.mkdir()
    city_head = ok_json(h.city, "status")["heads"][CITY]
    assert ok_json(h.town, "status")["heads"].get(CITY, 0) == 0
    said = carry(h.city, h.town, TOWN, stick / "city-town.zb", "--seal")
    assert f"Imported {city_head} new entries from 330782 " in said
    again = ok(h.town, "bundle", "import", str(stick / "city-town.zb"))
    assert again.startswith("Already imported")
    carry(h.town, h.village, VILLAGE, stick / "town-village.zb", "--seal")
    assert len(ok_json(h.village, "catalogue", "list")) == 15

    ok(h.village, "case", "receive", "--item", "330782-WS-001", "--applicant", APPLICANT)
    carry(h.village, h.town, TOWN, stick / "village-town.zb", "--seal")
    assert APPLICANT.encode() not in (stick / "village-town.zb").read_bytes()
    village = ok_json(h.village, "status")
    assert village["acknowledged"] == {VILLAGE: village["heads"][VILLAGE]}

    exported = ok_json(h.town, "bundle", "export", "--to", CITY, "--out", str(stick / "up.zb"))
    assert exported["counts"] == {TOWN: 1, VILLAGE: village["heads"][VILLAGE]}
    assert exported["sealed"]  # by default, to the city's key that came down
    imported = ok_json(h.city, "bundle", "import", str(stick / "up.zb"),
                       "--receipt-out", str(stick / "back.receipt"))  # fmt: skip
    assert imported["applied"] == exported["counts"]
    assert ok_json(h.town, "status")["acknowledged"] == {}
    ok(h.town, "bundle", "import", str(stick / "back.receipt"))
    town = ok_json(h.town, "status")
    assert town["acknowledged"] == {TOWN: 1, VILLAGE: village["heads"][VILLAGE]}
    verified = ok_json(h.city, "log", "verify")
    assert verified["ok"] and verified["problems"] == []


@pytest.mark.slow
def test_bundle_cli_counts_one_entry_in_the_singular(homes: Homes) -> None:
    h, out = homes, homes.base / "one.zb"
    assert ok_json(h.town, "status")["heads"] == {TOWN: 1}
    seal = ok_json(h.city, "node", "show")["seal_key"]
    wrote = ok(h.town, "bundle", "export", "--to", CITY, "--out", str(out), "--seal-key", seal)
    assert wrote.startswith(f"Wrote 1 entry for {CITY} to "), wrote
    said = ok(h.city, "bundle", "import", str(out))
    assert said.startswith(f"Imported 1 new entry from {TOWN} (0 already held)"), said
    again = zhibao(h.city, "bundle", "import", str(out), lang="zh")
    assert f"来自 {TOWN} 的 1 条条目本机均已持有" in again.stdout, again.stdout


@pytest.mark.slow
def test_bundle_cli_refusals_are_one_line(homes: Homes) -> None:
    h = homes
    bundle = h.base / "b.zb"
    ok(h.city, "bundle", "export", "--to", TOWN, "--out", str(bundle))
    before = ok_json(h.town, "status")["heads"]
    assert "addressed to 330782001" in fails(h.village, "bundle", "import", str(bundle))
    cut = h.base / "cut.zb"
    cut.write_bytes(bundle.read_bytes()[:-50])
    assert "truncated" in fails(h.town, "bundle", "import", str(cut))
    assert "cannot read" in fails(h.town, "bundle", "import", str(h.base / "missing.zb"))
    assert "neither above nor below" in fails(h.village, "bundle", "export", "--to", "330782002",
                                              "--out", str(h.base / "x.zb"))  # fmt: skip
    assert "--seal-key" in fails(h.town, "bundle", "export", "--to", CITY, "--seal",
                                 "--out", str(h.base / "y.zb"))  # fmt: skip
    assert not (h.base / "y.zb").exists()
    fails(h.town, "bundle", "export", "--out", str(bundle), status=2)
    assert ok_json(h.town, "status")["heads"] == before
    assert not list(h.base.glob(".*"))  # no temporary files left behind


@pytest.mark.slow
def test_restore_cli_rebuilds_a_town_and_guards_an_old_backup(homes: Homes) -> None:
    h = homes
    carry(h.city, h.town, TOWN, h.base / "down.zb")
    with zhibao_serve(h.city) as city:
        ok(h.town, "sync", "--peer", city.url)
        before = ok_json(h.town, "status")["heads"]
        shutil.copy(h.town / "node.db", h.base / "backup.db")
        for name in ("node.db", "node.db-wal", "node.db-shm"):
            (h.town / name).unlink(missing_ok=True)
        restored = ok_json(h.town, "restore", "--from", city.url)
        assert restored["heads"] == before
        assert ok_json(h.town, "log", "verify")["ok"]
        assert "--force" in fails(h.town, "restore", "--from", city.url)

        root = ok_json(h.city, "node", "show")["public_key"]
        second = init(h.base / "village2", "village", VILLAGE_2, root)
        enroll(h.town, second)  # recording works again after the restore
        ok(h.town, "sync", "--peer", city.url)
        for name in ("node.db-wal", "node.db-shm"):
            (h.town / name).unlink(missing_ok=True)
        shutil.copy(h.base / "backup.db", h.town / "node.db")  # an old backup put back
        assert "zhibao restore" in fails(h.town, "sync", "--peer", city.url)
        enrol = ["node", "enroll", "--node-id", "330782001203", "--name", "x"]
        refused = fails(h.town, *enrol, "--public-key", second["public_key"])
        assert "being restored" in refused
        assert ok_json(h.town, "status")["restoring"]
        ok(h.town, "restore", "--from", city.url)
        assert ok_json(h.town, "status")["heads"][TOWN] == before[TOWN] + 1
        ok(h.town, "sync", "--peer", city.url)
    assert ok_json(h.city, "status")["forks"] == []
