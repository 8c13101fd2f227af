"""The `zhibao` command: one place turns every project error into one line and exit 1."""

from __future__ import annotations

import os
import sys

import click

from cli import bundle, case, catalogue, demo, log, node, report
from cli import sync as sync_commands
from sync.protocol import i18n
from sync.protocol.errors import ZhibaoError

i18n.register(
    {
        "cli.internal": (
            "internal error: {detail} (set ZHIBAO_DEBUG=1 for details)",
            "内部错误：{detail}（设置 ZHIBAO_DEBUG=1 查看详情）",
        ),
        "cli.interrupted": (
            "interrupted; nothing half-written was kept",
            "已中断；未保留任何写了一半的内容",
        ),
    }
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="zhibao")
def cli() -> None:
    """zhibao (直报): signed, replicated case logs for the city's service network."""


for module in (node, log, catalogue, sync_commands, case, demo, bundle, report):
    module.register(cli)


def main(argv: list[str] | None = None) -> None:
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
        click.echo(f"zhibao: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo(i18n.t("cli.interrupted"), err=True)
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("ZHIBAO_DEBUG"):
            raise
        click.echo(
            "zhibao: " + i18n.t("cli.internal", detail=f"{type(exc).__name__}: {exc}"), err=True
        )
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
