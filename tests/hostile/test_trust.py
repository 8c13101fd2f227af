"""Attacks 11 and 12: who is trusted, and whose clock.

non_parent_enrolment: a village signs a `node.enrolled` for a made-up village under its
town, with a key of its own. The push is answered (no 500), the entry is quarantined
("enrol.not_parent") at the town and at the city, the village's later entries and the
other villages still reach the city, and the made-up key opens no door (403).
fake_time_server: a server that only says it is the parent, and that the year is 2031,
must not move the village's clock: the sync fails in one line and the offset stays.
"""

from __future__ import annotations

import tomllib

import pytest
import tomli_w

from sync import trust
from sync.node import NODE_TOML
from sync.protocol.keys import Signer
from tests.hostile.harness import JSON_TYPE, Actor, fake_server, stamp_now
from tests.hostile.network import (
    CITY,
    ITEM,
    TOWN,
    VILLAGE_A,
    VILLAGE_C,
    Net,
    assert_quarantined,
    assert_works,
    heads,
    honest_round,
    one_line_error,
    zb,
    zj,
)

# the attacks reach the city too: its PostgreSQL runs in the soak run (the CI run's sample
# of a member pushing to a PostgreSQL city: test_city_pushes.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]

MADE_UP = "330782001299"


def test_non_parent_enrolment_is_quarantined_and_trusts_no_one(net: Net) -> None:
    hostile, town, city = net.actor(VILLAGE_A), net.home(TOWN), net.home(CITY)
    impostor = Actor(net.home(VILLAGE_A), MADE_UP, Signer.generate())
    body = trust.enrolment_body(MADE_UP, "子虚村", impostor.signer.public.hex(), None)
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        enrolment = hostile.forge(trust.ENROLLED, body)
        day = stamp_now()[:10].replace("-", "")
        hostile.forge(
            "case.received",
            {
                "case_id": f"{VILLAGE_A}-{day}-0001",
                "after": None,
                "item_code": ITEM,
                "applicant": {"name": "村民"},
                "materials": [],
            },
        )
        answer = hostile.push_own(town_url)
        assert answer.status_code == 200, answer.text
        assert heads(town)[VILLAGE_A] == hostile.log()[-1].seq  # the rest of its log applies

        honest_round(net, town_url, city_url)  # the town relays everything to the city
        assert heads(city)[VILLAGE_A] == hostile.log()[-1].seq
        for home, url in ((town, town_url), (city, city_url)):
            assert_quarantined(home, VILLAGE_A, {enrolment.seq}, "enrol.not_parent")
            server = zj(home, "node", "show")["node_id"]
            hello = impostor.request("/v1/hello", b"{}", to=server, content_type=JSON_TYPE)
            assert hello.send(url).status_code == 403
    assert_works(town, city)


def test_fake_time_server_does_not_move_the_clock(net: Net) -> None:
    village = net.home(VILLAGE_C)
    before = zj(village, "status")["clock_offset_seconds"]
    future = "2031-06-01T10:00:00+08:00"
    answers = {
        "/v1/time": {"time": future, "node_id": TOWN},
        "/v1/hello": {
            "node_id": TOWN,
            "time": future,
            "have": {},
            "receipt": {"raw": "{}", "sig": "00" * 64},
        },
    }
    with fake_server(answers) as url:
        config = tomllib.loads((village / NODE_TOML).read_text("utf-8"))
        (village / NODE_TOML).write_text(tomli_w.dumps({**config, "parent_url": url}), "utf-8")
        one_line_error(zb(village, "sync", ok=False))
    assert zj(village, "status")["clock_offset_seconds"] == before
    assert_works(village)
