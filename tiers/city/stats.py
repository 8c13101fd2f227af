"""Consolidated statistics (DESIGN §5, §7 `zhibao stats`): by node, tier, item or department.

Every figure comes from `tiers.figures` (the one definition, in docs/statistics.md); this
module only chooses the rows and renders them: JSON-ready dicts, a terminal table, CSV
(UTF-8 with a byte-order mark, so Excel shows the Chinese) and XLSX (xlsxwriter), both with
inert cells (`tiers.inert`): a name from another node is never run as a formula.
It runs on whatever logs the node holds: at the city, every log of the network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

from sync import trust
from sync.logstore import LogStore
from sync.protocol import i18n
from sync.protocol.errors import ReportError
from sync.protocol.ids import tier_of
from tiers import export
from tiers.catalogue import kind_label, tier_label, yuan_from_fen
from tiers.complaints.figures import add_complaints
from tiers.figure_cells import period_cells
from tiers.figures import (
    Counts,
    KeyOf,
    Period,
    derive,
    judged_as_of,
    node_key,
    parse_period,
    regroup,
    total,
)
from tiers.provisional import provisional_figures
from tiers.published import list_items, work_calendar
from tiers.report_parts import UNKNOWN_KIND, node_part_key
from tiers.reports import backfill

BY = ("node", "tier", "item", "department", "kind")
FORMATS = export.FORMATS
TOTAL_KEY = "total"

# The columns of `stats --wide` (JSON keys; labels via i18n "stats.col.*"); the default table
# is the few that fit 100 terminal columns: completion_rate with its denominator (carried
# over + accepted) and overdue both ways (closed late; open past the deadline).
COLUMNS = (
    "key", "label", "received", "open_at_start", "accepted", "completed", "completion_rate",
    "on_time", "early", "overdue", "open_overdue", "on_time_rate", "avg_days", "speedup",
    "rated", "satisfaction_rate", "bad_ratings", "complaints", "complaint_closure_rate",
    "rating_rate", "fees_assessed_fen", "fees_paid_fen", "step_on_time_rate",
)  # fmt: skip
DEFAULT_COLUMNS = (
    "key", "label", "open_at_start", "accepted", "completed", "completion_rate", "overdue",
    "open_overdue",
)  # fmt: skip
ROW_NAME = ("key", "label")  # every table and file starts with these
# CSV and XLSX carry every key of a JSON row, the table's first, in the same order.
FILE_COLUMNS = (
    *COLUMNS,
    *(k for k in ("accepted_share", *derive(Counts())) if k not in COLUMNS),
)
RATES = frozenset({"completion_rate", "on_time_rate", "speedup", "satisfaction_rate",
                   "step_on_time_rate", "speedup_statutory", "promise_compression",
                   "accepted_share", "complaint_closure_rate", "complaint_on_time_rate",
                   "rating_rate"})  # fmt: skip
MONEY = frozenset({"fees_assessed_fen", "fees_paid_fen"})
DAYS = frozenset({"avg_days"})
WITHDRAWN_SETTING = "completion_counts_withdrawn"
_TIER_BY_LENGTH = {len(node_id): tier_of(node_id) for node_id in ("330782", "330782001",
                                                                   "330782001001")}  # fmt: skip


def _key_of(store: LogStore, by: str) -> tuple[KeyOf, Callable[[str], str]]:
    """How a case maps to a row for `by`, and the row's human label. `node` is the node a
    figure counts for (`tiers.figures.per_case`)."""
    if by == "node":
        names = {n["node_id"]: n["name"] for n in trust.enrolled_nodes(store)}
        return node_key, lambda key: names.get(key, "")
    if by == "tier":
        return (lambda item_code, node: _TIER_BY_LENGTH.get(len(node))), tier_label
    items = {item.code: item for item in list_items(store)}
    if by == "item":

        def item_name(key: str) -> str:
            return items[key].name if key in items else ""

        return (lambda item_code, node: item_code), item_name
    if by == "kind":
        return node_part_key(
            "kind", items
        ), lambda key: kind_label(key) if key != UNKNOWN_KIND else key

    def department(item_code: str, node: str) -> str | None:
        item = items.get(item_code)
        return item.department if item is not None else "?"

    return department, lambda key: key


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def compute_stats(
    store: LogStore, period: Period, by: str, today: date, settings: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """`stats --json`: {"period", "by", "rows": [{"key", "label", figures…}], "total"}.

    `settings` (node.toml): `completion_counts_withdrawn` (default true) keeps accepted
    cases the applicant withdrew in 办结率's denominator."""
    if by not in BY:
        raise ReportError("stats.bad_by", by=by, allowed=", ".join(BY))
    backfill(store)
    key_of, label = _key_of(store, by)
    items = {item.code: item for item in list_items(store)}
    cells, years = period_cells(store, period, today, work_calendar(store), items)
    rows = regroup(cells, key_of)
    add_complaints(rows, store, period, by)
    withdrawn_in_base = completion_counts_withdrawn(settings or {})
    whole = total(rows)

    def figures(counts: Counts) -> dict[str, Any]:
        shown = derive(counts, withdrawn_in_base=withdrawn_in_base)
        return shown | {"accepted_share": _share(counts.accepted, whole.accepted)}

    return {
        "period": period.label,
        "by": by,
        "from": period.start.isoformat(),
        "to": period.end.isoformat(),
        "rows": [
            {"key": key, "label": label(key), **figures(counts)}
            for key, counts in sorted(rows.items())
        ],
        "total": {"key": TOTAL_KEY, "label": i18n.t("stats.total"), **figures(whole)},
        "provisional": years,
    }


def completion_counts_withdrawn(settings: Mapping[str, Any]) -> bool:
    """The `completion_counts_withdrawn` setting (default true: a withdrawal is recorded by
    the centre itself, so leaving withdrawn cases out would let it raise its 办结率 by
    recording them; `withdrawn` is shown beside the rate either way)."""
    value = settings.get(WITHDRAWN_SETTING, True)
    if not isinstance(value, bool):
        raise ReportError("stats.bad_setting", name=WITHDRAWN_SETTING, value=str(value))
    return value


def _all_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [*result["rows"], result["total"]]


def _file_columns(result: dict[str, Any]) -> tuple[str, ...]:
    """Every key the JSON rows carry: `FILE_COLUMNS`, then any other a row has."""
    extra = {k for row in _all_rows(result) for k in row} - set(FILE_COLUMNS)
    return (*FILE_COLUMNS, *sorted(extra))


def choose_columns(fmt: str, wide: bool, listed: str | None) -> tuple[str, ...] | None:
    """The columns shown: `--columns K,K,…` (JSON keys, after the key and the name), else every
    table column with `--wide`, else the default table; None for a file that carries every
    key (CSV, XLSX without `--columns`). JSON always has every key (DESIGN §7)."""
    if wide and listed is not None:
        raise ReportError("stats.wide_and_columns")
    if listed is not None and fmt == "json":
        raise ReportError("stats.columns_json")
    if listed is not None:
        names = [name.strip() for name in listed.split(",") if name.strip()]
        unknown = [name for name in names if name not in FILE_COLUMNS]
        if unknown or not names:
            raise ReportError("stats.bad_columns", given=", ".join(unknown) or listed,
                              allowed=", ".join(FILE_COLUMNS))  # fmt: skip
        return (*ROW_NAME, *dict.fromkeys(n for n in names if n not in ROW_NAME))
    if fmt != "table":
        return None
    return COLUMNS if wide else DEFAULT_COLUMNS


def headers(columns: Sequence[str] = COLUMNS, by: str | None = None) -> list[str]:
    """Column labels in the reader's language (the JSON key where none is registered); with
    `by`, the first column is named for what the rows are (node, item …)."""
    shown = [i18n.t("stats.col." + c) if i18n.has("stats.col." + c) else c for c in columns]
    if by is not None and columns and columns[0] == "key":
        shown[0] = i18n.t("stats.by." + by)
    return shown


def _shown(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column in RATES:
        return f"{value * 100:.1f}%"
    if column in MONEY:
        return yuan_from_fen(value)
    return str(value)


def table_columns(result: dict[str, Any], columns: Sequence[str]) -> tuple[str, ...]:
    """`columns` without the name column when every row's name is its key (a department)."""
    if all(row["label"] == row["key"] for row in result["rows"]):
        return tuple(c for c in columns if c != "label")
    return tuple(columns)


def table_rows(result: dict[str, Any], columns: Sequence[str] = COLUMNS) -> list[list[str]]:
    """Rows for a terminal table (rates as percentages, money in yuan, `-` for undefined);
    the last, the total, is named in the key column."""
    rows = [[_shown(c, row.get(c)) for c in columns] for row in result["rows"]]
    total = result["total"]
    named = {"key": total["label"], "label": ""}
    return [*rows, [named[c] if c in named else _shown(c, total.get(c)) for c in columns]]


def table_notes(
    result: dict[str, Any], columns: Sequence[str], today: date, *, withdrawn_in_base: bool,
    default: bool,
) -> list[str]:  # fmt: skip
    """The lines under the table: what the rate is a share of and what each overdue counts
    (with the day open cases were judged at), and, under the default table, how to see more."""
    label = dict(zip(columns, headers(columns), strict=True)) | {
        c: i18n.t("stats.col." + c) for c in ("open_at_start", "accepted", "completed", "withdrawn")
    }
    notes = []
    if "completion_rate" in columns:
        key = "stats.note.completion_rate" + ("" if withdrawn_in_base else "_net")
        notes.append(i18n.t(key, rate=label["completion_rate"], completed=label["completed"],
                            carried=label["open_at_start"], accepted=label["accepted"],
                            withdrawn=label["withdrawn"]))  # fmt: skip
    if "overdue" in columns:
        notes.append(i18n.t("stats.note.overdue", overdue=label["overdue"]))
    if "open_overdue" in columns:
        day = judged_as_of(parse_period(result["period"]), today)
        notes.append(i18n.t("stats.note.open_overdue", open_overdue=label["open_overdue"],
                            day=day))  # fmt: skip
    if default:
        notes.append(i18n.t("stats.note.more"))
    return notes


def _table(
    result: dict[str, Any], *, for_tools: bool, columns: Sequence[str] | None = None
) -> export.Table:
    """For tools (CSV) every row names its period first and the provisional years last; a
    workbook has one sheet per period and says the provisional years under the table.
    `columns`: the chosen ones (`--columns`), else every key."""
    chosen = tuple(columns) if columns is not None else _file_columns(result)
    rows: list[dict[str, Any]] = _all_rows(result)
    if for_tools:
        guessed = ";".join(str(year) for year in result.get("provisional", []))
        rows = [{"period": result["period"], **r, "provisional": guessed} for r in rows]
        chosen = ("period", *chosen, "provisional")
    formats = {c: export.PERCENT for c in RATES} | {c: export.MONEY for c in MONEY}
    formats |= {c: export.DAYS for c in DAYS}
    note = provisional_figures(result["provisional"]) if result.get("provisional") else None
    return export.Table(
        name=result["period"], columns=chosen, headers=headers(chosen), rows=rows,
        formats=formats, note=note, widths={0: 14, 1: 24}, frozen_columns=2,
    )  # fmt: skip


def to_csv(result: dict[str, Any], columns: Sequence[str] | None = None) -> bytes:
    """CSV for Excel and for tools (`tiers.export`): the JSON keys as header, with the period
    first and the provisional years last; every key, or the `columns` chosen."""
    return export.to_csv(_table(result, for_tools=True, columns=columns))


def to_xlsx(result: dict[str, Any], columns: Sequence[str] | None = None) -> bytes:
    """An XLSX workbook (`tiers.export`): one sheet named for the period, headers in the
    reader's language, rates as percentages and money in yuan; every key, or `columns`."""
    return export.to_xlsx(_table(result, for_tools=False, columns=columns))


_COLUMN_LABELS = {
    "key": ("key", "编码"), "label": ("name", "名称"), "received": ("received", "收件量"),
    "accepted": ("accepted", "受理量"), "completed": ("completed", "办结量"),
    "completion_rate": ("completion rate", "办结率"), "on_time": ("on time", "按时办结"),
    "early": ("early", "提前办结"), "overdue": ("closed overdue", "超期办结"),
    "open_overdue": ("open past deadline", "在办超期"),
    "on_time_rate": ("on-time rate", "按时办结率"),
    "avg_days": ("avg days", "平均办结天数"), "speedup": ("speed-up", "提速率"),
    "rated": ("rated", "评价数"), "satisfaction_rate": ("satisfaction", "满意率"),
    "complaints": ("complaints", "投诉数"), "bad_ratings": ("bad ratings", "差评数"),
    "complaints_closed": ("complaints closed", "投诉办结数"),
    "complaint_closure_rate": ("complaint closure rate", "投诉办结率"),
    "rating_rate": ("rating rate", "评议率"),
    "fees_assessed_fen": ("fees assessed (yuan)", "核定收费（元）"),
    "fees_paid_fen": ("fees paid (yuan)", "实缴费用（元）"),
    "step_on_time_rate": ("own step on time", "环节按时率"),
    "accepted_share": ("share of accepted", "受理占比"),
    "promised_completed": ("promised cases completed", "承诺件办结"),
    "days_used_total": ("working days used", "用时合计"),
    "days_promised_total": ("working days promised", "承诺时限合计"),
    "satisfied": ("satisfied", "满意数"),
    "overdue_total": ("overdue, closed and open", "超期合计"),
    "speedup_statutory": ("speed-up vs statutory", "提速率（法定）"),
    "promise_compression": ("promise compression", "承诺压缩率"),
    "rejected": ("rejected", "不予受理"), "withdrawn": ("withdrawn", "撤件"),
    "carried_out": ("carried forward", "结转下期"),
    "open_at_start": ("carried over", "上期结转"),
    "statutory_completed": ("completed with statutory limit", "有法定时限办结"),
    "statutory_days_used": ("their days used", "其用时"),
    "statutory_days_promised": ("their days promised", "其承诺时限"),
    "statutory_days_total": ("their statutory days", "其法定时限"),
    "steps": ("own steps", "环节数"), "steps_on_time": ("steps on time", "环节按时"),
    "step_days_used": ("step days used", "环节用时"),
    "step_days_allowed": ("step days allowed", "环节时限"),
    "steps_open_late": ("steps open late", "环节在办超时"),
    "period": ("period", "统计期"), "provisional": ("provisional years", "暂定年份"),
    "complaints_open_at_start": ("complaints carried over", "上期结转投诉"),
    "complaints_closed_on_time": ("complaints closed on time", "投诉按时办结数"),
    "completed_rated": ("completed and rated", "办结已评价"),
    "complaint_on_time_rate": ("complaint on-time rate", "投诉按时办结率"),
}  # fmt: skip
_BY_LABELS = {
    "node": ("node", "节点"), "tier": ("tier", "层级"), "item": ("item", "事项"),
    "department": ("department", "部门"), "kind": ("kind", "办件类型"),
}  # fmt: skip
i18n.register(
    {f"stats.col.{k}": v for k, v in _COLUMN_LABELS.items()}
    | {f"stats.by.{k}": v for k, v in _BY_LABELS.items()}
    | {
        "stats.total": ("total", "合计"),
        "stats.bad_setting": (
            "node.toml setting {name} must be true or false, not {value}.",
            "node.toml 设置 {name} 须为 true 或 false，不能是 {value}。",
        ),
        "stats.bad_by": (
            "--by must be one of {allowed}, not {by}.", "--by 须为 {allowed} 之一，不能是 {by}。"
        ),
        "stats.wide_and_columns": (
            "Give --wide (every table column) or --columns K,K,… (the ones you name), not both.",
            "--wide（全部列）与 --columns K,K,…（指定列）只能选一个。",
        ),
        "stats.columns_json": (
            "--columns chooses the columns of a table, CSV or XLSX; JSON always has every key.",
            "--columns 用于选择表格、CSV 或 XLSX 的列；JSON 总是包含全部键。",
        ),
        "stats.bad_columns": (
            "No such column: {given}. The columns are the keys of stats --json: {allowed}.",
            "没有这一列：{given}。可选的列即 stats --json 的键：{allowed}。",
        ),
        "stats.note.completion_rate": (
            "{rate} = {completed} ÷ ({carried} + {accepted})",
            "{rate} = {completed} ÷（{carried} + {accepted}）",
        ),
        "stats.note.completion_rate_net": (
            "{rate} = {completed} ÷ ({carried} + {accepted} − {withdrawn})",
            "{rate} = {completed} ÷（{carried} + {accepted} − {withdrawn}）",
        ),
        "stats.note.overdue": (
            "{overdue}: completed in the period, after the deadline.",
            "{overdue}：本期办结，办结时已超过时限。",
        ),
        "stats.note.open_overdue": (
            "{open_overdue}: still open at the close of {day}, and past the deadline then.",
            "{open_overdue}：截至 {day} 日终仍在办，且已超过时限。",
        ),
        "stats.note.more": (
            "More columns: --wide, or --columns with keys of --json (e.g. on_time,avg_days).",
            "更多列：--wide，或 --columns 加 --json 中的键（如 on_time,avg_days）。",
        ),
        "stats.title": (
            "Statistics for {period} ({start} to {end}), by {by}",
            "{period} 统计（{start} 至 {end}），按{by}",
        ),
    }
)  # fmt: skip
