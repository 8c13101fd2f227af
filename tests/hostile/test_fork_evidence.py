"""Fork evidence travels up (issue #10 item 3), over real `zhibao serve` and `zhibao sync`.

Village A's home is copied; the copy and A each record a case at the same seq and sync
with the town, which finds the fork and writes an `evidence.fork` report into its own log.
The town's next round carries it to the city, which verifies both entries against A's key
and freezes A too; the city's decision (`--keep held` or `--keep other`) then unfreezes A
at town and city after normal sync. With `--keep other`, town and city give up the copy's
entry (kept as evidence), and their cases and figures follow the kept branch.

Attack: members sign reports with their own real keys — the town with an entry it made up
itself, a sibling town about a village not below it, garbage bytes — and push them to the
city: each is quarantined and freezes nobody.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any

import pytest

from sync.fork_evidence import REPORTED, bodies
from sync.protocol.entry import encode_entry
from sync.store import Store
from tests.hostile.harness import sign_raw, stamp_now
from tests.hostile.network import (
    CITY,
    ITEM,
    TOWN,
    TOWN_B,
    VILLAGE_A,
    Net,
    assert_quarantined,
    assert_works,
    heads,
    honest_round,
    zb,
    zj,
)

# the attacks reach the city too: its PostgreSQL runs in the soak run (the CI run's sample
# of a member pushing to a PostgreSQL city: test_city_pushes.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]


def _receive(home: Path, applicant: str) -> str:
    return zb(home, "case", "receive", "--item", ITEM, "--applicant", applicant).stdout.strip()


def _forks(home: Path) -> list[tuple[str, int, str]]:
    return [(f["origin"], f["seq"], f["state"]) for f in zj(home, "fork", "list")["forks"]]


def _applicants(home: Path) -> set[str]:
    rows = zj(home, "case", "list")
    return {str(row["applicant"]) for row in rows if row["case_id"].startswith(VILLAGE_A)}


def _figures(home: Path) -> dict[str, Any]:
    return dict(zj(home, "stats")["total"])


def test_fork_found_at_town_reaches_city_and_keep_held_unfreezes(net: Net) -> None:
    village, town, city = net.home(VILLAGE_A), net.home(TOWN), net.home(CITY)
    twin = Path(shutil.copytree(village, village.parent / "copy-of-a"))
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        _receive(village, "原件村民")
        zb(village, "sync", "--peer", town_url)  # the town holds A's entry; the city not yet
        seq = heads(village)[VILLAGE_A]
        _receive(twin, "副本村民")
        zb(twin, "sync", "--peer", town_url, ok=False)  # a fork at the town: refused
        assert _forks(town) == [(VILLAGE_A, seq, "unresolved")]
        [mine] = zj(town, "fork", "list")["reports"]
        assert (mine["origin"], mine["seq"], mine["by"]) == (VILLAGE_A, seq, TOWN)
        # the report goes up with the town's log: the city freezes A, though it never saw
        # the copy, nor yet A's entry (the town's own log comes first; A's run is refused)
        zb(town, "sync", "--peer", city_url, ok=False)
        assert _forks(city) == [(VILLAGE_A, seq, "unresolved")]
        assert zj(city, "fork", "list")["reports"][0]["by"] == TOWN
        assert heads(city).get(VILLAGE_A, 0) < seq
        zb(city, "fork", "resolve", VILLAGE_A, "--keep", "held", "--reason", "副本来自旧硬盘")
        assert _forks(city) == [(VILLAGE_A, seq, "resolved")]
        zb(town, "sync", "--peer", city_url)  # the decision comes down; A's log goes up
        assert _forks(town) == [(VILLAGE_A, seq, "resolved")]
        _receive(village, "裁定之后")
        zb(village, "sync", "--peer", town_url)
        zb(town, "sync", "--peer", city_url)
        assert heads(town)[VILLAGE_A] == heads(city)[VILLAGE_A] == heads(village)[VILLAGE_A]
        zb(twin, "sync", "--peer", town_url, ok=False)  # the copy cannot freeze A again
        assert _forks(town) == [(VILLAGE_A, seq, "resolved")]
        assert "副本村民" not in _applicants(city) and "原件村民" in _applicants(city)
    assert_works(town, city)


@pytest.mark.soak  # CI keeps the others of this file (15-minute bound)
def test_fork_keep_other_at_city_switches_city_and_town(net: Net) -> None:
    village, town, city = net.home(VILLAGE_A), net.home(TOWN), net.home(CITY)
    twin = Path(shutil.copytree(village, village.parent / "copy-of-a"))
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        _receive(twin, "副本村民")  # the copy syncs first: town and city hold its entry
        zb(twin, "sync", "--peer", town_url)
        zb(town, "sync", "--peer", city_url)
        seq = heads(twin)[VILLAGE_A]
        counted = _figures(town)
        _receive(village, "原件村民")
        zb(village, "sync", "--peer", town_url, ok=False)  # the fork, found at the town
        zb(town, "sync", "--peer", city_url)  # its report: the city holds the copy's entry
        assert _forks(city) == [(VILLAGE_A, seq, "unresolved")]
        copy_hash = zj(city, "fork", "list")["forks"][0]["held_hash"]
        zb(city, "fork", "resolve", VILLAGE_A, "--keep", "other", "--reason", "保留原件")
        for home in (city, town):
            if home == town:
                zb(town, "sync", "--peer", city_url)  # the decision flows down
            listed = zj(home, "fork", "list")
            assert [(f["seq"], f["state"], f["other_hash"]) for f in listed["forks"]] == [
                (seq, "resolved", copy_hash)
            ]
            assert [(a["seq"], a["hash"]) for a in listed["abandoned"]] == [(seq, copy_hash)]
            assert _applicants(home) == {"原件村民"}
            assert zj(home, "log", "verify")["ok"] is True
        assert _figures(town) == counted  # one case either way: the original's now
        # the original goes on by normal sync; the copy is refused without freezing A
        _receive(village, "裁定之后")
        zb(village, "sync", "--peer", town_url)
        zb(town, "sync", "--peer", city_url)
        assert heads(town)[VILLAGE_A] == heads(city)[VILLAGE_A] == heads(village)[VILLAGE_A]
        assert _applicants(city) == _applicants(town) == {"原件村民", "裁定之后"}
        zb(twin, "sync", "--peer", town_url, ok=False)
        assert _forks(town) == [(VILLAGE_A, seq, "resolved")]
    assert_works(town, city)


# --- forged reports ------------------------------------------------------------------------


def _made_up(signer_home: Net, by: str, seq: int, prev: str | None, text: str) -> Any:
    """An entry claiming to be A's at `seq`, signed with `by`'s real key."""
    actor = signer_home.actor(by)
    raw = encode_entry(VILLAGE_A, seq, bytes.fromhex(prev) if prev else None, stamp_now(),
                       "test.note", {"n": 1, "tag": text})  # fmt: skip
    return sign_raw(actor.signer, raw, VILLAGE_A, seq, "test.note")


def test_forged_fork_reports_are_quarantined_and_freeze_nobody(net: Net) -> None:
    village, town, city = net.home(VILLAGE_A), net.home(TOWN), net.home(CITY)
    parent, sibling = net.actor(TOWN), net.actor(TOWN_B)
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        _receive(village, "原件村民")
        zb(village, "sync", "--peer", town_url)
        zb(town, "sync", "--peer", city_url)
        seq = heads(village)[VILLAGE_A]
        [real] = parent.held(VILLAGE_A, seq - 1)
        with Store(village / "node.db") as store:
            below = store.hash_at(VILLAGE_A, seq - 1)
        prev = below.hex() if below else None
        # the town, A's own parent, pairs A's real entry with one it signed itself
        forged = [parent.forge(REPORTED, body) for body in
                  bodies(VILLAGE_A, seq, real, _made_up(net, TOWN, seq, prev, "假"))]  # fmt: skip
        # and a report whose bytes are garbage (hashes and sizes of the real entry)
        junk = bodies(VILLAGE_A, seq, real, _made_up(net, TOWN, seq, prev, "垃圾"))[0]
        junk["data"] = base64.b64encode(b"x" * (junk["sizes"][0] + junk["sizes"][1])).decode()
        garbage = parent.forge(REPORTED, junk)
        # the sibling town, about a village not below it, with A's real entry twice over
        stray = [sibling.forge(REPORTED, body) for body in
                 bodies(VILLAGE_A, seq, real, _made_up(net, TOWN_B, seq, prev, "旁"))]  # fmt: skip
        assert parent.push_own(city_url).status_code == 200
        assert sibling.push_own(city_url).status_code == 200
        assert_quarantined(city, TOWN, {forged[-1].seq, garbage.seq}, "fork.report_bad")
        assert_quarantined(city, TOWN_B, {e.seq for e in stray}, "fork.report_not_authority")
        assert zj(city, "fork", "list")["forks"] == []
        assert zj(city, "fork", "list")["reports"] == []
        # A is frozen nowhere: its next case flows to the city as ever
        honest_round(net, town_url, city_url, village=VILLAGE_A)
        assert heads(city)[VILLAGE_A] == heads(village)[VILLAGE_A] > seq
    assert_works(city)
