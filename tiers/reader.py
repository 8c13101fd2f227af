"""Where `zhibao stats` and the desk's figures read from: the node's own store, or a
streaming replica of a city's PostgreSQL database (node.toml `[settings] store_replica =
"postgresql://…"`, its password in the home's libpq passfile `store.pgpass`, never in
node.toml).

A replica is a hot standby of the primary (docs/operator.md "The city on PostgreSQL"): it
holds what the primary had committed a moment ago, projections included, and refuses every
write. Reading figures there takes their queries off the primary that the fronts write to.
Nothing is projected or written through a reader (it is opened without extensions); the
figures are those of the primary as of the replica's last replayed transaction.

When the replica cannot be opened (down, unreachable, a schema this zhibao does not know,
no driver), the figures are read from the primary and one warning line says so; a reader
that failed is tried again after `RETRY_S` seconds (the desk), or at the next command.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sync.node import Node
from sync.node_store import passfile_of, shown_url
from sync.protocol import i18n
from sync.protocol.errors import StoreError

SETTING = "store_replica"
RETRY_S = 60.0  # after a failed opening, the desk reads the primary this long before retrying

i18n.register(
    {
        "figures.replica_unreachable": (
            "the replica {url} could not be read, the figures are read from the primary: {error}",
            "无法读取副本 {url}，统计改为从主库读取：{error}",
        ),
    }
)


def replica_url(node: Node) -> str | None:
    """node.toml's `store_replica`, or None when the node reads its own store."""
    value = node.config.settings.get(SETTING)
    return str(value) if value else None


def open_replica(node: Node, url: str) -> Any:
    """A store on the replica at `url`, without extensions (read only); StoreError when
    it cannot be opened."""
    from sync.pg import PgStore  # the optional driver: only a node that names a replica

    return PgStore(url, owner=node.node_id, passfile=passfile_of(node.home))


@contextmanager
def reading(node: Node, warn: Callable[[str], None]) -> Iterator[Any]:
    """The store one command reads its figures from: the replica's, opened for the block
    and closed after it, or the node's own (`warn` told why, when a replica was named)."""
    url = replica_url(node)
    if url is None:
        yield node.store
        return
    try:
        store = open_replica(node, url)
    except StoreError as exc:
        warn(i18n.t("figures.replica_unreachable", url=shown_url(url), error=str(exc)))
        yield node.store
        return
    try:
        yield store
    finally:
        store.close()


class _Readers:
    """The desk's readers: one replica store per opened node, kept while the node lives."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: weakref.WeakKeyDictionary[Node, Any] = weakref.WeakKeyDictionary()
        self.failed: weakref.WeakKeyDictionary[Node, float] = weakref.WeakKeyDictionary()


READERS = _Readers()


def of(node: Node) -> Any:
    """The store the desk reads `node`'s figures from: its replica's (opened once, and again
    after its connection broke), or its own store (no replica named, or the replica failed
    to open less than RETRY_S ago; each failure is one line in serve's log)."""
    url = replica_url(node)
    if url is None:
        return node.store
    with READERS.lock:
        store = READERS.held.get(node)
        if store is not None and not _broken(store):
            return store
        if store is not None:
            READERS.held.pop(node, None)
            store.close()
        failed = READERS.failed.get(node)
        if failed is not None and time.monotonic() - failed < RETRY_S:
            return node.store
        try:
            store = open_replica(node, url)
        except StoreError as exc:
            from sync.logs import log_line  # the desk's, in `serve`: `stats` loads no logging

            READERS.failed[node] = time.monotonic()
            log_line("figures.replica_unreachable", url=shown_url(url), error=str(exc))
            return node.store
        READERS.failed.pop(node, None)
        READERS.held[node] = store
        weakref.finalize(node, store.close)
        return store


def name(store: Any) -> str:
    """What the desk's figure cache files a store's results under: its database file, or
    its database URL."""
    return str(getattr(store, "path", None) or store.url)


def _broken(store: Any) -> bool:
    conn = getattr(store, "conn", None)
    return bool(conn is not None and (conn.closed or conn.broken))
