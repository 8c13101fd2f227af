"""The demo's materials (`zhibao demo`): a village scans two documents for a 上报 case,
the city opens them and attaches its decision, and the village prints it for 送达.

The scans are made up (seeded bytes behind a PDF or JPEG header), big enough to take many
chunks over the demo's cutting line.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

from sync.node import Node
from sync.protocol import i18n
from sync.protocol.errors import ZhibaoError
from tiers import materials

SCANS = (
    ("申请表.jpg", 180_000, b"\xff\xd8\xff\xe0"),
    ("卫生检测报告.pdf", 1_200_000, b"%PDF-1.4\n"),
)
DECISION = ("公共场所卫生许可证.pdf", 240_000, b"%PDF-1.4\n")


def _scan(name: str, size: int, header: bytes, seed: int) -> tuple[Path, io.BytesIO]:
    rng = random.Random(seed)
    return Path(name), io.BytesIO(header + rng.randbytes(size - len(header)))


def village_scans(village: Node, case_id: str, at: str) -> list[str]:
    """The village agent scans the application and the test report into the case."""
    files = [_scan(name, size, head, n) for n, (name, size, head) in enumerate(SCANS)]
    return [m["name"] for m in materials.attach(village, case_id, files, at=at)]


def open_all(node: Node, case_id: str, folder: Path) -> list[str]:
    """Write every material of the case that another node attached into `folder`; the
    names written. One not here yet is a demo failure (the sync before must have brought
    it)."""
    folder.mkdir(parents=True, exist_ok=True)
    opened = []
    for m in materials.materials_of(node, case_id):
        if m.attached_by == node.node_id:
            continue
        if m.state != "here":
            raise ZhibaoError("demo.material_not_here", name=m.name, case_id=case_id,
                              node_id=node.node_id, state=m.state)  # fmt: skip
        node.blobs.write_out(m.sha256, folder / m.file)
        opened.append(m.name)
    return opened


def city_decides(city: Node, case_id: str, at: str) -> str:
    """The city attaches the licence it issues with its decision."""
    name, size, head = DECISION
    [named] = materials.attach(city, case_id, [_scan(name, size, head, 99)], at=at)
    return str(named["name"])


i18n.register(
    {
        "demo.scanned": (
            "  {village} scanned {names} into {case_id} before forwarding it.",
            "  {village} 为 {case_id} 扫描了 {names}，随后上报。",
        ),
        "demo.city_opened": (
            "City opened {names} of {case_id} (checked against their SHA-256) in {folder}, "
            "and attached the licence it issued: {decision}.",
            "市中心在 {folder} 打开了 {case_id} 的 {names}（已按 SHA-256 校验），"
            "并添加所发证照：{decision}。",
        ),
        "demo.village_printed": (
            "  {village} printed {names} of {case_id} for delivery (in {folder}).",
            "  {village} 已打印 {case_id} 的 {names} 用于送达（{folder}）。",
        ),
        "demo.material_not_here": (
            "the demo expected {name} of {case_id} at {node_id}, but it is {state}",
            "演示期望 {node_id} 已有 {case_id} 的 {name}，但其状态为 {state}",
        ),
    }
)
