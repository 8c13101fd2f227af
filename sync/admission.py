"""What a request must show before a server spends anything on it (sync.server).

Order, so that memory and time go only to a sender that has passed everything the
headers can prove: the declared length is given and fits the endpoint; the zhibao headers
are present and well formed; the request is for this server; its time is within the skew;
its sender may call this endpoint (`may_push`: a direct child; `may_sync`: any node below);
its sender is enrolled here; its signature verifies — over the path and its query string
and the body's digest, which travels in a header, so no body is read before the sender is
proved — and its nonce is new. Only then is the body read, one at a time per sender,
within a byte budget shared by all requests, at a minimum rate from the start; it must be
exactly as long as declared and have the digest that was signed. A streamed body (a
material's chunks, sync.blob_wire) is handed over piece by piece as it comes
(`stream_body`) and costs the budget one frame, not its length; its digest can only be
checked at its end. A refused body is drained a little so an honest client
reads the answer, else its connection is closed unread.

Every refusal is JSON `{"error": key, "message": ...}` (`error_response`).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from sync import clock, keyring, trust
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.errors import RefusedError
from sync.protocol.ids import is_node_id, is_within, parent_of
from sync.protocol.keys import verify
from sync.protocol.messages import (
    DIGEST,
    SENDER,
    SERVER,
    TIME,
    digest_message,
)
from sync.protocol.messages import (
    NONCE as NONCE_HEADER,
)
from sync.protocol.messages import (
    SIGNATURE as SIGNATURE_HEADER,
)

MAX_BODY = 24 * 1024 * 1024  # a push: one compressed batch
MAX_SMALL_BODY = 1024 * 1024  # a hello or a pull: cursors
MAX_SKEW_SECONDS = clock.MAX_SKEW_SECONDS  # one tolerance: requests and --at
NONCE = re.compile(r"[0-9a-f]{16,64}")  # what a client may choose as a nonce or a challenge
SIGNATURE = re.compile(r"[0-9a-f]{128}")
DIGEST_HEX = re.compile(r"[0-9a-f]{64}")
STATUS = {
    "request.no_length": 411,
    "request.replayed": 409,
    "request.clock": 401,
    "request.too_big": 413,
    "request.bad_length": 400,
    "request.bad_time": 400,
    "request.timeout": 408,
    "batch.malformed": 400,
    "time.bad_nonce": 400,
    "server.busy": 503,
    "blob.bad_request": 400,
    "blob.bad_list": 400,
    "blob.bad_chunk": 400,
    "blob.bad_frame": 400,
    "blob.beyond_end": 400,
    "blob.hash_mismatch": 400,
    "blob.wrong_start": 409,
    "blob.too_big_here": 413,
    "blob.not_held": 404,
    "blob.disk_full": 507,
    "wire.cannot_open": 400,
    "wire.plain_refused": 403,
}  # any other refusal: 403


REVOKED_REMEMBERED = 4096  # revoked-key requests counted lately, by (node, nonce)


@dataclass(frozen=True)
class Limits:
    """What one server spends on request bodies before and while it trusts them.

    A body must come at `min_rate` bytes/s or better after `grace_seconds`, with no pause
    longer than `idle_seconds`; all bodies being read or held at once fit in `body_budget`
    bytes (a body without a length counts as its endpoint's maximum). A refused body is
    drained up to `drain_bytes` for at most `drain_seconds`, else its connection closed.
    """

    max_body: int = MAX_BODY
    max_small_body: int = MAX_SMALL_BODY
    body_budget: int = 64 * 1024 * 1024
    idle_seconds: float = 30.0
    grace_seconds: float = 30.0
    min_rate: int = 8 * 1024
    drain_bytes: int = 64 * 1024
    drain_seconds: float = 1.0


def may_push(sender: str, me: str) -> bool:
    """Pushes come only from direct children: a log reaches its parent from below."""
    return parent_of(sender) == me


def may_sync(sender: str, me: str) -> bool:
    """Hello and pull: any node below (a restore may pull from a grandparent)."""
    return sender != me and is_within(sender, me)


@dataclass(frozen=True)
class Endpoint:
    """Who may call an endpoint (`allows(sender, this node)`), what a refusal says, and
    whether its body is small (a hello, a pull) or a batch (a push); a `streamed` body is
    handed to its handler as it comes, never held whole."""

    allows: Callable[[str, str], bool]
    refusal: str
    small: bool
    streamed: bool = False

    def cap(self, limits: Limits) -> int:
        return limits.max_small_body if self.small else limits.max_body


PUSH = Endpoint(may_push, "request.not_child", small=False)
SYNC = Endpoint(may_sync, "request.not_below", small=True)  # hello and pull
# materials (sync.blob_wire): what a parent holds of some, and their chunks, go up only
# from direct children, like a push; any node below may fetch what it may be sent
BLOB_HAVE = Endpoint(may_push, "request.not_child", small=True)
BLOB_PUT = Endpoint(may_push, "request.not_child", small=False, streamed=True)
BLOB_GET = Endpoint(may_sync, "request.not_below", small=True)


def target(request: Request) -> str:
    """What a request signature (and a sealed body's context) names of the URL: the path
    and, when there is one, the query string as sent."""
    query = request.url.query
    return f"{request.url.path}?{query}" if query else request.url.path


@dataclass(frozen=True)
class Caller:
    """What the headers of a request say, checked: who, with which key, when, which nonce."""

    node_id: str
    stamp: str
    nonce: str
    digest: str
    length: int
    skew: int


def error_response(status: int, key: str, *, close: bool = False, **params: Any) -> JSONResponse:
    """A refusal: `{"error": key, "message": ..., "params": {...}, **params}`; the client
    renders `error` with `params` (numbers kept as numbers) in its own reader's language,
    `message` (this server's) when it does not know the key. `close` ends the connection
    (its request body was left unread); a 503 says when to come back."""
    headers = {"connection": "close"} if close else {}
    if status == 503:
        headers["retry-after"] = "5"
    typed = {k: v if v is None or isinstance(v, str | int | float) else str(v)
             for k, v in params.items()}  # fmt: skip
    return JSONResponse(
        {"error": key, "message": i18n.t(key, **params), **{k: str(v) for k, v in params.items()},
         "params": typed},
        status_code=status,
        headers=headers or None,
    )  # fmt: skip


def refusal(exc: RefusedError, *, close: bool = False) -> JSONResponse:
    return error_response(STATUS.get(exc.key, 403), exc.key, close=close, **exc.params)


def has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or (length is not None and length != "0")


class Gate:
    """Admission for one server: the header checks, then bodies within the budget and
    their deadline. Used on the server's event loop only (the budget is a plain int)."""

    def __init__(self, node: Node, limits: Limits) -> None:
        self.node = node
        self.limits = limits
        self._revoked_seen: set[tuple[str, str]] = set()  # (node, nonce) counted already
        self.free = limits.body_budget  # bytes of bodies that may still be taken in
        self.reading: dict[str, int] = {}  # senders whose body is being read or held: bytes

    def admit(self, request: Request, endpoint: Endpoint) -> Caller:
        """Check everything the headers say, signature and nonce included, before any of the
        body is read; RefusedError saying why not. Reads the database only to look the
        sender's key and the nonce up."""
        cap = endpoint.cap(self.limits)
        headers = request.headers
        length = headers.get("content-length")
        if length is None:
            raise RefusedError("request.no_length")
        if not (length.isascii() and length.isdigit()):
            raise RefusedError("request.bad_length")
        if int(length) > cap:
            raise RefusedError("request.too_big", size=int(length), limit=cap)
        names = (SENDER, SERVER, TIME, NONCE_HEADER, DIGEST, SIGNATURE_HEADER)
        values = [headers.get(name, "") for name in names]
        for name, value in zip(names, values, strict=True):
            if not value:
                raise RefusedError("request.unsigned", header=name)
        node_id, server, stamp, nonce, digest, signature = values
        if not is_node_id(node_id):
            raise RefusedError("request.unsigned", header=SENDER)
        if not NONCE.fullmatch(nonce):
            raise RefusedError("request.unsigned", header=NONCE_HEADER)
        if not DIGEST_HEX.fullmatch(digest):
            raise RefusedError("request.unsigned", header=DIGEST)
        if not SIGNATURE.fullmatch(signature):
            raise RefusedError("request.bad_signature")
        me = self.node.node_id
        if server != me:
            raise RefusedError("request.wrong_server", server=server[:20], node_id=me)
        try:
            skew = (datetime.fromisoformat(stamp) - self.node.clock.now()).total_seconds()
        except (ValueError, TypeError):  # TypeError: a time without its offset
            raise RefusedError("request.bad_time") from None
        if abs(skew) > MAX_SKEW_SECONDS:
            raise RefusedError("request.clock", skew=int(skew), time=self.node.clock.stamp())
        if not endpoint.allows(node_id, me):
            raise RefusedError(endpoint.refusal, node_id=node_id, me=me)
        store = self.node.store
        message = digest_message(
            request.method, target(request), digest, node_id, stamp, nonce, server=me
        )
        sig = bytes.fromhex(signature)
        if trust.verify_wire(store, node_id, lambda key: verify(key, message, sig)) is None:
            if self._revoked_key(node_id, nonce, message, sig):
                raise RefusedError("request.revoked", node_id=node_id)
            if trust.public_key(store, node_id) is None:
                raise RefusedError("request.unknown_node", node_id=node_id)
            raise RefusedError("request.bad_signature")
        if self.node.store.query(
            "SELECT 1 FROM nonces WHERE node = ? AND nonce = ?", (node_id, nonce)
        ):  # seen before: checked again in the request's transaction, which records it
            raise RefusedError("request.replayed")
        return Caller(node_id, stamp, nonce, digest, int(length), int(skew))

    def _revoked_key(self, node_id: str, nonce: str, message: bytes, signature: bytes) -> bool:
        """Whether a key `node_id` was enrolled with, now revoked, signed this request:
        then it is refused as such and counted (`revoked_key_used`) — once per request, so
        replaying one refused request costs no write per copy."""
        store = self.node.store
        if not keyring.signed_by_revoked(
            store, node_id, lambda key: verify(key, message, signature)
        ):
            return False
        if (node_id, nonce) in self._revoked_seen:
            return True
        if len(self._revoked_seen) >= REVOKED_REMEMBERED:
            self._revoked_seen.clear()
        self._revoked_seen.add((node_id, nonce))
        with store.transaction():
            keyring.record_use(store, node_id, node_id, "request", None, self.node.clock.stamp())
        return True

    def reserve(self, caller: Caller, size: int | None = None) -> bool:
        """Take the caller's body (or `size` bytes of it, for a streamed body) from the
        budget, one body at a time per sender: False when it cannot be held now (the sender
        is answered 503 and comes back)."""
        size = caller.length if size is None else min(size, caller.length)
        if caller.node_id in self.reading or size > self.free:
            return False
        self.reading[caller.node_id] = size
        self.free -= size
        return True

    def release(self, caller: Caller) -> None:
        self.free += self.reading.pop(caller.node_id, 0)

    async def drain(self, request: Request) -> bool:
        """Read (and drop) what is left of a refused body, a little and briefly: True when
        it all came, so the connection can serve the client's next request."""
        if not has_body(request):
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

    async def read_body(self, request: Request, caller: Caller) -> bytes:
        """The body, exactly as long as declared and with the digest that was signed, coming
        at `min_rate` or better once `grace_seconds` have passed (checked as it comes, not
        only at the end); RefusedError otherwise (the rest is then left unread: close the
        connection)."""
        body = bytearray()
        async for piece in self.stream_body(request, caller):
            body += piece
        return bytes(body)

    async def stream_body(self, request: Request, caller: Caller) -> AsyncIterator[bytes]:
        """The body piece by piece as it comes, under the rules of `read_body`; the digest
        is checked once the last piece is in (RefusedError then, after every piece was
        given: a streamed body's handler must check what it takes on its own)."""
        loop = asyncio.get_running_loop()
        limits = self.limits
        start = loop.time()
        expected = caller.length
        digest = hashlib.sha256()
        got = 0
        while True:
            owed = (loop.time() - start - limits.grace_seconds) * limits.min_rate
            if got < owed:
                raise RefusedError("request.timeout", size=got)
            behind = start + limits.grace_seconds + (got + 1) / limits.min_rate
            wait = min(limits.idle_seconds, behind - loop.time())
            try:
                async with asyncio.timeout(max(wait, 0.001)):
                    message = await request.receive()
            except TimeoutError:
                raise RefusedError("request.timeout", size=got) from None
            if message["type"] != "http.request":  # the client went away
                raise RefusedError("request.disconnected")
            piece = message.get("body", b"")
            got += len(piece)
            if got > expected:
                raise RefusedError("request.too_big", size=got, limit=expected)
            digest.update(piece)
            if piece:
                yield piece
            if not message.get("more_body", False):
                if got != expected or digest.hexdigest() != caller.digest:
                    raise RefusedError("request.bad_signature")
                return


i18n.register(
    {
        "request.too_big": (
            "request body of {size} bytes is too big (at most {limit} here)",
            "请求体 {size} 字节，过大（此处上限 {limit} 字节）",
        ),
        "request.no_length": (
            "request has no Content-Length: a signed request must declare its size",
            "请求缺少 Content-Length：签名请求须声明其长度",
        ),
        "request.bad_length": (
            "request Content-Length is malformed",
            "请求的 Content-Length 格式错误",
        ),
        "request.unsigned": (
            "request is not signed (header {header} missing or malformed)",
            "请求未签名（请求头 {header} 缺失或格式错误）",
        ),
        "request.revoked": (
            "the key of node {node_id} has been revoked: it may not sync any more",
            "节点 {node_id} 的密钥已被吊销：不能再同步",
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
        "server.busy": (
            "the server is busy with other uploads; try again shortly",
            "服务器正忙于接收其他上传，请稍后重试",
        ),
    }
)
