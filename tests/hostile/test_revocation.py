"""Attacks with a stolen or retired key (issue #10): modified software holding village A's
real key after its town revoked it, a thief who rotated the stolen key before anyone
noticed, and one holding the key a planned rotation retired (`node.key.old`).

Every one of them is refused on each way in — its entries pushed to the town or straight
to the city, its requests, a bundle it signs — counted where it tried (`status`
"revoked_key_used", `reconcile` kind "revoked_key_used"), and the honest network goes on.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from sync.keyfiles import OLD_KEY, read_secret
from sync.protocol.batch import encode_batch
from sync.protocol.keys import Signer
from tests.hostile.harness import JSON_TYPE, Actor, bundle_bytes, server_id, stamp_now
from tests.hostile.network import (
    CITY,
    ITEM,
    TOWN,
    VILLAGE_A,
    VILLAGE_C,
    Net,
    assert_works,
    findings,
    heads,
    honest_round,
    one_line_error,
    zb,
    zj,
)

# the attacks reach the city too: its PostgreSQL runs in the soak run (the CI run's sample
# of a member pushing to a PostgreSQL city: test_city_pushes.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]


def _case_body(actor: Actor, number: int, applicant: str) -> dict[str, Any]:
    day = stamp_now()[:10].replace("-", "")
    return {
        "case_id": f"{actor.node_id}-{day}-{number:04d}",
        "after": None,
        "item_code": ITEM,
        "applicant": {"name": applicant},
        "materials": [],
    }


def _uses(home: Path, node_id: str) -> dict[tuple[str, str], int]:
    """`status --json` "revoked_key_used" of `node_id`: count by (via, how)."""
    return {
        (u["via"], u["how"]): u["count"]
        for u in zj(home, "status")["revoked_key_used"]
        if u["node_id"] == node_id
    }


def _reported(home: Path, node_id: str) -> set[str]:
    return {
        f["evidence"]["how"] for f in findings(home, "revoked_key_used") if f["node_id"] == node_id
    }


def test_stolen_key_is_refused_on_every_way_in(net: Net, tmp_path: Path) -> None:
    village, town, city = net.home(VILLAGE_A), net.home(TOWN), net.home(CITY)
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        zb(village, "case", "accept", "--item", ITEM, "--applicant", "合法村民")
        zb(village, "sync", "--peer", town_url)
        zb(town, "sync", "--peer", city_url)
        thief = Actor.of(Path(shutil.copytree(village, tmp_path / "stolen")))
        zb(town, "node", "revoke", "--node-id", VILLAGE_A, "--reason", "电脑被盗")
        zb(town, "sync", "--peer", city_url)  # the city holds the revocation too
        cut = heads(town)[VILLAGE_A]

        forged = thief.forge("case.received", _case_body(thief, 2, "贼人"))
        assert forged.seq == cut + 1
        for url in (town_url, city_url):  # its requests: no push, no pull, no hello
            assert thief.push(url, [forged]).status_code == 403  # the city: not its child
            assert thief.pull(url, b"{}").status_code == 403
            hello = thief.request("/v1/hello", b"{}", to=server_id(url), content_type=JSON_TYPE)
            answer = hello.send(url)
            assert answer.status_code == 403 and "revoked" in answer.text
        # a bundle it signs, carried to the town by hand
        carried = tmp_path / "carried.zhibao"
        carried.write_bytes(bundle_bytes(thief, TOWN, [encode_batch([forged])], {VILLAGE_A: 1}))
        assert "revoked" in one_line_error(zb(town, "bundle", "import", str(carried), ok=False))

        honest_round(net, town_url, city_url)  # the others go on
    assert heads(town)[VILLAGE_A] == heads(city)[VILLAGE_A] == cut
    assert _uses(town, VILLAGE_A) == {(VILLAGE_A, "request"): 3, (VILLAGE_A, "bundle"): 1}
    assert _uses(city, VILLAGE_A) == {(VILLAGE_A, "request"): 2}  # its push: not a child
    assert _reported(town, VILLAGE_A) == {"request", "bundle"}
    assert _reported(city, VILLAGE_A) == {"request", "bundle"}  # its own, and the town's report
    assert_works(town, city)


@pytest.mark.soak  # CI keeps the others of this file (15-minute bound)
def test_a_rotation_the_thief_made_is_cut_off_with_the_stolen_key(net: Net, tmp_path: Path) -> None:
    village, town, city = net.home(VILLAGE_A), net.home(TOWN), net.home(CITY)
    stolen = Path(shutil.copytree(village, tmp_path / "stolen"))
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        # the thief rotates the stolen key first and gets the rotation to the town
        zb(stolen, "node", "rekey")
        zb(stolen, "sync", "--peer", town_url)
        zb(town, "sync", "--peer", city_url)
        zb(town, "node", "revoke", "--node-id", VILLAGE_A, "--reason", "电脑被盗，密钥已被轮换")
        cut = heads(town)[VILLAGE_A]
        assert cut == heads(stolen)[VILLAGE_A]  # the rotation is below the cut-off
        zb(town, "sync", "--peer", city_url)

        # neither its new key nor the stolen one signs anything after the cut-off
        zb(stolen, "case", "accept", "--item", ITEM, "--applicant", "贼人丁")
        assert "revoked" in one_line_error(zb(stolen, "sync", "--peer", town_url, ok=False))
        rotated = Actor.of(stolen)
        forged = rotated.log(after=cut)
        assert forged and rotated.push(town_url, forged).status_code == 403
        assert rotated.pull(city_url, b"{}").status_code == 403
        assert "revoked" in one_line_error(zb(village, "sync", "--peer", town_url, ok=False))
        honest_round(net, town_url, city_url)
    assert heads(town)[VILLAGE_A] == heads(city)[VILLAGE_A] == cut
    assert _uses(town, VILLAGE_A) == {(VILLAGE_A, "request"): 3}
    assert _uses(city, VILLAGE_A) == {(VILLAGE_A, "request"): 1}
    assert_works(town, city)


@pytest.mark.soak  # CI keeps the others of this file (15-minute bound)
def test_the_retired_key_signs_no_entry_after_a_rotation(net: Net, tmp_path: Path) -> None:
    village, town, city = net.home(VILLAGE_C), net.home(TOWN), net.home(CITY)
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        zb(village, "case", "accept", "--item", ITEM, "--applicant", "孙七")
        zb(village, "node", "rekey")
        zb(village, "sync", "--peer", town_url)
        zb(town, "sync", "--peer", city_url)
        retired = Signer(read_secret(village / OLD_KEY))
        assert retired.public.hex() != zj(village, "node", "show")["public_key"]
        held = heads(town)[VILLAGE_C]
        # a copy of the home, its retired key in the thief's hands
        thief = Actor(Path(shutil.copytree(village, tmp_path / "backup")), VILLAGE_C, retired)
        forged = thief.forge("case.received", _case_body(thief, 9, "贼人戊"))
        answer = thief.push(town_url, [forged])
        assert answer.status_code == 200, answer.text  # the wire key, for a grace period
        [refused] = answer.json()["result"]["rejected"]
        assert (refused["origin"], refused["seq"]) == (VILLAGE_C, held + 1)
        assert not answer.json()["result"]["applied"]
        honest_round(net, town_url, city_url)  # the village itself goes on, new key
    assert heads(town)[VILLAGE_C] == heads(city)[VILLAGE_C] == held + 1
    assert "贼人戊" not in {case["applicant"] for case in zj(city, "case", "list")}
    assert_works(village, town, city)
