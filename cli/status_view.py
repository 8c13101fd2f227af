"""`zhibao status` as a person reads it: the link first (is the parent reachable, since
when not, what is still waiting for its receipt), then the logs held, then anything that
needs an admin. Every label in the reader's language; `--json` keeps the keys (cli.sync).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from cli.common import display_width, echo, print_table
from sync import link
from sync.protocol import i18n
from tiers.catalogue import tier_label

i18n.register(
    {
        "status.label.node": ("node", "节点"),
        "status.label.store": ("store", "存储"),
        "status.label.parent": ("parent", "上级"),
        "status.label.link": ("link", "连接"),
        "status.label.last_attempt": ("last attempt", "上次尝试"),
        "status.label.last_success": ("last success", "上次成功"),
        "status.label.last_error": ("last error", "上次错误"),
        "status.label.backlog": ("backlog", "待确认"),
        "status.label.clock": ("clock offset", "时钟偏差"),
        "status.label.restoring": ("restoring", "恢复中"),
        "status.node_line": ("{node_id} {name} ({tier})", "{node_id} {name}（{tier}）"),
        "status.no_parent": ("none (top of the network)", "无（网络顶层）"),
        "status.link.ok": ("working", "正常"),
        "status.link.never": ("no sync yet", "尚未同步"),
        "status.link.none": ("no parent to sync with", "没有上级可同步"),
        "status.link.failing": (
            "FAILING: {count} rounds in a row failed, since {since}",
            "连接失败：自 {since} 起连续失败 {count} 次",
        ),
        "status.link.failing.one": (
            "FAILING: the last round failed ({since})",
            "连接失败：上一轮同步失败（{since}）",
        ),
        "status.when": ("{at} ({age})", "{at}（{age}）"),
        "status.when_with": ("{at} ({age}) with {peer}", "{at}（{age}），对方 {peer}"),
        "status.error_line": ("{when}: {message}", "{when}：{message}"),
        "status.backlog": (
            "{count} entries not yet acknowledged by the parent",
            "{count} 条尚未获上级确认",
        ),
        "status.backlog.one": (
            "{count} entry not yet acknowledged by the parent",
            "{count} 条尚未获上级确认",
        ),
        "status.backlog_none": ("nothing: the parent holds everything", "无：上级已全部持有"),
        "status.restoring_yes": (
            "yes: recording is stopped until `zhibao restore` has caught up",
            "是：`zhibao restore` 完成前停止记录",
        ),
        "status.logs": ("logs held here:", "本机持有的日志："),
        "status.col.origin": ("origin", "来源"),
        "status.col.held": ("held", "持有至"),
        "status.col.acknowledged": ("acknowledged by the parent", "上级已确认至"),
        "status.col.waiting": ("waiting", "待确认"),
        "status.network": ("network:", "网络状况："),
        "status.col.node": ("node", "节点"),
        "status.col.name": ("name", "名称"),
        "status.col.state": ("state", "状态"),
        "status.col.last_heard": ("last heard", "最近消息"),
        "status.col.last_case": ("last case", "最近办件"),
        "status.col.entries": ("entries", "条目数"),
        "status.col.lag": ("lag s", "滞后秒数"),
        "status.col.forwards": ("forwards in/out", "上报 收/发"),
        "status.col.forks": ("forks", "分叉"),
        "status.col.warnings": ("yellow/red", "黄牌/红牌"),
        "status.fork": (
            "FORK {origin}#{seq} detected {detected_at} ({state}; see `zhibao fork list`)",
            "分叉 {origin}#{seq}，{detected_at} 发现（{state}；见 `zhibao fork list`）",
        ),
        "status.revoked": (
            "revoked: {node_id} after seq {after_seq}, by {by} ({reason})",
            "已吊销：{node_id}，序号 {after_seq} 之后，由 {by} 吊销（{reason}）",
        ),
        "status.revoked_used": (
            "REVOKED KEY USED: {node_id} {count}× ({how}, via {via}), last {last_at}",
            "已吊销密钥被使用：{node_id} {count} 次（{how}，经由 {via}），最近 {last_at}",
        ),
        "status.materials": (
            "materials: {here} here, {on_the_way} on the way, {missing} MISSING, {dropped} "
            "handed up; {not_receipted_by_parent} not receipted by the parent yet",
            "材料：本机 {here} 份，传输中 {on_the_way} 份，缺失 {missing} 份，已上交 {dropped} 份；"
            "上级尚未回执 {not_receipted_by_parent} 份",
        ),
        "status.network_limits": (
            "quiet: no case for {quiet_days} days; silent: nothing heard for {stale_days} days",
            "无办件：{quiet_days} 天内没有办件记录；失联：{stale_days} 天内没有任何消息",
        ),
        "liveness.alive": ("alive", "正常"),
        "liveness.quiet": ("quiet", "无办件"),
        "liveness.silent": ("silent", "失联"),
        "liveness.revoked": ("REVOKED", "已吊销"),
        "status.quarantined": (
            "SET ASIDE {count} from {origin} (#{first_seq}-#{last_seq}), latest {last_at}:"
            " {detail}",
            "未采用 {origin} 的 {count} 条（#{first_seq}—#{last_seq}），最近 {last_at}：{detail}",
        ),
    }
)


_ENGINES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}  # names, the same in every language


def _when(at: str | None, now: datetime, peer: str | None = None) -> str:
    if not at:
        return "-"
    age = link.age_text(at, now)
    if not age:
        return at
    if peer:
        return i18n.t("status.when_with", at=at, age=age, peer=peer)
    return i18n.t("status.when", at=at, age=age)


def link_fields(info: dict[str, Any], now: datetime) -> list[tuple[str, str]]:
    """(label, value) lines for the node and its link to the parent."""
    state = info["link"]
    parent = state["parent_id"]
    tier = tier_label(info["tier"]) if info.get("tier") else "-"
    fields = [("node", i18n.t("status.node_line", node_id=info["node_id"], name=info["name"],
                              tier=tier))]  # fmt: skip
    if info.get("store"):
        fields.append(("store", _ENGINES.get(info["store"], info["store"])))
    if parent is None and state["state"] == "never":
        fields.append(("parent", i18n.t("status.no_parent")))
        fields.append(("link", i18n.t("status.link.none")))
    else:
        if parent is not None:
            fields.append(("parent", f"{parent} {state['parent_url'] or ''}".rstrip()))
        if state["state"] == "failing":
            since = state["failing_since"] or "-"
            said = i18n.tn("status.link.failing", state["failures"], since=since)
        else:
            said = i18n.t(f"status.link.{state['state']}")
        fields.append(("link", said))
        fields.append(
            ("last_attempt", _when(state["last_attempt"], now, state["last_attempt_peer"]))
        )
        fields.append(("last_success", _when(state["last_success"], now)))
        error = state["last_error"]
        if error is not None:
            message = i18n.t("status.error_line", when=_when(error["at"], now),
                             message=error["message"])  # fmt: skip
            fields.append(("last_error", message))
    if parent is not None:
        waiting = info["backlog"]
        said = i18n.tn("status.backlog", waiting) if waiting else i18n.t("status.backlog_none")
        fields.append(("backlog", said))
    fields.append(("clock", i18n.t("unit.seconds", value=info["clock_offset_seconds"])))
    if info.get("restoring"):
        fields.append(("restoring", i18n.t("status.restoring_yes")))
    return [(i18n.t(f"status.label.{key}"), value) for key, value in fields]


def print_fields(fields: list[tuple[str, str]]) -> None:
    """Labels in one column (display width: CJK counts two), values after them."""
    width = max((display_width(label) for label, _ in fields), default=0)
    for label, value in fields:
        echo(label + " " * (width - display_width(label)) + "  " + value)


def print_status(info: dict[str, Any], now: datetime, *, calendar_line: str) -> None:
    """The whole text of `zhibao status`."""
    print_fields(link_fields(info, now))
    echo()
    echo(i18n.t("status.logs"))
    acked = info["acknowledged"]
    has_parent = info["link"]["parent_id"] is not None
    headers = ["origin", "held"] + (["acknowledged", "waiting"] if has_parent else [])
    rows: list[list[Any]] = []
    for origin, seq in info["heads"].items():
        row: list[Any] = [origin, seq]
        if has_parent:
            waiting = info["backlog_by_origin"].get(origin)
            row += [acked.get(origin, "-"), waiting if waiting else ""]
        rows.append(row)
    indent = "  "  # under its heading, apart from the network's rows (also node ids)
    print_table(
        [indent * (i == 0) + i18n.t(f"status.col.{h}") for i, h in enumerate(headers)],
        [[indent + str(row[0]), *row[1:]] for row in rows],
    )
    if info["forks"]:
        import cli.fork  # noqa: F401  (the fork states' words; loaded only when needed)
    for fork in info["forks"]:
        state = i18n.t(f"fork.state.{fork.get('state') or 'unresolved'}")
        echo(i18n.t("status.fork", **{**fork, "state": state}))
    for held in info["quarantined_counts"]:
        echo(i18n.t("status.quarantined", **held))
    for cut in info["revocations"]:
        echo(i18n.t("status.revoked", **cut))
    for use in info["revoked_key_used"] + info["revoked_key_used_reported"]:
        echo(i18n.t("status.revoked_used", **use))
    echo(calendar_line)
    held = info["materials"]
    if any(held[k] for k in ("here", "on_the_way", "missing", "dropped")):
        echo(i18n.t("status.materials", **held))
    network = info.get("network")
    if network:
        _print_network(network)


def _print_network(network: dict[str, Any]) -> None:
    click.echo(i18n.t("status.network"))
    columns = ["node", "name", "state", "last_heard", "last_case", "entries", "lag",
               "forwards", "forks", "warnings"]  # fmt: skip
    print_table(
        [i18n.t(f"status.col.{c}") for c in columns],
        [
            [
                n["node_id"],
                n["name"],
                i18n.t("liveness.revoked" if n["revoked"] else f"liveness.{n['liveness']}"),
                n["last_heard"] or "-",
                n["last_case_at"] or "-",
                n["entries_held"],
                n["lag_seconds"] if n["lag_seconds"] is not None else "-",
                f"{n['open_forwards_in']}/{n['open_forwards_out']}",
                n["forks"],
                f"{n['warnings']['yellow']}/{n['warnings']['red']}",
            ]
            for n in network["nodes"]
        ],
    )
    echo(i18n.t("status.network_limits", **network["limits"]))
