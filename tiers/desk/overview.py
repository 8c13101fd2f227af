"""The desk's overview (issue #14): a month's figures by node, as `zhibao stats --by node`.

Its table downloads are `stats --out` byte for byte (`tiers.city.stats.to_csv/to_xlsx`).
The figures come from `tiers.desk.figures` (the one place the desk computes figures).
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from starlette.requests import Request

from sync.node import Node
from sync.protocol import i18n
from tiers.city import stats as city_stats
from tiers.desk import figures, layout
from tiers.desk.layout import PREFIX, Page
from tiers.desk.users import Session

COLUMNS = city_stats.DEFAULT_COLUMNS

i18n.register(
    {
        "desk.title": ("zhibao desk: {name}", "直报工作台：{name}"),
        "desk.overview": (
            "Figures for {period} ({start} to {end}) by node",
            "{period} 各节点统计（{start} 至 {end}）",
        ),
        "desk.other_month": ("Month", "月份"),
        "desk.show": ("Show", "查看"),
    }
)


def overview(node: Node, request: Request, rest: str, session: Session) -> Page:
    result = figures.month(node, request.query_params.get("period"), "node")
    shown = city_stats.table_columns(result, COLUMNS)
    heads = city_stats.headers(shown, "node")
    rows = city_stats.table_rows(result, shown)
    period = quote(result["period"])
    head = "".join(f"<th>{escape(h)}</th>" for h in heads)
    cells = "".join(
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    body = (
        f"<h2>{escape(i18n.t('desk.overview', period=result['period'], start=result['from'], end=result['to']))}</h2>"  # noqa: E501
        f'<form method="get" action="{PREFIX}/"><label>{escape(i18n.t("desk.other_month"))} '
        f'<input name="period" value="{escape(result["period"])}" size="8"></label> '
        f'<button type="submit">{escape(i18n.t("desk.show"))}</button></form>'
        f'<table id="stats"><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>'
        f'<p>{escape(i18n.t("desk.download"))} <a href="{PREFIX}/stats.xlsx?period={period}">'
        f'XLSX</a> <a href="{PREFIX}/stats.csv?period={period}">CSV</a></p>'
    )
    return Page(i18n.t("desk.title", name=node.config.name), body)


def stats_file(node: Node, request: Request, fmt: str) -> tuple[str, bytes]:
    """The month's figures by node as `zhibao stats --by node --out stats.<fmt>` writes them."""
    result = figures.month(node, request.query_params.get("period"), "node")
    data = city_stats.to_csv(result) if fmt == "csv" else city_stats.to_xlsx(result)
    return f"stats-{result['period']}", data


layout.register("/", overview, nav=(10, "desk.nav.overview"))
