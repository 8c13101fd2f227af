"""Materials as the domain sees them: where each is, what flows down, what reconcile reports.

The bytes move by the wire and by bundles (tests/sync); here they are given by hand, chunk
by chunk, through `Receiving` — exactly what those paths do once a chunk is checked.
"""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from sync import blob_index
from sync.node import Node
from tests.support.topology import CITY, TOWN, VILLAGE, VILLAGE_2, hand_down
from tests.tiers.test_figures import PERSON, push, small_city, t
from tests.tiers.test_reconcile import NOW, findings
from tiers import materials
from tiers.cases import service


def attach_bytes(node: Node, case_id: str, data: bytes, name: str, at: str) -> str:
    [named] = materials.attach(node, case_id, [(Path(name), io.BytesIO(data))], at=at)
    return str(named["sha256"])


def give(src: Node, dst: Node, sha256: str, at: str) -> None:
    """Move a held blob from `src` to `dst` chunk by chunk, as a transfer would."""
    ref = blob_index.ref_of(dst.store, sha256)
    assert ref is not None
    arriving = dst.blobs.receiving(ref)
    arriving.set_list(src.blobs.chunk_list(ref))
    for index in range(ref.chunks):
        arriving.add(index, src.blobs.read_chunk(sha256, index))
    assert arriving.finish(at)


def states(node: Node, case_id: str) -> dict[str, str]:
    return {m.name: m.state for m in materials.materials_of(node, case_id)}


def test_materials_state_on_the_way_then_missing_then_here(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        assert net.village is not None
        case_id = service.receive(net.village, "B2", PERSON, at=t("11-19"))
        scan = bytes(range(256)) * 1000  # 256 kB: four chunks and a bit
        sha = attach_bytes(net.village, case_id, scan, "户口簿.jpg", t("11-19", "10:05"))
        assert states(net.village, case_id) == {"户口簿": "here"}
        push(net.village, net.town, t("11-19", "11:00"))
        push(net.town, net.city, t("11-19", "12:00"))
        # named at the city, bytes not there: on the way for material_missing_hours (72)
        assert states(net.city, case_id) == {"户口簿": "on_the_way"}
        assert findings(net.city, "missing_material", period="2025-11") == []
        late = NOW + timedelta(days=4)  # 2025-11-24: past 72 hours since 11-19 12:00
        found = findings(net.city, "missing_material", period="2025-11", now=late)
        assert [(f["node_id"], f["evidence"]["case_id"], f["evidence"]["sha256"])
                for f in found] == [(VILLAGE, case_id, sha)]  # fmt: skip
        give(net.village, net.town, sha, t("11-20"))
        give(net.town, net.city, sha, t("11-20"))
        assert states(net.city, case_id) == {"户口簿": "here"}
        assert findings(net.city, "missing_material", period="2025-11", now=late) == []
        out = tmp_path / "out.jpg"
        materials.write_out(net.city, case_id, "户口簿", out)
        assert out.read_bytes() == scan


def test_materials_missing_after_the_setting(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        assert net.village is not None
        case_id = service.receive(net.village, "B2", PERSON, at=t("11-19"))
        attach_bytes(net.village, case_id, b"scan", "申请表.pdf", t("11-19", "10:05"))
        push(net.village, net.town, t("11-19", "11:00"))
        net.town.config = replace(
            net.town.config, settings={"material_missing_hours": 1}
        )  # fixed clock: 11-20 09:00, the entry arrived 11-19 11:00
        assert states(net.town, case_id) == {"申请表": "missing"}
        assert materials.summary(net.town)["missing"] == 1


def counted(node: Node, *cases: str) -> tuple[dict[str, str], dict[str, int]]:
    """What `case materials` lists for `cases` (name → state), and `status`'s counts."""
    listed: dict[str, str] = {}
    for case_id in cases:
        listed |= states(node, case_id)
    return listed, materials.summary(node)


@pytest.mark.usefixtures("city_engine")
def test_status_counts_each_material_once_in_the_state_its_case_lists(tmp_path: Path) -> None:
    """`status`'s counts (`summary`, one statement) are the states `case materials` lists
    (each material once, however many cases name it): here, let go, missing, on the way;
    at the city (on either engine) missing from the moment the setting's time is up."""
    with small_city(tmp_path) as net:
        assert net.village is not None
        early = service.receive(net.village, "B2", PERSON, at=t("11-19"))
        shas = [attach_bytes(net.village, early, name.encode(), f"{name}.pdf", t("11-19", "10:05"))
                for name in ("kept", "dropped", "late")]  # fmt: skip
        push(net.village, net.town, t("11-19", "11:00"))
        later = service.receive(net.village, "B2", PERSON, at=t("11-20", "08:00"))
        attach_bytes(net.village, later, b"kept", "again.pdf", t("11-20", "08:05"))
        attach_bytes(net.village, later, b"coming", "coming.pdf", t("11-20", "08:10"))
        push(net.village, net.town, t("11-20", "08:30"))
        for sha in shas[:2]:
            give(net.village, net.town, sha, t("11-20", "08:40"))
        net.town.blobs.drop(shas[1], t("11-20", "08:50"))
        net.town.config = replace(
            net.town.config, settings={"material_missing_hours": 1}
        )  # fixed clock: 11-20 09:00; "late" named since 11-19 11:00, "coming" since 08:30
        assert counted(net.town, early, later) == (
            {"kept": "here", "dropped": "dropped", "late": "missing", "again": "here",
             "coming": "on_the_way"},
            {"here": 1, "on_the_way": 1, "missing": 1, "dropped": 1, "bytes_here": 4,
             "not_receipted_by_parent": 1},
        )  # fmt: skip
        push(net.town, net.city, t("11-20", "08:45"))
        give(net.town, net.city, shas[0], t("11-20", "08:50"))
        net.city.config = replace(net.city.config, settings={"material_missing_hours": 0.25})
        assert counted(net.city, early, later) == (  # named 08:45, now 09:00
            {"kept": "here", "dropped": "missing", "late": "missing", "again": "here",
             "coming": "missing"},
            {"here": 1, "on_the_way": 0, "missing": 3, "dropped": 0, "bytes_here": 4,
             "not_receipted_by_parent": 0},
        )  # fmt: skip
        net.city.config = replace(net.city.config, settings={"material_missing_hours": 0.26})
        assert set(states(net.city, early).values()) == {"here", "on_the_way"}
        assert materials.summary(net.city)["on_the_way"] == 3
        net.city.config = replace(net.city.config, settings={"material_missing_hours": 1e9})
        assert materials.summary(net.city)["on_the_way"] == 3  # (before year 1: never missing)


def test_materials_result_attached_above_flows_down_to_the_origin_only(tmp_path: Path) -> None:
    with small_city(tmp_path, nodes=(CITY, TOWN, VILLAGE, VILLAGE_2)) as net:
        assert net.village is not None
        case_id = service.receive(net.village, "B2", PERSON, at=t("11-18"))
        service.forward(net.village, case_id, at=t("11-18", "10:30"))
        push(net.village, net.town, t("11-18", "11:00"))
        service.accept(net.town, case_id, at=t("11-18", "14:00"))
        result = attach_bytes(net.town, case_id, b"licence", "批文.pdf", t("11-19"))
        hand_down(net.town, net.village)
        assert states(net.village, case_id) == {"批文": "on_the_way"}
        assert [r.sha256 for r in blob_index.wanted(net.village.store, VILLAGE)] == [result]
        assert blob_index.may_fetch(net.town.store, VILLAGE, result)
        assert not blob_index.may_fetch(net.town.store, VILLAGE_2, result)
        assert [r.sha256 for r in blob_index.down_for(net.town.store, VILLAGE)] == [result]
        assert blob_index.down_for(net.town.store, VILLAGE_2) == []
        give(net.town, net.village, result, t("11-19", "12:00"))
        assert states(net.village, case_id) == {"批文": "here"}
        assert blob_index.wanted(net.village.store, VILLAGE) == []


def test_materials_up_for_until_the_parent_receipts(tmp_path: Path) -> None:
    with small_city(tmp_path) as net:
        assert net.village is not None
        case_id = service.receive(net.village, "B2", PERSON, at=t("11-19"))
        sha = attach_bytes(net.village, case_id, b"page", "身份证.png", t("11-19"))
        assert [r.sha256 for r in blob_index.up_for(net.village.store, VILLAGE, TOWN)] == [sha]
        assert materials.summary(net.village)["not_receipted_by_parent"] == 1
        with net.village.store.transaction():
            blob_index.record_receipt(net.village.store, TOWN, sha, t("11-19"))
        assert blob_index.up_for(net.village.store, VILLAGE, TOWN) == []
        net.village.blobs.drop(sha, t("11-20"))
        assert states(net.village, case_id) == {"身份证": "dropped"}
        assert blob_index.wanted(net.village.store, VILLAGE) == []
