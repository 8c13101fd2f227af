"""`zhibao init` and `zhibao node show|enroll`."""

from __future__ import annotations

import shlex
from pathlib import Path

import click
from click.core import ParameterSource

from cli.common import (
    display_width,
    echo,
    home_option,
    json_option,
    node_at,
    print_json,
    warn,
    warn_if_exposed,
)
from cli.help import h
from sync import rekey, revocation, trust
from sync.node import resolve_home
from sync.protocol import i18n
from sync.protocol.errors import EnrolmentError
from sync.protocol.ids import parent_of
from tiers.catalogue import tier_label
from tiers.node import create_home

# `node show`'s lines, in this order, each with its label in both languages
SHOWN = {
    "node_id": ("Node id", "节点编号"),
    "tier": ("Tier", "层级"),
    "name": ("Name", "名称"),
    "parent_id": ("Parent", "上级节点"),
    "public_key": ("Public key", "身份公钥"),
    "seal_key": ("Seal key", "加密公钥"),
    "parent_url": ("Parent's address", "上级地址"),
    "root_key": ("Root key (the city's)", "根公钥（市级）"),
}
i18n.register({f"node.label.{key}": labels for key, labels in SHOWN.items()})

i18n.register(
    {
        "node.created": (
            "Created {tier} node {node_id} ({name}) at {home}.",
            "已在 {home} 创建{tier}节点 {node_id}（{name}）。",
        ),
        "node.created_next": (
            "Next: its parent enrols it — `zhibao node show` here prints the command to run "
            "there; then `zhibao sync`.",
            "下一步：由上级节点登记本节点——在本节点运行 `zhibao node show` 可看到要在上级运行"
            "的命令；然后运行 `zhibao sync`。",
        ),
        "node.created_next_city": (
            "Next: publish the catalogue (`zhibao catalogue import FILE`); towns pin the "
            "root key `zhibao node show` prints.",
            "下一步：发布事项目录（`zhibao catalogue import 文件`）；镇节点初始化时固定 "
            "`zhibao node show` 显示的根公钥。",
        ),
        "node.enrolled_unsealed": (
            "warning: {node_id} is enrolled without a seal key: nothing can be sent to it "
            "sealed (sync, bundles) — enrol it again with --seal-key (from its `zhibao node "
            "show`), or it must sync with --plain.",
            "警告：{node_id} 登记时没有加密密钥：无法向其发送加密数据（同步、数据包）——请用 "
            "--seal-key（见其 `zhibao node show`）重新登记，否则只能用 --plain 同步。",
        ),
        "node.show.enrol_hint": (
            "To enrol this node, run at its parent ({parent}):",
            "在上级节点（{parent}）运行以下命令登记本节点：",
        ),
        "node.show.root_hint": (
            "Towns and villages pin this key: `zhibao init … --root-key {key}`",
            "镇、村节点初始化时固定此公钥：`zhibao init … --root-key {key}`",
        ),
        "node.enrolled": (
            "Enrolled {node_id} ({name}) as entry #{seq}.",
            "已登记 {node_id}（{name}），条目 #{seq}。",
        ),
    }
)


def _show(node_home: Path | None) -> dict[str, object]:
    with node_at(node_home) as node:
        return {
            "node_id": node.node_id,
            "tier": node.config.tier,
            "name": node.config.name,
            "parent_id": node.config.parent_id,
            "public_key": node.signer.public.hex(),
            "seal_key": node.seal.public_key().public_bytes_raw().hex(),
            "parent_url": node.config.parent_url,
            "root_key": node.config.root_key,
        }


@click.command(
    "init",
    help=h(
        "Create a node's home: database, identity key, seal key, settings.",
        "创建节点目录：数据库、身份密钥、加密密钥、设置。",
    ),
)
@click.option(
    "--tier",
    type=click.Choice(["city", "town", "village"]),
    required=True,
    help=h("The node's tier.", "节点层级。"),
)
@click.option(
    "--node-id",
    required=True,
    help=h(
        "Division code: 6 digits city, 9 town, 12 village.",
        "区划代码：市 6 位，镇 9 位，村 12 位。",
    ),
)
@click.option("--name", required=True, help=h("The centre's name.", "服务中心名称。"))
@click.option(
    "--parent", "parent_id", default=None, help=h("The parent node's id.", "上级节点编号。")
)
@click.option(
    "--parent-url",
    default=None,
    help=h(
        "The parent's sync address (its `zhibao serve`), e.g. http://192.168.1.10:8750.",
        "上级的同步地址（其 `zhibao serve`），如 `http://192.168.1.10:8750`。",
    ),
)
@click.option(
    "--root-key",
    default=None,
    help=h(
        "The city's public key (hex, from the city's `zhibao node show`), pinned.",
        "市级公钥（十六进制，见市级节点的 `zhibao node show`），初始化时固定。",
    ),
)
@click.option(
    "--store",
    envvar="ZHIBAO_STORE",
    default=None,
    metavar="URL",
    help=h(
        "A city only: keep its store in this PostgreSQL database, "
        "`postgresql://USER[:PASSWORD]@HOST[:PORT]/DB` (empty, holding no zhibao log), instead "
        "of node.db; default $ZHIBAO_STORE (which towns and villages ignore). The password "
        "goes to store.pgpass in the home (0600), never into node.toml.",
        "仅限市级节点：数据保存在此数据库 "
        "`postgresql://用户[:密码]@主机[:端口]/数据库`（须为空，不含 zhibao 日志），而非 "
        "node.db；默认取 $ZHIBAO_STORE（镇、村节点忽略此变量）。密码写入主目录中的 "
        "store.pgpass（0600），不写入 node.toml。",
    ),
)
@home_option
@json_option
@click.pass_context
def init_command(
    ctx: click.Context,
    tier: str,
    node_id: str,
    name: str,
    parent_id: str | None,
    parent_url: str | None,
    root_key: str | None,
    store: str | None,
    home: Path | None,
    as_json: bool,
) -> None:
    where = resolve_home(home)
    if tier != "city" and ctx.get_parameter_source("store") is ParameterSource.ENVIRONMENT:
        store = None  # $ZHIBAO_STORE names the city's database; a town here keeps node.db
    node = create_home(
        where,
        tier=tier,
        node_id=node_id,
        name=name,
        parent_id=parent_id,
        parent_url=parent_url,
        root_key=root_key,
        store=store,
    )
    node.close()
    if as_json:
        print_json(_show(where))  # node_at warns if the home existed before, open to others
    else:
        warn_if_exposed(where)
        label = tier_label(tier)
        echo(i18n.t("node.created", tier=label, node_id=node_id, name=name, home=where))
        echo(i18n.t("node.created_next_city" if tier == "city" else "node.created_next"))


@click.group(
    "node",
    help=h(
        "This node's identity, and enrolment of the nodes below it.",
        "本节点的身份，以及下级节点的登记。",
    ),
)
def node_group() -> None:
    pass


@node_group.command(
    "show",
    help=h(
        "Print this node's id, tier, name, parent and public keys, and how to enrol it.",
        "显示本节点的编号、层级、名称、上级和公钥，以及登记本节点的命令。",
    ),
)
@home_option
@json_option
def show_command(home: Path | None, as_json: bool) -> None:
    info = _show(home)
    if as_json:
        print_json(
            {k: info[k] for k in ("node_id", "tier", "name", "parent_id", "public_key", "seal_key")}
        )
        return
    labels = {key: i18n.t(f"node.label.{key}") for key in SHOWN}
    width = max(display_width(label) for label in labels.values())
    for key, label in labels.items():
        value = info[key] if key != "tier" else tier_label(str(info[key]))
        pad = " " * (width - display_width(label))
        echo(f"{label}{pad}  {value if value is not None else '-'}")
    echo()
    if info["parent_id"] is None:
        echo(i18n.t("node.show.root_hint", key=info["public_key"]))
        return
    echo(i18n.t("node.show.enrol_hint", parent=info["parent_id"]))
    words = ["zhibao", "node", "enroll", "--node-id", info["node_id"], "--name", info["name"],
             "--public-key", info["public_key"], "--seal-key", info["seal_key"]]  # fmt: skip
    echo("  " + shlex.join(str(word) for word in words))


@node_group.command(
    "enroll",
    help=h(
        "Enrol a node directly below this one (signed into this node's log).",
        "登记直属下级节点（签入本节点日志）。",
    ),
)
@click.option(
    "--node-id", required=True, help=h("The child's id (from its `node show`).", "下级节点编号。")
)
@click.option("--name", required=True, help=h("The child centre's name.", "下级服务中心名称。"))
@click.option(
    "--public-key",
    required=True,
    help=h("The child's identity key (hex).", "下级节点的身份公钥（十六进制）。"),
)
@click.option(
    "--seal-key",
    default=None,
    help=h(
        "The child's seal key (hex), for sealed bundles.",
        "下级节点的加密公钥（十六进制），用于加密数据包。",
    ),
)
@click.option(
    "--continue-from",
    type=click.IntRange(min=1),
    default=None,
    metavar="SEQ",
    help=h(
        "A new key for a node already enrolled (its key lost or stolen): the new key "
        "signs its entries after SEQ; after a revocation, SEQ is the revocation's cut-off.",
        "为已登记节点换新密钥（原密钥丢失或被盗）：新密钥签署 SEQ 之后的条目；"
        "吊销之后，SEQ 即吊销的截止序号。",
    ),
)
@click.option(
    "--at",
    "at",
    default=None,
    metavar="ISO-TIME",
    help=h("When it happened (default now).", "发生时间（默认为现在）。"),
)
@home_option
@json_option
def enroll_command(
    node_id: str,
    name: str,
    public_key: str,
    seal_key: str | None,
    continue_from: int | None,
    at: str | None,
    home: Path | None,
    as_json: bool,
) -> None:
    with node_at(home) as node:
        body = trust.enrolment_body(node_id, name, public_key, seal_key, continue_from)
        if parent_of(node_id) != node.node_id:
            raise EnrolmentError("enrol.not_below", origin=node.node_id, node_id=node_id)
        with node.store.transaction():
            revocation.check_replacement(node, node_id, public_key, continue_from)
            entry = node.append(trust.ENROLLED, body, at=node.clock.stamp(at) if at else None)
    if not seal_key:
        warn(i18n.t("node.enrolled_unsealed", node_id=node_id))
    if as_json:
        print_json({"node_id": node_id, "seq": entry.seq, **body})
    else:
        echo(i18n.t("node.enrolled", node_id=node_id, name=name, seq=entry.seq))


@node_group.command(
    "revoke",
    help=h(
        "Revoke a node's key: nothing it signs after the cut-off is accepted anywhere.",
        "吊销节点密钥：截止序号之后它签署的内容在任何节点都不被接受。",
    ),
)
@click.option(
    "--node-id",
    required=True,
    help=h("The node whose key is revoked (below this one).", "被吊销密钥的节点（本节点下级）。"),
)
@click.option(
    "--reason",
    required=True,
    help=h(
        "Why (a stolen PC, a leaked key …); kept in the log.",
        "原因（电脑被盗、密钥泄露……），记入日志。",
    ),
)
@click.option(
    "--after-seq",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help=h(
        "Entries it signs after seq N are refused (default: what this node holds of its log).",
        "拒绝其签署的序号 N 之后的条目（默认：本节点持有的其日志位置）。",
    ),
)
@click.option(
    "--at",
    "at",
    default=None,
    metavar="ISO-TIME",
    help=h("When it happened (default now).", "发生时间（默认为现在）。"),
)
@home_option
@json_option
def revoke_command(
    node_id: str,
    reason: str,
    after_seq: int | None,
    at: str | None,
    home: Path | None,
    as_json: bool,
) -> None:
    with node_at(home) as node:
        entry, body = revocation.revoke(
            node, node_id, reason, after_seq, at=node.clock.stamp(at) if at else None
        )
    if as_json:
        print_json({"seq": entry.seq, **body})
    else:
        echo(i18n.t("revoke.done", node_id=node_id, cut=body["after_seq"], seq=entry.seq))


@node_group.command(
    "rekey",
    help=h(
        "Rotate this node's key: the old key vouches for the new one in the log.",
        "轮换本节点密钥：旧密钥在日志中为新密钥担保。",
    ),
)
@home_option
@json_option
def rekey_command(home: Path | None, as_json: bool) -> None:
    with node_at(home) as node:
        public, seq = rekey.rotate(node)
    if as_json:
        print_json({"node_id": node.node_id, "public_key": public, "seq": seq})
    else:
        echo(i18n.t("rekey.done", public_key=public, seq=seq))
