"""What each kind of reconcile finding is called, in the reader's language.

`reconcile --json` names a finding's kind by its stable English key (`clock_skew`, DESIGN §7,
§8); a person reads the kind's name instead (时钟偏差 under zh, "clock skew" otherwise).
A kind this version has no name for (a newer zhibao's) is shown as its key."""

from __future__ import annotations

from typing import Any

from sync.protocol import i18n
from tiers.city.stats import headers

_NAMES = {
    "report_mismatch": ("report mismatch", "月报数据不符"),
    "missing_report": ("missing report", "未报月报"),
    "fork": ("fork", "日志分叉"),
    "gap": ("gap in a log", "日志缺失"),
    "stale_node": ("not heard from", "长期无消息"),
    "orphan_forward": ("forward not taken up", "上报未接收"),
    "clock_skew": ("clock skew", "时钟偏差"),
    "custody_violation": ("without custody", "越权办理"),
    "quarantined_entry": ("entry set aside", "条目未采用"),
    "revoked_key_used": ("revoked key used", "使用已吊销密钥"),
    "missing_material": ("material missing", "材料未到达"),
    "calendar_missing": ("calendar missing", "缺少工作日历"),
    "report_inconsistent": ("report inconsistent", "月报自相矛盾"),
    "backdated_step": ("step backdated", "环节时间倒置"),
    "complaint_violation": ("complaint refused", "投诉事件被拒"),
    "acceptance_unlike_catalogue": ("acceptance unlike catalogue", "受理与目录不符"),
    "fee_override": ("fee unlike catalogue", "收费与目录不符"),
    "fee_unassessed": ("fee not assessed", "未核定收费"),
    "guard_violation": ("refused by a guard", "违反办件规则"),
    "backdated": ("backdated", "倒签"),
}  # fmt: skip
i18n.register({f"finding.kind.{kind}": names for kind, names in _NAMES.items()})


def kind_name(kind: str) -> str:
    """The name of a finding's kind for a person (the key itself if it has none)."""
    key = f"finding.kind.{kind}"
    return i18n.t(key) if i18n.has(key) else kind


def words(evidence: dict[str, Any]) -> dict[str, str]:
    """Names for the keys a finding's evidence holds, for its detail in the reader's
    language: `field_name` (a count, as the stats table calls it) and `part_name` (by item,
    by kind, or the total)."""
    named = {}
    if isinstance(evidence.get("field"), str):
        named["field_name"] = headers([evidence["field"]])[0]
    part = evidence.get("part")
    if part == "total":
        named["part_name"] = i18n.t("stats.total")
    elif isinstance(part, str) and i18n.has(f"stats.by.{part}"):
        named["part_name"] = i18n.t(f"stats.by.{part}")
    elif isinstance(part, str):
        named["part_name"] = part
    return named
