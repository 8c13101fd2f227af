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
from cli.help import h, localise
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
