"""`zhibao demo`: a whole city on loopback, to see it work, kept in a folder to explore."""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import click

from cli.common import echo, global_home, node_at, print_json, print_table
from cli.help import h
from sync.protocol import i18n

DEFAULT_FOLDER = Path("zhibao-demo")
DESK_USER = "demo"
DESK_PORT = 8750  # `zhibao serve`'s default port

i18n.register(
    {
        "demo.entries_heading": (
            "Entries held at the city, by the node that wrote them:",
            "市中心持有的条目（按写入节点）：",
        ),
        "demo.entries_headers": ("node|name|entries", "节点|名称|条目数"),
        "demo.statuses_heading": ("Cases at the city, by status:", "市中心办件（按状态）："),
        "demo.statuses_headers": ("status|cases", "状态|办件数"),
        "demo.explore": (
            "The city is kept in {home}. Explore it:",
            "演示城市保存在 {home}。可以这样查看：",
        ),
        "demo.desk": (
            "To see the city's desk in a browser, serve the city:",
            "在浏览器中查看市中心的网页工作台：先启动市中心服务",
        ),
        "demo.desk_open": (
            "then open {url} and log in as {name} with the password {password} (an admin of "
            "this demo city only).",
            "然后打开 {url}，用户名 {name}，密码 {password}（仅为本演示城市的管理员）。",
        ),
    }
)


@click.command(
    "demo",
    help=h(
        "Build a city, two towns and three villages on loopback, run a realistic story, and "
        "keep the city in a folder (./zhibao-demo unless --home) to explore afterwards.",
        "在本机建立一个市、两个镇、三个村，演示真实业务流程，并把演示城市保存在一个目录中"
        "（默认 ./zhibao-demo，可用 --home 指定），供之后查看。",
    ),
)
@click.option(
    "--home",
    "--dir",
    "where",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    callback=global_home,
    help=h(
        "Where to build the demo city and keep it (default: `zhibao --home DIR`, else "
        "./zhibao-demo). A folder an earlier demo built is rebuilt; any other folder must be "
        "empty or new. Not read from $ZHIBAO_HOME.",
        "演示城市的建立和保存位置（默认：`zhibao --home 目录`，否则为 ./zhibao-demo）。"
        "以前演示建立的目录会重新建立；其他目录必须为空或不存在。不读取 $ZHIBAO_HOME。",
    ),
)
@click.option(
    "--catalogue",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help=h("Catalogue CSV (default: the bundled sample).", "事项目录 CSV（默认：自带的示例）。"),
)
@click.option(
    "--seed",
    default=7,
    type=int,
    show_default=True,
    help=h("Seed for the flaky link.", "不稳定线路的随机种子。"),
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help=h("Print the city's counts as JSON.", "以 JSON 输出市中心的统计。"),
)
def demo_command(where: Path | None, catalogue: Path | None, seed: int, as_json: bool) -> None:
    from tiers import demo

    data = (
        catalogue.read_bytes()
        if catalogue
        else resources.files("tiers").joinpath("data/catalogue.csv").read_bytes()
    )
    root = where if where is not None else DEFAULT_FOLDER
    summary = demo.run(root, data, click.echo, seed=seed)
    desk = desk_login(root.resolve())
    if as_json:
        print_json(summary | {"home": str(root.resolve()), "desk": desk})
    else:
        _tables(summary)
        echo()
        echo(i18n.t("demo.explore", home=_shown(root.resolve())))
        for line in explore_commands(root.resolve(), summary):
            echo("  " + line)
        echo()
        echo(i18n.t("demo.desk"))
        echo("  " + desk["serve"])
        echo(i18n.t("demo.desk_open", url=desk["url"], name=desk["name"],
                    password=desk["password"]))  # fmt: skip
    if summary["problems"]:
        raise SystemExit(1)


def desk_login(root: Path) -> dict[str, str]:
    """A desk admin on the demo city, with a password made for this run (never a fixed one:
    the demo city may be served where others can reach it), and how to open the desk."""
    from tiers import demo
    from tiers.desk import users

    password = secrets.token_urlsafe(9)
    with node_at(root / "city") as city:
        users.add_user(city.store, DESK_USER, "admin", password, city.clock.stamp())
    return {
        "name": DESK_USER,
        "password": password,
        "serve": f"{_program()} --home {_shown(root / 'city')} serve",
        "url": f"http://127.0.0.1:{DESK_PORT}/desk/",
        "node_id": demo.CITY[0],
    }


def _tables(summary: dict[str, Any]) -> None:
    from tiers import demo
    from tiers.cases.labels import status_label

    echo()
    echo(i18n.t("demo.entries_heading"))
    rows = [[origin, demo.NAMES.get(origin, ""), n] for origin, n in summary["entries"].items()]
    print_table(i18n.t("demo.entries_headers").split("|"), rows)
    echo()
    echo(i18n.t("demo.statuses_heading"))
    rows = [[status_label(status), n] for status, n in summary["statuses"].items()]
    print_table(i18n.t("demo.statuses_headers").split("|"), rows)


def explore_commands(root: Path, summary: dict[str, Any]) -> list[str]:
    """Three commands that work from here: a town's cases, the case the city decided, the
    city's figures for the demo's month."""
    from tiers import demo

    program = _program()
    town, city = _shown(root / demo.TOWNS[0][0]), _shown(root / "city")
    decided = summary["decided"]
    return [
        f"{program} --home {town} case list",
        f"{program} --home {city} case show {decided}",
        f"{program} --home {city} stats --period {demo.PERIOD}",
    ]


def _program() -> str:
    """How the reader runs zhibao from here: `zhibao` when it is on the PATH, else this
    checkout's scripts/zhibao wrapper (no PATH needed), else `zhibao`."""
    if shutil.which("zhibao"):
        return "zhibao"
    wrapper = Path(__file__).resolve().parents[1] / "scripts" / "zhibao"
    return _shown(wrapper) if wrapper.is_file() else "zhibao"


def _shown(path: Path) -> str:
    """`path` as the reader would type it here: relative under the current folder, else
    absolute; quoted for the shell when it needs to be."""
    try:
        shown = str(path.relative_to(Path.cwd().resolve()))
        if os.sep not in shown and path.name == "zhibao":
            shown = "./" + shown  # a bare `zhibao` would be looked up on the PATH
    except ValueError:
        shown = str(path)
    return shlex.quote(shown)
