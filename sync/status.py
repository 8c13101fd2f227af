"""What `zhibao status` reports: heads, acknowledgements, forks, last contact (DESIGN §7),
and the link to the parent with what still waits for its receipt (sync.link)."""

from __future__ import annotations

from typing import Any

from sync import keyring, link, receipts
from sync.node import Node


def node_status(node: Node) -> dict[str, Any]:
    store = node.store
    heads = {o: s for o, (s, _) in sorted(store.heads().items())}
    parent = node.config.parent_id
    acknowledged = receipts.acknowledged(store, parent) if parent else {}
    peers = [
        {"node_id": n, "last_contact": at, "skew_seconds": skew}
        for n, at, skew in store.query(
            "SELECT node_id, last_contact, skew_seconds FROM peers ORDER BY node_id"
        )
    ]
    own = heads.get(node.node_id, 0)
    waiting = link.backlog(node)
    return {
        "node_id": node.node_id,
        "tier": node.config.tier,
        "name": node.config.name,
        "heads": heads,
        "held_in_part": {o: s for o, s in sorted(store.max_seqs().items()) if o not in heads},
        "acknowledged": acknowledged,
        "unacknowledged": max(0, own - acknowledged.get(node.node_id, 0)) if parent else 0,
        "forks": store.forks(),
        "quarantined": store.quarantined(),  # the latest 100
        "quarantined_counts": store.quarantine_counts(),
        "revocations": keyring.revocations(store),
        "revoked_key_used": keyring.revoked_uses(store),
        "revoked_key_used_reported": keyring.reported_uses(store),
        "last_sync": store.get_meta("last_sync"),
        "last_sync_peer": store.get_meta("last_sync_peer"),
        "clock_offset_seconds": int(node.clock.offset.total_seconds()),
        "restoring": bool(store.get_meta("restoring")),
        "peers": peers,
        "link": link.link_state(node),
        "backlog": sum(waiting.values()),
        "backlog_by_origin": waiting,
    }
