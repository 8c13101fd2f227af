"""A round keeps one push on the wire while it reads the next batch (sync.round._push_all):
two threads. A node's SQLite connection must only ever be used by one of them at a time —
apsw refuses a statement while another thread's runs (ThreadingViolation: "Cursor couldn't
run because the Connection is busy in another thread"), which killed a town's round at the
5 M-entry bench when the wire thread read the server's seal key from the store. So every
statement of a round runs on the round's own thread; the wire thread only seals, signs and
sends. Real homes, a real server on 127.0.0.1, apsw's own statement trace.
"""

from __future__ import annotations

import threading

from sync.round import sync_round
from tests.support.servers import serve_in_thread
from tests.support.topology import TOWN, VILLAGE, Topology, append_notes


def test_every_statement_of_a_pipelined_round_runs_on_the_rounds_thread(
    topology: Topology,
) -> None:
    with serve_in_thread(topology.home(TOWN)) as url, topology.open(VILLAGE) as village:
        append_notes(village, 5000)  # a first batch of 500, then full ones: three pushes
        threads: set[str] = set()

        def traced(cursor: object, sql: str, bindings: object) -> bool:
            threads.add(threading.current_thread().name)
            return True  # run it

        village.store.conn.exec_trace = traced
        try:
            summary = sync_round(village, url)
        finally:
            village.store.conn.exec_trace = None
    assert summary.batches >= 3 and summary.pushed >= 5000
    assert threads == {threading.current_thread().name}
