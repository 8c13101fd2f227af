"""How a case reads for a person, in the reader's language: `zhibao case show`'s page and the
desk's case page say the same words (one place for them).

Everything here formats the dicts `tiers.cases.views` returns: the details of a case as
(name, label, value), what each event said (`event_note`), times as a clerk reads them
(`when`), where a material is, and `case list`'s export table (`cases_table`: the CSV for
tools, the XLSX for people), which the desk's warnings download as well.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sync.clock import ZONE
from sync.protocol import i18n
from tiers import export
from tiers.calendar import provisional_note
from tiers.cases.labels import describe_actions, status_label
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
_MATERIAL_STATES = {
    "here": ("here", "本机已有"), "on_the_way": ("on the way", "传输中"),
    "missing": ("MISSING", "缺失"),
    "dropped": ("handed up (copy let go)", "已上交（本机副本已清理）"),
}  # fmt: skip
EXPORT_COLUMNS = (
    "case_id", "item_code", "item_name", "status", "holder", "origin", "applicant", "phone",
    "received_at", "accepted_at", "deadline", "remaining_days", "warning", "completed_at",
    "result",
)  # fmt: skip
i18n.register(
    {f"case.show.field.{name}": (en, zh) for name, en, zh in _FIELDS}
    | {f"case.show.score.{k}": v for k, v in _SCORES.items()}
    | {f"case.show.method.{k}": v for k, v in _METHODS.items()}
    | {f"case.show.channel.{k}": v for k, v in _CHANNELS.items()}
    | {f"material.state.{k}": v for k, v in _MATERIAL_STATES.items()}
    | {
        "case.show.paused": ("paused since {since}", "自 {since} 起暂停计时"),
        "case.show.in_transit_to": ("{status} (to {to})", "{status}（至 {to}）"),
        "case.show.limit": ("{days} working days", "{days} 个工作日"),
        "case.show.limit.one": ("1 working day", "1 个工作日"),
        "case.show.limit_immediate": (
            "immediate (即办): due the day it is accepted",
            "即办，当日办结",
        ),
        "case.show.limit_extended": ("{limit}, extended by {days}", "{limit}，已延长 {days} 个"),
        "case.show.deemed_yes": (
            "yes: a late 补正 notice (行政许可法 第三十二条)",
            "是：补正告知逾期（《行政许可法》第三十二条）",
        ),
        "case.show.score": ("{score} ({label})", "{score}（{label}）"),
        "case.show.notice": (
            "One-time notice of what is missing (一次性告知), {at}, by {node_id}:",
            "一次性告知补正（{at}，{node_id}）：",
        ),
        "case.show.notice_supplied": ("Supplied {at}.", "已于 {at} 补齐。"),
        "case.show.notice_open": ("Not supplied yet.", "尚未补齐。"),
        "case.show.waiting": ("waiting for an earlier event", "等待更早的记录"),
        "case.show.refused.custody": (
            "refused: recorded by a node that did not hold the case",
            "无效：由未经办该件的节点记录",
        ),
        "case.show.refused.illegal": (
            "refused: not allowed in the case's status then",
            "无效：当时的办件状态不允许",
        ),
        "case.show.refused.guard": (
            "refused: not allowed by law (limits, back-dating, unpaid fee)",
            "无效：不符合法定要求（期限、倒签或未缴费）",
        ),
        "case.show.nothing_here": ("nothing (not for this node)", "无（不由本节点办理）"),
        "case.show.yes": ("yes", "是"),
        "case.show.no": ("no", "否"),
        "case.show.warning.yellow": ("yellow", "黄灯"),
        "case.show.warning.red": ("red (overdue)", "红灯（超期）"),
        "case.show.warning.unaccepted": (
            "received, not accepted (行政许可法 第三十二条)",
            "已收件未受理（《行政许可法》第三十二条）",
        ),
        "case.show.warning.undelivered": (
            "completed, not delivered within ten working days (行政许可法 第四十四条)",
            "已办结，十个工作日内未送达（《行政许可法》第四十四条）",
        ),
        "case.show.result.approved": ("approved", "准予"),
        "case.show.result.denied": ("denied", "不予"),
        # what each event said, for the events' note column
        "case.show.note.materials": ("materials: {materials}", "材料：{materials}"),
        "case.show.note.promised": ("promised {limit}", "承诺时限 {limit}"),
        "case.show.note.missing": (
            "{count} items missing (listed above)",
            "告知补正 {count} 项（见上方清单）",
        ),
        "case.show.note.missing.one": (
            "1 item missing (listed above)",
            "告知补正 1 项（见上方清单）",
        ),
        "case.show.note.extended": ("+{days}: {reason}", "延长 {days}：{reason}"),
        "case.show.note.approved_by": ("approved by {name}", "批准人：{name}"),
        "case.show.note.forwarded": ("to {to}", "上报至 {to}"),
        "case.show.note.fee": ("{yuan} yuan", "{yuan} 元"),
        "case.show.note.receipt": ("receipt {receipt}, {yuan} yuan", "票据号 {receipt}，{yuan} 元"),
        "case.show.note.channel": ("through {channel}", "渠道：{channel}"),
        "case.list.export_headers": (
            "case|item code|item|status|holder|received at node|applicant|phone|received"
            "|accepted|deadline|working days left|warning|completed|result",
            "办件编号|事项编码|事项名称|状态|经办节点|收件节点|申请人|联系电话|收件时间"
            "|受理时间|办结期限|剩余工作日|预警|办结时间|办理结果",
        ),
        "case.list.sheet": ("cases", "办件"),
        "material.headers": (
            "material|file|size|type|where|attached by|attached at",
            "材料|文件|大小|类型|位置|添加节点|添加时间",
        ),
    }
)


def named(case: Mapping[str, Any], node_id: str) -> str:
    """A node id with its name when the page knows it: "330782001 稠城街道"."""
    name = case.get("node_names", {}).get(node_id)
    return f"{node_id} {name}" if name else node_id


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
    return i18n.t("case.show.yes" if value else "case.show.no")


def limit_text(case: Mapping[str, Any]) -> str | None:
    """The case's time limit in words ("5 working days", "immediate …", "…, extended by 3")."""
    days = case["promised_days"]
    if days is None:
        return None
    if days == 0 and not case["extension_days"]:
        return i18n.t("case.show.limit_immediate")
    text = i18n.tn("case.show.limit", days, days=days)
    if case["extension_days"]:
        return i18n.t("case.show.limit_extended", limit=text, days=case["extension_days"])
    return text


def warning_text(warning: str | None) -> str | None:
    return i18n.t(f"case.show.warning.{warning}") if warning else None


def result_text(result: str | None) -> str | None:
    return i18n.t(f"case.show.result.{result}") if result else None


def fields(case: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """The case's details as (name, label, value), in the page's order; a value may be
    None or "" (nothing to say)."""
    applicant = case["applicant"] or {}
    deadline = case["deadline"] or ""
    if case["paused_since"]:
        deadline = i18n.t("case.show.paused", since=case["paused_since"])
    if case["provisional_note"]:
        deadline += f" ({case['provisional_note']})"
    status = status_label(case["status"])
    if case["forward_to"] and case["status"] == "in_transit":
        status = i18n.t("case.show.in_transit_to", status=status,
                        to=named(case, case["forward_to"]))  # fmt: skip
    rating = channel = None
    if case["rating"] is not None:
        label = i18n.t(f"case.show.score.{case['rating']}")
        rating = i18n.t("case.show.score", score=case["rating"], label=label)
    if case.get("rating_channel"):
        channel = i18n.t(f"case.show.channel.{case['rating_channel']}")
    closed = case["status"] in ("rejected", "withdrawn")
    allowed = case.get("allowed_here", case["allowed"])
    allowed_text = None
    if case["allowed"]:  # something may be recorded on the case: by this node, or elsewhere
        allowed_text = describe_actions(allowed) if allowed else i18n.t("case.show.nothing_here")
    values = {
        "case": case["case_id"],
        "item": case["item_code"] + (f" {case['item_name']}" if case["item_name"] else ""),
        "status": status, "holder": named(case, case["holder"]),
        "origin": named(case, case["origin"]),
        "applicant": applicant.get("name"), "id_no": applicant.get("id_no"),
        "phone": applicant.get("phone"), "materials": i18n.listed(case["materials"] or []),
        "received": when(case["received_at"]), "accepted": when(case["accepted_at"]),
        "accepted_by": (named(case, case["accepted_by"])
                        if case["accepted_by"] != case["holder"] else None),
        "limit": limit_text(case), "deadline": deadline, "remaining": case["remaining_days"],
        "warning": warning_text(case["warning"]),
        "procedure": case["reason"] if case["status"] == "suspended" else None,
        "deemed": i18n.t("case.show.deemed_yes") if case.get("deemed_accepted") else None,
        "completed": when(case["completed_at"]),
        "completed_by": (named(case, case["completed_by"])
                         if case["completed_by"] not in (None, case["holder"]) else None),
        "result": result_text(case["result"]),
        "result_note": case["note"], "delivered": when(case["delivered_at"]),
        "method": (i18n.t(f"case.show.method.{case['delivery_method']}")
                   if case["delivery_method"] else None),
        "fee": case["fee"], "paid": _yes(case["paid"]) if case["fee"] else None,
        "receipt": case["receipt"], "rating": rating, "comment": case["comment"],
        "channel": channel, "rated": when(case.get("rated_at")),
        "closed": when(case["closed_at"]) if closed else None,
        "reason": case["reason"] if closed else None,
        "approved_by": case.get("approved_by"),
        "allowed": allowed_text,
    }  # fmt: skip
    return [(name, i18n.t(f"case.show.field.{name}"), values[name]) for name, _en, _zh in _FIELDS]


def notice_heading(notice: Mapping[str, Any]) -> str:
    """The 一次性告知 notice's first line (its items follow, numbered)."""
    return i18n.t("case.show.notice", at=when(notice["at"]), node_id=notice["node_id"])


def notice_state(notice: Mapping[str, Any]) -> str:
    if notice["supplied_at"]:
        return i18n.t("case.show.notice_supplied", at=when(notice["supplied_at"]))
    return i18n.t("case.show.notice_open")


def event_note(ev: Mapping[str, Any]) -> str:
    """What one event said (its reason, note, days, amount …) and whether it stood."""
    body, kind = ev["body"], ev["type"].removeprefix("case.")
    parts: list[str] = []
    text = body.get("reason") or body.get("note")
    if kind == "received" and body.get("materials"):
        parts.append(i18n.t("case.show.note.materials",
                            materials=i18n.listed(body["materials"])))  # fmt: skip
    elif kind == "accepted" and body.get("promised_days") is not None:
        limit = limit_text({"promised_days": body["promised_days"], "extension_days": 0})
        parts.append(i18n.t("case.show.note.promised", limit=limit))
    elif kind == "supplement_requested":
        count = len(body.get("missing", []))
        parts.append(i18n.tn("case.show.note.missing", count))
    elif kind == "extended":
        days = i18n.tn("case.show.limit", body["days"], days=body["days"])
        parts.append(i18n.t("case.show.note.extended", days=days, reason=body["reason"]))
        if body.get("approved_by"):
            parts.append(i18n.t("case.show.note.approved_by", name=body["approved_by"]))
        text = None
    elif kind == "forwarded":
        parts.append(i18n.t("case.show.note.forwarded", to=body["to"]))
    elif kind == "completed":
        parts.append(i18n.t(f"case.show.result.{body['result']}"))
    elif kind == "delivered":
        parts.append(i18n.t(f"case.show.method.{body['method']}"))
    elif kind == "fee_assessed":
        parts.append(i18n.t("case.show.note.fee", yuan=yuan_from_fen(body["fee_fen"])))
        text = body.get("override_reason")
    elif kind == "fee_paid":
        parts.append(i18n.t("case.show.note.receipt", receipt=body["receipt"],
                            yuan=yuan_from_fen(body["fee_fen"])))  # fmt: skip
    elif kind == "rated":
        label = i18n.t(f"case.show.score.{body['score']}")
        parts.append(i18n.t("case.show.score", score=body["score"], label=label))
        text = body.get("comment")
        if body.get("channel"):
            channel = i18n.t(f"case.show.channel.{body['channel']}")
            parts.append(i18n.t("case.show.note.channel", channel=channel))
    if text:
        parts.append(text)
    if ev["standing"] == "waiting":
        parts.append(i18n.t("case.show.waiting"))
    elif ev["standing"] == "refused":
        parts.append(i18n.t("case.show.refused." + violation_kind(ev["problem"])))
    return ("；" if i18n.locale() == "zh" else "; ").join(p for p in parts if p)


# --- materials -----------------------------------------------------------------------------


def human_size(size: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def material_state(state: str) -> str:
    """Where a material is (`here`, `on_the_way`, `missing`, `dropped`), in words."""
    return i18n.t(f"material.state.{state}")


# --- case list as a file -------------------------------------------------------------------


def cases_table(rows: Sequence[Mapping[str, Any]], *, for_people: bool) -> export.Table:
    """`case list`'s rows as a file's table: for tools (CSV) the JSON keys and values as they
    are; for people (XLSX) headers, status, warning and result in words, times to the
    minute. The one rule `case list --format csv|xlsx` and the desk's warnings share."""
    shown = [for_people_row(r) for r in rows] if for_people else list(rows)
    guessed = {year for row in rows for year in row["provisional_years"]}
    headers = i18n.t("case.list.export_headers").split("|") if for_people else EXPORT_COLUMNS
    return export.Table(
        name=i18n.t("case.list.sheet"), columns=EXPORT_COLUMNS, headers=headers, rows=shown,
        note=provisional_note(guessed) if guessed else None,
        widths={0: 24, 2: 24, 6: 12, 8: 17, 9: 17, 13: 17}, frozen_columns=1,
    )  # fmt: skip


def for_people_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row with its status, warning and result in words and its times to the minute."""
    return dict(row) | {
        "status": status_label(row["status"]), "warning": warning_text(row["warning"]),
        "result": result_text(row["result"]),
        **{k: when(row[k]) for k in ("received_at", "accepted_at", "completed_at")},
    }  # fmt: skip
