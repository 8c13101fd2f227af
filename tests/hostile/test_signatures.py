"""Attacks 8 and 9: entries whose signatures are garbage below a genuine tip.

A push request is signed by its sender, and the tip's signature vouches for the hash
chain below it; but every stored entry must keep its own author's valid signature, or
`log verify` fails and a later `restore` (which checks every signature) cannot use it.

relay_bad_signatures: a hostile town relays its village's log to the city with every
signature but the tip's replaced. The city keeps or refuses them, but its `log verify`
stays ok and the village can be restored from the city.
author_bad_signatures: a hostile village does the same with its own log (its key signs
only the tip). The town's `log verify` stays ok, and the town still relays that village's
good entries and the other villages' to the city.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sync.node import NODE_DB
from tests.hostile.harness import garbage_signature, stamp_now
from tests.hostile.network import (
    CITY,
    ITEM,
    TOWN,
    VILLAGE_A,
    VILLAGE_C,
    Net,
    assert_works,
    heads,
    honest_round,
    zb,
    zj,
)
from tests.support.servers import zhibao
from tiers.cases import service

# the attacks reach the city too: its PostgreSQL runs in the soak run (the CI run's sample
# of a member pushing to a PostgreSQL city: test_city_pushes.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]


def _hashes(home: Path, origin: str) -> list[str]:
    return [row["hash"] for row in zj(home, "log", "show", "--origin", origin)]


@pytest.mark.slow
def test_relay_bad_signatures_never_reach_the_city_log(net: Net) -> None:
    village, town, city = net.home(VILLAGE_C), net.home(TOWN), net.home(CITY)
    relay = net.actor(TOWN)
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        with net.topology.open(VILLAGE_C) as node:  # an honest day's work, in process
            for name in ("甲", "乙", "丙"):
                service.forward(node, service.receive(node, ITEM, service.Applicant(name)))
        zb(village, "sync", "--peer", town_url)
        held = relay.held(VILLAGE_C)
        assert len(held) >= 6
        forged = [garbage_signature(e) for e in held[:-1]] + held[-1:]
        answer = relay.push(city_url, forged)
        assert answer.status_code < 500, answer.text

        honest_round(net, town_url, city_url)  # the town, honest again, relays as usual
        restored = net.home(VILLAGE_C).parent / "restored"
        shutil.copytree(village, restored)
        for name in (NODE_DB, f"{NODE_DB}-wal", f"{NODE_DB}-shm"):
            (restored / name).unlink(missing_ok=True)
        done = zhibao(restored, "restore", "--from", city_url)
        assert done.returncode == 0, done.stderr
    assert _hashes(restored, VILLAGE_C) == _hashes(village, VILLAGE_C)
    assert zj(restored, "log", "verify")["ok"] is True
    assert_works(town, city)


@pytest.mark.soak  # CI keeps the others of this file (15-minute bound)
@pytest.mark.slow
def test_author_bad_signatures_stay_out_and_the_town_relays_the_rest(net: Net) -> None:
    hostile, town, city = net.actor(VILLAGE_A), net.home(TOWN), net.home(CITY)
    day = stamp_now()[:10].replace("-", "")

    def received(n: int) -> dict[str, object]:
        return {
            "case_id": f"{VILLAGE_A}-{day}-{n:04d}",
            "after": None,
            "item_code": ITEM,
            "applicant": {"name": f"村民{n}"},
            "materials": [],
        }

    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        good = [hostile.forge("case.received", received(n)) for n in (1, 2)]
        assert hostile.push_own(town_url).status_code == 200  # an honest start
        later = [hostile.forge("case.received", received(n)) for n in (3, 4, 5)]
        forged = [garbage_signature(e) for e in later[:-1]] + later[-1:]
        answer = hostile.push(town_url, forged)
        assert answer.status_code < 500, answer.text

        honest_round(net, town_url, city_url)  # includes the town's sync with the city
        assert heads(town)[VILLAGE_A] >= good[-1].seq
        assert heads(city)[VILLAGE_A] == heads(town)[VILLAGE_A]
        assert heads(city)[VILLAGE_C] == heads(net.home(VILLAGE_C))[VILLAGE_C]
    assert_works(town, city)
