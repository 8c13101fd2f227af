"""Running a node: `serve` (uvicorn + background upward sync) and `sync --watch`.

Retries use tenacity: exponential backoff with jitter, forever while watching, so a
village line that drops every few minutes is retried without hammering the town.
"""

from __future__ import annotations

import gc
import socket
import threading
from collections.abc import Callable

import uvicorn
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_random_exponential

from sync.node import Node
from sync.protocol.errors import SyncError
from sync.round import RoundSummary, sync_round
from sync.server import NodeApp

OpenNode = Callable[[], Node]
GC_THRESHOLD = 20_000  # allocations between young-generation collections (default 700)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 picks a free one; read it back from getsockname)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on accepted sockets that say
    # so, and without it every answer's body waits ~40 ms behind its headers (Nagle meets
    # the peer's delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def watch(
    open_node: OpenNode,
    url: str,
    *,
    interval: float,
    stop: threading.Event,
    on_round: Callable[[RoundSummary], None] | None = None,
    on_error: Callable[[Exception, float], None] | None = None,
    max_wait: float = 300.0,
) -> None:
    """Sync with `url` every `interval` seconds until `stop`; back off with jitter on failure."""

    def before_sleep(state: RetryCallState) -> None:
        if on_error and state.outcome is not None and state.next_action is not None:
            exc = state.outcome.exception()
            if isinstance(exc, Exception):
                on_error(exc, state.next_action.sleep)

    def pause(seconds: float) -> None:  # wakes at once when asked to stop
        stop.wait(seconds)

    retrying = Retrying(
        retry=retry_if_exception_type(SyncError),
        wait=wait_random_exponential(multiplier=1, max=max_wait),
        sleep=pause,
        before_sleep=before_sleep,
        reraise=True,
    )
    while not stop.is_set():
        try:
            for attempt in retrying:
                with attempt:
                    if stop.is_set():
                        return
                    node = open_node()
                    try:
                        summary = sync_round(node, url)
                    finally:
                        node.close()
                    if on_round:
                        on_round(summary)
        except SyncError:
            if stop.is_set():
                return
        stop.wait(interval)


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
    log_level: str = "warning",
) -> None:
    """Serve the node on `sock` until interrupted; sync upward in the background."""
    node = open_node()
    app = NodeApp(node).app
    config = uvicorn.Config(
        app, log_level=log_level, access_log=False, lifespan="off", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    stop = threading.Event()
    worker = None
    if parent_url:
        worker = threading.Thread(
            target=watch,
            args=(open_node, parent_url),
            kwargs={"interval": interval, "stop": stop, "on_error": on_error},
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

    def __init__(self, open_node: OpenNode, host: str = "127.0.0.1", port: int = 0) -> None:
        self._open = open_node
        self.sock = bind(host, port)
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()

    def start(self) -> ServerThread:
        node = self._open()
        config = uvicorn.Config(
            NodeApp(node).app,
            log_level="error",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
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
