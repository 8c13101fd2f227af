"""A node takes its clock offset only from a server it has authenticated (issue #9).

`GET /v1/time?nonce=HEX` is signed by the server's key over the client's challenge; the
client adopts the offset only when that signature verifies with the key enrolled for the
server. A new node that does not know the key yet uses the time for this round's stamps
only, and adopts it once the pull has brought the enrolment. Offsets beyond 400 days are
refused; offsets beyond a day are adopted with a louder warning.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sync.clock import Clock, system_now
from sync.protocol.errors import RefusedError, SyncError
from sync.protocol.keys import Signer, verify
from sync.protocol.messages import time_message
from sync.round import sync_round
from tests.conftest import MakeTopology
from tests.support.servers import _uvicorn, serve_in_thread
from tests.support.state import snapshot_home
from tests.support.topology import TOWN, VILLAGE, Topology, append_notes, create_node, enrol

NEW_VILLAGE = "330782001203"


@pytest.fixture
def net(make_topology: MakeTopology) -> Topology:
    return make_topology([VILLAGE])


@pytest.fixture
def town_url(net: Topology) -> Iterator[str]:
    with serve_in_thread(net.home(TOWN)) as url:
        yield url


def _clock(offset: timedelta) -> Clock:
    return Clock(now=lambda: system_now() + offset)


def _stored_offset(net: Topology, node_id: str) -> str | None:
    with net.open(node_id) as node:
        return node.store.get_meta("clock_offset")


def test_time_answer_is_signed_by_the_server_over_the_challenge(
    net: Topology, town_url: str
) -> None:
    nonce = secrets.token_hex(16)
    answer = httpx.get(f"{town_url}/v1/time", params={"nonce": nonce}).json()
    assert (answer["node_id"], answer["nonce"]) == (TOWN, nonce)
    key = bytes.fromhex(net.keys[TOWN])
    sig = bytes.fromhex(answer["sig"])
    assert verify(key, time_message(TOWN, answer["time"], nonce), sig)
    assert not verify(key, time_message(TOWN, answer["time"], secrets.token_hex(16)), sig)
    unsigned = httpx.get(f"{town_url}/v1/time").json()  # a plain look at the time, as before
    assert set(unsigned) == {"time", "node_id"}


def _fake_time_server(node_id: str, moment: datetime, answer: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """A server that says it is `node_id` and that the time is `moment`, signing with a
    key of its own (or that serves the genuine signed `answer` it captured earlier)."""
    signer = Signer.generate()

    async def time(request: Request) -> JSONResponse:
        if answer is not None:
            return JSONResponse(answer)
        nonce = request.query_params.get("nonce", "")
        stamp = moment.isoformat()
        sig = signer.sign(time_message(node_id, stamp, nonce)).hex()
        return JSONResponse({"time": stamp, "node_id": node_id, "nonce": nonce, "sig": sig})

    return Starlette(routes=[Route("/v1/time", time)])


def test_fake_time_server_cannot_move_the_clock(net: Topology) -> None:
    """A server claiming to be the town says it is 2031: its answer is not signed by the
    town's key, so the village refuses it and its clock stays as it was."""
    fake = _fake_time_server(TOWN, datetime(2031, 6, 1, 9, 0).astimezone())
    with _uvicorn(fake, "fake") as url, net.open(VILLAGE) as village:
        with pytest.raises(RefusedError) as refused:
            sync_round(village, url)
        assert refused.value.key == "sync.time_forged"
        assert village.clock.offset == timedelta()
    assert _stored_offset(net, VILLAGE) is None


def test_unsigned_time_answer_is_not_adopted(net: Topology, town_url: str) -> None:
    """A server (an older zhibao, or an impostor) that answers the time without a
    signature: the village says so and keeps its clock."""
    captured = httpx.get(f"{town_url}/v1/time").json()  # {"time", "node_id"}: no signature
    captured["time"] = (datetime.fromisoformat(captured["time"]) + timedelta(days=3)).isoformat()
    fake = _fake_time_server(TOWN, datetime.now().astimezone(), answer=captured)
    with _uvicorn(fake, "unsigned") as url, net.open(VILLAGE) as village:
        with pytest.raises(RefusedError) as refused:
            sync_round(village, url)
        assert refused.value.key == "sync.time_unsigned"
        assert "older zhibao" in str(refused.value)
    assert _stored_offset(net, VILLAGE) is None


def test_replayed_signed_time_answer_is_refused(net: Topology, town_url: str) -> None:
    """The town's genuine signed answer, captured for another challenge and served again
    by a fake server, proves nothing about now."""
    captured = httpx.get(f"{town_url}/v1/time", params={"nonce": secrets.token_hex(16)}).json()
    captured["time"] = (datetime.fromisoformat(captured["time"]) + timedelta(days=3)).isoformat()
    fake = _fake_time_server(TOWN, datetime.now().astimezone(), answer=captured)
    with _uvicorn(fake, "replay") as url, net.open(VILLAGE) as village:
        with pytest.raises(RefusedError) as refused:
            sync_round(village, url)
        assert refused.value.key == "sync.time_forged"
    assert _stored_offset(net, VILLAGE) is None


def test_clock_days_off_is_adopted_from_the_authenticated_parent_with_a_loud_warning(
    net: Topology, town_url: str
) -> None:
    with net.open(VILLAGE, clock=_clock(timedelta(days=3))) as village:
        summary = sync_round(village, town_url)
        assert abs(summary.clock_offset_seconds + 3 * 86400) < 60
        assert len(summary.warnings) == 1 and "3.0 days" in summary.warnings[0]
    assert abs(int(_stored_offset(net, VILLAGE) or 0) + 3 * 86400) < 60


def test_clock_minutes_off_is_adopted_with_the_usual_warning(net: Topology, town_url: str) -> None:
    with net.open(VILLAGE, clock=_clock(timedelta(minutes=20))) as village:
        summary = sync_round(village, town_url)
    assert abs(summary.clock_offset_seconds + 1200) < 60
    assert len(summary.warnings) == 1 and "days" not in summary.warnings[0]
    assert "clock" in summary.warnings[0]


@pytest.mark.parametrize(
    "offset",
    [
        pytest.param(timedelta(days=-500), id="500-days-behind"),
        pytest.param(timedelta(days=401), id="401-days-ahead"),
    ],
)
def test_absurd_clock_is_not_corrected_and_the_operator_is_told(
    net: Topology, town_url: str, offset: timedelta
) -> None:
    before = snapshot_home(net.home(TOWN))
    with net.open(VILLAGE, clock=_clock(offset)) as village:
        append_notes(village, 1)
        with pytest.raises(SyncError) as refused:
            sync_round(village, town_url)
        assert refused.value.key == "sync.clock_absurd"
        assert "set this computer's date and time" in str(refused.value)
        assert village.clock.offset == timedelta()
    assert _stored_offset(net, VILLAGE) is None
    assert snapshot_home(net.home(TOWN)) == before


def _new_village(net: Topology) -> None:
    """A village just enrolled by the town: it knows only the city's key."""
    with net.open(TOWN) as town:
        new = create_node(net.base, NEW_VILLAGE, town.config.root_key)
        with new:
            enrol(town, new)
            append_notes(new, 2)
    net.homes[NEW_VILLAGE] = net.base / NEW_VILLAGE


def test_new_village_stamps_with_unchecked_time_and_adopts_it_after_the_pull(
    net: Topology, town_url: str
) -> None:
    """Its clock is 3 days ahead and the town's key unknown: the round still works (its
    requests carry the town's time), and the offset is kept only once the pull brought
    the town's enrolment and a signed time answer verified."""
    _new_village(net)
    with net.open(NEW_VILLAGE, clock=_clock(timedelta(days=3))) as village:
        assert village.store.query("SELECT 1 FROM nodes WHERE node_id = ?", (TOWN,)) == []
        summary = sync_round(village, town_url)
        assert summary.pushed == 2
        assert abs(summary.clock_offset_seconds + 3 * 86400) < 60
        assert len(summary.warnings) == 1 and "days" in summary.warnings[0]
    assert abs(int(_stored_offset(net, NEW_VILLAGE) or 0) + 3 * 86400) < 60


def test_new_village_without_a_pull_never_keeps_an_unchecked_offset(
    net: Topology, town_url: str
) -> None:
    """Without the pull nothing vouches for the town's key: its hello is accepted (the
    request carried the town's time, not the village's), then the round stops at the
    town's receipt as before, and the unchecked offset was never kept."""
    _new_village(net)
    with net.open(NEW_VILLAGE, clock=_clock(timedelta(days=3))) as village:
        with pytest.raises(RefusedError) as refused:
            sync_round(village, town_url, pull=False)
        assert refused.value.key == "receipt.unknown_issuer"  # not the town's request.clock
        assert village.clock.offset == timedelta()
    assert _stored_offset(net, NEW_VILLAGE) is None


def test_new_village_refuses_an_absurd_unchecked_time(net: Topology, town_url: str) -> None:
    _new_village(net)
    with (
        net.open(NEW_VILLAGE, clock=_clock(timedelta(days=-800))) as village,
        pytest.raises(SyncError) as refused,
    ):
        sync_round(village, town_url)
    assert refused.value.key == "sync.clock_absurd"
    assert _stored_offset(net, NEW_VILLAGE) is None
