"""Shared fixtures for the case tests: a catalogue, nodes with a fixed clock, log copying."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sync.clock import ZONE, Clock
from sync.node import Node
from sync.protocol.entry import SignedEntry
from sync.store import Store
from tests.support.postgres import city_store
from tiers.catalogue import CatalogueItem
from tiers.node import create_home, extensions
from tiers.published import publish_items

CITY, TOWN, VILLAGE = "330782", "330782001", "330782001201"
NOW = datetime(2025, 10, 9, 10, 0, tzinfo=ZONE)

# A1: a town's 承诺件; B2: received in villages, accepted by towns, decided by the city;
# C3: a town's 即办件.
ITEMS = (
    CatalogueItem("A1", "居住证", "公安", "promised", 5, 20, 1050, ("身份证",), ("town", "city"),
                  "town"),
    CatalogueItem("B2", "低保", "民政", "forward", 10, 30, 0, ("户口本",), ("village", "town"),
                  "city"),
    CatalogueItem("C3", "证明", "民政", "immediate", 0, None, 0, (), ("town",), "town"),
)  # fmt: skip

CATALOGUE_CSV = (
    "code,name,department,kind,promised_days,statutory_days,fee,materials,accept_tiers,"
    "decide_tier\n"
    "A1,居住证,公安,承诺,5,20,10.50,身份证,town;city,town\n"
    "B2,低保,民政,上报,10,30,,户口本,village;town,city\n"
    "C3,证明,民政,即办,0,,,,town,town\n"
)


def fixed_clock(now: datetime = NOW) -> Clock:
    return Clock(now=lambda: now)


@dataclass
class Network:
    """A city, one of its towns and one of that town's villages, each with its own home."""

    city: Node
    town: Node
    village: Node

    def sync(self, *pairs: tuple[Node, Node]) -> None:
        """Copy logs src → dst for each pair, as replication would (no signature checks)."""
        for src, dst in pairs:
            copy_logs(src.store, dst.store)

    def up(self) -> None:
        self.sync((self.village, self.town), (self.town, self.city))

    def down(self) -> None:
        self.sync((self.city, self.town), (self.town, self.village))


@contextmanager
def network(tmp_path: Path, now: datetime = NOW, *, durable: bool = True) -> Iterator[Network]:
    """Three nodes sharing the catalogue `ITEMS`, published by the city; closed afterwards.

    `durable=False` turns off fsync (for tests that commit thousands of times and do not
    test durability).
    """
    with ExitStack() as stack:
        city = create_home(tmp_path / "city", tier="city", node_id=CITY, name="义乌市",
                           clock=fixed_clock(now), store=city_store())  # fmt: skip
        stack.callback(city.close)
        root = city.config.public_key
        town = create_home(tmp_path / "town", tier="town", node_id=TOWN, name="稠城",
                           parent_id=CITY, root_key=root, clock=fixed_clock(now))  # fmt: skip
        stack.callback(town.close)
        village = create_home(tmp_path / "village", tier="village", node_id=VILLAGE,
                              name="下骆宅", parent_id=TOWN, root_key=root,
                              clock=fixed_clock(now))  # fmt: skip
        stack.callback(village.close)
        if not durable:
            for node in (city, town, village):
                if node.config.store is None:  # SQLite (a test database's is off already)
                    node.store.execute("PRAGMA synchronous=OFF")
        publish_items(city, list(ITEMS), at="2025-01-02T09:00")
        net = Network(city, town, village)
        net.down()
        yield net


@contextmanager
def town_node(tmp_path: Path, now: datetime = NOW) -> Iterator[Node]:
    """A lone town holding `ITEMS` (published locally, for standalone use)."""
    city = create_home(tmp_path / "city", tier="city", node_id=CITY, name="义乌市",
                       store=city_store())  # fmt: skip
    root = city.config.public_key
    city.close()
    town = create_home(tmp_path / "town", tier="town", node_id=TOWN, name="稠城",
                       parent_id=CITY, root_key=root, clock=fixed_clock(now))  # fmt: skip
    try:
        publish_items(town, list(ITEMS), at="2025-01-02T09:00")
        yield town
    finally:
        town.close()


def copy_logs(src: Store, dst: Store) -> None:
    """Append to `dst` every entry `src` holds beyond `dst`'s heads, one origin at a time."""
    for origin, (seq, _hash) in src.heads().items():
        held, _ = dst.head(origin)
        if held >= seq:
            continue
        fresh = src.entries(origin, after=held)
        with dst.transaction():
            dst.insert(fresh, "2025-10-09T10:00:00+08:00")


def case_entries(store: Store, origin: str) -> list[SignedEntry]:
    """The case entries of one origin's log held in `store`, in seq order."""
    return [e for e in store.iter_all(origin) if e.type.startswith("case.")]


def fresh_store(path: Path) -> Store:
    """A store with every tier projection, as a node would open it."""
    return Store(path, extensions=extensions())


def insert_one(store: Store, entry: SignedEntry) -> None:
    """Apply one entry in its own transaction (arrival order is the caller's)."""
    with store.transaction():
        store.insert([entry], "2025-10-09T10:00:00+08:00")


def case_row(store: Store, case_id: str) -> dict[str, Any]:
    """The projected `cases` row as a dict (on either engine)."""
    if isinstance(store, Store):  # SQLite (apsw)
        cursor = store.conn.execute("SELECT * FROM cases WHERE case_id = ?", (case_id,))
        names = [d[0] for d in cursor.getdescription()]
        rows = list(cursor)
    else:  # a city on PostgreSQL (psycopg)
        found = store.conn.execute("SELECT * FROM cases WHERE case_id = %s", (case_id,))
        names = [d.name for d in found.description or ()]
        rows = found.fetchall()
    assert len(rows) == 1, rows
    return dict(zip(names, rows[0], strict=True))


def count_entries(store: Store) -> int:
    return int(store.query("SELECT count(*) FROM entries")[0][0])


def body_of(entry: SignedEntry) -> dict[str, Any]:
    return json.loads(entry.raw)["body"]  # type: ignore[no-any-return]


def forward_round_trip(net: Network) -> str:
    """B2 received at the village, accepted by the town, decided by the city, delivered and
    rated at the village; every log copied everywhere afterwards. Returns the case id."""
    from tiers.cases import service

    v, t, c = net.village, net.town, net.city
    case_id = service.receive(v, "B2", service.Applicant("李四", phone="139"), ["户口本"],
                              at="2025-09-26T09:30")  # fmt: skip
    service.forward(v, case_id, at="2025-09-26T16:00")
    net.up()
    service.accept(t, case_id, at="2025-09-29T10:00")
    service.forward(t, case_id, note="请市民政局审批", at="2025-09-30T11:00")
    net.up()
    service.accept(c, case_id, at="2025-10-09T09:00")
    service.suspend(c, case_id, "实地勘察", at="2025-10-09T15:00")
    service.resume(c, case_id, at="2025-10-13T09:00")
    service.complete(c, case_id, "approved", at="2025-10-14T10:00")
    net.down()
    service.deliver(v, case_id, "window", at="2025-10-15T10:00")
    service.rate(v, case_id, 1, "很好", at="2025-10-15T10:05")
    net.up()
    net.down()
    return case_id
