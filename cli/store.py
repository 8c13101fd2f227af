"""`zhibao store info|migrate`: which engine keeps the node's store, and moving a city's
from node.db to PostgreSQL (tiers.store_move says how nothing is lost)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cli.common import echo, home_option, json_option, node_at, print_json, warn_if_exposed
from cli.help import h
from cli.log import ProgressLine, progress_line
from sync.node import resolve_home
from sync.protocol import i18n
from tiers import store_move

i18n.register(
    {
        "store.info.engine": ("engine     {engine}", "引擎      {engine}"),
        "store.info.location": ("location   {location}", "位置      {location}"),
        "store.info.entries": ("entries    {entries}", "条目      {entries}"),
        "store.info.origins": ("origins    {origins}", "来源      {origins}"),
        "store.info.bytes": ("size       {size} MiB", "大小      {size} MiB"),
        "store.moved": (
            "Moved {entries} entries of {origins} logs to {url}; node.db kept as {kept}.",
            "已将 {origins} 个日志的 {entries} 条条目迁移到 {url}；node.db 保留为 {kept}。",
        ),
        "store.moved_tables": (
            "copied {copied} rows of local state ({tables} tables); rebuilt {rebuilt} rows "
            "of projections ({projections} tables) from the log",
            "复制本地状态 {copied} 行（{tables} 张表）；由日志重建投影 {rebuilt} 行"
            "（{projections} 张表）",
        ),
        "store.moved_checks": (
            "checked: entries and heads equal, quarantine equal, every projection equal, "
            "log verify clean, statistics equal for {months} months",
            "已核对：条目与链头一致、隔离条目一致、所有投影一致、日志核验无误、"
            "{months} 个月的统计一致",
        ),
        "store.progress": (
            "Copying: {done} of {total} entries ({percent} %)",
            "复制中：{done}/{total} 条条目（{percent}%）",
        ),
        "store.moved_next": (
            "Start `zhibao serve` again: it now opens the database.",
            "请重新启动 `zhibao serve`：它现在打开数据库。",
        ),
    }
)


class CopyLine(ProgressLine):
    """`log verify`'s progress line, saying what a move does."""

    @staticmethod
    def text(done: int, total: int, elapsed: float) -> str:
        percent = done * 100 // total if total else 100
        return i18n.t("store.progress", done=f"{done:,}", total=f"{total:,}", percent=percent)


def copy_line(mode: bool | None) -> ProgressLine | None:
    line = progress_line(mode, sys.stderr)
    if line is not None:
        line.__class__ = CopyLine
    return line


@click.group(
    "store",
    help=h(
        "The node's database: which engine keeps it; move a city's to PostgreSQL.",
        "节点的数据库：查看所用引擎；将市级节点的数据迁移到 `PostgreSQL`。",
    ),
)
def store_group() -> None:
    pass


@store_group.command(
    "info",
    help=h(
        "Which engine keeps the store, where, how many entries and origins, its size.",
        "数据由哪种引擎保存、位置、条目数、来源数、大小。",
    ),
)
@home_option
@json_option
def info_command(home: Path | None, as_json: bool) -> None:
    with node_at(home) as node:
        data = store_move.info(node)
    if as_json:
        print_json(data)
        return
    for key in ("engine", "location", "entries", "origins"):
        echo(i18n.t(f"store.info.{key}", **{key: data[key]}))
    echo(i18n.t("store.info.bytes", size=f"{data['bytes'] / 2**20:,.1f}"))


@store_group.command(
    "migrate",
    help=h(
        "Move a city's store from node.db to an empty PostgreSQL database: every entry "
        "checked by the database as it lands, local state copied, projections rebuilt and "
        "compared, log verify and statistics checked, then node.toml switched and node.db "
        "kept as node.db.migrated-DATE. Stop `zhibao serve` first.",
        "将市级节点的数据从 node.db 迁移到空的 `PostgreSQL` 数据库：每条条目写入时由数据库核验，"
        "复制本地状态，重建并核对投影，核验日志与统计，然后切换 node.toml，"
        "node.db 保留为 node.db.migrated-日期。请先停止 `zhibao serve`。",
    ),
)
@click.option(
    "--to",
    "url",
    required=True,
    metavar="URL",
    help=h(
        "The database, `postgresql://USER[:PASSWORD]@HOST[:PORT]/DB` (empty). Its "
        "password goes to store.pgpass in the home, never to node.toml; without one in the "
        "URL, $PGPASSWORD is used.",
        "目标数据库 `postgresql://USER[:PASSWORD]@HOST[:PORT]/DB`（须为空）。"
        "密码写入主目录的 store.pgpass，不写入 node.toml；地址中没有密码时使用 $PGPASSWORD。",
    ),
)
@click.option(
    "--restart",
    is_flag=True,
    help=h(
        "The database holds a move of this node that stopped half-way: drop it and start "
        "over (a database holding any other log is never dropped).",
        "数据库中有本节点中途停止的迁移：清除后从头开始（存有其他日志的数据库从不清除）。",
    ),
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help=h(
        "Show progress on standard error (default: on a terminal, or once a run has taken 10 s).",
        "在标准错误输出上显示进度（默认：在终端上，或运行超过 10 秒后）。",
    ),
)
@home_option
@json_option
def migrate_command(
    url: str, restart: bool, progress: bool | None, home: Path | None, as_json: bool
) -> None:
    where = resolve_home(home)
    warn_if_exposed(where)
    line = copy_line(progress)
    try:
        result = store_move.migrate(where, url, restart=restart, progress=line)
    finally:
        if line is not None:
            line.close()
    if as_json:
        print_json(result)
        return
    echo(i18n.t("store.moved", entries=result["entries"], origins=result["origins"],
                url=result["to"], kept=result["kept"]))  # fmt: skip
    echo(i18n.t("store.moved_tables", copied=sum(result["copied"].values()),
                tables=len(result["copied"]), rebuilt=sum(result["rebuilt"].values()),
                projections=len(result["rebuilt"])))  # fmt: skip
    echo(i18n.t("store.moved_checks", months=len(result["checks"]["stats_months"])))
    echo(i18n.t("store.moved_next"))
