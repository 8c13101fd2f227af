"""Statistics at city scale: a generated year for 20 towns and 300 villages (≥ 1,000,000
entries), ingested at the city as weekly syncs would deliver it; then a month's
`stats --by node`, a year's, and `reconcile`, in process and as the real `zhibao` program.

Every entry is encoded and signed by the key of the node that writes it, and every case
follows the state machine (received → accepted → completed → delivered → rated, with fees,
special procedures, and villages' 代办 forwarded to their town). Each town and village
signs a real monthly report on the 3rd of the next month, counted with `tiers.figures`
from the events it has written so far, so `reconcile` must find no mismatch.

    .venv/bin/python bench/stats.py [--scale 1.0] [--dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import random
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import CATALOGUE, GIVEN, SURNAMES, ZHIBAO, _id_no, figure, note, print_machine

from sync import trust
from sync.clock import ZONE, Clock
from sync.ingest import ingest
from sync.protocol.batch import MAX_BATCH_ENTRIES, decode_batch, encode_batch
from sync.protocol.entry import SignedEntry, encode_entry, sign_entry
from sync.protocol.keys import Signer
from tiers.calendar import WorkCalendar
from tiers.cases.machine import Event, fold
from tiers.catalogue import CatalogueItem, parse_catalogue
from tiers.city.reconcile import reconcile
from tiers.city.stats import compute_stats
from tiers.figures import Counts, Facts, facts_of, node_key, parse_period, tally
from tiers.node import create_home
from tiers.published import publish_items
from tiers.reports import REPORT_MONTHLY, SCOPE

CITY = "330782"
TOWNS = [f"{CITY}{t:03d}" for t in range(1, 21)]
VILLAGES = {town: [f"{town}{200 + v:03d}" for v in range(1, 16)] for town in TOWNS}
YEAR = 2025
SCORES = [1] * 60 + [2] * 25 + [3] * 10 + [4] * 3 + [5] * 2


def stamp(moment: datetime) -> str:
    return moment.isoformat()


@dataclass
class Log:
    """One node's log as it is written: seq, prev and the entries not yet synced up."""

    node_id: str
    signer: Signer
    seq: int = 0
    prev: bytes | None = None
    pending: list[SignedEntry] = field(default_factory=list)
    written: list[int] = field(default_factory=list)  # when each pending entry was, of all

    def append(self, kind: str, body: dict[str, Any], at: str) -> int:
        raw = encode_entry(self.node_id, self.seq + 1, self.prev, at, kind, body)
        entry = sign_entry(self.signer, raw)
        self.seq, self.prev = entry.seq, entry.hash
        self.pending.append(entry)
        self.written.append(next(_WRITES))
        return entry.seq

    def take(self) -> list[tuple[int, SignedEntry]]:
        """The pending entries, each with its place in the order all logs were written."""
        taken = list(zip(self.written, self.pending, strict=True))
        self.pending, self.written = [], []
        return taken


_WRITES = itertools.count()  # the order entries were written in, across every log


@dataclass
class Case:
    """A planned case: its steps (time, node, type, body fields), and the events written."""

    case_id: str
    steps: list[tuple[datetime, str, str, dict[str, Any]]]
    events: list[Event] = field(default_factory=list)
    facts: Facts | None = None

    @property
    def done(self) -> bool:
        return len(self.events) == len(self.steps)


class Year:
    """The generator: new cases each working day, their steps in time order, reports."""

    def __init__(self, scale: float, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.scale = scale
        self.cal = WorkCalendar()
        items = parse_catalogue(CATALOGUE.read_bytes(), CATALOGUE.name)
        self.catalogue = {item.code: item for item in items}
        local = [i for i in items if i.decide_tier != "city"]
        self.town_items = [i for i in local if "town" in i.accept_tiers]
        self.village_items = [i for i in local if "village" in i.accept_tiers]
        nodes = [*TOWNS, *itertools.chain(*VILLAGES.values())]
        self.logs = {n: Log(n, Signer(bytes([k % 251 + 1]) * 32)) for k, n in enumerate(nodes)}
        self.heap: list[tuple[datetime, int, Case]] = []
        self.counter = itertools.count()
        self.cases: list[Case] = []
        self.numbers: dict[tuple[str, date], int] = {}

    def _case_id(self, node: str, day: date) -> str:
        n = self.numbers[(node, day)] = self.numbers.get((node, day), 0) + 1
        return f"{node}-{day:%Y%m%d}-{n:04d}"

    def _applicant(self, item: CatalogueItem) -> dict[str, Any]:
        rng = self.rng
        born = date(1940, 1, 1) + timedelta(days=rng.randrange(25_000))
        return {
            "case": {"item_code": item.code, "materials": list(item.materials),
                     "applicant": {"name": rng.choice(SURNAMES) + rng.choice(GIVEN),
                                   "id_no": _id_no(rng, born),
                                   "phone": f"1{rng.choice('3578')}{rng.randrange(10**9):09d}"}},
        }  # fmt: skip

    def _at(self, day: date, hour: int, minute: int) -> datetime:
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZONE)

    def _work(self, town: str, item: CatalogueItem, accepted: datetime,
              steps: list[tuple[datetime, str, str, dict[str, Any]]]) -> datetime:  # fmt: skip
        """Fee, special procedure and completion at the town; returns the completion time."""
        rng, day = self.rng, accepted.date()
        if item.fee_fen:
            steps.append((accepted + timedelta(minutes=3), town, "case.fee_assessed",
                          {"fee_fen": item.fee_fen}))  # fmt: skip
            receipt = f"ICBC-{rng.randrange(10**8):08d}"
            steps.append((accepted + timedelta(minutes=25), town, "case.fee_paid",
                          {"receipt": receipt, "fee_fen": item.fee_fen}))  # fmt: skip
        if not item.promised_days:
            return accepted + timedelta(minutes=40)
        late = rng.random() < 0.08
        used = item.promised_days + rng.randint(1, 3) if late else rng.randint(
            max(1, item.promised_days // 3), item.promised_days)  # fmt: skip
        start = day
        if rng.random() < 0.05:
            pause = self.cal.add_workdays(day, 1)[0]
            resume = self.cal.add_workdays(pause, 3)[0]
            steps.append((self._at(pause, 10, 0), town, "case.suspended", {"reason": "实地勘察"}))
            steps.append((self._at(resume, 10, 0), town, "case.resumed", {}))
            start, used = resume, max(1, used - 1)
        done = self.cal.add_workdays(start, used)[0]
        return self._at(done, 15, rng.randrange(60))

    def _finish(self, holder: str, deliverer: str, done: datetime,
                steps: list[tuple[datetime, str, str, dict[str, Any]]]) -> None:  # fmt: skip
        rng = self.rng
        steps.append((done, holder, "case.completed", {"result": "approved"}))
        when = done + timedelta(minutes=30)
        if deliverer != holder:
            when = self._at(self.cal.add_workdays(done.date(), 1)[0], 10, rng.randrange(50))
        steps.append((when, deliverer, "case.delivered", {"method": "window"}))
        if rng.random() < 0.6:
            steps.append((when + timedelta(minutes=5), deliverer, "case.rated",
                          {"score": rng.choice(SCORES)}))  # fmt: skip

    def open_day(self, day: date) -> None:
        """Plan the cases that begin on `day` at the windows of every town and village."""
        rng = self.rng
        for town in TOWNS:
            for _ in range(max(0, round(rng.gauss(22 * self.scale, 4 * self.scale)))):
                item = rng.choice(self.town_items)
                t0 = self._at(day, 8, 30) + timedelta(minutes=rng.randrange(480))
                steps = [(t0, town, "case.received", self._applicant(item)["case"]),
                         (t0 + timedelta(minutes=2), town, "case.accepted",
                          {"promised_days": item.promised_days})]  # fmt: skip
                self._finish(town, town, self._work(town, item, t0 + timedelta(minutes=2), steps),
                             steps)  # fmt: skip
                self._start(self._case_id(town, day), steps)
            for village in VILLAGES[town]:
                for _ in range(sum(rng.random() < 0.5 * self.scale for _ in range(2))):
                    item = rng.choice(self.village_items)
                    t0 = self._at(day, 8, 30) + timedelta(minutes=rng.randrange(480))
                    taken = self._at(self.cal.add_workdays(day, 1)[0], 9, rng.randrange(50))
                    steps = [(t0, village, "case.received", self._applicant(item)["case"]),
                             (t0 + timedelta(minutes=10), village, "case.forwarded",
                              {"to": town}),
                             (taken, town, "case.taken", {}),
                             (taken + timedelta(minutes=1), town, "case.accepted",
                              {"promised_days": item.promised_days})]  # fmt: skip
                    done = self._work(town, item, taken + timedelta(minutes=1), steps)
                    self._finish(town, village, done, steps)
                    self._start(self._case_id(village, day), steps)

    def _start(self, case_id: str, steps: list[tuple[datetime, str, str, dict[str, Any]]]) -> None:
        assert all(a[0] <= b[0] for a, b in itertools.pairwise(steps)), steps
        case = Case(case_id, steps)
        self.cases.append(case)
        heapq.heappush(self.heap, (steps[0][0], next(self.counter), case))

    def run_until(self, moment: datetime) -> None:
        """Write every planned step before `moment`, in time order, into its node's log."""
        while self.heap and self.heap[0][0] < moment:
            _, _, case = heapq.heappop(self.heap)
            at, node, kind, fields = case.steps[len(case.events)]
            last = case.events[-1] if case.events else None
            body = {"case_id": case.case_id, "after": [last.origin, last.seq] if last else None,
                    **fields}  # fmt: skip
            seq = self.logs[node].append(kind, body, stamp(at))
            case.events.append(Event(node, seq, kind, stamp(at), body))
            if not case.done:
                heapq.heappush(self.heap, (case.steps[len(case.events)][0], next(self.counter),
                                           case))  # fmt: skip

    def report(self, month: str, day: date) -> None:
        """Every town and village signs its figures for `month` (as `report monthly`)."""
        facts = []
        for case in self.cases:
            if case.facts is None and case.events:
                state = fold(case.events)
                assert state is not None and not state.violations, case.case_id
                current = facts_of(state)
                if case.done:
                    case.facts = current
                facts.append(current)
            elif case.facts is not None:
                facts.append(case.facts)
        period = parse_period(month)
        rows = tally(facts, period, self.cal, day, node_key, self.catalogue)
        at = stamp(self._at(day, 8, 30))
        for town in TOWNS:
            for node in [town, *VILLAGES[town]]:
                held = ({n: self.logs[n].seq for n in [town, *VILLAGES[town]]} if node == town
                        else {node: self.logs[node].seq})  # fmt: skip
                body = {"period": month, "scope": SCOPE,  # no parts: as older reports
                        "figures": rows.get(node, Counts()).to_body(), "held": held}  # fmt: skip
                self.logs[node].append(REPORT_MONTHLY, body, at)


def enrol_all(year: Year, city_home: Path, now: datetime) -> None:
    city = create_home(city_home, tier="city", node_id=CITY, name="义乌市行政服务中心",
                       clock=Clock(now=lambda: now))  # fmt: skip
    with city:
        publish_items(city, parse_catalogue(CATALOGUE.read_bytes(), CATALOGUE.name),
                      at="2024-12-20T09:00:00+08:00")  # fmt: skip
        for town in TOWNS:
            body = trust.enrolment_body(town, f"{town} 便民服务中心",
                                        year.logs[town].signer.public.hex(), None)  # fmt: skip
            city.append(trust.ENROLLED, body, at="2024-12-20T10:00:00+08:00")
    for town in TOWNS:
        for village in VILLAGES[town]:
            body = trust.enrolment_body(village, f"{village} 便民服务室",
                                        year.logs[village].signer.public.hex(), None)  # fmt: skip
            year.logs[town].append(trust.ENROLLED, body, "2024-12-21T10:00:00+08:00")


def sync_up(year: Year, city_home: Path, received_at: datetime) -> tuple[int, float]:
    """Every town pushes its subtree's new entries to the city; (entries, seconds)."""
    from tiers.node import open_home

    count, seconds = 0, 0.0
    with open_home(city_home, clock=Clock(now=lambda: received_at)) as city:
        for town in TOWNS:
            entries = [e for n in [town, *VILLAGES[town]] for _, e in year.logs[n].take()]
            for start in range(0, len(entries), MAX_BATCH_ENTRIES):
                batch = encode_batch(entries[start : start + MAX_BATCH_ENTRIES])
                began = time.perf_counter()
                result = ingest(city.store, decode_batch(batch), me=CITY, sender=town,
                                received_at=stamp(received_at))  # fmt: skip
                seconds += time.perf_counter() - began
                assert not result.rejected, result.rejected[:3]
                count += result.applied_total
    return count, seconds


def timed(what: str, work: Any) -> Any:
    began = time.perf_counter()
    value = work()
    figure(what, time.perf_counter() - began, "s")
    return value


def build_year(scale: float, city_home: Path) -> tuple[Year, datetime, int, float]:
    """The generated year, ingested at the city at `city_home` as weekly syncs deliver it:
    (the year, its end, entries ingested, seconds spent ingesting)."""
    year = Year(scale)
    end = datetime(YEAR + 1, 1, 20, tzinfo=ZONE)
    enrol_all(year, city_home, end)
    entries, ingest_seconds = 0, 0.0
    day = date(YEAR, 1, 1)
    while day < end.date():
        if day.day == 3 and (day.year, day.month) > (YEAR, 1):
            previous = day.replace(day=1) - timedelta(days=1)
            year.run_until(year._at(day, 8, 0))
            year.report(f"{previous:%Y-%m}", day)
        if day.year == YEAR and year.cal.is_workday(day):
            year.open_day(day)
        year.run_until(year._at(day + timedelta(days=1), 0, 0))
        if day.weekday() == 6:
            n, s = sync_up(year, city_home, year._at(day, 22, 0))
            entries, ingest_seconds = entries + n, ingest_seconds + s
        day += timedelta(days=1)
    year.run_until(end)
    n, s = sync_up(year, city_home, end - timedelta(hours=1))
    return year, end, entries + n, ingest_seconds + s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="cases per day, 1.0 = ≥1M entries")
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="zhibao-bench-stats-"))
    city_home = base / "city"
    print_machine()
    generate_began = time.perf_counter()
    year, end, entries, ingest_seconds = build_year(args.scale, city_home)
    total_seconds = time.perf_counter() - generate_began
    figure("entries ingested at the city", int(entries))
    figure("cases", len(year.cases))
    figure("ingest (verify + apply + projections)", ingest_seconds, "s")
    figure("ingest rate", entries / ingest_seconds, "entries/s")
    figure("generate + sign + ingest, whole year", total_seconds, "s")
    size = sum(p.stat().st_size for p in city_home.glob("node.db*"))
    figure("city node.db (+wal)", size / 2**20, "MiB")
    from tiers.node import open_home

    with open_home(city_home, clock=Clock(now=lambda: end)) as city:
        june = parse_period(f"{YEAR}-06")
        today = end.date()
        first = timed("stats --by node, one month (in process, first)",
                      lambda: compute_stats(city.store, june, "node", today))  # fmt: skip
        timed("stats --by node, one month (in process, again)",
              lambda: compute_stats(city.store, june, "node", today))  # fmt: skip
        timed(
            "stats --by item, one quarter (in process)",
            lambda: compute_stats(city.store, parse_period(f"{YEAR}-Q2"), "item", today),
        )
        timed(
            "stats --by tier, the year (in process)",
            lambda: compute_stats(city.store, parse_period(str(YEAR)), "tier", today),
        )
        result = timed("reconcile one month (in process)",
                       lambda: reconcile(city, f"{YEAR}-06", now=end))  # fmt: skip
    figure("rows in the month's table", len(first["rows"]))
    figure(
        "June accepted / completed", f"{first['total']['accepted']} / {first['total']['completed']}"
    )
    figure("reconcile findings", json.dumps(result["counts"]))
    figure("reports held for the month", result["reports"])
    for name, argv in [
        ("zhibao stats --by node --period (program)",
         ["stats", "--period", f"{YEAR}-06", "--by", "node", "--json"]),
        ("zhibao reconcile --period (program)", ["reconcile", "--period", f"{YEAR}-06", "--json"]),
    ]:  # fmt: skip
        began = time.perf_counter()
        done = subprocess.run([str(ZHIBAO), *argv, "--home", str(city_home)], capture_output=True,
                              check=True)  # fmt: skip
        figure(name, time.perf_counter() - began, "s")
        assert done.stdout
    if not args.keep and args.dir is None:
        import shutil

        shutil.rmtree(base)
    else:
        note(f"city home kept at {city_home}")


if __name__ == "__main__":
    main()
