"""Attacks on materials (issue #11) by enrolled villages with their own real keys.

not_on_path: village A signs a `case.attached` on a case that is not its own (its
neighbour B's, or its town's) and pushes it to the town. The town and the city set it
aside (`material.not_on_path`); the case's materials list nothing of it; no blob index
knows its hash, so its bytes would never be fetched nor sent.
bad_body: `case.attached` bodies no honest program writes (a hash that is no SHA-256 or
that carries a path, a negative or huge size, a media type with markup or a line break,
an empty list, a field of its own): refused at verification, never stored.
inert_names: a material whose `file` is a path ("../../etc/passwd") and whose name is
markup and terminal escapes is kept as text: listed exactly in JSON, inert in the table,
and `case material --out X` writes X and nothing else.
never_arrives: an entry names bytes that never come: the town lists the material
`on_the_way`, then `missing` once `material_missing_hours` have passed (the town's own
clock moved forward, as a sync with its parent would move it), and refuses to write it out.
hash_as_key: naming another case's hash in one's own entry must not open its bytes.

The bytes of a material do not travel over the wire in this tree yet: where a test needs
them at the town it hands them in through the store's receiving API (chunk list, chunks,
whole), the one a transfer uses.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from sync import blob_index
from sync.protocol.blobs import CHUNK, MAX_BLOB_BYTES, Hasher
from sync.protocol.errors import BlobError
from tests.hostile.harness import Actor
from tests.hostile.network import (
    CITY,
    ITEM,
    TOWN,
    VILLAGE_A,
    VILLAGE_B,
    Net,
    assert_quarantined,
    assert_works,
    heads,
    one_line_error,
    zb,
    zj,
)
from tests.support.servers import ZHIBAO, cli_env, zhibao
from tests.support.topology import Topology

# the attacks reach the city too: its PostgreSQL runs in the soak run (the CI run's sample
# of a member pushing to a PostgreSQL city: test_city_pushes.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]

ATTACHED = "case.attached"


def material(data: bytes, **fields: Any) -> dict[str, Any]:
    """A material body naming `data` truly (hash, size, chunk-list root), then `fields`."""
    hasher = Hasher()
    hasher.update(data)
    ref = hasher.ref()
    named = {"name": "户口簿", "file": "scan.jpg", "sha256": ref.sha256, "size": ref.size,
             "root": ref.root, "media_type": "image/jpeg"}  # fmt: skip
    return named | fields


def receive(home: Path, applicant: str = "张三", *, verb: str = "receive") -> str:
    return zb(home, "case", verb, "--item", ITEM, "--applicant", applicant).stdout.strip()


def hand_in(topology: Topology, node_id: str, data: bytes) -> None:
    """`data` arrives whole at `node_id` as a transfer hands it in, against the ref the
    entries held there name (blob_index.ref_of): chunk list, each chunk, then whole."""
    hasher = Hasher()
    hasher.update(data)
    with topology.open(node_id) as node:
        ref = blob_index.ref_of(node.store, hasher.ref().sha256)
        assert ref is not None, "no entry held here names these bytes"
        receiving = node.blobs.receiving(ref)
        receiving.set_list(hasher.chunk_list())
        for index in range(ref.chunks):
            receiving.add(index, data[index * CHUNK : (index + 1) * CHUNK])
        assert receiving.finish(node.clock.stamp())


def pushed(actor: Actor, url: str) -> dict[str, Any]:
    answer = actor.push_own(url)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()["result"]
    return result


# --- a village attaching to a case that is not its own ------------------------------------


@pytest.mark.parametrize("victim", ["neighbour", "town"])
def test_materials_attach_off_path_is_quarantined_and_never_indexed(net: Net, victim: str) -> None:
    hostile = net.actor(VILLAGE_A)
    b, town, city = net.home(VILLAGE_B), net.home(TOWN), net.home(CITY)
    scan, honest = b"forged scan " * 5000, b"honest scan " * 5000
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        if victim == "neighbour":
            case_id = receive(b)
            zb(b, "sync", "--peer", town_url)
        else:
            case_id = receive(town, verb="accept")
        forged = hostile.forge(ATTACHED, {"case_id": case_id, "materials": [material(scan)]})
        result = pushed(hostile, town_url)
        assert result["applied"].get(VILLAGE_A) == forged.seq, result  # kept, as evidence
        zb(town, "sync", "--peer", city_url)
        if victim == "neighbour":  # the honest way, for contrast: the same case, its origin
            (b / "honest.jpg").write_bytes(honest)
            zb(b, "case", "attach", case_id, str(b / "honest.jpg"), "--material", "户口簿")
            zb(b, "sync", "--peer", town_url)
            zb(town, "sync", "--peer", city_url)
            assert zj(b, "case", "materials", case_id)[0]["state"] == "here"
    wanted = material(scan)["sha256"]
    for home in (town, city):
        assert_quarantined(home, VILLAGE_A, {forged.seq}, "material.not_on_path")
        listed = zj(home, "case", "materials", case_id)
        assert wanted not in {m["sha256"] for m in listed}, listed
        assert [m["attached_by"] for m in listed] == ([VILLAGE_B] if victim == "neighbour" else [])
    for node_id in (TOWN, CITY, VILLAGE_A):
        with net.topology.open(node_id) as node:
            assert blob_index.ref_of(node.store, wanted) is None, node_id
            assert not blob_index.may_fetch(node.store, VILLAGE_A, wanted)
    if victim == "neighbour":
        assert [m["name"] for m in zj(b, "case", "materials", case_id)] == ["户口簿"]
    assert_works(town, city)


# --- bodies no honest program writes ------------------------------------------------------

HEX = "ab" * 32
BAD_BODIES: list[tuple[str, dict[str, Any] | None]] = [  # (id, change; None: no material)
    ("sha_not_hex", {"sha256": "not-a-hash"}),
    ("sha_upper_case", {"sha256": HEX.upper()}),
    ("sha_short", {"sha256": HEX[:-1]}),
    ("sha_carries_a_path", {"sha256": "../../../../tmp/zhibao-pwned-" + HEX}),
    ("sha_then_newline", {"sha256": HEX + "\n"}),
    ("root_not_hex", {"root": "root"}),
    ("size_negative", {"size": -1}),
    ("size_huge", {"size": MAX_BLOB_BYTES + 1}),
    ("size_as_text", {"size": "12"}),
    ("media_type_markup", {"media_type": "text/html<script>alert(1)</script>"}),
    ("media_type_newline", {"media_type": "text/html\n"}),
    ("media_type_header", {"media_type": "text/plain\r\nSet-Cookie: a=b"}),
    ("name_blank", {"name": " "}),
    ("own_field", {"path": "/etc/passwd"}),
    ("no_materials", None),
]


def test_materials_attach_bad_body_is_refused_at_verification(net: Net, tmp_path: Path) -> None:
    """Each bad body signed by A on top of the same log (a copy of A's home per body, so
    one refused entry does not hold back the next): the town refuses every one."""
    a, town = net.home(VILLAGE_A), net.home(TOWN)
    case_id = receive(a)
    with net.serving(TOWN) as served:
        url = served[TOWN].url
        assert pushed(net.actor(VILLAGE_A), url)["applied"].get(VILLAGE_A)  # the case: fine
        held = heads(town)[VILLAGE_A]
        for what, change in BAD_BODIES:
            hostile = Actor.of(Path(shutil.copytree(a, tmp_path / f"a-{what}")))
            materials = [] if change is None else [material(b"scan", **change)]
            forged = hostile.forge(ATTACHED, {"case_id": case_id, "materials": materials})
            result = pushed(hostile, url)
            refused = {(r["origin"], r["seq"]) for r in result["rejected"]}
            assert (VILLAGE_A, forged.seq) in refused, f"the town took {what}: {result}"
    assert heads(town)[VILLAGE_A] == held
    assert zj(town, "case", "materials", case_id) == []
    assert not any(q["origin"] == VILLAGE_A for q in zj(town, "status")["quarantined"])
    assert_works(town)


# --- names that are paths, markup and escapes ---------------------------------------------

NAME = "<script>alert(1)</script>\x1b]0;pwned\x07\x1b[2J\u202e"


def test_materials_attach_hostile_names_stay_inert_text(net: Net, tmp_path: Path) -> None:
    hostile, town = net.actor(VILLAGE_A), net.home(TOWN)
    case_id = receive(net.home(VILLAGE_A))
    work = tmp_path / "work"
    cwd = work / "a" / "b"
    cwd.mkdir(parents=True)
    data, other = b"\x89PNG scan " * 20_000, b"second " * 1000
    named = [
        material(data, name=NAME, file="../../etc/passwd", media_type="text/html"),
        material(other, name="申请表", file=str(work / "pwned"), media_type="application/pdf"),
    ]
    with net.serving(TOWN) as served:
        hostile.forge(ATTACHED, {"case_id": case_id, "materials": named})
        assert not pushed(hostile, served[TOWN].url)["rejected"]
    hand_in(net.topology, TOWN, data)
    hand_in(net.topology, TOWN, other)

    listed = zj(town, "case", "materials", case_id)
    assert [(m["name"], m["file"], m["state"]) for m in listed] == [
        (NAME, "../../etc/passwd", "here"), ("申请表", str(work / "pwned"), "here"),
    ]  # fmt: skip
    table = zb(town, "case", "materials", case_id).stdout
    assert "<script>alert(1)</script>" in table  # shown as the text it is
    assert "\x1b" not in table and "\x07" not in table and "\u202e" not in table, repr(table)

    for wanted, out, expected in ((NAME, "x.bin", data), ("申请表", "y.bin", other)):
        done = zhibao_in(cwd, town, "case", "material", case_id, wanted, "--out", out)
        assert done.returncode == 0, done.stderr
        assert (cwd / out).read_bytes() == expected
        assert "\x1b" not in done.stdout and "\u202e" not in done.stdout, repr(done.stdout)
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert [f for f in files if not f.startswith("net/")] == ["work/a/b/x.bin", "work/a/b/y.bin"]
    stored = sorted(p.name for p in (town / "materials").rglob("*") if p.is_file())
    assert stored == sorted(m["sha256"] for m in named)


def zhibao_in(cwd: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ZHIBAO, *args, "--home", str(home)], cwd=cwd, capture_output=True, text=True,
        env=cli_env(), timeout=120, check=False,
    )  # fmt: skip


# --- bytes that never come ----------------------------------------------------------------


def _move_clock(topology: Topology, node_id: str, hours: float) -> None:
    """The node's clock offset, as a sync with its parent sets it (kept in its database)."""
    with topology.open(node_id) as node:
        node.set_clock_offset(timedelta(hours=hours))


def _states(home: Path, case_id: str) -> list[str]:
    return [m["state"] for m in zj(home, "case", "materials", case_id)]


def test_materials_attach_bytes_that_never_come_go_missing(net: Net, tmp_path: Path) -> None:
    hostile, town = net.actor(VILLAGE_A), net.home(TOWN)
    case_id = receive(net.home(VILLAGE_A))
    never = material(b"bytes that are never sent", name="残疾人证")
    with net.serving(TOWN) as served:
        hostile.forge(ATTACHED, {"case_id": case_id, "materials": [never]})
        assert not pushed(hostile, served[TOWN].url)["rejected"]
    assert _states(town, case_id) == ["on_the_way"]
    out = tmp_path / "out.jpg"
    line = one_line_error(zhibao(town, "case", "material", case_id, "残疾人证", "--out", str(out)))
    assert "on its way" in line, line
    _move_clock(net.topology, TOWN, 71)  # the default: 72 hours
    assert _states(town, case_id) == ["on_the_way"]
    _move_clock(net.topology, TOWN, 73)
    assert _states(town, case_id) == ["missing"]
    line = one_line_error(zhibao(town, "case", "material", case_id, never["sha256"][:12],
                                 "--out", str(out)))  # fmt: skip
    assert "has not arrived" in line and never["sha256"] in line, line
    zh = one_line_error(zhibao(town, "case", "material", case_id, "残疾人证", "--out", str(out),
                               lang="zh"))  # fmt: skip
    assert "未到达" in zh, zh
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "net"]
    assert "MISSING" in zb(town, "case", "materials", case_id).stdout

    toml = town / "node.toml"  # a shorter wait, set by the town
    toml.write_text(toml.read_text("utf-8") + "material_missing_hours = 200\n", "utf-8")
    assert _states(town, case_id) == ["on_the_way"]
    _move_clock(net.topology, TOWN, 201)
    assert _states(town, case_id) == ["missing"]
    assert json.loads(zb(town, "log", "verify", "--json").stdout)["ok"] is True


# --- a hash named is not a key to the bytes -----------------------------------------------


def test_materials_attach_naming_anothers_hash_does_not_open_its_bytes(net: Net) -> None:
    hostile, b = net.actor(VILLAGE_A), net.home(VILLAGE_B)
    secret = b"B's household register, scanned " * 3000
    own = receive(net.home(VILLAGE_A))
    with net.serving(TOWN) as served:
        url = served[TOWN].url
        case_id = receive(b)
        (b / "hukou.jpg").write_bytes(secret)
        zb(b, "case", "attach", case_id, str(b / "hukou.jpg"))
        zb(b, "sync", "--peer", url)
        hostile.forge(ATTACHED, {"case_id": own, "materials": [material(secret)]})
        assert not pushed(hostile, url)["rejected"]
    hand_in(net.topology, TOWN, secret)  # B's scan reached the town
    sha = material(secret)["sha256"]
    with net.topology.open(TOWN) as town:
        assert blob_index.may_fetch(town.store, VILLAGE_B, sha)  # its owner may
        offered = {r.sha256 for r in blob_index.down_for(town.store, VILLAGE_A)}
        assert sha not in offered
        assert not blob_index.may_fetch(town.store, VILLAGE_A, sha)


# --- a hash that is no hash never names a file ---------------------------------------------


def test_materials_attach_blob_store_never_leaves_its_folder(net: Net, tmp_path: Path) -> None:
    """A hash that is no SHA-256, however it reaches the store (an entry, a request), is
    refused before it names a file: none is read, written or removed outside `materials/`."""
    victim = tmp_path / f"victim-{HEX}"
    victim.write_bytes(b"not the store's")
    hasher = Hasher()
    hasher.update(b"scan")
    ref = hasher.ref()
    escapes = [f"../../../../escape-{HEX}", str(victim), f"{HEX}/../../../../escape-{HEX}"]
    with net.topology.open(TOWN) as node:
        for sha in escapes:
            with pytest.raises(BlobError):
                receiving = node.blobs.receiving(type(ref)(sha, ref.size, ref.root))
                receiving.set_list(hasher.chunk_list())
                receiving.add(0, b"scan")
            with pytest.raises(BlobError):
                node.blobs.read_chunk(sha, 0)
            with pytest.raises(BlobError):
                node.blobs.drop(sha, node.clock.stamp())
            with pytest.raises(BlobError):
                node.blobs.write_out(sha, tmp_path / "out")
            assert not node.blobs.dropped(sha)
    assert victim.read_bytes() == b"not the store's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net", victim.name]
