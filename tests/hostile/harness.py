"""The hostile side: a node's real key in the hands of modified software.

An `Actor` reads `node.key` from a home made by `zhibao init` and then does what the real
program never would: appends entries to its own log without any check (straight into
its database with `Store.insert`), signs entries the real `sign_entry` refuses, builds
batches and bundles by hand and pushes them with requests it signs itself.

Request signatures are made in one place, `signed_headers`, bound to the server they are
for (`x-zhibao-server`), as `PeerClient` makes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import socket
import subprocess
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from sync import trust
from sync.clock import Clock
from sync.keyfiles import NODE_KEY, SEAL_KEY
from sync.node import NODE_TOML
from sync.protocol.batch import encode_batch
from sync.protocol.bundle import MAGIC as BUNDLE_MAGIC
from sync.protocol.bundle import VERSION as BUNDLE_VERSION
from sync.protocol.canonical import canonical
from sync.protocol.entry import SignedEntry, encode_entry, entry_hash, signing_message
from sync.protocol.keys import Signer
from sync.protocol.messages import DIGEST, SENDER, bundle_message, request_headers
from sync.protocol.sealed import SEALED_TYPE, answer_info, request_info, seal_body
from sync.store import Store
from tests.support.servers import ZHIBAO, cli_env
from tests.support.state import home_store
from tests.support.wire import SignedRequest

BATCH_TYPE = "application/x-zhibao-batch"
JSON_TYPE = "application/json"


def stamp_now() -> str:
    """Now, as a node writes `at` (China time, whole seconds)."""
    return Clock().stamp()


# --- request signatures ------------------------------------------------------------------


def signed_headers(
    signer: Signer,
    node_id: str,
    method: str,
    path: str,
    body: bytes,
    *,
    server_id: str,
    content_type: str = BATCH_TYPE,
    stamp: str | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers `PeerClient` sends, signed by `signer` for `node_id`, meant for the
    server whose node id is `server_id` (the one place request signatures are made)."""
    stamp = stamp or stamp_now()
    nonce = nonce or os.urandom(16).hex()
    return {
        "content-type": content_type,
        **request_headers(
            signer, method, path, body, node=node_id, server=server_id, time=stamp, nonce=nonce
        ),
    }


def server_id(url: str) -> str:
    """The node id a server says it is (`GET /v1/time`, unsigned)."""
    with httpx.Client(base_url=url, timeout=30) as client:
        return str(client.get("/v1/time").json()["node_id"])


# --- entries -----------------------------------------------------------------------------


def sign_raw(signer: Signer, raw: bytes, origin: str, seq: int, entry_type: str) -> SignedEntry:
    """Sign `raw` as it is: no envelope or body check (the real `sign_entry` checks)."""
    digest = entry_hash(raw)
    return SignedEntry(raw, signer.sign(signing_message(digest)), digest, origin, seq, entry_type)


def garbage_signature(entry: SignedEntry) -> SignedEntry:
    """`entry` with 64 bytes that are no signature at all (fixed per entry)."""
    return entry._replace(sig=hashlib.sha512(b"garbage" + entry.raw).digest())


@dataclass
class Actor:
    """A node run by modified software: its real key, its own database, no checks."""

    home: Path
    node_id: str
    signer: Signer

    @classmethod
    def of(cls, home: Path) -> Actor:
        config = tomllib.loads((home / NODE_TOML).read_text("utf-8"))
        seed = bytes.fromhex((home / NODE_KEY).read_text("ascii").strip())
        return cls(home, str(config["node_id"]), Signer(seed))

    @contextmanager
    def store(self) -> Iterator[Store]:
        """The node's database without any projection (nothing is checked or projected)."""
        with home_store(self.home) as store:  # a city: node.db or its PostgreSQL database
            yield store

    def forge(self, entry_type: str, body: dict[str, Any], *, at: str | None = None) -> SignedEntry:
        """Append one entry to this node's own log, signed with its real key, unchecked."""
        with self.store() as store, store.transaction():
            seq, prev = store.head(self.node_id)
            raw = encode_entry(self.node_id, seq + 1, prev, at or stamp_now(), entry_type, body)
            entry = sign_raw(self.signer, raw, self.node_id, seq + 1, entry_type)
            store.insert([entry], stamp_now())
        return entry

    def log(self, after: int = 0) -> list[SignedEntry]:
        """This node's own entries above seq `after`."""
        with self.store() as store:
            return store.entries(self.node_id, after)

    def held(self, origin: str, after: int = 0) -> list[SignedEntry]:
        """The entries of `origin` this node holds (whole), above seq `after`."""
        with self.store() as store:
            return store.entries(origin, after)

    def request(
        self,
        path: str,
        body: bytes,
        *,
        to: str,
        content_type: str = BATCH_TYPE,
        method: str = "POST",
    ) -> SignedRequest:
        """A request signed with this node's key for the server `to` (a node id). A push
        body is sealed to `to`'s seal key when this node knows it, as `PeerClient` seals
        it; the answer is opened with this node's seal key when it comes sealed."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        stamp, nonce = stamp_now(), os.urandom(16).hex()
        with self.store() as store:
            seal_to = trust.seal_key(store, to)
        if seal_to is not None and path == "/v1/push":
            info = request_info(method, path, self.node_id, to, stamp, nonce)
            body, content_type = seal_body(body, seal_to, info), SEALED_TYPE
        headers = signed_headers(
            self.signer, self.node_id, method, path, body, server_id=to,
            content_type=content_type, stamp=stamp, nonce=nonce,
        )  # fmt: skip
        seal = X25519PrivateKey.from_private_bytes(
            bytes.fromhex((self.home / SEAL_KEY).read_text("ascii").strip())
        )
        context = answer_info(method, path, headers[SENDER], to, nonce, headers[DIGEST])
        return SignedRequest(method, path, body, headers, (seal, context))

    def push(self, url: str, entries: Sequence[SignedEntry]) -> httpx.Response:
        """Push `entries` (any, as given) to the server at `url` in one signed batch."""
        return self.push_bytes(url, encode_batch(list(entries)))

    def push_bytes(self, url: str, body: bytes) -> httpx.Response:
        return self.request("/v1/push", body, to=server_id(url)).send(url)

    def pull(self, url: str, body: bytes) -> httpx.Response:
        request = self.request("/v1/pull", body, to=server_id(url), content_type=JSON_TYPE)
        return request.send(url)

    def push_own(self, url: str) -> httpx.Response:
        """Push what the server lacks of this node's own log (as a round would)."""
        hello = self.request("/v1/hello", b"{}", to=server_id(url), content_type=JSON_TYPE)
        answer = hello.send(url)
        assert answer.status_code == 200, answer.text
        have = int(answer.json()["have"].get(self.node_id, 0))
        return self.push(url, self.log(after=have))


def bundle_bytes(actor: Actor, to: str, frames: Sequence[bytes], counts: dict[str, int]) -> bytes:
    """A plain bundle from `actor` to `to` whose payload holds `frames` (any bytes) as
    they are, with the header claiming `counts`, signed with the actor's real key."""
    header = canonical(
        {
            "v": BUNDLE_VERSION,
            "kind": "bundle",
            "from": actor.node_id,
            "to": to,
            "created": stamp_now(),
            "sealed": False,
            "entries": sum(counts.values()),
            "counts": counts,
        }
    )
    payload = b"".join(len(frame).to_bytes(4, "big") + frame for frame in frames)
    sig = actor.signer.sign(bundle_message(header, payload))
    return b"".join(
        [
            BUNDLE_MAGIC,
            bytes([BUNDLE_VERSION]),
            len(header).to_bytes(4, "big"),
            header,
            len(payload).to_bytes(8, "big"),
            payload,
            sig,
        ]
    )


def zstd_bomb(declared: int = 1 << 30) -> bytes:
    """A valid zstd frame of `declared` zero bytes (its header says so): ~32 KB on the wire."""
    import zstandard

    compressor = zstandard.ZstdCompressor(level=1, write_content_size=True).compressobj(
        size=declared
    )
    chunk = b"\0" * (1 << 20)
    parts = [compressor.compress(chunk) for _ in range(declared // len(chunk))]
    parts.append(compressor.compress(b"\0" * (declared % len(chunk))))
    parts.append(compressor.flush())
    return b"".join(parts)


# --- processes and sockets ---------------------------------------------------------------


def peak_rss(pid: int) -> int:
    """The peak resident set (VmHWM) of a live process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def zhibao_measured(home: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run `zhibao ARGS --home HOME`; the result and the process's peak RSS in bytes."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [ZHIBAO, *args, "--home", str(home)], stdout=out, stderr=err, env=cli_env()
        )
        peak = 0  # VmHWM, sampled while it runs: wait4's ru_maxrss may carry this (big)
        while True:  # test process's resident set, copied at the fork, across the exec
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            with contextlib.suppress(OSError, RuntimeError):  # exiting: its memory is gone
                peak = max(peak, peak_rss(proc.pid))
            time.sleep(0.005)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(
            proc.args, proc.returncode, out.read().decode(), err.read().decode()
        )
    return done, peak


def stream_body(
    url: str, path: str, size: int, *, headers: dict[str, str] | None = None, stall: float = 20
) -> int | None:
    """POST `size` zero bytes on a raw connection, stopping as soon as the server answers
    (or reads nothing for `stall` seconds).

    The HTTP status the server gave, or None when it closed the connection without one."""
    parts = urlsplit(url)
    chunk = memoryview(b"\0" * (256 * 1024))
    head = [f"POST {path} HTTP/1.1", f"host: {parts.netloc}", f"content-length: {size}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection((parts.hostname, parts.port), timeout=stall) as sock:
        try:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            left = size
            while left:
                readable, writable, _ = select.select([sock], [sock], [], stall)
                if readable or not writable:
                    break  # an answer or a close before the whole body, or a stall
                left -= sock.send(chunk[: min(len(chunk), left)])
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            line = sock.makefile("rb").readline()
        except (ConnectionResetError, TimeoutError):
            return None
    if not line.startswith(b"HTTP/"):
        return None
    return int(line.split()[1])


class _FakeTime(BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, Any]] = {}

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        body = self.answers.get(self.path)
        data = json.dumps(body if body is not None else {"error": "http", "message": "no"})
        self.send_response(200 if body is not None else 404)
        self.send_header("content-type", JSON_TYPE)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data.encode())

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def fake_server(answers: dict[str, Any]) -> Iterator[str]:
    """A tiny HTTP server answering JSON `answers` by path (404 elsewhere); yields its URL."""
    handler = type("Handler", (_FakeTime,), {"answers": answers})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="fake-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
