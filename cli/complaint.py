"""`zhibao complaint file|reply|close|show|list` (DESIGN §8): complaints (投诉), thin over
tiers.complaints. A recording command prints the complaint id (with --json, the complaint).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from cli.common import (
    at_option,
    display_width,
    echo,
    home_option,
    json_option,
    node_at,
    print_json,
    print_table,
    record,
)
from cli.help import h
from sync.node import Node
from sync.protocol import i18n
from tiers.complaints import service
from tiers.complaints.service import WARNINGS

i18n.register(
    {
        "cli.complaint.fields": (
            "complaint|filed by|about|subject|text|filed|time limit|deadline|remaining"
            "|warning|status|closed|closed by|on time|note",
            "投诉编号|登记节点|投诉对象|责任节点|投诉内容|登记时间|办理时限|办结期限|剩余工作日"
            "|预警|状态|办结时间|办结节点|按时办结|办结说明",
        ),
        "cli.complaint.about.case": ("case {value}", "办件 {value}"),
        "cli.complaint.about.node": ("node {value}", "节点 {value}"),
        "cli.complaint.about.department": ("department {value}", "部门 {value}"),
        "cli.complaint.days": ("{days} working days", "{days} 个工作日"),
        "cli.complaint.status.open": ("open", "办理中"),
        "cli.complaint.status.closed": ("closed", "已办结"),
        "cli.complaint.replies": ("Replies:", "答复："),
        "cli.complaint.reply_headers": ("node|time|reply", "节点|时间|答复内容"),
        "cli.complaint.refused": (
            "Refused events (not counted): {count}",
            "无效记录（不计入统计）：{count} 条",
        ),
        "cli.complaint.list_headers": (
            "complaint|about|subject|filed|deadline|status|warning",
            "投诉编号|投诉对象|责任节点|登记时间|办结期限|状态|预警",
        ),
        "cli.complaint.none": ("No complaints.", "没有投诉。"),
        "cli.complaint.warning.yellow": ("yellow", "黄灯"),
        "cli.complaint.warning.red": ("red (overdue)", "红灯（超期）"),
        "cli.complaint.yes": ("yes", "是"),
        "cli.complaint.no": ("no", "否"),
        "cli.complaint.one_subject": (
            "give exactly one of --case, --node or --department",
            "--case、--node、--department 三者须给出且只给出一个",
        ),
    }
)

complaint_argument = click.argument("complaint_id", metavar="ID")


def _done(home: Path | None, as_json: bool, work: Callable[[Node], str]) -> None:
    """Run one recording command and print the complaint id or the complaint."""
    record(home, as_json, work, service.show)


@click.group("complaint", help=h("Complaints (投诉): file, reply, close, list.",
                                 "投诉：登记、答复、办结、列表。"))  # fmt: skip
def complaint_group() -> None:
    pass


@complaint_group.command("file", help=h(
    "登记投诉 (file a complaint) about a case, a node or a department; prints the new "
    "complaint's id.",
    "登记投诉：针对办件、节点或部门；输出新投诉的编号。"))  # fmt: skip
@click.option("--case", "case_id", default=None, metavar="CASE",
              help=h("About a case.", "针对一个办件。"))  # fmt: skip
@click.option("--node", "about_node", default=None, metavar="ID",
              help=h("About a node (a centre or service room).",
                     "针对一个节点（中心或服务站）。"))  # fmt: skip
@click.option("--department", default=None, metavar="NAME",
              help=h("About a department of the catalogue, at this centre.",
                     "针对本中心事项目录中的一个部门。"))  # fmt: skip
@click.option("--text", required=True,
              help=h("What the complainant says.", "投诉人所述内容。"))  # fmt: skip
@at_option
@home_option
@json_option
def file_command(case_id: str | None, about_node: str | None, department: str | None,
                 text: str, at: str | None, home: Path | None, as_json: bool) -> None:  # fmt: skip
    if sum(v is not None for v in (case_id, about_node, department)) != 1:
        raise click.UsageError(i18n.t("cli.complaint.one_subject"))
    _done(home, as_json, lambda n: service.file(
        n, text, case_id=case_id, about_node=about_node, department=department, at=at))  # fmt: skip


@complaint_group.command("reply", help=h(
    "答复 (reply): by the node the complaint is about, or a centre above it.",
    "答复：由被投诉的节点或其上级中心作出。"))  # fmt: skip
@complaint_argument
@click.option("--text", required=True,
              help=h("The answer given to the complainant.", "给投诉人的答复。"))  # fmt: skip
@at_option
@home_option
@json_option
def reply_command(complaint_id: str, text: str, at: str | None, home: Path | None,
                  as_json: bool) -> None:  # fmt: skip
    _done(home, as_json, lambda n: service.reply(n, complaint_id, text, at=at))


@complaint_group.command("close", help=h(
    "办结 (close) the complaint: by the node it is about, or a centre above it.",
    "办结投诉：由被投诉的节点或其上级中心办结。"))  # fmt: skip
@complaint_argument
@click.option("--note", default=None, help=h("How it was resolved.", "处理结果说明。"))
@at_option
@home_option
@json_option
def close_command(complaint_id: str, note: str | None, at: str | None, home: Path | None,
                  as_json: bool) -> None:  # fmt: skip
    _done(home, as_json, lambda n: service.close(n, complaint_id, note, at=at))


def _about(c: dict[str, Any]) -> str:
    value = c["case_id"] or c["department"] or c["subject"]
    return i18n.t(f"cli.complaint.about.{c['about']}", value=value)


def _warning(c: dict[str, Any]) -> str:
    return i18n.t(f"cli.complaint.warning.{c['warning']}") if c["warning"] else ""


def _print_complaint(c: dict[str, Any]) -> None:
    labels = i18n.t("cli.complaint.fields").split("|")
    deadline = c["deadline"] + (f" ({c['provisional_note']})" if c["provisional_note"] else "")
    on_time = None
    if c["on_time"] is not None:
        on_time = i18n.t("cli.complaint.yes" if c["on_time"] else "cli.complaint.no")
    values = [
        c["complaint_id"], c["filed_by"], _about(c), c["subject"], c["text"], c["filed_at"],
        i18n.t("cli.complaint.days", days=c["days"]), deadline, c["remaining_days"],
        _warning(c), i18n.t(f"cli.complaint.status.{c['status']}"), c["closed_at"],
        c["closed_by"], on_time, c["note"],
    ]  # fmt: skip
    width = max(display_width(label) for label in labels)
    for label, value in zip(labels, values, strict=True):
        if value not in (None, ""):
            echo(f"{label}{' ' * (width - display_width(label))}  {value}")
    if c["replies"]:
        echo(i18n.t("cli.complaint.replies"))
        rows = [[r["node_id"], r["at"], r["text"]] for r in c["replies"]]
        print_table(i18n.t("cli.complaint.reply_headers").split("|"), rows)
    if c["violations"]:
        echo(i18n.t("cli.complaint.refused", count=len(c["violations"])))


@complaint_group.command("show", help=h(
    "Everything known here about one complaint, with its replies.",
    "本节点所知的一件投诉的全部情况及其答复。"))  # fmt: skip
@complaint_argument
@home_option
@json_option
def show_command(complaint_id: str, home: Path | None, as_json: bool) -> None:
    with node_at(home) as node:
        complaint = service.show(node, complaint_id)
    if as_json:
        print_json(complaint)
    else:
        _print_complaint(complaint)


@complaint_group.command("list", help=h(
    "Complaints known here, newest first, with today's warnings (电子监察).",
    "本节点所知的投诉，最新的在前，附今日预警（电子监察）。"))  # fmt: skip
@click.option("--open", "open_only", is_flag=True,
              help=h("Only complaints not closed yet.", "只列未办结的投诉。"))  # fmt: skip
@click.option("--warning", type=click.Choice(WARNINGS), default=None,
              help=h("Only open complaints with this warning today.",
                     "只列今日有此预警的未办结投诉。"))  # fmt: skip
@click.option("--subject", default=None, metavar="ID",
              help=h("Only complaints about this node or a node below it.",
                     "只列针对此节点或其下级节点的投诉。"))  # fmt: skip
@home_option
@json_option
def list_command(open_only: bool, warning: str | None, subject: str | None,
                 home: Path | None, as_json: bool) -> None:  # fmt: skip
    with node_at(home) as node:
        listed = service.list_at(node, open_only=open_only, warning_filter=warning, subject=subject)
    if as_json:
        print_json(listed)
        return
    if not listed:
        echo(i18n.t("cli.complaint.none"))
        return
    rows = [
        [c["complaint_id"], _about(c), c["subject"], c["filed_at"], c["deadline"],
         i18n.t(f"cli.complaint.status.{c['status']}"), _warning(c)]
        for c in listed
    ]  # fmt: skip
    print_table(i18n.t("cli.complaint.list_headers").split("|"), rows)
