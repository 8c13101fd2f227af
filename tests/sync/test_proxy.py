"""The fault-injecting proxy, over real sockets on 127.0.0.1 against tiny threaded servers."""

from __future__ import annotations

import queue
import random
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from sync.testing.proxy import Direction, Fault, FaultProxy, Schedule

Handler = Callable[[socket.socket, "queue.Queue[object]"], None]
PAYLOAD = random.Random(1).randbytes(5000)


@contextmanager
def serve(handle: Handler) -> Iterator[tuple[int, queue.Queue[object]]]:
    """Run `handle(sock, log)` per connection on 127.0.0.1 port 0; yield (port, log)."""
    log: queue.Queue[object] = queue.Queue()

    class Request(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.settimeout(5)
            handle(self.request, log)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Request)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield server.server_address[1], log
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def read_all(sock: socket.socket) -> bytes:
    """Read until EOF (or a reset, which a cut may cause)."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except OSError:
        pass
    return b"".join(chunks)


def sink(sock: socket.socket, log: queue.Queue[object]) -> None:
    log.put(read_all(sock))


def echo(sock: socket.socket, log: queue.Queue[object]) -> None:
    while chunk := sock.recv(65536):
        sock.sendall(chunk)


def sender(payload: bytes) -> Handler:
    def handle(sock: socket.socket, log: queue.Queue[object]) -> None:
        sock.sendall(payload)

    return handle


def http(sock: socket.socket, log: queue.Queue[object]) -> None:
    """Log each request's path as soon as it arrives, then answer and close."""
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = sock.recv(4096)
        if not chunk:
            return
        request += chunk
    log.put(request.split(b" ")[1].decode())
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


def exchange(port: int, payload: bytes) -> bytes:
    """Send `payload` then half-close, while reading everything the other side sends."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:

        def send() -> None:
            try:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        thread = threading.Thread(target=send)
        thread.start()
        received = read_all(sock)
        thread.join()
    return received


def get(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: village\r\n\r\n".encode())
    return read_all(sock)


def test_proxy_forwards_bytes_exactly() -> None:
    payload = random.Random(2).randbytes(300_000)
    with serve(echo) as (port, _), FaultProxy("127.0.0.1", port) as proxy:
        assert proxy.url == f"http://127.0.0.1:{proxy.port}"
        assert exchange(proxy.port, payload) == payload
        assert proxy.wait_idle()
        stats = proxy.stats
    assert (stats.connections, stats.bytes_c2s, stats.bytes_s2c) == (1, 300_000, 300_000)
    assert not stats.faults


def test_proxy_url_carries_an_httpx_request() -> None:
    with serve(http) as (port, log), FaultProxy("127.0.0.1", port) as proxy:
        response = httpx.get(f"{proxy.url}/heads", timeout=5)
        assert (response.status_code, response.text) == (200, "ok")
        assert log.get(timeout=5) == "/heads"


def test_proxy_cut_client_to_server_delivers_exactly_offset_bytes() -> None:
    with serve(sink) as (port, log), FaultProxy("127.0.0.1", port) as proxy:
        proxy.force(Fault("cut", "c2s", offset=1234))
        assert exchange(proxy.port, PAYLOAD) == b""
        assert log.get(timeout=5) == PAYLOAD[:1234]
        assert proxy.stats.faults["cut"] == 1


def test_proxy_cut_server_to_client_delivers_exactly_offset_bytes() -> None:
    with serve(sender(PAYLOAD)) as (port, _), FaultProxy("127.0.0.1", port) as proxy:
        proxy.force(Fault("cut", "s2c", offset=777))
        assert exchange(proxy.port, b"") == PAYLOAD[:777]
        assert proxy.wait_idle()
        assert proxy.stats.faults["cut"] == 1


@pytest.mark.parametrize("direction", ["c2s", "s2c"])
def test_proxy_flip_changes_exactly_one_byte(direction: Direction) -> None:
    fault = Fault("flip", direction, offset=4321, mask=0x10)
    with serve(echo) as (port, _), FaultProxy("127.0.0.1", port) as proxy:
        proxy.force(fault)
        echoed = exchange(proxy.port, PAYLOAD)
        assert proxy.wait_idle()
        assert proxy.stats.faults["flip"] == 1
    assert len(echoed) == len(PAYLOAD)
    changed = [i for i, (a, b) in enumerate(zip(echoed, PAYLOAD, strict=True)) if a != b]
    assert changed == [4321]
    assert echoed[4321] ^ PAYLOAD[4321] == 0x10


def test_proxy_stall_pauses_then_delivers_everything() -> None:
    with serve(echo) as (port, _), FaultProxy("127.0.0.1", port) as proxy:
        proxy.force(Fault("stall", "s2c", offset=100, seconds=0.2))
        started = time.monotonic()
        assert exchange(proxy.port, PAYLOAD) == PAYLOAD
        assert time.monotonic() - started >= 0.2
        assert proxy.stats.faults["stall"] == 1


def test_proxy_duplicate_makes_server_see_request_twice() -> None:
    with serve(http) as (port, log), FaultProxy("127.0.0.1", port) as proxy:
        proxy.force(Fault("duplicate"))
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            assert get(sock, "/batch/7").endswith(b"ok")
        assert proxy.wait_idle()
        assert proxy.stats.faults["duplicate"] == 1
        assert [log.get_nowait(), log.get_nowait()] == ["/batch/7", "/batch/7"]
        assert log.empty()


def test_proxy_reorder_makes_server_see_requests_swapped() -> None:
    with serve(http) as (port, log), FaultProxy("127.0.0.1", port) as proxy:
        proxy.force(Fault("reorder"))
        proxy.force()
        # Connected (hence queued for accept) before the second one: it is held back.
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as first:
            answers: list[bytes] = []
            thread = threading.Thread(target=lambda: answers.append(get(first, "/first")))
            thread.start()
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as second:
                assert get(second, "/second").endswith(b"ok")
            thread.join()
        assert answers[0].endswith(b"ok")
        assert [log.get(timeout=5), log.get(timeout=5)] == ["/second", "/first"]
        assert proxy.stats.faults["reorder"] == 1


def test_proxy_latency_adds_round_trip() -> None:
    schedule = Schedule.slow(rtt=0.1, bits_per_second=None)
    with serve(echo) as (port, _), FaultProxy("127.0.0.1", port, schedule=schedule) as proxy:
        started = time.monotonic()
        assert exchange(proxy.port, b"ping") == b"ping"
        assert time.monotonic() - started >= 0.1


def test_proxy_bandwidth_caps_throughput() -> None:
    payload = random.Random(3).randbytes(200_000)
    schedule = Schedule(bandwidth=1_000_000)
    with serve(sender(payload)) as (port, _), FaultProxy("127.0.0.1", port) as proxy:
        proxy.schedule = schedule
        started = time.monotonic()
        assert exchange(proxy.port, b"") == payload
        assert time.monotonic() - started >= 0.2 * 0.99


def test_schedule_slow_converts_rtt_and_bits() -> None:
    schedule = Schedule.slow(rtt=0.2, bits_per_second=1_000_000)
    assert (schedule.latency, schedule.bandwidth) == (0.1, 125_000)
    assert Schedule.clean() == Schedule()


def run_connections(seed: int, count: int) -> list[tuple[Fault, ...]]:
    schedule = Schedule.flaky(max_stall=0.01, max_hold=0.01)
    with serve(echo) as (port, _), FaultProxy("127.0.0.1", port, schedule=schedule, seed=seed) as p:
        for _ in range(count):
            exchange(p.port, b"x" * 100)
        assert p.wait_idle()
        return p.history


def test_proxy_same_seed_same_faults() -> None:
    first = run_connections(seed=11, count=30)
    assert len(first) == 30
    assert any(first)
    assert run_connections(seed=11, count=30) == first
    assert run_connections(seed=12, count=30) != first


def test_proxy_flaky_schedule_fires_faults_under_many_connections() -> None:
    schedule = Schedule(cut=0.5, max_offset=64)
    with serve(echo) as (port, _), FaultProxy("127.0.0.1", port, schedule=schedule, seed=5) as p:
        results = [exchange(p.port, PAYLOAD[:200]) for _ in range(100)]
        assert p.wait_idle()
        stats = p.stats
    planned = [plan[0].offset for plan in p.history if plan]
    assert stats.connections == 100
    assert 0 < stats.faults["cut"] <= len(planned)
    assert all(result == PAYLOAD[: len(result)] for result in results)
    assert sum(result == PAYLOAD[:200] for result in results) >= 100 - len(planned)


def test_proxy_down_refuses_then_up_accepts_on_same_port() -> None:
    with serve(echo) as (port, _), FaultProxy("127.0.0.1", port) as proxy:
        proxy.down()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=5).close()
        proxy.up()
        assert exchange(proxy.port, b"back") == b"back"


def test_proxy_down_cuts_connections_under_way() -> None:
    with (
        serve(echo) as (port, _),
        FaultProxy("127.0.0.1", port) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock,
    ):
        sock.sendall(b"hello")
        assert sock.recv(5) == b"hello"
        proxy.down()
        assert read_all(sock) == b""


def test_proxy_close_leaves_no_thread_behind() -> None:
    with serve(echo) as (port, _):
        with FaultProxy("127.0.0.1", port, schedule=Schedule.flaky(), seed=3) as proxy:
            idle = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
            for _ in range(10):
                exchange(proxy.port, b"x" * 100)
        assert not [t for t in threading.enumerate() if t.name.startswith("faultproxy")]
        with idle:
            assert read_all(idle) == b""
