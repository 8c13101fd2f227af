"""The HTTP client side of sync: signed requests to a peer over an httpx transport.

Every library exception becomes the project's own (LinkDownError, RefusedError), so the
round and the tiers never see httpx. Tests inject any `httpx.BaseTransport`.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Any

import httpx

from sync.node import Node
from sync.protocol import i18n
from sync.protocol.errors import LinkDownError, RefusedError
from sync.protocol.messages import request_message

BATCH_TYPE = "application/x-zhibao-batch"


class PeerClient:
    """Talks to one peer URL on behalf of `node`."""

    def __init__(
        self,
        node: Node,
        url: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.node = node
        self.url = url.rstrip("/")
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
    ) -> httpx.Response:
        headers = {"content-type": content_type}
        if signed:
            stamp = self.node.clock.stamp()
            nonce = secrets.token_hex(16)
            to_sign = request_message(method, path, body, self.node.node_id, stamp, nonce)
            headers.update(
                {
                    "x-zhibao-node": self.node.node_id,
                    "x-zhibao-time": stamp,
                    "x-zhibao-nonce": nonce,
                    "x-zhibao-signature": self.node.signer.sign(to_sign).hex(),
                }
            )
        try:
            response = self.http.request(method, path, content=body, headers=headers)
            response.read()
        except httpx.HTTPError as exc:
            raise LinkDownError("link.down", url=self.url, detail=type(exc).__name__) from exc
        if response.status_code >= 400:
            data: Any = None  # stays None when the error body is not JSON (a proxy's page)
            try:
                data = response.json()
                key, message = str(data["error"]), str(data["message"])
            except (ValueError, KeyError, TypeError):
                if response.status_code >= 500 or response.status_code in (408, 429):
                    raise LinkDownError(
                        "link.down", url=self.url, detail=f"HTTP {response.status_code}"
                    ) from None
                key, message = "http", f"HTTP {response.status_code}"
            if response.status_code >= 500 and key == "http":
                raise LinkDownError("link.down", url=self.url, detail=message)
            raise RefusedError(
                "peer.refused",
                url=self.url,
                detail=message,
                code=key,
                server_time=data.get("time") if isinstance(data, dict) else None,
            )
        return response

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            raise LinkDownError("link.down", url=self.url, detail="garbled response") from None
        if not isinstance(data, dict):
            raise LinkDownError("link.down", url=self.url, detail="garbled response")
        return data

    def server_time(self) -> tuple[datetime, str]:
        data = self._json(self._send("GET", "/v1/time", signed=False))
        try:
            moment = datetime.fromisoformat(str(data["time"]))
            if moment.tzinfo is None:
                raise ValueError("no offset")
            return moment, str(data["node_id"])
        except (KeyError, ValueError):
            raise LinkDownError("link.down", url=self.url, detail="garbled time") from None

    def _answer(self, response: httpx.Response, *, result: bool) -> dict[str, Any]:
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
        return self._answer(self._send("POST", "/v1/push", batch, BATCH_TYPE), result=True)

    def pull(
        self, cursors: dict[str, int], *, mode: str = "concerns", limit: int = 5000
    ) -> tuple[bytes, bool]:
        body = json.dumps({"cursors": cursors, "mode": mode, "limit": limit}).encode()
        response = self._send("POST", "/v1/pull", body)
        return response.content, response.headers.get("x-zhibao-more") == "1"


def _is_hex(value: object) -> bool:
    try:
        bytes.fromhex(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


i18n.register(
    {
        "link.down": (
            "cannot reach {url} ({detail}); nothing was lost, try again later",
            "无法连接 {url}（{detail}）；数据未丢失，请稍后重试",
        ),
        "peer.refused": ("{url} refused: {detail}", "{url} 拒绝：{detail}"),
    }
)
