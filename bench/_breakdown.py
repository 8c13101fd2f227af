"""The ingest path of `bench/sync.py`, timed piece by piece in-process (CPU µs per entry)."""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    TOWN,
    VILLAGE,
    figure,
    snapshot,
)

from sync.ingest import ingest
from sync.node import open_node
from sync.protocol.batch import decode_batch, encode_batch
from sync.protocol.entry import entry_fields, signing_message, verify_run
from sync.protocol.keys import verify
from sync.round import _batches
from tiers.node import open_home

MIB = 1024


class Timer:
    """Wall and CPU seconds of this process (CPU is what survives a machine others load)."""

    def __enter__(self) -> Timer:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def best_of(times: int, work: Any) -> Timer:
    """The run of `work()` with the least CPU among `times` runs."""
    best: Timer | None = None
    for _ in range(times):
        with Timer() as timer:
            work()
        if best is None or timer.cpu < best.cpu:
            best = timer
    assert best is not None
    return best


def breakdown(
    pristine: Path, base: Path, village: Path, hop: dict[str, float], profile: bool, limit: int
) -> None:
    """The ingest path piece by piece, in this process, on fresh copies of the town.

    Pieces are timed on their own (CPU seconds, best of 3 where they can be repeated);
    `ingest_*` are the real `sync.ingest.ingest` on a store with no tier projections and
    with all of them. Figures are CPU µs per entry; wall time is given beside.
    """
    from sync.protocol.entry import entry_hash
    from tiers.node import extensions

    node = open_home(village)
    try:
        key = node.signer.public
        plan = [(VILLAGE, 0, min(limit, node.store.head(VILLAGE)[0]))]
        chunks: list[Any] = []
        read = best_of(3, lambda: chunks.__setitem__(slice(None), list(_batches(node, plan))))
    finally:
        node.close()
    batches: list[bytes] = []
    compress = best_of(
        3, lambda: batches.__setitem__(slice(None), [encode_batch(c) for c in chunks])
    )
    total = sum(len(c) for c in chunks)
    runs: list[Any] = []
    decompress = best_of(
        3, lambda: runs.__setitem__(slice(None), [decode_batch(d) for d in batches])
    )
    items = [(run.origin, run.items) for batch in runs for run in batch]

    def parse_all() -> None:
        for _origin, pairs in items:
            for raw, _sig in pairs:
                entry_fields(raw)

    verified: list[Any] = []

    def chain_all() -> None:
        verified.clear()
        head_seq: int = 0
        head_hash: bytes | None = None
        for origin, pairs in items:
            result = verify_run(
                origin, pairs, head_seq=head_seq, head_hash=head_hash, public_key=key
            )
            verified.append(result)
            head_seq, head_hash = result.accepted[-1].seq, result.accepted[-1].hash

    sample = [pair for _origin, pairs in items for pair in pairs][:1000]
    scale = total / len(sample)

    def signatures() -> None:
        for raw, sig in sample:
            verify(key, signing_message(entry_hash(raw)), sig)

    parse = best_of(3, parse_all)
    chain = best_of(3, chain_all)
    signature = best_of(3, signatures)

    copies = [0]

    def fresh(opener: Any) -> Any:
        copies[0] += 1
        return opener(snapshot(pristine, base / f"town-breakdown-{copies[0]}"))

    def insert_only(exts: list[Any]) -> Timer:
        """store.insert of already verified entries, one transaction per batch, + commit."""
        target = fresh(lambda home: open_node(home, extensions=exts))
        try:
            with Timer() as timer:
                for result in verified:
                    with target.store.transaction():
                        target.store.insert(result.accepted, "2025-10-09T10:00:00+08:00")
            return timer
        finally:
            target.close()

    def real_ingest(
        opener: Any, profiler: cProfile.Profile | None = None, *, defer: bool = False
    ) -> Timer:
        target = fresh(opener)
        if defer:
            target.store.defer_projections()
        try:
            with Timer() as timer:
                if profiler:
                    profiler.enable()
                for batch in runs:
                    ingest(
                        target.store,
                        batch,
                        me=TOWN,
                        sender=VILLAGE,
                        received_at="2025-10-09T10:00:00+08:00",
                    )
                if profiler:
                    profiler.disable()
            return timer
        finally:
            target.close()

    bare = insert_only([])
    layered: list[tuple[str, Timer]] = []
    exts = extensions()
    for count in range(1, len(exts) + 1):
        layered.append((type(exts[count - 1]).__name__, insert_only(extensions()[:count])))
    sync_only = real_ingest(open_home, defer=True)
    full = real_ingest(open_home)

    def line(name: str, cpu: float, wall: float | None, what: str) -> None:
        share = f", {cpu / full.cpu * 100:.0f} % of ingest_full" if full.cpu else ""
        walled = f", wall {wall:.2f} s" if wall is not None else ""
        figure(
            f"breakdown_{name}",
            cpu / total * 1e6,
            f"CPU µs/entry ({cpu:.2f} s{walled}{share}) {what}",
        )

    figure("breakdown_entries", total, "entries")
    line("sender_read", read.cpu, read.wall, "village: SELECT the entries to push")
    line("sender_compress", compress.cpu, compress.wall, "encode_batch (zstd level 1)")
    line("decompress", decompress.cpu, decompress.wall, "decode_batch")
    line(
        "json_parse",
        parse.cpu,
        parse.wall,
        "msgspec decode of each entry, any JSON (part of envelope_chain)",
    )
    line(
        "envelope_chain",
        chain.cpu,
        chain.wall,
        "verify_run, tip signature only: size, envelope, body schema, seq, prev, SHA-256",
    )
    line(
        "signature_each",
        signature.cpu * scale,
        signature.wall * scale,
        "one Ed25519 verify for every entry",
    )
    line("sqlite_insert_commit", bare.cpu, bare.wall, "store.insert + commit, no projection")
    previous = bare
    for name, timer in layered:
        line(
            f"projection_{name}",
            timer.cpu - previous.cpu,
            timer.wall - previous.wall,
            "its apply + flush inside the transaction",
        )
        previous = timer
    line(
        "ingest_sync_only",
        sync_only.cpu,
        sync_only.wall,
        f"= {total / sync_only.cpu:,.0f} entries per CPU-second: sync.ingest.ingest on a "
        "store that defers the tier projections, as `zhibao serve` ingests a push",
    )
    line(
        "ingest_full",
        full.cpu,
        full.wall,
        f"= {total / full.cpu:,.0f} entries per CPU-second: sync.ingest.ingest with the "
        "tier projections in the transaction (as a pull, a bundle or a restore ingests)",
    )
    line(
        "ingest_rest",
        full.cpu - chain.cpu - signature.cpu * scale - previous.cpu,
        None,
        "ingest_full − (envelope_chain + signature_each + insert with projections); "
        "negative if ingest checks only the tip signature",
    )
    # hop 1 moved every entry; scale its CPU to the entries broken down here
    receiver = hop["receiver_cpu"] * total / hop["entries"]
    line(
        "receiver_http_and_rest",
        receiver - sync_only.cpu - decompress.cpu,
        None,
        "town CPU during hop 1 − ingest_sync_only − decompress: auth (request signature, "
        "nonce transaction), receipt, h11/starlette",
    )
    line(
        "receiver_total",
        receiver,
        None,
        f"town CPU during hop 1 (= {total / receiver:,.0f} "
        "entries per CPU-second of the receiving process)",
    )
    line(
        "sender_total",
        hop["sender_cpu"] * total / hop["entries"],
        None,
        "this process's CPU during hop 1 (village side)",
    )
    if profile:
        profiler = cProfile.Profile()
        real_ingest(open_home, profiler, defer=True)  # as `zhibao serve` ingests a push
        for order in ("cumulative", "tottime"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(30)
            print(out.getvalue())


# --- main ----------------------------------------------------------------------------------------
