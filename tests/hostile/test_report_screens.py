"""What a hostile town signs into a monthly report reaches the city's reconcile table inert,
fitted to 100 columns and named in the reader's language (issue #13, part 4).

The town runs modified software (`Actor`): after its honest report for last month it signs a
correction whose by-item part names an item that is a terminal escape, a bidi override, a
spreadsheet formula and a script. The entry is well formed and signed by an enrolled key, so
the city stores it; reconcile names the town (the part does not add up to the total and
disagrees with the recomputation). The table shows the item escaped where it stood, wraps the
evidence instead of cutting it, and names the kinds in the reader's language; JSON keeps
the kind's key and the item exactly as signed.
"""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cli.common import display_width
from tests.hostile.network import CITY, TOWN, Net, today, zb
from tests.support.servers import ZHIBAO, cli_env
from tests.support.topology import VILLAGE
from tests.tiers import test_figures as figures
from tiers.inert import UNSAFE

# the attacks reach the city too: its PostgreSQL runs in the soak run (the CI run's sample
# of a member pushing to a PostgreSQL city: test_city_pushes.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]

HOSTILE_ITEM = "=cmd|' /C calc'!A0\x1b]0;pwned\x07<script>alert(1)</script>\u202e"
RAW_UNSAFE = {chr(c) for c in UNSAFE if c != 0x0A}


def _last_month() -> str:
    return f"{today().replace(day=1) - timedelta(days=1):%Y-%m}"


def _reconcile(home: Path, period: str, *extra: str, lang: str = "en") -> str:
    done = subprocess.run(
        [ZHIBAO, "reconcile", "--period", period, *extra, "--home", str(home)],
        capture_output=True, env=cli_env(lang), timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    text = done.stdout.decode()
    found = sorted({f"U+{ord(ch):04X}" for ch in text if ch in RAW_UNSAFE})
    assert not found, f"raw control characters reach the reader: {found}"
    return text


def test_hostile_report_part_reaches_reconcile_inert_and_named(net: Net) -> None:
    period = _last_month()
    town, city = net.home(TOWN), net.home(CITY)
    actor = net.actor(TOWN)
    zb(town, "report", "monthly", "--period", period)
    honest: dict[str, Any] = actor.log()[-1].fields()["body"]
    actor.forge("report.monthly", {**honest, "parts": {"item": {HOSTILE_ITEM: {"accepted": 1}}}})
    with net.serving(CITY) as served:
        pushed = actor.push_own(served[CITY].url)
        assert pushed.status_code == 200, pushed.text
    listed = json.loads(_reconcile(city, period, "--json"))
    mine = [f for f in listed["findings"] if f["node_id"] == TOWN]
    assert {f["kind"] for f in mine} >= {"report_mismatch", "report_inconsistent"}
    assert [f["evidence"]["key"] for f in mine if f["evidence"].get("key")] == [HOSTILE_ITEM]
    english, chinese = _reconcile(city, period), _reconcile(city, period, lang="zh")
    for text in (english, chinese):
        assert all(display_width(line) <= 100 for line in text.splitlines()), text
        assert "\\x1b]0;pwned\\x07<script>alert(1)</script>\\u202e" in text.replace("\n", "")
    assert "report mismatch" in english and "report inconsistent" in english
    assert "月报数据不符" in chinese and "月报自相矛盾" in chinese
    assert "report_mismatch" not in chinese and "accepted" not in chinese
    assert "按事项分列" in chinese and "受理量" in chinese  # the part and the count, named


def test_hostile_town_names_a_village_and_stats_files_show_it_inert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the town enrols its village under a name that is a formula, a bidi override and C1
    # controls; the city's `stats --json` (a terminal reads it too) escapes the controls
    # as print_json does, the name parsing back exactly, and the tab-separated table
    # (`--out FILE.txt`, which a spreadsheet opens too) quotes the formula as the CSV does
    name = "=cmd|' /C calc'!A0\u202eevil\u0085\u009b31m\u2066village"
    monkeypatch.setattr(figures, "name_of", lambda node_id: name if node_id == VILLAGE else "x")
    with figures.small_city(tmp_path / "homes") as net:
        figures.hand_built_month(net)
    city = tmp_path / "homes" / CITY

    def stats(*args: str) -> str:
        done = subprocess.run(
            [ZHIBAO, "stats", "--period", "2025-10", *args, "--home", str(city)],
            capture_output=True, env=cli_env("en"), timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode()

    text = stats("--json")
    assert not {ch for ch in text if ch in RAW_UNSAFE}
    assert name in {row["label"] for row in json.loads(text)["rows"]}
    stats("--out", str(tmp_path / "s.txt"))
    rows = [line.split("\t") for line in (tmp_path / "s.txt").read_text().splitlines()]
    (village,) = [row for row in rows if row[0] == VILLAGE]
    assert village[1].startswith("'=cmd|") and "\\u202e" in village[1]
    assert not [cell for row in rows for cell in row if cell.startswith(("=", "+", "@"))]
