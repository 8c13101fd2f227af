"""`case show` as a clerk reads and prints it: every detail of the case, the 一次性告知
notice as a numbered list of its own, and each event with what it said.

Everything here formats the dict `tiers.cases.views.show` returns (the same `--json`
prints); the words come from `sync.protocol.i18n`, the data is printed terminal-safe.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cli import materials as materials_commands
from cli import rectify as rectify_commands
from cli.common import display_width, echo, print_table
from sync.clock import ZONE
from sync.protocol import i18n
from tiers.cases.labels import describe_actions, event_label, status_label
from tiers.cases.machine import violation_kind
from tiers.catalogue import yuan_from_fen

# (field, English label, Chinese label), in the order of the page
_FIELDS = (
    ("case", "case", "办件编号"), ("item", "item", "事项"), ("status", "status", "状态"),
    ("holder", "holder", "经办节点"), ("origin", "received at node", "收件节点"),
    ("applicant", "applicant", "申请人"), ("id_no", "ID number", "身份证号"),
    ("phone", "phone", "联系电话"), ("materials", "materials handed in", "收件材料"),
    ("received", "received", "收件时间"), ("accepted", "accepted", "受理时间"),
    ("accepted_by", "accepted by", "受理节点"), ("limit", "time limit", "承诺时限"),
    ("deadline", "deadline", "办结期限"), ("remaining", "working days left", "剩余工作日"),
    ("warning", "warning", "预警"), ("procedure", "special procedure", "特别程序"),
    ("deemed", "accepted as of receipt", "视为受理"),
    ("completed", "completed", "办结时间"), ("completed_by", "completed by", "办结节点"),
    ("result", "result", "办理结果"), ("result_note", "result note", "结果说明"),
    ("delivered", "delivered", "送达时间"), ("method", "delivery method", "送达方式"),
    ("fee", "fee (yuan)", "收费（元）"), ("paid", "paid", "已缴费"),
    ("receipt", "payment receipt", "缴费票据号"), ("rating", "rating", "评价"),
    ("comment", "rating comment", "评价意见"), ("channel", "rated through", "评价渠道"),
    ("rated", "rated", "评价时间"), ("closed", "ended", "终止时间"),
    ("reason", "reason", "理由"), ("approved_by", "extension approved by", "延长批准人"),
    ("allowed", "allowed here now", "本节点现在可以"),
)  # fmt: skip
_SCORES = {
    1: ("very satisfied", "非常满意"), 2: ("satisfied", "满意"),
    3: ("fairly satisfied", "基本满意"),
    4: ("dissatisfied", "不满意"), 5: ("very dissatisfied", "非常不满意"),
}  # fmt: skip
_METHODS = {"window": ("at the window", "窗口领取"), "mail": ("by mail", "邮寄送达"),
            "sms": ("by SMS", "短信送达")}  # fmt: skip
_CHANNELS = {
    "window": ("window", "窗口"), "pad": ("rating pad", "评价器"), "sms": ("SMS", "短信"),
    "web": ("web", "网站"), "app": ("app", "移动端"), "phone": ("phone", "电话"),
}  # fmt: skip
i18n.register(
    {f"cli.case.field.{name}": (en, zh) for name, en, zh in _FIELDS}
    | {f"cli.case.score.{k}": v for k, v in _SCORES.items()}
    | {f"cli.case.method.{k}": v for k, v in _METHODS.items()}
    | {f"cli.case.channel.{k}": v for k, v in _CHANNELS.items()}
    | {
        "cli.case.title": ("Case {case_id}", "办件 {case_id}"),
        "cli.case.paused": ("paused since {since}", "自 {since} 起暂停计时"),
        "cli.case.in_transit_to": ("{status} (to {to})", "{status}（至 {to}）"),
        "cli.case.limit": ("{days} working days", "{days} 个工作日"),
        "cli.case.limit.one": ("1 working day", "1 个工作日"),
        "cli.case.limit_immediate": (
            "immediate (即办): due the day it is accepted",
            "即办，当日办结",
        ),
        "cli.case.limit_extended": ("{limit}, extended by {days}", "{limit}，已延长 {days} 个"),
        "cli.case.deemed_yes": (
            "yes: a late 补正 notice (行政许可法 第三十二条)",
            "是：补正告知逾期（《行政许可法》第三十二条）",
        ),
        "cli.case.score": ("{score} ({label})", "{score}（{label}）"),
        "cli.case.notice": (
            "One-time notice of what is missing (一次性告知), {at}, by {node_id}:",
            "一次性告知补正（{at}，{node_id}）：",
        ),
        "cli.case.notice_supplied": ("Supplied {at}.", "已于 {at} 补齐。"),
        "cli.case.notice_open": ("Not supplied yet.", "尚未补齐。"),
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
        "cli.case.nothing_here": ("nothing (not for this node)", "无（不由本节点办理）"),
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
        "cli.case.result.approved": ("approved", "准予"),
        "cli.case.result.denied": ("denied", "不予"),
        # what each event said, for the events' note column
        "cli.case.note.materials": ("materials: {materials}", "材料：{materials}"),
        "cli.case.note.promised": ("promised {limit}", "承诺时限 {limit}"),
        "cli.case.note.missing": (
            "{count} items missing (listed above)",
            "告知补正 {count} 项（见上方清单）",
        ),
        "cli.case.note.missing.one": (
            "1 item missing (listed above)",
            "告知补正 1 项（见上方清单）",
        ),
        "cli.case.note.extended": ("+{days}: {reason}", "延长 {days}：{reason}"),
        "cli.case.note.approved_by": ("approved by {name}", "批准人：{name}"),
        "cli.case.note.forwarded": ("to {to}", "上报至 {to}"),
        "cli.case.note.fee": ("{yuan} yuan", "{yuan} 元"),
        "cli.case.note.receipt": ("receipt {receipt}, {yuan} yuan", "票据号 {receipt}，{yuan} 元"),
        "cli.case.note.channel": ("through {channel}", "渠道：{channel}"),
    }
)


def named(case: dict[str, Any], node_id: str) -> str:
    """A node id with its name when the page knows it: "330782001 稠城街道"."""
    name = case.get("node_names", {}).get(node_id)
    return f"{node_id} {name}" if name else node_id


def _label(name: str) -> str:
    return i18n.t(f"cli.case.field.{name}")


def when(at: str | None) -> str | None:
    """An event time as a clerk reads it: China time, to the minute (seconds if any)."""
    if not at:
        return at
    try:
        moment = datetime.fromisoformat(at).astimezone(ZONE)
    except ValueError:
        return at
    return moment.strftime("%Y-%m-%d %H:%M" if moment.second == 0 else "%Y-%m-%d %H:%M:%S")


def _yes(value: bool) -> str:
    return i18n.t("cli.case.yes" if value else "cli.case.no")


def _limit(case: dict[str, Any]) -> str | None:
    days = case["promised_days"]
    if days is None:
        return None
    if days == 0 and not case["extension_days"]:
        return i18n.t("cli.case.limit_immediate")
    text = i18n.tn("cli.case.limit", days, days=days)
    if case["extension_days"]:
        return i18n.t("cli.case.limit_extended", limit=text, days=case["extension_days"])
    return text


def fields(case: dict[str, Any]) -> list[tuple[str, Any]]:
    """The case's details as (label, value) pairs; those without a value are left out."""
    applicant = case["applicant"]
    deadline = case["deadline"] or ""
    if case["paused_since"]:
        deadline = i18n.t("cli.case.paused", since=case["paused_since"])
    if case["provisional_note"]:
        deadline += f" ({case['provisional_note']})"
    status = status_label(case["status"])
    if case["forward_to"] and case["status"] == "in_transit":
        status = i18n.t("cli.case.in_transit_to", status=status,
                        to=named(case, case["forward_to"]))  # fmt: skip
    rating = channel = None
    if case["rating"] is not None:
        label = i18n.t(f"cli.case.score.{case['rating']}")
        rating = i18n.t("cli.case.score", score=case["rating"], label=label)
    if case.get("rating_channel"):
        channel = i18n.t(f"cli.case.channel.{case['rating_channel']}")
    closed = case["status"] in ("rejected", "withdrawn")
    allowed = case.get("allowed_here", case["allowed"])
    allowed_text = None
    if case["allowed"]:  # something may be recorded on the case: by this node, or elsewhere
        allowed_text = describe_actions(allowed) if allowed else i18n.t("cli.case.nothing_here")
    values = {
        "case": case["case_id"],
        "item": case["item_code"] + (f" {case['item_name']}" if case["item_name"] else ""),
        "status": status, "holder": named(case, case["holder"]),
        "origin": named(case, case["origin"]),
        "applicant": applicant.get("name"), "id_no": applicant.get("id_no"),
        "phone": applicant.get("phone"), "materials": i18n.listed(case["materials"]),
        "received": when(case["received_at"]), "accepted": when(case["accepted_at"]),
        "accepted_by": (named(case, case["accepted_by"])
                        if case["accepted_by"] != case["holder"] else None),
        "limit": _limit(case), "deadline": deadline, "remaining": case["remaining_days"],
        "warning": i18n.t(f"cli.case.warning.{case['warning']}") if case["warning"] else None,
        "procedure": case["reason"] if case["status"] == "suspended" else None,
        "deemed": i18n.t("cli.case.deemed_yes") if case.get("deemed_accepted") else None,
        "completed": when(case["completed_at"]),
        "completed_by": (named(case, case["completed_by"])
                         if case["completed_by"] not in (None, case["holder"]) else None),
        "result": i18n.t(f"cli.case.result.{case['result']}") if case["result"] else None,
        "result_note": case["note"], "delivered": when(case["delivered_at"]),
        "method": (i18n.t(f"cli.case.method.{case['delivery_method']}")
                   if case["delivery_method"] else None),
        "fee": case["fee"], "paid": _yes(case["paid"]) if case["fee"] else None,
        "receipt": case["receipt"], "rating": rating, "comment": case["comment"],
        "channel": channel, "rated": when(case.get("rated_at")),
        "closed": when(case["closed_at"]) if closed else None,
        "reason": case["reason"] if closed else None,
        "approved_by": case.get("approved_by"),
        "allowed": allowed_text,
    }  # fmt: skip
    return [(_label(name), values[name]) for name, _en, _zh in _FIELDS]


def event_note(ev: dict[str, Any]) -> str:
    """What one event said (its reason, note, days, amount …) and whether it stood."""
    body, kind = ev["body"], ev["type"].removeprefix("case.")
    parts: list[str] = []
    text = body.get("reason") or body.get("note")
    if kind == "received" and body.get("materials"):
        parts.append(i18n.t("cli.case.note.materials", materials=i18n.listed(body["materials"])))
    elif kind == "accepted" and body.get("promised_days") is not None:
        limit = _limit({"promised_days": body["promised_days"], "extension_days": 0})
        parts.append(i18n.t("cli.case.note.promised", limit=limit))
    elif kind == "supplement_requested":
        count = len(body.get("missing", []))
        parts.append(i18n.tn("cli.case.note.missing", count))
    elif kind == "extended":
        days = i18n.tn("cli.case.limit", body["days"], days=body["days"])
        parts.append(i18n.t("cli.case.note.extended", days=days, reason=body["reason"]))
        if body.get("approved_by"):
            parts.append(i18n.t("cli.case.note.approved_by", name=body["approved_by"]))
        text = None
    elif kind == "forwarded":
        parts.append(i18n.t("cli.case.note.forwarded", to=body["to"]))
    elif kind == "completed":
        parts.append(i18n.t(f"cli.case.result.{body['result']}"))
    elif kind == "delivered":
        parts.append(i18n.t(f"cli.case.method.{body['method']}"))
    elif kind == "fee_assessed":
        parts.append(i18n.t("cli.case.note.fee", yuan=yuan_from_fen(body["fee_fen"])))
        text = body.get("override_reason")
    elif kind == "fee_paid":
        parts.append(i18n.t("cli.case.note.receipt", receipt=body["receipt"],
                            yuan=yuan_from_fen(body["fee_fen"])))  # fmt: skip
    elif kind == "rated":
        label = i18n.t(f"cli.case.score.{body['score']}")
        parts.append(i18n.t("cli.case.score", score=body["score"], label=label))
        text = body.get("comment")
        if body.get("channel"):
            channel = i18n.t(f"cli.case.channel.{body['channel']}")
            parts.append(i18n.t("cli.case.note.channel", channel=channel))
    if text:
        parts.append(text)
    if ev["standing"] == "waiting":
        parts.append(i18n.t("cli.case.waiting"))
    elif ev["standing"] == "refused":
        parts.append(i18n.t("cli.case.refused." + violation_kind(ev["problem"])))
    return ("；" if i18n.locale() == "zh" else "; ").join(p for p in parts if p)


def print_case(case: dict[str, Any]) -> None:
    """The whole page: title, details, the 一次性告知 lists, events, rectification, files."""
    echo(i18n.t("cli.case.title", case_id=case["case_id"]))
    echo()
    shown = [(label, value) for label, value in fields(case) if value not in (None, "")]
    width = max(display_width(label) for label, _ in shown)
    for label, value in shown:
        echo(f"{label}{' ' * (width - display_width(label))}  {value}")
    for notice in case.get("notices", []):
        echo()
        echo(i18n.t("cli.case.notice", at=when(notice["at"]), node_id=notice["node_id"]))
        for number, item in enumerate(notice["missing"], start=1):
            echo(f"  {number}. {item}")
        if notice["supplied_at"]:
            echo("  " + i18n.t("cli.case.notice_supplied", at=when(notice["supplied_at"])))
        else:
            echo("  " + i18n.t("cli.case.notice_open"))
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
