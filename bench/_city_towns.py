"""The city at scale (bench/city_scale.py): the generated town homes, each holding its
villages' logs (hop 1), made once per `--dir` and reused.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stats import CITY, TOWNS, VILLAGES, YEAR, Year

from sync import proofs, trust
from sync.clock import ZONE
from sync.ingest import ingest
from sync.protocol.batch import MAX_BATCH_ENTRIES, decode_batch, encode_batch
from sync.protocol.keys import Signer
from tiers.node import create_home

# entries of a 12-month year per unit of Year's scale, from generated cities (39 K town
# entries at scale 0.05; 1,041,432 entries in all at 0.951; 4,251,069 at 5.716): the
# villages' grow with the scale until it is 2 (a village opens at most 2 cases a day), then
# stop; the towns' grow with it up to 1, then as scale^TOWN_POWER (3.71 M at 5.716, where a
# linear rule, asked 5 M, made 4.25 M)
TOWN_ENTRIES, TOWN_POWER, VILLAGE_ENTRIES, FLOOR_PER_MONTH = 800_000, 0.88, 269_000, 320
GENERATED = "generated.json"
ORDER = "written"  # how a town took its entries (`deliver`); towns made otherwise are made anew


def entries_at(scale: float, months: int) -> float:
    """About how many entries `Year(scale)` writes in `months` months of cases."""
    towns = TOWN_ENTRIES * (scale if scale <= 1 else scale**TOWN_POWER)
    year = min(scale, 2.0) * VILLAGE_ENTRIES + towns
    return year * months / 12 + FLOOR_PER_MONTH * months + 300


def scale_for(entries: int, months: int) -> float:
    """The Year scale that writes about `entries` entries in `months` months of cases."""
    low, high = 0.0, 1.0
    while entries_at(high, months) < entries:
        high *= 2
    for _ in range(60):  # entries_at grows with the scale: halve the interval
        middle = (low + high) / 2
        low, high = (middle, high) if entries_at(middle, months) < entries else (low, middle)
    return high


def generate(towns_dir: Path, entries: int, months: int) -> dict[str, Any]:
    """The town homes of a generated city; returns what was made (also kept in
    DIR/towns/generated.json)."""
    began = time.perf_counter()
    year = Year(scale_for(entries, months))
    placeholder = Signer.generate().public.hex()  # each run pins its own city's key
    towns = {}
    for town in TOWNS:
        towns[town] = create_home(towns_dir / town, tier="town", node_id=town,
                                  name=f"{town} 便民服务中心", parent_id=CITY,
                                  root_key=placeholder)  # fmt: skip
        year.logs[town].signer = towns[town].signer  # the town's own log is signed by its key
        towns[town].store.defer_projections()  # projected once, at the end (catch_up)
        for village in VILLAGES[town]:
            body = trust.enrolment_body(village, f"{village} 便民服务室",
                                        year.logs[village].signer.public.hex(), None)  # fmt: skip
            year.logs[town].append(trust.ENROLLED, body, "2024-12-21T10:00:00+08:00")
    hop1 = Hop1()
    end = datetime(YEAR + months // 12, months % 12 + 1, 20, tzinfo=ZONE)
    last_day = date(YEAR + months // 12, months % 12 + 1, 1)  # cases open before this day
    day = date(YEAR, 1, 1)
    try:
        while day < end.date():
            if day.day == 3 and date(YEAR, 1, 31) < day <= last_day + timedelta(days=2):
                previous = day.replace(day=1) - timedelta(days=1)
                year.run_until(year._at(day, 8, 0))
                year.report(f"{previous:%Y-%m}", day)
                forget_closed(year)
            if day < last_day and year.cal.is_workday(day):
                year.open_day(day)
            year.run_until(year._at(day + timedelta(days=1), 0, 0))
            if day.weekday() == 6:
                deliver(year, towns, year._at(day, 22, 0), hop1)
            day += timedelta(days=1)
        year.run_until(end)
        deliver(year, towns, end - timedelta(hours=1), hop1)
        for node in towns.values():
            node.store.catch_up()
    finally:
        for node in towns.values():
            node.close()
    made = {"entries": entries, "months": months, "scale": year.scale,
            "held": sum(log.seq for log in year.logs.values()), "cases": len(year.cases),
            "hop1_entries": hop1.entries, "hop1_seconds": hop1.seconds,
            "generate_seconds": time.perf_counter() - began, "order": ORDER}  # fmt: skip
    (towns_dir / GENERATED).write_text(json.dumps(made, indent=1))
    return made


@dataclass
class Hop1:
    entries: int = 0
    seconds: float = 0.0


def forget_closed(year: Year) -> None:
    """Drop the events of closed cases once their facts are kept (a year of 5 M entries
    would not fit in memory otherwise): `report` reads only the facts of those."""
    for case in year.cases:
        if case.facts is not None and case.steps:
            case.events.clear()
            case.steps.clear()


def deliver(year: Year, towns: dict[str, Any], at: datetime, hop1: Hop1) -> None:
    """A week's entries into the town homes in the order they were written: each village's
    as a push (cut where the town's next own entry was written), the town's own as its node
    wrote them (with the signature checkpoints its ingest would record). So a town holds a
    village's forward before its own acceptance that follows it, as a real town must (it
    cannot take a case it has not received); a week's own entries first, then the villages'
    (before 2026-12-03), put most acceptances ahead of what they follow."""
    stamp = at.isoformat()
    for town in TOWNS:
        store = towns[town].store
        written = sorted(
            ((order, node, entry) for node in [town, *VILLAGES[town]]
             for order, entry in year.logs[node].take()),
            key=lambda w: w[0],
        )  # fmt: skip
        for node, group in itertools.groupby(written, key=lambda w: w[1]):
            run = [entry for _, _, entry in group]
            if node == town:
                with store.transaction():
                    store.insert(run, stamp)
                    for seq in proofs.checkpoints(run, towns[town].signer.public)[1]:
                        store.mark_signed(town, seq)
                continue
            for start in range(0, len(run), MAX_BATCH_ENTRIES):
                runs = decode_batch(encode_batch(run[start : start + MAX_BATCH_ENTRIES]))
                began = time.perf_counter()
                result = ingest(store, runs, me=town, sender=node, received_at=stamp)
                hop1.seconds += time.perf_counter() - began
                assert not result.rejected, result.rejected[:3]
                hop1.entries += result.applied_total


def reuse(towns_dir: Path, entries: int, months: int) -> dict[str, Any] | None:
    path = towns_dir / GENERATED
    if not path.exists():
        return None
    made = json.loads(path.read_text())
    wanted = (entries, months, ORDER)
    return made if (made["entries"], made["months"], made.get("order")) == wanted else None
