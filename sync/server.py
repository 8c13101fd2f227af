"""The node's HTTP endpoint (Starlette, served by uvicorn): time, hello, push, pull.

Every request but `/v1/time` is signed by an enrolled node (method, path, body digest,
time, nonce); a stale time or a nonce seen before is refused, so a captured request
cannot be replayed. Handlers run on the event loop thread, one at a time, so the node's
single apsw connection is never used from two threads.

A push is answered (and its receipt signed) once its entries are verified and durable;
the tiers' projections of them are deferred (sync.store) and caught up on the same loop
once no push has come for `IDLE_SECONDS`, a few hundred entries at a time so a request
never waits long, or at once before a pull, which reads them. Then the WAL is
checkpointed, so that work too falls in quiet time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time as _time
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync import receipts, relevance, trust
from sync.ingest import ingest
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.batch import decode_batch, encode_batch
from sync.protocol.errors import RefusedError, ZhibaoError
from sync.protocol.ids import is_within
from sync.protocol.keys import verify
from sync.protocol.messages import request_message

MAX_BODY = 24 * 1024 * 1024
MAX_SKEW_SECONDS = 600
PULL_LIMIT = 5000
BATCH_TYPE = "application/x-zhibao-batch"
IDLE_SECONDS = 0.5  # project deferred entries once no push has come for this long
PROJECT_STEP = 500  # entries projected between two looks at the request queue


def _error(status: int, key: str, **params: Any) -> JSONResponse:
    return JSONResponse(
        {"error": key, "message": i18n.t(key, **params), **{k: str(v) for k, v in params.items()}},
        status_code=status,
    )


class NodeApp:
    """Request handling for one node; `app` is the ASGI application.

    It switches the node's store to deferred projection for good, and while it serves, its
    loop may use the node's connection on its own (idle projection): close the node only
    after the loop has stopped, or on the loop after `stop()`.
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        node.store.defer_projections()
        self._last_push = 0.0
        self._projecting = False
        self._stopped = False
        self.app = Starlette(
            routes=[
                Route("/v1/time", self.time, methods=["GET"]),
                Route("/v1/hello", self.hello, methods=["POST"]),
                Route("/v1/push", self.push, methods=["POST"]),
                Route("/v1/pull", self.pull, methods=["POST"]),
            ]
        )

    async def _authenticate(self, request: Request) -> tuple[str, bytes, str, int]:
        """The sender's id, the body, the nonce and the clock skew in seconds, or
        RefusedError saying why not. Writes nothing: see `_remember`."""
        length = int(request.headers.get("content-length") or 0)
        if length > MAX_BODY:
            raise RefusedError("request.too_big", size=length)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():  # a body without a length is cut off at MAX_BODY
            size += len(chunk)
            if size > MAX_BODY:
                raise RefusedError("request.too_big", size=size)
            chunks.append(chunk)
        body = b"".join(chunks)
        node_id = request.headers.get("x-zhibao-node", "")
        stamp = request.headers.get("x-zhibao-time", "")
        nonce = request.headers.get("x-zhibao-nonce", "")
        signature = request.headers.get("x-zhibao-signature", "")
        if not (node_id and stamp and nonce and signature) or len(nonce) > 64:
            raise RefusedError("request.unsigned")
        store = self.node.store
        key = trust.public_key(store, node_id)
        if key is None:
            raise RefusedError("request.unknown_node", node_id=node_id)
        message = request_message(request.method, request.url.path, body, node_id, stamp, nonce)
        try:
            sig = bytes.fromhex(signature)
        except ValueError:
            raise RefusedError("request.bad_signature") from None
        if not verify(key, message, sig):
            raise RefusedError("request.bad_signature")
        try:
            sent = datetime.fromisoformat(stamp)
            skew = (sent - self.node.clock.now()).total_seconds()
        except (ValueError, TypeError):
            raise RefusedError("request.bad_time") from None
        if abs(skew) > MAX_SKEW_SECONDS:
            raise RefusedError("request.clock", skew=int(skew), time=self.node.clock.stamp())
        return node_id, body, nonce, int(skew)

    def _remember(self, node_id: str, nonce: str, skew: int) -> None:
        """Inside the request's transaction: refuse a nonce seen before, then record it and
        the peer's contact (they commit with what the request changed, in one fsync)."""
        store = self.node.store
        now = int(_time.time())
        if store.query("SELECT 1 FROM nonces WHERE node = ? AND nonce = ?", (node_id, nonce)):
            raise RefusedError("request.replayed")
        store.execute("DELETE FROM nonces WHERE seen < ?", (now - 4 * MAX_SKEW_SECONDS,))
        store.execute(
            "INSERT INTO nonces (node, nonce, seen) VALUES (?, ?, ?)", (node_id, nonce, now)
        )
        store.execute(
            "INSERT INTO peers (node_id, last_contact, skew_seconds) VALUES (?, ?, ?) "
            "ON CONFLICT(node_id) DO UPDATE SET last_contact=excluded.last_contact, "
            "skew_seconds=excluded.skew_seconds",
            (node_id, self.node.clock.stamp(), skew),
        )

    async def _guarded(self, request: Request, handler: Any) -> Response:
        try:
            sender, body, nonce, skew = await self._authenticate(request)
            # one transaction: the nonce, then what the handler writes; the answer (and any
            # receipt in it) leaves only after this commit
            with self.node.store.transaction():
                self._remember(sender, nonce, skew)
                response: Response = handler(sender, body)
            return response
        except RefusedError as exc:
            status = 409 if exc.key == "request.replayed" else 403
            if exc.key in ("request.clock",):
                status = 401
            if exc.key in ("request.too_big",):
                status = 413
            if exc.key == "batch.malformed":
                status = 400
            return _error(status, exc.key, **exc.params)
        except ZhibaoError as exc:
            return _error(500, exc.key, **exc.params)

    async def time(self, request: Request) -> Response:
        return JSONResponse({"time": self.node.clock.stamp(), "node_id": self.node.node_id})

    def _receipt(self, sender: str) -> dict[str, str]:
        made = receipts.issue(
            self.node.store, self.node.signer, self.node.node_id, self.node.clock, sender
        )
        return {"raw": made.raw.decode(), "sig": made.sig.hex()}

    async def hello(self, request: Request) -> Response:
        def handle(sender: str, body: bytes) -> Response:
            heads = {o: s for o, (s, _) in self.node.store.heads().items() if is_within(o, sender)}
            return JSONResponse(
                {
                    "node_id": self.node.node_id,
                    "time": self.node.clock.stamp(),
                    "have": heads,
                    "receipt": self._receipt(sender),
                }
            )

        return await self._guarded(request, handle)

    async def push(self, request: Request) -> Response:
        def handle(sender: str, body: bytes) -> Response:
            runs = decode_batch(body)
            result = ingest(
                self.node.store,
                runs,
                me=self.node.node_id,
                sender=sender,
                received_at=self.node.clock.stamp(),
            )
            return JSONResponse({"result": result.to_json(), "receipt": self._receipt(sender)})

        response = await self._guarded(request, handle)
        self._last_push = _time.monotonic()
        if not self._projecting:
            self._projecting = True
            asyncio.get_running_loop().call_later(IDLE_SECONDS, self._project_when_idle)
        return response

    def stop(self) -> None:
        """No more idle projection steps (call on the serving loop, before closing the node:
        a step already scheduled then does nothing)."""
        self._stopped = True

    def _project_when_idle(self) -> None:
        """Catch the projections up, a step at a time, while no push is coming in."""
        if self._stopped:
            self._projecting = False
            return
        loop = asyncio.get_running_loop()
        quiet = _time.monotonic() - self._last_push
        if quiet < IDLE_SECONDS:
            loop.call_later(IDLE_SECONDS - quiet, self._project_when_idle)
            return
        try:
            remaining = self.node.store.catch_up(PROJECT_STEP)
        except ZhibaoError:  # busy (a clerk's command is writing): look again later
            loop.call_later(IDLE_SECONDS, self._project_when_idle)
            return
        except Exception:  # a bug: let the loop report it; the next push tries again
            self._projecting = False
            raise
        if remaining:
            loop.call_soon(self._project_when_idle)  # requests waiting are served first
            return
        self._projecting = False
        with contextlib.suppress(ZhibaoError):
            self.node.store.checkpoint()

    async def pull(self, request: Request) -> Response:
        def handle(sender: str, body: bytes) -> Response:
            try:
                ask = json.loads(body)
                cursors = {str(o): int(s) for o, s in ask.get("cursors", {}).items()}
                limit = max(1, min(int(ask.get("limit", PULL_LIMIT)), PULL_LIMIT))
                mode = ask.get("mode", "concerns")
            except (ValueError, TypeError, AttributeError):
                raise RefusedError("batch.malformed", reason="bad pull request") from None
            select = relevance.subtree_for if mode == "subtree" else relevance.select_for
            self.node.store.catch_up()  # what concerns the client is read from projections
            entries, more = select(self.node.store, sender, cursors, limit)
            return Response(
                encode_batch(entries),
                media_type=BATCH_TYPE,
                headers={
                    "x-zhibao-more": "1" if more else "0",
                    "x-zhibao-count": str(len(entries)),
                },
            )

        return await self._guarded(request, handle)


i18n.register(
    {
        "request.too_big": ("request body of {size} bytes is too big", "请求体 {size} 字节，过大"),
        "request.unsigned": ("request is not signed", "请求未签名"),
        "request.unknown_node": (
            "node {node_id} is not enrolled here",
            "节点 {node_id} 未在此登记",
        ),
        "request.bad_signature": ("request signature does not verify", "请求签名无效"),
        "request.bad_time": ("request time is malformed", "请求时间格式错误"),
        "request.clock": (
            "request time is {skew} s off the server's clock ({time})",
            "请求时间与服务器时钟相差 {skew} 秒（服务器时间 {time}）",
        ),
        "request.replayed": (
            "request was replayed (nonce seen before)",
            "重放的请求（随机数已用过）",
        ),
    }
)
