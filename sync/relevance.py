"""What flows down: which entries held here concern a node below (DESIGN §1, §4).

Sync knows nothing about cases, so the layers above register selectors. Built in:
entries of broadcast types (enrolment, catalogue, calendar …) from the node's ancestors.
Invariant: the answer lists, per origin, a prefix (by seq) of what is relevant above the
node's cursor, so "highest seq held" is always a correct cursor for the next pull.
"""

from __future__ import annotations

from collections.abc import Callable

from sync import proofs
from sync.logstore import LogStore
from sync.protocol.entry import SignedEntry
from sync.protocol.ids import ancestors_of, is_within

BROADCAST_PREFIXES: list[str] = ["node.", "fork."]  # enrolments; fork decisions (sync.forks)

# (store, client id, cursors origin → highest seq the client holds) → (origin, seq) pairs
Selector = Callable[[LogStore, str, dict[str, int]], list[tuple[str, int]]]
_SELECTORS: list[Selector] = []


def register_broadcast(type_prefix: str) -> None:
    """Entries whose type starts with `type_prefix` flow down from every ancestor."""
    if type_prefix not in BROADCAST_PREFIXES:
        BROADCAST_PREFIXES.append(type_prefix)


def register_selector(selector: Selector) -> None:
    if selector not in _SELECTORS:
        _SELECTORS.append(selector)


def _broadcast(store: LogStore, client: str, cursors: dict[str, int]) -> list[tuple[str, int]]:
    ancestors = ancestors_of(client)  # cases and broadcasts travel along the tree
    out: list[tuple[str, int]] = []
    like = " OR ".join("type LIKE ?" for _ in BROADCAST_PREFIXES)
    for origin in ancestors:
        rows = store.query(
            f"SELECT seq FROM entries WHERE origin = ? AND seq > ? AND ({like})",
            (origin, cursors.get(origin, 0), *[p + "%" for p in BROADCAST_PREFIXES]),
        )
        out.extend((origin, seq) for (seq,) in rows)
    return out


def select_for(
    store: LogStore, client: str, cursors: dict[str, int], limit: int
) -> tuple[list[SignedEntry], bool]:
    """Entries that concern `client` and that it does not hold; (entries, more to come).
    Where the projections may lag the log (fronts projecting beside their appends), only
    below each origin's bound, read before the selectors: an entry past it comes next
    time, never passed over (the invariant above; LogStore.projected_read)."""
    with store.projected_read() as bounds:
        wanted: set[tuple[str, int]] = set(_broadcast(store, client, cursors))
        for selector in _SELECTORS:
            wanted.update(selector(store, client, cursors))
        keys = sorted(
            (
                k for k in wanted
                if not is_within(k[0], client) and k[1] > cursors.get(k[0], 0)
                and (bounds is None or k[1] < bounds.get(k[0], 0))
            ),
            key=lambda k: (len(k[0]), k[0], k[1]),
        )  # fmt: skip
        more = len(keys) > limit
        out = []
        for origin, seq in keys[:limit]:
            entry = store.entry(origin, seq)
            if entry is not None:
                out.append(entry)
    return out, more


def subtree_for(
    store: LogStore, client: str, cursors: dict[str, int], limit: int
) -> tuple[list[SignedEntry], bool]:
    """The client's own subtree, whole, above its cursors (for `restore`): about `limit`
    entries, each log's run ending where a signature proves it (sync.proofs), one log after
    another (asked again for each batch: finding the order stored in would read every id
    left each time)."""
    wanted = proofs.plan(store, client, cursors)
    batch = next(proofs.batches(store, wanted, first=limit, size=limit, arrival=False), [])
    return batch, len(batch) < sum(through - after for _, after, through in wanted)
