"""The HTTP client side of sync: signed requests to a peer over an httpx transport.

Every request names the server it is for (`server_id`: the parent's id, or what the
server says it is in its time answer), so it cannot be replayed to another server.
Every library exception becomes the project's own (LinkDownError, RefusedError), so the
round and the tiers never see httpx: a 408, 429, 502, 503 or 504, or any 5xx without the
server's JSON reason, is a link problem (try again later); any other refusal is a
RefusedError with the server's reason. Tests inject any `httpx.BaseTransport`.

Bodies are sealed (sync.protocol.sealed): a request's to the server's enrolled seal key,
bound to that request; the answer comes sealed to this node's. A hello or pull goes plain
only while the server's seal key is not known here (a first round, a restore: heads and
cursors, no personal data; the answer still comes sealed); a push never does unless
`plain` (sync --plain) was asked for, which sends every body in the clear.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from sync import trust
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.errors import LinkDownError, RefusedError
from sync.protocol.ids import is_node_id
from sync.protocol.keys import verify
from sync.protocol.messages import DIGEST, WIRE, request_headers, time_message
from sync.protocol.sealed import (
    SEALED_TYPE,
    SealError,
    answer_info,
    is_sealed,
    open_body,
    request_info,
    seal_body,
)

BATCH_TYPE = "application/x-zhibao-batch"
PRIVATE_PATHS = frozenset({"/v1/push", "/v1/blobs/put"})
_TRY_LATER = frozenset({408, 429, 502, 503, 504})  # the link or the load, not the request


@dataclass(frozen=True)
class Reply:
    """A 2xx answer: its body (opened when it came sealed) and its headers."""

    content: bytes
    headers: httpx.Headers


@dataclass(frozen=True)
class Outgoing:
    """A signed request being made: what it signs (method, path with its query, sender,
    server, time, nonce) and the seal key its body goes sealed to (None: plain)."""

    method: str
    path: str
    sender: str
    server: str
    stamp: str
    nonce: str
    seal_to: bytes | None

    @property
    def context(self) -> bytes:
        """The context its body (or each of its frames' payloads) is sealed in."""
        return request_info(
            self.method, self.path, self.sender, self.server, self.stamp, self.nonce
        )


@dataclass(frozen=True)
class TimeAnswer:
    """A server's answer to `GET /v1/time?nonce=...`: what it says, and its signature over
    the challenge this client chose (None when it sent none)."""

    time: datetime
    stamp: str
    node_id: str
    nonce: str
    sig: bytes | None

    def signed_by(self, public_key: bytes) -> bool:
        """True when the node holding `public_key` said this, in answer to our challenge."""
        message = time_message(self.node_id, self.stamp, self.nonce)
        return self.sig is not None and verify(public_key, message, self.sig)


class PeerClient:
    """Talks to one peer URL on behalf of `node`."""

    def __init__(
        self,
        node: Node,
        url: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        server_id: str | None = None,
        plain: bool = False,
    ) -> None:
        self.node = node
        self.url = url.rstrip("/")
        self.plain = plain  # sync --plain: bodies in the clear (the caller warns)
        self.server_id = server_id  # learnt from the time answer when not known before
        # added to the node's clock on request stamps only: the server's word on the time
        # while it cannot be checked yet (sync.round.correct_clock)
        self.stamp_offset = timedelta()
        self.http = httpx.Client(
            base_url=self.url,
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            # TLS settings (and loading the CA bundle, ~50 ms) only for https:// peers
            verify=self.url.startswith("https://"),
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> PeerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str = "application/json",
        signed: bool = True,
    ) -> Reply:
        try:
            return self._send_once(method, path, body, content_type, signed)
        except RefusedError as exc:
            # a hello or pull sealed to a seal key the server has rotated away (this node
            # has not pulled the rotation yet): cursors only, so sent again plain — the
            # answer still comes back sealed, and the pull brings the rotation
            if exc.params.get("code") != "wire.cannot_open" or _private(path):
                raise
            return self._send_once(method, path, body, content_type, signed, seal=False)

    def _send_once(
        self,
        method: str,
        path: str,
        body: bytes,
        content_type: str,
        signed: bool,
        *,
        seal: bool = True,
    ) -> Reply:
        if not signed:
            response = self._request(method, path, body, {"content-type": content_type})
            return Reply(self._opened(response.content, None), response.headers)
        return self._sealed_send(self.outgoing(method, path, seal=seal), body, content_type)

    def _sealed_send(self, out: Outgoing, body: bytes, content_type: str) -> Reply:
        if out.seal_to is not None:
            body, content_type = seal_body(body, out.seal_to, out.context), SEALED_TYPE
        return self.send(out, body, content_type)

    def outgoing(self, method: str, path: str, *, seal: bool = True) -> Outgoing:
        """A signed request about to be made to the server: its time, nonce, and the seal
        key its body goes sealed to (None: plain, see `_seal_key`)."""
        server = self.server_id or self.server_time().node_id
        stamp = (self.node.clock.now() + self.stamp_offset).isoformat()
        seal_to = self._seal_key(server, path) if seal else None
        return Outgoing(
            method, path, self.node.node_id, server, stamp, secrets.token_hex(16), seal_to
        )

    def _signed_headers(
        self, out: Outgoing, body: bytes, content_type: str
    ) -> tuple[dict[str, str], bytes]:
        """The headers of `out` with `body` (as it goes on the wire), and the context its
        answer is sealed in."""
        proof = request_headers(
            self.node.request_signer, out.method, out.path, body, node=out.sender,
            server=out.server, time=out.stamp, nonce=out.nonce,
        )  # fmt: skip
        headers = {"content-type": content_type, **proof}
        if self.plain:
            headers[WIRE] = "plain"
        opener = answer_info(out.method, out.path, out.sender, out.server, out.nonce, proof[DIGEST])
        return headers, opener

    def send(self, out: Outgoing, body: bytes, content_type: str) -> Reply:
        """Send `out` with `body` (sealed or not, as the caller made it); the answer, opened."""
        headers, opener = self._signed_headers(out, body, content_type)
        response = self._request(out.method, out.path, body, headers)
        return Reply(self._opened(response.content, opener), response.headers)

    @contextmanager
    def stream(
        self, out: Outgoing, body: bytes, content_type: str
    ) -> Iterator[tuple[Iterator[bytes], bytes]]:
        """Send `out` and give its 2xx answer's bytes as they come, with the context its
        answer is sealed in (the caller opens what it reads); a refusal is raised as by
        `send`. Leaving the block early closes the connection."""
        headers, opener = self._signed_headers(out, body, content_type)
        try:
            request = self.http.build_request(out.method, out.path, content=body, headers=headers)
            response = self.http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise LinkDownError("link.down", url=self.url, detail=type(exc).__name__) from exc
        try:
            if response.status_code >= 400:
                try:
                    response.read()
                except httpx.HTTPError as exc:
                    raise LinkDownError(
                        "link.down", url=self.url, detail=type(exc).__name__
                    ) from exc
                self._check(response)
            yield self._pieces(response), opener
        finally:
            response.close()

    def _pieces(self, response: httpx.Response) -> Iterator[bytes]:
        try:
            yield from response.iter_raw()
        except httpx.HTTPError as exc:
            raise LinkDownError("link.down", url=self.url, detail=type(exc).__name__) from exc

    def _request(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> httpx.Response:
        try:
            response = self.http.request(method, path, content=body, headers=headers)
            response.read()
        except httpx.HTTPError as exc:
            raise LinkDownError("link.down", url=self.url, detail=type(exc).__name__) from exc
        self._check(response)
        return response

    def _check(self, response: httpx.Response) -> None:
        """Nothing for a 2xx; LinkDownError (try later) or RefusedError (the reason) else."""
        if response.status_code < 400:
            return
        data: Any = None  # stays None when the error body is not JSON (a proxy's page)
        try:
            data = response.json()
            key, message = str(data["error"]), str(data["message"])
        except (ValueError, KeyError, TypeError):
            key, message = "http", f"HTTP {response.status_code}"
        else:
            message = _in_our_words(key, data, message)
        if response.status_code in _TRY_LATER or (response.status_code >= 500 and key == "http"):
            # busy, cut or a proxy's error page: nothing was applied, try again later
            raise LinkDownError("link.down", url=self.url, detail=message)
        raise RefusedError(
            "peer.refused",
            url=self.url,
            detail=message,
            code=key,
            server_time=data.get("time") if isinstance(data, dict) else None,
        )

    def _seal_key(self, server: str, path: str) -> bytes | None:
        """The server's enrolled seal key to seal a request body to; None to send it plain:
        when asked (`plain`), or for a hello or pull while the server's seal key is not
        known here (a first round, a restore: the pull brings the enrolments). A push or a
        material's chunks are never sent plain unasked: RefusedError saying how to fix it."""
        if self.plain:
            return None
        key = trust.seal_key(self.node.store, server)
        if key is not None:
            return key
        if not _private(path):  # heads, cursors, which material: no personal data
            return None
        known = trust.public_key(self.node.store, server) is not None
        why = "wire.peer_no_seal_key" if known else "wire.peer_unknown"
        raise RefusedError(why, url=self.url, node_id=server)

    def _opened(self, content: bytes, opener: bytes | None) -> bytes:
        """The answer's plain body. A sealed answer must open with this node's seal key in
        the context of the request it answers (else the line garbled it: try again); a
        plain one is taken only with `plain` (or unsigned, the time)."""
        if opener is None:
            return content
        if is_sealed(content):
            try:
                return open_body(content, self.node.seals, opener)
            except SealError:
                raise LinkDownError(
                    "link.down", url=self.url, detail="sealed answer does not open"
                ) from None
        if not self.plain:
            raise RefusedError("wire.plain_answer", url=self.url)
        return content

    def post_json(self, path: str, body: bytes) -> dict[str, Any]:
        """POST a small JSON body (sealed when the server's seal key is known); the JSON
        object it answers."""
        return self._json(self._send("POST", path, body))

    def json_of(self, reply: Reply) -> dict[str, Any]:
        """The JSON object of an answer; LinkDownError when it is not one (garbled)."""
        return self._json(reply)

    def _json(self, reply: Reply) -> dict[str, Any]:
        try:
            data = json.loads(reply.content)
        except ValueError:
            raise LinkDownError("link.down", url=self.url, detail="garbled response") from None
        if not isinstance(data, dict):
            raise LinkDownError("link.down", url=self.url, detail="garbled response")
        return data

    def server_time(self) -> TimeAnswer:
        """The server's time and id, signed over a fresh challenge (check it with
        `TimeAnswer.signed_by`). Learns `server_id` if not known; RefusedError when the
        server is another node than the one expected."""
        challenge = secrets.token_hex(16)
        data = self._json(self._send("GET", f"/v1/time?nonce={challenge}", signed=False))
        try:
            stamp, node_id = str(data["time"]), str(data["node_id"])
            moment = datetime.fromisoformat(stamp)
            if moment.tzinfo is None or not is_node_id(node_id):
                raise ValueError("no offset, or not a node id")
            sig = data.get("sig")  # checked against our challenge, whatever `nonce` it gives
            signed = isinstance(sig, str) and _is_hex(sig)
            answer = TimeAnswer(
                moment, stamp, node_id, challenge, bytes.fromhex(str(sig)) if signed else None
            )
        except (KeyError, ValueError, TypeError):
            raise LinkDownError("link.down", url=self.url, detail="garbled time") from None
        if self.server_id is None:
            self.server_id = node_id
        elif node_id != self.server_id:
            raise RefusedError(
                "peer.wrong_node", url=self.url, node_id=node_id[:20], expected=self.server_id
            )
        return answer

    def _answer(self, response: Reply, *, result: bool) -> dict[str, Any]:
        """The JSON of a hello (or, with `result`, a push) answer, its shape checked.

        Answers are not signed as a whole (only the receipt in them is), so a line that
        flips a byte can make any field anything: that is a broken link, not a crash.
        """
        data = self._json(response)
        receipt: Any = data.get("receipt")
        answer: Any = data.get("result") if result else {"have": data.get("have", {})}
        ok = (
            isinstance(receipt, dict)
            and isinstance(receipt.get("raw"), str)
            and _is_hex(receipt.get("sig"))
            and isinstance(answer, dict)
        )
        counts = ("applied",) if result else ("have",)
        lists = ("rejected", "forks") if result else ()
        ok = ok and all(
            isinstance(answer.get(k), dict) and all(isinstance(v, int) for v in answer[k].values())
            for k in counts
        )
        ok = ok and all(
            isinstance(answer.get(k), list) and all(isinstance(x, dict) for x in answer[k])
            for k in lists
        )
        if not ok:
            raise LinkDownError("link.down", url=self.url, detail="garbled response")
        return data

    def hello(self) -> dict[str, Any]:
        return self._answer(self._send("POST", "/v1/hello", b"{}"), result=False)

    def push(self, batch: bytes) -> dict[str, Any]:
        """The push's answer; each refused entry's reason in this reader's language."""
        return self.push_later(batch)()

    def push_later(self, batch: bytes) -> Callable[[], dict[str, Any]]:
        """The push of `batch`, sent when what this returns is called — from another
        thread if need be (sync.round has one push on the wire while it reads the next):
        what a push reads of the node's store (the server's seal key) is read here, in
        the caller's thread. A SQLite connection used by two threads at once fails
        (apsw's ThreadingViolation: a town's round at the 5 M bench died of it)."""
        out = self.outgoing("POST", "/v1/push")

        def send() -> dict[str, Any]:
            data = self._answer(self._sealed_send(out, batch, BATCH_TYPE), result=True)
            for refused in data["result"]["rejected"]:
                refused["reason"] = i18n.render(
                    refused.get("reason_key"),
                    refused.get("reason_params"),
                    str(refused.get("reason")),
                )
            return data

        return send

    def pull(
        self, cursors: dict[str, int], *, mode: str = "concerns", limit: int = 5000
    ) -> tuple[bytes, bool]:
        body = json.dumps({"cursors": cursors, "mode": mode, "limit": limit}).encode()
        reply = self._send("POST", "/v1/pull", body)
        return reply.content, reply.headers.get("x-zhibao-more") == "1"


def _private(path: str) -> bool:
    """Whether a request to `path` carries personal data (entries, a material's bytes)."""
    return path.split("?", 1)[0] in PRIVATE_PATHS


def _is_hex(value: object) -> bool:
    try:
        bytes.fromhex(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _in_our_words(key: str, data: dict[str, Any], message: str) -> str:
    """A server's refusal in this reader's language: its key rendered here with its params
    (`params`, or the fields beside `error` from a server that does not send them); the
    server's own text when the key is not known here or the params do not fit it. What
    the server sent is data: the CLI prints it terminal-safe."""
    params = data.get("params")
    if not isinstance(params, dict):
        params = {k: v for k, v in data.items() if k not in ("error", "message")}
    return i18n.render(key, params, message)


i18n.register(
    {
        "link.down": (
            "cannot reach {url} ({detail}); nothing was lost, try again later",
            "无法连接 {url}（{detail}）；数据未丢失，请稍后重试",
        ),
        "peer.refused": ("{url} refused: {detail}", "{url} 拒绝：{detail}"),
        "wire.peer_no_seal_key": (
            "node {node_id} ({url}) has no seal key enrolled, so nothing can be sent to it "
            "sealed: its parent must enrol it again with `zhibao node enroll ... --seal-key` "
            "(from `zhibao node show` there); or sync with --plain to send personal data in "
            "the clear",
            "节点 {node_id}（{url}）未登记加密公钥，无法加密发送：请其上级用 "
            "`zhibao node enroll ... --seal-key` 重新登记（在该节点运行 `zhibao node show` "
            "查看）；或用 --plain 以明文发送个人信息",
        ),
        "wire.peer_unknown": (
            "the enrolment of node {node_id} ({url}) has not reached this node, so its seal "
            "key is not known: sync (pull) first, or sync with --plain to send personal data "
            "in the clear",
            "节点 {node_id}（{url}）的登记尚未到达本节点，不知其加密公钥：请先同步（下载），"
            "或用 --plain 以明文发送个人信息",
        ),
        "wire.plain_answer": (
            "{url} answered in the clear (an older zhibao?); nothing was taken from it",
            "{url} 以明文应答（旧版 zhibao？）；未采用其应答",
        ),
        "peer.wrong_node": (
            "{url} is node {node_id}, not {expected}: check the URL",
            "{url} 是节点 {node_id}，不是 {expected}：请检查地址",
        ),
    }
)
