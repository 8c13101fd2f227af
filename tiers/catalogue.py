"""The service-item catalogue (事项目录): the item model and a pure CSV/TSV/JSON parser.

Bytes in, items out. A file is accepted whole or refused whole with one `CatalogueError`
whose params name the `file`, the `line` (1-based; the CSV header is line 1; in JSON, the
line where the item's object starts) and the `column` (as the file's header names it).
`tiers.catalogue_files` reads a file into rows (encodings, CSV or TSV, English or Chinese
column names, JSON); here each row is checked and made an item. Values may be written as
a 事项清单 writes them: 即办件, 镇级, "5个工作日", 不收费. Money is integer fen, converted from
yuan with `decimal` only, by `fen_from_yuan`/`yuan_from_fen` here and nowhere else.

When `decide_tier` is blank it defaults to the lowest accepting tier, except for a forward
(上报) item, which is decided by the tier above that one. An explicit `decide_tier` may not be
below the lowest accepting tier, and a forward item may not be decided at it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sync.protocol import i18n
from sync.protocol import ids as _ids  # noqa: F401  (registers the tier words tier_label shows)
from sync.protocol.errors import CaseError, CatalogueError, ZhibaoError
from tiers.cases.entries import MAX_KEY
from tiers.catalogue_files import REQUIRED, Where, at, check_keys, read_rows

KINDS = ("immediate", "promised", "forward", "joint")
# 行政许可法 第四十二条: 20 working days, which the organ's head may extend once by at most
# 10. An item may say otherwise (`extension_days`, another law's limit; 0: no extension).
DEFAULT_EXTENSION_DAYS = 10
TIERS = ("village", "town", "city")  # lowest first: a tier's index is its rank
BODY_KEYS = (*REQUIRED, "statutory_days", "fee_fen", "materials", "accept_tiers", "decide_tier")
# Written only when not the default, so an item with the default has the body older nodes
# verify (their check refuses a key it does not know).
OPTIONAL_BODY_KEYS = ("extension_days",)

_KIND_ZH = ("即办", "承诺", "上报", "联办")
_TIER_ZH = ("村", "镇", "市")
_KINDS = dict(zip(_KIND_ZH, KINDS, strict=True)) | {k: k for k in KINDS}
_TIERS = dict(zip(_TIER_ZH, TIERS, strict=True)) | {t: t for t in TIERS}
# as a 事项清单 writes them, for an import: 即办件, 村级 …
_KIND_WORDS = _KINDS | {zh + "件": kind for zh, kind in zip(_KIND_ZH, KINDS, strict=True)}
_TIER_WORDS = _TIERS | {"村级": "village", "镇级": "town", "市级": "city"}
_NO_FEE = ("不收费", "免费", "无")
_DAYS = re.compile(r"([0-9]{1,5})\s*(?:个工作日|工作日)?")
_YUAN = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,2})?")
_SEPARATORS = re.compile(r"[;；]")
_TIER_SEPARATORS = re.compile(r"[;；、]")
_BODY_TYPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "promised_days": (int, "bad_days"),
    "statutory_days": ((int, type(None)), "bad_days"),
    "fee_fen": (int, "bad_fen"),
    "materials": (list, "not_list"),
    "accept_tiers": (list, "not_list"),
    "extension_days": (int, "bad_days"),
}

_YUAN_HELP = (
    "'{value}' is not an amount in yuan; use a number, 0 or more, with at most two decimals,"
    " such as 45 or 45.00",
    "“{value}”不是以元为单位的金额；请填写 0 或以上、最多两位小数的数，如 45 或 45.00",
)
# What is wrong with a value. Each is registered twice: after a "file, line, column" prefix
# for imports (catalogue.<problem>) and after an item/field prefix for entry bodies
# (catalogue.entry.<problem>).
_PROBLEMS: dict[str, tuple[str, str]] = {
    "missing_column": ("this required column is missing; required are {required}",
                       "缺少此必填列；必填列为 {required}"),
    "unknown_column": ("not a catalogue column; use {allowed}", "不是事项目录的列；可用 {allowed}"),
    "duplicate_column": ("the column appears twice in the header", "表头中此列出现了两次"),
    "blank": ("a value is required", "此项不能为空"),
    "not_text": ("'{value}' is not text", "“{value}”不是文本"),
    "not_list": ("'{value}' is not a list of text", "“{value}”不是文本列表"),
    "bad_kind": ("'{value}' is not a kind; use 即办, 承诺, 上报 or 联办 (immediate, promised,"
                 " forward, joint)",
                 "“{value}”不是办件类型；可用 即办、承诺、上报、联办（immediate、promised、"
                 "forward、joint）"),
    "bad_tier": ("'{value}' is not a tier; use city, town or village (市, 镇, 村)",
                 "“{value}”不是层级；可用 city、town、village（市、镇、村）"),
    "bad_days": ("'{value}' is not a number of working days; use a whole number, 0 or more",
                 "“{value}”不是工作日天数；请填写 0 或以上的整数"),
    "bad_fee": _YUAN_HELP,
    "bad_fen": ("'{value}' is not an amount in fen; use a whole number, 0 or more",
                "“{value}”不是以分为单位的金额；请填写 0 或以上的整数"),
    "immediate_days": ("an immediate (即办) item is done the day it is accepted, so"
                       " promised_days must be 0, not {value}",
                       "即办件当日办结，承诺时限必须为 0，不能是 {value}"),
    "statutory_short": ("statutory_days {value} is less than promised_days {promised}; the"
                        " statutory limit must be at least the promised one",
                        "法定时限 {value} 天少于承诺时限 {promised} 天；法定时限不能少于承诺时限"),
    "decide_below": ("'{value}' is below {lowest}, the lowest tier that accepts the item",
                     "“{value}”低于受理该事项的最低层级 {lowest}"),
    "forward_decide": ("a forward (上报) item is decided above the lowest tier that accepts"
                       " it ({lowest}), so not at '{value}'",
                       "上报件须由高于最低受理层级（{lowest}）的层级决定，不能是“{value}”"),
    "forward_nowhere": ("a forward (上报) item accepted only at the city has no higher tier"
                        " to decide it; let a town or village accept it too",
                        "只由市级受理的上报件没有更高的决定层级；请同时由镇或村受理"),
    "duplicate_code": ("'{value}' is already the code on line {first}; codes must be unique",
                       "编码“{value}”已在第 {first} 行使用；编码不能重复"),
    "code_too_long": ("a code is at most {max} characters, not {length}",
                      "编码最多 {max} 个字符，不能是 {length} 个"),
}  # fmt: skip
_PREFIXES = {
    "catalogue.": ("{file} line {line}, column {column}: ", "{file} 第 {line} 行 {column} 列："),
    "catalogue.entry.": (
        "catalogue item {code}, field {column}: ",
        "事项 {code} 的 {column} 字段：",
    ),
}
_MESSAGES: dict[str, tuple[str, str]] = {
    "catalogue.not_kind": _PROBLEMS["bad_kind"],
    "catalogue.not_tier": _PROBLEMS["bad_tier"],
    "catalogue.encoding": ("{file} is not UTF-8 or GB18030 text; save it as “CSV UTF-8”",
                           "{file} 不是 UTF-8 或 GB18030 编码的文本；请另存为“CSV UTF-8”"),
    "catalogue.no_items": ("{file} holds no items (a header alone, or an empty list): there"
                           " is nothing to publish",
                           "{file} 没有任何事项（只有表头，或是空列表）：没有可发布的内容"),
    "catalogue.empty": ("{file} is empty; its first line must be the header, with {required}",
                        "{file} 是空的；第一行必须是表头，含 {required}"),
    "catalogue.csv_invalid": ("{file} line {line}: not valid CSV ({reason})",
                              "{file} 第 {line} 行：不是有效的 CSV（{reason}）"),
    "catalogue.too_many_values": ("{file} line {line}: {count} values but the header has"
                                  " {columns} columns; quote a value that contains a comma",
                                  "{file} 第 {line} 行：有 {count} 个值，但表头只有 {columns} 列；"
                                  "含逗号的值请加引号"),
    "catalogue.json_invalid": ("{file} line {line}: not valid JSON ({reason})",
                               "{file} 第 {line} 行：不是有效的 JSON（{reason}）"),
    "catalogue.json_unreadable": ("{file}: not valid JSON ({reason})",
                                  "{file}：不是有效的 JSON（{reason}）"),
    "catalogue.json_shape": ('{file}: expected a list of items or {{"items": [...]}}',
                             '{file}：应为事项列表或 {{"items": [...]}}'),
    "catalogue.not_object": ("{file} line {line}: an item must be an object keyed by column",
                             "{file} 第 {line} 行：事项必须是以列名为键的对象"),
    "catalogue.entry.not_object": ("a catalogue.item body must be an object",
                                   "catalogue.item 的内容必须是对象"),
    "money.invalid": _YUAN_HELP,
}  # fmt: skip
i18n.register(
    _MESSAGES
    | {prefix + k: (at_en + en, at_zh + zh) for prefix, (at_en, at_zh) in _PREFIXES.items()
       for k, (en, zh) in _PROBLEMS.items()}
    | {f"catalogue.kind.{en}": (en, zh) for zh, en in zip(_KIND_ZH, KINDS, strict=True)}
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
    accept_tiers: tuple[str, ...]  # in TIERS order, lowest first
    decide_tier: str
    extension_days: int = DEFAULT_EXTENSION_DAYS  # the most one extension (延长) may add

    def to_body(self) -> dict[str, Any]:
        """The body of a `catalogue.item` log entry: JSON types only, no floats."""
        body = {key: getattr(self, key) for key in BODY_KEYS}
        if self.extension_days != DEFAULT_EXTENSION_DAYS:
            body["extension_days"] = self.extension_days
        return body | {"materials": list(self.materials), "accept_tiers": list(self.accept_tiers)}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> CatalogueItem:
        """Check and load an entry body; it must hold the canonical values `to_body` writes."""
        if not isinstance(body, Mapping):
            raise CatalogueError("catalogue.entry.not_object", line=None, column=None)
        code = body.get("code")
        w = Where("catalogue.entry.", {"code": code if isinstance(code, str) else "?"})
        check_keys(body, BODY_KEYS + OPTIONAL_BODY_KEYS, w, required=BODY_KEYS)
        for key in (*BODY_KEYS, *(k for k in OPTIONAL_BODY_KEYS if k in body)):
            types, problem = _BODY_TYPES.get(key, (str, "not_text"))
            if isinstance(body[key], bool) or not isinstance(body[key], types):
                w.fail(problem, key, value=body[key])
        if body["kind"] not in KINDS:
            w.fail("bad_kind", "kind", value=body["kind"])
        for key, tier in [("decide_tier", body["decide_tier"])] + [
            ("accept_tiers", tier) for tier in body["accept_tiers"]
        ]:
            if tier not in TIERS:
                w.fail("bad_tier", key, value=tier)
        if not body["accept_tiers"]:
            w.fail("blank", "accept_tiers")
        if body["fee_fen"] < 0:
            w.fail("bad_fen", "fee_fen", value=body["fee_fen"])
        if body.get("extension_days", 0) < 0:
            w.fail("bad_days", "extension_days", value=body["extension_days"])
        return _build(body, w, fee_fen=body["fee_fen"])


def kind_label(kind: str) -> str:
    """The kind's name for display in the current locale (即办 or immediate …)."""
    if kind.strip().lower() not in _KINDS:
        raise CatalogueError("catalogue.not_kind", line=None, column="kind", value=kind)
    return i18n.t("catalogue.kind." + _KINDS[kind.strip().lower()])


def tier_label(tier: str) -> str:
    """The tier's name for display in the current locale (镇级 or town …; the words are
    registered with the tier codes, in sync.protocol.ids)."""
    if tier.strip().lower() not in _TIERS:
        raise CatalogueError("catalogue.not_tier", line=None, column="tier", value=tier)
    return i18n.term("tier", _TIERS[tier.strip().lower()])


def fen_from_yuan(text: str, *, error: type[ZhibaoError] = CaseError) -> int:
    """Yuan ("45", "45.5", "45.00") to integer fen (4500), exactly, through Decimal.

    Negatives, more than two decimals and anything else are refused with
    `error("money.invalid", value=text)`; pass the error class that fits the caller.
    """
    stripped = text.strip() if isinstance(text, str) else ""
    if not _YUAN.fullmatch(stripped):
        raise error("money.invalid", value=text)
    return int(Decimal(stripped).scaleb(2))


def yuan_from_fen(fen: int) -> str:
    """Integer fen to yuan with two decimals: 4500 -> "45.00", -50 -> "-0.50"."""
    whole, cents = divmod(abs(fen), 100)
    return f"{'-' if fen < 0 else ''}{whole}.{cents:02d}"


def parse_catalogue(data: bytes, filename: str = "") -> list[CatalogueItem]:
    """Parse a CSV, TSV or JSON catalogue (`tiers.catalogue_files`), all of it or none
    (`CatalogueError`); a file without a single item is refused."""
    file = filename or "catalogue"
    rows, names = read_rows(data, filename)
    items: list[CatalogueItem] = []
    first_line: dict[str, int] = {}
    for line, raw in rows:
        w = at(file, line, names)
        item = _build(raw, w)
        if item.code in first_line:
            w.fail("duplicate_code", "code", value=item.code, first=first_line[item.code])
        first_line[item.code] = line
        items.append(item)
    return items


def _build(raw: Mapping[str, Any], w: Where, fee_fen: int | None = None) -> CatalogueItem:
    """Check one row (CSV text, JSON values or an entry body) and make its item."""
    code, name, department = (_text(raw[key], w, key) for key in ("code", "name", "department"))
    if len(code) > MAX_KEY:  # a case's item code: what its entry may carry
        w.fail("code_too_long", "code", max=MAX_KEY, length=len(code))
    kind = _KIND_WORDS.get(_text(raw["kind"], w, "kind").lower()) or w.fail(
        "bad_kind", "kind", value=raw["kind"]
    )
    promised = _days(raw["promised_days"], w, "promised_days")
    statutory = None
    if not _blank(raw.get("statutory_days")):
        statutory = _days(raw["statutory_days"], w, "statutory_days")
    if fee_fen is None:
        fee = raw.get("fee")
        fee_fen = (
            0 if _blank(fee) or (isinstance(fee, str) and fee.strip() in _NO_FEE) else _fee(fee, w)
        )
    accept = {
        _tier(t, w, "accept_tiers")
        for t in _list(raw.get("accept_tiers"), w, "accept_tiers", _TIER_SEPARATORS)
    }
    accept_tiers = tuple(tier for tier in TIERS if tier in accept) or TIERS
    lowest = accept_tiers[0]
    if kind == "immediate" and promised != 0:
        w.fail("immediate_days", "promised_days", value=promised)
    if statutory is not None and statutory < promised:
        w.fail("statutory_short", "statutory_days", value=statutory, promised=promised)
    if not _blank(raw.get("decide_tier")):
        decide = _tier(raw["decide_tier"], w, "decide_tier")
        if TIERS.index(decide) < TIERS.index(lowest):
            w.fail("decide_below", "decide_tier", value=decide, lowest=lowest)
        if kind == "forward" and decide == lowest:
            w.fail("forward_decide", "decide_tier", value=decide, lowest=lowest)
    elif kind == "forward":
        if lowest == "city":
            w.fail("forward_nowhere", "accept_tiers", value=lowest)
        decide = TIERS[TIERS.index(lowest) + 1]
    else:
        decide = lowest
    materials = _list(raw.get("materials"), w, "materials")
    extension = DEFAULT_EXTENSION_DAYS
    if not _blank(raw.get("extension_days")):
        extension = _days(raw["extension_days"], w, "extension_days")
    return CatalogueItem(
        code, name, department, kind, promised, statutory, fee_fen, materials, accept_tiers,
        decide, extension,
    )  # fmt: skip


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(value: Any, w: Where, column: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # a JSON code written as a number
    if not isinstance(value, str):
        w.fail("not_text", column, value=value)
    if not value.strip():
        w.fail("blank", column)
    return value.strip()


def _days(value: Any, w: Where, column: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        w.fail("bad_days", column, value=value)
    days = _DAYS.fullmatch(str(value).strip())
    if not days:
        w.fail("blank" if _blank(value) else "bad_days", column, value=value)
    return int(days.group(1))


def _fee(value: Any, w: Where) -> int:
    if isinstance(value, Decimal):
        value = format(value, "f")  # JSON 45.5 arrives as Decimal("45.5")
    elif isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _YUAN.fullmatch(value.strip()):
        w.fail("bad_fee", "fee", value=value)
    return fen_from_yuan(value, error=CatalogueError)


def _list(
    value: Any, w: Where, column: str, separators: re.Pattern[str] = _SEPARATORS
) -> tuple[str, ...]:
    """A `;`/`；`-separated text (tiers: `、` too), or (JSON, entry bodies) a list of texts;
    blanks dropped."""
    if _blank(value):
        return ()
    if isinstance(value, str):
        value = separators.split(value)
    if not isinstance(value, list) or not all(isinstance(part, str) for part in value):
        w.fail("not_list", column, value=value)
    return tuple(part.strip() for part in value if part.strip())


def _tier(value: Any, w: Where, column: str) -> str:
    tier = _TIER_WORDS.get(_text(value, w, column).lower())
    return tier or w.fail("bad_tier", column, value=value)
