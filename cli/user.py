"""`zhibao user add|list|remove` (DESIGN §8): the people who may open this node's desk
(served by `zhibao serve` under /desk/). Node-local: nothing of it goes in the log."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cli.common import echo, home_option, json_option, node_at, print_json, print_table
from cli.help import h
from sync.protocol import i18n
from tiers.desk import users

i18n.register(
    {
        "cli.user.password": ("Password", "密码"),
        "cli.user.repeat": ("Password again", "再次输入密码"),
        "cli.user.added": ("Added {name} ({role}).", "已添加 {name}（{role}）。"),
        "cli.user.removed": (
            "Removed {name}; their sessions ended.",
            "已删除 {name}，其会话已结束。",
        ),
        "cli.user.none": (
            "No users yet: zhibao user add NAME --role admin|viewer",
            "尚无用户：zhibao user add 用户名 --role admin|viewer",
        ),
        "cli.user.headers": ("name|role|created", "用户名|角色|创建时间"),
    }
)


@click.group("user", help=h(
    "People who may log in to this node's desk in a browser.",
    "可登录本节点网页工作台的人员。",
))  # fmt: skip
def user_group() -> None:
    pass


def _read_password() -> str:
    """Twice on a terminal (hidden); else the first line of standard input."""
    if sys.stdin.isatty():
        first: str = click.prompt(i18n.t("cli.user.password"), hide_input=True, err=True)
        users.check_password(first)
        again: str = click.prompt(i18n.t("cli.user.repeat"), hide_input=True, err=True)
        if first != again:
            raise users.DeskError("desk.user.mismatch")
        return first
    line = sys.stdin.readline()
    if not line:
        raise users.DeskError("desk.user.no_password")
    return line.rstrip("\r\n")


@user_group.command("add", help=h(
    "Add a person; the password is asked twice on a terminal, else read from the first line "
    "of standard input.",
    "添加人员；在终端上输入两次密码，否则从标准输入的第一行读取。",
))  # fmt: skip
@click.argument("name")
@click.option("--role", type=click.Choice(users.ROLES), required=True,
              help=h("admin or viewer.", "admin（管理员）或 viewer（查看者）。"))  # fmt: skip
@home_option
def add_command(name: str, role: str, home: Path | None) -> None:
    users.check_name(name)
    password = _read_password()
    with node_at(home) as node:
        made = users.add_user(node.store, name, role, password, node.clock.now().isoformat())
    echo(i18n.t("cli.user.added", name=made.name, role=i18n.t("desk.role." + made.role)))


@user_group.command("list", help=h("The people who may log in.", "可登录的人员。"))
@home_option
@json_option
def list_command(home: Path | None, as_json: bool) -> None:
    with node_at(home) as node:
        people = users.list_users(node.store)
    if as_json:
        print_json([p.to_json() for p in people])
        return
    if not people:
        echo(i18n.t("cli.user.none"))
        return
    rows = [[p.name, i18n.t("desk.role." + p.role), p.created_at] for p in people]
    print_table(i18n.t("cli.user.headers").split("|"), rows)


@user_group.command("remove", help=h(
    "Remove a person and end their sessions.", "删除人员并结束其会话。"
))  # fmt: skip
@click.argument("name")
@home_option
def remove_command(name: str, home: Path | None) -> None:
    with node_at(home) as node:
        users.remove_user(node.store, name)
    echo(i18n.t("cli.user.removed", name=name))
