"""What flows down the tree, in tier terms (DESIGN §1 "Downward"): the one place for it.

- the catalogue and calendar overrides published above flow to every node below;
- the events about a case flow to every node of the subtree the case came from, and to
  the node it was forwarded to or is held by, so a village can deliver a result and
  record the rating, and a town sees what the city decided.
Cases travel along the tree, so only ancestors' logs are searched for such events.
"""

from __future__ import annotations

from sync import blob_index, relevance
from sync.logstore import LogStore
from sync.protocol.ids import ancestors_of, subtree_end

relevance.register_broadcast("catalogue.")
relevance.register_broadcast("calendar.")


def case_events_for(store: LogStore, client: str, cursors: dict[str, int]) -> list[tuple[str, int]]:
    """(origin, seq) of ancestors' case events about cases that concern `client`."""
    origins = ancestors_of(client)
    out: list[tuple[str, int]] = []
    low, high = client, subtree_end(client)
    for origin in origins:
        rows = store.query(
            "SELECT e.seq FROM case_events e WHERE e.origin = ? AND e.seq > ? AND e.case_id IN ("
            " SELECT case_id FROM cases WHERE (case_id >= ? AND case_id < ?)"
            " OR (forward_to >= ? AND forward_to < ?) OR (holder >= ? AND holder < ?))",
            (origin, cursors.get(origin, 0), low, high, low, high, low, high),
        )
        out.extend((origin, seq) for (seq,) in rows)
    return out


relevance.register_selector(case_events_for)


def materials_for(store: LogStore, client: str, cursors: dict[str, int]) -> list[tuple[str, int]]:
    """(origin, seq) of ancestors' `case.attached` about cases that concern `client`: the
    results a deciding node attached travel down to the case's origin for 送达."""
    low, high = client, subtree_end(client)
    out: list[tuple[str, int]] = []
    for origin in ancestors_of(client):
        rows = store.query(
            "SELECT DISTINCT m.seq FROM case_materials m WHERE m.origin = ? AND m.seq > ? AND "
            "m.case_id IN (SELECT case_id FROM cases WHERE (case_id >= ? AND case_id < ?)"
            " OR (forward_to >= ? AND forward_to < ?) OR (holder >= ? AND holder < ?))",
            (origin, cursors.get(origin, 0), low, high, low, high, low, high),
        )
        out.extend((origin, seq) for (seq,) in rows)
    return out


def may_fetch_material(store: LogStore, client: str, sha256: str) -> bool:
    """A node may be sent a material attached above it (a result, by a node outside its
    subtree) to a case that concerns it (as above). What its own subtree attached it
    holds already; naming a hash on its own case opens nothing (sync.blob_index)."""
    low, high = client, subtree_end(client)
    return bool(
        store.query(
            "SELECT 1 FROM case_materials m JOIN cases c ON c.case_id = m.case_id "
            "WHERE m.sha256 = ? AND NOT (m.origin >= ? AND m.origin < ?) AND "
            "((c.case_id >= ? AND c.case_id < ?) OR (c.forward_to >= ? AND c.forward_to < ?)"
            " OR (c.holder >= ? AND c.holder < ?)) LIMIT 1",
            (sha256, low, high, low, high, low, high, low, high),
        )
    )


relevance.register_selector(materials_for)
blob_index.register_access(may_fetch_material)
