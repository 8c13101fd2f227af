"""`zhibao log show|verify`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.common import echo, home_option, json_option, node_at, print_json
from sync.audit import verify_log
from sync.protocol import i18n

i18n.register(
    {
        "log.verified": (
            "OK: {entries} entries from {origins} origins verified.",
            "通过：已核验 {origins} 个来源的 {entries} 条条目。",
        ),
        "log.problems": (
            "{count} problem(s) in {entries} entries:",
            "{entries} 条条目中发现 {count} 个问题：",
        ),
    }
)


@click.group("log")
def log_group() -> None:
    """The signed, hash-chained logs this node holds."""


@log_group.command("show")
@click.option("--origin", default=None, help="Only this origin's log.")
@click.option("--limit", type=int, default=None, help="Only the last N entries.")
@home_option
@json_option
def show_command(origin: str | None, limit: int | None, home: Path | None, as_json: bool) -> None:
    """List entries: origin, seq, time, type, hash."""
    with node_at(home) as node:
        rows = []
        for entry in node.store.iter_all(origin):
            fields = json.loads(entry.raw)
            rows.append(
                {
                    "origin": entry.origin,
                    "seq": entry.seq,
                    "at": fields["at"],
                    "type": entry.type,
                    "hash": entry.hash.hex(),
                    "body": fields["body"],
                }
            )
    if limit is not None:
        rows = rows[-limit:]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        body = json.dumps(row["body"], ensure_ascii=False)
        echo(
            f"{row['origin']}#{row['seq']:<6} {row['at']}  {row['type']:<22} "
            f"{row['hash'][:12]}  {body[:80]}"
        )


@log_group.command("verify")
@click.option("--origin", default=None)
@home_option
@json_option
def verify_command(origin: str | None, home: Path | None, as_json: bool) -> None:
    """Re-check every entry: bytes, chain, signature, sequence. Exit 1 on any problem."""
    with node_at(home) as node:
        report = verify_log(node.store, origin)
    if as_json:
        print_json(report.to_json())
    elif report.ok:
        echo(i18n.t("log.verified", entries=report.entries, origins=report.origins))
    else:
        echo(i18n.t("log.problems", count=len(report.problems), entries=report.entries))
        for p in report.problems:
            echo(f"  {p['origin']}#{p['seq']}: {p['detail']}")
    if not report.ok:
        raise SystemExit(1)
