"""End to end through the `zhibao` program over loopback: a 上报 case from a village is
forwarded to the town, on to the city, decided there; the result flows back down, the
village delivers it and records the rating, and the city ends up holding all of it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.postgres import pg_in_soak
from tests.support.servers import zhibao, zhibao_serve
from tests.support.topology import SHIPPED_CATALOGUE as CATALOGUE

CITY, TOWN, VILLAGE = "330782", "330782001", "330782001201"
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("city_engine")]


def zb(*args: str, home: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    run = zhibao(home, *args)
    if ok:
        assert run.returncode == 0, run.stderr
    return run


def zj(*args: str, home: Path) -> Any:
    return json.loads(zb(*args, "--json", home=home).stdout)


@contextmanager
def serving(home: Path) -> Iterator[str]:
    with zhibao_serve(home) as served:
        yield served.url


def _topology(tmp_path: Path) -> tuple[Path, Path, Path]:
    city, town, village = tmp_path / "city", tmp_path / "town", tmp_path / "village"
    zb("init", "--tier", "city", "--node-id", CITY, "--name", "义乌市行政服务中心", home=city)
    root = zj("node", "show", home=city)["public_key"]
    zb(
        "init",
        "--tier",
        "town",
        "--node-id",
        TOWN,
        "--name",
        "稠城街道",
        "--parent",
        CITY,
        "--root-key",
        root,
        home=town,
    )
    zb(
        "init",
        "--tier",
        "village",
        "--node-id",
        VILLAGE,
        "--name",
        "下骆宅村",
        "--parent",
        TOWN,
        "--root-key",
        root,
        home=village,
    )
    for parent, child, node_id, name in (
        (city, town, TOWN, "稠城街道"),
        (town, village, VILLAGE, "下骆宅村"),
    ):
        keys = zj("node", "show", home=child)
        zb(
            "node",
            "enroll",
            "--node-id",
            node_id,
            "--name",
            name,
            "--public-key",
            keys["public_key"],
            "--seal-key",
            keys["seal_key"],
            home=parent,
        )
    zb("catalogue", "import", str(CATALOGUE), home=city)
    return city, town, village


@pg_in_soak  # 30-40 s on either engine: its city in PostgreSQL in the soak run
def test_forwarded_case_round_trip_village_town_city(tmp_path: Path) -> None:
    city, town, village = _topology(tmp_path)
    with serving(city) as city_url, serving(town) as town_url:
        zb("sync", "--peer", city_url, home=town)
        zb("sync", "--peer", town_url, home=village)
        assert len(zj("catalogue", "list", home=village)) == 15  # the catalogue flowed down

        case_id = zb(
            "case",
            "receive",
            "--item",
            "330782-WS-002",
            "--applicant",
            "王建国",
            "--phone",
            "13805790001",
            "--at",
            "2025-10-09T09:30",
            home=village,
        ).stdout.strip()
        zb("case", "forward", case_id, "--at", "2025-10-09T09:40", home=village)
        assert zj("case", "show", case_id, home=village)["status"] == "in_transit"

        zb("sync", "--peer", town_url, home=village)
        zb("case", "accept", case_id, "--at", "2025-10-10T09:00", home=town)  # takes custody
        zb("case", "forward", case_id, "--at", "2025-10-10T10:00", home=town)
        zb("sync", "--peer", city_url, home=town)
        zb("case", "accept", case_id, "--at", "2025-10-11T09:00", home=city)
        shown = zj("case", "show", case_id, home=city)
        assert shown["holder"] == CITY and shown["status"] == "accepted"
        zb(
            "case",
            "complete",
            case_id,
            "--result",
            "approved",
            "--note",
            "卫生检测合格",
            "--at",
            "2025-10-17T16:00",
            home=city,
        )

        refused = zb("case", "rate", case_id, "--score", "1", home=village, ok=False)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr

        zb("sync", "--peer", city_url, home=town)
        zb("sync", "--peer", town_url, home=village)
        down = zj("case", "show", case_id, home=village)
        assert down["status"] == "completed" and down["result"] == "approved"

        zb(
            "case",
            "deliver",
            case_id,
            "--method",
            "window",
            "--at",
            "2025-10-20T10:00",
            home=village,
        )
        zb(
            "case",
            "rate",
            case_id,
            "--score",
            "1",
            "--comment",
            "办事方便",
            "--at",
            "2025-10-20T10:05",
            home=village,
        )
        zb("sync", "--peer", town_url, home=village)
        zb("sync", "--peer", city_url, home=town)

    final = zj("case", "show", case_id, home=city)
    assert final["status"] == "delivered"
    types = [e["type"] for e in final["events"]]
    assert types[0] == "case.received" and "case.rated" in types and "case.completed" in types
    assert {e["node_id"] for e in final["events"]} == {VILLAGE, TOWN, CITY}
    heads = zj("status", home=city)["heads"]
    assert heads[VILLAGE] == zj("status", home=village)["heads"][VILLAGE]
    assert heads[TOWN] == zj("status", home=town)["heads"][TOWN]
    for home in (city, town, village):
        assert zj("log", "verify", home=home)["ok"] is True
    acknowledged = zj("status", home=village)["acknowledged"]
    assert acknowledged.get(VILLAGE) == heads[VILLAGE]
