"""`zhibao demo`: a whole city on loopback — a city, two towns, three villages.

Realistic cases from the shared catalogue go through every path: window work at the
towns (即办, 承诺 on time and late, 补正 before and after 受理, 特别程序, fees, ratings,
不予受理, 撤回), villages receiving on the villagers' behalf and forwarding up, a 上报 case
decided by the city with the result flowing back down for delivery and rating. One
village's line keeps cutting (a fault-injecting proxy), one village only ever syncs by
USB bundle. At the end every node's log verifies and the city prints its counts.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from sync.audit import verify_log
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.errors import HomeError, SyncError
from sync.round import sync_round
from sync.service import ServerThread
from sync.testing.proxy import FaultProxy, Schedule
from tiers import demo_materials
from tiers.cases import service as case
from tiers.cases.service import Applicant
from tiers.catalogue import parse_catalogue
from tiers.city.finding_kinds import kind_name
from tiers.city.reconcile import reconcile
from tiers.city.stats import compute_stats
from tiers.figures import parse_period
from tiers.node import create_home, open_home
from tiers.published import publish_items
from tiers.reports import submit_monthly

Say = Callable[[str], None]

CITY = ("330782", "义乌市行政服务中心")
TOWNS = [("330782001", "稠城街道便民服务中心"), ("330782002", "北苑街道便民服务中心")]
VILLAGES = [
    ("330782001201", "下骆宅村便民服务室", "good"),
    ("330782001202", "江东村便民服务室", "flaky"),
    ("330782002201", "五星村便民服务室", "usb"),
]
NAMES = dict([CITY, *TOWNS, *((v, name) for v, name, _ in VILLAGES)])
PERIOD = "2025-10"
PEOPLE = ["王建国", "李秀英", "张伟", "刘芳", "陈静", "杨磊", "赵敏", "黄强", "周丽", "吴刚"]


@dataclass
class City:
    root: Path
    homes: dict[str, Path] = field(default_factory=dict)
    servers: dict[str, ServerThread] = field(default_factory=dict)
    proxy: FaultProxy | None = None
    retries: int = 0

    def open(self, node_id: str) -> Node:
        return open_home(self.homes[node_id])

    def url_for(self, child: str) -> str:
        parent = child[:9] if len(child) == 12 else child[:6]
        if self.proxy is not None and child == VILLAGES[1][0]:
            return self.proxy.url
        return self.servers[parent].url


def _person(n: int) -> Applicant:
    return Applicant(PEOPLE[n % len(PEOPLE)], phone=f"1380579{n:04d}")


def build(root: Path, catalogue: bytes, say: Say) -> City:
    """Create every node, publish the catalogue, enrol towns and villages."""
    city = City(root)
    node = create_home(root / "city", tier="city", node_id=CITY[0], name=CITY[1])
    city.homes[CITY[0]] = root / "city"
    root_key = node.signer.public.hex()
    with node:
        result = publish_items(
            node, parse_catalogue(catalogue, "catalogue.csv"), at="2025-10-08T08:30:00+08:00"
        )
    say(i18n.tn("demo.catalogue", result.added))
    for node_id, name in TOWNS:
        city.homes[node_id] = _child(city, node_id, name, CITY[0], root_key)
    for node_id, name, _ in VILLAGES:
        city.homes[node_id] = _child(city, node_id, name, node_id[:9], root_key)
    say(i18n.t("demo.nodes", towns=len(TOWNS), villages=len(VILLAGES)))
    return city


def _child(city: City, node_id: str, name: str, parent: str, root_key: str) -> Path:
    from sync import trust

    home = city.root / node_id
    with create_home(
        home,
        tier="town" if len(node_id) == 9 else "village",
        node_id=node_id,
        name=name,
        parent_id=parent,
        root_key=root_key,
    ) as child:
        public, seal = child.signer.public.hex(), child.seal.public_key().public_bytes_raw().hex()
    with city.open(parent) as up:
        up.append(
            trust.ENROLLED,
            trust.enrolment_body(node_id, name, public, seal),
            at="2025-10-08T08:00:00+08:00",
        )
    return home


def sync_node(city: City, node_id: str, say: Say | None = None) -> None:
    """One round for `node_id` with its parent; the flaky village retries until through."""
    attempts = 30 if city.proxy is not None and node_id == VILLAGES[1][0] else 1
    for attempt in range(attempts):
        with city.open(node_id) as node:
            try:
                sync_round(node, city.url_for(node_id), timeout=5.0)
                return
            except SyncError as exc:
                city.retries += 1
                if attempt == attempts - 1:
                    raise
                if say is not None and attempt < 3:
                    say(i18n.t("demo.retry", node_id=node_id, error=str(exc)))


def usb_exchange(city: City, village: str, say: Say) -> None:
    """Carry sealed bundles between `village` and its town both ways, receipts included."""
    from sync import bundles, trust

    town = village[:9]
    stick = city.root / "usb-stick"
    stick.mkdir(exist_ok=True)
    with city.open(village) as v:  # sealed once the town's seal key has come down
        up = bundles.export_bundle(v, town, seal=trust.seal_key(v.store, town) is not None)
    (stick / "up.zbb").write_bytes(up.data)
    with city.open(town) as t:
        imported = bundles.import_bundle(t, (stick / "up.zbb").read_bytes())
        (stick / "up.receipt").write_bytes(imported.receipt_file)
        down = bundles.export_bundle(t, village, seal=True)
    (stick / "down.zbb").write_bytes(down.data)
    with city.open(village) as v:
        back = bundles.import_bundle(v, (stick / "down.zbb").read_bytes())  # brings the town's key
        bundles.import_receipt(v, (stick / "up.receipt").read_bytes())
    with city.open(town) as t:
        bundles.import_receipt(t, back.receipt_file)
    if up.header["entries"] or down.header["entries"]:
        say(
            i18n.t(
                "demo.usb",
                village=village,
                up=i18n.tn("demo.entries", up.header["entries"]),
                down=i18n.tn("demo.entries", down.header["entries"]),
                applied=sum(imported.applied.values()),
            )
        )


def sync_all(city: City, say: Say) -> None:
    """Villages with towns, towns with the city, then villages again for what came down."""
    for node_id, _, link in VILLAGES:
        if link == "usb":
            usb_exchange(city, node_id, say)
        else:
            sync_node(city, node_id, say)
    for node_id, _ in TOWNS:
        sync_node(city, node_id, say)
    for node_id, _, link in VILLAGES:
        if link == "usb":
            usb_exchange(city, node_id, say)
        else:
            sync_node(city, node_id, say)


def town_day(node: Node, n0: int) -> list[str]:
    """A day at a township window, through every path of the case state machine."""
    day = "2025-10-09T{}+08:00".format
    ids = []
    for k in range(3):  # 即办: 出租汽车从业资格证注册, done at the window
        cid = case.accept(
            node, item_code="330782-JT-002", applicant=_person(n0 + k), at=day(f"09:0{k}:00")
        )
        case.complete(node, cid, "approved", at=day(f"09:2{k}:00"))
        case.deliver(node, cid, "window", at=day(f"09:2{k}:30"))
        case.rate(node, cid, 1, at=day(f"09:3{k}:00"))
        ids.append(cid)
    cid = case.accept(
        node, item_code="330782-WS-001", applicant=_person(n0 + 3), at=day("10:00:00")
    )
    case.assess_fee(node, cid, "45.00", at=day("10:01:00"))
    case.pay(node, cid, "ICBC-20251009-0007", at=day("10:20:00"))
    case.complete(node, cid, "approved", at="2025-10-10T15:00:00+08:00")
    case.deliver(node, cid, "sms", at="2025-10-10T15:05:00+08:00")
    case.rate(node, cid, 2, at="2025-10-10T16:00:00+08:00")
    cid = case.accept(
        node, item_code="330782-SC-001", applicant=_person(n0 + 4), at=day("10:30:00")
    )
    case.request_supplement(node, cid, ["经营场所证明（租赁合同）"], at=day("10:40:00"))
    case.supply(node, cid, at="2025-10-10T09:00:00+08:00")
    case.complete(node, cid, "approved", at="2025-10-20T10:00:00+08:00")  # late
    cid = case.accept(
        node, item_code="330782-JT-003", applicant=_person(n0 + 5), at=day("11:00:00")
    )
    case.suspend(node, cid, "车辆安全技术检验（检测）", at="2025-10-10T09:00:00+08:00")
    case.resume(node, cid, at="2025-10-15T09:00:00+08:00")
    case.complete(node, cid, "approved", at="2025-10-16T16:00:00+08:00")
    cid = case.receive(
        node, "330782-RS-002", _person(n0 + 6), ["身份证", "户口簿"], at=day("14:00:00")
    )
    case.request_supplement(node, cid, ["本人银行卡"], at=day("14:05:00"))
    case.supply(node, cid, at="2025-10-10T10:00:00+08:00")  # accepted now: the clock starts
    case.complete(node, cid, "approved", at="2025-10-13T11:00:00+08:00")
    cid = case.receive(node, "330782-NY-001", _person(n0 + 7), at=day("14:30:00"))
    case.reject(node, cid, "农机不属于本辖区登记范围", at=day("14:40:00"))
    cid = case.accept(
        node, item_code="330782-MZ-002", applicant=_person(n0 + 8), at=day("15:00:00")
    )
    case.extend(
        node, cid, 5, "需入户核查", at="2025-10-20T09:00:00+08:00", approved_by="民政局局长"
    )
    cid = case.accept(
        node, item_code="330782-RS-001", applicant=_person(n0 + 9), at=day("15:30:00")
    )
    case.withdraw(node, cid, "申请人撤回", at=day("15:35:00"))
    return ids


def run(root: Path, catalogue: bytes, say: Say, *, seed: int = 7) -> dict[str, Any]:
    """Build the city, run the story, sync everything, verify; returns the city's counts."""
    marker = root / ".zhibao-demo"
    if root.exists() and any(root.iterdir()):
        if not marker.exists():
            raise HomeError("demo.not_empty", home=str(root))
        say(i18n.t("demo.rebuilt", home=str(root)))
        shutil.rmtree(root)  # a previous demo city, rebuilt from scratch
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text("built by `zhibao demo`; safe to delete\n", "utf-8")
    city = build(root, catalogue, say)
    try:
        for node_id, _ in [CITY, *TOWNS]:
            city.servers[node_id] = ServerThread(partial(open_home, city.homes[node_id])).start()
        town_a = city.servers[TOWNS[0][0]].url.rsplit(":", 1)
        city.proxy = FaultProxy(
            town_a[0][7:],
            int(town_a[1]),
            schedule=Schedule.flaky(cut=0.3, max_stall=0.2),
            seed=seed,
        ).start()
        say(i18n.t("demo.servers", count=len(city.servers)))
        for node_id, _ in TOWNS:
            sync_node(city, node_id, say)
        sync_all(city, say)
        return _story(city, say)
    finally:
        if city.proxy is not None:
            city.proxy.close()
        for server in city.servers.values():
            server.stop()


def _story(city: City, say: Say) -> dict[str, Any]:
    for n, (node_id, _) in enumerate(TOWNS):
        with city.open(node_id) as town:
            town_day(town, n * 10)
    say(i18n.t("demo.windows"))
    forwarded = {}
    items = {"good": "330782-MZ-001", "flaky": "330782-WS-002", "usb": "330782-RS-002"}
    for n, (node_id, _, link) in enumerate(VILLAGES):
        with city.open(node_id) as village:
            cid = case.receive(
                village, items[link], _person(20 + n), at="2025-10-09T09:30:00+08:00"
            )
            if link == "flaky":  # decided by the city, on the scans the village sends up
                names = demo_materials.village_scans(village, cid, "2025-10-09T09:35:00+08:00")
                say(i18n.t("demo.scanned", village=node_id, case_id=cid, names="、".join(names)))
            case.forward(village, cid, at="2025-10-09T09:40:00+08:00")
            forwarded[link] = cid
    say(i18n.t("demo.villages", count=len(forwarded)))
    sync_all(city, say)
    for link, cid in forwarded.items():
        town_id = cid[:9]
        with city.open(town_id) as town:
            case.accept(town, cid, at="2025-10-10T09:00:00+08:00")
            if link == "flaky":  # 公共场所卫生许可: decided by the city
                case.forward(town, cid, at="2025-10-10T10:00:00+08:00")
            else:
                case.complete(town, cid, "approved", at="2025-10-14T15:00:00+08:00")
    sync_all(city, say)
    with city.open(CITY[0]) as top:
        cid = forwarded["flaky"]
        case.accept(top, cid, at="2025-10-11T09:00:00+08:00")  # an adjusted working Saturday
        folder = city.root / "opened-at-city"
        opened = demo_materials.open_all(top, cid, folder)
        decision = demo_materials.city_decides(top, cid, "2025-10-17T15:55:00+08:00")
        case.complete(top, cid, "approved", note="卫生检测合格", at="2025-10-17T16:00:00+08:00")
    say(i18n.t("demo.city_decided", case_id=forwarded["flaky"]))
    say(i18n.t("demo.city_opened", case_id=cid, names="、".join(opened), folder=str(folder),
               decision=decision))  # fmt: skip
    sync_all(city, say)
    for n, (node_id, _, _) in enumerate(VILLAGES):
        with city.open(node_id) as village:
            cid = next(c for c in forwarded.values() if c.startswith(node_id))
            if cid == forwarded["flaky"]:  # the licence came down with the decision
                folder = city.root / "printed-at-village"
                names = demo_materials.open_all(village, cid, folder)
                say(i18n.t("demo.village_printed", village=node_id, case_id=cid,
                           names="、".join(names), folder=str(folder)))  # fmt: skip
            case.deliver(village, cid, "window", at="2025-10-20T10:00:00+08:00")
            case.rate(village, cid, 1 + n % 2, comment="办事方便", at="2025-10-20T10:05:00+08:00")
    say(i18n.t("demo.delivered", count=len(VILLAGES)))
    sync_all(city, say)  # a town reports once its villages' deliveries and ratings are in
    for node_id in [t for t, _ in TOWNS] + [v for v, _, _ in VILLAGES]:
        with city.open(node_id) as centre:
            submit_monthly(centre, PERIOD)
    say(i18n.t("demo.reports", period=PERIOD))
    sync_all(city, say)
    return _summary(city, say) | {
        "forwarded": sorted(forwarded.values()),
        "decided": forwarded["flaky"],  # the case the city decided on the village's scans
    }


def _summary(city: City, say: Say) -> dict[str, Any]:
    problems = 0
    for home in city.homes.values():
        with open_home(home) as node:
            problems += len(verify_log(node.store).problems)
    with city.open(CITY[0]) as top:
        # sorted here, not by the database's collation (a PostgreSQL city's may not be C)
        rows = sorted(top.store.query("SELECT origin, COUNT(*) FROM entries GROUP BY origin"))
        statuses = dict(
            sorted(top.store.query("SELECT status, COUNT(*) FROM cases GROUP BY status"))
        )
    with city.open(CITY[0]) as top:
        figures = compute_stats(top.store, parse_period(PERIOD), "node", top.clock.now().date())
        findings = reconcile(top, PERIOD)["findings"]
    t = figures["total"]
    say(
        i18n.t(
            "demo.stats",
            period=PERIOD,
            accepted=t["accepted"],
            completed=t["completed"],
            on_time=t["on_time"],
            overdue=t["overdue"],
            open_overdue=t["open_overdue"],
            rated=t["rated"],
            satisfaction=f"{t['satisfaction_rate']:.0%}"
            if t["satisfaction_rate"] is not None
            else "-",
        )
    )
    say(reconciled(findings))
    say(i18n.t("demo.verified", nodes=len(city.homes), problems=problems, retries=city.retries))
    return {
        "entries": dict(rows),
        "statuses": statuses,
        "problems": problems,
        "retries": city.retries,
        "stats": t,
        "findings": findings,
    }


def reconciled(findings: list[dict[str, Any]]) -> str:
    """The reconciliation line: how many findings, their kinds named in the reader's
    language (tiers.city.finding_kinds), not by their JSON keys."""
    kinds = sorted({kind_name(f["kind"]) for f in findings})
    return i18n.tn("demo.reconciled", len(findings), kinds=i18n.listed(kinds) or "-")


i18n.register(
    {
        "demo.reports": (
            "Every town and village signed its {period} monthly report (办件月报表).",
            "各镇、村已签发 {period} 办件月报表。",
        ),
        "demo.stats": (
            "City, {period}: accepted {accepted}, completed {completed}, on time {on_time}, "
            "closed overdue {overdue}, open past deadline {open_overdue}, rated {rated}, "
            "satisfaction {satisfaction}.",
            "市中心 {period}：受理 {accepted}，办结 {completed}，按时 {on_time}，"
            "超期办结 {overdue}，在办超期 {open_overdue}，评价 {rated}，满意率 {satisfaction}。",
        ),
        "demo.reconciled": (
            "Reconciliation against the reports: {count} findings ({kinds}).",
            "与月报核对：{count} 项发现（{kinds}）。",
        ),
        "demo.reconciled.one": (
            "Reconciliation against the reports: {count} finding ({kinds}).",
            "与月报核对：{count} 项发现（{kinds}）。",
        ),
        "demo.rebuilt": (
            "{home} holds the city an earlier demo built: building it again from scratch.",
            "{home} 中是以前演示建立的城市：重新建立。",
        ),
        "demo.entries": ("{count} entries", "{count} 条"),
        "demo.entries.one": ("{count} entry", "{count} 条"),
        "demo.not_empty": (
            "{home} is not empty and not a demo city: choose an empty or new directory.",
            "{home} 不是空目录，也不是演示城市：请换一个空目录或新目录。",
        ),
        "demo.catalogue": (
            "City published the catalogue: {count} service items.",
            "市中心发布事项目录：{count} 项。",
        ),
        "demo.catalogue.one": (
            "City published the catalogue: {count} service item.",
            "市中心发布事项目录：{count} 项。",
        ),
        "demo.nodes": (
            "Enrolled {towns} towns and {villages} villages.",
            "已登记 {towns} 个镇、{villages} 个村。",
        ),
        "demo.servers": (
            "{count} nodes serving on loopback; 江东村's line cuts out often.",
            "{count} 个节点在本机提供服务；江东村线路经常中断。",
        ),
        "demo.retry": (
            "  {node_id}: link dropped ({error}); retrying",
            "  {node_id}：线路中断（{error}），重试",
        ),
        "demo.usb": (
            "  {village}: USB stick carried {up} up and {down} down ({applied} new at the town).",
            "  {village}：U 盘上行 {up}、下行 {down}（镇新增 {applied} 条）。",
        ),
        "demo.windows": (
            "Towns worked a day at their windows "
            "(即办, 承诺, 补正, 特别程序, fees, ratings, 不予受理, 撤回).",
            "各镇窗口办理一天业务（即办、承诺、补正、特别程序、收费、评价、不予受理、撤回）。",
        ),
        "demo.villages": (
            "{count} villages received applications on villagers' behalf and forwarded them.",
            "{count} 个村代办申请并上报。",
        ),
        "demo.city_decided": (
            "City took {case_id} (on the adjusted working Saturday 2025-10-11) and decided it.",
            "市中心于调休工作日 2025-10-11 受理并办结 {case_id}。",
        ),
        "demo.delivered": (
            "Results came back down; {count} villages delivered them and recorded ratings.",
            "结果已下达，{count} 个村完成送达并记录评价。",
        ),
        "demo.verified": (
            "{nodes} nodes, log verify problems: {problems}; link retries: {retries}.",
            "{nodes} 个节点，日志核验问题：{problems}；线路重试：{retries} 次。",
        ),
    }
)
