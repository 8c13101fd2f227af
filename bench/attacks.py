"""What attacks cost a real `zhibao serve` town: peak memory, and an honest client's wait.

    .venv/bin/python bench/attacks.py [--senders 40] [--body-mib 24] [--bomb-gib 1]

Two attacks, each on a fresh `zhibao serve` of the same town (so each VmHWM is its own):
- `unsigned`: `--senders` connections at once, each a POST /v1/push of `--body-mib` MiB
  with no zhibao headers, sent as fast as the server takes it;
- `bomb`: one push signed by an enrolled village with its own key, whose body is a zstd
  frame of ~32 KiB declaring (and holding) `--bomb-gib` GiB.
Meanwhile a second enrolled village sends a signed hello every 50 ms: its answer times
are the honest client's latency. Targets: peak RSS < 150 MiB, every honest answer < 1 s.

The script uses only what every version of zhibao has (PeerClient, the test-free node
builders in bench/_common.py), so the same file measures an older checkout: copy it into
that checkout's bench/ and run it there with this venv.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    TOWN,
    VILLAGE,
    Server,
    enrol,
    figure,
    make_network,
    note,
    print_machine,
    proc_status,
)

from sync.client import PeerClient
from sync.protocol.errors import SyncError
from tiers.node import create_home, open_home

HONEST = "330782001202"  # a second village of the town: the honest client
MIB = 1 << 20


def rle_frame(content: int) -> bytes:
    """A zstd frame stating `content` as its size and holding that many zero bytes in RLE
    blocks of 128 KiB (4 bytes each: a GiB in 32 KiB)."""
    header = struct.pack("<IBQ", 0xFD2FB528, 0xE0, content)  # single segment, 8-byte size
    blocks = bytearray()
    left = content
    while left > 0:
        size = min(left, 128 * 1024)
        left -= size
        blocks += ((size << 3) | (1 << 1) | (left == 0)).to_bytes(3, "little") + b"\0"
    return header + bytes(blocks)


def add_honest_village(homes: dict[str, Path], base: Path) -> Path:
    town = open_home(homes[TOWN])
    try:
        home = base / "honest"
        village = create_home(
            home,
            tier="village",
            node_id=HONEST,
            name="后宅村便民服务室",
            parent_id=TOWN,
            root_key=town.config.root_key,
        )
        enrol(town, village)
        village.close()
        return home
    finally:
        town.close()


class Honest:
    """A signed hello every `every` seconds from the honest village; answer times in s."""

    def __init__(self, home: Path, url: str, every: float = 0.05) -> None:
        self.home, self.url, self.every = home, url, every
        self.times: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        node = open_home(self.home)
        try:
            with PeerClient(node, self.url, timeout=60.0) as client:
                client.hello()  # the first request learns what it needs of the server
                while not self._stop.is_set():
                    started = time.perf_counter()
                    try:
                        client.hello()
                        self.times.append(time.perf_counter() - started)
                    except SyncError as exc:
                        self.failures.append(type(exc).__name__)
                    self._stop.wait(self.every)
        finally:
            node.close()

    def __enter__(self) -> Honest:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def report(self, name: str) -> None:
        if self.times:
            figure(f"{name}_honest_hellos", len(self.times), "answered")
            figure(f"{name}_honest_median", statistics.median(self.times) * 1000, "ms")
            figure(f"{name}_honest_max", max(self.times) * 1000, "ms (target < 1000)")
        figure(f"{name}_honest_failures", len(self.failures), " ".join(sorted(set(self.failures))))


def send_unsigned(port: int, size: int, outcomes: list[str]) -> None:
    """One POST /v1/push of `size` zero bytes without zhibao headers; its outcome."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=120) as conn:
            conn.sendall(
                f"POST /v1/push HTTP/1.1\r\nHost: town\r\nContent-Length: {size}\r\n\r\n".encode()
            )
            chunk = bytes(MIB)
            sent = 0
            try:
                while sent < size:
                    conn.sendall(chunk[: size - sent])
                    sent += min(MIB, size - sent)
            except OSError:
                outcomes.append(f"cut after {sent // MIB} MiB sent")
                return
            answer = conn.recv(64)
            outcomes.append(answer.split(b"\r\n", 1)[0].decode(errors="replace") or "closed")
    except OSError as exc:
        outcomes.append(type(exc).__name__)


def peak_mib(server: Server) -> float:
    return proc_status(server.pid).get("VmHWM", 0) / 1024


def attack_unsigned(homes: dict[str, Path], honest: Path, senders: int, body_mib: int) -> None:
    with Server(homes[TOWN]) as server:
        port = int(server.url.rsplit(":", 1)[1])
        figure("unsigned_server_rss_before", peak_mib(server), "MiB (VmHWM after start)")
        outcomes: list[str] = []
        with Honest(honest, server.url) as client:
            time.sleep(0.5)  # a few honest answers before the attack, for comparison
            started = time.perf_counter()
            threads = [
                threading.Thread(target=send_unsigned, args=(port, body_mib * MIB, outcomes))
                for _ in range(senders)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - started
            time.sleep(0.5)
        figure("unsigned_bodies", f"{senders} × {body_mib}", "MiB, no zhibao headers")
        figure("unsigned_seconds", seconds, "s until every sender was answered or cut")
        for outcome in sorted(set(outcomes)):
            note(f"unsigned outcome: {outcomes.count(outcome)} × {outcome}")
        figure("unsigned_server_rss_peak", peak_mib(server), "MiB (VmHWM; target < 150)")
        client.report("unsigned")


def attack_bomb(homes: dict[str, Path], honest: Path, gib: int) -> None:
    bomb = rle_frame(gib << 30)
    with Server(homes[TOWN]) as server:
        figure("bomb_server_rss_before", peak_mib(server), "MiB (VmHWM after start)")
        with Honest(honest, server.url) as client:
            time.sleep(0.5)
            village = open_home(homes[VILLAGE])
            started = time.perf_counter()
            try:
                with PeerClient(village, server.url, timeout=120.0) as attacker:
                    attacker.push(bomb)
                outcome = "accepted"
            except SyncError as exc:
                outcome = str(exc)
            finally:
                village.close()
            seconds = time.perf_counter() - started
            time.sleep(0.5)
        figure("bomb_frame", len(bomb), f"bytes declaring {gib} GiB, signed by the village")
        figure("bomb_answer_seconds", seconds, "s")
        note(f"bomb outcome: {outcome}")
        figure("bomb_server_rss_peak", peak_mib(server), "MiB (VmHWM; target < 150)")
        client.report("bomb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--senders", type=int, default=40)
    parser.add_argument("--body-mib", type=int, default=24)
    parser.add_argument("--bomb-gib", type=int, default=1)
    args = parser.parse_args()
    print_machine()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zhibao-attacks-") as tmp:
        homes = make_network(Path(tmp))
        honest = add_honest_village(homes, Path(tmp))
        attack_unsigned(homes, honest, args.senders, args.body_mib)
        attack_bomb(homes, honest, args.bomb_gib)
    figure("bench_seconds", time.perf_counter() - started, "s")


if __name__ == "__main__":
    main()
