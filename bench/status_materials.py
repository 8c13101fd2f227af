"""`zhibao status`'s count of materials by state at a city that names many of them.

    .venv/bin/python bench/status_materials.py [--materials 200000] [--runs 3] [--pg URL]

A new city home (SQLite, or a PostgreSQL database at --pg, which must be empty) whose
projection tables are filled directly (the rows a city's projections would hold: each
material named by one entry; a third held here, a tenth let go, the rest named long ago —
missing — or just now — on the way), then `tiers.materials.summary` timed in process
--runs times, and `zhibao status --json` once as a process. Run it from two checkouts to
compare them: the figures are this checkout's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, figure, print_machine

from sync.node import Node
from tiers import materials
from tiers.node import create_home

CITY = "330782"
ORIGIN = "330782001"


def fill(node: Node, count: int) -> dict[str, int]:
    """`count` materials named by entries of ORIGIN; the states they should be counted in."""
    store, now = node.store, node.clock.now()
    old, new = "2025-01-02T09:00:00+08:00", now.isoformat()
    expected = dict.fromkeys(materials.STATES, 0)
    with store.transaction(), store.batched():
        for n in range(count):
            sha = hashlib.sha256(n.to_bytes(8, "big")).hexdigest()
            seq, case_id = n + 1, f"33078200120250102{n % 10_000:04d}"
            state = ("here" if n % 3 == 0 else "dropped" if n % 10 == 1
                     else "missing" if n % 2 else "on_the_way")  # fmt: skip
            expected[state] += 1
            arrived = new if state == "on_the_way" else old
            store.execute(
                "INSERT INTO case_materials (origin, seq, position, case_id, at, name, file, "
                "sha256, size, media_type) VALUES (?, ?, 0, ?, ?, ?, ?, ?, 1000, 'image/jpeg')",
                (ORIGIN, seq, case_id, old, f"scan {n}", f"scan{n}.jpg", sha),
            )
            store.execute(
                "INSERT INTO blob_refs (sha256, origin, seq, size, root, received_at) "
                "VALUES (?, ?, ?, 1000, ?, ?)",
                (sha, ORIGIN, seq, sha, arrived),
            )
            if state == "here":
                store.execute(
                    "INSERT INTO blobs (sha256, size, root, held_at, source) "
                    "VALUES (?, 1000, ?, ?, NULL)",
                    (sha, sha, old),
                )
            elif state == "dropped":
                store.execute("INSERT INTO blob_dropped (sha256, at) VALUES (?, ?)", (sha, old))
    return expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--materials", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pg", default=None, help="an empty PostgreSQL database's URL")
    args = parser.parse_args()
    print_machine()
    with tempfile.TemporaryDirectory(prefix="zhibao-status-") as tmp:
        home = Path(tmp) / "city"
        node = create_home(home, tier="city", node_id=CITY, name="city", parent_id=None,
                           root_key=None, store=args.pg)  # fmt: skip
        try:
            began = time.perf_counter()
            expected = fill(node, args.materials)
            figure("filled", time.perf_counter() - began, "s")
            times = []
            for _ in range(args.runs):
                began = time.perf_counter()
                counted = materials.summary(node)
                times.append(time.perf_counter() - began)
            assert {k: counted[k] for k in expected} == expected, (counted, expected)
        finally:
            node.close()
        figure("materials", args.materials)
        figure("summary_median", statistics.median(times), "s")
        figure("summary_min", min(times), "s")
        began = time.perf_counter()
        done = subprocess.run(
            [str(Path(sys.executable).parent / "zhibao"), "status", "--json", "--home", str(home)],
            capture_output=True, text=True, check=True, cwd=ROOT,
        )  # fmt: skip
        figure("zhibao_status", time.perf_counter() - began, "s")
        figure("status_materials", json.dumps(json.loads(done.stdout)["materials"]))


if __name__ == "__main__":
    main()
