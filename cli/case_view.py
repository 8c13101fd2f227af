"""`zhibao case show` and `zhibao case list`: reading cases (DESIGN §7, §8).

`case show` prints the clerk's page (cli.case_page); `case list` one page of the cases that
match a search (tiers.cases.listing), a screenful by default with the count of the rest, or
every match as JSON, CSV or XLSX (tiers.export) for other tools and for the overdue and
yellow lists a centre sends on. `--json` keeps DESIGN §7's shapes: the case, and a list.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from cli.case_page import print_case
from cli.common import (
    check_writable,
    echo,
    home_option,
    json_option,
    json_text,
    node_at,
    print_json,
    print_table,
    write_atomically,
)
from cli.help import h
from sync.protocol import i18n
from sync.protocol.errors import CaseError
from tiers import export
from tiers.calendar import provisional_note
from tiers.cases import listing, reading, views
from tiers.cases.labels import status_label
from tiers.cases.machine import STATUSES
from tiers.inert import text_cell

MIN_SCREEN = 5  # rows shown even on a tiny terminal
i18n.register(
    {
        "cli.case.list_headers": (
            "case|item|status|holder|applicant|deadline|days left|warning",
            "办件编号|事项|状态|经办节点|申请人|办结期限|剩余工作日|预警",
        ),
        "cli.case.none": ("No cases.", "没有办件。"),
        "cli.case.none_matching": ("No cases match {filters}.", "没有符合 {filters} 的办件。"),
        "cli.case.count": ("{count} cases match.", "共 {count} 件符合条件。"),
        "cli.case.count.one": ("1 case matches.", "共 1 件符合条件。"),
        "cli.case.none_past": (
            "No cases past the first {offset} ({count} match).",
            "前 {offset} 件之后没有办件（共 {count} 件符合）。",
        ),
        "cli.case.more": (
            "… and {count} more cases: --offset {next} shows the next ones, --limit N more at"
            " once.",
            "……还有 {count} 件：用 --offset {next} 查看后面的，用 --limit N 一次显示更多。",
        ),
        "cli.case.more.one": (
            "… and 1 more case: --offset {next} shows it.",
            "……还有 1 件：用 --offset {next} 查看。",
        ),
        "cli.case.written": ("Wrote {count} cases to {path}.", "已将 {count} 件写入 {path}。"),
        "cli.case.written.one": ("Wrote 1 case to {path}.", "已将 1 件写入 {path}。"),
        "cli.case.xlsx_out": (
            "XLSX is a binary file: give --out FILE.",
            "XLSX 是二进制文件：请用 --out 指定文件。",
        ),
    }
)


def register(case_group: click.Group, case_argument: Any) -> None:
    """Add `show` and `list` to `zhibao case`."""

    @case_group.command("show", help=h(
        "Everything known here about one case, as a clerk reads or prints it: its details,"
        " the one-time notice of missing materials (一次性告知), each event with what it said.",
        "本节点所知的一件办件的全部情况，供窗口人员阅读或打印：办件信息、一次性告知补正清单、"
        "每条办件记录及其内容。",
    ))  # fmt: skip
    @case_argument
    @home_option
    @json_option
    def show_command(case_id: str, home: Path | None, as_json: bool) -> None:
        with node_at(home) as node:
            case = views.show(node, case_id)
        if as_json:
            print_json(case)
        else:
            print_case(case)

    @case_group.command("list", help=h(
        "Cases known here, newest first, with today's warnings (电子监察): a screenful, or"
        " --limit/--offset; search with the options below; every match as JSON, CSV or XLSX"
        " with --format (and --out FILE).",
        "本节点所知的办件，按收件时间由新到旧，附当日预警（电子监察）：默认显示一屏，或用"
        " --limit/--offset 翻页；可按下列选项查找；用 --format（及 --out FILE）把全部结果"
        "导出为 JSON、CSV 或 XLSX。",
    ))  # fmt: skip
    @click.option(
        "--status",
        type=click.Choice(STATUSES),
        default=None,
        help=h("Only cases in this status.", "只列出该状态的办件。"),
    )
    @click.option(
        "--warning",
        "warning",
        type=click.Choice(listing.WARNINGS),
        default=None,
        help=h("Only cases with this warning today.", "只列出当日有该预警的办件。"),
    )
    @click.option(
        "--applicant",
        default=None,
        metavar="NAME",
        help=h("The applicant's name, or a part of it.", "申请人姓名（可只写一部分）。"),
    )
    @click.option(
        "--id-no",
        "id_no",
        default=None,
        metavar="NO",
        help=h("The applicant's ID number, or its last digits.", "申请人身份证号，或其末几位。"),
    )
    @click.option(
        "--phone",
        default=None,
        metavar="NO",
        help=h(
            "The applicant's phone number, or its last digits.",
            "申请人联系电话，或其末几位（尾号）。",
        ),
    )
    @click.option(
        "--item",
        default=None,
        metavar="CODE",
        help=h("An item code, or a part of the item's name.", "事项编码，或事项名称的一部分。"),
    )
    @click.option(
        "--department",
        default=None,
        metavar="NAME",
        help=h(
            "Items of this department (the catalogue's name, whole).",
            "该部门的事项（事项目录中的部门全称）。",
        ),
    )
    @click.option(
        "--node",
        default=None,
        metavar="ID",
        help=h(
            "Cases held by or received at this node or a node under it.",
            "由该节点（或其下级节点）经办或收件的办件。",
        ),
    )
    @click.option(
        "--since",
        type=click.DateTime(["%Y-%m-%d"]),
        default=None,
        metavar="DATE",
        help=h("Received on or after this day (YYYY-MM-DD).", "收件日期不早于该日（YYYY-MM-DD）。"),
    )
    @click.option(
        "--until",
        type=click.DateTime(["%Y-%m-%d"]),
        default=None,
        metavar="DATE",
        help=h(
            "Received on or before this day (YYYY-MM-DD).", "收件日期不晚于该日（YYYY-MM-DD）。"
        ),
    )
    @click.option(
        "--limit",
        type=click.IntRange(min=0),
        default=None,
        metavar="N",
        help=h(
            "Show N cases (default: a screenful in the table; every match in JSON, CSV and XLSX).",
            "显示 N 件（默认：表格显示一屏；JSON、CSV、XLSX 为全部结果）。",
        ),
    )
    @click.option(
        "--offset",
        type=click.IntRange(min=0),
        default=0,
        metavar="N",
        help=h("Skip the first N matching cases.", "跳过前 N 件符合条件的办件。"),
    )
    @click.option(
        "--format",
        "fmt",
        type=click.Choice(export.FORMATS),
        default=None,
        help=h(
            "Output format (default: from --out's extension, else table; json with --json).",
            "输出格式（默认按 --out 的扩展名，否则为表格；--json 即 json）。",
        ),
    )
    @click.option(
        "--out",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        metavar="FILE",
        help=h("Write to FILE instead of standard output.", "写入文件 FILE，而不是标准输出。"),
    )
    @home_option
    @json_option
    def list_command(
        status: str | None, warning: str | None, applicant: str | None, id_no: str | None,
        phone: str | None, item: str | None, department: str | None, node: str | None,
        since: datetime | None,
        until: datetime | None, limit: int | None, offset: int, fmt: str | None,
        out: Path | None, home: Path | None, as_json: bool,
    ) -> None:  # fmt: skip
        fmt = export.format_for(fmt, str(out) if out is not None else None, as_json)
        if fmt == "xlsx" and out is None:
            raise CaseError("cli.case.xlsx_out")
        if out is not None:
            check_writable(out)
        wanted = listing.Filters(
            status=status, warning=warning, applicant=applicant, id_no=id_no, phone=phone,
            item=item, node=node, since=since.date() if since else None,
            until=until.date() if until else None, department=department,
        )  # fmt: skip
        if limit is None and fmt == "table" and out is None:
            import shutil  # a screenful for a person; --json and files never ask (#15)

            limit = max(MIN_SCREEN, shutil.get_terminal_size().lines - 5)
        with node_at(home) as opened:
            page = views.find_at(opened, wanted, limit, offset)
        if fmt == "table" and out is None:
            _print_page(page, wanted)
            return
        data = _render(page, fmt)
        if out is None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        write_atomically(out, data)
        echo(i18n.tn("cli.case.written", len(page.rows), path=str(out)), err=True)


def _warning(row: dict[str, Any]) -> str:
    return reading.warning_text(row["warning"]) or ""


def _print_page(page: listing.Page, wanted: listing.Filters) -> None:
    if not page.rows:
        if page.total and not page.offset:  # --limit 0: how many, and nothing more
            echo(i18n.tn("cli.case.count", page.total))
        elif page.total:
            echo(i18n.t("cli.case.none_past", offset=page.offset, count=page.total))
        elif given := wanted.given():
            shown = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in given.items())
            echo(i18n.t("cli.case.none_matching", filters=shown))
        else:
            echo(i18n.t("cli.case.none"))
        return
    mark = " (" + i18n.t("provisional.list_mark") + ")"
    rows = [
        [c["case_id"], c["item_code"], status_label(c["status"]), c["holder"], c["applicant"],
         (c["deadline"] or "") + (mark if c["provisional"] else ""),
         c["remaining_days"], _warning(c)]
        for c in page.rows
    ]  # fmt: skip
    print_table(i18n.t("cli.case.list_headers").split("|"), rows)
    if page.rest:
        echo(i18n.tn("cli.case.more", page.rest, next=page.offset + len(page.rows)))
    if guessed := listing.provisional_years(page.rows):
        echo(provisional_note(guessed))


def _render(page: listing.Page, fmt: str) -> bytes:
    """The page as a file: JSON (the `--json` list), CSV or XLSX (tiers.export)."""
    if fmt == "json":  # as `print_json` writes it: C1, DEL and bidi controls as \u escapes
        return (json_text(page.rows) + "\n").encode("utf-8")
    if fmt == "table":  # --out FILE.txt: the table as printed, every row
        lines = [i18n.t("case.list.export_headers").split("|")] + [
            [text_cell(r[k]) for k in reading.EXPORT_COLUMNS] for r in page.rows
        ]
        return "".join("\t".join(cells) + "\n" for cells in lines).encode("utf-8")
    table = reading.cases_table(page.rows, for_people=fmt == "xlsx")
    return export.to_xlsx(table) if fmt == "xlsx" else export.to_csv(table)
