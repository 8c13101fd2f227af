"""Materials in bundles: scans up on a USB stick, results down, sealed, cut short, tampered,
over the limit, bounded in size, acknowledged by the receipt that comes back."""

from __future__ import annotations

import io
import itertools
import json
import random
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from sync import blob_index, receipts
from sync.bundles import (
    Exported,
    Imported,
    export_bundle,
    import_bundle,
    import_receipt,
    read_entries_part,
    write_bundle,
)
from sync.node import NODE_TOML, Node
from sync.protocol.blobs import CHUNK, DATA
from sync.protocol.bundle import read_bundle
from sync.protocol.bundle_materials import FRAME_HEAD, LENGTH, OPENING
from sync.protocol.errors import BundleError
from tests.support.servers import zhibao
from tests.support.topology import (
    TOWN,
    VILLAGE,
    Topology,
    build_catalogued,
    copy_topology,
)
from tiers.cases.service import Applicant, forward, receive
from tiers.materials import attach
from tiers.node import open_home

ITEM = "330782-MZ-002"  # received at villages, decided by the town


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Topology:
    """City, town, village, enrolled and introduced, the shipped catalogue everywhere."""
    return build_catalogued(tmp_path_factory.mktemp("materials-bundle"))


@pytest.fixture
def net(template: Topology, tmp_path: Path) -> Topology:
    return copy_topology(template, tmp_path / "net")


def scan(size: int, seed: int) -> bytes:
    """`size` bytes no compressor shrinks and no other scan shares (fixed per seed)."""
    return random.Random(seed).randbytes(size)


def zb(home: Path, *args: str) -> str:
    done = zhibao(home, *args)
    assert done.returncode == 0, done.stderr or done.stdout
    return done.stdout


def zj(home: Path, *args: str) -> Any:
    return json.loads(zb(home, *args, "--json"))


def new_case(node: Node, files: dict[str, bytes], *, to_town: bool = False) -> str:
    """A case received at `node` with `files` attached (and forwarded up, if asked)."""
    case_id = receive(node, ITEM, Applicant("欧阳秀英", phone="13905791234"))
    attach(node, case_id, [(Path(name), io.BytesIO(data)) for name, data in files.items()])
    if to_town:
        forward(node, case_id)
    return case_id


def bundle_file(sender: Node, to: str, path: Path, **options: Any) -> Exported:
    made = export_bundle(sender, to, materials=True, **options)
    with open(path, "wb") as out:
        write_bundle(sender, made, out)
    return made


def import_file(node: Node, path: Path) -> Imported:
    """`bundle import` as the CLI does it: the entries part, then the rest streamed."""
    with open(path, "rb") as handle:
        return import_bundle(node, read_entries_part(handle, str(path)), handle)


def payloads(path: Path, made: Exported) -> dict[tuple[str, bytes, int], int]:
    """Where each frame's payload starts in a bundle file: (sha256, kind, index) → offset."""
    found = {}
    with open(path, "rb") as handle:
        handle.seek(len(made.data) + OPENING)
        for part in made.carried.parts:
            (head,) = LENGTH.unpack(handle.read(LENGTH.size))
            handle.seek(head, io.SEEK_CUR)
            for _ in range(1 + part.end - part.first):
                kind, index, length = FRAME_HEAD.unpack(handle.read(FRAME_HEAD.size))
                found[(part.ref.sha256, kind, index)] = handle.tell()
                handle.seek(length, io.SEEK_CUR)
    return found


def partial_bytes(node: Node, sha256: str) -> int:
    path = node.blobs.partial_dir / sha256
    return path.stat().st_size if path.exists() else 0


def sha_of(node: Node, case_id: str, name: str) -> str:
    rows = node.store.query(
        "SELECT sha256 FROM case_materials WHERE case_id = ? AND name = ?", (case_id, name)
    )
    return str(rows[0][0])


# --- through the command line --------------------------------------------------------------


def test_materials_bundle_village_scans_reach_the_town_and_the_result_comes_back(
    net: Topology, tmp_path: Path
) -> None:
    village, town = net.home(VILLAGE), net.home(TOWN)
    scans = {"申请表.jpg": scan(300_000, 1), "户口簿.pdf": scan(150_000, 2)}
    for name, data in scans.items():
        (tmp_path / name).write_bytes(data)
    case_id = zb(village, "case", "receive", "--item", ITEM, "--applicant", "欧阳秀英").strip()
    zb(village, "case", "attach", case_id, *(str(tmp_path / name) for name in scans))
    zb(village, "case", "forward", case_id)

    stick = tmp_path / "up.zbb"
    made = zj(village, "bundle", "export", "--to", TOWN, "--out", str(stick))
    assert made["sealed"] and made["blobs"] == 2
    assert made["materials"]["carried"] == 2 and made["materials"]["bytes"] == 450_000
    assert "Materials carried: 2 (0.4 MB)" in zb(
        village, "bundle", "export", "--to", TOWN, "--out", str(tmp_path / "again.zbb")
    )
    done = zj(town, "bundle", "import", str(stick))
    assert done["materials"] | {"refusals": []} == {
        "declared": 2, "held": 2, "new": 2, "partial": 0, "refused": 0, "cut_short": False,
        "refusals": [], "chunks_kept": {},
    }  # fmt: skip
    listed = zj(town, "case", "materials", case_id)
    assert {m["name"]: m["state"] for m in listed} == {"申请表": "here", "户口簿": "here"}
    for name, data in scans.items():
        out = tmp_path / f"at-town-{name}"
        zb(town, "case", "material", case_id, Path(name).stem, "--out", str(out))
        assert out.read_bytes() == data

    # the town decides and attaches its 批文; it travels down with the case's events
    zb(town, "case", "accept", case_id)
    (tmp_path / "批文.pdf").write_bytes(result := scan(70_000, 3))
    zb(town, "case", "attach", case_id, str(tmp_path / "批文.pdf"))
    down = tmp_path / "down.zbb"
    assert zj(town, "bundle", "export", "--to", VILLAGE, "--out", str(down))["blobs"] == 1
    said = zb(village, "bundle", "import", str(down))
    assert "Materials: 1 of 1 held whole here (1 new), 0 partial, 0 refused." in said
    states = {m["name"]: m["state"] for m in zj(village, "case", "materials", case_id)}
    assert states == {"申请表": "here", "户口簿": "here", "批文": "here"}
    zb(village, "case", "material", case_id, "批文", "--out", str(tmp_path / "delivered.pdf"))
    assert (tmp_path / "delivered.pdf").read_bytes() == result


def test_materials_bundle_receipt_stops_the_sender_carrying_them(
    net: Topology, tmp_path: Path
) -> None:
    village, town = net.home(VILLAGE), net.home(TOWN)
    with net.open(VILLAGE) as node:
        new_case(node, {"a.pdf": scan(100_000, 4), "b.pdf": scan(20_000, 5)})
    stick = tmp_path / "up.zbb"
    zb(village, "bundle", "export", "--to", TOWN, "--out", str(stick))
    zb(town, "bundle", "import", str(stick))
    again = zj(village, "bundle", "export", "--to", TOWN, "--out", str(tmp_path / "2.zbb"))
    assert again["materials"]["carried"] == 2  # not receipted yet: carried again
    recorded = zj(village, "bundle", "import", str(stick) + ".receipt")
    assert recorded["materials"] == {"held": 2, "partial": 0}
    last = zj(village, "bundle", "export", "--to", TOWN, "--out", str(tmp_path / "3.zbb"))
    assert last["materials"]["carried"] == 0 and "blobs" not in last
    with net.open(VILLAGE) as node:
        assert blob_index.up_for(node.store, VILLAGE, TOWN) == []


def test_materials_bundle_without_materials_is_the_old_format(
    net: Topology, tmp_path: Path
) -> None:
    with net.open(VILLAGE) as node:
        new_case(node, {"a.pdf": scan(10_000, 6)})
    out = tmp_path / "entries.zbb"
    made = zj(net.home(VILLAGE), "bundle", "export", "--to", TOWN, "--out", str(out),
              "--no-materials")  # fmt: skip
    assert "blobs" not in made and made["materials"]["carried"] == 0
    assert read_bundle(out.read_bytes()).size == out.stat().st_size  # nothing after it
    done = zj(net.home(TOWN), "bundle", "import", str(out))
    assert done["applied"] == {VILLAGE: made["entries"]} and done["materials"]["declared"] == 0
    states = [m["state"] for m in zj(net.home(TOWN), "case", "materials", _case(net))]
    assert states == ["on_the_way"]


def _case(net: Topology) -> str:
    with net.open(TOWN) as town:
        return str(town.store.query("SELECT case_id FROM case_materials")[0][0])


# --- sealed, cut short, tampered -------------------------------------------------------------


def test_materials_bundle_sealed_holds_no_byte_of_a_scan_in_clear(
    net: Topology, tmp_path: Path
) -> None:
    data = scan(200_000, 7)
    windows = [data[i : i + 24] for i in range(0, len(data) - 24, 997)]
    with net.open(VILLAGE) as village:
        case_id = new_case(village, {"身份证.jpg": data})
        sha = sha_of(village, case_id, "身份证")
        bundle_file(village, TOWN, tmp_path / "sealed.zbb")
        bundle_file(village, TOWN, tmp_path / "plain.zbb", seal=False)
    sealed, plain = (tmp_path / "sealed.zbb").read_bytes(), (tmp_path / "plain.zbb").read_bytes()
    assert all(window in plain for window in windows)  # the search finds them when clear
    assert not any(window in sealed for window in windows)
    assert sha.encode() not in sealed and bytes.fromhex(sha) not in sealed
    with net.open(TOWN) as town:
        assert import_file(town, tmp_path / "sealed.zbb").materials.held == [sha]
        assert b"".join(town.blobs.read(sha)) == data


@pytest.mark.parametrize("seal", [True, False], ids=["sealed", "plain"])
def test_materials_bundle_cut_short_keeps_entries_and_checked_chunks(
    net: Topology, tmp_path: Path, seal: bool
) -> None:
    data = scan(20 * CHUNK + 123, 8)
    with net.open(VILLAGE) as village:
        case_id = new_case(village, {"scan.pdf": data})
        sha = sha_of(village, case_id, "scan")
        made = bundle_file(village, TOWN, tmp_path / "whole.zbb", seal=seal)
    whole = (tmp_path / "whole.zbb").read_bytes()
    cut = payloads(tmp_path / "whole.zbb", made)[(sha, DATA, 7)] + 4321  # mid-chunk 7
    (tmp_path / "cut.zbb").write_bytes(whole[:cut])
    with net.open(TOWN) as town:
        done = import_file(town, tmp_path / "cut.zbb")
        assert done.applied == {VILLAGE: made.header["entries"]}  # the entries are in
        taken = done.materials.to_json()
        assert taken["cut_short"] and taken["held"] == 0 and taken["partial"] == 1
        kept = taken["chunks_kept"][sha]
        assert kept == 7 and partial_bytes(town, sha) == 7 * CHUNK
        assert not town.blobs.has(sha)
        receipt = done.receipt_file
    with net.open(VILLAGE) as village:  # the receipt says how far it got
        import_receipt(village, receipt)
        resumed = bundle_file(village, TOWN, tmp_path / "next.zbb", seal=seal)
        assert [(p.first, p.end) for p in resumed.carried.parts] == [(kept, 21)]
    with net.open(TOWN) as town:
        assert import_file(town, tmp_path / "next.zbb").materials.held == [sha]
        assert b"".join(town.blobs.read(sha)) == data
        assert partial_bytes(town, sha) == 0


def test_materials_bundle_cut_short_then_the_same_bundle_again_completes(
    net: Topology, tmp_path: Path
) -> None:
    """Without a receipt back, the next bundle starts from 0; the chunks held are skipped."""
    data = scan(9 * CHUNK, 9)
    with net.open(VILLAGE) as village:
        case_id = new_case(village, {"scan.pdf": data})
        sha = sha_of(village, case_id, "scan")
        made = bundle_file(village, TOWN, tmp_path / "whole.zbb")
    whole = (tmp_path / "whole.zbb").read_bytes()
    (tmp_path / "cut.zbb").write_bytes(whole[: len(made.data) + 5 * CHUNK])
    with net.open(TOWN) as town:
        assert import_file(town, tmp_path / "cut.zbb").materials.partial[sha] >= 3
        done = import_file(town, tmp_path / "whole.zbb")
        assert done.already and done.materials.held == [sha] and done.materials.new == 1
        assert b"".join(town.blobs.read(sha)) == data


@pytest.mark.parametrize("seal", [True, False], ids=["sealed", "plain"])
def test_materials_bundle_tampered_chunk_refused_the_rest_taken(
    net: Topology, tmp_path: Path, seal: bool
) -> None:
    first, second = scan(3 * CHUNK + 10, 10), scan(50_000, 11)
    with net.open(VILLAGE) as village:
        case_id = new_case(village, {"one.pdf": first, "two.pdf": second})
        one, two = sha_of(village, case_id, "one"), sha_of(village, case_id, "two")
        made = bundle_file(village, TOWN, tmp_path / "b.zbb", seal=seal)
    assert {p.ref.sha256 for p in made.carried.parts} == {one, two}
    chunk_2 = payloads(tmp_path / "b.zbb", made)[(one, DATA, 2)]
    raw = bytearray((tmp_path / "b.zbb").read_bytes())
    raw[chunk_2 + 100] ^= 0x01
    (tmp_path / "b.zbb").write_bytes(bytes(raw))
    with net.open(TOWN) as town:
        done = import_file(town, tmp_path / "b.zbb")
        taken = done.materials.to_json()
        assert done.applied == {VILLAGE: made.header["entries"]}
        assert taken["held"] == 1 and taken["refused"] == 1
        assert [(r["sha256"], r["reason"]) for r in taken["refusals"]] == [(one, "blob.bad_chunk")]
        assert f"chunk 2 of material {one}" in taken["refusals"][0]["message"]
        assert not town.blobs.has(one) and town.blobs.has(two)
        assert partial_bytes(town, one) == 2 * CHUNK  # the checked ones before it, not held


def test_materials_bundle_over_the_importers_limit_refused(net: Topology, tmp_path: Path) -> None:
    settings = net.home(TOWN) / NODE_TOML
    config = tomllib.loads(settings.read_text("utf-8"))
    config.setdefault("settings", {})["material_max_mb"] = 0.25
    settings.write_text(tomli_w.dumps(config), "utf-8")
    big, small = scan(400_000, 12), scan(30_000, 13)
    with net.open(VILLAGE) as village:
        case_id = new_case(village, {"big.pdf": big, "small.pdf": small})
        sha_big = sha_of(village, case_id, "big")
        bundle_file(village, TOWN, tmp_path / "b.zbb")
    done = zj(net.home(TOWN), "bundle", "import", str(tmp_path / "b.zbb"))
    assert done["materials"]["held"] == 1 and done["materials"]["refused"] == 1
    (refusal,) = done["materials"]["refusals"]
    assert refusal["sha256"] == sha_big and refusal["reason"] == "bundle.material_too_big"
    assert "0.4 MB, more than this node takes (0.25 MB" in refusal["message"]
    states = {m["name"]: m["state"] for m in zj(net.home(TOWN), "case", "materials", case_id)}
    assert states == {"big": "on_the_way", "small": "here"}


# --- the size bound ---------------------------------------------------------------------------


def test_materials_bundle_max_mb_leaves_materials_never_entries(
    net: Topology, tmp_path: Path
) -> None:
    scans = {f"s{n}.pdf": scan(300_000, 20 + n) for n in range(5)}
    with net.open(VILLAGE) as village:
        case_id = new_case(village, scans)
    rounds, held = 0, 0
    while held < 5:
        rounds += 1
        stick = tmp_path / f"{rounds}.zbb"
        made = zj(net.home(VILLAGE), "bundle", "export", "--to", TOWN, "--out", str(stick),
                  "--max-mb", "0.5")  # fmt: skip
        assert stick.stat().st_size <= 512 * 1024 and made["bytes"] == stick.stat().st_size
        if rounds == 1:
            assert made["entries"] > 0 and made["materials"]["left"] >= 3
        done = zj(net.home(TOWN), "bundle", "import", str(stick))
        assert done["materials"]["refused"] == 0
        zb(net.home(VILLAGE), "bundle", "import", str(stick) + ".receipt")
        held = sum(m["state"] == "here" for m in zj(net.home(TOWN), "case", "materials", case_id))
        assert rounds < 10
    assert rounds >= 3
    for name, data in scans.items():
        out = tmp_path / f"out-{name}"
        zb(net.home(TOWN), "case", "material", case_id, Path(name).stem, "--out", str(out))
        assert out.read_bytes() == data


def test_materials_bundle_a_material_bigger_than_the_bound_goes_in_pieces(
    net: Topology, tmp_path: Path
) -> None:
    data = scan(40 * CHUNK, 30)
    with net.open(VILLAGE) as village:
        case_id = new_case(village, {"big.pdf": data})
        sha = sha_of(village, case_id, "big")
    pieces = []
    for n in range(12):
        stick = tmp_path / f"{n}.zbb"
        with net.open(VILLAGE) as village:
            made = bundle_file(village, TOWN, stick, max_bytes=1024 * 1024)
        if not made.carried.parts:
            break
        pieces.append([(p.first, p.end) for p in made.carried.parts])
        assert stick.stat().st_size <= 1024 * 1024
        with net.open(TOWN) as town:
            receipt = import_file(town, stick).receipt_file
        with net.open(VILLAGE) as village:
            import_receipt(village, receipt)
    assert len(pieces) == 3 and pieces[0][0][0] == 0 and pieces[-1][0][1] == 40
    assert all(a[0][1] == b[0][0] for a, b in itertools.pairwise(pieces))
    with net.open(TOWN) as town:
        assert b"".join(town.blobs.read(sha)) == data


# --- damaged files -----------------------------------------------------------------------------


def test_materials_bundle_damaged_materials_part_keeps_the_entries(
    net: Topology, tmp_path: Path
) -> None:
    with net.open(VILLAGE) as village:
        new_case(village, {"a.pdf": scan(80_000, 40)})
        made = bundle_file(village, TOWN, tmp_path / "b.zbb")
    raw = bytearray((tmp_path / "b.zbb").read_bytes())
    raw[len(made.data) + OPENING + 10] ^= 0xFF  # inside the sealed head
    (tmp_path / "b.zbb").write_bytes(bytes(raw))
    done = zj(net.home(TOWN), "bundle", "import", str(tmp_path / "b.zbb"))
    assert done["applied"] == {VILLAGE: made.header["entries"]}
    assert done["materials"]["refused"] == 1 and done["materials"]["held"] == 0
    assert done["materials"]["refusals"][0]["reason"] == "bundle.materials_damaged"


def test_materials_bundle_text_in_chinese(net: Topology, tmp_path: Path) -> None:
    with net.open(VILLAGE) as village:
        new_case(village, {"a.pdf": scan(10_000, 41)})
    stick = tmp_path / "b.zbb"
    said = zhibao(net.home(VILLAGE), "bundle", "export", "--to", TOWN, "--out", str(stick),
                  lang="zh")  # fmt: skip
    assert "附带材料：1 份" in said.stdout
    said = zhibao(net.home(TOWN), "bundle", "import", str(stick), lang="zh")
    assert "材料：1 份中 1 份已完整收下" in said.stdout


def test_materials_bundle_receipt_with_altered_materials_is_refused(
    net: Topology, tmp_path: Path
) -> None:
    with net.open(VILLAGE) as village:
        case_id = new_case(village, {"a.pdf": scan(10_000, 50), "b.pdf": scan(10_000, 51)})
        held = sorted(sha_of(village, case_id, name) for name in ("a", "b"))
        bundle_file(village, TOWN, tmp_path / "b.zbb")
    with net.open(TOWN) as town:
        receipt = import_file(town, tmp_path / "b.zbb").receipt_file
    body = json.loads(receipt[5:])
    statement = json.loads(body["materials"]["raw"])
    assert statement["held"] == held and statement["to"] == VILLAGE  # the wire's blob receipt
    statement["held"] = [*held[:1], "0" * 64]  # claims another material, drops one
    body["materials"]["raw"] = json.dumps(statement, separators=(",", ":"), sort_keys=True)
    forged = receipt[:5] + json.dumps(body).encode() + b"\n"
    with net.open(VILLAGE) as village:
        with pytest.raises(BundleError, match="what it says of materials is not signed"):
            import_receipt(village, forged)
        assert not blob_index.receipted(village.store, TOWN, "0" * 64)
        assert receipts.acknowledged(village.store, TOWN) == {}  # nothing of it recorded
        assert {r.sha256 for r in blob_index.up_for(village.store, VILLAGE, TOWN)} == set(held)
        import_receipt(village, receipt)
        assert blob_index.up_for(village.store, VILLAGE, TOWN) == []
        assert receipts.acknowledged(village.store, TOWN)[VILLAGE] > 0


def test_materials_bundle_steps_over_a_material_another_process_is_writing(
    net: Topology, tmp_path: Path
) -> None:
    data = scan(2 * CHUNK, 70)
    with net.open(VILLAGE) as village:
        case_id = new_case(village, {"a.pdf": data, "b.pdf": scan(1000, 71)})
        busy = sha_of(village, case_id, "a")
        bundle_file(village, TOWN, tmp_path / "b.zbb")
    with net.open(TOWN) as town, town.blobs.claim(busy) as mine:  # as `serve` would hold it
        assert mine
        other = open_home(net.home(TOWN))  # another process's view of the same home
        try:
            taken = import_file(other, tmp_path / "b.zbb").materials
        finally:
            other.close()
        assert taken.to_json()["held"] == 1 and taken.to_json()["partial"] == 1
        assert not taken.refused and not town.blobs.has(busy)
    with net.open(TOWN) as town:
        assert import_file(town, tmp_path / "b.zbb").materials.new == 1
        assert b"".join(town.blobs.read(busy)) == data
