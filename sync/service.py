"""Running a node: `serve` (uvicorn + background upward sync) and `sync --watch`.

Retries use tenacity: exponential backoff with jitter, forever while watching, so a
village line that drops every few minutes is retried without hammering the town. Any
other failure of a round (a bug, a locked database) is logged as one line and retried
the same way: a background sync never dies silently.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_random_exponential
from uvicorn.protocols.http.h11_impl import H11Protocol

from sync import link, logs
from sync.logs import log_line
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.errors import SyncError, ZhibaoError, describe
from sync.round import RoundSummary, sync_round
from sync.server import NodeApp

OpenNode = Callable[[], Node]
GC_THRESHOLD = 20_000  # allocations between young-generation collections (default 700)
# uvicorn: connections and requests at once before it answers 503 itself (the app caps
# the bodies it reads: sync.server.Limits), and seconds an idle keep-alive connection stays
LIMIT_CONCURRENCY = 200
TIMEOUT_KEEP_ALIVE = 5
HEADER_SECONDS = 10.0  # from connecting (or the last answer) to a request's whole headers


class _HeadersInTime(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for a request's headers.

    uvicorn starts no timer when a connection opens, and its keep-alive timer stops at the
    first byte: 200 sockets that send nothing (or a byte now and then) held every slot of
    `limit_concurrency`, and every honest client got 503. Here a connection whose next
    request has not begun (its headers all in) within HEADER_SECONDS is closed."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._waiting_since = self.cycle  # a new cycle starts once a request's headers are in
        self._deadline = self.loop.call_later(HEADER_SECONDS, self._expire)

    def _expire(self) -> None:
        if self.cycle is self._waiting_since and not self.transport.is_closing():
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._deadline.cancel()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline.cancel()
        super().connection_lost(exc)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 picks a free one; read it back from getsockname).
    ZhibaoError, in the reader's words, when the address cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on accepted sockets that say
    # so, and without it every answer's body waits ~40 ms behind its headers (Nagle meets
    # the peer's delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OverflowError:  # a port outside 0-65535
        sock.close()
        raise ZhibaoError("serve.bad_port", port=port) from None
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ZhibaoError("serve.port_busy", host=host, port=port) from None
        if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
            raise ZhibaoError("serve.bad_host", host=host) from None
        if exc.errno == errno.EACCES:
            raise ZhibaoError("serve.port_denied", host=host, port=port) from None
        raise ZhibaoError(
            "serve.cannot_listen", host=host, port=port, detail=exc.strerror or type(exc).__name__
        ) from None
    return sock


def server_config(
    app: Any, *, log_level: str, timeout_graceful_shutdown: int, access_log: bool = False
) -> uvicorn.Config:
    """uvicorn's settings for a node: its log lines stamped like serve's own (sync.logs),
    no access log unless asked, bounded connections, short keep-alive."""
    config = uvicorn.Config(
        app,
        log_config=logs.uvicorn_log_config(),
        log_level=log_level,
        access_log=access_log,
        lifespan="off",
        timeout_graceful_shutdown=timeout_graceful_shutdown,
        limit_concurrency=LIMIT_CONCURRENCY,
        timeout_keep_alive=TIMEOUT_KEEP_ALIVE,
        http=_HeadersInTime,
    )
    if access_log:  # uvicorn set it to `log_level`: its requests are INFO records
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    return config


def watch(
    open_node: OpenNode,
    url: str,
    *,
    interval: float,
    stop: threading.Event,
    on_round: Callable[[RoundSummary], None] | None = None,
    on_error: Callable[[Exception, float], None] | None = None,
    max_wait: float = 300.0,
    multiplier: float = 1.0,
    plain: bool = False,
) -> None:
    """Sync with `url` every `interval` seconds until `stop`; back off with jitter on failure.

    A SyncError (link down, refused) goes to `on_error`; any other exception is logged as
    one line on stderr (its type and place, no message: it may quote personal data). Both
    are retried, waiting up to `multiplier` × 2^attempt seconds (at most `max_wait`)."""

    def before_sleep(state: RetryCallState) -> None:
        if state.outcome is None or state.next_action is None:
            return
        exc = state.outcome.exception()
        wait = state.next_action.sleep
        if isinstance(exc, SyncError):
            if on_error:
                on_error(exc, wait)
        elif isinstance(exc, ZhibaoError):
            log_line("service.round_failed", error=str(exc), wait=link.wait_text(wait))
        elif isinstance(exc, Exception):
            log_line("service.round_failed", error=describe(exc), wait=link.wait_text(wait))

    def pause(seconds: float) -> None:  # wakes at once when asked to stop
        stop.wait(seconds)

    retrying = Retrying(
        retry=retry_if_exception_type(Exception),
        wait=wait_random_exponential(multiplier=multiplier, max=max_wait),
        sleep=pause,
        before_sleep=before_sleep,
        reraise=True,
    )
    summary = RoundSummary()
    while not stop.is_set():
        try:
            for attempt in retrying:
                with attempt:
                    if stop.is_set():
                        return
                    node = open_node()
                    try:
                        summary = sync_round(node, url, plain=plain)
                    finally:
                        node.close()
                    if on_round:
                        on_round(summary)
        except Exception:  # only when stopping: the retries above never give up
            if stop.is_set():
                return
            raise
        # materials left when the round's time for them ran out: go on at once (the next
        # round sends what was recorded meanwhile first)
        stop.wait(0 if summary.again else interval)


def tune_collector() -> None:
    """Garbage-collector settings for a long-running server that takes pushes in batches.

    Everything built so far (modules, the app) lives as long as the process: freezing it
    keeps the collector from walking it again and again. A push holds some 10,000 young
    objects (entries, tuples) for a moment; collecting every 700 allocations walked them
    over and over, a fifth of the CPU of ingest (measured, bench/README.md). Reference
    counting frees them all the same; the threshold only spaces the hunts for cycles.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 10, 10)


def serve(
    open_node: OpenNode,
    sock: socket.socket,
    *,
    parent_url: str | None,
    interval: float = 30.0,
    on_error: Callable[[Exception, float], None] | None = None,
    on_round: Callable[[RoundSummary], None] | None = None,
    log_level: str = "warning",
    access_log: bool = False,
    plain: bool = False,
    mounts: Sequence[tuple[str, ASGIApp]] = (),
) -> None:
    """Serve the node on `sock` until interrupted; sync upward in the background. `plain`
    (serve --plain): take plain bodies, and sync upward in the clear. `access_log`: one
    stamped line per request (uvicorn's). `mounts`: more apps under their paths (the
    desk at /desk, which the tiers build)."""
    node = open_node()
    app = NodeApp(node, plain=plain, mounts=mounts).app
    config = server_config(
        app, log_level=log_level, timeout_graceful_shutdown=5, access_log=access_log
    )
    server = uvicorn.Server(config)
    stop = threading.Event()
    worker = None
    if parent_url:
        worker = threading.Thread(
            target=watch,
            args=(open_node, parent_url),
            kwargs={
                "interval": interval,
                "stop": stop,
                "on_error": on_error,
                "on_round": on_round,
                "plain": plain,
            },
            daemon=True,
        )
        worker.start()
    tune_collector()
    try:
        server.run(sockets=[sock])
    finally:
        stop.set()
        if worker is not None:
            worker.join(timeout=10)
        node.close()


class ServerThread:
    """A node served by uvicorn in a background thread on 127.0.0.1 (port 0 by default).

    For the demo, benchmarks and tests: `url` is readable once started; `stop()` shuts the
    server down gracefully and closes its own connection to the node's database.
    """

    def __init__(
        self, open_node: OpenNode, host: str = "127.0.0.1", port: int = 0, *, plain: bool = False
    ) -> None:
        self._open = open_node
        self.plain = plain
        self.sock = bind(host, port)
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()

    def start(self) -> ServerThread:
        node = self._open()
        app = NodeApp(node, plain=self.plain).app
        config = server_config(app, log_level="error", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)

        def run() -> None:
            try:
                assert self._server is not None
                self._server.run(sockets=[self.sock])
            finally:
                node.close()

        self._thread = threading.Thread(target=run, daemon=True, name=f"zhibao-serve-{self.url}")
        self._thread.start()
        for _ in range(200):
            if self._server.started:
                break
            threading.Event().wait(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


i18n.register(
    {
        "serve.port_busy": (
            "cannot serve on {host}:{port}: the port is already in use (is another zhibao "
            "serve running?); stop it or choose another --port",
            "无法在 {host}:{port} 提供服务：端口已被占用（是否已有 zhibao serve 在运行？）；"
            "请先停止它或换一个 --port",
        ),
        "serve.bad_host": (
            "cannot serve on host '{host}': it is not an address of this computer; give "
            "--host 127.0.0.1, 0.0.0.0 or one of its addresses",
            "无法在主机“{host}”上提供服务：它不是本机地址；"
            "请用 --host 127.0.0.1、0.0.0.0 或本机地址",
        ),
        "serve.bad_port": (
            "--port {port} is not a port: use 1-65535 (0 picks a free one)",
            "--port {port} 不是有效端口：请用 1-65535（0 表示任选空闲端口）",
        ),
        "serve.port_denied": (
            "cannot serve on {host}:{port}: permission denied (ports below 1024 need "
            "privileges); choose another --port",
            "无法在 {host}:{port} 提供服务：权限不足（1024 以下端口需要特权）；请换一个 --port",
        ),
        "serve.cannot_listen": (
            "cannot serve on {host}:{port}: {detail}",
            "无法在 {host}:{port} 提供服务：{detail}",
        ),
        "service.round_failed": (
            "background sync failed ({error}); trying again in {wait}",
            "后台同步失败（{error}）；{wait}后重试",
        ),
    }
)
