"""`zhibao serve`, `zhibao sync`, `zhibao status` (its text: cli.status_view)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cli.common import echo, home_option, json_option, node_at, print_json, warn
from cli.help import h
from cli.status_view import print_status
from sync import link, trust
from sync.node import resolve_home
from sync.node_store import store_kind
from sync.protocol import i18n
from sync.protocol.errors import HomeError
from sync.protocol.ids import tier_of
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
            "Synced with {peer}: {pushed} up, {pulled} down ({size} on the wire).",
            "已与 {peer} 同步：上传 {pushed}，下载 {pulled}（传输 {size}）。",
        ),
        "sync.entries": ("{count} entries", "{count} 条"),
        "sync.entries.one": ("{count} entry", "{count} 条"),
        "sync.material_count": ("{count} materials", "{count} 份"),
        "sync.material_count.one": ("{count} material", "{count} 份"),
        "sync.link_back": (
            "the link to {peer} works again (after {failures})",
            "与 {peer} 的连接已恢复（此前{failures}）",
        ),
        "sync.failed_rounds": ("{count} failed rounds", "失败 {count} 次"),
        "sync.failed_rounds.one": ("{count} failed round", "失败 {count} 次"),
        "sync.rejected": ("refused {origin}#{seq}: {reason}", "被拒绝 {origin}#{seq}：{reason}"),
        "sync.materials": (
            "Materials: sent {sent} ({sent_size}), received {received} ({received_size}).",
            "材料：上传 {sent}（{sent_size}），接收 {received}（{received_size}）。",
        ),
        "sync.materials_left": (
            "{count} materials still on the way: the next round goes on where this one stopped.",
            "尚有 {count} 份材料在传输中：下一轮从本轮停止处继续。",
        ),
        "sync.materials_left.one": (
            "{count} material still on the way: the next round goes on where this one stopped.",
            "尚有 {count} 份材料在传输中：下一轮从本轮停止处继续。",
        ),
        "sync.materials_dropped": (
            "{count} materials receipted by the parent: the copies here were let go.",
            "{count} 份材料已获上级回执：本机副本已清理。",
        ),
        "sync.materials_dropped.one": (
            "{count} material receipted by the parent: the copy here was let go.",
            "{count} 份材料已获上级回执：本机副本已清理。",
        ),
        "sync.material_refused": (
            "material {short} not moved: {reason}",
            "材料 {short} 未传输：{reason}",
        ),
        "sync.retrying": (
            "link problem: {error}; retrying in {wait}",
            "连接问题：{error}；{wait}后重试",
        ),
        "sync.pushing": ("pushing entries", "正在上传条目"),
        "serve.round": ("{line}", "{line}"),
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


def _done_line(summary: RoundSummary) -> str:
    return i18n.t(
        "sync.done",
        peer=summary.peer,
        pushed=i18n.tn("sync.entries", summary.pushed),
        pulled=i18n.tn("sync.entries", summary.pulled),
        size=link.size_text(summary.pushed_bytes + summary.pulled_bytes),
    )


def stamp() -> str:
    """The time a `sync --watch` line begins with (sync.logs: imported by the rounds that
    print it, not by `status`, which shares this module; logging is ~6 ms a start, #15)."""
    from sync import logs

    return logs.stamp()


def _report(summary: RoundSummary, as_json: bool, *, stamped: bool = False) -> None:
    """What a round did; `stamped` (sync --watch): each line begins with the time."""

    def say(text: str, err: bool = False) -> None:
        echo(f"{stamp()} {text}" if stamped else text, err=err)

    for warning in summary.warnings:
        warn(warning)
    if as_json:
        print_json(summary.to_json())
        return
    say(_done_line(summary))
    for r in summary.rejected:
        say(i18n.t("sync.rejected", **r), err=True)
    for line, err in _materials_lines(summary):
        say(line, err)


def _materials_lines(summary: RoundSummary) -> list[tuple[str, bool]]:
    """What moved of the materials, when any did or could not (only receipted ones count as
    sent): (line, for stderr)."""
    said: list[tuple[str, bool]] = []
    sent, received = summary.materials_sent, summary.materials_received
    moved = summary.materials_sent_bytes + summary.materials_received_bytes
    if sent or received or moved:
        said.append((i18n.t(
            "sync.materials", sent=i18n.tn("sync.material_count", sent),
            received=i18n.tn("sync.material_count", received),
            sent_size=link.size_text(summary.materials_sent_bytes),
            received_size=link.size_text(summary.materials_received_bytes),
        ), False))  # fmt: skip
    if summary.materials_left:
        said.append((i18n.tn("sync.materials_left", summary.materials_left), False))
    if summary.materials_dropped:
        said.append((i18n.tn("sync.materials_dropped", summary.materials_dropped), False))
    for refused in summary.materials_refused:
        sha = refused["sha256"]
        reason = i18n.t(refused["reason"], sha256=sha[:12])
        said.append((i18n.t("sync.material_refused", short=sha[:12], reason=reason), True))
    return said


class _ServeLog:
    """serve's background sync in its log: every failure with its wait, a round that moved
    something, and the first round that gets through after failures."""

    def __init__(self) -> None:
        self.failures = 0

    def error(self, exc: Exception, seconds: float) -> None:
        from sync.logs import log_line

        self.failures += 1
        log_line("sync.retrying", error=str(exc), wait=link.wait_text(seconds))

    def round(self, summary: RoundSummary) -> None:
        from sync.logs import log_line

        if self.failures:
            failed = i18n.tn("sync.failed_rounds", self.failures)
            log_line("sync.link_back", peer=summary.peer, failures=failed)
            self.failures = 0
        moved = summary.pushed or summary.pulled or summary.materials_sent
        if moved or summary.materials_received or summary.rejected:
            log_line("serve.round", line=_done_line(summary))
        for line, _ in _materials_lines(summary):
            log_line("serve.round", line=line)
        for r in summary.rejected:
            log_line("sync.rejected", **r)


@click.command(
    "serve",
    help=h(
        "Serve this node's sync endpoint (and GET /v1/health) and its desk under `/desk/` "
        "(login required: `zhibao user add`); sync upward in the background if it has a parent. "
        "The log on stderr is stamped with the time.",
        "提供本节点的同步接口、健康检查接口和 `/desk/` 下的网页工作台"
        "（需登录：`zhibao user add`）；有上级时在后台向上同步。标准错误上的日志带有时间。",
    ),
)
@click.option("--host", default="127.0.0.1", show_default=True,
              help=h("Address to listen on.", "监听地址。"))  # fmt: skip
@click.option("--port", default=8750, type=int, show_default=True,
              help=h("0 picks a free port.", "0 表示任选空闲端口。"))  # fmt: skip
@click.option(
    "--interval",
    default=30.0,
    type=float,
    show_default=True,
    help=h("Seconds between background syncs with the parent.", "后台与上级同步的间隔秒数。"),
)
@click.option(
    "--plain",
    is_flag=True,
    help=h(
        "Take plain (unsealed) bodies and sync upward in the clear: personal data readable "
        "on the line.",
        "接收明文（未加密）请求体并以明文向上同步：线路上可读取个人信息。",
    ),
)
@click.option(
    "--access-log",
    is_flag=True,
    help=h("Log every request (stamped, on stderr).", "记录每个请求（带时间，写到标准错误）。"),
)
@home_option
def serve_command(
    host: str, port: int, interval: float, plain: bool, access_log: bool, home: Path | None
) -> None:
    from sync.logs import log_line
    from sync.service import bind, serve  # the server stack loads only for `serve`
    from tiers.desk import users as desk_users
    from tiers.desk.app import PREFIX, Desk
    from tiers.figure_keeper import FigureKeeper

    where = resolve_home(home)
    with node_at(home) as node:
        node_id, parent_url = node.node_id, node.config.parent_url
        readers = desk_users.anyone(node.store)
    sock = bind(host, port)  # a busy port or a bad host: ZhibaoError, one line, exit 1
    bound = sock.getsockname()
    click.echo(i18n.t("serve.listening", node_id=node_id, url=f"http://{host}:{bound[1]}"))
    sys.stdout.flush()
    if plain:
        log_line("serve.plain")
    said = _ServeLog()
    desk = Desk(lambda: open_home(where))  # its own connection, opened on its first request
    if readers:  # the figures' warmer: this month's overview ready before the first reader
        desk.start()  # (a node without desk users starts none: nobody to read them)
    keeper = FigureKeeper(lambda: open_home(where)) if tier_of(node_id) == "city" else None
    try:
        serve(
            lambda: open_home(where),
            sock,
            parent_url=parent_url,
            interval=interval,
            on_error=said.error,
            on_round=said.round,
            access_log=access_log,
            plain=plain,
            mounts=[(PREFIX, desk)],
        )
    finally:
        if keeper is not None:
            keeper.stop()
        desk.close()


@click.command(
    "sync",
    help=h(
        "Run one round with the parent (or --peer): push what it lacks, pull what concerns us.",
        "与上级（或 --peer）同步一轮：上传对方缺少的，下载与本节点有关的。",
    ),
)
@click.option(
    "--peer",
    default=None,
    help=h("Sync with this URL instead of the parent.", "与此地址同步，而不是上级。"),
)
@click.option(
    "--watch",
    "keep_going",
    is_flag=True,
    help=h(
        "Keep syncing, retrying with backoff; each line stamped with the time.",
        "持续同步，失败时退避重试；每行带有时间。",
    ),
)
@click.option(
    "--interval",
    default=30.0,
    type=float,
    show_default=True,
    help=h("Seconds between rounds with --watch.", "--watch 时每轮之间的秒数。"),
)
@click.option(
    "--plain",
    is_flag=True,
    help=h(
        "Send bodies unsealed (the peer must serve --plain): personal data readable on the line.",
        "以明文发送请求体（对方须以 --plain 提供服务）：线路上可读取个人信息。",
    ),
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
        text = i18n.t("sync.retrying", error=str(exc), wait=link.wait_text(seconds))
        echo(f"{stamp()} {text}", err=True)

    stop = threading.Event()
    try:
        watch(
            lambda: open_home(where),
            url,
            interval=interval,
            stop=stop,
            on_round=lambda s: _report(s, as_json, stamped=True),
            on_error=on_error,
            plain=plain,
        )
    except KeyboardInterrupt:
        stop.set()


@click.command(
    "status",
    help=h(
        "This node's link to its parent (last attempt, success, error), what the parent has "
        "not acknowledged yet, heads, forks and the network below it.",
        "本节点与上级的连接（上次尝试、成功、错误）、上级尚未确认的内容、"
        "各日志进度、分叉以及下级网络。",
    ),
)
@home_option
@json_option
def status_command(home: Path | None, as_json: bool) -> None:
    with node_at(home) as node:
        info = node_status(node)
        info["store"] = store_kind(node.config)  # sqlite | postgresql
        info["materials"] = materials.summary(node)
        info["calendar"] = provisional.calendar_status(node)
        if trust.children(node.store, node.node_id):
            from tiers.city.network import network_health

            info["network"] = network_health(node)
        now = node.clock.now()
    if as_json:
        print_json(info)
        return
    print_status(info, now, calendar_line=provisional.status_line(info["calendar"]))
