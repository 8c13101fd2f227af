"""`zhibao bundle export|import` (logs on a USB stick) and `zhibao restore`."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import (
    check_writable,
    echo,
    home_option,
    input_file,
    json_option,
    node_at,
    print_json,
    warn,
    write_atomically,
)
from sync import bundles
from sync.protocol import i18n
from sync.protocol.errors import BundleError, ZhibaoError
from sync.protocol.keys import check_seal_key

i18n.register(
    {
        "bundle.exported": (
            "Wrote {entries} entries for {to} to {out}{sealed}.",
            "已将发往 {to} 的 {entries} 条条目写入 {out}{sealed}。",
        ),
        "bundle.sealed_note": (" (sealed to its key)", "（已按对方密钥加密）"),
        "bundle.imported": (
            "Imported {applied} new entries from {sender} ({duplicates} already held). "
            "Carry the receipt back to {sender}: {receipt}",
            "已从 {sender} 导入 {applied} 条新条目（{duplicates} 条已有）。"
            "请把回执带回 {sender}：{receipt}",
        ),
        "bundle.already": (
            "Already imported: all {entries} entries from {sender} are held here; nothing "
            "changed. Receipt written again: {receipt}",
            "已导入过：来自 {sender} 的 {entries} 条条目本机均已持有，未作任何修改。"
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
            "Restored {node_id} from {peer}: {pulled} entries pulled, own log up to #{seq}. "
            "Recording is allowed again.",
            "已从 {peer} 恢复 {node_id}：下载 {pulled} 条条目，本节点日志至 #{seq}。已恢复记录。",
        ),
    }
)


def read_file(path: Path) -> bytes:
    """A bundle or receipt file's bytes, reading no more than its kind may hold (a receipt
    is small); BundleError if it is bigger, ZhibaoError if it cannot be read."""
    with input_file(path) as (handle, size):
        limit = bundles.MAX_BUNDLE_BYTES
        if handle.read(len(bundles.RECEIPT_MAGIC)) == bundles.RECEIPT_MAGIC:
            limit = bundles.MAX_RECEIPT_BYTES
        if size <= limit:
            handle.seek(0)
            data = handle.read(limit + 1)  # one more: a file that grew is still caught
            if len(data) <= limit:
                return data
            size = len(data)
    raise BundleError("bundle.too_big", path=str(path), size=size // 2**20, limit=limit // 2**20)


@click.group("bundle")
def bundle_group() -> None:
    """Carry logs on a file (USB stick) when the link is down."""


@bundle_group.command("export")
@click.option("--to", "to", required=True, metavar="NODE", help="The node the bundle is for.")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path))
@click.option(
    "--seal/--no-seal",
    default=True,
    help="Encrypt to the recipient's seal key (HPKE; the default). --no-seal writes personal "
    "data in the clear.",
)
@click.option(
    "--seal-key",
    default=None,
    metavar="HEX",
    help="The recipient's seal key when it is not enrolled here, e.g. the city's.",
)
@click.option("--full", is_flag=True, help="Ignore receipts: send everything (after a restore).")
@home_option
@json_option
def export_command(
    to: str,
    out: Path,
    seal: bool,
    seal_key: str | None,
    full: bool,
    home: Path | None,
    as_json: bool,
) -> None:
    """Write what NODE is not known to hold (this subtree up, what concerns it down),
    sealed to NODE's key unless --no-seal is given."""
    if seal_key and not seal:
        raise click.UsageError(i18n.t("bundle.seal_conflict"))
    key = check_seal_key(seal_key) if seal_key else None
    check_writable(out)
    with node_at(home) as node:
        made = bundles.export_bundle(node, to, seal=seal, seal_key=key, full=full)
    write_atomically(out, made.data)
    if not made.header["sealed"]:
        warn(i18n.t("bundle.unsealed", out=out))
    if as_json:
        print_json({"out": str(out), "bytes": len(made.data), **made.header})
        return
    note = i18n.t("bundle.sealed_note") if made.header["sealed"] else ""
    echo(i18n.t("bundle.exported", entries=made.header["entries"], to=to, out=out, sealed=note))


@bundle_group.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--receipt-out",
    default=None,
    type=click.Path(path_type=Path),
    help="Where to write the receipt for the sender (default: FILE.receipt).",
)
@home_option
@json_option
def import_command(file: Path, receipt_out: Path | None, home: Path | None, as_json: bool) -> None:
    """Verify and apply a bundle whole (or record a receipt file that came back)."""
    data = read_file(file)
    target = receipt_out or file.with_name(file.name + ".receipt")
    if not bundles.is_receipt(data):
        check_writable(target)  # before the import, so a wrong --receipt-out changes nothing
    with node_at(home) as node:
        if bundles.is_receipt(data):
            receipt = bundles.import_receipt(node, data)
            heads = {o: seq for o, (seq, _) in sorted(receipt.heads.items())}
            if as_json:
                print_json({"kind": "receipt", "issuer": receipt.issuer, "heads": heads})
            else:
                text = ", ".join(f"{o}#{s}" for o, s in heads.items()) or "-"
                echo(i18n.t("bundle.receipt_recorded", issuer=receipt.issuer, heads=text))
            return
        done = bundles.import_bundle(node, data)
    try:
        write_atomically(target, done.receipt_file)
    except ZhibaoError as exc:
        detail = exc.params.get("detail", str(exc))
        raise BundleError("bundle.receipt_unwritable", path=str(target), detail=detail) from None
    if as_json:
        print_json({**done.to_json(), "receipt": str(target)})
        return
    key = "bundle.already" if done.already else "bundle.imported"
    if not done.entries:
        key = "bundle.empty"
    applied = sum(done.applied.values())
    echo(
        i18n.t(
            key,
            sender=done.sender,
            applied=applied,
            duplicates=done.duplicates,
            entries=done.entries,
            receipt=target,
        )
    )


@click.command("restore")
@click.option("--from", "url", default=None, metavar="URL", help="Default: the parent's URL.")
@click.option("--force", is_flag=True, help="Restore into a database that still holds entries.")
@home_option
@json_option
def restore_command(url: str | None, force: bool, home: Path | None, as_json: bool) -> None:
    """Rebuild this node's database from its parent's copy (its keys are kept)."""
    with node_at(home) as node:
        from sync.restore import restore_node  # the HTTP client loads only for restore

        summary = restore_node(node, url, force=force)
        node_id = node.node_id
    for warning in summary.warnings:
        warn(warning)
    if as_json:
        print_json(summary.to_json())
        return
    seq = summary.heads.get(node_id, 0)
    echo(i18n.t("restore.done", node_id=node_id, peer=summary.peer, pulled=summary.pulled, seq=seq))
