"""`zhibao report monthly`, `zhibao stats`, `zhibao reconcile` (DESIGN §5, §7): thin shells
over tiers.reports, tiers.city.stats and tiers.city.reconcile."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cli.common import (
    at_option,
    check_writable,
    echo,
    home_option,
    json_option,
    node_at,
    print_json,
    print_table,
    terminal_safe,
    write_atomically,
)
from sync.protocol import i18n
from sync.protocol.errors import ReportError
from tiers.city import stats as city_stats
from tiers.city.reconcile import Thresholds, reconcile
from tiers.figures import month_of, parse_period
from tiers.provisional import period_years, provisional_figures
from tiers.reports import submit_monthly

i18n.register(
    {
        "cli.report.appended": (
            "Reported {period} as entry #{seq}: accepted {accepted}, completed {completed},"
            " on time {on_time}, overdue {overdue}, rated {rated}.",
            "已报送 {period} 月报（条目 #{seq}）：受理 {accepted}，办结 {completed}，"
            "按时 {on_time}，超期 {overdue}，评价 {rated}。",
        ),
        "cli.report.unchanged": (
            "{period} was already reported with these figures (entry #{seq}); nothing appended.",
            "{period} 月报已按相同数据报送（条目 #{seq}），未重复记录。",
        ),
        "cli.stats.written": ("Wrote {path} ({rows} rows).", "已写入 {path}（{rows} 行）。"),
        "cli.stats.xlsx_out": (
            "XLSX is a binary file: give --out FILE.",
            "XLSX 是二进制文件：请用 --out 指定文件。",
        ),
        "cli.reconcile.none": (
            "{period}: no findings ({reports} reports held).",
            "{period}：未发现问题（已收到 {reports} 份月报）。",
        ),
        "cli.reconcile.headers": ("kind|node|detail", "类别|节点|说明"),
        "cli.reconcile.summary": (
            "{period}: {count} findings, {reports} reports held.",
            "{period}：发现 {count} 个问题，已收到 {reports} 份月报。",
        ),
    }
)


@click.group("report")
def report_group() -> None:
    """Monthly reports (办件月报表) signed into this node's log."""


@report_group.command("monthly")
@click.option("--period", required=True, metavar="YYYY-MM", help="The month to report.")
@at_option
@home_option
@json_option
def monthly_command(period: str, at: str | None, home: Path | None, as_json: bool) -> None:
    """Count this node's figures for a finished month and sign them into its log."""
    with node_at(home) as node:
        done = submit_monthly(node, period, at=at)
        guessed = period_years(node.store, parse_period(done.report.period),
                               node.clock.now().date(), node.node_id)  # fmt: skip
    if as_json:
        print_json(done.to_json() | {"provisional": guessed})
        return
    report = done.report
    if not done.appended:
        echo(i18n.t("cli.report.unchanged", period=report.period, seq=report.seq))
    else:
        c = report.counts
        echo(i18n.t("cli.report.appended", period=report.period, seq=report.seq,
                    accepted=c.accepted, completed=c.completed, on_time=c.on_time,
                    overdue=c.overdue, rated=c.rated))  # fmt: skip
    if guessed:
        echo(provisional_figures(guessed))


@click.command("stats")
@click.option(
    "--period",
    default=None,
    metavar="P",
    help="2025-10 (month), 2025-Q4 (quarter) or 2025 (year); default this month.",
)
@click.option("--by", "by", type=click.Choice(city_stats.BY), default="node", show_default=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(city_stats.FORMATS),
    default=None,
    help="Output format (default table; json with --json).",
)
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write to FILE instead of standard output.",
)
@home_option
@json_option
def stats_command(period: str | None, by: str, fmt: str | None, out: Path | None,
                  home: Path | None, as_json: bool) -> None:  # fmt: skip
    """Consolidated statistics over every log held here (受理量, 办结量, 办结率 …)."""
    fmt = fmt or ("json" if as_json else "table")
    if fmt == "xlsx" and out is None:
        raise ReportError("cli.stats.xlsx_out")
    if out is not None:
        check_writable(out)
    with node_at(home) as node:
        today = node.clock.now().date()
        chosen = parse_period(period) if period else month_of(today)
        result = city_stats.compute_stats(node.store, chosen, by, today, node.config.settings)
    if fmt == "json":
        text = json.dumps(result, ensure_ascii=False, indent=2) + "\n"
        data = text.encode("utf-8")
    elif fmt == "csv":
        data = city_stats.to_csv(result)
    elif fmt == "xlsx":
        data = city_stats.to_xlsx(result)
    else:
        if out is None:
            echo(i18n.t("stats.title", period=result["period"], start=result["from"],
                        end=result["to"], by=by))  # fmt: skip
            print_table(city_stats.headers(), city_stats.table_rows(result))
            if result["provisional"]:
                echo(provisional_figures(result["provisional"]))
            return
        rows = [city_stats.headers(), *city_stats.table_rows(result)]
        data = "\n".join("\t".join(terminal_safe(c) for c in r) for r in rows).encode()
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    write_atomically(out, data)
    echo(i18n.t("cli.stats.written", path=str(out), rows=len(result["rows"]) + 1), err=True)


@click.command("reconcile")
@click.option("--period", required=True, metavar="YYYY-MM", help="The month to reconcile.")
@click.option(
    "--stale-days",
    type=float,
    default=None,
    help="Days without news before a node is stale (default 7, or stale_days).",
)
@click.option(
    "--forward-days",
    type=float,
    default=None,
    help="Days a forward may wait to be taken up (default 3, or forward_days).",
)
@click.option(
    "--skew-seconds",
    type=int,
    default=None,
    help="Clock difference that is a finding (default 600, or skew_seconds).",
)
@home_option
@json_option
def reconcile_command(
    period: str, stale_days: float | None, forward_days: float | None,
    skew_seconds: int | None, home: Path | None, as_json: bool,
) -> None:  # fmt: skip
    """Recompute every reporter's figures from the logs and list what does not add up."""
    with node_at(home) as node:
        limits = Thresholds.from_settings(
            node.config.settings,
            stale_days=stale_days,
            forward_days=forward_days,
            skew_seconds=skew_seconds,
        )
        result = reconcile(node, period, limits=limits)
    if as_json:
        print_json(result)
        return
    findings = result["findings"]
    if not findings:
        echo(i18n.t("cli.reconcile.none", period=result["period"], reports=result["reports"]))
    else:
        print_table(i18n.t("cli.reconcile.headers").split("|"),
                    [[f["kind"], f["node_id"], f["detail"]] for f in findings])  # fmt: skip
        echo(i18n.t("cli.reconcile.summary", period=result["period"], count=len(findings),
                    reports=result["reports"]))  # fmt: skip
    if result["provisional"]:
        echo(provisional_figures(result["provisional"]))
