"""Running a node: `serve` (uvicorn + background upward sync) and `sync --watch`.

Retries use tenacity: exponential backoff with jitter, forever while watching, so a
village line that drops every few minutes is retried without hammering the town.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path

import uvicorn
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_random_exponential

from sync.node import Node
from sync.protocol.errors import LinkDownError, SyncError
from sync.round import RoundSummary, sync_round
from sync.server import NodeApp

OpenNode = Callable[[], Node]


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 picks a free one; read it back from getsockname)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def watch(open_node: OpenNode, url: str, *, interval: float, stop: threading.Event,
          on_round: Callable[[RoundSummary], None] | None = None,
          on_error: Callable[[Exception, float], None] | None = None,
          max_wait: float = 300.0) -> None:
    """Sync with `url` every `interval` seconds until `stop`; back off with jitter on failure."""

    def before_sleep(state: RetryCallState) -> None:
        if on_error and state.outcome is not None and state.next_action is not None:
            exc = state.outcome.exception()
            if exc is not None:
                on_error(exc, state.next_action.sleep)

    retrying = Retrying(
        retry=retry_if_exception_type(SyncError),
        wait=wait_random_exponential(multiplier=1, max=max_wait),
        sleep=lambda seconds: stop.wait(seconds) and None,  # type: ignore[func-returns-value]
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


def serve(open_node: OpenNode, sock: socket.socket, *, parent_url: str | None,
          interval: float = 30.0, on_error: Callable[[Exception, float], None] | None = None,
          log_level: str = "warning") -> None:
    """Serve the node on `sock` until interrupted; sync upward in the background."""
    node = open_node()
    app = NodeApp(node).app
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off",
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    stop = threading.Event()
    worker = None
    if parent_url:
        worker = threading.Thread(
            target=watch, args=(open_node, parent_url),
            kwargs={"interval": interval, "stop": stop, "on_error": on_error}, daemon=True,
        )
        worker.start()
    try:
        server.run(sockets=[sock])
    finally:
        stop.set()
        if worker is not None:
            worker.join(timeout=10)
        node.close()


__all__ = ["LinkDownError", "Path", "bind", "serve", "watch"]
