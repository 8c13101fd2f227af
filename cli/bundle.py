"""`zhibao bundle export|import` (logs on a USB stick) and `zhibao restore`."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import click

from cli.common import (
    check_writable,
    describe_os_error,
    echo,
    home_option,
    input_file,
    json_option,
    node_at,
    print_json,
    warn,
    write_atomically,
)
from cli.help import h
from sync import bundles
from sync.bundle_materials import Carried, Taken, max_bytes
from sync.protocol import i18n
from sync.protocol.errors import BundleError, ZhibaoError
from sync.protocol.keys import check_seal_key

i18n.register(
    {
        "bundle.n_entries": ("{count} entries", "{count} 条条目"),
        "bundle.n_entries.one": ("{count} entry", "{count} 条条目"),
        "bundle.n_new_entries": ("{count} new entries", "{count} 条新条目"),
        "bundle.n_new_entries.one": ("{count} new entry", "{count} 条新条目"),
        "bundle.n_materials": ("{count} materials", "{count} 份材料"),
        "bundle.n_materials.one": ("{count} material", "{count} 份材料"),
        "bundle.exported": (
            "Wrote {entries} for {to} to {out}{sealed}.",
            "已将发往 {to} 的 {entries}写入 {out}{sealed}。",
        ),
        "bundle.sealed_note": (" (sealed to its key)", "（已按对方密钥加密）"),
        "bundle.exported_materials": (
            "Materials carried: {materials} ({mb} MB){partial}.",
            "附带材料：{materials} 份（{mb} MB）{partial}。",
        ),
        "bundle.exported_partial": (
            ", {count} of them in part: the next bundle continues where the receipt says",
            "，其中 {count} 份只带了一部分：下一个数据包从回执所记之处接着带",
        ),
        "bundle.materials_left": (
            "{left} ({mb} MB) did not fit within {max_mb} MB (--max-mb): they go in the next "
            "bundle",
            "{left}（{mb} MB）超出 {max_mb} MB 上限（--max-mb）：将随下一个数据包带出",
        ),
        "bundle.material_unreadable": (
            "warning: material {sha256} is damaged on this disk and was left out",
            "警告：本机磁盘上的材料 {sha256} 已损坏，未带出",
        ),
        "bundle.imported_materials": (
            "Materials: {held} of {declared} held whole here ({new} new), {partial} partial, "
            "{refused} refused.",
            "材料：{declared} 份中 {held} 份已完整收下（新收 {new} 份），{partial} 份不完整，"
            "{refused} 份被拒收。",
        ),
        "bundle.materials_cut": (
            "The bundle was cut short: every whole checked chunk is kept and nothing partial "
            "counts as held; the next bundle completes it.",
            "数据包不完整：已校验的完整分块均已保留，不完整的材料不算收下；下一个数据包会补齐。",
        ),
        "bundle.material_refused": ("refused: {message}", "拒收：{message}"),
        "bundle.materials_only": (
            "The bundle from {sender} carries materials only. Carry the receipt back to "
            "{sender}: {receipt}",
            "来自 {sender} 的数据包只附带材料。请把回执带回 {sender}：{receipt}",
        ),
        "bundle.receipt_materials": (
            "Materials {issuer} holds whole from that bundle: {held}; in part: {partial}.",
            "{issuer} 已完整收下该数据包中的材料：{held} 份；不完整：{partial} 份。",
        ),
        "bundle.imported": (
            "Imported {applied} from {sender} ({duplicates} already held). "
            "Carry the receipt back to {sender}: {receipt}",
            "已从 {sender} 导入 {applied}（{duplicates} 条已有）。"
            "请把回执带回 {sender}：{receipt}",
        ),
        "bundle.already": (
            "Already imported: every entry from {sender} ({entries}) is held here; nothing "
            "changed. Receipt written again: {receipt}",
            "已导入过：来自 {sender} 的 {entries}本机均已持有，未作任何修改。"
            "已重新写出回执：{receipt}",
        ),
        "bundle.empty": (
            "The bundle from {sender} holds no entries; nothing changed. Receipt: {receipt}",
            "来自 {sender} 的数据包没有条目，未作任何修改。回执：{receipt}",
        ),
        "bundle.receipt_recorded": (
            "Recorded {issuer}'s receipt: it holds {heads}.",
            "已记录 {issuer} 的回执：其已持有 {heads}。",
        ),
        "bundle.receipt_unwritable": (
            "the bundle was imported, but its receipt could not be written to {path} "
            "({detail}); import it again to write the receipt",
            "数据包已导入，但回执无法写入 {path}（{detail}）；请再次导入以写出回执",
        ),
        "bundle.unsealed": (
            "warning: {out} is not sealed: it carries personal data in the clear",
            "警告：{out} 未加密：其中的个人信息为明文",
        ),
        "bundle.seal_conflict": (
            "--seal-key and --no-seal contradict each other",
            "--seal-key 与 --no-seal 相互矛盾",
        ),
        "restore.done": (
            "Restored {node_id} from {peer}: {pulled} pulled, own log up to #{seq}. "
            "Recording is allowed again.",
            "已从 {peer} 恢复 {node_id}：下载 {pulled}，本节点日志至 #{seq}。已恢复记录。",
        ),
    }
)


@click.group(
    "bundle",
    help=h("Carry logs on a file (USB stick) when the link is down.",
           "链路不通时，用文件（U 盘）携带日志。"),
)  # fmt: skip
def bundle_group() -> None:
    pass


@bundle_group.command(
    "export",
    help=h(
        "Write what NODE is not known to hold (this subtree up, what concerns it down, and "
        "the materials it lacks), sealed to NODE's key unless --no-seal is given.",
        "写出 NODE 尚未确认持有的内容（本子树向上的、与其有关向下的，以及其缺少的材料），"
        "除非给出 --no-seal，否则用 NODE 的加密公钥加密。",
    ),
)
@click.option("--to", "to", required=True, metavar="NODE",
              help=h("The node the bundle is for.", "数据包的接收节点。"))  # fmt: skip
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), metavar="FILE",
              help=h("The bundle file to write.", "要写出的数据包文件。"))  # fmt: skip
@click.option(
    "--seal/--no-seal",
    default=True,
    help=h(
        "Encrypt to the recipient's seal key (HPKE; the default). --no-seal writes personal "
        "data in the clear.",
        "用接收方的加密公钥加密（HPKE，默认）。--no-seal 会以明文写出个人信息。",
    ),
)
@click.option(
    "--seal-key",
    default=None,
    metavar="HEX",
    help=h(
        "The recipient's seal key when it is not enrolled here, e.g. the city's.",
        "接收方未在此登记时所用的加密公钥，例如市级的。",
    ),
)
@click.option("--full", is_flag=True,
              help=h("Ignore receipts: send everything (after a restore).",
                     "不看回执：全部发送（用于恢复之后）。"))  # fmt: skip
@click.option(
    "--materials/--no-materials",
    default=True,
    help=h(
        "Carry the materials NODE lacks after the entries (the default).",
        "在条目之后携带 NODE 缺少的材料（默认）。",
    ),
)
@click.option(
    "--max-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="MB",
    help=h(
        "Bound the file's size: materials that do not fit wait for the next bundle, "
        "entries never do (default: bundle_max_mb in node.toml, else 1024).",
        "限制文件大小：放不下的材料等下一个数据包，条目从不等待"
        "（默认：node.toml 中的 bundle_max_mb，否则 1024）。",
    ),
)
@home_option
@json_option
def export_command(
    to: str,
    out: Path,
    seal: bool,
    seal_key: str | None,
    full: bool,
    materials: bool,
    max_mb: float | None,
    home: Path | None,
    as_json: bool,
) -> None:
    if seal_key and not seal:
        raise click.UsageError(i18n.t("bundle.seal_conflict"))
    key = check_seal_key(seal_key) if seal_key else None
    check_writable(out)
    with node_at(home) as node:
        bound = max_bytes(node.config.settings, max_mb)
        made = bundles.export_bundle(
            node, to, seal=seal, seal_key=key, full=full, materials=materials, max_bytes=bound
        )
        size = write_streamed(out, lambda handle: bundles.write_bundle(node, made, handle))
    carried = made.carried
    for damaged in carried.unreadable:
        warn(i18n.t("bundle.material_unreadable", sha256=damaged.params["sha256"]))
    if not made.header["sealed"]:
        warn(i18n.t("bundle.unsealed", out=out))
    if as_json:
        print_json({"out": str(out), "bytes": size, **made.header, "materials": carried.to_json()})
        return
    note = i18n.t("bundle.sealed_note") if made.header["sealed"] else ""
    entries = i18n.tn("bundle.n_entries", made.header["entries"])
    echo(i18n.t("bundle.exported", entries=entries, to=to, out=out, sealed=note))
    _echo_carried(carried, bound)


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f}"


def _echo_carried(carried: Carried, bound: int) -> None:
    if carried.parts:
        partial = (
            i18n.t("bundle.exported_partial", count=carried.partial) if carried.partial else ""
        )
        echo(
            i18n.t(
                "bundle.exported_materials", materials=len(carried.parts),
                mb=_mb(carried.size), partial=partial,
            )
        )  # fmt: skip
    if carried.left:
        echo(
            i18n.t(
                "bundle.materials_left", left=i18n.tn("bundle.n_materials", carried.left),
                mb=_mb(carried.left_bytes),
                max_mb=f"{bound / 2**20:g}",
            )
        )  # fmt: skip


def write_streamed(path: Path, write: Callable[[IO[bytes]], int]) -> int:
    """`write_atomically` for what is streamed rather than held: `write` writes into a
    temporary file beside `path` (owner-only), synced and renamed over `path`, or nothing
    is left; the bytes written."""
    temp: str | None = None
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            size = write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        temp = None
        return size
    except OSError as exc:
        raise ZhibaoError("cli.unwritable", path=str(path), detail=describe_os_error(exc)) from None
    finally:
        if temp is not None:
            Path(temp).unlink(missing_ok=True)


@bundle_group.command(
    "import",
    help=h(
        "Verify and apply a bundle: its entries whole or not at all, then each material it "
        "carries (or record a receipt file that came back).",
        "校验并导入数据包：条目要么全部导入要么全不导入，然后逐个导入所带材料"
        "（或记录传回的回执文件）。",
    ),
)
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--receipt-out",
    default=None,
    type=click.Path(path_type=Path),
    metavar="FILE",
    help=h(
        "Where to write the receipt for the sender (default: FILE.receipt).",
        "给发送方的回执写到哪里（默认：FILE.receipt）。",
    ),
)
@home_option
@json_option
def import_command(file: Path, receipt_out: Path | None, home: Path | None, as_json: bool) -> None:
    target = receipt_out or file.with_name(file.name + ".receipt")
    with input_file(file) as (handle, size):
        if handle.read(len(bundles.RECEIPT_MAGIC)) == bundles.RECEIPT_MAGIC:
            handle.seek(0)
            data = handle.read(bundles.MAX_RECEIPT_BYTES + 1)  # one more: a file that grew
            _import_receipt(file, data, max(size, len(data)), home, as_json)
            return
        check_writable(target)  # before the import, so a wrong --receipt-out changes nothing
        handle.seek(0)
        data = bundles.read_entries_part(handle, str(file))
        with node_at(home) as node:
            done = bundles.import_bundle(node, data, handle)
    try:
        write_atomically(target, done.receipt_file)
    except ZhibaoError as exc:
        detail = exc.params.get("detail", str(exc))
        raise BundleError("bundle.receipt_unwritable", path=str(target), detail=detail) from None
    if as_json:
        print_json({**done.to_json(), "receipt": str(target)})
        return
    key = "bundle.already" if done.already and not done.materials.new else "bundle.imported"
    if not done.entries:
        key = "bundle.empty"
    if done.entries or not done.materials.declared:
        echo(
            i18n.t(
                key, sender=done.sender,
                applied=i18n.tn("bundle.n_new_entries", sum(done.applied.values())),
                duplicates=done.duplicates, entries=i18n.tn("bundle.n_entries", done.entries),
                receipt=target,
            )
        )  # fmt: skip
    else:
        echo(i18n.t("bundle.materials_only", sender=done.sender, receipt=target))
    _echo_taken(done.materials)


def _echo_taken(taken: Taken) -> None:
    if not taken.declared:
        return
    echo(
        i18n.t(
            "bundle.imported_materials", declared=taken.declared, held=len(taken.held),
            new=taken.new, partial=taken.not_whole, refused=len(taken.refused),
        )
    )  # fmt: skip
    for _, refusal in taken.refused:
        echo(i18n.t("bundle.material_refused", message=str(refusal)))
    if taken.cut:
        echo(i18n.t("bundle.materials_cut"))


def _import_receipt(file: Path, data: bytes, size: int, home: Path | None, as_json: bool) -> None:
    limit = bundles.MAX_RECEIPT_BYTES
    if len(data) > limit:
        raise BundleError(
            "bundle.too_big", path=str(file), size=size // 2**20, limit=limit // 2**20
        )
    with node_at(home) as node:
        receipt, said = bundles.import_receipt_file(node, data)
    heads = {o: seq for o, (seq, _) in sorted(receipt.heads.items())}
    held, partial = (len(said.held), len(said.partial)) if said else (0, 0)
    if as_json:
        materials = {"held": held, "partial": partial}
        print_json(
            {"kind": "receipt", "issuer": receipt.issuer, "heads": heads, "materials": materials}
        )
        return
    text = ", ".join(f"{o}#{s}" for o, s in heads.items()) or "-"
    echo(i18n.t("bundle.receipt_recorded", issuer=receipt.issuer, heads=text))
    if said is not None:
        echo(i18n.t("bundle.receipt_materials", issuer=receipt.issuer, held=held, partial=partial))


@click.command(
    "restore",
    help=h(
        "Rebuild this node's database from its parent's copy (its keys are kept).",
        "用上级保存的副本重建本节点的数据库（保留本节点的密钥）。",
    ),
)
@click.option("--from", "url", default=None, metavar="URL",
              help=h("The parent to restore from (default: the parent's URL in node.toml).",
                     "从哪个上级恢复（默认：node.toml 中的上级地址）。"))  # fmt: skip
@click.option("--force", is_flag=True,
              help=h("Restore into a database that still holds entries.",
                     "即使数据库中仍有条目也恢复。"))  # fmt: skip
@home_option
@json_option
def restore_command(url: str | None, force: bool, home: Path | None, as_json: bool) -> None:
    with node_at(home, rebuild=True) as node:
        from sync.restore import restore_node  # the HTTP client loads only for restore

        summary = restore_node(node, url, force=force)
        node_id = node.node_id
    for warning in summary.warnings:
        warn(warning)
    if as_json:
        print_json(summary.to_json())
        return
    seq = summary.heads.get(node_id, 0)
    pulled = i18n.tn("bundle.n_entries", summary.pulled)
    echo(i18n.t("restore.done", node_id=node_id, peer=summary.peer, pulled=pulled, seq=seq))
