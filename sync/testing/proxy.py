"""A fault-injecting TCP proxy: the village's bad line, on loopback, shipped as real code.

``FaultProxy`` listens on 127.0.0.1 port 0 and forwards each connection to a target. A
seeded ``Schedule`` decides, per connection, whether to cut, stall, corrupt, duplicate or
reorder it, and shapes every connection with latency and a bandwidth cap. The same seed and
the same order of connections give the same faults; ``proxy.history`` lists them.
Faults are drawn per TCP connection (a keep-alive connection draws once), and the TCP
handshake itself is local, so latency first shows on the request, not on connect().

    with FaultProxy("127.0.0.1", port, schedule=Schedule.flaky(), seed=7) as proxy:
        httpx.get(proxy.url + "/heads")

With ``record=True`` it also keeps every byte it delivers (``proxy.recorded("c2s")``), so a
test can look at exactly what crossed the line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import selectors
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Literal

Direction = Literal["c2s", "s2c"]
FaultKind = Literal["cut", "stall", "flip", "duplicate", "reorder"]

_KINDS: tuple[FaultKind, ...] = ("cut", "stall", "flip", "duplicate", "reorder")
_POLL = 0.05  # longest an idle thread goes without looking for shutdown
_HOLD_POLL = 0.01  # how often a held (reordered) connection looks for its release
_WINDOW = 64 * 1024  # bytes one direction buffers beyond the line's bytes in flight
_REPLAY_IDLE = 0.2  # a replayed request's answer is over after this much silence
_REPLAY_TIMEOUT = 5.0


@dataclass(frozen=True)
class Schedule:
    """Per-connection fault probabilities and ranges, plus a shape applied to every connection.

    ``latency`` is one-way seconds; ``bandwidth`` is bytes per second in each direction,
    shared by all connections as on a real line (None: unlimited).
    """

    cut: float = 0.0
    stall: float = 0.0
    flip: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    max_stall: float = 0.5  # a stall lasts uniform(0, max_stall) seconds
    max_hold: float = 1.0  # a reordered connection waits at most this long for the next one
    max_offset: int = 65536  # cut/stall/flip offsets are log-uniform in [0, max_offset)
    latency: float = 0.0
    bandwidth: float | None = None

    @classmethod
    def clean(cls) -> Schedule:
        """A perfect link: no faults, no shaping."""
        return cls()

    @classmethod
    def flaky(cls, **overrides: Any) -> Schedule:
        """A bad village line: frequent cuts, some stalls, corruption, replays and reordering."""
        base = cls(cut=0.2, stall=0.05, flip=0.05, duplicate=0.1, reorder=0.05)
        return dataclasses.replace(base, **overrides)

    @classmethod
    def slow(cls, rtt: float = 0.2, bits_per_second: float | None = 1_000_000) -> Schedule:
        """A slow but working line: `rtt` seconds round trip, `bits_per_second` each way."""
        bandwidth = None if bits_per_second is None else bits_per_second / 8
        return cls(latency=rtt / 2, bandwidth=bandwidth)


@dataclass(frozen=True)
class Fault:
    """One fault on one connection; `offset` counts bytes carried in `direction`."""

    kind: FaultKind
    direction: Direction = "c2s"
    offset: int = 0
    seconds: float = 0.0  # stall length
    mask: int = 0x01  # flip: XOR mask for the byte at `offset`


@dataclass
class Stats:
    """Counters since start: connections accepted, bytes delivered each way, faults fired."""

    connections: int = 0
    bytes_c2s: int = 0
    bytes_s2c: int = 0
    faults: Counter[str] = field(default_factory=Counter)


@dataclass(eq=False)
class _Conn:
    """One proxied connection and the faults planned for it."""

    index: int
    client: socket.socket
    plan: tuple[Fault, ...]
    hold_until: float  # a reordered connection stops waiting for the next one then
    server: socket.socket | None = None
    hold: threading.Event = field(default_factory=threading.Event)  # set: client bytes flow
    followers: list[_Conn] = field(default_factory=list)  # held connections this one frees
    carried: bytearray = field(default_factory=bytearray)  # client bytes, kept to replay them

    def has(self, kind: FaultKind) -> bool:
        return any(fault.kind == kind for fault in self.plan)


def _shutdown(*socks: socket.socket | None) -> None:
    """Wake every thread using these sockets; only their owner closes them."""
    for sock in socks:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class FaultProxy:
    """A TCP proxy on 127.0.0.1 that injects faults between its clients and one target."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        schedule: Schedule | None = None,
        seed: int | None = None,
        io_timeout: float = 30.0,
        record: bool = False,
    ) -> None:
        self.target = (target_host, target_port)
        self.record = record  # keep every byte delivered, each way (`recorded`)
        self._recorded: dict[Direction, bytearray] = {"c2s": bytearray(), "s2c": bytearray()}
        self.schedule = schedule or Schedule.clean()
        self.io_timeout = io_timeout
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closing = threading.Event()
        self._stats = Stats()
        self._history: list[tuple[Fault, ...]] = []
        self._forced: deque[tuple[Fault, ...]] = deque()
        self._free_at = {"c2s": 0.0, "s2c": 0.0}  # when each direction's line is next idle
        self._socks: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._active = 0
        self._waiting: list[_Conn] = []  # reordered connections waiting for the next one
        self._want_up = self._is_up = True
        self._port = 0
        self._acceptor: threading.Thread | None = None
        self._wake: socket.socket | None = None  # a byte here wakes the acceptor

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("FaultProxy is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stats(self) -> Stats:
        """A snapshot of the counters."""
        with self._lock:
            return dataclasses.replace(self._stats, faults=Counter(self._stats.faults))

    @property
    def history(self) -> list[tuple[Fault, ...]]:
        """The faults planned for each connection so far, in order of acceptance."""
        with self._lock:
            return list(self._history)

    def recorded(self, direction: Direction) -> bytes:
        """Every byte delivered in `direction` so far, all connections in delivery order
        (with `record=True`; else nothing): what a wiretap on the line would have seen."""
        with self._lock:
            return bytes(self._recorded[direction])

    def force(self, *faults: Fault) -> None:
        """Give the next accepted connection exactly these faults instead of drawing them."""
        with self._lock:
            self._forced.append(faults)

    def start(self) -> FaultProxy:
        """Listen on 127.0.0.1 port 0 and begin forwarding."""
        if self._acceptor is not None or self._closing.is_set():
            raise RuntimeError("FaultProxy can be started once")
        listener = self._bind(0)
        listener.listen(128)
        self._port = listener.getsockname()[1]
        wake, self._wake = socket.socketpair()
        self._acceptor = threading.Thread(
            target=self._accept_loop, args=(listener, wake), name=f"faultproxy-{self._port}"
        )
        self._acceptor.start()
        return self

    def close(self) -> None:
        """Stop accepting, cut every connection, join every thread, close every socket."""
        self._closing.set()
        if self._acceptor is None or self._wake is None:
            return
        self._wake.send(b"x")
        self._acceptor.join()
        with self._lock:
            _shutdown(*self._socks)
            threads = list(self._threads)
        for thread in threads:
            thread.join()
        self._wake.close()
        self._acceptor = self._wake = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def down(self, *, cut_active: bool = True) -> None:
        """Refuse new connections (the line is out); by default also cut those under way."""
        self._switch(False)
        if cut_active:
            with self._lock:
                _shutdown(*self._socks)

    def up(self) -> None:
        """Accept connections again, on the same port."""
        self._switch(True)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no connection (or replay of one) is under way; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._active == 0, timeout)

    def _switch(self, up: bool) -> None:
        if self._wake is None:
            raise RuntimeError("FaultProxy is not running")
        with self._changed:
            self._want_up = up
            self._wake.send(b"x")
            self._changed.wait_for(lambda: self._is_up == self._want_up, 5.0)
            if self._is_up != up:
                raise RuntimeError(f"FaultProxy could not go {'up' if up else 'down'}")

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # Reuse lets a reopened port coexist with the connections accepted before.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def _accept_loop(self, first: socket.socket, wake: socket.socket) -> None:
        """Own the port: accept while up; while down, hold it bound but not listening."""
        listener: socket.socket | None = first
        with wake, selectors.DefaultSelector() as sel:
            sel.register(wake, selectors.EVENT_READ)
            sel.register(first, selectors.EVENT_READ)
            try:
                while not self._closing.is_set():
                    for key, _ in sel.select():
                        if key.fileobj is wake:
                            wake.recv(4096)
                        elif listener is not None and self._is_up:
                            with contextlib.suppress(OSError):  # the client gave up already
                                self._admit(listener.accept()[0])
                    listener = self._follow(sel, listener)
            finally:
                if listener is not None:
                    listener.close()

    def _follow(
        self, sel: selectors.BaseSelector, listener: socket.socket | None
    ) -> socket.socket | None:
        """Bring the port to the state down()/up() asked for; the acceptor's thread only."""
        with self._lock:
            want, listening = self._want_up, self._is_up
        try:
            if want and not listening:
                listener = listener or self._bind(self._port)
                listener.listen(128)
                sel.register(listener, selectors.EVENT_READ)
                listening = True
            elif listening and not want and listener is not None:
                # Closing drops the queued connections; a bound socket that does not listen
                # makes the kernel refuse new ones and keeps the port ours for up().
                sel.unregister(listener)
                listener.close()
                listening, listener = False, None
                listener = self._bind(self._port)
        except OSError:
            pass  # _switch() sees the state it asked for was not reached
        with self._changed:
            self._is_up = self._want_up = listening
            self._changed.notify_all()
        return listener

    def _draw(self, schedule: Schedule) -> tuple[Fault, ...]:
        """One connection's faults, from the seeded rng alone so that a seed replays a run."""
        rng, faults = self._rng, []
        for kind in _KINDS:
            if rng.random() >= getattr(schedule, kind):
                continue
            if kind in ("duplicate", "reorder"):
                faults.append(Fault(kind))
                continue
            direction: Direction = rng.choice(("c2s", "s2c"))
            offset = int(schedule.max_offset ** rng.random()) - 1
            seconds = rng.uniform(0.0, schedule.max_stall) if kind == "stall" else 0.0
            mask = 1 << rng.randrange(8) if kind == "flip" else 1
            faults.append(Fault(kind, direction, offset, seconds, mask))
        return tuple(faults)

    def _admit(self, client: socket.socket) -> None:
        with self._lock:
            schedule = self.schedule
            plan = self._forced.popleft() if self._forced else self._draw(schedule)
            conn = _Conn(len(self._history), client, plan, time.monotonic() + schedule.max_hold)
            if not conn.has("reorder"):
                conn.hold.set()
            self._history.append(plan)
            self._stats.connections += 1
            conn.followers = self._waiting
            self._waiting = [] if conn.hold.is_set() else [conn]
            self._socks.add(client)
            self._active += 1
            self._threads = [t for t in self._threads if t.is_alive()]
            name = f"faultproxy-{self._port}-{conn.index}"
            thread = threading.Thread(target=self._serve, args=(conn,), name=name)
            self._threads.append(thread)
        thread.start()

    def _serve(self, conn: _Conn) -> None:
        """Carry one connection both ways, then close it and replay it if planned."""
        try:
            try:
                server = socket.create_connection(self.target, timeout=self.io_timeout)
            except OSError:
                return
            with self._lock:
                self._socks.add(server)
                if self._closing.is_set():
                    _shutdown(server)
            conn.server = server
            for sock in (conn.client, server):
                sock.settimeout(self.io_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            name = f"faultproxy-{self._port}-{conn.index}-up"
            up = threading.Thread(
                target=self._pump, args=(conn, "c2s", conn.client, server), name=name
            )
            up.start()
            self._pump(conn, "s2c", server, conn.client)
            up.join()
        finally:
            with self._lock:
                for opened in (conn.client, conn.server):
                    if opened is not None:
                        self._socks.discard(opened)
                        opened.close()
            self._release(conn.followers)
            if conn.has("duplicate") and conn.carried:
                self._replay(bytes(conn.carried))
            with self._changed:
                self._active -= 1
                self._changed.notify_all()

    def _pump(
        self, conn: _Conn, direction: Direction, src: socket.socket, dst: socket.socket
    ) -> None:
        """Forward one direction, applying this connection's faults and the line's shape."""
        faults = {fault.kind: fault for fault in conn.plan if fault.direction == direction}
        pending: deque[tuple[float, bytes]] = deque()  # (arrival time, bytes), in order
        buffered = offset = 0
        gate = 0.0  # a stall: nothing read after it arrives before this
        eof = cut = False
        with selectors.DefaultSelector() as sel:
            sel.register(src, selectors.EVENT_READ)
            try:
                while not self._closing.is_set():
                    now = time.monotonic()
                    if not conn.hold.is_set() and now >= conn.hold_until:
                        self._release([conn], count=False)
                    held = direction == "c2s" and not conn.hold.is_set()
                    while pending and not held and pending[0][0] <= now:
                        data = pending.popleft()[1]
                        buffered -= len(data)
                        dst.sendall(data)
                        self._delivered(conn, direction, data)
                    if eof and not pending:
                        if cut:
                            self._count("cut")
                            _shutdown(conn.client, conn.server)
                        else:
                            dst.shutdown(socket.SHUT_WR)
                        return
                    timeout = _HOLD_POLL if held else pending[0][0] - now if pending else _POLL
                    shape = self.schedule
                    window = _WINDOW + int((shape.bandwidth or 2**26) * shape.latency)
                    if eof or buffered >= window:
                        self._closing.wait(timeout)
                        continue
                    if not sel.select(min(timeout, _POLL)):
                        continue
                    bandwidth = shape.bandwidth or 2**30
                    data = src.recv(int(min(65536, max(1024, bandwidth / 100))))
                    if not data:
                        eof = True
                        continue
                    now, end = time.monotonic(), offset + len(data)
                    if (fault := faults.get("cut")) and fault.offset < end:
                        data = data[: max(0, fault.offset - offset)]
                        end, eof, cut = offset + len(data), True, True
                    if (fault := faults.get("flip")) and offset <= fault.offset < end:
                        flipped = bytearray(data)
                        flipped[fault.offset - offset] ^= fault.mask
                        data = bytes(flipped)
                        self._count("flip")
                    pieces = [(data, 0.0)]
                    if (fault := faults.get("stall")) and offset <= fault.offset < end:
                        split = fault.offset - offset
                        pieces = [(data[:split], 0.0), (data[split:], now + fault.seconds)]
                        self._count("stall")
                    for piece, stall_until in pieces:
                        gate = max(gate, stall_until)
                        if piece:
                            arrival = max(self._arrival(direction, len(piece), now), gate)
                            pending.append((arrival, piece))
                            buffered += len(piece)
                    offset = end
            except OSError:
                _shutdown(conn.client, conn.server)

    def _arrival(self, direction: Direction, size: int, now: float) -> float:
        """When bytes read now arrive: they leave at `bandwidth`, then take `latency`."""
        shape, sent = self.schedule, now
        if shape.bandwidth:
            with self._lock:
                sent = max(now, self._free_at[direction]) + size / shape.bandwidth
                self._free_at[direction] = sent
        return sent + shape.latency

    def _delivered(self, conn: _Conn, direction: Direction, data: bytes) -> None:
        with self._lock:
            if direction == "c2s":
                self._stats.bytes_c2s += len(data)
            else:
                self._stats.bytes_s2c += len(data)
            if self.record:
                self._recorded[direction] += data
        if direction == "c2s" and conn.has("duplicate"):
            conn.carried += data
        elif direction == "s2c" and conn.followers:
            # The server has answered this connection: its request arrived before theirs.
            self._release(conn.followers)
            conn.followers = []

    def _release(self, held: list[_Conn], *, count: bool = True) -> None:
        with self._lock:
            for conn in held:
                if not conn.hold.is_set():
                    conn.hold.set()
                    if count:
                        self._stats.faults["reorder"] += 1

    def _count(self, kind: str) -> None:
        with self._lock:
            self._stats.faults[kind] += 1

    def _replay(self, data: bytes) -> None:
        """Send a finished connection's client bytes again on a fresh connection; discard the
        answer, but wait for it, since a server may drop a request whose client has left."""
        try:
            sock = socket.create_connection(self.target, timeout=_REPLAY_TIMEOUT)
        except OSError:
            return
        with self._lock:
            self._socks.add(sock)
            if self._closing.is_set():
                _shutdown(sock)
        try:
            sock.sendall(data)
            self._count("duplicate")
            while sock.recv(65536):  # the answer may be slow to start; its end is a silence
                sock.settimeout(_REPLAY_IDLE)
        except OSError:
            pass
        finally:
            with self._lock:
                self._socks.discard(sock)
                sock.close()
