"""`zhibao log show|verify`."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

import click

from cli.common import echo, home_option, json_option, node_at, print_json, print_json_list
from cli.help import h
from sync.audit import verify_log
from sync.protocol import i18n
from sync.protocol.entry import SignedEntry

i18n.register(
    {
        "log.verified": (
            "OK: {count} entries from {origins} verified.",
            "通过：已核验 {origins}的 {count} 条条目。",
        ),
        "log.verified.one": (
            "OK: {count} entry from {origins} verified.",
            "通过：已核验 {origins}的 {count} 条条目。",
        ),
        "log.origins": ("{count} origins", "{count} 个来源"),
        "log.origins.one": ("{count} origin", "{count} 个来源"),
        "log.vouched": (
            "{count} inner signatures do not verify, but the chain up to a good signature "
            "proves their entries (see `vouched` in --json).",
            "{count} 个中间条目的签名无法验证，但其后直到有效签名的哈希链证明了这些条目"
            "（见 --json 的 vouched）。",
        ),
        "log.vouched.one": (
            "{count} inner signature does not verify, but the chain up to a good signature "
            "proves its entry (see `vouched` in --json).",
            "{count} 个中间条目的签名无法验证，但其后直到有效签名的哈希链证明了该条目"
            "（见 --json 的 vouched）。",
        ),
        "log.problems": (
            "{count} problems in {entries}:",
            "{entries}中发现 {count} 个问题：",
        ),
        "log.problems.one": ("{count} problem in {entries}:", "{entries}中发现 {count} 个问题："),
        "log.entries": ("{count} entries", "{count} 条条目"),
        "log.entries.one": ("{count} entry", "{count} 条条目"),
        "log.progress": (
            "Verifying: {done} of {total} entries ({percent} %), {rate} entries/s, "
            "about {left} s left",
            "核验中：{done}/{total} 条条目（{percent}%），每秒 {rate} 条，约剩 {left} 秒",
        ),
        "log.progress.one": (
            "Verifying: {done} of {total} entry ({percent} %)",
            "核验中：{done}/{total} 条条目（{percent}%）",
        ),
        "log.progress_start": (
            "Verifying: {done} of {total} entries ({percent} %)",
            "核验中：{done}/{total} 条条目（{percent}%）",
        ),
        "log.progress_start.one": (
            "Verifying: {done} of {total} entry ({percent} %)",
            "核验中：{done}/{total} 条条目（{percent}%）",
        ),
    }
)

TERMINAL_EVERY = 0.2  # seconds between redraws of the progress line on a terminal
TERMINAL_QUIET = 0.5  # a shorter run shows no progress on a terminal
LONG_RUN = 10.0  # not on a terminal: silent for this long, then a line this often
RATE_AFTER = 1.0  # seconds of work before a rate (and the time left) is worth showing


class ProgressLine:
    """`log verify`'s progress on standard error, never on standard output.

    On a terminal, one line redrawn in place (at most every `TERMINAL_EVERY` seconds) and
    wiped at the end. Elsewhere (a log file, a pipe), nothing for a run shorter than
    `quiet_for` seconds, then one line every `every` seconds; `--progress` starts them at
    once. The clock is injected (tests)."""

    def __init__(
        self,
        stream: TextIO,
        *,
        terminal: bool,
        quiet_for: float,
        every: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream, self.terminal, self.clock = stream, terminal, clock
        self.quiet_for, self.every = quiet_for, every
        self.started = clock()
        self.shown_at: float | None = None
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if now - self.started < self.quiet_for:
            return
        if self.shown_at is not None and now - self.shown_at < self.every and done < total:
            return
        self.shown_at = now
        text = self.text(done, total, now - self.started)
        if self.terminal:
            self.stream.write("\r\x1b[K" + text)
            self.drawn = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    @staticmethod
    def text(done: int, total: int, elapsed: float) -> str:
        """The line; the rate and the time left once there is a second to judge them by."""
        percent = done * 100 // total if total else 100
        counts = {"done": f"{done:,}", "total": f"{total:,}", "percent": percent}
        if elapsed < RATE_AFTER or not done:
            return i18n.tn("log.progress_start", total, **counts)
        rate = done / elapsed
        left = round((total - done) / rate)
        return i18n.tn("log.progress", total, rate=f"{rate:,.0f}", left=left, **counts)

    def close(self) -> None:
        """Wipe the line on a terminal, so the result stands alone."""
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.drawn = False


def progress_line(mode: bool | None, stream: TextIO) -> ProgressLine | None:
    """The progress `log verify` shows on `stream`: `mode` None (the default) decides by
    the stream, True (`--progress`) shows it from the start, False never."""
    if mode is False:
        return None
    terminal = stream.isatty()
    # forced: from the start; else a glimpse on a terminal is noise, and a log file
    # hears of long runs only
    quiet_for = 0.0 if mode else (TERMINAL_QUIET if terminal else LONG_RUN)
    every = TERMINAL_EVERY if terminal else LONG_RUN
    return ProgressLine(stream, terminal=terminal, quiet_for=quiet_for, every=every)


@click.group(
    "log", help=h("The signed, hash-chained logs this node holds.", "本节点持有的签名哈希链日志。")
)
def log_group() -> None:
    pass


@log_group.command(
    "show",
    help=h(
        "List entries: origin, seq, time, type, hash.", "列出条目：来源、序号、时间、类型、哈希。"
    ),
)
@click.option("--origin", default=None, help=h("Only this origin's log.", "只看此来源的日志。"))
@click.option(
    "--limit",
    type=click.IntRange(min=0, max=2**63 - 1),  # (a database's integer)
    default=None,
    metavar="N",
    help=h("Only the last N entries.", "只列最后 N 条。"),
)
@home_option
@json_option
def show_command(origin: str | None, limit: int | None, home: Path | None, as_json: bool) -> None:
    with node_at(home) as node:
        entries: Iterable[SignedEntry] = (
            node.store.iter_all(origin)  # streamed: a city's log runs to millions
            if limit is None
            else node.store.last_entries(limit, origin)
        )
        rows = (_shown(entry) for entry in entries)
        if as_json:
            print_json_list(rows)
            return
        for row in rows:
            body = json.dumps(row["body"], ensure_ascii=False)
            echo(
                f"{row['origin']}#{row['seq']:<6} {row['at']}  {row['type']:<22} "
                f"{row['hash'][:12]}  {body[:80]}"
            )


def _shown(entry: SignedEntry) -> dict[str, Any]:
    fields = json.loads(entry.raw)
    return {
        "origin": entry.origin,
        "seq": entry.seq,
        "at": fields["at"],
        "type": entry.type,
        "hash": entry.hash.hex(),
        "body": fields["body"],
    }


@log_group.command(
    "verify",
    help=h(
        "Re-check every entry: bytes, chain, signature, sequence, on every core. "
        "Exit 1 on any problem.",
        "重新核验每一条条目：字节、哈希链、签名、序号，使用全部 CPU 核心。有任何问题时退出码为 1。",
    ),
)
@click.option("--origin", default=None, help=h("Only this origin's log.", "只看此来源的日志。"))
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help=h(
        "Check with N workers (default: one per core; 1: in this process only).",
        "用 N 个工作线程核验（默认每个 CPU 核心一个；1 表示只在本进程内）。",
    ),
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help=h(
        "Show progress on standard error (default: on a terminal, or once a run has taken "
        "10 s). Never on standard output.",
        "在标准错误输出上显示进度（默认：在终端上，或运行超过 10 秒后）。从不写入标准输出。",
    ),
)
@home_option
@json_option
def verify_command(
    origin: str | None,
    workers: int | None,
    progress: bool | None,
    home: Path | None,
    as_json: bool,
) -> None:
    line = progress_line(progress, sys.stderr)
    try:
        with node_at(home) as node:
            report = verify_log(node.store, origin, workers=workers, progress=line)
    finally:
        if line is not None:
            line.close()
    if as_json:
        print_json(report.to_json())
    elif report.ok:
        origins = i18n.tn("log.origins", report.origins)
        echo(i18n.tn("log.verified", report.entries, origins=origins))
        vouched = sum(report.vouched.values())
        if vouched:
            echo(i18n.tn("log.vouched", vouched))
    else:
        entries = i18n.tn("log.entries", report.entries)
        echo(i18n.tn("log.problems", len(report.problems), entries=entries))
        for p in report.problems:
            echo(f"  {p['origin']}#{p['seq']}: {p['detail']}")
    if not report.ok:
        raise SystemExit(1)
