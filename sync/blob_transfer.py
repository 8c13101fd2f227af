"""Materials over HTTP, the client's side: a round's last step (sync.round), after the
entries went up and came down, so a material never holds a case entry back.

Up: the blobs held here that the parent should hold and has not receipted
(`blob_index.up_for`): ask `have`, then put from the chunk the parent holds up to, a few
chunks per request (as many as take about `PUT_SECONDS` at the rate seen), until the
parent answers `held` with a signed blob receipt. Down: the blobs named by entries from
above that are not here (`blob_index.wanted`): get from the chunk held here checked
(`Receiving.have`), each chunk checked as it arrives. A cut link loses at most the chunk in
flight; the step tries again from what the other side holds, and gives up for this round
after `FAILURES` failures in a row without progress.

The whole step is time-boxed (`material_seconds_per_round` in node.toml) and stops at a
chunk boundary, so entries recorded meanwhile go out with the next round, which a watching
loop starts at once (`RoundSummary.again`). A material counts as sent only when the parent
signed that it holds it whole; with `drop_materials_after_receipt` a node then lets go of
its copy of what its own subtree attached (never of what came from above).
"""

from __future__ import annotations

import gc
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sync import blob_index, trust
from sync.blobs import Receiving
from sync.client import PeerClient
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.blob_asks import HAVE_MAX, STREAM_TYPE
from sync.protocol.blobs import (
    CHUNK,
    DATA,
    DIGEST,
    LIST,
    BlobRef,
    FrameReader,
    chunk_info,
    chunk_size,
    encode_frame,
    max_frame,
)
from sync.protocol.errors import BlobError, LinkDownError, RefusedError, SyncError
from sync.protocol.keys import verify
from sync.protocol.messages import BLOB_RECEIPT_DOMAIN, read_blob_receipt
from sync.protocol.sealed import (
    SEALED_TYPE,
    WIRE_MAGIC,
    SealError,
    open_with_any,
    seal,
    seal_body,
)

if TYPE_CHECKING:
    from sync.round import RoundSummary

DEFAULT_SECONDS = 20.0
PUT_SECONDS = 5.0  # what one put aims to last, at the rate seen so far
FIRST_PUT_CHUNKS = 4  # before any rate is known: 256 KiB (2 s at 1 Mbit/s)
MAX_PUT_CHUNKS = 64  # 4 MiB: the most one put carries (this side holds it to sign it)
FAILURES = 3  # link failures in a row without progress before the step stops
PAUSE = 0.25  # seconds after such a failure, times how many in a row
Clock = Callable[[], float]


def seconds_per_round(settings: dict[str, Any]) -> float:
    """How long a round may spend on materials (`material_seconds_per_round`)."""
    value = settings.get("material_seconds_per_round", DEFAULT_SECONDS)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return DEFAULT_SECONDS
    return float(value)


def drops_after_receipt(settings: dict[str, Any]) -> bool:
    return settings.get("drop_materials_after_receipt", False) is True


class _GiveUp(Exception):
    """The link failed `FAILURES` times in a row: the step ends for this round."""


@dataclass
class _Mover:
    node: Node
    client: PeerClient
    peer: str
    summary: RoundSummary
    deadline: float
    now: Clock
    pause: Callable[[float], None] = time.sleep
    between: Callable[[], None] = lambda: None  # entries recorded meanwhile go up first
    failures: int = 0
    fetched: list[str] = field(default_factory=list)

    @property
    def out_of_time(self) -> bool:
        return self.now() >= self.deadline

    def _failed(self, progress: bool) -> None:
        """After a failure of the link: give up after `FAILURES` in a row without progress,
        else pause a moment (the server may not have seen the cut yet: it answers 503 while
        it still reads the cut body) and go on."""
        self.failures = 0 if progress else self.failures + 1
        if self.failures >= FAILURES:
            raise _GiveUp
        self.pause(PAUSE * self.failures)

    def _garbled(self, detail: str) -> LinkDownError:
        """An answer a line broke (answers are not signed as a whole): try again."""
        return LinkDownError("link.down", url=self.client.url, detail=detail)

    def _refused(self, sha256: str, reason: str) -> None:
        self.summary.materials_refused.append({"sha256": sha256, "reason": reason})

    # --- up ----------------------------------------------------------------------------

    def send_up(self) -> None:
        ups = blob_index.up_for(self.node.store, self.node.node_id, self.peer)
        for first in range(0, len(ups), HAVE_MAX):
            batch = ups[first : first + HAVE_MAX]
            if self.out_of_time:
                self.summary.materials_left += len(ups) - first
                return
            states, reasons = self._have(batch)
            for position, ref in enumerate(batch):
                state = states.get(ref.sha256)
                if state == "held":
                    self.summary.materials_sent += 1
                elif isinstance(state, dict) and type(state.get("next")) is int:
                    if not self._put(ref, state["next"]):
                        self.summary.materials_left += len(batch) - position
                        self.summary.materials_left += len(ups) - first - len(batch)
                        return
                else:
                    self._refused(ref.sha256, reasons.get(ref.sha256, "blob.not_named"))

    def _have(
        self, refs: list[BlobRef], held: list[str] | None = None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The parent's state of each of `refs` (receipts recorded for those it holds)."""
        shas = [ref.sha256 for ref in refs]
        said = {ref.sha256: {"size": ref.size, "root": ref.root} for ref in refs}
        body = json.dumps({"sha256": shas, "held": held or [], "refs": said}).encode()
        data = self.client.post_json("/v1/blobs/have", body)
        states, reasons = data.get("blobs"), data.get("reasons", {})
        if not isinstance(states, dict) or not isinstance(reasons, dict):
            raise self._garbled("garbled response")
        held_there = [sha for sha in shas if states.get(sha) == "held"]
        if held_there:
            self._receipt(data.get("receipt"), held_there)
        return states, {str(k): str(v) for k, v in reasons.items()}

    def _receipt(self, receipt: Any, shas: list[str]) -> None:
        """Verify the parent's blob receipt and record what it names of `shas`."""
        store, peer = self.node.store, self.peer
        try:
            raw, sig = receipt["raw"].encode(), bytes.fromhex(receipt["sig"])
        except (TypeError, KeyError, AttributeError, ValueError):
            raise self._garbled("garbled receipt") from None
        key = trust.verify_wire(store, peer, lambda k: verify(k, BLOB_RECEIPT_DOMAIN + raw, sig))
        if key is None:
            raise RefusedError("receipt.forged")
        made = read_blob_receipt(raw, sig, key)
        if made.issuer != peer or made.to != self.node.node_id:
            raise RefusedError("receipt.wrong_issuer", issuer=made.issuer, expected=peer)
        named = set(made.held)
        if not set(shas) <= named:
            raise self._garbled("garbled receipt")
        with store.transaction():
            for sha in shas:
                blob_index.record_receipt(store, peer, sha, made.at)

    def _put(self, ref: BlobRef, start: int) -> bool:
        """Send `ref` from chunk `start` until the parent holds it (True), or it was
        refused (True: nothing more to do now), or time ran out (False)."""
        if self.out_of_time:
            return False
        try:
            digests = self.node.blobs.chunk_list(ref)
        except BlobError as exc:  # this disk changed it: nothing to send
            self._refused(ref.sha256, exc.key)
            return True
        chunks, rate = FIRST_PUT_CHUNKS, 0.0
        body = b""
        while True:
            if self.out_of_time:
                return False
            if rate:  # at most double the last put: one fast first answer (a line's
                # buffers) must not make a put that holds a clerk's next event back for long
                aim = int(rate * PUT_SECONDS / CHUNK)
                chunks = max(1, min(MAX_PUT_CHUNKS, 2 * chunks, aim))
                chunks = max(1, min(chunks, int(rate * (self.deadline - self.now()) / CHUNK)))
            end = min(ref.chunks, start + chunks)
            self.between()  # a clerk's event recorded meanwhile never waits for the scan
            if len(body) > FIRST_PUT_CHUNKS * CHUNK:  # httpx keeps each request in a
                body = b""  # reference cycle: free the last body (up to 4 MiB) first
                gc.collect()
            out = self.client.outgoing(
                "POST", f"/v1/blobs/put?sha256={ref.sha256}&from={start}&size={ref.size}"
                f"&root={ref.root}",
            )  # fmt: skip
            body = _put_body(self.node, out.seal_to, out.context, ref, digests, start, end)
            began = self.now()
            try:
                data = self.client.json_of(self.client.send(out, body, STREAM_TYPE))
            except LinkDownError:
                reached = self._reached(ref, start)
                if reached is None:
                    return True
                self._failed(progress=reached > start)
                start = reached
                continue
            except RefusedError as exc:
                if exc.params.get("code") == "blob.wrong_start":
                    reached = self._reached(ref, start)
                    if reached is None or reached == start:
                        return True
                    start = reached
                    continue
                self._refused(ref.sha256, str(exc.params.get("code", exc.key)))
                return True
            state = data.get("state")
            if state == "held":
                self._receipt(data.get("receipt"), [ref.sha256])
                self.summary.materials_sent += 1
                self.summary.materials_sent_bytes += _bytes(ref, start, ref.chunks)
                return True
            reached = state.get("next") if isinstance(state, dict) else None
            if type(reached) is not int or not start <= reached <= ref.chunks:
                raise self._garbled("garbled response")
            moved = _bytes(ref, start, reached)
            self.summary.materials_sent_bytes += moved
            self.failures = 0
            elapsed = max(self.now() - began, 1e-3)
            rate = moved / elapsed if moved else rate
            start = reached

    def _reached(self, ref: BlobRef, start: int) -> int | None:
        """After a cut: how far the parent got (None: it holds it now, or refuses it)."""
        while True:
            try:
                states, reasons = self._have([ref])
                break
            except LinkDownError:
                self._failed(progress=False)
        state = states.get(ref.sha256)
        if state == "held":
            self.summary.materials_sent += 1
            self.summary.materials_sent_bytes += _bytes(ref, start, ref.chunks)
            return None
        if isinstance(state, dict) and type(state.get("next")) is int:
            reached = int(state["next"])
            self.summary.materials_sent_bytes += _bytes(ref, start, max(start, reached))
            return reached
        self._refused(ref.sha256, reasons.get(ref.sha256, "blob.not_named"))
        return None

    # --- down --------------------------------------------------------------------------

    def fetch_down(self) -> None:
        blobs = self.node.blobs
        limit = blob_index.limit_bytes(self.node.config.settings)
        wanted = blob_index.wanted(self.node.store, self.node.node_id)
        for position, ref in enumerate(wanted):
            if self.out_of_time:
                self.summary.materials_left += len(wanted) - position
                return
            self.between()
            if ref.size > limit:
                self._refused(ref.sha256, "blob.too_big_here")
                continue
            with blobs.claim(ref.sha256) as mine:
                if mine and not blobs.has(ref.sha256):  # else `serve` is taking it
                    self._get(ref, blobs.receiving(ref))

    def _get(self, ref: BlobRef, receiving: Receiving) -> None:
        while not self.out_of_time:
            before = receiving.have
            ask = {"sha256": ref.sha256, "from": before, "list": receiving.digests is None}
            out = self.client.outgoing("POST", "/v1/blobs/get")
            body, content_type = json.dumps(ask).encode(), "application/json"
            if out.seal_to is not None:
                body, content_type = seal_body(body, out.seal_to, out.context), SEALED_TYPE
            try:
                with self.client.stream(out, body, content_type) as (pieces, opener):
                    self._take(pieces, opener, receiving)
            except LinkDownError:
                self._failed(progress=receiving.have > before)
                continue
            except RefusedError as exc:
                code = str(exc.params.get("code", exc.key))
                if code != "blob.not_held":  # not there yet either: on the way
                    self._refused(ref.sha256, code)
                return
            except BlobError as exc:  # the parent sent a chunk that does not match
                self._refused(ref.sha256, exc.key)
                return
            finally:
                self.summary.materials_received_bytes += _bytes(ref, before, receiving.have)
            if receiving.have == ref.chunks:
                try:
                    receiving.finish(self.node.clock.stamp(), source=self.peer)
                except BlobError as exc:
                    self._refused(ref.sha256, exc.key)
                    return
                self.summary.materials_received += 1
                self.fetched.append(ref.sha256)
                return
            self._failed(progress=receiving.have > before)
        self.summary.materials_left += 1

    def _take(self, pieces: Iterator[bytes], context: bytes, receiving: Receiving) -> None:
        """Check and keep each chunk as it arrives; stop at a chunk boundary on time, or
        mid-chunk `PUT_SECONDS` later (an answer that drips). A chunk list comes first or
        not at all: an answer of lists without end is refused (`blob.bad_frame`)."""
        ref = receiving.ref
        reader = FrameReader(max_frame(ref.size))
        head = bytearray()
        sealed: bool | None = None
        first = True
        for piece in pieces:
            if self.now() >= self.deadline + PUT_SECONDS:
                return  # the chunk in flight is lost; the next get asks from `have`
            if sealed is None:
                head += piece
                if len(head) < len(WIRE_MAGIC):
                    continue
                sealed = head.startswith(WIRE_MAGIC)
                if not sealed and not self.client.plain:
                    raise RefusedError("wire.plain_answer", url=self.client.url)
                piece = bytes(head[len(WIRE_MAGIC) :] if sealed else head)
            for frame in reader.feed(piece):
                payload = frame.payload
                if sealed:
                    info = chunk_info(context, ref.sha256, frame.kind, frame.index)
                    try:
                        payload = open_with_any(payload, self.node.seals, info)
                    except SealError:
                        raise self._garbled("sealed answer does not open") from None
                if frame.kind == LIST:
                    if not first:
                        raise BlobError("blob.bad_frame")
                    if receiving.digests is None:
                        receiving.set_list(payload)
                    first = False
                    continue
                first = False
                receiving.add(frame.index, payload)
                if self.out_of_time and receiving.have < ref.chunks:
                    return  # at a chunk boundary; the answer's end is read when whole

    def tell_held(self) -> None:
        """Tell the parent what arrived whole from it (its record of this node's receipt)."""
        for first in range(0, len(self.fetched), HAVE_MAX):
            try:
                self._have([], self.fetched[first : first + HAVE_MAX])
            except LinkDownError:
                return  # it only spares the parent sending them again (bundles)


def _bytes(ref: BlobRef, start: int, end: int) -> int:
    return sum(chunk_size(ref.size, i) for i in range(start, end))


def _put_body(
    node: Node, seal_to: bytes | None, context: bytes, ref: BlobRef, digests: bytes,
    start: int, end: int,
) -> bytes:  # fmt: skip
    """A put's body: the chunk list when the parent may not have it, then chunks
    [start, end), each read here and checked against the list before it goes."""

    def frame(kind: bytes, index: int, payload: bytes) -> bytes:
        if seal_to is not None:
            payload = seal(payload, seal_to, chunk_info(context, ref.sha256, kind, index))
        return encode_frame(kind, index, payload)

    parts = [WIRE_MAGIC] if seal_to is not None else []
    if start == 0:
        parts.append(frame(LIST, 0, digests))
    with open(node.blobs.path(ref.sha256), "rb") as src:
        src.seek(start * CHUNK)
        for index in range(start, end):
            data = src.read(chunk_size(ref.size, index))
            if len(data) != chunk_size(ref.size, index) or (
                hashlib.sha256(data).digest() != digests[index * DIGEST : (index + 1) * DIGEST]
            ):
                raise BlobError("blob.corrupt", sha256=ref.sha256)
            parts.append(frame(DATA, index, data))
    return b"".join(parts)


def drop_receipted(node: Node, parent: str) -> int:
    """Let go of the blobs this node's own subtree named that the parent receipted whole
    (never one an entry from above names too); how many."""
    at = node.clock.stamp()
    shas = blob_index.droppable(node.store, node.node_id, parent)
    for sha in shas:
        node.blobs.drop(sha, at)
    return len(shas)


def move_materials(
    node: Node,
    client: PeerClient,
    peer: str,
    summary: RoundSummary,
    *,
    up: bool = True,
    down: bool = True,
    now: Clock = time.monotonic,
    between: Callable[[], None] = lambda: None,
) -> None:
    """The materials step of a round with the parent `peer` (see the module doc). A
    link that keeps failing, or a refusal of the whole step, ends it with a warning; the
    round's entries are not affected."""
    mover = _Mover(
        node, client, peer, summary, now() + seconds_per_round(node.config.settings), now,
        between=between,
    )  # fmt: skip
    try:
        if up:
            mover.send_up()
        if down:
            mover.fetch_down()
        mover.tell_held()
    except _GiveUp:
        summary.materials_left = max(summary.materials_left, 1)
        summary.warnings.append(i18n.t("materials.link_failed", url=client.url))
    except (SyncError, BlobError) as exc:
        summary.warnings.append(i18n.t("materials.step_failed", error=str(exc)))
    if up and drops_after_receipt(node.config.settings):
        summary.materials_dropped += drop_receipted(node, peer)


i18n.register(
    {
        "materials.link_failed": (
            "materials: the link to {url} keeps failing; what arrived is kept and the next "
            "round goes on from there",
            "材料：与 {url} 的连接屡次中断；已收到的部分保留，下一轮从中断处继续",
        ),
        "materials.step_failed": (
            "materials were not moved this round: {error}",
            "本轮未能传输材料：{error}",
        ),
    }
)
