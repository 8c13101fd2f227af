"""`zhibao demo` builds a whole city on loopback and every node's log verifies."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_runs_a_whole_city(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--home", str(tmp_path / "city"), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": "/usr/bin:/bin", "ZHIBAO_LANG": "en"},
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout[run.stdout.index("{\n") :])
    assert summary["problems"] == 0
    assert set(summary["entries"]) == {
        "330782",
        "330782001",
        "330782002",
        "330782001201",
        "330782001202",
        "330782002201",
    }
    assert summary["statuses"]["delivered"] >= 3  # the three villages' forwarded cases
    assert {"rejected", "withdrawn", "completed"} <= set(summary["statuses"])
    assert "USB stick" in run.stdout
    # every centre reported, and the reports reconcile; whether the city still has to publish
    # a calendar year (calendar_missing) depends on the day the demo runs, not on the demo
    assert [f for f in summary["findings"] if f["kind"] != "calendar_missing"] == []
    assert summary["stats"]["accepted"] == 21 and summary["stats"]["rated"] == 11
    # the village's two scans were opened at the city, the city's licence printed at the
    # village: each byte for byte what the other side attached, over the cutting line
    opened = tmp_path / "city" / "opened-at-city"
    printed = tmp_path / "city" / "printed-at-village"
    assert sorted(p.name for p in opened.iterdir()) == ["卫生检测报告.pdf", "申请表.jpg"]
    assert [p.name for p in printed.iterdir()] == ["公共场所卫生许可证.pdf"]
    village = tmp_path / "city" / "330782001202"
    case_id = next(c for c in summary["forwarded"] if c.startswith("330782001202"))
    listed = subprocess.run(
        [sys.executable, "-m", "cli.main", "case", "materials", case_id, "--home", str(village),
         "--json"],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    held = {m["file"]: m for m in json.loads(listed.stdout)}
    assert {m["state"] for m in held.values()} == {"here"}
    for path in [*opened.iterdir(), *printed.iterdir()]:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == held[path.name]["sha256"]
    again = subprocess.run(  # a previous demo city is rebuilt, not refused
        [sys.executable, "-m", "cli.main", "demo", "--home", str(tmp_path / "city"), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert again.returncode == 0, again.stderr


def test_demo_refuses_a_directory_that_is_not_a_demo_city(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    run = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--home", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"
