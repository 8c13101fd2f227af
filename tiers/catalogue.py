"""The service-item catalogue (事项目录): the item model and a pure CSV/JSON parser.

Bytes in, items out. A file is accepted whole or refused whole with one `CatalogueError`
naming the file, the line (1-based; the CSV header is line 1; for JSON, the line where the
item's object starts) and the column. Money is held in integer fen and converted from yuan
with `decimal` only, here and nowhere else.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NoReturn

from sync.protocol import i18n
from sync.protocol.errors import CaseError, CatalogueError, ZhibaoError

KINDS = ("immediate", "promised", "forward", "joint")
TIERS = ("village", "town", "city")  # lowest first: a tier's index is its rank
REQUIRED = ("code", "name", "department", "kind", "promised_days")
COLUMNS = (*REQUIRED, "statutory_days", "fee", "materials", "accept_tiers", "decide_tier")
BODY_KEYS = (*REQUIRED, "statutory_days", "fee_fen", "materials", "accept_tiers", "decide_tier")

_KIND_NAMES = dict(zip(("即办", "承诺", "上报", "联办"), KINDS, strict=True)) | {k: k for k in KINDS}
_TIER_NAMES = {"村": "village", "镇": "town", "市": "city"} | {t: t for t in TIERS}
_DAYS = re.compile(r"[0-9]{1,5}")
_YUAN = re.compile(r"[0-9]{1,15}(\.[0-9]{1,2})?")
_SEPARATORS = re.compile(r"[;；]")

_KIND_HELP = ("即办, 承诺, 上报 or 联办 (immediate, promised, forward, joint)",
              "即办、承诺、上报、联办（immediate、promised、forward、joint）")  # fmt: skip
_TIER_HELP = ("city, town or village (市, 镇, 村)", "city、town、village（市、镇、村）")
_YUAN_HELP = (
    "'{value}' is not an amount in yuan; use a number, 0 or more, with at most two decimals,"
    " such as 45 or 45.00",
    "“{value}”不是以元为单位的金额；请填写 0 或以上、最多两位小数的数，如 45 或 45.00",
)
# What is wrong with a value; registered twice, behind a file/line prefix and an entry prefix.
_PROBLEMS: dict[str, tuple[str, str]] = {
    "missing_column": ("this required column is missing; required are {required}",
                       "缺少此必填列；必填列为 {required}"),
    "unknown_column": ("not a catalogue column; use {allowed}", "不是事项目录的列；可用 {allowed}"),
    "duplicate_column": ("the column appears twice in the header", "表头中此列出现了两次"),
    "blank": ("a value is required", "此项不能为空"),
    "not_text": ("'{value}' is not text", "“{value}”不是文本"),
    "not_list": ("'{value}' is not a list of text", "“{value}”不是文本列表"),
    "bad_kind": ("'{value}' is not a kind; use " + _KIND_HELP[0],
                 "“{value}”不是办件类型；可用 " + _KIND_HELP[1]),
    "bad_tier": ("'{value}' is not a tier; use " + _TIER_HELP[0],
                 "“{value}”不是层级；可用 " + _TIER_HELP[1]),
    "bad_days": ("'{value}' is not a number of working days; use a whole number, 0 or more",
                 "“{value}”不是工作日天数；请填写 0 或以上的整数"),
    "bad_fee": _YUAN_HELP,
    "bad_fen": ("'{value}' is not an amount in fen; use a whole number, 0 or more",
                "“{value}”不是以分为单位的金额；请填写 0 或以上的整数"),
    "immediate_days": ("an immediate (即办) item is done the day it is accepted, so promised_days"
                       " must be 0, not {value}",
                       "即办件当日办结，承诺时限必须为 0，不能是 {value}"),
    "statutory_short": ("statutory_days {value} is less than promised_days {promised}; the"
                        " statutory limit must be at least the promised one",
                        "法定时限 {value} 天少于承诺时限 {promised} 天；法定时限不能少于承诺时限"),
    "decide_below": ("'{value}' is below {lowest}, the lowest tier that accepts the item",
                     "“{value}”低于受理该事项的最低层级 {lowest}"),
    "forward_decide": ("a forward (上报) item is decided above the lowest tier that accepts it"
                       " ({lowest}), so not at '{value}'",
                       "上报件须由高于最低受理层级（{lowest}）的层级决定，不能是“{value}”"),
    "forward_nowhere": ("a forward (上报) item accepted only at the city has no higher tier to"
                        " decide it; set decide_tier or let a lower tier accept it",
                        "只由市级受理的上报件没有更高的决定层级；请填写决定层级或增加较低的受理层级"),
    "duplicate_code": ("'{value}' is already the code on line {first}; codes must be unique",
                       "编码“{value}”已在第 {first} 行使用；编码不能重复"),
}  # fmt: skip
i18n.register(
    {f"catalogue.{k}": ("{file} line {line}, column {column}: " + en,
                        "{file} 第 {line} 行 {column} 列：" + zh) for k, (en, zh) in _PROBLEMS.items()}
    | {f"catalogue.entry.{k}": ("catalogue item {code}, field {column}: " + en,
                                "事项 {code} 的 {column} 字段：" + zh)
       for k, (en, zh) in _PROBLEMS.items()}
    | {f"catalogue.kind.{k}": (k, zh) for zh, k in zip(_KIND_NAMES, KINDS, strict=False)}
    | {f"catalogue.tier.{k}": (k, zh) for zh, k in zip(_TIER_NAMES, TIERS, strict=False)}
    | {
        "catalogue.not_kind": (_PROBLEMS["bad_kind"]),
        "catalogue.not_tier": (_PROBLEMS["bad_tier"]),
        "catalogue.encoding": ("{file} is not UTF-8 or GB18030 text; save it as “CSV UTF-8”",
                               "{file} 不是 UTF-8 或 GB18030 编码的文本；请另存为“CSV UTF-8”"),
        "catalogue.empty": ("{file} is empty; its first line must be the header, such as"
                            " {required}", "{file} 是空的；第一行必须是表头，如 {required}"),
        "catalogue.csv_invalid": ("{file} line {line}: not valid CSV ({reason})",
                                  "{file} 第 {line} 行：不是有效的 CSV（{reason}）"),
        "catalogue.too_many_values": ("{file} line {line}: {count} values but the header has"
                                      " {columns} columns; quote a value that contains a comma",
                                      "{file} 第 {line} 行：有 {count} 个值，但表头只有 {columns}"
                                      " 列；含逗号的值请加引号"),
        "catalogue.json_invalid": ("{file} line {line}: not valid JSON ({reason})",
                                   "{file} 第 {line} 行：不是有效的 JSON（{reason}）"),
        "catalogue.json_shape": ('{file}: expected a list of items or {{"items": [...]}}',
                                 '{file}：应为事项列表或 {{"items": [...]}}'),
        "catalogue.not_object": ("{file} line {line}: an item must be an object keyed by column",
                                 "{file} 第 {line} 行：事项必须是以列名为键的对象"),
        "catalogue.entry.not_object": ("a catalogue.item body must be an object",
                                       "catalogue.item 的内容必须是对象"),
        "money.invalid": _YUAN_HELP,
    }
)  # fmt: skip


@dataclass(frozen=True)
class CatalogueItem:
    """One service item (事项). Days are working days; money is integer fen."""

    code: str
    name: str
    department: str
    kind: str  # one of KINDS
    promised_days: int
    statutory_days: int | None
    fee_fen: int
    materials: tuple[str, ...]
    accept_tiers: tuple[str, ...]  # ordered as TIERS, lowest first
    decide_tier: str

    def to_body(self) -> dict[str, Any]:
        """The body of a `catalogue.item` log entry: JSON types only, no floats."""
        body = {key: getattr(self, key) for key in BODY_KEYS}
        return body | {"materials": list(self.materials), "accept_tiers": list(self.accept_tiers)}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> CatalogueItem:
        """Check and load an entry body (the canonical English values `to_body` writes)."""
        if not isinstance(body, Mapping):
            raise CatalogueError("catalogue.entry.not_object", line=None, column=None)
        code = body.get("code")
        w = _Where("catalogue.entry.", {"code": code if isinstance(code, str) else "?"}, BODY_KEYS)
        _check_keys(body, w)
        expect = {"promised_days": (int, "bad_days"), "statutory_days": ((int, type(None)), "bad_days"),
                  "fee_fen": (int, "bad_fen"), "materials": (list, "not_list"),
                  "accept_tiers": (list, "not_list")}  # fmt: skip
        for key in BODY_KEYS:
            types, problem = expect.get(key, (str, "not_text"))
            value = body[key]
            if isinstance(value, bool) or not isinstance(value, types):
                w.fail(problem, key, value=value)
        for key in ("promised_days", "statutory_days", "fee_fen"):
            if body[key] is not None and not 0 <= body[key] <= 99999 * (key != "fee_fen" or 10**12):
                w.fail("bad_fen" if key == "fee_fen" else "bad_days", key, value=body[key])
        if body["kind"] not in KINDS:
            w.fail("bad_kind", "kind", value=body["kind"])
        accept = _list(body["accept_tiers"], w, "accept_tiers")
        for tier in (*accept, body["decide_tier"]):
            if tier not in TIERS:
                w.fail("bad_tier", "decide_tier" if tier is body["decide_tier"] else "accept_tiers", value=tier)
        if not accept:
            w.fail("blank", "accept_tiers")
        ...
        return cls(
            code=_text(body["code"], w, "code"),
            name=_text(body["name"], w, "name"),
            department=_text(body["department"], w, "department"),
            kind=body["kind"],
            promised_days=body["promised_days"],
            statutory_days=body["statutory_days"],
            fee_fen=body["fee_fen"],
            materials=_list(body["materials"], w, "materials"),
            accept_tiers=(acc := _ranked(accept)),
            decide_tier=_decide(w, body["kind"], body["promised_days"], body["statutory_days"], acc,
                                body["decide_tier"]),
        )
