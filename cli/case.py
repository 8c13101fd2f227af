"""`zhibao case …`: the case commands of DESIGN §7, each a thin shell over tiers.cases.

A recording command prints the case id (with --json, the case as `case show --json`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from cli import materials as materials_commands
from cli import rectify as rectify_commands
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
    warn,
)
from sync.node import Node
from sync.protocol import i18n
from tiers.calendar import provisional_note
from tiers.cases import service, views
from tiers.cases.entries import CHANNELS
from tiers.cases.labels import describe_actions, event_label, status_label
from tiers.cases.machine import STATUSES, violation_kind
from tiers.cases.views import WARNINGS

i18n.register(
    {
        "cli.case.fields": (
            "case|item|status|holder|origin|applicant|received|accepted|deadline|remaining"
            "|warning|completed|result|fee (yuan)|paid|rating|allowed now",
            "办件编号|事项|状态|经办节点|收件节点|申请人|收件时间|受理时间|办结期限|剩余工作日"
            "|预警|办结时间|办理结果|收费（元）|已缴费|评价|现在可以",
        ),
        "cli.case.paused": ("paused since {since}", "自 {since} 起暂停计时"),
        "cli.case.events": ("Events:", "办件记录："),
        "cli.case.event_headers": ("node|seq|time|event|note", "节点|序号|时间|事项|备注"),
        "cli.case.waiting": ("waiting for an earlier event", "等待更早的记录"),
        "cli.case.refused.custody": (
            "refused: recorded by a node that did not hold the case",
            "无效：由未经办该件的节点记录",
        ),
        "cli.case.refused.illegal": (
            "refused: not allowed in the case's status then",
            "无效：当时的办件状态不允许",
        ),
        "cli.case.refused.guard": (
            "refused: not allowed by law (limits, back-dating, unpaid fee)",
            "无效：不符合法定要求（期限、倒签或未缴费）",
        ),
        "cli.case.list_headers": (
            "case|item|status|holder|applicant|deadline|warning",
            "办件编号|事项|状态|经办节点|申请人|办结期限|预警",
        ),
        "cli.case.none": ("No cases.", "没有办件。"),
        "cli.case.yes": ("yes", "是"),
        "cli.case.no": ("no", "否"),
        "cli.case.warning.yellow": ("yellow", "黄灯"),
        "cli.case.warning.red": ("red (overdue)", "红灯（超期）"),
        "cli.case.warning.unaccepted": (
            "received, not accepted (行政许可法 第三十二条)",
            "已收件未受理（《行政许可法》第三十二条）",
        ),
        "cli.case.warning.undelivered": (
            "completed, not delivered within ten working days (行政许可法 第四十四条)",
            "已办结，十个工作日内未送达（《行政许可法》第四十四条）",
        ),
        "cli.case.unapproved": (
            "Note: the extension of case {case_id} is recorded without who approved it; the"
            " law asks for the head's approval (行政许可法 第四十二条): give --approved-by NAME.",
            "提示：办件 {case_id} 的延长未记录批准人；依《行政许可法》第四十二条须经本机关负责人"
            "批准，请用 --approved-by 注明。",
        ),
        "cli.case.deemed_accepted": (
            "note: this 补正 notice comes more than five working days after receipt, so case"
            " {case_id} counts as accepted as of {received_at} (行政许可法 第三十二条); its"
            " time limit runs from then.",
            "注意：本次补正告知距收件已超过五个工作日，依《行政许可法》第三十二条，办件"
            " {case_id} 自收件之日（{received_at}）起即为受理，办理期限自该日起算。",
        ),
        "cli.case.approved_by": ("extension approved by", "延长批准人"),
        "cli.case.result.approved": ("approved", "准予"),
        "cli.case.result.denied": ("denied", "不予"),
    }
)

case_argument = click.argument("case_id", metavar="CASE")


def _done(home: Path | None, as_json: bool, work: Callable[[Node], str]) -> None:
    """Run one recording command on the node and print the case id or the case."""
    record(home, as_json, work, views.show)


def _applicant_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--material", "materials", multiple=True, help="A material handed in (repeatable)."
    )(func)
    func = click.option("--phone", default=None)(func)
    func = click.option("--id-no", "id_no", default=None, help="The applicant's ID number.")(func)
    return func


@click.group("case")
def case_group() -> None:
    """Cases (办件): receive, accept, forward, complete, deliver, rate."""


@case_group.command("receive")
@click.option("--item", "item_code", required=True, help="Catalogue item code.")
@click.option("--applicant", required=True, help="The applicant's name.")
@_applicant_options
@at_option
@home_option
@json_option
def receive_command(item_code: str, applicant: str, id_no: str | None, phone: str | None,
                    materials: tuple[str, ...], at: str | None, home: Path | None,
                    as_json: bool) -> None:  # fmt: skip
    """收件/代办: record an application received here."""
    who = service.Applicant(applicant, id_no, phone)
    _done(home, as_json, lambda n: service.receive(n, item_code, who, materials, at=at))


@case_group.command("accept")
@click.argument("case_id", metavar="CASE", required=False)
@click.option("--item", "item_code", default=None, help="Create and accept a new case.")
@click.option("--applicant", default=None, help="The applicant's name (with --item).")
@_applicant_options
@at_option
@home_option
@json_option
def accept_command(case_id: str | None, item_code: str | None, applicant: str | None,
                   id_no: str | None, phone: str | None, materials: tuple[str, ...],
                   at: str | None, home: Path | None, as_json: bool) -> None:  # fmt: skip
    """受理 CASE (or take a case forwarded here), or receive and accept --item at once."""
    if case_id is not None and (item_code or applicant):
        raise click.UsageError("give either CASE or --item/--applicant, not both")
    if case_id is None and not (item_code and applicant):
        raise click.UsageError("give CASE, or --item and --applicant")
    who = service.Applicant(applicant, id_no, phone) if applicant else None
    _done(home, as_json, lambda n: service.accept(
        n, case_id, item_code=item_code, applicant=who, materials=materials, at=at))  # fmt: skip


@case_group.command("reject")
@case_argument
@click.option("--reason", required=True)
@at_option
@home_option
@json_option
def reject_command(case_id: str, reason: str, at: str | None, home: Path | None,
                   as_json: bool) -> None:  # fmt: skip
    """不予受理, with the reason."""
    _done(home, as_json, lambda n: service.reject(n, case_id, reason, at=at))


@case_group.command("request-supplement")
@case_argument
@click.option("--missing", multiple=True, required=True, help="What is missing (repeatable).")
@at_option
@home_option
@json_option
def supplement_command(case_id: str, missing: tuple[str, ...], at: str | None,
                       home: Path | None, as_json: bool) -> None:  # fmt: skip
    """一次性告知补正: list everything missing at once.

    More than five working days after receipt, the case counts as accepted as of receipt
    (行政许可法 第三十二条): the notice is still recorded, and a note on stderr says so.
    """
    deemed: list[str] = []

    def work(node: Node) -> str:
        done = service.request_supplement(node, case_id, missing, at=at)
        received = service.deemed_accepted(node, done)
        if received is not None:
            deemed.append(received)
        return done

    _done(home, as_json, work)
    if deemed:
        warn(i18n.t("cli.case.deemed_accepted", case_id=case_id, received_at=deemed[0]))


@case_group.command("supply")
@case_argument
@at_option
@home_option
@json_option
def supply_command(case_id: str, at: str | None, home: Path | None, as_json: bool) -> None:
    """The missing materials are in (before acceptance, this is the acceptance)."""
    _done(home, as_json, lambda n: service.supply(n, case_id, at=at))


@case_group.command("suspend")
@case_argument
@click.option("--reason", required=True, help="The special procedure (实地勘察, 听证 …).")
@at_option
@home_option
@json_option
def suspend_command(case_id: str, reason: str, at: str | None, home: Path | None,
                    as_json: bool) -> None:  # fmt: skip
    """Pause the clock for a special procedure."""
    _done(home, as_json, lambda n: service.suspend(n, case_id, reason, at=at))


@case_group.command("resume")
@case_argument
@at_option
@home_option
@json_option
def resume_command(case_id: str, at: str | None, home: Path | None, as_json: bool) -> None:
    """End the special procedure; the clock runs again."""
    _done(home, as_json, lambda n: service.resume(n, case_id, at=at))


@case_group.command("extend")
@case_argument
@click.option("--days", type=click.IntRange(min=1), required=True, help="Working days added.")
@click.option("--reason", required=True)
@click.option("--approved-by", "approved_by", metavar="NAME",
              help="Who approved it: the head of the organ (行政许可法 第四十二条).")  # fmt: skip
@at_option
@home_option
@json_option
def extend_command(case_id: str, days: int, reason: str, approved_by: str | None,
                   at: str | None, home: Path | None, as_json: bool) -> None:  # fmt: skip
    """延长 the time limit by N working days: once, at most the item's limit (default 10),
    before the deadline has passed."""
    if approved_by is None:  # DESIGN §7 names no approver: scripts written to it still work
        warn(i18n.t("cli.case.unapproved", case_id=case_id))
    _done(home, as_json, lambda n: service.extend(n, case_id, days, reason, at=at,
                                                     approved_by=approved_by))


@case_group.command("forward")
@case_argument
@click.option("--to", "to", default=None, help="The receiving node (default: the parent).")
@click.option("--note", default=None)
@at_option
@home_option
@json_option
def forward_command(case_id: str, to: str | None, note: str | None, at: str | None,
                    home: Path | None, as_json: bool) -> None:  # fmt: skip
    """上报: hand the case up; it stays here until the receiver accepts it."""
    _done(home, as_json, lambda n: service.forward(n, case_id, to, note, at=at))


@case_group.command("complete")
@case_argument
@click.option("--result", type=click.Choice(["approved", "denied"]), required=True)
@click.option("--note", default=None)
@at_option
@home_option
@json_option
def complete_command(case_id: str, result: str, note: str | None, at: str | None,
                     home: Path | None, as_json: bool) -> None:  # fmt: skip
    """办结: approved or denied."""
    _done(home, as_json, lambda n: service.complete(n, case_id, result, note, at=at))


@case_group.command("deliver")
@case_argument
@click.option("--method", type=click.Choice(["window", "mail", "sms"]), default="window",
              show_default=True)  # fmt: skip
@at_option
@home_option
@json_option
def deliver_command(case_id: str, method: str, at: str | None, home: Path | None,
                    as_json: bool) -> None:  # fmt: skip
    """送达 the result to the applicant."""
    _done(home, as_json, lambda n: service.deliver(n, case_id, method, at=at))


@case_group.command("fee")
@case_argument
@click.option("--amount", required=True, metavar="YUAN", help="In yuan, e.g. 45 or 45.50.")
@click.option("--override-reason", "override_reason", default=None, metavar="TEXT",
              help="Why the amount differs from the catalogue's fee (recorded, reported).")
@at_option
@home_option
@json_option
def fee_command(case_id: str, amount: str, override_reason: str | None, at: str | None,
                home: Path | None, as_json: bool) -> None:  # fmt: skip
    """核定收费 the catalogue's fee (票款分离: the bank window records the payment)."""
    _done(home, as_json, lambda n: service.assess_fee(
        n, case_id, amount, at=at, override_reason=override_reason))  # fmt: skip


@case_group.command("pay")
@case_argument
@click.option("--receipt", required=True, metavar="NO", help="The bank's receipt number.")
@at_option
@home_option
@json_option
def pay_command(case_id: str, receipt: str, at: str | None, home: Path | None,
                as_json: bool) -> None:  # fmt: skip
    """Record the payment of the assessed fee."""
    _done(home, as_json, lambda n: service.pay(n, case_id, receipt, at=at))


@case_group.command("rate")
@case_argument
@click.option("--score", type=click.IntRange(1, 5), required=True,
              help="1 非常满意 … 5 非常不满意 (GB/T 39046).")  # fmt: skip
@click.option("--comment", default=None)
@click.option("--channel", type=click.Choice(CHANNELS), default=None,
              help="Where the rating was given (好差评 channel).")  # fmt: skip
@at_option
@home_option
@json_option
def rate_command(case_id: str, score: int, comment: str | None, channel: str | None,
                 at: str | None, home: Path | None, as_json: bool) -> None:  # fmt: skip
    """评价 after delivery or 不予受理; 4 or 5 opens a rectification (差评整改)."""
    _done(home, as_json, lambda n: service.rate(n, case_id, score, comment, at=at,
                                                channel=channel))  # fmt: skip


@case_group.command("withdraw")
@case_argument
@click.option("--reason", default=None)
@at_option
@home_option
@json_option
def withdraw_command(case_id: str, reason: str | None, at: str | None, home: Path | None,
                     as_json: bool) -> None:  # fmt: skip
    """撤回 at the applicant's request."""
    _done(home, as_json, lambda n: service.withdraw(n, case_id, reason, at=at))


def _yes(value: bool) -> str:
    return i18n.t("cli.case.yes" if value else "cli.case.no")


def _print_case(case: dict[str, Any]) -> None:
    labels = i18n.t("cli.case.fields").split("|")
    deadline = case["deadline"] or ""
    if case["paused_since"]:
        deadline = i18n.t("cli.case.paused", since=case["paused_since"])
    if case["provisional_note"]:
        deadline += f" ({case['provisional_note']})"
    item = case["item_code"] + (f" {case['item_name']}" if case["item_name"] else "")
    warning = i18n.t(f"cli.case.warning.{case['warning']}") if case["warning"] else ""
    result = i18n.t(f"cli.case.result.{case['result']}") if case["result"] else ""
    values = [
        case["case_id"], item, status_label(case["status"]), case["holder"], case["origin"],
        case["applicant"].get("name"), case["received_at"], case["accepted_at"], deadline,
        case["remaining_days"], warning, case["completed_at"], result, case["fee"],
        _yes(case["paid"]) if case["fee"] else None, case["rating"],
        describe_actions(case["allowed"]),
    ]  # fmt: skip
    labels.append(i18n.t("cli.case.approved_by"))
    values.append(case.get("approved_by"))
    width = max(display_width(label) for label in labels)
    for label, value in zip(labels, values, strict=True):
        if value not in (None, ""):
            echo(f"{label}{' ' * (width - display_width(label))}  {value}")
    echo(i18n.t("cli.case.events"))
    rows = []
    for ev in case["events"]:
        note = ""
        if ev["standing"] == "waiting":
            note = i18n.t("cli.case.waiting")
        elif ev["standing"] == "refused":
            note = i18n.t("cli.case.refused." + violation_kind(ev["problem"]))
        rows.append([ev["node_id"], ev["seq"], ev["at"], event_label(ev["type"]), note])
    print_table(i18n.t("cli.case.event_headers").split("|"), rows)
    if (rectification := rectify_commands.describe(case)) is not None:
        echo(rectification)
    if case["attachments"]:
        echo(i18n.t("cli.material.title"))
        materials_commands.print_materials(case["case_id"], case["attachments"])


@case_group.command("show")
@case_argument
@home_option
@json_option
def show_command(case_id: str, home: Path | None, as_json: bool) -> None:
    """Everything known here about one case, with its events in order."""
    with node_at(home) as node:
        case = views.show(node, case_id)
    if as_json:
        print_json(case)
    else:
        _print_case(case)


@case_group.command("list")
@click.option("--status", type=click.Choice(STATUSES), default=None)
@click.option("--warning", "warning", type=click.Choice(WARNINGS), default=None,
              help="Only cases with this warning today.")  # fmt: skip
@home_option
@json_option
def list_command(status: str | None, warning: str | None, home: Path | None,
                 as_json: bool) -> None:  # fmt: skip
    """Cases known here, newest first, with today's warnings (电子监察)."""
    with node_at(home) as node:
        cases = views.list_at(node, status, warning)
    if as_json:
        print_json(cases)
        return
    if not cases:
        echo(i18n.t("cli.case.none"))
        return
    mark = " (" + i18n.t("provisional.list_mark") + ")"
    rows = [
        [c["case_id"], c["item_code"], status_label(c["status"]), c["holder"], c["applicant"],
         (c["deadline"] or "") + (mark if c["provisional"] else ""),
         i18n.t(f"cli.case.warning.{c['warning']}") if c["warning"] else ""]
        for c in cases
    ]  # fmt: skip
    print_table(i18n.t("cli.case.list_headers").split("|"), rows)
    guessed = {year for c in cases for year in c["provisional_years"]}
    if guessed:
        echo(provisional_note(guessed))


materials_commands.register(case_group, case_argument)
rectify_commands.register(case_group, case_argument)
