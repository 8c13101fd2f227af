"""The node's HTTP endpoint (Starlette, served by uvicorn): time, hello, push, pull, and
the materials' endpoints (sync.blob_wire).

Every request but `/v1/time` is signed by an enrolled node (method, path, body digest,
sender, the server it is for, time, nonce); a stale time, a nonce seen before or a request
signed for another server is refused, so a captured request cannot be replayed. What a
request must show before the server reads its body, and how much body it may send, is
sync.admission. Bodies are sealed both ways (sync.protocol.sealed): a request's to this
node's seal key, opened only after the request is admitted and its body read; an answer's
to the caller's enrolled seal key. A plain push is refused unless the node serves plain
(`serve --plain`). Every refusal is a JSON 4xx with a reason (503 when busy: the server
or its database, TRY_LATER); an unexpected exception is answered 500 and logged as one
line, and the server goes on. Handlers run
on the event loop thread, one at a time, so the node's single apsw connection is never
used from two threads.

Several fronts may serve one city on PostgreSQL (sync.pg: the database orders each log):
a request's transaction that loses a race to another front is run again, whole (nonce
and all), a few times (sync.ingest.retrying) before it is answered 503.

A push is answered (and its receipt signed) once its entries are verified and durable;
the tiers' projections of them are deferred (sync.store) and caught up on the same loop
(sync.idle_projection).
"""

from __future__ import annotations

import json
import time as _time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from sync import admission, forks, link, receipts, relevance, trust
from sync._chunk_end import PROJECT_CHUNK
from sync.admission import (
    NONCE,
    PUSH,
    SYNC,
    Caller,
    Endpoint,
    Gate,
    Limits,
    error_response,
    has_body,
    refusal,
)
from sync.blob_wire import BlobWire
from sync.idle_projection import IdleProjection
from sync.ingest import RACES, ingest, retrying
from sync.logs import log_line
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.batch import decode_batch, encode_batch
from sync.protocol.canonical import MAX_INT
from sync.protocol.errors import RefusedError, StoreError, ZhibaoError, describe
from sync.protocol.ids import is_node_id, is_within
from sync.protocol.messages import WIRE, time_message
from sync.protocol.sealed import (
    SEALED_TYPE,
    SealError,
    answer_info,
    is_sealed,
    open_body,
    request_info,
    seal_body,
)

MAX_BODY, MAX_SKEW_SECONDS = admission.MAX_BODY, admission.MAX_SKEW_SECONDS
PULL_LIMIT = 5000
BATCH_TYPE = "application/x-zhibao-batch"
# The database could not take the request now (busy; another front kept winning the race;
# PostgreSQL unreachable): nothing was written, and the answer is 503 with Retry-After, so
# the client (sync.client: try later) sends it again.
TRY_LATER = RACES | {"store.pg_unreachable"}


async def _not_routed(request: Request, exc: Exception) -> Response:
    """404 and 405 from the router, as JSON like every other refusal."""
    status = exc.status_code if isinstance(exc, HTTPException) else 400
    key = {404: "request.no_route", 405: "request.bad_method"}.get(status, "request.bad")
    response = error_response(status, key, close=has_body(request), path=request.url.path)
    if isinstance(exc, HTTPException) and exc.headers:
        response.headers.update(exc.headers)
    return response


class NodeApp:
    """Request handling for one node; `app` is the ASGI application.

    It switches the node's store to deferred projection for good, and while it serves, its
    loop may use the node's connection on its own (idle projection): close the node only
    after the loop has stopped, or on the loop after `stop()`.
    """

    def __init__(
        self,
        node: Node,
        *,
        limits: Limits | None = None,
        plain: bool = False,
        mounts: Sequence[tuple[str, ASGIApp]] = (),
    ) -> None:
        self.node = node
        self.plain = plain  # serve --plain: take plain bodies, answer plain when asked
        self.gate = Gate(node, limits or Limits())
        node.store.defer_projections()
        self.idle = IdleProjection(node.store)
        self.blob_wire = BlobWire(self)
        self.app = Starlette(
            routes=[
                Route("/v1/time", self._safe(self.time), methods=["GET"]),
                Route("/v1/health", self._safe(self.health), methods=["GET"]),
                Route("/v1/hello", self._safe(self.hello), methods=["POST"]),
                Route("/v1/push", self._safe(self.push), methods=["POST"]),
                Route("/v1/pull", self._safe(self.pull), methods=["POST"]),
                *(
                    Route(path, self._safe(handler), methods=["POST"])
                    for path, handler in self.blob_wire.routes()
                ),
                *(Mount(path, app=app) for path, app in mounts),  # the desk (tiers.desk)
            ],
            exception_handlers={HTTPException: _not_routed},
        )

    # --- admission -------------------------------------------------------------------

    def _safe(
        self, endpoint: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """`endpoint`, answering 500 (and logging one line) for an unexpected exception
        rather than letting it reach uvicorn."""

        async def run(request: Request) -> Response:
            try:
                return await endpoint(request)
            except ZhibaoError as exc:  # the database, before or outside the transaction
                if exc.key not in TRY_LATER:  # (admitting the request reads keys)
                    return self._internal(request, exc)
                return error_response(503, exc.key, close=True, **exc.params)
            except Exception as exc:  # a bug: one request fails, the server goes on
                return self._internal(request, exc)

        return run

    def _internal(self, request: Request, exc: Exception) -> Response:
        log_line(
            "server.internal_logged", method=request.method, path=request.url.path,
            error=describe(exc),
        )  # fmt: skip
        return error_response(500, "server.internal", close=True)

    def _remember(self, node_id: str, nonce: str, skew: int) -> None:
        """Inside the request's transaction: refuse a nonce seen before, then record it and
        the peer's contact (they commit with what the request changed, in one fsync)."""
        store = self.node.store
        now = int(_time.time())
        store.execute("DELETE FROM nonces WHERE seen < ?", (now - 4 * MAX_SKEW_SECONDS,))
        # one statement: a request replayed to another front at the same moment waits for
        # this one's row and is refused when it commits (not a constraint error)
        if not store.query(
            "INSERT INTO nonces (node, nonce, seen) VALUES (?, ?, ?) "
            "ON CONFLICT (node, nonce) DO NOTHING RETURNING 1",
            (node_id, nonce, now),
        ):
            raise RefusedError("request.replayed")
        store.execute(
            "INSERT INTO peers (node_id, last_contact, skew_seconds) VALUES (?, ?, ?) "
            "ON CONFLICT(node_id) DO UPDATE SET last_contact=excluded.last_contact, "
            "skew_seconds=excluded.skew_seconds",
            (node_id, self.node.clock.stamp(), skew),
        )

    async def _guarded(
        self,
        request: Request,
        handler: Callable[[str, bytes], Response],
        endpoint: Endpoint,
        *,
        exclusive: bool = False,
        pace: bool = False,
    ) -> Response:
        """Admit the request on its headers, read its body within the budget and the
        deadline, open it if sealed, then run `handler` in one transaction (`exclusive`:
        no other front appends meanwhile, see `pull`; `pace`: a push, first waiting while
        the projections are far behind, IdleProjection.keep_pace); its answer is sealed to
        the caller's enrolled seal key."""
        gate = self.gate
        try:
            caller = gate.admit(request, endpoint)
            seal_to = self._answer_key(request, caller)  # after the caller is proved
        except RefusedError as exc:
            return refusal(exc, close=not await gate.drain(request))
        if not gate.reserve(caller):
            return error_response(503, "server.busy", close=not await gate.drain(request))
        try:
            try:
                body = await gate.read_body(request, caller)
            except RefusedError as exc:
                return refusal(exc, close=True)
            if pace:
                await self.idle.keep_pace()
            return self._answer(request, caller, body, handler, endpoint, seal_to, exclusive)
        finally:
            gate.release(caller)

    def transaction(self, *, exclusive: bool = False) -> AbstractContextManager[None]:
        """A request's transaction. `exclusive`: the write lock the fronts share (sync.pg)
        taken whole, so no other front appends while it runs — for a request that catches
        the projections up whole and reads them (materials asked for; a pull where fronts
        do not append at once), so that none is passed over. On SQLite every write
        transaction is exclusive."""
        store = self.node.store
        return store.exclusive() if exclusive else store.transaction()

    def _answer_key(self, request: Request, caller: Caller) -> bytes | None:
        """The seal key this request's answer is sealed to: the caller's enrolled one. None
        (a plain answer) only on a plain server, to a client that asked for plain or has no
        seal key enrolled; a sealed server refuses such a caller before reading its body."""
        if self.plain and request.headers.get(WIRE) == "plain":
            return None
        key = trust.seal_key(self.node.store, caller.node_id)
        if key is None and not self.plain:
            raise RefusedError("wire.no_seal_key", node_id=caller.node_id)
        return key

    def _opened(self, request: Request, caller: Caller, body: bytes, endpoint: Endpoint) -> bytes:
        """The plain body: opened with this node's seal key in the context of this very
        request, or as it came when plain is allowed — a push (entries) only on a plain
        server; hello and pull bodies (heads, cursors) from a node whose first round does
        not know this node's seal key yet."""
        if is_sealed(body):
            info = request_info(
                request.method, admission.target(request), caller.node_id, self.node.node_id,
                caller.stamp, caller.nonce,
            )  # fmt: skip
            try:
                return open_body(body, self.node.seals, info)
            except SealError:
                raise RefusedError("wire.cannot_open", node_id=caller.node_id) from None
        if endpoint is PUSH and not self.plain:
            raise RefusedError("wire.plain_refused", node_id=self.node.node_id)
        return body

    def _answer(
        self,
        request: Request,
        caller: Caller,
        body: bytes,
        handler: Callable[[str, bytes], Response],
        endpoint: Endpoint,
        seal_to: bytes | None,
        exclusive: bool = False,
    ) -> Response:
        """`admit` proved the sender and `read_body` that the body is the one it signed."""
        if seal_to is None and is_sealed(body):  # the plain header is not signed: a sealed
            seal_to = trust.seal_key(self.node.store, caller.node_id)  # request, a sealed answer
        try:
            plain = self._opened(request, caller, body, endpoint)
        except RefusedError as exc:  # nothing recorded, not even the nonce
            status = 403 if exc.key == "wire.plain_refused" else 400
            return error_response(status, exc.key, **exc.params)
        store = self.node.store

        def attempt() -> Response:
            # one transaction: the nonce, then what the handler writes; the answer (and any
            # receipt in it) leaves only after this commit
            with self.transaction(exclusive=exclusive):
                self._remember(caller.node_id, caller.nonce, caller.skew)
                return handler(caller.node_id, plain)

        try:  # again, whole, while it loses a race to another front (sync.ingest)
            response = retrying(store, attempt)
        except RefusedError as exc:
            return refusal(exc)
        except ZhibaoError as exc:  # busy or unreachable: nothing was written, come back
            if isinstance(exc, StoreError) and exc.failing and exc.key not in TRY_LATER:
                log_line(exc.key, **exc.params)  # the database failing: the operator's to hear
            return error_response(503 if exc.key in TRY_LATER else 500, exc.key, **exc.params)
        return self.sealed(request, caller, response, seal_to)

    def sealed(
        self, request: Request, caller: Caller, response: Response, seal_to: bytes | None
    ) -> Response:
        """A 200 answer sealed to `seal_to` in the context of the request it answers (as
        it is when `seal_to` is None, or for a refusal)."""
        if seal_to is None or response.status_code != 200:
            return response
        info = answer_info(
            request.method, admission.target(request), caller.node_id, self.node.node_id,
            caller.nonce, caller.digest,
        )  # fmt: skip
        kept = {k: v for k, v in response.headers.items() if k.startswith("x-zhibao-")}
        return Response(seal_body(response.body, seal_to, info), headers=kept,
                        media_type=SEALED_TYPE)  # fmt: skip

    # --- endpoints -------------------------------------------------------------------

    async def time(self, request: Request) -> Response:
        """The time; with `?nonce=HEX` (a client's fresh challenge) signed by this node's
        key, so a client adopts an offset only from a server it can authenticate."""
        me, stamp = self.node.node_id, self.node.clock.stamp()
        answer = {"time": stamp, "node_id": me}
        nonce = request.query_params.get("nonce")
        if nonce is not None:
            if not NONCE.fullmatch(nonce):
                return error_response(400, "time.bad_nonce", close=has_body(request))
            sig = self.node.wire_signer.sign(time_message(me, stamp, nonce))
            answer.update(nonce=nonce, sig=sig.hex())
        return JSONResponse(answer, headers={"connection": "close"} if has_body(request) else None)

    async def health(self, request: Request) -> Response:
        """For a monitor, unsigned: node id, version, last sync and backlog (sync.link.health),
        nothing personal and nothing about the link a stranger could use."""
        close = {"connection": "close", "cache-control": "no-store"}
        return JSONResponse(
            link.health(self.node),
            headers=close if has_body(request) else {"cache-control": "no-store"},
        )

    def _receipt(self, sender: str) -> dict[str, str]:
        made = receipts.issue(
            self.node.store, self.node.wire_signer, self.node.node_id, self.node.clock, sender
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

        return await self._guarded(request, handle, SYNC)

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
            if result.forks:  # evidence travels up in this node's log (sync.fork_evidence)
                forks.report(self.node)
            return JSONResponse({"result": result.to_json(), "receipt": self._receipt(sender)})

        response = await self._guarded(request, handle, PUSH, pace=True)
        self.idle.pushed()
        return response

    async def pull(self, request: Request) -> Response:
        store = self.node.store

        def handle(sender: str, body: bytes) -> Response:
            cursors, limit, mode = _pull_request(body)
            select = relevance.subtree_for if mode == "subtree" else relevance.select_for
            # what concerns the client is read from projections: caught up whole under the
            # lock whole — or, where fronts append at once (PostgreSQL), a chunk beside
            # them, and the read stops where the projections do (sync.relevance)
            store.catch_up(PROJECT_CHUNK if store.races else None)
            entries, more = select(store, sender, cursors, limit)
            return Response(
                encode_batch(entries),
                media_type=BATCH_TYPE,
                headers={
                    "x-zhibao-more": "1" if more else "0",
                    "x-zhibao-count": str(len(entries)),
                },
            )

        return await self._guarded(request, handle, SYNC, exclusive=not store.races)

    def stop(self) -> None:
        """No more idle projection steps (call on the serving loop, before closing the node:
        a step already scheduled then does nothing)."""
        self.idle.stop()


def _pull_request(body: bytes) -> tuple[dict[str, int], int, str]:
    """(cursors, limit, mode) of a pull request; RefusedError for anything else."""
    try:
        ask = json.loads(body)
    except (ValueError, RecursionError):
        raise RefusedError("batch.malformed", reason="pull request is not JSON") from None
    cursors = ask.get("cursors", {}) if isinstance(ask, dict) else None
    limit = ask.get("limit", PULL_LIMIT) if isinstance(ask, dict) else None
    mode = ask.get("mode", "concerns") if isinstance(ask, dict) else None
    ok = (
        isinstance(cursors, dict)
        and all(is_node_id(o) and type(s) is int and 0 <= s <= MAX_INT for o, s in cursors.items())
        and type(limit) is int
        and mode in ("concerns", "subtree")
    )
    if not ok:
        raise RefusedError("batch.malformed", reason="bad pull request")
    assert isinstance(cursors, dict) and isinstance(limit, int) and isinstance(mode, str)
    return cursors, max(1, min(limit, PULL_LIMIT)), mode


i18n.register(
    {
        "request.no_route": ("no such endpoint: {path}", "没有这个接口：{path}"),
        "request.bad_method": ("method not allowed on {path}", "{path} 不允许此请求方法"),
        "request.bad": ("bad request", "错误的请求"),
        "wire.plain_refused": (
            "node {node_id} takes only sealed bodies: the push came in the clear (sync "
            "without --plain, or serve --plain here to allow it)",
            "节点 {node_id} 只接收加密的请求体：此次上传为明文（请勿用 --plain 同步，"
            "或在此处用 serve --plain 允许明文）",
        ),
        "wire.cannot_open": (
            "the sealed body from {node_id} does not open with this node's seal key in "
            "this request's context (sealed to another key, for another request, or damaged)",
            "{node_id} 发来的加密请求体无法用本节点的加密密钥在此请求中打开"
            "（加密对象不是本节点、属于另一请求或已损坏）",
        ),
        "wire.no_seal_key": (
            "node {node_id} has no seal key enrolled here, so nothing can be sent to it "
            "sealed: its parent must enrol it again with --seal-key (from `zhibao node show` "
            "there)",
            "节点 {node_id} 在此未登记加密公钥，无法向其发送加密数据：请其上级用 --seal-key "
            "重新登记（在该节点运行 `zhibao node show` 查看）",
        ),
        "time.bad_nonce": (
            "the time challenge must be 16 to 64 hex digits",
            "时间质询须为 16 至 64 位十六进制数字",
        ),
        "server.internal": (
            "internal error on the server; it has been logged",
            "服务器内部错误，已记录",
        ),
        "server.internal_logged": (
            "internal error answering {method} {path}: {error}",
            "处理 {method} {path} 时发生内部错误：{error}",
        ),
    }
)
