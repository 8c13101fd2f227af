"""`zhibao init` and `zhibao node show|enroll`."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import echo, home_option, json_option, node_at, print_json, warn, warn_if_exposed
from sync import rekey, revocation, trust
from sync.node import resolve_home
from sync.protocol import i18n
from sync.protocol.errors import EnrolmentError
from sync.protocol.ids import parent_of
from tiers.node import create_home

i18n.register(
    {
        "node.created": (
            "Created {tier} node {node_id} ({name}) at {home}.",
            "已在 {home} 创建{tier}节点 {node_id}（{name}）。",
        ),
        "node.enrolled_unsealed": (
            "warning: {node_id} is enrolled without a seal key: nothing can be sent to it "
            "sealed (sync, bundles) — enrol it again with --seal-key (from its `zhibao node "
            "show`), or it must sync with --plain.",
            "警告：{node_id} 登记时没有加密密钥：无法向其发送加密数据（同步、数据包）——请用 "
            "--seal-key（见其 `zhibao node show`）重新登记，否则只能用 --plain 同步。",
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


@click.command("init")
@click.option("--tier", type=click.Choice(["city", "town", "village"]), required=True)
@click.option("--node-id", required=True, help="Division code: 6 digits city, 9 town, 12 village.")
@click.option("--name", required=True)
@click.option("--parent", "parent_id", default=None, help="The parent node's id.")
@click.option("--parent-url", default=None, help="The parent's sync URL.")
@click.option("--root-key", default=None, help="The city's public key (hex), pinned.")
@home_option
@json_option
def init_command(
    tier: str,
    node_id: str,
    name: str,
    parent_id: str | None,
    parent_url: str | None,
    root_key: str | None,
    home: Path | None,
    as_json: bool,
) -> None:
    """Create a node's home: database, identity key, seal key, settings."""
    where = resolve_home(home)
    node = create_home(
        where,
        tier=tier,
        node_id=node_id,
        name=name,
        parent_id=parent_id,
        parent_url=parent_url,
        root_key=root_key,
    )
    node.close()
    if as_json:
        print_json(_show(where))  # node_at warns if the home existed before, open to others
    else:
        warn_if_exposed(where)
        echo(i18n.t("node.created", tier=tier, node_id=node_id, name=name, home=where))


@click.group("node")
def node_group() -> None:
    """This node's identity, and enrolment of the nodes below it."""


@node_group.command("show")
@home_option
@json_option
def show_command(home: Path | None, as_json: bool) -> None:
    """Print this node's id, tier, name, parent and public keys."""
    info = _show(home)
    if as_json:
        print_json(
            {k: info[k] for k in ("node_id", "tier", "name", "parent_id", "public_key", "seal_key")}
        )
        return
    for key, value in info.items():
        echo(f"{key:11} {value if value is not None else '-'}")


@node_group.command("enroll")
@click.option("--node-id", required=True)
@click.option("--name", required=True)
@click.option("--public-key", required=True, help="The child's identity key (hex).")
@click.option("--seal-key", default=None, help="The child's seal key (hex), for sealed bundles.")
@click.option(
    "--continue-from",
    type=click.IntRange(min=1),
    default=None,
    metavar="SEQ",
    help="A new key for a node already enrolled (its key lost or stolen): the new key "
    "signs its entries after SEQ; after a revocation, SEQ is the revocation's cut-off.",
)
@click.option("--at", "at", default=None, metavar="ISO-TIME")
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
    """Enrol a node directly below this one (signed into this node's log)."""
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


@node_group.command("revoke")
@click.option("--node-id", required=True, help="The node whose key is revoked (below this one).")
@click.option("--reason", required=True, help="Why (a stolen PC, a leaked key …); kept in the log.")
@click.option(
    "--after-seq",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Entries it signs after seq N are refused (default: what this node holds of its log).",
)
@click.option("--at", "at", default=None, metavar="ISO-TIME")
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
    """Revoke a node's key: nothing it signs after the cut-off is accepted anywhere."""
    with node_at(home) as node:
        entry, body = revocation.revoke(
            node, node_id, reason, after_seq, at=node.clock.stamp(at) if at else None
        )
    if as_json:
        print_json({"seq": entry.seq, **body})
    else:
        echo(i18n.t("revoke.done", node_id=node_id, cut=body["after_seq"], seq=entry.seq))


@node_group.command("rekey")
@home_option
@json_option
def rekey_command(home: Path | None, as_json: bool) -> None:
    """Rotate this node's key: the old key vouches for the new one in the log."""
    with node_at(home) as node:
        public, seq = rekey.rotate(node)
    if as_json:
        print_json({"node_id": node.node_id, "public_key": public, "seq": seq})
    else:
        echo(i18n.t("rekey.done", public_key=public, seq=seq))
