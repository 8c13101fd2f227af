"""Causal order of one case's events across logs (DESIGN §3), pure.

Invariant: the order depends on the events alone — each event's `after` link, then seq
within an origin, ties broken by (origin, seq) — never on `at` or on arrival order, so
every node holding the same events orders them the same way.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Ref = tuple[str, int]


@dataclass(frozen=True)
class Event:
    """One case event as held in some log: its author (origin, seq), type, time and body."""

    origin: str
    seq: int
    type: str
    at: str
    body: Mapping[str, Any]

    @property
    def ref(self) -> Ref:
        return (self.origin, self.seq)

    @property
    def after(self) -> Ref | None:
        after = self.body.get("after")
        return (after[0], after[1]) if after else None


def causal_order(events: Iterable[Event]) -> tuple[list[Event], list[Event]]:
    """Order one case's events by `after` (and seq within an origin), ties by origin/seq.

    Returns (ordered, waiting): events whose `after` is not held yet, and those that come
    after them, wait; they are kept and join the order once the missing event arrives.
    """
    held = {ev.ref: ev for ev in events}
    children: dict[Ref, list[Ref]] = {}
    pending: dict[Ref, int] = {}
    by_origin: dict[str, list[int]] = {}
    for ref in held:
        by_origin.setdefault(ref[0], []).append(ref[1])
    blocked: list[Ref] = []
    for origin, seqs in by_origin.items():
        seqs.sort()
        for index, seq in enumerate(seqs):
            ref = (origin, seq)
            deps = set()
            if index:
                deps.add((origin, seqs[index - 1]))
            after = held[ref].after
            if after is not None and after != ref:
                if after in held:
                    deps.add(after)
                else:
                    blocked.append(ref)
                    continue
            pending[ref] = len(deps)
            for dep in deps:
                children.setdefault(dep, []).append(ref)
    ready = [ref for ref, count in pending.items() if count == 0]
    heapq.heapify(ready)
    ordered: list[Event] = []
    while ready:
        ref = heapq.heappop(ready)
        ordered.append(held[ref])
        for child in children.get(ref, ()):
            if child in pending:
                pending[child] -= 1
                if pending[child] == 0:
                    heapq.heappush(ready, child)
    placed = {ev.ref for ev in ordered}
    waiting = sorted((ev for ev in held.values() if ev.ref not in placed), key=lambda ev: ev.ref)
    return ordered, waiting


def chained(tip: Ref | None, events: Iterable[Event]) -> list[Event] | None:
    """`events` in the one causal order that extends a case folded up to `tip` (None: a
    case not begun), if they form a single chain from it: the first names `tip` as its
    `after` (or, opening the case, none), each other the one before it, and each origin's
    come in seq order. That is the order `causal_order` gives them after the events folded
    already, whatever order they arrived in; None if they form no such chain."""
    following: dict[Ref | None, Event] = {}
    for ev in events:
        if ev.after in following:
            return None  # two events after one: a branch, for `causal_order` to judge
        following[ev.after] = ev
    chain: list[Event] = []
    last: dict[str, int] = {}
    ref = tip
    while ref in following:
        ev = following.pop(ref)
        if ev.seq <= last.get(ev.origin, 0):
            return None
        last[ev.origin] = ev.seq
        chain.append(ev)
        ref = ev.ref
    return chain if not following else None
