"""Signatures below a proved tip: stored as sent, and never a way to stall a relay.

A hostile village signs only the last entry of each push with its real key and sends
garbage in every signature below it. The hash chain proves those entries all the same, so
the town takes them; it must then relay them (in batches it cuts itself, smaller than the
village's) to the city, which must take them too, `log verify` must be ok at both, and a
restore of the village from the city must complete.
"""

from __future__ import annotations

import shutil
from itertools import pairwise
from pathlib import Path

import pytest

from sync import proofs
from sync.audit import verify_log
from sync.ingest import ingest
from sync.node import Node
from sync.protocol.batch import decode_batch, encode_batch
from sync.protocol.entry import SignedEntry, encode_entry, sign_entry
from sync.protocol.keys import Signer
from sync.restore import restore_node
from sync.round import sync_round
from tests.support.servers import serve_in_thread
from tests.support.topology import (
    CITY,
    TOWN,
    VILLAGE,
    VILLAGE_2,
    Topology,
    append_notes,
    build_topology,
)
from tiers.node import open_home

# its cities on SQLite, then on PostgreSQL: there in the soak run but for the tests marked
# pg_ci (a bounded sample in CI: tests/support/postgres.py soak_marks)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]

AT = "2026-11-20T10:00:00+08:00"
GARBAGE = b"\x07" * 64
TIPS = (300, 700, 1200)  # where the village's three pushes ended


def _garbled(entries: list[SignedEntry]) -> list[SignedEntry]:
    """Every signature garbage but on the entries ending the village's pushes."""
    return [e if e.seq in TIPS else e._replace(sig=GARBAGE) for e in entries]


def _push(store_node: Node, sender: str, entries: list[SignedEntry]) -> dict[str, object]:
    return ingest(
        store_node.store,
        decode_batch(encode_batch(entries)),
        me=store_node.node_id,
        sender=sender,
        received_at=AT,
    ).to_json()


def test_a_relay_cuts_batches_where_signatures_prove_them(tmp_path: Path) -> None:
    net = build_topology(tmp_path / "net", [CITY, TOWN, VILLAGE, VILLAGE_2])
    with net.open(VILLAGE) as village, net.open(VILLAGE_2) as other:
        append_notes(village, 1200 - village.store.head(VILLAGE)[0], tag="hostile")
        sent = _garbled(village.store.entries(VILLAGE))
        append_notes(other, 50, tag="honest")
        honest = other.store.entries(VILLAGE_2)
    with net.open(TOWN) as town:
        first = 0
        for tip in TIPS:  # three pushes, each proved by its last signature
            answer = _push(town, VILLAGE, sent[first:tip])
            assert answer["rejected"] == [], answer
            first = tip
        assert _push(town, VILLAGE_2, honest)["rejected"] == []
        town_report = verify_log(town.store)
        assert town_report.ok, town_report.problems
        assert town_report.vouched[VILLAGE] == 1200 - len(TIPS)
        plan = [(VILLAGE, 0, 1200)]
        ends = [b[-1].seq for b in proofs.batches(town.store, plan, first=500, size=500)]
        assert ends == [300, 700, 1200]  # never where a garbage signature would end a run
    with serve_in_thread(net.home(CITY)) as city_url, net.open(TOWN) as town:
        summary = sync_round(town, city_url)  # batches of 500, then 4,000: cut back to tips
        assert summary.rejected == []
    with net.open(CITY) as city:
        assert city.store.head(VILLAGE)[0] == 1200
        assert city.store.head(VILLAGE_2)[0] == len(honest)  # the honest village got through
        report = verify_log(city.store)
        assert report.ok, report.problems
    (net.home(VILLAGE) / "node.db").unlink()  # the hostile village's disk dies
    for extra in net.home(VILLAGE).glob("node.db-*"):
        extra.unlink()
    shutil.rmtree(net.home(TOWN))  # and its town is gone: restore from the city
    with serve_in_thread(net.home(CITY)) as city_url:
        node = open_home(net.home(VILLAGE), rebuild=True)
        try:
            restored = restore_node(node, city_url)
            assert restored.heads[VILLAGE] == 1200
            assert verify_log(node.store).ok
        finally:
            node.close()


def test_a_bundle_up_cuts_its_frames_where_signatures_prove_them(tmp_path: Path) -> None:
    """The same by USB stick: the town's bundle to the city holds frames of up to 4,000
    entries; the village's runs of 3,000 (garbage below each tip) must not be cut inside."""
    from sync.bundles import export_bundle, import_bundle

    tips = (3000, 6000)
    net = build_topology(tmp_path / "net", [CITY, TOWN, VILLAGE])
    with net.open(VILLAGE) as village:
        append_notes(village, 6000 - village.store.head(VILLAGE)[0], tag="hostile")
        sent = [
            e if e.seq in tips else e._replace(sig=GARBAGE)
            for e in village.store.entries(VILLAGE)
        ]
    with net.open(TOWN) as town:
        assert _push(town, VILLAGE, sent[:3000])["rejected"] == []
        assert _push(town, VILLAGE, sent[3000:])["rejected"] == []
        data = export_bundle(town, CITY).data
    with net.open(CITY) as city:
        done = import_bundle(city, data)
        assert done.applied[VILLAGE] == 6000
        assert verify_log(city.store).ok


def _run(
    count: int, pad: int = 0, good: set[int] | None = None, signer: Signer | None = None
) -> tuple[list[SignedEntry], bytes]:
    """`count` chained entries of one village; only the seqs in `good` (default: all) keep
    their own valid signature, the others carry garbage."""
    signer, prev, out = signer or Signer.generate(), None, []
    for seq in range(1, count + 1):
        body = {"n": seq, "pad": "x" * pad}
        entry = sign_entry(signer, encode_entry(VILLAGE, seq, prev, AT, "test.note", body))
        out.append(entry if good is None or seq in good else entry._replace(sig=GARBAGE))
        prev = entry.hash
    return out, signer.public


def test_checkpoints_every_span_of_an_honest_run() -> None:
    run, key = _run(12_000)
    assert proofs.checkpoints(run, key) == (12_000, [5_000, 10_000, 12_000])


def test_checkpoints_move_past_a_garbage_signature() -> None:
    run, key = _run(6_000, good={5_003, 6_000})
    assert proofs.checkpoints(run, key) == (6_000, [5_003, 6_000])


def test_a_run_whose_signatures_are_too_far_apart_is_taken_only_to_the_last_checked() -> None:
    """The reviewer's attack: one push of ~16 MB whose only valid signature is its last. A
    town that took it whole could never relay it (a relay batch must end on a checked
    signature, and the run is bigger than what the town may send in one): it is refused
    past the last checked entry, here the head, so the town's relay goes on."""
    run, key = _run(550, pad=29_000, good={550})
    assert proofs.checkpoints(run, key)[0] == 0
    honest, key2 = _run(550, pad=29_000)
    taken, points = proofs.checkpoints(honest, key2)
    assert taken == 550 and points[-1] == 550 and len(points) >= 4


def test_a_village_cannot_push_a_run_its_town_could_not_relay(tmp_path: Path) -> None:
    net = build_topology(tmp_path / "net", [CITY, TOWN, VILLAGE])
    with net.open(VILLAGE) as village:
        signer = village.signer
    run, _ = _run(550, pad=29_000, good={550}, signer=signer)
    with net.open(TOWN) as town:
        answer = _push(town, VILLAGE, run)
        assert answer["applied"] == {} and answer["rejected"][0]["seq"] == 1
        assert "relayed" in answer["rejected"][0]["reason"]
        assert town.store.head(VILLAGE)[0] == 0


def _pushed_with_work_between(tmp_path: Path, between: int, *, garble: bool) -> Topology:
    """A town that took its village's three pushes (ending at TIPS; with `garble`, garbage in
    every signature below them) and wrote `between` entries of its own after each."""
    net = build_topology(tmp_path / "net", [CITY, TOWN, VILLAGE])
    with net.open(VILLAGE) as village:
        append_notes(village, 1200 - village.store.head(VILLAGE)[0], tag="v")
        sent = village.store.entries(VILLAGE)
    if garble:
        sent = _garbled(sent)
    with net.open(TOWN) as town:
        first = 0
        for tip in TIPS:
            assert _push(town, VILLAGE, sent[first:tip])["rejected"] == []
            append_notes(town, between, tag=f"after {tip}")
            first = tip
    return net


def test_a_relay_sends_in_the_order_it_took_and_still_cuts_where_signatures_prove_them(
    tmp_path: Path,
) -> None:
    """The hostile village's three pushes, with the town's own entries between them (what it
    did with what came): the town's batches up give the entries in the order it took them
    — each village push before the town's entries that followed it, its enrolment of the
    village first — every batch still ending the village's run on a checked signature; the
    city takes them all and its log verifies."""
    net = _pushed_with_work_between(tmp_path, 150, garble=True)
    with net.open(TOWN) as town:
        taken = [
            (origin, seq)
            for origin, seq in town.store.query("SELECT origin, seq FROM entries ORDER BY id")
            if origin in (TOWN, VILLAGE)
        ]
        plan = proofs.plan(town.store, TOWN, {})
        assert [origin for origin, *_ in plan] == [TOWN, VILLAGE]  # tier order, as before
        batches = list(proofs.batches(town.store, plan, first=500, size=500))
        assert [(e.origin, e.seq) for b in batches for e in b] == taken
        ends = [max(e.seq for e in b if e.origin == VILLAGE) for b in batches
                if any(e.origin == VILLAGE for e in b)]  # fmt: skip
        assert set(ends) <= set(TIPS), ends  # never where a garbage signature ends a run
        head = town.store.head(TOWN)[0]
    with serve_in_thread(net.home(CITY)) as city_url, net.open(TOWN) as town:
        assert sync_round(town, city_url).rejected == []
    with net.open(CITY) as city:
        assert city.store.head(VILLAGE)[0] == 1200
        assert city.store.head(TOWN)[0] == head
        report = verify_log(city.store)
        assert report.ok, report.problems


def test_arrival_order_takes_a_part_on_to_where_its_origin_may_be_cut(tmp_path: Path) -> None:
    """Where what was stored together does not end on a cut point, the part goes on to the
    next one: the village's first push (to 300) is sent with its second (to 700), ahead of
    the town's entries between them, rather than ending where nothing proves it."""
    net = _pushed_with_work_between(tmp_path, 10, garble=False)
    with net.open(TOWN) as town:
        plan = proofs.plan(town.store, TOWN, {})
        head = town.store.head(TOWN)[0]
        cuts = {TOWN: lambda seq: True, VILLAGE: lambda seq: seq in (700, 1200)}
        parts = proofs.arrival_order(town.store, plan, cuts.__getitem__)
    enrolled = head - 30  # the town's own entries before the village's first push
    assert parts == [
        (TOWN, 0, enrolled), (VILLAGE, 0, 700), (TOWN, enrolled, enrolled + 10),
        (TOWN, enrolled + 10, enrolled + 20), (VILLAGE, 700, 1200),
        (TOWN, enrolled + 20, head),
    ]  # fmt: skip


def test_arrival_order_sends_every_log_whole_and_reads_what_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each part starts where its log's last part ended (every log sent whole, in seq order);
    past MAX_PARTS, log after log as planned; and a restore's batches (not in arrival
    order) read cut points only for the logs they reach."""
    net = _pushed_with_work_between(tmp_path, 10, garble=False)
    with net.open(TOWN) as town:
        plan = proofs.plan(town.store, TOWN, {})
        parts = proofs.arrival_order(town.store, plan, lambda origin: lambda seq: True)
        assert len(parts) == 7  # the enrolment, then three pushes, each with what followed
        for origin, after, through in plan:
            mine = [(a, t) for o, a, t in parts if o == origin]
            assert mine[0][0] == after and mine[-1][1] == through
            assert all(t == a2 for (_, t), (a2, _) in pairwise(mine))
        monkeypatch.setattr(proofs, "MAX_PARTS", 2)
        assert proofs.arrival_order(town.store, plan, lambda origin: lambda seq: True) == plan
        reached: list[str] = []
        cut_points = proofs.cut_points

        def counted(store: object, origin: str, after: int, through: int) -> object:
            reached.append(origin)
            return cut_points(town.store, origin, after, through)

        monkeypatch.setattr(proofs, "cut_points", counted)
        batch = next(proofs.batches(town.store, plan, first=10, size=10, arrival=False))
        assert {e.origin for e in batch} == {TOWN} and reached == [TOWN]
