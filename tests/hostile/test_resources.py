"""Attacks 5, 6 and 7: memory. Each measures the real process's peak resident set
(VmHWM, or the child's ru_maxrss) against a generous bound, MAX_RSS (200 MB).

zip_bomb_push: an enrolled village signs a push whose body is a 32 KB zstd frame that
declares (and holds) 1 GiB of zeros: refused (4xx, or listed as malformed), and an honest
village's sync is answered meanwhile.
zip_bomb_bundle: the same frame inside a bundle signed by the village: `bundle import`
refuses it in one line, within the bound, applying nothing.
unauthenticated_flood: 40 connections each streaming 24 MiB with no zhibao headers to
/v1/push at once: all refused (or cut off), and an honest village's sync goes through.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hostile.harness import bundle_bytes, stream_body, zhibao_measured, zstd_bomb
from tests.hostile.network import (
    MAX_RSS,
    TOWN,
    VILLAGE_A,
    VILLAGE_C,
    Net,
    assert_works,
    heads,
    one_line_error,
    server_rss,
    zb,
)

FLOOD_CONNECTIONS = 40
FLOOD_BYTES = 24 * 2**20


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return zstd_bomb(1 << 30)


def _meanwhile(attacks: list[Callable[[], Any]], honest: Callable[[], None]) -> list[Any]:
    """Start every attack in its own thread, run `honest` while they go on; their results."""
    with ThreadPoolExecutor(len(attacks)) as pool:
        futures: list[Future[Any]] = [pool.submit(attack) for attack in attacks]
        honest()
        return [future.result(timeout=300) for future in futures]


def _honest_sync(net: Net, url: str) -> Callable[[], None]:
    def run() -> None:
        home = net.home(VILLAGE_C)
        zb(home, "case", "receive", "--item", "330782-MZ-002", "--applicant", "诚实村民")
        zb(home, "sync", "--peer", url)
        assert heads(net.home(TOWN))[VILLAGE_C] == heads(home)[VILLAGE_C]

    return run


def _refused_push(answer: httpx.Response) -> bool:
    if 400 <= answer.status_code < 500:
        return {"error", "message"} <= set(answer.json())
    if answer.status_code != 200:
        return False
    result = answer.json()["result"]
    return bool(result["rejected"]) and not any(result["applied"].values())


def test_zip_bomb_push_is_refused_within_bounded_memory(net: Net, bomb: bytes) -> None:
    hostile = net.actor(VILLAGE_A)
    with net.serving(TOWN) as served:
        url = served[TOWN].url
        answers = _meanwhile([lambda: hostile.push_bytes(url, bomb)] * 2, _honest_sync(net, url))
        assert all(_refused_push(a) for a in answers), [(a.status_code, a.text) for a in answers]
        assert server_rss(served[TOWN]) < MAX_RSS, f"{server_rss(served[TOWN]) >> 20} MiB"
    assert_works(net.home(TOWN))


def test_zip_bomb_bundle_is_refused_within_bounded_memory(
    net: Net, bomb: bytes, tmp_path: Path
) -> None:
    bundle = tmp_path / "bomb.zbdl"
    bundle.write_bytes(bundle_bytes(net.actor(VILLAGE_A), TOWN, [bomb], {VILLAGE_A: 1}))
    town = net.home(TOWN)
    before = heads(town)
    done, rss = zhibao_measured(town, "bundle", "import", str(bundle))
    one_line_error(done)
    assert rss < MAX_RSS, f"bundle import peaked at {rss >> 20} MiB"
    assert heads(town) == before
    assert_works(town)


@pytest.mark.slow
def test_unauthenticated_flood_is_refused_within_bounded_memory(net: Net) -> None:
    with net.serving(TOWN) as served:
        url = served[TOWN].url

        def flood() -> int | None:
            return stream_body(url, "/v1/push", FLOOD_BYTES, headers={"content-type": "x"})

        statuses = _meanwhile([flood] * FLOOD_CONNECTIONS, _honest_sync(net, url))
        assert all(s is None or 400 <= s < 500 for s in statuses), statuses
        assert server_rss(served[TOWN]) < MAX_RSS, f"{server_rss(served[TOWN]) >> 20} MiB"
    assert_works(net.home(TOWN))
