"""`zhibao serve`, `zhibao sync`, `zhibao status`."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cli.common import echo, home_option, json_option, node_at, print_json, print_table, warn
from sync import trust
from sync.node import resolve_home
from sync.protocol import i18n
from sync.protocol.errors import HomeError
from sync.status import node_status
from tiers import materials, provisional
from tiers.node import open_home

if TYPE_CHECKING:
    from sync.round import RoundSummary

i18n.register(
    {
        "serve.listening": ("zhibao {node_id} serving on {url}", "zhibao {node_id} 服务地址 {url}"),
        "sync.no_parent": (
            "No parent URL: give --peer URL or set parent_url in node.toml.",
            "没有上级地址：请用 --peer 指定，或在 node.toml 中设置 parent_url。",
        ),
        "sync.done": (
            "Synced with {peer}: pushed {pushed}, pulled {pulled} entries ({kb} KB on the wire).",
            "已与 {peer} 同步：上传 {pushed} 条，下载 {pulled} 条（传输 {kb} KB）。",
        ),
        "sync.rejected": ("refused {origin}#{seq}: {reason}", "被拒绝 {origin}#{seq}：{reason}"),
        "sync.materials": (
            "Materials: sent {sent} ({sent_kb} KB), received {received} ({received_kb} KB).",
            "材料：上传 {sent} 份（{sent_kb} KB），接收 {received} 份（{received_kb} KB）。",
        ),
        "sync.materials_left": (
            "{left} material(s) still on the way: the next round goes on where this one stopped.",
            "尚有 {left} 份材料在传输中：下一轮从本轮停止处继续。",
        ),
        "sync.materials_dropped": (
            "{dropped} material(s) receipted by the parent: the copies here were let go.",
            "{dropped} 份材料已获上级回执：本机副本已清理。",
        ),
        "sync.material_refused": (
            "material {short} not moved: {reason}",
            "材料 {short} 未传输：{reason}",
        ),
        "sync.retrying": (
            "link problem: {error}; retrying in {seconds:.0f} s",
            "连接问题：{error}；{seconds:.0f} 秒后重试",
        ),
        "status.network": ("network:", "网络状况："),
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
        "sync.pushing": ("pushing entries", "正在上传条目"),
        "serve.plain": (
            "--plain: this node takes and sends sync bodies in the clear (names, ID numbers, "
            "phone numbers readable on the line); use it only on a trusted link",
            "--plain：本节点以明文收发同步数据（线路上可读取姓名、身份证号、电话）；"
            "仅在可信线路上使用",
        ),
    }
)


class _Progress:
    """click's progress bar on stderr for a push that is long enough to wait for."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.done = 0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != "push" or total < 5_000:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=i18n.t("sync.pushing"),
                                         file=sys.stderr, show_pos=True)  # fmt: skip
            self.bar.__enter__()
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _report(summary: RoundSummary, as_json: bool) -> None:
    for warning in summary.warnings:
        warn(warning)
    if as_json:
        print_json(summary.to_json())
        return
    echo(
        i18n.t(
            "sync.done",
            peer=summary.peer,
            pushed=summary.pushed,
            pulled=summary.pulled,
            kb=(summary.pushed_bytes + summary.pulled_bytes) // 1024,
        )
    )
    for r in summary.rejected:
        echo(i18n.t("sync.rejected", **r), err=True)
    _report_materials(summary)


def _report_materials(summary: RoundSummary) -> None:
    """What moved of the materials, when any did or could not (only receipted ones count as
    sent)."""
    sent, received = summary.materials_sent, summary.materials_received
    moved = summary.materials_sent_bytes + summary.materials_received_bytes
    if sent or received or moved:
        echo(
            i18n.t(
                "sync.materials", sent=sent, received=received,
                sent_kb=summary.materials_sent_bytes // 1024,
                received_kb=summary.materials_received_bytes // 1024,
            )
        )  # fmt: skip
    if summary.materials_left:
        echo(i18n.t("sync.materials_left", left=summary.materials_left))
    if summary.materials_dropped:
        echo(i18n.t("sync.materials_dropped", dropped=summary.materials_dropped))
    for refused in summary.materials_refused:
        sha = refused["sha256"]
        reason = i18n.t(refused["reason"], sha256=sha[:12])
        echo(i18n.t("sync.material_refused", short=sha[:12], reason=reason), err=True)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8750, type=int, show_default=True, help="0 picks a free port.")
@click.option(
    "--interval",
    default=30.0,
    type=float,
    show_default=True,
    help="Seconds between background syncs with the parent.",
)
@click.option(
    "--plain",
    is_flag=True,
    help="Take plain (unsealed) bodies and sync upward in the clear: personal data readable "
    "on the line.",
)
@home_option
def serve_command(host: str, port: int, interval: float, plain: bool, home: Path | None) -> None:
    """Serve this node's sync endpoint; sync upward in the background if it has a parent."""
    from sync.server import log_line
    from sync.service import bind, serve  # the server stack loads only for `serve`

    where = resolve_home(home)
    with node_at(home) as node:
        node_id, parent_url = node.node_id, node.config.parent_url
    sock = bind(host, port)  # a busy port or a bad host: ZhibaoError, one line, exit 1
    bound = sock.getsockname()
    click.echo(i18n.t("serve.listening", node_id=node_id, url=f"http://{host}:{bound[1]}"))
    sys.stdout.flush()
    if plain:
        log_line("serve.plain")

    def on_error(exc: Exception, seconds: float) -> None:  # a server's log: stamped lines
        log_line("sync.retrying", error=str(exc), seconds=seconds)

    serve(
        lambda: open_home(where),
        sock,
        parent_url=parent_url,
        interval=interval,
        on_error=on_error,
        plain=plain,
    )


@click.command("sync")
@click.option("--peer", default=None, help="Sync with this URL instead of the parent.")
@click.option("--watch", "keep_going", is_flag=True, help="Keep syncing, retrying with backoff.")
@click.option("--interval", default=30.0, type=float, show_default=True)
@click.option(
    "--plain",
    is_flag=True,
    help="Send bodies unsealed (the peer must serve --plain): personal data readable on the line.",
)
@home_option
@json_option
def sync_command(
    peer: str | None,
    keep_going: bool,
    interval: float,
    plain: bool,
    home: Path | None,
    as_json: bool,
) -> None:
    """Run one round with the parent (or --peer): push what it lacks, pull what concerns us."""
    from sync.round import sync_round
    from sync.service import watch

    where = resolve_home(home)
    with node_at(home) as node:
        url = peer or node.config.parent_url
        if not url:
            raise HomeError("sync.no_parent")
        if not keep_going:
            progress = _Progress()
            try:
                summary = sync_round(node, url, progress=progress, plain=plain)
            finally:
                progress.close()
            _report(summary, as_json)
            if summary.rejected:
                raise SystemExit(1)
            return

    def on_error(exc: Exception, seconds: float) -> None:
        echo(i18n.t("sync.retrying", error=str(exc), seconds=seconds), err=True)

    stop = threading.Event()
    try:
        watch(
            lambda: open_home(where),
            url,
            interval=interval,
            stop=stop,
            on_round=lambda s: _report(s, as_json),
            on_error=on_error,
            plain=plain,
        )
    except KeyboardInterrupt:
        stop.set()


@click.command("status")
@home_option
@json_option
def status_command(home: Path | None, as_json: bool) -> None:
    """This node's heads, what the parent acknowledged, forks and last sync."""
    with node_at(home) as node:
        info = node_status(node)
        info["materials"] = materials.summary(node)
        info["calendar"] = provisional.calendar_status(node)
        if trust.children(node.store, node.node_id):
            from tiers.city.network import network_health

            info["network"] = network_health(node)
    if as_json:
        print_json(info)
        return
    for key in ("node_id", "tier", "name", "last_sync", "clock_offset_seconds", "unacknowledged"):
        echo(f"{key:<22} {info[key] if info[key] is not None else '-'}")
    echo("heads:")
    for origin, seq in info["heads"].items():
        ack = info["acknowledged"].get(origin)
        echo(
            f"  {origin:<14} {seq:>8}" + (f"  (acknowledged {ack})" if ack is not None else "")
        )
    for fork in info["forks"]:
        state = fork.get("state") or "unresolved"  # `zhibao fork list` tells more
        echo(i18n.t("status.fork", state=state, **fork))
    for held in info["quarantined_counts"]:
        echo(i18n.t("status.quarantined", **held))
    for cut in info["revocations"]:
        echo(i18n.t("status.revoked", **cut))
    for use in info["revoked_key_used"] + info["revoked_key_used_reported"]:
        echo(i18n.t("status.revoked_used", **use))
    echo(provisional.status_line(info["calendar"]))
    held = info["materials"]
    if any(held[k] for k in ("here", "on_the_way", "missing", "dropped")):
        echo(i18n.t("status.materials", **held))
    network = info.get("network")
    if network:
        click.echo(i18n.t("status.network"))
        print_table(
            [
                "node",
                "name",
                "state",
                "last heard",
                "last case",
                "entries",
                "lag s",
                "forwards in/out",
                "forks",
                "yellow/red",
            ],
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
