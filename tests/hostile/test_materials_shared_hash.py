"""A member names a shared hash first, with a wrong chunk list (issue #11 item 4).

Many cases carry the same bytes — a blank 申请表 printed from the same file, a notice
scanned once. Village A (hostile, its own real key) names such a file's hash on its own case
with a chunk list of other bytes, and its entry reaches the town and the city first. Village
C then attaches the real file to its case. The town takes C's bytes (checked against C's
entry), and the city must take them from the town too: the first entry to name the hash
there is A's, and it must not hold the honest copy back.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.hostile.network import CITY, ITEM, TOWN, VILLAGE_A, VILLAGE_C, Net, zb, zj
from tests.hostile.test_materials_attach import material, pushed
from tiers.materials import ATTACHED

TEMPLATE = b"%PDF-1.4 blank application form, as printed from the centre's file " * 4000


def test_materials_a_wrong_list_named_first_does_not_hold_an_honest_copy_back(
    net: Net, tmp_path: Path
) -> None:
    hostile = net.actor(VILLAGE_A)
    own = zb(net.home(VILLAGE_A), "case", "receive", "--item", ITEM, "--applicant", "甲")
    lying_root = hashlib.sha256(b"a list of other bytes").hexdigest()
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        hostile.forge(ATTACHED, {"case_id": own.stdout.strip(),
                                 "materials": [material(TEMPLATE, root=lying_root)]})  # fmt: skip
        assert not pushed(hostile, town_url)["rejected"]
        zb(net.home(TOWN), "sync", "--peer", city_url)  # A's entry is at the city first
        honest = net.home(VILLAGE_C)
        case_id = zb(honest, "case", "receive", "--item", ITEM, "--applicant", "丙").stdout
        form = tmp_path / "申请表.pdf"
        form.write_bytes(TEMPLATE)
        zb(honest, "case", "attach", case_id.strip(), str(form))
        zb(honest, "sync", "--peer", town_url)
        sent = zj(net.home(TOWN), "sync", "--peer", city_url, "--json")
        assert sent["materials_refused"] == [], sent
        listed = zj(net.home(CITY), "case", "materials", case_id.strip(), "--json")
        assert [m["state"] for m in listed] == ["here"]
        out = tmp_path / "at-city.pdf"
        zb(net.home(CITY), "case", "material", case_id.strip(), "申请表", "--out", str(out))
        assert out.read_bytes() == TEMPLATE
