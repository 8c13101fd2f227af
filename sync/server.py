"""The node's HTTP endpoint (Starlette, served by uvicorn): time, hello, push, pull.

Every request but `/v1/time` is signed by an enrolled node (method, path, body digest,
sender, the server it is for, time, nonce); a stale time, a nonce seen before or a request
signed for another server is refused, so a captured request cannot be replayed. Handlers
run on the event loop thread, one at a time, so the node's single apsw connection is never
used from two threads.

Nothing is trusted before it is checked, and memory is spent only on who passed: the
headers (sender enrolled here and allowed on this endpoint, server, time, nonce) are
checked before a byte of the body is read; a body is then read within a deadline and a
byte budget shared by all requests (`Limits`), and its signature checked last. Every
refusal is JSON `{"error": key, "message": ...}` with a 4xx status (503 when busy); an
unexpected exception is answered 500 and logged as one line, and the server goes on.

A push is answered (and its receipt signed) once its entries are verified and durable;
the tiers' projections of them are deferred (sync.store) and caught up on the same loop
once no push has come for `IDLE_SECONDS`, a few hundred entries at a time so a request
never waits long, or at once before a pull, which reads them. Then the WAL is
checkpointed, so that work too falls in quiet time.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time as _time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync import receipts, relevance, trust
from sync.ingest import ingest
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.batch import decode_batch, encode_batch
from sync.protocol.canonical import MAX_INT
from sync.protocol.errors import RefusedError, ZhibaoError
from sync.protocol.ids import is_node_id, is_within, parent_of
from sync.protocol.keys import verify
from sync.protocol.messages import request_message, time_message

MAX_BODY = 24 * 1024 * 1024  # a push: one compressed batch
MAX_SMALL_BODY = 1024 * 1024  # a hello or a pull: cursors
MAX_SKEW_SECONDS = 600
PULL_LIMIT = 5000
BATCH_TYPE = "application/x-zhibao-batch"
IDLE_SECONDS = 0.5  # project deferred entries once no push has come for this long
PROJECT_STEP = 500  # entries projected between two looks at the request queue
FAILURE_BACKOFF_MAX = 60.0  # longest pause of idle projection after an unexpected error
NONCE = re.compile(r"[0-9a-f]{16,64}")  # what a client may choose as a nonce or a challenge
SIGNATURE = re.compile(r"[0-9a-f]{128}")
SENDER, TIME, NONCE_HEADER, SIGNATURE_HEADER, SERVER = (
    "x-zhibao-node",
    "x-zhibao-time",
    "x-zhibao-nonce",
    "x-zhibao-signature",
    "x-zhibao-server",
)
_STATUS = {
    "request.replayed": 409,
    "request.clock": 401,
    "request.too_big": 413,
    "request.bad_length": 400,
    "request.bad_time": 400,
    "request.timeout": 408,
    "batch.malformed": 400,
    "time.bad_nonce": 400,
    "server.busy": 503,
}  # any other refusal: 403


@dataclass(frozen=True)
class Limits:
    """What one server spends on request bodies before and while it trusts them.

    A body must come at `min_rate` bytes/s or better after `grace_seconds`, with no pause
    longer than `idle_seconds`; all bodies being read or held at once fit in `body_budget`
    bytes (a body without a length counts as its endpoint's maximum). A refused body is
    drained up to `drain_bytes` (so the client reads the answer), else the connection is
    closed.
    """

    max_body: int = MAX_BODY
    max_small_body: int = MAX_SMALL_BODY
    body_budget: int = 64 * 1024 * 1024
    idle_seconds: float = 30.0
    grace_seconds: float = 30.0
    min_rate: int = 8 * 1024
    drain_bytes: int = 64 * 1024
    drain_seconds: float = 1.0


Rule = Callable[[str, str], bool]  # (sender, this node) -> may the sender call here?


def _pushes_here(sender: str, me: str) -> bool:
    return parent_of(sender) == me


def _below(sender: str, me: str) -> bool:
    return sender != me and is_within(sender, me)


@dataclass(frozen=True)
class _Caller:
    """What the headers of a request say, checked: who, with which key, when, which nonce."""

    node_id: str
    key: bytes
    stamp: str
    nonce: str
    sig: bytes
    skew: int


def log_line(key: str, **params: object) -> None:
    """One line on stderr, stamped with the local time: what an operator reads in the log.
    Callers pass no personal data (no exception messages from the tiers, no bodies)."""
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    print(f"{stamp} zhibao: {i18n.t(key, **params)}", file=sys.stderr, flush=True)


def describe(exc: BaseException) -> str:
    """An exception's type and where it was raised (file:line), never its message, which
    may quote personal data."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return type(exc).__name__ + where


def _error(status: int, key: str, *, close: bool = False, **params: Any) -> JSONResponse:
    headers = {"connection": "close"} if close else None
    if status == 503:
        headers = {**(headers or {}), "retry-after": "5"}
    return JSONResponse(
        {"error": key, "message": i18n.t(key, **params), **{k: str(v) for k, v in params.items()}},
        status_code=status,
        headers=headers,
    )


def _refusal(exc: RefusedError, *, close: bool = False) -> JSONResponse:
    return _error(_STATUS.get(exc.key, 403), exc.key, close=close, **exc.params)


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or (length is not None and length != "0")


async def _not_routed(request: Request, exc: Exception) -> Response:
    """404 and 405 from the router, as JSON like every other refusal."""
    status = exc.status_code if isinstance(exc, HTTPException) else 400
    key = {404: "request.no_route", 405: "request.bad_method"}.get(status, "request.bad")
    response = _error(status, key, close=_has_body(request), path=request.url.path)
    if isinstance(exc, HTTPException) and exc.headers:
        response.headers.update(exc.headers)
    return response


class NodeApp:
    """Request handling for one node; `app` is the ASGI application.

    It switches the node's store to deferred projection for good, and while it serves, its
    loop may use the node's connection on its own (idle projection): close the node only
    after the loop has stopped, or on the loop after `stop()`.
    """

    def __init__(self, node: Node, *, limits: Limits | None = None) -> None:
        self.node = node
        self.limits = limits or Limits()
        node.store.defer_projections()
        self._last_push = 0.0
        self._projecting = False
        self._stopped = False
        self._failures = 0  # unexpected errors of idle projection in a row
        self._budget = self.limits.body_budget  # bytes of bodies that may still be taken in
        self.app = Starlette(
            routes=[
                Route("/v1/time", self._safe(self.time), methods=["GET"]),
                Route("/v1/hello", self._safe(self.hello), methods=["POST"]),
                Route("/v1/push", self._safe(self.push), methods=["POST"]),
                Route("/v1/pull", self._safe(self.pull), methods=["POST"]),
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
            except Exception as exc:  # a bug: one request fails, the server goes on
                log_line(
                    "server.internal_logged",
                    method=request.method,
                    path=request.url.path,
                    error=describe(exc),
                )
                return _error(500, "server.internal", close=True)

        return run

    def _admit(self, request: Request, rule: Rule, refusal: str, cap: int) -> _Caller:
        """Check everything the headers say, before any of the body is read; RefusedError
        saying why not. Reads the database only to look the sender's key up."""
        headers = request.headers
        length = headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                raise RefusedError("request.bad_length")
            if int(length) > cap:
                raise RefusedError("request.too_big", size=int(length), limit=cap)
        values = {name: headers.get(name, "") for name in (SENDER, TIME, NONCE_HEADER, SERVER)}
        signature = headers.get(SIGNATURE_HEADER, "")
        for name, value in (*values.items(), (SIGNATURE_HEADER, signature)):
            if not value:
                raise RefusedError("request.unsigned", header=name)
        node_id, stamp, nonce, server = values.values()
        if not is_node_id(node_id):
            raise RefusedError("request.unsigned", header=SENDER)
        if not NONCE.fullmatch(nonce):
            raise RefusedError("request.unsigned", header=NONCE_HEADER)
        if not SIGNATURE.fullmatch(signature):
            raise RefusedError("request.bad_signature")
        me = self.node.node_id
        if server != me:
            raise RefusedError("request.wrong_server", server=server[:20], node_id=me)
        try:
            sent = datetime.fromisoformat(stamp)
            skew = (sent - self.node.clock.now()).total_seconds()
        except (ValueError, TypeError):  # TypeError: a time without its offset
            raise RefusedError("request.bad_time") from None
        if abs(skew) > MAX_SKEW_SECONDS:
            raise RefusedError("request.clock", skew=int(skew), time=self.node.clock.stamp())
        if not rule(node_id, me):
            raise RefusedError(refusal, node_id=node_id, me=me)
        key = trust.public_key(self.node.store, node_id)
        if key is None:
            raise RefusedError("request.unknown_node", node_id=node_id)
        return _Caller(node_id, key, stamp, nonce, bytes.fromhex(signature), int(skew))

    async def _drain(self, request: Request) -> bool:
        """Read (and drop) what is left of a refused body, a little and briefly: True when
        it all came, so the connection can serve the client's next request."""
        if not _has_body(request):
            return True
        left = self.limits.drain_bytes
        try:
            async with asyncio.timeout(self.limits.drain_seconds):
                while True:
                    message = await request.receive()
                    if message["type"] != "http.request":
                        return False
                    left -= len(message.get("body", b""))
                    if left < 0:
                        return False
                    if not message.get("more_body", False):
                        return True
        except TimeoutError:
            return False

    async def _read_body(self, request: Request, cap: int, expected: int) -> bytes:
        """The body, within the deadline its size allows; RefusedError when it is too big,
        too slow or stalls (it is then left unread and the connection closed)."""
        loop = asyncio.get_running_loop()
        limits = self.limits
        deadline = loop.time() + limits.grace_seconds + expected / limits.min_rate
        body = bytearray()
        while True:
            wait = min(limits.idle_seconds, deadline - loop.time())
            try:
                async with asyncio.timeout(max(wait, 0)):
                    message = await request.receive()
            except TimeoutError:
                raise RefusedError("request.timeout", size=len(body)) from None
            if message["type"] != "http.request":  # the client went away
                raise RefusedError("request.disconnected")
            body += message.get("body", b"")
            if len(body) > cap:
                raise RefusedError("request.too_big", size=len(body), limit=cap)
            if not message.get("more_body", False):
                return bytes(body)

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

    async def _guarded(
        self,
        request: Request,
        handler: Callable[[str, bytes], Response],
        *,
        rule: Rule,
        refusal: str,
        cap: int,
    ) -> Response:
        """Admit the request on its headers, read its body within the budget and the
        deadline, verify its signature, then run `handler` in one transaction."""
        try:
            caller = self._admit(request, rule, refusal, cap)
        except RefusedError as exc:
            return _refusal(exc, close=not await self._drain(request))
        length = request.headers.get("content-length")
        reserved = int(length) if length is not None else cap
        if reserved > self._budget:
            return _error(503, "server.busy", close=not await self._drain(request))
        self._budget -= reserved
        try:
            try:
                body = await self._read_body(request, cap, reserved)
            except RefusedError as exc:
                return _refusal(exc, close=True)
            return self._answer(request, caller, body, handler)
        finally:
            self._budget += reserved

    def _answer(
        self,
        request: Request,
        caller: _Caller,
        body: bytes,
        handler: Callable[[str, bytes], Response],
    ) -> Response:
        me = self.node.node_id
        message = request_message(
            request.method, request.url.path, body, caller.node_id, caller.stamp, caller.nonce,
            server=me,
        )  # fmt: skip
        try:
            if not verify(caller.key, message, caller.sig):
                raise RefusedError("request.bad_signature")
            # one transaction: the nonce, then what the handler writes; the answer (and any
            # receipt in it) leaves only after this commit
            with self.node.store.transaction():
                self._remember(caller.node_id, caller.nonce, caller.skew)
                return handler(caller.node_id, body)
        except RefusedError as exc:
            return _refusal(exc)
        except ZhibaoError as exc:
            return _error(500, exc.key, **exc.params)

    # --- endpoints -------------------------------------------------------------------

    async def time(self, request: Request) -> Response:
        """The time; with `?nonce=HEX` (a client's fresh challenge) signed by this node's
        key, so a client adopts an offset only from a server it can authenticate."""
        me, stamp = self.node.node_id, self.node.clock.stamp()
        answer = {"time": stamp, "node_id": me}
        nonce = request.query_params.get("nonce")
        if nonce is not None:
            if not NONCE.fullmatch(nonce):
                return _error(400, "time.bad_nonce", close=_has_body(request))
            sig = self.node.signer.sign(time_message(me, stamp, nonce))
            answer.update(nonce=nonce, sig=sig.hex())
        return JSONResponse(answer, headers={"connection": "close"} if _has_body(request) else None)

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

        return await self._guarded(
            request,
            handle,
            rule=_below,
            refusal="request.not_below",
            cap=self.limits.max_small_body,
        )

    async def push(self, request: Request) -> Response:
        def handle(sender: str, body: bytes) -> Response:
            runs = decode_batch(body)
            result = ingest(
                self.node.store,
                runs,
                me=self.node.node_id,
                sender=sender,
                received_at=self.node.clock.stamp(),
                authenticated=True,  # the sender's signature on the body was checked
            )
            return JSONResponse({"result": result.to_json(), "receipt": self._receipt(sender)})

        response = await self._guarded(
            request,
            handle,
            rule=_pushes_here,
            refusal="request.not_child",
            cap=self.limits.max_body,
        )
        self._last_push = _time.monotonic()
        if not self._projecting:
            self._projecting = True
            asyncio.get_running_loop().call_later(IDLE_SECONDS, self._project_when_idle)
        return response

    async def pull(self, request: Request) -> Response:
        def handle(sender: str, body: bytes) -> Response:
            cursors, limit, mode = _pull_request(body)
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

        return await self._guarded(
            request,
            handle,
            rule=_below,
            refusal="request.not_below",
            cap=self.limits.max_small_body,
        )

    # --- idle projection -------------------------------------------------------------

    def stop(self) -> None:
        """No more idle projection steps (call on the serving loop, before closing the node:
        a step already scheduled then does nothing)."""
        self._stopped = True

    def _project_when_idle(self) -> None:
        """Catch the projections up, a step at a time, while no push is coming in. Any
        failure waits and tries again: the entries are durable, only their projection is
        late, and a server must not stop projecting for good over one bad moment."""
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
            if not remaining:
                self.node.store.checkpoint()
        except ZhibaoError:  # busy (a clerk's command is writing): look again later
            loop.call_later(IDLE_SECONDS, self._project_when_idle)
            return
        except Exception as exc:  # a bug: say so, wait longer each time, try again
            self._failures += 1
            wait = min(IDLE_SECONDS * 2**self._failures, FAILURE_BACKOFF_MAX)
            log_line("server.projection_failed", error=describe(exc), seconds=wait)
            loop.call_later(wait, self._project_when_idle)
            return
        self._failures = 0
        if remaining:
            loop.call_soon(self._project_when_idle)  # requests waiting are served first
            return
        self._projecting = False


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
        "request.too_big": (
            "request body of {size} bytes is too big (at most {limit} here)",
            "请求体 {size} 字节，过大（此处上限 {limit} 字节）",
        ),
        "request.bad_length": (
            "request Content-Length is malformed",
            "请求的 Content-Length 格式错误",
        ),
        "request.unsigned": (
            "request is not signed (header {header} missing or malformed)",
            "请求未签名（请求头 {header} 缺失或格式错误）",
        ),
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
        "request.wrong_server": (
            "request was signed for node {server}, but this is node {node_id}",
            "请求是为节点 {server} 签名的，本节点是 {node_id}",
        ),
        "request.not_child": (
            "node {node_id} may not push to {me}: only its direct children can",
            "节点 {node_id} 不能向 {me} 上传：只有其直属下级可以",
        ),
        "request.not_below": (
            "node {node_id} may not sync with {me}: only nodes below it can",
            "节点 {node_id} 不能与 {me} 同步：只有其下级节点可以",
        ),
        "request.timeout": (
            "request body came too slowly and was cut after {size} bytes; nothing was applied",
            "请求体传输过慢，已在 {size} 字节处中断；未应用任何内容",
        ),
        "request.disconnected": ("the client went away", "客户端已断开"),
        "request.no_route": ("no such endpoint: {path}", "没有这个接口：{path}"),
        "request.bad_method": ("method not allowed on {path}", "{path} 不允许此请求方法"),
        "request.bad": ("bad request", "错误的请求"),
        "time.bad_nonce": (
            "the time challenge must be 16 to 64 hex digits",
            "时间质询须为 16 至 64 位十六进制数字",
        ),
        "server.busy": (
            "the server is busy with other uploads; try again shortly",
            "服务器正忙于接收其他上传，请稍后重试",
        ),
        "server.internal": (
            "internal error on the server; it has been logged",
            "服务器内部错误，已记录",
        ),
        "server.internal_logged": (
            "internal error answering {method} {path}: {error}",
            "处理 {method} {path} 时发生内部错误：{error}",
        ),
        "server.projection_failed": (
            "projecting received entries failed ({error}); trying again in {seconds:.0f} s",
            "处理已接收条目的投影失败（{error}）；{seconds:.0f} 秒后重试",
        ),
    }
)
