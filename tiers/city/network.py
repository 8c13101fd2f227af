"""The city's (or a town's) view of its network for `status` (key `network`): every node
below with when and how it was last heard from, its last case, its liveness (`alive`,
`quiet`, `silent`), backlog, forwards, forks, revocations and warnings by colour."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from sync import keyring, liveness, trust
from sync.logstore import LogStore
from sync.node import Node
from sync.protocol.ids import is_within
from tiers.city.reconcile import _OPEN_SQL, Thresholds, _in_transit, _since, last_heard
from tiers.deadlines import Deadline, warning
from tiers.published import work_calendar


def _warnings(store: LogStore, today: date, threshold: int) -> dict[str, dict[str, int]]:
    cal = work_calendar(store)
    out: dict[str, dict[str, int]] = {}
    for holder, due, years, paused, remaining in store.query(
        "SELECT holder, deadline, provisional_years, paused_since, remaining_when_paused "
        f"FROM cases WHERE status IN {_OPEN_SQL} AND accepted_at IS NOT NULL"
    ):
        deadline = Deadline(
            date.fromisoformat(due) if due else None, frozenset(json.loads(years or "[]")),
            date.fromisoformat(paused) if paused else None, remaining,
        )  # fmt: skip
        colour = warning(cal, deadline, today, threshold)
        if colour is not None:
            counts = out.setdefault(holder, {"yellow": 0, "red": 0})
            counts[colour] += 1
    return out


def last_case_at(store: LogStore, node_id: str) -> str | None:
    """When `node_id` last recorded a case event held here: the `at` of its newest (by
    seq) case event, capped by that entry's arrival here; None if it recorded none.
    Heartbeats are not case events, so they never count as activity."""
    rows = store.query(
        "SELECT c.at, e.received_at FROM case_events c JOIN entries e "
        "ON e.origin = c.origin AND e.seq = c.seq WHERE c.origin = ? "
        "ORDER BY c.seq DESC LIMIT 1", (node_id,))  # fmt: skip
    if not rows:
        return None
    return liveness.capped(*rows[0])


LIVENESS = ("alive", "quiet", "silent")


def liveness_of(
    heard: str | None, case_at: str | None, now: datetime, limits: Thresholds, *, me: bool
) -> str:
    """`silent`: nothing heard for `stale_days` (never, for this node itself); `quiet`:
    heard, but no case recorded for `quiet_days`; `alive`: heard and recording cases."""
    if not me and (heard is None or _since(now, heard) > limits.stale_days):
        return "silent"
    if case_at is None or _since(now, case_at) > limits.quiet_days:
        return "quiet"
    return "alive"


def network_health(
    node: Node, *, limits: Thresholds | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """The city's view for `status --json` (key `network`): every enrolled node below this
    one with last contact, when and how last heard from (a heartbeat counts), its last
    case, its liveness (`alive`, `quiet`, `silent`; see `liveness_of`), entries held, how
    late its newest entry arrived, open forwards, forks and warnings by colour."""
    limits = limits or Thresholds.from_settings(node.config.settings)
    now = now or node.clock.now()
    store = node.store
    heads = {o: s for o, (s, _) in store.heads().items()}
    heard = last_heard(store)
    contacts = {n: c for n, c, _ in store.query("SELECT node_id, last_contact, skew_seconds "
                                                "FROM peers")}  # fmt: skip
    newest = {origin: (at, received) for origin, at, received in store.query(
        "SELECT h.origin, json_extract(CAST(e.raw AS TEXT), '$.at'), e.received_at FROM heads h "
        "JOIN entries e ON e.origin = h.origin AND e.seq = h.seq")}  # fmt: skip
    revoked = {r["node_id"] for r in keyring.revocations(store)
               if trust.revoked(store, r["node_id"])}  # fmt: skip
    used: dict[str, int] = {}
    for u in keyring.revoked_uses(store):
        used[u["node_id"]] = used.get(u["node_id"], 0) + u["count"]
    quarantined: dict[str, int] = {}
    for q in store.quarantine_counts():
        quarantined[q["origin"]] = quarantined.get(q["origin"], 0) + q["count"]
    forks: dict[str, int] = {}
    for f in store.forks():
        if not f["resolved"]:
            forks[f["origin"]] = forks.get(f["origin"], 0) + 1
    transit_in: dict[str, int] = {}
    transit_out: dict[str, int] = {}
    for _, holder, to, _ in _in_transit(store):
        transit_in[to] = transit_in.get(to, 0) + 1
        transit_out[holder] = transit_out.get(holder, 0) + 1
    threshold = int(node.config.settings.get("yellow_days", 1))
    colours = _warnings(store, now.date(), threshold)
    nodes = []
    for n in trust.enrolled_nodes(store):
        node_id = n["node_id"]
        if not is_within(node_id, node.node_id):
            continue
        when, how = heard.get(node_id, (None, None))
        case_at = last_case_at(store, node_id)
        state = liveness_of(when, case_at, now, limits, me=node_id == node.node_id)
        at, received = newest.get(node_id, (None, None))
        lag = None
        if at is not None and received is not None:
            lag = int(
                (datetime.fromisoformat(received) - datetime.fromisoformat(at)).total_seconds()
            )
        nodes.append({
            "node_id": node_id, "tier": n["tier"], "name": n["name"], "parent_id": n["parent_id"],
            "last_contact": contacts.get(node_id), "last_heard": when, "heard_how": how,
            "last_case_at": case_at, "liveness": state,
            "entries_held": heads.get(node_id, 0), "last_entry_at": at,
            "lag_seconds": lag, "open_forwards_in": transit_in.get(node_id, 0),
            "open_forwards_out": transit_out.get(node_id, 0), "forks": forks.get(node_id, 0),
            "quarantined": quarantined.get(node_id, 0),
            "warnings": colours.get(node_id, {"yellow": 0, "red": 0}),
            "stale": state == "silent", "revoked": node_id in revoked,
            "revoked_key_used": used.get(node_id, 0),
        })  # fmt: skip
    return {
        "as_of": now.isoformat(),
        "nodes": nodes,
        "stale": sum(n["stale"] for n in nodes),
        "liveness": {s: sum(n["liveness"] == s for n in nodes) for s in LIVENESS},
        "limits": {"stale_days": limits.stale_days, "quiet_days": limits.quiet_days},
        "forks": sum(forks.values()),
        "quarantined": sum(quarantined.values()),
        "revoked": len(revoked),
        "warnings": {c: sum(n["warnings"][c] for n in nodes) for c in ("yellow", "red")},
    }


