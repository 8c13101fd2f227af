"""A member names a shared hash first, with a wrong chunk list (issue #11 item 4).

Many cases carry the same bytes — a blank 申请表 printed from the same file, a notice
scanned once. Village A (hostile, its own real key) names such a file's hash on its own case
with a chunk list of other bytes, and its entry reaches the town and the city first. Village
C then attaches the real file to its case. The town takes C's bytes (checked against C's
entry), and the city must take them from the town too: the first entry to name the hash
there is A's, and it must not hold the honest copy back — whether A's entry names a wrong
list (`lying_root`), a wrong list for a file larger than one put carries, so the honest
copy goes up in several puts that must resume (`lying_root_many_puts`), a size larger
than the city takes (`lying_size`), or the true list with a size one byte short, which
only the last chunk can tell (`true_list_size_off_by_one`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sync.blob_transfer import MAX_PUT_CHUNKS
from sync.protocol.blobs import CHUNK, MAX_BLOB_BYTES
from tests.hostile.network import CITY, ITEM, TOWN, VILLAGE_A, VILLAGE_C, Net, zb, zj
from tests.hostile.test_materials_attach import material, pushed
from tiers.materials import ATTACHED

# the attacks reach the city too: its PostgreSQL runs in the soak run (the CI run's sample
# of a member pushing to a PostgreSQL city: test_city_pushes.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]

TEMPLATE = b"%PDF-1.4 blank application form, as printed from the centre's file " * 4000
LYING_ROOT = hashlib.sha256(b"a list of other bytes").hexdigest()


@pytest.mark.parametrize(
    ("template", "lie"),
    [
        pytest.param(TEMPLATE, {"root": LYING_ROOT}, id="lying_root"),
        pytest.param(
            TEMPLATE * (MAX_PUT_CHUNKS * CHUNK // len(TEMPLATE) + 2), {"root": LYING_ROOT},
            id="lying_root_many_puts",
        ),
        pytest.param(TEMPLATE, {"root": LYING_ROOT, "size": MAX_BLOB_BYTES}, id="lying_size"),
        pytest.param(TEMPLATE, {"size": len(TEMPLATE) - 1}, id="true_list_size_off_by_one"),
    ],
)  # fmt: skip
def test_materials_a_wrong_ref_named_first_does_not_hold_an_honest_copy_back(
    net: Net, tmp_path: Path, template: bytes, lie: dict[str, object]
) -> None:
    hostile = net.actor(VILLAGE_A)
    own = zb(net.home(VILLAGE_A), "case", "receive", "--item", ITEM, "--applicant", "甲")
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        hostile.forge(ATTACHED, {"case_id": own.stdout.strip(),
                                 "materials": [material(template, **lie)]})  # fmt: skip
        assert not pushed(hostile, town_url)["rejected"]
        zb(net.home(TOWN), "sync", "--peer", city_url)  # A's entry is at the city first
        honest = net.home(VILLAGE_C)
        case_id = zb(honest, "case", "receive", "--item", ITEM, "--applicant", "丙").stdout
        form = tmp_path / "申请表.pdf"
        form.write_bytes(template)
        zb(honest, "case", "attach", case_id.strip(), str(form))
        zb(honest, "sync", "--peer", town_url)
        sent = zj(net.home(TOWN), "sync", "--peer", city_url, "--json")
        assert sent["materials_refused"] == [], sent
        assert sent["materials_sent"] == 1, sent
        listed = zj(net.home(CITY), "case", "materials", case_id.strip(), "--json")
        assert [m["state"] for m in listed] == ["here"]
        out = tmp_path / "at-city.pdf"
        zb(net.home(CITY), "case", "material", case_id.strip(), "申请表", "--out", str(out))
        assert out.read_bytes() == template


@pytest.mark.parametrize(
    "lie",
    [
        pytest.param({"root": LYING_ROOT}, id="lying_root"),
        pytest.param({"size": len(TEMPLATE) - 1}, id="true_list_size_off_by_one"),
    ],
)
def test_materials_a_wrong_ref_named_first_does_not_hold_a_bundled_copy_back(
    net: Net, tmp_path: Path, lie: dict[str, object]
) -> None:
    """The same, with the honest copy carried from the town to the city in a bundle."""
    hostile = net.actor(VILLAGE_A)
    own = zb(net.home(VILLAGE_A), "case", "receive", "--item", ITEM, "--applicant", "甲")
    honest, town, city = net.home(VILLAGE_C), net.home(TOWN), net.home(CITY)
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        hostile.forge(ATTACHED, {"case_id": own.stdout.strip(),
                                 "materials": [material(TEMPLATE, **lie)]})  # fmt: skip
        assert not pushed(hostile, town_url)["rejected"]
        zb(town, "sync", "--peer", city_url)  # A's entry is at the city first
        case_id = zb(honest, "case", "receive", "--item", ITEM, "--applicant", "丙").stdout
        form = tmp_path / "申请表.pdf"
        form.write_bytes(TEMPLATE)
        zb(honest, "case", "attach", case_id.strip(), str(form))
        zb(honest, "sync", "--peer", town_url)
    stick = tmp_path / "to-city.zbb"
    zb(town, "bundle", "export", "--to", CITY, "--out", str(stick))
    zb(city, "bundle", "import", str(stick))
    listed = zj(city, "case", "materials", case_id.strip(), "--json")
    assert [m["state"] for m in listed] == ["here"]
