"""The checks a store move (tiers.store_move) passes before it switches: the copy on
PostgreSQL holds what node.db holds, and the projections made again there from the log
say what node.db's say.

- entries: the same count;
- log_verify: `log verify` on the target finds nothing (a signature the database cannot
  check: an entry edited in node.db with its hash made again is named by origin and seq);
- heads: the same (seq, hash) per origin;
- quarantine: the same entries set aside (the copy brought node.db's rows; any more would
  be an entry the target refused where node.db took it);
- tables: every rebuilt projection equal to node.db's, row for row (compared as a multiset:
  each row's digest summed, so neither engine's collation nor order matters), marks of
  when a row was written aside (`BOOKKEEPING`);
- stats: `stats --json` by node and by item equal on both, for every month with a case.

A check that fails raises MigrateError naming it: nothing is switched.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import date
from typing import Any

from sync.audit import verify_log
from sync.logstore import LogStore
from sync.protocol import i18n
from sync.protocol.errors import ZhibaoError
from sync.store import Store
from tiers.case_facts import MARK_COLUMN
from tiers.city.stats import compute_stats
from tiers.figures import parse_period

_MOD = 2**256
# columns of rebuilt tables that say when a row was written here, not what it holds
BOOKKEEPING = frozenset({("case_facts", MARK_COLUMN)})


class MigrateError(ZhibaoError):
    default_key = "store.migrate_check"


def compare(
    sqlite: Store,
    target: LogStore,
    rebuilt: list[str],
    today: date,
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """Run every check (module doc); what they found, for the move's report."""
    count = _count(sqlite, "entries")
    if count != _count(target, "entries"):
        _failed("entries", f"{count} in node.db, {_count(target, 'entries')} in the database")
    report = verify_log(target, workers=1)
    if not report.ok:
        first = report.problems[0]
        raise MigrateError("store.migrate_bad_entry", origin=first["origin"], seq=first["seq"],
                           detail=first["detail"])  # fmt: skip
    heads = sqlite.heads()
    if heads != target.heads():
        differ = sorted(o for o in {*heads, *target.heads()} if heads.get(o) != target.head(o))
        _failed("heads", ", ".join(differ[:5]))
    held = set(sqlite.query("SELECT origin, seq FROM quarantine"))
    there = set(target.query("SELECT origin, seq FROM quarantine"))
    if held != there:
        extra = sorted(there ^ held)[:5]
        _failed("quarantine", ", ".join(f"{o}#{s}" for o, s in extra))
    rows: dict[str, int] = {}
    for table in rebuilt:
        columns = [r[1] for r in sqlite.query(f'PRAGMA table_info("{table}")')
                   if (table, r[1]) not in BOOKKEEPING]  # fmt: skip
        mine, theirs = digest(sqlite, table, columns), digest(target, table, columns)
        if mine != theirs:
            _failed("tables", f"{table}: {mine[0]} rows in node.db, {theirs[0]} in the database")
        rows[table] = mine[0]
    months = case_months(sqlite)
    for month in months:
        period = parse_period(month)
        for by in ("node", "item"):
            held_here = compute_stats(sqlite, period, by, today, settings)
            if _plain(held_here) != _plain(compute_stats(target, period, by, today, settings)):
                _failed("stats", f"{month} by {by}")
    return {
        "origins": len(heads), "rebuilt": rows, "entries": True, "heads": True,
        "quarantine": True, "tables": True, "log_verify": True, "stats": True,
        "stats_months": months,
    }  # fmt: skip


def digest(store: LogStore, table: str, columns: list[str]) -> tuple[int, str]:
    """(rows, a digest of the rows whatever their order) of `columns` of `table`."""
    names = ", ".join(columns)
    total, rows = 0, 0
    for row in store.each(f"SELECT {names} FROM {table}"):
        text = json.dumps([_value(v) for v in row], ensure_ascii=False)
        total = (total + int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")) % _MOD
        rows += 1
    return rows, f"{total:064x}"


def case_months(store: LogStore) -> list[str]:
    """Every month (YYYY-MM) in which some case was received, accepted or completed."""
    months: set[str] = set()
    for row in store.each("SELECT received_at, accepted_at, completed_at FROM cases"):
        months.update(str(v)[:7] for v in row if v)
    return sorted(months)


def _value(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"b": bytes(value).hex()}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _count(store: LogStore, table: str) -> int:
    return int(store.query(f"SELECT count(*) FROM {table}")[0][0])


def _failed(check: str, detail: str) -> None:
    raise MigrateError("store.migrate_check", check=check, detail=detail)


i18n.register(
    {
        "store.migrate_bad_entry": (
            "Entry {seq} of {origin} in node.db is not what its author signed ({detail}). "
            "Nothing was switched; the home stays on node.db (run `zhibao log verify`).",
            "node.db 中 {origin} 的第 {seq} 条不是作者签名的内容（{detail}）。"
            "未切换；本节点仍使用 node.db（请运行 `zhibao log verify`）。",
        ),
        "store.migrate_check": (
            "The copy on PostgreSQL does not match node.db ({check}: {detail}): nothing was "
            "switched; the home stays on node.db. The database keeps the copy: run again with "
            "--restart, and report this if it happens again.",
            "PostgreSQL 中的副本与 node.db 不一致（{check}：{detail}）：未切换；"
            "本节点仍使用 node.db。数据库保留了副本：请加 --restart 重新运行，"
            "如再次出现请报告。",
        ),
    }
)
