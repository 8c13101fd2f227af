"""`zhibao catalogue import|list` and `zhibao calendar import|show`: what the city publishes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli.common import (
    at_option,
    echo,
    home_option,
    json_option,
    node_at,
    print_json,
    print_table,
    read_input,
)
from cli.help import h
from sync.protocol import i18n
from tiers.calendar_publish import package_years, parse_overrides, publish_calendar, year_view
from tiers.catalogue import kind_label, parse_catalogue, tier_label, yuan_from_fen
from tiers.published import PublishedItem, calendar_state, list_published, publish_items

i18n.register(
    {
        "cli.catalogue.imported": (
            "{added} added, {changed} changed, {unchanged} unchanged",
            "新增 {added} 项，修改 {changed} 项，未变 {unchanged} 项",
        ),
        "cli.catalogue.overridden": (
            "{count} items left out: a higher tier's catalogue already sets them",
            "{count} 项未导入：上级发布的事项目录已有这些事项",
        ),
        "cli.catalogue.overridden.one": (
            "{count} item left out: a higher tier's catalogue already sets it",
            "{count} 项未导入：上级发布的事项目录已有该事项",
        ),
        "cli.catalogue.none": (
            "No catalogue items yet: run `zhibao catalogue import FILE`.",
            "尚无事项目录：请运行 `zhibao catalogue import 文件`。",
        ),
        "cli.catalogue.headers": (
            "code|name|department|kind|promised|statutory|fee (yuan)|accepting tiers|deciding tier",
            "事项编码|事项名称|部门|类型|承诺时限|法定时限|收费（元）|受理层级|决定层级",
        ),
        "cli.published.local": (
            "this node is not the city: what it publishes counts here only, never at other"
            " nodes (the city publishes for the network)",
            "本节点不是市级节点：其发布内容只在本节点有效，不影响其他节点（全网以市级发布为准）",
        ),
        "cli.calendar.published": (
            "Published as entry #{seq}: {years}, {days}.",
            "已发布为条目 #{seq}：{years}，{days}。",
        ),
        "cli.calendar.years": ("{count} years", "{count} 个年度安排"),
        "cli.calendar.years.one": ("{count} year", "{count} 个年度安排"),
        "cli.calendar.single_days": ("{count} single days", "{count} 个单日调整"),
        "cli.calendar.single_days.one": ("{count} single day", "{count} 个单日调整"),
        "cli.calendar.whole": (
            "Whole years, deadlines in them no longer provisional: {years}.",
            "全年安排（其中的期限不再是临时期限）：{years}。",
        ),
        "cli.calendar.whole.one": (
            "Whole year, deadlines in it no longer provisional: {years}.",
            "全年安排（其中的期限不再是临时期限）：{years}。",
        ),
        "cli.calendar.partial": (
            "Some days only, still provisional until the whole year is published: {years}.",
            "仅部分日期，在发布全年安排前仍为临时期限：{years}。",
        ),
        "cli.calendar.whole_mark": ("whole year", "全年"),
        "cli.calendar.partial_mark": ("some days only (provisional)", "仅部分日期（临时）"),
        "cli.calendar.undeclared_mark": (
            "some days only: published without saying whether it is the whole year (provisional)",
            "仅部分日期：发布时未注明是否为全年安排（临时）",
        ),
        "cli.calendar.nothing_new": (
            "Nothing new: these calendar overrides are already in force here.",
            "没有新内容：这些日历调整已生效。",
        ),
        "cli.calendar.overridden": (
            "Left out {years}: a higher tier's calendar already decides them.",
            "未导入 {years} 年：上级发布的日历已有安排。",
        ),
        "cli.calendar.package": (
            "Years from the chinesecalendar package: {first}–{last}",
            "来自 chinesecalendar 软件包的年份：{first}–{last}",
        ),
        "cli.calendar.overrides": ("Years from published overrides:", "来自发布调整的年份："),
        "cli.calendar.days": ("Single-day overrides:", "单日调整："),
        "cli.calendar.none": ("  (none)", "  （无）"),
        "cli.calendar.from": ("{origin} entry #{seq}", "{origin} 条目 #{seq}"),
        "cli.calendar.working": ("working day", "工作日"),
        "cli.calendar.rest": ("day off", "休息日"),
        "cli.calendar.source.override": (
            "{year}: from the override published by {origin} (entry #{seq})",
            "{year} 年：来自 {origin} 发布的调整（条目 #{seq}）",
        ),
        "cli.calendar.source.package": (
            "{year}: from the chinesecalendar package",
            "{year} 年：来自 chinesecalendar 软件包",
        ),
        "cli.calendar.source.guessed": (
            "{year}: not known; weekends only until the city publishes it",
            "{year} 年：尚无安排，在市里发布前仅按周末计算",
        ),
        "cli.calendar.source.partial": (
            "{year}: not known whole; weekends plus the days {origin} published (entry #{seq})"
            " until the city publishes the whole year: provisional",
            "{year} 年：尚无全年安排，在市里发布全年安排前按周末及 {origin} 发布的部分日期"
            "（条目 #{seq}）计算：临时",
        ),
        "cli.calendar.holidays": ("Weekdays off:", "工作日放假："),
        "cli.calendar.workdays": ("Weekend days worked (调休):", "周末上班（调休）："),
    }
)


@click.group(
    "catalogue",
    help=h(
        "The service-item catalogue (事项目录) in force on this node.",
        "本节点现行的事项目录。",
    ),
)
def catalogue_group() -> None:
    pass


@catalogue_group.command(
    "import",
    help=h(
        "Publish a catalogue: one entry per new or changed item, or none at all. CSV or "
        "tab-separated text (headers in English, code,name,department,kind,promised_days …, "
        "or as a 事项清单 writes them: 事项编码, 事项名称, 部门, 办件类型, 承诺时限 …), or JSON.",
        "发布事项目录：每个新增或修改的事项一个条目，要么全部发布，要么都不发布。"
        "CSV 或制表符分隔的文本（表头用英文 `code,name,department,kind,promised_days`……，"
        "或按事项清单的写法：事项编码、事项名称、部门、办件类型、承诺时限……），或 JSON。",
    ),
)
@click.argument("file", type=click.Path(path_type=Path))
@at_option
@home_option
@json_option
def import_command(file: Path, at: str | None, home: Path | None, as_json: bool) -> None:
    items = parse_catalogue(read_input(file), str(file))
    with node_at(home) as node:
        result = publish_items(node, items, at=at)
        local = node.config.tier != "city"
    if as_json:
        print_json(result.to_json())
        return
    if local and result.added + result.changed:
        echo(i18n.t("cli.published.local"))
    echo(
        i18n.t(
            "cli.catalogue.imported",
            added=result.added,
            changed=result.changed,
            unchanged=result.unchanged,
        )
    )
    if result.overridden:
        echo(i18n.tn("cli.catalogue.overridden", result.overridden))


def _item_json(entry: PublishedItem) -> dict[str, Any]:
    item = entry.item
    return {
        "code": item.code,
        "name": item.name,
        "department": item.department,
        "kind": item.kind,
        "promised_days": item.promised_days,
        "statutory_days": item.statutory_days,
        "fee": yuan_from_fen(item.fee_fen),
        "fee_fen": item.fee_fen,
        "materials": list(item.materials),
        "accept_tiers": list(item.accept_tiers),
        "decide_tier": item.decide_tier,
        "extension_days": item.extension_days,
        "origin": entry.origin,
        "seq": entry.seq,
    }


@catalogue_group.command(
    "list",
    help=h(
        "List the items in force: code, name, department, kind, time limits, fee, tiers.",
        "列出现行事项：编码、名称、部门、类型、时限、收费、层级。",
    ),
)
@home_option
@json_option
def list_command(home: Path | None, as_json: bool) -> None:
    with node_at(home) as node:
        entries = list_published(node.store)
    if as_json:
        print_json([_item_json(entry) for entry in entries])
        return
    if not entries:
        echo(i18n.t("cli.catalogue.none"))
        return
    rows = [
        [
            e.item.code,
            e.item.name,
            e.item.department,
            kind_label(e.item.kind),
            e.item.promised_days,
            e.item.statutory_days,
            yuan_from_fen(e.item.fee_fen),
            i18n.listed(tier_label(t) for t in e.item.accept_tiers),
            tier_label(e.item.decide_tier),
        ]
        for e in entries
    ]
    print_table(i18n.t("cli.catalogue.headers").split("|"), rows)


@click.group(
    "calendar",
    help=h(
        "The working-day calendar: the chinesecalendar package plus published overrides.",
        "工作日日历：`chinesecalendar` 软件包加上发布的调整。",
    ),
)
def calendar_group() -> None:
    pass


@calendar_group.command(
    "import",
    help=h(
        'Publish calendar overrides from JSON: years (each "complete": true for the whole '
        "year of the State Council's notice, false for some days) and single days.",
        '从 JSON 发布日历调整：年度安排（`"complete": true` 表示国务院通知的全年安排，`false` 表示'
        "部分日期）和单日调整。",
    ),
)
@click.argument("file", type=click.Path(path_type=Path))
@at_option
@home_option
@json_option
def calendar_import_command(file: Path, at: str | None, home: Path | None, as_json: bool) -> None:
    overrides = parse_overrides(read_input(file), str(file))
    with node_at(home) as node:
        result = publish_calendar(node, overrides, at=at)
        local = node.config.tier != "city"
    if as_json:
        print_json(result.to_json())
        return
    if local and result.seq is not None:
        echo(i18n.t("cli.published.local"))
    if result.seq is None:
        echo(i18n.t("cli.calendar.nothing_new"))
    else:
        echo(
            i18n.t(
                "cli.calendar.published",
                seq=result.seq,
                years=i18n.tn("cli.calendar.years", len(result.years)),
                days=i18n.tn("cli.calendar.single_days", len(result.days)),
            )
        )
        partial = [y for y in result.years if y not in result.complete]
        for key, years in (
            ("cli.calendar.whole", result.complete),
            ("cli.calendar.partial", partial),
        ):
            if years:
                echo(i18n.tn(key, len(years), years=", ".join(map(str, years))))
    if result.overridden:
        echo(i18n.t("cli.calendar.overridden", years=", ".join(map(str, result.overridden))))


@calendar_group.command(
    "show",
    help=h(
        "Which years come from the package and which from published overrides.",
        "哪些年份来自软件包，哪些来自发布的调整。",
    ),
)
@click.option(
    "--year",
    type=click.IntRange(1, 9999),
    default=None,
    help=h("One year, day by day.", "某一年，逐日列出。"),
)
@home_option
@json_option
def calendar_show_command(year: int | None, home: Path | None, as_json: bool) -> None:
    if year is not None:
        _show_year(home, year, as_json)
        return
    with node_at(home) as node:
        state = calendar_state(node.store)
    known = package_years()
    if as_json:
        print_json(
            {
                "package_years": list(known),
                "override_years": {
                    str(y): {
                        "origin": s.origin,
                        "seq": s.seq,
                        "complete": state.overrides.years[y].complete,
                    }
                    for y, s in sorted(state.years.items())
                },
                "days": {
                    d.isoformat(): {
                        "working": state.overrides.days[d],
                        "origin": s.origin,
                        "seq": s.seq,
                    }
                    for d, s in sorted(state.days.items())
                },
            }
        )
        return
    echo(i18n.t("cli.calendar.package", first=known[0], last=known[-1]))
    echo(i18n.t("cli.calendar.overrides"))
    for y, source in sorted(state.years.items()):
        complete = state.overrides.years[y].complete
        mark = {True: "whole", False: "partial", None: "undeclared"}[complete]
        echo(
            f"  {y}  "
            + i18n.t("cli.calendar.from", origin=source.origin, seq=source.seq)
            + "  "
            + i18n.t(f"cli.calendar.{mark}_mark")
        )
    if not state.years:
        echo(i18n.t("cli.calendar.none"))
    echo(i18n.t("cli.calendar.days"))
    for d, source in sorted(state.days.items()):
        label = i18n.t("cli.calendar.working" if state.overrides.days[d] else "cli.calendar.rest")
        echo(
            f"  {d}  {label}  " + i18n.t("cli.calendar.from", origin=source.origin, seq=source.seq)
        )
    if not state.days:
        echo(i18n.t("cli.calendar.none"))


def _show_year(home: Path | None, year: int, as_json: bool) -> None:
    with node_at(home) as node:
        view = year_view(node.store, year)
    if as_json:
        print_json(view.to_json())
        return
    origin = view.origin
    source = "partial" if view.source == "guessed" and origin else view.source
    echo(
        i18n.t(
            f"cli.calendar.source.{source}",
            year=year,
            origin=origin.origin if origin else "",
            seq=origin.seq if origin else "",
        )
    )
    for key, days in (
        ("cli.calendar.holidays", view.holidays),
        ("cli.calendar.workdays", view.workdays),
    ):
        echo(i18n.t(key))
        echo("  " + (" ".join(d.isoformat() for d in days) or i18n.t("cli.calendar.none").strip()))
    if view.days:
        echo(i18n.t("cli.calendar.days"))
        for d, working in sorted(view.days.items()):
            echo(f"  {d}  " + i18n.t("cli.calendar.working" if working else "cli.calendar.rest"))
