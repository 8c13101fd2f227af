"""How statuses and actions read for a person, in the current locale (zh or en)."""

from __future__ import annotations

from collections.abc import Sequence

from sync.protocol import i18n

_STATUS_LABELS = {
    "received": ("received", "已收件"),
    "in_transit": ("in transit", "移交中"),
    "accepted": ("accepted", "已受理"),
    "supplement_requested": ("awaiting supplement", "待补正"),
    "suspended": ("suspended", "特别程序中"),
    "completed": ("completed", "已办结"),
    "delivered": ("delivered", "已送达"),
    "rejected": ("rejected", "不予受理"),
    "withdrawn": ("withdrawn", "已撤回"),
}
_ACTION_LABELS = {
    "accept": "受理", "reject": "不予受理", "request-supplement": "一次性告知补正",
    "supply": "补齐材料", "suspend": "启动特别程序", "resume": "恢复计时", "extend": "延长时限",
    "forward": "上报", "complete": "办结", "deliver": "送达", "fee": "核定收费",
    "pay": "登记缴费", "rate": "评价", "withdraw": "撤回", "rectify": "差评整改",
}  # fmt: skip
_EVENT_LABELS = {
    "received": ("received", "收件"), "accepted": ("accepted", "受理"),
    "rejected": ("rejected", "不予受理"),
    "supplement_requested": ("supplement requested", "一次性告知补正"),
    "supplied": ("materials supplied", "补齐材料"),
    "suspended": ("special procedure started", "特别程序开始"),
    "resumed": ("special procedure ended", "特别程序结束"),
    "extended": ("time limit extended", "延长时限"), "forwarded": ("forwarded", "上报"),
    "taken": ("taken over", "接收上报件"), "completed": ("completed", "办结"),
    "delivered": ("delivered", "送达"), "fee_assessed": ("fee assessed", "核定收费"),
    "fee_paid": ("fee paid", "缴费"), "rated": ("rated", "评价"),
    "withdrawn": ("withdrawn", "撤回"), "rectified": ("bad rating rectified", "差评整改完成"),
}  # fmt: skip
i18n.register(
    {f"case.status.{k}": v for k, v in _STATUS_LABELS.items()}
    | {f"case.action.{k}": (k, v) for k, v in _ACTION_LABELS.items()}
    | {f"case.event.{k}": v for k, v in _EVENT_LABELS.items()}
)


def describe_actions(actions: Sequence[str]) -> str:
    """The allowed actions for a person: command names, with Chinese labels in zh."""
    if i18n.locale() == "zh":
        return "、".join(f"{i18n.t('case.action.' + a)}（{a}）" for a in actions)
    return ", ".join(actions)


def status_label(status: str) -> str:
    return i18n.t("case.status." + status)


def event_label(entry_type: str) -> str:
    """`case.completed` → "completed" / "办结"."""
    key = "case.event." + entry_type.removeprefix("case.")
    return i18n.t(key) if i18n.has(key) else entry_type
