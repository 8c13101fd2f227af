"""Heartbeats: a node that syncs is seen alive by its ancestors even when it records nothing.

When a node starts a sync round (or writes a bundle for its parent) and has appended
nothing to its own log for `heartbeat_hours` (node.toml, default 24; 0 turns heartbeats
off), it appends one `sync.alive` entry. The entry is signed by the node itself and relays
up like any other, so the city needs no new trust rule to believe it: nobody else can
write it (the signature and the whole-log rules of DESIGN §2 refuse an entry of another
origin), and a node that syncs every minute still writes at most one a day.

Invariants:
- A heartbeat is written only where any append could be (`Node.append`: not while
  restoring, not while the node's own log is frozen) and, in a round, only after the
  peer's receipt showed that this node is not behind its own log (sync.round), so a
  heartbeat never forks the node's log.
- Its `at` is the author's clock (a skewed clock is reported by the clock-lead rules like
  any entry's). Whoever reads it counts the node heard at that time, but never later than
  the heartbeat arrived there (`heard_at`): a heartbeat stamped in the future does not
  keep its author alive in the future.
- It is not activity: no projection asks for the type (the case and figure projections
  name theirs), so no statistic counts it. The type is not under `node.`, so it does not
  flow down with the broadcast records either.
- Its body is `{"via": "sync" | "bundle"}` (other keys are let through, for later
  versions); any other body is refused by the entry schema check, on every way in.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from sync.protocol.entry import SignedEntry, register_body_check

if TYPE_CHECKING:
    from sync.node import Node

ALIVE = "sync.alive"
HEARTBEAT_HOURS = 24.0  # default of node.toml's `heartbeat_hours`
VIA_SYNC, VIA_BUNDLE = "sync", "bundle"


class AliveBody(msgspec.Struct):
    """The body of a heartbeat: how the node was in touch (a word, for people)."""

    via: Annotated[str, msgspec.Meta(pattern="^[a-z]{1,16}$")]


register_body_check(ALIVE, AliveBody)


def heartbeat_hours(settings: dict[str, Any]) -> float:
    """node.toml's `heartbeat_hours` (a number of hours; 0 or less: no heartbeats); the
    default when it is missing or not a number."""
    value = settings.get("heartbeat_hours", HEARTBEAT_HOURS)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return HEARTBEAT_HOURS
    return float(value)


def _own_last_write(node: Node) -> datetime | None:
    """When this node last appended to its own log (its clock), None if never."""
    seq, _ = node.store.head(node.node_id)
    if seq == 0:
        return None
    rows = node.store.query(
        "SELECT received_at FROM entries WHERE origin = ? AND seq = ?", (node.node_id, seq)
    )
    return datetime.fromisoformat(rows[0][0]) if rows else None


def due(node: Node) -> bool:
    """Whether this node should write a heartbeat now: heartbeats are on, it may append,
    and it has appended nothing for `heartbeat_hours` (or never)."""
    from sync.node import RESTORING  # sync.node imports this module

    hours = heartbeat_hours(node.config.settings)
    if hours <= 0 or node.store.get_meta(RESTORING):
        return False
    if node.node_id in node.store.frozen():
        return False
    last = _own_last_write(node)
    return last is None or node.clock.now() - last >= timedelta(hours=hours)


def beat(node: Node, via: str = VIA_SYNC) -> SignedEntry | None:
    """Append a heartbeat if one is due (see `due`); the entry, or None. One transaction,
    so two rounds at once (serve's and an operator's) write one heartbeat, not two."""
    with node.store.transaction():
        if not due(node):
            return None
        return node.append(ALIVE, {"via": via})


def heard_at(entry_type: str, at: str | None, received_at: str) -> tuple[str, str]:
    """(when, how) an entry held here says its author was last heard from: a heartbeat at
    its own `at`, capped by its arrival here; any other entry at its arrival."""
    if entry_type == ALIVE and at is not None:
        return capped(at, received_at), "heartbeat"
    return received_at, "entry"


def capped(at: str, received_at: str) -> str:
    """An author's `at`, never later than the entry's arrival here (nor unreadable)."""
    try:
        stamped = datetime.fromisoformat(at)
    except ValueError:
        return received_at
    return at if stamped < datetime.fromisoformat(received_at) else received_at
