"""`zhibao case rectify|rectifications`: the 差评整改 a bad rating opens (tiers.rectification)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli.common import at_option, echo, home_option, json_option, node_at, print_json, print_table
from cli.help import h
from sync.protocol import i18n
from tiers.cases import service, views
from tiers.cases.views import WARNINGS
from tiers.rectification import list_rectifications, rectify_days

i18n.register(
    {
        "cli.rectify.line.open": (
            "Rectification (bad rating {rating}): open since {opened_on}, due {due}{warning}",
            "差评整改（评价 {rating}）：自 {opened_on} 起整改中，期限 {due}{warning}",
        ),
        "cli.rectify.line.closed": (
            "Rectification (bad rating {rating}): closed {closed_at} by {closed_by}, due {due}"
            " ({timely}): {note}",
            "差评整改（评价 {rating}）：{closed_by} 于 {closed_at} 完成，期限 {due}"
            "（{timely}）：{note}",
        ),
        "cli.rectify.on_time": ("on time", "按时"),
        "cli.rectify.late": ("late", "超期"),
        "cli.rectify.warning.yellow": (" — yellow", "，黄灯"),
        "cli.rectify.warning.red": (" — red (overdue)", "，红灯（超期）"),
        "cli.rectify.headers": (
            "case|item|rating|channel|holder|opened|due|status|warning|closed",
            "办件编号|事项|评价|评价渠道|经办节点|差评日期|整改期限|状态|预警|完成时间",
        ),
        "cli.rectify.status.open": ("open", "整改中"),
        "cli.rectify.status.closed": ("closed", "已整改"),
        "cli.rectify.none": ("No rectifications.", "没有差评整改。"),
        "cli.rectify.yellow": ("yellow", "黄灯"),
        "cli.rectify.red": ("red (overdue)", "红灯（超期）"),
    }
)


def describe(case: dict[str, Any]) -> str | None:
    """One line on a case's rectification for `case show`, or None when there is none."""
    r = case.get("rectification")
    if r is None:
        return None
    if r["status"] == "open":
        colour = i18n.t(f"cli.rectify.warning.{r['warning']}") if r["warning"] else ""
        return i18n.t("cli.rectify.line.open", rating=case["rating"], opened_on=r["opened_on"],
                      due=r["due"], warning=colour)  # fmt: skip
    timely = i18n.t("cli.rectify.on_time" if r["on_time"] else "cli.rectify.late")
    return i18n.t(
        "cli.rectify.line.closed", rating=case["rating"], closed_at=r["closed_at"],
        closed_by=r["closed_by"], due=r["due"], timely=timely, note=r["note"],
    )  # fmt: skip


def register(case_group: click.Group, case_argument: Any) -> None:
    """Add the rectification commands to `zhibao case`."""

    @case_group.command("rectify", help=h(
        "差评整改 done: close the rectification a bad rating (4 or 5) opened.",
        "差评整改完成：关闭差评（4 或 5 分）引起的整改。"))  # fmt: skip
    @case_argument
    @click.option("--note", required=True,
                  help=h("What was put right (整改情况).", "整改情况。"))  # fmt: skip
    @at_option
    @home_option
    @json_option
    def rectify_command(case_id: str, note: str, at: str | None, home: Path | None,
                        as_json: bool) -> None:  # fmt: skip
        with node_at(home) as node:
            service.rectify(node, case_id, note, at=at)
            if as_json:
                print_json(views.show(node, case_id))
                return
        echo(case_id)

    @case_group.command("rectifications", help=h(
        "Bad ratings (差评) and their rectification (整改), newest first.",
        "差评及其整改，最新的在前。"))  # fmt: skip
    @click.option("--open", "open_only", is_flag=True,
                  help=h("Only those not closed yet.", "只列尚未关闭的。"))  # fmt: skip
    @click.option("--warning", type=click.Choice(WARNINGS), default=None,
                  help=h("Only open ones with this warning today (red: overdue).",
                         "只列今日有此预警的未关闭整改（red：超期）。"))  # fmt: skip
    @home_option
    @json_option
    def rectifications_command(open_only: bool, warning: str | None, home: Path | None,
                               as_json: bool) -> None:  # fmt: skip
        with node_at(home) as node:
            today, threshold = views.judging_day(node)
            days = rectify_days(node.config.settings)
            listed = list_rectifications(node.store, today, days, threshold,
                                         open_only=open_only, warning_filter=warning)  # fmt: skip
        if as_json:
            print_json(listed)
            return
        if not listed:
            echo(i18n.t("cli.rectify.none"))
            return
        rows = [
            [r["case_id"], r["item_code"], r["rating"], r["channel"], r["holder"],
             r["opened_on"], r["due"], i18n.t(f"cli.rectify.status.{r['status']}"),
             i18n.t(f"cli.rectify.{r['warning']}") if r["warning"] else "", r["closed_at"]]
            for r in listed
        ]  # fmt: skip
        print_table(i18n.t("cli.rectify.headers").split("|"), rows)
