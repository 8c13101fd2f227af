"""`zhibao report monthly`, `zhibao stats`, `zhibao reconcile` (DESIGN §5, §7): thin shells
over tiers.reports, tiers.city.stats and tiers.city.reconcile."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Any

import click

from cli.common import (
    at_option,
    check_writable,
    echo,
    home_option,
    json_option,
    json_text,
    node_at,
    print_json,
    warn,
    write_atomically,
)
from cli.help import h
from cli.report_table import WIDTH, Fit, print_fitted
from sync.protocol import i18n
from sync.protocol.errors import ReportError
from tiers import export, reader
from tiers.city import stats as city_stats
from tiers.city.finding_kinds import kind_name
from tiers.city.reconcile import Thresholds, reconcile
from tiers.figures import month_of, parse_period
from tiers.inert import text_cell
from tiers.provisional import period_years, provisional_figures
from tiers.reports import submit_monthly

i18n.register(
    {
        "cli.report.appended": (
            "Reported {period} as entry #{seq}.",
            "已报送 {period} 月报（条目 #{seq}）。",
        ),
        "cli.report.unchanged": (
            "{period} was already reported with these figures (entry #{seq}); nothing appended.",
            "{period} 月报已按相同数据报送（条目 #{seq}），未重复记录。",
        ),
        "cli.report.figures": ("{figures}.", "{figures}。"),
        "cli.report.sep": (", ", "，"),
        "cli.stats.written": ("Wrote {path} ({count} rows).", "已写入 {path}（{count} 行）。"),
        "cli.stats.written.one": ("Wrote {path} ({count} row).", "已写入 {path}（{count} 行）。"),
        "cli.stats.xlsx_out": (
            "XLSX is a binary file: give --out FILE.",
            "XLSX 是二进制文件：请用 --out 指定文件。",
        ),
        "cli.reconcile.none": (
            "{period}: no findings ({reports}).",
            "{period}：未发现问题（{reports}）。",
        ),
        "cli.reconcile.headers": ("kind|node|detail", "类别|节点|说明"),
        "cli.reconcile.summary": (
            "{period}: {findings}, {reports}.",
            "{period}：{findings}，{reports}。",
        ),
        "cli.reconcile.findings": ("{count} findings", "发现 {count} 个问题"),
        "cli.reconcile.findings.one": ("{count} finding", "发现 {count} 个问题"),
        "cli.reconcile.reports": ("{count} reports held", "已收到 {count} 份月报"),
        "cli.reconcile.reports.one": ("{count} report held", "已收到 {count} 份月报"),
    }
)
# What `report monthly` says of a month, in the words of the stats table (stats.col.*).
REPORTED = ("open_at_start", "accepted", "completed", "on_time", "overdue", "open_overdue", "rated")


@click.group(
    "report",
    help=h("Monthly reports signed into this node's log.", "签入本节点日志的办件月报表。"),
)
def report_group() -> None:
    pass


@report_group.command(
    "monthly",
    help=h(
        "Count this node's figures for a finished month and sign them into its log.",
        "统计本节点已结束月份的数据，并签名记入日志。",
    ),
)
@click.option(
    "--period",
    required=True,
    metavar="YYYY-MM",
    help=h("The month to report.", "报送的月份。"),
)
@at_option
@home_option
@json_option
def monthly_command(period: str, at: str | None, home: Path | None, as_json: bool) -> None:
    with node_at(home) as node:
        done = submit_monthly(node, period, at=at)
        guessed = period_years(node.store, parse_period(done.report.period),
                               node.clock.now().date(), node.node_id)  # fmt: skip
    if as_json:
        print_json(done.to_json() | {"provisional": guessed})
        return
    report = done.report
    key = "cli.report.appended" if done.appended else "cli.report.unchanged"
    echo(i18n.t(key, period=report.period, seq=report.seq))
    labels = city_stats.headers(REPORTED)
    said = [
        f"{label} {getattr(report.counts, k)}" for k, label in zip(REPORTED, labels, strict=True)
    ]
    echo(i18n.t("cli.report.figures", figures=i18n.t("cli.report.sep").join(said)))
    if guessed:
        echo(provisional_figures(guessed))


@click.command(
    "stats",
    help=h(
        "Consolidated statistics over every log held here (accepted, completed, completion"
        " rate …). The"
        " table fits 100 columns; --wide or --columns shows more. With --out the file's"
        " name says the format (.csv, .xlsx, .json, .txt) unless --format is given.",
        "本节点所持全部日志的汇总统计（受理量、办结量、办结率……）。表格宽度不超过 100 列，"
        "--wide 或 --columns 显示更多列。使用 --out 时按文件扩展名"
        "（`.csv`、`.xlsx`、`.json`、`.txt`）确定格式，除非指定 --format。",
    ),
)
@click.option(
    "--period",
    default=None,
    metavar="P",
    help=h(
        "2025-10 (month), 2025-Q4 (quarter) or 2025 (year); default this month.",
        "2025-10（月）、2025-Q4（季度）或 2025（年）；默认本月。",
    ),
)
@click.option(
    "--by",
    "by",
    type=click.Choice(city_stats.BY),
    default="node",
    show_default=True,
    help=h("What each row is.", "每行按什么汇总。"),
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(city_stats.FORMATS),
    default=None,
    help=h(
        "Output format (default: from the --out file's name, json with --json, else table).",
        "输出格式（默认：按 --out 的文件名；有 --json 时为 json；否则为表格）。",
    ),
)
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    default=None,
    metavar="FILE",
    help=h("Write to FILE instead of standard output.", "写入文件 FILE，而不是标准输出。"),
)
@click.option(
    "--wide",
    is_flag=True,
    help=h("Show every table column, names uncut.", "显示表格全部列，名称不截断。"),
)
@click.option(
    "--columns",
    "columns",
    default=None,
    metavar="K,K,…",
    help=h(
        "Only these columns (keys of --json) after the key and name; table, CSV and XLSX.",
        "只显示这些列（--json 中的键），排在编码和名称之后；适用于表格、CSV 和 XLSX。",
    ),
)
@home_option
@json_option
def stats_command(period: str | None, by: str, fmt: str | None, out: Path | None, wide: bool,
                  columns: str | None, home: Path | None, as_json: bool) -> None:  # fmt: skip
    if out is not None:
        check_writable(out)
    fmt = export.format_for(fmt, str(out) if out is not None else None, as_json)
    chosen = city_stats.choose_columns(fmt, wide, columns)
    if fmt == "xlsx" and out is None:
        raise ReportError("cli.stats.xlsx_out")
    with node_at(home) as node, reader.reading(node, warn) as store:
        today = node.clock.now().date()
        picked = parse_period(period) if period else month_of(today)
        result = city_stats.compute_stats(store, picked, by, today, node.config.settings)
        withdrawn_in_base = city_stats.completion_counts_withdrawn(node.config.settings)
    if fmt == "json":
        data = (json_text(result) + "\n").encode("utf-8")
    elif fmt == "csv":
        data = city_stats.to_csv(result, chosen)
    elif fmt == "xlsx":
        data = city_stats.to_xlsx(result, chosen)
    else:
        shown = city_stats.table_columns(result, chosen or city_stats.DEFAULT_COLUMNS)
        heads = city_stats.headers(shown, by)
        rows = city_stats.table_rows(result, shown)
        if out is None:
            _print_stats(
                result,
                by,
                shown,
                heads,
                rows,
                today,
                withdrawn_in_base=withdrawn_in_base,
                default=not wide and not columns,
            )
            return
        lines = [heads, *rows]
        data = "".join("\t".join(map(text_cell, r)) + "\n" for r in lines).encode()
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    write_atomically(out, data)
    rows_written = len(result["rows"]) + 1
    echo(i18n.tn("cli.stats.written", rows_written, path=str(out)), err=True)


def _print_stats(
    result: dict[str, Any], by: str, shown: tuple[str, ...], heads: list[str],
    rows: list[list[str]], today: date, *, withdrawn_in_base: bool, default: bool,
) -> None:  # fmt: skip
    """The terminal table: the default one cut to 100 columns (the name gives way)."""
    by_label = i18n.t("stats.by." + by)
    echo(i18n.t("stats.title", period=result["period"], start=result["from"],
                end=result["to"], by=by_label))  # fmt: skip
    named = [i for i, c in enumerate(shown) if c in city_stats.ROW_NAME]
    fit = Fit(
        width=WIDTH if default else None,
        right=frozenset(range(len(named), len(shown))),
        give=named[-1] if named else None,
    )
    print_fitted(heads, rows, fit)
    for note in city_stats.table_notes(
        result, shown, today, withdrawn_in_base=withdrawn_in_base, default=default
    ):
        echo(note)  # fmt: skip
    if result["provisional"]:
        echo(provisional_figures(result["provisional"]))


@click.command(
    "reconcile",
    help=h(
        "Recompute every reporter's figures from the logs and list what does not add up.",
        "按日志重新计算各报送节点的数据，列出不相符之处。",
    ),
)
@click.option(
    "--period",
    required=True,
    metavar="YYYY-MM",
    help=h("The month to reconcile.", "核对的月份。"),
)
@click.option(
    "--stale-days",
    type=click.FloatRange(min=0),
    default=None,
    help=h(
        "Days without news before a node is stale (default 7, or stale_days).",
        "节点多少天无消息视为失联（默认 7，或 stale_days 设置）。",
    ),
)
@click.option(
    "--forward-days",
    type=click.FloatRange(min=0),
    default=None,
    help=h(
        "Days a forward may wait to be taken up (default 3, or forward_days).",
        "上报件等待接收的天数上限（默认 3，或 forward_days 设置）。",
    ),
)
@click.option(
    "--skew-seconds",
    type=click.IntRange(min=0),
    default=None,
    help=h(
        "Clock difference that is a finding (default 600, or skew_seconds).",
        "时钟偏差超过多少秒列为问题（默认 600，或 skew_seconds 设置）。",
    ),
)
@home_option
@json_option
def reconcile_command(
    period: str, stale_days: float | None, forward_days: float | None,
    skew_seconds: int | None, home: Path | None, as_json: bool,
) -> None:  # fmt: skip
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
    reports = i18n.tn("cli.reconcile.reports", result["reports"])
    if not findings:
        echo(i18n.t("cli.reconcile.none", period=result["period"], reports=reports))
    else:
        rows = [[kind_name(f["kind"]), f["node_id"], f["detail"]] for f in findings]
        print_fitted(i18n.t("cli.reconcile.headers").split("|"), rows, Fit(give=2, wrap=True))
        echo(i18n.t("cli.reconcile.summary", period=result["period"], reports=reports,
                    findings=i18n.tn("cli.reconcile.findings", len(findings))))  # fmt: skip
    if result["provisional"]:
        echo(provisional_figures(result["provisional"]))
