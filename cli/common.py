"""Options and output shared by every command: --home, --json, --at, printing, and files.

What a person reads is inert: every human print path goes through `terminal_safe`
(`tiers.inert`; here via `echo`, `warn` and `print_table`), which shows control characters,
ESC, DEL, C1 and the Unicode bidi override/isolate characters as visible escapes (`\\x1b`,
`\\u202e`), so names, reasons and notes written on another node cannot drive or disguise
the terminal. JSON stays exact: `print_json` writes the same characters as JSON `\\u`
escapes, which parse back to the very same strings.

Files an operator names are read and written here, each failure one clear line: a missing
folder, a directory given as a file, a file too big, a permission refused.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import click
from click.core import ParameterSource

from cli.help import h
from cli.help_format import display_width
from sync.node import Node, exposure_warning, resolve_home
from sync.protocol import i18n
from sync.protocol.errors import ZhibaoError
from tiers.inert import UNSAFE, terminal_safe
from tiers.node import open_home

F = TypeVar("F", bound=Callable[..., Any])
MAX_INPUT_BYTES = 64 * 1024 * 1024  # a catalogue or calendar file; far above any real one


def global_home(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """A command's --home: its own when given on the command line, else `zhibao --home DIR`
    (the same thing written before the command), else $ZHIBAO_HOME or the default."""
    from cli.main import GLOBAL_HOME

    source = ctx.get_parameter_source(param.name or "")
    if source is ParameterSource.COMMANDLINE:
        return value
    given: Path | None = ctx.meta.get(GLOBAL_HOME)
    return given if given is not None else value


home_option = click.option(
    "--home",
    "home",
    envvar="ZHIBAO_HOME",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    callback=global_home,
    help=h(
        "The node's home directory (default: `zhibao --home DIR`, else $ZHIBAO_HOME, else "
        "the current directory). Given here, it wins over `zhibao --home`.",
        "节点的主目录（默认：`zhibao --home DIR`，否则 $ZHIBAO_HOME，否则当前目录）。"
        "写在这里时优先于 `zhibao --home`。",
    ),
)
json_option = click.option(
    "--json", "as_json", is_flag=True,
    help=h("Print JSON for other tools.", "输出 JSON，供其他程序读取。"),
)  # fmt: skip
at_option = click.option(
    "--at",
    "at",
    default=None,
    metavar="ISO-TIME",
    help=h(
        "When it happened, for records entered later (补录); default now.",
        "事情发生的时间，用于补录；默认为现在。",
    ),
)

i18n.register(
    {
        "cli.unreadable": ("cannot read {path}: {detail}", "无法读取 {path}：{detail}"),
        "cli.unwritable": (
            "cannot write {path}: {detail}; nothing was written",
            "无法写入 {path}：{detail}；未写入任何内容",
        ),
        "cli.too_big": (
            "{path} is too big ({size} MiB; at most {limit} MiB)",
            "{path} 过大（{size} MiB，上限 {limit} MiB）",
        ),
        "cli.not_a_file": ("it is not a regular file", "不是普通文件"),
        "os.ENOENT": ("no such file or directory", "文件或目录不存在"),
        "os.EACCES": ("permission denied", "没有权限"),
        "os.EISDIR": ("it is a directory", "这是一个目录"),
        "os.ENOTDIR": ("a part of the path is not a directory", "路径中有一部分不是目录"),
        "os.ENOSPC": ("the disk is full", "磁盘已满"),
        "os.EROFS": ("the file system is read-only", "文件系统为只读"),
        "os.EEXIST": ("it already exists", "已存在"),
    }
)
_ERRNO_KEYS = {
    errno.ENOENT: "os.ENOENT",
    errno.EACCES: "os.EACCES",
    errno.EPERM: "os.EACCES",
    errno.EISDIR: "os.EISDIR",
    errno.ENOTDIR: "os.ENOTDIR",
    errno.ENOSPC: "os.ENOSPC",
    errno.EDQUOT: "os.ENOSPC",
    errno.EROFS: "os.EROFS",
    errno.EEXIST: "os.EEXIST",
}


# --- text a person reads -------------------------------------------------------------------

_JSON_ESCAPED = {c: f"\\u{c:04x}" for c in UNSAFE if c >= 0x7F}  # json.dumps does the rest


def echo(text: object = "", *, err: bool = False, lines: bool = False) -> None:
    """Print one line (or, with `lines`, a block) for a person, made terminal-safe."""
    click.echo(terminal_safe(text, lines=lines), err=err)


def warn(text: str) -> None:
    """A one-line `zhibao: …` on standard error."""
    echo(f"zhibao: {text}", err=True)


def json_text(value: Any) -> str:
    """JSON for tools: exact values; C1, DEL and bidi controls written as `\\u` escapes
    (control characters below U+0020 are escaped by json.dumps itself)."""
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=False).translate(_JSON_ESCAPED)


def print_json(value: Any) -> None:
    """`json_text` on standard output."""
    click.echo(json_text(value))


def print_json_list(items: Iterable[Any]) -> None:
    """`print_json` of a list, the same text, written a few hundred items at a time: never
    the whole list in memory (`log show` at a city lists millions of entries)."""
    parts: list[str] = []
    opened = False
    for item in items:
        text = "\n".join("  " + line for line in json_text(item).split("\n"))
        parts.append((",\n" if opened else "[\n") + text)
        opened = True
        if len(parts) >= 500:  # a write a few hundred items, not one each
            click.echo("".join(parts), nl=False)
            parts.clear()
    parts.append("\n]" if opened else "[]")
    click.echo("".join(parts))


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """A plain aligned table, CJK text included; every cell made terminal-safe."""
    width = display_width
    heads = [terminal_safe(h) for h in headers]
    cells = [[terminal_safe(c) if c is not None else "" for c in row] for row in rows]
    widths = [width(h) for h in heads]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], width(cell))

    def line(row: list[str]) -> str:
        return "  ".join(c + " " * (widths[i] - width(c)) for i, c in enumerate(row)).rstrip()

    click.echo(line(heads))
    click.echo("  ".join("-" * w for w in widths))
    for row in cells:
        click.echo(line(row))


# --- the node a command works on ------------------------------------------------------------


@contextmanager
def node_at(home: Path | None, *, rebuild: bool = False) -> Iterator[Node]:
    """Open the node at --home for one command and close it afterwards; warn (once, on
    stderr) when other users can read or change its data. `rebuild`: only for `restore`,
    which may make a new node.db where the old one was lost."""
    where = resolve_home(home)
    node = open_home(where, rebuild=True) if rebuild else open_home(where)  # tests patch it
    try:
        warn_if_exposed(where)
        yield node
    finally:
        node.close()


def record(
    home: Path | None, as_json: bool, work: Callable[[Node], str],
    show: Callable[[Node, str], Any],
) -> None:  # fmt: skip
    """Run one recording command on the node; print the id `work` returns, or with --json
    what `show` says of it (read in the same opening, after the append)."""
    with node_at(home) as node:
        made = work(node)
        if as_json:
            print_json(show(node, made))
            return
    echo(made)


def warn_if_exposed(home: Path) -> None:
    warning = exposure_warning(home)
    if warning is not None:
        warn(warning)


# --- files an operator names -------------------------------------------------------------


def describe_os_error(exc: OSError) -> str:
    """The reason of an OSError in the reader's language (the system's words otherwise)."""
    key = _ERRNO_KEYS.get(exc.errno or 0)
    if key is not None:
        return i18n.t(key)
    return exc.strerror or str(exc) or type(exc).__name__


def unreadable(path: Path, exc: OSError) -> ZhibaoError:
    return ZhibaoError("cli.unreadable", path=str(path), detail=describe_os_error(exc))


@contextmanager
def input_file(path: Path) -> Iterator[tuple[IO[bytes], int]]:
    """A regular file opened for reading, with its size; one clear error if it cannot be.
    Opened without blocking, so a FIFO named by mistake is refused, not waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise unreadable(path, exc) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # a directory; a FIFO or a device could be endless
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise unreadable(path, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
        raise ZhibaoError("cli.unreadable", path=str(path), detail=i18n.t("cli.not_a_file"))
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as handle:
        try:
            yield handle, info.st_size
        except OSError as exc:
            raise unreadable(path, exc) from None


def too_big(path: Path, size: int, limit: int) -> ZhibaoError:
    return ZhibaoError("cli.too_big", path=str(path), size=size // 2**20, limit=limit // 2**20)


def read_input(path: Path, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of an input file, reading no more than `limit` (+1 to see it is bigger)."""
    with input_file(path) as (handle, size):
        if size > limit:
            raise too_big(path, size, limit)
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise too_big(path, len(data), limit)
    return data


def write_atomically(path: Path, data: bytes) -> None:
    """Write all of `data` to `path` or nothing: a temporary file beside it (readable by its
    owner only), synced, renamed over `path`. One clear error if it cannot be written."""
    temp: str | None = None
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        import tempfile  # only for a file written; every command imports this module (#13)

        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        temp = None
    except OSError as exc:
        raise ZhibaoError("cli.unwritable", path=str(path), detail=describe_os_error(exc)) from None
    finally:
        if temp is not None:
            Path(temp).unlink(missing_ok=True)


def check_writable(path: Path) -> None:
    """Refuse now, before any work, an output path whose folder is missing or that is a
    directory (the write itself may still fail, and says so)."""
    if path.is_dir():
        code = errno.EISDIR
    elif path.parent.exists() and not path.parent.is_dir():
        code = errno.ENOTDIR
    elif not path.parent.is_dir():
        code = errno.ENOENT
    else:
        return
    exc = OSError(code, os.strerror(code))
    raise ZhibaoError("cli.unwritable", path=str(path), detail=describe_os_error(exc))
