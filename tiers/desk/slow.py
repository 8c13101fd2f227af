"""Desk results that take seconds, computed beside the pages rather than in their way.

`reconcile` for a month reads every report and every case event of the month (41 s at a
1M-entry city): rendered in a page it would hold the desk's one-at-a-time lock, and every
other reader's page, that long. So such a result is computed on a thread with its own
connection to the node (`tiers.node.open_home`), at most `MAX_RUNNING` at once, and kept
with the data version and day it was computed for (`tiers.desk.figures.data_version`:
every table it reads changes only when an entry is stored or projected). A page asks
`result(...)`: the kept result when it is current (exact); else it starts the computation
and waits up to `WAIT` seconds — a small city's answer comes in that time — or finds it
running and does not wait (the page is rendered under the desk's one-at-a-time lock: a page
reloading itself every `RELOAD` s must not hold every other reader's page). Past that it
gets the result kept from before, marked with when it was computed (the page says so: a
busy city's month may never be still for 40 s), or nothing yet: the page says it is being
computed and reloads itself (`RELOAD` seconds, a meta refresh: no script).
A computation that failed is said once, by the next page that asks.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sync.clock import Clock
from sync.node import Node
from sync.protocol import i18n
from tiers.desk.figures import Version, data_version
from tiers.node import open_home

MAX_RUNNING = 2  # computations at once (more asked: the page says the desk is busy)
MAX_KEPT = 32  # results kept
WAIT = 5.0  # seconds a page waits for a computation it started or found running
RELOAD = 3  # seconds before a page that is still waiting reloads itself

Key = tuple[str, str, str, str]  # (database, what, period, language)
Compute = Callable[[Node], dict[str, Any]]


@dataclass
class _Kept:
    version: Version
    day: date
    value: dict[str, Any]
    at: str  # when it was computed (ISO time at this node)


@dataclass(frozen=True)
class Answer:
    """A result (None: none yet), whether it is current, and when it was computed."""

    value: dict[str, Any] | None
    current: bool
    at: str | None


class Busy(Exception):
    """`MAX_RUNNING` computations are running already: ask again later."""


_kept: OrderedDict[Key, _Kept] = OrderedDict()
_running: dict[Key, threading.Thread] = {}
_failed: dict[Key, BaseException] = {}
_lock = threading.Lock()


def result(node: Node, what: str, period: str, compute: Compute) -> Answer:
    """`compute(node)` for `what` and `period` as of now, or what was kept before while it
    is computed (Busy when too many are; the error a computation raised, once). `compute`
    runs in the reader's language on a connection of its own, so it must only read."""
    lang = i18n.locale()
    key = (node.store.path, what, period, lang)
    now = (data_version(node.store), node.clock.now().date())
    with _lock:
        failed = _failed.pop(key, None)
        if failed is not None:
            raise failed
        kept = _kept.get(key)
        if kept is not None and (kept.version, kept.day) == now:
            _kept.move_to_end(key)
            return Answer(kept.value, True, kept.at)
        thread = _running.get(key)
        started = thread is None
        if thread is None:
            if len(_running) >= MAX_RUNNING:
                raise Busy
            thread = threading.Thread(
                target=_run, args=(node.home, node.clock, key, lang, compute), daemon=True,
                name=f"desk-{what}",
            )  # fmt: skip
            _running[key] = thread
            thread.start()
    if started:  # a page that finds it running (a reload) does not wait: the desk's lock
        thread.join(WAIT)  # is held meanwhile, and every other reader's page waits too
    with _lock:
        failed = _failed.pop(key, None)
        if failed is not None:
            raise failed
        kept = _kept.get(key)
    if kept is None:
        return Answer(None, False, None)
    return Answer(kept.value, (kept.version, kept.day) == now, kept.at)


def _run(home: Path, clock: Clock, key: Key, lang: str, compute: Compute) -> None:
    try:
        node = open_home(home, clock=clock)  # the asking node's clock: the same today
        try:
            version, day = data_version(node.store), node.clock.now().date()
            at = node.clock.now().isoformat()
            with i18n.speaking(lang):
                value = compute(node)
            with _lock:  # kept at the version read before: a later one computes again
                _kept[key] = _Kept(version, day, value, at)
                _kept.move_to_end(key)
                while len(_kept) > MAX_KEPT:
                    _kept.popitem(last=False)
        finally:
            node.close()
    except Exception as exc:  # said by the next page that asks, not lost in a thread
        with _lock:
            _failed[key] = exc
    finally:
        with _lock:
            _running.pop(key, None)


def forget() -> None:
    """Drop every kept result (tests)."""
    with _lock:
        _kept.clear()
        _failed.clear()
