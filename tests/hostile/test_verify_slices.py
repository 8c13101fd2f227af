"""`log verify` on workers (#13) meets what a hostile village sends with its real key.

The village writes a long log of its own and pushes it to its town with every signature
but the tip's replaced by garbage: the chain vouches for them, as at ingest. Whatever the
town keeps of it, its `log verify` on worker threads with small slices (a bad signature in
one slice, the good one that vouches for it in a later one) says exactly what one pass
says, and the command says it in words.
"""

from __future__ import annotations

import pytest

from sync.audit import verify_log
from sync.node import NODE_DB
from sync.store import Store
from tests.hostile.harness import garbage_signature
from tests.hostile.network import TOWN, VILLAGE_A, Net, zb, zj


@pytest.mark.slow
def test_garbage_signatures_pushed_by_a_village_are_judged_alike_on_every_worker(
    net: Net,
) -> None:
    hostile, town = net.actor(VILLAGE_A), net.home(TOWN)
    with net.serving(TOWN) as served:
        url = served[TOWN].url
        assert hostile.push_own(url).status_code == 200  # what it holds already
        have = len(hostile.log())  # its log starts at seq 1
        written = [hostile.forge("test.note", {"n": n}) for n in range(1, 41)]
        forged = [garbage_signature(e) for e in written[:-1]] + written[-1:]
        answer = hostile.push(url, forged)
        assert answer.status_code < 500, answer.text
    with Store(town / NODE_DB) as store:
        alone = verify_log(store, workers=1)
        apart = verify_log(store, workers=2, slice_size=4)
        held = store.head(VILLAGE_A)[0]
    assert apart.to_json() == alone.to_json()
    assert alone.ok, alone.problems
    assert held == have + 40  # kept whole on the tip's word (sync.ingest)
    assert alone.vouched == {VILLAGE_A: 39}  # 10 slices of 4: vouched from a later one
    report = zj(town, "log", "verify", "--workers", "2")
    assert report["ok"] is True and report["entries"] == alone.entries
    assert zb(town, "log", "verify").stdout.startswith(f"OK: {alone.entries} entries from ")
