"""The one place the desk computes figures: a period's `compute_stats` for a grouping, and
the monthly trend the overview charts. Pages call this; the caching lives here alone.

The cache (in memory, per database file, at most `MAX_CACHED` results, least recently used
forgotten first) keys a result by (database, period, grouping, the day open cases are judged
at — `tiers.figures.judged_as_of`: yesterday during the period, its last day once it is
over, the only way `compute_stats` depends on today — the reader's language, node.toml's
settings) and keeps beside it the *data version* it was computed at, the cases its figures
were counted from (`case_facts` rows matching `tiers.case_facts.FACTS_WHERE`, as hashes)
and a digest of the period's complaint rows:

- the data version is (`max(entries.id)`, the sum of the heads' seqs, the lazy projections'
  cursor `meta.projected`). Every table `compute_stats` reads is a projection of the log: the
  lazy ones (case facts, cases, complaints, catalogue, calendar) change only with the cursor,
  which moves in the same transaction (on PostgreSQL only under the exclusive write lock,
  when no append is in flight); the eager one (enrolled names, sync.trust) changes in the
  transaction that stores an entry — which raises `max(id)` on SQLite (one writer: ids
  commit in order) and a head on PostgreSQL (it holds every log whole; with two fronts an
  entry may commit after one with a higher id, leaving `max(id)` where it was). Same
  version, same tables: the result is served as it is.
- when the version moved, the entries stored or projected since say what may have changed:
  those past the old cursor (an entry still in flight when it was read had a higher id).
  Only case events (`case.*`, each naming its case) and liveness (`sync.alive`), at most
  `MAX_CHANGED` of them: only those cases' rows can differ. If none of them was among the
  period's cases, none of their rows matches the period now, and the period's complaint
  rows (which read their cases' items) are the same, the rows the figures are counted from
  are the same, so the result is kept, filed under the new version (a past month a sync did
  not touch is not recomputed). Anything else — another entry type (catalogue, calendar,
  enrolment, complaint, fork, revocation…), a case entry naming no case, more entries —
  recomputes.
- a result is stored only when the version read before computing it equals the version read
  after (nothing committed in between), so it always matches the version it is filed under.
  While a `Warmer` runs for the database, a page's result is filed without its cases (one
  more query of ~0.5-1 s a month at a 1M-entry city) and the warmer reads them at the same
  version soon after; a result whose cases were not read before the data changed is
  computed again.

So a figure served from the cache is exactly what `compute_stats` would give now: never
stale, and the page need not say how old it is. `Warmer` (started by the desk when it opens
the node) keeps recently asked results warm on its own connection after the data changes.
node.toml `desk_figures_cache = false` turns both off (every page computes afresh; the
benchmark's "before", bench/desk.py).
"""

from __future__ import annotations

import hashlib
import json
import threading
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sync.logstore import LogStore
from sync.node import Node
from sync.protocol import i18n
from tiers import reader
from tiers.case_facts import FACTS_WHERE
from tiers.city import stats as city_stats
from tiers.desk import users
from tiers.figures import Period, judged_as_of, month_of, parse_period
from tiers.node_loop import NodeLoop

# The figures the overview's trend charts, in the order they are drawn.
TREND = ("accepted", "completion_rate", "on_time_rate", "satisfaction_rate")
MAX_CACHED = 128  # results kept (a month by node at a 1M-entry city: ~300 rows, ~200 KB,
# and its ~20,000 cases' hashes, 160 KB)
MAX_CHANGED = 20_000  # entries since a result was computed, read to see what they change
MAX_WARM = 48  # recently asked results the warmer keeps warm
WARM_EVERY = 2.0  # seconds between the warmer's looks at the data version
MAX_BACKOFF = 60.0  # seconds: the longest pause of the warmer after failures in a row
# Entry types that change nothing compute_stats reads but their case's rows; none at all.
CASE_ONLY = ("case.",)
IRRELEVANT = frozenset({"sync.alive"})
SETTING = "desk_figures_cache"

Key = tuple[str, str, str, str, str, str]  # (database, period, by, as of, language, settings)
Version = tuple[int, int, int]  # (max(entries.id), sum of heads' seqs, cursor): see above
UNSETTLED: Version = (-1, -1, -1)  # the data changed while a result was computed

i18n.register(
    {
        "desk.warmer_failed": (
            "the desk's figures could not be kept computed ({error}); trying again in {seconds} s",
            "工作台未能预先计算统计（{error}）；{seconds} 秒后重试",
        ),
        "desk.warmer_stopped": (
            "the desk's figures are not kept computed: no connection of its own ({error})",
            "工作台不预先计算统计：无法另开数据库连接（{error}）",
        ),
    }
)

_COMPLAINT_ROWS = (
    "SELECT k.*, c.item_code FROM complaints k LEFT JOIN cases c ON c.case_id = k.case_id "
    "WHERE k.filed_on <= :e AND (k.closed_on IS NULL OR k.closed_on >= :s) ORDER BY k.complaint_id"
)


@dataclass
class _Held:
    version: Version
    cases: array[int] | None  # hash() of the counted cases' ids, sorted; None: not read yet
    complaints: bytes
    result: dict[str, Any]


@dataclass
class _Cache:
    held: OrderedDict[Key, _Held] = field(default_factory=OrderedDict)
    asked: OrderedDict[Key, tuple[Period, str, str]] = field(default_factory=OrderedDict)
    busy: dict[Key, threading.Event] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    computed: int = 0  # compute_stats calls made (tests and bench/desk.py read it)
    warmed: set[str] = field(default_factory=set)  # databases a Warmer is running for


CACHE = _Cache()


def month(node: Node, asked: str | None, by: str) -> dict[str, Any]:
    """`zhibao stats --by BY --period ASKED --json` (this month when ASKED is None/empty)."""
    today = node.clock.now().date()
    period = parse_period(asked) if asked else month_of(today)
    return stats(node, period, by, today)


def months_back(last: Period, count: int) -> list[Period]:
    """The `count` months ending with the month `last` starts in, oldest first."""
    year, number = last.start.year, last.start.month
    labels = []
    for _ in range(count):
        labels.append(f"{year:04d}-{number:02d}")
        year, number = (year, number - 1) if number > 1 else (year - 1, 12)
    return [parse_period(label) for label in reversed(labels)]


def trend(node: Node, asked: str | None, count: int = 12) -> list[dict[str, Any]]:
    """The network's totals for each of the `count` months up to ASKED (this month when
    None), oldest first: {"period", "received", "accepted", "completion_rate",
    "on_time_rate", "satisfaction_rate"} — each month's `stats --json` "total" row."""
    today = node.clock.now().date()
    last = parse_period(asked) if asked else month_of(today)
    points = []
    for period in months_back(last, count):
        whole = _stats(node, period, "tier", today)["total"]  # read, not kept: no copy
        points.append({"period": period.label, "received": whole["received"],
                       **{key: whole[key] for key in TREND}})  # fmt: skip
    return points


# --- the cache ---------------------------------------------------------------------------


def stats(node: Node, period: Period, by: str, today: date) -> dict[str, Any]:
    """`compute_stats(node.store, period, by, today, settings)`, from the cache when the
    data it reads has not changed since (see the module doc); a copy the caller may keep."""
    return deepcopy(_stats(node, period, by, today))


def _stats(node: Node, period: Period, by: str, today: date, *,
           background: bool = False) -> dict[str, Any]:  # fmt: skip
    """`stats` without the copy: the caller must not change what it gets. A page leaves
    reading the counted cases to the warmer, when one runs (`background`: it is the warmer)."""
    store, settings = reader.of(node), node.config.settings  # a replica's, when named
    if settings.get(SETTING, True) is False:
        return city_stats.compute_stats(store, period, by, today, settings)
    lang = i18n.locale()
    key: Key = (reader.name(store), period.label, by, judged_as_of(period, today), lang,
                json.dumps(settings, sort_keys=True, default=str))  # fmt: skip
    while True:
        with CACHE.lock:
            CACHE.asked[key] = (period, by, lang)
            CACHE.asked.move_to_end(key)
            while len(CACHE.asked) > MAX_WARM:
                CACHE.asked.popitem(last=False)
            held = CACHE.held.get(key)
            running = CACHE.busy.get(key)
            if running is None:
                CACHE.busy[key] = threading.Event()
                break
        running.wait()  # someone (the warmer) computes this very result: take theirs
    try:
        found = _still_good(store, period, held) if held is not None else None
        if found is None:
            with CACHE.lock:
                later = not background and reader.name(store) in CACHE.warmed
            found = _compute(store, settings, period, by, today, cases=not later)
        with CACHE.lock:
            if found.version != UNSETTLED:
                CACHE.held[key] = found
                CACHE.held.move_to_end(key)
                while len(CACHE.held) > MAX_CACHED:
                    CACHE.held.popitem(last=False)
        return found.result
    finally:
        with CACHE.lock:
            CACHE.busy.pop(key).set()


def data_version(store: LogStore) -> Version:
    """(`max(entries.id)`, the sum of the heads' seqs, the lazy projections' cursor): what
    moves when a table compute_stats reads may have changed (see the module doc)."""
    row = store.query(
        "SELECT (SELECT coalesce(max(id), 0) FROM entries), "
        "(SELECT coalesce(sum(seq), 0) FROM heads), "
        "(SELECT coalesce(CAST(value AS INTEGER), 0) FROM meta WHERE key = 'projected')"
    )[0]
    return int(row[0]), int(row[1]), int(row[2] or 0)


def _params(period: Period) -> dict[str, str]:
    return {"s": period.start.isoformat(), "e": period.end.isoformat()}


def _cases(store: LogStore, period: Period) -> array[int]:
    """The (hashed) ids of the cases whose rows the period's figures are counted from."""
    sql = f"SELECT case_id FROM case_facts WHERE {FACTS_WHERE}"
    return array("q", sorted({hash(case_id) for (case_id,) in store.query(sql, _params(period))}))


def _among(cases: array[int], case_id: str) -> bool:
    """Whether `case_id` hashes like one of `cases` (a hash shared by another case only
    says yes wrongly, and costs a recomputation, never a stale figure)."""
    wanted = hash(case_id)
    at = bisect_left(cases, wanted)
    return at < len(cases) and cases[at] == wanted


def _complaints(store: LogStore, period: Period) -> bytes:
    """A digest of the period's complaint rows and their cases' items (few: read whole)."""
    digest = hashlib.blake2b(digest_size=32)
    for row in store.query(_COMPLAINT_ROWS, _params(period)):
        digest.update(repr(row).encode())
    return digest.digest()


def _changed_cases(store: LogStore, old: Version, new: Version) -> set[str] | None:
    """The cases named by the entries stored or projected between the versions `old` and
    `new`; None when something else may have changed too."""
    if any(now < then for now, then in zip(new, old, strict=True)):
        return None  # not this database's history going forward: trust nothing
    since = min(old[0], old[2])  # the old cursor: every entry stored or projected since
    rows = store.query(
        "SELECT type, json_extract(CAST(raw AS TEXT), '$.body.case_id') FROM entries "
        "WHERE id > ? ORDER BY id LIMIT ?",
        (since, MAX_CHANGED + 1),
    )
    if len(rows) > MAX_CHANGED:
        return None
    cases = set()
    for kind, case_id in rows:
        if kind in IRRELEVANT:
            continue
        if not kind.startswith(CASE_ONLY) or not isinstance(case_id, str):
            return None
        cases.add(case_id)
    return cases


def _still_good(store: LogStore, period: Period, held: _Held) -> _Held | None:
    """`held`, filed under the current version, when its figures are still exact; else None."""
    now = data_version(store)
    if now == held.version:
        return held
    if held.cases is None:  # the warmer had not read them before the data changed
        return None
    changed = _changed_cases(store, held.version, now)
    if changed is None or any(_among(held.cases, case_id) for case_id in changed):
        return None
    if changed:
        matching = store.query(
            "SELECT count(*) FROM case_facts WHERE case_id IN (SELECT value FROM json_each(:c)) "
            f"AND ({FACTS_WHERE})",
            {"c": json.dumps(sorted(changed)), **_params(period)},
        )[0][0]
        if matching:
            return None
    if _complaints(store, period) != held.complaints or data_version(store) != now:
        return None
    return _Held(now, held.cases, held.complaints, held.result)


def _compute(store: LogStore, settings: dict[str, Any], period: Period, by: str, today: date, *,
             cases: bool) -> _Held:  # fmt: skip
    before = data_version(store)
    counted = _cases(store, period) if cases else None
    complaints = _complaints(store, period)
    result = city_stats.compute_stats(store, period, by, today, settings)
    with CACHE.lock:
        CACHE.computed += 1
    after = data_version(store)
    return _Held(before if before == after else UNSETTLED, counted, complaints, result)


def _read_cases(store: LogStore) -> None:
    """Read the counted cases of the results filed without them, at this database's current
    version (the warmer, after the pages: so a page does not wait for them)."""
    with CACHE.lock:
        lacking = [(key, held) for key, held in CACHE.held.items()
                   if key[0] == reader.name(store) and held.cases is None]  # fmt: skip
    for key, held in lacking:
        if data_version(store) != held.version:
            continue  # too late: the next ask computes it again
        cases = _cases(store, parse_period(key[1]))
        if data_version(store) != held.version:
            continue
        with CACHE.lock:
            if CACHE.held.get(key) is held:
                CACHE.held[key] = _Held(held.version, cases, held.complaints, held.result)


def forget() -> None:
    """Drop every cached result (tests; a restored or rebuilt database)."""
    with CACHE.lock:
        CACHE.held.clear()
        CACHE.asked.clear()


# --- warming -----------------------------------------------------------------------------


class Warmer(NodeLoop):
    """A thread with its own connection (`open_node`) that, every `every` seconds, brings
    this month's overview and trend (in Chinese) and the `MAX_WARM` results asked last up
    to the data version and the day, so a page after a sync, or the next morning, finds them
    computed; idle while the node has no desk user. `serve` starts it with the server, so
    the first reader finds this month's figures ready. `stop` ends it."""

    thread_name = "desk-figures"
    stopped_key = "desk.warmer_stopped"
    failed_key = "desk.warmer_failed"

    def __init__(self, open_node: Callable[[], Node], every: float = WARM_EVERY) -> None:
        self.warmed = threading.Event()  # set after each pass (tests wait on it)
        self._seen: tuple[Version, date] | None = None
        self._warming: str | None = None
        super().__init__(open_node, every, MAX_BACKOFF)

    def begin(self, node: Node) -> bool:
        if node.config.settings.get(SETTING, True) is False:
            return False
        self._warming = reader.name(reader.of(node))  # the store the pages read (a replica's?)
        with CACHE.lock:
            CACHE.warmed.add(self._warming)
        return True

    def step(self, node: Node) -> float | None:
        if not users.anyone(node.store):  # nobody can read the desk: no figures
            return self._every * 5
        now = (data_version(reader.of(node)), node.clock.now().date())
        if now != self._seen:
            self._warm(node)
            self._seen = now
        _read_cases(reader.of(node))
        self.warmed.set()
        return None

    def end(self, node: Node) -> None:
        if self._warming is not None:
            with CACHE.lock:
                CACHE.warmed.discard(self._warming)

    def _warm(self, node: Node) -> None:
        with i18n.speaking("zh"):
            today = node.clock.now().date()
            _stats(node, month_of(today), "node", today, background=True)
            for period in months_back(month_of(today), 12):
                _stats(node, period, "tier", today, background=True)
        with CACHE.lock:
            asked = [wanted for key, wanted in CACHE.asked.items()
                     if key[0] == reader.name(reader.of(node))]  # fmt: skip
        today = node.clock.now().date()
        for period, by, lang in reversed(asked):  # the latest asked first
            if self._stop.is_set():
                return
            with i18n.speaking(lang):
                _stats(node, period, by, today, background=True)
