"""`case show` as a clerk reads and prints it: every detail of the case, the 一次性告知
notice as a numbered list of its own, and each event with what it said.

Everything here prints the dict `tiers.cases.views.show` returns (the same `--json`
prints), in the words of `tiers.cases.reading` (the desk's case page says the same); the
data is printed terminal-safe.
"""

from __future__ import annotations

from typing import Any

from cli import materials as materials_commands
from cli import rectify as rectify_commands
from cli.common import display_width, echo, print_table
from sync.protocol import i18n
from tiers.cases.labels import event_label
from tiers.cases.reading import event_note, fields, notice_heading, notice_state, when

__all__ = ["event_note", "fields", "print_case", "when"]

i18n.register(
    {
        "cli.case.title": ("Case {case_id}", "办件 {case_id}"),
        "cli.case.events": ("Events:", "办件记录："),
        "cli.case.event_headers": ("node|seq|time|event|note", "节点|序号|时间|事项|备注"),
    }
)


def print_case(case: dict[str, Any]) -> None:
    """The whole page: title, details, the 一次性告知 lists, events, rectification, files."""
    echo(i18n.t("cli.case.title", case_id=case["case_id"]))
    echo()
    shown = [(label, value) for _, label, value in fields(case) if value not in (None, "")]
    width = max(display_width(label) for label, _ in shown)
    for label, value in shown:
        echo(f"{label}{' ' * (width - display_width(label))}  {value}")
    for notice in case.get("notices", []):
        echo()
        echo(notice_heading(notice))
        for number, item in enumerate(notice["missing"], start=1):
            echo(f"  {number}. {item}")
        echo("  " + notice_state(notice))
    echo()
    echo(i18n.t("cli.case.events"))
    rows = [
        [ev["node_id"], ev["seq"], when(ev["at"]), event_label(ev["type"]), event_note(ev)]
        for ev in case["events"]
    ]
    print_table(i18n.t("cli.case.event_headers").split("|"), rows)
    if (rectification := rectify_commands.describe(case)) is not None:
        echo()
        echo(rectification)
    if case["attachments"]:
        echo()
        echo(i18n.t("cli.material.title"))
        materials_commands.print_materials(case["case_id"], case["attachments"])
