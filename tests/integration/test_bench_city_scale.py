"""bench/city_scale.py at a tiny scale, so the benchmark cannot rot: it generates a month
of cases for 20 towns and 300 villages, pushes them to a new city with the real `zhibao
sync` against the real `zhibao serve`, and times stats and reconcile. Its figures are not
checked (speed is never asserted), what it counted is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.postgres import shared_server

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "city_scale.py"

# 20 `zhibao sync` and a few commands: minutes on a loaded 2-core machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def city_scale(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--entries", "700", "--months", "1", "--runs", "0",
         "--dir", str(tmp_path / "bench"), "--json", str(out), *args],
        capture_output=True, text=True, timeout=840, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| entries at the city |" in done.stdout  # the table is printed
    return dict(json.loads(out.read_text()))


def check(figures: dict[str, Any], configurations: list[tuple[str, int]]) -> None:
    generated = figures["generated"]["held"]
    assert generated > 600
    assert [(r["engine"], r["fronts"]) for r in figures["results"]] == configurations
    for result in figures["results"]:
        assert "failed" not in result, result["failed"]
        # every entry of the towns' and villages' logs arrived, plus a heartbeat per town
        # (and one per round run again after a timeout, on a machine too loaded)
        arrived, retries = result["entries_arrived"], result["sync_retries"]
        assert generated + 20 <= arrived <= generated + 20 + retries
        if not result["sync_retries"]:
            assert result["entries_pushed"] == result["entries_arrived"]
        assert result["rejected"] == 0
        assert result["entries_held"] > result["entries_arrived"]  # and the city's own
        counts = json.loads(result["reconcile_counts"])
        assert counts["report_mismatch"] == counts["missing_report"] == 0
        assert result["bytes_per_entry"] > 0
    assert figures["same_stats"]


def test_city_scale_sqlite_tiny(tmp_path: Path) -> None:
    figures = city_scale(tmp_path, "--engines", "sqlite", "--keep")
    check(figures, [("sqlite", 1)])
    # bench/kept_months.py on the city it kept: the month counted, kept and read back
    # equal to a live count
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "kept_months.py"), "--home",
         str(tmp_path / "bench" / "run-sqlite-1" / "city"), "--months", "1-1"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2025-01_equal: yes" in done.stdout, done.stdout


@pytest.mark.postgresql
@pytest.mark.soak  # 1-4 min; two fronts on PostgreSQL run in CI in tests/postgres/test_fronts.py
def test_city_scale_postgresql_tiny(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    server = shared_server(tmp_path_factory)  # the script makes and drops its databases
    figures = city_scale(tmp_path, "--engines", "sqlite,postgresql", "--fronts", "1,2",
                         "--pg", server)  # fmt: skip
    check(figures, [("sqlite", 1), ("postgresql", 1), ("postgresql", 2)])
