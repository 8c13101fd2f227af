"""`zhibao log show [--origin ID] [--limit N] [--json]` on a city, on both engines: the log in
(origin, seq) order; `--limit N` its last N entries (read from the end of the log, not by
listing a city's millions first: a speed, measured in bench/README.md, not asserted here);
`--json` written a few hundred entries at a time, the same text as one list printed whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.common import json_text, print_json_list
from tests.postgres.chains import chain, signer_for
from tests.support.postgres import sqlite_only
from tests.support.servers import ok, zhibao
from tiers.node import open_home

pytestmark = pytest.mark.usefixtures("city_engine")

CITY, TOWN, OTHER_TOWN = "330782", "330782001", "330782002"
AT = "2025-10-13T09:00:00+08:00"


def city_with_two_towns(tmp_path: Path) -> Path:
    """A city holding, besides its own entries, four of one town's and three of another's,
    each signed with its town's key; the second town's notes carry terminal controls."""
    home = tmp_path / "city"
    ok(home, "init", "--tier", "city", "--node-id", CITY, "--name", "义乌市行政服务中心")
    with open_home(home) as city:
        city.store.insert(chain(signer_for(TOWN), TOWN, 4), AT)
        city.store.insert(chain(signer_for(OTHER_TOWN), OTHER_TOWN, 3, tag="\x1b[2J\x07ok"), AT)
    return home


def shown(home: Path, *args: str) -> list[tuple[str, int]]:
    return [(e["origin"], e["seq"]) for e in json.loads(ok(home, "log", "show", "--json", *args))]


def test_the_last_n_entries_are_the_end_of_the_whole_list(tmp_path: Path) -> None:
    home = city_with_two_towns(tmp_path)
    whole = json.loads(ok(home, "log", "show", "--json"))
    keys = [(e["origin"], e["seq"]) for e in whole]
    assert keys == sorted(keys) and keys[-7:] == [(TOWN, n) for n in range(1, 5)] + [
        (OTHER_TOWN, n) for n in range(1, 4)
    ]
    assert whole[-1]["body"] == {"n": 3, "tag": "\x1b[2J\x07ok"}  # JSON: the exact value
    assert whole[-1]["type"] == "test.note" and whole[-1]["at"] == AT
    for n in (1, 3, 5, len(keys), len(keys) + 5):
        assert json.loads(ok(home, "log", "show", "--json", "--limit", str(n))) == whole[-n:], n
    assert shown(home, "--limit", "0") == []
    assert shown(home, "--origin", TOWN, "--limit", "2") == [(TOWN, 3), (TOWN, 4)]
    assert shown(home, "--origin", TOWN) == [(TOWN, n) for n in range(1, 5)]
    assert shown(home, "--origin", "330782999", "--limit", "3") == []


def test_the_text_lists_the_last_entries_inert(tmp_path: Path) -> None:
    """A town's notes signed with its own key carry terminal controls: the person reading
    the list gets none of them."""
    home = city_with_two_towns(tmp_path)
    lines = ok(home, "log", "show", "--limit", "2").splitlines()
    assert [line.split()[0] for line in lines] == [f"{OTHER_TOWN}#2", f"{OTHER_TOWN}#3"]
    assert all("\x1b" not in line and "\x07" not in line for line in lines)
    assert "test.note" in lines[-1]


def test_a_limit_below_0_or_past_a_database_integer_is_refused(tmp_path: Path) -> None:
    home = city_with_two_towns(tmp_path)
    for beyond in ("-1", str(2**63)):  # (past a database's integer: no internal error)
        done = zhibao(home, "log", "show", "--limit", beyond)
        assert done.returncode == 2 and done.stdout == ""
        assert "--limit" in done.stderr and "Traceback" not in done.stderr
    whole = json.loads(ok(home, "log", "show", "--json"))
    assert json.loads(ok(home, "log", "show", "--json", "--limit", str(2**63 - 1))) == whole


@sqlite_only  # (no city in it)
@pytest.mark.parametrize(
    "items",
    [
        [],
        [1],
        ["\u2028", None],
        [{"a": [1, {"b": "\x85 c"}], "e": {}}, [], {"x": "y\nz"}],
        [{"n": n} for n in range(1234)],
    ],  # (written in parts)
)
def test_a_list_written_item_by_item_is_the_list_printed_whole(
    items: list[object], capsys: pytest.CaptureFixture[str]
) -> None:
    print_json_list(iter(items))
    assert capsys.readouterr().out == json_text(items) + "\n"
