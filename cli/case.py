"""`zhibao case …`: the case commands of DESIGN §7, each a thin shell over tiers.cases.

A recording command prints the case id (with --json, the case as `case show --json`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from cli import case_view
from cli import materials as materials_commands
from cli import rectify as rectify_commands
from cli.common import at_option, home_option, json_option, record, warn
from cli.help import h
from sync.node import Node
from sync.protocol import i18n
from tiers.cases import service, views
from tiers.cases.entries import CHANNELS

i18n.register(
    {
        "cli.case.accept_both": (
            "give either CASE or --item/--applicant, not both",
            "请给出 CASE 或 --item/--applicant，不能同时给出",
        ),
        "cli.case.accept_neither": (
            "give CASE, or --item and --applicant",
            "请给出 CASE，或同时给出 --item 和 --applicant",
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
    }
)

case_argument = click.argument("case_id", metavar="CASE")


def _done(home: Path | None, as_json: bool, work: Callable[[Node], str]) -> None:
    """Run one recording command on the node and print the case id or the case."""
    record(home, as_json, work, views.show)


def _applicant_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--material", "materials", multiple=True,
        help=h("A material handed in (repeatable).", "收到的一项材料（可重复）。"),
    )(func)  # fmt: skip
    func = click.option(
        "--phone", default=None, help=h("The applicant's phone number.", "申请人联系电话。")
    )(func)
    func = click.option(
        "--id-no", "id_no", default=None, help=h("The applicant's ID number.", "申请人身份证号。")
    )(func)
    return func


@click.group(
    "case",
    help=h(
        "Cases (办件): receive, accept, forward, complete, deliver, rate.",
        "办件：收件、受理、上报、办结、送达、评价。",
    ),
)
def case_group() -> None:
    pass


@case_group.command(
    "receive",
    help=h(
        "收件/代办: record an application received here.", "收件/代办：登记在本节点收到的申请。"
    ),
)
@click.option("--item", "item_code", required=True,
              help=h("Catalogue item code.", "事项编码。"))  # fmt: skip
@click.option("--applicant", required=True, help=h("The applicant's name.", "申请人姓名。"))
@_applicant_options
@at_option
@home_option
@json_option
def receive_command(item_code: str, applicant: str, id_no: str | None, phone: str | None,
                    materials: tuple[str, ...], at: str | None, home: Path | None,
                    as_json: bool) -> None:  # fmt: skip
    who = service.Applicant(applicant, id_no, phone)
    _done(home, as_json, lambda n: service.receive(n, item_code, who, materials, at=at))


@case_group.command("accept", help=h(
    "受理 CASE (or take a case forwarded here), or receive and accept --item at once.",
    "受理办件 CASE（或接收上报到本节点的办件），或用 --item 当场收件并受理。",
))  # fmt: skip
@click.argument("case_id", metavar="CASE", required=False)
@click.option("--item", "item_code", default=None,
              help=h("Create and accept a new case.", "新建并受理一件办件。"))  # fmt: skip
@click.option(
    "--applicant",
    default=None,
    help=h("The applicant's name (with --item).", "申请人姓名（与 --item 同用）。"),
)
@_applicant_options
@at_option
@home_option
@json_option
def accept_command(case_id: str | None, item_code: str | None, applicant: str | None,
                   id_no: str | None, phone: str | None, materials: tuple[str, ...],
                   at: str | None, home: Path | None, as_json: bool) -> None:  # fmt: skip
    if case_id is not None and (item_code or applicant):
        raise click.UsageError(i18n.t("cli.case.accept_both"))
    if case_id is None and not (item_code and applicant):
        raise click.UsageError(i18n.t("cli.case.accept_neither"))
    who = service.Applicant(applicant, id_no, phone) if applicant else None
    _done(home, as_json, lambda n: service.accept(
        n, case_id, item_code=item_code, applicant=who, materials=materials, at=at))  # fmt: skip


@case_group.command("reject", help=h("不予受理, with the reason.", "不予受理，并说明理由。"))
@case_argument
@click.option("--reason", required=True,
              help=h("Why, as the applicant is told.", "理由（告知申请人）。"))  # fmt: skip
@at_option
@home_option
@json_option
def reject_command(case_id: str, reason: str, at: str | None, home: Path | None,
                   as_json: bool) -> None:  # fmt: skip
    _done(home, as_json, lambda n: service.reject(n, case_id, reason, at=at))


@case_group.command("request-supplement", help=h(
    "一次性告知补正: list everything missing at once. More than five working days after"
    " receipt, the case counts as accepted as of receipt (行政许可法 第三十二条): the notice"
    " is still recorded, and a note on stderr says so.",
    "一次性告知补正：一次列出所缺的全部材料。收件后超过五个工作日才告知的，依《行政许可法》"
    "第三十二条自收件之日起即为受理：告知照常记录，并在标准错误上提示。",
))  # fmt: skip
@case_argument
@click.option(
    "--missing",
    multiple=True,
    required=True,
    help=h("What is missing (repeatable).", "所缺的一项材料（可重复）。"),
)
@at_option
@home_option
@json_option
def supplement_command(case_id: str, missing: tuple[str, ...], at: str | None,
                       home: Path | None, as_json: bool) -> None:  # fmt: skip
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


@case_group.command("supply", help=h(
    "The missing materials are in (before acceptance, this is the acceptance).",
    "补齐材料（受理前补齐的，即为受理）。",
))  # fmt: skip
@case_argument
@at_option
@home_option
@json_option
def supply_command(case_id: str, at: str | None, home: Path | None, as_json: bool) -> None:
    _done(home, as_json, lambda n: service.supply(n, case_id, at=at))


@case_group.command(
    "suspend", help=h("Pause the clock for a special procedure.", "启动特别程序，暂停计时。")
)
@case_argument
@click.option(
    "--reason",
    required=True,
    help=h("The special procedure (实地勘察, 听证 …).", "特别程序（实地勘察、听证……）。"),
)
@at_option
@home_option
@json_option
def suspend_command(case_id: str, reason: str, at: str | None, home: Path | None,
                    as_json: bool) -> None:  # fmt: skip
    _done(home, as_json, lambda n: service.suspend(n, case_id, reason, at=at))


@case_group.command(
    "resume", help=h("End the special procedure; the clock runs again.", "特别程序结束，恢复计时。")
)
@case_argument
@at_option
@home_option
@json_option
def resume_command(case_id: str, at: str | None, home: Path | None, as_json: bool) -> None:
    _done(home, as_json, lambda n: service.resume(n, case_id, at=at))


@case_group.command("extend", help=h(
    "延长 the time limit by N working days: once, at most the item's limit (default 10),"
    " before the deadline has passed.",
    "延长办理时限 N 个工作日：只能延长一次，不超过事项规定（默认 10 个工作日），且须在期限届满前。",
))  # fmt: skip
@case_argument
@click.option("--days", type=click.IntRange(min=1), required=True,
              help=h("Working days added.", "延长的工作日数。"))  # fmt: skip
@click.option("--reason", required=True, help=h("Why.", "延长理由。"))
@click.option("--approved-by", "approved_by", metavar="NAME",
              help=h("Who approved it: the head of the organ (行政许可法 第四十二条).",
                     "批准人：本机关负责人（《行政许可法》第四十二条）。"))  # fmt: skip
@at_option
@home_option
@json_option
def extend_command(case_id: str, days: int, reason: str, approved_by: str | None,
                   at: str | None, home: Path | None, as_json: bool) -> None:  # fmt: skip
    if approved_by is None:  # DESIGN §7 names no approver: scripts written to it still work
        warn(i18n.t("cli.case.unapproved", case_id=case_id))
    _done(
        home,
        as_json,
        lambda n: service.extend(n, case_id, days, reason, at=at, approved_by=approved_by),
    )


@case_group.command("forward", help=h(
    "上报: hand the case up; it stays here until the receiver accepts it.",
    "上报：把办件移交上级；接收方受理前仍由本节点经办。",
))  # fmt: skip
@case_argument
@click.option(
    "--to",
    "to",
    default=None,
    help=h("The receiving node (default: the parent).", "接收节点（默认：上级）。"),
)
@click.option("--note", default=None, help=h("A note for the receiver.", "给接收方的说明。"))
@at_option
@home_option
@json_option
def forward_command(case_id: str, to: str | None, note: str | None, at: str | None,
                    home: Path | None, as_json: bool) -> None:  # fmt: skip
    _done(home, as_json, lambda n: service.forward(n, case_id, to, note, at=at))


@case_group.command("complete", help=h("办结: approved or denied.", "办结：准予或不予。"))
@case_argument
@click.option(
    "--result",
    type=click.Choice(["approved", "denied"]),
    required=True,
    help=h("approved (准予) or denied (不予).", "approved（准予）或 denied（不予）。"),
)
@click.option(
    "--note",
    default=None,
    help=h("The result, as the applicant is told.", "办理结果说明（告知申请人）。"),
)
@at_option
@home_option
@json_option
def complete_command(case_id: str, result: str, note: str | None, at: str | None,
                     home: Path | None, as_json: bool) -> None:  # fmt: skip
    _done(home, as_json, lambda n: service.complete(n, case_id, result, note, at=at))


@case_group.command(
    "deliver", help=h("送达 the result to the applicant.", "向申请人送达办理结果。")
)
@case_argument
@click.option("--method", type=click.Choice(["window", "mail", "sms"]), default="window",
              show_default=True,
              help=h("At the window, by mail or by SMS.",
                     "窗口领取、邮寄或短信送达。"))  # fmt: skip
@at_option
@home_option
@json_option
def deliver_command(case_id: str, method: str, at: str | None, home: Path | None,
                    as_json: bool) -> None:  # fmt: skip
    _done(home, as_json, lambda n: service.deliver(n, case_id, method, at=at))


@case_group.command("fee", help=h(
    "核定收费 the catalogue's fee (票款分离: the bank window records the payment).",
    "核定收费（票款分离：由银行窗口登记缴费）。",
))  # fmt: skip
@case_argument
@click.option(
    "--amount",
    required=True,
    metavar="YUAN",
    help=h("In yuan, e.g. 45 or 45.50.", "金额（元），如 45 或 45.50。"),
)
@click.option(
    "--override-reason",
    "override_reason",
    default=None,
    metavar="TEXT",
    help=h(
        "Why the amount differs from the catalogue's fee (recorded, reported).",
        "金额与事项目录不同的原因（记录并上报）。",
    ),
)
@at_option
@home_option
@json_option
def fee_command(case_id: str, amount: str, override_reason: str | None, at: str | None,
                home: Path | None, as_json: bool) -> None:  # fmt: skip
    _done(home, as_json, lambda n: service.assess_fee(
        n, case_id, amount, at=at, override_reason=override_reason))  # fmt: skip


@case_group.command(
    "pay", help=h("Record the payment of the assessed fee.", "登记缴纳核定的费用。")
)
@case_argument
@click.option(
    "--receipt",
    required=True,
    metavar="NO",
    help=h("The bank's receipt number.", "银行缴费票据号。"),
)
@at_option
@home_option
@json_option
def pay_command(case_id: str, receipt: str, at: str | None, home: Path | None,
                as_json: bool) -> None:  # fmt: skip
    _done(home, as_json, lambda n: service.pay(n, case_id, receipt, at=at))


@case_group.command("rate", help=h(
    "评价 after delivery or 不予受理; 4 or 5 opens a rectification (差评整改).",
    "送达或不予受理后评价；评 4 或 5 即启动差评整改。",
))  # fmt: skip
@case_argument
@click.option("--score", type=click.IntRange(1, 5), required=True,
              help=h("1 非常满意 … 5 非常不满意 (GB/T 39046).",
                     "1 非常满意 …… 5 非常不满意（GB/T 39046）。"))  # fmt: skip
@click.option("--comment", default=None, help=h("The applicant's comment.", "评价意见。"))
@click.option("--channel", type=click.Choice(CHANNELS), default=None,
              help=h("Where the rating was given (好差评 channel).",
                     "评价渠道（好差评）。"))  # fmt: skip
@at_option
@home_option
@json_option
def rate_command(case_id: str, score: int, comment: str | None, channel: str | None,
                 at: str | None, home: Path | None, as_json: bool) -> None:  # fmt: skip
    _done(home, as_json, lambda n: service.rate(n, case_id, score, comment, at=at,
                                                channel=channel))  # fmt: skip


@case_group.command("withdraw", help=h("撤回 at the applicant's request.", "应申请人要求撤回。"))
@case_argument
@click.option("--reason", default=None, help=h("Why, if the applicant said.", "撤回原因。"))
@at_option
@home_option
@json_option
def withdraw_command(case_id: str, reason: str | None, at: str | None, home: Path | None,
                     as_json: bool) -> None:  # fmt: skip
    _done(home, as_json, lambda n: service.withdraw(n, case_id, reason, at=at))


case_view.register(case_group, case_argument)
materials_commands.register(case_group, case_argument)
rectify_commands.register(case_group, case_argument)
