"""A background thread with a node connection of its own, doing one step at a time: the
desk's figure warmer (tiers.desk.figures.Warmer) and the city's figure keeper
(tiers.figure_keeper.FigureKeeper).

A step that raises is said in one log line and tried again after a pause that doubles, up
to `max_backoff`: a background helper never takes the server down, and never stops for
good over one bad moment. A node that cannot be opened is said once; the commands and
pages then do the work for themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sync.logs import log_line
from sync.node import Node
from sync.protocol.errors import describe


class NodeLoop:
    """Subclasses set `thread_name`, `stopped_key` (i18n: the node could not be opened,
    with `error`) and `failed_key` (a step failed, with `error` and `seconds`), and define
    `step`; `begin` and `end` are optional. The thread starts at once; `stop` ends it."""

    thread_name = "node-loop"
    stopped_key: str
    failed_key: str

    def __init__(self, open_node: Callable[[], Node], every: float, max_backoff: float) -> None:
        self._open, self._every, self._max_backoff = open_node, every, max_backoff
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def begin(self, node: Node) -> bool:
        """Before the first step; False: nothing to do for this node (the thread ends)."""
        return True

    def step(self, node: Node) -> float | None:
        """One step; the seconds to wait before the next (None: `every`)."""
        raise NotImplementedError

    def end(self, node: Node) -> None:
        """After the last step (also after `begin` said False), before the node closes."""

    def _run(self) -> None:
        try:
            node = self._open()
        except Exception as exc:  # said once: the commands and pages work for themselves
            log_line(self.stopped_key, error=describe(exc))
            return
        try:
            if not self.begin(node):
                return
            failures = 0
            while not self._stop.is_set():
                try:
                    wait = self.step(node)
                    failures = 0
                except Exception as exc:  # said, and tried again after a longer pause
                    failures += 1
                    wait = min(self._every * 2**failures, self._max_backoff)
                    log_line(self.failed_key, error=describe(exc), seconds=round(wait))
                self._stop.wait(self._every if wait is None else wait)
        finally:
            self.end(node)
            node.close()
