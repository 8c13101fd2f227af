"""bench/materials.py's `line` part: a scan over a slow line that is cut every ~500 KB,
and what crossed it, request by request.

The round's transport notes, as each request goes out, how many bytes the fault proxy has
delivered to the town so far (`Stats.bytes_c2s`). The materials step sends one request at
a time and a request's bytes are all delivered (or cut) before the next one starts, so the
bytes delivered between two requests' starts are the first one's: all of it, or, for a
cut request, what crossed before the cut. For each put it also notes where each frame ends
in the body. A put's body bytes that crossed beyond the last chunk the town kept from it
(the next put of the same blob says from which chunk it goes on; no next put: the town
holds it all) crossed for nothing: they are the bytes re-sent because of the cut.
"""

from __future__ import annotations

import argparse
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
from _common import TOWN, VILLAGE, Server, figure, note
from _materials_net import (
    MIB,
    TIME_BOX,
    attach_file,
    fresh,
    held,
    new_cases,
    one_round,
    settings,
    write_scan,
)

from sync.protocol.blobs import CHUNK, DATA, chunk_count
from sync.protocol.sealed import WIRE_MAGIC
from sync.round import RoundSummary
from sync.testing.proxy import Fault, FaultProxy, Schedule

_HEAD = struct.Struct(">cII")


@dataclass
class Sent:
    """One request of the round, as it went out."""

    began: float
    path: str
    sha: str | None  # a put's blob
    start: int | None  # a put's first chunk (`from`)
    head: int  # request line and headers, as h11 writes them
    body: int
    frames: list[tuple[bytes, int, int]] = field(default_factory=list)  # kind, index, end
    line_before: int = 0  # bytes the proxy had delivered to the town when it began
    delivered: int = 0  # bytes of this request the town received (set by `finish`)

    @property
    def whole(self) -> int:
        return self.head + self.body


def _frames(body: bytes) -> list[tuple[bytes, int, int]]:
    offset = len(WIRE_MAGIC) if body.startswith(WIRE_MAGIC) else 0
    frames = []
    while offset + _HEAD.size <= len(body):
        kind, index, length = _HEAD.unpack_from(body, offset)
        offset += _HEAD.size + length
        frames.append((kind, index, offset))
    return frames


class Tracing(httpx.HTTPTransport):
    """An httpx transport that notes every request (see the module doc), then sends it."""

    def __init__(self, proxy: FaultProxy) -> None:
        super().__init__(verify=False)  # http://127.0.0.1: no TLS context to load
        self.proxy = proxy
        self.sent: list[Sent] = []
        self.ended = 0.0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        url = request.url
        query = parse_qs(url.query.decode())
        head = (
            len(f"{request.method} ".encode()) + len(url.raw_path) + len(b" HTTP/1.1\r\n")
            + sum(len(k) + len(v) + 4 for k, v in request.headers.raw) + 2
        )  # fmt: skip
        put = url.path == "/v1/blobs/put"
        self.sent.append(
            Sent(
                time.perf_counter(),
                url.path,
                query["sha256"][0] if put else None,
                int(query["from"][0]) if put else None,
                head,
                len(body),
                _frames(body) if put else [],
                self.proxy.stats.bytes_c2s,
            )
        )
        return super().handle_request(request)

    def sent_blobs_began(self) -> float | None:
        """When the materials step began (its first /v1/blobs/ request)."""
        return next((s.began for s in self.sent if s.path.startswith("/v1/blobs/")), None)

    def finish(self) -> None:
        """After the round: how many bytes of each request crossed."""
        self.ended = time.perf_counter()
        marks = [s.line_before for s in self.sent] + [self.proxy.stats.bytes_c2s]
        for sent, after in zip(self.sent, marks[1:], strict=True):
            sent.delivered = after - sent.line_before


def _resent(sent: list[Sent], chunks: int) -> list[tuple[Sent, int]]:
    """(request, bytes that crossed for nothing) for each request that was cut or whose
    chunks the town did not keep."""
    out = []
    for position, s in enumerate(sent):
        if s.path != "/v1/blobs/put":
            if s.delivered < s.whole:
                out.append((s, s.delivered))
            continue
        after = next((n for n in sent[position + 1 :] if n.sha == s.sha), None)
        kept_to = after.start if after is not None and after.start is not None else chunks
        kept = [end for kind, index, end in s.frames if kind == DATA and index < kept_to]
        crossed = max(0, s.delivered - s.head)
        if kept and kept[-1] > crossed:
            note(f"line: the town kept chunks up to {kept_to} that did not all cross: {s}")
        wasted = max(0, crossed - (kept[-1] if kept else 0))
        if wasted or s.delivered < s.whole:
            out.append((s, wasted))
    return out


def line_report(
    tracing: Tracing, summary: RoundSummary, stats: Any, size: int, bps: float, rtt: float
) -> None:
    blobs = [s for s in tracing.sent if s.path.startswith("/v1/blobs/")]
    if not blobs:
        raise SystemExit("line: the round sent no material")
    seconds = tracing.ended - blobs[0].began
    crossed = sum(s.delivered for s in blobs)
    chunks = chunk_count(size)
    wasted = _resent(blobs, chunks)
    cut = [s for s in blobs if s.delivered < s.whole]
    over = [s for s in blobs if s.delivered > s.whole]
    puts = [s for s in blobs if s.path == "/v1/blobs/put"]
    resent = sum(w for _, w in wasted)
    cuts = stats.faults.get("cut", 0)
    ideal = size * 8 / bps
    busy = crossed * 8 / bps
    figure("line_materials_seconds", seconds, "s (the materials step)")
    figure("line_ideal_seconds", ideal, "s (the scan's bytes ÷ bandwidth)")
    figure("line_efficiency", ideal / seconds * 100, "% (ideal ÷ materials step; target ≥ 90)")
    figure("line_cuts", cuts, f"(of which {len(cut)} during the materials step)")
    figure(
        "line_cut_requests",
        len(cut),
        f"({sum(1 for s in cut if s.path == '/v1/blobs/put')} puts, "
        f"{sum(1 for s in cut if s.path != '/v1/blobs/put')} other)",
    )
    figure(
        "line_requests",
        len(blobs),
        f"({len(puts)} puts, {sum(1 for s in blobs if s.path == '/v1/blobs/have')} haves)",
    )
    figure("line_c2s_bytes", crossed, "bytes delivered to the town in the materials step")
    figure("line_c2s_over_scan", crossed / size, "(bytes crossing ÷ scan bytes)")
    figure("line_resent_bytes", resent, "bytes (crossed, then not kept: sent again)")
    if cuts:
        figure("line_resent_per_cut", resent / cuts, "bytes (mean; target ≤ 65,536)")
    figure("line_resent_max", max((w for _, w in wasted), default=0), "bytes (worst cut)")
    heads = sum(min(s.delivered, s.head) for s in blobs)
    figure(
        "line_overhead_bytes",
        crossed - size - resent,
        f"bytes (HTTP request lines and headers {heads}, frame heads, seals, chunk list, "
        "have bodies)",
    )
    figure("line_busy_seconds", busy, "s (bytes crossing ÷ bandwidth)")
    figure("line_utilisation", busy / seconds * 100, "% (line busy ÷ materials step)")
    figure(
        "line_idle_seconds",
        seconds - busy,
        f"s (line idle: {(seconds - busy) / len(blobs) * 1000:.0f} ms per request, "
        f"RTT {rtt * 1000:.0f} ms)",
    )
    if cut:
        after_cut = []
        for s in cut:
            position = blobs.index(s)
            nxt = next((n for n in blobs[position + 1 :] if n.path == "/v1/blobs/put"), None)
            if nxt is not None:
                after_cut.append(nxt.began - s.began - s.delivered * 8 / bps)
        if after_cut:
            figure(
                "line_cut_recovery_seconds",
                sum(after_cut) / len(after_cut),
                "s (mean: a cut put's start to the next put's start, less its bytes' time)",
            )
    figure("line_puts_whole", sum(1 for s in puts if s.delivered == s.whole), "puts not cut")
    figure(
        "line_chunks_per_put",
        sum(sum(1 for f in s.frames if f[0] == DATA) for s in puts) / max(1, len(puts)),
        "(mean, as sent)",
    )
    if over:
        note(f"line: {len(over)} requests crossed more than they carried (accounting broken?)")
    figure("line_sent_bytes_reported", summary.materials_sent_bytes, "bytes (RoundSummary)")


def cut_offsets(cut: int, count: int) -> list[int]:
    """Where each connection is cut: after `cut` ± half a chunk of bytes towards the town,
    by a fixed sequence (k × 40,503 mod 65,536), so that cuts fall at every place within a
    chunk and a run gives the same cuts every time."""
    return [cut + (k * 40_503) % CHUNK - CHUNK // 2 for k in range(count)]


def line(homes: dict[str, Path], base: Path, args: argparse.Namespace) -> None:
    h = fresh(homes, base / "line")
    settings(h[VILLAGE], material_seconds_per_round=TIME_BOX)
    size = int(args.scan_mib * MIB)
    (case_id,) = new_cases(h[VILLAGE], 1)
    sha = attach_file(h[VILLAGE], case_id, write_scan(base / "line-scan.pdf", size, seed=1))
    cut = int(args.cut_kb * 1000)
    with (
        Server(h[TOWN]) as town,
        FaultProxy(
            "127.0.0.1",
            int(town.url.rsplit(":", 1)[1]),
            schedule=Schedule.slow(args.rtt, args.bps),
            io_timeout=300.0,
        ) as proxy,
    ):
        # the client opens a new connection after each cut: cutting every connection once
        # it has carried ~`cut` bytes towards the town cuts the line every ~`cut` bytes
        for offset in cut_offsets(cut, size // cut + 50) if cut else ():
            proxy.force(Fault("cut", "c2s", offset=offset))
        tracing = Tracing(proxy)
        started = time.perf_counter()
        summary = one_round(h[VILLAGE], proxy.url, tracing)
        seconds = time.perf_counter() - started
        tracing.finish()
        stats = proxy.stats
    note(
        f"line: one round, material_seconds_per_round = {TIME_BOX} at the village, so that it "
        "moves the whole scan: the time measured is the transfer, with no pause or new round "
        "between time boxes; the materials step is timed from its first request "
        "(/v1/blobs/have) to the round's end"
    )
    figure("line_scan_bytes", size, f"bytes ({args.scan_mib:g} MiB of random bytes)")
    figure("line_rtt", args.rtt * 1000, "ms")
    figure("line_bandwidth", args.bps / 1e6, "Mbit/s each way")
    if cut:
        figure("line_cut_every", cut, f"bytes ± {CHUNK // 2} crossing a connection to the town")
    else:
        figure("line_cut_every", 0, "(no cuts)")
    figure("line_round_seconds", seconds, "s (the whole round: entries, then the scan)")
    line_report(tracing, summary, stats, size, args.bps, args.rtt)
    began = tracing.sent_blobs_began()
    figure(
        "line_entries_phase_seconds",
        (began if began is not None else started + seconds) - started,
        "s (time, hello, pull, push before the materials step: what each new round adds)",
    )
    ok = held(h[TOWN], sha) and summary.materials_sent == 1
    figure("line_town_holds_scan", "yes" if ok else "NO")
