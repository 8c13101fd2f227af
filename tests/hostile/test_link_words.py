"""A hostile parent's words reach the link's screens inert (issue #13, part 5).

The town, with its real key (its time answers are signed and check out at the village),
refuses the village's hello with a text full of terminal escapes, bidi overrides, markup
and a spreadsheet formula. The village records the failure; `zhibao status` (text and
JSON), serve's log line and the village's health check show nothing a terminal would obey,
and the health check none of it at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from cli.sync import _ServeLog
from sync.protocol.errors import RefusedError
from sync.round import sync_round
from sync.server import NodeApp
from tests.conftest import MakeTopology
from tests.support.servers import _uvicorn, serve_in_thread, zhibao
from tests.support.topology import TOWN, VILLAGE, Topology
from tiers.node import open_home

NASTY = (
    "\x1b[2J\x1b]0;owned\x07\u202eevil\u202c <script>alert(1)</script> =cmd|' /C calc'!A0 王秀英"
)
RAW = ("\x1b", "\x07", "\u202e", "\u202c")


class RefusesHello:
    """The town's real app, but its hello answers 403 with NASTY as the reason."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/hello":
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": "\x1b[31mnope", "message": NASTY}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@contextmanager
def hostile_town(net: Topology) -> Iterator[str]:
    node = open_home(net.home(TOWN))
    try:
        with _uvicorn(RefusesHello(NodeApp(node).app), "hostile-town") as url:
            yield url
    finally:
        node.close()


@pytest.fixture
def net(make_topology: MakeTopology) -> Topology:
    return make_topology([VILLAGE])


def test_a_parents_refusal_reaches_status_and_the_log_inert(
    net: Topology, capsys: pytest.CaptureFixture[str]
) -> None:
    with (
        hostile_town(net) as url,
        net.open(VILLAGE) as village,
        pytest.raises(RefusedError) as refused,
    ):
        sync_round(village, url)
    text = zhibao(net.home(VILLAGE), "status").stdout
    chinese = zhibao(net.home(VILLAGE), "status", lang="zh").stdout
    shown = zhibao(net.home(VILLAGE), "status", "--json").stdout
    for said in (text, chinese, shown):
        assert not any(ch in said for ch in RAW), repr(said)
    assert "alert(1)" in text and "FAILING" in text and "alert(1)" in chinese
    error = json.loads(shown)["link"]["last_error"]
    assert error["peer"] == url and NASTY in error["message"]  # the exact words, escaped JSON

    _ServeLog().error(refused.value, 0.2)  # serve's line for the same failure
    logged = capsys.readouterr().err
    assert "alert(1)" in logged and "retrying in 0.2 s" in logged
    assert not any(ch in logged for ch in RAW), repr(logged)

    with serve_in_thread(net.home(VILLAGE)) as village_url:
        health = httpx.get(f"{village_url}/v1/health").text
    assert "alert" not in health and "王秀英" not in health and url not in health
