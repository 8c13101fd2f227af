"""The `zhibao` command: one place turns every project error into one line and exit 1.

Messages carry data from other nodes (names, reasons, case ids), so the line is made
terminal-safe here as well; an OSError that no command caught (a file the operator named)
becomes "cannot access PATH: reason", not an internal error.

Commands load lazily (click's documented LazyGroup pattern): a clerk's `case accept` does
not pay for importing the HTTP server, the bundle code or the spreadsheet writer.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import os
import sys
from pathlib import Path
from typing import Any

import click

from cli import click_i18n
from cli.help import first_sentence, h, localise
from cli.help_format import HelpContext
from sync.protocol import i18n
from sync.protocol.errors import ZhibaoError

# The command line of DESIGN §7 (a stable interface): name → "module:object".
COMMANDS = {
    "init": "cli.node:init_command",
    "node": "cli.node:node_group",
    "log": "cli.log:log_group",
    "catalogue": "cli.catalogue:catalogue_group",
    "calendar": "cli.catalogue:calendar_group",
    "case": "cli.case:case_group",
    "serve": "cli.sync:serve_command",
    "sync": "cli.sync:sync_command",
    "status": "cli.sync:status_command",
    "bundle": "cli.bundle:bundle_group",
    "restore": "cli.bundle:restore_command",
    "report": "cli.report:report_group",
    "stats": "cli.report:stats_command",
    "reconcile": "cli.report:reconcile_command",
    "demo": "cli.demo:demo_command",
    "fork": "cli.fork:fork_group",
    "complaint": "cli.complaint:complaint_group",
    "user": "cli.user:user_group",
    "store": "cli.store:store_group",
}
# The first sentence of each command's help (English, Chinese): `zhibao --help` lists the
# commands from here, importing none of them (tests/cli/test_startup.py checks that these
# are the commands' own and that the page is the one click would make from the commands).
SUMMARIES = {
    "bundle": (
        "Carry logs on a file (USB stick) when the link is down.",
        "链路不通时，用文件（U 盘）携带日志。",
    ),
    "calendar": (
        "The working-day calendar: the chinesecalendar package plus published overrides.",
        "工作日日历：`chinesecalendar` 软件包加上发布的调整。",
    ),
    "case": (
        "Cases (办件): receive, accept, forward, complete, deliver, rate.",
        "办件：收件、受理、上报、办结、送达、评价。",
    ),
    "catalogue": (
        "The service-item catalogue (事项目录) in force on this node.",
        "本节点现行的事项目录。",
    ),
    "complaint": ("Complaints (投诉): file, reply, close, list.", "投诉：登记、答复、办结、列表。"),
    "demo": (
        "Build a city, two towns and three villages on loopback, run a realistic story, and "
        "keep the city in a folder (./zhibao-demo unless --home) to explore afterwards.",
        "在本机建立一个市、两个镇、三个村，演示真实业务流程，并把演示城市保存在一个目录中"
        "（默认 ./zhibao-demo，可用 --home 指定），供之后查看。",
    ),
    "fork": (
        "Forks (two signed entries for one origin and seq) held here, and their resolution.",
        "本节点持有的分叉（同一来源、同一序号的两条签名条目）及其裁定。",
    ),
    "init": (
        "Create a node's home: database, identity key, seal key, settings.",
        "创建节点目录：数据库、身份密钥、加密密钥、设置。",
    ),
    "log": ("The signed, hash-chained logs this node holds.", "本节点持有的签名哈希链日志。"),
    "node": (
        "This node's identity, and enrolment of the nodes below it.",
        "本节点的身份，以及下级节点的登记。",
    ),
    "reconcile": (
        "Recompute every reporter's figures from the logs and list what does not add up.",
        "按日志重新计算各报送节点的数据，列出不相符之处。",
    ),
    "report": ("Monthly reports signed into this node's log.", "签入本节点日志的办件月报表。"),
    "restore": (
        "Rebuild this node's database from its parent's copy (its keys are kept).",
        "用上级保存的副本重建本节点的数据库（保留本节点的密钥）。",
    ),
    "serve": (
        "Serve this node's sync endpoint (and GET /v1/health) and its desk under `/desk/` "
        "(login required: `zhibao user add`); sync upward in the background if it has a parent.",
        "提供本节点的同步接口、健康检查接口和 `/desk/` 下的网页工作台"
        "（需登录：`zhibao user add`）；有上级时在后台向上同步。",
    ),
    "stats": (
        "Consolidated statistics over every log held here (accepted, completed, completion "
        "rate …).",
        "本节点所持全部日志的汇总统计（受理量、办结量、办结率……）。",
    ),
    "status": (
        "This node's link to its parent (last attempt, success, error), what the parent has "
        "not acknowledged yet, heads, forks and the network below it.",
        "本节点与上级的连接（上次尝试、成功、错误）、上级尚未确认的内容、各日志进度、分叉以及下级网络。",
    ),
    "store": (
        "The node's database: which engine keeps it; move a city's to PostgreSQL.",
        "节点的数据库：查看所用引擎；将市级节点的数据迁移到 `PostgreSQL`。",
    ),
    "sync": (
        "Run one round with the parent (or --peer): push what it lacks, pull what concerns us.",
        "与上级（或 --peer）同步一轮：上传对方缺少的，下载与本节点有关的。",
    ),
    "user": (
        "People who may log in to this node's desk in a browser.",
        "可登录本节点网页工作台的人员。",
    ),
}
# ctx.meta key: `zhibao --home DIR`, for the command that follows (cli.common.home_option)
GLOBAL_HOME = "zhibao.global_home"

i18n.register(
    {
        "cli.internal": (
            "internal error: {detail} (set ZHIBAO_DEBUG=1 for details)",
            "内部错误：{detail}（设置 ZHIBAO_DEBUG=1 查看详情）",
        ),
        "cli.os_error": ("cannot access {path}: {detail}", "无法访问 {path}：{detail}"),
        "cli.os_error_bare": ("the system refused: {detail}", "系统拒绝：{detail}"),
        "cli.interrupted": (
            "interrupted; nothing half-written was kept",
            "已中断；未保留任何写了一半的内容",
        ),
    }
)


click_i18n.install()  # click's own words (usage errors, "Usage:") in the reader's language


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when they are run (or listed), each
    with its help in the current locale (cli.help.localise)."""

    context_class = HelpContext

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        localise(self)  # the top command too, however it is invoked (main, CliRunner)
        return super().make_context(info_name, args, parent, **extra)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, name = target.split(":")
        command = getattr(importlib.import_module(module), name)
        assert isinstance(command, click.Command)
        return localise(command)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The list of commands, laid out by click from stand-ins that carry each command's
        first sentence (SUMMARIES) as `localise` would put it on the command itself: a
        help page imports no command (#15)."""
        chinese = i18n.locale() == "zh"
        stand_ins = {
            name: click.Command(
                name,
                help=SUMMARIES[name][0],
                short_help=first_sentence(SUMMARIES[name][1]) if chinese else None,
            )
            for name in self.list_commands(ctx)
        }
        click.Group.format_commands(click.Group(commands=stand_ins), ctx, formatter)


@click.group(
    "zhibao",
    cls=LazyGroup,
    help=h(
        "zhibao (直报): signed, replicated case logs for the city's service network.",
        "zhibao（直报）：全市政务服务网络的签名办件日志，逐级同步。",
    ),
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--home",
    "home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help=h(
        "The node's home for the command that follows, as if given to it (`zhibao --home "
        "DIR case list` = `zhibao case list --home DIR`); the command's own --home wins if both "
        "are given. Before $ZHIBAO_HOME.",
        "后面那条命令所用节点的主目录，等同于写在该命令上（`zhibao --home DIR case list` = "
        "`zhibao case list --home DIR`）；两处都写时以命令自己的 --home 为准。"
        "优先于 $ZHIBAO_HOME。",
    ),
)
@click.version_option(
    package_name="zhibao", help=h("Show the version and exit.", "显示版本并退出。")
)
@click.pass_context
def cli(ctx: click.Context, home: Path | None) -> None:
    if home is not None:
        ctx.meta[GLOBAL_HOME] = home


def warn(text: str) -> None:
    """One terminal-safe line on stderr (cli.common loads only when there is one to say)."""
    from cli import common

    common.warn(text)


def _os_error(exc: OSError) -> str:
    from cli.common import describe_os_error

    detail = describe_os_error(exc)
    if isinstance(exc.filename, str | bytes | os.PathLike):
        return i18n.t("cli.os_error", path=os.fsdecode(exc.filename), detail=detail)
    return i18n.t("cli.os_error_bare", detail=detail)


def _quiet_stdout() -> None:
    """The reader went away (`zhibao … | head`): send what is left to /dev/null, so the
    interpreter's final flush does not complain either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: list[str] | None = None) -> None:
    # At exit, everything still alive is frozen (out of the collector's reach) before the
    # interpreter's own final collections, which would otherwise walk every object of every
    # module imported (20-35 ms of each command; #13). Nothing is lost: what is left then
    # dies with the process, and Python never promised to finalise it (`object.__del__`).
    atexit.register(gc.freeze)
    try:
        cli.main(args=argv, prog_name="zhibao", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo(i18n.t("cli.interrupted"), err=True)
        sys.exit(1)
    except ZhibaoError as exc:
        warn(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo(i18n.t("cli.interrupted"), err=True)
        sys.exit(130)
    except BrokenPipeError:
        _quiet_stdout()
        sys.exit(1)
    except OSError as exc:
        if os.environ.get("ZHIBAO_DEBUG"):
            raise
        warn(_os_error(exc))
        sys.exit(1)
    except Exception as exc:
        if os.environ.get("ZHIBAO_DEBUG"):
            raise
        warn(i18n.t("cli.internal", detail=f"{type(exc).__name__}: {exc}"))
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
