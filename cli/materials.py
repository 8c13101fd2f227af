"""`zhibao case attach|materials|material` (DESIGN §8): a case's scans and results."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click

from cli.common import (
    at_option,
    check_writable,
    echo,
    home_option,
    input_file,
    json_option,
    node_at,
    print_json,
    print_table,
)
from cli.help import h
from sync import blob_index
from sync.protocol import i18n
from sync.protocol.errors import BlobError
from tiers import materials
from tiers.cases.reading import human_size, material_state

i18n.register(
    {
        "cli.material.none": ("No materials for {case_id}.", "办件 {case_id} 没有材料。"),
        "cli.material.title": ("Materials:", "材料："),
        "cli.material.written": (
            "Wrote {name} ({size}) of case {case_id} to {out}.",
            "已将办件 {case_id} 的 {name}（{size}）写入 {out}。",
        ),
        "cli.material.attached": (
            "{case_id}: attached {name} ({size}, sha256 {short})",
            "{case_id}：已添加 {name}（{size}，sha256 {short}）",
        ),
    }
)


def print_materials(case_id: str, listed: list[dict[str, Any]]) -> None:
    if not listed:
        echo(i18n.t("cli.material.none", case_id=case_id))
        return
    rows = [
        [m["name"], m["file"], human_size(m["size"]), m["media_type"],
         material_state(m["state"]), m["attached_by"], m["attached_at"]]
        for m in listed
    ]  # fmt: skip
    print_table(i18n.t("material.headers").split("|"), rows)


def register(case_group: click.Group, case_argument: Any) -> None:
    """Add the material commands to `zhibao case`."""

    @case_group.command("attach", help=h(
        "Scan(s) for a case: stored here, signed into the log, sent with the case.",
        "办件的扫描件：存于本节点，签名记入日志，随办件传送。"))  # fmt: skip
    @case_argument
    @click.argument("files", metavar="FILE…", nargs=-1, required=True,
                    type=click.Path(path_type=Path, dir_okay=True))  # fmt: skip
    @click.option("--material", default=None, metavar="NAME",
                  help=h("The material these files stand for (default: matched to the "
                         "catalogue's list by file name).",
                         "这些文件对应的材料（默认：按文件名匹配事项目录中的"
                         "材料清单）。"))  # fmt: skip
    @at_option
    @home_option
    @json_option
    def attach_command(case_id: str, files: tuple[Path, ...], material: str | None,
                       at: str | None, home: Path | None, as_json: bool) -> None:  # fmt: skip
        with node_at(home) as node, ExitStack() as stack:
            limit = blob_index.limit_bytes(node.config.settings)
            opened = []
            for path in files:
                handle, size = stack.enter_context(input_file(path))
                if size > limit:
                    raise BlobError("blob.too_big", limit_mb=f"{limit / 2**20:g}")
                opened.append((path, handle))
            named = materials.attach(node, case_id, opened, material=material, at=at)
        if as_json:
            print_json(named)
            return
        for m in named:
            echo(i18n.t("cli.material.attached", case_id=case_id, name=m["name"],
                        size=human_size(m["size"]), short=m["sha256"][:12]))  # fmt: skip

    @case_group.command("materials", help=h(
        "A case's materials and where each is (here, on the way, missing).",
        "办件的材料及各自所在（在本节点、传送中、缺失）。"))  # fmt: skip
    @case_argument
    @home_option
    @json_option
    def materials_command(case_id: str, home: Path | None, as_json: bool) -> None:
        with node_at(home) as node:
            listed = [m.to_json() for m in materials.materials_of(node, case_id)]
        if as_json:
            print_json(listed)
        else:
            print_materials(case_id, listed)

    @case_group.command("material", help=h(
        "Write one material of a case to a file (checked against its SHA-256).",
        "把办件的一份材料写到文件（按其 SHA-256 核对）。"))  # fmt: skip
    @case_argument
    @click.argument("wanted", metavar="NAME|SHA256")
    @click.option("--out", "out", required=True, type=click.Path(path_type=Path),
                  metavar="FILE", help=h("Where to write the file.", "文件写到哪里。"))  # fmt: skip
    @home_option
    @json_option
    def material_command(case_id: str, wanted: str, out: Path, home: Path | None,
                         as_json: bool) -> None:  # fmt: skip
        check_writable(out)
        with node_at(home) as node:
            found = materials.write_out(node, case_id, wanted, out)
        if as_json:
            print_json(found.to_json() | {"out": str(out)})
        else:
            echo(i18n.t("cli.material.written", name=found.name, size=human_size(found.size),
                        case_id=case_id, out=str(out)))  # fmt: skip
