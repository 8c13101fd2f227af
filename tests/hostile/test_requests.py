"""Attacks 10, 13 and 14: signed requests a server must refuse with a 4xx JSON answer
({"error", "message"}), never a 500, and keep serving.

sibling_push: a town pushes to its sibling town: 403, nothing stored there.
request_for_other_server: a request an enrolled village signed for its town, replayed to
the city or the sibling town: refused.
bad_input_4xx: malformed pull cursors, numbers no integer can hold, JSON nested 100,000
deep, in signed pull bodies and in a pushed batch's header: 4xx with a reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import zstandard

from sync.protocol.batch import MAGIC
from tests.hostile.harness import JSON_TYPE, Actor
from tests.hostile.network import (
    CITY,
    TOWN,
    TOWN_B,
    VILLAGE_A,
    Net,
    assert_works,
    zj,
)

# SQLite only (no city_engine): one module-wide copy of the network (`shared_net`) serves
# every test, its city on SQLite; a member pushing to a PostgreSQL city: test_city_pushes.py

DEEP = 100_000


@pytest.fixture(scope="module")
def urls(shared_net: Net) -> Iterator[dict[str, str]]:
    """The city and both towns served for the whole module."""
    with shared_net.serving(CITY, TOWN, TOWN_B) as served:
        yield {node_id: s.url for node_id, s in served.items()}


def _refused(answer: httpx.Response, *statuses: int) -> dict[str, Any]:
    """A 4xx JSON refusal (one of `statuses` when given) with its error key and message."""
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    if statuses:
        assert answer.status_code in statuses, (answer.status_code, answer.text[:300])
    data: dict[str, Any] = answer.json()
    assert {"error", "message"} <= set(data), data
    return data


def _stored(net: Net, node_id: str) -> dict[str, Any]:
    status = zj(net.home(node_id), "status")
    return {"heads": status["heads"], "held_in_part": status["held_in_part"]}


def test_sibling_push_is_refused_and_stores_nothing(shared_net: Net, urls: dict[str, str]) -> None:
    town = shared_net.actor(TOWN)
    before = _stored(shared_net, TOWN_B)
    _refused(town.push(urls[TOWN_B], town.log()), 403)
    assert _stored(shared_net, TOWN_B) == before


def _hello(actor: Actor, to: str) -> Any:
    return actor.request("/v1/hello", b"{}", to=to, content_type=JSON_TYPE)


def test_request_for_other_server_is_refused(shared_net: Net, urls: dict[str, str]) -> None:
    village = shared_net.actor(VILLAGE_A)
    for path in ("/v1/hello", "/v1/pull"):
        signed = village.request(path, b"{}", to=TOWN, content_type=JSON_TYPE)
        for elsewhere in (CITY, TOWN_B):
            _refused(signed.send(urls[elsewhere]))
        assert signed.send(urls[TOWN]).status_code == 200  # where it was meant to go


def _nested_header() -> bytes:
    plain = MAGIC + b"[" * DEEP + b"]" * DEEP + b"\n"
    return zstandard.ZstdCompressor().compress(plain)


def _header(text: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(MAGIC + text + b"\n")


PULLS = [
    pytest.param(b'{"cursors": {"330782": "abc"}}', id="seq_not_int"),
    pytest.param(b'{"cursors": {"330782": [1]}}', id="seq_a_list"),
    pytest.param(b'{"cursors": []}', id="cursors_a_list"),
    pytest.param(b"[]", id="body_a_list"),
    pytest.param(b'{"cursors": {"330782": 1e999}}', id="seq_infinite"),
    pytest.param(b'{"cursors": {"330782": 123456789012345678901234567890}}', id="seq_huge"),
    pytest.param(b'{"cursors": {}, "limit": 1e999}', id="limit_infinite"),
    pytest.param(b"[" * DEEP + b"]" * DEEP, id="nested_100000"),
    pytest.param(b'{"cursors": ' + b"[" * DEEP + b"]" * DEEP + b"}", id="nested_cursors"),
]


@pytest.mark.parametrize("body", PULLS)
def test_bad_pull_body_is_a_4xx(shared_net: Net, urls: dict[str, str], body: bytes) -> None:
    village = shared_net.actor(VILLAGE_A)
    _refused(village.pull(urls[TOWN], body))
    assert village.pull(urls[TOWN], b'{"cursors": {}}').status_code == 200  # still serving


PUSHES = [
    pytest.param(_nested_header, id="header_nested_100000"),
    pytest.param(lambda: _header(b'{"runs": [["330782001201", 1e999, 1]]}'), id="run_infinite"),
    pytest.param(lambda: _header(b'{"runs": [["330782001201", 1, 1e999]]}'), id="count_infinite"),
    pytest.param(lambda: _header(b'{"runs": {"a": 1}}'), id="runs_an_object"),
]


@pytest.mark.parametrize("batch", PUSHES)
def test_bad_push_batch_is_a_4xx(shared_net: Net, urls: dict[str, str], batch: Any) -> None:
    village = shared_net.actor(VILLAGE_A)
    _refused(village.push_bytes(urls[TOWN], batch()))
    assert village.pull(urls[TOWN], b'{"cursors": {}}').status_code == 200  # still serving


def test_attacked_nodes_keep_working(shared_net: Net, urls: dict[str, str]) -> None:
    """Last in this module (pytest keeps file order): the nodes attacked above still work."""
    assert_works(*(shared_net.home(node_id) for node_id in (CITY, TOWN, TOWN_B)))
