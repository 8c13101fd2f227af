"""The desk's overview (issue #14): a month's figures by node, department, item or kind, as
`zhibao stats --by X --period P`, and the network's twelve-month trend of 受理量, 办结率,
按时办结率 and 满意率, drawn by Chart.js (shipped in tiers/desk/static, no CDN).

The figures table downloads as `stats --by X --out f.csv|xlsx` byte for byte
(`tiers.city.stats.to_csv/to_xlsx`, through `Page.files`); the trend is a table too (CSV and
XLSX through `tiers.export`). The charts' data reaches static/desk.js as JSON in a `data-trend`
attribute (escaped: no inline script under the desk's CSP); a rate is a fraction there, as in
`stats --json`, null where the month has no denominator (a gap in the chart, not 0).
The figures come from `tiers.desk.figures` (the one place the desk computes figures).
"""

from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from sync.node import Node
from sync.protocol import i18n
from sync.protocol.errors import ZhibaoError
from tiers import export
from tiers.city import stats as city_stats
from tiers.desk import figures, layout
from tiers.desk.layout import PREFIX, Page
from tiers.desk.users import Session
from tiers.export import Table

COLUMNS = city_stats.DEFAULT_COLUMNS
BY = ("node", "department", "item", "kind")  # the groupings offered, the first by default
TREND_MONTHS = 12
TREND_COLUMNS = ("period", "received", *figures.TREND)
SCRIPTS = ("chart.umd.min.js", "desk.js")

i18n.register(
    {
        "desk.title": ("zhibao desk: {name}", "直报工作台：{name}"),
        "desk.nav.overview": ("Overview", "概览"),
        "desk.overview.heading": (
            "Figures for {period} ({start} to {end}) by {by}",
            "{period} 统计（{start} 至 {end}），按{by}",
        ),
        "desk.overview.by.node": ("node", "节点"),
        "desk.overview.by.department": ("department", "部门"),
        "desk.overview.by.item": ("item", "事项"),
        "desk.overview.by.kind": ("kind", "办件类型"),
        "desk.overview.tabs": ("Group by", "分组"),
        "desk.overview.group_by": ("Group by:", "分组："),
        "desk.overview.month": ("Month", "月份"),
        "desk.overview.show": ("Show", "查看"),
        "desk.overview.bad_by": (
            "'{by}' is not a grouping of the overview: {allowed}.",
            "“{by}”不是概览的分组方式：{allowed}。",
        ),
        "desk.overview.trend": (
            "The whole network, {first} to {last}",
            "全网络，{first} 至 {last}",
        ),
        "desk.overview.trend_table": ("The same months as a table", "同期数据表"),
    }
)


def grouping(request: Request) -> str:
    """The `by` asked (node when none); ZhibaoError (a 400 page) for anything else."""
    by = request.query_params.get("by") or BY[0]
    if by not in BY:
        raise ZhibaoError("desk.overview.bad_by", by=by, allowed=i18n.listed(BY))
    return by


def overview(node: Node, request: Request, rest: str, session: Session) -> Page:
    by = grouping(request)
    result = figures.month(node, request.query_params.get("period"), by)
    stats_table = figures_table(result)
    title = i18n.t("desk.title", name=node.config.name)

    def stats_file(fmt: str) -> bytes:
        return city_stats.to_csv(result) if fmt == "csv" else city_stats.to_xlsx(result)

    files = {stats_table.name: stats_file}
    if layout.wants_file(request) and request.query_params.get("table") != "trend":
        return Page(title, "", tables=(stats_table,), files=files)  # no trend to compute
    last = result["to"][:7]  # the trend ends with the period's last month
    points = figures.trend(node, last, TREND_MONTHS)
    trend_table = trend_as_table(points)
    heading = i18n.t("desk.overview.heading", period=result["period"], start=result["from"],
                     end=result["to"], by=i18n.t("desk.overview.by." + by))  # fmt: skip
    body = (
        tabs(by, result["period"])
        + f"<h2>{escape(heading)}</h2>"
        + month_form(by, result["period"])
        + figures_html(result)
        + f"<h2>{escape(i18n.t('desk.overview.trend', first=points[0]['period'], last=last))}"
        + "</h2>"
        + charts_html(points)
        + f"<h3>{escape(i18n.t('desk.overview.trend_table'))}</h3>"
        + layout.html_table(trend_table, table_id=trend_table.name, numeric=TREND_COLUMNS[1:])
    )
    return Page(title, body, tables=(stats_table, trend_table), scripts=SCRIPTS, files=files)


def tabs(by: str, period: str) -> str:
    """Links to the same month grouped each way, the one shown marked."""
    links = []
    for each in BY:
        query = escape(urlencode({"by": each, "period": period}))
        current = ' aria-current="page" class="current"' if each == by else ""
        label = escape(i18n.t("desk.overview.by." + each))
        links.append(f'<a href="{PREFIX}/?{query}"{current}>{label}</a>')
    title, said = escape(i18n.t("desk.overview.tabs")), escape(i18n.t("desk.overview.group_by"))
    return f'<nav class="tabs" aria-label="{title}">{said} {" ".join(links)}</nav>'


def month_form(by: str, period: str) -> str:
    return (
        f'<form method="get" action="{PREFIX}/" class="month">'
        f'<input type="hidden" name="by" value="{escape(by)}">'
        f"<label>{escape(i18n.t('desk.overview.month'))} "
        f'<input name="period" value="{escape(period)}" size="8"></label> '
        f'<button type="submit">{escape(i18n.t("desk.overview.show"))}</button></form>'
    )


def figures_html(result: dict[str, Any]) -> str:
    """The month's table as `zhibao stats --by X` prints it (its default columns, rates as
    percentages, `-` where undefined, the total last), every cell escaped."""
    shown = city_stats.table_columns(result, COLUMNS)
    heads = city_stats.headers(shown, result["by"])
    rows = city_stats.table_rows(result, shown)
    head = "".join(f"<th>{escape(h)}</th>" for h in heads)
    kinds = ["" if c in city_stats.ROW_NAME else ' class="num"' for c in shown]
    cells = "".join(
        "<tr>"
        + "".join(f"<td{k}>{escape(c)}</td>" for k, c in zip(kinds, row, strict=True))
        + "</tr>"
        for row in rows
    )
    return f'<table id="stats"><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>'


def figures_table(result: dict[str, Any]) -> Table:
    """The month's table as a `Table` named "stats" (its id on the page); its files are
    written by `city_stats.to_csv/to_xlsx` (the page's `files`): `stats --out`'s bytes."""
    shown = city_stats.table_columns(result, COLUMNS)
    return Table(
        name="stats",
        columns=shown,
        headers=city_stats.headers(shown, result["by"]),
        rows=[*result["rows"], result["total"]],
        formats={c: export.PERCENT for c in shown if c in city_stats.RATES},
    )


def trend_as_table(points: list[dict[str, Any]]) -> Table:
    """The trend's months as a table named "trend" (its id on the page; rates as fractions
    in CSV, percentages in XLSX)."""
    return Table(
        name="trend",
        columns=TREND_COLUMNS,
        headers=city_stats.headers(TREND_COLUMNS),
        rows=points,
        formats={c: export.PERCENT for c in TREND_COLUMNS if c in city_stats.RATES},
        widths={0: 10},
    )


def trend_data(points: list[dict[str, Any]]) -> dict[str, Any]:
    """What static/desk.js draws: the months, and one series per figure of `figures.TREND`
    with its label in the reader's language (a rate as a fraction, or None: a gap)."""
    return {
        "labels": [point["period"] for point in points],
        "series": [
            {
                "key": key,
                "label": i18n.t("stats.col." + key),
                "percent": key in city_stats.RATES,
                "values": [point[key] for point in points],
            }
            for key in figures.TREND
        ],
    }


def data_attribute(name: str, value: Any) -> str:
    """` data-NAME="…"` holding `value` as JSON, escaped so that nothing in it (a quote, a
    `<`, an `&`) can end the attribute or the tag."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return f' data-{name}="{escape(text, quote=True)}"'


def charts_html(points: list[dict[str, Any]]) -> str:
    """One canvas per figure (drawn by static/desk.js), the data on their container."""
    data = trend_data(points)
    drawn = "".join(
        f'<figure class="chart"><figcaption>{escape(series["label"])}</figcaption>'
        f'<div class="chart-box"><canvas data-series="{escape(series["key"])}" role="img" '
        f'aria-label="{escape(series["label"])}"></canvas></div></figure>'
        for series in data["series"]
    )
    return f'<section id="trend-charts" class="charts"{data_attribute("trend", data)}>{drawn}</section>'  # noqa: E501


def stats_file(node: Node, request: Request, fmt: str) -> tuple[str, bytes]:
    """The month's figures by node as `zhibao stats --by node --out stats.<fmt>` writes them
    (/desk/stats.csv and /desk/stats.xlsx)."""
    result = figures.month(node, request.query_params.get("period"), "node")
    data = city_stats.to_csv(result) if fmt == "csv" else city_stats.to_xlsx(result)
    return f"stats-{result['period']}", data


layout.register("/", overview, nav=(10, "desk.nav.overview"))
