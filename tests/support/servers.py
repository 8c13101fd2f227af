"""Real servers for the tests: uvicorn in a thread, or `zhibao serve` as a subprocess.

Both listen on 127.0.0.1 port 0 and hand back the URL they report; both are stopped, and
every socket, pipe and connection closed, when their `with` block ends.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from sync.node import Node
from sync.server import NodeApp
from sync.service import bind
from tests.support.postgres import STORE_ENV, city_store, store_env
from tiers.node import open_home

ZHIBAO = str(Path(sys.executable).parent / "zhibao")
if not Path(ZHIBAO).exists():
    ZHIBAO = shutil.which("zhibao") or ZHIBAO
START_TIMEOUT = 20.0


def cli_env(lang: str = "en") -> dict[str, str]:
    """The environment for `zhibao` subprocesses: `lang`, no inherited home or debug."""
    env = {k: v for k, v in os.environ.items() if k not in ("ZHIBAO_HOME", "ZHIBAO_DEBUG")}
    env["ZHIBAO_LANG"] = lang
    env["PYTHONWARNINGS"] = "error"  # mirror -W error in the child
    return env


def zhibao(
    home: Path, *args: str, lang: str = "en", timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run the real `zhibao` command against `home`, its messages in `lang`. Under
    `city_engine`'s PostgreSQL, a city's `init` lands in a database no city holds yet (a
    test may init two: `city_store()`)."""
    env = cli_env(lang)
    if args[:1] == ("init",) and "city" in args and "--store" not in args and store_env():
        env[STORE_ENV] = city_store() or ""
    return subprocess.run(
        [ZHIBAO, *args, "--home", str(home)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def ok(home: Path, *args: str, lang: str = "en") -> str:
    """What `zhibao … --home home` prints, asserting it succeeded."""
    done = zhibao(home, *args, lang=lang)
    assert done.returncode == 0, done.stderr
    return done.stdout


def refused(home: Path, *args: str, lang: str = "en") -> str:
    """The one line on stderr of a command that must fail with status 1, printing nothing."""
    done = zhibao(home, *args, lang=lang)
    assert done.returncode == 1, done.stdout
    assert done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("zhibao: ") and "Traceback" not in done.stderr
    return done.stderr


@contextmanager
def _uvicorn(app: ASGIApp, name: str) -> Iterator[str]:
    """Run `app` with uvicorn in a background thread on 127.0.0.1 port 0; yield its URL."""
    sock = bind("127.0.0.1", 0)
    config = uvicorn.Config(
        app, log_level="critical", access_log=False, lifespan="off", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{name}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("in-thread server did not start")
            time.sleep(0.005)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@contextmanager
def serve_in_thread(home: Path | None = None, *, node: Node | None = None) -> Iterator[str]:
    """Serve a node with uvicorn in a background thread; yield its URL.

    Pass `node` to serve an already opened node (its connection is then used from the
    server thread, also by idle projection after a push: touch it only once the block has
    ended; it stays in deferred-projection mode); else `home` is opened.
    """
    if node is None:
        assert home is not None
        served = open_home(home)
    else:
        served = node
    try:
        with _uvicorn(NodeApp(served).app, served.node_id) as url:
            yield url
    finally:
        if node is None:
            served.close()


class Switchboard:
    """One in-thread server for many tests, each pointing it at its own node's home.

    Starting and stopping uvicorn costs about 0.2 s (its shutdown sleeps); a module of
    short tests shares one server and swaps the `NodeApp` behind it instead.
    """

    def __init__(self) -> None:
        self._app: ASGIApp | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._loop = asyncio.get_running_loop()
        if self._app is None:
            raise RuntimeError("the switchboard serves no node right now")
        await self._app(scope, receive, send)

    @contextmanager
    def serving(self, home: Path, url: str) -> Iterator[str]:
        """Serve the node at `home` at `url` (this switchboard's) until the block ends."""
        node = open_home(home)
        served = NodeApp(node)
        self._app = served.app
        try:
            yield url
        finally:
            self._app = None
            if self._loop is None:  # it never served a request: nothing runs on the loop
                node.close()
            else:  # on the serving loop, so no idle projection step is using the connection
                asyncio.run_coroutine_threadsafe(_retire(served, node), self._loop).result(10)


async def _retire(served: NodeApp, node: Node) -> None:
    served.stop()
    node.close()


@contextmanager
def switchboard() -> Iterator[tuple[str, Switchboard]]:
    board = Switchboard()
    with _uvicorn(board, "switchboard") as url:
        yield url, board


@dataclass
class Served:
    """A running `zhibao serve`: its process, the URL it printed, and its stderr file."""

    proc: subprocess.Popen[bytes]
    url: str
    stderr: IO[bytes]
    stderr_text: str = ""

    def kill9(self) -> None:
        """SIGKILL the server (no cleanup of any kind), and reap it."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def errors(self) -> str:
        """What the server wrote on stderr (also after the `with` block has ended)."""
        if self.stderr.closed:
            return self.stderr_text
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")


def _first_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert proc.stdout is not None
    line = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise RuntimeError("zhibao serve printed no URL in time")
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError("zhibao serve exited before printing its URL")
            line += chunk
    return line.split(b"\n", 1)[0]


@contextmanager
def zhibao_serve(home: Path, *args: str) -> Iterator[Served]:
    """`zhibao serve --home HOME --port 0 ARGS` as a subprocess; killed at the end."""
    with tempfile.TemporaryFile() as stderr:
        served: Served | None = None
        proc = subprocess.Popen(
            [ZHIBAO, "serve", "--home", str(home), "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=cli_env(),
        )
        try:
            try:
                line = _first_line(proc, START_TIMEOUT).decode()
            except RuntimeError as exc:
                stderr.seek(0)
                raise RuntimeError(f"{exc}: {stderr.read().decode(errors='replace')}") from None
            url = line.rsplit(" ", 1)[-1]
            assert url.startswith("http://127.0.0.1:"), line
            served = Served(proc, url, stderr)
            yield served
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            assert proc.stdout is not None
            proc.stdout.close()
            if served is not None:
                served.stderr_text = served.errors()
