"""The private wire attacked by a member (issue #10 item 5): village A, enrolled, with its
own real key, signs pushes whose bodies a sealed town must not take.

wrong_key: a real batch sealed to the city's seal key (not the town's): 400
`wire.cannot_open`, one line, nothing stored.
garbage: the sealed magic followed by random bytes: the same.
stolen_body: village B's genuine sealed push, re-signed by A as its own: it opens for B's
request only, so the same refusal; B's own push still goes through.
plain: a real batch in the clear: 403 `wire.plain_refused`.
After each, the town (a real `zhibao serve`) serves the next honest round: `zhibao sync`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sync import trust
from sync.protocol.batch import encode_batch
from sync.protocol.sealed import WIRE_MAGIC, request_info, seal_body
from tests.hostile.harness import Actor, signed_headers, stamp_now
from tests.hostile.network import (
    CITY,
    TOWN,
    VILLAGE_A,
    VILLAGE_B,
    Net,
    honest_round,
    zb,
    zj,
)
from tests.support.wire import SignedRequest

# SQLite only (no city_engine): one module-wide copy of the network (`shared_net`) serves
# every test, its city on SQLite; a member pushing to a PostgreSQL city: test_city_pushes.py


@pytest.fixture(scope="module")
def urls(shared_net: Net) -> Iterator[dict[str, str]]:
    with shared_net.serving(CITY, TOWN) as served:
        yield {node_id: s.url for node_id, s in served.items()}


def _one_line_refusal(answer: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert (answer.status_code, answer.json()["error"]) == (status, error), answer.text[:300]
    data: dict[str, Any] = answer.json()
    assert data["message"] and "\n" not in data["message"]
    return data


def _sealed_to(actor: Actor, key: bytes, body: bytes, to: str) -> SignedRequest:
    """A push by `actor` whose body is `body` sealed to `key`, in this very request's
    context (so only the key is wrong)."""
    stamp, nonce = stamp_now(), os.urandom(16).hex()
    info = request_info("POST", "/v1/push", actor.node_id, to, stamp, nonce)
    sealed = seal_body(body, key, info)
    headers = signed_headers(
        actor.signer, actor.node_id, "POST", "/v1/push", sealed, server_id=to, stamp=stamp,
        nonce=nonce,
    )  # fmt: skip
    return SignedRequest("POST", "/v1/push", sealed, headers)


def _town_heads(net: Net) -> dict[str, int]:
    return dict(zj(net.home(TOWN), "status")["heads"])


def _new_batch(net: Net, actor: Actor) -> bytes:
    """A batch of one genuine new case at the actor's village (what it lacks at the town)."""
    zb(actor.home, "case", "receive", "--item", "330782-MZ-002", "--applicant", "甲村民")
    return encode_batch(actor.log())


def test_member_pushes_a_body_sealed_to_the_wrong_key(
    shared_net: Net, urls: dict[str, str]
) -> None:
    village = shared_net.actor(VILLAGE_A)
    batch = _new_batch(shared_net, village)
    with village.store() as store:
        city_key = trust.seal_key(store, CITY)
    assert city_key is not None
    before = _town_heads(shared_net)
    answer = _sealed_to(village, city_key, batch, TOWN).send(urls[TOWN])
    _one_line_refusal(answer, 400, "wire.cannot_open")
    assert _town_heads(shared_net) == before


def test_member_pushes_garbage_after_the_sealed_magic(
    shared_net: Net, urls: dict[str, str]
) -> None:
    village = shared_net.actor(VILLAGE_A)
    before = _town_heads(shared_net)
    for garbage in (WIRE_MAGIC, WIRE_MAGIC + os.urandom(31), WIRE_MAGIC + os.urandom(5000)):
        answer = _resign(village, garbage).send(urls[TOWN])
        _one_line_refusal(answer, 400, "wire.cannot_open")
    assert _town_heads(shared_net) == before


def _resign(actor: Actor, body: bytes, to: str = TOWN) -> SignedRequest:
    """`body` as it is (no sealing), signed by `actor` as a push to `to`."""
    headers = signed_headers(actor.signer, actor.node_id, "POST", "/v1/push", body, server_id=to)
    return SignedRequest("POST", "/v1/push", body, headers)


def test_member_sends_a_sibling_s_sealed_push_as_its_own(
    shared_net: Net, urls: dict[str, str]
) -> None:
    victim, thief = shared_net.actor(VILLAGE_B), shared_net.actor(VILLAGE_A)
    batch = _new_batch(shared_net, victim)
    genuine = victim.request("/v1/push", batch, to=TOWN)
    assert genuine.body.startswith(WIRE_MAGIC)
    before = _town_heads(shared_net)
    _one_line_refusal(_resign(thief, genuine.body).send(urls[TOWN]), 400, "wire.cannot_open")
    assert _town_heads(shared_net) == before
    assert genuine.send(urls[TOWN]).status_code == 200  # the victim's own push: taken
    assert _town_heads(shared_net)[VILLAGE_B] == len(victim.log())


def test_member_pushes_in_the_clear(shared_net: Net, urls: dict[str, str]) -> None:
    village = shared_net.actor(VILLAGE_A)
    batch = encode_batch(village.log())
    before = _town_heads(shared_net)
    answer = _resign(village, batch).send(urls[TOWN])
    data = _one_line_refusal(answer, 403, "wire.plain_refused")
    assert "--plain" in data["message"]
    assert _town_heads(shared_net) == before


def test_attacked_town_keeps_working(shared_net: Net, urls: dict[str, str]) -> None:
    """Last in this module: an honest village's round goes through the town to the city."""
    honest_round(shared_net, urls[TOWN], urls[CITY])
