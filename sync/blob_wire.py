"""Materials over HTTP, the server's side (sync.blob_transfer is the client's).

    POST /v1/blobs/have   {"sha256": [...], "held": [...], "refs": {sha: {"size", "root"}}}
        -> {"blobs": {sha: "held" | "refused" | {"next": N}}, "reasons": {sha: key},
            "receipt": {"raw", "sig"} | null}                           from a direct child
    POST /v1/blobs/put?sha256=S&from=N[&size=Z&root=R]   a blob stream   direct child
        -> {"sha256": S, "state": "held" | {"next": N}, "receipt": {...} | null}
    POST /v1/blobs/get    {"sha256": S, "from": N, "list": bool}    any node below
        -> 200, a blob stream: the chunk list when asked, then chunks N, N+1, … to the end

`have` says, per material, whether this node holds it whole (then a signed blob receipt
names it: sync.protocol.messages.make_blob_receipt), how many chunks of it are held checked,
or that it will not take it from this caller: no admitted entry of the caller's subtree
names it (a material goes up only from the subtree whose entries name it), it is larger
than `material_max_mb` here, or it was let go here. The size and root the caller holds
(`refs`; a put's `size`, `root`) pick the entry among those naming one hash, so one naming
it first with a wrong size or list cannot hold the honest copy back. `held` lists what the
caller says it holds of what it was sent from above (recorded as its receipt).

A put's body is processed as it streams: each frame is opened (a sealed stream starts with
`ZBW1`, each payload sealed separately to this node's seal key with `chunk_info` over the
request's context), checked against the chunk list of the entry that names the blob and
written before the next is read, so a cut keeps every whole checked chunk and memory holds
one frame. The headers are admitted before any body byte is read, as for every request
(signature over path, query and the body's digest, nonce, sender enrolled, a direct
child); the digest itself can only be checked at the body's end. That is enough: every
chunk kept was checked against a chunk list whose root an admitted, signed entry of the
sender's subtree names, so nothing kept is other than what that entry says, whoever
garbled the body; a body that ends up not matching its digest is refused, its checked
chunks kept. The nonce is recorded before the body is read, so a replayed put is refused
even after a cut. A frame for another index, another kind, bytes beyond the blob's size,
a chunk that does not match, a body slower than the gate's minimum rate: refused with one
key, the partial kept at its last good chunk, the connection closed.

A get streams frames read from disk, each payload sealed to the caller's enrolled seal key
(plain only on `serve --plain` to a plain client); each send must be taken within the
gate's idle time, else the answer stops. The caller checks every chunk as it arrives.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from sync import blob_index, trust
from sync.admission import (
    BLOB_GET,
    BLOB_HAVE,
    BLOB_PUT,
    Caller,
    error_response,
    refusal,
    target,
)
from sync.blobs import Receiving
from sync.protocol.blob_asks import STREAM_TYPE, get_ask, have_ask, put_ask
from sync.protocol.blobs import (
    CHUNK,
    DATA,
    LIST,
    BlobRef,
    FrameReader,
    Hasher,
    check_list,
    chunk_info,
    encode_frame,
    max_frame,
)
from sync.protocol.errors import BlobError, RefusedError, ZhibaoError
from sync.protocol.messages import make_blob_receipt
from sync.protocol.sealed import (
    WIRE_MAGIC,
    SealError,
    answer_info,
    open_with_any,
    request_info,
    seal,
)

if TYPE_CHECKING:
    from sync.server import NodeApp

PARTIALS_KEPT = 32  # blobs being received whose checked state stays in memory between puts


class BlobWire:
    """The materials' endpoints of one `NodeApp` (same loop, same connection, same gate)."""

    def __init__(self, app: NodeApp) -> None:
        self.app = app
        self.node = app.node
        self.busy: set[str] = set()  # blobs a put is writing right now
        self.partials: OrderedDict[str, Receiving] = OrderedDict()

    def routes(self) -> list[tuple[str, Callable[[Request], Awaitable[Response]]]]:
        return [
            ("/v1/blobs/have", self.have),
            ("/v1/blobs/put", self.put),
            ("/v1/blobs/get", self.get),
        ]

    # --- what is held here -----------------------------------------------------------

    def _receiving(self, ref: BlobRef) -> Receiving:
        """The checked state of a partial blob, kept between requests (reading it back
        from disk checks every chunk again: once per blob, not once per put)."""
        known = self.partials.get(ref.sha256)
        if known is not None and known.ref == ref:
            self.partials.move_to_end(ref.sha256)
            return known
        receiving = self.node.blobs.receiving(ref)
        self.partials[ref.sha256] = receiving
        while len(self.partials) > PARTIALS_KEPT:
            self.partials.popitem(last=False)
        return receiving

    def _refusal(
        self, caller: str, sha256: str, said: BlobRef | None = None
    ) -> tuple[BlobRef | None, str | None]:
        """The ref `caller` may send up for `sha256` (the one it `said` it holds, when an
        entry of its subtree names exactly that), or why not (an i18n key)."""
        store = self.node.store
        ref = said and blob_index.ref_named_by(store, sha256, caller, said.root, said.size)
        ref = ref or blob_index.ref_named_by(store, sha256, caller)
        if ref is None:
            return None, "blob.not_named"
        if ref.size > blob_index.limit_bytes(self.node.config.settings):
            return None, "blob.too_big_here"
        if not self.node.blobs.has(sha256) and self.node.blobs.dropped(sha256):
            return None, "blob.dropped_here"
        return ref, None

    def _receipt(self, caller: str, held: list[str]) -> dict[str, str] | None:
        if not held:
            return None
        node = self.node
        made = make_blob_receipt(node.wire_signer, node.node_id, caller, node.clock.stamp(), held)
        return made.to_json()

    # --- have --------------------------------------------------------------------------

    async def have(self, request: Request) -> Response:
        def handle(sender: str, body: bytes) -> Response:
            wanted, held_there, said = have_ask(body)
            store, blobs = self.node.store, self.node.blobs
            store.catch_up()  # blob_refs and the cases are projections
            states: dict[str, Any] = {}
            reasons: dict[str, str] = {}
            for sha in wanted:
                ref, why = self._refusal(sender, sha, said.get(sha))
                if why is not None or ref is None:
                    states[sha], reasons[sha] = "refused", why or "blob.not_named"
                elif blobs.has(sha):
                    states[sha] = "held"
                else:
                    states[sha] = {"next": self._receiving(ref).have}
            at = self.node.clock.stamp()
            for sha in held_there:  # the caller's own signed word (the request is signed)
                if blob_index.may_fetch(store, sender, sha):
                    blob_index.record_receipt(store, sender, sha, at)
            receipt = self._receipt(sender, [s for s, v in states.items() if v == "held"])
            return JSONResponse({"blobs": states, "reasons": reasons, "receipt": receipt})

        return await self.app._guarded(request, handle, BLOB_HAVE, exclusive=True)  # catch_up

    # --- put ---------------------------------------------------------------------------

    async def put(self, request: Request) -> Response:
        app, gate = self.app, self.app.gate
        try:
            caller = gate.admit(request, BLOB_PUT)
            seal_to = app._answer_key(request, caller)
            sha, start, said = put_ask(request.query_params)
            with self.node.store.exclusive():  # blob_refs is a projection: caught up whole
                self.node.store.catch_up()
            ref, why = self._refusal(caller.node_id, sha, said)
            if why is not None or ref is None:
                raise RefusedError(why or "blob.not_named", sha256=sha)
        except RefusedError as exc:
            return refusal(exc, close=not await gate.drain(request))
        except ZhibaoError as exc:  # the database is busy: nothing was taken
            return error_response(500, exc.key, close=not await gate.drain(request), **exc.params)
        if sha in self.busy:
            return error_response(503, "server.busy", close=not await gate.drain(request))
        if not gate.reserve(caller, max_frame(ref.size) + CHUNK):
            return error_response(503, "server.busy", close=not await gate.drain(request))
        self.busy.add(sha)
        try:
            with self.node.blobs.claim(sha) as mine:
                if not mine:  # another process (this node's own round) is writing it
                    return error_response(503, "server.busy", close=not await gate.drain(request))
                return await self._take(request, caller, ref, start, seal_to)
        finally:
            self.busy.discard(sha)
            gate.release(caller)

    async def _take(
        self, request: Request, caller: Caller, ref: BlobRef, start: int, seal_to: bytes | None
    ) -> Response:
        """Record the nonce, then take the body frame by frame; the answer says how far
        the blob got here (and carries a receipt once it is held)."""
        gate, node = self.app.gate, self.node
        try:
            with node.store.transaction():
                self.app._remember(caller.node_id, caller.nonce, caller.skew)
        except RefusedError as exc:
            return refusal(exc, close=not await gate.drain(request))
        if node.blobs.has(ref.sha256):  # came meanwhile (another child, from above)
            drained = await gate.drain(request)
            return self._put_answer(request, caller, ref, None, seal_to, drained=drained)
        receiving = self._receiving(ref)
        if start != receiving.have:
            wrong = RefusedError("blob.wrong_start", sha256=ref.sha256, next=receiving.have)
            return refusal(wrong, close=not await gate.drain(request))
        context = request_info(
            request.method, target(request), caller.node_id, node.node_id, caller.stamp,
            caller.nonce,
        )  # fmt: skip
        try:
            receiving = await self._stream_in(request, caller, receiving, context)
            ref = receiving.ref
            if receiving.have == ref.chunks:  # hashing 200 MB must not stall the loop
                checked = await asyncio.to_thread(receiving.whole_matches)
                if not checked:
                    receiving.abandon()
                    raise BlobError("blob.hash_mismatch", sha256=ref.sha256)
                receiving.finish(node.clock.stamp(), source=caller.node_id, checked=True)
        except (RefusedError, BlobError) as exc:
            if isinstance(exc, BlobError) and exc.key == "blob.hash_mismatch":
                self.partials.pop(ref.sha256, None)
            return refusal(RefusedError(exc.key, **exc.params), close=True)
        if node.blobs.has(ref.sha256):
            self.partials.pop(ref.sha256, None)
        return self._put_answer(request, caller, ref, receiving, seal_to, drained=True)

    async def _stream_in(
        self, request: Request, caller: Caller, receiving: Receiving, context: bytes
    ) -> Receiving:
        """Check and write each frame of the body as it comes (see the module doc)."""
        ref, node = receiving.ref, self.node
        reader = FrameReader(max_frame(ref.size))
        head = bytearray()  # the first bytes, until it is known whether the stream is sealed
        sealed: bool | None = None
        first = True
        async for piece in self.app.gate.stream_body(request, caller):
            if sealed is None:
                head += piece
                if len(head) < len(WIRE_MAGIC):
                    continue
                sealed = head.startswith(WIRE_MAGIC)
                if not sealed and not self.app.plain:
                    raise RefusedError("wire.plain_refused", node_id=node.node_id)
                piece = bytes(head[len(WIRE_MAGIC) :] if sealed else head)
            for frame in reader.feed(piece):
                payload = frame.payload
                if sealed:
                    info = chunk_info(context, ref.sha256, frame.kind, frame.index)
                    try:
                        payload = open_with_any(payload, node.seals, info)
                    except SealError:
                        raise RefusedError("wire.cannot_open", node_id=caller.node_id) from None
                if frame.kind == LIST:
                    if not first or frame.index != 0:
                        raise BlobError("blob.bad_frame")
                    if receiving.digests is None:
                        receiving = self._named_list(caller.node_id, receiving, payload)
                        ref = receiving.ref
                    else:
                        check_list(ref, payload)
                elif receiving.have >= ref.chunks:
                    raise RefusedError("blob.beyond_end", sha256=ref.sha256)
                else:
                    receiving.add(frame.index, payload)
                first = False
        if sealed is None and head:  # fewer bytes than the magic: not a stream at all
            raise BlobError("blob.bad_frame")
        if reader.pending:
            raise BlobError("blob.bad_frame")
        return receiving

    def _named_list(self, caller: str, receiving: Receiving, digests: bytes) -> Receiving:
        """Take the chunk list sent: against the ref chosen, else against another entry of
        the caller's subtree naming this hash with exactly this list (the first entry to
        name a shared hash may have named a wrong list; it must not hold the bytes back)."""
        try:
            receiving.set_list(digests)
            return receiving
        except BlobError:
            root = hashlib.sha256(digests).hexdigest()
            other = blob_index.ref_named_by(self.node.store, receiving.ref.sha256, caller, root)
            if other is None or other == receiving.ref:
                raise
        switched = self._receiving(other)
        if switched.have != receiving.have:
            raise RefusedError("blob.wrong_start", sha256=other.sha256, next=switched.have)
        switched.set_list(digests)
        return switched

    def _put_answer(
        self, request: Request, caller: Caller, ref: BlobRef, receiving: Receiving | None,
        seal_to: bytes | None, *, drained: bool,
    ) -> Response:  # fmt: skip
        held = self.node.blobs.has(ref.sha256)
        state: Any = "held" if held else {"next": receiving.have if receiving else 0}
        answer = JSONResponse(
            {
                "sha256": ref.sha256,
                "state": state,
                "receipt": self._receipt(caller.node_id, [ref.sha256] if held else []),
            },
            headers=None if drained else {"connection": "close"},
        )
        return self.app.sealed(request, caller, answer, seal_to)

    # --- get ---------------------------------------------------------------------------

    async def get(self, request: Request) -> Response:
        """Admitted and read like a pull; the answer streams (`_Frames`)."""
        app, gate = self.app, self.app.gate
        try:
            caller = gate.admit(request, BLOB_GET)
            seal_to = app._answer_key(request, caller)
        except RefusedError as exc:
            return refusal(exc, close=not await gate.drain(request))
        if not gate.reserve(caller):
            return error_response(503, "server.busy", close=not await gate.drain(request))
        try:
            try:
                body = await gate.read_body(request, caller)
            except RefusedError as exc:
                return refusal(exc, close=True)
        finally:
            gate.release(caller)
        try:
            plain = app._opened(request, caller, body, BLOB_GET)
        except RefusedError as exc:
            return refusal(exc)
        if seal_to is None and body.startswith(WIRE_MAGIC):  # a sealed ask: a sealed answer
            seal_to = trust.seal_key(self.node.store, caller.node_id)
        try:
            with app.transaction(exclusive=True):  # _may_get catches the projections up
                app._remember(caller.node_id, caller.nonce, caller.skew)
                ref, start, with_list = self._may_get(caller.node_id, plain)
        except RefusedError as exc:
            return refusal(exc)
        except ZhibaoError as exc:
            return error_response(500, exc.key, **exc.params)
        path = self.node.blobs.path(ref.sha256)
        try:
            digests = await asyncio.to_thread(_chunk_list, path, ref) if with_list else None
        except BlobError as exc:
            return error_response(500, exc.key, **exc.params)
        context = answer_info(
            request.method, target(request), caller.node_id, self.node.node_id, caller.nonce,
            caller.digest,
        )  # fmt: skip
        frames = _frames_out(path, ref, start, digests, seal_to, context)
        return _Frames(frames, gate.limits.idle_seconds)

    def _may_get(self, caller: str, body: bytes) -> tuple[BlobRef, int, bool]:
        sha, start, with_list = get_ask(body)
        store = self.node.store
        store.catch_up()  # blob_refs and the cases are projections
        if not blob_index.may_fetch(store, caller, sha):
            raise RefusedError("blob.not_yours", sha256=sha)
        ref = self.node.blobs.held(sha)
        if ref is None:
            raise RefusedError("blob.not_held", sha256=sha)
        if start > ref.chunks:
            raise RefusedError("blob.bad_request")
        return ref, start, with_list


def _chunk_list(path: Path, ref: BlobRef) -> bytes:
    """The chunk list of the held blob at `path`, read and checked against `ref` (off the
    event loop: it reads the whole file, and no database)."""
    hasher = Hasher()
    try:
        with open(path, "rb") as src:
            while piece := src.read(CHUNK):
                hasher.update(piece)
    except FileNotFoundError:
        raise BlobError("blob.corrupt", sha256=ref.sha256) from None
    if hasher.ref() != ref:
        raise BlobError("blob.corrupt", sha256=ref.sha256)
    return hasher.chunk_list()


def _frames_out(
    path: Path, ref: BlobRef, start: int, digests: bytes | None, seal_to: bytes | None,
    context: bytes,
) -> Iterator[bytes]:  # fmt: skip
    """The answer to a get, frame by frame: one chunk read and sealed at a time."""

    def frame(kind: bytes, index: int, payload: bytes) -> bytes:
        if seal_to is not None:
            payload = seal(payload, seal_to, chunk_info(context, ref.sha256, kind, index))
        return encode_frame(kind, index, payload)

    if seal_to is not None:
        yield WIRE_MAGIC
    if digests is not None:
        yield frame(LIST, 0, digests)
    with open(path, "rb") as src:  # opened once: a drop meanwhile does not cut the answer
        src.seek(start * CHUNK)
        for index in range(start, ref.chunks):
            yield frame(DATA, index, src.read(CHUNK))


class _Frames(StreamingResponse):
    """A 200 answer streamed frame by frame (no length: chunked). It stops when the caller
    goes away, or when a frame is not taken within `idle` seconds (a reader that stalls
    holds a file and a coroutine, nothing more, and not for long)."""

    def __init__(self, frames: Iterator[bytes], idle: float) -> None:
        super().__init__(frames, media_type=STREAM_TYPE)
        self.frames, self.idle = frames, idle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            for frame in self.frames:
                if gone.is_set():
                    return
                async with asyncio.timeout(self.idle):
                    await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (TimeoutError, OSError):
            return  # the answer stops here; the caller resumes from the chunks it checked
        finally:
            watcher.cancel()
            close = getattr(self.frames, "close", None)
            if close is not None:
                close()
