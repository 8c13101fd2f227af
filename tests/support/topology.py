"""A small network of real node homes in a temporary directory, enrolment done.

Names and ids are fixed so failures read the same on every run: one city, its towns and
their villages, each in `base/<node id>`. The builder enrols every node the way the CLI
does (`node.enrolled` in the parent's log) and then hands the enrolment records down as a
pull would (relevance + ingest, no HTTP), so each node knows every key it needs: its own,
its ancestors' and its children's. Logs of villages are not yet at the city: that is what
the tests replicate.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sync import relevance, trust
from sync.clock import Clock
from sync.ingest import ingest
from sync.node import Node
from sync.protocol.batch import decode_batch, encode_batch
from sync.protocol.ids import is_within, parent_of, tier_of
from tests.support.postgres import (
    another_database,
    city_store,
    database_of,
    move_city_store,
    store_env,
)
from tiers.catalogue import parse_catalogue
from tiers.node import create_home, open_home
from tiers.published import publish_items

# the shared service catalogue, as shipped with the package (tests import it by path)
SHIPPED_CATALOGUE = Path(__file__).resolve().parents[2] / "tiers" / "data" / "catalogue.csv"

CITY = "330782"
TOWN = "330782001"
TOWN_B = "330782002"
VILLAGE = "330782001201"
VILLAGE_2 = "330782001202"
VILLAGE_B = "330782002201"  # a village of the sibling town

NAMES = {
    CITY: "义乌市行政服务中心",
    TOWN: "稠城街道便民服务中心",
    TOWN_B: "北苑街道便民服务中心",
    VILLAGE: "下骆宅村便民服务室",
    VILLAGE_2: "后宅村便民服务室",
    VILLAGE_B: "前洪村便民服务室",
}


def name_of(node_id: str) -> str:
    return NAMES.get(node_id, f"node {node_id}")


@dataclass
class Topology:
    """Homes by node id, the public keys each was created with, and the city's PostgreSQL
    database (None: its node.db)."""

    base: Path
    homes: dict[str, Path] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    store: str | None = None

    def home(self, node_id: str) -> Path:
        return self.homes[node_id]

    @contextmanager
    def open(self, node_id: str, *, clock: Clock | None = None) -> Iterator[Node]:
        """The node at `node_id`'s home, opened as the CLI opens it, closed afterwards."""
        node = open_home(self.homes[node_id], clock=clock)
        try:
            yield node
        finally:
            node.close()


def hand_down(parent: Node, child: Node) -> int:
    """Give `child` what concerns it from `parent`, as a pull would; the count applied."""
    applied = 0
    while True:
        entries, more = relevance.select_for(
            parent.store, child.node_id, child.store.max_seqs(), 5000
        )
        if not entries:
            return applied
        result = ingest(
            child.store,
            decode_batch(encode_batch(entries)),
            me=child.node_id,
            sender=parent.node_id,
            received_at=child.clock.stamp(),
        )
        assert not result.rejected, result.rejected
        applied += result.applied_total
        if not more:
            return applied


def hand_up(child: Node, parent: Node) -> dict[str, object]:
    """Give `parent` what it lacks of `child`'s subtree, as a push would (in process); the
    ingest result as JSON (nothing refused is asserted: hostile tests look at it)."""
    entries = [
        entry
        for origin in sorted(child.store.heads(), key=lambda o: (len(o), o))
        if is_within(origin, child.node_id)
        for entry in child.store.entries(origin, parent.store.head(origin)[0])
    ]
    result = ingest(
        parent.store,
        decode_batch(encode_batch(entries)),
        me=parent.node_id,
        sender=child.node_id,
        received_at=parent.clock.stamp(),
    )
    return result.to_json()


def create_node(
    base: Path, node_id: str, root_key: str | None, *, store: str | None = None
) -> Node:
    """A fresh home at `base/<node_id>` (as `zhibao init` makes it), left open; a city's
    store in database `store` when given, else as `city_store()` says."""
    tier = tier_of(node_id)
    return create_home(
        base / node_id,
        tier=tier,
        node_id=node_id,
        name=name_of(node_id),
        parent_id=parent_of(node_id),
        root_key=root_key,
        store=(store or city_store()) if tier == "city" else None,
    )


def enrol(parent: Node, child: Node) -> None:
    """`zhibao node enroll` of `child` by `parent`."""
    seal = child.seal.public_key().public_bytes_raw().hex()
    body = trust.enrolment_body(child.node_id, child.config.name, child.signer.public.hex(), seal)
    parent.append(trust.ENROLLED, body)


def build_topology(
    base: Path, nodes: Iterable[str] = (CITY, TOWN, VILLAGE), *, store: str | None = None
) -> Topology:
    """Create, enrol and introduce `nodes` (parents are added when missing); the city's
    store in database `store` when given, else as `city_store()` says."""
    wanted: set[str] = set()
    for node_id in nodes:
        current: str | None = node_id
        while current is not None:
            wanted.add(current)
            current = parent_of(current)
    order = sorted(wanted, key=lambda n: (len(n), n))
    topology = Topology(base, store=store or city_store())
    opened: dict[str, Node] = {}
    try:
        for node_id in order:
            root = opened[CITY].config.public_key if node_id != CITY else None
            node = opened[node_id] = create_node(base, node_id, root, store=topology.store)
            topology.homes[node_id] = node.home
            topology.keys[node_id] = node.config.public_key
            parent = parent_of(node_id)
            if parent is not None:
                enrol(opened[parent], node)
        for node_id in order:  # top-down, so each parent already holds its ancestors' records
            parent = parent_of(node_id)
            if parent is not None:
                hand_down(opened[parent], opened[node_id])
    finally:
        for node in opened.values():
            node.close()
    return topology


def append_notes(node: Node, count: int, *, start: int = 0, tag: str = "", pad: int = 0) -> None:
    """Append `count` entries in one transaction (what a busy day leaves behind); `pad`
    makes each about that many bytes bigger (big entries fill a push batch sooner)."""
    with node.store.transaction():
        for n in range(start, start + count):
            body: dict[str, object] = {"n": n, "tag": tag}
            if pad:
                body["pad"] = "x" * pad
            node.append("test.note", body)


def copy_topology(template: Topology, base: Path) -> Topology:
    """The same network (same keys, same logs) in new homes under `base`; a city on
    PostgreSQL gets a copy of the template's database, dropped with the test's own."""
    store = None
    if template.store is not None:
        store = another_database(store_env() or template.store,
                                 template=database_of(template.store))  # fmt: skip
    copy = Topology(base, keys=dict(template.keys), store=store)
    for node_id, home in template.homes.items():
        copy.homes[node_id] = Path(shutil.copytree(home, base / node_id))
        if store is not None and tier_of(node_id) == "city":
            move_city_store(copy.homes[node_id], store)
    return copy


def build_catalogued(base: Path) -> Topology:
    """City, town and village enrolled and introduced, the shipped catalogue published by
    the city and handed down (what the materials tests start from)."""
    net = build_topology(base, (CITY, TOWN, VILLAGE))
    items = parse_catalogue(SHIPPED_CATALOGUE.read_bytes(), SHIPPED_CATALOGUE.name)
    with net.open(CITY) as city, net.open(TOWN) as town, net.open(VILLAGE) as village:
        publish_items(city, items)
        hand_down(city, town)
        hand_down(town, village)
    return net
